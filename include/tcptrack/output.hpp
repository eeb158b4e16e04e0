// SPDX-License-Identifier: MIT
// The one interface every output implements: the table, JSON, CSV, the
// closed-connection log, and the exporters (IPFIX, Prometheus). The run loop
// builds each report once and hands the same frame to every output in turn,
// so several can run at once (a table on the terminal while IPFIX goes to a
// collector). Adding an output means adding a file and one line in
// make_exporters() (src/output.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tcptrack/flow_model.hpp"
#include "tcptrack/options.hpp"
#include "tcptrack/render.hpp"
#include "tcptrack/report.hpp"

namespace tcptrack {

// One report as every output sees it. Valid only during Output::write().
struct ReportFrame {
    const Report& report;  // time, interfaces, stats (report.rows: unused, see rows)
    // The rows a reader sees, in report order (--sort, --top, --changed and
    // --closed applied), built one at a time: each call starts a new pass.
    std::function<RowSource()> rows;
    // Every connection, whatever the display shows: samples[0, live) are
    // live, the rest finished since the last report (final, shown once).
    const std::vector<FlowSample>& samples;
    std::size_t live;
    // Indexes into samples of those new, moved or finished since the last
    // report. Only there do a sample's prev_* hold its counts at the last
    // report (new ones: 0), so current - prev is what happened in between.
    const std::vector<std::uint32_t>& changed;
    // Live connections idle for --idle-timeout: this report is their last.
    const std::vector<SlotRef>& idle;
    std::uint64_t now_ns;  // CLOCK_MONOTONIC, the samples' clock (info.first_ns, ...)
    // The interface name of a sample (by its key's ifindex).
    const std::string& (*iface_of)(const void* ctx, std::uint32_t ifindex);
    const void* iface_ctx;
    const std::string& iface(std::uint32_t ifindex) const { return iface_of(iface_ctx, ifindex); }
};

class Output {
public:
    virtual ~Output() = default;
    // One report. False stops tcptrack quietly (stdout was closed, as by `| head`).
    virtual bool write(const ReportFrame& frame) = 0;
    // The run's last report, instead of write(): at a stop (SIGINT, SIGTERM,
    // SIGHUP, the view's 'q': what happened since the previous report) or as
    // the Nth of --count N. Nothing that closed before a stop goes unreported:
    // by default it is an ordinary report; exporters add their final records
    // (IPFIX: a forced end per live connection) and flush.
    virtual void finish(const ReportFrame* last) {
        if (last) write(*last);
    }
    // Errors so far that did not stop tracking (an unreachable collector...),
    // for the summary, under name(); exporters only.
    virtual std::optional<std::uint64_t> errors() const { return std::nullopt; }
    virtual const char* name() const = 0;
    // An interactive output (the full-screen view) acts on keys here, between
    // short waits; false: the user quit.
    virtual bool interact() { return true; }
    // Whether interact() needs calling often (keys act within 50 ms).
    virtual bool interactive() const { return false; }
    // The sort key an interactive output chose: the next report is built with it.
    virtual std::optional<SortKey> sort() const { return std::nullopt; }
};

// The exporters the options ask for (--ipfix, --prometheus). Made before
// --netns is entered, so their sockets and threads stay in tcptrack's own
// namespace, where the collector and the scraper are.
std::vector<std::unique_ptr<Output>> make_exporters(const Options& opts);

// Whether the terminal output shows host names (-r: the table and the view
// do; JSON and CSV stay numeric), so a resolver is worth starting.
bool shows_names(const Options& opts);

// The terminal output for --format: the full-screen view on a terminal, else
// the table, the --closed log, JSON or CSV on stdout; none for --format none.
// `apply_filter` serves the view's '/' ("" on success, else why not).
std::unique_ptr<Output> make_terminal_output(
    const Options& opts, std::function<std::string(const std::string&)> apply_filter);

}  // namespace tcptrack
