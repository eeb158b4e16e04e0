// SPDX-License-Identifier: MIT
// The per-connection owner cache: new connections looked up, owners forgotten
// after a connection's last row.
#include "enrich/process_cache.hpp"

#include <algorithm>
#include <cstring>
#include <unordered_set>

namespace tcptrack {

namespace {

// The datapath's recorded owner (owner_side: its key side) is the client's socket.
bool cgroup_owner_client(const FlowSample& s) {
    return s.has_info && s.info.owner_cgroup && s.info.owner_side == client_side(s);
}

}  // namespace

OwnerQuery query_of(const FlowSample& s) {
    const Endpoints e = oriented(s);
    OwnerQuery q;
    q.conn.family = s.key.family() == TT_FAMILY_INET6 ? Family::V6 : Family::V4;
    const std::size_t alen = q.conn.family == Family::V6 ? 16 : 4;
    std::memcpy(q.conn.local.data(), e.src.data(), alen);
    std::memcpy(q.conn.remote.data(), e.dst.data(), alen);
    q.conn.lport = e.sport;
    q.conn.rport = e.dport;
    q.conn.ifindex = s.key.ifindex();
    q.local_client = s.has_info && (s.info.flags & TT_F_LOCAL_CLIENT);
    return q;
}

void ProcessCache::update(const std::vector<FlowSample>& samples,
                          const std::vector<std::uint32_t>& changed,
                          const std::vector<SlotRef>& idle, std::size_t live,
                          const SampleFinder& find) {
    // Rows of the previous report have been printed: its last showings go.
    for (const std::uint64_t k : forget_next_) owners_.erase(k);
    forget_next_.clear();

    std::unordered_set<std::uint64_t> gone;  // finished or idle now: no more lookups
    // Room for this report's new ones at once: a burst never holds the queue twice.
    std::size_t fresh = 0;
    for (const std::uint32_t i : changed) fresh += !samples[i].finished && is_new(samples[i]);
    pending_.reserve(pending_.size() + fresh);
    for (const std::uint32_t i : changed) {
        const FlowSample& s = samples[i];
        if (s.finished) {
            gone.insert(flow_id(s.ref));
            forget_next_.push_back(flow_id(s.ref));
            // Opened and closed between two reports, or never found: its socket is gone.
            if (s.has_info)
                adopt_cgroup_owner(flow_id(s.ref), s.info.owner_cgroup, cgroup_owner_client(s));
            continue;
        }
        // New: first seen at this report.
        if (is_new(s) && !owners_.count(flow_id(s.ref))) pending_.push_back(Pending(s.ref));
    }
    for (const SlotRef& r : idle) {
        gone.insert(flow_id(r));
        forget_next_.push_back(flow_id(r));
    }
    if (!gone.empty())
        std::erase_if(pending_,
                      [&](const Pending& p) { return gone.count(flow_id(p.ref())) != 0; });

    if (!pending_.empty()) {
        // This report's batch: the oldest pending connections still live.
        const std::size_t n = std::min(pending_.size(), kLookupBatch);
        std::vector<const FlowSample*> of;
        of.reserve(n);
        std::vector<OwnerQuery> queries;
        queries.reserve(n);
        for (std::size_t i = 0; i < n; ++i) {
            const FlowSample* s = find(pending_[i].ref());
            of.push_back(s);
            if (s) queries.push_back(query_of(*s));
        }
        lookups_ += queries.size();
        lookup_(queries);
        // Those still pending go behind the rest, which are due next.
        std::vector<Pending> again;
        for (std::size_t i = 0, k = 0; i < n; ++i) {
            const FlowSample* s = of[i];
            if (!s) continue;  // no longer live (its end is reported, or it was reaped)
            Pending p = pending_[i];
            const OwnerQuery& q = queries[k++];
            if (q.result == OwnerQuery::Result::Found && q.owner)
                owners_[flow_id(p.ref())] = Known{q.owner, q.owner_client};
            else if (q.result == OwnerQuery::Result::Retry && ++p.tries >= kMaxTries)
                adopt_cgroup_owner(flow_id(p.ref()), s->has_info ? s->info.owner_cgroup : 0u,
                                   cgroup_owner_client(*s));
            else
                again.push_back(p);
        }
        pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
        pending_.insert(pending_.end(), again.begin(), again.end());
        // The room a burst of new connections took goes with it.
        if (pending_.capacity() > 2 * pending_.size() + 4096) pending_.shrink_to_fit();
    }
    if (upkeep_) upkeep_();

    // Connections whose end was never reported (a close event lost with the
    // ring full) would stay forever: sweep against the live samples when the
    // cache holds many more entries than there are live flows.
    if (owners_.size() > 2 * live + 1024) {
        std::unordered_set<std::uint64_t> alive;
        alive.reserve(live);
        for (std::size_t i = 0; i < live && i < samples.size(); ++i)
            alive.insert(flow_id(samples[i].ref));
        for (const std::uint64_t k : forget_next_) alive.insert(k);
        for (auto it = owners_.begin(); it != owners_.end();)
            it = alive.count(it->first) ? std::next(it) : owners_.erase(it);
    }
}

void ProcessCache::adopt_cgroup_owner(std::uint64_t id, std::uint32_t cgroup_id, bool client) {
    if (!by_cgroup_ || cgroup_id == 0 || owners_.count(id)) return;
    if (auto o = by_cgroup_(cgroup_id)) owners_[id] = Known{std::move(o), client};
}

void ProcessCache::fill(const SlotRef& ref, FlowRow& row) const {
    if (const Known* k = known_of(ref)) {
        const Owner* o = k->owner.get();
        row.owner_client = k->client;
        if (o->pid)
            row.pid = o->pid;
        else
            row.pid.reset();
        row.comm = o->comm;
        row.cgroup = o->cgroup;
        row.pod_uid = o->pod_uid;
        row.container_id = o->container_id;
        row.netns = o->netns;
    } else {
        row.owner_client = false;
        row.pid.reset();
        row.comm.clear();
        row.cgroup.clear();
        row.pod_uid.clear();
        row.container_id.clear();
        row.netns.reset();
    }
}
}  // namespace tcptrack
