/* SPDX-License-Identifier: MIT */
/* qcow2 submit(): a read that one run of data clusters holds whole, inside
 * the file, goes to the asynchronous file engine (common/ioengine; io_uring
 * where the kernel allows) straight from the queue's thread; everything else
 * (compressed, zero or unallocated parts, a read that meets the end of the
 * file, writes, unmaps, flushes) runs the blocking io() on the core's worker
 * pool, as before. Mapping may read an L2 table on a cache miss: metadata
 * blocks only then (issue 17). */
#include "qcow2.h"

#include "vhdfmt/vhdfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
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
	q->aio_fd = open(self, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (q->aio_fd < 0)
		return dc_fail(-errno, "%s: cannot reopen for reading: %s", q->path,
			       strerror(errno));
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

static void qcow2_pool_fn(void *arg)
{
	struct qcow2_rq *r = arg;

	dc_complete(r->req, qcow2_io(r->q, r->req));
}

/* Whether req reads one run of data clusters inside the file: its host
 * offset in *off. */
static bool qcow2_direct_read(struct qcow2 *q, struct dc_req *req, uint64_t *off)
{
	uint64_t goff = req->sector * 512, len = req->buf.len, n;
	struct qcow2_map m;

	if (len == 0 || qcow2_map(q, goff, &m) != 0 || m.kind != QCOW2_DATA)
		return false;
	n = m.len < len ? m.len : len;
	if (n < len)
		n = qcow2_extend_data(q, &m, goff, n, len);
	*off = m.off;
	return n == len &&
	       m.off + len <= __atomic_load_n(&q->file_size, __ATOMIC_RELAXED);
}

void qcow2_submit(void *inst, struct dc_req *req)
{
	struct qcow2 *q = inst;
	struct qcow2_rq *r = req->ctx;
	uint64_t off;

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
	if (dc_pool_run(qcow2_pool_fn, r) != 0)
		dc_complete(req, DC_E_IO);
}

int qcow2_queue_open(void *inst, void **qctx)
{
	struct qcow2 *q = inst;

	return ioe_queue_open(q->ioe, (struct ioe_queue **)qctx);
}

void qcow2_queue_close(void *inst, void *qctx)
{
	(void)inst;
	ioe_queue_close(qctx);
}

int qcow2_queue_poll(void *inst, void *qctx, int wake_fd, int timeout_ms)
{
	(void)inst;
	return ioe_queue_poll(qctx, wake_fd, timeout_ms);
}
