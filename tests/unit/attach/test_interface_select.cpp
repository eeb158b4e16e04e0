// SPDX-License-Identifier: MIT
// attach/interface_select: -i names and patterns, --all-interfaces, and the
// device types a pattern takes (sys/interfaces: watchable_type).
#include <gtest/gtest.h>
#include <net/if_arp.h>

#include "attach/interface_select.hpp"
#include "sys/interfaces.hpp"

using namespace tcptrack;

namespace {

TEST(InterfaceSelect, PatternCharacters) {
    EXPECT_TRUE(is_interface_pattern("veth*"));
    EXPECT_TRUE(is_interface_pattern("eth?"));
    EXPECT_TRUE(is_interface_pattern("eth[01]"));
    EXPECT_FALSE(is_interface_pattern("eth0"));
    EXPECT_FALSE(is_interface_pattern("cali-1.2_x"));
}

TEST(InterfaceSelect, NamesOnlyIsFixed) {
    const InterfaceSelection s({"eth0", "wg0"}, false);
    EXPECT_FALSE(s.dynamic());
    EXPECT_EQ(s.names(), (std::vector<std::string>{"eth0", "wg0"}));
    EXPECT_TRUE(s.matches("eth0", ARPHRD_ETHER));
    EXPECT_TRUE(s.matches("wg0", ARPHRD_NONE));
    EXPECT_FALSE(s.matches("eth1", ARPHRD_ETHER));
    EXPECT_FALSE(s.matches("eth", ARPHRD_ETHER));
}

TEST(InterfaceSelect, NoneGivenIsFixed) {
    const InterfaceSelection s({}, false);
    EXPECT_FALSE(s.dynamic());
    EXPECT_TRUE(s.names().empty());
    EXPECT_FALSE(s.matches("eth0", ARPHRD_ETHER));
}

TEST(InterfaceSelect, Patterns) {
    const InterfaceSelection s({"veth*", "cali*", "eth0", "tun[0-3]"}, false);
    EXPECT_TRUE(s.dynamic());
    EXPECT_EQ(s.names(), std::vector<std::string>{"eth0"});  // the ones that must exist
    EXPECT_TRUE(s.matches("veth12", ARPHRD_ETHER));
    EXPECT_TRUE(s.matches("veth", ARPHRD_ETHER));  // '*' matches nothing too
    EXPECT_TRUE(s.matches("cali0123abcd", ARPHRD_ETHER));
    EXPECT_TRUE(s.matches("eth0", ARPHRD_ETHER));
    EXPECT_TRUE(s.matches("tun2", ARPHRD_NONE));
    EXPECT_FALSE(s.matches("tun4", ARPHRD_NONE));
    EXPECT_FALSE(s.matches("eth1", ARPHRD_ETHER));
    EXPECT_FALSE(s.matches("xveth1", ARPHRD_ETHER));  // anchored, as in the shell
    EXPECT_FALSE(s.matches("Veth1", ARPHRD_ETHER));   // case matters
}

TEST(InterfaceSelect, PatternsTakeOnlyWatchableTypes) {
    const InterfaceSelection s({"*"}, false);
    EXPECT_TRUE(s.matches("eth0", ARPHRD_ETHER));
    EXPECT_TRUE(s.matches("wg0", ARPHRD_NONE));
    EXPECT_TRUE(s.matches("rmnet0", ARPHRD_RAWIP));
    EXPECT_FALSE(s.matches("lo", ARPHRD_LOOPBACK));
    EXPECT_FALSE(s.matches("gre0", ARPHRD_IPGRE));
    EXPECT_FALSE(s.matches("tunl0", ARPHRD_TUNNEL));
    EXPECT_FALSE(s.matches("sit0", ARPHRD_SIT));
    EXPECT_FALSE(s.matches("can0", 280 /* ARPHRD_CAN */));
    // A name given is taken whatever its type (as -i always did).
    const InterfaceSelection named({"lo", "gre*"}, false);
    EXPECT_TRUE(named.matches("lo", ARPHRD_LOOPBACK));
    EXPECT_FALSE(named.matches("gre0", ARPHRD_IPGRE));
}

TEST(InterfaceSelect, AllInterfaces) {
    const InterfaceSelection s({}, true);
    EXPECT_TRUE(s.dynamic());
    EXPECT_TRUE(s.names().empty());
    EXPECT_TRUE(s.matches("eth0", ARPHRD_ETHER));
    EXPECT_TRUE(s.matches("veth9", ARPHRD_ETHER));
    EXPECT_TRUE(s.matches("wg0", ARPHRD_NONE));
    EXPECT_TRUE(s.matches("tun0", ARPHRD_NONE));
    EXPECT_FALSE(s.matches("lo", ARPHRD_LOOPBACK));
    EXPECT_FALSE(s.matches("lo", ARPHRD_ETHER));  // by name too
    EXPECT_FALSE(s.matches("ip6tnl0", ARPHRD_TUNNEL6));
}

TEST(InterfaceSelect, Framing) {
    EXPECT_TRUE(l2_framed(ARPHRD_ETHER));
    EXPECT_TRUE(l2_framed(ARPHRD_LOOPBACK));
    EXPECT_FALSE(l2_framed(ARPHRD_NONE));
    EXPECT_FALSE(l2_framed(ARPHRD_RAWIP));
}

}  // namespace
