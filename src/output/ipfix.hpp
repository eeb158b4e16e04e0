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
#pragma once

#include <cstdint>
#include <memory>

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
// Template IDs.
inline constexpr std::uint16_t kIpfixTemplateV4 = 256;
inline constexpr std::uint16_t kIpfixTemplateV6 = 257;
// UDP: templates are re-sent this often (RFC 7011 section 8.4), and on start.
inline constexpr double kIpfixTemplateRefreshS = 60.0;

// Counts its errors (records not delivered) into tally.counter("ipfix").
// Throws tcptrack::Error (one line) if the collector's address cannot be resolved.
std::unique_ptr<Output> make_ipfix_output(const Options& opts, ExportTally& tally);

}  // namespace tcptrack
