/* SPDX-License-Identifier: MIT */
/*
 * diskctl commit: merge the top layer of a differencing chain into the layer
 * below, as qemu-img commit -d does (docs/diskctl.md, "Merging: commit").
 * SPEC is opened read-only with DC_OPEN_FORCE_SHARE, so that the parent,
 * opened writable on its own from the spec dc_describe() gives layer 1, is
 * not locked by it; dc_map() says which extents layer 0 holds and only those
 * are copied, by cp's engine (ctl_cp_run). The child is left as it was: it still
 * reads the same, and so does the chain, which is why a stopped commit can
 * simply be run again.
 */
#include "diskctl.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ctl_commit {
	const char *spec;
	char *parent; /* layer 1's spec */
	dc_disk *src, *dst;
	uint32_t sss, dss;
	struct ctl_range *ranges; /* what layer 0 holds */
	size_t nranges, cap;
	uint64_t total;
	struct ctl_cp cp; /* the copy: done, and low after a stop */
};

/* Keep the extents layer 0 holds (zeroes too: the parent must read them). */
static int ctl_commit_extent(void *arg, const struct dc_extent *e)
{
	struct ctl_commit *m = arg;
	struct ctl_range *r = m->nranges ? &m->ranges[m->nranges - 1] : NULL;

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
	m->ranges[m->nranges++] = (struct ctl_range){ e->offset, e->length };
	return 0;
}

/* Open the chain and its layer 1, and find what layer 0 holds; 0, or -1
 * (reported). */
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
	rc = dc_map(m->src, 0, UINT64_MAX, ctl_commit_extent, m);
	if (rc < 0) {
		ctl_err("cannot map '%s': %s", m->spec, ctl_last_error(rc));
		return -1;
	}
	return 0;
}

static void ctl_commit_close(struct ctl_commit *m)
{
	if (m->dst)
		dc_close(m->dst);
	if (m->src)
		dc_close(m->src);
	free(m->ranges);
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
static void ctl_commit_stopped(const struct ctl_commit *m, bool failed)
{
	uint64_t low = m->cp.low == UINT64_MAX ? m->cp.done : m->cp.low;
	const char *why = failed ? "stopped by the error" : "interrupted";

	if (!m->cp.done)
		ctl_err("%s: nothing of the top layer (%" PRIu64 " bytes) was written to "
			"'%s'",
			why, m->total, m->parent);
	else
		ctl_err("%s: %" PRIu64 " of %" PRIu64 " bytes of the top layer were "
			"written to '%s' (all of it below byte %" PRIu64 ")",
			why, m->cp.done, m->total, m->parent, low);
	if (ctl_commit_reopens(m, "it still holds all its data"))
		ctl_err("'%s' is unchanged and the chain reads the same, so "
			"'diskctl commit' can be run again",
			m->spec);
}

const struct ctl_opt ctl_commit_opts[] = {
	CTL_OPT_QUIET(struct ctl_cp, "print nothing on success"),
	CTL_OPTS_CHUNKS(struct ctl_cp, "chunks in flight (default 16)"),
	{ 0 },
};

/* Copy layer 0's extents into the parent and flush it; 0, or -1 (reported). */
static int ctl_commit_copy(struct ctl_commit *m)
{
	struct ctl_cp *cp = &m->cp;
	int rc;

	cp->src_spec = m->spec;
	cp->dst_spec = m->parent;
	cp->src = m->src;
	cp->dst = m->dst;
	cp->ranges = m->ranges;
	cp->nranges = m->nranges;
	/* Zeroes too: the parent must read them (zeroes = CTL_ZEROES_WRITE). */
	rc = ctl_cp_run(cp) ? -1 : 0;
	/* Stopped too: what was written is made durable. */
	if (ctl_flush(m->dst, m->parent) < 0)
		rc = -1;
	return rc;
}

int ctl_commit(int argc, char **argv)
{
	struct ctl_commit m = { .cp = { CTL_CHUNKS_DEFAULT } };
	uint64_t t0;
	double secs;
	bool orphaned;
	char hb[32];
	int c, rc = CTL_EXIT_FAIL;

	m.spec = ctl_parse(argc, argv, &m.cp, NULL)[0];
	ctl_catch_signals();
	/* The file engine's copy mode, as for cp (ctl_cp_main says why). */
	setenv("DISKCORE_IO_COPY", "1", 0);
	if (ctl_commit_open(&m) < 0)
		goto out;
	t0 = ctl_now_ns();
	c = ctl_commit_copy(&m);
	secs = (ctl_now_ns() - t0) / 1e9;
	ctl_commit_close(&m); /* what follows opens the chain again */
	if (c || m.cp.done < m.total) {
		ctl_commit_stopped(&m, c < 0);
		rc = c ? CTL_EXIT_FAIL : 128 + ctl_signal();
		goto out;
	}
	rc = 0;
	orphaned = !ctl_commit_reopens(&m, "its data is in the parent now: delete it, "
					   "or make a new child with 'diskctl "
					   "create --parent'");
	if (!m.cp.quiet) {
		ctl_human_bytes(m.cp.done, hb, sizeof(hb));
		printf("committed %" PRIu64 " bytes (%s) of '%s' into '%s' in %.3f s; "
		       "'%s' is left as it was%s\n",
		       m.cp.done, hb, m.spec, m.parent, secs, m.spec,
		       orphaned ? " (orphaned: see above)" : "");
	}
out:
	ctl_commit_close(&m);
	free(m.parent);
	return rc;
}
