/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Types and pure logic shared by the datapath (bpf/) and user space (src/).
 * Only fixed-width types, explicit padding; user space static_asserts sizes.
 * The lifecycle step is plain C without helpers so it runs under a
 * bpf_spin_lock in the kernel and in unit tests unchanged.
 */
#ifndef TCPTRACK_ABI_H
#define TCPTRACK_ABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#include <linux/bpf.h> /* struct bpf_spin_lock */
#endif

#ifndef TT_INLINE
#ifdef __BPF__
#define TT_INLINE static __always_inline
#else
#define TT_INLINE static inline
#endif
#endif

#define TT_FAMILY_INET 4
#define TT_FAMILY_INET6 6

/* Side A is the (address, port) that sorts first; dir 0 = A->B, 1 = B->A. */
#define TT_DIR_AB 0
#define TT_DIR_BA 1

/* TCP header flag bits (byte 13 of the header). */
#define TT_TCP_FIN 0x01
#define TT_TCP_SYN 0x02
#define TT_TCP_RST 0x04
#define TT_TCP_ACK 0x10

enum tt_state {
	TT_SYN_SENT = 0, /* SYN only */
	TT_SYN_RECV = 1, /* SYN+ACK seen */
	TT_ESTABLISHED = 2,
	TT_CLOSING = 3, /* one FIN */
	TT_CLOSED = 4, /* both FINs */
	TT_RESET = 5, /* RST either way */
	TT_STATE_COUNT = 6,
};

/* Normalised connection key: both directions of one connection share it. */
struct tt_flow_key {
	__u8 addr_a[16]; /* IPv4 uses the first 4 bytes, rest zero */
	__u8 addr_b[16];
	__u16 port_a; /* network byte order */
	__u16 port_b;
	__u32 ifindex;
	__u8 family; /* TT_FAMILY_INET / TT_FAMILY_INET6 */
	__u8 pad[3];
};

/* Lifecycle facts and timestamps (CLOCK_MONOTONIC ns, 0 = not seen). */
#define TT_F_SYN_SEEN 0x01 /* the handshake started while we watched */
#define TT_F_LOCAL_CLIENT 0x02 /* the client's SYN left through this host (egress) */
#define TT_F_MIDSTREAM 0x04 /* first seen after the handshake */
#define TT_F_REAP 0x08 /* finished, but its close event could not be queued */
#define TT_F_HS_SEEN 0x10 /* SYN-ACK seen, so RTT is measurable */
#define TT_F_DONE 0x20 /* finished: exactly one CPU got TT_ACT_FINISHED */
/*
 * Assured (conntrack's word): the client acknowledged the server's SYN-ACK, or
 * the side that did not open it spoke after the handshake (a flow caught
 * mid-stream: traffic both ways). Half-open and one-way flows are not, and a
 * new connection that finds no room may displace them; assured flows never are.
 */
#define TT_F_ASSURED 0x40
#define TT_F_DISPLACED 0x80 /* ended unassured to make room for a new connection */

struct tt_flow_info {
	/* First 16 bytes: what the hot path reads (the payload bases), so that in
	 * a slot they share no cache line with the counters (see tt_slot). */
	__u32 base[2]; /* where each side's payload starts (ISN + 1, or first seen) */
	__u8 base_mask; /* bit (1 << side): base[side] is known */
	__u8 state; /* enum tt_state */
	__u8 client; /* side (TT_DIR_AB: A, TT_DIR_BA: B) that opened the connection */
	__u8 flags; /* TT_F_* */
	__u8 fin_mask; /* bit (1 << side): side sent a FIN */
	__u8 ack_mask; /* bit (1 << side): side's FIN was acknowledged */
	__u8 pad[2];
	__u32 syn_seq;
	__u32 fin_seq[2]; /* sequence number carried by each side's FIN */
	__u32 pad2;
	__u64 first_ns; /* first packet seen: identifies this generation of the tuple */
	__u64 syn_ns;
	__u64 synack_ns;
	__u64 ack_ns; /* handshake-completing ACK */
	__u64 close_ns; /* second FIN or RST */
};

/* Why a close event was emitted. */
enum tt_close_reason {
	TT_CLOSE_FINISHED = 1, /* both FINs acknowledged, or RST */
	TT_CLOSE_REUSED = 2, /* a new SYN replaced it on the same tuple */
	TT_CLOSE_DISPLACED = 3, /* unassured, displaced by a new connection (which took its slot) */
};

/* Ring-buffer record: a connection that left the maps, with final counters. */
struct tt_close_event {
	struct tt_flow_key key;
	__u32 reason;
	struct tt_flow_info info;
	__u64 bytes[2];
	__u64 packets[2];
	__u64 payload[2];
	__u32 slot; /* the slot it used; user space recycles it (see the store below) */
	__u32 gen; /* the slot's generation while it held this connection */
};

/*
 * The counter store (bpf/maps.h), read by user space through mmap:
 *
 *  - `slots`: one fixed tt_slot per flow in an mmapable array. Counters are
 *    shared by all CPUs (atomic adds), so memory does not grow with CPUs and
 *    user space reads every flow as plain memory, without a syscall.
 *  - `flow_index`: key -> slot, a two-choice bucketed hash table of 16 u32
 *    entries per 64-byte bucket: entry = (tag << 24) | (slot + 1), 0 = empty.
 *    A lookup reads one bucket line (two when the key overflowed into its
 *    second bucket) and the slot; tags filter the slots whose key is compared.
 *    Inserts and removals take the store lock; lookups take none.
 *  - slot generations: gen is odd while the slot holds a live flow and even
 *    once it died. A new connection on a slot gets a new odd gen, so user
 *    space never mixes two connections' counts. Dead slots are invisible to
 *    lookups, and user space recycles them (free_slots queue) only a report
 *    after their close, when no classifier can still be counting into them.
 *    A lookup remembers the gen it matched, and every write under the slot's
 *    lock checks it, so the one slot handed over at once (a displaced
 *    unassured flow's, which the per-CPU cache never holds) is safe too.
 *  - lifecycle changes run under one of `slot_locks` (striped by slot).
 *  - pressure: a new connection that finds no room displaces the oldest
 *    unassured flow (TT_F_ASSURED) of its two buckets and takes its slot; a
 *    finished connection whose close event finds the ring full stays in its
 *    slot (TT_F_REAP) until user space reaps it, and a new SYN on its tuple
 *    then gets another slot: no close is lost while the store has room.
 */
#define TT_INDEX_WAYS 16 /* entries per index bucket: one cache line */
#define TT_SLOT_BITS 24
#define TT_SLOT_MASK ((1u << TT_SLOT_BITS) - 1)
#define TT_MAX_SLOTS (TT_SLOT_MASK - 1) /* slot + 1 must fit in TT_SLOT_BITS */
#define TT_EVICT_BATCH 64 /* slots per run of the eviction program */

struct tt_slot {
	/*
	 * Bytes 0-79 hold everything a segment reads (key, gen, settled, the
	 * payload bases at the start of info) and nothing written per segment;
	 * the counters (bytes 128-175) are the only per-segment writes. Whatever
	 * the slot's alignment (176-byte stride), the read-mostly bytes never
	 * share a cache line with them, so the CPUs reading a flow do not pull
	 * the line away from the CPUs counting it.
	 */
	struct tt_flow_key key; /* set before the slot is published, then constant */
	__u32 gen; /* odd: live; even: dead or never used */
	__u8 settled; /* established, no FIN: plain segments skip the lock */
	__u8 reached[2]; /* payload[dir] has been set */
	__u8 pad[5];
	struct tt_flow_info info; /* changed only under the slot's lock */
	__u64 bytes[2]; /* L3 bytes on the wire: IP header + TCP header + payload */
	__u64 packets[2]; /* wire segments (GSO/GRO counted as gso_segs) */
	/*
	 * Payload in sequence space: how far past info.base[dir] (ISN + 1, or the
	 * first sequence number of a flow caught mid-stream) the data reached.
	 * Retransmissions never move it, so it equals what the application sent
	 * however often the wire carried a byte. Written only by the CPU sending
	 * that direction (the sender's socket lock, or its RX queue).
	 */
	__u64 payload[2];
};

/*
 * Per-CPU counter cache: each CPU counts the settled flows it sees into its
 * own two-way set-associative entries (plain adds, no line shared with another CPU),
 * and moves an entry's counts into the slot ("folds" it, under the slot's
 * lock) when another flow takes the entry, and at the flow's close. Totals
 * are a slot plus the entries holding its (slot, gen), combined with
 * TT_ADD_COUNTS. The cache is an mmapable array of nr_cpus x TT_CACHE_ENTRIES
 * entries: 512 KiB per CPU, whatever the number of flows. Two ways per set:
 * with one, a fifth of 1,000 busy flows shared an entry with another and
 * moved counts into their slots on every other segment.
 */
#define TT_CACHE_WAYS 2
#define TT_CACHE_SETS 4096
#define TT_CACHE_ENTRIES (TT_CACHE_SETS * TT_CACHE_WAYS)

struct tt_cache_entry {
	__u32 slot;
	__u32 gen; /* the slot's gen when taken; 0: empty */
	__u32 hash; /* the flow's tt_key_hash: tells most misses without reading the slot */
	__u16 seq; /* odd while a fold moves the counts into the slot */
	__u8 reached[2]; /* payload[dir] has been set */
	__u64 bytes[2]; /* not yet in the slot */
	__u64 packets[2];
	__u64 payload[2]; /* this CPU's reach past the slot's base (combined with max) */
};

/*
 * The one rule that combines a flow's counts (a slot, the cache entries
 * holding it): bytes and packets add up; payload is a reach in sequence
 * space, so the furthest wins. A macro so every holder of bytes/packets/
 * payload[2] uses it: slots, cache entries, close events, user space's samples.
 */
#define TT_ADD_COUNTS(dst, src)                                                  \
	do {                                                                     \
		(dst)->bytes[0] += (src)->bytes[0];                              \
		(dst)->bytes[1] += (src)->bytes[1];                              \
		(dst)->packets[0] += (src)->packets[0];                          \
		(dst)->packets[1] += (src)->packets[1];                          \
		if ((src)->payload[0] > (dst)->payload[0])                       \
			(dst)->payload[0] = (src)->payload[0];                   \
		if ((src)->payload[1] > (dst)->payload[1])                       \
			(dst)->payload[1] = (src)->payload[1];                   \
	} while (0)

/* A flow's cache entries on every CPU: cpu * TT_CACHE_ENTRIES + this + way. */
TT_INLINE __u32 tt_cache_index(__u32 h)
{
	return ((h * 0x9E3779B1) >> 20 & (TT_CACHE_SETS - 1)) * TT_CACHE_WAYS;
}

struct tt_index_bucket {
	__u32 ent[TT_INDEX_WAYS];
};

/* The store lock: index inserts/removals, and the never-used slots' bump allocator. */
struct tt_store_lock {
	struct bpf_spin_lock lock;
	__u32 next_fresh; /* slots [0, next_fresh) have been used at least once */
};

struct tt_slot_lock {
	struct bpf_spin_lock lock;
};

/* Eviction requests: user space fills it, then runs tcptrack_evict (BPF_PROG_TEST_RUN). */
struct tt_evict_req {
	__u32 n;
	__u32 pad;
	__u64 done; /* set by the program: bit i = entry i was ended */
	struct {
		__u32 slot;
		__u32 gen;
	} e[TT_EVICT_BATCH];
};

/*
 * Where flows are placed by hash. The index (where a collision can keep a
 * connection out) hashes the whole key with SipHash-1-3 under a 128-bit key
 * drawn from getrandom() at every load (src/skeleton.cpp): without the key an
 * attacker cannot choose tuples that share buckets. The per-CPU counter cache
 * uses a cheaper hash seeded from the same key: a collision there only moves
 * counts into the slot sooner (a fold), it never loses or hides a flow.
 */
struct tt_hash_key {
	__u64 k0, k1;
};

#define TT_ROTL64(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define TT_SIPROUND(v0, v1, v2, v3)                                              \
	do {                                                                     \
		v0 += v1;                                                        \
		v1 = TT_ROTL64(v1, 13);                                          \
		v1 ^= v0;                                                        \
		v0 = TT_ROTL64(v0, 32);                                          \
		v2 += v3;                                                        \
		v3 = TT_ROTL64(v3, 16);                                          \
		v3 ^= v2;                                                        \
		v0 += v3;                                                        \
		v3 = TT_ROTL64(v3, 21);                                          \
		v3 ^= v0;                                                        \
		v2 += v1;                                                        \
		v1 = TT_ROTL64(v1, 17);                                          \
		v1 ^= v2;                                                        \
		v2 = TT_ROTL64(v2, 32);                                          \
	} while (0)

/*
 * SipHash-C-D (Aumasson and Bernstein) of the 44-byte key, words read
 * little-endian as the reference does; a macro so tests can check the 2-4
 * variant against the reference vectors with the very same code.
 */
#define TT_DEFINE_SIPHASH_KEY(name, C, D)                                                \
	TT_INLINE __u64 name(const struct tt_flow_key *k, const struct tt_hash_key *key) \
	{                                                                                \
		const __u32 *w = (const __u32 *)k;                                       \
		__u64 v0 = key->k0 ^ 0x736f6d6570736575ULL;                              \
		__u64 v1 = key->k1 ^ 0x646f72616e646f6dULL;                              \
		__u64 v2 = key->k0 ^ 0x6c7967656e657261ULL;                              \
		__u64 v3 = key->k1 ^ 0x7465646279746573ULL;                              \
		__u64 m;                                                                 \
		int i, r;                                                                \
                                                                                         \
		for (i = 0; i < 6; i++) {                                                \
			m = i < 5 ? ((__u64)w[2 * i] | (__u64)w[2 * i + 1] << 32)         \
				  : ((__u64)w[10] | (__u64)sizeof(*k) << 56);             \
			v3 ^= m;                                                         \
			for (r = 0; r < C; r++)                                          \
				TT_SIPROUND(v0, v1, v2, v3);                             \
			v0 ^= m;                                                         \
		}                                                                        \
		v2 ^= 0xff;                                                              \
		for (r = 0; r < D; r++)                                                  \
			TT_SIPROUND(v0, v1, v2, v3);                                     \
		return v0 ^ v1 ^ v2 ^ v3;                                                \
	}

TT_DEFINE_SIPHASH_KEY(tt_siphash13_key, 1, 3)

/* The index hash: buckets and tag (its output folded, never its input). */
TT_INLINE __u32 tt_index_hash(const struct tt_flow_key *k, const struct tt_hash_key *key)
{
	__u64 h = tt_siphash13_key(k, key);

	return (__u32)(h ^ (h >> 32));
}

/* The per-CPU cache's hash: word-wise multiply-xorshift and murmur3's finaliser. */
TT_INLINE __u32 tt_cache_hash(const struct tt_flow_key *k, const struct tt_hash_key *key)
{
	const __u32 *w = (const __u32 *)k;
	__u32 h = 0x811c9dc5 ^ (__u32)key->k1;
	int i;

	for (i = 0; i < (int)(sizeof(*k) / 4); i++) {
		h = (h ^ w[i]) * 0x9E3779B1;
		h ^= h >> 15;
	}
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* The key's two candidate buckets (mask = buckets - 1) and its tag. */
TT_INLINE __u32 tt_bucket1(__u32 h, __u32 mask)
{
	return h & mask;
}

TT_INLINE __u32 tt_bucket2(__u32 h, __u32 mask)
{
	return ((h >> 12) * 0x9E3779B1 + (h >> 24)) & mask;
}

TT_INLINE __u32 tt_index_entry(__u32 h, __u32 slot)
{
	return (h & 0xff000000) | (slot + 1);
}

TT_INLINE int tt_gen_live(__u32 gen)
{
	return gen & 1;
}

/* Indexes of the per-CPU stats array. */
enum tt_stat {
	TT_STAT_UNTRACKED = 0, /* connection openings (SYN) refused: no room (the sum of the two below) */
	TT_STAT_CLOSE_DROPPED = 1, /* ring buffer full: the close waits in its slot for user space */
	TT_STAT_REUSED = 2, /* tuple reused by a new SYN */
	TT_STAT_CLOSE_LOST = 3, /* a close that could be neither queued nor kept (no slot left) */
	TT_STAT_UNTRACKED_SEGS = 4, /* every refused segment that would have started a flow */
	TT_STAT_DISPLACED = 5, /* unassured flows displaced by a new connection */
	TT_STAT_UNTRACKED_FULL = 6, /* openings refused: store full, nothing displaceable in reach */
	TT_STAT_UNTRACKED_BUCKETS = 7, /* openings refused: both buckets full of assured flows */
	TT_STAT_COUNT = 8,
};

/* Returns < 0 if (a, pa) sorts before (b, pb). Addresses compared as 32-bit words. */
TT_INLINE int tt_endpoint_cmp(const __u8 *a, __u16 pa, const __u8 *b, __u16 pb)
{
	const __u32 *wa = (const __u32 *)a, *wb = (const __u32 *)b;
	int i;

	for (i = 0; i < 4; i++) {
		if (wa[i] != wb[i])
			return wa[i] < wb[i] ? -1 : 1;
	}
	if (pa != pb)
		return pa < pb ? -1 : 1;
	return 0;
}

/*
 * Key already filled as src = A, dst = B; swap so the lower endpoint is A.
 * Returns the packet's direction (TT_DIR_AB / TT_DIR_BA).
 */
TT_INLINE int tt_key_normalise(struct tt_flow_key *k)
{
	__u32 *wa = (__u32 *)k->addr_a, *wb = (__u32 *)k->addr_b, t;
	__u16 p;
	int i;

	if (tt_endpoint_cmp(k->addr_a, k->port_a, k->addr_b, k->port_b) <= 0)
		return TT_DIR_AB;
	for (i = 0; i < 4; i++) {
		t = wa[i];
		wa[i] = wb[i];
		wb[i] = t;
	}
	p = k->port_a;
	k->port_a = k->port_b;
	k->port_b = p;
	return TT_DIR_BA;
}

/*
 * Moves one CPU's payload reach for a segment whose data ends at `end`.
 * Offsets from base compare modulo 2^32, so the reach grows past 4 GiB; a
 * segment at or before the reach (a retransmission) changes nothing.
 * Returns 1 once the reach is set.
 */
TT_INLINE int tt_payload_advance(__u64 *reach, int known, __u32 base, __u32 end)
{
	__u32 off = end - base;
	__s32 ahead;

	if (!known) {
		if ((__s32)off <= 0) /* data from before the base: not ours to count */
			return 0;
		*reach = off;
		return 1;
	}
	ahead = (__s32)(off - (__u32)*reach);
	if (ahead > 0)
		*reach += (__u32)ahead;
	return 1;
}

/* Records where a side's payload starts, from the first segment seen from it. */
TT_INLINE void tt_note_base(struct tt_flow_info *f, __u8 dir, __u8 tcp_flags, __u32 seq)
{
	if ((f->base_mask & (1 << dir)) || (tcp_flags & TT_TCP_RST))
		return;
	seq += (tcp_flags & TT_TCP_SYN) ? 1 : 0; /* a SYN uses one number */
	/* Constant indexes: f may be on the BPF stack, where clang turns a variable
	 * index into pointer arithmetic the verifier rejects. */
	if (dir)
		f->base[1] = seq;
	else
		f->base[0] = seq;
	f->base_mask |= 1 << dir;
}

/* Should a segment of an untracked tuple start tracking it? */
TT_INLINE int tt_starts_flow(__u8 tcp_flags, __u32 payload)
{
	/*
	 * Lone ACKs, FINs and RSTs after a close must not resurrect it, and
	 * neither may a retransmitted last data segment that carries the FIN
	 * (seen on a slow guest: it left a CLOSING phantom until the idle timeout).
	 */
	if (tcp_flags & (TT_TCP_RST | TT_TCP_FIN))
		return 0;
	return (tcp_flags & TT_TCP_SYN) || payload > 0;
}

/* Fresh lifecycle for a tuple first seen with this segment. */
TT_INLINE void tt_info_init(struct tt_flow_info *f, __u8 dir, __u8 tcp_flags, __u32 seq,
			    __u64 now, int ingress)
{
	__builtin_memset(f, 0, sizeof(*f));
	f->first_ns = now;
	if ((tcp_flags & (TT_TCP_SYN | TT_TCP_ACK)) == TT_TCP_SYN) {
		f->state = TT_SYN_SENT;
		f->client = dir;
		f->syn_ns = now;
		f->syn_seq = seq;
		f->flags = TT_F_SYN_SEEN | (ingress ? 0 : TT_F_LOCAL_CLIENT);
	} else if (tcp_flags & TT_TCP_SYN) { /* SYN-ACK: missed the SYN */
		f->state = TT_SYN_RECV;
		f->client = dir ^ 1;
		f->synack_ns = now;
		f->flags = TT_F_HS_SEEN | (ingress ? TT_F_LOCAL_CLIENT : 0);
	} else {
		f->state = TT_ESTABLISHED;
		f->client = dir;
		f->flags = TT_F_MIDSTREAM;
	}
	tt_note_base(f, dir, tcp_flags, seq);
}

/* Actions the caller takes after tt_lifecycle_step. */
#define TT_ACT_SETTLED 0x1 /* established and no FIN: plain segments may skip the state map */
#define TT_ACT_FIN 0x2 /* first FIN: every CPU must look at the state map again */
#define TT_ACT_FINISHED 0x4 /* connection over: report and delete */
#define TT_ACT_REUSE 0x8 /* new SYN on a used tuple: report the old one, then re-init */

/*
 * Feed one segment (from side `dir`) to the lifecycle. Pure: no helpers, so
 * it can run under the state's spin lock. The caller already counted bytes.
 */
TT_INLINE __u32 tt_lifecycle_step(struct tt_flow_info *f, __u8 dir, __u8 tcp_flags, __u32 seq,
				  __u32 ack_seq, __u32 payload, __u64 now)
{
	__u8 peer = dir ^ 1;
	__u32 act = 0;

	if (f->flags & TT_F_DONE) /* stragglers change nothing; a new SYN starts over */
		return (tcp_flags & (TT_TCP_SYN | TT_TCP_ACK)) == TT_TCP_SYN ? TT_ACT_REUSE : 0;
	if ((tcp_flags & (TT_TCP_SYN | TT_TCP_ACK)) != TT_TCP_SYN)
		tt_note_base(f, dir, tcp_flags, seq);

	if (tcp_flags & TT_TCP_SYN) {
		if (!(tcp_flags & TT_TCP_ACK)) {
			/* Retransmitted SYN of the same attempt, or a new connection. */
			if (f->state <= TT_SYN_RECV && dir == f->client &&
			    (!(f->flags & TT_F_SYN_SEEN) || f->syn_seq == seq))
				return 0;
			return TT_ACT_REUSE;
		}
		/* SYN-ACK from the server side. */
		if (dir != f->client && f->state == TT_SYN_SENT) {
			f->state = TT_SYN_RECV;
			f->synack_ns = now;
			f->flags |= TT_F_HS_SEEN;
		}
		return 0;
	}

	if (tcp_flags & TT_TCP_RST) {
		f->state = TT_RESET;
		f->close_ns = now;
		f->flags |= TT_F_DONE;
		return TT_ACT_FINISHED;
	}

	if ((tcp_flags & TT_TCP_ACK) && f->state == TT_SYN_RECV && dir == f->client) {
		f->state = TT_ESTABLISHED;
		f->ack_ns = now;
		/* Assured when it acknowledges the SYN-ACK: at or up to 1 MiB past
		 * the server's ISN + 1 (data the server sent early), which a blind
		 * ACK from a spoofed source hits once in 4096 tries (and the server
		 * answers a wrong one with a RST, which ends the flow anyway). */
		if (!(f->base_mask & (1 << peer)) || ack_seq - f->base[peer & 1] < (1u << 20))
			f->flags |= TT_F_ASSURED;
	} else if (dir != f->client && f->state >= TT_ESTABLISHED) {
		/* The side that did not open it speaks after the handshake (no SYN,
		 * no RST here): the flow is real both ways. */
		f->flags |= TT_F_ASSURED;
	}

	/* An ACK that covers the peer's FIN (FIN occupies one sequence number). */
	if ((tcp_flags & TT_TCP_ACK) && (f->fin_mask & (1 << peer)) &&
	    (__s32)(ack_seq - (f->fin_seq[peer] + 1)) >= 0)
		f->ack_mask |= 1 << peer;

	if ((tcp_flags & TT_TCP_FIN) && !(f->fin_mask & (1 << dir))) {
		if (!f->fin_mask)
			act |= TT_ACT_FIN;
		f->fin_mask |= 1 << dir;
		f->fin_seq[dir] = seq + payload;
		if (f->fin_mask == 3) {
			f->state = TT_CLOSED;
			f->close_ns = now;
		} else {
			f->state = TT_CLOSING;
		}
	}

	if (f->fin_mask == 3 && f->ack_mask == 3) {
		f->flags |= TT_F_DONE;
		return act | TT_ACT_FINISHED;
	}
	/* Settled CPUs count payload on their own, so both bases must be known;
	 * settled flows are assured, so the per-CPU cache never holds one that
	 * may be displaced. */
	if (f->state == TT_ESTABLISHED && !f->fin_mask && f->base_mask == 3 &&
	    (f->flags & TT_F_ASSURED))
		act |= TT_ACT_SETTLED;
	return act;
}

/*
 * The capture filter ("port 443 and not net 10.0.0.0/8"), compiled by user
 * space (src/filter.cpp) into a postfix program the classifiers run on the
 * normalised key before they touch any flow map. Leaves test one side of the
 * key; AND/OR/NOT combine the results on a one-bit-per-entry stack held in a
 * u64. A connection's packets all share one normalised key, so a connection is
 * either counted whole or not at all.
 */
#define TT_FILTER_MAX_OPS 64

enum tt_filter_code {
	TT_FOP_ADDR = 1, /* (addr & mask) == net, IPv4 or IPv6 */
	TT_FOP_PORT, /* lo <= port <= hi */
	TT_FOP_AND,
	TT_FOP_OR,
	TT_FOP_NOT,
};

/* Which end of the normalised key a leaf tests: a, b, or either. */
#define TT_FSIDE_A 1
#define TT_FSIDE_B 2

struct tt_filter_op {
	__u8 code; /* enum tt_filter_code */
	__u8 side; /* TT_FSIDE_A | TT_FSIDE_B */
	__u8 family; /* TT_FAMILY_INET / TT_FAMILY_INET6 for TT_FOP_ADDR */
	__u8 pad;
	__u16 lo, hi; /* ports, host order */
	__u32 net[4]; /* network order, already masked */
	__u32 mask[4];
};

struct tt_filter {
	__u32 n; /* ops in use; 0 = no filter */
	__u32 pad;
	struct tt_filter_op op[TT_FILTER_MAX_OPS];
};

/*
 * The leaves are arithmetic, not chains of && and ||: each compare is a branch
 * in BPF, and the verifier walks every path of the loop body once per op.
 * Nonzero when the address differs from the leaf's network.
 */
TT_INLINE __u32 tt_filter_addr_miss(const struct tt_filter_op *o, const __u8 *addr)
{
	__u32 a[4];

	__builtin_memcpy(a, addr, sizeof(a));
	return ((a[0] & o->mask[0]) ^ o->net[0]) | ((a[1] & o->mask[1]) ^ o->net[1]) |
	       ((a[2] & o->mask[2]) ^ o->net[2]) | ((a[3] & o->mask[3]) ^ o->net[3]);
}

TT_INLINE __u32 tt_port_host(__u16 be)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return (__u16)((be >> 8) | (be << 8));
#else
	return be;
#endif
}

/* 1 when the port (host order) is outside [lo, hi]. */
TT_INLINE __u64 tt_filter_port_miss(const struct tt_filter_op *o, __u32 p)
{
	return ((__u64)(__u32)(o->hi - o->lo) - (__u64)(__u32)(p - o->lo)) >> 63;
}

/* 1 when the connection with this normalised key passes the filter. */
TT_INLINE int tt_filter_match(const struct tt_filter *f, const struct tt_flow_key *k)
{
	__u32 pa = tt_port_host(k->port_a), pb = tt_port_host(k->port_b);
	__u64 stack = 0;
	__u32 i;

	/* A loop, not 64 copies: the verifier then checks one body per op. */
#ifdef __clang__
#pragma clang loop unroll(disable)
#endif
	for (i = 0; i < TT_FILTER_MAX_OPS; i++) {
		const struct tt_filter_op *o = &f->op[i];
		/* A side the leaf does not test counts as a miss on that side. */
		__u64 skip_a = (o->side & TT_FSIDE_A) ^ TT_FSIDE_A;
		__u64 skip_b = ((o->side & TT_FSIDE_B) ^ TT_FSIDE_B) >> 1;

		if (i >= f->n)
			break;
		switch (o->code) {
		case TT_FOP_ADDR: {
			__u64 miss_a = tt_filter_addr_miss(o, k->addr_a) | skip_a;
			__u64 miss_b = tt_filter_addr_miss(o, k->addr_b) | skip_b;

			stack = stack << 1 |
				(((__u64)(o->family ^ k->family) | miss_a * miss_b) == 0);
			break;
		}
		case TT_FOP_PORT:
			stack = stack << 1 | (((tt_filter_port_miss(o, pa) | skip_a) &
					       (tt_filter_port_miss(o, pb) | skip_b)) ^ 1);
			break;
		case TT_FOP_AND:
			stack = (stack >> 2) << 1 | (stack & (stack >> 1) & 1);
			break;
		case TT_FOP_OR:
			stack = (stack >> 2) << 1 | ((stack | (stack >> 1)) & 1);
			break;
		case TT_FOP_NOT:
			stack ^= 1;
			break;
		}
	}
	return f->n == 0 || (stack & 1);
}

#endif /* TCPTRACK_ABI_H */
