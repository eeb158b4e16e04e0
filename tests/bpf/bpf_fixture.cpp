// SPDX-License-Identifier: MIT
#include "bpf_fixture.hpp"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <map>
#include <memory>
#include <tuple>

#include "tcptrack.skel.h"
#include "tcptrack/error.hpp"

namespace tt_test {

using tcptrack::Datapath;
using tcptrack::FeatureId;
using tcptrack::Reader;

static_assert(sizeof(tt_counters) % 8 == 0, "per-CPU copies are 8-byte aligned: no gaps");
static_assert(sizeof(tt_flow_memo) % 8 == 0, "per-CPU copies are 8-byte aligned: no gaps");

// --- Paths -------------------------------------------------------------------

namespace {

const char* datapath_id(Datapath d) { return d == Datapath::PerCpu ? "PerCpu" : "Shared"; }

const char* reader_id(Reader r) {
    switch (r) {
        case Reader::Iterator: return "Iterator";
        case Reader::Batch: return "Batch";
        case Reader::Keys: return "Keys";
    }
    return "?";
}

constexpr Datapath kDatapaths[] = {Datapath::PerCpu, Datapath::Shared};
constexpr Reader kReaders[] = {Reader::Iterator, Reader::Batch, Reader::Keys};

// What a path needs beyond the floor, and why this kernel says no ("" if it can).
std::string refusal(FeatureId id, const tcptrack::Features& f) {
    if (f.has(id)) return "";
    const tcptrack::FeatureSpec& s = tcptrack::feature_spec(id);
    return std::string("kernel lacks ") + s.what + " [" + s.name + "]: " + f[id].why;
}

}  // namespace

void PrintTo(const Path& p, std::ostream* os) {
    *os << (p.datapath ? tcptrack::datapath_name(*p.datapath) : "preferred") << " datapath";
    if (p.reader) *os << ", " << tcptrack::reader_name(*p.reader) << " reader";
}

std::string path_name(const ::testing::TestParamInfo<Path>& info) {
    std::string s = info.param.datapath ? datapath_id(*info.param.datapath) : "Preferred";
    if (info.param.reader) s = s + "_" + reader_id(*info.param.reader);
    return s;
}

std::vector<Path> datapath_paths() {
    std::vector<Path> out;
    for (Datapath d : kDatapaths) out.push_back({d, std::nullopt});
    return out;
}

std::vector<Path> reader_paths() {
    std::vector<Path> out;
    for (Datapath d : kDatapaths)
        for (Reader r : kReaders) out.push_back({d, r});
    return out;
}

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
        .payload(payload);
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
// body. So each configuration is loaded once per process and reset before
// every test to the state of a fresh load (BpfTest::reset, which checks it).
struct Loaded {
    std::unique_ptr<tcptrack::Skeleton> skel;
    std::string error;  // the load failed: every test on this configuration fails with it
    // Iterator paths: whether the iterator attaches to `flows`, checked once.
    std::optional<bool> iter_attaches;
};

Loaded& loaded(const tcptrack::LoadConfig& cfg) {
    static std::map<std::tuple<int, bool, std::uint32_t>, Loaded> cache;
    Loaded& l = cache[{static_cast<int>(cfg.datapath), cfg.iterator, cfg.max_flows}];
    if (!l.skel && l.error.empty()) {
        try {
            l.skel = std::make_unique<tcptrack::Skeleton>(cfg);
        } catch (const std::exception& e) {
            l.error = e.what();
        }
    }
    return l;
}

// Every key of a map, whatever its key size.
std::vector<std::vector<std::uint8_t>> raw_keys(const bpf_map* m) {
    const int fd = bpf_map__fd(m);
    const std::size_t size = bpf_map__key_size(m);
    std::vector<std::vector<std::uint8_t>> out;
    std::vector<std::uint8_t> cur(size), next(size);
    bool has = false;
    while (bpf_map_get_next_key(fd, has ? cur.data() : nullptr, next.data()) == 0) {
        out.push_back(next);
        cur = next;
        has = true;
    }
    return out;
}

// Zeroes every CPU's value of every slot of a per-CPU array.
void zero_percpu_array(const bpf_map* m) {
    const std::size_t stride = (bpf_map__value_size(m) + 7) & ~std::size_t{7};
    const std::vector<std::uint8_t> zero(stride * libbpf_num_possible_cpus(), 0);
    for (std::uint32_t i = 0; i < bpf_map__max_entries(m); ++i)
        EXPECT_EQ(bpf_map_update_elem(bpf_map__fd(m), &i, zero.data(), BPF_ANY), 0)
            << bpf_map__name(m) << "[" << i << "]: " << std::strerror(errno);
}

}  // namespace

// --- The fixture -------------------------------------------------------------

void BpfTest::SetUp() {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs";
    const tcptrack::Features& f = tcptrack::probe_features();
    if (const std::string b = f.blocker(); !b.empty()) FAIL() << b;
    const Path& p = GetParam();
    datapath_ = p.datapath.value_or(f.datapath());
    std::string why;
    if (datapath_ == Datapath::PerCpu) why = refusal(FeatureId::PercpuLookup, f);
    if (why.empty() && p.reader == Reader::Iterator) why = refusal(FeatureId::Iterator, f);
    if (why.empty() && p.reader == Reader::Batch) why = refusal(FeatureId::Batch, f);
    if (!why.empty()) GTEST_SKIP() << why;
    load(65536);
}

void BpfTest::TearDown() {
    if (ring_) ring_buffer__free(ring_);
    ring_ = nullptr;
    skel_ = nullptr;  // stays loaded for the next test on this path
}

void BpfTest::load(std::uint32_t max_flows) {
    if (ring_) ring_buffer__free(ring_);
    ring_ = nullptr;
    skel_ = nullptr;
    const bool iter = GetParam().reader == Reader::Iterator;
    Loaded& l = loaded({.max_flows = max_flows, .tcx = false, .datapath = datapath_,
                        .iterator = iter});
    if (!l.error.empty()) FAIL() << l.error;
    skel_ = l.skel.get();
    if (iter && !l.iter_attaches) {
        // The program loaded, but some kernels refuse to attach it to a map:
        // the collector then falls back to batched reads, which is not this path.
        tcptrack::Collector probe(*skel_, Reader::Iterator);
        l.iter_attaches = probe.reader() == Reader::Iterator;
    }
    if (iter && !*l.iter_attaches)
        GTEST_SKIP() << "kernel lacks " << tcptrack::feature_spec(FeatureId::Iterator).what
                     << " [iter]: the iterator program loaded but does not attach to flows";
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

// Back to the state of a fresh load: empty maps, ring and stats, void memos.
void BpfTest::reset() {
    ASSERT_GE(ring_buffer__consume(ring_), 0);
    events_.clear();
    const auto& maps = (*skel_)->maps;
    for (const bpf_map* m : {maps.flows, maps.flow_states, maps.parked_closes}) {
        for (const auto& k : raw_keys(m)) bpf_map_delete_elem(bpf_map__fd(m), k.data());
        ASSERT_TRUE(raw_keys(m).empty()) << bpf_map__name(m) << " not emptied";
    }
    for (const bpf_map* m : {maps.stats, maps.flow_memo, maps.close_scratch})
        zero_percpu_array(m);
    (*skel_)->bss->tt_epoch = 0;
    for (std::uint32_t i = 0; i < TT_STAT_COUNT; ++i) ASSERT_EQ(stat(i), 0u) << "stat " << i;
}

tcptrack::Reader BpfTest::reader() const {
    if (!GetParam().reader) {
        ADD_FAILURE() << "this test reads through the Collector: instantiate it with reader paths";
        return Reader::Keys;
    }
    return *GetParam().reader;
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

int BpfTest::flows_fd() const { return bpf_map__fd((*skel_)->maps.flows); }

int BpfTest::states_fd() const { return bpf_map__fd((*skel_)->maps.flow_states); }

std::vector<tt_flow_key> BpfTest::keys(int fd) {
    std::vector<tt_flow_key> out;
    tt_flow_key cur{}, next{};
    bool has = false;
    while (bpf_map_get_next_key(fd, has ? &cur : nullptr, &next) == 0) {
        out.push_back(next);
        cur = next;
        has = true;
    }
    return out;
}

// A dirty memo counts only into the connection generation it was filled from
// (flow.h: tt_same_bases), as the collector and the datapath itself add it.
bool BpfTest::memo_is_current(const tt_flow_memo& m) {
    tt_flow_state st{};
    if (bpf_map_lookup_elem(states_fd(), &m.key, &st) != 0) return true;  // no lifecycle to tell
    return tt_same_bases(m.cnt.base_mask, m.cnt.base, st.info.base_mask, st.info.base);
}

std::vector<std::pair<tt_flow_key, Totals>> BpfTest::flows() {
    // One tt_counters per CPU (per-CPU datapath) or one shared copy.
    std::vector<tt_counters> copies(skel_->counter_copies());
    std::vector<std::pair<tt_flow_key, Totals>> out;
    for (const auto& k : keys(flows_fd())) {
        if (bpf_map_lookup_elem(flows_fd(), &k, copies.data()) != 0) continue;
        Totals t;
        for (const auto& c : copies) TT_ADD_COUNTS(&t, &c);
        out.emplace_back(k, t);
    }
    // The last segments of the flow this CPU saw last may sit in its memo
    // (per-CPU datapath; the shared one leaves the memos empty).
    std::vector<tt_flow_memo> memos(skel_->nr_cpus());
    const std::uint32_t zero = 0;
    if (bpf_map_lookup_elem(bpf_map__fd((*skel_)->maps.flow_memo), &zero, memos.data()) == 0)
        for (const auto& m : memos)
            for (auto& [k, t] : out)
                if (m.dirty && k == m.key && memo_is_current(m)) TT_ADD_COUNTS(&t, &m.cnt);
    return out;
}

std::vector<std::pair<tt_flow_key, tt_flow_info>> BpfTest::states() {
    std::vector<std::pair<tt_flow_key, tt_flow_info>> out;
    for (const auto& k : keys(states_fd())) {
        tt_flow_state st{};
        if (bpf_map_lookup_elem_flags(states_fd(), &k, &st, BPF_F_LOCK) == 0)
            out.emplace_back(k, st.info);
    }
    return out;
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

void BpfTest::clear_maps() {
    for (int fd : {flows_fd(), states_fd()})
        for (const auto& k : keys(fd)) bpf_map_delete_elem(fd, &k);
}

tt_flow_info BpfTest::expect_single(const tt_flow_key& key, const Totals& want,
                                    std::uint8_t state, const std::string& step) {
    SCOPED_TRACE(step);
    auto f = flows();
    auto s = states();
    EXPECT_EQ(f.size(), 1u);
    EXPECT_EQ(s.size(), 1u);
    if (f.size() != 1 || s.size() != 1) return {};
    EXPECT_EQ(f[0].first, key);
    EXPECT_EQ(f[0].second, want);
    EXPECT_EQ(s[0].first, key);
    EXPECT_EQ(int(s[0].second.state), int(state));
    return s[0].second;
}

void BpfTest::expect_empty(const std::string& step) {
    SCOPED_TRACE(step);
    EXPECT_TRUE(flows().empty());
    EXPECT_TRUE(states().empty());
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
