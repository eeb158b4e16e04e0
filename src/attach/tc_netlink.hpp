// SPDX-License-Identifier: MIT
// Every filter on a clsact direction, and whether the clsact qdisc exists, from
// rtnetlink dumps (libmnl). libbpf can only query one (priority, handle);
// deciding whether clsact is still in use needs every filter on it. Dumps need
// no capability.
#pragma once

#include <bpf/libbpf.h>

#include <cstdint>
#include <string>
#include <vector>

#include "sys/fd.hpp"

namespace tcptrack {

// A non-blocking rtnetlink socket subscribed to `groups` (RTMGRP_*), its
// receive buffer raised to `rcvbuf` bytes (past rmem_max as root); an empty Fd
// (errno set) when it cannot be opened or bound.
Fd rtnl_listener(unsigned groups, int rcvbuf);

struct TcFilter {
    std::uint32_t prio = 0;
    std::uint32_t handle = 0;
    std::uint32_t prog_id = 0;  // cls_bpf only
    std::string kind;
    std::string name;  // cls_bpf: what the attacher named it; libbpf writes "<prog name>:[<id>]"
};

bool has_clsact(int ifindex);

// Every filter on one clsact direction (empty when there is no clsact).
std::vector<TcFilter> list_filters(int ifindex, bpf_tc_attach_point point);

// Whether the clsact qdisc on one interface was deleted, from rtnetlink's tc
// notifications (RTNLGRP_TC) of this network namespace. A qdisc has no
// identity to ask about, and deleting it is the only way the clsact tcptrack
// created can give way to someone else's: this proves that it did not.
class ClsactWatch {
   public:
    explicit ClsactWatch(int ifindex);  // never throws: unwatched, every look says "maybe"
    // Deleted (or maybe: notifications were lost) since the last call?
    bool deleted_since_last();

   private:
    int ifindex_;
    Fd fd_;
};

}  // namespace tcptrack
