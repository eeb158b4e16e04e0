// SPDX-License-Identifier: MIT
// Text for humans (table, close log) and machines (NDJSON, CSV).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

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
// "HH:MM:SS" in local time.
std::string clock_hms(std::chrono::system_clock::time_point t);
// RFC 3339 UTC with milliseconds: "2026-11-24T02:49:07.123Z".
std::string rfc3339_utc(std::chrono::system_clock::time_point t);

// The table: header line with time, interfaces, counts (store occupancy, displaced,
// untracked, evicted, close drops), RTT summary, then aligned rows.
// At most max_rows connection rows (the busiest, as ordered); a last line says how
// many more there are. The header counts them all. With `names` (else
// report.names, if set), endpoints show "name:port" where it gives a name.
std::string render_table(const Report& report, std::size_t max_rows = SIZE_MAX,
                         const NameLookup& names = {});
// Receives rendered text in chunks (about 64 KiB); returns false to stop rendering.
using TextSink = std::function<bool(std::string_view)>;

// NDJSON: one object per row, keys exactly as documented in the README,
// streamed to the sink in chunks (false if the sink gave up).
bool render_json(std::chrono::system_clock::time_point time, const RowSource& rows,
                 const TextSink& sink);
// One JSON object {"type":"summary",...} for --summary; `connections` is the
// number of connections in the report before --top.
std::string render_json_summary(const Report& report, std::size_t connections);
// --summary with the table: one line under each report, the JSON record's figures:
// "summary: connections 3  store 3/65536 (assured 2, unassured 1)  displaced 0
// untracked 2 (full 2, buckets 0)  evicted 1  close-drops 0  closed 2
// rtt min/avg/max 120us/660us/1.20ms" (on one line; rtt "-" when none was measured).
std::string render_table_summary(const Report& report, std::size_t connections);
// CSV rows (same keys as JSON); header row first when `header`. Streams like render_json.
bool render_csv(std::chrono::system_clock::time_point time, const RowSource& rows, bool header,
                const TextSink& sink);
// --closed: one line per connection in state CLOSED/RESET, or displaced (any state):
// "src:port -> dst:port  duration  bytes fwd/rev  rtt  state" (state then " displaced").
std::string render_closed_lines(const Report& report);

}  // namespace tcptrack
