// SPDX-License-Identifier: MIT
// The table for humans: header line, aligned rows, --summary's line, and the
// --closed log.
#include "output/table.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "output/format.hpp"
#include "report/flow_model.hpp"

namespace tcptrack {
namespace {

// A process name for the terminal: control bytes (a comm is any 15 bytes) as '?'.
std::string printable(std::string s) {
    for (char& c : s)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    return s;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
    return out;
}

// "eth0,eth1", or "eth0@netns ctr1,eth1@netns ctr1" under --netns.
std::string joined_ifaces(const Report& r) {
    if (r.netns.empty()) return join(r.ifaces, ",");
    std::vector<std::string> v;
    for (const auto& i : r.ifaces) v.push_back(i + "@" + r.netns);
    return join(v, ",");
}

// "12/0": retransmitted segments each way; "-" when none either way.
std::string retx_text(const FlowRow& r) {
    if (!r.fwd_health.retrans && !r.rev_health.retrans) return "-";
    return fmt::format("{}/{}", r.fwd_health.retrans, r.rev_health.retrans);
}

// "curl/4242"; for a connection gone before its process could be looked up,
// the container the datapath saw ("ctr:" and 12 hex digits, as docker and
// crictl shorten it); "-" when none is known.
std::string process_text(const FlowRow& r) {
    if (r.pid) return fmt::format("{}/{}", printable(r.comm), *r.pid);
    if (!r.container_id.empty()) return "ctr:" + r.container_id.substr(0, 12);
    return "-";
}

}  // namespace

std::string render_table(const Report& report, std::size_t max_rows, const NameLookup& names) {
    const auto& st = report.stats;
    std::string rtt = "rtt -";
    if (st.rtt.count > 0) {
        rtt = fmt::format("rtt min/avg/max {}/{}/{}", rtt_text(st.rtt.min_ns),
                          rtt_text(st.rtt.avg_ns()), rtt_text(st.rtt.max_ns));
    }
    const std::size_t n = report.rows.size();
    // --top cuts the rows, not the count.
    const std::size_t all = std::max<std::size_t>(n, st.connections);
    std::string out = fmt::format(
        "{}  {}  {} connection{}  store {}/{}  displaced {}  untracked {}{}  evicted {}  "
        "close-drops {}  {}\n",
        clock_hms(report.time), report.ifaces.empty() ? "-" : joined_ifaces(report), all,
        all == 1 ? "" : "s", st.tracked, st.capacity, st.displaced, st.untracked,
        st.untracked_segments ? fmt::format(" ({} segments)", st.untracked_segments)
                              : std::string(),
        st.evicted, st.close_dropped, rtt);
    if (n == 0) return out + "  (no TCP connections)\n";

    // One row of cells per connection; column 0 is the header. An IFACE
    // column is added only when rows can come from several interfaces.
    const bool with_iface = report.ifaces.size() > 1;
    std::vector<std::vector<std::string>> cells;
    std::vector<bool> right;  // numeric columns are right-aligned
    // RTT: the live smoothed one, else the handshake's; RETX: retransmitted
    // segments client->server/server->client.
    auto header =
        std::vector<std::string>{"CONNECTION", "STATE",   "TX",  "TX PKTS", "RX", "RX PKTS",
                                 "TX RATE",    "RX RATE", "RTT", "RETX",    "AGE"};
    right = {false, false, true, true, true, true, true, true, true, true, true};
    if (with_iface) {
        header.insert(header.begin(), "IFACE");
        right.insert(right.begin(), false);
    }
    if (report.show_process) {  // last: its width varies the most
        header.push_back("PROCESS");
        right.push_back(false);
    }
    cells.push_back(header);
    const std::size_t shown = std::min(n, max_rows);
    // -r: "name:port" once the resolver knows the name (asked only for rows shown).
    const NameLookup& lookup = names ? names : report.names;
    const auto ep = [&](Family family, const Address& addr, std::uint16_t port) {
        if (lookup)
            if (auto name = lookup(family, addr)) return fmt::format("{}:{}", *name, port);
        return endpoint(family, addr, port);
    };
    for (std::size_t k = 0; k < shown; ++k) {
        const FlowRow& r = report.rows[k];
        std::vector<std::string> c{
            ep(r.family, r.src, r.sport) + " -> " + ep(r.family, r.dst, r.dport),
            state_name(r.state),
            human_bytes(r.fwd_bytes),
            std::to_string(r.fwd_packets),
            human_bytes(r.rev_bytes),
            std::to_string(r.rev_packets),
            human_rate(r.fwd_bps),
            human_rate(r.rev_bps),
            rtt_text(shown_rtt(r)),
            retx_text(r),
            human_duration(r.duration_ns.value_or(r.age_ns))};
        if (with_iface) c.insert(c.begin(), r.iface);
        if (report.show_process) c.push_back(process_text(r));
        cells.push_back(std::move(c));
    }

    std::vector<std::size_t> width(header.size(), 0);
    for (const auto& row : cells)
        for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());

    for (const auto& row : cells) {
        std::string line;
        for (std::size_t i = 0; i < row.size(); ++i) {
            if (i > 0) line += "  ";
            if (right[i])
                line += fmt::format("{:>{}}", row[i], width[i]);
            else
                line += fmt::format("{:<{}}", row[i], width[i]);
        }
        // A left-aligned last column would leave padding behind.
        line.erase(line.find_last_not_of(' ') + 1);
        out += line + '\n';
    }
    if (shown < n)
        out += fmt::format("  ... {} more (busiest shown first; pipe the output to see all)\n",
                           n - shown);
    return out;
}

std::string render_table_summary(const Report& report, std::size_t connections,
                                 const ExportTally* exports) {
    const auto& st = report.stats;
    const auto& rtt = st.rtt;
    std::string rtt_figures = "-";
    if (rtt.count > 0)
        rtt_figures = fmt::format("{}/{}/{}", rtt_text(rtt.min_ns), rtt_text(rtt.avg_ns()),
                                  rtt_text(rtt.max_ns));
    std::string export_text;
    if (exports)
        for (const auto& [name, n] : exports->entries())
            export_text += fmt::format("  {}-errors {}", name, n);
    return fmt::format(
        "summary: connections {}  store {}/{} (assured {}, unassured {})  displaced {}  "
        "untracked {} (full {}, buckets {})  evicted {}  close-drops {}  closed {}  "
        "retrans {} ({})  lost {}  dup-acks {}  zero-windows {}  rtt min/avg/max {}{}\n",
        connections, st.tracked, st.capacity, st.assured, st.unassured, st.displaced, st.untracked,
        st.untracked_full, st.untracked_buckets, st.evicted, st.close_dropped, st.closed,
        st.retrans, human_bytes(st.retrans_bytes), st.lost_segments, st.dup_acks, st.zero_windows,
        rtt_figures, export_text);
}

std::string render_closed_lines(const Report& report) {
    std::string out;
    for (const auto& r : report.rows) {
        if (!ended(r)) continue;
        out += fmt::format("{} -> {}  {}  {} / {}  rtt {}  {}{}\n",
                           endpoint(r.family, r.src, r.sport), endpoint(r.family, r.dst, r.dport),
                           r.duration_ns ? human_duration(*r.duration_ns) : std::string("-"),
                           human_bytes(r.fwd_bytes), human_bytes(r.rev_bytes), rtt_text(r.rtt_ns),
                           state_name(r.state), r.displaced ? " displaced" : "");
    }
    return out;
}

}  // namespace tcptrack
