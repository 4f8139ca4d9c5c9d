// SPDX-License-Identifier: GPL-2.0
/*
 * pvudp - a file over UDP, every byte accounted for: the guests' UDP bulk test.
 *
 *   pvudp recv PORT OUTFILE [TIMEOUT_S]   receive one file, print "bytes N"
 *   pvudp send IPV4 PORT INFILE [BLKSIZE] send it, print "bytes N datagrams D resent R"
 *
 * Stop and wait: each datagram carries (magic, sequence number, length, data) and is sent
 * again until the receiver acknowledges its sequence number; a datagram of length 0 ends
 * the file. The receiver writes each sequence number once, in order, so the file arrives
 * whole or the sender gives up (exit status 1). Datagrams larger than the MTU travel as IP
 * fragments (the default, 8192 bytes, does at MTU 1500).
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

#define MAGIC		0x70767564U	/* "pvud" */
#define HDR		12
#define MAX_BLK		60000
#define RESEND_MS	100
#define MAX_TRIES	200

struct hdr {
	uint32_t magic, seq, len;
};

static void die(const char *what)
{
	fprintf(stderr, "pvudp: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void put_hdr(unsigned char *buf, uint32_t seq, uint32_t len)
{
	struct hdr h = { htonl(MAGIC), htonl(seq), htonl(len) };

	memcpy(buf, &h, HDR);
}

static int get_hdr(const unsigned char *buf, ssize_t n, struct hdr *h)
{
	if (n < HDR)
		return -1;
	memcpy(h, buf, HDR);
	h->magic = ntohl(h->magic);
	h->seq = ntohl(h->seq);
	h->len = ntohl(h->len);
	return h->magic == MAGIC && h->len == (uint32_t)(n - HDR) ? 0 : -1;
}

/* After the end: acknowledge it again while the sender still resends it (1 s quiet). */
static void linger(int fd, uint32_t last)
{
	unsigned char buf[HDR + 64], ack[HDR];
	struct sockaddr_storage peer;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	socklen_t plen;
	struct hdr h;
	ssize_t n;

	while (poll(&p, 1, 1000) > 0) {
		plen = sizeof(peer);
		n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &plen);
		if (n < 0 || get_hdr(buf, n, &h) || h.seq != last)
			continue;
		put_hdr(ack, h.seq, 0);
		sendto(fd, ack, HDR, 0, (struct sockaddr *)&peer, plen);
	}
}

static int do_recv(int port, const char *path, int timeout_s)
{
	static unsigned char buf[HDR + MAX_BLK];
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct sockaddr_storage peer;
	socklen_t plen;
	unsigned long long bytes = 0;
	uint32_t expect = 0;
	FILE *out;
	int fd;

	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		die("socket/bind");
	out = fopen(path, "wb");
	if (!out)
		die(path);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		unsigned char ack[HDR];
		struct hdr h;
		ssize_t n;

		if (poll(&p, 1, timeout_s * 1000) <= 0) {
			fprintf(stderr, "pvudp: nothing for %d s after %llu bytes\n", timeout_s, bytes);
			return 1;
		}
		plen = sizeof(peer);
		n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &plen);
		if (n < 0 || get_hdr(buf, n, &h))
			continue;
		if (h.seq == expect) {
			if (h.len && fwrite(buf + HDR, 1, h.len, out) != h.len)
				die("write");
			bytes += h.len;
			expect++;
		}
		if (h.seq < expect) {	/* new or resent: acknowledge it */
			put_hdr(ack, h.seq, 0);
			sendto(fd, ack, HDR, 0, (struct sockaddr *)&peer, plen);
		}
		if (h.seq == expect - 1 && !h.len)
			break;
	}
	if (fclose(out))
		die("close");
	linger(fd, expect - 1);
	printf("bytes %llu\n", bytes);
	return 0;
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

/* Send datagram @seq until it is acknowledged; 0, or -1 after MAX_TRIES. */
static int send_one(int fd, unsigned char *buf, size_t n, uint32_t seq, unsigned long *resent)
{
	unsigned char ack[HDR + 1];
	int tries;

	for (tries = 0; tries < MAX_TRIES; tries++) {
		long deadline = now_ms() + RESEND_MS;

		if (send(fd, buf, n, 0) < 0 && errno != ECONNREFUSED)
			die("send");
		if (tries)
			(*resent)++;
		for (;;) {
			struct pollfd p = { .fd = fd, .events = POLLIN };
			long left = deadline - now_ms();
			struct hdr h;
			ssize_t r;

			if (left <= 0 || poll(&p, 1, left) <= 0)
				break;
			r = recv(fd, ack, sizeof(ack), 0);
			if (r >= 0 && !get_hdr(ack, r, &h) && h.seq == seq)
				return 0;
		}
	}
	return -1;
}

static int do_send(const char *host, int port, const char *path, size_t blk)
{
	static unsigned char buf[HDR + MAX_BLK];
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port) };
	unsigned long long bytes = 0;
	unsigned long resent = 0;
	uint32_t seq = 0;
	FILE *in;
	size_t n;
	int fd;

	if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
		fprintf(stderr, "pvudp: %s: not an IPv4 address\n", host);
		return 2;
	}
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		die("socket/connect");
	in = fopen(path, "rb");
	if (!in)
		die(path);
	do {
		n = fread(buf + HDR, 1, blk, in);
		put_hdr(buf, seq, n);
		if (send_one(fd, buf, HDR + n, seq, &resent)) {
			fprintf(stderr, "pvudp: datagram %u not acknowledged after %d tries\n",
				seq, MAX_TRIES);
			return 1;
		}
		bytes += n;
		seq++;
	} while (n);
	printf("bytes %llu datagrams %u resent %lu\n", bytes, seq, resent);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "recv"))
		return do_recv(atoi(argv[2]), argv[3], argc > 4 ? atoi(argv[4]) : 60);
	if (argc >= 5 && !strcmp(argv[1], "send")) {
		long blk = argc > 5 ? atol(argv[5]) : 8192;

		if (blk < 1 || blk > MAX_BLK) {
			fprintf(stderr, "pvudp: block size 1..%d\n", MAX_BLK);
			return 2;
		}
		return do_send(argv[2], atoi(argv[3]), argv[4], (size_t)blk);
	}
	fprintf(stderr, "usage: pvudp recv PORT OUTFILE [TIMEOUT_S]\n"
		"       pvudp send IPV4 PORT INFILE [BLKSIZE]\n");
	return 2;
}
