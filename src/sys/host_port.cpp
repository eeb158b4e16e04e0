// SPDX-License-Identifier: MIT
// HOST:PORT parsing (see host_port.hpp).
#include "sys/host_port.hpp"

#include <algorithm>
#include <charconv>

namespace tcptrack {

std::optional<HostPort> parse_host_port(std::string_view text) {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    std::string_view host = text.substr(0, colon);
    const std::string_view port = text.substr(colon + 1);
    const bool bracketed = host.size() > 2 && host.front() == '[' && host.back() == ']';
    if (host.empty() || (!bracketed && host.find_first_of("[]:/ ") != std::string_view::npos))
        return std::nullopt;
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::nullopt;
    unsigned value = 0;
    std::from_chars(port.data(), port.data() + port.size(), value);
    if (value > 65535) return std::nullopt;
    if (bracketed) host = host.substr(1, host.size() - 2);
    return HostPort{std::string(host), static_cast<std::uint16_t>(value), bracketed};
}

}  // namespace tcptrack
