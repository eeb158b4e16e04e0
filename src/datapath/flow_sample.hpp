// SPDX-License-Identifier: MIT
// One connection as the collector hands it on: read from the slot store or
// from a close event, with its counts at the previous report.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>

#include "tcptrack/abi.h"
#include "tcptrack/store.h"
#include "datapath/health_reader.hpp"

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

struct FlowSample;
// A live flow's sample by its flow, or nullptr if it is not live now (the
// collector answers from its slot's position, in constant time).
using SampleFinder = std::function<const FlowSample*(const SlotRef&)>;

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
    // Connection health as last read (the figures of the slot's entry of the
    // health map, or of the close event's), with what widens its counters
    // from read to read (datapath/health_reader.hpp: 48 bytes a flow).
    SampleHealth health;
};

// When a current zero-window stretch of this sample ends: now for a live flow,
// its close for a finished one (the last segment it could have counted).
inline std::uint32_t health_end_ms(const FlowSample& s, std::uint64_t now_ns) {
    return health_ms(s.finished && s.has_info && s.info.close_ns ? s.info.close_ns : now_ns);
}
// A finished sample (a close event's) goes on widening from what its live
// sample had read (`was`), so the wraps seen so far are kept.
inline void continue_health(FlowSample& fin, const SampleHealth& was, std::uint64_t now_ns) {
    const HealthFigures last = fin.health.figures();
    HealthFigures h = was.figures();
    HealthWraps w = was.wraps();
    take_health(h, w, last, health_end_ms(fin, now_ns));
    fin.health.set(h, w);
}
// The first reading of a sample's health (tcptrack/health_reader.hpp).
inline void start_health(FlowSample& s, const HealthFigures& first, std::uint32_t end_ms) {
    HealthFigures h;
    HealthWraps w;
    start_health(h, w, first, end_ms);
    s.health.set(h, w);
}
// A later reading of a sample's health.
inline void take_health(FlowSample& s, const HealthFigures& next, std::uint32_t end_ms) {
    HealthFigures h = s.health.figures();
    HealthWraps w = s.health.wraps();
    take_health(h, w, next, end_ms);
    s.health.set(h, w);
}
// One side of the sample's health (normalised direction), widened.
inline WideSide wide_side(const FlowSample& s, int side, std::uint64_t now_ns) {
    return widen(s.health.side(side), s.health.wraps(), side, health_end_ms(s, now_ns));
}

}  // namespace tcptrack
