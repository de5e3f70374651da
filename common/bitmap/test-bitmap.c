/* SPDX-License-Identifier: MIT */
/* bitmap.h against a bit-by-bit model: random ranges set and cleared, and
 * every scan from every position to several ends. */
#include "bitmap.h"

#include "check-run.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#define NBITS 300 /* not a multiple of 64: the last word is partial */

static uint64_t model_find(const bool *m, uint64_t pos, uint64_t end, bool want)
{
	while (pos < end && m[pos] != want)
		pos++;
	return pos;
}

static void check_scans(const uint64_t *w, const bool *m)
{
	static const uint64_t ends[] = { 0, 1, 63, 64, 65, 127, 128, 200, NBITS };

	for (uint64_t i = 0; i < NBITS; i++)
		ck_assert_int_eq(bitmap_test(w, i), m[i]);
	for (size_t e = 0; e < sizeof(ends) / sizeof(ends[0]); e++)
		for (uint64_t pos = 0; pos <= ends[e]; pos++)
			for (int want = 0; want < 2; want++)
				ck_assert_uint_eq(bitmap_find(w, pos, ends[e], want),
						  model_find(m, pos, ends[e], want));
}

START_TEST(random_ranges)
{
	uint64_t w[bitmap_words(NBITS)];
	bool m[NBITS];
	unsigned seed = 12345;

	ck_assert_uint_eq(bitmap_words(NBITS), 5);
	ck_assert_uint_eq(bitmap_words(64), 1);
	ck_assert_uint_eq(bitmap_words(0), 0);
	memset(w, 0, sizeof(w));
	memset(m, 0, sizeof(m));
	check_scans(w, m);
	for (int round = 0; round < 200; round++) {
		uint64_t a = (uint64_t)rand_r(&seed) % (NBITS + 1);
		uint64_t b = (uint64_t)rand_r(&seed) % (NBITS + 1);
		bool set = rand_r(&seed) & 1;

		if (a > b) {
			uint64_t t = a;

			a = b;
			b = t;
		}
		if (set)
			bitmap_set(w, a, b);
		else
			bitmap_clear(w, a, b);
		for (uint64_t i = a; i < b; i++)
			m[i] = set;
		if (round % 20 == 0)
			check_scans(w, m);
	}
	check_scans(w, m);
}
END_TEST

/* Whole words, word boundaries, and empty ranges leave their neighbours alone. */
START_TEST(edges)
{
	uint64_t w[3] = { 0 };

	bitmap_set(w, 64, 128);
	ck_assert_uint_eq(w[0], 0);
	ck_assert_uint_eq(w[1], ~UINT64_C(0));
	ck_assert_uint_eq(w[2], 0);
	bitmap_set(w, 10, 10);
	ck_assert_uint_eq(w[0], 0);
	bitmap_set(w, 63, 65);
	ck_assert_uint_eq(w[0], UINT64_C(1) << 63);
	bitmap_clear(w, 64, 66);
	ck_assert_uint_eq(w[1], ~UINT64_C(3));
	ck_assert_uint_eq(bitmap_find(w, 0, 192, true), 63);
	ck_assert_uint_eq(bitmap_find(w, 64, 192, true), 66);
	ck_assert_uint_eq(bitmap_find(w, 66, 192, false), 128);
	ck_assert_uint_eq(bitmap_find(w, 66, 100, false), 100); /* capped at end */
	ck_assert_uint_eq(bitmap_find(w, 5, 5, true), 5);
	bitmap_clear(w, 0, 192);
	ck_assert_uint_eq(w[0] | w[1] | w[2], 0);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = { random_ranges, edges, NULL };

	return common_check_run("bitmap", tests);
}
