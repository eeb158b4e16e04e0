// SPDX-License-Identifier: MIT
// Who owns a connection, found the way `ss -p` does: sock_diag (NETLINK_SOCK_DIAG,
// inet_diag) gives the local socket's inode for the 4-tuple, /proc/*/fd links
// `socket:[INODE]` give its process, /proc/PID/comm and /proc/PID/cgroup the rest.
// Looked up once per new connection (retried a few reports while not found) and
// cached per connection, so a report costs what is new, not what is resident.
// Everything runs in the current network namespace (--netns setns()es the
// whole process before this is created).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "enrich/process_cache.hpp"
#include "enrich/sock_diag.hpp"
#include "report/report.hpp"

struct mnl_socket;

namespace tcptrack {

// Answers queries from the kernel: exact sock_diag requests for a few new
// connections, one dump per family for many (see kDumpAbove); socket inode ->
// pid from a /proc scan, cached, rescanned only for an unknown inode and at
// most once per max(1 s, 20 x the last scan's duration).
class SystemOwners {
   public:
    // More new connections than this in one report: dump every socket instead
    // of asking for each (see the README's Processes paragraph for the costs).
    static constexpr std::size_t kDumpAbove = 512;

    SystemOwners();  // throws Error when sock_diag is unavailable
    ~SystemOwners();
    SystemOwners(const SystemOwners&) = delete;
    SystemOwners& operator=(const SystemOwners&) = delete;

    void operator()(std::vector<OwnerQuery>& queries);

    // Socket inodes of these tuples (0: not found), asked one by one (exact)
    // or from dumps. Public for the measurements in the tests and the bench.
    void inodes_exact(const std::vector<SocketTuple>& tuples, std::vector<std::uint64_t>& out);
    void inodes_dump(const std::vector<SocketTuple>& tuples, std::vector<std::uint64_t>& out);
    // Rescans /proc/*/fd (inode -> pid). Returns the number of socket links seen.
    std::size_t scan_proc();

   private:
    std::shared_ptr<const Owner> owner_of(std::uint32_t pid);
    bool exchange(const std::vector<std::uint8_t>& req, std::uint32_t first_seq,
                  std::size_t answers, DiagAnswer& out);
    bool dump(Family family, DiagAnswer& out);

    ::mnl_socket* nl_ = nullptr;
    std::uint32_t seq_ = 1;
    std::unordered_map<std::uint64_t, std::uint32_t> inode_pid_;
    std::unordered_map<std::uint32_t, std::shared_ptr<const Owner>> pid_owner_;
    std::uint64_t last_scan_ns_ = 0, scan_cost_ns_ = 0;
    bool scanned_ = false;
    std::optional<std::uint64_t> netns_;  // the namespace sock_diag answers from
};

}  // namespace tcptrack
