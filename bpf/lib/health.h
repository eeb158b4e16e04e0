/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Connection health in the datapath: every segment of a tracked flow goes
 * through tt_health_step (tcptrack/health.h) on its slot's health entry.
 * Included by lib/store.h (a new flow's entry starts empty), lib/close.h
 * (close events carry it) and tcptrack.bpf.c.
 */
#ifndef TCPTRACK_BPF_HEALTH_H
#define TCPTRACK_BPF_HEALTH_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tcptrack/abi.h"
#define TT_HEALTH_CLOCK() bpf_ktime_get_ns()
#include "tcptrack/health.h"
#include "maps.h"
#include "parse.h"

/* Set by user space before load (--no-health: 0, and the map has one entry). */
const volatile __u32 tt_health_on = 1;

static __always_inline struct tt_health *tt_health_at(__u32 idx)
{
	return bpf_map_lookup_elem(&health, &idx);
}

static __always_inline void tt_health_clear(struct tt_health *h)
{
	if (h)
		__builtin_memset(h, 0, sizeof(*h));
}

/* The segment for the step, in this CPU's entry: off the stack, whose 512
 * bytes the slow path's four frames (entry, tt_slow, tt_step, this) share. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tt_seg);
} seg_scratch SEC(".maps");

/*
 * Global: the step's many branches are verified once, not at each of its
 * three callers. On 5.10 a global function takes scalars only, so the
 * segment comes packed: ref = slot | dir << 24 | egress << 25.
 */
__noinline int tt_health_seg(__u64 ref, __u64 seq_ack, __u64 ts, __u64 len, __u64 misc)
{
	__u32 idx = ref & TT_SLOT_MASK, zero = 0;
	struct tt_health *h = bpf_map_lookup_elem(&health, &idx);
	struct tt_seg *g = bpf_map_lookup_elem(&seg_scratch, &zero);

	if (!h || !g)
		return 0;
	g->seq = seq_ack >> 32;
	g->ack = (__u32)seq_ack;
	g->tsval = ts >> 32;
	g->tsecr = (__u32)ts;
	g->payload = len >> 32;
	g->segs = (__u32)len;
	g->win = (__u16)misc;
	g->flags = (__u8)(misc >> 16);
	g->has_ts = (__u8)(misc >> 24);
	g->now_ns = 0; /* read once, and only if a figure needs it */
	tt_health_step(h, (ref >> 24) & 1, g, (ref >> 25) & 1);
	return 0;
}

/* The segment p of the flow in slot idx, from side dir. */
static __always_inline void tt_health(__u32 idx, int dir, int ingress, const struct tt_pkt *p)
{
	if (!tt_health_on)
		return;
	tt_health_seg((__u64)idx | (__u64)(dir & 1) << 24 | (__u64)(ingress ? 0 : 1) << 25,
		      (__u64)p->seq << 32 | p->ack_seq, (__u64)p->tsval << 32 | p->tsecr,
		      (__u64)p->payload << 32 | p->segs,
		      (__u64)p->win | (__u64)p->tcp_flags << 16 | (__u64)p->has_ts << 24);
}

#endif /* TCPTRACK_BPF_HEALTH_H */
