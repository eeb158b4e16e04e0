// SPDX-License-Identifier: MIT
#pragma once

#include <stdexcept>
#include <string>

namespace tcptrack {

// The documented exit codes (tcptrack(8)).
enum class ExitCode : int { Ok = 0, Runtime = 1, Usage = 2 };

// A runtime failure with one user-facing line (exit code 1).
class Error : public std::runtime_error {
   public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace tcptrack
