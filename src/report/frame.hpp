// SPDX-License-Identifier: MIT
// One report as every output sees it: the report itself, its rows in order,
// and the samples behind them (exporters read counts and deltas there).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "datapath/flow_sample.hpp"
#include "report/report.hpp"
#include "sys/interfaces.hpp"

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
    // The watched interfaces' names, by ifindex (a sample's key.ifindex).
    const InterfaceNames& ifaces;
    const std::string& iface(std::uint32_t ifindex) const { return iface_name(ifaces, ifindex); }
    // The enrichers' fields of a sample's row (pid, comm, cgroup, pod_uid,
    // ...), for exporters that read samples; empty: no enrichers.
    std::function<void(const SlotRef&, FlowRow&)> enrich = {};
    // The same rows as `rows`, by index (renderers split them among threads);
    // empty: only `rows`.
    std::function<RowTable()> table = {};
};

}  // namespace tcptrack
