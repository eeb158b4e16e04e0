// SPDX-License-Identifier: MIT
// Test helpers: flow keys and addresses from text (network order, as the
// datapath stores them).
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "tcptrack/abi.h"
#include "report/report.hpp"

namespace tt_test {

// Byte-equal keys (the datapath compares them the same way).
inline bool same_key(const tt_flow_key& a, const tt_flow_key& b) {
    return std::memcmp(&a, &b, sizeof(a)) == 0;
}

// inet_pton into `out`; a bad literal fails the calling test.
inline void parse_addr(int af, const char* text, void* out) {
    EXPECT_EQ(inet_pton(af, text, out), 1) << text;
}

inline tcptrack::Address address(int af, const char* text) {
    tcptrack::Address a{};
    parse_addr(af, text, a.data());
    return a;
}

// Key (a, pa) -> (b, pb) on interface `ifindex`, as given: not normalised.
inline tt_flow_key flow_key(int af, const char* a, std::uint16_t pa, const char* b,
                            std::uint16_t pb, std::uint32_t ifindex) {
    tt_flow_key k{};
    parse_addr(af, a, k.addr_a);
    parse_addr(af, b, k.addr_b);
    k.port_a = htons(pa);
    k.port_b = htons(pb);
    k.ifindex = ifindex;
    k.family = af == AF_INET ? TT_FAMILY_INET : TT_FAMILY_INET6;
    return k;
}

}  // namespace tt_test
