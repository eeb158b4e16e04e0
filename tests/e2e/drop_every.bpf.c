// SPDX-License-Identifier: MIT
/*
 * A test-only TC classifier for e2e_health (health_test.py): deterministic
 * loss on a kernel without sch_netem. On the receiver's ingress it drops
 * every EVERY-th TCP skb that carries payload to port PORT (IPv4 or IPv6,
 * no extension headers), at most MAX_DROPS of them, and passes everything
 * else (TC_ACT_UNSPEC). An skb may be a GSO train of several wire segments
 * (veth keeps the sender's TSO trains whole): the whole train is dropped.
 *
 * Counters (array map ttd_count): [0] data skbs seen, [1] skbs dropped,
 * [2] wire segments dropped (gso_segs), [3] data wire segments seen.
 *
 * Built at test time with the parameters as macros:
 *   clang -O2 -g -target bpf -DPORT=5601 -DEVERY=50 -DMAX_DROPS=20 \
 *         -c drop_every.bpf.c -o drop_every.o
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef PORT
#define PORT 5601
#endif
#ifndef EVERY
#define EVERY 50
#endif
#ifndef MAX_DROPS
#define MAX_DROPS 20
#endif

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} ttd_count SEC(".maps");

static __always_inline __u64 *counter(__u32 k)
{
	return bpf_map_lookup_elem(&ttd_count, &k);
}

SEC("tc")
int ttd_drop_every(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct tcphdr *tcp;
	__u32 l4_off, hdrs;
	__u64 *seen, *dropped, *segs_dropped, *segs_seen, n;
	__u32 segs;

	if ((void *)(eth + 1) > end)
		return TC_ACT_UNSPEC;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_TCP || ip->ihl != 5)
			return TC_ACT_UNSPEC;
		tcp = (void *)(ip + 1);
		l4_off = sizeof(*eth) + sizeof(*ip);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP)
			return TC_ACT_UNSPEC;
		tcp = (void *)(ip6 + 1);
		l4_off = sizeof(*eth) + sizeof(*ip6);
	} else {
		return TC_ACT_UNSPEC;
	}
	if ((void *)(tcp + 1) > end)
		return TC_ACT_UNSPEC;
	if (tcp->dest != bpf_htons(PORT) || tcp->syn || tcp->rst)
		return TC_ACT_UNSPEC;
	/* Payload: the skb's length past the TCP header (a GSO train's whole). */
	hdrs = l4_off + tcp->doff * 4;
	if (skb->len <= hdrs)
		return TC_ACT_UNSPEC;
	segs = skb->gso_segs > 1 ? skb->gso_segs : 1;

	seen = counter(0);
	dropped = counter(1);
	segs_dropped = counter(2);
	segs_seen = counter(3);
	if (!seen || !dropped || !segs_dropped || !segs_seen)
		return TC_ACT_UNSPEC;
	n = __sync_fetch_and_add(seen, 1) + 1;
	__sync_fetch_and_add(segs_seen, segs);
	if (n % EVERY != 0 || *dropped >= MAX_DROPS)
		return TC_ACT_UNSPEC;
	__sync_fetch_and_add(dropped, 1);
	__sync_fetch_and_add(segs_dropped, segs);
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
