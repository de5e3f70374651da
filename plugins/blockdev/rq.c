/* SPDX-License-Identifier: MIT */
/* blockdev: a request's end, the same for the engine's requests (io.c) and the
 * worker pool's (pr.c): the kernel's errno as a result, and the completion. */
#include "blockdev.h"

#include <errno.h>

/* An errno from the kernel as a result (docs/openvmm-compat.md §2.5): block devices
 * enforce their bounds with ENOSPC and report PR conflicts as EBADE. Errnos that share a
 * value with a result class become DC_E_IO with the errno as detail. */
void bdev_rq_errno(struct bdev_rq *r, int err)
{
	bool blk = r->b->blk;

	r->detail = err;
	switch (err) {
	case ENOSPC:
		r->result = blk ? DC_E_ILLEGAL_BLOCK : DC_E_IO;
		break;
	case EBADE:
		r->result = blk ? DC_E_RESERVATION_CONFLICT : DC_E_IO;
		break;
	case EFAULT:
		r->result = DC_E_MEMORY_ACCESS;
		break;
	case EROFS:
		r->result = DC_E_READ_ONLY;
		break;
	case ENODATA: /* BLK_STS_MEDIUM */
		r->result = blk ? DC_E_MEDIUM : DC_E_IO;
		if (blk)
			r->detail = r->req->op == DC_OP_READ ?
					    DC_MEDIUM_UNRECOVERED_READ :
					    DC_MEDIUM_WRITE_FAULT;
		break;
	default:
		r->result = DC_E_IO;
		break;
	}
}

void bdev_rq_done(struct bdev_rq *r)
{
	dc_complete_detail(r->req, r->result, r->detail);
}
