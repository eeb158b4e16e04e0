// SPDX-License-Identifier: MIT
// The BPF tier's one fixture: handcrafted frames through the real classifiers
// with BPF_PROG_TEST_RUN, then exact checks of the slot store (read straight
// from the mmapped `slots` array), the close-event ring and the stats. There
// is one datapath for every kernel from 5.10, so there are no paths to choose:
// every test runs once, on the skeleton this kernel loads.
#pragma once

#include <arpa/inet.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <sched.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "tcptrack/abi.h"
#include "tcptrack/store.h"
#include "datapath/collector.hpp"
#include "datapath/skeleton.hpp"
#include "packet_builder.hpp"

// Global namespace so gtest finds them for the C struct.
inline bool operator==(const tt_flow_key& a, const tt_flow_key& b) {
    return std::memcmp(&a, &b, sizeof(a)) == 0;
}

inline void PrintTo(const tt_flow_key& k, std::ostream* os) {
    char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
    const int af = k.family == TT_FAMILY_INET6 ? AF_INET6 : AF_INET;
    inet_ntop(af, k.addr_a, a, sizeof(a));
    inet_ntop(af, k.addr_b, b, sizeof(b));
    *os << "{" << a << ":" << ntohs(k.port_a) << " <-> " << b << ":" << ntohs(k.port_b) << " if "
        << k.ifindex << " fam " << int(k.family) << "}";
}

namespace tt_test {

constexpr int kTcNext = -1;                       // TC_ACT_UNSPEC == TCX_NEXT
constexpr std::uint32_t kLoopback = 1;            // test_run's skb->dev
constexpr std::uint64_t kNeverIdle = UINT64_MAX;  // Collector::collect's idle limit: none idle

// --- Expectations ------------------------------------------------------------

// A flow's counters, indexed by normalised direction.
struct Totals {
    std::uint64_t bytes[2]{}, packets[2]{}, payload[2]{};

    void add(int dir, const Packet& p, std::uint32_t segs = 1) {
        bytes[dir] += p.l3_len + (segs - 1) * p.hdr_len;
        packets[dir] += segs;
        payload[dir] += p.payload;
    }
    bool operator==(const Totals&) const = default;
};

void PrintTo(const Totals& t, std::ostream* os);
Totals totals_of(const tt_close_event& ev);
Totals totals_of(const tcptrack::FlowSample& s);
Totals totals_of(const tt_slot& s);

struct Endpoint {
    std::string addr;
    std::uint16_t port;
};

// The key the datapath should file (src -> dst) under; *dir gets the packet's direction.
tt_flow_key make_key(bool v6, const Endpoint& src, const Endpoint& dst, int* dir = nullptr);

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
    // Raw TCP options and window of the next segments (tcp_option_bytes, window).
    std::vector<std::uint8_t> options;
    std::uint16_t window = 65535;

    Conn(bool v6_, Endpoint c, Endpoint s);
    Packet c2s(std::uint8_t flags, std::size_t payload = 0, std::optional<std::uint32_t> ack = {}) {
        return segment(true, flags, payload, ack);
    }
    Packet s2c(std::uint8_t flags, std::size_t payload = 0, std::optional<std::uint32_t> ack = {}) {
        return segment(false, flags, payload, ack);
    }
    Packet segment(bool from_client, std::uint8_t flags, std::size_t payload,
                   std::optional<std::uint32_t> ack);
};

// A data segment from 192.0.2.1:1234 to 192.0.2.2:80 (v6: 2001:db8::1 -> ::2), 100 bytes payload.
PacketBuilder data4();
PacketBuilder data6();
tt_flow_key key4(int* dir);
tt_flow_key key6(int* dir);

// BPF_PROG_TEST_RUN itself rejects (EINVAL) frames shorter than an Ethernet
// header, and (6.12 and 6.18 do, 5.10 does not: see short_ip_refused())
// untagged IPv4/IPv6 frames shorter than the fixed IP header: such frames never
// reach the program. Behind a VLAN tag any length does.
bool kernel_refuses(const std::vector<std::uint8_t>& f);
// Whether this kernel's BPF_PROG_TEST_RUN refuses untagged IPv4 / IPv6 frames
// shorter than the fixed IP header; measured once with the first loaded
// skeleton (BpfTest::load). Where it does not, the program must ignore them.
struct ShortIpRefusal {
    bool v4 = true, v6 = true;
};
ShortIpRefusal short_ip_refused();
std::string hex(const std::vector<std::uint8_t>& v);

// --- CPU pinning -------------------------------------------------------------

// Moves the calling thread from CPU to CPU (BPF_PROG_TEST_RUN runs on the
// caller's CPU, so the test decides which CPU counts a segment) and restores
// the affinity it had when it goes out of scope.
class CpuPin {
   public:
    CpuPin();
    ~CpuPin();
    CpuPin(const CpuPin&) = delete;
    CpuPin& operator=(const CpuPin&) = delete;

    // Whether all these CPUs were in the affinity this thread started with.
    bool allowed(std::initializer_list<int> cpus) const;
    // Runs the thread on `cpu` only from now on.
    bool to(int cpu);

   private:
    cpu_set_t saved_;
    bool saved_ok_ = false;
};

// --- The fixture -------------------------------------------------------------

// A live slot as the test reads it: its index and a copy of its contents.
struct LiveSlot {
    std::uint32_t slot;
    tt_slot s;
};

class BpfTest : public ::testing::Test {
   protected:
    // Skips when not root; otherwise gives the test the default skeleton
    // (65536 flows), reset to the state of a fresh load.
    void SetUp() override;
    void TearDown() override;

    // The skeleton for this --max-flows (e.g. 4 for the store-full tests),
    // reset. Use as ASSERT_NO_FATAL_FAILURE(load(4)).
    // key: a fixed hash key (else a random one, drawn once per size).
    // health: false loads it as --no-health does. rtt_gap_us: the RTT probe
    // rate limit (--rtt-rate-limit); 0 here, so crafted exchanges microseconds
    // apart each get their probe. coarse_clock: false makes the limit read
    // the fine clock, as on a kernel without bpf_ktime_get_coarse_ns.
    // cache_cpus: the counter cache sized for that many CPUs (LoadConfig::cache_cpus).
    void load(std::uint32_t max_flows, std::optional<std::array<std::uint8_t, 16>> key = {},
              bool health = true, std::uint32_t rtt_gap_us = 0, bool coarse_clock = true,
              std::uint32_t cache_cpus = 0);

    // The production collector (the ring's consumer from then on: close
    // events it reads do not reach drain_events(), and the reverse).
    tcptrack::Collector collector() const { return tcptrack::Collector(*skel_); }

    // Program return code, or INT_MIN with errno saved if the kernel refused the run.
    int run(bpf_program* prog, const std::vector<std::uint8_t>& frame, std::uint32_t gso_segs = 0);
    void ingress(const Packet& p, std::uint32_t gso_segs = 0);
    void egress(const Packet& p, std::uint32_t gso_segs = 0);

    // The store, read as the collector does (slots [0, next_fresh), live = odd gen).
    std::uint32_t next_fresh();
    tt_slot slot(std::uint32_t idx);  // any slot, live or not
    std::vector<LiveSlot> live_slots();
    std::optional<LiveSlot> live_slot(const tt_flow_key& key);
    std::vector<std::pair<tt_flow_key, Totals>> flows();
    std::vector<std::pair<tt_flow_key, tt_flow_info>> states();
    tt_index_bucket bucket(std::uint32_t idx);
    tt_hash_key hash_key() const;                           // the loaded object's
    std::uint32_t index_hash(const tt_flow_key* k) const {  // where its index puts k
        const tt_hash_key hk = hash_key();
        return tt_index_hash(k, &hk);
    }
    // Index entries (both buckets of the key) that point at this slot.
    int index_entries(const tt_flow_key& key, std::uint32_t slot);

    // The counter cache entry of this CPU and way where key's flow would sit (writable).
    tt_cache_entry& cache_entry(std::uint32_t cpu, const tt_flow_key& key, std::uint32_t way);

    std::vector<tt_close_event> drain_events();
    tt_health health(std::uint32_t slot);  // the slot's health entry
    std::uint64_t stat(std::uint32_t idx);
    // Back to the state of a fresh load (every map, the ring, the stats).
    void clear_maps();

    // Exactly one live connection: this key, these counters, this state.
    tt_flow_info expect_single(const tt_flow_key& key, const Totals& want, std::uint8_t state,
                               const std::string& step);
    void expect_empty(const std::string& step);
    // A lone data segment on an empty store must create one mid-stream flow with exactly these
    // counters.
    void expect_counted(const Packet& p, const tt_flow_key& key, int dir, const std::string& what,
                        std::uint32_t gso_segs = 0);
    // Must be left alone by both programs, and the run must still return TCX_NEXT.
    void expect_ignored(const Packet& p, const std::string& what);
    // Handshake plus a little data each way; leaves c ESTABLISHED.
    void establish(Conn& c);

    tcptrack::Skeleton* skel_ = nullptr;  // owned by the fixture's cache (bpf_fixture.cpp)
    int run_errno_ = 0;

   private:
    static int on_event(void* ctx, void* data, std::size_t size);
    void reset();

    tt_slot* slots_ = nullptr;         // the whole `slots` array, mapped read-write
    tt_cache_entry* cache_ = nullptr;  // the per-CPU counter cache, mapped read-write
    ring_buffer* ring_ = nullptr;
    std::vector<tt_close_event> events_;
};

}  // namespace tt_test
