// SPDX-License-Identifier: GPL-2.0
/*
 * pvblk-front: the frontend of pvkit's Xen PV split block driver.
 *
 * It speaks the standard blkif protocol (pvblk_proto.h) over one shared ring,
 * so it works against upstream xen-blkback as well as pvkit's pvblk-back. The
 * design follows drivers/block/xen-blkfront.c, reduced to one ring and no
 * persistent grants:
 *
 * - probe reads virtual-device. When the backend reaches InitWait the ring
 *   (2^order pages), its grants and an event channel are set up and written
 *   to XenStore (ring-ref, or ring-page-order + ring-ref%u; event-channel;
 *   protocol). When the backend is Connected the blk-mq disk pvblk<N> is made.
 * - Every request gets fresh grants, which end when its response arrives.
 *   The ring id of a request is its blk-mq tag, checked on every response.
 *   A request whose grants the backend still holds after answering it is
 *   never completed (its pages would go back to their owner while the
 *   backend can still reach them): that is a protocol error, the device is
 *   broken, and the request ends with an error only once the backend lets
 *   go of the grants, as upstream blkfront treats it.
 * - Indirect pages are zeroed when allocated, and what a shorter request
 *   leaves of a longer one's descriptors is cleared: the backend sees the
 *   descriptors of the request and nothing else of the guest's memory.
 * - An untrusted backend (module parameter trusted=0, or XenStore `trusted`
 *   0 in the device's directory, as upstream) gets bounce buffers: private
 *   zeroed pages hold the data, so the backend never sees the rest of a
 *   guest page and cannot change data after it is answered.
 * - Discard (feature-discard), flush (FUA is a write and a flush); a flush
 *   or discard answered EOPNOTSUPP turns the feature off and completes.
 * - Backend Closing/Closed (off xenwatch, in a work item): no new requests, a
 *   bounded wait for the ones on the ring, the rest fail, the disk goes away
 *   and the frontend is Closed.
 * - Save/restore (resume): a new ring; requests on the old one are requeued.
 *   A new backend that takes fewer segments lowers the queue limits, and a
 *   request larger than it takes is split: its bios are submitted again.
 * - debugfs pvblk-front/<disk>/stats; with module parameter test_hooks also
 *   inject and inject_result, which make this frontend hostile to test a
 *   backend (malformed requests, requests changed on the ring until they are
 *   answered, event storms, hostile XenStore connects, connect/close cycles).
 */

#define pr_fmt(fmt) "pvblk-front: " fmt

#include <linux/bio.h>
#include <linux/blk-mq.h>
#include <linux/blkdev.h>
#include <linux/debugfs.h>
#include <linux/hdreg.h>
#include <linux/highmem.h>
#include <linux/idr.h>
#include <linux/interrupt.h>
#include <linux/ktime.h>
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
/* Ring id of an injected request: never a blk-mq tag (high half is checked). */
#define PVBLK_INJECT_ID		0x70766b696e6a6563ULL
/* Grant reference of the `gref` injection: never granted. */
#define PVBLK_BAD_GREF		0xfffffff0U
/* How far the `prod` injection moves req_prod beyond the requests. */
#define PVBLK_BAD_PROD		10000
/* Backend Closing: how long requests on the ring get to complete. */
#define PVBLK_DRAIN_TIMEOUT	(5 * HZ)
/* After `prod`: how long the backend gets to close before we do. */
#define PVBLK_PROD_GRACE	(30 * HZ)
/* How often grants the backend still holds are tried again. */
#define PVBLK_HELD_RETRY	(HZ / 4)
/* Test hooks: an injected request's answer, a backend state change. */
#define PVBLK_INJECT_TIMEOUT	(5 * HZ)
#define PVBLK_XS_TIMEOUT	(10 * HZ)

static char *devtype = PVBLK_DEVICE_TYPE;
module_param(devtype, charp, 0444);
MODULE_PARM_DESC(devtype, "XenStore device type to bind: pvblk (default) or vbd (then xen-blkfront must not bind it)");

static unsigned int max_ring_page_order = 2;
module_param(max_ring_page_order, uint, 0644);
MODULE_PARM_DESC(max_ring_page_order, "Largest ring order (2^order pages) to use, at most 4 (default 2)");

static unsigned int max_indirect_segments = 256;
module_param(max_indirect_segments, uint, 0644);
MODULE_PARM_DESC(max_indirect_segments, "Largest number of segments in an indirect request (default 256, at most 4096)");

static unsigned int max_grants = 8192;
module_param(max_grants, uint, 0644);
MODULE_PARM_DESC(max_grants, "Grant references the requests of one disk may hold at once (default 8192; the guest's grant table is shared by all its devices)");

static bool trusted = true;
module_param(trusted, bool, 0644);
MODULE_PARM_DESC(trusted, "Is the backend trusted (else data goes through bounce buffers; also XenStore `trusted` per device)");

static bool test_hooks;
module_param(test_hooks, bool, 0444);
MODULE_PARM_DESC(test_hooks, "Test: debugfs inject makes this frontend hostile to its backend");

static bool resume_drop_inflight;
module_param(resume_drop_inflight, bool, 0644);
MODULE_PARM_DESC(resume_drop_inflight, "Test, deliberately broken: on resume, report the requests that were on the old ring as done instead of sending them again (writes are lost; default off)");

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
	PVBLK_INJ_SEGS257,
	PVBLK_INJ_RING_GREF,
	PVBLK_INJ_PROD,
	PVBLK_INJ_FLIP_DIRECT,
	PVBLK_INJ_FLIP_INDIRECT,
	PVBLK_INJ_STORM,
	PVBLK_INJ_XS,
	PVBLK_INJ_CYCLES,
};

static const char * const pvblk_inject_names[] = {
	[PVBLK_INJ_RANGE] = "range",
	[PVBLK_INJ_GREF] = "gref",
	[PVBLK_INJ_NSEGS] = "nsegs",
	[PVBLK_INJ_SEGBOUNDS] = "segbounds",
	[PVBLK_INJ_BADOP] = "badop",
	[PVBLK_INJ_SEGS257] = "segs257",
	[PVBLK_INJ_RING_GREF] = "ring_gref",
	[PVBLK_INJ_PROD] = "prod",
	[PVBLK_INJ_FLIP_DIRECT] = "flip_direct",
	[PVBLK_INJ_FLIP_INDIRECT] = "flip_indirect",
	[PVBLK_INJ_STORM] = "storm",
	[PVBLK_INJ_XS] = "xs",
	[PVBLK_INJ_CYCLES] = "cycles",
};

/* Hostile XenStore connects (inject "xs MODE"). */
enum pvblk_xs_mode {
	PVBLK_XS_NORMAL,
	PVBLK_XS_ORDER5,	/* ring-page-order 5 */
	PVBLK_XS_NOREF,		/* order 2 with ring-ref2 missing */
	PVBLK_XS_BADREF,	/* a ring-ref that grants nothing */
	PVBLK_XS_EVTCHN,	/* an event channel bound to something else */
	PVBLK_XS_QUEUES0,	/* multi-queue-num-queues 0 */
	PVBLK_XS_QUEUES2,	/* multi-queue-num-queues 2 */
	PVBLK_XS_ABI32,		/* protocol x86_32-abi */
	PVBLK_XS_PROD,		/* req_prod far beyond the ring at connect */
};

static const char * const pvblk_xs_names[] = {
	[PVBLK_XS_NORMAL] = "normal",
	[PVBLK_XS_ORDER5] = "order5",
	[PVBLK_XS_NOREF] = "noref",
	[PVBLK_XS_BADREF] = "badref",
	[PVBLK_XS_EVTCHN] = "evtchn",
	[PVBLK_XS_QUEUES0] = "queues0",
	[PVBLK_XS_QUEUES2] = "queues2",
	[PVBLK_XS_ABI32] = "abi32",
	[PVBLK_XS_PROD] = "prod",
};

/* The per-request data blk-mq keeps for us (the request's PDU). */
struct pvblk_req {
	blk_status_t status;
	u8 operation;			/* ring operation */
	u8 data_op;			/* READ/WRITE of an indirect request */
	bool bounced;			/* data in bounce pages */
	bool held;			/* on info->held: the backend holds grants */
	struct list_head held_node;
	unsigned int nseg;		/* data segments of a read or write */
	unsigned int nr_budget;		/* grants counted in info->grants_inflight */
	unsigned int nr_grefs;		/* data grants in use */
	unsigned int nr_indirect;	/* indirect pages granted */
	struct scatterlist *sg;		/* max_segs entries */
	grant_ref_t *grefs;		/* max_segs entries */
	struct page **bounce;		/* max_segs entries, allocated on first use */
	struct page *indirect_pages[PVBLK_MAX_INDIRECT_PAGES_PER_REQUEST];
	unsigned int indirect_used[PVBLK_MAX_INDIRECT_PAGES_PER_REQUEST];
	grant_ref_t indirect_grefs[PVBLK_MAX_INDIRECT_PAGES_PER_REQUEST];
};

struct pvblk_stats {
	u64 requests;
	u64 segments;
	u64 indirect;
	u64 flushes;
	u64 discards;
	u64 errors;
	u64 grants_busy;	/* requests whose grants the backend held after answering */
	u64 bounced;		/* requests through bounce buffers */
	u64 resplit;		/* requests too large for the backend, split again */
	u64 ring_full;
	u64 grant_budget_waits;	/* requests held back by max_grants */
	u64 grant_table_waits;	/* the grant table had no free references */
	u64 resume_requeued;	/* on the ring at a resume: sent again */
	u64 resume_dropped;	/* ... reported done unsent (resume_drop_inflight) */
};

/* The test hooks' state: one injection at a time (inject_lock). */
struct pvblk_inject {
	int mode;		/* enum pvblk_inject_mode, -1 before the first one */
	unsigned int outstanding;	/* injected requests on the ring, unanswered */
	bool answered;		/* the last one was answered */
	int status;		/* its status */
	bool indirect;		/* flip: an indirect request */
	RING_IDX slot;		/* flip: the request's ring index */
	unsigned long flips;	/* flip: changes made */
	u64 sector;		/* flip: the sector of the valid request */
	unsigned int tick;
	struct page *page[3];	/* data page, indirect pages */
	grant_ref_t gref[3];
	wait_queue_head_t wq;
	char result[160];
};

struct pvblk_info {
	struct xenbus_device *xbdev;
	struct mutex mutex;		/* connect, close, resume, remove, xs tests */
	spinlock_t ring_lock;		/* ring, state, shadow, stats, inject, held */
	enum pvblk_state state;
	unsigned int vdevice;
	u16 handle;
	int index;			/* pvblk<index>; -1 before the first disk */

	struct pvblk_front_ring ring;
	unsigned int ring_order;
	/* what our directory may hold from earlier connects (all of it at probe) */
	unsigned int xs_nrefs;		/* ring-ref%u written */
	bool xs_single_ref;		/* ring-ref */
	bool xs_order;			/* ring-page-order */
	bool xs_queues;			/* multi-queue-num-queues */
	grant_ref_t ring_ref[XENBUS_MAX_RING_GRANTS];
	evtchn_port_t evtchn;
	int irq;

	u64 sectors;
	unsigned int sector_size;
	unsigned int physical_sector_size;
	unsigned int vdisk_info;
	bool feature_flush;
	bool feature_discard;
	unsigned int discard_granularity;
	unsigned int discard_alignment;
	bool bounce;			/* the backend is not trusted */
	unsigned int max_segs;		/* per-request arrays, fixed when the disk is made */
	unsigned int backend_segs;	/* what the current backend accepts */

	struct blk_mq_tag_set tag_set;
	struct gendisk *gd;
	bool disk_added;
	struct request **shadow;	/* ring id (tag) -> request on the ring */
	unsigned int depth;		/* entries of shadow */
	unsigned int inflight;
	unsigned int grants_inflight;	/* grant references the requests hold */
	struct list_head held;		/* answered, grants still held by the backend */
	struct delayed_work held_work;
	struct bio_list resubmit;	/* bios of requests split again */
	struct work_struct resubmit_work;
	struct gnttab_free_callback gnt_callback;
	struct work_struct restart_work;
	struct work_struct close_work;	/* backend Closing/Closed, off xenwatch */
	struct delayed_work fatal_work;
	const char *fatal_reason;
	wait_queue_head_t drain_wq;

	/* test hook xs/cycles: the backend's states go here, not to the state machine */
	bool xs_test;
	wait_queue_head_t xs_wq;

	struct pvblk_stats stats;
	struct mutex inject_lock;	/* one injection at a time */
	struct pvblk_inject inject;
	struct dentry *debugfs;
};

static int pvblk_major;
static DEFINE_IDA(pvblk_ida);
static struct dentry *pvblk_debugfs_root;

static void pvblk_set_broken(struct pvblk_info *info, const char *reason,
			     unsigned long delay);
static void pvblk_disconnect(struct pvblk_info *info, enum pvblk_state state);
static void pvblk_del_disk(struct pvblk_info *info);
static int pvblk_talk_to_backend(struct pvblk_info *info, enum pvblk_xs_mode mode);
static void pvblk_read_features(struct pvblk_info *info);
static bool pvblk_valid_sector_size(unsigned int size);
static int pvblk_alloc_disk(struct pvblk_info *info);
static void pvblk_connect(struct pvblk_info *info);

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
 * End the backend's access to the request's grants, those it has let go of.
 * Return: true if none is left; false if the backend still holds some (they
 * stay in preq, to be tried again).
 */
static bool pvblk_end_grants(struct pvblk_req *preq)
{
	bool all = true;
	unsigned int i;

	for (i = 0; i < preq->nr_grefs; i++) {
		if (preq->grefs[i] == INVALID_GRANT_REF)
			continue;
		if (gnttab_try_end_foreign_access(preq->grefs[i]))
			preq->grefs[i] = INVALID_GRANT_REF;
		else
			all = false;
	}
	for (i = 0; i < preq->nr_indirect; i++) {
		if (preq->indirect_grefs[i] == INVALID_GRANT_REF)
			continue;
		if (gnttab_try_end_foreign_access(preq->indirect_grefs[i]))
			preq->indirect_grefs[i] = INVALID_GRANT_REF;
		else
			all = false;
	}
	if (all) {
		preq->nr_grefs = 0;
		preq->nr_indirect = 0;
	}
	return all;
}

/* The request's grants are ended: they leave the in-flight budget. */
static void pvblk_budget_put(struct pvblk_info *info, struct pvblk_req *preq)
{
	info->grants_inflight -= preq->nr_budget;
	preq->nr_budget = 0;
}

/*
 * Resume: the old backend is gone with the old ring. Grants it still
 * appears to hold are ended by the grant table later (xen-blkfront does the
 * same on resume); the requests are sent again on the new ring.
 */
static void pvblk_forget_grants(struct pvblk_req *preq)
{
	unsigned int i;

	for (i = 0; i < preq->nr_grefs; i++)
		if (preq->grefs[i] != INVALID_GRANT_REF)
			gnttab_end_foreign_access(preq->grefs[i], NULL);
	for (i = 0; i < preq->nr_indirect; i++)
		if (preq->indirect_grefs[i] != INVALID_GRANT_REF)
			gnttab_end_foreign_access(preq->indirect_grefs[i], NULL);
	preq->nr_grefs = 0;
	preq->nr_indirect = 0;
}

/*
 * Called with ring_lock held: @rq is answered (or abandoned) but the backend
 * still holds some of its grants. It is not completed: park it until the
 * backend lets go (pvblk_held_work), then it fails.
 */
static void pvblk_hold_locked(struct pvblk_info *info, struct request *rq)
{
	struct pvblk_req *preq = blk_mq_rq_to_pdu(rq);

	info->stats.grants_busy++;
	info->stats.errors++;
	preq->status = BLK_STS_IOERR;
	preq->held = true;
	list_add_tail(&preq->held_node, &info->held);
	schedule_delayed_work(&info->held_work, PVBLK_HELD_RETRY);
}

static void pvblk_held_work(struct work_struct *work)
{
	struct pvblk_info *info = container_of(to_delayed_work(work), struct pvblk_info,
					       held_work);
	struct pvblk_req *preq, *n;
	unsigned long flags;

	spin_lock_irqsave(&info->ring_lock, flags);
	list_for_each_entry_safe(preq, n, &info->held, held_node) {
		if (!pvblk_end_grants(preq))
			continue;
		pvblk_budget_put(info, preq);
		list_del(&preq->held_node);
		preq->held = false;
		dev_warn(&info->xbdev->dev, "backend released the grants of a request: failing it\n");
		blk_mq_complete_request(blk_mq_rq_from_pdu(preq));
	}
	if (!list_empty(&info->held))
		schedule_delayed_work(&info->held_work, PVBLK_HELD_RETRY);
	spin_unlock_irqrestore(&info->ring_lock, flags);
}

/* Bounce buffers: pages of our own, allocated on first use and kept. */
static int pvblk_bounce_alloc(struct pvblk_req *preq, unsigned int nseg)
{
	unsigned int i;

	for (i = 0; i < nseg; i++) {
		if (preq->bounce[i])
			continue;
		preq->bounce[i] = alloc_page(GFP_NOWAIT | __GFP_ZERO | __GFP_NOWARN);
		if (!preq->bounce[i])
			return -ENOMEM;
	}
	return 0;
}

/*
 * The bounce page @bp takes the bytes [@off, @off + @len) of a segment. Clear
 * the rest, which may hold another request's data, so that the backend sees
 * this segment only; copy the data in for a write.
 */
static void pvblk_bounce_fill(struct page *bp, struct scatterlist *sg, bool write)
{
	unsigned int off = sg->offset, len = sg->length;
	u8 *dst = page_address(bp);

	memset(dst, 0, off);
	memset(dst + off + len, 0, PAGE_SIZE - off - len);
	if (write)
		memcpy_from_page(dst + off, sg_page(sg), off, len);
}

/* A read through bounce pages is answered: copy its data out. */
static void pvblk_bounce_read_done(struct pvblk_req *preq, unsigned int nseg)
{
	struct scatterlist *sg;
	unsigned int i;

	for_each_sg(preq->sg, sg, nseg, i)
		memcpy_to_page(sg_page(sg), sg->offset,
			       page_address(preq->bounce[i]) + sg->offset, sg->length);
}

/*
 * Fill @req with a read or write of @rq (its @nseg segments in preq->sg),
 * granting its pages, or its bounce pages. Called with ring_lock held.
 */
static blk_status_t pvblk_build_rw(struct pvblk_info *info, struct request *rq,
				   struct pvblk_req *preq, struct pvblk_request *req,
				   unsigned int nseg)
{
	bool write = req_op(rq) == REQ_OP_WRITE;
	u8 op = write ? PVBLK_OP_WRITE : PVBLK_OP_READ;
	domid_t domid = info->xbdev->otherend_id;
	struct pvblk_request_segment seg, *isegs;
	unsigned int i, used, nind = 0;
	struct scatterlist *sg;
	grant_ref_t head;
	grant_ref_t ref;

	if (nseg > PVBLK_MAX_SEGMENTS_PER_REQUEST)
		nind = DIV_ROUND_UP(nseg, PVBLK_SEGS_PER_INDIRECT_FRAME);

	if (gnttab_alloc_grant_references(nseg + nind, &head) < 0) {
		info->stats.grant_table_waits++;
		gnttab_request_free_callback(&info->gnt_callback, pvblk_gnt_callback, info,
					     nseg + nind);
		return BLK_STS_DEV_RESOURCE;
	}
	preq->nr_budget = nseg + nind;
	info->grants_inflight += nseg + nind;

	preq->bounced = info->bounce;
	preq->nseg = nseg;
	for_each_sg(preq->sg, sg, nseg, i) {
		struct page *page = sg_page(sg);

		if (preq->bounced) {
			page = preq->bounce[i];
			pvblk_bounce_fill(page, sg, write);
		}
		ref = gnttab_claim_grant_reference(&head);
		gnttab_page_grant_foreign_access_ref_one(ref, domid, page, write);
		preq->grefs[i] = ref;
		preq->nr_grefs = i + 1;

		seg.gref = ref;
		seg.first_sect = sg->offset >> PVBLK_SECTOR_SHIFT;
		seg.last_sect = (sg->offset + sg->length - 1) >> PVBLK_SECTOR_SHIFT;
		if (nind) {
			unsigned int frame = i / PVBLK_SEGS_PER_INDIRECT_FRAME;

			isegs = page_address(preq->indirect_pages[frame]);
			isegs[i % PVBLK_SEGS_PER_INDIRECT_FRAME] = seg;
		} else {
			req->u.rw.seg[i] = seg;
		}
	}

	if (nind) {
		for (i = 0; i < nind; i++) {
			struct page *ipage = preq->indirect_pages[i];

			/*
			 * The whole page is granted: clear what an earlier, longer
			 * request left after this one's descriptors.
			 */
			used = min_t(unsigned int, nseg - i * PVBLK_SEGS_PER_INDIRECT_FRAME,
				     PVBLK_SEGS_PER_INDIRECT_FRAME) * sizeof(seg);
			if (preq->indirect_used[i] > used)
				memset(page_address(ipage) + used, 0,
				       preq->indirect_used[i] - used);
			preq->indirect_used[i] = used;

			ref = gnttab_claim_grant_reference(&head);
			/* The backend only reads the segment lists. */
			gnttab_page_grant_foreign_access_ref_one(ref, domid, ipage, 1);
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
	if (preq->bounced)
		info->stats.bounced++;
	gnttab_free_grant_references(head);
	return BLK_STS_OK;
}

/* Called with ring_lock held, connected, with a free ring slot. */
static blk_status_t pvblk_submit(struct pvblk_info *info, struct request *rq,
				 unsigned int nseg)
{
	struct pvblk_req *preq = blk_mq_rq_to_pdu(rq);
	struct pvblk_request req = {};
	blk_status_t ret;
	int notify;

	if (WARN_ON_ONCE(rq->tag < 0 || rq->tag >= info->depth || info->shadow[rq->tag]))
		return BLK_STS_IOERR;

	switch (req_op(rq)) {
	case REQ_OP_FLUSH:
		if (!info->feature_flush) {
			/* turned off by an EOPNOTSUPP: nothing to flush */
			blk_mq_start_request(rq);
			blk_mq_end_request(rq, BLK_STS_OK);
			return BLK_STS_OK;
		}
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
	case REQ_OP_DISCARD:
		if (!info->feature_discard)
			return BLK_STS_NOTSUPP;
		req.operation = PVBLK_OP_DISCARD;
		req.u.discard.flag = 0;
		req.u.discard.id = rq->tag;
		req.u.discard.sector_number = blk_rq_pos(rq);
		req.u.discard.nr_sectors = blk_rq_sectors(rq);
		preq->operation = PVBLK_OP_DISCARD;
		preq->data_op = PVBLK_OP_DISCARD;
		info->stats.discards++;
		break;
	case REQ_OP_READ:
	case REQ_OP_WRITE:
		ret = pvblk_build_rw(info, rq, preq, &req, nseg);
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

static void pvblk_resubmit_work(struct work_struct *work)
{
	struct pvblk_info *info = container_of(work, struct pvblk_info, resubmit_work);
	unsigned long flags;
	struct bio *bio;

	for (;;) {
		spin_lock_irqsave(&info->ring_lock, flags);
		bio = bio_list_pop(&info->resubmit);
		spin_unlock_irqrestore(&info->ring_lock, flags);
		if (!bio)
			break;
		submit_bio_noacct(bio);
	}
}

/*
 * @rq has more segments than the backend takes (a resume onto a smaller
 * one): end it without its bios and submit them again, to be split under
 * the new queue limits (xen-blkfront's blkif_recover does the same).
 */
static blk_status_t pvblk_resplit(struct pvblk_info *info, struct request *rq)
{
	struct bio_list bios = { .head = rq->bio, .tail = rq->biotail };
	unsigned long flags;

	if (!rq->bio || (rq->rq_flags & RQF_FLUSH_SEQ))
		return BLK_STS_IOERR;	/* part of a flush sequence: cannot split */
	blk_mq_start_request(rq);
	spin_lock_irqsave(&info->ring_lock, flags);
	bio_list_merge(&info->resubmit, &bios);
	info->stats.resplit++;
	spin_unlock_irqrestore(&info->ring_lock, flags);
	rq->bio = NULL;
	rq->biotail = NULL;
	blk_mq_end_request(rq, BLK_STS_OK);
	schedule_work(&info->resubmit_work);
	return BLK_STS_OK;
}

static blk_status_t pvblk_queue_rq(struct blk_mq_hw_ctx *hctx,
				   const struct blk_mq_queue_data *bd)
{
	struct pvblk_info *info = hctx->queue->queuedata;
	struct request *rq = bd->rq;
	struct pvblk_req *preq = blk_mq_rq_to_pdu(rq);
	unsigned int nseg = 0, limit;
	struct scatterlist *sg;
	unsigned long flags;
	blk_status_t ret;
	int n, i;

	if (req_op(rq) == REQ_OP_READ || req_op(rq) == REQ_OP_WRITE) {
		n = blk_rq_map_sg(rq->q, rq, preq->sg);
		if (n <= 0 || n > info->max_segs)
			return BLK_STS_IOERR;
		nseg = n;
		for_each_sg(preq->sg, sg, nseg, i) {
			if (!sg->length || sg->offset + sg->length > XEN_PAGE_SIZE ||
			    ((sg->offset | sg->length) & (PVBLK_SECTOR_SIZE - 1))) {
				dev_err_ratelimited(&info->xbdev->dev,
						    "unaligned segment (offset %u, length %u)\n",
						    sg->offset, sg->length);
				return BLK_STS_IOERR;
			}
		}
		if (READ_ONCE(info->bounce) && pvblk_bounce_alloc(preq, nseg))
			return BLK_STS_RESOURCE;
	}

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
	limit = min(info->backend_segs, info->max_segs);
	if (nseg > limit) {
		spin_unlock_irqrestore(&info->ring_lock, flags);
		return pvblk_resplit(info, rq);
	}
	if (info->bounce && nseg && !preq->bounce[nseg - 1]) {
		spin_unlock_irqrestore(&info->ring_lock, flags);
		return BLK_STS_RESOURCE;	/* trust changed at resume: again */
	}
	if (RING_FULL(&info->ring)) {
		info->stats.ring_full++;
		goto busy;
	}
	/*
	 * Grants for so many large requests would empty the grant table: wait
	 * for answers (each restarts the queue) rather than for free references.
	 */
	if (info->inflight && info->grants_inflight + nseg > READ_ONCE(max_grants)) {
		info->stats.grant_budget_waits++;
		goto busy;
	}
	ret = pvblk_submit(info, rq, nseg);
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

static void pvblk_free_req(struct pvblk_req *preq, unsigned int max_segs)
{
	unsigned int i;

	for (i = 0; i < PVBLK_MAX_INDIRECT_PAGES_PER_REQUEST; i++) {
		if (preq->indirect_pages[i])
			__free_page(preq->indirect_pages[i]);
		preq->indirect_pages[i] = NULL;
	}
	for (i = 0; preq->bounce && i < max_segs; i++)
		if (preq->bounce[i])
			__free_page(preq->bounce[i]);
	kfree(preq->bounce);
	preq->bounce = NULL;
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
	INIT_LIST_HEAD(&preq->held_node);
	preq->sg = kcalloc_node(info->max_segs, sizeof(*preq->sg), GFP_KERNEL, numa_node);
	preq->grefs = kcalloc_node(info->max_segs, sizeof(*preq->grefs), GFP_KERNEL,
				   numa_node);
	preq->bounce = kcalloc_node(info->max_segs, sizeof(*preq->bounce), GFP_KERNEL,
				    numa_node);
	if (!preq->sg || !preq->grefs || !preq->bounce)
		goto fail;
	sg_init_table(preq->sg, info->max_segs);

	if (info->max_segs > PVBLK_MAX_SEGMENTS_PER_REQUEST)
		nind = DIV_ROUND_UP(info->max_segs, PVBLK_SEGS_PER_INDIRECT_FRAME);
	for (i = 0; i < nind; i++) {
		/* zeroed: the backend may read all of a granted page (XSA-403) */
		preq->indirect_pages[i] = alloc_pages_node(numa_node,
							   GFP_KERNEL | __GFP_ZERO, 0);
		if (!preq->indirect_pages[i])
			goto fail;
	}
	return 0;

fail:
	pvblk_free_req(preq, info->max_segs);
	return -ENOMEM;
}

static void pvblk_exit_request(struct blk_mq_tag_set *set, struct request *rq,
			       unsigned int hctx_idx)
{
	struct pvblk_info *info = set->driver_data;

	pvblk_free_req(blk_mq_rq_to_pdu(rq), info->max_segs);
}

static const struct blk_mq_ops pvblk_mq_ops = {
	.queue_rq = pvblk_queue_rq,
	.complete = pvblk_complete_rq,
	.init_request = pvblk_init_request,
	.exit_request = pvblk_exit_request,
};

/* Is @id one of our injected requests? (The flip hook may scribble its low half.) */
static bool pvblk_inject_id(u64 id)
{
	return (id >> 32) == (PVBLK_INJECT_ID >> 32);
}

/* Handle one response; false if it breaks the protocol. */
static bool pvblk_handle_response(struct pvblk_info *info, const struct pvblk_response *rsp)
{
	struct xenbus_device *dev = info->xbdev;
	struct pvblk_req *preq;
	struct request *rq;
	blk_status_t status;

	if (pvblk_inject_id(rsp->id)) {
		struct pvblk_inject *inj = &info->inject;

		if (!inj->outstanding) {
			dev_err(&dev->dev, "response to an injected request never made\n");
			return false;
		}
		inj->outstanding--;
		inj->answered = true;
		inj->status = rsp->status;
		wake_up(&inj->wq);
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

	if (!pvblk_end_grants(preq)) {
		/* its pages must not go back to their owner: never completed */
		dev_alert(&dev->dev, "backend answered a request but still holds its grants: protocol error\n");
		pvblk_hold_locked(info, rq);
		return false;
	}
	pvblk_budget_put(info, preq);

	switch (rsp->status) {
	case PVBLK_RSP_OKAY:
		status = BLK_STS_OK;
		if (preq->bounced && preq->data_op == PVBLK_OP_READ)
			pvblk_bounce_read_done(preq, preq->nseg);
		break;
	case PVBLK_RSP_EOPNOTSUPP:
		status = BLK_STS_NOTSUPP;
		if (preq->operation == PVBLK_OP_FLUSH_DISKCACHE) {
			/* as upstream: no cache flushes, and this one is done */
			if (info->feature_flush) {
				dev_warn(&dev->dev, "backend refuses cache flushes: write cache off\n");
				info->feature_flush = false;
				blk_queue_write_cache(info->gd->queue, false, false);
			}
			status = BLK_STS_OK;
		} else if (preq->operation == PVBLK_OP_DISCARD && info->feature_discard) {
			dev_warn(&dev->dev, "backend refuses discards: discard off\n");
			info->feature_discard = false;
			blk_queue_max_discard_sectors(info->gd->queue, 0);
		}
		break;
	default:
		status = BLK_STS_IOERR;
		dev_err_ratelimited(&dev->dev, "operation %u at sector %llu failed: status %d\n",
				    preq->operation, (unsigned long long)blk_rq_pos(rq),
				    rsp->status);
		break;
	}
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
	wake_up(&info->inject.wq);
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
	xenbus_teardown_ring((void **)&info->ring.sring, 1U << info->ring_order,
			     info->ring_ref);
}

/*
 * Stop using the ring and free it. Requests on it are requeued (@state
 * PVBLK_SUSPENDED, for resume) or fail (PVBLK_DISCONNECTED); one whose
 * grants the backend still holds is parked until it lets go.
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

	spin_lock_irqsave(&info->ring_lock, flags);
	for (i = 0; info->shadow && i < info->depth; i++) {
		struct request *rq = info->shadow[i];
		struct pvblk_req *preq;

		if (!rq)
			continue;
		info->shadow[i] = NULL;
		preq = blk_mq_rq_to_pdu(rq);
		if (state == PVBLK_SUSPENDED && READ_ONCE(resume_drop_inflight)) {
			/* the deliberately broken resume: the request is lost */
			pvblk_forget_grants(preq);
			pvblk_budget_put(info, preq);
			preq->status = BLK_STS_OK;
			info->stats.resume_dropped++;
			blk_mq_complete_request(rq);
		} else if (state == PVBLK_SUSPENDED) {
			pvblk_forget_grants(preq);
			pvblk_budget_put(info, preq);
			info->stats.resume_requeued++;
			blk_mq_requeue_request(rq, false);
		} else if (!pvblk_end_grants(preq)) {
			dev_warn(&info->xbdev->dev, "backend still holds the grants of an unanswered request\n");
			pvblk_hold_locked(info, rq);
		} else {
			pvblk_budget_put(info, preq);
			preq->status = BLK_STS_IOERR;
			info->stats.errors++;
			blk_mq_complete_request(rq);
		}
	}
	info->inflight = 0;
	info->inject.outstanding = 0;
	wake_up(&info->inject.wq);
	spin_unlock_irqrestore(&info->ring_lock, flags);

	pvblk_free_ring(info);

	if (info->gd && state != PVBLK_SUSPENDED) {
		/* Anything parked in the queue now fails fast. */
		blk_mq_start_stopped_hw_queues(info->gd->queue, true);
		blk_mq_kick_requeue_list(info->gd->queue);
	}
}

/* Remove the disk (its requests are all done, failing fast, or held). */
static void pvblk_del_disk(struct pvblk_info *info)
{
	if (!info->gd)
		return;
	if (info->disk_added) {
		blk_mq_start_stopped_hw_queues(info->gd->queue, true);
		blk_mq_kick_requeue_list(info->gd->queue);
		/* waits for held requests: the backend must let go of their grants */
		del_gendisk(info->gd);
		info->disk_added = false;
	}
	flush_work(&info->resubmit_work);
	put_disk(info->gd);
	info->gd = NULL;
	blk_mq_free_tag_set(&info->tag_set);
	kfree(info->shadow);
	info->shadow = NULL;
	info->depth = 0;
}

/* Remove what an earlier connect wrote and this one does not. */
static void pvblk_xs_clean(struct pvblk_info *info, struct xenbus_transaction xbt,
			   unsigned int nrefs, bool single, bool order, bool queues)
{
	const char *dir = info->xbdev->nodename;
	char name[16];
	unsigned int i;

	if (info->xs_order && !order)
		xenbus_rm(xbt, dir, PVBLK_XS_RING_PAGE_ORDER);
	if (info->xs_single_ref && !single)
		xenbus_rm(xbt, dir, PVBLK_XS_RING_REF);
	if (info->xs_queues && !queues)
		xenbus_rm(xbt, dir, PVBLK_XS_MULTI_QUEUE_NUM_QUEUES);
	for (i = nrefs; i < info->xs_nrefs; i++) {
		snprintf(name, sizeof(name), PVBLK_XS_RING_REF_FMT, i);
		xenbus_rm(xbt, dir, name);
	}
}

/*
 * Write the ring, event channel and protocol; @mode other than
 * PVBLK_XS_NORMAL makes one of them hostile (test hook xs).
 */
static int pvblk_write_nodes(struct pvblk_info *info, struct xenbus_transaction xbt,
			     enum pvblk_xs_mode mode, grant_ref_t bad_ref,
			     const char **message)
{
	const char *dir = info->xbdev->nodename;
	unsigned int order = info->ring_order, i;
	unsigned int evtchn = info->evtchn;
	bool queues = mode == PVBLK_XS_QUEUES0 || mode == PVBLK_XS_QUEUES2;
	bool multi = order || mode == PVBLK_XS_ORDER5 || mode == PVBLK_XS_NOREF;
	char name[16];
	int err;

	pvblk_xs_clean(info, xbt, order ? 1U << order : 0, !multi, multi, queues);
	info->xs_nrefs = order ? 1U << order : 0;
	info->xs_single_ref = !multi;
	info->xs_order = multi;
	info->xs_queues = queues;
	*message = "writing ring-ref";
	if (mode == PVBLK_XS_ORDER5 || mode == PVBLK_XS_NOREF)
		err = xenbus_printf(xbt, dir, PVBLK_XS_RING_PAGE_ORDER, "%u",
				    mode == PVBLK_XS_ORDER5 ? 5 : order);
	else if (order)
		err = xenbus_printf(xbt, dir, PVBLK_XS_RING_PAGE_ORDER, "%u", order);
	else
		err = xenbus_printf(xbt, dir, PVBLK_XS_RING_REF, "%u",
				    mode == PVBLK_XS_BADREF ? bad_ref : info->ring_ref[0]);
	for (i = 0; !err && order && i < (1U << order); i++) {
		snprintf(name, sizeof(name), PVBLK_XS_RING_REF_FMT, i);
		if (mode == PVBLK_XS_NOREF && i == 2) {
			xenbus_rm(xbt, dir, name);	/* an earlier connect wrote it */
			continue;
		}
		err = xenbus_printf(xbt, dir, name, "%u",
				    mode == PVBLK_XS_BADREF && !i ? bad_ref : info->ring_ref[i]);
	}
	if (err)
		return err;
	if (queues) {
		*message = "writing multi-queue-num-queues";
		err = xenbus_printf(xbt, dir, PVBLK_XS_MULTI_QUEUE_NUM_QUEUES, "%u",
				    mode == PVBLK_XS_QUEUES0 ? 0 : 2);
		if (err)
			return err;
	}
	if (mode == PVBLK_XS_EVTCHN)
		evtchn = xen_store_evtchn;	/* ours, bound to xenstored */
	*message = "writing event-channel";
	err = xenbus_printf(xbt, dir, PVBLK_XS_EVENT_CHANNEL, "%u", evtchn);
	if (err)
		return err;
	*message = "writing protocol";
	return xenbus_printf(xbt, dir, PVBLK_XS_PROTOCOL, "%s",
			     mode == PVBLK_XS_ABI32 ? PVBLK_PROTOCOL_X86_32 :
			     PVBLK_PROTOCOL_X86_64);
}

static int pvblk_talk_to_backend(struct pvblk_info *info, enum pvblk_xs_mode mode)
{
	struct xenbus_device *dev = info->xbdev;
	grant_ref_t bad_ref = INVALID_GRANT_REF, head;
	struct xenbus_transaction xbt;
	const char *message = NULL;
	unsigned int order;
	void *sring = NULL;
	int err;

	/* Checked at every connect, as upstream: a restore may bring a new backend. */
	WRITE_ONCE(info->bounce, !READ_ONCE(trusted) ||
		   !xenbus_read_unsigned(dev->nodename, PVBLK_XS_TRUSTED, 1));

	order = min3(READ_ONCE(max_ring_page_order),
		     xenbus_read_unsigned(dev->otherend, PVBLK_XS_MAX_RING_PAGE_ORDER, 0),
		     (unsigned int)XENBUS_MAX_RING_GRANT_ORDER);
	if (mode == PVBLK_XS_NOREF)
		order = max(order, 2U);
	info->ring_order = order;
	err = xenbus_setup_ring(dev, GFP_NOIO, &sring, 1U << order, info->ring_ref);
	if (err) {
		xenbus_dev_fatal(dev, err, "setting up a ring of %u pages", 1U << order);
		return err;
	}
	XEN_FRONT_RING_INIT(&info->ring, (struct pvblk_sring *)sring, XEN_PAGE_SIZE << order);
	if (mode == PVBLK_XS_PROD)
		WRITE_ONCE(info->ring.sring->req_prod, PVBLK_BAD_PROD);

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

	if (mode == PVBLK_XS_BADREF) {
		/* a reference we hold but grant nothing with */
		err = gnttab_alloc_grant_references(1, &head);
		if (err)
			goto fail;
		bad_ref = gnttab_claim_grant_reference(&head);
		gnttab_free_grant_references(head);
	}

again:
	err = xenbus_transaction_start(&xbt);
	if (err) {
		xenbus_dev_fatal(dev, err, "starting transaction");
		goto fail;
	}
	err = pvblk_write_nodes(info, xbt, mode, bad_ref, &message);
	if (err)
		goto abort;
	err = xenbus_transaction_end(xbt, 0);
	if (err == -EAGAIN)
		goto again;
	if (err) {
		xenbus_dev_fatal(dev, err, "completing transaction");
		goto fail;
	}
	if (bad_ref != INVALID_GRANT_REF)
		gnttab_free_grant_reference(bad_ref);
	return xenbus_switch_state(dev, PVBLK_XB_INITIALISED);

abort:
	xenbus_transaction_end(xbt, 1);
	xenbus_dev_fatal(dev, err, "%s", message);
fail:
	if (bad_ref != INVALID_GRANT_REF)
		gnttab_free_grant_reference(bad_ref);
	pvblk_free_ring(info);
	return err;
}

static void pvblk_read_features(struct pvblk_info *info)
{
	const char *be = info->xbdev->otherend;
	unsigned int segs;

	info->feature_flush = !!xenbus_read_unsigned(be, PVBLK_XS_FEATURE_FLUSH_CACHE, 0);
	info->feature_discard = !!xenbus_read_unsigned(be, PVBLK_XS_FEATURE_DISCARD, 0);
	info->discard_granularity = xenbus_read_unsigned(be, PVBLK_XS_DISCARD_GRANULARITY, 0);
	info->discard_alignment = xenbus_read_unsigned(be, PVBLK_XS_DISCARD_ALIGNMENT, 0);
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

/* The queue limits the current backend allows (at disk creation and resume). */
static void pvblk_set_limits(struct pvblk_info *info)
{
	struct request_queue *q = info->gd->queue;
	unsigned int segs = min(info->backend_segs, info->max_segs);

	blk_queue_max_hw_sectors(q, segs * (XEN_PAGE_SIZE >> SECTOR_SHIFT));
	blk_queue_max_segments(q, segs);
	/*
	 * FLUSH_DISKCACHE only makes earlier writes durable, so FUA is left to
	 * the block layer (a write followed by a flush).
	 */
	blk_queue_write_cache(q, info->feature_flush, false);
	if (info->feature_discard) {
		q->limits.discard_granularity = info->discard_granularity ?: info->sector_size;
		q->limits.discard_alignment = info->discard_alignment;
		blk_queue_max_discard_sectors(q, min_t(u64, info->sectors, UINT_MAX));
	} else {
		blk_queue_max_discard_sectors(q, 0);
	}
}

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
	/* Each segment is at most one page and does not cross a page. */
	blk_queue_segment_boundary(q, PAGE_SIZE - 1);
	blk_queue_max_segment_size(q, PAGE_SIZE);
	blk_queue_dma_alignment(q, PVBLK_SECTOR_SIZE - 1);
	info->gd = gd;
	pvblk_set_limits(info);
	return 0;

free_shadow:
	kfree(info->shadow);
	info->shadow = NULL;
	info->depth = 0;
free_tag_set:
	blk_mq_free_tag_set(&info->tag_set);
	return err;
}

/* --- debugfs: statistics and the test hooks --- */

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
	seq_printf(m, "discards %llu\n", s.discards);
	seq_printf(m, "errors %llu\n", s.errors);
	seq_printf(m, "grants_busy %llu\n", s.grants_busy);
	seq_printf(m, "bounced %llu\n", s.bounced);
	seq_printf(m, "resplit %llu\n", s.resplit);
	seq_printf(m, "ring_full %llu\n", s.ring_full);
	seq_printf(m, "grant_budget_waits %llu\n", s.grant_budget_waits);
	seq_printf(m, "grant_table_waits %llu\n", s.grant_table_waits);
	seq_printf(m, "resume_requeued %llu\n", s.resume_requeued);
	seq_printf(m, "resume_dropped %llu\n", s.resume_dropped);
	seq_printf(m, "inflight %u\n", inflight);
	seq_printf(m, "ring_order %u\n", info->ring_order);
	seq_printf(m, "max_segments %u\n", info->max_segs);
	seq_printf(m, "backend_segments %u\n", info->backend_segs);
	seq_printf(m, "feature_flush %d\n", info->feature_flush);
	seq_printf(m, "feature_discard %d\n", info->feature_discard);
	seq_printf(m, "bounce %d\n", info->bounce);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(pvblk_stats);

static int pvblk_inject_result_show(struct seq_file *m, void *unused)
{
	struct pvblk_info *info = m->private;

	mutex_lock(&info->inject_lock);
	seq_printf(m, "%s\n", info->inject.result[0] ? info->inject.result : "none");
	mutex_unlock(&info->inject_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(pvblk_inject_result);

/* Grant @n zeroed pages for injected requests (page[0]: data, the rest indirect). */
static int pvblk_inject_pages(struct pvblk_info *info, unsigned int n, bool data_ro)
{
	struct pvblk_inject *inj = &info->inject;
	unsigned int i;
	int ref;

	for (i = 0; i < n; i++) {
		inj->page[i] = alloc_page(GFP_KERNEL | __GFP_ZERO);
		if (!inj->page[i])
			return -ENOMEM;
		ref = gnttab_grant_foreign_access(info->xbdev->otherend_id,
						  xen_page_to_gfn(inj->page[i]),
						  i ? 1 : data_ro);
		if (ref < 0) {
			__free_page(inj->page[i]);
			inj->page[i] = NULL;
			return ref;
		}
		inj->gref[i] = ref;
	}
	return 0;
}

/* Done with the injected requests: the grant table frees the pages when it can. */
static void pvblk_inject_release(struct pvblk_inject *inj)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(inj->page); i++) {
		if (inj->gref[i] != INVALID_GRANT_REF)
			gnttab_end_foreign_access(inj->gref[i], inj->page[i]);
		else if (inj->page[i])
			__free_page(inj->page[i]);
		inj->gref[i] = INVALID_GRANT_REF;
		inj->page[i] = NULL;
	}
}

/* Put @req on the ring as an injected request. Called with ring_lock held. */
static int pvblk_inject_put_locked(struct pvblk_info *info, struct pvblk_request *req)
{
	struct pvblk_inject *inj = &info->inject;

	if (info->state != PVBLK_CONNECTED)
		return -ENOTCONN;
	if (RING_FULL(&info->ring))
		return -EBUSY;
	inj->slot = info->ring.req_prod_pvt;
	*RING_GET_REQUEST(&info->ring, info->ring.req_prod_pvt) = *req;
	info->ring.req_prod_pvt++;
	RING_PUSH_REQUESTS(&info->ring);
	notify_remote_via_irq(info->irq);
	inj->outstanding++;
	inj->answered = false;
	return 0;
}

static void pvblk_flip_locked(struct pvblk_info *info);

/*
 * Send one injected request and wait for its answer: its status, or -errno.
 * With @flip, change it on the ring until the answer comes (pvblk_flip_locked).
 */
static int pvblk_inject_one(struct pvblk_info *info, struct pvblk_request *req, bool flip)
{
	struct pvblk_inject *inj = &info->inject;
	unsigned long deadline = jiffies + PVBLK_INJECT_TIMEOUT;
	unsigned long flags;
	unsigned int n = 0;
	int err;

	spin_lock_irqsave(&info->ring_lock, flags);
	err = pvblk_inject_put_locked(info, req);
	spin_unlock_irqrestore(&info->ring_lock, flags);
	if (err)
		return err;
	while (flip && time_before(jiffies, deadline)) {
		/* interrupts on between the changes: the answer stops them */
		spin_lock_irqsave(&info->ring_lock, flags);
		if (inj->answered || info->state != PVBLK_CONNECTED) {
			spin_unlock_irqrestore(&info->ring_lock, flags);
			break;
		}
		pvblk_flip_locked(info);
		spin_unlock_irqrestore(&info->ring_lock, flags);
		if (!(++n % 64))
			cond_resched();
	}
	wait_event_timeout(inj->wq, READ_ONCE(inj->answered) ||
			   READ_ONCE(info->state) != PVBLK_CONNECTED, PVBLK_INJECT_TIMEOUT);
	spin_lock_irqsave(&info->ring_lock, flags);
	err = inj->answered ? inj->status : -ETIMEDOUT;
	spin_unlock_irqrestore(&info->ring_lock, flags);
	return err;
}

/*
 * Test hook flip: while the injected request waits for its answer, change it
 * on the shared ring (and in its indirect page) between valid and hostile
 * values, as fast as we can. The backend must act on one consistent copy:
 * only OKAY or ERROR, and no I/O outside the device. Called with ring_lock.
 */
static void pvblk_flip_locked(struct pvblk_info *info)
{
	struct pvblk_inject *inj = &info->inject;
	static const u64 sectors_bad[] = { 0, ~0ULL - 4, 1ULL << 40 };
	static const u8 nsegs[] = { 1, 11, 0, 255 };
	static const u8 iops[] = { PVBLK_OP_READ, PVBLK_OP_WRITE, PVBLK_OP_FLUSH_DISKCACHE };
	static const u16 insegs[] = { 8, 0, 257, 4096, 256 };
	struct pvblk_request_segment *isegs;
	struct pvblk_request *req;
	unsigned int t, i;

	t = inj->tick++;
	req = RING_GET_REQUEST(&info->ring, inj->slot);
	if (!inj->indirect) {
		/* op and nr_segments overlap the response's id: see pvblk_inject_id() */
		WRITE_ONCE(req->operation, t & 1 ? PVBLK_OP_WRITE : PVBLK_OP_READ);
		WRITE_ONCE(req->u.rw.nr_segments, nsegs[t % ARRAY_SIZE(nsegs)]);
		WRITE_ONCE(req->u.rw.sector_number,
			   t % 3 ? inj->sector : info->sectors + sectors_bad[t % 3]);
		for (i = 0; i < PVBLK_MAX_SEGMENTS_PER_REQUEST; i++) {
			WRITE_ONCE(req->u.rw.seg[i].first_sect, t % 5 ? 0 : 7);
			WRITE_ONCE(req->u.rw.seg[i].last_sect, t % 7 ? 7 : 0);
		}
	} else {
		WRITE_ONCE(req->u.indirect.indirect_op, iops[t % ARRAY_SIZE(iops)]);
		WRITE_ONCE(req->u.indirect.nr_segments, insegs[t % ARRAY_SIZE(insegs)]);
		WRITE_ONCE(req->u.indirect.sector_number,
			   t % 4 ? inj->sector : info->sectors + sectors_bad[t % 3]);
		isegs = page_address(inj->page[1]);
		for (i = 0; i < 8; i++) {
			WRITE_ONCE(isegs[i].first_sect, t % 5 ? 0 : 7);
			WRITE_ONCE(isegs[i].last_sect, t % 7 ? 7 : 0);
		}
	}
	inj->flips++;
}

/*
 * A valid read of 8 sectors at @sector (direct, or indirect with one
 * descriptor list), in the flip hook's scratch area: the data page is
 * inj->gref[0], the indirect page inj->gref[1] (all 512 descriptors valid).
 */
static void pvblk_flip_request(struct pvblk_info *info, struct pvblk_request *req,
			       bool indirect)
{
	struct pvblk_inject *inj = &info->inject;
	struct pvblk_request_segment seg = { .gref = inj->gref[0], .last_sect = 7 };
	unsigned int i;

	memset(req, 0, sizeof(*req));
	if (indirect) {
		struct pvblk_request_segment *isegs = page_address(inj->page[1]);

		for (i = 0; i < PVBLK_SEGS_PER_INDIRECT_FRAME; i++)
			isegs[i] = seg;
		req->operation = PVBLK_OP_INDIRECT;
		req->u.indirect.indirect_op = PVBLK_OP_READ;
		req->u.indirect.nr_segments = 8;
		req->u.indirect.id = PVBLK_INJECT_ID;
		req->u.indirect.sector_number = inj->sector;
		req->u.indirect.handle = info->handle;
		req->u.indirect.indirect_grefs[0] = inj->gref[1];
	} else {
		req->operation = PVBLK_OP_READ;
		req->u.rw.nr_segments = 1;
		req->u.rw.id = PVBLK_INJECT_ID;
		req->u.rw.sector_number = inj->sector;
		req->u.rw.handle = info->handle;
		for (i = 0; i < PVBLK_MAX_SEGMENTS_PER_REQUEST; i++)
			req->u.rw.seg[i] = seg;
	}
}

/* inject flip_direct|flip_indirect N: N requests changed under the backend. */
static int pvblk_inject_flips(struct pvblk_info *info, bool indirect, unsigned int n)
{
	struct pvblk_inject *inj = &info->inject;
	unsigned int i, okay = 0, error = 0, other = 0, lost = 0;
	struct pvblk_request req;
	int st, err;

	/* a scratch area of 2 MiB (256 segments of 8 sectors) at the end of the disk */
	if (info->sectors < 8192)
		return -ENOSPC;
	inj->sector = info->sectors - 4096;
	inj->indirect = indirect;
	inj->flips = 0;
	err = pvblk_inject_pages(info, 2, false);
	if (err)
		goto out;
	for (i = 0; i < n; i++) {
		pvblk_flip_request(info, &req, indirect);
		st = pvblk_inject_one(info, &req, true);
		if (st < PVBLK_RSP_EOPNOTSUPP && st != -ETIMEDOUT)
			break;	/* disconnected */
		if (st == PVBLK_RSP_OKAY)
			okay++;
		else if (st == PVBLK_RSP_ERROR)
			error++;
		else if (st == -ETIMEDOUT)
			lost++;
		else
			other++;
	}
	snprintf(inj->result, sizeof(inj->result),
		 "%s n=%u okay=%u error=%u other=%u lost=%u flips=%lu",
		 pvblk_inject_names[indirect ? PVBLK_INJ_FLIP_INDIRECT : PVBLK_INJ_FLIP_DIRECT],
		 i, okay, error, other, lost, inj->flips);
out:
	pvblk_inject_release(inj);
	return err;
}

/* inject MODE for one malformed request: its answer in inject_result. */
static int pvblk_inject_single(struct pvblk_info *info, int mode)
{
	struct pvblk_inject *inj = &info->inject;
	struct pvblk_request_segment seg = { .first_sect = 0, .last_sect = 7 };
	struct pvblk_request_segment *isegs;
	struct pvblk_request req = {};
	unsigned int i;
	int st, err = 0;

	if (mode != PVBLK_INJ_GREF) {
		err = pvblk_inject_pages(info, mode == PVBLK_INJ_SEGS257 ? 3 : 1,
					 mode == PVBLK_INJ_NSEGS);
		if (err)
			goto out;
		seg.gref = inj->gref[0];
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
	case PVBLK_INJ_SEGS257:
	case PVBLK_INJ_RING_GREF:
		/* valid descriptors in the pages; the request itself is the problem */
		for (i = 1; mode == PVBLK_INJ_SEGS257 && i < 3; i++) {
			isegs = page_address(inj->page[i]);
			memset(isegs, 0, PAGE_SIZE);
			for (st = 0; st < PVBLK_SEGS_PER_INDIRECT_FRAME; st++)
				isegs[st] = seg;
		}
		memset(&req, 0, sizeof(req));
		req.operation = PVBLK_OP_INDIRECT;
		req.u.indirect.indirect_op = PVBLK_OP_READ;
		req.u.indirect.id = PVBLK_INJECT_ID;
		req.u.indirect.handle = info->handle;
		if (mode == PVBLK_INJ_SEGS257) {
			req.u.indirect.nr_segments = 257;
			req.u.indirect.indirect_grefs[0] = inj->gref[1];
			req.u.indirect.indirect_grefs[1] = inj->gref[2];
		} else {
			/* the descriptors are the ring page itself */
			req.u.indirect.nr_segments = 8;
			req.u.indirect.indirect_grefs[0] = info->ring_ref[0];
		}
		break;
	}
	if (req.operation != PVBLK_OP_INDIRECT)
		for (i = 0; i < PVBLK_MAX_SEGMENTS_PER_REQUEST; i++)
			req.u.rw.seg[i] = seg;

	st = pvblk_inject_one(info, &req, false);
	if (st == -ETIMEDOUT)
		snprintf(inj->result, sizeof(inj->result), "%s no response",
			 pvblk_inject_names[mode]);
	else if (st < -2)
		err = st;
	else
		snprintf(inj->result, sizeof(inj->result), "%s status %d",
			 pvblk_inject_names[mode], st);
out:
	pvblk_inject_release(inj);
	return err;
}

/* inject prod: a producer index beyond anything the ring can hold. */
static int pvblk_inject_prod(struct pvblk_info *info)
{
	unsigned long flags;

	spin_lock_irqsave(&info->ring_lock, flags);
	if (info->state != PVBLK_CONNECTED) {
		spin_unlock_irqrestore(&info->ring_lock, flags);
		return -ENOTCONN;
	}
	dev_warn(&info->xbdev->dev, "inject: req_prod %u -> %u\n",
		 info->ring.req_prod_pvt, info->ring.req_prod_pvt + PVBLK_BAD_PROD);
	virt_wmb();	/* earlier requests before the producer index */
	WRITE_ONCE(info->ring.sring->req_prod, info->ring.req_prod_pvt + PVBLK_BAD_PROD);
	notify_remote_via_irq(info->irq);
	/* The ring is unusable now; close ourselves if the backend does not. */
	pvblk_set_broken(info, "backend ignored a bad producer index", PVBLK_PROD_GRACE);
	spin_unlock_irqrestore(&info->ring_lock, flags);
	snprintf(info->inject.result, sizeof(info->inject.result), "prod sent");
	return 0;
}

/* inject storm N: N event notifications with nothing on the ring. */
static int pvblk_inject_storm(struct pvblk_info *info, unsigned int n)
{
	ktime_t t0 = ktime_get();
	unsigned int i;

	if (READ_ONCE(info->state) != PVBLK_CONNECTED)
		return -ENOTCONN;
	for (i = 0; i < n && READ_ONCE(info->state) == PVBLK_CONNECTED; i++) {
		notify_remote_via_irq(info->irq);
		if (!(i % 256))
			cond_resched();
	}
	snprintf(info->inject.result, sizeof(info->inject.result), "storm sent %u in %lld ms",
		 i, ktime_ms_delta(ktime_get(), t0));
	return 0;
}

/* --- test hooks xs and cycles: this frontend drives the XenStore handshake --- */

static bool pvblk_backend_in(struct pvblk_info *info, unsigned int mask, int *state)
{
	*state = xenbus_read_driver_state(info->xbdev->otherend);
	return mask & (1U << *state);
}

/* Wait until the backend's state is in @mask; the state, or -ETIMEDOUT. */
static int pvblk_wait_backend(struct pvblk_info *info, unsigned int mask)
{
	int state;

	if (!wait_event_timeout(info->xs_wq, pvblk_backend_in(info, mask, &state),
				PVBLK_XS_TIMEOUT))
		return -ETIMEDOUT;
	return state;
}

#define PVBLK_B(s)	(1U << (s))

/* Close (we and the backend), and free the ring of the last connect. */
static int pvblk_xs_close(struct pvblk_info *info)
{
	int st;

	xenbus_switch_state(info->xbdev, PVBLK_XB_CLOSED);
	st = pvblk_wait_backend(info, PVBLK_B(PVBLK_XB_CLOSED));
	pvblk_free_ring(info);
	return st < 0 ? st : 0;
}

/* Start over: Initialising, until the backend waits for us. */
static int pvblk_xs_initialise(struct pvblk_info *info)
{
	int st;

	xenbus_switch_state(info->xbdev, PVBLK_XB_INITIALISING);
	st = pvblk_wait_backend(info, PVBLK_B(PVBLK_XB_INIT_WAIT));
	return st < 0 ? st : 0;
}

/* One connect in @mode; the backend's answer: Connected or Closing/Closed. */
static int pvblk_xs_connect(struct pvblk_info *info, enum pvblk_xs_mode mode)
{
	int err = pvblk_xs_initialise(info);

	if (!err)
		err = pvblk_talk_to_backend(info, mode);
	if (err)
		return err;
	return pvblk_wait_backend(info, PVBLK_B(PVBLK_XB_CONNECTED) |
				  PVBLK_B(PVBLK_XB_CLOSING) | PVBLK_B(PVBLK_XB_CLOSED));
}

/*
 * inject xs MODE|cycles N. The disk stays (its requests wait, as across a
 * resume); the ring goes, and this frontend writes the handshake itself:
 * MODE once with one hostile node (the backend must refuse it), or N
 * normal connect/close cycles. Then it connects normally and goes on.
 */
static int pvblk_inject_xs(struct pvblk_info *info, int mode, unsigned int cycles)
{
	struct xenbus_device *dev = info->xbdev;
	ktime_t t0 = ktime_get();
	unsigned int i = 0;
	int st, err;

	mutex_lock(&info->mutex);
	if (info->state != PVBLK_CONNECTED) {
		mutex_unlock(&info->mutex);
		return -ENOTCONN;
	}
	WRITE_ONCE(info->xs_test, true);
	pvblk_disconnect(info, PVBLK_SUSPENDED);
	err = pvblk_xs_close(info);
	if (err)
		goto out;

	if (cycles) {
		for (i = 0; i < cycles; i++) {
			st = pvblk_xs_connect(info, PVBLK_XS_NORMAL);
			if (st != PVBLK_XB_CONNECTED) {
				err = st < 0 ? st : -ECONNREFUSED;
				break;
			}
			err = pvblk_xs_close(info);
			if (err)
				break;
		}
		snprintf(info->inject.result, sizeof(info->inject.result),
			 "cycles %u of %u in %lld ms%s", i, cycles,
			 ktime_ms_delta(ktime_get(), t0), err ? " (failed)" : "");
	} else {
		st = pvblk_xs_connect(info, mode);
		snprintf(info->inject.result, sizeof(info->inject.result), "xs %s %s",
			 pvblk_xs_names[mode],
			 st == PVBLK_XB_CONNECTED ? "connected" :
			 st < 0 ? "no answer" : "refused");
		err = pvblk_xs_close(info);
	}
out:
	/* connect for real again; the waiting requests go on */
	if (!err) {
		err = pvblk_xs_initialise(info);
		if (!err)
			err = pvblk_talk_to_backend(info, PVBLK_XS_NORMAL);
	}
	WRITE_ONCE(info->xs_test, false);
	/* the backend's Connected may have come while we drove the handshake */
	if (!err && xenbus_read_driver_state(dev->otherend) == PVBLK_XB_CONNECTED)
		pvblk_connect(info);
	mutex_unlock(&info->mutex);
	if (err)
		dev_err(&dev->dev, "inject xs: %d\n", err);
	return err;
}

static ssize_t pvblk_inject_write(struct file *file, const char __user *ubuf,
				  size_t count, loff_t *ppos)
{
	struct pvblk_info *info = file->private_data;
	char buf[48], *cmd, *arg;
	unsigned int n = 0;
	int mode, err;

	if (!count || count >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = '\0';
	/* "MODE" or "MODE ARG" */
	cmd = strim(buf);
	arg = strchr(cmd, ' ');
	if (arg) {
		*arg++ = '\0';
		arg = strim(arg);
	}
	mode = match_string(pvblk_inject_names, ARRAY_SIZE(pvblk_inject_names), cmd);
	if (mode < 0)
		return -EINVAL;
	if (mode >= PVBLK_INJ_FLIP_DIRECT && mode != PVBLK_INJ_XS &&
	    (!arg || kstrtouint(arg, 0, &n) || !n || n > 10000000))
		return -EINVAL;

	mutex_lock(&info->inject_lock);
	info->inject.mode = mode;
	info->inject.result[0] = '\0';
	switch (mode) {
	case PVBLK_INJ_PROD:
		err = pvblk_inject_prod(info);
		break;
	case PVBLK_INJ_FLIP_DIRECT:
	case PVBLK_INJ_FLIP_INDIRECT:
		err = pvblk_inject_flips(info, mode == PVBLK_INJ_FLIP_INDIRECT, n);
		break;
	case PVBLK_INJ_STORM:
		err = pvblk_inject_storm(info, n);
		break;
	case PVBLK_INJ_XS:
		err = arg ? match_string(pvblk_xs_names, ARRAY_SIZE(pvblk_xs_names), arg) :
		      -EINVAL;
		if (err > PVBLK_XS_NORMAL)
			err = pvblk_inject_xs(info, err, 0);
		else
			err = -EINVAL;
		break;
	case PVBLK_INJ_CYCLES:
		err = pvblk_inject_xs(info, PVBLK_XS_NORMAL, n);
		break;
	default:
		err = pvblk_inject_single(info, mode);
		break;
	}
	mutex_unlock(&info->inject_lock);
	if (err)
		return err;
	dev_info(&info->xbdev->dev, "inject: %s\n", info->inject.result);
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
	if (!test_hooks)
		return;
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

	spin_lock_irqsave(&info->ring_lock, flags);
	pvblk_read_features(info);
	spin_unlock_irqrestore(&info->ring_lock, flags);
	if (info->backend_segs < info->max_segs)
		dev_warn(&dev->dev, "new backend takes %u segments, not %u: larger requests are split\n",
			 info->backend_segs, info->max_segs);
	pvblk_set_limits(info);
	pvblk_update_capacity(info);

	spin_lock_irqsave(&info->ring_lock, flags);
	info->state = PVBLK_CONNECTED;
	spin_unlock_irqrestore(&info->ring_lock, flags);
	xenbus_switch_state(dev, PVBLK_XB_CONNECTED);

	blk_mq_start_stopped_hw_queues(q, true);
	blk_mq_kick_requeue_list(q);
	dev_info(&dev->dev, "%s: reconnected, ring order %u, segments %u, flush %d, bounce %d\n",
		 info->gd->disk_name, info->ring_order, min(info->backend_segs, info->max_segs),
		 info->feature_flush, info->bounce);
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
	dev_info(&dev->dev, "%s: %llu sectors, ring order %u, max segs %u, flush %d, discard %d, bounce %d\n",
		 info->gd->disk_name, sectors, info->ring_order, info->max_segs,
		 info->feature_flush, info->feature_discard, info->bounce);
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
static void pvblk_closing(struct pvblk_info *info)
{
	struct xenbus_device *dev = info->xbdev;
	unsigned long flags;
	bool drain;

	mutex_lock(&info->mutex);
	if (dev->state == PVBLK_XB_CLOSED || READ_ONCE(info->xs_test))
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
	dev_info(&dev->dev, "backend %s: disconnected\n",
		 xenbus_strstate(xenbus_read_driver_state(dev->otherend)));
out:
	mutex_unlock(&info->mutex);
}

static void pvblk_close_work(struct work_struct *work)
{
	pvblk_closing(container_of(work, struct pvblk_info, close_work));
}

static void pvblk_backend_changed(struct xenbus_device *dev,
				  enum xenbus_state backend_state)
{
	struct pvblk_info *info = dev_get_drvdata(&dev->dev);

	dev_dbg(&dev->dev, "backend %s, frontend %s\n", xenbus_strstate(backend_state),
		xenbus_strstate(dev->state));

	if (READ_ONCE(info->xs_test)) {
		/* the xs test hook drives the handshake */
		wake_up(&info->xs_wq);
		return;
	}

	switch (backend_state) {
	case PVBLK_XB_INIT_WAIT:
		if (dev->state != PVBLK_XB_INITIALISING)
			break;
		mutex_lock(&info->mutex);
		pvblk_talk_to_backend(info, PVBLK_XS_NORMAL);
		mutex_unlock(&info->mutex);
		break;
	case PVBLK_XB_CONNECTED:
		mutex_lock(&info->mutex);
		/* A backend may skip InitWait. */
		if (dev->state == PVBLK_XB_INITIALISING &&
		    pvblk_talk_to_backend(info, PVBLK_XS_NORMAL)) {
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
		/* the drain and the disk's removal wait: not on xenwatch */
		queue_work(system_long_wq, &info->close_work);
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
	mutex_init(&info->inject_lock);
	spin_lock_init(&info->ring_lock);
	info->state = PVBLK_DISCONNECTED;
	info->vdevice = vdevice;
	info->index = -1;
	/* a frontend bound before us may have left any of these */
	info->xs_nrefs = XENBUS_MAX_RING_GRANTS;
	info->xs_single_ref = true;
	info->xs_order = true;
	info->xs_queues = true;
	for (i = 0; i < ARRAY_SIZE(info->ring_ref); i++)
		info->ring_ref[i] = INVALID_GRANT_REF;
	INIT_LIST_HEAD(&info->held);
	INIT_DELAYED_WORK(&info->held_work, pvblk_held_work);
	bio_list_init(&info->resubmit);
	INIT_WORK(&info->resubmit_work, pvblk_resubmit_work);
	INIT_WORK(&info->restart_work, pvblk_restart_work);
	INIT_WORK(&info->close_work, pvblk_close_work);
	INIT_DELAYED_WORK(&info->fatal_work, pvblk_fatal_work);
	init_waitqueue_head(&info->drain_wq);
	init_waitqueue_head(&info->xs_wq);
	info->inject.mode = -1;
	for (i = 0; i < ARRAY_SIZE(info->inject.gref); i++)
		info->inject.gref[i] = INVALID_GRANT_REF;
	init_waitqueue_head(&info->inject.wq);

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

	cancel_work_sync(&info->close_work);
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
	cancel_delayed_work_sync(&info->held_work);
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
	err = pvblk_talk_to_backend(info, PVBLK_XS_NORMAL);
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
	pr_info("bound to device type %s, major %d%s\n", devtype, pvblk_major,
		test_hooks ? " (test hooks on)" : "");
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
