// SPDX-License-Identifier: MIT
// The feature list and the decisions drawn from probe results (no kernel
// access here: src/datapath/feature_probes.cpp does the probing).
#include "datapath/features.hpp"

#include <fmt/format.h>
#include <charconv>
#include <stdexcept>

#include "sys/error.hpp"

namespace tcptrack {

const std::vector<FeatureSpec>& feature_specs() {
    static const std::vector<FeatureSpec> specs = {
        {FeatureId::Btf, "btf", "kernel BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)", true,
         ""},
        {FeatureId::SchedCls, "sched_cls", "TC classifier programs (sched_cls)", true, ""},
        {FeatureId::RingBuf, "ringbuf", "BPF ring buffer maps (Linux 5.8)", true, ""},
        {FeatureId::Mmap, "mmap", "mmapable BPF arrays (BPF_F_MMAPABLE, Linux 5.5)", true, ""},
        {FeatureId::Tcx, "tcx", "TCX links (Linux 6.6, libbpf 1.3)", false,
         "attaches with legacy tc (clsact qdisc + filters)"},
        {FeatureId::SkbCgroupId, "skb-cgroup-id",
         "bpf_skb_cgroup_id in classifiers (Linux 4.18, CONFIG_SOCK_CGROUP_DATA)", false,
         "a connection whose socket is gone before the next report has no owner"},
        {FeatureId::KtimeCoarse, "ktime-coarse",
         "bpf_ktime_get_coarse_ns in classifiers (Linux 5.11)", false,
         "the RTT probe rate limit reads the fine clock (about 35 ns more per new TSval)"},
    };
    return specs;
}

KernelVersion parse_kernel_release(std::string_view s) {
    KernelVersion v;
    int* parts[] = {&v.major, &v.minor, &v.patch};
    for (int* p : parts) {
        const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *p);
        if (ec != std::errc()) break;
        s.remove_prefix(static_cast<std::size_t>(end - s.data()));
        if (s.empty() || s.front() != '.') break;
        s.remove_prefix(1);
    }
    return v;
}

std::string Features::blocker() const {
    for (const auto& s : feature_specs()) {
        if (!s.mandatory || has(s.id)) continue;
        return fmt::format("kernel {} lacks {}{}: tcptrack needs Linux {}.{} or newer with BTF",
                           release.empty() ? "?" : release, s.what,
                           (*this)[s.id].why.empty() ? "" : " (" + (*this)[s.id].why + ")",
                           kKernelFloor.major, kKernelFloor.minor);
    }
    return "";
}

std::set<FeatureId> parse_disable_list(std::string_view list) {
    std::set<FeatureId> out;
    while (!list.empty()) {
        const auto comma = list.find(',');
        std::string_view name = list.substr(0, comma);
        list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
        if (name.empty()) continue;
        const FeatureSpec* hit = nullptr;
        std::string known;
        for (const auto& s : feature_specs()) {
            if (s.mandatory) continue;
            known += known.empty() ? s.name : std::string(", ") + s.name;
            if (name == s.name) hit = &s;
        }
        if (!hit)
            throw std::invalid_argument(fmt::format(
                "TCPTRACK_DISABLE: unknown optional feature '{}' (known: {})", name, known));
        out.insert(hit->id);
    }
    return out;
}

void apply_disabled(Features& f, const std::set<FeatureId>& disabled) {
    for (FeatureId id : disabled) {
        if (!f[id].ok) continue;  // keep the kernel's own reason
        f[id].ok = false;
        f[id].why = "disabled by TCPTRACK_DISABLE";
    }
}

bool use_tcx(const Features& f, AttachMode mode) {
    if (mode == AttachMode::Tc) return false;
    if (f.has(FeatureId::Tcx)) return true;
    if (mode == AttachMode::Tcx)
        throw Error("--attach tcx: TCX unavailable: " + f[FeatureId::Tcx].why +
                    " (use --attach tc or auto)");
    return false;
}

std::vector<std::string> fallback_notes(const Features& f) {
    std::vector<std::string> notes;
    for (const auto& s : feature_specs()) {
        if (s.mandatory || f.has(s.id)) continue;
        notes.push_back(fmt::format("{} unavailable ({}): {}", s.what, f[s.id].why, s.fallback));
    }
    return notes;
}

}  // namespace tcptrack
