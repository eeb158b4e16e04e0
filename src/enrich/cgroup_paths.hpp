// SPDX-License-Identifier: MIT
// The cgroup v2 directory a datapath cgroup id names. The classifiers record
// bpf_skb_cgroup_id's low 32 bits (tt_flow_info.owner_cgroup): kernfs's inode
// number of the cgroup's directory. One walk of the cgroup2 mount maps inodes
// to paths; a miss walks again, at most once a second, so a burst of short
// connections from a new pod costs one walk, and a bounded number of
// directories is read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "enrich/process_cache.hpp"

namespace tcptrack {

class CgroupPaths {
   public:
    static constexpr std::size_t kMaxDirs = 200000;  // a node has thousands at most
    static constexpr std::uint64_t kRewalkNs = 1000000000;

    // `root`: where the cgroup2 hierarchy is mounted ("" = nowhere: every lookup misses).
    explicit CgroupPaths(std::string root, std::size_t max_dirs = kMaxDirs)
        : root_(std::move(root)), max_dirs_(max_dirs) {}

    // The cgroup2 mount point in /proc/self/mountinfo's text, "" if none
    // (pure v2: /sys/fs/cgroup; hybrid: /sys/fs/cgroup/unified).
    static std::string mount_of(std::string_view mountinfo);
    // This process's cgroup2 mount.
    static CgroupPaths system();

    // The path ("/" for the root, "/kubepods.slice/...") of the cgroup whose
    // directory has this inode number (low 32 bits), or nullopt.
    std::optional<std::string> path_of(std::uint32_t id, std::uint64_t now_ns);

    const std::string& root() const { return root_; }
    std::uint64_t walks() const { return walks_; }

   private:
    void walk();

    std::string root_;
    std::size_t max_dirs_;
    std::unordered_map<std::uint32_t, std::string> paths_;
    std::uint64_t walks_ = 0;
    std::optional<std::uint64_t> last_walk_ns_;
};

// ProcessCache's CgroupOwner: the owner a cgroup id names (its path, pod and
// container; no process), one per id until the tree is walked again.
class CgroupOwners {
   public:
    explicit CgroupOwners(CgroupPaths paths) : paths_(std::move(paths)) {}
    std::shared_ptr<const Owner> operator()(std::uint32_t id, std::uint64_t now_ns);
    const CgroupPaths& paths() const { return paths_; }

   private:
    CgroupPaths paths_;
    std::unordered_map<std::uint32_t, std::shared_ptr<const Owner>> owners_;
    std::uint64_t walks_seen_ = 0;
};

// The owner fields of one cgroup path: cgroup (the container id if evident,
// else the path: procfs's rule), pod UID and container id.
std::shared_ptr<const Owner> owner_of_cgroup_path(std::string_view path);

}  // namespace tcptrack
