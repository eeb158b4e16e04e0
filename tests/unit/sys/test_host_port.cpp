// SPDX-License-Identifier: MIT
// sys/host_port: HOST:PORT as --ipfix and --prometheus take it.
#include <gtest/gtest.h>

#include "sys/host_port.hpp"

using namespace tcptrack;

namespace {

TEST(HostPort, Ipv4AndNames) {
    auto hp = parse_host_port("10.0.0.1:4739");
    ASSERT_TRUE(hp);
    EXPECT_EQ(hp->host, "10.0.0.1");
    EXPECT_EQ(hp->port, 4739);
    EXPECT_FALSE(hp->bracketed);
    hp = parse_host_port("collector.example:65535");
    ASSERT_TRUE(hp);
    EXPECT_EQ(hp->host, "collector.example");
    EXPECT_EQ(hp->port, 65535);
    hp = parse_host_port("localhost:0");  // port 0: callers that allow it pick a free one
    ASSERT_TRUE(hp);
    EXPECT_EQ(hp->port, 0);
}

TEST(HostPort, BracketedIpv6) {
    auto hp = parse_host_port("[fd00::1]:9100");
    ASSERT_TRUE(hp);
    EXPECT_EQ(hp->host, "fd00::1");
    EXPECT_EQ(hp->port, 9100);
    EXPECT_TRUE(hp->bracketed);
    hp = parse_host_port("[::1]:0");
    ASSERT_TRUE(hp);
    EXPECT_EQ(hp->host, "::1");
    EXPECT_FALSE(parse_host_port("::1:9100"));  // a bare IPv6 address: brackets needed
    EXPECT_FALSE(parse_host_port("[]:9100"));
}

TEST(HostPort, BadHostsAndPorts) {
    for (const char* bad :
         {"9100", ":9100", "host:", "host:65536", "host:123456", "host:-1", "host:+80", "host:8o",
          "host: 80", "a b:80", "a/b:80", "udp://h:80", "h]:80", "[h:80"})
        EXPECT_FALSE(parse_host_port(bad)) << bad;
}

}  // namespace
