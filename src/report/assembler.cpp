// SPDX-License-Identifier: MIT
#include "report/assembler.hpp"

#include <chrono>
#include <cstdio>

#include "datapath/collector.hpp"
#include "datapath/live_filter.hpp"
#include "sys/netns.hpp"

namespace tcptrack {

void add_store_stats(ReportStats& r, const Collector& c, std::uint64_t evicted) {
    r.tracked = c.live();
    const DatapathStats ds = c.stats();
    r.untracked = ds.untracked;
    r.untracked_segments = ds.untracked_segments;
    r.close_dropped = ds.close_dropped;
    r.close_lost = ds.close_lost;
    r.evicted = evicted;
    r.capacity = c.capacity();
    r.assured = c.assured();
    r.unassured = c.live() - c.assured();
    r.displaced = ds.displaced;
    r.untracked_full = ds.untracked_full;
    r.untracked_buckets = ds.untracked_buckets;
}

ReportAssembler::ReportAssembler(const Options& opts, Collector& collector,
                                 const InterfaceNames& names, std::uint64_t start_ns)
    : opts_(opts),
      collector_(collector),
      names_(names),
      builder_(names),
      sort_(opts.sort),
      pressure_(start_ns),
      netns_(opts.netns.empty() ? "" : netns_label(netns_target(opts.netns))) {
    builder_.set_health_totals(opts.summary);
}

void ReportAssembler::add_enricher(Enricher& e) {
    enrichers_.push_back(&e);
    builder_.add_enricher(e);
}

const ReportFrame& ReportAssembler::assemble(std::uint64_t now, std::uint64_t elapsed,
                                             std::vector<std::string> ifaces) {
    frame_.reset();  // refers to report_ and the collector's buffers, about to change
    Report& r = report_;
    r = Report{};
    r.time = std::chrono::system_clock::now();
    r.ifaces = std::move(ifaces);
    r.netns = netns_;
    r.names = lookup_;
    r.show_process = opts_.process;

    const auto& samples =
        collector_.collect(now, static_cast<std::uint64_t>(opts_.idle_timeout_s * 1e9),
                           static_cast<std::uint64_t>(opts_.unassured_timeout_s * 1e9));
    const SampleFinder find = [this](const SlotRef& r) { return collector_.find(r); };
    for (Enricher* e : enrichers_)
        e->update(samples, collector_.changed(), collector_.idle(), collector_.live(), find);
    if (filter_) filter_->after_collect();
    // --closed and --changed rows are all among the changed samples: the
    // report then costs what changed, not what is resident.
    const bool few = opts_.closed_only || opts_.changed_only;
    builder_.build(samples, now, elapsed, opts_.closed_only, few ? &collector_.changed() : nullptr,
                   sort_, opts_.top ? static_cast<std::size_t>(*opts_.top) : 0);
    // Idle connections are shown one last time, then dropped from the store
    // (forget() leaves collect()'s samples alone: the rows still read them).
    evicted_ += collector_.forget(collector_.idle());

    r.stats = builder_.stats();
    r.stats.connections = builder_.total();
    add_store_stats(r.stats, collector_, evicted_);
    // Connections refused for want of room: a line at most once a minute.
    if (auto line = pressure_.update(r.stats, now))
        std::fprintf(stderr, "tcptrack: %s\n", line->c_str());

    ReportFrame f{r,
                  [this] { return builder_.rows(); },
                  samples,
                  collector_.live(),
                  collector_.changed(),
                  collector_.idle(),
                  now,
                  names_};
    if (!enrichers_.empty())
        f.enrich = [this](const SlotRef& ref, FlowRow& row) {
            for (const Enricher* e : enrichers_) e->fill(ref, row);
        };
    f.table = [this] { return builder_.table(); };
    frame_.emplace(std::move(f));
    return *frame_;
}

}  // namespace tcptrack
