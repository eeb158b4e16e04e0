// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * TC classifiers for ingress and egress: count every TCP segment into its
 * connection and follow the connection's lifecycle. Observe only: always
 * return TC_ACT_UNSPEC (== TCX_NEXT), never drop or modify a packet.
 *
 * Two variants of each entry point; user space loads one set (src/features.cpp):
 *  - per-CPU (needs bpf_map_lookup_percpu_elem, Linux 5.19): per-CPU counters.
 *    Hot path (established, no SYN/FIN/RST): parse, then either this CPU's memo
 *    of its last flow (no lookup) or one per-CPU hash lookup, and a few adds.
 *    The state map is consulted only while a connection changes state; closes
 *    sum every CPU's copy.
 *  - shared (the 5.10 floor: no cross-CPU access): user space turns `flows`
 *    into a plain hash, one counters entry per flow. Settled segments add to
 *    it atomically (one lookup, no lock, no memo); state-changing ones go
 *    through the flow's state lock as above. Same counts.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tcptrack/flow.h"
#include "maps.h"
#include "parse.h"

#define TC_ACT_UNSPEC (-1)
#define TT_STATE_FLAGS (TT_TCP_SYN | TT_TCP_FIN | TT_TCP_RST)

/* Number of possible CPUs, set by user space before load. */
const volatile __u32 tt_nr_cpus = 1;
/* Copies of a flow's counters in a `flows` value: tt_nr_cpus (per-CPU) or 1 (shared). */
const volatile __u32 tt_counter_copies = 1;
/* Bumped by user space after it deletes flows: older memos are void. */
volatile __u32 tt_epoch;

#include "dump.h"

static __always_inline void tt_stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		*v += 1;
}

/*
 * Count one segment into a counters copy. Payload needs the direction's base.
 * shared: the copy is written by every CPU, so bytes and packets are atomic
 * adds (plain BPF_XADD, as old as 5.10). The payload reach stays a plain
 * read-modify-write: one direction of one connection is handled by one CPU at
 * a time (the sender's socket lock, or its RX queue), so it never races itself.
 */
static __always_inline void tt_account(struct tt_counters *c, int dir, const struct tt_pkt *p,
				       const int shared)
{
	__u8 bit = 1 << (dir & 1);
	__u32 end;

	if (shared) {
		__sync_fetch_and_add(&c->bytes[dir & 1], p->l3_bytes);
		__sync_fetch_and_add(&c->packets[dir & 1], p->segs);
	} else {
		c->bytes[dir & 1] += p->l3_bytes;
		c->packets[dir & 1] += p->segs;
	}
	if (!p->payload || !(c->base_mask & bit))
		return;
	end = p->seq + ((p->tcp_flags & TT_TCP_SYN) ? 1 : 0) + p->payload;
	if (tt_payload_advance(&c->payload[dir & 1], c->reach_mask & bit, c->base[dir & 1], end))
		c->reach_mask |= bit;
}

/* This CPU's copy learns where each side's payload starts. */
static __always_inline void tt_copy_bases(struct tt_counters *c, const struct tt_flow_info *f)
{
	c->base[0] = f->base[0];
	c->base[1] = f->base[1];
	c->base_mask = f->base_mask;
}

static __always_inline int tt_key_eq(const struct tt_flow_key *a, const struct tt_flow_key *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;
	int i;

	for (i = 0; i < sizeof(*a) / 4; i++)
		if (x[i] != y[i])
			return 0;
	return 1;
}

/* Same connection generation: payload bases are the ISNs (or first seen). */
static __always_inline int tt_same_gen(const struct tt_counters *a, const struct tt_counters *b)
{
	return tt_same_bases(a->base_mask, a->base, b->base_mask, b->base);
}

/* Adds counts from src (deltas for bytes/packets, a reach for payload) into dst. */
static __always_inline void tt_merge(struct tt_counters *dst, const struct tt_counters *src)
{
	TT_ADD_COUNTS(dst, src);
	dst->reach_mask |= src->reach_mask;
}

/* The owner moves its memo's deltas into the flow's entry (if it is still that flow). */
static __always_inline void tt_memo_flush(struct tt_flow_memo *m)
{
	struct tt_counters *c;

	if (!m->dirty)
		return;
	m->dirty = 0;
	c = bpf_map_lookup_elem(&flows, &m->key);
	/* Gone or replaced: a close event already carried these counts. */
	if (c && tt_same_gen(c, &m->cnt))
		tt_merge(c, &m->cnt);
}

static __always_inline void tt_memo_fill(struct tt_flow_memo *m, const struct tt_flow_key *key,
					 const struct tt_counters *c)
{
	m->cnt = *c;
	m->cnt.bytes[0] = m->cnt.bytes[1] = 0;
	m->cnt.packets[0] = m->cnt.packets[1] = 0;
	m->key = *key;
	m->dirty = 0;
	m->epoch = tt_epoch;
}

/*
 * Combine every CPU's copy and every CPU's dirty memo of this flow into ev;
 * or (unsettle) clear every copy's and memo's settled flag so all CPUs take
 * the slow path from now on. A memo hit that passed its check just before the
 * clear finishes within nanoseconds, long before the close that reads it.
 * The shared variant has one copy and never settles.
 */
static __always_inline void tt_sum_counters(const struct tt_flow_key *key,
					    struct tt_close_event *ev, int unsettle, const int percpu)
{
	struct tt_counters sum = {}, *own = NULL;
	__u32 cpu, zero = 0;

	if (unsettle && !percpu)
		return;
	if (!percpu) {
		own = bpf_map_lookup_elem(&flows, key);
		if (own)
			tt_merge(&sum, own);
	}
	for (cpu = 0; percpu && cpu < TT_MAX_CPUS; cpu++) {
		struct tt_flow_memo *m;
		struct tt_counters *c;

		if (cpu >= tt_nr_cpus)
			break;
		c = bpf_map_lookup_percpu_elem(&flows, key, cpu);
		m = bpf_map_lookup_percpu_elem(&flow_memo, &zero, cpu);
		if (unsettle) {
			/* Byte stores: never race the owners' other fields. */
			if (c)
				c->settled = 0;
			if (m && tt_key_eq(&m->key, key))
				m->cnt.settled = 0;
			continue;
		}
		if (!c)
			continue;
		own = c;
		tt_merge(&sum, c);
		if (m && m->dirty && tt_key_eq(&m->key, key) && tt_same_gen(c, &m->cnt))
			tt_merge(&sum, &m->cnt);
	}
	if (unsettle || !own || !ev)
		return;
	__builtin_memcpy(ev->bytes, sum.bytes, sizeof(ev->bytes));
	__builtin_memcpy(ev->packets, sum.packets, sizeof(ev->packets));
	__builtin_memcpy(ev->payload, sum.payload, sizeof(ev->payload));
}

/*
 * Hand a finished connection to user space with its final counters. If the
 * ring is full and `park` is set (the tuple is about to be reused, so the maps
 * cannot keep it), park the event in parked_closes instead. Returns 0 when
 * user space will get the event.
 */
static __always_inline int tt_emit_close(const struct tt_flow_key *key,
					 const struct tt_flow_info *info, __u32 reason, int park,
					 const int percpu)
{
	struct tt_parked_key pk = {};
	struct tt_close_event *ev;
	__u32 zero = 0;

	ev = bpf_map_lookup_elem(&close_scratch, &zero);
	if (!ev)
		return -1;
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->key = *key;
	ev->reason = reason;
	ev->info = *info;
	tt_sum_counters(key, ev, 0, percpu);
	if (bpf_ringbuf_output(&closed_events, ev, sizeof(*ev), 0) == 0)
		return 0;
	tt_stat_inc(TT_STAT_CLOSE_DROPPED);
	if (!park)
		return -1;
	pk.key = *key;
	pk.first_ns = info->first_ns;
	if (bpf_map_update_elem(&parked_closes, &pk, ev, BPF_ANY) == 0)
		return 0;
	tt_stat_inc(TT_STAT_CLOSE_LOST);
	return -1;
}

static __always_inline void tt_mark_reap(const struct tt_flow_key *key)
{
	struct tt_flow_state *st = bpf_map_lookup_elem(&flow_states, key);

	if (!st)
		return;
	bpf_spin_lock(&st->lock);
	st->info.flags |= TT_F_REAP;
	bpf_spin_unlock(&st->lock);
}

/*
 * A flow the maps have no room for: count the segment, and the connection
 * once (at its SYN) so "untracked" is a number of connections. Mid-stream
 * flows refused show up in the segment count.
 */
static __always_inline void tt_refused(const struct tt_pkt *p)
{
	tt_stat_inc(TT_STAT_UNTRACKED_SEGS);
	if ((p->tcp_flags & (TT_TCP_SYN | TT_TCP_ACK)) == TT_TCP_SYN)
		tt_stat_inc(TT_STAT_UNTRACKED);
}

/* Create the state entry (first) and the counters entry for a new flow. */
static __always_inline struct tt_counters *tt_create(const struct tt_pkt *p, int dir, int ingress,
						     __u64 now)
{
	struct tt_counters zero = {};
	struct tt_flow_state st = {};
	struct tt_counters *c;
	long err;

	tt_info_init(&st.info, dir, p->tcp_flags, p->seq, now, ingress);
	err = bpf_map_update_elem(&flow_states, &p->key, &st, BPF_NOEXIST);
	if (err && err != -17 /* EEXIST: another CPU, or a leftover to step */) {
		tt_refused(p);
		return NULL;
	}
	err = bpf_map_update_elem(&flows, &p->key, &zero, BPF_NOEXIST);
	if (err && err != -17) {
		tt_refused(p);
		bpf_map_delete_elem(&flow_states, &p->key);
		return NULL;
	}
	/* Lost the insert race: use the winner's entry. */
	c = bpf_map_lookup_elem(&flows, &p->key);
	if (!c)
		tt_refused(p);
	return c;
}

/*
 * Slow path: feed the segment to the lifecycle under the state's lock, count
 * it, then act on the result outside the lock (helpers are not allowed under
 * a spin lock). The shared variant counts under the lock (its payload reach is
 * then in step with the lifecycle) and settles and unsettles its one copy there.
 */
static __always_inline void tt_step(const struct tt_pkt *p, int dir, int ingress,
				    struct tt_counters *c, const int percpu)
{
	struct tt_flow_info old = {};
	struct tt_flow_state *st;
	__u64 now = bpf_ktime_get_ns();
	__u32 act;

	st = bpf_map_lookup_elem(&flow_states, &p->key);
	if (!st) {
		tt_account(c, dir, p, !percpu);
		return;
	}

	bpf_spin_lock(&st->lock);
	act = tt_lifecycle_step(&st->info, dir, p->tcp_flags, p->seq, p->ack_seq, p->payload, now);
	if (act & (TT_ACT_FINISHED | TT_ACT_REUSE))
		old = st->info;
	if (act & TT_ACT_REUSE) {
		tt_info_init(&st->info, dir, p->tcp_flags, p->seq, now, ingress);
	} else {
		tt_copy_bases(c, &st->info);
		/* Set under the lock so a concurrent first FIN cannot be missed. */
		if (act & TT_ACT_SETTLED)
			c->settled = 1;
		if (!percpu) {
			/* One copy: the first FIN sends every CPU back to the slow path. */
			if (act & TT_ACT_FIN)
				c->settled = 0;
			tt_account(c, dir, p, 1);
		}
	}
	bpf_spin_unlock(&st->lock);

	if (act & TT_ACT_REUSE) {
		struct tt_counters fresh = {};

		/* The old connection is over; the new SYN starts the next one's counters. */
		tt_stat_inc(TT_STAT_REUSED);
		if (!old.close_ns)
			old.close_ns = now;
		tt_emit_close(&p->key, &old, TT_CLOSE_REUSED, 1, percpu);
		tt_sum_counters(&p->key, NULL, 1, percpu); /* memos of the old connection are void */
		bpf_map_delete_elem(&flows, &p->key);
		/* Constant indexes: a variable one on the stack compiles to pointer arithmetic
		 * the verifier rejects. */
		if (dir)
			fresh.base[1] = p->seq + 1;
		else
			fresh.base[0] = p->seq + 1;
		fresh.base_mask = 1 << (dir & 1);
		bpf_map_update_elem(&flows, &p->key, &fresh, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&flows, &p->key);
		if (!c)
			return;
		if (percpu) {
			tt_account(c, dir, p, 0);
		} else {
			bpf_spin_lock(&st->lock);
			tt_account(c, dir, p, 1);
			bpf_spin_unlock(&st->lock);
		}
		return;
	}

	if (percpu)
		tt_account(c, dir, p, 0);
	if (act & TT_ACT_FIN)
		tt_sum_counters(&p->key, NULL, 1, percpu);
	if (act & TT_ACT_FINISHED) {
		int sent = tt_emit_close(&p->key, &old, TT_CLOSE_FINISHED, 0, percpu) == 0;

		tt_sum_counters(&p->key, NULL, 1, percpu); /* memos of it are void from now on */
		if (sent) {
			bpf_map_delete_elem(&flows, &p->key);
			bpf_map_delete_elem(&flow_states, &p->key);
		} else {
			tt_mark_reap(&p->key);
		}
	}
}

static __always_inline int tt_handle(struct __sk_buff *skb, int ingress, int has_l2,
				     const int percpu)
{
	struct tt_flow_memo *memo = NULL;
	struct tt_counters *c;
	struct tt_pkt p;
	__u32 zero = 0;
	int dir;

	if (tt_parse(skb, &p, has_l2) < 0)
		return TC_ACT_UNSPEC;
	p.key.ifindex = skb->ifindex;
	dir = tt_key_normalise(&p.key);

	if (percpu) {
		memo = bpf_map_lookup_elem(&flow_memo, &zero);
		if (!memo)
			return TC_ACT_UNSPEC;
		/* Fastest path: the same settled flow as this CPU's last segment. */
		if (memo->cnt.settled && memo->epoch == tt_epoch &&
		    !(p.tcp_flags & TT_STATE_FLAGS) && tt_key_eq(&memo->key, &p.key)) {
			tt_account(&memo->cnt, dir, &p, 0);
			memo->dirty = 1;
			return TC_ACT_UNSPEC;
		}
		tt_memo_flush(memo);
	}

	c = bpf_map_lookup_elem(&flows, &p.key);
	if (c && c->settled && !(p.tcp_flags & TT_STATE_FLAGS)) {
		/* Fast path: nothing about this segment can change the lifecycle. */
		tt_account(c, dir, &p, !percpu);
		if (percpu)
			tt_memo_fill(memo, &p.key, c);
		return TC_ACT_UNSPEC;
	}
	if (!c) {
		if (!tt_starts_flow(p.tcp_flags, p.payload))
			return TC_ACT_UNSPEC;
		c = tt_create(&p, dir, ingress, bpf_ktime_get_ns());
		if (!c)
			return TC_ACT_UNSPEC;
	}
	tt_step(&p, dir, ingress, c, percpu);
	return TC_ACT_UNSPEC;
}

/* Per-CPU variant (Linux 5.19+, bpf_map_lookup_percpu_elem). */
SEC("tc")
int tcptrack_in(struct __sk_buff *skb)
{
	return tt_handle(skb, 1, 1, 1);
}

SEC("tc")
int tcptrack_eg(struct __sk_buff *skb)
{
	return tt_handle(skb, 0, 1, 1);
}

/* Devices without an L2 header (tun, wireguard, ...): skb->data is the IP header. */
SEC("tc")
int tcptrack_in_l3(struct __sk_buff *skb)
{
	return tt_handle(skb, 1, 0, 1);
}

SEC("tc")
int tcptrack_eg_l3(struct __sk_buff *skb)
{
	return tt_handle(skb, 0, 0, 1);
}

/* Shared variant: the 5.10 floor. Names fit the kernel's 15 characters. */
SEC("tc")
int tcptrack_in_s(struct __sk_buff *skb)
{
	return tt_handle(skb, 1, 1, 0);
}

SEC("tc")
int tcptrack_eg_s(struct __sk_buff *skb)
{
	return tt_handle(skb, 0, 1, 0);
}

SEC("tc")
int tcptrack_in_l3s(struct __sk_buff *skb)
{
	return tt_handle(skb, 1, 0, 0);
}

SEC("tc")
int tcptrack_eg_l3s(struct __sk_buff *skb)
{
	return tt_handle(skb, 0, 0, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
