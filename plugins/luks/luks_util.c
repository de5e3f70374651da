/* SPDX-License-Identifier: MIT */
/* luks: the helpers every header parser shares (messages, string fields) and
 * reads of the inner disk; the lowest file of the plugin, so that luks.c sits
 * on top of the parsers and the key slots. */
#include "luks.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int luks_bad(struct luks_why *w, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(w->msg, sizeof(w->msg), fmt, ap);
	va_end(ap);
	return rc;
}

/* Names from the header end up in messages: printable ASCII only. */
bool luks_printable(const char *s)
{
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e)
			return false;
	return true;
}

/* A string from the JSON area, fit for a message. */
const char *luks_shown(const char *s)
{
	if (!s)
		return "(none)";
	return strlen(s) <= 48 && luks_printable(s) ? s : "(unprintable)";
}

/* A NUL-terminated printable string field of a binary header, or false. */
bool luks_field(char *dst, const char *src, size_t len)
{
	if (!memchr(src, 0, len))
		return false;
	memcpy(dst, src, len);
	return luks_printable(dst);
}

/* --- Reading the inner disk ------------------------------------------------ */

uint64_t luks_child_bytes(const struct luks_disk *d)
{
	uint64_t bytes;

	if (__builtin_mul_overflow(dc_node_sector_count(d->child), d->child_ss, &bytes))
		return INT64_MAX;
	return bytes;
}

/* len bytes at off, which need not be sector-aligned. */
int luks_read(struct luks_disk *d, uint64_t off, void *buf, size_t len, const char *what)
{
	uint32_t ss = d->child_ss;
	uint64_t size = luks_child_bytes(d), first, last;
	struct iovec iov;
	struct dc_io io = { .op = DC_OP_READ };
	uint8_t *b;
	void *p;
	int rc;

	if (off > size || len > size - off) {
		dc_error("corrupt header: %s (%zu bytes at offset %llu) lies beyond the "
			 "end of the inner disk (%llu bytes)",
			 what, len, (unsigned long long)off, (unsigned long long)size);
		return -EINVAL;
	}
	first = off / ss;
	last = (off + len + ss - 1) / ss;
	iov.iov_len = (last - first) * ss;
	if (posix_memalign(&p, 4096, iov.iov_len)) {
		dc_error("out of memory");
		return -ENOMEM;
	}
	b = p;
	iov.iov_base = b;
	io.sector = first;
	io.count = last - first;
	io.iov = &iov;
	io.iovcnt = 1;
	rc = dc_node_execute(d->child, &io);
	if (rc < 0)
		dc_error("cannot read %s from the inner disk: %s", what, dc_strerror(rc));
	else
		memcpy(buf, b + (off - first * ss), len);
	free(b);
	return rc < 0 ? rc : 0;
}
