/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The pvnet backend's checks of what a hostile frontend puts on the netif
 * rings.
 *
 * Every field of a request comes from the frontend and may be anything. The
 * backend copies the requests of a packet out of the shared transmit ring
 * into private memory first (never re-reading the ring: the frontend can
 * change it at any time) and passes the copies here. A packet that passes
 * comes back as a copy plan: the segments of data to grant-copy, each with
 * its place in the packet. The plan covers bytes [0, size) of the packet
 * exactly once, in order, with no empty segment, and no segment crosses its
 * granted page, so the backend may copy it into a buffer of `size` bytes
 * without further checks.
 *
 * A transmit packet on the ring is one request, then extra-info slots if it
 * has TXF_EXTRA_INFO (each may say EXTRA_FLAG_MORE), then one request per
 * further data slot while the previous one has TXF_MORE_DATA. The first
 * request's size is the packet's size; the first slot's own data is what the
 * other slots leave of it.
 *
 * Checks, in this order (the first failure is returned). The first group is
 * fatal: the ring cannot be parsed further, or only a malicious frontend
 * does this; the backend must disable the interface (from its own context).
 *  1. arguments from the backend                                     (PARAM)
 *  2. the extra-info slots and data slots end within the requests the
 *     frontend produced                                              (CHAIN)
 *  3. every extra-info type is GSO, MCAST_ADD, MCAST_DEL, HASH or XDP
 *                                                               (EXTRA_TYPE)
 *  4. no extra-info type twice in one packet                     (EXTRA_DUP)
 *  5. at most PVNET_TXV_FATAL_SLOTS data slots              (SLOTS_FATAL)
 *  6. every slot after the first has offset + size <= PAGE_SIZE       (PAGE)
 *  7. a GSO extra has a non-zero size and type TCPV4 or TCPV6          (GSO)
 * The second group drops the packet: every request of it gets RSP_ERROR
 * (extra-info slots RSP_NULL), and info says how many requests it took.
 *  8. the sizes of the slots after the first add up to at most the packet's
 *     size                                                       (SLOT_SIZE)
 *  9. the first slot has offset + its size <= PAGE_SIZE (fatal)       (PAGE)
 * 10. at most lim->max_slots data slots                              (SLOTS)
 * 11. the first slot holds at least an Ethernet header (ETH_HLEN)   (HEADER)
 * 12. a packet without GSO is at most lim->max_size bytes          (TOO_BIG)
 * 13. a GSO packet's type was advertised (lim->flags)          (GSO_FEATURE)
 * 14. no multicast extra unless multicast control was advertised
 *                                                        (EXTRA_UNSUPPORTED)
 * 15. every slot with data names a grant reference that is not one of the
 *     toolstack's reserved entries and is below lim->gref_limit      (GREF)
 *
 * Hash and XDP extras are accepted and ignored on transmit, as upstream does.
 * Zero-length slots after the first are accepted and left out of the plan.
 *
 * Packet shapes of past netback advisories, and what happens here:
 *  XSA-39  (CVE-2013-0216/0217): a producer index far beyond the consumer, or
 *          a slot chain that never ends, made netback loop or leak: RING and
 *          CHAIN, fatal; the window of requests looked at is bounded.
 *  XSA-90  (CVE-2014-2580): netback disabled a malformed frontend from NAPI
 *          (softirq) context and took a mutex there: fatal verdicts are only
 *          returned here; the backend acts on them in its own kthread.
 *  XSA-423 (CVE-2022-3643): a packet whose headers are split over several
 *          small slots left headers outside the skb's linear part: the plan
 *          gives every byte's place, the backend copies the head of the packet
 *          into its linear part whatever the slot boundaries.
 *  XSA-432 (CVE-2023-34319): a packet split into as many slots as allowed and
 *          still smaller than the head netback gathers overran its array: the
 *          plan has at most PVNET_TXV_FATAL_SLOTS segments and they cover
 *          exactly [0, size).
 *  XSA-448 (CVE-2023-46838): slots of zero length after the first became empty
 *          skb fragments and a NULL dereference: they are accepted but never
 *          appear in the plan.
 *
 * Grant references cannot be fully checked here: only the hypervisor knows
 * which of them the frontend granted. It checks them at grant copy time; a
 * failed copy drops the packet. The limit in lim->gref_limit is the size of
 * the frontend's grant table, which no valid reference reaches.
 *
 * The code is plain C for the kernel and for user-space tests alike.
 */

#ifndef _PVNET_VALIDATE_H
#define _PVNET_VALIDATE_H

#include "pvnet_proto.h"

/* Reasons for rejecting; functions return 0 or -PVNET_VERR_*. */
enum pvnet_verr {
	PVNET_VERR_RING = 1,		/* implausible ring producer index */
	PVNET_VERR_CHAIN,		/* packet runs past the requests produced */
	PVNET_VERR_EXTRA_TYPE,		/* unknown extra-info type */
	PVNET_VERR_EXTRA_DUP,		/* an extra-info type twice */
	PVNET_VERR_SLOTS_FATAL,		/* more slots than any packet has */
	PVNET_VERR_PAGE,		/* slot crosses its page */
	PVNET_VERR_GSO,			/* malformed GSO extra */
	PVNET_VERR_SLOT_SIZE,		/* slots larger than the packet */
	PVNET_VERR_SLOTS,		/* more slots than the backend takes */
	PVNET_VERR_HEADER,		/* first slot shorter than ETH_HLEN */
	PVNET_VERR_TOO_BIG,		/* larger than the MTU allows */
	PVNET_VERR_GSO_FEATURE,		/* GSO type not advertised */
	PVNET_VERR_EXTRA_UNSUPPORTED,	/* multicast control not advertised */
	PVNET_VERR_GREF,		/* reserved or out-of-table grant ref */
	PVNET_VERR_PARAM,		/* bad argument from the backend itself */
	PVNET_VERR_COUNT		/* number of codes + 1 */
};

/* netback's fatal_skb_slots: more data slots in one packet is malicious. */
#define PVNET_TXV_FATAL_SLOTS	20
/* Extra-info slots one packet can have: one of each type. */
#define PVNET_TXV_MAX_EXTRAS	(PVNET_EXTRA_TYPE_MAX - 1)
/* Requests the backend copies out for one packet, at most. */
#define PVNET_TXV_WINDOW	(1 + PVNET_TXV_MAX_EXTRAS + PVNET_TXV_FATAL_SLOTS - 1)

/* What the backend advertised: pvnet_vif_limits.flags */
#define PVNET_TXV_GSO_TCPV4	0x1U	/* feature-gso-tcpv4 = 1 */
#define PVNET_TXV_GSO_TCPV6	0x2U	/* feature-gso-tcpv6 = 1 */
#define PVNET_TXV_MCAST		0x4U	/* feature-multicast-control = 1 */

struct pvnet_vif_limits {
	u32 max_slots;		/* data slots per packet taken: 1..FATAL_SLOTS */
	u32 max_size;		/* largest packet without GSO, in bytes */
	u32 gref_limit;		/* grant refs at or above are invalid; 0: none */
	u32 flags;		/* PVNET_TXV_* */
};

/* One piece of packet data to copy: from the granted page to the packet. */
struct pvnet_tx_seg {
	u32 gref;		/* the frontend's grant */
	u16 offset;		/* in the granted page */
	u16 len;		/* bytes, never 0 */
	u32 pkt_off;		/* where the bytes go in the packet */
};

/* A checked transmit packet. */
struct pvnet_tx_info {
	u32 size;		/* packet bytes */
	u16 id;			/* the first request's id */
	u16 flags;		/* the first request's flags */
	u8 nr_entries;		/* ring requests the packet takes */
	u8 nr_slots;		/* data slots, the first one included */
	u8 nr_extras;		/* extra-info slots, after the first request */
	u8 nr_segs;		/* entries of seg[]: the slots with data */
	u8 gso_type;		/* GSO_TYPE_*: NONE without a GSO extra */
	u8 has_hash;		/* a HASH extra came with the packet */
	u16 gso_size;		/* segment size of a GSO packet */
	struct pvnet_tx_seg seg[PVNET_TXV_FATAL_SLOTS];
};

int pvnet_validate_tx(const struct pvnet_tx_request *reqs, u32 avail,
		      const struct pvnet_vif_limits *lim,
		      struct pvnet_tx_info *info);
int pvnet_validate_rx_req(const struct pvnet_rx_request *req,
			  const struct pvnet_vif_limits *lim);
int pvnet_validate_ring_prod(u32 req_prod, u32 cons, u32 ring_size);
int pvnet_validate_fatal(int err);
const char *pvnet_validate_strerror(int err);

#endif /* _PVNET_VALIDATE_H */
