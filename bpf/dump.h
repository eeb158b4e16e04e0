/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Map iterator over `flows` for user space's periodic read: per flow it sums
 * the counter copies (one per CPU, or one shared), joins the lifecycle from
 * `flow_states`, and writes one record. One read() stream replaces two batched map reads and the join in
 * user space; the htab iterator walks buckets without taking bucket locks.
 */
#ifndef TCPTRACK_DUMP_H
#define TCPTRACK_DUMP_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tcptrack/flow.h"
#include "maps.h"

extern const volatile __u32 tt_counter_copies;

SEC("iter/bpf_map_elem")
int tcptrack_dump(struct bpf_iter__bpf_map_elem *ctx)
{
	const struct tt_flow_key *key = ctx->key;
	const __u8 *values = ctx->value; /* every CPU's copy, 8-byte aligned each */
	struct tt_flow_state *st;
	struct tt_dump_record r;
	__u32 cpu;

	if (!key || !values)
		return 0;
	__builtin_memset(&r, 0, sizeof(r));
	r.key = *key;
	for (cpu = 0; cpu < TT_MAX_CPUS; cpu++) {
		const struct tt_counters *c;

		if (cpu >= tt_counter_copies)
			break;
		c = (const void *)(values + cpu * sizeof(struct tt_counters));
		TT_ADD_COUNTS(&r, c);
	}
	/* Read without the lock: a transition racing this read shows next report. */
	st = bpf_map_lookup_elem(&flow_states, &r.key); /* the stack copy: key is read-only */
	if (st) {
		r.has_info = 1;
		__builtin_memcpy(&r.info, &st->info, sizeof(r.info));
	}
	bpf_seq_write(ctx->meta->seq, &r, sizeof(r));
	return 0;
}

#endif /* TCPTRACK_DUMP_H */
