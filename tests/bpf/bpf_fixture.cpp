// SPDX-License-Identifier: MIT
#include "bpf_fixture.hpp"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <map>
#include <memory>

#include "tcptrack/abi.h"
#include "tcptrack/filter_vm.h"  // before the skeleton: its .bss holds struct tt_filter
#include "tcptrack/store.h"      // before the skeleton: its .rodata holds struct tt_hash_key
#include "tcptrack.skel.h"
#include "datapath/features.hpp"
#include "sys/error.hpp"

namespace tt_test {

// --- Expectations ------------------------------------------------------------

void PrintTo(const Totals& t, std::ostream* os) {
    *os << "{bytes " << t.bytes[0] << "/" << t.bytes[1] << ", packets " << t.packets[0] << "/"
        << t.packets[1] << ", payload " << t.payload[0] << "/" << t.payload[1] << "}";
}

Totals totals_of(const tt_close_event& ev) {
    Totals t;
    std::memcpy(t.bytes, ev.bytes, sizeof(t.bytes));
    std::memcpy(t.packets, ev.packets, sizeof(t.packets));
    std::memcpy(t.payload, ev.payload, sizeof(t.payload));
    return t;
}

Totals totals_of(const tcptrack::FlowSample& s) {
    Totals t;
    std::memcpy(t.bytes, s.bytes, sizeof(t.bytes));
    std::memcpy(t.packets, s.packets, sizeof(t.packets));
    std::memcpy(t.payload, s.payload, sizeof(t.payload));
    return t;
}

Totals totals_of(const tt_slot& s) {
    Totals t;
    std::memcpy(t.bytes, s.bytes, sizeof(t.bytes));
    std::memcpy(t.packets, s.packets, sizeof(t.packets));
    std::memcpy(t.payload, s.payload, sizeof(t.payload));
    return t;
}

tt_flow_key make_key(bool v6, const Endpoint& src, const Endpoint& dst, int* dir) {
    tt_flow_key k{};
    const int af = v6 ? AF_INET6 : AF_INET;
    EXPECT_EQ(inet_pton(af, src.addr.c_str(), k.addr_a), 1);
    EXPECT_EQ(inet_pton(af, dst.addr.c_str(), k.addr_b), 1);
    k.port_a = htons(src.port);
    k.port_b = htons(dst.port);
    k.ifindex = kLoopback;
    k.family = v6 ? TT_FAMILY_INET6 : TT_FAMILY_INET;
    const int d = tt_key_normalise(&k);
    if (dir) *dir = d;
    return k;
}

Conn::Conn(bool v6_, Endpoint c, Endpoint s) : v6(v6_), client(std::move(c)), server(std::move(s)) {
    key = make_key(v6, client, server, &cdir);
}

Packet Conn::segment(bool from_client, std::uint8_t flags, std::size_t payload,
                     std::optional<std::uint32_t> ack) {
    const Endpoint& src = from_client ? client : server;
    const Endpoint& dst = from_client ? server : client;
    std::uint32_t& seq = from_client ? cseq : sseq;
    const std::uint32_t peer_next = from_client ? sseq : cseq;
    PacketBuilder b;
    for (auto [tpid, vid] : tags) b.vlan(tpid, vid);
    if (v6)
        b.ipv6(src.addr, dst.addr);
    else
        b.ipv4(src.addr, dst.addr);
    b.tcp(src.port, dst.port, seq, (flags & kAck) ? ack.value_or(peer_next) : 0, flags)
        .payload(payload)
        .window(window);
    if (!options.empty()) b.tcp_option_bytes(options);
    Packet p = b.build();
    seq += payload + ((flags & kSyn) ? 1 : 0) + ((flags & kFin) ? 1 : 0);
    expect.add(from_client ? cdir : cdir ^ 1, p);
    return p;
}

PacketBuilder data4() {
    PacketBuilder b;
    b.ipv4("192.0.2.1", "192.0.2.2").tcp(1234, 80, 1, 1, kAck | kPsh).payload(100);
    return b;
}

PacketBuilder data6() {
    PacketBuilder b;
    b.ipv6("2001:db8::1", "2001:db8::2").tcp(1234, 80, 1, 1, kAck | kPsh).payload(100);
    return b;
}

tt_flow_key key4(int* dir) { return make_key(false, {"192.0.2.1", 1234}, {"192.0.2.2", 80}, dir); }

tt_flow_key key6(int* dir) {
    return make_key(true, {"2001:db8::1", 1234}, {"2001:db8::2", 80}, dir);
}

namespace {
std::optional<ShortIpRefusal> g_short_ip;  // measured by BpfTest::load
}  // namespace

ShortIpRefusal short_ip_refused() {
    EXPECT_TRUE(g_short_ip.has_value()) << "measured when the first skeleton loads";
    return g_short_ip.value_or(ShortIpRefusal{});
}

bool kernel_refuses(const std::vector<std::uint8_t>& f) {
    if (f.size() < 14) return true;
    const std::uint16_t type = f[12] << 8 | f[13];
    const ShortIpRefusal r = short_ip_refused();
    return (type == 0x0800 && f.size() < 14 + 20 && r.v4) ||
           (type == 0x86dd && f.size() < 14 + 40 && r.v6);
}

std::string hex(const std::vector<std::uint8_t>& v) {
    std::string s;
    char b[4];
    for (auto x : v) {
        std::snprintf(b, sizeof(b), "%02x", x);
        s += b;
    }
    return s;
}

// --- CPU pinning -------------------------------------------------------------

CpuPin::CpuPin() {
    CPU_ZERO(&saved_);
    saved_ok_ = sched_getaffinity(0, sizeof(saved_), &saved_) == 0;
}

CpuPin::~CpuPin() {
    if (saved_ok_) sched_setaffinity(0, sizeof(saved_), &saved_);
}

bool CpuPin::allowed(std::initializer_list<int> cpus) const {
    if (!saved_ok_) return false;
    for (int cpu : cpus)
        if (!CPU_ISSET(cpu, &saved_)) return false;
    return true;
}

bool CpuPin::to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set) == 0;
}

// --- Skeleton cache ----------------------------------------------------------

namespace {

// Loading costs 0.2-0.6 s per skeleton here (the verifier) and many times that
// in the kernel-matrix guests (QEMU without KVM), against a few ms for a test
// body. So each --max-flows is loaded once per process and reset before every
// test to the state of a fresh load (BpfTest::reset, which checks it).
struct Loaded {
    std::unique_ptr<tcptrack::Skeleton> skel;
    std::string error;         // the load failed: every test on this size fails with it
    void* slots = MAP_FAILED;  // the `slots` array, mapped read-write (writes: reset only)
    std::size_t slots_len = 0;
    void* cache = MAP_FAILED;  // the per-CPU counter cache, mapped read-write (writes: reset only)
    std::size_t cache_len = 0;

    Loaded() = default;
    Loaded(const Loaded&) = delete;
    Loaded& operator=(const Loaded&) = delete;
    ~Loaded() {
        if (slots != MAP_FAILED) munmap(slots, slots_len);
        if (cache != MAP_FAILED) munmap(cache, cache_len);
    }
};

using HashKey = std::optional<std::array<std::uint8_t, 16>>;

// One load per (max_flows, fixed hash key, health, RTT rate limit, its clock, cache CPUs);
// random keys are drawn once per size.
Loaded& loaded(std::uint32_t max_flows, const HashKey& key, bool health, std::uint32_t rtt_gap_us,
               bool coarse_clock, std::uint32_t cache_cpus) {
    static std::map<std::tuple<std::uint32_t, HashKey, bool, std::uint32_t, bool, std::uint32_t>,
                    Loaded>
        cache;
    Loaded& l = cache[{max_flows, key, health, rtt_gap_us, coarse_clock, cache_cpus}];
    if (!l.skel && l.error.empty()) {
        try {
            const tcptrack::LoadConfig cfg{.max_flows = max_flows,
                                           .tcx = false,
                                           .health = health,
                                           .rtt_gap_us = rtt_gap_us,
                                           .coarse_clock = coarse_clock,
                                           .hash_key = key,
                                           .cache_cpus = cache_cpus};
            l.skel = std::make_unique<tcptrack::Skeleton>(cfg);
            const long page = sysconf(_SC_PAGESIZE);
            const bpf_map* m = (*l.skel)->maps.slots;
            l.slots_len =
                (std::size_t{bpf_map__max_entries(m)} * sizeof(tt_slot) + page - 1) / page * page;
            l.slots =
                mmap(nullptr, l.slots_len, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(m), 0);
            if (l.slots == MAP_FAILED)
                l.error = std::string("cannot mmap the slots map: ") + std::strerror(errno);
            const bpf_map* c = (*l.skel)->maps.flow_cache;
            l.cache_len =
                (std::size_t{bpf_map__max_entries(c)} * sizeof(tt_cache_entry) + page - 1) / page *
                page;
            l.cache =
                mmap(nullptr, l.cache_len, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(c), 0);
            if (l.cache == MAP_FAILED)
                l.error = std::string("cannot mmap the flow cache: ") + std::strerror(errno);
        } catch (const std::exception& e) {
            l.error = e.what();
        }
    }
    return l;
}

// Zeroes every CPU's value of every entry of a per-CPU array.
void zero_percpu_array(const bpf_map* m) {
    const std::size_t stride = (bpf_map__value_size(m) + 7) & ~std::size_t{7};
    const std::vector<std::uint8_t> zero(stride * libbpf_num_possible_cpus(), 0);
    for (std::uint32_t i = 0; i < bpf_map__max_entries(m); ++i)
        EXPECT_EQ(bpf_map_update_elem(bpf_map__fd(m), &i, zero.data(), BPF_ANY), 0)
            << bpf_map__name(m) << "[" << i << "]: " << std::strerror(errno);
}

// Zeroes every entry of a plain array: one batched update (5.6+), else one by one.
void zero_array(const bpf_map* m) {
    const std::uint32_t n = bpf_map__max_entries(m);
    std::vector<std::uint32_t> keys(n);
    for (std::uint32_t i = 0; i < n; ++i) keys[i] = i;
    const std::vector<std::uint8_t> zero(std::size_t{n} * bpf_map__value_size(m), 0);
    std::uint32_t count = n;
    if (bpf_map_update_batch(bpf_map__fd(m), keys.data(), zero.data(), &count, nullptr) == 0 &&
        count == n)
        return;
    for (std::uint32_t i = 0; i < n; ++i)
        EXPECT_EQ(bpf_map_update_elem(bpf_map__fd(m), &i, zero.data(), BPF_ANY), 0)
            << bpf_map__name(m) << "[" << i << "]: " << std::strerror(errno);
}

}  // namespace

// --- The fixture -------------------------------------------------------------

void BpfTest::SetUp() {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs";
    const tcptrack::Features& f = tcptrack::probe_features();
    if (const std::string b = f.blocker(); !b.empty()) FAIL() << b;
    load(65536);
}

void BpfTest::TearDown() {
    if (ring_) ring_buffer__free(ring_);
    ring_ = nullptr;
    skel_ = nullptr;  // stays loaded for the next test of this size
    slots_ = nullptr;
    cache_ = nullptr;
}

void BpfTest::load(std::uint32_t max_flows, std::optional<std::array<std::uint8_t, 16>> key,
                   bool health, std::uint32_t rtt_gap_us, bool coarse_clock,
                   std::uint32_t cache_cpus) {
    if (ring_) ring_buffer__free(ring_);
    ring_ = nullptr;
    skel_ = nullptr;
    slots_ = nullptr;
    Loaded& l = loaded(max_flows, key, health, rtt_gap_us, coarse_clock, cache_cpus);
    if (!l.error.empty()) FAIL() << l.error;
    skel_ = l.skel.get();
    slots_ = static_cast<tt_slot*>(l.slots);
    cache_ = static_cast<tt_cache_entry*>(l.cache);
    if (!g_short_ip) {
        // One byte short of the fixed IP header: refused (EINVAL), or run.
        auto refused = [&](const Packet& p, std::size_t n) {
            const std::vector<std::uint8_t> cut(p.data.begin(), p.data.begin() + n);
            const int ret = run(skel_->programs(true).ingress, cut);
            return ret == INT_MIN && run_errno_ == EINVAL;
        };
        g_short_ip = ShortIpRefusal{refused(data4().build(), 14 + 20 - 1),
                                    refused(data6().build(), 14 + 40 - 1)};
    }
    ring_ = ring_buffer__new(bpf_map__fd((*skel_)->maps.closed_events), &BpfTest::on_event,
                             &events_, nullptr);
    ASSERT_NE(ring_, nullptr) << std::strerror(errno);
    reset();
}

// Back to the state of a fresh load: every slot zero (gen 0: never used), an
// empty index, free queue, ring and stats, and next_fresh 0.
void BpfTest::reset() {
    ASSERT_GE(ring_buffer__consume(ring_), 0);
    events_.clear();
    const auto& maps = (*skel_)->maps;

    // Slots the kernel may have written: the ones handed out, and any a test
    // pushed to the free queue.
    std::uint32_t used = next_fresh();
    std::uint32_t idx;
    const int free_fd = bpf_map__fd(maps.free_slots);
    while (bpf_map_lookup_and_delete_elem(free_fd, nullptr, &idx) == 0)
        used = std::max(used, idx + 1);
    ASSERT_EQ(errno, ENOENT) << "draining free_slots: " << std::strerror(errno);
    used = std::min(used, skel_->geometry().slots);
    std::memset(slots_, 0, std::size_t{used} * sizeof(tt_slot));
    std::memset(cache_, 0, skel_->cache_entries() * sizeof(tt_cache_entry));

    zero_array(maps.flow_index);
    const std::uint32_t zero = 0;
    tt_store_lock sl{};
    ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(maps.store_lock), &zero, &sl, BPF_F_LOCK), 0)
        << "store_lock: " << std::strerror(errno);
    tt_evict_req req{};
    ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(maps.evict_req), &zero, &req, BPF_ANY), 0);
    for (const bpf_map* m : {maps.stats, maps.close_scratch}) zero_percpu_array(m);
    skel_->set_filter(tt_filter{});  // no filter, as loaded

    ASSERT_EQ(next_fresh(), 0u);
    ASSERT_TRUE(live_slots().empty());
    for (std::uint32_t i = 0; i < TT_STAT_COUNT; ++i) ASSERT_EQ(stat(i), 0u) << "stat " << i;
}

int BpfTest::on_event(void* ctx, void* data, std::size_t size) {
    EXPECT_EQ(size, sizeof(tt_close_event));
    if (size >= sizeof(tt_close_event))
        static_cast<std::vector<tt_close_event>*>(ctx)->push_back(
            *static_cast<const tt_close_event*>(data));
    return 0;
}

int BpfTest::run(bpf_program* prog, const std::vector<std::uint8_t>& frame,
                 std::uint32_t gso_segs) {
    __sk_buff ctx{};
    ctx.gso_segs = gso_segs;
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(),
                .data_size_in = static_cast<std::uint32_t>(frame.size()), .ctx_in = &ctx,
                .ctx_size_in = sizeof(ctx));
    if (bpf_prog_test_run_opts(bpf_program__fd(prog), &opts) != 0) {
        run_errno_ = errno;
        return INT_MIN;
    }
    return static_cast<int>(opts.retval);
}

void BpfTest::ingress(const Packet& p, std::uint32_t gso_segs) {
    EXPECT_EQ(run(skel_->programs(true).ingress, p.data, gso_segs), kTcNext)
        << "ingress run failed: " << std::strerror(run_errno_);
}

void BpfTest::egress(const Packet& p, std::uint32_t gso_segs) {
    EXPECT_EQ(run(skel_->programs(true).egress, p.data, gso_segs), kTcNext)
        << "egress run failed: " << std::strerror(run_errno_);
}

std::uint32_t BpfTest::next_fresh() {
    tt_store_lock l{};
    const std::uint32_t zero = 0;
    EXPECT_EQ(
        bpf_map_lookup_elem_flags(bpf_map__fd((*skel_)->maps.store_lock), &zero, &l, BPF_F_LOCK), 0)
        << std::strerror(errno);
    EXPECT_LE(l.next_fresh, skel_->geometry().slots);
    return std::min(l.next_fresh, skel_->geometry().slots);
}

tt_cache_entry& BpfTest::cache_entry(std::uint32_t cpu, const tt_flow_key& key, std::uint32_t way) {
    const tt_hash_key hk = hash_key();
    const std::uint32_t at =
        tt_cache_index(tt_cache_hash(&key, &hk), skel_->geometry().cache_set_bits);
    return cache_[std::size_t{cpu} * skel_->geometry().cache_entries_per_cpu() + at +
                  (way & (TT_CACHE_WAYS - 1))];
}

// The slot with the counts CPUs still cache for it added (tcptrack/store.h:
// TT_ADD_COUNTS), as user space sees a flow: a flow's counts, wherever they sit.
tt_slot BpfTest::slot(std::uint32_t idx) {
    tt_slot s{};
    EXPECT_LT(idx, skel_->geometry().slots);
    if (idx >= skel_->geometry().slots) return s;
    std::memcpy(&s, &slots_[idx], sizeof(s));
    if (!tt_gen_live(s.gen)) return s;
    for (std::uint32_t cpu = 0; cpu < skel_->cache_cpus(); ++cpu) {
        for (std::uint32_t way = 0; way < TT_CACHE_WAYS; ++way) {
            const tt_cache_entry& e = cache_entry(cpu, s.key, way);
            if (e.slot != idx || e.gen != s.gen) continue;
            TT_ADD_COUNTS(&s, &e);
            s.reached[0] |= e.reached[0];
            s.reached[1] |= e.reached[1];
        }
    }
    return s;
}

std::vector<LiveSlot> BpfTest::live_slots() {
    std::vector<LiveSlot> out;
    const std::uint32_t used = next_fresh();
    for (std::uint32_t i = 0; i < used; ++i)
        if (tt_gen_live(slots_[i].gen)) out.push_back({i, slot(i)});
    return out;
}

std::optional<LiveSlot> BpfTest::live_slot(const tt_flow_key& key) {
    std::optional<LiveSlot> found;
    for (const LiveSlot& l : live_slots()) {
        if (!(l.s.key == key)) continue;
        EXPECT_FALSE(found) << "two live slots for " << ::testing::PrintToString(key);
        found = l;
    }
    return found;
}

std::vector<std::pair<tt_flow_key, Totals>> BpfTest::flows() {
    std::vector<std::pair<tt_flow_key, Totals>> out;
    for (const LiveSlot& l : live_slots()) out.emplace_back(l.s.key, totals_of(l.s));
    return out;
}

std::vector<std::pair<tt_flow_key, tt_flow_info>> BpfTest::states() {
    std::vector<std::pair<tt_flow_key, tt_flow_info>> out;
    for (const LiveSlot& l : live_slots()) out.emplace_back(l.s.key, l.s.info);
    return out;
}

tt_hash_key BpfTest::hash_key() const {
    tt_hash_key k{};
    std::memcpy(&k.k0, skel_->hash_key().data(), 8);
    std::memcpy(&k.k1, skel_->hash_key().data() + 8, 8);
    return k;
}

tt_index_bucket BpfTest::bucket(std::uint32_t idx) {
    tt_index_bucket b{};
    EXPECT_EQ(bpf_map_lookup_elem(bpf_map__fd((*skel_)->maps.flow_index), &idx, &b), 0)
        << "bucket " << idx << ": " << std::strerror(errno);
    return b;
}

int BpfTest::index_entries(const tt_flow_key& key, std::uint32_t slot) {
    const tt_hash_key hk = hash_key();
    const std::uint32_t h = tt_index_hash(&key, &hk), mask = skel_->geometry().index_buckets - 1;
    const std::uint32_t b1 = tt_bucket1(h, mask), b2 = tt_bucket2(h, mask);
    int n = 0;
    for (std::uint32_t e : bucket(b1).ent)
        if (e == tt_index_entry(h, slot)) ++n;
    if (b2 != b1)
        for (std::uint32_t e : bucket(b2).ent)
            if (e == tt_index_entry(h, slot)) ++n;
    return n;
}

std::vector<tt_close_event> BpfTest::drain_events() {
    EXPECT_GE(ring_buffer__consume(ring_), 0);
    return std::exchange(events_, {});
}

std::uint64_t BpfTest::stat(std::uint32_t idx) {
    std::vector<std::uint64_t> v(skel_->nr_cpus());
    EXPECT_EQ(bpf_map_lookup_elem(bpf_map__fd((*skel_)->maps.stats), &idx, v.data()), 0);
    std::uint64_t sum = 0;
    for (auto x : v) sum += x;
    return sum;
}

void BpfTest::clear_maps() { reset(); }

tt_health BpfTest::health(std::uint32_t slot) {
    tt_health h{};
    EXPECT_EQ(bpf_map_lookup_elem(bpf_map__fd((*skel_)->maps.health), &slot, &h), 0)
        << "health of slot " << slot << ": " << std::strerror(errno);
    return h;
}

tt_flow_info BpfTest::expect_single(const tt_flow_key& key, const Totals& want, std::uint8_t state,
                                    const std::string& step) {
    SCOPED_TRACE(step);
    const auto live = live_slots();
    EXPECT_EQ(live.size(), 1u);
    if (live.size() != 1) return {};
    const tt_slot& s = live[0].s;
    EXPECT_EQ(s.key, key);
    EXPECT_EQ(totals_of(s), want);
    EXPECT_EQ(int(s.info.state), int(state));
    // Found by the datapath through exactly one index entry.
    EXPECT_EQ(index_entries(key, live[0].slot), 1);
    return s.info;
}

void BpfTest::expect_empty(const std::string& step) {
    SCOPED_TRACE(step);
    EXPECT_TRUE(live_slots().empty());
}

void BpfTest::expect_counted(const Packet& p, const tt_flow_key& key, int dir,
                             const std::string& what, std::uint32_t gso_segs) {
    clear_maps();
    egress(p, gso_segs);
    Totals want;
    want.add(dir, p, gso_segs ? gso_segs : 1);
    expect_single(key, want, TT_ESTABLISHED, what);
}

void BpfTest::expect_ignored(const Packet& p, const std::string& what) {
    clear_maps();
    egress(p);
    ingress(p);
    expect_empty(what);
    EXPECT_EQ(next_fresh(), 0u) << what << ": took a slot";
}

void BpfTest::establish(Conn& c) {
    egress(c.c2s(kSyn));
    ingress(c.s2c(kSyn | kAck));
    egress(c.c2s(kAck));
    egress(c.c2s(kAck | kPsh, 10));
    ingress(c.s2c(kAck | kPsh, 20));
    expect_single(c.key, c.expect, TT_ESTABLISHED, "established");
}

}  // namespace tt_test
