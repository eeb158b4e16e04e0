// SPDX-License-Identifier: MIT
// The pure C logic shared with the datapath (include/tcptrack/flow.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <map>
#include <set>
#include <vector>

#include "keys.hpp"
#include "tcptrack/flow.h"

namespace {

constexpr __u8 SYN = TT_TCP_SYN, ACK = TT_TCP_ACK, FIN = TT_TCP_FIN, RST = TT_TCP_RST;
constexpr __u8 PSH = 0x08;
constexpr __u8 C = TT_DIR_AB;  // the client's side in these scenarios
constexpr __u8 S = TT_DIR_BA;

tt_flow_key key4(const char* src, __u16 sport, const char* dst, __u16 dport) {
    return tt_test::flow_key(AF_INET, src, sport, dst, dport, 3);
}

tt_flow_key key6(const char* src, __u16 sport, const char* dst, __u16 dport) {
    return tt_test::flow_key(AF_INET6, src, sport, dst, dport, 3);
}

// Both directions of one 4-tuple normalise to one key with opposite dirs.
void expect_same_key(tt_flow_key fwd, tt_flow_key rev) {
    const int d1 = tt_key_normalise(&fwd);
    const int d2 = tt_key_normalise(&rev);
    EXPECT_EQ(std::memcmp(&fwd, &rev, sizeof fwd), 0);
    EXPECT_NE(d1, d2);
    EXPECT_TRUE(d1 == TT_DIR_AB || d1 == TT_DIR_BA);
    EXPECT_TRUE(d2 == TT_DIR_AB || d2 == TT_DIR_BA);
    EXPECT_LE(tt_endpoint_cmp(fwd.addr_a, fwd.port_a, fwd.addr_b, fwd.port_b), 0);
    // Normalising again is a no-op.
    tt_flow_key again = fwd;
    EXPECT_EQ(tt_key_normalise(&again), TT_DIR_AB);
    EXPECT_EQ(std::memcmp(&again, &fwd, sizeof fwd), 0);
}

// Mirrors the datapath: a new tuple is initialised, then the same segment is stepped.
struct Flow {
    tt_flow_info f{};
    __u32 first(__u8 dir, __u8 flags, __u32 seq, __u32 ack, __u32 payload, __u64 now,
                int ingress = 0) {
        tt_info_init(&f, dir, flags, seq, now, ingress);
        return step(dir, flags, seq, ack, payload, now);
    }
    __u32 step(__u8 dir, __u8 flags, __u32 seq, __u32 ack, __u32 payload, __u64 now) {
        return tt_lifecycle_step(&f, dir, flags, seq, ack, payload, now);
    }
};

// Client ISN 1000, server ISN 5000; established at t=300, 100 payload bytes sent
// by the client, so its next seq is 1101 and the server's is 5001.
Flow established() {
    Flow fl;
    EXPECT_EQ(fl.first(C, SYN, 1000, 0, 0, 100), 0u);
    EXPECT_EQ(fl.step(S, SYN | ACK, 5000, 1001, 0, 200), 0u);
    EXPECT_EQ(fl.step(C, ACK, 1001, 5001, 0, 300), (__u32)TT_ACT_SETTLED);
    EXPECT_EQ(fl.step(C, ACK | PSH, 1001, 5001, 100, 400), (__u32)TT_ACT_SETTLED);
    EXPECT_EQ(fl.f.state, TT_ESTABLISHED);
    return fl;
}

}  // namespace

TEST(FlowKey, Ipv4BothDirectionsShareKey) {
    expect_same_key(key4("10.0.0.1", 43512, "10.0.0.2", 80),
                    key4("10.0.0.2", 80, "10.0.0.1", 43512));
    expect_same_key(key4("192.168.1.20", 22, "10.0.0.1", 5555),
                    key4("10.0.0.1", 5555, "192.168.1.20", 22));
}

TEST(FlowKey, Ipv6BothDirectionsShareKey) {
    expect_same_key(key6("fd00::1", 51000, "fd00::2", 443), key6("fd00::2", 443, "fd00::1", 51000));
    // Addresses differing only in the last word.
    expect_same_key(key6("2001:db8::1:0:0:1", 1, "2001:db8::1:0:0:2", 2),
                    key6("2001:db8::1:0:0:2", 2, "2001:db8::1:0:0:1", 1));
}

TEST(FlowKey, DirectionFollowsOrder) {
    tt_flow_key k = key4("10.0.0.1", 1000, "10.0.0.2", 80);
    const tt_flow_key orig = k;
    const int dir = tt_key_normalise(&k);
    if (dir == TT_DIR_AB) {
        EXPECT_EQ(std::memcmp(&k, &orig, sizeof k), 0);
    } else {
        EXPECT_EQ(std::memcmp(k.addr_a, orig.addr_b, 16), 0);
        EXPECT_EQ(std::memcmp(k.addr_b, orig.addr_a, 16), 0);
        EXPECT_EQ(k.port_a, orig.port_b);
        EXPECT_EQ(k.port_b, orig.port_a);
    }
    EXPECT_EQ(k.ifindex, orig.ifindex);
    EXPECT_EQ(k.family, orig.family);
}

TEST(FlowKey, EqualAddressesOrderedByPort) {
    const tt_flow_key fwd = key4("127.0.0.1", 40000, "127.0.0.1", 8080);
    const tt_flow_key rev = key4("127.0.0.1", 8080, "127.0.0.1", 40000);
    expect_same_key(fwd, rev);
    tt_flow_key k = fwd;
    tt_key_normalise(&k);
    EXPECT_LT(k.port_a, k.port_b);  // compared as stored (network order)

    expect_same_key(key6("::1", 40000, "::1", 8080), key6("::1", 8080, "::1", 40000));
}

TEST(FlowKey, IdenticalEndpointsStayPut) {
    tt_flow_key k = key4("127.0.0.1", 5000, "127.0.0.1", 5000);
    const tt_flow_key orig = k;
    EXPECT_EQ(tt_key_normalise(&k), TT_DIR_AB);
    EXPECT_EQ(std::memcmp(&k, &orig, sizeof k), 0);
}

TEST(FlowStart, WhichSegmentsStartAFlow) {
    EXPECT_TRUE(tt_starts_flow(SYN, 0));
    EXPECT_TRUE(tt_starts_flow(SYN | ACK, 0));
    EXPECT_TRUE(tt_starts_flow(ACK, 1));
    EXPECT_TRUE(tt_starts_flow(ACK | PSH, 1448));
    EXPECT_FALSE(tt_starts_flow(FIN | ACK, 10));  // a retransmitted last segment after a close
    EXPECT_FALSE(tt_starts_flow(ACK, 0));
    EXPECT_FALSE(tt_starts_flow(FIN | ACK, 0));
    EXPECT_FALSE(tt_starts_flow(RST, 0));
    EXPECT_FALSE(tt_starts_flow(RST | ACK, 0));
    EXPECT_FALSE(tt_starts_flow(RST | SYN, 0));
    EXPECT_FALSE(tt_starts_flow(RST | ACK, 100));
}

TEST(Lifecycle, InitFromSyn) {
    tt_flow_info f;
    std::memset(&f, 0xab, sizeof f);  // init must clear everything
    tt_info_init(&f, S, SYN, 1234, 77, /*ingress=*/1);
    EXPECT_EQ(f.state, TT_SYN_SENT);
    EXPECT_EQ(f.client, S);
    EXPECT_EQ(f.first_ns, 77u);
    EXPECT_EQ(f.syn_ns, 77u);
    EXPECT_EQ(f.syn_seq, 1234u);
    EXPECT_EQ(f.flags, TT_F_SYN_SEEN);  // arrived: the client is remote
    EXPECT_EQ(f.synack_ns, 0u);
    EXPECT_EQ(f.ack_ns, 0u);
    EXPECT_EQ(f.close_ns, 0u);
    EXPECT_EQ(f.fin_mask, 0);
    EXPECT_EQ(f.ack_mask, 0);

    tt_info_init(&f, C, SYN, 1, 5, /*ingress=*/0);
    EXPECT_EQ(f.flags, TT_F_SYN_SEEN | TT_F_LOCAL_CLIENT);
}

TEST(Lifecycle, HandshakeReachesEstablished) {
    Flow fl;
    EXPECT_EQ(fl.first(C, SYN, 1000, 0, 0, 100), 0u);
    EXPECT_EQ(fl.f.state, TT_SYN_SENT);

    EXPECT_EQ(fl.step(S, SYN | ACK, 5000, 1001, 0, 200), 0u);
    EXPECT_EQ(fl.f.state, TT_SYN_RECV);
    EXPECT_EQ(fl.f.synack_ns, 200u);
    EXPECT_TRUE(fl.f.flags & TT_F_HS_SEEN);

    // A SYN-ACK retransmit changes nothing.
    EXPECT_EQ(fl.step(S, SYN | ACK, 5000, 1001, 0, 250), 0u);
    EXPECT_EQ(fl.f.synack_ns, 200u);

    // The server's ACK does not complete the handshake; the client's does.
    EXPECT_EQ(fl.step(S, ACK, 5001, 1001, 0, 260), 0u);
    EXPECT_EQ(fl.f.state, TT_SYN_RECV);
    EXPECT_EQ(fl.step(C, ACK, 1001, 5001, 0, 300), (__u32)TT_ACT_SETTLED);
    EXPECT_EQ(fl.f.state, TT_ESTABLISHED);
    EXPECT_EQ(fl.f.syn_ns, 100u);
    EXPECT_EQ(fl.f.ack_ns, 300u);
    EXPECT_EQ(fl.f.close_ns, 0u);
    EXPECT_FALSE(fl.f.flags & TT_F_MIDSTREAM);
}

TEST(Lifecycle, SynAckFirstSeen) {
    Flow fl;
    // Missed the SYN: the SYN-ACK arrives (ingress), so the local side is the client.
    EXPECT_EQ(fl.first(S, SYN | ACK, 5000, 1001, 0, 200, /*ingress=*/1), 0u);
    EXPECT_EQ(fl.f.state, TT_SYN_RECV);
    EXPECT_EQ(fl.f.client, C);
    EXPECT_EQ(fl.f.synack_ns, 200u);
    EXPECT_EQ(fl.f.syn_ns, 0u);
    EXPECT_EQ(fl.f.flags, TT_F_HS_SEEN | TT_F_LOCAL_CLIENT);
    EXPECT_EQ(fl.step(C, ACK, 1001, 5001, 0, 300), (__u32)TT_ACT_SETTLED);
    EXPECT_EQ(fl.f.state, TT_ESTABLISHED);
    EXPECT_EQ(fl.f.ack_ns, 300u);
}

TEST(Lifecycle, MidstreamInit) {
    Flow fl;
    // Not settled until both sides' payload bases are known.
    EXPECT_EQ(fl.first(S, ACK | PSH, 777, 999, 1448, 50, /*ingress=*/1), 0u);
    EXPECT_EQ(fl.f.state, TT_ESTABLISHED);
    EXPECT_EQ(fl.f.flags, TT_F_MIDSTREAM);
    EXPECT_EQ(fl.f.client, S);
    EXPECT_EQ(fl.f.first_ns, 50u);
    EXPECT_EQ(fl.f.syn_ns, 0u);
    EXPECT_EQ(fl.f.synack_ns, 0u);
    EXPECT_EQ(fl.f.ack_ns, 0u);
    EXPECT_EQ(fl.f.base[S], 777u);
    EXPECT_EQ(fl.step(C, ACK, 999, 2225, 0, 60), (__u32)TT_ACT_SETTLED);
    EXPECT_EQ(fl.f.base[C], 999u);
}

TEST(Lifecycle, SynRetransmitIsNotReuse) {
    Flow fl;
    fl.first(C, SYN, 1000, 0, 0, 100);
    EXPECT_EQ(fl.step(C, SYN, 1000, 0, 0, 1100), 0u);
    EXPECT_EQ(fl.f.state, TT_SYN_SENT);
    EXPECT_EQ(fl.f.syn_ns, 100u);  // RTT measured from the first SYN
    // Still the same attempt after the SYN-ACK.
    fl.step(S, SYN | ACK, 5000, 1001, 0, 1200);
    EXPECT_EQ(fl.step(C, SYN, 1000, 0, 0, 1300), 0u);
    EXPECT_EQ(fl.f.state, TT_SYN_RECV);
}

TEST(Lifecycle, DifferentSynIsReuse) {
    Flow fl;
    fl.first(C, SYN, 1000, 0, 0, 100);
    EXPECT_EQ(fl.step(C, SYN, 2000, 0, 0, 200), (__u32)TT_ACT_REUSE);
    // A bare SYN from the other side is a new connection too.
    Flow other;
    other.first(C, SYN, 1000, 0, 0, 100);
    EXPECT_EQ(other.step(S, SYN, 9000, 0, 0, 200), (__u32)TT_ACT_REUSE);
    // Any SYN once established.
    Flow est = established();
    EXPECT_EQ(est.step(C, SYN, 1000, 0, 0, 900), (__u32)TT_ACT_REUSE);
}

TEST(Lifecycle, NewSynAfterCloseIsReuse) {
    Flow fl = established();
    fl.step(C, FIN | ACK, 1101, 5001, 0, 500);
    fl.step(S, FIN | ACK, 5001, 1102, 0, 600);
    EXPECT_EQ(fl.f.state, TT_CLOSED);
    EXPECT_EQ(fl.step(C, SYN, 1000, 0, 0, 700), (__u32)TT_ACT_REUSE);  // even the old ISN

    // Also once fully finished (both FINs acknowledged).
    EXPECT_EQ(fl.step(C, ACK, 1102, 5002, 0, 800), (__u32)TT_ACT_FINISHED);
    EXPECT_EQ(fl.step(C, SYN, 3000, 0, 0, 900), (__u32)TT_ACT_REUSE);
}

TEST(Lifecycle, ClientClosesFirst) {
    Flow fl = established();
    EXPECT_EQ(fl.step(C, FIN | ACK, 1101, 5001, 0, 500), (__u32)TT_ACT_FIN);
    EXPECT_EQ(fl.f.state, TT_CLOSING);
    EXPECT_EQ(fl.f.fin_seq[C], 1101u);
    EXPECT_EQ(fl.f.close_ns, 0u);

    // A FIN retransmit is not a first FIN again.
    EXPECT_EQ(fl.step(C, FIN | ACK, 1101, 5001, 0, 510), 0u);

    // The server ACKs the FIN, sends data, then its own FIN.
    EXPECT_EQ(fl.step(S, ACK, 5001, 1102, 0, 520), 0u);
    EXPECT_EQ(fl.f.ack_mask, 1 << C);
    EXPECT_EQ(fl.step(S, ACK | PSH, 5001, 1102, 10, 530), 0u);  // not SETTLED while closing
    EXPECT_EQ(fl.step(S, FIN | ACK, 5011, 1102, 0, 600), 0u);
    EXPECT_EQ(fl.f.state, TT_CLOSED);
    EXPECT_EQ(fl.f.close_ns, 600u);
    EXPECT_EQ(fl.f.fin_seq[S], 5011u);

    // An ACK short of the server's FIN does not finish it; the right one does.
    EXPECT_EQ(fl.step(C, ACK, 1102, 5011, 0, 650), 0u);
    EXPECT_EQ(fl.step(C, ACK, 1102, 5012, 0, 700), (__u32)TT_ACT_FINISHED);
    EXPECT_EQ(fl.f.state, TT_CLOSED);
    EXPECT_EQ(fl.f.close_ns, 600u);  // the second FIN, not the last ACK
    EXPECT_TRUE(fl.f.flags & TT_F_DONE);

    // Retransmitted last ACKs and FINs after the end are stragglers, not a second finish.
    EXPECT_EQ(fl.step(C, ACK, 1102, 5012, 0, 710), 0u);
    EXPECT_EQ(fl.step(S, FIN | ACK, 5011, 1102, 0, 720), 0u);
    EXPECT_EQ(fl.f.close_ns, 600u);
}

TEST(Lifecycle, ServerClosesFirst) {
    Flow fl = established();
    EXPECT_EQ(fl.step(S, FIN | ACK, 5001, 1101, 0, 500), (__u32)TT_ACT_FIN);
    EXPECT_EQ(fl.f.state, TT_CLOSING);
    // The client's FIN also acknowledges the server's.
    EXPECT_EQ(fl.step(C, FIN | ACK, 1101, 5002, 0, 600), 0u);
    EXPECT_EQ(fl.f.state, TT_CLOSED);
    EXPECT_EQ(fl.f.ack_mask, 1 << S);
    EXPECT_EQ(fl.step(S, ACK, 5002, 1102, 0, 700), (__u32)TT_ACT_FINISHED);
}

TEST(Lifecycle, FinPiggybackedOnData) {
    Flow fl = established();
    // 100 bytes of data and the FIN in one segment: the FIN's seq is 1101 + 100.
    EXPECT_EQ(fl.step(C, FIN | ACK | PSH, 1101, 5001, 100, 500), (__u32)TT_ACT_FIN);
    EXPECT_EQ(fl.f.fin_seq[C], 1201u);
    // Acknowledging the data only (1201) does not cover the FIN (1202).
    fl.step(S, ACK, 5001, 1201, 0, 510);
    EXPECT_EQ(fl.f.ack_mask, 0);
    fl.step(S, FIN | ACK, 5001, 1202, 0, 520);
    EXPECT_EQ(fl.f.ack_mask, 1 << C);
    EXPECT_EQ(fl.step(C, ACK, 1202, 5002, 0, 530), (__u32)TT_ACT_FINISHED);
}

TEST(Lifecycle, FinAckAcrossSequenceWrap) {
    Flow fl;
    fl.first(C, SYN, 0xfffffff0u, 0, 0, 100);
    fl.step(S, SYN | ACK, 5000, 0xfffffff1u, 0, 200);
    fl.step(C, ACK, 0xfffffff1u, 5001, 0, 300);
    // 0x20 bytes of data wrap the sequence space; the FIN sits at 0x11.
    EXPECT_EQ(fl.step(C, FIN | ACK, 0xfffffff1u, 5001, 0x20, 400), (__u32)TT_ACT_FIN);
    EXPECT_EQ(fl.f.fin_seq[C], 0x11u);
    fl.step(S, ACK, 5001, 0x11, 0, 410);
    EXPECT_EQ(fl.f.ack_mask, 0);
    fl.step(S, FIN | ACK, 5001, 0x12, 0, 420);
    EXPECT_EQ(fl.f.ack_mask, 1 << C);
    EXPECT_EQ(fl.step(C, ACK, 0x12, 5002, 0, 430), (__u32)TT_ACT_FINISHED);
}

TEST(Lifecycle, SimultaneousClose) {
    Flow fl = established();
    // The FINs cross: neither acknowledges the other's.
    EXPECT_EQ(fl.step(C, FIN | ACK, 1101, 5001, 0, 500), (__u32)TT_ACT_FIN);
    EXPECT_EQ(fl.step(S, FIN | ACK, 5001, 1101, 0, 501), 0u);
    EXPECT_EQ(fl.f.state, TT_CLOSED);
    EXPECT_EQ(fl.f.close_ns, 501u);
    EXPECT_EQ(fl.f.ack_mask, 0);
    EXPECT_EQ(fl.step(C, ACK, 1102, 5002, 0, 510), 0u);
    EXPECT_EQ(fl.step(S, ACK, 5002, 1102, 0, 511), (__u32)TT_ACT_FINISHED);
}

TEST(Lifecycle, ResetFromClient) {
    Flow fl = established();
    EXPECT_EQ(fl.step(C, RST | ACK, 1101, 5001, 0, 800), (__u32)TT_ACT_FINISHED);
    EXPECT_EQ(fl.f.state, TT_RESET);
    EXPECT_EQ(fl.f.close_ns, 800u);
    EXPECT_TRUE(fl.f.flags & TT_F_DONE);
    // Stragglers change nothing and do not finish it twice.
    EXPECT_EQ(fl.step(S, ACK, 5001, 1101, 10, 900), 0u);
    EXPECT_EQ(fl.step(S, RST, 5001, 0, 0, 901), 0u);
    EXPECT_EQ(fl.step(S, FIN | ACK, 5001, 1101, 0, 902), 0u);
    EXPECT_EQ(fl.step(S, SYN | ACK, 5001, 1101, 0, 903), 0u);
    EXPECT_EQ(fl.f.state, TT_RESET);
    EXPECT_EQ(fl.f.close_ns, 800u);
    // A new SYN on the tuple starts over.
    EXPECT_EQ(fl.step(C, SYN, 7000, 0, 0, 904), (__u32)TT_ACT_REUSE);
}

TEST(Lifecycle, ResetFromServerDuringHandshakeAndClose) {
    Flow refused;
    refused.first(C, SYN, 1000, 0, 0, 100);
    EXPECT_EQ(refused.step(S, RST | ACK, 0, 1001, 0, 150), (__u32)TT_ACT_FINISHED);
    EXPECT_EQ(refused.f.state, TT_RESET);
    EXPECT_EQ(refused.f.close_ns, 150u);

    Flow closing = established();
    closing.step(C, FIN | ACK, 1101, 5001, 0, 500);
    EXPECT_EQ(closing.step(S, RST, 5001, 0, 0, 600), (__u32)TT_ACT_FINISHED);
    EXPECT_EQ(closing.f.state, TT_RESET);
    EXPECT_EQ(closing.f.close_ns, 600u);
}

TEST(Lifecycle, SettledOnlyWhenEstablishedWithoutFin) {
    Flow fl;
    fl.first(C, SYN, 1000, 0, 0, 100);
    // The client sends an ACK before any SYN-ACK was seen: not established.
    EXPECT_EQ(fl.step(C, ACK, 1001, 5001, 0, 150), 0u);
    EXPECT_EQ(fl.f.state, TT_SYN_SENT);
    fl.step(S, SYN | ACK, 5000, 1001, 0, 200);
    EXPECT_EQ(fl.step(S, ACK | PSH, 5001, 1001, 10, 250), 0u);  // SYN_RECV
    EXPECT_EQ(fl.step(C, ACK, 1001, 5011, 0, 300), (__u32)TT_ACT_SETTLED);
    EXPECT_EQ(fl.step(S, ACK, 5011, 1001, 0, 310), (__u32)TT_ACT_SETTLED);
    EXPECT_EQ(fl.step(S, FIN | ACK, 5011, 1001, 0, 400), (__u32)TT_ACT_FIN);
    EXPECT_EQ(fl.step(C, ACK, 1001, 5012, 0, 410), 0u);
    EXPECT_EQ(fl.step(C, ACK | PSH, 1001, 5012, 5, 420), 0u);
}

// --- tt_payload_advance: payload is how far the data reached past the base ---

TEST(PayloadAdvance, InOrderSegmentsGrowTheReach) {
    __u64 reach = 0;
    EXPECT_EQ(tt_payload_advance(&reach, 0, 1001, 1501), 1);
    EXPECT_EQ(reach, 500u);
    tt_payload_advance(&reach, 1, 1001, 2001);
    EXPECT_EQ(reach, 1000u);
}

TEST(PayloadAdvance, RetransmissionChangesNothing) {
    __u64 reach = 0;
    tt_payload_advance(&reach, 0, 1001, 2001);
    tt_payload_advance(&reach, 1, 1001, 1501);
    tt_payload_advance(&reach, 1, 1001, 2001);
    EXPECT_EQ(reach, 1000u);
}

TEST(PayloadAdvance, GapIsCountedBecauseTheApplicationSentIt) {
    __u64 reach = 0;
    tt_payload_advance(&reach, 0, 1001, 1101);  // 100 bytes
    tt_payload_advance(&reach, 1, 1001, 1401);  // 200 bytes lost before the hook, then 100
    EXPECT_EQ(reach, 400u);
    tt_payload_advance(&reach, 1, 1001, 1201);  // the lost part, resent
    EXPECT_EQ(reach, 400u);
}

TEST(PayloadAdvance, DataBeforeTheBaseIsIgnored) {
    __u64 reach = 0;
    EXPECT_EQ(tt_payload_advance(&reach, 0, 5000, 4900), 0);
    EXPECT_EQ(tt_payload_advance(&reach, 0, 5000, 5000), 0);
    EXPECT_EQ(reach, 0u);
}

TEST(PayloadAdvance, GrowsPastFourGigabytesAcrossSequenceWraps) {
    const __u32 base = 0xFFFFF000u;
    __u64 reach = 0;
    int known = 0;
    __u64 sent = 0;
    // 5 GiB in 64 KiB steps: the 32-bit sequence number wraps once, the reach does not.
    for (int i = 0; i < 5 * 16384; ++i) {
        sent += 65536;
        known = tt_payload_advance(&reach, known, base, static_cast<__u32>(base + sent));
    }
    EXPECT_EQ(reach, sent);
    EXPECT_EQ(reach, 5ull << 30);
}

TEST(PayloadAdvance, ReorderedSegmentsLeaveTheOneReachAtTheFurthest) {
    // The slot keeps one reach per direction: segments reordered before the
    // hook (later data first) never pull it back.
    __u64 reach = 0;
    int known = 0;
    for (__u32 end : {3001u, 2001u, 4001u, 1501u, 4001u})
        known = tt_payload_advance(&reach, known, 1001, end);
    EXPECT_EQ(known, 1);
    EXPECT_EQ(reach, 3000u);
}

TEST(NoteBase, FirstSegmentOfEachSideSetsItsBaseOnce) {
    tt_flow_info f{};
    tt_note_base(&f, C, SYN, 1000);
    EXPECT_EQ(f.base[C], 1001u);  // ISN + 1
    tt_note_base(&f, C, ACK, 5000);
    EXPECT_EQ(f.base[C], 1001u);  // kept
    tt_note_base(&f, S, RST, 7);
    EXPECT_EQ(f.base_mask, 1u << C);  // an RST's sequence number is not trusted
    tt_note_base(&f, S, ACK | PSH, 9000);
    EXPECT_EQ(f.base[S], 9000u);
    EXPECT_EQ(f.base_mask, 3u);
}

// --- the store's index: tt_index_hash (keyed SipHash-1-3), its two buckets and its tag ---

namespace {

constexpr __u32 kBuckets = 8192;  // --max-flows 65536: 65536 / 8 buckets
constexpr __u32 kMask = kBuckets - 1;
constexpr tt_hash_key kKey{0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};  // any fixed key

__u32 index_hash(const tt_flow_key* k) { return tt_index_hash(k, &kKey); }

// The same code, with the reference's 2 and 4 rounds.
TT_DEFINE_SIPHASH_KEY(siphash24_key, 2, 4)

// Normalised keys as the datapath builds them: random IPv4/IPv6 endpoints.
std::vector<tt_flow_key> random_keys(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::vector<tt_flow_key> keys(n);
    for (auto& k : keys) {
        k = tt_flow_key{};
        const bool v6 = rng() % 4 == 0;
        const int words = v6 ? 4 : 1;
        for (int w = 0; w < words; ++w) {
            const __u32 a = rng(), b = rng();
            std::memcpy(k.addr_a + 4 * w, &a, 4);
            std::memcpy(k.addr_b + 4 * w, &b, 4);
        }
        k.port_a = static_cast<__u16>(rng());
        k.port_b = static_cast<__u16>(rng());
        k.ifindex = 1 + rng() % 4;
        k.family = v6 ? TT_FAMILY_INET6 : TT_FAMILY_INET;
        tt_key_normalise(&k);
    }
    return keys;
}

struct Loads {
    std::vector<__u32> b1, b2;
    __u32 max1 = 0, max2 = 0;
    std::size_t same = 0;  // keys whose two buckets coincide
};

Loads loads(const std::vector<tt_flow_key>& keys) {
    Loads l;
    l.b1.assign(kBuckets, 0);
    l.b2.assign(kBuckets, 0);
    for (const auto& k : keys) {
        const __u32 h = index_hash(&k);
        const __u32 i1 = tt_bucket1(h, kMask), i2 = tt_bucket2(h, kMask);
        EXPECT_LT(i1, kBuckets);
        EXPECT_LT(i2, kBuckets);
        l.max1 = std::max(l.max1, ++l.b1[i1]);
        l.max2 = std::max(l.max2, ++l.b2[i2]);
        l.same += i1 == i2;
    }
    return l;
}

}  // namespace

TEST(KeyHash, SipHashMatchesTheReferenceVector) {
    // vectors_sip64[44] of the SipHash reference (veorq/SipHash vectors.h):
    // key 00 01 .. 0f, message 00 01 .. 2b (44 bytes, the size of a flow key),
    // output bytes f2 1d f2 e4 1d 45 35 f9 (little-endian).
    static_assert(sizeof(tt_flow_key) == 44);
    tt_flow_key msg;
    for (std::size_t i = 0; i < sizeof msg; ++i) reinterpret_cast<__u8*>(&msg)[i] = __u8(i);
    EXPECT_EQ(siphash24_key(&msg, &kKey), 0xf935451de4f21df2ull);
    // 1-3 is the same construction with fewer rounds: a different value.
    EXPECT_NE(tt_siphash13_key(&msg, &kKey), 0xf935451de4f21df2ull);
}

TEST(KeyHash, TheKeyDecidesWhereAFlowGoes) {
    // An attacker who does not know the key cannot tell which keys share buckets:
    // under another key almost every key lands elsewhere (by chance 1 in 8192).
    const tt_hash_key other{0x1122334455667788ull, 0x99aabbccddeeff00ull};
    const auto keys = random_keys(20000, 7);
    std::size_t same_bucket = 0, same_cache = 0;
    for (const auto& k : keys) {
        same_bucket += tt_bucket1(tt_index_hash(&k, &kKey), kMask) ==
                       tt_bucket1(tt_index_hash(&k, &other), kMask);
        same_cache += tt_cache_index(tt_cache_hash(&k, &kKey)) ==
                      tt_cache_index(tt_cache_hash(&k, &other));
    }
    EXPECT_LT(same_bucket, 20u);
    EXPECT_LT(same_cache, 40u);  // 4096 sets: ~5 by chance
    // Keys colliding under one key are spread under another.
    std::map<__u32, std::vector<tt_flow_key>> by_bucket;
    for (const auto& k : keys) by_bucket[tt_bucket1(tt_index_hash(&k, &kKey), kMask)].push_back(k);
    const auto& crowd = std::max_element(by_bucket.begin(), by_bucket.end(), [](auto& a, auto& b) {
                            return a.second.size() < b.second.size();
                        })->second;
    std::set<__u32> elsewhere;
    for (const auto& k : crowd) elsewhere.insert(tt_bucket1(tt_index_hash(&k, &other), kMask));
    EXPECT_GE(elsewhere.size(), crowd.size() - 1);
}

TEST(KeyHash, DeterministicAndOverTheWholeKey) {
    const tt_flow_key k = key6("fd00::1", 51000, "fd00::2", 443);
    tt_flow_key copy;
    std::memcpy(&copy, &k, sizeof k);
    EXPECT_EQ(index_hash(&k), index_hash(&copy));
    // Every byte of the key (address, ports, ifindex, family) reaches the hash:
    // one flipped bit changes it (a 32-bit PRF output: 1 in 4 billion by chance).
    const __u32 h = index_hash(&k);
    for (std::size_t byte = 0; byte < sizeof k; ++byte) {
        for (__u8 flip : {0x01, 0x80}) {
            tt_flow_key m = k;
            reinterpret_cast<__u8*>(&m)[byte] ^= flip;
            EXPECT_NE(index_hash(&m), h) << "byte " << byte << " flip " << int(flip);
        }
    }
}

TEST(KeyHash, RandomKeysSpreadOverBothBuckets) {
    const Loads l = loads(random_keys(100000, 1));
    // 12.2 keys per bucket on average: a uniform hash's fullest bucket holds
    // about 27 (Poisson), and more than 34 in fewer than 1 of 500 key sets.
    EXPECT_LE(l.max1, 34u);
    EXPECT_LE(l.max2, 34u);
    // The second choice is another bucket for almost every key (1 in 8192 by chance).
    EXPECT_LT(l.same, 100u);
    const auto empty = std::count(l.b1.begin(), l.b1.end(), 0u);
    EXPECT_LT(empty, 10) << "buckets never chosen first";
}

TEST(KeyHash, StructuredKeysSpreadToo) {
    // The realistic worst case: one client, one server, every source port; and
    // many clients of one service, addresses counting up.
    std::vector<tt_flow_key> ports, hosts;
    for (__u32 p = 1024; p < 65536; ++p) {
        tt_flow_key k = key4("10.0.0.1", static_cast<__u16>(p), "10.0.0.2", 443);
        tt_key_normalise(&k);
        ports.push_back(k);
    }
    for (__u32 i = 0; i < 65536; ++i) {
        tt_flow_key k = key4("172.16.0.1", 443, "10.0.0.0", 40000);
        const __u32 a = htonl(0x0A000000u + i);
        std::memcpy(k.addr_b, &a, 4);
        tt_key_normalise(&k);
        hosts.push_back(k);
    }
    for (const auto* keys : {&ports, &hosts}) {
        const Loads l = loads(*keys);
        // ~8 per bucket on average; a uniform hash's fullest holds about 20
        // and more than 25 in fewer than 1 of 100 key sets.
        EXPECT_LE(l.max1, 25u);
        EXPECT_LE(l.max2, 25u);
        EXPECT_LT(l.same, 100u);
    }
}

TEST(KeyHash, KeysSharingAFirstBucketScatterOverSecondOnes) {
    // Two choices only help if a crowded first bucket's keys go different ways.
    const auto keys = random_keys(100000, 2);
    const Loads l = loads(keys);
    const __u32 crowded =
        static_cast<__u32>(std::max_element(l.b1.begin(), l.b1.end()) - l.b1.begin());
    std::set<__u32> seconds;
    __u32 n = 0;
    for (const auto& k : keys) {
        const __u32 h = index_hash(&k);
        if (tt_bucket1(h, kMask) != crowded) continue;
        ++n;
        seconds.insert(tt_bucket2(h, kMask));
    }
    ASSERT_EQ(n, l.max1);
    EXPECT_GE(seconds.size(), n - 2) << "of " << n << " keys in bucket " << crowded;
}

TEST(KeyHash, TagIsTheTopEightBitsAndSpreads) {
    std::vector<__u32> tags(256, 0);
    const auto keys = random_keys(100000, 3);
    for (const auto& k : keys) {
        const __u32 h = index_hash(&k);
        const __u32 e = tt_index_entry(h, 12345);
        EXPECT_EQ(e >> 24, h >> 24);
        EXPECT_EQ(e & 0xff000000u, h & 0xff000000u);
        ++tags[h >> 24];
    }
    // ~391 keys per tag: a tag filters out all but 1/256 of a bucket's other slots.
    for (std::size_t t = 0; t < tags.size(); ++t) {
        EXPECT_GT(tags[t], 270u) << "tag " << t;
        EXPECT_LT(tags[t], 520u) << "tag " << t;
    }
}

TEST(IndexEntry, RoundTripsSlotAndTagAndIsNeverEmpty) {
    for (__u32 h : {0x00000000u, 0xffffffffu, 0xab123456u, 0x01fffffeu}) {
        for (__u32 slot : {0u, 1u, 65535u, 16000000u - 1, TT_MAX_SLOTS - 1}) {
            const __u32 e = tt_index_entry(h, slot);
            EXPECT_NE(e, 0u) << "0 marks an empty entry";
            EXPECT_EQ((e & TT_SLOT_MASK) - 1, slot);
            EXPECT_EQ(e & ~TT_SLOT_MASK, h & 0xff000000u);
        }
    }
    // The largest slot still leaves slot + 1 inside the 24 bits.
    EXPECT_LE(TT_MAX_SLOTS, TT_SLOT_MASK);
    EXPECT_EQ(TT_SLOT_BITS, 24);
}

TEST(IndexBuckets, StayInsideAnyPowerOfTwoTable) {
    const auto keys = random_keys(2000, 4);
    for (__u32 buckets : {1u, 2u, 64u, 8192u, 1u << 21}) {
        const __u32 mask = buckets - 1;
        std::set<__u32> seen1, seen2;
        for (const auto& k : keys) {
            const __u32 h = index_hash(&k);
            ASSERT_LT(tt_bucket1(h, mask), buckets);
            ASSERT_LT(tt_bucket2(h, mask), buckets);
            seen1.insert(tt_bucket1(h, mask));
            seen2.insert(tt_bucket2(h, mask));
        }
        // Small tables are fully used by both choices.
        if (buckets <= 64) {
            EXPECT_EQ(seen1.size(), buckets);
            EXPECT_EQ(seen2.size(), buckets);
        }
    }
}

TEST(SlotGen, OddIsLive) {
    EXPECT_FALSE(tt_gen_live(0));  // never used
    EXPECT_TRUE(tt_gen_live(1));
    EXPECT_FALSE(tt_gen_live(2));  // died
    EXPECT_TRUE(tt_gen_live(3));   // a reused tuple: + 2 keeps it live
    EXPECT_TRUE(tt_gen_live(0xffffffffu));
}
