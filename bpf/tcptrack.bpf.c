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
#include "lib/maps.h"
#include "lib/parse.h"

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
/* The hashes' key: getrandom() at every load (src/skeleton.cpp), never printed. */
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
};

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

static __always_inline struct tt_cache_entry *tt_cache_at(__u32 cpu, __u32 ch, __u32 way)
{
	__u32 ci = cpu * TT_CACHE_ENTRIES + tt_cache_index(ch) + (way & (TT_CACHE_WAYS - 1));

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
static __always_inline void tt_fold_all(__u32 slot, __u32 gen, __u32 ch)
{
	__u32 cpu;

	for (cpu = 0; cpu < TT_MAX_CPUS; cpu++) {
		struct tt_cache_entry *e;

		if (cpu >= tt_nr_cpus)
			break;
		e = tt_cache_at(cpu, ch, 0);
		if (e && e->slot == slot && e->gen == gen)
			tt_fold(e, slot, gen, 0, 0, 0);
		e = tt_cache_at(cpu, ch, 1);
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
		tt_unpublish(tt_index_hash_k(&s->key), idx);
	return killed;
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
	ev->reason = TT_CLOSE_DISPLACED;
	ev->slot = victim;
	ev->gen = vgen;
	if (!ev->info.close_ns)
		ev->info.close_ns = bpf_ktime_get_ns();
	__builtin_memcpy(rec, ev, sizeof(*rec));
	bpf_ringbuf_submit(rec, 0);
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
				      const struct tt_flow_key *key, __u32 ch, __u32 idx, __u32 gen)
{
	struct tt_close_event *rec;
	struct tt_slot_lock *lk = tt_slot_lock(idx);

	/* The counts other CPUs still cache, then the totals. */
	tt_fold_all(idx, gen, ch);
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

#define TT_STEP_DONE 0
#define TT_STEP_STALE 1 /* the slot went to another tuple since the lookup: the flow is over */
#define TT_STEP_MOVE 2 /* reused tuple, ring full: the old connection waits in its slot */

/*
 * A new SYN on a tuple whose connection is over or replaced. The ring has
 * room: report the old connection and start the new one in the same slot.
 * The ring is full: the old connection stays in its slot, finished and out of
 * the index, for user space to reap; the new one takes another slot.
 * h, p's index hash; the slow path computed it already.
 */
static __always_inline int tt_reuse(const struct tt_pkt *p, __u32 dirflags, __u32 h,
				    struct tt_slot *s, __u32 idx, __u32 gen,
				    struct tt_close_event *ev, struct tt_slot_lock *lk)
{
	__u32 dir = dirflags & 1;
	__u64 now = bpf_ktime_get_ns();
	struct tt_close_event *rec = bpf_ringbuf_reserve(&closed_events, sizeof(*rec), 0);

	bpf_spin_lock(&lk->lock);
	if (s->gen != gen) {
		bpf_spin_unlock(&lk->lock);
		if (rec)
			bpf_ringbuf_discard(rec, 0);
		return TT_STEP_STALE;
	}
	if (!rec) {
		s->info.flags |= TT_F_DONE | TT_F_REAP;
		if (s->info.state < TT_CLOSED)
			s->info.state = TT_CLOSED; /* replaced by a new SYN: it is over */
		if (!s->info.close_ns)
			s->info.close_ns = now;
		s->settled = 0;
		bpf_spin_unlock(&lk->lock);
		tt_stat_inc(TT_STAT_REUSED);
		tt_stat_inc(TT_STAT_CLOSE_DROPPED);
		tt_unpublish(h, idx);
		return TT_STEP_MOVE;
	}
	ev->info = s->info;
	tt_snapshot(ev, s);
	s->bytes[0] = s->bytes[1] = 0;
	s->packets[0] = s->packets[1] = 0;
	s->payload[0] = s->payload[1] = 0;
	s->reached[0] = s->reached[1] = 0;
	s->settled = 0;
	tt_info_init(&s->info, dir, p->tcp_flags, p->seq, now, (dirflags >> 1) & 1);
	s->gen = gen + 2;
	tt_account(s, dir, p);
	bpf_spin_unlock(&lk->lock);

	tt_stat_inc(TT_STAT_REUSED);
	if (!ev->info.close_ns)
		ev->info.close_ns = now;
	ev->key = p->key;
	ev->reason = TT_CLOSE_REUSED;
	ev->slot = idx;
	ev->gen = gen;
	__builtin_memcpy(rec, ev, sizeof(*rec));
	bpf_ringbuf_submit(rec, 0);
	return TT_STEP_DONE;
}

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
	const struct tt_pkt *p;
	struct tt_close_event *ev;
	struct tt_slot_lock *lk;
	struct tt_slot *s;
	__u64 now = bpf_ktime_get_ns();
	__u32 act = 0, zero = 0, dir = dirflags & 1;

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
		return tt_reuse(p, dirflags, a->l.h, s, idx, gen, ev, lk);
	}
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

/* Counts the segment into this cache entry if it holds the packet's flow, settled. */
static __always_inline int tt_cache_hit(struct tt_cache_entry *e, __u32 ch,
					const struct tt_pkt *p, int dir)
{
	struct tt_slot *s;
	__u32 si;

	if (!e || !e->gen || e->hash != ch)
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
	__u32 ch;
	int dir, ret;

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
	ch = tt_cache_hash_k(&p.key);

	/* Fastest path: one of this CPU's two cache entries holds the flow, settled. */
	if (!(p.tcp_flags & TT_STATE_FLAGS) &&
	    (tt_cache_hit(tt_cache_at(cpu, ch, 0), ch, &p, dir) ||
	     tt_cache_hit(tt_cache_at(cpu, ch, 1), ch, &p, dir)))
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

		e = tt_cache_at(cpu, ch, 0);
		way = e && !e->gen ? 0 : 1;
		if (way) {
			e = tt_cache_at(cpu, ch, 1);
			if (e && e->gen)
				way = bpf_get_prandom_u32() & 1;
		}
		e = tt_cache_at(cpu, ch, way);
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
			return TC_ACT_UNSPEC;
		}
	}
	{
		struct tt_slow_arg *a = bpf_map_lookup_elem(&slow_arg, &cpu);

		if (!a)
			return TC_ACT_UNSPEC;
		a->p = p;
		a->l = l;
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
