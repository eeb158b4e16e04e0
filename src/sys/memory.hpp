// SPDX-License-Identifier: MIT
// Process-wide allocator settings for a program that keeps a sample per flow
// and builds a report's big buffers afresh each interval.
#pragma once

namespace tcptrack {

// Buffers of 2 MiB and more (a million rows' display order: 32 MB) come
// straight from the system and go back to it when freed. glibc's default
// threshold grows to the largest buffer freed, after which such buffers stay
// on the heap once freed: at a million flows the order and the render's
// chunks then stayed resident beside the samples (peak RSS 256 MB instead of
// 247). Smaller allocations keep glibc's defaults.
void tune_allocator();

}  // namespace tcptrack
