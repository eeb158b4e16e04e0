// SPDX-License-Identifier: MIT
#include "attach/link_netlink.hpp"

#include <fmt/format.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/net_namespace.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>

#include "attach/tc_netlink.hpp"
#include "sys/error.hpp"

namespace tcptrack {

namespace {

int name_attr(const nlattr* a, void* data) {
    if (mnl_attr_get_type(a) == IFLA_IFNAME && mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0)
        *static_cast<const char**>(data) = mnl_attr_get_str(a);
    return MNL_CB_OK;
}

std::optional<LinkEvent> parse_link(const nlmsghdr* nlh) {
    if (nlh->nlmsg_type != RTM_NEWLINK && nlh->nlmsg_type != RTM_DELLINK) return std::nullopt;
    if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(ifinfomsg))) return std::nullopt;
    const auto* ifi = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(nlh));
    const char* name = nullptr;
    mnl_attr_parse(nlh, sizeof(ifinfomsg), name_attr, &name);
    LinkEvent e;
    e.ifindex = ifi->ifi_index;
    e.name = name ? name : "";
    e.type = ifi->ifi_type;
    e.gone = nlh->nlmsg_type == RTM_DELLINK;
    return e;
}

struct DumpState {
    std::vector<LinkEvent>* out;
};

int on_dump(const nlmsghdr* nlh, void* data) {
    if (auto e = parse_link(nlh)) static_cast<DumpState*>(data)->out->push_back(std::move(*e));
    return MNL_CB_OK;
}

[[noreturn]] void failed(const char* what) {
    throw Error(fmt::format("{}: {}", what, std::strerror(errno)));
}

// One dump; false when the kernel marks it interrupted (links changed meanwhile).
bool dump_once(std::vector<LinkEvent>& out) {
    constexpr unsigned kSeq = 1;
    const std::unique_ptr<mnl_socket, decltype(&mnl_socket_close)> nl(
        mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC), mnl_socket_close);
    if (!nl || mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0)
        failed("cannot open a netlink socket");
    alignas(nlmsghdr) char buf[32768];
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_GETLINK;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = kSeq;
    auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
    ifi->ifi_family = AF_UNSPEC;
    if (mnl_socket_sendto(nl.get(), nlh, nlh->nlmsg_len) < 0) failed("netlink link dump failed");
    const unsigned portid = mnl_socket_get_portid(nl.get());
    DumpState st{&out};
    for (;;) {
        const ssize_t n = mnl_socket_recvfrom(nl.get(), buf, sizeof(buf));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) failed("netlink link dump failed");
        const int r = mnl_cb_run(buf, static_cast<std::size_t>(n), kSeq, portid, on_dump, &st);
        if (r == MNL_CB_STOP) return true;
        if (r == MNL_CB_ERROR && errno == EINTR) return false;  // NLM_F_DUMP_INTR
        if (r == MNL_CB_ERROR) failed("netlink link dump failed");
    }
}

}  // namespace

std::vector<LinkEvent> dump_links() {
    for (int attempt = 1;; ++attempt) {
        std::vector<LinkEvent> out;
        if (dump_once(out)) return out;
        if (attempt == 5) throw Error("netlink link dump failed: the interfaces kept changing");
    }
}

LinkEvents::LinkEvents() {
    // Room for a burst of pods starting at once.
    fd_ = rtnl_listener(RTMGRP_LINK, 4 << 20);
    if (!fd_) failed("cannot watch interfaces (rtnetlink)");
}

std::vector<LinkEvent> LinkEvents::read(bool& lost) {
    std::vector<LinkEvent> out;
    alignas(nlmsghdr) char buf[65536];
    for (;;) {
        const ssize_t n = recv(fd_.get(), buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == ENOBUFS) {  // overflowed: some changes are lost
            lost = true;
            continue;
        }
        if (n < 0) return out;  // EAGAIN: all read
        int len = static_cast<int>(n);
        for (auto* h = reinterpret_cast<const nlmsghdr*>(buf); NLMSG_OK(h, len);
             h = NLMSG_NEXT(h, len))
            if (auto e = parse_link(h)) out.push_back(std::move(*e));
    }
}

namespace {

struct PeerAttrs {
    std::optional<int> nsid;
    int link = 0;
};

int peer_attr(const nlattr* a, void* data) {
    auto* p = static_cast<PeerAttrs*>(data);
    if (mnl_attr_get_type(a) == IFLA_LINK_NETNSID && mnl_attr_validate(a, MNL_TYPE_U32) == 0)
        p->nsid = static_cast<int>(mnl_attr_get_u32(a));
    else if (mnl_attr_get_type(a) == IFLA_LINK && mnl_attr_validate(a, MNL_TYPE_U32) == 0)
        p->link = static_cast<int>(mnl_attr_get_u32(a));
    return MNL_CB_OK;
}

int nsid_attr(const nlattr* a, void* data) {
    if (mnl_attr_get_type(a) == NETNSA_NSID && mnl_attr_validate(a, MNL_TYPE_U32) == 0)
        *static_cast<int*>(data) = static_cast<int>(mnl_attr_get_u32(a));
    return MNL_CB_OK;
}

}  // namespace

std::optional<LinkPeer> parse_link_peer(const nlmsghdr* nlh) {
    if (nlh->nlmsg_type != RTM_NEWLINK || nlh->nlmsg_len < NLMSG_LENGTH(sizeof(ifinfomsg)))
        return std::nullopt;
    PeerAttrs a;
    mnl_attr_parse(nlh, sizeof(ifinfomsg), peer_attr, &a);
    // Negative: the peer's namespace has no id here (NETNSA_NSID_NOT_ASSIGNED).
    if (!a.nsid || *a.nsid < 0) return std::nullopt;
    return LinkPeer{*a.nsid, a.link};
}

std::optional<int> parse_nsid(const nlmsghdr* nlh) {
    if (nlh->nlmsg_type != RTM_NEWNSID || nlh->nlmsg_len < NLMSG_LENGTH(sizeof(rtgenmsg)))
        return std::nullopt;
    int id = NETNSA_NSID_NOT_ASSIGNED;
    mnl_attr_parse(nlh, sizeof(rtgenmsg), nsid_attr, &id);
    if (id < 0) return std::nullopt;
    return id;
}

NetnsIds::NetnsIds() : fd_(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)) {
    if (!fd_) failed("cannot open a netlink socket");
    const timeval tv{1, 0};  // never hang a report on a lost answer
    setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

template <class Parse>
bool NetnsIds::ask(nlmsghdr* req, Parse parse) {
    req->nlmsg_seq = ++seq_;
    if (send(fd_.get(), req, req->nlmsg_len, 0) < 0) return false;
    alignas(nlmsghdr) char buf[32768];
    for (;;) {
        const ssize_t n = recv(fd_.get(), buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;  // timed out
        int len = static_cast<int>(n);
        for (auto* h = reinterpret_cast<const nlmsghdr*>(buf); mnl_nlmsg_ok(h, len);
             h = mnl_nlmsg_next(h, &len)) {
            if (h->nlmsg_seq != seq_) continue;  // a late answer to an earlier, timed-out request
            if (h->nlmsg_type == NLMSG_ERROR) return false;
            parse(h);
            return true;
        }
    }
}

std::optional<LinkPeer> NetnsIds::link_peer(int ifindex) {
    alignas(nlmsghdr) char buf[MNL_ALIGN(sizeof(nlmsghdr)) + MNL_ALIGN(sizeof(ifinfomsg))] = {};
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_GETLINK;
    nlh->nlmsg_flags = NLM_F_REQUEST;
    auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = ifindex;
    std::optional<LinkPeer> out;
    ask(nlh, [&](const nlmsghdr* h) { out = parse_link_peer(h); });
    return out;
}

std::optional<int> NetnsIds::nsid_of(int nsfd) {
    alignas(nlmsghdr) char buf[MNL_ALIGN(sizeof(nlmsghdr)) + MNL_ALIGN(sizeof(rtgenmsg)) +
                               MNL_ATTR_HDRLEN + MNL_ALIGN(sizeof(std::uint32_t))] = {};
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_GETNSID;
    nlh->nlmsg_flags = NLM_F_REQUEST;
    auto* g = static_cast<rtgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtgenmsg)));
    g->rtgen_family = AF_UNSPEC;
    mnl_attr_put_u32(nlh, NETNSA_FD, static_cast<std::uint32_t>(nsfd));
    std::optional<int> out;
    ask(nlh, [&](const nlmsghdr* h) { out = parse_nsid(h); });
    return out;
}

}  // namespace tcptrack
