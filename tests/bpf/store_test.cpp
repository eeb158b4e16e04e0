// SPDX-License-Identifier: MIT
// The slot store's own risks (tcptrack/store.h): generations (a tuple's next
// connection never inherits the last one's counts, dead slots come back only
// through the collector), the two-choice index (overflow into the second
// bucket, both buckets full, tag collisions), and the eviction program that
// ends a (slot, gen) for user space.
#include <bpf/bpf.h>

#include <climits>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tcptrack/abi.h"
#include "tcptrack/filter_vm.h"  // before the skeleton: its .bss holds struct tt_filter
#include "tcptrack/store.h"      // before the skeleton: its .rodata holds struct tt_hash_key
#include "tcptrack.skel.h"
#include "bpf_fixture.hpp"

namespace tt_test {
namespace {

using tcptrack::SlotRef;

class StoreTest : public BpfTest {
   protected:
    // Handshake plus data each way (sizes vary with n), without expect_single:
    // other flows are live. Leaves c ESTABLISHED and settled.
    void open(Conn& c, int n) {
        egress(c.c2s(kSyn));
        ingress(c.s2c(kSyn | kAck));
        egress(c.c2s(kAck));
        egress(c.c2s(kAck | kPsh, 100 + n));
        ingress(c.s2c(kAck | kPsh, 200 + n));
    }

    // c's live slot: exactly its counters and state, found through one index entry.
    std::optional<LiveSlot> expect_flow(const Conn& c, std::uint8_t state,
                                        const std::string& what) {
        SCOPED_TRACE(what);
        const auto at = live_slot(c.key);
        EXPECT_TRUE(at) << "not live: " << ::testing::PrintToString(c.key);
        if (!at) return at;
        EXPECT_EQ(totals_of(at->s), c.expect) << ::testing::PrintToString(c.key);
        EXPECT_EQ(int(at->s.info.state), int(state)) << ::testing::PrintToString(c.key);
        EXPECT_EQ(index_entries(c.key, at->slot), 1) << ::testing::PrintToString(c.key);
        return at;
    }

    std::uint32_t mask() const { return skel_->geometry().index_buckets - 1; }

    // Connection number i of a long list of distinct tuples (10.7.x.1:port -> 10.8.0.1:80).
    static Conn nth(int i) {
        return Conn(false,
                    {"10.7." + std::to_string(i / 60000) + ".1", std::uint16_t(1 + i % 60000)},
                    {"10.8.0.1", 80});
    }

    // The first n connections (in nth order, from `from`) whose key hash passes `want`.
    std::vector<Conn> search(std::size_t n, const std::function<bool(std::uint32_t)>& want,
                             int from = 0) {
        std::vector<Conn> out;
        for (int i = from; i < 250 * 60000 && out.size() < n; ++i) {
            Conn c = nth(i);
            if (want(index_hash(&c.key))) out.push_back(c);
        }
        EXPECT_EQ(out.size(), n) << "not enough keys found";
        return out;
    }

    // Runs the eviction program on these (slot, gen) pairs as the collector
    // does; returns its count and sets *done to its bit mask.
    int evict(const std::vector<SlotRef>& refs, std::uint64_t* done) {
        tt_evict_req req{};
        req.n = static_cast<std::uint32_t>(refs.size());
        for (std::size_t i = 0; i < refs.size(); ++i) {
            req.e[i].slot = refs[i].slot;
            req.e[i].gen = refs[i].gen;
        }
        const std::uint32_t zero = 0;
        const int fd = bpf_map__fd((*skel_)->maps.evict_req);
        EXPECT_EQ(bpf_map_update_elem(fd, &zero, &req, BPF_ANY), 0);
        std::uint8_t frame[64] = {};
        LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = sizeof(frame),
                    .repeat = 1);
        if (bpf_prog_test_run_opts(bpf_program__fd((*skel_)->progs.tcptrack_evict), &opts) != 0) {
            ADD_FAILURE() << "tcptrack_evict: " << std::strerror(errno);
            return INT_MIN;
        }
        EXPECT_EQ(bpf_map_lookup_elem(fd, &zero, &req), 0);
        *done = req.done;
        return static_cast<int>(opts.retval);
    }
};

// --- Generations ---------------------------------------------------------------

// A tuple's next connection after FINISHED, on two CPUs: first while the dead
// slot waits for the collector (a fresh slot), then once the collector gave it
// back (the same slot, the next generation). The old counts never leak into
// the new connection, and each close is final exactly once, by (slot, gen).
TEST_F(StoreTest, PortReuseAfterFinishedGetsNewSlotOrGenerationAndNoOldCounts) {
    CpuPin pin;
    if (!pin.allowed({0, 1})) GTEST_SKIP() << "needs CPUs 0 and 1";
    tcptrack::Collector col = collector();  // the ring's consumer in this test
    Conn a(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    ASSERT_TRUE(pin.to(0));
    establish(a);
    const auto at_a = live_slot(a.key);
    ASSERT_TRUE(at_a);
    ASSERT_TRUE(pin.to(1));
    for (int i = 0; i < 3; ++i) egress(a.c2s(kAck | kPsh, 1000));
    ASSERT_TRUE(pin.to(0));
    egress(a.c2s(kFin | kAck));
    ingress(a.s2c(kFin | kAck));
    ASSERT_TRUE(pin.to(1));
    egress(a.c2s(kAck));
    expect_empty("a finished");

    auto got = col.collect(tcptrack::monotonic_ns(), kNeverIdle);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_TRUE(got[0].finished);
    EXPECT_EQ(got[0].ref, (SlotRef{at_a->slot, at_a->s.gen}));
    EXPECT_EQ(totals_of(got[0]), a.expect);

    // b: the tuple comes back mid-stream before a's slot is recycled.
    Conn b = a;
    b.cseq = 7000000;
    b.sseq = 8000000;
    b.expect = {};
    egress(b.c2s(kAck | kPsh, 200));
    ASSERT_TRUE(pin.to(0));
    ingress(b.s2c(kAck | kPsh, 300));
    const auto at_b = expect_flow(b, TT_ESTABLISHED, "b");
    ASSERT_TRUE(at_b);
    EXPECT_NE(at_b->slot, at_a->slot) << "a dead slot taken before the collector gave it back";
    EXPECT_EQ(at_b->s.info.flags, TT_F_MIDSTREAM | TT_F_ASSURED);  // both sides spoke

    got = col.collect(tcptrack::monotonic_ns(), kNeverIdle);  // gives a's slot back
    ASSERT_EQ(got.size(), 1u);
    EXPECT_FALSE(got[0].finished);
    EXPECT_EQ(got[0].ref, (SlotRef{at_b->slot, at_b->s.gen}));
    EXPECT_EQ(totals_of(got[0]), b.expect);

    // b is reset; c opens on the same tuple and gets a's slot back, next generation.
    ASSERT_TRUE(pin.to(1));
    ingress(b.s2c(kRst | kAck));
    Conn c = a;
    c.cseq = 123456;
    c.sseq = 654321;
    c.expect = {};
    egress(c.c2s(kSyn));
    ASSERT_TRUE(pin.to(0));
    ingress(c.s2c(kSyn | kAck));
    ASSERT_TRUE(pin.to(1));
    egress(c.c2s(kAck));
    egress(c.c2s(kAck | kPsh, 50));
    const auto at_c = expect_flow(c, TT_ESTABLISHED, "c");
    ASSERT_TRUE(at_c);
    EXPECT_EQ(at_c->slot, at_a->slot);
    EXPECT_EQ(at_c->s.gen, at_a->s.gen + 2);
    EXPECT_EQ(at_c->s.info.flags, TT_F_SYN_SEEN | TT_F_HS_SEEN | TT_F_LOCAL_CLIENT | TT_F_ASSURED);

    got = col.collect(tcptrack::monotonic_ns(), kNeverIdle);
    ASSERT_EQ(got.size(), 2u);
    std::map<bool, tcptrack::FlowSample> by_finished;
    for (const auto& s : got) by_finished[s.finished] = s;
    ASSERT_EQ(by_finished.size(), 2u);
    EXPECT_EQ(by_finished[true].ref, (SlotRef{at_b->slot, at_b->s.gen}));
    EXPECT_EQ(by_finished[true].info.state, TT_RESET);
    EXPECT_EQ(totals_of(by_finished[true]), b.expect);
    const tcptrack::FlowSample& live = by_finished[false];
    EXPECT_EQ(live.ref, (SlotRef{at_c->slot, at_c->s.gen}));
    EXPECT_EQ(totals_of(live), c.expect);
    EXPECT_EQ(live.prev_bytes(0), 0u);
    EXPECT_EQ(live.prev_bytes(1), 0u);
    EXPECT_EQ(stat(TT_STAT_REUSED), 0u);
}

// A new connection on a reset tuple: a new slot whose settled bit starts clear,
// so its plain ACK still reaches the lifecycle.
TEST_F(StoreTest, ResetTupleNextConnectionRunsItsOwnLifecycle) {
    Conn a(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    establish(a);
    egress(a.c2s(kAck | kPsh, 100));  // settled: the fast path counted it
    const auto at_a = live_slot(a.key);
    ASSERT_TRUE(at_a);
    EXPECT_EQ(at_a->s.settled, 1);
    ingress(a.s2c(kRst | kAck));
    auto ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].slot, at_a->slot);
    EXPECT_EQ(ev[0].gen, at_a->s.gen);
    EXPECT_EQ(totals_of(ev[0]), a.expect);
    Conn b = a;
    b.cseq = 777777;
    b.sseq = 5555555;
    b.expect = {};
    egress(b.c2s(kSyn));
    ingress(b.s2c(kSyn | kAck));
    egress(b.c2s(kAck));
    egress(b.c2s(kAck | kPsh, 300));
    auto info = expect_single(b.key, b.expect, TT_ESTABLISHED, "second connection");
    EXPECT_GT(info.ack_ns, 0u);
    EXPECT_EQ(info.syn_seq, 777777u);
}

// --- Index ---------------------------------------------------------------------

// More flows than one bucket holds, all with the same first bucket: at least
// the extra ones go to their second bucket (whatever the placement policy),
// each is indexed exactly once, and every one is found again (fast path) and
// counted exactly, also after a way in the first bucket is freed.
TEST_F(StoreTest, FlowsOverflowingTheirFirstBucketAreAllFoundAndCountedExactly) {
    ASSERT_NO_FATAL_FAILURE(load(256));
    ASSERT_EQ(mask(), 31u);
    const Conn c0 = nth(0);
    const std::uint32_t A = tt_bucket1(index_hash(&c0.key), mask());
    auto conns = search(TT_INDEX_WAYS + 6, [&](std::uint32_t h) {
        return tt_bucket1(h, mask()) == A && tt_bucket2(h, mask()) != A;
    });
    ASSERT_EQ(conns.size(), TT_INDEX_WAYS + 6u);
    Conn more = conns.back();  // opened later, once a way of A is free
    conns.pop_back();
    for (std::size_t i = 0; i < conns.size(); ++i) open(conns[i], int(i));

    // Where each flow is indexed: its first bucket (A) or its second.
    auto placed = [&](const Conn& c, std::uint32_t slot) {
        const std::uint32_t h = index_hash(&c.key), want = tt_index_entry(h, slot);
        const tt_index_bucket b1 = bucket(A), b2 = bucket(tt_bucket2(h, mask()));
        const auto n1 = std::count(std::begin(b1.ent), std::end(b1.ent), want);
        const auto n2 = std::count(std::begin(b2.ent), std::end(b2.ent), want);
        EXPECT_EQ(n1 + n2, 1) << ::testing::PrintToString(c.key);
        return n1 == 1 ? 1 : 2;
    };
    std::vector<int> where(conns.size());
    int in_second = 0;
    for (std::size_t i = 0; i < conns.size(); ++i) {
        const auto at = expect_flow(conns[i], TT_ESTABLISHED, "opened " + std::to_string(i));
        ASSERT_TRUE(at);
        where[i] = placed(conns[i], at->slot);
        in_second += where[i] == 2;
    }
    EXPECT_GE(in_second, int(conns.size()) - TT_INDEX_WAYS) << "more entries than ways in A?";
    EXPECT_EQ(stat(TT_STAT_UNTRACKED_SEGS), 0u);

    // Settled traffic on every flow: the lock-free lookup finds each, in either bucket.
    for (int round = 0; round < 3; ++round)
        for (std::size_t i = 0; i < conns.size(); ++i) {
            egress(conns[i].c2s(kAck | kPsh, 10 + round));
            ingress(conns[i].s2c(kAck));
        }
    for (std::size_t i = 0; i < conns.size(); ++i)
        expect_flow(conns[i], TT_ESTABLISHED, "settled traffic " + std::to_string(i));
    EXPECT_EQ(live_slots().size(), conns.size());

    // Free a way in A: the next flow of A is indexed, and the ones in their
    // second bucket are still found.
    const std::size_t gone = std::find(where.begin(), where.end(), 1) - where.begin();
    ASSERT_LT(gone, conns.size()) << "nothing in the first bucket";
    ingress(conns[gone].s2c(kRst | kAck));
    EXPECT_FALSE(live_slot(conns[gone].key));
    open(more, 99);
    const auto at_more = expect_flow(more, TT_ESTABLISHED, "after a way was freed");
    ASSERT_TRUE(at_more);
    placed(more, at_more->slot);
    for (std::size_t i = 0; i < conns.size(); ++i) {
        if (i == gone) continue;
        egress(conns[i].c2s(kAck | kPsh, 7));
        expect_flow(conns[i], TT_ESTABLISHED, "after the free " + std::to_string(i));
    }
    EXPECT_EQ(stat(TT_STAT_UNTRACKED_SEGS), 0u);
}

// A key whose two buckets are both full is refused (it cannot be indexed) and
// counted; the slot it took goes back for the next flow, which starts clean.
TEST_F(StoreTest, KeyWithBothBucketsFullIsRefusedAndCounted) {
    ASSERT_NO_FATAL_FAILURE(load(256));
    // Two buckets A and B, and keys whose two buckets are exactly A and B:
    // whatever the placement policy, 32 of them fill both, and the 33rd (K)
    // has nowhere to go.
    std::uint32_t A = 0, B = 0;
    {
        const Conn c0 = nth(0);
        const std::uint32_t h = index_hash(&c0.key);
        A = tt_bucket1(h, mask());
        B = A ^ 1;
    }
    auto keys = search(2 * TT_INDEX_WAYS + 1, [&](std::uint32_t h) {
        const std::uint32_t b1 = tt_bucket1(h, mask()), b2 = tt_bucket2(h, mask());
        return (b1 == A && b2 == B) || (b1 == B && b2 == A);
    });
    ASSERT_EQ(keys.size(), 2 * TT_INDEX_WAYS + 1u);
    const Conn K = keys.back();
    std::vector<Conn> all(keys.begin(), keys.end() - 1);
    for (std::size_t i = 0; i < all.size(); ++i) open(all[i], int(i));
    EXPECT_EQ(stat(TT_STAT_UNTRACKED_SEGS), 0u) << "refused while A or B had room";
    for (std::uint32_t b : {A, B})
        for (std::uint32_t e : bucket(b).ent) EXPECT_NE(e, 0u) << "bucket " << b << " not full";
    EXPECT_EQ(live_slots().size(), 2u * TT_INDEX_WAYS);

    Conn k = K;
    egress(k.c2s(kSyn));
    EXPECT_FALSE(live_slot(k.key)) << "indexed nowhere, yet live";
    EXPECT_EQ(stat(TT_STAT_UNTRACKED), 1u);
    EXPECT_EQ(stat(TT_STAT_UNTRACKED_SEGS), 1u);
    egress(k.c2s(kAck | kPsh, 100));  // a data segment would start a mid-stream flow: refused too
    EXPECT_FALSE(live_slot(k.key));
    EXPECT_EQ(stat(TT_STAT_UNTRACKED), 1u);
    EXPECT_EQ(stat(TT_STAT_UNTRACKED_SEGS), 2u);
    const std::uint32_t used = next_fresh();
    EXPECT_EQ(used, 2u * TT_INDEX_WAYS + 1)
        << "the refused key's slot came from the bump allocator once";

    // The slot K filled while dead goes to the next flow, which starts clean.
    Conn L = search(
        1,
        [&](std::uint32_t h) {
            const std::uint32_t b1 = tt_bucket1(h, mask()), b2 = tt_bucket2(h, mask());
            return b1 != A && b1 != B && b2 != A && b2 != B;
        },
        200000)[0];
    open(L, 5);
    const auto at_l = expect_flow(L, TT_ESTABLISHED, "after the refusal");
    ASSERT_TRUE(at_l);
    EXPECT_EQ(at_l->slot, used - 1) << "the refused key's slot is reused";
    EXPECT_EQ(next_fresh(), used);
    EXPECT_EQ(at_l->s.info.flags, TT_F_SYN_SEEN | TT_F_HS_SEEN | TT_F_LOCAL_CLIENT | TT_F_ASSURED);
    EXPECT_EQ(stat(TT_STAT_UNTRACKED_BUCKETS), 1u) << "both buckets full of assured flows";
    for (std::size_t i = 0; i < all.size(); ++i)
        expect_flow(all[i], TT_ESTABLISHED, "full buckets " + std::to_string(i));
    EXPECT_EQ(stat(TT_STAT_UNTRACKED), 1u);
}

// Keys with the same two buckets and the same tag (the entry's top 8 bits):
// wherever they are placed, a lookup meets another key's entry with its tag
// and must compare keys, so their counts never mix, also once one of them
// died and its tuple came back.
TEST_F(StoreTest, TagCollisionsInOneBucketDoNotMixCounts) {
    ASSERT_NO_FATAL_FAILURE(load(256));
    std::map<std::uint64_t, std::vector<Conn>> groups;  // (tag, bucket1, bucket2) -> connections
    std::vector<Conn> same;
    for (int i = 0; i < 250 * 60000 && same.empty(); ++i) {
        Conn c = nth(i);
        const std::uint32_t h = index_hash(&c.key);
        auto& v = groups[std::uint64_t{h >> 24} << 32 | tt_bucket1(h, mask()) << 16 |
                         tt_bucket2(h, mask())];
        v.push_back(c);
        if (v.size() == 3) same = v;
    }
    ASSERT_EQ(same.size(), 3u);
    const std::uint32_t h0 = index_hash(&same[0].key);
    for (const Conn& c : same) {
        const std::uint32_t h = index_hash(&c.key);
        ASSERT_EQ(h >> 24, h0 >> 24);
        ASSERT_EQ(tt_bucket1(h, mask()), tt_bucket1(h0, mask()));
        ASSERT_EQ(tt_bucket2(h, mask()), tt_bucket2(h0, mask()));
    }
    // Interleaved: each segment goes to a flow whose tag neighbours are live.
    for (int i = 0; i < 3; ++i) egress(same[i].c2s(kSyn));
    for (int i = 0; i < 3; ++i) ingress(same[i].s2c(kSyn | kAck));
    for (int i = 0; i < 3; ++i) egress(same[i].c2s(kAck));
    for (int r = 0; r < 4; ++r)
        for (int i = 0; i < 3; ++i) {
            egress(same[i].c2s(kAck | kPsh, 100 * (i + 1) + r));
            ingress(same[i].s2c(kAck | kPsh, 1000 * (i + 1) + r));
        }
    for (int i = 0; i < 3; ++i)
        expect_flow(same[i], TT_ESTABLISHED, "tag twin " + std::to_string(i));

    // The middle one is reset; its tuple comes back mid-stream. The others are unaffected.
    ingress(same[1].s2c(kRst | kAck));
    auto ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].key, same[1].key);
    EXPECT_EQ(totals_of(ev[0]), same[1].expect);
    Conn back = same[1];
    back.cseq += 50000;
    back.expect = {};
    egress(back.c2s(kAck | kPsh, 42));
    for (int i : {0, 2}) {
        egress(same[i].c2s(kAck | kPsh, 9));
        expect_flow(same[i], TT_ESTABLISHED, "after the twin's reset " + std::to_string(i));
    }
    const auto at = expect_flow(back, TT_ESTABLISHED, "twin back mid-stream");
    ASSERT_TRUE(at);
    EXPECT_EQ(at->s.info.flags, TT_F_MIDSTREAM);
}

// --- Eviction ------------------------------------------------------------------

// tcptrack_evict ends a flow only under the generation it was asked for; the
// tuple's next segment does not count into the dead slot, and data starts a
// fresh mid-stream flow in another slot.
TEST_F(StoreTest, EvictEndsOnlyTheMatchingGenerationAndUnindexesIt) {
    Conn a(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    establish(a);
    const auto at = live_slot(a.key);
    ASSERT_TRUE(at);
    const std::uint32_t g = at->s.gen;
    ASSERT_TRUE(tt_gen_live(g));
    EXPECT_EQ(totals_of(at->s), a.expect) << "before eviction (slot + CPUs' cached counts)";
    std::uint64_t done = ~0ull;
    const int ended = evict({{at->slot, g + 2},                  // a later generation
                             {at->slot, g + 1},                  // dead (even)
                             {at->slot, g},                      // this one
                             {at->slot, g},                      // again: already dead
                             {skel_->geometry().slots + 5, 1}},  // no such slot
                            &done);
    EXPECT_EQ(ended, 1);
    EXPECT_EQ(done, 1ull << 2);
    expect_empty("evicted");
    EXPECT_EQ(slot(at->slot).gen, g + 1);
    EXPECT_EQ(index_entries(a.key, at->slot), 0);
    EXPECT_TRUE(drain_events().empty()) << "eviction is user space's decision: no close event";

    // A lone ACK of the evicted tuple changes nothing, not even the dead slot
    // (counts CPUs still cached for it are dropped: user space showed them).
    const Totals dead = totals_of(slot(at->slot));
    Conn b = a;
    b.expect = {};
    ingress(b.s2c(kAck));
    expect_empty("lone ACK after eviction");
    EXPECT_EQ(totals_of(slot(at->slot)), dead);
    // Data starts a fresh mid-stream flow elsewhere (the dead slot is not recycled yet).
    b.expect = {};
    egress(b.c2s(kAck | kPsh, 500));
    ingress(b.s2c(kAck | kPsh, 600));
    auto info = expect_single(b.key, b.expect, TT_ESTABLISHED, "after eviction");
    EXPECT_EQ(info.flags, TT_F_MIDSTREAM | TT_F_ASSURED);
    const auto at_b = live_slot(b.key);
    ASSERT_TRUE(at_b);
    EXPECT_NE(at_b->slot, at->slot);
    EXPECT_EQ(totals_of(slot(at->slot)), dead);
    // The old generation's reference cannot end the new flow.
    EXPECT_EQ(evict({{at->slot, g}}, &done), 0);
    EXPECT_EQ(done, 0u);
    expect_single(b.key, b.expect, TT_ESTABLISHED, "stale eviction refused");
}

// Collector::forget goes through the same program: it ends exactly the flows
// still under their generation, and gives their slots back a collect() later,
// where a new flow starts clean under the next generation.
TEST_F(StoreTest, CollectorForgetEndsFlowsAndRecyclesTheirSlots) {
    tcptrack::Collector col = collector();
    Conn a(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    establish(a);
    const auto at = live_slot(a.key);
    ASSERT_TRUE(at);
    const SlotRef ref{at->slot, at->s.gen};
    auto got = col.collect(tcptrack::monotonic_ns(), kNeverIdle);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].ref, ref);
    EXPECT_EQ(col.forget({ref}), 1u);
    expect_empty("forgotten");
    EXPECT_EQ(index_entries(a.key, at->slot), 0);
    EXPECT_EQ(col.forget({ref}), 0u) << "ended twice";
    EXPECT_EQ(col.forget({SlotRef{at->slot, at->s.gen + 2}}), 0u);

    got = col.collect(tcptrack::monotonic_ns(), kNeverIdle);  // recycles the slot
    EXPECT_TRUE(got.empty()) << "a forgotten flow is not reported again";
    EXPECT_EQ(col.live(), 0u);
    Conn b(false, {"10.0.0.3", 50000}, {"10.0.0.4", 443});
    egress(b.c2s(kSyn));
    const auto at_b = live_slot(b.key);
    ASSERT_TRUE(at_b);
    EXPECT_EQ(at_b->slot, at->slot);
    EXPECT_EQ(at_b->s.gen, at->s.gen + 2);
    EXPECT_EQ(next_fresh(), at->slot + 1);
    expect_single(b.key, b.expect, TT_SYN_SENT, "recycled slot");
    got = col.collect(tcptrack::monotonic_ns(), kNeverIdle);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].key, b.key);
    EXPECT_EQ(got[0].ref, (SlotRef{at->slot, at->s.gen + 2}));
    EXPECT_EQ(totals_of(got[0]), b.expect);
    EXPECT_FALSE(got[0].finished);
}

// --- Per-CPU cache ---------------------------------------------------------------

// A close folds the cache entries of the CPUs its slot names (bit cpu % 32),
// here on a cache sized for 64 CPUs (LoadConfig::cache_cpus). This host
// counts on CPUs 0 and 1; entries for CPUs 33 and 34 are planted as a 64-CPU
// host's CPUs would have filled them. CPU 33 shares CPU 1's bit, so its counts
// reach the close event; CPU 34's bit was never set, so its entry is not read.
TEST_F(StoreTest, CloseFoldsTheCacheEntriesOfTheCpusItsSlotNames) {
    CpuPin pin;
    if (!pin.allowed({0, 1})) GTEST_SKIP() << "needs CPUs 0 and 1";
    ASSERT_NO_FATAL_FAILURE(load(65536, {}, true, 0, true, 64));
    if (skel_->nr_cpus() > 33)
        GTEST_SKIP() << "plants entries for CPUs 33 and 34, which this host has";
    ASSERT_EQ(skel_->cache_cpus(), 64u);
    Conn c(false, {"10.0.9.1", 40000}, {"10.0.9.2", 80});
    ASSERT_TRUE(pin.to(0));
    establish(c);  // settled data on CPU 0: its entry
    ASSERT_TRUE(pin.to(1));
    egress(c.c2s(kAck | kPsh, 5));  // and CPU 1's
    const auto at = live_slot(c.key);
    ASSERT_TRUE(at);
    EXPECT_EQ(slot(at->slot).cpus, 0x3u) << "CPUs 0 and 1 took entries";

    const tt_hash_key hk = hash_key();
    for (std::uint32_t cpu : {33u, 34u}) {
        tt_cache_entry& e = cache_entry(cpu, c.key, 0);
        e = tt_cache_entry{};
        e.slot = at->slot;
        e.gen = at->s.gen;
        e.hash = tt_cache_hash(&c.key, &hk);
        e.bytes[0] = 1000;
        e.packets[0] = 10;
    }
    ASSERT_TRUE(pin.to(0));
    egress(c.c2s(kFin | kAck));
    ingress(c.s2c(kFin | kAck));
    egress(c.c2s(kAck));
    Totals want = c.expect;
    want.bytes[0] += 1000;  // CPU 33's
    want.packets[0] += 10;
    const auto ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(totals_of(ev[0]), want);
    EXPECT_EQ(cache_entry(33, c.key, 0).gen, 0u) << "CPU 33's entry folded and emptied";
    EXPECT_EQ(cache_entry(34, c.key, 0).gen, at->s.gen) << "CPU 34's entry not read";
    EXPECT_EQ(cache_entry(34, c.key, 0).bytes[0], 1000u);
}

}  // namespace
}  // namespace tt_test
