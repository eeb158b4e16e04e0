// SPDX-License-Identifier: MIT
#include "attach/tc_filter.hpp"

namespace tcptrack {

namespace {

bpf_tc_hook make_hook(int ifindex, bpf_tc_attach_point point) {
    bpf_tc_hook h{};
    h.sz = sizeof(h);
    h.ifindex = ifindex;
    h.attach_point = point;
    return h;
}

// Both points at once: the clsact qdisc itself. Never destroy a single direction:
// that flushes every filter in it, not only ours.
bpf_tc_hook clsact_hook(int ifindex) {
    return make_hook(ifindex, static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
}

bpf_tc_opts filter_opts(std::uint32_t handle) {
    bpf_tc_opts o{};
    o.sz = sizeof(o);
    o.handle = handle;
    o.priority = kTcPriority;
    return o;
}

}  // namespace

const char* direction_name(bpf_tc_attach_point point) {
    return point == BPF_TC_INGRESS ? "ingress" : "egress";
}

int create_clsact(int ifindex) {
    bpf_tc_hook hook = clsact_hook(ifindex);
    return bpf_tc_hook_create(&hook);
}

bool destroy_clsact(int ifindex) {
    bpf_tc_hook hook = clsact_hook(ifindex);
    return bpf_tc_hook_destroy(&hook) == 0;
}

std::uint32_t query_filter(int ifindex, bpf_tc_attach_point point, std::uint32_t handle) {
    bpf_tc_hook hook = make_hook(ifindex, point);
    bpf_tc_opts o = filter_opts(handle);
    return bpf_tc_query(&hook, &o) == 0 ? o.prog_id : 0;
}

int attach_filter(int ifindex, bpf_tc_attach_point point, std::uint32_t handle, int prog_fd) {
    bpf_tc_hook hook = make_hook(ifindex, point);
    bpf_tc_opts o = filter_opts(handle);
    o.prog_fd = prog_fd;
    return bpf_tc_attach(&hook, &o);
}

bool detach_if(int ifindex, bpf_tc_attach_point point, std::uint32_t handle,
               std::uint32_t prog_id) {
    if (!prog_id || query_filter(ifindex, point, handle) != prog_id) return false;
    bpf_tc_hook hook = make_hook(ifindex, point);
    bpf_tc_opts o = filter_opts(handle);
    return bpf_tc_detach(&hook, &o) == 0;
}

}  // namespace tcptrack
