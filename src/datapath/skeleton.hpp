// SPDX-License-Identifier: MIT
// RAII owner of the loaded BPF object (bpftool-generated skeleton), sized for
// --max-flows and loaded once.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "tcptrack/store.h"
#include "attach/attach.hpp"
#include "config/options.hpp"
#include "datapath/features.hpp"

struct tcptrack_bpf;
struct tt_filter;

namespace tcptrack {

struct LoadConfig {
    std::uint32_t max_flows = kDefaultMaxFlows;
    bool tcx = false;    // load the classifiers with TCX expected attach types
    bool health = true;  // connection health (tcptrack/health.h); off: its map has one entry
    std::uint32_t rtt_gap_us =
        kDefaultRttRateLimitUs;  // RTT probe rate limit per side (--rtt-rate-limit)
    bool coarse_clock = true;    // the limit reads bpf_ktime_get_coarse_ns (probed, 5.11)
    bool owner_cgroup = false;   // lifecycle segments record their socket's cgroup (probed)
    // The hashes' key (tcptrack/store.h): empty = 16 bytes from getrandom() at this load
    // (always, but in tests, which fix it to reproduce collisions).
    std::optional<std::array<std::uint8_t, 16>> hash_key;
    // The per-CPU counter cache sized, and walked by closes and reports, as on
    // a host with this many CPUs (0 or fewer than this host's: this host's; at
    // most TT_MAX_CPUS).
    // For the benchmarks, which measure a 64- or 128-CPU host's cache here;
    // the classifiers still use only this host's CPUs' entries.
    std::uint32_t cache_cpus = 0;
};

// Sizes of the slot store's maps for a flow limit (tcptrack/store.h): the one
// place they are derived, for the loader, the benchmarks and the tests.
struct StoreGeometry {
    std::uint32_t slots;           // one per flow
    std::uint32_t index_buckets;   // power of two >= slots / 8: a table at most half full
    std::uint32_t lock_stripes;    // power of two, about slots / 16
    std::uint32_t free_queue;      // recycled slots the kernel can hold at once: all of them
    std::uint32_t cache_set_bits;  // per-CPU counter cache: 1 << bits sets of TT_CACHE_WAYS
    std::uint32_t cache_entries_per_cpu() const { return TT_CACHE_WAYS << cache_set_bits; }
    static StoreGeometry for_flows(std::uint32_t max_flows, std::uint32_t cpus);
};

class Skeleton {
   public:
    // Opens, configures and loads the object; throws Error with one line on failure.
    explicit Skeleton(const LoadConfig& cfg);
    ~Skeleton();
    Skeleton(const Skeleton&) = delete;
    Skeleton& operator=(const Skeleton&) = delete;

    tcptrack_bpf* get() const { return skel_; }
    tcptrack_bpf* operator->() const { return skel_; }
    std::uint32_t nr_cpus() const { return nr_cpus_; }        // possible CPUs: per-CPU maps' values
    std::uint32_t cache_cpus() const { return cache_cpus_; }  // CPUs the counter cache has room for
    // Entries of the counter cache in all: cache_cpus() x the geometry's per CPU.
    std::size_t cache_entries() const {
        return std::size_t{cache_cpus_} * geo_.cache_entries_per_cpu();
    }
    const LoadConfig& config() const { return cfg_; }
    const StoreGeometry& geometry() const { return geo_; }
    // Installs the capture filter (n = 0: none) in the running classifiers:
    // the copy not in use is written, then selected with a selector whose low
    // byte none of the last 127 filters had, so the verdicts stamped in the
    // flows' slots (tt_slot.fsel) are judged again.
    void set_filter(const tt_filter& f);
    // The loaded classifiers for a device with (or without) an L2 header.
    Programs programs(bool has_l2) const;
    // The hashes' key in use (for the tests' fixture, which recomputes where a
    // flow sits; never shown to a user).
    const std::array<std::uint8_t, 16>& hash_key() const { return hash_key_; }

   private:
    void set_hash_key(const LoadConfig& cfg);

    tcptrack_bpf* skel_ = nullptr;
    std::array<std::uint8_t, 16> hash_key_{};
    std::uint32_t filter_changes_ = 0;  // filters installed: tt_filter_sel's upper bits
    std::uint32_t nr_cpus_ = 1;
    std::uint32_t cache_cpus_ = 1;
    LoadConfig cfg_;
    StoreGeometry geo_;
};

// Routes libbpf's own messages: silent unless verbose (then to stderr). Warnings
// are kept either way so a failed load can name its program and reason.
void set_libbpf_verbose(bool verbose);

}  // namespace tcptrack
