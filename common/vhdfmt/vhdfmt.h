/* SPDX-License-Identifier: MIT */
/* vhdfmt: what the vhd1, vhd and vhdx plugins share beside the on-disk formats
 * (vhd_format.h, vhdx_format.h): GUIDs, full-length file I/O and zeroing, the
 * image lock, the create rule's check of an existing image, and for
 * differencing layers quiet probing and the parent chain check behind
 * lower_spec(). A static library each of them links (a copy in each .so;
 * nothing here is exported). */
#ifndef DISKCORE_COMMON_VHDFMT_H
#define DISKCORE_COMMON_VHDFMT_H

#include <diskcore/plugin.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The deepest parent chain accepted: the core's layer limit. */
#define VHDFMT_MAX_CHAIN 64

/* A random version-4 GUID, stored as Windows lays out a GUID in memory. */
int vhdfmt_new_uid(uint8_t uid[16]);
/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" of a GUID in Windows memory layout. */
void vhdfmt_uid_str(const uint8_t uid[16], char out[37]);

/* The real directory of path (the file itself need not exist yet), malloc'd;
 * NULL with errno set. */
char *vhdfmt_dirname(const char *path);

/* The path of file `to` relative to directory `from` (both absolute and real)
 * with Windows separators, as relative parent locators store it:
 * ".\\p.vhd", "..\\d\\p.vhd". malloc'd; NULL when out of memory. */
char *vhdfmt_relpath(const char *from, const char *to);

/* [a, a+alen) and [b, b+blen) overlap. */
static inline bool vhdfmt_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static inline uint64_t vhdfmt_round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

/* pread/pwrite the whole length; -ENODATA if the file ends first. */
int vhdfmt_pread(int fd, void *buf, size_t len, uint64_t off);
int vhdfmt_pwrite(int fd, const void *buf, size_t len, uint64_t off);
/* Move a buffer view to or from the file at off (dc_buf_pread/dc_buf_pwrite);
 * -errno, -ENODATA/-ENOSPC at an early EOF. */
int vhdfmt_xfer(int fd, const struct dc_buf *b, uint64_t off, bool write, int rwflags);
/* Map an errno from the helpers above onto a request result. */
int vhdfmt_result(struct dc_req *req, int neg_errno);
/* Zero [off, off+len) of the file: punch a hole, else write zeroes. */
int vhdfmt_zero(int fd, uint64_t off, uint64_t len);

/* dc_error() unless this thread is probing quietly. Probing other files
 * (parent candidates, the chain walk) must not leave their messages behind. */
void vhdfmt_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Enter (+1) or leave (-1) a quiet stretch on this thread; they nest. */
void vhdfmt_quiet(int delta);

/* The parent of the image at path, open read-only (and non-blocking) as fd,
 * found under the rule of common/parentpath (any: ;parents=any): a malloc'd
 * real path, or NULL when it has none or it cannot be found. Called inside a
 * quiet stretch. */
typedef char *(*vhdfmt_parent_fn)(int fd, const char *path, bool any);

/* What an image open's options ask of its start (vhdfmt_open(), open.h). */
struct vhdfmt_want {
	bool create;		    /* create= or parent=: make a missing file */
	const char *parent;	    /* parent= as given, or NULL */
	vhdfmt_parent_fn parent_of; /* the chain walk of ;overwrite's guard */
	bool any;		    /* ;parents=any */
};

/* Walk the parent chain up from parent, the parent of the image whose file is
 * dev/ino, asking parent_of for each next link. A loop, or a chain deeper than
 * VHDFMT_MAX_CHAIN, is refused with -ELOOP and a message about path. A link
 * that cannot be opened or parsed ends the walk with 0: opening it as a layer
 * reports what is wrong with it. */
int vhdfmt_check_chain(const char *path, dev_t dev, ino_t ino, const char *parent,
		       vhdfmt_parent_fn parent_of, bool any);

/* The end of a differencing image's lower_spec(), once its parent resolved to
 * the real path parent: refuse a path a spec cannot hold, check the chain above
 * the image (path, open as fd), and write "form:parent" into buf (len bytes).
 * Returns 1, or -errno after a message. */
int vhdfmt_lower_spec(const char *form, const char *path, int fd, const char *parent,
		      vhdfmt_parent_fn parent_of, bool any, char *buf, size_t len);

/* Lock an open image (flock, never waiting): shared for a read-only open,
 * exclusive for a writable one, so no two opens write one image and none reads
 * it while another writes. The lock goes with the fd. -errno after a message. */
int vhdfmt_lock(int fd, const char *path, bool read_only);

/* ;overwrite with parent=: refuse (-ELOOP after a message) to empty the file
 * at path when the chain above parent runs through it. A guard against a
 * mistake, run before dc_create_open() empties the file. */
int vhdfmt_overwrite_guard(const char *path, const char *parent,
			   vhdfmt_parent_fn parent_of, bool any);

/* create= or parent= named an image that exists, so dc_create_open() opened it
 * unchanged: refuse it (-EEXIST after a message) unless it is what they
 * describe. want_size: create='s size (0: none), size: the image's virtual
 * size; want_parent: parent= as given (NULL: none); why_not: NULL when the
 * image is a differencing image whose parent parent= names (the plugin
 * checked the parent's id), else why it is not ("it is not one", ...). */
int vhdfmt_check_existing(const char *path, uint64_t want_size, uint64_t size,
			  const char *want_parent, const char *why_not);

/* ;parents=any|beneath (default beneath): whether the parent locators stored
 * in the image may lead out of its directory (common/parentpath).
 * -EINVAL after a message for another value. */
int vhdfmt_parents_opt(const struct dc_open_args *a, const char *path, bool *any);

/* The start of a differencing format's attach(): info becomes the instance's
 * (base), read-only when this open is (a shared instance's opens differ).
 * Returns 1 when a differencing image (diff) has a parent below (below) for
 * the plugin to check next, 0 when it is no differencing image, and -EINVAL
 * after a message about path (a what: "VHD") without a parent below. */
int vhdfmt_attach(const struct dc_info *base, bool diff, bool below, const char *path,
		  const char *what, struct dc_info *info);

/* vhdfmt_lower_spec(), and with ;parents=any (any) the permission goes down
 * the chain with the parent's spec. */
int vhdfmt_lower_spec_any(const char *form, const char *path, int fd, const char *parent,
			  vhdfmt_parent_fn parent_of, bool any, char *buf, size_t len);

/* extents() over fixed-size blocks of 2^spb_shift sectors: fn gives the
 * flags of the run at sector o of block b (*len: its length, at most n, set
 * to n before the call) or -errno; runs of the same flags merge across
 * blocks. Returns the flags of [sector, sector + *run). */
typedef int (*vhdfmt_block_run_fn)(void *ctx, uint64_t b, uint32_t o, uint32_t n,
				   uint32_t *len);
int vhdfmt_extents(void *ctx, unsigned spb_shift, uint64_t sector, uint64_t count,
		   vhdfmt_block_run_fn fn, uint64_t *run);
/* check(): the note on a differencing image's parent, as resolving it went
 * (ret < 0: it did not; any: under ;parents=any). */
void vhdfmt_check_parent(dc_check_report_fn rep, void *arg, int ret, const char *parent,
			 bool any);

#endif
