// SPDX-License-Identifier: MIT
// One connection as the collector hands it on: read from the slot store or
// from a close event, with its counts at the previous report.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>

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

// A flow's HealthWraps, kept apart from its sample: they stay all zero for
// nearly every flow (no counter wrapped, never at zero window), so a sample
// carries a pointer (8 bytes) instead of 56 (48 MB at 1M flows). Copies copy
// the wraps.
class SparseWraps {
   public:
    SparseWraps() = default;
    SparseWraps(const SparseWraps& o) { set(o.get()); }
    SparseWraps& operator=(const SparseWraps& o) {
        if (this != &o) set(o.get());
        return *this;
    }
    SparseWraps(SparseWraps&&) noexcept = default;
    SparseWraps& operator=(SparseWraps&&) noexcept = default;
    // The wraps (all zero when none are kept).
    const HealthWraps& get() const { return p_ ? *p_ : kNone; }
    // Keeps w (nothing when it is all zero).
    void set(const HealthWraps& w) {
        if (std::memcmp(&w, &kNone, sizeof w) == 0)
            p_.reset();
        else if (p_)
            *p_ = w;
        else
            p_ = std::make_unique<HealthWraps>(w);
    }

   private:
    static constexpr HealthWraps kNone{};
    std::unique_ptr<HealthWraps> p_;
};

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
    // health map, or of the close event's), and what widens its counters from
    // read to read (datapath/health_reader.hpp): 88 + 8 bytes a flow (the wraps apart).
    HealthFigures health{};
    SparseWraps health_wraps;
};

// When a current zero-window stretch of this sample ends: now for a live flow,
// its close for a finished one (the last segment it could have counted).
inline std::uint32_t health_end_ms(const FlowSample& s, std::uint64_t now_ns) {
    return health_ms(s.finished && s.has_info && s.info.close_ns ? s.info.close_ns : now_ns);
}
// A finished sample (a close event's) goes on widening from what its live
// sample had read (`was`, `wraps`), so the wraps seen so far are kept.
inline void continue_health(FlowSample& fin, const HealthFigures& was, const HealthWraps& wraps,
                            std::uint64_t now_ns) {
    const HealthFigures last = fin.health;
    fin.health = was;
    HealthWraps w = wraps;
    take_health(fin.health, w, last, health_end_ms(fin, now_ns));
    fin.health_wraps.set(w);
}
// The first reading of a sample's health (tcptrack/health_reader.hpp).
inline void start_health(FlowSample& s, const HealthFigures& first, std::uint32_t end_ms) {
    HealthWraps w;
    start_health(s.health, w, first, end_ms);
    s.health_wraps.set(w);
}
// A later reading of a sample's health.
inline void take_health(FlowSample& s, const HealthFigures& next, std::uint32_t end_ms) {
    HealthWraps w = s.health_wraps.get();
    take_health(s.health, w, next, end_ms);
    s.health_wraps.set(w);
}
// One side of the sample's health (normalised direction), widened.
inline WideSide wide_side(const FlowSample& s, int side, std::uint64_t now_ns) {
    return widen(s.health, s.health_wraps.get(), side, health_end_ms(s, now_ns));
}

}  // namespace tcptrack
