// SPDX-License-Identifier: MIT
// Rendering: human units, endpoints, time stamps, and golden outputs.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "handshake_times.hpp"
#include "output/format.hpp"
#include "output/rows.hpp"
#include "output/table.hpp"

#include "keys.hpp"
#include "make_row.hpp"
#include "render_forms.hpp"

using namespace tcptrack;
using namespace std::chrono;

namespace {

Address v4(const char* s) {
    Address a{};
    EXPECT_EQ(inet_pton(AF_INET, s, a.data()), 1);
    return a;
}

Address v6(const char* s) {
    Address a{};
    EXPECT_EQ(inet_pton(AF_INET6, s, a.data()), 1);
    return a;
}

const system_clock::time_point kTime =
    sys_days{year{2026} / 11 / 24} + hours{2} + minutes{49} + seconds{7} + milliseconds{123};

// Three rows: a live IPv4 flow, a closed IPv6 flow with no SYN/RTT seen, a reset.
Report fixture() {
    Report r;
    r.time = kTime;
    r.ifaces = {"eth0"};

    FlowRow a;
    a.iface = "eth0";
    a.src = v4("10.0.0.1");
    a.sport = 43512;
    a.dst = v4("10.0.0.2");
    a.dport = 80;
    a.state = State::Established;
    a.fwd_bytes = 3522, a.fwd_packets = 12, a.fwd_payload = 2900;
    a.rev_bytes = 1258291, a.rev_packets = 870, a.rev_payload = 1200000;
    a.fwd_bps = 840, a.rev_bps = 1234.4;
    a.duration_ns = 4'520'000'000ull;
    a.rtt_ns = 120'000;
    a.age_ns = 4'000'000'000ull;
    // The client's data retransmitted and timed at this host; the server's side
    // has no RTT sample (its RTT keys are null).
    a.fwd_health.retrans = 12, a.fwd_health.retrans_bytes = 17376;
    a.fwd_health.lost_segments = 3, a.fwd_health.fast_retrans = 2;
    a.fwd_health.egress = true;
    a.fwd_health.rtt_samples = 40, a.fwd_health.rtt_min_ns = 90'000;
    a.fwd_health.srtt_ns = 110'000, a.fwd_health.rtt_max_ns = 150'000;
    a.fwd_health.rtt_last_ns = 100'000;
    a.rev_health.dup_acks = 40, a.rev_health.zero_windows = 1;
    a.rev_health.zero_window_ns = 250'000'000;
    a.srtt_ns = 110'000;

    FlowRow b;
    b.iface = "eth0";
    b.family = Family::V6;
    b.src = v6("fd00::1");
    b.sport = 51000;
    b.dst = v6("fd00::2");
    b.dport = 443;
    b.state = State::Closed;
    b.fwd_bytes = 512, b.fwd_packets = 4;
    b.age_ns = 187'000'000'000ull;
    b.ending = {EndKind::Fin, true};

    FlowRow c;
    c.iface = "eth0";
    c.src = v4("192.168.1.10");
    c.sport = 5555;
    c.dst = v4("192.168.1.20");
    c.dport = 22;
    c.state = State::Reset;
    c.fwd_bytes = 60, c.fwd_packets = 1, c.rev_bytes = 40, c.rev_packets = 1;
    c.fwd_bps = 479.6;
    c.duration_ns = 850'000;
    c.rtt_ns = 1'200'000;
    c.age_ns = 1'000'000;
    c.ending = {EndKind::Rst, false};

    r.rows = {a, b, c};
    r.stats.tracked = 3;
    r.stats.untracked = 2;
    r.stats.evicted = 1;
    r.stats.closed = 2;
    r.stats.capacity = 65536;
    r.stats.assured = 2;
    r.stats.unassured = 1;
    r.stats.displaced = 5;
    r.stats.untracked_full = 1;
    r.stats.untracked_buckets = 1;
    r.stats.rtt.add(120'000);
    r.stats.rtt.add(1'200'000);
    // Row a's health (the builder sums them from the rows).
    r.stats.retrans = 12, r.stats.retrans_bytes = 17376, r.stats.lost_segments = 3;
    r.stats.dup_acks = 40, r.stats.zero_windows = 1;
    return r;
}

Report empty_report() {
    Report r;
    r.time = kTime;
    r.ifaces = {"eth0"};
    r.stats.capacity = 1024;
    return r;
}

std::vector<std::string> lines(const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
}

const std::vector<std::string> kRowKeys = {
    "time", "iface", "family", "src", "sport", "dst", "dport", "state", "fwd_bytes", "fwd_packets",
    "fwd_payload", "rev_bytes", "rev_packets", "rev_payload", "fwd_bps", "rev_bps", "duration_ns",
    "rtt_ns", "srtt_ns",
    // Health each way, as the end-to-end tests read them.
    "fwd_retrans", "fwd_retrans_bytes", "fwd_lost_segments", "fwd_dup_acks", "fwd_fast_retrans",
    "fwd_zero_windows", "fwd_zero_window_ns", "fwd_rtt_samples", "fwd_rtt_min_ns", "fwd_srtt_ns",
    "fwd_rtt_max_ns", "fwd_rtt_last_ns", "rev_retrans", "rev_retrans_bytes", "rev_lost_segments",
    "rev_dup_acks", "rev_fast_retrans", "rev_zero_windows", "rev_zero_window_ns", "rev_rtt_samples",
    "rev_rtt_min_ns", "rev_srtt_ns", "rev_rtt_max_ns", "rev_rtt_last_ns", "pid", "comm", "cgroup",
    "netns", "pod_uid", "container_id", "displaced", "end", "end_by"};

// The health keys of a row with none: no live RTT, zeros, null RTT figures.
const std::string kNoHealthJson =
    R"("srtt_ns":null,"fwd_retrans":0,"fwd_retrans_bytes":0,"fwd_lost_segments":0,"fwd_dup_acks":0,"fwd_fast_retrans":0,"fwd_zero_windows":0,"fwd_zero_window_ns":0,"fwd_rtt_samples":0,"fwd_rtt_min_ns":null,"fwd_srtt_ns":null,"fwd_rtt_max_ns":null,"fwd_rtt_last_ns":null,"rev_retrans":0,"rev_retrans_bytes":0,"rev_lost_segments":0,"rev_dup_acks":0,"rev_fast_retrans":0,"rev_zero_windows":0,"rev_zero_window_ns":0,"rev_rtt_samples":0,"rev_rtt_min_ns":null,"rev_srtt_ns":null,"rev_rtt_max_ns":null,"rev_rtt_last_ns":null)";
const std::string kNoHealthCsv = ",0,0,0,0,0,0,0,0,,,,,0,0,0,0,0,0,0,0,,,,";
// Row a's: the client's side retransmitted and timed, the server's not timed.
const std::string kHealthJsonA =
    R"("srtt_ns":110000,"fwd_retrans":12,"fwd_retrans_bytes":17376,"fwd_lost_segments":3,"fwd_dup_acks":0,"fwd_fast_retrans":2,"fwd_zero_windows":0,"fwd_zero_window_ns":0,"fwd_rtt_samples":40,"fwd_rtt_min_ns":90000,"fwd_srtt_ns":110000,"fwd_rtt_max_ns":150000,"fwd_rtt_last_ns":100000,"rev_retrans":0,"rev_retrans_bytes":0,"rev_lost_segments":0,"rev_dup_acks":40,"rev_fast_retrans":0,"rev_zero_windows":1,"rev_zero_window_ns":250000000,"rev_rtt_samples":0,"rev_rtt_min_ns":null,"rev_srtt_ns":null,"rev_rtt_max_ns":null,"rev_rtt_last_ns":null)";
const std::string kHealthCsvA =
    "110000,12,17376,3,0,2,0,0,40,90000,110000,150000,100000,0,0,0,40,0,1,250000000,0,,,,";

// clock_hms uses local time: pin the zone for the whole test program.
class Render : public ::testing::Test {
   protected:
    static void SetUpTestSuite() {
        setenv("TZ", "UTC", 1);
        tzset();
    }
};

}  // namespace

TEST(HumanUnits, Bytes) {
    EXPECT_EQ(human_bytes(0), "0 B");
    EXPECT_EQ(human_bytes(512), "512 B");
    EXPECT_EQ(human_bytes(1023), "1023 B");
    // Counted in 1024s, so labelled KiB/MiB/GiB/TiB (rates stay SI bits).
    EXPECT_EQ(human_bytes(1024), "1.00 KiB");
    EXPECT_EQ(human_bytes(3522), "3.44 KiB");
    EXPECT_EQ(human_bytes(1024 * 1024 - 1), "1.00 MiB");  // no "1024.00 KiB"
    EXPECT_EQ(human_bytes(1024 * 1024), "1.00 MiB");
    EXPECT_EQ(human_bytes(1258291), "1.20 MiB");
    EXPECT_EQ(human_bytes(2ull << 30), "2.00 GiB");
    EXPECT_EQ(human_bytes(1ull << 40), "1.00 TiB");
    EXPECT_EQ(human_bytes(5000ull << 40), "5000.00 TiB");  // TiB is the last unit
    EXPECT_EQ(human_bytes(UINT64_MAX), "16777216.00 TiB");
}

TEST(HumanUnits, Rate) {
    EXPECT_EQ(human_rate(0), "0 b/s");
    EXPECT_EQ(human_rate(-5), "0 b/s");
    EXPECT_EQ(human_rate(std::nan("")), "0 b/s");
    EXPECT_EQ(human_rate(0.4), "0 b/s");
    EXPECT_EQ(human_rate(840), "840 b/s");
    EXPECT_EQ(human_rate(999), "999 b/s");
    EXPECT_EQ(human_rate(999.6), "1.00 Kb/s");
    EXPECT_EQ(human_rate(1000), "1.00 Kb/s");
    EXPECT_EQ(human_rate(1234), "1.23 Kb/s");
    EXPECT_EQ(human_rate(999'999), "1.00 Mb/s");
    EXPECT_EQ(human_rate(45.6e6), "45.60 Mb/s");
    EXPECT_EQ(human_rate(9.41e9), "9.41 Gb/s");
    EXPECT_EQ(human_rate(2e12), "2000.00 Gb/s");
}

TEST(HumanUnits, Duration) {
    EXPECT_EQ(human_duration(0), "0us");
    EXPECT_EQ(human_duration(850'000), "850us");
    EXPECT_EQ(human_duration(999'999), "999us");
    EXPECT_EQ(human_duration(1'000'000), "1.0ms");
    EXPECT_EQ(human_duration(12'300'000), "12.3ms");
    EXPECT_EQ(human_duration(999'940'000), "999.9ms");
    EXPECT_EQ(human_duration(999'960'000), "1.00s");  // no "1000.0ms"
    EXPECT_EQ(human_duration(1'000'000'000), "1.00s");
    EXPECT_EQ(human_duration(4'520'000'000), "4.52s");
    EXPECT_EQ(human_duration(59'990'000'000), "59.99s");
    EXPECT_EQ(human_duration(59'999'000'000), "1m00s");  // no "60.00s"
    EXPECT_EQ(human_duration(60'000'000'000), "1m00s");
    EXPECT_EQ(human_duration(187'000'000'000), "3m07s");
    EXPECT_EQ(human_duration(3'599'999'999'999), "59m59s");
    EXPECT_EQ(human_duration(3'600'000'000'000), "1h00m");
    EXPECT_EQ(human_duration(7'500'000'000'000), "2h05m");
    EXPECT_EQ(human_duration(100ull * 3'600'000'000'000), "100h00m");
}

TEST(Endpoints, Ipv4) {
    EXPECT_EQ(address(Family::V4, v4("10.0.0.1")), "10.0.0.1");
    EXPECT_EQ(endpoint(Family::V4, v4("10.0.0.1"), 80), "10.0.0.1:80");
    EXPECT_EQ(endpoint(Family::V4, v4("255.255.255.255"), 65535), "255.255.255.255:65535");
    EXPECT_EQ(endpoint(Family::V4, Address{}, 0), "0.0.0.0:0");
}

TEST(Endpoints, Ipv6) {
    EXPECT_EQ(address(Family::V6, v6("fd00::1")), "fd00::1");
    EXPECT_EQ(endpoint(Family::V6, v6("fd00::1"), 443), "[fd00::1]:443");
    EXPECT_EQ(endpoint(Family::V6, v6("::1"), 22), "[::1]:22");
    EXPECT_EQ(endpoint(Family::V6, v6("2001:db8:1:2:3:4:5:6"), 8080),
              "[2001:db8:1:2:3:4:5:6]:8080");
    EXPECT_EQ(endpoint(Family::V6, v6("::ffff:10.0.0.1"), 1), "[::ffff:10.0.0.1]:1");
}

TEST(Names, States) {
    EXPECT_STREQ(state_name(State::SynSent), "SYN_SENT");
    EXPECT_STREQ(state_name(State::SynRecv), "SYN_RECV");
    EXPECT_STREQ(state_name(State::Established), "ESTABLISHED");
    EXPECT_STREQ(state_name(State::Closing), "CLOSING");
    EXPECT_STREQ(state_name(State::Closed), "CLOSED");
    EXPECT_STREQ(state_name(State::Reset), "RESET");
}

TEST_F(Render, Times) {
    EXPECT_EQ(clock_hms(kTime), "02:49:07");
    EXPECT_EQ(rfc3339_utc(kTime), "2026-11-24T02:49:07.123Z");
    EXPECT_EQ(rfc3339_utc(system_clock::time_point{}), "1970-01-01T00:00:00.000Z");
    // Sub-millisecond parts are dropped, not rounded up.
    EXPECT_EQ(rfc3339_utc(kTime + microseconds{999}), "2026-11-24T02:49:07.123Z");
    EXPECT_EQ(rfc3339_utc(system_clock::time_point{} - milliseconds{1}),
              "1969-12-31T23:59:59.999Z");
}

TEST_F(Render, TableGolden) {
    const std::string want =
        "02:49:07  eth0  3 connections  store 3/65536  displaced 5  untracked 2  evicted 1  "
        "close-drops 0  rtt min/avg/max 120us/660us/1.2ms\n"
        "CONNECTION                            STATE              TX  TX PKTS        RX  RX PKTS  "
        "TX RATE    RX RATE    RTT  RETX    AGE\n"
        "10.0.0.1:43512 -> 10.0.0.2:80         ESTABLISHED  3.44 KiB       12  1.20 MiB      870  "
        "840 b/s  1.23 Kb/s  110us  12/0  4.52s\n"
        "[fd00::1]:51000 -> [fd00::2]:443      CLOSED          512 B        4       0 B        0   "
        " 0 b/s      0 b/s      -     -  3m07s\n"
        "192.168.1.10:5555 -> 192.168.1.20:22  RESET            60 B        1      40 B        1  "
        "480 b/s      0 b/s  1.2ms     -  850us\n";
    EXPECT_EQ(render_table(fixture()), want);
}

TEST_F(Render, TableEmpty) {
    EXPECT_EQ(render_table(empty_report()),
              "02:49:07  eth0  0 connections  store 0/1024  displaced 0  untracked 0  evicted 0  "
              "close-drops 0  rtt -\n"
              "  (no TCP connections)\n");
}

TEST_F(Render, TableSingularAndColumnsFollowContent) {
    Report r = fixture();
    r.rows.resize(1);
    r.rows[0].duration_ns.reset();  // AGE falls back to age_ns
    r.stats = ReportStats{};
    r.stats.tracked = r.stats.capacity = 1;
    EXPECT_EQ(render_table(r),
              "02:49:07  eth0  1 connection  store 1/1  displaced 0  untracked 0  evicted 0  "
              "close-drops 0  rtt -\n"
              "CONNECTION                     STATE              TX  TX PKTS        RX  RX PKTS  "
              "TX RATE    RX RATE    RTT  RETX    AGE\n"
              "10.0.0.1:43512 -> 10.0.0.2:80  ESTABLISHED  3.44 KiB       12  1.20 MiB      870  "
              "840 b/s  1.23 Kb/s  110us  12/0  4.00s\n");
}

TEST_F(Render, TableHeaderCountsConnectionsCutByTop) {
    // --top 1 of 3: one row, the header still counts all three.
    Report r = fixture();
    r.rows.resize(1);
    r.stats.connections = 3;
    const std::string out = render_table(r);
    EXPECT_EQ(out.substr(0, out.find('\n')),
              "02:49:07  eth0  3 connections  store 3/65536  displaced 5  untracked 2  evicted 1  "
              "close-drops 0  rtt min/avg/max 120us/660us/1.2ms");
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 3);  // header, column titles, one row
}

TEST_F(Render, TableSeveralInterfacesAddsIfaceColumn) {
    Report r = fixture();
    r.ifaces = {"eth0", "lo"};
    r.rows.resize(1);
    r.rows[0].iface = "lo";
    const auto out = lines(render_table(r));
    ASSERT_EQ(out.size(), 3u);
    EXPECT_EQ(out[0].substr(0, 20), "02:49:07  eth0,lo  1");
    EXPECT_EQ(out[1].substr(0, 17), "IFACE  CONNECTION");
    EXPECT_EQ(out[2].substr(0, 17), "lo     10.0.0.1:4");
}

TEST_F(Render, JsonGolden) {
    const std::string want =
        R"({"time":"2026-11-24T02:49:07.123Z","iface":"eth0","family":"ipv4","src":"10.0.0.1","sport":43512,"dst":"10.0.0.2","dport":80,"state":"ESTABLISHED","fwd_bytes":3522,"fwd_packets":12,"fwd_payload":2900,"rev_bytes":1258291,"rev_packets":870,"rev_payload":1200000,"fwd_bps":840,"rev_bps":1234,"duration_ns":4520000000,"rtt_ns":120000,)" +
        kHealthJsonA +
        R"(,"pid":null,"comm":null,"cgroup":null,"netns":null,"pod_uid":null,"container_id":null,"displaced":false,"end":null,"end_by":null})"
        "\n"
        R"({"time":"2026-11-24T02:49:07.123Z","iface":"eth0","family":"ipv6","src":"fd00::1","sport":51000,"dst":"fd00::2","dport":443,"state":"CLOSED","fwd_bytes":512,"fwd_packets":4,"fwd_payload":0,"rev_bytes":0,"rev_packets":0,"rev_payload":0,"fwd_bps":0,"rev_bps":0,"duration_ns":null,"rtt_ns":null,)" +
        kNoHealthJson +
        R"(,"pid":null,"comm":null,"cgroup":null,"netns":null,"pod_uid":null,"container_id":null,"displaced":false,"end":"fin","end_by":"client"})"
        "\n"
        R"({"time":"2026-11-24T02:49:07.123Z","iface":"eth0","family":"ipv4","src":"192.168.1.10","sport":5555,"dst":"192.168.1.20","dport":22,"state":"RESET","fwd_bytes":60,"fwd_packets":1,"fwd_payload":0,"rev_bytes":40,"rev_packets":1,"rev_payload":0,"fwd_bps":480,"rev_bps":0,"duration_ns":850000,"rtt_ns":1200000,)" +
        kNoHealthJson +
        R"(,"pid":null,"comm":null,"cgroup":null,"netns":null,"pod_uid":null,"container_id":null,"displaced":false,"end":"rst","end_by":"server"})"
        "\n";
    EXPECT_EQ(render_json(fixture()), want);
    EXPECT_EQ(render_json(empty_report()), "");
}

TEST_F(Render, JsonLinesParseWithDocumentedKeysInOrder) {
    const auto out = lines(render_json(fixture()));
    ASSERT_EQ(out.size(), 3u);
    for (const auto& l : out) {
        const auto j = nlohmann::ordered_json::parse(l);
        ASSERT_TRUE(j.is_object());
        std::vector<std::string> keys;
        for (const auto& [k, v] : j.items()) keys.push_back(k);
        EXPECT_EQ(keys, kRowKeys);
        EXPECT_TRUE(j["fwd_bps"].is_number_integer());
        EXPECT_TRUE(j["sport"].is_number_integer());
        EXPECT_TRUE(j["duration_ns"].is_null() || j["duration_ns"].is_number_unsigned());
    }
}

TEST_F(Render, JsonHugeCountersAndBadIfaceBytes) {
    Report r = fixture();
    r.rows.resize(1);
    r.rows[0].fwd_bytes = UINT64_MAX;
    r.rows[0].iface = std::string("e\xff", 2);  // not UTF-8: must not throw
    const auto j = nlohmann::json::parse(render_json(r));
    EXPECT_EQ(j["fwd_bytes"].get<std::uint64_t>(), UINT64_MAX);
}

// Every number at its widest, IPv6 at its longest: a row's fixed part stays
// within rows.cpp's kRowMax (3072), which the writer reserves before each row.
TEST_F(Render, WidestRowFitsTheRowBound) {
    Report r = fixture();
    r.rows.resize(1);
    FlowRow& w = r.rows[0];
    w.family = Family::V6;
    w.src = w.dst = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    w.sport = w.dport = 65535;
    w.fwd_bytes = w.fwd_packets = w.fwd_payload = UINT64_MAX;
    w.rev_bytes = w.rev_packets = w.rev_payload = UINT64_MAX;
    w.fwd_bps = w.rev_bps = 1.8e19;
    w.duration_ns = w.rtt_ns = w.srtt_ns = UINT64_MAX;
    for (SideHealth* h : {&w.fwd_health, &w.rev_health}) {
        h->retrans = h->retrans_bytes = h->lost_segments = h->dup_acks = UINT64_MAX;
        h->fast_retrans = h->zero_windows = h->zero_window_ns = h->rtt_samples = UINT64_MAX;
        h->rtt_min_ns = h->srtt_ns = h->rtt_max_ns = h->rtt_last_ns = UINT64_MAX;
    }
    w.pid = UINT32_MAX;
    w.netns = UINT64_MAX;
    const std::string line = render_json(r);
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["rev_rtt_last_ns"].get<std::uint64_t>(), UINT64_MAX);
    EXPECT_LT(line.size(), 3072u - 512u) << line.size();  // with room to spare
    EXPECT_LT(render_csv(r, false).size(), line.size());
}

// The health keys: numbers each way, the RTT figures null without a sample.
TEST_F(Render, HealthKeysEachWayWithNullRtts) {
    const auto out = lines(render_json(fixture()));
    ASSERT_EQ(out.size(), 3u);
    const auto a = nlohmann::json::parse(out[0]), b = nlohmann::json::parse(out[1]);
    EXPECT_EQ(a["srtt_ns"], 110000);
    EXPECT_EQ(a["fwd_retrans"], 12);
    EXPECT_EQ(a["fwd_rtt_samples"], 40);
    EXPECT_EQ(a["fwd_rtt_min_ns"], 90000);
    EXPECT_EQ(a["rev_zero_window_ns"], 250000000);
    for (const char* k : {"rev_rtt_min_ns", "rev_srtt_ns", "rev_rtt_max_ns", "rev_rtt_last_ns"})
        EXPECT_TRUE(a[k].is_null()) << k;
    EXPECT_TRUE(b["srtt_ns"].is_null());
    EXPECT_EQ(b["rev_rtt_samples"], 0);
    EXPECT_EQ(b["fwd_retrans_bytes"], 0);
    // An RTT sample of 0 us (a LAN's) is still a figure, not null.
    Report r = fixture();
    r.rows.resize(1);
    r.rows[0].rev_health.rtt_samples = 1;
    const auto z = nlohmann::json::parse(render_json(r));
    EXPECT_EQ(z["rev_srtt_ns"], 0);
    EXPECT_EQ(z["rev_rtt_max_ns"], 0);
}

// RTT: the live smoothed one, else the handshake's; RETX: client/server segments.
TEST_F(Render, TableRttAndRetxCells) {
    Report r = fixture();
    r.rows.resize(1);
    FlowRow& a = r.rows[0];
    const auto cells = [&] {
        const std::string row = lines(render_table(r))[2];
        // "... 1.23 Kb/s  <RTT>  <RETX>  4.52s"
        std::istringstream in(row.substr(row.find("Kb/s") + 4));
        std::string rtt, retx;
        in >> rtt >> retx;
        return rtt + " " + retx;
    };
    EXPECT_EQ(cells(), "110us 12/0");
    a.fwd_health.retrans = 0;
    a.rev_health.retrans = 7;
    EXPECT_EQ(cells(), "110us 0/7");
    a.rev_health.retrans = 0;
    a.srtt_ns.reset();  // no live sample yet: the handshake's
    EXPECT_EQ(cells(), "120us -");
    a.rtt_ns.reset();
    EXPECT_EQ(cells(), "- -");
    a.srtt_ns = 25'300'000;
    a.fwd_health.retrans = 1234;
    a.rev_health.retrans = 5;
    EXPECT_EQ(cells(), "25.3ms 1234/5");
}

TEST_F(Render, SummaryRecord) {
    EXPECT_EQ(
        render_json_summary(fixture()),
        R"({"type":"summary","time":"2026-11-24T02:49:07.123Z","ifaces":["eth0"],"connections":3,"tracked":3,"untracked":2,"untracked_segments":0,"evicted":1,"close_dropped":0,"close_lost":0,"closed":2,"rtt_min_ns":120000,"rtt_avg_ns":660000,"rtt_max_ns":1200000,"retrans":12,"retrans_bytes":17376,"lost_segments":3,"dup_acks":40,"zero_windows":1,"capacity":65536,"assured":2,"unassured":1,"displaced":5,"untracked_full":1,"untracked_buckets":1})"
        "\n");
    Report e = empty_report();
    e.ifaces = {"eth0", "lo"};
    e.stats.close_dropped = 7;
    e.stats.close_lost = 1;
    EXPECT_EQ(
        render_json_summary(e),
        R"({"type":"summary","time":"2026-11-24T02:49:07.123Z","ifaces":["eth0","lo"],"connections":0,"tracked":0,"untracked":0,"untracked_segments":0,"evicted":0,"close_dropped":7,"close_lost":1,"closed":0,"rtt_min_ns":null,"rtt_avg_ns":null,"rtt_max_ns":null,"retrans":0,"retrans_bytes":0,"lost_segments":0,"dup_acks":0,"zero_windows":0,"capacity":1024,"assured":0,"unassured":0,"displaced":0,"untracked_full":0,"untracked_buckets":0})"
        "\n");
}

TEST_F(Render, CsvGolden) {
    const std::string header =
        "time,iface,family,src,sport,dst,dport,state,fwd_bytes,fwd_packets,fwd_payload,rev_bytes,"
        "rev_packets,rev_payload,fwd_bps,rev_bps,duration_ns,rtt_ns,srtt_ns,fwd_retrans,"
        "fwd_retrans_bytes,fwd_lost_segments,fwd_dup_acks,fwd_fast_retrans,fwd_zero_windows,"
        "fwd_zero_window_ns,fwd_rtt_samples,fwd_rtt_min_ns,fwd_srtt_ns,fwd_rtt_max_ns,"
        "fwd_rtt_last_ns,rev_retrans,rev_retrans_bytes,rev_lost_segments,rev_dup_acks,"
        "rev_fast_retrans,rev_zero_windows,rev_zero_window_ns,rev_rtt_samples,rev_rtt_min_ns,"
        "rev_srtt_ns,rev_rtt_max_ns,rev_rtt_last_ns,pid,comm,cgroup,netns,pod_uid,"
        "container_id,displaced,end,end_by\n";
    const std::string rows =
        "2026-11-24T02:49:07.123Z,eth0,ipv4,10.0.0.1,43512,10.0.0.2,80,ESTABLISHED,3522,12,2900,"
        "1258291,870,1200000,840,1234,4520000000,120000," +
        kHealthCsvA +
        ",,,,,,,false,,\n"
        "2026-11-24T02:49:07.123Z,eth0,ipv6,fd00::1,51000,fd00::2,443,CLOSED,512,4,0,0,0,0,0,0,,," +
        kNoHealthCsv +
        ",,,,,,,false,fin,client\n"
        "2026-11-24T02:49:07.123Z,eth0,ipv4,192.168.1.10,5555,192.168.1.20,22,RESET,60,1,0,40,1,0,"
        "480,0,850000,1200000," +
        kNoHealthCsv + ",,,,,,,false,rst,server\n";
    EXPECT_EQ(render_csv(fixture(), true), header + rows);
    EXPECT_EQ(render_csv(fixture(), false), rows);
    EXPECT_EQ(render_csv(empty_report(), true), header);
    EXPECT_EQ(render_csv(empty_report(), false), "");

    // Header keys are the JSON keys, in order.
    std::vector<std::string> keys;
    std::istringstream in(header.substr(0, header.size() - 1));
    for (std::string k; std::getline(in, k, ',');) keys.push_back(k);
    EXPECT_EQ(keys, kRowKeys);
}

TEST_F(Render, CsvQuotesOddInterfaceNames) {
    Report r = fixture();
    r.rows.resize(1);
    r.rows[0].iface = "a,\"b";
    const std::string want = "2026-11-24T02:49:07.123Z,\"a,\"\"b\",ipv4,";
    EXPECT_EQ(render_csv(r, false).substr(0, want.size()), want);
}

// Process attribution: rows a and c have a local owner, b has none.
Report with_owners() {
    Report r = fixture();
    r.show_process = true;
    r.rows[0].pid = 4242;
    r.rows[0].comm = "curl";
    r.rows[0].cgroup = "/user.slice/session-3.scope";
    r.rows[0].netns = 4026531840;
    r.rows[0].pod_uid = "5f1c4a4e-3c1b-4d2a-9b8e-0a1b2c3d4e5f";
    r.rows[0].container_id = std::string(64, 'c');
    r.rows[2].pid = 7;
    r.rows[2].comm = "ssh,\"d\"";  // a comm is any 15 bytes
    return r;
}

TEST_F(Render, JsonOwnerKeys) {
    const auto out = lines(render_json(with_owners()));
    ASSERT_EQ(out.size(), 3u);
    EXPECT_NE(
        out[0].find(
            R"("rtt_ns":120000,)" + kHealthJsonA +
            R"(,"pid":4242,"comm":"curl","cgroup":"/user.slice/session-3.scope","netns":4026531840,"pod_uid":"5f1c4a4e-3c1b-4d2a-9b8e-0a1b2c3d4e5f","container_id":")" +
            std::string(64, 'c') + R"(","displaced":false,"end":null,"end_by":null})"),
        std::string::npos)
        << out[0];
    EXPECT_NE(
        out[1].find(
            R"("pid":null,"comm":null,"cgroup":null,"netns":null,"pod_uid":null,"container_id":null,"displaced":false,"end":"fin","end_by":"client"})"),
        std::string::npos)
        << out[1];
    // No cgroup known: null; odd bytes escaped as nlohmann does.
    EXPECT_NE(
        out[2].find(
            R"("pid":7,"comm":"ssh,\"d\"","cgroup":null,"netns":null,"pod_uid":null,"container_id":null,"displaced":false,"end":"rst","end_by":"server"})"),
        std::string::npos)
        << out[2];
    for (const auto& l : out) {
        std::vector<std::string> keys;
        const auto j = nlohmann::ordered_json::parse(l);
        for (const auto& [k, v] : j.items()) keys.push_back(k);
        EXPECT_EQ(keys, kRowKeys);
    }
    Report r = with_owners();
    r.rows.resize(1);
    r.rows[0].comm = std::string("x\xff\x01", 3);
    EXPECT_EQ(
        nlohmann::json::parse(render_json(r))["comm"],
        nlohmann::json::parse(nlohmann::json(r.rows[0].comm)
                                  .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
}

TEST_F(Render, CsvOwnerColumns) {
    const auto out = lines(render_csv(with_owners(), false));
    ASSERT_EQ(out.size(), 3u);
    EXPECT_TRUE(out[0].ends_with(",120000," + kHealthCsvA +
                                 ",4242,curl,/user.slice/session-3.scope,4026531840,"
                                 "5f1c4a4e-3c1b-4d2a-9b8e-0a1b2c3d4e5f," +
                                 std::string(64, 'c') + ",false,,"))
        << out[0];
    EXPECT_TRUE(out[1].ends_with(",0,0,,," + kNoHealthCsv + ",,,,,,,false,fin,client")) << out[1];
    EXPECT_TRUE(
        out[2].ends_with(",1200000," + kNoHealthCsv + ",7,\"ssh,\"\"d\"\"\",,,,,false,rst,server"))
        << out[2];
}

TEST_F(Render, TableProcessColumn) {
    const auto out = lines(render_table(with_owners()));
    ASSERT_EQ(out.size(), 5u);
    // The last column, left-aligned, after AGE.
    EXPECT_TRUE(out[1].ends_with("    AGE  PROCESS")) << out[1];
    EXPECT_TRUE(out[2].ends_with(" 4.52s  curl/4242")) << out[2];
    EXPECT_TRUE(out[3].ends_with(" 3m07s  -")) << out[3];
    EXPECT_TRUE(out[4].ends_with(" 850us  ssh,\"d\"/7")) << out[4];
    // --no-process: no column at all.
    Report r = with_owners();
    r.show_process = false;
    EXPECT_EQ(render_table(r).find("PROCESS"), std::string::npos);
    EXPECT_TRUE(lines(render_table(r))[1].ends_with("  AGE"));
    // Control bytes never reach the terminal.
    r = with_owners();
    r.rows[0].comm = "a\x1b[2Jb";
    EXPECT_NE(render_table(r).find("a?[2Jb/4242"), std::string::npos);
}

TEST_F(Render, TableSummaryLine) {
    EXPECT_EQ(render_table_summary(fixture(), 3),
              "summary: connections 3  store 3/65536 (assured 2, unassured 1)  displaced 5  "
              "untracked 2 (full 1, buckets 1)  evicted 1  close-drops 0  closed 2  "
              "retrans 12 (16.97 KiB)  lost 3  dup-acks 40  zero-windows 1  "
              "rtt min/avg/max 120us/660us/1.2ms\n");
    Report e = empty_report();
    e.stats.close_dropped = 7;
    e.stats.tracked = 5;
    e.stats.assured = 4;
    e.stats.unassured = 1;
    EXPECT_EQ(render_table_summary(e, 0),
              "summary: connections 0  store 5/1024 (assured 4, unassured 1)  displaced 0  "
              "untracked 0 (full 0, buckets 0)  evicted 0  close-drops 7  closed 0  "
              "retrans 0 (0 B)  lost 0  dup-acks 0  zero-windows 0  rtt min/avg/max -\n");
}

// Exporters' errors: in the tally's order, only once an exporter registered.
TEST_F(Render, SummariesListExportErrors) {
    ExportTally exports;
    Report e = empty_report();
    EXPECT_EQ(render_table_summary(e, 0, &exports), render_table_summary(e, 0));
    EXPECT_EQ(render_json_summary(e, 0, &exports), render_json_summary(e, 0));
    exports.counter("ipfix") = 3;
    exports.counter("other");
    EXPECT_EQ(render_table_summary(e, 0, &exports),
              "summary: connections 0  store 0/1024 (assured 0, unassured 0)  displaced 0  "
              "untracked 0 (full 0, buckets 0)  evicted 0  close-drops 0  closed 0  "
              "retrans 0 (0 B)  lost 0  dup-acks 0  zero-windows 0  "
              "rtt min/avg/max -  ipfix-errors 3  other-errors 0\n");
    const std::string record = render_json_summary(e, 0, &exports);
    EXPECT_EQ(record.substr(record.find("\"untracked_buckets\"")),
              R"("untracked_buckets":0,"export_errors":{"ipfix":3,"other":0}})"
              "\n");
}

TEST_F(Render, ClosedLines) {
    EXPECT_EQ(render_closed_lines(fixture()),
              "[fd00::1]:51000 -> [fd00::2]:443  -  512 B / 0 B  rtt -  CLOSED\n"
              "192.168.1.10:5555 -> 192.168.1.20:22  850us  60 B / 40 B  rtt 1.2ms  RESET\n");
    EXPECT_EQ(render_closed_lines(empty_report()), "");
}

TEST_F(Render, DisplacedRowEverywhere) {
    // A half-open flow displaced by a new connection: its last row keeps its state.
    Report r = fixture();
    r.rows.resize(1);
    r.rows[0].state = State::SynRecv;
    r.rows[0].displaced = true;
    r.rows[0].rtt_ns.reset();
    EXPECT_EQ(render_closed_lines(r),
              "10.0.0.1:43512 -> 10.0.0.2:80  4.52s  3.44 KiB / 1.20 MiB  rtt -  SYN_RECV "
              "displaced\n");
    const std::string json = render_json(r);
    EXPECT_NE(json.find(R"("state":"SYN_RECV",)"), std::string::npos) << json;
    EXPECT_TRUE(json.ends_with(
        R"("cgroup":null,"netns":null,"pod_uid":null,"container_id":null,"displaced":true,"end":null,"end_by":null})"
        "\n"))
        << json;
    EXPECT_TRUE(nlohmann::json::parse(json)["displaced"].get<bool>());
    EXPECT_TRUE(
        render_csv(r, false).ends_with(",SYN_RECV,3522,12,2900,1258291,870,1200000,840,"
                                       "1234,4520000000,," +
                                       kHealthCsvA + ",,,,,,,true,,\n"))
        << render_csv(r, false);
    // The table shows its state as is (the header counts the displaced ones).
    EXPECT_NE(lines(render_table(r))[2].find("  SYN_RECV  "), std::string::npos);
}

TEST_F(Render, ClosedLinesSkipLiveStates) {
    Report r = fixture();
    for (State s : {State::SynSent, State::SynRecv, State::Established, State::Closing}) {
        r.rows[1].state = s;
        r.rows[2].state = s;
        EXPECT_EQ(render_closed_lines(r), "") << state_name(s);
    }
}

TEST_F(Render, JsonEscapesIfaceLikeNlohmann) {
    Report r = fixture();
    r.rows.resize(1);
    for (const std::string& name : {std::string("a\"b\\c"), std::string("t\x01\n"),
                                    std::string("e\xff", 2), std::string("ä")}) {
        r.rows[0].iface = name;
        const std::string want =
            nlohmann::json(name).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        const std::string out = render_json(r);
        EXPECT_NE(out.find(",\"iface\":" + want + ",\"family\""), std::string::npos) << out;
    }
}

TEST_F(Render, StreamingMatchesStringAndStopsWhenSinkFails) {
    Report r = fixture();
    for (int i = 0; i < 3000; ++i)  // several 64 KiB chunks
        r.rows.push_back(r.rows[i % 3]);
    r.rows[100].iface = "lo";
    std::string json, csv;
    std::size_t chunks = 0;
    EXPECT_TRUE(render_json(r, [&](std::string_view s) {
        ++chunks, json.append(s);
        return true;
    }));
    EXPECT_TRUE(render_csv(r, true, [&](std::string_view s) {
        csv.append(s);
        return true;
    }));
    EXPECT_GT(chunks, 3u);
    EXPECT_EQ(json, render_json(r));
    EXPECT_EQ(csv, render_csv(r, true));
    std::size_t calls = 0;
    EXPECT_FALSE(render_json(r, [&](std::string_view) { return ++calls, false; }));
    EXPECT_EQ(calls, 1u);
}

// Rows by index over a report's rows (what ReportBuilder::table() gives the outputs).
RowTable table_of(const Report& r) {
    return {r.rows.size(), [&rows = r.rows](std::size_t i, FlowRow&) { return &rows[i]; }};
}

// `n` rows of every kind the fixtures hold (IPv4/IPv6, owners, long texts
// that grow the buffer mid-row, odd interface names), each a little different.
Report many_rows(std::size_t n) {
    const Report base = fixture(), owners = with_owners();
    Report r = base;
    r.rows.clear();
    for (std::size_t i = 0; i < n; ++i) {
        const Report& from = i % 2 ? owners : base;
        FlowRow row = from.rows[i % from.rows.size()];
        row.fwd_bytes += i;
        row.sport = static_cast<std::uint16_t>(i);
        if (i % 7 == 3) row.cgroup = std::string(5000 + i % 300, 'g');  // > kRowMax
        if (i % 11 == 5) row.iface = "e,\"x\xff";
        r.rows.push_back(std::move(row));
    }
    return r;
}

std::string json_of(const Report& r, const RenderOptions& o) {
    std::string out;
    EXPECT_TRUE(render_json(
        r.time, table_of(r), [&](std::string_view s) { return out.append(s), true; }, o));
    return out;
}
std::string csv_of(const Report& r, bool header, const RenderOptions& o) {
    std::string out;
    EXPECT_TRUE(render_csv(
        r.time, table_of(r), header, [&](std::string_view s) { return out.append(s), true; }, o));
    return out;
}

TEST_F(Render, ParallelMatchesSerialByteForByte) {
    const Report r = many_rows(2500);
    const std::string json = render_json(r), csv = render_csv(r, true), rows = render_csv(r, false);
    for (const unsigned threads : {1u, 2u, 3u, 8u})
        for (const std::size_t chunk : {std::size_t{1}, std::size_t{7}, std::size_t{1024}}) {
            const RenderOptions o{threads, chunk};
            EXPECT_EQ(json_of(r, o), json) << threads << " threads, chunks of " << chunk;
            EXPECT_EQ(csv_of(r, true, o), csv) << threads << " threads, chunks of " << chunk;
            EXPECT_EQ(csv_of(r, false, o), rows) << threads << " threads, chunks of " << chunk;
        }
}

TEST_F(Render, ParallelChunkBoundaries) {
    constexpr std::size_t kRows = 16;  // rows per chunk
    for (const std::size_t n : {std::size_t{0}, std::size_t{1}, kRows - 1, kRows, kRows + 1,
                                2 * kRows - 1, 2 * kRows, 9 * kRows + 1}) {
        const Report r = many_rows(n);
        for (const unsigned threads : {2u, 4u}) {
            const RenderOptions o{threads, kRows};
            EXPECT_EQ(json_of(r, o), render_json(r)) << n << " rows, " << threads << " threads";
            EXPECT_EQ(csv_of(r, true, o), render_csv(r, true)) << n << " rows";
            EXPECT_EQ(csv_of(r, false, o), render_csv(r, false)) << n << " rows";
        }
    }
}

TEST_F(Render, ParallelStopsWhenSinkFails) {
    const Report r = many_rows(5000);
    for (const unsigned threads : {1u, 4u}) {
        std::size_t calls = 0;
        EXPECT_FALSE(render_json(
            r.time, table_of(r), [&](std::string_view) { return ++calls, false; },
            RenderOptions{threads, 64}));
        EXPECT_EQ(calls, 1u);
        calls = 0;  // the header is the first write
        EXPECT_FALSE(render_csv(
            r.time, table_of(r), true, [&](std::string_view) { return ++calls < 3; },
            RenderOptions{threads, 64}));
        EXPECT_EQ(calls, 3u);
    }
}

// ------------------------------------------------ ReportBuilder (streamed rows)

#include <algorithm>
#include <map>
#include <random>
#include <tuple>

#include "report/report_builder.hpp"

namespace {

constexpr std::uint64_t kSec = 1'000'000'000ull;

// An established IPv4 flow opened by side A, with a handshake RTT of 100us.
FlowSample flow(std::uint32_t a, std::uint16_t pa, std::uint32_t b, std::uint16_t pb,
                std::uint64_t bytes_ab, std::uint64_t bytes_ba) {
    FlowSample s{};
    const std::uint32_t na = htonl(a), nb = htonl(b);
    tt_flow_key k{};
    std::memcpy(k.addr_a, &na, 4);
    std::memcpy(k.addr_b, &nb, 4);
    k.port_a = htons(pa);
    k.port_b = htons(pb);
    k.ifindex = 1;
    k.family = TT_FAMILY_INET;
    s.key = k;
    s.has_info = true;
    s.info.first_ns = 1 * kSec;
    s.info.state = TT_ESTABLISHED;
    s.info.client = TT_DIR_AB;
    s.info.flags = TT_F_SYN_SEEN | TT_F_HS_SEEN | TT_F_LOCAL_CLIENT;
    set_handshake(s.info, 1 * kSec, 1 * kSec + 100'000, 1 * kSec + 150'000);
    s.bytes[0] = bytes_ab, s.bytes[1] = bytes_ba;
    s.packets[0] = bytes_ab / 100 + 1, s.packets[1] = bytes_ba / 100 + 1;
    return s;
}

// Key order, so duplicate keys are neighbours.
void sort_samples(std::vector<FlowSample>& v) {
    std::sort(v.begin(), v.end(), [](const FlowSample& a, const FlowSample& b) {
        const tt_flow_key ka = a.key, kb = b.key;
        return std::memcmp(&ka, &kb, sizeof(ka)) < 0;
    });
}

std::vector<FlowRow> all_rows(const ReportBuilder& b) {
    std::vector<FlowRow> rows(b.size());
    for (std::size_t i = 0; i < rows.size(); ++i) b.row(i, rows[i]);
    return rows;
}

// Stamps samples the way the collector does between reports: a flow whose
// counters moved (or that finished) gets last_active = now and prev = its bytes
// at the last report; a new one prev = 0; an unchanged one keeps both.
class CollectorSim {
   public:
    void report(std::vector<FlowSample>& cur, std::uint64_t now) {
        std::map<std::vector<std::uint8_t>, Seen> next;
        for (auto& s : cur) {
            const auto id = key_bytes(s.key);
            const auto it = seen_.find(id);
            Counts prev;
            if (it == seen_.end()) {
                s.last_active_ns = now;
            } else if (s.finished || s.bytes[0] != it->second.bytes[0] ||
                       s.bytes[1] != it->second.bytes[1]) {
                prev.bytes[0] = it->second.bytes[0], prev.bytes[1] = it->second.bytes[1];
                s.last_active_ns = now;
            } else {
                prev.bytes[0] = it->second.prev[0], prev.bytes[1] = it->second.prev[1];
                s.last_active_ns = it->second.last_active_ns;
            }
            s.set_prev(prev);
            // Finished flows are shown once; absent ones are gone (a new one next time).
            if (!s.finished)
                next[id] = Seen{
                    {s.bytes[0], s.bytes[1]}, {s.prev_bytes(0), s.prev_bytes(1)}, s.last_active_ns};
        }
        seen_ = std::move(next);
    }

   private:
    struct Seen {
        std::uint64_t bytes[2], prev[2];
        std::uint64_t last_active_ns;
    };
    static std::vector<std::uint8_t> key_bytes(const tt_flow_key& k) {
        const auto* p = reinterpret_cast<const std::uint8_t*>(&k);
        return {p, p + sizeof(k)};
    }
    std::map<std::vector<std::uint8_t>, Seen> seen_;
};

// The rows as the app built them before streaming: a FlowRow per sample, its
// rate from its own delta (only if it moved at this report), then one sort.
std::vector<FlowRow> reference_rows(const std::vector<FlowSample>& samples, std::uint64_t now,
                                    std::uint64_t elapsed) {
    std::vector<FlowRow> rows;
    for (const auto& s : samples) {
        FlowRow r = make_row(s, "eth0", now);
        if (s.last_active_ns == now) {
            const int c = client_side(s);
            const double secs = static_cast<double>(elapsed) / 1e9;
            r.fwd_bps = static_cast<double>(s.bytes[c] - s.prev_bytes(c)) * 8.0 / secs;
            r.rev_bps = static_cast<double>(s.bytes[c ^ 1] - s.prev_bytes(c ^ 1)) * 8.0 / secs;
        }
        rows.push_back(r);
    }
    std::stable_sort(rows.begin(), rows.end(), [](const FlowRow& a, const FlowRow& b) {
        const double ra = a.fwd_bps + a.rev_bps, rb = b.fwd_bps + b.rev_bps;
        if (ra != rb) return ra > rb;
        const auto ba = a.fwd_bytes + a.rev_bytes, bb = b.fwd_bytes + b.rev_bytes;
        if (ba != bb) return ba > bb;
        return std::tie(a.src, a.sport, a.dst, a.dport) < std::tie(b.src, b.sport, b.dst, b.dport);
    });
    return rows;
}

}  // namespace

TEST_F(Render, BuilderOrdersBusiestFirstThenBytesThenEndpoints) {
    const std::map<std::uint32_t, std::string> names{{1, "eth0"}};
    ReportBuilder b(names);
    CollectorSim sim;
    std::vector<FlowSample> v = {
        flow(0x0A000001, 40000, 0x0A000002, 80, 100, 100),  // idle after round 1
        flow(0x0A000001, 40001, 0x0A000002, 80, 100, 100),  // same bytes: by endpoints
        flow(0x0A000001, 40002, 0x0A000002, 80, 5000, 0),   // most bytes, idle later
        flow(0x0A000001, 40003, 0x0A000002, 80, 10, 10),    // moves in round 2
    };
    sim.report(v, 10 * kSec);
    b.build(v, 10 * kSec, 1 * kSec, false);
    EXPECT_EQ(b.size(), 4u);
    EXPECT_EQ(b.stats().closed, 0u);
    EXPECT_EQ(b.stats().rtt.count, 4u);
    EXPECT_EQ(b.stats().rtt.min_ns, 100'000u);
    EXPECT_EQ(all_rows(b)[0].sport, 40002);  // all new: their whole count is this interval's

    for (auto& s : v)
        if (ntohs(s.key.port_a()) == 40003) s.bytes[1] += 1000, s.packets[1] += 1;
    sim.report(v, 12 * kSec);
    b.build(v, 12 * kSec, 2 * kSec, false);
    const auto rows = all_rows(b);
    ASSERT_EQ(rows.size(), 4u);
    EXPECT_EQ(rows[0].sport, 40003);
    EXPECT_DOUBLE_EQ(rows[0].rev_bps, 1000.0 * 8 / 2);
    EXPECT_EQ(rows[1].sport, 40002);
    EXPECT_DOUBLE_EQ(rows[1].fwd_bps, 0.0);
    EXPECT_EQ(rows[2].sport, 40000);
    EXPECT_EQ(rows[3].sport, 40001);
    EXPECT_EQ(rows[3].iface, "eth0");

    // A finished flow is still a row, counted as closed.
    for (auto& s : v)
        if (ntohs(s.key.port_a()) == 40000) s.finished = true;
    sim.report(v, 71 * kSec);
    b.build(v, 71 * kSec, 59 * kSec, false);
    EXPECT_EQ(b.size(), 4u);
    EXPECT_EQ(b.stats().closed, 1u);
}

TEST_F(Render, BuilderClosedOnlyKeepsStatsOfAll) {
    const std::map<std::uint32_t, std::string> names{{1, "eth0"}};
    ReportBuilder b(names);
    std::vector<FlowSample> v = {flow(0x0A000001, 40000, 0x0A000002, 80, 100, 100),
                                 flow(0x0A000001, 40001, 0x0A000002, 80, 200, 100),
                                 flow(0x0A000001, 40002, 0x0A000002, 80, 300, 100)};
    v[1].info.state = TT_RESET, v[1].finished = true;
    v[2].info.state = TT_CLOSED;  // both FINs, last ACK due: shown CLOSING, not yet
    b.build(v, 10 * kSec, 1 * kSec, true);
    ASSERT_EQ(b.size(), 1u);
    EXPECT_EQ(all_rows(b)[0].state, State::Reset);
    EXPECT_EQ(b.stats().closed, 1u);
    EXPECT_EQ(b.stats().rtt.count, 3u);
    Report r = empty_report();
    r.stats = b.stats();
    EXPECT_NE(render_json_summary(r, b.size()).find("\"connections\":1,"), std::string::npos);
}

TEST_F(Render, BuilderClosedOnlyKeepsDisplacedFlowsInTheirState) {
    const std::map<std::uint32_t, std::string> names{{1, "eth0"}};
    ReportBuilder b(names);
    std::vector<FlowSample> v = {flow(0x0A000001, 40000, 0x0A000002, 80, 60, 0),
                                 flow(0x0A000001, 40001, 0x0A000002, 80, 60, 0),
                                 flow(0x0A000001, 40002, 0x0A000002, 80, 60, 0)};
    for (auto& s : v) {  // SYNs only
        s.info.state = TT_SYN_SENT, s.info.flags = TT_F_SYN_SEEN;
        set_handshake(s.info, s.info.syn_ns(), 0, 0);
    }
    v[0].info.flags |= TT_F_DISPLACED, v[0].finished = true;  // displaced: its last row
    v[1].finished = true;                                     // final, not displaced: no row
    v[2].info.flags |= TT_F_DISPLACED;  // not final (never expected): no row either
    b.build(v, 10 * kSec, 1 * kSec, true);
    ASSERT_EQ(b.size(), 1u);
    const FlowRow row = all_rows(b)[0];
    EXPECT_EQ(row.sport, 40000);
    EXPECT_EQ(row.state, State::SynSent);
    EXPECT_TRUE(row.displaced);
    EXPECT_FALSE(make_row(v[1], "eth0", 10 * kSec).displaced);
    EXPECT_FALSE(make_row(v[2], "eth0", 10 * kSec).displaced);
    Report r = empty_report();
    r.rows = {row};
    EXPECT_EQ(render_closed_lines(r),
              "10.0.0.1:40000 -> 10.0.0.2:80  9.00s  60 B / 0 B  rtt -  "
              "SYN_SENT displaced\n");
}

TEST_F(Render, BuilderMatchesRowPerFlowReferenceAndStreamsTheSameText) {
    // Many flows with colliding byte counts and rates, over several rounds with
    // churn, in no particular order: the streamed rows equal the row-per-flow
    // path, text included.
    std::mt19937 rng(7);
    std::vector<FlowSample> v;
    for (std::uint32_t i = 0; i < 3000; ++i) {
        FlowSample s = flow(0x0A000000 + rng() % 5, 1024 + rng() % 3000, 0x0B000000 + rng() % 3,
                            rng() % 2 ? 443 : 50000, 100 * (rng() % 4), 100 * (rng() % 3));
        s.info.client = rng() % 2;
        if (rng() % 3 == 0) s.info.flags = TT_F_MIDSTREAM;
        v.push_back(s);
    }
    sort_samples(v);
    v.erase(std::unique(v.begin(), v.end(),
                        [](const FlowSample& a, const FlowSample& b) {
                            return tt_test::same_key(a.key, b.key);
                        }),
            v.end());
    const std::map<std::uint32_t, std::string> names{{1, "eth0"}};
    ReportBuilder b(names);
    CollectorSim sim;
    std::uint64_t now = 10 * kSec;
    for (int round = 0; round < 4; ++round) {
        std::vector<FlowSample> cur;
        for (auto& s : v) {
            if (rng() % 4 == 0) continue;                            // absent this round
            if (rng() % 2) s.bytes[rng() % 2] += 100 * (rng() % 3);  // moved (or not)
            FlowSample c = s;
            c.finished = rng() % 10 == 0;
            cur.push_back(c);
        }
        std::shuffle(cur.begin(), cur.end(), rng);
        now += kSec;
        sim.report(cur, now);
        const auto want = reference_rows(cur, now, kSec);
        b.build(cur, now, kSec, false);
        ASSERT_EQ(b.size(), want.size());
        Report streamed = empty_report();
        streamed.rows = all_rows(b);
        std::size_t moving = 0;
        for (std::size_t i = 0; i < want.size(); ++i) {
            ASSERT_EQ(
                std::tie(streamed.rows[i].src, streamed.rows[i].sport, streamed.rows[i].dst,
                         streamed.rows[i].dport, streamed.rows[i].fwd_bytes),
                std::tie(want[i].src, want[i].sport, want[i].dst, want[i].dport, want[i].fwd_bytes))
                << "round " << round << " row " << i;
            ASSERT_EQ(streamed.rows[i].fwd_bps, want[i].fwd_bps);
            ASSERT_EQ(streamed.rows[i].rev_bps, want[i].rev_bps);
            moving += want[i].fwd_bps + want[i].rev_bps > 0;
        }
        EXPECT_GT(moving, 0u);  // rates were compared, not only zeros
        if (round > 0) {
            EXPECT_LT(moving, want.size());  // and idle flows among them
        }
        Report old = empty_report();
        old.rows = want;
        std::string json, csv;
        EXPECT_TRUE(
            render_json(kTime, b.rows(), [&](std::string_view t) { return json.append(t), true; }));
        EXPECT_TRUE(render_csv(kTime, b.rows(), round == 0,
                               [&](std::string_view t) { return csv.append(t), true; }));
        EXPECT_EQ(json, render_json(old));
        EXPECT_EQ(csv, render_csv(old, round == 0));
    }
}

TEST(RenderTable, LimitedToTerminalRowsCountsAllAndSaysHowManyMore) {
    const Report r = fixture();  // three rows
    const std::string full = render_table(r);
    const std::string cut = render_table(r, 1);
    // Same header line (it counts every connection), one row, then the rest announced.
    EXPECT_EQ(cut.substr(0, cut.find('\n')), full.substr(0, full.find('\n')));
    EXPECT_NE(cut.find("10.0.0.1:43512 -> 10.0.0.2:80"), std::string::npos);
    EXPECT_EQ(cut.find("[fd00::1]:51000"), std::string::npos);
    EXPECT_NE(cut.find("... 2 more"), std::string::npos);
    EXPECT_EQ(render_table(r, 3), full);
}
