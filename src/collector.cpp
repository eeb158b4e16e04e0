// SPDX-License-Identifier: MIT
#include "tcptrack/collector.hpp"

#include <algorithm>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <unistd.h>
#include <fmt/format.h>

#include "tcptrack.skel.h"
#include "tcptrack/error.hpp"
#include "tcptrack/skeleton.hpp"

namespace tcptrack {

namespace {

constexpr std::uint32_t kBatch = 8192;             // entries per batch syscall
constexpr std::uint64_t kLastAckGraceNs = 1000000000;  // both FINs, no final ACK after 1 s

// Iterates a hash map in batches, calling sink(keys, values, n) per chunk.
// Falls back to get_next_key + lookup on kernels without batch ops.
// `keys`/`values` are the caller's buffers, kept across reports (no reallocation).
template <typename Key, typename Sink>
void read_map(int fd, std::size_t value_size, std::uint64_t elem_flags, bool& batch_ok,
              std::vector<Key>& keys, std::vector<std::uint8_t>& values, Sink&& sink) {
    keys.resize(kBatch);
    values.resize(kBatch * value_size);
    if (batch_ok) {
        Key token{};
        bool first = true;
        for (;;) {
            std::uint32_t count = kBatch;
            LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = elem_flags);
            const int err = bpf_map_lookup_batch(fd, first ? nullptr : &token, &token,
                                                 keys.data(), values.data(), &count, &opts);
            const int e = err ? errno : 0;
            if (err && e != ENOENT) {
                if (first && (e == EINVAL || e == ENOTSUP || e == EOPNOTSUPP)) {
                    batch_ok = false;
                    break;
                }
                throw Error(fmt::format("cannot read BPF map: {}", std::strerror(e)));
            }
            if (count) sink(keys.data(), values.data(), count);
            if (e == ENOENT) return;  // end of map
            first = false;
        }
    }
    // Slow path; a key deleted between steps (ENOENT) is simply skipped.
    Key cur{}, next{};
    bool has = false;
    while (bpf_map_get_next_key(fd, has ? &cur : nullptr, &next) == 0) {
        if (bpf_map_lookup_elem_flags(fd, &next, values.data(), elem_flags) == 0)
            sink(&next, values.data(), 1);
        cur = next;
        has = true;
    }
}

constexpr std::uint32_t kEmpty = UINT32_MAX;

// Adds one copy of a flow's counters (flow.h: TT_ADD_COUNTS, the one merge rule).
void add_counts(FlowSample& s, const tt_counters& c) { TT_ADD_COUNTS(&s, &c); }

// A sample from a kernel record that carries a flow's combined counters
// (tt_dump_record, tt_close_event).
template <typename Record>
void fill_sample(FlowSample& s, const Record& r) {
    s.key = r.key;
    s.hash = key_hash(r.key);
    s.info = r.info;
    std::memcpy(s.bytes, r.bytes, sizeof(s.bytes));
    std::memcpy(s.packets, r.packets, sizeof(s.packets));
    std::memcpy(s.payload, r.payload, sizeof(s.payload));
}

}  // namespace

std::uint64_t monotonic_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

Collector::Collector(const Skeleton& skel, Reader reader)
    : flows_fd_(bpf_map__fd(skel->maps.flows)),
      states_fd_(bpf_map__fd(skel->maps.flow_states)),
      stats_fd_(bpf_map__fd(skel->maps.stats)),
      parked_fd_(bpf_map__fd(skel->maps.parked_closes)),
      memo_fd_(bpf_map__fd(skel->maps.flow_memo)),
      epoch_(&skel->bss->tt_epoch),
      nr_cpus_(skel.nr_cpus()),
      copies_(skel.counter_copies()),
      reader_(reader),
      batch_ok_(reader != Reader::Keys) {
    ring_ = ring_buffer__new(bpf_map__fd(skel->maps.closed_events), &Collector::on_event, this,
                             nullptr);
    if (!ring_)
        throw Error(fmt::format("cannot open the close-event ring buffer: {}",
                                errno_hint(errno)));
    if (reader != Reader::Iterator) return;
    if (!skel.config().iterator)
        throw Error("internal: the iterator reader needs the iterator program loaded");
    // One iterator pass (counters summed and lifecycle joined in the kernel) is
    // several times cheaper than two batched reads, which lock every bucket.
    union bpf_iter_link_info info {};
    info.map.map_fd = static_cast<__u32>(flows_fd_);
    LIBBPF_OPTS(bpf_iter_attach_opts, opts, .link_info = &info, .link_info_len = sizeof(info));
    dump_link_ = bpf_program__attach_iter(skel->progs.tcptrack_dump, &opts);
    // The program loaded but will not attach to this map: batched reads give the same rows.
    if (!dump_link_) reader_ = batch_ok_ ? Reader::Batch : Reader::Keys;
}

Collector::~Collector() {
    bpf_link__destroy(dump_link_);
    ring_buffer__free(ring_);
}

int Collector::on_event(void* ctx, void* data, std::size_t size) {
    auto* self = static_cast<Collector*>(ctx);
    if (size >= sizeof(tt_close_event))
        self->events_.push_back(*static_cast<const tt_close_event*>(data));
    return 0;
}

void Collector::poll(int timeout_ms) {
    ring_buffer__poll(ring_, timeout_ms);  // EINTR: the caller checks its stop flag
}

// One pass of the map iterator: a stream of tt_dump_record, possibly split
// across read() calls. Returns false if the iterator cannot be used.
bool Collector::read_dump() {
    if (!dump_link_) return false;
    const int fd = bpf_iter_create(bpf_link__fd(dump_link_));
    if (fd < 0) return false;
    constexpr std::size_t kRec = sizeof(tt_dump_record);
    dump_buf_.resize(std::size_t{1} << 20);
    std::size_t have = 0;
    for (;;) {
        const ssize_t n = read(fd, dump_buf_.data() + have, dump_buf_.size() - have);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const int err = errno;
            close(fd);
            throw Error(fmt::format("cannot read the flow iterator: {}", std::strerror(err)));
        }
        if (n == 0) break;
        have += static_cast<std::size_t>(n);
        const std::size_t whole = have / kRec;
        for (std::size_t i = 0; i < whole; ++i) {
            tt_dump_record r;
            std::memcpy(&r, dump_buf_.data() + i * kRec, kRec);
            FlowSample& s = samples_.emplace_back();
            fill_sample(s, r);
            s.has_info = r.has_info != 0;
        }
        have -= whole * kRec;
        std::memmove(dump_buf_.data(), dump_buf_.data() + whole * kRec, have);
    }
    close(fd);
    // A bucket changing between two read() calls can show an entry twice.
    std::sort(samples_.begin(), samples_.end(), sample_less);
    samples_.erase(std::unique(samples_.begin(), samples_.end(),
                               [](const FlowSample& a, const FlowSample& b) {
                                   return a.hash == b.hash && same_key(a.key, b.key);
                               }),
                   samples_.end());
    return true;
}

// Each CPU's memo holds the last few segments of its current flow that are not
// in `flows` yet (see flow.h): add them to that flow's sample.
void Collector::add_memos() {
    memos_.resize(nr_cpus_);
    const std::uint32_t zero = 0;
    if (bpf_map_lookup_elem(memo_fd_, &zero, memos_.data()) != 0) return;
    for (const tt_flow_memo& m : memos_) {
        if (!m.dirty) continue;
        const std::uint32_t h = key_hash(m.key);
        for (FlowSample& s : samples_) {
            if (s.hash != h || !same_key(s.key, m.key)) continue;
            // A memo left by the tuple's previous connection (already in its close
            // event) must not count into this one.
            if (s.has_info &&
                !tt_same_bases(m.cnt.base_mask, m.cnt.base, s.info.base_mask, s.info.base))
                break;
            add_counts(s, m.cnt);
            break;
        }
    }
}

void Collector::read_counters() {
    const std::size_t stride = (sizeof(tt_counters) + 7) & ~std::size_t{7};
    const std::size_t value_size = stride * copies_;
    read_map(flows_fd_, value_size, 0, batch_ok_, keys_, values_,
             [&](const tt_flow_key* keys, const std::uint8_t* vals, std::uint32_t n) {
        for (std::uint32_t i = 0; i < n; ++i) {
            FlowSample& s = samples_.emplace_back();
            s.key = keys[i];
            s.hash = key_hash(s.key);
            const std::uint8_t* v = vals + i * value_size;
            for (std::uint32_t cpu = 0; cpu < copies_; ++cpu) {
                tt_counters c;
                std::memcpy(&c, v + cpu * stride, sizeof(c));
                add_counts(s, c);
            }
        }
    });
}

// Joins the lifecycle in as it is read: an open-addressing index (hash -> sample)
// instead of a copy of the whole state map and a second sort.
void Collector::join_states() {
    unsigned bits = 4;
    while ((std::size_t{1} << bits) < 2 * samples_.size()) ++bits;
    const std::size_t mask = (std::size_t{1} << bits) - 1;
    // FNV-1a's low bits cluster for keys differing in a byte or two: spread them.
    const auto slot = [bits](std::uint32_t h) { return (h * 0x9E3779B1u) >> (32 - bits); };
    index_.assign(mask + 1, kEmpty);
    for (std::uint32_t i = 0; i < samples_.size(); ++i) {
        std::size_t j = slot(samples_[i].hash);
        while (index_[j] != kEmpty) j = (j + 1) & mask;
        index_[j] = i;
    }
    read_map(states_fd_, sizeof(tt_flow_state), BPF_F_LOCK, batch_ok_, keys_, values_,
             [&](const tt_flow_key* keys, const std::uint8_t* vals, std::uint32_t n) {
        // Three passes over the batch so the cache misses of many lookups overlap:
        // hash and prefetch the slot, prefetch the sample, then compare.
        hashes_.resize(n);
        for (std::uint32_t i = 0; i < n; ++i) {
            hashes_[i] = key_hash(keys[i]);
            __builtin_prefetch(&index_[slot(hashes_[i])]);
        }
        for (std::uint32_t i = 0; i < n; ++i)
            if (const std::uint32_t k = index_[slot(hashes_[i])]; k != kEmpty)
                __builtin_prefetch(&samples_[k]);
        for (std::uint32_t i = 0; i < n; ++i) {
            const std::uint32_t h = hashes_[i];
            for (std::size_t j = slot(h); index_[j] != kEmpty; j = (j + 1) & mask) {
                FlowSample& s = samples_[index_[j]];
                if (s.hash == h && same_key(s.key, keys[i])) {
                    tt_flow_state st;
                    std::memcpy(&st, vals + i * sizeof(st), sizeof(st));
                    s.info = st.info;
                    s.has_info = true;
                    break;
                }
            }
        }
    });
}

void Collector::drain_parked() {
    std::vector<tt_parked_key> keys, done;
    read_map(parked_fd_, sizeof(tt_close_event), 0, batch_ok_, keys, values_,
             [&](const tt_parked_key* k, const std::uint8_t* vals, std::uint32_t n) {
        for (std::uint32_t i = 0; i < n; ++i) {
            tt_close_event ev;
            std::memcpy(&ev, vals + i * sizeof(ev), sizeof(ev));
            events_.push_back(ev);
            done.push_back(k[i]);
        }
    });
    // Delete exactly what was read; events parked meanwhile wait for the next report.
    for (const auto& k : done) bpf_map_delete_elem(parked_fd_, &k);
}

const std::vector<FlowSample>& Collector::collect(std::uint64_t now_ns) {
    drain_parked();
    samples_.clear();  // capacity is kept: no reallocation from one report to the next
    bool sorted = read_dump();  // the iterator's samples come out sorted
    if (!sorted) {
        read_counters();
        join_states();
    }
    add_memos();

    // Finished connections the datapath could not hand over (ring full, or the
    // last ACK never came): reap them here. Finished ones it is handing over
    // right now (DONE without REAP) are left to their close event, so no
    // connection is reported final twice.
    reap_.clear();
    std::erase_if(samples_, [&](FlowSample& s) {
        if (!s.has_info) return false;
        const bool stale_close = s.info.state == TT_CLOSED && s.info.close_ns &&
                                 now_ns > s.info.close_ns + kLastAckGraceNs;
        if ((s.info.flags & TT_F_REAP) || stale_close) {
            s.finished = true;
            reap_.push_back(s.key);
            return false;
        }
        return (s.info.flags & TT_F_DONE) != 0;
    });
    forget(reap_);

    // Close events carry final counters and supersede their generation's map entry.
    if (!events_.empty()) {
        std::vector<FlowSample> closed;
        closed.reserve(events_.size());
        for (const auto& ev : events_) {
            FlowSample s;
            fill_sample(s, ev);
            s.has_info = true;
            s.finished = true;
            if (ev.reason == TT_CLOSE_REUSED && s.info.state < TT_CLOSED)
                s.info.state = TT_CLOSED;  // replaced by a new SYN: it is over
            closed.push_back(s);
        }
        events_.clear();
        std::sort(closed.begin(), closed.end(), sample_less);
        auto superseded = [&](const FlowSample& m) {
            auto it = std::lower_bound(closed.begin(), closed.end(), m, sample_less);
            for (; it != closed.end() && same_key(it->key, m.key); ++it)
                if (it->info.first_ns == m.info.first_ns) return true;
            return false;
        };
        std::erase_if(samples_, superseded);
        samples_.insert(samples_.end(), closed.begin(), closed.end());
        sorted = false;
    }
    if (!sorted) std::sort(samples_.begin(), samples_.end(), sample_less);
    return samples_;
}

void Collector::forget(const std::vector<tt_flow_key>& keys) {
    if (keys.empty()) return;

    for (int fd : {flows_fd_, states_fd_}) {
        std::uint32_t count = keys.size();
        // Batched where the kernel can; ENOENT (already gone) is fine either way.
        if (bpf_map_delete_batch(fd, keys.data(), &count, nullptr) == 0) continue;
        for (const auto& k : keys) bpf_map_delete_elem(fd, &k);
    }
    // Memos (flow.h) filled before this epoch stop being used: none outlives its entry.
    *epoch_ = *epoch_ + 1;
}

DatapathStats Collector::stats() const {
    DatapathStats st;
    std::vector<std::uint64_t> v(nr_cpus_);
    auto sum = [&](std::uint32_t idx) {
        std::uint64_t total = 0;
        if (bpf_map_lookup_elem(stats_fd_, &idx, v.data()) == 0)
            for (auto x : v) total += x;
        return total;
    };
    st.untracked = sum(TT_STAT_UNTRACKED);
    st.untracked_segments = sum(TT_STAT_UNTRACKED_SEGS);
    st.close_dropped = sum(TT_STAT_CLOSE_DROPPED);
    st.reused = sum(TT_STAT_REUSED);
    st.close_lost = sum(TT_STAT_CLOSE_LOST);
    return st;
}

}  // namespace tcptrack
