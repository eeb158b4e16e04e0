// SPDX-License-Identifier: MIT
#include "sys/memory.hpp"

#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

namespace tcptrack {

void tune_allocator() { mallopt(M_MMAP_THRESHOLD, 2 * 1024 * 1024); }

void prefer_huge_pages(void* p, std::size_t len) {
    const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
    const auto b = reinterpret_cast<std::uintptr_t>(p);
    const std::uintptr_t lo = (b + page - 1) & ~(page - 1), hi = (b + len) & ~(page - 1);
    // Advice only: a kernel without THP refuses it, and nothing changes.
    if (hi > lo) (void)madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
}

}  // namespace tcptrack
