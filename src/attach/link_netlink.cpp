// SPDX-License-Identifier: MIT
#include "attach/link_netlink.hpp"

#include <fmt/format.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

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

}  // namespace tcptrack
