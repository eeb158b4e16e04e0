// SPDX-License-Identifier: MIT
// The sock_diag codec: SOCK_DIAG_BY_FAMILY requests and inet_diag answers.
#include "enrich/sock_diag.hpp"

#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

namespace tcptrack {
namespace {

// TCP states (include/net/tcp_states.h): the ones a socket with a file can be in.
constexpr std::uint32_t kTimeWait = 6, kListen = 10, kNewSynRecv = 12;
constexpr std::uint32_t kFileStates = ~(1u << kTimeWait | 1u << kListen | 1u << kNewSynRecv);

bool v4_mapped(const std::uint8_t* a) {
    static constexpr std::uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(a, prefix, 12) == 0;
}

}  // namespace

std::size_t SocketTupleHash::operator()(const SocketTuple& t) const {
    // FNV-1a over the fields that differ between connections.
    std::uint64_t h = 1469598103934665603ull;
    const auto mix = [&](const void* p, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) {
            h ^= static_cast<const std::uint8_t*>(p)[i];
            h *= 1099511628211ull;
        }
    };
    const std::size_t alen = t.family == Family::V4 ? 4 : 16;
    mix(t.local.data(), alen);
    mix(t.remote.data(), alen);
    mix(&t.lport, 2);
    mix(&t.rport, 2);
    return static_cast<std::size_t>(h);
}

void diag_request(std::vector<std::uint8_t>& buf, std::uint32_t seq, Family family,
                  const SocketTuple* exact) {
    const std::size_t at = buf.size();
    buf.resize(at + MNL_ALIGN(sizeof(nlmsghdr)) + MNL_ALIGN(sizeof(inet_diag_req_v2)), 0);
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data() + at);
    nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
    nlh->nlmsg_flags = NLM_F_REQUEST | (exact ? 0 : NLM_F_DUMP);
    nlh->nlmsg_seq = seq;
    auto* req =
        static_cast<inet_diag_req_v2*>(mnl_nlmsg_put_extra_header(nlh, sizeof(inet_diag_req_v2)));
    req->sdiag_family = family == Family::V6 ? AF_INET6 : AF_INET;
    req->sdiag_protocol = IPPROTO_TCP;
    req->idiag_states = exact ? ~0u : kFileStates;
    req->id.idiag_cookie[0] = req->id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    if (exact) {
        const std::size_t alen = family == Family::V6 ? 16 : 4;
        std::memcpy(req->id.idiag_src, exact->local.data(), alen);
        std::memcpy(req->id.idiag_dst, exact->remote.data(), alen);
        req->id.idiag_sport = htons(exact->lport);
        req->id.idiag_dport = htons(exact->rport);
        req->id.idiag_if = exact->ifindex;
    }
}

void decode_diag(const std::uint8_t* data, std::size_t len, DiagAnswer& out) {
    int left = static_cast<int>(len);
    for (auto* nlh = reinterpret_cast<const nlmsghdr*>(data); mnl_nlmsg_ok(nlh, left);
         nlh = mnl_nlmsg_next(nlh, &left)) {
        if (nlh->nlmsg_type == NLMSG_DONE) {
            out.done = true;
        } else if (nlh->nlmsg_type == NLMSG_ERROR) {
            if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(nlmsgerr))) continue;
            const auto* e = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
            out.errors.emplace_back(nlh->nlmsg_seq, e->error);
        } else if (nlh->nlmsg_type == SOCK_DIAG_BY_FAMILY) {
            if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(inet_diag_msg))) continue;
            const auto* m = static_cast<const inet_diag_msg*>(mnl_nlmsg_get_payload(nlh));
            DiagSocket s;
            s.seq = nlh->nlmsg_seq;
            s.state = m->idiag_state;
            s.inode = m->idiag_inode;
            const auto* src = reinterpret_cast<const std::uint8_t*>(m->id.idiag_src);
            const auto* dst = reinterpret_cast<const std::uint8_t*>(m->id.idiag_dst);
            if (m->idiag_family == AF_INET6 && !(v4_mapped(src) && v4_mapped(dst))) {
                s.tuple.family = Family::V6;
                std::memcpy(s.tuple.local.data(), src, 16);
                std::memcpy(s.tuple.remote.data(), dst, 16);
            } else if (m->idiag_family == AF_INET6) {  // a dual-stack socket's IPv4 peer
                std::memcpy(s.tuple.local.data(), src + 12, 4);
                std::memcpy(s.tuple.remote.data(), dst + 12, 4);
            } else if (m->idiag_family == AF_INET) {
                std::memcpy(s.tuple.local.data(), src, 4);
                std::memcpy(s.tuple.remote.data(), dst, 4);
            } else {
                continue;
            }
            s.tuple.lport = ntohs(m->id.idiag_sport);
            s.tuple.rport = ntohs(m->id.idiag_dport);
            out.sockets.push_back(s);
        }
    }
}
}  // namespace tcptrack
