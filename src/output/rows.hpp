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

// Receives rendered text in chunks (about 64 KiB, or a parallel render's
// chunk of rows); returns false to stop rendering.
using TextSink = std::function<bool(std::string_view)>;

// How a RowTable is rendered: rows in chunks of chunk_rows, by up to
// `threads` worker threads (1: on the caller's thread), each into its own
// buffer; the sink is called on the caller's thread, in order, and sees the
// same bytes whatever the options.
struct RenderOptions {
    unsigned threads = 1;
    std::size_t chunk_rows = 1024;  // ~1 MB of JSON; 2 chunks in flight per thread
};
// The renderers' worker threads for tcptrack's outputs: one per CPU, at most 8.
inline constexpr unsigned kMaxRenderThreads = 8;
unsigned render_threads();

// NDJSON: one object per row, keys exactly as documented in the README,
// streamed to the sink in chunks (false if the sink gave up).
bool render_json(std::chrono::system_clock::time_point time, const RowSource& rows,
                 const TextSink& sink);
// The same from rows by index, rendered as `opts` says.
bool render_json(std::chrono::system_clock::time_point time, const RowTable& rows,
                 const TextSink& sink, const RenderOptions& opts = {});
// One JSON object {"type":"summary",...} for --summary; `connections` is the
// number of connections in the report before --top; `exports` (if any
// exporter registered) adds "export_errors": {"ipfix": 0, ...}.
std::string render_json_summary(const Report& report, std::size_t connections,
                                const ExportTally* exports = nullptr);
// CSV rows (same keys as JSON); header row first when `header`. Streams like render_json.
bool render_csv(std::chrono::system_clock::time_point time, const RowSource& rows, bool header,
                const TextSink& sink);
bool render_csv(std::chrono::system_clock::time_point time, const RowTable& rows, bool header,
                const TextSink& sink, const RenderOptions& opts = {});

}  // namespace tcptrack
