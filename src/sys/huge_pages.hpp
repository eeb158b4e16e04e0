// SPDX-License-Identifier: MIT
// Transparent huge pages for the few buffers that grow with the flow count
// (the collector's samples, the report's display order): a report reads the
// samples in display order, one random sample per row, and with 4 KiB pages
// nearly every row at a million flows also missed the TLB.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>

namespace tcptrack {

// Asks for huge pages over the whole 2 MiB pages inside [p, p + len): pages
// touched after this come as huge pages where THP is "madvise" or "always".
// Only a hint: a kernel without THP, or a smaller range, keeps 4 KiB pages.
inline void advise_huge_pages(const void* p, std::size_t len) {
    constexpr std::uintptr_t kHuge = std::uintptr_t{2} << 20;
    const auto start = reinterpret_cast<std::uintptr_t>(p);
    const std::uintptr_t first = (start + kHuge - 1) & ~(kHuge - 1);
    const std::uintptr_t last = (start + len) & ~(kHuge - 1);
    if (last > first)
        madvise(reinterpret_cast<void*>(first), last - first,
                MADV_HUGEPAGE);  // hint: errors ignored
}

}  // namespace tcptrack
