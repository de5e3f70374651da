/* SPDX-License-Identifier: MIT */
/* vhd_aio: submit(). The data I/O that changes no metadata goes to the file
 * engine (common/ioengine: io_uring, one ring per queue, or blocking calls on
 * the worker pool where io_uring is unavailable) straight from the queue's
 * thread; everything else runs the blocking vhd_io() on the core's worker
 * pool, in the crash-safe order vhd.h describes.
 *
 * Taken here: every read, write and flush of a fixed image; a read inside one
 * allocated block whose sectors are all present (a plain dynamic image's
 * data always counts; a differencing image's bitmap says present); a write
 * inside one allocated block whose bitmap bits are all set already (neither
 * FUA, whose block may wait for the next flush's metadata, nor no-overwrite);
 * a read inside one unallocated block, finished inline (zeroes, or nothing
 * for the parent). Allocation, bitmap updates, flush and requests across
 * blocks take the pool.
 *
 * Why the unlocked map is safe: an allocation writes the block's bitmap and
 * data before it publishes the BAT entry (release; vhd_alloc), and data
 * before it sets bitmap bits (under the lock), so a map that sees a block
 * allocated, or bits set, finds the data in place; one that does not reads
 * as before the write. Entries and bits never go back (blocks are never
 * freed), and a bitmap is only read or replaced under the lock, which the
 * queue's thread only tries (it never waits behind an allocation's syncs).
 * A flush's fdatasync (of any description of the file) covers every write
 * the engine finished before it. */
#include "vhd.h"

#include "vhdfmt/aio.h"

static void vhd_aio_done(struct ioe_req *io, int res)
{
	struct vhd_rq *r = (struct vhd_rq *)io;

	vhdfmt_complete(r->req, vhdfmt_engine_errno(res, io->op == IOE_WRITE));
}

static void vhd_pool_job(void *arg)
{
	struct vhd_rq *r = arg;
	int rc;

	r->req->detail = 0;
	rc = vhd_io(r->v, r->req);
	dc_complete_detail(r->req, rc, r->req->detail);
}

/* Bits [o, o + n) of block b's bitmap are all set, as far as the queue's
 * thread can tell without waiting: false when the lock is busy or the bitmap
 * not loaded (the pool path loads it). */
static bool vhd_aio_bits(struct vhd_img *v, uint32_t b, uint32_t o, uint32_t n)
{
	const uint8_t *bm = __atomic_load_n(&v->bm[b], __ATOMIC_ACQUIRE);
	bool all;

	if (bm == VHD_BM_FULL)
		return true;
	if (pthread_mutex_trylock(&v->lock) != 0)
		return false;
	bm = v->bm[b];
	all = bm != NULL;
	for (uint32_t i = o; all && bm != VHD_BM_FULL && i < o + n; i++)
		all = bm[i >> 3] & (0x80u >> (i & 7));
	pthread_mutex_unlock(&v->lock);
	return all;
}

/* What the map says of a request (vhd_aio_map). */
enum vhd_aio_way {
	VHD_AIO_POOL,	/* the blocking path */
	VHD_AIO_ENGINE, /* io describes it */
	VHD_AIO_DONE,	/* finished inline */
};

/* Map a read or write of a dynamic or differencing image. */
static enum vhd_aio_way vhd_aio_map(struct vhd_img *v, struct dc_req *req,
				    struct ioe_req *io)
{
	bool write = req->op == DC_OP_WRITE;
	uint32_t b = (uint32_t)(req->sector >> v->m.spb_shift);
	uint32_t o = (uint32_t)(req->sector & (v->m.spb - 1));
	uint32_t e;

	if (req->count == 0 || req->count > v->m.spb - o ||
	    (write && (req->flags & (DC_IO_FUA | DC_IO_NO_OVERWRITE))))
		return VHD_AIO_POOL;
	e = vhd_bat_get(v, b);
	if (e == VHD_UNALLOC) {
		if (write)
			return VHD_AIO_POOL;
		/* A parent's sectors stay unmarked (vhd_read_block). */
		if (!(v->diff && req->marker)) {
			dc_buf_zero(&req->buf, 0, req->buf.len);
			if (req->marker)
				dc_marker_set(req->marker, req->sector, req->count);
		}
		return VHD_AIO_DONE;
	}
	/* A plain dynamic image's reads ignore the bitmap; its writes, like a
	 * differencing image's, may need to set bits. */
	if ((write || v->diff) && !vhd_aio_bits(v, b, o, (uint32_t)req->count))
		return VHD_AIO_POOL;
	io->off = vhd_block_off(e) + v->m.bitmap_bytes + (uint64_t)o * VHD_SECTOR;
	return VHD_AIO_ENGINE;
}

/* How req goes: the engine (io filled in), the pool, or done inline. */
static enum vhd_aio_way vhd_aio_route(struct vhd_img *v, struct dc_req *req,
				      struct ioe_req *io)
{
	enum vhd_aio_way way = VHD_AIO_ENGINE;

	if (!req->qctx)
		return VHD_AIO_POOL;
	switch (req->op) {
	case DC_OP_READ:
	case DC_OP_WRITE:
		if (v->fixed)
			io->off = req->sector * VHD_SECTOR;
		else
			way = vhd_aio_map(v, req, io);
		if (way != VHD_AIO_ENGINE)
			return way;
		io->op = req->op == DC_OP_WRITE ? IOE_WRITE : IOE_READ;
		io->fua = req->op == DC_OP_WRITE && (req->flags & DC_IO_FUA);
		io->buf = req->buf;
		if (req->marker)
			dc_marker_set(req->marker, req->sector, req->count);
		return VHD_AIO_ENGINE;
	case DC_OP_FLUSH:
		if (v->read_only)
			return VHD_AIO_DONE;
		if (!v->fixed)
			return VHD_AIO_POOL;
		io->op = IOE_FLUSH;
		return VHD_AIO_ENGINE;
	default:
		return VHD_AIO_POOL;
	}
}

void vhd_submit(void *inst, struct dc_req *req)
{
	struct vhd_img *v = inst;
	struct vhd_rq *r = req->ctx;

	r->req = req;
	r->v = v;
	r->io.done = vhd_aio_done;
	switch (vhd_aio_route(v, req, &r->io)) {
	case VHD_AIO_ENGINE:
		ioe_submit(req->qctx, &r->io);
		break;
	case VHD_AIO_DONE:
		dc_complete(req, 0);
		break;
	case VHD_AIO_POOL:
		if (dc_pool_run(vhd_pool_job, r) != 0)
			dc_complete(req, DC_E_IO);
		break;
	}
}

int vhd_queue_open(void *inst, void **qctx)
{
	return ioe_plugin_queue_open(((struct vhd_img *)inst)->ioe, qctx);
}
