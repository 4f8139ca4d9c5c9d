// SPDX-License-Identifier: GPL-2.0
/*
 * pvnet-front: the domU end of pvkit's Xen PV split network driver (netif).
 *
 * It speaks the standard netif protocol (pvnet_proto.h), so it works against
 * upstream xen-netback as well as pvkit's pvnet-back. One queue, one event
 * channel (lateeoi), one NAPI context for both rings.
 *
 * Buffers are granted once per connection, not per packet: every transmit
 * ring slot id and every receive ring slot owns one page, zeroed before it is
 * first granted (no stale guest memory is ever shared: the XSA-403 class),
 * granted read-only (transmit) or writable (receive) for as long as the
 * connection lasts. A transmitted packet is copied into the pages of the
 * slots it takes and its skb freed at once; a received packet is copied out
 * of its slots, which are posted again straight away. The backend copies
 * (rx-copy, required) or maps (xen-netback's transmit path) those grants.
 *
 * - probe makes the net_device eth<N> (MAC from XenStore, carrier off); the
 *   backend's InitWait sets up the rings, grants and event channel and writes
 *   them with the features to XenStore; carrier follows the backend's state.
 * - scatter-gather (MTU up to 9000), checksum offload and TSO (v4/v6) are
 *   used as far as the backend advertises them.
 * - Backend Closing/Closed: the rings go, packets in flight are dropped, the
 *   frontend closes; unbind/bind and suspend/resume reconnect with new rings.
 * - Responses from the backend are checked (ids, sizes, slot counts, ring
 *   indexes); a backend that breaks the protocol gets the device closed.
 * - debugfs pvnet-front/<ifname>/{stats,inject,inject_result}: inject puts
 *   one malformed packet on the transmit ring, to test a backend.
 */

#define pr_fmt(fmt) "pvnet-front: " fmt

#include <linux/debugfs.h>
#include <linux/etherdevice.h>
#include <linux/ethtool.h>
#include <linux/if_vlan.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/netdevice.h>
#include <linux/rtnetlink.h>
#include <linux/seq_file.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>

#include <xen/events.h>
#include <xen/grant_table.h>
#include <xen/page.h>
#include <xen/xen.h>
#include <xen/xenbus.h>
#include <xen/interface/grant_table.h>
#include <xen/interface/io/ring.h>

#include "pvnet_proto.h"

DEFINE_RING_TYPES(pvnet_tx, struct pvnet_tx_request, struct pvnet_tx_response);
DEFINE_RING_TYPES(pvnet_rx, struct pvnet_rx_request, struct pvnet_rx_response);

static_assert(__CONST_RING_SIZE(pvnet_tx, PVNET_PAGE_SIZE) == PVNET_TX_RING_SIZE);
static_assert(__CONST_RING_SIZE(pvnet_rx, PVNET_PAGE_SIZE) == PVNET_RX_RING_SIZE);
static_assert(PAGE_SIZE == XEN_PAGE_SIZE && PVNET_PAGE_SIZE == XEN_PAGE_SIZE);
static_assert(sizeof(struct pvnet_extra_info) <= sizeof(struct pvnet_tx_request));

/* XenbusState values as XenStore carries them (the enumerators upset checkpatch). */
#define PVNET_XB_INITIALISING	((enum xenbus_state)1)
#define PVNET_XB_INITWAIT	((enum xenbus_state)2)
#define PVNET_XB_INITIALISED	((enum xenbus_state)3)
#define PVNET_XB_CONNECTED	((enum xenbus_state)4)
#define PVNET_XB_CLOSING	((enum xenbus_state)5)
#define PVNET_XB_CLOSED		((enum xenbus_state)6)

#define TX_SLOTS		PVNET_TX_RING_SIZE
#define RX_SLOTS		PVNET_RX_RING_SIZE
/* Data slots of the largest packet (64 KiB packed into pages), and its extra. */
#define PVNET_FRONT_MAX_SLOTS	DIV_ROUND_UP(PVNET_MAX_TX_SIZE, XEN_PAGE_SIZE)
/* Received packets up to this size are copied into the skb's linear part. */
#define PVNET_FRONT_RX_LINEAR	2048
/* Larger ones: this much linear (the headers), the rest in page fragments. */
#define PVNET_FRONT_RX_HEAD	256
/* After `prod`: how long the backend gets to close before we do. */
#define PVNET_PROD_GRACE	(30 * HZ)
/* The ethertype of injected frames: IEEE local experimental ethertype 1. */
#define PVNET_INJECT_ETHERTYPE	0x88b5
#define PVNET_INJECT_FRAME	60

static char *devtype = PVNET_DEVICE_TYPE;
module_param(devtype, charp, 0444);
MODULE_PARM_DESC(devtype, "XenStore device type to bind: pvnet (default) or vif (then xen-netfront must not bind it)");

enum pvnet_state {
	PVNET_DISCONNECTED,	/* no rings */
	PVNET_CONNECTED,	/* rings up: packets flow once the backend is Connected */
	PVNET_BROKEN,		/* protocol violation: the rings are not used any more */
};

enum pvnet_inject_mode {
	/* the backend drops these: every slot answered with an error */
	PVNET_INJ_RUNT,		/* first slot shorter than an Ethernet header */
	PVNET_INJ_TOOBIG,	/* a 4096-byte frame at MTU 1500 */
	PVNET_INJ_GREF,		/* a reserved grant reference */
	PVNET_INJ_SIZES,	/* slot sizes add up to more than the packet */
	PVNET_INJ_SLOTS,	/* 19 slots */
	PVNET_INJ_MCAST,	/* multicast extra, not advertised */
	/* well-formed but unusual: the backend takes these */
	PVNET_INJ_SPLIT,	/* XSA-423/432: a frame split into 18 tiny slots */
	PVNET_INJ_ZERO,		/* XSA-448: a frame, then 17 zero-length slots */
	/* these break the ring: the backend disables the interface */
	PVNET_INJ_PAGECROSS,	/* a slot crossing its page */
	PVNET_INJ_CHAIN,	/* more_data on the last request on the ring */
	PVNET_INJ_EXTRATYPE,	/* extra-info type 0 */
	PVNET_INJ_GSO0,		/* GSO extra of size 0 */
	PVNET_INJ_FATALSLOTS,	/* 21 slots */
	PVNET_INJ_PROD,		/* req_prod far beyond the requests */
	PVNET_INJ_COUNT
};

static const char * const pvnet_inject_names[PVNET_INJ_COUNT] = {
	[PVNET_INJ_RUNT] = "runt",
	[PVNET_INJ_TOOBIG] = "toobig",
	[PVNET_INJ_GREF] = "gref",
	[PVNET_INJ_SIZES] = "sizes",
	[PVNET_INJ_SLOTS] = "slots",
	[PVNET_INJ_MCAST] = "mcast",
	[PVNET_INJ_SPLIT] = "split",
	[PVNET_INJ_ZERO] = "zero",
	[PVNET_INJ_PAGECROSS] = "pagecross",
	[PVNET_INJ_CHAIN] = "chain",
	[PVNET_INJ_EXTRATYPE] = "extratype",
	[PVNET_INJ_GSO0] = "gso0",
	[PVNET_INJ_FATALSLOTS] = "fatalslots",
	[PVNET_INJ_PROD] = "prod",
};

struct pvnet_inject {
	int mode;		/* enum pvnet_inject_mode, -1 before the first one */
	bool pending;		/* on the ring, not answered */
	bool lost;		/* the connection went away before the answer */
	int status;		/* the first response's status */
	u16 id;			/* of the injected packet's first slot */
};

struct pvnet_front_stats {
	u64 rx_packets, rx_bytes, tx_packets, tx_bytes;
	u64 rx_errors, rx_dropped, tx_errors, tx_dropped;
	u64 rx_gso, tx_gso, tx_slots, rx_slots, tx_ring_full, rx_csum_errors;
};

struct pvnet_front {
	struct xenbus_device *xbdev;
	struct net_device *netdev;
	struct mutex mutex;		/* connect, close, resume, remove, inject */
	spinlock_t tx_lock;		/* transmit ring, ids, inject (xmit vs NAPI) */
	enum pvnet_state state;
	bool backend_connected;		/* the backend said Connected */
	unsigned int handle;

	/* the connection */
	struct pvnet_tx_front_ring tx;
	struct pvnet_rx_front_ring rx;
	grant_ref_t tx_ring_ref;
	grant_ref_t rx_ring_ref;
	evtchn_port_t evtchn;
	int irq;
	struct napi_struct napi;
	unsigned long eoi_pending;	/* bit 0: an EOI is owed */
	bool work_since_irq;
	bool be_sg, be_gso4, be_gso6, be_ipv6_csum;

	/* buffers: one page per slot id, granted for the whole connection */
	struct page *tx_pages[TX_SLOTS];
	grant_ref_t tx_grefs[TX_SLOTS];
	u16 tx_free[TX_SLOTS];		/* a stack of free transmit ids */
	unsigned int tx_nr_free;
	bool tx_busy[TX_SLOTS];		/* id on the ring, not answered */
	struct page *rx_pages[RX_SLOTS];
	grant_ref_t rx_grefs[RX_SLOTS];

	struct delayed_work fatal_work;
	const char *fatal_reason;
	struct pvnet_front_stats stats;
	struct pvnet_inject inject;
	struct dentry *debugfs;
};

static struct dentry *pvnet_debugfs_root;

/* ---- buffers and grants ---- */

/* Grant every slot page (allocating and zeroing the missing ones). */
static int pvnet_grant_pages(struct pvnet_front *np)
{
	domid_t domid = np->xbdev->otherend_id;
	unsigned int i;
	int ref;

	for (i = 0; i < TX_SLOTS + RX_SLOTS; i++) {
		bool tx = i < TX_SLOTS;
		struct page **page = tx ? &np->tx_pages[i] : &np->rx_pages[i - TX_SLOTS];
		grant_ref_t *gref = tx ? &np->tx_grefs[i] : &np->rx_grefs[i - TX_SLOTS];

		if (!*page) {
			*page = alloc_page(GFP_KERNEL | __GFP_ZERO);
			if (!*page)
				return -ENOMEM;
		}
		ref = gnttab_grant_foreign_access(domid, xen_page_to_gfn(*page), tx);
		if (ref < 0)
			return ref;
		*gref = ref;
	}
	return 0;
}

/*
 * End the backend's access to every slot page. A page the backend still has
 * mapped goes to the grant table, which frees it once unmapped; the next
 * connection allocates a fresh zeroed one.
 */
static void pvnet_ungrant_pages(struct pvnet_front *np)
{
	unsigned int i;

	for (i = 0; i < TX_SLOTS + RX_SLOTS; i++) {
		bool tx = i < TX_SLOTS;
		struct page **page = tx ? &np->tx_pages[i] : &np->rx_pages[i - TX_SLOTS];
		grant_ref_t *gref = tx ? &np->tx_grefs[i] : &np->rx_grefs[i - TX_SLOTS];

		if (*gref == INVALID_GRANT_REF)
			continue;
		if (!gnttab_try_end_foreign_access(*gref)) {
			gnttab_end_foreign_access(*gref, *page);
			*page = NULL;
		}
		*gref = INVALID_GRANT_REF;
	}
}

static void pvnet_free_pages(struct pvnet_front *np)
{
	unsigned int i;

	for (i = 0; i < TX_SLOTS; i++)
		if (np->tx_pages[i])
			__free_page(np->tx_pages[i]);
	for (i = 0; i < RX_SLOTS; i++)
		if (np->rx_pages[i])
			__free_page(np->rx_pages[i]);
}

/* ---- transmit ---- */

static unsigned int pvnet_tx_room(struct pvnet_front *np)
{
	return min_t(unsigned int, np->tx_nr_free, RING_FREE_REQUESTS(&np->tx));
}

/* Take a free transmit id. Caller holds tx_lock and checked tx_room. */
static u16 pvnet_tx_get_id(struct pvnet_front *np)
{
	u16 id = np->tx_free[--np->tx_nr_free];

	np->tx_busy[id] = true;
	return id;
}

static struct pvnet_tx_request *pvnet_tx_next(struct pvnet_front *np)
{
	return RING_GET_REQUEST(&np->tx, np->tx.req_prod_pvt++);
}

static void pvnet_tx_push(struct pvnet_front *np)
{
	int notify;

	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&np->tx, notify);
	if (notify)
		notify_remote_via_irq(np->irq);
}

static u16 pvnet_tx_csum_flags(const struct sk_buff *skb)
{
	if (skb->ip_summed == CHECKSUM_PARTIAL)
		return PVNET_TXF_CSUM_BLANK | PVNET_TXF_DATA_VALIDATED;
	if (skb->ip_summed == CHECKSUM_UNNECESSARY)
		return PVNET_TXF_DATA_VALIDATED;
	return 0;
}

static unsigned int pvnet_gso_type(const struct sk_buff *skb)
{
	if (!skb_is_gso(skb))
		return PVNET_GSO_TYPE_NONE;
	return skb_shinfo(skb)->gso_type & SKB_GSO_TCPV6 ? PVNET_GSO_TYPE_TCPV6 :
	       PVNET_GSO_TYPE_TCPV4;
}

static netdev_tx_t pvnet_start_xmit(struct sk_buff *skb, struct net_device *dev)
{
	struct pvnet_front *np = netdev_priv(dev);
	unsigned int len = skb->len, slots, gso, off, i;
	struct pvnet_tx_request *req, *first;
	u16 id;

	slots = DIV_ROUND_UP(len, XEN_PAGE_SIZE);
	gso = pvnet_gso_type(skb);
	if (unlikely(!len || len > PVNET_MAX_TX_SIZE || (slots > 1 && !np->be_sg) ||
		     (gso == PVNET_GSO_TYPE_TCPV4 && !np->be_gso4) ||
		     (gso == PVNET_GSO_TYPE_TCPV6 && !np->be_gso6)))
		goto drop;

	spin_lock(&np->tx_lock);
	if (unlikely(np->state != PVNET_CONNECTED)) {
		spin_unlock(&np->tx_lock);
		goto drop;
	}
	if (unlikely(pvnet_tx_room(np) < slots + !!gso)) {
		/* cannot be: the queue stops before the room runs out */
		np->stats.tx_ring_full++;
		netif_stop_queue(dev);
		spin_unlock(&np->tx_lock);
		return NETDEV_TX_BUSY;
	}

	first = NULL;
	for (i = 0, off = 0; i < slots; i++, off += XEN_PAGE_SIZE) {
		unsigned int chunk = min_t(unsigned int, len - off, XEN_PAGE_SIZE);

		id = pvnet_tx_get_id(np);
		/* the pages are ours for good: a copy, then the skb can go */
		skb_copy_bits(skb, off, page_address(np->tx_pages[id]), chunk);
		req = pvnet_tx_next(np);
		req->gref = np->tx_grefs[id];
		req->offset = 0;
		req->id = id;
		req->size = chunk;
		req->flags = i + 1 < slots ? PVNET_TXF_MORE_DATA : 0;
		if (!first) {
			first = req;
			first->size = len;
			first->flags |= pvnet_tx_csum_flags(skb);
			if (gso) {
				struct pvnet_extra_info *extra = (void *)pvnet_tx_next(np);

				first->flags |= PVNET_TXF_EXTRA_INFO;
				memset(extra, 0, sizeof(*extra));
				extra->type = PVNET_EXTRA_TYPE_GSO;
				extra->u.gso.type = gso;
				extra->u.gso.size = skb_shinfo(skb)->gso_size;
			}
		}
	}
	pvnet_tx_push(np);
	np->stats.tx_packets++;
	np->stats.tx_bytes += len;
	np->stats.tx_slots += slots;
	np->stats.tx_gso += !!gso;
	if (pvnet_tx_room(np) < PVNET_FRONT_MAX_SLOTS + 1)
		netif_stop_queue(dev);
	spin_unlock(&np->tx_lock);
	dev_consume_skb_any(skb);
	return NETDEV_TX_OK;

drop:
	np->stats.tx_dropped++;
	dev_kfree_skb_any(skb);
	return NETDEV_TX_OK;
}

static void pvnet_set_broken(struct pvnet_front *np, const char *reason, unsigned long delay)
{
	np->state = PVNET_BROKEN;
	np->fatal_reason = reason;
	netif_carrier_off(np->netdev);
	schedule_delayed_work(&np->fatal_work, delay);
}

/* Transmit responses: free their ids. Return: false if the backend broke the ring. */
static bool pvnet_tx_complete(struct pvnet_front *np)
{
	struct pvnet_tx_response rsp;
	RING_IDX cons, prod;
	bool more;

	spin_lock(&np->tx_lock);
	if (np->state != PVNET_CONNECTED) {
		spin_unlock(&np->tx_lock);
		return true;
	}
	do {
		prod = READ_ONCE(np->tx.sring->rsp_prod);
		virt_rmb();	/* the responses up to prod, after prod */
		if (RING_RESPONSE_PROD_OVERFLOW(&np->tx, prod))
			goto broken;
		for (cons = np->tx.rsp_cons; cons != prod; cons++) {
			RING_COPY_RESPONSE(&np->tx, cons, &rsp);
			if (rsp.status == PVNET_RSP_NULL)
				continue;
			if (rsp.id >= TX_SLOTS || !np->tx_busy[rsp.id]) {
				np->tx.rsp_cons = cons + 1;
				goto broken;
			}
			if (np->inject.pending && rsp.id == np->inject.id) {
				np->inject.pending = false;
				np->inject.status = rsp.status;
			} else if (rsp.status != PVNET_RSP_OKAY) {
				np->stats.tx_errors++;
			}
			np->tx_busy[rsp.id] = false;
			np->tx_free[np->tx_nr_free++] = rsp.id;
		}
		np->tx.rsp_cons = prod;
		RING_FINAL_CHECK_FOR_RESPONSES(&np->tx, more);
	} while (more);
	if (netif_queue_stopped(np->netdev) && np->backend_connected &&
	    pvnet_tx_room(np) >= PVNET_FRONT_MAX_SLOTS + 1)
		netif_wake_queue(np->netdev);
	spin_unlock(&np->tx_lock);
	return true;

broken:
	netdev_err(np->netdev, "backend broke the transmit ring (response %u of %u)\n",
		   np->tx.rsp_cons, prod);
	pvnet_set_broken(np, "backend broke the netif transmit ring", 0);
	spin_unlock(&np->tx_lock);
	return false;
}

/* ---- receive ---- */

/* Post the request of ring slot @idx: its page, its id (the slot number). */
static void pvnet_rx_post(struct pvnet_front *np, RING_IDX idx)
{
	struct pvnet_rx_request *req = RING_GET_REQUEST(&np->rx, idx);
	u16 id = idx & (RX_SLOTS - 1);

	req->id = id;
	req->gref = np->rx_grefs[id];
}

static void pvnet_rx_refill(struct pvnet_front *np)
{
	int notify;

	while (np->rx.req_prod_pvt - np->rx.rsp_cons < RX_SLOTS)
		pvnet_rx_post(np, np->rx.req_prod_pvt++);
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&np->rx, notify);
	if (notify)
		notify_remote_via_irq(np->irq);
}

/* Check a data response of ring slot @idx. */
static bool pvnet_rx_rsp_ok(const struct pvnet_rx_response *rsp, RING_IDX idx)
{
	return rsp->id == (idx & (RX_SLOTS - 1)) && rsp->status >= 0 &&
	       rsp->offset + rsp->status <= XEN_PAGE_SIZE;
}

/* Copy @len bytes of slot @id's page from @offset into the skb at its end. */
static int pvnet_rx_copy_into(struct pvnet_front *np, struct sk_buff *skb, u16 id,
			      unsigned int offset, unsigned int len)
{
	const u8 *src = page_address(np->rx_pages[id]) + offset;
	unsigned int head = skb_tailroom(skb);
	unsigned int n;

	n = min(head, len);
	if (n) {
		skb_put_data(skb, src, n);
		src += n;
		len -= n;
	}
	while (len) {
		unsigned int nr = skb_shinfo(skb)->nr_frags;
		void *buf;

		if (nr && skb_frag_size(&skb_shinfo(skb)->frags[nr - 1]) < XEN_PAGE_SIZE) {
			skb_frag_t *frag = &skb_shinfo(skb)->frags[nr - 1];
			unsigned int room = XEN_PAGE_SIZE - skb_frag_size(frag);

			n = min(room, len);
			memcpy(skb_frag_address(frag) + skb_frag_size(frag), src, n);
			skb_frag_size_add(frag, n);
			skb->len += n;
			skb->data_len += n;
		} else {
			if (nr >= MAX_SKB_FRAGS)
				return -E2BIG;
			buf = napi_alloc_frag(XEN_PAGE_SIZE);
			if (!buf)
				return -ENOMEM;
			n = min_t(unsigned int, XEN_PAGE_SIZE, len);
			memcpy(buf, src, n);
			skb_add_rx_frag(skb, nr, virt_to_head_page(buf),
					buf - page_address(virt_to_head_page(buf)), n,
					XEN_PAGE_SIZE);
		}
		src += n;
		len -= n;
	}
	return 0;
}

static int pvnet_rx_offloads(struct pvnet_front *np, struct sk_buff *skb, u16 flags,
			     const struct pvnet_extra_info *gso)
{
	bool recalculate = false;

	if (flags & PVNET_RXF_CSUM_BLANK)
		skb->ip_summed = CHECKSUM_PARTIAL;
	else if (flags & PVNET_RXF_DATA_VALIDATED)
		skb->ip_summed = CHECKSUM_UNNECESSARY;
	if (gso->type) {
		if (!gso->u.gso.size || (gso->u.gso.type != PVNET_GSO_TYPE_TCPV4 &&
					 gso->u.gso.type != PVNET_GSO_TYPE_TCPV6))
			return -EINVAL;
		skb_shinfo(skb)->gso_size = gso->u.gso.size;
		skb_shinfo(skb)->gso_type = (gso->u.gso.type == PVNET_GSO_TYPE_TCPV4 ?
					     SKB_GSO_TCPV4 : SKB_GSO_TCPV6) | SKB_GSO_DODGY;
		skb_shinfo(skb)->gso_segs = 0;
		if (skb->ip_summed != CHECKSUM_PARTIAL) {
			skb->ip_summed = CHECKSUM_PARTIAL;
			recalculate = true;
		}
	}
	if (skb->ip_summed == CHECKSUM_PARTIAL && skb_checksum_setup(skb, recalculate)) {
		np->stats.rx_csum_errors++;
		return -EINVAL;
	}
	return 0;
}

/*
 * One received packet from ring slot cons on: its responses are checked,
 * its data copied out. Return: slots consumed (0: the packet is not complete
 * on the ring yet), or -EPROTO if the backend broke the protocol.
 */
static int pvnet_rx_one(struct pvnet_front *np, RING_IDX cons, RING_IDX prod,
			struct sk_buff **out)
{
	struct pvnet_extra_info gso = {}, extra;
	struct pvnet_rx_response rsp, first;
	unsigned int slots = 0, total = 0, nr = 0, len;
	struct sk_buff *skb;
	RING_IDX i = cons;
	u16 flags;

	*out = NULL;
	RING_COPY_RESPONSE(&np->rx, i, &first);
	flags = first.flags;
	if (!pvnet_rx_rsp_ok(&first, i))
		return -EPROTO;
	i++;
	if (flags & PVNET_RXF_EXTRA_INFO) {
		do {
			if (i == prod)
				return 0;
			RING_COPY_RESPONSE(&np->rx, i, (struct pvnet_rx_response *)&extra);
			i++;
			if (!extra.type || extra.type >= PVNET_EXTRA_TYPE_MAX)
				return -EPROTO;
			if (extra.type == PVNET_EXTRA_TYPE_GSO)
				gso = extra;
		} while (extra.flags & PVNET_EXTRA_FLAG_MORE);
	}
	/* the data slots: the first, then the ones after the extras */
	total = first.status;
	nr = 1;
	rsp = first;
	while (rsp.flags & PVNET_RXF_MORE_DATA) {
		if (i == prod)
			return 0;
		if (nr > PVNET_NR_SLOTS_MIN)
			return -EPROTO;
		RING_COPY_RESPONSE(&np->rx, i, &rsp);
		if (!pvnet_rx_rsp_ok(&rsp, i))
			return -EPROTO;
		total += rsp.status;
		i++;
		nr++;
	}
	slots = i - cons;

	len = total <= PVNET_FRONT_RX_LINEAR ? total : PVNET_FRONT_RX_HEAD;
	skb = napi_alloc_skb(&np->napi, len);
	if (!skb) {
		np->stats.rx_dropped++;
		return slots;
	}
	/* copy the data slots out, in ring order (extras have no data) */
	rsp = first;
	if (pvnet_rx_copy_into(np, skb, first.id, first.offset, first.status))
		goto drop;
	for (i = cons + 1 + (slots - nr); i != cons + slots; i++) {
		RING_COPY_RESPONSE(&np->rx, i, &rsp);
		/* checked above, but the backend may have changed it since */
		if (!pvnet_rx_rsp_ok(&rsp, i) ||
		    pvnet_rx_copy_into(np, skb, rsp.id, rsp.offset, rsp.status))
			goto drop;
	}
	if (skb->len < ETH_HLEN)
		goto drop;
	skb->protocol = eth_type_trans(skb, np->netdev);
	skb_reset_network_header(skb);
	if (pvnet_rx_offloads(np, skb, flags, &gso))
		goto drop;
	np->stats.rx_slots += nr;
	np->stats.rx_gso += !!gso.type;
	*out = skb;
	return slots;

drop:
	np->stats.rx_errors++;
	kfree_skb(skb);
	return slots;
}

static int pvnet_rx_action(struct pvnet_front *np, int budget)
{
	RING_IDX prod, cons;
	struct sk_buff *skb;
	int done = 0, n;

	prod = READ_ONCE(np->rx.sring->rsp_prod);
	virt_rmb();	/* the responses up to prod, after prod */
	if (RING_RESPONSE_PROD_OVERFLOW(&np->rx, prod)) {
		netdev_err(np->netdev, "backend broke the receive ring: %u responses\n",
			   prod - np->rx.rsp_cons);
		pvnet_set_broken(np, "backend broke the netif receive ring", 0);
		return 0;
	}
	cons = np->rx.rsp_cons;
	while (cons != prod && done < budget) {
		n = pvnet_rx_one(np, cons, prod, &skb);
		if (n < 0) {
			netdev_err(np->netdev, "backend broke the receive protocol at slot %u\n",
				   cons);
			pvnet_set_broken(np, "backend broke the netif receive protocol", 0);
			return done;
		}
		if (!n)
			break;	/* the rest of this packet is not there yet */
		cons += n;
		np->rx.rsp_cons = cons;
		done++;
		if (skb) {
			np->stats.rx_packets++;
			np->stats.rx_bytes += skb->len;
			napi_gro_receive(&np->napi, skb);
		}
	}
	pvnet_rx_refill(np);
	return done;
}

static int pvnet_poll(struct napi_struct *napi, int budget)
{
	struct pvnet_front *np = container_of(napi, struct pvnet_front, napi);
	int done = 0, more_rx, more_tx;

	if (np->state != PVNET_CONNECTED) {
		napi_complete(napi);
		return 0;	/* a broken backend gets no EOI, so no more events */
	}
	if (!pvnet_tx_complete(np)) {
		napi_complete(napi);
		return 0;
	}
	done = pvnet_rx_action(np, budget);
	if (done)
		np->work_since_irq = true;
	if (np->state != PVNET_CONNECTED) {
		napi_complete(napi);
		return 0;
	}
	if (done < budget && napi_complete_done(napi, done)) {
		RING_FINAL_CHECK_FOR_RESPONSES(&np->rx, more_rx);
		RING_FINAL_CHECK_FOR_RESPONSES(&np->tx, more_tx);
		if (more_rx || more_tx) {
			napi_schedule(napi);
		} else if (test_and_clear_bit(0, &np->eoi_pending)) {
			xen_irq_lateeoi(np->irq, np->work_since_irq ? 0 : XEN_EOI_FLAG_SPURIOUS);
			np->work_since_irq = false;
		}
	}
	return done;
}

static irqreturn_t pvnet_interrupt(int irq, void *dev_id)
{
	struct pvnet_front *np = dev_id;

	if (np->state != PVNET_CONNECTED)
		return IRQ_HANDLED;	/* no EOI while broken or going away */
	if (RING_HAS_UNCONSUMED_RESPONSES(&np->rx) || RING_HAS_UNCONSUMED_RESPONSES(&np->tx)) {
		set_bit(0, &np->eoi_pending);
		napi_schedule(&np->napi);
	} else {
		xen_irq_lateeoi(irq, XEN_EOI_FLAG_SPURIOUS);
	}
	return IRQ_HANDLED;
}

/* ---- the net_device ---- */

static int pvnet_open(struct net_device *dev)
{
	struct pvnet_front *np = netdev_priv(dev);

	napi_enable(&np->napi);
	if (np->state == PVNET_CONNECTED && np->backend_connected) {
		netif_carrier_on(dev);
		napi_schedule(&np->napi);
	}
	netif_start_queue(dev);
	return 0;
}

static int pvnet_close(struct net_device *dev)
{
	struct pvnet_front *np = netdev_priv(dev);

	netif_stop_queue(dev);
	napi_disable(&np->napi);
	return 0;
}

static void pvnet_get_stats64(struct net_device *dev, struct rtnl_link_stats64 *s)
{
	struct pvnet_front *np = netdev_priv(dev);
	const struct pvnet_front_stats *st = &np->stats;

	s->rx_packets = READ_ONCE(st->rx_packets);
	s->rx_bytes = READ_ONCE(st->rx_bytes);
	s->rx_errors = READ_ONCE(st->rx_errors);
	s->rx_dropped = READ_ONCE(st->rx_dropped);
	s->tx_packets = READ_ONCE(st->tx_packets);
	s->tx_bytes = READ_ONCE(st->tx_bytes);
	s->tx_errors = READ_ONCE(st->tx_errors);
	s->tx_dropped = READ_ONCE(st->tx_dropped);
}

static netdev_features_t pvnet_fix_features(struct net_device *dev,
					    netdev_features_t features)
{
	struct pvnet_front *np = netdev_priv(dev);

	if (!np->be_sg)
		features &= ~NETIF_F_SG;
	if (!np->be_gso4)
		features &= ~NETIF_F_TSO;
	if (!np->be_gso6)
		features &= ~NETIF_F_TSO6;
	if (!np->be_ipv6_csum)
		features &= ~NETIF_F_IPV6_CSUM;
	return features;
}

static int pvnet_change_mtu(struct net_device *dev, int mtu)
{
	struct pvnet_front *np = netdev_priv(dev);

	if (mtu > (np->be_sg ? PVNET_MTU_MAX : PVNET_MTU_DEFAULT))
		return -EINVAL;
	dev->mtu = mtu;
	return 0;
}

static const struct net_device_ops pvnet_netdev_ops = {
	.ndo_open = pvnet_open,
	.ndo_stop = pvnet_close,
	.ndo_start_xmit = pvnet_start_xmit,
	.ndo_get_stats64 = pvnet_get_stats64,
	.ndo_fix_features = pvnet_fix_features,
	.ndo_change_mtu = pvnet_change_mtu,
	.ndo_set_mac_address = eth_mac_addr,
	.ndo_validate_addr = eth_validate_addr,
};

static void pvnet_get_drvinfo(struct net_device *dev, struct ethtool_drvinfo *info)
{
	struct pvnet_front *np = netdev_priv(dev);

	strscpy(info->driver, "pvnet-front", sizeof(info->driver));
	strscpy(info->bus_info, dev_name(&np->xbdev->dev), sizeof(info->bus_info));
}

static const struct ethtool_ops pvnet_ethtool_ops = {
	.get_drvinfo = pvnet_get_drvinfo,
	.get_link = ethtool_op_get_link,
};

/* ---- debugfs: statistics and the hostile-frontend injection ---- */

static int pvnet_stats_show(struct seq_file *m, void *unused)
{
	struct pvnet_front *np = m->private;
	struct pvnet_front_stats s = np->stats;
	unsigned int free_ids;

	spin_lock_bh(&np->tx_lock);
	free_ids = np->tx_nr_free;
	spin_unlock_bh(&np->tx_lock);
	seq_printf(m, "state %d\nbackend_connected %d\n", np->state, np->backend_connected);
	seq_printf(m, "tx_packets %llu\ntx_bytes %llu\ntx_slots %llu\ntx_gso %llu\n",
		   s.tx_packets, s.tx_bytes, s.tx_slots, s.tx_gso);
	seq_printf(m, "tx_errors %llu\ntx_dropped %llu\ntx_ring_full %llu\n",
		   s.tx_errors, s.tx_dropped, s.tx_ring_full);
	seq_printf(m, "rx_packets %llu\nrx_bytes %llu\nrx_slots %llu\nrx_gso %llu\n",
		   s.rx_packets, s.rx_bytes, s.rx_slots, s.rx_gso);
	seq_printf(m, "rx_errors %llu\nrx_dropped %llu\nrx_csum_errors %llu\n",
		   s.rx_errors, s.rx_dropped, s.rx_csum_errors);
	seq_printf(m, "tx_free_ids %u\n", free_ids);
	seq_printf(m, "backend_sg %d\nbackend_gso_tcpv4 %d\nbackend_gso_tcpv6 %d\n",
		   np->be_sg, np->be_gso4, np->be_gso6);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(pvnet_stats);

static int pvnet_inject_result_show(struct seq_file *m, void *unused)
{
	struct pvnet_front *np = m->private;
	struct pvnet_inject inj;

	spin_lock_bh(&np->tx_lock);
	inj = np->inject;
	spin_unlock_bh(&np->tx_lock);
	if (inj.mode < 0)
		seq_puts(m, "none\n");
	else if (inj.pending)
		seq_printf(m, "%s pending\n", pvnet_inject_names[inj.mode]);
	else if (inj.lost)
		seq_printf(m, "%s no response\n", pvnet_inject_names[inj.mode]);
	else
		seq_printf(m, "%s status %d\n", pvnet_inject_names[inj.mode], inj.status);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(pvnet_inject_result);

/* A test frame: broadcast, from us, local experimental ethertype, zero payload. */
static void pvnet_inject_frame(struct pvnet_front *np, u8 *buf)
{
	memset(buf, 0, PVNET_INJECT_FRAME);
	eth_broadcast_addr(buf);
	ether_addr_copy(buf + ETH_ALEN, np->netdev->dev_addr);
	*(__be16 *)(buf + 2 * ETH_ALEN) = htons(PVNET_INJECT_ETHERTYPE);
}

/* Put a data slot of @size bytes at @offset of a fresh id's page. */
static struct pvnet_tx_request *pvnet_inject_slot(struct pvnet_front *np, u16 offset,
						  u16 size, u16 flags)
{
	struct pvnet_tx_request *req = pvnet_tx_next(np);
	u16 id = pvnet_tx_get_id(np);

	req->gref = np->tx_grefs[id];
	req->offset = offset;
	req->size = size;
	req->id = id;
	req->flags = flags;
	return req;
}

static void pvnet_inject_extra(struct pvnet_front *np, u8 type, u16 gso_size)
{
	struct pvnet_extra_info *extra = (void *)pvnet_tx_next(np);

	memset(extra, 0, sizeof(*extra));
	extra->type = type;
	extra->u.gso.type = PVNET_GSO_TYPE_TCPV4;
	extra->u.gso.size = gso_size;
}

/* A frame of PVNET_INJECT_FRAME bytes over @nr slots: 14 bytes, then the rest. */
static void pvnet_inject_split(struct pvnet_front *np, unsigned int nr, bool zero)
{
	unsigned int left = PVNET_INJECT_FRAME - ETH_HLEN, i, size;
	struct pvnet_tx_request *first;
	u8 frame[PVNET_INJECT_FRAME];
	unsigned int off = ETH_HLEN;

	pvnet_inject_frame(np, frame);
	first = pvnet_inject_slot(np, 0, PVNET_INJECT_FRAME, PVNET_TXF_MORE_DATA);
	memcpy(page_address(np->tx_pages[first->id]), frame, zero ? PVNET_INJECT_FRAME :
	       ETH_HLEN);
	np->inject.id = first->id;
	for (i = 1; i < nr; i++) {
		struct pvnet_tx_request *req;

		size = zero ? 0 : (i + 1 < nr ? min(left, 3U) : left);
		req = pvnet_inject_slot(np, 0, size, i + 1 < nr ? PVNET_TXF_MORE_DATA : 0);
		memcpy(page_address(np->tx_pages[req->id]), frame + off, size);
		off += size;
		left -= size;
	}
}

/* Called with tx_lock held. */
static int pvnet_inject_locked(struct pvnet_front *np, int mode)
{
	struct pvnet_tx_request *req;
	unsigned int i;

	if (np->state != PVNET_CONNECTED || !np->backend_connected)
		return -ENOTCONN;
	if (np->inject.pending || pvnet_tx_room(np) < 24)
		return -EBUSY;

	if (mode == PVNET_INJ_PROD) {
		netdev_warn(np->netdev, "inject: req_prod %u -> %u\n", np->tx.req_prod_pvt,
			    np->tx.req_prod_pvt + 1000);
		virt_wmb();	/* earlier requests before the producer index */
		WRITE_ONCE(np->tx.sring->req_prod, np->tx.req_prod_pvt + 1000);
		notify_remote_via_irq(np->irq);
		np->inject = (struct pvnet_inject){ .mode = mode, .lost = true };
		pvnet_set_broken(np, "backend ignored a bogus producer index", PVNET_PROD_GRACE);
		return 0;
	}

	np->inject = (struct pvnet_inject){ .mode = mode, .pending = true };
	switch (mode) {
	case PVNET_INJ_RUNT:
		req = pvnet_inject_slot(np, 0, 10, 0);
		break;
	case PVNET_INJ_TOOBIG:
		req = pvnet_inject_slot(np, 0, XEN_PAGE_SIZE, 0);
		pvnet_inject_frame(np, page_address(np->tx_pages[req->id]));
		break;
	case PVNET_INJ_GREF:
		req = pvnet_inject_slot(np, 0, PVNET_INJECT_FRAME, 0);
		req->gref = PVNET_GNTTAB_NR_RESERVED_ENTRIES - 5;
		break;
	case PVNET_INJ_SIZES:
		req = pvnet_inject_slot(np, 0, 100, PVNET_TXF_MORE_DATA);
		pvnet_inject_slot(np, 0, 101, 0);
		break;
	case PVNET_INJ_SLOTS:
	case PVNET_INJ_FATALSLOTS:
		i = mode == PVNET_INJ_SLOTS ? PVNET_NR_SLOTS_MIN + 1 : 21;
		req = pvnet_inject_slot(np, 0, 100 * i, PVNET_TXF_MORE_DATA);
		pvnet_inject_frame(np, page_address(np->tx_pages[req->id]));
		while (--i)
			pvnet_inject_slot(np, 0, 100, i > 1 ? PVNET_TXF_MORE_DATA : 0);
		break;
	case PVNET_INJ_MCAST:
		req = pvnet_inject_slot(np, 0, PVNET_INJECT_FRAME, PVNET_TXF_EXTRA_INFO);
		pvnet_inject_extra(np, PVNET_EXTRA_TYPE_MCAST_ADD, 0);
		break;
	case PVNET_INJ_SPLIT:
		pvnet_inject_split(np, PVNET_NR_SLOTS_MIN, false);
		req = NULL;
		break;
	case PVNET_INJ_ZERO:
		pvnet_inject_split(np, PVNET_NR_SLOTS_MIN, true);
		req = NULL;
		break;
	case PVNET_INJ_PAGECROSS:
		req = pvnet_inject_slot(np, XEN_PAGE_SIZE - 100, 200, 0);
		break;
	case PVNET_INJ_CHAIN:
		req = pvnet_inject_slot(np, 0, PVNET_INJECT_FRAME, PVNET_TXF_MORE_DATA);
		break;
	case PVNET_INJ_EXTRATYPE:
		req = pvnet_inject_slot(np, 0, PVNET_INJECT_FRAME, PVNET_TXF_EXTRA_INFO);
		pvnet_inject_extra(np, PVNET_EXTRA_TYPE_NONE, 0);
		break;
	case PVNET_INJ_GSO0:
		req = pvnet_inject_slot(np, 0, PVNET_INJECT_FRAME, PVNET_TXF_EXTRA_INFO);
		pvnet_inject_extra(np, PVNET_EXTRA_TYPE_GSO, 0);
		break;
	default:
		return -EINVAL;
	}
	if (req) {
		np->inject.id = req->id;
		if (mode != PVNET_INJ_TOOBIG && mode < PVNET_INJ_SPLIT)
			pvnet_inject_frame(np, page_address(np->tx_pages[req->id]));
	}
	pvnet_tx_push(np);
	return 0;
}

static ssize_t pvnet_inject_write(struct file *file, const char __user *ubuf,
				  size_t count, loff_t *ppos)
{
	struct pvnet_front *np = file->private_data;
	char word[16];
	int mode, err;

	if (!count || count >= sizeof(word))
		return -EINVAL;
	if (copy_from_user(word, ubuf, count))
		return -EFAULT;
	word[count] = '\0';
	mode = match_string(pvnet_inject_names, ARRAY_SIZE(pvnet_inject_names), strim(word));
	if (mode < 0)
		return -EINVAL;
	mutex_lock(&np->mutex);
	spin_lock_bh(&np->tx_lock);
	err = pvnet_inject_locked(np, mode);
	spin_unlock_bh(&np->tx_lock);
	mutex_unlock(&np->mutex);
	if (err)
		return err;
	netdev_info(np->netdev, "inject: %s packet on the ring\n", pvnet_inject_names[mode]);
	return count;
}

static const struct file_operations pvnet_inject_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.write = pvnet_inject_write,
	.llseek = no_llseek,
};

/* ---- connecting ---- */

/* Close the device from our side after the backend broke the protocol. */
static void pvnet_fatal_work(struct work_struct *work)
{
	struct pvnet_front *np = container_of(to_delayed_work(work), struct pvnet_front,
					      fatal_work);
	struct xenbus_device *dev = np->xbdev;

	mutex_lock(&np->mutex);
	if (dev->state < PVNET_XB_CLOSING)
		xenbus_dev_fatal(dev, -EPROTO, "%s", np->fatal_reason);
	mutex_unlock(&np->mutex);
}

/*
 * Stop the data path and free the rings and event channel; the slot pages
 * lose their grants. Packets in flight are dropped. Caller holds np->mutex.
 */
static void pvnet_disconnect(struct pvnet_front *np)
{
	struct net_device *dev = np->netdev;
	unsigned int i;

	netif_carrier_off(dev);
	spin_lock_bh(&np->tx_lock);
	np->state = PVNET_DISCONNECTED;
	np->backend_connected = false;
	if (np->inject.pending) {
		np->inject.pending = false;
		np->inject.lost = true;
	}
	spin_unlock_bh(&np->tx_lock);

	if (np->irq > 0)
		unbind_from_irqhandler(np->irq, np);	/* closes the channel */
	else if (np->evtchn)
		xenbus_free_evtchn(np->xbdev, np->evtchn);
	np->irq = 0;
	np->evtchn = 0;
	if (netif_running(dev)) {
		/* wait for a poll in progress: it saw the state and stops */
		napi_synchronize(&np->napi);
	}
	netif_tx_lock_bh(dev);
	netif_stop_queue(dev);
	netif_tx_unlock_bh(dev);

	xenbus_teardown_ring((void **)&np->tx.sring, 1, &np->tx_ring_ref);
	xenbus_teardown_ring((void **)&np->rx.sring, 1, &np->rx_ring_ref);
	pvnet_ungrant_pages(np);
	np->tx_nr_free = 0;
	for (i = 0; i < TX_SLOTS; i++) {
		np->tx_busy[i] = false;
		np->tx_free[np->tx_nr_free++] = TX_SLOTS - 1 - i;
	}
	clear_bit(0, &np->eoi_pending);
}

static void pvnet_read_backend_features(struct pvnet_front *np)
{
	const char *be = np->xbdev->otherend;

	np->be_sg = !!xenbus_read_unsigned(be, PVNET_XS_FEATURE_SG, 0);
	np->be_gso4 = np->be_sg && xenbus_read_unsigned(be, PVNET_XS_FEATURE_GSO_TCPV4, 0);
	np->be_gso6 = np->be_sg && xenbus_read_unsigned(be, PVNET_XS_FEATURE_GSO_TCPV6, 0);
	np->be_ipv6_csum = !!xenbus_read_unsigned(be, PVNET_XS_FEATURE_IPV6_CSUM_OFFLOAD, 0);
}

static int pvnet_write_keys(struct pvnet_front *np)
{
	static const char * const features[] = {
		PVNET_XS_FEATURE_RX_NOTIFY, PVNET_XS_FEATURE_SG, PVNET_XS_FEATURE_GSO_TCPV4,
		PVNET_XS_FEATURE_GSO_TCPV6, PVNET_XS_FEATURE_IPV6_CSUM_OFFLOAD,
		PVNET_XS_REQUEST_RX_COPY,
	};
	struct xenbus_device *dev = np->xbdev;
	struct xenbus_transaction xbt;
	const char *what = "starting a transaction";
	unsigned int i;
	int err;

again:
	err = xenbus_transaction_start(&xbt);
	if (err)
		goto fail;
	what = "writing the ring references";
	err = xenbus_printf(xbt, dev->nodename, PVNET_XS_TX_RING_REF, "%u", np->tx_ring_ref);
	if (!err)
		err = xenbus_printf(xbt, dev->nodename, PVNET_XS_RX_RING_REF, "%u",
				    np->rx_ring_ref);
	if (!err) {
		what = "writing the event channel";
		err = xenbus_printf(xbt, dev->nodename, PVNET_XS_EVENT_CHANNEL, "%u",
				    np->evtchn);
	}
	for (i = 0; !err && i < ARRAY_SIZE(features); i++) {
		what = features[i];
		err = xenbus_printf(xbt, dev->nodename, features[i], "%u", 1);
	}
	if (err) {
		xenbus_transaction_end(xbt, 1);
		goto fail;
	}
	err = xenbus_transaction_end(xbt, 0);
	if (err == -EAGAIN)
		goto again;
	if (!err)
		return 0;
	what = "completing the transaction";
fail:
	xenbus_dev_fatal(dev, err, "%s", what);
	return err;
}

/* Rings, grants, event channel, XenStore keys. Caller holds np->mutex. */
static int pvnet_talk_to_backend(struct pvnet_front *np)
{
	struct xenbus_device *dev = np->xbdev;
	struct net_device *ndev = np->netdev;
	void *sring;
	RING_IDX i;
	int err;

	if (!xenbus_read_unsigned(dev->otherend, PVNET_XS_FEATURE_RX_COPY, 0)) {
		xenbus_dev_fatal(dev, -ENODEV, "backend has no feature-rx-copy");
		return -ENODEV;
	}
	pvnet_read_backend_features(np);

	err = xenbus_setup_ring(dev, GFP_KERNEL, &sring, 1, &np->tx_ring_ref);
	if (err)
		goto fail;
	XEN_FRONT_RING_INIT(&np->tx, (struct pvnet_tx_sring *)sring, XEN_PAGE_SIZE);
	err = xenbus_setup_ring(dev, GFP_KERNEL, &sring, 1, &np->rx_ring_ref);
	if (err)
		goto fail;
	XEN_FRONT_RING_INIT(&np->rx, (struct pvnet_rx_sring *)sring, XEN_PAGE_SIZE);
	err = pvnet_grant_pages(np);
	if (err) {
		xenbus_dev_fatal(dev, err, "granting the buffer pages");
		goto fail;
	}
	err = xenbus_alloc_evtchn(dev, &np->evtchn);
	if (err)
		goto fail;
	err = bind_evtchn_to_irqhandler_lateeoi(np->evtchn, pvnet_interrupt, 0, ndev->name, np);
	if (err <= 0) {
		err = err ?: -EINVAL;
		xenbus_dev_fatal(dev, err, "binding event channel %u", np->evtchn);
		goto fail;
	}
	np->irq = err;
	for (i = 0; i < RX_SLOTS; i++)
		pvnet_rx_post(np, np->rx.req_prod_pvt++);
	RING_PUSH_REQUESTS(&np->rx);

	err = pvnet_write_keys(np);
	if (err)
		goto fail;
	spin_lock_bh(&np->tx_lock);
	np->state = PVNET_CONNECTED;
	spin_unlock_bh(&np->tx_lock);

	rtnl_lock();
	ndev->max_mtu = np->be_sg ? PVNET_MTU_MAX : PVNET_MTU_DEFAULT;
	if (ndev->mtu > ndev->max_mtu)
		dev_set_mtu(ndev, ndev->max_mtu);
	netdev_update_features(ndev);
	rtnl_unlock();
	return 0;

fail:
	pvnet_disconnect(np);
	return err;
}

/* The backend is Connected: packets may flow. Caller holds np->mutex. */
static void pvnet_backend_up(struct pvnet_front *np)
{
	struct net_device *dev = np->netdev;

	if (np->state != PVNET_CONNECTED || np->backend_connected)
		return;
	np->backend_connected = true;
	netif_carrier_on(dev);
	netif_tx_lock_bh(dev);
	if (netif_running(dev))
		netif_wake_queue(dev);
	netif_tx_unlock_bh(dev);
	/* anything the backend answered before, and a kick for it */
	if (netif_running(dev))
		napi_schedule(&np->napi);
	notify_remote_via_irq(np->irq);
	netdev_notify_peers(dev);	/* takes RTNL itself */
	netdev_info(dev, "connected to %s: sg %d gso %d/%d, mtu %u\n", np->xbdev->otherend,
		    np->be_sg, np->be_gso4, np->be_gso6, dev->mtu);
}

static void pvnet_backend_changed(struct xenbus_device *dev, enum xenbus_state backend_state)
{
	struct pvnet_front *np = dev_get_drvdata(&dev->dev);

	dev_dbg(&dev->dev, "backend %s, frontend %s\n", xenbus_strstate(backend_state),
		xenbus_strstate(dev->state));
	mutex_lock(&np->mutex);
	switch (backend_state) {
	case PVNET_XB_INITWAIT:
		if (dev->state != PVNET_XB_INITIALISING)
			break;
		if (!pvnet_talk_to_backend(np))
			xenbus_switch_state(dev, PVNET_XB_CONNECTED);
		break;
	case PVNET_XB_CONNECTED:
		/*
		 * Rings are set up at InitWait only, as netfront does: a backend
		 * still Connected to our previous rings (an unbind, a reconnect it
		 * has not seen yet) goes through InitWait once it sees us
		 * Initialising.
		 */
		if (dev->state == PVNET_XB_CONNECTED)
			pvnet_backend_up(np);
		break;
	case PVNET_XB_CLOSED:
		/* Initialising: nothing to close; a re-bound frontend waits for InitWait */
		if (dev->state == PVNET_XB_CLOSED || dev->state == PVNET_XB_INITIALISING)
			break;
		fallthrough;
	case PVNET_XB_CLOSING:
		if (dev->state == PVNET_XB_CLOSED)
			break;
		pvnet_disconnect(np);
		xenbus_frontend_closed(dev);
		netdev_info(np->netdev, "backend %s: disconnected\n",
			    xenbus_strstate(backend_state));
		break;
	default:
		break;
	}
	mutex_unlock(&np->mutex);
}

/* ---- the xenbus driver ---- */

static void pvnet_setup(struct net_device *dev)
{
	ether_setup(dev);
	dev->netdev_ops = &pvnet_netdev_ops;
	dev->ethtool_ops = &pvnet_ethtool_ops;
	dev->hw_features = NETIF_F_SG | NETIF_F_IP_CSUM | NETIF_F_IPV6_CSUM | NETIF_F_TSO |
			   NETIF_F_TSO6 | NETIF_F_RXCSUM;
	dev->features = dev->hw_features;
	dev->min_mtu = ETH_MIN_MTU;
	dev->max_mtu = PVNET_MTU_DEFAULT;
	dev->tx_queue_len = 1000;
	netif_set_tso_max_size(dev, PVNET_MAX_TX_SIZE - VLAN_ETH_HLEN);
}

static int pvnet_read_mac(struct xenbus_device *dev, u8 *mac)
{
	char *str;
	int err = 0;

	str = xenbus_read(XBT_NIL, dev->nodename, PVNET_XS_MAC, NULL);
	if (IS_ERR(str))
		return PTR_ERR(str);
	if (strlen(str) != 17 || !mac_pton(str, mac) || !is_valid_ether_addr(mac))
		err = -EINVAL;
	kfree(str);
	return err;
}

static void pvnet_remove(struct xenbus_device *dev)
{
	struct pvnet_front *np = dev_get_drvdata(&dev->dev);
	struct net_device *ndev = np->netdev;

	debugfs_remove_recursive(np->debugfs);
	/* while registered: the carrier change queues a linkwatch event on it */
	mutex_lock(&np->mutex);
	pvnet_disconnect(np);
	mutex_unlock(&np->mutex);
	cancel_delayed_work_sync(&np->fatal_work);
	if (ndev->reg_state == NETREG_REGISTERED)
		unregister_netdev(ndev);
	netif_napi_del(&np->napi);
	pvnet_free_pages(np);
	dev_set_drvdata(&dev->dev, NULL);
	free_netdev(ndev);
}

static int pvnet_probe(struct xenbus_device *dev, const struct xenbus_device_id *id)
{
	struct net_device *ndev;
	struct pvnet_front *np;
	unsigned int i, mtu;
	u8 mac[ETH_ALEN];
	int err;

	err = pvnet_read_mac(dev, mac);
	if (err) {
		xenbus_dev_fatal(dev, err, "parsing %s/%s", dev->nodename, PVNET_XS_MAC);
		return err;
	}
	ndev = alloc_netdev(sizeof(*np), "eth%d", NET_NAME_ENUM, pvnet_setup);
	if (!ndev) {
		xenbus_dev_fatal(dev, -ENOMEM, "allocating the device");
		return -ENOMEM;
	}
	SET_NETDEV_DEV(ndev, &dev->dev);
	eth_hw_addr_set(ndev, mac);
	np = netdev_priv(ndev);
	np->xbdev = dev;
	np->netdev = ndev;
	np->handle = xenbus_read_unsigned(dev->nodename, PVNET_XS_HANDLE, 0);
	mutex_init(&np->mutex);
	spin_lock_init(&np->tx_lock);
	np->state = PVNET_DISCONNECTED;
	np->tx_ring_ref = INVALID_GRANT_REF;
	np->rx_ring_ref = INVALID_GRANT_REF;
	for (i = 0; i < TX_SLOTS; i++) {
		np->tx_grefs[i] = INVALID_GRANT_REF;
		np->tx_free[i] = TX_SLOTS - 1 - i;
	}
	np->tx_nr_free = TX_SLOTS;
	for (i = 0; i < RX_SLOTS; i++)
		np->rx_grefs[i] = INVALID_GRANT_REF;
	np->inject.mode = -1;
	INIT_DELAYED_WORK(&np->fatal_work, pvnet_fatal_work);
	netif_napi_add(ndev, &np->napi, pvnet_poll);
	netif_carrier_off(ndev);
	dev_set_drvdata(&dev->dev, np);

	/* the toolstack's MTU (read-only frontend key), if it says one */
	mtu = xenbus_read_unsigned(dev->nodename, PVNET_XS_MTU, PVNET_MTU_DEFAULT);
	if (mtu >= ETH_MIN_MTU && mtu <= PVNET_MTU_DEFAULT)
		ndev->mtu = mtu;

	err = register_netdev(ndev);
	if (err) {
		xenbus_dev_fatal(dev, err, "registering the device");
		dev_set_drvdata(&dev->dev, NULL);
		netif_napi_del(&np->napi);
		free_netdev(ndev);
		return err;
	}
	np->debugfs = debugfs_create_dir(ndev->name, pvnet_debugfs_root);
	debugfs_create_file("stats", 0444, np->debugfs, np, &pvnet_stats_fops);
	debugfs_create_file("inject", 0200, np->debugfs, np, &pvnet_inject_fops);
	debugfs_create_file("inject_result", 0400, np->debugfs, np,
			    &pvnet_inject_result_fops);
	netdev_info(ndev, "%s, MAC %pM\n", dev->nodename, mac);

	/* bound again after an unbind (which closed us): ask the backend to reconnect */
	if (dev->state == PVNET_XB_CLOSED)
		xenbus_switch_state(dev, PVNET_XB_INITIALISING);
	return 0;
}

/* Save/restore: the old rings and grants are gone; reconnect at InitWait. */
static int pvnet_resume(struct xenbus_device *dev)
{
	struct pvnet_front *np = dev_get_drvdata(&dev->dev);

	cancel_delayed_work_sync(&np->fatal_work);
	mutex_lock(&np->mutex);
	pvnet_disconnect(np);
	mutex_unlock(&np->mutex);
	return 0;
}

static struct xenbus_device_id pvnet_front_ids[] = {
	{ "" },		/* devtype, filled in at init */
	{ "" }
};

static struct xenbus_driver pvnet_front_driver = {
	.name = "pvnet-front",
	.ids = pvnet_front_ids,
	.probe = pvnet_probe,
	.remove = pvnet_remove,
	.resume = pvnet_resume,
	.otherend_changed = pvnet_backend_changed,
	.not_essential = true,
};

static int __init pvnet_front_init(void)
{
	int err;

	if (!xen_domain())
		return -ENODEV;
	if (strcmp(devtype, PVNET_DEVICE_TYPE) && strcmp(devtype, PVNET_DEVICE_TYPE_VIF)) {
		pr_err("devtype must be %s or %s, not %s\n", PVNET_DEVICE_TYPE,
		       PVNET_DEVICE_TYPE_VIF, devtype);
		return -EINVAL;
	}
	strscpy(pvnet_front_ids[0].devicetype, devtype, sizeof(pvnet_front_ids[0].devicetype));
	pvnet_debugfs_root = debugfs_create_dir("pvnet-front", NULL);
	err = xenbus_register_frontend(&pvnet_front_driver);
	if (err) {
		debugfs_remove_recursive(pvnet_debugfs_root);
		return err;
	}
	pr_info("bound to device type %s\n", devtype);
	return 0;
}
module_init(pvnet_front_init);

static void __exit pvnet_front_exit(void)
{
	xenbus_unregister_driver(&pvnet_front_driver);
	debugfs_remove_recursive(pvnet_debugfs_root);
}
module_exit(pvnet_front_exit);

MODULE_DESCRIPTION("pvkit Xen PV network frontend (netif)");
MODULE_LICENSE("GPL");
MODULE_ALIAS("xen:" PVNET_DEVICE_TYPE);
