// SPDX-License-Identifier: MIT
// The outputs on stdout and the terminal: the plain table (or, with --closed,
// the flow log), NDJSON, CSV, and the full-screen view (output/tui.hpp).
#pragma once

#include <memory>

#include "config/options.hpp"
#include "output/export_tally.hpp"
#include "output/output.hpp"
#include "output/tui.hpp"

namespace tcptrack {

// `exports`: the exporters' errors, in --summary's line or record.
std::unique_ptr<Output> make_table_output(const Options& opts, const ExportTally& exports);
std::unique_ptr<Output> make_json_output(const Options& opts, const ExportTally& exports);
std::unique_ptr<Output> make_csv_output();
std::unique_ptr<Output> make_view_output(std::unique_ptr<Tui> tui);

}  // namespace tcptrack
