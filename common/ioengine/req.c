/* SPDX-License-Identifier: MIT */
/* ioengine: a request's buffers on the ring, made ready when it is submitted
 * (straight, or bounced) and copied out and freed when it finishes; below the
 * rest of the engine, which all finishes requests (internal.h). */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdlib.h>

/* Off the ring: copy a bounced read out, free what the request allocated,
 * tell the caller. */
void ioe_finish(struct ioe_req *r, int res)
{
	if (r->bounce) {
		if (res == 0 && r->op == IOE_READ)
			dc_buf_copy_to(&r->buf, 0, r->bounce, r->buf.len);
		free(r->bounce);
		r->bounce = NULL;
	}
	free(r->heap);
	r->heap = NULL;
	r->done(r, res);
}

/* A read or write for the ring: straight into the caller's buffers, bounced
 * through an aligned copy when O_DIRECT cannot take them or preadv could not
 * take that many segments. */
int ioe_prepare_rw(struct ioe_req *r)
{
	bool write = r->op == IOE_WRITE;
	size_t len = r->buf.len, align = r->f->align;
	int cnt = -E2BIG;

	r->pos = r->off;
	r->left = len;
	r->rwflags = write && r->fua ? RWF_DSYNC : 0;
	if (!r->f->direct || dc_buf_aligned(&r->buf, align)) {
		cnt = dc_buf_iov(&r->buf, r->inl, IOE_INLINE_IOV);
		r->iov = r->inl;
		if (cnt == -E2BIG && r->buf.iovcnt <= IOV_MAX) {
			r->heap = malloc(sizeof(*r->heap) * (size_t)r->buf.iovcnt);
			if (!r->heap)
				return -ENOMEM;
			cnt = dc_buf_iov(&r->buf, r->heap, r->buf.iovcnt);
			r->iov = r->heap;
		}
	}
	if (cnt < 0) {
		if (posix_memalign(&r->bounce, align > 4096 ? align : 4096, len))
			return -ENOMEM;
		if (write)
			dc_buf_copy_from(&r->buf, 0, r->bounce, len);
		r->inl[0].iov_base = r->bounce;
		r->inl[0].iov_len = len;
		r->iov = r->inl;
		cnt = 1;
	}
	r->iovcnt = cnt;
#ifdef IOE_HAVE_URING
	if (cnt == 1 && r->iov[0].iov_len <= UINT_MAX)
		r->uop = write ? IORING_OP_WRITE : IORING_OP_READ;
	else
		r->uop = write ? IORING_OP_WRITEV : IORING_OP_READV;
#endif
	return 0;
}
