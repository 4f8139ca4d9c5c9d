// SPDX-License-Identifier: GPL-2.0
/*
 * pvmem - memory with known contents held while the domain's memory changes under it (xl
 * mem-set: the balloon driver gives pages back to Xen or takes them again): the guests' check
 * that a resize loses no page of a running program.
 *
 *   pvmem SIZE_MIB STOPFILE [PAUSE_MS]
 *       holds SIZE_MIB of anonymous memory; pass after pass, every 4 KiB page is checked to
 *       hold the previous pass's data for that page and rewritten with this pass's, a pause
 *       of PAUSE_MS (default 50) between passes, until STOPFILE exists. Prints "ready" once
 *       every page is written, then at the end "passes P bytes_checked N bad_pages B
 *       max_pass_ms M" (M: the longest pass, CLOCK_MONOTONIC); exit status 1 when a page was
 *       wrong (the first ones are named: "pass P: page G word W holds X, not Y").
 */

#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE		4096
#define WORDS		(PAGE / sizeof(uint64_t))
#define SHOW_BAD	4

static uint64_t word(uint64_t pass, uint64_t page, uint64_t w)
{
	uint64_t x = (pass << 40) ^ (page << 9) ^ w ^ 0x9e3779b97f4a7c15ULL;

	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

static void show_bad(uint64_t pass, uint64_t page, uint64_t w, uint64_t held)
{
	printf("pass %llu: page %llu word %llu holds %llx, not %llx\n",
	       (unsigned long long)pass, (unsigned long long)page, (unsigned long long)w,
	       (unsigned long long)held, (unsigned long long)word(pass - 1, page, w));
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	uint64_t pages, pass, bad = 0, checked = 0, g, w;
	double max_pass = 0, t;
	uint64_t *mem;
	long pause_ms;

	if (argc < 3) {
		fprintf(stderr, "usage: pvmem SIZE_MIB STOPFILE [PAUSE_MS]\n");
		return 2;
	}
	pages = strtoull(argv[1], NULL, 0) * (1024 * 1024 / PAGE);
	pause_ms = argc > 3 ? strtol(argv[3], NULL, 0) : 50;
	mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	if (mem == MAP_FAILED) {
		fprintf(stderr, "pvmem: mmap %llu pages: %s\n", (unsigned long long)pages,
			strerror(errno));
		return 2;
	}
	for (g = 0; g < pages; g++)
		for (w = 0; w < WORDS; w++)
			mem[g * WORDS + w] = word(0, g, w);
	printf("ready\n");
	fflush(stdout);
	for (pass = 1; access(argv[2], F_OK) != 0; pass++) {
		t = now();
		for (g = 0; g < pages; g++) {
			uint64_t *p = mem + g * WORDS;
			int wrong = 0;

			for (w = 0; w < WORDS; w++) {
				if (p[w] != word(pass - 1, g, w) && !wrong++ && bad < SHOW_BAD)
					show_bad(pass, g, w, p[w]);
				p[w] = word(pass, g, w);
			}
			bad += wrong != 0;
		}
		checked += pages * PAGE;
		t = now() - t;
		if (t > max_pass)
			max_pass = t;
		fflush(stdout);
		usleep(pause_ms * 1000);
	}
	printf("passes %llu bytes_checked %llu bad_pages %llu max_pass_ms %.0f\n",
	       (unsigned long long)(pass - 1), (unsigned long long)checked,
	       (unsigned long long)bad, max_pass * 1000);
	return bad ? 1 : 0;
}
