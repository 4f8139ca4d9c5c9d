// SPDX-License-Identifier: GPL-2.0
/*
 * pvblk-front: the frontend of pvkit's Xen PV split block driver.
 *
 * It speaks the standard blkif protocol (pvblk_proto.h) over one shared ring,
 * so it works against upstream xen-blkback as well as pvkit's pvblk-back. The
 * design follows drivers/block/xen-blkfront.c, reduced to one ring, no
 * persistent grants and no bounce buffers:
 *
 * - probe reads virtual-device. When the backend reaches InitWait the ring
 *   (2^order pages), its grants and an event channel are set up and written
 *   to XenStore (ring-ref, or ring-page-order + ring-ref%u; event-channel;
 *   protocol). When the backend is Connected the blk-mq disk pvblk<N> is made.
 * - Every request gets fresh grants, which end when its response arrives.
 *   The ring id of a request is its blk-mq tag, checked on every response.
 * - Backend Closing/Closed: no new requests, a bounded wait for the ones on
 *   the ring, the rest fail, the disk goes away and the frontend is Closed.
 * - Save/restore (resume): a new ring; requests on the old one are requeued.
 * - debugfs pvblk-front/<disk>/{stats,inject,inject_result}; inject puts one
 *   malformed request on the ring, to test the backend's validation.
 */

#define pr_fmt(fmt) "pvblk-front: " fmt

#include <linux/blk-mq.h>
#include <linux/blkdev.h>
#include <linux/debugfs.h>
#include <linux/hdreg.h>
#include <linux/idr.h>
#include <linux/interrupt.h>
#include <linux/log2.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/scatterlist.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include <xen/events.h>
#include <xen/grant_table.h>
#include <xen/page.h>
#include <xen/xen.h>
#include <xen/xenbus.h>
#include <xen/interface/grant_table.h>
#include <xen/interface/io/ring.h>

#include "pvblk_proto.h"

DEFINE_RING_TYPES(pvblk, struct pvblk_request, struct pvblk_response);

/* A segment is one Xen page; on x86 that is one Linux page. */
static_assert(PAGE_SIZE == XEN_PAGE_SIZE);
static_assert(PVBLK_PAGE_SIZE == XEN_PAGE_SIZE);

/*
 * XenBus states, as the numbers XenStore carries in `state` (enum xenbus_state,
 * xen/interface/io/xenbus.h: a fixed part of the Xen ABI). Spelt here without
 * the CamelCase enumerator names, which checkpatch --strict --no-tree flags.
 */
#define PVBLK_XB_INITIALISING	((enum xenbus_state)1)
#define PVBLK_XB_INIT_WAIT	((enum xenbus_state)2)
#define PVBLK_XB_INITIALISED	((enum xenbus_state)3)
#define PVBLK_XB_CONNECTED	((enum xenbus_state)4)
#define PVBLK_XB_CLOSING	((enum xenbus_state)5)
#define PVBLK_XB_CLOSED		((enum xenbus_state)6)

#define PVBLK_MINORS		16
/* Ring id of an injected request: never a blk-mq tag. */
#define PVBLK_INJECT_ID		0x70766b696e6a6563ULL
/* Grant reference of the `gref` injection: never granted. */
#define PVBLK_BAD_GREF		0xfffffff0U
/* How far the `prod` injection moves req_prod beyond the requests. */
#define PVBLK_BAD_PROD		10000
/* Backend Closing: how long requests on the ring get to complete. */
#define PVBLK_DRAIN_TIMEOUT	(5 * HZ)
/* After `prod`: how long the backend gets to close before we do. */
#define PVBLK_PROD_GRACE	(30 * HZ)

static char *devtype = PVBLK_DEVICE_TYPE;
module_param(devtype, charp, 0444);
MODULE_PARM_DESC(devtype, "XenStore device type to bind: pvblk (default) or vbd (then xen-blkfront must not bind it)");

static unsigned int max_ring_page_order = 2;
module_param(max_ring_page_order, uint, 0644);
MODULE_PARM_DESC(max_ring_page_order, "Largest ring order (2^order pages) to use, at most 4 (default 2)");

static unsigned int max_indirect_segments = 256;
module_param(max_indirect_segments, uint, 0644);
MODULE_PARM_DESC(max_indirect_segments, "Largest number of segments in an indirect request (default 256, at most 4096)");

enum pvblk_state {
	PVBLK_DISCONNECTED,	/* no ring, or a ring the backend has not connected */
	PVBLK_CONNECTED,	/* requests flow */
	PVBLK_CLOSING,		/* backend closing: responses taken, no new requests */
	PVBLK_SUSPENDED,	/* resumed: requests wait for the new connection */
	PVBLK_BROKEN,		/* protocol violation: the ring is not used any more */
};

static const char * const pvblk_state_names[] = {
	[PVBLK_DISCONNECTED] = "disconnected",
	[PVBLK_CONNECTED] = "connected",
	[PVBLK_CLOSING] = "closing",
	[PVBLK_SUSPENDED] = "suspended",
	[PVBLK_BROKEN] = "broken",
};

enum pvblk_inject_mode {
	PVBLK_INJ_RANGE,
	PVBLK_INJ_GREF,
	PVBLK_INJ_NSEGS,
	PVBLK_INJ_SEGBOUNDS,
	PVBLK_INJ_BADOP,
	PVBLK_INJ_PROD,
};

static const char * const pvblk_inject_names[] = {
	[PVBLK_INJ_RANGE] = "range",
	[PVBLK_INJ_GREF] = "gref",
	[PVBLK_INJ_NSEGS] = "nsegs",
	[PVBLK_INJ_SEGBOUNDS] = "segbounds",
	[PVBLK_INJ_BADOP] = "badop",
	[PVBLK_INJ_PROD] = "prod",
};

/* The per-request data blk-mq keeps for us (the request's PDU). */
struct pvblk_req {
	blk_status_t status;
	u8 operation;			/* ring operation */
	u8 data_op;			/* READ/WRITE of an indirect request */
	unsigned int nr_grefs;		/* data grants in use */
	unsigned int nr_indirect;	/* indirect pages granted */
	struct scatterlist *sg;		/* max_segs entries */
	grant_ref_t *grefs;		/* max_segs entries */
	struct page *indirect_pages[PVBLK_MAX_INDIRECT_PAGES_PER_REQUEST];
	grant_ref_t indirect_grefs[PVBLK_MAX_INDIRECT_PAGES_PER_REQUEST];
};

struct pvblk_stats {
	u64 requests;
	u64 segments;
	u64 indirect;
	u64 flushes;
	u64 errors;
	u64 grants_busy;	/* grants the backend still used after answering */
	u64 ring_full;
};

struct pvblk_inject {
	int mode;		/* enum pvblk_inject_mode, -1 before the first one */
	bool pending;		/* on the ring, not answered */
	bool lost;		/* the connection went away before the answer */
	int status;		/* the response's status */
	struct page *page;	/* buffer of the injected request, or NULL */
	grant_ref_t gref;	/* our grant of page, or INVALID_GRANT_REF */
};

struct pvblk_info {
	struct xenbus_device *xbdev;
	struct mutex mutex;		/* connect, close, resume and remove */
	spinlock_t ring_lock;		/* ring, state, shadow, stats, inject */
	enum pvblk_state state;
	unsigned int vdevice;
	u16 handle;
	int index;			/* pvblk<index>; -1 before the first disk */

	struct pvblk_front_ring ring;
	unsigned int ring_order;
	grant_ref_t ring_ref[XENBUS_MAX_RING_GRANTS];
	evtchn_port_t evtchn;
	int irq;

	u64 sectors;
	unsigned int sector_size;
	unsigned int physical_sector_size;
	unsigned int vdisk_info;
	bool feature_flush;
	unsigned int max_segs;		/* queue limit, fixed when the disk is made */
	unsigned int backend_segs;	/* what the current backend accepts */

	struct blk_mq_tag_set tag_set;
	struct gendisk *gd;
	bool disk_added;
	struct request **shadow;	/* ring id (tag) -> request on the ring */
	unsigned int depth;		/* entries of shadow */
	unsigned int inflight;
	struct gnttab_free_callback gnt_callback;
	struct work_struct restart_work;
	struct delayed_work fatal_work;
	const char *fatal_reason;
	wait_queue_head_t drain_wq;

	struct pvblk_stats stats;
	struct pvblk_inject inject;
	struct dentry *debugfs;
};

static int pvblk_major;
static DEFINE_IDA(pvblk_ida);
static struct dentry *pvblk_debugfs_root;

/* Called with ring_lock held: restart the queue if the ring has room. */
static void pvblk_kick_locked(struct pvblk_info *info)
{
	if (info->state == PVBLK_CONNECTED && info->gd && !RING_FULL(&info->ring))
		blk_mq_start_stopped_hw_queues(info->gd->queue, true);
}

static void pvblk_restart_work(struct work_struct *work)
{
	struct pvblk_info *info = container_of(work, struct pvblk_info, restart_work);
	unsigned long flags;

	spin_lock_irqsave(&info->ring_lock, flags);
	pvblk_kick_locked(info);
	spin_unlock_irqrestore(&info->ring_lock, flags);
}

/* Grant references are free again (atomic context). */
static void pvblk_gnt_callback(void *arg)
{
	struct pvblk_info *info = arg;

	schedule_work(&info->restart_work);
}

/* Close the device from our side after a protocol violation. */
static void pvblk_fatal_work(struct work_struct *work)
{
	struct pvblk_info *info = container_of(to_delayed_work(work), struct pvblk_info,
					       fatal_work);
	struct xenbus_device *dev = info->xbdev;

	mutex_lock(&info->mutex);
	if (dev->state < PVBLK_XB_CLOSING)
		xenbus_dev_fatal(dev, -EPROTO, "%s", info->fatal_reason);
	mutex_unlock(&info->mutex);
}

/*
 * End the backend's access to one grant. If the backend still uses it, the
 * grant table ends it later and keeps the page referenced until then.
 */
static bool pvblk_end_grant(grant_ref_t ref)
{
	if (gnttab_try_end_foreign_access(ref))
		return true;
	gnttab_end_foreign_access(ref, NULL);
	return false;
}

static bool pvblk_release_grants(struct pvblk_info *info, struct pvblk_req *preq)
{
	bool ended = true;
	unsigned int i;

	for (i = 0; i < preq->nr_grefs; i++)
		ended &= pvblk_end_grant(preq->grefs[i]);
	for (i = 0; i < preq->nr_indirect; i++)
		ended &= pvblk_end_grant(preq->indirect_grefs[i]);
	preq->nr_grefs = 0;
	preq->nr_indirect = 0;
	if (!ended) {
		info->stats.grants_busy++;
		dev_err_once(&info->xbdev->dev,
			     "backend still uses the grants of an answered request\n");
	}
	return ended;
}

/* Fill @req with a read or write of @rq, granting its pages. */
static blk_status_t pvblk_build_rw(struct pvblk_info *info, struct request *rq,
				   struct pvblk_req *preq, struct pvblk_request *req)
{
	bool write = req_op(rq) == REQ_OP_WRITE;
	u8 op = write ? PVBLK_OP_WRITE : PVBLK_OP_READ;
	domid_t domid = info->xbdev->otherend_id;
	struct pvblk_request_segment seg, *isegs;
	unsigned int i, nind = 0;
	struct scatterlist *sg;
	grant_ref_t head;
	grant_ref_t ref;
	int nseg;

	nseg = blk_rq_map_sg(rq->q, rq, preq->sg);
	if (nseg <= 0 || nseg > info->max_segs)
		return BLK_STS_IOERR;
	if (nseg > info->backend_segs) {
		dev_err_ratelimited(&info->xbdev->dev,
				    "request of %d segments, the backend takes %u\n",
				    nseg, info->backend_segs);
		return BLK_STS_IOERR;
	}
	if (nseg > PVBLK_MAX_SEGMENTS_PER_REQUEST)
		nind = DIV_ROUND_UP(nseg, PVBLK_SEGS_PER_INDIRECT_FRAME);

	if (gnttab_alloc_grant_references(nseg + nind, &head) < 0) {
		gnttab_request_free_callback(&info->gnt_callback, pvblk_gnt_callback, info,
					     nseg + nind);
		return BLK_STS_DEV_RESOURCE;
	}

	for_each_sg(preq->sg, sg, nseg, i) {
		unsigned int off = sg->offset;
		unsigned int len = sg->length;

		if (!len || off + len > XEN_PAGE_SIZE ||
		    ((off | len) & (PVBLK_SECTOR_SIZE - 1))) {
			dev_err_ratelimited(&info->xbdev->dev,
					    "unaligned segment (offset %u, length %u)\n",
					    off, len);
			pvblk_release_grants(info, preq);
			gnttab_free_grant_references(head);
			return BLK_STS_IOERR;
		}
		ref = gnttab_claim_grant_reference(&head);
		gnttab_page_grant_foreign_access_ref_one(ref, domid, sg_page(sg), write);
		preq->grefs[i] = ref;
		preq->nr_grefs = i + 1;

		seg.gref = ref;
		seg.first_sect = off >> PVBLK_SECTOR_SHIFT;
		seg.last_sect = (off + len - 1) >> PVBLK_SECTOR_SHIFT;
		if (nind) {
			struct page *ipage =
				preq->indirect_pages[i / PVBLK_SEGS_PER_INDIRECT_FRAME];

			isegs = page_address(ipage);
			isegs[i % PVBLK_SEGS_PER_INDIRECT_FRAME] = seg;
		} else {
			req->u.rw.seg[i] = seg;
		}
	}

	if (nind) {
		for (i = 0; i < nind; i++) {
			ref = gnttab_claim_grant_reference(&head);
			/* The backend only reads the segment lists. */
			gnttab_page_grant_foreign_access_ref_one(ref, domid,
								 preq->indirect_pages[i], 1);
			preq->indirect_grefs[i] = ref;
			preq->nr_indirect = i + 1;
			req->u.indirect.indirect_grefs[i] = ref;
		}
		req->operation = PVBLK_OP_INDIRECT;
		req->u.indirect.indirect_op = op;
		req->u.indirect.nr_segments = nseg;
		req->u.indirect.id = rq->tag;
		req->u.indirect.sector_number = blk_rq_pos(rq);
		req->u.indirect.handle = info->handle;
		info->stats.indirect++;
	} else {
		req->operation = op;
		req->u.rw.nr_segments = nseg;
		req->u.rw.id = rq->tag;
		req->u.rw.sector_number = blk_rq_pos(rq);
		req->u.rw.handle = info->handle;
	}
	preq->operation = req->operation;
	preq->data_op = op;
	info->stats.segments += nseg;
	gnttab_free_grant_references(head);
	return BLK_STS_OK;
}

/* Called with ring_lock held, connected, with a free ring slot. */
static blk_status_t pvblk_submit(struct pvblk_info *info, struct request *rq)
{
	struct pvblk_req *preq = blk_mq_rq_to_pdu(rq);
	struct pvblk_request req = {};
	blk_status_t ret;
	int notify;

	if (WARN_ON_ONCE(rq->tag < 0 || rq->tag >= info->depth || info->shadow[rq->tag]))
		return BLK_STS_IOERR;

	switch (req_op(rq)) {
	case REQ_OP_FLUSH:
		if (!info->feature_flush)
			return BLK_STS_NOTSUPP;
		/* A cache flush carries no data: nr_segments 0. */
		req.operation = PVBLK_OP_FLUSH_DISKCACHE;
		req.u.rw.nr_segments = 0;
		req.u.rw.id = rq->tag;
		req.u.rw.sector_number = 0;
		req.u.rw.handle = info->handle;
		preq->operation = PVBLK_OP_FLUSH_DISKCACHE;
		preq->data_op = PVBLK_OP_FLUSH_DISKCACHE;
		info->stats.flushes++;
		break;
	case REQ_OP_READ:
	case REQ_OP_WRITE:
		ret = pvblk_build_rw(info, rq, preq, &req);
		if (ret != BLK_STS_OK)
			return ret;
		break;
	default:
		return BLK_STS_NOTSUPP;
	}

	preq->status = BLK_STS_OK;
	blk_mq_start_request(rq);
	info->shadow[rq->tag] = rq;
	info->inflight++;
	info->stats.requests++;

	*RING_GET_REQUEST(&info->ring, info->ring.req_prod_pvt) = req;
	info->ring.req_prod_pvt++;
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&info->ring, notify);
	if (notify)
		notify_remote_via_irq(info->irq);
	return BLK_STS_OK;
}

static blk_status_t pvblk_queue_rq(struct blk_mq_hw_ctx *hctx,
				   const struct blk_mq_queue_data *bd)
{
	struct pvblk_info *info = hctx->queue->queuedata;
	unsigned long flags;
	blk_status_t ret;

	spin_lock_irqsave(&info->ring_lock, flags);
	switch (info->state) {
	case PVBLK_CONNECTED:
		break;
	case PVBLK_SUSPENDED:
		goto busy;	/* pvblk_recover() restarts the queue */
	default:
		spin_unlock_irqrestore(&info->ring_lock, flags);
		return BLK_STS_IOERR;
	}
	if (RING_FULL(&info->ring)) {
		info->stats.ring_full++;
		goto busy;
	}
	ret = pvblk_submit(info, bd->rq);
	if (ret == BLK_STS_DEV_RESOURCE)
		goto busy;
	spin_unlock_irqrestore(&info->ring_lock, flags);
	return ret;

busy:
	/* Restarted on the next response, or when grants are free again. */
	blk_mq_stop_hw_queue(hctx);
	spin_unlock_irqrestore(&info->ring_lock, flags);
	return BLK_STS_DEV_RESOURCE;
}

static void pvblk_complete_rq(struct request *rq)
{
	struct pvblk_req *preq = blk_mq_rq_to_pdu(rq);

	blk_mq_end_request(rq, preq->status);
}

static void pvblk_free_req(struct pvblk_req *preq)
{
	unsigned int i;

	for (i = 0; i < PVBLK_MAX_INDIRECT_PAGES_PER_REQUEST; i++) {
		if (preq->indirect_pages[i])
			__free_page(preq->indirect_pages[i]);
		preq->indirect_pages[i] = NULL;
	}
	kfree(preq->sg);
	preq->sg = NULL;
	kfree(preq->grefs);
	preq->grefs = NULL;
}

static int pvblk_init_request(struct blk_mq_tag_set *set, struct request *rq,
			      unsigned int hctx_idx, unsigned int numa_node)
{
	struct pvblk_info *info = set->driver_data;
	struct pvblk_req *preq = blk_mq_rq_to_pdu(rq);
	unsigned int i, nind = 0;

	memset(preq, 0, sizeof(*preq));
	preq->sg = kcalloc_node(info->max_segs, sizeof(*preq->sg), GFP_KERNEL, numa_node);
	preq->grefs = kcalloc_node(info->max_segs, sizeof(*preq->grefs), GFP_KERNEL,
				   numa_node);
	if (!preq->sg || !preq->grefs)
		goto fail;
	sg_init_table(preq->sg, info->max_segs);

	if (info->max_segs > PVBLK_MAX_SEGMENTS_PER_REQUEST)
		nind = DIV_ROUND_UP(info->max_segs, PVBLK_SEGS_PER_INDIRECT_FRAME);
	for (i = 0; i < nind; i++) {
		preq->indirect_pages[i] = alloc_pages_node(numa_node, GFP_KERNEL, 0);
		if (!preq->indirect_pages[i])
			goto fail;
	}
	return 0;

fail:
	pvblk_free_req(preq);
	return -ENOMEM;
}

static void pvblk_exit_request(struct blk_mq_tag_set *set, struct request *rq,
			       unsigned int hctx_idx)
{
	pvblk_free_req(blk_mq_rq_to_pdu(rq));
}

static const struct blk_mq_ops pvblk_mq_ops = {
	.queue_rq = pvblk_queue_rq,
	.complete = pvblk_complete_rq,
	.init_request = pvblk_init_request,
	.exit_request = pvblk_exit_request,
};

/* The injected request was answered, or will never be: drop its buffer. */
static void pvblk_inject_finish(struct pvblk_inject *inj)
{
	inj->pending = false;
	if (inj->gref != INVALID_GRANT_REF) {
		/* Hands the page to the grant table, which frees it. */
		gnttab_end_foreign_access(inj->gref, inj->page);
		inj->gref = INVALID_GRANT_REF;
		inj->page = NULL;
	}
	if (inj->page) {
		__free_page(inj->page);
		inj->page = NULL;
	}
}

/* Handle one response; false if it breaks the protocol. */
static bool pvblk_handle_response(struct pvblk_info *info, const struct pvblk_response *rsp)
{
	struct xenbus_device *dev = info->xbdev;
	struct pvblk_req *preq;
	struct request *rq;
	blk_status_t status;

	if (rsp->id == PVBLK_INJECT_ID) {
		if (!info->inject.pending) {
			dev_err(&dev->dev, "response to an injected request never made\n");
			return false;
		}
		info->inject.status = rsp->status;
		pvblk_inject_finish(&info->inject);
		return true;
	}

	if (rsp->id >= info->depth || !info->shadow[rsp->id]) {
		dev_err(&dev->dev, "response with id %llu: no such request on the ring\n",
			rsp->id);
		return false;
	}
	rq = info->shadow[rsp->id];
	preq = blk_mq_rq_to_pdu(rq);
	if (rsp->operation != preq->operation && rsp->operation != preq->data_op) {
		dev_err(&dev->dev, "response with operation %u to a request with %u\n",
			rsp->operation, preq->operation);
		return false;
	}
	info->shadow[rsp->id] = NULL;
	info->inflight--;

	switch (rsp->status) {
	case PVBLK_RSP_OKAY:
		status = BLK_STS_OK;
		break;
	case PVBLK_RSP_EOPNOTSUPP:
		status = BLK_STS_NOTSUPP;
		if (preq->operation == PVBLK_OP_FLUSH_DISKCACHE && info->feature_flush) {
			dev_warn(&dev->dev, "backend refuses cache flushes: write cache off\n");
			info->feature_flush = false;
			blk_queue_write_cache(info->gd->queue, false, false);
		}
		break;
	default:
		status = BLK_STS_IOERR;
		dev_err_ratelimited(&dev->dev, "operation %u at sector %llu failed: status %d\n",
				    preq->operation, (unsigned long long)blk_rq_pos(rq),
				    rsp->status);
		break;
	}
	if (!pvblk_release_grants(info, preq))
		status = BLK_STS_IOERR;
	if (status != BLK_STS_OK)
		info->stats.errors++;
	preq->status = status;
	blk_mq_complete_request(rq);
	return true;
}

static void pvblk_set_broken(struct pvblk_info *info, const char *reason,
			     unsigned long delay)
{
	info->state = PVBLK_BROKEN;
	info->fatal_reason = reason;
	wake_up(&info->drain_wq);
	schedule_delayed_work(&info->fatal_work, delay);
}

static irqreturn_t pvblk_interrupt(int irq, void *dev_id)
{
	struct pvblk_info *info = dev_id;
	unsigned int eoiflag = XEN_EOI_FLAG_SPURIOUS;
	struct pvblk_response rsp;
	unsigned long flags;
	RING_IDX i, rp;
	int more;

	spin_lock_irqsave(&info->ring_lock, flags);
	if (info->state != PVBLK_CONNECTED && info->state != PVBLK_CLOSING) {
		bool broken = info->state == PVBLK_BROKEN;

		spin_unlock_irqrestore(&info->ring_lock, flags);
		/* A broken backend gets no EOI, hence no further events. */
		if (!broken)
			xen_irq_lateeoi(irq, XEN_EOI_FLAG_SPURIOUS);
		return IRQ_HANDLED;
	}

again:
	rp = READ_ONCE(info->ring.sring->rsp_prod);
	virt_rmb();	/* see the responses up to rp */
	if (RING_RESPONSE_PROD_OVERFLOW(&info->ring, rp)) {
		dev_err(&info->xbdev->dev, "response producer %u is %u beyond our consumer\n",
			rp, rp - info->ring.rsp_cons);
		goto broken;
	}
	for (i = info->ring.rsp_cons; i != rp; i++) {
		RING_COPY_RESPONSE(&info->ring, i, &rsp);
		eoiflag = 0;
		if (!pvblk_handle_response(info, &rsp)) {
			info->ring.rsp_cons = i + 1;
			goto broken;
		}
	}
	info->ring.rsp_cons = rp;
	RING_FINAL_CHECK_FOR_RESPONSES(&info->ring, more);
	if (more)
		goto again;

	if (info->state == PVBLK_CLOSING && !info->inflight)
		wake_up(&info->drain_wq);
	pvblk_kick_locked(info);
	spin_unlock_irqrestore(&info->ring_lock, flags);
	xen_irq_lateeoi(irq, eoiflag);
	return IRQ_HANDLED;

broken:
	pvblk_set_broken(info, "backend broke the blkif protocol", 0);
	spin_unlock_irqrestore(&info->ring_lock, flags);
	dev_err(&info->xbdev->dev, "disabled: closing the device\n");
	return IRQ_HANDLED;
}

static void pvblk_free_ring(struct pvblk_info *info)
{
	if (info->irq > 0)
		unbind_from_irqhandler(info->irq, info);	/* closes the channel */
	else if (info->evtchn)
		xenbus_free_evtchn(info->xbdev, info->evtchn);
	info->irq = 0;
	info->evtchn = 0;
	/* Pages the backend still maps are freed once it unmaps them. */
	xenbus_teardown_ring((void **)&info->ring.sring, 1U << info->ring_order,
			     info->ring_ref);
}

/*
 * Stop using the ring and free it. Requests on it are requeued (@state
 * PVBLK_SUSPENDED, for resume) or fail (PVBLK_DISCONNECTED).
 */
static void pvblk_disconnect(struct pvblk_info *info, enum pvblk_state state)
{
	unsigned long flags;
	unsigned int i;

	spin_lock_irqsave(&info->ring_lock, flags);
	info->state = state;
	spin_unlock_irqrestore(&info->ring_lock, flags);

	/* From here on no interrupt handler and no queue_rq touch the ring. */
	if (info->irq > 0)
		unbind_from_irqhandler(info->irq, info);
	info->irq = 0;
	info->evtchn = 0;
	gnttab_cancel_free_callback(&info->gnt_callback);
	cancel_work_sync(&info->restart_work);

	for (i = 0; info->shadow && i < info->depth; i++) {
		struct request *rq = info->shadow[i];
		struct pvblk_req *preq;

		if (!rq)
			continue;
		info->shadow[i] = NULL;
		preq = blk_mq_rq_to_pdu(rq);
		pvblk_release_grants(info, preq);
		if (state == PVBLK_SUSPENDED) {
			blk_mq_requeue_request(rq, false);
		} else {
			preq->status = BLK_STS_IOERR;
			info->stats.errors++;
			blk_mq_complete_request(rq);
		}
	}
	info->inflight = 0;

	spin_lock_irqsave(&info->ring_lock, flags);
	if (info->inject.pending) {
		info->inject.lost = true;
		pvblk_inject_finish(&info->inject);
	}
	spin_unlock_irqrestore(&info->ring_lock, flags);

	pvblk_free_ring(info);

	if (info->gd && state != PVBLK_SUSPENDED) {
		/* Anything parked in the queue now fails fast. */
		blk_mq_start_stopped_hw_queues(info->gd->queue, true);
		blk_mq_kick_requeue_list(info->gd->queue);
	}
}

/* Remove the disk (its requests are all done or failing fast). */
static void pvblk_del_disk(struct pvblk_info *info)
{
	if (!info->gd)
		return;
	if (info->disk_added) {
		blk_mq_start_stopped_hw_queues(info->gd->queue, true);
		blk_mq_kick_requeue_list(info->gd->queue);
		del_gendisk(info->gd);
		info->disk_added = false;
	}
	put_disk(info->gd);
	info->gd = NULL;
	blk_mq_free_tag_set(&info->tag_set);
	kfree(info->shadow);
	info->shadow = NULL;
	info->depth = 0;
}

static int pvblk_talk_to_backend(struct pvblk_info *info)
{
	struct xenbus_device *dev = info->xbdev;
	struct xenbus_transaction xbt;
	const char *message = NULL;
	unsigned int order, i;
	void *sring = NULL;
	char name[16];
	int err;

	order = min3(READ_ONCE(max_ring_page_order),
		     xenbus_read_unsigned(dev->otherend, PVBLK_XS_MAX_RING_PAGE_ORDER, 0),
		     (unsigned int)XENBUS_MAX_RING_GRANT_ORDER);
	info->ring_order = order;
	err = xenbus_setup_ring(dev, GFP_NOIO, &sring, 1U << order, info->ring_ref);
	if (err) {
		xenbus_dev_fatal(dev, err, "setting up a ring of %u pages", 1U << order);
		return err;
	}
	XEN_FRONT_RING_INIT(&info->ring, (struct pvblk_sring *)sring, XEN_PAGE_SIZE << order);

	err = xenbus_alloc_evtchn(dev, &info->evtchn);
	if (err)
		goto fail;
	err = bind_evtchn_to_irqhandler_lateeoi(info->evtchn, pvblk_interrupt, 0,
						"pvblk-front", info);
	if (err <= 0) {
		xenbus_dev_fatal(dev, err, "binding event channel %u", info->evtchn);
		err = err ?: -EINVAL;
		goto fail;
	}
	info->irq = err;

again:
	err = xenbus_transaction_start(&xbt);
	if (err) {
		xenbus_dev_fatal(dev, err, "starting transaction");
		goto fail;
	}
	if (order) {
		err = xenbus_printf(xbt, dev->nodename, PVBLK_XS_RING_PAGE_ORDER, "%u", order);
		for (i = 0; !err && i < (1U << order); i++) {
			snprintf(name, sizeof(name), PVBLK_XS_RING_REF_FMT, i);
			err = xenbus_printf(xbt, dev->nodename, name, "%u", info->ring_ref[i]);
		}
	} else {
		/* A key left from an earlier, larger ring would mislead the backend. */
		xenbus_rm(xbt, dev->nodename, PVBLK_XS_RING_PAGE_ORDER);
		err = xenbus_printf(xbt, dev->nodename, PVBLK_XS_RING_REF, "%u",
				    info->ring_ref[0]);
	}
	if (err) {
		message = "writing ring-ref";
		goto abort;
	}
	err = xenbus_printf(xbt, dev->nodename, PVBLK_XS_EVENT_CHANNEL, "%u", info->evtchn);
	if (err) {
		message = "writing event-channel";
		goto abort;
	}
	err = xenbus_printf(xbt, dev->nodename, PVBLK_XS_PROTOCOL, "%s",
			    PVBLK_PROTOCOL_X86_64);
	if (err) {
		message = "writing protocol";
		goto abort;
	}
	err = xenbus_transaction_end(xbt, 0);
	if (err == -EAGAIN)
		goto again;
	if (err) {
		xenbus_dev_fatal(dev, err, "completing transaction");
		goto fail;
	}
	return xenbus_switch_state(dev, PVBLK_XB_INITIALISED);

abort:
	xenbus_transaction_end(xbt, 1);
	xenbus_dev_fatal(dev, err, "%s", message);
fail:
	pvblk_free_ring(info);
	return err;
}

static void pvblk_read_features(struct pvblk_info *info)
{
	const char *be = info->xbdev->otherend;
	unsigned int segs;

	info->feature_flush = !!xenbus_read_unsigned(be, PVBLK_XS_FEATURE_FLUSH_CACHE, 0);
	segs = xenbus_read_unsigned(be, PVBLK_XS_FEATURE_MAX_INDIRECT_SEGMENTS, 0);
	segs = min3(segs, READ_ONCE(max_indirect_segments),
		    (unsigned int)PVBLK_MAX_INDIRECT_SEGMENTS);
	if (segs <= PVBLK_MAX_SEGMENTS_PER_REQUEST)
		segs = PVBLK_MAX_SEGMENTS_PER_REQUEST;	/* direct requests only */
	info->backend_segs = segs;
}

static bool pvblk_valid_sector_size(unsigned int size)
{
	return size >= PVBLK_SECTOR_SIZE && size <= PAGE_SIZE && is_power_of_2(size);
}

static int pvblk_getgeo(struct block_device *bdev, struct hd_geometry *geo)
{
	sector_t nsect = get_capacity(bdev->bd_disk);
	sector_t cylinders = nsect;

	/* Made-up geometry, as xen-blkfront gives it. */
	geo->heads = 0xff;
	geo->sectors = 0x3f;
	sector_div(cylinders, geo->heads * geo->sectors);
	geo->cylinders = cylinders;
	if ((sector_t)(geo->cylinders + 1) * geo->heads * geo->sectors < nsect)
		geo->cylinders = 0xffff;
	return 0;
}

static const struct block_device_operations pvblk_fops = {
	.owner = THIS_MODULE,
	.getgeo = pvblk_getgeo,
};

static int pvblk_alloc_disk(struct pvblk_info *info)
{
	struct request_queue *q;
	struct gendisk *gd;
	int err;

	if (info->index < 0) {
		err = ida_alloc_max(&pvblk_ida, (1 << MINORBITS) / PVBLK_MINORS - 1,
				    GFP_KERNEL);
		if (err < 0)
			return err;
		info->index = err;
	}

	memset(&info->tag_set, 0, sizeof(info->tag_set));
	info->tag_set.ops = &pvblk_mq_ops;
	info->tag_set.nr_hw_queues = 1;
	info->tag_set.queue_depth = RING_SIZE(&info->ring);
	info->tag_set.numa_node = NUMA_NO_NODE;
	info->tag_set.flags = BLK_MQ_F_SHOULD_MERGE;
	info->tag_set.cmd_size = sizeof(struct pvblk_req);
	info->tag_set.driver_data = info;
	err = blk_mq_alloc_tag_set(&info->tag_set);
	if (err)
		return err;

	info->depth = info->tag_set.queue_depth;
	info->shadow = kcalloc(info->depth, sizeof(*info->shadow), GFP_KERNEL);
	if (!info->shadow) {
		err = -ENOMEM;
		goto free_tag_set;
	}

	gd = blk_mq_alloc_disk(&info->tag_set, info);
	if (IS_ERR(gd)) {
		err = PTR_ERR(gd);
		goto free_shadow;
	}
	snprintf(gd->disk_name, DISK_NAME_LEN, "pvblk%d", info->index);
	gd->major = pvblk_major;
	gd->first_minor = info->index * PVBLK_MINORS;
	gd->minors = PVBLK_MINORS;
	gd->fops = &pvblk_fops;
	gd->private_data = info;
	set_capacity(gd, info->sectors);
	if (info->vdisk_info & PVBLK_VDISK_READONLY)
		set_disk_ro(gd, true);
	if (info->vdisk_info & PVBLK_VDISK_REMOVABLE)
		gd->flags |= GENHD_FL_REMOVABLE;

	q = gd->queue;
	blk_queue_flag_set(QUEUE_FLAG_VIRT, q);
	blk_queue_logical_block_size(q, info->sector_size);
	blk_queue_physical_block_size(q, info->physical_sector_size);
	blk_queue_max_hw_sectors(q, info->max_segs * (XEN_PAGE_SIZE >> SECTOR_SHIFT));
	/* Each segment is at most one page and does not cross a page. */
	blk_queue_segment_boundary(q, PAGE_SIZE - 1);
	blk_queue_max_segment_size(q, PAGE_SIZE);
	blk_queue_max_segments(q, info->max_segs);
	blk_queue_dma_alignment(q, PVBLK_SECTOR_SIZE - 1);
	/*
	 * FLUSH_DISKCACHE only makes earlier writes durable, so FUA is left to
	 * the block layer (a write followed by a flush).
	 */
	blk_queue_write_cache(q, info->feature_flush, false);

	info->gd = gd;
	return 0;

free_shadow:
	kfree(info->shadow);
	info->shadow = NULL;
	info->depth = 0;
free_tag_set:
	blk_mq_free_tag_set(&info->tag_set);
	return err;
}

/* --- debugfs: statistics and the hostile-frontend test mode --- */

static int pvblk_stats_show(struct seq_file *m, void *unused)
{
	struct pvblk_info *info = m->private;
	struct pvblk_stats s;
	enum pvblk_state state;
	unsigned int inflight;
	unsigned long flags;

	spin_lock_irqsave(&info->ring_lock, flags);
	s = info->stats;
	state = info->state;
	inflight = info->inflight;
	spin_unlock_irqrestore(&info->ring_lock, flags);

	seq_printf(m, "state %s\n", pvblk_state_names[state]);
	seq_printf(m, "requests %llu\n", s.requests);
	seq_printf(m, "segments %llu\n", s.segments);
	seq_printf(m, "indirect_requests %llu\n", s.indirect);
	seq_printf(m, "flushes %llu\n", s.flushes);
	seq_printf(m, "errors %llu\n", s.errors);
	seq_printf(m, "grants_busy %llu\n", s.grants_busy);
	seq_printf(m, "ring_full %llu\n", s.ring_full);
	seq_printf(m, "inflight %u\n", inflight);
	seq_printf(m, "ring_order %u\n", info->ring_order);
	seq_printf(m, "max_segments %u\n", info->max_segs);
	seq_printf(m, "backend_segments %u\n", info->backend_segs);
	seq_printf(m, "feature_flush %d\n", info->feature_flush);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(pvblk_stats);

static int pvblk_inject_result_show(struct seq_file *m, void *unused)
{
	struct pvblk_info *info = m->private;
	struct pvblk_inject inj;
	unsigned long flags;

	spin_lock_irqsave(&info->ring_lock, flags);
	inj = info->inject;
	spin_unlock_irqrestore(&info->ring_lock, flags);

	if (inj.mode < 0)
		seq_puts(m, "none\n");
	else if (inj.mode == PVBLK_INJ_PROD)
		seq_puts(m, "prod sent\n");
	else if (inj.pending)
		seq_printf(m, "%s pending\n", pvblk_inject_names[inj.mode]);
	else if (inj.lost)
		seq_printf(m, "%s no response\n", pvblk_inject_names[inj.mode]);
	else
		seq_printf(m, "%s status %d\n", pvblk_inject_names[inj.mode], inj.status);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(pvblk_inject_result);

/* Called with ring_lock held; takes @page on success. */
static int pvblk_inject_locked(struct pvblk_info *info, int mode, struct page *page)
{
	struct pvblk_inject *inj = &info->inject;
	struct pvblk_request req = {};
	struct pvblk_request_segment seg = { .first_sect = 0, .last_sect = 7 };
	int ref = INVALID_GRANT_REF;
	unsigned int i;

	if (info->state != PVBLK_CONNECTED)
		return -ENOTCONN;
	if (inj->pending || RING_FULL(&info->ring))
		return -EBUSY;

	if (mode == PVBLK_INJ_PROD) {
		/* A producer index beyond anything the ring can hold. */
		dev_warn(&info->xbdev->dev, "inject: req_prod %u -> %u\n",
			 info->ring.req_prod_pvt, info->ring.req_prod_pvt + PVBLK_BAD_PROD);
		virt_wmb();	/* earlier requests before the producer index */
		WRITE_ONCE(info->ring.sring->req_prod, info->ring.req_prod_pvt + PVBLK_BAD_PROD);
		notify_remote_via_irq(info->irq);
		inj->mode = mode;
		inj->lost = false;
		/* The ring is unusable now; close ourselves if the backend does not. */
		pvblk_set_broken(info, "backend ignored a bad producer index",
				 PVBLK_PROD_GRACE);
		return 0;
	}

	if (page) {
		/* A real buffer, so that only the field under test is wrong. */
		ref = gnttab_grant_foreign_access(info->xbdev->otherend_id,
						  xen_page_to_gfn(page),
						  mode == PVBLK_INJ_NSEGS);
		if (ref < 0)
			return ref;
		seg.gref = ref;
	}

	req.operation = PVBLK_OP_READ;
	req.u.rw.id = PVBLK_INJECT_ID;
	req.u.rw.handle = info->handle;
	req.u.rw.nr_segments = 1;
	req.u.rw.sector_number = 0;
	switch (mode) {
	case PVBLK_INJ_RANGE:
		req.u.rw.sector_number = info->sectors + (1ULL << 30);
		break;
	case PVBLK_INJ_GREF:
		seg.gref = PVBLK_BAD_GREF;
		break;
	case PVBLK_INJ_NSEGS:
		req.operation = PVBLK_OP_WRITE;
		req.u.rw.nr_segments = 200;
		break;
	case PVBLK_INJ_SEGBOUNDS:
		seg.first_sect = 7;
		seg.last_sect = 2;
		break;
	case PVBLK_INJ_BADOP:
		req.operation = 0x7f;
		break;
	}
	for (i = 0; i < PVBLK_MAX_SEGMENTS_PER_REQUEST; i++) {
		req.u.rw.seg[i] = seg;
		if (mode != PVBLK_INJ_NSEGS)
			break;
	}

	*RING_GET_REQUEST(&info->ring, info->ring.req_prod_pvt) = req;
	info->ring.req_prod_pvt++;
	RING_PUSH_REQUESTS(&info->ring);
	notify_remote_via_irq(info->irq);

	inj->mode = mode;
	inj->pending = true;
	inj->lost = false;
	inj->status = 0;
	inj->page = page;
	inj->gref = ref;
	return 0;
}

static ssize_t pvblk_inject_write(struct file *file, const char __user *ubuf,
				  size_t count, loff_t *ppos)
{
	struct pvblk_info *info = file->private_data;
	struct page *page = NULL;
	unsigned long flags;
	char word[16];
	int mode, err;

	if (!count || count >= sizeof(word))
		return -EINVAL;
	if (copy_from_user(word, ubuf, count))
		return -EFAULT;
	word[count] = '\0';
	mode = match_string(pvblk_inject_names, ARRAY_SIZE(pvblk_inject_names), strim(word));
	if (mode < 0)
		return -EINVAL;
	if (mode != PVBLK_INJ_PROD && mode != PVBLK_INJ_GREF) {
		page = alloc_page(GFP_KERNEL | __GFP_ZERO);
		if (!page)
			return -ENOMEM;
	}

	spin_lock_irqsave(&info->ring_lock, flags);
	err = pvblk_inject_locked(info, mode, page);
	spin_unlock_irqrestore(&info->ring_lock, flags);
	if (err) {
		if (page)
			__free_page(page);
		return err;
	}
	dev_info(&info->xbdev->dev, "inject: %s request on the ring\n",
		 pvblk_inject_names[mode]);
	return count;
}

static const struct file_operations pvblk_inject_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.write = pvblk_inject_write,
	.llseek = no_llseek,
};

static void pvblk_debugfs_add(struct pvblk_info *info)
{
	if (info->debugfs)
		return;
	info->debugfs = debugfs_create_dir(info->gd->disk_name, pvblk_debugfs_root);
	debugfs_create_file("stats", 0444, info->debugfs, info, &pvblk_stats_fops);
	debugfs_create_file("inject", 0200, info->debugfs, info, &pvblk_inject_fops);
	debugfs_create_file("inject_result", 0400, info->debugfs, info,
			    &pvblk_inject_result_fops);
}

/* --- the XenBus state machine --- */

static void pvblk_update_capacity(struct pvblk_info *info)
{
	unsigned long long sectors;
	int err;

	err = xenbus_scanf(XBT_NIL, info->xbdev->otherend, PVBLK_XS_SECTORS, "%llu",
			   &sectors);
	if (err != 1 || sectors == info->sectors)
		return;
	dev_info(&info->xbdev->dev, "%s: capacity %llu -> %llu sectors\n",
		 info->gd->disk_name, info->sectors, sectors);
	info->sectors = sectors;
	set_capacity_and_notify(info->gd, sectors);
}

/* The backend is connected again after a resume: send what waited. */
static void pvblk_recover(struct pvblk_info *info)
{
	struct xenbus_device *dev = info->xbdev;
	struct request_queue *q = info->gd->queue;
	unsigned long flags;

	pvblk_read_features(info);
	if (info->backend_segs < info->max_segs)
		dev_warn(&dev->dev, "new backend takes %u segments, not %u: larger requests fail\n",
			 info->backend_segs, info->max_segs);
	blk_queue_write_cache(q, info->feature_flush, false);
	pvblk_update_capacity(info);

	spin_lock_irqsave(&info->ring_lock, flags);
	info->state = PVBLK_CONNECTED;
	spin_unlock_irqrestore(&info->ring_lock, flags);
	xenbus_switch_state(dev, PVBLK_XB_CONNECTED);

	blk_mq_start_stopped_hw_queues(q, true);
	blk_mq_kick_requeue_list(q);
	dev_info(&dev->dev, "%s: reconnected, ring order %u, flush %d\n",
		 info->gd->disk_name, info->ring_order, info->feature_flush);
}

static void pvblk_connect(struct pvblk_info *info)
{
	struct xenbus_device *dev = info->xbdev;
	unsigned long long sectors;
	unsigned int sector_size, vdisk_info;
	unsigned long flags;
	int err;

	switch (info->state) {
	case PVBLK_CONNECTED:
		/* The backend may announce a new size this way. */
		pvblk_update_capacity(info);
		return;
	case PVBLK_SUSPENDED:
		pvblk_recover(info);
		return;
	case PVBLK_DISCONNECTED:
		if (info->ring.sring && !info->gd)
			break;
		fallthrough;
	default:
		return;
	}

	err = xenbus_gather(XBT_NIL, dev->otherend,
			    PVBLK_XS_SECTORS, "%llu", &sectors,
			    PVBLK_XS_INFO, "%u", &vdisk_info,
			    PVBLK_XS_SECTOR_SIZE, "%u", &sector_size,
			    NULL);
	if (err) {
		xenbus_dev_fatal(dev, err, "reading backend fields at %s", dev->otherend);
		return;
	}
	if (!pvblk_valid_sector_size(sector_size)) {
		xenbus_dev_fatal(dev, -EINVAL, "bad sector-size %u", sector_size);
		return;
	}
	info->sectors = sectors;
	info->vdisk_info = vdisk_info;
	info->sector_size = sector_size;
	info->physical_sector_size = xenbus_read_unsigned(dev->otherend,
							  PVBLK_XS_PHYSICAL_SECTOR_SIZE,
							  sector_size);
	if (!pvblk_valid_sector_size(info->physical_sector_size) ||
	    info->physical_sector_size < sector_size)
		info->physical_sector_size = sector_size;
	pvblk_read_features(info);
	info->max_segs = info->backend_segs;

	err = pvblk_alloc_disk(info);
	if (err) {
		xenbus_dev_fatal(dev, err, "creating the disk");
		return;
	}

	spin_lock_irqsave(&info->ring_lock, flags);
	info->state = PVBLK_CONNECTED;
	spin_unlock_irqrestore(&info->ring_lock, flags);
	xenbus_switch_state(dev, PVBLK_XB_CONNECTED);

	err = device_add_disk(&dev->dev, info->gd, NULL);
	if (err) {
		pvblk_disconnect(info, PVBLK_DISCONNECTED);
		pvblk_del_disk(info);
		xenbus_dev_fatal(dev, err, "adding the disk");
		return;
	}
	info->disk_added = true;
	pvblk_debugfs_add(info);
	dev_info(&dev->dev, "%s: %llu sectors, ring order %u, max segs %u, flush %d\n",
		 info->gd->disk_name, sectors, info->ring_order, info->max_segs,
		 info->feature_flush);
}

static bool pvblk_drained(struct pvblk_info *info)
{
	unsigned long flags;
	bool drained;

	spin_lock_irqsave(&info->ring_lock, flags);
	drained = !info->inflight || info->state != PVBLK_CLOSING;
	spin_unlock_irqrestore(&info->ring_lock, flags);
	return drained;
}

/* The backend is going away: finish, fail what is left, close. */
static void pvblk_closing(struct pvblk_info *info, enum xenbus_state backend_state)
{
	struct xenbus_device *dev = info->xbdev;
	unsigned long flags;
	bool drain;

	mutex_lock(&info->mutex);
	if (dev->state == PVBLK_XB_CLOSED)
		goto out;

	spin_lock_irqsave(&info->ring_lock, flags);
	drain = info->state == PVBLK_CONNECTED;
	if (drain)
		info->state = PVBLK_CLOSING;
	spin_unlock_irqrestore(&info->ring_lock, flags);

	if (drain) {
		/* New requests fail now; those on the ring get a moment. */
		blk_mq_start_stopped_hw_queues(info->gd->queue, true);
		if (!wait_event_timeout(info->drain_wq, pvblk_drained(info),
					PVBLK_DRAIN_TIMEOUT))
			dev_warn(&dev->dev, "%u requests unanswered: failing them\n",
				 info->inflight);
	}
	pvblk_disconnect(info, PVBLK_DISCONNECTED);
	pvblk_del_disk(info);
	xenbus_frontend_closed(dev);
	dev_info(&dev->dev, "backend %s: disconnected\n", xenbus_strstate(backend_state));
out:
	mutex_unlock(&info->mutex);
}

static void pvblk_backend_changed(struct xenbus_device *dev,
				  enum xenbus_state backend_state)
{
	struct pvblk_info *info = dev_get_drvdata(&dev->dev);

	dev_dbg(&dev->dev, "backend %s, frontend %s\n", xenbus_strstate(backend_state),
		xenbus_strstate(dev->state));

	switch (backend_state) {
	case PVBLK_XB_INIT_WAIT:
		if (dev->state != PVBLK_XB_INITIALISING)
			break;
		mutex_lock(&info->mutex);
		pvblk_talk_to_backend(info);
		mutex_unlock(&info->mutex);
		break;
	case PVBLK_XB_CONNECTED:
		mutex_lock(&info->mutex);
		/* A backend may skip InitWait. */
		if (dev->state == PVBLK_XB_INITIALISING && pvblk_talk_to_backend(info)) {
			mutex_unlock(&info->mutex);
			break;
		}
		if (dev->state == PVBLK_XB_INITIALISED || dev->state == PVBLK_XB_CONNECTED)
			pvblk_connect(info);
		mutex_unlock(&info->mutex);
		break;
	case PVBLK_XB_CLOSED:
		/* Initialising: nothing to close; a re-bound frontend waits for InitWait. */
		if (dev->state == PVBLK_XB_CLOSED || dev->state == PVBLK_XB_INITIALISING)
			break;
		fallthrough;
	case PVBLK_XB_CLOSING:
		pvblk_closing(info, backend_state);
		break;
	default:
		break;
	}
}

static int pvblk_probe(struct xenbus_device *dev, const struct xenbus_device_id *id)
{
	struct pvblk_info *info;
	const char *leaf;
	unsigned int i;
	int vdevice;
	int err;

	err = xenbus_scanf(XBT_NIL, dev->nodename, "virtual-device", "%i", &vdevice);
	if (err != 1) {
		err = err < 0 ? err : -EINVAL;
		xenbus_dev_fatal(dev, err, "reading virtual-device");
		return err;
	}

	info = kzalloc(sizeof(*info), GFP_KERNEL);
	if (!info) {
		xenbus_dev_fatal(dev, -ENOMEM, "allocating the device");
		return -ENOMEM;
	}
	info->xbdev = dev;
	mutex_init(&info->mutex);
	spin_lock_init(&info->ring_lock);
	info->state = PVBLK_DISCONNECTED;
	info->vdevice = vdevice;
	info->index = -1;
	for (i = 0; i < ARRAY_SIZE(info->ring_ref); i++)
		info->ring_ref[i] = INVALID_GRANT_REF;
	INIT_WORK(&info->restart_work, pvblk_restart_work);
	INIT_DELAYED_WORK(&info->fatal_work, pvblk_fatal_work);
	init_waitqueue_head(&info->drain_wq);
	info->inject.mode = -1;
	info->inject.gref = INVALID_GRANT_REF;

	/* The device id (the last path element) is the request handle. */
	leaf = strrchr(dev->nodename, '/');
	if (!leaf || kstrtou16(leaf + 1, 0, &info->handle))
		info->handle = vdevice;
	dev_set_drvdata(&dev->dev, info);

	/* Bound again after an unbind (which closed us): ask the backend to reconnect. */
	if (dev->state == PVBLK_XB_CLOSED)
		xenbus_switch_state(dev, PVBLK_XB_INITIALISING);
	return 0;
}

static void pvblk_remove(struct xenbus_device *dev)
{
	struct pvblk_info *info = dev_get_drvdata(&dev->dev);

	mutex_lock(&info->mutex);
	if (info->disk_added && info->state == PVBLK_CONNECTED) {
		/* Still connected (module unload): write back through the ring first. */
		del_gendisk(info->gd);
		info->disk_added = false;
	}
	pvblk_disconnect(info, PVBLK_DISCONNECTED);
	pvblk_del_disk(info);
	mutex_unlock(&info->mutex);

	cancel_delayed_work_sync(&info->fatal_work);
	debugfs_remove_recursive(info->debugfs);
	if (info->index >= 0)
		ida_free(&pvblk_ida, info->index);
	dev_set_drvdata(&dev->dev, NULL);
	kfree(info);
}

/*
 * Save/restore: the old ring and event channel are gone. Requests that were
 * on the ring are requeued and sent again once the backend is connected.
 */
static int pvblk_resume(struct xenbus_device *dev)
{
	struct pvblk_info *info = dev_get_drvdata(&dev->dev);
	int err;

	dev_dbg(&dev->dev, "resume\n");
	/* A new connection: forget a protocol error of the old one. */
	cancel_delayed_work_sync(&info->fatal_work);
	mutex_lock(&info->mutex);
	pvblk_disconnect(info, info->gd ? PVBLK_SUSPENDED : PVBLK_DISCONNECTED);
	err = pvblk_talk_to_backend(info);
	mutex_unlock(&info->mutex);
	return err;
}

static struct xenbus_device_id pvblk_front_ids[] = {
	{ "" },		/* devtype, filled in at init */
	{ "" }
};

static struct xenbus_driver pvblk_front_driver = {
	.name = "pvblk-front",
	.ids = pvblk_front_ids,
	.probe = pvblk_probe,
	.remove = pvblk_remove,
	.resume = pvblk_resume,
	.otherend_changed = pvblk_backend_changed,
	.not_essential = true,
};

static int __init pvblk_front_init(void)
{
	int err;

	if (!xen_domain())
		return -ENODEV;
	if (strcmp(devtype, PVBLK_DEVICE_TYPE) && strcmp(devtype, PVBLK_DEVICE_TYPE_VBD)) {
		pr_err("devtype must be %s or %s, not %s\n", PVBLK_DEVICE_TYPE,
		       PVBLK_DEVICE_TYPE_VBD, devtype);
		return -EINVAL;
	}
	strscpy(pvblk_front_ids[0].devicetype, devtype, sizeof(pvblk_front_ids[0].devicetype));

	pvblk_major = register_blkdev(0, "pvblk");
	if (pvblk_major < 0)
		return pvblk_major;
	pvblk_debugfs_root = debugfs_create_dir("pvblk-front", NULL);

	err = xenbus_register_frontend(&pvblk_front_driver);
	if (err) {
		debugfs_remove_recursive(pvblk_debugfs_root);
		unregister_blkdev(pvblk_major, "pvblk");
		return err;
	}
	pr_info("bound to device type %s, major %d\n", devtype, pvblk_major);
	return 0;
}
module_init(pvblk_front_init);

static void __exit pvblk_front_exit(void)
{
	xenbus_unregister_driver(&pvblk_front_driver);
	debugfs_remove_recursive(pvblk_debugfs_root);
	unregister_blkdev(pvblk_major, "pvblk");
	ida_destroy(&pvblk_ida);
}
module_exit(pvblk_front_exit);

MODULE_DESCRIPTION("pvkit Xen PV block frontend (blkif)");
MODULE_LICENSE("GPL");
MODULE_ALIAS("xen:" PVBLK_DEVICE_TYPE);
