/* SPDX-License-Identifier: MIT */
/* The qcow2 write path (docs/spec-strings.md, "qcow2"), blocking, on the
 * core's worker pool: several writers at once, metadata under q->lock, data
 * I/O outside it.
 *
 * A write to a cluster this image holds as data with refcount 1 (COPIED) goes
 * straight to it. Any other write allocates: the guest cluster is marked busy
 * (other writers of it wait; readers keep seeing the old mapping), a cluster
 * is taken (refcount 1, written at once), the lock is dropped, the cluster's
 * data is written whole (copy-on-write: the bytes the write does not cover
 * come from the old mapping, the backing file, an inflated compressed
 * cluster, or zeroes), and the new L2 entry goes into the cached table,
 * which is marked dirty. With extended L2 only the subclusters written are
 * allocated, and only partial subclusters are copied.
 *
 * Crash safety (the order QEMU's refcount rules need): refcount increments
 * and data reach the disk before any L2 entry naming them; an L2 table before
 * the L1 entry naming it; a cluster's refcount drops only once no L2 entry on
 * disk names it. So a flush (meta.c) is: write the changed refcount blocks,
 * fdatasync (data, refcounts), write the dirty L2 tables, fdatasync, write
 * the L1 table and the refcount blocks the deferred decrements change,
 * fdatasync. A crash loses only unflushed writes and leaks clusters at
 * worst. The dirty bit (v3) is set while the image is open
 * writable and cleared on a clean close. */
#include "qcow2.h"

#include "endian/byteorder.h"
#include "vhdfmt/vhdfmt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QCOW2_SC_ALL 0xffffffffull

/* --- busy clusters and deferred frees (under lock) ------------------------- */

bool qcow2_busy(const struct qcow2 *q, uint64_t ci)
{
	for (uint32_t i = 0; i < q->nbusy; i++)
		if (q->busy[i] == ci)
			return true;
	return false;
}

static int w_busy_add(struct qcow2 *q, uint64_t ci)
{
	if (qcow2_room((void **)&q->busy, &q->busy_cap, q->nbusy, sizeof(*q->busy)))
		return -ENOMEM;
	q->busy[q->nbusy++] = ci;
	return 0;
}

static void w_busy_del(struct qcow2 *q, uint64_t ci);

/* Until guest cluster ci is nobody's: not being allocated, and no in-place
 * write (aio.c) in flight to it. While those drain, ci is marked busy so the
 * queue's thread sends new writes of it to the pool, where they wait here. */
static void w_wait(struct qcow2 *q, uint64_t ci)
{
	for (;;) {
		while (qcow2_busy(q, ci))
			pthread_cond_wait(&q->busy_cond, &q->lock);
		if (!qcow2_infl_has(q, ci))
			return;
		if (w_busy_add(q, ci) != 0) {
			qcow2_infl_wait(q, ci);
			continue;
		}
		qcow2_infl_wait(q, ci);
		w_busy_del(q, ci);
		return;
	}
}

static void w_busy_del(struct qcow2 *q, uint64_t ci)
{
	for (uint32_t i = 0; i < q->nbusy; i++)
		if (q->busy[i] == ci) {
			q->busy[i] = q->busy[--q->nbusy];
			break;
		}
	pthread_cond_broadcast(&q->busy_cond);
}

/* Queue the clusters an L2 entry held, to free at the next flush. */
static int w_defer_free(struct qcow2 *q, uint64_t entry)
{
	uint64_t cs = q->cluster_size, first, last;

	if (entry & QCOW2_L2_COMPRESSED) {
		unsigned shift = 62 - (q->h.cluster_bits - 8);
		uint64_t off = entry & ((1ull << shift) - 1);
		uint64_t nsec =
			((entry >> shift) & ((1ull << (q->h.cluster_bits - 8)) - 1)) + 1;

		first = off / cs;
		last = ((off & ~511ull) + nsec * 512 - 1) / cs;
	} else if (entry & QCOW2_OFFSET_MASK) {
		first = last = (entry & QCOW2_OFFSET_MASK) / cs;
	} else {
		return 0;
	}
	if (qcow2_room((void **)&q->frees, &q->frees_cap, q->nfrees, sizeof(*q->frees)))
		return -ENOMEM;
	q->frees[q->nfrees++] = (struct qcow2_free){ first, last - first + 1 };
	return 0;
}

/* L1 entry l1i names an L2 table an internal snapshot shares (COPIED
 * clear): the active table becomes a copy of it (refcount 1), the shared one
 * loses this reference at the next flush, after the L1 entry naming the copy
 * is on disk. The data clusters' refcounts stay: each table still names
 * them once (QEMU's counting), and each is copied on its first write. A table
 * whose refcount is already 1 is only flagged. Under lock. */
static int w_l2_cow(struct qcow2 *q, uint64_t l1i, uint8_t **tab, uint32_t *slot)
{
	uint64_t old = q->l1[l1i] & QCOW2_OFFSET_MASK, rc, nl2;
	uint8_t *src, *copy;
	uint32_t s;
	int ret = qcow2_rc_get(q, old / q->cluster_size, &rc);

	if (ret == 0 && rc == 1) {
		q->l1[l1i] |= QCOW2_COPIED;
		q->l1_dirty = true;
		return qcow2_l2_get(q, old, tab, slot);
	}
	if (ret == 0)
		ret = qcow2_l2_get(q, old, &src, &s);
	if (ret)
		return ret;
	copy = malloc(q->cluster_size);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, src, q->cluster_size);
	/* Nothing writes the shared table: its slot is clean, and must not
	 * answer for the offset once that is freed and reused. */
	q->slots[s].l2_off = 0;
	ret = qcow2_alloc(q, 1, &nl2);
	if (ret == 0)
		ret = qcow2_l2_new(q, nl2, tab, slot);
	if (ret == 0) {
		memcpy(*tab, copy, q->cluster_size);
		q->l1[l1i] = nl2 | QCOW2_COPIED;
		q->l1_dirty = true;
		ret = w_defer_free(q, old);
	}
	free(copy);
	return ret;
}

/* The L2 entry of guest offset goff, for writing; alloc: make an L2 table
 * when the L1 entry has none (else *ent is NULL then). Under lock. */
static int w_l2(struct qcow2 *q, uint64_t goff, bool alloc, uint8_t **ent, uint32_t *slot)
{
	unsigned l2_bits = q->h.cluster_bits - q->entry_shift;
	uint64_t l1i = goff >> (q->h.cluster_bits + l2_bits);
	uint64_t l2i = (goff >> q->h.cluster_bits) & (q->l2_entries - 1), l2_off;
	uint8_t *tab;
	int ret;

	*ent = NULL;
	if (l1i >= q->h.l1_size)
		return -EIO;
	l2_off = q->l1[l1i] & QCOW2_OFFSET_MASK;
	if (!l2_off) {
		if (!alloc)
			return 0;
		ret = qcow2_alloc(q, 1, &l2_off);
		if (ret == 0)
			ret = qcow2_l2_new(q, l2_off, &tab, slot);
		if (ret)
			return ret;
		q->l1[l1i] = l2_off | QCOW2_COPIED;
		q->l1_dirty = true;
	} else if ((l2_off & (q->cluster_size - 1)) || l2_off > q->file_size ||
		   q->file_size - l2_off < q->cluster_size) {
		dc_debug("qcow2: %s: L1 entry %llu (0x%016llx) cannot be written "
			 "(outside the file)",
			 q->path, (unsigned long long)l1i,
			 (unsigned long long)q->l1[l1i]);
		return -EIO;
	} else if (!(q->l1[l1i] & QCOW2_COPIED)) {
		ret = w_l2_cow(q, l1i, &tab, slot);
		if (ret)
			return ret;
	} else {
		ret = qcow2_l2_get(q, l2_off, &tab, slot);
		if (ret)
			return ret;
	}
	*ent = tab + (l2i << q->entry_shift);
	return 0;
}

/* Set the entry of goff (and its bitmap) in the cached table; the old one's
 * clusters are freed at the next flush when free_old. Under lock. */
static int w_set(struct qcow2 *q, uint64_t goff, uint64_t entry, uint64_t bitmap,
		 uint64_t old, bool free_old)
{
	uint8_t *ent;
	uint32_t slot;
	int ret = w_l2(q, goff, true, &ent, &slot);

	if (ret)
		return ret;
	put_be64(ent, entry);
	if (q->extl2)
		put_be64(ent + 8, bitmap);
	q->slots[slot].dirty = true;
	return free_old ? w_defer_free(q, old) : 0;
}

/* --- writes ------------------------------------------------------------------ */

/* Bytes [a, b) of the guest cluster at base as the old entry maps them. */
static int w_fill(struct qcow2 *q, uint64_t base, uint64_t entry, uint64_t bitmap,
		  uint64_t a, uint64_t b, uint8_t *dst)
{
	while (a < b) {
		struct qcow2_map m;
		uint64_t n;
		int ret = qcow2_decode_l2(q, entry, bitmap, base + a, &m);

		if (ret)
			return ret;
		n = m.len < b - a ? m.len : b - a;
		ret = qcow2_read_map(q, &m, base + a, dst, n);
		if (ret)
			return ret;
		a += n;
		dst += n;
	}
	return 0;
}

/* The subclusters [in, in+len) touches, as a bitmap's allocation bits. */
static uint64_t w_sc_mask(const struct qcow2 *q, uint64_t in, uint64_t len)
{
	uint64_t sa = in / q->sc_size, sb = (in + len + q->sc_size - 1) / q->sc_size;

	return (sb - sa == 32 ? QCOW2_SC_ALL : ((1ull << (sb - sa)) - 1)) << sa;
}

struct w_alloc {
	uint64_t base, in, len; /* guest cluster, the bytes written in it */
	uint64_t old, old_bm;	/* its entry and bitmap before */
	uint64_t host;		/* the cluster the data goes to */
	uint64_t u0, u1;	/* bytes of it written: [u0, u1) */
	uint64_t bm;		/* the new bitmap (extended L2) */
};

/* Decide what an allocating write writes, and the new bitmap. */
static void w_plan(const struct qcow2 *q, struct w_alloc *w, bool fresh)
{
	uint64_t mask = w_sc_mask(q, w->in, w->len);
	uint64_t host = w->old & QCOW2_OFFSET_MASK;

	w->u0 = 0;
	w->u1 = q->cluster_size;
	if (!q->extl2)
		return;
	if (w->old & QCOW2_L2_COMPRESSED) {
		w->bm = QCOW2_SC_ALL;
		return;
	}
	w->bm = (w->old_bm | mask) & QCOW2_SC_ALL;
	w->bm |= ((w->old_bm >> 32) & ~w->bm & QCOW2_SC_ALL) << 32;
	if (fresh && host)
		return; /* moving a shared cluster: copy all of it */
	w->u0 = w->in / q->sc_size * q->sc_size;
	w->u1 = (w->in + w->len + q->sc_size - 1) / q->sc_size * q->sc_size;
}

/* Write the data of an allocating write (outside the lock). */
static int w_data(struct qcow2 *q, const struct w_alloc *w, const struct dc_buf *src)
{
	uint64_t span = w->u1 - w->u0;
	uint8_t *buf;
	int ret;

	if (w->u0 == w->in && span == w->len)
		return vhdfmt_xfer(q->fd, src, w->host + w->in, true, 0);
	buf = malloc(span);
	if (!buf)
		return -ENOMEM;
	ret = w_fill(q, w->base, w->old, w->old_bm, w->u0, w->in, buf);
	if (ret == 0)
		ret = w_fill(q, w->base, w->old, w->old_bm, w->in + w->len, w->u1,
			     buf + (w->in + w->len - w->u0));
	if (ret == 0) {
		dc_buf_copy_from(src, 0, buf + (w->in - w->u0), w->len);
		ret = vhdfmt_pwrite(q->fd, buf, span, w->host + w->u0);
	}
	free(buf);
	return ret;
}

bool qcow2_in_place(const struct qcow2 *q, uint64_t e, uint64_t bm, uint64_t in,
		    uint64_t len)
{
	uint64_t mask;

	if ((e & QCOW2_L2_COMPRESSED) || !(e & QCOW2_COPIED) || !(e & QCOW2_OFFSET_MASK))
		return false;
	if (!q->extl2)
		return !(e & QCOW2_L2_ZERO);
	mask = w_sc_mask(q, in, len);
	return (bm & mask) == mask;
}

/* One cluster's part of a write: [goff, goff + src->len). */
static int w_cluster(struct qcow2 *q, uint64_t goff, const struct dc_buf *src)
{
	uint64_t cmask = q->cluster_size - 1, ci = goff >> q->h.cluster_bits;
	struct w_alloc w = { .base = goff & ~cmask, .in = goff & cmask, .len = src->len };
	bool fresh, zero;
	uint8_t *ent;
	uint32_t slot;
	int ret;

	/* A whole cluster of zeroes becomes a zero cluster (version 3); looked
	 * at before taking the lock. */
	zero = !q->extl2 && q->h.version >= 3 && w.len == q->cluster_size &&
	       dc_buf_is_zero(src, 0, w.len);
	pthread_mutex_lock(&q->lock);
	w_wait(q, ci);
	ret = w_l2(q, goff, true, &ent, &slot);
	if (ret)
		goto out;
	w.old = get_be64(ent);
	w.old_bm = q->extl2 ? get_be64(ent + 8) : 0;
	w.host = w.old & QCOW2_OFFSET_MASK;
	if (qcow2_in_place(q, w.old, w.old_bm, w.in, w.len)) {
		/* Registered as the engine's in-place writes are, so no writer
		 * rewrites the cluster under it. */
		ret = qcow2_infl_add(q, ci, ci + 1, &w);
		if (ret)
			goto out;
		pthread_mutex_unlock(&q->lock);
		ret = vhdfmt_xfer(q->fd, src, w.host + w.in, true, 0);
		qcow2_infl_del(q, &w);
		return ret;
	}
	if (zero) {
		ret = w_set(q, goff, QCOW2_L2_ZERO, 0, w.old, true);
		goto out;
	}
	fresh = (w.old & QCOW2_L2_COMPRESSED) || !w.host || !(w.old & QCOW2_COPIED);
	ret = w_busy_add(q, ci);
	if (ret)
		goto out;
	if (fresh)
		ret = qcow2_alloc(q, 1, &w.host);
	if (ret) {
		w_busy_del(q, ci);
		goto out;
	}
	w_plan(q, &w, fresh);
	pthread_mutex_unlock(&q->lock);
	ret = w_data(q, &w, src);
	pthread_mutex_lock(&q->lock);
	if (ret == 0)
		ret = w_set(q, goff, w.host | QCOW2_COPIED, w.bm, w.old,
			    fresh && (w.old & (QCOW2_OFFSET_MASK | QCOW2_L2_COMPRESSED)));
	else if (fresh)
		qcow2_rc_add(q, w.host / q->cluster_size, 1, -1);
	q->need_sync = true;
	w_busy_del(q, ci);
out:
	pthread_mutex_unlock(&q->lock);
	return ret;
}

int qcow2_write(struct qcow2 *q, struct dc_req *req)
{
	uint64_t pos = req->sector * 512, total = req->count * 512;
	int ret = 0;

	for (uint64_t done = 0; ret == 0 && done < total;) {
		uint64_t goff = pos + done, in = goff & (q->cluster_size - 1);
		uint64_t n = q->cluster_size - in < total - done ? q->cluster_size - in :
								   total - done;
		struct dc_buf sub = dc_buf_sub(&req->buf, done, n);

		ret = w_cluster(q, goff, &sub);
		done += n;
	}
	if (ret == 0 && (req->flags & DC_IO_FUA))
		ret = qcow2_flush(q);
	return vhdfmt_result(req, ret);
}

/* Write zeroes over [off, off+len), inside one cluster. */
static int w_zero_part(struct qcow2 *q, uint64_t off, uint64_t len)
{
	uint8_t *z = calloc(1, len ? len : 1);
	struct iovec iov = { z, len };
	struct dc_buf b = { .iov = &iov, .iovcnt = 1, .len = len };
	int ret;

	if (!z)
		return -ENOMEM;
	ret = len ? w_cluster(q, off, &b) : 0;
	free(z);
	return ret;
}

bool qcow2_unmap_zeroes(const struct qcow2 *q)
{
	return q->h.version >= 3 || !q->backing;
}

/* Unmap: whole clusters become unallocated when everything below reads as
 * zero, else zero clusters; the partial clusters at the ends are written
 * with zeroes, so unmapped sectors read as zero (unmap_behavior "zeroes").
 * A version 2 image over a backing file has no zero clusters: there only
 * whole clusters over zeroes below are unmapped. */
int qcow2_unmap(struct qcow2 *q, struct dc_req *req)
{
	uint64_t cs = q->cluster_size, start = req->sector * 512;
	uint64_t end = (req->sector + req->count) * 512;
	uint64_t a = (start + cs - 1) / cs * cs, b = end / cs * cs;
	bool below_zero = (req->flags & DC_IO_NEXT_IS_ZERO) || !q->backing;
	bool zeroes = qcow2_unmap_zeroes(q);
	int ret = 0;

	if (a > b) /* inside one cluster */
		return vhdfmt_result(req,
				     zeroes ? w_zero_part(q, start, end - start) : 0);
	if (zeroes)
		ret = w_zero_part(q, start, a - start);
	if (ret == 0 && zeroes)
		ret = w_zero_part(q, b, end - b);
	if (!below_zero && !zeroes)
		return 0;
	for (uint64_t goff = a; ret == 0 && goff < b; goff += cs) {
		uint64_t e = 0, bm = 0, old, old_bm;
		uint8_t *ent;
		uint32_t slot;

		if (!below_zero && q->extl2)
			bm = QCOW2_SC_ALL << 32;
		else if (!below_zero)
			e = QCOW2_L2_ZERO;
		pthread_mutex_lock(&q->lock);
		w_wait(q, goff / cs);
		ret = w_l2(q, goff, !below_zero, &ent, &slot);
		if (ret == 0 && ent) {
			old = get_be64(ent);
			old_bm = q->extl2 ? get_be64(ent + 8) : 0;
			if (old != e || old_bm != bm)
				ret = w_set(q, goff, e, bm, old, true);
		}
		pthread_mutex_unlock(&q->lock);
	}
	return vhdfmt_result(req, ret);
}
