// SPDX-License-Identifier: MIT
// The capabilities this process holds, for the privilege check, --check and
// error messages that tell "not allowed to ask" from "the kernel said no".
#pragma once

#include <string>

namespace tcptrack {

struct Privileges {
    bool root = false;       // effective uid 0
    bool bpf = false;        // CAP_BPF (or CAP_SYS_ADMIN, which implies it)
    bool net_admin = false;  // CAP_NET_ADMIN
    bool perfmon = false;    // CAP_PERFMON (or CAP_SYS_ADMIN): tracing programs, iterators
    bool sys_admin = false;  // CAP_SYS_ADMIN

    // Enough to load the classifiers and attach them.
    bool enough() const { return bpf && net_admin; }
    // "CAP_BPF and CAP_NET_ADMIN" style list of what enough() lacks.
    std::string missing() const;
    // The one-line error when !enough(): what is missing and how to get it.
    std::string refusal() const;
    // "root" or "CAP_BPF CAP_NET_ADMIN ..." for --check.
    std::string describe() const;
};

Privileges current_privileges();

// "Operation not permitted" and friends, phrased for a user: names the
// capability to grant, or says the kernel refused although we have it.
std::string errno_hint(int err);

}  // namespace tcptrack
