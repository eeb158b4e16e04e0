// SPDX-License-Identifier: MIT
// A flow's connection health (tcptrack/abi.h: struct tt_health) as user space
// reads it: copied out of the mmapped map, and its wrapping counters (u16 and
// u32 in the kernel, to keep a side in one cache line) widened to 64 bits from
// read to read.
#pragma once

#include <cstdint>
#include <memory>

#include "tcptrack/abi.h"

namespace tcptrack {

// One side's health as user space keeps it: tt_health_side's figures, with
// their names and widths, and its flags; not the state the datapath compares
// each segment with (nxt, ack, tsval, probe, window, run). 44 bytes a side
// instead of 64: 40 MB less at a million flows.
struct SideFigures {
    std::uint32_t retrans = 0, retrans_bytes = 0, dup_acks = 0, zero_win_ms = 0;
    std::uint32_t srtt8_us = 0, rtt_min_us = 0, rtt_max_us = 0, rtt_last_us = 0;
    std::uint16_t gaps = 0, fast_retrans = 0, zero_win = 0, rtt_samples = 0;
    std::uint8_t flags = 0;  // TT_H_*
    bool operator==(const SideFigures&) const = default;
};
struct HealthFigures {
    SideFigures side[2];  // by normalised direction
    bool operator==(const HealthFigures&) const = default;
};

// The figures of a close event's record.
HealthFigures figures_of(const tt_health& h);

// What widens one flow's counters: how often each wrapped, and its time at
// zero window as of the last read. 56 bytes a flow: the 16-bit counters get
// 32 bits of wraps and the 32-bit ones 16 bits, so every figure has 48 bits
// (2^48 ms at zero window is 8900 years; 2^48 bytes retransmitted, 256 TiB).
struct HealthWraps {
    std::uint32_t gaps[2]{}, fast_retrans[2]{}, zero_win[2]{}, rtt_samples[2]{};
    std::uint16_t retrans[2]{}, retrans_bytes[2]{}, dup_acks[2]{}, zero_win_ms[2]{};
    // zero_win_ms with a current stretch included (the field itself goes down
    // when a stretch starts: see tt_health_side), for the next read's compare.
    std::uint32_t zw_ms_seen[2]{};
    bool operator==(const HealthWraps&) const = default;
};

// One side's figures, widened.
struct WideSide {
    std::uint64_t retrans = 0, retrans_bytes = 0, dup_acks = 0, zero_win_ms = 0;
    std::uint64_t gaps = 0, fast_retrans = 0, zero_win = 0, rtt_samples = 0;
};

// The ms on the datapath's clock (CLOCK_MONOTONIC, as bpf_ktime_get_ns()
// in ms, modulo 2^32) that ends a current zero-window stretch.
inline std::uint32_t health_ms(std::uint64_t ns) {
    return static_cast<std::uint32_t>(ns / 1000000);
}

// Copies the figures of the kernel's entry, which CPUs may be writing: each
// field one load; a side's ZW flag and zero_win_ms are read again until they
// agree (a stretch starting or ending between the two loads would misread the field).
void copy_health(HealthFigures& out, const volatile tt_health& in);

// The first reading of a flow's health (wraps start at zero).
void start_health(HealthFigures& h, HealthWraps& w, const HealthFigures& first,
                  std::uint32_t end_ms);
// A later reading: a counter below its previous value wrapped once (a reading
// between two reads of the same counter cannot have wrapped twice at these
// rates). A side whose NXT/ACK knowledge went away was cleared for a new
// connection in the slot: that reading is not this flow's and is ignored.
// end_ms: ends a current zero-window stretch (now, or a finished flow's close).
void take_health(HealthFigures& h, HealthWraps& w, const HealthFigures& next, std::uint32_t end_ms);

// Side `side` (normalised direction) widened; zero_win_ms includes a current
// stretch up to end_ms.
WideSide widen(const HealthFigures& h, const HealthWraps& w, int side, std::uint32_t end_ms);
// The same from that side's figures alone.
WideSide widen(const SideFigures& s, const HealthWraps& w, int side, std::uint32_t end_ms);

// A flow's health as a sample keeps it from read to read: each side's RTT
// figures and flags in place (nearly every flow has RTT samples), and all
// its figures with their wraps apart, behind a pointer, only while a counter
// or a wrap is not zero (retransmissions, gaps, duplicate ACKs, zero
// windows: the unhealthy few). 48 bytes a flow instead of 96 (the figures
// and a pointer to the wraps): 46 MB less at a million flows. Copies are deep.
class SampleHealth {
   public:
    SampleHealth() = default;
    SampleHealth(const SampleHealth& o) { *this = o; }
    SampleHealth& operator=(const SampleHealth& o);
    SampleHealth(SampleHealth&&) noexcept = default;
    SampleHealth& operator=(SampleHealth&&) noexcept = default;

    HealthFigures figures() const;
    SideFigures side(int d) const;
    const HealthWraps& wraps() const;
    std::uint8_t flags(int d) const { return rtt_[d & 1].flags; }
    void set(const HealthFigures& h, const HealthWraps& w);
    // Changes figures and wraps through f(HealthFigures&, HealthWraps&).
    template <typename F>
    void edit(F f) {
        HealthFigures h = figures();
        HealthWraps w = wraps();
        f(h, w);
        set(h, w);
    }
    // Whether the counters are kept apart (some are not zero).
    bool has_counters() const { return rare_ != nullptr; }

   private:
    struct Rtt {
        std::uint32_t srtt8_us = 0, rtt_min_us = 0, rtt_max_us = 0, rtt_last_us = 0;
        std::uint16_t rtt_samples = 0;
        std::uint8_t flags = 0;
    };
    // A flow with counters keeps its figures whole (the RTT ones twice).
    struct Rare {
        HealthFigures figures;
        HealthWraps wraps;
    };
    // Keeps a copy of *r apart (its room reused), or nothing.
    void keep(const Rare* r);
    Rtt rtt_[2];
    std::unique_ptr<Rare> rare_;
};

}  // namespace tcptrack
