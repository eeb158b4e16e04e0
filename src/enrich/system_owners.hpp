// SPDX-License-Identifier: MIT
// Who owns a connection, found the way `ss -p` does: sock_diag (NETLINK_SOCK_DIAG,
// inet_diag) gives the local socket's inode for the 4-tuple, /proc/*/fd links
// `socket:[INODE]` give its process, /proc/PID/comm and /proc/PID/cgroup the rest.
// Looked up once per new connection (retried a few reports while not found) and
// cached per connection, so a report costs what is new, not what is resident.
// sock_diag is asked in the attach namespace (tcptrack's, or --netns's: run()
// setns()es the whole process before this is created); a socket not there is
// asked in the namespace on the far side of the flow's interface (a pod's,
// behind its host-side veth: enrich/peer_netns). Socket inodes are global, so
// /proc serves both.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "attach/link_netlink.hpp"
#include "enrich/peer_netns.hpp"
#include "enrich/process_cache.hpp"
#include "enrich/sock_diag.hpp"
#include "enrich/sock_diag_client.hpp"
#include "report/report.hpp"

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

    // What the far-side lookups cost, counted since the start.
    struct PeerStats {
        std::uint64_t queries = 0;  // connections asked in a peer namespace
        std::uint64_t found = 0;    // of which a socket was found there
        std::uint64_t links = 0;    // interfaces asked for their peer (RTM_GETLINK)
        std::uint64_t scans = 0;    // namespace scans (PeerNamespaces)
        std::size_t held = 0;       // peer namespaces open now
    };

    SystemOwners();  // throws Error when sock_diag is unavailable
    SystemOwners(const SystemOwners&) = delete;
    SystemOwners& operator=(const SystemOwners&) = delete;

    void operator()(std::vector<OwnerQuery>& queries);
    // Once per report: lets go of peer namespaces no longer in use.
    void release_idle();

    // Socket inodes of these tuples in the attach namespace (0: not found),
    // asked one by one (exact) or from dumps. Public for the measurements in
    // the tests and the bench.
    void inodes_exact(const std::vector<SocketTuple>& tuples, std::vector<std::uint64_t>& out) {
        diag_.inodes_exact(tuples, out);
    }
    void inodes_dump(const std::vector<SocketTuple>& tuples, std::vector<std::uint64_t>& out) {
        diag_.inodes_dump(tuples, out);
    }
    // Rescans /proc/*/fd (inode -> pid). Returns the number of socket links seen.
    std::size_t scan_proc();
    PeerStats peer_stats() const;

   private:
    std::shared_ptr<const Owner> owner_of(std::uint32_t pid, std::optional<std::uint64_t> netns);
    // The misses' sockets in the namespaces beyond their interfaces: fills
    // inodes, netns and other_end (found at the other end); wait[i] when that
    // namespace's scan had to wait.
    void peer_inodes(const std::vector<OwnerQuery>& queries, std::vector<std::uint64_t>& inodes,
                     std::vector<std::optional<std::uint64_t>>& netns, std::vector<char>& wait,
                     std::vector<char>& other_end);

    SockDiag diag_;
    std::optional<std::uint64_t> netns_;  // the attach namespace, where diag_ asks
    std::unordered_map<std::uint64_t, std::uint32_t> inode_pid_;
    // By pid and the socket's namespace (a process may hold sockets in several).
    std::map<std::pair<std::uint32_t, std::optional<std::uint64_t>>, std::shared_ptr<const Owner>>
        pid_owner_;
    std::uint64_t last_scan_ns_ = 0, scan_cost_ns_ = 0;
    bool scanned_ = false;
    std::unique_ptr<NetnsIds> ids_;  // null without rtnetlink: the attach namespace only
    std::unique_ptr<PeerNamespaces> peers_;
    PeerStats peer_stats_;
};

}  // namespace tcptrack
