// SPDX-License-Identifier: MIT
// Lifecycle: SYN to FIN/RST, one live slot per connection, exact counters at
// every step, exactly one close event carrying the slot and its generation;
// reused tuples, stragglers, flows first seen mid-stream, payload counted once
// across retransmissions, and segments of one flow counted on two CPUs.
#include <bpf/bpf.h>
#include <sched.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "bpf_fixture.hpp"

namespace tt_test {
namespace {

class LifecycleTest : public BpfTest {
   protected:
    // Full lifecycle with both sides' FINs. local_client: the client's packets
    // go out through egress (SYN egress => TT_F_LOCAL_CLIENT).
    void full_lifecycle(Conn& c, bool local_client) {
        auto from_client = [&](const Packet& p) { local_client ? egress(p) : ingress(p); };
        auto from_server = [&](const Packet& p) { local_client ? ingress(p) : egress(p); };
        const std::uint64_t t0 = tcptrack::monotonic_ns();

        from_client(c.c2s(kSyn));
        expect_single(c.key, c.expect, TT_SYN_SENT, "SYN");
        const auto at = live_slot(c.key);
        ASSERT_TRUE(at);
        EXPECT_TRUE(tt_gen_live(at->s.gen));
        from_server(c.s2c(kSyn | kAck));
        expect_single(c.key, c.expect, TT_SYN_RECV, "SYN-ACK");
        from_client(c.c2s(kAck));
        expect_single(c.key, c.expect, TT_ESTABLISHED, "ACK");
        from_client(c.c2s(kAck | kPsh, 100));
        from_server(c.s2c(kAck | kPsh, 1400));
        from_server(c.s2c(kAck | kPsh, 33));
        from_client(c.c2s(kAck));
        expect_single(c.key, c.expect, TT_ESTABLISHED, "data");
        from_client(c.c2s(kFin | kAck));
        expect_single(c.key, c.expect, TT_CLOSING, "client FIN");
        from_server(c.s2c(kFin | kAck));
        expect_single(c.key, c.expect, TT_CLOSED, "server FIN-ACK");
        EXPECT_TRUE(drain_events().empty()) << "closed before the last ACK";
        from_client(c.c2s(kAck));
        const std::uint64_t t1 = tcptrack::monotonic_ns();
        expect_empty("final ACK");

        auto ev = drain_events();
        ASSERT_EQ(ev.size(), 1u);
        const tt_close_event& e = ev[0];
        EXPECT_EQ(e.key, c.key);
        EXPECT_EQ(e.reason, TT_CLOSE_FINISHED);
        EXPECT_EQ(totals_of(e), c.expect);
        EXPECT_EQ(e.info.state, TT_CLOSED);
        EXPECT_EQ(e.info.client, c.cdir);
        EXPECT_EQ(e.info.fin_mask, 3);
        EXPECT_EQ(e.info.ack_mask, 3);
        EXPECT_EQ(e.info.end, TT_END_FIN(c.cdir)) << "the client's FIN came first";
        const std::uint8_t want_flags = TT_F_SYN_SEEN | TT_F_HS_SEEN | TT_F_DONE | TT_F_ASSURED |
                                        (local_client ? TT_F_LOCAL_CLIENT : 0);
        EXPECT_EQ(e.info.flags, want_flags);
        EXPECT_LE(t0, e.info.first_ns);
        EXPECT_EQ(e.info.first_ns, e.info.syn_ns);
        EXPECT_LT(e.info.syn_ns, e.info.synack_ns);
        EXPECT_LT(e.info.synack_ns, e.info.ack_ns);
        EXPECT_LT(e.info.ack_ns, e.info.close_ns);
        EXPECT_LE(e.info.close_ns, t1);
        EXPECT_EQ(e.info.syn_seq, 1000u);
        // The event names the slot and generation it ended; the slot is dead
        // (the next gen, even) and out of the index.
        EXPECT_EQ(e.slot, at->slot);
        EXPECT_EQ(e.gen, at->s.gen);
        EXPECT_EQ(slot(at->slot).gen, at->s.gen + 1);
        EXPECT_EQ(index_entries(c.key, at->slot), 0);
        EXPECT_EQ(stat(TT_STAT_UNTRACKED), 0u);
        EXPECT_EQ(stat(TT_STAT_CLOSE_DROPPED), 0u);
    }
};

// --- Lifecycle -------------------------------------------------------------

TEST_F(LifecycleTest, Ipv4LocalClientFullLifecycleOneEntryExactCountersOneCloseEvent) {
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    ASSERT_EQ(c.cdir, TT_DIR_AB);
    full_lifecycle(c, true);
}

TEST_F(LifecycleTest, Ipv4ServerSideClientSortsSecondFullLifecycle) {
    Conn c(false, {"10.0.0.9", 40000}, {"10.0.0.2", 22});
    ASSERT_EQ(c.cdir, TT_DIR_BA);
    full_lifecycle(c, false);
}

TEST_F(LifecycleTest, Ipv6ServerSideFullLifecycleLocalClientClearAckNsSet) {
    Conn c(true, {"2001:db8::20", 50000}, {"2001:db8::10", 443});
    ASSERT_EQ(c.cdir, TT_DIR_BA);
    full_lifecycle(c, false);
}

TEST_F(LifecycleTest, Ipv6LocalClientFullLifecycle) {
    Conn c(true, {"2001:db8::1", 50000}, {"2001:db8::2", 443});
    full_lifecycle(c, true);
}

// --- Lifecycle edges ---------------------------------------------------------

TEST_F(LifecycleTest, UnknownTupleAckOrRstCreatesNothingDataCreatesMidstream) {
    expect_ignored(data4().payload(0).tcp(1234, 80, 1, 1, kAck).build(), "pure ACK");
    expect_ignored(data4().payload(0).tcp(1234, 80, 1, 1, kRst).build(), "RST");
    expect_ignored(data4().payload(0).tcp(1234, 80, 1, 1, kRst | kAck).build(), "RST-ACK");
    expect_ignored(data4().payload(0).tcp(1234, 80, 1, 1, kFin | kAck).build(), "FIN-ACK");
    expect_ignored(data4().tcp(1234, 80, 1, 1, kFin | kAck).build(), "FIN with data");
    expect_ignored(data4().tcp(1234, 80, 1, 1, kRst | kAck).build(), "RST with data");
    EXPECT_TRUE(drain_events().empty());

    int dir;
    const auto key = key4(&dir);
    const Packet p = data4().build();
    expect_counted(p, key, dir, "data");
    auto s = states();
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s[0].second.flags, TT_F_MIDSTREAM);
    EXPECT_EQ(s[0].second.client, dir);
    EXPECT_NE(s[0].second.first_ns, 0u);
    EXPECT_EQ(s[0].second.syn_ns, 0u);
}

TEST_F(LifecycleTest, RstFromEitherSideEndsWithResetEvent) {
    for (bool from_client : {true, false}) {
        SCOPED_TRACE(from_client ? "client RST" : "server RST");
        Conn c(false, {"10.0.0.1", std::uint16_t(from_client ? 1111 : 2222)}, {"10.0.0.2", 80});
        establish(c);
        if (from_client)
            egress(c.c2s(kRst | kAck));
        else
            ingress(c.s2c(kRst));
        expect_empty("after RST");
        auto ev = drain_events();
        ASSERT_EQ(ev.size(), 1u);
        EXPECT_EQ(ev[0].key, c.key);
        EXPECT_EQ(ev[0].reason, TT_CLOSE_FINISHED);
        EXPECT_EQ(ev[0].info.state, TT_RESET);
        EXPECT_EQ(ev[0].info.end, TT_END_RST(from_client ? c.cdir : c.cdir ^ 1));
        EXPECT_EQ(totals_of(ev[0]), c.expect);
        EXPECT_NE(ev[0].info.close_ns, 0u);
        EXPECT_LT(ev[0].info.syn_ns, ev[0].info.close_ns);
    }
    // Refused: SYN answered by RST-ACK.
    Conn r(false, {"10.0.0.1", 3333}, {"10.0.0.2", 81});
    egress(r.c2s(kSyn));
    ingress(r.s2c(kRst | kAck));
    expect_empty("refused");
    auto ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].info.state, TT_RESET);
    EXPECT_EQ(ev[0].info.end, TT_END_RST(r.cdir ^ 1)) << "the server refused it";
    EXPECT_EQ(totals_of(ev[0]), r.expect);
}

TEST_F(LifecycleTest, SimultaneousCloseFinishesOnlyAfterBothFinsAcked) {
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    establish(c);
    const std::uint32_t c_before_fin = c.cseq, s_before_fin = c.sseq;
    egress(c.c2s(kFin | kAck, 0, s_before_fin));
    ingress(c.s2c(kFin | kAck, 0, c_before_fin));  // crossed: does not ack the client's FIN
    expect_single(c.key, c.expect, TT_CLOSED, "both FINs, none acked");
    egress(c.c2s(kAck));  // acks the server's FIN
    auto info = expect_single(c.key, c.expect, TT_CLOSED, "one FIN acked");
    EXPECT_EQ(info.ack_mask, 1 << (c.cdir ^ 1));
    EXPECT_TRUE(drain_events().empty());
    ingress(c.s2c(kAck));  // acks the client's FIN
    expect_empty("both acked");
    auto ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].info.state, TT_CLOSED);
    EXPECT_EQ(totals_of(ev[0]), c.expect);
}

TEST_F(LifecycleTest, SynRetransmitSameSeqKeepsConnection) {
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    Packet syn = c.c2s(kSyn);
    egress(syn);
    const auto first = expect_single(c.key, c.expect, TT_SYN_SENT, "SYN");
    egress(syn);
    c.expect.add(c.cdir, syn);
    const auto again = expect_single(c.key, c.expect, TT_SYN_SENT, "retransmitted SYN");
    EXPECT_EQ(again.first_ns, first.first_ns);
    EXPECT_EQ(again.syn_ns, first.syn_ns);
    EXPECT_TRUE(drain_events().empty());
    EXPECT_EQ(stat(TT_STAT_REUSED), 0u);
}

TEST_F(LifecycleTest, NewSynOnEstablishedTupleReportsReusedAndStartsFresh) {
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    establish(c);
    const Totals old = c.expect;
    const auto old_at = live_slot(c.key);
    ASSERT_TRUE(old_at);
    const auto old_info = old_at->s.info;
    Conn fresh = c;
    fresh.cseq = 777777;  // a different ISN: a new connection
    fresh.expect = {};
    egress(fresh.c2s(kSyn));
    auto info = expect_single(c.key, fresh.expect, TT_SYN_SENT, "new SYN");
    EXPECT_EQ(info.syn_seq, 777777u);
    EXPECT_GT(info.first_ns, old_info.first_ns);
    // The next connection keeps the slot under the next live generation.
    const auto now_at = live_slot(c.key);
    ASSERT_TRUE(now_at);
    EXPECT_EQ(now_at->slot, old_at->slot);
    EXPECT_EQ(now_at->s.gen, old_at->s.gen + 2);
    auto ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].key, c.key);
    EXPECT_EQ(ev[0].reason, TT_CLOSE_REUSED);
    EXPECT_EQ(totals_of(ev[0]), old);
    EXPECT_EQ(ev[0].info.first_ns, old_info.first_ns);
    EXPECT_EQ(ev[0].info.state, TT_ESTABLISHED);
    EXPECT_EQ(ev[0].slot, old_at->slot);
    EXPECT_EQ(ev[0].gen, old_at->s.gen);
    EXPECT_EQ(stat(TT_STAT_REUSED), 1u);
}

TEST_F(LifecycleTest, NewSynAfterCloseWithoutLastAckReportsReused) {
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    establish(c);
    egress(c.c2s(kFin | kAck));
    ingress(c.s2c(kFin | kAck));  // the final ACK is never seen
    const Totals old = c.expect;
    Conn fresh = c;
    fresh.cseq = 555;
    fresh.expect = {};
    egress(fresh.c2s(kSyn));
    expect_single(c.key, fresh.expect, TT_SYN_SENT, "new SYN");
    auto ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].reason, TT_CLOSE_REUSED);
    EXPECT_EQ(ev[0].info.state, TT_CLOSED);
    EXPECT_EQ(totals_of(ev[0]), old);
}

TEST_F(LifecycleTest, NewSynAfterFinishedCloseStartsFreshWithoutSecondEvent) {
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    establish(c);
    const auto old_at = live_slot(c.key);
    ASSERT_TRUE(old_at);
    egress(c.c2s(kFin | kAck));
    ingress(c.s2c(kFin | kAck));
    egress(c.c2s(kAck));
    ASSERT_EQ(drain_events().size(), 1u);
    const Totals at_close = c.expect;
    ingress(c.s2c(kAck));  // a straggler must not resurrect it
    expect_empty("straggler");
    // Nor a retransmission of the client's last data segment carrying its FIN.
    Conn again = c;
    again.cseq -= 101;  // the FIN's own sequence number was consumed: resend data + FIN
    egress(again.c2s(kFin | kAck | kPsh, 100));
    expect_empty("retransmitted data + FIN");
    EXPECT_TRUE(drain_events().empty());
    Conn fresh = c;
    fresh.cseq = 4242;
    fresh.expect = {};
    egress(fresh.c2s(kSyn));
    expect_single(c.key, fresh.expect, TT_SYN_SENT, "new SYN");
    // The dead slot is not recycled before user space says so: a fresh one.
    const auto now_at = live_slot(c.key);
    ASSERT_TRUE(now_at);
    EXPECT_NE(now_at->slot, old_at->slot);
    EXPECT_EQ(slot(old_at->slot).gen, old_at->s.gen + 1);
    EXPECT_EQ(totals_of(slot(old_at->slot)), at_close) << "stragglers counted into the dead slot";
    EXPECT_TRUE(drain_events().empty());
    EXPECT_EQ(stat(TT_STAT_REUSED), 0u);
}

// The slot's settled bit lets plain segments skip the lifecycle. Once the
// first FIN clears it, every CPU must take the slow path again, or a CPU that
// counted settled segments before would skip the final ACK.
TEST_F(LifecycleTest, SettledCpuStillSeesFinalAckAfterFinOnAnotherCpu) {
    CpuPin pin;
    if (!pin.allowed({0, 1})) GTEST_SKIP() << "needs CPUs 0 and 1";
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    ASSERT_TRUE(pin.to(0));
    establish(c);  // CPU 0 settled
    ASSERT_TRUE(pin.to(1));
    egress(c.c2s(kAck | kPsh, 5));  // CPU 1 settled
    ingress(c.s2c(kAck | kPsh, 7));
    ASSERT_TRUE(pin.to(0));
    egress(c.c2s(kFin | kAck));  // first FIN on CPU 0
    ingress(c.s2c(kFin | kAck));
    ASSERT_TRUE(pin.to(1));
    egress(c.c2s(kAck));  // final ACK on the CPU that was settled
    expect_empty("final ACK on CPU 1");
    auto ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(totals_of(ev[0]), c.expect);
    EXPECT_EQ(ev[0].info.state, TT_CLOSED);
}

TEST_F(LifecycleTest, SynAckSeenFirstStartsInSynRecvAndCompletes) {
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    c.c2s(kSyn);  // the SYN is never seen
    c.expect = {};
    ingress(c.s2c(kSyn | kAck));
    auto info = expect_single(c.key, c.expect, TT_SYN_RECV, "SYN-ACK");
    EXPECT_EQ(info.client, c.cdir);
    EXPECT_EQ(info.flags, TT_F_HS_SEEN | TT_F_LOCAL_CLIENT);
    egress(c.c2s(kAck));
    info = expect_single(c.key, c.expect, TT_ESTABLISHED, "ACK");
    EXPECT_NE(info.ack_ns, 0u);
}

TEST_F(LifecycleTest, RetransmittedDataCountsOnTheWireButNotAsPayload) {
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    establish(c);
    const Packet first = c.c2s(kAck | kPsh, 1000);
    egress(first);
    // The same segment again (a retransmission): wire bytes and packets grow, payload does not.
    egress(first);
    c.expect.bytes[c.cdir] += first.l3_len;
    c.expect.packets[c.cdir] += 1;
    expect_single(c.key, c.expect, TT_ESTABLISHED, "after a retransmission");
}

TEST_F(LifecycleTest, DataLostBeforeTheHookCountsOnceWhenItComesBack) {
    Conn c(true, {"2001:db8::1", 40000}, {"2001:db8::2", 443});
    establish(c);
    const Packet lost = c.c2s(kAck | kPsh, 700);  // never reaches the hook the first time
    c.expect.bytes[c.cdir] -= lost.l3_len;
    c.expect.packets[c.cdir] -= 1;
    c.expect.payload[c.cdir] -= 700;
    egress(c.c2s(kAck | kPsh, 300));  // arrives after a gap
    egress(lost);                     // the retransmission fills the gap
    c.expect.add(c.cdir, lost);
    expect_single(c.key, c.expect, TT_ESTABLISHED, "gap filled");
    egress(lost);  // a second copy is a retransmission of counted data
    c.expect.bytes[c.cdir] += lost.l3_len;
    c.expect.packets[c.cdir] += 1;
    expect_single(c.key, c.expect, TT_ESTABLISHED, "duplicate of the gap");
}

// Every segment of one flow on the other CPU than the last, through the
// handshake, settled data both ways, retransmissions and the close: the
// slot's single set of counters is exact at every step and in the close event.
TEST_F(LifecycleTest, TwoCpusTakingTurnsCountOneFlowExactly) {
    CpuPin pin;
    if (!pin.allowed({0, 1})) GTEST_SKIP() << "needs CPUs 0 and 1";
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    int cpu = 0;
    auto turn = [&] {
        cpu ^= 1;
        return pin.to(cpu);
    };
    ASSERT_TRUE(turn());
    egress(c.c2s(kSyn));
    ASSERT_TRUE(turn());
    ingress(c.s2c(kSyn | kAck));
    ASSERT_TRUE(turn());
    egress(c.c2s(kAck));
    expect_single(c.key, c.expect, TT_ESTABLISHED, "handshake on alternating CPUs");
    for (int i = 0; i < 40; ++i) {
        ASSERT_TRUE(turn());
        if (i % 3 == 2) {
            const Packet p = c.s2c(kAck | kPsh, 100 + i);
            ingress(p);
            ASSERT_TRUE(turn());
            ingress(p);  // retransmitted on the other CPU: wire counts only
            c.expect.bytes[c.cdir ^ 1] += p.l3_len;
            c.expect.packets[c.cdir ^ 1] += 1;
        } else {
            egress(c.c2s(kAck | kPsh, 1000 + i));
        }
    }
    expect_single(c.key, c.expect, TT_ESTABLISHED, "data on alternating CPUs");
    ASSERT_TRUE(turn());
    egress(c.c2s(kFin | kAck));
    ASSERT_TRUE(turn());
    ingress(c.s2c(kFin | kAck));
    ASSERT_TRUE(turn());
    egress(c.c2s(kAck));
    expect_empty("closed");
    auto ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(totals_of(ev[0]), c.expect);
    EXPECT_EQ(ev[0].info.state, TT_CLOSED);
}

// Two CPUs counting one direction of one flow at the same instant (PROG_TEST_RUN
// with repeat, one thread pinned to each CPU): not one segment is lost. The
// slot's one copy of the counters relies on its atomic adds for this.
TEST_F(LifecycleTest, TwoCpusCountingOneFlowAtOnceLoseNothing) {
    CpuPin pin;
    if (!pin.allowed({0, 1})) GTEST_SKIP() << "needs CPUs 0 and 1";
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    establish(c);
    const Packet seg = c.c2s(kAck | kPsh, 100);
    egress(seg);  // settles the flow: both CPUs take the fast path below
    const auto before = flows();
    ASSERT_EQ(before.size(), 1u);
    egress(seg);
    const auto one = flows();
    ASSERT_EQ(one.size(), 1u);
    const std::uint64_t seg_bytes = one[0].second.bytes[c.cdir] - before[0].second.bytes[c.cdir];
    ASSERT_GT(seg_bytes, 100u);

    constexpr std::uint32_t kRuns = 300000;
    const int fd = bpf_program__fd(skel_->programs(true).egress);
    std::atomic<int> ready{0};
    auto blast = [&](int cpu, bool* ok) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        *ok = sched_setaffinity(0, sizeof(set), &set) == 0;  // this thread only
        __sk_buff ctx{};
        LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = seg.data.data(),
                    .data_size_in = static_cast<std::uint32_t>(seg.data.size()), .ctx_in = &ctx,
                    .ctx_size_in = sizeof(ctx), .repeat = kRuns);
        // Start together, each on its CPU, so the two runs overlap as much as they can.
        ready.fetch_add(1);
        while (ready.load() < 2) {
        }
        *ok = *ok && bpf_prog_test_run_opts(fd, &o) == 0 && static_cast<int>(o.retval) == kTcNext;
    };
    // A few rounds: a lost update in any of them shows in the total.
    constexpr int kRounds = 3;
    for (int round = 0; round < kRounds; ++round) {
        bool ok0 = false, ok1 = false;
        ready = 0;
        std::thread t0(blast, 0, &ok0), t1(blast, 1, &ok1);
        t0.join();
        t1.join();
        ASSERT_TRUE(ok0 && ok1) << "PROG_TEST_RUN with repeat failed";
    }

    const auto after = flows();
    ASSERT_EQ(after.size(), 1u);
    const Totals& a = after[0].second;
    const Totals& b = one[0].second;
    EXPECT_EQ(a.packets[c.cdir] - b.packets[c.cdir], 2ull * kRounds * kRuns);
    EXPECT_EQ(a.bytes[c.cdir] - b.bytes[c.cdir], 2ull * kRounds * kRuns * seg_bytes);
    EXPECT_EQ(a.payload[c.cdir], b.payload[c.cdir]) << "the same segment again adds no payload";
}

}  // namespace
}  // namespace tt_test
