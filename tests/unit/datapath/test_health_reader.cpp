// SPDX-License-Identifier: MIT
// Reading connection health (src/datapath/health_reader.cpp, flow_sample.hpp):
// the kernel's 16- and 32-bit counters widened across wraps from read to read,
// a finished sample going on from its live one, zero-window time with a
// current stretch, and a cleared entry that is not the flow's.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "datapath/flow_sample.hpp"
#include "datapath/health_reader.hpp"

using namespace tcptrack;

namespace {

constexpr std::uint64_t kMs = 1'000'000;

// A health reading whose sides are known (NXT, ACK), as a live flow's are.
HealthFigures known() {
    HealthFigures h{};
    for (auto& s : h.side) s.flags = TT_H_NXT | TT_H_ACK;
    return h;
}

}  // namespace

TEST(HealthReader, SixteenBitCountersWidenAcrossWraps) {
    HealthFigures h{}, next = known();
    HealthWraps w;
    next.side[1].gaps = 65530;
    next.side[1].fast_retrans = 65535;
    next.side[1].zero_win = 100;
    next.side[1].rtt_samples = 65000;
    start_health(h, w, next, 0);
    EXPECT_EQ(widen(h, w, 1, 0).gaps, 65530u);

    next.side[1].gaps = 5;            // wrapped: 65536 + 5
    next.side[1].fast_retrans = 0;    // wrapped by one
    next.side[1].zero_win = 100;      // unchanged: no wrap
    next.side[1].rtt_samples = 1000;  // wrapped
    take_health(h, w, next, 0);
    WideSide s = widen(h, w, 1, 0);
    EXPECT_EQ(s.gaps, 65536u + 5);
    EXPECT_EQ(s.fast_retrans, 65536u);
    EXPECT_EQ(s.zero_win, 100u);
    EXPECT_EQ(s.rtt_samples, 65536u + 1000);

    next.side[1].gaps = 65535;  // up again, no wrap
    take_health(h, w, next, 0);
    EXPECT_EQ(widen(h, w, 1, 0).gaps, 65536u + 65535);
    next.side[1].gaps = 2;  // the second wrap
    take_health(h, w, next, 0);
    EXPECT_EQ(widen(h, w, 1, 0).gaps, 2 * 65536u + 2);
    // The other side never moved.
    EXPECT_EQ(widen(h, w, 0, 0).gaps, 0u);
    EXPECT_EQ(widen(h, w, 0, 0).rtt_samples, 0u);
}

TEST(HealthReader, ThirtyTwoBitCountersWidenAcrossWraps) {
    HealthFigures h{}, next = known();
    HealthWraps w;
    next.side[0].retrans = 0xfffffff0u;
    next.side[0].retrans_bytes = 0xffff0000u;
    next.side[0].dup_acks = 7;
    start_health(h, w, next, 0);
    next.side[0].retrans = 0x10;
    next.side[0].retrans_bytes = 0x20000;
    next.side[0].dup_acks = 8;
    take_health(h, w, next, 0);
    const WideSide s = widen(h, w, 0, 0);
    EXPECT_EQ(s.retrans, 0x100000010ull);
    EXPECT_EQ(s.retrans_bytes, 0x100020000ull);
    EXPECT_EQ(s.dup_acks, 8u);
    for (int i = 0; i < 3; ++i) {  // three more wraps of retrans_bytes
        next.side[0].retrans_bytes = 0xfffffff0u;
        take_health(h, w, next, 0);
        next.side[0].retrans_bytes = 1;
        take_health(h, w, next, 0);
    }
    EXPECT_EQ(widen(h, w, 0, 0).retrans_bytes, (4ull << 32) + 1);
}

// While TT_H_ZW is set the field holds the time so far minus the ms the
// window went to zero (modulo 2^32): a reader adds its now.
TEST(HealthReader, ZeroWindowTimeCountsTheCurrentStretch) {
    HealthFigures h{}, next = known();
    HealthWraps w;
    const std::uint32_t t0 = 5'000'000;  // ms on the monotonic clock
    next.side[1].zero_win = 1;
    next.side[1].zero_win_ms = 0u - t0;  // 0 ms so far, at zero since t0
    next.side[1].flags |= TT_H_ZW;
    start_health(h, w, next, t0 + 10);
    EXPECT_EQ(widen(h, w, 1, t0 + 10).zero_win_ms, 10u);
    EXPECT_EQ(widen(h, w, 1, t0 + 250).zero_win_ms, 250u);  // the stretch goes on
    // It ends at t0 + 300 (the datapath adds its now and clears ZW).
    next.side[1].zero_win_ms = 300;
    next.side[1].flags &= ~TT_H_ZW;
    take_health(h, w, next, t0 + 400);
    EXPECT_EQ(widen(h, w, 1, t0 + 900).zero_win_ms, 300u);
    // A second stretch from t0 + 1000: 300 before it.
    next.side[1].zero_win = 2;
    next.side[1].zero_win_ms = 300u - (t0 + 1000);
    next.side[1].flags |= TT_H_ZW;
    take_health(h, w, next, t0 + 1100);
    EXPECT_EQ(widen(h, w, 1, t0 + 1500).zero_win_ms, 800u);
    EXPECT_EQ(widen(h, w, 1, t0 + 1500).zero_win, 2u);
}

TEST(HealthReader, ZeroWindowTimeWidensAcrossTwoToThe32Ms) {
    HealthFigures h{}, next = known();
    HealthWraps w;
    // 2^32 - 256 ms at zero already; a stretch from t0 carries it over 2^32.
    const std::uint32_t t0 = 1000;
    next.side[0].zero_win_ms = 0xffffff00u - t0;
    next.side[0].flags |= TT_H_ZW;
    start_health(h, w, next, t0 + 0x80);
    EXPECT_EQ(widen(h, w, 0, t0 + 0x80).zero_win_ms, 0xffffff80u);
    // Before any new read the total crosses 2^32: widen() sees it alone.
    EXPECT_EQ(widen(h, w, 0, t0 + 0x200).zero_win_ms, 0x100000100ull);
    take_health(h, w, next, t0 + 0x200);  // and a read keeps it
    EXPECT_EQ(widen(h, w, 0, t0 + 0x300).zero_win_ms, 0x100000200ull);
    // The stretch ended a little before the last read's now (the read raced
    // the datapath): a step back by 16 ms, not a wrap.
    next.side[0].zero_win_ms = 0xffffff00u + 0x1f0u;  // ended at t0 + 0x1f0: 0xf0
    next.side[0].flags &= ~TT_H_ZW;
    take_health(h, w, next, t0 + 0x400);
    EXPECT_EQ(widen(h, w, 0, t0 + 0x400).zero_win_ms, 0x1000000f0ull);
    EXPECT_EQ(w.zero_win_ms[0], 1u);
}

// A slot's entry cleared for a new connection while it was read (the reuse of
// a tuple): not this flow's figures, and no wraps from it.
TEST(HealthReader, AClearedEntryIsIgnored) {
    HealthFigures h{}, next = known();
    HealthWraps w;
    next.side[0].retrans = 40;
    next.side[1].dup_acks = 9;
    start_health(h, w, next, 0);
    take_health(h, w, HealthFigures{}, 0);
    EXPECT_EQ(widen(h, w, 0, 0).retrans, 40u);
    EXPECT_EQ(widen(h, w, 1, 0).dup_acks, 9u);
    EXPECT_EQ(w.retrans[0], 0u);
    // A side never heard from is not "cleared": 0 -> 0 flags are fine.
    HealthFigures one = known();
    one.side[1].flags = 0;
    HealthFigures h2{};
    HealthWraps w2;
    start_health(h2, w2, one, 0);
    one.side[0].retrans = 3;
    take_health(h2, w2, one, 0);
    EXPECT_EQ(widen(h2, w2, 0, 0).retrans, 3u);
}

// Every figure and the flags, from the kernel's entry and from a close event's.
TEST(HealthReader, CopyReadsEveryFigure) {
    tt_health src{};
    auto* bytes = reinterpret_cast<unsigned char*>(&src);
    for (std::size_t i = 0; i < sizeof src; ++i) bytes[i] = static_cast<unsigned char>(i * 7 + 1);
    HealthFigures out;
    copy_health(out, src);
    for (int d = 0; d < 2; ++d) {
        const tt_health_side& k = src.side[d];
        const SideFigures& f = out.side[d];
        EXPECT_EQ(f.retrans, k.retrans);
        EXPECT_EQ(f.retrans_bytes, k.retrans_bytes);
        EXPECT_EQ(f.dup_acks, k.dup_acks);
        EXPECT_EQ(f.zero_win_ms, k.zero_win_ms);
        EXPECT_EQ(f.srtt8_us, k.srtt8_us);
        EXPECT_EQ(f.rtt_min_us, k.rtt_min_us);
        EXPECT_EQ(f.rtt_max_us, k.rtt_max_us);
        EXPECT_EQ(f.rtt_last_us, k.rtt_last_us);
        EXPECT_EQ(f.gaps, k.gaps);
        EXPECT_EQ(f.fast_retrans, k.fast_retrans);
        EXPECT_EQ(f.zero_win, k.zero_win);
        EXPECT_EQ(f.rtt_samples, k.rtt_samples);
        EXPECT_EQ(f.flags, k.flags);
    }
    EXPECT_EQ(figures_of(src), out);
}

// A close event's final health goes on from its live sample's wraps.
TEST(HealthReader, FinishedSampleContinuesTheLiveWidening) {
    FlowSample live;
    live.has_info = true;
    HealthFigures first = known();
    first.side[0].retrans = 0xffffff00u;
    first.side[1].rtt_samples = 65500;
    start_health(live, first, 0);
    HealthFigures second = first;
    second.side[0].retrans = 0x10;  // wrapped while live
    second.side[1].rtt_samples = 65535;
    take_health(live, second, 0);
    ASSERT_EQ(wide_side(live, 0, 0).retrans, 0x100000010ull);

    // The close event: rtt_samples wrapped since the last read, retrans moved on.
    FlowSample fin;
    fin.has_info = fin.finished = true;
    fin.info.close_ns = 9000 * kMs;
    HealthFigures last = second;
    last.side[0].retrans = 0x20;
    last.side[1].rtt_samples = 3;
    start_health(fin, last, health_end_ms(fin, 9500 * kMs));
    continue_health(fin, live.health, 9500 * kMs);
    EXPECT_EQ(wide_side(fin, 0, 9500 * kMs).retrans, 0x100000020ull);
    EXPECT_EQ(wide_side(fin, 1, 9500 * kMs).rtt_samples, 65536u + 3);
}

// A finished flow's current zero-window stretch ends at its close, not now.
TEST(HealthReader, FinishedFlowZeroWindowEndsAtItsClose) {
    FlowSample s;
    s.has_info = true;
    HealthFigures h = known();
    h.side[1].zero_win = 1;
    h.side[1].zero_win_ms = 0u - 1000u;  // at zero since 1000 ms
    h.side[1].flags |= TT_H_ZW;
    start_health(s, h, 1500);
    EXPECT_EQ(wide_side(s, 1, 4000 * kMs).zero_win_ms, 3000u);  // live: up to now
    s.finished = true;
    s.info.close_ns = 2500 * kMs;
    EXPECT_EQ(wide_side(s, 1, 4000 * kMs).zero_win_ms, 1500u);  // up to its close
    s.info.close_ns = 0;  // finished without a close time (reaped): now
    EXPECT_EQ(wide_side(s, 1, 4000 * kMs).zero_win_ms, 3000u);
}

// A sample keeps the counters apart only while one is not zero; every figure
// and wrap reads back as set, and copies are deep.
TEST(HealthReader, SampleHealthKeepsCountersApartOnlyWhenSomeAreNotZero) {
    HealthFigures h = known();
    for (int d = 0; d < 2; ++d) {
        h.side[d].srtt8_us = 800 + d;
        h.side[d].rtt_min_us = 90 + d;
        h.side[d].rtt_max_us = 400 + d;
        h.side[d].rtt_last_us = 130 + d;
        h.side[d].rtt_samples = static_cast<std::uint16_t>(7 + d);
    }
    SampleHealth s;
    s.set(h, HealthWraps{});
    EXPECT_FALSE(s.has_counters());  // a healthy flow: RTT figures only
    EXPECT_EQ(s.figures(), h);

    h.side[1].retrans = 3, h.side[1].retrans_bytes = 4000, h.side[0].dup_acks = 5;
    h.side[0].zero_win_ms = 6, h.side[1].gaps = 7, h.side[1].fast_retrans = 8;
    h.side[0].zero_win = 9;
    HealthWraps w;
    w.retrans[1] = 2;
    s.set(h, w);
    EXPECT_TRUE(s.has_counters());
    EXPECT_EQ(s.figures(), h);
    EXPECT_EQ(s.wraps(), w);
    EXPECT_EQ(s.side(1).retrans, 3u);

    SampleHealth copy = s;  // deep: changing one leaves the other
    HealthFigures h2 = h;
    h2.side[1].retrans = 10;
    s.set(h2, w);
    EXPECT_EQ(copy.figures(), h);
    EXPECT_EQ(s.figures(), h2);

    // A wrap alone keeps them apart too; all zero again lets them go.
    HealthFigures rtt_only = h;
    for (auto& side : rtt_only.side)
        side.retrans = side.retrans_bytes = side.dup_acks = side.zero_win_ms = 0,
        side.gaps = side.fast_retrans = side.zero_win = 0;
    HealthWraps samples_wrapped;
    samples_wrapped.rtt_samples[0] = 1;
    s.set(rtt_only, samples_wrapped);
    EXPECT_TRUE(s.has_counters());
    EXPECT_EQ(s.wraps(), samples_wrapped);
    s.set(rtt_only, HealthWraps{});
    EXPECT_FALSE(s.has_counters());
    EXPECT_EQ(s.figures(), rtt_only);
    EXPECT_EQ(s.wraps(), HealthWraps{});
}
