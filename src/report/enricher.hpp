// SPDX-License-Identifier: MIT
// What an enricher is: a source of row fields the datapath does not know
// (the owning process today). The report assembler updates each once per
// report and lets each fill the rows it builds; enrich/ implements them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "datapath/flow_sample.hpp"
#include "report/report.hpp"

namespace tcptrack {

class Enricher {
   public:
    virtual ~Enricher() = default;
    // Once per report, after collect(): `samples` as collect() returned them
    // (samples[0, live) live), `changed` the indexes of those new, moved or
    // finished, `idle` the live ones shown for the last time; `find` a live
    // sample by its flow.
    virtual void update(const std::vector<FlowSample>& samples,
                        const std::vector<std::uint32_t>& changed, const std::vector<SlotRef>& idle,
                        std::size_t live, const SampleFinder& find) = 0;
    // Sets this enricher's fields of a connection's row (left empty when
    // unknown). Called from several rendering threads at once between updates.
    virtual void fill(const SlotRef& ref, FlowRow& row) const = 0;
};

}  // namespace tcptrack
