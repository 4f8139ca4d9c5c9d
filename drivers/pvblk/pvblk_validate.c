// SPDX-License-Identifier: GPL-2.0
/*
 * pvblk_validate.c - the backend's checks of requests from a hostile frontend.
 *
 * See pvblk_validate.h for what is checked, in which order, and why. All
 * arguments are private copies: nothing here reads the shared ring.
 */

#include "pvblk_validate.h"

static const char * const pvblk_verr_names[PVBLK_VERR_COUNT] = {
	[0] = "ok",
	[PVBLK_VERR_BAD_OP] = "unknown operation",
	[PVBLK_VERR_BAD_INDIRECT_OP] = "indirect operation not read or write",
	[PVBLK_VERR_NOT_SUPPORTED] = "operation not advertised by the backend",
	[PVBLK_VERR_NR_SEGMENTS] = "bad number of segments",
	[PVBLK_VERR_DISCARD_EMPTY] = "discard of zero sectors",
	[PVBLK_VERR_READ_ONLY] = "write to a read-only device",
	[PVBLK_VERR_SEGMENT] = "bad segment sector bounds",
	[PVBLK_VERR_OVERFLOW] = "sector range wraps around",
	[PVBLK_VERR_RANGE] = "sector range beyond end of device",
	[PVBLK_VERR_RING] = "bogus ring producer index",
	[PVBLK_VERR_PARAM] = "bad validator argument",
};

/* 1 if @op writes to the device: the read-only check applies to it. */
static int pvblk_op_writes(u8 op)
{
	return op == PVBLK_OP_WRITE || op == PVBLK_OP_WRITE_BARRIER ||
	       op == PVBLK_OP_FLUSH_DISKCACHE || op == PVBLK_OP_DISCARD;
}

/* 1 if the backend advertised what @op needs (indirect is checked apart). */
static int pvblk_op_advertised(u8 op, const struct pvblk_vdev_limits *lim)
{
	switch (op) {
	case PVBLK_OP_WRITE_BARRIER:
		return !!(lim->flags & PVBLK_VDEV_BARRIER);
	case PVBLK_OP_FLUSH_DISKCACHE:
		return !!(lim->flags & PVBLK_VDEV_FLUSH);
	case PVBLK_OP_DISCARD:
		return !!(lim->flags & PVBLK_VDEV_DISCARD);
	default:
		return 1;
	}
}

/* The sectors one segment covers, or 0 if its bounds are bad. */
static unsigned int pvblk_seg_sectors(u8 first_sect, u8 last_sect)
{
	if (first_sect > last_sect || last_sect >= PVBLK_SECTORS_PER_PAGE)
		return 0;
	return last_sect - first_sect + 1;
}

/* Sectors [@sector, @sector + @count) must lie within the device. */
static int pvblk_check_range(u64 sector, u64 count,
			     const struct pvblk_vdev_limits *lim)
{
	u64 end = sector + count;

	if (!count)
		return 0;	/* a pure flush: no range */
	if (end < sector)
		return -PVBLK_VERR_OVERFLOW;
	if (end > lim->nr_sectors)
		return -PVBLK_VERR_RANGE;
	return 0;
}

/* Read, write, write-barrier, flush-diskcache: struct pvblk_request_rw. */
static int pvblk_check_rw(const struct pvblk_request *req,
			  const struct pvblk_vdev_limits *lim,
			  struct pvblk_req_info *info)
{
	u8 op = req->operation;
	u32 nseg = req->u.rw.nr_segments;
	u32 min_segs = op == PVBLK_OP_READ || op == PVBLK_OP_WRITE ? 1 : 0;
	unsigned int nsec;
	u64 total = 0;
	u32 i;

	if (!pvblk_op_advertised(op, lim))
		return -PVBLK_VERR_NOT_SUPPORTED;
	if (nseg < min_segs || nseg > PVBLK_MAX_SEGMENTS_PER_REQUEST)
		return -PVBLK_VERR_NR_SEGMENTS;
	if (info->writes && (lim->flags & PVBLK_VDEV_READONLY))
		return -PVBLK_VERR_READ_ONLY;
	for (i = 0; i < nseg; i++) {
		nsec = pvblk_seg_sectors(req->u.rw.seg[i].first_sect,
					 req->u.rw.seg[i].last_sect);
		if (!nsec)
			return -PVBLK_VERR_SEGMENT;
		total += nsec;
	}
	info->nr_segments = nseg;
	info->sector_number = req->u.rw.sector_number;
	info->nr_sectors = total;
	return pvblk_check_range(info->sector_number, total, lim);
}

static int pvblk_check_discard(const struct pvblk_request *req,
			       const struct pvblk_vdev_limits *lim,
			       struct pvblk_req_info *info)
{
	if (!pvblk_op_advertised(req->operation, lim))
		return -PVBLK_VERR_NOT_SUPPORTED;
	info->sector_number = req->u.discard.sector_number;
	info->nr_sectors = req->u.discard.nr_sectors;
	if (!info->nr_sectors)
		return -PVBLK_VERR_DISCARD_EMPTY;
	if (lim->flags & PVBLK_VDEV_READONLY)
		return -PVBLK_VERR_READ_ONLY;
	return pvblk_check_range(info->sector_number, info->nr_sectors, lim);
}

/* The request itself; its segments follow in pvblk_validate_indirect_segs. */
static int pvblk_check_indirect(const struct pvblk_request *req,
				const struct pvblk_vdev_limits *lim,
				struct pvblk_req_info *info)
{
	u8 op = req->u.indirect.indirect_op;
	u32 nseg = req->u.indirect.nr_segments;

	if (op != PVBLK_OP_READ && op != PVBLK_OP_WRITE)
		return -PVBLK_VERR_BAD_INDIRECT_OP;
	if (!lim->max_indirect_segs)
		return -PVBLK_VERR_NOT_SUPPORTED;
	if (!nseg || nseg > lim->max_indirect_segs)
		return -PVBLK_VERR_NR_SEGMENTS;
	info->operation = op;
	info->writes = pvblk_op_writes(op);
	if (info->writes && (lim->flags & PVBLK_VDEV_READONLY))
		return -PVBLK_VERR_READ_ONLY;
	info->nr_segments = nseg;
	info->nr_indirect_pages = (nseg + PVBLK_SEGS_PER_INDIRECT_FRAME - 1) /
				  PVBLK_SEGS_PER_INDIRECT_FRAME;
	info->sector_number = req->u.indirect.sector_number;
	return 0;
}

/**
 * pvblk_validate_request - check a request copied out of the shared ring
 * @req: the backend's private copy of the request
 * @lim: what the backend advertised about the device
 * @info: filled in with the checked request (@info->id even on error)
 *
 * For OP_INDIRECT, a 0 return covers the request only: copy the segments
 * from its @info->nr_indirect_pages indirect pages and check them with
 * pvblk_validate_indirect_segs() before doing any I/O.
 *
 * Return: 0 if the request is valid, else -PVBLK_VERR_*.
 */
int pvblk_validate_request(const struct pvblk_request *req,
			   const struct pvblk_vdev_limits *lim,
			   struct pvblk_req_info *info)
{
	if (!req || !lim || !info)
		return -PVBLK_VERR_PARAM;
	*info = (struct pvblk_req_info){
		.id = req->u.other.id,
		.operation = req->operation,
		.writes = pvblk_op_writes(req->operation),
	};
	if (lim->max_indirect_segs > PVBLK_MAX_INDIRECT_SEGMENTS)
		return -PVBLK_VERR_PARAM;

	switch (req->operation) {
	case PVBLK_OP_READ:
	case PVBLK_OP_WRITE:
	case PVBLK_OP_WRITE_BARRIER:
	case PVBLK_OP_FLUSH_DISKCACHE:
		return pvblk_check_rw(req, lim, info);
	case PVBLK_OP_DISCARD:
		return pvblk_check_discard(req, lim, info);
	case PVBLK_OP_INDIRECT:
		return pvblk_check_indirect(req, lim, info);
	default:
		return -PVBLK_VERR_BAD_OP;
	}
}

/**
 * pvblk_validate_indirect_segs - check the segments of an indirect request
 * @segs: private copy of the @info->nr_segments segment descriptors
 * @lim: what the backend advertised about the device
 * @info: as pvblk_validate_request() returned 0 for the OP_INDIRECT request;
 *	  @info->nr_sectors is filled in
 *
 * Return: 0 if the segments and the sector range they make are valid, else
 * -PVBLK_VERR_*.
 */
int pvblk_validate_indirect_segs(const struct pvblk_request_segment *segs,
				 const struct pvblk_vdev_limits *lim,
				 struct pvblk_req_info *info)
{
	unsigned int nsec;
	u64 total = 0;
	u32 i;

	if (!segs || !lim || !info || !info->nr_segments ||
	    info->nr_segments > lim->max_indirect_segs ||
	    info->nr_segments > PVBLK_MAX_INDIRECT_SEGMENTS)
		return -PVBLK_VERR_PARAM;
	for (i = 0; i < info->nr_segments; i++) {
		nsec = pvblk_seg_sectors(segs[i].first_sect, segs[i].last_sect);
		if (!nsec)
			return -PVBLK_VERR_SEGMENT;
		total += nsec;
	}
	info->nr_sectors = total;
	return pvblk_check_range(info->sector_number, total, lim);
}

/**
 * pvblk_validate_ring_prod - is the frontend's producer index plausible?
 * @req_prod: the private copy of the shared ring's req_prod
 * @cons: the oldest request the frontend may not yet reuse: the backend's
 *	  rsp_prod_pvt for the check upstream blkback makes
 *	  (RING_REQUEST_PROD_OVERFLOW), or its req_cons for a looser one
 * @ring_size: entries in the ring, a power of two
 *
 * The indexes are free-running and wrap around; the frontend cannot have
 * more than @ring_size requests outstanding.
 *
 * Return: 0 if plausible, -PVBLK_VERR_RING if not (stop processing the ring),
 * -PVBLK_VERR_PARAM if @ring_size is not a power of two.
 */
int pvblk_validate_ring_prod(u32 req_prod, u32 cons, u32 ring_size)
{
	if (!ring_size || (ring_size & (ring_size - 1)))
		return -PVBLK_VERR_PARAM;
	if ((u32)(req_prod - cons) > ring_size)
		return -PVBLK_VERR_RING;
	return 0;
}

/**
 * pvblk_validate_rsp_status - the response status for a rejected request
 * @err: a return value of pvblk_validate_request() or _indirect_segs()
 *
 * Return: PVBLK_RSP_OKAY for 0, PVBLK_RSP_EOPNOTSUPP for an operation the
 * backend does not know or did not advertise (as upstream answers unknown
 * operations), else PVBLK_RSP_ERROR.
 */
int pvblk_validate_rsp_status(int err)
{
	if (!err)
		return PVBLK_RSP_OKAY;
	if (err == -PVBLK_VERR_BAD_OP || err == -PVBLK_VERR_NOT_SUPPORTED)
		return PVBLK_RSP_EOPNOTSUPP;
	return PVBLK_RSP_ERROR;
}

/**
 * pvblk_validate_strerror - a short reason for a validation result
 * @err: 0 or -PVBLK_VERR_* (a positive PVBLK_VERR_* works too)
 *
 * Return: a static string; "unknown error" for anything else.
 */
const char *pvblk_validate_strerror(int err)
{
	unsigned int code = err < 0 ? 0U - (unsigned int)err : (unsigned int)err;

	if (code >= PVBLK_VERR_COUNT)
		return "unknown error";
	return pvblk_verr_names[code];
}
