// SPDX-License-Identifier: MIT
// RAII owner of the loaded BPF object (bpftool-generated skeleton).
#pragma once

#include <cstdint>

struct tcptrack_bpf;

namespace tcptrack {

struct LoadConfig {
    std::uint32_t max_flows = 65536;
    bool tcx = false;  // load the classifiers with TCX expected attach types
};

class Skeleton {
public:
    // Opens, sizes and loads the object; throws Error with one line on failure.
    explicit Skeleton(const LoadConfig& cfg);
    ~Skeleton();
    Skeleton(const Skeleton&) = delete;
    Skeleton& operator=(const Skeleton&) = delete;

    tcptrack_bpf* get() const { return skel_; }
    tcptrack_bpf* operator->() const { return skel_; }
    std::uint32_t nr_cpus() const { return nr_cpus_; }

private:
    tcptrack_bpf* skel_ = nullptr;
    std::uint32_t nr_cpus_ = 1;
};

// Routes libbpf's own messages: silent unless verbose (then to stderr).
void set_libbpf_verbose(bool verbose);

}  // namespace tcptrack
