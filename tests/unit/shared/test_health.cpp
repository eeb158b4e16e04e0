// SPDX-License-Identifier: MIT
// Connection health (include/tcptrack/health.h), the pure step the datapath
// runs on every segment: each corner the issue names, on hand-made segments.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "tcptrack/abi.h"

// The RTT probe rate limit (the datapath's --rtt-rate-limit), in us: 0 but in
// the test of the limit itself.
static __u32 g_probe_gap_us = 0;
#define TT_HEALTH_PROBE_GAP_US g_probe_gap_us
#include "tcptrack/health.h"

namespace {

constexpr __u8 SYN = TT_TCP_SYN, ACK = TT_TCP_ACK, FIN = TT_TCP_FIN, RST = TT_TCP_RST;
constexpr int C = TT_DIR_AB;  // the client's side in these scenarios
constexpr int S = TT_DIR_BA;
constexpr std::uint64_t kMs = 1000000;

struct Seg {
    tt_seg g{};
    Seg(__u8 flags, __u32 seq, __u32 ack, __u32 payload = 0) {
        g.flags = flags;
        g.seq = seq;
        g.ack = ack;
        g.payload = payload;
        g.segs = 1;
        g.win = 500;
    }
    Seg& segs(__u32 n) {
        g.segs = n;
        return *this;
    }
    Seg& win(__u16 w) {
        g.win = w;
        return *this;
    }
    Seg& ts(__u32 val, __u32 ecr) {
        g.has_ts = 1;
        g.tsval = val;
        g.tsecr = ecr;
        return *this;
    }
};

class Health : public ::testing::Test {
   protected:
    tt_health h{};
    std::uint64_t now = 1000 * kMs;
    void step(int side, const Seg& s, int egress = 0) {
        tt_seg g = s.g;
        g.now_ns = now;  // the segment's time (the datapath reads its clock lazily)
        tt_health_step(&h, side, &g, egress);
    }
    const tt_health_side& of(int side) const { return h.side[side]; }
    // Client data already flowing: client nxt = seq, server acked it.
    void established(__u32 cseq, __u32 sseq) {
        step(C, Seg(ACK, cseq, sseq, 100));
        step(S, Seg(ACK, sseq, cseq + 100));
    }
};

// Requests every 4 ms, each echoed 1 ms later, under a 10 ms rate limit:
// a side starts a probe only once 10 ms have passed since its last one, so
// one exchange in three is timed; the rest of health sees every segment.
TEST_F(Health, ProbesStartAtMostOncePerRateLimit) {
    struct Gap {
        explicit Gap(__u32 us) { g_probe_gap_us = us; }
        ~Gap() { g_probe_gap_us = 0; }
    } gap(10000);
    __u32 cseq = 1000, tsv = 100, secr = 7000;
    const auto exchanges = [&](int n) {
        for (int i = 0; i < n; ++i, cseq += 100, tsv += 4, ++secr) {
            step(C, Seg(ACK, cseq, 5000, 100).ts(tsv, secr));
            now += 1 * kMs;
            step(S, Seg(ACK, 5000, cseq + 100).ts(secr + 1, tsv));
            now += 3 * kMs;
        }
    };
    exchanges(9);
    // Exchanges at 0, 4, 8, 12, 16, 20, 24, 28, 32 ms: probes at 0, 12, 24 ms.
    EXPECT_EQ(of(C).rtt_samples, 3u);
    EXPECT_EQ(of(C).rtt_min_us, 1000u);
    EXPECT_EQ(of(C).rtt_max_us, 1000u);
    EXPECT_EQ(of(C).nxt, cseq);
    EXPECT_EQ(of(C).retrans, 0u);
    // No limit: every exchange is timed.
    g_probe_gap_us = 0;
    exchanges(3);
    EXPECT_EQ(of(C).rtt_samples, 6u);
}

TEST_F(Health, InOrderDataIsNeitherRetransmissionNorGap) {
    established(1000, 5000);
    for (__u32 i = 0; i < 10; ++i) step(C, Seg(ACK, 1100 + i * 1000, 5000, 1000));
    EXPECT_EQ(of(C).retrans, 0u);
    EXPECT_EQ(of(C).gaps, 0u);
    EXPECT_EQ(of(C).nxt, 11100u);
}

TEST_F(Health, WholeRetransmissionCountsItsWireSegmentsAndBytes) {
    established(1000, 5000);
    step(C, Seg(ACK, 1100, 5000, 4000).segs(4));  // a GSO train of 4
    step(C, Seg(ACK, 1100, 5000, 4000).segs(4));  // sent again, whole
    step(C, Seg(ACK, 2100, 5000, 1000));          // one of its segments again
    EXPECT_EQ(of(C).retrans, 5u);
    EXPECT_EQ(of(C).retrans_bytes, 5000u);
    EXPECT_EQ(of(C).nxt, 5100u);
}

TEST_F(Health, PartOfATrainAlreadySeenCountsOnlyThatPart) {
    established(1000, 5000);
    step(C, Seg(ACK, 1100, 5000, 4000).segs(4));  // nxt 5100
    // SACK-era: a train of 4 x 1000 starting 2000 before nxt: 2 segments old, 2 new.
    step(C, Seg(ACK, 3100, 5000, 4000).segs(4));
    EXPECT_EQ(of(C).retrans, 2u);
    EXPECT_EQ(of(C).retrans_bytes, 2000u);
    EXPECT_EQ(of(C).nxt, 7100u);
    EXPECT_EQ(of(C).gaps, 0u);
}

TEST_F(Health, SequenceWrapIsSerialArithmetic) {
    const __u32 near = 0xfffff000u;
    established(near, 5000);
    step(C, Seg(ACK, near + 100, 5000, 8000));   // crosses 2^32
    EXPECT_EQ(of(C).nxt, near + 8100);           // wrapped
    step(C, Seg(ACK, near + 8100, 5000, 1000));  // in order past the wrap
    EXPECT_EQ(of(C).retrans, 0u);
    EXPECT_EQ(of(C).gaps, 0u);
    step(C, Seg(ACK, near + 100, 5000, 8000));  // the wrapping segment again
    EXPECT_EQ(of(C).retrans, 1u);
    EXPECT_EQ(of(C).retrans_bytes, 8000u);
    step(C, Seg(ACK, near + 20000, 5000, 10));  // past the wrap, beyond nxt
    EXPECT_EQ(of(C).gaps, 1u);
}

TEST_F(Health, KeepalivesAndZeroWindowProbesAreLeftOut) {
    established(1000, 5000);           // client nxt 1100
    step(C, Seg(ACK, 1099, 5000, 0));  // Linux keepalive: nxt - 1, no data
    step(C, Seg(ACK, 1099, 5000, 1));  // one-byte keepalive (nxt - 1, 1 byte)
    EXPECT_EQ(of(C).retrans, 0u);
    // The server's window closes; another stack probes it with one new byte at nxt...
    step(S, Seg(ACK, 5000, 1100).win(0));
    step(C, Seg(ACK, 1100, 5000, 1));
    EXPECT_EQ(of(C).retrans, 0u);
    EXPECT_EQ(of(C).gaps, 0u);
    // ...and the same byte again (now nxt - 1, one byte): still a probe.
    step(C, Seg(ACK, 1100, 5000, 1));
    step(C, Seg(ACK, 1100, 5000, 1));
    EXPECT_EQ(of(C).retrans, 0u);
    // Two bytes ending at nxt are data sent again.
    step(C, Seg(ACK, 1099, 5000, 2));
    EXPECT_EQ(of(C).retrans, 1u);
}

TEST_F(Health, SynAndFinRetransmissionsCountLikeTheKernelDoes) {
    step(C, Seg(SYN, 999, 0).ts(10, 0));
    step(C, Seg(SYN, 999, 0).ts(1010, 0));  // the SYN again
    EXPECT_EQ(of(C).retrans, 1u);
    EXPECT_EQ(of(C).retrans_bytes, 0u);
    step(S, Seg(SYN | ACK, 4999, 1000));
    step(C, Seg(ACK, 1000, 5000));
    step(C, Seg(FIN | ACK, 1000, 5000));
    step(C, Seg(FIN | ACK, 1000, 5000));  // the FIN again
    EXPECT_EQ(of(C).retrans, 2u);
    EXPECT_EQ(of(S).retrans, 0u);
}

TEST_F(Health, GapIsDataStartingPastNxt) {
    established(1000, 5000);
    step(C, Seg(ACK, 3100, 5000, 1000));  // 1100..3099 never seen here
    EXPECT_EQ(of(C).gaps, 1u);
    EXPECT_EQ(of(C).nxt, 4100u);
    step(C, Seg(ACK, 1100, 5000, 2000));  // the hole filled late: a retransmission here
    EXPECT_EQ(of(C).retrans, 1u);
    EXPECT_EQ(of(C).gaps, 1u);
}

TEST_F(Health, MidStreamPickupJudgesNothingUntilItKnowsNxt) {
    // The first segments seen: no handshake, window scale unknown.
    step(S, Seg(ACK, 70000, 123456, 1400).win(0));
    EXPECT_EQ(of(S).retrans, 0u);
    EXPECT_EQ(of(S).gaps, 0u);
    EXPECT_EQ(of(S).nxt, 71400u);
    // A raw window of 0 is zero whatever the scale.
    EXPECT_EQ(of(S).zero_win, 1u);
    step(C, Seg(ACK, 123456, 71400, 0));
    EXPECT_EQ(of(C).dup_acks, 0u);
}

TEST_F(Health, DuplicateAcksFollowWiresharksConditions) {
    established(1000, 5000);
    step(C, Seg(ACK, 1100, 5000, 3000).segs(3));  // client nxt 4100
    step(S, Seg(ACK, 5000, 2100));                // acks the first
    step(S, Seg(ACK, 5000, 2100));                // dup 1
    step(S, Seg(ACK, 5000, 2100));                // dup 2
    step(S, Seg(ACK, 5000, 2100).win(501));       // window update: not a dup
    step(S, Seg(ACK, 5000, 2100, 10).win(501));   // data: not a dup
    step(S, Seg(ACK, 5010, 2100).win(501));       // dup 3 (same ack and window as the last)
    step(S, Seg(ACK, 5010, 2100).win(501));       // dup 4
    EXPECT_EQ(of(S).dup_acks, 4u);
    // A retransmission now is fast (3+ in a row from the peer).
    step(C, Seg(ACK, 2100, 5010, 1000));
    EXPECT_EQ(of(C).retrans, 1u);
    EXPECT_EQ(of(C).fast_retrans, 1u);
    // The ACK moves: the run ends; the next retransmission is not fast.
    step(S, Seg(ACK, 5010, 4100).win(501));
    step(C, Seg(ACK, 3100, 5010, 1000));
    EXPECT_EQ(of(C).retrans, 2u);
    EXPECT_EQ(of(C).fast_retrans, 1u);
    // Nothing outstanding (everything acked): the same ACK again is not a dup.
    step(S, Seg(ACK, 5010, 4100).win(501));
    EXPECT_EQ(of(S).dup_acks, 4u);
}

TEST_F(Health, ZeroWindowTransitionsAndTimeIncludingTheCurrentStretch) {
    established(1000, 5000);
    now += kMs;
    step(S, Seg(ACK, 5000, 1100).win(0));
    step(S, Seg(ACK, 5000, 1100).win(0));  // still zero: one transition
    now += 250 * kMs;
    step(S, Seg(ACK, 5000, 1100).win(100));
    EXPECT_EQ(of(S).zero_win, 1u);
    EXPECT_EQ(of(S).zero_win_ms, 250u);
    EXPECT_FALSE(of(S).flags & TT_H_ZW);
    now += 10 * kMs;
    step(S, Seg(ACK, 5000, 1100).win(0));
    EXPECT_EQ(of(S).zero_win, 2u);
    EXPECT_TRUE(of(S).flags & TT_H_ZW);
    // While zero, a reader adds its own now (ms) to get the time so far.
    const __u32 read_at_ms = static_cast<__u32>((now + 40 * kMs) / kMs);
    EXPECT_EQ(static_cast<__u32>(of(S).zero_win_ms + read_at_ms), 290u);
    // A RST carries no window worth counting.
    step(S, Seg(RST, 5000, 0).win(0));
    EXPECT_EQ(of(S).zero_win, 2u);
}

TEST_F(Health, TimestampRttFromTheFirstSegmentCarryingATsvalToItsEcho) {
    established(1000, 5000);
    step(C, Seg(ACK, 1100, 5000, 1000).ts(700, 300));  // probe: TSval 700
    now += 3 * kMs;
    step(C, Seg(ACK, 2100, 5000, 1000).ts(700, 300));  // same tick: not a new probe
    now += 7 * kMs;
    step(S, Seg(ACK, 5000, 3100).ts(301, 700));  // the echo, 10 ms after the first
    EXPECT_EQ(of(C).rtt_samples, 1u);
    EXPECT_EQ(of(C).rtt_last_us, 10000u);
    EXPECT_EQ(of(C).rtt_min_us, 10000u);
    EXPECT_EQ(of(C).rtt_max_us, 10000u);
    EXPECT_EQ(of(C).srtt8_us, 80000u);
    // A later segment with the TSval just matched is not a probe (its first
    // sighting was 10 ms ago): an echo of 700 again gives no sample.
    step(C, Seg(ACK, 3100, 5000, 1000).ts(700, 301));
    now += 1 * kMs;
    step(S, Seg(ACK, 5000, 4100).ts(302, 700));
    EXPECT_EQ(of(C).rtt_samples, 1u);
    // A new TSval: the next probe; a 20 ms sample moves srtt by 1/8.
    step(C, Seg(ACK, 4100, 5000, 1000).ts(701, 302));
    now += 20 * kMs;
    step(S, Seg(ACK, 5000, 5100).ts(303, 701));
    EXPECT_EQ(of(C).rtt_samples, 2u);
    EXPECT_EQ(of(C).rtt_last_us, 20000u);
    EXPECT_EQ(of(C).rtt_max_us, 20000u);
    EXPECT_EQ(of(C).srtt8_us, 80000u - 10000u + 20000u);  // 11.25 ms x 8
    // The server's data is timed the other way, on its own side.
    EXPECT_EQ(of(S).rtt_samples, 0u);
}

TEST_F(Health, TsecrZeroAndEchoesOfOtherTsvals) {
    established(1000, 5000);
    step(C, Seg(ACK, 1100, 5000, 1000).ts(700, 300));
    step(S, Seg(ACK, 5000, 2100).ts(301, 0));  // TSecr 0: no echo
    EXPECT_EQ(of(C).rtt_samples, 0u);
    EXPECT_TRUE(of(C).flags & TT_H_TS_PROBE);
    step(S, Seg(ACK, 5000, 2100).ts(301, 650));  // older than the probe: ignored
    EXPECT_TRUE(of(C).flags & TT_H_TS_PROBE);
    step(S, Seg(ACK, 5000, 2100).ts(301, 705));  // a later TSval's echo: the probe is over
    EXPECT_EQ(of(C).rtt_samples, 0u);
    EXPECT_FALSE(of(C).flags & TT_H_TS_PROBE);
    // Pure ACKs do not start probes (their echo waits for the peer's next send).
    step(C, Seg(ACK, 2100, 5000, 0).ts(800, 301));
    EXPECT_FALSE(of(C).flags & TT_H_TS_PROBE);
}

TEST_F(Health, TsvalWrapsAreSerial) {
    established(1000, 5000);
    step(C, Seg(ACK, 1100, 5000, 1000).ts(0xffffffffu, 1));
    now += 5 * kMs;
    step(S, Seg(ACK, 5000, 2100).ts(2, 3));  // echoes a TSval after the wrap: over, no sample
    EXPECT_EQ(of(C).rtt_samples, 0u);
    EXPECT_FALSE(of(C).flags & TT_H_TS_PROBE);
    step(C, Seg(ACK, 2100, 5000, 1000).ts(4, 2));
    now += 5 * kMs;
    step(S, Seg(ACK, 5000, 3100).ts(3, 4));
    EXPECT_EQ(of(C).rtt_samples, 1u);
    EXPECT_EQ(of(C).rtt_last_us, 5000u);
}

TEST_F(Health, WithoutTimestampsKarnTimesNewDataByItsAck) {
    established(1000, 5000);  // the first data seen from a side is never timed
    EXPECT_EQ(of(C).rtt_samples, 0u);
    step(C, Seg(ACK, 1100, 5000, 1000));  // probe: end 2100
    now += 2 * kMs;
    step(C, Seg(ACK, 2100, 5000, 1000));
    now += 4 * kMs;
    step(S, Seg(ACK, 5000, 1600));  // does not cover it yet
    EXPECT_EQ(of(C).rtt_samples, 0u);
    now += 4 * kMs;
    step(S, Seg(ACK, 5000, 2100));  // covers it: 10 ms
    EXPECT_EQ(of(C).rtt_samples, 1u);
    EXPECT_EQ(of(C).rtt_last_us, 10000u);
    // Karn: retransmitted before its ACK, the probe is dropped.
    step(C, Seg(ACK, 3100, 5000, 1000));  // probe: end 4100
    now += 200 * kMs;
    step(C, Seg(ACK, 3100, 5000, 1000));  // sent again
    step(S, Seg(ACK, 5000, 4100));
    EXPECT_EQ(of(C).rtt_samples, 1u);
    EXPECT_EQ(of(C).retrans, 1u);
}

TEST_F(Health, RstChangesNothingAndEgressIsNoted) {
    established(1000, 5000);
    const tt_health before = h;
    step(S, Seg(RST | ACK, 5000, 1100).win(0), 1);
    EXPECT_EQ(std::memcmp(&before, &h, sizeof h), 0);
    step(C, Seg(ACK, 1100, 5000, 10), 1);
    EXPECT_TRUE(of(C).flags & TT_H_EGRESS);
    EXPECT_FALSE(of(S).flags & TT_H_EGRESS);
}

}  // namespace
