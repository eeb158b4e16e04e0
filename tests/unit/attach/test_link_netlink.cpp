// SPDX-License-Identifier: MIT
// attach/link_netlink: an interface's peer namespace (IFLA_LINK_NETNSID,
// IFLA_LINK) and a namespace's nsid (RTM_NEWNSID) from handcrafted messages,
// and the queries against this namespace (no root: nothing is changed).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/net_namespace.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <cstdint>
#include <vector>

#include "attach/link_netlink.hpp"

using namespace tcptrack;

namespace {

// A message of `type` with a zeroed family header of `hdr` bytes.
struct Msg {
    std::vector<std::uint8_t> buf = std::vector<std::uint8_t>(MNL_SOCKET_BUFFER_SIZE, 0);
    nlmsghdr* nlh;
    Msg(std::uint16_t type, std::size_t hdr) : nlh(mnl_nlmsg_put_header(buf.data())) {
        nlh->nlmsg_type = type;
        mnl_nlmsg_put_extra_header(nlh, hdr);
    }
};

TEST(LinkNetlink, PeerOfAVethIntoAnotherNamespace) {
    Msg m(RTM_NEWLINK, sizeof(ifinfomsg));
    mnl_attr_put_strz(m.nlh, IFLA_IFNAME, "veth1a2b");
    mnl_attr_put_u32(m.nlh, IFLA_LINK, 2);
    mnl_attr_put_u32(m.nlh, IFLA_LINK_NETNSID, 7);
    EXPECT_EQ(parse_link_peer(m.nlh), (LinkPeer{7, 2}));
}

TEST(LinkNetlink, NoPeerNamespace) {
    // A NIC: neither attribute; a veth with both ends here: IFLA_LINK alone.
    Msg nic(RTM_NEWLINK, sizeof(ifinfomsg));
    mnl_attr_put_strz(nic.nlh, IFLA_IFNAME, "eth0");
    EXPECT_EQ(parse_link_peer(nic.nlh), std::nullopt);
    Msg local(RTM_NEWLINK, sizeof(ifinfomsg));
    mnl_attr_put_u32(local.nlh, IFLA_LINK, 5);
    EXPECT_EQ(parse_link_peer(local.nlh), std::nullopt);
    // A peer namespace without an id here; another message type.
    Msg unassigned(RTM_NEWLINK, sizeof(ifinfomsg));
    mnl_attr_put_u32(unassigned.nlh, IFLA_LINK_NETNSID,
                     static_cast<std::uint32_t>(NETNSA_NSID_NOT_ASSIGNED));
    EXPECT_EQ(parse_link_peer(unassigned.nlh), std::nullopt);
    Msg other(RTM_NEWADDR, sizeof(ifinfomsg));
    mnl_attr_put_u32(other.nlh, IFLA_LINK_NETNSID, 3);
    EXPECT_EQ(parse_link_peer(other.nlh), std::nullopt);
}

TEST(LinkNetlink, Nsid) {
    Msg m(RTM_NEWNSID, sizeof(rtgenmsg));
    mnl_attr_put_u32(m.nlh, NETNSA_NSID, 12);
    EXPECT_EQ(parse_nsid(m.nlh), 12);
    Msg none(RTM_NEWNSID, sizeof(rtgenmsg));
    mnl_attr_put_u32(none.nlh, NETNSA_NSID, static_cast<std::uint32_t>(NETNSA_NSID_NOT_ASSIGNED));
    EXPECT_EQ(parse_nsid(none.nlh), std::nullopt);
    Msg empty(RTM_NEWNSID, sizeof(rtgenmsg));
    EXPECT_EQ(parse_nsid(empty.nlh), std::nullopt);
}

TEST(LinkNetlink, QueriesInThisNamespace) {
    NetnsIds ids;
    // lo has no peer; an ifindex that does not exist has none either.
    EXPECT_EQ(ids.link_peer(static_cast<int>(if_nametoindex("lo"))), std::nullopt);
    EXPECT_EQ(ids.link_peer(0x7ffffff0), std::nullopt);
    // A namespace has no id for itself; an fd that is no namespace has none.
    const Fd own(open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(own);
    EXPECT_EQ(ids.nsid_of(own.get()), std::nullopt);
    const Fd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
    EXPECT_EQ(ids.nsid_of(null.get()), std::nullopt);
    // Still answering after errors (answers matched by sequence number).
    EXPECT_EQ(ids.link_peer(static_cast<int>(if_nametoindex("lo"))), std::nullopt);
}

}  // namespace
