// SPDX-License-Identifier: MIT
// Rendering: human units, endpoints, time stamps, and golden outputs.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tcptrack/render.hpp"

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

    r.rows = {a, b, c};
    r.stats.tracked = 3;
    r.stats.untracked = 2;
    r.stats.evicted = 1;
    r.stats.closed = 2;
    r.stats.rtt.add(120'000);
    r.stats.rtt.add(1'200'000);
    return r;
}

Report empty_report() {
    Report r;
    r.time = kTime;
    r.ifaces = {"eth0"};
    return r;
}

std::vector<std::string> lines(const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    for (std::string l; std::getline(in, l);)
        out.push_back(l);
    return out;
}

const std::vector<std::string> kRowKeys = {
    "time",      "iface",       "family",      "src",         "sport",       "dst",
    "dport",     "state",       "fwd_bytes",   "fwd_packets", "fwd_payload", "rev_bytes",
    "rev_packets", "rev_payload", "fwd_bps",   "rev_bps",     "duration_ns", "rtt_ns"};

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
    EXPECT_EQ(human_bytes(1024), "1.00 KB");
    EXPECT_EQ(human_bytes(3522), "3.44 KB");
    EXPECT_EQ(human_bytes(1024 * 1024 - 1), "1.00 MB");  // no "1024.00 KB"
    EXPECT_EQ(human_bytes(1024 * 1024), "1.00 MB");
    EXPECT_EQ(human_bytes(1258291), "1.20 MB");
    EXPECT_EQ(human_bytes(2ull << 30), "2.00 GB");
    EXPECT_EQ(human_bytes(1ull << 40), "1.00 TB");
    EXPECT_EQ(human_bytes(5000ull << 40), "5000.00 TB");  // TB is the last unit
    EXPECT_EQ(human_bytes(UINT64_MAX), "16777216.00 TB");
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
    EXPECT_EQ(endpoint(Family::V6, v6("2001:db8:1:2:3:4:5:6"), 8080), "[2001:db8:1:2:3:4:5:6]:8080");
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
    EXPECT_EQ(rfc3339_utc(system_clock::time_point{} - milliseconds{1}), "1969-12-31T23:59:59.999Z");
}

TEST_F(Render, TableGolden) {
    const std::string want =
        "02:49:07  eth0  3 connections  untracked 2  evicted 1  close-drops 0  rtt min/avg/max 120us/660us/1.2ms\n"
        "CONNECTION                            STATE             TX  TX PKTS       RX  RX PKTS  TX RATE    RX RATE    RTT    AGE\n"
        "10.0.0.1:43512 -> 10.0.0.2:80         ESTABLISHED  3.44 KB       12  1.20 MB      870  840 b/s  1.23 Kb/s  120us  4.52s\n"
        "[fd00::1]:51000 -> [fd00::2]:443      CLOSED         512 B        4      0 B        0    0 b/s      0 b/s      -  3m07s\n"
        "192.168.1.10:5555 -> 192.168.1.20:22  RESET           60 B        1     40 B        1  480 b/s      0 b/s  1.2ms  850us\n";
    EXPECT_EQ(render_table(fixture()), want);
}

TEST_F(Render, TableEmpty) {
    EXPECT_EQ(render_table(empty_report()),
              "02:49:07  eth0  0 connections  untracked 0  evicted 0  close-drops 0  rtt -\n"
              "  (no TCP connections)\n");
}

TEST_F(Render, TableSingularAndColumnsFollowContent) {
    Report r = fixture();
    r.rows.resize(1);
    r.rows[0].duration_ns.reset();  // AGE falls back to age_ns
    r.stats = ReportStats{};
    EXPECT_EQ(render_table(r),
              "02:49:07  eth0  1 connection  untracked 0  evicted 0  close-drops 0  rtt -\n"
              "CONNECTION                     STATE             TX  TX PKTS       RX  RX PKTS  TX RATE    RX RATE    RTT    AGE\n"
              "10.0.0.1:43512 -> 10.0.0.2:80  ESTABLISHED  3.44 KB       12  1.20 MB      870  840 b/s  1.23 Kb/s  120us  4.00s\n");
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
        R"({"time":"2026-11-24T02:49:07.123Z","iface":"eth0","family":"ipv4","src":"10.0.0.1","sport":43512,"dst":"10.0.0.2","dport":80,"state":"ESTABLISHED","fwd_bytes":3522,"fwd_packets":12,"fwd_payload":2900,"rev_bytes":1258291,"rev_packets":870,"rev_payload":1200000,"fwd_bps":840,"rev_bps":1234,"duration_ns":4520000000,"rtt_ns":120000})"
        "\n"
        R"({"time":"2026-11-24T02:49:07.123Z","iface":"eth0","family":"ipv6","src":"fd00::1","sport":51000,"dst":"fd00::2","dport":443,"state":"CLOSED","fwd_bytes":512,"fwd_packets":4,"fwd_payload":0,"rev_bytes":0,"rev_packets":0,"rev_payload":0,"fwd_bps":0,"rev_bps":0,"duration_ns":null,"rtt_ns":null})"
        "\n"
        R"({"time":"2026-11-24T02:49:07.123Z","iface":"eth0","family":"ipv4","src":"192.168.1.10","sport":5555,"dst":"192.168.1.20","dport":22,"state":"RESET","fwd_bytes":60,"fwd_packets":1,"fwd_payload":0,"rev_bytes":40,"rev_packets":1,"rev_payload":0,"fwd_bps":480,"rev_bps":0,"duration_ns":850000,"rtt_ns":1200000})"
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
        for (const auto& [k, v] : j.items())
            keys.push_back(k);
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

TEST_F(Render, SummaryRecord) {
    EXPECT_EQ(render_json_summary(fixture()),
              R"({"type":"summary","time":"2026-11-24T02:49:07.123Z","ifaces":["eth0"],"connections":3,"tracked":3,"untracked":2,"untracked_segments":0,"evicted":1,"close_dropped":0,"close_lost":0,"closed":2,"rtt_min_ns":120000,"rtt_avg_ns":660000,"rtt_max_ns":1200000})"
              "\n");
    Report e = empty_report();
    e.ifaces = {"eth0", "lo"};
    e.stats.close_dropped = 7;
    e.stats.close_lost = 1;
    EXPECT_EQ(render_json_summary(e),
              R"({"type":"summary","time":"2026-11-24T02:49:07.123Z","ifaces":["eth0","lo"],"connections":0,"tracked":0,"untracked":0,"untracked_segments":0,"evicted":0,"close_dropped":7,"close_lost":1,"closed":0,"rtt_min_ns":null,"rtt_avg_ns":null,"rtt_max_ns":null})"
              "\n");
}

TEST_F(Render, CsvGolden) {
    const std::string header =
        "time,iface,family,src,sport,dst,dport,state,fwd_bytes,fwd_packets,fwd_payload,rev_bytes,"
        "rev_packets,rev_payload,fwd_bps,rev_bps,duration_ns,rtt_ns\n";
    const std::string rows =
        "2026-11-24T02:49:07.123Z,eth0,ipv4,10.0.0.1,43512,10.0.0.2,80,ESTABLISHED,3522,12,2900,1258291,870,1200000,840,1234,4520000000,120000\n"
        "2026-11-24T02:49:07.123Z,eth0,ipv6,fd00::1,51000,fd00::2,443,CLOSED,512,4,0,0,0,0,0,0,,\n"
        "2026-11-24T02:49:07.123Z,eth0,ipv4,192.168.1.10,5555,192.168.1.20,22,RESET,60,1,0,40,1,0,480,0,850000,1200000\n";
    EXPECT_EQ(render_csv(fixture(), true), header + rows);
    EXPECT_EQ(render_csv(fixture(), false), rows);
    EXPECT_EQ(render_csv(empty_report(), true), header);
    EXPECT_EQ(render_csv(empty_report(), false), "");

    // Header keys are the JSON keys, in order.
    std::vector<std::string> keys;
    std::istringstream in(header.substr(0, header.size() - 1));
    for (std::string k; std::getline(in, k, ',');)
        keys.push_back(k);
    EXPECT_EQ(keys, kRowKeys);
}

TEST_F(Render, CsvQuotesOddInterfaceNames) {
    Report r = fixture();
    r.rows.resize(1);
    r.rows[0].iface = "a,\"b";
    const std::string want = "2026-11-24T02:49:07.123Z,\"a,\"\"b\",ipv4,";
    EXPECT_EQ(render_csv(r, false).substr(0, want.size()), want);
}

TEST_F(Render, ClosedLines) {
    EXPECT_EQ(render_closed_lines(fixture()),
              "[fd00::1]:51000 -> [fd00::2]:443  -  512 B / 0 B  rtt -  CLOSED\n"
              "192.168.1.10:5555 -> 192.168.1.20:22  850us  60 B / 40 B  rtt 1.2ms  RESET\n");
    EXPECT_EQ(render_closed_lines(empty_report()), "");
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
    EXPECT_TRUE(render_json(r, [&](std::string_view s) { ++chunks, json.append(s); return true; }));
    EXPECT_TRUE(render_csv(r, true, [&](std::string_view s) { csv.append(s); return true; }));
    EXPECT_GT(chunks, 3u);
    EXPECT_EQ(json, render_json(r));
    EXPECT_EQ(csv, render_csv(r, true));
    std::size_t calls = 0;
    EXPECT_FALSE(render_json(r, [&](std::string_view) { return ++calls, false; }));
    EXPECT_EQ(calls, 1u);
}
