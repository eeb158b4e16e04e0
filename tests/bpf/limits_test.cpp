// SPDX-License-Identifier: MIT
// Limits: a full flow map refuses (and counts) new connections; a full close
// ring keeps finished connections in the maps (flagged) or parks a reused
// tuple's old one, for the collector to report: a close is never lost.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "bpf_fixture.hpp"

namespace tt_test {
namespace {

using MapFullTest = BpfTest;
using RingFullTest = BpfTest;

TEST_P(MapFullTest, MapFullTracksFourCountsTwoUntracked) {
    ASSERT_NO_FATAL_FAILURE(load(4));
    std::vector<tt_flow_key> first4;
    for (std::uint16_t port = 1; port <= 6; ++port) {
        Conn c(false, {"10.0.0.1", port}, {"10.0.0.2", 80});
        egress(c.c2s(kSyn));
        if (port <= 4) first4.push_back(c.key);
    }
    auto f = flows();
    EXPECT_EQ(f.size(), 4u);
    EXPECT_EQ(states().size(), 4u);
    for (const auto& [k, t] : f)
        EXPECT_NE(std::find(first4.begin(), first4.end(), k), first4.end());
    EXPECT_EQ(stat(TT_STAT_UNTRACKED), 2u);
    EXPECT_EQ(stat(TT_STAT_UNTRACKED_SEGS), 2u);
    // Later segments of a refused connection count as segments, not as new connections.
    Conn late(false, {"10.0.0.1", 6}, {"10.0.0.2", 80});
    ingress(late.s2c(kSyn | kAck));
    egress(late.c2s(kAck | kPsh, 100));
    EXPECT_EQ(stat(TT_STAT_UNTRACKED), 2u);
    EXPECT_EQ(stat(TT_STAT_UNTRACKED_SEGS), 4u);
}

TEST_P(RingFullTest, RingFullKeepsFinishedFlowForCollectorToReap) {
    // 2 MiB ring, 168 bytes a record: fill it with RST-ended connections.
    std::uint32_t n = 0;
    while (stat(TT_STAT_CLOSE_DROPPED) == 0 && n < 20000) {
        Conn c(false, {"10.2.0.1", std::uint16_t(1 + n % 60000)},
               {n < 60000 ? "10.2.0.2" : "10.2.0.3", 80});
        egress(c.c2s(kSyn));
        ingress(c.s2c(kRst | kAck));
        ++n;
    }
    ASSERT_EQ(stat(TT_STAT_CLOSE_DROPPED), 1u);
    // The last one stays in the maps, marked for reaping.
    auto s = states();
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s[0].second.state, TT_RESET);
    EXPECT_TRUE(s[0].second.flags & TT_F_REAP);
    EXPECT_EQ(flows().size(), 1u);
    EXPECT_EQ(drain_events().size(), n - 1);

    tcptrack::Collector col = collector();
    auto got = col.collect(tcptrack::monotonic_ns());
    ASSERT_EQ(got.size(), 1u);
    EXPECT_TRUE(got[0].finished);
    EXPECT_EQ(got[0].key, s[0].first);
    expect_empty("reaped");
}

TEST_P(RingFullTest, RingFullReusedTupleParksOldConnectionForCollector) {
    // Fill the ring with RST-ended connections until one does not fit.
    std::uint32_t n = 0;
    while (stat(TT_STAT_CLOSE_DROPPED) == 0 && n < 20000) {
        Conn f(false, {"10.2.0.1", std::uint16_t(1 + n)}, {"10.2.0.2", 80});
        egress(f.c2s(kSyn));
        ingress(f.s2c(kRst | kAck));
        ++n;
    }
    ASSERT_EQ(stat(TT_STAT_CLOSE_DROPPED), 1u);
    // Clear the reaped leftover so only the reused tuple is in the maps.
    collector().collect(tcptrack::monotonic_ns());
    expect_empty("leftover reaped");

    // The ring is still full: a reused tuple's old connection must be parked, not lost.
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    establish(c);
    const Totals old = c.expect;
    const auto old_info = states()[0].second;
    Conn fresh = c;
    fresh.cseq = 777777;
    fresh.expect = {};
    egress(fresh.c2s(kSyn));
    expect_single(c.key, fresh.expect, TT_SYN_SENT, "new SYN");
    EXPECT_EQ(stat(TT_STAT_CLOSE_DROPPED), 2u);
    EXPECT_EQ(stat(TT_STAT_CLOSE_LOST), 0u);

    drain_events();  // make room; the parked event is read from its map
    tcptrack::Collector col = collector();
    auto got = col.collect(tcptrack::monotonic_ns());
    std::vector<tcptrack::FlowSample> finished;
    for (const auto& s : got)
        if (s.finished) finished.push_back(s);
    ASSERT_EQ(finished.size(), 1u);
    EXPECT_EQ(finished[0].key, c.key);
    EXPECT_EQ(finished[0].info.first_ns, old_info.first_ns);
    for (int d = 0; d < 2; ++d) {
        EXPECT_EQ(finished[0].bytes[d], old.bytes[d]);
        EXPECT_EQ(finished[0].packets[d], old.packets[d]);
        EXPECT_EQ(finished[0].payload[d], old.payload[d]);
    }
    EXPECT_EQ(finished[0].info.state, TT_CLOSED);  // replaced by a new SYN: over
    // Drained exactly once.
    auto again = col.collect(tcptrack::monotonic_ns());
    for (const auto& s : again) EXPECT_FALSE(s.finished) << "parked close reported twice";
}

INSTANTIATE_TEST_SUITE_P(Bpf, MapFullTest, ::testing::ValuesIn(datapath_paths()), path_name);
INSTANTIATE_TEST_SUITE_P(Bpf, RingFullTest, ::testing::ValuesIn(reader_paths()), path_name);

}  // namespace
}  // namespace tt_test
