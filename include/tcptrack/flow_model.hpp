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
static_assert(sizeof(tt_counters) == 64, "counters layout is shared with bpf/");
static_assert(sizeof(tt_flow_info) == 72, "flow info layout is shared with bpf/");
static_assert(sizeof(tt_flow_state) == 80, "flow state layout is shared with bpf/");
static_assert(sizeof(tt_close_event) == 168, "close event layout is shared with bpf/");
static_assert(sizeof(tt_flow_memo) == 120, "memo layout is shared with bpf/");
static_assert(sizeof(tt_dump_record) == 168, "dump record layout is shared with bpf/");

// One connection as read from the maps or from a close event.
struct FlowSample {
    tt_flow_key key{};
    std::uint32_t hash = 0;   // of key; sort/merge order
    tt_flow_info info{};
    std::uint64_t bytes[2]{};  // indexed by normalised direction (TT_DIR_AB / TT_DIR_BA)
    std::uint64_t packets[2]{};
    std::uint64_t payload[2]{};
    bool has_info = false;    // the state entry was found
    bool finished = false;    // came from a close event or is being reaped: final
};

std::uint32_t key_hash(const tt_flow_key& key);
// Order used to merge samples across reports: (hash, key bytes).
bool sample_less(const FlowSample& a, const FlowSample& b);
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

// Row for one sample. Rates are filled by RateTracker.
FlowRow make_row(const FlowSample& s, const std::string& iface, std::uint64_t now_ns);
// The same into an existing row (every field is set; its iface storage is reused).
void fill_row(FlowRow& r, const FlowSample& s, const std::string& iface, std::uint64_t now_ns);

// Remembers each connection's counters between reports to give bits/s and idleness.
class RateTracker {
public:
    // 40 bytes per flow (no key copy): at 1M flows this is most of what
    // tcptrack keeps between reports. A sample finds its entry by position
    // (both lists are in sample_less order) and identifies it by key hash,
    // a second key hash and first_ns (the generation): two different flows
    // would have to collide on 64 bits of hash within one report to mix up.
    struct Seen {
        std::uint64_t first_ns;       // generation of the tuple
        std::uint64_t bytes[2];       // normalised directions
        std::uint64_t last_active_ns;
        std::uint32_t hash;           // FlowSample::hash
        std::uint32_t check;          // key_check(key)
    };
    // One sample's result: bits/s oriented like its row (client -> server is
    // fwd), and ns since its counters last moved.
    struct Rate {
        double fwd_bps = 0, rev_bps = 0;
        std::uint64_t idle_ns = 0;
    };

    // `samples` must be sorted by sample_less. Calls on(i, rate) for each
    // sample in order. `elapsed_ns` is the time since the previous update
    // (0: rates are left at 0).
    void update(const std::vector<FlowSample>& samples, std::uint64_t now_ns,
                std::uint64_t elapsed_ns,
                const std::function<void(std::size_t, const Rate&)>& on);
    // The same, filling fwd_bps/rev_bps of rows[i] (rows[i] built from
    // samples[i]) and returning each sample's idle ns.
    std::vector<std::uint64_t> update(const std::vector<FlowSample>& samples,
                                      std::vector<FlowRow>& rows, std::uint64_t now_ns,
                                      std::uint64_t elapsed_ns);
    std::size_t size() const { return seen_.size(); }

private:
    std::vector<Seen> seen_;              // sorted like the samples
    std::vector<std::uint64_t> active_;   // update(): last_active_ns per sample, reused
};

// A second, independent 32-bit hash of the key (RateTracker's identity check).
std::uint32_t key_check(const tt_flow_key& key);

}  // namespace tcptrack
