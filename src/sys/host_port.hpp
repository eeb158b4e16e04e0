// SPDX-License-Identifier: MIT
// HOST:PORT as the options write it ("10.0.0.1:4739", "[fd00::1]:4739",
// "collector:4739"): the one parser for --ipfix, --prometheus and their checks.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tcptrack {

struct HostPort {
    std::string host;        // without the brackets of an IPv6 address
    std::uint16_t port = 0;  // 0 only where the caller allows it (a free port)
    bool bracketed = false;  // written "[ADDR]:PORT": an IPv6 address
};

// Splits `text` at its last ':'. Empty when the host is empty or, unbracketed,
// holds one of "[]:/ " (a bare IPv6 address), or the port is not 1 to 5
// decimal digits up to 65535.
std::optional<HostPort> parse_host_port(std::string_view text);

}  // namespace tcptrack
