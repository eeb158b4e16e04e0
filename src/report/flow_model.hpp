// SPDX-License-Identifier: MIT
// From raw kernel records to oriented report rows: orientation, state, RTT,
// duration, per-interval rates. Pure C++ so it is unit-tested without root.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "datapath/flow_sample.hpp"
#include "report/report.hpp"

namespace tcptrack {

// Which normalised side is the client. Mid-stream flows use the first packet's
// sender unless the ports make the server obvious (well-known or listening port).
int client_side(const FlowSample& s);
// A sample's endpoints oriented client -> server (ports in host order).
struct Endpoints {
    Address src, dst;
    std::uint16_t sport, dport;
};
Endpoints oriented(const FlowSample& s);
std::optional<std::uint64_t> handshake_rtt(const FlowInfo& info);
std::optional<std::uint64_t> syn_to_close(const FlowInfo& info, std::uint64_t now_ns);
// The state shown: CLOSED only once final (while the last ACK is due it is CLOSING).
State shown_state(const FlowSample& s);
// The final sample of an unassured (half-open or one-way) flow that a new
// connection displaced (TT_F_DISPLACED): its state stays what it was.
inline bool displaced(const FlowSample& s) {
    return s.finished && s.has_info && (s.info.flags & TT_F_DISPLACED);
}
// Ended, as --closed shows it: closed, reset, or displaced in any state. The
// same for a sample and for its row (row.state = shown_state, row.displaced).
inline bool ended(State shown, bool displaced) {
    return shown == State::Closed || shown == State::Reset || displaced;
}
inline bool ended(const FlowSample& s) { return ended(shown_state(s), displaced(s)); }
inline bool ended(const FlowRow& r) { return ended(r.state, r.displaced); }
// New since the last report: the collector kept no counts for it then (every
// prev_* is zero; a flow seen at the last report has counted segments).
inline bool is_new(const FlowSample& s) { return s.prev.zero(); }

// The first FIN or the RST the datapath saw, oriented (by_client).
Ending ending_of(const FlowSample& s);

// The normalised flow key of a row's connection (what the filter and the
// store key on; the row's interface is not part of it: ifindex 0).
tt_flow_key key_of(const FlowRow& row);

// One side of a sample's connection health (normalised direction `side`), as
// a row shows it: counters widened, times in ns, a current zero-window stretch
// counted up to now (a finished flow's: up to its close).
SideHealth side_health(const FlowSample& s, int side, std::uint64_t now_ns);

// The live RTT a row shows (smoothed): when exactly one side's segments leave
// through this interface and have RTT samples, that side's (at a host, the
// round trip to the far end; at a router, the half reached through this
// interface); otherwise the largest among the sides with samples; none: empty.
std::optional<std::uint64_t> live_rtt(const SideHealth& a, const SideHealth& b);
inline std::optional<std::uint64_t> live_rtt(const FlowRow& r) {
    return live_rtt(r.fwd_health, r.rev_health);
}
std::optional<std::uint64_t> live_rtt(const FlowSample& s);
// The RTT the table shows and --sort rtt orders by: the live one, else the handshake's.
inline std::optional<std::uint64_t> shown_rtt(const FlowRow& r) {
    return r.srtt_ns ? r.srtt_ns : r.rtt_ns;
}
std::optional<std::uint64_t> shown_rtt(const FlowSample& s);
// Retransmitted segments both ways (--sort retrans).
std::uint64_t total_retrans(const FlowSample& s);
inline std::uint64_t total_retrans(const FlowRow& r) {
    return r.fwd_health.retrans + r.rev_health.retrans;
}

// The row of one sample, into an existing row (every field is set; its iface
// storage is reused). Rates come from rate_of().
void fill_row(FlowRow& r, const FlowSample& s, const std::string& iface, std::uint64_t now_ns);

// A sample's bits/s, oriented like its row (client -> server is fwd), and ns
// since its counters last moved. Only a sample whose counters moved at this
// report (last_active_ns == now_ns) has a rate; elapsed_ns 0 gives none.
struct Rate {
    double fwd_bps = 0, rev_bps = 0;
    std::uint64_t idle_ns = 0;
};
Rate rate_of(const FlowSample& s, std::uint64_t now_ns, std::uint64_t elapsed_ns);

}  // namespace tcptrack
