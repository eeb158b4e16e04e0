// SPDX-License-Identifier: MIT
// Process-wide allocator settings for a program that keeps a sample per flow
// and builds a report's big buffers afresh each interval.
#pragma once

#include <cstddef>

namespace tcptrack {

// Buffers of 2 MiB and more (a million rows' display order: 32 MB) come
// straight from the system and go back to it when freed. glibc's default
// threshold grows to the largest buffer freed, after which such buffers stay
// on the heap once freed: at a million flows the order and the render's
// chunks then stayed resident beside the samples (peak RSS 256 MB instead of
// 247). Smaller allocations keep glibc's defaults.
void tune_allocator();

// Asks for transparent huge pages under [p, p + len) (madvise MADV_HUGEPAGE;
// nothing where THP is off). For big arrays read at random: the samples,
// which a report reads in display order, a TLB miss per row on 4 KiB pages.
void prefer_huge_pages(void* p, std::size_t len);

}  // namespace tcptrack
