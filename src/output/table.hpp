// SPDX-License-Identifier: MIT
// The table for humans (also drawn by the view), --summary's line under it,
// and the --closed log.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "output/export_tally.hpp"
#include "report/report.hpp"

namespace tcptrack {

// The table: header line with time, interfaces, counts (store occupancy, displaced,
// untracked, evicted, close drops), RTT summary, then aligned rows.
// At most max_rows connection rows (the busiest, as ordered); a last line says how
// many more there are. The header counts them all. With `names` (else
// report.names, if set), endpoints show "name:port" where it gives a name.
std::string render_table(const Report& report, std::size_t max_rows = SIZE_MAX,
                         const NameLookup& names = {});
// --summary with the table: one line under each report, the JSON record's figures:
// "summary: connections 3  store 3/65536 (assured 2, unassured 1)  displaced 0
// untracked 2 (full 2, buckets 0)  evicted 1  close-drops 0  closed 2
// rtt min/avg/max 120us/660us/1.20ms" (on one line; rtt "-" when none was measured),
// then "  ipfix-errors 0" for each exporter registered in `exports`.
std::string render_table_summary(const Report& report, std::size_t connections,
                                 const ExportTally* exports = nullptr);
// --closed: one line per connection in state CLOSED/RESET, or displaced (any state):
// "src:port -> dst:port  duration  bytes fwd/rev  rtt  state" (state then " displaced").
std::string render_closed_lines(const Report& report);

}  // namespace tcptrack
