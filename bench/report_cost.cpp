// SPDX-License-Identifier: MIT
// User-space cost of one tcptrack report for N live flows.
//
// Loads tcptrack::Skeleton (nothing attached) and fills its slot store with N
// established IPv4 connections through the classifier itself: BPF_PROG_TEST_RUN
// of tcptrack_in on real frames, per connection SYN, SYN-ACK, ACK, then one
// data segment each way (so every flow is ESTABLISHED and settled, with an RTT
// and payload both ways). Then it times what the run loop does per report for
// --format json, with the same calls as ReportAssembler::assemble (src/report/assembler.cpp) +
// print:
//   Collector::collect(now, idle limit) -> ReportBuilder::build (every sample,
//   or with --output changed only Collector::changed(), as --changed does) ->
//   Collector::forget(idle) + the report's stats -> render_json of the
//   builder's rows, streamed in chunks to /dev/null
// CPU time = getrusage(RUSAGE_SELF) user+sys delta (includes the kernel's work
// for the collector's syscalls and mmap windows). R reports (default 3) are
// measured; the median is printed, with the CPU split into collect / build
// (ReportBuilder::build + forget + stats) / render (render_json, which builds
// each row, + write) for the median report.
//
//   report_cost --flows N [--reports R] [--mode fresh|idle|changed] [--output all|changed]
//               [--threads T] [--render-threads W] [--max-flows M] [--cpus C [--full-cache]]
//               [--close]
//     fresh    (default) R reports from the fill on: the first sees every flow new
//     idle     one unmeasured report first, then R reports with nothing changed
//              in the store since the previous one (flows resident, all idle)
//     changed  one unmeasured report first, then before each of the R reports
//              one data segment per flow through tcptrack_in (not timed):
//              every flow changed since the previous one
//     --output all (default) every flow is a row, as tcptrack prints by default;
//              changed: rows only for new, moved or finished flows (--changed)
//     --threads T: threads running the fill and the segments between reports
//              (default: one per CPU; none of them runs while a report is measured)
//     --render-threads W: render_json's worker threads (default: tcptrack's,
//              render_threads(): one per CPU, at most 8; 1: on the report's thread).
//              CPU time counts every thread; wall time shows what they save.
//   In idle/changed mode the unmeasured first report's CPU is printed as first_cpu_ms.
//     --max-flows M: the store's size (default N + 1,024)
//     --cpus C: the per-CPU counter cache sized for, and walked by the reports and
//              the closes as on, a host of C CPUs (LoadConfig::cache_cpus); the fill
//              and segments still run on this host's CPUs, so only their entries fill
//     --full-cache: every CPU's entries hold flows (copies of this host's CPUs'
//              entries: their counts show C times over), as on a C-CPU host whose
//              every CPU saw as many flows as this one's
//     --close: after the reports, every flow ends (FIN each way, last ACK) through
//              tcptrack_in on one thread; close_us (median), close_p90_us and
//              close_mean_us = the classifier's own time (BPF_PROG_TEST_RUN's)
//              for each last ACK: the close event and the fold of the CPUs' entries
// Prints one line of key=value pairs for bench/run.sh.
#include <sys/mman.h>
#include <sys/resource.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tcptrack/abi.h"
#include "tcptrack/filter_vm.h"  // before the skeleton: its .bss holds struct tt_filter
#include "tcptrack/store.h"      // before the skeleton: its .rodata holds struct tt_hash_key
#include "tcptrack.skel.h"
#include "datapath/collector.hpp"
#include "datapath/skeleton.hpp"
#include "frame.hpp"
#include "output/rows.hpp"
#include "report/assembler.hpp"
#include "report/flow_model.hpp"
#include "report/report_builder.hpp"
#include "sys/error.hpp"
#include "sys/memory.hpp"

using namespace tcptrack;

namespace {

double cpu_ms() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    auto ms = [](const timeval& t) { return t.tv_sec * 1e3 + t.tv_usec / 1e3; };
    return ms(ru.ru_utime) + ms(ru.ru_stime);
}

double wall_ms() { return static_cast<double>(monotonic_ns()) / 1e6; }

double rss_mb(bool peak) {
    if (peak) {
        rusage ru{};
        getrusage(RUSAGE_SELF, &ru);
        return ru.ru_maxrss / 1024.0;
    }
    long pages = 0, resident = 0;
    if (FILE* f = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        std::fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1048576.0);
}

// Connection i: client 198.18.0.0/15 (50,000 ports per address) -> 198.51.100.1:443.
constexpr std::uint32_t kServer = 0xC6336401u;
constexpr std::uint16_t kServerPort = 443;

struct Conn {
    std::uint32_t client;
    std::uint16_t cport;
    std::uint32_t cisn, sisn;  // initial sequence numbers
    // Bytes per data segment from the client and the server's one reply, spread
    // over 1..1448 so flows differ in bytes and move at different rates.
    std::size_t size, reply;
};

Conn conn(std::uint32_t i) {
    return Conn{0xC6120000u + i / 50000, static_cast<std::uint16_t>(10000 + i % 50000),
                i * 7919u + 1,           i * 104729u + 12345,
                1 + (i * 7919u) % 1448,  1 + (i * 104729u) % 1448};
}

// Runs fn(frame, i) for i in [0, n) on `threads` threads; counts failed runs.
template <typename Fn>
std::size_t parallel(std::uint32_t n, unsigned threads, Fn fn) {
    std::atomic<std::size_t> failed{0};
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            ttbench::Frame f;
            std::size_t bad = 0;
            for (std::uint32_t i = t; i < n; i += threads) bad += fn(f, i);
            failed += bad;
        });
    for (auto& th : pool) th.join();
    return failed;
}

// The handshake and one data segment each way, through tcptrack_in.
std::size_t fill(int prog, std::uint32_t n, unsigned threads) {
    using namespace ttbench;
    return parallel(n, threads, [prog](Frame& f, std::uint32_t i) -> std::size_t {
        const Conn c = conn(i);
        const std::uint32_t cs = c.cisn + 1, ss = c.sisn + 1;
        std::size_t bad = 0;
        bad += !f.set(c.client, c.cport, kServer, kServerPort, c.cisn, 0, kSyn, 0).run(prog);
        bad +=
            !f.set(kServer, kServerPort, c.client, c.cport, c.sisn, cs, kSyn | kAck, 0).run(prog);
        bad += !f.set(c.client, c.cport, kServer, kServerPort, cs, ss, kAck, 0).run(prog);
        bad +=
            !f.set(c.client, c.cport, kServer, kServerPort, cs, ss, kAck | kPsh, c.size).run(prog);
        bad +=
            !f.set(kServer, kServerPort, c.client, c.cport, ss, cs + c.size, kAck | kPsh, c.reply)
                 .run(prog);
        return bad;
    });
}

// Each flow ends, after fill() and no bump(): FIN each way and the last ACK,
// on one thread. Returns the classifier's own time (as the kernel measured
// the run) for each last ACK, the segment that ends its connection: the
// close event and the fold of the CPUs' entries. Empty if a run failed.
std::vector<double> finish(int prog, std::uint32_t n) {
    using namespace ttbench;
    Frame f;
    std::vector<double> ns;
    for (std::uint32_t i = 0; i < n; ++i) {
        const Conn c = conn(i);
        const std::uint32_t cs = c.cisn + 1 + static_cast<std::uint32_t>(c.size),
                            ss = c.sisn + 1 + static_cast<std::uint32_t>(c.reply);
        std::uint64_t t = 0;
        if (!f.set(c.client, c.cport, kServer, kServerPort, cs, ss, kFin | kAck, 0).run(prog) ||
            !f.set(kServer, kServerPort, c.client, c.cport, ss, cs + 1, kFin | kAck, 0).run(prog) ||
            !f.set(c.client, c.cport, kServer, kServerPort, cs + 1, ss + 1, kAck, 0).run(prog, &t))
            return {};
        ns.push_back(static_cast<double>(t));
    }
    return ns;
}

// Fills every CPU past this host's with copies of this host's CPUs' entries.
void fill_cache(const Skeleton& skel) {
    const std::size_t per = skel.geometry().cache_entries_per_cpu();
    const std::size_t len = skel.cache_entries() * sizeof(tt_cache_entry);
    void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED,
                   bpf_map__fd(skel->maps.flow_cache), 0);
    if (m == MAP_FAILED) throw Error(std::string("mmap flow_cache: ") + std::strerror(errno));
    auto* e = static_cast<tt_cache_entry*>(m);
    for (std::uint32_t cpu = skel.nr_cpus(); cpu < skel.cache_cpus(); ++cpu)
        std::memcpy(e + cpu * per, e + (cpu % skel.nr_cpus()) * per, per * sizeof(*e));
    munmap(m, len);
}

// Data segment number `round` (>= 1) from each client: every flow moves.
std::size_t bump(int prog, std::uint32_t n, unsigned threads, std::uint32_t round) {
    using namespace ttbench;
    return parallel(n, threads, [prog, round](Frame& f, std::uint32_t i) -> std::size_t {
        const Conn c = conn(i);
        const std::uint32_t seq = c.cisn + 1 + static_cast<std::uint32_t>(c.size) * round;
        return !f.set(c.client, c.cport, kServer, kServerPort, seq, c.sisn + 1 + c.reply,
                      kAck | kPsh, c.size)
                    .run(prog);
    });
}

}  // namespace

int main(int argc, char** argv) {
    tcptrack::tune_allocator();  // as tcptrack's main does
    std::uint32_t n = 1000;
    int reports = 3;  // >= 1
    std::string mode = "fresh", output = "all";
    std::uint32_t max_flows = 0, cpus = 0;
    bool full_cache = false, close_all = false;
    unsigned threads = std::max(1u, std::thread::hardware_concurrency());
    RenderOptions render_opts{render_threads()};
    // The per-CPU cache's size for --max-flows F on C CPUs (bench_util.py
    // projects section 7's memory with it: the store's own rule, not a copy).
    if (argc == 4 && std::string(argv[1]) == "--cache-entries-per-cpu") {
        const auto g =
            tcptrack::StoreGeometry::for_flows(static_cast<std::uint32_t>(std::atol(argv[2])),
                                               static_cast<std::uint32_t>(std::atol(argv[3])));
        std::printf("%u\n", g.cache_entries_per_cpu());
        return 0;
    }
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (i + 1 < argc && a == "--flows")
            n = static_cast<std::uint32_t>(std::atol(argv[++i]));
        else if (i + 1 < argc && a == "--reports")
            reports = std::max(1, std::atoi(argv[++i]));
        else if (i + 1 < argc && a == "--mode")
            mode = argv[++i];
        else if (i + 1 < argc && a == "--output")
            output = argv[++i];
        else if (i + 1 < argc && a == "--threads")
            threads = static_cast<unsigned>(std::max(1, std::atoi(argv[++i])));
        else if (i + 1 < argc && a == "--render-threads")
            render_opts.threads = static_cast<unsigned>(std::max(1, std::atoi(argv[++i])));
        else if (i + 1 < argc && a == "--max-flows")
            max_flows = static_cast<std::uint32_t>(std::atol(argv[++i]));
        else if (i + 1 < argc && a == "--cpus")
            cpus = static_cast<std::uint32_t>(std::atol(argv[++i]));
        else if (a == "--full-cache")
            full_cache = true;
        else if (a == "--close")
            close_all = true;
        else {
            std::fprintf(stderr,
                         "usage: %s --flows N [--reports R] [--mode fresh|idle|changed] "
                         "[--output all|changed] [--threads T] [--render-threads W] "
                         "[--max-flows M] [--cpus C [--full-cache]] [--close]\n",
                         argv[0]);
            return 2;
        }
    }
    if (mode != "fresh" && mode != "idle" && mode != "changed") {
        std::fprintf(stderr, "report_cost: --mode must be fresh, idle or changed\n");
        return 2;
    }
    if (output != "all" && output != "changed") {
        std::fprintf(stderr, "report_cost: --output must be all or changed\n");
        return 2;
    }
    if (close_all && mode == "changed") {
        std::fprintf(stderr, "report_cost: --close needs --mode fresh or idle\n");
        return 2;
    }
    if (max_flows && max_flows < n) {
        std::fprintf(stderr, "report_cost: --max-flows must be at least --flows\n");
        return 2;
    }
    const bool warmup = mode != "fresh";
    const bool changed_only = output == "changed";
    try {
        set_libbpf_verbose(false);
        LoadConfig cfg;
        cfg.max_flows = max_flows ? max_flows : n + 1024;
        cfg.cache_cpus = cpus;
        Skeleton skel(cfg);
        const int prog = bpf_program__fd(skel->progs.tcptrack_in);
        const double f0 = wall_ms();
        if (const std::size_t bad = fill(prog, n, threads))
            throw Error("BPF_PROG_TEST_RUN failed " + std::to_string(bad) +
                        " times: " + std::strerror(errno));
        const double fill_ms = wall_ms() - f0;
        if (full_cache) fill_cache(skel);
        const double rss_before = rss_mb(false);

        Collector collector(skel);
        // Connections the store refused (no room in the key's two index
        // buckets): tracked by the datapath as untracked, not as flows.
        const std::uint64_t refused = collector.stats().untracked;
        const std::size_t expect = n - refused;
        std::map<std::uint32_t, std::string> names{{1, "lo"}};  // PROG_TEST_RUN's device
        ReportBuilder builder(names);
        const std::uint64_t idle_limit = 60'000'000'000ull;  // the default --idle-timeout
        const int devnull = open("/dev/null", O_WRONLY);
        std::uint64_t last = monotonic_ns(), evicted = 0;
        std::vector<double> cpu, wall, p_collect, p_build, p_render;
        std::size_t rows_seen = 0, json_bytes = 0, live = 0;
        double first_cpu = -1, bump_ms = 0;
        std::size_t rows_moving = 0;  // rows with a non-zero rate, last report
        for (int r = warmup ? -1 : 0; r < reports; ++r) {
            if (mode == "changed" && r >= 0) {
                const double b0 = wall_ms();
                if (bump(prog, n, threads, static_cast<std::uint32_t>(r) + 1))
                    throw Error(std::string("BPF_PROG_TEST_RUN failed: ") + std::strerror(errno));
                bump_ms = wall_ms() - b0;
            }
            const double c0 = cpu_ms(), w0 = wall_ms();
            const std::uint64_t now = monotonic_ns();
            Report rep;
            rep.time = std::chrono::system_clock::now();
            rep.ifaces = {"lo"};
            const std::vector<FlowSample>& samples = collector.collect(now, idle_limit);
            const double c_collect = cpu_ms();
            builder.build(samples, now, now - last, false,
                          changed_only ? &collector.changed() : nullptr);
            evicted += collector.forget(collector.idle());
            last = now;
            rep.stats = builder.stats();
            add_store_stats(rep.stats, collector, evicted);
            const double c_build = cpu_ms();
            // Streamed in chunks, as the JSON output prints it (fwrite there, write here).
            std::size_t out_bytes = 0;
            render_json(
                rep.time, builder.table(),
                [&](std::string_view chunk) {
                    out_bytes += chunk.size();
                    for (std::size_t off = 0; off < chunk.size();) {
                        const ssize_t w = write(devnull, chunk.data() + off, chunk.size() - off);
                        if (w <= 0) return false;
                        off += static_cast<std::size_t>(w);
                    }
                    return true;
                },
                render_opts);
            const double c1 = cpu_ms(), w1 = wall_ms();
            // Not timed: how many rows had a non-zero rate (display order is busiest first).
            rows_moving = 0;
            for (FlowRow row; rows_moving < builder.size(); ++rows_moving) {
                builder.row(rows_moving, row);
                if (row.fwd_bps + row.rev_bps == 0) break;
            }
            live = collector.live();
            if (live != expect)
                throw Error("the store holds " + std::to_string(live) + " live flows, not " +
                            std::to_string(expect) + " (" + std::to_string(n) + " - " +
                            std::to_string(refused) + " refused)");
            if (r == (warmup ? -1 : 0)) {
                // Not timed: the fill made what it meant to, established flows
                // with an RTT and payload both ways.
                std::size_t ok = 0;
                for (const FlowSample& s : samples)
                    ok += s.info.state == TT_ESTABLISHED && handshake_rtt(s.info) &&
                          s.payload[0] > 0 && s.payload[1] > 0 && !s.finished;
                if (ok != expect)
                    throw Error(std::to_string(expect - ok) +
                                " of the flows are not "
                                "established with payload both ways");
            }
            if (r < 0) {  // the unmeasured first report of idle/changed mode
                first_cpu = c1 - c0;
                continue;
            }
            cpu.push_back(c1 - c0);
            wall.push_back(w1 - w0);
            p_collect.push_back(c_collect - c0);
            p_build.push_back(c_build - c_collect);
            p_render.push_back(c1 - c_build);
            rows_seen = builder.size();
            json_bytes = out_bytes;
        }
        close(devnull);
        double close_us = 0, close_p90_us = 0, close_mean_us = 0;
        if (close_all) {
            std::vector<double> ns = finish(prog, n);
            if (ns.size() != n)
                throw Error(std::string("BPF_PROG_TEST_RUN failed: ") + std::strerror(errno));
            // Median and 90th percentile: a run that an interrupt (the close
            // event's wakeup among them) lands in is counted, not averaged in.
            std::sort(ns.begin(), ns.end());
            for (double x : ns) close_mean_us += x / 1e3;
            if (n) {
                close_mean_us /= n;
                close_us = ns[n / 2] / 1e3;
                close_p90_us = ns[n * 9 / 10] / 1e3;
            }
            // Not timed: every connection ended (a report takes the close events).
            std::size_t ended = 0;
            for (const FlowSample& s : collector.collect(monotonic_ns(), idle_limit))
                ended += s.finished && s.info.state == TT_CLOSED;
            if (ended != expect)
                throw Error(std::to_string(ended) + " of " + std::to_string(expect) +
                            " connections ended CLOSED after --close");
        }
        std::vector<std::size_t> idx(cpu.size());
        for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
        std::sort(idx.begin(), idx.end(), [&](auto x, auto y) { return cpu[x] < cpu[y]; });
        const std::size_t mi = idx[idx.size() / 2];
        const double med = cpu[mi];
        std::vector<double> ws = wall;
        std::sort(ws.begin(), ws.end());
        std::printf(
            "mode=%s output=%s flows=%u refused=%llu live=%zu rows=%zu rows_moving=%zu threads=%u "
            "render_threads=%u "
            "fill_ms=%.0f bump_ms=%.0f first_cpu_ms=%.2f cpu_ms_median=%.2f "
            "wall_ms_median=%.2f cpu_ms_all=",
            mode.c_str(), output.c_str(), n, static_cast<unsigned long long>(refused), live,
            rows_seen, rows_moving, threads, render_opts.threads, fill_ms, bump_ms, first_cpu, med,
            ws[ws.size() / 2]);
        for (std::size_t i = 0; i < cpu.size(); ++i) std::printf("%s%.2f", i ? "/" : "", cpu[i]);
        std::printf(" collect_ms=%.2f build_ms=%.2f render_ms=%.2f", p_collect[mi], p_build[mi],
                    p_render[mi]);
        // rss_before: after the fill (the store is in the kernel); rss_end: what
        // the collector and builder keep between reports; peak: ru_maxrss.
        std::printf(
            " rss_before_mb=%.1f rss_end_mb=%.1f peak_rss_mb=%.1f json_mb=%.1f "
            "ns_per_flow=%.0f",
            rss_before, rss_mb(false), rss_mb(true), json_bytes / 1048576.0,
            n ? med * 1e6 / n : 0.0);
        // The counter cache: the CPUs it is sized for, its entries in all and its memory.
        const std::size_t entries = skel.cache_entries();
        std::printf(" max_flows=%u cache_cpus=%u full_cache=%d cache_entries=%zu cache_mib=%.1f",
                    skel.geometry().slots, skel.cache_cpus(), full_cache ? 1 : 0, entries,
                    entries * sizeof(tt_cache_entry) / 1048576.0);
        if (close_all)
            std::printf(" close_us=%.2f close_p90_us=%.2f close_mean_us=%.2f", close_us,
                        close_p90_us, close_mean_us);
        std::printf("\n");
        // Every flow is a row, except in --changed output when nothing moved.
        const bool none_changed = mode == "idle" || (mode == "fresh" && reports > 1);
        const std::size_t want = changed_only && none_changed ? 0 : expect;
        if (rows_seen != want) {
            std::fprintf(stderr, "report_cost: expected %zu rows, got %zu\n", want, rows_seen);
            return 1;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "report_cost: %s\n", e.what());
        return 1;
    }
    return 0;
}
