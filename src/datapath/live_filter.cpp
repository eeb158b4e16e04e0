// SPDX-License-Identifier: MIT
#include "datapath/live_filter.hpp"

#include <vector>

#include "datapath/collector.hpp"
#include "datapath/skeleton.hpp"

namespace tcptrack {

LiveFilter::LiveFilter(Skeleton& skel, Collector& collector, const std::string& expr)
    : skel_(skel), collector_(collector), program_(compile_filter(expr)) {
    skel_.set_filter(program_);
}

std::string LiveFilter::change(const std::string& expr) {
    try {
        program_ = compile_filter(expr);
    } catch (const FilterError& e) {
        return std::string("filter: ") + e.what();
    }
    skel_.set_filter(program_);
    if (collector_.collected())
        end_left_out();
    else
        pending_ = true;
    return "";
}

void LiveFilter::after_collect() {
    if (!pending_) return;
    pending_ = false;
    end_left_out();
}

void LiveFilter::end_left_out() {
    const std::vector<FlowSample>& samples = collector_.samples();
    std::vector<SlotRef> out;
    for (std::size_t i = 0; i < collector_.live() && i < samples.size(); ++i)
        if (!samples[i].finished && !keeps(samples[i].key)) out.push_back(samples[i].ref);
    collector_.forget(out);
}

}  // namespace tcptrack
