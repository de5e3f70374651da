/* SPDX-License-Identifier: MIT */
/* parentpath: following a path that an image stores to another file (a VHD or
 * VHDX parent locator, a qcow2 backing file name) under one rule: the image is
 * untrusted input, so by default such a path is followed only when it
 * resolves inside the directory of the image that names it. Relative paths
 * are resolved from that directory with openat2(RESOLVE_BENEATH), which
 * refuses a ".." that climbs out, an absolute symlink and a symlink that
 * leads out, atomically against renames; an absolute path counts only when it
 * begins with the directory (it is then the relative path it spells). A spec
 * that opts in (";parents=any") follows any path. There is no unchecked
 * fallback: without openat2 (Linux < 5.6) the default rule refuses. */
#ifndef DISKCORE_COMMON_PARENTPATH_H
#define DISKCORE_COMMON_PARENTPATH_H

#include <stdbool.h>

enum parentpath_rule {
	PARENTPATH_BENEATH = 0, /* inside the image's directory (the default) */
	PARENTPATH_ANY = 1,	/* anywhere: the spec opted in */
};

/* Open ref, a path stored in an image whose directory is dir (absolute, with
 * no symlinks: a realpath()), read-only with O_CLOEXEC and O_NONBLOCK (a
 * reference may name a FIFO), under rule. Returns the fd, or -errno: -EXDEV
 * when ref leaves dir, -ELOOP when it runs through a symlink loop or a magic
 * link (/proc/PID/fd/N), -ENOSYS when the kernel has no openat2, else what
 * open() says (-ENOENT, ...). */
int parentpath_open(const char *dir, const char *ref, enum parentpath_rule rule);

/* True for the errors of parentpath_open() that are the rule's refusals. */
bool parentpath_refused(int err);

/* Why parentpath_open() refused (err one of its -errnos): a phrase to follow
 * "the path ... ", e.g. "leaves the image's directory". */
const char *parentpath_why(int err);

/* The path of the file open as fd, malloc'd (from /proc/self/fd): the real
 * path of what was opened, for a spec to name. NULL on error. */
char *parentpath_fd_path(int fd);

#endif
