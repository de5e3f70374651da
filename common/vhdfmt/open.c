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
static void *vhdfmt_open_alloc(const struct vhdfmt_open_ops *ops, const char *path,
			       bool read_only)
{
	void *v = calloc(1, ops->size);
	char *copy = strdup(path);

	if (!v || !copy) {
		free(v);
		free(copy);
		return NULL;
	}
	*VHDFMT_AT(v, ops->path_off, char *) = copy;
	*VHDFMT_AT(v, ops->fd_off, int) = -1;
	*VHDFMT_AT(v, ops->aio_fd_off, int) = -1;
	ops->init(v, read_only);
	return v;
}

/* A second open of an image this process has open (found): the instance it
 * has, after the create rule's check of this open's options. */
static int vhdfmt_open_join(const struct vhdfmt_open_ops *ops, const void *opts,
			    bool want, struct vhdfmt_share *found,
			    const struct dc_open_args *a, void **inst,
			    struct dc_info *info)
{
	void *o = found; /* the instance begins with its entry */
	int ret = want ? ops->check(o, opts) : 0;

	ret = vhdfmt_share_join(found, ret, VHDFMT_AT(o, ops->info_off, struct dc_info),
				a->read_only, info);
	if (ret == 0)
		*inst = o;
	return ret;
}

/* The rest of the open of a new instance v, its file open (or not) as fd. */
static int vhdfmt_open_load(const struct vhdfmt_open_ops *ops, void *opts,
			    const struct vhdfmt_want *w, bool created, void *v,
			    const struct dc_open_args *a, struct dc_info *info)
{
	int fd = *VHDFMT_AT(v, ops->fd_off, int);
	int ret;

	if (created) {
		ret = ops->create(v, opts);
		if (ret) {
			unlink(a->fields[0]);
			return ret;
		}
	}
	ret = ops->load(v, opts, created);
	if (ret == 0 && w->create && !created)
		ret = ops->check(v, opts);
	if (ret == 0)
		ret = ops->engine(ops, v, a->read_only);
	if (ret == 0 && !a->force_share)
		ret = vhdfmt_share_add(v, fd, a->read_only);
	if (ret == 0)
		ops->info(v, info);
	return ret;
}

static int vhdfmt_open_locked(const struct vhdfmt_open_ops *ops, void *opts,
			      const struct dc_open_args *a, void **inst,
			      struct dc_info *info)
{
	struct vhdfmt_want w = { 0 };
	struct vhdfmt_share *found = NULL;
	bool created = false;
	void *v;
	int ret;

	if (a->nfields < 1 || !a->fields[0][0]) {
		vhdfmt_err("missing path (expected %s:PATH)", ops->form);
		return -EINVAL;
	}
	v = vhdfmt_open_alloc(ops, a->fields[0], a->read_only);
	if (!v) {
		vhdfmt_err("out of memory");
		return -ENOMEM;
	}
	ret = ops->options(v, a, opts, &w);
	if (ret == 0 && ops->parent_of) {
		ret = vhdfmt_parents_opt(a, a->fields[0], &w.any);
		w.parent_of = ops->parent_of;
		*VHDFMT_AT(v, ops->any_off, bool) = w.any;
	}
	if (ret == 0)
		ret = vhdfmt_open(a, a->fields[0], &w, &created, &found);
	if (found) {
		ops->free(v);
		return vhdfmt_open_join(ops, opts, w.create, found, a, inst, info);
	}
	if (ret >= 0) {
		*VHDFMT_AT(v, ops->fd_off, int) = ret;
		ret = vhdfmt_open_load(ops, opts, &w, created, v, a, info);
	}
	if (ret) {
		ops->free(v);
		return ret;
	}
	*inst = v;
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
