/* SPDX-License-Identifier: MIT */
/* vhdfmt open: an image plugin's open() (vhd1, vhd, vhdx), the steps they share
 * in the order they take them, around what the format does: the path field,
 * the instance, the options, the file (created when wanted, vhdfmt_open()),
 * a second open of an image this process has open joining that instance
 * (share.h), a new image written, the image loaded and checked against
 * create=/parent= (the create rule), the data engine (aio.h), the share
 * table, info. */
#ifndef DISKCORE_COMMON_VHDFMT_OPEN_H
#define DISKCORE_COMMON_VHDFMT_OPEN_H

#include "share.h"
#include "vhdfmt.h"

#include <diskcore/plugin.h>

#include <stdbool.h>
#include <stddef.h>

struct ioe_file;

/* What every image instance begins with (its first member, img): the fields
 * the open sets and reads. The share entry comes first, so the instance is
 * also its entry (share.h). */
struct vhdfmt_image {
	struct vhdfmt_share share; /* this process's opens of the image */
	char *path;
	int fd;
	int aio_fd;	      /* the engine's description of the file (aio.h) */
	struct ioe_file *ioe; /* the data I/O that changes no metadata */
	struct dc_info info;  /* the first open's; a second one shares it */
	bool parents_any;     /* ;parents=any: locators may lead anywhere */
};

_Static_assert(offsetof(struct vhdfmt_image, share) == 0,
	       "an image begins with its share entry");

/* The image whose share entry e is. */
static inline struct vhdfmt_image *vhdfmt_image_of(struct vhdfmt_share *e)
{
	return (struct vhdfmt_image *)(void *)e;
}

/* An instance type must begin with its struct vhdfmt_image img. */
#define VHDFMT_IMAGE_FIRST(type) \
	_Static_assert(offsetof(type, img) == 0, #type " must begin with its image")

/* A format's part. The instance (size bytes) begins with its image; opts is
 * the plugin's scratch for the open's options. */
struct vhdfmt_open_ops {
	const char *form; /* "vhd": "missing path (expected vhd:PATH)" */
	size_t size;	  /* of the instance */
	/* The rest of a new instance (zeroed, image path set, fds -1). */
	void (*init)(void *inst, bool read_only);
	/* Free an instance, open or partly open (its fds and engine closed). */
	void (*free)(void *inst);
	/* The open's options (all but ;parents=): into opts, and *w. */
	int (*options)(void *inst, const struct dc_open_args *a, void *opts,
		       struct vhdfmt_want *w);
	/* create= or parent= (in opts) against the image open as inst. */
	int (*check)(void *inst, const void *opts);
	/* Write a new image into the empty file this open made. */
	int (*create)(void *inst, void *opts);
	/* Parse the image and load what I/O needs (created: this open made it). */
	int (*load)(void *inst, const void *opts, bool created);
	/* The instance's info, also kept in its image for a second open. */
	void (*info)(void *inst, struct dc_info *info);
	/* Open the data engine: vhdfmt_open_engine(). */
	int (*engine)(struct vhdfmt_image *img, bool read_only);
	/* A format with differencing images: the walk up its chain; the open
	 * parses ;parents= into the image's parents_any. NULL: no parents. */
	vhdfmt_parent_fn parent_of;
};

/* The start of vhdfmt_image_open(), in this order: with create= or parent= (w) and
 * ;overwrite, refuse to empty an image the chain above parent runs through; open the
 * file, creating it when wanted (dc_create_open(); *created says whether it did); then,
 * the share table held (share.h), either find the instance this process has open for it
 * (*found, the fd closed, and 0 returned) or lock it. A force_share open
 * (DC_OPEN_FORCE_SHARE) takes no lock and shares nothing: the caller must not
 * vhdfmt_share_add() it. O_NONBLOCK: a FIFO must not hang the open before the image is
 * parsed and refused (regular files ignore the flag). Returns the fd, 0 with *found, or
 * -errno after a message. */
int vhdfmt_open(const struct dc_open_args *a, const char *path,
		const struct vhdfmt_want *w, bool *created, struct vhdfmt_share **found);

/* vhdfmt_engine_open() (aio.h) into the image's aio_fd and ioe. In
 * aio_open.c: a user links common/ioengine. */
int vhdfmt_open_engine(struct vhdfmt_image *img, bool read_only);

/* The plugin's open(): ops's steps with the share table held, so that two
 * threads opening one image make one instance. Returns 0 with *inst, or
 * -errno after a message. */
int vhdfmt_image_open(const struct vhdfmt_open_ops *ops, void *opts,
		      const struct dc_open_args *a, void **inst, struct dc_info *info);

/* The open() p_open of plugin p, instance type t, whose open's options go
 * into an o: vhdfmt_image_open() with the ops p_open_ops, which the
 * functions p_init, p_free, p_open_opts, p_check_existing, p_create, p_load
 * and p_fill_info, and the initializers ... (at least one, .parent_of = NULL
 * for none) make. The instance begins with its image (checked). */
#define VHDFMT_OPEN(p, t, o, ...)                                              \
	static const struct vhdfmt_open_ops p##_open_ops = {                   \
		.form = #p,                                                    \
		.size = sizeof(t),                                             \
		.init = p##_init,                                              \
		.free = p##_free,                                              \
		.options = p##_open_opts,                                      \
		.check = p##_check_existing,                                   \
		.create = p##_create,                                          \
		.load = p##_load,                                              \
		.info = p##_fill_info,                                         \
		.engine = vhdfmt_open_engine,                                  \
		__VA_ARGS__                                                    \
	};                                                                     \
	static int p##_open(const struct dc_open_args *a, void **inst,         \
			    struct dc_info *info)                              \
	{                                                                      \
		o opts;                                                        \
                                                                               \
		return vhdfmt_image_open(&p##_open_ops, &opts, a, inst, info); \
	}                                                                      \
	VHDFMT_IMAGE_FIRST(t)

/* VHDFMT_OPEN() of a format with differencing images: p_parent_of walks its
 * chain. */
#define VHDFMT_OPEN_DIFF(p, t, o) VHDFMT_OPEN(p, t, o, .parent_of = p##_parent_of)

#endif
