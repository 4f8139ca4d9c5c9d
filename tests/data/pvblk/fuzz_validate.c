// SPDX-License-Identifier: GPL-2.0
/*
 * fuzz_validate.c - fuzz the pvblk backend's request validation.
 *
 * Generates requests as raw ring bytes (seeded xorshift64*, biased towards
 * boundaries: sectors near 0, the device's end and UINT64_MAX, segment counts
 * around the limits, sector bounds around 7/8, every operation byte), runs
 * them through pvblk_validate_request() (and pvblk_validate_indirect_segs()),
 * and checks every verdict against a second checker written here from the
 * protocol rules alone: it reads the raw bytes at the wire offsets and does
 * its arithmetic in 128 bits, so it shares neither code nor structs nor
 * overflow tricks with the validator.
 *
 *  - accepted: no rule is violated, and the returned info (id, sectors,
 *    segments, indirect pages, operation) matches the raw request;
 *  - rejected: the returned reason is one of the rules the request violates
 *    (the exact order is tested in tests/test_pvblk_validate.py).
 *
 * Build with -fsanitize=address,undefined -fno-sanitize-recover=all; run as
 * fuzz_validate [count [seed]]. Prints the counts per verdict; exits non-zero
 * (abort) on the first disagreement.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pvblk_validate.h"

#define REQ_BYTES	112
#define MAX_ISEGS	4096
#define SECTORS_PER_PG	8

typedef unsigned __int128 u128;

static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static int chance(unsigned int percent)
{
	return below(100) < percent;
}

/* A 64-bit value biased towards the edges that matter around @pivot. */
static uint64_t pick_u64(uint64_t pivot)
{
	switch (below(9)) {
	case 0:
		return rnd();
	case 1:
		return UINT64_MAX - below(256);
	case 2:
		return below(64);
	case 3:
		return pivot - below(128);
	case 4:
		return pivot + below(128);
	case 5:
		return pivot == UINT64_MAX ? rnd() : below(pivot + 1);
	case 6:
		return (uint64_t)1 << below(64);
	case 7:
		return ((uint64_t)1 << below(64)) - below(3);
	default:
		return pivot;
	}
}

static void put8(uint8_t *buf, size_t off, uint8_t v)
{
	buf[off] = v;
}

static void put16(uint8_t *buf, size_t off, uint16_t v)
{
	buf[off] = (uint8_t)v;
	buf[off + 1] = (uint8_t)(v >> 8);
}

static void put64(uint8_t *buf, size_t off, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		buf[off + i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *buf, size_t off)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | buf[off + i];
	return v;
}

static uint16_t get16(const uint8_t *buf, size_t off)
{
	return (uint16_t)(buf[off] | buf[off + 1] << 8);
}

/* ---- the independent checker ------------------------------------------- */

/* wire offsets (blkif.h, x86_64) */
#define OFF_OP		0
#define OFF_NSEG	1	/* rw: u8 */
#define OFF_IOP		1	/* indirect */
#define OFF_INSEG	2	/* indirect: u16 */
#define OFF_ID		8
#define OFF_SECTOR	16
#define OFF_SEG		24	/* rw: 8-byte segments, first_sect +4, last +5 */
#define OFF_DNR		24	/* discard: nr_sectors */

struct device {
	uint64_t size;
	uint32_t max_indirect;
	int ro, barrier, flush, discard;
};

struct verdict {
	int violated[PVBLK_VERR_COUNT];	/* rules this request breaks */
	int any;
	u128 sectors;			/* what an accepted request moves */
	uint32_t nseg;
	int op;				/* effective operation */
	int writes;
};

static void violate(struct verdict *v, int rule)
{
	v->violated[rule] = 1;
	v->any = 1;
}

static int seg_ok(int first, int last)
{
	return first >= 0 && first <= last && last <= SECTORS_PER_PG - 1;
}

static void reference(const uint8_t *raw, const uint8_t (*isegs)[2],
		      const struct device *dev, struct verdict *v)
{
	int op = raw[OFF_OP];
	int indirect = op == 6;
	uint32_t nseg = indirect ? get16(raw, OFF_INSEG) : raw[OFF_NSEG];
	uint64_t sector = get64(raw, OFF_SECTOR);
	int known = op == 0 || op == 1 || op == 2 || op == 3 || op == 5 || op == 6;

	memset(v, 0, sizeof(*v));
	v->op = indirect ? raw[OFF_IOP] : op;
	v->writes = v->op == 1 || v->op == 2 || v->op == 3 || v->op == 5;
	v->nseg = nseg;
	if (dev->max_indirect > MAX_ISEGS) {
		violate(v, PVBLK_VERR_PARAM);
		return;
	}
	if (!known) {
		violate(v, PVBLK_VERR_BAD_OP);
		return;
	}
	if (indirect && v->op != 0 && v->op != 1) {
		violate(v, PVBLK_VERR_BAD_INDIRECT_OP);
		return;
	}
	if ((op == 2 && !dev->barrier) || (op == 3 && !dev->flush) ||
	    (op == 5 && !dev->discard) || (indirect && !dev->max_indirect))
		violate(v, PVBLK_VERR_NOT_SUPPORTED);
	if (v->writes && dev->ro)
		violate(v, PVBLK_VERR_READ_ONLY);
	if (op == 5) {
		v->sectors = get64(raw, OFF_DNR);
		if (v->sectors == 0)
			violate(v, PVBLK_VERR_DISCARD_EMPTY);
	} else {
		uint32_t limit = indirect ? dev->max_indirect : 11;
		int may_be_empty = op == 2 || op == 3;

		if (nseg > limit || (nseg == 0 && !may_be_empty)) {
			violate(v, PVBLK_VERR_NR_SEGMENTS);
			return;	/* the segments are not defined */
		}
		for (uint32_t i = 0; i < nseg; i++) {
			int first = indirect ? isegs[i][0] : raw[OFF_SEG + 8 * i + 4];
			int last = indirect ? isegs[i][1] : raw[OFF_SEG + 8 * i + 5];

			if (!seg_ok(first, last)) {
				violate(v, PVBLK_VERR_SEGMENT);
				return;
			}
			v->sectors += (u128)(last - first + 1);
		}
	}
	if (v->sectors && (u128)sector + v->sectors > (u128)UINT64_MAX)
		violate(v, PVBLK_VERR_OVERFLOW);
	if (v->sectors && (u128)sector + v->sectors > (u128)dev->size)
		violate(v, PVBLK_VERR_RANGE);
}

/* ---- generation -------------------------------------------------------- */

static uint8_t iseg_pool[MAX_ISEGS][2];	/* kept valid between requests */

static void valid_seg(uint8_t *first, uint8_t *last)
{
	*first = (uint8_t)below(SECTORS_PER_PG);
	*last = (uint8_t)(*first + below(SECTORS_PER_PG - *first));
}

static void bad_seg(uint8_t *first, uint8_t *last)
{
	switch (below(5)) {
	case 0:
		*first = (uint8_t)(1 + below(7));
		*last = (uint8_t)below(*first);		/* last < first */
		break;
	case 1:
		*first = (uint8_t)below(9);
		*last = SECTORS_PER_PG;			/* one past */
		break;
	case 2:
		*first = SECTORS_PER_PG;
		*last = SECTORS_PER_PG;
		break;
	case 3:
		*first = (uint8_t)rnd();
		*last = 255;
		break;
	default:
		*first = (uint8_t)rnd();
		*last = (uint8_t)rnd();
		break;
	}
}

static void random_device(struct device *dev)
{
	static const uint64_t sizes[] = { 0, 1, 8, 2048, 1ULL << 21, 1ULL << 41,
		UINT64_MAX - 1, UINT64_MAX };
	static const uint32_t maxes[] = { 0, 1, 32, 256, 511, 512, 513, 4095,
		4096 };

	dev->size = chance(60) ? sizes[below(8)] : pick_u64(1ULL << 30);
	if (chance(2))
		dev->max_indirect = 4097 + (uint32_t)below(70000);
	else
		dev->max_indirect = chance(70) ? maxes[below(9)] :
			(uint32_t)below(MAX_ISEGS + 1);
	if (chance(50)) {
		dev->ro = 0;
		dev->barrier = dev->flush = dev->discard = 1;
	} else {
		dev->ro = (int)below(2);
		dev->barrier = (int)below(2);
		dev->flush = (int)below(2);
		dev->discard = (int)below(2);
	}
}

static uint32_t pick_nseg(uint32_t limit, uint32_t hard_max)
{
	switch (below(8)) {
	case 0:
		return 0;
	case 1:
		return limit;
	case 2:
		return limit + 1;
	case 3:
		return limit ? limit - 1 : 0;
	case 4:
		return (uint32_t)below(hard_max + 1);
	default:
		return 1 + (uint32_t)below(limit < 16 ? (limit ? limit : 1) : 16);
	}
}

/* Fill @raw (and the indirect segment pool) with one request. */
static void random_request(uint8_t *raw, const struct device *dev,
			   uint32_t *corrupted)
{
	static const uint8_t ops[] = { 0, 1, 2, 3, 5, 6 };
	uint8_t op = chance(80) ? ops[below(6)] : (uint8_t)rnd();
	uint32_t nseg = 0, total = 0;

	*corrupted = UINT32_MAX;
	if (chance(30)) {
		for (int i = 0; i < REQ_BYTES; i++)
			raw[i] = (uint8_t)rnd();
	} else {
		memset(raw, 0, REQ_BYTES);
	}
	put8(raw, OFF_OP, op);
	put64(raw, OFF_ID, rnd());
	if (op == 5) {
		uint64_t sector = pick_u64(dev->size);
		uint64_t nr = chance(20) ? dev->size - sector + below(3) - 1 :
			pick_u64(dev->size - sector);

		put64(raw, OFF_SECTOR, sector);
		put64(raw, OFF_DNR, chance(5) ? 0 : nr);
		return;
	}
	if (op == 6) {
		put8(raw, OFF_IOP, chance(85) ? (uint8_t)below(2) : (uint8_t)rnd());
		nseg = chance(90) ? pick_nseg(dev->max_indirect, MAX_ISEGS + 1) :
			(uint32_t)(uint16_t)rnd();
		put16(raw, OFF_INSEG, (uint16_t)nseg);
		nseg = (uint16_t)nseg;
		for (int i = 0; i < 8; i++) {
			uint32_t j = (uint32_t)below(MAX_ISEGS);

			valid_seg(&iseg_pool[j][0], &iseg_pool[j][1]);
		}
		if (nseg && nseg <= MAX_ISEGS && chance(25)) {
			*corrupted = (uint32_t)below(nseg);
			bad_seg(&iseg_pool[*corrupted][0],
				&iseg_pool[*corrupted][1]);
		}
		for (uint32_t i = 0; i < nseg && i < MAX_ISEGS; i++)
			total += iseg_pool[i][1] - iseg_pool[i][0] + 1U;
	} else {
		nseg = chance(85) ? pick_nseg(11, 255) : (uint8_t)rnd();
		put8(raw, OFF_NSEG, (uint8_t)nseg);
		for (uint32_t i = 0; i < nseg && i < 11; i++) {
			uint8_t *s = raw + OFF_SEG + 8 * i;

			valid_seg(&s[4], &s[5]);
			total += s[5] - s[4] + 1U;
		}
		if (nseg && nseg <= 11 && chance(25)) {
			uint8_t *s = raw + OFF_SEG + 8 * below(nseg);

			bad_seg(&s[4], &s[5]);
		}
	}
	if (chance(25))
		put64(raw, OFF_SECTOR, dev->size - total + below(3) - 1);
	else
		put64(raw, OFF_SECTOR, pick_u64(dev->size - total));
}

/* ---- checking ---------------------------------------------------------- */

static unsigned long long counts[PVBLK_VERR_COUNT];
static unsigned long long accepted_ops[7];
static unsigned long long requests;

static void fail(const char *what, const uint8_t *raw, int got)
{
	fprintf(stderr, "MISMATCH after %llu requests: %s (validator: %d %s)\n",
		requests, what, got, pvblk_validate_strerror(got));
	for (int i = 0; i < REQ_BYTES; i++)
		fprintf(stderr, "%02x%s", raw[i], i % 16 == 15 ? "\n" : " ");
	abort();
}

/*
 * Exactly-sized heap copies, so that ASan sees any read past the request or
 * past the segments; the request copy sits at every alignment (the struct is
 * packed: the backend's copy may be anywhere).
 */
static uint8_t *req_copies[8];

static int validate(const uint8_t *raw, const struct device *dev,
		    struct pvblk_req_info *info)
{
	size_t shift = (size_t)below(8);
	const struct pvblk_request *req;
	struct pvblk_request_segment *segs;
	struct pvblk_vdev_limits lim = {
		.nr_sectors = dev->size,
		.max_indirect_segs = dev->max_indirect,
		.flags = (dev->ro ? PVBLK_VDEV_READONLY : 0) |
			 (dev->barrier ? PVBLK_VDEV_BARRIER : 0) |
			 (dev->flush ? PVBLK_VDEV_FLUSH : 0) |
			 (dev->discard ? PVBLK_VDEV_DISCARD : 0),
	};
	int err;

	memcpy(req_copies[shift] + shift, raw, REQ_BYTES);
	req = (const struct pvblk_request *)(req_copies[shift] + shift);
	err = pvblk_validate_request(req, &lim, info);
	if (err || raw[OFF_OP] != PVBLK_OP_INDIRECT)
		return err;
	if (info->nr_segments == 0 || info->nr_segments > MAX_ISEGS)
		fail("indirect nr_segments out of bounds after step 1", raw, err);
	segs = malloc(info->nr_segments * sizeof(*segs));
	if (!segs)
		abort();
	for (uint32_t i = 0; i < info->nr_segments; i++) {
		segs[i].gref = (uint32_t)rnd();
		segs[i].first_sect = iseg_pool[i][0];
		segs[i].last_sect = iseg_pool[i][1];
	}
	err = pvblk_validate_indirect_segs(segs, &lim, info);
	free(segs);
	return err;
}

static void check_accepted(const uint8_t *raw, const struct verdict *v,
			   const struct device *dev,
			   const struct pvblk_req_info *info)
{
	uint64_t sector = get64(raw, OFF_SECTOR);

	if (v->any)
		fail("accepted a request that breaks a rule", raw, 0);
	if (info->id != get64(raw, OFF_ID))
		fail("info.id", raw, 0);
	if (info->operation != v->op || info->writes != v->writes)
		fail("info.operation/writes", raw, 0);
	if (raw[OFF_OP] != PVBLK_OP_DISCARD && info->nr_segments != v->nseg)
		fail("info.nr_segments", raw, 0);
	if (info->nr_sectors != v->sectors || info->sector_number != sector)
		fail("info sector range", raw, 0);
	/* the invariants the I/O path relies on */
	if (v->sectors && (u128)sector + v->sectors > (u128)dev->size)
		fail("accepted range beyond the device", raw, 0);
	if (v->writes && dev->ro)
		fail("accepted a write to a read-only device", raw, 0);
	if (raw[OFF_OP] == PVBLK_OP_INDIRECT &&
	    (info->nr_indirect_pages != (v->nseg + 511) / 512 ||
	     info->nr_indirect_pages > 8 || v->nseg > dev->max_indirect))
		fail("info.nr_indirect_pages", raw, 0);
	if (raw[OFF_OP] != PVBLK_OP_INDIRECT && raw[OFF_OP] != PVBLK_OP_DISCARD &&
	    v->nseg > 11)
		fail("accepted more than 11 direct segments", raw, 0);
	accepted_ops[raw[OFF_OP]]++;
}

static void one_request(const struct device *dev)
{
	uint8_t raw[REQ_BYTES];
	struct pvblk_req_info info;
	struct verdict v;
	uint32_t corrupted;
	int err, status;

	random_request(raw, dev, &corrupted);
	err = validate(raw, dev, &info);
	reference(raw, (const uint8_t (*)[2])iseg_pool, dev, &v);
	requests++;
	if (corrupted != UINT32_MAX)
		valid_seg(&iseg_pool[corrupted][0], &iseg_pool[corrupted][1]);
	if (err > 0 || err <= -PVBLK_VERR_COUNT)
		fail("return value out of range", raw, err);
	counts[-err]++;
	if (!err) {
		check_accepted(raw, &v, dev, &info);
	} else {
		if (!v.violated[-err])
			fail("rejected for a rule the request does not break",
			     raw, err);
		if (info.id != get64(raw, OFF_ID))
			fail("info.id not set on error", raw, err);
	}
	status = pvblk_validate_rsp_status(err);
	if (status != (!err ? 0 : (err == -PVBLK_VERR_BAD_OP ||
				   err == -PVBLK_VERR_NOT_SUPPORTED) ? -2 : -1))
		fail("response status", raw, err);
}

static unsigned long long ring_ok, ring_bad, ring_param;

static void one_ring_check(void)
{
	uint32_t size = chance(95) ? 1U << below(32) : (uint32_t)rnd();
	uint32_t cons = (uint32_t)rnd();
	uint32_t prod;
	uint64_t dist;
	int err, want;

	switch (below(4)) {
	case 0:
		prod = (uint32_t)rnd();
		break;
	case 1:
		prod = cons + size + (uint32_t)below(3) - 1;
		break;
	case 2:
		prod = cons - (uint32_t)below(3);
		break;
	default:
		prod = cons + (uint32_t)below((uint64_t)size + 1);
		break;
	}
	err = pvblk_validate_ring_prod(prod, cons, size);
	dist = ((uint64_t)prod + (1ULL << 32) - cons) % (1ULL << 32);
	if (size == 0 || __builtin_popcount(size) != 1)
		want = -PVBLK_VERR_PARAM;
	else
		want = dist <= size ? 0 : -PVBLK_VERR_RING;
	if (err != want) {
		fprintf(stderr, "ring: prod %u cons %u size %u: got %d want %d\n",
			prod, cons, size, err, want);
		abort();
	}
	if (!err)
		ring_ok++;
	else if (err == -PVBLK_VERR_RING)
		ring_bad++;
	else
		ring_param++;
}

int main(int argc, char **argv)
{
	unsigned long long n = argc > 1 ? strtoull(argv[1], NULL, 0) : 1000000;
	uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 0x9e3779b97f4a7c15ULL;
	struct device dev;

	rng_state = seed ? seed : 1;
	for (size_t i = 0; i < 8; i++) {
		req_copies[i] = malloc(REQ_BYTES + i);
		if (!req_copies[i])
			return 1;
	}
	for (int i = 0; i < MAX_ISEGS; i++)
		valid_seg(&iseg_pool[i][0], &iseg_pool[i][1]);
	for (int i = 1; i < PVBLK_VERR_COUNT; i++) {
		if (!strcmp(pvblk_validate_strerror(-i), "unknown error"))
			return fprintf(stderr, "no reason string for %d\n", i), 1;
	}
	while (requests < n) {
		if (requests % 16 == 0)
			random_device(&dev);
		one_request(&dev);
		one_ring_check();
	}
	printf("seed %#llx\n", (unsigned long long)seed);
	printf("requests %llu\n", requests);
	printf("accepted %llu\n", counts[0]);
	for (int op = 0; op < 7; op++) {
		if (accepted_ops[op])
			printf("accepted-op %d %llu\n", op, accepted_ops[op]);
	}
	for (int i = 1; i < PVBLK_VERR_COUNT; i++)
		printf("rejected %s: %llu\n", pvblk_validate_strerror(-i),
		       counts[i]);
	printf("ring-checks %llu ok %llu bogus %llu bad-size %llu\n",
	       ring_ok + ring_bad + ring_param, ring_ok, ring_bad, ring_param);
	return 0;
}
