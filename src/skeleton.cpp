// SPDX-License-Identifier: MIT
#include "tcptrack/skeleton.hpp"

#include <bpf/libbpf.h>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fmt/format.h>
#include <sys/stat.h>

#include "tcptrack.skel.h"
#include "tcptrack/error.hpp"
#include "tcptrack/load_log.hpp"

namespace tcptrack {

namespace {

bool g_verbose = false;
std::string g_log;  // libbpf warnings since the last load began

// Without -v nothing is printed: every failure gets one clear line from us,
// built from the warnings kept here.
int libbpf_print(enum libbpf_print_level level, const char* format, va_list args) {
    if (level != LIBBPF_DEBUG && g_log.size() < (1u << 22)) {
        va_list copy;
        va_copy(copy, args);
        const int n = std::vsnprintf(nullptr, 0, format, copy);
        va_end(copy);
        if (n > 0) {
            const std::size_t at = g_log.size();
            g_log.resize(at + static_cast<std::size_t>(n) + 1);
            va_copy(copy, args);
            std::vsnprintf(g_log.data() + at, static_cast<std::size_t>(n) + 1, format, copy);
            va_end(copy);
            g_log.pop_back();  // the terminating NUL
        }
    }
    if (!g_verbose) return 0;
    return std::vfprintf(stderr, format, args);
}

struct Variant {
    bpf_program* in;
    bpf_program* eg;
    bpf_program* in_l3;
    bpf_program* eg_l3;
};

Variant variant(const tcptrack_bpf* s, Datapath d) {
    if (d == Datapath::PerCpu)
        return {s->progs.tcptrack_in, s->progs.tcptrack_eg, s->progs.tcptrack_in_l3,
                s->progs.tcptrack_eg_l3};
    return {s->progs.tcptrack_in_s, s->progs.tcptrack_eg_s, s->progs.tcptrack_in_l3s,
            s->progs.tcptrack_eg_l3s};
}

}  // namespace

void set_libbpf_verbose(bool verbose) {
    g_verbose = verbose;
    libbpf_set_print(libbpf_print);
}

LoadConfig preferred_load_config(const Features& f, std::uint32_t max_flows, bool tcx) {
    LoadConfig c;
    c.max_flows = max_flows;
    c.tcx = tcx;
    c.datapath = f.datapath();
    c.iterator = f.reader() == Reader::Iterator;
    return c;
}

Skeleton::Skeleton(const LoadConfig& cfg) : cfg_(cfg) {
    struct stat st {};
    if (::stat("/sys/kernel/btf/vmlinux", &st) != 0)
        throw Error("kernel has no BTF (/sys/kernel/btf/vmlinux missing): tcptrack needs "
                    "CONFIG_DEBUG_INFO_BTF=y");
    libbpf_set_print(libbpf_print);  // keep warnings for the error line even if never configured

    skel_ = tcptrack_bpf__open();
    if (!skel_) throw Error(fmt::format("cannot open the BPF object: {}", errno_hint(errno)));

    const int ncpus = libbpf_num_possible_cpus();
    if (ncpus <= 0) {
        tcptrack_bpf__destroy(skel_);
        throw Error(fmt::format("cannot count CPUs: {}", errno_hint(-ncpus)));
    }
    nr_cpus_ = static_cast<std::uint32_t>(ncpus);
    skel_->rodata->tt_nr_cpus = nr_cpus_;
    skel_->rodata->tt_counter_copies = counter_copies();
    bpf_map__set_max_entries(skel_->maps.flows, cfg.max_flows);
    bpf_map__set_max_entries(skel_->maps.flow_states, cfg.max_flows);
    // The shared variant keeps one counters entry per flow, written under its lock.
    if (cfg.datapath == Datapath::Shared) bpf_map__set_type(skel_->maps.flows, BPF_MAP_TYPE_HASH);

    // Only the chosen variant loads; the other is never shown to the kernel.
    const Variant use = variant(skel_, cfg.datapath);
    const Variant skip = variant(skel_, cfg.datapath == Datapath::PerCpu ? Datapath::Shared
                                                                          : Datapath::PerCpu);
    for (bpf_program* p : {skip.in, skip.eg, skip.in_l3, skip.eg_l3})
        bpf_program__set_autoload(p, false);
    bpf_program__set_autoload(skel_->progs.tcptrack_dump, cfg.iterator);

#if TCPTRACK_HAVE_TCX
    if (cfg.tcx) {
        for (bpf_program* p : {use.in, use.in_l3})
            bpf_program__set_expected_attach_type(p, BPF_TCX_INGRESS);
        for (bpf_program* p : {use.eg, use.eg_l3})
            bpf_program__set_expected_attach_type(p, BPF_TCX_EGRESS);
    }
#else
    (void)use;
#endif

    g_log.clear();
    const int err = tcptrack_bpf__load(skel_);
    if (err) {
        tcptrack_bpf__destroy(skel_);
        skel_ = nullptr;
        const LoadFailure why = diagnose_load_log(g_log);
        g_log.clear();
        throw Error(fmt::format("cannot load BPF program{}: {}{}{}",
                                why.program.empty() ? "s" : " '" + why.program + "'",
                                errno_hint(-err),
                                why.reason.empty() ? "" : ": the verifier said: " + why.reason,
                                g_verbose ? "" : " (use -v for the verifier log)"));
    }
    g_log.clear();
}

Skeleton::~Skeleton() {
    if (skel_) tcptrack_bpf__destroy(skel_);
}

Programs Skeleton::programs(bool has_l2) const {
    const Variant v = variant(skel_, cfg_.datapath);
    return has_l2 ? Programs{v.in, v.eg} : Programs{v.in_l3, v.eg_l3};
}

}  // namespace tcptrack
