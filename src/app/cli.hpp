// SPDX-License-Identifier: MIT
// The command line (CLI11): parsing and validation into Options.
#pragma once

#include <optional>
#include <string>

#include "config/options.hpp"
#include "sys/error.hpp"

namespace tcptrack {

struct ParseResult {
    std::optional<Options> options;  // set when the program should run
    ExitCode code = ExitCode::Ok;    // meaningful when options is empty
    std::string out;                 // text for stdout (--help, --version)
    std::string err;                 // one line for stderr (usage errors)
};

ParseResult parse_options(int argc, const char* const* argv);

const char* version_string();

}  // namespace tcptrack
