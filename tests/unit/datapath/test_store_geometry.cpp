// SPDX-License-Identifier: MIT
// The store's sizes for --max-flows (StoreGeometry::for_flows): the per-CPU
// counter cache follows the flows per CPU, so hosts with many CPUs and few
// flows do not pay 512 KiB per CPU (memory and the collector's scan).
#include <gtest/gtest.h>

#include "datapath/skeleton.hpp"

namespace tcptrack {
namespace {

std::uint64_t cache_bytes(std::uint32_t flows, std::uint32_t cpus) {
    return std::uint64_t{StoreGeometry::for_flows(flows, cpus).cache_entries_per_cpu()} * cpus *
           sizeof(tt_cache_entry);
}

TEST(StoreGeometry, CacheFollowsFlowsPerCpuWithinItsClamp) {
    EXPECT_EQ(sizeof(tt_cache_entry), 64u);  // one line per entry
    // Two CPUs at the default: the 8,192 entries (512 KiB) a CPU always had.
    EXPECT_EQ(StoreGeometry::for_flows(65536, 2).cache_entries_per_cpu(), 8192u);
    EXPECT_EQ(StoreGeometry::for_flows(65536, 2).cache_set_bits, 12u);
    // Twice a CPU's share, rounded up to a power of two.
    EXPECT_EQ(StoreGeometry::for_flows(1000, 2).cache_entries_per_cpu(), 1024u);
    EXPECT_EQ(StoreGeometry::for_flows(65536, 64).cache_entries_per_cpu(), 2048u);
    EXPECT_EQ(StoreGeometry::for_flows(65536, 128).cache_entries_per_cpu(), 1024u);
    // The clamp: never under 128 entries a CPU, never over 8,192.
    EXPECT_EQ(StoreGeometry::for_flows(1, 1).cache_entries_per_cpu(), 128u);
    EXPECT_EQ(StoreGeometry::for_flows(1000, 128).cache_entries_per_cpu(), 128u);
    EXPECT_EQ(StoreGeometry::for_flows(1000000, 128).cache_entries_per_cpu(), 8192u);
    EXPECT_EQ(StoreGeometry::for_flows(1000000, 0).cache_entries_per_cpu(), 8192u);  // no count: 1
    // In all: 8 MiB at the default flows on 128 CPUs (a fixed cache: 64 MiB),
    // and at most 4 x 64 B per flow above the floor, whatever the CPUs.
    EXPECT_EQ(cache_bytes(65536, 128), 8u << 20);
    for (std::uint32_t cpus : {1u, 2u, 3u, 48u, 64u, 96u, 128u, 256u}) {
        for (std::uint32_t flows : {10000u, 65536u, 100000u, 1000000u}) {
            if (flows / cpus >= 64) {
                EXPECT_LE(cache_bytes(flows, cpus), 4ull * 64 * flows) << flows << " on " << cpus;
            }
        }
    }
}

}  // namespace
}  // namespace tcptrack
