// SPDX-License-Identifier: MIT
// Rendering of reports: human units, the table, the close log, NDJSON and CSV.
#include "output/render.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

namespace tcptrack {
namespace {

using Json = nlohmann::ordered_json;  // keeps the documented key order

// Formats with two decimals, moving to the next unit when rounding would show
// "1024.00 KiB" or "1000.00 Kb/s".
template <std::size_t N>
std::string scaled(double v, double base, const std::array<const char*, N>& units) {
    std::size_t u = 1;
    v /= base;
    while (u + 1 < N && std::round(v * 100) >= base * 100) {
        v /= base;
        ++u;
    }
    return fmt::format("{:.2f} {}", v, units[u]);
}

std::string rtt_text(const std::optional<std::uint64_t>& ns) {
    // Same units as durations: LAN handshakes are microseconds, WAN ones milliseconds.
    return ns ? human_duration(*ns) : std::string("-");
}

// Bits/s as an integer for machines; negative or NaN (never expected) become 0.
std::uint64_t bps_integer(double bps) {
    return bps > 0 ? static_cast<std::uint64_t>(std::llround(bps)) : 0;
}

// The row schema, written once: every documented key in order, the kind of
// its value and where the value comes from (the row `r`, the report's `time`).
// The JSON writer, the CSV header and the CSV writer all expand this list.
#define TT_ROW_FIELDS(F)                                        \
    F(time, Str, time)                                          \
    F(iface, Name, r.iface)                                     \
    F(family, Str, r.family == Family::V6 ? "ipv6" : "ipv4")    \
    F(src, Addr, r.src)                                         \
    F(sport, Num, r.sport)                                      \
    F(dst, Addr, r.dst)                                         \
    F(dport, Num, r.dport)                                      \
    F(state, Str, state_name(r.state))                          \
    F(fwd_bytes, Num, r.fwd_bytes)                              \
    F(fwd_packets, Num, r.fwd_packets)                          \
    F(fwd_payload, Num, r.fwd_payload)                          \
    F(rev_bytes, Num, r.rev_bytes)                              \
    F(rev_packets, Num, r.rev_packets)                          \
    F(rev_payload, Num, r.rev_payload)                          \
    F(fwd_bps, Num, bps_integer(r.fwd_bps))                     \
    F(rev_bps, Num, bps_integer(r.rev_bps))                     \
    F(duration_ns, OptNum, r.duration_ns)                       \
    F(rtt_ns, OptNum, r.rtt_ns)                                 \
    /* the owning process: none without a local socket */      \
    F(pid, OptNum, r.pid)                                       \
    F(comm, OptText, r.pid ? &r.comm : nullptr)                 \
    F(cgroup, OptText, r.pid && !r.cgroup.empty() ? &r.cgroup : nullptr) \
    /* a half-open flow's last row, ended to make room */    \
    F(displaced, Bool, r.displaced)

// Interface names are bytes from the kernel: never let a bad one throw.
std::string dump_line(const Json& j) {
    return j.dump(-1, ' ', false, Json::error_handler_t::replace) + '\n';
}

// Rows are rendered into a 64 KiB buffer handed to the sink whenever it fills,
// so a million-row report never exists as one string. Each row first makes
// room for itself; it is then written through a raw pointer with no per-field
// bounds checks (this loop is most of a report's CPU at 1M flows).
constexpr std::size_t kChunk = 64 * 1024;
// Bound on a row's fixed keys and numbers (2 IPv6 addresses, 14 numbers); the
// interface name is added on top.
constexpr std::size_t kRowMax = 1024;

class Out {
public:
    explicit Out(const TextSink& sink) : sink_(sink), buf_(kChunk + kRowMax) {}
    // Before each row: room for kRowMax + `extra` more bytes.
    void begin_row(std::size_t extra) {
        const std::size_t used = static_cast<std::size_t>(p_ - buf_.data());
        if (used + kRowMax + extra > buf_.size()) buf_.resize(used + kRowMax + extra);
        p_ = buf_.data() + used;
    }
    template <std::size_t N>
    void put(const char (&s)[N]) {  // literals: a fixed-size copy
        std::memcpy(p_, s, N - 1);
        p_ += N - 1;
    }
    void put(std::string_view s) {
        std::memcpy(p_, s.data(), s.size());
        p_ += s.size();
    }
    void put(char c) { *p_++ = c; }
    void num(std::uint64_t v) { p_ = std::to_chars(p_, p_ + 20, v).ptr; }
    void addr(Family family, const Address& a) {
        if (family == Family::V4) {  // by hand: glibc's inet_ntop formats IPv4 with sprintf
            for (int i = 0; i < 4; ++i) {
                if (i) put('.');
                num(a[i]);
            }
            return;
        }
        char text[INET6_ADDRSTRLEN];
        put(inet_ntop(AF_INET6, a.data(), text, sizeof text) ? std::string_view(text) : "?");
    }
    // After each row: pass the text on once a chunk is full. False: the sink gave up.
    bool row_done() { return size() < kChunk || flush(); }
    bool flush() {
        const bool ok = size() == 0 || sink_(std::string_view(buf_.data(), size()));
        p_ = buf_.data();
        return ok;
    }

private:
    std::size_t size() const { return static_cast<std::size_t>(p_ - buf_.data()); }

    const TextSink& sink_;
    std::vector<char> buf_;
    char* p_ = buf_.data();
};

// The escaped form of one name, cached: rows of a report share a few interfaces.
class NameCache {
public:
    explicit NameCache(std::string (*escape)(const std::string&)) : escape_(escape) {}
    const std::string& get(const std::string& name) {
        if (!valid_ || name != name_) {
            name_ = name;
            text_ = escape_(name);
            valid_ = true;
        }
        return text_;
    }

private:
    std::string (*escape_)(const std::string&);
    bool valid_ = false;
    std::string name_, text_;
};

// A JSON string literal exactly as nlohmann would write it (invalid UTF-8 replaced).
std::string json_string(const std::string& s) {
    return Json(s).dump(-1, ' ', false, Json::error_handler_t::replace);
}

// json_string() without building a JSON value for plain text (process names
// and cgroup paths, one per row).
std::string json_text(const std::string& s) {
    for (const char c : s)
        if (c < 0x20 || c == '"' || c == '\\' || c >= 0x7f) return json_string(s);
    std::string out;
    out.reserve(s.size() + 2);
    out += '"';
    out += s;
    out += '"';
    return out;
}

// RFC 4180 quoting, only when needed (interface names may hold commas).
std::string csv_field(const std::string& s) {
    if (s.find_first_of(",\"\r\n") == std::string::npos)
        return s;
    std::string out = "\"";
    for (char c : s) {
        if (c == '"')
            out += '"';
        out += c;
    }
    return out + '"';
}

// A process name for the terminal: control bytes (a comm is any 15 bytes) as '?'.
std::string printable(std::string s) {
    for (char& c : s)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    return s;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
    std::string out;
    for (const auto& s : v)
        out += (out.empty() ? "" : sep) + s;
    return out;
}

// "eth0,eth1", or "eth0@netns ctr1,eth1@netns ctr1" under --netns.
std::string joined_ifaces(const Report& r) {
    if (r.netns.empty()) return join(r.ifaces, ",");
    std::vector<std::string> v;
    for (const auto& i : r.ifaces) v.push_back(i + "@" + r.netns);
    return join(v, ",");
}

}  // namespace

std::string human_bytes(std::uint64_t bytes) {
    if (bytes < 1024)
        return fmt::format("{} B", bytes);
    static constexpr std::array<const char*, 5> units = {"B", "KiB", "MiB", "GiB", "TiB"};
    return scaled(static_cast<double>(bytes), 1024, units);
}

std::string human_rate(double bps) {
    if (!(bps > 0))
        return "0 b/s";
    if (std::round(bps) < 1000)
        return fmt::format("{:.0f} b/s", bps);
    static constexpr std::array<const char*, 4> units = {"b/s", "Kb/s", "Mb/s", "Gb/s"};
    return scaled(bps, 1000, units);
}

std::string human_duration(std::uint64_t ns) {
    // Thresholds sit where rounding would roll over ("1000.0ms" -> "1.00s").
    if (ns < 1'000'000)
        return fmt::format("{}us", ns / 1000);
    if (ns < 999'950'000)
        return fmt::format("{:.1f}ms", static_cast<double>(ns) / 1e6);
    if (ns < 59'995'000'000)
        return fmt::format("{:.2f}s", static_cast<double>(ns) / 1e9);
    // 59.995s..60s would truncate to "0m59s"; it rounds to a minute.
    const std::uint64_t s = std::max<std::uint64_t>(ns / 1'000'000'000, 60);
    if (s < 3600)
        return fmt::format("{}m{:02}s", s / 60, s % 60);
    return fmt::format("{}h{:02}m", s / 3600, s / 60 % 60);
}

std::string address(Family family, const Address& addr) {
    char buf[INET6_ADDRSTRLEN] = {};
    const int af = family == Family::V6 ? AF_INET6 : AF_INET;
    if (!inet_ntop(af, addr.data(), buf, sizeof buf))
        return "?";
    return buf;
}

std::string endpoint(Family family, const Address& addr, std::uint16_t port) {
    if (family == Family::V6)
        return fmt::format("[{}]:{}", address(family, addr), port);
    return fmt::format("{}:{}", address(family, addr), port);
}

const char* state_name(State state) {
    switch (state) {
    case State::SynSent: return "SYN_SENT";
    case State::SynRecv: return "SYN_RECV";
    case State::Established: return "ESTABLISHED";
    case State::Closing: return "CLOSING";
    case State::Closed: return "CLOSED";
    case State::Reset: return "RESET";
    }
    return "UNKNOWN";
}

std::string clock_hms(std::chrono::system_clock::time_point t) {
    const std::time_t tt = std::chrono::system_clock::to_time_t(t);
    struct tm tm {};
    localtime_r(&tt, &tm);
    return fmt::format("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec);
}

std::string rfc3339_utc(std::chrono::system_clock::time_point t) {
    using namespace std::chrono;
    // floor, not truncation, so times before 1970 still get a valid ms field.
    const auto ms = floor<milliseconds>(t.time_since_epoch()).count();
    const auto secs = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    const auto frac = ms - static_cast<long long>(secs) * 1000;
    struct tm tm {};
    gmtime_r(&secs, &tm);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900,
                       tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

std::string render_table(const Report& report, std::size_t max_rows, const NameLookup& names) {
    const auto& st = report.stats;
    std::string rtt = "rtt -";
    if (st.rtt.count > 0) {
        const std::uint64_t avg = (st.rtt.sum_ns + st.rtt.count / 2) / st.rtt.count;
        rtt = fmt::format("rtt min/avg/max {}/{}/{}", rtt_text(st.rtt.min_ns), rtt_text(avg),
                          rtt_text(st.rtt.max_ns));
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
    if (n == 0)
        return out + "  (no TCP connections)\n";

    // One row of cells per connection; column 0 is the header. An IFACE
    // column is added only when rows can come from several interfaces.
    const bool with_iface = report.ifaces.size() > 1;
    std::vector<std::vector<std::string>> cells;
    std::vector<bool> right;  // numeric columns are right-aligned
    auto header = std::vector<std::string>{"CONNECTION", "STATE",   "TX",      "TX PKTS", "RX",
                                           "RX PKTS",    "TX RATE", "RX RATE", "RTT",     "AGE"};
    right = {false, false, true, true, true, true, true, true, true, true};
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
            if (auto name = lookup(family, addr))
                return fmt::format("{}:{}", *name, port);
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
            rtt_text(r.rtt_ns),
            human_duration(r.duration_ns.value_or(r.age_ns))};
        if (with_iface)
            c.insert(c.begin(), r.iface);
        if (report.show_process)
            c.push_back(r.pid ? fmt::format("{}/{}", printable(r.comm), *r.pid) : "-");
        cells.push_back(std::move(c));
    }

    std::vector<std::size_t> width(header.size(), 0);
    for (const auto& row : cells)
        for (std::size_t i = 0; i < row.size(); ++i)
            width[i] = std::max(width[i], row[i].size());

    for (const auto& row : cells) {
        std::string line;
        for (std::size_t i = 0; i < row.size(); ++i) {
            if (i > 0)
                line += "  ";
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

bool render_json(std::chrono::system_clock::time_point when, const RowSource& rows,
                 const TextSink& sink) {
    // Keys are fixed, so rows are written by hand from TT_ROW_FIELDS.
    const std::string time = rfc3339_utc(when);
    NameCache iface(json_string);
    std::string comm, cgroup;
    Out o(sink);
    const FlowRow* row = nullptr;
    const auto Str = [&](std::string_view v) {
        o.put('"');
        o.put(v);
        o.put('"');
    };
    const auto Name = [&](const std::string& v) { o.put(iface.get(v)); };
    const auto Addr = [&](const Address& a) {
        o.put('"');
        o.addr(row->family, a);
        o.put('"');
    };
    const auto Num = [&](std::uint64_t v) { o.num(v); };
    const auto Bool = [&](bool v) {
        v ? o.put(std::string_view("true")) : o.put(std::string_view("false"));
    };
    const auto OptNum = [&](const auto& v) { v ? o.num(*v) : o.put("null"); };
    const auto OptText = [&](const std::string* v) {
        if (!v) return o.put("null");
        o.put(v == &row->comm ? std::string_view(comm) : std::string_view(cgroup));
    };
    FlowRow scratch;
    while ((row = rows(scratch))) {
        const FlowRow& r = *row;
        if (r.pid) {
            comm = json_text(r.comm);
            cgroup = json_text(r.cgroup);
        }
        o.begin_row(time.size() + iface.get(r.iface).size() +
                    (r.pid ? comm.size() + cgroup.size() : 0));
        o.put('{');
        std::string_view sep = "";
#define TT_JSON_FIELD(key, kind, value) \
    o.put(sep);                         \
    sep = ",";                          \
    o.put("\"" #key "\":");             \
    kind(value);
        TT_ROW_FIELDS(TT_JSON_FIELD)
#undef TT_JSON_FIELD
        o.put("}\n");
        if (!o.row_done())
            return false;
    }
    return o.flush();
}

std::string render_json_summary(const Report& report, std::size_t connections) {
    const auto& st = report.stats;
    const auto& rtt = st.rtt;
    const bool have_rtt = rtt.count > 0;
    Json j;
    j["type"] = "summary";
    j["time"] = rfc3339_utc(report.time);
    j["ifaces"] = report.ifaces;
    j["connections"] = connections;
    j["tracked"] = st.tracked;
    j["untracked"] = st.untracked;
    j["untracked_segments"] = st.untracked_segments;
    j["evicted"] = st.evicted;
    j["close_dropped"] = st.close_dropped;
    j["close_lost"] = st.close_lost;
    j["closed"] = st.closed;
    j["rtt_min_ns"] = have_rtt ? Json(rtt.min_ns) : Json(nullptr);
    j["rtt_avg_ns"] = have_rtt ? Json((rtt.sum_ns + rtt.count / 2) / rtt.count) : Json(nullptr);
    j["rtt_max_ns"] = have_rtt ? Json(rtt.max_ns) : Json(nullptr);
    // Store pressure: occupancy, assurance, displacement, refusals by reason.
    j["capacity"] = st.capacity;
    j["assured"] = st.assured;
    j["unassured"] = st.unassured;
    j["displaced"] = st.displaced;
    j["untracked_full"] = st.untracked_full;
    j["untracked_buckets"] = st.untracked_buckets;
    if (!st.export_errors.empty()) {  // only with exporters: {"ipfix": 0, ...}
        Json e = Json::object();
        for (const auto& [name, n] : st.export_errors) e[name] = n;
        j["export_errors"] = e;
    }
    return dump_line(j);
}

std::string render_table_summary(const Report& report, std::size_t connections) {
    const auto& st = report.stats;
    const auto& rtt = st.rtt;
    std::string rtt_figures = "-";
    if (rtt.count > 0)
        rtt_figures = fmt::format("{}/{}/{}", rtt_text(rtt.min_ns),
                                  rtt_text((rtt.sum_ns + rtt.count / 2) / rtt.count),
                                  rtt_text(rtt.max_ns));
    std::string exports;
    for (const auto& [name, n] : st.export_errors)
        exports += fmt::format("  {}-errors {}", name, n);
    return fmt::format(
        "summary: connections {}  store {}/{} (assured {}, unassured {})  displaced {}  "
        "untracked {} (full {}, buckets {})  evicted {}  close-drops {}  closed {}  "
        "rtt min/avg/max {}{}\n",
        connections, st.tracked, st.capacity, st.assured, st.unassured, st.displaced, st.untracked,
        st.untracked_full, st.untracked_buckets, st.evicted, st.close_dropped, st.closed,
        rtt_figures, exports);
}

bool render_csv(std::chrono::system_clock::time_point when, const RowSource& rows, bool header,
                const TextSink& sink) {
    Out o(sink);
    std::string_view sep = "";
    if (header) {
        o.begin_row(0);
#define TT_CSV_KEY(key, kind, value) \
    o.put(sep);                      \
    sep = ",";                       \
    o.put(#key);
        TT_ROW_FIELDS(TT_CSV_KEY)
#undef TT_CSV_KEY
        o.put('\n');
    }
    const std::string time = rfc3339_utc(when);
    NameCache iface(csv_field);
    std::string comm, cgroup;
    const FlowRow* row = nullptr;
    const auto Str = [&](std::string_view v) { o.put(v); };
    const auto Name = [&](const std::string& v) { o.put(iface.get(v)); };
    const auto Addr = [&](const Address& a) { o.addr(row->family, a); };
    const auto Num = [&](std::uint64_t v) { o.num(v); };
    const auto Bool = [&](bool v) {
        v ? o.put(std::string_view("true")) : o.put(std::string_view("false"));
    };
    const auto OptNum = [&](const auto& v) {  // empty when unknown
        if (v) o.num(*v);
    };
    const auto OptText = [&](const std::string* v) {
        if (v) o.put(v == &row->comm ? std::string_view(comm) : std::string_view(cgroup));
    };
    FlowRow scratch;
    while ((row = rows(scratch))) {
        const FlowRow& r = *row;
        if (r.pid) {
            comm = csv_field(r.comm);
            cgroup = csv_field(r.cgroup);
        }
        o.begin_row(time.size() + iface.get(r.iface).size() +
                    (r.pid ? comm.size() + cgroup.size() : 0));
        sep = "";
#define TT_CSV_FIELD(key, kind, value) \
    o.put(sep);                        \
    sep = ",";                         \
    kind(value);
        TT_ROW_FIELDS(TT_CSV_FIELD)
#undef TT_CSV_FIELD
        o.put('\n');
        if (!o.row_done())
            return false;
    }
    return o.flush();
}

std::string render_closed_lines(const Report& report) {
    std::string out;
    for (const auto& r : report.rows) {
        if (r.state != State::Closed && r.state != State::Reset && !r.displaced) continue;
        out += fmt::format("{} -> {}  {}  {} / {}  rtt {}  {}{}\n",
                           endpoint(r.family, r.src, r.sport), endpoint(r.family, r.dst, r.dport),
                           r.duration_ns ? human_duration(*r.duration_ns) : std::string("-"),
                           human_bytes(r.fwd_bytes), human_bytes(r.rev_bytes), rtt_text(r.rtt_ns),
                           state_name(r.state), r.displaced ? " displaced" : "");
    }
    return out;
}

}  // namespace tcptrack
