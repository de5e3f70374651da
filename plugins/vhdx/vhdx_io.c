/* SPDX-License-Identifier: MIT */
/* vhdx_io: what the log (vhdx_log.c), the parser (vhdx_meta.c) and the I/O path
 * (vhdx.c) share below them: reads that see a read-only replay, zeroing and
 * the file's end, and the queue of 4 KiB metadata sectors (BAT sectors and
 * sector bitmap sectors) that changed in memory and wait for the log. It calls
 * into none of them, so the files form no cycle. */
#include "vhdx.h"

#include "bitmap/bitmap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define VHDX_RESERVE 40 /* queue room a single change may need */

/* --- Reads over an in-memory replay ------------------------------------------- */

static void vhdx_ovl_apply(const struct vhdx *v, uint8_t *buf, size_t len, uint64_t off)
{
	for (size_t i = 0; i < v->novl; i++) {
		const struct vhdx_ovl *o = &v->ovl[i];
		uint64_t a = o->off > off ? o->off : off;
		uint64_t b = o->off + o->len < off + len ? o->off + o->len : off + len;

		if (a >= b)
			continue;
		if (o->data)
			memcpy(buf + (a - off), o->data + (a - o->off), b - a);
		else
			memset(buf + (a - off), 0, b - a);
	}
}

int vhdx_pread(struct vhdx *v, void *buf, size_t len, uint64_t off)
{
	size_t got = len;
	int ret = 0;

	if (!v->novl)
		return vhdfmt_pread(v->img.fd, buf, len, off);
	/* The replay may have extended the file: past its real end is zeroes. */
	if (off >= v->real_size)
		got = 0;
	else if (len > v->real_size - off)
		got = (size_t)(v->real_size - off);
	if (got)
		ret = vhdfmt_pread(v->img.fd, buf, got, off);
	if (ret < 0)
		return ret;
	memset((uint8_t *)buf + got, 0, len - got);
	vhdx_ovl_apply(v, buf, len, off);
	return 0;
}

int vhdx_read_buf(struct vhdx *v, const struct dc_buf *b, uint64_t off)
{
	uint8_t *bounce;
	int ret;

	if (!v->novl)
		return vhdfmt_xfer(v->img.fd, b, off, false, 0);
	bounce = malloc(b->len ? b->len : 1);
	if (!bounce)
		return -ENOMEM;
	ret = vhdx_pread(v, bounce, b->len, off);
	if (ret == 0)
		dc_buf_copy_to(b, 0, bounce, b->len);
	free(bounce);
	return ret;
}

void vhdx_ovl_free(struct vhdx *v)
{
	for (size_t i = 0; i < v->novl; i++)
		free(v->ovl[i].data);
	free(v->ovl);
	v->ovl = NULL;
	v->novl = 0;
}

/* Zero [off, off+len) of the file, extending it when the range reaches past
 * its end. */
int vhdx_zero_file(int fd, uint64_t off, uint64_t len)
{
	struct stat st;
	uint64_t end = off + len;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (end > (uint64_t)st.st_size && ftruncate(fd, (off_t)end) < 0)
		return -errno;
	if (off >= (uint64_t)st.st_size)
		return 0;
	if (end > (uint64_t)st.st_size)
		end = (uint64_t)st.st_size;
	return vhdfmt_zero(fd, off, end - off);
}

/* --- The file's end, queued metadata sectors (lock held) ------------------------ */

int vhdx_fix_end(struct vhdx *v)
{
	if (v->end_fixed)
		return 0;
	if (v->real_size != v->file_end && ftruncate(v->img.fd, (off_t)v->file_end) < 0)
		return -errno;
	v->real_size = v->file_size = v->file_end;
	v->end_fixed = true;
	return 0;
}

void vhdx_key_done(struct vhdx *v, uint64_t key)
{
	if (key & VHDX_KEY_META) {
		free(v->meta_sec);
		v->meta_sec = NULL;
	} else if (key & VHDX_KEY_SB) {
		uint64_t c = (key & ~VHDX_KEY_SB) >> 8;
		unsigned idx = key & 0xff;

		v->sbc[c]->dirty[idx / 64] &= ~(UINT64_C(1) << (idx % 64));
	} else {
		v->bat_dirty[key / 8] &= (uint8_t) ~(1u << (key % 8));
	}
}

int vhdx_reserve(struct vhdx *v)
{
	if (v->keys_cap - v->nkeys < VHDX_RESERVE) {
		size_t cap = v->keys_cap * 2 + VHDX_RESERVE * 2;
		uint64_t *k = realloc(v->keys, cap * sizeof(*k));

		if (!k)
			return -ENOMEM;
		v->keys = k;
		v->keys_cap = cap;
	}
	return 0;
}

void vhdx_bat_set(struct vhdx *v, uint64_t i, uint64_t e)
{
	uint64_t sec = i / (VHDX_LSEC / 8);

	__atomic_store_n(&v->bat[i], e, __ATOMIC_RELEASE);
	if (!(v->bat_dirty[sec / 8] & (1u << (sec % 8)))) {
		v->bat_dirty[sec / 8] |= (uint8_t)(1u << (sec % 8));
		v->keys[v->nkeys] = sec;
		/* Atomic: vhdx_rw() peeks at it without the lock. */
		__atomic_store_n(&v->nkeys, v->nkeys + 1, __ATOMIC_RELAXED);
	}
}

int vhdx_key_sector(struct vhdx *v, uint64_t key, uint8_t *out, uint64_t *off)
{
	if (key & VHDX_KEY_META) {
		*off = key & ~VHDX_KEY_META;
		memcpy(out, v->meta_sec, VHDX_LSEC);
		return 0;
	}
	if (key & VHDX_KEY_SB) {
		uint64_t c = (key & ~VHDX_KEY_SB) >> 8;
		unsigned idx = key & 0xff;
		uint64_t e = v->bat[vhdx_sbidx(v, c)];

		if (VHDX_BAT_STATE(e) != VHDX_SB_PRESENT)
			return -EIO;
		*off = VHDX_BAT_OFF(e) + (uint64_t)idx * VHDX_LSEC;
		memcpy(out, v->sbc[c]->sec[idx], VHDX_LSEC);
		return 0;
	}
	*off = v->bat_off + key * VHDX_LSEC;
	for (unsigned j = 0; j < VHDX_LSEC / 8; j++)
		put_le64(out + 8 * j, v->bat[key * (VHDX_LSEC / 8) + j]);
	return 0;
}

/* The cached 4 KiB bitmap sector holding sector s's bit. */
static int vhdx_sb_sec(struct vhdx *v, uint64_t s, uint8_t **out)
{
	uint64_t c = s >> 23;
	unsigned idx = (unsigned)((s & (VHDX_CHUNK_SECTORS - 1)) >> 15);
	struct vhdx_sbc *sbc = v->sbc[c];

	if (!sbc && !(sbc = v->sbc[c] = calloc(1, sizeof(*sbc))))
		return -ENOMEM;
	if (!sbc->sec[idx]) {
		uint64_t e = v->bat[vhdx_sbidx(v, c)];
		uint8_t *p = malloc(VHDX_LSEC);
		int ret = 0;

		if (!p)
			return -ENOMEM;
		if (VHDX_BAT_STATE(e) == VHDX_SB_PRESENT)
			ret = vhdx_pread(v, p, VHDX_LSEC,
					 VHDX_BAT_OFF(e) + (uint64_t)idx * VHDX_LSEC);
		else
			memset(p, 0, VHDX_LSEC);
		if (ret < 0) {
			free(p);
			return ret;
		}
		sbc->sec[idx] = p;
	}
	*out = sbc->sec[idx];
	return 0;
}

/* Bits of sectors [s, s+n) into the bitmap out (bit k = sector s+k); n <= 32768. */
int vhdx_bits_get(struct vhdx *v, uint64_t s, uint32_t n, uint64_t *out)
{
	memset(out, 0, bitmap_words(n) * sizeof(*out));
	for (uint32_t k = 0; k < n;) {
		uint8_t *sec;
		uint32_t bit = (uint32_t)(s + k) & 32767;
		int ret = vhdx_sb_sec(v, s + k, &sec);

		if (ret < 0)
			return ret;
		for (; k < n && bit < 32768; k++, bit++)
			if (sec[bit >> 3] & (1u << (bit & 7)))
				out[k >> 6] |= UINT64_C(1) << (k & 63);
	}
	return 0;
}

/* Set (or clear) the bits of sectors [s, s+n) and queue their sectors. */
int vhdx_bits_put(struct vhdx *v, uint64_t s, uint32_t n, bool set)
{
	for (uint32_t k = 0; k < n;) {
		uint64_t c = (s + k) >> 23;
		unsigned idx = (unsigned)(((s + k) & (VHDX_CHUNK_SECTORS - 1)) >> 15);
		uint32_t bit = (uint32_t)(s + k) & 32767;
		struct vhdx_sbc *sbc;
		uint8_t *sec;
		int ret = vhdx_sb_sec(v, s + k, &sec);

		if (ret < 0)
			return ret;
		for (; k < n && bit < 32768; k++, bit++) {
			if (set)
				sec[bit >> 3] |= (uint8_t)(1u << (bit & 7));
			else
				sec[bit >> 3] &= (uint8_t) ~(1u << (bit & 7));
		}
		sbc = v->sbc[c];
		if (!(sbc->dirty[idx / 64] & (UINT64_C(1) << (idx % 64)))) {
			sbc->dirty[idx / 64] |= UINT64_C(1) << (idx % 64);
			v->keys[v->nkeys] = vhdx_key_sb(c, idx);
			__atomic_store_n(&v->nkeys, v->nkeys + 1, __ATOMIC_RELAXED);
		}
	}
	return 0;
}
