// SPDX-License-Identifier: MIT
// Exporters' errors so far (an unreachable collector...), by exporter name: each
// exporter counts into the counter it registered; the table and JSON summaries
// and Prometheus read them. Made by the run, handed out by app/outputs.cpp.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

namespace tcptrack {

class ExportTally {
   public:
    struct Entry {
        std::string exporter;
        std::uint64_t errors = 0;
    };

    // The counter registered under `exporter` (made at 0 the first time); it
    // stays where it is as long as the tally does.
    std::uint64_t& counter(std::string_view exporter) {
        for (Entry& e : entries_)
            if (e.exporter == exporter) return e.errors;
        return entries_.emplace_back(Entry{std::string(exporter), 0}).errors;
    }
    // Every registered exporter, in registration order.
    const std::deque<Entry>& entries() const { return entries_; }

   private:
    std::deque<Entry> entries_;  // a deque: counters never move
};

}  // namespace tcptrack
