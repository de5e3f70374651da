/* SPDX-License-Identifier: MIT */
/* qcow2 check (dc_check(), ABI 1.1; docs/spec-strings.md, "qcow2"): every
 * cluster's expected refcount counted from what references it (the header,
 * the active L1 table, every snapshot's L1 table, each L2 table once per L1
 * entry naming it and each data cluster once per L2 entry naming it, the
 * refcount table and blocks, the snapshot table), then compared with the
 * refcounts on disk. Stored below the use: corrupt (a write could reuse a
 * cluster in use); above it or unused: a leak. Memory is one counter per
 * cluster of the file, so a hostile image costs what its size justifies. */
#include "qcow2.h"

#include "endian/byteorder.h"
#include "vhdfmt/vhdfmt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Findings of one kind reported one by one; past that, one summary. */
#define CK_MAX_REPORTS 100

struct ck {
	struct qcow2 *q;
	dc_check_report_fn report;
	void *arg;
	uint64_t fsize;
	uint64_t nclust; /* clusters the file holds (the last one partial) */
	uint32_t *use;	 /* expected refcount per cluster */
	uint8_t *buf;	 /* one cluster */
	uint64_t found[4];
};

static void ck_find(struct ck *c, uint32_t kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void ck_find(struct ck *c, uint32_t kind, const char *fmt, ...)
{
	char m[512];
	va_list ap;

	if (++c->found[kind & 3] > CK_MAX_REPORTS)
		return;
	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	c->report(c->arg, kind, m);
}

static bool ck_inside(const struct ck *c, uint64_t off, uint64_t len)
{
	return off <= c->fsize && len <= c->fsize - off;
}

/* One more reference to the clusters of [off, off+len), all inside the file
 * (callers check). */
static void ck_use(struct ck *c, uint64_t off, uint64_t len)
{
	unsigned cb = c->q->h.cluster_bits;

	if (!len)
		return;
	for (uint64_t ci = off >> cb; ci <= (off + len - 1) >> cb && ci < c->nclust; ci++)
		if (c->use[ci] != UINT32_MAX)
			c->use[ci]++;
}

/* A table or cluster offset: cluster aligned, len bytes inside the file. */
static bool ck_place(struct ck *c, uint64_t off, uint64_t len, const char *what,
		     unsigned long long idx)
{
	if (off & (c->q->cluster_size - 1)) {
		ck_find(c, DC_CHECK_CORRUPT,
			"%s %llu at offset %llu is not cluster aligned", what, idx,
			(unsigned long long)off);
		return false;
	}
	if (!ck_inside(c, off, len)) {
		ck_find(c, DC_CHECK_CORRUPT,
			"%s %llu at offset %llu runs past the end of the file (%llu bytes)",
			what, idx, (unsigned long long)off, (unsigned long long)c->fsize);
		return false;
	}
	return true;
}

/* The clusters the L2 table in c->buf references. */
static void ck_l2_entries(struct ck *c, uint64_t l2_off)
{
	struct qcow2 *q = c->q;
	struct qcow2_map m;

	for (uint32_t i = 0; i < q->l2_entries; i++) {
		uint64_t e = get_be64(c->buf + ((size_t)i << q->entry_shift));
		uint64_t host = e & QCOW2_OFFSET_MASK;

		if (e & QCOW2_L2_COMPRESSED) {
			if (qcow2_decode_l2(q, e, 0, 0, &m) == 0)
				ck_use(c, m.off, m.clen);
			else
				ck_find(c, DC_CHECK_CORRUPT,
					"L2 table at %llu, entry %u: a compressed cluster "
					"past the end of the file",
					(unsigned long long)l2_off, i);
		} else if (host && ck_place(c, host, 1, "data cluster of L2 entry", i)) {
			ck_use(c, host, q->cluster_size);
		}
	}
}

/* An L1 table (the active one, or a snapshot's) and what it references;
 * with keep, the table as read (raw) is handed back there. */
static int ck_l1(struct ck *c, uint64_t l1_off, uint32_t l1_size, const char *what,
		 uint8_t **keep)
{
	struct qcow2 *q = c->q;
	uint64_t bytes = (uint64_t)l1_size * 8;
	uint8_t *l1;
	int ret;

	if (!ck_place(c, l1_off, bytes, what, 0) || bytes > QCOW2_MAX_L1_BYTES)
		return 0;
	ck_use(c, l1_off, bytes);
	l1 = malloc(bytes + 1);
	if (!l1)
		return -ENOMEM;
	ret = vhdfmt_pread(q->fd, l1, bytes, l1_off);
	for (uint32_t i = 0; ret == 0 && i < l1_size; i++) {
		uint64_t l2 = get_be64(l1 + 8 * (size_t)i) & QCOW2_OFFSET_MASK;

		if (!l2 || !ck_place(c, l2, q->cluster_size, "L2 table of L1 entry", i))
			continue;
		ck_use(c, l2, q->cluster_size);
		ret = vhdfmt_pread(q->fd, c->buf, q->cluster_size, l2);
		if (ret == 0)
			ck_l2_entries(c, l2);
	}
	if (keep && ret == 0)
		*keep = l1;
	else
		free(l1);
	return ret;
}

/* The refcount table's and blocks' own clusters; the table, read whole, in
 * *rct (host order), *n entries; NULL when it is not inside the file. */
static int ck_rc_tables(struct ck *c, uint64_t **rct, uint64_t *n)
{
	struct qcow2 *q = c->q;
	uint64_t bytes = (uint64_t)q->h.refcount_clusters * q->cluster_size;
	uint8_t *raw;
	int ret;

	*rct = NULL;
	*n = 0;
	if (!ck_place(c, q->h.refcount_off, bytes, "refcount table", 0))
		return 0;
	ck_use(c, q->h.refcount_off, bytes);
	raw = malloc(bytes + 1);
	*rct = calloc(bytes / 8 + 1, sizeof(**rct));
	if (!raw || !*rct) {
		free(raw);
		return -ENOMEM;
	}
	ret = vhdfmt_pread(q->fd, raw, bytes, q->h.refcount_off);
	for (uint64_t i = 0; ret == 0 && i < bytes / 8; i++) {
		uint64_t off = get_be64(raw + 8 * i) & ~0x1ffull;

		if (off && ck_place(c, off, q->cluster_size, "refcount block", i)) {
			(*rct)[i] = off;
			ck_use(c, off, q->cluster_size);
		}
	}
	*n = bytes / 8;
	free(raw);
	return ret;
}

static void ck_compare_one(struct ck *c, uint64_t ci, uint64_t stored)
{
	unsigned long long off = (unsigned long long)ci << c->q->h.cluster_bits;

	if (stored < c->use[ci])
		ck_find(c, DC_CHECK_CORRUPT,
			"cluster %llu (offset %llu): refcount %llu below its %u "
			"references",
			(unsigned long long)ci, off, (unsigned long long)stored,
			c->use[ci]);
	else if (stored > c->use[ci])
		ck_find(c, DC_CHECK_LEAK,
			"leaked cluster %llu (offset %llu): refcount %llu, %u references",
			(unsigned long long)ci, off, (unsigned long long)stored,
			c->use[ci]);
}

/* Every cluster of the file: its stored refcount against its use. */
static int ck_compare(struct ck *c, const uint64_t *rct, uint64_t n)
{
	struct qcow2 *q = c->q;
	unsigned bits = 1u << q->h.refcount_order;
	uint64_t per = (uint64_t)q->cluster_size * 8 / bits;
	int ret;

	for (uint64_t rb = 0; rb * per < c->nclust; rb++) {
		bool have = rb < n && rct[rb];

		if (have) {
			ret = vhdfmt_pread(q->fd, c->buf, q->cluster_size, rct[rb]);
			if (ret)
				return ret;
		}
		for (uint64_t j = 0; j < per && rb * per + j < c->nclust; j++) {
			uint64_t ci = rb * per + j,
				 v = have ? qcow2_rc_entry(c->buf, j, bits) : 0;

			ck_compare_one(c, ci, v);
			/* From here on use[] holds the stored refcount. */
			c->use[ci] = v < UINT32_MAX ? (uint32_t)v : UINT32_MAX;
		}
	}
	return 0;
}

/* The active tables' COPIED flags (a writer overwrites in place what it
 * says has refcount 1): set exactly when the stored refcount is 1. */
static bool ck_copied_ok(struct ck *c, uint64_t e, uint64_t host)
{
	uint64_t ci = host >> c->q->h.cluster_bits;

	return ci >= c->nclust || !(e & QCOW2_COPIED) == (c->use[ci] != 1);
}

static int ck_copied(struct ck *c, const uint8_t *l1, uint32_t l1_size)
{
	struct qcow2 *q = c->q;
	int ret = 0;

	for (uint32_t i = 0; ret == 0 && i < l1_size; i++) {
		uint64_t e1 = get_be64(l1 + 8 * (size_t)i), l2 = e1 & QCOW2_OFFSET_MASK;

		if (!l2 || (l2 & (q->cluster_size - 1)) ||
		    !ck_inside(c, l2, q->cluster_size))
			continue;
		if (!ck_copied_ok(c, e1, l2))
			ck_find(c, DC_CHECK_CORRUPT,
				"L1 entry %u: the copied flag disagrees with the L2 "
				"table's refcount %u",
				i, c->use[l2 >> q->h.cluster_bits]);
		ret = vhdfmt_pread(q->fd, c->buf, q->cluster_size, l2);
		for (uint32_t j = 0; ret == 0 && j < q->l2_entries; j++) {
			uint64_t e = get_be64(c->buf + ((size_t)j << q->entry_shift)),
				 host = e & QCOW2_OFFSET_MASK;

			if (e & QCOW2_L2_COMPRESSED) {
				if (e & QCOW2_COPIED)
					ck_find(c, DC_CHECK_CORRUPT,
						"L2 table at %llu, entry %u: a compressed "
						"cluster with the copied flag",
						(unsigned long long)l2, j);
			} else if (host && !(host & (q->cluster_size - 1)) &&
				   !ck_copied_ok(c, e, host)) {
				ck_find(c, DC_CHECK_CORRUPT,
					"L2 table at %llu, entry %u: the copied flag "
					"disagrees with the cluster's refcount %u",
					(unsigned long long)l2, j,
					c->use[host >> q->h.cluster_bits]);
			}
		}
	}
	return ret;
}

/* The references of everything but the refcount structures: the header,
 * the active L1 table (kept in *l1, *l1_size entries) and the snapshots'. */
static int ck_refs(struct ck *c, uint8_t **l1, uint32_t *l1_size)
{
	struct qcow2 *q = c->q;
	uint8_t raw[12];
	int ret;

	/* The active L1 as the header on disk names it (q->h holds the
	 * snapshot's when one is open). */
	*l1 = NULL;
	ret = vhdfmt_pread(q->fd, raw, sizeof(raw), 36);
	ck_use(c, 0, q->cluster_size);
	*l1_size = get_be32(raw);
	if (ret == 0)
		ret = ck_l1(c, get_be64(raw + 4), *l1_size, "active L1 table", l1);
	if (ret == 0 && q->nsnap && ck_inside(c, q->h.snapshots_off, q->snaps_len))
		ck_use(c, q->h.snapshots_off, q->snaps_len);
	for (uint32_t i = 0; ret == 0 && i < q->nsnap; i++)
		ret = ck_l1(c, q->snaps[i].l1_off, q->snaps[i].l1_size,
			    "snapshot L1 table", NULL);
	return ret;
}

static int ck_walk(struct ck *c)
{
	uint8_t *l1 = NULL;
	uint64_t *rct = NULL, n;
	uint32_t l1_size;
	int ret = ck_refs(c, &l1, &l1_size);

	if (ret == 0)
		ret = ck_rc_tables(c, &rct, &n);
	if (ret == 0)
		ret = ck_compare(c, rct, n);
	if (ret == 0 && l1)
		ret = ck_copied(c, l1, l1_size);
	free(rct);
	free(l1);
	return ret;
}

static void ck_quiet(void *arg, uint32_t kind, const char *msg)
{
	(void)arg;
	(void)kind;
	(void)msg;
}

int qcow2_count_refs(struct qcow2 *q, uint64_t fsize, uint32_t **use, uint64_t *nclust)
{
	struct ck c = { .q = q, .report = ck_quiet, .fsize = fsize };
	uint8_t *l1 = NULL;
	uint32_t l1_size;
	int ret;

	c.nclust = (fsize + q->cluster_size - 1) >> q->h.cluster_bits;
	c.use = calloc(c.nclust + 1, sizeof(*c.use));
	c.buf = malloc(q->cluster_size);
	ret = c.use && c.buf ? ck_refs(&c, &l1, &l1_size) : -ENOMEM;
	free(l1);
	free(c.buf);
	if (ret == 0 && c.found[DC_CHECK_CORRUPT & 3])
		ret = -EUCLEAN;
	if (ret) {
		free(c.use);
		return ret;
	}
	*use = c.use;
	*nclust = c.nclust;
	return 0;
}

static void ck_flags(struct ck *c)
{
	uint64_t inc = c->q->h.incompat;

	if (inc & QCOW2_INCOMPAT_CORRUPT)
		ck_find(c, DC_CHECK_CORRUPT,
			"the header's corrupt bit is set (QEMU found an inconsistency)");
	if ((inc & QCOW2_INCOMPAT_DIRTY) && c->q->writable)
		ck_find(c, DC_CHECK_NOTE,
			"the dirty bit is set: this disk has the image "
			"open for writing");
	else if (inc & QCOW2_INCOMPAT_DIRTY)
		ck_find(c, DC_CHECK_NOTE,
			"the dirty bit is set: the image was not closed "
			"cleanly");
}

static void ck_summary(struct ck *c)
{
	static const uint32_t kinds[] = { DC_CHECK_CORRUPT, DC_CHECK_LEAK };

	for (unsigned i = 0; i < 2; i++)
		if (c->found[kinds[i] & 3] > CK_MAX_REPORTS)
			dc_check_printf(c->report, c->arg, kinds[i],
					"%llu more findings like these not listed",
					(unsigned long long)(c->found[kinds[i] & 3] -
							     CK_MAX_REPORTS));
	dc_check_printf(c->report, c->arg, DC_CHECK_NOTE,
			"%llu clusters of %u bytes checked, %u snapshots",
			(unsigned long long)c->nclust, c->q->cluster_size, c->q->nsnap);
}

int qcow2_check(void *inst, dc_check_report_fn report, void *arg)
{
	struct qcow2 *q = inst;
	struct ck c = { .q = q, .report = report, .arg = arg };
	int ret = 0;

	pthread_mutex_lock(&q->lock);
	/* What this instance changed in memory goes to disk first, so the
	 * walk below sees one consistent image. */
	if (q->writable)
		ret = qcow2_flush_locked(q);
	c.fsize = __atomic_load_n(&q->file_size, __ATOMIC_RELAXED);
	c.nclust = (c.fsize + q->cluster_size - 1) >> q->h.cluster_bits;
	c.use = calloc(c.nclust + 1, sizeof(*c.use));
	c.buf = malloc(q->cluster_size);
	if (ret == 0 && (!c.use || !c.buf))
		ret = -ENOMEM;
	if (ret == 0) {
		ck_flags(&c);
		ret = ck_walk(&c);
	}
	pthread_mutex_unlock(&q->lock);
	free(c.use);
	free(c.buf);
	if (ret)
		return dc_fail(ret, "%s: cannot check the image: %s", q->path,
			       strerror(-ret == ENODATA ? EIO : -ret));
	ck_summary(&c);
	return 0;
}
