// SPDX-License-Identifier: MIT
// Human units and names: bytes, rates, durations, RTTs, addresses, states, times.
#include "output/format.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <cmath>

namespace tcptrack {
namespace {

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

}  // namespace

std::string human_bytes(std::uint64_t bytes) {
    if (bytes < 1024) return fmt::format("{} B", bytes);
    static constexpr std::array<const char*, 5> units = {"B", "KiB", "MiB", "GiB", "TiB"};
    return scaled(static_cast<double>(bytes), 1024, units);
}

std::string human_rate(double bps) {
    if (!(bps > 0)) return "0 b/s";
    if (std::round(bps) < 1000) return fmt::format("{:.0f} b/s", bps);
    static constexpr std::array<const char*, 4> units = {"b/s", "Kb/s", "Mb/s", "Gb/s"};
    return scaled(bps, 1000, units);
}

std::string human_duration(std::uint64_t ns) {
    // Thresholds sit where rounding would roll over ("1000.0ms" -> "1.00s").
    if (ns < 1'000'000) return fmt::format("{}us", ns / 1000);
    if (ns < 999'950'000) return fmt::format("{:.1f}ms", static_cast<double>(ns) / 1e6);
    if (ns < 59'995'000'000) return fmt::format("{:.2f}s", static_cast<double>(ns) / 1e9);
    // 59.995s..60s would truncate to "0m59s"; it rounds to a minute.
    const std::uint64_t s = std::max<std::uint64_t>(ns / 1'000'000'000, 60);
    if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
    return fmt::format("{}h{:02}m", s / 3600, s / 60 % 60);
}

std::string address(Family family, const Address& addr) {
    char buf[INET6_ADDRSTRLEN] = {};
    const int af = family == Family::V6 ? AF_INET6 : AF_INET;
    if (!inet_ntop(af, addr.data(), buf, sizeof buf)) return "?";
    return buf;
}

std::string endpoint(Family family, const Address& addr, std::uint16_t port) {
    if (family == Family::V6) return fmt::format("[{}]:{}", address(family, addr), port);
    return fmt::format("{}:{}", address(family, addr), port);
}

const std::string* end_name(const Ending& e) {
    static const std::string fin = "fin", rst = "rst";
    switch (e.kind) {
        case EndKind::Fin:
            return &fin;
        case EndKind::Rst:
            return &rst;
        case EndKind::None:
            break;
    }
    return nullptr;
}

const std::string* end_by_name(const Ending& e) {
    static const std::string client = "client", server = "server";
    if (!e.by_client) return nullptr;
    return *e.by_client ? &client : &server;
}

const char* state_name(State state) {
    switch (state) {
        case State::SynSent:
            return "SYN_SENT";
        case State::SynRecv:
            return "SYN_RECV";
        case State::Established:
            return "ESTABLISHED";
        case State::Closing:
            return "CLOSING";
        case State::Closed:
            return "CLOSED";
        case State::Reset:
            return "RESET";
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

std::string rtt_text(const std::optional<std::uint64_t>& ns) {
    return ns ? human_duration(*ns) : std::string("-");
}

}  // namespace tcptrack
