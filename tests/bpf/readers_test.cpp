// SPDX-License-Identifier: MIT
// Readers: the production Collector reads the datapath through each reader
// (map iterator, batched lookups, key by key) on each datapath, and every
// reader gives the same rows, exact to the byte.
#include <bpf/bpf.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "bpf_fixture.hpp"

namespace tt_test {
namespace {

using ReaderTest = BpfTest;
using tcptrack::FlowSample;

TEST_P(ReaderTest, ProductionCollectorReportsLiveThenFinishedFlow) {
    tcptrack::Collector col = collector();  // sole ring consumer in this test
    EXPECT_EQ(col.reader(), reader());
    Conn c(false, {"10.1.0.1", 40000}, {"10.1.0.2", 80});
    establish(c);
    auto live = col.collect(tcptrack::monotonic_ns());
    ASSERT_EQ(live.size(), 1u);
    EXPECT_EQ(live[0].key, c.key);
    EXPECT_TRUE(live[0].has_info);
    EXPECT_FALSE(live[0].finished);
    EXPECT_EQ(live[0].info.state, TT_ESTABLISHED);
    EXPECT_EQ(totals_of(live[0]), c.expect);

    egress(c.c2s(kFin | kAck));
    ingress(c.s2c(kFin | kAck));
    egress(c.c2s(kAck));
    col.poll(0);
    auto done = col.collect(tcptrack::monotonic_ns());
    ASSERT_EQ(done.size(), 1u);
    EXPECT_TRUE(done[0].finished);
    EXPECT_EQ(done[0].info.state, TT_CLOSED);
    EXPECT_EQ(totals_of(done[0]), c.expect);
    EXPECT_TRUE(col.collect(tcptrack::monotonic_ns()).empty());
}

std::string key_bytes(const tt_flow_key& k) {
    return std::string(reinterpret_cast<const char*>(&k), sizeof(k));
}

// Same rows in the same order, every field.
void expect_same_rows(const std::vector<FlowSample>& got, const std::vector<FlowSample>& want,
                      const std::string& what) {
    SCOPED_TRACE(what);
    ASSERT_EQ(got.size(), want.size());
    int bad = 0;
    for (std::size_t i = 0; i < got.size() && bad < 5; ++i) {
        const FlowSample& a = got[i];
        const FlowSample& b = want[i];
        const bool same = a.key == b.key && a.hash == b.hash &&
                          std::memcmp(&a.info, &b.info, sizeof(a.info)) == 0 &&
                          totals_of(a) == totals_of(b) && a.has_info == b.has_info &&
                          a.finished == b.finished;
        if (same) continue;
        ++bad;
        ADD_FAILURE() << "row " << i << ": " << ::testing::PrintToString(a.key) << " "
                      << ::testing::PrintToString(totals_of(a)) << " state "
                      << int(a.info.state) << " has_info " << a.has_info << " finished "
                      << a.finished << "\n  expected " << ::testing::PrintToString(b.key) << " "
                      << ::testing::PrintToString(totals_of(b)) << " state "
                      << int(b.info.state) << " has_info " << b.has_info << " finished "
                      << b.finished;
    }
}

// More flows than one batch (8192 entries per BPF_MAP_LOOKUP_BATCH) and than
// one read() of the iterator, in every lifecycle state, IPv4 and IPv6, one of
// them with its last segments in the per-CPU memo, plus closed ones in the
// ring: this path's reader reports each exactly, and its live rows are the
// ones the key-by-key reader (which every kernel has) reports.
TEST_P(ReaderTest, ManyFlowsInEveryStateReadExactlyAndAlikeByEveryReader) {
    struct Want {
        Conn c;
        std::uint8_t state;
        bool finished = false;
    };
    std::vector<Want> want;
    constexpr int kBulk = 8300;
    want.reserve(kBulk + 32);
    for (int i = 0; i < kBulk; ++i) {  // first seen mid-stream: one data segment each
        Conn c(false,
               {"10.4." + std::to_string(i / 250) + "." + std::to_string(1 + i % 250),
                std::uint16_t(40000 + i % 7)},
               {"10.5.0.1", 443});
        egress(c.c2s(kAck | kPsh, 1 + i % 1400));
        want.push_back({c, TT_ESTABLISHED});
    }
    std::uint16_t port = 1000;
    for (bool v6 : {false, true}) {
        auto conn = [&] {
            ++port;
            return v6 ? Conn(true, {"2001:db8:6::1", port}, {"2001:db8:6::2", 80})
                      : Conn(false, {"10.6.0.1", port}, {"10.6.0.2", 80});
        };
        auto handshake = [&](Conn& c) {
            egress(c.c2s(kSyn));
            ingress(c.s2c(kSyn | kAck));
            egress(c.c2s(kAck));
        };
        Conn syn = conn();
        egress(syn.c2s(kSyn));
        want.push_back({syn, TT_SYN_SENT});
        Conn synack = conn();
        egress(synack.c2s(kSyn));
        ingress(synack.s2c(kSyn | kAck));
        want.push_back({synack, TT_SYN_RECV});
        Conn est = conn();
        handshake(est);
        ingress(est.s2c(kAck | kPsh, 700));
        want.push_back({est, TT_ESTABLISHED});
        Conn server_side = conn();  // a connection to this host: its client's packets come in
        ingress(server_side.c2s(kSyn));
        egress(server_side.s2c(kSyn | kAck));
        ingress(server_side.c2s(kAck));
        ingress(server_side.c2s(kAck | kPsh, 300));
        want.push_back({server_side, TT_ESTABLISHED});
        Conn closing = conn();
        handshake(closing);
        egress(closing.c2s(kFin | kAck));
        want.push_back({closing, TT_CLOSING});
        Conn rst = conn();  // over: its close event is the row
        handshake(rst);
        egress(rst.c2s(kAck | kPsh, 50));
        ingress(rst.s2c(kRst | kAck));
        want.push_back({rst, TT_RESET, true});
        Conn finished = conn();
        handshake(finished);
        egress(finished.c2s(kFin | kAck));
        ingress(finished.s2c(kFin | kAck));
        egress(finished.c2s(kAck));
        want.push_back({finished, TT_CLOSED, true});
        Conn bulk = conn();  // consecutive segments: the per-CPU datapath's memo holds some
        handshake(bulk);
        for (int i = 0; i < 5; ++i) egress(bulk.c2s(kAck | kPsh, 1000));
        want.push_back({bulk, TT_ESTABLISHED});
        Conn closed = conn();  // both FINs, the last ACK not seen yet
        handshake(closed);
        egress(closed.c2s(kFin | kAck));
        ingress(closed.s2c(kFin | kAck));
        want.push_back({closed, TT_CLOSED});
    }

    // One time for every read, so every reader makes the same reap decisions.
    const std::uint64_t now = tcptrack::monotonic_ns();
    std::map<std::string, const Want*> by_key;
    for (Want& w : want) {
        if (w.state == TT_CLOSED && !w.finished) {
            // Both FINs, no last ACK: live within the collector's 1 s grace, then reaped.
            tt_flow_state st{};
            ASSERT_EQ(bpf_map_lookup_elem_flags(states_fd(), &w.c.key, &st, BPF_F_LOCK), 0);
            w.finished = now > st.info.close_ns + 1000000000ull;
        }
        ASSERT_TRUE(by_key.emplace(key_bytes(w.c.key), &w).second)
            << "two connections on " << ::testing::PrintToString(w.c.key);
    }

    tcptrack::Collector col = collector();
    ASSERT_EQ(col.reader(), reader());
    col.poll(0);
    const std::vector<FlowSample> got = col.collect(now);
    ASSERT_EQ(got.size(), want.size());
    std::vector<FlowSample> live;
    std::map<std::string, int> seen;
    int bad = 0;
    for (const FlowSample& s : got) {
        const auto it = by_key.find(key_bytes(s.key));
        ASSERT_NE(it, by_key.end()) << "unknown flow " << ::testing::PrintToString(s.key);
        ASSERT_EQ(++seen[it->first], 1) << "twice: " << ::testing::PrintToString(s.key);
        const Want& w = *it->second;
        if (!s.finished) live.push_back(s);
        if (totals_of(s) == w.c.expect && s.has_info && s.info.state == w.state &&
            s.finished == w.finished)
            continue;
        if (++bad > 5) continue;
        ADD_FAILURE() << ::testing::PrintToString(s.key) << ": "
                      << ::testing::PrintToString(totals_of(s)) << " state "
                      << int(s.info.state) << " has_info " << s.has_info << " finished "
                      << s.finished << "\n  expected " << ::testing::PrintToString(w.c.expect)
                      << " state " << int(w.state) << " finished " << w.finished;
    }
    EXPECT_EQ(bad, 0) << "flows reported wrong";
    const auto open = std::count_if(want.begin(), want.end(), [](const Want& w) { return !w.finished; });
    EXPECT_EQ(live.size(), std::size_t(open));

    // The key-by-key reader sees the same live rows (the ring is drained: no closed ones).
    tcptrack::Collector by_keys(*skel_, tcptrack::Reader::Keys);
    expect_same_rows(by_keys.collect(now), live, "key-by-key reader");
    // A second read: closed connections were reported once, live ones are unchanged.
    expect_same_rows(col.collect(now), live, "second read");
}

INSTANTIATE_TEST_SUITE_P(Bpf, ReaderTest, ::testing::ValuesIn(reader_paths()), path_name);

}  // namespace
}  // namespace tt_test
