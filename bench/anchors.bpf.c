// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Two anchors for issue 20, measured beside tcptrack in bench/run.sh section 1
 * (attached by floor_attach --anchor seed|line). Both run tcptrack's own
 * parser and key normalisation (bpf/lib/parse.h, as parse-only does), then:
 *
 *  - seed: the naive design tcptrack grew from. One shared BPF hash map keyed
 *    by the flow, looked up (inserted when missing) on every segment, two
 *    atomic adds. No lifecycle, no payload, no health; exact only while the
 *    map has room.
 *  - line: the one-line floor. A per-CPU direct-mapped table of 64-byte
 *    entries holding the key and 32-bit counters each way: one line of flow
 *    state per segment and nothing else (a colliding flow just takes the line:
 *    lossy). What per-flow state costs at the least on this machine.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tcptrack/abi.h"
#include "tcptrack/store.h"
#include "lib/parse.h"

#define TCX_NEXT (-1)
#define TTBENCH_LINE_BITS 13 /* 8,192 entries per CPU: tcptrack's largest per-CPU cache */

struct seed_counts {
	__u64 bytes[2];
	__u64 packets[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); /* floor_attach sets it to tcptrack's --max-flows */
	__type(key, struct tt_flow_key);
	__type(value, struct seed_counts);
} seed_flows SEC(".maps");

struct line {
	struct tt_flow_key key;
	__u32 bytes[2];
	__u32 packets[2];
	__u32 pad;
};
TT_STATIC_ASSERT(sizeof(struct line) == 64, "one cache line per flow");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1 << TTBENCH_LINE_BITS);
	__type(key, __u32);
	__type(value, struct line);
} lines SEC(".maps");

/* As tcptrack compares keys (bpf/lib/store.h tt_key_eq): five 8-byte words and one 4-byte word. */
static __always_inline int ttbench_key_eq(const struct tt_flow_key *a, const struct tt_flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	if ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]) | (x[4] ^ y[4]))
		return 0;
	return ((const __u32 *)a)[10] == ((const __u32 *)b)[10];
}

static __always_inline int ttbench_seed(struct __sk_buff *skb)
{
	struct seed_counts *v, zero = {};
	struct tt_pkt p;
	int dir;

	if (tt_parse(skb, &p, 1) < 0)
		return TCX_NEXT;
	p.key.ifindex = skb->ifindex;
	dir = tt_key_normalise(&p.key) & 1;
	v = bpf_map_lookup_elem(&seed_flows, &p.key);
	if (!v) {
		bpf_map_update_elem(&seed_flows, &p.key, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&seed_flows, &p.key);
		if (!v)
			return TCX_NEXT; /* full */
	}
	__sync_fetch_and_add(&v->bytes[dir], p.l3_bytes);
	__sync_fetch_and_add(&v->packets[dir], p.segs);
	return TCX_NEXT;
}

static __always_inline int ttbench_line(struct __sk_buff *skb)
{
	/* A fixed key: flows placed by tcptrack's cheap cache hash. */
	struct tt_hash_key k = {0x736f6d6570736575ull, 0x646f72616e646f6dull};
	struct tt_pkt p;
	struct line *e;
	__u32 idx;
	int dir;

	if (tt_parse(skb, &p, 1) < 0)
		return TCX_NEXT;
	p.key.ifindex = skb->ifindex;
	dir = tt_key_normalise(&p.key) & 1;
	idx = (tt_cache_hash(&p.key, &k) * 0x9E3779B1) >> (32 - TTBENCH_LINE_BITS);
	e = bpf_map_lookup_elem(&lines, &idx);
	if (!e)
		return TCX_NEXT;
	if (!ttbench_key_eq(&e->key, &p.key)) { /* another flow had the line: take it */
		e->key = p.key;
		e->bytes[0] = e->bytes[1] = 0;
		e->packets[0] = e->packets[1] = 0;
	}
	e->bytes[dir] += p.l3_bytes;
	e->packets[dir] += p.segs;
	return TCX_NEXT;
}

SEC("tc")
int ttbench_sd_in(struct __sk_buff *skb)
{
	return ttbench_seed(skb);
}

SEC("tc")
int ttbench_sd_eg(struct __sk_buff *skb)
{
	return ttbench_seed(skb);
}

SEC("tc")
int ttbench_ln_in(struct __sk_buff *skb)
{
	return ttbench_line(skb);
}

SEC("tc")
int ttbench_ln_eg(struct __sk_buff *skb)
{
	return ttbench_line(skb);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
