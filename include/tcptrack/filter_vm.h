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
 * space (src/datapath/filter.cpp) into a postfix program (op[]: leaves test one
 * side of the key; AND/OR/NOT combine the results on a one-bit-per-entry stack
 * held in a u64), and from that into tables the classifiers look up on the
 * normalised key before they touch any flow map. A connection's packets all
 * share one normalised key, so a connection is either counted whole or not at
 * all.
 *
 * The tables: the expression's distinct tests ("atoms", at most
 * TT_FILTER_MAX_ATOMS) are evaluated once into a bitmask, and the bitmask
 * indexes the expression's truth table (one bit per assignment of the atoms,
 * computed by user space). Leaves OR-ed together of one kind (address or
 * port) on one side fold into one atom that tests a set, and so do AND-ed
 * negated ones (not a and not b = not (a or b)):
 *  - ports: port[] maps every port (indexed in network order, as the key holds
 *    it) to the port atoms it is in: one load per end of the key;
 *  - addresses: each (family, prefix length) the atoms use is a class; the
 *    address masked to the class's length is looked up in addr[], a hash table
 *    without collisions (user space picks the multipliers): one probe per
 *    class and end of the key.
 * src/dst ("atoms tested on end a, or end b") hold when either direction of
 * the connection matches, so the classifiers look the truth table up twice:
 * with the key's ends as they are, and swapped. An expression with more atoms
 * than the tables take, or whose prefixes find no collision-free hash, runs
 * in the interpreter (tt_filter_run_ops) instead.
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

#define TT_FILTER_MAX_ATOMS 16
#define TT_FILTER_MAX_CLASSES 32 /* (family, prefix length) pairs; 32 leaves at most */
#define TT_FILTER_ADDR_BITS 7
#define TT_FILTER_ADDR_SLOTS (1 << TT_FILTER_ADDR_BITS)
#define TT_FILTER_NO_CLASS 0xff /* an empty addr[] slot */

/* A (family, prefix length) of the address atoms. */
struct tt_filter_class {
	__u32 mask[4]; /* network order */
	__u32 salt; /* added to the hash, so equal networks of two classes differ */
	__u8 family; /* TT_FAMILY_INET / TT_FAMILY_INET6 */
	__u8 pad[3];
};

/* A network of one class, and the address atoms it is in. */
struct tt_filter_addr {
	__u32 net[4]; /* network order, masked */
	__u16 atoms;
	__u8 cls; /* index into cls[]; TT_FILTER_NO_CLASS when empty */
	__u8 pad[5];
};

struct tt_filter {
	__u32 n; /* ops in use; 0 = no filter */
	__u32 table; /* 1: the tables below hold the filter; 0: run op[] */
	__u16 side_a, side_b; /* the atoms that test end a, end b (either end: both) */
	__u32 ncls; /* classes in use */
	__u32 mul[4]; /* the address hash's multiplier per word */
	struct tt_filter_class cls[TT_FILTER_MAX_CLASSES];
	struct tt_filter_addr addr[TT_FILTER_ADDR_SLOTS];
	__u64 truth[(1 << TT_FILTER_MAX_ATOMS) / 64]; /* bit m: the verdict for atoms m */
	__u16 port[65536]; /* by port in network order: the port atoms it is in */
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

/*
 * The interpreter: 1 when the connection passes the postfix program op[] (the
 * form the filter takes when it does not fit the tables below).
 */
TT_INLINE int tt_filter_run_ops(const struct tt_filter *f, const struct tt_flow_key *k)
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
	return stack & 1;
}

/*
 * The slot of addr[] where the address w masked to class cl would be: an IPv6
 * class hashes the four words, an IPv4 one the first (the rest are zero).
 */
TT_INLINE __u32 tt_filter_addr_slot(const struct tt_filter *f, const struct tt_filter_class *cl,
				    const __u32 *w)
{
	__u32 x = (w[0] & cl->mask[0]) * f->mul[0] + cl->salt;

	if (cl->family == TT_FAMILY_INET6)
		x += (w[1] & cl->mask[1]) * f->mul[1] + (w[2] & cl->mask[2]) * f->mul[2] +
		     (w[3] & cl->mask[3]) * f->mul[3];
	return x >> (32 - TT_FILTER_ADDR_BITS);
}

/* The address atoms of class c (IPv4) that the address w is in. */
TT_INLINE __u32 tt_filter_addr4_atoms(const struct tt_filter *f, const struct tt_filter_class *cl,
				      __u32 c, const __u32 *w)
{
	__u32 x = (w[0] & cl->mask[0]) * f->mul[0] + cl->salt;
	const struct tt_filter_addr *e = &f->addr[x >> (32 - TT_FILTER_ADDR_BITS)];

	return (((w[0] & cl->mask[0]) ^ e->net[0]) | (e->cls ^ c)) ? 0 : e->atoms;
}

/* The address atoms of class c (IPv6) that the address w is in. */
TT_INLINE __u32 tt_filter_addr6_atoms(const struct tt_filter *f, const struct tt_filter_class *cl,
				      __u32 c, const __u32 *w)
{
	const struct tt_filter_addr *e = &f->addr[tt_filter_addr_slot(f, cl, w)];
	__u32 miss = ((w[0] & cl->mask[0]) ^ e->net[0]) | ((w[1] & cl->mask[1]) ^ e->net[1]) |
		     ((w[2] & cl->mask[2]) ^ e->net[2]) | ((w[3] & cl->mask[3]) ^ e->net[3]) |
		     (e->cls ^ c);

	return miss ? 0 : e->atoms;
}

TT_INLINE __u64 tt_filter_truth(const struct tt_filter *f, __u32 m)
{
	return f->truth[(m & 0xffff) >> 6] >> (m & 63);
}

/* The tables: 1 when the connection with this normalised key passes. */
TT_INLINE int tt_filter_run_table(const struct tt_filter *f, const struct tt_flow_key *k)
{
	__u32 a[4], b[4], m, s, c;
	__u32 ma = f->port[k->port_a], mb = f->port[k->port_b];

	__builtin_memcpy(a, k->addr_a, sizeof(a));
	__builtin_memcpy(b, k->addr_b, sizeof(b));
#ifdef __clang__
#pragma clang loop unroll(disable)
#endif
	for (c = 0; c < TT_FILTER_MAX_CLASSES; c++) {
		const struct tt_filter_class *cl = &f->cls[c];

		if (c >= f->ncls)
			break;
		if (cl->family != k->family)
			continue;
		if (k->family == TT_FAMILY_INET) {
			ma |= tt_filter_addr4_atoms(f, cl, c, a);
			mb |= tt_filter_addr4_atoms(f, cl, c, b);
		} else {
			ma |= tt_filter_addr6_atoms(f, cl, c, a);
			mb |= tt_filter_addr6_atoms(f, cl, c, b);
		}
	}
	m = (ma & f->side_a) | (mb & f->side_b); /* the key's ends as they are */
	s = (mb & f->side_a) | (ma & f->side_b); /* and swapped: the other direction */
	return (tt_filter_truth(f, m) | tt_filter_truth(f, s)) & 1;
}

/* 1 when the connection with this normalised key passes the filter. */
TT_INLINE int tt_filter_match(const struct tt_filter *f, const struct tt_flow_key *k)
{
	if (f->n == 0)
		return 1;
	return f->table ? tt_filter_run_table(f, k) : tt_filter_run_ops(f, k);
}

TT_STATIC_ASSERT(sizeof(struct tt_filter_op) == 40, "filter op layout is shared with user space");
TT_STATIC_ASSERT(sizeof(struct tt_filter_class) == 24, "filter layout is shared with user space");
TT_STATIC_ASSERT(sizeof(struct tt_filter_addr) == 24, "filter layout is shared with user space");
TT_STATIC_ASSERT(sizeof(struct tt_filter) == 32 + 24 * TT_FILTER_MAX_CLASSES +
						     24 * TT_FILTER_ADDR_SLOTS + 8192 + 131072 +
						     40 * TT_FILTER_MAX_OPS,
		 "filter layout is shared with user space");

#endif /* TCPTRACK_FILTER_VM_H */
