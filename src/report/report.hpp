// SPDX-License-Identifier: MIT
// What one report holds, independent of how it is rendered.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tcptrack {

enum class Family : std::uint8_t { V4 = 4, V6 = 6 };

// Mirrors enum tt_state in tcptrack/abi.h (same values).
enum class State : std::uint8_t { SynSent = 0, SynRecv, Established, Closing, Closed, Reset };

using Address = std::array<std::uint8_t, 16>;  // network order; IPv4 in the first 4 bytes

// How a connection ended, as seen on the wire: its first FIN, or a RST (which
// ends it whatever FINs came before), and which end sent it.
enum class EndKind : std::uint8_t { None, Fin, Rst };
struct Ending {
    EndKind kind = EndKind::None;
    std::optional<bool> by_client;  // set with kind Fin or Rst
    bool operator==(const Ending&) const = default;
};

// One side's connection health (tcptrack/health.h), widened to 64 bits: what
// a row shows for each direction. Named after Wireshark's tcp.analysis fields.
struct SideHealth {
    std::uint64_t retrans = 0;        // retransmitted wire segments (tcp.analysis.retransmission)
    std::uint64_t retrans_bytes = 0;  // payload bytes sent again
    std::uint64_t lost_segments = 0;  // gaps: data never seen here (tcp.analysis.lost_segment)
    std::uint64_t dup_acks = 0;       // duplicate ACKs this side sent (tcp.analysis.duplicate_ack)
    std::uint64_t fast_retrans = 0;   // retransmissions after 3+ duplicate ACKs from the peer
    std::uint64_t zero_windows = 0;  // zero windows this side advertised (tcp.analysis.zero_window)
    std::uint64_t zero_window_ns = 0;  // time at zero window, a current stretch included
    bool zero_window_now = false;      // its last window was 0
    bool egress = false;               // its segments leave through this interface
    // RTT of this side's data, from here to its receiver and back (rtt_samples > 0).
    std::uint64_t rtt_samples = 0;
    std::uint64_t rtt_min_ns = 0, srtt_ns = 0, rtt_max_ns = 0, rtt_last_ns = 0;
};

// One connection, oriented client -> server (fwd = src -> dst).
struct FlowRow {
    std::string iface;
    Family family = Family::V4;
    Address src{};
    Address dst{};
    std::uint16_t sport = 0;  // host order
    std::uint16_t dport = 0;
    State state = State::Established;
    std::uint64_t fwd_bytes = 0, fwd_packets = 0, fwd_payload = 0;
    std::uint64_t rev_bytes = 0, rev_packets = 0, rev_payload = 0;
    double fwd_bps = 0, rev_bps = 0;           // bits/s over the last interval
    std::optional<std::uint64_t> duration_ns;  // SYN -> close (or now); empty if SYN unseen
    std::optional<std::uint64_t> rtt_ns;       // handshake RTT; empty if not measured
    // Health each way (fwd: what the client sent; rev: the server) and the live
    // smoothed RTT the table shows (report/flow_model.hpp: live_rtt).
    SideHealth fwd_health, rev_health;
    std::optional<std::uint64_t> srtt_ns;
    std::uint64_t age_ns = 0;  // since first seen (for display)
    // The local socket's owner (process attribution); empty: no local socket known.
    std::optional<std::uint32_t> pid;
    std::string comm;          // "" with no pid
    std::string cgroup;        // container id or cgroup v2 path; "" if none
    std::string pod_uid;       // Kubernetes pod UID (dashed) from the cgroup; "" if none
    std::string container_id;  // 64-hex container id from the cgroup; "" if none
    // The socket's network namespace (nsfs inode, as `ls -iL /proc/PID/ns/net`).
    std::optional<std::uint64_t> netns;
    // With pid: the owner's socket is the client's end (fwd is what it sent),
    // else the server's. Not a row field (the exporters' per-pod direction).
    bool owner_client = false;
    // Final row of an unassured (half-open) flow that a new connection displaced.
    bool displaced = false;
    Ending ending;  // None while no FIN or RST was seen
};

struct RttSummary {
    std::uint64_t count = 0, min_ns = 0, max_ns = 0, sum_ns = 0;
    void add(std::uint64_t ns) {
        min_ns = count == 0 || ns < min_ns ? ns : min_ns;
        max_ns = ns > max_ns ? ns : max_ns;
        sum_ns += ns;
        ++count;
    }
    // The mean, rounded to the nearest ns; only when count > 0.
    std::uint64_t avg_ns() const { return (sum_ns + count / 2) / count; }
};

// Loss and load figures shown in the header and in the JSON summary record.
struct ReportStats {
    std::uint64_t connections = 0;  // rows of the report before --top cut it (0: all shown)
    std::uint64_t tracked = 0;      // live entries in the flow map
    std::uint64_t untracked = 0;    // connections refused at their SYN: maps full (cumulative)
    std::uint64_t untracked_segments = 0;  // refused segments, incl. mid-stream flows (cumulative)
    std::uint64_t evicted = 0;             // live flows dropped by the idle timeout (cumulative)
    std::uint64_t close_dropped = 0;  // close events the ring buffer could not take (cumulative)
    std::uint64_t close_lost = 0;     // of those, lost: no slot left to keep them in
    // Store pressure (issue 16): occupancy, assurance, displacement, refusals by reason.
    std::uint64_t capacity = 0;        // slots in the store (--max-flows)
    std::uint64_t assured = 0;         // live flows seen both ways (never displaced)
    std::uint64_t unassured = 0;       // live half-open / one-way flows (displaceable)
    std::uint64_t displaced = 0;       // unassured flows displaced by new connections (cumulative)
    std::uint64_t untracked_full = 0;  // of `untracked`: store full of assured connections
    std::uint64_t untracked_buckets =
        0;                     // of `untracked`: the key's two buckets full of assured ones
    std::uint64_t closed = 0;  // connections reported closed in this report
    RttSummary rtt;            // over the rows of this report
    // Connection health over the report's rows (before --top), both ways, as
    // each connection's counters stand (--summary).
    std::uint64_t retrans = 0, retrans_bytes = 0, lost_segments = 0, dup_acks = 0;
    std::uint64_t zero_windows = 0;
};

// Rows handed to a renderer one at a time, so a big report never holds them
// all: returns the next row (possibly built in `scratch`), nullptr after the last.
using RowSource = std::function<const FlowRow*(FlowRow& scratch)>;
// The same rows by index, for renderers that split a report among threads:
// row(i, scratch) for i < size returns row i (possibly built in `scratch`)
// and may be called from several threads at once, each with its own scratch.
struct RowTable {
    std::size_t size = 0;
    std::function<const FlowRow*(std::size_t i, FlowRow& scratch)> row;
};

// -r: a host name for an address if one is known, else nothing (the number is shown).
using NameLookup = std::function<std::optional<std::string>(Family, const Address&)>;

struct Report {
    std::chrono::system_clock::time_point time;
    std::vector<std::string> ifaces;
    std::vector<FlowRow> rows;
    ReportStats stats;
    bool show_process = false;  // the table's PROCESS column (off with --no-process)
    std::string netns;  // --netns: the table's header says "eth0@netns ctr1" (JSON: bare names)
    NameLookup names;   // -r: the table's endpoint names (empty: numeric; never JSON/CSV)
};

}  // namespace tcptrack
