// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * TC classifiers for ingress and egress: count every TCP segment into its
 * connection and follow the connection's lifecycle. Observe only: always
 * return TC_ACT_UNSPEC (== TCX_NEXT), never drop or modify a packet.
 *
 * One datapath for every kernel from 5.10 (no helper newer than the floor,
 * no cross-CPU access). Flows live in the slot store (tcptrack/store.h,
 * lib/store.h):
 *  - hot path (a settled flow, no SYN/FIN/RST): parse, hash the key, one index
 *    bucket line, the slot, two atomic adds and the payload reach;
 *  - a segment that may change the lifecycle takes the slot's lock;
 *  - a new flow takes a slot and publishes it under the store lock.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tcptrack/abi.h"
#include "tcptrack/lifecycle.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/filter.h"
#include "lib/store.h"
#include "lib/cache.h"
#include "lib/close.h"
#include "lib/health.h"

#define TC_ACT_UNSPEC (-1)
#define TT_LOOPBACK_IFINDEX 1 /* LOOPBACK_IFINDEX: lo in every network namespace */
#define TT_STATE_FLAGS (TT_TCP_SYN | TT_TCP_FIN | TT_TCP_RST)

/*
 * Slow path: feed the segment to the lifecycle under the slot's lock and count
 * it there (the payload reach is then in step with the lifecycle), then act on
 * the result outside the lock (helpers are not allowed under a spin lock).
 * Only while the slot still holds the generation the lookup matched.
 */

/* Global, like tt_slow: verified once, though tt_slow calls it from two places.
 * The packet is the one in this CPU's slow_arg. */
__noinline int tt_step(__u32 cpu, __u32 dirflags, __u32 idx, __u32 gen)
{
	struct tt_slow_arg *a = tt_slow_arg(cpu);
	struct tt_pkt *p;
	struct tt_close_event *ev;
	struct tt_slot_lock *lk;
	struct tt_slot *s;
	__u64 now = bpf_ktime_get_ns();
	__u32 act = 0, zero = 0, dir = dirflags & 1, ingress = (dirflags >> 1) & 1;
	int ret;

	s = bpf_map_lookup_elem(&slots, &idx);
	lk = tt_slot_lock(idx);
	ev = bpf_map_lookup_elem(&close_scratch, &zero);
	if (!a || !s || !lk || !ev)
		return TT_STEP_DONE;
	p = &a->p;
	bpf_spin_lock(&lk->lock);
	if (s->gen != gen) {
		/* The same tuple's next connection (a reuse in place) takes the
		 * segment; a slot handed to another tuple does not. */
		if (!tt_gen_live(s->gen) || !tt_key_eq(&s->key, &p->key)) {
			bpf_spin_unlock(&lk->lock);
			return TT_STEP_STALE;
		}
		gen = s->gen;
	}
	act = tt_lifecycle_step(&s->info, dir, p->tcp_flags, p->seq, p->ack_seq, p->payload, now);
	if (act & TT_ACT_REUSE) {
		/* Nothing changed yet: the ring is asked first, outside the lock. */
		bpf_spin_unlock(&lk->lock);
		ret = tt_reuse(p, dirflags, a->l.h, s, idx, gen, ev, lk);
		if (ret == TT_STEP_DONE)
			tt_health(idx, dir, ingress, p); /* the new connection's SYN */
		return ret;
	}
	tt_note_owner(&s->info, dir, a->cgroup);
	if (act & TT_ACT_FINISHED) {
		ev->info = s->info;
		ev->gen = gen;
	}
	if (act & TT_ACT_FIN)
		s->settled = 0; /* the first FIN sends every CPU back to this path */
	else if (act & TT_ACT_SETTLED)
		s->settled = 1;
	tt_account(s, dir, p);
	bpf_spin_unlock(&lk->lock);

	tt_health(idx, dir, ingress, p);
	if (act & TT_ACT_FINISHED)
		tt_finish(ev, s, &p->key, a->l.ch, idx, gen);
	return TT_STEP_DONE;
}

/*
 * Everything but the settled fast path: the flow the lookup found, or a new
 * one, through the lifecycle. A found flow whose slot changed hands since the
 * lookup (displaced or ended) gets nothing: the segment came after its end.
 * A reused tuple whose old connection must wait for user space gets a new slot.
 */
__noinline int tt_slow(__u32 cpu, __u32 dirflags)
{
	struct tt_slow_arg *a = bpf_map_lookup_elem(&slow_arg, &cpu);
	struct tt_lookup *l;
	struct tt_pkt *p;
	struct tt_slot *s = NULL;
	__u32 idx;

	if (!a)
		return 0;
	p = &a->p;
	l = &a->l;
	idx = l->idx;
	if (l->found)
		s = bpf_map_lookup_elem(&slots, &idx);
	if (s) {
		/* A new SYN may end the connection in this slot: bring its counts home first. */
		if ((p->tcp_flags & (TT_TCP_SYN | TT_TCP_ACK)) == TT_TCP_SYN)
			tt_fold_all(idx, l->gen, l->ch);
		if (tt_step(cpu, dirflags, idx, l->gen) != TT_STEP_MOVE)
			return 0;
		s = tt_find(&p->key, l->h, l); /* only if another CPU made it meanwhile */
	} else if (!tt_starts_flow(p->tcp_flags, p->payload)) {
		return 0;
	}
	if (!s)
		s = tt_create(p, dirflags, l);
	if (s)
		tt_step(cpu, dirflags, l->idx, l->gen);
	return 0;
}

static __always_inline int tt_handle(struct __sk_buff *skb, int ingress, int has_l2)
{
	struct tt_cache_entry *e;
	struct tt_lookup l;
	struct tt_slot *s;
	struct tt_pkt p;
	__u32 cpu;
	__u32 sel;
	__u32 ch;
	int dir, ret;

	/* Loopback hands each segment it sends to its own ingress: counted once,
	 * at egress (lo is ifindex 1 in every namespace; received there, the
	 * segment's ingress_ifindex says so, unlike a BPF_PROG_TEST_RUN's). */
	if (ingress && skb->ingress_ifindex == TT_LOOPBACK_IFINDEX)
		return TC_ACT_UNSPEC;
	ret = tt_parse(skb, &p, has_l2);
	if (ret == TT_PARSE_SHORT) {
		/* Headers in page fragments: bring them into the linear part (the
		 * packet's bytes are unchanged) and look again, so no framing can
		 * hide a connection. Only then: a linear header costs nothing. */
		__u32 len = skb->len < TT_PULL_MAX ? skb->len : TT_PULL_MAX;

		if (bpf_skb_pull_data(skb, len) == 0)
			ret = tt_parse(skb, &p, has_l2);
	}
	if (ret < 0)
		return TC_ACT_UNSPEC;
	p.key.ifindex = skb->ifindex;
	dir = tt_key_normalise(&p.key);
	cpu = bpf_get_smp_processor_id();
	sel = tt_filter_sel;
	ch = tt_cache_hash_k(&p.key);

	/* Fastest path: one of this CPU's two cache entries holds the flow,
	 * settled; the capture filter kept it (its verdict is in the slot). */
	if (!(p.tcp_flags & TT_STATE_FLAGS)) {
		e = tt_cache_at(cpu, ch, 0);
		s = tt_cache_hit(e, ch, &p);
		if (!s) {
			e = tt_cache_at(cpu, ch, 1);
			s = tt_cache_hit(e, ch, &p);
		}
		if (s && e) {
			if (!tt_filter_keeps(cpu, sel, s, &p.key))
				return TC_ACT_UNSPEC;
			tt_account_cached(e, s, dir, &p);
			tt_health(e->slot, dir, ingress, &p);
			return TC_ACT_UNSPEC;
		}
	}
	/* Before any flow map is written: filtered-out traffic costs no entry
	 * and is never "untracked". */
	if (sel && !tt_filter_check(cpu, sel, &p.key))
		return TC_ACT_UNSPEC;

	/* The keyed hash only here: where the index places the flow. */
	l.h = tt_index_hash_k(&p.key);
	l.ch = ch;
	s = tt_find(&p.key, l.h, &l);
	if (s && s->settled && !(p.tcp_flags & TT_STATE_FLAGS)) {
		/* Fast path: an entry now counts this flow: an empty way, else a
		 * random one, whose flow gets its counts first. Nothing here can
		 * change the lifecycle. */
		__u32 gen = l.gen, way;

		if (sel)
			tt_filter_stamp(s, sel); /* kept: judged above */
		e = tt_cache_at(cpu, ch, 0);
		way = e && !e->gen ? 0 : 1;
		if (way) {
			e = tt_cache_at(cpu, ch, 1);
			if (e && e->gen)
				way = bpf_get_prandom_u32() & 1;
		}
		e = tt_cache_at(cpu, ch, way);
		if (e && !tt_mark_cpu(s, l.idx, gen, cpu))
			e = NULL;
		if (e && e->gen)
			tt_fold(e, e->slot, e->gen, l.idx, gen, ch);
		else if (e) {
			/* An empty entry may still hold what this CPU added while
			 * another one folded it away at a close: those segments were
			 * in flight at that instant and belong to a connection already
			 * reported, never to this one. */
			e->bytes[0] = e->bytes[1] = 0;
			e->packets[0] = e->packets[1] = 0;
			e->payload[0] = e->payload[1] = 0;
			e->reached[0] = e->reached[1] = 0;
			e->slot = l.idx, e->gen = gen, e->hash = ch;
		}
		if (e && e->slot == l.idx && e->gen == gen && s->gen == gen) {
			tt_account_cached(e, s, dir, &p);
			tt_health(l.idx, dir, ingress, &p);
			return TC_ACT_UNSPEC;
		}
	}
	{
		struct tt_slow_arg *a = bpf_map_lookup_elem(&slow_arg, &cpu);

		if (!a)
			return TC_ACT_UNSPEC;
		a->p = p;
		a->l = l;
		/* Only here, on the few lifecycle segments: a sending local socket
		 * (at egress, or a veth peer's) names the connection's cgroup while
		 * it exists, for connections gone before user space could look. */
		a->cgroup = tt_owner_on ? (__u32)bpf_skb_cgroup_id(skb) : 0;
		tt_slow(cpu, (__u32)dir | (ingress ? 2u : 0u));
	}
	return TC_ACT_UNSPEC;
}

SEC("tc")
int tcptrack_in(struct __sk_buff *skb)
{
	return tt_handle(skb, 1, 1);
}

SEC("tc")
int tcptrack_eg(struct __sk_buff *skb)
{
	return tt_handle(skb, 0, 1);
}

/* Devices without an L2 header (tun, wireguard, ...): skb->data is the IP header. */
SEC("tc")
int tcptrack_in_l3(struct __sk_buff *skb)
{
	return tt_handle(skb, 1, 0);
}

SEC("tc")
int tcptrack_eg_l3(struct __sk_buff *skb)
{
	return tt_handle(skb, 0, 0);
}

/*
 * Never attached: user space runs it with BPF_PROG_TEST_RUN to end flows it
 * decided are over (idle timeout, reaped closes), under the same locks as the
 * classifiers. Returns how many of the requested (slot, gen) it ended.
 */
SEC("tc")
int tcptrack_evict(struct __sk_buff *skb)
{
	struct tt_evict_req *r;
	__u32 zero = 0, i, n;
	int done = 0;

	r = bpf_map_lookup_elem(&evict_req, &zero);
	if (!r)
		return 0;
	n = r->n;
	r->done = 0;
	for (i = 0; i < TT_EVICT_BATCH; i++) {
		if (i >= n)
			break;
		if (tt_kill(r->e[i].slot, r->e[i].gen)) {
			r->done |= 1ull << i;
			done++;
		}
	}
	return done;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
