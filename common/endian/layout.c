/* SPDX-License-Identifier: MIT */
/* The packed-structure codec of byteorder.h: a walk over the layout string that
 * reverses the bytes of every integer field whose byte order is not the
 * host's. Reversing is its own inverse, so one walk serves both directions. */
#include "byteorder.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>

struct layout_walk {
	uint8_t *p;  /* the structure's bytes, or NULL to measure only */
	size_t size; /* bytes at p: nothing past them is touched */
	size_t off;  /* where the next field starts */
	bool swap;   /* the structure's byte order is not the host's */
};

static void layout_field(struct layout_walk *w, size_t width)
{
	if (w->p && w->swap && width > 1 && w->off + width <= w->size) {
		uint8_t *f = w->p + w->off;

		for (size_t i = 0; i < width / 2; i++) {
			uint8_t t = f[i];

			f[i] = f[width - 1 - i];
			f[width - 1 - i] = t;
		}
	}
	w->off += width;
}

static size_t layout_width(char c)
{
	switch (c) {
	case 'B':
		return 1;
	case 'H':
		return 2;
	case 'I':
		return 4;
	case 'Q':
		return 8;
	default:
		return 0;
	}
}

/* Walk fields up to the end of the string or of the group (')'); returns
 * where it stopped. */
static const char *layout_run(const char *l, struct layout_walk *w)
{
	while (*l && *l != ')') {
		unsigned long n = 1;
		size_t width;

		if (*l == ' ') {
			l++;
			continue;
		}
		if (isdigit((unsigned char)*l)) {
			char *end;

			n = strtoul(l, &end, 10);
			l = end;
		}
		if (*l == '(') {
			const char *end = l + 1;

			for (unsigned long i = 0; i < n; i++)
				end = layout_run(l + 1, w);
			if (*end != ')')
				return end;
			l = end + 1;
			continue;
		}
		if (*l == 's') {
			w->off += n;
			l++;
			continue;
		}
		width = layout_width(*l);
		if (!width)
			return l; /* not a layout character: stop (the tests notice) */
		for (unsigned long i = 0; i < n; i++)
			layout_field(w, width);
		l++;
	}
	return l;
}

static size_t layout_apply(uint8_t *p, size_t size, const char *layout)
{
	bool big = *layout == '>';
	struct layout_walk w = {
		.p = p,
		.size = size,
		.swap = big != (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__),
	};

	if (*layout == '<' || *layout == '>')
		layout++;
	layout_run(layout, &w);
	return w.off;
}

size_t endian_layout_size(const char *layout)
{
	return layout_apply(NULL, 0, layout);
}

void endian_decode(void *dst, const void *raw, size_t size, const char *layout)
{
	memcpy(dst, raw, size);
	layout_apply(dst, size, layout);
}

void endian_encode(void *raw, const void *src, size_t size, const char *layout)
{
	memcpy(raw, src, size);
	layout_apply(raw, size, layout);
}
