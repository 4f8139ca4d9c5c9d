// SPDX-License-Identifier: GPL-2.0
/*
 * pvblk_back.c - pvkit's Xen PV block backend (blkif), the dom0 end.
 *
 * It serves a regular file or a block device to a blkif frontend (pvblk-front
 * or upstream xen-blkfront) through the VFS: no loop device, a file is served
 * straight from dom0's page cache. Data moves with grant copy only: the
 * frontend's pages are never mapped, the hypervisor copies between them and
 * the backend's own buffer pages, one GNTTABOP_copy batch per request (an
 * indirect request's segment descriptors take one more, before it).
 *
 * The frontend is not trusted. Every request is copied out of the shared ring
 * into private memory and checked by pvblk_validate.c before use; so are the
 * segment descriptors of indirect requests, after they are copied out of the
 * frontend's pages. A bogus ring producer index shuts the device down.
 *
 * One kernel thread per device serves the ring, one request at a time, in
 * order: a response is on the ring before the next request is read.
 */

#define pr_fmt(fmt) "pvblk-back: " fmt

#include <linux/atomic.h>
#include <linux/blkdev.h>
#include <linux/bvec.h>
#include <linux/debugfs.h>
#include <linux/device.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uio.h>
#include <linux/wait.h>

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

/* Segments per indirect request we advertise and have buffer pages for. */
#define PVBLK_BACK_MAX_SEGS	256
#define PVBLK_BACK_INDIRECT_PAGES \
	DIV_ROUND_UP(PVBLK_BACK_MAX_SEGS, PVBLK_SEGS_PER_INDIRECT_FRAME)
#define PVBLK_BACK_COPY_OPS	max(PVBLK_BACK_MAX_SEGS, PVBLK_BACK_INDIRECT_PAGES)

static_assert(PVBLK_BACK_MAX_SEGS >= PVBLK_MAX_SEGMENTS_PER_REQUEST);
static_assert(PVBLK_BACK_MAX_SEGS <= PVBLK_MAX_INDIRECT_SEGMENTS);
static_assert(PVBLK_BACK_INDIRECT_PAGES <= PVBLK_MAX_INDIRECT_PAGES_PER_REQUEST);

static char *devtype = PVBLK_DEVICE_TYPE;
module_param(devtype, charp, 0444);
MODULE_PARM_DESC(devtype,
		 "XenStore backend device type to serve: \"pvblk\" (default) or \"vbd\" (only without xen-blkback)");

static unsigned int max_ring_page_order = PVBLK_MAX_RING_PAGE_ORDER;
module_param(max_ring_page_order, uint, 0444);
MODULE_PARM_DESC(max_ring_page_order,
		 "Largest shared ring the frontend may use, log2 of its pages (0-4, default 4)");

/* Per-device counters: sysfs statistics/<name> and debugfs .../stats. */
enum pvblk_back_stat {
	PVBLK_ST_RD_REQ,
	PVBLK_ST_WR_REQ,
	PVBLK_ST_FLUSH_REQ,
	PVBLK_ST_INDIRECT_REQ,
	PVBLK_ST_SEGMENTS,
	PVBLK_ST_RD_SECT,
	PVBLK_ST_WR_SECT,
	PVBLK_ST_REJECTED,
	PVBLK_ST_COPY_ERRORS,
	PVBLK_ST_IO_ERRORS,
	PVBLK_ST_HOSTILE,
	/* rejected requests per reason: PVBLK_ST_REJ_BASE + PVBLK_VERR_* */
	PVBLK_ST_REJ_BASE = PVBLK_ST_HOSTILE,
	PVBLK_ST_COUNT = PVBLK_ST_REJ_BASE + PVBLK_VERR_COUNT
};

static const char * const pvblk_back_stat_names[PVBLK_ST_COUNT] = {
	[PVBLK_ST_RD_REQ] = "rd_req",
	[PVBLK_ST_WR_REQ] = "wr_req",
	[PVBLK_ST_FLUSH_REQ] = "flush_req",
	[PVBLK_ST_INDIRECT_REQ] = "indirect_req",
	[PVBLK_ST_SEGMENTS] = "segments",
	[PVBLK_ST_RD_SECT] = "rd_sect",
	[PVBLK_ST_WR_SECT] = "wr_sect",
	[PVBLK_ST_REJECTED] = "rejected",
	[PVBLK_ST_COPY_ERRORS] = "copy_errors",
	[PVBLK_ST_IO_ERRORS] = "io_errors",
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

struct pvblk_back_dev {
	struct xenbus_device *dev;
	domid_t domid;			/* the frontend's */

	/* serializes connect, disconnect and the backing store's open/close */
	struct mutex lock;
	struct xenbus_watch physdev_watch;
	struct xenbus_watch online_watch;

	/* the backing store */
	struct file *file;
	dev_t devt;			/* opened from physical-device, or 0 */
	unsigned int phys_sector_size;
	struct pvblk_vdev_limits lim;	/* what the frontend was told */

	/* the ring, while connected */
	struct pvblk_back_ring ring;
	void *ring_addr;
	unsigned int nr_ring_pages;
	evtchn_port_t evtchn;
	int irq;
	struct task_struct *thread;
	wait_queue_head_t wq;
	bool waiting;			/* set by the interrupt handler */

	/* the thread's buffers: one page per segment, the indirect segments */
	struct page *pages[PVBLK_BACK_MAX_SEGS];
	struct pvblk_request_segment *indirect;
	struct gnttab_copy *copy;
	struct bio_vec *bvec;

	atomic64_t stats[PVBLK_ST_COUNT];
	bool sysfs;			/* the statistics group exists */
	struct dentry *debugfs;
};

static struct dentry *pvblk_back_debugfs_root;

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

/* Fill in one grant copy op between segment @seg and buffer page @page. */
static void pvblk_back_copy_op(struct pvblk_back_dev *be,
			       struct gnttab_copy *op,
			       const struct pvblk_request_segment *seg,
			       struct page *page, bool to_frontend)
{
	u16 offset = seg->first_sect << PVBLK_SECTOR_SHIFT;
	u16 len = (seg->last_sect - seg->first_sect + 1) << PVBLK_SECTOR_SHIFT;
	struct gnttab_copy_ptr *front = to_frontend ? &op->dest : &op->source;
	struct gnttab_copy_ptr *back = to_frontend ? &op->source : &op->dest;

	front->u.ref = seg->gref;
	front->domid = be->domid;
	front->offset = offset;
	back->u.gmfn = xen_page_to_gfn(page);
	back->domid = DOMID_SELF;
	back->offset = offset;
	op->len = len;
	op->flags = to_frontend ? GNTCOPY_dest_gref : GNTCOPY_source_gref;
	op->status = GNTST_okay;
}

/* Run @n copy ops in one batch; 0 if all of them worked. */
static int pvblk_back_copy(struct pvblk_back_dev *be, unsigned int n, u64 id)
{
	unsigned int i;

	gnttab_batch_copy(be->copy, n);
	for (i = 0; i < n; i++) {
		if (be->copy[i].status != GNTST_okay) {
			pvblk_back_stat_inc(be, PVBLK_ST_COPY_ERRORS);
			pr_warn_ratelimited("%s: request id %llu: grant copy of ref %u failed: status %d\n",
					    be->dev->nodename, id,
					    be->copy[i].flags & GNTCOPY_dest_gref ?
					    be->copy[i].dest.u.ref :
					    be->copy[i].source.u.ref,
					    be->copy[i].status);
			return -EIO;
		}
	}
	return 0;
}

/* Copy the segment descriptors of an indirect request into be->indirect. */
static int pvblk_back_copy_indirect(struct pvblk_back_dev *be,
				    const struct pvblk_request *req,
				    const struct pvblk_req_info *info)
{
	size_t left = (size_t)info->nr_segments * sizeof(*be->indirect);
	void *buf = be->indirect;
	unsigned int i;

	if (info->nr_indirect_pages > PVBLK_BACK_INDIRECT_PAGES ||
	    left > PVBLK_BACK_INDIRECT_PAGES * XEN_PAGE_SIZE)
		return -EINVAL;	/* the validator let through more than we said */

	for (i = 0; i < info->nr_indirect_pages; i++) {
		struct gnttab_copy *op = &be->copy[i];

		op->source.u.ref = req->u.indirect.indirect_grefs[i];
		op->source.domid = be->domid;
		op->source.offset = 0;
		op->dest.u.gmfn = virt_to_gfn(buf + i * XEN_PAGE_SIZE);
		op->dest.domid = DOMID_SELF;
		op->dest.offset = 0;
		op->len = min_t(size_t, left, XEN_PAGE_SIZE);
		op->flags = GNTCOPY_source_gref;
		op->status = GNTST_okay;
		left -= op->len;
	}
	return pvblk_back_copy(be, info->nr_indirect_pages, info->id);
}

/* Read or write the request's sectors between the buffer pages and the store. */
static int pvblk_back_vfs_io(struct pvblk_back_dev *be,
			     const struct pvblk_req_info *info,
			     const struct pvblk_request_segment *segs, bool write)
{
	loff_t pos = (loff_t)info->sector_number << PVBLK_SECTOR_SHIFT;
	size_t bytes = (size_t)info->nr_sectors << PVBLK_SECTOR_SHIFT;
	struct iov_iter iter;
	unsigned int i;
	ssize_t ret;

	for (i = 0; i < info->nr_segments; i++) {
		be->bvec[i].bv_page = be->pages[i];
		be->bvec[i].bv_offset = segs[i].first_sect << PVBLK_SECTOR_SHIFT;
		be->bvec[i].bv_len = (segs[i].last_sect - segs[i].first_sect + 1)
				     << PVBLK_SECTOR_SHIFT;
	}
	iov_iter_bvec(&iter, write ? ITER_SOURCE : ITER_DEST, be->bvec,
		      info->nr_segments, bytes);

	while (iov_iter_count(&iter)) {
		if (write) {
			file_start_write(be->file);
			ret = vfs_iter_write(be->file, &iter, &pos, 0);
			file_end_write(be->file);
		} else {
			ret = vfs_iter_read(be->file, &iter, &pos, 0);
		}
		if (ret < 0)
			return ret;
		if (!ret) {
			if (write)
				return -EIO;
			/* the file shrank under us: read zeroes, as loop does */
			iov_iter_zero(iov_iter_count(&iter), &iter);
			break;
		}
	}
	return 0;
}

static int pvblk_back_write(struct pvblk_back_dev *be,
			    const struct pvblk_req_info *info,
			    const struct pvblk_request_segment *segs)
{
	unsigned int i;
	int err;

	for (i = 0; i < info->nr_segments; i++)
		pvblk_back_copy_op(be, &be->copy[i], &segs[i], be->pages[i], false);
	err = pvblk_back_copy(be, info->nr_segments, info->id);
	if (err)
		return err;
	err = pvblk_back_vfs_io(be, info, segs, true);
	if (err)
		pvblk_back_stat_inc(be, PVBLK_ST_IO_ERRORS);
	return err;
}

static int pvblk_back_read(struct pvblk_back_dev *be,
			   const struct pvblk_req_info *info,
			   const struct pvblk_request_segment *segs)
{
	unsigned int i;
	int err;

	err = pvblk_back_vfs_io(be, info, segs, false);
	if (err) {
		pvblk_back_stat_inc(be, PVBLK_ST_IO_ERRORS);
		return err;
	}
	for (i = 0; i < info->nr_segments; i++)
		pvblk_back_copy_op(be, &be->copy[i], &segs[i], be->pages[i], true);
	return pvblk_back_copy(be, info->nr_segments, info->id);
}

static int pvblk_back_flush(struct pvblk_back_dev *be,
			    const struct pvblk_req_info *info,
			    const struct pvblk_request_segment *segs)
{
	int err;

	if (info->nr_segments) {
		err = pvblk_back_write(be, info, segs);
		if (err)
			return err;
	}
	err = vfs_fsync(be->file, 1);
	if (err)
		pvblk_back_stat_inc(be, PVBLK_ST_IO_ERRORS);
	return err;
}

/* Do a checked request; the response status. */
static int pvblk_back_do_io(struct pvblk_back_dev *be,
			    const struct pvblk_req_info *info,
			    const struct pvblk_request_segment *segs)
{
	int err;

	if (info->nr_segments > PVBLK_BACK_MAX_SEGS)
		return PVBLK_RSP_ERROR;	/* cannot be: the validator's limit is ours */
	pvblk_back_stat_add(be, PVBLK_ST_SEGMENTS, info->nr_segments);
	pvblk_back_stat_add(be, info->writes ? PVBLK_ST_WR_SECT : PVBLK_ST_RD_SECT,
			    info->nr_sectors);

	switch (info->operation) {
	case PVBLK_OP_READ:
		pvblk_back_stat_inc(be, PVBLK_ST_RD_REQ);
		err = pvblk_back_read(be, info, segs);
		break;
	case PVBLK_OP_WRITE:
		pvblk_back_stat_inc(be, PVBLK_ST_WR_REQ);
		err = pvblk_back_write(be, info, segs);
		break;
	case PVBLK_OP_FLUSH_DISKCACHE:
		pvblk_back_stat_inc(be, PVBLK_ST_FLUSH_REQ);
		err = pvblk_back_flush(be, info, segs);
		break;
	default:
		/* barrier, discard: not advertised, so the validator refused them */
		return PVBLK_RSP_EOPNOTSUPP;
	}
	if (err && err != -EIO)
		pr_warn_ratelimited("%s: request id %llu: I/O error %d\n",
				    be->dev->nodename, info->id, err);
	return err ? PVBLK_RSP_ERROR : PVBLK_RSP_OKAY;
}

static void pvblk_back_reject(struct pvblk_back_dev *be, u64 id, int err)
{
	unsigned int code = -err;

	pvblk_back_stat_inc(be, PVBLK_ST_REJECTED);
	if (code && code < PVBLK_VERR_COUNT)
		pvblk_back_stat_inc(be, PVBLK_ST_REJ_BASE + code);
	pr_warn_ratelimited("%s: rejected request id %llu: %s\n",
			    be->dev->nodename, id, pvblk_validate_strerror(err));
}

/* Serve one request, @req being the thread's private copy; respond to it. */
static void pvblk_back_handle(struct pvblk_back_dev *be,
			      const struct pvblk_request *req)
{
	const struct pvblk_request_segment *segs = req->u.rw.seg;
	struct pvblk_req_info info;
	u8 op = req->operation;
	int status;
	int err;

	/* the response carries the operation done, as blkfront checks */
	if (op == PVBLK_OP_INDIRECT)
		op = req->u.indirect.indirect_op;

	err = pvblk_validate_request(req, &be->lim, &info);
	if (!err && req->operation == PVBLK_OP_INDIRECT) {
		if (pvblk_back_copy_indirect(be, req, &info)) {
			pvblk_back_respond(be, info.id, op, PVBLK_RSP_ERROR);
			return;
		}
		segs = be->indirect;
		err = pvblk_validate_indirect_segs(segs, &be->lim, &info);
		if (!err)
			pvblk_back_stat_inc(be, PVBLK_ST_INDIRECT_REQ);
	}
	if (err) {
		pvblk_back_reject(be, info.id, err);
		pvblk_back_respond(be, info.id, op, pvblk_validate_rsp_status(err));
		return;
	}
	status = pvblk_back_do_io(be, &info, segs);
	pvblk_back_respond(be, info.id, op, status);
}

static void pvblk_back_hostile(struct pvblk_back_dev *be, int err)
{
	pvblk_back_stat_inc(be, PVBLK_ST_HOSTILE);
	pr_err("%s: frontend is hostile: %s; shutting the device down\n",
	       be->dev->nodename, pvblk_validate_strerror(err));
	xenbus_switch_state(be->dev, PVBLK_XB_CLOSING);
}

/*
 * Serve all requests on the ring, pushing the responses of each batch with
 * one notification. Return: 0 when the ring is empty or the thread is to
 * stop, -EPROTO if the frontend broke the ring (the device is shut down).
 */
static int pvblk_back_do_ring(struct pvblk_back_dev *be, unsigned int *eoi_flags)
{
	struct pvblk_back_ring *ring = &be->ring;
	struct pvblk_request req;
	RING_IDX rc, rp;
	int more, notify, err;

	for (;;) {
		rc = ring->req_cons;
		rp = READ_ONCE(ring->sring->req_prod);
		virt_rmb();	/* the requests up to rp, after rp */

		err = pvblk_validate_ring_prod(rp, rc, RING_SIZE(ring));
		if (err) {
			pvblk_back_hostile(be, err);
			return -EPROTO;
		}
		while (rc != rp && !kthread_should_stop()) {
			RING_COPY_REQUEST(ring, rc, &req);
			ring->req_cons = ++rc;
			*eoi_flags &= ~XEN_EOI_FLAG_SPURIOUS;
			pvblk_back_handle(be, &req);
			cond_resched();
		}
		RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(ring, notify);
		if (notify)
			notify_remote_via_irq(be->irq);
		if (kthread_should_stop())
			return 0;
		RING_FINAL_CHECK_FOR_REQUESTS(ring, more);
		if (!more)
			return 0;
	}
}

static int pvblk_back_thread(void *arg)
{
	struct pvblk_back_dev *be = arg;
	unsigned int eoi_flags = XEN_EOI_FLAG_SPURIOUS;

	while (!kthread_should_stop()) {
		wait_event_interruptible(be->wq, READ_ONCE(be->waiting) ||
					 kthread_should_stop());
		if (kthread_should_stop())
			break;
		WRITE_ONCE(be->waiting, false);
		smp_mb();	/* clear the flag before looking at the ring */

		if (pvblk_back_do_ring(be, &eoi_flags) < 0) {
			/* no EOI: the event channel stays masked */
			wait_event_interruptible(be->wq, kthread_should_stop());
			break;
		}
		xen_irq_lateeoi(be->irq, eoi_flags);
		eoi_flags |= XEN_EOI_FLAG_SPURIOUS;
	}
	return 0;
}

static irqreturn_t pvblk_back_interrupt(int irq, void *dev_id)
{
	struct pvblk_back_dev *be = dev_id;

	WRITE_ONCE(be->waiting, true);
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

static void pvblk_back_close_store(struct pvblk_back_dev *be)
{
	if (!be->file)
		return;
	filp_close(be->file, NULL);
	be->file = NULL;
	be->devt = 0;
	/* a kthread's fput is deferred: finish it, the toolstack may reuse the store */
	if (current->flags & PF_KTHREAD)
		flush_delayed_fput();
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
		file = filp_open(params, flags, 0);
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
	if (S_ISBLK(inode->i_mode)) {
		struct block_device *bdev = I_BDEV(file->f_mapping->host);

		be->lim.nr_sectors = bdev_nr_sectors(bdev);
		be->phys_sector_size = bdev_physical_block_size(bdev);
	} else if (S_ISREG(inode->i_mode)) {
		be->lim.nr_sectors = i_size_read(inode) >> PVBLK_SECTOR_SHIFT;
		be->phys_sector_size = PAGE_SIZE;	/* the page cache's unit */
	} else {
		pr_warn("%s: \"%s\" is not a regular file or a block device\n",
			node, params ?: "");
		filp_close(file, NULL);
		err = -EINVAL;
		goto out;
	}
	if (be->phys_sector_size < PVBLK_SECTOR_SIZE)
		be->phys_sector_size = PVBLK_SECTOR_SIZE;

	be->file = file;
	be->devt = devt;
	be->lim.max_indirect_segs = PVBLK_BACK_MAX_SEGS;
	be->lim.flags = PVBLK_VDEV_FLUSH | (readonly ? PVBLK_VDEV_READONLY : 0);
	if (devt)
		pr_info("%s: serving block device %u:%u, %llu sectors, %s\n",
			node, major, minor, be->lim.nr_sectors,
			readonly ? "read-only" : "read-write");
	else
		pr_info("%s: serving %s, %llu sectors, %s\n", node, params,
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
	static const struct {
		const char *key;
		unsigned int val;
	} keys[] = {
		{ PVBLK_XS_FEATURE_FLUSH_CACHE, 1 },
		{ PVBLK_XS_FEATURE_BARRIER, 0 },
		{ PVBLK_XS_FEATURE_DISCARD, 0 },
		{ PVBLK_XS_FEATURE_PERSISTENT, 0 },
		{ PVBLK_XS_FEATURE_MAX_INDIRECT_SEGMENTS, PVBLK_BACK_MAX_SEGS },
	};
	const char *node = be->dev->nodename;
	unsigned int i;
	int err;

	for (i = 0; i < ARRAY_SIZE(keys); i++) {
		err = xenbus_printf(xbt, node, keys[i].key, "%u", keys[i].val);
		if (err)
			return err;
	}
	return xenbus_printf(xbt, node, PVBLK_XS_MAX_RING_PAGE_ORDER, "%u",
			     max_ring_page_order);
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

/* Stop serving the ring and let go of it. Caller holds be->lock. */
static void pvblk_back_disconnect(struct pvblk_back_dev *be)
{
	if (be->thread) {
		kthread_stop(be->thread);
		be->thread = NULL;
	}
	if (be->irq) {
		unbind_from_irqhandler(be->irq, be);
		be->irq = 0;
	}
	if (be->ring_addr) {
		xenbus_unmap_ring_vfree(be->dev, be->ring_addr);
		be->ring_addr = NULL;
		be->ring.sring = NULL;
	}
	WRITE_ONCE(be->waiting, false);
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
	sring = be->ring_addr;
	rsp_prod = READ_ONCE(sring->rsp_prod);
	req_prod = READ_ONCE(sring->req_prod);
	BACK_RING_ATTACH(&be->ring, sring, rsp_prod,
			 XEN_PAGE_SIZE * be->nr_ring_pages);
	err = pvblk_validate_ring_prod(req_prod, rsp_prod, RING_SIZE(&be->ring));
	if (err) {
		pvblk_back_hostile(be, err);
		return -EPROTO;
	}

	err = bind_interdomain_evtchn_to_irqhandler_lateeoi(dev, be->evtchn,
							    pvblk_back_interrupt,
							    0, "pvblk-back", be);
	if (err < 0) {
		xenbus_dev_fatal(dev, err, "binding event channel %u", be->evtchn);
		return err;
	}
	be->irq = err;
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
	 * Connected before the thread runs: a Closing it writes for a hostile
	 * frontend is not overwritten. Requests already signalled wait for it.
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
	pr_info("%s: connected to %s: ring of %u page(s), event channel %u\n",
		dev->nodename, dev->otherend, be->nr_ring_pages, be->evtchn);
}

static void pvblk_back_physdev_changed(struct xenbus_watch *watch,
				       const char *path, const char *token)
{
	struct pvblk_back_dev *be = container_of(watch, struct pvblk_back_dev,
						 physdev_watch);
	unsigned int major, minor;

	if (xenbus_scanf(XBT_NIL, be->dev->nodename, PVBLK_XS_PHYSICAL_DEVICE,
			 "%x:%x", &major, &minor) != 2)
		return;	/* not (yet) there: the first event, or no hotplug script */

	mutex_lock(&be->lock);
	if (be->file) {
		if (be->devt != MKDEV(major, minor))
			pr_info("%s: physical-device %x:%x ignored: the store is open\n",
				be->dev->nodename, major, minor);
	} else if (!pvblk_back_open_store(be)) {
		if (pvblk_back_publish(be))
			pr_warn("%s: cannot write the disk's details\n",
				be->dev->nodename);
		pvblk_back_try_connect(be);
	}
	mutex_unlock(&be->lock);
}

/*
 * The toolstack set online to 0 (and state to Closing) to remove the device.
 * A connected frontend sees that and closes, and frontend_changed() follows;
 * without one, nobody else would answer: close now.
 */
static void pvblk_back_online_changed(struct xenbus_watch *watch,
				      const char *path, const char *token)
{
	struct pvblk_back_dev *be = container_of(watch, struct pvblk_back_dev,
						 online_watch);
	struct xenbus_device *dev = be->dev;
	bool connected;

	if (pvblk_back_online(dev) ||
	    !xenbus_exists(XBT_NIL, dev->nodename, ""))
		return;

	mutex_lock(&be->lock);
	connected = be->ring_addr;
	if (!connected)
		pvblk_back_close_store(be);
	mutex_unlock(&be->lock);
	if (connected)
		return;
	/* the toolstack may have written the state node itself */
	dev->state = xenbus_read_driver_state(dev->nodename);
	xenbus_switch_state(dev, PVBLK_XB_CLOSED);
}

static void pvblk_back_frontend_changed(struct xenbus_device *dev,
					enum xenbus_state state)
{
	struct pvblk_back_dev *be = dev_get_drvdata(&dev->dev);
	int err;

	switch ((int)state) {
	case PVBLK_XB_INITIALISING:
		if (dev->state == PVBLK_XB_INITWAIT || !pvblk_back_online(dev))
			break;
		/* the frontend starts over: after Closed, or it went by too fast */
		pr_info("%s: frontend initialising: prepare for reconnect\n",
			dev->nodename);
		mutex_lock(&be->lock);
		pvblk_back_disconnect(be);
		if (!pvblk_back_open_store(be) && pvblk_back_publish(be))
			pr_warn("%s: cannot write the disk's details\n",
				dev->nodename);
		mutex_unlock(&be->lock);
		xenbus_switch_state(dev, PVBLK_XB_INITWAIT);
		break;

	case PVBLK_XB_INITIALISED:
	case PVBLK_XB_CONNECTED:
		/* only from InitWait: after Closing, the frontend starts over */
		if (dev->state != PVBLK_XB_INITWAIT)
			break;
		mutex_lock(&be->lock);
		pvblk_back_disconnect(be);
		err = pvblk_back_map_ring(be);
		if (err)
			pvblk_back_disconnect(be);
		else
			pvblk_back_try_connect(be);
		mutex_unlock(&be->lock);
		break;

	case PVBLK_XB_CLOSING:
		xenbus_switch_state(dev, PVBLK_XB_CLOSING);
		break;

	case PVBLK_XB_CLOSED:
		mutex_lock(&be->lock);
		pvblk_back_disconnect(be);
		pvblk_back_close_store(be);
		mutex_unlock(&be->lock);
		xenbus_switch_state(dev, PVBLK_XB_CLOSED);
		if (pvblk_back_online(dev))
			break;
		/* remove() disconnects; be is gone after this */
		device_unregister(&dev->dev);
		break;

	case PVBLK_XB_UNKNOWN:
		/*
		 * No state node: the frontend is gone if its directory is, else
		 * it is not written yet (a toolstack need not write it first).
		 */
		if (xenbus_exists(XBT_NIL, dev->otherend, ""))
			break;
		device_unregister(&dev->dev);
		break;

	default:
		xenbus_dev_fatal(dev, -EINVAL, "saw state %d at frontend", state);
		break;
	}
}

/* ---- statistics ---- */

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
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(pvblk_back_stats);

/* ---- the xenbus driver ---- */

static void pvblk_back_free(struct pvblk_back_dev *be)
{
	unsigned int i;

	for (i = 0; i < PVBLK_BACK_MAX_SEGS; i++)
		if (be->pages[i])
			__free_page(be->pages[i]);
	free_pages((unsigned long)be->indirect,
		   get_order(PVBLK_BACK_INDIRECT_PAGES * XEN_PAGE_SIZE));
	kfree(be->copy);
	kfree(be->bvec);
	kfree(be);
}

static int pvblk_back_alloc_buffers(struct pvblk_back_dev *be)
{
	unsigned int i;

	for (i = 0; i < PVBLK_BACK_MAX_SEGS; i++) {
		be->pages[i] = alloc_page(GFP_KERNEL | __GFP_ZERO);
		if (!be->pages[i])
			return -ENOMEM;
	}
	be->indirect = (void *)__get_free_pages(GFP_KERNEL | __GFP_ZERO,
			get_order(PVBLK_BACK_INDIRECT_PAGES * XEN_PAGE_SIZE));
	be->copy = kcalloc(PVBLK_BACK_COPY_OPS, sizeof(*be->copy), GFP_KERNEL);
	be->bvec = kcalloc(PVBLK_BACK_MAX_SEGS, sizeof(*be->bvec), GFP_KERNEL);
	if (!be->indirect || !be->copy || !be->bvec)
		return -ENOMEM;
	return 0;
}

static void pvblk_back_unwatch(struct xenbus_watch *watch)
{
	if (!watch->node)
		return;
	unregister_xenbus_watch(watch);
	kfree(watch->node);
	watch->node = NULL;
}

static void pvblk_back_remove(struct xenbus_device *dev)
{
	struct pvblk_back_dev *be = dev_get_drvdata(&dev->dev);

	if (!be)
		return;
	pvblk_back_unwatch(&be->physdev_watch);
	pvblk_back_unwatch(&be->online_watch);
	if (be->sysfs)
		sysfs_remove_group(&dev->dev.kobj, &pvblk_back_stat_group);
	debugfs_remove_recursive(be->debugfs);

	mutex_lock(&be->lock);
	pvblk_back_disconnect(be);
	pvblk_back_close_store(be);
	mutex_unlock(&be->lock);

	dev_set_drvdata(&dev->dev, NULL);
	pvblk_back_free(be);
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
	init_waitqueue_head(&be->wq);
	dev_set_drvdata(&dev->dev, be);

	err = pvblk_back_alloc_buffers(be);
	if (err) {
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

	err = xenbus_watch_pathfmt(dev, &be->physdev_watch, NULL,
				   pvblk_back_physdev_changed, "%s/%s",
				   dev->nodename, PVBLK_XS_PHYSICAL_DEVICE);
	if (!err)
		err = xenbus_watch_pathfmt(dev, &be->online_watch, NULL,
					   pvblk_back_online_changed, "%s/online",
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
	pvblk_back_stat_init();
	pvblk_back_debugfs_root = debugfs_create_dir("pvblk-back", NULL);

	err = xenbus_register_backend(&pvblk_back_driver);
	if (err) {
		debugfs_remove_recursive(pvblk_back_debugfs_root);
		return err;
	}
	pr_info("serving backend device type \"%s\"\n", devtype);
	return 0;
}
module_init(pvblk_back_init);

static void __exit pvblk_back_exit(void)
{
	xenbus_unregister_driver(&pvblk_back_driver);
	debugfs_remove_recursive(pvblk_back_debugfs_root);
}
module_exit(pvblk_back_exit);

MODULE_DESCRIPTION("pvkit Xen PV block backend (blkif over the VFS, grant copy)");
MODULE_LICENSE("GPL");
MODULE_ALIAS("xen-backend:pvblk");
