// SPDX-License-Identifier: MIT
// Pressure (issue 16): which flows are assured (a SYN-ACK alone is not; the
// client's ACK of it is; a flow caught mid-stream is once both sides spoke),
// displacement (a new connection without room takes the slot of the oldest
// unassured flow of its two buckets, never an assured one's; the displaced
// flow is reported once with its own counts), and the keyed index hash (the
// kernel places a flow where the key it was given says).
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tcptrack/abi.h"
#include "tcptrack/store.h"
#include "bpf_fixture.hpp"

namespace tt_test {
namespace {

using tcptrack::SlotRef;

class PressureTest : public BpfTest {
   protected:
    std::uint8_t flags_of(const Conn& c) {
        const auto at = live_slot(c.key);
        EXPECT_TRUE(at) << "not live: " << ::testing::PrintToString(c.key);
        return at ? at->s.info.flags : 0;
    }
    bool assured(const Conn& c) { return flags_of(c) & TT_F_ASSURED; }
    std::uint32_t mask() const { return skel_->geometry().index_buckets - 1; }

    // Distinct tuples 10.9.x.1:port -> 10.8.0.1:80 whose index hash passes `want`.
    std::vector<Conn> search(std::size_t n, const std::function<bool(std::uint32_t)>& want) {
        std::vector<Conn> out;
        for (int i = 0; i < 200 * 60000 && out.size() < n; ++i) {
            Conn c(false,
                   {"10.9." + std::to_string(i / 60000) + ".1", std::uint16_t(1 + i % 60000)},
                   {"10.8.0.1", 80});
            if (want(index_hash(&c.key))) out.push_back(c);
        }
        EXPECT_EQ(out.size(), n) << "not enough keys found";
        return out;
    }
};

TEST_F(PressureTest, SynAckAloneDoesNotAssureTheClientsAckDoes) {
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 443});
    egress(c.c2s(kSyn));
    EXPECT_FALSE(assured(c)) << "a SYN";
    ingress(c.s2c(kSyn | kAck));
    EXPECT_FALSE(assured(c)) << "a SYN-ACK: what a flood against an open port produces";
    egress(c.c2s(kAck));  // acknowledges the server's ISN + 1
    EXPECT_TRUE(assured(c));
    egress(c.c2s(kAck | kPsh, 100));
    ingress(c.s2c(kAck | kPsh, 50));
    expect_single(c.key, c.expect, TT_ESTABLISHED, "assured and counted");
}

TEST_F(PressureTest, BlindAckFarFromTheServersIsnDoesNotAssure) {
    Conn c(false, {"10.0.0.1", 40001}, {"10.0.0.2", 443});
    egress(c.c2s(kSyn));
    ingress(c.s2c(kSyn | kAck));
    egress(c.c2s(kAck, 0, c.sseq + 0x40000000u));  // a spoofed client's guess
    EXPECT_FALSE(assured(c));
    EXPECT_EQ(live_slot(c.key)->s.settled, 0) << "unassured flows stay on the locked path";
    // The server then speaks (it accepted the connection): assured.
    ingress(c.s2c(kAck | kPsh, 30));
    EXPECT_TRUE(assured(c));
}

TEST_F(PressureTest, MidStreamIsAssuredOnlyOnceBothSidesSpoke) {
    Conn c(false, {"10.0.0.1", 40002}, {"10.0.0.2", 8080});
    for (int i = 0; i < 3; ++i) egress(c.c2s(kAck | kPsh, 100));
    EXPECT_FALSE(assured(c)) << "one way only";
    ingress(c.s2c(kAck));
    EXPECT_TRUE(assured(c));
    expect_single(c.key, c.expect, TT_ESTABLISHED, "both ways");
}

TEST_F(PressureTest, RstAnswerToSpoofedDataAssuresNothing) {
    Conn c(false, {"10.0.0.1", 40003}, {"10.0.0.2", 8080});
    egress(c.c2s(kAck | kPsh, 100));
    EXPECT_FALSE(assured(c));
    ingress(c.s2c(kRst));
    const auto ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].info.state, TT_RESET);
    EXPECT_FALSE(ev[0].info.flags & TT_F_ASSURED);
}

// Store full of half-open flows: each new connection displaces the oldest
// (its own counts, reported once, state as it was) and takes its slot.
TEST_F(PressureTest, FullStoreOfHalfOpenFlowsDisplacesTheOldestFirst) {
    ASSERT_NO_FATAL_FAILURE(load(4));
    std::vector<Conn> c;
    for (std::uint16_t port = 1; port <= 7; ++port)
        c.emplace_back(false, Endpoint{"10.0.0.1", port}, Endpoint{"10.0.0.2", 80});
    for (int i = 0; i < 4; ++i) {
        ingress(c[i].c2s(kSyn));  // a flood: SYNs in, SYN-ACKs out
        egress(c[i].s2c(kSyn | kAck));
    }
    std::vector<LiveSlot> before;
    for (int i = 0; i < 4; ++i) before.push_back(*live_slot(c[i].key));
    ASSERT_TRUE(drain_events().empty());
    // A real connection arrives: the oldest half-open flow makes room.
    egress(c[4].c2s(kSyn));
    ingress(c[4].s2c(kSyn | kAck));
    egress(c[4].c2s(kAck | kPsh, 120));
    ingress(c[4].s2c(kAck | kPsh, 340));
    auto ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].reason, TT_CLOSE_DISPLACED);
    EXPECT_EQ(ev[0].key, c[0].key);
    EXPECT_EQ(totals_of(ev[0]), c[0].expect);
    EXPECT_EQ(ev[0].info.state, TT_SYN_RECV);
    EXPECT_TRUE(ev[0].info.flags & TT_F_DISPLACED);
    EXPECT_EQ(ev[0].slot, before[0].slot);
    EXPECT_EQ(ev[0].gen, before[0].s.gen);
    const auto at = live_slot(c[4].key);
    ASSERT_TRUE(at);
    EXPECT_EQ(at->slot, before[0].slot) << "took the displaced flow's slot";
    EXPECT_EQ(at->s.gen, before[0].s.gen + 2);
    EXPECT_EQ(totals_of(at->s), c[4].expect) << "nothing of the displaced flow mixed in";
    EXPECT_TRUE(at->s.info.flags & TT_F_ASSURED);
    EXPECT_FALSE(live_slot(c[0].key));
    // More SYNs: the next oldest go, the assured one stays.
    egress(c[5].c2s(kSyn));
    egress(c[6].c2s(kSyn));
    ev = drain_events();
    ASSERT_EQ(ev.size(), 2u);
    EXPECT_EQ(ev[0].key, c[1].key);
    EXPECT_EQ(ev[1].key, c[2].key);
    for (int i : {3, 4, 5, 6}) EXPECT_TRUE(live_slot(c[i].key)) << i;
    EXPECT_EQ(totals_of(live_slot(c[4].key)->s), c[4].expect);
    EXPECT_EQ(stat(TT_STAT_DISPLACED), 3u);
    EXPECT_EQ(stat(TT_STAT_UNTRACKED), 0u);
    EXPECT_EQ(stat(TT_STAT_UNTRACKED_SEGS), 0u);
    EXPECT_EQ(next_fresh(), 4u) << "every newcomer took a displaced slot";
}

TEST_F(PressureTest, AssuredFlowsAreNeverDisplaced) {
    ASSERT_NO_FATAL_FAILURE(load(4));
    std::vector<Conn> c;
    for (std::uint16_t port = 1; port <= 6; ++port)
        c.emplace_back(false, Endpoint{"10.0.0.1", port}, Endpoint{"10.0.0.2", 80});
    for (int i = 0; i < 3; ++i) {  // three real connections
        egress(c[i].c2s(kSyn));
        ingress(c[i].s2c(kSyn | kAck));
        egress(c[i].c2s(kAck | kPsh, 10 + i));
    }
    ingress(c[3].c2s(kSyn));  // one half-open, the newest
    egress(c[4].c2s(kSyn));   // displaces the half-open one, not an older assured one
    auto ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].key, c[3].key);
    egress(c[5].c2s(kSyn));  // c[4] is half-open now: the oldest unassured
    ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].key, c[4].key);
    egress(c[5].c2s(kAck | kPsh, 1));  // c[5]'s handshake is not complete: still unassured
    ingress(c[5].s2c(kSyn | kAck));
    egress(c[5].c2s(kAck));
    // All four assured: a fifth is untracked (store full), nothing displaced.
    Conn late(false, {"10.0.0.1", 99}, {"10.0.0.2", 80});
    egress(late.c2s(kSyn));
    EXPECT_TRUE(drain_events().empty());
    EXPECT_FALSE(live_slot(late.key));
    EXPECT_EQ(stat(TT_STAT_UNTRACKED), 1u);
    EXPECT_EQ(stat(TT_STAT_UNTRACKED_FULL), 1u);
    for (int i = 0; i < 3; ++i) {
        const auto at = live_slot(c[i].key);
        ASSERT_TRUE(at) << i;
        EXPECT_EQ(totals_of(at->s), c[i].expect) << i;
    }
}

// Both buckets full of half-open flows (the store has room): the newcomer
// displaces the oldest of them and takes its slot; the free slot it was
// going to use goes back to the queue.
TEST_F(PressureTest, FullBucketsOfHalfOpenFlowsMakeRoomToo) {
    // 32 buckets, 256 slots: room in the store. The test key: the load is shared.
    ASSERT_NO_FATAL_FAILURE(load(
        256, std::array<std::uint8_t, 16>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}));
    std::uint32_t A = 0, B = 0;
    for (std::uint16_t port = 1; A == B; ++port) {  // two distinct buckets (the key is random)
        const Conn first(false, {"10.9.0.1", port}, {"10.8.0.1", 80});
        A = tt_bucket1(index_hash(&first.key), mask());
        B = tt_bucket2(index_hash(&first.key), mask());
    }
    auto keys = search(2 * TT_INDEX_WAYS + 1, [&](std::uint32_t h) {
        const std::uint32_t b1 = tt_bucket1(h, mask()), b2 = tt_bucket2(h, mask());
        return (b1 == A && b2 == B) || (b1 == B && b2 == A);
    });
    ASSERT_EQ(keys.size(), 2 * TT_INDEX_WAYS + 1u);
    for (std::size_t i = 0; i + 1 < keys.size(); ++i) ingress(keys[i].c2s(kSyn));
    for (std::uint32_t b : {A, B})
        for (std::uint32_t e : bucket(b).ent) ASSERT_NE(e, 0u) << "bucket " << b << " not full";
    const auto oldest = live_slot(keys[0].key);
    ASSERT_TRUE(oldest);
    Conn k = keys.back();
    egress(k.c2s(kSyn));
    const auto ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].key, keys[0].key);
    EXPECT_EQ(ev[0].reason, TT_CLOSE_DISPLACED);
    const auto at = live_slot(k.key);
    ASSERT_TRUE(at);
    EXPECT_EQ(at->slot, oldest->slot);
    EXPECT_EQ(index_entries(k.key, at->slot), 1);
    EXPECT_EQ(stat(TT_STAT_UNTRACKED), 0u);
    EXPECT_EQ(stat(TT_STAT_DISPLACED), 1u);
}

// The collector reports a displaced flow once, final, marked, with its counts.
TEST_F(PressureTest, CollectorReportsADisplacedFlowOnceAndItsSlotCarriesOn) {
    ASSERT_NO_FATAL_FAILURE(load(2));  // shared with the filter tests
    tcptrack::Collector col = collector();
    Conn a(false, {"10.0.0.1", 1}, {"10.0.0.2", 80}), b(false, {"10.0.0.1", 2}, {"10.0.0.2", 80}),
        n(false, {"10.0.0.1", 3}, {"10.0.0.2", 80});
    ingress(a.c2s(kSyn));
    egress(a.s2c(kSyn | kAck));
    ingress(b.c2s(kAck | kPsh, 40));  // one-way, mid-stream
    auto got = col.collect(tcptrack::monotonic_ns(), kNeverIdle);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(col.assured(), 0u);
    EXPECT_EQ(col.capacity(), 2u);
    egress(n.c2s(kSyn));
    ingress(n.s2c(kSyn | kAck));
    egress(n.c2s(kAck));
    col.poll(0);
    got = col.collect(tcptrack::monotonic_ns(), kNeverIdle);
    ASSERT_EQ(got.size(), 3u);
    int finished = 0;
    for (const auto& s : got) {
        if (!s.finished) continue;
        ++finished;
        EXPECT_EQ(s.key, a.key);
        EXPECT_TRUE(s.info.flags & TT_F_DISPLACED);
        EXPECT_EQ(s.info.state, TT_SYN_RECV);
        EXPECT_EQ(totals_of(s), a.expect);
    }
    EXPECT_EQ(finished, 1);
    EXPECT_EQ(col.live(), 2u);
    EXPECT_EQ(col.assured(), 1u);
    EXPECT_EQ(col.stats().displaced, 1u);
    got = col.collect(tcptrack::monotonic_ns(), kNeverIdle);
    for (const auto& s : got) EXPECT_FALSE(s.finished) << "reported twice";
    // The slot the newcomer took is not recycled behind its back.
    egress(n.c2s(kAck | kPsh, 5));
    EXPECT_EQ(totals_of(live_slot(n.key)->s), n.expect);
}

// Unassured flows idle out at their own (shorter) limit.
TEST_F(PressureTest, UnassuredFlowsIdleOutAtTheirOwnLimit) {
    tcptrack::Collector col = collector();
    Conn half(false, {"10.0.0.1", 7}, {"10.0.0.2", 80}),
        real(false, {"10.0.0.1", 8}, {"10.0.0.2", 80});
    ingress(half.c2s(kSyn));
    egress(real.c2s(kSyn));
    ingress(real.s2c(kSyn | kAck));
    egress(real.c2s(kAck));
    const std::uint64_t t0 = tcptrack::monotonic_ns();
    col.collect(t0, kNeverIdle);
    // 1 s later, with a 0.5 s unassured limit and a 10 s idle limit.
    col.collect(t0 + 1000000000ull, 10000000000ull, 500000000ull);
    ASSERT_EQ(col.idle().size(), 1u);
    EXPECT_EQ(col.idle()[0].slot, live_slot(half.key)->slot);
}

// A fixed test key (the same one FullBucketsOfHalfOpenFlowsMakeRoomToo uses:
// one load, verified once, also in the kernel matrix's slow guests).
const std::array<std::uint8_t, 16> kTestKey{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

// The kernel places a flow where the key it was loaded with says.
TEST_F(PressureTest, FixedKeyPlacesFlowsWhereThatKeySays) {
    ASSERT_NO_FATAL_FAILURE(load(256, kTestKey));
    tt_hash_key other = hash_key();
    other.k1 ^= 1ull << 63;
    int moved = 0;
    for (std::uint16_t port = 1; port <= 64; ++port) {
        Conn c(false, {"10.0.0.1", port}, {"10.0.0.2", 80});
        egress(c.c2s(kSyn));
        const auto at = live_slot(c.key);
        ASSERT_TRUE(at);
        // index_entries() recomputes the buckets with the test key.
        EXPECT_EQ(index_entries(c.key, at->slot), 1) << port;
        moved += tt_bucket1(index_hash(&c.key), mask()) !=
                 tt_bucket1(tt_index_hash(&c.key, &other), mask());
    }
    // Discriminating: one bit of the key moves almost every flow (1 in 32 stays).
    EXPECT_GE(moved, 50);
}

}  // namespace
}  // namespace tt_test
