// SPDX-License-Identifier: MIT
// The production Collector reading the slot store through mmap: exact
// counters, samples that stay as they were while nothing moved, finished
// connections reported exactly once, idle flows and forget(), connection
// health read from its map.
#include <bpf/bpf.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tcptrack/filter_vm.h"  // before the skeleton: its .bss holds struct tt_filter
#include "tcptrack/store.h"      // before the skeleton: its .rodata holds struct tt_hash_key
#include "tcptrack.skel.h"
#include "bpf_fixture.hpp"
#include "report/flow_model.hpp"

namespace tt_test {
namespace {

using CollectorTest = BpfTest;
using tcptrack::FlowSample;
using tcptrack::SlotRef;

std::string key_bytes(const tt_flow_key& k) {
    return std::string(reinterpret_cast<const char*>(&k), sizeof(k));
}

std::string describe(const FlowSample& s) {
    return ::testing::PrintToString(s.key) + " " + ::testing::PrintToString(totals_of(s)) +
           " state " + std::to_string(s.info.state) + " slot " + std::to_string(s.ref.slot) +
           " gen " + std::to_string(s.ref.gen) + " finished " + std::to_string(s.finished) +
           " last_active " + std::to_string(s.last_active_ns) + " prev " +
           std::to_string(s.prev_bytes(0)) + "/" + std::to_string(s.prev_bytes(1));
}

// A sample's row as the report builds it.
tcptrack::FlowRow row_of(const FlowSample& s, std::uint64_t now_ns) {
    tcptrack::FlowRow r;
    tcptrack::fill_row(r, s, "lo", now_ns);
    return r;
}

// Every field of a sample.
bool same_sample(const FlowSample& a, const FlowSample& b) {
    return a.key == b.key && std::memcmp(&a.info, &b.info, sizeof(a.info)) == 0 &&
           totals_of(a) == totals_of(b) && a.prev_bytes(0) == b.prev_bytes(0) &&
           a.prev_bytes(1) == b.prev_bytes(1) && a.last_active_ns == b.last_active_ns &&
           a.ref == b.ref && a.has_info == b.has_info && a.finished == b.finished;
}

TEST_F(CollectorTest, ExactCountersThenUnchangedSampleThenFinishedExactlyOnce) {
    tcptrack::Collector col = collector();  // the ring's consumer in this test
    Conn c(false, {"10.1.0.1", 40000}, {"10.1.0.2", 80});
    establish(c);
    const auto at = live_slot(c.key);
    ASSERT_TRUE(at);

    const std::uint64_t t1 = tcptrack::monotonic_ns();
    auto got = col.collect(t1, kNeverIdle);
    ASSERT_EQ(got.size(), 1u);
    const FlowSample first = got[0];
    EXPECT_EQ(first.key, c.key);
    EXPECT_TRUE(first.has_info);
    EXPECT_FALSE(first.finished);
    EXPECT_EQ(first.info.state, TT_ESTABLISHED);
    EXPECT_EQ(first.info, tcptrack::FlowInfo(at->s.info));
    EXPECT_EQ(totals_of(first), c.expect);
    EXPECT_EQ(first.ref, (SlotRef{at->slot, at->s.gen}));
    EXPECT_EQ(first.last_active_ns, t1);
    EXPECT_EQ(first.prev_bytes(0), 0u);
    EXPECT_EQ(first.prev_bytes(1), 0u);
    EXPECT_EQ(col.changed(), std::vector<std::uint32_t>{0});
    EXPECT_EQ(col.live(), 1u);
    EXPECT_TRUE(col.idle().empty());

    // Nothing new: nothing changed, the sample is exactly the first one.
    got = col.collect(t1 + 1000, kNeverIdle);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_TRUE(col.changed().empty());
    EXPECT_TRUE(same_sample(got[0], first)) << describe(got[0]) << "\n  was " << describe(first);

    // New data: moved, with the last report's bytes as prev_bytes.
    egress(c.c2s(kAck | kPsh, 1000));
    ingress(c.s2c(kAck));
    const std::uint64_t t3 = t1 + 2000;
    got = col.collect(t3, kNeverIdle);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(col.changed(), std::vector<std::uint32_t>{0});
    EXPECT_EQ(totals_of(got[0]), c.expect);
    EXPECT_EQ(got[0].last_active_ns, t3);
    EXPECT_EQ(got[0].prev_bytes(0), first.bytes[0]);
    EXPECT_EQ(got[0].prev_bytes(1), first.bytes[1]);
    EXPECT_EQ(got[0].ref, first.ref);
    const FlowSample moved = got[0];

    egress(c.c2s(kFin | kAck));
    ingress(c.s2c(kFin | kAck));
    egress(c.c2s(kAck));
    col.poll(0);
    const std::uint64_t t4 = t1 + 3000;
    got = col.collect(t4, kNeverIdle);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_TRUE(got[0].finished);
    EXPECT_EQ(got[0].info.state, TT_CLOSED);
    EXPECT_EQ(totals_of(got[0]), c.expect);
    EXPECT_EQ(got[0].ref, first.ref);
    EXPECT_EQ(got[0].last_active_ns, t4);
    EXPECT_EQ(got[0].prev_bytes(0), moved.bytes[0])
        << "the final interval starts at the last report";
    EXPECT_EQ(got[0].prev_bytes(1), moved.bytes[1]);
    EXPECT_EQ(col.changed(), std::vector<std::uint32_t>{0});
    EXPECT_EQ(col.live(), 0u);

    EXPECT_TRUE(col.collect(t1 + 4000, kNeverIdle).empty());
    EXPECT_TRUE(col.changed().empty());
}

// More flows than one mmap window of the collector (16384 slots), in every
// lifecycle state, IPv4 and IPv6, plus closed ones in the ring: each is
// reported exactly, and the live rows are the store's live slots, field by
// field. A second read changes nothing and reports no close again.
TEST_F(CollectorTest, ManyFlowsInEveryStateAcrossWindowsReadExactly) {
    struct Want {
        Conn c;
        std::uint8_t state;
        bool finished = false;
    };
    std::vector<Want> want;
    constexpr int kBulk = 16384 + 300;
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
        Conn bulk = conn();  // settled: consecutive segments on the fast path
        handshake(bulk);
        for (int i = 0; i < 5; ++i) egress(bulk.c2s(kAck | kPsh, 1000));
        want.push_back({bulk, TT_ESTABLISHED});
        Conn closed = conn();  // both FINs, the last ACK not seen yet
        handshake(closed);
        egress(closed.c2s(kFin | kAck));
        ingress(closed.s2c(kFin | kAck));
        want.push_back({closed, TT_CLOSED});
    }
    ASSERT_GT(next_fresh(), 16384u) << "the store must span more than one window";

    // One time for every read, so the reap decisions are known.
    const std::uint64_t now = tcptrack::monotonic_ns();
    std::map<std::string, const Want*> by_key;
    for (Want& w : want) {
        if (w.state == TT_CLOSED && !w.finished) {
            // Both FINs, no last ACK: live within the collector's 1 s grace, then reaped.
            const auto at = live_slot(w.c.key);
            ASSERT_TRUE(at);
            w.finished = now > at->s.info.close_ns + 1000000000ull;
        }
        ASSERT_TRUE(by_key.emplace(key_bytes(w.c.key), &w).second)
            << "two connections on " << ::testing::PrintToString(w.c.key);
    }
    // The store as the fixture reads it, before the collector reaps anything.
    std::map<std::uint32_t, LiveSlot> store;
    for (const LiveSlot& l : live_slots()) store.emplace(l.slot, l);

    tcptrack::Collector col = collector();
    col.poll(0);
    const std::vector<FlowSample> got = col.collect(now, kNeverIdle);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(col.changed().size(), want.size()) << "every sample is new";
    std::map<std::uint32_t, FlowSample> live;
    std::map<std::string, int> seen;
    int bad = 0;
    for (const FlowSample& s : got) {
        const auto it = by_key.find(key_bytes(s.key));
        ASSERT_NE(it, by_key.end()) << "unknown flow " << ::testing::PrintToString(s.key);
        ASSERT_EQ(++seen[it->first], 1) << "twice: " << ::testing::PrintToString(s.key);
        const Want& w = *it->second;
        bool ok = totals_of(s) == w.c.expect && s.has_info && s.info.state == w.state &&
                  s.finished == w.finished && s.last_active_ns == now;
        if (!s.finished) {
            // A live row is its slot, field by field.
            live.emplace(s.ref.slot, s);
            const auto st = store.find(s.ref.slot);
            ok = ok && st != store.end() && st->second.s.gen == s.ref.gen &&
                 st->second.s.key == s.key && tcptrack::FlowInfo(st->second.s.info) == s.info &&
                 totals_of(st->second.s) == totals_of(s);
        }
        if (ok) continue;
        if (++bad > 5) continue;
        ADD_FAILURE() << describe(s) << "\n  expected " << ::testing::PrintToString(w.c.expect)
                      << " state " << int(w.state) << " finished " << w.finished;
    }
    EXPECT_EQ(bad, 0) << "flows reported wrong";
    const auto open =
        std::count_if(want.begin(), want.end(), [](const Want& w) { return !w.finished; });
    EXPECT_EQ(live.size(), std::size_t(open));
    EXPECT_EQ(col.live(), std::size_t(open));
    EXPECT_EQ(live_slots().size(), std::size_t(open)) << "reaped ones left the store";

    // A second read: closed connections were reported once, live ones are unchanged.
    const std::vector<FlowSample> again = col.collect(now + 1, kNeverIdle);
    EXPECT_TRUE(col.changed().empty());
    ASSERT_EQ(again.size(), live.size());
    bad = 0;
    for (const FlowSample& s : again) {
        const auto it = live.find(s.ref.slot);
        if (it != live.end() && same_sample(s, it->second)) continue;
        if (++bad <= 5) ADD_FAILURE() << "second read: " << describe(s);
    }
    EXPECT_EQ(bad, 0);
}

// Health: read from the mmapped map beside the slot when the flow moves, once
// more after it stops, widened across a real counter wrap in the datapath,
// and carried on by the close event's final figures.
TEST_F(CollectorTest, HealthFromTheMapWidenedAndContinuedByTheCloseEvent) {
    tcptrack::Collector col = collector();
    Conn c(false, {"10.8.0.1", 40000}, {"10.8.0.2", 80});
    establish(c);
    const auto at = live_slot(c.key);
    ASSERT_TRUE(at);
    const int hfd = bpf_map__fd((*skel_)->maps.health);
    const std::uint32_t slot = at->slot;
    const auto sample = [&](std::uint64_t now) {
        const auto& got = col.collect(now, kNeverIdle);
        EXPECT_EQ(got.size(), 1u);
        return got.empty() ? FlowSample{} : got[0];
    };
    const std::uint64_t t0 = tcptrack::monotonic_ns();
    FlowSample s = sample(t0);
    tcptrack::FlowRow row = row_of(s, t0);
    EXPECT_EQ(row.fwd_health.retrans, 0u);
    EXPECT_TRUE(row.fwd_health.egress) << "the client's segments went out (egress)";
    EXPECT_FALSE(row.rev_health.egress);
    EXPECT_EQ(row.fwd_health.rtt_samples, 1u) << "its data timed by the server's ACK";
    EXPECT_EQ(row.srtt_ns, row.fwd_health.srtt_ns);

    // The client's retransmission counter about to wrap (u32), then one resent.
    tt_health h{};
    ASSERT_EQ(bpf_map_lookup_elem(hfd, &slot, &h), 0);
    h.side[c.cdir].retrans = 0xffffffffu;
    h.side[c.cdir].retrans_bytes = 0xfffffff0u;
    ASSERT_EQ(bpf_map_update_elem(hfd, &slot, &h, BPF_ANY), 0);
    s = sample(t0 + 1000);  // nothing moved, but it did at the last read: read again
    EXPECT_EQ(tcptrack::wide_side(s, c.cdir, t0).retrans, 0xffffffffu);
    const Packet p = c.c2s(kAck | kPsh, 700);
    egress(p);
    egress(p);
    s = sample(t0 + 2000);
    row = row_of(s, t0 + 2000);
    EXPECT_EQ(row.fwd_health.retrans, 1ull << 32) << "0xffffffff + 1, wrapped in the kernel";
    EXPECT_EQ(row.fwd_health.retrans_bytes, 0xfffffff0ull + 700);
    EXPECT_EQ(row.rev_health.retrans, 0u);
    EXPECT_EQ(tcptrack::total_retrans(row), 1ull << 32);

    // The server's window goes to zero: a transition, and time that goes on.
    c.window = 0;
    ingress(c.s2c(kAck));
    const std::uint64_t t3 = tcptrack::monotonic_ns();
    s = sample(t3);
    row = row_of(s, t3 + 300'000'000);
    EXPECT_EQ(row.rev_health.zero_windows, 1u);
    EXPECT_TRUE(row.rev_health.zero_window_now);
    EXPECT_GE(row.rev_health.zero_window_ns, 299'000'000u);
    EXPECT_LT(row.rev_health.zero_window_ns, 400'000'000u);

    // Two reads after it stopped moving, the map is no longer read: a change
    // there (no segment makes one without bytes) is not picked up.
    sample(t3 + 1000);
    ASSERT_EQ(bpf_map_lookup_elem(hfd, &slot, &h), 0);
    h.side[c.cdir ^ 1].dup_acks = 77;
    ASSERT_EQ(bpf_map_update_elem(hfd, &slot, &h, BPF_ANY), 0);
    s = sample(t3 + 2000);
    EXPECT_EQ(tcptrack::wide_side(s, c.cdir ^ 1, t3).dup_acks, 0u);

    // The close event's final health goes on from the live sample's wraps.
    c.window = 1000;
    egress(c.c2s(kFin | kAck));
    ingress(c.s2c(kFin | kAck));
    egress(c.c2s(kAck));
    col.poll(0);
    s = sample(t3 + 3000);
    ASSERT_TRUE(s.finished);
    row = row_of(s, t3 + 3000);
    EXPECT_EQ(row.fwd_health.retrans, 1ull << 32);
    EXPECT_EQ(row.rev_health.dup_acks, 77u) << "the final figures are the map's";
    EXPECT_EQ(row.rev_health.zero_windows, 1u);
    EXPECT_FALSE(row.rev_health.zero_window_now);
}

// --no-health: the map has one entry; the collector maps none and every
// sample's health is empty.
TEST_F(CollectorTest, WithoutHealthSamplesHaveNone) {
    ASSERT_NO_FATAL_FAILURE(load(1024, {}, false));
    tcptrack::Collector col = collector();
    Conn c(false, {"10.8.1.1", 40000}, {"10.8.1.2", 80});
    establish(c);
    const Packet p = c.c2s(kAck | kPsh, 100);
    egress(p);
    egress(p);
    const auto& got = col.collect(tcptrack::monotonic_ns(), kNeverIdle);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].health.figures(), tcptrack::HealthFigures{});
    const tcptrack::FlowRow row = row_of(got[0], 0);
    EXPECT_EQ(tcptrack::total_retrans(row), 0u);
    EXPECT_FALSE(row.srtt_ns.has_value());
}

// Idle: a live flow whose counters did not move for the limit. forget() ends
// exactly those through the datapath, and they leave the next report.
TEST_F(CollectorTest, IdleFlowsAreTheOnesThatDidNotMoveAndForgetEndsThem) {
    tcptrack::Collector col = collector();
    Conn x(false, {"10.3.0.1", 1001}, {"10.3.0.2", 80});
    Conn y(false, {"10.3.0.1", 1002}, {"10.3.0.2", 80});
    Conn z(true, {"2001:db8:3::1", 1003}, {"2001:db8:3::2", 443});
    Conn w(false, {"10.3.0.1", 1004}, {"10.3.0.2", 80});
    egress(x.c2s(kSyn));
    for (Conn* c : {&y, &z, &w}) {
        egress(c->c2s(kSyn));
        ingress(c->s2c(kSyn | kAck));
        egress(c->c2s(kAck));
        egress(c->c2s(kAck | kPsh, 100));
    }
    ingress(w.s2c(kRst | kAck));  // finished: never idle
    std::map<std::string, SlotRef> ref;
    for (const Conn* c : {&x, &y, &z}) {
        const auto at = live_slot(c->key);
        ASSERT_TRUE(at);
        ref[key_bytes(c->key)] = SlotRef{at->slot, at->s.gen};
    }
    auto refs = [&](std::initializer_list<const Conn*> cs) {
        std::set<std::pair<std::uint32_t, std::uint32_t>> out;
        for (const Conn* c : cs)
            out.insert({ref[key_bytes(c->key)].slot, ref[key_bytes(c->key)].gen});
        return out;
    };
    auto idle = [&] {
        std::set<std::pair<std::uint32_t, std::uint32_t>> out;
        for (const SlotRef& r : col.idle()) out.insert({r.slot, r.gen});
        EXPECT_EQ(out.size(), col.idle().size()) << "a flow idle twice";
        return out;
    };

    const std::uint64_t t1 = tcptrack::monotonic_ns();
    constexpr std::uint64_t kLimit = 5000000000ull;
    EXPECT_EQ(col.collect(t1, kLimit).size(), 4u);
    EXPECT_TRUE(col.idle().empty());
    EXPECT_EQ(col.live(), 3u);

    // y moves; x and z sit for exactly the limit.
    egress(y.c2s(kAck | kPsh, 10));
    const std::uint64_t t2 = t1 + kLimit;
    auto got = col.collect(t2, kLimit);
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(idle(), refs({&x, &z}));
    ASSERT_EQ(col.changed().size(), 1u);
    EXPECT_EQ(got[col.changed()[0]].key, y.key);
    EXPECT_EQ(totals_of(got[col.changed()[0]]), y.expect);

    // Limit 0: every live flow is idle.
    got = col.collect(t2 + 1, 0);
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(idle(), refs({&x, &y, &z}));
    EXPECT_TRUE(col.changed().empty());
    EXPECT_EQ(col.forget(col.idle()), 3u);
    expect_empty("forgotten");
    for (const Conn* c : {&x, &y, &z})
        EXPECT_EQ(index_entries(c->key, ref[key_bytes(c->key)].slot), 0);
    EXPECT_EQ(col.forget(col.idle()), 0u) << "ended twice";
    EXPECT_TRUE(drain_events().empty()) << "forgetting emits no close event";

    got = col.collect(t2 + 2, 0);
    EXPECT_TRUE(got.empty()) << describe(got.empty() ? FlowSample{} : got[0]);
    EXPECT_TRUE(col.idle().empty());
    EXPECT_TRUE(col.changed().empty());
    EXPECT_EQ(col.live(), 0u);
}

// A flow that ends (gen live -> dead) or whose slot is reused while the
// collector copies it for the first time is left for the next report with the
// collector's positions intact (before the fix, scan() removed the fresh
// sample through its default ref: pos_[UINT32_MAX], SIGSEGV, 1 churn run in 17).
TEST_F(CollectorTest, FlowEndingDuringItsFirstCopyIsTakenNextTime) {
    tcptrack::Collector col = collector();  // the ring's consumer
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> made{0};
    std::thread writer([&] {
        for (std::uint32_t i = 0; !stop.load(); ++i) {
            Conn c(false,
                   {"10.9." + std::to_string((i >> 7) & 255) + "." + std::to_string(1 + (i & 127)),
                    std::uint16_t(1024 + i % 60000)},
                   {"10.9.255.1", 80});
            egress(c.c2s(kSyn));
            ingress(c.s2c(kSyn | kAck));
            egress(c.c2s(kAck));
            egress(c.c2s(kFin | kAck));
            ingress(c.s2c(kFin | kAck));
            egress(c.c2s(kAck));
            ++made;
        }
    });
    // At least 3 s, and until enough connections and reports have overlapped: an
    // emulated kernel-matrix guest makes them slower (at most 60 s).
    constexpr std::uint64_t kMade = 1000, kReports = 100;
    const auto start = std::chrono::steady_clock::now();
    std::uint64_t reports = 0;
    const auto more = [&] {
        const auto t = std::chrono::steady_clock::now() - start;
        if (t >= std::chrono::seconds(60)) return false;
        return t < std::chrono::seconds(3) || made.load() <= kMade || reports <= kReports;
    };
    while (more() && !HasFatalFailure()) {
        const auto& got = col.collect(tcptrack::monotonic_ns(), kNeverIdle);
        ++reports;
        ASSERT_LE(col.live(), got.size());
        for (const std::uint32_t i : col.changed()) ASSERT_LT(i, got.size());
        std::set<std::pair<std::uint32_t, std::uint32_t>> refs;  // no live flow twice
        for (std::size_t i = 0; i < col.live(); ++i) {
            ASSERT_NE(got[i].ref.slot, UINT32_MAX);
            ASSERT_TRUE(refs.insert({got[i].ref.slot, got[i].ref.gen}).second) << i;
        }
    }
    stop = true;
    writer.join();
    EXPECT_GT(made.load(), kMade);
    EXPECT_GT(reports, kReports);
}

}  // namespace
}  // namespace tt_test
