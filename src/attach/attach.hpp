// SPDX-License-Identifier: MIT
// Attaching the classifiers to an interface, and undoing exactly that, beside
// any number of other tcptrack instances and other users of the hook.
//  - TCX: kernel links; they vanish with the process, even on SIGKILL.
//  - legacy tc: every instance adds its own filters (same priority, its own
//    handle) and holds a lock file per (netns, interface, handle) under the
//    lock directory; a filter is stale only when its lock can be taken (owner
//    dead). clsact is created only when absent, and removed by the last
//    tcptrack instance to leave, only if tcptrack created it and no filter is
//    left on it.
// The pieces: tc_filter (our filters by handle), tc_netlink (every filter, via
// dumps), instance_lock (lock files), stale_filters (what dead instances left).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

struct bpf_program;
struct bpf_link;

namespace tcptrack {

class Attachment {
   public:
    virtual ~Attachment() = default;
    // Are our programs still attached? Someone may have deleted our filter,
    // the clsact qdisc or our TCX link. Re-attaches what is missing and returns
    // one line saying so (for stderr); nullopt when nothing was missing. Throws
    // Error when re-attaching fails.
    virtual std::optional<std::string> ensure_attached() = 0;
    // "tcx" or "tc", for the -v line saying where it attached.
    virtual const char* kind() const = 0;
};

struct Programs {
    bpf_program* ingress;
    bpf_program* egress;
};

// Attaches both directions; throws Error (with nothing left attached) on failure.
// want_tcx: try TCX; allow_fallback: on TCX failure fall back to legacy tc.
// notes: lines for stderr (fallback, stale filters removed).
std::unique_ptr<Attachment> attach_interface(const std::string& ifname, int ifindex,
                                             const Programs& progs, bool want_tcx,
                                             bool allow_fallback, std::vector<std::string>& notes);

}  // namespace tcptrack
