// SPDX-License-Identifier: MIT
#pragma once

#include <stdexcept>
#include <string>

namespace tcptrack {

// A runtime failure with one user-facing line (exit code 1).
class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// "Operation not permitted" and friends, phrased for a user: names the capability to grant.
std::string errno_hint(int err);

}  // namespace tcptrack
