// SPDX-License-Identifier: MIT
// The sock_diag codec (NETLINK_SOCK_DIAG, inet_diag): socket tuples, requests
// for one socket or a dump, and the decoding of the answers. Pure, unit-tested.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "report/report.hpp"

namespace tcptrack {

// One end of a TCP connection as sock_diag describes a socket: `local` is the
// socket's own address. IPv4-mapped IPv6 sockets (dual-stack listeners'
// accepted sockets) are given as V4.
struct SocketTuple {
    Family family = Family::V4;
    Address local{}, remote{};
    std::uint16_t lport = 0, rport = 0;  // host order
    // The interface the flow was seen on: exact requests pass it, so a socket
    // bound to it (IPv6 link-local) is found too. Not part of the identity.
    std::uint32_t ifindex = 0;
    bool operator==(const SocketTuple& o) const {
        return family == o.family && local == o.local && remote == o.remote && lport == o.lport &&
               rport == o.rport;
    }
};
// The same connection seen from its other end.
inline SocketTuple flipped(const SocketTuple& t) {
    return SocketTuple{t.family, t.remote, t.local, t.rport, t.lport, t.ifindex};
}
struct SocketTupleHash {
    std::size_t operator()(const SocketTuple& t) const;
};

// A socket in a sock_diag answer.
struct DiagSocket {
    std::uint32_t seq = 0;  // the request it answers
    SocketTuple tuple;
    std::uint8_t state = 0;   // TCP_ESTABLISHED...
    std::uint64_t inode = 0;  // 0: no file (request or orphaned socket, TIME_WAIT)
};
// What a buffer of netlink messages (one recv) held.
struct DiagAnswer {
    std::vector<DiagSocket> sockets;
    std::vector<std::pair<std::uint32_t, int>> errors;  // (seq, -errno): ENOENT = no such socket
    bool done = false;                                  // NLMSG_DONE (end of a dump)
};

// Appends a SOCK_DIAG_BY_FAMILY request to `buf`: with `exact`, the one socket
// with that 4-tuple (its family: V4 also finds IPv4-mapped IPv6 sockets);
// without, a dump of every TCP socket of `family` that can own a file (not
// listening, not TIME_WAIT, not a request).
void diag_request(std::vector<std::uint8_t>& buf, std::uint32_t seq, Family family,
                  const SocketTuple* exact);
// Decodes the messages of one netlink datagram into `out` (appends).
void decode_diag(const std::uint8_t* data, std::size_t len, DiagAnswer& out);

}  // namespace tcptrack
