// SPDX-License-Identifier: MIT
#include "app/session.hpp"

#include <algorithm>
#include <cstdio>

#include "app/outputs.hpp"
#include "enrich/cgroup_paths.hpp"
#include "enrich/system_owners.hpp"
#include "sys/clock.hpp"
#include "sys/error.hpp"

namespace tcptrack {

LoadConfig load_config(const Options& opts, const Features& features) {
    LoadConfig c;
    c.max_flows = opts.max_flows;
    c.tcx = use_tcx(features, opts.attach);
    c.health = opts.health;
    c.rtt_gap_us = opts.rtt_rate_limit_us;
    c.coarse_clock = features.has(FeatureId::KtimeCoarse);
    // Only process attribution reads it; the kernel may lack the helper.
    c.owner_cgroup = opts.process && features.has(FeatureId::SkbCgroupId);
    c.hash_key = opts.test_hash_key;  // set only in test mode (app/cli.cpp); else random
    return c;
}

Session::Session(const Options& opts, const std::vector<Interface>& ifaces,
                 const Features& features, std::vector<std::unique_ptr<Output>> exporters,
                 const ExportTally& exports, Health& health, Resolver* resolver)
    : opts_(opts),
      exports_(exports),
      health_(health),
      outputs_(std::move(exporters)),
      skel_(load_config(opts, features)),
      collector_(skel_),
      filter_(skel_, collector_, opts.filter),  // before attaching: nothing unfiltered counts
      watch_([this](bool has_l2) { return skel_.programs(has_l2); }, skel_.config().tcx,
             opts.attach == AttachMode::Auto),
      assembler_(opts, collector_, watch_.names(), monotonic_ns()) {
    assembler_.set_live_filter(&filter_);
    if (resolver)
        assembler_.set_name_lookup(
            [resolver](Family f, const Address& a) { return resolver->name(f, a); });
    add_enrichers();
    // Patterns, --all-interfaces: interfaces come and go during the run.
    const InterfaceSelection sel(opts.ifaces, opts.all_interfaces);
    watch_.set_verbose(opts.verbose && sel.dynamic());
    for (const auto& i : ifaces) watch_.add(i);
    if (sel.dynamic()) watch_.follow(sel, opts.max_interfaces);
}

// Process attribution (sock_diag + /proc) in this process's network
// namespace, and beyond a flow's interface for a socket not there; without
// sock_diag the rows just have no owner.
void Session::add_enrichers() {
    if (!opts_.process) return;
    try {
        auto system = std::make_shared<SystemOwners>();
        CgroupOwner by_cgroup;
        if (skel_.config().owner_cgroup) {
            auto cgroups = std::make_shared<CgroupOwners>(CgroupPaths::system());
            by_cgroup = [cgroups](std::uint32_t id) { return (*cgroups)(id, monotonic_ns()); };
        }
        enrichers_.push_back(std::make_unique<ProcessCache>(
            [system](std::vector<OwnerQuery>& q) { (*system)(q); }, std::move(by_cgroup),
            [system] { system->release_idle(); }));
    } catch (const Error& e) {
        std::fprintf(stderr, "tcptrack: %s\n", e.what());
    }
    for (auto& e : enrichers_) assembler_.add_enricher(*e);
}

bool Session::wait_until(std::uint64_t deadline, const volatile std::sig_atomic_t& stop) {
    for (std::uint64_t now = monotonic_ns(); now < deadline && !stop; now = monotonic_ns()) {
        const std::uint64_t left_ms = (deadline - now + 999999) / 1000000;
        // Interfaces that appear are attached here, within a wait (attach/interface_watch).
        watch_.poll(static_cast<int>(std::min<std::uint64_t>(left_ms, wait_ms_)));
        for (auto& o : outputs_)
            if (!o->interact()) return false;  // 'q'
    }
    return true;
}

int Session::loop(const volatile std::sig_atomic_t& stop) {
    if (auto out = make_terminal_output(opts_, *this, exports_))
        outputs_.insert(outputs_.begin(), std::move(out));
    if (std::any_of(outputs_.begin(), outputs_.end(),
                    [](const auto& o) { return o->interactive(); }))
        wait_ms_ = 50;
    const std::uint64_t interval_ns = static_cast<std::uint64_t>(opts_.interval_s * 1e9);
    const std::uint64_t start = monotonic_ns();
    std::uint64_t last = start, reports = 0;
    for (;;) {
        const bool quit = !wait_until(start + (reports + 1) * interval_ns, stop);
        // A stop ends the interval early with a final report of it, so a
        // connection that closed since the last report is still printed.
        const bool stopping = stop || quit;
        if (!stopping) watch_.check();
        // Connections of an interface that went away end now, shown once more.
        collector_.end_interfaces(watch_.take_gone());
        const std::uint64_t now = monotonic_ns();
        const ReportFrame& frame = assembler_.assemble(now, now - last, watch_.watched());
        health_.update(now, watch_.not_watched());
        last = now;
        ++reports;
        if (stopping || (opts_.count && reports >= *opts_.count)) {
            for (auto& o : outputs_) o->finish(&frame);  // every output's last report
            return 0;
        }
        bool closed = false;
        for (auto& o : outputs_) closed = !o->write(frame) || closed;
        if (closed) return 0;  // stdout closed (| head): a quiet stop
    }
}

}  // namespace tcptrack
