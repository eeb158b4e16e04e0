// SPDX-License-Identifier: MIT
// One connection as the collector hands it on: read from the slot store or
// from a close event, with its counts at the previous report.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>

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

// What a sample keeps of the datapath's tt_flow_info: the lifecycle facts,
// the first and close times, and the handshake's RTT computed once from its
// times; not the sequence numbers only the datapath compares (payload bases,
// SYN and FIN sequence numbers): 32 bytes instead of 72.
struct FlowInfo {
    std::uint64_t first_ns = 0, close_ns = 0;
    std::uint32_t owner_cgroup = 0;
    std::uint8_t state = 0;  // enum tt_state
    std::uint8_t client = 0, flags = 0, fin_mask = 0, ack_mask = 0, end = 0, owner_side = 0;
    // A SYN-ACK or the handshake's ACK was seen (IPFIX's ACK control bit).
    bool acked = false;

    FlowInfo() = default;
    FlowInfo(const tt_flow_info& i);  // NOLINT: implicit, as a copy of its fields
    bool operator==(const FlowInfo&) const = default;

    // The SYN's time: a flow's first segment, when it was a SYN (the datapath
    // sets tt_flow_info's syn_ns only then, to first_ns).
    std::uint64_t syn_ns() const { return (flags & TT_F_SYN_SEEN) ? first_ns : 0; }
    // At the client (its SYN left here), SYN -> SYN-ACK; at the server,
    // SYN-ACK -> ACK. Exact to the ns below 2.1 s, to the us above (a
    // retransmitted SYN or SYN-ACK); nullopt while not measured.
    std::optional<std::uint64_t> handshake_rtt() const;
    // Sets it (tests; the datapath's times give it through the constructor).
    void set_handshake_rtt(std::optional<std::uint64_t> ns);

   private:
    // 0: none; else ns + 1 below 2^31, else us | 2^31.
    std::uint32_t hs_rtt_ = 0;
};

// A flow's counters each way (normalised direction).
struct Counts {
    std::uint64_t bytes[2]{}, packets[2]{}, payload[2]{};
};

// A sample's counters at the previous report, kept as what each grew by since
// (24 bytes instead of 48: 23 MB less at a million flows). All zero (a flow
// new since then, or a default sample) whatever the current counters; whole,
// apart, when one grew by 2^32 or more in an interval (a flow at 17 Gbit/s
// for 2 s) or stands below its previous value. Those few are kept in a
// process-wide pool named by a 32-bit handle, so a sample pays 4 bytes for
// them, not a pointer's 8.
class PrevCounts {
   public:
    PrevCounts() = default;
    PrevCounts(const PrevCounts& o) { copy_from(o); }
    PrevCounts& operator=(const PrevCounts& o) {
        if (this != &o) copy_from(o);
        return *this;
    }
    PrevCounts(PrevCounts&& o) noexcept : grew_(o.grew_), whole_(o.whole_) { o.whole_ = kZero; }
    PrevCounts& operator=(PrevCounts&& o) noexcept {
        if (this != &o) {
            release();
            grew_ = o.grew_;
            whole_ = o.whole_;
            o.whole_ = kZero;
        }
        return *this;
    }
    ~PrevCounts() { release(); }

    // `prev` of counters that stand at `now`.
    void set(const Counts& now, const Counts& prev) {
        bool fits = true, zero = true;
        const auto grew = [&](const std::uint64_t(&n)[2], const std::uint64_t(&p)[2],
                              std::uint32_t(&out)[2]) {
            for (int d = 0; d < 2; ++d) {
                zero = zero && !p[d];
                fits = fits && p[d] <= n[d] && n[d] - p[d] <= UINT32_MAX;
                out[d] = static_cast<std::uint32_t>(n[d] - p[d]);
            }
        };
        grew(now.bytes, prev.bytes, grew_.bytes);
        grew(now.packets, prev.packets, grew_.packets);
        grew(now.payload, prev.payload, grew_.payload);
        if (zero || fits) {
            release();
            whole_ = zero ? kZero : kGrew;
        } else {
            keep(prev);
        }
    }
    // One previous counter, of counters that stand at `now`.
    std::uint64_t bytes(const std::uint64_t (&now)[2], int d) const {
        return pick(now[d], grew_.bytes[d], &Counts::bytes, d);
    }
    std::uint64_t packets(const std::uint64_t (&now)[2], int d) const {
        return pick(now[d], grew_.packets[d], &Counts::packets, d);
    }
    std::uint64_t payload(const std::uint64_t (&now)[2], int d) const {
        return pick(now[d], grew_.payload[d], &Counts::payload, d);
    }
    // Every previous counter is zero (set() keeps no growth for those).
    bool zero() const { return whole_ == kZero; }
    // Whole counts in the pool now (all samples): for the tests.
    static std::size_t pooled();

   private:
    // whole_: kGrew (grew_ holds them), kZero, or a handle into the pool.
    static constexpr std::uint32_t kGrew = 0, kZero = 1, kFirstHandle = 2;
    std::uint64_t pick(std::uint64_t now, std::uint32_t grew, std::uint64_t (Counts::*m)[2],
                       int d) const {
        if (whole_ == kGrew) return now - grew;
        return whole_ == kZero ? 0 : (whole().*m)[d];
    }
    Counts whole() const;  // a handle's
    void copy_from(const PrevCounts& o) {
        grew_ = o.grew_;
        if (o.whole_ >= kFirstHandle) {
            keep(o.whole());
        } else {
            release();
            whole_ = o.whole_;
        }
    }
    void keep(const Counts& c);  // whole_ = a handle holding c (ours reused)
    void release();              // frees ours; whole_ = kZero
    struct {
        std::uint32_t bytes[2]{}, packets[2]{}, payload[2]{};
    } grew_;
    std::uint32_t whole_ = kZero;
};

// A sample's flow key: tt_flow_key's fields in 17 bytes for IPv4 (its
// addresses inline) instead of 44; an IPv6 flow's addresses are kept apart
// (32 bytes). Reads give the whole tt_flow_key (get()) or one field.
class SampleKey {
   public:
    SampleKey() : v4_{0, 0} {}
    SampleKey(const tt_flow_key& k) : v4_{0, 0} { set(k); }  // NOLINT: implicit, as a copy
    SampleKey(const SampleKey& o) : v4_{0, 0} { *this = o; }
    SampleKey& operator=(const SampleKey& o);
    SampleKey(SampleKey&& o) noexcept;
    SampleKey& operator=(SampleKey&& o) noexcept;
    SampleKey& operator=(const tt_flow_key& k) {
        set(k);
        return *this;
    }
    ~SampleKey() { release(); }

    tt_flow_key get() const;
    operator tt_flow_key() const { return get(); }  // NOLINT: implicit, as its value
    std::uint8_t family() const { return family_; }
    std::uint32_t ifindex() const { return ifindex_; }
    std::uint16_t port_a() const { return port_a_; }  // network byte order
    std::uint16_t port_b() const { return port_b_; }
    // Side A's (0) or B's (1) address as in tt_flow_key: IPv4 in its first 4 bytes.
    std::array<std::uint8_t, 16> addr(int side) const;
    bool operator==(const SampleKey& o) const;
    bool operator==(const tt_flow_key& k) const { return *this == SampleKey(k); }

   private:
    using V6 = std::array<std::uint8_t, 32>;  // addr_a, addr_b
    void set(const tt_flow_key& k);
    void release();
    void take(SampleKey& o) noexcept;  // o's fields and addresses, o left empty
    union {
        std::uint32_t v4_[2];  // family_ != TT_FAMILY_INET6: addr_a's and addr_b's first 4 bytes
        V6* v6_;               // TT_FAMILY_INET6: owned
    };
    std::uint16_t port_a_ = 0, port_b_ = 0;
    std::uint32_t ifindex_ = 0;
    std::uint8_t family_ = 0;
};

// One connection as read from the store or from a close event.
struct alignas(64) FlowSample {
    // Laid out in 192 bytes, three cache lines (the render reads samples in
    // display order, at random): the key's tail padding holds the small
    // fields after it, and the 4-byte-aligned ones come before the info.
    [[no_unique_address]] SampleKey key;
    bool has_info = false;  // info is known (always, from the store; tests may leave it out)
    bool finished = false;  // came from a close event or is being reaped: final
    SlotRef ref{UINT32_MAX, 0};
    PrevCounts prev;  // see prev_bytes()
    FlowInfo info;
    std::uint64_t bytes[2]{};  // indexed by normalised direction (TT_DIR_AB / TT_DIR_BA)
    std::uint64_t packets[2]{};
    std::uint64_t payload[2]{};
    // The counters at the previous report (all 0 when first seen since then),
    // meaningful in a report's changed samples (Collector::changed()): rates
    // and exporters' deltas are the current ones minus these.
    std::uint64_t prev_bytes(int d) const { return prev.bytes(bytes, d); }
    std::uint64_t prev_packets(int d) const { return prev.packets(packets, d); }
    std::uint64_t prev_payload(int d) const { return prev.payload(payload, d); }
    Counts counts() const {
        Counts c;
        std::memcpy(c.bytes, bytes, sizeof bytes);
        std::memcpy(c.packets, packets, sizeof packets);
        std::memcpy(c.payload, payload, sizeof payload);
        return c;
    }
    // Sets the previous counters (after the current ones).
    void set_prev(const Counts& c) { prev.set(counts(), c); }
    // When the counters were last seen moving (the report's time).
    std::uint64_t last_active_ns = 0;
    // Connection health as last read (the figures of the slot's entry of the
    // health map, or of the close event's), with what widens its counters
    // from read to read (datapath/health_reader.hpp: 48 bytes a flow).
    SampleHealth health;
};
static_assert(sizeof(FlowSample) == 192, "three cache lines: see FlowSample's layout");

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
