// SPDX-License-Identifier: MIT
#include "sys/interfaces.hpp"

#include <fmt/format.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <sstream>

#include "sys/error.hpp"
#include "sys/fd.hpp"

namespace tcptrack {

namespace {

std::optional<long> read_sys_long(const std::string& name, const char* attr) {
    std::ifstream f("/sys/class/net/" + name + "/" + attr);
    long v = 0;
    if (f >> v) return v;
    return std::nullopt;
}

// The device type (ARPHRD_*) as this thread's network namespace sees it.
// /sys/class/net shows the namespace sysfs was mounted in: the host's, after --netns.
std::optional<long> device_type(const std::string& name) {
    Fd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
    if (!s || ioctl(s.get(), SIOCGIFHWADDR, &ifr) != 0) return std::nullopt;
    return ifr.ifr_hwaddr.sa_family;
}

}  // namespace

bool l2_framed(unsigned short arphrd) {
    return arphrd == ARPHRD_ETHER || arphrd == ARPHRD_LOOPBACK;
}

bool watchable_type(unsigned short arphrd) {
    return arphrd == ARPHRD_ETHER || arphrd == ARPHRD_NONE || arphrd == ARPHRD_RAWIP;
}

Interface lookup_interface(const std::string& name) {
    if (name.empty() || name.size() >= IF_NAMESIZE || name.find('/') != std::string::npos)
        throw Error(fmt::format("invalid interface name '{}'", name));
    const unsigned idx = if_nametoindex(name.c_str());
    if (idx == 0) throw Error(fmt::format("interface '{}' does not exist", name));
    Interface i;
    i.name = name;
    i.ifindex = static_cast<int>(idx);
    if (const auto arphrd = device_type(name)) {
        i.has_l2 = l2_framed(static_cast<unsigned short>(*arphrd));
    } else {
        const long type = read_sys_long(name, "type").value_or(1);
        const long addr_len = read_sys_long(name, "addr_len").value_or(6);
        i.has_l2 = type == 1 || type == 772 || addr_len == 6;
    }
    return i;
}

std::optional<std::string> default_route_interface() {
    std::optional<std::string> best;
    long best_metric = LONG_MAX;
    std::ifstream v4("/proc/net/route");
    std::string line;
    std::getline(v4, line);  // header
    while (std::getline(v4, line)) {
        std::istringstream ls(line);
        std::string ifname, dest, gw, flags, refcnt, use, metric, mask;
        if (!(ls >> ifname >> dest >> gw >> flags >> refcnt >> use >> metric >> mask)) continue;
        if (dest != "00000000" || mask != "00000000") continue;
        const long m = std::strtol(metric.c_str(), nullptr, 10);
        if (m < best_metric) best_metric = m, best = ifname;
    }
    if (best) return best;
    std::ifstream v6("/proc/net/ipv6_route");
    while (std::getline(v6, line)) {
        std::istringstream ls(line);
        std::string dst, dlen, src, slen, nh, metric, ref, use, flags, ifname;
        if (!(ls >> dst >> dlen >> src >> slen >> nh >> metric >> ref >> use >> flags >> ifname))
            continue;
        if (dlen != "00" || dst != std::string(32, '0') || ifname == "lo") continue;
        const long m = std::strtol(metric.c_str(), nullptr, 16);
        if (m < best_metric) best_metric = m, best = ifname;
    }
    return best;
}

bool interface_present(const Interface& iface) {
    // By index: a device that was renamed is still the one we are attached to.
    char name[IF_NAMESIZE];
    return if_indextoname(static_cast<unsigned>(iface.ifindex), name) != nullptr;
}

}  // namespace tcptrack
