// SPDX-License-Identifier: MIT
// tcptrack --check: like `bpftrace --info`, what this kernel can do and what
// tcptrack would use here, proven by loading the object once.
#pragma once

#include "config/options.hpp"

namespace tcptrack {

// Prints the report on stdout; returns 0 if tcptrack can run here, else 1
// (with one line on stderr naming why).
int run_check(const Options& opts);

}  // namespace tcptrack
