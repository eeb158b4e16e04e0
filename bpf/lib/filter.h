/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The compiled capture filter (tcptrack/filter_vm.h) in .bss, and the global
 * function the classifiers call before they touch any flow map.
 * Included by tcptrack.bpf.c.
 */
#ifndef TCPTRACK_BPF_FILTER_H
#define TCPTRACK_BPF_FILTER_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tcptrack/filter_vm.h"
#include "tcptrack/store.h"
#include "maps.h"

/*
 * The capture filter (tcptrack/filter_vm.h), in .bss so user space writes it through the
 * skeleton's mmap: it fills the copy not in use, then selects it, so a
 * classifier never runs a half-written program.
 */
struct tt_filter tt_filters[2];
/* 0: no filter; else bit 0 is the copy in use and the rest count the filters installed
 * (src/datapath/skeleton.cpp), so each has a selector of its own
 * (its low byte never 0: see tt_slot.fsel). */
volatile __u32 tt_filter_sel;

/*
 * Global (not static): the verifier checks the filter loop once on its own,
 * instead of again for every state a caller reaches it in (that tripled the
 * programs' verification). The key comes through this CPU's filter_arg.
 */
__noinline int tt_filter_pass(__u32 cpu, __u32 sel)
{
	struct tt_filter_arg *a = bpf_map_lookup_elem(&filter_arg, &cpu);

	if (!a || sel == 0)
		return 1;
	return tt_filter_match(&tt_filters[sel & 1], &a->key);
}

/* 1 when the filter selected by sel (not 0) keeps the connection of this key. */
static __always_inline int tt_filter_check(__u32 cpu, __u32 sel, const struct tt_flow_key *k)
{
	struct tt_filter_arg *a = bpf_map_lookup_elem(&filter_arg, &cpu);

	if (!a)
		return 1;
	a->key = *k;
	return tt_filter_pass(cpu, sel);
}

/* Records in slot s that its flow passed the filter selected by sel (not 0):
 * written only when it changes, the slot's read-mostly line stays clean. */
static __always_inline void tt_filter_stamp(struct tt_slot *s, __u32 sel)
{
	if (s->fsel != (__u8)sel)
		s->fsel = (__u8)sel;
}

/*
 * Whether a segment of the flow in slot s is kept. The verdict depends on the
 * key alone, so it is evaluated once per flow and filter and stamped in the
 * slot: a kept connection's segments cost a byte compare, not the filter
 * (7-22 ns per segment in the tables, more in the interpreter). A change of
 * filter changes the selector, so every flow is judged again at its next
 * segment, and what the new filter leaves out is not counted from then on.
 */
static __always_inline int tt_filter_keeps(__u32 cpu, __u32 sel, struct tt_slot *s,
					   const struct tt_flow_key *k)
{
	if (!sel || s->fsel == (__u8)sel)
		return 1;
	if (!tt_filter_check(cpu, sel, k))
		return 0;
	tt_filter_stamp(s, sel);
	return 1;
}

#endif /* TCPTRACK_BPF_FILTER_H */
