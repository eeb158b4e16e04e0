// SPDX-License-Identifier: MIT
// --prometheus ADDR:PORT: aggregate metrics on http://ADDR:PORT/metrics in the
// Prometheus text exposition format (prometheus-cpp, its civetweb server in
// its own threads). Aggregates only, so the number of series is bounded by
// interfaces x states/reasons/directions, never by connections:
//
//   tcptrack_connections{interface,state}                      gauge: live connections by state
//   tcptrack_connections_opened_total{interface}               connections first seen
//   tcptrack_connections_closed_total{interface,reason}        fin | rst | idle | displaced
//   tcptrack_bytes_total{interface,direction,kind}             client_to_server | server_to_client,
//                                                              wire | payload
//   tcptrack_packets_total{interface,direction}
//   tcptrack_handshake_rtt_seconds{interface}                  histogram, once per connection
//   tcptrack_untracked_connections_total{interface}            datapath-wide (interface: all,
//   joined tcptrack_evicted_connections_total{interface}              with ","): one series with
//   the true tcptrack_close_events_dropped_total{interface}             value, so sum() does not
//   multiply it tcptrack_export_errors_total{interface,exporter}           ipfix | prometheus | ...
//   tcptrack_store_capacity{interface}                         gauge, datapath-wide, and so on:
//   tcptrack_store_flows{interface,assurance}                  gauge: assured | unassured
//   tcptrack_displaced_connections_total{interface}
//   tcptrack_untracked_connections_by_reason_total{interface,reason}   store_full | buckets_full
//   tcptrack_retransmitted_segments_total{interface,direction}  connection health (the rows'
//   tcptrack_retransmitted_bytes_total{interface,direction}     fwd_health / rev_health):
//   tcptrack_lost_segments_total{interface,direction}           what each direction's sender
//   tcptrack_duplicate_acks_total{interface,direction}          did, exact deltas from report
//   tcptrack_zero_windows_total{interface,direction}            to report
//   tcptrack_rtt_seconds{interface}                             histogram: each connection's
//                                                               smoothed RTT once, at its end
//
// With --prometheus-pods (PodSeriesLimits), per pod on this node (a connection
// whose local socket's owner is in a pod: its row's pod_uid), no interface label:
//
//   tcptrack_pod_bytes_total{pod_uid,direction,kind}            sent | received (the pod's
//                                                               socket's view), wire | payload
//   tcptrack_pod_connections_opened_total{pod_uid}              first counted for the pod
//   tcptrack_pod_connections_closed_total{pod_uid}              counted connections ended
//   tcptrack_pod_connections_dropped_total                      not counted: max_pods reached
//
// write() turns one report into counter increments (computed first, applied
// under a lock the scrape takes too), so a scrape sees whole reports only and
// the tracing never waits for more than applying a few dozen numbers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/options.hpp"
#include "output/export_tally.hpp"
#include "output/health.hpp"
#include "output/output.hpp"

namespace tcptrack {

// How an exporter reads a sample as a row (its health figures, its smoothed
// RTT): report/flow_model's fill_row, unless a test hands rows of its own.
// (The same alias is in output/ipfix.hpp.)
using ExportRowOf = std::function<void(FlowRow& row, const FlowSample& s, const std::string& iface,
                                       std::uint64_t now_ns)>;

// --prometheus-pods: per-pod series, bounded so a node never grows them
// without limit: at most max_pods pods have series at once (a connection of
// another pod is counted in tcptrack_pod_connections_dropped_total instead),
// and a pod's series go idle_ns after its last counted connection ended.
struct PodSeriesLimits {
    static constexpr std::size_t kMaxPods = 1024;  // kubelet's --max-pods is 110 by default
    static constexpr std::uint64_t kIdleNs = 300'000'000'000;  // 5 minutes
    bool enabled = false;
    std::size_t max_pods = kMaxPods;
    std::uint64_t idle_ns = kIdleNs;
};

class PrometheusOutput final : public Output {
   public:
    // listen: "ADDR:PORT" ("[ADDR]:PORT" for IPv6; a host name is resolved to
    // its first address; port 0 picks a free one, see port()), or "" to serve
    // nothing (tests read exposition()). ifaces: series made at 0 from the start.
    // exports: the exporters' errors, read at each report (may be null).
    // node: --node-name, a `node` label on every series ("" = none).
    // health: what GET /healthz answers (200 "ok" or 503 and why; null: always ok).
    // row_of: how a sample becomes the row read for health (empty: fill_row).
    // pods: the per-pod series (off by default); their pod_uid comes from the
    // frame's enrichers. Throws Error (one line) if it cannot listen.
    PrometheusOutput(const std::string& listen, const std::vector<std::string>& ifaces,
                     const ExportTally* exports = nullptr, const std::string& node = "",
                     const Health* health = nullptr, ExportRowOf row_of = {},
                     PodSeriesLimits pods = {});
    ~PrometheusOutput() override;

    bool write(const ReportFrame& frame) override;
    const char* name() const override { return "prometheus"; }

    // The exposition a scrape gets now (text format).
    std::string exposition() const;
    // The port listened on (0 when serving nothing).
    int port() const;

    struct Impl;

   private:
    std::unique_ptr<Impl> impl_;
};

std::unique_ptr<Output> make_prometheus_output(const Options& opts,
                                               const std::vector<std::string>& ifaces,
                                               const ExportTally& exports, const Health& health);

}  // namespace tcptrack
