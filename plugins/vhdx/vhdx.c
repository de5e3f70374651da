/* SPDX-License-Identifier: MIT */
/* vhdx: fixed, dynamic and differencing VHDX images ([MS-VHDX]) as a layer of the
 * core's layered disk, read-write.
 *
 * Layout: the file identifier, two headers (the current one is the valid one
 * with the larger sequence number; CRC-32C), two region tables naming the BAT
 * and metadata regions, the log named by the header, then 1 MiB-aligned payload
 * blocks and (differencing images) 1 MiB sector bitmap blocks, one per chunk of
 * 2^23 sectors, whose BAT entry follows the chunk's payload entries.
 *
 * Reads: a fixed or dynamic image marks every sector; blocks that are not
 * present, zero, unmapped or undefined read as zeroes. A differencing image
 * marks fully present blocks, the sectors of partially present blocks whose
 * bitmap bit is set, and zero/unmapped/undefined blocks (as zeroes: their
 * content is defined here, not in the parent); the rest falls through to the
 * parent, which lower_spec() names so that the core opens it read-only below.
 *
 * Metadata goes through the log, as [MS-VHDX] 2.3 requires:
 *   - A write to an unallocated block (lock held) takes new space at the end
 *     of the file (extended with ftruncate, so it reads as zeroes), writes the
 *     data there, and only then changes the BAT entry in memory. Bitmap bits
 *     are set in memory after their data is written. The 4 KiB BAT and bitmap
 *     sectors that changed are queued.
 *   - Flush (and FUA, and close): fdatasync, so that all data and new space is
 *     durable; then per log entry (at most a quarter of the log, so it never
 *     overwrites the entry before it): write the entry, fdatasync, write its
 *     sectors in place, fdatasync. Each entry's tail is itself, because the
 *     ones before are already applied. The header gets this open's LogGuid
 *     only after the first entry is durable (so a header never names a log
 *     without a valid entry), and LogGuid is cleared again on close.
 *   - Headers are never logged: the non-current one is rewritten with the next
 *     sequence number and flushed, twice. The first change of an open renews
 *     FileWriteGuid, the first user-visible one DataWriteGuid.
 * After a crash every flushed write reads back (an unflushed one may or may
 * not), and space taken by unflushed allocations is unreferenced at the end of
 * the file (trimmed by the next writable open). Opening replays a log whose
 * header names it: writable opens replay into the file, read-only opens replay
 * in memory over every read. Freed space is never reused within one open, so a
 * write racing an unmap of the same block can only be lost, never misplaced.
 *
 * I/O: submit() hands reads and writes of sectors already present in this file
 * to the file engine from the queue's thread (vhdx_aio.c says why that is safe
 * beside the rest); everything else runs the blocking io() below on the pool.
 *
 * Unmap: a whole block goes to PAYLOAD_BLOCK_ZERO (reads zero in every reader;
 * a differencing image whose parent reads zero there frees it to NOT_PRESENT);
 * a partial block is zeroed in place (hole punched), or for an absent block of
 * a differencing image allocated as zeroes. Unmapped sectors read as zero.
 * Fixed images (LeaveBlockAllocated) ignore unmap. Images are locked (flock).
 */
#include "vhdx.h"

#include "bitmap/bitmap.h"
#include "vhdfmt/open.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- BAT ------------------------------------------------------------------------- */

/* Sectors in block b (the last one may be short). */
static uint32_t vhdx_block_secs(const struct vhdx *v, uint64_t b)
{
	uint64_t left = (v->disk_size >> v->ss_shift) - (b << v->spb_shift);

	return left < v->spb ? (uint32_t)left : v->spb;
}

struct vhdx_span {
	uint64_t off, len;
	int64_t what; /* BAT index, or one of the negative names below */
};

static const char *const vhdx_span_names[] = { "",
					       "the header section",
					       "the log",
					       "the BAT region",
					       "the metadata region",
					       "a region" };

static int vhdx_span_cmp(const void *a, const void *b)
{
	const struct vhdx_span *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

static void vhdx_span_what(const struct vhdx_span *s, char *buf, size_t len)
{
	if (s->what < 0)
		snprintf(buf, len, "%s", vhdx_span_names[-s->what]);
	else
		snprintf(buf, len, "the block of BAT entry %lld", (long long)s->what);
}

/* Every allocated block inside the file, on 1 MiB, overlapping nothing. */
static int vhdx_check_spans(struct vhdx *v, struct vhdx_span *sp, size_t n)
{
	char a[64], b[64];

	sp[n++] = (struct vhdx_span){ 0, VHDX_MB, -1 };
	if (v->hdr.log_len)
		sp[n++] = (struct vhdx_span){ v->hdr.log_off, v->hdr.log_len, -2 };
	sp[n++] = (struct vhdx_span){ v->bat_off, v->bat_len, -3 };
	sp[n++] = (struct vhdx_span){ v->meta_off, v->meta_len, -4 };
	for (uint32_t i = 0; i < v->nxreg; i++)
		sp[n++] = (struct vhdx_span){ v->xreg[2 * i], v->xreg[2 * i + 1], -5 };
	qsort(sp, n, sizeof(*sp), vhdx_span_cmp);
	for (size_t i = 0; i < n; i++) {
		if (sp[i].off > v->file_size || sp[i].len > v->file_size - sp[i].off) {
			vhdx_span_what(&sp[i], a, sizeof(a));
			vhdfmt_err(
				"%s: %s at offset %llu (+%llu) lies past the end of the "
				"file (%llu bytes)",
				v->img.path, a, (unsigned long long)sp[i].off,
				(unsigned long long)sp[i].len,
				(unsigned long long)v->file_size);
			return -EINVAL;
		}
		if (i && sp[i - 1].off + sp[i - 1].len > sp[i].off) {
			vhdx_span_what(&sp[i - 1], a, sizeof(a));
			vhdx_span_what(&sp[i], b, sizeof(b));
			vhdfmt_err("%s: %s overlaps %s (at offset %llu)", v->img.path, a,
				   b, (unsigned long long)sp[i].off);
			return -EINVAL;
		}
		if (sp[i].off + sp[i].len > v->file_end)
			v->file_end = sp[i].off + sp[i].len;
	}
	return 0;
}

/* The state of BAT entry i (sb: a sector bitmap entry) is one this image may
 * hold. */
static int vhdx_check_entry(const struct vhdx *v, uint64_t i, bool sb, unsigned st)
{
	uint64_t cr1 = (uint64_t)v->chunk_ratio + 1;
	bool bad;

	/* A reserved payload state (4, 5) is refused in every image, so that a
	 * state this plugin does not know is never read as one it does. QEMU's
	 * block/vhdx.c instead reads 5 as zeroes (it defines it as
	 * PAYLOAD_BLOCK_UNMAPPED_v095, from the 0.95 draft) and fails only the
	 * I/O that meets a 4; neither is checked at its open. */
	if (!sb && (st == 4 || st == 5)) {
		vhdfmt_err("%s: BAT entry %llu (payload block %llu) has state %u, which "
			   "[MS-VHDX] reserves (payload states are 0-3, 6 and 7)",
			   v->img.path, (unsigned long long)i,
			   (unsigned long long)(i - i / cr1), st);
		return -EINVAL;
	}
	if (sb && !v->diff)
		return 0; /* unused in fixed and dynamic images */
	bad = sb ? st != 0 && st != VHDX_SB_PRESENT : st == VHDX_PB_PARTIAL && !v->diff;
	if (!bad && st == VHDX_PB_PARTIAL)
		bad = VHDX_BAT_STATE(v->bat[i / cr1 * cr1 + v->chunk_ratio]) !=
		      VHDX_SB_PRESENT;
	if (bad) {
		vhdfmt_err("%s: BAT entry %llu has state %u, which is invalid for a %s "
			   "entry of a%s image%s",
			   v->img.path, (unsigned long long)i, st,
			   sb ? "sector bitmap" : "payload",
			   v->diff ? " differencing" : " non-differencing",
			   st == VHDX_PB_PARTIAL ? " (or its chunk has no bitmap)" : "");
		return -EINVAL;
	}
	return 0;
}

/* The bytes the block of BAT entry i occupies. The last payload block holds
 * only what is left of the disk, and a file may end with the disk (qemu-img's
 * fixed images whose size is not a multiple of the block size; reads past the
 * file are zeroes anyway). */
static uint64_t vhdx_entry_len(const struct vhdx *v, uint64_t i, bool sb)
{
	uint64_t cr1 = (uint64_t)v->chunk_ratio + 1, start;

	if (sb)
		return VHDX_MB;
	start = (i - i / cr1) * v->block_size;
	if (start < v->disk_size && v->disk_size - start < v->block_size)
		return vhdfmt_round_up(v->disk_size - start, (uint64_t)1 << v->ss_shift);
	return v->block_size;
}

static int vhdx_load_bat(struct vhdx *v)
{
	uint64_t cr1 = (uint64_t)v->chunk_ratio + 1;
	struct vhdx_span *sp = NULL;
	uint8_t *raw = malloc(v->nbat_mem * 8);
	size_t nsp = 0;
	int ret = -ENOMEM;

	v->bat = malloc(v->nbat_mem * sizeof(*v->bat));
	v->bat_dirty = calloc(v->nbat_mem / 512 / 8 + 1, 1);
	/* Chunks for every entry kept (resize() may grow into them). */
	v->sbc =
		calloc(v->nbat_mem / ((uint64_t)v->chunk_ratio + 1) + 2, sizeof(*v->sbc));
	if (!raw || !v->bat || !v->bat_dirty || !v->sbc)
		goto out;
	ret = vhdx_pread(v, raw, v->nbat_mem * 8, v->bat_off);
	if (ret < 0) {
		vhdfmt_err("%s: cannot read the BAT: %s", v->img.path, strerror(-ret));
		goto out;
	}
	for (uint64_t i = 0; i < v->nbat_mem; i++)
		v->bat[i] = get_le64(raw + 8 * i);
	for (uint64_t i = 0; i < v->nbat; i++) {
		unsigned st = VHDX_BAT_STATE(v->bat[i]);
		bool sb = i % cr1 == v->chunk_ratio;

		ret = vhdx_check_entry(v, i, sb, st);
		if (ret)
			goto out;
		if ((sb && !v->diff) || (st != VHDX_PB_FULL && st != VHDX_PB_PARTIAL))
			continue;
		if (!sp && !(sp = malloc((v->nbat + 8 + v->nxreg) * sizeof(*sp)))) {
			ret = -ENOMEM;
			goto out;
		}
		sp[nsp++] = (struct vhdx_span){ VHDX_BAT_OFF(v->bat[i]),
						vhdx_entry_len(v, i, sb), (int64_t)i };
	}
	if (!sp && !(sp = malloc((8 + v->nxreg) * sizeof(*sp)))) {
		ret = -ENOMEM;
		goto out;
	}
	v->file_end = 0;
	ret = vhdx_check_spans(v, sp, nsp);
	v->file_end = vhdfmt_round_up(v->file_end, VHDX_MB);
out:
	if (ret == -ENOMEM)
		vhdfmt_err("%s: out of memory for a BAT of %llu entries", v->img.path,
			   (unsigned long long)v->nbat);
	free(sp);
	free(raw);
	return ret;
}

/* --- Allocation (lock held) ---------------------------------------------------------- */

static int vhdx_alloc_space(struct vhdx *v, uint64_t len, uint64_t *off)
{
	int ret = vhdx_fix_end(v);

	if (ret < 0)
		return ret;
	if (v->file_end + len > VHDX_MAX_FILE)
		return -ENOSPC;
	if (ftruncate(v->img.fd, (off_t)(v->file_end + len)) < 0)
		return -errno;
	*off = v->file_end;
	v->file_end += len;
	v->real_size = v->file_size = v->file_end;
	return 0;
}

/* Give block b (in state st) space holding sectors [o, o+n) from sub, or
 * zeroes (fresh space) when sub is NULL. */
static int vhdx_alloc_block(struct vhdx *v, uint64_t b, uint32_t o, uint32_t n,
			    const struct dc_buf *sub, int rwf, unsigned st)
{
	uint64_t c = b / v->chunk_ratio, s0 = b << v->spb_shift, off = 0, sb = 0;
	bool part = v->diff && st == VHDX_PB_NOT_PRESENT &&
		    !(o == 0 && n == vhdx_block_secs(v, b));
	int ret;

	if (part && VHDX_BAT_STATE(v->bat[vhdx_sbidx(v, c)]) != VHDX_SB_PRESENT) {
		/* Fresh space reads as zero, as did the chunk's absent bitmap. */
		ret = vhdx_alloc_space(v, VHDX_MB, &sb);
		if (ret < 0)
			return ret;
		vhdx_bat_set(v, vhdx_sbidx(v, c), sb | VHDX_SB_PRESENT);
	}
	ret = vhdx_alloc_space(v, v->block_size, &off);
	if (ret == 0 && sub)
		ret = vhdfmt_xfer(v->img.fd, sub, off + ((uint64_t)o << v->ss_shift),
				  true, rwf);
	/* Bits left over from an earlier life of the block must go. */
	if (ret == 0 && part)
		ret = vhdx_bits_put(v, s0, vhdx_block_secs(v, b), false);
	if (ret == 0 && part)
		ret = vhdx_bits_put(v, s0 + o, n, true);
	if (ret < 0)
		return ret;
	vhdx_bat_set(v, vhdx_pidx(v, b), off | (part ? VHDX_PB_PARTIAL : VHDX_PB_FULL));
	return 0;
}

/* --- I/O ----------------------------------------------------------------------------- */

static void vhdx_mark(struct dc_req *req, uint64_t sector, uint64_t count)
{
	if (req->marker && count)
		dc_marker_set(req->marker, sector, count);
}

/* Sectors of a partially present block: those with their bit set. */
static int vhdx_read_partial(struct vhdx *v, struct dc_req *req, uint64_t b, uint32_t o,
			     uint32_t n, const struct dc_buf *sub, bool *changed)
{
	uint64_t s0 = (b << v->spb_shift) + o, e;
	uint64_t bits[64]; /* the bits of 4096 sectors at a time */
	int ret = 0;

	for (uint32_t done = 0; done < n && ret == 0;) {
		uint32_t chunk = n - done < 4096 ? n - done : 4096;

		/* Copy the bits under the lock, read the data without it. */
		pthread_mutex_lock(&v->lock);
		e = v->bat[vhdx_pidx(v, b)];
		if (VHDX_BAT_STATE(e) == VHDX_PB_PARTIAL)
			ret = vhdx_bits_get(v, s0 + done, chunk, bits);
		pthread_mutex_unlock(&v->lock);
		if (VHDX_BAT_STATE(e) != VHDX_PB_PARTIAL) {
			*changed = true; /* unmapped meanwhile: start over */
			return 0;
		}
		for (uint32_t i = 0, j; i < chunk && ret == 0; i = j) {
			bool set = bitmap_test(bits, i);
			struct dc_buf part;

			j = (uint32_t)bitmap_find(bits, i, chunk, !set);
			part = dc_buf_sub(sub, (size_t)(done + i) << v->ss_shift,
					  (size_t)(j - i) << v->ss_shift);
			if (set) {
				ret = vhdx_read_buf(v, &part,
						    VHDX_BAT_OFF(e) +
							    ((uint64_t)(o + done + i)
							     << v->ss_shift));
				if (ret == 0)
					vhdx_mark(req, s0 + done + i, j - i);
			} else if (!req->marker) {
				dc_buf_zero(&part, 0, part.len);
			}
		}
		done += chunk;
	}
	return ret;
}

static int vhdx_read_block(struct vhdx *v, struct dc_req *req, uint64_t b, uint32_t o,
			   uint32_t n, const struct dc_buf *sub)
{
	uint64_t s0 = (b << v->spb_shift) + o;

	for (;;) {
		uint64_t e = vhdx_bat_get(v, vhdx_pidx(v, b));
		bool changed = false;
		int ret;

		switch (VHDX_BAT_STATE(e)) {
		case VHDX_PB_FULL:
			ret = vhdx_read_buf(
				v, sub, VHDX_BAT_OFF(e) + ((uint64_t)o << v->ss_shift));
			if (ret == 0)
				vhdx_mark(req, s0, n);
			return ret;
		case VHDX_PB_PARTIAL:
			ret = vhdx_read_partial(v, req, b, o, n, sub, &changed);
			if (ret || !changed)
				return ret;
			continue;
		case VHDX_PB_NOT_PRESENT:
			if (v->diff && req->marker)
				return 0; /* the parent's */
			break;
		default: /* zero, unmapped, undefined: zeroes */
			break;
		}
		dc_buf_zero(sub, 0, sub->len);
		vhdx_mark(req, s0, n);
		return 0;
	}
}

static int vhdx_write_block(struct vhdx *v, uint64_t b, uint32_t o, uint32_t n,
			    const struct dc_buf *sub, int rwf)
{
	uint64_t pi = vhdx_pidx(v, b), s0 = (b << v->spb_shift) + o;
	uint64_t e = vhdx_bat_get(v, pi);
	uint64_t bits[512]; /* the bits of 32768 sectors at a time */
	bool all = true;
	int ret;

	if (VHDX_BAT_STATE(e) == VHDX_PB_FULL)
		goto direct;
	pthread_mutex_lock(&v->lock);
	e = v->bat[pi];
	ret = vhdx_reserve(v);
	if (ret == 0 && VHDX_BAT_STATE(e) == VHDX_PB_PARTIAL) {
		for (uint32_t k = 0; k < n && all && ret == 0; k += 32768) {
			uint32_t m = n - k < 32768 ? n - k : 32768;

			ret = vhdx_bits_get(v, s0 + k, m, bits);
			all = ret == 0 && bitmap_find(bits, 0, m, false) == m;
		}
		if (ret == 0 && !all) {
			/* Data before bits; under the lock, so nothing else sets
			 * bits over data not yet written. */
			ret = vhdfmt_xfer(v->img.fd, sub,
					  VHDX_BAT_OFF(e) + ((uint64_t)o << v->ss_shift),
					  true, rwf);
			if (ret == 0)
				ret = vhdx_bits_put(v, s0, n, true);
		}
	} else if (ret == 0 && VHDX_BAT_STATE(e) != VHDX_PB_FULL) {
		all = false;
		ret = vhdx_alloc_block(v, b, o, n, sub, rwf, VHDX_BAT_STATE(e));
	}
	pthread_mutex_unlock(&v->lock);
	if (ret || !all)
		return ret;
direct:
	/* Present sectors never become absent while a write is possible,
	 * except through unmap, whose space is never reused. */
	return vhdfmt_xfer(v->img.fd, sub, VHDX_BAT_OFF(e) + ((uint64_t)o << v->ss_shift),
			   true, rwf);
}

static bool vhdx_range(const struct vhdx *v, uint64_t sector, uint64_t count)
{
	uint64_t n = __atomic_load_n(&v->disk_size, __ATOMIC_ACQUIRE) >> v->ss_shift;

	return sector <= n && count <= n - sector;
}

/* The first user-visible change of this open renews DataWriteGuid. */
static int vhdx_begin_change(struct vhdx *v)
{
	int ret;

	if (__atomic_load_n(&v->data_changed, __ATOMIC_ACQUIRE))
		return 0;
	pthread_mutex_lock(&v->lock);
	ret = vhdx_session(v, true);
	pthread_mutex_unlock(&v->lock);
	return ret;
}

static int vhdx_rw(struct vhdx *v, struct dc_req *req)
{
	bool write = req->op == DC_OP_WRITE;
	int rwf = write && (req->flags & DC_IO_FUA) ? RWF_DSYNC : 0;
	uint64_t count, done = 0;
	int ret = 0;

	if (write && v->ro)
		return DC_E_READ_ONLY;
	if (req->flags & DC_IO_NO_OVERWRITE)
		return DC_E_UNSUPPORTED; /* not a read cache */
	if (req->buf.len & (v->lss - 1))
		return DC_E_INVALID_INPUT;
	count = req->buf.len >> v->ss_shift;
	if (!vhdx_range(v, req->sector, count))
		return DC_E_ILLEGAL_BLOCK;
	if (count == 0)
		return 0;
	if (write && (ret = vhdx_begin_change(v)) < 0)
		return vhdfmt_result(req, ret);
	while (done < count && ret == 0) {
		uint64_t s = req->sector + done, b = s >> v->spb_shift;
		uint32_t o = (uint32_t)(s & (v->spb - 1)), n = v->spb - o;
		struct dc_buf sub;

		if (n > count - done)
			n = (uint32_t)(count - done);
		sub = dc_buf_sub(&req->buf, done << v->ss_shift,
				 (size_t)n << v->ss_shift);
		ret = write ? vhdx_write_block(v, b, o, n, &sub, rwf) :
			      vhdx_read_block(v, req, b, o, n, &sub);
		done += n;
	}
	if (ret == 0 && rwf && __atomic_load_n(&v->nkeys, __ATOMIC_RELAXED))
		ret = vhdx_flush(v);
	return vhdfmt_result(req, ret);
}

/* Unmap all of block b (lock held). */
static int vhdx_unmap_block(struct vhdx *v, uint64_t b, bool next_zero)
{
	uint64_t pi = vhdx_pidx(v, b), e = v->bat[pi];
	unsigned st = VHDX_BAT_STATE(e), to = VHDX_PB_ZERO;
	bool present = st == VHDX_PB_FULL || st == VHDX_PB_PARTIAL;

	if (v->diff && next_zero)
		to = VHDX_PB_NOT_PRESENT; /* the parent reads zero there */
	else if (!present && (!v->diff || st != VHDX_PB_NOT_PRESENT))
		return 0; /* reads as zero already */
	if (st == to)
		return 0;
	vhdx_bat_set(v, pi, to);
	/* The space is never reused in this open; give it back to the host. */
	if (present)
		vhdx_zero_file(v->img.fd, VHDX_BAT_OFF(e), v->block_size);
	return 0;
}

/* Unmap sectors [o, o+n) of block b, not all of it (lock held). */
static int vhdx_unmap_part(struct vhdx *v, uint64_t b, uint32_t o, uint32_t n,
			   bool next_zero)
{
	uint64_t e = v->bat[vhdx_pidx(v, b)];
	unsigned st = VHDX_BAT_STATE(e);
	int ret = 0;

	if (st == VHDX_PB_FULL || st == VHDX_PB_PARTIAL) {
		ret = vhdx_zero_file(v->img.fd,
				     VHDX_BAT_OFF(e) + ((uint64_t)o << v->ss_shift),
				     (uint64_t)n << v->ss_shift);
		/* Zeroes in this file, not the parent's data. */
		if (ret == 0 && st == VHDX_PB_PARTIAL && !next_zero)
			ret = vhdx_bits_put(v, (b << v->spb_shift) + o, n, true);
	} else if (st == VHDX_PB_NOT_PRESENT && v->diff && !next_zero) {
		ret = vhdx_alloc_block(v, b, o, n, NULL, 0, st);
	}
	return ret;
}

static int vhdx_unmap(struct vhdx *v, struct dc_req *req)
{
	bool next_zero = req->flags & DC_IO_NEXT_IS_ZERO;
	uint64_t done = 0;
	int ret;

	if (v->ro)
		return DC_E_READ_ONLY;
	if (!vhdx_range(v, req->sector, req->count))
		return DC_E_ILLEGAL_BLOCK;
	if (!req->count || (v->leave_alloc && !v->diff))
		return 0; /* fixed: blocks stay allocated */
	ret = vhdx_begin_change(v);
	while (ret == 0 && done < req->count) {
		uint64_t s = req->sector + done, b = s >> v->spb_shift;
		uint32_t o = (uint32_t)(s & (v->spb - 1)), n = v->spb - o;

		if (n > req->count - done)
			n = (uint32_t)(req->count - done);
		pthread_mutex_lock(&v->lock);
		ret = vhdx_reserve(v);
		if (ret == 0 && o == 0 && n == vhdx_block_secs(v, b))
			ret = vhdx_unmap_block(v, b, next_zero);
		else if (ret == 0)
			ret = vhdx_unmap_part(v, b, o, n, next_zero);
		pthread_mutex_unlock(&v->lock);
		done += n;
	}
	return vhdfmt_result(req, ret);
}

static int vhdx_io(void *inst, struct dc_req *req)
{
	struct vhdx *v = inst;

	switch (req->op) {
	case DC_OP_READ:
	case DC_OP_WRITE:
		return vhdx_rw(v, req);
	case DC_OP_FLUSH:
		return v->ro ? 0 : vhdfmt_result(req, vhdx_flush(v));
	case DC_OP_UNMAP:
		return vhdx_unmap(v, req);
	default:
		return DC_E_UNSUPPORTED;
	}
}

/* submit(): the file engine where no metadata changes (vhdx_aio.c), else
 * the blocking io() on the worker pool. */
static void vhdx_submit(void *inst, struct dc_req *req)
{
	struct vhdx_rq *r = req->ctx;

	r->req = req;
	r->v = inst;
	r->retry_fn = vhdx_io;
	if ((req->op == DC_OP_READ || req->op == DC_OP_WRITE) && vhdx_aio_submit(inst, r))
		return;
	vhdx_aio_to_pool(r, vhdx_io);
}

/* --- Open, attach, close --------------------------------------------------------------- */

static void vhdx_fin(void *inst)
{
	struct vhdx *v = inst;

	if (v->img.fd >= 0 && !v->ro && v->session) {
		pthread_mutex_lock(&v->lock);
		/* A failed commit leaves LogGuid set: the next open replays. */
		if (vhdx_log_commit(v) == 0)
			vhdx_log_close(v);
		pthread_mutex_unlock(&v->lock);
	}
	vhdx_free(v);
}

/* The last close of an image this process has open (share.h) closes it. */
static void vhdx_close(void *inst)
{
	vhdfmt_share_close_inst(inst, vhdx_fin);
}

static void vhdx_fill_info(void *inst, struct dc_info *info)
{
	struct vhdx *v = inst;

	memset(info, 0, sizeof(*info));
	info->sector_count = v->disk_size >> v->ss_shift;
	info->sector_size = v->lss;
	info->physical_sector_size = v->pss < v->lss ? v->lss : v->pss;
	if (v->leave_alloc && !v->diff) {
		info->optimal_unmap_sectors = 1;
		info->unmap_behavior = DC_UNMAP_IGNORED;
	} else {
		info->optimal_unmap_sectors = v->spb;
		info->unmap_behavior = DC_UNMAP_ZEROES;
	}
	info->flags = DC_INFO_HAS_DISK_ID | DC_INFO_FUA_RESPECTED |
		      (v->ro ? DC_INFO_READ_ONLY : 0);
	memcpy(info->disk_id, v->page83, 16);
	snprintf(info->disk_type, sizeof(info->disk_type), "vhdx");
	v->img.info = *info;
}

static const struct dc_option vhdx_options[] = {
	DC_OPTION_SIZE("create", "create a missing file as a dynamic VHDX of SIZE bytes; "
				 "an existing one opens unchanged"),
	DC_OPTION_SIZE("block", "block size of a new image, 1M to 256M (default 32M; a "
				"child: its parent's)"),
	DC_OPTION_UINT("sector", "logical sector size of a new image: 512 or 4096"),
	DC_OPTION_FLAG("fixed", "with create=: a fixed (fully allocated) image"),
	DC_OPTION_STRING("parent",
			 "create a missing file as a differencing VHDX over the parent "
			 "image PATH; an existing child opens over PATH (checked by its "
			 "DataWriteGuid)"),
	DC_OPTION_STRING("parents", "'beneath' (default): a parent locator is followed "
				    "only inside the child's directory; 'any': "
				    "anywhere"),
	DC_OPTION_FLAG("overwrite", "with create= or parent=: replace an existing file"),
	DC_OPTIONS_END,
};

/* Headers, log, regions, metadata and the BAT. */
static int vhdx_load(void *inst, const void *opts, bool created)
{
	struct vhdx *v = inst;
	int ret;

	(void)opts;
	(void)created;
	v->dir = vhdfmt_dirname(v->img.path);
	if (!v->dir) {
		vhdfmt_err("%s: cannot resolve the image's directory", v->img.path);
		return -ENOMEM;
	}
	ret = vhdx_parse(v);
	if (ret == 0 && !v->ro && !v->hdr.log_len) {
		vhdfmt_err(
			"%s: the image has no log, so it cannot be written safely; open "
			"it read-only",
			v->img.path);
		ret = -EROFS;
	}
	if (ret == 0)
		ret = vhdx_load_bat(v);
	return ret;
}

/* open(): the steps of common/vhdfmt/open.h. */
VHDFMT_OPEN_DIFF(vhdx, struct vhdx, struct vhdx_create);

static int vhdx_lower_spec(void *inst, char *buf, size_t len)
{
	struct vhdx *v = inst;
	int ret = 0;

	if (!v->diff)
		return 0;
	/* Every open of a shared instance asks; the parent is resolved once (or
	 * was named by parent=). It opens as what the child declares, a VHDX. */
	pthread_mutex_lock(&v->lock);
	if (!v->parent_known)
		ret = vhdx_resolve_parent(v, true, &v->parent_path, v->parent_page83);
	if (ret == 0)
		v->parent_known = true;
	pthread_mutex_unlock(&v->lock);
	if (ret == 0)
		ret = vhdfmt_lower_spec_any("vhdx", v->img.path, v->img.fd,
					    v->parent_path, vhdx_parent_of,
					    v->img.parents_any, buf, len);
	return ret;
}

static int vhdx_attach(void *inst, const struct dc_info *lower, struct dc_info *info)
{
	struct vhdx *v = inst;
	int ret = vhdfmt_attach(&v->img.info, v->diff, lower && v->parent_known,
				v->img.path, "VHDX", info);
	char want[39], got[39];

	if (ret <= 0)
		return ret;
	if (lower->sector_size != v->lss) {
		vhdfmt_err("%s: the parent has %u-byte sectors, this image %u",
			   v->img.path, lower->sector_size, v->lss);
		return -EINVAL;
	}
	if (!(lower->flags & DC_INFO_HAS_DISK_ID) ||
	    memcmp(lower->disk_id, v->parent_page83, 16) != 0) {
		vhdx_guid_str(v->parent_page83, want);
		vhdx_guid_str(lower->disk_id, got);
		vhdfmt_err("%s: the layer below has disk id %s, not the parent %s (%s) "
			   "whose linkage was checked",
			   v->img.path,
			   lower->flags & DC_INFO_HAS_DISK_ID ? got : "(none)",
			   v->parent_path, want);
		return -EINVAL;
	}
	return 0;
}

static void vhdx_describe(void *inst, dc_kv_fn kv, void *arg)
{
	static const char *const logs[] = { "clean", "replayed at open",
					    "replayed in memory (read-only open)" };
	struct vhdx *v = inst;
	char id[39];
	uint64_t n = 0;

	kv(arg, "path", v->img.path);
	kv(arg, "format",
	   v->diff	  ? "differencing VHDX" :
	   v->leave_alloc ? "fixed VHDX" :
			    "dynamic VHDX");
	dc_kv_u64(kv, arg, "virtual size", v->disk_size);
	dc_kv_u64(kv, arg, "block size", v->block_size);
	dc_kv_u64(kv, arg, "logical sector size", v->lss);
	dc_kv_u64(kv, arg, "physical sector size", v->pss);
	vhdx_guid_str(v->page83, id);
	kv(arg, "disk id (page 83)", id);
	for (uint64_t b = 0; b < v->nblocks; b++) {
		unsigned st = VHDX_BAT_STATE(vhdx_bat_get(v, vhdx_pidx(v, b)));

		n += st == VHDX_PB_FULL || st == VHDX_PB_PARTIAL;
	}
	dc_kv_printf(kv, arg, "allocated blocks", "%llu of %llu", (unsigned long long)n,
		     (unsigned long long)v->nblocks);
	kv(arg, "log", logs[v->log_state]);
	kv(arg, "io", vhdx_aio_describe(v));
	kv(arg, "unmap",
	   v->leave_alloc && !v->diff ?
		   "ignored (fixed image)" :
		   "whole blocks to PAYLOAD_BLOCK_ZERO, parts zeroed; reads zero");
	if (v->diff) {
		vhdx_guid_str(v->linkage, id);
		kv(arg, "parent linkage", id);
		if (v->parent_path)
			kv(arg, "parent", v->parent_path);
		kv(arg, "parent locators",
		   v->img.parents_any ? "followed anywhere (;parents=any)" :
					"followed inside the image's directory");
	}
	if (v->created)
		dc_kv_bool(kv, arg, "created", true);
}

DC_PLUGIN(vhdx_plugin) = {
	DC_ABOUT(DC_KIND_LAYER, "vhdx", "0.1.0",
		 "fixed, dynamic and differencing VHDX images (read-write)"),
	.usage = "vhdx:PATH[;create=SIZE[;block=SIZE][;sector=512|4096][;fixed]]\n"
		 "vhdx:PATH;parent=BASE.vhdx\n"
		 "  A VHDX image ([MS-VHDX]). A differencing image opens its parent\n"
		 "  (relative_path first, inside the child's directory unless\n"
		 "  ;parents=any; or named by ;parent=PATH) read-only as a VHDX layer\n"
		 "  below, after checking the parent's DataWriteGuid against\n"
		 "  parent_linkage. Metadata changes\n"
		 "  go through the image's log; a log left by a crash is replayed at\n"
		 "  open (in memory when read-only). New images: dynamic, 32M blocks,\n"
		 "  512-byte logical and 4096-byte physical sectors unless told.\n"
		 "  create= and parent= make a missing file only; an existing one\n"
		 "  opens unchanged (;overwrite replaces it), and a read-only open\n"
		 "  never creates.\n"
		 "  Unmap frees whole blocks (PAYLOAD_BLOCK_ZERO) and zeroes parts;\n"
		 "  fixed images ignore it. The image is locked (flock) while open.",
	.forms = DC_FORMS(DC_FORM(
		"vhdx", 1, DC_CHILD_NONE,
		"vhdx:PATH[;create=SIZE[;block=SIZE][;sector=N][;fixed]|;parent=PATH][;"
		"overwrite]",
		"a fixed, dynamic or differencing VHDX (a chain opens as layers)",
		vhdx_options)),
	.ctx_size = sizeof(struct vhdx_rq),
	.ops = DC_OPS_RW,
	DC_CALLBACKS(vhdx, open, close, submit, io, sector_count, attach, lower_spec,
		     describe, resize, extents, check),
	IOE_PLUGIN_QUEUES(vhdx),
};
