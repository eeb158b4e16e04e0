// SPDX-License-Identifier: MIT
// Pod and container attribution from a process's cgroup, pure and unit-tested:
// the layouts kubelet (systemd and cgroupfs drivers) and the runtimes
// (containerd, CRI-O, docker, podman) give a container's cgroup, v1 or v2.
// Pod names and namespaces are not on the node (they live in the API
// server): a collector adds them from the pod UID.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tcptrack {

struct PodRef {
    std::string pod_uid;       // dashed 8-4-4-4-12 (a static pod's 32-hex hash as is); "" if none
    std::string container_id;  // 64 hex digits; "" if none
    bool operator==(const PodRef&) const = default;
};

// A pod UID as kubelet names a pod's cgroup: "pod" + the UID, dashed
// (cgroupfs driver) or with underscores (systemd driver, "kubepods-...-pod<uid>.slice");
// normalised to the dashed lower-case form. Empty for anything else.
std::optional<std::string> pod_uid_of(std::string_view uid);

// The container id evident in one cgroup path: the innermost segment that is
// docker-/cri-containerd-/crio-/libpod-/containerd-<64 hex>[.scope] (not
// crio-conmon-, the monitor), or 64 hex bare under a docker/moby/default
// runtime parent or inside kubepods (cgroupfs driver).
std::optional<std::string> container_id_of(std::string_view path);

// Pod UID (only inside a kubepods hierarchy) and container id of one cgroup path.
PodRef pod_of_path(std::string_view path);

// From /proc/PID/cgroup's text ("N:controllers:/path" lines, v1, and the v2
// "0::/path"): the v2 line when it names a pod or a container, else the v1
// line that names the most (a pod and a container over a container alone).
PodRef pod_of(std::string_view proc_cgroup);

}  // namespace tcptrack
