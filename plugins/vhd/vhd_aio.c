/* SPDX-License-Identifier: MIT */
/* vhd_aio: submit(). The data I/O that changes no metadata goes to the file
 * engine (common/ioengine: io_uring, one ring per queue, or blocking calls on
 * the worker pool where io_uring is unavailable) straight from the queue's
 * thread; everything else runs the blocking vhd_io() on the core's worker
 * pool, in the crash-safe order vhd.h describes.
 *
 * Taken here: every read, write and flush of a fixed image. Of a dynamic or
 * differencing image, a read or write whose part in each block (up to
 * VHD_AIO_PARTS blocks; one engine request a block) is: for a read, in an
 * allocated block with all its sectors present (a plain dynamic image's data
 * always counts; a differencing image's bitmap says present), or in an
 * unallocated one (zeroes, or nothing for the parent, filled in here); for a
 * write, in an allocated block whose bitmap bits are all set already (not
 * FUA, whose block may wait for the next flush's metadata, nor
 * no-overwrite). Allocation, bitmap updates, flush and every request with a
 * part that needs one of them take the pool.
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

#include <stdlib.h>

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

/* What the map says of a request or a piece of one. */
enum vhd_aio_way {
	VHD_AIO_POOL,	/* the blocking path */
	VHD_AIO_ENGINE, /* to the engine */
	VHD_AIO_DONE,	/* finished inline (an unallocated block's read) */
};

/* One block's part of a request: where its data lies in the file. */
struct vhd_aio_part {
	uint64_t sector, off;
	uint32_t count;
	enum vhd_aio_way way;
};

/* Map the part of req in one block: [sector, sector + n). */
static enum vhd_aio_way vhd_aio_part(struct vhd_img *v, struct dc_req *req,
				     struct vhd_aio_part *p)
{
	uint32_t b = (uint32_t)(p->sector >> v->m.spb_shift);
	uint32_t o = (uint32_t)(p->sector & (v->m.spb - 1));
	uint32_t e = vhd_bat_get(v, b);

	if (e == VHD_UNALLOC)
		return req->op == DC_OP_WRITE ? VHD_AIO_POOL : VHD_AIO_DONE;
	/* A plain dynamic image's reads ignore the bitmap; its writes, like a
	 * differencing image's, may need to set bits. */
	if ((req->op == DC_OP_WRITE || v->diff) && !vhd_aio_bits(v, b, o, p->count))
		return VHD_AIO_POOL;
	p->off = vhd_block_off(e) + v->m.bitmap_bytes + (uint64_t)o * VHD_SECTOR;
	return VHD_AIO_ENGINE;
}

/* Map a read or write of a dynamic or differencing image into parts (at
 * most VHD_AIO_PARTS blocks): *nparts of them, or VHD_AIO_POOL when any
 * part needs the blocking path. */
static enum vhd_aio_way vhd_aio_map(struct vhd_img *v, struct dc_req *req,
				    struct vhd_aio_part *parts, unsigned *nparts)
{
	uint64_t sector = req->sector, end = req->sector + req->count;
	unsigned n = 0;

	if (req->op == DC_OP_WRITE && (req->flags & (DC_IO_FUA | DC_IO_NO_OVERWRITE)))
		return VHD_AIO_POOL;
	while (sector < end) {
		uint64_t next = ((sector >> v->m.spb_shift) + 1) << v->m.spb_shift;
		struct vhd_aio_part *p = &parts[n];

		if (n == VHD_AIO_PARTS)
			return VHD_AIO_POOL;
		p->sector = sector;
		p->count = (uint32_t)((next < end ? next : end) - sector);
		p->way = vhd_aio_part(v, req, p);
		if (p->way == VHD_AIO_POOL)
			return VHD_AIO_POOL;
		sector += p->count;
		n++;
	}
	*nparts = n;
	return VHD_AIO_ENGINE;
}

/* The view of req's buffer that part p covers. */
static struct dc_buf vhd_aio_view(const struct dc_req *req, const struct vhd_aio_part *p)
{
	return dc_buf_sub(&req->buf, (size_t)(p->sector - req->sector) * VHD_SECTOR,
			  (size_t)p->count * VHD_SECTOR);
}

/* Parts whose block is unallocated read as zeroes, or leave the parent's
 * sectors unmarked (vhd_read_block); the rest are marked as they go. Returns
 * how many parts go to the engine. */
static unsigned vhd_aio_fill(struct vhd_img *v, struct dc_req *req,
			     const struct vhd_aio_part *parts, unsigned nparts)
{
	unsigned engine = 0;

	for (unsigned i = 0; i < nparts; i++) {
		const struct vhd_aio_part *p = &parts[i];

		if (p->way == VHD_AIO_DONE && v->diff && req->marker)
			continue;
		if (p->way == VHD_AIO_DONE) {
			struct dc_buf view = vhd_aio_view(req, p);

			dc_buf_zero(&view, 0, view.len);
		}
		engine += p->way == VHD_AIO_ENGINE;
		if (req->marker)
			dc_marker_set(req->marker, p->sector, p->count);
	}
	return engine;
}

/* A part of a request on the engine; the last to finish completes it. */
static void vhd_aio_part_done(struct ioe_req *io, int res)
{
	struct vhd_aio_io *a = (struct vhd_aio_io *)io;
	struct vhd_rq *r = a->r;
	int err = vhdfmt_engine_errno(res, io->op == IOE_WRITE), none = 0;

	if (err)
		__atomic_compare_exchange_n(&r->err, &none, err, false, __ATOMIC_RELAXED,
					    __ATOMIC_RELAXED);
	if (__atomic_sub_fetch(&r->pending, 1, __ATOMIC_ACQ_REL) == 0) {
		free(r->parts);
		vhdfmt_complete(r->req, __atomic_load_n(&r->err, __ATOMIC_RELAXED));
	}
}

/* Start the engine parts of a mapped read or write: one in r->io, several
 * each in a struct vhd_aio_io of their own. */
static enum vhd_aio_way vhd_aio_start(struct vhd_img *v, struct vhd_rq *r,
				      const struct vhd_aio_part *parts, unsigned nparts)
{
	struct dc_req *req = r->req;
	unsigned engine = vhd_aio_fill(v, req, parts, nparts), k = 0;
	uint8_t op = req->op == DC_OP_WRITE ? IOE_WRITE : IOE_READ;
	struct vhd_aio_io *a;

	if (engine == 0)
		return VHD_AIO_DONE;
	for (unsigned i = 0; engine == 1 && i < nparts; i++)
		if (parts[i].way == VHD_AIO_ENGINE) {
			r->io.op = op;
			r->io.fua = false;
			r->io.off = parts[i].off;
			r->io.buf = vhd_aio_view(req, &parts[i]);
			ioe_submit(req->qctx, &r->io);
			return VHD_AIO_ENGINE;
		}
	a = calloc(engine, sizeof(*a));
	if (!a)
		return VHD_AIO_POOL;
	r->parts = a;
	r->err = 0;
	r->pending = (int)engine;
	for (unsigned i = 0; i < nparts; i++) {
		if (parts[i].way != VHD_AIO_ENGINE)
			continue;
		a[k].r = r;
		a[k].io.op = op;
		a[k].io.off = parts[i].off;
		a[k].io.buf = vhd_aio_view(req, &parts[i]);
		a[k].io.done = vhd_aio_part_done;
		/* The last submission may finish the request and free a. */
		ioe_submit(req->qctx, &a[k++].io);
	}
	return VHD_AIO_ENGINE;
}

/* Finish req: on the engine, inline, or on the pool (returned). */
static enum vhd_aio_way vhd_aio_route(struct vhd_img *v, struct vhd_rq *r)
{
	struct vhd_aio_part parts[VHD_AIO_PARTS];
	struct dc_req *req = r->req;
	struct ioe_req *io = &r->io;
	unsigned nparts;

	if (!req->qctx)
		return VHD_AIO_POOL;
	switch (req->op) {
	case DC_OP_READ:
	case DC_OP_WRITE:
		if (!v->fixed) {
			if (vhd_aio_map(v, req, parts, &nparts) == VHD_AIO_POOL)
				return VHD_AIO_POOL;
			return vhd_aio_start(v, r, parts, nparts);
		}
		io->op = req->op == DC_OP_WRITE ? IOE_WRITE : IOE_READ;
		io->fua = req->op == DC_OP_WRITE && (req->flags & DC_IO_FUA);
		io->off = req->sector * VHD_SECTOR;
		io->buf = req->buf;
		if (req->marker)
			dc_marker_set(req->marker, req->sector, req->count);
		break;
	case DC_OP_FLUSH:
		if (v->read_only)
			return VHD_AIO_DONE;
		if (!v->fixed)
			return VHD_AIO_POOL;
		io->op = IOE_FLUSH;
		break;
	default:
		return VHD_AIO_POOL;
	}
	ioe_submit(req->qctx, io);
	return VHD_AIO_ENGINE;
}

void vhd_submit(void *inst, struct dc_req *req)
{
	struct vhd_img *v = inst;
	struct vhd_rq *r = req->ctx;

	r->req = req;
	r->v = v;
	r->io.done = vhd_aio_done;
	switch (vhd_aio_route(v, r)) {
	case VHD_AIO_ENGINE:
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
	return ioe_plugin_queue_open(((struct vhd_img *)inst)->img.ioe, qctx);
}
