/* SPDX-License-Identifier: MIT */
/* The qcow2 data path: a read walks the request one mapping at a time (a
 * cluster, or a run of like subclusters) and marks what this layer holds:
 * data, zero clusters and compressed clusters. Unallocated ranges stay
 * unmarked, so the core reads them from the backing layer below (or zeroes at
 * the bottom). Bytes of a data cluster past the end of the file read as
 * zeroes, as QEMU reads them. */
#include "qcow2.h"

#include "vhdfmt/vhdfmt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define QCOW2_SECTOR 512u

/* The cached copy of the compressed cluster at m->off, if it is the one. */
static bool qcow2_zc_copy(struct qcow2 *q, const struct qcow2_map *m, uint64_t goff,
			  const struct dc_buf *dst)
{
	bool hit;

	pthread_mutex_lock(&q->lock);
	hit = q->zc_buf && q->zc_off == m->off;
	if (hit)
		dc_buf_copy_to(dst, 0, q->zc_buf + (goff & (q->cluster_size - 1)),
			       dst->len);
	pthread_mutex_unlock(&q->lock);
	return hit;
}

/* One compressed cluster, inflated (and kept), then the part asked for
 * copied out. */
static int qcow2_read_compressed(struct qcow2 *q, const struct qcow2_map *m,
				 uint64_t goff, const struct dc_buf *dst)
{
	uint8_t *src, *out;
	int ret = -ENOMEM;

	if (qcow2_zc_copy(q, m, goff, dst))
		return 0;
	src = malloc(m->clen ? m->clen : 1);
	out = malloc(q->cluster_size);
	if (src && out) {
		ret = vhdfmt_pread(q->fd, src, m->clen, m->off);
		if (ret == 0)
			ret = qcow2_decompress(q->h.compression, src, m->clen, out,
					       q->cluster_size);
		if (ret == 0) {
			dc_buf_copy_to(dst, 0, out + (goff & (q->cluster_size - 1)),
				       dst->len);
			pthread_mutex_lock(&q->lock);
			free(q->zc_buf);
			q->zc_buf = out;
			q->zc_off = m->off;
			out = NULL;
			pthread_mutex_unlock(&q->lock);
		} else if (ret == -EFBIG) {
			dc_debug("qcow2: %s: compressed cluster at %llu (%llu bytes) "
				 "inflates past one cluster (%u bytes): refused",
				 q->path, (unsigned long long)m->off,
				 (unsigned long long)m->clen, q->cluster_size);
		} else {
			dc_debug("qcow2: %s: compressed cluster at %llu (%llu bytes) "
				 "does not decompress: %d",
				 q->path, (unsigned long long)m->off,
				 (unsigned long long)m->clen, ret);
		}
	}
	free(src);
	free(out);
	return ret == -ENODATA || ret == -ENOTSUP || ret == -EFBIG ? -EIO : ret;
}

static int qcow2_read_data(struct qcow2 *q, const struct qcow2_map *m,
			   const struct dc_buf *dst)
{
	ssize_t n = dc_buf_pread(q->fd, dst, m->off, 1);

	if (n < 0)
		return (int)n;
	if ((size_t)n < dst->len)
		dc_buf_zero(dst, (size_t)n, dst->len - (size_t)n);
	return 0;
}

/* Grow a data mapping m of n bytes at goff over the following mappings that
 * continue it in the file, up to max bytes: one pread for a run of clusters
 * the image laid out in order. */
uint64_t qcow2_extend_data(struct qcow2 *q, const struct qcow2_map *m, uint64_t goff,
			   uint64_t n, uint64_t max, bool nowait)
{
	int (*map)(struct qcow2 *, uint64_t, struct qcow2_map *) =
		nowait ? qcow2_map_nowait : qcow2_map;
	struct qcow2_map next;

	while (n < max && map(q, goff + n, &next) == 0 && next.kind == QCOW2_DATA &&
	       next.off == m->off + n)
		n += next.len < max - n ? next.len : max - n;
	return n;
}

int qcow2_read(struct qcow2 *q, struct dc_req *req)
{
	uint64_t pos = req->sector * QCOW2_SECTOR, total = req->count * QCOW2_SECTOR;

	for (uint64_t done = 0; done < total;) {
		struct qcow2_map m;
		struct dc_buf sub;
		uint64_t n;
		int ret = qcow2_map(q, pos + done, &m);

		if (ret)
			return vhdfmt_result(req, ret);
		n = m.len < total - done ? m.len : total - done;
		if (m.kind == QCOW2_DATA)
			n = qcow2_extend_data(q, &m, pos + done, n, total - done, false);
		sub = dc_buf_sub(&req->buf, done, n);
		switch (m.kind) {
		case QCOW2_UNALLOC:
			break;
		case QCOW2_ZERO:
			dc_buf_zero(&sub, 0, n);
			break;
		case QCOW2_DATA:
			ret = qcow2_read_data(q, &m, &sub);
			break;
		case QCOW2_COMPRESSED:
			ret = qcow2_read_compressed(q, &m, pos + done, &sub);
			break;
		}
		if (ret)
			return vhdfmt_result(req, ret);
		if (m.kind != QCOW2_UNALLOC && req->marker)
			dc_marker_set(req->marker, req->sector + done / QCOW2_SECTOR,
				      n / QCOW2_SECTOR);
		done += n;
	}
	return 0;
}

int qcow2_read_map(struct qcow2 *q, const struct qcow2_map *m, uint64_t goff,
		   uint8_t *buf, size_t len)
{
	struct iovec iov = { buf, len };
	struct dc_buf b = { .iov = &iov, .iovcnt = 1, .len = len };

	switch (m->kind) {
	case QCOW2_UNALLOC:
		/* below.c reads a qcow2 backing image through this file again:
		 * the backing chain's recursion (docs/architecture.md). */
		return qcow2_below_read(q, goff, buf, len);
	case QCOW2_ZERO:
		memset(buf, 0, len);
		return 0;
	case QCOW2_DATA:
		return qcow2_read_data(q, m, &b);
	default:
		return qcow2_read_compressed(q, m, goff, &b);
	}
}

int qcow2_read_buf(struct qcow2 *q, uint64_t goff, uint8_t *buf, size_t len)
{
	while (len) {
		struct qcow2_map m;
		size_t n;
		int ret;

		if (goff >= q->h.size) {
			memset(buf, 0, len);
			return 0;
		}
		ret = qcow2_map(q, goff, &m);
		if (ret)
			return ret;
		n = m.len < len ? (size_t)m.len : len;
		if (n > q->h.size - goff)
			n = (size_t)(q->h.size - goff);
		ret = qcow2_read_map(q, &m, goff, buf, n);
		if (ret)
			return ret;
		goff += n;
		buf += n;
		len -= n;
	}
	return 0;
}
