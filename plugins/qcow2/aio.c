/* SPDX-License-Identifier: MIT */
/* qcow2 submit(): a read that one run of data clusters holds whole, inside
 * the file, and a write wholly inside clusters it can overwrite in place
 * (refcount 1, not compressed or zero, subclusters allocated; cached L2
 * table) go to the asynchronous file engine (common/ioengine; io_uring where
 * the kernel allows) straight from the queue's thread; everything else
 * (compressed, zero or unallocated parts, allocating and copy-on-write
 * writes, a read that meets the end of the file, unmaps, flushes) runs the
 * blocking io() on the core's worker pool. Mapping a read may read an L2
 * table on a cache miss: metadata blocks only then (issue 17).
 *
 * An in-place write in flight is registered by guest cluster (q->infl) under the lock
 * that mapped it, and its completion takes only q->infl_lock; a pool writer that would
 * move, free or copy one of those clusters waits for it (write.c, w_wait()), and new
 * writes of such a cluster go to the pool meanwhile, so the engine never writes a cluster
 * that is being freed, reused or copied. */
#include "qcow2.h"

#include "endian/byteorder.h"
#include "vhdfmt/vhdfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The engine gets a file description of its own: a ring releases its files
 * after the process exits, and the image's lock (on q->fd's description)
 * must not outlive the process with it. */
int qcow2_aio_open(struct qcow2 *q)
{
	char self[64];
	int ret;

	snprintf(self, sizeof(self), "/proc/self/fd/%d", q->fd);
	q->aio_fd =
		open(self, (q->writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NONBLOCK);
	if (q->aio_fd < 0)
		return dc_fail(-errno, "%s: cannot reopen: %s", q->path, strerror(errno));
	ret = ioe_file_open(q->aio_fd, false, 0, IOE_AUTO, &q->ioe);
	if (ret) {
		close(q->aio_fd);
		q->aio_fd = -1;
	}
	return ret;
}

void qcow2_aio_close(struct qcow2 *q)
{
	if (q->ioe)
		ioe_file_close(q->ioe);
	q->ioe = NULL;
	if (q->aio_fd >= 0)
		close(q->aio_fd);
	q->aio_fd = -1;
	free(q->infl);
	q->infl = NULL;
}

const char *qcow2_aio_describe(const struct qcow2 *q)
{
	return ioe_file_describe(q->ioe);
}

static void qcow2_io_done(struct ioe_req *io, int res)
{
	struct qcow2_rq *r = (struct qcow2_rq *)io;

	dc_complete(r->req, vhdfmt_result(r->req, res == IOE_EOF ? -ENODATA : res));
}

static void qcow2_write_done(struct ioe_req *io, int res)
{
	struct qcow2_rq *r = (struct qcow2_rq *)io;
	struct qcow2 *q = r->q;

	qcow2_infl_del(q, r);
	dc_complete(r->req, vhdfmt_result(r->req, res == IOE_EOF ? -EIO : res));
}

/* The blocking io(): one request on the worker pool. */
int qcow2_io(void *inst, struct dc_req *req)
{
	struct qcow2 *q = inst;

	switch (req->op) {
	case DC_OP_READ:
		return qcow2_read(q, req);
	case DC_OP_WRITE:
		return qcow2_write(q, req);
	case DC_OP_UNMAP:
		return qcow2_unmap(q, req);
	case DC_OP_FLUSH:
		return q->writable ? vhdfmt_result(req, qcow2_flush(q)) : 0;
	default:
		return DC_E_UNSUPPORTED;
	}
}

static void qcow2_pool_fn(void *arg)
{
	struct qcow2_rq *r = arg;

	dc_complete(r->req, qcow2_io(r->q, r->req));
}

/* Whether req reads one run of data clusters inside the file: its host
 * offset in *off. Without waiting for the image lock: when it is taken (a
 * flush syncing, an allocation) the request goes to the pool. */
static bool qcow2_direct_read(struct qcow2 *q, struct dc_req *req, uint64_t *off)
{
	uint64_t goff = req->sector * 512, len = req->buf.len, n;
	struct qcow2_map m;

	if (len == 0 || qcow2_map_nowait(q, goff, &m) != 0 || m.kind != QCOW2_DATA)
		return false;
	n = m.len < len ? m.len : len;
	if (n < len)
		n = qcow2_extend_data(q, &m, goff, n, len, true);
	*off = m.off;
	return n == len &&
	       m.off + len <= __atomic_load_n(&q->file_size, __ATOMIC_RELAXED);
}

/* The host offset of guest cluster ci's data when [in, in+len) of it can be
 * written in place now, from the cached tables only (a miss goes to the
 * pool, which reads the table); 0 if not. *clean: the L1 and L2 entries are
 * on disk, so RWF_DSYNC alone makes the write durable. Under lock. */
static uint64_t qcow2_place(struct qcow2 *q, uint64_t ci, uint64_t in, uint64_t len,
			    bool *clean)
{
	unsigned l2_bits = q->h.cluster_bits - q->entry_shift;
	uint64_t l1i = ci >> l2_bits, l2i = ci & (q->l2_entries - 1), l1e, e, bm = 0;
	uint8_t *tab;
	uint32_t slot;

	if (l1i >= q->h.l1_size || qcow2_busy(q, ci))
		return 0;
	l1e = q->l1[l1i];
	if (!(l1e & QCOW2_COPIED) ||
	    qcow2_l2_peek(q, l1e & QCOW2_OFFSET_MASK, &tab, &slot) != 0)
		return 0;
	tab += l2i << q->entry_shift;
	e = get_be64(tab);
	if (q->extl2)
		bm = get_be64(tab + 8);
	if (!qcow2_in_place(q, e, bm, in, len) ||
	    (e & QCOW2_OFFSET_MASK & (q->cluster_size - 1)))
		return 0;
	*clean = *clean && !q->slots[slot].dirty && !q->l1_dirty;
	return e & QCOW2_OFFSET_MASK;
}

/* Whether req writes in place one run of clusters contiguous in the file:
 * then registered in flight, its host offset in *off, *clean as above. */
static bool qcow2_direct_write(struct qcow2 *q, struct qcow2_rq *r, uint64_t *off,
			       bool *clean)
{
	uint64_t goff = r->req->sector * 512, len = r->req->buf.len, cs = q->cluster_size;
	uint64_t c0 = goff >> q->h.cluster_bits, ci = c0, done = 0, host;
	bool ok = len != 0;

	*clean = true;
	*off = 0;
	/* The queue's thread never waits behind a pool writer or a flush. */
	if (pthread_mutex_trylock(&q->lock))
		return false;
	while (ok && done < len) {
		uint64_t in = (goff + done) & (cs - 1), n = cs - in;

		n = n < len - done ? n : len - done;
		host = qcow2_place(q, ci, in, n, clean);
		ok = host &&
		     (done == 0 ? (*off = host + in, true) : host + in == *off + done);
		done += n;
		ci++;
	}
	/* Registered before lock is dropped: no pool writer sees the clusters
	 * free of it in between. */
	ok = ok && *off + len <= q->file_size && qcow2_infl_add(q, c0, ci, r) == 0;
	pthread_mutex_unlock(&q->lock);
	return ok;
}

void qcow2_submit(void *inst, struct dc_req *req)
{
	struct qcow2 *q = inst;
	struct qcow2_rq *r = req->ctx;
	uint64_t off;
	bool clean;

	r->req = req;
	r->q = q;
	if (req->op == DC_OP_READ && req->qctx && qcow2_direct_read(q, req, &off)) {
		if (req->marker)
			dc_marker_set(req->marker, req->sector, req->count);
		r->io = (struct ioe_req){
			.op = IOE_READ, .off = off, .buf = req->buf, .done = qcow2_io_done
		};
		ioe_submit(req->qctx, &r->io);
		return;
	}
	if (req->op == DC_OP_WRITE && req->qctx && q->writable &&
	    qcow2_direct_write(q, r, &off, &clean)) {
		/* FUA: RWF_DSYNC is enough once the mapping is on disk; else
		 * the pool writes and flushes metadata too. */
		r->io = (struct ioe_req){ .op = IOE_WRITE,
					  .fua = (req->flags & DC_IO_FUA) != 0,
					  .off = off,
					  .buf = req->buf,
					  .done = qcow2_write_done };
		if (!r->io.fua || clean) {
			ioe_submit(req->qctx, &r->io);
			return;
		}
		qcow2_infl_del(q, r);
	}
	if (dc_pool_run(qcow2_pool_fn, r) != 0)
		dc_complete(req, DC_E_IO);
}

int qcow2_queue_open(void *inst, void **qctx)
{
	return ioe_plugin_queue_open(((struct qcow2 *)inst)->ioe, qctx);
}
