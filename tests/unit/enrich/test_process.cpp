// SPDX-License-Identifier: MIT
// Process attribution without the kernel: /proc text parsing, the sock_diag
// request/answer encoding on handcrafted buffers, and the per-connection cache
// with an injected lookup.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <net/if.h>
#include <netinet/in.h>

#include <cstring>
#include <map>
#include <set>

#include "enrich/process_cache.hpp"
#include "enrich/procfs.hpp"
#include "enrich/sock_diag.hpp"
#include "enrich/system_owners.hpp"
#include "sample_finder.hpp"

namespace tcptrack {
namespace {

// ------------------------------------------------------------------ /proc text

TEST(Process, SocketLinks) {
    EXPECT_EQ(socket_inode("socket:[12345]"), 12345u);
    EXPECT_EQ(socket_inode("socket:[4294967296]"), 4294967296u);
    EXPECT_EQ(socket_inode("socket:[]"), std::nullopt);
    EXPECT_EQ(socket_inode("socket:[12a]"), std::nullopt);
    EXPECT_EQ(socket_inode("socket:[12"), std::nullopt);
    EXPECT_EQ(socket_inode("pipe:[12345]"), std::nullopt);
    EXPECT_EQ(socket_inode("anon_inode:[eventfd]"), std::nullopt);
    EXPECT_EQ(socket_inode("/dev/null"), std::nullopt);
    EXPECT_EQ(socket_inode("socket:[-1]"), std::nullopt);
}

constexpr const char* kId = "4f2a1c0d9e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29";

TEST(Process, CgroupV2Path) {
    EXPECT_EQ(cgroup_of("0::/user.slice/user-1000.slice/session-3.scope\n"),
              "/user.slice/user-1000.slice/session-3.scope");
    EXPECT_EQ(cgroup_of("0::/\n"), "/");
    // Hybrid hosts: v1 lines before the v2 one; a path holding ':' stays whole.
    EXPECT_EQ(cgroup_of("12:memory:/x\n1:name=systemd:/y\n0::/system.slice/a:b.service\n"),
              "/system.slice/a:b.service");
    // v1 only, no container: no cgroup.
    EXPECT_EQ(cgroup_of("4:memory:/process_api/b5fee435344b2eec4ff81189d6af82ad\n1:cpu:/\n"), "");
    EXPECT_EQ(cgroup_of(""), "");
}

TEST(Process, ContainerIds) {
    const std::string id = kId;
    EXPECT_EQ(cgroup_of("0::/system.slice/docker-" + id + ".scope\n"), id);
    EXPECT_EQ(cgroup_of("0::/docker/" + id + "\n"), id);
    EXPECT_EQ(
        cgroup_of("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/"
                  "cri-containerd-" +
                  id + ".scope\n"),
        id);
    EXPECT_EQ(cgroup_of("0::/kubepods/burstable/pod7f1c/" + id + "\n"), id);
    EXPECT_EQ(cgroup_of("0::/machine.slice/libpod-" + id + ".scope/container\n"), id);
    EXPECT_EQ(cgroup_of("0::/system.slice/crio-" + id + ".scope\n"), id);
    // v1 host: the id is still evident in a controller's path.
    EXPECT_EQ(cgroup_of("5:memory:/docker/" + id + "\n1:name=systemd:/docker/" + id + "\n"), id);
    // Not containers: the conmon monitor, a 63-digit name, a non-hex one.
    EXPECT_EQ(cgroup_of("0::/machine.slice/crio-conmon-" + id + ".scope\n"),
              "/machine.slice/crio-conmon-" + id + ".scope");
    EXPECT_EQ(container_id("/docker/" + id.substr(1)), std::nullopt);
    EXPECT_EQ(container_id("/docker/" + std::string(64, 'g')), std::nullopt);
    EXPECT_EQ(container_id("/user.slice"), std::nullopt);
}

// ------------------------------------------------------------------ sock_diag

SocketTuple v4(const char* local, std::uint16_t lport, const char* remote, std::uint16_t rport) {
    SocketTuple t;
    t.family = Family::V4;
    inet_pton(AF_INET, local, t.local.data());
    inet_pton(AF_INET, remote, t.remote.data());
    t.lport = lport;
    t.rport = rport;
    return t;
}

SocketTuple v6(const char* local, std::uint16_t lport, const char* remote, std::uint16_t rport) {
    SocketTuple t;
    t.family = Family::V6;
    inet_pton(AF_INET6, local, t.local.data());
    inet_pton(AF_INET6, remote, t.remote.data());
    t.lport = lport;
    t.rport = rport;
    return t;
}

TEST(Process, ExactRequestEncoding) {
    std::vector<std::uint8_t> buf;
    const SocketTuple t = v4("10.0.0.1", 43512, "10.0.0.2", 80);
    diag_request(buf, 7, Family::V4, &t);
    SocketTuple t6 = v6("fe80::1", 51000, "fe80::2", 443);
    t6.ifindex = 5;  // link-local: only found on its interface
    diag_request(buf, 8, Family::V6, &t6);
    constexpr std::size_t one = NLMSG_LENGTH(sizeof(inet_diag_req_v2));
    ASSERT_EQ(buf.size(), 2 * NLMSG_ALIGN(one));

    const auto* h = reinterpret_cast<const nlmsghdr*>(buf.data());
    EXPECT_EQ(h->nlmsg_len, one);
    EXPECT_EQ(h->nlmsg_type, SOCK_DIAG_BY_FAMILY);
    EXPECT_EQ(h->nlmsg_flags, NLM_F_REQUEST);  // one answer, not a dump
    EXPECT_EQ(h->nlmsg_seq, 7u);
    const auto* r = reinterpret_cast<const inet_diag_req_v2*>(NLMSG_DATA(h));
    EXPECT_EQ(r->sdiag_family, AF_INET);
    EXPECT_EQ(r->sdiag_protocol, IPPROTO_TCP);
    EXPECT_EQ(ntohs(r->id.idiag_sport), 43512);  // the socket's own end is "src"
    EXPECT_EQ(ntohs(r->id.idiag_dport), 80);
    EXPECT_EQ(r->id.idiag_src[0], inet_addr("10.0.0.1"));
    EXPECT_EQ(r->id.idiag_dst[0], inet_addr("10.0.0.2"));
    EXPECT_EQ(r->id.idiag_src[1], 0u);
    EXPECT_EQ(r->id.idiag_cookie[0], INET_DIAG_NOCOOKIE);
    EXPECT_EQ(r->id.idiag_cookie[1], INET_DIAG_NOCOOKIE);
    EXPECT_EQ(r->id.idiag_if, 0u);  // any interface

    const auto* h6 = reinterpret_cast<const nlmsghdr*>(buf.data() + NLMSG_ALIGN(one));
    EXPECT_EQ(h6->nlmsg_seq, 8u);
    const auto* r6 = reinterpret_cast<const inet_diag_req_v2*>(NLMSG_DATA(h6));
    EXPECT_EQ(r6->sdiag_family, AF_INET6);
    EXPECT_EQ(std::memcmp(r6->id.idiag_src, t6.local.data(), 16), 0);
    EXPECT_EQ(std::memcmp(r6->id.idiag_dst, t6.remote.data(), 16), 0);
    EXPECT_EQ(ntohs(r6->id.idiag_sport), 51000);
    EXPECT_EQ(r6->id.idiag_if, 5u);
}

TEST(Process, DumpRequestEncoding) {
    std::vector<std::uint8_t> buf;
    diag_request(buf, 3, Family::V6, nullptr);
    const auto* h = reinterpret_cast<const nlmsghdr*>(buf.data());
    EXPECT_EQ(h->nlmsg_flags, NLM_F_REQUEST | NLM_F_DUMP);
    const auto* r = reinterpret_cast<const inet_diag_req_v2*>(NLMSG_DATA(h));
    EXPECT_EQ(r->sdiag_family, AF_INET6);
    // Every state but LISTEN (10), TIME_WAIT (6) and NEW_SYN_RECV (12): those own no file.
    EXPECT_TRUE(r->idiag_states & (1u << 1));  // ESTABLISHED
    EXPECT_TRUE(r->idiag_states & (1u << 2));  // SYN_SENT
    EXPECT_TRUE(r->idiag_states & (1u << 8));  // CLOSE_WAIT
    EXPECT_FALSE(r->idiag_states & (1u << 10));
    EXPECT_FALSE(r->idiag_states & (1u << 6));
    EXPECT_FALSE(r->idiag_states & (1u << 12));
    EXPECT_EQ(r->id.idiag_sport, 0);
    EXPECT_EQ(r->id.idiag_src[0], 0u);
}

// Appends one message as the kernel would send it.
void put_msg(std::vector<std::uint8_t>& buf, std::uint16_t type, std::uint32_t seq,
             const void* payload, std::size_t len) {
    const std::size_t at = buf.size();
    buf.resize(at + NLMSG_ALIGN(NLMSG_LENGTH(len)), 0);
    auto* h = reinterpret_cast<nlmsghdr*>(buf.data() + at);
    h->nlmsg_len = static_cast<std::uint32_t>(NLMSG_LENGTH(len));
    h->nlmsg_type = type;
    h->nlmsg_seq = seq;
    std::memcpy(NLMSG_DATA(h), payload, len);
}

inet_diag_msg diag_msg(int family, const char* src, std::uint16_t sport, const char* dst,
                       std::uint16_t dport, std::uint8_t state, std::uint32_t inode) {
    inet_diag_msg m{};
    m.idiag_family = static_cast<std::uint8_t>(family);
    m.idiag_state = state;
    inet_pton(family, src, m.id.idiag_src);
    inet_pton(family, dst, m.id.idiag_dst);
    m.id.idiag_sport = htons(sport);
    m.id.idiag_dport = htons(dport);
    m.idiag_inode = inode;
    return m;
}

TEST(Process, DecodeAnswers) {
    std::vector<std::uint8_t> buf;
    const inet_diag_msg a = diag_msg(AF_INET, "10.0.0.2", 80, "10.0.0.1", 43512, 1, 991);
    put_msg(buf, SOCK_DIAG_BY_FAMILY, 11, &a, sizeof a);
    const inet_diag_msg b = diag_msg(AF_INET6, "fd00::2", 443, "fd00::1", 51000, 1, 992);
    put_msg(buf, SOCK_DIAG_BY_FAMILY, 12, &b, sizeof b);
    // An accepted socket of a dual-stack listener: IPv4 peer in a v6 socket.
    const inet_diag_msg c =
        diag_msg(AF_INET6, "::ffff:10.0.0.2", 8080, "::ffff:10.0.0.9", 40000, 1, 993);
    put_msg(buf, SOCK_DIAG_BY_FAMILY, 13, &c, sizeof c);
    nlmsgerr e{};
    e.error = -ENOENT;
    put_msg(buf, NLMSG_ERROR, 14, &e, sizeof e);
    // A message cut short is skipped, not read past its end.
    put_msg(buf, SOCK_DIAG_BY_FAMILY, 15, &a, 8);

    DiagAnswer out;
    decode_diag(buf.data(), buf.size(), out);
    ASSERT_EQ(out.sockets.size(), 3u);
    EXPECT_EQ(out.sockets[0].seq, 11u);
    EXPECT_EQ(out.sockets[0].inode, 991u);
    EXPECT_EQ(out.sockets[0].state, 1);
    EXPECT_EQ(out.sockets[0].tuple, v4("10.0.0.2", 80, "10.0.0.1", 43512));
    EXPECT_EQ(out.sockets[1].tuple, v6("fd00::2", 443, "fd00::1", 51000));
    EXPECT_EQ(out.sockets[1].inode, 992u);
    EXPECT_EQ(out.sockets[2].tuple, v4("10.0.0.2", 8080, "10.0.0.9", 40000));  // as IPv4
    ASSERT_EQ(out.errors.size(), 1u);
    EXPECT_EQ(out.errors[0], std::make_pair(14u, -ENOENT));
    EXPECT_FALSE(out.done);

    DiagAnswer end;
    const int zero = 0;
    put_msg(buf, NLMSG_DONE, 16, &zero, sizeof zero);
    decode_diag(buf.data(), buf.size(), end);
    EXPECT_TRUE(end.done);
    // A truncated datagram stops the walk instead of overrunning it.
    DiagAnswer cut;
    decode_diag(buf.data(), NLMSG_ALIGN(NLMSG_LENGTH(sizeof a)) + 10, cut);
    EXPECT_EQ(cut.sockets.size(), 1u);
}

TEST(Process, TupleHashKeysOnEndpoints) {
    const SocketTupleHash h;
    EXPECT_EQ(h(v4("10.0.0.1", 1, "10.0.0.2", 2)), h(v4("10.0.0.1", 1, "10.0.0.2", 2)));
    EXPECT_NE(h(v4("10.0.0.1", 1, "10.0.0.2", 2)), h(v4("10.0.0.2", 2, "10.0.0.1", 1)));
    EXPECT_NE(h(v4("10.0.0.1", 1, "10.0.0.2", 2)), h(v4("10.0.0.1", 1, "10.0.0.2", 3)));
}

// ------------------------------------------------------------------ the cache

// A live sample for client 10.0.0.1:port -> server 10.0.0.2:80 in `slot`.
FlowSample sample(std::uint32_t slot, std::uint16_t port, bool local_client = true) {
    FlowSample s;
    tt_flow_key k{};
    k.family = TT_FAMILY_INET;
    inet_pton(AF_INET, "10.0.0.1", k.addr_a);
    inet_pton(AF_INET, "10.0.0.2", k.addr_b);
    k.port_a = htons(port);
    k.port_b = htons(80);
    k.ifindex = 3;
    s.key = k;
    s.has_info = true;
    s.info.client = TT_DIR_AB;
    s.info.flags = TT_F_SYN_SEEN | (local_client ? TT_F_LOCAL_CLIENT : 0);
    s.bytes[0] = 100;
    s.ref = SlotRef{slot, 1};
    return s;
}

// A scripted lookup: records what it was asked; owners for given client ports.
struct FakeLookup {
    std::vector<std::vector<OwnerQuery>> calls;
    std::map<std::uint16_t, std::uint32_t> pid_of_port;  // client port -> pid
    std::set<std::uint16_t> wait_ports;                  // answer Wait for these
    void operator()(std::vector<OwnerQuery>& qs) {
        calls.push_back(qs);
        for (OwnerQuery& q : qs) {
            if (wait_ports.count(q.conn.lport)) {
                q.result = OwnerQuery::Result::Wait;
            } else if (const auto it = pid_of_port.find(q.conn.lport); it != pid_of_port.end()) {
                q.result = OwnerQuery::Result::Found;
                q.owner = std::make_shared<Owner>(Owner{it->second, "curl", "/user.slice",
                                                        "0e9c7f6a-1b2c-4d3e-8f9a-0b1c2d3e4f5a",
                                                        std::string(64, 'a'), 4026532000u});
                q.owner_client = q.conn.lport % 2 == 0;  // per connection, not per owner
            } else {
                q.result = OwnerQuery::Result::Retry;
            }
        }
    }
};

struct CacheTest : ::testing::Test {
    std::shared_ptr<FakeLookup> fake = std::make_shared<FakeLookup>();
    ProcessCache cache{[f = fake](std::vector<OwnerQuery>& q) { (*f)(q); }};
    std::vector<FlowSample> samples;
    std::vector<std::uint32_t> changed;
    std::vector<SlotRef> idle;

    void report() {
        cache.update(samples, changed, idle, samples.size(), finder_of(samples, samples.size()));
    }
    // The next report: every sample seen before, none changed.
    void quiet() {
        for (auto& s : samples) s.set_prev(s.counts());
        changed.clear();
        idle.clear();
    }
};

TEST_F(CacheTest, LooksUpOnlyNewConnections) {
    fake->pid_of_port = {{40000, 321}, {40001, 322}};
    samples = {sample(0, 40000), sample(1, 40001)};
    changed = {0, 1};
    report();
    ASSERT_EQ(fake->calls.size(), 1u);
    ASSERT_EQ(fake->calls[0].size(), 2u);
    // Oriented client -> server; the hint says the client is local.
    EXPECT_EQ(fake->calls[0][0].conn, v4("10.0.0.1", 40000, "10.0.0.2", 80));
    EXPECT_EQ(fake->calls[0][0].conn.ifindex, 3u);  // the flow's interface
    EXPECT_TRUE(fake->calls[0][0].local_client);

    FlowRow row;
    cache.fill(SlotRef{0, 1}, row);
    EXPECT_EQ(row.pid, 321u);
    EXPECT_EQ(row.comm, "curl");
    EXPECT_EQ(row.cgroup, "/user.slice");
    EXPECT_EQ(row.pod_uid, "0e9c7f6a-1b2c-4d3e-8f9a-0b1c2d3e4f5a");
    EXPECT_EQ(row.container_id, std::string(64, 'a'));
    EXPECT_EQ(row.netns, 4026532000u);
    EXPECT_TRUE(row.owner_client);
    cache.fill(SlotRef{1, 1}, row);
    EXPECT_EQ(row.pid, 322u);
    EXPECT_FALSE(row.owner_client);
    cache.fill(SlotRef{0, 1}, row);
    cache.fill(SlotRef{1, 3}, row);  // another generation of that slot
    EXPECT_EQ(row.pid, std::nullopt);
    EXPECT_FALSE(row.owner_client);
    EXPECT_EQ(row.comm, "");
    EXPECT_EQ(row.pod_uid, "");  // every owner field cleared
    EXPECT_EQ(row.container_id, "");
    EXPECT_EQ(row.netns, std::nullopt);

    // Moved (counters changed) but not new: no lookup.
    quiet();
    samples[0].bytes[0] += 50;
    changed = {0};
    report();
    quiet();
    report();
    EXPECT_EQ(fake->calls.size(), 1u);
    EXPECT_EQ(cache.known(), 2u);
    EXPECT_EQ(cache.lookups(), 2u);
}

TEST_F(CacheTest, RetriesANotFoundConnectionABoundedNumberOfTimes) {
    samples = {sample(0, 40000, false)};
    changed = {0};
    report();
    EXPECT_FALSE(fake->calls[0][0].local_client);
    for (int i = 0; i < 10; ++i) {
        quiet();
        report();
    }
    EXPECT_EQ(fake->calls.size(), ProcessCache::kMaxTries);
    EXPECT_EQ(cache.pending(), 0u);
    // Given up: moving again does not make it new.
    for (int i = 0; i < 3; ++i) {
        quiet();
        samples[0].bytes[1] += 10;
        changed = {0};
        report();
    }
    EXPECT_EQ(fake->calls.size(), ProcessCache::kMaxTries);
    EXPECT_EQ(cache.lookups(), ProcessCache::kMaxTries);
    FlowRow row;
    cache.fill(SlotRef{0, 1}, row);
    EXPECT_EQ(row.pid, std::nullopt);
}

TEST_F(CacheTest, FoundOnARetry) {
    samples = {sample(0, 40000)};
    changed = {0};
    report();  // its socket is not there yet
    EXPECT_EQ(cache.find(SlotRef{0, 1}), nullptr);
    fake->pid_of_port = {{40000, 555}};
    quiet();
    samples[0].bytes[0] += 10;  // moving while pending: still asked once per report
    changed = {0};
    report();
    ASSERT_EQ(fake->calls.size(), 2u);
    EXPECT_EQ(fake->calls[1].size(), 1u);
    ASSERT_NE(cache.find(SlotRef{0, 1}), nullptr);
    EXPECT_EQ(cache.find(SlotRef{0, 1})->pid, 555u);
    quiet();
    report();
    EXPECT_EQ(fake->calls.size(), 2u);  // found: asked no more
}

TEST_F(CacheTest, ABurstIsLookedUpABatchAReportOldestFirst) {
    // More new connections than one report looks up: the rest wait their turn,
    // and those not found go behind them.
    const std::size_t batch = ProcessCache::kLookupBatch;
    const auto port_of = [batch](std::size_t i) {  // distinct for the three after the batch
        return static_cast<std::uint16_t>(i < batch ? 1 + i % 65000 : 65001 + (i - batch));
    };
    for (std::size_t i = 0; i < batch + 3; ++i) {
        samples.push_back(sample(static_cast<std::uint32_t>(i), port_of(i)));
        changed.push_back(static_cast<std::uint32_t>(i));
    }
    report();
    ASSERT_EQ(fake->calls.size(), 1u);
    EXPECT_EQ(fake->calls[0].size(), batch);
    EXPECT_EQ(fake->calls[0][0].conn.lport, port_of(0));
    EXPECT_EQ(cache.pending(), batch + 3);  // none found

    // The three left out come first now, then the first batch again.
    for (std::size_t i = batch; i < batch + 3; ++i) fake->pid_of_port[port_of(i)] = 7;
    quiet();
    report();
    ASSERT_EQ(fake->calls.size(), 2u);
    ASSERT_EQ(fake->calls[1].size(), batch);
    for (std::size_t k = 0; k < 3; ++k) EXPECT_EQ(fake->calls[1][k].conn.lport, port_of(batch + k));
    EXPECT_EQ(fake->calls[1][3].conn.lport, port_of(0));
    ASSERT_NE(cache.find(SlotRef{static_cast<std::uint32_t>(batch), 1}), nullptr);
    EXPECT_EQ(cache.find(SlotRef{static_cast<std::uint32_t>(batch), 1})->pid, 7u);
    EXPECT_EQ(cache.pending(), batch);  // the three found

    // A pending connection no longer live is dropped unasked.
    samples.resize(batch - 1);
    quiet();
    report();
    ASSERT_EQ(fake->calls.size(), 3u);
    EXPECT_EQ(fake->calls[2].size(), batch - 1);
    EXPECT_EQ(cache.lookups(), 3 * batch - 1);
}

TEST_F(CacheTest, WaitingForARescanCostsNoTry) {
    fake->wait_ports = {40000};
    samples = {sample(0, 40000)};
    changed = {0};
    report();
    for (int i = 0; i < 10; ++i) {
        quiet();
        report();
    }
    EXPECT_EQ(fake->calls.size(), 11u);
    EXPECT_EQ(cache.pending(), 1u);
    fake->wait_ports.clear();
    fake->pid_of_port = {{40000, 9}};
    quiet();
    report();
    EXPECT_EQ(cache.find(SlotRef{0, 1})->pid, 9u);
    EXPECT_EQ(cache.pending(), 0u);
}

TEST_F(CacheTest, ForgetsFinishedAndIdleConnectionsAfterTheirLastRow) {
    fake->pid_of_port = {{40000, 1}, {40001, 2}, {40002, 3}};
    samples = {sample(0, 40000), sample(1, 40001), sample(2, 40002)};
    changed = {0, 1, 2};
    report();
    EXPECT_EQ(cache.known(), 3u);

    // Report 2: slot 0 closes (its final sample follows the live ones), slot 1 idles out.
    quiet();
    FlowSample closed = samples[0];
    closed.finished = true;
    samples.erase(samples.begin());
    samples.push_back(closed);
    changed = {2};
    idle = {SlotRef{1, 1}};
    cache.update(samples, changed, idle, 2, finder_of(samples, 2));
    // Shown this once more, with their owners.
    EXPECT_EQ(cache.find(SlotRef{0, 1})->pid, 1u);
    EXPECT_EQ(cache.find(SlotRef{1, 1})->pid, 2u);

    // Report 3: gone.
    samples = {samples[1]};
    quiet();
    report();
    EXPECT_EQ(cache.find(SlotRef{0, 1}), nullptr);
    EXPECT_EQ(cache.find(SlotRef{1, 1}), nullptr);
    EXPECT_EQ(cache.find(SlotRef{2, 1})->pid, 3u);
    EXPECT_EQ(cache.known(), 1u);
    EXPECT_EQ(fake->calls.size(), 1u);
}

TEST_F(CacheTest, StopsRetryingAConnectionThatEnded) {
    samples = {sample(0, 40000)};
    changed = {0};
    report();
    EXPECT_EQ(cache.pending(), 1u);
    quiet();
    samples[0].finished = true;
    changed = {0};
    report();
    EXPECT_EQ(cache.pending(), 0u);
    EXPECT_EQ(fake->calls.size(), 1u);  // not asked again for a finished one
}

TEST_F(CacheTest, NeverLooksUpConnectionsFirstSeenFinished) {
    FlowSample s = sample(0, 40000);
    s.finished = true;
    samples = {s};
    changed = {0};
    cache.update(samples, changed, idle, 0, finder_of(samples, 0));
    EXPECT_TRUE(fake->calls.empty());
}

TEST(ProcessCacheUpkeep, RunsEveryReportWithOrWithoutLookups) {
    int lookups = 0, upkeeps = 0;
    ProcessCache cache(
        [&](std::vector<OwnerQuery>& qs) {
            ++lookups;
            for (OwnerQuery& q : qs) {
                q.result = OwnerQuery::Result::Found;
                q.owner = std::make_shared<Owner>();
            }
        },
        {}, [&] { ++upkeeps; });
    std::vector<FlowSample> samples = {sample(0, 40000)};
    std::vector<std::uint32_t> changed = {0};
    cache.update(samples, changed, {}, 1, finder_of(samples, 1));
    EXPECT_EQ((std::pair{lookups, upkeeps}), (std::pair{1, 1}));
    // Nothing new: no lookup, the upkeep still runs (peer namespaces are let go of).
    cache.update({}, {}, {}, 0, finder_of(samples, 0));
    cache.update({}, {}, {}, 0, finder_of(samples, 0));
    EXPECT_EQ((std::pair{lookups, upkeeps}), (std::pair{1, 3}));
}

TEST_F(CacheTest, SweepsEntriesWhoseEndWasNeverReported) {
    // More owners than live flows (close events lost): swept against the live ones.
    for (std::uint32_t i = 0; i < 1100; ++i) {
        fake->pid_of_port[static_cast<std::uint16_t>(20000 + i)] = 100 + i;
        samples.push_back(sample(i, static_cast<std::uint16_t>(20000 + i)));
        changed.push_back(i);
    }
    report();
    EXPECT_EQ(cache.known(), 1100u);
    quiet();
    samples.resize(10);  // 1090 vanished without a close event
    report();
    EXPECT_EQ(cache.known(), 10u);
    EXPECT_EQ(cache.find(SlotRef{5, 1})->pid, 105u);
}

}  // namespace
}  // namespace tcptrack

// ------------------------------------------------------------------ the kernel's answers
// sock_diag and /proc/self/fd need no privileges: real sockets of this process
// on loopback, looked up as tcptrack does.

#include <sys/socket.h>
#include <unistd.h>

namespace tcptrack {
namespace {

struct Fd {
    int fd = -1;
    explicit Fd(int f) : fd(f) {}
    ~Fd() { reset(); }
    void reset() {
        if (fd >= 0) close(fd);
        fd = -1;
    }
};

std::uint64_t inode_of(int fd) {
    char link[64] = {};
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    const ssize_t n = readlink(path.c_str(), link, sizeof link - 1);
    return n > 0 ? socket_inode(std::string_view(link, static_cast<std::size_t>(n))).value_or(0)
                 : 0;
}

std::uint16_t port_of(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    return ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                          : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

// A connected pair on loopback: listener on `listen_addr` (family lfam), client
// over IPv4 or IPv6.
struct Loop {
    Fd l, c, s;
    std::uint16_t lport = 0, cport = 0;
    Loop(int lfam, const char* listen_addr, int cfam, const char* connect_addr)
        : l(socket(lfam, SOCK_STREAM, 0)), c(socket(cfam, SOCK_STREAM, 0)), s(-1) {
        sockaddr_storage ss{};
        socklen_t len;
        if (lfam == AF_INET6) {
            auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
            a->sin6_family = AF_INET6;
            inet_pton(AF_INET6, listen_addr, &a->sin6_addr);
            const int off = 0;
            setsockopt(l.fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
            len = sizeof *a;
        } else {
            auto* a = reinterpret_cast<sockaddr_in*>(&ss);
            a->sin_family = AF_INET;
            inet_pton(AF_INET, listen_addr, &a->sin_addr);
            len = sizeof *a;
        }
        if (bind(l.fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(l.fd, 4) != 0) return;
        lport = port_of(l.fd);
        sockaddr_storage to{};
        if (cfam == AF_INET6) {
            auto* a = reinterpret_cast<sockaddr_in6*>(&to);
            a->sin6_family = AF_INET6;
            a->sin6_port = htons(lport);
            inet_pton(AF_INET6, connect_addr, &a->sin6_addr);
            len = sizeof *a;
        } else {
            auto* a = reinterpret_cast<sockaddr_in*>(&to);
            a->sin_family = AF_INET;
            a->sin_port = htons(lport);
            inet_pton(AF_INET, connect_addr, &a->sin_addr);
            len = sizeof *a;
        }
        if (connect(c.fd, reinterpret_cast<sockaddr*>(&to), len) != 0) return;
        s.fd = accept(l.fd, nullptr, nullptr);
        cport = port_of(c.fd);
    }
    bool ok() const { return s.fd >= 0; }
};

std::unique_ptr<SystemOwners> system_owners() {
    try {
        return std::make_unique<SystemOwners>();
    } catch (const std::exception&) {
        return nullptr;
    }
}

OwnerQuery loop_query(Family f, const char* client, std::uint16_t cport, const char* server,
                      std::uint16_t sport, bool local_client) {
    OwnerQuery q;
    q.conn = f == Family::V4 ? v4(client, cport, server, sport) : v6(client, cport, server, sport);
    q.local_client = local_client;
    return q;
}

TEST(SystemOwners, FindsThisProcessBothWaysIPv4AndIPv6) {
    auto sys = system_owners();
    if (!sys) GTEST_SKIP() << "no sock_diag here";
    Loop v4loop(AF_INET, "127.0.0.1", AF_INET, "127.0.0.1");
    Loop v6loop(AF_INET6, "::1", AF_INET6, "::1");
    ASSERT_TRUE(v4loop.ok() && v6loop.ok());

    // Inodes of both ends, asked exactly and from a dump, are those of our fds.
    const std::vector<SocketTuple> tuples = {
        v4("127.0.0.1", v4loop.cport, "127.0.0.1", v4loop.lport),  // the client's end
        v4("127.0.0.1", v4loop.lport, "127.0.0.1", v4loop.cport),  // the accepted end
        v6("::1", v6loop.cport, "::1", v6loop.lport),
        v6("::1", v6loop.lport, "::1", v6loop.cport),
        v4("127.0.0.1", v4loop.cport, "127.0.0.1", 1),  // no such socket
    };
    const std::vector<std::uint64_t> want = {inode_of(v4loop.c.fd), inode_of(v4loop.s.fd),
                                             inode_of(v6loop.c.fd), inode_of(v6loop.s.fd), 0};
    ASSERT_NE(want[0], 0u);
    std::vector<std::uint64_t> exact, dump;
    sys->inodes_exact(tuples, exact);
    sys->inodes_dump(tuples, dump);
    EXPECT_EQ(exact, want);
    EXPECT_EQ(dump, want);
    // The listener is not taken for a connection to its port (exact lookups fall back to it).
    std::vector<std::uint64_t> none;
    sys->inodes_exact({v4("127.0.0.1", v4loop.lport, "127.0.0.1", 9)}, none);
    EXPECT_EQ(none, std::vector<std::uint64_t>{0});

    EXPECT_GT(sys->scan_proc(), 3u);
    std::vector<OwnerQuery> qs = {
        loop_query(Family::V4, "127.0.0.1", v4loop.cport, "127.0.0.1", v4loop.lport, true),
        loop_query(Family::V6, "::1", v6loop.cport, "::1", v6loop.lport, false),
    };
    (*sys)(qs);
    // The hinted end first: the client's socket for the first, the server's for the second.
    EXPECT_TRUE(qs[0].owner_client);
    EXPECT_FALSE(qs[1].owner_client);
    for (const OwnerQuery& q : qs) {
        ASSERT_EQ(q.result, OwnerQuery::Result::Found);
        EXPECT_EQ(q.owner->pid, static_cast<std::uint32_t>(getpid()));
        char comm[32] = {};
        FILE* f = std::fopen("/proc/self/comm", "r");
        ASSERT_TRUE(f && std::fgets(comm, sizeof comm, f));
        std::fclose(f);
        EXPECT_EQ(q.owner->comm + "\n", comm);
    }
}

// More new connections than kDumpAbove in one report: answered from one dump
// per family, each from the end it hints first or else the other (also when
// the hinted end lingers without a file), as the exact requests answer a
// few; connections without a socket are not found.
TEST(SystemOwners, ManyConnectionsAreAnsweredFromADumpBothWays) {
    auto sys = system_owners();
    if (!sys) GTEST_SKIP() << "no sock_diag here";
    Loop v4loop(AF_INET, "127.0.0.1", AF_INET, "127.0.0.1");
    Loop v6loop(AF_INET6, "::1", AF_INET6, "::1");
    Loop orphan(AF_INET, "127.0.0.1", AF_INET, "127.0.0.1");
    ASSERT_TRUE(v4loop.ok() && v6loop.ok() && orphan.ok());
    orphan.c.reset();  // its client end in FIN_WAIT2, without a file (inode 0)
    EXPECT_GT(sys->scan_proc(), 3u);
    std::vector<OwnerQuery> qs;
    // Nobody's: a flood of SYNs from addresses this host has no socket for.
    for (std::uint16_t i = 0; qs.size() <= SystemOwners::kDumpAbove; ++i)
        qs.push_back(loop_query(Family::V4, "198.18.0.1", static_cast<std::uint16_t>(1000 + i),
                                "127.0.0.1", v4loop.lport, false));
    const std::size_t v4c = qs.size(), v4s = v4c + 1, v6c = v4c + 2, v6s = v4c + 3, orph = v4c + 4;
    qs.push_back(loop_query(Family::V4, "127.0.0.1", v4loop.cport, "127.0.0.1", v4loop.lport,
                            true));  // the client's end hinted: found there
    qs.push_back(loop_query(Family::V4, "127.0.0.1", v4loop.cport, "127.0.0.1", v4loop.lport,
                            false));  // the server's end hinted: found there
    qs.push_back(loop_query(Family::V6, "::1", v6loop.cport, "::1", v6loop.lport, true));
    qs.push_back(loop_query(Family::V6, "::1", v6loop.cport, "::1", v6loop.lport, false));
    qs.push_back(loop_query(Family::V4, "127.0.0.1", orphan.cport, "127.0.0.1", orphan.lport,
                            true));  // hinted end without a file: the server's answers
    (*sys)(qs);
    for (std::size_t i = 0; i < v4c; ++i)
        ASSERT_NE(qs[i].result, OwnerQuery::Result::Found) << "query " << i;
    for (const std::size_t i : {v4c, v4s, v6c, v6s, orph}) {
        ASSERT_EQ(qs[i].result, OwnerQuery::Result::Found) << "query " << i;
        EXPECT_EQ(qs[i].owner->pid, static_cast<std::uint32_t>(getpid()));
    }
    EXPECT_TRUE(qs[v4c].owner_client);
    EXPECT_FALSE(qs[v4s].owner_client);
    EXPECT_TRUE(qs[v6c].owner_client);
    EXPECT_FALSE(qs[v6s].owner_client);
    EXPECT_FALSE(qs[orph].owner_client) << "found as the server's socket, at the other end";
}

TEST(SystemOwners, TriesTheOtherEndWhenTheHintedOneHasNoFile) {
    auto sys = system_owners();
    if (!sys) GTEST_SKIP() << "no sock_diag here";
    Loop lp(AF_INET, "127.0.0.1", AF_INET, "127.0.0.1");
    ASSERT_TRUE(lp.ok());
    // The client closes: its end lingers in FIN_WAIT2 without a file (inode 0);
    // the accepted end, in CLOSE_WAIT, is still ours.
    lp.c.reset();
    std::vector<std::uint64_t> got;
    sys->inodes_exact({v4("127.0.0.1", lp.cport, "127.0.0.1", lp.lport)}, got);
    ASSERT_EQ(got[0], 0u);  // orphaned at close()
    std::vector<OwnerQuery> qs = {
        loop_query(Family::V4, "127.0.0.1", lp.cport, "127.0.0.1", lp.lport, true)};
    (*sys)(qs);
    ASSERT_EQ(qs[0].result, OwnerQuery::Result::Found);
    EXPECT_EQ(qs[0].owner->pid, static_cast<std::uint32_t>(getpid()));
    EXPECT_FALSE(qs[0].owner_client);  // found as the server's socket (per-pod direction)
}

TEST(SystemOwners, OnlyMissesLookBeyondTheirInterface) {
    auto sys = system_owners();
    if (!sys) GTEST_SKIP() << "no sock_diag here";
    Loop lp(AF_INET, "127.0.0.1", AF_INET, "127.0.0.1");
    ASSERT_TRUE(lp.ok());
    const std::uint32_t lo = if_nametoindex("lo");
    // Found here: no peer lookup at all.
    std::vector<OwnerQuery> found = {
        loop_query(Family::V4, "127.0.0.1", lp.cport, "127.0.0.1", lp.lport, true)};
    found[0].conn.ifindex = lo;
    (*sys)(found);
    ASSERT_EQ(found[0].result, OwnerQuery::Result::Found);
    EXPECT_EQ(sys->peer_stats().links, 0u);
    // Two misses on one interface: it is asked for its peer once; lo has none,
    // so no namespace is asked and none is scanned for.
    std::vector<OwnerQuery> misses = {
        loop_query(Family::V4, "127.0.0.1", 1, "127.0.0.1", 2, true),
        loop_query(Family::V4, "127.0.0.1", 3, "127.0.0.1", 4, false)};
    for (OwnerQuery& q : misses) q.conn.ifindex = lo;
    (*sys)(misses);
    EXPECT_EQ(misses[0].result, OwnerQuery::Result::Retry);
    EXPECT_EQ(misses[1].result, OwnerQuery::Result::Retry);
    const SystemOwners::PeerStats st = sys->peer_stats();
    EXPECT_EQ(st.links, 1u);
    EXPECT_EQ(st.queries, 0u);
    EXPECT_EQ(st.scans, 0u);
    EXPECT_EQ(st.held, 0u);
}

TEST(SystemOwners, DualStackListenersAcceptedSocketAsIPv4) {
    auto sys = system_owners();
    if (!sys) GTEST_SKIP() << "no sock_diag here";
    Loop lp(AF_INET6, "::", AF_INET, "127.0.0.1");  // accepted socket: AF_INET6, ::ffff:127.0.0.1
    ASSERT_TRUE(lp.ok());
    const SocketTuple accepted = v4("127.0.0.1", lp.lport, "127.0.0.1", lp.cport);
    std::vector<std::uint64_t> exact, dump;
    sys->inodes_exact({accepted}, exact);
    sys->inodes_dump({accepted}, dump);
    EXPECT_EQ(exact[0], inode_of(lp.s.fd));
    EXPECT_EQ(dump[0], inode_of(lp.s.fd));
    EXPECT_NE(exact[0], 0u);
}

}  // namespace
}  // namespace tcptrack
