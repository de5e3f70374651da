/* SPDX-License-Identifier: MIT */
/* Bitmaps of 64-bit words in host order: bit i is bit i % 64 of word i / 64.
 * The scans the layered disk and the ram layer make over their presence
 * bitmaps: the next set or clear bit in a range, and setting or clearing a
 * range. Callers that share a bitmap between threads copy its words first. */
#ifndef DISKCORE_COMMON_BITMAP_H
#define DISKCORE_COMMON_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Words for a bitmap of n bits. */
static inline size_t bitmap_words(uint64_t n)
{
	return (size_t)((n + 63) >> 6);
}

static inline bool bitmap_test(const uint64_t *w, uint64_t i)
{
	return w[i >> 6] >> (i & 63) & 1;
}

/* The first bit in [pos, end) that equals want, or end. */
uint64_t bitmap_find(const uint64_t *w, uint64_t pos, uint64_t end, bool want);
/* Set or clear the bits [a, b). */
void bitmap_set(uint64_t *w, uint64_t a, uint64_t b);
void bitmap_clear(uint64_t *w, uint64_t a, uint64_t b);

#endif
