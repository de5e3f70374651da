/* SPDX-License-Identifier: MIT */
/* Growing a writable qcow2 image (dc_resize()), and the allocation map
 * (extents(), for dc_map()). Growing: everything in flight is flushed; an
 * L1 table too small for the new size is copied into new clusters and synced
 * before the header names it (l1_size and its offset in one 12-byte write),
 * and the old one is freed after; the new size is written last. A crash in
 * between leaves the old size over a valid table. Shrinking is refused:
 * QEMU needs the data past the new end discarded first. */
#include "qcow2.h"

#include "endian/byteorder.h"
#include "vhdfmt/vhdfmt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QCOW2_HDR_SIZE_OFF 24
#define QCOW2_HDR_L1_OFF 36 /* l1_size, then l1_table_offset */

static int qcow2_sync(struct qcow2 *q)
{
	return fdatasync(q->fd) < 0 ? -errno : 0;
}

/* A new L1 table of n entries (under lock, after a flush). */
static int qcow2_grow_l1(struct qcow2 *q, uint32_t n)
{
	uint64_t cs = q->cluster_size, clusters = ((uint64_t)n * 8 + cs - 1) / cs, off;
	uint64_t old_off = q->h.l1_off,
		 old_n = ((uint64_t)q->h.l1_size * 8 + cs - 1) / cs;
	uint64_t *l1 = calloc(n, sizeof(*l1));
	uint8_t *raw = calloc(clusters, cs), hdr[12];
	int ret = l1 && raw ? 0 : -ENOMEM;

	if (ret == 0)
		ret = qcow2_alloc(q, clusters, &off);
	if (ret == 0) {
		memcpy(l1, q->l1, (size_t)q->h.l1_size * sizeof(*l1));
		for (uint32_t i = 0; i < n; i++)
			put_be64(raw + 8 * i, l1[i]);
		ret = vhdfmt_pwrite(q->fd, raw, clusters * cs, off);
	}
	if (ret == 0)
		ret = qcow2_rc_write(q); /* its clusters counted before it is named */
	if (ret == 0)
		ret = qcow2_sync(q);
	if (ret == 0) {
		put_be32(hdr, n);
		put_be64(hdr + 4, off);
		ret = vhdfmt_pwrite(q->fd, hdr, sizeof(hdr), QCOW2_HDR_L1_OFF);
	}
	if (ret == 0)
		ret = qcow2_sync(q);
	free(raw);
	if (ret) {
		free(l1);
		return ret;
	}
	free(q->l1);
	q->l1 = l1;
	q->h.l1_size = n;
	q->h.l1_off = off;
	return old_n ? qcow2_rc_add(q, old_off / cs, old_n, -1) : 0;
}

int qcow2_resize(void *inst, uint64_t new_sector_count)
{
	struct qcow2 *q = inst;
	uint64_t size = new_sector_count * 512, per_l1, need;
	uint8_t raw[8];
	int ret;

	if (!q->writable)
		return dc_fail(-EROFS, "%s: opened read-only", q->path);
	if (size < q->h.size)
		return dc_fail(-ENOTSUP,
			       "%s: a qcow2 image only grows here (%llu < %llu "
			       "bytes)",
			       q->path, (unsigned long long)size,
			       (unsigned long long)q->h.size);
	/* A version 2 snapshot records no disk size: QEMU refuses this too. */
	if (q->nsnap && q->h.version < 3)
		return dc_fail(-ENOTSUP,
			       "%s: a version 2 image with internal snapshots cannot "
			       "be resized",
			       q->path);
	per_l1 = (uint64_t)q->l2_entries * q->cluster_size;
	need = (size + per_l1 - 1) / per_l1;
	if (need * 8 > QCOW2_MAX_L1_BYTES || size > (1ull << 56))
		return dc_fail(-EFBIG, "%s: %llu bytes is too large for %u-byte clusters",
			       q->path, (unsigned long long)size, q->cluster_size);
	pthread_mutex_lock(&q->lock);
	ret = qcow2_flush_locked(q);
	if (ret == 0 && need > q->h.l1_size)
		ret = qcow2_grow_l1(q, (uint32_t)need);
	if (ret == 0) {
		put_be64(raw, size);
		ret = vhdfmt_pwrite(q->fd, raw, sizeof(raw), QCOW2_HDR_SIZE_OFF);
	}
	if (ret == 0)
		ret = qcow2_sync(q);
	if (ret == 0)
		__atomic_store_n(&q->h.size, size, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&q->lock);
	if (ret)
		return dc_fail(ret, "%s: cannot grow the image: %s", q->path,
			       strerror(-ret));
	dc_node_notify_resize(q->node);
	return 0;
}

uint64_t qcow2_sector_count(void *inst)
{
	struct qcow2 *q = inst;

	return __atomic_load_n(&q->h.size, __ATOMIC_RELAXED) / 512;
}

static int qcow2_extent_flags(const struct qcow2_map *m)
{
	switch (m->kind) {
	case QCOW2_UNALLOC:
		return DC_EXTENT_ABSENT;
	case QCOW2_ZERO:
		return DC_EXTENT_ZERO;
	default:
		return 0;
	}
}

int qcow2_extents(void *inst, struct dc_node *node, uint64_t sector, uint64_t count,
		  uint64_t *run)
{
	struct qcow2 *q = inst;
	uint64_t goff = sector * 512, end = (sector + count) * 512, pos = goff;
	int flags = -1;

	(void)node;
	while (pos < end) {
		struct qcow2_map m;
		int ret = qcow2_map(q, pos, &m), f;

		if (ret)
			return dc_fail(ret, "%s: cannot map guest offset %llu", q->path,
				       (unsigned long long)pos);
		f = qcow2_extent_flags(&m);
		if (flags >= 0 && f != flags)
			break;
		flags = f;
		pos += m.len < end - pos ? m.len : end - pos;
	}
	*run = (pos - goff) / 512;
	return flags;
}
