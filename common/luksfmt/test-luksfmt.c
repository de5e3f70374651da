/* SPDX-License-Identifier: MIT */
/* luksfmt: both layouts against their structs, and each header decoded from
 * bytes placed at the offsets the LUKS1 and LUKS2 specifications give. */
#include "luksfmt/luksfmt.h"

#include "check-run.h"

#include <check.h>
#include <string.h>

START_TEST(layouts)
{
	ck_assert_uint_eq(endian_layout_size(luks1_header_layout()),
			  sizeof(struct luks1_header));
	ck_assert_uint_eq(endian_layout_size(luks2_header_layout()),
			  sizeof(struct luks2_header));
	ck_assert_uint_eq(LUKS2_CSUM_OFF, 448);
}
END_TEST

START_TEST(luks1)
{
	uint8_t raw[592] = { 'L', 'U', 'K', 'S', 0xba, 0xbe, 0, 1 }, back[592];
	struct luks1_header h;

	memcpy(raw + 8, "aes", 4);
	memcpy(raw + 40, "xts-plain64", 12);
	memcpy(raw + 72, "sha256", 7);
	put_be32(raw + 104, 4096);
	put_be32(raw + 108, 64);
	raw[112] = 0xd1; /* digest */
	raw[132] = 0x5a; /* its salt */
	put_be32(raw + 164, 1000);
	memcpy(raw + 168, "0a0b", 5);
	put_be32(raw + 208 + 48 * 7, 0x00ac71f3u);
	put_be32(raw + 208 + 48 * 7 + 4, 2000);
	put_be32(raw + 208 + 48 * 7 + 40, 8);
	put_be32(raw + 208 + 48 * 7 + 44, 4000);
	ck_assert_int_eq(luksfmt_version(raw, false), 1);
	ck_assert_int_eq(luksfmt_version(raw, true), -1);
	luks1_header_decode(&h, raw);
	ck_assert_uint_eq(h.version, 1);
	ck_assert_str_eq(h.cipher_name, "aes");
	ck_assert_str_eq(h.cipher_mode, "xts-plain64");
	ck_assert_str_eq(h.hash_spec, "sha256");
	ck_assert_uint_eq(h.payload_offset, 4096);
	ck_assert_uint_eq(h.key_bytes, 64);
	ck_assert_uint_eq(h.mk_digest[0], 0xd1);
	ck_assert_uint_eq(h.mk_digest_salt[0], 0x5a);
	ck_assert_uint_eq(h.mk_digest_iter, 1000);
	ck_assert_str_eq(h.uuid, "0a0b");
	ck_assert_uint_eq(h.slot[7].active, 0x00ac71f3u);
	ck_assert_uint_eq(h.slot[7].iterations, 2000);
	ck_assert_uint_eq(h.slot[7].key_material_offset, 8);
	ck_assert_uint_eq(h.slot[7].stripes, 4000);
	ck_assert_uint_eq(h.slot[0].active, 0);
	luks1_header_encode(back, &h);
	ck_assert_mem_eq(back, raw, sizeof(raw));
}
END_TEST

START_TEST(luks2)
{
	uint8_t raw[512] = { 'S', 'K', 'U', 'L', 0xba, 0xbe, 0, 2 };
	struct luks2_header h;

	put_be64(raw + 8, 0x4000);
	put_be64(raw + 16, 7);
	memcpy(raw + 72, "sha256", 7);
	memcpy(raw + 168, "uuid", 5);
	put_be64(raw + 256, 0x4000);
	raw[448] = 0xcc;
	ck_assert_int_eq(luksfmt_version(raw, true), 2);
	ck_assert_int_eq(luksfmt_version(raw, false), -1);
	luks2_header_decode(&h, raw);
	ck_assert_uint_eq(h.hdr_size, 0x4000);
	ck_assert_uint_eq(h.seqid, 7);
	ck_assert_str_eq(h.checksum_alg, "sha256");
	ck_assert_str_eq(h.uuid, "uuid");
	ck_assert_uint_eq(h.hdr_offset, 0x4000);
	ck_assert_uint_eq(h.csum[0], 0xcc);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = { layouts, luks1, luks2, NULL };

	return common_check_run("luksfmt", tests);
}
