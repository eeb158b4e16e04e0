// SPDX-License-Identifier: MIT
// What a report needs after Collector::collect(): rates, stats, idle flows and
// the display order, in one pass over the samples. Rows are built one at a
// time as they are rendered: a FlowRow per flow would be ~180 MB at 1M flows.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "config/options.hpp"
#include "report/enricher.hpp"
#include "report/flow_model.hpp"
#include "report/frame.hpp"
#include "report/report.hpp"

namespace tcptrack {

// The value a connection sorts by (--sort, the view's 's' key), largest first,
// from its sample (the builder) or its row (the view re-sorting what it shows):
// one rule for both. A connection without the value (no RTT) sorts after every
// one with it. rtt: the live smoothed RTT, else the handshake's; retrans:
// retransmitted segments both ways.
double sort_value(SortKey key, const FlowSample& s, const Rate& r, std::uint64_t now_ns);
double sort_value(SortKey key, const FlowRow& r);

class ReportBuilder {
   public:
    // ifindex -> interface name; must outlive the builder.
    explicit ReportBuilder(const InterfaceNames& names) : names_(names) {}

    // `samples` (as collect() returns them, in no particular order) must stay
    // unchanged while rows are read. With `only` set, only those samples
    // (indexes into `samples`) are looked at (--changed, --closed). With
    // closed_only only CLOSED/RESET (and displaced) connections become rows; the stats count
    // every sample looked at.
    // Rows come largest first by `sort` (ties: bytes, then endpoints); with
    // top > 0 only the first `top` are kept (the stats still count every one).
    void build(const std::vector<FlowSample>& samples, std::uint64_t now_ns,
               std::uint64_t elapsed_ns, bool closed_only,
               const std::vector<std::uint32_t>* only = nullptr, SortKey sort = SortKey::Rate,
               std::size_t top = 0);

    // --summary's health totals (ReportStats::retrans and the rest): summed
    // only when asked, as they read every sample's health.
    void set_health_totals(bool on) { health_totals_ = on; }

    // closed and rtt of the rows looked at by the last build, and the health
    // totals over its rows (before --top) (the flow count
    // and the datapath's counters are the collector's).
    const ReportStats& stats() const { return stats_; }
    std::size_t size() const { return rows_.size(); }
    // Rows before --top cut them.
    std::size_t total() const { return total_; }
    // Row i in display order: busiest first, then stable by endpoints.
    void row(std::size_t i, FlowRow& out) const;
    // Every row in display order, for render_json/render_csv.
    RowSource rows() const;
    // The same by index (RowTable: safe from several threads, as row() is).
    RowTable table() const;
    // Fields from outside the datapath (process attribution): each enricher
    // fills its fields of every row (none: they stay empty, as with --no-process).
    void add_enricher(const Enricher& e) { enrichers_.push_back(&e); }

   private:
    // What sorting needs, 32 bytes a row; the rest comes from the sample when rendered.
    struct Entry {
        double key;           // the sort key (--sort), largest first
        std::uint64_t bytes;  // both ways
        std::uint64_t
            ends_hi;  // IPv4: src, sport, dst's top half (the sort's tie-break without the sample)
        std::uint32_t ends_lo;  // IPv4: dst's bottom half, dport
        std::uint32_t sample;   // index into samples_; top bit: not IPv4, compare the sample
    };
    std::uint64_t elapsed_ns_ = 0;
    std::size_t total_ = 0;

    const InterfaceNames& names_;
    const std::vector<FlowSample>* samples_ = nullptr;
    std::uint64_t now_ns_ = 0;
    // The sort's entries, released once ordered (32 bytes a row: at a million
    // rows, 32 MB the render does not hold), and the rows' samples in order.
    std::vector<Entry> order_;
    std::vector<std::uint32_t> rows_;  // kept across reports, like the collector's buffers
    std::vector<const Enricher*> enrichers_;
    ReportStats stats_;
    bool health_totals_ = false;
};

}  // namespace tcptrack
