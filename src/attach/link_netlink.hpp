// SPDX-License-Identifier: MIT
// Interfaces appearing, changing and going away, from rtnetlink (RTNLGRP_LINK:
// RTM_NEWLINK / RTM_DELLINK, libmnl) in this process's network namespace, and
// the list of every interface now (an RTM_GETLINK dump); the namespace on the
// far side of an interface (a veth's peer) by its nsid. Needs no capability.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "sys/fd.hpp"

struct nlmsghdr;

namespace tcptrack {

struct LinkEvent {
    int ifindex = 0;
    std::string name;
    unsigned short type = 0;  // ARPHRD_*
    bool gone = false;        // RTM_DELLINK (deleted, or moved to another namespace)
};

// Every interface now. Throws Error.
std::vector<LinkEvent> dump_links();

class LinkEvents {
   public:
    // Subscribes (throws Error): open it before dump_links(), so nothing is missed between.
    LinkEvents();
    int fd() const { return fd_.get(); }
    // What arrived since the last call, without blocking. `lost` is set when
    // the socket overflowed: the caller then reads dump_links() again.
    std::vector<LinkEvent> read(bool& lost);

   private:
    Fd fd_;
};

// The far end of an interface whose peer lives in another namespace (a pod's
// veth seen from the host), as this namespace names it.
struct LinkPeer {
    int nsid = -1;    // IFLA_LINK_NETNSID: this namespace's id for the peer's namespace
    int ifindex = 0;  // IFLA_LINK: the peer's ifindex in that namespace (0: not given)
    bool operator==(const LinkPeer&) const = default;
};

// From one RTM_NEWLINK message: its peer, if in another namespace. Pure.
std::optional<LinkPeer> parse_link_peer(const nlmsghdr* nlh);
// From one RTM_NEWNSID message: the id, if assigned. Pure.
std::optional<int> parse_nsid(const nlmsghdr* nlh);

// nsids of this namespace, asked on one rtnetlink socket made in it (an nsid
// means something only in the namespace that assigned it).
class NetnsIds {
   public:
    NetnsIds();  // throws Error
    // The interface's peer in another namespace (RTM_GETLINK); nullopt for a
    // NIC, a veth with both ends here, or an interface that is gone.
    std::optional<LinkPeer> link_peer(int ifindex);
    // The id this namespace gives the namespace open at `nsfd` (RTM_GETNSID,
    // NETNSA_FD); nullopt when it has none (only namespaces linked to this one
    // by an interface get one).
    std::optional<int> nsid_of(int nsfd);

   private:
    // One request, its answer through `parse`; false without an answer.
    template <class Parse>
    bool ask(nlmsghdr* req, Parse parse);

    Fd fd_;
    unsigned seq_ = 0;
};

}  // namespace tcptrack
