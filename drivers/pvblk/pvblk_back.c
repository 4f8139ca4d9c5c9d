// SPDX-License-Identifier: GPL-2.0
/*
 * pvblk_back.c - pvkit's Xen PV block backend (blkif), the dom0 end.
 *
 * It serves a block device or a regular file to a blkif frontend (pvblk-front
 * or upstream xen-blkfront). Data moves with grant copy only: the frontend's
 * pages are never mapped, the hypervisor copies between them and the
 * backend's own buffer pages, in batches that span many requests.
 *
 * Many requests are in flight per device. One kernel thread per ring takes
 * requests off the shared ring, checks them, copies write data in, and hands
 * them to an I/O engine chosen when the store is opened:
 *  - a block device: bios, submitted straight to it;
 *  - a regular file whose filesystem does direct I/O: O_DIRECT, asynchronous
 *    (a kiocb per request), so nothing goes through dom0's page cache;
 *  - a file without direct I/O: synchronous buffered I/O in the thread; on a
 *    filesystem with writeback, every write is written through (RWF_DSYNC),
 *    so one guest cannot fill dom0's dirty page cache. On tmpfs, whose page
 *    cache is the store itself, writes stay buffered.
 * Completions (bio end_io, ki_complete) put the request on a done list; the
 * thread copies read data out to the frontend, again in one batch, and posts
 * the responses. On tmpfs, a direct request whose pages are all in the page
 * cache is served in the event handler itself: one grant copy between the
 * frontend's pages and the page cache, no thread and no buffer (the memory
 * fast path). Ring accounting follows upstream blkback: a producer index
 * more than a ring ahead of our responses is a hostile frontend, and no
 * request is taken off the ring that could not be answered in its slot.
 *
 * The frontend is not trusted. Every request is copied out of the shared ring
 * into private memory and checked by pvblk_validate.c before use; so are the
 * segment descriptors of indirect requests, after they are copied out of the
 * frontend's pages. A bogus ring producer index shuts the device down.
 *
 * XenStore events (frontend state, online, physical-device) only queue the
 * device's state work: connecting and tearing down (stopping the thread,
 * waiting for I/O, closing the store) run on a workqueue, never on xenwatch,
 * so one guest's slow teardown cannot stall device handling for any other.
 * A teardown with I/O still in flight returns busy; the last completion
 * queues the work again.
 *
 * Features: flush (feature-flush-cache), discard (feature-discard: punch a
 * hole in a file, discard on a block device), indirect requests, multi-page
 * rings, and online resize: a changed store size is written to XenStore with
 * the state node, as upstream does, and the frontend picks it up.
 */

#define pr_fmt(fmt) "pvblk-back: " fmt

#include <linux/atomic.h>
#include <linux/backing-dev.h>
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/bvec.h>
#include <linux/debugfs.h>
#include <linux/device.h>
#include <linux/falloc.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/jiffies.h>
#include <linux/kthread.h>
#include <linux/magic.h>
#include <linux/module.h>
#include <linux/pagemap.h>
#include <linux/mutex.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/uio.h>
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
#include "pvblk_validate.h"

DEFINE_RING_TYPES(pvblk, struct pvblk_request, struct pvblk_response);

static_assert(offsetof(struct pvblk_sring, ring) == PVBLK_RING_HEADER_SIZE);
static_assert(sizeof(union pvblk_sring_entry) == PVBLK_RING_ENTRY_SIZE);
static_assert(PAGE_SIZE == PVBLK_PAGE_SIZE && XEN_PAGE_SIZE == PVBLK_PAGE_SIZE);

/*
 * The XenBus states (enum xenbus_state, include/xen/interface/io/xenbus.h),
 * spelled as the numbers they are in XenStore: the values are Xen's public
 * ABI, and the enumerators' CamelCase names upset checkpatch.
 */
#define PVBLK_XB_UNKNOWN	0
#define PVBLK_XB_INITIALISING	1
#define PVBLK_XB_INITWAIT	2
#define PVBLK_XB_INITIALISED	3
#define PVBLK_XB_CONNECTED	4
#define PVBLK_XB_CLOSING	5
#define PVBLK_XB_CLOSED		6

/* Segments per indirect request we can serve: the descriptors fit one page. */
#define PVBLK_BACK_MAX_SEGS	256
/* Grant copy ops per batch (one hypercall), across requests. */
#define PVBLK_BACK_COPY_BATCH	512
/* Fast path: requests per grant copy batch; each segment spans at most two pages. */
#define PVBLK_BACK_FAST_REQS	32
#define PVBLK_BACK_FAST_OPS	128

static_assert(PVBLK_BACK_FAST_OPS >= 2 * PVBLK_MAX_SEGMENTS_PER_REQUEST);

static_assert(PVBLK_BACK_MAX_SEGS >= PVBLK_MAX_SEGMENTS_PER_REQUEST);
static_assert(PVBLK_BACK_MAX_SEGS <= PVBLK_MAX_INDIRECT_SEGMENTS);
static_assert(PVBLK_BACK_MAX_SEGS * sizeof(struct pvblk_request_segment) <= PAGE_SIZE);
static_assert(PVBLK_BACK_COPY_BATCH >= PVBLK_BACK_MAX_SEGS);

static char *devtype = PVBLK_DEVICE_TYPE;
module_param(devtype, charp, 0444);
MODULE_PARM_DESC(devtype,
		 "XenStore backend device type to serve: \"pvblk\" (default) or \"vbd\" (only without xen-blkback)");

static unsigned int max_ring_page_order = PVBLK_MAX_RING_PAGE_ORDER;
module_param(max_ring_page_order, uint, 0444);
MODULE_PARM_DESC(max_ring_page_order,
		 "Largest shared ring the frontend may use, log2 of its pages (0-4, default 4)");

static unsigned int max_indirect_segments = PVBLK_BACK_MAX_SEGS;
module_param(max_indirect_segments, uint, 0644);
MODULE_PARM_DESC(max_indirect_segments,
		 "Segments per indirect request offered to frontends that connect from now on (0: no indirect requests; at most 256)");

static unsigned int max_buffer_pages = 2048;
module_param(max_buffer_pages, uint, 0644);
MODULE_PARM_DESC(max_buffer_pages,
		 "Buffer pages per device for requests in flight (default 2048, at least 512)");

static bool fast_path = true;
module_param(fast_path, bool, 0644);
MODULE_PARM_DESC(fast_path,
		 "Serve direct requests on a tmpfs store in the event handler, from the page cache (default on)");

static bool audit;
module_param(audit, bool, 0644);
MODULE_PARM_DESC(audit,
		 "Test: also copy whole granted pages and count the bytes a frontend exposes beyond what a request needs");

static bool test_hooks;
module_param(test_hooks, bool, 0444);
MODULE_PARM_DESC(test_hooks,
		 "Test: debugfs <dev>/inject makes this backend misbehave (hold a grant mapped, refuse flushes)");

/* Module-wide counts of what devices hold: debugfs pvblk-back/resources. */
enum pvblk_back_res {
	PVBLK_RES_STORES,	/* open backing stores */
	PVBLK_RES_RINGS,	/* mapped rings */
	PVBLK_RES_IRQS,		/* bound event channels */
	PVBLK_RES_THREADS,	/* ring threads */
	PVBLK_RES_IO,		/* requests in the I/O engine */
	PVBLK_RES_PAGES,	/* buffer pages */
	PVBLK_RES_REQS,		/* request slots */
	PVBLK_RES_COUNT
};

static const char * const pvblk_back_res_names[PVBLK_RES_COUNT] = {
	[PVBLK_RES_STORES] = "stores",
	[PVBLK_RES_RINGS] = "rings",
	[PVBLK_RES_IRQS] = "irqs",
	[PVBLK_RES_THREADS] = "threads",
	[PVBLK_RES_IO] = "io",
	[PVBLK_RES_PAGES] = "pages",
	[PVBLK_RES_REQS] = "request_slots",
};

static atomic_t pvblk_back_res[PVBLK_RES_COUNT];

/* Per-device counters: sysfs statistics/<name> and debugfs .../stats. */
enum pvblk_back_stat {
	PVBLK_ST_RD_REQ,
	PVBLK_ST_WR_REQ,
	PVBLK_ST_FLUSH_REQ,
	PVBLK_ST_DISCARD_REQ,
	PVBLK_ST_INDIRECT_REQ,
	PVBLK_ST_SEGMENTS,
	PVBLK_ST_RD_SECT,
	PVBLK_ST_WR_SECT,
	PVBLK_ST_DISCARD_SECT,
	PVBLK_ST_BATCHES,
	PVBLK_ST_FAST,
	PVBLK_ST_MAX_INFLIGHT,
	PVBLK_ST_STARVED,
	PVBLK_ST_RESIZES,
	PVBLK_ST_REJECTED,
	PVBLK_ST_COPY_ERRORS,
	PVBLK_ST_IO_ERRORS,
	PVBLK_ST_AUDITED,
	PVBLK_ST_EXPOSED_DATA,
	PVBLK_ST_EXPOSED_INDIRECT,
	PVBLK_ST_HOSTILE,
	/* rejected requests per reason: PVBLK_ST_REJ_BASE + PVBLK_VERR_* */
	PVBLK_ST_REJ_BASE = PVBLK_ST_HOSTILE,
	PVBLK_ST_COUNT = PVBLK_ST_REJ_BASE + PVBLK_VERR_COUNT
};

static const char * const pvblk_back_stat_names[PVBLK_ST_COUNT] = {
	[PVBLK_ST_RD_REQ] = "rd_req",
	[PVBLK_ST_WR_REQ] = "wr_req",
	[PVBLK_ST_FLUSH_REQ] = "flush_req",
	[PVBLK_ST_DISCARD_REQ] = "discard_req",
	[PVBLK_ST_INDIRECT_REQ] = "indirect_req",
	[PVBLK_ST_SEGMENTS] = "segments",
	[PVBLK_ST_RD_SECT] = "rd_sect",
	[PVBLK_ST_WR_SECT] = "wr_sect",
	[PVBLK_ST_DISCARD_SECT] = "discard_sect",
	[PVBLK_ST_BATCHES] = "batches",
	[PVBLK_ST_FAST] = "fast_path_req",
	[PVBLK_ST_MAX_INFLIGHT] = "max_inflight",
	[PVBLK_ST_STARVED] = "starved",
	[PVBLK_ST_RESIZES] = "resizes",
	[PVBLK_ST_REJECTED] = "rejected",
	[PVBLK_ST_COPY_ERRORS] = "copy_errors",
	[PVBLK_ST_IO_ERRORS] = "io_errors",
	[PVBLK_ST_AUDITED] = "audited_requests",
	[PVBLK_ST_EXPOSED_DATA] = "exposed_data_bytes",
	[PVBLK_ST_EXPOSED_INDIRECT] = "exposed_indirect_bytes",
	[PVBLK_ST_HOSTILE] = "hostile",
	[PVBLK_ST_REJ_BASE + PVBLK_VERR_BAD_OP] = "rejected_bad_op",
	[PVBLK_ST_REJ_BASE + PVBLK_VERR_BAD_INDIRECT_OP] = "rejected_bad_indirect_op",
	[PVBLK_ST_REJ_BASE + PVBLK_VERR_NOT_SUPPORTED] = "rejected_not_supported",
	[PVBLK_ST_REJ_BASE + PVBLK_VERR_NR_SEGMENTS] = "rejected_nr_segments",
	[PVBLK_ST_REJ_BASE + PVBLK_VERR_DISCARD_EMPTY] = "rejected_discard_empty",
	[PVBLK_ST_REJ_BASE + PVBLK_VERR_READ_ONLY] = "rejected_read_only",
	[PVBLK_ST_REJ_BASE + PVBLK_VERR_SEGMENT] = "rejected_segment",
	[PVBLK_ST_REJ_BASE + PVBLK_VERR_OVERFLOW] = "rejected_overflow",
	[PVBLK_ST_REJ_BASE + PVBLK_VERR_RANGE] = "rejected_range",
	[PVBLK_ST_REJ_BASE + PVBLK_VERR_RING] = "rejected_ring",
	[PVBLK_ST_REJ_BASE + PVBLK_VERR_PARAM] = "rejected_param",
};

/* How the store is read and written. */
enum pvblk_back_engine {
	PVBLK_ENG_BDEV,		/* bios to a block device */
	PVBLK_ENG_DIRECT,	/* O_DIRECT kiocbs to a file */
	PVBLK_ENG_BUFFERED,	/* synchronous buffered file I/O */
};

static const char * const pvblk_back_engine_names[] = {
	[PVBLK_ENG_BDEV] = "block device (bios)",
	[PVBLK_ENG_DIRECT] = "file (O_DIRECT, async)",
	[PVBLK_ENG_BUFFERED] = "file (buffered)",
};

struct pvblk_back_dev;

/* The fast path's grant copy batch: requests answered after one hypercall. */
struct pvblk_back_fast {
	struct gnttab_copy copy[PVBLK_BACK_FAST_OPS];
	struct page *pages[PVBLK_BACK_FAST_OPS];
	unsigned int nr_copy;
	unsigned int nr_reqs;
	struct {
		struct pvblk_req_info info;
		unsigned int first;	/* its ops: copy[first .. next's first) */
	} req[PVBLK_BACK_FAST_REQS];
};

/* A request taken off the ring and not yet answered. */
struct pvblk_back_req {
	struct list_head node;		/* free list, batch, or done list */
	struct pvblk_back_dev *be;
	struct pvblk_req_info info;	/* the checked request */
	u8 op;				/* the operation to answer with */
	bool copy_failed;		/* a grant copy of its data failed */
	bool delayed;			/* test hook delay_io: completion held back */
	unsigned long due;		/* ... until then (jiffies) */
	int error;			/* of the I/O: 0 or -errno */
	atomic_t bios;			/* bios in flight */
	struct kiocb iocb;
	struct pvblk_request_segment *segs;	/* PVBLK_BACK_MAX_SEGS */
	struct page **pages;			/* one per segment */
	struct bio_vec *bvec;			/* one per segment */
};

/* Test hooks: how this backend misbehaves when told to. */
struct pvblk_back_hooks {
	bool refuse_flush;		/* answer flushes EOPNOTSUPP */
	unsigned int hold_secs;		/* >0: hold the next read's grant mapped */
	bool holding;
	struct page *page;		/* the mapping */
	grant_handle_t handle;
	grant_ref_t ref;
	struct delayed_work unmap_work;
	unsigned int held;		/* how many times */
	unsigned int delay_secs;	/* >0: a slow store, I/O completes this much later */
	struct list_head delayed;	/* completions held back (done_lock) */
	struct delayed_work delay_work;
};

struct pvblk_back_dev {
	struct xenbus_device *dev;
	domid_t domid;			/* the frontend's */

	/* serializes the state work, remove and the store's open/close */
	struct mutex lock;
	struct work_struct work;	/* the state machine, on pvblk_back_wq */
	struct xenbus_watch physdev_watch;
	struct xenbus_watch online_watch;
	bool teardown_busy;		/* a disconnect waits for I/O */
	bool removed;			/* remove() left the rest to the work */

	/* the backing store */
	struct file *file;
	dev_t devt;			/* opened from physical-device, or 0 */
	struct block_device *bdev;	/* PVBLK_ENG_BDEV */
	enum pvblk_back_engine engine;
	bool dsync;			/* buffered: write through */
	bool fast;			/* tmpfs: the memory fast path may serve it */
	unsigned long touched;		/* fast path: when mtime was last updated */
	struct work_struct touch_work;
	bool can_discard;
	unsigned int discard_granularity;
	unsigned int phys_sector_size;
	struct pvblk_vdev_limits lim;	/* what the frontend was told */

	/* the ring, while connected */
	struct pvblk_back_ring ring;
	void *ring_addr;
	unsigned int nr_ring_pages;
	evtchn_port_t evtchn;
	int irq;
	struct task_struct *thread;
	wait_queue_head_t wq;		/* the thread waits here */
	bool irq_pending;		/* set by the interrupt handler */
	unsigned long ring_busy;	/* bit 0: the thread or the fast path has the ring */
	bool hostile;			/* set by the thread: close the device */
	bool resized;			/* set by the thread: publish the size */

	/* requests: slots, the thread's batch, and those the I/O finished */
	struct pvblk_back_req *reqs;
	unsigned int nr_reqs;
	unsigned int nr_busy;		/* slots in use */
	struct list_head free_reqs;
	struct list_head batch;
	spinlock_t done_lock;		/* done, io_pending vs. completions */
	struct list_head done;
	atomic_t io_pending;		/* requests in the I/O engine */
	wait_queue_head_t io_wq;

	/* buffer pages, taken and given back by the thread */
	struct page **pool;
	unsigned int pool_free;		/* pool[0..pool_free) are free */
	unsigned int pool_total;	/* allocated */
	unsigned int pool_max;

	/* one grant copy batch */
	struct gnttab_copy *copy;
	struct pvblk_back_req **copy_req;	/* the request of each op */
	unsigned int nr_copy;
	struct page *audit_page;
	struct pvblk_back_fast *fast_batch;	/* the fast path's, under ring_busy */

	struct pvblk_back_hooks hooks;
	atomic64_t stats[PVBLK_ST_COUNT];
	bool sysfs;			/* the statistics group exists */
	struct dentry *debugfs;
};

static struct dentry *pvblk_back_debugfs_root;
static struct workqueue_struct *pvblk_back_wq;

static void pvblk_back_stat_add(struct pvblk_back_dev *be,
				enum pvblk_back_stat st, u64 n)
{
	atomic64_add(n, &be->stats[st]);
}

static void pvblk_back_stat_inc(struct pvblk_back_dev *be,
				enum pvblk_back_stat st)
{
	atomic64_inc(&be->stats[st]);
}

static void pvblk_back_res_add(enum pvblk_back_res res, int n)
{
	atomic_add(n, &pvblk_back_res[res]);
}

/* ---- the ring: requests in, responses out ---- */

static void pvblk_back_respond(struct pvblk_back_dev *be, u64 id, u8 op,
			       int status)
{
	struct pvblk_response *rsp;

	rsp = RING_GET_RESPONSE(&be->ring, be->ring.rsp_prod_pvt);
	rsp->id = id;
	rsp->operation = op;
	rsp->status = status;
	be->ring.rsp_prod_pvt++;
}

static void pvblk_back_push(struct pvblk_back_dev *be)
{
	int notify;

	RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&be->ring, notify);
	if (notify)
		notify_remote_via_irq(be->irq);
}

/* ---- buffer pages and request slots (the thread's) ---- */

/* Take @n buffer pages for @req; false if the pool cannot give them now. */
static bool pvblk_back_get_pages(struct pvblk_back_dev *be,
				 struct pvblk_back_req *req, unsigned int n)
{
	unsigned int i;

	while (be->pool_free < n && be->pool_total < be->pool_max) {
		struct page *page = alloc_page(GFP_NOIO | __GFP_ZERO | __GFP_NOWARN);

		if (!page)
			break;
		be->pool[be->pool_free++] = page;
		be->pool_total++;
		pvblk_back_res_add(PVBLK_RES_PAGES, 1);
	}
	if (be->pool_free < n)
		return false;
	for (i = 0; i < n; i++)
		req->pages[i] = be->pool[--be->pool_free];
	return true;
}

static void pvblk_back_put_req(struct pvblk_back_dev *be,
			       struct pvblk_back_req *req)
{
	unsigned int i, n = req->info.nr_segments;

	if (req->info.operation == PVBLK_OP_DISCARD)
		n = 0;
	for (i = 0; i < n; i++) {
		if (req->pages[i])
			be->pool[be->pool_free++] = req->pages[i];
		req->pages[i] = NULL;
	}
	list_add(&req->node, &be->free_reqs);
	be->nr_busy--;
}

static void pvblk_back_free_pool(struct pvblk_back_dev *be)
{
	while (be->pool_free) {
		__free_page(be->pool[--be->pool_free]);
		be->pool_total--;
		pvblk_back_res_add(PVBLK_RES_PAGES, -1);
	}
	if (WARN_ON(be->pool_total))
		be->pool_total = 0;
}

/* ---- grant copy ---- */

/* Run the copy batch; a request with a failed op gets copy_failed. */
static void pvblk_back_copy_flush(struct pvblk_back_dev *be)
{
	unsigned int i;

	if (!be->nr_copy)
		return;
	gnttab_batch_copy(be->copy, be->nr_copy);
	for (i = 0; i < be->nr_copy; i++) {
		struct gnttab_copy *op = &be->copy[i];

		if (op->status == GNTST_okay)
			continue;
		if (!be->copy_req[i]->copy_failed) {
			pvblk_back_stat_inc(be, PVBLK_ST_COPY_ERRORS);
			pr_warn_ratelimited("%s: request id %llu: grant copy of ref %u failed: status %d\n",
					    be->dev->nodename, be->copy_req[i]->info.id,
					    op->flags & GNTCOPY_dest_gref ?
					    op->dest.u.ref : op->source.u.ref, op->status);
		}
		be->copy_req[i]->copy_failed = true;
	}
	be->nr_copy = 0;
}

/* Queue the copies of @req's data, to the frontend or from it. */
static void pvblk_back_copy_data(struct pvblk_back_dev *be,
				 struct pvblk_back_req *req, bool to_frontend)
{
	unsigned int i;

	if (be->nr_copy + req->info.nr_segments > PVBLK_BACK_COPY_BATCH)
		pvblk_back_copy_flush(be);
	for (i = 0; i < req->info.nr_segments; i++) {
		const struct pvblk_request_segment *seg = &req->segs[i];
		struct gnttab_copy *op = &be->copy[be->nr_copy];
		struct gnttab_copy_ptr *front = to_frontend ? &op->dest : &op->source;
		struct gnttab_copy_ptr *back = to_frontend ? &op->source : &op->dest;
		u16 offset = seg->first_sect << PVBLK_SECTOR_SHIFT;

		front->u.ref = seg->gref;
		front->domid = be->domid;
		front->offset = offset;
		back->u.gmfn = xen_page_to_gfn(req->pages[i]);
		back->domid = DOMID_SELF;
		back->offset = offset;
		op->len = (seg->last_sect - seg->first_sect + 1) << PVBLK_SECTOR_SHIFT;
		op->flags = to_frontend ? GNTCOPY_dest_gref : GNTCOPY_source_gref;
		op->status = GNTST_okay;
		be->copy_req[be->nr_copy++] = req;
	}
}

/* Copy @len bytes of the frontend's grant @ref into @dst (one hypercall). */
static int pvblk_back_copy_in(struct pvblk_back_dev *be, grant_ref_t ref,
			      void *dst, unsigned int len)
{
	struct gnttab_copy op = {
		.source.u.ref = ref,
		.source.domid = be->domid,
		.dest.u.gmfn = virt_to_gfn(dst),
		.dest.domid = DOMID_SELF,
		.dest.offset = offset_in_page(dst),
		.len = len,
		.flags = GNTCOPY_source_gref,
	};

	gnttab_batch_copy(&op, 1);
	if (op.status != GNTST_okay) {
		pvblk_back_stat_inc(be, PVBLK_ST_COPY_ERRORS);
		pr_warn_ratelimited("%s: grant copy of ref %u failed: status %d\n",
				    be->dev->nodename, ref, op.status);
		return -EIO;
	}
	return 0;
}

/* Nonzero bytes of the audit page outside [@from, @to). */
static unsigned int pvblk_back_nonzero_outside(struct pvblk_back_dev *be,
					       unsigned int from, unsigned int to)
{
	const u8 *p = page_address(be->audit_page);
	unsigned int i, n = 0;

	for (i = 0; i < PAGE_SIZE; i++)
		if ((i < from || i >= to) && p[i])
			n++;
	return n;
}

/*
 * Test (module parameter audit): copy every whole page the request grants
 * and count the bytes it exposes beyond what the request needs: outside a
 * segment's sectors in a data page, after the descriptors in the last
 * indirect page. A careful frontend (zeroed indirect pages, bounce buffers
 * for an untrusted backend) exposes none.
 */
static void pvblk_back_audit(struct pvblk_back_dev *be, const struct pvblk_request *req,
			     struct pvblk_back_req *r)
{
	void *page = page_address(be->audit_page);
	unsigned int i, n = 0, used;

	if (req->operation == PVBLK_OP_INDIRECT) {
		for (i = 0; i < r->info.nr_indirect_pages; i++) {
			used = r->info.nr_segments * sizeof(*r->segs) - i * PAGE_SIZE;
			used = min_t(unsigned int, used, PAGE_SIZE);
			if (!pvblk_back_copy_in(be, req->u.indirect.indirect_grefs[i],
						page, PAGE_SIZE))
				n += pvblk_back_nonzero_outside(be, 0, used);
		}
		pvblk_back_stat_add(be, PVBLK_ST_EXPOSED_INDIRECT, n);
		n = 0;
	}
	for (i = 0; i < r->info.nr_segments; i++) {
		const struct pvblk_request_segment *seg = &r->segs[i];

		if (!pvblk_back_copy_in(be, seg->gref, page, PAGE_SIZE))
			n += pvblk_back_nonzero_outside(be,
							seg->first_sect << PVBLK_SECTOR_SHIFT,
							(seg->last_sect + 1) << PVBLK_SECTOR_SHIFT);
	}
	pvblk_back_stat_add(be, PVBLK_ST_EXPOSED_DATA, n);
	pvblk_back_stat_inc(be, PVBLK_ST_AUDITED);
}

/* ---- test hook: answer a read while still holding its grant mapped ---- */

static void pvblk_back_hook_unmap(struct pvblk_back_dev *be)
{
	struct pvblk_back_hooks *h = &be->hooks;
	struct gnttab_unmap_grant_ref unmap;

	if (!h->holding)
		return;
	gnttab_set_unmap_op(&unmap, (unsigned long)pfn_to_kaddr(page_to_pfn(h->page)),
			    GNTMAP_host_map, h->handle);
	if (gnttab_unmap_refs(&unmap, NULL, &h->page, 1) || unmap.status != GNTST_okay)
		pr_err("%s: test hook: unmapping ref %u failed\n", be->dev->nodename, h->ref);
	gnttab_free_pages(1, &h->page);
	h->holding = false;
	pr_info("%s: test hook: released grant %u\n", be->dev->nodename, h->ref);
}

static void pvblk_back_hook_unmap_work(struct work_struct *work)
{
	struct pvblk_back_dev *be = container_of(to_delayed_work(work), struct pvblk_back_dev,
						 hooks.unmap_work);

	pvblk_back_hook_unmap(be);
}

static void pvblk_back_io_done(struct pvblk_back_req *req);

/* Test hook delay_io: complete what is due, look again later for the rest. */
static void pvblk_back_hook_delay_work(struct work_struct *work)
{
	struct pvblk_back_dev *be = container_of(to_delayed_work(work), struct pvblk_back_dev,
						 hooks.delay_work);
	struct pvblk_back_req *r, *n;
	LIST_HEAD(due);
	bool more;

	spin_lock_irq(&be->done_lock);
	list_for_each_entry_safe(r, n, &be->hooks.delayed, node)
		if (time_after_eq(jiffies, r->due))
			list_move_tail(&r->node, &due);
	more = !list_empty(&be->hooks.delayed);
	if (more)
		schedule_delayed_work(&be->hooks.delay_work, HZ / 10);
	spin_unlock_irq(&be->done_lock);
	list_for_each_entry_safe(r, n, &due, node) {
		list_del(&r->node);
		pvblk_back_io_done(r);
	}
}

static void pvblk_back_hook_hold(struct pvblk_back_dev *be, grant_ref_t ref)
{
	struct pvblk_back_hooks *h = &be->hooks;
	struct gnttab_map_grant_ref map;
	unsigned int secs = h->hold_secs;

	h->hold_secs = 0;
	if (h->holding || gnttab_alloc_pages(1, &h->page))
		return;
	gnttab_set_map_op(&map, (unsigned long)pfn_to_kaddr(page_to_pfn(h->page)),
			  GNTMAP_host_map, ref, be->domid);
	if (gnttab_map_refs(&map, NULL, &h->page, 1) || map.status != GNTST_okay) {
		pr_err("%s: test hook: mapping ref %u failed\n", be->dev->nodename, ref);
		gnttab_free_pages(1, &h->page);
		return;
	}
	h->handle = map.handle;
	h->ref = ref;
	h->holding = true;
	h->held++;
	pr_warn("%s: test hook: answering a read while holding its grant %u for %u s\n",
		be->dev->nodename, ref, secs);
	schedule_delayed_work(&h->unmap_work, secs * HZ);
}

/* ---- the I/O engines ---- */

static void pvblk_back_io_done(struct pvblk_back_req *req)
{
	struct pvblk_back_dev *be = req->be;
	unsigned int delay = READ_ONCE(be->hooks.delay_secs);
	unsigned long flags;

	spin_lock_irqsave(&be->done_lock, flags);
	if (unlikely(delay) && !req->delayed) {
		/* test hook delay_io: a slow store */
		req->delayed = true;
		req->due = jiffies + delay * HZ;
		list_add_tail(&req->node, &be->hooks.delayed);
		schedule_delayed_work(&be->hooks.delay_work, delay * HZ);
		spin_unlock_irqrestore(&be->done_lock, flags);
		return;
	}
	req->delayed = false;
	list_add_tail(&req->node, &be->done);
	pvblk_back_res_add(PVBLK_RES_IO, -1);
	if (atomic_dec_and_test(&be->io_pending)) {
		wake_up(&be->io_wq);
		if (READ_ONCE(be->teardown_busy))
			queue_work(pvblk_back_wq, &be->work);
	}
	wake_up(&be->wq);
	spin_unlock_irqrestore(&be->done_lock, flags);
}

static void pvblk_back_bio_end(struct bio *bio)
{
	struct pvblk_back_req *req = bio->bi_private;

	if (bio->bi_status)
		req->error = blk_status_to_errno(bio->bi_status);
	bio_put(bio);
	if (atomic_dec_and_test(&req->bios))
		pvblk_back_io_done(req);
}

static void pvblk_back_iocb_done(struct kiocb *iocb, long ret)
{
	struct pvblk_back_req *req = container_of(iocb, struct pvblk_back_req, iocb);
	size_t bytes = (size_t)req->info.nr_sectors << PVBLK_SECTOR_SHIFT;

	if (ret < 0)
		req->error = ret;
	else if (ret != bytes)
		req->error = -EIO;	/* short: past the end of a file that shrank */
	pvblk_back_io_done(req);
}

static unsigned int pvblk_back_fill_bvec(struct pvblk_back_req *req)
{
	unsigned int i;

	for (i = 0; i < req->info.nr_segments; i++) {
		const struct pvblk_request_segment *seg = &req->segs[i];

		req->bvec[i].bv_page = req->pages[i];
		req->bvec[i].bv_offset = seg->first_sect << PVBLK_SECTOR_SHIFT;
		req->bvec[i].bv_len = (seg->last_sect - seg->first_sect + 1) << PVBLK_SECTOR_SHIFT;
	}
	return i;
}

/* Synchronous buffered file I/O; the file shrinking reads zeroes, as loop does. */
static int pvblk_back_buffered_rw(struct pvblk_back_dev *be,
				  struct pvblk_back_req *req, bool write)
{
	loff_t pos = (loff_t)req->info.sector_number << PVBLK_SECTOR_SHIFT;
	size_t bytes = (size_t)req->info.nr_sectors << PVBLK_SECTOR_SHIFT;
	struct iov_iter iter;
	ssize_t ret;

	iov_iter_bvec(&iter, write ? ITER_SOURCE : ITER_DEST, req->bvec,
		      pvblk_back_fill_bvec(req), bytes);
	while (iov_iter_count(&iter)) {
		if (write) {
			file_start_write(be->file);
			ret = vfs_iter_write(be->file, &iter, &pos, be->dsync ? RWF_DSYNC : 0);
			file_end_write(be->file);
		} else {
			ret = vfs_iter_read(be->file, &iter, &pos, 0);
		}
		if (ret < 0)
			return ret;
		if (!ret) {
			if (write)
				return -EIO;
			iov_iter_zero(iov_iter_count(&iter), &iter);
		}
	}
	return 0;
}

/* Start a read or write; its completion goes through pvblk_back_io_done(). */
static void pvblk_back_submit_rw(struct pvblk_back_dev *be,
				 struct pvblk_back_req *req, bool write, bool preflush)
{
	unsigned int nseg = req->info.nr_segments;
	struct iov_iter iter;
	struct bio *bio;
	unsigned int i;
	ssize_t ret;

	atomic_inc(&be->io_pending);
	pvblk_back_res_add(PVBLK_RES_IO, 1);
	req->error = 0;

	switch (be->engine) {
	case PVBLK_ENG_BDEV:
		bio = bio_alloc(be->bdev, nseg,
				(write ? REQ_OP_WRITE : REQ_OP_READ) | REQ_SYNC |
				(preflush ? REQ_PREFLUSH : 0), GFP_NOIO);
		bio->bi_iter.bi_sector = req->info.sector_number;
		bio->bi_end_io = pvblk_back_bio_end;
		bio->bi_private = req;
		for (i = 0; i < nseg; i++) {
			const struct pvblk_request_segment *seg = &req->segs[i];

			/* a bio of nseg vectors takes nseg pages */
			__bio_add_page(bio, req->pages[i],
				       (seg->last_sect - seg->first_sect + 1) << PVBLK_SECTOR_SHIFT,
				       seg->first_sect << PVBLK_SECTOR_SHIFT);
		}
		atomic_set(&req->bios, 1);
		submit_bio(bio);
		return;
	case PVBLK_ENG_DIRECT:
		iov_iter_bvec(&iter, write ? ITER_SOURCE : ITER_DEST, req->bvec,
			      pvblk_back_fill_bvec(req),
			      (size_t)req->info.nr_sectors << PVBLK_SECTOR_SHIFT);
		memset(&req->iocb, 0, sizeof(req->iocb));
		req->iocb.ki_filp = be->file;
		req->iocb.ki_pos = (loff_t)req->info.sector_number << PVBLK_SECTOR_SHIFT;
		req->iocb.ki_flags = IOCB_DIRECT | (write ? IOCB_WRITE : 0);
		req->iocb.ki_ioprio = IOPRIO_DEFAULT;
		req->iocb.ki_complete = pvblk_back_iocb_done;
		if (write)
			ret = call_write_iter(be->file, &req->iocb, &iter);
		else
			ret = call_read_iter(be->file, &req->iocb, &iter);
		if (ret != -EIOCBQUEUED)
			pvblk_back_iocb_done(&req->iocb, ret);
		return;
	case PVBLK_ENG_BUFFERED:
		req->error = pvblk_back_buffered_rw(be, req, write);
		pvblk_back_io_done(req);
		return;
	}
}

/* Flush the store's cache; an empty flush bio is asynchronous. */
static void pvblk_back_submit_flush(struct pvblk_back_dev *be,
				    struct pvblk_back_req *req)
{
	struct bio *bio;
	int err;

	if (be->engine == PVBLK_ENG_BDEV) {
		atomic_inc(&be->io_pending);
		pvblk_back_res_add(PVBLK_RES_IO, 1);
		req->error = 0;
		bio = bio_alloc(be->bdev, 0, REQ_OP_WRITE | REQ_PREFLUSH, GFP_NOIO);
		bio->bi_end_io = pvblk_back_bio_end;
		bio->bi_private = req;
		atomic_set(&req->bios, 1);
		submit_bio(bio);
		return;
	}
	/* a file: synchronous, after a write the same request carries */
	if (req->info.nr_segments) {
		err = pvblk_back_buffered_rw(be, req, true);
		if (err) {
			req->error = err;
			goto out;
		}
	}
	req->error = vfs_fsync(be->file, 1);
out:
	atomic_inc(&be->io_pending);
	pvblk_back_res_add(PVBLK_RES_IO, 1);
	pvblk_back_io_done(req);
}

static void pvblk_back_do_discard(struct pvblk_back_dev *be,
				  struct pvblk_back_req *req)
{
	u64 sector = req->info.sector_number, nr = req->info.nr_sectors;
	int err;

	if (!be->can_discard)
		err = -EOPNOTSUPP;
	else if (be->engine == PVBLK_ENG_BDEV)
		err = blkdev_issue_discard(be->bdev, sector, nr, GFP_NOIO);
	else
		err = vfs_fallocate(be->file, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				    sector << PVBLK_SECTOR_SHIFT, nr << PVBLK_SECTOR_SHIFT);
	req->error = err;
	atomic_inc(&be->io_pending);
	pvblk_back_res_add(PVBLK_RES_IO, 1);
	pvblk_back_io_done(req);
}

/* ---- taking requests off the ring ---- */

static void pvblk_back_reject(struct pvblk_back_dev *be, u64 id, int err)
{
	unsigned int code = -err;

	pvblk_back_stat_inc(be, PVBLK_ST_REJECTED);
	if (code && code < PVBLK_VERR_COUNT)
		pvblk_back_stat_inc(be, PVBLK_ST_REJ_BASE + code);
	pr_warn_ratelimited("%s: rejected request id %llu: %s\n",
			    be->dev->nodename, id, pvblk_validate_strerror(err));
}

enum pvblk_back_take {
	PVBLK_TAKEN,		/* in the batch */
	PVBLK_ANSWERED,		/* answered at once (rejected) */
	PVBLK_NO_ROOM,		/* no slot or pages now: leave it on the ring */
};

/*
 * Check the private copy @req of a ring request and put it in the batch,
 * with its write data queued for copying in. Nothing is read from the
 * shared ring here.
 */
static enum pvblk_back_take pvblk_back_take(struct pvblk_back_dev *be,
					    const struct pvblk_request *req)
{
	struct pvblk_back_req *r;
	struct pvblk_req_info info;
	unsigned int npages;
	u8 op = req->operation;
	int err;

	/* the response carries the operation done, as blkfront checks */
	if (op == PVBLK_OP_INDIRECT)
		op = req->u.indirect.indirect_op;

	if (list_empty(&be->free_reqs))
		return PVBLK_NO_ROOM;
	r = list_first_entry(&be->free_reqs, struct pvblk_back_req, node);

	err = pvblk_validate_request(req, &be->lim, &info);
	if (!err && req->operation == PVBLK_OP_INDIRECT) {
		/* the descriptors: copied once, then only the copy is used */
		if (info.nr_indirect_pages != 1 ||
		    pvblk_back_copy_in(be, req->u.indirect.indirect_grefs[0], r->segs,
				       info.nr_segments * sizeof(*r->segs))) {
			pvblk_back_respond(be, info.id, op, PVBLK_RSP_ERROR);
			return PVBLK_ANSWERED;
		}
		err = pvblk_validate_indirect_segs(r->segs, &be->lim, &info);
	} else if (!err && info.operation != PVBLK_OP_DISCARD) {
		memcpy(r->segs, req->u.rw.seg, info.nr_segments * sizeof(*r->segs));
	}
	if (!err && info.operation == PVBLK_OP_FLUSH_DISKCACHE &&
	    READ_ONCE(be->hooks.refuse_flush))
		err = -PVBLK_VERR_NOT_SUPPORTED;
	if (err) {
		pvblk_back_reject(be, info.id, err);
		pvblk_back_respond(be, info.id, op, pvblk_validate_rsp_status(err));
		return PVBLK_ANSWERED;
	}

	npages = info.operation == PVBLK_OP_DISCARD ? 0 : info.nr_segments;
	if (!pvblk_back_get_pages(be, r, npages)) {
		pvblk_back_stat_inc(be, PVBLK_ST_STARVED);
		return PVBLK_NO_ROOM;
	}
	list_del(&r->node);
	be->nr_busy++;
	r->info = info;
	r->op = op;
	r->copy_failed = false;
	r->error = 0;
	if (unlikely(READ_ONCE(audit)))
		pvblk_back_audit(be, req, r);

	if (req->operation == PVBLK_OP_INDIRECT)
		pvblk_back_stat_inc(be, PVBLK_ST_INDIRECT_REQ);
	if (info.operation == PVBLK_OP_DISCARD) {
		pvblk_back_stat_inc(be, PVBLK_ST_DISCARD_REQ);
		pvblk_back_stat_add(be, PVBLK_ST_DISCARD_SECT, info.nr_sectors);
	} else {
		pvblk_back_stat_add(be, PVBLK_ST_SEGMENTS, info.nr_segments);
		pvblk_back_stat_add(be, info.writes ? PVBLK_ST_WR_SECT : PVBLK_ST_RD_SECT,
				    info.nr_sectors);
	}
	switch (info.operation) {
	case PVBLK_OP_READ:
		pvblk_back_stat_inc(be, PVBLK_ST_RD_REQ);
		break;
	case PVBLK_OP_WRITE:
		pvblk_back_stat_inc(be, PVBLK_ST_WR_REQ);
		pvblk_back_copy_data(be, r, false);
		break;
	case PVBLK_OP_FLUSH_DISKCACHE:
		pvblk_back_stat_inc(be, PVBLK_ST_FLUSH_REQ);
		pvblk_back_copy_data(be, r, false);
		break;
	}
	list_add_tail(&r->node, &be->batch);
	return PVBLK_TAKEN;
}

/* Copy the batch's write data in, then start its I/O, in ring order. */
static void pvblk_back_run_batch(struct pvblk_back_dev *be)
{
	struct pvblk_back_req *r, *n;
	struct blk_plug plug;

	if (list_empty(&be->batch))
		return;
	pvblk_back_copy_flush(be);
	pvblk_back_stat_inc(be, PVBLK_ST_BATCHES);
	if (be->nr_busy > atomic64_read(&be->stats[PVBLK_ST_MAX_INFLIGHT]))
		atomic64_set(&be->stats[PVBLK_ST_MAX_INFLIGHT], be->nr_busy);

	blk_start_plug(&plug);
	list_for_each_entry_safe(r, n, &be->batch, node) {
		list_del(&r->node);
		if (r->copy_failed) {
			/* as if the I/O failed: answered with the others */
			r->error = -EIO;
			atomic_inc(&be->io_pending);
			pvblk_back_res_add(PVBLK_RES_IO, 1);
			pvblk_back_io_done(r);
			continue;
		}
		switch (r->info.operation) {
		case PVBLK_OP_READ:
			pvblk_back_submit_rw(be, r, false, false);
			break;
		case PVBLK_OP_WRITE:
			pvblk_back_submit_rw(be, r, true, false);
			break;
		case PVBLK_OP_FLUSH_DISKCACHE:
			if (be->engine == PVBLK_ENG_BDEV && r->info.nr_segments)
				pvblk_back_submit_rw(be, r, true, true);
			else
				pvblk_back_submit_flush(be, r);
			break;
		case PVBLK_OP_DISCARD:
			pvblk_back_do_discard(be, r);
			break;
		}
	}
	blk_finish_plug(&plug);
}

/* Answer what the I/O finished: copy read data out (one batch), respond. */
static bool pvblk_back_finish(struct pvblk_back_dev *be)
{
	struct pvblk_back_req *r, *n;
	LIST_HEAD(done);
	int status;

	spin_lock_irq(&be->done_lock);
	list_splice_init(&be->done, &done);
	spin_unlock_irq(&be->done_lock);
	if (list_empty(&done))
		return false;

	list_for_each_entry(r, &done, node) {
		if (r->error || r->info.operation != PVBLK_OP_READ)
			continue;
		if (unlikely(READ_ONCE(be->hooks.hold_secs)))
			pvblk_back_hook_hold(be, r->segs[0].gref);
		pvblk_back_copy_data(be, r, true);
	}
	pvblk_back_copy_flush(be);

	list_for_each_entry_safe(r, n, &done, node) {
		list_del(&r->node);
		if (r->error == -EOPNOTSUPP) {
			status = PVBLK_RSP_EOPNOTSUPP;
		} else if (r->error || r->copy_failed) {
			status = PVBLK_RSP_ERROR;
			if (r->error) {
				pvblk_back_stat_inc(be, PVBLK_ST_IO_ERRORS);
				pr_warn_ratelimited("%s: request id %llu: I/O error %d\n",
						    be->dev->nodename, r->info.id, r->error);
			}
		} else {
			status = PVBLK_RSP_OKAY;
		}
		pvblk_back_respond(be, r->info.id, r->op, status);
		pvblk_back_put_req(be, r);
	}
	return true;
}

/*
 * Take what the ring holds, as far as slots and pages allow, and start it.
 * Return: >0 if requests were taken, 0 if none, -EPROTO if the frontend
 * broke the ring.
 */
static int pvblk_back_do_ring(struct pvblk_back_dev *be, bool *seen)
{
	struct pvblk_back_ring *ring = &be->ring;
	struct pvblk_request req;
	RING_IDX rc, rp;
	int taken = 0, more, err;
	bool finished;

	for (;;) {
		rc = ring->req_cons;
		rp = READ_ONCE(ring->sring->req_prod);
		virt_rmb();	/* the requests up to rp, after rp */

		/* upstream's rule: never more requests than a ring past our responses */
		err = pvblk_validate_ring_prod(rp, ring->rsp_prod_pvt, RING_SIZE(ring));
		if (err) {
			pvblk_back_stat_inc(be, PVBLK_ST_HOSTILE);
			pr_err("%s: frontend is hostile: %s (req_prod %u, responses %u); shutting the device down\n",
			       be->dev->nodename, pvblk_validate_strerror(err), rp,
			       ring->rsp_prod_pvt);
			return -EPROTO;
		}
		if (rc != rp)
			*seen = true;
		while (rc != rp && !RING_REQUEST_CONS_OVERFLOW(ring, rc)) {
			RING_COPY_REQUEST(ring, rc, &req);
			if (pvblk_back_take(be, &req) == PVBLK_NO_ROOM)
				break;
			ring->req_cons = ++rc;
			taken++;
			if (be->nr_copy > PVBLK_BACK_COPY_BATCH - PVBLK_BACK_MAX_SEGS)
				pvblk_back_run_batch(be);
		}
		pvblk_back_run_batch(be);
		finished = pvblk_back_finish(be);
		pvblk_back_push(be);
		if (kthread_should_stop())
			return taken;
		if (rc != rp) {
			/* out of room: go on if answers freed some, else a completion wakes us */
			if (finished)
				continue;
			return taken;
		}
		RING_FINAL_CHECK_FOR_REQUESTS(ring, more);
		if (!more)
			return taken;
	}
}

/* The store's size in sectors, as it is now. */
static u64 pvblk_back_store_sectors(struct pvblk_back_dev *be)
{
	if (be->bdev)
		return bdev_nr_sectors(be->bdev);
	return i_size_read(file_inode(be->file)) >> PVBLK_SECTOR_SHIFT;
}

static bool pvblk_back_thread_wake(struct pvblk_back_dev *be)
{
	return READ_ONCE(be->irq_pending) || !list_empty_careful(&be->done) ||
	       kthread_should_stop();
}

static int pvblk_back_thread(void *arg)
{
	struct pvblk_back_dev *be = arg;
	bool irq, seen;
	u64 sectors;
	int taken;

	while (!kthread_should_stop()) {
		wait_event_interruptible(be->wq, pvblk_back_thread_wake(be));
		if (kthread_should_stop())
			break;
		irq = xchg(&be->irq_pending, false);
		smp_mb();	/* clear the flag before looking at the ring */
		/* the fast path may hold the ring for a moment, never sleeping */
		while (test_and_set_bit_lock(0, &be->ring_busy))
			cpu_relax();

		/* a changed store size reaches the frontend through XenStore */
		sectors = pvblk_back_store_sectors(be);
		if (sectors != be->lim.nr_sectors) {
			be->lim.nr_sectors = sectors;
			WRITE_ONCE(be->resized, true);
			pvblk_back_stat_inc(be, PVBLK_ST_RESIZES);
			queue_work(pvblk_back_wq, &be->work);
		}

		if (pvblk_back_finish(be))
			pvblk_back_push(be);
		seen = false;
		taken = pvblk_back_do_ring(be, &seen);
		clear_bit_unlock(0, &be->ring_busy);
		if (taken < 0) {
			/* no EOI: the event channel stays masked */
			WRITE_ONCE(be->hostile, true);
			queue_work(pvblk_back_wq, &be->work);
			while (!kthread_should_stop()) {
				/* answer nothing more; let the I/O finish */
				wait_event_interruptible(be->wq, kthread_should_stop());
			}
			break;
		}
		/* spurious: an event with nothing on the ring (a storm is slowed down) */
		if (irq)
			xen_irq_lateeoi(be->irq, seen ? 0 : XEN_EOI_FLAG_SPURIOUS);
	}
	return 0;
}

/* ---- the memory fast path: tmpfs, served in the interrupt handler ---- */

/*
 * A store in tmpfs is memory: its page cache is all there is. A direct read
 * or write whose pages are all in the page cache and up to date is served
 * here, in the event handler: one grant copy between the frontend's pages
 * and the page cache pages, then the response. No thread wakes up, no data
 * goes through a buffer page. Anything else (a hole, an indirect request,
 * flush, discard, a request the validator refuses) is left on the ring for
 * the thread, which sees it in ring order.
 */
static void pvblk_back_fast_flush(struct pvblk_back_dev *be);

static bool pvblk_back_fast_one(struct pvblk_back_dev *be, const struct pvblk_request *req)
{
	struct address_space *mapping = be->file->f_mapping;
	struct pvblk_back_fast *fb = be->fast_batch;
	bool write = req->operation == PVBLK_OP_WRITE;
	unsigned int i, n = fb->nr_copy;
	struct pvblk_req_info info;
	loff_t pos;

	if (req->operation != PVBLK_OP_READ && !write)
		return false;
	if (pvblk_validate_request(req, &be->lim, &info))
		return false;	/* the thread rejects it and counts why */
	if (fb->nr_reqs == PVBLK_BACK_FAST_REQS ||
	    fb->nr_copy + 2 * info.nr_segments > PVBLK_BACK_FAST_OPS) {
		pvblk_back_fast_flush(be);
		n = 0;
	}
	pos = (loff_t)info.sector_number << PVBLK_SECTOR_SHIFT;
	for (i = 0; i < info.nr_segments; i++) {
		const struct pvblk_request_segment *seg = &req->u.rw.seg[i];
		unsigned int off = seg->first_sect << PVBLK_SECTOR_SHIFT;
		unsigned int len = (seg->last_sect - seg->first_sect + 1) << PVBLK_SECTOR_SHIFT;

		while (len) {
			unsigned int in_page = offset_in_page(pos);
			unsigned int chunk = min_t(unsigned int, len, PAGE_SIZE - in_page);
			struct gnttab_copy *op = &fb->copy[n];
			struct gnttab_copy_ptr *front = write ? &op->source : &op->dest;
			struct gnttab_copy_ptr *back = write ? &op->dest : &op->source;
			struct page *page = find_get_page(mapping, pos >> PAGE_SHIFT);

			if (!page)
				goto slow;
			fb->pages[n++] = page;
			if (!PageUptodate(page))
				goto slow;
			front->u.ref = seg->gref;
			front->domid = be->domid;
			front->offset = off;
			back->u.gmfn = xen_page_to_gfn(page);
			back->domid = DOMID_SELF;
			back->offset = in_page;
			op->len = chunk;
			op->flags = write ? GNTCOPY_source_gref : GNTCOPY_dest_gref;
			op->status = GNTST_okay;
			pos += chunk;
			off += chunk;
			len -= chunk;
		}
	}
	fb->req[fb->nr_reqs].info = info;
	fb->req[fb->nr_reqs].first = fb->nr_copy;
	fb->nr_reqs++;
	fb->nr_copy = n;
	return true;

slow:
	while (n > fb->nr_copy)
		put_page(fb->pages[--n]);
	return false;
}

/* Copy the fast batch (one hypercall) and answer its requests. */
static void pvblk_back_fast_flush(struct pvblk_back_dev *be)
{
	struct pvblk_back_fast *fb = be->fast_batch;
	unsigned int r, i, end;
	bool wrote = false;

	if (!fb->nr_reqs)
		return;
	gnttab_batch_copy(fb->copy, fb->nr_copy);
	for (r = 0; r < fb->nr_reqs; r++) {
		const struct pvblk_req_info *info = &fb->req[r].info;
		bool write = info->operation == PVBLK_OP_WRITE;
		int status = PVBLK_RSP_OKAY;

		end = r + 1 < fb->nr_reqs ? fb->req[r + 1].first : fb->nr_copy;
		for (i = fb->req[r].first; i < end; i++) {
			if (fb->copy[i].status != GNTST_okay) {
				if (status == PVBLK_RSP_OKAY)
					pvblk_back_stat_inc(be, PVBLK_ST_COPY_ERRORS);
				status = PVBLK_RSP_ERROR;
			} else if (write && !PageDirty(fb->pages[i])) {
				set_page_dirty(fb->pages[i]);
			}
			put_page(fb->pages[i]);
		}
		wrote |= write;
		pvblk_back_respond(be, info->id, info->operation, status);
		pvblk_back_stat_inc(be, write ? PVBLK_ST_WR_REQ : PVBLK_ST_RD_REQ);
		pvblk_back_stat_add(be, PVBLK_ST_SEGMENTS, info->nr_segments);
		pvblk_back_stat_add(be, write ? PVBLK_ST_WR_SECT : PVBLK_ST_RD_SECT,
				    info->nr_sectors);
	}
	pvblk_back_stat_add(be, PVBLK_ST_FAST, fb->nr_reqs);
	fb->nr_reqs = 0;
	fb->nr_copy = 0;
	/* a write changes the file: its mtime, at most once a second, in process context */
	if (wrote && time_after(jiffies, READ_ONCE(be->touched) + HZ)) {
		WRITE_ONCE(be->touched, jiffies);
		schedule_work(&be->touch_work);
	}
}

static void pvblk_back_touch_work(struct work_struct *work)
{
	struct pvblk_back_dev *be = container_of(work, struct pvblk_back_dev, touch_work);

	mutex_lock(&be->lock);
	if (be->file)
		file_update_time(be->file);
	mutex_unlock(&be->lock);
}

/*
 * Serve what the fast path can; called in the interrupt handler with the
 * ring. Return: true if the ring is empty and answered (the event is done
 * with), false if the thread has to go on.
 */
static bool pvblk_back_fast_ring(struct pvblk_back_dev *be, bool *seen)
{
	struct pvblk_back_ring *ring = &be->ring;
	struct pvblk_request req;
	RING_IDX rc, rp;
	int more;

	/* the store changed size: the thread tells the frontend first */
	if (pvblk_back_store_sectors(be) != be->lim.nr_sectors)
		return false;
	for (;;) {
		rc = ring->req_cons;
		rp = READ_ONCE(ring->sring->req_prod);
		virt_rmb();	/* the requests up to rp, after rp */
		if (pvblk_validate_ring_prod(rp, ring->rsp_prod_pvt, RING_SIZE(ring)))
			return false;	/* the thread reports the hostile frontend */
		if (rc != rp)
			*seen = true;
		while (rc != rp && !RING_REQUEST_CONS_OVERFLOW(ring, rc)) {
			RING_COPY_REQUEST(ring, rc, &req);
			if (!pvblk_back_fast_one(be, &req))
				break;
			ring->req_cons = ++rc;
		}
		pvblk_back_fast_flush(be);
		pvblk_back_push(be);
		if (rc != rp)
			return false;
		RING_FINAL_CHECK_FOR_REQUESTS(ring, more);
		if (!more)
			return true;
	}
}

static irqreturn_t pvblk_back_interrupt(int irq, void *dev_id)
{
	struct pvblk_back_dev *be = dev_id;
	bool seen = false, done;

	if (READ_ONCE(be->fast) && READ_ONCE(fast_path) && !READ_ONCE(audit) &&
	    !READ_ONCE(be->hooks.hold_secs) &&
	    !READ_ONCE(be->hooks.delay_secs) && !test_and_set_bit_lock(0, &be->ring_busy)) {
		done = pvblk_back_fast_ring(be, &seen);
		clear_bit_unlock(0, &be->ring_busy);
		if (done) {
			/* spurious: an event with nothing on the ring (a storm is slowed down) */
			xen_irq_lateeoi(irq, seen ? 0 : XEN_EOI_FLAG_SPURIOUS);
			return IRQ_HANDLED;
		}
	}
	WRITE_ONCE(be->irq_pending, true);
	wake_up(&be->wq);
	return IRQ_HANDLED;
}

/* The toolstack's `online` flag (xenbus_dev_is_online, which needs XEN_BACKEND). */
static bool pvblk_back_online(struct xenbus_device *dev)
{
	return xenbus_read_unsigned(dev->nodename, "online", 0);
}

/* ---- the backing store ---- */

/* Open the block device @devt: by params if that names it, else /dev/<name>. */
static struct file *pvblk_back_open_devt(struct pvblk_back_dev *be, dev_t devt,
					 const char *params, int flags)
{
	struct block_device *bdev;
	struct file *file;
	char *path;

	if (params && params[0] == '/') {
		file = filp_open(params, flags, 0);
		if (!IS_ERR(file)) {
			if (S_ISBLK(file_inode(file)->i_mode) &&
			    file_inode(file)->i_rdev == devt)
				return file;
			filp_close(file, NULL);
		}
	}

	bdev = blkdev_get_by_dev(devt, FMODE_READ, NULL);
	if (IS_ERR(bdev))
		return ERR_CAST(bdev);
	path = kasprintf(GFP_KERNEL, "/dev/%pg", bdev);
	blkdev_put(bdev, FMODE_READ);
	if (!path)
		return ERR_PTR(-ENOMEM);
	file = filp_open(path, flags, 0);
	kfree(path);
	if (IS_ERR(file))
		return file;
	if (!S_ISBLK(file_inode(file)->i_mode) ||
	    file_inode(file)->i_rdev != devt) {
		filp_close(file, NULL);
		return ERR_PTR(-ENODEV);
	}
	return file;
}

/* Close the store: in the state work or remove, never on xenwatch's behalf. */
static void pvblk_back_close_store(struct pvblk_back_dev *be)
{
	if (!be->file)
		return;
	WRITE_ONCE(be->fast, false);
	filp_close(be->file, NULL);
	be->file = NULL;
	be->bdev = NULL;
	be->devt = 0;
	pvblk_back_res_add(PVBLK_RES_STORES, -1);
	/* a kthread's fput is deferred: finish it, the toolstack may reuse the store */
	if (current->flags & PF_KTHREAD)
		flush_delayed_fput();
}

/* Open a regular file: O_DIRECT where its filesystem can, else buffered. */
static struct file *pvblk_back_open_file(struct pvblk_back_dev *be, const char *path,
					 int flags)
{
	struct file *file = filp_open(path, flags | O_DIRECT, 0);
	struct super_block *sb;

	if (!IS_ERR(file)) {
		sb = file_inode(file)->i_sb;
		/* 512-byte direct I/O needs a device with 512-byte blocks */
		if (S_ISREG(file_inode(file)->i_mode) &&
		    (!sb->s_bdev || bdev_logical_block_size(sb->s_bdev) <= PVBLK_SECTOR_SIZE)) {
			be->engine = PVBLK_ENG_DIRECT;
			return file;
		}
		filp_close(file, NULL);
	} else if (PTR_ERR(file) != -EINVAL) {
		return file;
	}
	file = filp_open(path, flags, 0);
	if (!IS_ERR(file)) {
		be->engine = PVBLK_ENG_BUFFERED;
		/* tmpfs has no writeback: its page cache is the store */
		be->dsync = mapping_can_writeback(file->f_mapping);
	}
	return file;
}

/*
 * Open the backing store named in the backend directory: the block device
 * `physical-device` (major:minor in hex, from a hotplug script) if present,
 * else the file or block device at the absolute path `params`; read-write
 * unless `mode` has no 'w'. When the toolstack runs a hotplug script (libxl
 * writes `script`), wait for its physical-device: the script insists on
 * finding the backend still in InitWait. Caller holds be->lock.
 *
 * Return: 0 when open, -EAGAIN to wait for physical-device, else an error.
 */
static int pvblk_back_open_store(struct pvblk_back_dev *be)
{
	const char *node = be->dev->nodename;
	unsigned int major, minor;
	char *mode, *params;
	struct inode *inode;
	struct file *file;
	dev_t devt = 0;
	bool readonly;
	int flags;
	int err;

	if (be->file)
		return 0;

	mode = xenbus_read(XBT_NIL, node, PVBLK_XS_MODE, NULL);
	if (IS_ERR(mode)) {
		pr_warn("%s: no %s\n", node, PVBLK_XS_MODE);
		return PTR_ERR(mode);
	}
	readonly = !strchr(mode, 'w');
	kfree(mode);
	flags = O_LARGEFILE | (readonly ? O_RDONLY : O_RDWR);

	params = xenbus_read(XBT_NIL, node, PVBLK_XS_PARAMS, NULL);
	if (IS_ERR(params))
		params = NULL;

	be->dsync = false;
	err = xenbus_scanf(XBT_NIL, node, PVBLK_XS_PHYSICAL_DEVICE, "%x:%x",
			   &major, &minor);
	if (err == 2 && major < (1U << (32 - MINORBITS)) && minor <= MINORMASK) {
		devt = MKDEV(major, minor);
		file = pvblk_back_open_devt(be, devt, params, flags);
	} else if (!XENBUS_EXIST_ERR(err)) {
		file = ERR_PTR(-EINVAL);	/* a malformed physical-device */
	} else if (xenbus_exists(XBT_NIL, node, "script")) {
		kfree(params);
		return -EAGAIN;	/* the physdev watch calls again */
	} else if (params && params[0] == '/') {
		file = pvblk_back_open_file(be, params, flags);
	} else {
		file = ERR_PTR(-EINVAL);	/* no absolute path */
	}
	if (IS_ERR(file)) {
		err = PTR_ERR(file);
		if (devt)
			pr_warn("%s: cannot open block device %u:%u (physical-device): %d\n",
				node, major, minor, err);
		else
			pr_warn("%s: cannot open params \"%s\": %d\n", node,
				params ?: "", err);
		goto out;
	}

	inode = file_inode(file);
	be->bdev = NULL;
	be->can_discard = false;
	be->fast = false;
	if (S_ISBLK(inode->i_mode)) {
		be->bdev = I_BDEV(file->f_mapping->host);
		be->engine = PVBLK_ENG_BDEV;
		be->lim.nr_sectors = bdev_nr_sectors(be->bdev);
		be->phys_sector_size = bdev_physical_block_size(be->bdev);
		be->can_discard = bdev_max_discard_sectors(be->bdev) > 0;
		be->discard_granularity = max_t(unsigned int, bdev_discard_granularity(be->bdev),
						PVBLK_SECTOR_SIZE);
	} else if (S_ISREG(inode->i_mode)) {
		be->lim.nr_sectors = i_size_read(inode) >> PVBLK_SECTOR_SHIFT;
		be->phys_sector_size = PAGE_SIZE;	/* the page cache's unit */
		be->fast = be->engine == PVBLK_ENG_BUFFERED &&
			   inode->i_sb->s_magic == TMPFS_MAGIC;
		be->can_discard = !!file->f_op->fallocate;
		be->discard_granularity = inode->i_sb->s_blocksize;
	} else {
		pr_warn("%s: \"%s\" is not a regular file or a block device\n",
			node, params ?: "");
		filp_close(file, NULL);
		err = -EINVAL;
		goto out;
	}
	if (be->phys_sector_size < PVBLK_SECTOR_SIZE)
		be->phys_sector_size = PVBLK_SECTOR_SIZE;
	if (readonly)
		be->can_discard = false;

	be->file = file;
	be->devt = devt;
	pvblk_back_res_add(PVBLK_RES_STORES, 1);
	be->lim.max_indirect_segs = min_t(unsigned int, READ_ONCE(max_indirect_segments),
					  PVBLK_BACK_MAX_SEGS);
	if (be->lim.max_indirect_segs <= PVBLK_MAX_SEGMENTS_PER_REQUEST)
		be->lim.max_indirect_segs = 0;
	be->lim.flags = PVBLK_VDEV_FLUSH | (readonly ? PVBLK_VDEV_READONLY : 0) |
			(be->can_discard ? PVBLK_VDEV_DISCARD : 0);
	pr_info("%s: serving %s%s (%s%s), %llu sectors, %s\n", node,
		devt ? "physical-device " : "", params ?: "",
		pvblk_back_engine_names[be->engine], be->dsync ? ", write-through" : "",
		be->lim.nr_sectors, readonly ? "read-only" : "read-write");
	err = 0;
out:
	kfree(params);
	return err;
}

/* ---- XenStore ---- */

static int pvblk_back_write_features(struct pvblk_back_dev *be,
				     struct xenbus_transaction xbt)
{
	const char *node = be->dev->nodename;
	unsigned int segs = min_t(unsigned int, READ_ONCE(max_indirect_segments),
				  PVBLK_BACK_MAX_SEGS);
	int err;

	if (segs <= PVBLK_MAX_SEGMENTS_PER_REQUEST)
		segs = 0;
	if (be->file)
		segs = be->lim.max_indirect_segs;	/* what the validator enforces */
	err = xenbus_printf(xbt, node, PVBLK_XS_FEATURE_FLUSH_CACHE, "%u", 1);
	if (!err)
		err = xenbus_printf(xbt, node, PVBLK_XS_FEATURE_BARRIER, "%u", 0);
	if (!err)
		err = xenbus_printf(xbt, node, PVBLK_XS_FEATURE_PERSISTENT, "%u", 0);
	if (!err)
		err = xenbus_printf(xbt, node, PVBLK_XS_FEATURE_DISCARD, "%u",
				    be->can_discard);
	if (!err && be->can_discard)
		err = xenbus_printf(xbt, node, PVBLK_XS_DISCARD_GRANULARITY, "%u",
				    be->discard_granularity);
	if (!err && be->can_discard)
		err = xenbus_printf(xbt, node, PVBLK_XS_DISCARD_ALIGNMENT, "%u", 0);
	if (!err && be->can_discard)
		err = xenbus_printf(xbt, node, PVBLK_XS_DISCARD_SECURE, "%u", 0);
	if (!err)
		err = xenbus_printf(xbt, node, PVBLK_XS_FEATURE_MAX_INDIRECT_SEGMENTS,
				    "%u", segs);
	if (!err)
		err = xenbus_printf(xbt, node, PVBLK_XS_MAX_RING_PAGE_ORDER, "%u",
				    max_ring_page_order);
	return err;
}

static int pvblk_back_write_info(struct pvblk_back_dev *be,
				 struct xenbus_transaction xbt)
{
	const char *node = be->dev->nodename;
	unsigned int info = 0;
	int err;

	if (be->lim.flags & PVBLK_VDEV_READONLY)
		info |= PVBLK_VDISK_READONLY;
	err = xenbus_printf(xbt, node, PVBLK_XS_SECTORS, "%llu",
			    be->lim.nr_sectors);
	if (!err)
		err = xenbus_printf(xbt, node, PVBLK_XS_INFO, "%u", info);
	if (!err)
		err = xenbus_printf(xbt, node, PVBLK_XS_SECTOR_SIZE, "%u",
				    PVBLK_SECTOR_SIZE);
	if (!err)
		err = xenbus_printf(xbt, node, PVBLK_XS_PHYSICAL_SECTOR_SIZE,
				    "%u", be->phys_sector_size);
	return err;
}

/* Write the features and, if the store is open, the disk's details. */
static int pvblk_back_publish(struct pvblk_back_dev *be)
{
	struct xenbus_transaction xbt;
	int err;

again:
	err = xenbus_transaction_start(&xbt);
	if (err)
		return err;
	err = pvblk_back_write_features(be, xbt);
	if (!err && be->file)
		err = pvblk_back_write_info(be, xbt);
	if (err) {
		xenbus_transaction_end(xbt, 1);
		return err;
	}
	err = xenbus_transaction_end(xbt, 0);
	if (err == -EAGAIN)
		goto again;
	return err;
}

/*
 * The store changed size: write sectors and, in the same transaction, the
 * state node again, so that a connected frontend reads the new size (as
 * upstream xen_vbd_resize does).
 */
static void pvblk_back_publish_resize(struct pvblk_back_dev *be)
{
	struct xenbus_device *dev = be->dev;
	struct xenbus_transaction xbt;
	u64 sectors = be->lim.nr_sectors;
	int err;

again:
	err = xenbus_transaction_start(&xbt);
	if (err)
		goto fail;
	err = xenbus_printf(xbt, dev->nodename, PVBLK_XS_SECTORS, "%llu", sectors);
	if (!err)
		err = xenbus_printf(xbt, dev->nodename, "state", "%d", dev->state);
	if (err) {
		xenbus_transaction_end(xbt, 1);
		goto fail;
	}
	err = xenbus_transaction_end(xbt, 0);
	if (err == -EAGAIN)
		goto again;
	if (err)
		goto fail;
	pr_info("%s: store resized: %llu sectors\n", dev->nodename, sectors);
	return;
fail:
	pr_warn("%s: cannot write the new size: %d\n", dev->nodename, err);
}

/* ---- connecting and disconnecting ---- */

static void pvblk_back_free_reqs(struct pvblk_back_dev *be)
{
	unsigned int i, j;

	for (i = 0; be->reqs && i < be->nr_reqs; i++) {
		/* finished but never answered (the thread stopped): back to the pool */
		for (j = 0; be->reqs[i].pages && j < PVBLK_BACK_MAX_SEGS; j++) {
			if (!be->reqs[i].pages[j])
				continue;
			be->pool[be->pool_free++] = be->reqs[i].pages[j];
			be->reqs[i].pages[j] = NULL;
		}
		kfree(be->reqs[i].segs);
		kfree(be->reqs[i].pages);
		kfree(be->reqs[i].bvec);
	}
	kfree(be->reqs);
	if (be->reqs)
		pvblk_back_res_add(PVBLK_RES_REQS, -be->nr_reqs);
	be->reqs = NULL;
	be->nr_reqs = 0;
	be->nr_busy = 0;
	INIT_LIST_HEAD(&be->free_reqs);
	INIT_LIST_HEAD(&be->batch);
	INIT_LIST_HEAD(&be->done);
	pvblk_back_free_pool(be);
	kfree(be->pool);
	be->pool = NULL;
}

/* One slot per ring entry: the frontend can have no more requests out. */
static int pvblk_back_alloc_reqs(struct pvblk_back_dev *be, unsigned int n)
{
	unsigned int i;

	be->reqs = kcalloc(n, sizeof(*be->reqs), GFP_KERNEL);
	if (!be->reqs)
		return -ENOMEM;
	be->nr_reqs = n;
	pvblk_back_res_add(PVBLK_RES_REQS, n);
	for (i = 0; i < n; i++) {
		struct pvblk_back_req *r = &be->reqs[i];

		r->be = be;
		/* one kmalloc object: the descriptors never cross a page */
		r->segs = kcalloc(PVBLK_BACK_MAX_SEGS, sizeof(*r->segs), GFP_KERNEL);
		r->pages = kcalloc(PVBLK_BACK_MAX_SEGS, sizeof(*r->pages), GFP_KERNEL);
		r->bvec = kcalloc(PVBLK_BACK_MAX_SEGS, sizeof(*r->bvec), GFP_KERNEL);
		if (!r->segs || !r->pages || !r->bvec)
			return -ENOMEM;
		list_add_tail(&r->node, &be->free_reqs);
	}
	be->pool_max = max(READ_ONCE(max_buffer_pages), 2U * PVBLK_BACK_MAX_SEGS);
	be->pool = kcalloc(be->pool_max, sizeof(*be->pool), GFP_KERNEL);
	return be->pool ? 0 : -ENOMEM;
}

/*
 * Stop serving the ring and let go of it. With I/O still in flight this
 * returns -EBUSY, the ring stays mapped (the I/O's pages and slots with it),
 * and the last completion queues the state work again. Caller holds
 * be->lock; never called on xenwatch.
 */
static int pvblk_back_disconnect(struct pvblk_back_dev *be)
{
	if (be->thread) {
		kthread_stop(be->thread);
		be->thread = NULL;
		pvblk_back_res_add(PVBLK_RES_THREADS, -1);
	}
	WRITE_ONCE(be->teardown_busy, true);
	if (atomic_read(&be->io_pending))
		return -EBUSY;
	WRITE_ONCE(be->teardown_busy, false);
	/* the completions are out of done_lock: nothing touches the slots */
	spin_lock_irq(&be->done_lock);
	spin_unlock_irq(&be->done_lock);

	if (be->irq) {
		unbind_from_irqhandler(be->irq, be);
		be->irq = 0;
		pvblk_back_res_add(PVBLK_RES_IRQS, -1);
	}
	if (be->ring_addr) {
		xenbus_unmap_ring_vfree(be->dev, be->ring_addr);
		be->ring_addr = NULL;
		be->ring.sring = NULL;
		pvblk_back_res_add(PVBLK_RES_RINGS, -1);
	}
	pvblk_back_free_reqs(be);
	WRITE_ONCE(be->irq_pending, false);
	WRITE_ONCE(be->hostile, false);
	return 0;
}

/* Map the ring the frontend describes and bind its event channel. */
static int pvblk_back_map_ring(struct pvblk_back_dev *be)
{
	struct xenbus_device *dev = be->dev;
	const char *fe = dev->otherend;
	grant_ref_t refs[XENBUS_MAX_RING_GRANTS];
	unsigned int order, queues, i;
	struct pvblk_sring *sring;
	RING_IDX req_prod, rsp_prod;
	bool multi;
	char name[sizeof(PVBLK_XS_RING_REF) + 12];
	char *protocol;
	int err;

	protocol = xenbus_read(XBT_NIL, fe, PVBLK_XS_PROTOCOL, NULL);
	if (!IS_ERR(protocol)) {
		err = strcmp(protocol, PVBLK_PROTOCOL_X86_64) ? -EPROTONOSUPPORT : 0;
		if (err)
			xenbus_dev_fatal(dev, err, "unsupported frontend protocol %.32s",
					 protocol);
		kfree(protocol);
		if (err)
			return err;
	}

	queues = xenbus_read_unsigned(fe, PVBLK_XS_MULTI_QUEUE_NUM_QUEUES, 1);
	if (queues != 1) {
		xenbus_dev_fatal(dev, -EINVAL, "frontend asks for %u queues; only 1 is offered",
				 queues);
		return -EINVAL;
	}

	/* ring-page-order given: ring-ref%u; not given: one page, ring-ref */
	multi = xenbus_scanf(XBT_NIL, fe, PVBLK_XS_RING_PAGE_ORDER, "%u",
			     &order) == 1;
	if (!multi)
		order = 0;
	if (order > max_ring_page_order) {
		xenbus_dev_fatal(dev, -EINVAL, "ring-page-order %u is above the %u offered",
				 order, max_ring_page_order);
		return -EINVAL;
	}
	for (i = 0; i < (1U << order); i++) {
		err = -ENOENT;
		if (multi) {
			snprintf(name, sizeof(name), PVBLK_XS_RING_REF_FMT, i);
			err = xenbus_scanf(XBT_NIL, fe, name, "%u", &refs[i]);
		}
		if (err != 1 && !order)
			err = xenbus_scanf(XBT_NIL, fe, PVBLK_XS_RING_REF, "%u",
					   &refs[i]);
		if (err != 1)
			break;
	}
	if (err != 1) {
		xenbus_dev_fatal(dev, -EINVAL, "reading %s/ring-ref*", fe);
		return -EINVAL;
	}
	err = xenbus_scanf(XBT_NIL, fe, PVBLK_XS_EVENT_CHANNEL, "%u", &be->evtchn);
	if (err != 1) {
		xenbus_dev_fatal(dev, -EINVAL, "reading %s/%s", fe,
				 PVBLK_XS_EVENT_CHANNEL);
		return -EINVAL;
	}

	be->nr_ring_pages = 1U << order;
	err = xenbus_map_ring_valloc(dev, refs, be->nr_ring_pages, &be->ring_addr);
	if (err) {
		be->ring_addr = NULL;
		return err;	/* xenbus reported it */
	}
	pvblk_back_res_add(PVBLK_RES_RINGS, 1);
	sring = be->ring_addr;
	rsp_prod = READ_ONCE(sring->rsp_prod);
	req_prod = READ_ONCE(sring->req_prod);
	BACK_RING_ATTACH(&be->ring, sring, rsp_prod,
			 XEN_PAGE_SIZE * be->nr_ring_pages);
	err = pvblk_validate_ring_prod(req_prod, rsp_prod, RING_SIZE(&be->ring));
	if (err) {
		pvblk_back_stat_inc(be, PVBLK_ST_HOSTILE);
		pr_err("%s: frontend is hostile: %s (req_prod %u, rsp_prod %u at connect); shutting the device down\n",
		       dev->nodename, pvblk_validate_strerror(err), req_prod, rsp_prod);
		xenbus_dev_fatal(dev, -EPROTO, "bogus ring indexes at connect");
		return -EPROTO;
	}

	err = pvblk_back_alloc_reqs(be, RING_SIZE(&be->ring));
	if (err) {
		xenbus_dev_fatal(dev, err, "allocating %u request slots", RING_SIZE(&be->ring));
		return err;
	}

	err = bind_interdomain_evtchn_to_irqhandler_lateeoi(dev, be->evtchn,
							    pvblk_back_interrupt,
							    0, "pvblk-back", be);
	if (err < 0) {
		xenbus_dev_fatal(dev, err, "binding event channel %u", be->evtchn);
		return err;
	}
	be->irq = err;
	pvblk_back_res_add(PVBLK_RES_IRQS, 1);
	return 0;
}

/*
 * Connect if both the ring and the store are ready: start the thread, tell
 * the frontend about the disk, switch to Connected. Caller holds be->lock.
 */
static void pvblk_back_try_connect(struct pvblk_back_dev *be)
{
	struct xenbus_device *dev = be->dev;
	const char *devid = strrchr(dev->nodename, '/') + 1;
	int err;

	if (!be->irq || be->thread || dev->state != PVBLK_XB_INITWAIT)
		return;
	err = pvblk_back_open_store(be);
	if (err == -EAGAIN)
		return;	/* connect when the hotplug script is done */
	if (err) {
		xenbus_dev_fatal(dev, err, "opening the backing store");
		return;
	}

	err = pvblk_back_publish(be);
	if (err) {
		xenbus_dev_fatal(dev, err, "writing the disk's details");
		return;
	}
	/*
	 * Connected before the thread runs: a Closing the state work writes for
	 * a hostile frontend comes after it. Requests already signalled wait.
	 */
	xenbus_switch_state(dev, PVBLK_XB_CONNECTED);
	be->thread = kthread_run(pvblk_back_thread, be, "pvblk.%u.%s",
				 be->domid, devid);
	if (IS_ERR(be->thread)) {
		err = PTR_ERR(be->thread);
		be->thread = NULL;
		xenbus_dev_fatal(dev, err, "starting the thread");
		return;
	}
	pvblk_back_res_add(PVBLK_RES_THREADS, 1);
	pr_info("%s: connected to %s: ring of %u page(s), %u slots, event channel %u\n",
		dev->nodename, dev->otherend, be->nr_ring_pages, be->nr_reqs, be->evtchn);
}

/* Disconnect and close the store; false while I/O is in flight. */
static bool pvblk_back_close(struct pvblk_back_dev *be)
{
	if (pvblk_back_disconnect(be))
		return false;
	pvblk_back_close_store(be);
	return true;
}

/*
 * The state machine, on pvblk_back_wq. It compares what the frontend and
 * the toolstack say now with where the device is, and moves it on. Any
 * XenStore event queues it; so do the thread (hostile frontend, resize) and
 * the last I/O completion of a busy teardown. The device is not unregistered
 * from here: the toolstack removes its nodes once it is Closed, and xenbus
 * then calls remove() (libxl and pvk_blk_detach both do).
 */
static void pvblk_back_step(struct pvblk_back_dev *be)
{
	struct xenbus_device *dev = be->dev;
	unsigned int major, minor;
	enum xenbus_state fe;
	bool online;
	int err;

	if (READ_ONCE(be->hostile)) {
		/* the thread has stopped answering; close, the frontend follows */
		if (!pvblk_back_disconnect(be))
			WRITE_ONCE(be->hostile, false);
		xenbus_switch_state(dev, PVBLK_XB_CLOSING);
	}
	if (READ_ONCE(be->resized) && be->thread) {
		WRITE_ONCE(be->resized, false);
		pvblk_back_publish_resize(be);
	}

	online = pvblk_back_online(dev);
	/* the hotplug script is done: open its device and connect */
	if (!be->file && online &&
	    xenbus_scanf(XBT_NIL, dev->nodename, PVBLK_XS_PHYSICAL_DEVICE, "%x:%x",
			 &major, &minor) == 2 && !pvblk_back_open_store(be)) {
		if (pvblk_back_publish(be))
			pr_warn("%s: cannot write the disk's details\n", dev->nodename);
		pvblk_back_try_connect(be);
	}

	fe = xenbus_read_driver_state(dev->otherend);
	switch ((int)fe) {
	case PVBLK_XB_INITIALISING:
		if (!online || (dev->state == PVBLK_XB_INITWAIT && !be->ring_addr))
			break;
		/* the frontend starts over: after Closed, or it went by too fast */
		pr_info("%s: frontend initialising: prepare for reconnect\n", dev->nodename);
		if (pvblk_back_disconnect(be))
			break;	/* again when the I/O is done */
		if (!pvblk_back_open_store(be) && pvblk_back_publish(be))
			pr_warn("%s: cannot write the disk's details\n", dev->nodename);
		xenbus_switch_state(dev, PVBLK_XB_INITWAIT);
		break;

	case PVBLK_XB_INITIALISED:
	case PVBLK_XB_CONNECTED:
		/* only from InitWait: after Closing, the frontend starts over */
		if (dev->state != PVBLK_XB_INITWAIT || be->thread)
			break;
		if (!be->ring_addr) {
			if (pvblk_back_disconnect(be))
				break;
			err = pvblk_back_map_ring(be);
			if (err) {
				pvblk_back_disconnect(be);
				break;
			}
		}
		pvblk_back_try_connect(be);
		break;

	case PVBLK_XB_CLOSING:
		xenbus_switch_state(dev, PVBLK_XB_CLOSING);
		break;

	case PVBLK_XB_CLOSED:
		/* Closed only once the I/O is done and the store is closed */
		if (pvblk_back_close(be))
			xenbus_switch_state(dev, PVBLK_XB_CLOSED);
		break;

	case PVBLK_XB_UNKNOWN:
		/*
		 * No state node: the frontend is gone if its directory is, else
		 * it is not written yet (a toolstack need not write it first).
		 */
		if (!xenbus_exists(XBT_NIL, dev->otherend, ""))
			pvblk_back_close(be);
		break;

	default:
		xenbus_dev_fatal(dev, -EINVAL, "saw state %d at frontend", fe);
		break;
	}

	/* taken offline before a frontend connected: nobody else closes it */
	if (!online && !be->ring_addr && dev->state != PVBLK_XB_CLOSED &&
	    xenbus_exists(XBT_NIL, dev->nodename, "")) {
		pvblk_back_close_store(be);
		/* the toolstack may have written the state node itself */
		dev->state = xenbus_read_driver_state(dev->nodename);
		xenbus_switch_state(dev, PVBLK_XB_CLOSED);
	}
}

static void pvblk_back_free(struct pvblk_back_dev *be);

/* After remove() with I/O in flight: finish the teardown when it is done. */
static void pvblk_back_reap(struct pvblk_back_dev *be)
{
	struct xenbus_device *dev = be->dev;

	if (atomic_read(&be->io_pending))
		return;	/* the last completion queues us again */
	cancel_delayed_work_sync(&be->hooks.delay_work);
	mutex_lock(&be->lock);
	pvblk_back_close(be);
	mutex_unlock(&be->lock);
	pr_info("%s: removed after its I/O finished\n", dev->nodename);
	pvblk_back_free(be);
	put_device(&dev->dev);
}

static void pvblk_back_work(struct work_struct *work)
{
	struct pvblk_back_dev *be = container_of(work, struct pvblk_back_dev, work);

	if (READ_ONCE(be->removed)) {
		pvblk_back_reap(be);
		return;
	}
	mutex_lock(&be->lock);
	pvblk_back_step(be);
	mutex_unlock(&be->lock);
}

static void pvblk_back_watch_fired(struct xenbus_watch *watch,
				   const char *path, const char *token)
{
	struct pvblk_back_dev *be = container_of(watch, struct pvblk_back_dev,
						 physdev_watch);

	queue_work(pvblk_back_wq, &be->work);
}

static void pvblk_back_online_fired(struct xenbus_watch *watch,
				    const char *path, const char *token)
{
	struct pvblk_back_dev *be = container_of(watch, struct pvblk_back_dev,
						 online_watch);

	queue_work(pvblk_back_wq, &be->work);
}

static void pvblk_back_frontend_changed(struct xenbus_device *dev,
					enum xenbus_state state)
{
	struct pvblk_back_dev *be = dev_get_drvdata(&dev->dev);

	queue_work(pvblk_back_wq, &be->work);
}

/* ---- statistics, resources and test hooks ---- */

static struct device_attribute pvblk_back_stat_attrs[PVBLK_ST_COUNT];
static struct attribute *pvblk_back_stat_attr_list[PVBLK_ST_COUNT + 1];

static const struct attribute_group pvblk_back_stat_group = {
	.name = "statistics",
	.attrs = pvblk_back_stat_attr_list,
};

static ssize_t pvblk_back_stat_show(struct device *d,
				    struct device_attribute *attr, char *buf)
{
	struct pvblk_back_dev *be = dev_get_drvdata(d);
	unsigned int st = attr - pvblk_back_stat_attrs;

	return sysfs_emit(buf, "%lld\n", atomic64_read(&be->stats[st]));
}

/* Fill in the attribute group: one read-only file per named counter. */
static void pvblk_back_stat_init(void)
{
	unsigned int i, n = 0;

	for (i = 0; i < PVBLK_ST_COUNT; i++) {
		struct device_attribute *da = &pvblk_back_stat_attrs[i];

		if (!pvblk_back_stat_names[i])
			continue;
		sysfs_attr_init(&da->attr);
		da->attr.name = pvblk_back_stat_names[i];
		da->attr.mode = 0444;
		da->show = pvblk_back_stat_show;
		pvblk_back_stat_attr_list[n++] = &da->attr;
	}
	pvblk_back_stat_attr_list[n] = NULL;
}

static int pvblk_back_stats_show(struct seq_file *m, void *unused)
{
	struct pvblk_back_dev *be = m->private;
	unsigned int i;

	for (i = 0; i < PVBLK_ST_COUNT; i++)
		if (pvblk_back_stat_names[i])
			seq_printf(m, "%s %lld\n", pvblk_back_stat_names[i],
				   atomic64_read(&be->stats[i]));
	seq_printf(m, "engine %s\n", pvblk_back_engine_names[be->engine]);
	seq_printf(m, "write_through %d\n", be->dsync);
	seq_printf(m, "fast_path %d\n", be->fast);
	seq_printf(m, "discard %d\n", be->can_discard);
	seq_printf(m, "sectors %llu\n", be->lim.nr_sectors);
	seq_printf(m, "max_indirect_segments %u\n", be->lim.max_indirect_segs);
	seq_printf(m, "buffer_pages %u\n", be->pool_total);
	seq_printf(m, "grants_held_by_hook %u\n", be->hooks.held);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(pvblk_back_stats);

static int pvblk_back_resources_show(struct seq_file *m, void *unused)
{
	unsigned int i;

	for (i = 0; i < PVBLK_RES_COUNT; i++)
		seq_printf(m, "%s %d\n", pvblk_back_res_names[i],
			   atomic_read(&pvblk_back_res[i]));
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(pvblk_back_resources);

/*
 * Test hooks (module parameter test_hooks): "refuse_flush" answers flushes
 * EOPNOTSUPP from now on; "hold_read SECS" answers the next read while
 * keeping its first grant mapped for SECS seconds, as a broken backend might;
 * "delay_io SECS" makes the store slow: every I/O completes SECS seconds
 * late (0: back to normal).
 */
static ssize_t pvblk_back_inject_write(struct file *file, const char __user *ubuf,
				       size_t count, loff_t *ppos)
{
	struct pvblk_back_dev *be = file->private_data;
	unsigned int secs;
	char word[32];

	if (!count || count >= sizeof(word))
		return -EINVAL;
	if (copy_from_user(word, ubuf, count))
		return -EFAULT;
	word[count] = '\0';
	strim(word);
	if (!strcmp(word, "refuse_flush"))
		WRITE_ONCE(be->hooks.refuse_flush, true);
	else if (sscanf(word, "hold_read %u", &secs) == 1 && secs && secs <= 600)
		WRITE_ONCE(be->hooks.hold_secs, secs);
	else if (sscanf(word, "delay_io %u", &secs) == 1 && secs <= 600)
		WRITE_ONCE(be->hooks.delay_secs, secs);
	else
		return -EINVAL;
	pr_warn("%s: test hook: %s\n", be->dev->nodename, word);
	return count;
}

static const struct file_operations pvblk_back_inject_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.write = pvblk_back_inject_write,
	.llseek = no_llseek,
};

/* ---- the xenbus driver ---- */

static void pvblk_back_free(struct pvblk_back_dev *be)
{
	cancel_work_sync(&be->touch_work);
	if (be->audit_page)
		__free_page(be->audit_page);
	kfree(be->fast_batch);
	kfree(be->copy);
	kfree(be->copy_req);
	kfree(be);
}

static void pvblk_back_unwatch(struct xenbus_watch *watch)
{
	if (!watch->node)
		return;
	unregister_xenbus_watch(watch);
	kfree(watch->node);
	watch->node = NULL;
}

/*
 * xenbus removes the device (its nodes are gone, or the driver unbinds).
 * This runs on xenwatch, so it does not wait for I/O: with requests still in
 * the I/O engine, the device lives on (holding a reference to the xenbus
 * device) until the last completion lets the state work free it.
 */
static void pvblk_back_remove(struct xenbus_device *dev)
{
	struct pvblk_back_dev *be = dev_get_drvdata(&dev->dev);
	bool busy;

	if (!be)
		return;
	pvblk_back_unwatch(&be->physdev_watch);
	pvblk_back_unwatch(&be->online_watch);
	if (be->sysfs)
		sysfs_remove_group(&dev->dev.kobj, &pvblk_back_stat_group);
	debugfs_remove_recursive(be->debugfs);
	cancel_work_sync(&be->work);
	cancel_delayed_work_sync(&be->hooks.unmap_work);
	pvblk_back_hook_unmap(be);
	dev_set_drvdata(&dev->dev, NULL);

	mutex_lock(&be->lock);
	busy = !pvblk_back_close(be);
	mutex_unlock(&be->lock);
	if (!busy) {
		cancel_delayed_work_sync(&be->hooks.delay_work);
		pvblk_back_free(be);
		return;
	}
	pr_info("%s: removed with I/O in flight: freed when it finishes\n", dev->nodename);
	get_device(&dev->dev);
	WRITE_ONCE(be->removed, true);
	queue_work(pvblk_back_wq, &be->work);	/* in case the I/O just finished */
}

static int pvblk_back_probe(struct xenbus_device *dev,
			    const struct xenbus_device_id *id)
{
	const char *devid = strrchr(dev->nodename, '/') + 1;
	struct pvblk_back_dev *be;
	char name[32];
	int err;

	be = kzalloc(sizeof(*be), GFP_KERNEL);
	if (!be) {
		xenbus_dev_fatal(dev, -ENOMEM, "allocating the backend");
		return -ENOMEM;
	}
	be->dev = dev;
	be->domid = dev->otherend_id;
	mutex_init(&be->lock);
	INIT_WORK(&be->work, pvblk_back_work);
	INIT_WORK(&be->touch_work, pvblk_back_touch_work);
	init_waitqueue_head(&be->wq);
	init_waitqueue_head(&be->io_wq);
	spin_lock_init(&be->done_lock);
	INIT_LIST_HEAD(&be->free_reqs);
	INIT_LIST_HEAD(&be->batch);
	INIT_LIST_HEAD(&be->done);
	INIT_DELAYED_WORK(&be->hooks.unmap_work, pvblk_back_hook_unmap_work);
	INIT_DELAYED_WORK(&be->hooks.delay_work, pvblk_back_hook_delay_work);
	INIT_LIST_HEAD(&be->hooks.delayed);
	dev_set_drvdata(&dev->dev, be);

	be->copy = kcalloc(PVBLK_BACK_COPY_BATCH, sizeof(*be->copy), GFP_KERNEL);
	be->copy_req = kcalloc(PVBLK_BACK_COPY_BATCH, sizeof(*be->copy_req), GFP_KERNEL);
	be->audit_page = alloc_page(GFP_KERNEL);
	be->fast_batch = kzalloc(sizeof(*be->fast_batch), GFP_KERNEL);
	if (!be->copy || !be->copy_req || !be->audit_page || !be->fast_batch) {
		err = -ENOMEM;
		xenbus_dev_fatal(dev, err, "allocating buffers");
		goto fail;
	}

	/* if the store cannot be opened yet, it is tried again at connect */
	mutex_lock(&be->lock);
	pvblk_back_open_store(be);
	err = pvblk_back_publish(be);
	mutex_unlock(&be->lock);
	if (err) {
		xenbus_dev_fatal(dev, err, "writing the features");
		goto fail;
	}

	err = sysfs_create_group(&dev->dev.kobj, &pvblk_back_stat_group);
	if (err) {
		xenbus_dev_fatal(dev, err, "creating the statistics");
		goto fail;
	}
	be->sysfs = true;
	snprintf(name, sizeof(name), "%u-%s", be->domid, devid);
	be->debugfs = debugfs_create_dir(name, pvblk_back_debugfs_root);
	debugfs_create_file("stats", 0444, be->debugfs, be, &pvblk_back_stats_fops);
	if (test_hooks)
		debugfs_create_file("inject", 0200, be->debugfs, be,
				    &pvblk_back_inject_fops);

	err = xenbus_watch_pathfmt(dev, &be->physdev_watch, NULL,
				   pvblk_back_watch_fired, "%s/%s",
				   dev->nodename, PVBLK_XS_PHYSICAL_DEVICE);
	if (!err)
		err = xenbus_watch_pathfmt(dev, &be->online_watch, NULL,
					   pvblk_back_online_fired, "%s/online",
					   dev->nodename);
	if (err)
		goto fail;	/* xenbus reported it */

	err = xenbus_switch_state(dev, PVBLK_XB_INITWAIT);
	if (err)
		goto fail;
	return 0;

fail:
	pvblk_back_remove(dev);
	return err;
}

static struct xenbus_device_id pvblk_back_ids[] = {
	{ PVBLK_DEVICE_TYPE },	/* the devtype parameter, at init */
	{ "" }
};

static struct xenbus_driver pvblk_back_driver = {
	.name = "pvblk-back",
	.ids = pvblk_back_ids,
	.probe = pvblk_back_probe,
	.remove = pvblk_back_remove,
	.otherend_changed = pvblk_back_frontend_changed,
	/* unbinding (rmmod) closes the device: the frontend must not wait on it */
	.allow_rebind = false,
};

static int __init pvblk_back_init(void)
{
	int err;

	if (!xen_domain())
		return -ENODEV;
	if (!IS_ENABLED(CONFIG_XEN_BACKEND)) {
		pr_err("this kernel has no Xen backend support (CONFIG_XEN_BACKEND)\n");
		return -ENODEV;
	}
	if (!devtype || !devtype[0] ||
	    strscpy(pvblk_back_ids[0].devicetype, devtype,
		    sizeof(pvblk_back_ids[0].devicetype)) < 0) {
		pr_err("bad devtype \"%s\"\n", devtype ?: "");
		return -EINVAL;
	}
	if (max_ring_page_order > XENBUS_MAX_RING_GRANT_ORDER) {
		pr_info("max_ring_page_order %u lowered to %u\n",
			max_ring_page_order, XENBUS_MAX_RING_GRANT_ORDER);
		max_ring_page_order = XENBUS_MAX_RING_GRANT_ORDER;
	}
	pvblk_back_wq = alloc_workqueue("pvblk-back", WQ_UNBOUND | WQ_MEM_RECLAIM, 0);
	if (!pvblk_back_wq)
		return -ENOMEM;
	pvblk_back_stat_init();
	pvblk_back_debugfs_root = debugfs_create_dir("pvblk-back", NULL);
	debugfs_create_file("resources", 0444, pvblk_back_debugfs_root, NULL,
			    &pvblk_back_resources_fops);

	err = xenbus_register_backend(&pvblk_back_driver);
	if (err) {
		debugfs_remove_recursive(pvblk_back_debugfs_root);
		destroy_workqueue(pvblk_back_wq);
		return err;
	}
	pr_info("serving backend device type \"%s\"%s\n", devtype,
		test_hooks ? " (test hooks on)" : "");
	return 0;
}
module_init(pvblk_back_init);

static void __exit pvblk_back_exit(void)
{
	xenbus_unregister_driver(&pvblk_back_driver);
	debugfs_remove_recursive(pvblk_back_debugfs_root);
	destroy_workqueue(pvblk_back_wq);
}
module_exit(pvblk_back_exit);

MODULE_DESCRIPTION("pvkit Xen PV block backend (blkif: bios, O_DIRECT, grant copy)");
MODULE_LICENSE("GPL");
MODULE_ALIAS("xen-backend:pvblk");
