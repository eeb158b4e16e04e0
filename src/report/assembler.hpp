// SPDX-License-Identifier: MIT
// Report assembly, once per interval: collect the store, let the enrichers and
// the live filter see the samples, build the rows in display order, add the
// store's figures, and retire the flows shown for the last time. What comes
// out is one ReportFrame that every output reads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/options.hpp"
#include "report/enricher.hpp"
#include "report/frame.hpp"
#include "report/pressure.hpp"
#include "report/report_builder.hpp"

namespace tcptrack {

class Collector;
class LiveFilter;

// The store's figures in a report: flows tracked, the datapath's counters,
// and `evicted` (idle flows ended so far).
void add_store_stats(ReportStats& r, const Collector& c, std::uint64_t evicted);

class ReportAssembler {
   public:
    // `names` must outlive the assembler (the watched interfaces, kept by the run).
    ReportAssembler(const Options& opts, Collector& collector, const InterfaceNames& names,
                    std::uint64_t start_ns);

    void add_enricher(Enricher& e);
    void set_live_filter(LiveFilter* f) { filter_ = f; }
    void set_name_lookup(NameLookup names) { lookup_ = std::move(names); }
    void set_sort(SortKey key) { sort_ = key; }

    // The report of the interval ending at monotonic `now` (`elapsed` ns long)
    // over the interfaces `ifaces`; valid until the next call.
    const ReportFrame& assemble(std::uint64_t now, std::uint64_t elapsed,
                                std::vector<std::string> ifaces);

   private:
    const Options& opts_;
    Collector& collector_;
    const InterfaceNames& names_;
    ReportBuilder builder_;
    std::vector<Enricher*> enrichers_;
    LiveFilter* filter_ = nullptr;
    NameLookup lookup_;
    SortKey sort_;
    std::uint64_t evicted_ = 0;
    PressureNotice pressure_;
    const std::string netns_;  // --netns: the header's "@netns NAME"
    Report report_;
    std::optional<ReportFrame> frame_;
};

}  // namespace tcptrack
