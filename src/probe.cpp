// SPDX-License-Identifier: MIT
// Probes each feature in features.hpp against the running kernel, the way
// bpftrace's bpffeature and bcc's libbpf-tools do: load the smallest program
// or create the smallest map that needs it, and keep the kernel's answer.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>
#include <linux/bpf.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "tcptrack/features.hpp"
#include "tcptrack/privileges.hpp"

namespace tcptrack {

namespace {

// IDs only grow, so older uapi headers may lack the name.
constexpr int kFuncMapLookupPercpuElem = 195;

Probe yes() { return Probe{true, ""}; }
Probe no(std::string why) { return Probe{false, std::move(why)}; }
Probe from_errno(int err, const char* context) {
    return no(fmt::format("{}: {}", context, std::strerror(err)));
}

// libbpf_probe_* return 1 (yes), 0 (no) or -errno (could not tell).
Probe from_libbpf(int ret, const char* context) {
    if (ret == 1) return yes();
    if (ret == 0) return no(std::string(context) + ": not supported by this kernel");
    return from_errno(-ret, context);
}

Probe probe_btf() {
    if (access("/sys/kernel/btf/vmlinux", R_OK) == 0) return yes();
    return from_errno(errno, "/sys/kernel/btf/vmlinux");
}

// The real thing: a trivial iter/bpf_map_elem program. Hardened kernels refuse
// every tracing program (EPERM even for root) while classifiers load fine.
Probe probe_iterator() {
    const int btf_id = libbpf_find_vmlinux_btf_id("bpf_map_elem", BPF_TRACE_ITER);
    if (btf_id < 0) return no("the kernel has no bpf_map_elem iterator");
    const bpf_insn insns[] = {
        {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0},  // r0 = 0
        {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
    };
    LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_TRACE_ITER,
                .attach_btf_id = static_cast<__u32>(btf_id));
    const int fd = bpf_prog_load(BPF_PROG_TYPE_TRACING, "tt_probe_iter", "GPL", insns, 2, &opts);
    if (fd < 0) return from_errno(errno, "the kernel refused an iter/bpf_map_elem program");
    close(fd);
    return yes();
}

// An empty hash answers a batch lookup with ENOENT where batches exist.
Probe probe_batch() {
    const int fd = bpf_map_create(BPF_MAP_TYPE_HASH, "tt_probe_batch", 4, 4, 1, nullptr);
    if (fd < 0) return from_errno(errno, "cannot create a probe map");
    std::uint32_t keys[1], vals[1], count = 1, token = 0;
    const int err = bpf_map_lookup_batch(fd, nullptr, &token, keys, vals, &count, nullptr);
    const int e = errno;
    close(fd);
    if (err == 0 || e == ENOENT) return yes();
    return from_errno(e, "BPF_MAP_LOOKUP_BATCH");
}

Probe probe_tcx() {
#if TCPTRACK_HAVE_TCX
    // Querying lo's TCX ingress (ifindex 1 in every namespace) changes nothing;
    // kernels before 6.6 reject the attach type.
    LIBBPF_OPTS(bpf_prog_query_opts, q);
    if (bpf_prog_query_opts(1, BPF_TCX_INGRESS, &q) == 0) return yes();
    const int e = errno;
    if (e == EINVAL) return no("the kernel has no TCX (EINVAL on a TCX query)");
    return from_errno(e, "TCX query");
#else
    return no("this build's libbpf is older than 1.3");
#endif
}

Features probe_all() {
    Features f;
    utsname u{};
    if (uname(&u) == 0) f.release = u.release;
    f.version = parse_kernel_release(f.release);
    // Before 5.11 BPF memory is charged to RLIMIT_MEMLOCK, and the probes run
    // before libbpf would raise it; a failure here shows up as the probe's EPERM.
    if (f.version < KernelVersion{5, 11, 0}) {
        const rlimit unlimited{RLIM_INFINITY, RLIM_INFINITY};
        setrlimit(RLIMIT_MEMLOCK, &unlimited);
    }
    f[FeatureId::Btf] = probe_btf();
    // Without CAP_BPF every load fails alike: the kernel's features cannot be told.
    if (!current_privileges().bpf) {
        for (const auto& s : feature_specs())
            if (s.id != FeatureId::Btf) f[s.id] = no("cannot probe without CAP_BPF");
        return f;
    }
    f[FeatureId::SchedCls] =
        from_libbpf(libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SCHED_CLS, nullptr), "sched_cls");
    f[FeatureId::RingBuf] =
        from_libbpf(libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nullptr), "ringbuf map");
    f[FeatureId::PercpuLookup] = from_libbpf(
        libbpf_probe_bpf_helper(BPF_PROG_TYPE_SCHED_CLS,
                                static_cast<bpf_func_id>(kFuncMapLookupPercpuElem), nullptr),
        "bpf_map_lookup_percpu_elem");
    f[FeatureId::Iterator] = probe_iterator();
    f[FeatureId::Batch] = probe_batch();
    f[FeatureId::Tcx] = probe_tcx();
    return f;
}

}  // namespace

const Features& probe_features() {
    static const Features f = [] {
        Features probed = probe_all();
        if (const char* env = std::getenv("TCPTRACK_DISABLE"))
            apply_disabled(probed, parse_disable_list(env));
        return probed;
    }();
    return f;
}

}  // namespace tcptrack
