// SPDX-License-Identifier: MIT
// From raw kernel records to oriented report rows: orientation, state, RTT,
// duration, per-interval rates. Pure C++ so it is unit-tested without root.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tcptrack/flow.h"
#include "tcptrack/report.hpp"

namespace tcptrack {

static_assert(sizeof(tt_flow_key) == 44, "flow key layout is shared with bpf/");
static_assert(sizeof(tt_flow_info) == 72, "flow info layout is shared with bpf/");
static_assert(sizeof(tt_slot) == 176, "slot layout is shared with bpf/");
static_assert(sizeof(tt_index_bucket) == 64, "an index bucket is one cache line");
static_assert(sizeof(tt_close_event) == 176, "close event layout is shared with bpf/");

// Where a live flow sits in the store: its slot and the slot's generation.
struct SlotRef {
    std::uint32_t slot;
    std::uint32_t gen;
    bool operator==(const SlotRef&) const = default;
};

// One connection as read from the store or from a close event.
struct FlowSample {
    tt_flow_key key{};
    bool has_info = false;    // info is known (always, from the store; tests may leave it out)
    bool finished = false;    // came from a close event or is being reaped: final
    tt_flow_info info{};
    std::uint64_t bytes[2]{};  // indexed by normalised direction (TT_DIR_AB / TT_DIR_BA)
    std::uint64_t packets[2]{};
    std::uint64_t payload[2]{};
    // Rates and idleness: bytes at the previous report (0 when first seen since
    // then), and when the counters were last seen moving (the report's time).
    std::uint64_t prev_bytes[2]{};
    // Likewise for exporters' deltas: at a changed sample (Collector::changed())
    // the counts since the previous report are the current ones minus these.
    std::uint64_t prev_packets[2]{};
    std::uint64_t prev_payload[2]{};
    std::uint64_t last_active_ns = 0;
    SlotRef ref{UINT32_MAX, 0};
};

bool same_key(const tt_flow_key& a, const tt_flow_key& b);

// Which normalised side is the client. Mid-stream flows use the first packet's
// sender unless the ports make the server obvious (well-known or listening port).
int client_side(const FlowSample& s);
// A sample's endpoints oriented client -> server (ports in host order).
struct Endpoints {
    const std::uint8_t* src;
    const std::uint8_t* dst;
    std::uint16_t sport, dport;
};
Endpoints oriented(const FlowSample& s);
std::optional<std::uint64_t> handshake_rtt(const tt_flow_info& info);
std::optional<std::uint64_t> syn_to_close(const tt_flow_info& info, std::uint64_t now_ns);
// The state shown: CLOSED only once final (while the last ACK is due it is CLOSING).
State shown_state(const FlowSample& s);
// The final sample of an unassured (half-open or one-way) flow that a new
// connection displaced (TT_F_DISPLACED): its state stays what it was.
inline bool displaced(const FlowSample& s) {
    return s.finished && s.has_info && (s.info.flags & TT_F_DISPLACED);
}

// Row for one sample. Rates come from rate_of().
FlowRow make_row(const FlowSample& s, const std::string& iface, std::uint64_t now_ns);
// The same into an existing row (every field is set; its iface storage is reused).
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
