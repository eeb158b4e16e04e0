// SPDX-License-Identifier: MIT
#include "datapath/load_log.hpp"

namespace tcptrack {

namespace {

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// Verifier statistics and blank lines say nothing about why.
bool is_noise(std::string_view line) {
    return line.empty() || starts_with(line, "processed ") ||
           starts_with(line, "verification time") || starts_with(line, "stack depth") ||
           starts_with(line, "libbpf: ");
}

}  // namespace

LoadFailure diagnose_load_log(std::string_view log) {
    LoadFailure f;
    bool in_log = false;
    std::string_view last;
    while (!log.empty()) {
        const auto nl = log.find('\n');
        std::string_view line = log.substr(0, nl);
        log = nl == std::string_view::npos ? std::string_view{} : log.substr(nl + 1);
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);

        if (const auto p = line.find("prog '"); p != std::string_view::npos && f.program.empty()) {
            const auto start = p + 6;
            const auto end = line.find('\'', start);
            if (end != std::string_view::npos &&
                line.find("load failed", end) != std::string_view::npos)
                f.program = std::string(line.substr(start, end - start));
        }
        if (line.find("-- BEGIN PROG LOAD LOG --") != std::string_view::npos) {
            in_log = true;
            continue;
        }
        if (line.find("-- END PROG LOAD LOG --") != std::string_view::npos) {
            if (!last.empty() && f.reason.empty()) f.reason = std::string(last);
            in_log = false;
            continue;
        }
        if (in_log && !is_noise(line)) last = line;
    }
    return f;
}

}  // namespace tcptrack
