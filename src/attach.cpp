// SPDX-License-Identifier: MIT
#include "tcptrack/attach.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/netlink.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string_view>
#include <thread>
#include <utility>

#include "tcptrack/error.hpp"

namespace tcptrack {

bool tcx_compiled_in() { return TCPTRACK_HAVE_TCX != 0; }

namespace {

const char* dir_name(bpf_tc_attach_point p) { return p == BPF_TC_INGRESS ? "ingress" : "egress"; }
constexpr bpf_tc_attach_point kPoints[] = {BPF_TC_INGRESS, BPF_TC_EGRESS};

class Fd {
   public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Fd& operator=(Fd&& o) noexcept {
        reset(std::exchange(o.fd_, -1));
        return *this;
    }
    ~Fd() { reset(); }
    void reset(int fd = -1) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }
    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }

   private:
    int fd_ = -1;
};

// Our own program's id: reading our own fd needs no CAP_SYS_ADMIN.
std::uint32_t prog_id(bpf_program* prog) {
    bpf_prog_info info{};
    std::uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len) != 0)
        throw Error(fmt::format("cannot read program info: {}", errno_hint(errno)));
    return info.id;
}

// ------------------------------------------------------------------ rtnetlink dumps
// libbpf can only query one (priority, handle); deciding whether clsact is still
// in use needs every filter on it. Dumps need no capability.

struct TcFilter {
    std::uint32_t prio = 0;
    std::uint32_t handle = 0;
    std::uint32_t prog_id = 0;  // cls_bpf only
    std::string kind;
    std::string name;  // cls_bpf: what the attacher named it; libbpf writes "<prog name>:[<id>]"
};

// Runs one RTM_GET* dump; on_msg sees each RTM_NEW* answer (tcmsg and its attributes).
template <typename OnMsg>
void nl_dump(std::uint16_t type, std::uint16_t reply, const tcmsg& tc, OnMsg on_msg) {
    Fd sock(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
    if (!sock) throw Error(fmt::format("cannot open a netlink socket: {}", std::strerror(errno)));
    struct {
        nlmsghdr nh;
        tcmsg tc;
    } req{};
    req.nh.nlmsg_len = sizeof(req);
    req.nh.nlmsg_type = type;
    req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.nh.nlmsg_seq = 1;
    req.tc = tc;
    if (send(sock.get(), &req, sizeof(req), 0) < 0)
        throw Error(fmt::format("netlink dump request failed: {}", std::strerror(errno)));
    alignas(nlmsghdr) char buf[32768];
    for (;;) {
        const ssize_t n = recv(sock.get(), buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw Error(fmt::format("netlink dump failed: {}", std::strerror(errno)));
        }
        int len = static_cast<int>(n);
        for (auto* nh = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(nh, len);
             nh = NLMSG_NEXT(nh, len)) {
            if (nh->nlmsg_type == NLMSG_DONE) return;
            if (nh->nlmsg_type == NLMSG_ERROR) {
                const int err = -static_cast<nlmsgerr*>(NLMSG_DATA(nh))->error;
                if (err == 0) continue;
                throw Error(fmt::format("netlink dump failed: {}", std::strerror(err)));
            }
            if (nh->nlmsg_type == reply)
                on_msg(static_cast<const tcmsg*>(NLMSG_DATA(nh)),
                       reinterpret_cast<const rtattr*>(static_cast<const char*>(NLMSG_DATA(nh)) +
                                                       NLMSG_ALIGN(sizeof(tcmsg))),
                       static_cast<int>(nh->nlmsg_len - NLMSG_LENGTH(sizeof(tcmsg))));
        }
    }
}

std::string rta_string(const rtattr* a) {
    const char* s = static_cast<const char*>(RTA_DATA(a));
    return std::string(s, strnlen(s, RTA_PAYLOAD(a)));
}

bool has_clsact(int ifindex) {
    bool found = false;
    tcmsg tc{};
    tc.tcm_family = AF_UNSPEC;
    tc.tcm_ifindex = ifindex;
    nl_dump(RTM_GETQDISC, RTM_NEWQDISC, tc, [&](const tcmsg* t, const rtattr* a, int len) {
        if (t->tcm_ifindex != ifindex || t->tcm_handle != TC_H_MAKE(TC_H_CLSACT, 0)) return;
        for (; RTA_OK(a, len); a = RTA_NEXT(a, len))
            if (a->rta_type == TCA_KIND && rta_string(a) == "clsact") found = true;
    });
    return found;
}

// Every filter on one clsact direction (empty when there is no clsact).
std::vector<TcFilter> list_filters(int ifindex, bpf_tc_attach_point point) {
    std::vector<TcFilter> out;
    tcmsg tc{};
    tc.tcm_family = AF_UNSPEC;
    tc.tcm_ifindex = ifindex;
    tc.tcm_parent =
        TC_H_MAKE(TC_H_CLSACT, point == BPF_TC_INGRESS ? TC_H_MIN_INGRESS : TC_H_MIN_EGRESS);
    nl_dump(RTM_GETTFILTER, RTM_NEWTFILTER, tc, [&](const tcmsg* t, const rtattr* a, int len) {
        if (t->tcm_handle == 0) return;  // the per-priority header, not a filter
        TcFilter f;
        f.prio = TC_H_MAJ(t->tcm_info) >> 16;
        f.handle = t->tcm_handle;
        for (; RTA_OK(a, len); a = RTA_NEXT(a, len)) {
            if (a->rta_type == TCA_KIND) f.kind = rta_string(a);
            if (a->rta_type != TCA_OPTIONS) continue;
            int olen = static_cast<int>(RTA_PAYLOAD(a));
            for (auto* o = static_cast<const rtattr*>(RTA_DATA(a)); RTA_OK(o, olen);
                 o = RTA_NEXT(o, olen)) {
                if (o->rta_type == TCA_BPF_ID && RTA_PAYLOAD(o) >= 4)
                    std::memcpy(&f.prog_id, RTA_DATA(o), 4);
                if (o->rta_type == TCA_BPF_NAME) f.name = rta_string(o);
            }
        }
        out.push_back(std::move(f));
    });
    return out;
}

// ------------------------------------------------------------------ one filter by handle

bpf_tc_hook make_hook(int ifindex, bpf_tc_attach_point point) {
    bpf_tc_hook h{};
    h.sz = sizeof(h);
    h.ifindex = ifindex;
    h.attach_point = point;
    return h;
}

bpf_tc_hook both_hooks(int ifindex) {
    return make_hook(ifindex, static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
}

bpf_tc_opts filter_opts(std::uint32_t handle) {
    bpf_tc_opts o{};
    o.sz = sizeof(o);
    o.handle = handle;
    o.priority = kTcPriority;
    return o;
}

// The program id at (our priority, handle), or 0 when there is no such filter.
std::uint32_t query_filter(int ifindex, bpf_tc_attach_point point, std::uint32_t handle) {
    bpf_tc_hook hook = make_hook(ifindex, point);
    bpf_tc_opts o = filter_opts(handle);
    return bpf_tc_query(&hook, &o) == 0 ? o.prog_id : 0;
}

// Deletes the filter at (our priority, handle) only while it still runs prog_id.
bool detach_if(int ifindex, bpf_tc_attach_point point, std::uint32_t handle,
               std::uint32_t prog_id) {
    if (!prog_id || query_filter(ifindex, point, handle) != prog_id) return false;
    bpf_tc_hook hook = make_hook(ifindex, point);
    bpf_tc_opts o = filter_opts(handle);
    return bpf_tc_detach(&hook, &o) == 0;
}

// ------------------------------------------------------------------ lock files
// <dir>/<netns>-<ifindex>.iface    per-interface lock (held briefly while attaching
//                                  or detaching); content "clsact" while a clsact
//                                  qdisc on it was created by tcptrack
// <dir>/<netns>-<ifindex>-<handle>.lock   held for its whole life by the instance
//                                  owning that handle; content "pid ingress-id egress-id"
// The netns is named by its cookie (never reused, unlike its inode number), so
// namespaces with the same ifindexes never share lock files.

bool is_dir(const char* p) {
    struct stat st {};
    return lstat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

const std::string& lock_dir() {
    static const std::string dir = [] {
        // The first that exists, so every instance (root or setcap'd) agrees on one.
        for (const char* d : kLockDirs)
            if (is_dir(d)) return std::string(d);
        int first_err = 0;
        for (const char* d : kLockDirs) {
            if (mkdir(d, 0700) == 0) {
                // Sticky and world-writable like /tmp: unprivileged (setcap) instances
                // add their own lock files; nobody removes another user's.
                chmod(d, 01777);
                return std::string(d);
            }
            if (errno == EEXIST && is_dir(d)) return std::string(d);
            if (!first_err) first_err = errno;
        }
        throw Error(
            fmt::format("cannot create the lock directory {} or {}: {} (legacy tc needs it "
                        "to share interfaces with other tcptrack instances; create it "
                        "once as root: install -d -m 1777 {})",
                        kLockDirs[0], kLockDirs[1], std::strerror(first_err), kLockDirs[0]));
    }();
    return dir;
}

std::string netns_id() {
    static const std::string id = [] {
        Fd s(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        std::uint64_t cookie = 0;
        socklen_t len = sizeof(cookie);
        constexpr int kSoNetnsCookie = 71;  // SO_NETNS_COOKIE, Linux 5.14
        if (s && getsockopt(s.get(), SOL_SOCKET, kSoNetnsCookie, &cookie, &len) == 0)
            return fmt::format("ns{}", cookie);
        struct stat st {};
        if (stat("/proc/self/ns/net", &st) != 0)
            throw Error(
                fmt::format("cannot identify the network namespace: {}", std::strerror(errno)));
        return fmt::format("nsi{}", st.st_ino);  // older kernels: inode, may be reused
    }();
    return id;
}

std::string iface_key(int ifindex) { return fmt::format("{}-{}", netns_id(), ifindex); }

std::string claim_path(int ifindex, std::uint32_t handle) {
    return fmt::format("{}/{}-{:x}.lock", lock_dir(), iface_key(ifindex), handle);
}

bool same_file(int fd, const std::string& path) {
    struct stat a {
    }, b{};
    return fstat(fd, &a) == 0 && lstat(path.c_str(), &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

enum class LockResult { Taken, Busy, Gone };

// Takes the flock without waiting. Gone: the path vanished or was replaced by
// another file since we opened it (its old owner unlinked it): not ours to use.
LockResult try_flock(int fd, const std::string& path) {
    if (flock(fd, LOCK_EX | LOCK_NB) != 0)
        return errno == EWOULDBLOCK ? LockResult::Busy : LockResult::Gone;
    return same_file(fd, path) ? LockResult::Taken : LockResult::Gone;
}

// Handles with a lock file on this interface (held or not).
std::vector<std::uint32_t> claimed_handles(int ifindex) {
    std::vector<std::uint32_t> out;
    const std::string prefix = iface_key(ifindex) + "-";
    DIR* d = opendir(lock_dir().c_str());
    if (!d) return out;
    while (dirent* e = readdir(d)) {
        std::string n = e->d_name;
        if (n.size() <= prefix.size() + 5 || n.compare(0, prefix.size(), prefix) != 0 ||
            n.compare(n.size() - 5, 5, ".lock") != 0)
            continue;
        const std::string hex = n.substr(prefix.size(), n.size() - prefix.size() - 5);
        char* end = nullptr;
        const unsigned long h = std::strtoul(hex.c_str(), &end, 16);
        if (end && *end == '\0' && h > kTcHandleBase && h <= kTcHandleBase + kTcMaxInstances)
            out.push_back(static_cast<std::uint32_t>(h));
    }
    closedir(d);
    return out;
}

bool claim_live(int ifindex, std::uint32_t handle) {
    const std::string path = claim_path(ifindex, handle);
    Fd fd(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return false;
    // A held flock says live; flock on our own second descriptor also conflicts.
    return flock(fd.get(), LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
}

// The per-interface lock, held while attaching, detaching or cleaning up, so
// that tcptrack instances decide about handles and the clsact qdisc one at a time.
class IfaceLock {
   public:
    // Waits up to 5 s (the holder only runs a few netlink calls); throws on timeout
    // unless best_effort (destructors: detaching our own filters needs no lock).
    IfaceLock(int ifindex, const std::string& ifname, bool best_effort = false)
        : ifindex_(ifindex), path_(fmt::format("{}/{}.iface", lock_dir(), iface_key(ifindex))) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        for (;;) {
            Fd fd(open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666));
            if (fd) {
                fchmod(fd.get(), 0666);  // any user's instance may update the clsact record
            } else if (errno == EEXIST) {
                fd = Fd(open(path_.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
                if (!fd && errno == EACCES)
                    fd = Fd(open(path_.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
                if (!fd && errno == ENOENT) continue;  // removed meanwhile: create it again
            }
            if (!fd) {
                if (best_effort) return;
                throw Error(
                    fmt::format("cannot open lock file {}: {}", path_, std::strerror(errno)));
            }
            const LockResult r = try_flock(fd.get(), path_);
            if (r == LockResult::Taken) {
                fd_ = std::move(fd);
                return;
            }
            // Busy, or replaced by its last user (then open the new file at once).
            if (std::chrono::steady_clock::now() > deadline) {
                if (best_effort) return;
                throw Error(
                    fmt::format("another tcptrack holds the lock on {} ({}) for more "
                                "than 5 s; is it stopped?",
                                ifname, path_));
            }
            if (r == LockResult::Busy) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
    ~IfaceLock() {
        if (!fd_) return;
        // Remove the file once nothing refers to it; lockers re-check the path after locking.
        if (!clsact_ours() && claimed_handles(ifindex_).empty()) unlink(path_.c_str());
    }
    IfaceLock(const IfaceLock&) = delete;
    IfaceLock& operator=(const IfaceLock&) = delete;

    bool held() const { return static_cast<bool>(fd_); }

    // Did a tcptrack instance create the clsact qdisc on this interface?
    bool clsact_ours() const {
        char buf[16] = {};
        return fd_ && pread(fd_.get(), buf, sizeof(buf) - 1, 0) > 0 &&
               std::strncmp(buf, "clsact", 6) == 0;
    }
    void set_clsact_ours(bool ours) {
        if (!fd_ || ours == clsact_ours()) return;
        if (ftruncate(fd_.get(), 0) != 0) return;
        if (ours && pwrite(fd_.get(), "clsact\n", 7, 0) != 7) return;
    }

   private:
    int ifindex_;
    std::string path_;
    Fd fd_;
};

// This instance's handle on one interface: a held lock file naming our pid and programs.
class HandleClaim {
   public:
    HandleClaim() = default;
    HandleClaim(HandleClaim&&) = default;
    HandleClaim& operator=(HandleClaim&& o) noexcept {
        release();
        fd_ = std::move(o.fd_);
        path_ = std::move(o.path_);
        handle_ = o.handle_;
        return *this;
    }
    ~HandleClaim() { release(); }

    // The lowest free handle: no live owner and no filter at it on either hook.
    // Call with the interface lock held.
    static HandleClaim take(const std::string& ifname, int ifindex, const std::uint32_t ids[2]) {
        for (std::uint32_t n = 1; n <= kTcMaxInstances; ++n) {
            HandleClaim c;
            c.handle_ = kTcHandleBase + n;
            c.path_ = claim_path(ifindex, c.handle_);
            bool created = true;
            c.fd_ =
                Fd(open(c.path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
            if (!c.fd_ && errno == EEXIST) {
                created = false;
                c.fd_ = Fd(open(c.path_.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
            }
            if (!c.fd_) continue;  // another user's lock file: not ours to reuse
            if (try_flock(c.fd_.get(), c.path_) != LockResult::Taken) {
                c.fd_.reset();
                continue;
            }
            if (filter_at(ifindex, c.handle_)) {  // somebody's filter sits there: next handle
                if (!created) c.path_.clear();    // keep a file we did not create
                continue;
            }
            const std::string content = fmt::format("{} {} {}\n", getpid(), ids[0], ids[1]);
            if (ftruncate(c.fd_.get(), 0) != 0 ||
                pwrite(c.fd_.get(), content.data(), content.size(), 0) !=
                    static_cast<ssize_t>(content.size()))
                throw Error(
                    fmt::format("cannot write lock file {}: {}", c.path_, std::strerror(errno)));
            return c;
        }
        throw Error(fmt::format("no free tc filter handle on {}", ifname));
    }

    std::uint32_t handle() const { return handle_; }

    void release() {
        if (!fd_) return;
        if (!path_.empty() && same_file(fd_.get(), path_)) unlink(path_.c_str());
        fd_.reset();  // drops the flock
    }

    static bool filter_at(int ifindex, std::uint32_t handle) {
        return query_filter(ifindex, BPF_TC_INGRESS, handle) ||
               query_filter(ifindex, BPF_TC_EGRESS, handle);
    }

   private:
    Fd fd_;
    std::string path_;
    std::uint32_t handle_ = 0;
};

// ------------------------------------------------------------------ stale filters

// Does any process hold the program open? nullopt when some process's fds are
// unreadable (then nobody can tell); `unreadable` names the first such pid.
std::optional<bool> prog_held(std::uint32_t id, std::string& unreadable) {
    const std::string needle = fmt::format("prog_id:\t{}\n", id);
    // In a child pid namespace, processes outside it are invisible.
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
        if (line.rfind("NSpid:", 0) == 0 &&
            line.find_first_of(" \t", line.find_first_not_of(" \t", 6)) != std::string::npos) {
            unreadable = "the processes outside this pid namespace";
            return std::nullopt;
        }
    }
    DIR* proc = opendir("/proc");
    if (!proc) {
        unreadable = "/proc";
        return std::nullopt;
    }
    bool held = false;
    while (dirent* p = readdir(proc)) {
        if (!std::isdigit(static_cast<unsigned char>(p->d_name[0]))) continue;
        const std::string dir = fmt::format("/proc/{}/fdinfo", p->d_name);
        DIR* fds = opendir(dir.c_str());
        if (!fds) {
            if (errno != ENOENT && unreadable.empty()) unreadable = dir;
            continue;
        }
        while (dirent* f = readdir(fds)) {
            if (f->d_name[0] == '.') continue;
            Fd fd(open((dir + "/" + f->d_name).c_str(), O_RDONLY | O_CLOEXEC));
            char buf[1024];
            const ssize_t n = fd ? read(fd.get(), buf, sizeof(buf) - 1) : -1;
            if (n > 0 && std::string_view(buf, static_cast<std::size_t>(n)).find(needle) !=
                             std::string_view::npos)
                held = true;
        }
        closedir(fds);
        if (held) break;
    }
    closedir(proc);
    if (held) return true;
    if (!unreadable.empty()) return std::nullopt;
    return false;
}

// Claimed filters whose owner is gone: their lock file can be taken. Only the
// filters still running the programs the lock file names are removed.
void remove_dead_claims(const std::string& ifname, int ifindex, std::vector<std::string>& notes) {
    for (std::uint32_t handle : claimed_handles(ifindex)) {
        const std::string path = claim_path(ifindex, handle);
        Fd fd(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
        if (!fd || try_flock(fd.get(), path) != LockResult::Taken) continue;  // live, or gone
        char buf[96] = {};
        long pid = 0;
        unsigned long ids[2] = {0, 0};
        if (pread(fd.get(), buf, sizeof(buf) - 1, 0) > 0)
            std::sscanf(buf, "%ld %lu %lu", &pid, &ids[0], &ids[1]);
        for (int i = 0; i < 2; ++i) {
            const auto id = static_cast<std::uint32_t>(ids[i]);
            if (detach_if(ifindex, kPoints[i], handle, id))
                notes.push_back(
                    fmt::format("removed stale tcptrack tc {} filter (handle {:#x}, prog id {}, "
                                "pid {} is gone) "
                                "from {}",
                                dir_name(kPoints[i]), handle, id, pid, ifname));
        }
        unlink(path.c_str());  // fails for another user's file: harmless, nothing refers to it
    }
}

// tcptrack-looking filters at our priority without a lock file: left by a
// version before lock files. Removed only with proof: libbpf's name
// "tcptrack_*:[<id>]" for the filter's own program id, and no process holding it.
void remove_unclaimed(const std::string& ifname, int ifindex, std::vector<std::string>& notes) {
    for (auto point : kPoints) {
        for (const TcFilter& f : list_filters(ifindex, point)) {
            const bool our_handle =
                f.handle == kTcLegacyHandle ||
                (f.handle > kTcHandleBase && f.handle <= kTcHandleBase + kTcMaxInstances);
            if (f.prio != kTcPriority || f.kind != "bpf" || !our_handle || !f.prog_id) continue;
            struct stat st {};
            if (f.handle != kTcLegacyHandle &&
                lstat(claim_path(ifindex, f.handle).c_str(), &st) == 0)
                continue;  // claimed: its lock file decides
            const std::string suffix = fmt::format(":[{}]", f.prog_id);
            const bool named =
                f.name.rfind("tcptrack_", 0) == 0 && f.name.size() > suffix.size() &&
                f.name.compare(f.name.size() - suffix.size(), suffix.size(), suffix) == 0;
            if (!named) continue;  // not provably tcptrack's: somebody else's
            const std::string what = fmt::format("tc {} filter (handle {:#x}, prog id {}) on {}",
                                                 dir_name(point), f.handle, f.prog_id, ifname);
            std::string unreadable;
            const std::optional<bool> held = prog_held(f.prog_id, unreadable);
            if (held == false && detach_if(ifindex, point, f.handle, f.prog_id)) {
                notes.push_back(
                    fmt::format("removed stale tcptrack {}: an older tcptrack's, no "
                                "process holds it",
                                what));
            } else if (held == true) {
                notes.push_back(
                    fmt::format("left {} in place: a running older tcptrack owns it", what));
            } else if (!held) {
                notes.push_back(fmt::format(
                    "left {} in place: it looks like an older tcptrack's, but whether its owner "
                    "still runs cannot be told ({} is unreadable); remove it with `tc filter del "
                    "dev {} {} pref {} handle {:#x} bpf` once no older tcptrack runs",
                    what, unreadable, ifname, dir_name(point), kTcPriority, f.handle));
            }
        }
    }
}

// With the interface lock held: removes dead instances' filters; when leaving
// (no filter of ours left) also the clsact qdisc tcptrack created, if nothing
// else uses it. Never a qdisc or filter tcptrack did not create.
void settle(IfaceLock& lk, const std::string& ifname, int ifindex, bool leaving,
            std::vector<std::string>& notes) {
    remove_dead_claims(ifname, ifindex, notes);
    remove_unclaimed(ifname, ifindex, notes);
    if (!lk.held() || !lk.clsact_ours()) return;
    if (!has_clsact(ifindex)) {  // deleted by someone: whatever is created later is not ours
        lk.set_clsact_ours(false);
        return;
    }
    if (!leaving) return;
    if (list_filters(ifindex, BPF_TC_INGRESS).empty() &&
        list_filters(ifindex, BPF_TC_EGRESS).empty()) {
        bpf_tc_hook hook = both_hooks(ifindex);
        if (bpf_tc_hook_destroy(&hook) == 0) lk.set_clsact_ours(false);
        return;
    }
    // Filters remain. While a tcptrack instance lives it will decide when it
    // leaves; with none left they are foreign filters, and the qdisc is theirs now.
    for (std::uint32_t h : claimed_handles(ifindex))
        if (claim_live(ifindex, h)) return;
    lk.set_clsact_ours(false);
}

// ------------------------------------------------------------------ attachments

#if TCPTRACK_HAVE_TCX
class TcxAttachment final : public Attachment {
   public:
    TcxAttachment(const std::string& ifname, int ifindex, const Programs& progs)
        : ifname_(ifname), ifindex_(ifindex), progs_{progs.ingress, progs.egress} {
        attach(0);
        try {
            attach(1);
        } catch (...) {
            bpf_link__destroy(std::exchange(links_[0], nullptr));
            throw;
        }
    }
    ~TcxAttachment() override {
        for (auto*& l : links_) bpf_link__destroy(std::exchange(l, nullptr));
    }
    AttachKind kind() const override { return AttachKind::Tcx; }

    std::optional<std::string> ensure_attached() override {
        std::string gone;
        for (int i = 0; i < 2; ++i) {
            // A detached link (bpftool link detach, or its device gone) reports ifindex 0.
            bpf_link_info info{};
            std::uint32_t len = sizeof(info);
            if (bpf_obj_get_info_by_fd(bpf_link__fd(links_[i]), &info, &len) == 0 &&
                info.tcx.ifindex == static_cast<std::uint32_t>(ifindex_))
                continue;
            bpf_link__destroy(std::exchange(links_[i], nullptr));
            attach(i);
            gone +=
                gone.empty() ? dir_name(kPoints[i]) : std::string(" and ") + dir_name(kPoints[i]);
        }
        if (gone.empty()) return std::nullopt;
        const bool both = gone.find(' ') != std::string::npos;
        return fmt::format(
            "tcptrack's TCX {} link{} on {} {} detached by someone else; "
            "re-attached (traffic in between is not counted)",
            gone, both ? "s" : "", ifname_, both ? "were" : "was");
    }

    static int last_errno;

   private:
    void attach(int i) {
        links_[i] = bpf_program__attach_tcx(progs_[i], ifindex_, nullptr);
        if (links_[i]) return;
        last_errno = errno;
        const bool no_tcx = last_errno == EINVAL || last_errno == EOPNOTSUPP;
        throw Error(fmt::format("cannot attach TCX {} program to {}: {}{}", dir_name(kPoints[i]),
                                ifname_, errno_hint(last_errno),
                                no_tcx ? " (kernel without TCX? try --attach tc)" : ""));
    }

    std::string ifname_;
    int ifindex_;
    bpf_program* progs_[2];
    bpf_link* links_[2] = {nullptr, nullptr};
};
int TcxAttachment::last_errno = 0;
#endif

class TcAttachment final : public Attachment {
   public:
    TcAttachment(const std::string& ifname, int ifindex, const Programs& progs,
                 std::vector<std::string>& notes)
        : ifname_(ifname),
          ifindex_(ifindex),
          progs_{progs.ingress, progs.egress},
          ids_{prog_id(progs.ingress), prog_id(progs.egress)} {
        IfaceLock lk(ifindex_, ifname_);
        settle(lk, ifname_, ifindex_, false, notes);
        claim_ = HandleClaim::take(ifname_, ifindex_, ids_);
        try {
            attach_missing(lk);
        } catch (...) {
            undo(lk);
            throw;
        }
    }
    ~TcAttachment() override {
        IfaceLock lk(ifindex_, ifname_, true);
        undo(lk);
    }
    AttachKind kind() const override { return AttachKind::Tc; }

    std::optional<std::string> ensure_attached() override {
        std::string gone;
        for (int i = 0; i < 2; ++i) {
            const std::uint32_t id = query_filter(ifindex_, kPoints[i], claim_.handle());
            if (id == ids_[i]) continue;
            if (id != 0)  // our handle now runs another program: not ours to delete
                throw Error(
                    fmt::format("tcptrack's tc {} filter on {} (handle {:#x}) was replaced "
                                "by another program (id {})",
                                dir_name(kPoints[i]), ifname_, claim_.handle(), id));
            attached_[i] = false;
            gone +=
                gone.empty() ? dir_name(kPoints[i]) : std::string(" and ") + dir_name(kPoints[i]);
        }
        if (gone.empty()) return std::nullopt;
        IfaceLock lk(ifindex_, ifname_);
        const bool qdisc_gone = !has_clsact(ifindex_);
        std::vector<std::string> ignored;
        settle(lk, ifname_, ifindex_, false, ignored);  // forgets a deleted clsact was ours
        // The qdisc may have been deleted and re-created by someone else: with no
        // tcptrack filter left on it, nothing proves it is still the one tcptrack made.
        if (!tcptrack_filters_left()) lk.set_clsact_ours(false);
        attach_missing(lk);
        if (qdisc_gone)
            return fmt::format(
                "the clsact qdisc on {} was deleted by someone else, and "
                "tcptrack's filters with it; re-attached (traffic in between is "
                "not counted)",
                ifname_);
        const bool both = gone.find(' ') != std::string::npos;
        return fmt::format(
            "tcptrack's tc {} filter{} on {} {} deleted by someone else; "
            "re-attached (traffic in between is not counted)",
            gone, both ? "s" : "", ifname_, both ? "were" : "was");
    }

   private:
    bool tcptrack_filters_left() const {
        for (auto point : kPoints)
            for (const TcFilter& f : list_filters(ifindex_, point))
                if (f.prio == kTcPriority && f.handle > kTcHandleBase &&
                    f.handle <= kTcHandleBase + kTcMaxInstances)
                    return true;
        return false;
    }

    void attach_missing(IfaceLock& lk) {
        // Both points at once creates the clsact qdisc; EEXIST means it was there.
        bpf_tc_hook qdisc = both_hooks(ifindex_);
        const int err = bpf_tc_hook_create(&qdisc);
        if (err && err != -EEXIST)
            throw Error(
                fmt::format("cannot create clsact qdisc on {}: {}", ifname_, errno_hint(-err)));
        if (err == 0) lk.set_clsact_ours(true);
        for (int i = 0; i < 2; ++i) {
            if (attached_[i]) continue;
            bpf_tc_hook hook = make_hook(ifindex_, kPoints[i]);
            bpf_tc_opts opts = filter_opts(claim_.handle());
            opts.prog_fd = bpf_program__fd(progs_[i]);
            const int e = bpf_tc_attach(&hook, &opts);  // no replace: EEXIST if the handle is taken
            if (e)
                throw Error(fmt::format("cannot attach tc {} filter to {}: {}",
                                        dir_name(kPoints[i]), ifname_, errno_hint(-e)));
            attached_[i] = true;
        }
    }

    void undo(IfaceLock& lk) {
        // Only our own filters, by handle, while they run our programs; never a whole direction.
        for (int i = 0; i < 2; ++i) {
            if (attached_[i]) detach_if(ifindex_, kPoints[i], claim_.handle(), ids_[i]);
            attached_[i] = false;
        }
        claim_.release();
        if (!lk.held()) return;
        std::vector<std::string> ignored;
        try {
            settle(lk, ifname_, ifindex_, true, ignored);
        } catch (const Error&) {
            // Leaving anyway: at worst a qdisc or a dead instance's filter stays for --cleanup.
        }
    }

    std::string ifname_;
    int ifindex_;
    bpf_program* progs_[2];
    std::uint32_t ids_[2];
    HandleClaim claim_;
    bool attached_[2] = {false, false};
};

}  // namespace

std::vector<std::string> remove_stale_tc_filters(const std::string& ifname, int ifindex) {
    std::vector<std::string> notes;
    IfaceLock lk(ifindex, ifname);
    const bool had_qdisc = lk.clsact_ours() && has_clsact(ifindex);
    settle(lk, ifname, ifindex, true, notes);
    if (had_qdisc && !has_clsact(ifindex))
        notes.push_back(
            fmt::format("removed the clsact qdisc a killed tcptrack had added to {}", ifname));
    return notes;
}

std::unique_ptr<Attachment> attach_interface(const std::string& ifname, int ifindex,
                                             const Programs& progs, bool want_tcx,
                                             bool allow_fallback, std::vector<std::string>& notes) {
#if TCPTRACK_HAVE_TCX
    if (want_tcx) {
        try {
            return std::make_unique<TcxAttachment>(ifname, ifindex, progs);
        } catch (const Error& e) {
            const int err = TcxAttachment::last_errno;
            // Only a kernel without TCX falls back; permissions or a bad device do not.
            if (!allow_fallback ||
                (err != EINVAL && err != EOPNOTSUPP && err != ENOTSUP && err != ENOSYS))
                throw;
            notes.push_back(fmt::format("TCX unavailable on {} ({}); using legacy tc", ifname,
                                        std::strerror(err)));
        }
    }
#else
    if (want_tcx && !allow_fallback)
        throw Error("--attach tcx: this build's libbpf is older than 1.3 (no TCX links)");
    (void)want_tcx;
#endif
    return std::make_unique<TcAttachment>(ifname, ifindex, progs, notes);
}

}  // namespace tcptrack
