// SPDX-License-Identifier: MIT
// Peer namespaces by nsid: scans on a miss, one fd per namespace in use.
#include "enrich/peer_netns.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string>
#include <unordered_set>

#include "sys/clock.hpp"
#include "sys/netns.hpp"

namespace tcptrack {

PeerNamespaces::PeerNamespaces(Candidates candidates, NsidOf nsid_of, std::uint64_t home)
    : candidates_(std::move(candidates)), nsid_of_(std::move(nsid_of)), home_(home) {}

bool PeerNamespaces::want(const std::vector<int>& nsids, std::uint64_t now) {
    std::vector<int> missing;
    for (const int id : nsids)
        if (!peers_.count(id) && std::find(missing.begin(), missing.end(), id) == missing.end())
            missing.push_back(id);
    if (missing.empty()) return true;
    const std::uint64_t gap = std::max<std::uint64_t>(1'000'000'000, 20 * scan_cost_ns_);
    if (scans_ > 0 && now - last_scan_ns_ < gap) return false;
    scan(std::move(missing), now);
    return true;
}

void PeerNamespaces::scan(std::vector<int> missing, std::uint64_t now) {
    const std::uint64_t start = monotonic_ns();
    // One look per namespace: many processes share one, and held ones are known.
    std::unordered_set<std::uint64_t> seen{home_};
    for (const auto& [id, p] : peers_) seen.insert(p.inode);
    std::size_t asked = 0;
    candidates_([&](const char* path) {
        struct stat st {};
        if (::stat(path, &st) != 0 || !seen.insert(st.st_ino).second) return true;
        if (++asked > kMaxNamespaces) return false;
        Fd fd(::open(path, O_RDONLY | O_CLOEXEC));
        if (!fd) return true;
        const std::optional<int> id = nsid_of_(fd.get());
        const auto it = id ? std::find(missing.begin(), missing.end(), *id) : missing.end();
        if (it == missing.end()) return true;
        missing.erase(it);
        // The inode of what was opened (the path may name another namespace since the stat).
        const std::uint64_t inode = netns_inode(fd.get());
        peers_[*id] = Peer{std::move(fd), inode, now, nullptr};
        return !missing.empty();
    });
    ++scans_;
    last_scan_ns_ = now;
    scan_cost_ns_ = monotonic_ns() - start;
}

PeerNamespaces::Peer* PeerNamespaces::get(int nsid, std::uint64_t now) {
    const auto it = peers_.find(nsid);
    if (it == peers_.end()) return nullptr;
    it->second.used_ns = now;
    return &it->second;
}

void PeerNamespaces::release_idle(std::uint64_t now) {
    for (auto it = peers_.begin(); it != peers_.end();)
        it = now - it->second.used_ns >= kIdleNs ? peers_.erase(it) : std::next(it);
}

void each_netns_file(const std::function<bool(const char*)>& visit) {
    std::string path;
    const auto each_entry = [&](const char* dir, const char* suffix, bool pids_only) {
        DIR* d = opendir(dir);
        if (!d) return true;
        bool more = true;
        while (const dirent* e = more ? readdir(d) : nullptr) {
            if (e->d_name[0] == '.') continue;
            if (pids_only) {
                std::uint32_t pid = 0;
                const char* end = e->d_name + std::strlen(e->d_name);
                if (std::from_chars(e->d_name, end, pid).ptr != end || pid == 0) continue;
            }
            path.assign(dir).append("/").append(e->d_name).append(suffix);
            more = visit(path.c_str());
        }
        closedir(d);
        return more;
    };
    each_entry("/run/netns", "", false) && each_entry("/run/docker/netns", "", false) &&
        each_entry("/proc", "/ns/net", true);
}

}  // namespace tcptrack
