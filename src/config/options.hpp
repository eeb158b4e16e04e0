// SPDX-License-Identifier: MIT
// What the user asked for: the options and their enums, data only (parsed and
// validated by app/cli.cpp). The bottom of src/: it includes nothing of ours.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tcptrack {

enum class Format { Table, Json, Csv, None };  // None: exporters only (headless)
enum class AttachMode { Auto, Tcx, Tc };
// Report order (--sort): busiest first by this key; the rest breaks ties the same way.
enum class SortKey { Rate, Bytes, Packets, Age, Rtt, Retrans };

// Defaults the loader's LoadConfig (datapath/skeleton.hpp) shares, so tools that
// load without options (benches, tests) get what tcptrack does.
inline constexpr std::uint32_t kDefaultMaxFlows = 65536;
inline constexpr std::uint32_t kDefaultRttRateLimitUs = 100000;  // ePPing's 100 ms

struct Options {
    std::vector<std::string> ifaces;      // -i names and fnmatch patterns; empty: the default route
    bool all_interfaces = false;          // --all-interfaces (attach/interface_select.hpp)
    std::uint32_t max_interfaces = 1024;  // --max-interfaces: watched at once, >= 1
    double interval_s = 2.0;              // > 0
    std::optional<std::uint64_t> count;   // reports to print; --once = 1
    Format format = Format::Table;
    AttachMode attach = AttachMode::Auto;
    std::uint32_t max_flows = kDefaultMaxFlows;  // >= 1
    double idle_timeout_s = 60.0;                // > 0
    double unassured_timeout_s =
        30.0;  // --unassured-timeout: half-open/one-way flows idle out sooner
    // --test-hash-key HEX (32 hex digits): a fixed index hash key, only with
    // TCPTRACK_TEST_MODE=1 in the environment (refused otherwise): tests reproduce collisions.
    std::optional<std::array<std::uint8_t, 16>> test_hash_key;
    bool summary = false;  // JSON: a summary record per report; table: a footer line
    std::string filter;    // trailing filter expression ("" = everything)
    bool process = true;   // PROCESS column / pid, comm, cgroup (--no-process)
    bool health = true;    // connection health in the datapath (--no-health)
    // --rtt-rate-limit MS: a side of a connection starts an RTT probe at most
    // this often (tcptrack/health.h: TT_HEALTH_PROBE_GAP_US); 0: every round trip.
    std::uint32_t rtt_rate_limit_us = kDefaultRttRateLimitUs;
    bool resolve = false;                  // -r: reverse DNS names in the table
    std::string netns;                     // --netns NAME|PATH|PID ("" = our own namespace)
    std::string ipfix;                     // --ipfix udp://HOST:PORT | tcp://HOST:PORT ("" = off)
    double ipfix_active_timeout_s = 60.0;  // --ipfix-active-timeout: long-lived flows' records
    // --node-name: names this node on every IPFIX record and Prometheus
    // series (default $NODE_NAME, else the host name; "" in tests: none).
    std::string node_name;
    std::string prometheus;  // --prometheus ADDR:PORT ("" = off)
    // --prometheus-pods: per-pod series of the pods on this node (capped; see
    // output/prometheus.hpp: PodSeriesLimits). Needs --prometheus and process attribution.
    bool prometheus_pods = false;
    bool closed_only = false;          // --closed: log connections as they close
    bool changed_only = false;         // --changed: rows only for new, moved or closed ones
    SortKey sort = SortKey::Rate;      // --sort
    std::optional<std::uint64_t> top;  // --top N: at most N rows per report
    bool cleanup = false;              // --cleanup: remove stale legacy-tc filters and exit
    bool check = false;                // --check: report what this kernel supports, exit
    bool verbose = false;              // libbpf debug output
};

}  // namespace tcptrack
