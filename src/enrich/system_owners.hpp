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
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "report/flow_model.hpp"
#include "report/enricher.hpp"
#include "report/report.hpp"

struct mnl_socket;

namespace tcptrack {

// The owning process of a local socket.
struct Owner {
    std::uint32_t pid = 0;
    std::string comm;    // /proc/PID/comm
    std::string cgroup;  // container id if evident, else the cgroup v2 path; "" if none
};

// --- Pure parsing, unit-tested -------------------------------------------------

// The inode of a /proc/PID/fd link text "socket:[12345]"; empty for anything else.
std::optional<std::uint64_t> socket_inode(std::string_view link);
// A container id evident in a cgroup path: the last segment that is 64 hex
// digits, alone or as docker-/cri-containerd-/crio-/libpod-<id>[.scope].
std::optional<std::string> container_id(std::string_view path);
// From /proc/PID/cgroup's text: the container id if one is evident, else the
// cgroup v2 path ("0::/path"); "" when the host has no v2 line and no id.
std::string cgroup_of(std::string_view proc_cgroup);

// One end of a TCP connection as sock_diag describes a socket: `local` is the
// socket's own address. IPv4-mapped IPv6 sockets (dual-stack listeners'
// accepted sockets) are given as V4.
struct SocketTuple {
    Family family = Family::V4;
    Address local{}, remote{};
    std::uint16_t lport = 0, rport = 0;  // host order
    // The interface the flow was seen on: exact requests pass it, so a socket
    // bound to it (IPv6 link-local) is found too. Not part of the identity.
    std::uint32_t ifindex = 0;
    bool operator==(const SocketTuple& o) const {
        return family == o.family && local == o.local && remote == o.remote &&
               lport == o.lport && rport == o.rport;
    }
};
struct SocketTupleHash {
    std::size_t operator()(const SocketTuple& t) const;
};

// A socket in a sock_diag answer.
struct DiagSocket {
    std::uint32_t seq = 0;  // the request it answers
    SocketTuple tuple;
    std::uint8_t state = 0;  // TCP_ESTABLISHED...
    std::uint64_t inode = 0;  // 0: no file (request or orphaned socket, TIME_WAIT)
};
// What a buffer of netlink messages (one recv) held.
struct DiagAnswer {
    std::vector<DiagSocket> sockets;
    std::vector<std::pair<std::uint32_t, int>> errors;  // (seq, -errno): ENOENT = no such socket
    bool done = false;                                   // NLMSG_DONE (end of a dump)
};

// Appends a SOCK_DIAG_BY_FAMILY request to `buf`: with `exact`, the one socket
// with that 4-tuple (its family: V4 also finds IPv4-mapped IPv6 sockets);
// without, a dump of every TCP socket of `family` that can own a file (not
// listening, not TIME_WAIT, not a request).
void diag_request(std::vector<std::uint8_t>& buf, std::uint32_t seq, Family family,
                  const SocketTuple* exact);
// Decodes the messages of one netlink datagram into `out` (appends).
void decode_diag(const std::uint8_t* data, std::size_t len, DiagAnswer& out);

// --- The per-connection cache ------------------------------------------------

// One new connection to look up, oriented client -> server as its row.
struct OwnerQuery {
    SocketTuple conn;  // local = client, remote = server
    bool local_client = false;  // a hint: the client's SYN left through this host
    enum class Result : std::uint8_t {
        Retry,  // no owner found this time (counts as a try)
        Wait,   // the socket exists but /proc may not be rescanned yet (no try counted)
        Found,
    } result = Result::Retry;
    std::shared_ptr<const Owner> owner;
};
// Answers a batch of queries (sets result and owner of each).
using OwnerLookup = std::function<void(std::vector<OwnerQuery>&)>;

class ProcessCache final : public Enricher {
public:
    // Reports a not-found connection is tried on before it is given up.
    static constexpr std::uint8_t kMaxTries = 3;

    explicit ProcessCache(OwnerLookup lookup) : lookup_(std::move(lookup)) {}

    // Once per report, after collect(): looks up the connections new in this
    // report (changed, live, first seen now) and the pending ones; forgets the
    // ones shown for the last time in the previous report (finished, idle).
    // `live` is collect()'s count of live samples (samples[0, live)).
    void update(const std::vector<FlowSample>& samples, const std::vector<std::uint32_t>& changed,
                const std::vector<SlotRef>& idle, std::size_t live) override;
    // The owner of a connection, or nullptr.
    const Owner* find(const SlotRef& ref) const {
        if (owners_.empty()) return nullptr;
        const auto it = owners_.find(key(ref));
        return it == owners_.end() ? nullptr : it->second.get();
    }
    // Sets the row's pid, comm and cgroup (empty when no owner is known).
    void fill(const SlotRef& ref, FlowRow& row) const override;

    std::size_t known() const { return owners_.size(); }
    std::size_t pending() const { return pending_.size(); }
    std::uint64_t lookups() const { return lookups_; }  // queries handed to the lookup

private:
    static std::uint64_t key(const SlotRef& r) { return std::uint64_t{r.slot} << 32 | r.gen; }
    struct Pending {
        SlotRef ref;
        OwnerQuery query;
        std::uint8_t tries = 0;
    };

    OwnerLookup lookup_;
    std::unordered_map<std::uint64_t, std::shared_ptr<const Owner>> owners_;
    std::vector<Pending> pending_;
    std::vector<std::uint64_t> forget_next_;  // shown a last time in this report
    std::vector<OwnerQuery> batch_;
    std::uint64_t lookups_ = 0;
};

// The query for a sample: its endpoints oriented client -> server.
OwnerQuery query_of(const FlowSample& s);

// --- The system side: sock_diag + /proc ---------------------------------------

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
};

}  // namespace tcptrack
