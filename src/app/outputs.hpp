// SPDX-License-Identifier: MIT
// The one place that decides which outputs run. Adding an output: a file in
// output/ and one line here.
#pragma once

#include <memory>
#include <vector>

#include "config/options.hpp"
#include "output/controls.hpp"
#include "output/export_tally.hpp"
#include "output/health.hpp"
#include "output/output.hpp"

namespace tcptrack {

// The exporters the options ask for (--ipfix, --prometheus). Made before
// --netns is entered, so their sockets and threads stay in tcptrack's own
// namespace, where the collector and the scraper are. They count their errors
// into `exports` (and Prometheus shows it); it must outlive them.
// `health` is what Prometheus's /healthz answers from; it must outlive them.
std::vector<std::unique_ptr<Output>> make_exporters(const Options& opts, ExportTally& exports,
                                                    const Health& health);

// Whether the terminal output shows host names (-r: the table and the view
// do; JSON and CSV stay numeric), so a resolver is worth starting.
bool shows_names(const Options& opts);

// The terminal output for --format: the full-screen view on a terminal, else
// the table, the --closed log, JSON or CSV on stdout; none for --format none.
// `controls` serves the view's '/' and 's' keys; `exports` (the exporters'
// errors) is read by --summary's line or record.
std::unique_ptr<Output> make_terminal_output(const Options& opts, Controls& controls,
                                             const ExportTally& exports);

}  // namespace tcptrack
