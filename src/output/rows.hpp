// SPDX-License-Identifier: MIT
// Rows for machines: NDJSON and CSV (one row schema, keys as the README
// documents them), streamed in chunks, and the JSON summary record.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include "output/export_tally.hpp"
#include "report/report.hpp"

namespace tcptrack {

// Receives rendered text in chunks (about 64 KiB); returns false to stop rendering.
using TextSink = std::function<bool(std::string_view)>;

// NDJSON: one object per row, keys exactly as documented in the README,
// streamed to the sink in chunks (false if the sink gave up).
bool render_json(std::chrono::system_clock::time_point time, const RowSource& rows,
                 const TextSink& sink);
// One JSON object {"type":"summary",...} for --summary; `connections` is the
// number of connections in the report before --top; `exports` (if any
// exporter registered) adds "export_errors": {"ipfix": 0, ...}.
std::string render_json_summary(const Report& report, std::size_t connections,
                                const ExportTally* exports = nullptr);
// CSV rows (same keys as JSON); header row first when `header`. Streams like render_json.
bool render_csv(std::chrono::system_clock::time_point time, const RowSource& rows, bool header,
                const TextSink& sink);

}  // namespace tcptrack
