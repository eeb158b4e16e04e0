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

namespace tcptrack {

namespace {

bool g_verbose = false;

// Without -v even warnings stay quiet: every failure gets one clear line from us.
int libbpf_print(enum libbpf_print_level, const char* format, va_list args) {
    if (!g_verbose) return 0;
    return std::vfprintf(stderr, format, args);
}

}  // namespace

void set_libbpf_verbose(bool verbose) {
    g_verbose = verbose;
    libbpf_set_print(libbpf_print);
}

std::string errno_hint(int err) {
    if (err == EPERM || err == EACCES)
        return fmt::format("{} (run as root, or grant CAP_BPF and CAP_NET_ADMIN)",
                           std::strerror(err));
    return std::strerror(err);
}

Skeleton::Skeleton(const LoadConfig& cfg) {
    struct stat st {};
    if (::stat("/sys/kernel/btf/vmlinux", &st) != 0)
        throw Error("kernel has no BTF (/sys/kernel/btf/vmlinux missing): tcptrack needs "
                    "CONFIG_DEBUG_INFO_BTF=y");

    skel_ = tcptrack_bpf__open();
    if (!skel_) throw Error(fmt::format("cannot open the BPF object: {}", errno_hint(errno)));

    const int ncpus = libbpf_num_possible_cpus();
    if (ncpus <= 0) {
        tcptrack_bpf__destroy(skel_);
        throw Error(fmt::format("cannot count CPUs: {}", errno_hint(-ncpus)));
    }
    nr_cpus_ = static_cast<std::uint32_t>(ncpus);
    skel_->rodata->tt_nr_cpus = nr_cpus_;
    bpf_map__set_max_entries(skel_->maps.flows, cfg.max_flows);
    bpf_map__set_max_entries(skel_->maps.flow_states, cfg.max_flows);

#if TCPTRACK_HAVE_TCX
    if (cfg.tcx) {
        bpf_program__set_expected_attach_type(skel_->progs.tcptrack_in, BPF_TCX_INGRESS);
        bpf_program__set_expected_attach_type(skel_->progs.tcptrack_in_l3, BPF_TCX_INGRESS);
        bpf_program__set_expected_attach_type(skel_->progs.tcptrack_eg, BPF_TCX_EGRESS);
        bpf_program__set_expected_attach_type(skel_->progs.tcptrack_eg_l3, BPF_TCX_EGRESS);
    }
#else
    (void)cfg.tcx;
#endif

    const int err = tcptrack_bpf__load(skel_);
    if (err) {
        tcptrack_bpf__destroy(skel_);
        skel_ = nullptr;
        throw Error(fmt::format("cannot load the BPF programs: {}{}", errno_hint(-err),
                                g_verbose ? "" : " (use -v for the verifier log)"));
    }
}

Skeleton::~Skeleton() {
    if (skel_) tcptrack_bpf__destroy(skel_);
}

}  // namespace tcptrack
