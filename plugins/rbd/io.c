/* SPDX-License-Identifier: MIT */
/* rbd's data path: requests become librbd aio calls whose completions carry
 * no callback, so librbd queues them on the image's event socket (reap.c)
 * instead of handing each to its own callback thread first. Whoever reaps a
 * completion finishes the request with dc_complete(); off the queue's thread
 * the core hands it over. */
#include "rbd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void rbd_finish(struct rbd_rctx *r, ssize_t ret)
{
	struct dc_req *req = r->req;

	if (ret >= 0 && req->op == DC_OP_READ) {
		/* A read beyond the end of an image shrunk meanwhile is short:
		 * what is past the end reads as zero. */
		if ((size_t)ret < r->len) {
			if (r->bounce)
				memset((char *)r->bounce + ret, 0, r->len - (size_t)ret);
			else
				dc_buf_zero(&req->buf, (size_t)ret, r->len - (size_t)ret);
		}
		if (r->bounce)
			dc_buf_copy_to(&req->buf, 0, r->bounce, r->len);
	}
	free(r->bounce);
	r->bounce = NULL;
	if (ret < 0)
		dc_complete_detail(req, DC_E_IO, (int)-ret);
	else
		dc_complete(req, 0);
}

/* A FUA write: the data is written; a flush makes it stable before the
 * request completes (librbd's cache may hold it until then). */
static void rbd_fua_flush(struct rbd_rctx *r)
{
	rbd_completion_t c;
	int ret;

	r->fua_flush = true;
	ret = rbd_aio_create_completion(r, NULL, &c);
	if (ret < 0) {
		rbd_finish(r, ret);
		return;
	}
	ret = rbd_aio_flush(r->in->image, c);
	if (ret < 0) {
		rbd_aio_release(c);
		rbd_finish(r, ret);
	}
}

void rbd_io_done(rbd_completion_t c)
{
	struct rbd_rctx *r = rbd_aio_get_arg(c);
	ssize_t ret = rbd_aio_get_return_value(c);

	rbd_aio_release(c);
	if (ret >= 0 && r->req->op == DC_OP_WRITE && (r->req->flags & DC_IO_FUA) &&
	    !r->fua_flush) {
		rbd_fua_flush(r);
		return;
	}
	rbd_finish(r, ret);
}

/* The request's buffer as rbd's iovecs, or a bounce buffer. */
static int rbd_iov(struct rbd_rctx *r, int *iovcnt)
{
	struct dc_req *req = r->req;
	int n = dc_buf_iov(&req->buf, r->iov, RBD_MAX_IOV);

	if (n > 0) {
		*iovcnt = n;
		return 0;
	}
	r->bounce = malloc(r->len);
	if (!r->bounce)
		return -ENOMEM;
	if (req->op == DC_OP_WRITE)
		dc_buf_copy_from(&req->buf, 0, r->bounce, r->len);
	r->iov[0].iov_base = r->bounce;
	r->iov[0].iov_len = r->len;
	*iovcnt = 1;
	return 0;
}

void rbd_submit(void *inst, struct dc_req *req)
{
	struct rbd_inst *in = inst;
	struct rbd_rctx *r = req->ctx;
	uint64_t off = req->sector << RBD_SHIFT;
	rbd_completion_t c;
	int ret, iovcnt = 0;

	r->req = req;
	r->in = in;
	r->bounce = NULL;
	r->len = (size_t)req->count << RBD_SHIFT;
	r->fua_flush = false;
	if (req->op == DC_OP_READ || req->op == DC_OP_WRITE) {
		ret = rbd_iov(r, &iovcnt);
		if (ret < 0) {
			dc_complete_detail(req, DC_E_IO, -ret);
			return;
		}
	}
	ret = rbd_aio_create_completion(r, NULL, &c);
	if (ret < 0) {
		rbd_finish(r, ret);
		return;
	}
	switch (req->op) {
	case DC_OP_READ:
		ret = rbd_aio_readv(in->image, r->iov, iovcnt, off, c);
		break;
	case DC_OP_WRITE:
		ret = rbd_aio_writev(in->image, r->iov, iovcnt, off, c);
		break;
	case DC_OP_UNMAP:
		ret = rbd_aio_discard(in->image, off, r->len, c);
		break;
	default:
		ret = rbd_aio_flush(in->image, c);
		break;
	}
	if (ret < 0) {
		rbd_aio_release(c);
		rbd_finish(r, ret);
	}
}
