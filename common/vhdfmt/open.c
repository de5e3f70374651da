/* SPDX-License-Identifier: MIT */
/* vhdfmt open: the image plugins' open() (see open.h). */
#include "open.h"

#include "share.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int vhdfmt_open(const struct dc_open_args *a, const char *path,
		const struct vhdfmt_want *w, bool *created, struct vhdfmt_share **found)
{
	int fd, ret;

	*found = NULL;
	if (w->create && dc_opt_flag(a, "overwrite")) {
		ret = vhdfmt_overwrite_guard(path, w->parent, w->parent_of, w->any);
		if (ret)
			return ret;
	}
	fd = dc_create_open(a, path, O_NONBLOCK | (w->create ? O_CREAT : 0), created);
	if (fd < 0)
		return fd;
	/* --force-share: no lock, and an instance of its own (share.h). */
	if (a->force_share)
		return fd;
	ret = vhdfmt_share_claim(fd, path, a->read_only, found);
	if (ret || *found) {
		close(fd);
		return ret;
	}
	return fd;
}

/* A new instance of the image at path: zeroed, path copied, fds -1. */
static struct vhdfmt_image *vhdfmt_open_alloc(const struct vhdfmt_open_ops *ops,
					      const char *path, bool read_only)
{
	struct vhdfmt_image *img = calloc(1, ops->size);
	char *copy = strdup(path);

	if (!img || !copy) {
		free(img);
		free(copy);
		return NULL;
	}
	img->path = copy;
	img->fd = -1;
	img->aio_fd = -1;
	ops->init(img, read_only);
	return img;
}

/* A second open of an image this process has open (found): the instance it
 * has, after the create rule's check of this open's options. */
static int vhdfmt_open_join(const struct vhdfmt_open_ops *ops, const void *opts,
			    bool want, struct vhdfmt_share *found,
			    const struct dc_open_args *a, void **inst,
			    struct dc_info *info)
{
	struct vhdfmt_image *img = vhdfmt_image_of(found);
	int ret = want ? ops->check(img, opts) : 0;

	ret = vhdfmt_share_join(found, ret, &img->info, a->read_only, info);
	if (ret == 0)
		*inst = img;
	return ret;
}

/* The rest of the open of a new instance img, its file open (or not). */
static int vhdfmt_open_load(const struct vhdfmt_open_ops *ops, void *opts,
			    const struct vhdfmt_want *w, bool created,
			    struct vhdfmt_image *img, const struct dc_open_args *a,
			    struct dc_info *info)
{
	int ret;

	if (created) {
		ret = ops->create(img, opts);
		if (ret) {
			unlink(a->fields[0]);
			return ret;
		}
	}
	ret = ops->load(img, opts, created);
	if (ret == 0 && w->create && !created)
		ret = ops->check(img, opts);
	if (ret == 0)
		ret = ops->engine(img, a->read_only);
	if (ret == 0 && !a->force_share)
		ret = vhdfmt_share_add(&img->share, img->fd, a->read_only);
	if (ret == 0)
		ops->info(img, info);
	return ret;
}

static int vhdfmt_open_locked(const struct vhdfmt_open_ops *ops, void *opts,
			      const struct dc_open_args *a, void **inst,
			      struct dc_info *info)
{
	struct vhdfmt_want w = { 0 };
	struct vhdfmt_share *found = NULL;
	struct vhdfmt_image *img;
	bool created = false;
	int ret;

	if (a->nfields < 1 || !a->fields[0][0]) {
		vhdfmt_err("missing path (expected %s:PATH)", ops->form);
		return -EINVAL;
	}
	img = vhdfmt_open_alloc(ops, a->fields[0], a->read_only);
	if (!img) {
		vhdfmt_err("out of memory");
		return -ENOMEM;
	}
	ret = ops->options(img, a, opts, &w);
	if (ret == 0 && ops->parent_of) {
		ret = vhdfmt_parents_opt(a, a->fields[0], &w.any);
		w.parent_of = ops->parent_of;
		img->parents_any = w.any;
	}
	if (ret == 0)
		ret = vhdfmt_open(a, a->fields[0], &w, &created, &found);
	if (found) {
		ops->free(img);
		return vhdfmt_open_join(ops, opts, w.create, found, a, inst, info);
	}
	if (ret >= 0) {
		img->fd = ret;
		ret = vhdfmt_open_load(ops, opts, &w, created, img, a, info);
	}
	if (ret) {
		ops->free(img);
		return ret;
	}
	*inst = img;
	return 0;
}

int vhdfmt_image_open(const struct vhdfmt_open_ops *ops, void *opts,
		      const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	int ret;

	vhdfmt_share_lock();
	ret = vhdfmt_open_locked(ops, opts, a, inst, info);
	vhdfmt_share_unlock();
	return ret;
}
