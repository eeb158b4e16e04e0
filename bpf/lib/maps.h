/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Every map of the datapath in one place, with the load-time geometry in
 * .rodata that sizes them (set by user space before load,
 * src/datapath/skeleton.cpp) and the per-CPU handoff records of the global
 * functions (filter_arg, slow_arg). The store is described in tcptrack/store.h.
 * Included by every bpf/lib header that touches a map, and tcptrack.bpf.c.
 */
#ifndef TCPTRACK_MAPS_H
#define TCPTRACK_MAPS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tcptrack/abi.h"
#include "tcptrack/store.h"
#include "parse.h" /* struct tt_pkt, in slow_arg */

#define TT_DEFAULT_FLOWS 65536

/* Store geometry, set by user space before load (src/datapath/skeleton.cpp). */
const volatile __u32 tt_max_slots = TT_DEFAULT_FLOWS;
const volatile __u32 tt_index_mask = TT_DEFAULT_FLOWS / 8 - 1;
const volatile __u32 tt_lock_mask = TT_DEFAULT_FLOWS / 16 - 1;
/* Possible CPUs: the per-CPU cache has nr_cpus x (WAYS << tt_cache_bits) entries. */
const volatile __u32 tt_nr_cpus = 1;
/* Per-CPU cache sets = 1 << tt_cache_bits (tcptrack/store.h), set by user space. */
const volatile __u32 tt_cache_bits = TT_CACHE_SET_BITS_MAX;

/* One slot per flow; user space mmaps it and reads it as plain memory. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, TT_DEFAULT_FLOWS);
	__type(key, __u32);
	__type(value, struct tt_slot);
} slots SEC(".maps");

/* Connection health (tcptrack/health.h): one per slot, mmapable like the slots. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, TT_DEFAULT_FLOWS);
	__type(key, __u32);
	__type(value, struct tt_health);
} health SEC(".maps");

/* Per-CPU counter cache (tcptrack/store.h): nr_cpus x (WAYS << tt_cache_bits), set before load. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, TT_CACHE_WAYS << TT_CACHE_SET_BITS_MAX);
	__type(key, __u32);
	__type(value, struct tt_cache_entry);
} flow_cache SEC(".maps");

/* key -> slot (tcptrack/store.h); buckets = a power of two >= flows / 8. */
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
#define TT_CLOSE_RING_BYTES (1 << 21)
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, TT_CLOSE_RING_BYTES);
} closed_events SEC(".maps");

/*
 * Hands a close event to user space, waking its reader only once the ring is
 * a quarter full: the reader looks every 50 ms anyway (Collector::drain).
 * Woken for each close it had caught up with, one close in ten took 17 us
 * instead of 1 on this VM (bench/report_cost --close: 3-7 us a close on
 * average, 0.5-0.8 us so).
 */
static __always_inline void tt_close_submit(void *rec)
{
	__u64 queued = bpf_ringbuf_query(&closed_events, BPF_RB_AVAIL_DATA);

	bpf_ringbuf_submit(rec, queued > TT_CLOSE_RING_BYTES / 4 ? BPF_RB_FORCE_WAKEUP
								 : BPF_RB_NO_WAKEUP);
}

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

static __always_inline void tt_stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		*v += 1;
}

/* What a lookup saw: a fingerprint of the entries carrying the key's tag, so
 * an insert can tell whether the buckets changed since, and how full they were. */
struct tt_lookup {
	__u32 fp;
	__u32 idx; /* the slot found */
	__u32 gen; /* its gen when the key matched: writes under its lock check it */
	__u32 used[2]; /* entries in use in each bucket (complete when nothing was found) */
	__u32 h; /* tt_index_hash of the key */
	__u32 ch; /* tt_cache_hash of the key */
	__u32 found; /* idx/gen hold a match */
};

/*
 * The slow path's packet and lookup, handed over through this CPU's entry
 * (sized to the possible CPUs at load; an ARRAY so the lookup is inlined):
 * tt_slow is a global function, checked once by the verifier on its own
 * rather than again for every state its caller reaches it in, and on 5.10
 * those take only scalars.
 */
struct tt_slow_arg {
	struct tt_pkt p;
	struct tt_lookup l;
	__u32 cgroup; /* the sending socket's cgroup v2 id (low 32 bits), 0 if none */
};

/* bpf_skb_cgroup_id is probed (CONFIG_SOCK_CGROUP_DATA): without it the
 * verifier never sees the call (user space clears this before the load). */
const volatile __u32 tt_owner_on = 1;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* nr_cpus, set by user space */
	__type(key, __u32);
	__type(value, struct tt_slow_arg);
} slow_arg SEC(".maps");

static __always_inline struct tt_slow_arg *tt_slow_arg(__u32 cpu)
{
	return bpf_map_lookup_elem(&slow_arg, &cpu);
}

#endif /* TCPTRACK_MAPS_H */
