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

#include "vhdfmt.h"

#include <diskcore/plugin.h>

#include <stdbool.h>
#include <stddef.h>

struct vhdfmt_share;

/* A format's part. The instance begins with its share entry and has the members the *_off
 * name; opts is the plugin's scratch for the open's options. */
struct vhdfmt_open_ops {
	const char *form; /* "vhd": "missing path (expected vhd:PATH)" */
	size_t size;	  /* of the instance */
	/* char *path, int fd, the data engine (int aio_fd, struct ioe_file
	 * *ioe: aio.h), struct dc_info info */
	size_t path_off, fd_off, aio_fd_off, ioe_off, info_off;
	/* The rest of a new instance (zeroed, path set, fds -1). */
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
	/* The instance's info, also kept at info_off for a second open. */
	void (*info)(void *inst, struct dc_info *info);
	/* Open the data engine: vhdfmt_open_engine(). */
	int (*engine)(const struct vhdfmt_open_ops *ops, void *inst, bool read_only);
	/* A format with differencing images: the walk up its chain, and where
	 * the instance keeps ;parents=any (bool), which the open parses. NULL:
	 * no parents. */
	vhdfmt_parent_fn parent_of;
	size_t any_off;
};

/* The member of type at offset off of an instance. */
#define VHDFMT_AT(inst, off, type) ((type *)(void *)((char *)(inst) + (off)))

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

/* vhdfmt_engine_open() (aio.h) into the instance's aio_fd and ioe. In
 * aio_open.c: a user links common/ioengine. */
int vhdfmt_open_engine(const struct vhdfmt_open_ops *ops, void *inst, bool read_only);

/* The plugin's open(): ops's steps with the share table held, so that two
 * threads opening one image make one instance. Returns 0 with *inst, or
 * -errno after a message. */
int vhdfmt_image_open(const struct vhdfmt_open_ops *ops, void *opts,
		      const struct dc_open_args *a, void **inst, struct dc_info *info);

/* The open() p_open of plugin p, instance type t, whose open's options go
 * into an o: vhdfmt_image_open() with the ops p_open_ops, which the members
 * named above, the functions p_init, p_free, p_open_opts, p_check_existing,
 * p_create, p_load and p_fill_info, and the initializers ... (at least one,
 * .parent_of = NULL for none) make. The instance begins with its share entry
 * (checked). */
#define VHDFMT_OPEN(p, t, o, ...)                                              \
	static const struct vhdfmt_open_ops p##_open_ops = {                   \
		.form = #p,                                                    \
		.size = sizeof(t),                                             \
		.path_off = offsetof(t, path),                                 \
		.fd_off = offsetof(t, fd),                                     \
		.aio_fd_off = offsetof(t, aio_fd),                             \
		.ioe_off = offsetof(t, ioe),                                   \
		.info_off = offsetof(t, info),                                 \
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
	_Static_assert(offsetof(t, share) == 0, #t " must begin with its share entry")

/* VHDFMT_OPEN() of a format with differencing images: p_parent_of walks its
 * chain, the instance's bool parents_any keeps ;parents=. */
#define VHDFMT_OPEN_DIFF(p, t, o)                        \
	VHDFMT_OPEN(p, t, o, .parent_of = p##_parent_of, \
		    .any_off = offsetof(t, parents_any))

#endif
