// SPDX-License-Identifier: MIT
// A sock_diag socket: exact requests in batches, dumps, and their answers.
#include "enrich/sock_diag_client.hpp"

#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_map>

#include "sys/error.hpp"
#include "sys/netns.hpp"

namespace tcptrack {

SockDiag::SockDiag(int nsfd) {
    const int fd = socket_in_netns(nsfd, AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd >= 0 && !(nl_ = mnl_socket_fdopen(fd))) close(fd);
    if (!nl_ || mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
        const int err = errno;
        if (nl_) mnl_socket_close(nl_);
        nl_ = nullptr;
        throw Error(fmt::format("cannot open a sock_diag socket: {}", std::strerror(err)));
    }
    // Answers to a batch of exact requests queue up here before we read them:
    // room for a batch (an answer that does not fit is dropped by the kernel).
    const int sfd = mnl_socket_get_fd(nl_);
    const int size = 4 << 20;
    if (setsockopt(sfd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
        setsockopt(sfd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    const timeval tv{1, 0};  // never hang a report on a lost answer
    setsockopt(sfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

SockDiag::~SockDiag() {
    if (nl_) mnl_socket_close(nl_);
}

bool SockDiag::exchange(const std::vector<std::uint8_t>& req, std::uint32_t first_seq,
                        std::size_t answers, DiagAnswer& out) {
    if (mnl_socket_sendto(nl_, req.data(), req.size()) < 0) return false;
    std::vector<std::uint8_t> buf(MNL_SOCKET_BUFFER_SIZE * 4);
    std::size_t got = 0;
    while (got < answers) {
        const ssize_t n = mnl_socket_recvfrom(nl_, buf.data(), buf.size());
        if (n <= 0) return false;  // timeout or error: the rest count as not found
        const std::size_t before = out.sockets.size() + out.errors.size();
        DiagAnswer a;
        decode_diag(buf.data(), static_cast<std::size_t>(n), a);
        // Late answers to an earlier, timed-out batch are ignored.
        for (const DiagSocket& s : a.sockets)
            if (s.seq - first_seq < answers) out.sockets.push_back(s);
        for (const auto& e : a.errors)
            if (e.first - first_seq < answers) out.errors.push_back(e);
        got += out.sockets.size() + out.errors.size() - before;
    }
    return true;
}

bool SockDiag::dump(Family family, DiagAnswer& out) {
    std::vector<std::uint8_t> req;
    const std::uint32_t seq = seq_++;
    diag_request(req, seq, family, nullptr);
    if (mnl_socket_sendto(nl_, req.data(), req.size()) < 0) return false;
    std::vector<std::uint8_t> buf(MNL_SOCKET_BUFFER_SIZE * 4);
    for (;;) {
        const ssize_t n = mnl_socket_recvfrom(nl_, buf.data(), buf.size());
        if (n <= 0) return false;
        DiagAnswer a;
        decode_diag(buf.data(), static_cast<std::size_t>(n), a);
        for (const DiagSocket& s : a.sockets)
            if (s.seq == seq) out.sockets.push_back(s);
        for (const auto& e : a.errors)
            if (e.first == seq) return false;
        if (a.done) return true;
    }
}

void SockDiag::inodes_exact(const std::vector<SocketTuple>& tuples,
                            std::vector<std::uint64_t>& out) {
    // Up to kBatch requests in one datagram: sock_diag answers each in turn.
    constexpr std::size_t kBatch = 64;
    out.assign(tuples.size(), 0);
    std::vector<std::uint8_t> req;
    for (std::size_t at = 0; at < tuples.size(); at += kBatch) {
        const std::size_t n = std::min(kBatch, tuples.size() - at);
        const std::uint32_t first = seq_;
        seq_ += static_cast<std::uint32_t>(n);
        req.clear();
        for (std::size_t i = 0; i < n; ++i)
            diag_request(req, first + static_cast<std::uint32_t>(i), tuples[at + i].family,
                         &tuples[at + i]);
        DiagAnswer a;
        exchange(req, first, n, a);
        for (const DiagSocket& s : a.sockets) {
            const std::size_t i = at + (s.seq - first);
            // An exact lookup falls back to a listening socket: only the very
            // 4-tuple counts.
            if (s.tuple == tuples[i]) out[i] = s.inode;
        }
    }
}

void SockDiag::inodes_dump(const std::vector<SocketTuple>& tuples, std::vector<std::uint64_t>& out,
                           std::vector<char>* other_end) {
    inodes_dump(
        tuples.size(), [&](std::size_t i) { return tuples[i]; }, out, other_end);
}

void SockDiag::inodes_dump(std::size_t n, const std::function<SocketTuple(std::size_t)>& tuple_at,
                           std::vector<std::uint64_t>& out, std::vector<char>* other_end) {
    out.assign(n, 0);
    if (other_end) other_end->assign(n, 0);
    DiagAnswer a;
    dump(Family::V4, a);
    dump(Family::V6, a);  // holds the IPv4-mapped ones too
    std::unordered_map<SocketTuple, std::uint64_t, SocketTupleHash> by_tuple;
    by_tuple.reserve(a.sockets.size());
    // A socket without a file (orphaned, TIME_WAIT) is no answer: the other
    // end is tried, as after an exact request.
    for (const DiagSocket& s : a.sockets)
        if (s.inode) by_tuple.emplace(s.tuple, s.inode);
    for (std::size_t i = 0; i < n; ++i) {
        const SocketTuple t = tuple_at(i);
        if (const auto it = by_tuple.find(t); it != by_tuple.end()) {
            out[i] = it->second;
        } else if (other_end) {
            if (const auto o = by_tuple.find(flipped(t)); o != by_tuple.end()) {
                out[i] = o->second;
                (*other_end)[i] = 1;
            }
        }
    }
}

}  // namespace tcptrack
