// SPDX-License-Identifier: MIT
// Interface names, indexes and framing, from the kernel's own files.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace tcptrack {

struct Interface {
    std::string name;
    int ifindex = 0;
    bool has_l2 = true;  // Ethernet framing at TC; false for tun/wireguard-like devices
};

// ifindex -> name of each interface watched (a flow key's ifindex).
using InterfaceNames = std::map<std::uint32_t, std::string>;
// The name of an interface, "?" if it is not one of them.
inline const std::string& iface_name(const InterfaceNames& names, std::uint32_t ifindex) {
    static const std::string unknown = "?";
    const auto it = names.find(ifindex);
    return it == names.end() ? unknown : it->second;
}

// Does a device of this type (ARPHRD_*) carry an Ethernet header at TC?
// Ethernet and loopback do; devices without a hardware address (tun, wireguard) start at L3.
bool l2_framed(unsigned short arphrd);
// The device types a pattern or --all-interfaces takes (attach/interface_select):
// Ethernet-framed (physical NICs, veth, bridges, bonds, VLANs, macvlan, vxlan)
// and plain L3 devices (tun, wireguard: ARPHRD_NONE; ARPHRD_RAWIP). Loopback,
// IP-in-IP/GRE/SIT tunnels, CAN, InfiniBand and the rest only when named.
bool watchable_type(unsigned short arphrd);

// Throws Error naming the interface when it does not exist.
Interface lookup_interface(const std::string& name);
// The interface of the IPv4 (else IPv6) default route with the lowest metric.
std::optional<std::string> default_route_interface();
// Is `name` still the device we attached to (not deleted, not replaced)?
bool interface_present(const Interface& iface);

}  // namespace tcptrack
