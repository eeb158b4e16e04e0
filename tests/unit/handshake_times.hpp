// SPDX-License-Identifier: MIT
// set_handshake: a sample's info with these handshake times, through the same
// copy from tt_flow_info the collector makes (FlowInfo keeps the RTT and
// whether either was seen, not the SYN-ACK and ACK times).
#pragma once

#include <cstdint>

#include "datapath/flow_sample.hpp"

namespace tcptrack {

inline void set_handshake(FlowInfo& info, std::uint64_t syn_ns, std::uint64_t synack_ns,
                          std::uint64_t ack_ns) {
    tt_flow_info t{};
    t.flags = info.flags;  // the RTT's rule depends on them
    t.syn_ns = syn_ns;
    t.synack_ns = synack_ns;
    t.ack_ns = ack_ns;
    const FlowInfo with(t);
    info.acked = with.acked;
    info.set_handshake_rtt(with.handshake_rtt());
}

}  // namespace tcptrack
