// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A measured alternative for the counter store (issue 9), hot path only: not
 * used by tcptrack. Flows live in fixed slots of an mmapable array; a per-CPU
 * direct-mapped cache, indexed by a cheap hash of the key, remembers which
 * slot a key uses, so an established segment needs no hash-map lookup. Two
 * ways of counting on a cache hit, as two programs:
 *  - ttproto_sh_*: atomic adds into the shared slot (no per-CPU state);
 *  - ttproto_dl_*: plain adds into the per-CPU cache entry ("deltas"), merged
 *                  into the slot only when the entry is taken by another flow.
 * A cache miss looks the key up in `slot_index` (key -> slot) and refills the entry.
 * Everything is 5.10: no cmpxchg, no cross-CPU reads. An unknown key takes
 * the next free slot (single-threaded here: the real store needs a lock or a
 * free queue). Lifecycle, payload reach and closes are left out, so these are
 * lower bounds for the hot path; bench/datapath_micro times settled data
 * segments after a warm-up run per flow.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tcptrack/abi.h"
#include "lib/parse.h"

#define TCX_NEXT (-1)
#define PROTO_CACHE 8192 /* entries per CPU: 512 KiB */

struct proto_slot {
	struct tt_flow_key key;
	__u32 gen;
	__u64 bytes[2];
	__u64 packets[2];
	__u64 payload[2];
};

struct proto_entry {
	struct tt_flow_key key;
	__u32 slot;
	__u32 gen;
	__u32 valid;
	__u64 bytes[2]; /* ttproto_delta: counts not yet in the slot */
	__u64 packets[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct proto_slot);
} slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tt_flow_key);
	__type(value, __u32);
} slot_index SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PROTO_CACHE);
	__type(key, __u32);
	__type(value, struct proto_entry);
} cache SEC(".maps");

__u32 proto_next; /* next unused slot */

/* The slot of this key, allocating one for a key never seen. */
static __always_inline struct proto_slot *proto_find(const struct tt_flow_key *key, __u32 *out)
{
	struct proto_slot *s;
	__u32 *slot, n;

	slot = bpf_map_lookup_elem(&slot_index, key);
	if (slot) {
		*out = *slot;
		return bpf_map_lookup_elem(&slots, slot);
	}
	n = proto_next;
	s = bpf_map_lookup_elem(&slots, &n);
	if (!s || bpf_map_update_elem(&slot_index, key, &n, BPF_NOEXIST))
		return NULL;
	proto_next = n + 1;
	s->key = *key;
	s->gen += 1;
	*out = n;
	return s;
}

static __always_inline __u32 proto_hash(const struct tt_flow_key *k)
{
	const __u32 *w = (const __u32 *)k;
	__u32 h = 0x811c9dc5;
	int i;

	for (i = 0; i < sizeof(*k) / 4; i++)
		h = (h ^ w[i]) * 0x9E3779B1;
	return h ^ (h >> 16);
}

static __always_inline int proto_key_eq(const struct tt_flow_key *a, const struct tt_flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
	int i;

	/* 44 bytes: five 8-byte words and one 4-byte word. */
	for (i = 0; i < 5; i++)
		if (x[i] != y[i])
			return 0;
	return ((const __u32 *)a)[10] == ((const __u32 *)b)[10];
}

static __always_inline int proto_handle(struct __sk_buff *skb, const int delta)
{
	struct proto_entry *e;
	struct proto_slot *s;
	struct tt_pkt p;
	__u32 idx, slot;
	int dir;

	if (tt_parse(skb, &p, 1) < 0)
		return TCX_NEXT;
	p.key.ifindex = skb->ifindex;
	dir = tt_key_normalise(&p.key) & 1;
	idx = proto_hash(&p.key) & (PROTO_CACHE - 1);
	e = bpf_map_lookup_elem(&cache, &idx);
	if (!e)
		return TCX_NEXT;
	if (!e->valid || !proto_key_eq(&e->key, &p.key)) {
		/* Miss: give the entry to this flow (flushing the old flow's deltas). */
		if (delta && e->valid) {
			s = bpf_map_lookup_elem(&slots, &e->slot);
			if (s && s->gen == e->gen) {
				__sync_fetch_and_add(&s->bytes[0], e->bytes[0]);
				__sync_fetch_and_add(&s->bytes[1], e->bytes[1]);
				__sync_fetch_and_add(&s->packets[0], e->packets[0]);
				__sync_fetch_and_add(&s->packets[1], e->packets[1]);
			}
		}
		s = proto_find(&p.key, &slot);
		if (!s)
			return TCX_NEXT;
		e->key = p.key;
		e->slot = slot;
		e->gen = s->gen;
		e->valid = 1;
		e->bytes[0] = e->bytes[1] = e->packets[0] = e->packets[1] = 0;
	}
	if (delta) {
		e->bytes[dir] += p.l3_bytes;
		e->packets[dir] += p.segs;
		return TCX_NEXT;
	}
	s = bpf_map_lookup_elem(&slots, &e->slot);
	if (!s || s->gen != e->gen)
		return TCX_NEXT;
	__sync_fetch_and_add(&s->bytes[dir], p.l3_bytes);
	__sync_fetch_and_add(&s->packets[dir], p.segs);
	return TCX_NEXT;
}

/* Ingress and egress variants: TCX attach types are per program. */
SEC("tc")
int ttproto_sh_in(struct __sk_buff *skb)
{
	return proto_handle(skb, 0);
}

SEC("tc")
int ttproto_sh_eg(struct __sk_buff *skb)
{
	return proto_handle(skb, 0);
}

SEC("tc")
int ttproto_dl_in(struct __sk_buff *skb)
{
	return proto_handle(skb, 1);
}

SEC("tc")
int ttproto_dl_eg(struct __sk_buff *skb)
{
	return proto_handle(skb, 1);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
