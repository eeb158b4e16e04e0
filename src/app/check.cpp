// SPDX-License-Identifier: MIT
#include "app/check.hpp"

#include <bpf/libbpf.h>
#include <fmt/format.h>
#include <cstdio>
#include <stdexcept>

#include "tcptrack/store.h"
#include "app/session.hpp"
#include "datapath/features.hpp"
#include "datapath/skeleton.hpp"
#include "output/format.hpp"
#include "sys/error.hpp"
#include "sys/interfaces.hpp"
#include "sys/netns.hpp"
#include "sys/privileges.hpp"

namespace tcptrack {

namespace {

// The verdict: why tcptrack cannot run here, or "" when a trial load passed.
std::string verdict(const Options& opts, const Features& f, const Privileges& priv,
                    std::string& load_line) {
    if (!priv.enough()) return priv.refusal();
    if (std::string why = f.blocker(); !why.empty()) return why;
    try {
        for (const auto& name : opts.ifaces) lookup_interface(name);
        // The run's own programs, with a small table, prove they pass this kernel's verifier.
        LoadConfig cfg = load_config(opts, f);
        cfg.max_flows = 1024;
        Skeleton trial(cfg);
        load_line = "ok (classifiers and maps loaded, then unloaded)";
    } catch (const Error& e) {
        load_line = "failed";
        return e.what();
    }
    return "";
}

// The store --max-flows would make (skeleton.cpp sizes it): slots, index,
// kernel memory (slots and their health, index buckets, lock stripes, free queue; the per-CPU
// counter cache apart, sized per CPU from the flows and the CPU count).
std::string store_lines(const Options& opts) {
    const int cpus = libbpf_num_possible_cpus();
    const StoreGeometry g =
        StoreGeometry::for_flows(opts.max_flows, cpus > 0 ? static_cast<std::uint32_t>(cpus) : 1);
    const std::uint64_t per_slot = sizeof(tt_slot) + (opts.health ? sizeof(tt_health) : 0);
    const std::uint64_t kernel = std::uint64_t{g.slots} * per_slot +
                                 std::uint64_t{g.index_buckets} * sizeof(tt_index_bucket) +
                                 std::uint64_t{g.lock_stripes} * sizeof(tt_slot_lock) +
                                 std::uint64_t{g.free_queue} * sizeof(std::uint32_t);
    std::string out = fmt::format(
        "{:<15}{} flows (--max-flows), {} index buckets x {}: {} of kernel memory, + {} per "
        "CPU{}\n",
        "capacity", g.slots, g.index_buckets, TT_INDEX_WAYS, human_bytes(kernel),
        human_bytes(std::uint64_t{g.cache_entries_per_cpu()} * sizeof(tt_cache_entry)),
        cpus > 0 ? fmt::format(" ({} CPUs)", cpus) : std::string());
    out += fmt::format("{:<15}{}\n", "hash", "SipHash-1-3, key from getrandom() at each load");
    out += fmt::format(
        "{:<15}forgotten after {:g} s idle (--unassured-timeout), displaced first when the store "
        "has no room\n",
        "unassured", opts.unassured_timeout_s);
    return out;
}

}  // namespace

int run_check(const Options& opts) {
    const Privileges priv = current_privileges();
    const Features* probed = nullptr;
    try {
        probed = &probe_features();
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "tcptrack: %s\n", e.what());
        return static_cast<int>(ExitCode::Usage);
    }
    const Features& f = *probed;

    std::string out;
    out += fmt::format("{:<15}{} (floor: Linux {}.{})\n", "kernel", f.release, kKernelFloor.major,
                       kKernelFloor.minor);
    out += fmt::format("{:<15}{}\n", "privileges", priv.describe());
    if (!opts.netns.empty()) {  // run() entered it: interfaces below are looked up there
        const NetnsTarget t = netns_target(opts.netns);
        out += fmt::format("{:<15}{} ({})\n", "netns", t.arg, t.path);
    }
    for (const auto& s : feature_specs()) {
        const Probe& p = f[s.id];
        out += fmt::format("{:<15}{:<4}{}", s.name, p.ok ? "yes" : "no", s.what);
        if (!p.ok) out += fmt::format(": {}", p.why);
        if (!p.ok && !s.mandatory) out += fmt::format(" -> {}", s.fallback);
        out += "\n";
    }
    std::string attach = "-";
    try {
        attach = use_tcx(f, opts.attach) ? "tcx" : "tc (clsact qdisc + filters)";
    } catch (const Error&) {
        attach = "tcx unavailable";
    }
    out += fmt::format("{:<15}{}\n", "store", "slots read by mmap");
    out += store_lines(opts);
    out += fmt::format("{:<15}{}\n", "attach", attach);

    std::string load_line = "not tried";
    const std::string why = verdict(opts, f, priv, load_line);
    out += fmt::format("{:<15}{}\n", "load", load_line);
    out += fmt::format("{:<15}{}\n", "verdict",
                       why.empty() ? "tcptrack can run here" : "tcptrack cannot run here");
    std::fputs(out.c_str(), stdout);
    std::fflush(stdout);
    if (why.empty()) return 0;
    std::fprintf(stderr, "tcptrack: cannot run here: %s\n", why.c_str());
    return static_cast<int>(ExitCode::Runtime);
}

}  // namespace tcptrack
