// SPDX-License-Identifier: MIT
// Removing what dead tcptrack instances left on an interface under legacy tc:
// their filters, and a clsact qdisc tcptrack created that nothing uses any
// more. Never a live instance's filter, never a qdisc or filter tcptrack did
// not create.
#pragma once

#include <string>
#include <vector>

namespace tcptrack {

class IfaceLock;

// With the interface lock held: removes dead instances' filters; when leaving
// (no filter of ours left) also the clsact qdisc tcptrack created, if nothing
// else uses it. notes: one line per filter removed or deliberately left.
void settle_interface(IfaceLock& lk, const std::string& ifname, int ifindex, bool leaving,
                      std::vector<std::string>& notes);

// --cleanup: removes legacy-tc filters whose tcptrack owner is gone (lock file free, or an
// older version's filter that no process holds) and a clsact qdisc tcptrack
// created that nothing uses any more. Returns one note per thing removed or
// deliberately left.
std::vector<std::string> remove_stale_tc_filters(const std::string& ifname, int ifindex);

}  // namespace tcptrack
