/* SPDX-License-Identifier: MIT */
/* The backing file of a qcow2 image, as the layer below (docs/spec-strings.md,
 * "qcow2"). Its format comes from the backing-format header extension (qcow2,
 * raw, vpc, vhdx); without one, only a file whose magic says qcow2 is taken
 * (probing raw would let a guest's data choose the format). The path, relative
 * to the image's directory or absolute, must stay inside that directory
 * unless the spec says ;parents=any: common/parentpath's rule. */
#include "qcow2.h"

#include "endian/byteorder.h"
#include "parentpath/parentpath.h"
#include "vhdfmt/vhdfmt.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The spec form for a backing format, NULL for one diskcore cannot open. */
static const char *qcow2_form_of(const char *fmt)
{
	static const char *const map[][2] = {
		{ "qcow2", "qcow2" }, { "raw", "file" },  { "vpc", "vhd" },
		{ "vhd", "vhd" },     { "vhdx", "vhdx" },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(fmt, map[i][0]) == 0)
			return map[i][1];
	return NULL;
}

/* The backing file, open read-only under the parent rule of
 * common/parentpath (docs/security.md): fd, or -errno after a message. */
static int qcow2_open_backing(struct qcow2 *q)
{
	int fd = parentpath_open(q->dir, q->backing,
				 q->parents_any ? PARENTPATH_ANY : PARENTPATH_BENEATH);

	if (fd >= 0)
		return fd;
	if (parentpath_refused(fd)) {
		vhdfmt_err("%s: the backing file %s %s; a backing file outside the "
			   "image's directory %s is followed only when the spec says "
			   ";parents=any",
			   q->path, q->backing, parentpath_why(fd), q->dir);
		return -EPERM;
	}
	vhdfmt_err("%s: cannot open the backing file %s: %s", q->path, q->backing,
		   strerror(-fd));
	return fd;
}

int qcow2_resolve_backing(struct qcow2 *q)
{
	uint8_t magic[4];
	int fd, ret = 0;

	if (!q->backing)
		return 0;
	if (q->backing_fmt) {
		q->parent_form = qcow2_form_of(q->backing_fmt);
		if (!q->parent_form) {
			vhdfmt_err("%s: the backing file %s has format '%s', which "
				   "diskcore does not open as a layer (qcow2, raw, vpc "
				   "and vhdx are supported)",
				   q->path, q->backing, q->backing_fmt);
			return -ENOTSUP;
		}
	}
	fd = qcow2_open_backing(q);
	if (fd < 0)
		return fd;
	if (!q->parent_form) {
		if (vhdfmt_pread(fd, magic, 4, 0) == 0 &&
		    get_be32(magic) == QCOW2_MAGIC) {
			q->parent_form = "qcow2";
		} else {
			vhdfmt_err(
				"%s: the image does not name its backing file's format "
				"and %s is not a qcow2 image; name it with "
				"`qemu-img rebase -u -F FORMAT -b %s`",
				q->path, q->backing, q->backing);
			ret = -EINVAL;
		}
	}
	if (ret == 0) {
		q->parent = parentpath_fd_path(fd);
		if (!q->parent) {
			vhdfmt_err("%s: cannot resolve the backing file %s", q->path,
				   q->backing);
			ret = -ENOENT;
		}
	}
	close(fd);
	return ret;
}

char *qcow2_parent_of(int fd, const char *path, bool any)
{
	struct qcow2 q = { .path = (char *)path, .fd = fd };
	struct stat st;
	char *parent = NULL;

	(void)any;

	q.dir = vhdfmt_dirname(path);
	if (q.dir && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		q.file_size = (uint64_t)st.st_size;
		/* Any backing file, wherever it is: this only looks for loops. */
		q.parents_any = true;
		if (qcow2_read_header(&q) == 0 && qcow2_resolve_backing(&q) == 0) {
			parent = q.parent;
			q.parent = NULL;
		}
	}
	q.fd = -1;
	q.path = NULL;
	qcow2_free(&q);
	return parent;
}

int qcow2_check_existing(const struct dc_open_args *a, struct qcow2 *q)
{
	const char *parent = dc_opt_str(a, "parent"), *why_not = NULL;
	char why[PATH_MAX + 64], *real;
	uint64_t size = 0;
	int ret;

	dc_opt_num(a, "create", &size);
	if (parent && !q->backing) {
		why_not = "it has no backing file";
	} else if (parent) {
		ret = qcow2_resolve_backing(q);
		if (ret)
			return ret;
		real = realpath(parent, NULL);
		if (!real || strcmp(real, q->parent) != 0) {
			snprintf(why, sizeof(why), "its backing file is %s", q->parent);
			why_not = why;
		}
		free(real);
	}
	return vhdfmt_check_existing(q->path, size, q->h.size, parent, why_not);
}
