// SPDX-License-Identifier: MIT
// What this kernel and libbpf can do, probed once before anything is loaded,
// and the choices that follow from it (today: the attach mode). Everything
// beyond the 5.10 floor is optional.
//
// $TCPTRACK_DISABLE (comma list of optional feature names) makes a probe
// report "unavailable", so every fallback can be forced on a kernel that has
// the preferred path (tests do this).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "config/options.hpp"

namespace tcptrack {

struct KernelVersion {
    int major = 0, minor = 0, patch = 0;
    auto operator<=>(const KernelVersion&) const = default;
};

// "6.18.44-fc-v657" -> 6.18.44; unparsable parts stay 0.
KernelVersion parse_kernel_release(std::string_view release);

// The oldest kernel every mandatory piece is held to (tests/unit/test_floor.cpp).
inline constexpr KernelVersion kKernelFloor{5, 10, 0};

enum class FeatureId { Btf, SchedCls, RingBuf, Mmap, Tcx, SkbCgroupId, KtimeCoarse, Count };

// The one list of probed features: what each is, whether tcptrack needs it,
// and what it does without it.
struct FeatureSpec {
    FeatureId id;
    const char* name;  // TCPTRACK_DISABLE / --check name
    const char* what;  // human description, with the kernel that added it
    bool mandatory;
    const char* fallback;  // what tcptrack does without it (optional ones)
};
const std::vector<FeatureSpec>& feature_specs();

struct Probe {
    bool ok = false;
    std::string why;  // when !ok: the kernel's answer, or who disabled it
};

struct Features {
    std::string release;
    KernelVersion version;
    Probe probes[static_cast<int>(FeatureId::Count)];

    const Probe& operator[](FeatureId id) const { return probes[static_cast<int>(id)]; }
    Probe& operator[](FeatureId id) { return probes[static_cast<int>(id)]; }
    bool has(FeatureId id) const { return (*this)[id].ok; }

    // Why tcptrack cannot run here (one line), or "" when it can.
    std::string blocker() const;
};

// Whether to attach with TCX: auto takes it where probed; --attach tcx without
// it throws Error naming why; --attach tc never.
bool use_tcx(const Features& f, AttachMode mode);

// One line per optional feature this kernel lacks: what, why, and what
// tcptrack does instead (printed with -v and by --check).
std::vector<std::string> fallback_notes(const Features& f);

// Parses $TCPTRACK_DISABLE's value; throws std::invalid_argument naming an
// unknown or mandatory feature.
std::set<FeatureId> parse_disable_list(std::string_view list);

// Applies a disable list to probe results (pure: unit-tested).
void apply_disabled(Features& f, const std::set<FeatureId>& disabled);

// The kernel's BTF, which every CO-RE load needs (the Skeleton checks it too).
Probe probe_btf();

// Probes this kernel (once per process) and applies $TCPTRACK_DISABLE.
// Throws std::invalid_argument for a bad $TCPTRACK_DISABLE.
const Features& probe_features();

}  // namespace tcptrack
