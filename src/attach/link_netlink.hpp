// SPDX-License-Identifier: MIT
// Interfaces appearing, changing and going away, from rtnetlink (RTNLGRP_LINK:
// RTM_NEWLINK / RTM_DELLINK, libmnl) in this process's network namespace, and
// the list of every interface now (an RTM_GETLINK dump). Needs no capability.
#pragma once

#include <string>
#include <vector>

#include "sys/fd.hpp"

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

}  // namespace tcptrack
