// SPDX-License-Identifier: MIT
// Rows for machines: NDJSON and CSV streamed in chunks from one row schema
// (TT_ROW_FIELDS), and the JSON summary record.
#include "output/rows.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include "output/format.hpp"

namespace tcptrack {
namespace {

using Json = nlohmann::ordered_json;  // keeps the documented key order

// Bits/s as an integer for machines; negative or NaN (never expected) become 0.
std::uint64_t bps_integer(double bps) {
    return bps > 0 ? static_cast<std::uint64_t>(std::llround(bps)) : 0;
}

// A side's RTT figure, none while it has no RTT sample.
std::optional<std::uint64_t> rtt_of(const SideHealth& h, std::uint64_t v) {
    return h.rtt_samples ? std::optional<std::uint64_t>(v) : std::nullopt;
}

// One side's health keys (side: fwd or rev; h: its SideHealth), the same
// list each way.
#define TT_SIDE_HEALTH_FIELDS(F, side, h)                 \
    F(side##_retrans, Num, h.retrans)                     \
    F(side##_retrans_bytes, Num, h.retrans_bytes)         \
    F(side##_lost_segments, Num, h.lost_segments)         \
    F(side##_dup_acks, Num, h.dup_acks)                   \
    F(side##_fast_retrans, Num, h.fast_retrans)           \
    F(side##_zero_windows, Num, h.zero_windows)           \
    F(side##_zero_window_ns, Num, h.zero_window_ns)       \
    F(side##_rtt_samples, Num, h.rtt_samples)             \
    F(side##_rtt_min_ns, OptNum, rtt_of(h, h.rtt_min_ns)) \
    F(side##_srtt_ns, OptNum, rtt_of(h, h.srtt_ns))       \
    F(side##_rtt_max_ns, OptNum, rtt_of(h, h.rtt_max_ns)) \
    F(side##_rtt_last_ns, OptNum, rtt_of(h, h.rtt_last_ns))

// The row schema, written once: every documented key in order, the kind of
// its value and where the value comes from (the row `r`, the report's `time`).
// The JSON writer, the CSV header and the CSV writer all expand this list.
#define TT_ROW_FIELDS(F)                                                               \
    F(time, Str, time)                                                                 \
    F(iface, Name, r.iface)                                                            \
    F(family, Str, r.family == Family::V6 ? "ipv6" : "ipv4")                           \
    F(src, Addr, r.src)                                                                \
    F(sport, Num, r.sport)                                                             \
    F(dst, Addr, r.dst)                                                                \
    F(dport, Num, r.dport)                                                             \
    F(state, Str, state_name(r.state))                                                 \
    F(fwd_bytes, Num, r.fwd_bytes)                                                     \
    F(fwd_packets, Num, r.fwd_packets)                                                 \
    F(fwd_payload, Num, r.fwd_payload)                                                 \
    F(rev_bytes, Num, r.rev_bytes)                                                     \
    F(rev_packets, Num, r.rev_packets)                                                 \
    F(rev_payload, Num, r.rev_payload)                                                 \
    F(fwd_bps, Num, bps_integer(r.fwd_bps))                                            \
    F(rev_bps, Num, bps_integer(r.rev_bps))                                            \
    F(duration_ns, OptNum, r.duration_ns)                                              \
    F(rtt_ns, OptNum, r.rtt_ns)                                                        \
    /* connection health: the live RTT, then each way (fwd: what the client sent) */   \
    F(srtt_ns, OptNum, r.srtt_ns)                                                      \
    TT_SIDE_HEALTH_FIELDS(F, fwd, r.fwd_health)                                        \
    TT_SIDE_HEALTH_FIELDS(F, rev, r.rev_health)                                        \
    /* the owning process: none without a local socket; a connection gone before */    \
    /* user space looked has only the cgroup the datapath saw (no pid, comm, netns) */ \
    F(pid, OptNum, r.pid)                                                              \
    F(comm, OptText, r.pid ? &r.comm : nullptr)                                        \
    F(cgroup, OptText, !r.cgroup.empty() ? &r.cgroup : nullptr)                        \
    F(netns, OptNum, r.pid ? r.netns : std::nullopt)                                   \
    F(pod_uid, OptText, !r.pod_uid.empty() ? &r.pod_uid : nullptr)                     \
    F(container_id, OptText, !r.container_id.empty() ? &r.container_id : nullptr)      \
    /* a half-open flow's last row, ended to make room */                              \
    F(displaced, Bool, r.displaced)                                                    \
    /* the first FIN or the RST seen, and the end that sent it */                      \
    F(end, OptText, end_name(r.ending))                                                \
    F(end_by, OptText, end_by_name(r.ending))

// Interface names are bytes from the kernel: never let a bad one throw.
std::string dump_line(const Json& j) {
    return j.dump(-1, ' ', false, Json::error_handler_t::replace) + '\n';
}

// Rows are rendered into a 64 KiB buffer handed to the sink whenever it fills,
// so a million-row report never exists as one string. Each row first makes
// room for itself; it is then written through a raw pointer with no per-field
// bounds checks (this loop is most of a report's CPU at 1M flows). Without a
// sink the buffer only grows: a parallel render's chunk of rows.
constexpr std::size_t kChunk = 64 * 1024;
// Bound on a row's fixed keys and numbers (2 IPv6 addresses, 39 numbers of at
// most 20 digits: about 2 KiB with their keys; test_render checks a row of
// maximal figures); the interface name and texts are added on top.
constexpr std::size_t kRowMax = 3072;

class Out {
   public:
    // sink nullptr: keep everything (text()).
    explicit Out(const TextSink* sink) : sink_(sink), buf_(kHead + kChunk + kRowMax) {}
    // Before each row: room for kRowMax + `extra` more bytes (and mid-row
    // before a text of `extra` bytes: what is written stays).
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
    void num(std::uint64_t v) {
        if (v < 10) {  // most health counters: no call
            *p_++ = static_cast<char>('0' + v);
            return;
        }
        p_ = std::to_chars(p_, p_ + 20, v).ptr;
    }
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
    // Fields are written with their separator first, the first field's
    // included, so each key is one literal (",\"key\":"), with no per-field
    // test: JSON overwrites the row's first byte with its '{'; CSV writes the
    // row from one byte before (over the last byte of the row before, or the
    // buffer's spare head byte) and gives that byte back after the row.
    // Offsets, not pointers: a text in the row may move the buffer.
    std::size_t pos() const { return static_cast<std::size_t>(p_ - buf_.data()); }
    void patch(std::size_t at, char c) { buf_[at] = c; }
    std::size_t open_row() {
        const std::size_t at = pos();
        saved_ = buf_[at - 1];
        --p_;
        return at;
    }
    void close_row(std::size_t at) { buf_[at - 1] = saved_; }
    // After each row: pass the text on once a chunk is full. False: the sink gave up.
    bool row_done() { return !sink_ || size() < kChunk || flush(); }
    bool flush() {
        const bool ok = size() == 0 || (*sink_)(text());
        p_ = buf_.data() + kHead;
        return ok;
    }
    std::string_view text() const { return {buf_.data() + kHead, size()}; }
    void clear() { p_ = buf_.data() + kHead; }

   private:
    static constexpr std::size_t kHead = 1;  // open_row's byte before the first row
    std::size_t size() const { return static_cast<std::size_t>(p_ - buf_.data()) - kHead; }

    const TextSink* sink_;
    std::vector<char> buf_;
    char* p_ = buf_.data() + kHead;
    char saved_ = 0;
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
    if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
    std::string out = "\"";
    for (char c : s) {
        if (c == '"') out += '"';
        out += c;
    }
    return out + '"';
}

// One JSON row (NDJSON line) of a report.
class JsonRow {
   public:
    explicit JsonRow(const std::string& time) : time_(time) {}
    void write(Out& o, const FlowRow& r) {
        o.begin_row(time_.size() + iface_.get(r.iface).size());
        const std::size_t at = o.pos();
        const auto Str = [&](std::string_view v) {
            o.put('"');
            o.put(v);
            o.put('"');
        };
        const auto Name = [&](const std::string& v) { o.put(iface_.get(v)); };
        const auto Addr = [&](const Address& a) {
            o.put('"');
            o.addr(r.family, a);
            o.put('"');
        };
        const auto Num = [&](std::uint64_t v) { o.num(v); };
        const auto Bool = [&](bool v) { v ? o.put("true") : o.put("false"); };
        const auto OptNum = [&](const auto& v) { v ? o.num(*v) : o.put("null"); };
        const auto OptText = [&](const std::string* v) {
            if (!v) return o.put("null");
            text_ = json_text(*v);
            o.begin_row(text_.size());
            o.put(text_);
        };
        const std::string& time = time_;
#define TT_JSON_FIELD(key, kind, value) \
    o.put(",\"" #key "\":");            \
    kind(value);
        TT_ROW_FIELDS(TT_JSON_FIELD)
#undef TT_JSON_FIELD
        o.patch(at, '{');
        o.put("}\n");
    }

   private:
    const std::string& time_;
    NameCache iface_{json_string};
    std::string text_;
};

// One CSV row of a report.
class CsvRow {
   public:
    explicit CsvRow(const std::string& time) : time_(time) {}
    void write(Out& o, const FlowRow& r) {
        o.begin_row(time_.size() + iface_.get(r.iface).size());
        const std::size_t at = o.open_row();
        const auto Str = [&](std::string_view v) { o.put(v); };
        const auto Name = [&](const std::string& v) { o.put(iface_.get(v)); };
        const auto Addr = [&](const Address& a) { o.addr(r.family, a); };
        const auto Num = [&](std::uint64_t v) { o.num(v); };
        const auto Bool = [&](bool v) { v ? o.put("true") : o.put("false"); };
        const auto OptNum = [&](const auto& v) {  // empty when unknown
            if (v) o.num(*v);
        };
        const auto OptText = [&](const std::string* v) {
            if (!v) return;
            text_ = csv_field(*v);
            o.begin_row(text_.size());
            o.put(text_);
        };
        const std::string& time = time_;
#define TT_CSV_FIELD(key, kind, value) \
    o.put(',');                        \
    kind(value);
        TT_ROW_FIELDS(TT_CSV_FIELD)
#undef TT_CSV_FIELD
        o.close_row(at);
        o.put('\n');
    }

   private:
    const std::string& time_;
    NameCache iface_{csv_field};
    std::string text_;
};

std::string csv_header() {
    std::string h;
#define TT_CSV_KEY(key, kind, value) h += "," #key;
    TT_ROW_FIELDS(TT_CSV_KEY)
#undef TT_CSV_KEY
    return h.substr(1) + '\n';
}

// Rows from a RowSource, in order, on this thread.
template <typename Writer>
bool render_serial(const RowSource& rows, std::string_view head, Writer& w, const TextSink& sink) {
    Out o(&sink);
    o.begin_row(head.size());
    o.put(head);
    FlowRow scratch;
    while (const FlowRow* row = rows(scratch)) {
        w.write(o, *row);
        if (!o.row_done()) return false;
    }
    return o.flush();
}

// Rows from a RowTable: chunks of opts.chunk_rows rows rendered by up to
// opts.threads worker threads, each into its own buffer, handed to the sink
// in order by this thread (the same bytes as render_serial). At most two
// chunks per worker are in flight, which bounds the memory.
template <typename Writer>
bool render_parallel(const RowTable& rows, std::string_view head, const std::string& time,
                     const TextSink& sink, const RenderOptions& opts) {
    const std::size_t per = std::max<std::size_t>(1, opts.chunk_rows);
    const std::size_t chunks = (rows.size + per - 1) / per;
    const std::size_t workers = std::min<std::size_t>(opts.threads, chunks);
    if (workers <= 1) {
        Writer w(time);
        std::size_t i = 0;
        const RowSource serial = [&](FlowRow& scratch) {
            return i < rows.size ? rows.row(i++, scratch) : nullptr;
        };
        return render_serial(serial, head, w, sink);
    }
    // A line of its own each: a worker writes its slot's Out at every field,
    // and slots sharing a line with another thread's cost a third of the
    // render at a million rows (which heap offset they got decided it).
    struct alignas(64) Slot {
        Out out{nullptr};
        std::size_t chunk = 0;  // the chunk it may hold next
        bool ready = false;     // out holds that chunk
    };
    const std::size_t nslots = 2 * workers;
    std::vector<Slot> slots(nslots);
    for (std::size_t s = 0; s < nslots; ++s) slots[s].chunk = s;
    std::mutex mu;
    std::condition_variable cv;
    std::size_t next = 0;  // the next chunk to render
    bool stop = false;
    std::exception_ptr failed;
    auto work = [&] {
        Writer w(time);
        FlowRow scratch;
        try {
            for (;;) {
                std::size_t k;
                Slot* slot;
                {
                    std::unique_lock<std::mutex> g(mu);
                    if (stop || next == chunks) return;
                    k = next++;
                    slot = &slots[k % nslots];
                    cv.wait(g, [&] { return stop || slot->chunk == k; });
                    if (stop) return;
                }
                slot->out.clear();
                const std::size_t end = std::min(rows.size, (k + 1) * per);
                for (std::size_t i = k * per; i < end; ++i)
                    w.write(slot->out, *rows.row(i, scratch));
                {
                    const std::lock_guard<std::mutex> g(mu);
                    slot->ready = true;
                }
                cv.notify_all();
            }
        } catch (...) {
            const std::lock_guard<std::mutex> g(mu);
            if (!failed) failed = std::current_exception();
            stop = true;
            cv.notify_all();
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(workers);
    for (std::size_t t = 0; t < workers; ++t) pool.emplace_back(work);
    bool ok = head.empty() || sink(head);
    for (std::size_t k = 0; ok && k < chunks; ++k) {
        Slot& slot = slots[k % nslots];
        {
            std::unique_lock<std::mutex> g(mu);
            cv.wait(g, [&] { return stop || slot.ready; });
            if (!slot.ready) break;  // a worker failed
        }
        ok = sink(slot.out.text());
        {
            const std::lock_guard<std::mutex> g(mu);
            slot.ready = false;
            slot.chunk = k + nslots;
            if (!ok) stop = true;
        }
        cv.notify_all();
    }
    {
        const std::lock_guard<std::mutex> g(mu);
        stop = true;
    }
    cv.notify_all();
    for (auto& t : pool) t.join();
    if (failed) std::rethrow_exception(failed);
    return ok;
}

}  // namespace

unsigned render_threads() {
    return std::clamp(std::thread::hardware_concurrency(), 1u, kMaxRenderThreads);
}

bool render_json(std::chrono::system_clock::time_point when, const RowSource& rows,
                 const TextSink& sink) {
    const std::string time = rfc3339_utc(when);
    JsonRow w(time);
    return render_serial(rows, "", w, sink);
}

bool render_json(std::chrono::system_clock::time_point when, const RowTable& rows,
                 const TextSink& sink, const RenderOptions& opts) {
    return render_parallel<JsonRow>(rows, "", rfc3339_utc(when), sink, opts);
}

std::string render_json_summary(const Report& report, std::size_t connections,
                                const ExportTally* exports) {
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
    j["rtt_avg_ns"] = have_rtt ? Json(rtt.avg_ns()) : Json(nullptr);
    j["rtt_max_ns"] = have_rtt ? Json(rtt.max_ns) : Json(nullptr);
    // Connection health: totals over the report's connections, both ways.
    j["retrans"] = st.retrans;
    j["retrans_bytes"] = st.retrans_bytes;
    j["lost_segments"] = st.lost_segments;
    j["dup_acks"] = st.dup_acks;
    j["zero_windows"] = st.zero_windows;
    // Store pressure: occupancy, assurance, displacement, refusals by reason.
    j["capacity"] = st.capacity;
    j["assured"] = st.assured;
    j["unassured"] = st.unassured;
    j["displaced"] = st.displaced;
    j["untracked_full"] = st.untracked_full;
    j["untracked_buckets"] = st.untracked_buckets;
    if (exports && !exports->entries().empty()) {  // only with exporters: {"ipfix": 0, ...}
        Json e = Json::object();
        for (const auto& [name, n] : exports->entries()) e[name] = n;
        j["export_errors"] = e;
    }
    return dump_line(j);
}

bool render_csv(std::chrono::system_clock::time_point when, const RowSource& rows, bool header,
                const TextSink& sink) {
    const std::string time = rfc3339_utc(when);
    CsvRow w(time);
    return render_serial(rows, header ? csv_header() : "", w, sink);
}

bool render_csv(std::chrono::system_clock::time_point when, const RowTable& rows, bool header,
                const TextSink& sink, const RenderOptions& opts) {
    return render_parallel<CsvRow>(rows, header ? csv_header() : "", rfc3339_utc(when), sink, opts);
}

}  // namespace tcptrack
