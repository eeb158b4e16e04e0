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
#include "maps.h"

/*
 * The capture filter (tcptrack/filter_vm.h), in .bss so user space writes it through the
 * skeleton's mmap: it fills the copy not in use, then selects it, so a
 * classifier never runs a half-written program.
 */
struct tt_filter tt_filters[2];
volatile __u32 tt_filter_sel; /* 0: no filter; else 1 + the copy in use */

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
	return tt_filter_match(&tt_filters[(sel - 1) & 1], &a->key);
}

#endif /* TCPTRACK_BPF_FILTER_H */
