// SPDX-License-Identifier: MIT
// From raw kernel records to oriented rows, rates and report order
// (src/report/flow_model.cpp, src/report/report_builder.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "tcptrack/lifecycle.h"
#include "handshake_times.hpp"
#include "keys.hpp"
#include "make_row.hpp"
#include "report/flow_model.hpp"
#include "report/report_builder.hpp"

namespace {

using tcptrack::client_side;
using tcptrack::Family;
using tcptrack::FlowRow;
using tcptrack::FlowSample;
using tcptrack::handshake_rtt;
using tcptrack::make_row;
using tcptrack::Rate;
using tcptrack::rate_of;
using tcptrack::ReportBuilder;
using tcptrack::SampleKey;
using tcptrack::shown_state;
using tcptrack::State;
using tcptrack::syn_to_close;
using tt_test::same_key;

constexpr std::uint64_t kSec = 1'000'000'000ull;

using tt_test::address;

// A normalised key must have (a, pa) sort before (b, pb); checked here.
tt_flow_key normalised(const tt_flow_key& k) {
    EXPECT_LT(tt_endpoint_cmp(k.addr_a, k.port_a, k.addr_b, k.port_b), 0);
    return k;
}

tt_flow_key key_v4(const char* a, std::uint16_t pa, const char* b, std::uint16_t pb) {
    return normalised(tt_test::flow_key(AF_INET, a, pa, b, pb, 2));
}

tt_flow_key key_v6(const char* a, std::uint16_t pa, const char* b, std::uint16_t pb) {
    return normalised(tt_test::flow_key(AF_INET6, a, pa, b, pb, 2));
}

FlowSample sample(const tt_flow_key& k, std::uint8_t client, std::uint8_t flags,
                  std::uint64_t first_ns = 100) {
    FlowSample s;
    s.key = k;
    s.has_info = true;
    s.info.first_ns = first_ns;
    s.info.client = client;
    s.info.flags = flags;
    s.info.state = TT_ESTABLISHED;
    return s;
}

FlowSample mid(std::uint16_t pa, std::uint16_t pb, std::uint8_t client) {
    return sample(key_v4("10.0.0.1", pa, "10.0.0.2", pb), client, TT_F_MIDSTREAM);
}

void set_counters(FlowSample& s, std::uint64_t bytes_ab, std::uint64_t bytes_ba,
                  std::uint64_t pkts_ab, std::uint64_t pkts_ba) {
    s.bytes[TT_DIR_AB] = bytes_ab;
    s.bytes[TT_DIR_BA] = bytes_ba;
    s.packets[TT_DIR_AB] = pkts_ab;
    s.packets[TT_DIR_BA] = pkts_ba;
}

// A sample with a seen handshake and these counters.
FlowSample counted(const tt_flow_key& k, std::uint8_t client, std::uint64_t bytes_ab,
                   std::uint64_t bytes_ba, std::uint64_t pkts_ab, std::uint64_t pkts_ba) {
    FlowSample s = sample(k, client, TT_F_SYN_SEEN);
    set_counters(s, bytes_ab, bytes_ba, pkts_ab, pkts_ba);
    return s;
}

// One direction's counters.
struct Counts {
    std::uint64_t bytes, packets, payload;
};

void set_dir(FlowSample& s, int dir, Counts c) {
    s.bytes[dir] = c.bytes;
    s.packets[dir] = c.packets;
    s.payload[dir] = c.payload;
}

// The row's client->server (fwd) and server->client (rev) counters.
void expect_counts(const FlowRow& r, Counts fwd, Counts rev) {
    EXPECT_EQ(r.fwd_bytes, fwd.bytes);
    EXPECT_EQ(r.fwd_packets, fwd.packets);
    EXPECT_EQ(r.fwd_payload, fwd.payload);
    EXPECT_EQ(r.rev_bytes, rev.bytes);
    EXPECT_EQ(r.rev_packets, rev.packets);
    EXPECT_EQ(r.rev_payload, rev.payload);
}

void expect_endpoints(const FlowRow& r, int af, const char* src, std::uint16_t sport,
                      const char* dst, std::uint16_t dport) {
    EXPECT_EQ(r.src, address(af, src));
    EXPECT_EQ(r.dst, address(af, dst));
    EXPECT_EQ(r.sport, sport);
    EXPECT_EQ(r.dport, dport);
}

// Handshake timestamps as the datapath records them.
tt_flow_info handshake(std::uint8_t flags, std::uint64_t syn_ns, std::uint64_t synack_ns,
                       std::uint64_t ack_ns) {
    tt_flow_info i{};
    i.flags = flags;
    i.first_ns = syn_ns ? syn_ns : synack_ns;  // the first segment seen
    i.syn_ns = syn_ns;
    i.synack_ns = synack_ns;
    i.ack_ns = ack_ns;
    return i;
}

// ---------------------------------------------------------------- make_row

TEST(FlowModelRow, ClientOnSideBRendersBAsSource) {
    FlowSample s = sample(key_v4("10.0.0.1", 443, "10.0.0.9", 51000), TT_DIR_BA, TT_F_SYN_SEEN);
    set_dir(s, TT_DIR_AB, {9000, 9, 8000});
    set_dir(s, TT_DIR_BA, {700, 7, 100});

    const FlowRow r = make_row(s, "eth0", 1000);
    EXPECT_EQ(r.iface, "eth0");
    EXPECT_EQ(r.family, Family::V4);
    expect_endpoints(r, AF_INET, "10.0.0.9", 51000, "10.0.0.1", 443);
    expect_counts(r, {700, 7, 100}, {9000, 9, 8000});
}

TEST(FlowModelRow, ClientOnSideARendersAAsSource) {
    FlowSample s = sample(key_v4("10.0.0.1", 51000, "10.0.0.9", 443), TT_DIR_AB, TT_F_SYN_SEEN);
    set_dir(s, TT_DIR_AB, {700, 7, 100});
    set_dir(s, TT_DIR_BA, {9000, 9, 8000});

    const FlowRow r = make_row(s, "lo", 1000);
    expect_endpoints(r, AF_INET, "10.0.0.1", 51000, "10.0.0.9", 443);
    expect_counts(r, {700, 7, 100}, {9000, 9, 8000});
}

TEST(FlowModelRow, PortsAreConvertedToHostOrder) {
    // 0x1234 and 0x0050 differ from their byte-swapped forms.
    FlowSample s =
        sample(key_v4("192.168.1.1", 0x1234, "192.168.1.2", 0x0050), TT_DIR_AB, TT_F_SYN_SEEN);
    const FlowRow r = make_row(s, "eth0", 0);
    EXPECT_EQ(r.sport, 0x1234);
    EXPECT_EQ(r.dport, 0x0050);
}

TEST(FlowModelRow, Ipv6FamilyAndFullAddress) {
    FlowSample s =
        sample(key_v6("2001:db8::1", 80, "2001:db8::ff:2", 40000), TT_DIR_BA, TT_F_SYN_SEEN);
    const FlowRow r = make_row(s, "eth1", 0);
    EXPECT_EQ(r.family, Family::V6);
    expect_endpoints(r, AF_INET6, "2001:db8::ff:2", 40000, "2001:db8::1", 80);
}

TEST(FlowModelRow, Ipv4AddressOnlyUsesFirstFourBytes) {
    FlowSample s = sample(key_v4("1.2.3.4", 1000, "5.6.7.8", 2000), TT_DIR_AB, TT_F_SYN_SEEN);
    const FlowRow r = make_row(s, "eth0", 0);
    EXPECT_EQ(r.family, Family::V4);
    const tcptrack::Address want_src{1, 2, 3, 4}, want_dst{5, 6, 7, 8};
    EXPECT_EQ(r.src, want_src);
    EXPECT_EQ(r.dst, want_dst);
}

TEST(FlowModelRow, TimingFieldsFromInfo) {
    FlowSample s = sample(key_v4("10.0.0.1", 40000, "10.0.0.2", 80), TT_DIR_AB,
                          TT_F_SYN_SEEN | TT_F_LOCAL_CLIENT, /*first_ns=*/1000);
    s.info.state = TT_CLOSING;
    set_handshake(s.info, 1000, 1500, 1600);
    const FlowRow r = make_row(s, "eth0", 11000);
    ASSERT_TRUE(r.rtt_ns.has_value());
    EXPECT_EQ(*r.rtt_ns, 500u);
    ASSERT_TRUE(r.duration_ns.has_value());
    EXPECT_EQ(*r.duration_ns, 10000u);
    EXPECT_EQ(r.age_ns, 10000u);
    EXPECT_EQ(r.state, State::Closing);
}

TEST(FlowModelRow, NoInfoLeavesTimingEmpty) {
    FlowSample s;
    s.key = key_v4("10.0.0.1", 40000, "10.0.0.2", 22);
    s.has_info = false;
    const FlowRow r = make_row(s, "eth0", 5000);
    EXPECT_FALSE(r.rtt_ns.has_value());
    EXPECT_FALSE(r.duration_ns.has_value());
    EXPECT_EQ(r.age_ns, 0u);
    EXPECT_EQ(r.state, State::Established);
    // Port heuristics still orient it: 22 is the service on side B.
    EXPECT_EQ(r.sport, 40000);
    EXPECT_EQ(r.dport, 22);
}

// ------------------------------------------------------------- client_side

TEST(FlowModelClientSide, HandshakeSeenUsesInfoClient) {
    // Ports would suggest the opposite; a seen handshake wins.
    EXPECT_EQ(
        client_side(sample(key_v4("10.0.0.1", 80, "10.0.0.2", 50000), TT_DIR_AB, TT_F_SYN_SEEN)),
        TT_DIR_AB);
    EXPECT_EQ(
        client_side(sample(key_v4("10.0.0.1", 50000, "10.0.0.2", 80), TT_DIR_BA, TT_F_SYN_SEEN)),
        TT_DIR_BA);
}

TEST(FlowModelClientSide, MidstreamWellKnownPortIsServer) {
    // A has the well-known port: B is the client, whatever sent first.
    EXPECT_EQ(client_side(mid(443, 5000, TT_DIR_AB)), TT_DIR_BA);
    EXPECT_EQ(client_side(mid(443, 5000, TT_DIR_BA)), TT_DIR_BA);
    // B has the well-known port: A is the client.
    EXPECT_EQ(client_side(mid(5000, 22, TT_DIR_BA)), TT_DIR_AB);
    EXPECT_EQ(client_side(mid(5000, 22, TT_DIR_AB)), TT_DIR_AB);
    // Boundary: 1023 is well known against 1024.
    EXPECT_EQ(client_side(mid(1024, 1023, TT_DIR_BA)), TT_DIR_AB);
}

TEST(FlowModelClientSide, MidstreamEphemeralSideIsClient) {
    // 8080 (< 32768) against 45000 (ephemeral): 45000 is the client.
    EXPECT_EQ(client_side(mid(8080, 45000, TT_DIR_AB)), TT_DIR_BA);
    EXPECT_EQ(client_side(mid(45000, 8080, TT_DIR_BA)), TT_DIR_AB);
    // Boundary: 32767 is not ephemeral, 32768 is.
    EXPECT_EQ(client_side(mid(32768, 32767, TT_DIR_BA)), TT_DIR_AB);
    EXPECT_EQ(client_side(mid(32767, 32768, TT_DIR_AB)), TT_DIR_BA);
}

TEST(FlowModelClientSide, MidstreamAmbiguousPortsUseFirstSender) {
    // Both well known.
    EXPECT_EQ(client_side(mid(22, 80, TT_DIR_AB)), TT_DIR_AB);
    EXPECT_EQ(client_side(mid(22, 80, TT_DIR_BA)), TT_DIR_BA);
    // Both registered (1024..32767).
    EXPECT_EQ(client_side(mid(5000, 6000, TT_DIR_BA)), TT_DIR_BA);
    EXPECT_EQ(client_side(mid(5000, 6000, TT_DIR_AB)), TT_DIR_AB);
    // Both ephemeral.
    EXPECT_EQ(client_side(mid(40000, 50000, TT_DIR_BA)), TT_DIR_BA);
    EXPECT_EQ(client_side(mid(40000, 50000, TT_DIR_AB)), TT_DIR_AB);
}

TEST(FlowModelClientSide, NoInfoUsesPortsThenSideA) {
    FlowSample s;
    s.has_info = false;
    s.info.client = TT_DIR_BA;  // must be ignored: not read from the map
    s.key = key_v4("10.0.0.1", 443, "10.0.0.2", 50000);
    EXPECT_EQ(client_side(s), TT_DIR_BA);
    s.key = key_v4("10.0.0.1", 50000, "10.0.0.2", 443);
    EXPECT_EQ(client_side(s), TT_DIR_AB);
    s.key = key_v4("10.0.0.1", 50000, "10.0.0.2", 60000);
    EXPECT_EQ(client_side(s), TT_DIR_AB);
}

TEST(FlowModelClientSide, MidstreamOrientationReachesRow) {
    FlowSample s = mid(443, 50000, TT_DIR_AB);  // server sent first
    s.bytes[TT_DIR_AB] = 5000;
    s.bytes[TT_DIR_BA] = 300;
    const FlowRow r = make_row(s, "eth0", 0);
    EXPECT_EQ(r.sport, 50000);
    EXPECT_EQ(r.dport, 443);
    EXPECT_EQ(r.src, address(AF_INET, "10.0.0.2"));
    EXPECT_EQ(r.fwd_bytes, 300u);
    EXPECT_EQ(r.rev_bytes, 5000u);
    EXPECT_FALSE(r.duration_ns.has_value());  // SYN never seen
}

// ------------------------------------------------------------ handshake_rtt

TEST(FlowModelRtt, ClientSideIsSynToSynAck) {
    const auto rtt = handshake_rtt(handshake(TT_F_SYN_SEEN | TT_F_LOCAL_CLIENT, 1000, 1700, 5000));
    ASSERT_TRUE(rtt.has_value());
    EXPECT_EQ(*rtt, 700u);
}

TEST(FlowModelRtt, ServerSideIsSynAckToAck) {
    const auto rtt = handshake_rtt(handshake(TT_F_SYN_SEEN, 1000, 1100, 1450));
    ASSERT_TRUE(rtt.has_value());
    EXPECT_EQ(*rtt, 350u);
}

// FlowInfo keeps no SYN time of its own: the datapath's is the first
// segment's when that was a SYN, else 0 (tcptrack/lifecycle.h), through the
// whole handshake.
TEST(FlowModelInfo, SynTimeIsTheDatapathsForEveryFirstSegment) {
    const std::uint8_t kinds[] = {TT_TCP_SYN, TT_TCP_SYN | TT_TCP_ACK, TT_TCP_ACK,
                                  TT_TCP_ACK | TT_TCP_FIN};
    for (const std::uint8_t first : kinds)
        for (const int ingress : {0, 1}) {
            tt_flow_info f;
            tt_info_init(&f, TT_DIR_AB, first, 1000, 5 * kSec, ingress);
            EXPECT_EQ(tcptrack::FlowInfo(f).syn_ns(), f.syn_ns) << int{first};
            f.synack_ns = 6 * kSec, f.ack_ns = 7 * kSec, f.close_ns = 9 * kSec;
            EXPECT_EQ(tcptrack::FlowInfo(f).syn_ns(), f.syn_ns) << int{first};
        }
}

// The sample keeps the handshake RTT in 32 bits: to the ns below 2^31 ns
// (2.1 s), to the us above (a retransmitted SYN or SYN-ACK), up to 35 minutes.
TEST(FlowModelRtt, KeptToTheNsBelowTwoSecondsToTheUsAbove) {
    const std::uint64_t t0 = 5'000'000'000'000ull;
    for (const std::uint64_t rtt :
         {std::uint64_t{1}, std::uint64_t{123'456'789}, (std::uint64_t{1} << 31) - 2}) {
        const auto got = handshake_rtt(handshake(TT_F_LOCAL_CLIENT, t0, t0 + rtt, 0));
        ASSERT_TRUE(got.has_value());
        EXPECT_EQ(*got, rtt);
    }
    for (const std::uint64_t rtt : {(std::uint64_t{1} << 31) - 1, std::uint64_t{3'000'123'456},
                                    std::uint64_t{7'200'000'000'999}}) {
        const auto got = handshake_rtt(handshake(TT_F_SYN_SEEN, t0, t0 + 1, t0 + 1 + rtt));
        ASSERT_TRUE(got.has_value());
        EXPECT_EQ(*got, std::min<std::uint64_t>(rtt, ((std::uint64_t{1} << 31) - 1) * 1000) / 1000 *
                            1000);
    }
}

TEST(FlowModelRtt, MissingTimestampsGiveNothing) {
    tt_flow_info i = handshake(TT_F_SYN_SEEN | TT_F_LOCAL_CLIENT, 1000, 0, 0);
    EXPECT_FALSE(handshake_rtt(i).has_value());  // no SYN-ACK yet
    i.syn_ns = 0;
    i.synack_ns = 2000;
    EXPECT_FALSE(handshake_rtt(i).has_value());  // SYN missed

    tt_flow_info srv = handshake(TT_F_SYN_SEEN, 1000, 1100, 0);
    EXPECT_FALSE(handshake_rtt(srv).has_value());  // no ACK yet
    srv.synack_ns = 0;
    srv.ack_ns = 1200;
    EXPECT_FALSE(handshake_rtt(srv).has_value());  // SYN-ACK missed

    tt_flow_info none{};
    none.flags = TT_F_MIDSTREAM;
    EXPECT_FALSE(handshake_rtt(none).has_value());
}

// ------------------------------------------------------------- syn_to_close

TEST(FlowModelDuration, ClosedIsSynToClose) {
    tt_flow_info i = handshake(TT_F_SYN_SEEN, 2 * kSec, 0, 0);
    i.close_ns = 5 * kSec;
    const auto d = syn_to_close(i, 100 * kSec);
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(*d, 3 * kSec);
}

TEST(FlowModelDuration, OpenIsSynToNow) {
    const tt_flow_info i = handshake(TT_F_SYN_SEEN, 2 * kSec, 0, 0);
    const auto d = syn_to_close(i, 9 * kSec);
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(*d, 7 * kSec);
}

TEST(FlowModelDuration, SynNotSeenGivesNothing) {
    tt_flow_info i{};
    i.flags = TT_F_MIDSTREAM;
    i.close_ns = 5 * kSec;
    EXPECT_FALSE(syn_to_close(i, 9 * kSec).has_value());
    // SYN-ACK first (SYN missed): still no SYN timestamp.
    const tt_flow_info j = handshake(TT_F_HS_SEEN, 0, 2 * kSec, 0);
    EXPECT_FALSE(syn_to_close(j, 9 * kSec).has_value());
    // The flag decides, not a stray timestamp.
    const tt_flow_info k = handshake(TT_F_MIDSTREAM, 2 * kSec, 0, 0);
    EXPECT_FALSE(syn_to_close(k, 9 * kSec).has_value());
}

// -------------------------------------------------------------- shown_state

TEST(FlowModelState, MapsEveryKernelState) {
    FlowSample s;
    s.has_info = true;
    s.finished = true;  // final: no CLOSED -> CLOSING adjustment
    const std::pair<std::uint8_t, State> cases[] = {
        {TT_SYN_SENT, State::SynSent},        {TT_SYN_RECV, State::SynRecv},
        {TT_ESTABLISHED, State::Established}, {TT_CLOSING, State::Closing},
        {TT_CLOSED, State::Closed},           {TT_RESET, State::Reset},
    };
    for (const auto& [kernel, want] : cases) {
        s.info.state = kernel;
        EXPECT_EQ(shown_state(s), want) << "tt_state " << int(kernel);
    }
}

TEST(FlowModelState, BothFinsShowClosingUntilFinal) {
    FlowSample s;
    s.has_info = true;
    s.info.state = TT_CLOSED;
    s.finished = false;  // last ACK still due
    EXPECT_EQ(shown_state(s), State::Closing);
    s.finished = true;
    EXPECT_EQ(shown_state(s), State::Closed);
}

TEST(FlowModelState, NoInfoIsEstablished) {
    FlowSample s;
    s.has_info = false;
    s.info.state = TT_RESET;
    EXPECT_EQ(shown_state(s), State::Established);
}

TEST(FlowModelState, OutOfRangeStateIsEstablished) {
    FlowSample s;
    s.has_info = true;
    s.info.state = 200;
    EXPECT_EQ(shown_state(s), State::Established);
}

// ------------------------------------------------------------------ keys

TEST(FlowModelKey, SameKeyComparesEveryField) {
    const tt_flow_key a = key_v4("10.1.1.1", 1234, "10.1.1.2", 80);
    const tt_flow_key b = key_v4("10.1.1.1", 1234, "10.1.1.2", 80);
    EXPECT_TRUE(same_key(a, b));
    tt_flow_key port = a;
    port.port_b = htons(81);
    tt_flow_key ifc = a;
    ifc.ifindex = 7;
    tt_flow_key fam = key_v6("::a01:101", 1234, "::a01:102", 80);
    EXPECT_FALSE(same_key(a, port));
    EXPECT_FALSE(same_key(a, ifc));
    EXPECT_FALSE(same_key(a, fam));
}

// ------------------------------------------------------------------ rate_of

// A sample as the collector leaves it: counters now, counters at the last
// report (prev), and when they were last seen moving.
FlowSample moved(FlowSample s, std::uint64_t prev_ab, std::uint64_t prev_ba,
                 std::uint64_t last_active_ns) {
    tcptrack::Counts prev;
    prev.bytes[TT_DIR_AB] = prev_ab;
    prev.bytes[TT_DIR_BA] = prev_ba;
    s.set_prev(prev);
    s.last_active_ns = last_active_ns;
    return s;
}

TEST(FlowModelRates, NewFlowCountsAllItsBytes) {
    // First seen at this report: prev is 0, so the whole count is this interval's.
    const tt_flow_key k = key_v4("10.0.0.1", 40000, "10.0.0.2", 80);
    const FlowSample s = moved(counted(k, TT_DIR_AB, 1000, 4000, 3, 4), 0, 0, 10 * kSec);
    const Rate r = rate_of(s, 10 * kSec, 2 * kSec);
    EXPECT_DOUBLE_EQ(r.fwd_bps, 1000.0 * 8 / 2);
    EXPECT_DOUBLE_EQ(r.rev_bps, 4000.0 * 8 / 2);
    EXPECT_EQ(r.idle_ns, 0u);
}

TEST(FlowModelRates, DeltaSincePrevOrientedLikeRow) {
    // Client is side B: fwd is B->A.
    const tt_flow_key k = key_v4("10.0.0.1", 443, "10.0.0.2", 50000);
    const FlowSample s =
        moved(counted(k, TT_DIR_BA, 10000 + 50000, 2000 + 1000, 40, 8), 10000, 2000, 14 * kSec);
    const Rate r = rate_of(s, 14 * kSec, 4 * kSec);
    EXPECT_DOUBLE_EQ(r.fwd_bps, 1000.0 * 8 / 4);
    EXPECT_DOUBLE_EQ(r.rev_bps, 50000.0 * 8 / 4);
    EXPECT_EQ(r.idle_ns, 0u);
    const FlowRow row = make_row(s, "eth0", 14 * kSec);
    EXPECT_EQ(row.fwd_bytes, 3000u);  // totals stay cumulative
    EXPECT_EQ(row.rev_bytes, 60000u);

    // Same counters, client on side A: the rates swap with the orientation.
    FlowSample a = s;
    a.info.client = TT_DIR_AB;
    const Rate ra = rate_of(a, 14 * kSec, 4 * kSec);
    EXPECT_DOUBLE_EQ(ra.fwd_bps, r.rev_bps);
    EXPECT_DOUBLE_EQ(ra.rev_bps, r.fwd_bps);
}

TEST(FlowModelRates, RateOnlyWhenMovedAtThisReport) {
    // prev_bytes is only refreshed when the counters move, so an older
    // movement's delta is still in the sample: it must not be shown again.
    const tt_flow_key k = key_v4("10.0.0.1", 40000, "10.0.0.2", 22);
    const FlowSample s = moved(counted(k, TT_DIR_AB, 700, 600, 6, 6), 500, 600, 10 * kSec);
    EXPECT_DOUBLE_EQ(rate_of(s, 10 * kSec, 1 * kSec).fwd_bps, 200.0 * 8);

    for (std::uint64_t now : {12 * kSec, 15 * kSec}) {
        const Rate r = rate_of(s, now, 2 * kSec);
        EXPECT_DOUBLE_EQ(r.fwd_bps, 0.0) << now;
        EXPECT_DOUBLE_EQ(r.rev_bps, 0.0) << now;
        EXPECT_EQ(r.idle_ns, now - 10 * kSec);  // idleness grows while it stands still
    }
    // Moving again restarts it.
    const FlowSample again = moved(counted(k, TT_DIR_AB, 900, 650, 7, 7), 700, 600, 16 * kSec);
    const Rate r = rate_of(again, 16 * kSec, 1 * kSec);
    EXPECT_EQ(r.idle_ns, 0u);
    EXPECT_DOUBLE_EQ(r.fwd_bps, 200.0 * 8);
    EXPECT_DOUBLE_EQ(r.rev_bps, 50.0 * 8);
}

TEST(FlowModelRates, OnlyTheDirectionThatMovedHasARate) {
    const tt_flow_key k = key_v4("10.0.0.1", 40000, "10.0.0.2", 80);
    const FlowSample s = moved(counted(k, TT_DIR_AB, 5000, 900, 9, 9), 1000, 900, 3 * kSec);
    const Rate r = rate_of(s, 3 * kSec, 1 * kSec);
    EXPECT_DOUBLE_EQ(r.fwd_bps, 4000.0 * 8);
    EXPECT_DOUBLE_EQ(r.rev_bps, 0.0);
}

TEST(FlowModelRates, CountersBelowPrevNeverWrapToAHugeRate) {
    // A new connection in the slot starts from 0 (the collector resets prev);
    // were prev stale anyway, the rate is 0, not 2^64 bytes.
    const tt_flow_key k = key_v4("10.0.0.1", 40000, "10.0.0.2", 80);
    const FlowSample s = moved(counted(k, TT_DIR_AB, 300, 400, 5, 6), 100000, 200000, 12 * kSec);
    const Rate r = rate_of(s, 12 * kSec, 2 * kSec);
    EXPECT_DOUBLE_EQ(r.fwd_bps, 0.0);
    EXPECT_DOUBLE_EQ(r.rev_bps, 0.0);
}

TEST(FlowModelRates, FinishedFlowShowsItsFinalInterval) {
    // A close event: final counters, prev = the bytes shown at the last report.
    const tt_flow_key k = key_v4("10.0.0.1", 40001, "10.0.0.2", 80);
    FlowSample s = moved(counted(k, TT_DIR_AB, 1200, 200, 3, 2), 200, 200, 11 * kSec);
    s.finished = true;
    s.info.state = TT_CLOSED;
    const Rate r = rate_of(s, 11 * kSec, 1 * kSec);
    EXPECT_DOUBLE_EQ(r.fwd_bps, 1000.0 * 8);
    EXPECT_DOUBLE_EQ(r.rev_bps, 0.0);
}

TEST(FlowModelRates, ZeroElapsedGivesNoRate) {
    const tt_flow_key k = key_v4("10.0.0.1", 40000, "10.0.0.2", 80);
    const FlowSample s = moved(counted(k, TT_DIR_AB, 1000, 1000, 1, 1), 0, 0, 10 * kSec);
    const Rate r = rate_of(s, 10 * kSec, 0);
    EXPECT_DOUBLE_EQ(r.fwd_bps, 0.0);
    EXPECT_DOUBLE_EQ(r.rev_bps, 0.0);
    EXPECT_EQ(r.idle_ns, 0u);
    EXPECT_EQ(rate_of(s, 11 * kSec, 0).idle_ns, 1 * kSec);
}

TEST(FlowModelRates, ActiveAfterNowIsNotIdle) {
    // A sample stamped by a later clock reading than the report's: idle 0, no rate.
    const tt_flow_key k = key_v4("10.0.0.1", 40000, "10.0.0.2", 80);
    const FlowSample s = moved(counted(k, TT_DIR_AB, 1000, 1000, 1, 1), 0, 0, 10 * kSec + 1);
    const Rate r = rate_of(s, 10 * kSec, kSec);
    EXPECT_EQ(r.idle_ns, 0u);
    EXPECT_DOUBLE_EQ(r.fwd_bps, 0.0);
}

// ------------------------------------------------------------ ReportBuilder

struct Built {
    std::vector<FlowRow> rows;
    tcptrack::ReportStats stats;
};

Built build(const std::vector<FlowSample>& v, std::uint64_t now, std::uint64_t elapsed,
            bool closed_only, const std::vector<std::uint32_t>* only = nullptr,
            tcptrack::SortKey sort = tcptrack::SortKey::Rate, std::size_t top = 0,
            std::size_t* total = nullptr) {
    static const std::map<std::uint32_t, std::string> names{{2, "eth0"}};
    ReportBuilder b(names);
    b.build(v, now, elapsed, closed_only, only, sort, top);
    if (total) *total = b.total();
    Built out;
    out.rows.resize(b.size());
    for (std::size_t i = 0; i < b.size(); ++i) b.row(i, out.rows[i]);
    // rows() streams the same rows in the same order.
    FlowRow scratch;
    auto next = b.rows();
    std::size_t n = 0;
    while (const FlowRow* r = next(scratch)) {
        EXPECT_LT(n, out.rows.size());
        if (n < out.rows.size()) {
            EXPECT_EQ(r->sport, out.rows[n].sport);
            EXPECT_EQ(r->fwd_bps, out.rows[n].fwd_bps);
        }
        ++n;
    }
    EXPECT_EQ(n, out.rows.size());
    out.stats = b.stats();
    return out;
}

std::vector<std::uint16_t> sports(const Built& b) {
    std::vector<std::uint16_t> out;
    for (const auto& r : b.rows) out.push_back(r.sport);
    return out;
}

// Five flows in no particular order (as collect() returns them), at report t=20s
// after 2 s: 40001 and 40004 moved now, the rest not.
std::vector<FlowSample> five() {
    const auto k = [](std::uint16_t p) { return key_v4("10.0.0.1", p, "10.0.0.2", 80); };
    std::vector<FlowSample> v = {
        moved(counted(k(40003), TT_DIR_AB, 9000, 9000, 9, 9), 0, 0, 12 * kSec),  // most bytes, idle
        moved(counted(k(40001), TT_DIR_AB, 3000, 1000, 3, 1), 1000, 1000, 20 * kSec),  // 2000 B
        moved(counted(k(40000), TT_DIR_AB, 100, 100, 1, 1), 0, 0, 18 * kSec),
        moved(counted(k(40004), TT_DIR_AB, 500, 4500, 1, 4), 500, 500, 20 * kSec),  // 4000 B
        moved(counted(k(40002), TT_DIR_AB, 100, 100, 1, 1), 0, 0, 18 * kSec),
    };
    v[3].info.state = TT_RESET;
    v[3].finished = true;
    return v;
}

TEST(FlowModelBuilder, BusiestFirstThenBytesThenEndpoints) {
    const Built b = build(five(), 20 * kSec, 2 * kSec, false);
    EXPECT_EQ(sports(b), (std::vector<std::uint16_t>{40004, 40001, 40003, 40000, 40002}));
    EXPECT_DOUBLE_EQ(b.rows[0].rev_bps, 4000.0 * 8 / 2);
    EXPECT_DOUBLE_EQ(b.rows[1].fwd_bps, 2000.0 * 8 / 2);
    EXPECT_DOUBLE_EQ(b.rows[2].fwd_bps, 0.0);  // idle: counters at the last report, no rate
    EXPECT_EQ(b.rows[0].iface, "eth0");
    EXPECT_EQ(b.stats.closed, 1u);

    // The input order does not matter.
    std::vector<FlowSample> rev = five();
    std::reverse(rev.begin(), rev.end());
    EXPECT_EQ(sports(build(rev, 20 * kSec, 2 * kSec, false)), sports(b));
}

// Thousands of rows with long runs of equal rates and bytes (the radix sort's
// words, then std::sort inside runs), IPv4 alone (the endpoints are radix
// words too) and mixed with IPv6: every neighbouring pair of rows is in the
// documented order, and every sample is a row once.
TEST(FlowModelBuilder, ManyRowsTiedOnRateAndBytesStillInOrder) {
    for (const bool with_v6 : {false, true}) {
        SCOPED_TRACE(with_v6 ? "IPv4 and IPv6" : "IPv4 only");
        std::vector<FlowSample> v;
        for (std::uint32_t i = 0; i < 4000; ++i) {
            char a[64], b[64];
            const bool v6 = with_v6 && i % 7 == 0;
            std::snprintf(a, sizeof a, v6 ? "2001:db8::%x" : "10.0.%u.%u", (i * 37) % 5, i % 3);
            std::snprintf(b, sizeof b, v6 ? "2001:db8:1::%x" : "10.1.%u.%u", i % 11, (i / 5) % 4);
            const auto pa = static_cast<std::uint16_t>(40000 + (i * 7919) % 9);
            const std::uint64_t bytes = 100 * (i % 13);  // 13 byte counts: long ties
            tt_flow_key k = tt_test::flow_key(v6 ? AF_INET6 : AF_INET, a, pa, b, 443, 2);
            tt_key_normalise(&k);
            FlowSample s = counted(k, TT_DIR_AB, bytes, bytes / 2, 1, 1);
            // A third moved now (rates from 3 prev values), the rest idle (rate 0).
            v.push_back(i % 3 ? moved(s, bytes - 100 * (i % 2), 0, 20 * kSec)
                              : moved(s, 0, 0, 12 * kSec));
            k.ifindex = 3;  // now and then the same connection on a second interface
            s.key = k;
            if (i % 97 == 0) v.push_back(moved(s, 0, 0, 12 * kSec));
        }
        const Built b = build(v, 20 * kSec, 2 * kSec, false);
        ASSERT_EQ(b.rows.size(), v.size());
        const auto ends_cmp = [](const FlowRow& x, const FlowRow& y) {
            if (const int c = std::memcmp(x.src.data(), y.src.data(), 16)) return c;
            if (x.sport != y.sport) return x.sport < y.sport ? -1 : 1;
            if (const int c = std::memcmp(x.dst.data(), y.dst.data(), 16)) return c;
            return x.dport == y.dport ? 0 : x.dport < y.dport ? -1 : 1;
        };
        for (std::size_t i = 0; i + 1 < b.rows.size(); ++i) {
            const FlowRow &x = b.rows[i], &y = b.rows[i + 1];
            const double rx = x.fwd_bps + x.rev_bps, ry = y.fwd_bps + y.rev_bps;
            ASSERT_GE(rx, ry) << "row " << i;
            if (rx != ry) continue;
            const std::uint64_t bx = x.fwd_bytes + x.rev_bytes, by = y.fwd_bytes + y.rev_bytes;
            ASSERT_GE(bx, by) << "row " << i;
            if (bx == by) {
                ASSERT_LE(ends_cmp(x, y), 0) << "row " << i;
            }
        }
    }
}

TEST(FlowModelBuilder, OnlyLooksAtTheGivenSamples) {
    // --changed: the collector's changed() indexes (here the two that moved).
    const std::vector<FlowSample> v = five();
    const std::vector<std::uint32_t> changed = {3, 1};
    const Built b = build(v, 20 * kSec, 2 * kSec, false, &changed);
    EXPECT_EQ(sports(b), (std::vector<std::uint16_t>{40004, 40001}));
    EXPECT_DOUBLE_EQ(b.rows[0].rev_bps, 4000.0 * 8 / 2);
    EXPECT_EQ(b.stats.closed, 1u);

    const std::vector<std::uint32_t> none;
    const Built e = build(v, 20 * kSec, 2 * kSec, false, &none);
    EXPECT_TRUE(e.rows.empty());
    EXPECT_EQ(e.stats.closed, 0u);
    EXPECT_EQ(e.stats.rtt.count, 0u);

    const std::vector<std::uint32_t> idle_one = {0};
    EXPECT_EQ(sports(build(v, 20 * kSec, 2 * kSec, false, &idle_one)),
              (std::vector<std::uint16_t>{40003}));
}

TEST(FlowModelBuilder, ClosedOnlyRowsAreClosedOrResetAmongThoseLookedAt) {
    std::vector<FlowSample> v = five();
    v[0].info.state = TT_CLOSED;  // both FINs, last ACK due: shown CLOSING, not a row yet
    v[2].info.state = TT_CLOSED;
    v[2].finished = true;  // final: a row
    const Built all = build(v, 20 * kSec, 2 * kSec, true);
    EXPECT_EQ(sports(all), (std::vector<std::uint16_t>{40004, 40000}));
    EXPECT_EQ(all.rows[0].state, State::Reset);
    EXPECT_EQ(all.rows[1].state, State::Closed);
    EXPECT_EQ(all.stats.closed, 2u);

    const std::vector<std::uint32_t> only = {0, 1, 3};
    const Built some = build(v, 20 * kSec, 2 * kSec, true, &only);
    EXPECT_EQ(sports(some), (std::vector<std::uint16_t>{40004}));
    EXPECT_EQ(some.stats.closed, 1u);
}

TEST(FlowModelBuilder, StatsCountRttOfEveryLookedAtSample) {
    std::vector<FlowSample> v = five();
    for (std::size_t i = 0; i < v.size(); ++i) {
        v[i].info = handshake(TT_F_SYN_SEEN | TT_F_LOCAL_CLIENT, kSec, kSec + 1000 * (i + 1), 0);
        v[i].info.state = TT_ESTABLISHED;
    }
    const Built b = build(v, 20 * kSec, 2 * kSec, true);  // no closed rows...
    EXPECT_TRUE(b.rows.empty());
    EXPECT_EQ(b.stats.rtt.count, 5u);  // ...but every RTT counts
    EXPECT_EQ(b.stats.rtt.min_ns, 1000u);
    const std::vector<std::uint32_t> only = {4, 2};
    const Built s = build(v, 20 * kSec, 2 * kSec, false, &only);
    EXPECT_EQ(s.stats.rtt.count, 2u);
    EXPECT_EQ(s.stats.rtt.min_ns, 3000u);
}

// --sort: largest first by the key, then bytes, then endpoints.
TEST(FlowModelBuilder, SortByBytesPacketsAgeRtt) {
    using tcptrack::SortKey;
    std::vector<FlowSample> v = five();
    // Bytes: 40003 18000, 40004 5000, 40001 4000, 40000 and 40002 200 each.
    EXPECT_EQ(sports(build(v, 20 * kSec, 2 * kSec, false, nullptr, SortKey::Bytes)),
              (std::vector<std::uint16_t>{40003, 40004, 40001, 40000, 40002}));
    // Packets differ from bytes: 40001 sends many small segments.
    v[1].packets[TT_DIR_AB] = 40;
    EXPECT_EQ(sports(build(v, 20 * kSec, 2 * kSec, false, nullptr, SortKey::Packets)),
              (std::vector<std::uint16_t>{40001, 40003, 40004, 40000, 40002}));
    // Age: first seen earliest first.
    const std::uint64_t first[] = {5, 1, 4, 2, 3};
    for (std::size_t i = 0; i < v.size(); ++i) v[i].info.first_ns = first[i] * kSec;
    EXPECT_EQ(sports(build(v, 20 * kSec, 2 * kSec, false, nullptr, SortKey::Age)),
              (std::vector<std::uint16_t>{40001, 40004, 40002, 40000, 40003}));
    // RTT: slowest handshake first; one never measured comes last.
    const std::uint64_t rtt[] = {300, 900, 0, 100, 500};
    for (std::size_t i = 0; i < v.size(); ++i) {
        const std::uint8_t st = v[i].info.state;
        v[i].info =
            handshake(TT_F_SYN_SEEN | TT_F_LOCAL_CLIENT, kSec, rtt[i] ? kSec + rtt[i] : 0, 0);
        v[i].info.state = st;
    }
    const Built r = build(v, 20 * kSec, 2 * kSec, false, nullptr, SortKey::Rtt);
    EXPECT_EQ(sports(r), (std::vector<std::uint16_t>{40001, 40002, 40003, 40004, 40000}));
    EXPECT_EQ(r.rows[0].rtt_ns, 900u);
    EXPECT_FALSE(r.rows[4].rtt_ns.has_value());
}

// --top N: the first N rows of the full order; the stats and total() count all.
TEST(FlowModelBuilder, TopKeepsTheFirstRowsAndCountsAll) {
    using tcptrack::SortKey;
    const std::vector<FlowSample> v = five();
    std::size_t total = 0;
    const Built all = build(v, 20 * kSec, 2 * kSec, false, nullptr, SortKey::Rate, 0, &total);
    EXPECT_EQ(total, 5u);
    const std::vector<std::uint16_t> order = sports(all);
    for (std::size_t n = 1; n <= 6; ++n) {
        const Built t = build(v, 20 * kSec, 2 * kSec, false, nullptr, SortKey::Rate, n, &total);
        const std::vector<std::uint16_t> want(
            order.begin(),
            order.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(n, 5)));
        EXPECT_EQ(sports(t), want) << "top " << n;
        EXPECT_EQ(total, 5u);
        EXPECT_EQ(t.stats.closed, 1u) << "the RESET flow counts even when cut";
    }
    const Built one = build(v, 20 * kSec, 2 * kSec, false, nullptr, SortKey::Bytes, 1, &total);
    EXPECT_EQ(sports(one), (std::vector<std::uint16_t>{40003}));
    EXPECT_EQ(one.stats.closed, 1u);
}

}  // namespace

// The first FIN or the RST, oriented: "by_client" follows the connection's
// client (info.client), whichever normalised side it is.
TEST(FlowModelEnding, FirstFinAndRstOrientedByClient) {
    for (std::uint8_t client : {std::uint8_t{TT_DIR_AB}, std::uint8_t{TT_DIR_BA}}) {
        const std::uint8_t server = client ^ 1;
        FlowSample s = sample(key_v4("10.0.0.1", 40000, "10.0.0.2", 80), client, TT_F_SYN_SEEN);
        EXPECT_EQ(tcptrack::ending_of(s), tcptrack::Ending{}) << "no FIN, no RST yet";
        s.info.end = TT_END_FIN(server);
        EXPECT_EQ(tcptrack::ending_of(s), (tcptrack::Ending{tcptrack::EndKind::Fin, false}));
        s.info.end = TT_END_FIN(client);
        EXPECT_EQ(tcptrack::ending_of(s), (tcptrack::Ending{tcptrack::EndKind::Fin, true}));
        // A RST ends it whatever FIN came first.
        s.info.end = TT_END_FIN(client) | TT_END_RST(server);
        EXPECT_EQ(tcptrack::ending_of(s), (tcptrack::Ending{tcptrack::EndKind::Rst, false}));
        const tcptrack::FlowRow row = tcptrack::make_row(s, "eth0", 0);
        EXPECT_EQ(row.ending, (tcptrack::Ending{tcptrack::EndKind::Rst, false}));
    }
    FlowSample unknown;  // no info (a test's bare sample): nothing to tell
    EXPECT_EQ(tcptrack::ending_of(unknown), tcptrack::Ending{});
}

// ------------------------------------------------------------------ the sample

// The sample's key gives back every byte of the tt_flow_key it was set from,
// IPv4 (inline) or IPv6 (apart), through copies, moves and a change of family.
TEST(SampleKeyTest, EveryKeyReadsBackWholeThroughCopiesMovesAndFamilies) {
    const tt_flow_key v4 = tt_test::flow_key(AF_INET, "10.1.2.3", 40000, "192.0.2.200", 443, 7);
    const tt_flow_key v6 =
        tt_test::flow_key(AF_INET6, "fd00::1", 50000, "2001:db8:ffff::fe:2", 80, 9);
    for (const tt_flow_key& k : {v4, v6}) {
        const SampleKey a(k);
        EXPECT_TRUE(tt_test::same_key(a.get(), k));
        EXPECT_EQ(a.family(), k.family);
        EXPECT_EQ(a.ifindex(), k.ifindex);
        EXPECT_EQ(a.port_a(), k.port_a);
        EXPECT_EQ(a.port_b(), k.port_b);
        EXPECT_EQ(std::memcmp(a.addr(0).data(), k.addr_a, 16), 0);
        EXPECT_EQ(std::memcmp(a.addr(1).data(), k.addr_b, 16), 0);
        SampleKey b(a);  // a deep copy: a stays whole
        EXPECT_TRUE(b == a && a == k);
        SampleKey c(std::move(b));
        EXPECT_TRUE(tt_test::same_key(c.get(), k));
        SampleKey d;
        d = c;
        c = v4;  // c changes family (or not); d keeps its own addresses
        EXPECT_TRUE(tt_test::same_key(d.get(), k));
        EXPECT_TRUE(tt_test::same_key(c.get(), v4));
        d = std::move(c);
        EXPECT_TRUE(tt_test::same_key(d.get(), v4));
        d = v6;
        EXPECT_TRUE(tt_test::same_key(d.get(), v6));
    }
    // Keys differing in one field only differ.
    tt_flow_key other = v6;
    other.addr_b[15] ^= 1;
    EXPECT_FALSE(SampleKey(v6) == SampleKey(other));
    other = v4;
    other.ifindex = 8;
    EXPECT_FALSE(SampleKey(v4) == other);
    // A sample holding a key copies and moves like one.
    FlowSample s;
    s.key = v6;
    const FlowSample t = s;
    s.key = v4;
    EXPECT_TRUE(tt_test::same_key(t.key.get(), v6));
    EXPECT_TRUE(tt_test::same_key(s.key.get(), v4));
}

// The previous counters read back exactly whatever they are: zero (a new
// flow) whatever the current ones, a growth that fits 32 bits, one of 2^32 or
// more, one below its previous value; copies are deep, and whole counts go
// back to their pool with the last sample holding them.
TEST(FlowSamplePrev, EveryPreviousCountReadsBackExactly) {
    const std::size_t pooled = tcptrack::PrevCounts::pooled();
    FlowSample s;
    s.bytes[0] = 5000, s.packets[1] = 7, s.payload[0] = 1ull << 40;
    for (int d = 0; d < 2; ++d) {  // a default sample: all zero
        EXPECT_EQ(s.prev_bytes(d), 0u);
        EXPECT_EQ(s.prev_packets(d), 0u);
        EXPECT_EQ(s.prev_payload(d), 0u);
    }
    EXPECT_TRUE(is_new(s));
    const auto check = [&](const tcptrack::Counts& p) {
        s.set_prev(p);
        for (int d = 0; d < 2; ++d) {
            EXPECT_EQ(s.prev_bytes(d), p.bytes[d]) << d;
            EXPECT_EQ(s.prev_packets(d), p.packets[d]) << d;
            EXPECT_EQ(s.prev_payload(d), p.payload[d]) << d;
        }
    };
    tcptrack::Counts p;
    p.bytes[0] = 4000, p.packets[1] = 6, p.payload[0] = (1ull << 40) - 1000;  // small growth
    check(p);
    EXPECT_FALSE(is_new(s));
    EXPECT_EQ(tcptrack::PrevCounts::pooled(), pooled);
    p.payload[0] = (1ull << 40) - (1ull << 33);  // grew by 2^33 in one interval
    check(p);
    EXPECT_EQ(tcptrack::PrevCounts::pooled(), pooled + 1);
    p.payload[0] = 1;
    p.bytes[1] = 9;  // above the current count (0)
    check(p);
    EXPECT_EQ(tcptrack::PrevCounts::pooled(), pooled + 1);  // its own whole counts, reused
    {
        const FlowSample copy = s;  // deep: the copy keeps its own whole counts
        EXPECT_EQ(tcptrack::PrevCounts::pooled(), pooled + 2);
        tcptrack::Counts q;
        q.bytes[0] = 4999, q.payload[0] = (1ull << 40) - 5;
        check(q);
        EXPECT_EQ(copy.prev_bytes(1), 9u);
        EXPECT_EQ(copy.prev_payload(0), 1u);
        EXPECT_EQ(tcptrack::PrevCounts::pooled(), pooled + 1);  // s's went back
        std::vector<FlowSample> v(3, copy);
        v.erase(v.begin());
        EXPECT_EQ(v[1].prev_bytes(1), 9u);
        EXPECT_EQ(tcptrack::PrevCounts::pooled(), pooled + 3);
    }
    EXPECT_EQ(tcptrack::PrevCounts::pooled(), pooled);
    check(tcptrack::Counts{.bytes = {1ull << 33, 0}, .packets = {}, .payload = {}});
    FlowSample moved_to = std::move(s);
    EXPECT_EQ(moved_to.prev_bytes(0), 1ull << 33);
    EXPECT_EQ(tcptrack::PrevCounts::pooled(), pooled + 1);
    check(tcptrack::Counts{});
    EXPECT_TRUE(is_new(s));
    moved_to.set_prev(tcptrack::Counts{});
    EXPECT_EQ(tcptrack::PrevCounts::pooled(), pooled);
}
