// SPDX-License-Identifier: GPL-2.0
/*
 * fuzz_validate.c - fuzz the pvnet backend's transmit-packet validation.
 *
 * Generates packets as raw transmit-ring bytes (seeded xorshift64*, biased
 * towards what matters: slot counts around 18/19/20/21, tiny and zero-length
 * slots, sizes that add up to the packet size +-1, offsets near the end of
 * the page, extra-info chains with bad and repeated types, chains cut short,
 * reserved and huge grant references), runs them through pvnet_validate_tx()
 * and checks every verdict against a second checker written here from the
 * protocol rules alone: it reads the raw bytes at the wire offsets and
 * shares neither code nor structs with the validator.
 *
 *  - accepted: no rule is violated, the returned info matches the raw packet,
 *    and the copy plan is replayed into a heap buffer of exactly the packet's
 *    size (ASan sees any byte outside it) and must cover every byte once;
 *  - rejected: the returned reason is one of the rules the packet violates,
 *    fatal exactly when the reference says the ring cannot be parsed on, and
 *    for a packet that is only dropped the request counts are right (the
 *    backend answers each request of it).
 *
 * Receive requests (grant checks) and ring producer indexes get the same
 * treatment. Build with -fsanitize=address,undefined -fno-sanitize-recover=all;
 * run as fuzz_validate [count [seed]]. Prints the counts per verdict; aborts
 * on the first disagreement.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pvnet_validate.h"

#define ENTRY		12	/* bytes of a transmit ring entry */
#define WINDOW		PVNET_TXV_WINDOW
#define PAGE		4096
#define FATAL_SLOTS	20

/* wire offsets (netif.h): a request, and an extra-info slot in its place */
#define OFF_GREF	0
#define OFF_OFFSET	4
#define OFF_FLAGS	6
#define OFF_ID		8
#define OFF_SIZE	10
#define OFF_XTYPE	0
#define OFF_XFLAGS	1
#define OFF_GSO_SIZE	2
#define OFF_GSO_TYPE	4

#define F_CSUM		1
#define F_MORE		4
#define F_EXTRA		8

static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static uint32_t below(uint32_t n)
{
	return n ? (uint32_t)(rnd() % n) : 0;
}

static int chance(unsigned int percent)
{
	return below(100) < percent;
}

static void put16(uint8_t *e, int off, uint16_t v)
{
	e[off] = (uint8_t)v;
	e[off + 1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *e, int off, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		e[off + i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *e, int off)
{
	return (uint16_t)(e[off] | e[off + 1] << 8);
}

static uint32_t get32(const uint8_t *e, int off)
{
	return (uint32_t)e[off] | (uint32_t)e[off + 1] << 8 |
	       (uint32_t)e[off + 2] << 16 | (uint32_t)e[off + 3] << 24;
}

/* ---- the device ------------------------------------------------------- */

struct device {
	uint32_t max_slots, max_size, gref_limit;
	int gso4, gso6, mcast;
};

static void random_device(struct device *dev)
{
	static const uint32_t slots[] = { 1, 2, 17, 18, 19, 20 };
	static const uint32_t sizes[] = { 14, 60, 1514, 1518, 9014, 9018, 65535 };

	dev->max_slots = chance(80) ? slots[below(6)] : 1 + below(20);
	dev->max_size = chance(80) ? sizes[below(7)] : 14 + below(65522);
	dev->gref_limit = chance(30) ? 0 : (chance(50) ? 32768 : 8 + below(1000));
	dev->gso4 = (int)below(2);
	dev->gso6 = (int)below(2);
	dev->mcast = chance(20);
	if (chance(1)) {	/* a backend bug: the validator must refuse */
		switch (below(4)) {
		case 0:
			dev->max_slots = 0;
			break;
		case 1:
			dev->max_slots = 21 + below(100);
			break;
		case 2:
			dev->max_size = below(14);
			break;
		default:
			dev->max_size = 65536 + below(100000);
			break;
		}
	}
}

/* ---- the independent checker ------------------------------------------ */

struct verdict {
	int violated[PVNET_VERR_COUNT];
	int any, fatal;
	/* what an accepted (or dropped) packet looks like */
	uint32_t entries, slots, extras, size, first_len;
	int gso_type, gso_size, hash;
	int first_len_known;
};

/* The rules after whose breach the ring is not parsed on (the interface goes). */
static const int fatal_rule[PVNET_VERR_COUNT] = {
	[PVNET_VERR_RING] = 1, [PVNET_VERR_CHAIN] = 1, [PVNET_VERR_EXTRA_TYPE] = 1,
	[PVNET_VERR_EXTRA_DUP] = 1, [PVNET_VERR_SLOTS_FATAL] = 1, [PVNET_VERR_PAGE] = 1,
	[PVNET_VERR_GSO] = 1, [PVNET_VERR_PARAM] = 1,
};

static void violate(struct verdict *v, int rule, int fatal)
{
	v->violated[rule] = 1;
	v->any = 1;
	v->fatal |= fatal;
}

static int bad_gref(uint32_t gref, const struct device *dev)
{
	return gref < 8 || (dev->gref_limit && gref >= dev->gref_limit);
}

static void reference(const uint8_t (*raw)[ENTRY], uint32_t avail,
		      const struct device *dev, struct verdict *v)
{
	int seen[6] = { 0 };	/* entry index of each extra type, 0: none */
	uint32_t idx = 1, rest = 0;
	const uint8_t *first = raw[0];
	uint16_t flags = get16(first, OFF_FLAGS);

	memset(v, 0, sizeof(*v));
	v->size = get16(first, OFF_SIZE);
	if (!dev->max_slots || dev->max_slots > FATAL_SLOTS ||
	    dev->max_size < 14 || dev->max_size > 65535) {
		violate(v, PVNET_VERR_PARAM, 1);
		return;
	}
	if (flags & F_EXTRA) {
		for (;;) {
			int type;

			if (idx >= avail) {
				violate(v, PVNET_VERR_CHAIN, 1);
				return;
			}
			type = raw[idx][OFF_XTYPE];
			if (type == 0 || type >= 6) {
				violate(v, PVNET_VERR_EXTRA_TYPE, 1);
				return;
			}
			if (seen[type]) {
				violate(v, PVNET_VERR_EXTRA_DUP, 1);
				return;
			}
			seen[type] = (int)idx;
			v->extras++;
			if (!(raw[idx++][OFF_XFLAGS] & 1))
				break;
		}
	}
	v->slots = 1;
	while (flags & F_MORE) {
		const uint8_t *e;

		if (v->slots >= FATAL_SLOTS) {
			violate(v, PVNET_VERR_SLOTS_FATAL, 1);
			return;
		}
		if (idx >= avail) {
			violate(v, PVNET_VERR_CHAIN, 1);
			return;
		}
		e = raw[idx++];
		if (get16(e, OFF_OFFSET) + get16(e, OFF_SIZE) > PAGE) {
			violate(v, PVNET_VERR_PAGE, 1);
			return;
		}
		rest += get16(e, OFF_SIZE);
		v->slots++;
		flags = get16(e, OFF_FLAGS);
	}
	v->entries = idx;
	if (seen[1]) {
		const uint8_t *x = raw[seen[1]];

		v->gso_type = x[OFF_GSO_TYPE];
		v->gso_size = get16(x, OFF_GSO_SIZE);
		if (!v->gso_size || (v->gso_type != 1 && v->gso_type != 2)) {
			violate(v, PVNET_VERR_GSO, 1);
			return;
		}
	}
	v->hash = seen[4] != 0;

	/* the packet can be parsed: the rest only drops it (or PAGE) */
	if (rest > v->size) {
		violate(v, PVNET_VERR_SLOT_SIZE, 0);
	} else {
		v->first_len = v->size - rest;
		v->first_len_known = 1;
		if (get16(first, OFF_OFFSET) + v->first_len > PAGE)
			violate(v, PVNET_VERR_PAGE, 1);
		if (v->first_len < 14)
			violate(v, PVNET_VERR_HEADER, 0);
	}
	if (v->slots > dev->max_slots)
		violate(v, PVNET_VERR_SLOTS, 0);
	if (!seen[1] && v->size > dev->max_size)
		violate(v, PVNET_VERR_TOO_BIG, 0);
	if ((v->gso_type == 1 && !dev->gso4) || (v->gso_type == 2 && !dev->gso6))
		violate(v, PVNET_VERR_GSO_FEATURE, 0);
	if ((seen[2] || seen[3]) && !dev->mcast)
		violate(v, PVNET_VERR_EXTRA_UNSUPPORTED, 0);
	if (bad_gref(get32(first, OFF_GREF), dev))
		violate(v, PVNET_VERR_GREF, 0);
	for (uint32_t s = 1; s < v->slots; s++) {
		const uint8_t *e = raw[v->extras + s];

		if (get16(e, OFF_SIZE) && bad_gref(get32(e, OFF_GREF), dev))
			violate(v, PVNET_VERR_GREF, 0);
	}
}

/* ---- generation ------------------------------------------------------- */

static uint32_t pick_gref(const struct device *dev)
{
	switch (below(12)) {
	case 0:
		return below(8);			/* reserved */
	case 1:
		return (uint32_t)rnd();
	case 2:
		return dev->gref_limit ? dev->gref_limit - 1 + below(3) : 0xffffffffU;
	default:
		return 8 + below(dev->gref_limit > 8 ? dev->gref_limit - 8 : 30000);
	}
}

static uint32_t pick_slots(void)
{
	static const uint32_t edges[] = { 1, 2, 17, 18, 19, 20, 21, 22 };

	return chance(50) ? edges[below(8)] : 1 + below(22);
}

/* Split @total bytes over @n slots in one of several shapes. */
static void split(uint32_t total, uint32_t n, uint32_t *len)
{
	uint32_t left = total;

	for (uint32_t i = 0; i < n; i++)
		len[i] = 0;
	switch (below(5)) {
	case 0:		/* XSA-423: a tiny first slot, headers spread on */
		len[0] = left < 14 ? left : 14;
		left -= len[0];
		for (uint32_t i = 1; i < n; i++) {
			len[i] = left < 10 ? left : 10;
			left -= len[i];
		}
		break;
	case 1:		/* XSA-448: data up front, empty slots after */
		len[0] = left < PAGE ? left : PAGE;
		left -= len[0];
		break;
	case 2:		/* XSA-432: many small slots, small packet */
		for (uint32_t i = 0; i < n; i++) {
			len[i] = left < 4 ? left : 1 + below(4);
			left -= len[i];
		}
		break;
	default:	/* page-sized chunks, as a real frontend sends */
		for (uint32_t i = 0; i < n; i++) {
			uint32_t want = chance(70) ? PAGE : below(PAGE + 1);

			len[i] = want < left ? want : left;
			left -= len[i];
		}
		break;
	}
	for (uint32_t i = n; left && i-- > 0;) {	/* spread the rest, from the end */
		uint32_t room = len[i] < PAGE ? PAGE - len[i] : 0;
		uint32_t add = room < left ? room : left;

		len[i] += add;
		left -= add;
	}
	if (left)	/* more than n pages: the last slot crosses its page */
		len[n - 1] += left;
}

static uint32_t random_packet(uint8_t (*raw)[ENTRY], const struct device *dev)
{
	uint32_t n = pick_slots(), nx = 0, total, idx = 0, len[32];
	uint32_t used;

	memset(raw, 0, (size_t)WINDOW * ENTRY);
	if (chance(2)) {	/* pure noise */
		for (int i = 0; i < WINDOW; i++)
			for (int j = 0; j < ENTRY; j++)
				raw[i][j] = (uint8_t)rnd();
		return 1 + below(WINDOW);
	}
	total = chance(20) ? below(65536) : (chance(50) ? 14 + below(1500) :
					      below(dev->max_size + 64));
	if (total > 65535)
		total = 65535;
	if (chance(90) && total > n * PAGE)	/* mostly what n slots can hold */
		total = n * PAGE - below(PAGE);
	split(total, n, len);
	if (chance(30))
		nx = 1 + below(5);

	/* the first request */
	put32(raw[0], OFF_GREF, pick_gref(dev));
	put16(raw[0], OFF_OFFSET, (uint16_t)(chance(20) ? PAGE - len[0] + below(3) - 1 :
					     below(PAGE - (len[0] < PAGE ? len[0] : PAGE) + 1)));
	put16(raw[0], OFF_FLAGS, (uint16_t)((n > 1 ? F_MORE : 0) | (nx ? F_EXTRA : 0) |
					    (chance(50) ? F_CSUM : 0)));
	put16(raw[0], OFF_ID, (uint16_t)rnd());
	put16(raw[0], OFF_SIZE, (uint16_t)total);
	idx = 1;
	for (uint32_t x = 0; x < nx && idx < WINDOW; x++, idx++) {
		/* mostly distinct types in order from a random start; some repeats */
		uint8_t type = chance(90) ? (uint8_t)(1 + (x + (uint32_t)rnd() % 2 * 2) % 5) :
			(chance(50) ? (uint8_t)(1 + below(5)) : (uint8_t)rnd());

		raw[idx][OFF_XTYPE] = type;
		raw[idx][OFF_XFLAGS] = x + 1 < nx ? 1 : (chance(3) ? 1 : 0);
		put16(raw[idx], OFF_GSO_SIZE, (uint16_t)(chance(10) ? 0 : 1 + below(9000)));
		raw[idx][OFF_GSO_TYPE] = (uint8_t)(chance(90) ? 1 + below(2) : below(256));
	}
	for (uint32_t s = 1; s < n && idx < WINDOW; s++, idx++) {
		uint32_t l = len[s];

		if (!below(150))	/* sizes that do not add up */
			l += below(3);
		put32(raw[idx], OFF_GREF, pick_gref(dev));
		put16(raw[idx], OFF_OFFSET, (uint16_t)(!below(300) ? PAGE - l + 1 :
						       below(PAGE - (l < PAGE ? l : PAGE) + 1)));
		put16(raw[idx], OFF_FLAGS, (uint16_t)((s + 1 < n ? F_MORE : 0) |
						      (!below(300) ? F_MORE : 0)));
		put16(raw[idx], OFF_ID, (uint16_t)rnd());
		put16(raw[idx], OFF_SIZE, (uint16_t)l);
	}
	used = idx;
	if (chance(3))		/* one random byte changed */
		raw[below(used)][below(ENTRY)] = (uint8_t)rnd();
	if (chance(10))		/* the frontend produced fewer, or more */
		return 1 + below(WINDOW);
	return used;
}

/* ---- checking --------------------------------------------------------- */

static unsigned long long counts[PVNET_VERR_COUNT];
static unsigned long long requests, accepted_multi, accepted_gso, accepted_zero_len;
static uint8_t source_page[PAGE];

static void fail(const char *what, const uint8_t (*raw)[ENTRY], uint32_t avail,
		 int got)
{
	fprintf(stderr, "MISMATCH after %llu packets: %s (validator: %d %s)\n",
		requests, what, got, pvnet_validate_strerror(got));
	for (uint32_t i = 0; i < avail; i++) {
		for (int j = 0; j < ENTRY; j++)
			fprintf(stderr, "%02x ", raw[i][j]);
		fputc('\n', stderr);
	}
	abort();
}

/*
 * The backend's side of an accepted packet: copy every segment into a heap
 * buffer of exactly `size` bytes (ASan catches a byte past it), counting how
 * often each byte is written.
 */
static void replay_plan(const struct pvnet_tx_info *info,
			const uint8_t (*raw)[ENTRY], uint32_t avail)
{
	uint8_t *pkt = malloc(info->size ? info->size : 1);
	uint8_t *hits = calloc(info->size ? info->size : 1, 1);
	uint32_t covered = 0;

	if (!pkt || !hits)
		abort();
	if (info->nr_segs > PVNET_TXV_FATAL_SLOTS)
		fail("more segments than the plan holds", raw, avail, 0);
	for (uint32_t i = 0; i < info->nr_segs; i++) {
		const struct pvnet_tx_seg *s = &info->seg[i];

		if (!s->len)
			fail("empty segment in the plan (XSA-448)", raw, avail, 0);
		if ((uint32_t)s->offset + s->len > PAGE)
			fail("segment crosses its page", raw, avail, 0);
		if (s->pkt_off != covered)
			fail("segments not in packet order", raw, avail, 0);
		memcpy(pkt + s->pkt_off, source_page + s->offset, s->len);
		for (uint32_t b = 0; b < s->len; b++)
			hits[s->pkt_off + b]++;
		covered += s->len;
	}
	if (covered != info->size)
		fail("plan does not cover the packet", raw, avail, 0);
	for (uint32_t b = 0; b < info->size; b++)
		if (hits[b] != 1)
			fail("a packet byte copied twice or never", raw, avail, 0);
	free(pkt);
	free(hits);
}

static void check_accepted(const uint8_t (*raw)[ENTRY], uint32_t avail,
			   const struct verdict *v,
			   const struct pvnet_tx_info *info)
{
	uint32_t segs = 0;

	if (v->any)
		fail("accepted a packet that breaks a rule", raw, avail, 0);
	if (info->size != v->size || info->id != get16(raw[0], OFF_ID) ||
	    info->flags != get16(raw[0], OFF_FLAGS))
		fail("info size/id/flags", raw, avail, 0);
	if (info->nr_entries != v->entries || info->nr_slots != v->slots ||
	    info->nr_extras != v->extras)
		fail("info request counts", raw, avail, 0);
	if (info->gso_type != v->gso_type ||
	    (v->gso_type && info->gso_size != v->gso_size) || info->has_hash != v->hash)
		fail("info GSO/hash", raw, avail, 0);
	/* the expected plan: the first slot's share, then each non-empty slot */
	if (v->first_len) {
		if (info->seg[0].gref != get32(raw[0], OFF_GREF) ||
		    info->seg[0].offset != get16(raw[0], OFF_OFFSET) ||
		    info->seg[0].len != v->first_len)
			fail("first segment", raw, avail, 0);
		segs++;
	}
	for (uint32_t s = 1; s < v->slots; s++) {
		const uint8_t *e = raw[v->extras + s];

		if (!get16(e, OFF_SIZE)) {
			accepted_zero_len++;
			continue;
		}
		if (segs >= info->nr_segs || info->seg[segs].gref != get32(e, OFF_GREF) ||
		    info->seg[segs].offset != get16(e, OFF_OFFSET) ||
		    info->seg[segs].len != get16(e, OFF_SIZE))
			fail("segment of a later slot", raw, avail, 0);
		segs++;
	}
	if (segs != info->nr_segs)
		fail("number of segments", raw, avail, 0);
	replay_plan(info, raw, avail);
	accepted_multi += v->slots > 1;
	accepted_gso += v->gso_type != 0;
}

/* Exactly-sized heap copies, at every alignment of 4 (the backend's array). */
static struct pvnet_tx_request *copies;

static void one_packet(void)
{
	uint8_t raw[WINDOW][ENTRY];
	struct device dev;
	struct pvnet_vif_limits lim;
	struct pvnet_tx_info info;
	struct verdict v;
	uint32_t avail;
	int err;

	random_device(&dev);
	avail = random_packet(raw, &dev);
	lim = (struct pvnet_vif_limits){
		.max_slots = dev.max_slots, .max_size = dev.max_size,
		.gref_limit = dev.gref_limit,
		.flags = (dev.gso4 ? PVNET_TXV_GSO_TCPV4 : 0) |
			 (dev.gso6 ? PVNET_TXV_GSO_TCPV6 : 0) |
			 (dev.mcast ? PVNET_TXV_MCAST : 0),
	};
	/* the validator sees only the `avail` requests, at the end of the buffer */
	memcpy(copies + (WINDOW - avail), raw, (size_t)avail * ENTRY);
	err = pvnet_validate_tx(copies + (WINDOW - avail), avail, &lim, &info);
	reference((const uint8_t (*)[ENTRY])raw, avail, &dev, &v);
	requests++;
	if (err > 0 || err <= -PVNET_VERR_COUNT)
		fail("return value out of range", raw, avail, err);
	counts[-err]++;
	if (!err) {
		check_accepted(raw, avail, &v, &info);
		return;
	}
	if (!v.violated[-err])
		fail("rejected for a rule the packet does not break", raw, avail, err);
	if (pvnet_validate_fatal(err) != fatal_rule[-err])
		fail("fatal classification", raw, avail, err);
	if (!pvnet_validate_fatal(err)) {
		if (v.fatal)
			fail("only dropped a packet that breaks the ring", raw, avail, err);
		if (info.nr_entries != v.entries || info.nr_slots != v.slots ||
		    info.nr_extras != v.extras || info.nr_segs)
			fail("request counts of a dropped packet", raw, avail, err);
	}
}

static unsigned long long rx_ok, rx_bad;

static void one_rx_request(void)
{
	struct device dev;
	struct pvnet_rx_request req = { .id = (uint16_t)rnd() };
	struct pvnet_vif_limits lim;
	int err;

	random_device(&dev);
	dev.max_slots = 18;
	dev.max_size = 1514;
	req.gref = pick_gref(&dev);
	lim = (struct pvnet_vif_limits){ .max_slots = 18, .max_size = 1514,
					 .gref_limit = dev.gref_limit };
	err = pvnet_validate_rx_req(&req, &lim);
	if (err != (bad_gref(req.gref, &dev) ? -PVNET_VERR_GREF : 0)) {
		fprintf(stderr, "rx: gref %u limit %u: got %d\n", req.gref,
			dev.gref_limit, err);
		abort();
	}
	if (err)
		rx_bad++;
	else
		rx_ok++;
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
		prod = cons + size + below(3) - 1;
		break;
	case 2:
		prod = cons - below(3);
		break;
	default:
		prod = cons + (uint32_t)(rnd() % ((uint64_t)size + 1));
		break;
	}
	err = pvnet_validate_ring_prod(prod, cons, size);
	dist = ((uint64_t)prod + (1ULL << 32) - cons) % (1ULL << 32);
	if (size == 0 || __builtin_popcount(size) != 1)
		want = -PVNET_VERR_PARAM;
	else
		want = dist <= size ? 0 : -PVNET_VERR_RING;
	if (err != want) {
		fprintf(stderr, "ring: prod %u cons %u size %u: got %d want %d\n",
			prod, cons, size, err, want);
		abort();
	}
	if (!err)
		ring_ok++;
	else if (err == -PVNET_VERR_RING)
		ring_bad++;
	else
		ring_param++;
}

int main(int argc, char **argv)
{
	unsigned long long n = argc > 1 ? strtoull(argv[1], NULL, 0) : 1000000;
	uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 0x9e3779b97f4a7c15ULL;

	rng_state = seed ? seed : 1;
	copies = malloc((size_t)WINDOW * sizeof(*copies));
	if (!copies)
		return 1;
	for (int i = 0; i < PAGE; i++)
		source_page[i] = (uint8_t)i;
	for (int i = 1; i < PVNET_VERR_COUNT; i++) {
		if (!strcmp(pvnet_validate_strerror(-i), "unknown error"))
			return 2;
	}
	for (unsigned long long i = 0; i < n; i++) {
		one_packet();
		if (i % 8 == 0) {
			one_rx_request();
			one_ring_check();
		}
	}
	free(copies);
	printf("requests %llu\n", requests);
	printf("accepted %llu\n", counts[0]);
	printf("accepted-multislot %llu\n", accepted_multi);
	printf("accepted-gso %llu\n", accepted_gso);
	printf("accepted-zero-length-slots %llu\n", accepted_zero_len);
	for (int i = 1; i < PVNET_VERR_COUNT; i++)
		printf("rejected %s: %llu\n", pvnet_validate_strerror(-i),
		       i == PVNET_VERR_RING ? ring_bad : counts[i]);
	printf("rx-accepted %llu\nrx-rejected %llu\n", rx_ok, rx_bad);
	printf("ring-ok %llu\nring-bad %llu\nring-param %llu\n", ring_ok, ring_bad,
	       ring_param);
	return 0;
}
