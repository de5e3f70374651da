/* SPDX-License-Identifier: MIT */
/* byteorder.h: loads and stores at unaligned addresses in both byte orders, and
 * the layout codec (sizes, groups, both directions, nothing past the end). */
#include "byteorder.h"

#include "check-run.h"

#include <check.h>
#include <stdlib.h>

START_TEST(loads_and_stores)
{
	static const uint8_t seq[9] = { 0xff, 1, 2, 3, 4, 5, 6, 7, 8 };
	uint8_t b[9];

	/* Offset 1: none of these is aligned. */
	ck_assert_uint_eq(get_le16(seq + 1), 0x0201);
	ck_assert_uint_eq(get_be16(seq + 1), 0x0102);
	ck_assert_uint_eq(get_le32(seq + 1), 0x04030201u);
	ck_assert_uint_eq(get_be32(seq + 1), 0x01020304u);
	ck_assert_uint_eq(get_le64(seq + 1), 0x0807060504030201ull);
	ck_assert_uint_eq(get_be64(seq + 1), 0x0102030405060708ull);

	memset(b, 0xff, sizeof(b));
	put_le64(b + 1, 0x0807060504030201ull);
	ck_assert_mem_eq(b, seq, sizeof(b));
	put_be64(b + 1, 0x0102030405060708ull);
	ck_assert_mem_eq(b, seq, sizeof(b));
	memset(b, 0xff, sizeof(b));
	put_le32(b + 1, 0x04030201u);
	put_be32(b + 5, 0x05060708u);
	ck_assert_mem_eq(b, seq, 5);
	ck_assert_uint_eq(get_be32(b + 5), 0x05060708u);
	put_le16(b + 1, 0x0201);
	put_be16(b + 3, 0x0304);
	ck_assert_mem_eq(b, seq, 5);
	ck_assert_uint_eq(b[0], 0xff); /* nothing before the field */
}
END_TEST

START_TEST(layout_sizes)
{
	ck_assert_uint_eq(endian_layout_size("<"), 0);
	ck_assert_uint_eq(endian_layout_size("<BHIQ"), 15);
	ck_assert_uint_eq(endian_layout_size(">4s I Q"), 16);
	ck_assert_uint_eq(endian_layout_size("<3H"), 6);
	ck_assert_uint_eq(endian_layout_size(">2(IH)8s"), 20);
	ck_assert_uint_eq(endian_layout_size("<2(2(B)H)"), 8);
	/* A character that is not layout ends it. */
	ck_assert_uint_eq(endian_layout_size("<IxI"), 4);
}
END_TEST

struct rec {
	uint32_t a;
	uint16_t b;
} __attribute__((packed));

struct sample {
	char sig[4];
	uint32_t u32;
	uint64_t u64;
	uint16_t u16[2];
	uint8_t u8;
	struct rec rec[2];
} __attribute__((packed));
_Static_assert(sizeof(struct sample) == 33, "struct sample is 33 bytes");

#define SAMPLE_LE "<4sIQ2HB2(IH)"
#define SAMPLE_BE ">4sIQ2HB2(IH)"

static const uint8_t sample_le[33] = {
	'a',  'b',  'c',  'd',	0x04, 0x03, 0x02, 0x01, 8,   7,	  6, 5, 4, 3, 2, 1, 0x22,
	0x11, 0x44, 0x33, 0x99, 0xd,  0xc,  0xb,  0xa,	0xf, 0xe, 4, 3, 2, 1, 6, 5,
};

static void sample_check(const struct sample *s)
{
	ck_assert_mem_eq(s->sig, "abcd", 4);
	ck_assert_uint_eq(s->u32, 0x01020304u);
	ck_assert_uint_eq(s->u64, 0x0102030405060708ull);
	ck_assert_uint_eq(s->u16[0], 0x1122);
	ck_assert_uint_eq(s->u16[1], 0x3344);
	ck_assert_uint_eq(s->u8, 0x99);
	ck_assert_uint_eq(s->rec[0].a, 0x0a0b0c0du);
	ck_assert_uint_eq(s->rec[0].b, 0x0e0f);
	ck_assert_uint_eq(s->rec[1].a, 0x01020304u);
	ck_assert_uint_eq(s->rec[1].b, 0x0506);
}

START_TEST(layout_codec)
{
	uint8_t be[33], back[33];
	struct sample s;

	ck_assert_uint_eq(endian_layout_size(SAMPLE_LE), sizeof(s));
	endian_decode(&s, sample_le, sizeof(s), SAMPLE_LE);
	sample_check(&s);
	endian_encode(back, &s, sizeof(s), SAMPLE_LE);
	ck_assert_mem_eq(back, sample_le, sizeof(back));

	/* The same values big-endian: every integer reversed, text kept. */
	endian_encode(be, &s, sizeof(s), SAMPLE_BE);
	ck_assert_mem_eq(be, "abcd\x01\x02\x03\x04", 8);
	ck_assert_uint_eq(get_be64(be + 8), 0x0102030405060708ull);
	ck_assert_uint_eq(get_be16(be + 18), 0x3344);
	ck_assert_uint_eq(get_be32(be + 27), 0x01020304u);
	memset(&s, 0, sizeof(s));
	endian_decode(&s, be, sizeof(s), SAMPLE_BE);
	sample_check(&s);
}
END_TEST

/* A layout longer than the structure converts nothing past its end. */
START_TEST(layout_bounded)
{
	uint8_t raw[6] = { 1, 0, 0, 0, 2, 0 }, buf[8];
	uint32_t host;

	memcpy(&host, raw, sizeof(host));
	memset(buf, 0xee, sizeof(buf));
	endian_encode(buf, raw, 6, ">IQ");
	ck_assert_uint_eq(get_be32(buf), host);
	ck_assert_mem_eq(buf + 4, "\x02\x00\xee\xee", 4);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = { loads_and_stores, layout_sizes, layout_codec,
				       layout_bounded, NULL };

	return common_check_run("endian", tests);
}
