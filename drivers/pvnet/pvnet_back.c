// SPDX-License-Identifier: GPL-2.0
/*
 * pvnet-back: the dom0 end of pvkit's Xen PV split network driver (netif).
 *
 * One net_device per frontend, pvnetb<domid>.<handle> (module parameter
 * devtype=vif: it binds the standard "vif" devices instead and names them
 * vif<domid>.<handle>, so libxl's vif-bridge hotplug script and xl
 * network-attach/detach work unchanged). The device exists from probe on, so
 * the hotplug script can put it on a bridge while the backend is in InitWait;
 * the backend reaches Connected only once hotplug-status reads "connected".
 *
 * Data moves with grant copy only; the frontend's pages are never mapped:
 * - transmit (frontend to dom0) runs in NAPI: the requests of a packet are
 *   copied out of the shared ring into private memory, checked by
 *   pvnet_validate.c, and the copy plan it returns is grant-copied into a
 *   fresh skb (headers linear, the rest in page fragments), many packets per
 *   GNTTABOP_copy batch; the responses follow the copy.
 * - receive (dom0 to frontend) runs in ndo_start_xmit: the skb is copied into
 *   the frontend's posted pages, packed, one batch per burst of packets
 *   (netdev_xmit_more); responses sit in the ring slot of their request.
 *   Checksums the stack left blank go as csum_blank; GSO as a GSO extra.
 *
 * A frontend that breaks the ring (a fatal verdict of the validator, a bogus
 * producer index) is disabled from the backend's own workqueue, never from
 * NAPI (XSA-90) or xenwatch: carrier off, the interface closed; the event is
 * logged rate-limited per device. Packets that are only malformed are
 * answered RSP_ERROR and counted per reason. Every interface has its own
 * rings, NAPI context and queue: one frontend cannot stall another's traffic.
 * A frontend that stops posting receive buffers loses its carrier after
 * rx_stall_timeout_ms, so dom0's queue towards it drains.
 */

#define pr_fmt(fmt) "pvnet-back: " fmt

#include <linux/atomic.h>
#include <linux/debugfs.h>
#include <linux/etherdevice.h>
#include <linux/ethtool.h>
#include <linux/if_vlan.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/netdevice.h>
#include <linux/ratelimit.h>
#include <linux/rtnetlink.h>
#include <linux/seq_file.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/tcp.h>
#include <linux/timer.h>
#include <linux/workqueue.h>

#include <xen/events.h>
#include <xen/grant_table.h>
#include <xen/page.h>
#include <xen/xen.h>
#include <xen/xenbus.h>
#include <xen/interface/grant_table.h>
#include <xen/interface/io/ring.h>
#include <asm/xen/hypercall.h>

#include "pvnet_proto.h"
#include "pvnet_validate.h"

DEFINE_RING_TYPES(pvnet_tx, struct pvnet_tx_request, struct pvnet_tx_response);
DEFINE_RING_TYPES(pvnet_rx, struct pvnet_rx_request, struct pvnet_rx_response);

static_assert(offsetof(struct pvnet_tx_sring, ring) == PVNET_RING_HEADER_SIZE);
static_assert(__CONST_RING_SIZE(pvnet_tx, PVNET_PAGE_SIZE) == PVNET_TX_RING_SIZE);
static_assert(__CONST_RING_SIZE(pvnet_rx, PVNET_PAGE_SIZE) == PVNET_RX_RING_SIZE);
static_assert(XEN_PAGE_SIZE == PVNET_PAGE_SIZE && PAGE_SIZE == XEN_PAGE_SIZE);
static_assert(sizeof(struct pvnet_extra_info) <= sizeof(struct pvnet_rx_response));

/* XenbusState values as XenStore carries them (the enumerators upset checkpatch). */
#define PVNET_XB_UNKNOWN	((enum xenbus_state)0)
#define PVNET_XB_INITIALISING	((enum xenbus_state)1)
#define PVNET_XB_INITWAIT	((enum xenbus_state)2)
#define PVNET_XB_INITIALISED	((enum xenbus_state)3)
#define PVNET_XB_CONNECTED	((enum xenbus_state)4)
#define PVNET_XB_CLOSING	((enum xenbus_state)5)
#define PVNET_XB_CLOSED		((enum xenbus_state)6)
#define PVNET_XB_RECONFIGURING	((enum xenbus_state)7)

/* Packets up to this size go into the skb's linear part whole. */
#define PVNET_BACK_TX_LINEAR	2048
/* Larger ones: this much (the headers) linear, the rest in page fragments. */
#define PVNET_BACK_TX_HEAD	128
/* Transmit packets per GNTTABOP_copy batch, and copy ops per batch. */
#define PVNET_BACK_TX_BATCH	64
#define PVNET_BACK_TX_OPS	512
/* Copy ops one transmit packet can take: each segment split at most twice. */
#define PVNET_BACK_TX_PKT_OPS	(2 * PVNET_TXV_FATAL_SLOTS + 2)
/* Receive copy ops per batch, and what one skb can need. */
#define PVNET_BACK_RX_OPS	256
#define PVNET_BACK_RX_PKT_OPS	(2 * (MAX_SKB_FRAGS + 2) + PVNET_NR_SLOTS_MIN + 1)
/* Ring slots one received packet can take: data slots and a GSO extra. */
#define PVNET_BACK_RX_MAX_SLOTS	(DIV_ROUND_UP(PVNET_MAX_TX_SIZE, XEN_PAGE_SIZE) + 1)
/* Grant entries per grant-table frame (v1): a ceiling for the table size. */
#define PVNET_GREFS_PER_FRAME	(XEN_PAGE_SIZE / sizeof(struct grant_entry_v1))
#define PVNET_BACK_QUEUE_LEN	256

static char *devtype = PVNET_DEVICE_TYPE;
module_param(devtype, charp, 0444);
MODULE_PARM_DESC(devtype,
		 "XenStore backend device type to serve: \"pvnet\" (default) or \"vif\" (then xen-netback must not be loaded)");

static unsigned int rx_stall_timeout_ms = 10000;
module_param(rx_stall_timeout_ms, uint, 0644);
MODULE_PARM_DESC(rx_stall_timeout_ms,
		 "Carrier off when the frontend posts no receive buffers for this long (default 10000)");

/* Per-device counters: sysfs statistics/<name> and debugfs .../stats. */
enum pvnet_back_stat {
	PVNET_ST_TX_PACKETS,	/* from the frontend */
	PVNET_ST_TX_GSO,
	PVNET_ST_TX_SLOTS,
	PVNET_ST_TX_COPY_OPS,
	PVNET_ST_TX_BATCHES,
	PVNET_ST_TX_COPY_ERRORS,
	PVNET_ST_TX_CSUM_ERRORS,
	PVNET_ST_TX_NOMEM,
	PVNET_ST_RX_PACKETS,	/* to the frontend */
	PVNET_ST_RX_GSO,
	PVNET_ST_RX_SLOTS,
	PVNET_ST_RX_COPY_OPS,
	PVNET_ST_RX_BATCHES,
	PVNET_ST_RX_COPY_ERRORS,
	PVNET_ST_RX_DROPPED,
	PVNET_ST_RX_STALLS,
	PVNET_ST_REJECTED,
	PVNET_ST_HOSTILE,
	/* rejected packets per reason: PVNET_ST_REJ_BASE + PVNET_VERR_* */
	PVNET_ST_REJ_BASE = PVNET_ST_HOSTILE,
	PVNET_ST_COUNT = PVNET_ST_REJ_BASE + PVNET_VERR_COUNT
};

static const char * const pvnet_back_stat_names[PVNET_ST_COUNT] = {
	[PVNET_ST_TX_PACKETS] = "tx_packets",
	[PVNET_ST_TX_GSO] = "tx_gso",
	[PVNET_ST_TX_SLOTS] = "tx_slots",
	[PVNET_ST_TX_COPY_OPS] = "tx_copy_ops",
	[PVNET_ST_TX_BATCHES] = "tx_batches",
	[PVNET_ST_TX_COPY_ERRORS] = "tx_copy_errors",
	[PVNET_ST_TX_CSUM_ERRORS] = "tx_csum_errors",
	[PVNET_ST_TX_NOMEM] = "tx_nomem",
	[PVNET_ST_RX_PACKETS] = "rx_packets",
	[PVNET_ST_RX_GSO] = "rx_gso",
	[PVNET_ST_RX_SLOTS] = "rx_slots",
	[PVNET_ST_RX_COPY_OPS] = "rx_copy_ops",
	[PVNET_ST_RX_BATCHES] = "rx_batches",
	[PVNET_ST_RX_COPY_ERRORS] = "rx_copy_errors",
	[PVNET_ST_RX_DROPPED] = "rx_dropped",
	[PVNET_ST_RX_STALLS] = "rx_stalls",
	[PVNET_ST_REJECTED] = "rejected",
	[PVNET_ST_HOSTILE] = "hostile",
	[PVNET_ST_REJ_BASE + PVNET_VERR_RING] = "rejected_ring",
	[PVNET_ST_REJ_BASE + PVNET_VERR_CHAIN] = "rejected_chain",
	[PVNET_ST_REJ_BASE + PVNET_VERR_EXTRA_TYPE] = "rejected_extra_type",
	[PVNET_ST_REJ_BASE + PVNET_VERR_EXTRA_DUP] = "rejected_extra_dup",
	[PVNET_ST_REJ_BASE + PVNET_VERR_SLOTS_FATAL] = "rejected_slots_fatal",
	[PVNET_ST_REJ_BASE + PVNET_VERR_PAGE] = "rejected_page",
	[PVNET_ST_REJ_BASE + PVNET_VERR_GSO] = "rejected_gso",
	[PVNET_ST_REJ_BASE + PVNET_VERR_SLOT_SIZE] = "rejected_slot_size",
	[PVNET_ST_REJ_BASE + PVNET_VERR_SLOTS] = "rejected_slots",
	[PVNET_ST_REJ_BASE + PVNET_VERR_HEADER] = "rejected_header",
	[PVNET_ST_REJ_BASE + PVNET_VERR_TOO_BIG] = "rejected_too_big",
	[PVNET_ST_REJ_BASE + PVNET_VERR_GSO_FEATURE] = "rejected_gso_feature",
	[PVNET_ST_REJ_BASE + PVNET_VERR_EXTRA_UNSUPPORTED] = "rejected_extra_unsupported",
	[PVNET_ST_REJ_BASE + PVNET_VERR_GREF] = "rejected_gref",
	[PVNET_ST_REJ_BASE + PVNET_VERR_PARAM] = "rejected_param",
};

/* A transmit packet between its checks and its delivery. */
struct pvnet_back_txpkt {
	struct sk_buff *skb;
	u16 ids[PVNET_TXV_FATAL_SLOTS];	/* of its data slots, in order */
	u8 nr_slots;
	u8 nr_extras;
	u16 first_op;			/* its copy ops in the batch */
	u16 nr_ops;
	u16 gso_size;
	u8 gso_type;
	u8 flags;			/* TXF_CSUM_BLANK / TXF_DATA_VALIDATED */
};

/* Where a receive copy op's result goes: the response of that slot. */
struct pvnet_back_rxop {
	RING_IDX rsp;
};

struct pvnet_back {
	struct xenbus_device *xbdev;
	struct net_device *netdev;
	domid_t domid;
	unsigned int handle;
	char *hotplug_script;

	/*
	 * The XenBus state machine: xenwatch callbacks and the disable work
	 * take this. state is where we are heading (netback's be->state);
	 * a switch to Connected waits for hotplug-status.
	 */
	struct mutex lock;
	enum xenbus_state state;
	bool hotplug_done;
	struct xenbus_watch hotplug_watch;

	/* the connection */
	bool connected;
	struct pvnet_tx_back_ring tx;
	struct pvnet_rx_back_ring rx;
	void *tx_addr;
	void *rx_addr;
	int tx_irq;
	int rx_irq;			/* == tx_irq with one event channel */
	struct napi_struct napi;
	unsigned long tx_eoi;		/* bit 0: an EOI is owed for tx_irq */
	bool tx_work;			/* this interrupt found packets */
	struct pvnet_vif_limits lim;
	bool fe_sg, fe_gso4, fe_gso6, fe_csum, fe_ipv6_csum, fe_rx_notify;
	u8 fe_mac[ETH_ALEN];

	/* transmit batch (NAPI only) */
	struct pvnet_tx_request txreqs[PVNET_TXV_WINDOW];
	struct pvnet_back_txpkt *txpkts;
	struct gnttab_copy *tx_ops;
	unsigned int tx_nr_pkts;
	unsigned int tx_nr_ops;

	/* receive batch (under the netdev queue lock) */
	struct gnttab_copy *rx_ops;
	struct pvnet_back_rxop *rx_opdst;
	unsigned int rx_nr_ops;
	struct sk_buff_head rx_done;
	struct timer_list rx_stall_timer;
	bool rx_stalled;

	/* a hostile frontend */
	bool disabled;
	int disable_err;
	struct work_struct disable_work;
	struct ratelimit_state ratelimit;

	u64 tx_packets, tx_bytes, rx_packets, rx_bytes;	/* net_device view */
	u64 tx_dropped, rx_dropped, tx_errors;
	atomic64_t stats[PVNET_ST_COUNT];
	bool sysfs;
	struct dentry *debugfs;
};

static struct workqueue_struct *pvnet_back_wq;
static struct dentry *pvnet_back_debugfs_root;

static void pvnet_back_stat_add(struct pvnet_back *be, enum pvnet_back_stat st, u64 n)
{
	atomic64_add(n, &be->stats[st]);
}

static void pvnet_back_stat_inc(struct pvnet_back *be, enum pvnet_back_stat st)
{
	atomic64_inc(&be->stats[st]);
}

/* ---- a hostile frontend ---- */

/*
 * A fatal verdict: stop reading the rings at once (the caller returns; the
 * event channel gets no EOI, so no more interrupts) and leave the rest to
 * the backend's own workqueue. Any context.
 */
static void pvnet_back_fatal(struct pvnet_back *be, int err)
{
	if (READ_ONCE(be->disabled))
		return;
	be->disable_err = err;
	WRITE_ONCE(be->disabled, true);
	pvnet_back_stat_inc(be, PVNET_ST_HOSTILE);
	if (err < 0 && -err < PVNET_VERR_COUNT)
		pvnet_back_stat_inc(be, PVNET_ST_REJ_BASE - err);
	queue_work(pvnet_back_wq, &be->disable_work);
}

static void pvnet_back_reject(struct pvnet_back *be, int err, u16 id)
{
	pvnet_back_stat_inc(be, PVNET_ST_REJECTED);
	if (-err > 0 && -err < PVNET_VERR_COUNT)
		pvnet_back_stat_inc(be, PVNET_ST_REJ_BASE - err);
	be->tx_errors++;
	if (__ratelimit(&be->ratelimit))
		netdev_warn(be->netdev, "dropped packet id %u from %s: %s\n", id,
			    be->xbdev->otherend, pvnet_validate_strerror(err));
}

/* ---- transmit: the frontend's packets into dom0 ---- */

static void pvnet_back_tx_response(struct pvnet_back *be, u16 id, s16 status)
{
	struct pvnet_tx_response *rsp;

	rsp = RING_GET_RESPONSE(&be->tx, be->tx.rsp_prod_pvt);
	rsp->id = id;
	rsp->status = status;
	be->tx.rsp_prod_pvt++;
}

/* Answer every request of a packet: data slots @status, extras RSP_NULL. */
static void pvnet_back_tx_answer(struct pvnet_back *be, const u16 *ids,
				 unsigned int nr_slots, unsigned int nr_extras,
				 s16 status)
{
	unsigned int i;

	pvnet_back_tx_response(be, ids[0], status);
	for (i = 0; i < nr_extras; i++)
		pvnet_back_tx_response(be, 0, PVNET_RSP_NULL);
	for (i = 1; i < nr_slots; i++)
		pvnet_back_tx_response(be, ids[i], status);
}

/* Grant-copy @len bytes of the frontend's page into @page at @off. */
static void pvnet_back_tx_op(struct pvnet_back *be, u32 gref, u16 src_off,
			     struct page *page, unsigned int off,
			     unsigned int len)
{
	struct gnttab_copy *op = &be->tx_ops[be->tx_nr_ops++];

	op->source.u.ref = gref;
	op->source.domid = be->domid;
	op->source.offset = src_off;
	op->dest.u.gmfn = xen_page_to_gfn(page);
	op->dest.domid = DOMID_SELF;
	op->dest.offset = off;
	op->len = len;
	op->flags = GNTCOPY_source_gref;
	op->status = GNTST_okay;
}

/*
 * The destination of packet byte @pkt_off: the skb's linear part, or a page
 * fragment. Returns the page and sets @off and @room (bytes to the end of
 * that page or part).
 */
static struct page *pvnet_back_tx_dest(struct sk_buff *skb, u32 pkt_off,
				       unsigned int *off, unsigned int *room)
{
	unsigned int head = skb_headlen(skb);
	const skb_frag_t *frag;
	unsigned int i;
	void *addr;

	if (pkt_off < head) {
		addr = skb->data + pkt_off;
		*off = offset_in_page(addr);
		*room = min_t(unsigned int, head - pkt_off, PAGE_SIZE - *off);
		return virt_to_page(addr);
	}
	pkt_off -= head;
	for (i = 0; i < skb_shinfo(skb)->nr_frags; i++) {
		frag = &skb_shinfo(skb)->frags[i];
		if (pkt_off < skb_frag_size(frag)) {
			*off = skb_frag_off(frag) + pkt_off;
			*room = skb_frag_size(frag) - pkt_off;
			return skb_frag_page(frag);
		}
		pkt_off -= skb_frag_size(frag);
	}
	return NULL;
}

/* An skb for @size bytes: small ones linear, large ones head + pages. */
static struct sk_buff *pvnet_back_tx_skb(struct pvnet_back *be, u32 size)
{
	unsigned int head = size <= PVNET_BACK_TX_LINEAR ? size : PVNET_BACK_TX_HEAD;
	unsigned int rest = size - head, i, len;
	struct sk_buff *skb;
	struct page *page;

	skb = napi_alloc_skb(&be->napi, head);
	if (!skb)
		return NULL;
	skb_put(skb, head);
	for (i = 0; rest; i++) {
		page = alloc_page(GFP_ATOMIC | __GFP_NOWARN);
		if (!page) {
			kfree_skb(skb);
			return NULL;
		}
		len = min_t(unsigned int, rest, PAGE_SIZE);
		skb_add_rx_frag(skb, i, page, 0, len, PAGE_SIZE);
		rest -= len;
	}
	return skb;
}

/* The copy ops of a checked packet, split where skb pages end. */
static int pvnet_back_tx_plan(struct pvnet_back *be, struct sk_buff *skb,
			      const struct pvnet_tx_info *info)
{
	unsigned int i, off, room, len;
	struct page *page;

	for (i = 0; i < info->nr_segs; i++) {
		const struct pvnet_tx_seg *seg = &info->seg[i];
		u32 done = 0;

		while (done < seg->len) {
			page = pvnet_back_tx_dest(skb, seg->pkt_off + done, &off, &room);
			if (!page || be->tx_nr_ops >= PVNET_BACK_TX_OPS)
				return -EINVAL;	/* cannot be: the plan fits the skb */
			len = min_t(unsigned int, seg->len - done, room);
			pvnet_back_tx_op(be, seg->gref, seg->offset + done, page, off, len);
			done += len;
		}
	}
	return 0;
}

/* Checksum and GSO state of a delivered packet, from its flags and extras. */
static int pvnet_back_tx_offloads(struct pvnet_back *be, struct sk_buff *skb,
				  const struct pvnet_back_txpkt *pkt)
{
	bool recalculate = false;

	if (pkt->flags & PVNET_TXF_CSUM_BLANK)
		skb->ip_summed = CHECKSUM_PARTIAL;
	else if (pkt->flags & PVNET_TXF_DATA_VALIDATED)
		skb->ip_summed = CHECKSUM_UNNECESSARY;

	if (pkt->gso_type != PVNET_GSO_TYPE_NONE) {
		skb_shinfo(skb)->gso_size = pkt->gso_size;
		skb_shinfo(skb)->gso_type =
			(pkt->gso_type == PVNET_GSO_TYPE_TCPV4 ? SKB_GSO_TCPV4 :
			 SKB_GSO_TCPV6) | SKB_GSO_DODGY;
		skb_shinfo(skb)->gso_segs = 0;
		/* A GSO packet is CHECKSUM_PARTIAL: fix up frontends that forget. */
		if (skb->ip_summed != CHECKSUM_PARTIAL) {
			skb->ip_summed = CHECKSUM_PARTIAL;
			recalculate = true;
		}
	}
	if (skb->ip_summed != CHECKSUM_PARTIAL)
		return 0;
	/* upstream netfront never reads feature-no-csum-offload: complete them */
	if (skb_checksum_setup(skb, recalculate))
		return -EPROTO;
	if (skb_is_gso(skb)) {
		if (!skb_transport_header_was_set(skb))
			return -EPROTO;
		skb_shinfo(skb)->gso_segs =
			DIV_ROUND_UP(skb->len - skb_tcp_all_headers(skb),
				     skb_shinfo(skb)->gso_size);
	}
	return 0;
}

/* Run the batch's copies, answer its packets, hand the good ones up. */
static void pvnet_back_tx_flush(struct pvnet_back *be)
{
	struct net_device *dev = be->netdev;
	unsigned int i, j;
	int notify;

	if (!be->tx_nr_pkts) {
		/* only answers to rejected packets, if anything */
		RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&be->tx, notify);
		if (notify)
			notify_remote_via_irq(be->tx_irq);
		return;
	}
	gnttab_batch_copy(be->tx_ops, be->tx_nr_ops);
	pvnet_back_stat_inc(be, PVNET_ST_TX_BATCHES);
	pvnet_back_stat_add(be, PVNET_ST_TX_COPY_OPS, be->tx_nr_ops);

	for (i = 0; i < be->tx_nr_pkts; i++) {
		struct pvnet_back_txpkt *pkt = &be->txpkts[i];
		s16 status = PVNET_RSP_OKAY;

		for (j = pkt->first_op; j < pkt->first_op + pkt->nr_ops; j++) {
			if (be->tx_ops[j].status != GNTST_okay) {
				status = PVNET_RSP_ERROR;
				pvnet_back_stat_inc(be, PVNET_ST_TX_COPY_ERRORS);
				if (__ratelimit(&be->ratelimit))
					netdev_warn(dev, "grant copy from ref %u of %s failed: %d\n",
						    be->tx_ops[j].source.u.ref,
						    be->xbdev->otherend,
						    be->tx_ops[j].status);
				break;
			}
		}
		pvnet_back_tx_answer(be, pkt->ids, pkt->nr_slots, pkt->nr_extras, status);
		if (status != PVNET_RSP_OKAY) {
			kfree_skb(pkt->skb);
			pkt->skb = NULL;
			be->tx_errors++;
		}
	}
	RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&be->tx, notify);
	if (notify)
		notify_remote_via_irq(be->tx_irq);

	for (i = 0; i < be->tx_nr_pkts; i++) {
		struct pvnet_back_txpkt *pkt = &be->txpkts[i];
		struct sk_buff *skb = pkt->skb;

		if (!skb)
			continue;
		skb->protocol = eth_type_trans(skb, dev);
		skb_reset_network_header(skb);
		if (pvnet_back_tx_offloads(be, skb, pkt)) {
			pvnet_back_stat_inc(be, PVNET_ST_TX_CSUM_ERRORS);
			be->tx_errors++;
			kfree_skb(skb);
			continue;
		}
		be->rx_packets++;
		be->rx_bytes += skb->len;
		if (pkt->gso_type)
			pvnet_back_stat_inc(be, PVNET_ST_TX_GSO);
		napi_gro_receive(&be->napi, skb);
	}
	be->tx_nr_pkts = 0;
	be->tx_nr_ops = 0;
}

/* Copy the requests from req_cons on: one, or the window a chain needs. */
static unsigned int pvnet_back_tx_copy_reqs(struct pvnet_back *be, RING_IDX avail)
{
	RING_IDX cons = be->tx.req_cons;
	unsigned int i, n;

	RING_COPY_REQUEST(&be->tx, cons, &be->txreqs[0]);
	if (!(be->txreqs[0].flags & (PVNET_TXF_MORE_DATA | PVNET_TXF_EXTRA_INFO)))
		return 1;
	n = min_t(RING_IDX, avail, PVNET_TXV_WINDOW);
	for (i = 0; i < n; i++)
		RING_COPY_REQUEST(&be->tx, cons + i, &be->txreqs[i]);
	return n;
}

/* Take one packet off the ring. Return: 0, or -EPROTO after a fatal verdict. */
static int pvnet_back_tx_one(struct pvnet_back *be, RING_IDX avail)
{
	struct pvnet_back_txpkt *pkt = &be->txpkts[be->tx_nr_pkts];
	const struct pvnet_tx_request *reqs = be->txreqs;
	struct pvnet_tx_info info;
	struct sk_buff *skb;
	unsigned int n, i;
	int err;

	be->lim.max_size = READ_ONCE(be->netdev->mtu) + VLAN_ETH_HLEN;
	n = pvnet_back_tx_copy_reqs(be, avail);
	err = pvnet_validate_tx(reqs, n, &be->lim, &info);
	if (err && pvnet_validate_fatal(err)) {
		pvnet_back_fatal(be, err);
		return -EPROTO;
	}
	be->tx.req_cons += info.nr_entries;

	pkt->nr_slots = info.nr_slots;
	pkt->nr_extras = info.nr_extras;
	pkt->ids[0] = reqs[0].id;
	for (i = 1; i < info.nr_slots; i++)
		pkt->ids[i] = reqs[info.nr_extras + i].id;
	pvnet_back_stat_add(be, PVNET_ST_TX_SLOTS, info.nr_slots);
	if (err) {
		pvnet_back_reject(be, err, info.id);
		pvnet_back_tx_answer(be, pkt->ids, pkt->nr_slots, pkt->nr_extras,
				     PVNET_RSP_ERROR);
		return 0;
	}

	skb = pvnet_back_tx_skb(be, info.size);
	if (!skb) {
		pvnet_back_stat_inc(be, PVNET_ST_TX_NOMEM);
		be->tx_dropped++;
		pvnet_back_tx_answer(be, pkt->ids, pkt->nr_slots, pkt->nr_extras,
				     PVNET_RSP_DROPPED);
		return 0;
	}
	pkt->first_op = be->tx_nr_ops;
	if (pvnet_back_tx_plan(be, skb, &info)) {
		be->tx_nr_ops = pkt->first_op;
		kfree_skb(skb);
		pvnet_back_tx_answer(be, pkt->ids, pkt->nr_slots, pkt->nr_extras,
				     PVNET_RSP_ERROR);
		return 0;
	}
	pkt->nr_ops = be->tx_nr_ops - pkt->first_op;
	pkt->skb = skb;
	pkt->gso_type = info.gso_type;
	pkt->gso_size = info.gso_size;
	pkt->flags = info.flags & (PVNET_TXF_CSUM_BLANK | PVNET_TXF_DATA_VALIDATED);
	be->tx_nr_pkts++;
	pvnet_back_stat_inc(be, PVNET_ST_TX_PACKETS);
	return 0;
}

/* Up to @budget packets off the transmit ring. Return: packets taken. */
static int pvnet_back_tx_action(struct pvnet_back *be, int budget)
{
	RING_IDX prod, avail;
	int done = 0;
	int err;

	while (done < budget && !READ_ONCE(be->disabled)) {
		prod = READ_ONCE(be->tx.sring->req_prod);
		virt_rmb();	/* the requests up to prod, after prod */
		err = pvnet_validate_ring_prod(prod, be->tx.rsp_prod_pvt, RING_SIZE(&be->tx));
		if (err) {
			pvnet_back_fatal(be, err);
			break;
		}
		avail = prod - be->tx.req_cons;
		if (!avail)
			break;
		if (be->tx_nr_pkts == PVNET_BACK_TX_BATCH ||
		    be->tx_nr_ops + PVNET_BACK_TX_PKT_OPS > PVNET_BACK_TX_OPS)
			pvnet_back_tx_flush(be);
		if (pvnet_back_tx_one(be, avail))
			break;
		done++;
	}
	pvnet_back_tx_flush(be);
	return done;
}

static int pvnet_back_poll(struct napi_struct *napi, int budget)
{
	struct pvnet_back *be = container_of(napi, struct pvnet_back, napi);
	int done, more;

	if (READ_ONCE(be->disabled)) {
		napi_complete(napi);
		return 0;	/* no EOI: the channel stays masked */
	}
	done = pvnet_back_tx_action(be, budget);
	if (done)
		be->tx_work = true;
	if (done < budget && napi_complete_done(napi, done)) {
		if (READ_ONCE(be->disabled))
			return done;
		RING_FINAL_CHECK_FOR_REQUESTS(&be->tx, more);
		if (more) {
			napi_schedule(napi);
		} else if (test_and_clear_bit(0, &be->tx_eoi)) {
			xen_irq_lateeoi(be->tx_irq, be->tx_work ? 0 : XEN_EOI_FLAG_SPURIOUS);
			be->tx_work = false;
		}
	}
	return done;
}

/* ---- receive: dom0's packets into the frontend's pages ---- */

static RING_IDX pvnet_back_rx_avail(struct pvnet_back *be)
{
	RING_IDX prod = READ_ONCE(be->rx.sring->req_prod);

	virt_rmb();	/* the requests up to prod, after prod */
	if (pvnet_validate_ring_prod(prod, be->rx.rsp_prod_pvt, RING_SIZE(&be->rx))) {
		pvnet_back_fatal(be, -PVNET_VERR_RING);
		return 0;
	}
	return prod - be->rx.req_cons;
}

/*
 * Are @need requests posted? If not, ask to be notified when they are
 * (req_event), and look once more. Under the queue lock.
 */
static bool pvnet_back_rx_ready(struct pvnet_back *be, RING_IDX need)
{
	if (pvnet_back_rx_avail(be) >= need)
		return true;
	be->rx.sring->req_event = be->rx.req_cons + need;
	mb();	/* req_event before req_prod is looked at again */
	return pvnet_back_rx_avail(be) >= need;
}

/* Run the queued copies; fix the status of slots whose copy failed; push. */
static void pvnet_back_rx_flush(struct pvnet_back *be)
{
	unsigned int i;
	int notify;

	if (!be->rx_nr_ops && skb_queue_empty(&be->rx_done))
		return;
	if (be->rx_nr_ops)
		gnttab_batch_copy(be->rx_ops, be->rx_nr_ops);
	pvnet_back_stat_inc(be, PVNET_ST_RX_BATCHES);
	pvnet_back_stat_add(be, PVNET_ST_RX_COPY_OPS, be->rx_nr_ops);
	for (i = 0; i < be->rx_nr_ops; i++) {
		struct pvnet_rx_response *rsp;

		if (likely(be->rx_ops[i].status == GNTST_okay))
			continue;
		pvnet_back_stat_inc(be, PVNET_ST_RX_COPY_ERRORS);
		rsp = RING_GET_RESPONSE(&be->rx, be->rx_opdst[i].rsp);
		rsp->status = PVNET_RSP_ERROR;
	}
	be->rx_nr_ops = 0;
	RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&be->rx, notify);
	if (notify)
		notify_remote_via_irq(be->rx_irq);
	while (!skb_queue_empty(&be->rx_done))
		dev_consume_skb_any(__skb_dequeue(&be->rx_done));
}

/* Queue a copy of @len bytes at @data into the page of request @req. */
static void pvnet_back_rx_op(struct pvnet_back *be, const struct pvnet_rx_request *req,
			     unsigned int dst_off, void *data, unsigned int len,
			     RING_IDX rsp)
{
	struct gnttab_copy *op = &be->rx_ops[be->rx_nr_ops];
	struct page *page = virt_to_page(data);
	struct xen_page_foreign *foreign = xen_page_foreign(page);

	op->flags = GNTCOPY_dest_gref;
	if (foreign) {
		/* a page another backend mapped from its guest: copy from the grant */
		op->source.domid = foreign->domid;
		op->source.u.ref = foreign->gref;
		op->flags |= GNTCOPY_source_gref;
	} else {
		op->source.domid = DOMID_SELF;
		op->source.u.gmfn = virt_to_gfn(data);
	}
	op->source.offset = xen_offset_in_page(data);
	op->dest.domid = be->domid;
	op->dest.u.ref = req->gref;
	op->dest.offset = dst_off;
	op->len = len;
	op->status = GNTST_okay;
	be->rx_opdst[be->rx_nr_ops].rsp = rsp;
	be->rx_nr_ops++;
}

/* Walks an skb's data as (address, length) pieces that stay within a page. */
struct pvnet_back_rxsrc {
	struct sk_buff *skb;
	int frag;			/* -1: the linear part */
	unsigned int off;		/* into the linear part or the frag */
};

static unsigned int pvnet_back_rx_piece(struct pvnet_back_rxsrc *src, void **data)
{
	struct sk_buff *skb = src->skb;
	unsigned int size;
	void *base;

	for (;;) {
		if (src->frag < 0) {
			base = skb->data;
			size = skb_headlen(skb);
		} else if (src->frag < skb_shinfo(skb)->nr_frags) {
			skb_frag_t *frag = &skb_shinfo(skb)->frags[src->frag];

			base = skb_frag_address(frag);
			size = skb_frag_size(frag);
		} else {
			return 0;
		}
		if (src->off < size)
			break;
		src->frag++;
		src->off = 0;
	}
	*data = base + src->off;
	return min_t(unsigned int, size - src->off,
		     XEN_PAGE_SIZE - xen_offset_in_page(*data));
}

static u16 pvnet_back_rx_csum_flags(const struct sk_buff *skb)
{
	if (skb->ip_summed == CHECKSUM_PARTIAL)
		return PVNET_RXF_CSUM_BLANK | PVNET_RXF_DATA_VALIDATED;
	if (skb->ip_summed == CHECKSUM_UNNECESSARY)
		return PVNET_RXF_DATA_VALIDATED;
	return 0;
}

/* Copy @skb into the frontend's posted pages; answer the slots it takes. */
static void pvnet_back_rx_skb(struct pvnet_back *be, struct sk_buff *skb,
			      unsigned int gso_type)
{
	struct pvnet_back_rxsrc src = { .skb = skb, .frag = -1 };
	unsigned int left = skb->len, slot = 0;
	struct pvnet_rx_request req;
	struct pvnet_rx_response *rsp;
	RING_IDX idx;

	while (left) {
		unsigned int used = 0, len = 0;
		bool bad_gref;
		void *data;

		idx = be->rx.req_cons++;
		RING_COPY_REQUEST(&be->rx, idx, &req);
		bad_gref = pvnet_validate_rx_req(&req, &be->lim) != 0;
		if (bad_gref)
			pvnet_back_stat_inc(be, PVNET_ST_REJ_BASE + PVNET_VERR_GREF);
		while (used < XEN_PAGE_SIZE && left) {
			len = pvnet_back_rx_piece(&src, &data);
			len = min_t(unsigned int, len, XEN_PAGE_SIZE - used);
			if (!len)
				break;	/* cannot be: skb->len counts the pieces */
			if (!bad_gref)
				pvnet_back_rx_op(be, &req, used, data, len, idx);
			src.off += len;
			used += len;
			left -= len;
		}
		rsp = RING_GET_RESPONSE(&be->rx, idx);
		rsp->id = req.id;
		rsp->offset = 0;
		rsp->flags = left ? PVNET_RXF_MORE_DATA : 0;
		rsp->status = bad_gref ? PVNET_RSP_ERROR : used;
		if (slot == 0) {
			rsp->flags |= pvnet_back_rx_csum_flags(skb);
			if (gso_type != PVNET_GSO_TYPE_NONE) {
				struct pvnet_extra_info *gso;

				rsp->flags |= PVNET_RXF_EXTRA_INFO;
				/* the GSO extra takes the next slot (and its request) */
				idx = be->rx.req_cons++;
				gso = (struct pvnet_extra_info *)RING_GET_RESPONSE(&be->rx, idx);
				memset(gso, 0, sizeof(*gso));
				gso->type = PVNET_EXTRA_TYPE_GSO;
				gso->u.gso.type = gso_type;
				gso->u.gso.size = skb_shinfo(skb)->gso_size;
				slot++;
			}
		}
		slot++;
		if (!left || !len)
			break;
	}
	be->rx.rsp_prod_pvt = be->rx.req_cons;
	pvnet_back_stat_add(be, PVNET_ST_RX_SLOTS, slot);
}

static unsigned int pvnet_back_gso_type(struct pvnet_back *be, const struct sk_buff *skb)
{
	if (!skb_is_gso(skb))
		return PVNET_GSO_TYPE_NONE;
	if ((skb_shinfo(skb)->gso_type & SKB_GSO_TCPV4) && be->fe_gso4)
		return PVNET_GSO_TYPE_TCPV4;
	if ((skb_shinfo(skb)->gso_type & SKB_GSO_TCPV6) && be->fe_gso6)
		return PVNET_GSO_TYPE_TCPV6;
	return PVNET_GSO_TYPE_NONE;
}

/*
 * Too few receive buffers for the largest packet: stop the queue, then look
 * again (the interrupt handler wakes the queue only if it sees it stopped).
 * Return: true if the queue stays stopped.
 */
static bool pvnet_back_rx_stop(struct pvnet_back *be)
{
	netif_stop_queue(be->netdev);
	smp_mb();	/* stopped before req_prod is read again */
	if (pvnet_back_rx_ready(be, PVNET_BACK_RX_MAX_SLOTS) && !READ_ONCE(be->disabled)) {
		netif_start_queue(be->netdev);
		return false;
	}
	pvnet_back_stat_inc(be, PVNET_ST_RX_STALLS);
	mod_timer(&be->rx_stall_timer, jiffies + msecs_to_jiffies(rx_stall_timeout_ms));
	return true;
}

static netdev_tx_t pvnet_back_start_xmit(struct sk_buff *skb, struct net_device *dev)
{
	struct pvnet_back *be = netdev_priv(dev);
	unsigned int gso_type, slots;

	if (unlikely(!be->connected || READ_ONCE(be->disabled)))
		goto drop;
	gso_type = pvnet_back_gso_type(be, skb);
	if (skb_is_gso(skb) && gso_type == PVNET_GSO_TYPE_NONE)
		goto drop;	/* the stack segments for us; cannot be */
	slots = DIV_ROUND_UP(skb->len, XEN_PAGE_SIZE);
	if ((slots > 1 && !be->fe_sg) || slots > PVNET_NR_SLOTS_MIN)
		goto drop;
	slots += gso_type != PVNET_GSO_TYPE_NONE;
	if (unlikely(!pvnet_back_rx_ready(be, slots))) {
		/* only after a smaller packet let the queue run: try again later */
		pvnet_back_rx_flush(be);
		pvnet_back_rx_stop(be);
		return NETDEV_TX_BUSY;
	}
	if (be->rx_nr_ops + PVNET_BACK_RX_PKT_OPS > PVNET_BACK_RX_OPS)
		pvnet_back_rx_flush(be);

	pvnet_back_rx_skb(be, skb, gso_type);
	__skb_queue_tail(&be->rx_done, skb);
	be->tx_packets++;
	be->tx_bytes += skb->len;
	pvnet_back_stat_inc(be, PVNET_ST_RX_PACKETS);
	if (gso_type)
		pvnet_back_stat_inc(be, PVNET_ST_RX_GSO);

	/* room for the largest packet next time? */
	if (!pvnet_back_rx_ready(be, PVNET_BACK_RX_MAX_SLOTS))
		pvnet_back_rx_stop(be);
	if (!netdev_xmit_more() || netif_queue_stopped(dev))
		pvnet_back_rx_flush(be);
	return NETDEV_TX_OK;

drop:
	be->rx_dropped++;
	pvnet_back_stat_inc(be, PVNET_ST_RX_DROPPED);
	dev_kfree_skb_any(skb);
	return NETDEV_TX_OK;
}

/*
 * The frontend posted receive buffers (or just notified): wake the queue if
 * it waits and the largest packet fits now. Any context, no lock: xmit stops
 * the queue before its last look at req_prod, we look after the stop.
 */
static bool pvnet_back_rx_event(struct pvnet_back *be)
{
	struct net_device *dev = be->netdev;

	smp_mb();	/* req_prod after the queue state xmit left */
	if (!be->connected || !netif_queue_stopped(dev))
		return false;
	if (pvnet_back_rx_avail(be) < PVNET_BACK_RX_MAX_SLOTS)
		return false;
	del_timer(&be->rx_stall_timer);
	if (be->rx_stalled) {
		be->rx_stalled = false;
		netif_carrier_on(dev);
	}
	netif_wake_queue(dev);
	return true;
}

/* No receive buffers for rx_stall_timeout_ms: drop what waits for them. */
static void pvnet_back_rx_stall(struct timer_list *t)
{
	struct pvnet_back *be = from_timer(be, t, rx_stall_timer);

	if (!netif_queue_stopped(be->netdev) || !be->connected)
		return;
	if (!be->fe_rx_notify && pvnet_back_rx_event(be))
		return;
	be->rx_stalled = true;
	netif_carrier_off(be->netdev);
	if (__ratelimit(&be->ratelimit))
		netdev_info(be->netdev, "%s posts no receive buffers: carrier off\n",
			    be->xbdev->otherend);
}

/* ---- interrupts ---- */

static irqreturn_t pvnet_back_tx_interrupt(int irq, void *dev_id)
{
	struct pvnet_back *be = dev_id;

	if (READ_ONCE(be->disabled))
		return IRQ_HANDLED;	/* no EOI: no more events */
	if (RING_HAS_UNCONSUMED_REQUESTS(&be->tx)) {
		set_bit(0, &be->tx_eoi);
		napi_schedule(&be->napi);
	} else {
		xen_irq_lateeoi(irq, XEN_EOI_FLAG_SPURIOUS);
	}
	return IRQ_HANDLED;
}

static irqreturn_t pvnet_back_rx_interrupt(int irq, void *dev_id)
{
	struct pvnet_back *be = dev_id;
	bool work;

	if (READ_ONCE(be->disabled))
		return IRQ_HANDLED;
	work = pvnet_back_rx_event(be);
	xen_irq_lateeoi(irq, work ? 0 : XEN_EOI_FLAG_SPURIOUS);
	return IRQ_HANDLED;
}

/* One event channel for both rings. */
static irqreturn_t pvnet_back_interrupt(int irq, void *dev_id)
{
	struct pvnet_back *be = dev_id;
	bool rx_work;

	if (READ_ONCE(be->disabled))
		return IRQ_HANDLED;
	rx_work = pvnet_back_rx_event(be);
	if (RING_HAS_UNCONSUMED_REQUESTS(&be->tx)) {
		if (rx_work)
			be->tx_work = true;
		set_bit(0, &be->tx_eoi);
		napi_schedule(&be->napi);
	} else {
		xen_irq_lateeoi(irq, rx_work ? 0 : XEN_EOI_FLAG_SPURIOUS);
	}
	return IRQ_HANDLED;
}

/* ---- the net_device ---- */

static int pvnet_back_open(struct net_device *dev)
{
	struct pvnet_back *be = netdev_priv(dev);

	if (be->connected && !be->rx_stalled)
		netif_carrier_on(dev);
	netif_start_queue(dev);
	return 0;
}

static int pvnet_back_close(struct net_device *dev)
{
	netif_stop_queue(dev);
	return 0;
}

static void pvnet_back_get_stats64(struct net_device *dev, struct rtnl_link_stats64 *s)
{
	struct pvnet_back *be = netdev_priv(dev);

	s->rx_packets = READ_ONCE(be->rx_packets);
	s->rx_bytes = READ_ONCE(be->rx_bytes);
	s->rx_errors = READ_ONCE(be->tx_errors);
	s->rx_dropped = READ_ONCE(be->tx_dropped);
	s->tx_packets = READ_ONCE(be->tx_packets);
	s->tx_bytes = READ_ONCE(be->tx_bytes);
	s->tx_dropped = READ_ONCE(be->rx_dropped);
}

/* What the frontend takes decides what the stack may hand us. */
static netdev_features_t pvnet_back_fix_features(struct net_device *dev,
						 netdev_features_t features)
{
	struct pvnet_back *be = netdev_priv(dev);

	if (!be->fe_sg)
		features &= ~NETIF_F_SG;
	if (!be->fe_gso4)
		features &= ~NETIF_F_TSO;
	if (!be->fe_gso6)
		features &= ~NETIF_F_TSO6;
	if (!be->fe_csum)
		features &= ~NETIF_F_IP_CSUM;
	if (!be->fe_ipv6_csum)
		features &= ~NETIF_F_IPV6_CSUM;
	return features;
}

static int pvnet_back_change_mtu(struct net_device *dev, int mtu)
{
	struct pvnet_back *be = netdev_priv(dev);

	if (mtu > ETH_DATA_LEN && be->connected && !be->fe_sg)
		return -EINVAL;
	dev->mtu = mtu;
	return 0;
}

static const struct net_device_ops pvnet_back_netdev_ops = {
	.ndo_open = pvnet_back_open,
	.ndo_stop = pvnet_back_close,
	.ndo_start_xmit = pvnet_back_start_xmit,
	.ndo_get_stats64 = pvnet_back_get_stats64,
	.ndo_fix_features = pvnet_back_fix_features,
	.ndo_change_mtu = pvnet_back_change_mtu,
	.ndo_set_mac_address = eth_mac_addr,
	.ndo_validate_addr = eth_validate_addr,
};

static void pvnet_back_get_drvinfo(struct net_device *dev, struct ethtool_drvinfo *info)
{
	struct pvnet_back *be = netdev_priv(dev);

	strscpy(info->driver, "pvnet-back", sizeof(info->driver));
	strscpy(info->bus_info, dev_name(&be->xbdev->dev), sizeof(info->bus_info));
}

static const struct ethtool_ops pvnet_back_ethtool_ops = {
	.get_drvinfo = pvnet_back_get_drvinfo,
	.get_link = ethtool_op_get_link,
};

/* ---- connecting ---- */

/* Parse a MAC address written as xx:xx:xx:xx:xx:xx; 0 if well-formed. */
static int pvnet_back_read_mac(struct xenbus_device *dev, u8 *mac)
{
	char *str;
	int err = 0;

	str = xenbus_read(XBT_NIL, dev->nodename, PVNET_XS_MAC, NULL);
	if (IS_ERR(str))
		return PTR_ERR(str);
	if (strlen(str) != 17 || !mac_pton(str, mac))
		err = -EINVAL;
	kfree(str);
	return err;
}

/* Read one grant ref or event channel of the frontend: a u32, nothing else. */
static int pvnet_back_read_u32(struct xenbus_device *dev, const char *key, u32 *val)
{
	char *str;
	int err;

	str = xenbus_read(XBT_NIL, dev->otherend, key, NULL);
	if (IS_ERR(str))
		return PTR_ERR(str);
	err = kstrtou32(str, 10, val);
	kfree(str);
	return err;
}

/* The frontend's grant table can hold this many refs at most (0: unknown). */
static u32 pvnet_back_gref_limit(domid_t domid)
{
	struct gnttab_query_size query = { .dom = domid };

	if (HYPERVISOR_grant_table_op(GNTTABOP_query_size, &query, 1) ||
	    query.status != GNTST_okay || !query.max_nr_frames)
		return 0;
	return query.max_nr_frames * PVNET_GREFS_PER_FRAME;
}

static void pvnet_back_read_features(struct pvnet_back *be)
{
	const char *fe = be->xbdev->otherend;

	be->fe_rx_notify = !!xenbus_read_unsigned(fe, PVNET_XS_FEATURE_RX_NOTIFY, 0);
	be->fe_sg = !!xenbus_read_unsigned(fe, PVNET_XS_FEATURE_SG, 0);
	be->fe_gso4 = be->fe_sg && xenbus_read_unsigned(fe, PVNET_XS_FEATURE_GSO_TCPV4, 0);
	be->fe_gso6 = be->fe_sg && xenbus_read_unsigned(fe, PVNET_XS_FEATURE_GSO_TCPV6, 0);
	be->fe_csum = !xenbus_read_unsigned(fe, PVNET_XS_FEATURE_NO_CSUM_OFFLOAD, 0);
	be->fe_ipv6_csum = !!xenbus_read_unsigned(fe, PVNET_XS_FEATURE_IPV6_CSUM_OFFLOAD, 0);

	be->lim.max_slots = PVNET_NR_SLOTS_MIN;
	be->lim.flags = PVNET_TXV_GSO_TCPV4 | PVNET_TXV_GSO_TCPV6;
	be->lim.gref_limit = pvnet_back_gref_limit(be->domid);
	be->lim.max_size = READ_ONCE(be->netdev->mtu) + VLAN_ETH_HLEN;
}

static void pvnet_back_unmap(struct pvnet_back *be)
{
	if (be->tx_irq > 0)
		unbind_from_irqhandler(be->tx_irq, be);
	if (be->rx_irq > 0 && be->rx_irq != be->tx_irq)
		unbind_from_irqhandler(be->rx_irq, be);
	be->tx_irq = 0;
	be->rx_irq = 0;
	if (be->tx_addr)
		xenbus_unmap_ring_vfree(be->xbdev, be->tx_addr);
	if (be->rx_addr)
		xenbus_unmap_ring_vfree(be->xbdev, be->rx_addr);
	be->tx_addr = NULL;
	be->rx_addr = NULL;
}

/* Stop the data path and let go of the rings. Caller holds be->lock. */
static void pvnet_back_disconnect(struct pvnet_back *be)
{
	struct net_device *dev = be->netdev;

	if (!be->connected && !be->tx_addr && !be->rx_addr)
		return;
	netif_carrier_off(dev);
	netif_tx_disable(dev);
	del_timer_sync(&be->rx_stall_timer);
	if (be->connected) {
		/* no interrupt schedules NAPI once it is disabled */
		napi_disable(&be->napi);
		be->connected = false;
	}
	pvnet_back_unmap(be);
	netif_tx_lock_bh(dev);
	be->rx_nr_ops = 0;
	__skb_queue_purge(&be->rx_done);
	netif_tx_unlock_bh(dev);
	be->tx_nr_pkts = 0;
	be->tx_nr_ops = 0;
	clear_bit(0, &be->tx_eoi);
	be->tx_work = false;
	be->rx_stalled = false;
	netdev_info(dev, "disconnected from %s\n", be->xbdev->otherend);
}

static int pvnet_back_map(struct pvnet_back *be, u32 tx_ref, u32 rx_ref)
{
	struct xenbus_device *dev = be->xbdev;
	struct pvnet_tx_sring *txs;
	struct pvnet_rx_sring *rxs;
	grant_ref_t ref;
	int err;

	ref = tx_ref;
	err = xenbus_map_ring_valloc(dev, &ref, 1, &be->tx_addr);
	if (err) {
		be->tx_addr = NULL;
		return err;
	}
	ref = rx_ref;
	err = xenbus_map_ring_valloc(dev, &ref, 1, &be->rx_addr);
	if (err) {
		be->rx_addr = NULL;
		return err;
	}
	txs = be->tx_addr;
	rxs = be->rx_addr;
	BACK_RING_ATTACH(&be->tx, txs, READ_ONCE(txs->rsp_prod), XEN_PAGE_SIZE);
	BACK_RING_ATTACH(&be->rx, rxs, READ_ONCE(rxs->rsp_prod), XEN_PAGE_SIZE);
	if (pvnet_validate_ring_prod(READ_ONCE(txs->req_prod), be->tx.rsp_prod_pvt,
				     RING_SIZE(&be->tx)) ||
	    pvnet_validate_ring_prod(READ_ONCE(rxs->req_prod), be->rx.rsp_prod_pvt,
				     RING_SIZE(&be->rx))) {
		xenbus_dev_fatal(dev, -EPROTO, "frontend rings hold impossible indexes");
		return -EPROTO;
	}
	return 0;
}

static int pvnet_back_bind(struct pvnet_back *be)
{
	struct xenbus_device *dev = be->xbdev;
	u32 tx_evtchn, rx_evtchn;
	int err;

	/* split event channels if the frontend wrote them, else one */
	if (!pvnet_back_read_u32(dev, PVNET_XS_EVENT_CHANNEL_TX, &tx_evtchn) &&
	    !pvnet_back_read_u32(dev, PVNET_XS_EVENT_CHANNEL_RX, &rx_evtchn)) {
		err = bind_interdomain_evtchn_to_irqhandler_lateeoi(dev, tx_evtchn,
								    pvnet_back_tx_interrupt,
								    0, be->netdev->name, be);
		if (err < 0)
			goto fail;
		be->tx_irq = err;
		err = bind_interdomain_evtchn_to_irqhandler_lateeoi(dev, rx_evtchn,
								    pvnet_back_rx_interrupt,
								    0, be->netdev->name, be);
		if (err < 0)
			goto fail;
		be->rx_irq = err;
		return 0;
	}
	err = pvnet_back_read_u32(dev, PVNET_XS_EVENT_CHANNEL, &tx_evtchn);
	if (err) {
		xenbus_dev_fatal(dev, err, "reading %s/event-channel(-tx/rx)", dev->otherend);
		return err;
	}
	err = bind_interdomain_evtchn_to_irqhandler_lateeoi(dev, tx_evtchn,
							    pvnet_back_interrupt, 0,
							    be->netdev->name, be);
	if (err < 0)
		goto fail;
	be->tx_irq = err;
	be->rx_irq = err;
	return 0;
fail:
	xenbus_dev_fatal(dev, err, "binding event channels of %s", dev->otherend);
	return err;
}

/*
 * Read and check everything the frontend wrote, map its rings and start the
 * data path. Caller holds be->lock. Return: 0, or an error xenbus reported.
 */
static int pvnet_back_connect(struct pvnet_back *be)
{
	struct xenbus_device *dev = be->xbdev;
	struct net_device *ndev = be->netdev;
	u32 tx_ref, rx_ref, queues, rx_copy;
	int err;

	queues = xenbus_read_unsigned(dev->otherend, PVNET_XS_MULTI_QUEUE_NUM_QUEUES, 1);
	if (queues != 1) {
		xenbus_dev_fatal(dev, -EINVAL, "frontend asks for %u queues; 1 is offered",
				 queues);
		return -EINVAL;
	}
	err = pvnet_back_read_u32(dev, PVNET_XS_REQUEST_RX_COPY, &rx_copy);
	if (err || rx_copy != 1) {
		xenbus_dev_fatal(dev, -EOPNOTSUPP, "frontend does not ask for rx-copy");
		return -EOPNOTSUPP;
	}
	err = pvnet_back_read_mac(dev, be->fe_mac);
	if (err) {
		xenbus_dev_fatal(dev, err, "parsing %s/%s", dev->nodename, PVNET_XS_MAC);
		return err;
	}
	err = pvnet_back_read_u32(dev, PVNET_XS_TX_RING_REF, &tx_ref);
	if (!err)
		err = pvnet_back_read_u32(dev, PVNET_XS_RX_RING_REF, &rx_ref);
	if (err) {
		xenbus_dev_fatal(dev, err, "reading %s/{tx,rx}-ring-ref", dev->otherend);
		return err;
	}
	pvnet_back_read_features(be);

	/*
	 * A new connection starts trusted: clear the verdict on the previous one
	 * before the new event channel can fire (its handler gives a disabled
	 * interface no EOI, which would mask the channel for good).
	 */
	WRITE_ONCE(be->disabled, false);
	err = pvnet_back_map(be, tx_ref, rx_ref);
	if (!err)
		err = pvnet_back_bind(be);
	if (err) {
		pvnet_back_unmap(be);
		return err;
	}

	rtnl_lock();
	netdev_update_features(ndev);
	if (!be->fe_sg && ndev->mtu > ETH_DATA_LEN)
		dev_set_mtu(ndev, ETH_DATA_LEN);
	rtnl_unlock();

	be->connected = true;
	napi_enable(&be->napi);
	if (netif_running(ndev)) {
		netif_carrier_on(ndev);
		netif_wake_queue(ndev);
	}
	/* requests the frontend queued before we were there (no EOI owed) */
	napi_schedule(&be->napi);
	netdev_info(ndev, "connected to %s: %s event channel(s), sg %d gso %d/%d csum %d, grefs < %u\n",
		    dev->otherend, be->tx_irq == be->rx_irq ? "one" : "two", be->fe_sg,
		    be->fe_gso4, be->fe_gso6, be->fe_csum, be->lim.gref_limit);
	return 0;
}

/* ---- the XenBus state machine (as xen-netback's set_backend_state) ---- */

static void pvnet_back_switch(struct pvnet_back *be, enum xenbus_state state)
{
	be->state = state;
	/* Connected only once the hotplug script has set the device up */
	if (state != PVNET_XB_CONNECTED || be->hotplug_done)
		xenbus_switch_state(be->xbdev, state);
}

/* Walk to @target by the shortest allowed path. Caller holds be->lock. */
static void pvnet_back_set_state(struct pvnet_back *be, enum xenbus_state target)
{
	while (be->state != target) {
		switch (be->state) {
		case PVNET_XB_INITIALISING:
		case PVNET_XB_CLOSED:
			if (target == PVNET_XB_CLOSED || (be->state == PVNET_XB_CLOSED &&
							  target == PVNET_XB_CLOSING))
				pvnet_back_switch(be, target);
			else
				pvnet_back_switch(be, PVNET_XB_INITWAIT);
			break;
		case PVNET_XB_INITWAIT:
			if (target == PVNET_XB_CONNECTED) {
				if (pvnet_back_connect(be))
					return;	/* stay in InitWait: xenbus has the error */
				pvnet_back_switch(be, PVNET_XB_CONNECTED);
			} else {
				pvnet_back_switch(be, PVNET_XB_CLOSING);
			}
			break;
		case PVNET_XB_CONNECTED:
			pvnet_back_disconnect(be);
			pvnet_back_switch(be, PVNET_XB_CLOSING);
			break;
		case PVNET_XB_CLOSING:
			pvnet_back_switch(be, PVNET_XB_CLOSED);
			break;
		default:
			return;
		}
	}
}

static void pvnet_back_hotplug_changed(struct xenbus_watch *watch, const char *path,
				       const char *token)
{
	struct pvnet_back *be = container_of(watch, struct pvnet_back, hotplug_watch);
	char *str;

	str = xenbus_read(XBT_NIL, be->xbdev->nodename, PVNET_XS_HOTPLUG_STATUS, NULL);
	if (IS_ERR(str))
		return;
	mutex_lock(&be->lock);
	if (!be->hotplug_done && !strcmp(str, PVNET_HOTPLUG_CONNECTED)) {
		be->hotplug_done = true;
		if (be->state == PVNET_XB_CONNECTED)
			xenbus_switch_state(be->xbdev, PVNET_XB_CONNECTED);
	}
	mutex_unlock(&be->lock);
	kfree(str);
}

static void pvnet_back_frontend_changed(struct xenbus_device *dev,
					enum xenbus_state state)
{
	struct pvnet_back *be = dev_get_drvdata(&dev->dev);
	bool unregister = false;

	mutex_lock(&be->lock);
	switch (state) {
	case PVNET_XB_INITIALISING:
		pvnet_back_set_state(be, PVNET_XB_INITWAIT);
		break;
	case PVNET_XB_INITIALISED:
		break;
	case PVNET_XB_CONNECTED:
		/*
		 * Only from InitWait: after Closing (the toolstack's, or ours for a
		 * hostile frontend) the frontend starts over from Initialising, and
		 * a late event must not map its old rings again.
		 */
		if (be->state == PVNET_XB_INITWAIT)
			pvnet_back_set_state(be, PVNET_XB_CONNECTED);
		break;
	case PVNET_XB_RECONFIGURING:
		xenbus_switch_state(dev, (enum xenbus_state)8);	/* Reconfigured */
		break;
	case PVNET_XB_CLOSING:
		pvnet_back_set_state(be, PVNET_XB_CLOSING);
		break;
	case PVNET_XB_CLOSED:
		pvnet_back_set_state(be, PVNET_XB_CLOSED);
		unregister = !xenbus_read_unsigned(dev->nodename, PVNET_XS_ONLINE, 0);
		break;
	case PVNET_XB_UNKNOWN:
		pvnet_back_set_state(be, PVNET_XB_CLOSED);
		unregister = true;
		break;
	default:
		xenbus_dev_fatal(dev, -EINVAL, "saw state %d at frontend", state);
		break;
	}
	mutex_unlock(&be->lock);
	if (unregister)
		device_unregister(&dev->dev);	/* remove() frees be */
}

/* The workqueue's side of a fatal verdict (never NAPI, never xenwatch). */
static void pvnet_back_disable_work(struct work_struct *work)
{
	struct pvnet_back *be = container_of(work, struct pvnet_back, disable_work);

	if (__ratelimit(&be->ratelimit))
		netdev_err(be->netdev, "frontend %s is hostile: %s; disabling the interface\n",
			   be->xbdev->otherend, pvnet_validate_strerror(be->disable_err));
	mutex_lock(&be->lock);
	if (be->state == PVNET_XB_CONNECTED)
		pvnet_back_set_state(be, PVNET_XB_CLOSING);
	mutex_unlock(&be->lock);
}

/* ---- statistics ---- */

static struct device_attribute pvnet_back_stat_attrs[PVNET_ST_COUNT];
static struct attribute *pvnet_back_stat_attr_list[PVNET_ST_COUNT + 1];

static const struct attribute_group pvnet_back_stat_group = {
	.name = "statistics",
	.attrs = pvnet_back_stat_attr_list,
};

static ssize_t pvnet_back_stat_show(struct device *d, struct device_attribute *attr,
				    char *buf)
{
	struct pvnet_back *be = dev_get_drvdata(d);
	unsigned int st = attr - pvnet_back_stat_attrs;

	return sysfs_emit(buf, "%lld\n", atomic64_read(&be->stats[st]));
}

static void pvnet_back_stat_init(void)
{
	unsigned int i, n = 0;

	for (i = 0; i < PVNET_ST_COUNT; i++) {
		struct device_attribute *da = &pvnet_back_stat_attrs[i];

		if (!pvnet_back_stat_names[i])
			continue;
		sysfs_attr_init(&da->attr);
		da->attr.name = pvnet_back_stat_names[i];
		da->attr.mode = 0444;
		da->show = pvnet_back_stat_show;
		pvnet_back_stat_attr_list[n++] = &da->attr;
	}
	pvnet_back_stat_attr_list[n] = NULL;
}

static int pvnet_back_stats_show(struct seq_file *m, void *unused)
{
	struct pvnet_back *be = m->private;
	unsigned int i;

	seq_printf(m, "interface %s\n", be->netdev->name);
	seq_printf(m, "connected %d\n", be->connected);
	seq_printf(m, "disabled %d\n", READ_ONCE(be->disabled));
	seq_printf(m, "event_channels %u\n", be->tx_irq && be->tx_irq == be->rx_irq ? 1 :
		   be->tx_irq ? 2 : 0);
	seq_printf(m, "frontend_mac %pM\n", be->fe_mac);
	seq_printf(m, "frontend_sg %d\nfrontend_gso_tcpv4 %d\nfrontend_gso_tcpv6 %d\n",
		   be->fe_sg, be->fe_gso4, be->fe_gso6);
	seq_printf(m, "gref_limit %u\n", be->lim.gref_limit);
	for (i = 0; i < PVNET_ST_COUNT; i++)
		if (pvnet_back_stat_names[i])
			seq_printf(m, "%s %lld\n", pvnet_back_stat_names[i],
				   atomic64_read(&be->stats[i]));
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(pvnet_back_stats);

/* ---- the xenbus driver ---- */

static int pvnet_back_write_features(struct xenbus_device *dev)
{
	static const struct {
		const char *key;
		unsigned int val;
	} keys[] = {
		{ PVNET_XS_FEATURE_SG, 1 },
		{ PVNET_XS_FEATURE_GSO_TCPV4, 1 },
		{ PVNET_XS_FEATURE_GSO_TCPV6, 1 },
		{ PVNET_XS_FEATURE_IPV6_CSUM_OFFLOAD, 1 },
		{ PVNET_XS_FEATURE_RX_COPY, 1 },
		{ PVNET_XS_FEATURE_RX_FLIP, 0 },
		{ PVNET_XS_FEATURE_MULTICAST_CONTROL, 0 },
		{ PVNET_XS_FEATURE_SPLIT_EVENT_CHANNELS, 1 },
		{ PVNET_XS_FEATURE_XDP_HEADROOM, 0 },
	};
	struct xenbus_transaction xbt;
	unsigned int i;
	int err;

again:
	err = xenbus_transaction_start(&xbt);
	if (err)
		return err;
	for (i = 0; i < ARRAY_SIZE(keys) && !err; i++)
		err = xenbus_printf(xbt, dev->nodename, keys[i].key, "%u", keys[i].val);
	if (err) {
		xenbus_transaction_end(xbt, 1);
		return err;
	}
	err = xenbus_transaction_end(xbt, 0);
	if (err == -EAGAIN)
		goto again;
	return err;
}

static void pvnet_back_free(struct pvnet_back *be)
{
	kfree(be->txpkts);
	kfree(be->tx_ops);
	kfree(be->rx_ops);
	kfree(be->rx_opdst);
	kfree(be->hotplug_script);
}

static void pvnet_back_remove(struct xenbus_device *dev)
{
	struct pvnet_back *be = dev_get_drvdata(&dev->dev);
	struct net_device *ndev;

	if (!be)
		return;
	ndev = be->netdev;
	if (be->hotplug_watch.node) {
		unregister_xenbus_watch(&be->hotplug_watch);
		kfree(be->hotplug_watch.node);
		be->hotplug_watch.node = NULL;
	}
	xenbus_rm(XBT_NIL, dev->nodename, PVNET_XS_HOTPLUG_STATUS);
	if (be->sysfs)
		sysfs_remove_group(&dev->dev.kobj, &pvnet_back_stat_group);
	debugfs_remove_recursive(be->debugfs);

	/* no NAPI and no xmit after this, so nothing queues the work again */
	mutex_lock(&be->lock);
	pvnet_back_disconnect(be);
	mutex_unlock(&be->lock);
	cancel_work_sync(&be->disable_work);
	if (ndev->reg_state == NETREG_REGISTERED)
		unregister_netdev(ndev);
	netif_napi_del(&be->napi);
	dev_set_drvdata(&dev->dev, NULL);
	pvnet_back_free(be);
	free_netdev(ndev);
}

static int pvnet_back_uevent(struct xenbus_device *xdev, struct kobj_uevent_env *env)
{
	struct pvnet_back *be = dev_get_drvdata(&xdev->dev);

	if (!be)
		return 0;
	if (be->hotplug_script && add_uevent_var(env, "script=%s", be->hotplug_script))
		return -ENOMEM;
	return add_uevent_var(env, "vif=%s", be->netdev->name);
}

static void pvnet_back_setup(struct net_device *ndev)
{
	static const u8 dummy_mac[ETH_ALEN] = { 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff };

	ether_setup(ndev);
	ndev->netdev_ops = &pvnet_back_netdev_ops;
	ndev->ethtool_ops = &pvnet_back_ethtool_ops;
	ndev->hw_features = NETIF_F_SG | NETIF_F_IP_CSUM | NETIF_F_IPV6_CSUM |
			    NETIF_F_TSO | NETIF_F_TSO6;
	ndev->features = ndev->hw_features | NETIF_F_RXCSUM;
	ndev->priv_flags |= IFF_LIVE_ADDR_CHANGE;
	ndev->tx_queue_len = PVNET_BACK_QUEUE_LEN;
	ndev->min_mtu = ETH_MIN_MTU;
	ndev->max_mtu = PVNET_MAX_TX_SIZE - VLAN_ETH_HLEN;
	/* Xen's convention: a backend interface never takes the bridge's address */
	eth_hw_addr_set(ndev, dummy_mac);
}

static int pvnet_back_alloc(struct pvnet_back *be)
{
	be->txpkts = kcalloc(PVNET_BACK_TX_BATCH, sizeof(*be->txpkts), GFP_KERNEL);
	be->tx_ops = kcalloc(PVNET_BACK_TX_OPS, sizeof(*be->tx_ops), GFP_KERNEL);
	be->rx_ops = kcalloc(PVNET_BACK_RX_OPS, sizeof(*be->rx_ops), GFP_KERNEL);
	be->rx_opdst = kcalloc(PVNET_BACK_RX_OPS, sizeof(*be->rx_opdst), GFP_KERNEL);
	if (!be->txpkts || !be->tx_ops || !be->rx_ops || !be->rx_opdst)
		return -ENOMEM;
	return 0;
}

static int pvnet_back_probe(struct xenbus_device *dev, const struct xenbus_device_id *id)
{
	const char *prefix = strcmp(devtype, PVNET_DEVICE_TYPE_VIF) ? "pvnetb" : "vif";
	char name[IFNAMSIZ];
	struct net_device *ndev;
	struct pvnet_back *be;
	unsigned int handle;
	char *script, dbgname[32];
	int err;

	err = xenbus_scanf(XBT_NIL, dev->nodename, PVNET_XS_HANDLE, "%u", &handle);
	if (err != 1 || handle > U16_MAX) {
		xenbus_dev_fatal(dev, -EINVAL, "reading %s/%s", dev->nodename, PVNET_XS_HANDLE);
		return -EINVAL;
	}
	if (snprintf(name, sizeof(name), "%s%u.%u", prefix, dev->otherend_id, handle) >=
	    sizeof(name))
		snprintf(name, sizeof(name), "%s%%d", prefix);

	ndev = alloc_netdev(sizeof(*be), name, NET_NAME_ENUM, pvnet_back_setup);
	if (!ndev) {
		xenbus_dev_fatal(dev, -ENOMEM, "allocating the interface");
		return -ENOMEM;
	}
	SET_NETDEV_DEV(ndev, &dev->dev);
	be = netdev_priv(ndev);
	be->xbdev = dev;
	be->netdev = ndev;
	be->domid = dev->otherend_id;
	be->handle = handle;
	be->state = PVNET_XB_INITIALISING;
	mutex_init(&be->lock);
	INIT_WORK(&be->disable_work, pvnet_back_disable_work);
	ratelimit_state_init(&be->ratelimit, 5 * HZ, 10);
	ratelimit_set_flags(&be->ratelimit, RATELIMIT_MSG_ON_RELEASE);
	timer_setup(&be->rx_stall_timer, pvnet_back_rx_stall, 0);
	__skb_queue_head_init(&be->rx_done);
	netif_napi_add(ndev, &be->napi, pvnet_back_poll);
	netif_carrier_off(ndev);
	dev_set_drvdata(&dev->dev, be);

	err = pvnet_back_alloc(be);
	if (err) {
		xenbus_dev_fatal(dev, err, "allocating buffers");
		goto fail;
	}
	err = pvnet_back_write_features(dev);
	if (err) {
		xenbus_dev_fatal(dev, err, "writing the features");
		goto fail;
	}
	script = xenbus_read(XBT_NIL, dev->nodename, PVNET_XS_SCRIPT, NULL);
	be->hotplug_script = IS_ERR(script) ? NULL : script;

	err = register_netdev(ndev);
	if (err) {
		xenbus_dev_fatal(dev, err, "registering %s", name);
		goto fail;
	}
	err = sysfs_create_group(&dev->dev.kobj, &pvnet_back_stat_group);
	if (err) {
		xenbus_dev_fatal(dev, err, "creating the statistics");
		goto fail;
	}
	be->sysfs = true;
	snprintf(dbgname, sizeof(dbgname), "%u-%u", be->domid, handle);
	be->debugfs = debugfs_create_dir(dbgname, pvnet_back_debugfs_root);
	debugfs_create_file("stats", 0444, be->debugfs, be, &pvnet_back_stats_fops);

	/* Connected waits for the hotplug script (libxl writes hotplug-status "") */
	err = xenbus_watch_pathfmt(dev, &be->hotplug_watch, NULL, pvnet_back_hotplug_changed,
				   "%s/%s", dev->nodename, PVNET_XS_HOTPLUG_STATUS);
	if (err)
		goto fail;

	mutex_lock(&be->lock);
	pvnet_back_set_state(be, PVNET_XB_INITWAIT);
	mutex_unlock(&be->lock);
	kobject_uevent(&dev->dev.kobj, KOBJ_ONLINE);
	netdev_info(ndev, "serving %s (%s)\n", dev->nodename, dev->otherend);
	return 0;

fail:
	pvnet_back_remove(dev);
	return err;
}

static struct xenbus_device_id pvnet_back_ids[] = {
	{ PVNET_DEVICE_TYPE },	/* the devtype parameter, at init */
	{ "" }
};

static struct xenbus_driver pvnet_back_driver = {
	.name = "pvnet-back",
	.ids = pvnet_back_ids,
	.probe = pvnet_back_probe,
	.remove = pvnet_back_remove,
	.uevent = pvnet_back_uevent,
	.otherend_changed = pvnet_back_frontend_changed,
	.allow_rebind = true,
};

static int __init pvnet_back_init(void)
{
	int err;

	if (!xen_domain())
		return -ENODEV;
	if (!IS_ENABLED(CONFIG_XEN_BACKEND)) {
		pr_err("this kernel has no Xen backend support (CONFIG_XEN_BACKEND)\n");
		return -ENODEV;
	}
	if (!devtype || (strcmp(devtype, PVNET_DEVICE_TYPE) &&
			 strcmp(devtype, PVNET_DEVICE_TYPE_VIF))) {
		pr_err("devtype must be %s or %s, not \"%s\"\n", PVNET_DEVICE_TYPE,
		       PVNET_DEVICE_TYPE_VIF, devtype ?: "");
		return -EINVAL;
	}
	strscpy(pvnet_back_ids[0].devicetype, devtype, sizeof(pvnet_back_ids[0].devicetype));
	pvnet_back_stat_init();
	pvnet_back_wq = alloc_workqueue("pvnet-back", WQ_UNBOUND | WQ_MEM_RECLAIM, 0);
	if (!pvnet_back_wq)
		return -ENOMEM;
	pvnet_back_debugfs_root = debugfs_create_dir("pvnet-back", NULL);

	err = xenbus_register_backend(&pvnet_back_driver);
	if (err) {
		debugfs_remove_recursive(pvnet_back_debugfs_root);
		destroy_workqueue(pvnet_back_wq);
		return err;
	}
	pr_info("serving backend device type \"%s\"\n", devtype);
	return 0;
}
module_init(pvnet_back_init);

static void __exit pvnet_back_exit(void)
{
	xenbus_unregister_driver(&pvnet_back_driver);
	debugfs_remove_recursive(pvnet_back_debugfs_root);
	destroy_workqueue(pvnet_back_wq);
}
module_exit(pvnet_back_exit);

MODULE_DESCRIPTION("pvkit Xen PV network backend (netif, grant copy)");
MODULE_LICENSE("GPL");
MODULE_ALIAS("xen-backend:pvnet");
