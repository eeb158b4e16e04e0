// SPDX-License-Identifier: MIT
#include "sys/memory.hpp"

#include <malloc.h>

namespace tcptrack {

void tune_allocator() { mallopt(M_MMAP_THRESHOLD, 2 * 1024 * 1024); }

}  // namespace tcptrack
