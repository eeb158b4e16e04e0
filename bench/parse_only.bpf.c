// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The parse-only classifier: everything tcptrack does to a packet before its
 * first map access, and nothing after. It runs tcptrack's own parser
 * (bpf/lib/parse.h: Ethernet with up to two VLAN tags, IPv4 with options or IPv6
 * with extension headers, TCP, with the same bounds checks), sets the key's
 * ifindex and normalises the key (include/tcptrack/abi.h), then returns
 * TCX_NEXT without touching any map. Attached next to tcptrack and the empty
 * classifier (empty.bpf.c), tcptrack - parse-only is the cost of the memo,
 * the counter store and the lifecycle, and parse-only - empty the parse.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tcptrack/abi.h"
#include "lib/parse.h"

#define TCX_NEXT (-1)

/* The parse result is used by nothing: keep the compiler from dropping the work. */
static __always_inline int ttbench_parse(struct __sk_buff *skb)
{
	struct tt_pkt p;
	int dir;

	if (tt_parse(skb, &p, 1) < 0)
		return TCX_NEXT;
	p.key.ifindex = skb->ifindex;
	dir = tt_key_normalise(&p.key);
	asm volatile("" : : "r"(dir), "r"(&p) : "memory");
	return TCX_NEXT;
}

SEC("tc")
int ttbench_po_in(struct __sk_buff *skb)
{
	return ttbench_parse(skb);
}

SEC("tc")
int ttbench_po_eg(struct __sk_buff *skb)
{
	return ttbench_parse(skb);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
