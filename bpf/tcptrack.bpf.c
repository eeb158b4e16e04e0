// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * TC classifiers for ingress and egress: count every TCP segment into its
 * connection and follow the connection's lifecycle. Observe only: always
 * return TC_ACT_UNSPEC (== TCX_NEXT), never drop or modify a packet.
 *
 * One datapath for every kernel from 5.10 (no helper newer than the floor,
 * no cross-CPU access). Flows live in the slot store (tcptrack/flow.h):
 *  - hot path (a settled flow, no SYN/FIN/RST): parse, hash the key, one index
 *    bucket line, the slot, two atomic adds and the payload reach;
 *  - a segment that may change the lifecycle takes the slot's lock;
 *  - a new flow takes a slot and publishes it under the store lock.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tcptrack/flow.h"
#include "maps.h"
#include "parse.h"

#define TC_ACT_UNSPEC (-1)
#define TT_STATE_FLAGS (TT_TCP_SYN | TT_TCP_FIN | TT_TCP_RST)
#define TT_TAG_MASK 0xff000000
#define TT_INDEX_SPARE 12 /* entries a first bucket takes before the emptier one is preferred */

/* Store geometry, set by user space before load (src/skeleton.cpp). */
const volatile __u32 tt_max_slots = TT_DEFAULT_FLOWS;
const volatile __u32 tt_index_mask = TT_DEFAULT_FLOWS / 8 - 1;
const volatile __u32 tt_lock_mask = TT_DEFAULT_FLOWS / 16 - 1;
/* Possible CPUs: the per-CPU cache has nr_cpus x TT_CACHE_ENTRIES entries. */
const volatile __u32 tt_nr_cpus = 1;

#define TT_MAX_CPUS 1024 /* bound for loops over CPUs; the real count is tt_nr_cpus */

/*
 * The capture filter (flow.h), in .bss so user space writes it through the
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

static __always_inline void tt_stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		*v += 1;
}

/* 44 bytes as five 8-byte words and one 4-byte word: both keys are 8-byte
 * aligned (the parser's stack copy and a 176-byte slot). */
static __always_inline int tt_key_eq(const struct tt_flow_key *a, const struct tt_flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	if ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]) | (x[4] ^ y[4]))
		return 0;
	return ((const __u32 *)a)[10] == ((const __u32 *)b)[10];
}

/*
 * Count one segment into a holder of counts: a slot (under its lock) or this
 * CPU's cache entry (its own). The payload reach needs the direction's base,
 * which lives in the slot.
 */
#define TT_ACCOUNT(c, s, dir, p)                                                         \
	do {                                                                             \
		__u32 end_;                                                              \
                                                                                         \
		(c)->bytes[dir] += (p)->l3_bytes;                                        \
		(c)->packets[dir] += (p)->segs;                                          \
		if (!(p)->payload || !((s)->info.base_mask & (1 << (dir))))              \
			break;                                                           \
		end_ = (p)->seq + (((p)->tcp_flags & TT_TCP_SYN) ? 1 : 0) + (p)->payload; \
		/* reached[] is stored only when it changes. */                          \
		if (tt_payload_advance(&(c)->payload[dir], (c)->reached[dir],            \
				       (s)->info.base[dir], end_) &&                     \
		    !(c)->reached[dir])                                                  \
			(c)->reached[dir] = 1;                                           \
	} while (0)

/* A segment of a flow that is changing state: into the slot, under its lock. */
static __always_inline void tt_account(struct tt_slot *s, int dir, const struct tt_pkt *p)
{
	dir &= 1;
	TT_ACCOUNT(s, s, dir, p);
}

/* A settled flow's segment: into this CPU's cache entry, no line shared with another CPU. */
static __always_inline void tt_account_cached(struct tt_cache_entry *e, const struct tt_slot *s,
					      int dir, const struct tt_pkt *p)
{
	dir &= 1;
	TT_ACCOUNT(e, s, dir, p);
}

/* What a lookup saw: a fingerprint of the entries carrying the key's tag, so
 * an insert can tell whether the buckets changed since, and how full they were. */
struct tt_lookup {
	__u32 fp;
	__u32 idx; /* the slot found */
	__u32 used[2]; /* entries in use in each bucket (complete when nothing was found) */
};

/* A sum of one term per entry (bucket, position, slot): the same whichever
 * bucket is read first. */
static __always_inline __u32 tt_fp_mix(__u32 fp, __u32 e, __u32 pos)
{
	return fp + ((e & TT_SLOT_MASK) ^ (pos * 0x85ebca6b)) * 0x9E3779B1;
}

/* Fingerprint of a bucket's entries with this tag (no slot reads: runs under the lock). */
static __always_inline __u32 tt_bucket_fp(const struct tt_index_bucket *b, __u32 tag, __u32 bi,
					  __u32 fp)
{
	int i;

	for (i = 0; i < TT_INDEX_WAYS; i++) {
		__u32 e = b->ent[i];

		if (e && (e & TT_TAG_MASK) == tag)
			fp = tt_fp_mix(fp, e, bi * TT_INDEX_WAYS + i);
	}
	return fp;
}

static __always_inline struct tt_slot *tt_scan(const struct tt_index_bucket *b,
					       const struct tt_flow_key *k, __u32 tag, __u32 way,
					       __u32 bi, struct tt_lookup *l)
{
	int i;

	for (i = 0; i < TT_INDEX_WAYS; i++) {
		__u32 e = *(volatile const __u32 *)&b->ent[i];
		struct tt_slot *s;
		__u32 n;

		l->used[way & 1] += (e | (0u - e)) >> 31; /* branch-free: 1 when in use */
		if (!e || (e & TT_TAG_MASK) != tag)
			continue;
		l->fp = tt_fp_mix(l->fp, e, bi * TT_INDEX_WAYS + i);
		n = (e & TT_SLOT_MASK) - 1;
		s = bpf_map_lookup_elem(&slots, &n);
		/* Dead slots are invisible: their flow is over. */
		if (s && tt_gen_live(s->gen) && tt_key_eq(&s->key, k)) {
			l->idx = n;
			return s;
		}
	}
	return NULL;
}

/* The live slot holding this key: one bucket line (two if it overflowed) and the slot. */
static __always_inline struct tt_slot *tt_find(const struct tt_flow_key *k, __u32 h,
					       struct tt_lookup *l)
{
	__u32 i1 = tt_bucket1(h, tt_index_mask), i2 = tt_bucket2(h, tt_index_mask);
	struct tt_index_bucket *b;
	struct tt_slot *s;

	l->fp = 0;
	l->used[0] = l->used[1] = 0;
	b = bpf_map_lookup_elem(&flow_index, &i1);
	if (!b)
		return NULL;
	s = tt_scan(b, k, h & TT_TAG_MASK, 0, i1, l);
	if (s)
		return s;
	b = bpf_map_lookup_elem(&flow_index, &i2);
	if (!b)
		return NULL;
	return tt_scan(b, k, h & TT_TAG_MASK, 1, i2, l);
}

static __always_inline struct tt_store_lock *tt_store_lock(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&store_lock, &zero);
}

/* A dead slot for a new flow: a recycled one, else one never used. */
static __always_inline int tt_take_slot(__u32 *idx)
{
	struct tt_store_lock *l;
	int ok = 0;

	if (bpf_map_pop_elem(&free_slots, idx) == 0)
		return 0;
	l = tt_store_lock();
	if (!l)
		return -1;
	bpf_spin_lock(&l->lock);
	if (l->next_fresh < tt_max_slots) {
		*idx = l->next_fresh;
		l->next_fresh += 1;
		ok = 1;
	}
	bpf_spin_unlock(&l->lock);
	return ok ? 0 : -1;
}

/*
 * Which bucket a new key goes to first: its first one while that has room to
 * spare (one line per lookup for almost every key), else the emptier one.
 * First-fit alone filled some first buckets to the brim and refused flows
 * before the store was full. Read without the lock: only a preference.
 */
static __always_inline int tt_second_first(const struct tt_lookup *l)
{
	return l->used[0] >= TT_INDEX_SPARE && l->used[1] < l->used[0];
}

/*
 * Under the store lock: if the key's buckets still hold the tagged entries the
 * lookup saw (no other CPU inserted this key meanwhile), make the slot live and
 * publish it. Returns 0 when published, -1 when both buckets are full, -2 when
 * the buckets changed (look again).
 */
static __always_inline int tt_publish(struct tt_lookup *l, struct tt_slot *s, __u32 h, __u32 idx,
				      int second_first)
{
	__u32 i1 = tt_bucket1(h, tt_index_mask), i2 = tt_bucket2(h, tt_index_mask);
	__u32 tag = h & TT_TAG_MASK, entry = tt_index_entry(h, idx), fp;
	__u32 first = second_first ? i2 : i1, second = second_first ? i1 : i2;
	struct tt_store_lock *lk = tt_store_lock();
	struct tt_index_bucket *b1, *b2;
	int i, ret = -1;

	/* Looked up in the order they are filled (rather than swapping the
	 * lookup's pointers, which the verifier cannot prune). */
	b1 = bpf_map_lookup_elem(&flow_index, &first);
	b2 = bpf_map_lookup_elem(&flow_index, &second);
	if (!lk || !b1 || !b2)
		return -1;
	bpf_spin_lock(&lk->lock);
	fp = tt_bucket_fp(b1, tag, first, 0);
	fp = tt_bucket_fp(b2, tag, second, fp);
	if (fp != l->fp) {
		ret = -2;
		goto out;
	}
	for (i = 0; i < TT_INDEX_WAYS; i++) {
		if (!b1->ent[i]) {
			s->gen += 1; /* live: even -> odd, only ever here */
			b1->ent[i] = entry;
			ret = 0;
			goto out;
		}
	}
	for (i = 0; i < TT_INDEX_WAYS; i++) {
		if (!b2->ent[i]) {
			s->gen += 1;
			b2->ent[i] = entry;
			ret = 0;
			goto out;
		}
	}
out:
	bpf_spin_unlock(&lk->lock);
	return ret;
}

/* Removes the slot's index entry (the slot is dead already, so lookups skip it anyway). */
static __always_inline void tt_unpublish(__u32 h, __u32 idx)
{
	__u32 i1 = tt_bucket1(h, tt_index_mask), i2 = tt_bucket2(h, tt_index_mask);
	__u32 entry = tt_index_entry(h, idx);
	struct tt_index_bucket *b1, *b2;
	struct tt_store_lock *lk;
	int i;

	b1 = bpf_map_lookup_elem(&flow_index, &i1);
	b2 = bpf_map_lookup_elem(&flow_index, &i2);
	lk = tt_store_lock();
	if (!b1 || !b2 || !lk)
		return;
	bpf_spin_lock(&lk->lock);
	for (i = 0; i < TT_INDEX_WAYS; i++)
		if (b1->ent[i] == entry)
			b1->ent[i] = 0;
	for (i = 0; i < TT_INDEX_WAYS; i++)
		if (b2->ent[i] == entry)
			b2->ent[i] = 0;
	bpf_spin_unlock(&lk->lock);
}

static __always_inline struct tt_slot_lock *tt_slot_lock(__u32 idx)
{
	__u32 li = idx & tt_lock_mask;

	return bpf_map_lookup_elem(&slot_locks, &li);
}

static __always_inline struct tt_cache_entry *tt_cache_at(__u32 cpu, __u32 h, __u32 way)
{
	__u32 ci = cpu * TT_CACHE_ENTRIES + tt_cache_index(h) + (way & (TT_CACHE_WAYS - 1));

	return bpf_map_lookup_elem(&flow_cache, &ci);
}

/*
 * Under the lock of the slot a cache entry holds: if the entry still holds
 * (slot, gen), move its counts into the slot when the slot still has that
 * generation (else they belong to a connection already reported), then give
 * the entry to (new_slot, new_gen) (0: empty). seq is odd meanwhile, so user
 * space never counts the same segments in both places.
 */
static __always_inline void tt_fold(struct tt_cache_entry *e, __u32 slot, __u32 gen,
				    __u32 new_slot, __u32 new_gen, __u32 new_hash)
{
	struct tt_slot *s = bpf_map_lookup_elem(&slots, &slot);
	struct tt_slot_lock *lk = tt_slot_lock(slot);

	if (!s || !lk)
		return;
	bpf_spin_lock(&lk->lock);
	if (e->slot == slot && e->gen == gen) {
		e->seq += 1;
		if (s->gen == gen) {
			TT_ADD_COUNTS(s, e);
			s->reached[0] |= e->reached[0];
			s->reached[1] |= e->reached[1];
		}
		e->bytes[0] = e->bytes[1] = 0;
		e->packets[0] = e->packets[1] = 0;
		e->payload[0] = e->payload[1] = 0;
		e->reached[0] = e->reached[1] = 0;
		e->slot = new_slot;
		e->gen = new_gen;
		e->hash = new_hash;
		e->seq += 1;
	}
	bpf_spin_unlock(&lk->lock);
}

/* Every CPU's counts of (slot, gen) into the slot: before a close reads it. */
static __always_inline void tt_fold_all(__u32 slot, __u32 gen, __u32 h)
{
	__u32 cpu;

	for (cpu = 0; cpu < TT_MAX_CPUS; cpu++) {
		struct tt_cache_entry *e;

		if (cpu >= tt_nr_cpus)
			break;
		e = tt_cache_at(cpu, h, 0);
		if (e && e->slot == slot && e->gen == gen)
			tt_fold(e, slot, gen, 0, 0, 0);
		e = tt_cache_at(cpu, h, 1);
		if (e && e->slot == slot && e->gen == gen)
			tt_fold(e, slot, gen, 0, 0, 0);
	}
}

/*
 * Ends the slot's generation `gen` (if it still holds it): dead, then out of
 * the index. User space recycles the slot a report later. Returns 1 if ended.
 */
static __always_inline int tt_kill(__u32 idx, __u32 gen)
{
	struct tt_slot *s = bpf_map_lookup_elem(&slots, &idx);
	struct tt_slot_lock *lk = tt_slot_lock(idx);
	int killed = 0;

	if (!s || !lk)
		return 0;
	bpf_spin_lock(&lk->lock);
	if (s->gen == gen && tt_gen_live(gen)) {
		s->gen = gen + 1;
		s->settled = 0;
		killed = 1;
	}
	bpf_spin_unlock(&lk->lock);
	if (killed)
		tt_unpublish(tt_key_hash(&s->key), idx);
	return killed;
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

/* A slot for a tuple first seen with this segment, or the one another CPU just gave it. */
static __noinline struct tt_slot *tt_create(const struct tt_pkt *p, int dir, int ingress,
						 __u32 h, struct tt_lookup *l)
{
	struct tt_slot *s, *found;
	__u32 idx;
	int tries, ret;

	if (tt_take_slot(&idx)) {
		tt_refused(p);
		return NULL;
	}
	s = bpf_map_lookup_elem(&slots, &idx);
	if (!s)
		return NULL;
	/* Filled while dead (even gen): nothing reads it before tt_publish. */
	s->key = p->key;
	s->bytes[0] = s->bytes[1] = 0;
	s->packets[0] = s->packets[1] = 0;
	s->payload[0] = s->payload[1] = 0;
	s->settled = 0;
	s->reached[0] = s->reached[1] = 0;
	tt_info_init(&s->info, dir, p->tcp_flags, p->seq, bpf_ktime_get_ns(), ingress);
	for (tries = 0; tries < 2; tries++) {
		ret = tt_publish(l, s, h, idx, tt_second_first(l));
		if (ret == 0) {
			l->idx = idx;
			return s;
		}
		if (ret == -1)
			break;
		found = tt_find(&p->key, h, l); /* another CPU may have created it */
		if (found) {
			bpf_map_push_elem(&free_slots, &idx, 0);
			return found;
		}
	}
	bpf_map_push_elem(&free_slots, &idx, 0);
	tt_refused(p);
	return NULL;
}

static __always_inline void tt_snapshot(struct tt_close_event *ev, const struct tt_slot *s)
{
	ev->bytes[0] = s->bytes[0];
	ev->bytes[1] = s->bytes[1];
	ev->packets[0] = s->packets[0];
	ev->packets[1] = s->packets[1];
	ev->payload[0] = s->payload[0];
	ev->payload[1] = s->payload[1];
}

/*
 * Hand a connection replaced by a new SYN on its tuple (ev: info, counters,
 * gen) to user space. The slot carries on with the new connection, so the old
 * one cannot wait there: if the ring is full, park the event in parked_closes.
 * Returns 0 when user space will get the event.
 */
static __always_inline int tt_emit_reused(struct tt_close_event *ev, const struct tt_flow_key *key,
					  __u32 idx)
{
	struct tt_parked_key pk = {};

	ev->key = *key;
	ev->reason = TT_CLOSE_REUSED;
	ev->slot = idx;
	if (bpf_ringbuf_output(&closed_events, ev, sizeof(*ev), 0) == 0)
		return 0;
	tt_stat_inc(TT_STAT_CLOSE_DROPPED);
	pk.key = *key;
	pk.first_ns = ev->info.first_ns;
	if (bpf_map_update_elem(&parked_closes, &pk, ev, BPF_ANY) == 0)
		return 0;
	tt_stat_inc(TT_STAT_CLOSE_LOST);
	return -1;
}

/* The close event could not be queued: user space finds the flag and reaps the slot. */
static __always_inline void tt_mark_reap(struct tt_slot *s, __u32 idx, __u32 gen)
{
	struct tt_slot_lock *lk = tt_slot_lock(idx);

	if (!lk)
		return;
	bpf_spin_lock(&lk->lock);
	if (s->gen == gen)
		s->info.flags |= TT_F_REAP;
	bpf_spin_unlock(&lk->lock);
}

/*
 * Hands a finished connection (ev: info, counters, gen) to user space and ends
 * its slot. Whoever ends the generation reports it, exactly once: this CPU, or
 * user space reaping the same flow at the same moment (Collector::scan), in
 * which case the reserved record is discarded. With the ring full the flow is
 * marked for user space to reap.
 */
static __always_inline void tt_finish(struct tt_close_event *ev, struct tt_slot *s,
				      const struct tt_flow_key *key, __u32 idx, __u32 gen)
{
	struct tt_close_event *rec;
	struct tt_slot_lock *lk = tt_slot_lock(idx);

	/* The counts other CPUs still cache, then the totals. */
	tt_fold_all(idx, gen, tt_key_hash(key));
	if (!lk)
		return;
	bpf_spin_lock(&lk->lock);
	tt_snapshot(ev, s);
	bpf_spin_unlock(&lk->lock);

	rec = bpf_ringbuf_reserve(&closed_events, sizeof(*rec), 0);
	if (!rec) {
		tt_stat_inc(TT_STAT_CLOSE_DROPPED);
		tt_mark_reap(s, idx, gen);
		return;
	}
	__builtin_memcpy(rec, ev, sizeof(*rec));
	rec->key = *key;
	rec->reason = TT_CLOSE_FINISHED;
	rec->slot = idx;
	rec->gen = gen;
	if (tt_kill(idx, gen))
		bpf_ringbuf_submit(rec, 0);
	else
		bpf_ringbuf_discard(rec, 0);
}

/*
 * Slow path: feed the segment to the lifecycle under the slot's lock and count
 * it there (the payload reach is then in step with the lifecycle), then act on
 * the result outside the lock (helpers are not allowed under a spin lock).
 */
static __noinline void tt_step(const struct tt_pkt *p, int dir, int ingress,
				    struct tt_slot *s, __u32 idx)
{
	struct tt_close_event *ev;
	struct tt_slot_lock *lk;
	__u64 now = bpf_ktime_get_ns();
	__u32 act = 0, gen = 0, zero = 0;
	int live = 0;

	lk = tt_slot_lock(idx);
	ev = bpf_map_lookup_elem(&close_scratch, &zero);
	if (!lk || !ev)
		return;
	bpf_spin_lock(&lk->lock);
	gen = s->gen;
	live = tt_gen_live(gen);
	if (live) {
		act = tt_lifecycle_step(&s->info, dir, p->tcp_flags, p->seq, p->ack_seq, p->payload,
					now);
		if (act & (TT_ACT_FINISHED | TT_ACT_REUSE)) {
			ev->info = s->info;
			ev->gen = gen;
		}
		if (act & TT_ACT_REUSE) {
			/* The old connection is over; the new SYN starts the next one in this slot. */
			tt_snapshot(ev, s);
			s->bytes[0] = s->bytes[1] = 0;
			s->packets[0] = s->packets[1] = 0;
			s->payload[0] = s->payload[1] = 0;
			s->reached[0] = s->reached[1] = 0;
			s->settled = 0;
			tt_info_init(&s->info, dir, p->tcp_flags, p->seq, now, ingress);
			s->gen = gen + 2;
		} else if (act & TT_ACT_FIN) {
			s->settled = 0; /* the first FIN sends every CPU back to this path */
		} else if (act & TT_ACT_SETTLED) {
			s->settled = 1;
		}
		tt_account(s, dir, p);
	}
	bpf_spin_unlock(&lk->lock);
	if (!live)
		return;

	if (act & TT_ACT_REUSE) {
		tt_stat_inc(TT_STAT_REUSED);
		if (!ev->info.close_ns)
			ev->info.close_ns = now;
		tt_emit_reused(ev, &p->key, idx);
		return;
	}
	if (act & TT_ACT_FINISHED)
		tt_finish(ev, s, &p->key, idx, gen);
}

/* Counts the segment into this cache entry if it holds the packet's flow, settled. */
static __always_inline int tt_cache_hit(struct tt_cache_entry *e, __u32 h, const struct tt_pkt *p,
					int dir)
{
	struct tt_slot *s;
	__u32 si;

	if (!e || !e->gen || e->hash != h)
		return 0;
	si = e->slot;
	s = bpf_map_lookup_elem(&slots, &si);
	if (!s || s->gen != e->gen || !s->settled || !tt_key_eq(&s->key, &p->key))
		return 0;
	tt_account_cached(e, s, dir, p);
	return 1;
}

static __always_inline int tt_handle(struct __sk_buff *skb, int ingress, int has_l2)
{
	struct tt_cache_entry *e;
	struct tt_lookup l;
	struct tt_slot *s;
	struct tt_pkt p;
	__u32 cpu;
	__u32 sel;
	__u32 h;
	int dir;

	if (tt_parse(skb, &p, has_l2) < 0)
		return TC_ACT_UNSPEC;
	p.key.ifindex = skb->ifindex;
	dir = tt_key_normalise(&p.key);
	/* Before any flow map: filtered-out traffic costs no entry and is never "untracked". */
	cpu = bpf_get_smp_processor_id();
	sel = tt_filter_sel;
	if (sel) {
		struct tt_filter_arg *a = bpf_map_lookup_elem(&filter_arg, &cpu);

		if (a) {
			a->key = p.key;
			if (!tt_filter_pass(cpu, sel))
				return TC_ACT_UNSPEC;
		}
	}
	h = tt_key_hash(&p.key);

	/* Fastest path: one of this CPU's two cache entries holds the flow, settled. */
	if (!(p.tcp_flags & TT_STATE_FLAGS) &&
	    (tt_cache_hit(tt_cache_at(cpu, h, 0), h, &p, dir) ||
	     tt_cache_hit(tt_cache_at(cpu, h, 1), h, &p, dir)))
		return TC_ACT_UNSPEC;

	s = tt_find(&p.key, h, &l);
	if (s && s->settled && !(p.tcp_flags & TT_STATE_FLAGS)) {
		/* Fast path: an entry now counts this flow: an empty way, else a
		 * random one, whose flow gets its counts first. Nothing here can
		 * change the lifecycle. */
		__u32 gen = s->gen, way;

		e = tt_cache_at(cpu, h, 0);
		way = e && !e->gen ? 0 : 1;
		if (way) {
			e = tt_cache_at(cpu, h, 1);
			if (e && e->gen)
				way = bpf_get_prandom_u32() & 1;
		}
		e = tt_cache_at(cpu, h, way);
		if (e && e->gen)
			tt_fold(e, e->slot, e->gen, l.idx, gen, h);
		else if (e)
			e->slot = l.idx, e->gen = gen, e->hash = h;
		if (e && e->slot == l.idx && e->gen == gen)
			tt_account_cached(e, s, dir, &p);
		else
			tt_step(&p, dir, ingress, s, l.idx);
		return TC_ACT_UNSPEC;
	}
	/* A new SYN may end the connection in this slot: bring its counts home first. */
	if (s && (p.tcp_flags & (TT_TCP_SYN | TT_TCP_ACK)) == TT_TCP_SYN)
		tt_fold_all(l.idx, s->gen, h);
	if (!s) {
		if (!tt_starts_flow(p.tcp_flags, p.payload))
			return TC_ACT_UNSPEC;
		s = tt_create(&p, dir, ingress, h, &l);
		if (!s)
			return TC_ACT_UNSPEC;
	}
	tt_step(&p, dir, ingress, s, l.idx);
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
