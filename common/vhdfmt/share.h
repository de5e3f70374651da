/* SPDX-License-Identifier: MIT */
/* vhdfmt share: the images a plugin has open in this process, so that a second
 * open of one image (OpenVMM opens an IDE disk twice, for ATA and for ATAPI)
 * gets the same instance: one fd, one flock, one cached BAT. Two instances of
 * one writable image would each cache its BAT and allocate the same space
 * twice; a second flock on another fd would refuse the open. Other processes
 * still meet the flock (docs/spec-strings.md, "One image, two opens").
 *
 * The table is per plugin: each .so links its own copy of this library, so
 * vhd1: and vhd: opening one file are two instances, and the flock refuses
 * the second writer as before. */
#ifndef DISKCORE_COMMON_VHDFMT_SHARE_H
#define DISKCORE_COMMON_VHDFMT_SHARE_H

#include <diskcore/plugin.h>

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* One open image; embedded in the plugin's instance. */
struct vhdfmt_share {
	dev_t dev;
	ino_t ino;
	bool read_only; /* the instance is read-only: no writable open may share it */
	unsigned refs;	/* 0: not in the table */
	struct vhdfmt_share *next;
};

/* Hold the table across a whole open(), so that two threads opening one image
 * make one instance, never two. */
void vhdfmt_share_lock(void);
void vhdfmt_share_unlock(void);

/* Table held, the image just opened as fd: when this process has it open
 * already, *found is that instance's entry with one more reference (the
 * caller closes fd and returns the instance) when the modes match: a
 * writable open of an image open read-only here, or the reverse, is refused
 * (-EBUSY), as flock refuses it between processes. Otherwise *found is NULL and fd is
 * locked (vhdfmt_lock: shared when read-only, exclusive when writable), which
 * refuses an image another process holds. Returns 0, or -errno after a
 * message. */
int vhdfmt_share_claim(int fd, const char *path, bool read_only,
		       struct vhdfmt_share **found);

/* Table held: enter the instance of the image open as fd, with one reference. */
int vhdfmt_share_add(struct vhdfmt_share *e, int fd, bool read_only);

/* A plugin's open() is fn run with the table held. */
int vhdfmt_share_open(int (*fn)(const struct dc_open_args *a, void **inst,
				struct dc_info *info),
		      const struct dc_open_args *a, void **inst, struct dc_info *info);

/* Table held, the end of a second open that vhdfmt_share_claim() found: with
 * err (the create= check's refusal) give the reference back and return err;
 * else info is the instance's (base), read-only if this open is. */
int vhdfmt_share_join(struct vhdfmt_share *e, int err, const struct dc_info *base,
		      bool read_only, struct dc_info *info);

/* Drop a reference (takes the table). The last one, or an entry never
 * added, runs fin(e) (the instance's flush and close) with the table held. */
void vhdfmt_share_close(struct vhdfmt_share *e, void (*fin)(struct vhdfmt_share *e));
/* The same as a plugin's close() when its instance inst begins with its
 * entry (as one that begins with its struct vhdfmt_image does, open.h):
 * fin(inst) frees it. */
void vhdfmt_share_close_inst(void *inst, void (*fin)(void *inst));

#endif
