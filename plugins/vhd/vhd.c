/* SPDX-License-Identifier: MIT */
/* vhd: fixed, dynamic and differencing VHD images as a layer of the core's layered
 * disk (Microsoft "Virtual Hard Disk Image Format Specification").
 *
 * Layout of a dynamic or differencing image: a copy of the footer at offset 0, the
 * dynamic header, parent locators (differencing), the BAT (one big-endian sector
 * offset per block, 0xffffffff when unallocated), blocks (a sector bitmap padded
 * to 512 bytes, then the block's data), and the footer in the last 512 bytes.
 *
 * Reads: a fixed or plain dynamic image marks every sector (unallocated blocks read
 * as zero), so nothing below is consulted. A differencing image marks only the
 * sectors whose block is allocated and whose bitmap bit is set; the rest fall
 * through to the parent, which lower_spec() names so that the core opens it
 * read-only as the next layer. attach() checks the parent's unique id.
 *
 * Crash safety. Metadata that points at data is written only after that data
 * is durable, and the last 512 bytes of the file are a valid footer at every
 * instant:
 *   - Allocating block [B, B+T) (metadata lock held): if it reaches the footer,
 *     first write the footer further on (room for several blocks, so this is
 *     rare) and fdatasync; then write the block's bitmap and the request's data
 *     into [B, B+T) (the rest of the block is zero: fresh file space, or zeroed
 *     explicitly where something was before). The BAT entry changes in memory
 *     only, and its BAT sector is queued.
 *   - Setting bitmap bits of an allocated block (a differencing image, or a
 *     foreign image with partial bitmaps): after the data is written, in memory;
 *     the bitmap is queued.
 *   - Flush: fdatasync (all data and new blocks), write the queued bitmaps and
 *     BAT sectors, fdatasync. FUA writes run a flush before completing.
 *   - Close: flush, then move the footer back to the end of the last block
 *     (write it there, fdatasync, truncate after it).
 * A crash at any point leaves a valid image: new blocks not yet in the on-disk
 * BAT are unreferenced space (reused and zeroed by the next allocation), and
 * every write that was flushed is in the BAT and bitmaps. An unflushed write may
 * be lost (its sectors read as before), as on any disk with a write cache.
 *
 * Unmap is ignored (reported as such); blocks are never freed. Images are locked
 * with flock (exclusive when writable, shared when read-only). */
#include "bitmap/bitmap.h"
#include "endian/byteorder.h"
#include "utf16/utf16.h"
#include "vhdfmt/vhd_format.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define VHD_UNALLOC 0xffffffffu
#define VHD_LOC_MAX 65536u	   /* bytes of one parent locator's data */
#define VHD_MAX_ENTRIES (1u << 24) /* BAT entries we agree to load */
#define VHD_MIN_BLOCK 512u
#define VHD_MAX_BLOCK (256u << 20)
#define VHD_DEFAULT_BLOCK (2u << 20)
#define VHD_MAX_DYNAMIC (2040ull << 30) /* the specification's limit */
#define VHD_DATA_ALIGN 4096u		/* block data starts on this boundary */

/* What an image's footer and dynamic header say, checked against the file. */
struct vhd_meta {
	struct vhd_footer f;
	uint8_t footer_raw[VHD_FOOTER_SIZE];
	uint64_t file_size;
	uint64_t limit; /* everything lies below this: the end footer, or EOF */
	bool end_ok;	/* the last 512 bytes are a valid footer */
	bool copy_ok;	/* offset 0 holds a valid footer copy (dynamic) */
	uint64_t header_off;
	uint64_t bat_off;
	uint64_t bat_bytes; /* the BAT's sectors */
	uint32_t max_entries;
	uint32_t nblocks; /* blocks that cover the disk */
	uint32_t block_size;
	uint32_t spb; /* sectors per block */
	unsigned spb_shift;
	uint32_t bitmap_bytes;
	/* Dynamic and differencing: the parent's id and name, and the parent
	 * locators (code 0 for those never read). */
	struct vhd_dyn_header dh;
};

struct vhd_img {
	int fd;
	char *path;
	char *dir; /* directory of the image, absolute */
	bool read_only;
	bool created;
	bool fixed, diff;
	struct vhd_meta m;
	struct dc_info info;
	char *parent_path; /* as resolved by lower_spec() */

	pthread_mutex_t lock; /* BAT, bitmaps, queues, allocation, footer */
	uint32_t *bat;	      /* bat_bytes / 4 entries, host order, authoritative */
	uint8_t **bm;	      /* per block: NULL not loaded, vhd_bm_full, or bits */
	uint64_t *dirty_bits; /* blocks whose bitmap is queued */
	uint32_t *dirty;
	uint32_t ndirty, dirty_cap;
	uint64_t *bat_dirty; /* BAT sectors queued */
	uint32_t nbat_dirty;
	uint64_t data_end; /* end of the highest structure or block */
	uint64_t footer_off;
	uint64_t junk_end; /* below this, space outside blocks may hold old bytes */
};

/* A block whose every sector bit is set (no memory kept for it). */
static uint8_t vhd_bm_full_marker;
#define VHD_BM_FULL (&vhd_bm_full_marker)

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
static int vhd_parse(int fd, const char *path, struct vhd_meta *m)
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

/* Load the BAT and check every allocated block against the file, the metadata
 * and the other blocks. */
static int vhd_load_bat(struct vhd_img *v)
{
	struct vhd_meta *m = &v->m;
	uint64_t nent = m->bat_bytes / 4,
		 tsize = m->bitmap_bytes + (uint64_t)m->block_size;
	uint32_t *sorted = NULL, nalloc = 0;
	uint8_t *raw;
	int ret;

	raw = malloc(m->bat_bytes);
	v->bat = malloc(nent * sizeof(*v->bat));
	v->bm = calloc(m->nblocks ? m->nblocks : 1, sizeof(*v->bm));
	v->dirty_bits = calloc((m->nblocks + 63) / 64 + 1, sizeof(*v->dirty_bits));
	v->bat_dirty = calloc(m->bat_bytes / VHD_SECTOR / 64 + 1, sizeof(*v->bat_dirty));
	sorted = malloc((m->max_entries ? m->max_entries : 1) * sizeof(*sorted));
	if (!raw || !v->bat || !v->bm || !v->dirty_bits || !v->bat_dirty || !sorted) {
		vhdfmt_err("%s: out of memory for a BAT of %u entries", v->path,
			   m->max_entries);
		ret = -ENOMEM;
		goto out;
	}
	ret = vhdfmt_pread(v->fd, raw, m->bat_bytes, m->bat_off);
	if (ret < 0) {
		vhdfmt_err("%s: cannot read the BAT: %s", v->path, strerror(-ret));
		goto out;
	}
	v->data_end = m->bat_off + m->bat_bytes;
	if (m->header_off + VHD_HEADER_SIZE > v->data_end)
		v->data_end = m->header_off + VHD_HEADER_SIZE;
	for (int i = 0; i < VHD_NLOC; i++)
		if (m->dh.loc[i].code &&
		    m->dh.loc[i].offset + m->dh.loc[i].len > v->data_end)
			v->data_end = m->dh.loc[i].offset + m->dh.loc[i].len;
	for (uint64_t i = 0; i < nent; i++) {
		uint32_t e = get_be32(raw + 4 * i);
		uint64_t off = (uint64_t)e * VHD_SECTOR;
		char what[48];

		v->bat[i] = e;
		if (e == VHD_UNALLOC || i >= m->max_entries)
			continue;
		snprintf(what, sizeof(what), "block %llu", (unsigned long long)i);
		ret = vhd_check_range(v->path, m, what, off, tsize);
		if (ret)
			goto out;
		if (vhdfmt_overlap(off, tsize, m->bat_off, m->bat_bytes)) {
			vhdfmt_err("%s: block %llu at offset %llu overlaps the BAT",
				   v->path, (unsigned long long)i,
				   (unsigned long long)off);
			ret = -EINVAL;
			goto out;
		}
		for (int l = 0; l < VHD_NLOC; l++) {
			if (m->dh.loc[l].code &&
			    vhdfmt_overlap(off, tsize, m->dh.loc[l].offset,
					   m->dh.loc[l].len)) {
				vhdfmt_err(
					"%s: block %llu at offset %llu overlaps parent "
					"locator %d",
					v->path, (unsigned long long)i,
					(unsigned long long)off, l);
				ret = -EINVAL;
				goto out;
			}
		}
		sorted[nalloc++] = e;
		if (off + tsize > v->data_end)
			v->data_end = off + tsize;
	}
	qsort(sorted, nalloc, sizeof(*sorted), vhd_cmp_u32);
	for (uint32_t i = 1; i < nalloc; i++) {
		if ((uint64_t)sorted[i - 1] * VHD_SECTOR + tsize >
		    (uint64_t)sorted[i] * VHD_SECTOR) {
			vhdfmt_err(
				"%s: blocks at offsets %llu and %llu overlap (blocks are %llu "
				"bytes with their bitmap)",
				v->path, (unsigned long long)sorted[i - 1] * VHD_SECTOR,
				(unsigned long long)sorted[i] * VHD_SECTOR,
				(unsigned long long)tsize);
			ret = -EINVAL;
			goto out;
		}
	}
	ret = 0;
out:
	free(sorted);
	free(raw);
	return ret;
}

/* --- Parent locators ------------------------------------------------------------ */

static char *vhd_dirname(const char *abs)
{
	const char *slash = strrchr(abs, '/');

	if (!slash || slash == abs)
		return strdup("/");
	return strndup(abs, (size_t)(slash - abs));
}

/* Join a locator's path with the image's directory unless it is absolute. */
static char *vhd_join(const char *dir, const char *p)
{
	char *out;

	if (p[0] == '/')
		return strdup(p);
	if (asprintf(&out, "%s/%s", dir, p) < 0)
		return NULL;
	return out;
}

/* The path a locator names, as a path on this system, or NULL. */
static char *vhd_loc_path(int fd, const struct vhd_parent_locator *l, const char *dir)
{
	uint8_t *raw = malloc(l->len + 1);
	char *s = NULL, *p, *out = NULL;

	if (!raw || vhdfmt_pread(fd, raw, l->len, l->offset) < 0)
		goto out;
	raw[l->len] = 0;
	if (l->code == VHD_W2KU || l->code == VHD_W2RU)
		s = utf16_to_utf8(raw, l->len, false);
	else
		s = strndup((char *)raw, l->len);
	if (!s || !s[0])
		goto out;
	p = s;
	if (l->code == VHD_MACX) {
		/* file://host/path */
		if (strncmp(p, "file://", 7) != 0)
			goto out;
		p = strchr(p + 7, '/');
		if (!p)
			goto out;
	} else {
		/* Windows paths: a drive letter cannot be found here. */
		if (((p[0] | 0x20) >= 'a' && (p[0] | 0x20) <= 'z') && p[1] == ':')
			goto out;
		if (p[0] == '\\' && p[1] == '\\')
			goto out;
		for (char *c = p; *c; c++)
			if (*c == '\\')
				*c = '/';
		if ((l->code == VHD_W2KU || l->code == VHD_WI2K) && p[0] != '/')
			goto out;
	}
	out = vhd_join(dir, p);
out:
	free(s);
	free(raw);
	return out;
}

/* Read just enough of the file at path to learn its unique id (O_NONBLOCK: a
 * locator may name a FIFO). */
static int vhd_peek_uid(const char *path, uint8_t uid[16])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	struct vhd_meta *m;
	int ret;

	if (fd < 0)
		return -errno;
	m = malloc(sizeof(*m));
	if (!m) {
		close(fd);
		return -ENOMEM;
	}
	vhdfmt_quiet(1);
	ret = vhd_parse(fd, path, m);
	vhdfmt_quiet(-1);
	if (ret == 0)
		memcpy(uid, m->f.unique_id, 16);
	free(m);
	close(fd);
	return ret;
}

/* Resolve the parent of the differencing image (fd, m) in directory dir:
 * relative locators first, then absolute ones, then the header's parent name.
 * A candidate whose unique id matches wins; else the first one that exists (the
 * id check then reports the mismatch). Returns a malloc'd real path. */
static int vhd_find_parent(int fd, const struct vhd_meta *m, const char *path,
			   const char *dir, char **out)
{
	static const uint32_t order[] = { VHD_W2RU, VHD_WI2R, VHD_W2KU, VHD_WI2K,
					  VHD_MACX };
	char *cands[VHD_NLOC + 1], *first = NULL, tried[512] = "";
	unsigned n = 0;
	int ret = -ENOENT;

	for (unsigned k = 0; k < sizeof(order) / sizeof(order[0]); k++)
		for (int i = 0; i < VHD_NLOC; i++)
			if (m->dh.loc[i].code == order[k] &&
			    (cands[n] = vhd_loc_path(fd, &m->dh.loc[i], dir)))
				n++;
	{
		char *name =
			utf16_to_utf8(m->dh.parent_name, sizeof(m->dh.parent_name), true);

		if (name && name[0] && (cands[n] = vhd_join(dir, name)))
			n++;
		free(name);
	}
	*out = NULL;
	for (unsigned i = 0; i < n && !*out; i++) {
		char *real = realpath(cands[i], NULL);
		uint8_t uid[16];
		size_t tl = strlen(tried);

		if (tl < sizeof(tried) - 8)
			snprintf(tried + tl, sizeof(tried) - tl, "%s%s", tl ? ", " : "",
				 cands[i]);
		if (!real)
			continue;
		if (vhd_peek_uid(real, uid) == 0 &&
		    memcmp(uid, m->dh.parent_uid, 16) == 0) {
			*out = real;
		} else if (!first) {
			first = real;
		} else {
			free(real);
		}
	}
	for (unsigned i = 0; i < n; i++)
		free(cands[i]);
	if (!*out)
		*out = first;
	else
		free(first);
	if (*out)
		return 0;
	if (!n)
		vhdfmt_err(
			"%s: differencing VHD without a usable parent locator or parent "
			"name",
			path);
	else
		vhdfmt_err("%s: parent image not found (tried %s)", path, tried);
	return ret;
}

/* vhdfmt_parent_fn: the parent of the VHD at path (open as fd), if it is a
 * differencing image whose parent can be found. */
static char *vhd_parent_of(int fd, const char *path)
{
	struct vhd_meta *m = malloc(sizeof(*m));
	char *next = NULL, *dir = NULL;

	if (m && vhd_parse(fd, path, m) == 0 && m->f.disk_type == VHD_TYPE_DIFF &&
	    (dir = vhd_dirname(path)) != NULL &&
	    vhd_find_parent(fd, m, path, dir, &next) < 0)
		next = NULL;
	free(dir);
	free(m);
	return next;
}

/* --- Bitmaps ---------------------------------------------------------------------- */

static uint64_t vhd_block_off(uint32_t e)
{
	return (uint64_t)e * VHD_SECTOR;
}

static uint32_t vhd_bat_get(struct vhd_img *v, uint32_t b)
{
	return __atomic_load_n(&v->bat[b], __ATOMIC_ACQUIRE);
}

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
		ret = vhdfmt_pread(v->fd, bm, v->m.bitmap_bytes,
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
	return vhdfmt_pwrite(v->fd, buf, sizeof(buf), v->m.bat_off + sec * VHD_SECTOR);
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
		if (fdatasync(v->fd) < 0)
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
				ret = vhdfmt_pwrite(v->fd, bm, v->m.bitmap_bytes,
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

	if (ret == 0 && fdatasync(v->fd) < 0)
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
	return vhdfmt_zero(v->fd, off, off + len < limit ? len : limit - off);
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
			 v->path, b);
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
		ret = vhdfmt_pwrite(v->fd, v->m.footer_raw, VHD_FOOTER_SIZE, nf);
		if (ret == 0 && fdatasync(v->fd) < 0)
			ret = -errno;
		if (ret < 0)
			goto fail;
		v->footer_off = nf;
		if (old >= v->junk_end && old + VHD_FOOTER_SIZE > start + bmb &&
		    old < end)
			ret = vhdfmt_zero(v->fd, old, VHD_FOOTER_SIZE);
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
	ret = vhdfmt_pwrite(v->fd, bm, bmb, start);
	if (ret == 0)
		ret = vhdfmt_xfer(v->fd, data, start + bmb + (uint64_t)o * VHD_SECTOR,
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
	uint64_t n = v->m.f.current_size / VHD_SECTOR;

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
		ret = vhdfmt_xfer(v->fd, sub, base, false, 0);
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
			ret = vhdfmt_xfer(v->fd, &part, base + at, false, 0);
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
		return no_overwrite ? 0 : vhdfmt_xfer(v->fd, sub, base, true, 0);

	pthread_mutex_lock(&v->lock);
	ret = vhd_bm_get(v, b, &bm);
	if (ret == 0 && !no_overwrite) {
		bool all = true;

		for (uint32_t i = o; i < o + n && all; i++)
			all = vhd_bit(bm, i);
		if (all) {
			/* Bits never clear again: no lock needed for the data. */
			pthread_mutex_unlock(&v->lock);
			return vhdfmt_xfer(v->fd, sub, base, true, 0);
		}
		/* Data before bits; under the lock so that a no-overwrite write
		 * cannot slip stale data in between. */
		ret = vhdfmt_xfer(v->fd, sub, base, true, 0);
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
		ret = vhdfmt_xfer(v->fd, &part, base + (uint64_t)i * VHD_SECTOR, true, 0);
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
		ret = vhdfmt_xfer(v->fd, &req->buf, sector * VHD_SECTOR, write,
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

static int vhd_io(void *inst, struct dc_req *req)
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
			return vhdfmt_result(req, fdatasync(v->fd) < 0 ? -errno : 0);
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

/* --- Creating images ------------------------------------------------------------- */

struct vhd_create {
	uint64_t size;
	uint32_t block;
	uint32_t type;
	const char *parent; /* differencing: the parent as given */
};

/* Fill locator entry l and its UTF-16LE data at img + *pos (at most 8 KiB);
 * returns -1 if the path does not convert. */
static int vhd_put_locator(struct vhd_parent_locator *l, uint32_t code, const char *path,
			   uint8_t *img, uint64_t *pos)
{
	int n = utf8_to_utf16(path, img + *pos, 8192, false);

	if (n <= 0)
		return -1;
	l->code = code;
	/* bytes, as Hyper-V and Virtual PC store it */
	l->space = (uint32_t)vhdfmt_round_up((uint64_t)n, VHD_SECTOR);
	l->len = (uint32_t)n;
	l->offset = *pos;
	*pos += l->space;
	return 0;
}

/* What a new differencing child records of its parent. */
struct vhd_parent_info {
	char *real; /* the parent's real path */
	char *rel;  /* that path relative to the child's directory, Windows style */
	struct vhd_footer f;
	uint32_t mtime; /* VHD time */
};

static void vhd_parent_info_free(struct vhd_parent_info *p)
{
	free(p->real);
	free(p->rel);
}

/* The parent's paths, footer and mtime for a new child at path. */
static int vhd_create_parent_info(const char *path, const char *parent,
				  struct vhd_parent_info *p)
{
	char *dir = NULL;
	struct vhd_meta *m = NULL;
	struct stat st;
	int fd = -1, ret;

	p->real = realpath(parent, NULL);
	if (!p->real) {
		ret = -errno;
		vhdfmt_err("%s: parent %s: %s", path, parent, strerror(errno));
		return ret;
	}
	dir = vhdfmt_dirname(path);
	if (!dir) {
		ret = -errno;
		vhdfmt_err("%s: cannot resolve the directory: %s", path, strerror(errno));
		return ret;
	}
	fd = open(p->real, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		ret = -errno;
		vhdfmt_err("%s: parent %s: %s", path, p->real, strerror(errno));
		goto out;
	}
	m = malloc(sizeof(*m));
	ret = m ? vhd_parse(fd, p->real, m) : -ENOMEM;
	if (ret)
		goto out;
	p->f = m->f;
	p->mtime = fstat(fd, &st) == 0 && st.st_mtime > (time_t)VHD_EPOCH ?
			   (uint32_t)(st.st_mtime - (time_t)VHD_EPOCH) :
			   0;
	p->rel = vhdfmt_relpath(dir, p->real);
	if (!p->rel) {
		ret = -ENOMEM;
		vhdfmt_err("out of memory");
	}
out:
	if (fd >= 0)
		close(fd);
	free(m);
	free(dir);
	return ret;
}

/* A child's header fields: the parent's id, mtime and name (its base name if
 * the whole path does not fit), and its locators (absolute, relative) at
 * img + *pos. -1 if a path does not convert. */
static int vhd_diff_header(struct vhd_dyn_header *h, const struct vhd_parent_info *p,
			   uint8_t *img, uint64_t *pos)
{
	const char *base = strrchr(p->real, '/') + 1;

	if (utf8_to_utf16(p->real, h->parent_name, sizeof(h->parent_name), true) < 0) {
		memset(h->parent_name, 0, sizeof(h->parent_name));
		if (utf8_to_utf16(base, h->parent_name, sizeof(h->parent_name), true) < 0)
			return -1;
	}
	memcpy(h->parent_uid, p->f.unique_id, 16);
	h->parent_timestamp = p->mtime;
	if (vhd_put_locator(&h->loc[0], VHD_W2KU, p->real, img, pos) ||
	    vhd_put_locator(&h->loc[1], VHD_W2RU, p->rel, img, pos))
		return -1;
	return 0;
}

/* The footer of a new dynamic or differencing image: a fixed disk's (as
 * Hyper-V writes it), with the header after it. */
static int vhd_dynamic_footer(struct vhd_footer *f, uint64_t size, uint32_t type)
{
	uint8_t uid[16];
	int ret = vhdfmt_new_uid(uid);

	vhdfmt_footer_fixed(f, size, uid);
	f->data_offset = VHD_FOOTER_SIZE;
	f->disk_type = type;
	return ret;
}

/* Write a new dynamic or differencing image to fd (locked, empty): a footer
 * copy, the header, the locators (each up to 8 KiB), the BAT, the footer. */
static int vhd_create_dynamic(const char *path, int fd, const struct vhd_create *c)
{
	struct vhd_parent_info p = { 0 };
	uint64_t size = c->size, nblocks, pos, bat_bytes;
	struct vhd_dyn_header h;
	struct vhd_footer f;
	uint8_t *img = NULL;
	int ret;

	if (c->type == VHD_TYPE_DIFF) {
		ret = vhd_create_parent_info(path, c->parent, &p);
		if (ret)
			goto out;
		size = p.f.current_size;
	}
	ret = -EINVAL;
	nblocks = (size + c->block - 1) / c->block;
	if (nblocks > VHD_MAX_ENTRIES) {
		vhdfmt_err("%s: %llu blocks of %u bytes are too many (at most %u)", path,
			   (unsigned long long)nblocks, c->block, VHD_MAX_ENTRIES);
		goto out;
	}
	pos = VHD_FOOTER_SIZE + VHD_HEADER_SIZE;
	bat_bytes = vhdfmt_round_up(nblocks * 4, VHD_SECTOR);
	img = calloc(1, pos + 2 * 8192 + bat_bytes + VHD_FOOTER_SIZE);
	if (!img) {
		ret = -ENOMEM;
		vhdfmt_err("out of memory");
		goto out;
	}
	memset(&h, 0, sizeof(h));
	if (c->type == VHD_TYPE_DIFF && vhd_diff_header(&h, &p, img, &pos)) {
		vhdfmt_err("%s: parent path %s is not valid UTF-8 or is too long", path,
			   p.real);
		goto out;
	}
	h.data_offset = UINT64_MAX;
	h.table_offset = pos;
	h.version = VHD_VERSION;
	h.max_entries = (uint32_t)nblocks;
	h.block_size = c->block;
	vhdfmt_dyn_encode(&h, img + VHD_FOOTER_SIZE);
	memset(img + pos, 0xff, bat_bytes);
	pos += bat_bytes;

	ret = vhd_dynamic_footer(&f, size, c->type);
	if (ret < 0) {
		vhdfmt_err("%s: no random unique id: %s", path, strerror(-ret));
		goto out;
	}
	vhdfmt_footer_encode(&f, img);
	memcpy(img + pos, img, VHD_FOOTER_SIZE);
	pos += VHD_FOOTER_SIZE;

	ret = vhdfmt_pwrite(fd, img, pos, 0);
	if (ret == 0 && fsync(fd) < 0)
		ret = -errno;
	if (ret < 0)
		vhdfmt_err("%s: cannot write the new image: %s", path, strerror(-ret));
out:
	free(img);
	vhd_parent_info_free(&p);
	return ret;
}

/* Write the new image into the empty file dc_create_open() made. */
static int vhd_create(struct vhd_img *v, const struct vhd_create *c)
{
	int ret;

	if (c->type == VHD_TYPE_FIXED) {
		ret = vhdfmt_write_fixed(v->fd, c->size);
		if (ret < 0)
			vhdfmt_err("%s: cannot write a fixed VHD: %s", v->path,
				   strerror(-ret));
	} else {
		ret = vhd_create_dynamic(v->path, v->fd, c);
	}
	if (ret == 0)
		v->created = true;
	return ret;
}

/* create= or parent= named an image that exists: it must be what they say. */
static int vhd_check_existing(struct vhd_img *v, const struct vhd_create *c)
{
	char *parent = NULL;
	int ret;

	if (c->parent && v->diff) {
		vhdfmt_quiet(1);
		vhd_find_parent(v->fd, &v->m, v->path, v->dir, &parent);
		vhdfmt_quiet(-1);
	}
	ret = vhdfmt_check_existing(v->path, c->size, v->m.f.current_size, c->parent,
				    parent);
	free(parent);
	return ret;
}

/* What the options ask to create, if anything. */
static int vhd_create_opts(const struct dc_open_args *a, const char *path,
			   struct vhd_create *c, bool *want)
{
	uint64_t size = 0, block = VHD_DEFAULT_BLOCK;
	bool has_size = dc_opt_num(a, "create", &size);
	bool has_block = dc_opt_num(a, "block", &block);

	memset(c, 0, sizeof(*c));
	c->parent = dc_opt_str(a, "parent");
	*want = has_size || c->parent;
	if (!*want) {
		if (has_block) {
			vhdfmt_err(
				"%s: block= applies only when creating (create= or parent=)",
				path);
			return -EINVAL;
		}
		return 0;
	}
	if (c->parent && !c->parent[0]) {
		vhdfmt_err("%s: parent= needs the path of the parent image", path);
		return -EINVAL;
	}
	if (c->parent && has_size) {
		vhdfmt_err(
			"%s: a differencing image takes its parent's size; give parent= "
			"without create=",
			path);
		return -EINVAL;
	}
	if (block < VHD_MIN_BLOCK || block > VHD_MAX_BLOCK || (block & (block - 1))) {
		vhdfmt_err(
			"%s: block=%llu: expected a power of two from 512 bytes to 256 MiB",
			path, (unsigned long long)block);
		return -EINVAL;
	}
	c->block = (uint32_t)block;
	/* file:x.vhd;create=SIZE makes a fixed VHD, as OpenVMM does. */
	if (c->parent)
		c->type = VHD_TYPE_DIFF;
	else if (a->form && !strcmp(a->form, "file") && !has_block)
		c->type = VHD_TYPE_FIXED;
	else
		c->type = VHD_TYPE_DYNAMIC;
	c->size = size;
	if (c->parent)
		return 0;
	if (size == 0 || size % VHD_SECTOR || size > (uint64_t)INT64_MAX - VHD_SECTOR) {
		vhdfmt_err(
			"%s: create=%llu: expected a size that is a non-zero multiple of "
			"512 bytes",
			path, (unsigned long long)size);
		return -EINVAL;
	}
	if (c->type == VHD_TYPE_DYNAMIC && size > VHD_MAX_DYNAMIC) {
		vhdfmt_err("%s: create=%llu: a dynamic VHD holds at most 2040 GiB", path,
			   (unsigned long long)size);
		return -EINVAL;
	}
	return 0;
}

/* --- Open, attach, close ---------------------------------------------------------- */

/* Close: make queued metadata durable, then move the footer back to the end of
 * the data (written there first, so the file always ends in a footer). */
static void vhd_trim(struct vhd_img *v)
{
	uint64_t at = vhdfmt_round_up(v->data_end, VHD_SECTOR);
	bool move = at < v->footer_off;

	if (!v->ndirty && !v->nbat_dirty && !move)
		return;
	/* One sync makes the metadata and the footer's new copy durable. */
	if (vhd_write_queued(v) < 0)
		return;
	if (move && vhdfmt_pwrite(v->fd, v->m.footer_raw, VHD_FOOTER_SIZE, at) < 0)
		move = false;
	if (fdatasync(v->fd) == 0 && move &&
	    ftruncate(v->fd, (off_t)(at + VHD_FOOTER_SIZE)) == 0)
		v->footer_off = at;
}

static void vhd_close(void *inst)
{
	struct vhd_img *v = inst;

	if (v->fd >= 0) {
		if (!v->read_only && !v->fixed)
			vhd_trim(v);
		close(v->fd);
	}
	if (v->bm) {
		for (uint32_t i = 0; i < v->m.nblocks; i++)
			if (v->bm[i] != VHD_BM_FULL)
				free(v->bm[i]);
		free(v->bm);
	}
	pthread_mutex_destroy(&v->lock);
	free(v->dirty);
	free(v->dirty_bits);
	free(v->bat_dirty);
	free(v->bat);
	free(v->parent_path);
	free(v->dir);
	free(v->path);
	free(v);
}

/* A writable open puts back a damaged footer or footer copy. */
static int vhd_repair(struct vhd_img *v)
{
	int ret = 0;

	if (!v->m.end_ok) {
		v->footer_off = vhdfmt_round_up(v->m.file_size, VHD_SECTOR);
		ret = vhdfmt_pwrite(v->fd, v->m.footer_raw, VHD_FOOTER_SIZE,
				    v->footer_off);
		v->junk_end = v->footer_off + VHD_FOOTER_SIZE;
	}
	if (ret == 0 && !v->m.copy_ok)
		ret = vhdfmt_pwrite(v->fd, v->m.footer_raw, VHD_FOOTER_SIZE, 0);
	if (ret == 0 && fdatasync(v->fd) < 0)
		ret = -errno;
	if (ret < 0)
		vhdfmt_err("%s: cannot repair the footer: %s", v->path, strerror(-ret));
	else
		dc_debug("%s: footer repaired", v->path);
	return ret;
}

static int vhd_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct vhd_create c;
	struct vhd_img *v;
	bool want, created;
	char *real;
	int ret;

	if (a->nfields < 1 || !a->fields[0][0]) {
		vhdfmt_err("missing path (expected vhd:PATH)");
		return -EINVAL;
	}
	v = calloc(1, sizeof(*v));
	if (!v || !(v->path = strdup(a->fields[0]))) {
		free(v);
		vhdfmt_err("out of memory");
		return -ENOMEM;
	}
	v->fd = -1;
	pthread_mutex_init(&v->lock, NULL);
	v->read_only = a->read_only;
	ret = vhd_create_opts(a, v->path, &c, &want);
	if (ret)
		goto fail;
	v->fd = vhdfmt_open(a, v->path, want, c.parent, vhd_parent_of, &created);
	if (v->fd < 0) {
		ret = v->fd;
		goto fail;
	}
	if (created) {
		ret = vhd_create(v, &c);
		if (ret) {
			unlink(v->path);
			goto fail;
		}
	}
	/* Relative parent locators start here. A path that does not resolve
	 * (an fd of a deleted file) still has the directory it names. */
	real = realpath(v->path, NULL);
	if (!real && v->path[0] != '/') {
		char cwd[PATH_MAX];

		if (getcwd(cwd, sizeof(cwd)) &&
		    asprintf(&real, "%s/%s", cwd, v->path) < 0)
			real = NULL;
	}
	v->dir = vhd_dirname(real ? real : v->path);
	free(real);
	if (!v->dir) {
		ret = -ENOMEM;
		vhdfmt_err("out of memory");
		goto fail;
	}
	ret = vhd_parse(v->fd, v->path, &v->m);
	if (ret)
		goto fail;
	v->fixed = v->m.f.disk_type == VHD_TYPE_FIXED;
	v->diff = v->m.f.disk_type == VHD_TYPE_DIFF;
	v->junk_end = v->m.file_size;
	v->footer_off = v->m.end_ok ? v->m.file_size - VHD_FOOTER_SIZE : v->m.file_size;
	if (!v->fixed) {
		ret = vhd_load_bat(v);
		if (ret == 0 && !v->read_only && (!v->m.end_ok || !v->m.copy_ok))
			ret = vhd_repair(v);
		if (ret)
			goto fail;
	}
	if (want && !created) {
		ret = vhd_check_existing(v, &c);
		if (ret)
			goto fail;
	}

	memset(info, 0, sizeof(*info));
	info->sector_count = v->m.f.current_size / VHD_SECTOR;
	info->sector_size = VHD_SECTOR;
	info->physical_sector_size = VHD_SECTOR;
	info->optimal_unmap_sectors = 1;
	info->unmap_behavior = DC_UNMAP_IGNORED;
	info->flags = DC_INFO_HAS_DISK_ID | DC_INFO_FUA_RESPECTED |
		      (v->read_only ? DC_INFO_READ_ONLY : 0);
	memcpy(info->disk_id, v->m.f.unique_id, sizeof(info->disk_id));
	snprintf(info->disk_type, sizeof(info->disk_type), "vhd");
	v->info = *info;
	*inst = v;
	return 0;
fail:
	vhd_close(v);
	return ret;
}

static int vhd_lower_spec(void *inst, char *buf, size_t len)
{
	struct vhd_img *v = inst;
	int ret;

	if (!v->diff)
		return 0;
	free(v->parent_path);
	v->parent_path = NULL;
	ret = vhd_find_parent(v->fd, &v->m, v->path, v->dir, &v->parent_path);
	if (ret)
		return ret;
	return vhdfmt_lower_spec("vhd", v->path, v->fd, v->parent_path, vhd_parent_of,
				 buf, len);
}

static int vhd_attach(void *inst, const struct dc_info *lower, struct dc_info *info)
{
	struct vhd_img *v = inst;
	char want[37], got[37];

	*info = v->info;
	if (!v->diff)
		return 0;
	if (!lower) {
		vhdfmt_err("%s: a differencing VHD needs its parent below it", v->path);
		return -EINVAL;
	}
	vhdfmt_uid_str(v->m.dh.parent_uid, want);
	if (!(lower->flags & DC_INFO_HAS_DISK_ID)) {
		vhdfmt_err("%s: the layer below has no unique id; expected the parent %s",
			   v->path, want);
		return -EINVAL;
	}
	if (memcmp(lower->disk_id, v->m.dh.parent_uid, 16) != 0) {
		vhdfmt_uid_str(lower->disk_id, got);
		vhdfmt_err("%s: parent %s has unique id %s, but this image expects %s "
			   "(the parent was replaced or modified)",
			   v->path, v->parent_path ? v->parent_path : "below", got, want);
		return -EINVAL;
	}
	if (lower->sector_size != VHD_SECTOR) {
		vhdfmt_err(
			"%s: the parent has %u-byte sectors; VHD sectors are 512 bytes",
			v->path, lower->sector_size);
		return -EINVAL;
	}
	return 0;
}

static void vhd_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct vhd_img *v = inst;
	char buf[64];
	uint64_t n = 0;

	kv(arg, "path", v->path);
	kv(arg, "format",
	   v->fixed ? "fixed VHD" :
	   v->diff  ? "differencing VHD" :
		      "dynamic VHD");
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v->m.f.current_size);
	kv(arg, "virtual size", buf);
	vhdfmt_uid_str(v->m.f.unique_id, buf);
	kv(arg, "unique id", buf);
	if (!v->fixed) {
		snprintf(buf, sizeof(buf), "%u", v->m.block_size);
		kv(arg, "block size", buf);
		for (uint32_t i = 0; i < v->m.nblocks; i++)
			n += vhd_bat_get(v, i) != VHD_UNALLOC;
		snprintf(buf, sizeof(buf), "%llu of %u", (unsigned long long)n,
			 v->m.nblocks);
		kv(arg, "allocated blocks", buf);
	}
	if (v->diff) {
		vhdfmt_uid_str(v->m.dh.parent_uid, buf);
		kv(arg, "parent unique id", buf);
		if (v->parent_path)
			kv(arg, "parent", v->parent_path);
	}
	if (v->created)
		kv(arg, "created", "yes");
}

static const struct dc_option vhd_options[] = {
	{ .name = "create",
	  .type = DC_OPT_SIZE,
	  .help = "create a missing file as a dynamic VHD of SIZE bytes (file:X.vhd: a "
		  "fixed one); an existing one opens unchanged" },
	{ .name = "block",
	  .type = DC_OPT_SIZE,
	  .help = "block size of a new image (default 2M)" },
	{ .name = "parent",
	  .type = DC_OPT_STRING,
	  .help = "create a missing file as a differencing VHD over the parent image "
		  "PATH; an existing one opens unchanged" },
	{ .name = "overwrite",
	  .type = DC_OPT_FLAG,
	  .help = "with create= or parent=: replace an existing file" },
	{ 0 },
};

static const struct dc_form vhd_forms[] = {
	{ .name = "vhd",
	  .nfields = 1,
	  .child = DC_CHILD_NONE,
	  .flags = 0,
	  .syntax = "vhd:PATH[;create=SIZE[;block=SIZE]|;parent=PATH][;overwrite]",
	  .help = "a fixed, dynamic or differencing VHD (a chain opens as layers)",
	  .options = vhd_options },
	{ 0 },
};

DC_PLUGIN(vhd_plugin) = {
	.kind = DC_KIND_LAYER,
	.name = "vhd",
	.version = "0.1.0",
	.summary = "fixed, dynamic and differencing VHD images (read-write)",
	.usage = "vhd:PATH[;create=SIZE[;block=SIZE]]  vhd:PATH;parent=BASE.vhd\n"
		 "  A VHD image of any type. A differencing image opens its parent\n"
		 "  (found through its W2ru/W2ku locators, relative first) read-only\n"
		 "  as the layer below, after checking the parent's unique id.\n"
		 "  Writes allocate blocks in a crash-safe order; flush makes them\n"
		 "  durable. create=SIZE makes a dynamic image (file:X.vhd;create=SIZE\n"
		 "  a fixed one, as OpenVMM); parent=BASE makes a differencing child.\n"
		 "  Both make a missing file only; an existing one opens unchanged\n"
		 "  (;overwrite replaces it), and a read-only open never creates.\n"
		 "  Sectors are 512 bytes; unmap is ignored; the image is locked\n"
		 "  (flock) while open.",
	.forms = vhd_forms,
	.ctx_size = 0,
	.ops = DC_OP_BIT(DC_OP_READ) | DC_OP_BIT(DC_OP_WRITE) | DC_OP_BIT(DC_OP_FLUSH) |
	       DC_OP_BIT(DC_OP_UNMAP),
	.open = vhd_open,
	.close = vhd_close,
	.io = vhd_io,
	.attach = vhd_attach,
	.lower_spec = vhd_lower_spec,
	.describe = vhd_describe,
};
