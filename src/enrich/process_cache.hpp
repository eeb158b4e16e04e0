// SPDX-License-Identifier: MIT
// The per-connection owner cache (an Enricher): who owns each connection,
// looked up once when it is new (retried a few reports while not found).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "enrich/sock_diag.hpp"
#include "report/enricher.hpp"
#include "report/flow_model.hpp"
#include "report/report.hpp"

namespace tcptrack {

// The owning process of a local socket.
struct Owner {
    std::uint32_t pid = 0;
    std::string comm;    // /proc/PID/comm
    std::string cgroup;  // container id if evident, else the cgroup v2 path; "" if none
    std::string pod_uid, container_id;  // enrich/pod.hpp, from the same /proc/PID/cgroup read
    // The network namespace (nsfs inode) of the socket: the one sock_diag
    // found it in, the attach namespace (tcptrack's own or --netns's) or the
    // one beyond the flow's interface (a pod's). Empty if unknown.
    std::optional<std::uint64_t> netns;
};

// One new connection to look up, oriented client -> server as its row.
struct OwnerQuery {
    SocketTuple conn;           // local = client, remote = server
    bool local_client = false;  // a hint: the client's SYN left through this host
    enum class Result : std::uint8_t {
        Retry,  // no owner found this time (counts as a try)
        Wait,   // the socket exists but /proc may not be rescanned yet (no try counted)
        Found,
    } result = Result::Retry;
    std::shared_ptr<const Owner> owner;
    bool owner_client = false;  // with Found: the owner's socket is the client's end
};
// Answers a batch of queries (sets result and owner of each).
using OwnerLookup = std::function<void(std::vector<OwnerQuery>&)>;
// The owner the datapath recorded (tt_flow_info.owner_cgroup, never 0 here):
// cgroup, pod and container, no process. nullptr when the id names nothing.
using CgroupOwner = std::function<std::shared_ptr<const Owner>(std::uint32_t cgroup_id)>;
// Runs once per report after the lookups, if any: the owner side lets go of
// what it no longer needs (peer namespaces).
using OwnerUpkeep = std::function<void()>;

class ProcessCache final : public Enricher {
   public:
    // Reports a not-found connection is tried on before it is given up.
    static constexpr std::uint8_t kMaxTries = 3;

    // `by_cgroup` (optional) answers for connections sock_diag cannot: ended
    // before their first report, or never found while they lived.
    explicit ProcessCache(OwnerLookup lookup, CgroupOwner by_cgroup = {}, OwnerUpkeep upkeep = {})
        : lookup_(std::move(lookup)),
          by_cgroup_(std::move(by_cgroup)),
          upkeep_(std::move(upkeep)) {}

    // Connections looked up at one report at most. A burst of more new ones
    // (a million at once) waits its turn, oldest first, so neither a report's
    // lookups nor their memory grow with the burst: a pending one costs 8
    // bytes, and its query is made from its sample when due.
    static constexpr std::size_t kLookupBatch = 65536;

    // Once per report, after collect(): looks up the connections new in this
    // report (changed, live, first seen now) and the pending ones, up to
    // kLookupBatch; forgets the ones shown for the last time in the previous
    // report (finished, idle). `live` is collect()'s count of live samples
    // (samples[0, live)); `find` gives a pending connection's sample.
    void update(const std::vector<FlowSample>& samples, const std::vector<std::uint32_t>& changed,
                const std::vector<SlotRef>& idle, std::size_t live,
                const SampleFinder& find) override;
    // The owner of a connection, or nullptr.
    const Owner* find(const SlotRef& ref) const {
        const Known* k = known_of(ref);
        return k ? k->owner.get() : nullptr;
    }
    // Sets the row's pid, comm, cgroup, pod_uid, container_id, netns and owner_client (empty
    // when no owner is known; pid and comm also when only the datapath's cgroup is).
    void fill(const SlotRef& ref, FlowRow& row) const override;

    std::size_t known() const { return owners_.size(); }
    std::size_t pending() const { return pending_.size(); }
    std::uint64_t lookups() const { return lookups_; }  // queries handed to the lookup

   private:
    // A connection still to be looked up (its query is made from its sample),
    // and how often it was not found: 8 bytes (slots have TT_SLOT_BITS).
    struct Pending {
        explicit Pending(const SlotRef& r) : slot(r.slot), tries(0), gen(r.gen) {}
        SlotRef ref() const { return {slot, gen}; }
        std::uint32_t slot : TT_SLOT_BITS;
        std::uint32_t tries : 32 - TT_SLOT_BITS;
        std::uint32_t gen;
    };
    static_assert(sizeof(Pending) == 8 && TT_SLOT_BITS <= 24);
    // The datapath's owner of a connection sock_diag did not answer for.
    void adopt_cgroup_owner(std::uint64_t id, std::uint32_t cgroup_id, bool client);

    // An owner is shared by its process's connections; its end is each connection's own.
    struct Known {
        std::shared_ptr<const Owner> owner;
        bool client = false;
    };
    const Known* known_of(const SlotRef& ref) const {
        if (owners_.empty()) return nullptr;
        const auto it = owners_.find(flow_id(ref));
        return it == owners_.end() ? nullptr : &it->second;
    }

    OwnerLookup lookup_;
    CgroupOwner by_cgroup_;
    OwnerUpkeep upkeep_;
    std::unordered_map<std::uint64_t, Known> owners_;
    std::vector<Pending> pending_;            // oldest first
    std::vector<std::uint64_t> forget_next_;  // shown a last time in this report
    std::uint64_t lookups_ = 0;
};

// The query for a sample: its endpoints oriented client -> server.
OwnerQuery query_of(const FlowSample& s);

}  // namespace tcptrack
