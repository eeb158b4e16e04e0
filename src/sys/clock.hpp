// SPDX-License-Identifier: MIT
// The monotonic clock, the same one as the datapath's bpf_ktime_get_ns(): flow
// times (first seen, last active) and report deadlines are all on it.
#pragma once

#include <cstdint>
#include <ctime>

namespace tcptrack {

inline std::uint64_t monotonic_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

}  // namespace tcptrack
