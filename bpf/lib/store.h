/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The slot store in the kernel (layout and hashes: tcptrack/store.h): the
 * keyed hash with the loaded key, index lookup, insert and removal, slots and
 * their generations, counting a segment into a slot, and a new flow's slot
 * (a free one, else a displaced unassured flow's). Included by lib/cache.h,
 * lib/close.h and tcptrack.bpf.c.
 */
#ifndef TCPTRACK_BPF_STORE_H
#define TCPTRACK_BPF_STORE_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tcptrack/abi.h"
#include "tcptrack/lifecycle.h"
#include "tcptrack/store.h"
#include "maps.h"
#include "parse.h"
#include "health.h"

#define TT_TAG_MASK 0xff000000
#define TT_INDEX_SPARE 12 /* entries a first bucket takes before the emptier one is preferred */

/* The hashes' key: getrandom() at every load (src/datapath/skeleton.cpp), never printed. */
const volatile struct tt_hash_key tt_hash_key = {};

/* Read through volatile: the compiler must not fold the placeholder {} in. */
static __always_inline struct tt_hash_key tt_loaded_key(void)
{
	struct tt_hash_key key = {tt_hash_key.k0, tt_hash_key.k1};

	return key;
}

static __always_inline __u32 tt_index_hash_k(const struct tt_flow_key *k)
{
	const struct tt_hash_key key = tt_loaded_key();

	return tt_index_hash(k, &key);
}

static __always_inline __u32 tt_cache_hash_k(const struct tt_flow_key *k)
{
	const struct tt_hash_key key = tt_loaded_key();

	return tt_cache_hash(k, &key);
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
#define TT_ACCOUNT(c, s, dir, p)                                                                   \
	do {                                                                                       \
		__u32 end_;                                                                        \
                                                                                                   \
		(c)->bytes[dir] += (p)->l3_bytes;                                                  \
		(c)->packets[dir] += (p)->segs;                                                    \
		if (!(p)->payload || !((s)->info.base_mask & (1 << (dir))))                        \
			break;                                                                     \
		end_ = (p)->seq + (((p)->tcp_flags & TT_TCP_SYN) ? 1 : 0) + (p)->payload;          \
		/* reached[] is stored only when it changes. */                                    \
		if (tt_payload_advance(&(c)->payload[dir], (c)->reached[dir], (s)->info.base[dir], \
				       end_) &&                                                    \
		    !(c)->reached[dir])                                                            \
			(c)->reached[dir] = 1;                                                     \
	} while (0)

/* A segment of a flow that is changing state: into the slot, under its lock. */
static __always_inline void tt_account(struct tt_slot *s, int dir, const struct tt_pkt *p)
{
	dir &= 1;
	TT_ACCOUNT(s, s, dir, p);
}

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
		__u32 n, gen;

		l->used[way & 1] += (e | (0u - e)) >> 31; /* branch-free: 1 when in use */
		if (!e || (e & TT_TAG_MASK) != tag)
			continue;
		l->fp = tt_fp_mix(l->fp, e, bi * TT_INDEX_WAYS + i);
		n = (e & TT_SLOT_MASK) - 1;
		s = bpf_map_lookup_elem(&slots, &n);
		if (!s)
			continue;
		gen = *(volatile const __u32 *)&s->gen;
		/* Dead slots are invisible: their flow is over. */
		if (tt_gen_live(gen) && tt_key_eq(&s->key, k)) {
			l->idx = n;
			l->gen = gen;
			l->found = 1;
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
	l->found = 0;
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
 * publish it. Returns 0 when published (l->idx, l->gen: the new flow), -1 when
 * both buckets are full, -2 when the buckets changed (look again).
 */
static __always_inline int tt_publish(struct tt_lookup *l, struct tt_slot *s, __u32 idx)
{
	__u32 h = l->h, second_first = tt_second_first(l);
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
			l->gen = s->gen;
			b1->ent[i] = entry;
			ret = 0;
			goto out;
		}
	}
	for (i = 0; i < TT_INDEX_WAYS; i++) {
		if (!b2->ent[i]) {
			s->gen += 1;
			l->gen = s->gen;
			b2->ent[i] = entry;
			ret = 0;
			goto out;
		}
	}
out:
	bpf_spin_unlock(&lk->lock);
	if (ret == 0) {
		l->idx = idx;
		l->found = 1;
	}
	return ret;
}

/* Removes the slot's index entry (the slot is dead already, or waits for user space to reap it). */
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

/*
 * A flow the maps have no room for: count the segment, and the connection
 * once (at its SYN, by reason) so "untracked" is a number of connections.
 * Mid-stream flows refused show up in the segment count.
 */
static __always_inline void tt_refused(const struct tt_pkt *p, __u32 reason)
{
	tt_stat_inc(TT_STAT_UNTRACKED_SEGS);
	if ((p->tcp_flags & (TT_TCP_SYN | TT_TCP_ACK)) == TT_TCP_SYN) {
		tt_stat_inc(TT_STAT_UNTRACKED);
		tt_stat_inc(reason);
	}
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

/* The displacement candidate of one bucket: live, unassured, not finishing, oldest first seen. */
static __always_inline void tt_pick_victim(const struct tt_index_bucket *b, __u32 *best,
					   __u32 *best_gen, __u64 *best_ns)
{
	int i;

	for (i = 0; i < TT_INDEX_WAYS; i++) {
		__u32 e = *(volatile const __u32 *)&b->ent[i];
		struct tt_slot *s;
		__u32 n, gen;
		__u64 first;

		if (!e)
			continue;
		n = (e & TT_SLOT_MASK) - 1;
		s = bpf_map_lookup_elem(&slots, &n);
		if (!s)
			continue;
		gen = *(volatile const __u32 *)&s->gen;
		if (!tt_gen_live(gen) || (s->info.flags & (TT_F_ASSURED | TT_F_DONE)))
			continue;
		first = s->info.first_ns;
		if (first < *best_ns) {
			*best_ns = first;
			*best = n;
			*best_gen = gen;
		}
	}
}

/*
 * No room for a new connection: end the oldest unassured flow of its two
 * buckets (a half-open or one-way flow, never an assured one), report it
 * once as displaced with its own counts, and hand its slot over. Only when
 * the ring can take its close event: a displaced flow is never lost. Returns
 * the slot, dead and out of the index, or -1. Global (the key's hash comes in
 * this CPU's slow_arg): its scan's many outcomes are verified once, not each
 * again through the rest of tt_create.
 */
__noinline int tt_displace(__u32 cpu)
{
	struct tt_slow_arg *a = tt_slow_arg(cpu);
	__u32 i1, i2, victim = 0, vgen = 0, zero = 0;
	__u64 oldest = ~0ULL;
	struct tt_index_bucket *b;
	struct tt_close_event *ev, *rec;
	struct tt_slot_lock *lk;
	struct tt_slot *s;
	int ok = 0;

	if (!a)
		return -1;
	i1 = tt_bucket1(a->l.h, tt_index_mask);
	i2 = tt_bucket2(a->l.h, tt_index_mask);
	b = bpf_map_lookup_elem(&flow_index, &i1);
	if (b)
		tt_pick_victim(b, &victim, &vgen, &oldest);
	b = bpf_map_lookup_elem(&flow_index, &i2);
	if (b)
		tt_pick_victim(b, &victim, &vgen, &oldest);
	if (oldest == ~0ULL)
		return -1;
	s = bpf_map_lookup_elem(&slots, &victim);
	lk = tt_slot_lock(victim);
	ev = bpf_map_lookup_elem(&close_scratch, &zero);
	if (!s || !lk || !ev)
		return -1;
	rec = bpf_ringbuf_reserve(&closed_events, sizeof(*rec), 0);
	if (!rec)
		return -1; /* user space is behind: the newcomer is untracked instead */
	bpf_spin_lock(&lk->lock);
	/* Still the flow we chose, still unassured: end it here, under its lock. */
	if (s->gen == vgen && !(s->info.flags & (TT_F_ASSURED | TT_F_DONE))) {
		s->info.flags |= TT_F_DONE | TT_F_DISPLACED;
		ev->info = s->info;
		tt_snapshot(ev, s);
		ev->key = s->key;
		s->gen = vgen + 1;
		s->settled = 0;
		ok = 1;
	}
	bpf_spin_unlock(&lk->lock);
	if (!ok) {
		bpf_ringbuf_discard(rec, 0);
		return -1;
	}
	tt_unpublish(tt_index_hash_k(&ev->key), victim);
	{
		struct tt_health *h = tt_health_at(victim);

		if (h)
			ev->health = *h;
		else
			__builtin_memset(&ev->health, 0, sizeof(ev->health));
	}
	ev->reason = TT_CLOSE_DISPLACED;
	ev->slot = victim;
	ev->gen = vgen;
	if (!ev->info.close_ns)
		ev->info.close_ns = bpf_ktime_get_ns();
	__builtin_memcpy(rec, ev, sizeof(*rec));
	tt_close_submit(rec);
	tt_stat_inc(TT_STAT_DISPLACED);
	return victim;
}

/* Fills a dead slot with a new flow (nothing reads it before tt_publish). */
static __always_inline void tt_slot_init(struct tt_slot *s, const struct tt_pkt *p, __u32 dirflags)
{
	s->key = p->key;
	s->bytes[0] = s->bytes[1] = 0;
	s->packets[0] = s->packets[1] = 0;
	s->payload[0] = s->payload[1] = 0;
	s->settled = 0;
	s->reached[0] = s->reached[1] = 0;
	s->cpus = 0;
	s->fsel = 0;
	tt_info_init(&s->info, dirflags & 1, p->tcp_flags, p->seq, bpf_ktime_get_ns(),
		     (dirflags >> 1) & 1);
}

/*
 * A slot for a tuple first seen with this segment, or the one another CPU just
 * gave it: a free slot, else (store or buckets full) a displaced one. l->idx,
 * l->gen: the flow.
 */
static __noinline struct tt_slot *tt_create(const struct tt_pkt *p, __u32 dirflags,
					    struct tt_lookup *l)
{
	__u32 reason = TT_STAT_UNTRACKED_FULL;
	struct tt_slot *s, *found;
	__u32 idx;
	int tries, ret, v;

	if (tt_take_slot(&idx) == 0) {
		s = bpf_map_lookup_elem(&slots, &idx);
		if (!s)
			return NULL;
		tt_slot_init(s, p, dirflags);
		tt_health_clear(tt_health_at(idx));
		for (tries = 0; tries < 2; tries++) {
			ret = tt_publish(l, s, idx);
			if (ret == 0)
				return s;
			if (ret == -1)
				break;
			found = tt_find(&p->key, l->h, l); /* another CPU may have created it */
			if (found) {
				bpf_map_push_elem(&free_slots, &idx, 0);
				return found;
			}
		}
		bpf_map_push_elem(&free_slots, &idx, 0);
		if (ret != -1) {
			tt_refused(p, TT_STAT_UNTRACKED_BUCKETS);
			return NULL;
		}
		reason = TT_STAT_UNTRACKED_BUCKETS;
	}
	v = tt_displace(bpf_get_smp_processor_id());
	if (v < 0) {
		tt_refused(p, reason);
		return NULL;
	}
	idx = v;
	s = bpf_map_lookup_elem(&slots, &idx);
	if (!s)
		return NULL;
	tt_slot_init(s, p, dirflags);
	tt_health_clear(tt_health_at(idx));
	/* The buckets changed: look again (another CPU may have created it). */
	found = tt_find(&p->key, l->h, l);
	if (!found && tt_publish(l, s, idx) == 0)
		return s;
	/* Dead, never published, and no writer checks a gen it never had: free now. */
	bpf_map_push_elem(&free_slots, &idx, 0);
	if (!found)
		tt_refused(p, reason);
	return found;
}

#endif /* TCPTRACK_BPF_STORE_H */
