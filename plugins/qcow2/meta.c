/* SPDX-License-Identifier: MIT */
/* Metadata to disk, under the write path and the L2 cache: a flush (in the
 * order write.c's comment gives: refcounts, sync, L2 tables, sync, L1 and the
 * deferred frees, sync) and the header's dirty bit. l2.c flushes to evict a
 * dirty table, check.c and resize.c before they look at or grow the file. */
#include "qcow2.h"

#include "endian/byteorder.h"
#include "vhdfmt/vhdfmt.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

int qcow2_set_dirty(struct qcow2 *q, bool dirty)
{
	uint64_t inc = dirty ? q->h.incompat | QCOW2_INCOMPAT_DIRTY :
			       q->h.incompat & ~QCOW2_INCOMPAT_DIRTY;
	uint8_t raw[24];
	int ret;

	if (q->h.version < 3)
		return 0;
	/* Autoclear bits name extensions (bitmaps) this writer does not keep
	 * up to date: a writer clears them, as the format asks. */
	put_be64(raw, inc);
	put_be64(raw + 8, q->h.compat);
	put_be64(raw + 16, 0);
	ret = vhdfmt_pwrite(q->fd, raw, sizeof(raw), QCOW2_HDR_INCOMPAT_OFF);
	if (ret == 0 && fdatasync(q->fd) < 0)
		ret = -errno;
	if (ret == 0) {
		q->h.incompat = inc;
		q->h.autoclear = 0;
	}
	return ret;
}

static int w_sync(struct qcow2 *q)
{
	return fdatasync(q->fd) < 0 ? -errno : 0;
}

static int w_write_l1(struct qcow2 *q)
{
	size_t n = q->h.l1_size;
	uint8_t *raw = malloc(n * 8 + 1);
	int ret;

	if (!raw)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		put_be64(raw + 8 * i, q->l1[i]);
	ret = vhdfmt_pwrite(q->fd, raw, n * 8, q->h.l1_off);
	free(raw);
	return ret;
}

int qcow2_flush_locked(struct qcow2 *q)
{
	bool l2 = false;
	int ret;

	for (uint32_t i = 0; i < q->nslots; i++)
		l2 |= q->slots[i].dirty;
	/* Taken before the sync below: data written after it marks again. */
	if (__atomic_exchange_n(&q->data_dirty, false, __ATOMIC_ACQ_REL))
		q->need_sync = true;
	if (!q->need_sync && !l2 && !q->l1_dirty && !q->nfrees && !q->nrc_dirty)
		return 0;
	ret = qcow2_rc_write(q);
	if (ret == 0)
		ret = w_sync(q);
	for (uint32_t i = 0; ret == 0 && i < q->nslots; i++) {
		if (!q->slots[i].dirty)
			continue;
		ret = vhdfmt_pwrite(q->fd, q->l2buf + (size_t)i * q->cluster_size,
				    q->cluster_size, q->slots[i].l2_off);
		q->slots[i].dirty = ret != 0;
	}
	if (ret == 0 && l2)
		ret = w_sync(q);
	if (ret == 0 && q->l1_dirty) {
		ret = w_write_l1(q);
		q->l1_dirty = ret != 0;
	}
	while (ret == 0 && q->nfrees) {
		struct qcow2_free *f = &q->frees[q->nfrees - 1];

		ret = qcow2_rc_add(q, f->off, f->n, -1);
		q->nfrees--;
	}
	if (ret == 0)
		ret = qcow2_rc_write(q);
	if (ret == 0)
		ret = w_sync(q);
	if (ret == 0)
		q->need_sync = false;
	return ret;
}

int qcow2_flush(struct qcow2 *q)
{
	int ret;

	pthread_mutex_lock(&q->lock);
	ret = qcow2_flush_locked(q);
	pthread_mutex_unlock(&q->lock);
	return ret;
}
