/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Packet parsing for the TC classifiers: L2 (Ethernet, 802.1Q/802.1ad, or no
 * L2 header), L3 (IPv4 with options, IPv6 with extension headers), L4 (TCP).
 * Anything malformed, truncated or not TCP returns < 0 and is left alone.
 */
#ifndef TCPTRACK_PARSE_H
#define TCPTRACK_PARSE_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include "tcptrack/abi.h"
/* The datapath's clock for the health step, which a segment carries (struct tt_seg). */
#define TT_HEALTH_CLOCK() bpf_ktime_get_ns()

/*
 * The same clock as of the last tick, for the probe rate limit, which reads
 * it on every new TSval with data: bpf_ktime_get_ns() costs ~35 ns in a VM
 * here, the coarse one a load. Linux 5.11: user space probes it
 * (ktime-coarse, set here before load), and a CO-RE check of the running
 * kernel's helpers keeps the call out of an older kernel's verifier whatever
 * that says; else the fine clock.
 */
const volatile __u32 tt_coarse_on = 0;

static __always_inline __u64 tt_coarse_ns(void)
{
	if (tt_coarse_on &&
	    bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_ktime_get_coarse_ns))
		return bpf_ktime_get_coarse_ns();
	return bpf_ktime_get_ns();
}
#define TT_HEALTH_COARSE_CLOCK() tt_coarse_ns()

/* The health step's RTT probe rate limit, in us: set by user space before load. */
const volatile __u32 tt_rtt_gap_us = 0;
#define TT_HEALTH_PROBE_GAP_US tt_rtt_gap_us
#include "tcptrack/health.h"

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IPPROTO_TCP_ 6
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

#define TT_MAX_VLAN 2 /* QinQ */
/*
 * A header past the skb's linear part (data_end): not ours to judge yet. A
 * frame built from page fragments (an AF_PACKET TX ring, some drivers) may
 * hold its headers there; the caller pulls them in and parses again.
 */
#define TT_PARSE_SHORT (-2)
#define TT_PULL_MAX 256 /* Ethernet, two VLAN tags, IP with options or extension headers, TCP */
#define TT_MAX_EXTHDR 6 /* IPv6 extension headers followed before giving up */

/* One TCP segment (or GSO/GRO train) as the flow update needs it. */
struct tt_pkt {
	struct tt_flow_key key; /* addr_a/port_a = source until normalised */
	__u32 l3_bytes; /* bytes on the wire at L3, all segments */
	/* The TCP header's facts, laid out as the health step's segment (seg),
	 * so the step runs on the packet record itself, nothing copied. */
	union {
		struct tt_seg seg;
		struct {
			__u32 seq;
			__u32 ack_seq;
			__u32 payload; /* TCP payload, all segments */
			__u32 segs;
			__u32 tsval; /* timestamps option (has_ts) */
			__u32 tsecr;
			__u16 win; /* raw window */
			__u8 tcp_flags;
			__u8 has_ts;
			__u64 now_ns; /* 0 until the health step reads the clock */
		};
	};
};
TT_STATIC_ASSERT(sizeof(struct tt_seg) == 40, "tt_pkt's TCP facts are a struct tt_seg");

struct tt_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/*
 * Headers must start within the first TT_OFF_MAX bytes: bigger offsets are
 * refused (never wrapped, which would read the wrong bytes), and the bound
 * lets the verifier check the pointer arithmetic.
 */
#define TT_OFF_MAX 0xfff

#define TT_OPT_TS 8 /* TCP option kind: timestamps (RFC 7323), length 10 */
#define TT_OPT_MAX 40 /* option bytes in a TCP header at most */
#define TT_OPT_WALK 10 /* options looked at before giving up */

static __always_inline __u32 tt_load_be32(const __u8 *b)
{
	return (__u32)b[0] << 24 | (__u32)b[1] << 16 | (__u32)b[2] << 8 | b[3];
}

/* Where the options walk copies a header's options, and what it found. */
struct tt_opt_scratch {
	__u8 b[80]; /* TT_OPT_MAX, and room for any read at a masked index (< 64) */
	__u32 tsval;
	__u32 tsecr;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tt_opt_scratch);
} opt_scratch SEC(".maps");

/*
 * The options walk for headers whose timestamps are not where Linux puts them
 * (SYNs, other stacks' layouts, options outside the linear part): a copy of
 * the options, then at most TT_OPT_WALK options. Global: the walk's branches
 * are verified once, whatever the caller. Returns 1 with tsval/tsecr in this
 * CPU's opt_scratch.
 */
__noinline int tt_walk_ts(struct __sk_buff *skb, __u32 off, __u32 optlen)
{
	struct tt_opt_scratch *sc;
	__u32 zero = 0, len;
	__u64 n = optlen, o = 0, at;
	int i;

	sc = bpf_map_lookup_elem(&opt_scratch, &zero);
	if (!sc || !skb || optlen == 0 || optlen > TT_OPT_MAX)
		return 0;
	/* Bounds the verifier sees on the length register itself, 1 to 64
	 * (clang would fold plain C into the check above, and 5.10 wants the
	 * length of a load above 0 by its bounds, not by a test): the same n. */
	asm volatile("%[n] -= 1; %[n] &= 0x3f; %[n] += 1" : [n] "+r"(n));
	if (bpf_skb_load_bytes(skb, off & 0xffff, sc->b, n))
		return 0;
	/* Indexes masked to the buffer: clang may test one copy of o and index
	 * with another, so a test alone does not bound it for the verifier. */
	for (i = 0; i < TT_OPT_WALK; i++) {
		if (o >= optlen || o >= TT_OPT_MAX - 1)
			return 0;
		at = o;
		asm volatile("%[at] &= 0x3f" : [at] "+r"(at)); /* o < 39: unchanged */
		if (sc->b[at] == 0) /* end of options */
			return 0;
		if (sc->b[at] == 1) { /* NOP */
			o += 1;
			continue;
		}
		len = sc->b[at + 1];
		if (len < 2 || o + len > optlen)
			return 0;
		if (sc->b[at] == TT_OPT_TS) {
			if (len != 10)
				return 0;
			sc->tsval = tt_load_be32(&sc->b[at + 2]);
			sc->tsecr = tt_load_be32(&sc->b[at + 6]);
			return 1;
		}
		o += len;
	}
	return 0;
}

/*
 * The timestamps option, if the header has one. Linux and most stacks put it
 * first behind two NOPs on every segment after the SYN: one 32-bit compare;
 * anything else goes through the walk.
 */
static __always_inline void tt_parse_ts(struct __sk_buff *skb, const __u8 *opt, void *data_end,
					__u32 off, __u32 optlen, struct tt_pkt *p)
{
	struct tt_opt_scratch *sc;
	__u32 zero = 0;

	if (optlen >= 12 && (void *)(opt + 12) <= data_end && tt_load_be32(opt) == 0x0101080a) {
		p->tsval = tt_load_be32(opt + 4);
		p->tsecr = tt_load_be32(opt + 8);
		p->has_ts = 1;
		return;
	}
	if (!tt_walk_ts(skb, off, optlen))
		return;
	sc = bpf_map_lookup_elem(&opt_scratch, &zero);
	if (!sc)
		return;
	p->tsval = sc->tsval;
	p->tsecr = sc->tsecr;
	p->has_ts = 1;
}

static __always_inline int tt_parse_tcp(struct __sk_buff *skb, void *data, void *data_end,
					__u32 l3_off, __u32 l4_off, __u32 l3_len, struct tt_pkt *p)
{
	struct tcphdr *th;
	__u32 hdr_len, thl, segs;

	if (l4_off > TT_OFF_MAX)
		return -1;
	th = data + l4_off;
	if ((void *)(th + 1) > data_end)
		return TT_PARSE_SHORT;
	thl = th->doff * 4;
	if (thl < sizeof(*th))
		return -1;
	hdr_len = l4_off - l3_off + thl;
	if (l3_len < hdr_len)
		return -1;

	p->key.port_a = th->source;
	p->key.port_b = th->dest;
	p->seq = bpf_ntohl(th->seq);
	p->ack_seq = bpf_ntohl(th->ack_seq);
	p->tcp_flags = ((__u8 *)th)[13];
	p->win = bpf_ntohs(th->window);
	p->has_ts = 0;
	p->now_ns = 0;

	/* A GSO/GRO skb carries gso_segs wire segments, each with its own headers. */
	segs = skb->gso_segs;
	if (segs < 1)
		segs = 1;
	p->segs = segs;
	p->payload = l3_len - hdr_len;
	p->l3_bytes = l3_len + (segs - 1) * hdr_len;
	/* Last: nothing of skb is read after the walk (clang would keep a ctx
	 * pointer plus offset across the call, which the verifier refuses). */
	if (thl > sizeof(*th))
		tt_parse_ts(skb, (const __u8 *)(th + 1), data_end, l4_off + sizeof(*th),
			    thl - sizeof(*th), p);
	return 0;
}

static __always_inline int tt_parse_ipv4(struct __sk_buff *skb, void *data, void *data_end,
					 __u32 off, struct tt_pkt *p)
{
	struct iphdr *iph = data + (off & 0x3f); /* after at most two VLAN tags */
	__u32 ihl, tot, avail;

	if ((void *)(iph + 1) > data_end)
		return TT_PARSE_SHORT;
	if (iph->version != 4 || iph->protocol != IPPROTO_TCP_)
		return -1;
	ihl = iph->ihl * 4;
	if (ihl < sizeof(*iph))
		return -1;
	if (iph->frag_off & bpf_htons(IP_OFFSET))
		return -1; /* only the first fragment has the TCP header */
	avail = skb->len - off;
	tot = bpf_ntohs(iph->tot_len);
	/* GSO trains and BIG TCP (tot_len 0) span the whole skb. */
	if (skb->gso_segs > 1 || tot == 0)
		tot = avail;
	if (tot < ihl || tot > avail)
		return -1; /* bogus or truncated */

	__builtin_memcpy(p->key.addr_a, &iph->saddr, 4);
	__builtin_memcpy(p->key.addr_b, &iph->daddr, 4);
	p->key.family = TT_FAMILY_INET;
	return tt_parse_tcp(skb, data, data_end, off, off + ihl, tot, p);
}

static __always_inline int tt_parse_ipv6(struct __sk_buff *skb, void *data, void *data_end,
					 __u32 off, struct tt_pkt *p)
{
	struct ipv6hdr *ip6 = data + (off & 0x3f);
	__u32 l4_off, tot, avail;
	__u8 nexthdr;
	int i;

	if ((void *)(ip6 + 1) > data_end)
		return TT_PARSE_SHORT;
	if (ip6->version != 6)
		return -1;
	avail = skb->len - off;
	tot = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
	if (skb->gso_segs > 1 || ip6->payload_len == 0)
		tot = avail;
	if (tot > avail)
		return -1;

	nexthdr = ip6->nexthdr;
	l4_off = off + sizeof(*ip6);
#pragma unroll
	for (i = 0; i < TT_MAX_EXTHDR; i++) {
		struct ipv6_opt_hdr *eh;
		struct frag_hdr *fh;

		if (nexthdr == IPPROTO_TCP_)
			goto tcp;
		if (l4_off > TT_OFF_MAX)
			return -1;
		switch (nexthdr) {
		case 0: /* hop-by-hop */
		case 43: /* routing */
		case 60: /* destination options */
			eh = data + l4_off;
			if ((void *)(eh + 1) > data_end)
				return TT_PARSE_SHORT;
			nexthdr = eh->nexthdr;
			l4_off += (eh->hdrlen + 1) * 8;
			break;
		case 51: /* AH: length in 4-octet units, minus 2 */
			eh = data + l4_off;
			if ((void *)(eh + 1) > data_end)
				return TT_PARSE_SHORT;
			nexthdr = eh->nexthdr;
			l4_off += (eh->hdrlen + 2) * 4;
			break;
		case 44: /* fragment */
			fh = data + l4_off;
			if ((void *)(fh + 1) > data_end)
				return TT_PARSE_SHORT;
			if (fh->frag_off & bpf_htons(0xFFF8))
				return -1; /* not the first fragment */
			nexthdr = fh->nexthdr;
			l4_off += sizeof(*fh);
			break;
		default:
			return -1; /* ESP, no-next-header, other L4 */
		}
		if (l4_off - off > tot)
			return -1;
	}
	if (nexthdr != IPPROTO_TCP_)
		return -1; /* chain longer than we follow */
tcp:
	__builtin_memcpy(p->key.addr_a, &ip6->saddr, 16);
	__builtin_memcpy(p->key.addr_b, &ip6->daddr, 16);
	p->key.family = TT_FAMILY_INET6;
	return tt_parse_tcp(skb, data, data_end, off, l4_off, tot, p);
}

/* Parse from skb->data. has_l2: Ethernet framing; else the skb starts at L3.
 * Returns 0, TT_PARSE_SHORT (headers beyond the linear part) or -1 (not ours). */
static __always_inline int tt_parse(struct __sk_buff *skb, struct tt_pkt *p, int has_l2)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u16 proto;
	__u32 off = 0;
	int i;

	__builtin_memset(&p->key, 0, sizeof(p->key));
	if (has_l2) {
		struct ethhdr *eth = data;

		if ((void *)(eth + 1) > data_end)
			return TT_PARSE_SHORT;
		proto = eth->h_proto;
		off = ETH_HLEN;
#pragma unroll
		for (i = 0; i < TT_MAX_VLAN; i++) {
			struct tt_vlan_hdr *vh;

			if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
				break;
			vh = data + off;
			if ((void *)(vh + 1) > data_end)
				return TT_PARSE_SHORT;
			proto = vh->proto;
			off += sizeof(*vh);
		}
	} else {
		proto = skb->protocol;
	}

	if (proto == bpf_htons(ETH_P_IP))
		return tt_parse_ipv4(skb, data, data_end, off, p);
	if (proto == bpf_htons(ETH_P_IPV6))
		return tt_parse_ipv6(skb, data, data_end, off, p);
	return -1;
}

#endif /* TCPTRACK_PARSE_H */
