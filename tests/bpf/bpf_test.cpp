// SPDX-License-Identifier: MIT
// Datapath tests: handcrafted frames through the real classifiers with
// BPF_PROG_TEST_RUN, then exact checks of the maps, the close-event ring and
// the stats. Each test loads a fresh skeleton, so the maps start empty.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "packet_builder.hpp"
#include "tcptrack.skel.h"
#include "tcptrack/collector.hpp"
#include "tcptrack/flow.h"
#include "tcptrack/skeleton.hpp"

// Global namespace so gtest finds them for the C struct.
inline bool operator==(const tt_flow_key& a, const tt_flow_key& b) {
    return std::memcmp(&a, &b, sizeof(a)) == 0;
}

inline void PrintTo(const tt_flow_key& k, std::ostream* os) {
    char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
    const int af = k.family == TT_FAMILY_INET6 ? AF_INET6 : AF_INET;
    inet_ntop(af, k.addr_a, a, sizeof(a));
    inet_ntop(af, k.addr_b, b, sizeof(b));
    *os << "{" << a << ":" << ntohs(k.port_a) << " <-> " << b << ":" << ntohs(k.port_b)
        << " if " << k.ifindex << " fam " << int(k.family) << "}";
}

namespace {

using namespace tt_test;

constexpr int kTcNext = -1;            // TC_ACT_UNSPEC == TCX_NEXT
constexpr std::uint32_t kLoopback = 1;  // test_run's skb->dev

// Counters summed over CPUs, indexed by normalised direction.
struct Totals {
    std::uint64_t bytes[2]{}, packets[2]{}, payload[2]{};

    void add(int dir, const Packet& p, std::uint32_t segs = 1) {
        bytes[dir] += p.l3_len + (segs - 1) * p.hdr_len;
        packets[dir] += segs;
        payload[dir] += p.payload;
    }
    bool operator==(const Totals&) const = default;
};

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

struct Endpoint {
    std::string addr;
    std::uint16_t port;
};

// The key the datapath should file (src -> dst) under; *dir gets the packet's direction.
tt_flow_key make_key(bool v6, const Endpoint& src, const Endpoint& dst, int* dir = nullptr) {
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

// One TCP connection: builds its segments with running sequence numbers and
// keeps the counters the datapath should have for it.
struct Conn {
    bool v6;
    Endpoint client, server;
    std::uint32_t cseq = 1000, sseq = 900000;
    std::vector<std::pair<std::uint16_t, std::uint16_t>> tags;
    tt_flow_key key{};
    int cdir = 0;  // normalised direction of client -> server
    Totals expect;

    Conn(bool v6_, Endpoint c, Endpoint s) : v6(v6_), client(std::move(c)), server(std::move(s)) {
        key = make_key(v6, client, server, &cdir);
    }
    Packet c2s(std::uint8_t flags, std::size_t payload = 0, std::optional<std::uint32_t> ack = {}) {
        return segment(true, flags, payload, ack);
    }
    Packet s2c(std::uint8_t flags, std::size_t payload = 0, std::optional<std::uint32_t> ack = {}) {
        return segment(false, flags, payload, ack);
    }
    Packet segment(bool from_client, std::uint8_t flags, std::size_t payload,
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
};

// Parser-independent reference for what one packet should do to empty maps:
// a flow under `key`, counted in direction `dir`. Written from the format
// specs and parse.h's documented limits (2 VLAN tags, 6 IPv6 extension headers).
struct RefFlow {
    tt_flow_key key{};
    int dir = 0;
    std::uint32_t l3_len = 0, payload = 0;
    std::uint8_t flags = 0;
};

std::optional<RefFlow> ref_parse(const std::vector<std::uint8_t>& f) {
    const std::size_t n = f.size();
    auto be16 = [&](std::size_t i) { return std::uint16_t(f[i] << 8 | f[i + 1]); };
    if (n < 14) return {};
    std::uint16_t proto = be16(12);
    std::size_t off = 14;
    for (int i = 0; i < 2 && (proto == 0x8100 || proto == 0x88a8); ++i) {
        if (off + 4 > n) return {};
        proto = be16(off + 2);
        off += 4;
    }
    tt_flow_key k{};
    k.ifindex = kLoopback;
    std::size_t l4 = 0, tot = 0;
    const std::size_t avail = n - off;
    if (proto == 0x0800) {
        if (off + 20 > n || f[off] >> 4 != 4 || f[off + 9] != 6) return {};
        const std::size_t ihl = (f[off] & 0xf) * 4;
        if (ihl < 20 || (be16(off + 6) & 0x1fff)) return {};
        tot = be16(off + 2);
        if (tot == 0) tot = avail;  // BIG TCP
        if (tot < ihl || tot > avail) return {};
        std::memcpy(k.addr_a, &f[off + 12], 4);
        std::memcpy(k.addr_b, &f[off + 16], 4);
        k.family = TT_FAMILY_INET;
        l4 = off + ihl;
    } else if (proto == 0x86dd) {
        if (off + 40 > n || f[off] >> 4 != 6) return {};
        tot = be16(off + 4) ? be16(off + 4) + 40u : avail;  // 0: jumbogram
        if (tot > avail) return {};
        std::uint8_t nh = f[off + 6];
        l4 = off + 40;
        for (int i = 0; i < 6 && nh != 6; ++i) {
            if (nh == kHopByHop || nh == kRouting || nh == kDestOpts || nh == kAh) {
                if (l4 + 2 > n) return {};
                const std::size_t len = nh == kAh ? (f[l4 + 1] + 2) * 4 : (f[l4 + 1] + 1) * 8;
                nh = f[l4];
                l4 += len;
            } else if (nh == kFragment) {
                if (l4 + 8 > n || (be16(l4 + 2) & 0xfff8)) return {};
                nh = f[l4];
                l4 += 8;
            } else {
                return {};
            }
            if (l4 - off > tot) return {};
        }
        if (nh != 6) return {};
        std::memcpy(k.addr_a, &f[off + 8], 16);
        std::memcpy(k.addr_b, &f[off + 24], 16);
        k.family = TT_FAMILY_INET6;
    } else {
        return {};
    }
    if (l4 + 20 > n) return {};
    const std::size_t thl = (f[l4 + 12] >> 4) * 4;
    const std::size_t hdr = l4 - off + thl;
    if (thl < 20 || tot < hdr) return {};
    std::memcpy(&k.port_a, &f[l4], 2);
    std::memcpy(&k.port_b, &f[l4 + 2], 2);
    RefFlow r;
    r.dir = tt_key_normalise(&k);
    r.key = k;
    r.l3_len = tot;
    r.payload = tot - hdr;
    r.flags = f[l4 + 13];
    return r;
}

// BPF_PROG_TEST_RUN itself rejects (EINVAL) frames shorter than an Ethernet
// header, and untagged IPv4/IPv6 frames shorter than the fixed IP header:
// such frames never reach the program. Behind a VLAN tag any length does.
bool kernel_refuses(const std::vector<std::uint8_t>& f) {
    if (f.size() < 14) return true;
    const std::uint16_t type = f[12] << 8 | f[13];
    return (type == 0x0800 && f.size() < 14 + 20) || (type == 0x86dd && f.size() < 14 + 40);
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

class BpfTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs";
        load(config(65536));
    }

    void TearDown() override { unload(); }

    void unload() {
        if (ring_) ring_buffer__free(ring_);
        ring_ = nullptr;
        skel_.reset();
    }

    // The datapath this kernel prefers (probed).
    static tcptrack::LoadConfig config(std::uint32_t max_flows) {
        return tcptrack::preferred_load_config(tcptrack::probe_features(), max_flows, false);
    }

    void load(const tcptrack::LoadConfig& cfg) {
        unload();
        skel_ = std::make_unique<tcptrack::Skeleton>(cfg);
        ring_ = ring_buffer__new(bpf_map__fd((*skel_)->maps.closed_events), &BpfTest::on_event,
                                 &events_, nullptr);
        ASSERT_NE(ring_, nullptr);
    }

    static int on_event(void* ctx, void* data, std::size_t size) {
        EXPECT_EQ(size, sizeof(tt_close_event));
        if (size >= sizeof(tt_close_event))
            static_cast<std::vector<tt_close_event>*>(ctx)->push_back(
                *static_cast<const tt_close_event*>(data));
        return 0;
    }

    // Program return code, or INT_MIN with errno saved if the kernel refused the run.
    int run(bpf_program* prog, const std::vector<std::uint8_t>& frame, std::uint32_t gso_segs = 0) {
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

    void ingress(const Packet& p, std::uint32_t gso_segs = 0) {
        EXPECT_EQ(run(skel_->programs(true).ingress, p.data, gso_segs), kTcNext)
            << "ingress run failed: " << std::strerror(run_errno_);
    }
    void egress(const Packet& p, std::uint32_t gso_segs = 0) {
        EXPECT_EQ(run(skel_->programs(true).egress, p.data, gso_segs), kTcNext)
            << "egress run failed: " << std::strerror(run_errno_);
    }

    std::vector<tt_flow_key> keys(int fd) {
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

    int flows_fd() { return bpf_map__fd((*skel_)->maps.flows); }
    int states_fd() { return bpf_map__fd((*skel_)->maps.flow_states); }

    std::vector<std::pair<tt_flow_key, Totals>> flows() {
        const int ncpu = libbpf_num_possible_cpus();
        std::vector<tt_counters> per_cpu(skel_->counter_copies());
        (void)ncpu;
        std::vector<std::pair<tt_flow_key, Totals>> out;
        for (const auto& k : keys(flows_fd())) {
            if (bpf_map_lookup_elem(flows_fd(), &k, per_cpu.data()) != 0) continue;
            Totals t;
            for (const auto& c : per_cpu)
                for (int d = 0; d < 2; ++d) {
                    t.bytes[d] += c.bytes[d];
                    t.packets[d] += c.packets[d];
                    t.payload[d] = std::max<std::uint64_t>(t.payload[d], c.payload[d]);
                }
            out.emplace_back(k, t);
        }
        // The last segments of the flow this CPU saw last may sit in its memo.
        std::vector<tt_flow_memo> memos(ncpu);
        const std::uint32_t zero = 0;
        if (bpf_map_lookup_elem(bpf_map__fd((*skel_)->maps.flow_memo), &zero, memos.data()) == 0)
            for (const auto& m : memos)
                for (auto& [k, t] : out)
                    if (m.dirty && k == m.key)
                        for (int d = 0; d < 2; ++d) {
                            t.bytes[d] += m.cnt.bytes[d];
                            t.packets[d] += m.cnt.packets[d];
                            t.payload[d] = std::max<std::uint64_t>(t.payload[d], m.cnt.payload[d]);
                        }
        return out;
    }

    std::vector<std::pair<tt_flow_key, tt_flow_info>> states() {
        std::vector<std::pair<tt_flow_key, tt_flow_info>> out;
        for (const auto& k : keys(states_fd())) {
            tt_flow_state st{};
            if (bpf_map_lookup_elem_flags(states_fd(), &k, &st, BPF_F_LOCK) == 0)
                out.emplace_back(k, st.info);
        }
        return out;
    }

    std::vector<tt_close_event> drain_events() {
        EXPECT_GE(ring_buffer__consume(ring_), 0);
        return std::exchange(events_, {});
    }

    std::uint64_t stat(std::uint32_t idx) {
        std::vector<std::uint64_t> v(libbpf_num_possible_cpus());
        EXPECT_EQ(bpf_map_lookup_elem(bpf_map__fd((*skel_)->maps.stats), &idx, v.data()), 0);
        std::uint64_t sum = 0;
        for (auto x : v) sum += x;
        return sum;
    }

    void clear_maps() {
        for (int fd : {flows_fd(), states_fd()})
            for (const auto& k : keys(fd)) bpf_map_delete_elem(fd, &k);
    }

    // Exactly one connection in both maps: this key, these counters, this state.
    tt_flow_info expect_single(const tt_flow_key& key, const Totals& want, std::uint8_t state,
                               const std::string& step) {
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

    void expect_empty(const std::string& step) {
        SCOPED_TRACE(step);
        EXPECT_TRUE(flows().empty());
        EXPECT_TRUE(states().empty());
    }

    // A lone data segment on empty maps must create one mid-stream flow with exactly these counters.
    void expect_counted(const Packet& p, const tt_flow_key& key, int dir, const std::string& what,
                        std::uint32_t gso_segs = 0) {
        clear_maps();
        egress(p, gso_segs);
        Totals want;
        want.add(dir, p, gso_segs ? gso_segs : 1);
        expect_single(key, want, TT_ESTABLISHED, what);
    }

    // Must be left alone by both programs, and the run must still return TCX_NEXT.
    void expect_ignored(const Packet& p, const std::string& what) {
        clear_maps();
        egress(p);
        ingress(p);
        expect_empty(what);
    }

    // Full lifecycle with both sides' FINs. local_client: the client's packets
    // go out through egress (SYN egress => TT_F_LOCAL_CLIENT).
    void full_lifecycle(Conn& c, bool local_client) {
        auto from_client = [&](const Packet& p) { local_client ? egress(p) : ingress(p); };
        auto from_server = [&](const Packet& p) { local_client ? ingress(p) : egress(p); };
        const std::uint64_t t0 = tcptrack::monotonic_ns();

        from_client(c.c2s(kSyn));
        expect_single(c.key, c.expect, TT_SYN_SENT, "SYN");
        from_server(c.s2c(kSyn | kAck));
        expect_single(c.key, c.expect, TT_SYN_RECV, "SYN-ACK");
        from_client(c.c2s(kAck));
        expect_single(c.key, c.expect, TT_ESTABLISHED, "ACK");
        from_client(c.c2s(kAck | kPsh, 100));
        from_server(c.s2c(kAck | kPsh, 1400));
        from_server(c.s2c(kAck | kPsh, 33));
        from_client(c.c2s(kAck));
        expect_single(c.key, c.expect, TT_ESTABLISHED, "data");
        from_client(c.c2s(kFin | kAck));
        expect_single(c.key, c.expect, TT_CLOSING, "client FIN");
        from_server(c.s2c(kFin | kAck));
        expect_single(c.key, c.expect, TT_CLOSED, "server FIN-ACK");
        EXPECT_TRUE(drain_events().empty()) << "closed before the last ACK";
        from_client(c.c2s(kAck));
        const std::uint64_t t1 = tcptrack::monotonic_ns();
        expect_empty("final ACK");

        auto ev = drain_events();
        ASSERT_EQ(ev.size(), 1u);
        const tt_close_event& e = ev[0];
        EXPECT_EQ(e.key, c.key);
        EXPECT_EQ(e.reason, TT_CLOSE_FINISHED);
        EXPECT_EQ(totals_of(e), c.expect);
        EXPECT_EQ(e.info.state, TT_CLOSED);
        EXPECT_EQ(e.info.client, c.cdir);
        EXPECT_EQ(e.info.fin_mask, 3);
        EXPECT_EQ(e.info.ack_mask, 3);
        const std::uint8_t want_flags = TT_F_SYN_SEEN | TT_F_HS_SEEN | TT_F_DONE |
                                        (local_client ? TT_F_LOCAL_CLIENT : 0);
        EXPECT_EQ(e.info.flags, want_flags);
        EXPECT_LE(t0, e.info.first_ns);
        EXPECT_EQ(e.info.first_ns, e.info.syn_ns);
        EXPECT_LT(e.info.syn_ns, e.info.synack_ns);
        EXPECT_LT(e.info.synack_ns, e.info.ack_ns);
        EXPECT_LT(e.info.ack_ns, e.info.close_ns);
        EXPECT_LE(e.info.close_ns, t1);
        EXPECT_EQ(e.info.syn_seq, 1000u);
        EXPECT_EQ(stat(TT_STAT_UNTRACKED), 0u);
        EXPECT_EQ(stat(TT_STAT_CLOSE_DROPPED), 0u);
    }

    // Handshake plus a little data each way; leaves c ESTABLISHED.
    void establish(Conn& c) {
        egress(c.c2s(kSyn));
        ingress(c.s2c(kSyn | kAck));
        egress(c.c2s(kAck));
        egress(c.c2s(kAck | kPsh, 10));
        ingress(c.s2c(kAck | kPsh, 20));
        expect_single(c.key, c.expect, TT_ESTABLISHED, "established");
    }

    // Later runs execute on this CPU: test_run uses the caller's CPU for per-CPU values.
    bool pin(int cpu) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        return sched_setaffinity(0, sizeof(set), &set) == 0;
    }

    std::unique_ptr<tcptrack::Skeleton> skel_;
    ring_buffer* ring_ = nullptr;
    std::vector<tt_close_event> events_;
    int run_errno_ = 0;
};

// A data segment from 192.0.2.1:1234 to 192.0.2.2:80, 100 bytes payload.
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

// --- Lifecycle -------------------------------------------------------------

TEST_F(BpfTest, Ipv4LocalClientFullLifecycleOneEntryExactCountersOneCloseEvent) {
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    ASSERT_EQ(c.cdir, TT_DIR_AB);
    full_lifecycle(c, true);
}

TEST_F(BpfTest, Ipv4ServerSideClientSortsSecondFullLifecycle) {
    Conn c(false, {"10.0.0.9", 40000}, {"10.0.0.2", 22});
    ASSERT_EQ(c.cdir, TT_DIR_BA);
    full_lifecycle(c, false);
}

TEST_F(BpfTest, Ipv6ServerSideFullLifecycleLocalClientClearAckNsSet) {
    Conn c(true, {"2001:db8::20", 50000}, {"2001:db8::10", 443});
    ASSERT_EQ(c.cdir, TT_DIR_BA);
    full_lifecycle(c, false);
}

TEST_F(BpfTest, Ipv6LocalClientFullLifecycle) {
    Conn c(true, {"2001:db8::1", 50000}, {"2001:db8::2", 443});
    full_lifecycle(c, true);
}

TEST_F(BpfTest, ProductionCollectorReportsLiveThenFinishedFlow) {
    tcptrack::Collector col(*skel_, tcptrack::probe_features().reader());  // sole ring consumer in this test
    Conn c(false, {"10.1.0.1", 40000}, {"10.1.0.2", 80});
    establish(c);
    auto live = col.collect(tcptrack::monotonic_ns());
    ASSERT_EQ(live.size(), 1u);
    EXPECT_EQ(live[0].key, c.key);
    EXPECT_TRUE(live[0].has_info);
    EXPECT_FALSE(live[0].finished);
    EXPECT_EQ(live[0].info.state, TT_ESTABLISHED);
    Totals got;
    std::memcpy(got.bytes, live[0].bytes, sizeof(got.bytes));
    std::memcpy(got.packets, live[0].packets, sizeof(got.packets));
    std::memcpy(got.payload, live[0].payload, sizeof(got.payload));
    EXPECT_EQ(got, c.expect);

    egress(c.c2s(kFin | kAck));
    ingress(c.s2c(kFin | kAck));
    egress(c.c2s(kAck));
    col.poll(0);
    auto done = col.collect(tcptrack::monotonic_ns());
    ASSERT_EQ(done.size(), 1u);
    EXPECT_TRUE(done[0].finished);
    EXPECT_EQ(done[0].info.state, TT_CLOSED);
    std::memcpy(got.bytes, done[0].bytes, sizeof(got.bytes));
    std::memcpy(got.packets, done[0].packets, sizeof(got.packets));
    std::memcpy(got.payload, done[0].payload, sizeof(got.payload));
    EXPECT_EQ(got, c.expect);
    EXPECT_TRUE(col.collect(tcptrack::monotonic_ns()).empty());
}

// --- What gets counted -------------------------------------------------------

TEST_F(BpfTest, Ipv4OptionsIhl6To15CountedWithBytesEqualTotLen) {
    int dir;
    const auto key = key4(&dir);
    for (unsigned words = 1; words <= 10; ++words) {
        Packet p = data4().ip_options(words).build();
        ASSERT_EQ(p.l3_len, 20 + words * 4 + 20 + 100);
        expect_counted(p, key, dir, "IHL " + std::to_string(5 + words));
    }
}

TEST_F(BpfTest, EthernetPaddingNotCountedBytesAreIpTotalLength) {
    int dir;
    const auto key = key4(&dir);
    Packet p = data4().payload(1).build();  // 14 + 41 bytes, padded to the 60-byte minimum
    p.data.resize(60, 0);
    expect_counted(p, key, dir, "padded IPv4");
    const auto key_6 = key6(&dir);
    Packet q = data6().payload(1).build();
    q.data.resize(q.data.size() + 6, 0);
    expect_counted(q, key_6, dir, "padded IPv6");
}

TEST_F(BpfTest, Ipv6ExtensionHeadersCounted) {
    int dir;
    const auto key = key6(&dir);
    expect_counted(data6().ext(kHopByHop, 8).ext(kDestOpts, 16).ext(kRouting, 24).build(), key,
                   dir, "hop-by-hop + dest-opts + routing");
    expect_counted(data6().ext_fragment(0, true).build(), key, dir, "first fragment, M=1");
    expect_counted(data6().ext_fragment(0, false).build(), key, dir, "atomic fragment");
    expect_counted(data6().ext(kAh, 24).build(), key, dir, "AH");
    // Six is the documented bound: still followed.
    expect_counted(data6()
                       .ext(kHopByHop, 8)
                       .ext(kDestOpts, 8)
                       .ext(kRouting, 8)
                       .ext_fragment(0, false)
                       .ext(kAh, 16)
                       .ext(kDestOpts, 8)
                       .build(),
                   key, dir, "six extension headers");
}

TEST_F(BpfTest, Ipv6ChainLongerThanBoundAndNonFirstFragmentIgnored) {
    PacketBuilder seven = data6();
    for (int i = 0; i < 7; ++i) seven.ext(kDestOpts, 8);
    expect_ignored(seven.build(), "seven extension headers");
    PacketBuilder eight = data6().ext(kHopByHop, 8);
    for (int i = 0; i < 7; ++i) eight.ext(kRouting, 8);
    expect_ignored(eight.build(), "eight extension headers");
    expect_ignored(data6().ext_fragment(1, true).build(), "fragment offset 8, M=1");
    expect_ignored(data6().ext_fragment(100, false).build(), "last fragment");
    expect_ignored(data6().ext(kHopByHop, 8).ext_fragment(7, false).build(),
                   "hop-by-hop + non-first fragment");
    expect_ignored(data6().ext(59, 8).build(), "no next header");
}

TEST_F(BpfTest, VlanAndQinQCountedExactlyLikeUntagged) {
    int dir;
    const auto k4 = key4(&dir);
    const Packet plain = data4().build();
    expect_counted(data4().vlan(0x8100, 10).build(), k4, dir, "802.1Q v4");
    expect_counted(data4().vlan(0x88a8, 100).vlan(0x8100, 10).build(), k4, dir, "QinQ v4");
    expect_counted(data4().vlan(0x8100, 100).vlan(0x8100, 10).build(), k4, dir,
                   "double 802.1Q v4");
    // Same bytes as the untagged frame: tags are L2.
    clear_maps();
    egress(data4().vlan(0x88a8, 100).vlan(0x8100, 10).build());
    Totals want;
    want.add(dir, plain);
    ASSERT_EQ(flows().size(), 1u);
    EXPECT_EQ(flows()[0].second, want);
    const auto k6 = key6(&dir);
    expect_counted(data6().vlan(0x8100, 10).build(), k6, dir, "802.1Q v6");
    expect_counted(data6().vlan(0x88a8, 100).vlan(0x8100, 10).build(), k6, dir, "QinQ v6");
    // A third tag is beyond the documented bound.
    expect_ignored(data4().vlan(0x88a8, 1).vlan(0x8100, 2).vlan(0x8100, 3).build(), "3 tags");
}

TEST_F(BpfTest, Ipv4NonFirstFragmentIgnoredFirstFragmentCounted) {
    int dir;
    const auto key = key4(&dir);
    expect_ignored(data4().frag(1, true).build(), "offset 8, MF");
    expect_ignored(data4().frag(185, false).build(), "last fragment");
    expect_ignored(data4().frag(0x1fff, false).build(), "max offset");
    expect_counted(data4().frag(0, true).build(), key, dir, "first fragment, MF");
}

TEST_F(BpfTest, TruncatedOrBogusHeadersIgnored) {
    const Packet good4 = data4().build();
    const Packet good6 = data6().build();
    expect_ignored(data4().vlan(0x8100, 1).truncate(14).build(), "Ethernet header only");
    expect_ignored(data4().vlan(0x8100, 1).truncate(16).build(), "cut inside the VLAN tag");
    expect_ignored(data4().vlan(0x88a8, 1).vlan(0x8100, 2).truncate(20).build(),
                   "cut inside the inner tag");
    // Cuts inside the fixed IP header only reach the program behind a tag.
    expect_ignored(data4().vlan(0x8100, 1).truncate(18 + 10).build(), "cut inside IPv4");
    expect_ignored(data4().ip_options(4).truncate(14 + 30).build(), "cut inside IPv4 options");
    expect_ignored(data4().truncate(14 + 20 + 10).build(), "cut inside TCP");
    expect_ignored(data4().tcp_options(3).truncate(14 + 20 + 25).build(), "cut in TCP options");
    expect_ignored(data4().tot_len(good4.l3_len + 1).build(), "IPv4 tot_len > frame");
    expect_ignored(data4().tot_len(19).build(), "IPv4 tot_len < 20");
    expect_ignored(data4().ihl(4).build(), "IHL 4");
    expect_ignored(data4().ihl(0).build(), "IHL 0");
    expect_ignored(data4().doff(4).build(), "data offset 4");
    expect_ignored(data4().doff(0).build(), "data offset 0");
    expect_ignored(data4().payload(10).doff(15).build(), "data offset beyond tot_len");
    expect_ignored(data4().tot_len(20 + 19).build(), "TCP header beyond tot_len");
    expect_ignored(data6().vlan(0x8100, 1).truncate(18 + 30).build(), "cut inside IPv6");
    expect_ignored(data6().truncate(14 + 40 + 12).build(), "cut inside TCP (v6)");
    expect_ignored(data6().payload_len(good6.l3_len - 40 + 1).build(), "payload_len > frame");
    expect_ignored(data6().payload_len(19).build(), "payload_len < TCP header");
    expect_ignored(data6().ext(kHopByHop, 8).truncate(14 + 40 + 1).build(),
                   "cut inside an extension header");
    expect_ignored(data6().payload(10).doff(15).build(), "v6 data offset beyond payload");
    // Version nibble disagreeing with the ethertype.
    Packet v = data4().build();
    v.data[14] = 0x65;
    expect_ignored(v, "IPv4 ethertype, version 6");
    // Shorter than Ethernet + fixed IP header without a tag: the kernel refuses
    // the run, so the program cannot be reached with those.
    for (const Packet* p : {&good4, &good6}) {
        const std::size_t min = p == &good4 ? 34 : 54;
        for (std::size_t n = 0; n < min; ++n) {
            std::vector<std::uint8_t> tiny(p->data.begin(), p->data.begin() + n);
            ASSERT_TRUE(kernel_refuses(tiny));
            EXPECT_EQ(run(skel_->programs(true).ingress, tiny), INT_MIN) << n;
            EXPECT_EQ(run_errno_, EINVAL) << n;
        }
    }
}

TEST_F(BpfTest, NonTcpIgnored) {
    PacketBuilder udp4, udp6, icmp4, icmp6, arp, proto_only;
    expect_ignored(udp4.ipv4("192.0.2.1", "192.0.2.2").udp(53, 53).payload(100).build(), "UDP");
    expect_ignored(udp6.ipv6("2001:db8::1", "2001:db8::2").udp(53, 53).payload(100).build(),
                   "UDP v6");
    expect_ignored(icmp4.ipv4("192.0.2.1", "192.0.2.2").icmp().payload(56).build(), "ICMP");
    expect_ignored(icmp6.ipv6("2001:db8::1", "2001:db8::2").icmp().payload(56).build(),
                   "ICMPv6");
    expect_ignored(arp.arp().build(), "ARP");
    // A TCP-shaped L4 behind another protocol number, and a TCP frame behind the ARP type.
    expect_ignored(data4().protocol(17).build(), "TCP bytes, protocol UDP");
    expect_ignored(data6().protocol(17).build(), "TCP bytes, next header UDP");
    expect_ignored(data4().ethertype(0x0806).build(), "IPv4 TCP behind ARP ethertype");
}

TEST_F(BpfTest, GsoTrainCountsEverySegmentsHeaders) {
    int dir;
    const auto k4 = key4(&dir);
    const Packet p4 = data4().tcp_options(3).payload(4 * 700).build();
    ASSERT_EQ(p4.hdr_len, 20u + 32u);
    expect_counted(p4, k4, dir, "IPv4 GSO x4", 4);
    auto f = flows();
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].second.packets[dir], 4u);
    EXPECT_EQ(f[0].second.bytes[dir], p4.l3_len + 3 * 52u);
    EXPECT_EQ(f[0].second.payload[dir], 2800u);

    const auto k6 = key6(&dir);
    const Packet p6 = data6().tcp_options(3).payload(4 * 700).build();
    expect_counted(p6, k6, dir, "IPv6 GSO x4", 4);
    f = flows();
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].second.bytes[dir], p6.l3_len + 3 * (40u + 32u));
}

// --- Lifecycle edges ---------------------------------------------------------

TEST_F(BpfTest, UnknownTupleAckOrRstCreatesNothingDataCreatesMidstream) {
    expect_ignored(data4().payload(0).tcp(1234, 80, 1, 1, kAck).build(), "pure ACK");
    expect_ignored(data4().payload(0).tcp(1234, 80, 1, 1, kRst).build(), "RST");
    expect_ignored(data4().payload(0).tcp(1234, 80, 1, 1, kRst | kAck).build(), "RST-ACK");
    expect_ignored(data4().payload(0).tcp(1234, 80, 1, 1, kFin | kAck).build(), "FIN-ACK");
    expect_ignored(data4().tcp(1234, 80, 1, 1, kRst | kAck).build(), "RST with data");
    EXPECT_TRUE(drain_events().empty());

    int dir;
    const auto key = key4(&dir);
    const Packet p = data4().build();
    expect_counted(p, key, dir, "data");
    auto s = states();
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s[0].second.flags, TT_F_MIDSTREAM);
    EXPECT_EQ(s[0].second.client, dir);
    EXPECT_NE(s[0].second.first_ns, 0u);
    EXPECT_EQ(s[0].second.syn_ns, 0u);
}

TEST_F(BpfTest, RstFromEitherSideEndsWithResetEvent) {
    for (bool from_client : {true, false}) {
        SCOPED_TRACE(from_client ? "client RST" : "server RST");
        Conn c(false, {"10.0.0.1", std::uint16_t(from_client ? 1111 : 2222)}, {"10.0.0.2", 80});
        establish(c);
        if (from_client)
            egress(c.c2s(kRst | kAck));
        else
            ingress(c.s2c(kRst));
        expect_empty("after RST");
        auto ev = drain_events();
        ASSERT_EQ(ev.size(), 1u);
        EXPECT_EQ(ev[0].key, c.key);
        EXPECT_EQ(ev[0].reason, TT_CLOSE_FINISHED);
        EXPECT_EQ(ev[0].info.state, TT_RESET);
        EXPECT_EQ(totals_of(ev[0]), c.expect);
        EXPECT_NE(ev[0].info.close_ns, 0u);
        EXPECT_LT(ev[0].info.syn_ns, ev[0].info.close_ns);
    }
    // Refused: SYN answered by RST-ACK.
    Conn r(false, {"10.0.0.1", 3333}, {"10.0.0.2", 81});
    egress(r.c2s(kSyn));
    ingress(r.s2c(kRst | kAck));
    expect_empty("refused");
    auto ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].info.state, TT_RESET);
    EXPECT_EQ(totals_of(ev[0]), r.expect);
}

TEST_F(BpfTest, SimultaneousCloseFinishesOnlyAfterBothFinsAcked) {
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    establish(c);
    const std::uint32_t c_before_fin = c.cseq, s_before_fin = c.sseq;
    egress(c.c2s(kFin | kAck, 0, s_before_fin));
    ingress(c.s2c(kFin | kAck, 0, c_before_fin));  // crossed: does not ack the client's FIN
    expect_single(c.key, c.expect, TT_CLOSED, "both FINs, none acked");
    egress(c.c2s(kAck));  // acks the server's FIN
    auto info = expect_single(c.key, c.expect, TT_CLOSED, "one FIN acked");
    EXPECT_EQ(info.ack_mask, 1 << (c.cdir ^ 1));
    EXPECT_TRUE(drain_events().empty());
    ingress(c.s2c(kAck));  // acks the client's FIN
    expect_empty("both acked");
    auto ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].info.state, TT_CLOSED);
    EXPECT_EQ(totals_of(ev[0]), c.expect);
}

TEST_F(BpfTest, SynRetransmitSameSeqKeepsConnection) {
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    Packet syn = c.c2s(kSyn);
    egress(syn);
    const auto first = expect_single(c.key, c.expect, TT_SYN_SENT, "SYN");
    egress(syn);
    c.expect.add(c.cdir, syn);
    const auto again = expect_single(c.key, c.expect, TT_SYN_SENT, "retransmitted SYN");
    EXPECT_EQ(again.first_ns, first.first_ns);
    EXPECT_EQ(again.syn_ns, first.syn_ns);
    EXPECT_TRUE(drain_events().empty());
    EXPECT_EQ(stat(TT_STAT_REUSED), 0u);
}

TEST_F(BpfTest, NewSynOnEstablishedTupleReportsReusedAndStartsFresh) {
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    establish(c);
    const Totals old = c.expect;
    const auto old_info = states()[0].second;
    Conn fresh = c;
    fresh.cseq = 777777;  // a different ISN: a new connection
    fresh.expect = {};
    egress(fresh.c2s(kSyn));
    auto info = expect_single(c.key, fresh.expect, TT_SYN_SENT, "new SYN");
    EXPECT_EQ(info.syn_seq, 777777u);
    EXPECT_GT(info.first_ns, old_info.first_ns);
    auto ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].key, c.key);
    EXPECT_EQ(ev[0].reason, TT_CLOSE_REUSED);
    EXPECT_EQ(totals_of(ev[0]), old);
    EXPECT_EQ(ev[0].info.first_ns, old_info.first_ns);
    EXPECT_EQ(ev[0].info.state, TT_ESTABLISHED);
    EXPECT_EQ(stat(TT_STAT_REUSED), 1u);
}

TEST_F(BpfTest, NewSynAfterCloseWithoutLastAckReportsReused) {
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    establish(c);
    egress(c.c2s(kFin | kAck));
    ingress(c.s2c(kFin | kAck));  // the final ACK is never seen
    const Totals old = c.expect;
    Conn fresh = c;
    fresh.cseq = 555;
    fresh.expect = {};
    egress(fresh.c2s(kSyn));
    expect_single(c.key, fresh.expect, TT_SYN_SENT, "new SYN");
    auto ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].reason, TT_CLOSE_REUSED);
    EXPECT_EQ(ev[0].info.state, TT_CLOSED);
    EXPECT_EQ(totals_of(ev[0]), old);
}

TEST_F(BpfTest, NewSynAfterFinishedCloseStartsFreshWithoutSecondEvent) {
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    establish(c);
    egress(c.c2s(kFin | kAck));
    ingress(c.s2c(kFin | kAck));
    egress(c.c2s(kAck));
    ASSERT_EQ(drain_events().size(), 1u);
    ingress(c.s2c(kAck));  // a straggler must not resurrect it
    expect_empty("straggler");
    Conn fresh = c;
    fresh.cseq = 4242;
    fresh.expect = {};
    egress(fresh.c2s(kSyn));
    expect_single(c.key, fresh.expect, TT_SYN_SENT, "new SYN");
    EXPECT_TRUE(drain_events().empty());
    EXPECT_EQ(stat(TT_STAT_REUSED), 0u);
}

// Each CPU has its own counters copy with its own SETTLED bit. A CPU that
// settled before the first FIN must take the slow path afterwards, or it
// would skip the final ACK.
TEST_F(BpfTest, SettledCpuStillSeesFinalAckAfterFinOnAnotherCpu) {
    cpu_set_t saved;
    ASSERT_EQ(sched_getaffinity(0, sizeof(saved), &saved), 0);
    if (!CPU_ISSET(0, &saved) || !CPU_ISSET(1, &saved)) GTEST_SKIP() << "needs CPUs 0 and 1";
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    pin(0);
    establish(c);  // CPU 0 settled
    pin(1);
    egress(c.c2s(kAck | kPsh, 5));  // CPU 1 settled
    ingress(c.s2c(kAck | kPsh, 7));
    pin(0);
    egress(c.c2s(kFin | kAck));  // first FIN on CPU 0
    ingress(c.s2c(kFin | kAck));
    pin(1);
    egress(c.c2s(kAck));  // final ACK on the CPU that was settled
    sched_setaffinity(0, sizeof(saved), &saved);
    expect_empty("final ACK on CPU 1");
    auto ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(totals_of(ev[0]), c.expect);
    EXPECT_EQ(ev[0].info.state, TT_CLOSED);
}

TEST_F(BpfTest, SynAckSeenFirstStartsInSynRecvAndCompletes) {
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    c.c2s(kSyn);  // the SYN is never seen
    c.expect = {};
    ingress(c.s2c(kSyn | kAck));
    auto info = expect_single(c.key, c.expect, TT_SYN_RECV, "SYN-ACK");
    EXPECT_EQ(info.client, c.cdir);
    EXPECT_EQ(info.flags, TT_F_HS_SEEN | TT_F_LOCAL_CLIENT);
    egress(c.c2s(kAck));
    info = expect_single(c.key, c.expect, TT_ESTABLISHED, "ACK");
    EXPECT_NE(info.ack_ns, 0u);
}

TEST_F(BpfTest, MapFullTracksFourCountsTwoUntracked) {
    load(config(4));
    std::vector<tt_flow_key> first4;
    for (std::uint16_t port = 1; port <= 6; ++port) {
        Conn c(false, {"10.0.0.1", port}, {"10.0.0.2", 80});
        egress(c.c2s(kSyn));
        if (port <= 4) first4.push_back(c.key);
    }
    auto f = flows();
    EXPECT_EQ(f.size(), 4u);
    EXPECT_EQ(states().size(), 4u);
    for (const auto& [k, t] : f)
        EXPECT_NE(std::find(first4.begin(), first4.end(), k), first4.end());
    EXPECT_EQ(stat(TT_STAT_UNTRACKED), 2u);
    EXPECT_EQ(stat(TT_STAT_UNTRACKED_SEGS), 2u);
    // Later segments of a refused connection count as segments, not as new connections.
    Conn late(false, {"10.0.0.1", 6}, {"10.0.0.2", 80});
    ingress(late.s2c(kSyn | kAck));
    egress(late.c2s(kAck | kPsh, 100));
    EXPECT_EQ(stat(TT_STAT_UNTRACKED), 2u);
    EXPECT_EQ(stat(TT_STAT_UNTRACKED_SEGS), 4u);
}

TEST_F(BpfTest, RingFullKeepsFinishedFlowForCollectorToReap) {
    // 2 MiB ring, 168 bytes a record: fill it with RST-ended connections.
    std::uint32_t n = 0;
    while (stat(TT_STAT_CLOSE_DROPPED) == 0 && n < 20000) {
        Conn c(false, {"10.2.0.1", std::uint16_t(1 + n % 60000)},
               {n < 60000 ? "10.2.0.2" : "10.2.0.3", 80});
        egress(c.c2s(kSyn));
        ingress(c.s2c(kRst | kAck));
        ++n;
    }
    ASSERT_EQ(stat(TT_STAT_CLOSE_DROPPED), 1u);
    // The last one stays in the maps, marked for reaping.
    auto s = states();
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s[0].second.state, TT_RESET);
    EXPECT_TRUE(s[0].second.flags & TT_F_REAP);
    EXPECT_EQ(flows().size(), 1u);
    EXPECT_EQ(drain_events().size(), n - 1);

    tcptrack::Collector col(*skel_, tcptrack::probe_features().reader());
    auto got = col.collect(tcptrack::monotonic_ns());
    ASSERT_EQ(got.size(), 1u);
    EXPECT_TRUE(got[0].finished);
    EXPECT_EQ(got[0].key, s[0].first);
    expect_empty("reaped");
}

// --- Hostile input -----------------------------------------------------------

// Frames the fuzz tests start from: valid TCP data segments.
std::vector<std::pair<std::string, Packet>> base_frames() {
    return {
        {"IPv4", data4().payload(64).build()},
        {"IPv4 QinQ + options", data4().vlan(0x88a8, 5).vlan(0x8100, 6).ip_options(3).tcp_options(3)
                                    .payload(64).build()},
        {"IPv6", data6().payload(64).build()},
        {"IPv6 802.1Q", data6().vlan(0x8100, 7).payload(64).build()},
        {"IPv6 + ext chain", data6().ext(kHopByHop, 8).ext(kDestOpts, 16).ext(kRouting, 24)
                                 .ext_fragment(0, true).tcp_options(2).payload(64).build()},
    };
}

TEST_F(BpfTest, TruncationAtEveryOffsetCreatesNothing) {
    for (const auto& [name, p] : base_frames()) {
        ASSERT_TRUE(ref_parse(p.data).has_value()) << name;
        for (std::size_t n = 0; n < p.data.size(); ++n) {
            std::vector<std::uint8_t> cut(p.data.begin(), p.data.begin() + n);
            for (auto* prog : {skel_->programs(true).ingress, skel_->programs(true).egress}) {
                const int ret = run(prog, cut);
                if (kernel_refuses(cut))
                    EXPECT_TRUE(ret == INT_MIN && run_errno_ == EINVAL) << name << " len " << n;
                else
                    EXPECT_EQ(ret, kTcNext) << name << " len " << n;
            }
            EXPECT_FALSE(ref_parse(cut).has_value()) << name << " len " << n;
            ASSERT_TRUE(flows().empty()) << name << " truncated to " << n << ": " << hex(cut);
            ASSERT_TRUE(states().empty()) << name << " truncated to " << n;
        }
    }
}

TEST_F(BpfTest, RandomHeaderMutationsNeverMisattribute) {
    std::uint32_t seed = 0x7cb7c0de;
    if (const char* s = std::getenv("TT_FUZZ_SEED")) seed = std::strtoul(s, nullptr, 0);
    std::mt19937 rng(seed);
    SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with TT_FUZZ_SEED)");
    int mismatches = 0, counted = 0;
    const int kPerFrame = 1500;
    for (const auto& [name, base] : base_frames()) {
        const std::size_t hdr_end = base.l3_off + base.hdr_len;  // every header byte
        for (int i = 0; i < kPerFrame && mismatches < 5; ++i) {
            std::vector<std::uint8_t> f = base.data;
            const int edits = 1 + rng() % 4;
            for (int e = 0; e < edits; ++e) {
                const std::size_t at = rng() % hdr_end;
                if (rng() % 2)
                    f[at] ^= 1u << (rng() % 8);
                else
                    f[at] = rng() & 0xff;
            }
            if (rng() % 4 == 0) f.resize(14 + rng() % (f.size() - 13));
            const bool in = rng() % 2;
            const int ret = run(in ? skel_->programs(true).ingress : skel_->programs(true).egress, f);

            const auto want = ref_parse(f);
            const bool starts = want && !(want->flags & kRst) &&
                                ((want->flags & kSyn) || want->payload > 0);
            const auto fl = flows();
            const auto st = states();
            const bool ran = kernel_refuses(f) ? ret == INT_MIN && run_errno_ == EINVAL
                                               : ret == kTcNext;
            bool ok = ran && st.size() == fl.size();
            if (starts) {
                Totals t;
                t.bytes[want->dir] = want->l3_len;
                t.packets[want->dir] = 1;
                t.payload[want->dir] = want->payload;
                ok = ok && fl.size() == 1 && fl[0].first == want->key && fl[0].second == t &&
                     st[0].first == want->key;
                ++counted;
            } else {
                ok = ok && fl.empty();
            }
            if (!ok) {
                ++mismatches;
                std::ostringstream msg;
                msg << name << " mutation " << i << " (" << (in ? "ingress" : "egress")
                    << ") ret " << ret << " frame " << hex(f) << "\n  reference: ";
                if (starts) {
                    PrintTo(want->key, &msg);
                    msg << " dir " << want->dir << " l3 " << want->l3_len;
                } else {
                    msg << "no flow";
                }
                for (const auto& [k, t] : fl) {
                    msg << "\n  datapath: ";
                    PrintTo(k, &msg);
                    msg << " ";
                    PrintTo(t, &msg);
                }
                ADD_FAILURE() << msg.str();
            }
            clear_maps();
            EXPECT_TRUE(drain_events().empty());
        }
    }
    // The mutations must not all be rejected, or the test proves little.
    EXPECT_GT(counted, 500);
}

// An extension-header chain that puts the TCP header beyond offset 1023.
// Input: IPv6 data segment 2001:db8::1:40000 -> 2001:db8::2:443 with a
// 1048-byte hop-by-hop header; inside its padding, at frame offset
// (14 + 40 + 1048) & 0x3ff = 78, bytes that look like a TCP header for
// ports 6666 -> 7777. Expected: the flow is filed under 40000/443, or not at
// all; it must never be attributed to ports read from the wrong offset.
TEST_F(BpfTest, Ipv6LongExtensionChainNeverMisattributesPorts) {
    Packet p = data6().tcp(40000, 443, 1, 1, kAck | kPsh).ext(kHopByHop, 1048).payload(100).build();
    ASSERT_EQ(p.l4_off, 14u + 40 + 1048);
    const std::size_t alias = p.l4_off & 0x3ff;
    ASSERT_GT(alias, 14u + 40 + 4);  // inside the option padding
    const std::uint8_t fake[20] = {0x1a, 0x0a, 0x1e, 0x61, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, kAck};
    std::copy(std::begin(fake), std::end(fake), p.data.begin() + alias);
    egress(p);
    int dir;
    const auto right = make_key(true, {"2001:db8::1", 40000}, {"2001:db8::2", 443}, &dir);
    for (const auto& [k, t] : flows()) EXPECT_EQ(k, right) << "ports read from the wrong offset";
    // Without the planted header the padding is zero (doff 0): check the honest frame too.
    clear_maps();
    Packet q = data6().tcp(40000, 443, 1, 1, kAck | kPsh).ext(kHopByHop, 1024).payload(100).build();
    egress(q);
    Totals want;
    want.add(dir, q);
    auto f = flows();
    ASSERT_EQ(f.size(), 1u) << "valid 1024-byte hop-by-hop frame not counted";
    EXPECT_EQ(f[0].first, right);
    EXPECT_EQ(f[0].second, want);
}

}  // namespace

TEST_F(BpfTest, RingFullReusedTupleParksOldConnectionForCollector) {
    // Fill the ring with RST-ended connections until one does not fit.
    std::uint32_t n = 0;
    while (stat(TT_STAT_CLOSE_DROPPED) == 0 && n < 20000) {
        Conn f(false, {"10.2.0.1", std::uint16_t(1 + n)}, {"10.2.0.2", 80});
        egress(f.c2s(kSyn));
        ingress(f.s2c(kRst | kAck));
        ++n;
    }
    ASSERT_EQ(stat(TT_STAT_CLOSE_DROPPED), 1u);
    // Clear the reaped leftover so only the reused tuple is in the maps.
    tcptrack::Collector(*skel_, tcptrack::probe_features().reader()).collect(tcptrack::monotonic_ns());
    expect_empty("leftover reaped");

    // The ring is still full: a reused tuple's old connection must be parked, not lost.
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    establish(c);
    const Totals old = c.expect;
    const auto old_info = states()[0].second;
    Conn fresh = c;
    fresh.cseq = 777777;
    fresh.expect = {};
    egress(fresh.c2s(kSyn));
    expect_single(c.key, fresh.expect, TT_SYN_SENT, "new SYN");
    EXPECT_EQ(stat(TT_STAT_CLOSE_DROPPED), 2u);
    EXPECT_EQ(stat(TT_STAT_CLOSE_LOST), 0u);

    drain_events();  // make room; the parked event is read from its map
    tcptrack::Collector col(*skel_, tcptrack::probe_features().reader());
    auto got = col.collect(tcptrack::monotonic_ns());
    std::vector<tcptrack::FlowSample> finished;
    for (const auto& s : got)
        if (s.finished) finished.push_back(s);
    ASSERT_EQ(finished.size(), 1u);
    EXPECT_EQ(finished[0].key, c.key);
    EXPECT_EQ(finished[0].info.first_ns, old_info.first_ns);
    for (int d = 0; d < 2; ++d) {
        EXPECT_EQ(finished[0].bytes[d], old.bytes[d]);
        EXPECT_EQ(finished[0].packets[d], old.packets[d]);
        EXPECT_EQ(finished[0].payload[d], old.payload[d]);
    }
    EXPECT_EQ(finished[0].info.state, TT_CLOSED);  // replaced by a new SYN: over
    // Drained exactly once.
    auto again = col.collect(tcptrack::monotonic_ns());
    for (const auto& s : again) EXPECT_FALSE(s.finished) << "parked close reported twice";
}

TEST_F(BpfTest, RetransmittedDataCountsOnTheWireButNotAsPayload) {
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    establish(c);
    const Packet first = c.c2s(kAck | kPsh, 1000);
    egress(first);
    // The same segment again (a retransmission): wire bytes and packets grow, payload does not.
    egress(first);
    c.expect.bytes[c.cdir] += first.l3_len;
    c.expect.packets[c.cdir] += 1;
    expect_single(c.key, c.expect, TT_ESTABLISHED, "after a retransmission");
}

TEST_F(BpfTest, DataLostBeforeTheHookCountsOnceWhenItComesBack) {
    Conn c(true, {"2001:db8::1", 40000}, {"2001:db8::2", 443});
    establish(c);
    const Packet lost = c.c2s(kAck | kPsh, 700);  // never reaches the hook the first time
    c.expect.bytes[c.cdir] -= lost.l3_len;
    c.expect.packets[c.cdir] -= 1;
    c.expect.payload[c.cdir] -= 700;
    egress(c.c2s(kAck | kPsh, 300));  // arrives after a gap
    egress(lost);                     // the retransmission fills the gap
    c.expect.add(c.cdir, lost);
    expect_single(c.key, c.expect, TT_ESTABLISHED, "gap filled");
    egress(lost);  // a second copy is a retransmission of counted data
    c.expect.bytes[c.cdir] += lost.l3_len;
    c.expect.packets[c.cdir] += 1;
    expect_single(c.key, c.expect, TT_ESTABLISHED, "duplicate of the gap");
}

// --- the per-CPU memo of the last settled flow (flow.h: tt_flow_memo) ---

TEST_F(BpfTest, MemoHoldsConsecutiveSegmentsAndEveryReaderAddsThem) {
    cpu_set_t saved;
    ASSERT_EQ(sched_getaffinity(0, sizeof(saved), &saved), 0);
    if (!CPU_ISSET(0, &saved)) GTEST_SKIP() << "needs CPU 0";
    Conn c(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    pin(0);
    establish(c);
    for (int i = 0; i < 5; ++i) egress(c.c2s(kAck | kPsh, 1000));
    ingress(c.s2c(kAck));
    // The hash entry alone lags: the memo holds what came after the memo was filled.
    {
        const int ncpu = libbpf_num_possible_cpus();
        std::vector<tt_counters> per_cpu(ncpu);
        ASSERT_EQ(bpf_map_lookup_elem(flows_fd(), &c.key, per_cpu.data()), 0);
        std::uint64_t in_map = 0;
        for (const auto& pc : per_cpu) in_map += pc.packets[0] + pc.packets[1];
        EXPECT_LT(in_map, c.expect.packets[0] + c.expect.packets[1]) << "memo not used";
    }
    expect_single(c.key, c.expect, TT_ESTABLISHED, "map + memo");
    tcptrack::Collector col(*skel_, tcptrack::probe_features().reader());
    const auto& got = col.collect(tcptrack::monotonic_ns());
    ASSERT_EQ(got.size(), 1u);
    for (int d = 0; d < 2; ++d) {
        EXPECT_EQ(got[0].bytes[d], c.expect.bytes[d]);
        EXPECT_EQ(got[0].packets[d], c.expect.packets[d]);
        EXPECT_EQ(got[0].payload[d], c.expect.payload[d]);
    }
    // The close event carries the memo's counts too.
    egress(c.c2s(kFin | kAck));
    ingress(c.s2c(kFin | kAck));
    egress(c.c2s(kAck));
    sched_setaffinity(0, sizeof(saved), &saved);
    expect_empty("closed");
    auto ev = drain_events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(totals_of(ev[0]), c.expect);
}

TEST_F(BpfTest, MemoOfAResetConnectionIsNotUsedByTheNextOnTheSameTuple) {
    cpu_set_t saved;
    ASSERT_EQ(sched_getaffinity(0, sizeof(saved), &saved), 0);
    if (!CPU_ISSET(0, &saved)) GTEST_SKIP() << "needs CPU 0";
    pin(0);
    Conn a(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    establish(a);
    egress(a.c2s(kAck | kPsh, 100));  // memo hit: this CPU's memo is a's
    ingress(a.s2c(kRst | kAck));
    ASSERT_EQ(drain_events().size(), 1u);
    // A new connection on the same tuple: its plain ACK must reach the lifecycle.
    Conn b = a;
    b.cseq = 777777;
    b.sseq = 5555555;
    b.expect = {};
    egress(b.c2s(kSyn));
    ingress(b.s2c(kSyn | kAck));
    egress(b.c2s(kAck));
    egress(b.c2s(kAck | kPsh, 300));
    sched_setaffinity(0, sizeof(saved), &saved);
    auto info = expect_single(b.key, b.expect, TT_ESTABLISHED, "second connection");
    EXPECT_GT(info.ack_ns, 0u);
}

TEST_F(BpfTest, MemoIsVoidAfterUserSpaceForgetsTheFlow) {
    cpu_set_t saved;
    ASSERT_EQ(sched_getaffinity(0, sizeof(saved), &saved), 0);
    if (!CPU_ISSET(0, &saved)) GTEST_SKIP() << "needs CPU 0";
    pin(0);
    Conn a(false, {"10.0.0.1", 40000}, {"10.0.0.2", 80});
    establish(a);
    egress(a.c2s(kAck | kPsh, 100));
    tcptrack::Collector col(*skel_, tcptrack::probe_features().reader());
    col.forget({a.key});  // e.g. the idle timeout
    expect_empty("forgotten");
    // The same tuple comes back mid-stream: counted afresh, not into the old memo.
    Conn b = a;
    b.expect = {};
    egress(b.c2s(kAck | kPsh, 500));
    ingress(b.s2c(kAck | kPsh, 600));
    egress(b.c2s(kAck | kPsh, 700));
    sched_setaffinity(0, sizeof(saved), &saved);
    expect_single(b.key, b.expect, TT_ESTABLISHED, "after forget");
}
