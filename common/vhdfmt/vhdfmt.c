/* SPDX-License-Identifier: MIT */
/* vhdfmt: GUIDs, file I/O, zeroing, quiet probing, parent chains, locks and
 * existing images (see vhdfmt.h). */
#include "vhdfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

int vhdfmt_new_uid(uint8_t uid[16])
{
	size_t got = 0;

	while (got < 16) {
		ssize_t n = getrandom(uid + got, 16 - got, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	/* Version 4 (random): the high nibble of data3, which Windows stores
	 * little-endian, so it sits in byte 7; the RFC 4122 variant in byte 8. */
	uid[7] = (uint8_t)((uid[7] & 0x0f) | 0x40);
	uid[8] = (uint8_t)((uid[8] & 0x3f) | 0x80);
	return 0;
}

void vhdfmt_uid_str(const uint8_t u[16], char out[37])
{
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[3], u[2], u[1], u[0], u[5], u[4], u[7], u[6], u[8], u[9], u[10], u[11],
		 u[12], u[13], u[14], u[15]);
}

char *vhdfmt_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir, *real;

	if (!slash)
		dir = strdup(".");
	else
		dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
	real = dir ? realpath(dir, NULL) : NULL;
	free(dir);
	return real;
}

char *vhdfmt_relpath(const char *from, const char *to)
{
	size_t i = 0, common = 0, ups = 0, flen = strlen(from);
	const char *rest;
	char *out, *p;

	while (from[i] && from[i] == to[i])
		if (from[i++] == '/')
			common = i;
	if (!from[i] && to[i] == '/')
		common = i + 1; /* `to` is inside `from` */
	rest = common <= flen ? from + common : "";
	if (*rest) {
		ups = 1;
		for (p = (char *)rest; *p; p++)
			ups += *p == '/';
	}
	out = malloc(ups * 3 + strlen(to + common) + 3);
	if (!out)
		return NULL;
	p = out;
	if (!ups) {
		memcpy(p, ".\\", 2);
		p += 2;
	}
	for (i = 0; i < ups; i++, p += 3)
		memcpy(p, "..\\", 3);
	strcpy(p, to + common);
	for (; *p; p++)
		if (*p == '/')
			*p = '\\';
	return out;
}

/* A flat buffer as a one-segment view, moved by vhdfmt_xfer(). */
static int vhdfmt_flat(int fd, void *buf, size_t len, uint64_t off, bool write)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct dc_buf b = { .iov = &iov, .iovcnt = 1, .len = len };

	return vhdfmt_xfer(fd, &b, off, write, 0);
}

int vhdfmt_pread(int fd, void *buf, size_t len, uint64_t off)
{
	return vhdfmt_flat(fd, buf, len, off, false);
}

int vhdfmt_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	return vhdfmt_flat(fd, (void *)buf, len, off, true);
}

int vhdfmt_xfer(int fd, const struct dc_buf *b, uint64_t off, bool write, int rwflags)
{
	ssize_t n = write ? dc_buf_pwrite(fd, b, off, 0, rwflags) :
			    dc_buf_pread(fd, b, off, 0);

	if (n < 0)
		return (int)n;
	if ((size_t)n < b->len)
		return write ? -ENOSPC : -ENODATA;
	return 0;
}

int vhdfmt_result(struct dc_req *req, int neg_errno)
{
	int err = -neg_errno;

	switch (err) {
	case 0:
		return 0;
	case EFAULT:
		return DC_E_MEMORY_ACCESS;
	case ERANGE:
	case EINVAL:
	case EIO:
	case EBADMSG:
	case EROFS:
	case EBADE:
	case ECANCELED:
	case ENOTTY:
	case EOPNOTSUPP:
		/* Errnos that share a value with a result class must not be read
		 * as that class: they are I/O errors. */
		req->detail = err;
		return DC_E_IO;
	default:
		/* The core folds it into DC_E_IO, the errno kept as its detail
		 * (ENOSPC stays ENOSPC). */
		return -err;
	}
}

int vhdfmt_zero(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zeroes[65536];

	if (len == 0)
		return 0;
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
		      (off_t)len) == 0)
		return 0;
	while (len) {
		size_t n = len < sizeof(zeroes) ? (size_t)len : sizeof(zeroes);
		int ret = vhdfmt_pwrite(fd, zeroes, n, off);

		if (ret < 0)
			return ret;
		off += n;
		len -= n;
	}
	return 0;
}

/* --- Quiet probing ------------------------------------------------------------ */

/* The quiet count lives in a pthread key rather than in __thread: LSan's
 * tracer trips over the dynamic TLS of dlopen'ed modules (as blockdev found).
 * Should the key be unavailable, messages are simply not dropped. */
static pthread_key_t vhdfmt_quiet_key;
static pthread_once_t vhdfmt_quiet_once = PTHREAD_ONCE_INIT;
static bool vhdfmt_quiet_ok;

static void vhdfmt_quiet_init(void)
{
	vhdfmt_quiet_ok = pthread_key_create(&vhdfmt_quiet_key, NULL) == 0;
}

/* Give the key back when the plugin is unloaded: it holds only counts. */
__attribute__((destructor)) static void vhdfmt_quiet_fini(void)
{
	if (vhdfmt_quiet_ok)
		pthread_key_delete(vhdfmt_quiet_key);
}

static intptr_t vhdfmt_quiet_get(void)
{
	pthread_once(&vhdfmt_quiet_once, vhdfmt_quiet_init);
	return vhdfmt_quiet_ok ? (intptr_t)pthread_getspecific(vhdfmt_quiet_key) : 0;
}

void vhdfmt_quiet(int delta)
{
	intptr_t n = vhdfmt_quiet_get() + delta;

	if (vhdfmt_quiet_ok)
		pthread_setspecific(vhdfmt_quiet_key, (void *)n);
}

void vhdfmt_err(const char *fmt, ...)
{
	va_list ap;

	if (vhdfmt_quiet_get())
		return;
	va_start(ap, fmt);
	dc_verror(fmt, ap);
	va_end(ap);
}

/* --- Parent chains ------------------------------------------------------------- */

int vhdfmt_check_chain(const char *path, dev_t dev, ino_t ino, const char *parent,
		       vhdfmt_parent_fn parent_of, bool any)
{
	struct {
		dev_t dev;
		ino_t ino;
	} seen[VHDFMT_MAX_CHAIN + 1];
	char *cur = strdup(parent);
	unsigned n = 0;
	int ret = 0;

	seen[n].dev = dev;
	seen[n++].ino = ino;
	while (cur && ret == 0) {
		/* O_NONBLOCK: a locator may name a FIFO. */
		int fd = open(cur, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		char *next = NULL;
		struct stat st;

		if (fd < 0 || fstat(fd, &st) < 0) {
			if (fd >= 0)
				close(fd);
			break;
		}
		for (unsigned i = 0; i < n && ret == 0; i++) {
			if (seen[i].dev == st.st_dev && seen[i].ino == st.st_ino) {
				vhdfmt_err("%s: the parent chain loops: %s is its own "
					   "ancestor",
					   path, cur);
				ret = -ELOOP;
			}
		}
		if (ret == 0 && n > VHDFMT_MAX_CHAIN) {
			vhdfmt_err("%s: the parent chain is deeper than %d images", path,
				   VHDFMT_MAX_CHAIN);
			ret = -ELOOP;
		}
		if (ret == 0) {
			seen[n].dev = st.st_dev;
			seen[n++].ino = st.st_ino;
			vhdfmt_quiet(1);
			next = parent_of(fd, cur, any);
			vhdfmt_quiet(-1);
		}
		close(fd);
		free(cur);
		cur = next;
	}
	free(cur);
	return ret;
}

int vhdfmt_lower_spec(const char *form, const char *path, int fd, const char *parent,
		      vhdfmt_parent_fn parent_of, bool any, char *buf, size_t len)
{
	struct stat st;
	int ret, n;

	if (strchr(parent, ';')) {
		vhdfmt_err("%s: the parent's path %s contains ';', which a spec cannot "
			   "hold",
			   path, parent);
		return -EINVAL;
	}
	if (fstat(fd, &st) < 0)
		return -errno;
	ret = vhdfmt_check_chain(path, st.st_dev, st.st_ino, parent, parent_of, any);
	if (ret)
		return ret;
	n = snprintf(buf, len, "%s:%s", form, parent);
	if (n < 0 || (size_t)n >= len) {
		vhdfmt_err("%s: the parent's path is too long for a spec", path);
		return -ENAMETOOLONG;
	}
	return 1;
}

/* --- Locks and existing images ------------------------------------------------ */

int vhdfmt_lock(int fd, const char *path, bool read_only)
{
	int err;

	if (flock(fd, (read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0)
		return 0;
	err = errno;
	if (err == EWOULDBLOCK)
		vhdfmt_err("%s: the image is in use by another open (it is locked%s)",
			   path, read_only ? " for writing" : "");
	else
		vhdfmt_err("%s: cannot lock the image: %s", path, strerror(err));
	return -err;
}

int vhdfmt_overwrite_guard(const char *path, const char *parent,
			   vhdfmt_parent_fn parent_of, bool any)
{
	struct stat st;
	char *real;
	int ret;

	if (!parent || stat(path, &st) < 0)
		return 0;
	real = realpath(parent, NULL);
	if (!real)
		return 0; /* reported when the parent is read */
	ret = vhdfmt_check_chain(path, st.st_dev, st.st_ino, real, parent_of, any);
	free(real);
	if (ret)
		vhdfmt_err("%s: refusing to overwrite it: the parent %s depends on it",
			   path, parent);
	return ret;
}

int vhdfmt_check_existing(const char *path, uint64_t want_size, uint64_t size,
			  const char *want_parent, const char *why_not)
{
	if (want_size && want_size != size) {
		vhdfmt_err(
			"%s: exists with a virtual size of %llu bytes, not the %llu of "
			"create= (it was opened, not replaced: add ;overwrite to "
			"replace it)",
			path, (unsigned long long)size, (unsigned long long)want_size);
		return -EEXIST;
	}
	if (!want_parent || !why_not)
		return 0;
	vhdfmt_err("%s: exists and is not a differencing image over %s (%s; it was "
		   "opened, not replaced: add ;overwrite to replace it)",
		   path, want_parent, why_not);
	return -EEXIST;
}

int vhdfmt_parents_opt(const struct dc_open_args *a, const char *path, bool *any)
{
	const char *p = dc_opt_str(a, "parents");

	*any = p && strcmp(p, "any") == 0;
	if (p && !*any && strcmp(p, "beneath") != 0) {
		vhdfmt_err("%s: parents=%s: expected 'any' or 'beneath'", path, p);
		return -EINVAL;
	}
	return 0;
}

int vhdfmt_lower_spec_any(const char *form, const char *path, int fd, const char *parent,
			  vhdfmt_parent_fn parent_of, bool any, char *buf, size_t len)
{
	int ret = vhdfmt_lower_spec(form, path, fd, parent, parent_of, any, buf, len);
	size_t n;

	if (ret != 1 || !any)
		return ret;
	n = strlen(buf);
	if (snprintf(buf + n, len - n, ";parents=any") >= (int)(len - n)) {
		vhdfmt_err("%s: the parent's path is too long for a spec", path);
		return -ENAMETOOLONG;
	}
	return 1;
}

int vhdfmt_attach(const struct dc_info *base, bool diff, bool below, const char *path,
		  const char *what, struct dc_info *info)
{
	uint32_t ro = info->flags & DC_INFO_READ_ONLY; /* this open's */

	*info = *base;
	info->flags |= ro;
	if (!diff)
		return 0;
	if (!below) {
		vhdfmt_err("%s: a differencing %s needs its parent below it", path, what);
		return -EINVAL;
	}
	return 1;
}
