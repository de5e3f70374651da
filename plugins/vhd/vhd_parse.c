/* SPDX-License-Identifier: MIT */
/* vhd_parse: an image's footers, dynamic header, parent locator entries and
 * BAT, each checked against the file before it is used. */
#include "vhd.h"

#include "endian/byteorder.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- Parsing ------------------------------------------------------------------ */

static const char *vhd_footer_why(enum vhdfmt_status s)
{
	switch (s) {
	case VHDFMT_BAD_COOKIE:
		return "no \"conectix\" cookie";
	case VHDFMT_BAD_CHECKSUM:
		return "bad checksum";
	case VHDFMT_BAD_VERSION:
		return "unsupported version (expected 0x00010000)";
	default:
		return "valid";
	}
}

/* The footer of a fixed image, checked as vhd1 checks it (docs/openvmm-compat.md
 * §2.2). */
static int vhd_parse_fixed(const char *path, struct vhd_meta *m)
{
	if (m->file_size % VHD_SECTOR) {
		vhdfmt_err("%s: fixed VHD of %llu bytes: expected a multiple of 512",
			   path, (unsigned long long)m->file_size);
		return -EINVAL;
	}
	if (m->f.current_size > m->file_size - VHD_FOOTER_SIZE ||
	    m->f.current_size % VHD_SECTOR) {
		vhdfmt_err("%s: invalid disk size %llu: expected a multiple of 512 of at "
			   "most %llu (the file without its footer)",
			   path, (unsigned long long)m->f.current_size,
			   (unsigned long long)(m->file_size - VHD_FOOTER_SIZE));
		return -EINVAL;
	}
	m->limit = m->file_size - VHD_FOOTER_SIZE;
	return 0;
}

/* Pick the footer: the one at the end, or for a dynamic image whose end footer
 * is damaged, the copy at offset 0. Both valid but different: refuse. */
static int vhd_parse_footers(int fd, const char *path, struct vhd_meta *m)
{
	uint8_t end[VHD_FOOTER_SIZE], copy[VHD_FOOTER_SIZE];
	enum vhdfmt_status es, cs;
	struct vhd_footer ef, cf;
	int ret;

	if (m->file_size < VHD_FOOTER_SIZE) {
		vhdfmt_err("%s: file of %llu bytes is too small for a VHD (a 512-byte "
			   "footer at least)",
			   path, (unsigned long long)m->file_size);
		return -EINVAL;
	}
	ret = vhdfmt_pread(fd, end, sizeof(end), m->file_size - VHD_FOOTER_SIZE);
	if (ret == 0)
		ret = vhdfmt_pread(fd, copy, sizeof(copy), 0);
	if (ret < 0) {
		vhdfmt_err("%s: cannot read the footer: %s", path, strerror(-ret));
		return ret;
	}
	es = vhdfmt_footer_decode(end, &ef);
	cs = vhdfmt_footer_decode(copy, &cf);
	m->end_ok = es == VHDFMT_OK;
	m->copy_ok = cs == VHDFMT_OK &&
		     (cf.disk_type == VHD_TYPE_DYNAMIC || cf.disk_type == VHD_TYPE_DIFF);
	if (m->end_ok) {
		m->f = ef;
		memcpy(m->footer_raw, end, sizeof(end));
		if (ef.disk_type == VHD_TYPE_FIXED) {
			m->copy_ok = false; /* offset 0 is data */
			return 0;
		}
		if (m->copy_ok &&
		    (cf.disk_type != ef.disk_type || cf.current_size != ef.current_size ||
		     cf.data_offset != ef.data_offset ||
		     memcmp(cf.unique_id, ef.unique_id, 16) != 0)) {
			vhdfmt_err(
				"%s: the footer and its copy at offset 0 disagree (type "
				"%u/%u, size %llu/%llu); refusing to guess which is right",
				path, ef.disk_type, cf.disk_type,
				(unsigned long long)ef.current_size,
				(unsigned long long)cf.current_size);
			return -EINVAL;
		}
		m->limit = m->file_size - VHD_FOOTER_SIZE;
		return 0;
	}
	if (m->copy_ok) {
		m->f = cf;
		memcpy(m->footer_raw, copy, sizeof(copy));
		m->limit = m->file_size;
		dc_debug("%s: footer at the end: %s; using the copy at offset 0", path,
			 vhd_footer_why(es));
		return 0;
	}
	vhdfmt_err("%s: not a VHD: the footer in the last 512 bytes has %s", path,
		   vhd_footer_why(es));
	return -EINVAL;
}

/* Check a structure [off, off+len) against the file and the fixed metadata. */
static int vhd_check_range(const char *path, const struct vhd_meta *m, const char *what,
			   uint64_t off, uint64_t len)
{
	if (off < VHD_FOOTER_SIZE || off > m->limit || len > m->limit - off) {
		vhdfmt_err("%s: %s at offset %llu (+%llu bytes) lies outside the image "
			   "(data area 512..%llu)",
			   path, what, (unsigned long long)off, (unsigned long long)len,
			   (unsigned long long)m->limit);
		return -EINVAL;
	}
	if (m->header_off && vhdfmt_overlap(off, len, m->header_off, VHD_HEADER_SIZE)) {
		vhdfmt_err("%s: %s at offset %llu overlaps the dynamic header at %llu",
			   path, what, (unsigned long long)off,
			   (unsigned long long)m->header_off);
		return -EINVAL;
	}
	return 0;
}

/* The parent locators of a differencing image: those this plugin reads must
 * lie inside the image, clear of the header and the BAT. */
static int vhd_parse_locators(const char *path, struct vhd_meta *m)
{
	for (int i = 0; i < VHD_NLOC; i++) {
		struct vhd_parent_locator *l = &m->dh.loc[i];
		char what[32];
		int ret;

		if (l->code != VHD_W2KU && l->code != VHD_W2RU && l->code != VHD_WI2K &&
		    l->code != VHD_WI2R && l->code != VHD_MACX) {
			l->code = 0; /* none, or a kind we never read (Mac alias) */
			continue;
		}
		snprintf(what, sizeof(what), "parent locator %d", i);
		if (l->len > VHD_LOC_MAX) {
			vhdfmt_err("%s: %s is %u bytes long; at most %u expected", path,
				   what, l->len, VHD_LOC_MAX);
			return -EINVAL;
		}
		ret = vhd_check_range(path, m, what, l->offset, l->len);
		if (ret)
			return ret;
		if (vhdfmt_overlap(l->offset, l->len, m->bat_off, m->bat_bytes)) {
			vhdfmt_err("%s: %s at offset %llu overlaps the BAT", path, what,
				   (unsigned long long)l->offset);
			return -EINVAL;
		}
	}
	return 0;
}

static int vhd_parse_header(int fd, const char *path, struct vhd_meta *m)
{
	uint8_t raw[VHD_HEADER_SIZE];
	uint64_t need;
	uint32_t bs;
	int ret;

	ret = vhd_check_range(path, m, "dynamic header", m->f.data_offset,
			      VHD_HEADER_SIZE);
	if (ret)
		return ret;
	ret = vhdfmt_pread(fd, raw, sizeof(raw), m->f.data_offset);
	if (ret < 0) {
		vhdfmt_err("%s: cannot read the dynamic header: %s", path,
			   strerror(-ret));
		return ret;
	}
	switch (vhdfmt_dyn_decode(raw, &m->dh)) {
	case VHDFMT_BAD_COOKIE:
		vhdfmt_err("%s: no \"cxsparse\" dynamic header at offset %llu", path,
			   (unsigned long long)m->f.data_offset);
		return -EINVAL;
	case VHDFMT_BAD_CHECKSUM:
		vhdfmt_err("%s: dynamic header checksum 0x%08x, expected 0x%08x", path,
			   m->dh.checksum,
			   vhdfmt_checksum(raw, sizeof(raw), VHD_HEADER_CHECKSUM_OFF));
		return -EINVAL;
	case VHDFMT_BAD_VERSION:
		vhdfmt_err("%s: dynamic header version 0x%08x, expected 0x00010000", path,
			   m->dh.version);
		return -EINVAL;
	case VHDFMT_OK:
		break;
	}
	m->header_off = m->f.data_offset;
	m->bat_off = m->dh.table_offset;
	m->max_entries = m->dh.max_entries;
	bs = m->dh.block_size;
	if (bs < VHD_MIN_BLOCK || bs > VHD_MAX_BLOCK || (bs & (bs - 1))) {
		vhdfmt_err("%s: block size %u: expected a power of two from 512 bytes to "
			   "256 MiB",
			   path, bs);
		return -EINVAL;
	}
	m->block_size = bs;
	m->spb = bs / VHD_SECTOR;
	m->spb_shift = (unsigned)__builtin_ctz(m->spb);
	m->bitmap_bytes = (uint32_t)vhdfmt_round_up((m->spb + 7) / 8, VHD_SECTOR);
	if (m->f.current_size % VHD_SECTOR) {
		vhdfmt_err("%s: disk size %llu is not a multiple of 512", path,
			   (unsigned long long)m->f.current_size);
		return -EINVAL;
	}
	need = m->f.current_size / bs + (m->f.current_size % bs != 0); /* no wrap */
	if (need > m->max_entries) {
		vhdfmt_err(
			"%s: the BAT has %u entries but a disk of %llu bytes needs %llu "
			"blocks of %u bytes",
			path, m->max_entries, (unsigned long long)m->f.current_size,
			(unsigned long long)need, bs);
		return -EINVAL;
	}
	if (m->max_entries > VHD_MAX_ENTRIES) {
		vhdfmt_err("%s: the BAT has %u entries; at most %u are supported", path,
			   m->max_entries, VHD_MAX_ENTRIES);
		return -EINVAL;
	}
	m->nblocks = (uint32_t)need;
	m->bat_bytes = vhdfmt_round_up((uint64_t)m->max_entries * 4, VHD_SECTOR);
	ret = vhd_check_range(path, m, "BAT", m->bat_off, m->bat_bytes);
	if (ret)
		return ret;
	if (m->f.disk_type == VHD_TYPE_DIFF)
		return vhd_parse_locators(path, m);
	/* Only a differencing image's locators are ever read. */
	memset(m->dh.loc, 0, sizeof(m->dh.loc));
	return 0;
}

/* Footer(s) and, for dynamic and differencing images, the dynamic header and
 * parent locators; not the BAT. */
int vhd_parse(int fd, const char *path, struct vhd_meta *m)
{
	struct stat st;
	int ret;

	memset(m, 0, sizeof(*m));
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		vhdfmt_err("%s: stat failed: %s", path, strerror(errno));
		return ret;
	}
	if (!S_ISREG(st.st_mode)) {
		vhdfmt_err("%s: not a regular file", path);
		return -EINVAL;
	}
	m->file_size = (uint64_t)st.st_size;
	ret = vhd_parse_footers(fd, path, m);
	if (ret)
		return ret;
	switch (m->f.disk_type) {
	case VHD_TYPE_FIXED:
		return vhd_parse_fixed(path, m);
	case VHD_TYPE_DYNAMIC:
	case VHD_TYPE_DIFF:
		return vhd_parse_header(fd, path, m);
	default:
		vhdfmt_err(
			"%s: unsupported disk type %u (expected 2 fixed, 3 dynamic or 4 "
			"differencing)",
			path, m->f.disk_type);
		return -EINVAL;
	}
}

static int vhd_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Block i at off (tsize bytes with its bitmap): inside the data area, clear of
 * the header, the BAT and the parent locators. */
static int vhd_check_block(const struct vhd_img *v, uint64_t i, uint64_t off,
			   uint64_t tsize)
{
	const struct vhd_meta *m = &v->m;
	char what[48];
	int ret;

	snprintf(what, sizeof(what), "block %llu", (unsigned long long)i);
	ret = vhd_check_range(v->img.path, m, what, off, tsize);
	if (ret)
		return ret;
	if (vhdfmt_overlap(off, tsize, m->bat_off, m->bat_bytes)) {
		vhdfmt_err("%s: block %llu at offset %llu overlaps the BAT", v->img.path,
			   (unsigned long long)i, (unsigned long long)off);
		return -EINVAL;
	}
	for (int l = 0; l < VHD_NLOC; l++) {
		if (m->dh.loc[l].code &&
		    vhdfmt_overlap(off, tsize, m->dh.loc[l].offset, m->dh.loc[l].len)) {
			vhdfmt_err("%s: block %llu at offset %llu overlaps parent "
				   "locator %d",
				   v->img.path, (unsigned long long)i,
				   (unsigned long long)off, l);
			return -EINVAL;
		}
	}
	return 0;
}

/* No two of the n allocated blocks (sector offsets, sorted) overlap. */
static int vhd_check_disjoint(const struct vhd_img *v, const uint32_t *sorted, uint32_t n,
			      uint64_t tsize)
{
	for (uint32_t i = 1; i < n; i++) {
		if (vhd_block_off(sorted[i - 1]) + tsize > vhd_block_off(sorted[i])) {
			vhdfmt_err("%s: blocks at offsets %llu and %llu overlap (blocks "
				   "are %llu bytes with their bitmap)",
				   v->img.path,
				   (unsigned long long)vhd_block_off(sorted[i - 1]),
				   (unsigned long long)vhd_block_off(sorted[i]),
				   (unsigned long long)tsize);
			return -EINVAL;
		}
	}
	return 0;
}

/* The end of the header, the BAT and the parent locators' data. */
uint64_t vhd_meta_end(const struct vhd_meta *m)
{
	uint64_t end = m->bat_off + m->bat_bytes;

	if (m->header_off + VHD_HEADER_SIZE > end)
		end = m->header_off + VHD_HEADER_SIZE;
	for (int i = 0; i < VHD_NLOC; i++)
		if (m->dh.loc[i].code && m->dh.loc[i].offset + m->dh.loc[i].len > end)
			end = m->dh.loc[i].offset + m->dh.loc[i].len;
	return end;
}

int vhd_load_bat(struct vhd_img *v)
{
	struct vhd_meta *m = &v->m;
	uint64_t nent = m->bat_bytes / 4,
		 tsize = m->bitmap_bytes + (uint64_t)m->block_size;
	uint32_t *sorted = NULL, nalloc = 0;
	uint8_t *raw;
	int ret;

	raw = malloc(m->bat_bytes);
	v->bat = malloc(nent * sizeof(*v->bat));
	/* As many as the BAT has room for: resize() grows into them. */
	v->bm = calloc(nent ? nent : 1, sizeof(*v->bm));
	v->dirty_bits = calloc((nent + 63) / 64 + 1, sizeof(*v->dirty_bits));
	v->bat_dirty = calloc(m->bat_bytes / VHD_SECTOR / 64 + 1, sizeof(*v->bat_dirty));
	sorted = malloc((m->max_entries ? m->max_entries : 1) * sizeof(*sorted));
	if (!raw || !v->bat || !v->bm || !v->dirty_bits || !v->bat_dirty || !sorted) {
		vhdfmt_err("%s: out of memory for a BAT of %u entries", v->img.path,
			   m->max_entries);
		ret = -ENOMEM;
		goto out;
	}
	ret = vhdfmt_pread(v->img.fd, raw, m->bat_bytes, m->bat_off);
	if (ret < 0) {
		vhdfmt_err("%s: cannot read the BAT: %s", v->img.path, strerror(-ret));
		goto out;
	}
	v->data_end = vhd_meta_end(m);
	for (uint64_t i = 0; i < nent; i++) {
		uint32_t e = get_be32(raw + 4 * i);
		uint64_t off = vhd_block_off(e);

		v->bat[i] = e;
		if (e == VHD_UNALLOC || i >= m->max_entries)
			continue;
		ret = vhd_check_block(v, i, off, tsize);
		if (ret)
			goto out;
		sorted[nalloc++] = e;
		if (off + tsize > v->data_end)
			v->data_end = off + tsize;
	}
	qsort(sorted, nalloc, sizeof(*sorted), vhd_cmp_u32);
	ret = vhd_check_disjoint(v, sorted, nalloc, tsize);
out:
	free(sorted);
	free(raw);
	return ret;
}
