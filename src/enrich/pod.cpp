// SPDX-License-Identifier: MIT
// Pod and container attribution from cgroup paths.
#include "enrich/pod.hpp"

#include <algorithm>
#include <vector>

namespace tcptrack {
namespace {

bool is_hex(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    });
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
    return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

// The path's segments, leading/trailing/double slashes dropped.
std::vector<std::string_view> segments(std::string_view path) {
    std::vector<std::string_view> out;
    while (!path.empty()) {
        const std::size_t slash = path.find('/');
        const std::string_view seg = path.substr(0, slash);
        if (!seg.empty()) out.push_back(seg);
        if (slash == std::string_view::npos) break;
        path.remove_prefix(slash + 1);
    }
    return out;
}

// A segment of a kubepods hierarchy: "kubepods", "kubepods.slice" and the QoS
// slices under it, also below a --cgroup-root ("kubelet-kubepods.slice", kind).
bool is_kubepods(std::string_view seg) {
    if (ends_with(seg, ".slice")) seg.remove_suffix(6);
    return seg == "kubepods" || starts_with(seg, "kubepods-") || ends_with(seg, "-kubepods") ||
           seg.find("-kubepods-") != std::string_view::npos;
}

// The pod UID of a pod's cgroup segment: "pod<uid>" (cgroupfs) or
// "[prefix-]kubepods[-qos]-pod<uid_underscored>.slice" (systemd).
// The bare form counts only inside kubepods (`in_kubepods`).
std::optional<std::string> pod_segment(std::string_view seg, bool in_kubepods) {
    if (starts_with(seg, "pod")) return in_kubepods ? pod_uid_of(seg.substr(3)) : std::nullopt;
    if (!ends_with(seg, ".slice")) return std::nullopt;
    seg.remove_suffix(6);
    const std::size_t at = seg.rfind("-pod");
    if (at == std::string_view::npos || !is_kubepods(seg.substr(0, at))) return std::nullopt;
    return pod_uid_of(seg.substr(at + 4));
}

// A runtime's container segment (the id, or nothing).
std::optional<std::string_view> prefixed_id(std::string_view seg) {
    static constexpr std::string_view prefixes[] = {"docker-", "cri-containerd-", "crio-",
                                                    "libpod-", "containerd-"};
    if (ends_with(seg, ".scope")) seg.remove_suffix(6);
    if (starts_with(seg, "crio-conmon-")) return std::nullopt;  // the monitor, not the container
    for (const std::string_view pre : prefixes) {
        if (!starts_with(seg, pre)) continue;
        const std::string_view id = seg.substr(pre.size());
        if (id.size() == 64 && is_hex(id)) return id;
    }
    return std::nullopt;
}

bool bare_id(std::string_view seg) { return seg.size() == 64 && is_hex(seg); }

// Parents under which a bare 64-hex segment is a container (cgroupfs drivers:
// docker, docker's containerd namespace, containerd's default namespace).
bool runtime_parent(std::string_view seg) {
    return seg == "docker" || seg == "moby" || seg == "default";
}

PodRef from_segments(const std::vector<std::string_view>& segs) {
    PodRef out;
    bool in_kubepods = false;
    for (std::size_t i = 0; i < segs.size(); ++i) {
        const std::string_view seg = segs[i];
        if (out.pod_uid.empty()) {
            if (auto uid = pod_segment(seg, in_kubepods)) {
                out.pod_uid = std::move(*uid);
                in_kubepods = true;
                continue;
            }
        }
        if (is_kubepods(seg)) {
            in_kubepods = true;
            continue;
        }
        // The innermost container wins (docker in docker: the inner one).
        if (const auto id = prefixed_id(seg))
            out.container_id = lower(*id);
        else if (bare_id(seg) && (in_kubepods || (i > 0 && runtime_parent(segs[i - 1]))))
            out.container_id = lower(seg);
    }
    return out;
}

int weight(const PodRef& p) {
    return (p.pod_uid.empty() ? 0 : 2) + (p.container_id.empty() ? 0 : 1);
}

}  // namespace

std::optional<std::string> pod_uid_of(std::string_view uid) {
    // 8-4-4-4-12 hex with '-' or '_' (kubelet swaps them for systemd's sake).
    static constexpr std::size_t dash[] = {8, 13, 18, 23};
    if (uid.size() == 32 && is_hex(uid)) return lower(uid);  // a static pod: its config hash
    if (uid.size() != 36) return std::nullopt;
    std::string out = lower(uid);
    for (std::size_t i = 0; i < out.size(); ++i) {
        const bool sep = std::find(std::begin(dash), std::end(dash), i) != std::end(dash);
        if (sep) {
            if (out[i] != '-' && out[i] != '_') return std::nullopt;
            out[i] = '-';
        } else if (!is_hex(std::string_view(&out[i], 1))) {
            return std::nullopt;
        }
    }
    // One separator style throughout: "a_b-c" is no kubelet name.
    if (uid.find('-') != std::string_view::npos && uid.find('_') != std::string_view::npos)
        return std::nullopt;
    return out;
}

std::optional<std::string> container_id_of(std::string_view path) {
    std::string id = from_segments(segments(path)).container_id;
    if (id.empty()) return std::nullopt;
    return id;
}

PodRef pod_of_path(std::string_view path) { return from_segments(segments(path)); }

PodRef pod_of(std::string_view text) {
    PodRef best;
    while (!text.empty()) {
        const std::size_t nl = text.find('\n');
        const std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        // "hierarchy-ID:controller-list:path"; the path may itself hold ':'.
        const std::size_t c1 = line.find(':');
        if (c1 == std::string_view::npos) continue;
        const std::size_t c2 = line.find(':', c1 + 1);
        if (c2 == std::string_view::npos) continue;
        PodRef p = pod_of_path(line.substr(c2 + 1));
        if (line.substr(0, c2 + 1) == "0::" && weight(p) > 0) return p;  // v2 first
        if (weight(p) > weight(best)) best = std::move(p);
    }
    return best;
}

}  // namespace tcptrack
