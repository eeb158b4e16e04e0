// SPDX-License-Identifier: MIT
// Human units and names shared by the outputs: bytes, rates, durations,
// addresses, TCP states, times.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "report/report.hpp"

namespace tcptrack {

// Human units, 1024-based: "512 B", "3.44 KiB", "1.20 MiB", "2.00 GiB".
std::string human_bytes(std::uint64_t bytes);
// Bits per second: "0 b/s", "840 b/s", "1.23 Kb/s", "9.41 Gb/s" (1000-based, like iftop).
std::string human_rate(double bits_per_second);
// Compact duration: "850us", "12.3ms", "4.52s", "3m07s", "2h05m".
std::string human_duration(std::uint64_t ns);
// "10.0.0.1:80", "[fd00::1]:443".
std::string endpoint(Family family, const Address& addr, std::uint16_t port);
// Address alone: "10.0.0.1", "fd00::1".
std::string address(Family family, const Address& addr);
// "SYN_SENT", "SYN_RECV", "ESTABLISHED", "CLOSING", "CLOSED", "RESET".
const char* state_name(State state);
// How a row's connection ended ("fin", "rst") and by which end ("client",
// "server"); nullptr when not seen (JSON null, CSV empty).
const std::string* end_name(const Ending& e);
const std::string* end_by_name(const Ending& e);
// "HH:MM:SS" in local time.
std::string clock_hms(std::chrono::system_clock::time_point t);
// RFC 3339 UTC with milliseconds: "2026-11-24T02:49:07.123Z".
std::string rfc3339_utc(std::chrono::system_clock::time_point t);
// A handshake RTT in human_duration()'s units (LAN handshakes are microseconds,
// WAN ones milliseconds); "-" when not measured.
std::string rtt_text(const std::optional<std::uint64_t>& ns);

}  // namespace tcptrack
