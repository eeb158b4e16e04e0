// SPDX-License-Identifier: MIT
// Reads libbpf's own (captured, normally silent) output after a failed load,
// so the one-line error can name the program and the verifier's reason
// without -v.
#pragma once

#include <string>
#include <string_view>

namespace tcptrack {

struct LoadFailure {
    std::string program;  // "" when libbpf did not name one
    std::string reason;   // the verifier's last meaningful line, or ""
};

LoadFailure diagnose_load_log(std::string_view log);

}  // namespace tcptrack
