// SPDX-License-Identifier: MIT
// set_handshake: a sample's info with these handshake times, through the same
// copy from tt_flow_info the collector makes (FlowInfo keeps the RTT, not the
// SYN-ACK and ACK times).
#pragma once

#include <cstdint>

#include "datapath/flow_sample.hpp"

namespace tcptrack {

inline void set_handshake(FlowInfo& info, std::uint64_t syn_ns, std::uint64_t synack_ns,
                          std::uint64_t ack_ns) {
    tt_flow_info t{};
    t.first_ns = info.first_ns;
    t.close_ns = info.close_ns;
    t.owner_cgroup = info.owner_cgroup;
    t.state = info.state;
    t.client = info.client;
    t.flags = info.flags;
    t.fin_mask = info.fin_mask;
    t.ack_mask = info.ack_mask;
    t.end = info.end;
    t.owner_side = info.owner_side;
    t.syn_ns = syn_ns;
    t.synack_ns = synack_ns;
    t.ack_ns = ack_ns;
    info = FlowInfo(t);
}

}  // namespace tcptrack
