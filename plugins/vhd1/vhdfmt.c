/* SPDX-License-Identifier: MIT */
/* vhdfmt: VHD footer, checksum, geometry, ids and file I/O shared by vhd1 and vhd;
 * zeroing, UTF-16 names, quiet probing and the parent chain check shared by
 * vhd and vhdx; the image lock and the create rule's check of an existing
 * image shared by all three. */
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
#include <unistd.h>

static const char vhdfmt_cookie[8] = { 'c', 'o', 'n', 'e', 'c', 't', 'i', 'x' };

uint32_t vhdfmt_checksum(const uint8_t *buf, size_t len, size_t csum_off)
{
	uint32_t sum = 0;

	for (size_t i = 0; i < len; i++)
		if (i < csum_off || i >= csum_off + 4)
			sum += buf[i];
	return ~sum;
}

enum vhdfmt_footer_status vhdfmt_footer_decode(const uint8_t buf[VHD_FOOTER_SIZE],
					       struct vhd_footer *f)
{
	f->features = vhd_get32(buf + 8);
	f->version = vhd_get32(buf + 12);
	f->data_offset = vhd_get64(buf + 16);
	f->timestamp = vhd_get32(buf + 24);
	f->creator_app = vhd_get32(buf + 28);
	f->creator_version = vhd_get32(buf + 32);
	f->creator_os = vhd_get32(buf + 36);
	f->original_size = vhd_get64(buf + 40);
	f->current_size = vhd_get64(buf + 48);
	f->geometry = vhd_get32(buf + 56);
	f->disk_type = vhd_get32(buf + 60);
	f->checksum = vhd_get32(buf + VHD_FOOTER_CHECKSUM_OFF);
	memcpy(f->unique_id, buf + 68, 16);
	f->saved_state = buf[84];

	if (memcmp(buf, vhdfmt_cookie, sizeof(vhdfmt_cookie)) != 0)
		return VHDFMT_FOOTER_BAD_COOKIE;
	if (f->checksum != vhdfmt_checksum(buf, VHD_FOOTER_SIZE, VHD_FOOTER_CHECKSUM_OFF))
		return VHDFMT_FOOTER_BAD_CHECKSUM;
	if (f->version != VHD_VERSION)
		return VHDFMT_FOOTER_BAD_VERSION;
	return VHDFMT_FOOTER_OK;
}

void vhdfmt_footer_encode(struct vhd_footer *f, uint8_t buf[VHD_FOOTER_SIZE])
{
	memset(buf, 0, VHD_FOOTER_SIZE);
	memcpy(buf, vhdfmt_cookie, sizeof(vhdfmt_cookie));
	vhd_put32(buf + 8, f->features);
	vhd_put32(buf + 12, f->version);
	vhd_put64(buf + 16, f->data_offset);
	vhd_put32(buf + 24, f->timestamp);
	vhd_put32(buf + 28, f->creator_app);
	vhd_put32(buf + 32, f->creator_version);
	vhd_put32(buf + 36, f->creator_os);
	vhd_put64(buf + 40, f->original_size);
	vhd_put64(buf + 48, f->current_size);
	vhd_put32(buf + 56, f->geometry);
	vhd_put32(buf + 60, f->disk_type);
	memcpy(buf + 68, f->unique_id, 16);
	buf[84] = f->saved_state;
	f->checksum = vhdfmt_checksum(buf, VHD_FOOTER_SIZE, VHD_FOOTER_CHECKSUM_OFF);
	vhd_put32(buf + VHD_FOOTER_CHECKSUM_OFF, f->checksum);
}

void vhdfmt_footer_fixed(struct vhd_footer *f, uint64_t size, const uint8_t uid[16])
{
	memset(f, 0, sizeof(*f));
	f->features = 2;
	f->version = VHD_VERSION;
	f->data_offset = UINT64_MAX;
	f->creator_version = 0x000a0000;
	f->original_size = size;
	f->current_size = size;
	f->disk_type = VHD_TYPE_FIXED;
	memcpy(f->unique_id, uid, 16);
}

int vhdfmt_write_fixed(int fd, uint64_t size)
{
	uint8_t buf[VHD_FOOTER_SIZE], uid[16];
	struct vhd_footer f;
	int ret = vhdfmt_new_uid(uid);

	if (ret < 0)
		return ret;
	vhdfmt_footer_fixed(&f, size, uid);
	vhdfmt_footer_encode(&f, buf);
	if (ftruncate(fd, (off_t)size) < 0)
		return -errno;
	ret = vhdfmt_pwrite(fd, buf, sizeof(buf), size);
	if (ret == 0 && fsync(fd) < 0)
		ret = -errno;
	return ret;
}

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

uint32_t vhdfmt_geometry(uint64_t size)
{
	uint64_t total = size / VHD_SECTOR, cth;
	uint32_t spt, heads;

	if (total > 65535ull * 16 * 255)
		total = 65535ull * 16 * 255;
	if (total >= 65535ull * 16 * 63) {
		spt = 255;
		heads = 16;
		cth = total / spt;
	} else {
		spt = 17;
		cth = total / spt;
		heads = (uint32_t)((cth + 1023) / 1024);
		if (heads < 4)
			heads = 4;
		if (cth >= heads * 1024ull || heads > 16) {
			spt = 31;
			heads = 16;
			cth = total / spt;
		}
		if (cth >= heads * 1024ull) {
			spt = 63;
			heads = 16;
			cth = total / spt;
		}
	}
	return (uint32_t)(cth / heads) << 16 | heads << 8 | spt;
}

int vhdfmt_pread(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ENODATA;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int vhdfmt_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ENOSPC;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
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

/* --- UTF-16 ------------------------------------------------------------------ */

/* UTF-16 bytes (big- or little-endian) to a malloc'd UTF-8 string, stopping at
 * a NUL unit; NULL if a surrogate is unpaired or memory runs out. */
char *vhdfmt_utf16_to_8(const uint8_t *b, size_t bytes, bool big)
{
	size_t n = bytes / 2, o = 0;
	char *out = malloc(n * 3 + 1);

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		uint32_t c = big ? (uint32_t)(b[2 * i] << 8 | b[2 * i + 1]) :
				   (uint32_t)(b[2 * i + 1] << 8 | b[2 * i]);

		if (c == 0)
			break;
		if (c >= 0xdc00 && c < 0xe000)
			goto bad;
		if (c >= 0xd800 && c < 0xdc00) {
			uint32_t lo;

			if (++i >= n)
				goto bad;
			lo = big ? (uint32_t)(b[2 * i] << 8 | b[2 * i + 1]) :
				   (uint32_t)(b[2 * i + 1] << 8 | b[2 * i]);
			if (lo < 0xdc00 || lo >= 0xe000)
				goto bad;
			c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
		}
		if (c < 0x80) {
			out[o++] = (char)c;
		} else if (c < 0x800) {
			out[o++] = (char)(0xc0 | c >> 6);
			out[o++] = (char)(0x80 | (c & 0x3f));
		} else if (c < 0x10000) {
			out[o++] = (char)(0xe0 | c >> 12);
			out[o++] = (char)(0x80 | ((c >> 6) & 0x3f));
			out[o++] = (char)(0x80 | (c & 0x3f));
		} else {
			/* 4 bytes from a 2-unit pair: fits the 3-per-unit budget. */
			out[o++] = (char)(0xf0 | c >> 18);
			out[o++] = (char)(0x80 | ((c >> 12) & 0x3f));
			out[o++] = (char)(0x80 | ((c >> 6) & 0x3f));
			out[o++] = (char)(0x80 | (c & 0x3f));
		}
	}
	out[o] = '\0';
	return out;
bad:
	free(out);
	return NULL;
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
		       vhdfmt_parent_fn parent_of)
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
			next = parent_of(fd, cur);
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
		      vhdfmt_parent_fn parent_of, char *buf, size_t len)
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
	ret = vhdfmt_check_chain(path, st.st_dev, st.st_ino, parent, parent_of);
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
			   vhdfmt_parent_fn parent_of)
{
	struct stat st;
	char *real;
	int ret;

	if (!parent || stat(path, &st) < 0)
		return 0;
	real = realpath(parent, NULL);
	if (!real)
		return 0; /* reported when the parent is read */
	ret = vhdfmt_check_chain(path, st.st_dev, st.st_ino, real, parent_of);
	free(real);
	if (ret)
		vhdfmt_err("%s: refusing to overwrite it: the parent %s depends on it",
			   path, parent);
	return ret;
}

int vhdfmt_check_existing(const char *path, uint64_t want_size, uint64_t size,
			  const char *want_parent, const char *parent)
{
	struct stat a, b;

	if (want_size && want_size != size) {
		vhdfmt_err(
			"%s: exists with a virtual size of %llu bytes, not the %llu of "
			"create= (it was opened, not replaced: add ;overwrite to "
			"replace it)",
			path, (unsigned long long)size, (unsigned long long)want_size);
		return -EEXIST;
	}
	if (!want_parent)
		return 0;
	if (!parent || stat(parent, &a) < 0 || stat(want_parent, &b) < 0 ||
	    a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
		vhdfmt_err("%s: exists and is not a differencing image over %s (%s; it "
			   "was opened, not replaced: add ;overwrite to replace it)",
			   path, want_parent,
			   parent ? "its parent is another file" :
				    "it is not one, or its parent cannot be found");
		return -EEXIST;
	}
	return 0;
}
