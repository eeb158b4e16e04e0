// SPDX-License-Identifier: MIT
// A sock_diag socket (NETLINK_SOCK_DIAG): the inodes of TCP sockets by their
// 4-tuple, asked of the network namespace the socket was made in.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "enrich/sock_diag.hpp"
#include "report/report.hpp"

struct mnl_socket;

namespace tcptrack {

class SockDiag {
   public:
    // In the calling thread's namespace (nsfd < 0) or the one open at nsfd
    // (sys/netns socket_in_netns). Throws Error.
    explicit SockDiag(int nsfd = -1);
    ~SockDiag();
    SockDiag(const SockDiag&) = delete;
    SockDiag& operator=(const SockDiag&) = delete;

    // Socket inodes of these tuples (0: not found), asked one by one (exact,
    // in batches of 64 per datagram) or from one dump per family. With
    // `other_end`, a tuple not found is tried with its ends swapped (the
    // socket at the other end): other_end[i] says which answered, and a
    // million tuples are not copied a second time to ask for both.
    void inodes_exact(const std::vector<SocketTuple>& tuples, std::vector<std::uint64_t>& out);
    void inodes_dump(const std::vector<SocketTuple>& tuples, std::vector<std::uint64_t>& out,
                     std::vector<char>* other_end = nullptr);
    // The same for n tuples made one at a time by tuple_at(i): a million new
    // connections are asked without a vector of their tuples (44 MB).
    void inodes_dump(std::size_t n, const std::function<SocketTuple(std::size_t)>& tuple_at,
                     std::vector<std::uint64_t>& out, std::vector<char>* other_end = nullptr);

   private:
    bool exchange(const std::vector<std::uint8_t>& req, std::uint32_t first_seq,
                  std::size_t answers, DiagAnswer& out);
    bool dump(Family family, DiagAnswer& out);

    ::mnl_socket* nl_ = nullptr;
    std::uint32_t seq_ = 1;
};

}  // namespace tcptrack
