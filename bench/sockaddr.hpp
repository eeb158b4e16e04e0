// SPDX-License-Identifier: MIT
// The bench load generators' one address parser (churn, reqgen).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

// IPv4 or IPv6 literal + port; a bad address ends the program (exit 2), naming `prog`.
inline sockaddr_storage make_addr(const char* prog, const std::string& addr, int port,
                                  socklen_t& len) {
    sockaddr_storage ss{};
    auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (inet_pton(AF_INET, addr.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(static_cast<std::uint16_t>(port));
        len = sizeof(*v4);
    } else if (inet_pton(AF_INET6, addr.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(static_cast<std::uint16_t>(port));
        len = sizeof(*v6);
    } else {
        std::fprintf(stderr, "%s: bad address %s\n", prog, addr.c_str());
        std::exit(2);
    }
    return ss;
}
