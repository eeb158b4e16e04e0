// SPDX-License-Identifier: MIT
// The system side of process attribution: sock_diag for the socket inode,
// a /proc scan for its process, /proc/PID/comm and cgroup for the rest.
#include "enrich/system_owners.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <unordered_set>

#include "datapath/collector.hpp"
#include "enrich/pod.hpp"
#include "enrich/procfs.hpp"
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

SocketTuple flipped(const SocketTuple& t) {
    return SocketTuple{t.family, t.remote, t.local, t.rport, t.lport, t.ifindex};
}

}  // namespace

SystemOwners::SystemOwners() {
    nl_ = mnl_socket_open2(NETLINK_SOCK_DIAG, SOCK_CLOEXEC);
    if (!nl_ || mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
        const int err = errno;
        if (nl_) mnl_socket_close(nl_);
        nl_ = nullptr;
        throw Error(
            fmt::format("process lookup: cannot open a sock_diag socket: {} (use --no-process)",
                        std::strerror(err)));
    }
    // Answers to a batch of exact requests queue up here before we read them:
    // room for a batch (an answer that does not fit is dropped by the kernel).
    const int fd = mnl_socket_get_fd(nl_);
    const int size = 4 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    const timeval tv{1, 0};  // never hang a report on a lost answer
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    // sock_diag answers from the namespace this socket was made in (after
    // --netns): every socket it finds lives there.
    struct stat st {};
    if (stat("/proc/thread-self/ns/net", &st) == 0 || stat("/proc/self/ns/net", &st) == 0)
        netns_ = static_cast<std::uint64_t>(st.st_ino);
}

SystemOwners::~SystemOwners() {
    if (nl_) mnl_socket_close(nl_);
}

bool SystemOwners::exchange(const std::vector<std::uint8_t>& req, std::uint32_t first_seq,
                            std::size_t answers, DiagAnswer& out) {
    if (mnl_socket_sendto(nl_, req.data(), req.size()) < 0) return false;
    std::vector<std::uint8_t> buf(MNL_SOCKET_BUFFER_SIZE * 4);
    std::size_t got = 0;
    while (got < answers) {
        const ssize_t n = mnl_socket_recvfrom(nl_, buf.data(), buf.size());
        if (n <= 0) return false;  // timeout or error: the rest count as not found
        const std::size_t before = out.sockets.size() + out.errors.size();
        DiagAnswer a;
        decode_diag(buf.data(), static_cast<std::size_t>(n), a);
        // Late answers to an earlier, timed-out batch are ignored.
        for (const DiagSocket& s : a.sockets)
            if (s.seq - first_seq < answers) out.sockets.push_back(s);
        for (const auto& e : a.errors)
            if (e.first - first_seq < answers) out.errors.push_back(e);
        got += out.sockets.size() + out.errors.size() - before;
    }
    return true;
}

bool SystemOwners::dump(Family family, DiagAnswer& out) {
    std::vector<std::uint8_t> req;
    const std::uint32_t seq = seq_++;
    diag_request(req, seq, family, nullptr);
    if (mnl_socket_sendto(nl_, req.data(), req.size()) < 0) return false;
    std::vector<std::uint8_t> buf(MNL_SOCKET_BUFFER_SIZE * 4);
    for (;;) {
        const ssize_t n = mnl_socket_recvfrom(nl_, buf.data(), buf.size());
        if (n <= 0) return false;
        DiagAnswer a;
        decode_diag(buf.data(), static_cast<std::size_t>(n), a);
        for (const DiagSocket& s : a.sockets)
            if (s.seq == seq) out.sockets.push_back(s);
        for (const auto& e : a.errors)
            if (e.first == seq) return false;
        if (a.done) return true;
    }
}

void SystemOwners::inodes_exact(const std::vector<SocketTuple>& tuples,
                                std::vector<std::uint64_t>& out) {
    // Up to kBatch requests in one datagram: sock_diag answers each in turn.
    constexpr std::size_t kBatch = 64;
    out.assign(tuples.size(), 0);
    std::vector<std::uint8_t> req;
    for (std::size_t at = 0; at < tuples.size(); at += kBatch) {
        const std::size_t n = std::min(kBatch, tuples.size() - at);
        const std::uint32_t first = seq_;
        seq_ += static_cast<std::uint32_t>(n);
        req.clear();
        for (std::size_t i = 0; i < n; ++i)
            diag_request(req, first + static_cast<std::uint32_t>(i), tuples[at + i].family,
                         &tuples[at + i]);
        DiagAnswer a;
        exchange(req, first, n, a);
        for (const DiagSocket& s : a.sockets) {
            const std::size_t i = at + (s.seq - first);
            // An exact lookup falls back to a listening socket: only the very
            // 4-tuple counts.
            if (s.tuple == tuples[i]) out[i] = s.inode;
        }
    }
}

void SystemOwners::inodes_dump(const std::vector<SocketTuple>& tuples,
                               std::vector<std::uint64_t>& out) {
    out.assign(tuples.size(), 0);
    DiagAnswer a;
    dump(Family::V4, a);
    dump(Family::V6, a);  // holds the IPv4-mapped ones too
    std::unordered_map<SocketTuple, std::uint64_t, SocketTupleHash> by_tuple;
    by_tuple.reserve(a.sockets.size());
    for (const DiagSocket& s : a.sockets) by_tuple.emplace(s.tuple, s.inode);
    for (std::size_t i = 0; i < tuples.size(); ++i)
        if (const auto it = by_tuple.find(tuples[i]); it != by_tuple.end()) out[i] = it->second;
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

std::shared_ptr<const Owner> SystemOwners::owner_of(std::uint32_t pid) {
    if (const auto it = pid_owner_.find(pid); it != pid_owner_.end()) return it->second;
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
    o->netns = netns_;
    pid_owner_[pid] = o;
    return o;
}

void SystemOwners::operator()(std::vector<OwnerQuery>& queries) {
    // The socket's own end first: the client's when its SYN left through this host.
    std::vector<SocketTuple> tuples;
    tuples.reserve(queries.size());
    for (const OwnerQuery& q : queries) tuples.push_back(q.local_client ? q.conn : flipped(q.conn));
    std::vector<std::uint64_t> inodes;
    if (queries.size() > kDumpAbove) {
        // One dump answers both orderings.
        std::vector<SocketTuple> both = tuples;
        for (const SocketTuple& t : tuples) both.push_back(flipped(t));
        std::vector<std::uint64_t> all;
        inodes_dump(both, all);
        inodes.resize(queries.size());
        for (std::size_t i = 0; i < queries.size(); ++i)
            inodes[i] = all[i] ? all[i] : all[queries.size() + i];
    } else {
        inodes_exact(tuples, inodes);
        std::vector<SocketTuple> other;
        std::vector<std::size_t> which;
        for (std::size_t i = 0; i < queries.size(); ++i)
            if (!inodes[i]) {
                other.push_back(flipped(tuples[i]));
                which.push_back(i);
            }
        if (!other.empty()) {
            std::vector<std::uint64_t> more;
            inodes_exact(other, more);
            for (std::size_t k = 0; k < which.size(); ++k) inodes[which[k]] = more[k];
        }
    }

    // Inode -> pid; an unknown inode (a socket newer than the last scan) asks
    // for a rescan, at most once per max(1 s, 20 x its cost): a scan reads
    // every fd link of every process.
    const auto resolve = [&](bool final_try) {
        bool unknown = false;
        for (std::size_t i = 0; i < queries.size(); ++i) {
            OwnerQuery& q = queries[i];
            if (q.result == OwnerQuery::Result::Found) continue;
            q.result = OwnerQuery::Result::Retry;
            if (!inodes[i]) continue;
            const auto it = inode_pid_.find(inodes[i]);
            if (it == inode_pid_.end()) {
                unknown = true;
                if (!final_try) q.result = OwnerQuery::Result::Wait;
                continue;
            }
            if ((q.owner = owner_of(it->second))) q.result = OwnerQuery::Result::Found;
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
