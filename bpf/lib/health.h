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

/*
 * The segment p of the flow in slot idx, from side dir: the step runs on the
 * packet record itself (its seg), on the stack or in this CPU's slow_arg.
 */
static __always_inline void tt_health(__u32 idx, int dir, int ingress, struct tt_pkt *p)
{
	struct tt_health *h;

	if (!tt_health_on)
		return;
	h = bpf_map_lookup_elem(&health, &idx);
	if (h)
		tt_health_step(h, dir & 1, &p->seg, !ingress);
}

#endif /* TCPTRACK_BPF_HEALTH_H */
