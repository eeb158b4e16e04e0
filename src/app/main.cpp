// SPDX-License-Identifier: MIT
// Thin entry point: parse options, run. The logic lives in tcptrack_runtime.
#include <cstdio>

#include "app/cli.hpp"
#include "app/run.hpp"
#include "sys/memory.hpp"

int main(int argc, char** argv) {
    const tcptrack::ParseResult parsed = tcptrack::parse_options(argc, argv);
    if (!parsed.options) {
        if (!parsed.out.empty()) std::fputs(parsed.out.c_str(), stdout);
        if (!parsed.err.empty()) std::fprintf(stderr, "%s\n", parsed.err.c_str());
        return static_cast<int>(parsed.code);
    }
    tcptrack::tune_allocator();
    return tcptrack::run(*parsed.options);
}
