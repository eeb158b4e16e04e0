// SPDX-License-Identifier: MIT
// The network namespaces on the far side of this namespace's interfaces (a
// pod's, behind its host-side veth), by the nsid this namespace gives them
// (attach/link_netlink's LinkPeer). An nsid cannot be opened, so candidates
// (/run/netns/*, /run/docker/netns/*, /proc/*/ns/net) are opened one per
// namespace and the kernel asked each one's nsid. Scans happen only for an nsid
// not held, at most once per max(1 s, 20 x the last scan's cost), and ask at
// most kMaxNamespaces namespaces.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "enrich/sock_diag_client.hpp"
#include "sys/fd.hpp"

namespace tcptrack {

class PeerNamespaces {
   public:
    static constexpr std::size_t kMaxNamespaces = 4096;  // asked per scan
    // A held namespace stays alive, and with it a pod's veth where the CNI
    // relies on the namespace's end to remove it: let go when unused this long.
    static constexpr std::uint64_t kIdleNs = 10'000'000'000;

    // Calls visit(path) for each nsfs file to try, until it returns false.
    using Candidates = std::function<void(const std::function<bool(const char*)>& visit)>;
    // This namespace's id for the namespace open at an fd (NetnsIds::nsid_of).
    using NsidOf = std::function<std::optional<int>(int fd)>;

    struct Peer {
        Fd ns;
        std::uint64_t inode = 0;  // nsfs inode: the rows' netns
        std::uint64_t used_ns = 0;
        std::unique_ptr<SockDiag> diag;  // made by the first lookup there
    };

    // `home`: the nsfs inode of the attach namespace, never a peer of itself.
    PeerNamespaces(Candidates candidates, NsidOf nsid_of, std::uint64_t home);

    // Scans for the nsids not held, if a scan is allowed at `now` (monotonic
    // ns). False when some were not held and the scan had to wait.
    bool want(const std::vector<int>& nsids, std::uint64_t now);
    // The namespace with this nsid if held, marked used at `now`; else nullptr.
    Peer* get(int nsid, std::uint64_t now);
    // Lets go of the namespaces unused for kIdleNs.
    void release_idle(std::uint64_t now);

    std::size_t held() const { return peers_.size(); }
    std::uint64_t scans() const { return scans_; }

   private:
    void scan(std::vector<int> missing, std::uint64_t now);

    Candidates candidates_;
    NsidOf nsid_of_;
    std::uint64_t home_;
    std::unordered_map<int, Peer> peers_;
    std::uint64_t last_scan_ns_ = 0, scan_cost_ns_ = 0, scans_ = 0;
};

// The real candidates: named namespaces (ip netns, docker), then every process's.
void each_netns_file(const std::function<bool(const char*)>& visit);

}  // namespace tcptrack
