/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pvblk_validate.h - the backend's checks of requests from a hostile frontend.
 *
 * Every field of a request comes from the frontend and may be anything. The
 * backend copies a request out of the shared ring into private memory first
 * (never re-reading the ring: the frontend can change it at any time) and
 * passes the copy here. A request that passes may be turned into block I/O
 * without further range checks; one that fails gets a response with the
 * status pvblk_validate_rsp_status() gives and no I/O.
 *
 * Checks, in this order (the first failure is returned):
 *  1. operation is one of OP_READ, OP_WRITE, OP_WRITE_BARRIER,
 *     OP_FLUSH_DISKCACHE, OP_DISCARD, OP_INDIRECT           (BAD_OP)
 *  2. an indirect request's indirect_op is OP_READ or OP_WRITE (BAD_INDIRECT_OP)
 *  3. the backend advertised the feature the operation needs:
 *     feature-barrier, feature-flush-cache, feature-discard, or a non-zero
 *     feature-max-indirect-segments                          (NOT_SUPPORTED)
 *  4. nr_segments is 1..MAX_SEGMENTS_PER_REQUEST for read/write, and
 *     0..MAX_SEGMENTS_PER_REQUEST for barrier/flush (0 is a pure flush, as in
 *     upstream blkback); 1..max_indirect_segs for indirect    (NR_SEGMENTS);
 *     a discard's nr_sectors is not 0                        (DISCARD_EMPTY)
 *  5. the device is writable if the operation writes (write, barrier, flush,
 *     discard, indirect write)                               (READ_ONLY)
 *  6. every segment has first_sect <= last_sect < SECTORS_PER_PAGE (SEGMENT)
 *  7. sector_number + number of sectors does not wrap around u64 (OVERFLOW)
 *  8. the range ends at or before the end of the device      (RANGE)
 * A request that transfers no sectors (a pure flush) has no range to check:
 * its sector_number is ignored, as upstream does.
 *
 * Grant references (segment grefs, indirect_grefs) are not checked: any u32
 * may name a valid grant of the frontend, and only the hypervisor knows
 * which do. It checks them when the backend maps or copies them, and a bad
 * one makes that hypercall fail, which the backend reports as RSP_ERROR.
 * Upstream blkback does the same.
 *
 * Indirect requests are checked in two steps: pvblk_validate_request()
 * checks the request itself (1-5) and says how many indirect pages to map;
 * after copying info->nr_segments segment descriptors out of those pages
 * into private memory, pvblk_validate_indirect_segs() checks them (6-8).
 *
 * The code is plain C for the kernel and for user-space tests alike.
 */

#ifndef _PVBLK_VALIDATE_H
#define _PVBLK_VALIDATE_H

#include "pvblk_proto.h"

/* Reasons for rejecting a request; functions return 0 or -PVBLK_VERR_*. */
enum pvblk_verr {
	PVBLK_VERR_BAD_OP = 1,		/* unknown operation */
	PVBLK_VERR_BAD_INDIRECT_OP,	/* indirect_op not read or write */
	PVBLK_VERR_NOT_SUPPORTED,	/* feature not advertised */
	PVBLK_VERR_NR_SEGMENTS,		/* nr_segments out of range */
	PVBLK_VERR_DISCARD_EMPTY,	/* discard of 0 sectors */
	PVBLK_VERR_READ_ONLY,		/* write to a read-only device */
	PVBLK_VERR_SEGMENT,		/* bad first_sect/last_sect */
	PVBLK_VERR_OVERFLOW,		/* sector range wraps around */
	PVBLK_VERR_RANGE,		/* sector range past end of device */
	PVBLK_VERR_RING,		/* implausible ring producer index */
	PVBLK_VERR_PARAM,		/* bad argument from the backend itself */
	PVBLK_VERR_COUNT		/* number of codes + 1 */
};

/* What the backend advertised about a device: pvblk_vdev_limits.flags */
#define PVBLK_VDEV_READONLY	0x1U	/* mode "r": no writes */
#define PVBLK_VDEV_BARRIER	0x2U	/* feature-barrier = 1 */
#define PVBLK_VDEV_FLUSH	0x4U	/* feature-flush-cache = 1 */
#define PVBLK_VDEV_DISCARD	0x8U	/* feature-discard = 1 */

struct pvblk_vdev_limits {
	u64 nr_sectors;		/* device size, in 512-byte sectors */
	u32 max_indirect_segs;	/* feature-max-indirect-segments; 0: none */
	u32 flags;		/* PVBLK_VDEV_* */
};

/* A checked request, as the backend needs it for the I/O and the response. */
struct pvblk_req_info {
	u64 id;			/* echo in the response (valid even on error) */
	u64 sector_number;	/* first sector */
	u64 nr_sectors;		/* sectors transferred or discarded */
	u32 nr_segments;	/* inline or indirect segments */
	u16 nr_indirect_pages;	/* indirect_grefs[] entries to map */
	u8 operation;		/* the operation to do: indirect_op if indirect */
	u8 writes;		/* 1 if the operation writes to the device */
};

int pvblk_validate_request(const struct pvblk_request *req,
			   const struct pvblk_vdev_limits *lim,
			   struct pvblk_req_info *info);
int pvblk_validate_indirect_segs(const struct pvblk_request_segment *segs,
				 const struct pvblk_vdev_limits *lim,
				 struct pvblk_req_info *info);
int pvblk_validate_ring_prod(u32 req_prod, u32 cons, u32 ring_size);
int pvblk_validate_rsp_status(int err);
const char *pvblk_validate_strerror(int err);

#endif /* _PVBLK_VALIDATE_H */
