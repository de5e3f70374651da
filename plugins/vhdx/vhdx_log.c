/* SPDX-License-Identifier: MIT */
/* vhdx_log: CRC-32C, the two headers and the log of a VHDX image ([MS-VHDX] 2.2.2,
 * 2.3). See vhdx.c for the order in which metadata reaches the file. */
#include "vhdx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- CRC-32C (Castagnoli, reflected polynomial 0x82f63b78) -------------------- */

static uint32_t vhdx_crc_table[256];
static pthread_once_t vhdx_crc_once = PTHREAD_ONCE_INIT;

static void vhdx_crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		vhdx_crc_table[i] = c;
	}
}

static uint32_t vhdx_crc_update(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len--)
		crc = vhdx_crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

uint32_t vhdx_crc32c(const void *buf, size_t len)
{
	pthread_once(&vhdx_crc_once, vhdx_crc_init);
	return ~vhdx_crc_update(~0u, buf, len);
}

uint32_t vhdx_crc_skip(const uint8_t *buf, size_t len, size_t at)
{
	static const uint8_t zero[4];
	uint32_t c;

	pthread_once(&vhdx_crc_once, vhdx_crc_init);
	c = vhdx_crc_update(~0u, buf, at);
	c = vhdx_crc_update(c, zero, 4);
	return ~vhdx_crc_update(c, buf + at + 4, len - at - 4);
}

int vhdx_new_guid(uint8_t g[16])
{
	return vhdfmt_new_uid(g);
}

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
		return vhdfmt_pread(v->fd, buf, len, off);
	/* The replay may have extended the file: past its real end is zeroes. */
	if (off >= v->real_size)
		got = 0;
	else if (len > v->real_size - off)
		got = (size_t)(v->real_size - off);
	if (got)
		ret = vhdfmt_pread(v->fd, buf, got, off);
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
		return vhdfmt_xfer(v->fd, b, off, false, 0);
	bounce = malloc(b->len ? b->len : 1);
	if (!bounce)
		return -ENOMEM;
	ret = vhdx_pread(v, bounce, b->len, off);
	if (ret == 0)
		dc_buf_copy_to(b, 0, bounce, b->len);
	free(bounce);
	return ret;
}

/* --- Headers ----------------------------------------------------------------------- */

void vhdx_hdr_encode(const struct vhdx_hdr *h, uint8_t out[VHDX_LSEC])
{
	memset(out, 0, VHDX_LSEC);
	memcpy(out, "head", 4);
	vhdx_put64(out + 8, h->seq);
	memcpy(out + 16, h->file_write, 16);
	memcpy(out + 32, h->data_write, 16);
	memcpy(out + 48, h->log_guid, 16);
	vhdx_put16(out + 64, h->log_version);
	vhdx_put16(out + 66, h->version);
	vhdx_put32(out + 68, h->log_len);
	vhdx_put64(out + 72, h->log_off);
	vhdx_put32(out + 4, vhdx_crc_skip(out, VHDX_LSEC, 4));
}

static bool vhdx_hdr_decode(const uint8_t *b, struct vhdx_hdr *h)
{
	if (memcmp(b, "head", 4) != 0 ||
	    vhdx_get32(b + 4) != vhdx_crc_skip(b, VHDX_LSEC, 4))
		return false;
	h->seq = vhdx_get64(b + 8);
	memcpy(h->file_write, b + 16, 16);
	memcpy(h->data_write, b + 32, 16);
	memcpy(h->log_guid, b + 48, 16);
	h->log_version = vhdx_get16(b + 64);
	h->version = vhdx_get16(b + 66);
	h->log_len = vhdx_get32(b + 68);
	h->log_off = vhdx_get64(b + 72);
	return true;
}

int vhdx_read_headers(struct vhdx *v)
{
	uint8_t raw[2][VHDX_LSEC];
	struct vhdx_hdr h[2];
	bool ok[2];
	int ret, cur;

	for (int i = 0; i < 2; i++) {
		ret = vhdfmt_pread(v->fd, raw[i], VHDX_LSEC, VHDX_HDR_OFF(i));
		if (ret < 0) {
			vhdfmt_err("%s: cannot read the header at %u KiB: %s", v->path,
				   64 + 64 * i, strerror(-ret));
			return ret;
		}
		ok[i] = vhdx_hdr_decode(raw[i], &h[i]);
	}
	if (!ok[0] && !ok[1]) {
		vhdfmt_err(
			"%s: no valid VHDX header: both copies (at 64 and 128 KiB) have "
			"a bad signature or CRC-32C checksum",
			v->path);
		return -EINVAL;
	}
	if (ok[0] && ok[1] && h[0].seq == h[1].seq &&
	    memcmp(raw[0] + 8, raw[1] + 8, VHDX_LSEC - 8) != 0) {
		vhdfmt_err("%s: both headers have sequence number %llu but differ; "
			   "neither is current",
			   v->path, (unsigned long long)h[0].seq);
		return -EINVAL;
	}
	cur = !ok[0] || (ok[1] && h[1].seq > h[0].seq);
	if (!ok[!cur])
		dc_debug("%s: header %d is damaged; using header %d", v->path, !cur + 1,
			 cur + 1);
	v->hdr = h[cur];
	v->hdr_slot = cur;
	if (v->hdr.version != 1) {
		vhdfmt_err("%s: VHDX version %u, expected 1", v->path, v->hdr.version);
		return -EINVAL;
	}
	if (v->hdr.log_version != 0 && !vhdx_guid_zero(v->hdr.log_guid)) {
		vhdfmt_err("%s: log version %u, expected 0 (the log needs replay)",
			   v->path, v->hdr.log_version);
		return -EINVAL;
	}
	if (v->hdr.log_len == 0)
		return 0;
	if (v->hdr.log_len > VHDX_MAX_LOG) {
		vhdfmt_err("%s: a log of %u bytes; at most %u are supported", v->path,
			   v->hdr.log_len, VHDX_MAX_LOG);
		return -EINVAL;
	}
	if (v->hdr.log_len % VHDX_MB || v->hdr.log_off % VHDX_MB ||
	    v->hdr.log_off < VHDX_MB || v->hdr.log_off > v->real_size ||
	    v->hdr.log_len > v->real_size - v->hdr.log_off) {
		vhdfmt_err("%s: the log (%u bytes at offset %llu) is not 1 MiB-aligned "
			   "inside the file of %llu bytes",
			   v->path, v->hdr.log_len, (unsigned long long)v->hdr.log_off,
			   (unsigned long long)v->real_size);
		return -EINVAL;
	}
	return 0;
}

static int vhdx_write_header(struct vhdx *v)
{
	uint8_t buf[VHDX_LSEC];
	struct vhdx_hdr h = v->hdr;
	int slot = !v->hdr_slot, ret;

	h.seq++;
	vhdx_hdr_encode(&h, buf);
	ret = vhdfmt_pwrite(v->fd, buf, sizeof(buf), VHDX_HDR_OFF(slot));
	if (ret == 0 && fdatasync(v->fd) < 0)
		ret = -errno;
	if (ret < 0)
		return ret;
	v->hdr = h;
	v->hdr_slot = slot;
	return 0;
}

int vhdx_update_headers(struct vhdx *v)
{
	int ret = vhdx_write_header(v);

	/* Twice, so that the other copy is current too ([MS-VHDX] 2.2.2.1). */
	return ret ? ret : vhdx_write_header(v);
}

int vhdx_session(struct vhdx *v, bool data)
{
	bool fw = !v->session, dw = data && !v->data_changed;
	int ret;

	if (!fw && !dw)
		return 0;
	if ((fw && (ret = vhdx_new_guid(v->hdr.file_write)) < 0) ||
	    (dw && (ret = vhdx_new_guid(v->hdr.data_write)) < 0))
		return ret;
	ret = vhdx_update_headers(v);
	if (ret < 0)
		return ret;
	v->session = true;
	if (dw)
		__atomic_store_n(&v->data_changed, true, __ATOMIC_RELEASE);
	return 0;
}

/* --- Finding the active log sequence (2.3.3) ---------------------------------------- */

struct vhdx_lent {
	uint64_t pos, seq, flushed, last;
	uint32_t len, tail, ndesc;
};

/* Read len bytes of the ring at pos, wrapping at its end. */
static int vhdx_log_read(struct vhdx *v, uint8_t *buf, uint64_t pos, uint64_t len)
{
	uint64_t l = v->hdr.log_len, first = len < l - pos ? len : l - pos;
	int ret = vhdfmt_pread(v->fd, buf, first, v->hdr.log_off + pos);

	if (ret == 0 && first < len)
		ret = vhdfmt_pread(v->fd, buf + first, len - first, v->hdr.log_off);
	return ret;
}

/* Where a replayed update may write: not the identifier and headers (never
 * changed after creation), not the log itself, not past the size limit. */
static bool vhdx_log_target_ok(const struct vhdx *v, uint64_t off, uint64_t len)
{
	return off % VHDX_LSEC == 0 && len && off >= VHDX_RT_OFF(0) &&
	       off < VHDX_MAX_FILE && len <= VHDX_MAX_FILE - off &&
	       !vhdx_overlap(off, len, v->hdr.log_off, v->hdr.log_len);
}

/* Validate the entry at pos (every field, descriptor and data sector, and the
 * checksum); the whole entry is returned in *out when out is not NULL. */
static bool vhdx_log_entry(struct vhdx *v, uint64_t pos, struct vhdx_lent *e,
			   uint8_t **out)
{
	uint8_t h[VHDX_LSEC], *buf = NULL;
	uint64_t dsec, ndata = 0;
	bool ok = false;

	if (vhdx_log_read(v, h, pos, VHDX_LSEC) < 0 || memcmp(h, "loge", 4) != 0 ||
	    memcmp(h + 32, v->hdr.log_guid, 16) != 0)
		return false;
	e->pos = pos;
	e->len = vhdx_get32(h + 8);
	e->tail = vhdx_get32(h + 12);
	e->seq = vhdx_get64(h + 16);
	e->ndesc = vhdx_get32(h + 24);
	e->flushed = vhdx_get64(h + 48);
	e->last = vhdx_get64(h + 56);
	dsec = ((uint64_t)e->ndesc * 32 + 64 + VHDX_LSEC - 1) / VHDX_LSEC;
	if (e->len % VHDX_LSEC || e->len < VHDX_LSEC || e->len > v->hdr.log_len ||
	    e->tail % VHDX_LSEC || e->tail >= v->hdr.log_len || e->seq == 0 ||
	    dsec * VHDX_LSEC > e->len || e->last > VHDX_MAX_FILE)
		return false;
	buf = malloc(e->len);
	if (!buf || vhdx_log_read(v, buf, pos, e->len) < 0 ||
	    vhdx_get32(buf + 4) != vhdx_crc_skip(buf, e->len, 4))
		goto out;
	for (uint32_t i = 0; i < e->ndesc; i++) {
		const uint8_t *d = buf + 64 + 32 * (uint64_t)i;
		uint64_t off = vhdx_get64(d + 16);

		if (vhdx_get64(d + 24) != e->seq)
			goto out;
		if (!memcmp(d, "zero", 4)) {
			if (!vhdx_log_target_ok(v, off, vhdx_get64(d + 8)) ||
			    vhdx_get64(d + 8) % VHDX_LSEC)
				goto out;
		} else if (!memcmp(d, "desc", 4)) {
			const uint8_t *s = buf + (dsec + ndata) * VHDX_LSEC;

			if (!vhdx_log_target_ok(v, off, VHDX_LSEC) ||
			    (dsec + ndata + 1) * VHDX_LSEC > e->len ||
			    memcmp(s, "data", 4) != 0 ||
			    vhdx_get32(s + 4) != (uint32_t)(e->seq >> 32) ||
			    vhdx_get32(s + 4092) != (uint32_t)e->seq)
				goto out;
			ndata++;
		} else {
			goto out;
		}
	}
	ok = true;
out:
	if (ok && out)
		*out = buf;
	else
		free(buf);
	return ok;
}

/* The active sequence, tail entry first; *n = 0 when there is none. */
static int vhdx_log_find(struct vhdx *v, struct vhdx_lent **act, size_t *n)
{
	uint64_t l = v->hdr.log_len, cur_tail = 0, old_tail = 0, best_seq = 0;
	size_t cap = l / VHDX_LSEC + 1, nc;
	struct vhdx_lent *cur = malloc(cap * sizeof(*cur));
	struct vhdx_lent *best = malloc(cap * sizeof(*best));

	*n = 0;
	*act = NULL;
	if (!cur || !best) {
		free(cur);
		free(best);
		return -ENOMEM;
	}
	for (size_t iter = 0; iter < cap; iter++) {
		uint64_t pos = cur_tail, total = 0;
		size_t start = 0;
		bool valid = false;
		struct vhdx_lent e;

		for (nc = 0; total < l && nc < cap; nc++) {
			if (!vhdx_log_entry(v, pos, &e, NULL) ||
			    (nc && e.seq != cur[nc - 1].seq + 1) || total + e.len > l)
				break;
			cur[nc] = e;
			total += e.len;
			pos = (pos + e.len) % l;
		}
		/* Valid when the head's tail is one of the sequence's entries. */
		for (size_t k = 0; nc && k < nc && !valid; k++)
			if (cur[k].pos == cur[nc - 1].tail) {
				valid = true;
				start = k;
			}
		if (valid && cur[nc - 1].seq > best_seq) {
			best_seq = cur[nc - 1].seq;
			*n = nc - start;
			memcpy(best, cur + start, *n * sizeof(*best));
		}
		cur_tail = valid ? pos : (cur_tail + VHDX_LSEC) % l;
		if (cur_tail <= old_tail)
			break;
		old_tail = cur_tail;
	}
	free(cur);
	if (*n)
		*act = best;
	else
		free(best);
	return 0;
}

/* The updates of the active sequence, in replay order. */
static int vhdx_log_collect(struct vhdx *v, const struct vhdx_lent *act, size_t n,
			    struct vhdx_ovl **out, size_t *nout)
{
	struct vhdx_ovl *ovl = NULL;
	size_t cnt = 0, cap = 0;
	int ret = 0;

	for (size_t i = 0; i < n && ret == 0; i++) {
		struct vhdx_lent e;
		uint8_t *buf = NULL;
		uint64_t dsec, ndata = 0;

		if (!vhdx_log_entry(v, act[i].pos, &e, &buf)) {
			ret = -EIO; /* it was valid a moment ago */
			break;
		}
		dsec = ((uint64_t)e.ndesc * 32 + 64 + VHDX_LSEC - 1) / VHDX_LSEC;
		for (uint32_t k = 0; k < e.ndesc; k++) {
			const uint8_t *d = buf + 64 + 32 * (uint64_t)k;
			struct vhdx_ovl o = { vhdx_get64(d + 16), vhdx_get64(d + 8),
					      NULL };

			if (cnt == cap) {
				struct vhdx_ovl *p;

				cap = cap ? cap * 2 : 64;
				p = realloc(ovl, cap * sizeof(*ovl));
				if (!p) {
					ret = -ENOMEM;
					break;
				}
				ovl = p;
			}
			if (!memcmp(d, "desc", 4)) {
				const uint8_t *s = buf + (dsec + ndata++) * VHDX_LSEC;

				o.len = VHDX_LSEC;
				o.data = malloc(VHDX_LSEC);
				if (!o.data) {
					ret = -ENOMEM;
					break;
				}
				memcpy(o.data, d + 8, 8);
				memcpy(o.data + 8, s + 8, VHDX_LSEC - 12);
				memcpy(o.data + VHDX_LSEC - 4, d + 4, 4);
			}
			ovl[cnt++] = o;
		}
		free(buf);
	}
	*out = ovl;
	*nout = cnt;
	return ret;
}

static void vhdx_ovl_free(struct vhdx *v)
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

int vhdx_log_open(struct vhdx *v)
{
	struct vhdx_lent *act = NULL, *head;
	struct vhdx_ovl *ovl = NULL;
	uint64_t end;
	size_t n = 0, novl = 0;
	int ret;

	if (vhdx_guid_zero(v->hdr.log_guid))
		return 0;
	if (v->hdr.log_len == 0) {
		vhdfmt_err("%s: the header names a log (LogGuid set) of length 0",
			   v->path);
		return -EINVAL;
	}
	ret = vhdx_log_find(v, &act, &n);
	if (ret < 0) {
		vhdfmt_err("%s: out of memory scanning the log", v->path);
		return ret;
	}
	if (!n) {
		/* Entries are made durable before anything is applied, so a log
		 * without a valid entry never changed the file (as qemu reads it). */
		dc_debug("%s: LogGuid is set but the log holds no valid entry; nothing "
			 "to replay",
			 v->path);
		free(act);
		if (v->ro)
			return 0;
		memset(v->hdr.log_guid, 0, 16);
		ret = vhdx_session(v, false);
		if (ret == 0 && !v->session)
			ret = vhdx_update_headers(v);
		goto done;
	}
	head = &act[n - 1];
	if (head->flushed > v->real_size) {
		vhdfmt_err("%s: the file is truncated: %llu bytes, but the log says at "
			   "least %llu were written",
			   v->path, (unsigned long long)v->real_size,
			   (unsigned long long)head->flushed);
		free(act);
		return -EINVAL;
	}
	end = head->last;
	ret = vhdx_log_collect(v, act, n, &ovl, &novl);
	free(act);
	v->ovl = ovl;
	v->novl = novl;
	if (ret < 0) {
		vhdfmt_err("%s: cannot read the log: %s", v->path, strerror(-ret));
		return ret;
	}
	for (size_t i = 0; i < novl; i++)
		if (ovl[i].off + ovl[i].len > end)
			end = ovl[i].off + ovl[i].len;
	if (v->ro) {
		dc_debug("%s: replaying %zu log updates in memory (opened read-only)",
			 v->path, novl);
		if (end > v->file_size)
			v->file_size = end;
		v->log_state = VHDX_LOG_IN_MEMORY;
		return 0;
	}
	/* Writable: into the file, with a new FileWriteGuid first (2.2.2). */
	ret = vhdx_session(v, false);
	for (size_t i = 0; ret == 0 && i < novl; i++)
		ret = ovl[i].data ?
			      vhdfmt_pwrite(v->fd, ovl[i].data, ovl[i].len, ovl[i].off) :
			      vhdx_zero_file(v->fd, ovl[i].off, ovl[i].len);
	if (ret == 0 && end > v->real_size && ftruncate(v->fd, (off_t)end) < 0)
		ret = -errno;
	if (ret == 0 && fdatasync(v->fd) < 0)
		ret = -errno;
	if (ret == 0) {
		memset(v->hdr.log_guid, 0, 16);
		ret = vhdx_update_headers(v);
	}
	vhdx_ovl_free(v);
	if (ret == 0 && end > v->real_size)
		v->real_size = v->file_size = end;
	v->log_state = VHDX_LOG_REPLAYED;
done:
	if (ret < 0)
		vhdfmt_err("%s: cannot replay the log: %s", v->path, strerror(-ret));
	return ret;
}

void vhdx_log_free(struct vhdx *v)
{
	vhdx_ovl_free(v);
}

/* --- Writing through the log --------------------------------------------------------- */

int vhdx_fix_end(struct vhdx *v)
{
	if (v->end_fixed)
		return 0;
	if (v->real_size != v->file_end && ftruncate(v->fd, (off_t)v->file_end) < 0)
		return -errno;
	v->real_size = v->file_size = v->file_end;
	v->end_fixed = true;
	return 0;
}

static void vhdx_key_done(struct vhdx *v, uint64_t key)
{
	if (key & VHDX_KEY_SB) {
		uint64_t c = (key & ~VHDX_KEY_SB) >> 8;
		unsigned idx = key & 0xff;

		v->sbc[c]->dirty[idx / 64] &= ~(UINT64_C(1) << (idx % 64));
	} else {
		v->bat_dirty[key / 8] &= (uint8_t) ~(1u << (key % 8));
	}
}

/* One entry of up to n queued sectors: log it, make it durable, apply it. */
static int vhdx_log_round(struct vhdx *v, size_t n, uint8_t *ent, uint8_t *raw)
{
	uint64_t seq = v->log_seq + 1, pos = v->log_head, len = (1 + n) * VHDX_LSEC;
	uint64_t *off = (uint64_t *)(ent + len);
	int ret;

	if (pos + len > v->hdr.log_len)
		pos = 0;
	if (!v->log_live && (ret = vhdx_new_guid(v->hdr.log_guid)) < 0)
		return ret;
	memset(ent, 0, VHDX_LSEC);
	memcpy(ent, "loge", 4);
	vhdx_put32(ent + 8, (uint32_t)len);
	vhdx_put32(ent + 12, (uint32_t)pos); /* every earlier entry is applied */
	vhdx_put64(ent + 16, seq);
	vhdx_put32(ent + 24, (uint32_t)n);
	memcpy(ent + 32, v->hdr.log_guid, 16);
	vhdx_put64(ent + 48, v->real_size);
	vhdx_put64(ent + 56, v->real_size);
	for (size_t i = 0; i < n; i++) {
		uint8_t *d = ent + 64 + 32 * i, *s = ent + (1 + i) * VHDX_LSEC;
		uint8_t *sec = raw + i * VHDX_LSEC;

		ret = vhdx_key_sector(v, v->keys[i], sec, &off[i]);
		if (ret < 0)
			return ret;
		memcpy(d, "desc", 4);
		memcpy(d + 4, sec + VHDX_LSEC - 4, 4);
		memcpy(d + 8, sec, 8);
		vhdx_put64(d + 16, off[i]);
		vhdx_put64(d + 24, seq);
		memcpy(s, "data", 4);
		vhdx_put32(s + 4, (uint32_t)(seq >> 32));
		memcpy(s + 8, sec + 8, VHDX_LSEC - 12);
		vhdx_put32(s + VHDX_LSEC - 4, (uint32_t)seq);
	}
	vhdx_put32(ent + 4, vhdx_crc_skip(ent, len, 4));
	/* The entry before the header names its LogGuid: until then it is not
	 * part of the log, and the header's LogGuid is zero (replayed at open). */
	ret = vhdfmt_pwrite(v->fd, ent, len, v->hdr.log_off + pos);
	if (ret == 0 && fdatasync(v->fd) < 0)
		ret = -errno;
	if (ret == 0 && !v->log_live) {
		ret = vhdx_update_headers(v);
		v->log_live = ret == 0;
	}
	for (size_t i = 0; ret == 0 && i < n; i++)
		ret = vhdfmt_pwrite(v->fd, raw + i * VHDX_LSEC, VHDX_LSEC, off[i]);
	if (ret == 0 && fdatasync(v->fd) < 0)
		ret = -errno;
	if (ret < 0)
		return ret;
	v->log_seq = seq;
	v->log_head = pos + len;
	return 0;
}

int vhdx_log_commit(struct vhdx *v)
{
	size_t max = v->hdr.log_len / 4 / VHDX_LSEC - 1;
	uint8_t *ent, *raw;
	int ret;

	if (!v->nkeys)
		return 0;
	if (max > 126)
		max = 126; /* one descriptor sector */
	ret = vhdx_fix_end(v);
	if (ret < 0)
		return ret;
	/* The data the new metadata points at first. */
	if (fdatasync(v->fd) < 0)
		return -errno;
	ent = malloc((1 + max) * VHDX_LSEC + max * sizeof(uint64_t));
	raw = malloc(max * VHDX_LSEC);
	ret = ent && raw ? 0 : -ENOMEM;
	while (ret == 0 && v->nkeys) {
		size_t n = v->nkeys < max ? v->nkeys : max;

		/* An entry is at most a quarter of the log, so it never
		 * overwrites the one before it. */
		ret = vhdx_log_round(v, n, ent, raw);
		if (ret < 0)
			break;
		for (size_t i = 0; i < n; i++)
			vhdx_key_done(v, v->keys[i]);
		memmove(v->keys, v->keys + n, (v->nkeys - n) * sizeof(*v->keys));
		v->nkeys -= n;
	}
	free(ent);
	free(raw);
	return ret;
}

int vhdx_log_close(struct vhdx *v)
{
	if (!v->log_live)
		return 0;
	memset(v->hdr.log_guid, 0, 16);
	v->log_live = false;
	return vhdx_update_headers(v);
}
