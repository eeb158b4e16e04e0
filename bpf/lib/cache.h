/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The per-CPU counter cache (tcptrack/store.h): counting a settled flow's
 * segment into this CPU's entry, and folding entries into their slot when
 * another flow takes the entry or the flow closes. Included by lib/close.h
 * and tcptrack.bpf.c.
 */
#ifndef TCPTRACK_BPF_CACHE_H
#define TCPTRACK_BPF_CACHE_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tcptrack/store.h"
#include "maps.h"
#include "store.h"

/* A settled flow's segment: into this CPU's cache entry, no line shared with another CPU. */
static __always_inline void tt_account_cached(struct tt_cache_entry *e, const struct tt_slot *s,
					      int dir, const struct tt_pkt *p)
{
	dir &= 1;
	TT_ACCOUNT(e, s, dir, p);
}

static __always_inline struct tt_cache_entry *tt_cache_at(__u32 cpu, __u32 ch, __u32 way)
{
	__u32 bits = tt_cache_bits;
	__u32 ci = (cpu << bits) * TT_CACHE_WAYS + tt_cache_index(ch, bits) +
		   (way & (TT_CACHE_WAYS - 1));

	return bpf_map_lookup_elem(&flow_cache, &ci);
}

/*
 * Under the lock of the slot a cache entry holds: if the entry still holds
 * (slot, gen), move its counts into the slot when the slot still has that
 * generation (else they belong to a connection already reported), then give
 * the entry to (new_slot, new_gen) (0: empty). seq is odd meanwhile, so user
 * space never counts the same segments in both places.
 */
static __always_inline void tt_fold(struct tt_cache_entry *e, __u32 slot, __u32 gen, __u32 new_slot,
				    __u32 new_gen, __u32 new_hash)
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

/* A CPU about to give a cache entry to (slot, gen) marks itself in the slot
 * first; 0 if it could not (the lock missing: never), and then it must not. */
static __always_inline int tt_mark_cpu(struct tt_slot *s, __u32 slot, __u32 gen, __u32 cpu)
{
	__u32 bit = 1u << (cpu & 31);
	struct tt_slot_lock *lk;

	if (*(volatile const __u32 *)&s->cpus & bit)
		return 1;
	lk = tt_slot_lock(slot);
	if (!lk)
		return 0;
	bpf_spin_lock(&lk->lock);
	if (s->gen == gen)
		s->cpus |= bit;
	bpf_spin_unlock(&lk->lock);
	return 1;
}

/* Every CPU's counts of (slot, gen) into the slot: before a close reads it.
 * Only the CPUs the slot names can hold any: reading every CPU's two entries
 * made a close 7 us on a 128-CPU cache (bench/report_cost --cpus), 1 us so. */
static __always_inline void tt_fold_all(__u32 slot, __u32 gen, __u32 ch)
{
	struct tt_slot *s = bpf_map_lookup_elem(&slots, &slot);
	__u32 cpu, cpus = s ? *(volatile const __u32 *)&s->cpus : ~0u;

	for (cpu = 0; cpu < TT_MAX_CPUS; cpu++) {
		struct tt_cache_entry *e;

		if (cpu >= tt_nr_cpus)
			break;
		if (!(cpus & (1u << (cpu & 31))))
			continue;
		e = tt_cache_at(cpu, ch, 0);
		if (e && e->slot == slot && e->gen == gen)
			tt_fold(e, slot, gen, 0, 0, 0);
		e = tt_cache_at(cpu, ch, 1);
		if (e && e->slot == slot && e->gen == gen)
			tt_fold(e, slot, gen, 0, 0, 0);
	}
}

/* The slot of the packet's flow, settled, if this cache entry holds it; else NULL. */
static __always_inline struct tt_slot *tt_cache_hit(struct tt_cache_entry *e, __u32 ch,
						    const struct tt_pkt *p)
{
	struct tt_slot *s;
	__u32 si;

	if (!e || !e->gen || e->hash != ch)
		return NULL;
	si = e->slot;
	s = bpf_map_lookup_elem(&slots, &si);
	if (!s || s->gen != e->gen || !s->settled || !tt_key_eq(&s->key, &p->key))
		return NULL;
	return s;
}

#endif /* TCPTRACK_BPF_CACHE_H */
