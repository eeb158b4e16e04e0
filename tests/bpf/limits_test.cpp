// SPDX-License-Identifier: MIT
// Limits: a store full of assured connections refuses (and counts) new ones
// until the collector recycles dead slots; a full close ring keeps finished
// connections in their slots (flagged), a reused tuple's old one too (the new
// one takes another slot), for the collector to report exactly once: a close
// is never lost while the store has room.
#include <algorithm>
#include <cstdint>
#include <map>
#include <vector>

#include "bpf_fixture.hpp"

namespace tt_test {
namespace {

using StoreFullTest = BpfTest;
using RingFullTest = BpfTest;

TEST_F(StoreFullTest, FourAssuredSlotsTrackFourCountTheRestUntracked) {
    ASSERT_NO_FATAL_FAILURE(load(4));
    std::vector<Conn> c;
    for (std::uint16_t port = 1; port <= 6; ++port)
        c.emplace_back(false, Endpoint{"10.0.0.1", port}, Endpoint{"10.0.0.2", 80});
    for (int i = 0; i < 4; ++i) {  // handshakes: assured, never displaced
        egress(c[i].c2s(kSyn));
        ingress(c[i].s2c(kSyn | kAck));
        egress(c[i].c2s(kAck | kPsh, 10 + i));
    }
    for (int i = 4; i < 6; ++i) egress(c[i].c2s(kSyn));
    auto f = flows();
    EXPECT_EQ(f.size(), 4u);
    for (int i = 0; i < 4; ++i) {
        const auto at = live_slot(c[i].key);
        ASSERT_TRUE(at) << i;
        EXPECT_EQ(totals_of(at->s), c[i].expect) << i;
        EXPECT_TRUE(at->s.info.flags & TT_F_ASSURED) << i;
    }
    EXPECT_EQ(stat(TT_STAT_UNTRACKED), 2u);
    EXPECT_EQ(stat(TT_STAT_UNTRACKED_FULL), 2u);
    EXPECT_EQ(stat(TT_STAT_UNTRACKED_BUCKETS), 0u);
    EXPECT_EQ(stat(TT_STAT_UNTRACKED_SEGS), 2u);
    EXPECT_EQ(stat(TT_STAT_DISPLACED), 0u);
    EXPECT_TRUE(drain_events().empty());
    // Later segments of a refused connection count as segments, not as new connections.
    ingress(c[5].s2c(kSyn | kAck));
    egress(c[5].c2s(kAck | kPsh, 100));
    EXPECT_EQ(stat(TT_STAT_UNTRACKED), 2u);
    EXPECT_EQ(stat(TT_STAT_UNTRACKED_SEGS), 4u);
}

// Dead slots come back only through the collector, a collect() after the one
// that saw them die (no classifier can still be counting into them by then):
// until then a full store keeps refusing, and counting, new connections.
TEST_F(StoreFullTest, DeadSlotsAreReusedOnlyAfterTheCollectorGivesThemBack) {
    ASSERT_NO_FATAL_FAILURE(load(4));
    tcptrack::Collector col = collector();  // the ring's consumer in this test
    std::vector<Conn> c;
    for (std::uint16_t port = 1; port <= 12; ++port)
        c.emplace_back(false, Endpoint{"10.0.0.1", port}, Endpoint{"10.0.0.2", 80});
    for (int i = 0; i < 4; ++i) {
        egress(c[i].c2s(kSyn));
        ingress(c[i].s2c(kSyn | kAck));
        egress(c[i].c2s(kAck | kPsh, 100 + i));
    }
    std::vector<LiveSlot> first;
    for (int i = 0; i < 4; ++i) {
        const auto at = live_slot(c[i].key);
        ASSERT_TRUE(at) << i;
        EXPECT_EQ(totals_of(at->s), c[i].expect) << i;
        first.push_back(*at);
    }
    egress(c[4].c2s(kSyn));
    EXPECT_EQ(stat(TT_STAT_UNTRACKED), 1u);
    EXPECT_EQ(col.collect(tcptrack::monotonic_ns(), kNeverIdle).size(), 4u);

    // Two die. Their slots are not free yet.
    ingress(c[0].s2c(kRst | kAck));
    egress(c[1].c2s(kRst | kAck));
    egress(c[5].c2s(kSyn));
    EXPECT_EQ(stat(TT_STAT_UNTRACKED), 2u) << "a dead slot was taken before the collector saw it";
    col.poll(0);
    auto got = col.collect(tcptrack::monotonic_ns(), kNeverIdle);  // sees them die
    ASSERT_EQ(got.size(), 4u);
    int finished = 0;
    for (const auto& s : got) {
        if (!s.finished) continue;
        ++finished;
        const int i = s.key == c[0].key ? 0 : 1;
        EXPECT_EQ(s.key, c[i].key);
        EXPECT_EQ(s.ref, (tcptrack::SlotRef{first[i].slot, first[i].s.gen}));
        EXPECT_EQ(totals_of(s), c[i].expect);
        EXPECT_EQ(s.info.state, TT_RESET);
    }
    EXPECT_EQ(finished, 2);
    egress(c[6].c2s(kSyn));
    EXPECT_EQ(stat(TT_STAT_UNTRACKED), 3u) << "recycled in the collect() that saw the death";

    got = col.collect(tcptrack::monotonic_ns(), kNeverIdle);  // gives them back
    EXPECT_EQ(got.size(), 2u);
    for (const auto& s : got) EXPECT_FALSE(s.finished) << "a close reported twice";
    for (int i : {7, 8}) {
        egress(c[i].c2s(kSyn));
        ingress(c[i].s2c(kSyn | kAck));
        egress(c[i].c2s(kAck | kPsh, 10 * i));
    }
    egress(c[9].c2s(kSyn));  // two slots came back, both taken now
    EXPECT_EQ(stat(TT_STAT_UNTRACKED), 4u);
    EXPECT_EQ(stat(TT_STAT_UNTRACKED_SEGS), 4u);
    EXPECT_EQ(next_fresh(), 4u);
    // The new flows hold the dead ones' slots under the next generation, with
    // only their own counts.
    std::map<std::uint32_t, std::uint32_t> old_gen{{first[0].slot, first[0].s.gen},
                                                   {first[1].slot, first[1].s.gen}};
    for (int i : {7, 8}) {
        const auto at = live_slot(c[i].key);
        ASSERT_TRUE(at) << i;
        ASSERT_TRUE(old_gen.count(at->slot)) << "slot " << at->slot << " was not recycled";
        EXPECT_EQ(at->s.gen, old_gen[at->slot] + 2);
        old_gen.erase(at->slot);
        EXPECT_EQ(totals_of(at->s), c[i].expect) << i;
        EXPECT_EQ(at->s.info.syn_seq, 1000u);
    }
    got = col.collect(tcptrack::monotonic_ns(), kNeverIdle);
    ASSERT_EQ(got.size(), 4u);
    for (const auto& s : got) {
        EXPECT_FALSE(s.finished);
        int i = 0;
        while (i < 12 && !(c[i].key == s.key)) ++i;
        ASSERT_TRUE(i == 2 || i == 3 || i == 7 || i == 8) << ::testing::PrintToString(s.key);
        EXPECT_EQ(totals_of(s), c[i].expect) << i;
    }
    EXPECT_EQ(col.changed().size(), 2u) << "only the two new flows changed";
}

TEST_F(RingFullTest, RingFullKeepsFinishedFlowForCollectorToReap) {
    // 2 MiB ring, 184 bytes a record (176 + header): fill it with RST-ended
    // connections, each in its own slot (none is recycled without a collector).
    std::uint32_t n = 0;
    while (stat(TT_STAT_CLOSE_DROPPED) == 0 && n < 20000) {
        Conn c(false, {"10.2.0.1", std::uint16_t(1 + n % 60000)},
               {n < 60000 ? "10.2.0.2" : "10.2.0.3", 80});
        egress(c.c2s(kSyn));
        ingress(c.s2c(kRst | kAck));
        ++n;
    }
    ASSERT_EQ(stat(TT_STAT_CLOSE_DROPPED), 1u);
    // The last one stays live in its slot, marked for reaping.
    auto s = states();
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s[0].second.state, TT_RESET);
    EXPECT_TRUE(s[0].second.flags & TT_F_REAP);
    EXPECT_EQ(flows().size(), 1u);
    EXPECT_EQ(drain_events().size(), n - 1);

    const auto reap = live_slot(s[0].first);
    ASSERT_TRUE(reap);

    tcptrack::Collector col = collector();
    auto got = col.collect(tcptrack::monotonic_ns(), kNeverIdle);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_TRUE(got[0].finished);
    EXPECT_EQ(got[0].key, s[0].first);
    EXPECT_EQ(got[0].ref, (tcptrack::SlotRef{reap->slot, reap->s.gen}));
    EXPECT_EQ(totals_of(got[0]), totals_of(reap->s));
    EXPECT_EQ(col.changed(), std::vector<std::uint32_t>{0});
    expect_empty("reaped");
    EXPECT_EQ(index_entries(s[0].first, reap->slot), 0);
    // Final exactly once.
    EXPECT_TRUE(col.collect(tcptrack::monotonic_ns(), kNeverIdle).empty());
    EXPECT_TRUE(col.changed().empty());
}

TEST_F(RingFullTest, RingFullReusedTupleKeepsOldConnectionInItsSlotForCollector) {
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    establish(c);
    const Totals old = c.expect;
    const auto old_at = live_slot(c.key);
    ASSERT_TRUE(old_at);
    const auto old_info = old_at->s.info;

    // Fill the ring with RST-ended connections until one does not fit (it
    // stays live, flagged for reaping). No collector runs meanwhile: a
    // collect() would drain the ring.
    std::uint32_t n = 0;
    tt_flow_key leftover{};
    while (stat(TT_STAT_CLOSE_DROPPED) == 0 && n < 20000) {
        Conn f(false, {"10.2.0.1", std::uint16_t(1 + n)}, {"10.2.0.2", 80});
        egress(f.c2s(kSyn));
        ingress(f.s2c(kRst | kAck));
        leftover = f.key;
        ++n;
    }
    ASSERT_EQ(stat(TT_STAT_CLOSE_DROPPED), 1u);
    ASSERT_EQ(live_slots().size(), 2u);

    // The ring is full: the reused tuple's old connection stays in its slot,
    // finished and out of the index; the new one gets another slot.
    Conn fresh = c;
    fresh.cseq = 777777;
    fresh.expect = {};
    egress(fresh.c2s(kSyn));
    std::vector<LiveSlot> same;
    for (const LiveSlot& l : live_slots())
        if (l.s.key == c.key) same.push_back(l);
    ASSERT_EQ(same.size(), 2u);
    const LiveSlot& kept = same[0].slot == old_at->slot ? same[0] : same[1];
    const LiveSlot& now_at = same[0].slot == old_at->slot ? same[1] : same[0];
    ASSERT_EQ(kept.slot, old_at->slot);
    EXPECT_EQ(kept.s.gen, old_at->s.gen);
    EXPECT_EQ(totals_of(kept.s), old);
    EXPECT_TRUE(kept.s.info.flags & TT_F_REAP);
    EXPECT_TRUE(kept.s.info.flags & TT_F_DONE);
    EXPECT_EQ(index_entries(c.key, kept.slot), 0) << "lookups must not find the old one";
    EXPECT_NE(now_at.slot, old_at->slot);
    EXPECT_EQ(index_entries(c.key, now_at.slot), 1);
    EXPECT_EQ(totals_of(now_at.s), fresh.expect);
    EXPECT_EQ(now_at.s.info.state, TT_SYN_SENT);
    EXPECT_EQ(stat(TT_STAT_CLOSE_DROPPED), 2u);
    EXPECT_EQ(stat(TT_STAT_CLOSE_LOST), 0u);
    // The new connection goes on counting in its own slot.
    ingress(fresh.s2c(kSyn | kAck));
    egress(fresh.c2s(kAck | kPsh, 70));

    EXPECT_EQ(drain_events().size(), n - 1);  // make room
    tcptrack::Collector col = collector();
    auto got = col.collect(tcptrack::monotonic_ns(), kNeverIdle);
    std::vector<tcptrack::FlowSample> finished, live;
    for (const auto& s : got) {
        if (s.finished && s.key == leftover) continue;  // reaped (the test above)
        (s.finished ? finished : live).push_back(s);
    }
    EXPECT_EQ(got.size(), 3u);
    ASSERT_EQ(finished.size(), 1u);
    EXPECT_EQ(finished[0].key, c.key);
    EXPECT_EQ(finished[0].ref, (tcptrack::SlotRef{old_at->slot, old_at->s.gen}));
    ASSERT_EQ(live.size(), 1u);
    EXPECT_EQ(live[0].key, c.key);
    EXPECT_EQ(live[0].ref, (tcptrack::SlotRef{now_at.slot, now_at.s.gen}));
    EXPECT_EQ(totals_of(live[0]), fresh.expect);
    EXPECT_EQ(finished[0].info.first_ns, old_info.first_ns);
    EXPECT_EQ(totals_of(finished[0]), old);
    EXPECT_EQ(finished[0].info.state, TT_CLOSED);  // replaced by a new SYN: over
    // Reported exactly once.
    auto again = col.collect(tcptrack::monotonic_ns(), kNeverIdle);
    EXPECT_EQ(again.size(), 1u);
    for (const auto& s : again) EXPECT_FALSE(s.finished) << "kept close reported twice";
}

}  // namespace
}  // namespace tt_test
