/* SPDX-License-Identifier: MIT */
/* blockdev: preparing reads, writes, flushes and unmaps for the ring, the
 * blocking ones (discard, eject) for the worker pool; submit(). */
#include "blockdev.h"

#include <errno.h>
#include <limits.h>
#include <linux/cdrom.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/uio.h>

/* --- Requests ------------------------------------------------------------------ */

uint64_t bdev_sector_count(void *inst)
{
	struct bdev *b = inst;

	return atomic_load_explicit(&b->sectors, memory_order_relaxed);
}

static bool bdev_in_range(struct bdev *b, uint64_t sector, uint64_t count)
{
	uint64_t n = atomic_load_explicit(&b->sectors, memory_order_relaxed);

	return sector <= n && count <= n - sector;
}

/* Hand a request to the worker pool (blocking ioctls). */
static int bdev_to_pool(struct bdev_rq *r, void (*fn)(void *))
{
	return dc_pool_run(fn, r) < 0 ? -ENOMEM : BDEV_HANDED_OFF;
}

/* Reads and writes: straight into the request's buffers, bounced through an
 * aligned copy when O_DIRECT cannot take them. Returns BDEV_TO_RING,
 * BDEV_DONE or a result. */
static int bdev_rw(struct bdev *b, struct bdev_rq *r)
{
	struct dc_req *req = r->req;
	bool write = req->op == DC_OP_WRITE;
	size_t len = req->buf.len;
	int cnt = -E2BIG;

	if (write && b->read_only)
		return DC_E_READ_ONLY;
	if (len & ((1u << b->shift) - 1))
		return DC_E_INVALID_INPUT;
	if (!bdev_in_range(b, req->sector, len >> b->shift))
		return DC_E_ILLEGAL_BLOCK;
	if (len == 0)
		return BDEV_DONE;
	r->off = req->sector << b->shift;
	r->left = len;
	r->rwflags = write && (req->flags & DC_IO_FUA) ? RWF_DSYNC : 0;
	if (!b->direct || dc_buf_aligned(&req->buf, b->align)) {
		cnt = dc_buf_iov(&req->buf, r->inl, BDEV_INLINE_IOV);
		r->iov = r->inl;
		if (cnt == -E2BIG && req->buf.iovcnt <= IOV_MAX) {
			r->heap = malloc(sizeof(*r->heap) * (size_t)req->buf.iovcnt);
			if (!r->heap)
				return -ENOMEM;
			cnt = dc_buf_iov(&req->buf, r->heap, req->buf.iovcnt);
			r->iov = r->heap;
		}
	}
	if (cnt < 0) {
		/* Unaligned for O_DIRECT, or more segments than preadv takes. */
		if (posix_memalign(&r->bounce, b->align > 4096 ? b->align : 4096, len))
			return -ENOMEM;
		if (write)
			dc_buf_copy_from(&req->buf, 0, r->bounce, len);
		r->inl[0].iov_base = r->bounce;
		r->inl[0].iov_len = len;
		r->iov = r->inl;
		cnt = 1;
	}
	r->iovcnt = cnt;
	if (cnt == 1 && r->iov[0].iov_len <= UINT_MAX)
		r->op = write ? IORING_OP_WRITE : IORING_OP_READ;
	else
		r->op = write ? IORING_OP_WRITEV : IORING_OP_READV;
	return BDEV_TO_RING;
}

static void bdev_pool_discard(void *arg)
{
	struct bdev_rq *r = arg;
	uint64_t range[2] = { r->off, r->left };

	if (ioctl(r->b->fd, BLKDISCARD, range) < 0) {
		/* A device that cannot discard has nothing to forget. */
		if (errno != ENOTTY && errno != EOPNOTSUPP && errno != ENOSYS)
			bdev_rq_errno(r, errno);
	}
	bdev_rq_done(r);
}

/* Unmap: files punch holes through the ring, devices discard on the pool.
 * Returns BDEV_TO_RING, BDEV_DONE, BDEV_HANDED_OFF or a result. */
static int bdev_unmap(struct bdev *b, struct bdev_rq *r)
{
	struct dc_req *req = r->req;

	if (b->read_only)
		return DC_E_READ_ONLY;
	/* Needed: a hole punched past the end of a file succeeds. */
	if (!bdev_in_range(b, req->sector, req->count))
		return DC_E_ILLEGAL_BLOCK;
	if (req->count == 0 || b->gran == 0)
		return BDEV_DONE;
	r->off = req->sector << b->shift;
	r->left = req->count << b->shift;
	if (b->blk)
		return bdev_to_pool(r, bdev_pool_discard);
	r->op = IORING_OP_FALLOCATE;
	return BDEV_TO_RING;
}

static void bdev_pool_eject(void *arg)
{
	struct bdev_rq *r = arg;
	int fd = r->b->fd;

	if (ioctl(fd, CDROM_LOCKDOOR, 0) < 0 || ioctl(fd, CDROMEJECT, 0) < 0) {
		int err = errno;

		if (err == ENOTTY || err == EINVAL || err == ENOSYS || err == EOPNOTSUPP)
			r->result = DC_E_UNSUPPORTED_EJECT;
		else
			bdev_rq_errno(r, err);
	}
	bdev_rq_done(r);
}

void bdev_submit(void *inst, struct dc_req *req)
{
	struct bdev *b = inst;
	struct bdev_rq *r = req->ctx;
	int rc = BDEV_TO_RING;

	r->req = req;
	r->b = b;
	r->bounce = NULL;
	r->heap = NULL;
	r->tries = 0;
	r->result = 0;
	r->detail = 0;
	switch (req->op) {
	case DC_OP_READ:
	case DC_OP_WRITE:
		rc = bdev_rw(b, r);
		break;
	case DC_OP_FLUSH:
		r->op = IORING_OP_FSYNC;
		break;
	case DC_OP_UNMAP:
		rc = bdev_unmap(b, r);
		break;
	case DC_OP_EJECT:
		rc = b->blk ? bdev_to_pool(r, bdev_pool_eject) : DC_E_UNSUPPORTED_EJECT;
		break;
	default:
		rc = b->pr && req->pr ? bdev_to_pool(r, bdev_pool_pr) : DC_E_UNSUPPORTED;
		break;
	}
	if (rc == BDEV_TO_RING) {
		bq_start(req->qctx, r);
	} else if (rc != BDEV_HANDED_OFF) {
		if (rc == -ENOMEM) {
			r->result = DC_E_IO;
			r->detail = ENOMEM;
		} else if (rc < 0) {
			r->result = rc;
		}
		bdev_rq_done(r);
	}
}
