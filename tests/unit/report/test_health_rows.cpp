// SPDX-License-Identifier: MIT
// Connection health on rows (src/report/flow_model.cpp, report_builder.cpp):
// orientation, units, zero-window time, the live RTT's choice of side,
// --sort retrans and rtt, and --summary's totals.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "handshake_times.hpp"
#include "keys.hpp"
#include "make_row.hpp"
#include "report/flow_model.hpp"
#include "report/report_builder.hpp"

using namespace tcptrack;

namespace {

constexpr std::uint64_t kMs = 1'000'000, kSec = 1000 * kMs;

// Changes one side's figures of a sample (which keeps them compactly).
template <typename F>
void with_side(FlowSample& s, int side, F f) {
    s.health.edit([&](HealthFigures& h, HealthWraps&) { f(h.side[side & 1]); });
}
void set_wraps(FlowSample& s, const HealthWraps& w) {
    s.health.edit([&](HealthFigures&, HealthWraps& x) { x = w; });
}

// A live, handshake-seen flow; side `client` opened it from client_port (its
// row's sport) to port 80.
FlowSample flow(std::uint16_t client_port, std::uint8_t client) {
    FlowSample s;
    s.key = client == TT_DIR_AB
                ? tt_test::flow_key(AF_INET, "10.0.0.1", client_port, "10.0.0.2", 80, 2)
                : tt_test::flow_key(AF_INET, "10.0.0.1", 80, "10.0.0.2", client_port, 2);
    s.has_info = true;
    s.info.client = client;
    s.info.flags = TT_F_SYN_SEEN;
    s.info.state = TT_ESTABLISHED;
    s.info.first_ns = kSec;
    s.bytes[0] = s.bytes[1] = 1000;
    for (int d = 0; d < 2; ++d)
        with_side(s, d, [](SideFigures& h) { h.flags = TT_H_NXT | TT_H_ACK; });
    return s;
}

// RTT figures for one side (us), as the datapath keeps them.
void timed(FlowSample& s, int side, std::uint32_t srtt_us, bool egress, std::uint16_t n = 10) {
    with_side(s, side, [&](SideFigures& h) {
        h.srtt8_us = srtt_us * 8;
        h.rtt_min_us = srtt_us / 2;
        h.rtt_max_us = srtt_us * 2;
        h.rtt_last_us = srtt_us + 1;
        h.rtt_samples = n;
        if (egress) h.flags |= TT_H_EGRESS;
    });
}

struct Built {
    std::vector<FlowRow> rows;
    ReportStats stats;
};

Built build(const std::vector<FlowSample>& v, SortKey sort, bool totals = false,
            bool closed_only = false) {
    static const std::map<std::uint32_t, std::string> names{{2, "eth0"}};
    ReportBuilder b(names);
    b.set_health_totals(totals);
    b.build(v, 20 * kSec, 2 * kSec, closed_only, nullptr, sort);
    Built out;
    out.rows.resize(b.size());
    for (std::size_t i = 0; i < b.size(); ++i) b.row(i, out.rows[i]);
    out.stats = b.stats();
    return out;
}

std::vector<std::uint16_t> sports(const Built& b) {
    std::vector<std::uint16_t> out;
    for (const auto& r : b.rows) out.push_back(r.sport);
    return out;
}

}  // namespace

// fwd is what the client sent, whichever normalised side it is.
TEST(HealthRows, OrientedLikeTheByteCounters) {
    for (std::uint8_t client : {std::uint8_t{TT_DIR_AB}, std::uint8_t{TT_DIR_BA}}) {
        FlowSample s = flow(40000, client);
        s.bytes[client] = 5000;  // the client's bytes
        with_side(s, client, [&](SideFigures& h) { h.retrans = 7; });
        with_side(s, client, [&](SideFigures& h) { h.retrans_bytes = 7000; });
        with_side(s, client ^ 1, [&](SideFigures& h) { h.dup_acks = 21; });
        with_side(s, client ^ 1, [&](SideFigures& h) { h.gaps = 2; });
        const FlowRow r = make_row(s, "eth0", 2 * kSec);
        EXPECT_EQ(r.fwd_bytes, 5000u) << "client on side " << int(client);
        EXPECT_EQ(r.fwd_health.retrans, 7u);
        EXPECT_EQ(r.fwd_health.retrans_bytes, 7000u);
        EXPECT_EQ(r.rev_health.dup_acks, 21u);
        EXPECT_EQ(r.rev_health.lost_segments, 2u);
        EXPECT_EQ(r.rev_health.retrans, 0u);
        EXPECT_EQ(total_retrans(r), 7u);
        EXPECT_EQ(total_retrans(s), 7u);
    }
}

TEST(HealthRows, UnitsAndFlags) {
    FlowSample s = flow(40000, TT_DIR_BA);  // the client is side B
    with_side(s, TT_DIR_BA, [](SideFigures& c) {
        c.srtt8_us = 1001;  // 125.125 us
        c.rtt_min_us = 90;
        c.rtt_max_us = 400;
        c.rtt_last_us = 130;
        c.rtt_samples = 3;
        c.fast_retrans = 4;
        c.zero_win = 2;
        c.flags |= TT_H_EGRESS;
    });
    const FlowRow r = make_row(s, "eth0", 2 * kSec);
    EXPECT_EQ(r.fwd_health.srtt_ns, 125125u);
    EXPECT_EQ(r.fwd_health.rtt_min_ns, 90000u);
    EXPECT_EQ(r.fwd_health.rtt_max_ns, 400000u);
    EXPECT_EQ(r.fwd_health.rtt_last_ns, 130000u);
    EXPECT_EQ(r.fwd_health.rtt_samples, 3u);
    EXPECT_EQ(r.fwd_health.fast_retrans, 4u);
    EXPECT_EQ(r.fwd_health.zero_windows, 2u);
    EXPECT_TRUE(r.fwd_health.egress);
    EXPECT_FALSE(r.rev_health.egress);
    EXPECT_EQ(r.rev_health.rtt_samples, 0u);
    EXPECT_EQ(r.srtt_ns, 125125u);
    // Without samples the RTT figures stay 0 whatever the entry holds.
    with_side(s, TT_DIR_BA, [&](SideFigures& h) { h.rtt_samples = 0; });
    const FlowRow none = make_row(s, "eth0", 2 * kSec);
    EXPECT_EQ(none.fwd_health.srtt_ns, 0u);
    EXPECT_FALSE(none.srtt_ns.has_value());
}

// A server whose window is at zero now: the time so far counts up to now.
TEST(HealthRows, ZeroWindowWithAnOngoingStretch) {
    FlowSample s = flow(40000, TT_DIR_AB);
    const std::uint32_t went_ms = 1500;  // at zero since 1.5 s, after 200 ms earlier
    with_side(s, TT_DIR_BA, [&](SideFigures& srv) {
        srv.zero_win = 3;
        srv.zero_win_ms = 200u - went_ms;
        srv.flags |= TT_H_ZW;
    });
    FlowRow r = make_row(s, "eth0", 4 * kSec);
    EXPECT_TRUE(r.rev_health.zero_window_now);
    EXPECT_FALSE(r.fwd_health.zero_window_now);
    EXPECT_EQ(r.rev_health.zero_windows, 3u);
    EXPECT_EQ(r.rev_health.zero_window_ns, (200 + 2500) * kMs);
    r = make_row(s, "eth0", 5 * kSec);  // a second later, no new read: it grew
    EXPECT_EQ(r.rev_health.zero_window_ns, (200 + 3500) * kMs);
    // Closed at 3 s while still at zero: counted up to the close.
    s.finished = true;
    s.info.state = TT_CLOSED;
    s.info.close_ns = 3 * kSec;
    r = make_row(s, "eth0", 5 * kSec);
    EXPECT_EQ(r.rev_health.zero_window_ns, (200 + 1500) * kMs);
}

// live_rtt: the one side leaving here with samples, else the largest.
TEST(HealthRows, LiveRttPicksTheEgressSideElseTheLargest) {
    const auto both = [](const FlowSample& s) {
        const FlowRow r = make_row(s, "eth0", 2 * kSec);
        EXPECT_EQ(live_rtt(r), live_rtt(s));  // the row's and the sample's agree
        EXPECT_EQ(r.srtt_ns, live_rtt(s));
        return live_rtt(s);
    };
    FlowSample s = flow(40000, TT_DIR_AB);
    EXPECT_FALSE(both(s).has_value()) << "no samples";

    // At a host: its own data leaves here (egress); its RTT is the round trip,
    // even when the peer's side (timed from its far end) is larger.
    timed(s, TT_DIR_AB, 300, true);
    timed(s, TT_DIR_BA, 5000, false);
    EXPECT_EQ(both(s), 300'000u);
    // The egress side without a sample yet: the largest of those with one.
    with_side(s, TT_DIR_AB, [&](SideFigures& h) { h.rtt_samples = 0; });
    EXPECT_EQ(both(s), 5'000'000u);
    // Both egress (not on one interface, but the rule holds): the largest.
    timed(s, TT_DIR_AB, 300, true);
    with_side(s, TT_DIR_BA, [&](SideFigures& h) { h.flags |= TT_H_EGRESS; });
    EXPECT_EQ(both(s), 5'000'000u);
    // Neither egress: the largest.
    for (int d = 0; d < 2; ++d) with_side(s, d, [](SideFigures& h) { h.flags &= ~TT_H_EGRESS; });
    EXPECT_EQ(both(s), 5'000'000u);
    // One side only.
    with_side(s, TT_DIR_BA, [&](SideFigures& h) { h.rtt_samples = 0; });
    EXPECT_EQ(both(s), 300'000u);
    // A count that wrapped to 0 still has samples.
    with_side(s, TT_DIR_AB, [&](SideFigures& h) { h.rtt_samples = 0; });
    HealthWraps w;
    w.rtt_samples[TT_DIR_AB] = 1;
    set_wraps(s, w);
    EXPECT_EQ(both(s), 300'000u);

    // On SideHealth directly.
    SideHealth a, b;
    a.rtt_samples = 1, a.srtt_ns = 10, a.egress = false;
    b.rtt_samples = 1, b.srtt_ns = 5, b.egress = true;
    EXPECT_EQ(live_rtt(a, b), 5u);
    EXPECT_EQ(live_rtt(b, a), 5u);
    b.egress = false;
    EXPECT_EQ(live_rtt(a, b), 10u);
    a.rtt_samples = b.rtt_samples = 0;
    EXPECT_FALSE(live_rtt(a, b).has_value());
}

// --sort retrans: most retransmitted segments (both ways) first; --sort rtt:
// the live RTT, else the handshake's, none last.
TEST(HealthRows, SortRetransAndLiveRtt) {
    std::vector<FlowSample> v = {flow(40000, TT_DIR_AB), flow(40001, TT_DIR_AB),
                                 flow(40002, TT_DIR_BA), flow(40003, TT_DIR_AB)};
    with_side(v[0], 0, [&](SideFigures& h) { h.retrans = 3; });
    with_side(v[1], 0, [&](SideFigures& h) { h.retrans = 2; });
    with_side(v[1], 1, [&](SideFigures& h) { h.retrans = 2; });  // 4 in all
    with_side(v[2], 1, [&](SideFigures& h) { h.retrans = 0xfffffff0u; });
    HealthWraps w;
    w.retrans[1] = 1;  // widened past 2^32: first
    set_wraps(v[2], w);
    const Built r = build(v, SortKey::Retrans);
    EXPECT_EQ(sports(r), (std::vector<std::uint16_t>{40002, 40001, 40000, 40003}));
    EXPECT_EQ(total_retrans(r.rows[0]), 0x1fffffff0ull);

    // RTT: 40000 handshake 2 ms only; 40001 live 900 us (handshake 5 ms);
    // 40002 live 3 ms; 40003 nothing.
    v[0].info.flags |= TT_F_LOCAL_CLIENT;
    set_handshake(v[0].info, kSec, kSec + 2 * kMs, 0);
    v[1].info.flags |= TT_F_LOCAL_CLIENT;
    set_handshake(v[1].info, kSec, kSec + 5 * kMs, 0);
    timed(v[1], 0, 900, true);
    timed(v[2], 1, 3000, false);
    const Built t = build(v, SortKey::Rtt);
    EXPECT_EQ(sports(t), (std::vector<std::uint16_t>{40002, 40000, 40001, 40003}));
    EXPECT_EQ(shown_rtt(t.rows[2]), 900'000u);
    EXPECT_EQ(t.rows[2].rtt_ns, 5 * kMs);  // the handshake's stays in JSON
    EXPECT_FALSE(shown_rtt(t.rows[3]).has_value());

    // The view re-sorts rows by the same rule as the builder sorts samples.
    for (SortKey k : {SortKey::Rate, SortKey::Bytes, SortKey::Packets, SortKey::Age, SortKey::Rtt,
                      SortKey::Retrans})
        for (std::size_t i = 0; i < v.size(); ++i) {
            const FlowRow row = make_row(v[i], "eth0", 20 * kSec);
            EXPECT_EQ(sort_value(k, row), sort_value(k, v[i], Rate{}, 20 * kSec))
                << static_cast<int>(k) << " " << i;
        }
}

// --summary: totals over the report's rows, both ways; only when asked.
TEST(HealthRows, SummaryTotals) {
    std::vector<FlowSample> v = {flow(40000, TT_DIR_AB), flow(40001, TT_DIR_BA),
                                 flow(40002, TT_DIR_AB)};
    with_side(v[0], 0, [&](SideFigures& h) { h.retrans = 5; });
    with_side(v[0], 0, [&](SideFigures& h) { h.retrans_bytes = 7000; });
    with_side(v[0], 1, [&](SideFigures& h) { h.retrans = 1; });
    with_side(v[0], 1, [&](SideFigures& h) { h.retrans_bytes = 100; });
    with_side(v[0], 1, [&](SideFigures& h) { h.dup_acks = 9; });
    with_side(v[0], 0, [&](SideFigures& h) { h.gaps = 2; });
    with_side(v[1], 1, [&](SideFigures& h) { h.zero_win = 4; });
    with_side(v[1], 0, [&](SideFigures& h) { h.dup_acks = 1; });
    HealthWraps w;
    w.retrans_bytes[0] = 1;  // 2^32 bytes
    set_wraps(v[1], w);
    with_side(v[2], 0, [&](SideFigures& h) { h.retrans = 10; });
    with_side(v[2], 1, [&](SideFigures& h) { h.gaps = 1; });
    v[2].finished = true;
    v[2].info.state = TT_CLOSED;
    const ReportStats st = build(v, SortKey::Rate, true).stats;
    EXPECT_EQ(st.retrans, 16u);
    EXPECT_EQ(st.retrans_bytes, 7100u + (1ull << 32));
    EXPECT_EQ(st.lost_segments, 3u);
    EXPECT_EQ(st.dup_acks, 10u);
    EXPECT_EQ(st.zero_windows, 4u);
    // Not asked for (no --summary): nothing summed.
    const ReportStats off = build(v, SortKey::Rate, false).stats;
    EXPECT_EQ(off.retrans, 0u);
    EXPECT_EQ(off.dup_acks, 0u);
    // --closed: the closed rows only.
    const ReportStats closed = build(v, SortKey::Rate, true, true).stats;
    EXPECT_EQ(closed.retrans, 10u);
    EXPECT_EQ(closed.lost_segments, 1u);
}
