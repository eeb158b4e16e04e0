// SPDX-License-Identifier: MIT
#include "datapath/skeleton.hpp"

#include <bpf/libbpf.h>
#include <fmt/format.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "tcptrack/filter_vm.h"  // before the skeleton: its .bss holds struct tt_filter
#include "tcptrack/store.h"      // before the skeleton: its .rodata holds struct tt_hash_key
#include "tcptrack.skel.h"
#include "datapath/load_log.hpp"
#include "sys/error.hpp"
#include "sys/privileges.hpp"

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

std::uint32_t pow2_at_least(std::uint64_t n) {
    std::uint64_t p = 1;
    while (p < n) p <<= 1;
    return static_cast<std::uint32_t>(p);
}

}  // namespace

void set_libbpf_verbose(bool verbose) {
    g_verbose = verbose;
    libbpf_set_print(libbpf_print);
}

StoreGeometry StoreGeometry::for_flows(std::uint32_t max_flows, std::uint32_t cpus) {
    StoreGeometry g{};
    g.slots = std::max<std::uint32_t>(max_flows, 1);
    g.index_buckets = pow2_at_least((g.slots + 7) / 8);
    g.lock_stripes = std::clamp<std::uint32_t>(pow2_at_least(g.slots / 16), 64, 65536);
    // Every slot fits: a push-back after a lost insert race can never fail.
    g.free_queue = g.slots;
    // A CPU's cache entries: twice its share of the flows (RSS and the
    // senders' CPUs spread them, unevenly), as a power of two, within the
    // clamp: at most 4 x 64 B per flow in all, whatever the CPU count, and
    // the 512 KiB per CPU of a fixed-size cache only where flows need it.
    const std::uint32_t n = std::max(cpus, 1u);
    const std::uint64_t per_cpu = (2 * std::uint64_t{g.slots} + n - 1) / n;
    const std::uint32_t sets = pow2_at_least((per_cpu + TT_CACHE_WAYS - 1) / TT_CACHE_WAYS);
    std::uint32_t bits = 0;
    while ((1u << bits) < sets) ++bits;
    g.cache_set_bits =
        std::clamp<std::uint32_t>(bits, TT_CACHE_SET_BITS_MIN, TT_CACHE_SET_BITS_MAX);
    return g;
}

Skeleton::Skeleton(const LoadConfig& cfg) : cfg_(cfg) {
    if (const Probe btf = probe_btf(); !btf.ok)
        throw Error("kernel has no BTF (" + btf.why + "): tcptrack needs CONFIG_DEBUG_INFO_BTF=y");
    libbpf_set_print(libbpf_print);  // keep warnings for the error line even if never configured

    skel_ = tcptrack_bpf__open();
    if (!skel_) throw Error(fmt::format("cannot open the BPF object: {}", errno_hint(errno)));

    const int ncpus = libbpf_num_possible_cpus();
    if (ncpus <= 0) {
        tcptrack_bpf__destroy(skel_);
        throw Error(fmt::format("cannot count CPUs: {}", errno_hint(-ncpus)));
    }
    nr_cpus_ = static_cast<std::uint32_t>(ncpus);
    if (nr_cpus_ > TT_MAX_CPUS) {
        tcptrack_bpf__destroy(skel_);
        throw Error(fmt::format("this host has {} possible CPUs; tcptrack supports at most {}",
                                nr_cpus_, TT_MAX_CPUS));
    }
    if (cfg.max_flows > TT_MAX_SLOTS) {
        tcptrack_bpf__destroy(skel_);
        throw Error(fmt::format("--max-flows {} is more than the store's {} slots", cfg.max_flows,
                                TT_MAX_SLOTS));
    }
    cache_cpus_ = std::clamp<std::uint32_t>(cfg.cache_cpus, nr_cpus_, TT_MAX_CPUS);
    geo_ = StoreGeometry::for_flows(cfg.max_flows, cache_cpus_);
    skel_->rodata->tt_max_slots = geo_.slots;
    skel_->rodata->tt_index_mask = geo_.index_buckets - 1;
    skel_->rodata->tt_lock_mask = geo_.lock_stripes - 1;
    bpf_map__set_max_entries(skel_->maps.slots, geo_.slots);
    // Without health the verifier drops its code (a constant) and the map shrinks to one entry.
    skel_->rodata->tt_health_on = cfg.health ? 1 : 0;
    skel_->rodata->tt_rtt_gap_us = cfg.rtt_gap_us;
    skel_->rodata->tt_coarse_on = cfg.coarse_clock ? 1 : 0;
    bpf_map__set_max_entries(skel_->maps.health, cfg.health ? geo_.slots : 1);
    skel_->rodata->tt_owner_on = cfg.owner_cgroup ? 1 : 0;
    bpf_map__set_max_entries(skel_->maps.flow_index, geo_.index_buckets);
    bpf_map__set_max_entries(skel_->maps.slot_locks, geo_.lock_stripes);
    bpf_map__set_max_entries(skel_->maps.free_slots, geo_.free_queue);
    skel_->rodata->tt_nr_cpus = cache_cpus_;
    set_hash_key(cfg);
    skel_->rodata->tt_cache_bits = geo_.cache_set_bits;
    bpf_map__set_max_entries(skel_->maps.flow_cache, static_cast<std::uint32_t>(cache_entries()));
    bpf_map__set_max_entries(skel_->maps.filter_arg, nr_cpus_);
    bpf_map__set_max_entries(skel_->maps.slow_arg, nr_cpus_);

#if TCPTRACK_HAVE_TCX
    if (cfg.tcx) {
        for (bpf_program* p : {skel_->progs.tcptrack_in, skel_->progs.tcptrack_in_l3})
            bpf_program__set_expected_attach_type(p, BPF_TCX_INGRESS);
        for (bpf_program* p : {skel_->progs.tcptrack_eg, skel_->progs.tcptrack_eg_l3})
            bpf_program__set_expected_attach_type(p, BPF_TCX_EGRESS);
    }
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

// The key lives in the object's read-only data (the kernel's copy) and here,
// for the tests' fixture; it is never printed, logged or exported.
void Skeleton::set_hash_key(const LoadConfig& cfg) {
    std::array<std::uint8_t, 16> k{};
    if (cfg.hash_key) {
        k = *cfg.hash_key;
    } else {
        std::size_t got = 0;
        while (got < k.size()) {
            const ssize_t n = getrandom(k.data() + got, k.size() - got, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                const int err = errno;
                tcptrack_bpf__destroy(skel_);
                skel_ = nullptr;
                throw Error(fmt::format("cannot draw the hash key: {}", errno_hint(err)));
            }
            got += static_cast<std::size_t>(n);
        }
    }
    tt_hash_key key{};
    std::memcpy(&key.k0, k.data(), 8);
    std::memcpy(&key.k1, k.data() + 8, 8);
    std::memcpy(const_cast<tt_hash_key*>(&skel_->rodata->tt_hash_key), &key, sizeof(key));
    hash_key_ = k;
}

Skeleton::~Skeleton() {
    if (skel_) tcptrack_bpf__destroy(skel_);
}

void Skeleton::set_filter(const tt_filter& f) {
    auto* bss = skel_->bss;
    if (f.n == 0) {
        __atomic_store_n(&bss->tt_filter_sel, 0u, __ATOMIC_RELEASE);
        return;
    }
    // Each filter installed counts, so its selector differs from the last
    // 127's (bit 0: the copy in use) and the flows' stamps are judged again;
    // a low byte of 0 is skipped: it is a new slot's "never judged".
    ++filter_changes_;
    if ((filter_changes_ & 0x7f) == 0) ++filter_changes_;
    // Edits come at human speed, so a classifier still running the idle copy
    // from the change before last has long finished with it.
    const std::uint32_t cur = __atomic_load_n(&bss->tt_filter_sel, __ATOMIC_ACQUIRE);
    const std::uint32_t next = cur ? (cur & 1) ^ 1 : 0;
    std::memcpy(&bss->tt_filters[next], &f, sizeof(f));
    __atomic_store_n(&bss->tt_filter_sel, filter_changes_ << 1 | next, __ATOMIC_RELEASE);
}

Programs Skeleton::programs(bool has_l2) const {
    return has_l2 ? Programs{skel_->progs.tcptrack_in, skel_->progs.tcptrack_eg}
                  : Programs{skel_->progs.tcptrack_in_l3, skel_->progs.tcptrack_eg_l3};
}

}  // namespace tcptrack
