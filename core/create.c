/* SPDX-License-Identifier: MIT */
/* dc_create_open(): the one rule for options that create an image
 * (docs/spec-strings.md, "Creating images"), so that no plugin can destroy an
 * image by accident: create=SIZE makes a missing image and opens an existing
 * one unchanged, only ;overwrite replaces one, and a read-only open never
 * creates, truncates or writes anything.
 *
 * Race-free by construction: a file is created only with O_CREAT|O_EXCL, so a
 * file that appears between two steps is opened, never clobbered, and nothing
 * is decided from a stat() of the path. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Create, then open, then create again...: each open that fails with ENOENT
 * means the file vanished after O_EXCL saw it; a few rounds settle any race
 * but a dangling symbolic link (O_EXCL never follows one). */
#define CREATE_TRIES 8

/* ;overwrite found the file: empty it for the plugin's new image. */
static int create_overwrite(const char *path, int fd)
{
	struct stat st;
	int err;

	if (fstat(fd, &st) < 0) {
		err = errno;
		return dc_fail(-err, "%s: stat failed: %s", path, strerror(err));
	}
	if (!S_ISREG(st.st_mode))
		return dc_fail(-EINVAL,
			       "%s: ;overwrite replaces regular files only (this is not "
			       "one)",
			       path);
	/* An image that another open holds (vhd1, vhd, vhdx and sqlite lock
	 * theirs) is never emptied under it; the lock stays with the fd. */
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		err = errno;
		return dc_fail(err == EWOULDBLOCK ? -EBUSY : -err,
			       "%s: cannot overwrite: %s", path,
			       err == EWOULDBLOCK ? "the image is in use (locked)" :
						    strerror(err));
	}
	if (ftruncate(fd, 0) < 0) {
		err = errno;
		return dc_fail(-err, "%s: cannot truncate: %s", path, strerror(err));
	}
	return 0;
}

/* A missing file is created with O_EXCL; an existing one is opened as it is. */
static int create_or_open(const char *path, int flags, bool *created)
{
	int fd, err;

	for (int i = 0; i < CREATE_TRIES; i++) {
		fd = open(path, flags | O_CREAT | O_EXCL, 0666);
		if (fd >= 0) {
			*created = true;
			return fd;
		}
		if (errno != EEXIST) {
			err = errno;
			return dc_fail(-err, "%s: cannot create: %s", path,
				       strerror(err));
		}
		fd = open(path, flags);
		if (fd >= 0)
			return fd;
		if (errno != ENOENT) {
			err = errno;
			return dc_fail(-err, "%s: cannot open read-write: %s", path,
				       strerror(err));
		}
	}
	return dc_fail(-ENOENT,
		       "%s: cannot create: it is a symbolic link to a missing file (or "
		       "keeps vanishing)",
		       path);
}

/* O_DIRECT goes on after the open: a filesystem without it must fail before
 * anything is written, and open(O_CREAT|O_DIRECT) there would leave an empty
 * file behind. */
static int create_set_direct(const char *path, int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_DIRECT) < 0) {
		int err = errno;

		return dc_fail(-err, "%s: %s", path,
			       err == EINVAL ? "the filesystem does not support "
					       "O_DIRECT (;direct)" :
					       strerror(err));
	}
	return 0;
}

DC_EXPORT int dc_create_open(const struct dc_open_args *a, const char *path, int flags,
			     bool *created)
{
	bool want = flags & O_CREAT, overwrite = dc_opt_flag(a, "overwrite");
	bool direct = flags & O_DIRECT, fresh = false;
	int fd, err, ret = 0;

	*created = false;
	flags &= ~(O_CREAT | O_EXCL | O_TRUNC | O_DIRECT | O_ACCMODE);
	flags |= O_CLOEXEC | (a->read_only ? O_RDONLY : O_RDWR);
	if (overwrite && !want)
		return dc_fail(-EINVAL,
			       "%s: ;overwrite applies only with an option that creates "
			       "the image (create=...)",
			       path);
	if (overwrite && a->read_only)
		return dc_fail(-EROFS,
			       "%s: ;overwrite on a read-only open (--ro, or a layer "
			       "under another): a read-only open never replaces an "
			       "image",
			       path);
	if (want && !a->read_only) {
		fd = create_or_open(path, flags, &fresh);
		if (fd < 0)
			return fd;
	} else {
		fd = open(path, flags);
		if (fd < 0) {
			err = errno;
			if (want && err == ENOENT)
				return dc_fail(-ENOENT,
					       "%s: does not exist, and a read-only "
					       "open (--ro, or a layer under another) "
					       "never creates an image",
					       path);
			return dc_fail(-err, "%s: cannot open %s: %s", path,
				       a->read_only ? "read-only" : "read-write",
				       strerror(err));
		}
	}
	if (direct)
		ret = create_set_direct(path, fd);
	if (ret == 0 && overwrite && !fresh)
		ret = create_overwrite(path, fd);
	if (ret < 0) {
		close(fd);
		if (fresh)
			unlink(path); /* the empty file O_EXCL made for us */
		return ret;
	}
	*created = fresh || overwrite;
	return fd;
}
