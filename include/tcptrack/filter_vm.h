/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The capture filter's program format (struct tt_filter) and its interpreter
 * tt_filter_match: user space compiles (src/datapath/filter.cpp) and checks
 * with it, the classifiers run it (bpf/lib/filter.h), the same code.
 */
#ifndef TCPTRACK_FILTER_VM_H
#define TCPTRACK_FILTER_VM_H

#include "tcptrack/abi.h"

/*
 * The capture filter ("port 443 and not net 10.0.0.0/8"), compiled by user
 * space (src/datapath/filter.cpp) into a postfix program the classifiers run on the
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
		case TT_FOP_PORT: {
			__u64 miss_a = tt_filter_port_miss(o, pa) | skip_a;
			__u64 miss_b = tt_filter_port_miss(o, pb) | skip_b;

			stack = stack << 1 | ((miss_a & miss_b) ^ 1);
			break;
		}
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

TT_STATIC_ASSERT(sizeof(struct tt_filter_op) == 40, "filter op layout is shared with user space");
TT_STATIC_ASSERT(sizeof(struct tt_filter) == 8 + 40 * TT_FILTER_MAX_OPS,
		 "filter layout is shared with user space");

#endif /* TCPTRACK_FILTER_VM_H */
