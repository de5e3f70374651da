/* SPDX-License-Identifier: MIT */
/* Buffer views over iovec lists and layer read markers. A view never copies the
 * iovec array: a child request sees a byte range of its parent's buffers. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Find the segment holding byte `off` of the view; *in is the offset within it. */
static int buf_seek(const struct dc_buf *b, size_t off, size_t *in)
{
	size_t pos = b->skip + off;
	int i;

	for (i = 0; i < b->iovcnt; i++) {
		if (pos < b->iov[i].iov_len)
			break;
		pos -= b->iov[i].iov_len;
	}
	*in = pos;
	return i;
}

DC_EXPORT struct dc_buf dc_buf_sub(const struct dc_buf *b, size_t off, size_t len)
{
	struct dc_buf s = *b;
	size_t in;
	int i = buf_seek(b, off, &in);

	/* Drop the segments wholly before the view so later walks start close. */
	s.iov = b->iov + i;
	s.iovcnt = b->iovcnt - i;
	s.skip = in;
	s.len = len;
	return s;
}

/* Where [off, off+len) lies in the view's first segment, or NULL: most
 * buffers are one segment, and a copy into one needs no walk. */
static inline char *buf_flat(const struct dc_buf *b, size_t off, size_t len)
{
	if (b->iovcnt > 0 && b->skip + off + len <= b->iov[0].iov_len)
		return (char *)b->iov[0].iov_base + b->skip + off;
	return NULL;
}

/* Run body on each piece (seg, seglen) of the view over [off, off+len). */
#define BUF_WALK(b, off, len, seg, seglen, body)                          \
	do {                                                              \
		size_t in_, left_ = (len);                                \
		char *flat_ = left_ ? buf_flat((b), (off), left_) : NULL; \
		int i_;                                                   \
		if (flat_) {                                              \
			char *seg = flat_;                                \
			size_t seglen = left_;                            \
			body;                                             \
			break;                                            \
		}                                                         \
		i_ = buf_seek((b), (off), &in_);                          \
		for (; left_ && i_ < (b)->iovcnt; i_++, in_ = 0) {        \
			size_t seglen = (b)->iov[i_].iov_len - in_;       \
			char *seg = (char *)(b)->iov[i_].iov_base + in_;  \
			if (seglen > left_)                               \
				seglen = left_;                           \
			body;                                             \
			left_ -= seglen;                                  \
		}                                                         \
	} while (0)

DC_EXPORT void dc_buf_copy_to(const struct dc_buf *b, size_t off, const void *src,
			      size_t len)
{
	const char *p = src;

	BUF_WALK(b, off, len, seg, n, {
		memcpy(seg, p, n);
		p += n;
	});
}

DC_EXPORT void dc_buf_copy_from(const struct dc_buf *b, size_t off, void *dst, size_t len)
{
	char *p = dst;

	BUF_WALK(b, off, len, seg, n, {
		memcpy(p, seg, n);
		p += n;
	});
}

DC_EXPORT void dc_buf_zero(const struct dc_buf *b, size_t off, size_t len)
{
	BUF_WALK(b, off, len, seg, n, memset(seg, 0, n));
}

static bool mem_is_zero(const char *p, size_t n)
{
	/* Compare against the first byte's neighbours: memcmp is vectorised. */
	if (n == 0)
		return true;
	return p[0] == 0 && memcmp(p, p + 1, n - 1) == 0;
}

DC_EXPORT bool dc_buf_is_zero(const struct dc_buf *b, size_t off, size_t len)
{
	bool zero = true;

	BUF_WALK(b, off, len, seg, n, {
		if (zero && !mem_is_zero(seg, n))
			zero = false;
	});
	return zero;
}

DC_EXPORT int dc_buf_iov(const struct dc_buf *b, struct iovec *out, int max)
{
	int cnt = 0;

	BUF_WALK(b, 0, b->len, seg, n, {
		if (cnt == max)
			return -E2BIG;
		out[cnt].iov_base = seg;
		out[cnt].iov_len = n;
		cnt++;
	});
	return cnt;
}

DC_EXPORT bool dc_buf_aligned(const struct dc_buf *b, size_t align)
{
	bool ok = true;

	BUF_WALK(b, 0, b->len, seg, n, {
		if (((uintptr_t)seg | n) & (align - 1))
			ok = false;
	});
	return ok;
}

/* Segments passed to the kernel from the stack; a longer view is bounced. */
#define BUF_MAX_IOV 256

/* preadv/pwritev2 until iov is done, the file ends (a zero count) or an error
 * other than EINTR: block devices, signals and RLIMIT_FSIZE cut transfers
 * anywhere. Returns the bytes moved or -errno. */
static ssize_t buf_rw_iov(int fd, struct iovec *iov, int cnt, uint64_t off, bool write,
			  int rwflags)
{
	size_t done = 0;

	while (cnt > 0) {
		ssize_t n = write ? pwritev2(fd, iov, cnt, (off_t)off, rwflags) :
				    preadv(fd, iov, cnt, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		off += (uint64_t)n;
		done += (size_t)n;
		while (cnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return (ssize_t)done;
}

static ssize_t buf_rw(int fd, const struct dc_buf *b, uint64_t off, size_t align,
		      bool write, int rwflags)
{
	struct iovec iov[BUF_MAX_IOV];
	void *bounce;
	ssize_t n;
	int cnt = -E2BIG;

	if (b->len == 0)
		return 0;
	if (align <= 1 || dc_buf_aligned(b, align))
		cnt = dc_buf_iov(b, iov, BUF_MAX_IOV);
	if (cnt >= 0)
		return buf_rw_iov(fd, iov, cnt, off, write, rwflags);

	/* Too many segments, or unaligned for O_DIRECT: one aligned buffer. */
	if (posix_memalign(&bounce, align > 4096 ? align : 4096, b->len))
		return -ENOMEM;
	if (write)
		dc_buf_copy_from(b, 0, bounce, b->len);
	iov[0].iov_base = bounce;
	iov[0].iov_len = b->len;
	n = buf_rw_iov(fd, iov, 1, off, write, rwflags);
	if (!write && n > 0)
		dc_buf_copy_to(b, 0, bounce, (size_t)n);
	free(bounce);
	return n;
}

DC_EXPORT ssize_t dc_buf_pread(int fd, const struct dc_buf *b, uint64_t off, size_t align)
{
	return buf_rw(fd, b, off, align, false, 0);
}

DC_EXPORT ssize_t dc_buf_pwrite(int fd, const struct dc_buf *b, uint64_t off,
				size_t align, int rwflags)
{
	return buf_rw(fd, b, off, align, true, rwflags);
}

DC_EXPORT void dc_marker_set(struct dc_marker *m, uint64_t sector, uint64_t count)
{
	uint64_t bit, end;

	if (sector < m->sector || count > m->count ||
	    sector - m->sector > m->count - count)
		return; /* outside the view: a plugin bug, never guest-reachable */
	bit = m->bit0 + (sector - m->sector);
	end = bit + count;
	while (bit < end && (bit & 63)) {
		m->bits[bit >> 6] |= UINT64_C(1) << (bit & 63);
		bit++;
	}
	for (; bit + 64 <= end; bit += 64)
		m->bits[bit >> 6] = ~UINT64_C(0);
	for (; bit < end; bit++)
		m->bits[bit >> 6] |= UINT64_C(1) << (bit & 63);
}

DC_EXPORT bool dc_marker_test(const struct dc_marker *m, uint64_t sector)
{
	uint64_t bit;

	if (sector < m->sector || sector - m->sector >= m->count)
		return false;
	bit = m->bit0 + (sector - m->sector);
	return (m->bits[bit >> 6] >> (bit & 63)) & 1;
}
