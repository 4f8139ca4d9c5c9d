// SPDX-License-Identifier: GPL-2.0
/*
 * pvblkpat - a block device written over and over with known data, with requests always in
 * flight, then every block verified: the guests' check that a save, restore or migration
 * lost no write and completed none twice with stale data.
 *
 *   pvblkpat write DEV SEED STOPFILE [BLOCK_KIB [DEPTH [PAUSE_MS]]]
 *       pass after pass over the whole device, DEPTH asynchronous O_DIRECT writes of
 *       BLOCK_KIB (default 256 KiB, depth 16) in flight at once (Linux native AIO), a pause
 *       of PAUSE_MS (default 0) between passes; pass P writes block B with data that only
 *       (SEED, P, B) gives. Each pass is read back (the same way) and compared before the
 *       next one overwrites it, so a write lost in any pass is found. Once STOPFILE exists
 *       (or a block was wrong) the pass under way is finished, and it prints
 *       "passes P bytes N max_stall_ms S bad_blocks K" (S: the longest time without a
 *       completed request, pauses aside), then "stall MS at T" for each time none completed
 *       for more than 250 ms (T: when it began, CLOCK_MONOTONIC seconds); exit status 1 when
 *       a block was wrong (the first ones are named: "pass P: block B holds pass Q block R")
 *       or a request failed.
 *   pvblkpat verify DEV SEED PASS [BLOCK_KIB]
 *       every block must hold pass PASS's data: prints "verified N bytes, M bad blocks"
 *       and, for the first bad ones, what they hold (the pass and block of their header).
 *
 * The processes waiting in io_getevents are frozen by a guest's suspend (EINTR, retried),
 * so requests stay on the ring across it; a frontend must re-issue them.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAGIC		0x7076626cU	/* "pvbl" */
#define MAX_DEPTH	64
#define SHOW_BAD	4
#define STALL_MIN	0.25
#define MAX_STALLS	32

struct blkhdr {
	uint32_t magic, seed, pass, block;
};

static void die(const char *what)
{
	fprintf(stderr, "pvblkpat: %s: %s\n", what, strerror(errno));
	exit(2);
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

/* The data of block @block in pass @pass: a header, then a stream only these give. */
static void fill(unsigned char *buf, size_t len, uint32_t seed, uint32_t pass, uint32_t block)
{
	struct blkhdr h = { MAGIC, seed, pass, block };
	uint64_t s = mix(((uint64_t)seed << 40) ^ ((uint64_t)pass << 20) ^ block) | 1;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		memcpy(buf + i, &s, 8);
	}
	memcpy(buf, &h, sizeof(h));
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int open_dev(const char *path, int flags, uint64_t *size)
{
	struct stat st;
	int fd;

	fd = open(path, flags | O_DIRECT);
	if (fd < 0 && errno == EINVAL)	/* a file system without O_DIRECT (tests on the host) */
		fd = open(path, flags);
	if (fd < 0)
		die(path);
	if (fstat(fd, &st))
		die(path);
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, size))
			die("BLKGETSIZE64");
	} else {
		*size = st.st_size;
	}
	return fd;
}

/* One pass's writes or reads in flight: the AIO context, its slots and what they measure. */
struct runner {
	aio_context_t ctx;
	int fd, depth;
	size_t bs;
	uint64_t nblocks, bytes;
	uint32_t seed;
	unsigned char *bufs[MAX_DEPTH], *want;
	double last, stall, stalls[MAX_STALLS][2];
	int nstalls;
	unsigned long long bad;
};

/* A block read back in pass @pass that does not hold what the pass wrote: say what it holds. */
static void report_bad(struct runner *r, const unsigned char *have, uint32_t pass, uint64_t b)
{
	struct blkhdr h;

	if (r->bad++ >= SHOW_BAD)
		return;
	memcpy(&h, have, sizeof(h));
	if (h.magic == MAGIC && h.seed == r->seed)
		printf("pass %u: block %llu holds pass %u block %u%s\n", pass,
		       (unsigned long long)b, h.pass, h.block,
		       h.pass == pass && h.block == b ? " with other data" : "");
	else
		printf("pass %u: block %llu holds no pattern of seed %u\n", pass,
		       (unsigned long long)b, r->seed);
}

/*
 * Every block of the device once, @depth requests in flight: pass @pass's data written
 * (@op IOCB_CMD_PWRITE), or read back and compared with it (IOCB_CMD_PREAD). 0, or 1 when
 * a request failed.
 */
static int run_pass(struct runner *r, int op, uint32_t pass)
{
	static struct iocb cbs[MAX_DEPTH];
	struct io_event ev[MAX_DEPTH];
	struct iocb *ptr[1];
	int free_slot[MAX_DEPTH], nfree = 0, busy = 0, i, k, n;
	uint64_t next = 0, b;
	double t;

	for (i = 0; i < r->depth; i++)
		free_slot[nfree++] = i;
	while (next < r->nblocks || busy) {
		while (nfree && next < r->nblocks) {
			i = free_slot[--nfree];
			if (op == IOCB_CMD_PWRITE)
				fill(r->bufs[i], r->bs, r->seed, pass, (uint32_t)next);
			memset(&cbs[i], 0, sizeof(cbs[i]));
			cbs[i].aio_data = (uint64_t)i;
			cbs[i].aio_lio_opcode = op;
			cbs[i].aio_fildes = r->fd;
			cbs[i].aio_buf = (uint64_t)(uintptr_t)r->bufs[i];
			cbs[i].aio_nbytes = r->bs;
			cbs[i].aio_offset = next * r->bs;
			ptr[0] = &cbs[i];
			while (syscall(SYS_io_submit, r->ctx, 1, ptr) != 1)
				if (errno != EINTR && errno != EAGAIN)
					die("io_submit");
			next++;
			busy++;
		}
		n = syscall(SYS_io_getevents, r->ctx, 1, busy, ev, NULL);
		if (n < 0) {
			if (errno == EINTR)	/* frozen for a suspend, and thawed */
				continue;
			die("io_getevents");
		}
		t = now_s();
		if (t - r->last > r->stall)
			r->stall = t - r->last;
		if (t - r->last > STALL_MIN && r->nstalls < MAX_STALLS) {
			r->stalls[r->nstalls][0] = t - r->last;
			r->stalls[r->nstalls++][1] = r->last;
		}
		r->last = t;
		for (k = 0; k < n; k++) {
			i = (int)ev[k].data;
			b = cbs[i].aio_offset / r->bs;
			if (ev[k].res != (int64_t)r->bs) {
				printf("pass %u: %s of block %llu failed: %lld\n", pass,
				       op == IOCB_CMD_PWRITE ? "write" : "read",
				       (unsigned long long)b, (long long)ev[k].res);
				return 1;
			}
			if (op == IOCB_CMD_PWRITE) {
				r->bytes += r->bs;
			} else {
				fill(r->want, r->bs, r->seed, pass, (uint32_t)b);
				if (memcmp(r->want, r->bufs[i], r->bs))
					report_bad(r, r->bufs[i], pass, b);
			}
			free_slot[nfree++] = i;
			busy--;
		}
	}
	return 0;
}

static int do_write(const char *dev, uint32_t seed, const char *stop, size_t bs, int depth,
		    int pause_ms)
{
	struct runner r = { .depth = depth, .bs = bs, .seed = seed };
	uint64_t size;
	uint32_t pass = 0;
	int i, rc = 0;

	r.fd = open_dev(dev, O_RDWR, &size);
	r.nblocks = size / bs;
	if (!r.nblocks) {
		fprintf(stderr, "pvblkpat: %s is smaller than one block\n", dev);
		return 2;
	}
	if (syscall(SYS_io_setup, depth, &r.ctx))
		die("io_setup");
	for (i = 0; i < depth; i++)
		if (posix_memalign((void **)&r.bufs[i], 4096, bs))
			die("posix_memalign");
	if (posix_memalign((void **)&r.want, 4096, bs))
		die("posix_memalign");
	r.last = now_s();
	do {
		if (pass && pause_ms) {
			usleep(pause_ms * 1000);
			r.last = now_s();
		}
		pass++;
		/* written, then read back before the next pass overwrites it */
		rc = run_pass(&r, IOCB_CMD_PWRITE, pass) || run_pass(&r, IOCB_CMD_PREAD, pass);
	} while (!rc && !r.bad && access(stop, F_OK));
	printf("passes %u bytes %llu max_stall_ms %.0f bad_blocks %llu\n", pass,
	       (unsigned long long)r.bytes, r.stall * 1000, r.bad);
	for (i = 0; i < r.nstalls; i++)
		printf("stall %.0f at %.2f\n", r.stalls[i][0] * 1000, r.stalls[i][1]);
	return rc || r.bad ? 1 : 0;
}

static int do_verify(const char *dev, uint32_t seed, uint32_t pass, size_t bs)
{
	unsigned char *want, *have;
	uint64_t size, nblocks, b, bad = 0;
	int fd;

	fd = open_dev(dev, O_RDONLY, &size);
	nblocks = size / bs;
	if (posix_memalign((void **)&want, 4096, bs) || posix_memalign((void **)&have, 4096, bs))
		die("posix_memalign");
	for (b = 0; b < nblocks; b++) {
		ssize_t n = pread(fd, have, bs, (off_t)(b * bs));

		if (n != (ssize_t)bs)
			die("read");
		fill(want, bs, seed, pass, (uint32_t)b);
		if (!memcmp(want, have, bs))
			continue;
		if (bad++ < SHOW_BAD) {
			struct blkhdr h;

			memcpy(&h, have, sizeof(h));
			if (h.magic == MAGIC && h.seed == seed)
				printf("block %llu holds pass %u block %u%s\n", (unsigned long long)b,
				       h.pass, h.block, h.pass == pass && h.block == b ?
				       " with other data" : "");
			else
				printf("block %llu holds no pattern of seed %u\n",
				       (unsigned long long)b, seed);
		}
	}
	printf("verified %llu bytes, %llu bad blocks\n", (unsigned long long)(nblocks * bs),
	       (unsigned long long)bad);
	return bad ? 1 : 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: pvblkpat write DEV SEED STOPFILE [BLOCK_KIB [DEPTH [PAUSE_MS]]]\n"
		"       pvblkpat verify DEV SEED PASS [BLOCK_KIB]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	size_t bs;

	if (argc < 5)
		usage();
	if (!strcmp(argv[1], "write")) {
		int depth = argc > 6 ? atoi(argv[6]) : 16;
		int pause_ms = argc > 7 ? atoi(argv[7]) : 0;

		bs = (argc > 5 ? strtoul(argv[5], NULL, 0) : 256) * 1024;
		if (!bs || depth < 1 || depth > MAX_DEPTH || pause_ms < 0)
			usage();
		return do_write(argv[2], strtoul(argv[3], NULL, 0), argv[4], bs, depth,
				pause_ms);
	}
	if (!strcmp(argv[1], "verify")) {
		bs = (argc > 5 ? strtoul(argv[5], NULL, 0) : 256) * 1024;
		if (!bs)
			usage();
		return do_verify(argv[2], strtoul(argv[3], NULL, 0), strtoul(argv[4], NULL, 0), bs);
	}
	usage();
	return 2;
}
