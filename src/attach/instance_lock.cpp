// SPDX-License-Identifier: MIT
#include "attach/instance_lock.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "attach/tc_filter.hpp"
#include "sys/error.hpp"

namespace tcptrack {

namespace {

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

// The namespace this thread works in: --netns was entered before the first
// call (run() does it before any interface is touched), so the cached id is the
// watched namespace's, and same-named interfaces in two namespaces never share
// lock files.
std::string netns_id() {
    static const std::string id = [] {
        Fd s(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        std::uint64_t cookie = 0;
        socklen_t len = sizeof(cookie);
        constexpr int kSoNetnsCookie = 71;  // SO_NETNS_COOKIE, Linux 5.14
        if (s && getsockopt(s.get(), SOL_SOCKET, kSoNetnsCookie, &cookie, &len) == 0)
            return fmt::format("ns{}", cookie);
        struct stat st {};
        if (stat("/proc/thread-self/ns/net", &st) != 0)
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
        if (end && *end == '\0' && h <= UINT32_MAX &&
            is_instance_handle(static_cast<std::uint32_t>(h)))
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

bool filter_at(int ifindex, std::uint32_t handle) {
    return query_filter(ifindex, BPF_TC_INGRESS, handle) ||
           query_filter(ifindex, BPF_TC_EGRESS, handle);
}

}  // namespace

// ------------------------------------------------------------------ IfaceLock

IfaceLock::IfaceLock(int ifindex, const std::string& ifname, bool best_effort)
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
            throw Error(fmt::format("cannot open lock file {}: {}", path_, std::strerror(errno)));
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

IfaceLock::~IfaceLock() {
    if (!fd_) return;
    // Remove the file once nothing refers to it; lockers re-check the path after locking.
    if (!clsact_ours() && claimed_handles(ifindex_).empty()) unlink(path_.c_str());
}

bool IfaceLock::clsact_ours() const {
    char buf[16] = {};
    return fd_ && pread(fd_.get(), buf, sizeof(buf) - 1, 0) > 0 &&
           std::strncmp(buf, "clsact", 6) == 0;
}

void IfaceLock::set_clsact_ours(bool ours) {
    if (!fd_ || ours == clsact_ours()) return;
    if (ftruncate(fd_.get(), 0) != 0) return;
    if (ours && pwrite(fd_.get(), "clsact\n", 7, 0) != 7) return;
}

// ------------------------------------------------------------------ HandleClaim

HandleClaim& HandleClaim::operator=(HandleClaim&& o) noexcept {
    release();
    fd_ = std::move(o.fd_);
    path_ = std::move(o.path_);
    handle_ = o.handle_;
    return *this;
}

HandleClaim HandleClaim::take(const std::string& ifname, int ifindex, const std::uint32_t ids[2]) {
    for (std::uint32_t n = 1; n <= kTcMaxInstances; ++n) {
        HandleClaim c;
        c.handle_ = kTcHandleBase + n;
        c.path_ = claim_path(ifindex, c.handle_);
        bool created = true;
        c.fd_ = Fd(open(c.path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
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
        if (ftruncate(c.fd_.get(), 0) != 0 || pwrite(c.fd_.get(), content.data(), content.size(),
                                                     0) != static_cast<ssize_t>(content.size()))
            throw Error(
                fmt::format("cannot write lock file {}: {}", c.path_, std::strerror(errno)));
        return c;
    }
    throw Error(fmt::format("no free tc filter handle on {}", ifname));
}

void HandleClaim::release() {
    if (!fd_) return;
    if (!path_.empty() && same_file(fd_.get(), path_)) unlink(path_.c_str());
    fd_.reset();  // drops the flock
}

// ------------------------------------------------------------------ other instances' claims

void reap_dead_claims(int ifindex, const std::function<void(const DeadClaim&)>& on_dead) {
    for (std::uint32_t handle : claimed_handles(ifindex)) {
        const std::string path = claim_path(ifindex, handle);
        Fd fd(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
        if (!fd || try_flock(fd.get(), path) != LockResult::Taken) continue;  // live, or gone
        char buf[96] = {};
        long pid = 0;
        unsigned long ids[2] = {0, 0};
        if (pread(fd.get(), buf, sizeof(buf) - 1, 0) > 0)
            std::sscanf(buf, "%ld %lu %lu", &pid, &ids[0], &ids[1]);
        on_dead(DeadClaim{
            handle, pid, {static_cast<std::uint32_t>(ids[0]), static_cast<std::uint32_t>(ids[1])}});
        unlink(path.c_str());  // fails for another user's file: harmless, nothing refers to it
    }
}

bool claim_file_exists(int ifindex, std::uint32_t handle) {
    struct stat st {};
    return lstat(claim_path(ifindex, handle).c_str(), &st) == 0;
}

bool any_live_claim(int ifindex) {
    for (std::uint32_t h : claimed_handles(ifindex))
        if (claim_live(ifindex, h)) return true;
    return false;
}

}  // namespace tcptrack
