// SPDX-License-Identifier: MIT
// Per-packet cost of the classifier on one CPU via BPF_PROG_TEST_RUN with
// `repeat`: an A/B tool for datapath changes (no bpf_stats, no traffic).
// Prints ns/run for tcptrack_in on an established (settled) flow's data
// segment (one flow: the per-CPU memo hits; two or 1,000 flows in turn: every
// run looks up the hash map), for the same program built with an LRU flows map
// (the map-full policy we did not choose), for the shared (5.10 floor)
// variant, and for an empty classifier.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "empty.skel.h"
#include "packet_builder.hpp"
#include "tcptrack.skel.h"
#include "store_proto.skel.h"
#include "tcptrack_lru.skel.h"
#include "tcptrack/skeleton.hpp"

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

}  // namespace

int main() {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    sched_setaffinity(0, sizeof(set), &set);  // per-CPU state: stay on one CPU

    // The per-CPU datapath both times (the LRU variant is built only that way);
    // no iterator: some kernels refuse tracing programs.
    tcptrack::LoadConfig cfg;
    cfg.datapath = tcptrack::Datapath::PerCpu;
    tcptrack::Skeleton skel(cfg);
    tcptrack_lru_bpf* lru = tcptrack_lru_bpf__open();
    if (!lru) return 1;
    lru->rodata->tt_nr_cpus = skel.nr_cpus();
    lru->rodata->tt_counter_copies = skel.nr_cpus();
    bpf_program__set_autoload(lru->progs.tcptrack_dump, false);
    for (bpf_program* p : {lru->progs.tcptrack_in_s, lru->progs.tcptrack_eg_s,
                           lru->progs.tcptrack_in_l3s, lru->progs.tcptrack_eg_l3s})
        bpf_program__set_autoload(p, false);
    if (tcptrack_lru_bpf__load(lru)) return 1;
    tcptrack::LoadConfig shared_cfg;
    shared_cfg.datapath = tcptrack::Datapath::Shared;
    tcptrack::Skeleton shared(shared_cfg);
    store_proto_bpf* proto = store_proto_bpf__open_and_load();
    if (!proto) return 1;
    empty_bpf* empty = empty_bpf__open_and_load();
    if (!empty) return 1;
    const int floor_fd = bpf_program__fd(empty->progs.ttbench_fl_in);

    std::printf("| Packet | tcptrack_in ns/run | LRU-map variant ns/run | shared (5.10) variant "
                "ns/run | slot store, atomic ns/run | slot store, per-CPU deltas ns/run | empty "
                "ns/run | ratio | LRU ratio | shared ratio | slot atomic ratio | slot deltas ratio "
                "|\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (bool v6 : {false, true}) {
        // One flow: this CPU's memo hits. Two flows in turn: the memo never
        // matches, every run looks the flow up in a warm map. 1,000 flows in
        // turn: the lookups miss the CPU caches, as on a busy host.
        for (int nflows : {1, 2, 1000}) {
            std::vector<Packet> data;
            for (int k = 0; k < nflows; ++k)
                data.push_back(seg(v6, true, kAck | kPsh, 1001, 5001, 1448,
                                   static_cast<std::uint16_t>(40000 + k)));
            double t[5];
            int i = 0;
            for (int in : {bpf_program__fd(skel->progs.tcptrack_in),
                           bpf_program__fd(lru->progs.tcptrack_in),
                           bpf_program__fd(shared.programs(true).ingress),
                           bpf_program__fd(proto->progs.ttproto_sh_in),
                           bpf_program__fd(proto->progs.ttproto_dl_in)}) {
                for (int k = 0; k < nflows; ++k) {
                    // Handshake then a data segment, so each flow is settled on this CPU.
                    const auto port = static_cast<std::uint16_t>(40000 + k);
                    ns_per_run(in, seg(v6, true, kSyn, 1000, 0, 0, port), 1);
                    ns_per_run(in, seg(v6, false, kSyn | kAck, 5000, 1001, 0, port), 1);
                    ns_per_run(in, seg(v6, true, kAck, 1001, 5001, 0, port), 1);
                    ns_per_run(in, data[k], 1);
                }
                t[i++] = nflows > 1 ? median_alternating(in, data) : median_ns(in, data[0]);
            }
            // The floor is timed the same way as the row it is compared with.
            const double f =
                nflows > 1 ? median_alternating(floor_fd, data) : median_ns(floor_fd, data[0]);
            const char* what = nflows == 1   ? "one flow (memo hit)"
                               : nflows == 2 ? "two flows in turn (map lookup)"
                                             : "1,000 flows in turn (map lookup, cold caches)";
            std::printf("| %s established data, %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | "
                        "%.2fx | %.2fx | %.2fx | %.2fx | %.2fx |\n",
                        v6 ? "IPv6" : "IPv4", what, t[0], t[1], t[2], t[3], t[4], f, t[0] / f,
                        t[1] / f, t[2] / f, t[3] / f, t[4] / f);
        }
    }
    store_proto_bpf__destroy(proto);
    tcptrack_lru_bpf__destroy(lru);
    empty_bpf__destroy(empty);
    return 0;
}
