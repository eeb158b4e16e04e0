// SPDX-License-Identifier: MIT
// --prometheus: crafted reports in, the exposition a scrape gets out, value by
// value; the HTTP endpoint on loopback; the one-line error when the port is taken.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "handshake_times.hpp"
#include "output/prometheus.hpp"
#include "report/flow_model.hpp"
#include "sys/clock.hpp"
#include "sys/error.hpp"

namespace tcptrack {
namespace {

using Labels = std::map<std::string, std::string>;

// One series of the text format: name{k="v",...} value.
struct Series {
    std::string name;
    Labels labels;
    double value = 0;
};

std::vector<Series> parse(const std::string& text) {
    std::vector<Series> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        Series s;
        std::size_t i = line.find_first_of("{ ");
        s.name = line.substr(0, i);
        if (line[i] == '{') {
            ++i;
            while (line[i] != '}') {
                const std::size_t eq = line.find('=', i);
                const std::string k = line.substr(i, eq - i);
                const std::size_t end = line.find('"', eq + 2);
                s.labels[k] = line.substr(eq + 2, end - eq - 2);
                i = end + 1;
                if (line[i] == ',') ++i;
            }
            ++i;
        }
        s.value = std::stod(line.substr(line.rfind(' ') + 1));
        out.push_back(s);
    }
    return out;
}

// The value of exactly one series (the test fails if it is absent).
double value(const std::string& text, const std::string& name, const Labels& labels) {
    for (const Series& s : parse(text))
        if (s.name == name && s.labels == labels) return s.value;
    ADD_FAILURE() << "no series " << name << " with those labels in:\n" << text;
    return -1;
}

std::size_t series_count(const std::string& text, const std::string& name) {
    std::size_t n = 0;
    for (const Series& s : parse(text)) n += s.name == name;
    return n;
}

constexpr std::uint32_t kEth0 = 2, kEth1 = 3;

FlowSample sample(std::uint32_t ifindex, std::uint32_t slot, int client, std::uint8_t state) {
    FlowSample s;
    tt_flow_key k{};
    k.family = TT_FAMILY_INET;
    k.addr_a[0] = 10;
    k.addr_b[0] = 11;
    k.port_a = htons(40000 + slot);
    k.port_b = htons(5000 + slot);  // neither well-known: info.client decides
    k.ifindex = ifindex;
    s.key = k;
    s.has_info = true;
    s.info.client = static_cast<std::uint8_t>(client);
    s.info.flags = TT_F_SYN_SEEN;
    s.info.state = state;
    s.ref = SlotRef{slot, 1};
    return s;
}

// Counts by normalised direction: [client->server, server->client] given the client side.
void counts(FlowSample& s, std::uint64_t c2s_bytes, std::uint64_t s2c_bytes, std::uint64_t c2s_pk,
            std::uint64_t s2c_pk, std::uint64_t c2s_pl, std::uint64_t s2c_pl) {
    const int c = s.info.client, r = c ^ 1;
    const Counts before = s.counts();
    s.bytes[c] = c2s_bytes, s.bytes[r] = s2c_bytes;
    s.packets[c] = c2s_pk, s.packets[r] = s2c_pk;
    s.payload[c] = c2s_pl, s.payload[r] = s2c_pl;
    s.set_prev(before);
}

struct Feed {
    std::map<std::uint32_t, std::string> names{{kEth0, "eth0"}, {kEth1, "eth1"}};
    Report report;
    std::uint64_t now_ns = 1000000000;
    std::function<void(const SlotRef&, FlowRow&)> enrich;  // the enrichers' fields (pod_uid)
    Feed() { report.ifaces = {"eth0", "eth1"}; }

    void write(PrometheusOutput& out, const std::vector<FlowSample>& samples, std::size_t live,
               const std::vector<std::uint32_t>& changed, const std::vector<SlotRef>& idle = {}) {
        const auto no_rows = [] {
            return RowSource([](FlowRow&) -> const FlowRow* { return nullptr; });
        };
        const ReportFrame f{report, no_rows, samples, live, changed, idle, now_ns, names, enrich};
        ASSERT_TRUE(out.write(f));
    }
};

const Labels kC2sWire0{{"interface", "eth0"}, {"direction", "client_to_server"}, {"kind", "wire"}};
const Labels kS2cWire0{{"interface", "eth0"}, {"direction", "server_to_client"}, {"kind", "wire"}};
const Labels kC2sPay0{
    {"interface", "eth0"}, {"direction", "client_to_server"}, {"kind", "payload"}};
const Labels kS2cPay0{
    {"interface", "eth0"}, {"direction", "server_to_client"}, {"kind", "payload"}};
const Labels kEth0L{{"interface", "eth0"}}, kEth1L{{"interface", "eth1"}};

Labels with(Labels l, const std::string& k, const std::string& v) {
    l[k] = v;
    return l;
}

TEST(Prometheus, SeriesExistAtZeroBeforeTheFirstReport) {
    PrometheusOutput out("", {"eth0"});
    const std::string t = out.exposition();
    EXPECT_EQ(value(t, "tcptrack_connections_opened_total", kEth0L), 0);
    EXPECT_EQ(value(t, "tcptrack_connections", with(kEth0L, "state", "ESTABLISHED")), 0);
    EXPECT_EQ(series_count(t, "tcptrack_connections"), 6u);  // one per state
    EXPECT_EQ(value(t, "tcptrack_bytes_total", kC2sWire0), 0);
    EXPECT_EQ(value(t, "tcptrack_untracked_connections_total", kEth0L), 0);
    EXPECT_EQ(value(t, "tcptrack_export_errors_total", with(kEth0L, "exporter", "ipfix")), 0);
    EXPECT_EQ(value(t, "tcptrack_export_errors_total", with(kEth0L, "exporter", "prometheus")), 0);
    EXPECT_EQ(value(t, "tcptrack_handshake_rtt_seconds_count", kEth0L), 0);
    EXPECT_EQ(value(t, "tcptrack_connections_closed_total", with(kEth0L, "reason", "displaced")),
              0);
    EXPECT_EQ(value(t, "tcptrack_store_capacity", kEth0L), 0);
    EXPECT_EQ(value(t, "tcptrack_store_flows", with(kEth0L, "assurance", "assured")), 0);
    EXPECT_EQ(value(t, "tcptrack_store_flows", with(kEth0L, "assurance", "unassured")), 0);
    EXPECT_EQ(value(t, "tcptrack_displaced_connections_total", kEth0L), 0);
    EXPECT_EQ(value(t, "tcptrack_untracked_connections_by_reason_total",
                    with(kEth0L, "reason", "store_full")),
              0);
    EXPECT_EQ(value(t, "tcptrack_untracked_connections_by_reason_total",
                    with(kEth0L, "reason", "buckets_full")),
              0);
    EXPECT_EQ(series_count(t, "tcptrack_store_flows"), 2u);
    EXPECT_EQ(series_count(t, "tcptrack_untracked_connections_by_reason_total"), 2u);
    for (const char* n : {"tcptrack_retransmitted_segments_total",
                          "tcptrack_retransmitted_bytes_total", "tcptrack_lost_segments_total",
                          "tcptrack_duplicate_acks_total", "tcptrack_zero_windows_total"}) {
        EXPECT_EQ(value(t, n, with(kEth0L, "direction", "client_to_server")), 0) << n;
        EXPECT_EQ(value(t, n, with(kEth0L, "direction", "server_to_client")), 0) << n;
        EXPECT_EQ(series_count(t, n), 2u) << n;
    }
    EXPECT_EQ(value(t, "tcptrack_rtt_seconds_count", kEth0L), 0);
    EXPECT_EQ(value(t, "tcptrack_rtt_seconds_bucket", with(kEth0L, "le", "1e-05")), 0);
    EXPECT_EQ(value(t, "tcptrack_rtt_seconds_bucket", with(kEth0L, "le", "10")), 0);
}

TEST(Prometheus, CountsEachConnectionOnceAndSumsDeltas) {
    ExportTally exports;
    PrometheusOutput out("", {"eth0", "eth1"}, &exports);
    Feed feed;

    // Report 1: A new and live on eth0 (client is side B, RTT 250 us at the
    // client); B first seen already reset on eth1.
    FlowSample a = sample(kEth0, 1, TT_DIR_BA, TT_ESTABLISHED);
    a.info.flags |= TT_F_LOCAL_CLIENT | TT_F_HS_SEEN;
    set_handshake(a.info, 1000, 1000 + 250000, 0);
    counts(a, 100, 60, 2, 1, 10, 5);
    FlowSample b = sample(kEth1, 2, TT_DIR_AB, TT_RESET);
    b.finished = true;
    counts(b, 40, 44, 1, 1, 0, 0);
    feed.write(out, {a, b}, 1, {0, 1});

    std::string t = out.exposition();
    EXPECT_EQ(value(t, "tcptrack_connections_opened_total", kEth0L), 1);
    EXPECT_EQ(value(t, "tcptrack_connections_opened_total", kEth1L), 1);
    EXPECT_EQ(value(t, "tcptrack_connections_closed_total", with(kEth1L, "reason", "rst")), 1);
    EXPECT_EQ(value(t, "tcptrack_connections_closed_total", with(kEth1L, "reason", "fin")), 0);
    EXPECT_EQ(value(t, "tcptrack_connections", with(kEth0L, "state", "ESTABLISHED")), 1);
    EXPECT_EQ(value(t, "tcptrack_connections", with(kEth1L, "state", "RESET")), 0);  // not live
    EXPECT_EQ(value(t, "tcptrack_bytes_total", kC2sWire0), 100);
    EXPECT_EQ(value(t, "tcptrack_bytes_total", kS2cWire0), 60);
    EXPECT_EQ(value(t, "tcptrack_bytes_total", kC2sPay0), 10);
    EXPECT_EQ(value(t, "tcptrack_bytes_total", kS2cPay0), 5);
    EXPECT_EQ(value(t, "tcptrack_packets_total", with(kEth0L, "direction", "client_to_server")), 2);
    EXPECT_EQ(value(t, "tcptrack_packets_total", with(kEth0L, "direction", "server_to_client")), 1);
    EXPECT_EQ(value(t, "tcptrack_bytes_total",
                    {{"interface", "eth1"}, {"direction", "server_to_client"}, {"kind", "wire"}}),
              44);
    EXPECT_EQ(value(t, "tcptrack_handshake_rtt_seconds_count", kEth0L), 1);
    EXPECT_DOUBLE_EQ(value(t, "tcptrack_handshake_rtt_seconds_sum", kEth0L), 0.00025);
    EXPECT_EQ(value(t, "tcptrack_handshake_rtt_seconds_bucket", with(kEth0L, "le", "0.0001")), 0);
    EXPECT_EQ(value(t, "tcptrack_handshake_rtt_seconds_bucket", with(kEth0L, "le", "0.00025")), 1);
    EXPECT_EQ(value(t, "tcptrack_handshake_rtt_seconds_count", kEth1L), 0);

    // Report 2: A moved (client->server only); C new in SYN_SENT; A unchanged
    // RTT must not be observed again.
    counts(a, 150, 60, 3, 1, 20, 5);
    FlowSample c = sample(kEth0, 3, TT_DIR_AB, TT_SYN_SENT);
    counts(c, 60, 0, 1, 0, 0, 0);
    feed.write(out, {a, c}, 2, {0, 1});
    t = out.exposition();
    EXPECT_EQ(value(t, "tcptrack_connections_opened_total", kEth0L), 2);
    EXPECT_EQ(value(t, "tcptrack_bytes_total", kC2sWire0), 210);  // 100 + 50 + 60
    EXPECT_EQ(value(t, "tcptrack_bytes_total", kS2cWire0), 60);
    EXPECT_EQ(value(t, "tcptrack_bytes_total", kC2sPay0), 20);
    EXPECT_EQ(value(t, "tcptrack_packets_total", with(kEth0L, "direction", "client_to_server")), 4);
    EXPECT_EQ(value(t, "tcptrack_connections", with(kEth0L, "state", "ESTABLISHED")), 1);
    EXPECT_EQ(value(t, "tcptrack_connections", with(kEth0L, "state", "SYN_SENT")), 1);
    EXPECT_EQ(value(t, "tcptrack_handshake_rtt_seconds_count", kEth0L), 1);

    // Report 3: unchanged live samples add nothing.
    feed.write(out, {a, c}, 2, {});
    EXPECT_EQ(out.exposition(), t);

    // Report 4: A finished with FIN (final counts); C established (RTT 1 ms at
    // the server: SYN-ACK -> ACK) and idle: both ended.
    FlowSample a_end = a;
    a_end.finished = true;
    a_end.info.state = TT_CLOSED;
    counts(a_end, 200, 100, 5, 3, 30, 15);
    c.info.state = TT_ESTABLISHED;
    c.info.flags |= TT_F_HS_SEEN;
    set_handshake(c.info, c.info.syn_ns(), 5000, 5000 + 1000000);
    counts(c, 120, 80, 2, 1, 0, 0);
    feed.write(out, {c, a_end}, 1, {0, 1}, {c.ref});
    t = out.exposition();
    EXPECT_EQ(value(t, "tcptrack_connections_opened_total", kEth0L), 2);  // not again
    EXPECT_EQ(value(t, "tcptrack_connections_closed_total", with(kEth0L, "reason", "fin")), 1);
    EXPECT_EQ(value(t, "tcptrack_connections_closed_total", with(kEth0L, "reason", "idle")), 1);
    EXPECT_EQ(value(t, "tcptrack_connections_closed_total", with(kEth0L, "reason", "rst")), 0);
    // Totals: the final counts of A (200/100) plus those of C (120/80).
    EXPECT_EQ(value(t, "tcptrack_bytes_total", kC2sWire0), 320);
    EXPECT_EQ(value(t, "tcptrack_bytes_total", kS2cWire0), 180);
    EXPECT_EQ(value(t, "tcptrack_bytes_total", kC2sPay0), 30);
    EXPECT_EQ(value(t, "tcptrack_bytes_total", kS2cPay0), 15);
    EXPECT_EQ(value(t, "tcptrack_packets_total", with(kEth0L, "direction", "client_to_server")), 7);
    EXPECT_EQ(value(t, "tcptrack_packets_total", with(kEth0L, "direction", "server_to_client")), 4);
    EXPECT_EQ(value(t, "tcptrack_handshake_rtt_seconds_count", kEth0L), 2);
    EXPECT_DOUBLE_EQ(value(t, "tcptrack_handshake_rtt_seconds_sum", kEth0L), 0.00125);
    EXPECT_EQ(value(t, "tcptrack_handshake_rtt_seconds_bucket", with(kEth0L, "le", "+Inf")), 2);

    // Report 5: nothing left; the datapath's cumulative figures are set as they are.
    feed.report.stats.untracked = 5;
    feed.report.stats.evicted = 2;
    feed.report.stats.close_dropped = 1;
    exports.counter("ipfix") = 3;  // counted by IPFIX; read at each report
    feed.write(out, {}, 0, {});
    t = out.exposition();
    const Labels all{{"interface", "eth0,eth1"}};
    EXPECT_EQ(value(t, "tcptrack_connections", with(kEth0L, "state", "ESTABLISHED")), 0);
    EXPECT_EQ(value(t, "tcptrack_connections", with(kEth0L, "state", "SYN_SENT")), 0);
    EXPECT_EQ(value(t, "tcptrack_untracked_connections_total", all), 5);
    EXPECT_EQ(value(t, "tcptrack_evicted_connections_total", all), 2);
    EXPECT_EQ(value(t, "tcptrack_close_events_dropped_total", all), 1);
    EXPECT_EQ(value(t, "tcptrack_export_errors_total", with(all, "exporter", "ipfix")), 3);
    EXPECT_EQ(value(t, "tcptrack_export_errors_total", with(all, "exporter", "prometheus")), 0);
    feed.report.stats.untracked = 7;
    exports.counter("ipfix") = 4;
    t = out.exposition();
    EXPECT_EQ(value(t, "tcptrack_export_errors_total", with(all, "exporter", "ipfix")), 3)
        << "read at a report, not between";
    feed.write(out, {}, 0, {});
    t = out.exposition();
    EXPECT_EQ(value(t, "tcptrack_export_errors_total", with(all, "exporter", "ipfix")), 4);
    exports.counter("ipfix") = 9;
    feed.write(out, {}, 0, {});
    t = out.exposition();
    EXPECT_EQ(value(t, "tcptrack_export_errors_total", with(all, "exporter", "ipfix")), 9);
    EXPECT_EQ(value(t, "tcptrack_untracked_connections_total", all), 7);
    EXPECT_EQ(value(t, "tcptrack_evicted_connections_total", all), 2);
}

// Store pressure: a displaced half-open flow ends as "displaced" (not fin, not
// rst, whatever its state); the store's figures are datapath-wide series.
TEST(Prometheus, StorePressureAndDisplacedConnections) {
    PrometheusOutput out("", {"eth0", "eth1"});
    Feed feed;
    const Labels all{{"interface", "eth0,eth1"}};
    // Report 1: a half-open flow (SYN_RECV, server side) on eth0, live.
    FlowSample h = sample(kEth0, 4, TT_DIR_AB, TT_SYN_RECV);
    counts(h, 60, 60, 1, 1, 0, 0);
    feed.report.stats.capacity = 1024;
    feed.report.stats.tracked = 1000;
    feed.report.stats.assured = 990;
    feed.report.stats.unassured = 10;
    feed.report.stats.untracked = 3;
    feed.report.stats.untracked_full = 2;
    feed.report.stats.untracked_buckets = 1;
    feed.write(out, {h}, 1, {0});
    std::string t = out.exposition();
    EXPECT_EQ(value(t, "tcptrack_connections", with(kEth0L, "state", "SYN_RECV")), 1);
    EXPECT_EQ(value(t, "tcptrack_store_capacity", all), 1024);
    EXPECT_EQ(value(t, "tcptrack_store_flows", with(all, "assurance", "assured")), 990);
    EXPECT_EQ(value(t, "tcptrack_store_flows", with(all, "assurance", "unassured")), 10);
    EXPECT_EQ(value(t, "tcptrack_displaced_connections_total", all), 0);
    EXPECT_EQ(value(t, "tcptrack_untracked_connections_total", all), 3);
    EXPECT_EQ(value(t, "tcptrack_untracked_connections_by_reason_total",
                    with(all, "reason", "store_full")),
              2);
    EXPECT_EQ(value(t, "tcptrack_untracked_connections_by_reason_total",
                    with(all, "reason", "buckets_full")),
              1);

    // Report 2: it was displaced (final, still SYN_RECV), and a displaced
    // one-way flow reset by its peer before was too (state RESET: displaced
    // wins); a FIN-closed one beside them stays "fin".
    FlowSample h_end = h;
    h_end.finished = true;
    h_end.info.flags |= TT_F_DISPLACED;
    counts(h_end, 60, 120, 1, 2, 0, 0);
    FlowSample r = sample(kEth1, 5, TT_DIR_AB, TT_RESET);
    r.finished = true;
    r.info.flags |= TT_F_DISPLACED;
    counts(r, 40, 0, 1, 0, 0, 0);
    FlowSample f = sample(kEth0, 6, TT_DIR_AB, TT_CLOSED);
    f.finished = true;
    counts(f, 100, 100, 2, 2, 10, 10);
    feed.report.stats.tracked = 1024;
    feed.report.stats.assured = 1000;
    feed.report.stats.unassured = 24;
    feed.report.stats.displaced = 2;
    feed.report.stats.untracked = 10;
    feed.report.stats.untracked_full = 9;
    feed.write(out, {h_end, r, f}, 0, {0, 1, 2});
    t = out.exposition();
    EXPECT_EQ(value(t, "tcptrack_connections_closed_total", with(kEth0L, "reason", "displaced")),
              1);
    EXPECT_EQ(value(t, "tcptrack_connections_closed_total", with(kEth1L, "reason", "displaced")),
              1);
    EXPECT_EQ(value(t, "tcptrack_connections_closed_total", with(kEth0L, "reason", "fin")), 1);
    EXPECT_EQ(value(t, "tcptrack_connections_closed_total", with(kEth1L, "reason", "rst")), 0);
    EXPECT_EQ(value(t, "tcptrack_connections_closed_total", with(kEth0L, "reason", "idle")), 0);
    EXPECT_EQ(value(t, "tcptrack_connections_opened_total", kEth0L), 2);  // h once, f
    EXPECT_EQ(value(t, "tcptrack_connections_opened_total", kEth1L), 1);
    EXPECT_EQ(value(t, "tcptrack_connections", with(kEth0L, "state", "SYN_RECV")), 0);
    EXPECT_EQ(value(t, "tcptrack_bytes_total", kS2cWire0), 120 + 100);
    EXPECT_EQ(value(t, "tcptrack_store_flows", with(all, "assurance", "assured")), 1000);
    EXPECT_EQ(value(t, "tcptrack_store_flows", with(all, "assurance", "unassured")), 24);
    EXPECT_EQ(value(t, "tcptrack_displaced_connections_total", all), 2);
    EXPECT_EQ(value(t, "tcptrack_untracked_connections_total", all), 10);
    EXPECT_EQ(value(t, "tcptrack_untracked_connections_by_reason_total",
                    with(all, "reason", "store_full")),
              9);
    EXPECT_EQ(value(t, "tcptrack_untracked_connections_by_reason_total",
                    with(all, "reason", "buckets_full")),
              1);
}

// A connection whose slot was recycled before its close event came (so it
// left the live samples a report early) is still closed once, not opened again.
TEST(Prometheus, LateCloseEventIsNotANewConnection) {
    PrometheusOutput out("", {"eth0"});
    Feed feed;
    FlowSample a = sample(kEth0, 1, TT_DIR_AB, TT_ESTABLISHED);
    counts(a, 10, 10, 1, 1, 0, 0);
    feed.write(out, {a}, 1, {0});
    feed.write(out, {}, 0, {});  // gone from the store
    FlowSample a_end = a;
    a_end.finished = true;
    a_end.info.state = TT_CLOSED;
    a_end.set_prev(Counts{});  // no previous counts known
    feed.write(out, {a_end}, 0, {0});
    const std::string t = out.exposition();
    EXPECT_EQ(value(t, "tcptrack_connections_opened_total", kEth0L), 1);
    EXPECT_EQ(value(t, "tcptrack_connections_closed_total", with(kEth0L, "reason", "fin")), 1);
}

// Connection health: rows with their health figures set here (the exporter's
// row_of), so the counters' exact deltas and the RTT histogram's single
// observation per connection are checked against numbers chosen by hand.
struct HealthRows {
    struct Figures {
        SideHealth fwd, rev;
        std::optional<std::uint64_t> srtt_ns;
    };
    std::map<SlotRef, Figures, bool (*)(const SlotRef&, const SlotRef&)> by_ref{
        [](const SlotRef& a, const SlotRef& b) { return flow_id(a) < flow_id(b); }};
    Figures& operator[](const SlotRef& r) { return by_ref[r]; }
    ExportRowOf row_of() {
        return [this](FlowRow& row, const FlowSample& s, const std::string& iface,
                      std::uint64_t now_ns) {
            fill_row(row, s, iface, now_ns);
            const auto it = by_ref.find(s.ref);
            const Figures f = it != by_ref.end() ? it->second : Figures{};
            row.fwd_health = f.fwd;
            row.rev_health = f.rev;
            row.srtt_ns = f.srtt_ns;
        };
    }
};

const Labels kC2s0{{"interface", "eth0"}, {"direction", "client_to_server"}};
const Labels kS2c0{{"interface", "eth0"}, {"direction", "server_to_client"}};

TEST(Prometheus, HealthCountersAddExactDeltasAndRttOncePerConnectionAtItsEnd) {
    HealthRows h;
    PrometheusOutput out("", {"eth0", "eth1"}, nullptr, "", nullptr, h.row_of());
    Feed feed;
    auto v = [&](const char* name, const Labels& l) { return value(out.exposition(), name, l); };

    // Report 1: A live (client on side B: fwd is still what the client
    // sent); B first seen already closed: its whole figures, its RTT observed.
    FlowSample a = sample(kEth0, 1, TT_DIR_BA, TT_ESTABLISHED);
    counts(a, 1000, 500, 10, 8, 800, 300);
    h[a.ref].fwd.retrans = 3;
    h[a.ref].fwd.retrans_bytes = 4000;
    h[a.ref].fwd.lost_segments = 1;
    h[a.ref].rev.dup_acks = 5;
    h[a.ref].rev.zero_windows = 1;
    h[a.ref].srtt_ns = 2000000;  // 2 ms: not observed while it lives
    FlowSample b = sample(kEth0, 2, TT_DIR_AB, TT_CLOSED);
    b.finished = true;
    counts(b, 300, 300, 3, 3, 100, 100);
    h[b.ref].fwd.retrans = 2;
    h[b.ref].fwd.retrans_bytes = 1448;
    h[b.ref].rev.lost_segments = 4;
    h[b.ref].srtt_ns = 30000000;  // 30 ms
    feed.write(out, {a, b}, 1, {0, 1});
    EXPECT_EQ(v("tcptrack_retransmitted_segments_total", kC2s0), 5);
    EXPECT_EQ(v("tcptrack_retransmitted_segments_total", kS2c0), 0);
    EXPECT_EQ(v("tcptrack_retransmitted_bytes_total", kC2s0), 5448);
    EXPECT_EQ(v("tcptrack_lost_segments_total", kC2s0), 1);
    EXPECT_EQ(v("tcptrack_lost_segments_total", kS2c0), 4);
    EXPECT_EQ(v("tcptrack_duplicate_acks_total", kS2c0), 5);
    EXPECT_EQ(v("tcptrack_duplicate_acks_total", kC2s0), 0);
    EXPECT_EQ(v("tcptrack_zero_windows_total", kS2c0), 1);
    EXPECT_EQ(v("tcptrack_rtt_seconds_count", kEth0L), 1);
    EXPECT_DOUBLE_EQ(v("tcptrack_rtt_seconds_sum", kEth0L), 0.03);
    EXPECT_EQ(v("tcptrack_rtt_seconds_bucket", with(kEth0L, "le", "0.025")), 0);
    EXPECT_EQ(v("tcptrack_rtt_seconds_bucket", with(kEth0L, "le", "0.05")), 1);

    // Report 2: A gained 4 retransmissions and a duplicate ACK; C new on eth1,
    // with no health; E live with some (it will vanish without a final sample).
    counts(a, 2000, 600, 20, 9, 1600, 300);
    h[a.ref].fwd.retrans = 7;
    h[a.ref].fwd.retrans_bytes = 9792;
    h[a.ref].rev.dup_acks = 6;
    h[a.ref].srtt_ns = 3000000;
    FlowSample c = sample(kEth1, 3, TT_DIR_AB, TT_ESTABLISHED);
    counts(c, 100, 100, 2, 2, 0, 0);
    h[c.ref].srtt_ns = 100000;  // 100 us
    FlowSample e = sample(kEth0, 4, TT_DIR_AB, TT_ESTABLISHED);
    counts(e, 100, 100, 2, 2, 0, 0);
    h[e.ref].fwd.retrans = 50;
    feed.write(out, {a, c, e}, 3, {0, 1, 2});
    EXPECT_EQ(v("tcptrack_retransmitted_segments_total", kC2s0), 5 + 4 + 50);
    EXPECT_EQ(v("tcptrack_retransmitted_bytes_total", kC2s0), 5448 + 5792);
    EXPECT_EQ(v("tcptrack_duplicate_acks_total", kS2c0), 6);
    EXPECT_EQ(v("tcptrack_rtt_seconds_count", kEth0L), 1);  // A still lives
    EXPECT_EQ(v("tcptrack_rtt_seconds_count", kEth1L), 0);

    // Report 3: nothing moved: nothing added.
    const std::string before = out.exposition();
    feed.write(out, {a, c, e}, 3, {});
    EXPECT_EQ(out.exposition(), before);

    // Report 4: A ends (one more retransmission, a zero window from the
    // server); C is idle: its last report, having moved (3 lost segments
    // from the server). Each RTT once, at the end. E's slot holds another
    // connection now (generation 3): its figures count from zero.
    FlowSample a_end = a;
    a_end.finished = true;
    a_end.info.state = TT_CLOSED;
    counts(a_end, 2100, 700, 21, 10, 1600, 300);
    h[a_end.ref].fwd.retrans = 8;
    h[a_end.ref].rev.zero_windows = 2;
    h[a_end.ref].srtt_ns = 4000000;  // 4 ms
    counts(c, 200, 200, 3, 3, 0, 0);
    h[c.ref].rev.lost_segments = 3;
    FlowSample e2 = sample(kEth0, 4, TT_DIR_AB, TT_ESTABLISHED);
    e2.ref.gen = 3;
    counts(e2, 100, 100, 2, 2, 0, 0);
    h[e2.ref].fwd.retrans = 2;
    feed.write(out, {c, e2, a_end}, 2, {0, 1, 2}, {c.ref});
    EXPECT_EQ(v("tcptrack_retransmitted_segments_total", kC2s0), 59 + 1 + 2);
    EXPECT_EQ(v("tcptrack_zero_windows_total", kS2c0), 2);
    EXPECT_EQ(v("tcptrack_lost_segments_total", with(kEth1L, "direction", "server_to_client")), 3);
    EXPECT_EQ(v("tcptrack_rtt_seconds_count", kEth0L), 2);
    EXPECT_DOUBLE_EQ(v("tcptrack_rtt_seconds_sum", kEth0L), 0.034);
    EXPECT_EQ(v("tcptrack_rtt_seconds_bucket", with(kEth0L, "le", "0.005")), 1);
    EXPECT_EQ(v("tcptrack_rtt_seconds_count", kEth1L), 1);
    EXPECT_EQ(v("tcptrack_rtt_seconds_bucket", with(kEth1L, "le", "0.0001")), 1);
    EXPECT_EQ(v("tcptrack_rtt_seconds_bucket", with(kEth1L, "le", "5e-05")), 0);

    // Report 5: A's slot again, a new connection seen only at its close with
    // figures of its own: all of them, once; no RTT: nothing observed.
    FlowSample g = sample(kEth0, 1, TT_DIR_AB, TT_RESET);
    g.ref.gen = 3;
    g.finished = true;
    counts(g, 60, 60, 1, 1, 0, 0);
    h[g.ref].rev.dup_acks = 7;
    feed.write(out, {e2, g}, 1, {1});
    EXPECT_EQ(v("tcptrack_duplicate_acks_total", kS2c0), 13);
    EXPECT_EQ(v("tcptrack_rtt_seconds_count", kEth0L), 2);
    // The same figures again (a repeated sample) add nothing.
    feed.write(out, {e2}, 1, {0});
    EXPECT_EQ(v("tcptrack_retransmitted_segments_total", kC2s0), 62);

    // Bounded series: interface and direction only (le for the histogram's
    // buckets, whose count is fixed), never a connection's address or port.
    const std::string t = out.exposition();
    for (const Series& s : parse(t)) {
        if (s.name.find("retransmitted") == std::string::npos &&
            s.name.find("lost_segments") == std::string::npos &&
            s.name.find("duplicate_acks") == std::string::npos &&
            s.name.find("zero_windows") == std::string::npos &&
            s.name.rfind("tcptrack_rtt_seconds", 0) != 0)
            continue;
        for (const auto& [k, val] : s.labels)
            EXPECT_TRUE(k == "interface" || k == "direction" || k == "le") << s.name << " " << k;
    }
    EXPECT_EQ(series_count(t, "tcptrack_retransmitted_segments_total"), 4u);  // 2 ifaces x 2 dirs
    EXPECT_EQ(series_count(t, "tcptrack_rtt_seconds_bucket"), 2u * 20u);      // 19 bounds + Inf
}

std::string http_get(int port, const std::string& path) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0) << std::strerror(errno);
    const std::string req = "GET " + path + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
    EXPECT_EQ(send(fd, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
    std::string resp;
    char buf[4096];
    for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;)
        resp.append(buf, static_cast<std::size_t>(n));
    close(fd);
    return resp;
}

TEST(Prometheus, ServesMetricsOverHttp) {
    PrometheusOutput out("127.0.0.1:0", {"eth0"});
    ASSERT_GT(out.port(), 0);
    Feed feed;
    FlowSample a = sample(kEth0, 1, TT_DIR_AB, TT_ESTABLISHED);
    counts(a, 1234, 56, 1, 1, 0, 0);
    feed.write(out, {a}, 1, {0});
    const std::string resp = http_get(out.port(), "/metrics");
    ASSERT_NE(resp.find("200 OK"), std::string::npos) << resp;
    const std::string body = resp.substr(resp.find("\r\n\r\n") + 4);
    EXPECT_EQ(value(body, "tcptrack_bytes_total", kC2sWire0), 1234);
    EXPECT_EQ(value(body, "tcptrack_connections_opened_total", kEth0L), 1);
}

// GET /healthz: 200 "ok" while reports keep coming and every matching
// interface is watched; 503 with the reasons otherwise. /metrics unchanged.
TEST(Prometheus, HealthzFollowsTheRun) {
    const std::uint64_t t0 = monotonic_ns();
    Health health(60'000'000'000ull, t0);
    PrometheusOutput out("127.0.0.1:0", {"eth0"}, nullptr, "", &health);
    ASSERT_GT(out.port(), 0);
    std::string resp = http_get(out.port(), "/healthz");  // not ready before the first report
    EXPECT_TRUE(resp.starts_with("HTTP/1.1 503 Service Unavailable")) << resp;
    EXPECT_NE(resp.find("starting: no report yet"), std::string::npos) << resp;
    health.update(monotonic_ns(), 0);
    resp = http_get(out.port(), "/healthz");
    EXPECT_TRUE(resp.starts_with("HTTP/1.1 200 OK")) << resp;
    EXPECT_TRUE(resp.ends_with("\r\n\r\nok\n")) << resp;
    health.update(monotonic_ns(), 2);  // two interfaces refused
    resp = http_get(out.port(), "/healthz");
    EXPECT_TRUE(resp.starts_with("HTTP/1.1 503 Service Unavailable")) << resp;
    EXPECT_NE(resp.find("2 matching interface(s) not watched"), std::string::npos) << resp;
    health.update(monotonic_ns(), 0);
    EXPECT_TRUE(http_get(out.port(), "/healthz").starts_with("HTTP/1.1 200 OK"));
    EXPECT_NE(http_get(out.port(), "/metrics").find("tcptrack_connections_opened_total"),
              std::string::npos);
}

TEST(Prometheus, HealthIsStaleWithoutReports) {
    const Health fresh(10'000'000'000ull, 1'000'000'000ull);
    EXPECT_EQ(fresh.problems(5'000'000'000ull), "starting: no report yet\n");
    EXPECT_EQ(fresh.problems(12'000'000'000ull), "starting: no report yet\nno report for 11 s\n");
    Health h(10'000'000'000ull, 0);
    h.update(100'000'000'000ull, 1);
    EXPECT_EQ(h.problems(100'000'000'000ull),
              "1 matching interface(s) not watched (--max-interfaces or an attach error: see "
              "stderr)\n");
}

// A host name listens on its IPv4 address. IPv6 needs a civetweb built with
// it (Debian's is not): then it serves, else it says so in one line.
TEST(Prometheus, ListensOnHostNamesAndSaysWhyNotIpv6) {
    PrometheusOutput named("localhost:0", {"eth0"});
    ASSERT_GT(named.port(), 0);
    const std::string resp = http_get(named.port(), "/metrics");
    EXPECT_NE(resp.find("tcptrack_connections_opened_total"), std::string::npos) << resp;
    try {
        PrometheusOutput v6("[::1]:0", {"eth0"});
        EXPECT_GT(v6.port(), 0);
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()),
                  "cannot serve Prometheus metrics on [::1]:0: IPv6 is not available (this build's "
                  "HTTP server, civetweb, has no IPv6): use an IPv4 address");
    }
}

TEST(Prometheus, PortInUseIsOneLineError) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
    ASSERT_EQ(listen(fd, 1), 0);
    socklen_t len = sizeof(sa);
    getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    const std::string where = "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
    Options o;
    o.prometheus = where;
    try {
        const ExportTally exports;
        const Health health(1, 0);
        make_prometheus_output(o, {"eth0"}, exports, health);
        ADD_FAILURE() << "listening on a taken port did not fail";
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()),
                  "cannot serve Prometheus metrics on " + where + ": address in use");
    }
    close(fd);
}

TEST(Prometheus, NodeNameLabelsEverySeries) {
    PrometheusOutput out("", {"eth0"}, nullptr, "node-7");
    const std::string t = out.exposition();
    std::size_t series = 0;
    std::istringstream in(t);
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line[0] == '#') continue;
        ++series;
        EXPECT_NE(line.find("node=\"node-7\""), std::string::npos) << line;
    }
    EXPECT_GT(series, 20u);
    EXPECT_EQ(value(t, "tcptrack_connections_opened_total", with(kEth0L, "node", "node-7")), 0);
    // Without a name: no node label at all (the other tests' series).
    EXPECT_EQ(PrometheusOutput("", {"eth0"}).exposition().find("node="), std::string::npos);
}

}  // namespace
}  // namespace tcptrack

namespace tcptrack {
namespace {

// --prometheus-pods: rows' owners set here (the frame's enrichers), by slot.
struct PodOwners {
    struct Owner {
        std::string pod_uid;
        bool client = false;  // the owner's socket is the client's end
    };
    std::map<std::uint32_t, Owner> by_slot;
    std::function<void(const SlotRef&, FlowRow&)> enrich() {
        return [this](const SlotRef& r, FlowRow& row) {
            const auto it = by_slot.find(r.slot);
            row.pod_uid = it != by_slot.end() ? it->second.pod_uid : "";
            row.owner_client = it != by_slot.end() && it->second.client;
            if (it != by_slot.end()) row.pid = 1000 + r.slot;
        };
    }
};

const std::string kPodA = "0e9c7f6a-1b2c-4d3e-8f9a-0b1c2d3e4f5a";
const std::string kPodB = "1f0d8e7b-2c3d-4e5f-9a0b-1c2d3e4f5a6b";
const std::string kPodC = "2a1e9f8c-3d4e-4f5a-8b1c-2d3e4f5a6b7c";

Labels pod_l(const std::string& uid, const char* dir = nullptr, const char* kind = nullptr) {
    Labels l{{"pod_uid", uid}};
    if (dir) l["direction"] = dir;
    if (kind) l["kind"] = kind;
    return l;
}

PodSeriesLimits pods_on(std::size_t max_pods = PodSeriesLimits::kMaxPods,
                        std::uint64_t idle_ns = PodSeriesLimits::kIdleNs) {
    PodSeriesLimits p;
    p.enabled = true;
    p.max_pods = max_pods;
    p.idle_ns = idle_ns;
    return p;
}

std::size_t pod_series(const std::string& text, const std::string& uid) {
    std::size_t n = 0;
    for (const Series& s : parse(text))
        n += s.labels.count("pod_uid") && s.labels.at("pod_uid") == uid;
    return n;
}

TEST(PrometheusPods, NoPodSeriesWithoutTheFlag) {
    PodOwners owners;
    owners.by_slot[1] = {kPodA, true};
    PrometheusOutput out("", {"eth0"});
    Feed feed;
    feed.enrich = owners.enrich();
    FlowSample a = sample(kEth0, 1, TT_DIR_AB, TT_ESTABLISHED);
    counts(a, 100, 60, 2, 1, 10, 5);
    feed.write(out, {a}, 1, {0});
    const std::string t = out.exposition();
    EXPECT_EQ(t.find("tcptrack_pod_"), std::string::npos) << t;
    EXPECT_EQ(t.find("pod_uid"), std::string::npos) << t;
    EXPECT_EQ(value(t, "tcptrack_bytes_total", kC2sWire0), 100);  // the rest as ever
    // With the flag and before any pod: only the dropped counter, at 0.
    PrometheusOutput on("", {"eth0"}, nullptr, "", nullptr, {}, pods_on());
    const std::string t0 = on.exposition();
    EXPECT_EQ(value(t0, "tcptrack_pod_connections_dropped_total", {}), 0);
    EXPECT_EQ(t0.find("pod_uid"), std::string::npos) << t0;
}

TEST(PrometheusPods, ExactBytesFromThePodsViewAndConnectionsAcrossReports) {
    PodOwners owners;
    owners.by_slot[1] = {kPodA, true};   // A's client socket
    owners.by_slot[2] = {kPodA, false};  // A's server socket
    owners.by_slot[3] = {kPodB, false};
    // slot 4: no owner (not a pod's)
    PrometheusOutput out("", {"eth0", "eth1"}, nullptr, "node-7", nullptr, {}, pods_on());
    Feed feed;
    feed.enrich = owners.enrich();
    auto v = [&](const Labels& l, const char* name = "tcptrack_pod_bytes_total") {
        return value(out.exposition(), name, with(l, "node", "node-7"));
    };

    // Report 1: a (A client) and b (A server) new; c (B) new; d no pod.
    FlowSample a = sample(kEth0, 1, TT_DIR_BA, TT_ESTABLISHED);
    counts(a, 1000, 600, 2, 1, 900, 500);
    FlowSample b = sample(kEth1, 2, TT_DIR_AB, TT_ESTABLISHED);
    counts(b, 70, 4000, 1, 3, 20, 3900);
    FlowSample c = sample(kEth0, 3, TT_DIR_AB, TT_ESTABLISHED);
    counts(c, 50, 40, 1, 1, 0, 0);
    FlowSample d = sample(kEth0, 4, TT_DIR_AB, TT_ESTABLISHED);
    counts(d, 9999, 9999, 9, 9, 9000, 9000);
    feed.write(out, {a, b, c, d}, 4, {0, 1, 2, 3});
    // A: sent = a's client_to_server + b's server_to_client; received the others.
    EXPECT_EQ(v(pod_l(kPodA, "sent", "wire")), 1000 + 4000);
    EXPECT_EQ(v(pod_l(kPodA, "sent", "payload")), 900 + 3900);
    EXPECT_EQ(v(pod_l(kPodA, "received", "wire")), 600 + 70);
    EXPECT_EQ(v(pod_l(kPodA, "received", "payload")), 500 + 20);
    EXPECT_EQ(v(pod_l(kPodA), "tcptrack_pod_connections_opened_total"), 2);
    EXPECT_EQ(v(pod_l(kPodA), "tcptrack_pod_connections_closed_total"), 0);
    EXPECT_EQ(v(pod_l(kPodB, "sent", "wire")), 40);  // B is the server
    EXPECT_EQ(v(pod_l(kPodB, "received", "wire")), 50);
    EXPECT_EQ(series_count(out.exposition(), "tcptrack_pod_bytes_total"), 8u);  // 2 pods x 4
    EXPECT_EQ(v({}, "tcptrack_pod_connections_dropped_total"), 0);

    // Report 2: a moves; b ends (final sample); c quiet; e (B, found late: its
    // owner known only now, its earlier counts not new) counts whole.
    counts(a, 1500, 700, 3, 2, 1400, 600);
    b.finished = true;
    b.info.state = TT_CLOSED;
    counts(b, 100, 4100, 2, 4, 20, 3900);
    FlowSample e = sample(kEth0, 5, TT_DIR_AB, TT_ESTABLISHED);
    counts(e, 300, 200, 3, 2, 100, 50);
    counts(e, 330, 220, 4, 3, 110, 60);  // prev 300/200: moved by 30/20 in this report
    owners.by_slot[5] = {kPodB, true};
    feed.write(out, {a, c, d, e, b}, 4, {0, 3, 4});
    EXPECT_EQ(v(pod_l(kPodA, "sent", "wire")), 1500 + 4100);
    EXPECT_EQ(v(pod_l(kPodA, "sent", "payload")), 1400 + 3900);
    EXPECT_EQ(v(pod_l(kPodA, "received", "wire")), 700 + 100);
    EXPECT_EQ(v(pod_l(kPodA, "received", "payload")), 600 + 20);
    EXPECT_EQ(v(pod_l(kPodA), "tcptrack_pod_connections_opened_total"), 2);
    EXPECT_EQ(v(pod_l(kPodA), "tcptrack_pod_connections_closed_total"), 1);
    EXPECT_EQ(v(pod_l(kPodB, "sent", "wire")), 40 + 330);
    EXPECT_EQ(v(pod_l(kPodB, "received", "wire")), 50 + 220);
    EXPECT_EQ(v(pod_l(kPodB, "sent", "payload")), 110);
    EXPECT_EQ(v(pod_l(kPodB), "tcptrack_pod_connections_opened_total"), 2);

    // Report 3: c idles out (shown a last time, unchanged); e ends with a RST.
    e.finished = true;
    e.info.state = TT_RESET;
    counts(e, 400, 220, 5, 3, 150, 60);
    feed.write(out, {a, c, d, e}, 3, {3}, {c.ref});
    EXPECT_EQ(v(pod_l(kPodB), "tcptrack_pod_connections_closed_total"), 2);
    EXPECT_EQ(v(pod_l(kPodB, "sent", "wire")), 40 + 400);
    EXPECT_EQ(v(pod_l(kPodB, "sent", "payload")), 150);
    // A final report with nothing new changes nothing.
    feed.write(out, {a, d}, 2, {});
    EXPECT_EQ(v(pod_l(kPodB), "tcptrack_pod_connections_closed_total"), 2);
    EXPECT_EQ(v(pod_l(kPodA, "sent", "wire")), 1500 + 4100);
    // The interfaces' series are unchanged by the pods' (one delta rule for both).
    EXPECT_EQ(value(out.exposition(), "tcptrack_bytes_total", with(kC2sWire0, "node", "node-7")),
              1500 + 50 + 9999 + (400 - 300));
}

TEST(PrometheusPods, CapOnPodsCountsTheRestAsDroppedAndIdlePodsGo) {
    PodOwners owners;
    owners.by_slot[1] = {kPodA, true};
    owners.by_slot[2] = {kPodB, true};
    owners.by_slot[3] = {kPodC, true};
    owners.by_slot[4] = {kPodC, true};
    // At most 2 pods; a pod's series go 10 s after its last connection ended.
    PrometheusOutput out("", {"eth0"}, nullptr, "", nullptr, {}, pods_on(2, 10000000000));
    Feed feed;
    feed.enrich = owners.enrich();
    FlowSample a = sample(kEth0, 1, TT_DIR_AB, TT_ESTABLISHED);
    counts(a, 10, 10, 1, 1, 0, 0);
    FlowSample b = sample(kEth0, 2, TT_DIR_AB, TT_ESTABLISHED);
    counts(b, 20, 20, 1, 1, 0, 0);
    FlowSample c = sample(kEth0, 3, TT_DIR_AB, TT_ESTABLISHED);
    counts(c, 30, 30, 1, 1, 0, 0);
    feed.now_ns = 1000000000;
    feed.write(out, {a, b, c}, 3, {0, 1, 2});
    std::string t = out.exposition();
    EXPECT_EQ(pod_series(t, kPodA), 6u);  // 4 bytes, opened, closed
    EXPECT_EQ(pod_series(t, kPodB), 6u);
    EXPECT_EQ(pod_series(t, kPodC), 0u);  // over the cap
    EXPECT_EQ(value(t, "tcptrack_pod_connections_dropped_total", {}), 1);

    // c moves again: still not counted (once dropped, its whole life); b ends.
    counts(c, 35, 35, 2, 2, 0, 0);
    b.finished = true;
    b.info.state = TT_CLOSED;
    feed.now_ns = 2000000000;
    feed.write(out, {a, c, b}, 2, {1, 2});
    t = out.exposition();
    EXPECT_EQ(pod_series(t, kPodC), 0u);
    EXPECT_EQ(value(t, "tcptrack_pod_connections_dropped_total", {}), 1);
    EXPECT_EQ(value(t, "tcptrack_pod_connections_closed_total", pod_l(kPodB)), 1);

    // 9 s later B's series are still there; a's pod has a live connection.
    feed.now_ns = 11000000000;
    feed.write(out, {a, c}, 2, {});
    EXPECT_EQ(pod_series(out.exposition(), kPodB), 6u);
    // 10 s after: B's go; A's stay (live), however long.
    feed.now_ns = 12000000000;
    feed.write(out, {a, c}, 2, {});
    t = out.exposition();
    EXPECT_EQ(pod_series(t, kPodB), 0u);
    EXPECT_EQ(pod_series(t, kPodA), 6u);
    feed.now_ns = 100000000000;
    feed.write(out, {a, c}, 2, {});
    EXPECT_EQ(pod_series(out.exposition(), kPodA), 6u);

    // Room again: C's next connection gets series (c, dropped, stays out).
    FlowSample d = sample(kEth0, 4, TT_DIR_AB, TT_ESTABLISHED);
    counts(d, 40, 44, 1, 1, 0, 0);
    counts(c, 36, 36, 3, 3, 0, 0);
    feed.write(out, {a, c, d}, 3, {1, 2});
    t = out.exposition();
    EXPECT_EQ(value(t, "tcptrack_pod_bytes_total", pod_l(kPodC, "sent", "wire")), 40);
    EXPECT_EQ(value(t, "tcptrack_pod_connections_opened_total", pod_l(kPodC)), 1);
    EXPECT_EQ(value(t, "tcptrack_pod_connections_dropped_total", {}), 1);
    EXPECT_EQ(series_count(t, "tcptrack_pod_connections_opened_total"), 2u);  // never above 2
}

TEST(PrometheusPods, ASlotsNextConnectionEndsAnUnreportedOne) {
    // A close event lost: the slot's next generation shows the old one ended.
    PodOwners owners;
    owners.by_slot[1] = {kPodA, false};
    PrometheusOutput out("", {"eth0"}, nullptr, "", nullptr, {}, pods_on(8, 1));
    Feed feed;
    feed.enrich = owners.enrich();
    FlowSample a = sample(kEth0, 1, TT_DIR_AB, TT_ESTABLISHED);
    counts(a, 10, 10, 1, 1, 0, 0);
    feed.write(out, {a}, 1, {0});
    FlowSample a2 = sample(kEth0, 1, TT_DIR_AB, TT_ESTABLISHED);
    a2.ref.gen = 3;
    counts(a2, 5, 7, 1, 1, 0, 0);
    feed.now_ns += 1000000000;
    feed.write(out, {a2}, 1, {0});
    const std::string t = out.exposition();
    EXPECT_EQ(value(t, "tcptrack_pod_connections_opened_total", pod_l(kPodA)), 2);
    EXPECT_EQ(value(t, "tcptrack_pod_connections_closed_total", pod_l(kPodA)), 1);
    EXPECT_EQ(value(t, "tcptrack_pod_bytes_total", pod_l(kPodA, "received", "wire")), 15);
}

}  // namespace
}  // namespace tcptrack
