// SPDX-License-Identifier: MIT
// Process attribution: sock_diag for the socket inode, /proc for its owner.
#include "enrich/process.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fmt/format.h>
#include <unordered_set>

#include "datapath/collector.hpp"
#include "sys/error.hpp"

namespace tcptrack {
namespace {

// TCP states (include/net/tcp_states.h): the ones a socket with a file can be in.
constexpr std::uint32_t kTimeWait = 6, kListen = 10, kNewSynRecv = 12;
constexpr std::uint32_t kFileStates =
    ~(1u << kTimeWait | 1u << kListen | 1u << kNewSynRecv);

bool v4_mapped(const std::uint8_t* a) {
    static constexpr std::uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(a, prefix, 12) == 0;
}

bool is_hex(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    });
}

// Reads a small /proc file; "" when it cannot be read (the process is gone).
std::string read_small(int dirfd, const char* path) {
    const int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {};
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
    close(fd);
    return out;
}

SocketTuple flipped(const SocketTuple& t) {
    return SocketTuple{t.family, t.remote, t.local, t.rport, t.lport, t.ifindex};
}

}  // namespace

// ------------------------------------------------------------------ parsing

std::optional<std::uint64_t> socket_inode(std::string_view link) {
    constexpr std::string_view pre = "socket:[";
    if (link.size() < pre.size() + 2 || link.substr(0, pre.size()) != pre || link.back() != ']')
        return std::nullopt;
    const std::string_view digits = link.substr(pre.size(), link.size() - pre.size() - 1);
    std::uint64_t v = 0;
    const auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (ec != std::errc() || p != digits.data() + digits.size()) return std::nullopt;
    return v;
}

std::optional<std::string> container_id(std::string_view path) {
    // Runtimes name the leaf cgroup after the container: docker (cgroupfs
    // /docker/<id>, systemd docker-<id>.scope), containerd, CRI-O, podman,
    // kubepods/.../<id>. crio-conmon-<id> is the monitor, not the container.
    static constexpr std::string_view prefixes[] = {"docker-", "cri-containerd-", "crio-",
                                                    "libpod-", "containerd-", ""};
    while (!path.empty()) {
        const std::size_t slash = path.rfind('/');
        std::string_view seg = slash == std::string_view::npos ? path : path.substr(slash + 1);
        path = slash == std::string_view::npos ? std::string_view() : path.substr(0, slash);
        if (seg.size() > 6 && seg.substr(seg.size() - 6) == ".scope") seg.remove_suffix(6);
        if (seg.substr(0, 12) == "crio-conmon-") continue;
        for (std::string_view pre : prefixes) {
            if (seg.substr(0, pre.size()) != pre) continue;
            const std::string_view id = seg.substr(pre.size());
            if (id.size() == 64 && is_hex(id)) return std::string(id);
        }
    }
    return std::nullopt;
}

std::string cgroup_of(std::string_view text) {
    std::optional<std::string> v2;
    std::optional<std::string> id;
    while (!text.empty()) {
        const std::size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        // "hierarchy-ID:controller-list:path"; the path may itself hold ':'.
        const std::size_t c1 = line.find(':');
        if (c1 == std::string_view::npos) continue;
        const std::size_t c2 = line.find(':', c1 + 1);
        if (c2 == std::string_view::npos) continue;
        const std::string_view path = line.substr(c2 + 1);
        if (!id) id = container_id(path);
        if (line.substr(0, c2 + 1) == "0::") v2 = std::string(path);
    }
    if (id) return *id;
    return v2.value_or(std::string());
}

std::size_t SocketTupleHash::operator()(const SocketTuple& t) const {
    // FNV-1a over the fields that differ between connections.
    std::uint64_t h = 1469598103934665603ull;
    const auto mix = [&](const void* p, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) {
            h ^= static_cast<const std::uint8_t*>(p)[i];
            h *= 1099511628211ull;
        }
    };
    const std::size_t alen = t.family == Family::V4 ? 4 : 16;
    mix(t.local.data(), alen);
    mix(t.remote.data(), alen);
    mix(&t.lport, 2);
    mix(&t.rport, 2);
    return static_cast<std::size_t>(h);
}

// ------------------------------------------------------------------ netlink

void diag_request(std::vector<std::uint8_t>& buf, std::uint32_t seq, Family family,
                  const SocketTuple* exact) {
    const std::size_t at = buf.size();
    buf.resize(at + MNL_ALIGN(sizeof(nlmsghdr)) + MNL_ALIGN(sizeof(inet_diag_req_v2)), 0);
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data() + at);
    nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
    nlh->nlmsg_flags = NLM_F_REQUEST | (exact ? 0 : NLM_F_DUMP);
    nlh->nlmsg_seq = seq;
    auto* req = static_cast<inet_diag_req_v2*>(mnl_nlmsg_put_extra_header(nlh, sizeof(inet_diag_req_v2)));
    req->sdiag_family = family == Family::V6 ? AF_INET6 : AF_INET;
    req->sdiag_protocol = IPPROTO_TCP;
    req->idiag_states = exact ? ~0u : kFileStates;
    req->id.idiag_cookie[0] = req->id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    if (exact) {
        const std::size_t alen = family == Family::V6 ? 16 : 4;
        std::memcpy(req->id.idiag_src, exact->local.data(), alen);
        std::memcpy(req->id.idiag_dst, exact->remote.data(), alen);
        req->id.idiag_sport = htons(exact->lport);
        req->id.idiag_dport = htons(exact->rport);
        req->id.idiag_if = exact->ifindex;
    }
}

void decode_diag(const std::uint8_t* data, std::size_t len, DiagAnswer& out) {
    int left = static_cast<int>(len);
    for (auto* nlh = reinterpret_cast<const nlmsghdr*>(data); mnl_nlmsg_ok(nlh, left);
         nlh = mnl_nlmsg_next(nlh, &left)) {
        if (nlh->nlmsg_type == NLMSG_DONE) {
            out.done = true;
        } else if (nlh->nlmsg_type == NLMSG_ERROR) {
            if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(nlmsgerr))) continue;
            const auto* e = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
            out.errors.emplace_back(nlh->nlmsg_seq, e->error);
        } else if (nlh->nlmsg_type == SOCK_DIAG_BY_FAMILY) {
            if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(inet_diag_msg))) continue;
            const auto* m = static_cast<const inet_diag_msg*>(mnl_nlmsg_get_payload(nlh));
            DiagSocket s;
            s.seq = nlh->nlmsg_seq;
            s.state = m->idiag_state;
            s.inode = m->idiag_inode;
            const auto* src = reinterpret_cast<const std::uint8_t*>(m->id.idiag_src);
            const auto* dst = reinterpret_cast<const std::uint8_t*>(m->id.idiag_dst);
            if (m->idiag_family == AF_INET6 && !(v4_mapped(src) && v4_mapped(dst))) {
                s.tuple.family = Family::V6;
                std::memcpy(s.tuple.local.data(), src, 16);
                std::memcpy(s.tuple.remote.data(), dst, 16);
            } else if (m->idiag_family == AF_INET6) {  // a dual-stack socket's IPv4 peer
                std::memcpy(s.tuple.local.data(), src + 12, 4);
                std::memcpy(s.tuple.remote.data(), dst + 12, 4);
            } else if (m->idiag_family == AF_INET) {
                std::memcpy(s.tuple.local.data(), src, 4);
                std::memcpy(s.tuple.remote.data(), dst, 4);
            } else {
                continue;
            }
            s.tuple.lport = ntohs(m->id.idiag_sport);
            s.tuple.rport = ntohs(m->id.idiag_dport);
            out.sockets.push_back(s);
        }
    }
}

// ------------------------------------------------------------------ the cache

OwnerQuery query_of(const FlowSample& s) {
    const Endpoints e = oriented(s);
    OwnerQuery q;
    q.conn.family = s.key.family == TT_FAMILY_INET6 ? Family::V6 : Family::V4;
    const std::size_t alen = q.conn.family == Family::V6 ? 16 : 4;
    std::memcpy(q.conn.local.data(), e.src, alen);
    std::memcpy(q.conn.remote.data(), e.dst, alen);
    q.conn.lport = e.sport;
    q.conn.rport = e.dport;
    q.conn.ifindex = s.key.ifindex;
    q.local_client = s.has_info && (s.info.flags & TT_F_LOCAL_CLIENT);
    return q;
}

void ProcessCache::update(const std::vector<FlowSample>& samples,
                          const std::vector<std::uint32_t>& changed,
                          const std::vector<SlotRef>& idle, std::size_t live) {
    // Rows of the previous report have been printed: its last showings go.
    for (const std::uint64_t k : forget_next_) owners_.erase(k);
    forget_next_.clear();

    std::unordered_set<std::uint64_t> gone;  // finished or idle now: no more lookups
    batch_.clear();
    for (const std::uint32_t i : changed) {
        const FlowSample& s = samples[i];
        if (s.finished) {
            gone.insert(key(s.ref));
            forget_next_.push_back(key(s.ref));
            continue;
        }
        // New: first seen at this report (a moved flow always had bytes before).
        if (s.prev_bytes[0] == 0 && s.prev_bytes[1] == 0 && !owners_.count(key(s.ref)))
            pending_.push_back(Pending{s.ref, query_of(s), 0});
    }
    for (const SlotRef& r : idle) {
        gone.insert(key(r));
        forget_next_.push_back(key(r));
    }
    if (!gone.empty())
        pending_.erase(std::remove_if(pending_.begin(), pending_.end(),
                                      [&](const Pending& p) { return gone.count(key(p.ref)) > 0; }),
                       pending_.end());

    if (!pending_.empty()) {
        for (Pending& p : pending_) {
            p.query.result = OwnerQuery::Result::Retry;
            p.query.owner.reset();
            batch_.push_back(p.query);
        }
        lookups_ += batch_.size();
        lookup_(batch_);
        std::size_t keep = 0;
        for (std::size_t i = 0; i < pending_.size(); ++i) {
            Pending& p = pending_[i];
            const OwnerQuery& q = batch_[i];
            if (q.result == OwnerQuery::Result::Found && q.owner) {
                owners_[key(p.ref)] = q.owner;
                continue;
            }
            if (q.result == OwnerQuery::Result::Retry && ++p.tries >= kMaxTries) continue;
            pending_[keep++] = std::move(p);
        }
        pending_.resize(keep);
    }

    // Connections whose end was never reported (a close event lost with the
    // ring full) would stay forever: sweep against the live samples when the
    // cache holds many more entries than there are live flows.
    if (owners_.size() > 2 * live + 1024) {
        std::unordered_set<std::uint64_t> alive;
        alive.reserve(live);
        for (std::size_t i = 0; i < live && i < samples.size(); ++i) alive.insert(key(samples[i].ref));
        for (const std::uint64_t k : forget_next_) alive.insert(k);
        for (auto it = owners_.begin(); it != owners_.end();)
            it = alive.count(it->first) ? std::next(it) : owners_.erase(it);
    }
}

void ProcessCache::fill(const SlotRef& ref, FlowRow& row) const {
    if (const Owner* o = find(ref)) {
        row.pid = o->pid;
        row.comm = o->comm;
        row.cgroup = o->cgroup;
    } else {
        row.pid.reset();
        row.comm.clear();
        row.cgroup.clear();
    }
}

// ------------------------------------------------------------------ system side

SystemOwners::SystemOwners() {
    nl_ = mnl_socket_open2(NETLINK_SOCK_DIAG, SOCK_CLOEXEC);
    if (!nl_ || mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
        const int err = errno;
        if (nl_) mnl_socket_close(nl_);
        nl_ = nullptr;
        throw Error(fmt::format("process lookup: cannot open a sock_diag socket: {} (use --no-process)",
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
            if (const auto ino = socket_inode(std::string_view(link, static_cast<std::size_t>(n)))) {
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
    pid_owner_[pid] = o;
    return o;
}

void SystemOwners::operator()(std::vector<OwnerQuery>& queries) {
    // The socket's own end first: the client's when its SYN left through this host.
    std::vector<SocketTuple> tuples;
    tuples.reserve(queries.size());
    for (const OwnerQuery& q : queries)
        tuples.push_back(q.local_client ? q.conn : flipped(q.conn));
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
