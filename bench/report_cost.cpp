// SPDX-License-Identifier: MIT
// User-space cost of one tcptrack report for N live flows.
//
// Loads tcptrack::Skeleton (nothing attached), fills `flows` and
// `flow_states` with N synthetic established IPv4 connections using
// bpf_map_update_batch (in chunks, so the fill itself adds little to peak
// RSS), then times what the run loop does per report for --format json, with
// the same calls as src/app.cpp Session::build_report + print:
//   Collector::collect -> ReportBuilder::build (rates, stats, idle flows,
//   display order) -> Collector::forget -> render_json of the builder's rows,
//   streamed in 64 KiB chunks to /dev/null
// CPU time = getrusage(RUSAGE_SELF) user+sys delta (includes the kernel's
// map reads). R reports (default 3) are measured; the median is printed,
// with the CPU split into collect / rows (ReportBuilder::build + forget) /
// render (render_json, which builds each row, + write) for the median report.
//
//   report_cost --flows N [--reports R] [--mode fresh|idle|changed]
//     fresh    (default) R reports from the fill on: the first sees every flow new
//     idle     one unmeasured report first, then R reports with nothing changed
//              in the maps since the previous one (flows resident, all idle)
//     changed  one unmeasured report first, then before each of the R reports
//              every flow's counters are moved (bpf_map_update_batch of
//              `flows`, not timed): every flow changed since the previous one
//   In idle/changed mode the unmeasured first report's CPU is printed as first_cpu_ms.
// Prints one line of key=value pairs for bench/run.sh.
#include <sys/resource.h>

#include <algorithm>
#include <arpa/inet.h>
#include <chrono>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <string>
#include <string_view>
#include <unistd.h>
#include <vector>

#include "tcptrack.skel.h"
#include "tcptrack/collector.hpp"
#include "tcptrack/error.hpp"
#include "tcptrack/flow_model.hpp"
#include "tcptrack/render.hpp"
#include "tcptrack/report_builder.hpp"
#include "tcptrack/skeleton.hpp"

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

tt_flow_key make_key(std::uint32_t i) {
    tt_flow_key k{};
    const std::uint32_t a = htonl(0x0A000001u);                // 10.0.0.1 (sorts first)
    const std::uint32_t b = htonl(0x0B000000u + (i / 50000));  // 11.x.y.z
    std::memcpy(k.addr_a, &a, 4);
    std::memcpy(k.addr_b, &b, 4);
    k.port_a = htons(443);
    k.port_b = htons(static_cast<std::uint16_t>(10000 + i % 50000));
    k.ifindex = 1;
    k.family = TT_FAMILY_INET;
    return k;
}

// Writes every flow's counters: generation `gen` moves each one forward
// (bytes, packets and payload all grow from one generation to the next).
void write_counters(const Skeleton& skel, std::uint32_t n, std::uint64_t gen) {
    const int flows_fd = bpf_map__fd(skel->maps.flows);
    const std::uint32_t ncpu = skel.counter_copies();
    const std::size_t stride = (sizeof(tt_counters) + 7) & ~std::size_t{7};
    constexpr std::uint32_t kChunk = 16384;
    std::vector<tt_flow_key> keys(kChunk);
    std::vector<std::uint8_t> counters(kChunk * stride * ncpu);
    for (std::uint32_t base = 0; base < n; base += kChunk) {
        const std::uint32_t m = std::min(kChunk, n - base);
        std::memset(counters.data(), 0, counters.size());
        for (std::uint32_t j = 0; j < m; ++j) {
            const std::uint32_t i = base + j;
            keys[j] = make_key(i);
            const std::uint64_t step = gen * (1 + i % 7);  // flows move at different rates
            for (std::uint32_t cpu = 0; cpu < ncpu; ++cpu) {
                tt_counters c{};
                c.bytes[0] = 1000 + i + cpu + step * 1500;
                c.bytes[1] = 50000 + i + step * 52;
                c.packets[0] = 10 + cpu + step;
                c.packets[1] = 40 + step;
                c.payload[0] = 500 + i + step * 1448;
                c.payload[1] = 48000 + i;
                std::memcpy(counters.data() + (j * ncpu + cpu) * stride, &c, sizeof(c));
            }
        }
        std::uint32_t count = m;
        if (bpf_map_update_batch(flows_fd, keys.data(), counters.data(), &count, nullptr) ||
            count != m)
            throw Error(std::string("flows batch update: ") + std::strerror(errno));
    }
}

void fill(const Skeleton& skel, std::uint32_t n) {
    const int states_fd = bpf_map__fd(skel->maps.flow_states);
    constexpr std::uint32_t kChunk = 16384;
    std::vector<tt_flow_key> keys(kChunk);
    std::vector<tt_flow_state> states(kChunk);
    const std::uint64_t now = monotonic_ns();
    for (std::uint32_t base = 0; base < n; base += kChunk) {
        const std::uint32_t m = std::min(kChunk, n - base);
        for (std::uint32_t j = 0; j < m; ++j) {
            const std::uint32_t i = base + j;
            keys[j] = make_key(i);
            tt_flow_state st{};
            st.info.first_ns = now - 5000000000ull + i;
            st.info.syn_ns = st.info.first_ns;
            st.info.synack_ns = st.info.syn_ns + 100000;
            st.info.ack_ns = st.info.synack_ns + 150000;
            st.info.state = TT_ESTABLISHED;
            st.info.client = TT_DIR_BA;
            st.info.flags = TT_F_SYN_SEEN | TT_F_HS_SEEN;
            states[j] = st;
        }
        std::uint32_t count = m;
        if (bpf_map_update_batch(states_fd, keys.data(), states.data(), &count, nullptr) ||
            count != m)
            throw Error(std::string("flow_states batch update: ") + std::strerror(errno));
    }
    write_counters(skel, n, 0);
}

}  // namespace

int main(int argc, char** argv) {
    std::uint32_t n = 1000;
    int reports = 3;  // >= 1
    std::string mode = "fresh";
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (i + 1 < argc && a == "--flows") n = static_cast<std::uint32_t>(std::atol(argv[++i]));
        else if (i + 1 < argc && a == "--reports") reports = std::max(1, std::atoi(argv[++i]));
        else if (i + 1 < argc && a == "--mode") mode = argv[++i];
        else {
            std::fprintf(stderr,
                         "usage: %s --flows N [--reports R] [--mode fresh|idle|changed]\n",
                         argv[0]);
            return 2;
        }
    }
    if (mode != "fresh" && mode != "idle" && mode != "changed") {
        std::fprintf(stderr, "report_cost: --mode must be fresh, idle or changed\n");
        return 2;
    }
    const bool warmup = mode != "fresh";
    try {
        set_libbpf_verbose(false);
        const Features& features = probe_features();
        Skeleton skel(preferred_load_config(features, n + 1024, false));
        const double f0 = wall_ms();
        fill(skel, n);
        const double fill_ms = wall_ms() - f0;
        const double rss_before = rss_mb(false);

        Collector collector(skel, features.reader());
        std::map<std::uint32_t, std::string> names{{1, "lo"}};
        ReportBuilder builder(names);
        const std::uint64_t idle_limit = 60'000'000'000ull;  // the default --idle-timeout
        const int devnull = open("/dev/null", O_WRONLY);
        std::uint64_t last = monotonic_ns();
        std::vector<double> cpu, wall, p_collect, p_rows, p_render;
        std::size_t rows_seen = 0, json_bytes = 0;
        double first_cpu = -1, bump_ms = 0;
        std::size_t rows_moving = 0;  // rows with a non-zero rate, last report
        for (int r = warmup ? -1 : 0; r < reports; ++r) {
            if (mode == "changed" && r >= 0) {
                const double b0 = wall_ms();
                write_counters(skel, n, static_cast<std::uint64_t>(r) + 1);
                bump_ms = wall_ms() - b0;
            }
            const double c0 = cpu_ms(), w0 = wall_ms();
            const std::uint64_t now = monotonic_ns();
            Report rep;
            rep.time = std::chrono::system_clock::now();
            rep.ifaces = {"lo"};
            const std::vector<FlowSample>& samples = collector.collect(now);
            const double c_collect = cpu_ms();
            builder.build(samples, now, now - last, idle_limit, false);
            collector.forget(builder.idle_keys());
            last = now;
            rep.stats = builder.stats();
            const double c_rows = cpu_ms();
            // Streamed in chunks, as src/app.cpp prints it (fwrite there, write here).
            std::size_t out_bytes = 0;
            render_json(rep.time, builder.rows(), [&](std::string_view chunk) {
                out_bytes += chunk.size();
                for (std::size_t off = 0; off < chunk.size();) {
                    const ssize_t w = write(devnull, chunk.data() + off, chunk.size() - off);
                    if (w <= 0) return false;
                    off += static_cast<std::size_t>(w);
                }
                return true;
            });
            const double c1 = cpu_ms(), w1 = wall_ms();
            // Not timed: how many rows had a non-zero rate (display order is busiest first).
            rows_moving = 0;
            for (FlowRow row; rows_moving < builder.size(); ++rows_moving) {
                builder.row(rows_moving, row);
                if (row.fwd_bps + row.rev_bps == 0) break;
            }
            if (r < 0) {  // the unmeasured first report of idle/changed mode
                first_cpu = c1 - c0;
                continue;
            }
            cpu.push_back(c1 - c0);
            wall.push_back(w1 - w0);
            p_collect.push_back(c_collect - c0);
            p_rows.push_back(c_rows - c_collect);
            p_render.push_back(c1 - c_rows);
            rows_seen = builder.size();
            json_bytes = out_bytes;
        }
        close(devnull);
        std::vector<std::size_t> idx(cpu.size());
        for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
        std::sort(idx.begin(), idx.end(), [&](auto x, auto y) { return cpu[x] < cpu[y]; });
        const std::size_t mi = idx[idx.size() / 2];
        const double med = cpu[mi];
        std::vector<double> ws = wall;
        std::sort(ws.begin(), ws.end());
        std::printf("mode=%s copies=%u flows=%u rows=%zu rows_moving=%zu fill_ms=%.0f "
                    "bump_ms=%.0f first_cpu_ms=%.2f cpu_ms_median=%.2f wall_ms_median=%.2f "
                    "cpu_ms_all=", mode.c_str(), skel.counter_copies(), n, rows_seen,
                    rows_moving, fill_ms, bump_ms, first_cpu, med, ws[ws.size() / 2]);
        for (std::size_t i = 0; i < cpu.size(); ++i)
            std::printf("%s%.2f", i ? "/" : "", cpu[i]);
        std::printf(" collect_ms=%.2f rows_ms=%.2f render_ms=%.2f", p_collect[mi], p_rows[mi],
                    p_render[mi]);
        std::printf(" rss_before_mb=%.1f peak_rss_mb=%.1f json_mb=%.1f ns_per_flow=%.0f\n",
                    rss_before, rss_mb(true), json_bytes / 1048576.0,
                    n ? med * 1e6 / n : 0.0);
        if (rows_seen != n) {
            std::fprintf(stderr, "report_cost: expected %u rows, got %zu\n", n, rows_seen);
            return 1;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "report_cost: %s\n", e.what());
        return 1;
    }
    return 0;
}
