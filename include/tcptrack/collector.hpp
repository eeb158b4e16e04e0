// SPDX-License-Identifier: MIT
// Reads the datapath's flows (through a BPF map iterator, batched map reads,
// or key by key, as probed) and drains its close-event ring buffer.
#pragma once

#include <cstdint>
#include <vector>

#include "tcptrack/features.hpp"
#include "tcptrack/flow_model.hpp"

struct ring_buffer;
struct bpf_link;

namespace tcptrack {

class Skeleton;

struct DatapathStats {
    std::uint64_t untracked = 0;
    std::uint64_t untracked_segments = 0;
    std::uint64_t close_dropped = 0;
    std::uint64_t reused = 0;
    std::uint64_t close_lost = 0;
};

class Collector {
public:
    // reader: from the probe (Features::reader()); Iterator needs the skeleton
    // loaded with its iterator program, and degrades to Batch if it cannot attach.
    Collector(const Skeleton& skel, Reader reader);
    Reader reader() const { return reader_; }
    ~Collector();
    Collector(const Collector&) = delete;
    Collector& operator=(const Collector&) = delete;

    // Waits up to timeout_ms for close events and buffers them. Returns early on a signal.
    void poll(int timeout_ms);
    // Every connection now: live ones from the maps, finished ones from close
    // events (which supersede the same generation's map entry). Sorted by sample_less.
    // Finished entries still in the maps (ring was full, or last ACK lost) are
    // marked finished and deleted from the maps here. The vector is reused by
    // the next collect() (its storage is kept across reports).
    const std::vector<FlowSample>& collect(std::uint64_t now_ns);
    // Deletes these connections from both maps (idle timeout).
    void forget(const std::vector<tt_flow_key>& keys);
    DatapathStats stats() const;

private:
    static int on_event(void* ctx, void* data, std::size_t size);
    bool read_dump();
    void add_memos();
    void read_counters();
    void join_states();
    void drain_parked();

    int flows_fd_, states_fd_, stats_fd_, parked_fd_, memo_fd_;
    std::vector<tt_flow_memo> memos_;
    volatile std::uint32_t* epoch_;  // tt_epoch in the object's mmapped .bss
    std::uint32_t nr_cpus_;
    std::uint32_t copies_;  // counter copies per `flows` value (Skeleton::counter_copies)
    Reader reader_;
    ring_buffer* ring_ = nullptr;
    bpf_link* dump_link_ = nullptr;     // iterator over `flows`; null: batched reads
    std::vector<std::uint8_t> dump_buf_;
    std::vector<tt_close_event> events_;
    // Kept across reports so a report allocates (and page-faults) nothing new.
    std::vector<FlowSample> samples_;
    std::vector<std::uint32_t> index_;  // join_states(): hash slot -> sample
    std::vector<std::uint32_t> hashes_; // join_states(): key hashes of one batch
    std::vector<tt_flow_key> keys_;     // one batch of map keys
    std::vector<std::uint8_t> values_;  // one batch of map values
    std::vector<tt_flow_key> reap_;
    bool batch_ok_;  // BPF_MAP_LOOKUP_BATCH is used (probed; cleared if a map refuses it)
};

// Monotonic clock in ns, the same clock as bpf_ktime_get_ns().
std::uint64_t monotonic_ns();

}  // namespace tcptrack
