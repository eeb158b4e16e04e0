// SPDX-License-Identifier: MIT
// One connection as the collector hands it on: read from the slot store or
// from a close event, with its counts at the previous report.
#pragma once

#include <cstdint>

#include "tcptrack/abi.h"
#include "tcptrack/store.h"

namespace tcptrack {

static_assert(sizeof(tt_flow_key) == 44, "flow key layout is shared with bpf/");
static_assert(sizeof(tt_flow_info) == 72, "flow info layout is shared with bpf/");
static_assert(sizeof(tt_slot) == 176, "slot layout is shared with bpf/");
static_assert(sizeof(tt_index_bucket) == 64, "an index bucket is one cache line");
static_assert(sizeof(tt_close_event) == 176, "close event layout is shared with bpf/");

// Where a live flow sits in the store: its slot and the slot's generation.
struct SlotRef {
    std::uint32_t slot;
    std::uint32_t gen;
    bool operator==(const SlotRef&) const = default;
};

// One connection as read from the store or from a close event.
struct FlowSample {
    tt_flow_key key{};
    bool has_info = false;    // info is known (always, from the store; tests may leave it out)
    bool finished = false;    // came from a close event or is being reaped: final
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
