// SPDX-License-Identifier: GPL-2.0
/*
 * pvstream - a paced TCP stream whose every byte the receiver checks: the guests' check that
 * a connection lives through a save, restore or migration and loses or corrupts nothing,
 * and a measure of how long the stream stood still.
 *
 *   pvstream recv PORT [TIMEOUT_S]
 *       accept one connection, read to its end, check each byte against the stream's
 *       generator; prints "bytes N bad B max_gap_ms G" (G: the longest time with nothing
 *       received), then "gap MS at T" for each time nothing came for more than 100 ms
 *       (T: when it began, CLOCK_MONOTONIC seconds: /proc/uptime's clock). Exit status 1
 *       when a byte is wrong, nothing came, or nothing came for TIMEOUT_S (default 600).
 *   pvstream send IPV4 PORT STOPFILE [KIB [TICK_MS]]
 *       connect (retrying for 60 s), send KIB KiB (default 32) every TICK_MS ms (default 20)
 *       until STOPFILE exists, then close its side and wait until the receiver has read
 *       everything; prints "bytes N".
 */

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK	65536
#define GAP_MIN	0.1
#define MAX_GAPS	32

static void die(const char *what)
{
	fprintf(stderr, "pvstream: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* byte @off of the stream */
static unsigned char gen(uint64_t off)
{
	uint32_t x = (uint32_t)(off >> 2) * 0x9e3779b1U;

	x ^= x >> 15;
	x *= 0x85ebca77U;
	x ^= x >> 13;
	return (unsigned char)(x >> ((off & 3) * 8));
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int do_recv(int port, int timeout_s)
{
	static unsigned char buf[CHUNK];
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port) };
	unsigned long long bytes = 0, bad = 0, first_bad = 0;
	double last = 0, gap = 0, gaps[MAX_GAPS][2];
	int one = 1, lfd, fd, ngaps = 0, k;

	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) || listen(lfd, 1))
		die("bind/listen");
	fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		die("accept");
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n, i;
		double t;

		if (poll(&p, 1, timeout_s * 1000) <= 0) {
			fprintf(stderr, "pvstream: nothing for %d s after %llu bytes\n", timeout_s,
				bytes);
			return 1;
		}
		n = read(fd, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "pvstream: read after %llu bytes: %s\n", bytes,
				strerror(errno));
			return 1;
		}
		if (!n)
			break;
		t = now_s();
		if (!bytes)
			last = t;
		if (t - last > gap)
			gap = t - last;
		if (t - last > GAP_MIN && ngaps < MAX_GAPS) {
			gaps[ngaps][0] = t - last;
			gaps[ngaps++][1] = last;
		}
		last = t;
		for (i = 0; i < n; i++)
			if (buf[i] != gen(bytes + i) && !bad++)
				first_bad = bytes + i;
		bytes += n;
	}
	printf("bytes %llu bad %llu max_gap_ms %.0f\n", bytes, bad, gap * 1000);
	for (k = 0; k < ngaps; k++)
		printf("gap %.0f at %.2f\n", gaps[k][0] * 1000, gaps[k][1]);
	if (bad)
		printf("first bad byte at offset %llu\n", first_bad);
	return bad || !bytes ? 1 : 0;
}

static int do_send(const char *ip, int port, const char *stop, size_t len, int tick_ms)
{
	static unsigned char buf[CHUNK];
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct timespec tick = { tick_ms / 1000, (tick_ms % 1000) * 1000000L };
	unsigned long long bytes = 0;
	double give_up;
	int fd = -1;

	if (inet_pton(AF_INET, ip, &addr.sin_addr) != 1) {
		fprintf(stderr, "pvstream: '%s' is not an IPv4 address\n", ip);
		return 2;
	}
	give_up = now_s() + 60;
	for (;;) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0)
			die("socket");
		if (!connect(fd, (struct sockaddr *)&addr, sizeof(addr)))
			break;
		close(fd);
		if (now_s() > give_up)
			die("connect");
		sleep(1);
	}
	while (access(stop, F_OK)) {
		size_t i, done = 0;

		for (i = 0; i < len; i++)
			buf[i] = gen(bytes + i);
		while (done < len) {
			ssize_t n = write(fd, buf + done, len - done);

			if (n < 0) {
				if (errno == EINTR)
					continue;
				fprintf(stderr, "pvstream: write after %llu bytes: %s\n",
					bytes + done, strerror(errno));
				return 1;
			}
			done += n;
		}
		bytes += len;
		nanosleep(&tick, NULL);
	}
	/* the receiver closes once it has read everything */
	if (shutdown(fd, SHUT_WR))
		die("shutdown");
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n > 0 || (n < 0 && errno == EINTR))
			continue;
		break;
	}
	printf("bytes %llu\n", bytes);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "recv"))
		return do_recv(atoi(argv[2]), argc > 3 ? atoi(argv[3]) : 600);
	if (argc >= 5 && !strcmp(argv[1], "send")) {
		size_t kib = argc > 5 ? strtoul(argv[5], NULL, 0) : 32;
		int tick = argc > 6 ? atoi(argv[6]) : 20;

		if (!kib || kib * 1024 > CHUNK || tick < 1) {
			fprintf(stderr, "pvstream: KIB must be 1..%d, TICK_MS at least 1\n",
				CHUNK / 1024);
			return 2;
		}
		return do_send(argv[2], atoi(argv[3]), argv[4], kib * 1024, tick);
	}
	fprintf(stderr, "usage: pvstream recv PORT [TIMEOUT_S]\n"
		"       pvstream send IPV4 PORT STOPFILE [KIB [TICK_MS]]\n");
	return 2;
}
