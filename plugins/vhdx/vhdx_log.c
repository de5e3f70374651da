/* SPDX-License-Identifier: MIT */
/* vhdx_log: the two headers and the log of a VHDX image ([MS-VHDX] 2.2.2, 2.3).
 * See vhdx.c for the order in which metadata reaches the file. */
#include "vhdx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- Headers ----------------------------------------------------------------------- */

int vhdx_read_headers(struct vhdx *v)
{
	uint8_t raw[2][VHDX_LSEC];
	struct vhdx_header h[2];
	bool ok[2];
	int ret, cur;

	for (int i = 0; i < 2; i++) {
		ret = vhdfmt_pread(v->img.fd, raw[i], VHDX_LSEC, VHDX_HDR_OFF(i));
		if (ret < 0) {
			vhdfmt_err("%s: cannot read the header at %u KiB: %s",
				   v->img.path, 64 + 64 * i, strerror(-ret));
			return ret;
		}
		ok[i] = vhdxfmt_header_decode(raw[i], &h[i]);
	}
	if (!ok[0] && !ok[1]) {
		vhdfmt_err(
			"%s: no valid VHDX header: both copies (at 64 and 128 KiB) have "
			"a bad signature or CRC-32C checksum",
			v->img.path);
		return -EINVAL;
	}
	if (ok[0] && ok[1] && h[0].seq == h[1].seq &&
	    memcmp(raw[0] + 8, raw[1] + 8, VHDX_LSEC - 8) != 0) {
		vhdfmt_err("%s: both headers have sequence number %llu but differ; "
			   "neither is current",
			   v->img.path, (unsigned long long)h[0].seq);
		return -EINVAL;
	}
	cur = !ok[0] || (ok[1] && h[1].seq > h[0].seq);
	if (!ok[!cur])
		dc_debug("%s: header %d is damaged; using header %d", v->img.path,
			 !cur + 1, cur + 1);
	v->hdr = h[cur];
	v->hdr_slot = cur;
	if (v->hdr.version != 1) {
		vhdfmt_err("%s: VHDX version %u, expected 1", v->img.path,
			   v->hdr.version);
		return -EINVAL;
	}
	if (v->hdr.log_version != 0 && !vhdx_guid_zero(v->hdr.log_guid)) {
		vhdfmt_err("%s: log version %u, expected 0 (the log needs replay)",
			   v->img.path, v->hdr.log_version);
		return -EINVAL;
	}
	if (v->hdr.log_len == 0)
		return 0;
	if (v->hdr.log_len > VHDX_MAX_LOG) {
		vhdfmt_err("%s: a log of %u bytes; at most %u are supported", v->img.path,
			   v->hdr.log_len, VHDX_MAX_LOG);
		return -EINVAL;
	}
	if (v->hdr.log_len % VHDX_MB || v->hdr.log_off % VHDX_MB ||
	    v->hdr.log_off < VHDX_MB || v->hdr.log_off > v->real_size ||
	    v->hdr.log_len > v->real_size - v->hdr.log_off) {
		vhdfmt_err("%s: the log (%u bytes at offset %llu) is not 1 MiB-aligned "
			   "inside the file of %llu bytes",
			   v->img.path, v->hdr.log_len,
			   (unsigned long long)v->hdr.log_off,
			   (unsigned long long)v->real_size);
		return -EINVAL;
	}
	return 0;
}

static int vhdx_write_header(struct vhdx *v)
{
	uint8_t buf[VHDX_LSEC];
	struct vhdx_header h = v->hdr;
	int slot = !v->hdr_slot, ret;

	h.seq++;
	vhdxfmt_header_encode(&h, buf);
	ret = vhdfmt_pwrite(v->img.fd, buf, sizeof(buf), VHDX_HDR_OFF(slot));
	if (ret == 0 && fdatasync(v->img.fd) < 0)
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
	if ((fw && (ret = vhdfmt_new_uid(v->hdr.file_write)) < 0) ||
	    (dw && (ret = vhdfmt_new_uid(v->hdr.data_write)) < 0))
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
	int ret = vhdfmt_pread(v->img.fd, buf, first, v->hdr.log_off + pos);

	if (ret == 0 && first < len)
		ret = vhdfmt_pread(v->img.fd, buf + first, len - first, v->hdr.log_off);
	return ret;
}

/* Where a replayed update may write: not the identifier and headers (never
 * changed after creation), not the log itself, not past the size limit. */
static bool vhdx_log_target_ok(const struct vhdx *v, uint64_t off, uint64_t len)
{
	return off % VHDX_LSEC == 0 && len && off >= VHDX_RT_OFF(0) &&
	       off < VHDX_MAX_FILE && len <= VHDX_MAX_FILE - off &&
	       !vhdfmt_overlap(off, len, v->hdr.log_off, v->hdr.log_len);
}

/* Sectors of descriptors at the start of an entry of ndesc descriptors. */
static uint64_t vhdx_log_dsec(uint32_t ndesc)
{
	return ((uint64_t)ndesc * sizeof(struct vhdx_log_desc) +
		sizeof(struct vhdx_log_header) + VHDX_LSEC - 1) /
	       VHDX_LSEC;
}

/* One update of a log entry: zeroes, or a 4 KiB sector whose middle lies in
 * one of the entry's data sectors. */
struct vhdx_update {
	uint64_t off, len;
	struct vhdx_log_desc d; /* a data update's descriptor */
	const uint8_t *mid;	/* its sector's bytes 8..4092, NULL for zeroes */
};

/* Descriptor k of the whole entry buf (e), checked against the entry and the
 * file; *ndata counts the data sectors the descriptors before it used. */
static bool vhdx_log_update(const struct vhdx *v, const uint8_t *buf,
			    const struct vhdx_lent *e, uint32_t k, uint64_t *ndata,
			    struct vhdx_update *u)
{
	const uint8_t *raw = buf + sizeof(struct vhdx_log_header) +
			     sizeof(struct vhdx_log_desc) * (uint64_t)k;
	uint64_t at = (vhdx_log_dsec(e->ndesc) + *ndata) * VHDX_LSEC;
	struct vhdx_log_zero z;
	struct vhdx_log_data ds;

	if (!memcmp(raw, "zero", 4)) {
		vhdx_log_zero_decode(&z, raw);
		*u = (struct vhdx_update){ .off = z.off, .len = z.len };
		return z.seq == e->seq && vhdx_log_target_ok(v, z.off, z.len) &&
		       z.len % VHDX_LSEC == 0;
	}
	if (memcmp(raw, "desc", 4) != 0)
		return false;
	vhdx_log_desc_decode(&u->d, raw);
	if (u->d.seq != e->seq || !vhdx_log_target_ok(v, u->d.off, VHDX_LSEC) ||
	    at + VHDX_LSEC > e->len)
		return false;
	vhdx_log_data_decode(&ds, buf + at);
	if (memcmp(ds.signature, "data", 4) != 0 ||
	    ds.seq_high != (uint32_t)(e->seq >> 32) || ds.seq_low != (uint32_t)e->seq)
		return false;
	u->off = u->d.off;
	u->len = VHDX_LSEC;
	u->mid = buf + at + offsetof(struct vhdx_log_data, data);
	++*ndata;
	return true;
}

/* Validate the entry at pos (every field, descriptor and data sector, and the
 * checksum); the whole entry is returned in *out when out is not NULL. */
static bool vhdx_log_entry(struct vhdx *v, uint64_t pos, struct vhdx_lent *e,
			   uint8_t **out)
{
	uint8_t h[VHDX_LSEC], *buf = NULL;
	struct vhdx_log_header lh;
	struct vhdx_update u;
	uint64_t ndata = 0;
	bool ok = false;

	if (vhdx_log_read(v, h, pos, VHDX_LSEC) < 0)
		return false;
	vhdx_log_header_decode(&lh, h);
	if (memcmp(lh.signature, "loge", 4) != 0 ||
	    memcmp(lh.log_guid, v->hdr.log_guid, 16) != 0)
		return false;
	*e = (struct vhdx_lent){ .pos = pos,
				 .seq = lh.seq,
				 .flushed = lh.flushed,
				 .last = lh.last,
				 .len = lh.len,
				 .tail = lh.tail,
				 .ndesc = lh.ndesc };
	if (e->len % VHDX_LSEC || e->len < VHDX_LSEC || e->len > v->hdr.log_len ||
	    e->tail % VHDX_LSEC || e->tail >= v->hdr.log_len || e->seq == 0 ||
	    vhdx_log_dsec(e->ndesc) * VHDX_LSEC > e->len || e->last > VHDX_MAX_FILE)
		return false;
	buf = malloc(e->len);
	if (!buf || vhdx_log_read(v, buf, pos, e->len) < 0 ||
	    !vhdxfmt_sealed(buf, e->len))
		goto out;
	for (uint32_t i = 0; i < e->ndesc; i++)
		if (!vhdx_log_update(v, buf, e, i, &ndata, &u))
			goto out;
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
		uint64_t ndata = 0;

		if (!vhdx_log_entry(v, act[i].pos, &e, &buf)) {
			ret = -EIO; /* it was valid a moment ago */
			break;
		}
		for (uint32_t k = 0; k < e.ndesc && ret == 0; k++) {
			struct vhdx_update u;
			struct vhdx_ovl o;

			vhdx_log_update(v, buf, &e, k, &ndata, &u); /* checked above */
			o = (struct vhdx_ovl){ u.off, u.len, NULL };
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
			if (u.mid) {
				o.data = malloc(VHDX_LSEC);
				if (!o.data) {
					ret = -ENOMEM;
					break;
				}
				memcpy(o.data, u.d.leading, 8);
				memcpy(o.data + 8, u.mid, VHDX_LSEC - 12);
				memcpy(o.data + VHDX_LSEC - 4, u.d.trailing, 4);
			}
			ovl[cnt++] = o;
		}
		free(buf);
	}
	*out = ovl;
	*nout = cnt;
	return ret;
}

/* LogGuid is set but the log holds no valid entry. Entries are made durable
 * before anything is applied, so such a log never changed the file (as qemu
 * reads it): a writable open just clears LogGuid. */
static int vhdx_log_none(struct vhdx *v)
{
	int ret;

	dc_debug("%s: LogGuid is set but the log holds no valid entry; nothing to "
		 "replay",
		 v->img.path);
	if (v->ro)
		return 0;
	memset(v->hdr.log_guid, 0, 16);
	ret = vhdx_session(v, false);
	if (ret == 0 && !v->session)
		ret = vhdx_update_headers(v);
	if (ret < 0)
		vhdfmt_err("%s: cannot replay the log: %s", v->img.path, strerror(-ret));
	return ret;
}

/* A writable open replays the collected updates into the file, with a new
 * FileWriteGuid first (2.2.2), then clears LogGuid. end: the file's end after
 * the replay. */
static int vhdx_log_apply(struct vhdx *v, uint64_t end)
{
	int ret = vhdx_session(v, false);

	for (size_t i = 0; ret == 0 && i < v->novl; i++)
		ret = v->ovl[i].data ?
			      vhdfmt_pwrite(v->img.fd, v->ovl[i].data, v->ovl[i].len,
					    v->ovl[i].off) :
			      vhdx_zero_file(v->img.fd, v->ovl[i].off, v->ovl[i].len);
	if (ret == 0 && end > v->real_size && ftruncate(v->img.fd, (off_t)end) < 0)
		ret = -errno;
	if (ret == 0 && fdatasync(v->img.fd) < 0)
		ret = -errno;
	if (ret == 0) {
		memset(v->hdr.log_guid, 0, 16);
		ret = vhdx_update_headers(v);
	}
	vhdx_ovl_free(v);
	if (ret == 0 && end > v->real_size)
		v->real_size = v->file_size = end;
	v->log_state = VHDX_LOG_REPLAYED;
	if (ret < 0)
		vhdfmt_err("%s: cannot replay the log: %s", v->img.path, strerror(-ret));
	return ret;
}

int vhdx_log_open(struct vhdx *v)
{
	struct vhdx_lent *act = NULL, *head;
	uint64_t end;
	size_t n = 0;
	int ret;

	if (vhdx_guid_zero(v->hdr.log_guid))
		return 0;
	if (v->hdr.log_len == 0) {
		vhdfmt_err("%s: the header names a log (LogGuid set) of length 0",
			   v->img.path);
		return -EINVAL;
	}
	ret = vhdx_log_find(v, &act, &n);
	if (ret < 0) {
		vhdfmt_err("%s: out of memory scanning the log", v->img.path);
		return ret;
	}
	if (!n) {
		free(act);
		return vhdx_log_none(v);
	}
	head = &act[n - 1];
	if (head->flushed > v->real_size) {
		vhdfmt_err("%s: the file is truncated: %llu bytes, but the log says at "
			   "least %llu were written",
			   v->img.path, (unsigned long long)v->real_size,
			   (unsigned long long)head->flushed);
		free(act);
		return -EINVAL;
	}
	end = head->last;
	ret = vhdx_log_collect(v, act, n, &v->ovl, &v->novl);
	free(act);
	if (ret < 0) {
		vhdfmt_err("%s: cannot read the log: %s", v->img.path, strerror(-ret));
		return ret;
	}
	for (size_t i = 0; i < v->novl; i++)
		if (v->ovl[i].off + v->ovl[i].len > end)
			end = v->ovl[i].off + v->ovl[i].len;
	if (!v->ro)
		return vhdx_log_apply(v, end);
	dc_debug("%s: replaying %zu log updates in memory (opened read-only)",
		 v->img.path, v->novl);
	if (end > v->file_size)
		v->file_size = end;
	v->log_state = VHDX_LOG_IN_MEMORY;
	return 0;
}

/* --- Writing through the log --------------------------------------------------------- */

/* Entry seq at ring position pos for the first n queued sectors: their
 * contents into raw, their file offsets into off, the sealed entry into ent. */
static int vhdx_log_encode(struct vhdx *v, size_t n, uint64_t seq, uint64_t pos,
			   uint8_t *ent, uint8_t *raw, uint64_t *off)
{
	uint64_t len = (1 + n) * VHDX_LSEC;
	struct vhdx_log_header h = {
		.signature = "loge",
		.len = (uint32_t)len,
		.tail = (uint32_t)pos, /* every earlier entry is applied */
		.seq = seq,
		.ndesc = (uint32_t)n,
		.flushed = v->real_size,
		.last = v->real_size,
	};
	struct vhdx_log_desc d = { .signature = "desc", .seq = seq };
	struct vhdx_log_data ds = { .signature = "data",
				    .seq_high = (uint32_t)(seq >> 32),
				    .seq_low = (uint32_t)seq };
	int ret;

	memcpy(h.log_guid, v->hdr.log_guid, 16);
	memset(ent, 0, VHDX_LSEC);
	vhdx_log_header_encode(ent, &h);
	for (size_t i = 0; i < n; i++) {
		uint8_t *sec = raw + i * VHDX_LSEC;

		ret = vhdx_key_sector(v, v->keys[i], sec, &off[i]);
		if (ret < 0)
			return ret;
		memcpy(d.trailing, sec + VHDX_LSEC - 4, 4);
		memcpy(d.leading, sec, 8);
		d.off = off[i];
		vhdx_log_desc_encode(ent + sizeof(h) + sizeof(d) * i, &d);
		memcpy(ds.data, sec + 8, sizeof(ds.data));
		vhdx_log_data_encode(ent + (1 + i) * VHDX_LSEC, &ds);
	}
	vhdxfmt_seal(ent, len);
	return 0;
}

/* One entry of up to n queued sectors: log it, make it durable, apply it. */
static int vhdx_log_round(struct vhdx *v, size_t n, uint8_t *ent, uint8_t *raw)
{
	uint64_t seq = v->log_seq + 1, pos = v->log_head, len = (1 + n) * VHDX_LSEC;
	uint64_t *off = (uint64_t *)(ent + len);
	int ret;

	if (pos + len > v->hdr.log_len)
		pos = 0;
	if (!v->log_live && (ret = vhdfmt_new_uid(v->hdr.log_guid)) < 0)
		return ret;
	ret = vhdx_log_encode(v, n, seq, pos, ent, raw, off);
	if (ret < 0)
		return ret;
	/* The entry before the header names its LogGuid: until then it is not
	 * part of the log, and the header's LogGuid is zero (replayed at open). */
	ret = vhdfmt_pwrite(v->img.fd, ent, len, v->hdr.log_off + pos);
	if (ret == 0 && fdatasync(v->img.fd) < 0)
		ret = -errno;
	if (ret == 0 && !v->log_live) {
		ret = vhdx_update_headers(v);
		v->log_live = ret == 0;
	}
	for (size_t i = 0; ret == 0 && i < n; i++)
		ret = vhdfmt_pwrite(v->img.fd, raw + i * VHDX_LSEC, VHDX_LSEC, off[i]);
	if (ret == 0 && fdatasync(v->img.fd) < 0)
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
	if (fdatasync(v->img.fd) < 0)
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
		__atomic_store_n(&v->nkeys, v->nkeys - n, __ATOMIC_RELAXED);
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
