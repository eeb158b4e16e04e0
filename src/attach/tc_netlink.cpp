// SPDX-License-Identifier: MIT
#include "attach/tc_netlink.hpp"

#include <fmt/format.h>
#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <utility>

#include "sys/error.hpp"

namespace tcptrack {

namespace {

using OnReply = std::function<void(const nlmsghdr&)>;

struct DumpState {
    std::uint16_t reply_type;
    const OnReply& on_reply;
    std::exception_ptr error;  // not thrown through libmnl's C frames
};

int dispatch(const nlmsghdr* nlh, void* data) {
    auto& st = *static_cast<DumpState*>(data);
    if (nlh->nlmsg_type != st.reply_type) return MNL_CB_OK;
    try {
        st.on_reply(*nlh);
        return MNL_CB_OK;
    } catch (...) {
        st.error = std::current_exception();
        return MNL_CB_ERROR;
    }
}

[[noreturn]] void dump_failed() {
    throw Error(fmt::format("netlink dump failed: {}", std::strerror(errno)));
}

// One RTM_GET* dump; false when the kernel marks it interrupted (the table
// changed while it was read), and what was seen so far is incomplete.
bool dump_once(std::uint16_t type, std::uint16_t reply_type, const tcmsg& request,
               const OnReply& on_reply) {
    constexpr unsigned kSeq = 1;  // one request per socket
    const std::unique_ptr<mnl_socket, decltype(&mnl_socket_close)> nl(
        mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC), mnl_socket_close);
    if (!nl || mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0)
        throw Error(fmt::format("cannot open a netlink socket: {}", std::strerror(errno)));
    // Large enough for the biggest dump part the kernel sends (a short buffer truncates it).
    alignas(nlmsghdr) char buf[32768];
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = kSeq;
    *static_cast<tcmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(tcmsg))) = request;
    if (mnl_socket_sendto(nl.get(), nlh, nlh->nlmsg_len) < 0)
        throw Error(fmt::format("netlink dump request failed: {}", std::strerror(errno)));
    const unsigned portid = mnl_socket_get_portid(nl.get());
    DumpState st{reply_type, on_reply, nullptr};
    for (;;) {
        const ssize_t n = mnl_socket_recvfrom(nl.get(), buf, sizeof(buf));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) dump_failed();
        const int r = mnl_cb_run(buf, static_cast<std::size_t>(n), kSeq, portid, dispatch, &st);
        if (st.error) std::rethrow_exception(st.error);
        if (r == MNL_CB_STOP) return true;                      // NLMSG_DONE
        if (r == MNL_CB_ERROR && errno == EINTR) return false;  // NLM_F_DUMP_INTR
        if (r == MNL_CB_ERROR) dump_failed();
    }
}

// The dump's answers, each through parse (nullopt: skip); an interrupted dump is read again.
template <typename T>
std::vector<T> dump(std::uint16_t type, std::uint16_t reply_type, const tcmsg& request,
                    const std::function<std::optional<T>(const nlmsghdr&)>& parse) {
    for (int attempt = 1;; ++attempt) {
        std::vector<T> out;
        const bool complete = dump_once(type, reply_type, request, [&](const nlmsghdr& nlh) {
            if (auto v = parse(nlh)) out.push_back(std::move(*v));
        });
        if (complete) return out;
        if (attempt == 3)
            throw Error("netlink dump failed: the kernel's tc configuration kept changing");
    }
}

// Attributes indexed by type, for libmnl's parse callbacks; types above N are ignored.
template <std::size_t N>
using Attrs = std::array<const nlattr*, N + 1>;

template <std::size_t N>
int index_attr(const nlattr* a, void* data) {
    auto& attrs = *static_cast<Attrs<N>*>(data);
    if (const auto type = mnl_attr_get_type(a); type <= N) attrs[type] = a;
    return MNL_CB_OK;
}

Attrs<TCA_MAX> tc_attrs(const nlmsghdr& nlh) {
    Attrs<TCA_MAX> attrs{};
    mnl_attr_parse(&nlh, sizeof(tcmsg), index_attr<TCA_MAX>, &attrs);
    return attrs;
}

std::string attr_string(const nlattr* a) {
    if (!a) return {};
    const auto* s = static_cast<const char*>(mnl_attr_get_payload(a));
    return std::string(s, strnlen(s, mnl_attr_get_payload_len(a)));
}

tcmsg tc_request(int ifindex, std::uint32_t parent) {
    tcmsg tc{};
    tc.tcm_family = AF_UNSPEC;
    tc.tcm_ifindex = ifindex;
    tc.tcm_parent = parent;
    return tc;
}

}  // namespace

bool has_clsact(int ifindex) {
    const auto found =
        dump<bool>(RTM_GETQDISC, RTM_NEWQDISC, tc_request(ifindex, 0),
                   [&](const nlmsghdr& nlh) -> std::optional<bool> {
                       const auto* t = static_cast<const tcmsg*>(mnl_nlmsg_get_payload(&nlh));
                       if (t->tcm_ifindex != ifindex || t->tcm_handle != TC_H_MAKE(TC_H_CLSACT, 0))
                           return std::nullopt;
                       if (attr_string(tc_attrs(nlh)[TCA_KIND]) != "clsact") return std::nullopt;
                       return true;
                   });
    return !found.empty();
}

std::vector<TcFilter> list_filters(int ifindex, bpf_tc_attach_point point) {
    const std::uint32_t parent =
        TC_H_MAKE(TC_H_CLSACT, point == BPF_TC_INGRESS ? TC_H_MIN_INGRESS : TC_H_MIN_EGRESS);
    return dump<TcFilter>(
        RTM_GETTFILTER, RTM_NEWTFILTER, tc_request(ifindex, parent),
        [](const nlmsghdr& nlh) -> std::optional<TcFilter> {
            const auto* t = static_cast<const tcmsg*>(mnl_nlmsg_get_payload(&nlh));
            if (t->tcm_handle == 0) return std::nullopt;  // the per-priority header, not a filter
            TcFilter f;
            f.prio = TC_H_MAJ(t->tcm_info) >> 16;
            f.handle = t->tcm_handle;
            const auto attrs = tc_attrs(nlh);
            f.kind = attr_string(attrs[TCA_KIND]);
            if (f.kind == "bpf" && attrs[TCA_OPTIONS]) {
                Attrs<TCA_BPF_MAX> bpf{};
                mnl_attr_parse_nested(attrs[TCA_OPTIONS], index_attr<TCA_BPF_MAX>, &bpf);
                if (bpf[TCA_BPF_ID] && mnl_attr_validate(bpf[TCA_BPF_ID], MNL_TYPE_U32) == 0)
                    f.prog_id = mnl_attr_get_u32(bpf[TCA_BPF_ID]);
                f.name = attr_string(bpf[TCA_BPF_NAME]);
            }
            return f;
        });
}

Fd rtnl_listener(unsigned groups, int rcvbuf) {
    Fd fd(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE));
    if (!fd) return fd;
    if (setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) != 0)
        setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    sockaddr_nl sa{};
    sa.nl_family = AF_NETLINK;
    sa.nl_groups = groups;
    if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) != 0) return Fd();
    return fd;
}

// Room for bursts of other tc changes between two looks.
ClsactWatch::ClsactWatch(int ifindex) : ifindex_(ifindex), fd_(rtnl_listener(RTMGRP_TC, 1 << 20)) {}

bool ClsactWatch::deleted_since_last() {
    if (!fd_) return true;
    bool deleted = false;
    alignas(nlmsghdr) char buf[32768];
    for (;;) {
        const ssize_t n = recv(fd_.get(), buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == ENOBUFS) {  // the socket overflowed: a deletion may be among the lost
            deleted = true;
            continue;
        }
        if (n < 0) return deleted || errno != EAGAIN;  // EAGAIN: all read
        int len = static_cast<int>(n);
        for (auto* h = reinterpret_cast<const nlmsghdr*>(buf); NLMSG_OK(h, len);
             h = NLMSG_NEXT(h, len)) {
            if (h->nlmsg_type != RTM_DELQDISC || h->nlmsg_len < NLMSG_LENGTH(sizeof(tcmsg)))
                continue;
            const auto* t = static_cast<const tcmsg*>(NLMSG_DATA(h));
            if (t->tcm_ifindex == ifindex_ && t->tcm_handle == TC_H_MAKE(TC_H_CLSACT, 0))
                deleted = true;
        }
    }
}

}  // namespace tcptrack
