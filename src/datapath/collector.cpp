// SPDX-License-Identifier: MIT
#include "datapath/collector.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fmt/format.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>
#include <new>
#include <optional>
#include <system_error>

#include "tcptrack/abi.h"
#include "tcptrack/filter_vm.h"  // before the skeleton: its .bss holds struct tt_filter
#include "tcptrack/store.h"      // before the skeleton: its .rodata holds struct tt_hash_key
#include "tcptrack.skel.h"
#include "datapath/skeleton.hpp"
#include "sys/error.hpp"
#include "sys/memory.hpp"
#include "sys/privileges.hpp"

namespace tcptrack {

namespace {

constexpr std::uint32_t kNone = UINT32_MAX;
constexpr std::uint64_t kLastAckGraceNs = 1000000000;  // both FINs, no final ACK after 1 s
// Slots mapped at a time: a multiple of 256 slots (11 pages of 176-byte slots)
// so every window starts on a page and holds whole slots. Only one window is
// resident at a time, so the store adds ~3 MB to RSS however big it is (and
// the health map, read beside it for the flows that moved, up to 2 MB more).
constexpr std::uint32_t kWindowSlots = 256 * 64;

// One read-only mmap window of an mmapable array map (the slots, the health
// entries): count elements from element first.
template <typename T>
class Window {
   public:
    Window(int fd, std::uint32_t first, std::uint32_t count, const char* what) {
        const long page = sysconf(_SC_PAGESIZE);
        len_ = (std::size_t{count} * sizeof(T) + page - 1) / page * page;
        p_ = mmap(nullptr, len_, PROT_READ, MAP_SHARED, fd,
                  static_cast<off_t>(std::size_t{first} * sizeof(T)));
        if (p_ == MAP_FAILED)
            throw Error(fmt::format("cannot mmap the {}: {}", what, errno_hint(errno)));
    }
    ~Window() { munmap(p_, len_); }
    Window(const Window&) = delete;
    Window& operator=(const Window&) = delete;
    const volatile T* at() const { return static_cast<const volatile T*>(p_); }

   private:
    void* p_;
    std::size_t len_;
};
// Every window starts on a page in both maps.
static_assert(kWindowSlots * sizeof(tt_slot) % 4096 == 0 &&
              kWindowSlots * sizeof(tt_health) % 4096 == 0);

template <typename T>
T load(const volatile T& v) {
    return v;
}

// A slot's info, which the kernel may be writing (the caller checks the gen).
FlowInfo info_of(const volatile tt_slot& v) {
    tt_flow_info i;
    std::memcpy(&i, const_cast<const tt_flow_info*>(&v.info), sizeof(i));
    return i;
}

// Copies what a sample shows from a slot the kernel may be writing: counters
// are single loads; the info is copied whole (the caller checks the gen), and
// so is the key of a new flow (constant while the slot holds it).
void fill_from_slot(FlowSample& s, const volatile tt_slot& v, bool is_new) {
    if (is_new) {
        tt_flow_key k;
        std::memcpy(&k, const_cast<const tt_flow_key*>(&v.key), sizeof(k));
        s.key = k;
    }
    s.info = info_of(v);
    for (int d = 0; d < 2; ++d) {
        s.bytes[d] = load(v.bytes[d]);
        s.packets[d] = load(v.packets[d]);
        s.payload[d] = load(v.payload[d]);
    }
}

void fill_from_event(FlowSample& s, const tt_close_event& ev, std::uint64_t now_ns) {
    s.key = ev.key;
    s.info = ev.info;
    std::memcpy(s.bytes, ev.bytes, sizeof(s.bytes));
    std::memcpy(s.packets, ev.packets, sizeof(s.packets));
    std::memcpy(s.payload, ev.payload, sizeof(s.payload));
    s.ref = SlotRef{ev.slot, ev.gen};
    s.has_info = true;
    s.finished = true;
    start_health(s, figures_of(ev.health), health_end_ms(s, now_ns));
}

// A live sample's health from the map (h; none with --no-health), unless a
// new connection took its slot while it was copied (a cleared entry must not
// read as wrapped counters).
void refresh_health(FlowSample& s, const volatile tt_health* h, const volatile tt_slot& v,
                    std::uint64_t now_ns) {
    if (!h) return;
    HealthFigures next;
    copy_health(next, *h);
    if (load(v.gen) != s.ref.gen) return;
    take_health(s, next, health_ms(now_ns));
}

}  // namespace

Collector::Collector(const Skeleton& skel)
    : slots_fd_(bpf_map__fd(skel->maps.slots)),
      health_fd_(skel.config().health ? bpf_map__fd(skel->maps.health) : -1),
      store_lock_fd_(bpf_map__fd(skel->maps.store_lock)),
      free_fd_(bpf_map__fd(skel->maps.free_slots)),
      evict_fd_(bpf_map__fd(skel->maps.evict_req)),
      evict_prog_fd_(bpf_program__fd(skel->progs.tcptrack_evict)),
      stats_fd_(bpf_map__fd(skel->maps.stats)),
      nr_cpus_(skel.nr_cpus()),
      max_slots_(skel.geometry().slots) {
    cache_entries_ = skel.cache_entries();
    const long page = sysconf(_SC_PAGESIZE);
    cache_len_ = (cache_entries_ * sizeof(tt_cache_entry) + page - 1) / page * page;
    void* c =
        mmap(nullptr, cache_len_, PROT_READ, MAP_SHARED, bpf_map__fd(skel->maps.flow_cache), 0);
    if (c == MAP_FAILED)
        throw Error(fmt::format("cannot mmap the counter cache: {}", errno_hint(errno)));
    cache_ = static_cast<const volatile tt_cache_entry*>(c);
    // Room for a sample per slot up front (address space only: pages count
    // once touched), so growing to a million flows never holds two copies of
    // the samples at once (a vector doubling would: +100 MB of peak RSS).
    try {
        samples_.reserve(max_slots_);
        pos_.reserve(max_slots_);
        // Past the first 8 MiB (43,690 flows), on huge pages where the
        // kernel has them: at a million flows 7-13 % less CPU per report (the
        // render's reads in display order miss the TLB on 4 KiB pages), for a
        // first report that faults them in slower. Below that, none: a host
        // with a few flows keeps its few pages.
        constexpr std::size_t kSmall = std::size_t{8} << 20;
        const std::size_t bytes = samples_.capacity() * sizeof(FlowSample);
        if (bytes > kSmall)
            prefer_huge_pages(reinterpret_cast<char*>(samples_.data()) + kSmall, bytes - kSmall);
    } catch (const std::bad_alloc&) {
        // Grows as needed instead.
    }
    ring_ = ring_buffer__new(bpf_map__fd(skel->maps.closed_events), &Collector::on_event, this,
                             nullptr);
    if (!ring_) {
        const int err = errno;
        munmap(c, cache_len_);
        throw Error(fmt::format("cannot open the close-event ring buffer: {}", errno_hint(err)));
    }
    try {
        drainer_ = std::thread([this] { drain(); });
    } catch (const std::system_error& e) {
        ring_buffer__free(ring_);
        munmap(c, cache_len_);
        throw Error(fmt::format("cannot start the close-event reader: {}", e.what()));
    }
}

Collector::~Collector() {
    stopping_ = true;
    drainer_.join();
    ring_buffer__free(ring_);
    munmap(const_cast<tt_cache_entry*>(cache_), cache_len_);
}

// The cache entries holding counts, before the slots are read. An entry being
// folded (odd seq) is left out: its counts are on their way into the slot.
void Collector::read_cache() {
    cached_.clear();
    for (std::size_t i = 0; i < cache_entries_; ++i) {
        const volatile tt_cache_entry& e = cache_[i];
        const std::uint32_t gen = load(e.gen);
        if (!gen) continue;
        const std::uint32_t seq = load(e.seq);
        if (seq & 1) continue;
        Cached c{load(e.slot), gen, seq, static_cast<std::uint32_t>(i), {}, {}, {}};
        for (int d = 0; d < 2; ++d) {
            c.bytes[d] = load(e.bytes[d]);
            c.packets[d] = load(e.packets[d]);
            c.payload[d] = load(e.payload[d]);
        }
        if (load(e.seq) != seq || load(e.gen) != gen) continue;  // folded meanwhile
        if (c.bytes[0] | c.bytes[1]) cached_.push_back(c);
    }
    std::sort(cached_.begin(), cached_.end(),
              [](const Cached& a, const Cached& b) { return a.slot < b.slot; });
}

// An entry folded after read_cache() may have put its counts into a slot the
// scan read afterwards: take them back out of the sample (at worst a report
// shows them late, never twice).
void Collector::recheck_cache() {
    for (const Cached& c : cached_) {
        if (load(cache_[c.at].seq) == c.seq) continue;
        const std::uint32_t p = live_pos(SlotRef{c.slot, c.gen});
        if (p == kNone) continue;
        FlowSample& s = samples_[p];
        for (int d = 0; d < 2; ++d) {
            s.bytes[d] -= std::min(s.bytes[d], c.bytes[d]);
            s.packets[d] -= std::min(s.packets[d], c.packets[d]);
        }
    }
}

int Collector::on_event(void* ctx, void* data, std::size_t size) {
    auto* self = static_cast<Collector*>(ctx);
    if (size >= sizeof(tt_close_event))
        self->events_.push_back(*static_cast<const tt_close_event*>(data));
    return 0;
}

// The ring is read all the time, not only between reports: while a report is
// built and printed (a slow terminal, a full pipe, 100,000 rows) the datapath
// goes on queueing closes, and displacing a half-open flow needs room there.
// Its signals are blocked: they go to the main thread. It looks every 50 ms:
// the datapath wakes it sooner only once the ring is a quarter full
// (tt_close_submit, bpf/lib/maps.h), not at every close.
void Collector::drain() {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    const int fd = ring_buffer__epoll_fd(ring_);
    while (!stopping_) {
        epoll_event ev{};
        epoll_wait(fd, &ev, 1, 50);
        const std::lock_guard<std::mutex> lock(ring_mu_);
        ring_buffer__consume(ring_);
    }
}

void Collector::poll(int timeout_ms) {
    ::poll(nullptr, 0, timeout_ms);  // returns early on a signal: the caller checks its stop flag
}

std::uint32_t Collector::next_fresh() const {
    tt_store_lock l{};
    const std::uint32_t zero = 0;
    if (bpf_map_lookup_elem(store_lock_fd_, &zero, &l) != 0)
        throw Error(fmt::format("cannot read the flow store: {}", errno_hint(errno)));
    return std::min(l.next_fresh, max_slots_);
}

// Slots that died a report ago (all of dying_ at the start of collect())
// go back to the kernel's free queue.
void Collector::recycle() {
    std::size_t pushed = 0;
    for (; pushed < dying_.size(); ++pushed)
        if (bpf_map_update_elem(free_fd_, nullptr, &dying_[pushed], BPF_ANY) != 0) break;
    dying_.erase(dying_.begin(), dying_.begin() + static_cast<std::ptrdiff_t>(pushed));
}

std::uint32_t Collector::live_pos(const SlotRef& ref) const {
    const std::uint32_t p = ref.slot < pos_.size() ? pos_[ref.slot] : kNone;
    return p != kNone && p < live_ && samples_[p].ref == ref ? p : kNone;
}

const FlowSample* Collector::find(const SlotRef& ref) const {
    const std::uint32_t p = live_pos(ref);
    return p == kNone ? nullptr : &samples_[p];
}

void Collector::remove_live(std::uint32_t pos) {
    const std::uint32_t last = static_cast<std::uint32_t>(live_ - 1);
    pos_[samples_[pos].ref.slot] = kNone;
    if (pos != last) {
        samples_[pos] = std::move(samples_[last]);
        pos_[samples_[pos].ref.slot] = pos;
    }
    --live_;
    samples_.resize(live_);
}

// Close events carry final counters; they end their generation's live sample.
void Collector::take_events(std::uint64_t now_ns) {
    {
        const std::lock_guard<std::mutex> lock(ring_mu_);
        ring_buffer__consume(ring_);  // up to now, whatever the reader thread's timing
        taken_.swap(events_);
    }
    for (const tt_close_event& ev : taken_) {
        FlowSample& s = closed_.emplace_back();
        fill_from_event(s, ev, now_ns);
        if (ev.reason == TT_CLOSE_REUSED && s.info.state < TT_CLOSED)
            s.info.state = TT_CLOSED;  // replaced by a new SYN: it is over
        s.last_active_ns = now_ns;
        // Its bytes at the last report give the final interval's rate.
        const std::uint32_t p = live_pos(s.ref);
        if (p != kNone) {
            s.set_prev(samples_[p].counts());
            continue_health(s, samples_[p].health, now_ns);
            remove_live(p);
        } else {
            for (const Dead& d : dead_)
                if (d.ref == s.ref) {
                    s.set_prev(d.last);
                    continue_health(s, d.health, now_ns);
                }
        }
        // A reused or displaced flow's slot carries on with the new connection.
        if (ev.reason == TT_CLOSE_FINISHED) dying_.push_back(ev.slot);
    }
    taken_.clear();
}

// One pass over the used slots, a window at a time. An unchanged live slot
// costs two loads and a compare with its sample; only new and moved flows are copied.
void Collector::scan(std::uint64_t now_ns, std::uint64_t idle_limit_ns,
                     std::uint64_t unassured_limit_ns) {
    const std::uint32_t used = next_fresh();
    if (pos_.size() < used) pos_.resize(used, kNone);
    dead_.clear();
    std::vector<std::uint32_t> moved;  // slots; positions move while dead ones are removed
    std::vector<SlotRef> to_reap;

    read_cache();
    std::size_t ci = 0;  // next entry of cached_ (sorted by slot)
    for (std::uint32_t first = 0; first < used; first += kWindowSlots) {
        const std::uint32_t count = std::min(kWindowSlots, used - first);
        const Window<tt_slot> w(slots_fd_, first, count, "flow store");
        // --no-health: a map of one entry, nothing to read (samples keep zeros).
        std::optional<Window<tt_health>> hw;
        if (health_fd_ >= 0) hw.emplace(health_fd_, first, count, "health map");
        const volatile tt_slot* base = w.at();
        const volatile tt_health* health = hw ? hw->at() : nullptr;
        for (std::uint32_t i = 0; i < count; ++i) {
            const volatile tt_slot& v = base[i];
            const volatile tt_health* h = health ? health + i : nullptr;
            const std::uint32_t slot = first + i;
            const std::uint32_t gen = load(v.gen);
            std::uint32_t p = pos_[slot];
            // This slot's counts still in CPUs' caches.
            tt_cache_entry extra{};
            for (; ci < cached_.size() && cached_[ci].slot <= slot; ++ci)
                if (cached_[ci].slot == slot && cached_[ci].gen == gen)
                    TT_ADD_COUNTS(&extra, &cached_[ci]);
            if (!tt_gen_live(gen)) {
                if (p != kNone) {
                    const FlowSample& old = samples_[p];
                    dead_.push_back(Dead{old.ref, old.counts(), old.health});
                    remove_live(p);
                }
                continue;
            }
            bool health_read = true;
            if (p != kNone && samples_[p].ref.gen == gen) {
                FlowSample& s = samples_[p];
                const std::uint64_t b0 = load(v.bytes[0]) + extra.bytes[0];
                const std::uint64_t b1 = load(v.bytes[1]) + extra.bytes[1];
                if (b0 == s.bytes[0] && b1 == s.bytes[1]) {
                    // Every counted segment adds bytes: nothing moved. But flags
                    // change without one (REAP, a reused tuple's old connection).
                    if (load(v.info.flags) != s.info.flags) s.info = info_of(v);
                    // A segment's health follows its counts into the map: read
                    // it once more after the flow stops, for its last segment.
                    health_read = s.last_active_ns == last_now_;
                    if (health_read) refresh_health(s, h, v, now_ns);
                } else {
                    const Counts before = s.counts();
                    fill_from_slot(s, v, false);
                    TT_ADD_COUNTS(&s, &extra);
                    s.set_prev(before);
                    refresh_health(s, h, v, now_ns);
                    s.last_active_ns = now_ns;
                    moved.push_back(slot);
                }
            } else {
                // A new flow, or a new connection in this slot (its old one
                // closed through the ring).
                if (p != kNone) {
                    const FlowSample& old = samples_[p];
                    dead_.push_back(Dead{old.ref, old.counts(), old.health});
                } else {
                    p = static_cast<std::uint32_t>(live_++);
                    samples_.emplace_back();
                    pos_[slot] = p;
                }
                FlowSample& s = samples_[p];
                fill_from_slot(s, v, true);
                TT_ADD_COUNTS(&s, &extra);
                HealthFigures first{};
                if (h) copy_health(first, *h);
                start_health(s, first, health_ms(now_ns));
                // Set before the check: remove_live() finds the sample's pos_
                // entry through ref (the default ref wrote 16 GiB past pos_ in
                // the one churn run in 17 that crashed).
                s.ref = SlotRef{slot, gen};
                if (load(v.gen) != gen) {  // replaced while copied: take it next time
                    remove_live(p);
                    continue;
                }
                s.set_prev(Counts{});
                s.last_active_ns = now_ns;
                s.has_info = true;
                s.finished = false;
                moved.push_back(slot);
            }
            FlowSample& s = samples_[p];
            // Its interface is gone: the last ACK of a closed one will not come either.
            const bool gone = on_gone_interface(s.key.ifindex());
            const bool stale_close = s.info.state == TT_CLOSED && s.info.close_ns &&
                                     (gone || now_ns > s.info.close_ns + kLastAckGraceNs);
            // Half-open and one-way flows idle out sooner (--unassured-timeout).
            const std::uint64_t limit =
                (s.info.flags & TT_F_ASSURED) ? idle_limit_ns : unassured_limit_ns;
            const bool reap = (s.info.flags & TT_F_REAP) || stale_close;
            const bool idle = !reap && (now_ns - s.last_active_ns >= limit || gone);
            // Shown a last time: with the health the map holds now.
            if ((reap || idle) && !health_read) refresh_health(s, h, v, now_ns);
            if (reap)
                to_reap.push_back(s.ref);
            else if (idle)
                idle_.push_back(s.ref);
        }
    }

    recheck_cache();
    gone_ifindexes_.clear();

    // Finished flows the datapath could not hand over (ring full, or the last
    // ACK never came): final here, if this ends them. A CPU finishing the same
    // flow right now ends it instead and reports it through the ring: each
    // generation is ended, reported and recycled once. Finished ones it is
    // handing over (DONE without REAP) are left to their close event.
    std::vector<SlotRef> ended;
    evict(to_reap, &ended);
    for (const SlotRef& r : ended) {
        const std::uint32_t p = live_pos(r);
        if (p == kNone) continue;
        FlowSample s = samples_[p];
        s.finished = true;
        closed_.push_back(s);
        remove_live(p);
    }

    for (const std::uint32_t slot : moved)
        if (slot < pos_.size() && pos_[slot] != kNone) changed_.push_back(pos_[slot]);
}

const std::vector<FlowSample>& Collector::collect(std::uint64_t now_ns, std::uint64_t idle_limit_ns,
                                                  std::uint64_t unassured_limit_ns) {
    collected_ = true;
    samples_.resize(live_);  // last report's finished flows were shown once
    changed_.clear();
    idle_.clear();
    closed_.clear();
    recycle();
    take_events(now_ns);
    scan(now_ns, idle_limit_ns, std::min(idle_limit_ns, unassured_limit_ns));
    assured_ = 0;
    for (std::size_t i = 0; i < live_; ++i)
        assured_ += (samples_[i].info.flags & TT_F_ASSURED) ? 1 : 0;
    for (FlowSample& s : closed_) {
        changed_.push_back(static_cast<std::uint32_t>(samples_.size()));
        samples_.push_back(s);
    }
    last_now_ = now_ns;
    return samples_;
}

void Collector::end_interfaces(const std::vector<std::uint32_t>& ifindexes) {
    gone_ifindexes_.insert(gone_ifindexes_.end(), ifindexes.begin(), ifindexes.end());
}

bool Collector::on_gone_interface(std::uint32_t ifindex) const {
    return !gone_ifindexes_.empty() && std::find(gone_ifindexes_.begin(), gone_ifindexes_.end(),
                                                 ifindex) != gone_ifindexes_.end();
}

std::size_t Collector::forget(const std::vector<SlotRef>& flows) { return evict(flows, nullptr); }

std::size_t Collector::evict(const std::vector<SlotRef>& flows, std::vector<SlotRef>* ended) {
    std::size_t count = 0;
    for (std::size_t at = 0; at < flows.size(); at += TT_EVICT_BATCH) {
        tt_evict_req req{};
        req.n =
            static_cast<std::uint32_t>(std::min<std::size_t>(TT_EVICT_BATCH, flows.size() - at));
        for (std::uint32_t i = 0; i < req.n; ++i) {
            req.e[i].slot = flows[at + i].slot;
            req.e[i].gen = flows[at + i].gen;
        }
        const std::uint32_t zero = 0;
        if (bpf_map_update_elem(evict_fd_, &zero, &req, BPF_ANY) != 0)
            throw Error(fmt::format("cannot end flows: {}", errno_hint(errno)));
        std::uint8_t frame[64] = {};  // the program reads its request, not the frame
        LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = sizeof(frame),
                    .repeat = 1);
        if (bpf_prog_test_run_opts(evict_prog_fd_, &opts) != 0)
            throw Error(fmt::format("cannot end flows: {}", errno_hint(errno)));
        if (bpf_map_lookup_elem(evict_fd_, &zero, &req) != 0)
            throw Error(fmt::format("cannot end flows: {}", errno_hint(errno)));
        // Only the slots it ended are ours to recycle (a new SYN or the
        // datapath's own close may have taken one first).
        for (std::uint32_t i = 0; i < req.n; ++i) {
            if (!(req.done & (1ull << i))) continue;
            dying_.push_back(req.e[i].slot);
            if (ended) ended->push_back(flows[at + i]);
            ++count;
        }
    }
    return count;
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
    st.close_lost = sum(TT_STAT_CLOSE_LOST);
    st.displaced = sum(TT_STAT_DISPLACED);
    st.untracked_full = sum(TT_STAT_UNTRACKED_FULL);
    st.untracked_buckets = sum(TT_STAT_UNTRACKED_BUCKETS);
    return st;
}

}  // namespace tcptrack
