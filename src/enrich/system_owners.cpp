// SPDX-License-Identifier: MIT
// The system side of process attribution: sock_diag for the socket inode (in
// the attach namespace, else beyond the flow's interface), a /proc scan for
// its process, /proc/PID/comm and cgroup for the rest.
#include "enrich/system_owners.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <functional>
#include <unordered_set>

#include "enrich/pod.hpp"
#include "enrich/procfs.hpp"
#include "sys/clock.hpp"
#include "sys/error.hpp"

namespace tcptrack {
namespace {

// Reads a small /proc file; "" when it cannot be read (the process is gone).
std::string read_small(int dirfd, const char* path) {
    const int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {};
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;)
        out.append(buf, static_cast<std::size_t>(n));
    close(fd);
    return out;
}

// The inode of each of n connections' sockets at either end (0: neither has
// one there); tuple_at(i) makes the end to try first. other_end[i]: found at
// the other end (the socket is that end's). Many are answered from dumps
// without a vector of their tuples; a few are asked one by one.
void either_end(SockDiag& diag, std::size_t n,
                const std::function<SocketTuple(std::size_t)>& tuple_at,
                std::vector<std::uint64_t>& inodes, std::vector<char>& other_end) {
    other_end.assign(n, 0);
    if (n > SystemOwners::kDumpAbove) {
        diag.inodes_dump(n, tuple_at, inodes, &other_end);  // one dump answers both orderings
        return;
    }
    std::vector<SocketTuple> tuples;
    tuples.reserve(n);
    for (std::size_t i = 0; i < n; ++i) tuples.push_back(tuple_at(i));
    diag.inodes_exact(tuples, inodes);
    std::vector<SocketTuple> other;
    std::vector<std::size_t> which;
    for (std::size_t i = 0; i < n; ++i)
        if (!inodes[i]) {
            other.push_back(flipped(tuples[i]));
            which.push_back(i);
        }
    if (other.empty()) return;
    std::vector<std::uint64_t> more;
    diag.inodes_exact(other, more);
    for (std::size_t k = 0; k < which.size(); ++k) {
        inodes[which[k]] = more[k];
        other_end[which[k]] = more[k] != 0;
    }
}

// The end of query q to try first: the client's when its SYN left through this host.
SocketTuple first_end(const OwnerQuery& q) { return q.local_client ? q.conn : flipped(q.conn); }

std::optional<std::uint64_t> own_netns() {
    struct stat st {};
    if (stat("/proc/thread-self/ns/net", &st) == 0 || stat("/proc/self/ns/net", &st) == 0)
        return static_cast<std::uint64_t>(st.st_ino);
    return std::nullopt;
}

SockDiag home_diag() {
    try {
        return SockDiag();
    } catch (const Error& e) {
        throw Error(fmt::format("process lookup: {} (use --no-process)", e.what()));
    }
}

}  // namespace

SystemOwners::SystemOwners() : diag_(home_diag()), netns_(own_netns()) {
    // sock_diag answers from the namespace its socket was made in (after
    // --netns): every socket it finds lives there. Interfaces' peers and
    // nsids are asked here too, where the flows' ifindexes mean something.
    try {
        ids_ = std::make_unique<NetnsIds>();
    } catch (const Error&) {
        return;  // no rtnetlink: the attach namespace only
    }
    NetnsIds* ids = ids_.get();
    peers_ = std::make_unique<PeerNamespaces>(
        each_netns_file, [ids](int fd) { return ids->nsid_of(fd); }, netns_.value_or(0));
}

std::size_t SystemOwners::scan_proc() {
    const std::uint64_t start = monotonic_ns();
    inode_pid_.clear();
    pid_owner_.clear();  // pids may have been reused, comm changed
    std::size_t links = 0;
    DIR* proc = opendir("/proc");
    if (!proc) return 0;
    const int procfd = dirfd(proc);
    char path[64], link[64];
    while (const dirent* d = readdir(proc)) {
        std::uint32_t pid = 0;
        const char* end = d->d_name + std::strlen(d->d_name);
        if (std::from_chars(d->d_name, end, pid).ptr != end || pid == 0) continue;
        std::snprintf(path, sizeof path, "%u/fd", pid);
        const int fdd = openat(procfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fdd < 0) continue;  // gone, or not ours to read
        DIR* fds = fdopendir(fdd);
        if (!fds) {
            close(fdd);
            continue;
        }
        while (const dirent* f = readdir(fds)) {
            if (f->d_name[0] == '.') continue;
            const ssize_t n = readlinkat(fdd, f->d_name, link, sizeof link);
            if (n <= 0 || n == sizeof link) continue;
            if (const auto ino =
                    socket_inode(std::string_view(link, static_cast<std::size_t>(n)))) {
                // Shared sockets (forked servers): the first, lowest pid, stays.
                inode_pid_.emplace(*ino, pid);
                ++links;
            }
        }
        closedir(fds);
    }
    closedir(proc);
    scanned_ = true;
    last_scan_ns_ = monotonic_ns();
    scan_cost_ns_ = last_scan_ns_ - start;
    return links;
}

std::shared_ptr<const Owner> SystemOwners::owner_of(std::uint32_t pid,
                                                    std::optional<std::uint64_t> netns) {
    const auto key = std::make_pair(pid, netns);
    if (const auto it = pid_owner_.find(key); it != pid_owner_.end()) return it->second;
    const int dir = open(fmt::format("/proc/{}", pid).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) return nullptr;
    auto o = std::make_shared<Owner>();
    o->pid = pid;
    o->comm = read_small(dir, "comm");
    const std::string cg = read_small(dir, "cgroup");
    close(dir);
    if (o->comm.empty()) return nullptr;  // exited meanwhile
    if (o->comm.back() == '\n') o->comm.pop_back();
    o->cgroup = cgroup_of(cg);
    PodRef pod = pod_of(cg);
    o->pod_uid = std::move(pod.pod_uid);
    o->container_id = std::move(pod.container_id);
    o->netns = netns;
    pid_owner_[key] = o;
    return o;
}

void SystemOwners::peer_inodes(const std::vector<OwnerQuery>& queries,
                               std::vector<std::uint64_t>& inodes,
                               std::vector<std::optional<std::uint64_t>>& netns,
                               std::vector<char>& wait, std::vector<char>& other_end) {
    if (!peers_) return;
    // Each interface of a miss asked once per report: a NIC has no peer, a veth
    // into another namespace has one.
    std::unordered_map<std::uint32_t, std::optional<LinkPeer>> links;
    for (std::size_t i = 0; i < queries.size(); ++i)
        if (!inodes[i] && queries[i].conn.ifindex)
            links.emplace(queries[i].conn.ifindex, std::nullopt);
    if (links.empty()) return;
    std::vector<int> nsids;
    for (auto& [ifindex, peer] : links) {
        ++peer_stats_.links;
        if ((peer = ids_->link_peer(static_cast<int>(ifindex)))) nsids.push_back(peer->nsid);
    }
    if (nsids.empty()) return;
    const std::uint64_t now = monotonic_ns();
    const bool complete = peers_->want(nsids, now);

    std::unordered_map<int, std::vector<std::size_t>> by_nsid;
    for (std::size_t i = 0; i < queries.size(); ++i)
        if (!inodes[i] && queries[i].conn.ifindex)
            if (const auto& peer = links[queries[i].conn.ifindex]) by_nsid[peer->nsid].push_back(i);
    for (const auto& [nsid, which] : by_nsid) {
        PeerNamespaces::Peer* p = peers_->get(nsid, now);
        if (!p) {  // not found, or not looked for yet
            if (!complete)
                for (const std::size_t i : which) wait[i] = 1;
            continue;
        }
        if (!p->diag) {
            try {
                p->diag = std::make_unique<SockDiag>(p->ns.get());
            } catch (const Error&) {
                continue;
            }
        }
        const auto there = [&](std::size_t k) {
            SocketTuple t = first_end(queries[which[k]]);
            // A socket bound to the interface is bound to the peer's end there.
            t.ifindex = static_cast<std::uint32_t>(links[t.ifindex]->ifindex);
            return t;
        };
        std::vector<std::uint64_t> found;
        std::vector<char> other;
        either_end(*p->diag, which.size(), there, found, other);
        peer_stats_.queries += which.size();
        for (std::size_t k = 0; k < which.size(); ++k)
            if (found[k]) {
                inodes[which[k]] = found[k];
                other_end[which[k]] = other[k];
                netns[which[k]] = p->inode;
                ++peer_stats_.found;
            }
    }
}

void SystemOwners::release_idle() {
    if (peers_) peers_->release_idle(monotonic_ns());
}

SystemOwners::PeerStats SystemOwners::peer_stats() const {
    PeerStats s = peer_stats_;
    if (peers_) {
        s.scans = peers_->scans();
        s.held = peers_->held();
    }
    return s;
}

void SystemOwners::operator()(std::vector<OwnerQuery>& queries) {
    // The socket's own end first: the client's when its SYN left through this host.
    std::vector<std::uint64_t> inodes;
    std::vector<char> other_end;  // found with the other ordering: the other end's socket
    either_end(
        diag_, queries.size(), [&](std::size_t i) { return first_end(queries[i]); }, inodes,
        other_end);
    // Only the misses look beyond their interface.
    std::vector<std::optional<std::uint64_t>> netns(queries.size(), netns_);
    std::vector<char> wait(queries.size(), 0);
    peer_inodes(queries, inodes, netns, wait, other_end);
    // first_end() has the client local when local_client.
    for (std::size_t i = 0; i < queries.size(); ++i)
        queries[i].owner_client = queries[i].local_client != (other_end[i] != 0);

    // Inode -> pid; an unknown inode (a socket newer than the last scan) asks
    // for a rescan, at most once per max(1 s, 20 x its cost): a scan reads
    // every fd link of every process.
    const auto resolve = [&](bool final_try) {
        bool unknown = false;
        for (std::size_t i = 0; i < queries.size(); ++i) {
            OwnerQuery& q = queries[i];
            if (q.result == OwnerQuery::Result::Found) continue;
            q.result = wait[i] ? OwnerQuery::Result::Wait : OwnerQuery::Result::Retry;
            if (!inodes[i]) continue;
            const auto it = inode_pid_.find(inodes[i]);
            if (it == inode_pid_.end()) {
                unknown = true;
                if (!final_try) q.result = OwnerQuery::Result::Wait;
                continue;
            }
            if ((q.owner = owner_of(it->second, netns[i]))) q.result = OwnerQuery::Result::Found;
        }
        return unknown;
    };
    if (!resolve(false)) return;
    const std::uint64_t now = monotonic_ns();
    const std::uint64_t gap = std::max<std::uint64_t>(1'000'000'000, 20 * scan_cost_ns_);
    if (scanned_ && now - last_scan_ns_ < gap) return;  // Wait: tried at a later report
    scan_proc();
    resolve(true);
}

}  // namespace tcptrack
