/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The slot store's layout (slots, index buckets, per-CPU cache entries, locks)
 * and where flows are placed in it (the keyed SipHash index hash, the cache's
 * hash, buckets, tags, generations), plus TT_ADD_COUNTS, the rule that combines
 * a flow's counts. Shared by bpf/lib/ (store.h, cache.h, close.h, maps.h) and
 * user space's reader of the store (src/datapath/), and by the unit tests.
 */
#ifndef TCPTRACK_STORE_H
#define TCPTRACK_STORE_H

#include "tcptrack/abi.h"

/*
 * The counter store (bpf/lib/maps.h), read by user space through mmap:
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
	/* The low byte of tt_filter_sel (bpf/lib/filter.h) when this flow last
	 * passed the capture filter: while it is the current one, its segments
	 * skip the filter (a flow is kept or not by its key alone). 0: never
	 * (no selector has a low byte of 0). */
	__u8 fsel;
	/* Bit (cpu % 32): that CPU may hold a cache entry of this generation, so
	 * a close folds only those CPUs' entries, not every CPU's. Set under the
	 * slot's lock before a CPU's first entry names the flow (written once per
	 * CPU, not per segment), cleared for a new flow. */
	__u32 cpus;
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
 * TT_ADD_COUNTS. The cache is an mmapable array of nr_cpus x (WAYS << bits)
 * entries, bits set at load from --max-flows and the CPU count (src/datapath
 * StoreGeometry): a CPU gets about as many entries as flows per CPU, from
 * 128 (8 KiB) to 8,192 (512 KiB), so neither memory nor the collector's scan
 * grows with CPUs a host's flows do not need. Two ways per set: with one, a
 * fifth of 1,000 busy flows shared an entry with another and moved counts
 * into their slots on every other segment.
 */
#define TT_CACHE_WAYS 2
#define TT_MAX_CPUS 1024 /* bound of the datapath's loops over CPUs: the loader refuses more */
#define TT_CACHE_SET_BITS_MIN 6 /* 64 sets: 128 entries per CPU */
#define TT_CACHE_SET_BITS_MAX 12 /* 4,096 sets: 8,192 entries per CPU */

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
#define TT_ADD_COUNTS(dst, src)                                \
	do {                                                   \
		(dst)->bytes[0] += (src)->bytes[0];            \
		(dst)->bytes[1] += (src)->bytes[1];            \
		(dst)->packets[0] += (src)->packets[0];        \
		(dst)->packets[1] += (src)->packets[1];        \
		if ((src)->payload[0] > (dst)->payload[0])     \
			(dst)->payload[0] = (src)->payload[0]; \
		if ((src)->payload[1] > (dst)->payload[1])     \
			(dst)->payload[1] = (src)->payload[1]; \
	} while (0)

/* A flow's cache entries on every CPU: cpu * (WAYS << set_bits) + this + way. */
TT_INLINE __u32 tt_cache_index(__u32 h, __u32 set_bits)
{
	return ((h * 0x9E3779B1) >> (32 - set_bits)) * TT_CACHE_WAYS;
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

/*
 * Where flows are placed by hash. The index (where a collision can keep a
 * connection out) hashes the whole key with SipHash-1-3 under a 128-bit key
 * drawn from getrandom() at every load (src/datapath/skeleton.cpp): without the key an
 * attacker cannot choose tuples that share buckets. The per-CPU counter cache
 * uses a cheaper hash seeded from the same key: a collision there only moves
 * counts into the slot sooner (a fold), it never loses or hides a flow.
 */
struct tt_hash_key {
	__u64 k0, k1;
};

#define TT_ROTL64(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define TT_SIPROUND(v0, v1, v2, v3)     \
	do {                            \
		v0 += v1;               \
		v1 = TT_ROTL64(v1, 13); \
		v1 ^= v0;               \
		v0 = TT_ROTL64(v0, 32); \
		v2 += v3;               \
		v3 = TT_ROTL64(v3, 16); \
		v3 ^= v2;               \
		v0 += v3;               \
		v3 = TT_ROTL64(v3, 21); \
		v3 ^= v0;               \
		v2 += v1;               \
		v1 = TT_ROTL64(v1, 17); \
		v1 ^= v2;               \
		v2 = TT_ROTL64(v2, 32); \
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
			m = i < 5 ? ((__u64)w[2 * i] | (__u64)w[2 * i + 1] << 32)        \
				  : ((__u64)w[10] | (__u64)sizeof(*k) << 56);            \
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

TT_STATIC_ASSERT(sizeof(struct tt_slot) == 176, "slot layout is shared with user space");
TT_STATIC_ASSERT(sizeof(struct tt_index_bucket) == 64, "an index bucket is one cache line");
TT_STATIC_ASSERT(sizeof(struct tt_cache_entry) == 64,
		 "cache entry layout is shared with user space");
TT_STATIC_ASSERT(sizeof(struct tt_hash_key) == 16, "the hash key is 128 bits");

#endif /* TCPTRACK_STORE_H */
