// SPDX-License-Identifier: MIT
// Pod and container attribution from cgroup paths: the layouts kubelet and the
// runtimes write (real-world samples of each), v1 and v2 /proc/PID/cgroup text,
// and paths that must not be taken for a pod or a container.
#include <gtest/gtest.h>

#include <string>

#include "enrich/pod.hpp"
#include "enrich/procfs.hpp"

namespace tcptrack {
namespace {

const std::string kId = "4b1a2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
const std::string kUid = "0e9c7f6a-1b2c-4d3e-8f9a-0b1c2d3e4f5a";
const std::string kUidUnderscored = "0e9c7f6a_1b2c_4d3e_8f9a_0b1c2d3e4f5a";

PodRef pod(const std::string& uid, const std::string& id) { return PodRef{uid, id}; }

TEST(Pod, UidForms) {
    EXPECT_EQ(pod_uid_of(kUid), kUid);
    EXPECT_EQ(pod_uid_of(kUidUnderscored), kUid);
    EXPECT_EQ(pod_uid_of("0E9C7F6A-1B2C-4D3E-8F9A-0B1C2D3E4F5A"), kUid);
    // A static pod's UID is its config hash: 32 hex, kept as is.
    EXPECT_EQ(pod_uid_of("2d6b6c8b0a6b1e9c6f4f5d4b5e0e9a4d"), "2d6b6c8b0a6b1e9c6f4f5d4b5e0e9a4d");
    EXPECT_EQ(pod_uid_of(""), std::nullopt);
    EXPECT_EQ(pod_uid_of(kUid.substr(0, 35)), std::nullopt);                      // truncated
    EXPECT_EQ(pod_uid_of("0e9c7f6a-1b2c_4d3e-8f9a-0b1c2d3e4f5a"), std::nullopt);  // mixed
    EXPECT_EQ(pod_uid_of("0e9c7f6a-1b2c-4d3e-8f9a-0b1c2d3e4f5g"), std::nullopt);  // not hex
    EXPECT_EQ(pod_uid_of("0e9c7f6a1-b2c-4d3e-8f9a-0b1c2d3e4f5a"), std::nullopt);  // misplaced
}

TEST(Pod, SystemdDriver) {
    // containerd, burstable
    EXPECT_EQ(pod_of_path("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" +
                          kUidUnderscored + ".slice/cri-containerd-" + kId + ".scope"),
              pod(kUid, kId));
    // CRI-O, besteffort
    EXPECT_EQ(pod_of_path("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" +
                          kUidUnderscored + ".slice/crio-" + kId + ".scope"),
              pod(kUid, kId));
    // dockershim / cri-dockerd, guaranteed (directly under kubepods.slice)
    EXPECT_EQ(pod_of_path("/kubepods.slice/kubepods-pod" + kUidUnderscored + ".slice/docker-" +
                          kId + ".scope"),
              pod(kUid, kId));
    // The pod's own cgroup (no container): the pod alone.
    EXPECT_EQ(pod_of_path("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" +
                          kUidUnderscored + ".slice"),
              pod(kUid, ""));
    // kind: kubelet with --cgroup-root=/kubelet (systemd names prefixed).
    EXPECT_EQ(pod_of_path("/kubelet.slice/kubelet-kubepods.slice/"
                          "kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" +
                          kUidUnderscored + ".slice/cri-containerd-" + kId + ".scope"),
              pod(kUid, kId));
    // CRI-O's monitor is not the container.
    EXPECT_EQ(pod_of_path("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" +
                          kUidUnderscored + ".slice/crio-conmon-" + kId + ".scope"),
              pod(kUid, ""));
}

TEST(Pod, CgroupfsDriver) {
    EXPECT_EQ(pod_of_path("/kubepods/burstable/pod" + kUid + "/" + kId), pod(kUid, kId));
    EXPECT_EQ(pod_of_path("/kubepods/besteffort/pod" + kUid + "/" + kId), pod(kUid, kId));
    EXPECT_EQ(pod_of_path("/kubepods/pod" + kUid + "/" + kId), pod(kUid, kId));  // guaranteed
    EXPECT_EQ(pod_of_path("/kubepods/burstable/pod" + kUid), pod(kUid, ""));
    // Upper-case hex (never written by kubelet, but harmless) comes out lower.
    std::string upper = kId;
    for (char& c : upper) c = static_cast<char>(std::toupper(c));
    EXPECT_EQ(pod_of_path("/kubepods/pod" + kUid + "/" + upper), pod(kUid, kId));
}

TEST(Pod, ContainersWithoutPods) {
    EXPECT_EQ(pod_of_path("/docker/" + kId), pod("", kId));
    EXPECT_EQ(pod_of_path("/system.slice/docker-" + kId + ".scope"), pod("", kId));
    EXPECT_EQ(pod_of_path("/system.slice/containerd.service/cri-containerd-" + kId + ".scope"),
              pod("", kId));
    EXPECT_EQ(pod_of_path("/default/" + kId), pod("", kId));  // containerd (ctr), cgroupfs
    EXPECT_EQ(pod_of_path("/machine.slice/crio-" + kId + ".scope"), pod("", kId));
    EXPECT_EQ(pod_of_path("/machine.slice/libpod-" + kId + ".scope/container"), pod("", kId));
    // Docker in docker: the inner container.
    const std::string inner(64, 'e');
    EXPECT_EQ(pod_of_path("/docker/" + kId + "/docker/" + inner), pod("", inner));
}

TEST(Pod, Negatives) {
    EXPECT_EQ(pod_of_path("/user.slice/user-1000.slice/session-3.scope"), pod("", ""));
    EXPECT_EQ(pod_of_path("/user.slice/user-1000.slice/user@1000.service/app.slice"), pod("", ""));
    EXPECT_EQ(pod_of_path("/"), pod("", ""));
    EXPECT_EQ(pod_of_path(""), pod("", ""));
    // 64 hex that is no container: not under a runtime, not in kubepods.
    EXPECT_EQ(pod_of_path("/user.slice/" + kId), pod("", ""));
    EXPECT_EQ(pod_of_path("/system.slice/" + kId + ".service"), pod("", ""));
    EXPECT_EQ(pod_of_path("/system.slice/session-" + kId + ".scope"), pod("", ""));
    // Truncated ids: 63 hex, docker's 12-hex short form.
    EXPECT_EQ(pod_of_path("/docker/" + kId.substr(1)), pod("", ""));
    EXPECT_EQ(pod_of_path("/docker/" + kId.substr(0, 12)), pod("", ""));
    EXPECT_EQ(pod_of_path("/system.slice/docker-" + kId.substr(0, 63) + ".scope"), pod("", ""));
    // A "pod<uid>" outside kubepods is no pod; a truncated pod UID is none.
    EXPECT_EQ(pod_of_path("/system.slice/pod" + kUid), pod("", ""));
    EXPECT_EQ(pod_of_path("/kubepods/burstable/pod" + kUid.substr(0, 30) + "/" + kId),
              pod("", kId));
    EXPECT_EQ(
        pod_of_path("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice"),
        pod("", ""));
    // Not hex.
    EXPECT_EQ(pod_of_path("/docker/" + std::string(64, 'g')), pod("", ""));
}

TEST(Pod, ProcCgroupText) {
    // cgroup v2 only.
    EXPECT_EQ(pod_of("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" +
                     kUidUnderscored + ".slice/cri-containerd-" + kId + ".scope\n"),
              pod(kUid, kId));
    // cgroup v1 (cgroupfs driver): every controller names the same path.
    EXPECT_EQ(pod_of("12:pids:/kubepods/burstable/pod" + kUid + "/" + kId +
                     "\n11:memory:/kubepods/burstable/pod" + kUid + "/" + kId +
                     "\n1:name=systemd:/kubepods/burstable/pod" + kUid + "/" + kId + "\n"),
              pod(kUid, kId));
    // Hybrid: v1 controllers name the pod, the v2 line only "/".
    EXPECT_EQ(pod_of("5:cpu,cpuacct:/kubepods/pod" + kUid + "/" + kId + "\n0::/\n"),
              pod(kUid, kId));
    // Hybrid the other way (this host's test): v1 at the root, v2 in a pod.
    EXPECT_EQ(pod_of("12:pids:/user.slice/user-0.slice\n1:name=systemd:/user.slice\n0::/kubepods/"
                     "burstable/pod" +
                     kUid + "/" + kId + "\n"),
              pod(kUid, kId));
    // The line that names the most wins among v1 lines.
    EXPECT_EQ(
        pod_of("4:memory:/docker/" + kId + "\n3:pids:/kubepods/pod" + kUid + "/" + kId + "\n"),
        pod(kUid, kId));
    EXPECT_EQ(pod_of("0::/user.slice/user-1000.slice/session-3.scope\n"), pod("", ""));
    EXPECT_EQ(pod_of(""), pod("", ""));
    EXPECT_EQ(pod_of("garbage\n"), pod("", ""));
}

TEST(Pod, CgroupFieldUsesTheSameRule) {
    // procfs's cgroup field: the container id when evident, else the v2 path.
    EXPECT_EQ(cgroup_of("0::/kubepods/burstable/pod" + kUid + "/" + kId + "\n"), kId);
    EXPECT_EQ(cgroup_of("0::/user.slice/" + kId + "\n"), "/user.slice/" + kId);
    EXPECT_EQ(container_id("/docker/" + kId), kId);
}

}  // namespace
}  // namespace tcptrack
