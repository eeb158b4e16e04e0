// SPDX-License-Identifier: MIT
// One connection as the collector hands it on: read from the slot store or
// from a close event, with its counts at the previous report.
#pragma once

#include <cstdint>

#include "tcptrack/abi.h"
#include "tcptrack/store.h"

namespace tcptrack {

// Where a live flow sits in the store: its slot and the slot's generation.
struct SlotRef {
    std::uint32_t slot;
    std::uint32_t gen;
    bool operator==(const SlotRef&) const = default;
};
// A flow's identity for the run, one number: slot and generation (a slot's
// next connection has another generation).
inline std::uint64_t flow_id(const SlotRef& r) { return std::uint64_t{r.slot} << 32 | r.gen; }

// One connection as read from the store or from a close event.
struct FlowSample {
    tt_flow_key key{};
    bool has_info = false;  // info is known (always, from the store; tests may leave it out)
    bool finished = false;  // came from a close event or is being reaped: final
    tt_flow_info info{};
    std::uint64_t bytes[2]{};  // indexed by normalised direction (TT_DIR_AB / TT_DIR_BA)
    std::uint64_t packets[2]{};
    std::uint64_t payload[2]{};
    // Rates and idleness: bytes at the previous report (0 when first seen since
    // then), and when the counters were last seen moving (the report's time).
    std::uint64_t prev_bytes[2]{};
    // Likewise for exporters' deltas: at a changed sample (Collector::changed())
    // the counts since the previous report are the current ones minus these.
    std::uint64_t prev_packets[2]{};
    std::uint64_t prev_payload[2]{};
    std::uint64_t last_active_ns = 0;
    SlotRef ref{UINT32_MAX, 0};
};

}  // namespace tcptrack
