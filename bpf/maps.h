/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The datapath's maps. Sizes are set from user space (--max-flows) before load. */
#ifndef TCPTRACK_MAPS_H
#define TCPTRACK_MAPS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tcptrack/flow.h"

#define TT_DEFAULT_FLOWS 65536
#define TT_MAX_CPUS 1024 /* bound for loops over CPUs; the real count is tt_nr_cpus */

/*
 * Hot map: one lookup per packet, per-CPU values so no atomics or bouncing lines.
 * A full map refuses new flows (counted) rather than evicting: an LRU map
 * costs ~25 ns more per packet here (bench/datapath_micro builds that variant
 * with TT_FLOWS_LRU) and its evictions are silent and uncountable.
 */
#ifdef TT_FLOWS_LRU
#define TT_FLOWS_TYPE BPF_MAP_TYPE_LRU_PERCPU_HASH
#else
#define TT_FLOWS_TYPE BPF_MAP_TYPE_PERCPU_HASH
#endif
struct {
	__uint(type, TT_FLOWS_TYPE);
	__uint(max_entries, TT_DEFAULT_FLOWS);
	__type(key, struct tt_flow_key);
	__type(value, struct tt_counters);
} flows SEC(".maps");

/* Lifecycle and SYN/FIN/RST timestamps, touched only by packets that change state. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TT_DEFAULT_FLOWS);
	__type(key, struct tt_flow_key);
	__type(value, struct tt_flow_state);
} flow_states SEC(".maps");

/* Finished connections with their final counters, so none is lost between polls. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 21);
} closed_events SEC(".maps");

/* Reused tuples' old connections that did not fit the ring; user space drains it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct tt_parked_key);
	__type(value, struct tt_close_event);
} parked_closes SEC(".maps");

/* Room to build a close event: too big for the 512-byte BPF stack next to the parser's state. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tt_close_event);
} close_scratch SEC(".maps");

/* One tt_flow_memo per CPU (see flow.h). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tt_flow_memo);
} flow_memo SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TT_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

#endif /* TCPTRACK_MAPS_H */
