// SPDX-License-Identifier: MIT
// One run of tcptrack: the classifiers loaded and attached, then every
// interval a report assembled and handed to every output, until a stop.
// Each job is a member it owns: the datapath (skeleton, collector, live
// filter), the interfaces (attach/interface_watch), the report
// (report/assembler) with its enrichers, and the outputs. It is also the
// view's Controls: the '/' and 's' keys change the filter and the sort here.
#pragma once

#include <csignal>
#include <memory>
#include <string>
#include <vector>

#include "attach/interface_watch.hpp"
#include "config/options.hpp"
#include "datapath/collector.hpp"
#include "datapath/features.hpp"
#include "datapath/live_filter.hpp"
#include "datapath/skeleton.hpp"
#include "enrich/resolver.hpp"
#include "output/controls.hpp"
#include "output/export_tally.hpp"
#include "output/health.hpp"
#include "output/output.hpp"
#include "report/assembler.hpp"

namespace tcptrack {

// What the classifiers are loaded with for these options on this kernel (the
// session's load, and --check's trial load).
LoadConfig load_config(const Options& opts, const Features& features);

class Session final : public Controls {
   public:
    // Loads and attaches (throws Error with nothing left attached). `exports`
    // (the exporters' errors), `health` (updated every interval, for /healthz)
    // and `resolver` (-r, may be null) must outlive the session.
    Session(const Options& opts, const std::vector<Interface>& ifaces, const Features& features,
            std::vector<std::unique_ptr<Output>> exporters, const ExportTally& exports,
            Health& health, Resolver* resolver);

    // Reports every interval until a stop flag, 'q', --count or a closed
    // stdout; the last report goes to every output's finish(). Returns the exit code.
    int loop(const volatile std::sig_atomic_t& stop);

    std::string set_filter(const std::string& expr) override { return filter_.change(expr); }
    bool keeps(const FlowRow& row) const override { return filter_.keeps(key_of(row)); }
    void set_sort(SortKey key) override { assembler_.set_sort(key); }

   private:
    // Waits until `deadline` (monotonic ns), serving the view's keys; false: 'q'.
    bool wait_until(std::uint64_t deadline, const volatile std::sig_atomic_t& stop);
    void add_enrichers();

    const Options& opts_;
    const ExportTally& exports_;  // for the terminal output's --summary
    Health& health_;
    // Exporters first (made before --netns), the terminal output put in front
    // by loop(); destroyed last, after the datapath is detached.
    std::vector<std::unique_ptr<Output>> outputs_;
    Skeleton skel_;
    Collector collector_;
    LiveFilter filter_;
    InterfaceWatch watch_;  // destroyed before the skeleton: detach, then unload
    ReportAssembler assembler_;
    std::vector<std::unique_ptr<Enricher>> enrichers_;
    int wait_ms_ = 200;  // between checks for a stop (50 with the view: keys act at once)
};

}  // namespace tcptrack
