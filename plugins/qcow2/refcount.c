/* SPDX-License-Identifier: MIT */
/* qcow2 refcounts for the write path (docs/spec-strings.md, "qcow2"): the
 * refcount table, read whole at a writable open, and refcount blocks read on
 * first use and kept in memory. Entries of any width (refcount_bits 1 to 64,
 * sub-byte entries least significant first, as QEMU packs them).
 *
 * A changed block is written by qcow2_rc_write(), which write.c's flush runs
 * before the sync that precedes writing any L2 or L1 entry that relies on it,
 * so a crash can only leak clusters (refcount above the references), never
 * under-count. A new
 * refcount block is synced before the table entry that names it is written;
 * a grown table is synced before the header names it. All under q->lock. */
#include "qcow2.h"

#include "endian/byteorder.h"
#include "vhdfmt/vhdfmt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QCOW2_RCT_MASK (~0x1ffull) /* a table entry's offset bits */
#define QCOW2_MAX_RCT_BYTES (64u << 20)
#define QCOW2_ALLOC_SLACK 65536u /* clusters */

uint64_t qcow2_rc_entry(const uint8_t *b, uint64_t i, unsigned bits)
{
	unsigned per;

	switch (bits) {
	case 64:
		return get_be64(b + i * 8);
	case 32:
		return get_be32(b + i * 4);
	case 16:
		return get_be16(b + i * 2);
	case 8:
		return b[i];
	default:
		per = 8 / bits;
		return (b[i / per] >> ((i % per) * bits)) & ((1u << bits) - 1);
	}
}

/* Set entry i; *at is the byte it starts in, the entry ends in that byte or
 * bits/8 bytes later. */
static void rc_entry_set(uint8_t *b, uint64_t i, unsigned bits, uint64_t v, uint64_t *at)
{
	unsigned per, sh;

	switch (bits) {
	case 64:
		put_be64(b + i * 8, v);
		*at = i * 8;
		return;
	case 32:
		put_be32(b + i * 4, (uint32_t)v);
		*at = i * 4;
		return;
	case 16:
		put_be16(b + i * 2, (uint16_t)v);
		*at = i * 2;
		return;
	case 8:
		b[i] = (uint8_t)v;
		*at = i;
		return;
	default:
		per = 8 / bits;
		sh = (unsigned)(i % per) * bits;
		b[i / per] =
			(uint8_t)((b[i / per] & ~(((1u << bits) - 1) << sh)) | (v << sh));
		*at = i / per;
	}
}

void qcow2_rc_entry_put(uint8_t *b, uint64_t i, unsigned bits, uint64_t v)
{
	uint64_t at;

	rc_entry_set(b, i, bits, v, &at);
}

static void rc_file_grew(struct qcow2 *q, uint64_t end)
{
	if (end > q->file_size)
		__atomic_store_n(&q->file_size, end, __ATOMIC_RELAXED);
}

int qcow2_rc_load(struct qcow2 *q)
{
	uint64_t bytes = (uint64_t)q->h.refcount_clusters * q->cluster_size;
	uint8_t *raw;
	int ret;

	q->rc_bits = 1u << q->h.refcount_order;
	q->rc_per_block = (uint64_t)q->cluster_size * 8 / q->rc_bits;
	if (bytes > QCOW2_MAX_RCT_BYTES || (q->h.refcount_off & (q->cluster_size - 1)) ||
	    q->h.refcount_off > q->file_size || bytes > q->file_size - q->h.refcount_off)
		return dc_fail(
			-EINVAL,
			"%s: corrupt qcow2 header: the refcount table (%u clusters "
			"at %llu) is not inside the file",
			q->path, q->h.refcount_clusters,
			(unsigned long long)q->h.refcount_off);
	q->rct_cap = bytes / 8;
	q->rct = calloc(q->rct_cap ? q->rct_cap : 1, sizeof(*q->rct));
	q->rcb = calloc(q->rct_cap ? q->rct_cap : 1, sizeof(*q->rcb));
	q->rcd = calloc(q->rct_cap ? q->rct_cap : 1, 1);
	raw = malloc(bytes ? bytes : 1);
	if (!q->rct || !q->rcb || !q->rcd || !raw) {
		free(raw);
		return dc_fail(-ENOMEM, "out of memory for the refcount table");
	}
	ret = vhdfmt_pread(q->fd, raw, bytes, q->h.refcount_off);
	for (uint64_t i = 0; ret == 0 && i < q->rct_cap; i++)
		q->rct[i] = get_be64(raw + 8 * i) & QCOW2_RCT_MASK;
	free(raw);
	if (ret)
		return dc_fail(ret, "%s: cannot read the refcount table: %s", q->path,
			       strerror(-ret));
	return 0;
}

void qcow2_rc_free(struct qcow2 *q)
{
	for (uint64_t i = 0; q->rcb && i < q->rct_cap; i++)
		free(q->rcb[i]);
	free(q->rcb);
	free(q->rcd);
	free(q->rc_dirty);
	free(q->rct);
	free(q->frees);
	q->rcb = NULL;
	q->rct = NULL;
}

/* Refcount block rb, read on first use; NULL in *b when the table has none. */
static int rc_block(struct qcow2 *q, uint64_t rb, uint8_t **b)
{
	uint64_t off;
	int ret;

	*b = NULL;
	if (rb >= q->rct_cap || !q->rct[rb])
		return 0;
	if (q->rcb[rb]) {
		*b = q->rcb[rb];
		return 0;
	}
	off = q->rct[rb];
	if ((off & (q->cluster_size - 1)) || off > q->file_size ||
	    q->file_size - off < q->cluster_size) {
		dc_debug("qcow2: %s: refcount block %llu at %llu is outside the file",
			 q->path, (unsigned long long)rb, (unsigned long long)off);
		return -EIO;
	}
	q->rcb[rb] = malloc(q->cluster_size);
	if (!q->rcb[rb])
		return -ENOMEM;
	ret = vhdfmt_pread(q->fd, q->rcb[rb], q->cluster_size, off);
	if (ret) {
		free(q->rcb[rb]);
		q->rcb[rb] = NULL;
		return ret == -ENODATA ? -EIO : ret;
	}
	*b = q->rcb[rb];
	return 0;
}

int qcow2_rc_get(struct qcow2 *q, uint64_t ci, uint64_t *val)
{
	uint8_t *b;
	int ret = rc_block(q, ci / q->rc_per_block, &b);

	*val = ret == 0 && b ? qcow2_rc_entry(b, ci % q->rc_per_block, q->rc_bits) : 0;
	return ret;
}

static int rc_write_entry(struct qcow2 *q, uint64_t rb)
{
	uint8_t raw[8];

	put_be64(raw, q->rct[rb]);
	return vhdfmt_pwrite(q->fd, raw, 8, q->h.refcount_off + rb * 8);
}

/* A refcount block for table entry rb (< rct_cap), which has none: every
 * cluster it covers is free, so it goes in the first of them and counts
 * itself. Synced before the table entry names it. */
static int rc_new_block(struct qcow2 *q, uint64_t rb)
{
	uint64_t ci = rb * q->rc_per_block, off = ci * q->cluster_size, at;
	uint8_t *b = calloc(1, q->cluster_size);
	int ret;

	if (!b)
		return -ENOMEM;
	if (rb == 0) {
		/* The header's cluster is always counted: a table without a
		 * first block is corrupt. */
		free(b);
		dc_debug("qcow2: %s: the refcount table has no first block", q->path);
		return -EIO;
	}
	rc_entry_set(b, 0, q->rc_bits, 1, &at);
	ret = vhdfmt_pwrite(q->fd, b, q->cluster_size, off);
	if (ret == 0 && fdatasync(q->fd) < 0)
		ret = -errno;
	if (ret) {
		free(b);
		return ret;
	}
	rc_file_grew(q, off + q->cluster_size);
	q->rcb[rb] = b;
	q->rct[rb] = off;
	q->need_sync = true;
	return rc_write_entry(q, rb);
}

/* Refcount blocks missing for clusters [a, b) (table entries at or past cap
 * count as missing). */
static uint64_t rc_missing(const struct qcow2 *q, uint64_t a, uint64_t b)
{
	uint64_t n = 0;

	for (uint64_t rb = a / q->rc_per_block; rb <= (b - 1) / q->rc_per_block; rb++)
		n += rb >= q->rct_cap || !q->rct[rb];
	return n;
}

/* Where a grown table of cap entries and the blocks it needs go: the first
 * run of free clusters from the end of the file, the table then the new
 * blocks, the blocks covering the run too. */
static int rc_grow_place(struct qcow2 *q, uint64_t *cap, uint64_t *p, uint64_t *t,
			 uint64_t *nb)
{
	uint64_t cs = q->cluster_size, per_tab = cs / 8, v;
	int ret;

	*p = (q->file_size + cs - 1) / cs;
	for (;;) {
		*t = (*cap + per_tab - 1) / per_tab;
		*nb = 0;
		for (uint64_t m; (m = rc_missing(q, *p, *p + *t + *nb)) != *nb;)
			*nb = m;
		if ((*p + *t + *nb - 1) / q->rc_per_block >= *cap) {
			*cap = ((*p + *t + *nb) / q->rc_per_block + 1 + per_tab) /
			       per_tab * per_tab;
			continue;
		}
		for (uint64_t i = *p; i < *p + *t + *nb; i++) {
			ret = qcow2_rc_get(q, i, &v);
			if (ret)
				return ret;
			if (v) {
				*p = i + 1;
				break;
			}
		}
		if (!v)
			return 0;
	}
}

int qcow2_rc_name_table(struct qcow2 *q, uint64_t off, uint64_t clusters)
{
	uint8_t hdr[12];
	int ret = fdatasync(q->fd) < 0 ? -errno : 0;

	put_be64(hdr, off);
	put_be32(hdr + 8, (uint32_t)clusters);
	if (ret == 0)
		ret = vhdfmt_pwrite(q->fd, hdr, sizeof(hdr), QCOW2_HDR_RCT_OFF);
	if (ret == 0 && fdatasync(q->fd) < 0)
		ret = -errno;
	if (ret == 0) {
		q->h.refcount_off = off;
		q->h.refcount_clusters = (uint32_t)clusters;
	}
	return ret;
}

/* Grow the refcount table to hold entry need (QEMU's layout rules: the new
 * table is contiguous; the old one is freed once the header names the new). */
static int rc_grow(struct qcow2 *q, uint64_t need)
{
	uint64_t cs = q->cluster_size, per_tab = cs / 8, cap, p, t, nb, k = 0, at;
	uint64_t old_off = q->h.refcount_off, old_n = q->h.refcount_clusters;
	uint64_t *rct;
	uint8_t **rcb, *rcd, *raw;
	int ret;

	cap = q->rct_cap * 2 > need + 1 ? q->rct_cap * 2 : need + 1;
	cap = (cap + per_tab - 1) / per_tab * per_tab;
	ret = rc_grow_place(q, &cap, &p, &t, &nb);
	if (ret)
		return ret;
	if (t * cs > QCOW2_MAX_RCT_BYTES || t > UINT32_MAX)
		return -EFBIG;
	rct = calloc(cap, sizeof(*rct));
	rcb = calloc(cap, sizeof(*rcb));
	rcd = calloc(cap, 1);
	raw = calloc(t, cs);
	if (!rct || !rcb || !rcd || !raw) {
		free(rct);
		free(rcb);
		free(rcd);
		free(raw);
		return -ENOMEM;
	}
	memcpy(rct, q->rct, q->rct_cap * sizeof(*rct));
	memcpy(rcb, q->rcb, q->rct_cap * sizeof(*rcb));
	memcpy(rcd, q->rcd, q->rct_cap);
	free(q->rct);
	free(q->rcb);
	free(q->rcd);
	q->rct = rct;
	q->rcb = rcb;
	q->rcd = rcd;
	q->rct_cap = cap;
	for (uint64_t rb = p / q->rc_per_block; rb <= (p + t + nb - 1) / q->rc_per_block;
	     rb++) {
		if (rct[rb])
			continue;
		rcb[rb] = calloc(1, cs);
		if (!rcb[rb]) {
			free(raw);
			return -ENOMEM;
		}
		rct[rb] = (p + t + k++) * cs;
	}
	/* Count the run in memory, then write its blocks whole, then the table. */
	for (uint64_t i = p; ret == 0 && i < p + t + nb; i++) {
		uint8_t *b;

		ret = rc_block(q, i / q->rc_per_block, &b);
		if (ret == 0)
			rc_entry_set(b, i % q->rc_per_block, q->rc_bits, 1, &at);
	}
	for (uint64_t rb = p / q->rc_per_block;
	     ret == 0 && rb <= (p + t + nb - 1) / q->rc_per_block; rb++)
		ret = vhdfmt_pwrite(q->fd, rcb[rb], cs, rct[rb]);
	for (uint64_t i = 0; i < cap; i++)
		put_be64(raw + 8 * i, rct[i]);
	if (ret == 0)
		ret = vhdfmt_pwrite(q->fd, raw, t * cs, p * cs);
	free(raw);
	if (ret == 0)
		ret = qcow2_rc_name_table(q, p * cs, t);
	if (ret)
		return ret;
	rc_file_grew(q, (p + t + nb) * cs);
	return qcow2_rc_add(q, old_off / cs, old_n, -1);
}

/* Make sure clusters [ci, ci+n) have refcount blocks. */
static int rc_cover(struct qcow2 *q, uint64_t ci, uint64_t n)
{
	int ret = 0;

	for (uint64_t rb = ci / q->rc_per_block;
	     ret == 0 && rb <= (ci + n - 1) / q->rc_per_block; rb++) {
		if (rb >= q->rct_cap)
			ret = rc_grow(q, rb);
		if (ret == 0 && !q->rct[rb])
			ret = rc_new_block(q, rb);
	}
	return ret;
}

/* Block rb changed in memory: written by the next qcow2_rc_write(). */
static int rc_mark(struct qcow2 *q, uint64_t rb)
{
	if (q->rcd[rb])
		return 0;
	if (qcow2_room((void **)&q->rc_dirty, &q->rc_dirty_cap, q->nrc_dirty,
		       sizeof(*q->rc_dirty)))
		return -ENOMEM;
	q->rc_dirty[q->nrc_dirty++] = rb;
	q->rcd[rb] = 1;
	return 0;
}

int qcow2_rc_write(struct qcow2 *q)
{
	int ret = 0;

	while (ret == 0 && q->nrc_dirty) {
		uint64_t rb = q->rc_dirty[q->nrc_dirty - 1];

		ret = vhdfmt_pwrite(q->fd, q->rcb[rb], q->cluster_size, q->rct[rb]);
		if (ret == 0) {
			q->rcd[rb] = 0;
			q->nrc_dirty--;
		}
	}
	return ret;
}

int qcow2_rc_add(struct qcow2 *q, uint64_t ci, uint64_t n, int delta)
{
	uint64_t max = q->rc_bits == 64 ? UINT64_MAX : (1ull << q->rc_bits) - 1;
	int ret = 0;

	if (delta > 0)
		ret = rc_cover(q, ci, n);
	while (ret == 0 && n) {
		uint64_t rb = ci / q->rc_per_block, i = ci % q->rc_per_block;
		uint64_t k = q->rc_per_block - i < n ? q->rc_per_block - i : n, at, v;
		uint8_t *b;

		ret = rc_block(q, rb, &b);
		if (ret)
			break;
		if (!b)
			return -EIO; /* freeing a cluster no block counts */
		for (uint64_t j = 0; j < k; j++) {
			v = qcow2_rc_entry(b, i + j, q->rc_bits);
			if ((delta < 0 && v == 0) || (delta > 0 && v == max)) {
				dc_debug("qcow2: %s: refcount of cluster %llu would "
					 "wrap",
					 q->path, (unsigned long long)(ci + j));
				return -EIO;
			}
		}
		for (uint64_t j = 0; j < k; j++) {
			v = qcow2_rc_entry(b, i + j, q->rc_bits) +
			    (uint64_t)(int64_t)delta;
			rc_entry_set(b, i + j, q->rc_bits, v, &at);
		}
		ret = rc_mark(q, rb);
		if (delta < 0 && ci < q->free_hint)
			q->free_hint = ci;
		q->need_sync = true;
		ci += k;
		n -= k;
	}
	return ret;
}

int qcow2_alloc(struct qcow2 *q, uint64_t n, uint64_t *off)
{
	uint64_t c = q->free_hint, run = 0, v, end;
	int ret;

	while (run < n) {
		uint64_t i = c + run;

		/* Counted clusters past the end of the file: only a crash between
		 * a refcount write and the data leaves a few; many is corruption
		 * (and a scan without end). */
		if (i > q->file_size / q->cluster_size + QCOW2_ALLOC_SLACK) {
			dc_debug("qcow2: %s: refcounts claim clusters far past the end "
				 "of the file",
				 q->path);
			return -EIO;
		}

		ret = rc_cover(q, i, 1);
		if (ret == 0)
			ret = qcow2_rc_get(q, i, &v);
		if (ret)
			return ret;
		if (v) {
			c = i + 1;
			run = 0;
		} else {
			run++;
		}
	}
	ret = qcow2_rc_add(q, c, n, 1);
	if (ret)
		return ret;
	q->free_hint = c + n;
	*off = c * q->cluster_size;
	end = (c + n) * q->cluster_size;
	/* The file covers every cluster it counts (qemu-img check wants it). */
	if (end > q->file_size) {
		if (ftruncate(q->fd, (off_t)end) < 0)
			return -errno;
		rc_file_grew(q, end);
	}
	return 0;
}
