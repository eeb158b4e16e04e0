/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The end of a flow: ending a slot's generation (also the eviction program's
 * work), close events on the ring buffer, marking a finished flow for user
 * space to reap when the ring is full, and a tuple reused by a new SYN.
 * Included by tcptrack.bpf.c.
 */
#ifndef TCPTRACK_BPF_CLOSE_H
#define TCPTRACK_BPF_CLOSE_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tcptrack/abi.h"
#include "tcptrack/lifecycle.h"
#include "maps.h"
#include "store.h"
#include "cache.h"

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
	struct tt_health *h = tt_health_at(idx);

	/* The counts other CPUs still cache, then the totals. */
	tt_fold_all(idx, gen, ch);
	if (!lk)
		return;
	bpf_spin_lock(&lk->lock);
	tt_snapshot(ev, s);
	bpf_spin_unlock(&lk->lock);
	if (h)
		ev->health = *h;
	else /* --no-health */
		__builtin_memset(&ev->health, 0, sizeof(ev->health));

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
		tt_close_submit(rec);
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
	struct tt_health *hl = tt_health_at(idx);
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
	if (hl) {
		ev->health = *hl;
		__builtin_memset(hl, 0, sizeof(*hl));
	} else { /* --no-health */
		__builtin_memset(&ev->health, 0, sizeof(ev->health));
	}
	s->bytes[0] = s->bytes[1] = 0;
	s->packets[0] = s->packets[1] = 0;
	s->payload[0] = s->payload[1] = 0;
	s->reached[0] = s->reached[1] = 0;
	s->settled = 0;
	s->cpus = 0;
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
	tt_close_submit(rec);
	return TT_STEP_DONE;
}

#endif /* TCPTRACK_BPF_CLOSE_H */
