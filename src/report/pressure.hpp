// SPDX-License-Identifier: MIT
// The store-pressure notice: one stderr line, at most once a period (a
// minute), when connections went untracked since the last line, saying how
// many, why (the store full of assured connections, or their index buckets
// full) and what to change. Fed each report's cumulative figures; pure C++.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "report/report.hpp"

namespace tcptrack {

class PressureNotice {
   public:
    static constexpr std::uint64_t kMinute = 60'000'000'000ull;

    // start_ns: the monotonic time the counters started from zero (the load).
    explicit PressureNotice(std::uint64_t start_ns, std::uint64_t period_ns = kMinute)
        : period_ns_(period_ns), since_ns_(start_ns) {}

    // One report's cumulative stats at monotonic now_ns: the line to print on
    // stderr (without "tcptrack: " and newline), or nothing: no connection
    // went untracked since the last line, or the last line is less than a
    // period old (the count then carries on into the next one). E.g.
    // "1234 connections untracked in the last 60 s (store full: 65536 of 65536
    // slots hold assured connections); raise --max-flows".
    std::optional<std::string> update(const ReportStats& st, std::uint64_t now_ns);

   private:
    std::uint64_t period_ns_;
    std::optional<std::uint64_t> last_line_ns_;
    // The window the next line covers starts at the last report that had
    // nothing new (or the last line, or the start).
    std::uint64_t since_ns_;
    std::uint64_t untracked_ = 0, full_ = 0, buckets_ = 0;  // as of the last line
};

}  // namespace tcptrack
