// SPDX-License-Identifier: MIT
// Reads the slot store (tcptrack/store.h) through mmap, keeps one sample per
// live flow up to date in proportion to what changed, and drains the
// close-event ring buffer. It also recycles the slots of finished flows and
// ends idle or reaped ones (through the datapath's eviction program).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "datapath/flow_sample.hpp"
#include "sys/clock.hpp"

struct ring_buffer;

namespace tcptrack {

class Skeleton;

struct DatapathStats {
    std::uint64_t untracked = 0;
    std::uint64_t untracked_segments = 0;
    std::uint64_t close_dropped = 0;
    std::uint64_t close_lost = 0;
    std::uint64_t displaced = 0;
    std::uint64_t untracked_full = 0;
    std::uint64_t untracked_buckets = 0;
};

class Collector {
   public:
    explicit Collector(const Skeleton& skel);
    ~Collector();
    Collector(const Collector&) = delete;
    Collector& operator=(const Collector&) = delete;

    // Waits up to timeout_ms (close events are read meanwhile by a thread of
    // the collector's own). Returns early on a signal.
    void poll(int timeout_ms);

    // Every connection now, in no particular order: the live ones (samples kept
    // from report to report, refreshed only where the store changed), then the
    // ones finished since the last call (from close events, or reaped here:
    // final, shown once). A sample whose counters moved gets last_active_ns =
    // now_ns and prev_bytes = its bytes at the last call. The vector stays
    // valid and unchanged until the next collect() (forget() leaves it alone).
    const std::vector<FlowSample>& collect(std::uint64_t now_ns, std::uint64_t idle_limit_ns,
                                           std::uint64_t unassured_limit_ns = UINT64_MAX);
    // The last collect()'s samples; collected(): there was one.
    const std::vector<FlowSample>& samples() const { return samples_; }
    bool collected() const { return collected_; }
    // Indexes into collect()'s samples of those that are new, moved or finished.
    const std::vector<std::uint32_t>& changed() const { return changed_; }
    // Live flows idle for idle_limit_ns at the last collect() (unassured ones:
    // unassured_limit_ns, default the same): shown this once, then to be forgotten.
    const std::vector<SlotRef>& idle() const { return idle_; }
    // The live sample of this flow at the last collect(), or nullptr.
    const FlowSample* find(const SlotRef& ref) const;
    // Live flows in the store at the last collect(), and how many of them are
    // assured (tcptrack/abi.h: TT_F_ASSURED); the store holds capacity() at most.
    std::size_t live() const { return live_; }
    std::size_t assured() const { return assured_; }
    std::size_t capacity() const { return max_slots_; }

    // The interfaces with these ifindexes are gone: at the next collect() their
    // live flows are idle() whatever their age (no FIN will come), so they are
    // shown once more with their exact counts and then forgotten.
    void end_interfaces(const std::vector<std::uint32_t>& ifindexes);

    // Ends these flows in the datapath (idle timeout). Returns how many it ended.
    std::size_t forget(const std::vector<SlotRef>& flows);
    DatapathStats stats() const;

   private:
    static int on_event(void* ctx, void* data, std::size_t size);
    void recycle();
    void take_events(std::uint64_t now_ns);
    void scan(std::uint64_t now_ns, std::uint64_t idle_limit_ns, std::uint64_t unassured_limit_ns);
    void remove_live(std::uint32_t pos);
    // A live flow's position in samples_, or kNone.
    std::uint32_t live_pos(const SlotRef& ref) const;
    bool on_gone_interface(std::uint32_t ifindex) const;
    // Ends these generations through the datapath's eviction program; those it
    // ended go to `ended` (if given) and are recycled a report later.
    std::size_t evict(const std::vector<SlotRef>& flows, std::vector<SlotRef>* ended);
    std::uint32_t next_fresh() const;

    void read_cache();
    void recheck_cache();

    int slots_fd_, health_fd_, store_lock_fd_, free_fd_, evict_fd_, evict_prog_fd_, stats_fd_;
    std::uint32_t nr_cpus_, max_slots_;
    ring_buffer* ring_ = nullptr;
    // The reader thread consumes the ring into events_ (on_event), and so does
    // take_events(); both under ring_mu_.
    void drain();
    std::mutex ring_mu_;
    std::vector<tt_close_event> events_, taken_;
    std::atomic<bool> stopping_{false};
    std::thread drainer_;

    // samples_[0, live_) are the live flows; pos_[slot] is a slot's sample
    // (kNone if none); the finished ones follow, until the next collect().
    std::vector<FlowSample> samples_;
    std::vector<std::uint32_t> pos_;
    std::size_t live_ = 0;
    std::size_t assured_ = 0;
    bool collected_ = false;
    std::uint64_t last_now_ = UINT64_MAX;  // the last collect()'s now_ns
    std::vector<std::uint32_t> changed_;
    std::vector<SlotRef> idle_;
    std::vector<std::uint32_t> gone_ifindexes_;  // end_interfaces(), until the next scan
    // Slots that died since the last collect(): their counters at death, for
    // the final interval's rate of a close event that comes in late.
    struct Dead {
        SlotRef ref;
        Counts last;
        SampleHealth health;  // and its health, for the close event to widen on from
    };
    std::vector<Dead> dead_;
    // Dead slots go back to the kernel a report after they died (no classifier
    // can still be counting into them by then). The queue holds every slot, so
    // a push fails only on an unexpected error: that slot is tried again.
    std::vector<std::uint32_t> dying_;
    std::vector<FlowSample> closed_;

    // The per-CPU counter cache (tcptrack/store.h), mapped for the collector's
    // lifetime (256 KiB per CPU), and the entries holding counts at this
    // collect(), sorted by slot to be added to their slots during the scan.
    const volatile tt_cache_entry* cache_ = nullptr;
    std::size_t cache_len_ = 0, cache_entries_ = 0;
    struct Cached {
        std::uint32_t slot, gen, seq, at;  // at: index in the cache
        std::uint64_t bytes[2], packets[2], payload[2];
    };
    std::vector<Cached> cached_;
};

}  // namespace tcptrack
