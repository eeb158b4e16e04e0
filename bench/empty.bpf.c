// SPDX-License-Identifier: MIT
/*
 * The measurement floor: a TCX classifier that does nothing. Attached next to
 * tcptrack on the same hooks, its run_time_ns is the cost of merely running a
 * BPF program (dispatch + bpf_stats bookkeeping), which tcptrack also pays.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define TCX_NEXT (-1)

SEC("tc")
int ttbench_fl_in(struct __sk_buff *skb)
{
	return TCX_NEXT;
}

SEC("tc")
int ttbench_fl_eg(struct __sk_buff *skb)
{
	return TCX_NEXT;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
