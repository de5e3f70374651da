/* SPDX-License-Identifier: MIT */
/*
 * diskctl compare: do two disks hold the same bytes? Chunks of both are read
 * with many in flight; the answer is the first byte that differs. As
 * qemu-img compare does by default, disks of different sizes compare equal
 * when the larger one holds only zeroes past the end of the smaller.
 */
#include "diskctl.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define CTL_CMP_SIDES 2
#define CTL_CMP_ERROR 2 /* exit status: 0 same, 1 differ, 2 error (qemu-img's) */

struct ctl_cmp_slot {
	uint64_t off;
	size_t len;
	unsigned pending; /* reads still in flight */
	unsigned char *buf[CTL_CMP_SIDES];
	struct iovec iov[CTL_CMP_SIDES];
};

struct ctl_cmp {
	const char *spec[CTL_CMP_SIDES];
	dc_disk *disk[CTL_CMP_SIDES];
	dc_queue *q[CTL_CMP_SIDES];
	uint32_t ss[CTL_CMP_SIDES];
	uint64_t size[CTL_CMP_SIDES];
	uint64_t total, next, chunk, qd;
	uint64_t diff; /* the first byte that differs; total when none */
	int err;
	bool strict, quiet;
};

/* The first index where a and b differ, or len. */
static size_t ctl_cmp_first(const unsigned char *a, const unsigned char *b, size_t len)
{
	size_t i = 0;

	while (i + 64 <= len && !memcmp(a + i, b + i, 64))
		i += 64;
	while (i < len && a[i] == b[i])
		i++;
	return i;
}

/* Read side k's part of the slot's chunk; past the end of that disk the
 * buffer is zeroes. */
static void ctl_cmp_read(struct ctl_cmp *c, struct ctl_cmp_slot *s, int k)
{
	uint64_t end = c->size[k];
	size_t n = s->off >= end ?
			   0 :
			   (size_t)(end - s->off < s->len ? end - s->off : s->len);
	struct dc_io io = { .op = DC_OP_READ, .iovcnt = 1, .user_data = s };
	int rc;

	memset(s->buf[k] + n, 0, s->len - n);
	if (!n)
		return;
	s->iov[k].iov_base = s->buf[k];
	s->iov[k].iov_len = n;
	io.iov = &s->iov[k];
	io.sector = s->off / c->ss[k];
	rc = dc_submit(c->q[k], &io);
	if (rc < 0) {
		ctl_err("submit to '%s': %s", c->spec[k], dc_strerror(rc));
		if (!c->err)
			c->err = rc;
		return;
	}
	s->pending++;
}

/* Give an idle slot the next chunk, unless done, failed, or past a
 * difference found already. */
static void ctl_cmp_start(struct ctl_cmp *c, struct ctl_cmp_slot *s)
{
	if (c->err || c->next >= c->total || c->next >= c->diff)
		return;
	s->off = c->next;
	s->len = c->total - c->next < c->chunk ? c->total - c->next : c->chunk;
	c->next += s->len;
	/* off < total: the larger disk always has a read in flight. */
	for (int k = 0; k < CTL_CMP_SIDES; k++)
		ctl_cmp_read(c, s, k);
}

static void ctl_cmp_complete(struct ctl_cmp *c, const struct dc_completion *d, int k)
{
	struct ctl_cmp_slot *s = d->user_data;
	size_t at;

	s->pending--;
	if (d->result < 0) {
		if (!c->err)
			c->err = d->result;
		ctl_err_io(d->result, d->detail,
			   "read '%s' at byte %" PRIu64 " (%zu bytes)", c->spec[k],
			   s->off, s->iov[k].iov_len);
	}
	if (s->pending || c->err)
		return;
	at = ctl_cmp_first(s->buf[0], s->buf[1], s->len);
	if (at < s->len && s->off + at < c->diff)
		c->diff = s->off + at;
	ctl_cmp_start(c, s);
}

static void ctl_cmp_run(struct ctl_cmp *c)
{
	struct ctl_cmp_slot *slots = ctl_xalloc(c->qd * sizeof(*slots));
	struct dc_completion comps[32];

	for (uint64_t i = 0; i < c->qd; i++)
		for (int k = 0; k < CTL_CMP_SIDES; k++)
			slots[i].buf[k] = ctl_aligned(c->chunk);
	for (uint64_t i = 0; i < c->qd; i++)
		ctl_cmp_start(c, &slots[i]);
	for (;;) {
		int got = 0;
		unsigned busy = 0;

		for (int k = 0; k < CTL_CMP_SIDES; k++) {
			int n = dc_queue_reap(c->q[k], comps, 32);

			for (int i = 0; i < n; i++)
				ctl_cmp_complete(c, &comps[i], k);
			got += n > 0 ? n : 0;
		}
		if (got)
			continue;
		for (uint64_t i = 0; i < c->qd; i++)
			busy += slots[i].pending;
		if (!busy)
			break;
		ctl_queues_wait(c->q, CTL_CMP_SIDES, 100);
	}
	for (uint64_t i = 0; i < c->qd; i++)
		for (int k = 0; k < CTL_CMP_SIDES; k++)
			free(slots[i].buf[k]);
	free(slots);
}

/* Open both disks and a polled queue on each; 0, or -1 (reported). */
static int ctl_cmp_open(struct ctl_cmp *c)
{
	for (int k = 0; k < CTL_CMP_SIDES; k++) {
		int rc;

		c->disk[k] = ctl_open(c->spec[k], DC_OPEN_READ_ONLY);
		if (!c->disk[k])
			return -1;
		c->ss[k] = dc_sector_size(c->disk[k]);
		c->size[k] = dc_sector_count(c->disk[k]) * c->ss[k];
		/* Sizes are powers of two: a chunk of the larger fits both. */
		if (c->chunk < c->ss[k])
			c->chunk = c->ss[k];
		rc = dc_queue_open(c->disk[k], DC_QUEUE_POLL, &c->q[k]);
		if (rc < 0) {
			ctl_err("queue on '%s': %s", c->spec[k], ctl_last_error(rc));
			return -1;
		}
	}
	c->total = c->size[0] > c->size[1] ? c->size[0] : c->size[1];
	c->diff = c->total;
	return 0;
}

static void ctl_cmp_close(struct ctl_cmp *c)
{
	for (int k = 0; k < CTL_CMP_SIDES; k++) {
		if (c->q[k])
			dc_queue_close(c->q[k]);
		if (c->disk[k])
			dc_close(c->disk[k]);
	}
}

/* Print the answer; the exit status. */
static int ctl_cmp_report(const struct ctl_cmp *c)
{
	bool sizes = c->size[0] != c->size[1];
	uint64_t diff = c->diff,
		 smaller = c->size[0] < c->size[1] ? c->size[0] : c->size[1];

	/* --strict: a size difference is a difference where the smaller ends. */
	if (sizes && c->strict && smaller < diff)
		diff = smaller;
	if (c->quiet)
		return diff < c->total ? 1 : 0;
	if (sizes)
		printf("sizes differ: '%s' is %" PRIu64 " bytes, '%s' %" PRIu64
		       " bytes%s\n",
		       c->spec[0], c->size[0], c->spec[1], c->size[1],
		       c->strict ? "" : "; the larger must hold zeroes past the smaller");
	if (diff < c->total) {
		printf("differ at byte %" PRIu64 " (sector %" PRIu64 " of 512 bytes)\n",
		       diff, diff / 512);
		return 1;
	}
	printf("identical: %" PRIu64 " bytes\n", c->total);
	return 0;
}

const struct ctl_opt ctl_compare_opts[] = {
	CTL_OPT("strict", 's', CTL_OPT_TRUE, struct ctl_cmp, strict, NULL,
		"disks of different sizes differ, at the smaller's end"),
	CTL_OPT_QUIET(struct ctl_cmp, "print nothing; the exit status says"),
	CTL_OPTS_CHUNKS(struct ctl_cmp, "chunks of each disk in flight (default 16)"),
	{ 0 },
};

int ctl_compare(int argc, char **argv)
{
	struct ctl_cmp c = { CTL_CHUNKS_DEFAULT };
	char **ops = ctl_parse(argc, argv, &c, NULL);
	int rc = CTL_CMP_ERROR;

	c.spec[0] = ops[0];
	c.spec[1] = ops[1];
	if (ctl_cmp_open(&c) == 0) {
		ctl_cmp_run(&c);
		if (!c.err)
			rc = ctl_cmp_report(&c);
	}
	ctl_cmp_close(&c);
	return rc;
}
