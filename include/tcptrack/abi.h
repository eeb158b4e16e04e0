/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The kernel ABI shared by the datapath (bpf/) and user space (src/): the
 * flow key and its normal form, the lifecycle's facts (tt_flow_info, TT_F_*),
 * close events, eviction requests and the stats indexes. Only fixed-width
 * types, explicit padding, sizes checked below (C and C++ alike).
 * Included by the bpf/lib headers, the bench BPF objects and every user-space
 * file that reads these records; the store, the lifecycle and the filter
 * build on it (tcptrack/store.h, lifecycle.h, filter_vm.h).
 */
#ifndef TCPTRACK_ABI_H
#define TCPTRACK_ABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#include <linux/bpf.h> /* struct bpf_spin_lock */
#endif

#ifndef TT_INLINE
#ifdef __BPF__
#define TT_INLINE static __always_inline
#else
#define TT_INLINE static inline
#endif
#endif

#ifdef __cplusplus
#define TT_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define TT_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

#define TT_FAMILY_INET 4
#define TT_FAMILY_INET6 6

/* Side A is the (address, port) that sorts first; dir 0 = A->B, 1 = B->A. */
#define TT_DIR_AB 0
#define TT_DIR_BA 1

/* TCP header flag bits (byte 13 of the header). */
#define TT_TCP_FIN 0x01
#define TT_TCP_SYN 0x02
#define TT_TCP_RST 0x04
#define TT_TCP_ACK 0x10

enum tt_state {
	TT_SYN_SENT = 0, /* SYN only */
	TT_SYN_RECV = 1, /* SYN+ACK seen */
	TT_ESTABLISHED = 2,
	TT_CLOSING = 3, /* one FIN */
	TT_CLOSED = 4, /* both FINs */
	TT_RESET = 5, /* RST either way */
	TT_STATE_COUNT = 6,
};

/* Normalised connection key: both directions of one connection share it. */
struct tt_flow_key {
	__u8 addr_a[16]; /* IPv4 uses the first 4 bytes, rest zero */
	__u8 addr_b[16];
	__u16 port_a; /* network byte order */
	__u16 port_b;
	__u32 ifindex;
	__u8 family; /* TT_FAMILY_INET / TT_FAMILY_INET6 */
	__u8 pad[3];
};

/* Lifecycle facts and timestamps (CLOCK_MONOTONIC ns, 0 = not seen). */
#define TT_F_SYN_SEEN 0x01 /* the handshake started while we watched */
#define TT_F_LOCAL_CLIENT 0x02 /* the client's SYN left through this host (egress) */
#define TT_F_MIDSTREAM 0x04 /* first seen after the handshake */
#define TT_F_REAP 0x08 /* finished, but its close event could not be queued */
#define TT_F_HS_SEEN 0x10 /* SYN-ACK seen, so RTT is measurable */
#define TT_F_DONE 0x20 /* finished: exactly one CPU got TT_ACT_FINISHED */
/*
 * Assured (conntrack's word): the client acknowledged the server's SYN-ACK, or
 * the side that did not open it spoke after the handshake (a flow caught
 * mid-stream: traffic both ways). Half-open and one-way flows are not, and a
 * new connection that finds no room may displace them; assured flows never are.
 */
#define TT_F_ASSURED 0x40
#define TT_F_DISPLACED 0x80 /* ended unassured to make room for a new connection */

struct tt_flow_info {
	/* First 16 bytes: what the hot path reads (the payload bases), so that in
	 * a slot they share no cache line with the counters (see tt_slot). */
	__u32 base[2]; /* where each side's payload starts (ISN + 1, or first seen) */
	__u8 base_mask; /* bit (1 << side): base[side] is known */
	__u8 state; /* enum tt_state */
	__u8 client; /* side (TT_DIR_AB: A, TT_DIR_BA: B) that opened the connection */
	__u8 flags; /* TT_F_* */
	__u8 fin_mask; /* bit (1 << side): side sent a FIN */
	__u8 ack_mask; /* bit (1 << side): side's FIN was acknowledged */
	__u8 end; /* who ended it: TT_END_FIN(side) | TT_END_RST(side) */
	__u8 owner_side; /* the side whose socket owner_cgroup names (when not 0) */
	__u32 syn_seq;
	__u32 fin_seq[2]; /* sequence number carried by each side's FIN */
	/* The cgroup v2 of a socket seen sending a lifecycle segment
	 * (bpf_skb_cgroup_id's low 32 bits: the cgroup directory's inode), so a
	 * connection keeps an owner after its socket is gone. The end process
	 * attribution prefers wins (the client if its SYN left here, else the
	 * server: tt_owner_side); the other end's only while none is seen. */
	__u32 owner_cgroup;
	__u64 first_ns; /* first packet seen: identifies this generation of the tuple */
	__u64 syn_ns;
	__u64 synack_ns;
	__u64 ack_ns; /* handshake-completing ACK */
	__u64 close_ns; /* second FIN or RST */
};

/*
 * Connection health (tcptrack/health.h): what one side sent, as seen here.
 * One 64-byte line per side, so the CPUs handling the two directions never
 * write the same line. State first (what the next segment is compared with),
 * then the figures user space reads. Counters wrap (u16 and u32 alike): user
 * space widens them from report to report (src/datapath/health_reader).
 */
#define TT_H_NXT 0x01 /* nxt is known */
#define TT_H_ACK 0x02 /* ack and win are known */
#define TT_H_ZW 0x04 /* the last window this side advertised was 0 */
#define TT_H_TS_PROBE 0x08 /* probe: a TSval awaiting its echo */
#define TT_H_SEQ_PROBE 0x10 /* probe: a sequence end awaiting its ACK (no timestamps) */
#define TT_H_TSV 0x20 /* this side sends timestamps (tsval is known) */
#define TT_H_EGRESS 0x40 /* this side's segments leave through this interface's egress */
#define TT_H_WAIT 0x80 /* probe: the peer's RTT probe waits for this side's echo or ACK */

struct tt_health_side {
	__u32 nxt; /* sequence number after the furthest data (SYN, FIN) sent */
	__u32 ack; /* last ACK number sent */
	__u32 tsval; /* last TSval sent */
	/* The peer's RTT probe this side's segments are watched for (TT_H_WAIT):
	 * its TSval to echo, or (no timestamps) the sequence end to ACK. Kept on
	 * the echoing side, so a segment reads only its own side's line. */
	__u32 probe;
	__u32 probe_us; /* when this side's last probe passed here (ktime in us, wraps) */
	__u16 win; /* last raw window sent (unscaled: only 0 and equality matter) */
	__u8 flags; /* TT_H_* */
	__u8 run; /* duplicate ACKs sent in a row (saturates at 255) */
	/* Figures. */
	__u32 retrans; /* retransmitted wire segments (tcp.analysis.retransmission) */
	__u32 retrans_bytes; /* payload already seen, sent again */
	__u32 dup_acks; /* duplicate ACKs sent (tcp.analysis.duplicate_ack) */
	/* Time at zero window in ms: while TT_H_ZW, this minus the ktime in ms it
	 * went to zero, so a reader adds its own now (same clock). */
	__u32 zero_win_ms;
	__u32 srtt8_us; /* smoothed RTT x 8, us (RFC 6298 weights) */
	__u32 rtt_min_us;
	__u32 rtt_max_us;
	__u32 rtt_last_us;
	__u16 gaps; /* segments starting past nxt (tcp.analysis.lost_segment) */
	__u16 fast_retrans; /* retransmissions after 3+ duplicate ACKs from the peer */
	__u16 zero_win; /* transitions to a zero window (tcp.analysis.zero_window) */
	__u16 rtt_samples;
};

struct tt_health {
	struct tt_health_side side[2]; /* by normalised direction */
};

/* Why a close event was emitted. */
enum tt_close_reason {
	TT_CLOSE_FINISHED = 1, /* both FINs acknowledged, or RST */
	TT_CLOSE_REUSED = 2, /* a new SYN replaced it on the same tuple */
	TT_CLOSE_DISPLACED = 3, /* unassured, displaced by a new connection (which took its slot) */
};

/* Ring-buffer record: a connection that left the maps, with final counters. */
struct tt_close_event {
	struct tt_flow_key key;
	__u32 reason;
	struct tt_flow_info info;
	__u64 bytes[2];
	__u64 packets[2];
	__u64 payload[2];
	__u32 slot; /* the slot it used; user space recycles it (see the store below) */
	__u32 gen; /* the slot's generation while it held this connection */
	struct tt_health health;
};

#define TT_EVICT_BATCH 64 /* slots per run of the eviction program */

/* Eviction requests: user space fills it, then runs tcptrack_evict (BPF_PROG_TEST_RUN). */
struct tt_evict_req {
	__u32 n;
	__u32 pad;
	__u64 done; /* set by the program: bit i = entry i was ended */
	struct {
		__u32 slot;
		__u32 gen;
	} e[TT_EVICT_BATCH];
};

/*
 * tt_flow_info.end: the side whose FIN came first (bits 0-1) and the side that
 * sent a RST (bits 2-3), each stored as side + 1 (0: none seen).
 */
#define TT_END_FIN(side) ((__u8)((side) + 1))
#define TT_END_RST(side) ((__u8)(((side) + 1) << 2))
#define TT_END_FIN_SIDE(end) ((int)((end)&3) - 1) /* -1: no FIN seen */
#define TT_END_RST_SIDE(end) ((int)(((end) >> 2) & 3) - 1) /* -1: no RST seen */

/* Indexes of the per-CPU stats array. */
enum tt_stat {
	/* Connection openings (SYN) refused: no room (the sum of _FULL and _BUCKETS). */
	TT_STAT_UNTRACKED = 0,
	/* Ring buffer full: the close waits in its slot for user space. */
	TT_STAT_CLOSE_DROPPED = 1,
	/* Tuple reused by a new SYN. */
	TT_STAT_REUSED = 2,
	/* A close that could be neither queued nor kept (no slot left). */
	TT_STAT_CLOSE_LOST = 3,
	/* Every refused segment that would have started a flow. */
	TT_STAT_UNTRACKED_SEGS = 4,
	/* Unassured flows displaced by a new connection. */
	TT_STAT_DISPLACED = 5,
	/* Openings refused: store full, nothing displaceable in reach. */
	TT_STAT_UNTRACKED_FULL = 6,
	/* Openings refused: both buckets full of assured flows. */
	TT_STAT_UNTRACKED_BUCKETS = 7,
	TT_STAT_COUNT = 8,
};

/* Returns < 0 if (a, pa) sorts before (b, pb). Addresses compared as 32-bit words. */
TT_INLINE int tt_endpoint_cmp(const __u8 *a, __u16 pa, const __u8 *b, __u16 pb)
{
	const __u32 *wa = (const __u32 *)a, *wb = (const __u32 *)b;
	int i;

	for (i = 0; i < 4; i++) {
		if (wa[i] != wb[i])
			return wa[i] < wb[i] ? -1 : 1;
	}
	if (pa != pb)
		return pa < pb ? -1 : 1;
	return 0;
}

/*
 * Key already filled as src = A, dst = B; swap so the lower endpoint is A.
 * Returns the packet's direction (TT_DIR_AB / TT_DIR_BA).
 */
TT_INLINE int tt_key_normalise(struct tt_flow_key *k)
{
	__u32 *wa = (__u32 *)k->addr_a, *wb = (__u32 *)k->addr_b, t;
	__u16 p;
	int i;

	if (tt_endpoint_cmp(k->addr_a, k->port_a, k->addr_b, k->port_b) <= 0)
		return TT_DIR_AB;
	for (i = 0; i < 4; i++) {
		t = wa[i];
		wa[i] = wb[i];
		wb[i] = t;
	}
	p = k->port_a;
	k->port_a = k->port_b;
	k->port_b = p;
	return TT_DIR_BA;
}

TT_STATIC_ASSERT(sizeof(struct tt_flow_key) == 44, "flow key layout is shared with user space");
TT_STATIC_ASSERT(sizeof(struct tt_flow_info) == 72, "flow info layout is shared with user space");
TT_STATIC_ASSERT(sizeof(struct tt_health_side) == 64, "a side's health is one cache line");
TT_STATIC_ASSERT(sizeof(struct tt_close_event) == 176 + 128,
		 "close event layout is shared with user space");
TT_STATIC_ASSERT(sizeof(struct tt_evict_req) == 16 + 8 * TT_EVICT_BATCH,
		 "eviction request layout is shared with user space");

#endif /* TCPTRACK_ABI_H */
