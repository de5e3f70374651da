/* SPDX-License-Identifier: MIT */
/* Bitmap scans a word at a time (see bitmap.h). */
#include "bitmap.h"

uint64_t bitmap_find(const uint64_t *w, uint64_t pos, uint64_t end, bool want)
{
	while (pos < end) {
		uint64_t x = w[pos >> 6];

		if (!want)
			x = ~x;
		x &= ~UINT64_C(0) << (pos & 63);
		if (x) {
			uint64_t p = (pos & ~UINT64_C(63)) + (uint64_t)__builtin_ctzll(x);

			return p < end ? p : end;
		}
		pos = (pos & ~UINT64_C(63)) + 64;
	}
	return end;
}

/* The bits of [a, b) that lie in a's word, as a mask; *span gets their count. */
static uint64_t bitmap_span(uint64_t a, uint64_t b, uint64_t *span)
{
	unsigned bit = a & 63;
	uint64_t n = 64 - bit < b - a ? 64 - bit : b - a;

	*span = n;
	return (n == 64 ? ~UINT64_C(0) : ((UINT64_C(1) << n) - 1)) << bit;
}

void bitmap_set(uint64_t *w, uint64_t a, uint64_t b)
{
	uint64_t span;

	for (; a < b; a += span)
		w[a >> 6] |= bitmap_span(a, b, &span);
}

void bitmap_clear(uint64_t *w, uint64_t a, uint64_t b)
{
	uint64_t span;

	for (; a < b; a += span)
		w[a >> 6] &= ~bitmap_span(a, b, &span);
}
