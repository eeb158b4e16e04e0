// SPDX-License-Identifier: MIT
// Also the index hash's candidates (bench/hash_cost.bpf.c: parse-only plus one
// hash) against parse-only. TTMICRO_HASH=1: only that table; TTMICRO_FILTER=1:
// only the filter's.
// Per-packet cost of the classifier on one CPU via BPF_PROG_TEST_RUN with
// `repeat`: an A/B tool for datapath changes (no bpf_stats, no traffic).
// Prints ns/run for tcptrack_in on established (settled) flows' data segments
// (one flow, two or 1,000 flows in turn, and 1,000 in turn among 100,000
// resident), beside the issue-9 prototype store (bench/store_proto.bpf.c:
// per-CPU direct-mapped cache in front of a hash index, atomic or per-CPU
// delta counting), the parse-only classifier and the empty one.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tcptrack/filter_vm.h"  // before the skeleton: its .bss holds struct tt_filter
#include "tcptrack/store.h"      // before the skeleton: its .rodata holds struct tt_hash_key
#include "empty.skel.h"
#include "hash_cost.skel.h"
#include "parse_only.skel.h"
#include "store_proto.skel.h"
#include "tcptrack.skel.h"
#include "datapath/filter.hpp"
#include "datapath/skeleton.hpp"
#include "packet_builder.hpp"

using namespace tt_test;

namespace {

double ns_per_run(int prog_fd, const Packet& p, int repeat) {
    __sk_buff ctx{};
    ctx.gso_segs = 1;
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = p.data.data(),
                .data_size_in = static_cast<__u32>(p.data.size()), .ctx_in = &ctx,
                .ctx_size_in = sizeof(ctx), .repeat = repeat);
    if (bpf_prog_test_run_opts(prog_fd, &opts) != 0) return -1;
    return opts.duration;  // average ns per run
}

std::string fmt_ns(double ns) {
    char b[32];
    std::snprintf(b, sizeof b, "%.1f", ns);
    return b;
}

double median_ns(int fd, const Packet& p) {
    std::vector<double> v;
    for (int i = 0; i < 7; ++i) v.push_back(ns_per_run(fd, p, 2000000));
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

Packet seg(bool v6, bool to_server, std::uint8_t flags, std::uint32_t seq, std::uint32_t ack,
           std::size_t payload, std::uint16_t cport = 40000) {
    PacketBuilder b;
    const char* c = v6 ? "2001:db8::1" : "10.0.0.1";
    const char* s = v6 ? "2001:db8::2" : "10.0.0.2";
    if (v6)
        to_server ? b.ipv6(c, s) : b.ipv6(s, c);
    else
        to_server ? b.ipv4(c, s) : b.ipv4(s, c);
    b.tcp(to_server ? cport : 443, to_server ? 443 : cport, seq, ack, flags).payload(payload);
    return b.build();
}

// Runs of one packet each, flows in turn: repeat=1 per call would time the
// syscall, so time the pair with one repeat each over many rounds instead.
double median_alternating(int fd, const std::vector<Packet>& pkts) {
    std::vector<double> v;
    for (int r = 0; r < 7; ++r) {
        double total = 0;
        const int rounds = 20000;
        for (int i = 0; i < rounds; ++i) total += ns_per_run(fd, pkts[i % pkts.size()], 1);
        v.push_back(total / rounds);
    }
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof(set), &set);
}

// Handshake then a data segment, so the flow is settled.
void settle(int fd, bool v6, std::uint16_t port) {
    ns_per_run(fd, seg(v6, true, kSyn, 1000, 0, 0, port), 1);
    ns_per_run(fd, seg(v6, false, kSyn | kAck, 5000, 1001, 0, port), 1);
    ns_per_run(fd, seg(v6, true, kAck, 1001, 5001, 0, port), 1);
    ns_per_run(fd, seg(v6, true, kAck | kPsh, 1001, 5001, 1448, port), 1);
}

// Fills a program's store with n idle flows (SYNs from another client address).
void fill(int fd, int n) {
    for (int k = 0; k < n; ++k) {
        PacketBuilder b;
        char src[32];
        std::snprintf(src, sizeof(src), "10.%d.%d.%d", 1 + (k >> 16), (k >> 8) & 255, k & 255);
        b.ipv4(src, "10.0.0.2").tcp(static_cast<std::uint16_t>(1024 + k % 60000), 443, 7, 0, kSyn);
        ns_per_run(fd, b.build(), 1);
    }
}

}  // namespace

// The capture filter: what checking it costs a kept segment (sets, and any
// expression of up to 16 leaves, in the tables; past 16 distinct tests the
// interpreter) and a segment of a connection it leaves out (the filter
// evaluated, no flow map written). A kept connection's verdict is stamped in
// its slot at its first segment under a filter (tt_filter_keeps), so its
// later segments do not evaluate the filter again.
void filter_table(tcptrack::Skeleton& skel, int fd, int floor_fd, int po_fd) {
    std::printf(
        "\n| Filter (IPv4 established data, one flow) | ops | form | kept segment ns/run | "
        "ratio to empty | ratio to parse-only | left-out segment ns/run |\n"
        "|---|---:|---|---:|---:|---:|---:|\n");
    // TTMICRO_INTERPRET=1: every filter in the interpreter (the form before the tables).
    const bool interpret = std::getenv("TTMICRO_INTERPRET") != nullptr;
    const Packet kept = seg(false, true, kAck | kPsh, 1001, 5001, 1448, 42000);
    // A data segment of a connection none of the filters below keeps, never admitted.
    PacketBuilder lb;
    lb.ipv4("192.0.2.1", "198.51.100.1").tcp(50000, 9999, 1001, 5001, kAck | kPsh).payload(1448);
    const Packet left_out = lb.build();
    const double f = median_ns(floor_fd, kept), po_t = median_ns(po_fd, kept);
    std::string ports = "port 1", hosts = "host 10.0.1.1", nets;
    for (int p = 2; p <= 31; ++p) ports += " or port " + std::to_string(p);
    ports += " or port 443";
    for (int h = 2; h <= 31; ++h) hosts += " or host 10.0.1." + std::to_string(h);
    hosts += " or host 10.0.0.2";
    for (int n = 11; n <= 25; ++n)
        nets += "net " + std::to_string(n) + ".0.0.0/" + std::to_string(8 + 4 * (n % 4)) + " or ";
    nets += "net 2001:db8::/32 or net 10.0.0.0/24";
    // 17 distinct tests (and-ed leaves do not fold): the interpreter; keeps the
    // measured connection by its host.
    std::string interp = "(port 1 or host 10.0.0.1)";
    for (int p = 2; p <= 16; ++p)
        interp += " and (port " + std::to_string(p) + " or host 10.0.0.1)";
    const std::pair<const char*, std::string> cases[] = {
        {"none", ""},
        {"`port 443` (kept)", "port 443"},
        {"`src net 10.0.0.0/8 and dst port 443 and not host 10.9.9.9` (kept)",
         "src net 10.0.0.0/8 and dst port 443 and not host 10.9.9.9"},
        {"`port 1 or ... or port 31 or port 443` (kept at the last leaf)", ports},
        {"32 hosts or-ed, kept at the last", hosts},
        {"17 nets or-ed (/8, /12, /16, /20, /24, one IPv6), kept at the last", nets},
        {"16 leaves, src/dst, 8 and-ed pairs or-ed, kept at the last pair",
         "(src host 10.0.0.9 or dst net 192.0.2.0/24) and (dst port 22 or src net 10.9.0.0/16) "
         "or (host 2001:db8::1 and port 8443) or (src portrange 8000-8999 and dst host "
         "10.9.9.9) or (net 172.16.0.0/12 and dst port 80) or (host 10.0.0.7 and src port "
         "40000) or (net fd00::/8 and port 0) or (src net 10.0.0.0/24 and dst port 443)"},
        {"17 distinct tests (`(port 1 or host 10.0.0.1) and ... (port 16 or host ...)`: the "
         "interpreter), kept by the host",
         interp},
    };
    for (const auto& [what, expr] : cases) {
        const auto flt = std::make_unique<tt_filter>(tcptrack::compile_filter(expr));
        if (interpret) flt->table = 0;
        skel.set_filter(*flt);
        settle(fd, false, 42000);
        const double t = median_ns(fd, kept);
        const std::string out = flt->n ? fmt_ns(median_ns(fd, left_out)) : "-";
        std::printf("| %s | %u | %s | %.1f | %.2fx | %.2fx | %s |\n", what, flt->n,
                    flt->n == 0  ? "-"
                    : flt->table ? "tables"
                                 : "interpreter",
                    t, t / f, t / po_t, out.c_str());
    }
    skel.set_filter(tt_filter{});
}

int main() {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    sched_setaffinity(0, sizeof(set), &set);  // per-CPU state (the prototype's cache): one CPU

    tcptrack::LoadConfig cfg;
    cfg.max_flows = 200000;
    tcptrack::Skeleton skel(cfg);
    store_proto_bpf* proto = store_proto_bpf__open();
    if (!proto) return 1;
    bpf_map__set_max_entries(proto->maps.slots, 200000);
    bpf_map__set_max_entries(proto->maps.slot_index, 200000);
    if (store_proto_bpf__load(proto)) return 1;
    parse_only_bpf* po = parse_only_bpf__open_and_load();
    empty_bpf* empty = empty_bpf__open_and_load();
    if (!po || !empty) return 1;
    const int floor_fd = bpf_program__fd(empty->progs.ttbench_fl_in);
    // TTMICRO_FILTER=1: only the filter table.
    if (std::getenv("TTMICRO_FILTER")) {
        filter_table(skel, bpf_program__fd(skel->progs.tcptrack_in), floor_fd,
                     bpf_program__fd(po->progs.ttbench_po_in));
        return 0;
    }
    // The index hash's candidates, each on the parsed key (issue 16), keyed at random.
    {
        hash_cost_bpf* hc = hash_cost_bpf__open();
        if (!hc) return 1;
        tt_hash_key k{0x243f6a8885a308d3ull, 0x13198a2e03707344ull};
        std::memcpy(const_cast<tt_hash_key*>(&hc->rodata->ttbench_key), &k, sizeof(k));
        if (hash_cost_bpf__load(hc)) return 1;
        std::printf(
            "| Index hash candidate (established data, one flow) | IPv4 ns/run | over "
            "parse-only | IPv6 ns/run | over parse-only |\n|---|---:|---:|---:|---:|\n");
        const std::pair<const char*, bpf_program*> cands[] = {
            {"parse-only (no hash)", hc->progs.ttbench_h_none},
            {"seeded multiply-xorshift + murmur3 finaliser (the cache's)", hc->progs.ttbench_h_mix},
            {"SipHash-1-3, 64-bit words (the index's)", hc->progs.ttbench_h_sip13},
            {"HalfSipHash-1-3, 32-bit words", hc->progs.ttbench_h_hsip13},
        };
        const Packet p4 = seg(false, true, kAck | kPsh, 1001, 5001, 1448);
        const Packet p6 = seg(true, true, kAck | kPsh, 1001, 5001, 1448);
        const int none_fd = bpf_program__fd(hc->progs.ttbench_h_none);
        const double base4 = median_ns(none_fd, p4), base6 = median_ns(none_fd, p6);
        for (const auto& [what, prog] : cands) {
            const int fd = bpf_program__fd(prog);
            const double t4 = median_ns(fd, p4), t6 = median_ns(fd, p6);
            std::printf("| %s | %.1f | %+.1f | %.1f | %+.1f |\n", what, t4, t4 - base4, t6,
                        t6 - base6);
        }
        std::printf("\n");
        hash_cost_bpf__destroy(hc);
        if (std::getenv("TTMICRO_HASH")) return 0;
    }
    const int po_fd = bpf_program__fd(po->progs.ttbench_po_in);
    const int progs[] = {bpf_program__fd(skel->progs.tcptrack_in),
                         bpf_program__fd(proto->progs.ttproto_sh_in),
                         bpf_program__fd(proto->progs.ttproto_dl_in)};

    std::printf(
        "| Packet | tcptrack_in ns/run | prototype, atomic ns/run | prototype, per-CPU "
        "deltas ns/run | parse-only ns/run | empty ns/run | tcptrack ratio | prototype "
        "atomic ratio | prototype deltas ratio | parse-only ratio |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    // TTMICRO_QUICK=1: IPv4 without resident flows only (for quick A/B while editing).
    const bool quick = std::getenv("TTMICRO_QUICK") != nullptr;
    for (int resident : {0, 100000}) {
        if (quick && resident) break;
        if (resident)
            for (int fd : progs) fill(fd, resident);
        for (bool v6 : {false, true}) {
            if (quick && v6) break;
            // One flow: the same lines every run. Two flows in turn: warm caches.
            // 1,000 flows in turn: lookups miss the CPU caches, as on a busy host.
            for (int nflows : {1, 2, 1000}) {
                if (resident && nflows != 1000) continue;
                std::vector<Packet> data;
                for (int k = 0; k < nflows; ++k)
                    data.push_back(seg(v6, true, kAck | kPsh, 1001, 5001, 1448,
                                       static_cast<std::uint16_t>(40000 + k)));
                double t[3];
                int i = 0;
                for (int fd : progs) {
                    for (int k = 0; k < nflows; ++k)
                        settle(fd, v6, static_cast<std::uint16_t>(40000 + k));
                    t[i++] = nflows > 1 ? median_alternating(fd, data) : median_ns(fd, data[0]);
                }
                // The floor and parse-only are timed the same way as the row.
                auto time = [&](int fd) {
                    return nflows > 1 ? median_alternating(fd, data) : median_ns(fd, data[0]);
                };
                const double f = time(floor_fd), po_t = time(po_fd);
                const char* what = nflows == 1   ? "one flow"
                                   : nflows == 2 ? "two flows in turn"
                                   : resident    ? "1,000 flows in turn, 100,000 resident"
                                                 : "1,000 flows in turn (cold caches)";
                std::printf(
                    "| %s established data, %s | %.1f | %.1f | %.1f | %.1f | %.1f | "
                    "%.2fx | %.2fx | %.2fx | %.2fx |\n",
                    v6 ? "IPv6" : "IPv4", what, t[0], t[1], t[2], po_t, f, t[0] / f, t[1] / f,
                    t[2] / f, po_t / f);
            }
        }
    }
    filter_table(skel, progs[0], floor_fd, po_fd);
    // Two CPUs at once on one flow, one direction each (data one way, ACKs the
    // other, as a request/response connection is handled): what sharing the
    // flow's counters across CPUs costs, beside one CPU alone.
    if (std::thread::hardware_concurrency() >= 2) {
        std::printf(
            "\n| One flow, data on CPU 0 and ACKs on CPU 1 at once | tcptrack_in ns/run "
            "| prototype, atomic ns/run | prototype, per-CPU deltas ns/run | parse-only "
            "ns/run | empty ns/run |\n|---|---:|---:|---:|---:|---:|\n");
        const Packet fwd = seg(false, true, kAck | kPsh, 1001, 5001, 100, 41000);
        const Packet rev = seg(false, false, kAck, 5001, 1101, 0, 41000);
        auto pair = [&](int fd) {
            std::vector<double> v;
            for (int r = 0; r < 5; ++r) {
                double a = 0, b = 0;
                std::thread t0([&] {
                    pin(0);
                    a = ns_per_run(fd, fwd, 2000000);
                });
                std::thread t1([&] {
                    pin(1);
                    b = ns_per_run(fd, rev, 2000000);
                });
                t0.join();
                t1.join();
                v.push_back((a + b) / 2);
            }
            std::sort(v.begin(), v.end());
            return v[v.size() / 2];
        };
        double t[5];
        int i = 0;
        for (int fd : progs) {
            settle(fd, false, 41000);
            t[i++] = pair(fd);
        }
        t[3] = pair(po_fd);
        t[4] = pair(floor_fd);
        std::printf("| IPv4, 100-byte data / pure ACK | %.1f | %.1f | %.1f | %.1f | %.1f |\n", t[0],
                    t[1], t[2], t[3], t[4]);
        pin(0);
    }

    store_proto_bpf__destroy(proto);
    parse_only_bpf__destroy(po);
    empty_bpf__destroy(empty);
    return 0;
}
