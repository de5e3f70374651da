/* SPDX-License-Identifier: MIT */
/* parentpath: references stored in images, followed under one rule (see
 * parentpath.h). */
#include "parentpath.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PARENTPATH_FLAGS (O_RDONLY | O_CLOEXEC | O_NONBLOCK)

/* ref inside dirfd, never leaving it. */
static int parentpath_beneath(int dirfd, const char *ref)
{
	struct open_how how = {
		.flags = PARENTPATH_FLAGS,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	long fd = syscall(SYS_openat2, dirfd, ref, &how, sizeof(how));

	return fd < 0 ? -errno : (int)fd;
}

int parentpath_open(const char *dir, const char *ref, enum parentpath_rule rule)
{
	size_t dl = strlen(dir);
	int dirfd, fd;

	if (!ref[0])
		return -ENOENT;
	if (ref[0] == '/' && rule == PARENTPATH_BENEATH) {
		/* Inside dir: the relative path it spells ("/" is every path's
		 * directory). */
		if (dl == 1 && dir[0] == '/')
			ref += 1;
		else if (strncmp(ref, dir, dl) == 0 && ref[dl] == '/')
			ref += dl + 1;
		else
			return -EXDEV;
		while (*ref == '/')
			ref++;
		if (!*ref)
			return -EXDEV; /* the directory itself */
	}
	dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	if (rule == PARENTPATH_BENEATH) {
		fd = parentpath_beneath(dirfd, ref);
	} else {
		fd = openat(dirfd, ref, PARENTPATH_FLAGS);
		if (fd < 0)
			fd = -errno;
	}
	close(dirfd);
	return fd;
}

bool parentpath_refused(int err)
{
	return err == -EXDEV || err == -ELOOP || err == -ENOSYS;
}

const char *parentpath_why(int err)
{
	switch (err) {
	case -EXDEV:
		return "leaves the image's directory (an absolute path elsewhere, a "
		       "\"..\" that climbs out, or a symlink that leads out)";
	case -ELOOP:
		return "runs through a symlink loop or a /proc magic link";
	case -ENOSYS:
		return "cannot be checked: this kernel has no openat2 (Linux 5.6), "
		       "which the check that it stays inside the image's directory "
		       "needs";
	default:
		return strerror(-err);
	}
}

char *parentpath_fd_path(int fd)
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
