/* SPDX-License-Identifier: MIT */
/* utf16.h: round trips in both byte orders (ASCII, 2-, 3- and 4-byte UTF-8),
 * NUL termination, unpaired surrogates, malformed UTF-8, and the size limit. */
#include "utf16.h"

#include "check-run.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

/* "a", U+00E9, U+20AC, U+1F600 */
#define MIXED "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"

START_TEST(round_trip)
{
	static const uint8_t le[] = {
		'a', 0, 0xe9, 0, 0xac, 0x20, 0x3d, 0xd8, 0x00, 0xde
	};
	uint8_t out[64];
	char *back;

	ck_assert_int_eq(utf8_to_utf16(MIXED, out, sizeof(out), false), sizeof(le));
	ck_assert_mem_eq(out, le, sizeof(le));
	back = utf16_to_utf8(out, sizeof(le), false);
	ck_assert_str_eq(back, MIXED);
	free(back);

	ck_assert_int_eq(utf8_to_utf16(MIXED, out, sizeof(out), true), sizeof(le));
	for (size_t i = 0; i < sizeof(le); i += 2) {
		ck_assert_uint_eq(out[i], le[i + 1]);
		ck_assert_uint_eq(out[i + 1], le[i]);
	}
	back = utf16_to_utf8(out, sizeof(le), true);
	ck_assert_str_eq(back, MIXED);
	free(back);

	ck_assert_int_eq(utf8_to_utf16("", out, sizeof(out), false), 0);
	back = utf16_to_utf8(out, 0, false);
	ck_assert_str_eq(back, "");
	free(back);
}
END_TEST

/* A NUL unit ends the string; an odd last byte is not a unit. */
START_TEST(nul_and_odd)
{
	static const uint8_t b[] = { 'x', 0, 'y', 0, 0, 0, 'z', 0, 'w' };
	char *s = utf16_to_utf8(b, sizeof(b), false);

	ck_assert_str_eq(s, "xy");
	free(s);
	s = utf16_to_utf8(b, 5, false);
	ck_assert_str_eq(s, "xy");
	free(s);
}
END_TEST

START_TEST(bad_utf16)
{
	static const uint8_t lone_hi[] = { 0x3d, 0xd8, 'a', 0 };
	static const uint8_t lone_lo[] = { 'a', 0, 0x00, 0xde };
	static const uint8_t hi_at_end[] = { 'a', 0, 0x3d, 0xd8 };

	ck_assert_ptr_null(utf16_to_utf8(lone_hi, sizeof(lone_hi), false));
	ck_assert_ptr_null(utf16_to_utf8(lone_lo, sizeof(lone_lo), false));
	ck_assert_ptr_null(utf16_to_utf8(hi_at_end, sizeof(hi_at_end), false));
}
END_TEST

START_TEST(bad_utf8)
{
	static const char *const bad[] = {
		"\x80",		    /* continuation as a lead */
		"\xc0\xaf",	    /* overlong '/' */
		"\xc1\xbf",	    /* overlong */
		"\xe0\x80\xaf",	    /* overlong, 3 bytes */
		"\xf0\x80\x80\xaf", /* overlong, 4 bytes */
		"\xed\xa0\x80",	    /* a surrogate */
		"\xf4\x90\x80\x80", /* past U+10FFFF */
		"\xf8\x88\x80\x80\x80",
		"\xc3", /* cut short */
		"\xe2\x82",
	};
	uint8_t out[64];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(utf8_to_utf16(bad[i], out, sizeof(out), false) == -1,
			      "case %zu accepted", i);
}
END_TEST

START_TEST(limit)
{
	uint8_t out[8];

	memset(out, 0xee, sizeof(out));
	ck_assert_int_eq(utf8_to_utf16("abcd", out, 8, false), 8);
	ck_assert_int_eq(utf8_to_utf16("abcde", out, 8, false), -1);
	/* A surrogate pair needs both units' room. */
	ck_assert_int_eq(utf8_to_utf16("abc\xf0\x9f\x98\x80", out, 8, false), -1);
	ck_assert_int_eq(utf8_to_utf16("ab\xf0\x9f\x98\x80", out, 8, false), 8);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = { round_trip, nul_and_odd, bad_utf16,
				       bad_utf8,   limit,	NULL };

	return common_check_run("utf16", tests);
}
