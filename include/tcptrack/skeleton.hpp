// SPDX-License-Identifier: MIT
// RAII owner of the loaded BPF object (bpftool-generated skeleton). The object
// holds every variant; the configuration picks which programs load, so the
// object is loaded once and nothing the kernel refuses is ever tried.
#pragma once

#include <cstdint>

#include "tcptrack/attach.hpp"
#include "tcptrack/features.hpp"

struct tcptrack_bpf;

namespace tcptrack {

struct LoadConfig {
    std::uint32_t max_flows = 65536;
    bool tcx = false;                     // load the classifiers with TCX expected attach types
    Datapath datapath = Datapath::Shared; // which classifier variant to load
    bool iterator = false;                // load the map-iterator program too
};

// What this kernel supports best: per-CPU datapath and iterator where probed.
LoadConfig preferred_load_config(const Features& f, std::uint32_t max_flows, bool tcx);

class Skeleton {
public:
    // Opens, configures and loads the object; throws Error with one line on failure.
    explicit Skeleton(const LoadConfig& cfg);
    ~Skeleton();
    Skeleton(const Skeleton&) = delete;
    Skeleton& operator=(const Skeleton&) = delete;

    tcptrack_bpf* get() const { return skel_; }
    tcptrack_bpf* operator->() const { return skel_; }
    std::uint32_t nr_cpus() const { return nr_cpus_; }
    const LoadConfig& config() const { return cfg_; }
    // Copies of a flow's counters in one `flows` value (nr_cpus, or 1 when shared).
    std::uint32_t counter_copies() const {
        return cfg_.datapath == Datapath::PerCpu ? nr_cpus_ : 1;
    }
    // The loaded classifiers for a device with (or without) an L2 header.
    Programs programs(bool has_l2) const;

private:
    tcptrack_bpf* skel_ = nullptr;
    std::uint32_t nr_cpus_ = 1;
    LoadConfig cfg_;
};

// Routes libbpf's own messages: silent unless verbose (then to stderr). Warnings
// are kept either way so a failed load can name its program and reason.
void set_libbpf_verbose(bool verbose);

}  // namespace tcptrack
