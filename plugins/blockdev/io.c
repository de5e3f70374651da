/* SPDX-License-Identifier: MIT */
/* blockdev: requests. Reads, writes, flushes, hole punches and discards go to
 * the file engine; ejects and reservations are ioctls on the worker pool. */
#include "blockdev.h"

#include <errno.h>
#include <linux/cdrom.h>
#include <sys/ioctl.h>

/* The engine finished r (any thread: only complete here). */
static void bdev_io_done(struct ioe_req *io, int res)
{
	struct bdev_rq *r = (struct bdev_rq *)io;

	if (res == IOE_EOF) {
		/* End of file or device inside the range: it shrank, or a file
		 * is shorter than the request (docs/openvmm-compat.md §2.5). */
		r->result = DC_E_ILLEGAL_BLOCK;
	} else if (res < 0) {
		/* A device that cannot discard has nothing to forget. */
		if (r->io.op != IOE_DISCARD ||
		    (res != -ENOTTY && res != -EOPNOTSUPP && res != -ENOSYS))
			bdev_rq_errno(r, -res);
	}
	bdev_rq_done(r);
}

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

/* What preparing a request decided (else a result to complete with). */
enum { BDEV_ENGINE = 0, BDEV_DONE = 1, BDEV_HANDED_OFF = 2 };

/* Reads and writes. Returns BDEV_ENGINE, BDEV_DONE or a result. */
static int bdev_rw(struct bdev *b, struct bdev_rq *r)
{
	struct dc_req *req = r->req;
	bool write = req->op == DC_OP_WRITE;
	size_t len = req->buf.len;

	if (write && b->read_only)
		return DC_E_READ_ONLY;
	if (len & ((1u << b->shift) - 1))
		return DC_E_INVALID_INPUT;
	if (!bdev_in_range(b, req->sector, len >> b->shift))
		return DC_E_ILLEGAL_BLOCK;
	if (len == 0)
		return BDEV_DONE;
	r->io.op = write ? IOE_WRITE : IOE_READ;
	r->io.fua = write && (req->flags & DC_IO_FUA);
	r->io.off = req->sector << b->shift;
	r->io.buf = req->buf;
	return BDEV_ENGINE;
}

/* Unmap: files punch holes, devices discard. Returns as bdev_rw() does. */
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
	r->io.op = b->blk ? IOE_DISCARD : IOE_PUNCH;
	r->io.off = req->sector << b->shift;
	r->io.len = req->count << b->shift;
	return BDEV_ENGINE;
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

/* Hand a request to the worker pool (blocking ioctls). */
static int bdev_to_pool(struct bdev_rq *r, void (*fn)(void *))
{
	if (dc_pool_run(fn, r) < 0) {
		r->detail = ENOMEM;
		return DC_E_IO;
	}
	return BDEV_HANDED_OFF;
}

void bdev_submit(void *inst, struct dc_req *req)
{
	struct bdev *b = inst;
	struct bdev_rq *r = req->ctx;
	int rc = BDEV_ENGINE;

	r->req = req;
	r->b = b;
	r->result = 0;
	r->detail = 0;
	r->io.done = bdev_io_done;
	switch (req->op) {
	case DC_OP_READ:
	case DC_OP_WRITE:
		rc = bdev_rw(b, r);
		break;
	case DC_OP_FLUSH:
		r->io.op = IOE_FLUSH;
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
	if (rc == BDEV_ENGINE) {
		ioe_submit(req->qctx, &r->io);
	} else if (rc != BDEV_HANDED_OFF) {
		if (rc < 0)
			r->result = rc;
		bdev_rq_done(r);
	}
}

int bdev_queue_open(void *inst, void **qctx)
{
	return ioe_plugin_queue_open(((struct bdev *)inst)->io, qctx);
}
