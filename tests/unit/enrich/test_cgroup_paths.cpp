// SPDX-License-Identifier: MIT
// The datapath's cgroup ids back to paths, pods and containers (enrich/cgroup_paths),
// and ProcessCache falling back to them for connections sock_diag cannot answer for.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "enrich/cgroup_paths.hpp"
#include "enrich/process_cache.hpp"
#include "sample_finder.hpp"

namespace tcptrack {
namespace {

namespace fs = std::filesystem;

constexpr const char* kUid = "0e9c7f6a-1b2c-4d3e-8f9a-0b1c2d3e4f5a";
const std::string kCid(64, 'b');
constexpr std::uint64_t kSecond = 1000000000;

// A directory tree shaped like a kubelet (systemd driver) cgroup2 mount.
struct Tree {
    fs::path root = fs::temp_directory_path() / ("tt-cgroups-" + std::to_string(getpid()));
    std::string pod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" +
                      std::string("0e9c7f6a_1b2c_4d3e_8f9a_0b1c2d3e4f5a") + ".slice";
    std::string ctr = pod + "/cri-containerd-" + kCid + ".scope";
    Tree() {
        fs::remove_all(root);
        fs::create_directories(root.string() + ctr);
        fs::create_directories(root / "system.slice" / "sshd.service");
    }
    ~Tree() { fs::remove_all(root); }
    std::uint32_t id(const std::string& rel) const {  // what bpf_skb_cgroup_id's low bits are
        struct stat st {};
        EXPECT_EQ(stat((root.string() + rel).c_str(), &st), 0) << rel;
        return static_cast<std::uint32_t>(st.st_ino);
    }
};

TEST(CgroupPaths, MountFromMountinfo) {
    const char* hybrid =
        "25 1 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
        "26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid shared:5 - cgroup2 cgroup2 rw\n"
        "27 25 0:25 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n";
    EXPECT_EQ(CgroupPaths::mount_of(hybrid), "/sys/fs/cgroup/unified");
    EXPECT_EQ(CgroupPaths::mount_of("30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"),
              "/sys/fs/cgroup");
    EXPECT_EQ(CgroupPaths::mount_of("27 25 0:25 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw\n"), "");
    EXPECT_EQ(CgroupPaths::mount_of(""), "");
}

TEST(CgroupPaths, InodesToPathsOneWalkPerSecondOfMisses) {
    Tree t;
    CgroupPaths paths(t.root.string());
    EXPECT_EQ(paths.path_of(t.id(t.ctr), 10 * kSecond), t.ctr);
    EXPECT_EQ(paths.path_of(t.id(""), 10 * kSecond), "/");
    EXPECT_EQ(paths.path_of(t.id("/system.slice/sshd.service"), 10 * kSecond),
              "/system.slice/sshd.service");
    EXPECT_EQ(paths.walks(), 1u);
    EXPECT_EQ(paths.path_of(0, 10 * kSecond), std::nullopt);  // none recorded: no walk

    // A pod made after the walk: a miss walks again, but not twice in a second.
    fs::create_directories(t.root.string() + t.pod + "/late");
    const std::uint32_t late = t.id(t.pod + "/late");
    EXPECT_EQ(paths.path_of(late, 10 * kSecond + 1), std::nullopt);
    EXPECT_EQ(paths.walks(), 1u);
    EXPECT_EQ(paths.path_of(late, 11 * kSecond), t.pod + "/late");
    EXPECT_EQ(paths.walks(), 2u);
    EXPECT_EQ(CgroupPaths("").path_of(late, 0), std::nullopt);  // no cgroup2 mount
}

TEST(CgroupPaths, BoundedNumberOfDirectories) {
    Tree t;
    CgroupPaths paths(t.root.string(), 3);  // the root and two more
    EXPECT_EQ(paths.path_of(t.id(""), 0), "/");
    int found = 0;
    for (const char* rel : {"/kubepods.slice", "/system.slice", "/system.slice/sshd.service",
                            "/kubepods.slice/kubepods-burstable.slice"})
        found += paths.path_of(t.id(rel), 0).has_value();
    EXPECT_EQ(found, 2);
}

TEST(CgroupPaths, OwnersNamePodAndContainerButNoProcess) {
    Tree t;
    CgroupOwners owners{CgroupPaths(t.root.string())};
    const auto o = owners(t.id(t.ctr), kSecond);
    ASSERT_TRUE(o);
    EXPECT_EQ(o->pid, 0u);
    EXPECT_EQ(o->comm, "");
    EXPECT_EQ(o->pod_uid, kUid);
    EXPECT_EQ(o->container_id, kCid);
    EXPECT_EQ(o->cgroup, kCid);  // procfs's rule: the container id when evident
    EXPECT_EQ(owners(t.id(t.ctr), kSecond).get(), o.get());  // shared per id
    const auto host = owners(t.id("/system.slice/sshd.service"), kSecond);
    ASSERT_TRUE(host);
    EXPECT_EQ(host->cgroup, "/system.slice/sshd.service");
    EXPECT_EQ(host->pod_uid, "");
    EXPECT_EQ(owners(0xfffffff0u, 3 * kSecond), nullptr);
}

FlowSample sample(std::uint32_t slot, std::uint32_t cgroup_id) {
    FlowSample s;
    tt_flow_key k{};
    k.family = TT_FAMILY_INET;
    k.port_a = htons(40000 + slot);
    k.port_b = htons(80);
    s.key = k;
    s.has_info = true;
    s.info.flags = TT_F_SYN_SEEN | TT_F_LOCAL_CLIENT;
    s.info.owner_cgroup = cgroup_id;
    s.bytes[0] = 100;
    s.ref = SlotRef{slot, 1};
    return s;
}

struct FallbackTest : ::testing::Test {
    int lookups = 0, by_cgroup = 0;
    ProcessCache cache{
        [this](std::vector<OwnerQuery>& q) { lookups += int(q.size()); },
        [this](std::uint32_t id) -> std::shared_ptr<const Owner> {
            ++by_cgroup;
            if (id != 77) return nullptr;
            return owner_of_cgroup_path("/kubepods/pod" + std::string(kUid) + "/" + kCid);
        }};
    std::vector<SlotRef> idle;
};

TEST_F(FallbackTest, ConnectionEndedBeforeItsFirstReportKeepsItsPod) {
    std::vector<FlowSample> samples = {sample(0, 77), sample(1, 0), sample(2, 5)};
    for (auto& s : samples) s.finished = true;
    samples[0].info.owner_side = TT_DIR_AB;  // side A's socket: the client's (info.client)
    cache.update(samples, {0, 1, 2}, idle, 0, finder_of(samples, 0));
    EXPECT_EQ(lookups, 0);    // sock_diag is not asked for sockets that are gone
    EXPECT_EQ(by_cgroup, 2);  // not for the one without an id
    FlowRow row;
    cache.fill(SlotRef{0, 1}, row);
    EXPECT_EQ(row.pod_uid, kUid);
    EXPECT_EQ(row.container_id, kCid);
    EXPECT_EQ(row.pid, std::nullopt);  // no process: only the cgroup is known
    EXPECT_EQ(row.comm, "");
    EXPECT_TRUE(row.owner_client);   // the per-pod series' direction
    cache.fill(SlotRef{2, 1}, row);  // an id that names nothing
    EXPECT_EQ(row.pod_uid, "");
    // Forgotten after its last row, as any owner.
    cache.update({}, {}, idle, 0, finder_of(samples, 0));
    EXPECT_EQ(cache.known(), 0u);
}

TEST_F(FallbackTest, NeverFoundWhileLiveFallsBackWhenGivenUp) {
    std::vector<FlowSample> samples = {sample(0, 77)};
    samples[0].info.owner_side = TT_DIR_BA;  // the server's socket
    cache.update(samples, {0}, idle, 1, finder_of(samples, 1));
    for (int i = 1; i < ProcessCache::kMaxTries; ++i) {
        EXPECT_EQ(cache.find(SlotRef{0, 1}), nullptr);
        samples[0].set_prev(samples[0].counts());
        cache.update(samples, {}, idle, 1, finder_of(samples, 1));
    }
    EXPECT_EQ(lookups, int(ProcessCache::kMaxTries));
    ASSERT_NE(cache.find(SlotRef{0, 1}), nullptr);
    EXPECT_EQ(cache.find(SlotRef{0, 1})->pod_uid, kUid);
    FlowRow row;
    row.owner_client = true;
    cache.fill(SlotRef{0, 1}, row);
    EXPECT_FALSE(row.owner_client);
}

}  // namespace
}  // namespace tcptrack
