/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The datapath's maps (the store is described in tcptrack/flow.h). Sizes are set from user space before load. */
#ifndef TCPTRACK_MAPS_H
#define TCPTRACK_MAPS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tcptrack/flow.h"

#define TT_DEFAULT_FLOWS 65536

/* One slot per flow; user space mmaps it and reads it as plain memory. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, TT_DEFAULT_FLOWS);
	__type(key, __u32);
	__type(value, struct tt_slot);
} slots SEC(".maps");

/* Per-CPU counter cache (tcptrack/flow.h): nr_cpus x TT_CACHE_ENTRIES, set before load. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, TT_CACHE_ENTRIES);
	__type(key, __u32);
	__type(value, struct tt_cache_entry);
} flow_cache SEC(".maps");

/* key -> slot (tcptrack/flow.h); buckets = a power of two >= flows / 8. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TT_DEFAULT_FLOWS / 8);
	__type(key, __u32);
	__type(value, struct tt_index_bucket);
} flow_index SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tt_store_lock);
} store_lock SEC(".maps");

/* Lifecycle locks, striped by slot (a power of two). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TT_DEFAULT_FLOWS / 16);
	__type(key, __u32);
	__type(value, struct tt_slot_lock);
} slot_locks SEC(".maps");

/* Recycled slots, pushed by user space a report after their flow died. */
struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, TT_DEFAULT_FLOWS);
	__uint(key_size, 0);
	__uint(value_size, sizeof(__u32));
} free_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tt_evict_req);
} evict_req SEC(".maps");

/* Finished connections with their final counters, so none is lost between polls. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 21);
} closed_events SEC(".maps");

/* Room to build a close event: too big for the 512-byte BPF stack next to the parser's state. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tt_close_event);
} close_scratch SEC(".maps");

/*
 * The key the filter looks at, handed to it through this CPU's entry (one per
 * possible CPU, sized at load; an ARRAY so the lookup is inlined): the filter
 * is a global function, checked once by the verifier whatever the caller's
 * state, and on 5.10 those take only scalars and the context.
 */
struct tt_filter_arg {
	struct tt_flow_key key;
	__u8 pad[64 - sizeof(struct tt_flow_key)]; /* one cache line per CPU */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* nr_cpus, set by user space */
	__type(key, __u32);
	__type(value, struct tt_filter_arg);
} filter_arg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TT_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

#endif /* TCPTRACK_MAPS_H */
