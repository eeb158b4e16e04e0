// SPDX-License-Identifier: MIT
// Lock files that let legacy-tc tcptrack instances share an interface:
// <dir>/<netns>-<ifindex>.iface    per-interface lock (held briefly while attaching
//                                  or detaching); content "clsact" while a clsact
//                                  qdisc on it was created by tcptrack
// <dir>/<netns>-<ifindex>-<handle>.lock   held for its whole life by the instance
//                                  owning that handle; content "pid ingress-id egress-id"
// The netns is named by its cookie (never reused, unlike its inode number), so
// namespaces with the same ifindexes never share lock files. An instance is
// dead when its .lock can be locked.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "sys/fd.hpp"

namespace tcptrack {

// Lock files live in the first of these that exists (else the first we can create, mode 1777).
inline constexpr const char* kLockDirs[] = {"/run/tcptrack", "/run/lock/tcptrack"};

// The per-interface lock, held while attaching, detaching or cleaning up, so
// that tcptrack instances decide about handles and the clsact qdisc one at a time.
class IfaceLock {
   public:
    // Waits up to 5 s (the holder only runs a few netlink calls); throws on timeout
    // unless best_effort (destructors: detaching our own filters needs no lock).
    IfaceLock(int ifindex, const std::string& ifname, bool best_effort = false);
    ~IfaceLock();
    IfaceLock(const IfaceLock&) = delete;
    IfaceLock& operator=(const IfaceLock&) = delete;

    bool held() const { return static_cast<bool>(fd_); }

    // Did a tcptrack instance create the clsact qdisc on this interface?
    bool clsact_ours() const;
    void set_clsact_ours(bool ours);

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
    HandleClaim& operator=(HandleClaim&& o) noexcept;
    ~HandleClaim() { release(); }

    // The lowest free handle: no live owner and no filter at it on either hook.
    // Call with the interface lock held.
    static HandleClaim take(const std::string& ifname, int ifindex, const std::uint32_t ids[2]);

    std::uint32_t handle() const { return handle_; }
    void release();

   private:
    Fd fd_;
    std::string path_;
    std::uint32_t handle_ = 0;
};

// What a dead instance's lock file recorded.
struct DeadClaim {
    std::uint32_t handle;
    long pid;
    std::uint32_t prog_ids[2];  // ingress, egress
};

// Calls on_dead for each claim on the interface whose owner is gone, then
// removes its lock file (when we may: another user's stays, harmlessly).
void reap_dead_claims(int ifindex, const std::function<void(const DeadClaim&)>& on_dead);

// Has the handle a lock file (held or not)? Then the lock decides whether its filters are stale.
bool claim_file_exists(int ifindex, std::uint32_t handle);

// Does a running instance hold a handle on the interface?
bool any_live_claim(int ifindex);

}  // namespace tcptrack
