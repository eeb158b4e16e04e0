// SPDX-License-Identifier: MIT
#pragma once

#include "config/options.hpp"

namespace tcptrack {

// Runs tcptrack with parsed options; returns the process exit code.
// Errors are reported as one line on stderr.
int run(const Options& opts);

}  // namespace tcptrack
