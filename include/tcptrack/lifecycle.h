/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The pure TCP lifecycle: payload bases and reach, which segment starts a
 * flow, the state machine and the ASSURED rule (tt_lifecycle_step). Plain C
 * without helpers, so it runs under a bpf_spin_lock in the kernel and in the
 * unit tests (tests/unit/test_lifecycle.cpp) unchanged. Included by bpf/
 * (lib/store.h, lib/close.h, tcptrack.bpf.c) and the unit tests.
 */
#ifndef TCPTRACK_LIFECYCLE_H
#define TCPTRACK_LIFECYCLE_H

#include "tcptrack/abi.h"

/*
 * Moves one CPU's payload reach for a segment whose data ends at `end`.
 * Offsets from base compare modulo 2^32, so the reach grows past 4 GiB; a
 * segment at or before the reach (a retransmission) changes nothing.
 * Returns 1 once the reach is set.
 */
TT_INLINE int tt_payload_advance(__u64 *reach, int known, __u32 base, __u32 end)
{
	__u32 off = end - base;
	__s32 ahead;

	if (!known) {
		if ((__s32)off <= 0) /* data from before the base: not ours to count */
			return 0;
		*reach = off;
		return 1;
	}
	ahead = (__s32)(off - (__u32)*reach);
	if (ahead > 0)
		*reach += (__u32)ahead;
	return 1;
}

/* Records where a side's payload starts, from the first segment seen from it. */
TT_INLINE void tt_note_base(struct tt_flow_info *f, __u8 dir, __u8 tcp_flags, __u32 seq)
{
	if ((f->base_mask & (1 << dir)) || (tcp_flags & TT_TCP_RST))
		return;
	seq += (tcp_flags & TT_TCP_SYN) ? 1 : 0; /* a SYN uses one number */
	/* Constant indexes: f may be on the BPF stack, where clang turns a variable
	 * index into pointer arithmetic the verifier rejects. */
	if (dir)
		f->base[1] = seq;
	else
		f->base[0] = seq;
	f->base_mask |= 1 << dir;
}

/* Should a segment of an untracked tuple start tracking it? */
TT_INLINE int tt_starts_flow(__u8 tcp_flags, __u32 payload)
{
	/*
	 * Lone ACKs, FINs and RSTs after a close must not resurrect it, and
	 * neither may a retransmitted last data segment that carries the FIN
	 * (seen on a slow guest: it left a CLOSING phantom until the idle timeout).
	 */
	if (tcp_flags & (TT_TCP_RST | TT_TCP_FIN))
		return 0;
	return (tcp_flags & TT_TCP_SYN) || payload > 0;
}

/* Fresh lifecycle for a tuple first seen with this segment. */
TT_INLINE void tt_info_init(struct tt_flow_info *f, __u8 dir, __u8 tcp_flags, __u32 seq, __u64 now,
			    int ingress)
{
	__builtin_memset(f, 0, sizeof(*f));
	f->first_ns = now;
	if ((tcp_flags & (TT_TCP_SYN | TT_TCP_ACK)) == TT_TCP_SYN) {
		f->state = TT_SYN_SENT;
		f->client = dir;
		f->syn_ns = now;
		f->syn_seq = seq;
		f->flags = TT_F_SYN_SEEN | (ingress ? 0 : TT_F_LOCAL_CLIENT);
	} else if (tcp_flags & TT_TCP_SYN) { /* SYN-ACK: missed the SYN */
		f->state = TT_SYN_RECV;
		f->client = dir ^ 1;
		f->synack_ns = now;
		f->flags = TT_F_HS_SEEN | (ingress ? TT_F_LOCAL_CLIENT : 0);
	} else {
		f->state = TT_ESTABLISHED;
		f->client = dir;
		f->flags = TT_F_MIDSTREAM;
	}
	tt_note_base(f, dir, tcp_flags, seq);
}

/* The end whose owner a connection is shown with: the client when its SYN
 * left through this host, else the server (user space's sock_diag asks in
 * the same order). */
TT_INLINE __u8 tt_owner_side(const struct tt_flow_info *f)
{
	return (f->flags & TT_F_LOCAL_CLIENT) ? f->client : f->client ^ 1;
}

/* Records the cgroup of a segment's sending socket (0: none) for side `dir`.
 * (No dir + 1 here: Linux 6.12's verifier loses dir's bounds through such a
 * linked register and then refuses the [dir] indexing that follows.) */
TT_INLINE void tt_note_owner(struct tt_flow_info *f, __u8 dir, __u32 cgroup)
{
	if (!cgroup)
		return;
	/* Keep the first one seen of an end, and the preferred end's. */
	if (f->owner_cgroup && (f->owner_side == dir || dir != tt_owner_side(f)))
		return;
	f->owner_cgroup = cgroup;
	f->owner_side = dir;
}

/* Actions the caller takes after tt_lifecycle_step. */
#define TT_ACT_SETTLED 0x1 /* established and no FIN: plain segments may skip the state map */
#define TT_ACT_FIN 0x2 /* first FIN: every CPU must look at the state map again */
#define TT_ACT_FINISHED 0x4 /* connection over: report and delete */
#define TT_ACT_REUSE 0x8 /* new SYN on a used tuple: report the old one, then re-init */

/*
 * Feed one segment (from side `dir`) to the lifecycle. Pure: no helpers, so
 * it can run under the state's spin lock. The caller already counted bytes.
 */
TT_INLINE __u32 tt_lifecycle_step(struct tt_flow_info *f, __u8 dir, __u8 tcp_flags, __u32 seq,
				  __u32 ack_seq, __u32 payload, __u64 now)
{
	__u8 peer = dir ^ 1;
	__u32 act = 0;

	if (f->flags & TT_F_DONE) /* stragglers change nothing; a new SYN starts over */
		return (tcp_flags & (TT_TCP_SYN | TT_TCP_ACK)) == TT_TCP_SYN ? TT_ACT_REUSE : 0;
	if ((tcp_flags & (TT_TCP_SYN | TT_TCP_ACK)) != TT_TCP_SYN)
		tt_note_base(f, dir, tcp_flags, seq);

	if (tcp_flags & TT_TCP_SYN) {
		if (!(tcp_flags & TT_TCP_ACK)) {
			/* Retransmitted SYN of the same attempt, or a new connection. */
			if (f->state <= TT_SYN_RECV && dir == f->client &&
			    (!(f->flags & TT_F_SYN_SEEN) || f->syn_seq == seq))
				return 0;
			return TT_ACT_REUSE;
		}
		/* SYN-ACK from the server side. */
		if (dir != f->client && f->state == TT_SYN_SENT) {
			f->state = TT_SYN_RECV;
			f->synack_ns = now;
			f->flags |= TT_F_HS_SEEN;
		}
		return 0;
	}

	if (tcp_flags & TT_TCP_RST) {
		f->end |= TT_END_RST(dir);
		f->state = TT_RESET;
		f->close_ns = now;
		f->flags |= TT_F_DONE;
		return TT_ACT_FINISHED;
	}

	if ((tcp_flags & TT_TCP_ACK) && f->state == TT_SYN_RECV && dir == f->client) {
		f->state = TT_ESTABLISHED;
		f->ack_ns = now;
		/* Assured when it acknowledges the SYN-ACK: at or up to 1 MiB past
		 * the server's ISN + 1 (data the server sent early), which a blind
		 * ACK from a spoofed source hits once in 4096 tries (and the server
		 * answers a wrong one with a RST, which ends the flow anyway). */
		if (!(f->base_mask & (1 << peer)) || ack_seq - f->base[peer & 1] < (1u << 20))
			f->flags |= TT_F_ASSURED;
	} else if (dir != f->client && f->state >= TT_ESTABLISHED) {
		/* The side that did not open it speaks after the handshake (no SYN,
		 * no RST here): the flow is real both ways. */
		f->flags |= TT_F_ASSURED;
	}

	/* An ACK that covers the peer's FIN (FIN occupies one sequence number). */
	if ((tcp_flags & TT_TCP_ACK) && (f->fin_mask & (1 << peer)) &&
	    (__s32)(ack_seq - (f->fin_seq[peer] + 1)) >= 0)
		f->ack_mask |= 1 << peer;

	if ((tcp_flags & TT_TCP_FIN) && !(f->fin_mask & (1 << dir))) {
		if (!f->fin_mask) {
			act |= TT_ACT_FIN;
			f->end |= TT_END_FIN(dir);
		}
		f->fin_mask |= 1 << dir;
		f->fin_seq[dir] = seq + payload;
		if (f->fin_mask == 3) {
			f->state = TT_CLOSED;
			f->close_ns = now;
		} else {
			f->state = TT_CLOSING;
		}
	}

	if (f->fin_mask == 3 && f->ack_mask == 3) {
		f->flags |= TT_F_DONE;
		return act | TT_ACT_FINISHED;
	}
	/* Settled CPUs count payload on their own, so both bases must be known;
	 * settled flows are assured, so the per-CPU cache never holds one that
	 * may be displaced. */
	if (f->state == TT_ESTABLISHED && !f->fin_mask && f->base_mask == 3 &&
	    (f->flags & TT_F_ASSURED))
		act |= TT_ACT_SETTLED;
	return act;
}

#endif /* TCPTRACK_LIFECYCLE_H */
