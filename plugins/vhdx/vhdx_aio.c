/* SPDX-License-Identifier: MIT */
/* vhdx_aio: the data I/O that needs no metadata change, on the asynchronous
 * file engine (common/ioengine; io_uring where the kernel allows, one ring per
 * queue), straight from the queue's thread; and flush, which the blocking path
 * and FUA writes here share.
 *
 * Taken here: a read or write inside one payload block whose sectors are all
 * present in this file -- the block is fully present, or partially present
 * with every bit of the range set in a bitmap sector already in memory -- and
 * reads of a block that holds no data (zeroes, or nothing for the parent),
 * finished inline. Everything else goes back to the caller (vhdx.c runs the
 * blocking io() on the worker pool): allocating writes, bitmap updates, the
 * first write of an open (DataWriteGuid), requests across blocks, a read-only
 * open that replayed its log in memory, bitmap sectors not yet read.
 *
 * Why the unlocked map is safe (vhdx.c, top comment): an allocating write
 * puts the data in place before it publishes the BAT entry (release) or the
 * bitmap bits (under the lock), so a map that sees a block present reads its
 * data; one that sees it absent reads as if before the write. Present never
 * becomes absent except through unmap, whose space is not reused in this
 * open, so a read or write racing an unmap of the same block is at worst
 * stale or lost, never misplaced. The log only rewrites BAT, bitmap and
 * metadata sectors, which never overlap a payload block, and a flush's
 * fdatasync (any description of the file) covers every write finished before
 * it. The bitmap is read under a trylock only: the queue's thread never waits
 * for an allocation or a log flush. */
#include "vhdx.h"

#include "vhdfmt/aio.h"

#include <errno.h>
#include <unistd.h>

const char *vhdx_aio_describe(const struct vhdx *v)
{
	return v->img.ioe ? ioe_file_describe(v->img.ioe) : "worker pool";
}

int vhdx_flush(struct vhdx *v)
{
	int ret = 0;

	pthread_mutex_lock(&v->lock);
	if (v->nkeys)
		ret = vhdx_log_commit(v);
	else if (fdatasync(v->img.fd) < 0)
		ret = -errno;
	pthread_mutex_unlock(&v->lock);
	return ret;
}

static void vhdx_pool_job(void *arg)
{
	struct vhdx_rq *r = arg;
	int rc;

	/* As the core runs io(): an errno left in req->detail is the detail. */
	r->req->detail = 0;
	rc = r->pool_fn(r->v, r->req);
	dc_complete_detail(r->req, rc, r->req->detail);
}

/* Finish req on the worker pool with fn: the blocking path. */
void vhdx_aio_to_pool(struct vhdx_rq *r, int (*fn)(void *inst, struct dc_req *req))
{
	r->pool_fn = fn;
	if (dc_pool_run(vhdx_pool_job, r) != 0)
		dc_complete(r->req, DC_E_IO);
}

/* A FUA write's data is durable (RWF_DSYNC); metadata that made its block
 * present may still wait for the log, as on the blocking path. */
static int vhdx_fua_flush(void *inst, struct dc_req *req)
{
	return vhdfmt_result(req, vhdx_flush(inst));
}

static void vhdx_aio_done(struct ioe_req *io, int res)
{
	struct vhdx_rq *r = (struct vhdx_rq *)io;

	if (res == IOE_EOF) {
		/* A block that ends past the file (reads as zeroes there): the
		 * blocking path does the whole request again. */
		vhdx_aio_to_pool(r, r->retry_fn);
		return;
	}
	if (res == 0 && io->fua && __atomic_load_n(&r->v->nkeys, __ATOMIC_RELAXED)) {
		vhdx_aio_to_pool(r, vhdx_fua_flush);
		return;
	}
	vhdfmt_complete(r->req, res);
}

/* Every sector of [s, s + n) has its bit set in a cached bitmap sector. */
static bool vhdx_bits_cached(struct vhdx *v, uint64_t s, uint32_t n)
{
	for (uint64_t k = s; k < s + n; k++) {
		struct vhdx_sbc *sbc = v->sbc[k >> 23];
		const uint8_t *sec;
		uint32_t bit = (uint32_t)k & 32767;

		sec = sbc ? sbc->sec[(k & (VHDX_CHUNK_SECTORS - 1)) >> 15] : NULL;
		if (!sec)
			return false;
		/* Whole bytes at once where the range allows. */
		if (!(bit & 7) && s + n - k >= 8 && sec[bit >> 3] == 0xff) {
			k += 7;
			continue;
		}
		if (!(sec[bit >> 3] & (1u << (bit & 7))))
			return false;
	}
	return true;
}

/* Partially present block pi, whose entry was e: are sectors [s, s + n) all
 * here? Only when the lock is free and their bitmap sectors are in memory.
 * The entry must still be e: an unmap and a new allocation meanwhile would
 * pair the new bits with the old place. */
static bool vhdx_partial_here(struct vhdx *v, uint64_t pi, uint64_t e, uint64_t s,
			      uint32_t n)
{
	bool here;

	if (pthread_mutex_trylock(&v->lock) != 0)
		return false;
	here = v->bat[pi] == e && vhdx_bits_cached(v, s, n);
	pthread_mutex_unlock(&v->lock);
	return here;
}

/* A read of a block with no data here: zeroes, or (a differencing image's
 * absent block, under a layer read) nothing, for the parent. */
static void vhdx_read_none(struct vhdx *v, struct dc_req *req, unsigned st)
{
	if (!(st == VHDX_PB_NOT_PRESENT && v->diff && req->marker)) {
		dc_buf_zero(&req->buf, 0, req->buf.len);
		if (req->marker)
			dc_marker_set(req->marker, req->sector, req->count);
	}
	dc_complete(req, 0);
}

bool vhdx_aio_submit(struct vhdx *v, struct vhdx_rq *r)
{
	struct dc_req *req = r->req;
	bool write = req->op == DC_OP_WRITE;
	uint64_t count = req->buf.len >> v->ss_shift, b = req->sector >> v->spb_shift, e;
	uint32_t o = (uint32_t)(req->sector & (v->spb - 1));
	unsigned st;

	if (!req->qctx || v->novl || count == 0 || o + count > v->spb ||
	    req->buf.len & (v->lss - 1))
		return false;
	if (write && (v->ro || req->flags & DC_IO_NO_OVERWRITE ||
		      !__atomic_load_n(&v->data_changed, __ATOMIC_ACQUIRE)))
		return false;
	e = vhdx_bat_get(v, vhdx_pidx(v, b));
	st = VHDX_BAT_STATE(e);
	if (st == VHDX_PB_PARTIAL &&
	    !vhdx_partial_here(v, vhdx_pidx(v, b), e, req->sector, (uint32_t)count))
		return false;
	if (st != VHDX_PB_FULL && st != VHDX_PB_PARTIAL) {
		if (write)
			return false;
		vhdx_read_none(v, req, st);
		return true;
	}
	if (!write && req->marker)
		dc_marker_set(req->marker, req->sector, count);
	r->io = (struct ioe_req){
		.op = write ? IOE_WRITE : IOE_READ,
		.fua = write && (req->flags & DC_IO_FUA),
		.off = VHDX_BAT_OFF(e) + ((uint64_t)o << v->ss_shift),
		.buf = req->buf,
		.done = vhdx_aio_done,
	};
	ioe_submit(req->qctx, &r->io);
	return true;
}

int vhdx_queue_open(void *inst, void **qctx)
{
	return ioe_plugin_queue_open(((struct vhdx *)inst)->img.ioe, qctx);
}
