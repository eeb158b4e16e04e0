// SPDX-License-Identifier: MIT
// From raw kernel records to oriented rows (src/flow_model.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "keys.hpp"
#include "tcptrack/flow_model.hpp"

namespace {

using tcptrack::client_side;
using tcptrack::Family;
using tcptrack::FlowRow;
using tcptrack::FlowSample;
using tcptrack::handshake_rtt;
using tcptrack::key_hash;
using tcptrack::make_row;
using tcptrack::RateTracker;
using tcptrack::same_key;
using tcptrack::sample_less;
using tcptrack::shown_state;
using tcptrack::State;
using tcptrack::syn_to_close;

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
    s.hash = key_hash(k);
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
    i.syn_ns = syn_ns;
    i.synack_ns = synack_ns;
    i.ack_ns = ack_ns;
    return i;
}

// ---------------------------------------------------------------- make_row

TEST(FlowModelRow, ClientOnSideBRendersBAsSource) {
    FlowSample s = sample(key_v4("10.0.0.1", 443, "10.0.0.9", 51000), TT_DIR_BA,
                          TT_F_SYN_SEEN);
    set_dir(s, TT_DIR_AB, {9000, 9, 8000});
    set_dir(s, TT_DIR_BA, {700, 7, 100});

    const FlowRow r = make_row(s, "eth0", 1000);
    EXPECT_EQ(r.iface, "eth0");
    EXPECT_EQ(r.family, Family::V4);
    expect_endpoints(r, AF_INET, "10.0.0.9", 51000, "10.0.0.1", 443);
    expect_counts(r, {700, 7, 100}, {9000, 9, 8000});
}

TEST(FlowModelRow, ClientOnSideARendersAAsSource) {
    FlowSample s = sample(key_v4("10.0.0.1", 51000, "10.0.0.9", 443), TT_DIR_AB,
                          TT_F_SYN_SEEN);
    set_dir(s, TT_DIR_AB, {700, 7, 100});
    set_dir(s, TT_DIR_BA, {9000, 9, 8000});

    const FlowRow r = make_row(s, "lo", 1000);
    expect_endpoints(r, AF_INET, "10.0.0.1", 51000, "10.0.0.9", 443);
    expect_counts(r, {700, 7, 100}, {9000, 9, 8000});
}

TEST(FlowModelRow, PortsAreConvertedToHostOrder) {
    // 0x1234 and 0x0050 differ from their byte-swapped forms.
    FlowSample s = sample(key_v4("192.168.1.1", 0x1234, "192.168.1.2", 0x0050), TT_DIR_AB,
                          TT_F_SYN_SEEN);
    const FlowRow r = make_row(s, "eth0", 0);
    EXPECT_EQ(r.sport, 0x1234);
    EXPECT_EQ(r.dport, 0x0050);
}

TEST(FlowModelRow, Ipv6FamilyAndFullAddress) {
    FlowSample s = sample(key_v6("2001:db8::1", 80, "2001:db8::ff:2", 40000), TT_DIR_BA,
                          TT_F_SYN_SEEN);
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
    s.info.syn_ns = 1000;
    s.info.synack_ns = 1500;
    s.info.ack_ns = 1600;
    s.info.state = TT_CLOSING;
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
    s.hash = key_hash(s.key);
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
    EXPECT_EQ(client_side(sample(key_v4("10.0.0.1", 80, "10.0.0.2", 50000), TT_DIR_AB,
                                 TT_F_SYN_SEEN)),
              TT_DIR_AB);
    EXPECT_EQ(client_side(sample(key_v4("10.0.0.1", 50000, "10.0.0.2", 80), TT_DIR_BA,
                                 TT_F_SYN_SEEN)),
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
        {TT_SYN_SENT, State::SynSent},   {TT_SYN_RECV, State::SynRecv},
        {TT_ESTABLISHED, State::Established}, {TT_CLOSING, State::Closing},
        {TT_CLOSED, State::Closed},      {TT_RESET, State::Reset},
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

// ------------------------------------------------------ key_hash and order

TEST(FlowModelKey, EqualKeysHashEqual) {
    const tt_flow_key a = key_v4("10.1.1.1", 1234, "10.1.1.2", 80);
    const tt_flow_key b = key_v4("10.1.1.1", 1234, "10.1.1.2", 80);
    EXPECT_TRUE(same_key(a, b));
    EXPECT_EQ(key_hash(a), key_hash(b));
}

TEST(FlowModelKey, DifferentKeysDiffer) {
    const tt_flow_key a = key_v4("10.1.1.1", 1234, "10.1.1.2", 80);
    tt_flow_key port = a;
    port.port_b = htons(81);
    tt_flow_key ifc = a;
    ifc.ifindex = 7;
    tt_flow_key fam = key_v6("::a01:101", 1234, "::a01:102", 80);
    EXPECT_FALSE(same_key(a, port));
    EXPECT_FALSE(same_key(a, ifc));
    EXPECT_FALSE(same_key(a, fam));
    // FNV-1a over the whole key: these one-field changes alter the hash.
    EXPECT_NE(key_hash(a), key_hash(port));
    EXPECT_NE(key_hash(a), key_hash(ifc));
    EXPECT_NE(key_hash(a), key_hash(fam));
}

TEST(FlowModelKey, SampleLessIsAStrictWeakOrder) {
    std::vector<FlowSample> v;
    for (std::uint16_t p : {80, 443, 22, 8080, 53}) {
        FlowSample s;
        s.key = key_v4("10.0.0.1", 40000, "10.0.0.2", p);
        s.hash = key_hash(s.key);
        v.push_back(s);
    }
    // Same key as v[0] with different info: equivalent under the order.
    FlowSample dup = v[0];
    dup.info.first_ns = 999;
    v.push_back(dup);

    for (const auto& a : v) {
        EXPECT_FALSE(sample_less(a, a));  // irreflexive
        for (const auto& b : v) {
            if (sample_less(a, b)) {
                EXPECT_FALSE(sample_less(b, a));  // asymmetric
            }
            const bool equiv = !sample_less(a, b) && !sample_less(b, a);
            EXPECT_EQ(equiv, same_key(a.key, b.key));
            for (const auto& c : v) {
                if (sample_less(a, b) && sample_less(b, c)) {
                    EXPECT_TRUE(sample_less(a, c));  // transitive
                }
            }
        }
    }
    // Hash is the primary key.
    FlowSample lo = v[0], hi = v[1];
    lo.hash = 1;
    hi.hash = 2;
    EXPECT_TRUE(sample_less(lo, hi));
    EXPECT_FALSE(sample_less(hi, lo));
    // Equal hash falls back to the key bytes.
    FlowSample x = v[0], y = v[0];
    y.key.port_b = htons(81);  // x has 80
    x.hash = y.hash = 5;
    EXPECT_NE(sample_less(x, y), sample_less(y, x));
    EXPECT_EQ(sample_less(x, y), std::memcmp(&x.key, &y.key, sizeof(x.key)) < 0);
}

// -------------------------------------------------------------- RateTracker

struct Tracker {
    RateTracker rt;
    std::vector<FlowRow> rows;
    std::vector<std::uint64_t> idle;

    void run(std::vector<FlowSample> samples, std::uint64_t now, std::uint64_t elapsed) {
        for (auto& s : samples) s.hash = key_hash(s.key);
        std::sort(samples.begin(), samples.end(), sample_less);
        rows.clear();
        for (const auto& s : samples) rows.push_back(make_row(s, "eth0", now));
        idle = rt.update(samples, rows, now, elapsed);
        sorted = samples;
    }
    // Row of the sample with this key after the last run.
    const FlowRow& row(const tt_flow_key& k) const { return rows.at(index(k)); }
    std::uint64_t idle_of(const tt_flow_key& k) const { return idle.at(index(k)); }

    std::vector<FlowSample> sorted;

private:
    std::size_t index(const tt_flow_key& k) const {
        for (std::size_t i = 0; i < sorted.size(); ++i)
            if (same_key(sorted[i].key, k)) return i;
        ADD_FAILURE() << "key not in last run";
        return 0;
    }
};

TEST(FlowModelRates, FirstUpdateCountsAllBytes) {
    const tt_flow_key k = key_v4("10.0.0.1", 40000, "10.0.0.2", 80);
    FlowSample s = counted(k, TT_DIR_AB, 1000, 4000, 3, 4);
    Tracker t;
    t.run({s}, 10 * kSec, 2 * kSec);
    EXPECT_DOUBLE_EQ(t.row(k).fwd_bps, 1000.0 * 8 / 2);
    EXPECT_DOUBLE_EQ(t.row(k).rev_bps, 4000.0 * 8 / 2);
    EXPECT_EQ(t.idle_of(k), 0u);
    EXPECT_EQ(t.rt.size(), 1u);
}

TEST(FlowModelRates, SecondUpdateUsesDeltasOrientedLikeRow) {
    // Client is side B: fwd is B->A.
    const tt_flow_key k = key_v4("10.0.0.1", 443, "10.0.0.2", 50000);
    FlowSample s = counted(k, TT_DIR_BA, 10000, 2000, 10, 5);
    Tracker t;
    t.run({s}, 10 * kSec, 1 * kSec);
    EXPECT_DOUBLE_EQ(t.row(k).fwd_bps, 2000.0 * 8);
    EXPECT_DOUBLE_EQ(t.row(k).rev_bps, 10000.0 * 8);

    set_counters(s, 10000 + 50000, 2000 + 1000, 40, 8);
    t.run({s}, 14 * kSec, 4 * kSec);
    EXPECT_DOUBLE_EQ(t.row(k).fwd_bps, 1000.0 * 8 / 4);
    EXPECT_DOUBLE_EQ(t.row(k).rev_bps, 50000.0 * 8 / 4);
    EXPECT_EQ(t.row(k).fwd_bytes, 3000u);  // totals stay cumulative
    EXPECT_EQ(t.idle_of(k), 0u);
}

TEST(FlowModelRates, IdleGrowsWhileCountersStandStill) {
    const tt_flow_key k = key_v4("10.0.0.1", 40000, "10.0.0.2", 22);
    FlowSample s = counted(k, TT_DIR_AB, 500, 600, 5, 6);
    Tracker t;
    t.run({s}, 10 * kSec, 1 * kSec);
    EXPECT_EQ(t.idle_of(k), 0u);

    t.run({s}, 12 * kSec, 2 * kSec);
    EXPECT_EQ(t.idle_of(k), 2 * kSec);
    EXPECT_DOUBLE_EQ(t.row(k).fwd_bps, 0.0);
    EXPECT_DOUBLE_EQ(t.row(k).rev_bps, 0.0);

    t.run({s}, 15 * kSec, 3 * kSec);
    EXPECT_EQ(t.idle_of(k), 5 * kSec);

    set_counters(s, 700, 600, 6, 6);  // moved again
    t.run({s}, 16 * kSec, 1 * kSec);
    EXPECT_EQ(t.idle_of(k), 0u);
    EXPECT_DOUBLE_EQ(t.row(k).fwd_bps, 200.0 * 8);

    t.run({s}, 18 * kSec, 2 * kSec);
    EXPECT_EQ(t.idle_of(k), 2 * kSec);
}

TEST(FlowModelRates, NewGenerationDoesNotReuseOldCounters) {
    const tt_flow_key k = key_v4("10.0.0.1", 40000, "10.0.0.2", 80);
    FlowSample old = sample(k, TT_DIR_AB, TT_F_SYN_SEEN, /*first_ns=*/1 * kSec);
    set_counters(old, 100000, 200000, 50, 60);
    Tracker t;
    t.run({old}, 10 * kSec, 1 * kSec);

    // Same tuple reused by a new connection with smaller counters.
    FlowSample fresh = sample(k, TT_DIR_AB, TT_F_SYN_SEEN, /*first_ns=*/10 * kSec + 1);
    set_counters(fresh, 300, 400, 50, 60);  // same packet total as the old generation
    t.run({fresh}, 12 * kSec, 2 * kSec);
    EXPECT_DOUBLE_EQ(t.row(k).fwd_bps, 300.0 * 8 / 2);
    EXPECT_DOUBLE_EQ(t.row(k).rev_bps, 400.0 * 8 / 2);
    EXPECT_EQ(t.idle_of(k), 0u);  // not the old generation's idleness
}

TEST(FlowModelRates, FinishedSamplesAreForgotten) {
    const tt_flow_key k1 = key_v4("10.0.0.1", 40000, "10.0.0.2", 80);
    const tt_flow_key k2 = key_v4("10.0.0.1", 40001, "10.0.0.2", 80);
    const tt_flow_key k3 = key_v6("2001:db8::1", 40002, "2001:db8::2", 443);
    FlowSample s1 = counted(k1, TT_DIR_AB, 100, 100, 1, 1);
    FlowSample s2 = counted(k2, TT_DIR_AB, 200, 200, 2, 2);
    FlowSample s3 = counted(k3, TT_DIR_AB, 300, 300, 3, 3);
    Tracker t;
    t.run({s1, s2, s3}, 10 * kSec, 1 * kSec);
    EXPECT_EQ(t.rt.size(), 3u);

    // s2 closes: its final delta is still measured, then it is dropped.
    set_counters(s2, 1200, 200, 3, 2);
    s2.finished = true;
    t.run({s1, s2, s3}, 11 * kSec, 1 * kSec);
    EXPECT_DOUBLE_EQ(t.row(k2).fwd_bps, 1000.0 * 8);
    EXPECT_EQ(t.rt.size(), 2u);

    // Flows absent from an update are dropped too.
    t.run({s3}, 12 * kSec, 1 * kSec);
    EXPECT_EQ(t.rt.size(), 1u);
    EXPECT_EQ(t.idle_of(k3), 2 * kSec);  // k3 kept its history
}

TEST(FlowModelRates, ForgottenFlowStartsOverIfSeenAgain) {
    const tt_flow_key k = key_v4("10.0.0.1", 40000, "10.0.0.2", 80);
    FlowSample s = counted(k, TT_DIR_AB, 1000, 0, 1, 0);
    s.finished = true;
    Tracker t;
    t.run({s}, 10 * kSec, 1 * kSec);
    EXPECT_EQ(t.rt.size(), 0u);

    s.finished = false;
    t.run({s}, 11 * kSec, 1 * kSec);
    // Not remembered, so the whole count is this interval's.
    EXPECT_DOUBLE_EQ(t.row(k).fwd_bps, 1000.0 * 8);
    EXPECT_EQ(t.idle_of(k), 0u);
}

TEST(FlowModelRates, ManyFlowsMergeByKey) {
    // Several flows, each with its own counters; deltas must not cross flows.
    std::vector<FlowSample> v;
    for (std::uint16_t i = 0; i < 20; ++i) {
        v.push_back(counted(key_v4("10.0.0.1", 40000 + i, "10.0.0.2", 80), TT_DIR_AB,
                            1000 * (i + 1), 10 * (i + 1), i + 1, 1));
    }
    Tracker t;
    t.run(v, 10 * kSec, 1 * kSec);
    EXPECT_EQ(t.rt.size(), 20u);

    // Second round: only odd flows move (by i+1 bytes fwd), even ones stand still;
    // drop flow 0 and add a new flow.
    std::vector<FlowSample> w;
    for (std::uint16_t i = 1; i < 20; ++i) {
        FlowSample s = v[i];
        if (i % 2) {
            s.bytes[TT_DIR_AB] += i + 1;
            s.packets[TT_DIR_AB] += 1;
        }
        w.push_back(s);
    }
    FlowSample extra = sample(key_v4("10.0.0.3", 1234, "10.0.0.4", 5678), TT_DIR_AB,
                              TT_F_MIDSTREAM);
    set_counters(extra, 80, 0, 1, 0);
    w.push_back(extra);
    t.run(w, 12 * kSec, 2 * kSec);
    for (std::uint16_t i = 1; i < 20; ++i) {
        const tt_flow_key& k = v[i].key;
        if (i % 2) {
            EXPECT_DOUBLE_EQ(t.row(k).fwd_bps, (i + 1) * 8.0 / 2) << i;
            EXPECT_EQ(t.idle_of(k), 0u) << i;
        } else {
            EXPECT_DOUBLE_EQ(t.row(k).fwd_bps, 0.0) << i;
            EXPECT_EQ(t.idle_of(k), 2 * kSec) << i;
        }
        EXPECT_DOUBLE_EQ(t.row(k).rev_bps, 0.0) << i;
    }
    EXPECT_DOUBLE_EQ(t.row(extra.key).fwd_bps, 80.0 * 8 / 2);
    EXPECT_EQ(t.rt.size(), 20u);
}

TEST(FlowModelRates, ZeroElapsedLeavesRatesAlone) {
    const tt_flow_key k = key_v4("10.0.0.1", 40000, "10.0.0.2", 80);
    FlowSample s = counted(k, TT_DIR_AB, 1000, 1000, 1, 1);
    Tracker t;
    t.run({s}, 10 * kSec, 0);
    EXPECT_DOUBLE_EQ(t.row(k).fwd_bps, 0.0);
    EXPECT_DOUBLE_EQ(t.row(k).rev_bps, 0.0);
    EXPECT_EQ(t.rt.size(), 1u);  // still remembered for the next interval
    t.run({s}, 11 * kSec, 1 * kSec);
    EXPECT_DOUBLE_EQ(t.row(k).fwd_bps, 0.0);  // no movement since the first sight
    EXPECT_EQ(t.idle_of(k), 1 * kSec);
}

}  // namespace
