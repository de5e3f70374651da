/* SPDX-License-Identifier: MIT */
/* qcow2 header, header extensions and snapshot table: packed on-disk structs
 * (big-endian), one decode function each, and every limit checked against the
 * file's size before anything is allocated from it. */
#include "qcow2.h"

#include "endian/byteorder.h"
#include "vhdfmt/vhdfmt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QCOW2_HDR_LAYOUT ">2IQ2IQ2IQQ2IQ3Q2IB7s"
#define QCOW2_V2_HDR_LEN 72u
#define QCOW2_V3_HDR_MIN 104u

struct qcow2_raw_ext {
	uint32_t type;
	uint32_t len;
} __attribute__((packed));
_Static_assert(sizeof(struct qcow2_raw_ext) == 8, "an extension header is 8 bytes");
#define QCOW2_EXT_LAYOUT ">2I"

#define QCOW2_EXT_END 0u
#define QCOW2_EXT_BACKING_FMT 0xe2792acau
#define QCOW2_EXT_FEATURES 0x6803f857u
#define QCOW2_EXT_DATA_FILE 0x44415441u

struct qcow2_raw_feature {
	uint8_t type; /* 0 incompatible, 1 compatible, 2 autoclear */
	uint8_t bit;
	char name[46];
} __attribute__((packed));
_Static_assert(sizeof(struct qcow2_raw_feature) == 48, "a feature entry is 48 bytes");
#define QCOW2_FEATURE_LAYOUT ">2B46s"

struct qcow2_raw_snap {
	uint64_t l1_off;
	uint32_t l1_size;
	uint16_t id_len;
	uint16_t name_len;
	uint32_t date_sec;
	uint32_t date_nsec;
	uint64_t vm_clock_nsec;
	uint32_t vm_state_size;
	uint32_t extra_len;
} __attribute__((packed));
_Static_assert(sizeof(struct qcow2_raw_snap) == 40, "a snapshot header is 40 bytes");
#define QCOW2_SNAP_LAYOUT ">QI2H2IQ2I"

static void qcow2_decode_hdr(struct qcow2_hdr *h, const uint8_t *raw, size_t len)
{
	uint8_t buf[sizeof(*h)] = { 0 };

	memcpy(buf, raw, len < sizeof(buf) ? len : sizeof(buf));
	endian_decode(h, buf, sizeof(*h), QCOW2_HDR_LAYOUT);
}

static void qcow2_decode_ext(struct qcow2_raw_ext *e, const uint8_t *raw)
{
	endian_decode(e, raw, sizeof(*e), QCOW2_EXT_LAYOUT);
}

static void qcow2_decode_feature(struct qcow2_raw_feature *f, const uint8_t *raw)
{
	endian_decode(f, raw, sizeof(*f), QCOW2_FEATURE_LAYOUT);
}

static void qcow2_decode_snap(struct qcow2_raw_snap *s, const uint8_t *raw)
{
	endian_decode(s, raw, sizeof(*s), QCOW2_SNAP_LAYOUT);
}

/* [off, off+len) inside the file, without overflow. */
static bool qcow2_in_file(const struct qcow2 *q, uint64_t off, uint64_t len)
{
	return off <= q->file_size && len <= q->file_size - off;
}

static char *qcow2_strndup(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);

	if (s) {
		memcpy(s, p, n);
		s[n] = '\0';
	}
	return s;
}

/* The magic and the version: r into q->h, with the fields version 3 added as
 * a version 2 image implies them. */
static int qcow2_check_version(struct qcow2 *q, const struct qcow2_hdr *r, size_t len)
{
	struct qcow2_hdr *h = &q->h;

	if (len < QCOW2_V2_HDR_LEN || r->magic != QCOW2_MAGIC) {
		vhdfmt_err("%s: not a qcow2 image (no QFI\\xfb magic)", q->path);
		return -EINVAL;
	}
	if (r->version != 2 && r->version != 3) {
		vhdfmt_err("%s: qcow2 version %u is not supported (2 and 3 are)", q->path,
			   r->version);
		return -ENOTSUP;
	}
	*h = *r;
	if (r->version == 2) {
		h->incompat = h->compat = h->autoclear = 0;
		h->refcount_order = 4;
		h->header_len = QCOW2_V2_HDR_LEN;
		h->compression = 0;
	} else if (len < QCOW2_V3_HDR_MIN) {
		vhdfmt_err("%s: the file ends inside the qcow2 header", q->path);
		return -EINVAL;
	} else if (h->header_len <= QCOW2_V3_HDR_MIN) {
		h->compression = 0;
	}
	return 0;
}

/* The cluster size, the header's length, the refcount width and encryption;
 * then the cluster geometry q keeps (L2 entries, subclusters). */
static int qcow2_check_geometry(struct qcow2 *q, size_t len)
{
	struct qcow2_hdr *h = &q->h;
	uint64_t csize;

	if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
	    h->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
		vhdfmt_err("%s: corrupt qcow2 header: cluster_bits %u is outside 9-21 "
			   "(512 B to 2 MiB clusters)",
			   q->path, h->cluster_bits);
		return -EINVAL;
	}
	csize = 1ull << h->cluster_bits;
	if (h->header_len < (h->version == 3 ? QCOW2_V3_HDR_MIN : QCOW2_V2_HDR_LEN) ||
	    h->header_len % 8 || h->header_len > csize || h->header_len > len) {
		vhdfmt_err("%s: corrupt qcow2 header: header_length %u", q->path,
			   h->header_len);
		return -EINVAL;
	}
	if (h->refcount_order > 6) {
		vhdfmt_err("%s: corrupt qcow2 header: refcount_order %u is above 6",
			   q->path, h->refcount_order);
		return -EINVAL;
	}
	if (h->crypt_method) {
		vhdfmt_err("%s: the image is encrypted (%s); encrypted qcow2 images are "
			   "not supported",
			   q->path,
			   h->crypt_method == 1 ? "AES-CBC" :
			   h->crypt_method == 2 ? "LUKS" :
						  "unknown method");
		return -ENOTSUP;
	}
	q->cluster_size = (uint32_t)csize;
	q->extl2 = h->incompat & QCOW2_INCOMPAT_EXTL2;
	q->entry_shift = q->extl2 ? 4 : 3;
	q->l2_entries = q->cluster_size >> q->entry_shift;
	q->sc_size = q->extl2 ? q->cluster_size / 32 : q->cluster_size;
	if (q->extl2 && h->cluster_bits < 14) {
		vhdfmt_err("%s: corrupt qcow2 header: extended L2 entries need clusters "
			   "of 16 KiB or more, not %u bytes",
			   q->path, q->cluster_size);
		return -EINVAL;
	}
	return 0;
}

/* The virtual size and the L1 table: every entry inside the file. */
static int qcow2_check_l1(struct qcow2 *q)
{
	const struct qcow2_hdr *h = &q->h;
	uint64_t csize = q->cluster_size, per_l1, need;

	if (h->size > (1ull << 56)) {
		vhdfmt_err("%s: corrupt qcow2 header: virtual size %llu is too large",
			   q->path, (unsigned long long)h->size);
		return -EFBIG;
	}
	per_l1 = (uint64_t)q->l2_entries << h->cluster_bits;
	need = (h->size + per_l1 - 1) / per_l1;
	if (h->l1_size < need) {
		vhdfmt_err("%s: corrupt qcow2 header: l1_size %u is too small for the "
			   "virtual size %llu (it needs %llu entries)",
			   q->path, h->l1_size, (unsigned long long)h->size,
			   (unsigned long long)need);
		return -EINVAL;
	}
	if ((uint64_t)h->l1_size * 8 > QCOW2_MAX_L1_BYTES ||
	    !qcow2_in_file(q, h->l1_off, (uint64_t)h->l1_size * 8)) {
		vhdfmt_err("%s: corrupt qcow2 header: the L1 table (%u entries at "
			   "offset %llu) lies past the end of the file (%llu bytes)",
			   q->path, h->l1_size, (unsigned long long)h->l1_off,
			   (unsigned long long)q->file_size);
		return -EINVAL;
	}
	if (h->l1_size && (h->l1_off & (csize - 1))) {
		vhdfmt_err("%s: corrupt qcow2 header: the L1 table offset %llu is not "
			   "cluster aligned",
			   q->path, (unsigned long long)h->l1_off);
		return -EINVAL;
	}
	return 0;
}

/* The backing file's name inside the header's cluster, and the snapshot
 * table inside the file. */
static int qcow2_check_backing_snaps(struct qcow2 *q, size_t len)
{
	const struct qcow2_hdr *h = &q->h;
	uint64_t csize = q->cluster_size;

	if (h->backing_off &&
	    (h->backing_len > QCOW2_MAX_BACKING_NAME || h->backing_off > len ||
	     h->backing_len > len - h->backing_off)) {
		vhdfmt_err("%s: corrupt qcow2 header: the backing file name (%u bytes "
			   "at offset %llu) is not inside the first cluster",
			   q->path, h->backing_len, (unsigned long long)h->backing_off);
		return -EINVAL;
	}
	if (h->nb_snapshots > QCOW2_MAX_SNAPSHOTS ||
	    (h->nb_snapshots &&
	     ((h->snapshots_off & (csize - 1)) ||
	      !qcow2_in_file(q, h->snapshots_off,
			     (uint64_t)h->nb_snapshots *
				     sizeof(struct qcow2_raw_snap))))) {
		vhdfmt_err("%s: corrupt qcow2 header: %u snapshots at offset %llu do "
			   "not fit in the file",
			   q->path, h->nb_snapshots,
			   (unsigned long long)h->snapshots_off);
		return -EINVAL;
	}
	return 0;
}

/* The header r (len bytes of it read) into q->h, checked in this order: the
 * version, the geometry, the L1 table, the backing name and snapshots. */
static int qcow2_check_hdr(struct qcow2 *q, const struct qcow2_hdr *r, size_t len)
{
	int ret = qcow2_check_version(q, r, len);

	if (ret == 0)
		ret = qcow2_check_geometry(q, len);
	if (ret == 0)
		ret = qcow2_check_l1(q);
	if (ret == 0)
		ret = qcow2_check_backing_snaps(q, len);
	return ret;
}

/* The name the feature table gives an incompatible bit, into out. */
static void qcow2_feature_name(const uint8_t *tab, uint32_t tlen, unsigned bit, char *out,
			       size_t olen)
{
	struct qcow2_raw_feature f;

	snprintf(out, olen, "unnamed");
	for (uint32_t i = 0; tab && i + sizeof(f) <= tlen; i += sizeof(f)) {
		qcow2_decode_feature(&f, tab + i);
		if (f.type == 0 && f.bit == bit) {
			snprintf(out, olen, "'%.*s'",
				 (int)strnlen(f.name, sizeof(f.name)), f.name);
			return;
		}
	}
}

/* The extensions between the header and the end of raw (one cluster at most). */
static int qcow2_parse_exts(struct qcow2 *q, const uint8_t *raw, size_t len,
			    const uint8_t **ftab, uint32_t *flen)
{
	size_t off = q->h.version == 3 ? q->h.header_len : QCOW2_V2_HDR_LEN;
	struct qcow2_raw_ext e;

	while (off + sizeof(e) <= len) {
		qcow2_decode_ext(&e, raw + off);
		off += sizeof(e);
		if (e.type == QCOW2_EXT_END)
			return 0;
		if (e.len > len - off) {
			vhdfmt_err(
				"%s: corrupt qcow2 header: extension 0x%08x (%u bytes) "
				"runs past the first cluster",
				q->path, e.type, e.len);
			return -EINVAL;
		}
		if (e.type == QCOW2_EXT_BACKING_FMT && !q->backing_fmt) {
			q->backing_fmt = qcow2_strndup(
				raw + off, strnlen((const char *)raw + off, e.len));
			if (!q->backing_fmt)
				return -ENOMEM;
		} else if (e.type == QCOW2_EXT_FEATURES) {
			*ftab = raw + off;
			*flen = e.len;
		}
		/* Others (bitmaps, the encryption header, the data file name) need
		 * nothing here: the header's bits refuse what would. */
		off += (e.len + 7) & ~7u;
	}
	return 0;
}

int qcow2_parse_header(struct qcow2 *q, const uint8_t *raw, size_t len)
{
	struct qcow2_hdr r;
	const uint8_t *ftab = NULL;
	uint32_t flen = 0;
	uint64_t unknown;
	char name[64];
	int ret;

	qcow2_decode_hdr(&r, raw, len);
	ret = qcow2_check_hdr(q, &r, len);
	if (ret)
		return ret;
	ret = qcow2_parse_exts(q, raw, len, &ftab, &flen);
	if (ret) {
		if (ret == -ENOMEM)
			vhdfmt_err("out of memory");
		return ret;
	}
	unknown = q->h.incompat & ~QCOW2_INCOMPAT_KNOWN;
	if (unknown) {
		unsigned bit = (unsigned)__builtin_ctzll(unknown);

		qcow2_feature_name(ftab, flen, bit, name, sizeof(name));
		vhdfmt_err("%s: the image uses incompatible feature bit %u (%s), which "
			   "this plugin does not know",
			   q->path, bit, name);
		return -ENOTSUP;
	}
	if (q->h.incompat & QCOW2_INCOMPAT_DATA_FILE) {
		vhdfmt_err("%s: the image keeps its data in an external data file, "
			   "which is not supported",
			   q->path);
		return -ENOTSUP;
	}
	if ((q->h.compression != QCOW2_ZLIB &&
	     !(q->h.incompat & QCOW2_INCOMPAT_COMPRESSION)) ||
	    q->h.compression > QCOW2_ZSTD) {
		vhdfmt_err("%s: corrupt qcow2 header: compression type %u", q->path,
			   q->h.compression);
		return -EINVAL;
	}
	if (q->h.backing_off && q->h.backing_len) {
		q->backing = qcow2_strndup(raw + q->h.backing_off, q->h.backing_len);
		if (!q->backing) {
			vhdfmt_err("out of memory");
			return -ENOMEM;
		}
		if (strlen(q->backing) != q->h.backing_len) {
			vhdfmt_err(
				"%s: corrupt qcow2 header: the backing file name holds "
				"a NUL byte",
				q->path);
			return -EINVAL;
		}
	}
	return 0;
}

/* One snapshot table entry's strings: n bytes at off, NUL-terminated. */
static int qcow2_read_str(struct qcow2 *q, uint64_t off, size_t n, char **out)
{
	*out = malloc(n + 1);
	if (!*out)
		return -ENOMEM;
	(*out)[n] = '\0';
	return vhdfmt_pread(q->fd, *out, n, off);
}

/* The snapshot table (names, ids, L1 tables, sizes), each entry's size
 * checked before reading. */
static int qcow2_read_snapshots(struct qcow2 *q)
{
	uint64_t off = q->h.snapshots_off;
	uint8_t raw[sizeof(struct qcow2_raw_snap)], extra[16];
	struct qcow2_raw_snap s;
	int ret;

	if (!q->h.nb_snapshots)
		return 0;
	q->snaps = calloc(q->h.nb_snapshots, sizeof(*q->snaps));
	if (!q->snaps)
		return -ENOMEM;
	for (uint32_t i = 0; i < q->h.nb_snapshots; i++) {
		struct qcow2_snap *sn = &q->snaps[i];
		uint64_t elen, at;

		if (!qcow2_in_file(q, off, sizeof(raw)))
			goto corrupt;
		ret = vhdfmt_pread(q->fd, raw, sizeof(raw), off);
		if (ret)
			return ret;
		qcow2_decode_snap(&s, raw);
		elen = sizeof(raw) + (uint64_t)s.extra_len + s.id_len + s.name_len;
		if (!qcow2_in_file(q, off, elen) || s.extra_len > (1u << 20))
			goto corrupt;
		q->nsnap = i + 1;
		sn->l1_off = s.l1_off;
		sn->l1_size = s.l1_size;
		at = off + sizeof(raw);
		/* Version 3's extra data: the VM state size, then the disk size. */
		if (s.extra_len >= 16) {
			ret = vhdfmt_pread(q->fd, extra, 16, at);
			if (ret)
				return ret;
			sn->size = get_be64(extra + 8);
		}
		at += s.extra_len;
		ret = qcow2_read_str(q, at, s.id_len, &sn->id);
		if (ret == 0)
			ret = qcow2_read_str(q, at + s.id_len, s.name_len, &sn->name);
		if (ret)
			return ret;
		off += (elen + 7) & ~7ull;
	}
	q->snaps_len = off - q->h.snapshots_off;
	return 0;
corrupt:
	vhdfmt_err("%s: corrupt qcow2 snapshot table: entry %u runs past the end of "
		   "the file",
		   q->path, q->nsnap);
	return -EINVAL;
}

void qcow2_encode_hdr(uint8_t *raw, const struct qcow2_hdr *h)
{
	endian_encode(raw, h, sizeof(*h), QCOW2_HDR_LAYOUT);
}

int qcow2_read_header(struct qcow2 *q)
{
	size_t len = q->file_size < (1u << QCOW2_MAX_CLUSTER_BITS) ?
			     (size_t)q->file_size :
			     (size_t)1 << QCOW2_MAX_CLUSTER_BITS;
	uint8_t *raw;
	int ret;

	if (len < QCOW2_V2_HDR_LEN) {
		vhdfmt_err("%s: not a qcow2 image (%llu bytes is shorter than a header)",
			   q->path, (unsigned long long)q->file_size);
		return -EINVAL;
	}
	raw = malloc(len);
	if (!raw) {
		vhdfmt_err("out of memory");
		return -ENOMEM;
	}
	ret = vhdfmt_pread(q->fd, raw, len, 0);
	if (ret == 0) {
		uint32_t cb = get_be32(raw + 20);

		/* Extensions and the backing name live in the first cluster. */
		if (cb >= QCOW2_MIN_CLUSTER_BITS && cb <= QCOW2_MAX_CLUSTER_BITS &&
		    len > (1u << cb))
			len = 1u << cb;
		ret = qcow2_parse_header(q, raw, len);
	} else {
		vhdfmt_err("%s: cannot read the header: %s", q->path, strerror(-ret));
	}
	free(raw);
	if (ret == 0) {
		ret = qcow2_read_snapshots(q);
		if (ret == -ENOMEM || (ret && ret != -EINVAL))
			vhdfmt_err("%s: cannot read the snapshot table: %s", q->path,
				   strerror(-ret));
	}
	return ret;
}
