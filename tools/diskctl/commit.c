/* SPDX-License-Identifier: MIT */
/*
 * diskctl commit: merge the top layer of a differencing chain into the layer
 * below, as qemu-img commit -d does (docs/diskctl.md, "Merging: commit").
 * SPEC is opened read-only with DC_OPEN_FORCE_SHARE, so that the parent,
 * opened writable on its own from the spec dc_describe() gives layer 1, is
 * not locked by it; dc_map() says which extents layer 0 holds and only those
 * are copied, many chunks in flight. The child is left as it was: it still
 * reads the same, and so does the chain, which is why a stopped commit can
 * simply be run again.
 */
#include "diskctl.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ctl_commit_range {
	uint64_t off, len;
};

struct ctl_commit_slot {
	bool busy, writing;
	uint64_t off;
	size_t len;
	unsigned char *buf;
	struct iovec iov;
};

struct ctl_commit {
	const char *spec;
	char *parent; /* layer 1's spec */
	dc_disk *src, *dst;
	dc_queue *sq, *dq;
	uint32_t sss, dss;
	struct ctl_commit_range *ranges;
	size_t nranges, cap, cur; /* cur: the range the next chunk comes from */
	uint64_t pos;		  /* bytes of ranges[cur] already handed out */
	uint64_t total, done;
	uint64_t low; /* everything below it is committed (for the stop message) */
	uint64_t bad; /* the first byte of the lowest chunk that failed */
	int err;
};

/* Keep the extents layer 0 holds (zeroes too: the parent must read them). */
static int ctl_commit_extent(void *arg, const struct dc_extent *e)
{
	struct ctl_commit *m = arg;
	struct ctl_commit_range *r = m->nranges ? &m->ranges[m->nranges - 1] : NULL;

	if (e->layer != 0)
		return 0;
	m->total += e->length;
	if (r && r->off + r->len == e->offset) {
		r->len += e->length;
		return 0;
	}
	if (m->nranges == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 64;
		m->ranges = realloc(m->ranges, m->cap * sizeof(*m->ranges));
		if (!m->ranges) {
			ctl_err("out of memory");
			exit(CTL_EXIT_FAIL);
		}
	}
	m->ranges[m->nranges++] = (struct ctl_commit_range){ e->offset, e->length };
	return 0;
}

static void ctl_commit_submit(struct ctl_commit *m, struct ctl_commit_slot *s, bool write)
{
	struct dc_io io = { .iov = &s->iov, .iovcnt = 1, .user_data = s };
	int rc;

	s->busy = true;
	s->writing = write;
	s->iov = (struct iovec){ s->buf, s->len };
	io.op = write ? DC_OP_WRITE : DC_OP_READ;
	io.sector = s->off / (write ? m->dss : m->sss);
	rc = dc_submit(write ? m->dq : m->sq, &io);
	if (rc < 0) {
		s->busy = false;
		ctl_err("submit to '%s': %s", write ? m->parent : m->spec,
			dc_strerror(rc));
		if (!m->err)
			m->err = rc;
	}
}

/* Give an idle slot the next chunk of layer 0, unless done, failed or
 * interrupted. */
static void ctl_commit_next(struct ctl_commit *m, struct ctl_commit_slot *s, size_t chunk)
{
	struct ctl_commit_range *r;

	if (m->err || ctl_signal() || m->cur == m->nranges)
		return;
	r = &m->ranges[m->cur];
	s->off = r->off + m->pos;
	s->len = r->len - m->pos < chunk ? r->len - m->pos : chunk;
	m->pos += s->len;
	if (m->pos == r->len) {
		m->cur++;
		m->pos = 0;
	}
	ctl_commit_submit(m, s, false);
}

static void ctl_commit_done(struct ctl_commit *m, const struct dc_completion *c,
			    size_t chunk)
{
	struct ctl_commit_slot *s = c->user_data;

	s->busy = false;
	if (c->result < 0) {
		if (s->off < m->bad)
			m->bad = s->off;
		if (!m->err)
			m->err = c->result;
		ctl_err_io(c->result, c->detail,
			   "%s '%s' at byte %" PRIu64 " (%zu bytes)",
			   s->writing ? "write" : "read",
			   s->writing ? m->parent : m->spec, s->off, s->len);
		return;
	}
	if (!s->writing) {
		ctl_commit_submit(m, s, true);
		return;
	}
	m->done += s->len;
	ctl_commit_next(m, s, chunk);
}

/* The first byte a slot still holds, or where the next chunk starts. */
static void ctl_commit_low(struct ctl_commit *m, const struct ctl_commit_slot *slots,
			   unsigned n)
{
	m->low = m->cur < m->nranges ? m->ranges[m->cur].off + m->pos : UINT64_MAX;
	if (m->bad < m->low)
		m->low = m->bad;
	for (unsigned i = 0; i < n; i++)
		if (slots[i].busy && slots[i].off < m->low)
			m->low = slots[i].off;
}

/* Copy every range; 0, or the first error (reported). */
static int ctl_commit_copy(struct ctl_commit *m, unsigned nslots, size_t chunk)
{
	struct ctl_commit_slot *slots = ctl_xalloc(nslots * sizeof(*slots));
	dc_queue *qs[2] = { m->sq, m->dq };
	struct dc_completion comps[32];
	unsigned busy;

	for (unsigned i = 0; i < nslots; i++) {
		slots[i].buf = ctl_aligned(chunk);
		ctl_commit_next(m, &slots[i], chunk);
	}
	for (;;) {
		int got = 0;

		for (int qi = 0; qi < 2; qi++) {
			int n = dc_queue_reap(qs[qi], comps, 32);

			for (int i = 0; i < n; i++)
				ctl_commit_done(m, &comps[i], chunk);
			got += n > 0 ? n : 0;
		}
		ctl_commit_low(m, slots, nslots);
		if (got)
			continue;
		busy = 0;
		for (unsigned i = 0; i < nslots; i++)
			busy += slots[i].busy;
		if (!busy)
			break;
		ctl_queues_wait(qs, 2, 100);
	}
	for (unsigned i = 0; i < nslots; i++)
		free(slots[i].buf);
	free(slots);
	return m->err;
}

/* Open the chain, its layer 1 and the queues; 0, or -1 (reported). */
static int ctl_commit_open(struct ctl_commit *m)
{
	struct ctl_layers layers;
	uint64_t dbytes;
	int rc;

	m->src = ctl_open(m->spec, DC_OPEN_READ_ONLY | DC_OPEN_FORCE_SHARE);
	if (!m->src)
		return -1;
	ctl_layers_get(m->src, &layers);
	if (layers.n > 1)
		m->parent = ctl_strdup(layers.spec[1]);
	ctl_layers_free(&layers);
	if (!m->parent) {
		ctl_err("'%s' has no lower layer to commit into: commit merges the top "
			"layer of a differencing chain (a vhd: or vhdx: child, "
			"sqldiff:PATH:LOWER) into the one below it",
			m->spec);
		return -1;
	}
	if (dc_open(m->parent, 0, &m->dst) < 0) {
		ctl_err("the layer below the top of '%s', '%s', cannot be opened "
			"writable, so nothing can be committed into it: %s",
			m->spec, m->parent, dc_last_error());
		return -1;
	}
	m->sss = dc_sector_size(m->src);
	m->dss = dc_sector_size(m->dst);
	dbytes = dc_sector_count(m->dst) * m->dss;
	if (dbytes < dc_sector_count(m->src) * m->sss || m->sss % m->dss) {
		ctl_err("'%s' (%" PRIu64 " bytes, %" PRIu32 "-byte sectors) cannot "
			"take '%s''s top layer (%" PRIu64 " bytes, %" PRIu32 "-byte "
			"sectors)",
			m->parent, dbytes, m->dss, m->spec,
			dc_sector_count(m->src) * m->sss, m->sss);
		return -1;
	}
	rc = dc_queue_open(m->src, DC_QUEUE_POLL, &m->sq);
	if (rc >= 0)
		rc = dc_queue_open(m->dst, DC_QUEUE_POLL, &m->dq);
	if (rc < 0) {
		ctl_err("cannot open a queue: %s", ctl_last_error(rc));
		return -1;
	}
	return 0;
}

static void ctl_commit_close(struct ctl_commit *m)
{
	if (m->dq)
		dc_queue_close(m->dq);
	if (m->sq)
		dc_queue_close(m->sq);
	if (m->dst)
		dc_close(m->dst);
	if (m->src)
		dc_close(m->src);
	free(m->ranges);
	m->dq = m->sq = NULL;
	m->dst = m->src = NULL;
	m->ranges = NULL;
}

/* Does the chain still open over the parent it wrote to? A VHDX child names
 * its parent's DataWriteGuid, which the first write changes (docs/diskctl.md,
 * "Merging: commit"): such a child is orphaned by any commit. */
static bool ctl_commit_reopens(const struct ctl_commit *m, const char *then)
{
	dc_disk *d;

	if (dc_open(m->spec, DC_OPEN_READ_ONLY | DC_OPEN_FORCE_SHARE, &d) < 0) {
		ctl_err("'%s' no longer opens over the changed '%s': %s; %s", m->spec,
			m->parent, dc_last_error(), then);
		return false;
	}
	dc_close(d);
	return true;
}

/* After an error or a signal: how far it got, and whether running it again
 * is safe (the child still reads the same over the partly merged parent). */
static void ctl_commit_stopped(const struct ctl_commit *m)
{
	uint64_t low = m->low == UINT64_MAX ? m->done : m->low;
	const char *why = m->err ? "stopped by the error" : "interrupted";

	if (!m->done)
		ctl_err("%s: nothing of the top layer (%" PRIu64 " bytes) was written to "
			"'%s'",
			why, m->total, m->parent);
	else
		ctl_err("%s: %" PRIu64 " of %" PRIu64 " bytes of the top layer were "
			"written to '%s' (all of it below byte %" PRIu64 ")",
			why, m->done, m->total, m->parent, low);
	if (ctl_commit_reopens(m, "it still holds all its data"))
		ctl_err("'%s' is unchanged and the chain reads the same, so "
			"'diskctl commit' can be run again",
			m->spec);
}

int ctl_commit(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "quiet", no_argument, NULL, 'q' },
		{ "bs", required_argument, NULL, 'b' },
		{ "qd", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	/* cp's options, the same defaults; cp.chunk/qd/quiet are read here. */
	struct ctl_cp cp = { .chunk = 1 << 20, .qd = 16 };
	struct ctl_commit m = { .bad = UINT64_MAX };
	uint64_t t0;
	double secs;
	bool orphaned;
	char hb[32];
	int c, rc = CTL_EXIT_FAIL;

	while ((c = ctl_getopt(argc, argv, "hq", lo)) != -1)
		ctl_cp_option(&cp, c);
	ctl_operands(argc, argv, 1, 1, "SPEC");
	m.spec = argv[optind];
	ctl_catch_signals();
	if (ctl_commit_open(&m) < 0)
		goto out;
	if (cp.chunk < m.sss || cp.chunk < m.dss)
		cp.chunk = m.sss > m.dss ? m.sss : m.dss;
	t0 = ctl_now_ns();
	c = dc_map(m.src, 0, UINT64_MAX, ctl_commit_extent, &m);
	if (c < 0) {
		ctl_err("cannot map '%s': %s", m.spec, ctl_last_error(c));
		goto out;
	}
	c = ctl_commit_copy(&m, (unsigned)cp.qd, cp.chunk);
	/* Stopped too: what was written is made durable. */
	if (ctl_flush(m.dst, m.parent) < 0 && !c)
		c = -1;
	secs = (ctl_now_ns() - t0) / 1e9;
	ctl_commit_close(&m); /* what follows opens the chain again */
	if (c || m.done < m.total) {
		ctl_commit_stopped(&m);
		rc = c ? CTL_EXIT_FAIL : 128 + ctl_signal();
		goto out;
	}
	rc = 0;
	orphaned = !ctl_commit_reopens(&m, "its data is in the parent now: delete it, "
					   "or make a new child with 'diskctl "
					   "create --parent'");
	if (!cp.quiet) {
		ctl_human_bytes(m.done, hb, sizeof(hb));
		printf("committed %" PRIu64 " bytes (%s) of '%s' into '%s' in %.3f s; "
		       "'%s' is left as it was%s\n",
		       m.done, hb, m.spec, m.parent, secs, m.spec,
		       orphaned ? " (orphaned: see above)" : "");
	}
out:
	ctl_commit_close(&m);
	free(m.parent);
	return rc;
}
