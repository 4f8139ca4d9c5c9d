/*
 * pvbench - lmbench-style microbenchmarks for measuring paravirtualization
 * overhead (native vs. Xen dom0 vs. PV domU), modelled on the lmbench
 * columns of Barham et al., "Xen and the Art of Virtualization", SOSP 2003.
 *
 * Build:  gcc -O2 -static -Wall -Wextra -o pvbench pvbench.c
 * Usage:  pvbench [-r REPEATS] [-s SCALE] [-l] [NAME...]
 *
 *   -l          list benchmark names, one per line, and exit
 *   -r REPEATS  measure each benchmark REPEATS times (default 3)
 *   -s SCALE    multiply every iteration count by SCALE (default 1.0)
 *   NAME...     run only these benchmarks (still in the fixed order below);
 *               an unknown name is an error (exit status 2)
 *   --exit      (as the first argument) exit 0 at once; used by "exec"
 *
 * Iteration counts are fixed numbers times SCALE, never calibrated against
 * the clock: under QEMU -icount guest time is a function of the instructions
 * executed, so every run does identical work.  Each benchmark is warmed up
 * once with a small, fixed number of iterations before it is timed with
 * clock_gettime(CLOCK_MONOTONIC).  The file system benchmarks are warmed up
 * with a full pass, so that every timed pass finds the same slab caches.
 *
 * Reproducibility between boots: pvbench re-executes itself once with
 * address space randomization off (personality ADDR_NO_RANDOMIZE, inherited
 * by its children), so mappings land at the same addresses in every run and
 * need the same page-table pages.  Before every timed pass it sleeps
 * SETTLE_MS (idle guest time, free under icount) so that deferred kernel work
 * of the previous pass (RCU callbacks freeing inodes, dentries and page
 * tables, reaped children) runs outside the timed window.
 *
 * Output (stdout, flushed after every line):
 *
 *   info <name>: <description> (<iterations> iterations)
 *   metric <name>.r<k> <value> <unit>          k = 1..REPEATS
 *
 * <value> is printed with 4 decimals.  <unit> is "us" (microseconds per
 * operation) unless noted otherwise below.  A benchmark that cannot run
 * prints "info <name>: skipped (<reason>)" and no metric lines.  If a system
 * call fails, "pvbench: <name>: <what failed>: <strerror>" goes to stderr and
 * the exit status is 1.
 *
 * Each reported value is the median of up to CHUNKS consecutive timed runs
 * of about 1/CHUNKS of the iterations (whole quanta; fewer runs if there
 * are fewer quanta): a burst of unrelated guest activity (a timer-driven
 * kernel or dom0 job) lands in one of them and does not move the median.
 * The file system benchmarks are timed whole: their unit of work is a
 * directory of N files.
 *
 * With PVBENCH_WARMUP=0 in the environment there is no warm-up pass (for
 * counting what exactly the timed passes cause, e.g. with pvstat).
 *
 * Temporary files live in /tmp (or in $PVBENCH_TMPDIR if set): pvbench.stat
 * (empty file), pvbench.map (4 MiB of data) and the directory pvbench.d; all
 * are removed at exit.
 *
 * Benchmarks (base iteration counts in brackets):
 *
 *   null_call        syscall(SYS_getppid), bypassing any libc caching [200000]
 *   stat             stat() of pvbench.stat [50000]
 *   open_close       open(O_RDONLY) + close() of pvbench.stat [50000]
 *   sig_install      sigaction(SIGUSR1) installing a handler [100000]
 *   sig_handle       kill(self, SIGUSR1) incl. delivery to the handler [50000]
 *   fork             fork(); child _exit(0); parent waitpid() [1000]
 *   exec             fork() + execve() of this binary ("--exit") + waitpid()
 *                    [500]; the path comes from readlink("/proc/self/exe")
 *                    (falling back to argv[0] if it contains a '/')
 *   sh               fork() + execve("/bin/sh", "-c", "exit 0") + waitpid()
 *                    [300]; skipped if /bin/sh is not executable
 *   ctx_2p/8p/16p    lat_ctx-style context switch with a 0 KB working set:
 *                    N processes in a ring of pipes pass a 1-byte token;
 *                    value = total time / number of token passes [20000,
 *                    rounded up to a multiple of N].  Not corrected for the
 *                    pipe read/write cost, which is included.  All ring
 *                    members are pinned to the CPU the parent is running on,
 *                    so every pass is a real context switch.
 *   pipe_lat         1-byte round trip between two (unpinned) processes over
 *                    two pipes, per round trip [20000]
 *   mmap             mmap(MAP_SHARED, PROT_READ) of the 4 MiB pvbench.map,
 *                    read one byte per 16 KiB, munmap() [500]
 *   page_fault       lat_pagefault-style: mmap(MAP_PRIVATE, PROT_READ) the
 *                    4 MiB file, read one byte of each 4 KiB page, munmap();
 *                    only the reads are timed, value is per page [1024 pages
 *                    x 200 mappings; rounded up to whole mappings].  Note that
 *                    Linux "fault-around" (64 KiB by default) maps up to 16
 *                    page-cache pages per hardware fault, as it does for
 *                    lmbench's lat_pagefault.
 *   prot_fault       write to a PROT_READ page; the SIGSEGV handler
 *                    (SA_SIGINFO) mprotect()s it read-write, the main loop
 *                    mprotect()s it back to read-only; per fault [20000]
 *   file_create_0k   create (open O_CREAT|O_EXCL + close) files in the fresh
 *                    directory pvbench.d, per file [5000]
 *   file_delete_0k   unlink() those files, per file [5000]
 *   file_create_10k  as file_create_0k, writing 10 KiB to each file [1000]
 *   file_delete_10k  unlink() of the 10 KiB files [1000]
 *                    (each create/delete benchmark does its own untimed
 *                    delete/create half, so any of them can run alone)
 *   mem_touch_1m     mmap() 1 MiB anonymous, write one byte per 4 KiB page,
 *                    munmap(); per 1 MiB mapping [500]
 *   mem_bw           memcpy() of an 8 MiB buffer; unit "MB/s" with
 *                    MB = 2^20 bytes [20 copies]
 *   cpu_loop         xorshift64 integer loop; unit "us/Miter" (us per million
 *                    iterations) [50000000].  A control: paravirtualization
 *                    should not change it.
 *
 * Linux x86_64 only (4 KiB pages are assumed).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE_SZ		4096L
#define MAP_SZ		(4L << 20)
#define MAP_STRIDE	(16L << 10)
#define TOUCH_SZ	(1L << 20)
#define MEMBW_SZ	(8L << 20)
#define FILE_10K	(10L << 10)
#define MAX_RING	16
#define SETTLE_MS	20
#define CHUNKS		5

enum unit { U_US, U_MBS, U_USMITER };

struct bench {
	const char *name;
	const char *desc;
	long base;		/* iterations at scale 1.0 */
	long warm;		/* warm-up iterations (not scaled; 0: a full pass) */
	long quantum;		/* iterations are rounded up to a multiple (0: 1) */
	int arg;		/* benchmark specific */
	int whole;		/* time all iterations at once (no chunks) */
	enum unit unit;
	const char *needs;	/* executable that must exist, or NULL */
	long long (*fn)(const struct bench *b, long n);	/* returns ns */
};

static const char *cur = "setup";	/* benchmark name for error messages */
static int in_child;
static int warmup = 1;
static double scale = 1.0;
static char *stat_path, *map_path, *dir_path;
static char self_exe[PATH_MAX];
static volatile uint64_t sink;
static volatile long usr1_count;
static volatile long segv_count;
static char *prot_page;
static char file_buf[FILE_10K];

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "pvbench: %s: %s: %s\n", cur, what, detail);
	if (in_child)
		_exit(1);
	exit(1);
}

static void die(const char *what)
{
	fail(what, strerror(errno));
}

static long long now_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts))
		die("clock_gettime");
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static char *path_join(const char *dir, const char *name)
{
	size_t len = strlen(dir) + strlen(name) + 2;
	char *p = malloc(len);

	if (!p)
		die("malloc");
	snprintf(p, len, "%s/%s", dir, name);
	return p;
}

static void reap(pid_t pid)
{
	char detail[64];
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			die("waitpid");
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return;
	if (WIFEXITED(st))
		snprintf(detail, sizeof(detail), "exit status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(detail, sizeof(detail), "killed by signal %d", WTERMSIG(st));
	else
		snprintf(detail, sizeof(detail), "wait status %#x", st);
	fail("child process failed", detail);
}

static pid_t xfork(void)
{
	pid_t pid = fork();

	if (pid < 0)
		die("fork");
	if (pid == 0)
		in_child = 1;
	return pid;
}

static void put1(int fd)
{
	char c = 'x';
	ssize_t r;

	while ((r = write(fd, &c, 1)) < 0 && errno == EINTR)
		;
	if (r != 1)
		die("write to pipe");
}

/* Returns 0 on end of file. */
static int get1(int fd)
{
	char c;
	ssize_t r;

	while ((r = read(fd, &c, 1)) < 0 && errno == EINTR)
		;
	if (r < 0)
		die("read from pipe");
	return r == 1;
}

/* Child side of the pipe benchmarks: forward bytes until end of file. */
static void relay(int rfd, int wfd)
{
	while (get1(rfd))
		put1(wfd);
	_exit(0);
}

static void *xmmap(size_t len, int prot, int flags, int fd)
{
	void *p = mmap(NULL, len, prot, flags, fd, 0);

	if (p == MAP_FAILED)
		die("mmap");
	return p;
}

static void xmunmap(void *p, size_t len)
{
	if (munmap(p, len))
		die("munmap");
}

static int open_map_file(void)
{
	int fd = open(map_path, O_RDONLY);

	if (fd < 0)
		die("open pvbench.map");
	return fd;
}

/* ---- system calls ---------------------------------------------------- */

static long long b_null_call(const struct bench *b, long n)
{
	long long t0 = now_ns();

	(void)b;
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	return now_ns() - t0;
}

static long long b_stat(const struct bench *b, long n)
{
	struct stat st;
	long long t0 = now_ns();

	(void)b;
	for (long i = 0; i < n; i++)
		if (stat(stat_path, &st))
			die("stat");
	return now_ns() - t0;
}

static long long b_open_close(const struct bench *b, long n)
{
	long long t0 = now_ns();

	(void)b;
	for (long i = 0; i < n; i++) {
		int fd = open(stat_path, O_RDONLY);

		if (fd < 0)
			die("open");
		if (close(fd))
			die("close");
	}
	return now_ns() - t0;
}

/* ---- signals ----------------------------------------------------------- */

static void usr1_handler(int sig)
{
	(void)sig;
	usr1_count++;
}

static void install_usr1(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = usr1_handler;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL))
		die("sigaction");
}

static long long b_sig_install(const struct bench *b, long n)
{
	struct sigaction sa;
	long long t0;

	(void)b;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = usr1_handler;
	sigemptyset(&sa.sa_mask);
	t0 = now_ns();
	for (long i = 0; i < n; i++)
		if (sigaction(SIGUSR1, &sa, NULL))
			die("sigaction");
	return now_ns() - t0;
}

static long long b_sig_handle(const struct bench *b, long n)
{
	pid_t me = getpid();
	long long t0, t1;

	(void)b;
	install_usr1();
	usr1_count = 0;
	t0 = now_ns();
	for (long i = 0; i < n; i++)
		if (kill(me, SIGUSR1))
			die("kill");
	t1 = now_ns();
	if (usr1_count != n)
		fail("signal delivery", "handler ran a different number of times");
	return t1 - t0;
}

/* ---- processes --------------------------------------------------------- */

static long long b_fork(const struct bench *b, long n)
{
	long long t0 = now_ns();

	(void)b;
	for (long i = 0; i < n; i++) {
		pid_t pid = xfork();

		if (pid == 0)
			_exit(0);
		reap(pid);
	}
	return now_ns() - t0;
}

static long long spawn_loop(const char *path, char *const argv[], long n)
{
	char *const envp[] = { NULL };
	long long t0 = now_ns();

	for (long i = 0; i < n; i++) {
		pid_t pid = xfork();

		if (pid == 0) {
			execve(path, argv, envp);
			die("execve");
		}
		reap(pid);
	}
	return now_ns() - t0;
}

static long long b_exec(const struct bench *b, long n)
{
	char *const argv[] = { "pvbench", "--exit", NULL };

	(void)b;
	if (!self_exe[0]) {
		errno = ENOENT;
		die("readlink /proc/self/exe");
	}
	return spawn_loop(self_exe, argv, n);
}

static long long b_sh(const struct bench *b, long n)
{
	char *const argv[] = { "sh", "-c", "exit 0", NULL };

	(void)b;
	return spawn_loop("/bin/sh", argv, n);
}

/* ---- pipes and context switches ---------------------------------------- */

static long long b_ctx(const struct bench *b, long n)
{
	int np = b->arg, p[MAX_RING][2];
	pid_t pids[MAX_RING];
	cpu_set_t old, one;
	long long t0, t1;
	int cpu;

	if (sched_getaffinity(0, sizeof(old), &old))
		die("sched_getaffinity");
	cpu = sched_getcpu();
	if (cpu < 0)
		die("sched_getcpu");
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	if (sched_setaffinity(0, sizeof(one), &one))
		die("sched_setaffinity");

	for (int i = 0; i < np; i++)
		if (pipe(p[i]))
			die("pipe");
	/* Process i reads p[i] and writes p[(i + 1) % np]; the parent is 0. */
	for (int i = 1; i < np; i++) {
		pids[i] = xfork();
		if (pids[i] == 0) {
			int r = p[i][0], w = p[(i + 1) % np][1];

			for (int j = 0; j < np; j++) {
				if (p[j][0] != r)
					close(p[j][0]);
				if (p[j][1] != w)
					close(p[j][1]);
			}
			relay(r, w);
		}
	}
	for (int j = 0; j < np; j++) {
		if (j != 0)
			close(p[j][0]);
		if (j != 1)
			close(p[j][1]);
	}

	put1(p[1][1]);		/* one untimed lap: everybody is running */
	if (!get1(p[0][0]))
		fail("ring", "unexpected end of file");
	t0 = now_ns();
	for (long lap = 0; lap < n / np; lap++) {
		put1(p[1][1]);
		if (!get1(p[0][0]))
			fail("ring", "unexpected end of file");
	}
	t1 = now_ns();

	close(p[1][1]);		/* end of file ripples around the ring */
	for (int i = 1; i < np; i++)
		reap(pids[i]);
	close(p[0][0]);
	if (sched_setaffinity(0, sizeof(old), &old))
		die("sched_setaffinity");
	return t1 - t0;
}

static long long b_pipe_lat(const struct bench *b, long n)
{
	int to[2], from[2];
	long long t0, t1;
	pid_t pid;

	(void)b;
	if (pipe(to) || pipe(from))
		die("pipe");
	pid = xfork();
	if (pid == 0) {
		close(to[1]);
		close(from[0]);
		relay(to[0], from[1]);
	}
	close(to[0]);
	close(from[1]);

	put1(to[1]);
	if (!get1(from[0]))
		fail("pipe", "unexpected end of file");
	t0 = now_ns();
	for (long i = 0; i < n; i++) {
		put1(to[1]);
		if (!get1(from[0]))
			fail("pipe", "unexpected end of file");
	}
	t1 = now_ns();

	close(to[1]);
	reap(pid);
	close(from[0]);
	return t1 - t0;
}

/* ---- virtual memory ---------------------------------------------------- */

static long long b_mmap(const struct bench *b, long n)
{
	int fd = open_map_file();
	uint64_t sum = 0;
	long long t0 = now_ns(), t1;

	(void)b;
	for (long i = 0; i < n; i++) {
		volatile char *p = xmmap(MAP_SZ, PROT_READ, MAP_SHARED, fd);

		for (long off = 0; off < MAP_SZ; off += MAP_STRIDE)
			sum += p[off];
		xmunmap((void *)p, MAP_SZ);
	}
	t1 = now_ns();
	sink = sum;
	close(fd);
	return t1 - t0;
}

static long long b_page_fault(const struct bench *b, long n)
{
	int fd = open_map_file();
	long pages = MAP_SZ / PAGE_SZ;
	long long total = 0;
	uint64_t sum = 0;

	(void)b;
	for (long m = 0; m < n / pages; m++) {
		volatile char *p = xmmap(MAP_SZ, PROT_READ, MAP_PRIVATE, fd);
		long long t0 = now_ns();

		for (long off = 0; off < MAP_SZ; off += PAGE_SZ)
			sum += p[off];
		total += now_ns() - t0;
		xmunmap((void *)p, MAP_SZ);
	}
	sink = sum;
	close(fd);
	return total;
}

static void segv_handler(int sig, siginfo_t *si, void *ctx)
{
	char *addr = si->si_addr;

	(void)ctx;
	if (addr < prot_page || addr >= prot_page + PAGE_SZ) {
		/* Not ours: die of it when the instruction is restarted. */
		signal(sig, SIG_DFL);
		return;
	}
	if (mprotect(prot_page, PAGE_SZ, PROT_READ | PROT_WRITE))
		_exit(1);
	segv_count++;
}

static long long b_prot_fault(const struct bench *b, long n)
{
	struct sigaction sa, old;
	long long t0, t1;

	(void)b;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = segv_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	prot_page = xmmap(PAGE_SZ, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1);
	prot_page[0] = 1;
	if (mprotect(prot_page, PAGE_SZ, PROT_READ))
		die("mprotect");
	if (sigaction(SIGSEGV, &sa, &old))
		die("sigaction");
	segv_count = 0;

	t0 = now_ns();
	for (long i = 0; i < n; i++) {
		*(volatile char *)prot_page = (char)i;
		if (mprotect(prot_page, PAGE_SZ, PROT_READ))
			die("mprotect");
	}
	t1 = now_ns();

	if (sigaction(SIGSEGV, &old, NULL))
		die("sigaction");
	xmunmap(prot_page, PAGE_SZ);
	prot_page = NULL;
	if (segv_count != n)
		fail("protection fault", "handler ran a different number of times");
	return t1 - t0;
}

static long long b_mem_touch(const struct bench *b, long n)
{
	long long t0 = now_ns();

	(void)b;
	for (long i = 0; i < n; i++) {
		volatile char *p = xmmap(TOUCH_SZ, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS, -1);

		for (long off = 0; off < TOUCH_SZ; off += PAGE_SZ)
			p[off] = 1;
		xmunmap((void *)p, TOUCH_SZ);
	}
	return now_ns() - t0;
}

/* ---- file system ------------------------------------------------------- */

/* b->arg: bytes per file; b->unit is us; time creation or deletion. */
static long long fs_bench(const struct bench *b, long n, int time_delete)
{
	size_t size = (size_t)b->arg, nlen = strlen(dir_path) + 24;
	char *names = malloc(nlen * (size_t)n);
	long long t0, t1, t2;

	if (!names)
		die("malloc");
	for (long i = 0; i < n; i++)
		snprintf(names + nlen * i, nlen, "%s/f%ld", dir_path, i);
	if (mkdir(dir_path, 0755))
		die("mkdir pvbench.d");

	t0 = now_ns();
	for (long i = 0; i < n; i++) {
		int fd = open(names + nlen * i, O_WRONLY | O_CREAT | O_EXCL, 0644);

		if (fd < 0)
			die("create");
		if (size && write(fd, file_buf, size) != (ssize_t)size)
			die("write");
		if (close(fd))
			die("close");
	}
	t1 = now_ns();
	for (long i = 0; i < n; i++)
		if (unlink(names + nlen * i))
			die("unlink");
	t2 = now_ns();

	if (rmdir(dir_path))
		die("rmdir pvbench.d");
	free(names);
	return time_delete ? t2 - t1 : t1 - t0;
}

static long long b_file_create(const struct bench *b, long n)
{
	return fs_bench(b, n, 0);
}

static long long b_file_delete(const struct bench *b, long n)
{
	return fs_bench(b, n, 1);
}

/* ---- memory and CPU ---------------------------------------------------- */

static long long b_mem_bw(const struct bench *b, long n)
{
	char *src = xmmap(MEMBW_SZ, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1);
	char *dst = xmmap(MEMBW_SZ, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1);
	uint64_t sum = 0;
	long long t0, t1;

	(void)b;
	memset(src, 0x5a, MEMBW_SZ);
	memset(dst, 0, MEMBW_SZ);
	t0 = now_ns();
	for (long i = 0; i < n; i++) {
		memcpy(dst, src, MEMBW_SZ);
		sum += ((volatile char *)dst)[(i * PAGE_SZ) % MEMBW_SZ];
	}
	t1 = now_ns();
	sink = sum;
	xmunmap(src, MEMBW_SZ);
	xmunmap(dst, MEMBW_SZ);
	return t1 - t0;
}

static long long b_cpu_loop(const struct bench *b, long n)
{
	uint64_t x = 88172645463325252ULL;
	long long t0 = now_ns();

	(void)b;
	for (long i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
	}
	sink = x;
	return now_ns() - t0;
}

/* ---- driver ------------------------------------------------------------ */

#define B(...) { __VA_ARGS__ }

static const struct bench benches[] = {
	B(.name = "null_call", .desc = "getppid() system call",
	  .base = 200000, .warm = 1000, .fn = b_null_call),
	B(.name = "stat", .desc = "stat() of a tmpfs file",
	  .base = 50000, .warm = 100, .fn = b_stat),
	B(.name = "open_close", .desc = "open() + close() of a tmpfs file",
	  .base = 50000, .warm = 100, .fn = b_open_close),
	B(.name = "sig_install", .desc = "sigaction() installing a handler",
	  .base = 100000, .warm = 100, .fn = b_sig_install),
	B(.name = "sig_handle", .desc = "kill() to self + signal handler",
	  .base = 50000, .warm = 100, .fn = b_sig_handle),
	B(.name = "fork", .desc = "fork() + child _exit() + waitpid()",
	  .base = 1000, .warm = 5, .fn = b_fork),
	B(.name = "exec", .desc = "fork() + execve() of pvbench --exit + waitpid()",
	  .base = 500, .warm = 3, .fn = b_exec),
	B(.name = "sh", .desc = "fork() + execve() of /bin/sh -c 'exit 0' + waitpid()",
	  .base = 300, .warm = 3, .fn = b_sh, .needs = "/bin/sh"),
	B(.name = "ctx_2p",
	  .desc = "context switch, 2 processes in a pipe ring, 0 KB, per token pass",
	  .base = 20000, .warm = 200, .quantum = 2, .arg = 2, .fn = b_ctx),
	B(.name = "ctx_8p",
	  .desc = "context switch, 8 processes in a pipe ring, 0 KB, per token pass",
	  .base = 20000, .warm = 200, .quantum = 8, .arg = 8, .fn = b_ctx),
	B(.name = "ctx_16p",
	  .desc = "context switch, 16 processes in a pipe ring, 0 KB, per token pass",
	  .base = 20000, .warm = 208, .quantum = 16, .arg = 16, .fn = b_ctx),
	B(.name = "pipe_lat", .desc = "1-byte pipe round trip between two processes",
	  .base = 20000, .warm = 100, .fn = b_pipe_lat),
	B(.name = "mmap",
	  .desc = "mmap() 4 MiB shared file + read every 16 KiB + munmap()",
	  .base = 500, .warm = 5, .fn = b_mmap),
	B(.name = "page_fault",
	  .desc = "read fault on a private file mapping, per 4 KiB page",
	  .base = 200 * (MAP_SZ / PAGE_SZ), .warm = MAP_SZ / PAGE_SZ,
	  .quantum = MAP_SZ / PAGE_SZ, .fn = b_page_fault),
	B(.name = "prot_fault",
	  .desc = "write to read-only page + SIGSEGV handler + 2x mprotect()",
	  .base = 20000, .warm = 100, .fn = b_prot_fault),
	B(.name = "file_create_0k", .desc = "create an empty file, per file",
	  .base = 5000, .warm = 0, .whole = 1, .arg = 0, .fn = b_file_create),
	B(.name = "file_delete_0k", .desc = "unlink an empty file, per file",
	  .base = 5000, .warm = 0, .whole = 1, .arg = 0, .fn = b_file_delete),
	B(.name = "file_create_10k", .desc = "create a file with 10 KiB of data, per file",
	  .base = 1000, .warm = 0, .whole = 1, .arg = FILE_10K, .fn = b_file_create),
	B(.name = "file_delete_10k", .desc = "unlink a 10 KiB file, per file",
	  .base = 1000, .warm = 0, .whole = 1, .arg = FILE_10K, .fn = b_file_delete),
	B(.name = "mem_touch_1m",
	  .desc = "mmap() 1 MiB anonymous + write every 4 KiB page + munmap()",
	  .base = 500, .warm = 5, .fn = b_mem_touch),
	B(.name = "mem_bw", .desc = "memcpy() of 8 MiB, MB = 2^20 bytes",
	  .base = 20, .warm = 1, .unit = U_MBS, .fn = b_mem_bw),
	B(.name = "cpu_loop", .desc = "xorshift64 integer loop, per million iterations",
	  .base = 50000000, .warm = 1000000, .unit = U_USMITER, .fn = b_cpu_loop),
};

#define NBENCH ((int)(sizeof(benches) / sizeof(benches[0])))

static const char *const unit_name[] = {
	[U_US] = "us", [U_MBS] = "MB/s", [U_USMITER] = "us/Miter",
};

static long round_up(long n, long q)
{
	if (q < 1)
		q = 1;
	return (n + q - 1) / q * q;
}

static long iterations(const struct bench *b)
{
	double d = (double)b->base * scale + 0.5;
	long n = d < 1.0 ? 1 : d > 1e15 ? (long)1e15 : (long)d;

	return round_up(n, b->quantum);
}

static double value(const struct bench *b, long n, long long ns)
{
	double sec;

	if (ns < 1)
		ns = 1;
	sec = ns * 1e-9;
	switch (b->unit) {
	case U_MBS:
		return (double)n * MEMBW_SZ / sec / (1024.0 * 1024.0);
	case U_USMITER:
		return sec * 1e6 / ((double)n / 1e6);
	default:
		return sec * 1e6 / (double)n;
	}
}

/* Idle for SETTLE_MS: deferred work of the previous pass runs now, untimed. */
static void settle(void)
{
	struct timespec ts = { 0, SETTLE_MS * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* One reported value: the median over the timed chunks of n iterations. */
static double measure(const struct bench *b, long n)
{
	long q = b->quantum < 1 ? 1 : b->quantum;
	long k = b->whole || n / q < 1 ? 1 : n / q < CHUNKS ? n / q : CHUNKS;
	long per = k == 1 ? n : n / q / k * q;
	double v[CHUNKS];

	for (long i = 0; i < k; i++)
		v[i] = value(b, per, b->fn(b, per));
	qsort(v, (size_t)k, sizeof(v[0]), cmp_double);
	return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

static void run(const struct bench *b, int repeats)
{
	long n = iterations(b);

	cur = b->name;
	if (b->needs && access(b->needs, X_OK)) {
		printf("info %s: skipped (no %s)\n", b->name, b->needs);
		fflush(stdout);
		return;
	}
	printf("info %s: %s (%ld iterations)\n", b->name, b->desc, n);
	fflush(stdout);
	if (warmup) {
		settle();
		b->fn(b, b->warm ? round_up(b->warm, b->quantum) : n);
	}
	for (int k = 1; k <= repeats; k++) {
		double v;

		settle();
		v = measure(b, n);
		printf("metric %s.r%d %.4f %s\n", b->name, k, v, unit_name[b->unit]);
		fflush(stdout);
	}
	cur = "setup";
}

static void remove_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
	rmdir(path);
}

static void cleanup(void)
{
	unlink(stat_path);
	unlink(map_path);
	remove_dir(dir_path);
}

static void setup(void)
{
	static char chunk[64 << 10];
	int fd;

	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = (char)(i * 131 + 7);
	memcpy(file_buf, chunk, sizeof(file_buf));

	remove_dir(dir_path);	/* leftovers of an interrupted run */
	fd = open(stat_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die("create pvbench.stat");
	if (close(fd))
		die("close");
	fd = open(map_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die("create pvbench.map");
	for (long off = 0; off < MAP_SZ; off += (long)sizeof(chunk))
		if (write(fd, chunk, sizeof(chunk)) != (ssize_t)sizeof(chunk))
			die("write pvbench.map");
	if (close(fd))
		die("close");
}

static void find_self(const char *argv0)
{
	ssize_t len = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);

	if (len > 0) {
		self_exe[len] = '\0';
	} else if (argv0 && strchr(argv0, '/') && strlen(argv0) < sizeof(self_exe)) {
		strcpy(self_exe, argv0);
	}
}

/*
 * Re-execute once with address space randomization off; if that is not
 * possible (personality refused, no path to ourselves) carry on randomized.
 */
static void no_aslr(char **argv)
{
	int pers = personality(0xffffffff);

	if (pers == -1 || (pers & ADDR_NO_RANDOMIZE) || !self_exe[0])
		return;
	if (personality((unsigned long)pers | ADDR_NO_RANDOMIZE) == -1)
		return;
	execv(self_exe, argv);
}

static void usage(void)
{
	fprintf(stderr, "usage: pvbench [-r REPEATS] [-s SCALE] [-l] [NAME...]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int repeats = 3, list = 0, any = 0, opt;
	int selected[NBENCH];
	const char *tmp;
	char *end;

	if (argc > 1 && !strcmp(argv[1], "--exit"))
		_exit(0);
	find_self(argv[0]);
	no_aslr(argv);

	while ((opt = getopt(argc, argv, "r:s:l")) != -1) {
		switch (opt) {
		case 'r': {
			long r = strtol(optarg, &end, 10);

			if (*end || end == optarg || r < 1 || r > 1000000)
				usage();
			repeats = (int)r;
			break;
		}
		case 's':
			scale = strtod(optarg, &end);
			if (*end || end == optarg || !(scale > 0.0) || scale > 1e6)
				usage();
			break;
		case 'l':
			list = 1;
			break;
		default:
			usage();
		}
	}

	if (list) {
		for (int i = 0; i < NBENCH; i++)
			printf("%s\n", benches[i].name);
		return 0;
	}

	memset(selected, 0, sizeof(selected));
	for (int a = optind; a < argc; a++) {
		int found = 0;

		for (int i = 0; i < NBENCH; i++) {
			if (!strcmp(argv[a], benches[i].name)) {
				selected[i] = found = 1;
			}
		}
		if (!found) {
			fprintf(stderr, "pvbench: unknown benchmark '%s' (see pvbench -l)\n",
				argv[a]);
			return 2;
		}
		any = 1;
	}

	tmp = getenv("PVBENCH_WARMUP");
	warmup = !tmp || strcmp(tmp, "0");
	tmp = getenv("PVBENCH_TMPDIR");
	if (!tmp || !*tmp)
		tmp = "/tmp";
	stat_path = path_join(tmp, "pvbench.stat");
	map_path = path_join(tmp, "pvbench.map");
	dir_path = path_join(tmp, "pvbench.d");

	if (atexit(cleanup))
		fail("atexit", "cannot register cleanup");
	setup();
	for (int i = 0; i < NBENCH; i++)
		if (!any || selected[i])
			run(&benches[i], repeats);
	return 0;
}
