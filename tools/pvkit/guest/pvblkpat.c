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
 *       (SEED, P, B) gives. Once STOPFILE exists the pass under way is finished, and it
 *       prints "passes P bytes N max_stall_ms S" (S: the longest time without a completed
 *       write, pauses aside), then "stall MS at T" for each time no write completed for
 *       more than 250 ms (T: when it began, CLOCK_MONOTONIC seconds).
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

static int do_write(const char *dev, uint32_t seed, const char *stop, size_t bs, int depth,
		    int pause_ms)
{
	static struct iocb cbs[MAX_DEPTH];
	struct iocb *ptr[1];
	struct io_event ev[MAX_DEPTH];
	unsigned char *bufs[MAX_DEPTH];
	aio_context_t ctx = 0;
	uint64_t size, nblocks, next = 0, bytes = 0;
	uint32_t pass = 1;
	double last, stall = 0, stalls[MAX_STALLS][2];
	int fd, i, busy = 0, stopping = 0, free_slot[MAX_DEPTH], nfree = 0, nstalls = 0;

	fd = open_dev(dev, O_WRONLY, &size);
	nblocks = size / bs;
	if (!nblocks) {
		fprintf(stderr, "pvblkpat: %s is smaller than one block\n", dev);
		return 2;
	}
	if (syscall(SYS_io_setup, depth, &ctx))
		die("io_setup");
	for (i = 0; i < depth; i++) {
		if (posix_memalign((void **)&bufs[i], 4096, bs))
			die("posix_memalign");
		free_slot[nfree++] = i;
	}
	last = now_s();
	for (;;) {
		/* fill the queue: the rest of this pass (and of the next, unless stopping) */
		while (nfree) {
			if (next == nblocks) {
				if (stopping || !access(stop, F_OK)) {
					stopping = 1;
					break;
				}
				if (busy)	/* the pass ends before the next begins */
					break;
				if (pause_ms) {
					usleep(pause_ms * 1000);
					last = now_s();
				}
				next = 0;
				pass++;
			}
			i = free_slot[--nfree];
			fill(bufs[i], bs, seed, pass, (uint32_t)next);
			memset(&cbs[i], 0, sizeof(cbs[i]));
			cbs[i].aio_data = (uint64_t)i;
			cbs[i].aio_lio_opcode = IOCB_CMD_PWRITE;
			cbs[i].aio_fildes = fd;
			cbs[i].aio_buf = (uint64_t)(uintptr_t)bufs[i];
			cbs[i].aio_nbytes = bs;
			cbs[i].aio_offset = next * bs;
			ptr[0] = &cbs[i];
			while (syscall(SYS_io_submit, ctx, 1, ptr) != 1)
				if (errno != EINTR && errno != EAGAIN)
					die("io_submit");
			next++;
			busy++;
		}
		if (!busy)
			break;
		int n = syscall(SYS_io_getevents, ctx, 1, busy, ev, NULL);

		if (n < 0) {
			if (errno == EINTR)	/* frozen for a suspend, and thawed */
				continue;
			die("io_getevents");
		}
		double t = now_s();

		if (t - last > stall)
			stall = t - last;
		if (t - last > STALL_MIN && nstalls < MAX_STALLS) {
			stalls[nstalls][0] = t - last;
			stalls[nstalls++][1] = last;
		}
		last = t;
		for (int k = 0; k < n; k++) {
			if (ev[k].res != (int64_t)bs) {
				fprintf(stderr, "pvblkpat: write of block %llu failed in pass %u: %lld\n",
					(unsigned long long)(((struct iocb *)(uintptr_t)ev[k].obj)->aio_offset / bs),
					pass, (long long)ev[k].res);
				return 1;
			}
			free_slot[nfree++] = (int)ev[k].data;
			busy--;
			bytes += bs;
		}
	}
	printf("passes %u bytes %llu max_stall_ms %.0f\n", pass, (unsigned long long)bytes,
	       stall * 1000);
	for (i = 0; i < nstalls; i++)
		printf("stall %.0f at %.2f\n", stalls[i][0] * 1000, stalls[i][1]);
	return 0;
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
