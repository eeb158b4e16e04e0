// SPDX-License-Identifier: MIT
// tcptrack's legacy-tc filters, one at a time by (priority, handle), and the
// clsact qdisc they hang on, through libbpf.
#pragma once

#include <bpf/libbpf.h>

#include <cstdint>

namespace tcptrack {

// Our legacy-tc filters: one priority; instance n (1..kTcMaxInstances) uses
// handle kTcHandleBase + n on each interface.
inline constexpr std::uint32_t kTcPriority = 0xc7c7;
inline constexpr std::uint32_t kTcHandleBase = 0x7c70000;
inline constexpr std::uint32_t kTcMaxInstances = 0xffff;
// The single handle of tcptrack versions before per-instance handles (no lock files).
inline constexpr std::uint32_t kTcLegacyHandle = 0x7c7;

constexpr bool is_instance_handle(std::uint32_t h) {
    return h > kTcHandleBase && h <= kTcHandleBase + kTcMaxInstances;
}

// Both directions, in the order Programs lists them.
inline constexpr bpf_tc_attach_point kDirections[] = {BPF_TC_INGRESS, BPF_TC_EGRESS};
const char* direction_name(bpf_tc_attach_point point);

// Creates the clsact qdisc: 0 when created, -EEXIST when it was there, else -errno.
int create_clsact(int ifindex);
// Deletes the clsact qdisc, and every filter on it: call only once none is left.
bool destroy_clsact(int ifindex);

// The program id at (our priority, handle), or 0 when there is no such filter.
std::uint32_t query_filter(int ifindex, bpf_tc_attach_point point, std::uint32_t handle);
// Adds a filter at (our priority, handle), never replacing one: 0, or -errno
// (-EEXIST when the handle is taken).
int attach_filter(int ifindex, bpf_tc_attach_point point, std::uint32_t handle, int prog_fd);
// Deletes the filter at (our priority, handle) only while it still runs prog_id.
bool detach_if(int ifindex, bpf_tc_attach_point point, std::uint32_t handle, std::uint32_t prog_id);

}  // namespace tcptrack
