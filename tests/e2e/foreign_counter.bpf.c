// SPDX-License-Identifier: MIT
/*
 * A "foreign" TC classifier for the tcptrack safety tests: it counts the UDP
 * datagrams to or from port 9999 (IPv4 or IPv6, no extension headers) that it
 * sees into a one-slot array map and returns TC_ACT_UNSPEC, so the filters
 * after it (tcptrack's, when attached behind it) see the same traffic.
 * Built at test time: clang -O2 -g -target bpf -c foreign_counter.bpf.c
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define PORT 9999

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ttf_count SEC(".maps");

SEC("tc")
int ttf_count_udp(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct udphdr *udp;
	__u32 key = 0;
	__u64 *v;

	if ((void *)(eth + 1) > end)
		return TC_ACT_UNSPEC;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_UDP || ip->ihl != 5)
			return TC_ACT_UNSPEC;
		udp = (void *)(ip + 1);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_UDP)
			return TC_ACT_UNSPEC;
		udp = (void *)(ip6 + 1);
	} else {
		return TC_ACT_UNSPEC;
	}
	if ((void *)(udp + 1) > end)
		return TC_ACT_UNSPEC;
	if (udp->dest != bpf_htons(PORT) && udp->source != bpf_htons(PORT))
		return TC_ACT_UNSPEC;
	v = bpf_map_lookup_elem(&ttf_count, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
