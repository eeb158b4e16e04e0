// SPDX-License-Identifier: MIT
// --ipfix: flow records to an IPFIX collector (RFC 7011), encoded by
// libfixbuf into a memory buffer and sent over our own non-blocking socket,
// so a slow, absent or unreachable collector never holds up the report loop.
//
// One biflow record (RFC 5103) per connection and export, oriented client ->
// server: source = the client (biflowDirection 1, initiator), octetDeltaCount
// / packetDeltaCount client -> server and reverseOctetDeltaCount /
// reversePacketDeltaCount server -> client, all deltas since that
// connection's previous record, so a collector's sums equal tcptrack's totals.
// Records go out when a connection closes (flowEndReason 3), at its last
// report when idle (1), every --ipfix-active-timeout while it lives (2),
// for every live connection at exit (4), and when a half-open flow is
// displaced to make room for a new connection (5, lack of resources).
// Connection health each way (the rows' fwd_health / rev_health: what the
// client sent, what the server sent) as enterprise elements, forward and
// reverse: counters as deltas like the bytes, RTT figures as they stand.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "config/options.hpp"
#include "output/export_tally.hpp"
#include "output/output.hpp"

namespace tcptrack {

// Enterprise-specific elements (RFC 7011 section 3.2) under PEN 32473, the
// number IANA reserves for documentation and examples (RFC 5612): nobody
// owns it, so it never collides with a real vendor's elements.
inline constexpr std::uint32_t kIpfixPen = 32473;
// unsigned64, deltaCounter: TCP payload bytes client -> server (the reverse
// direction, server -> client, is the same number with bit 0x4000 set, as
// RFC 5103 section 6.2 defines for enterprise-specific elements).
inline constexpr std::uint16_t kIpfixIePayload = 1;
// unsigned32: handshake RTT in microseconds (0: not measured).
inline constexpr std::uint16_t kIpfixIeRttUs = 2;
// string (variable length): the Kubernetes pod UID and the container id of
// the local socket's process (enrich/pod.hpp); empty when unknown.
inline constexpr std::uint16_t kIpfixIePodUid = 3;
inline constexpr std::uint16_t kIpfixIeContainerId = 4;
// string (variable length): --node-name, on every record; empty when none.
inline constexpr std::uint16_t kIpfixIeNodeName = 5;
// Connection health, each reversible (RFC 5103: the reverse element is the
// id | 0x4000, what the server sent; the forward one what the client sent).
// IANA has no element for any of them. unsigned64, deltaCounter, since the
// connection's previous record: retransmitted segments (wire segments),
// retransmitted payload bytes, lost segments (data starting past the next
// expected sequence: not seen here), duplicate ACKs sent, transitions to an
// advertised zero window.
inline constexpr std::uint16_t kIpfixIeRetransSegments = 6;
inline constexpr std::uint16_t kIpfixIeRetransOctets = 7;
inline constexpr std::uint16_t kIpfixIeLostSegments = 8;
inline constexpr std::uint16_t kIpfixIeDupAcks = 9;
inline constexpr std::uint16_t kIpfixIeZeroWindows = 10;
// unsigned32, microseconds: the RTT of that side's data (from here to its
// receiver and back) over the connection's life so far: minimum, smoothed
// (as at the record's end), maximum; 0 with no sample.
inline constexpr std::uint16_t kIpfixIeRttMinUs = 11;
inline constexpr std::uint16_t kIpfixIeSrttUs = 12;
inline constexpr std::uint16_t kIpfixIeRttMaxUs = 13;
// unsigned64, totalCounter: the RTT samples behind them, over the connection's life.
inline constexpr std::uint16_t kIpfixIeRttSamples = 14;
// Template IDs.
inline constexpr std::uint16_t kIpfixTemplateV4 = 256;
inline constexpr std::uint16_t kIpfixTemplateV6 = 257;
// UDP: templates are re-sent this often (RFC 7011 section 8.4), and on start.
inline constexpr double kIpfixTemplateRefreshS = 60.0;

// How an exporter reads a sample as a row (its health figures): report/
// flow_model's fill_row, unless a test hands rows of its own. (The same alias
// is in output/prometheus.hpp.)
using ExportRowOf = std::function<void(FlowRow& row, const FlowSample& s, const std::string& iface,
                                       std::uint64_t now_ns)>;

// Counts its errors (records not delivered) into tally.counter("ipfix").
// row_of: empty for fill_row.
// Throws tcptrack::Error (one line) if the collector's address cannot be resolved.
std::unique_ptr<Output> make_ipfix_output(const Options& opts, ExportTally& tally,
                                          ExportRowOf row_of = {});

}  // namespace tcptrack
