// SPDX-License-Identifier: MIT
// The pure C logic shared with the datapath: the key's normal form
// (include/tcptrack/abi.h) and the TCP lifecycle (include/tcptrack/lifecycle.h).
#include <gtest/gtest.h>

#include <cstring>

#include "tcptrack/abi.h"
#include "tcptrack/lifecycle.h"
#include "keys.hpp"

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

// The owner's cgroup: the end process attribution prefers (the client when its
// SYN left here, else the server) wins; the other end's stands only meanwhile.
TEST(Owner, PreferredEndWinsOtherEndOnlyMeanwhile) {
    tt_flow_info local{};  // the client is on this host: its SYN left through egress
    tt_info_init(&local, C, SYN, 1000, 1, /*ingress=*/0);
    EXPECT_EQ(tt_owner_side(&local), C);
    tt_note_owner(&local, C, 0);  // no socket on this segment: nothing
    EXPECT_EQ(local.owner_cgroup, 0u);
    tt_note_owner(&local, C, 41);
    tt_note_owner(&local, S, 52);  // a veth peer's server socket: not the preferred end
    tt_note_owner(&local, C, 43);  // the same end again: the first stays
    EXPECT_EQ(local.owner_cgroup, 41u);
    EXPECT_EQ(local.owner_side, C);

    tt_flow_info remote{};  // the client's SYN came in: the server is the end shown
    tt_info_init(&remote, C, SYN, 1000, 1, /*ingress=*/1);
    EXPECT_EQ(tt_owner_side(&remote), S);
    tt_note_owner(&remote, C, 41);  // the client's socket, kept across a veth: meanwhile
    EXPECT_EQ(remote.owner_cgroup, 41u);
    tt_note_owner(&remote, S, 52);  // the server's SYN-ACK: the preferred end replaces it
    tt_note_owner(&remote, C, 43);
    EXPECT_EQ(remote.owner_cgroup, 52u);
    EXPECT_EQ(remote.owner_side, S);
}

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
    EXPECT_EQ(TT_END_FIN_SIDE(fl.f.end), C) << "the client's FIN came first";
    EXPECT_EQ(TT_END_RST_SIDE(fl.f.end), -1);

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
    EXPECT_EQ(fl.f.end, TT_END_FIN(S)) << "the server's FIN came first";
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
    EXPECT_EQ(fl.f.end, TT_END_FIN(C)) << "crossing FINs: the one seen first";
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
    EXPECT_EQ(fl.f.end, TT_END_RST(C)) << "the straggling RST from the server is not recorded";
    // A new SYN on the tuple starts over.
    EXPECT_EQ(fl.step(C, SYN, 7000, 0, 0, 904), (__u32)TT_ACT_REUSE);
}

TEST(Lifecycle, ResetFromServerDuringHandshakeAndClose) {
    Flow refused;
    refused.first(C, SYN, 1000, 0, 0, 100);
    EXPECT_EQ(refused.step(S, RST | ACK, 0, 1001, 0, 150), (__u32)TT_ACT_FINISHED);
    EXPECT_EQ(refused.f.state, TT_RESET);
    EXPECT_EQ(refused.f.close_ns, 150u);
    EXPECT_EQ(refused.f.end, TT_END_RST(S));

    Flow closing = established();
    closing.step(C, FIN | ACK, 1101, 5001, 0, 500);
    EXPECT_EQ(closing.step(S, RST, 5001, 0, 0, 600), (__u32)TT_ACT_FINISHED);
    EXPECT_EQ(closing.f.state, TT_RESET);
    EXPECT_EQ(closing.f.close_ns, 600u);
    // Both are kept: the client's FIN came first, then the server's RST ended it.
    EXPECT_EQ(closing.f.end, TT_END_FIN(C) | TT_END_RST(S));
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
