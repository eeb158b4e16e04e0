// SPDX-License-Identifier: MIT
// Attaching the classifiers to an interface, and undoing exactly that.
//  - TCX: kernel links; they vanish with the process, even on SIGKILL.
//  - legacy tc: clsact is created only when absent and removed only if we
//    created it; only our own filters (fixed handle/priority) are removed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct bpf_program;
struct bpf_link;

namespace tcptrack {

enum class AttachKind { Tcx, Tc };

// Our legacy-tc filter identity: recognisable after a crash.
inline constexpr std::uint32_t kTcHandle = 0x7c7;
inline constexpr std::uint32_t kTcPriority = 0xc7c7;

class Attachment {
public:
    virtual ~Attachment() = default;
    virtual AttachKind kind() const = 0;
};

struct Programs {
    bpf_program* ingress;
    bpf_program* egress;
};

// Attaches both directions; throws Error (with nothing left attached) on failure.
// want_tcx: try TCX; allow_fallback: on TCX failure fall back to legacy tc.
std::unique_ptr<Attachment> attach_interface(const std::string& ifname, int ifindex,
                                             const Programs& progs, bool want_tcx,
                                             bool allow_fallback, std::vector<std::string>& notes);

// Finds legacy-tc filters left by a killed tcptrack (our handle/priority and a
// tcptrack_* program) on ifindex and removes them. Returns one note per removal.
std::vector<std::string> remove_stale_tc_filters(const std::string& ifname, int ifindex);

// True when this build and kernel can use TCX links.
bool tcx_compiled_in();

}  // namespace tcptrack
