// SPDX-License-Identifier: MIT
// The filter expression: grammar, precedence, errors that name their token,
// and what the compiled program (the classifiers' own code, tcptrack/filter_vm.h) keeps.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "datapath/filter.hpp"

namespace tcptrack {
namespace {

// A normalised key as the datapath files it (a < b), from client/server text.
tt_flow_key key(const char* a, std::uint16_t pa, const char* b, std::uint16_t pb) {
    tt_flow_key k{};
    const bool v6 = std::strchr(a, ':') != nullptr;
    k.family = v6 ? TT_FAMILY_INET6 : TT_FAMILY_INET;
    inet_pton(v6 ? AF_INET6 : AF_INET, a, k.addr_a);
    inet_pton(v6 ? AF_INET6 : AF_INET, b, k.addr_b);
    k.port_a = htons(pa);
    k.port_b = htons(pb);
    tt_key_normalise(&k);
    return k;
}

bool keeps(const std::string& expr, const tt_flow_key& k) {
    return filter_matches(compile_filter(expr), k);
}

std::string error_of(const std::string& expr) {
    try {
        compile_filter(expr);
    } catch (const FilterError& e) {
        return e.what();
    }
    return "(accepted)";
}

TEST(Filter, EmptyKeepsEverything) {
    EXPECT_EQ(compile_filter("").n, 0u);
    EXPECT_EQ(compile_filter("  \t ").n, 0u);
    EXPECT_TRUE(keeps("", key("10.0.0.1", 1, "10.0.0.2", 2)));
}

TEST(Filter, HostNetPortPortrange) {
    const auto k = key("10.1.2.3", 40000, "192.0.2.7", 443);
    EXPECT_TRUE(keeps("host 10.1.2.3", k));
    EXPECT_TRUE(keeps("host 192.0.2.7", k));
    EXPECT_FALSE(keeps("host 10.1.2.4", k));
    EXPECT_TRUE(keeps("net 10.0.0.0/8", k));
    EXPECT_TRUE(keeps("net 192.0.2.0/24", k));
    EXPECT_FALSE(keeps("net 10.2.0.0/16", k));
    EXPECT_TRUE(keeps("net 0.0.0.0/0", k));
    EXPECT_TRUE(keeps("net 10.1.2.99/8", k)) << "host bits of the network are ignored";
    EXPECT_TRUE(keeps("port 443", k));
    EXPECT_TRUE(keeps("port 40000", k));
    EXPECT_FALSE(keeps("port 80", k));
    EXPECT_TRUE(keeps("portrange 400-500", k));
    EXPECT_TRUE(keeps("portrange 443-443", k));
    EXPECT_FALSE(keeps("portrange 444-39999", k));
}

TEST(Filter, Ipv6AndFamiliesNeverMix) {
    const auto k6 = key("2001:db8::1", 40000, "fd00::2", 22);
    EXPECT_TRUE(keeps("host 2001:db8::1", k6));
    EXPECT_TRUE(keeps("net fd00::/8", k6));
    EXPECT_FALSE(keeps("net fd01::/16", k6));
    EXPECT_FALSE(keeps("net 0.0.0.0/0", k6)) << "an IPv4 net never holds an IPv6 address";
    EXPECT_TRUE(keeps("net ::/0", k6));
    const auto k4 = key("10.0.0.1", 1, "10.0.0.2", 2);
    EXPECT_FALSE(keeps("net ::/0", k4));
    // The IPv4 bytes of 10.0.0.1 as the first IPv6 bytes: still no match.
    EXPECT_FALSE(keeps("net a00:1::/32", k4));
}

TEST(Filter, PrecedenceNotAndOrParentheses) {
    const auto k = key("10.0.0.1", 40000, "10.0.0.2", 80);
    // and binds tighter than or: (port 22 and port 23) or port 80.
    EXPECT_TRUE(keeps("port 22 and port 23 or port 80", k));
    EXPECT_FALSE(keeps("port 22 and (port 23 or port 80)", k));
    // not binds tightest: (not port 22) and port 80.
    EXPECT_TRUE(keeps("not port 22 and port 80", k));
    EXPECT_FALSE(keeps("not (port 22 or port 80)", k));
    EXPECT_TRUE(keeps("not not port 80", k));
    EXPECT_TRUE(keeps("! port 22 && (port 1 || port 80)", k));
    EXPECT_TRUE(keeps("port 443 or port 80 and not net 10.0.0.0/8 or host 10.0.0.2", k));
    EXPECT_FALSE(keeps("port 80 and not net 10.0.0.0/8", k));
}

TEST(Filter, BareValueRepeatsTheQualifiers) {
    const auto k = key("10.0.0.1", 40000, "10.0.0.2", 443);
    EXPECT_TRUE(keeps("port 80 or 443", k));
    EXPECT_FALSE(keeps("port 80 or 8080", k));
    EXPECT_TRUE(keeps("host 10.9.9.9 or 10.0.0.2", k));
    EXPECT_EQ(compile_filter("port 80 or 443").n, 3u);
}

// src/dst: a connection is kept when one of its directions matches, so the
// verdict is the same whichever side sent the segment and whoever is client.
TEST(Filter, SrcDstMatchEitherDirectionOfTheConnection) {
    const auto c2s = key("10.0.0.1", 40000, "192.0.2.9", 80);
    EXPECT_TRUE(keeps("src host 10.0.0.1", c2s));
    EXPECT_TRUE(keeps("src host 192.0.2.9", c2s)) << "the server sends too";
    EXPECT_TRUE(keeps("src net 10.0.0.0/24 and dst port 80", c2s));
    EXPECT_TRUE(keeps("dst net 10.0.0.0/24 and src port 80", c2s));
    EXPECT_FALSE(keeps("src net 10.0.0.0/24 and src port 80", c2s)) << "80 is not on 10/24's side";
    EXPECT_FALSE(keeps("src net 10.0.0.0/24 and dst port 40000", c2s));
    EXPECT_FALSE(keeps("src host 10.0.0.1 and dst host 10.0.0.1", c2s));
    // Without src/dst nothing is duplicated.
    EXPECT_EQ(compile_filter("host 10.0.0.1 and port 80").n, 3u);
    EXPECT_EQ(compile_filter("src host 10.0.0.1 and port 80").n, 7u);
}

TEST(Filter, ErrorsNameTheOffendingToken) {
    EXPECT_EQ(error_of("prot 80"), "'prot': expected host, net, port or portrange");
    EXPECT_EQ(error_of("port 80 or"), "ends after 'or': expected host, net, port or portrange");
    EXPECT_EQ(error_of("port"), "ends after 'port': expected a value");
    EXPECT_EQ(error_of("port 99999"), "'99999': not a port number (0-65535)");
    EXPECT_EQ(error_of("port -1"), "'-1': not a port number (0-65535)");
    EXPECT_EQ(error_of("portrange 9-1"), "'9-1': port range runs backwards");
    EXPECT_EQ(error_of("portrange 9"), "'9': not a port range (A-B)");
    EXPECT_EQ(error_of("host 1.2.3.4/8"),
              "'1.2.3.4/8': host takes an address without a prefix length (use net)");
    EXPECT_EQ(error_of("host example"), "'example': not an IPv4 or IPv6 address");
    EXPECT_EQ(error_of("net 10.0.0.0/33"), "'10.0.0.0/33': prefix length longer than the address");
    EXPECT_EQ(error_of("net fd00::/129"), "'fd00::/129': bad prefix length");
    EXPECT_EQ(error_of("net 10.0.0.0/x"), "'10.0.0.0/x': bad prefix length");
    EXPECT_EQ(error_of("(port 80"), "ends after '80': missing ')'");
    EXPECT_EQ(error_of("port 80)"), "')': expected 'and', 'or' or the end of the filter");
    EXPECT_EQ(error_of("port 80 port 81"), "'port': expected 'and', 'or' or the end of the filter");
    EXPECT_EQ(error_of("port and"), "'and': expected a value");
    EXPECT_EQ(error_of("src"), "ends after 'src': expected host, net, port or portrange");
    EXPECT_EQ(error_of("443"), "'443': expected host, net, port or portrange")
        << "a bare value needs a primitive before it";
}

TEST(Filter, TooLongIsRefusedNotTruncated) {
    std::string expr = "port 1";
    for (int p = 2; p <= 32; ++p) expr += " or port " + std::to_string(p);
    EXPECT_EQ(compile_filter(expr).n, 63u);
    EXPECT_NE(error_of(expr + " or port 33").find("too long"), std::string::npos);
    EXPECT_NE(error_of("src port 1 or port 2 or port 3 or port 4 or port 5 or port 6 or port 7 "
                       "or port 8 or port 9 or port 10 or port 11 or port 12 or port 13 or port "
                       "14 or port 15 or port 16 or port 17")
                  .find("too long"),
              std::string::npos)
        << "src/dst count twice";
}

}  // namespace
}  // namespace tcptrack
