// SPDX-License-Identifier: MIT
// The capture filter: a tcpdump-style expression compiled into the postfix
// program (struct tt_filter, tcptrack/filter_vm.h) that the classifiers run on every segment
// before any flow map, and that user space runs on keys it already holds.
//
//   expr      := term { ("or" | "||") term }
//   term      := factor { ("and" | "&&") factor }
//   factor    := ("not" | "!") factor | "(" expr ")" | primitive
//   primitive := [ "src" | "dst" ] ( "host" ADDR | "net" CIDR | "port" N | "portrange" N-M )
//              | VALUE   (repeats the previous primitive's qualifiers: "port 80 or 443")
//
// A filter selects whole connections: "src X" holds when X is the sending end
// of either direction, so "src net 10.0.0.0/8 and dst port 443" keeps
// connections between 10/8 and port 443 on the other end, whoever opened them.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

#include "tcptrack/abi.h"
#include "tcptrack/filter_vm.h"

namespace tcptrack {

// A bad expression; what() is one line naming the offending token.
struct FilterError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Compiles `expr` ("" or blanks: no filter, n = 0). Throws FilterError.
tt_filter compile_filter(std::string_view expr);

// True when the connection with this normalised key passes (user-space copy of
// the classifiers' check, the same code: tt_filter_match in tcptrack/filter_vm.h).
bool filter_matches(const tt_filter& f, const tt_flow_key& key);

}  // namespace tcptrack
