/* SPDX-License-Identifier: MIT */
/* The backing file of a qcow2 image, as the layer below (docs/spec-strings.md,
 * "qcow2"). Its format comes from the backing-format header extension (qcow2,
 * raw, vpc, vhdx); without one, only a file whose magic says qcow2 is taken
 * (probing raw would let a guest's data choose the format). The path, relative
 * to the image's directory or absolute, must stay inside that directory
 * (openat2 RESOLVE_BENEATH) unless the spec says ;parents=any. */
#include "qcow2.h"

#include "endian/byteorder.h"
#include "vhdfmt/vhdfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

/* The real path of an open fd, malloc'd. */
static char *qcow2_fd_path(int fd)
{
	char link[64], buf[4096];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, buf, sizeof(buf) - 1);
	if (n <= 0 || n >= (ssize_t)sizeof(buf) - 1)
		return NULL;
	buf[n] = '\0';
	return strdup(buf);
}

/* Open name (relative to dirfd) without leaving the directory: RESOLVE_BENEATH
 * refuses "..", absolute symlinks and links that climb out (-EXDEV). */
static int qcow2_open_beneath(int dirfd, const char *name)
{
	struct open_how how = {
		.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK,
		.resolve = RESOLVE_BENEATH,
	};
	long fd = syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
	char *dir, *joined = NULL, *real = NULL;
	int ret;

	if (fd >= 0 || errno != ENOSYS)
		return fd < 0 ? -errno : (int)fd;
	/* A kernel before 5.6: resolve, then check the prefix (racy against a
	 * rename meanwhile, which openat2 is not). */
	dir = qcow2_fd_path(dirfd);
	if (dir && asprintf(&joined, "%s/%s", dir, name) >= 0)
		real = realpath(joined, NULL);
	if (!real)
		ret = dir && joined ? -errno : -ENOMEM;
	else if (strncmp(real, dir, strlen(dir)) != 0 || real[strlen(dir)] != '/')
		ret = -EXDEV;
	else if ((ret = open(real, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0)
		ret = -errno;
	free(real);
	free(joined);
	free(dir);
	return ret;
}

/* The backing file, open read-only: fd, or -errno after a message. */
static int qcow2_open_backing(struct qcow2 *q)
{
	size_t dl = strlen(q->dir);
	const char *rel = q->backing;
	int dirfd, fd;

	if (q->parents_any) {
		if (q->backing[0] == '/')
			fd = open(q->backing, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		else {
			dirfd = open(q->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
			fd = dirfd < 0 ? -1 :
					 openat(dirfd, rel,
						O_RDONLY | O_CLOEXEC | O_NONBLOCK);
			if (dirfd >= 0) {
				int e = errno;

				close(dirfd);
				errno = e;
			}
		}
		fd = fd < 0 ? -errno : fd;
	} else {
		/* An absolute name inside the image's directory is taken as the
		 * relative one it spells. */
		if (rel[0] == '/') {
			if (strncmp(rel, q->dir, dl) != 0 || rel[dl] != '/')
				goto escapes;
			rel += dl + 1;
		}
		dirfd = open(q->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (dirfd < 0)
			fd = -errno;
		else {
			fd = qcow2_open_beneath(dirfd, rel);
			close(dirfd);
		}
		if (fd == -EXDEV || fd == -ELOOP)
			goto escapes;
	}
	if (fd < 0)
		vhdfmt_err("%s: cannot open the backing file %s: %s", q->path, q->backing,
			   strerror(-fd));
	return fd;
escapes:
	vhdfmt_err("%s: the backing file %s lies outside the image's directory %s; "
		   "add ;parents=any to the spec to follow it",
		   q->path, q->backing, q->dir);
	return -EPERM;
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
		q->parent = qcow2_fd_path(fd);
		if (!q->parent) {
			vhdfmt_err("%s: cannot resolve the backing file %s", q->path,
				   q->backing);
			ret = -ENOENT;
		}
	}
	close(fd);
	return ret;
}

char *qcow2_parent_of(int fd, const char *path)
{
	struct qcow2 q = { .path = (char *)path, .fd = fd };
	struct stat st;
	char *parent = NULL;

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
