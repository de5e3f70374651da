/* SPDX-License-Identifier: MIT */
/* vhdx_create: new images ([MS-VHDX] 2.2, 2.6): a dynamic or fixed image, or a
 * differencing child with a parent locator; and what create= and parent= ask
 * for. */
#include "vhdx.h"

#include "utf16/utf16.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VHDX_DEFAULT_BLOCK (32u << 20)

/* The parent locator item of a new child: linkage and paths. */
static int vhdx_make_locator(uint8_t *out, size_t max, const uint8_t link[16],
			     const char *rel, const char *abs, uint32_t *len)
{
	char gs[39];
	const char *kv[3][2] = { { "parent_linkage", gs },
				 { "relative_path", rel },
				 { VHDX_KEY_ABS, abs } };
	struct vhdx_locator h = { .count = 3 };
	size_t pos = sizeof(h) + sizeof(struct vhdx_locator_entry) * 3;

	vhdx_guid_str(link, gs);
	memset(out, 0, max);
	vhdx_guid_bin(VHDX_G_LOC_TYPE, h.type);
	vhdx_locator_encode(out, &h);
	for (int i = 0; i < 3; i++) {
		struct vhdx_locator_entry e;
		uint32_t at[2];
		int n[2];

		for (int k = 0; k < 2; k++) {
			n[k] = utf8_to_utf16(kv[i][k], out + pos, max - pos, false);
			if (n[k] <= 0 || n[k] > 65534)
				return -1;
			at[k] = (uint32_t)pos;
			pos += (size_t)n[k];
		}
		e = (struct vhdx_locator_entry){ at[0], at[1], (uint16_t)n[0],
						 (uint16_t)n[1] };
		vhdx_locator_entry_encode(out + sizeof(h) + sizeof(e) * i, &e);
	}
	*len = (uint32_t)pos;
	return 0;
}

/* The identifier and both headers of a new image (buf: 64 KiB of scratch). */
static int vhdx_new_headers(int fd, uint8_t *buf)
{
	struct vhdx_file_id id = { .signature = "vhdxfile" };
	struct vhdx_header h = {
		.signature = "head",
		.version = 1,
		.log_len = VHDX_MB,
		.log_off = VHDX_MB,
	};
	int ret;

	memset(buf, 0, VHDX_RT_SIZE);
	memset(id.creator, 0, sizeof(id.creator));
	utf8_to_utf16("diskcore", id.creator, sizeof(id.creator), false);
	vhdx_file_id_encode(buf, &id);
	ret = vhdfmt_pwrite(fd, buf, VHDX_RT_SIZE, 0);
	if (ret == 0)
		ret = vhdfmt_new_uid(h.file_write);
	if (ret == 0)
		ret = vhdfmt_new_uid(h.data_write);
	for (int slot = 0; ret == 0 && slot < 2; slot++) {
		h.seq = (uint64_t)slot + 1;
		vhdxfmt_header_encode(&h, buf);
		ret = vhdfmt_pwrite(fd, buf, VHDX_LSEC, VHDX_HDR_OFF(slot));
	}
	return ret;
}

/* Both copies of a new image's region table: metadata at 2 MiB, then the BAT. */
static int vhdx_new_regions(int fd, uint8_t *buf, uint64_t bat_len)
{
	struct vhdx_region_table t = { .signature = "regi", .count = 2 };
	struct vhdx_region bat = { .off = 3 * VHDX_MB,
				   .len = (uint32_t)bat_len,
				   .flags = 1 };
	struct vhdx_region meta = { .off = 2 * VHDX_MB, .len = VHDX_MB, .flags = 1 };
	int ret = 0;

	memset(buf, 0, VHDX_RT_SIZE);
	vhdx_guid_bin(VHDX_G_BAT, bat.guid);
	vhdx_guid_bin(VHDX_G_META, meta.guid);
	vhdx_region_table_encode(buf, &t);
	vhdx_region_encode(buf + sizeof(t), &bat);
	vhdx_region_encode(buf + sizeof(t) + sizeof(bat), &meta);
	vhdxfmt_seal(buf, VHDX_RT_SIZE);
	for (int copy = 0; ret == 0 && copy < 2; copy++)
		ret = vhdfmt_pwrite(fd, buf, VHDX_RT_SIZE, VHDX_RT_OFF(copy));
	return ret;
}

/* A new image's metadata region: the table, then the items one after another
 * from 64 KiB on, each through its codec (buf: 128 KiB of scratch). */
static int vhdx_new_metadata(int fd, uint8_t *buf, const struct vhdx_create *c,
			     const uint8_t page83[16], const uint8_t *loc,
			     uint32_t loclen)
{
	struct vhdx_meta_table t = { .signature = "metadata", .count = loc ? 6 : 5 };
	struct vhdx_file_params fp = { .block_size = c->block };
	struct vhdx_disk_size ds = { .size = c->size };
	struct vhdx_sector_size ls = { .size = c->lss }, ps = { .size = c->pss };
	uint32_t off = VHDX_META_TABLE;

	memset(buf, 0, 2 * VHDX_RT_SIZE);
	vhdx_meta_table_encode(buf, &t);
	if (c->fixed)
		fp.flags = 1; /* LeaveBlockAllocated */
	if (loc)
		fp.flags = 2; /* HasParent */
	for (uint32_t i = 0; i < t.count; i++) {
		struct vhdx_meta_entry e = {
			.off = off,
			.len = i == VHDX_MI_LOC ? loclen : vhdx_items[i].len,
			.flags = vhdx_items[i].flags,
		};
		uint8_t *it = buf + off;

		if (i == VHDX_MI_PARAMS)
			vhdx_file_params_encode(it, &fp);
		else if (i == VHDX_MI_SIZE)
			vhdx_disk_size_encode(it, &ds);
		else if (i == VHDX_MI_PAGE83)
			memcpy(it, page83, 16);
		else if (i == VHDX_MI_LSS)
			vhdx_sector_size_encode(it, &ls);
		else if (i == VHDX_MI_PSS)
			vhdx_sector_size_encode(it, &ps);
		else
			memcpy(it, loc, loclen);
		vhdx_guid_bin(vhdx_items[i].guid, e.guid);
		vhdx_meta_entry_encode(buf + sizeof(t) + sizeof(e) * i, &e);
		off += e.len;
	}
	return vhdfmt_pwrite(fd, buf, off, 2 * VHDX_MB);
}

/* Write a new image into the empty file fd. A child has a locator. */
static int vhdx_write_new(int fd, const char *path, const struct vhdx_create *c,
			  const uint8_t page83[16], const uint8_t *loc, uint32_t loclen)
{
	unsigned ss = (unsigned)__builtin_ctz(c->lss);
	uint64_t nblocks = (c->size + c->block - 1) / c->block;
	uint64_t cr = (VHDX_CHUNK_SECTORS << ss) / c->block;
	uint64_t nchunks = (nblocks + cr - 1) / cr, nbat, bat_len, data, end;
	uint8_t *buf = NULL, *bat = NULL;
	int ret;

	nbat = loc ? nchunks * (cr + 1) : nblocks + (nblocks - 1) / cr;
	if (nbat > VHDX_MAX_ENTRIES) {
		vhdfmt_err(
			"%s: %llu BAT entries are too many (at most %llu); use a larger "
			"block size",
			path, (unsigned long long)nbat,
			(unsigned long long)VHDX_MAX_ENTRIES);
		return -EINVAL;
	}
	bat_len = vhdfmt_round_up(nbat * 8, VHDX_MB);
	data = 3 * VHDX_MB + bat_len;
	end = c->fixed ? data + nblocks * c->block : data;
	buf = calloc(1, 2 * VHDX_RT_SIZE);
	if (!buf || (c->fixed && !(bat = calloc(1, nbat * 8)))) {
		ret = -ENOMEM;
		goto out;
	}
	ret = vhdx_new_headers(fd, buf);
	if (ret == 0)
		ret = vhdx_new_regions(fd, buf, bat_len);
	if (ret == 0)
		ret = vhdx_new_metadata(fd, buf, c, page83, loc, loclen);
	/* A fixed image's blocks, all present and in order. */
	for (uint64_t b = 0; bat && b < nblocks; b++)
		put_le64(bat + 8 * (b + b / cr), (data + b * c->block) | VHDX_PB_FULL);
	if (ret == 0 && bat)
		ret = vhdfmt_pwrite(fd, bat, nbat * 8, 3 * VHDX_MB);
	if (ret == 0 && ftruncate(fd, (off_t)end) < 0)
		ret = -errno;
	if (ret == 0 && c->fixed)
		(void)fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)data,
				(off_t)(end - data));
	if (ret == 0 && fsync(fd) < 0)
		ret = -errno;
	if (ret < 0)
		vhdfmt_err("%s: cannot write the new image: %s", path, strerror(-ret));
out:
	if (ret == -ENOMEM)
		vhdfmt_err("out of memory");
	free(bat);
	free(buf);
	return ret;
}

/* A differencing child's size, sectors, id and locator, from its parent. */
static int vhdx_create_child(struct vhdx *v, struct vhdx_create *c, uint8_t page83[16],
			     uint8_t *loc, uint32_t *loclen)
{
	char *real = realpath(c->parent, NULL), *dir = NULL, *rel = NULL;
	struct vhdx *p = NULL;
	int ret;

	if (!real) {
		ret = -errno;
		vhdfmt_err("%s: parent %s: %s", v->img.path, c->parent, strerror(errno));
		goto out;
	}
	dir = vhdfmt_dirname(v->img.path);
	if (!dir) {
		ret = -errno;
		vhdfmt_err("%s: its directory: %s", v->img.path, strerror(errno));
		goto out;
	}
	ret = vhdx_peek(real, false, &p);
	if (ret)
		goto out;
	c->size = p->disk_size;
	c->lss = p->lss;
	c->pss = p->pss;
	if (!c->has_block)
		c->block = p->block_size;
	memcpy(page83, p->page83, 16); /* virtual-disk metadata is inherited */
	/* The parent parent= named, not what the new locator says. */
	memcpy(v->parent_page83, p->page83, 16);
	rel = vhdfmt_relpath(dir, real);
	if (!rel || vhdx_make_locator(loc, 65536, p->hdr.data_write, rel, real, loclen)) {
		vhdfmt_err("%s: parent path %s is not valid UTF-8 or is too long",
			   v->img.path, real);
		ret = -EINVAL;
	} else {
		v->parent_path = real;
		real = NULL;
		v->parent_known = true;
	}
out:
	if (p)
		vhdx_free(p);
	free(rel);
	free(dir);
	free(real);
	return ret;
}

int vhdx_create(void *inst, void *opts)
{
	struct vhdx_create *c = opts;
	struct vhdx *v = inst;
	uint8_t page83[16], *loc = NULL;
	uint32_t loclen = 0;
	int ret;

	if (c->parent) {
		loc = malloc(65536);
		ret = loc ? vhdx_create_child(v, c, page83, loc, &loclen) : -ENOMEM;
	} else {
		ret = vhdfmt_new_uid(page83);
	}
	if (ret == -ENOMEM)
		vhdfmt_err("out of memory");
	if (ret == 0)
		ret = vhdx_write_new(v->img.fd, v->img.path, c, page83, loc, loclen);
	v->created = ret == 0;
	free(loc);
	return ret;
}

/* Why the image at parent cannot be the parent of v (into why), or NULL when
 * it can: a VHDX whose DataWriteGuid matches v's linkage. Then v's parent is
 * it, whatever the locator says. */
static const char *vhdx_named_parent(struct vhdx *v, const char *parent, char *why,
				     size_t len)
{
	char *real = realpath(parent, NULL), got[39], want[39];
	struct vhdx *p = NULL;

	if (!real || vhdx_peek(real, true, &p) < 0) {
		snprintf(why, len, "%s", real ? "it is not a VHDX" : strerror(errno));
		free(real);
		return why;
	}
	if (memcmp(p->hdr.data_write, v->linkage, 16) != 0 &&
	    !(v->has_linkage2 && !memcmp(p->hdr.data_write, v->linkage2, 16))) {
		vhdx_guid_str(p->hdr.data_write, got);
		vhdx_guid_str(v->linkage, want);
		snprintf(why, len,
			 "its DataWriteGuid is %s, the image's parent_linkage %s", got,
			 want);
		free(real);
		vhdx_free(p);
		return why;
	}
	pthread_mutex_lock(&v->lock);
	if (!v->parent_known) {
		v->parent_path = real;
		real = NULL;
		memcpy(v->parent_page83, p->page83, 16);
		v->parent_known = true;
	}
	pthread_mutex_unlock(&v->lock);
	free(real);
	vhdx_free(p);
	return NULL;
}

int vhdx_check_existing(void *inst, const void *opts)
{
	const struct vhdx_create *c = opts;
	struct vhdx *v = inst;
	const char *why_not = NULL;
	char why[160];

	if (c->parent)
		why_not = v->diff ? vhdx_named_parent(v, c->parent, why, sizeof(why)) :
				    "it is not one";
	return vhdfmt_check_existing(v->img.path, c->size, v->disk_size, c->parent,
				     why_not);
}

int vhdx_open_opts(void *inst, const struct dc_open_args *a, void *opts,
		   struct vhdfmt_want *w)
{
	const char *path = ((struct vhdx *)inst)->img.path;
	struct vhdx_create *c = opts;
	uint64_t size = 0, block = VHDX_DEFAULT_BLOCK, lss = 512;
	bool has_size = dc_opt_num(a, "create", &size);
	bool has_lss = dc_opt_num(a, "sector", &lss);

	memset(c, 0, sizeof(*c));
	c->has_block = dc_opt_num(a, "block", &block);
	c->fixed = dc_opt_flag(a, "fixed");
	w->parent = c->parent = dc_opt_str(a, "parent");
	w->create = has_size || c->parent;
	if (!w->create) {
		if (c->has_block || has_lss || c->fixed) {
			vhdfmt_err(
				"%s: block=, sector= and fixed apply only when creating "
				"(create= or parent=)",
				path);
			return -EINVAL;
		}
		return 0;
	}
	if (c->parent && (!c->parent[0] || has_size || has_lss || c->fixed)) {
		vhdfmt_err(
			"%s: parent= needs the parent's path, and a differencing image "
			"takes its size and sectors from it (no create=, sector= or "
			"fixed)",
			path);
		return -EINVAL;
	}
	if (block < VHDX_MB || block > 256 * VHDX_MB || (block & (block - 1))) {
		vhdfmt_err("%s: block=%llu: expected a power of two from 1M to 256M",
			   path, (unsigned long long)block);
		return -EINVAL;
	}
	if (lss != 512 && lss != 4096) {
		vhdfmt_err("%s: sector=%llu: expected 512 or 4096", path,
			   (unsigned long long)lss);
		return -EINVAL;
	}
	c->block = (uint32_t)block;
	c->lss = (uint32_t)lss;
	c->pss = 4096;
	c->size = size;
	if (!c->parent && (size == 0 || size % lss || size > VHDX_MAX_DISK)) {
		vhdfmt_err(
			"%s: create=%llu: expected a non-zero multiple of the %llu-byte "
			"sector, at most 64T",
			path, (unsigned long long)size, (unsigned long long)lss);
		return -EINVAL;
	}
	return 0;
}
