// SPDX-License-Identifier: MIT
// A SampleFinder over a test's own samples (the collector answers from its
// slots' positions; here a map of a test's samples).
#pragma once

#include <cstddef>
#include <unordered_map>
#include <vector>

#include "datapath/flow_sample.hpp"

namespace tcptrack {

// Finds among samples[0, live), which must outlive the finder unchanged.
inline SampleFinder finder_of(const std::vector<FlowSample>& samples, std::size_t live) {
    std::unordered_map<std::uint64_t, const FlowSample*> at;
    for (std::size_t i = 0; i < live && i < samples.size(); ++i)
        at.emplace(flow_id(samples[i].ref), &samples[i]);
    return [at = std::move(at)](const SlotRef& r) -> const FlowSample* {
        const auto it = at.find(flow_id(r));
        return it == at.end() ? nullptr : it->second;
    };
}

}  // namespace tcptrack
