/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Connection health from the segments seen at one point of the path:
 * retransmissions, gaps, duplicate ACKs, fast retransmissions, zero windows
 * and a live RTT (TCP timestamps, else SEQ/ACK under Karn's rule). Pure C
 * without helpers, like lifecycle.h: the datapath runs it on every segment
 * (bpf/lib/health.h) and the unit tests run it unchanged
 * (tests/unit/shared/test_health.cpp). The state it keeps per side is
 * struct tt_health_side (tcptrack/abi.h).
 *
 * Definitions (the README's "Connection health" says where they differ from
 * the kernel's counters):
 *  - a segment's sequence length is its payload, plus one for SYN and FIN;
 *  - retransmission: it starts before nxt (the end of the furthest data this
 *    side sent), all or part of it seen before; counted in wire segments
 *    (a GSO/GRO train's share of them) and in payload bytes already seen.
 *    Keepalives and zero-window probes (at most one byte, ending at nxt, no
 *    SYN/FIN) are left out, as Wireshark does;
 *  - gap (lost segment): it starts past nxt: data this point never saw;
 *  - duplicate ACK (Wireshark's conditions): no data, no SYN/FIN/RST, the
 *    same ACK number and window as this side's previous segment, and the
 *    peer has data outstanding (its nxt is past the ACK);
 *  - fast retransmission: a retransmission after 3 or more duplicate ACKs
 *    in a row from the peer;
 *  - zero window: a transition to an advertised window of 0, and the time
 *    until the next non-zero one;
 *  - RTT of a side's data: the time from the first segment carrying data and
 *    a new TSval to the first peer segment echoing that TSval (one probe in
 *    flight per side); without timestamps, from a new data segment to the
 *    first peer ACK covering it, dropped if that side retransmitted
 *    meanwhile (Karn). At an interface this is the round trip from here to
 *    the side's receiver and back. A side starts a probe at most once per
 *    TT_HEALTH_PROBE_GAP_US (below).
 */
#ifndef TCPTRACK_HEALTH_H
#define TCPTRACK_HEALTH_H

#include "tcptrack/abi.h"

/* What the health step needs of a segment (or a GSO/GRO train). */
struct tt_seg {
	__u32 seq;
	__u32 ack;
	__u32 payload; /* all wire segments together */
	__u32 segs; /* wire segments (gso_segs), at least 1 */
	__u32 tsval;
	__u32 tsecr;
	__u16 win; /* raw, as on the wire */
	__u8 flags; /* TCP flags (TT_TCP_*) */
	__u8 has_ts; /* a timestamps option was found */
	__u64 now_ns; /* when it passed (0: not read yet, see tt_seg_ns) */
};

/*
 * The clock, read only when a figure needs it (a probe, a sample, a zero
 * window's edge): about once a round trip, not on every segment. The
 * datapath defines it as bpf_ktime_get_ns() (CLOCK_MONOTONIC); elsewhere
 * segments carry their time.
 */
#ifndef TT_HEALTH_CLOCK
#define TT_HEALTH_CLOCK() 0
#endif

/* A cheaper reading of the same clock, up to a tick (1-10 ms) behind. */
#ifndef TT_HEALTH_COARSE_CLOCK
#define TT_HEALTH_COARSE_CLOCK() TT_HEALTH_CLOCK()
#endif

TT_INLINE __u64 tt_seg_ns(struct tt_seg *g)
{
	if (!g->now_ns)
		g->now_ns = TT_HEALTH_CLOCK();
	return g->now_ns;
}

/* The clock in us and ms, as the health record keeps it (wrapping u32). */
TT_INLINE __u32 tt_seg_us(struct tt_seg *g)
{
	return (__u32)(tt_seg_ns(g) / 1000);
}

TT_INLINE __u32 tt_seg_ms(struct tt_seg *g)
{
	return (__u32)(tt_seg_ns(g) / 1000000);
}

#define TT_H_RUN_FAST 3 /* duplicate ACKs in a row that make a retransmission fast */

/*
 * RTT probes are rate-limited per side, like ePPing's: a side starts a new
 * probe only this many us after its last one started (0: one per round
 * trip). A probe is the one part of health that touches both sides' state
 * (its start marks the peer's, its echo or ACK is seen on the peer's
 * segments), so where every exchange would be a probe (request-style
 * traffic, a round trip far shorter than the time between requests) it is
 * most of what health costs. The datapath sets it at load (--rtt-rate-limit).
 */
#ifndef TT_HEALTH_PROBE_GAP_US
#define TT_HEALTH_PROBE_GAP_US 0
#endif

TT_INLINE void tt_health_sample(struct tt_health_side *s, __u32 rtt_us)
{
	s->rtt_last_us = rtt_us;
	if (!s->rtt_samples && !s->srtt8_us) {
		s->rtt_min_us = rtt_us;
		s->rtt_max_us = rtt_us;
		s->srtt8_us = rtt_us << 3;
	} else {
		if (rtt_us < s->rtt_min_us)
			s->rtt_min_us = rtt_us;
		if (rtt_us > s->rtt_max_us)
			s->rtt_max_us = rtt_us;
		s->srtt8_us = s->srtt8_us - (s->srtt8_us >> 3) + rtt_us;
	}
	s->rtt_samples += 1;
}

/*
 * Whether side me may start a probe now: probe_us is when its last one
 * started (0: none yet; a wrap 71 minutes on delays one probe at most). The
 * coarse clock may read up to a tick before probe_us: signed, that is not due.
 */
TT_INLINE int tt_probe_due(const struct tt_health_side *me, const struct tt_seg *g)
{
	__u32 gap = TT_HEALTH_PROBE_GAP_US, now_us;

	if (!gap || !me->probe_us)
		return 1;
	now_us = (__u32)((g->now_ns ? g->now_ns : TT_HEALTH_COARSE_CLOCK()) / 1000);
	return (__s32)(now_us - me->probe_us) >= (__s32)gap;
}

/* The segment's data against nxt: retransmission, gap or new data. */
TT_INLINE void tt_health_data(struct tt_health_side *me, struct tt_health_side *peer,
			      struct tt_seg *g, __u32 len)
{
	__u32 end = g->seq + len, seen, segs, mss;

	if (!(me->flags & TT_H_NXT)) { /* first data seen from this side: nothing to judge */
		me->nxt = end;
		me->flags |= TT_H_NXT;
		return;
	}
	if ((__s32)(g->seq - me->nxt) < 0) {
		/* At most one byte ending at nxt, no SYN/FIN: keepalive or window probe. */
		if (len <= 1 && end == me->nxt && !(g->flags & (TT_TCP_SYN | TT_TCP_FIN)))
			return;
		seen = (__s32)(end - me->nxt) <= 0 ? len : me->nxt - g->seq;
		segs = g->segs ? g->segs : 1;
		if (seen < len && segs > 1) {
			/* Part of a train: the share of its segments already seen. */
			mss = g->payload / segs;
			if (mss) {
				segs = (seen + mss - 1) / mss;
				if (segs > g->segs)
					segs = g->segs;
			}
		}
		me->retrans += segs;
		me->retrans_bytes += seen < g->payload ? seen : g->payload;
		if (peer->run >= TT_H_RUN_FAST)
			me->fast_retrans += segs;
		if (me->flags & TT_H_SEQ_PROBE) { /* Karn: an ACK now may be for either copy */
			me->flags &= ~TT_H_SEQ_PROBE;
			peer->flags &= ~TT_H_WAIT;
		}
		if ((__s32)(end - me->nxt) > 0)
			me->nxt = end;
		return;
	}
	if (g->seq != me->nxt)
		me->gaps += 1;
	/* New data. Without timestamps, time it by the ACK that covers it. */
	if (!(me->flags & (TT_H_TSV | TT_H_SEQ_PROBE)) && g->payload && tt_probe_due(me, g)) {
		me->probe_us = tt_seg_us(g);
		me->flags |= TT_H_SEQ_PROBE;
		peer->probe = end; /* the ACK the peer's line waits for */
		peer->flags |= TT_H_WAIT;
	}
	me->nxt = end;
}

/* The segment's ACK and window: duplicate ACKs, Karn's RTT for the peer's data. */
TT_INLINE void tt_health_ack(struct tt_health_side *me, struct tt_health_side *peer,
			     struct tt_seg *g)
{
	/* The peer's line is read only for a candidate duplicate (its nxt). */
	if ((me->flags & TT_H_ACK) && g->ack == me->ack && g->win == me->win) {
		if (!g->payload && !(g->flags & (TT_TCP_SYN | TT_TCP_FIN | TT_TCP_RST)) &&
		    (peer->flags & TT_H_NXT) && (__s32)(peer->nxt - g->ack) > 0) {
			me->dup_acks += 1;
			if (me->run < 255)
				me->run += 1;
		}
	} else {
		if (!(me->flags & TT_H_ACK) || g->ack != me->ack)
			me->run = 0;
		me->ack = g->ack;
		me->win = g->win;
		me->flags |= TT_H_ACK;
	}
	/* Karn: the ACK this line waits for (without timestamps) times the peer's data. */
	if ((me->flags & (TT_H_WAIT | TT_H_TSV)) == TT_H_WAIT && !g->has_ts &&
	    (__s32)(g->ack - me->probe) >= 0) {
		me->flags &= ~TT_H_WAIT;
		if (peer->flags & TT_H_SEQ_PROBE) {
			peer->flags &= ~TT_H_SEQ_PROBE;
			tt_health_sample(peer, tt_seg_us(g) - peer->probe_us);
		}
	}
}

/* Timestamps: this side's new TSval starts a probe; its TSecr may end the peer's. */
TT_INLINE void tt_health_ts(struct tt_health_side *me, struct tt_health_side *peer,
			    struct tt_seg *g, __u32 len)
{
	__s32 d;
	int fresh = !(me->flags & TT_H_TSV) || g->tsval != me->tsval;

	if (fresh) {
		me->tsval = g->tsval;
		if (!(me->flags & TT_H_TSV)) { /* timestamps from now on: no SEQ/ACK probe */
			if (me->flags & TT_H_SEQ_PROBE)
				peer->flags &= ~TT_H_WAIT;
			me->flags = (me->flags | TT_H_TSV) & ~TT_H_SEQ_PROBE;
		}
	}
	/* RFC 7323: TSecr is valid with ACK; 0 is no echo. The TSval this line
	 * waits for is in this line: the peer's is read only on a match. */
	if ((me->flags & TT_H_WAIT) && (g->flags & TT_TCP_ACK) && g->tsecr) {
		d = (__s32)(g->tsecr - me->probe);
		if (d >= 0) { /* echoed, or a later TSval was: the probe is over */
			me->flags &= ~TT_H_WAIT;
			if (peer->flags & TT_H_TS_PROBE) {
				peer->flags &= ~TT_H_TS_PROBE;
				if (d == 0)
					tt_health_sample(peer, tt_seg_us(g) - peer->probe_us);
			}
		}
	}
	/* Only data draws a prompt echo (a pure ACK's TSval waits for the
	 * peer's next send); only the first segment with a TSval marks it. */
	if (fresh && len && !(me->flags & TT_H_TS_PROBE) && tt_probe_due(me, g)) {
		me->probe_us = tt_seg_us(g);
		me->flags |= TT_H_TS_PROBE;
		peer->probe = g->tsval; /* the echo the peer's line waits for */
		peer->flags |= TT_H_WAIT;
	}
}

/*
 * One segment from side `dir` (normalised direction), g->now_ns on the clock
 * user space reads as CLOCK_MONOTONIC (0: read TT_HEALTH_CLOCK() if needed). egress: it leaves
 * through this interface. Plain stores: a side's segments come one at a time (the sender's socket
 * lock, or its receive queue).
 */
TT_INLINE void tt_health_step(struct tt_health *h, int dir, struct tt_seg *g, int egress)
{
	struct tt_health_side *me = &h->side[dir & 1], *peer = &h->side[(dir & 1) ^ 1];
	__u32 len =
		g->payload + ((g->flags & TT_TCP_SYN) ? 1 : 0) + ((g->flags & TT_TCP_FIN) ? 1 : 0);

	if (g->flags & TT_TCP_RST)
		return;
	if (egress && !(me->flags & TT_H_EGRESS))
		me->flags |= TT_H_EGRESS;
	if (len)
		tt_health_data(me, peer, g, len);
	if (g->flags & TT_TCP_ACK)
		tt_health_ack(me, peer, g);
	if (!(g->flags & TT_TCP_SYN)) { /* a SYN's window is never zero, nor scaled */
		if (!g->win && !(me->flags & TT_H_ZW)) {
			me->zero_win += 1;
			me->zero_win_ms -= tt_seg_ms(g);
			me->flags |= TT_H_ZW;
		} else if (g->win && (me->flags & TT_H_ZW)) {
			me->zero_win_ms += tt_seg_ms(g);
			me->flags &= ~TT_H_ZW;
		}
	}
	if (g->has_ts)
		tt_health_ts(me, peer, g, len);
}

#endif /* TCPTRACK_HEALTH_H */
