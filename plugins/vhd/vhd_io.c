/* SPDX-License-Identifier: MIT */
/* vhd_io: reads and writes, sector bitmaps, block allocation, flush, and the
 * footer's move back at close, in the crash-safe order vhd.h describes. */
#include "vhd.h"

#include "bitmap/bitmap.h"
#include "endian/byteorder.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- Bitmaps ---------------------------------------------------------------------- */

uint8_t vhd_bm_full_marker;

static bool vhd_bit(const uint8_t *bm, uint32_t i)
{
	return bm == VHD_BM_FULL || (bm[i >> 3] & (0x80u >> (i & 7)));
}

static bool vhd_bm_all(const struct vhd_img *v, const uint8_t *bm)
{
	uint32_t full = v->m.spb / 8;

	for (uint32_t i = 0; i < full; i++)
		if (bm[i] != 0xff)
			return false;
	for (uint32_t i = full * 8; i < v->m.spb; i++)
		if (!vhd_bit(bm, i))
			return false;
	return true;
}

/* The bitmap of allocated block b (lock held), loaded on first use. */
static int vhd_bm_get(struct vhd_img *v, uint32_t b, uint8_t **out)
{
	uint8_t *bm = v->bm[b];
	int ret;

	if (!bm) {
		bm = malloc(v->m.bitmap_bytes);
		if (!bm)
			return -ENOMEM;
		ret = vhdfmt_pread(v->img.fd, bm, v->m.bitmap_bytes,
				   vhd_block_off(v->bat[b]));
		if (ret < 0) {
			free(bm);
			return ret;
		}
		if (vhd_bm_all(v, bm)) {
			free(bm);
			bm = VHD_BM_FULL;
		}
		__atomic_store_n(&v->bm[b], bm, __ATOMIC_RELEASE);
	}
	*out = bm;
	return 0;
}

/* Set bits [o, o+n) of block b (lock held); queue the bitmap for the next flush. */
static int vhd_bm_set(struct vhd_img *v, uint32_t b, uint32_t o, uint32_t n)
{
	uint8_t *bm = v->bm[b];

	if (bm == VHD_BM_FULL)
		return 0;
	for (uint32_t i = o; i < o + n; i++)
		bm[i >> 3] |= (uint8_t)(0x80u >> (i & 7));
	if (!(v->dirty_bits[b / 64] & (1ull << (b % 64)))) {
		if (v->ndirty == v->dirty_cap) {
			uint32_t cap = v->dirty_cap ? v->dirty_cap * 2 : 64;
			uint32_t *d = realloc(v->dirty, cap * sizeof(*d));

			if (!d)
				return -ENOMEM;
			v->dirty = d;
			v->dirty_cap = cap;
		}
		v->dirty[v->ndirty++] = b;
		v->dirty_bits[b / 64] |= 1ull << (b % 64);
	}
	if (vhd_bm_all(v, bm)) {
		/* The on-disk copy is written from VHD_BM_FULL as all ones. */
		__atomic_store_n(&v->bm[b], VHD_BM_FULL, __ATOMIC_RELEASE);
		free(bm);
	}
	return 0;
}

/* Write sector `sec` of the BAT from memory. */
static int vhd_write_bat_sector(struct vhd_img *v, uint64_t sec)
{
	uint8_t buf[VHD_SECTOR];

	for (uint32_t i = 0; i < VHD_SECTOR / 4; i++)
		put_be32(buf + 4 * i, v->bat[sec * (VHD_SECTOR / 4) + i]);
	return vhdfmt_pwrite(v->img.fd, buf, sizeof(buf),
			     v->m.bat_off + sec * VHD_SECTOR);
}

/* Write the queued bitmaps and BAT sectors (lock held), after the data they
 * point at is durable. What fails to be written stays queued. */
static int vhd_write_queued(struct vhd_img *v)
{
	uint64_t nsec = v->m.bat_bytes / VHD_SECTOR;
	uint8_t *ones = NULL;
	uint32_t k = 0;
	int ret = 0;

	if (v->ndirty || v->nbat_dirty) {
		if (fdatasync(v->img.fd) < 0)
			return -errno;
		for (uint32_t i = 0; i < v->ndirty; i++) {
			uint32_t b = v->dirty[i];
			const uint8_t *bm = v->bm[b];

			if (ret == 0 && bm == VHD_BM_FULL) {
				if (!ones && !(ones = malloc(v->m.bitmap_bytes)))
					ret = -ENOMEM;
				else
					memset(ones, 0xff, v->m.bitmap_bytes);
				bm = ones;
			}
			if (ret == 0)
				ret = vhdfmt_pwrite(v->img.fd, bm, v->m.bitmap_bytes,
						    vhd_block_off(v->bat[b]));
			if (ret == 0)
				v->dirty_bits[b / 64] &= ~(1ull << (b % 64));
			else
				v->dirty[k++] = b;
		}
		v->ndirty = k;
		free(ones);
		for (uint64_t sec = 0; sec < nsec && v->nbat_dirty; sec++) {
			if (!(v->bat_dirty[sec / 64] & (1ull << (sec % 64))))
				continue;
			if (ret == 0)
				ret = vhd_write_bat_sector(v, sec);
			if (ret == 0) {
				v->bat_dirty[sec / 64] &= ~(1ull << (sec % 64));
				v->nbat_dirty--;
			}
		}
	}
	return ret;
}

/* Flush (lock held): the data, then the metadata pointing at it, durable. */
static int vhd_sync_locked(struct vhd_img *v)
{
	int ret = vhd_write_queued(v);

	if (ret == 0 && fdatasync(v->img.fd) < 0)
		ret = -errno;
	return ret;
}

static int vhd_sync(struct vhd_img *v)
{
	int ret;

	pthread_mutex_lock(&v->lock);
	ret = vhd_sync_locked(v);
	pthread_mutex_unlock(&v->lock);
	return ret;
}

/* --- Allocation ------------------------------------------------------------------- */

/* Zero [off, off+len) where it overlaps [0, limit). */
static int vhd_zero_below(struct vhd_img *v, uint64_t off, uint64_t len, uint64_t limit)
{
	if (off >= limit)
		return 0;
	return vhdfmt_zero(v->img.fd, off, off + len < limit ? len : limit - off);
}

/* Allocate block b holding the request's sectors [o, o+n) (lock held); see the
 * order at the top of this file. */
static int vhd_alloc(struct vhd_img *v, uint32_t b, uint32_t o, uint32_t n,
		     const struct dc_buf *data)
{
	uint64_t bmb = v->m.bitmap_bytes, tsize = bmb + v->m.block_size;
	uint64_t start = vhdfmt_round_up(v->data_end + bmb, VHD_DATA_ALIGN) - bmb;
	uint64_t end = start + tsize, sec;
	uint8_t *bm;
	int ret = 0;

	if (start / VHD_SECTOR >= VHD_UNALLOC) {
		dc_debug("%s: no room for block %u: VHD block offsets are 32-bit sectors",
			 v->img.path, b);
		return -ENOSPC;
	}
	bm = malloc(bmb);
	if (!bm)
		return -ENOMEM;
	if (end > v->footer_off) {
		/* Room for this block and a few more (fewer syncs); the old
		 * footer, if inside the new block, is zeroed below. */
		uint64_t old = v->footer_off, room = tsize * 8;
		uint64_t nf;

		if (room > (64u << 20))
			room = tsize > (64u << 20) ? tsize : (64u << 20);
		nf = vhdfmt_round_up(start + room, VHD_SECTOR);
		ret = vhdfmt_pwrite(v->img.fd, v->m.footer_raw, VHD_FOOTER_SIZE, nf);
		if (ret == 0 && fdatasync(v->img.fd) < 0)
			ret = -errno;
		if (ret < 0)
			goto fail;
		v->footer_off = nf;
		if (old >= v->junk_end && old + VHD_FOOTER_SIZE > start + bmb &&
		    old < end)
			ret = vhdfmt_zero(v->img.fd, old, VHD_FOOTER_SIZE);
	}
	/* Space that held something before (blocks whose BAT update a crash
	 * lost, footers) must read as zero in the new block. */
	if (ret == 0)
		ret = vhd_zero_below(v, start + bmb, tsize - bmb, v->junk_end);
	if (ret < 0)
		goto fail;
	memset(bm, v->diff ? 0 : 0xff, bmb);
	if (v->diff)
		for (uint32_t i = o; i < o + n; i++)
			bm[i >> 3] |= (uint8_t)(0x80u >> (i & 7));
	ret = vhdfmt_pwrite(v->img.fd, bm, bmb, start);
	if (ret == 0)
		ret = vhdfmt_xfer(v->img.fd, data, start + bmb + (uint64_t)o * VHD_SECTOR,
				  true, 0);
	if (ret < 0)
		goto fail;
	__atomic_store_n(&v->bat[b], (uint32_t)(start / VHD_SECTOR), __ATOMIC_RELEASE);
	sec = (uint64_t)b * 4 / VHD_SECTOR;
	if (!(v->bat_dirty[sec / 64] & (1ull << (sec % 64)))) {
		v->bat_dirty[sec / 64] |= 1ull << (sec % 64);
		v->nbat_dirty++;
	}
	v->data_end = end;
	if (!v->diff || vhd_bm_all(v, bm)) {
		free(bm);
		bm = VHD_BM_FULL;
	}
	__atomic_store_n(&v->bm[b], bm, __ATOMIC_RELEASE);
	return 0;
fail:
	free(bm);
	return ret;
}

/* --- I/O --------------------------------------------------------------------------- */

static bool vhd_range(const struct vhd_img *v, uint64_t sector, uint64_t count)
{
	uint64_t n = __atomic_load_n(&v->m.f.current_size, __ATOMIC_ACQUIRE) / VHD_SECTOR;

	return sector <= n && count <= n - sector;
}

static void vhd_mark(struct dc_req *req, uint64_t sector, uint64_t count)
{
	if (req->marker && count)
		dc_marker_set(req->marker, sector, count);
}

/* Read block b's sectors [o, o+n) into sub (a differencing image: only the
 * present ones, marking them). */
static int vhd_read_block(struct vhd_img *v, struct dc_req *req, uint64_t sector,
			  uint32_t b, uint32_t o, uint32_t n, const struct dc_buf *sub)
{
	uint32_t e = vhd_bat_get(v, b);
	uint64_t base, bits[64]; /* the bits of 4096 sectors at a time */
	uint8_t *bm;
	int ret;

	if (e == VHD_UNALLOC) {
		if (v->diff && req->marker)
			return 0;
		dc_buf_zero(sub, 0, sub->len);
		vhd_mark(req, sector, n);
		return 0;
	}
	base = vhd_block_off(e) + v->m.bitmap_bytes + (uint64_t)o * VHD_SECTOR;
	bm = __atomic_load_n(&v->bm[b], __ATOMIC_ACQUIRE);
	if (!v->diff || bm == VHD_BM_FULL) {
		/* A plain dynamic image's data is what counts, as in other readers. */
		ret = vhdfmt_xfer(v->img.fd, sub, base, false, 0);
		if (ret == 0)
			vhd_mark(req, sector, n);
		return ret;
	}
	for (uint32_t done = 0; done < n;) {
		uint32_t chunk = n - done < 64 * 64 ? n - done : 64 * 64;

		/* Copy the bits under the lock, read the data without it. */
		pthread_mutex_lock(&v->lock);
		ret = vhd_bm_get(v, b, &bm);
		if (ret == 0) {
			memset(bits, 0, sizeof(bits));
			for (uint32_t k = 0; k < chunk; k++)
				if (vhd_bit(bm, o + done + k))
					bits[k >> 6] |= UINT64_C(1) << (k & 63);
		}
		pthread_mutex_unlock(&v->lock);
		if (ret < 0)
			return ret;
		for (uint32_t i = 0, j; i < chunk; i = j) {
			bool set = bitmap_test(bits, i);
			size_t at = (size_t)(done + i) * VHD_SECTOR;
			struct dc_buf part;

			j = (uint32_t)bitmap_find(bits, i, chunk, !set);
			if (!set) {
				if (!req->marker)
					dc_buf_zero(sub, at,
						    (size_t)(j - i) * VHD_SECTOR);
				continue;
			}
			part = dc_buf_sub(sub, at, (size_t)(j - i) * VHD_SECTOR);
			ret = vhdfmt_xfer(v->img.fd, &part, base + at, false, 0);
			if (ret < 0)
				return ret;
			vhd_mark(req, sector + done + i, j - i);
		}
		done += chunk;
	}
	return 0;
}

/* Write sub to block b's sectors [o, o+n). */
static int vhd_write_block(struct vhd_img *v, uint32_t b, uint32_t o, uint32_t n,
			   const struct dc_buf *sub, bool no_overwrite)
{
	uint32_t e = vhd_bat_get(v, b);
	uint64_t base;
	uint8_t *bm;
	int ret = 0;

	if (e == VHD_UNALLOC) {
		pthread_mutex_lock(&v->lock);
		if (v->bat[b] == VHD_UNALLOC) {
			ret = vhd_alloc(v, b, o, n, sub);
			pthread_mutex_unlock(&v->lock);
			return ret;
		}
		e = v->bat[b];
		pthread_mutex_unlock(&v->lock);
	}
	base = vhd_block_off(e) + v->m.bitmap_bytes + (uint64_t)o * VHD_SECTOR;
	bm = __atomic_load_n(&v->bm[b], __ATOMIC_ACQUIRE);
	if (bm == VHD_BM_FULL)
		return no_overwrite ? 0 : vhdfmt_xfer(v->img.fd, sub, base, true, 0);

	pthread_mutex_lock(&v->lock);
	ret = vhd_bm_get(v, b, &bm);
	if (ret == 0 && !no_overwrite) {
		bool all = true;

		for (uint32_t i = o; i < o + n && all; i++)
			all = vhd_bit(bm, i);
		if (all) {
			/* Bits never clear again: no lock needed for the data. */
			pthread_mutex_unlock(&v->lock);
			return vhdfmt_xfer(v->img.fd, sub, base, true, 0);
		}
		/* Data before bits; under the lock so that a no-overwrite write
		 * cannot slip stale data in between. */
		ret = vhdfmt_xfer(v->img.fd, sub, base, true, 0);
		if (ret == 0)
			ret = vhd_bm_set(v, b, o, n);
	}
	for (uint32_t i = 0; ret == 0 && no_overwrite && i < n;) {
		uint32_t j;
		struct dc_buf part;

		if (vhd_bit(bm, o + i)) {
			i++;
			continue;
		}
		for (j = i + 1; j < n && !vhd_bit(bm, o + j); j++)
			;
		part = dc_buf_sub(sub, (size_t)i * VHD_SECTOR,
				  (size_t)(j - i) * VHD_SECTOR);
		ret = vhdfmt_xfer(v->img.fd, &part, base + (uint64_t)i * VHD_SECTOR, true,
				  0);
		if (ret == 0)
			ret = vhd_bm_set(v, b, o + i, j - i);
		bm = v->bm[b];
		i = j;
	}
	pthread_mutex_unlock(&v->lock);
	return ret;
}

static int vhd_rw(struct vhd_img *v, struct dc_req *req)
{
	bool write = req->op == DC_OP_WRITE;
	uint64_t count, sector = req->sector, done = 0;
	int ret = 0;

	if (write && v->read_only)
		return DC_E_READ_ONLY;
	if (req->buf.len % VHD_SECTOR)
		return DC_E_INVALID_INPUT;
	count = req->buf.len / VHD_SECTOR;
	if (!vhd_range(v, sector, count))
		return DC_E_ILLEGAL_BLOCK;
	if (count == 0)
		return 0;
	if (v->fixed) {
		ret = vhdfmt_xfer(v->img.fd, &req->buf, sector * VHD_SECTOR, write,
				  write && (req->flags & DC_IO_FUA) ? RWF_DSYNC : 0);
		if (ret == 0 && !write)
			vhd_mark(req, sector, count);
		return vhdfmt_result(req, ret);
	}
	while (done < count && ret == 0) {
		uint64_t s = sector + done;
		uint32_t b = (uint32_t)(s >> v->m.spb_shift);
		uint32_t o = (uint32_t)(s & (v->m.spb - 1));
		uint32_t n = v->m.spb - o;
		struct dc_buf sub;

		if (n > count - done)
			n = (uint32_t)(count - done);
		sub = dc_buf_sub(&req->buf, done * VHD_SECTOR, (size_t)n * VHD_SECTOR);
		if (write)
			ret = vhd_write_block(v, b, o, n, &sub,
					      req->flags & DC_IO_NO_OVERWRITE);
		else
			ret = vhd_read_block(v, req, s, b, o, n, &sub);
		done += n;
	}
	if (ret == 0 && write && (req->flags & DC_IO_FUA))
		ret = vhd_sync(v);
	return vhdfmt_result(req, ret);
}

int vhd_io(void *inst, struct dc_req *req)
{
	struct vhd_img *v = inst;

	switch (req->op) {
	case DC_OP_READ:
	case DC_OP_WRITE:
		return vhd_rw(v, req);
	case DC_OP_FLUSH:
		if (v->read_only)
			return 0;
		if (v->fixed)
			return vhdfmt_result(req, fdatasync(v->img.fd) < 0 ? -errno : 0);
		return vhdfmt_result(req, vhd_sync(v));
	case DC_OP_UNMAP:
		if (v->read_only)
			return DC_E_READ_ONLY;
		if (!vhd_range(v, req->sector, req->count))
			return DC_E_ILLEGAL_BLOCK;
		return 0; /* ignored: blocks are never freed */
	default:
		return DC_E_UNSUPPORTED;
	}
}

/* Close: make queued metadata durable, then move the footer back to the end of
 * the data (written there first, so the file always ends in a footer). */
void vhd_trim(struct vhd_img *v)
{
	uint64_t at = vhdfmt_round_up(v->data_end, VHD_SECTOR);
	bool move = at < v->footer_off;

	if (!v->ndirty && !v->nbat_dirty && !move)
		return;
	/* One sync makes the metadata and the footer's new copy durable. */
	if (vhd_write_queued(v) < 0)
		return;
	if (move && vhdfmt_pwrite(v->img.fd, v->m.footer_raw, VHD_FOOTER_SIZE, at) < 0)
		move = false;
	if (fdatasync(v->img.fd) == 0 && move &&
	    ftruncate(v->img.fd, (off_t)(at + VHD_FOOTER_SIZE)) == 0)
		v->footer_off = at;
}

/* --- Allocation map ----------------------------------------------------------------- */

/* The flags and length (at most n) of the run at sector o of block b. An
 * unallocated block reads as zero, or from the parent of a differencing
 * image; in an allocated one a plain image's data counts whatever the bitmap
 * says (vhd_read_block), a differencing image's bits decide. */
static int vhd_block_run(void *ctx, uint64_t b, uint32_t o, uint32_t n, uint32_t *len)
{
	struct vhd_img *v = ctx;
	uint32_t e = vhd_bat_get(v, (uint32_t)b);
	bool set = false;
	uint8_t *bm;
	int ret;

	if (e == VHD_UNALLOC)
		return v->diff ? DC_EXTENT_ABSENT : DC_EXTENT_HOLE | DC_EXTENT_ZERO;
	if (!v->diff || __atomic_load_n(&v->bm[b], __ATOMIC_ACQUIRE) == VHD_BM_FULL)
		return 0;
	pthread_mutex_lock(&v->lock);
	ret = vhd_bm_get(v, (uint32_t)b, &bm);
	if (ret == 0) {
		set = vhd_bit(bm, o);
		for (*len = 1; *len < n && vhd_bit(bm, o + *len) == set; (*len)++)
			;
	}
	pthread_mutex_unlock(&v->lock);
	if (ret < 0)
		return dc_fail(ret, "%s: cannot read the bitmap of block %llu: %s",
			       v->img.path, (unsigned long long)b, strerror(-ret));
	return set ? 0 : DC_EXTENT_ABSENT;
}

int vhd_extents(void *inst, struct dc_node *node, uint64_t sector, uint64_t count,
		uint64_t *run)
{
	struct vhd_img *v = inst;

	(void)node;
	if (v->fixed) {
		*run = count;
		return 0;
	}
	return vhdfmt_extents(v, v->m.spb_shift, sector, count, vhd_block_run, run);
}
