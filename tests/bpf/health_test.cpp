// SPDX-License-Identifier: MIT
// Connection health through the real classifiers (BPF_PROG_TEST_RUN on
// crafted frames): the timestamps option where Linux puts it and where only
// the options walk finds it (a SYN's layout), timestamps absent (Karn),
// retransmitted GSO trains, duplicate ACKs and fast retransmissions, zero
// windows, one direction handled on two CPUs, close events and reused tuples.
// The pure rules themselves: tests/unit/shared/test_health.cpp.
#include <bpf/bpf.h>

#include <cstdint>
#include <cstring>

#include "tcptrack/filter_vm.h"  // before the skeleton: its .bss holds struct tt_filter
#include "tcptrack/store.h"      // before the skeleton: its .rodata holds struct tt_hash_key
#include "tcptrack.skel.h"
#include "bpf_fixture.hpp"

namespace tt_test {
namespace {

class HealthTest : public BpfTest {
   protected:
    std::uint32_t slot_of(const Conn& c) {
        const auto s = live_slot(c.key);
        EXPECT_TRUE(s) << "no live slot";
        return s ? s->slot : 0;
    }
    tt_health_side side(const Conn& c, bool client) {
        return health(slot_of(c)).side[client ? c.cdir : c.cdir ^ 1];
    }
    // Handshake with timestamps in the SYN layout (found by the options walk).
    void handshake_ts(Conn& c) {
        c.options = syn_options(100, 0);
        egress(c.c2s(kSyn));
        c.options = syn_options(5000, 100);
        ingress(c.s2c(kSyn | kAck));
        c.options = ts_option(101, 5000);
        egress(c.c2s(kAck));
    }
};

TEST_F(HealthTest, TimestampsInTheSynLayoutAndLinuxsLayoutBothGiveRtt) {
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    handshake_ts(c);
    // The SYN (TSval 100) was echoed by the SYN-ACK: one sample of the client's
    // side, found only by walking both SYNs' options.
    tt_health_side cs = side(c, true);
    EXPECT_EQ(cs.rtt_samples, 1u);
    EXPECT_TRUE(cs.flags & TT_H_TSV);
    EXPECT_TRUE(cs.flags & TT_H_EGRESS);
    EXPECT_EQ(side(c, false).tsval, 5000u);
    // Data behind NOP NOP TS, echoed in the server's ACK: a second sample.
    c.options = ts_option(102, 5000);
    egress(c.c2s(kAck | kPsh, 1000));
    c.options = ts_option(5001, 102);
    ingress(c.s2c(kAck));
    cs = side(c, true);
    EXPECT_EQ(cs.rtt_samples, 2u);
    EXPECT_LE(cs.rtt_min_us, cs.rtt_max_us);
    EXPECT_EQ(cs.retrans, 0u);
    EXPECT_FALSE(side(c, false).flags & TT_H_EGRESS);
}

// --rtt-rate-limit: a side starts a probe at most once per gap. Here the gap
// (1 s) is far longer than the test: after the SYN's probe, new TSvals with
// data start none, and their echoes make no sample; with no limit, each does.
// The limit's clock both ways: the coarse one, and the fine one a kernel
// without it (5.10, or TCPTRACK_DISABLE=ktime-coarse) uses.
class RateLimitTest : public HealthTest, public ::testing::WithParamInterface<bool> {};

TEST_P(RateLimitTest, ProbesAreRateLimitedPerSide) {
    for (const std::uint32_t gap_us : {0u, 1000000u}) {
        ASSERT_NO_FATAL_FAILURE(load(65536, {}, true, gap_us, GetParam()));
        Conn c(false, {"10.0.0.1", 40100}, {"10.0.0.2", 80});
        handshake_ts(c);
        ASSERT_EQ(side(c, true).rtt_samples, 1u) << "gap " << gap_us;
        for (std::uint32_t i = 0; i < 3; ++i) {
            c.options = ts_option(102 + i, 5000 + i);
            egress(c.c2s(kAck | kPsh, 100));
            c.options = ts_option(5001 + i, 102 + i);
            ingress(c.s2c(kAck));
        }
        const tt_health_side cs = side(c, true);
        EXPECT_EQ(cs.rtt_samples, gap_us ? 1u : 4u) << "gap " << gap_us;
        EXPECT_EQ(cs.retrans, 0u);
        EXPECT_EQ(cs.nxt, c.cseq) << "the rest of health is not rate-limited";
    }
}

INSTANTIATE_TEST_SUITE_P(Clock, RateLimitTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) {
                             return p.param ? "Coarse" : "Fine";
                         });

TEST_F(HealthTest, WithoutTimestampsTheAckTimesTheDataUnlessItWasResent) {
    Conn c(false, {"10.0.0.1", 40001}, {"10.0.0.2", 80});
    establish(c);
    const auto before = side(c, true).rtt_samples;
    egress(c.c2s(kAck | kPsh, 500));
    ingress(c.s2c(kAck));
    EXPECT_EQ(side(c, true).rtt_samples, before + 1);
    EXPECT_FALSE(side(c, true).flags & TT_H_TSV);
    // Karn: resent before its ACK, no sample from that ACK.
    const Packet p = c.c2s(kAck | kPsh, 500);
    egress(p);
    egress(p);
    ingress(c.s2c(kAck));
    EXPECT_EQ(side(c, true).rtt_samples, before + 1);
    EXPECT_EQ(side(c, true).retrans, 1u);
    EXPECT_EQ(side(c, true).retrans_bytes, 500u);
}

TEST_F(HealthTest, AResentGsoTrainCountsItsWireSegments) {
    Conn c(false, {"10.0.0.1", 40002}, {"10.0.0.2", 80});
    establish(c);
    const Packet train = c.c2s(kAck | kPsh, 4 * 300);  // 4 x 300 (test runs take one MTU)
    egress(train, 4);
    egress(train, 4);  // all of it again
    const tt_health_side cs = side(c, true);
    EXPECT_EQ(cs.retrans, 4u);
    EXPECT_EQ(cs.retrans_bytes, 4u * 300);
    EXPECT_EQ(cs.gaps, 0u);
}

TEST_F(HealthTest, DuplicateAcksMakeTheNextRetransmissionFast) {
    Conn c(false, {"10.0.0.1", 40003}, {"10.0.0.2", 80});
    establish(c);
    const Packet first = c.c2s(kAck | kPsh, 1000);
    egress(first);
    egress(c.c2s(kAck | kPsh, 1000));
    egress(c.c2s(kAck | kPsh, 1000));
    egress(c.c2s(kAck | kPsh, 1000));
    // The first was lost past this point: the server keeps acknowledging before
    // it, as its last segment did (establish): 4 duplicates of that ACK.
    const std::uint32_t hole = c.cseq - 4000;
    for (int i = 0; i < 4; ++i) ingress(c.s2c(kAck, 0, hole));
    EXPECT_EQ(side(c, false).dup_acks, 4u);
    egress(first);
    EXPECT_EQ(side(c, true).retrans, 1u);
    EXPECT_EQ(side(c, true).fast_retrans, 1u);
}

TEST_F(HealthTest, ZeroWindowTransitionsAndTime) {
    Conn c(false, {"10.0.0.1", 40004}, {"10.0.0.2", 80});
    establish(c);
    c.window = 0;
    ingress(c.s2c(kAck));
    ingress(c.s2c(kAck));
    tt_health_side ss = side(c, false);
    EXPECT_EQ(ss.zero_win, 1u);
    EXPECT_TRUE(ss.flags & TT_H_ZW);
    c.window = 1000;
    ingress(c.s2c(kAck));
    ss = side(c, false);
    EXPECT_FALSE(ss.flags & TT_H_ZW);
    EXPECT_LT(ss.zero_win_ms, 1000u);  // test runs a few us apart: well under a second
    EXPECT_EQ(side(c, true).zero_win, 0u);
}

// One direction's segments alternate between two CPUs (the sender migrates):
// each CPU counts into its own cache entry, but a side's health is one record,
// so a retransmission on the other CPU is still seen as one, and no gap appears.
TEST_F(HealthTest, OneDirectionOnTwoCpusSharesItsSequenceState) {
    CpuPin pin;
    if (!pin.allowed({0, 1})) GTEST_SKIP() << "needs CPUs 0 and 1";
    Conn c(false, {"10.0.0.1", 40005}, {"10.0.0.2", 80});
    ASSERT_TRUE(pin.to(0));
    establish(c);
    int cpu = 0;
    Packet last;
    for (int i = 0; i < 20; ++i) {
        cpu ^= 1;
        ASSERT_TRUE(pin.to(cpu));
        last = c.c2s(kAck | kPsh, 1000);
        egress(last);
    }
    cpu ^= 1;
    ASSERT_TRUE(pin.to(cpu));
    egress(last);  // resent on the CPU that did not send it
    const tt_health_side cs = side(c, true);
    EXPECT_EQ(cs.retrans, 1u);
    EXPECT_EQ(cs.gaps, 0u);
    EXPECT_EQ(cs.nxt, c.cseq);
}

TEST_F(HealthTest, TheCloseEventCarriesHealthAndAReusedTupleStartsClean) {
    Conn c(false, {"10.0.0.1", 40006}, {"10.0.0.2", 80});
    establish(c);
    const Packet p = c.c2s(kAck | kPsh, 700);
    egress(p);
    egress(p);
    egress(c.c2s(kFin | kAck));
    ingress(c.s2c(kFin | kAck));
    egress(c.c2s(kAck));
    auto ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].health.side[c.cdir].retrans, 1u);
    EXPECT_EQ(ev[0].health.side[c.cdir].retrans_bytes, 700u);

    // Same tuple, established again, a retransmission, then a new SYN on it.
    Conn d(false, {"10.0.0.1", 40007}, {"10.0.0.2", 80});
    establish(d);
    const Packet q = d.c2s(kAck | kPsh, 300);
    egress(q);
    egress(q);
    d.cseq += 100000;
    egress(d.c2s(kSyn));
    ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].reason, TT_CLOSE_REUSED);
    EXPECT_EQ(ev[0].health.side[d.cdir].retrans, 1u);
    const tt_health_side fresh = side(d, true);
    EXPECT_EQ(fresh.retrans, 0u);
    EXPECT_EQ(fresh.nxt, d.cseq);  // only the new SYN seen
}

// --no-health: the map shrinks to one entry, the step never runs, and every
// count and close is what it is with health.
TEST_F(HealthTest, WithoutHealthTheCountsAndClosesAreUnchanged) {
    ASSERT_NO_FATAL_FAILURE(load(1024, {}, false));
    EXPECT_EQ(bpf_map__max_entries((*skel_)->maps.health), 1u);
    Conn c(false, {"10.0.0.1", 40008}, {"10.0.0.2", 80});
    establish(c);
    const Packet p = c.c2s(kAck | kPsh, 300);
    egress(p);
    egress(p);
    c.expect.bytes[c.cdir] += p.l3_len;  // the copy: on the wire, not in the payload
    c.expect.packets[c.cdir] += 1;
    expect_single(c.key, c.expect, TT_ESTABLISHED, "counted without health");
    egress(c.c2s(kFin | kAck));
    ingress(c.s2c(kFin | kAck));
    egress(c.c2s(kAck));
    const auto ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(totals_of(ev[0]), c.expect);
    const tt_health none{};
    EXPECT_EQ(std::memcmp(&ev[0].health, &none, sizeof none), 0);
}

}  // namespace
}  // namespace tt_test
