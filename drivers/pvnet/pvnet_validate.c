// SPDX-License-Identifier: GPL-2.0
/*
 * The pvnet backend's checks of what a hostile frontend puts on the netif
 * rings.
 *
 * See pvnet_validate.h for what is checked, in which order, and why. All
 * arguments are private copies: nothing here reads a shared ring.
 */

#ifdef __KERNEL__
#include <linux/string.h>
#endif

#include "pvnet_validate.h"

static const char * const pvnet_verr_names[PVNET_VERR_COUNT] = {
	[0] = "ok",
	[PVNET_VERR_RING] = "bogus ring producer index",
	[PVNET_VERR_CHAIN] = "packet runs past the requests produced",
	[PVNET_VERR_EXTRA_TYPE] = "unknown extra-info type",
	[PVNET_VERR_EXTRA_DUP] = "extra-info type given twice",
	[PVNET_VERR_SLOTS_FATAL] = "more slots than any packet may have",
	[PVNET_VERR_PAGE] = "slot crosses its page",
	[PVNET_VERR_GSO] = "malformed GSO extra-info",
	[PVNET_VERR_SLOT_SIZE] = "slot sizes exceed the packet size",
	[PVNET_VERR_SLOTS] = "more slots than the backend takes",
	[PVNET_VERR_HEADER] = "first slot shorter than an Ethernet header",
	[PVNET_VERR_TOO_BIG] = "packet larger than the MTU",
	[PVNET_VERR_GSO_FEATURE] = "GSO type not advertised",
	[PVNET_VERR_EXTRA_UNSUPPORTED] = "multicast control not advertised",
	[PVNET_VERR_GREF] = "reserved or out-of-table grant reference",
	[PVNET_VERR_PARAM] = "bad validator argument",
};

/* The extra-info slot in request @req (it takes a request's place). */
static void pvnet_get_extra(const struct pvnet_tx_request *req,
			    struct pvnet_extra_info *extra)
{
	static_assert(sizeof(*extra) <= sizeof(*req), "an extra-info slot is a request slot");
	memcpy(extra, req, sizeof(*extra));
}

/*
 * Walk the extra-info slots after the first request. Return: 0, or a fatal
 * -PVNET_VERR_*; @info->nr_extras counts the slots, @extras[type - 1] holds
 * the slot of each type.
 */
static int pvnet_walk_extras(const struct pvnet_tx_request *reqs, u32 avail,
			     struct pvnet_extra_info *extras,
			     struct pvnet_tx_info *info)
{
	struct pvnet_extra_info extra;
	u32 idx = 1;

	do {
		if (idx >= avail)
			return -PVNET_VERR_CHAIN;
		pvnet_get_extra(&reqs[idx], &extra);
		if (extra.type == PVNET_EXTRA_TYPE_NONE ||
		    extra.type >= PVNET_EXTRA_TYPE_MAX)
			return -PVNET_VERR_EXTRA_TYPE;
		if (extras[extra.type - 1].type)
			return -PVNET_VERR_EXTRA_DUP;
		extras[extra.type - 1] = extra;
		info->nr_extras++;
		idx++;
	} while (extra.flags & PVNET_EXTRA_FLAG_MORE);
	return 0;
}

/*
 * Walk the data slots: the first request, then the requests after the
 * extras. Return: 0, or a fatal -PVNET_VERR_*; @info->nr_slots counts them.
 */
static int pvnet_walk_slots(const struct pvnet_tx_request *reqs, u32 avail,
			    struct pvnet_tx_info *info)
{
	u32 idx = 1 + info->nr_extras;
	u16 flags = reqs[0].flags;

	info->nr_slots = 1;
	while (flags & PVNET_TXF_MORE_DATA) {
		const struct pvnet_tx_request *req;

		if (info->nr_slots >= PVNET_TXV_FATAL_SLOTS)
			return -PVNET_VERR_SLOTS_FATAL;
		if (idx >= avail)
			return -PVNET_VERR_CHAIN;
		req = &reqs[idx++];
		if ((u32)req->offset + req->size > PVNET_PAGE_SIZE)
			return -PVNET_VERR_PAGE;
		info->nr_slots++;
		flags = req->flags;
	}
	info->nr_entries = idx;
	return 0;
}

static int pvnet_check_gso(const struct pvnet_extra_info *gso,
			   struct pvnet_tx_info *info)
{
	if (!gso->type)
		return 0;	/* no GSO extra */
	if (!gso->u.gso.size || (gso->u.gso.type != PVNET_GSO_TYPE_TCPV4 &&
				 gso->u.gso.type != PVNET_GSO_TYPE_TCPV6))
		return -PVNET_VERR_GSO;
	info->gso_type = gso->u.gso.type;
	info->gso_size = gso->u.gso.size;
	return 0;
}

/* 0 if @gref may name one of the frontend's grants. */
static int pvnet_check_gref(u32 gref, const struct pvnet_vif_limits *lim)
{
	if (gref < PVNET_GNTTAB_NR_RESERVED_ENTRIES ||
	    (lim->gref_limit && gref >= lim->gref_limit))
		return -PVNET_VERR_GREF;
	return 0;
}

/* Add a segment of @len bytes at packet offset @pkt_off; none if empty. */
static void pvnet_add_seg(struct pvnet_tx_info *info,
			  const struct pvnet_tx_request *req, u16 len,
			  u32 pkt_off)
{
	struct pvnet_tx_seg *seg;

	if (!len)
		return;
	seg = &info->seg[info->nr_segs++];
	seg->gref = req->gref;
	seg->offset = req->offset;
	seg->len = len;
	seg->pkt_off = pkt_off;
}

/* The checks that drop the packet, then the plan (checks 8-15). */
static int pvnet_check_packet(const struct pvnet_tx_request *reqs,
			      const struct pvnet_extra_info *extras,
			      const struct pvnet_vif_limits *lim,
			      struct pvnet_tx_info *info)
{
	u32 rest = 0, first_len, off, i;
	const struct pvnet_tx_request *req;
	bool mcast;
	int err;

	for (i = 1; i < info->nr_slots; i++)
		rest += reqs[info->nr_extras + i].size;
	if (rest > info->size)
		return -PVNET_VERR_SLOT_SIZE;
	first_len = info->size - rest;
	if (reqs[0].offset + first_len > PVNET_PAGE_SIZE)
		return -PVNET_VERR_PAGE;
	if (info->nr_slots > lim->max_slots)
		return -PVNET_VERR_SLOTS;
	if (first_len < PVNET_ETH_HLEN)
		return -PVNET_VERR_HEADER;
	if (info->gso_type == PVNET_GSO_TYPE_NONE && info->size > lim->max_size)
		return -PVNET_VERR_TOO_BIG;
	if ((info->gso_type == PVNET_GSO_TYPE_TCPV4 &&
	     !(lim->flags & PVNET_TXV_GSO_TCPV4)) ||
	    (info->gso_type == PVNET_GSO_TYPE_TCPV6 &&
	     !(lim->flags & PVNET_TXV_GSO_TCPV6)))
		return -PVNET_VERR_GSO_FEATURE;
	mcast = extras[PVNET_EXTRA_TYPE_MCAST_ADD - 1].type ||
		extras[PVNET_EXTRA_TYPE_MCAST_DEL - 1].type;
	if (mcast && !(lim->flags & PVNET_TXV_MCAST))
		return -PVNET_VERR_EXTRA_UNSUPPORTED;

	err = pvnet_check_gref(reqs[0].gref, lim);
	for (i = 1; !err && i < info->nr_slots; i++) {
		req = &reqs[info->nr_extras + i];
		if (req->size)
			err = pvnet_check_gref(req->gref, lim);
	}
	if (err)
		return err;

	pvnet_add_seg(info, &reqs[0], first_len, 0);
	off = first_len;
	for (i = 1; i < info->nr_slots; i++) {
		req = &reqs[info->nr_extras + i];
		pvnet_add_seg(info, req, req->size, off);
		off += req->size;
	}
	return 0;
}

/**
 * pvnet_validate_tx - check one transmit packet copied out of the ring
 * @reqs: the backend's private copies of the requests from req_cons on
 * @avail: entries of @reqs: the requests produced, at most PVNET_TXV_WINDOW
 * @lim: what the backend advertised
 * @info: filled in with the checked packet
 *
 * Return: 0 if the packet is valid; else -PVNET_VERR_*. After a fatal error
 * (pvnet_validate_fatal()) nothing in @info is to be used; after any other,
 * @info->nr_entries, nr_slots and nr_extras say which requests to answer.
 */
int pvnet_validate_tx(const struct pvnet_tx_request *reqs, u32 avail,
		      const struct pvnet_vif_limits *lim,
		      struct pvnet_tx_info *info)
{
	struct pvnet_extra_info extras[PVNET_TXV_MAX_EXTRAS] = {};
	int err;

	if (!info)
		return -PVNET_VERR_PARAM;
	memset(info, 0, sizeof(*info));
	if (!reqs || !lim || !avail || avail > PVNET_TXV_WINDOW ||
	    !lim->max_slots || lim->max_slots > PVNET_TXV_FATAL_SLOTS ||
	    lim->max_size < PVNET_ETH_HLEN || lim->max_size > PVNET_MAX_TX_SIZE)
		return -PVNET_VERR_PARAM;
	info->id = reqs[0].id;
	info->flags = reqs[0].flags;
	info->size = reqs[0].size;
	info->nr_entries = 1;

	if (reqs[0].flags & PVNET_TXF_EXTRA_INFO) {
		err = pvnet_walk_extras(reqs, avail, extras, info);
		if (err)
			return err;
	}
	err = pvnet_walk_slots(reqs, avail, info);
	if (err)
		return err;
	err = pvnet_check_gso(&extras[PVNET_EXTRA_TYPE_GSO - 1], info);
	if (err)
		return err;
	info->has_hash = !!extras[PVNET_EXTRA_TYPE_HASH - 1].type;
	err = pvnet_check_packet(reqs, extras, lim, info);
	if (err)
		info->nr_segs = 0;
	return err;
}

/**
 * pvnet_validate_rx_req - check a receive request copied out of the ring
 * @req: the backend's private copy
 * @lim: what the backend knows of the frontend's grant table
 *
 * The id is echoed and needs no check; the page must be a possible grant.
 *
 * Return: 0 or -PVNET_VERR_GREF (-PVNET_VERR_PARAM for bad arguments).
 */
int pvnet_validate_rx_req(const struct pvnet_rx_request *req,
			  const struct pvnet_vif_limits *lim)
{
	if (!req || !lim)
		return -PVNET_VERR_PARAM;
	return pvnet_check_gref(req->gref, lim);
}

/**
 * pvnet_validate_ring_prod - is the frontend's producer index plausible?
 * @req_prod: the private copy of the shared ring's req_prod
 * @cons: the backend's req_cons
 * @ring_size: entries in the ring, a power of two
 *
 * The indexes are free-running and wrap around; the frontend cannot have
 * more than @ring_size requests unconsumed (XSA-39).
 *
 * Return: 0 if plausible, -PVNET_VERR_RING if not, -PVNET_VERR_PARAM if
 * @ring_size is not a power of two.
 */
int pvnet_validate_ring_prod(u32 req_prod, u32 cons, u32 ring_size)
{
	if (!ring_size || (ring_size & (ring_size - 1)))
		return -PVNET_VERR_PARAM;
	if ((u32)(req_prod - cons) > ring_size)
		return -PVNET_VERR_RING;
	return 0;
}

/**
 * pvnet_validate_fatal - must the backend disable the interface?
 * @err: a return value of the functions above
 *
 * Return: 1 for the errors after which the ring cannot be trusted or parsed
 * further (checks 1-7 and 9 in pvnet_validate.h, RING), else 0.
 */
int pvnet_validate_fatal(int err)
{
	switch (-err) {
	case PVNET_VERR_RING:
	case PVNET_VERR_CHAIN:
	case PVNET_VERR_EXTRA_TYPE:
	case PVNET_VERR_EXTRA_DUP:
	case PVNET_VERR_SLOTS_FATAL:
	case PVNET_VERR_PAGE:
	case PVNET_VERR_GSO:
	case PVNET_VERR_PARAM:
		return 1;
	default:
		return 0;
	}
}

/**
 * pvnet_validate_strerror - a short reason for a validation result
 * @err: 0 or -PVNET_VERR_* (a positive PVNET_VERR_* works too)
 *
 * Return: a static string; "unknown error" for anything else.
 */
const char *pvnet_validate_strerror(int err)
{
	unsigned int code = err < 0 ? 0U - (unsigned int)err : (unsigned int)err;

	if (code >= PVNET_VERR_COUNT)
		return "unknown error";
	return pvnet_verr_names[code];
}
