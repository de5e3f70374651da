/* SPDX-License-Identifier: MIT */
/* UTF-16 to and from UTF-8 (see utf16.h). */
#include "utf16.h"

#include "endian/byteorder.h"

#include <stdlib.h>

static uint32_t utf16_unit(const uint8_t *p, bool big)
{
	return big ? get_be16(p) : get_le16(p);
}

/* Append code point c (at most U+10FFFF) to out as UTF-8. */
static size_t utf8_put(char *out, uint32_t c)
{
	if (c < 0x80) {
		out[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		out[0] = (char)(0xc0 | c >> 6);
		out[1] = (char)(0x80 | (c & 0x3f));
		return 2;
	}
	if (c < 0x10000) {
		out[0] = (char)(0xe0 | c >> 12);
		out[1] = (char)(0x80 | ((c >> 6) & 0x3f));
		out[2] = (char)(0x80 | (c & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | c >> 18);
	out[1] = (char)(0x80 | ((c >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((c >> 6) & 0x3f));
	out[3] = (char)(0x80 | (c & 0x3f));
	return 4;
}

char *utf16_to_utf8(const uint8_t *b, size_t bytes, bool big)
{
	size_t n = bytes / 2, o = 0;
	/* 3 bytes per unit at most: a 4-byte character takes two units. */
	char *out = malloc(n * 3 + 1);

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		uint32_t c = utf16_unit(b + 2 * i, big), lo;

		if (c == 0)
			break;
		if (c >= 0xdc00 && c < 0xe000)
			goto bad;
		if (c >= 0xd800 && c < 0xdc00) {
			if (++i >= n)
				goto bad;
			lo = utf16_unit(b + 2 * i, big);
			if (lo < 0xdc00 || lo >= 0xe000)
				goto bad;
			c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
		}
		o += utf8_put(out + o, c);
	}
	out[o] = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

/* The next code point of strict UTF-8 at *p (advanced past it), or -1. */
static int32_t utf8_next(const unsigned char **p)
{
	static const uint32_t min[4] = { 0, 0x80, 0x800, 0x10000 };
	const unsigned char *s = *p;
	uint32_t c = *s++;
	int extra;

	if (c < 0x80)
		extra = 0;
	else if ((c & 0xe0) == 0xc0)
		extra = 1;
	else if ((c & 0xf0) == 0xe0)
		extra = 2;
	else if ((c & 0xf8) == 0xf0)
		extra = 3;
	else
		return -1;
	c &= 0x7fu >> extra;
	for (int i = 0; i < extra; i++, s++) {
		if ((*s & 0xc0) != 0x80)
			return -1;
		c = c << 6 | (*s & 0x3f);
	}
	if (c < min[extra] || c > 0x10ffff || (c >= 0xd800 && c < 0xe000))
		return -1;
	*p = s;
	return (int32_t)c;
}

int utf8_to_utf16(const char *s, uint8_t *out, size_t max, bool big)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = 0;

	while (*p) {
		int32_t c = utf8_next(&p);
		uint16_t units[2];
		int k = 1;

		if (c < 0)
			return -1;
		if (c >= 0x10000) {
			units[0] = (uint16_t)(0xd800 | (c - 0x10000) >> 10);
			units[1] = (uint16_t)(0xdc00 | (c & 0x3ff));
			k = 2;
		} else {
			units[0] = (uint16_t)c;
		}
		if (n + 2 * (size_t)k > max || n + 2 * (size_t)k > INT32_MAX)
			return -1;
		for (int i = 0; i < k; i++, n += 2) {
			if (big)
				put_be16(out + n, units[i]);
			else
				put_le16(out + n, units[i]);
		}
	}
	return (int)n;
}
