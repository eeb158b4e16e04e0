// SPDX-License-Identifier: MIT
#include "sys/privileges.hpp"

#include "sys/error.hpp"

#include <fmt/format.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>

namespace tcptrack {

namespace {

constexpr int kCapNetAdmin = 12, kCapSysAdmin = 21, kCapPerfmon = 38, kCapBpf = 39;

}  // namespace

Privileges current_privileges() {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    Privileges p;
    p.root = geteuid() == 0;
    if (syscall(SYS_capget, &hdr, data) != 0) return p;
    const auto has = [&](int cap) { return (data[cap / 32].effective & (1u << (cap % 32))) != 0; };
    p.sys_admin = has(kCapSysAdmin);
    p.bpf = has(kCapBpf) || p.sys_admin;
    p.net_admin = has(kCapNetAdmin);
    p.perfmon = has(kCapPerfmon) || p.sys_admin;
    return p;
}

std::string Privileges::missing() const {
    if (!bpf && !net_admin) return "CAP_BPF and CAP_NET_ADMIN";
    if (!bpf) return "CAP_BPF";
    if (!net_admin) return "CAP_NET_ADMIN";
    return "";
}

std::string Privileges::refusal() const {
    return fmt::format(
        "missing privileges: need {} (run as root, or grant CAP_BPF and CAP_NET_ADMIN)", missing());
}

std::string Privileges::describe() const {
    std::string caps;
    for (auto [have, name] :
         {std::pair{bpf, "CAP_BPF"}, std::pair{net_admin, "CAP_NET_ADMIN"},
          std::pair{perfmon, "CAP_PERFMON"}, std::pair{sys_admin, "CAP_SYS_ADMIN"}})
        if (have) caps += caps.empty() ? name : std::string(" ") + name;
    if (caps.empty()) caps = "no BPF capabilities";
    return root ? "root (" + caps + ")" : caps;
}

// EPERM means two different things: we lack a capability, or we have them
// and the kernel still says no (lockdown, an LSM, a hardening patch).
std::string errno_hint(int err) {
    if (err != EPERM && err != EACCES) return std::strerror(err);
    const Privileges p = current_privileges();
    if (!p.enough())
        return fmt::format("{} (run as root, or grant CAP_BPF and CAP_NET_ADMIN)",
                           std::strerror(err));
    if (err == EACCES) return std::strerror(err);  // a verifier rejection, not a privilege
    return fmt::format(
        "{} (refused by the kernel although tcptrack has CAP_BPF and "
        "CAP_NET_ADMIN: lockdown, an LSM or a hardening setting forbids it)",
        std::strerror(err));
}

}  // namespace tcptrack
