// SPDX-License-Identifier: MIT
// Probes each feature in features.hpp against the running kernel, the way
// bpftrace's bpffeature and bcc's libbpf-tools do: load the smallest program
// or create the smallest map that needs it, and keep the kernel's answer.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fmt/format.h>
#include <linux/bpf.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "datapath/features.hpp"
#include "sys/privileges.hpp"

namespace tcptrack {

namespace {

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

// The store is read through mmap (BPF_F_MMAPABLE, 5.5): create a one-page
// array and map it, the way the collector will.
Probe probe_mmap() {
    LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_MMAPABLE);
    const int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "tt_probe_mmap", 4, 8, 1, &opts);
    if (fd < 0) return from_errno(errno, "cannot create an mmapable array");
    const long page = sysconf(_SC_PAGESIZE);
    void* p = mmap(nullptr, static_cast<std::size_t>(page), PROT_READ, MAP_SHARED, fd, 0);
    const int e = errno;
    close(fd);
    if (p == MAP_FAILED) return from_errno(e, "cannot mmap a BPF array");
    munmap(p, static_cast<std::size_t>(page));
    return yes();
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
    f[FeatureId::Mmap] = probe_mmap();
    f[FeatureId::Tcx] = probe_tcx();
    f[FeatureId::SkbCgroupId] = from_libbpf(
        libbpf_probe_bpf_helper(BPF_PROG_TYPE_SCHED_CLS, BPF_FUNC_skb_cgroup_id, nullptr),
        "bpf_skb_cgroup_id in sched_cls");
    f[FeatureId::KtimeCoarse] = from_libbpf(
        libbpf_probe_bpf_helper(BPF_PROG_TYPE_SCHED_CLS, BPF_FUNC_ktime_get_coarse_ns, nullptr),
        "bpf_ktime_get_coarse_ns in sched_cls");
    return f;
}

}  // namespace

Probe probe_btf() {
    if (access("/sys/kernel/btf/vmlinux", R_OK) == 0) return yes();
    return from_errno(errno, "/sys/kernel/btf/vmlinux");
}

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
