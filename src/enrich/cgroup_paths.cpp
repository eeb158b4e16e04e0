// SPDX-License-Identifier: MIT
// cgroup id -> cgroup path, by walking the cgroup2 mount (readdir's d_ino:
// no stat per directory).
#include "enrich/cgroup_paths.hpp"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "enrich/pod.hpp"

namespace tcptrack {

std::string CgroupPaths::mount_of(std::string_view text) {
    // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER"
    while (!text.empty()) {
        const std::size_t nl = text.find('\n');
        const std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        const std::size_t dash = line.find(" - ");
        if (dash == std::string_view::npos) continue;
        std::istringstream fs{std::string(line.substr(dash + 3))};
        std::string fstype;
        fs >> fstype;
        if (fstype != "cgroup2") continue;
        std::istringstream head{std::string(line.substr(0, dash))};
        std::string id, parent, dev, root, point;
        if (head >> id >> parent >> dev >> root >> point) return point;
    }
    return "";
}

CgroupPaths CgroupPaths::system() {
    std::ifstream in("/proc/self/mountinfo");
    std::stringstream text;
    text << in.rdbuf();
    return CgroupPaths(mount_of(text.str()));
}

std::optional<std::string> CgroupPaths::path_of(std::uint32_t id, std::uint64_t now_ns) {
    if (root_.empty() || id == 0) return std::nullopt;
    if (const auto it = paths_.find(id); it != paths_.end()) return it->second;
    if (last_walk_ns_ && now_ns - *last_walk_ns_ < kRewalkNs) return std::nullopt;
    last_walk_ns_ = now_ns;
    walk();
    if (const auto it = paths_.find(id); it != paths_.end()) return it->second;
    return std::nullopt;
}

void CgroupPaths::walk() {
    ++walks_;
    paths_.clear();
    struct stat st {};
    if (stat(root_.c_str(), &st) != 0) return;
    paths_[static_cast<std::uint32_t>(st.st_ino)] = "/";
    // Depth first over paths (not fds: a directory with thousands of
    // children must not hold thousands of descriptors open).
    std::vector<std::string> stack{""};
    std::size_t dirs = 1;
    while (!stack.empty() && dirs < max_dirs_) {
        const std::string path = std::move(stack.back());
        stack.pop_back();
        DIR* d = opendir((root_ + path).c_str());
        if (!d) continue;  // removed meanwhile
        while (const dirent* e = readdir(d)) {
            if (e->d_type != DT_DIR || e->d_name[0] == '.') continue;
            if (dirs++ >= max_dirs_) break;
            std::string child = path + "/" + e->d_name;
            paths_[static_cast<std::uint32_t>(e->d_ino)] = child;
            stack.push_back(std::move(child));
        }
        closedir(d);
    }
}

std::shared_ptr<const Owner> CgroupOwners::operator()(std::uint32_t id, std::uint64_t now_ns) {
    const std::optional<std::string> path = paths_.path_of(id, now_ns);
    if (paths_.walks() != walks_seen_) {  // ids may name other directories now
        owners_.clear();
        walks_seen_ = paths_.walks();
    }
    if (!path) return nullptr;
    auto& o = owners_[id];
    if (!o) o = owner_of_cgroup_path(*path);
    return o;
}

std::shared_ptr<const Owner> owner_of_cgroup_path(std::string_view path) {
    auto o = std::make_shared<Owner>();
    o->cgroup = container_id_of(path).value_or(std::string(path));
    PodRef pod = pod_of_path(path);
    o->pod_uid = std::move(pod.pod_uid);
    o->container_id = std::move(pod.container_id);
    return o;
}

}  // namespace tcptrack
