// SPDX-License-Identifier: MIT
// The IPFIX exporter against crafted frames: what it sends to a local UDP
// socket is parsed here by hand (RFC 7011 message, template and data sets),
// independently of libfixbuf, which encoded it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <thread>

#include "handshake_times.hpp"
#include "keys.hpp"
#include "output/ipfix.hpp"
#include "report/flow_model.hpp"
#include "sys/error.hpp"

using namespace tcptrack;

namespace {

using FieldId =
    std::pair<std::uint32_t, std::uint16_t>;  // (PEN, element id without the enterprise bit)
struct Record {
    std::uint16_t tid = 0;
    std::map<FieldId, std::vector<std::uint8_t>> f;
    bool has(std::uint32_t pen, std::uint16_t id) const { return f.count({pen, id}) != 0; }
    std::uint64_t u(std::uint32_t pen, std::uint16_t id) const {
        auto it = f.find({pen, id});
        if (it == f.end())
            throw std::runtime_error("no field " + std::to_string(pen) + "/" + std::to_string(id));
        std::uint64_t v = 0;
        for (auto b : it->second) v = (v << 8) | b;
        return v;
    }
    std::vector<std::uint8_t> bytes(std::uint16_t id) const { return f.at({0, id}); }
    std::string str(std::uint32_t pen, std::uint16_t id) const {
        const auto& b = f.at({pen, id});
        return std::string(b.begin(), b.end());
    }
};

constexpr std::uint32_t kRev = 29305;  // RFC 5103 reverse PEN
// IANA element ids
constexpr std::uint16_t kOctets = 1, kPackets = 2, kProto = 4, kFlags = 6, kSport = 7, kSrc4 = 8,
                        kDport = 11, kDst4 = 12, kSrc6 = 27, kDst6 = 28, kEndReason = 136,
                        kStartMs = 152, kEndMs = 153, kBiflowDir = 239;

struct Collector {
    int fd = -1;
    std::uint16_t port = 0;
    std::map<std::uint16_t, std::vector<std::pair<FieldId, std::uint16_t>>> templates;
    std::vector<Record> records;
    std::uint64_t messages = 0, template_sets = 0;
    std::uint32_t last_seq = 0;

    Collector() {
        fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        int sz = 8 << 20;
        ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        socklen_t l = sizeof a;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &l);
        port = ntohs(a.sin_port);
    }
    ~Collector() { ::close(fd); }
    std::string url() const { return "udp://127.0.0.1:" + std::to_string(port); }

    static std::uint16_t be16(const std::uint8_t* p) {
        return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
    }
    static std::uint32_t be32(const std::uint8_t* p) {
        return std::uint32_t{be16(p)} << 16 | be16(p + 2);
    }

    void parse(const std::uint8_t* m, std::size_t n) {
        ASSERT_GE(n, 16u);
        ASSERT_EQ(be16(m), 10) << "IPFIX version";
        ASSERT_EQ(be16(m + 2), n) << "message length";
        last_seq = be32(m + 8);
        ++messages;
        std::size_t off = 16;
        while (off + 4 <= n) {
            const std::uint16_t set = be16(m + off), len = be16(m + off + 2);
            ASSERT_GE(len, 4);
            ASSERT_LE(off + len, n);
            const std::uint8_t* p = m + off + 4;
            const std::uint8_t* e = m + off + len;
            if (set == 2) {
                ++template_sets;
                while (p + 4 <= e) {
                    const std::uint16_t tid = be16(p), count = be16(p + 2);
                    p += 4;
                    auto& t = templates[tid];
                    t.clear();
                    for (int i = 0; i < count; ++i) {
                        std::uint16_t id = be16(p), flen = be16(p + 2);
                        p += 4;
                        std::uint32_t pen = 0;
                        if (id & 0x8000) {
                            pen = be32(p);
                            p += 4;
                            id &= 0x7fff;
                        }
                        t.push_back({{pen, id}, flen});
                    }
                }
            } else if (set >= 256) {
                auto it = templates.find(set);
                ASSERT_NE(it, templates.end()) << "data before its template";
                // Fields of length 65535 are variable-length (RFC 7011 section
                // 7): a length octet, or 255 and a 16-bit length, then the bytes.
                while (p < e && !it->second.empty()) {
                    Record r;
                    r.tid = set;
                    bool whole = true;
                    for (auto& fl : it->second) {
                        std::size_t l = fl.second;
                        if (l == 65535) {
                            if (p >= e) {
                                whole = false;
                                break;
                            }
                            l = *p++;
                            if (l == 255) {
                                if (p + 2 > e) {
                                    whole = false;
                                    break;
                                }
                                l = be16(p);
                                p += 2;
                            }
                        }
                        if (p + l > e) {
                            whole = false;
                            break;
                        }
                        r.f[fl.first].assign(p, p + l);
                        p += l;
                    }
                    if (!whole) break;  // the set's padding
                    records.push_back(std::move(r));
                }
            }
            off += len;
        }
    }

    // Reads what has arrived, waiting up to `ms` for the first datagram.
    void drain(int ms = 2000) {
        std::vector<std::uint8_t> buf(65536);
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, ms) <= 0) return;
        for (;;) {
            const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
            if (n <= 0) {
                if (::poll(&p, 1, 50) <= 0) return;
                continue;
            }
            parse(buf.data(), static_cast<std::size_t>(n));
        }
    }
};

const std::string kIface = "eth0";
const InterfaceNames kIfaces{{0, kIface}};  // the test samples leave key.ifindex 0

constexpr std::uint64_t kSec = 1000000000ull;

// A frame at monotonic `now_ns`, wall clock 1,700,000,000 s + now_ns.
struct Frame {
    Report report;
    std::vector<FlowSample> samples;
    std::size_t live = 0;
    std::vector<std::uint32_t> changed;
    std::vector<SlotRef> idle;
    std::uint64_t now_ns = 0;
    std::function<void(const SlotRef&, FlowRow&)> enrich;  // the enrichers, if any
    ReportFrame get() {
        report.time = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000)) +
                      std::chrono::nanoseconds(now_ns);
        ReportFrame f{
            report,  [] { return RowSource([](FlowRow&) -> const FlowRow* { return nullptr; }); },
            samples, live,
            changed, idle,
            now_ns,  kIfaces};
        f.enrich = enrich;
        return f;
    }
};
std::uint64_t wall_ms_of(std::uint64_t mono_ns) { return 1700000000000ull + mono_ns / 1000000; }

// 10.0.0.1:40000 (client, side A) -> 10.0.0.2:80; handshake seen.
FlowSample v4_flow(std::uint32_t slot, std::uint64_t first_ns) {
    FlowSample s;
    s.key = tt_test::flow_key(AF_INET, "10.0.0.1", 40000, "10.0.0.2", 80, 0);
    s.has_info = true;
    s.info.client = TT_DIR_AB;
    s.info.state = TT_ESTABLISHED;
    s.info.flags = TT_F_SYN_SEEN | TT_F_HS_SEEN;
    s.info.first_ns = first_ns;
    // 250 us: RTT at the server (SYN-ACK -> ACK)
    set_handshake(s.info, first_ns, first_ns + 250000, first_ns + 500000);
    s.ref = {slot, 1};
    return s;
}

void set_counts(FlowSample& s, std::uint64_t ab_bytes, std::uint64_t ba_bytes, std::uint64_t ab_pk,
                std::uint64_t ba_pk, std::uint64_t ab_pl, std::uint64_t ba_pl) {
    s.bytes[0] = ab_bytes, s.bytes[1] = ba_bytes;
    s.packets[0] = ab_pk, s.packets[1] = ba_pk;
    s.payload[0] = ab_pl, s.payload[1] = ba_pl;
}

// An IPFIX output with the error tally it counts into.
struct Ipfix {
    explicit Ipfix(const Options& o, ExportRowOf row_of = {})
        : out(make_ipfix_output(o, tally, std::move(row_of))) {}
    Ipfix(const Ipfix&) = delete;
    Output* operator->() const { return out.get(); }
    std::uint64_t errors() const { return tally.entries().at(0).errors; }

    ExportTally tally;
    std::unique_ptr<Output> out;
};

Ipfix make(const Collector& c, double active_s = 60) {
    Options o;
    o.ipfix = c.url();
    o.ipfix_active_timeout_s = active_s;
    return Ipfix(o);
}

}  // namespace

TEST(Ipfix, DeltasAcrossReportsSumToTotalsAndEndReasons) {
    Collector c;
    auto out = make(c, 5);
    // Report 1 (t = 1 s): new, under the active timeout: no record.
    Frame f;
    f.now_ns = 1 * kSec;
    f.samples = {v4_flow(7, kSec / 2)};
    set_counts(f.samples[0], 1000, 5000, 10, 8, 600, 4500);
    f.live = 1;
    EXPECT_TRUE(out->write(f.get()));
    // Report 2 (t = 6 s): past 5 s since its start: a periodic record (reason 2).
    f.now_ns = 6 * kSec;
    set_counts(f.samples[0], 3000, 9000, 30, 20, 2000, 8000);
    EXPECT_TRUE(out->write(f.get()));
    // Report 3 (t = 8 s): closed (finished sample, state CLOSED, both FINs).
    Frame g;
    g.now_ns = 8 * kSec;
    g.samples = {v4_flow(7, kSec / 2)};
    g.samples[0].finished = true;
    g.samples[0].info.state = TT_CLOSED;
    g.samples[0].info.fin_mask = 3;
    g.samples[0].info.close_ns = 7 * kSec + 500000000;
    set_counts(g.samples[0], 3500, 12000, 36, 26, 2300, 10800);
    g.live = 0;
    EXPECT_TRUE(out->write(g.get()));
    c.drain();

    ASSERT_EQ(c.records.size(), 2u);
    const Record& a = c.records[0];
    const Record& b = c.records[1];
    EXPECT_EQ(a.tid, kIpfixTemplateV4);
    EXPECT_EQ(a.u(0, kEndReason), 2u);
    EXPECT_EQ(b.u(0, kEndReason), 3u);
    // Deltas: the first record the counts so far, the second the rest.
    EXPECT_EQ(a.u(0, kOctets), 1000u + 2000u);  // 3000
    EXPECT_EQ(b.u(0, kOctets), 500u);
    EXPECT_EQ(a.u(0, kOctets) + b.u(0, kOctets), 3500u);
    EXPECT_EQ(a.u(0, kPackets) + b.u(0, kPackets), 36u);
    EXPECT_EQ(a.u(kRev, kOctets) + b.u(kRev, kOctets), 12000u);
    EXPECT_EQ(a.u(kRev, kPackets) + b.u(kRev, kPackets), 26u);
    EXPECT_EQ(b.u(kRev, kOctets), 3000u);
    EXPECT_EQ(a.u(kIpfixPen, kIpfixIePayload) + b.u(kIpfixPen, kIpfixIePayload), 2300u);
    EXPECT_EQ(a.u(kIpfixPen, kIpfixIePayload | 0x4000) + b.u(kIpfixPen, kIpfixIePayload | 0x4000),
              10800u);
    EXPECT_EQ(b.u(kIpfixPen, kIpfixIePayload | 0x4000), 2800u);
    // Wall clock: start at first_ns, the periodic record ends at the report,
    // the next one starts there and ends at close_ns.
    EXPECT_EQ(a.u(0, kStartMs), wall_ms_of(kSec / 2));
    EXPECT_EQ(a.u(0, kEndMs), wall_ms_of(6 * kSec));
    EXPECT_EQ(b.u(0, kStartMs), wall_ms_of(6 * kSec));
    EXPECT_EQ(b.u(0, kEndMs), wall_ms_of(7 * kSec + 500000000));
    // tcpControlBits: SYN + ACK while open, FIN added at the close.
    EXPECT_EQ(a.u(0, kFlags), unsigned(TT_TCP_SYN | TT_TCP_ACK));
    EXPECT_EQ(b.u(0, kFlags), unsigned(TT_TCP_SYN | TT_TCP_ACK | TT_TCP_FIN));
    EXPECT_EQ(b.u(0, kProto), 6u);
    EXPECT_EQ(b.u(kIpfixPen, kIpfixIeRttUs), 250u);
    EXPECT_EQ(b.u(0, kBiflowDir), 1u);
    // Sequence number: data records before the last message.
    EXPECT_EQ(c.last_seq, 1u);
    EXPECT_GE(c.template_sets, 1u);
    EXPECT_EQ(out.errors(), 0u);
}

TEST(Ipfix, OrientationClientIsSourceWhicheverSideItIs) {
    Collector c;
    auto out = make(c);
    // Side B (10.0.0.2:40000) opened the connection to A (10.0.0.1:443); it is reset.
    Frame f;
    f.now_ns = 3 * kSec;
    FlowSample s = v4_flow(3, 2 * kSec);
    s.key = tt_test::flow_key(AF_INET, "10.0.0.1", 443, "10.0.0.2", 40000, 0);
    s.info.client = TT_DIR_BA;
    s.info.state = TT_RESET;
    s.info.flags = TT_F_SYN_SEEN | TT_F_LOCAL_CLIENT;  // at the client: RTT = SYN -> SYN-ACK
    set_handshake(s.info, s.info.syn_ns(), s.info.syn_ns() + 1234000, s.info.syn_ns() + 500000);
    s.info.close_ns = 2 * kSec + 700000000;
    s.finished = true;
    set_counts(s, /*A->B (server->client)*/ 7000, /*B->A (client->server)*/ 300, 6, 4, 6800, 100);
    f.samples = {s};
    f.live = 0;
    out->write(f.get());
    c.drain();
    ASSERT_EQ(c.records.size(), 1u);
    const Record& r = c.records[0];
    EXPECT_EQ(r.bytes(kSrc4), (std::vector<std::uint8_t>{10, 0, 0, 2}));  // the client
    EXPECT_EQ(r.bytes(kDst4), (std::vector<std::uint8_t>{10, 0, 0, 1}));
    EXPECT_EQ(r.u(0, kSport), 40000u);
    EXPECT_EQ(r.u(0, kDport), 443u);
    EXPECT_EQ(r.u(0, kOctets), 300u);      // client -> server
    EXPECT_EQ(r.u(kRev, kOctets), 7000u);  // server -> client
    EXPECT_EQ(r.u(0, kPackets), 4u);
    EXPECT_EQ(r.u(kRev, kPackets), 6u);
    EXPECT_EQ(r.u(kIpfixPen, kIpfixIePayload), 100u);
    EXPECT_EQ(r.u(kIpfixPen, kIpfixIePayload | 0x4000), 6800u);
    EXPECT_EQ(r.u(kIpfixPen, kIpfixIeRttUs), 1234u);
    EXPECT_EQ(r.u(0, kFlags), unsigned(TT_TCP_SYN | TT_TCP_ACK | TT_TCP_RST));
    EXPECT_EQ(r.u(0, kEndReason), 3u);
    EXPECT_EQ(r.u(0, kEndMs), wall_ms_of(2 * kSec + 700000000));
}

TEST(Ipfix, IdleAndForcedEndAtExitAndIpv6Template) {
    Collector c;
    auto out = make(c);
    Frame f;
    f.now_ns = 10 * kSec;
    FlowSample idle = v4_flow(1, 1 * kSec);
    set_counts(idle, 100, 200, 1, 2, 0, 0);
    idle.last_active_ns = 2 * kSec;
    FlowSample v6 = v4_flow(2, 9 * kSec);
    v6.key = tt_test::flow_key(AF_INET6, "fd00::1", 40000, "fd00::2", 80, 0);
    v6.info.flags = TT_F_MIDSTREAM;  // no SYN seen: ACK only; port 80 makes B the server
    set_handshake(v6.info, v6.info.syn_ns(), 0, 0);
    set_counts(v6, 40, 60, 1, 1, 0, 20);
    f.samples = {idle, v6};
    f.live = 2;
    f.idle = {idle.ref};
    out->write(f.get());
    c.drain();
    ASSERT_EQ(c.records.size(), 1u);
    EXPECT_EQ(c.records[0].u(0, kEndReason), 1u);
    EXPECT_EQ(c.records[0].u(0, kEndMs), wall_ms_of(2 * kSec));  // its last activity
    EXPECT_EQ(c.records[0].u(0, kOctets), 100u);
    EXPECT_EQ(c.records[0].u(kRev, kOctets), 200u);

    // Exit: the v6 one (still open) gets a forced-end record with everything since its start.
    Frame g;
    g.now_ns = 11 * kSec;
    set_counts(v6, 140, 260, 2, 3, 0, 120);
    g.samples = {v6};
    g.live = 1;
    const ReportFrame gf = g.get();
    out->finish(&gf);
    c.drain();
    ASSERT_EQ(c.records.size(), 2u);
    const Record& r = c.records[1];
    EXPECT_EQ(r.tid, kIpfixTemplateV6);
    EXPECT_EQ(r.u(0, kEndReason), 4u);
    EXPECT_EQ(r.u(0, kOctets), 140u);
    EXPECT_EQ(r.u(kRev, kOctets), 260u);
    EXPECT_EQ(r.u(kIpfixPen, kIpfixIePayload | 0x4000), 120u);
    EXPECT_EQ(r.bytes(kSrc6)[15], 1);
    EXPECT_EQ(r.bytes(kDst6)[15], 2);
    EXPECT_EQ(r.u(0, kFlags), unsigned(TT_TCP_ACK));
    EXPECT_EQ(r.u(kIpfixPen, kIpfixIeRttUs), 0u);  // not measured
    EXPECT_EQ(r.u(0, kStartMs), wall_ms_of(9 * kSec));
    EXPECT_EQ(r.u(0, kEndMs), wall_ms_of(11 * kSec));
}

TEST(Ipfix, DisplacedFlowEndsForLackOfResources) {
    Collector c;
    auto out = make(c);
    // A half-open flow (SYN and SYN-ACK seen, the ACK never came) displaced at
    // 3.5 s by a new connection; beside it one closed with FINs as usual.
    FlowSample half = v4_flow(3, 1 * kSec);
    half.finished = true;
    half.info.state = TT_SYN_RECV;
    half.info.flags = TT_F_SYN_SEEN | TT_F_DISPLACED;
    set_handshake(half.info, half.info.syn_ns(), half.info.syn_ns() + 250000, 0);
    half.info.close_ns = 3 * kSec + 500000000;
    set_counts(half, 60, 120, 1, 2, 0, 0);
    FlowSample fin = v4_flow(4, 1 * kSec);
    fin.finished = true;
    fin.info.state = TT_CLOSED;
    fin.info.fin_mask = 3;
    fin.info.close_ns = 3 * kSec;
    set_counts(fin, 500, 700, 5, 6, 100, 300);
    Frame f;
    f.now_ns = 4 * kSec;
    f.samples = {half, fin};
    f.live = 0;
    EXPECT_TRUE(out->write(f.get()));
    c.drain();
    ASSERT_EQ(c.records.size(), 2u);
    const Record& d = c.records[0];
    EXPECT_EQ(d.u(0, kEndReason), 5u);  // lack of resources (RFC 5102)
    EXPECT_EQ(d.u(0, kStartMs), wall_ms_of(1 * kSec));
    EXPECT_EQ(d.u(0, kEndMs), wall_ms_of(3 * kSec + 500000000));  // when it was displaced
    EXPECT_EQ(d.u(0, kOctets), 60u);
    EXPECT_EQ(d.u(kRev, kOctets), 120u);
    EXPECT_EQ(d.u(kRev, kPackets), 2u);
    EXPECT_EQ(d.u(0, kFlags), unsigned(TT_TCP_SYN | TT_TCP_ACK));  // the SYN-ACK
    EXPECT_EQ(d.u(kIpfixPen, kIpfixIeRttUs), 0u);                  // the handshake never completed
    EXPECT_EQ(c.records[1].u(0, kEndReason), 3u);
    EXPECT_EQ(c.records[1].u(0, kOctets), 500u);
    EXPECT_EQ(out.errors(), 0u);
}

TEST(Ipfix, PodAndContainerStrings) {
    Collector c;
    auto out = make(c);
    const std::string uid = "0e9c7f6a-1b2c-4d3e-8f9a-0b1c2d3e4f5a", id(64, 'a');
    FlowSample in_pod = v4_flow(3, 1 * kSec), bare = v4_flow(4, 1 * kSec);
    for (FlowSample* s : {&in_pod, &bare}) {
        s->finished = true;
        s->info.state = TT_CLOSED;
        s->info.close_ns = 2 * kSec;
    }
    Frame f;
    f.now_ns = 3 * kSec;
    f.samples = {in_pod, bare};
    f.enrich = [&](const SlotRef& ref, FlowRow& row) {
        row.pod_uid = ref.slot == 3 ? uid : "";
        row.container_id = ref.slot == 3 ? id : "";
    };
    EXPECT_TRUE(out->write(f.get()));
    c.drain();
    ASSERT_EQ(c.records.size(), 2u);
    // Variable-length strings in the template, under the PEN.
    int strings = 0;
    for (const auto& [field, len] : c.templates.at(kIpfixTemplateV4)) {
        if (field.first != kIpfixPen) continue;
        if (field.second != kIpfixIePodUid && field.second != kIpfixIeContainerId) continue;
        EXPECT_EQ(len, 65535u);
        ++strings;
    }
    EXPECT_EQ(strings, 2);
    EXPECT_EQ(c.records[0].str(kIpfixPen, kIpfixIePodUid), uid);
    EXPECT_EQ(c.records[0].str(kIpfixPen, kIpfixIeContainerId), id);
    EXPECT_EQ(c.records[0].u(kIpfixPen, kIpfixIeRttUs), 250u);   // fields around them intact
    EXPECT_EQ(c.records[1].str(kIpfixPen, kIpfixIePodUid), "");  // unknown: empty
    EXPECT_EQ(c.records[1].str(kIpfixPen, kIpfixIeContainerId), "");
    EXPECT_EQ(c.records[1].u(0, kEndReason), 3u);
    EXPECT_EQ(out.errors(), 0u);
}

TEST(Ipfix, ActiveTimeoutRepeatsAndSkipsQuietIntervals) {
    Collector c;
    auto out = make(c, 1);
    FlowSample s = v4_flow(5, 0);
    Frame f;
    f.live = 1;
    std::uint64_t total = 0, packets = 0;
    for (int t = 1; t <= 6; ++t) {
        if (t != 4) total += 1000 * t, ++packets;  // report 4: nothing moved
        set_counts(s, total, 0, packets, 0, 0, 0);
        f.now_ns = t * kSec;
        f.samples = {s};
        out->write(f.get());
    }
    c.drain();
    ASSERT_EQ(c.records.size(), 5u);  // t = 1,2,3,5,6 (t = 4 had nothing)
    std::uint64_t sum = 0;
    for (auto& r : c.records) {
        EXPECT_EQ(r.u(0, kEndReason), 2u);
        sum += r.u(0, kOctets);
    }
    EXPECT_EQ(sum, total);
    EXPECT_EQ(c.records[3].u(0, kOctets), 5000u);
    EXPECT_EQ(c.records[3].u(0, kStartMs),
              wall_ms_of(4 * kSec));  // the quiet interval still moved the clock
}

TEST(Ipfix, UnresolvableCollectorIsOneLineError) {
    Options o;
    o.ipfix = "udp://no-such-host.invalid:4739";
    try {
        ExportTally tally;
        make_ipfix_output(o, tally);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        const std::string w = e.what();
        EXPECT_NE(w.find("no-such-host.invalid"), std::string::npos) << w;
        EXPECT_EQ(w.find('\n'), std::string::npos);
    }
}

TEST(Ipfix, DownCollectorCountsErrorsAndNeverBlocks) {
    int port;
    {
        Collector gone;  // bound then closed: nothing listens there
        port = gone.port;
    }
    for (const char* scheme : {"udp://", "tcp://"}) {
        Options o;
        o.ipfix = std::string(scheme) + "127.0.0.1:" + std::to_string(port);
        Ipfix out(o);
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < 5; ++i) {
            Frame f;
            f.now_ns = (i + 1) * kSec;
            FlowSample s = v4_flow(i, i * kSec);
            s.finished = true;
            set_counts(s, 10, 10, 1, 1, 0, 0);
            f.samples = {s};
            out->write(f.get());
        }
        out->finish(nullptr);
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - t0);
        EXPECT_LT(ms.count(), 1000) << scheme;  // no blocking connect or send
        EXPECT_GE(out.errors(), 1u) << scheme;
    }
}

// Encode+send throughput (printed for the record; not a timing assertion).
TEST(Ipfix, ThroughputRecordsPerSecond) {
    Collector c;
    auto out = make(c);
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> got{0};
    std::thread rx([&] {
        std::vector<std::uint8_t> buf(65536);
        pollfd p{c.fd, POLLIN, 0};
        while (!stop) {
            if (::poll(&p, 1, 20) <= 0) continue;
            while (::recv(c.fd, buf.data(), buf.size(), 0) > 0) got++;
        }
    });
    constexpr int kPerReport = 5000, kReports = 20;
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < kReports; ++r) {
        Frame f;
        f.now_ns = (r + 1) * kSec;
        f.samples.reserve(kPerReport);
        for (int i = 0; i < kPerReport; ++i) {
            FlowSample s = v4_flow(r * kPerReport + i, r * kSec);
            s.finished = true;
            set_counts(s, 1000 + i, 2000, 10, 12, 500, 1500);
            f.samples.push_back(s);
        }
        f.live = 0;
        out->write(f.get());
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    stop = true;
    rx.join();
    std::printf(
        "ipfix: %d records (finished connections) encoded and sent in %.3f s: %.0f records/s, %llu "
        "datagrams "
        "received, %llu export errors\n",
        kPerReport * kReports, secs, kPerReport * kReports / secs, (unsigned long long)got.load(),
        (unsigned long long)out.errors());
    EXPECT_GT(got.load(), 0u);
}

// TCP: the stream carries whole messages (templates first); when the
// collector goes away the records are counted as errors and the next reports
// reconnect, sending the templates again on the new connection.
TEST(Ipfix, TcpTemplatesFirstAndReconnect) {
    const int l = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::listen(l, 4), 0);
    socklen_t al = sizeof a;
    ::getsockname(l, reinterpret_cast<sockaddr*>(&a), &al);
    Options o;
    o.ipfix = "tcp://127.0.0.1:" + std::to_string(ntohs(a.sin_port));
    Ipfix out(o);

    auto accept_one = [&] {
        pollfd p{l, POLLIN, 0};
        if (::poll(&p, 1, 5000) <= 0) return -1;
        return ::accept(l, nullptr, nullptr);
    };
    // Reads whole messages from a stream into a fresh collector until a record arrives.
    auto read_records = [](int fd, Collector& c, std::function<void()> poke) {
        std::vector<std::uint8_t> buf;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (c.records.empty() && std::chrono::steady_clock::now() < deadline) {
            poke();
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0) continue;
            std::uint8_t tmp[65536];
            const ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
            if (n <= 0) break;
            buf.insert(buf.end(), tmp, tmp + n);
            while (buf.size() >= 4) {
                const std::size_t len = Collector::be16(buf.data() + 2);
                if (len < 16 || buf.size() < len) break;
                c.parse(buf.data(), len);
                buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(len));
            }
        }
    };
    std::uint64_t t = 0;
    std::uint32_t slot = 0;
    auto report = [&](std::uint64_t bytes) {
        Frame f;
        f.now_ns = ++t * kSec;
        FlowSample s = v4_flow(++slot, f.now_ns - kSec / 2);
        s.finished = true;
        set_counts(s, bytes, 1, 1, 1, 0, 0);
        f.samples = {s};
        out->write(f.get());
    };

    const int c1 = accept_one();
    ASSERT_GE(c1, 0);
    Collector first;
    read_records(c1, first, [&] { report(111); });
    ASSERT_FALSE(first.records.empty());
    EXPECT_EQ(first.records[0].u(0, kOctets), 111u);
    EXPECT_GE(first.template_sets, 1u);
    const std::uint64_t errors_before = out.errors();

    ::close(c1);  // the collector drops the connection
    // Reports go on; sends fail, then a reconnect; the new connection starts
    // with the templates (a fresh parser would fail on data before them).
    const int c2 = [&] {
        for (int i = 0; i < 50; ++i) {
            report(222);
            pollfd p{l, POLLIN, 0};
            if (::poll(&p, 1, 20) > 0) return ::accept(l, nullptr, nullptr);
        }
        return -1;
    }();
    ASSERT_GE(c2, 0) << "no reconnect";
    Collector second;
    read_records(c2, second, [&] { report(333); });
    ASSERT_FALSE(second.records.empty());
    EXPECT_GE(second.template_sets, 1u);
    EXPECT_GT(out.errors(), errors_before);
    ::close(c2);
    ::close(l);
}

TEST(Ipfix, NodeNameOnEveryRecord) {
    Collector c;
    Options o;
    o.ipfix = c.url();
    o.node_name = "node-7";
    Ipfix out(o);
    FlowSample a = v4_flow(3, 1 * kSec), b = v4_flow(4, 1 * kSec);
    b.finished = true;
    b.info.state = TT_CLOSED;
    b.info.close_ns = 2 * kSec;
    Frame f;
    f.now_ns = 3 * kSec;
    f.samples = {a, b};
    f.live = 1;
    const ReportFrame last = f.get();
    out->finish(&last);  // b's final record, and a forced end for a
    c.drain();
    ASSERT_EQ(c.records.size(), 2u);
    for (const auto& r : c.records) {
        EXPECT_EQ(r.str(kIpfixPen, kIpfixIeNodeName), "node-7");
        EXPECT_EQ(r.u(kIpfixPen, kIpfixIeRttUs), 250u);  // the fields before it intact
    }
    // Without a name the element is there, empty (one template for all).
    Collector c2;
    auto plain = make(c2);
    Frame g;
    g.now_ns = 3 * kSec;
    g.samples = {b};
    EXPECT_TRUE(plain->write(g.get()));
    c2.drain();
    ASSERT_EQ(c2.records.size(), 1u);
    EXPECT_EQ(c2.records[0].str(kIpfixPen, kIpfixIeNodeName), "");
}

// Connection health: rows with their figures set here (the exporter's
// row_of), read back from the records as the collector decodes them.
TEST(Ipfix, HealthEachWayAsDeltasAndRttAsItStands) {
    std::map<std::uint64_t, std::pair<SideHealth, SideHealth>> health;  // by flow_id: fwd, rev
    Collector c;
    Options o;
    o.ipfix = c.url();
    o.ipfix_active_timeout_s = 5;
    Ipfix out(
        o, [&](FlowRow& row, const FlowSample& s, const std::string& iface, std::uint64_t now_ns) {
            fill_row(row, s, iface, now_ns);
            row.fwd_health = health[flow_id(s.ref)].first;
            row.rev_health = health[flow_id(s.ref)].second;
        });
    // Report 1 (t = 1 s): live, under the active timeout: no record yet.
    Frame f;
    f.now_ns = 1 * kSec;
    f.samples = {v4_flow(7, kSec / 2)};
    set_counts(f.samples[0], 1000, 5000, 10, 8, 600, 4500);
    f.live = 1;
    auto& [fwd, rev] = health[flow_id(f.samples[0].ref)];
    fwd.retrans = 2;
    fwd.retrans_bytes = 2896;
    fwd.lost_segments = 1;
    fwd.rtt_samples = 3;
    fwd.rtt_min_ns = 150000, fwd.srtt_ns = 210000, fwd.rtt_max_ns = 400000;
    rev.dup_acks = 4;
    rev.zero_windows = 1;
    EXPECT_TRUE(out->write(f.get()));
    // Report 2 (t = 6 s): a periodic record with everything so far.
    f.now_ns = 6 * kSec;
    set_counts(f.samples[0], 3000, 9000, 30, 20, 2000, 8000);
    fwd.retrans = 5;
    fwd.retrans_bytes = 7240;
    fwd.rtt_samples = 9;
    fwd.srtt_ns = 250400;  // 250.4 us: 250 in whole microseconds
    rev.dup_acks = 6;
    rev.rtt_samples = 1;
    rev.rtt_min_ns = rev.srtt_ns = rev.rtt_max_ns = 9000000;
    EXPECT_TRUE(out->write(f.get()));
    // Report 3 (t = 8 s): closed: the rest. Beside it, one seen only at its
    // close: all its figures at once; and one with none at all.
    Frame g;
    g.now_ns = 8 * kSec;
    g.samples = {v4_flow(7, kSec / 2), v4_flow(8, 7 * kSec), v4_flow(9, 7 * kSec)};
    for (FlowSample& s : g.samples) {
        s.finished = true;
        s.info.state = TT_CLOSED;
        s.info.fin_mask = 3;
        s.info.close_ns = 7 * kSec + 500000000;
    }
    set_counts(g.samples[0], 3500, 12000, 36, 26, 2300, 10800);
    fwd.retrans = 6;
    fwd.retrans_bytes = 8688;
    fwd.rtt_max_ns = 5000000000ull * 1000;  // 5000 s: saturates at 2^32 - 1 us
    rev.zero_windows = 3;
    auto& [fwd8, rev8] = health[flow_id(g.samples[1].ref)];
    fwd8.dup_acks = 2;
    rev8.retrans = 11;
    rev8.retrans_bytes = 15928;
    rev8.lost_segments = 2;
    rev8.rtt_samples = 4;
    rev8.rtt_min_ns = 1000, rev8.srtt_ns = 2000, rev8.rtt_max_ns = 3000;
    g.live = 0;
    EXPECT_TRUE(out->write(g.get()));
    c.drain();

    // The template: every health element under the PEN, forward and reverse.
    const std::map<std::uint16_t, std::uint16_t> sizes{
        {kIpfixIeRetransSegments, 8}, {kIpfixIeRetransOctets, 8}, {kIpfixIeLostSegments, 8},
        {kIpfixIeDupAcks, 8},         {kIpfixIeZeroWindows, 8},   {kIpfixIeRttMinUs, 4},
        {kIpfixIeSrttUs, 4},          {kIpfixIeRttMaxUs, 4},      {kIpfixIeRttSamples, 8}};
    for (const std::uint16_t tid : {kIpfixTemplateV4, kIpfixTemplateV6}) {
        std::map<std::uint16_t, std::uint16_t> got;
        for (const auto& [field, len] : c.templates.at(tid))
            if (field.first == kIpfixPen) got[field.second] = len;
        for (const auto& [id, len] : sizes) {
            EXPECT_EQ(got[id], len) << tid << " element " << id;
            EXPECT_EQ(got[id | 0x4000], len) << tid << " reverse element " << id;
        }
    }

    ASSERT_EQ(c.records.size(), 4u);
    const Record& a = c.records[0];  // periodic, slot 7
    const Record& b = c.records[1];  // final, slot 7
    const Record& d = c.records[2];  // final, slot 8: its only record
    const Record& z = c.records[3];  // final, slot 9: no health
    auto fw = [](const Record& r, std::uint16_t id) { return r.u(kIpfixPen, id); };
    auto rv = [](const Record& r, std::uint16_t id) { return r.u(kIpfixPen, id | 0x4000); };
    EXPECT_EQ(a.u(0, kEndReason), 2u);
    EXPECT_EQ(b.u(0, kEndReason), 3u);
    // Deltas, forward = the client's: the first record what happened so far, the second the rest.
    EXPECT_EQ(fw(a, kIpfixIeRetransSegments), 5u);
    EXPECT_EQ(fw(b, kIpfixIeRetransSegments), 1u);
    EXPECT_EQ(fw(a, kIpfixIeRetransOctets), 7240u);
    EXPECT_EQ(fw(b, kIpfixIeRetransOctets), 1448u);
    EXPECT_EQ(fw(a, kIpfixIeLostSegments), 1u);
    EXPECT_EQ(fw(b, kIpfixIeLostSegments), 0u);
    EXPECT_EQ(rv(a, kIpfixIeDupAcks), 6u);
    EXPECT_EQ(rv(b, kIpfixIeDupAcks), 0u);
    EXPECT_EQ(fw(a, kIpfixIeDupAcks), 0u);
    EXPECT_EQ(rv(a, kIpfixIeZeroWindows), 1u);
    EXPECT_EQ(rv(b, kIpfixIeZeroWindows), 2u);
    EXPECT_EQ(rv(a, kIpfixIeRetransSegments), 0u);
    // RTT as it stands at each record, in microseconds; the samples a total.
    EXPECT_EQ(fw(a, kIpfixIeRttMinUs), 150u);
    EXPECT_EQ(fw(a, kIpfixIeSrttUs), 250u);
    EXPECT_EQ(fw(a, kIpfixIeRttMaxUs), 400u);
    EXPECT_EQ(fw(a, kIpfixIeRttSamples), 9u);
    EXPECT_EQ(rv(a, kIpfixIeRttMinUs), 9000u);
    EXPECT_EQ(rv(a, kIpfixIeSrttUs), 9000u);
    EXPECT_EQ(rv(a, kIpfixIeRttMaxUs), 9000u);
    EXPECT_EQ(rv(a, kIpfixIeRttSamples), 1u);
    EXPECT_EQ(fw(b, kIpfixIeRttSamples), 9u);
    EXPECT_EQ(fw(b, kIpfixIeRttMaxUs), 4294967295u);
    // The fields around them intact.
    EXPECT_EQ(a.u(0, kOctets) + b.u(0, kOctets), 3500u);
    EXPECT_EQ(b.u(kRev, kOctets), 3000u);
    EXPECT_EQ(b.u(kIpfixPen, kIpfixIePayload | 0x4000), 2800u);
    EXPECT_EQ(b.u(kIpfixPen, kIpfixIeRttUs), 250u);
    // Seen only at its close: everything once.
    EXPECT_EQ(d.u(0, kEndReason), 3u);
    EXPECT_EQ(fw(d, kIpfixIeDupAcks), 2u);
    EXPECT_EQ(rv(d, kIpfixIeRetransSegments), 11u);
    EXPECT_EQ(rv(d, kIpfixIeRetransOctets), 15928u);
    EXPECT_EQ(rv(d, kIpfixIeLostSegments), 2u);
    EXPECT_EQ(rv(d, kIpfixIeRttMinUs), 1u);
    EXPECT_EQ(rv(d, kIpfixIeSrttUs), 2u);
    EXPECT_EQ(rv(d, kIpfixIeRttMaxUs), 3u);
    EXPECT_EQ(rv(d, kIpfixIeRttSamples), 4u);
    EXPECT_EQ(fw(d, kIpfixIeRttSamples), 0u);
    EXPECT_EQ(fw(d, kIpfixIeSrttUs), 0u);  // no sample: 0
    // No health: every element there, 0.
    for (const auto& [id, len] : sizes) {
        EXPECT_EQ(fw(z, id), 0u) << id;
        EXPECT_EQ(rv(z, id), 0u) << id;
    }
    EXPECT_EQ(out.errors(), 0u);
}
