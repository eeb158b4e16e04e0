// SPDX-License-Identifier: MIT
// The capture filter in force, and changing it while tcptrack runs: compiled
// once here, installed in the classifiers (Skeleton::set_filter), and the
// connections it now leaves out ended at once rather than shown frozen until
// the idle timeout.
#pragma once

#include <string>

#include "datapath/filter.hpp"

namespace tcptrack {

class Collector;
class Skeleton;

class LiveFilter {
   public:
    // Installs `expr` (already validated by the command line) before anything
    // is attached, so no segment outside it is ever counted.
    LiveFilter(Skeleton& skel, Collector& collector, const std::string& expr);

    // Replaces the filter: "" on success, else one line saying why not (the
    // old one stays).
    std::string change(const std::string& expr);
    // Whether the filter in force keeps the connection with this normalised key.
    bool keeps(const tt_flow_key& key) const { return filter_matches(program_, key); }
    // After each collect(): ends what a change made before the first report
    // left out (there were no samples to look at then).
    void after_collect();

   private:
    void end_left_out();

    Skeleton& skel_;
    Collector& collector_;
    tt_filter program_;
    bool pending_ = false;
};

}  // namespace tcptrack
