// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The index hash's candidates, each on tcptrack's parsed and normalised key
 * (the parse-only classifier plus one hash): bench/datapath_micro times them
 * against parse-only to choose the cheapest that an attacker cannot predict
 * without the key (issue 16).
 *  - mix:   the word-wise multiply-xorshift + murmur3 finaliser, seeded
 *           (tt_cache_hash): cheap, but a seed does not stop collisions that
 *           hold for every seed (as murmur's are known to), so only for the cache;
 *  - sip13: SipHash-1-3 over the 44-byte key in 64-bit words (tt_index_hash);
 *  - hsip13: HalfSipHash-1-3, the same in 32-bit words (11 of them).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tcptrack/abi.h"
#include "tcptrack/store.h"
#include "lib/parse.h"

#define TCX_NEXT (-1)

const volatile struct tt_hash_key ttbench_key = {};

#define ROTL32(x, b) (((x) << (b)) | ((x) >> (32 - (b))))
#define HSIPROUND(v0, v1, v2, v3)    \
	do {                         \
		v0 += v1;            \
		v1 = ROTL32(v1, 5);  \
		v1 ^= v0;            \
		v0 = ROTL32(v0, 16); \
		v2 += v3;            \
		v3 = ROTL32(v3, 8);  \
		v3 ^= v2;            \
		v0 += v3;            \
		v3 = ROTL32(v3, 7);  \
		v3 ^= v0;            \
		v2 += v1;            \
		v1 = ROTL32(v1, 13); \
		v1 ^= v2;            \
		v2 = ROTL32(v2, 16); \
	} while (0)

static __always_inline __u32 hsiphash13(const struct tt_flow_key *k, const struct tt_hash_key *key)
{
	const __u32 *w = (const __u32 *)k;
	__u32 v0 = (__u32)key->k0, v1 = (__u32)key->k1;
	__u32 v2 = 0x6c796765 ^ v0, v3 = 0x74656462 ^ v1, m;
	int i;

	for (i = 0; i < 12; i++) {
		m = i < 11 ? w[i] : (__u32)sizeof(*k) << 24;
		v3 ^= m;
		HSIPROUND(v0, v1, v2, v3);
		v0 ^= m;
	}
	v2 ^= 0xff;
	HSIPROUND(v0, v1, v2, v3);
	HSIPROUND(v0, v1, v2, v3);
	HSIPROUND(v0, v1, v2, v3);
	return v1 ^ v3;
}

/* 0: parse only, 1: mix, 2: sip13, 3: hsip13. The result goes nowhere but must be computed. */
static __always_inline int ttbench_hash(struct __sk_buff *skb, int which)
{
	const struct tt_hash_key key = {ttbench_key.k0, ttbench_key.k1};
	struct tt_pkt p;
	__u32 h = 0;
	int dir;

	if (tt_parse(skb, &p, 1) < 0)
		return TCX_NEXT;
	p.key.ifindex = skb->ifindex;
	dir = tt_key_normalise(&p.key);
	if (which == 1)
		h = tt_cache_hash(&p.key, &key);
	else if (which == 2)
		h = tt_index_hash(&p.key, &key);
	else if (which == 3)
		h = hsiphash13(&p.key, &key);
	asm volatile("" : : "r"(dir), "r"(h), "r"(&p) : "memory");
	return TCX_NEXT;
}

SEC("tc")
int ttbench_h_none(struct __sk_buff *skb)
{
	return ttbench_hash(skb, 0);
}

SEC("tc")
int ttbench_h_mix(struct __sk_buff *skb)
{
	return ttbench_hash(skb, 1);
}

SEC("tc")
int ttbench_h_sip13(struct __sk_buff *skb)
{
	return ttbench_hash(skb, 2);
}

SEC("tc")
int ttbench_h_hsip13(struct __sk_buff *skb)
{
	return ttbench_hash(skb, 3);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
