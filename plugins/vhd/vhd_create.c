/* SPDX-License-Identifier: MIT */
/* vhd_create: what create= and parent= ask for, and new fixed, dynamic and
 * differencing images. */
#include "vhd.h"

#include "utf16/utf16.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- Creating images ------------------------------------------------------------- */

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
int vhd_create(void *inst, void *opts)
{
	const struct vhd_create *c = opts;
	struct vhd_img *v = inst;
	int ret;

	if (c->type == VHD_TYPE_FIXED) {
		ret = vhdfmt_write_fixed(v->img.fd, c->size);
		if (ret < 0)
			vhdfmt_err("%s: cannot write a fixed VHD: %s", v->img.path,
				   strerror(-ret));
	} else {
		ret = vhd_create_dynamic(v->img.path, v->img.fd, c);
	}
	if (ret == 0)
		v->created = true;
	return ret;
}

/* create= or parent= named an image that exists: it must be what they say. */
/* Why the image at parent cannot be the parent of v (into why), or NULL when
 * it can: it is a VHD with the unique id v expects. *real: its real path. */
static const char *vhd_named_parent(struct vhd_img *v, const char *parent, char *why,
				    size_t len, char **real)
{
	uint8_t uid[16];
	char got[37], want[37];
	int fd;

	*real = realpath(parent, NULL);
	fd = *real ? open(*real, O_RDONLY | O_CLOEXEC | O_NONBLOCK) : -1;
	if (fd < 0) {
		snprintf(why, len, "it cannot be opened: %s", strerror(errno));
		return why;
	}
	if (vhd_peek_uid(fd, *real, uid) < 0) {
		snprintf(why, len, "it is not a VHD");
	} else if (memcmp(uid, v->m.dh.parent_uid, 16) != 0) {
		vhdfmt_uid_str(uid, got);
		vhdfmt_uid_str(v->m.dh.parent_uid, want);
		snprintf(why, len, "its unique id is %s, the image expects %s", got,
			 want);
	} else {
		why = NULL;
	}
	close(fd);
	return why;
}

int vhd_check_existing(void *inst, const void *opts)
{
	const struct vhd_create *c = opts;
	struct vhd_img *v = inst;
	const char *why_not = NULL;
	char why[160], *real = NULL;
	int ret;

	if (c->parent)
		why_not = v->diff ? vhd_named_parent(v, c->parent, why, sizeof(why),
						     &real) :
				    "it is not one";
	ret = vhdfmt_check_existing(v->img.path, c->size, v->m.f.current_size, c->parent,
				    why_not);
	/* parent= names the parent of an existing child: it, not the locators. */
	pthread_mutex_lock(&v->lock);
	if (ret == 0 && real && !v->parent_path) {
		v->parent_path = real;
		real = NULL;
	}
	pthread_mutex_unlock(&v->lock);
	free(real);
	return ret;
}

/* What the options ask to create, if anything. */
int vhd_open_opts(void *inst, const struct dc_open_args *a, void *opts,
		  struct vhdfmt_want *w)
{
	const char *path = ((struct vhd_img *)inst)->img.path;
	struct vhd_create *c = opts;
	uint64_t size = 0, block = VHD_DEFAULT_BLOCK;
	bool has_size = dc_opt_num(a, "create", &size);
	bool has_block = dc_opt_num(a, "block", &block);

	memset(c, 0, sizeof(*c));
	w->parent = c->parent = dc_opt_str(a, "parent");
	w->create = has_size || c->parent;
	if (!w->create) {
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
