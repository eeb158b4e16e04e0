// SPDX-License-Identifier: MIT
// --prometheus: aggregate metrics served by prometheus-cpp (see the header).
#include "output/prometheus.hpp"
#include "output/format.hpp"
#include "report/flow_model.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CivetServer.h>
#include <civetweb.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "sys/clock.hpp"
#include "sys/error.hpp"
#include "sys/fd.hpp"
#include "sys/host_port.hpp"

namespace tcptrack {
namespace {

using prometheus::Counter;
using prometheus::Gauge;
using prometheus::Histogram;

constexpr std::array<State, 6> kStates{State::SynSent, State::SynRecv, State::Established,
                                       State::Closing, State::Closed,  State::Reset};
constexpr const char* kDirs[2] = {"client_to_server", "server_to_client"};

// Handshake RTTs from a LAN's tens of microseconds to a satellite's seconds.
const Histogram::BucketBoundaries& rtt_buckets() {
    static const Histogram::BucketBoundaries b{0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                               0.0025,   0.005,   0.01,   0.025,   0.05,   0.1,
                                               0.25,     0.5,     1,      2.5,     5,      10};
    return b;
}

// Connections' smoothed RTTs at their end (the rows' srtt_ns), 10 us to 10 s.
const Histogram::BucketBoundaries& srtt_buckets() {
    static const Histogram::BucketBoundaries b{
        0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
        0.025,   0.05,     0.1,     0.25,   0.5,     1,      2.5,   5,      10};
    return b;
}

// The health counters, each by direction: a row's cumulative figures
// (report/report.hpp: SideHealth; fwd_health is what the client sent).
struct HealthCounter {
    const char* name;
    const char* help;
    std::uint64_t SideHealth::*field;
};
constexpr std::array<HealthCounter, 5> kHealth{{
    {"tcptrack_retransmitted_segments_total",
     "Retransmitted TCP segments (wire segments), by the direction they were sent in",
     &SideHealth::retrans},
    {"tcptrack_retransmitted_bytes_total",
     "TCP payload bytes sent again (seen before in the same direction)",
     &SideHealth::retrans_bytes},
    {"tcptrack_lost_segments_total",
     "TCP segments starting past the next expected sequence number: data not seen here (lost "
     "upstream, or reordered)",
     &SideHealth::lost_segments},
    {"tcptrack_duplicate_acks_total", "Duplicate ACKs, by the direction they were sent in",
     &SideHealth::dup_acks},
    {"tcptrack_zero_windows_total",
     "Transitions to an advertised TCP window of zero, by the direction that advertised it",
     &SideHealth::zero_windows},
}};
// A connection's health counters: [client_to_server, server_to_client][kHealth].
using HealthCounts = std::array<std::array<std::uint64_t, kHealth.size()>, 2>;

HealthCounts health_counts(const FlowRow& r) {
    HealthCounts c{};
    for (std::size_t k = 0; k < kHealth.size(); ++k) {
        c[0][k] = r.fwd_health.*kHealth[k].field;
        c[1][k] = r.rev_health.*kHealth[k].field;
    }
    return c;
}

bool any(const HealthCounts& c) {
    for (const auto& d : c)
        for (const std::uint64_t v : d)
            if (v) return true;
    return false;
}

// The registry behind a lock: a scrape collects whole reports only.
class Locked final : public prometheus::Collectable {
   public:
    std::vector<prometheus::MetricFamily> Collect() const override {
        const std::lock_guard<std::mutex> g(mutex);
        return registry.Collect();
    }
    prometheus::Registry registry;
    mutable std::mutex mutex;
};

std::uint64_t delta(std::uint64_t now, std::uint64_t prev) { return now > prev ? now - prev : 0; }

// What a connection's bytes and packets grew by since the previous report,
// [client_to_server, server_to_client]: the one rule every byte and packet
// counter adds (the interfaces' and the pods'). whole: all of its counts, for
// a connection counted somewhere for the first time (a sample's prev_* are
// meaningful only in the report's changed ones).
struct Moved {
    std::uint64_t wire[2]{}, payload[2]{}, packets[2]{};
};
Moved moved(const FlowSample& s, bool whole) {
    Moved m;
    const int c2s = client_side(s);
    const int dirs[2] = {c2s, c2s ^ 1};  // client_to_server, server_to_client
    for (int d = 0; d < 2; ++d) {
        const int n = dirs[d];
        m.wire[d] = delta(s.bytes[n], whole ? 0 : s.prev_bytes(n));
        m.payload[d] = delta(s.payload[n], whole ? 0 : s.prev_payload(n));
        m.packets[d] = delta(s.packets[n], whole ? 0 : s.prev_packets(n));
    }
    return m;
}

// Counters are monotonic: a cumulative value is applied as what it grew by.
void set_total(Counter& c, std::uint64_t& last, std::uint64_t now) {
    if (now > last) c.Increment(static_cast<double>(now - last));
    last = now;
}

// "ADDR:PORT" / "[ADDR]:PORT" / "HOST:PORT" as a numeric socket address.
struct Endpoint {
    sockaddr_storage sa{};
    socklen_t len = 0;
    std::string civet;  // civetweb's listening_ports spelling
};

Endpoint resolve(const std::string& text) {
    const auto hp = parse_host_port(text);
    if (!hp) throw Error("cannot serve Prometheus metrics on " + text + ": expected ADDR:PORT");
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family =
        hp->bracketed ? AF_INET6 : AF_INET;  // a name: its IPv4 address (see bind_failure)
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* res = nullptr;
    if (const int rc =
            getaddrinfo(hp->host.c_str(), std::to_string(hp->port).c_str(), &hints, &res);
        rc != 0 || !res)
        throw Error("cannot serve Prometheus metrics on " + text + ": " + gai_strerror(rc));
    Endpoint e;
    std::memcpy(&e.sa, res->ai_addr, res->ai_addrlen);
    e.len = res->ai_addrlen;
    freeaddrinfo(res);
    char buf[INET6_ADDRSTRLEN] = "";
    if (e.sa.ss_family == AF_INET6) {
        const auto* a = reinterpret_cast<const sockaddr_in6*>(&e.sa);
        inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
        e.civet = "[" + std::string(buf) + "]:" + std::to_string(ntohs(a->sin6_port));
    } else {
        const auto* a = reinterpret_cast<const sockaddr_in*>(&e.sa);
        inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
        e.civet = std::string(buf) + ":" + std::to_string(ntohs(a->sin_port));
    }
    return e;
}

// Why civetweb could not listen: the same bind, by hand, tells errno.
std::string bind_failure(const Endpoint& e) {
    const Fd fd(socket(e.sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return std::strerror(errno);
    const int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&e.sa), e.len) == 0)
        return e.sa.ss_family == AF_INET6 ? "IPv6 is not available (this build's HTTP server, "
                                            "civetweb, has no IPv6): use an IPv4 address"
                                          : "the HTTP server did not start";
    switch (errno) {
        case EADDRINUSE:
            return "address in use";
        case EADDRNOTAVAIL:
            return "no such local address";
        case EACCES:
            return "permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)";
        default:
            return std::strerror(errno);
    }
}

// The port in use, and a wildcard address as loopback: where to connect to it.
void set_port(Endpoint& e, int port) {
    if (e.sa.ss_family == AF_INET6) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&e.sa);
        a->sin6_port = htons(static_cast<std::uint16_t>(port));
        if (IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr)) a->sin6_addr = in6addr_loopback;
    } else {
        auto* a = reinterpret_cast<sockaddr_in*>(&e.sa);
        a->sin_port = htons(static_cast<std::uint16_t>(port));
        if (a->sin_addr.s_addr == htonl(INADDR_ANY)) a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }
}

// Every signal blocked in this thread while it lives (threads started meanwhile keep that).
struct SignalsBlocked {
    sigset_t old;
    SignalsBlocked() {
        sigset_t all;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
    }
    ~SignalsBlocked() { pthread_sigmask(SIG_SETMASK, &old, nullptr); }
    SignalsBlocked(const SignalsBlocked&) = delete;
    SignalsBlocked& operator=(const SignalsBlocked&) = delete;
};

std::string joined(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
    return s;
}

}  // namespace

namespace {

// GET /healthz, answered before the exposer's handlers see the request
// (civetweb's begin_request): 200 "ok", or 503 with what is wrong. The health
// of this process's one listening exporter.
std::atomic<const Health*> g_health{nullptr};

int answer_healthz(mg_connection* c) {
    const mg_request_info* ri = mg_get_request_info(c);
    if (!ri || !ri->local_uri || std::strcmp(ri->local_uri, "/healthz") != 0) return 0;
    const Health* h = g_health.load();
    const std::string why = h ? h->problems(monotonic_ns()) : "";
    const std::string body = why.empty() ? "ok\n" : why;
    const int status = why.empty() ? 200 : 503;
    mg_printf(c,
              "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
              "Content-Length: %zu\r\nCache-Control: no-store\r\n\r\n",
              status, why.empty() ? "OK" : "Service Unavailable", body.size());
    mg_write(c, body.data(), body.size());
    return status;  // non-zero: handled here
}

const CivetCallbacks& healthz_callbacks() {
    static const CivetCallbacks cb = [] {
        CivetCallbacks c;
        c.begin_request = answer_healthz;
        return c;
    }();
    return cb;
}

}  // namespace

struct PrometheusOutput::Impl {
    std::shared_ptr<Locked> reg = std::make_shared<Locked>();
    const ExportTally* exports = nullptr;  // the exporters' errors (tcptrack_export_errors_total)
    std::unique_ptr<prometheus::Exposer> exposer;
    Endpoint where;  // what it listens on (its port the one in use)
    // Wakes the server's listener while it stops (see ~PrometheusOutput).
    std::thread waker;
    std::mutex wake_mutex;
    std::condition_variable wake_cv;
    int stopping = 0;  // 1: stopping, 2: stopped
    // --node-name: a constant label on every series (none when empty).
    const prometheus::Labels node_labels;

    prometheus::Family<Gauge>& connections;
    prometheus::Family<Counter>& opened;
    prometheus::Family<Counter>& closed;
    prometheus::Family<Counter>& bytes;
    prometheus::Family<Counter>& packets;
    prometheus::Family<Histogram>& rtt;
    prometheus::Family<Counter>& untracked;
    prometheus::Family<Counter>& evicted;
    prometheus::Family<Counter>& close_dropped;
    prometheus::Family<Counter>& export_errors;
    prometheus::Family<Gauge>& store_capacity;
    prometheus::Family<Gauge>& store_flows;
    prometheus::Family<Counter>& displaced;
    prometheus::Family<Counter>& untracked_by_reason;
    prometheus::Family<Histogram>& srtt;
    std::array<prometheus::Family<Counter>*, kHealth.size()> health{};

    // One interface's series.
    struct Iface {
        std::array<Gauge*, kStates.size()> state{};
        Counter* opened = nullptr;
        Counter* fin = nullptr;
        Counter* rst = nullptr;
        Counter* idle = nullptr;
        Counter* displaced = nullptr;
        Counter* wire[2]{};
        Counter* payload[2]{};
        Counter* packets[2]{};
        Histogram* rtt = nullptr;
        Histogram* srtt = nullptr;
        std::array<std::array<Counter*, 2>, kHealth.size()> health{};  // [counter][direction]
        // This report's figures, applied at once under the lock.
        std::array<std::uint64_t, kStates.size()> live{};
        std::uint64_t n_opened = 0, n_fin = 0, n_rst = 0, n_idle = 0, n_displaced = 0;
        std::uint64_t d_wire[2]{}, d_payload[2]{}, d_packets[2]{};
        std::vector<double> rtts;
        HealthCounts d_health{};
        std::vector<double> srtts;
    };
    std::map<std::string, Iface> ifaces;

    // The datapath-wide series, labelled with every interface (made at the first report).
    std::string all_label;
    bool wide_made = false;
    Counter* c_untracked = nullptr;
    Counter* c_evicted = nullptr;
    Counter* c_close_dropped = nullptr;
    Gauge* g_capacity = nullptr;
    Gauge* g_assured = nullptr;
    Gauge* g_unassured = nullptr;
    Counter* c_displaced = nullptr;
    Counter* c_untracked_full = nullptr;
    Counter* c_untracked_buckets = nullptr;
    std::uint64_t last_untracked = 0, last_evicted = 0, last_close_dropped = 0;
    std::uint64_t last_displaced = 0, last_untracked_full = 0, last_untracked_buckets = 0;
    struct ExportErrors {
        Counter* c = nullptr;
        std::uint64_t last = 0;
        std::uint64_t pending = 0;
    };
    std::map<std::string, ExportErrors> errors;  // by exporter

    // By slot, the generation counted as opened and not yet ended, and the
    // one whose RTT was observed (0: none; live generations are odd). A slot
    // is recycled only after its close event was read, so a connection's
    // entry lasts until its final sample; the next one in the slot overwrites
    // it. 8 bytes a slot, no hashing, nothing to prune.
    struct BySlot {
        std::vector<std::uint32_t> gen;
        bool has(const SlotRef& r) const { return r.slot < gen.size() && gen[r.slot] == r.gen; }
        // Marks r; false if it already was.
        bool add(const SlotRef& r) {
            if (r.slot >= TT_MAX_SLOTS) return true;  // no slot: only prev_* == 0 tells it is new
            if (r.slot >= gen.size())
                gen.resize(std::min<std::size_t>(std::max<std::size_t>(r.slot + 1, gen.size() * 2),
                                                 TT_MAX_SLOTS),
                           0);
            if (gen[r.slot] == r.gen) return false;
            gen[r.slot] = r.gen;
            return true;
        }
        // Unmarks r; false if it was not marked.
        bool remove(const SlotRef& r) {
            if (!has(r)) return false;
            gen[r.slot] = 0;
            return true;
        }
    };
    BySlot seen, rtt_done;

    // --prometheus-pods: series per pod, made when its first connection is
    // counted and removed once it has none left and none ended for idle_ns.
    PodSeriesLimits pods;
    prometheus::Family<Counter>* pod_bytes = nullptr;
    prometheus::Family<Counter>* pod_opened = nullptr;
    prometheus::Family<Counter>* pod_closed = nullptr;
    Counter* pod_dropped = nullptr;
    std::uint64_t n_pod_dropped = 0;  // this report's
    struct Pod {
        Counter* bytes[2][2]{};  // [sent, received][wire, payload]; made under the lock
        Counter* opened = nullptr;
        Counter* closed = nullptr;
        std::uint64_t live = 0;     // its counted connections not ended (entries in pod_conns)
        std::uint64_t last_ns = 0;  // when one of them last moved or ended
        struct Pending {
            std::uint64_t bytes[2][2]{};
            std::uint64_t opened = 0, closed = 0;
        } pending;  // this report's, applied under the lock
    };
    std::unordered_map<std::string, Pod> pod;  // by pod_uid (nodes: stable Pod*)
    // By slot, the connections counted in a pod (or refused one: pod null)
    // and not ended; a connection's pod is the one it was first counted in.
    struct PodConn {
        std::uint32_t gen = 0;
        Pod* pod = nullptr;
    };
    std::unordered_map<std::uint32_t, PodConn> pod_conns;

    // Adds a connection's bytes to its pod, from the pod's socket's view:
    // it sent client_to_server if it is the client's end.
    static void add_bytes(Pod& p, const Moved& mv, bool owner_client) {
        const int sent = owner_client ? 0 : 1;
        p.pending.bytes[0][0] += mv.wire[sent];
        p.pending.bytes[0][1] += mv.payload[sent];
        p.pending.bytes[1][0] += mv.wire[sent ^ 1];
        p.pending.bytes[1][1] += mv.payload[sent ^ 1];
    }

    // A connection's part in its pod's series: from the first report that
    // knows its pod (all its counts so far, so an owner found late loses
    // nothing) to its end. mv: what it moved by in this report (null: an
    // idle end, nothing moved). Beyond max_pods: dropped, counted once.
    void count_pod(const FlowSample& s, const FlowRow& row, const Moved* mv, bool ends,
                   std::uint64_t now) {
        auto it = pod_conns.find(s.ref.slot);
        if (it != pod_conns.end() && it->second.gen != s.ref.gen) {
            // The slot's previous connection ended unreported (a lost close event).
            if (Pod* old = it->second.pod) {
                ++old->pending.closed;
                --old->live;
                old->last_ns = now;
            }
            pod_conns.erase(it);
            it = pod_conns.end();
        }
        if (it != pod_conns.end()) {
            Pod* p = it->second.pod;
            if (ends) pod_conns.erase(it);
            if (!p) return;  // refused at its first report
            add_bytes(*p, mv ? *mv : Moved{}, row.owner_client);
            if (ends) {
                ++p->pending.closed;
                --p->live;
            }
            p->last_ns = now;
            return;
        }
        if (row.pod_uid.empty()) return;  // not a pod's, or its owner is not known (yet)
        auto pit = pod.find(row.pod_uid);
        if (pit == pod.end()) {
            if (pod.size() >= pods.max_pods) {
                ++n_pod_dropped;
                if (!ends) pod_conns[s.ref.slot] = PodConn{s.ref.gen, nullptr};
                return;
            }
            pit = pod.emplace(row.pod_uid, Pod{}).first;
        }
        Pod& p = pit->second;
        add_bytes(p, moved(s, true), row.owner_client);
        ++p.pending.opened;
        if (ends)
            ++p.pending.closed;
        else {
            ++p.live;
            pod_conns[s.ref.slot] = PodConn{s.ref.gen, &p};
        }
        p.last_ns = now;
    }

    // Called with the lock held: this report's figures; series made for new
    // pods and removed for pods idle long enough.
    void apply_pods(std::uint64_t now) {
        static constexpr const char* kPodDirs[2] = {"sent", "received"};
        static constexpr const char* kKinds[2] = {"wire", "payload"};
        if (n_pod_dropped) pod_dropped->Increment(static_cast<double>(n_pod_dropped));
        n_pod_dropped = 0;
        for (auto it = pod.begin(); it != pod.end();) {
            const std::string& uid = it->first;
            Pod& p = it->second;
            if (!p.opened) {
                for (int d = 0; d < 2; ++d)
                    for (int k = 0; k < 2; ++k)
                        p.bytes[d][k] = &pod_bytes->Add(
                            {{"pod_uid", uid}, {"direction", kPodDirs[d]}, {"kind", kKinds[k]}});
                p.opened = &pod_opened->Add({{"pod_uid", uid}});
                p.closed = &pod_closed->Add({{"pod_uid", uid}});
            }
            for (int d = 0; d < 2; ++d)
                for (int k = 0; k < 2; ++k)
                    if (p.pending.bytes[d][k])
                        p.bytes[d][k]->Increment(static_cast<double>(p.pending.bytes[d][k]));
            if (p.pending.opened) p.opened->Increment(static_cast<double>(p.pending.opened));
            if (p.pending.closed) p.closed->Increment(static_cast<double>(p.pending.closed));
            if (p.live == 0 && now >= p.last_ns && now - p.last_ns >= pods.idle_ns) {
                for (auto& d : p.bytes)
                    for (Counter* c : d) pod_bytes->Remove(c);
                pod_opened->Remove(p.opened);
                pod_closed->Remove(p.closed);
                it = pod.erase(it);
            } else {
                ++it;
            }
        }
    }

    void make_pod_families() {
        pod_bytes = &prometheus::BuildCounter()
                         .Name("tcptrack_pod_bytes_total")
                         .Help(
                             "Bytes of the connections of a pod on this node, sent or "
                             "received by its socket: wire (IP packets) or payload (TCP data)")
                         .Labels(node_labels)
                         .Register(reg->registry);
        pod_opened = &prometheus::BuildCounter()
                          .Name("tcptrack_pod_connections_opened_total")
                          .Help(
                              "Connections of a pod on this node, counted from the first "
                              "report that knew their owner")
                          .Labels(node_labels)
                          .Register(reg->registry);
        pod_closed = &prometheus::BuildCounter()
                          .Name("tcptrack_pod_connections_closed_total")
                          .Help("Connections of a pod on this node that ended")
                          .Labels(node_labels)
                          .Register(reg->registry);
        pod_dropped = &prometheus::BuildCounter()
                           .Name("tcptrack_pod_connections_dropped_total")
                           .Help(
                               "Connections of pods not counted per pod: the most pods with "
                               "series (--prometheus-pods' cap) had series already")
                           .Labels(node_labels)
                           .Register(reg->registry)
                           .Add({});
    }

    // The rows' cumulative health counters at the previous report, by slot,
    // of the connections that have any (most have none): the next report adds
    // what they gained since. An entry goes with its connection's end; a
    // slot's next connection (another generation) starts from zero.
    struct HealthPrev {
        std::uint32_t gen = 0;
        HealthCounts c{};
    };
    std::unordered_map<std::uint32_t, HealthPrev> health_prev;
    ExportRowOf row_of;  // a sample's row (fill_row)
    FlowRow row;         // its scratch

    // Adds what r's connection gained since the previous report to f; ends: its last.
    void gained(Iface& f, const SlotRef& ref, const FlowRow& r, bool ends) {
        const HealthCounts now = health_counts(r);
        auto it = health_prev.find(ref.slot);
        const bool known = it != health_prev.end() && it->second.gen == ref.gen;
        for (int d = 0; d < 2; ++d)
            for (std::size_t k = 0; k < kHealth.size(); ++k)
                f.d_health[d][k] += delta(now[d][k], known ? it->second.c[d][k] : 0);
        if (ends) {
            if (known) health_prev.erase(it);
        } else if (any(now)) {
            health_prev[ref.slot] = HealthPrev{ref.gen, now};
        }
    }
    void forget_health(const SlotRef& ref) {
        auto it = health_prev.find(ref.slot);
        if (it != health_prev.end() && it->second.gen == ref.gen) health_prev.erase(it);
    }

    explicit Impl(const std::string& node)
        : node_labels(node.empty() ? prometheus::Labels{} : prometheus::Labels{{"node", node}}),
          connections(prometheus::BuildGauge()
                          .Name("tcptrack_connections")
                          .Help("Live TCP connections by state")
                          .Labels(node_labels)
                          .Register(reg->registry)),
          opened(prometheus::BuildCounter()
                     .Name("tcptrack_connections_opened_total")
                     .Help("TCP connections seen for the first time")
                     .Labels(node_labels)
                     .Register(reg->registry)),
          closed(prometheus::BuildCounter()
                     .Name("tcptrack_connections_closed_total")
                     .Help("TCP connections ended, by reason (fin, rst, idle timeout, displaced)")
                     .Labels(node_labels)
                     .Register(reg->registry)),
          bytes(prometheus::BuildCounter()
                    .Name("tcptrack_bytes_total")
                    .Help("Bytes of TCP connections by direction: wire (IP packets) or payload "
                          "(TCP data)")
                    .Labels(node_labels)
                    .Register(reg->registry)),
          packets(prometheus::BuildCounter()
                      .Name("tcptrack_packets_total")
                      .Help("Packets of TCP connections by direction")
                      .Labels(node_labels)
                      .Register(reg->registry)),
          rtt(prometheus::BuildHistogram()
                  .Name("tcptrack_handshake_rtt_seconds")
                  .Help("Handshake round-trip time, once per connection")
                  .Labels(node_labels)
                  .Register(reg->registry)),
          untracked(prometheus::BuildCounter()
                        .Name("tcptrack_untracked_connections_total")
                        .Help("Connections not tracked: the flow table was full at their SYN")
                        .Labels(node_labels)
                        .Register(reg->registry)),
          evicted(prometheus::BuildCounter()
                      .Name("tcptrack_evicted_connections_total")
                      .Help("Live connections dropped from the flow table by the idle timeout")
                      .Labels(node_labels)
                      .Register(reg->registry)),
          close_dropped(prometheus::BuildCounter()
                            .Name("tcptrack_close_events_dropped_total")
                            .Help("Close events the ring buffer could not take")
                            .Labels(node_labels)
                            .Register(reg->registry)),
          export_errors(prometheus::BuildCounter()
                            .Name("tcptrack_export_errors_total")
                            .Help("Errors of the exporters (unreachable collector...)")
                            .Labels(node_labels)
                            .Register(reg->registry)),
          store_capacity(prometheus::BuildGauge()
                             .Name("tcptrack_store_capacity")
                             .Help("Flows the store holds (--max-flows)")
                             .Labels(node_labels)
                             .Register(reg->registry)),
          store_flows(prometheus::BuildGauge()
                          .Name("tcptrack_store_flows")
                          .Help("Live flows in the store: assured (seen both ways) or unassured "
                                "(half-open, one-way: displaceable)")
                          .Labels(node_labels)
                          .Register(reg->registry)),
          displaced(prometheus::BuildCounter()
                        .Name("tcptrack_displaced_connections_total")
                        .Help("Unassured flows displaced to make room for new connections")
                        .Labels(node_labels)
                        .Register(reg->registry)),
          untracked_by_reason(prometheus::BuildCounter()
                                  .Name("tcptrack_untracked_connections_by_reason_total")
                                  .Help("Connections not tracked, by reason: store_full (of "
                                        "assured connections) or buckets_full (their index "
                                        "buckets full of assured connections)")
                                  .Labels(node_labels)
                                  .Register(reg->registry)),
          srtt(prometheus::BuildHistogram()
                   .Name("tcptrack_rtt_seconds")
                   .Help("Smoothed round-trip time of each connection (from the whole connection, "
                         "not only the handshake), observed once, when it ends")
                   .Labels(node_labels)
                   .Register(reg->registry)) {
        for (std::size_t k = 0; k < kHealth.size(); ++k)
            health[k] = &prometheus::BuildCounter()
                             .Name(kHealth[k].name)
                             .Help(kHealth[k].help)
                             .Labels(node_labels)
                             .Register(reg->registry);
    }

    // Called with the lock held (or before the exposer runs).
    Iface& iface(const std::string& name) {
        auto it = ifaces.find(name);
        if (it != ifaces.end()) return it->second;
        Iface& f = ifaces[name];
        for (std::size_t i = 0; i < kStates.size(); ++i)
            f.state[i] = &connections.Add({{"interface", name}, {"state", state_name(kStates[i])}});
        f.opened = &opened.Add({{"interface", name}});
        f.fin = &closed.Add({{"interface", name}, {"reason", "fin"}});
        f.rst = &closed.Add({{"interface", name}, {"reason", "rst"}});
        f.idle = &closed.Add({{"interface", name}, {"reason", "idle"}});
        f.displaced = &closed.Add({{"interface", name}, {"reason", "displaced"}});
        for (int d = 0; d < 2; ++d) {
            f.wire[d] =
                &bytes.Add({{"interface", name}, {"direction", kDirs[d]}, {"kind", "wire"}});
            f.payload[d] =
                &bytes.Add({{"interface", name}, {"direction", kDirs[d]}, {"kind", "payload"}});
            f.packets[d] = &packets.Add({{"interface", name}, {"direction", kDirs[d]}});
        }
        f.rtt = &rtt.Add({{"interface", name}}, rtt_buckets());
        f.srtt = &srtt.Add({{"interface", name}}, srtt_buckets());
        for (std::size_t k = 0; k < kHealth.size(); ++k)
            for (int d = 0; d < 2; ++d)
                f.health[k][d] = &health[k]->Add({{"interface", name}, {"direction", kDirs[d]}});
        return f;
    }

    void make_wide(const std::string& label) {
        all_label = label;
        c_untracked = &untracked.Add({{"interface", label}});
        c_evicted = &evicted.Add({{"interface", label}});
        c_close_dropped = &close_dropped.Add({{"interface", label}});
        g_capacity = &store_capacity.Add({{"interface", label}});
        g_assured = &store_flows.Add({{"interface", label}, {"assurance", "assured"}});
        g_unassured = &store_flows.Add({{"interface", label}, {"assurance", "unassured"}});
        c_displaced = &displaced.Add({{"interface", label}});
        c_untracked_full =
            &untracked_by_reason.Add({{"interface", label}, {"reason", "store_full"}});
        c_untracked_buckets =
            &untracked_by_reason.Add({{"interface", label}, {"reason", "buckets_full"}});
        for (auto& [name, e] : errors)
            e.c = &export_errors.Add({{"interface", label}, {"exporter", name}});
        wide_made = true;
    }

    void apply_errors() {
        if (!wide_made) return;
        for (auto& [name, e] : errors) {
            if (!e.c) e.c = &export_errors.Add({{"interface", all_label}, {"exporter", name}});
            set_total(*e.c, e.last, e.pending);
        }
    }
};

PrometheusOutput::PrometheusOutput(const std::string& listen,
                                   const std::vector<std::string>& ifaces,
                                   const ExportTally* exports, const std::string& node,
                                   const Health* health, ExportRowOf row_of, PodSeriesLimits pods)
    : impl_(std::make_unique<Impl>(node)) {
    impl_->exports = exports;
    impl_->pods = pods;
    if (pods.enabled) impl_->make_pod_families();  // none without the flag (cardinality)
    impl_->row_of = row_of ? std::move(row_of) : ExportRowOf(fill_row);
    for (const auto& i : ifaces) impl_->iface(i);
    impl_->errors["ipfix"];
    impl_->errors["prometheus"];
    if (!ifaces.empty()) impl_->make_wide(joined(ifaces));
    if (listen.empty()) return;
    const Endpoint e = resolve(listen);
    // The server's threads inherit a mask with every signal blocked, so
    // SIGINT/SIGTERM reach the run loop's thread and wake it at once.
    const SignalsBlocked blocked;
    try {
        impl_->exposer = std::make_unique<prometheus::Exposer>(
            std::vector<std::string>{"listening_ports", e.civet, "num_threads", "2",
                                     "request_timeout_ms", "10000"},
            &healthz_callbacks());
    } catch (const std::exception&) {
        throw Error("cannot serve Prometheus metrics on " + listen + ": " + bind_failure(e));
    }
    impl_->exposer->RegisterCollectable(impl_->reg);
    g_health.store(health);
    impl_->where = e;
    set_port(impl_->where, port());
    impl_->waker = std::thread([m = impl_.get()] {
        std::unique_lock<std::mutex> lk(m->wake_mutex);
        m->wake_cv.wait(lk, [m] { return m->stopping != 0; });
        while (m->stopping == 1) {
            const Fd fd(
                socket(m->where.sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
            if (fd)
                connect(fd.get(), reinterpret_cast<const sockaddr*>(&m->where.sa), m->where.len);
            m->wake_cv.wait_for(lk, std::chrono::milliseconds(20),
                                [m] { return m->stopping == 2; });
        }
    });
}

// civetweb's stop waits for its listener thread, which polls its sockets for
// up to 2 s between looks at the stop flag: connections to it while it stops
// wake it at once (tcptrack exits promptly on SIGINT). They come from a thread
// started with the server, so from its namespace even after --netns moved the
// main thread elsewhere.
PrometheusOutput::~PrometheusOutput() {
    if (!impl_->exposer) return;
    g_health.store(nullptr);
    {
        const std::lock_guard<std::mutex> g(impl_->wake_mutex);
        impl_->stopping = 1;
    }
    impl_->wake_cv.notify_all();
    impl_->exposer.reset();
    {
        const std::lock_guard<std::mutex> g(impl_->wake_mutex);
        impl_->stopping = 2;
    }
    impl_->wake_cv.notify_all();
    impl_->waker.join();
}

bool PrometheusOutput::write(const ReportFrame& frame) {
    Impl& m = *impl_;
    using Iface = Impl::Iface;
    for (auto& [name, f] : m.ifaces) {
        f.live.fill(0);
        f.n_opened = f.n_fin = f.n_rst = f.n_idle = f.n_displaced = 0;
        for (int d = 0; d < 2; ++d) f.d_wire[d] = f.d_payload[d] = f.d_packets[d] = 0;
        f.rtts.clear();
        f.d_health = {};
        f.srtts.clear();
    }
    // A sample's interface, remembered across the run of samples on the same one.
    std::uint32_t last_ifx = UINT32_MAX;
    Iface* last_f = nullptr;
    auto of = [&](const FlowSample& s) -> Iface& {
        if (s.key.ifindex() != last_ifx || !last_f) {
            const std::lock_guard<std::mutex> g(m.reg->mutex);
            last_f = &m.iface(frame.iface(s.key.ifindex()));
            last_ifx = s.key.ifindex();
        }
        return *last_f;
    };
    // Each connection's RTT once: when first known (live or final).
    auto observe_rtt = [&](const FlowSample& s, Iface& f, bool final) {
        if (!s.has_info) return;
        const auto rtt = handshake_rtt(s.info);
        if (!rtt) return;
        if (final) {
            if (!m.rtt_done.remove(s.ref)) f.rtts.push_back(static_cast<double>(*rtt) / 1e9);
        } else if (m.rtt_done.add(s.ref)) {
            f.rtts.push_back(static_cast<double>(*rtt) / 1e9);
        }
    };

    // A sample's row, for its health figures and smoothed RTT.
    auto row_of = [&](const FlowSample& s) -> const FlowRow& {
        m.row_of(m.row, s, frame.iface(s.key.ifindex()), frame.now_ns);
        return m.row;
    };
    // Each connection's smoothed RTT once, at its end (if it has one).
    auto observe_srtt = [](const FlowRow& r, Iface& f) {
        if (r.srtt_ns) f.srtts.push_back(static_cast<double>(*r.srtt_ns) / 1e9);
    };

    std::unordered_set<std::uint64_t> idle;
    for (const SlotRef& r : frame.idle) idle.insert(flow_id(r));
    // --prometheus-pods: the row's owner fields (pod_uid) from the enrichers.
    auto enriched = [&](const FlowSample& s, FlowRow& row) -> const FlowRow& {
        row.pod_uid.clear();
        row.pid.reset();
        if (frame.enrich) frame.enrich(s.ref, row);
        return row;
    };
    std::unordered_set<std::uint64_t> pod_idle_done;  // idle ones counted with the changed

    if (m.pods.enabled)
        for (auto& [uid, p] : m.pod) p.pending = {};

    const auto& samples = frame.samples;
    std::vector<std::size_t> idle_at;  // live samples whose last report this is
    for (std::size_t i = 0; i < frame.live && i < samples.size(); ++i) {
        const FlowSample& s = samples[i];
        Iface& f = of(s);
        ++f.live[static_cast<std::size_t>(shown_state(s))];
        if (!idle.empty() && idle.count(flow_id(s.ref))) {
            ++f.n_idle;
            idle_at.push_back(i);
        }
    }
    for (const std::uint32_t i : frame.changed) {
        if (i >= samples.size()) continue;
        const FlowSample& s = samples[i];
        Iface& f = of(s);
        const std::uint64_t key = flow_id(s.ref);
        const bool final = i >= frame.live;
        const bool ends = final || (!idle.empty() && idle.count(key));
        const bool fresh = is_new(s);
        // First seen (already finished, possibly): opened once.
        if (ends) {
            if (!m.seen.remove(s.ref) && fresh) ++f.n_opened;
        } else if (m.seen.add(s.ref) && fresh) {
            ++f.n_opened;
        }
        const Moved mv = moved(s, false);
        for (int d = 0; d < 2; ++d) {
            f.d_wire[d] += mv.wire[d];
            f.d_payload[d] += mv.payload[d];
            f.d_packets[d] += mv.packets[d];
        }
        const FlowRow& row = row_of(s);
        m.gained(f, s.ref, row, ends);
        if (m.pods.enabled) {
            m.count_pod(s, enriched(s, m.row), &mv, ends, frame.now_ns);
            if (!final && ends) pod_idle_done.insert(key);
        }
        if (final) {
            observe_srtt(row, f);
            if (displaced(s))  // a half-open flow ended to make room, whatever its state
                ++f.n_displaced;
            else if (shown_state(s) == State::Reset)
                ++f.n_rst;
            else
                ++f.n_fin;
        }
        if (!final && ends) continue;  // idle: below
        observe_rtt(s, f, final);
    }
    for (const std::size_t i : idle_at) {  // ended after this report
        const FlowSample& s = samples[i];
        m.seen.remove(s.ref);
        m.forget_health(s.ref);  // what it gained was added above, if it moved
        Iface& f = of(s);
        observe_rtt(s, f, true);
        observe_srtt(row_of(s), f);
        if (m.pods.enabled && !pod_idle_done.count(flow_id(s.ref)))
            m.count_pod(s, enriched(s, m.row), nullptr, true, frame.now_ns);
    }
    const ReportStats& st = frame.report.stats;
    if (m.exports)
        for (const auto& [name, n] : m.exports->entries()) m.errors[name].pending = n;

    // Everything at once: a scrape sees this report whole or not at all.
    const std::lock_guard<std::mutex> g(m.reg->mutex);
    for (auto& [name, f] : m.ifaces) {
        for (std::size_t i = 0; i < kStates.size(); ++i)
            f.state[i]->Set(static_cast<double>(f.live[i]));
        if (f.n_opened) f.opened->Increment(static_cast<double>(f.n_opened));
        if (f.n_fin) f.fin->Increment(static_cast<double>(f.n_fin));
        if (f.n_rst) f.rst->Increment(static_cast<double>(f.n_rst));
        if (f.n_idle) f.idle->Increment(static_cast<double>(f.n_idle));
        if (f.n_displaced) f.displaced->Increment(static_cast<double>(f.n_displaced));
        for (int d = 0; d < 2; ++d) {
            if (f.d_wire[d]) f.wire[d]->Increment(static_cast<double>(f.d_wire[d]));
            if (f.d_payload[d]) f.payload[d]->Increment(static_cast<double>(f.d_payload[d]));
            if (f.d_packets[d]) f.packets[d]->Increment(static_cast<double>(f.d_packets[d]));
        }
        for (const double v : f.rtts) f.rtt->Observe(v);
        for (std::size_t k = 0; k < kHealth.size(); ++k)
            for (int d = 0; d < 2; ++d)
                if (f.d_health[d][k])
                    f.health[k][d]->Increment(static_cast<double>(f.d_health[d][k]));
        for (const double v : f.srtts) f.srtt->Observe(v);
    }
    if (!m.wide_made) m.make_wide(joined(frame.report.ifaces));
    set_total(*m.c_untracked, m.last_untracked, st.untracked);
    set_total(*m.c_evicted, m.last_evicted, st.evicted);
    set_total(*m.c_close_dropped, m.last_close_dropped, st.close_dropped);
    m.g_capacity->Set(static_cast<double>(st.capacity));
    m.g_assured->Set(static_cast<double>(st.assured));
    m.g_unassured->Set(static_cast<double>(st.unassured));
    set_total(*m.c_displaced, m.last_displaced, st.displaced);
    set_total(*m.c_untracked_full, m.last_untracked_full, st.untracked_full);
    set_total(*m.c_untracked_buckets, m.last_untracked_buckets, st.untracked_buckets);
    m.apply_errors();
    if (m.pods.enabled) m.apply_pods(frame.now_ns);
    return true;
}

std::string PrometheusOutput::exposition() const {
    return prometheus::TextSerializer().Serialize(impl_->reg->Collect());
}

int PrometheusOutput::port() const {
    if (!impl_->exposer) return 0;
    const auto ports = impl_->exposer->GetListeningPorts();
    return ports.empty() ? 0 : ports.front();
}

std::unique_ptr<Output> make_prometheus_output(const Options& opts,
                                               const std::vector<std::string>& ifaces,
                                               const ExportTally& exports, const Health& health) {
    PodSeriesLimits pods;
    pods.enabled = opts.prometheus_pods;
    return std::make_unique<PrometheusOutput>(opts.prometheus, ifaces, &exports, opts.node_name,
                                              &health, ExportRowOf{}, pods);
}

}  // namespace tcptrack
