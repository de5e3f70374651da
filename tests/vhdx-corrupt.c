/* SPDX-License-Identifier: MIT */
/* The vhdx plugin on bad input: broken headers and region tables, metadata
 * items that are unknown, overlapping, missing or out of range, and BAT entries
 * that point outside the file, overlap or carry reserved states. Part of
 * test-vhdx. */
#include "harness.h"
#include "vhdtest.h"
#include "vhdx-cases.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

START_TEST(vhdx_bad_headers)
{
	char *path = h_tmppath(".vhdx");
	uint8_t h[4096], cur[4096], oth[4096], rt[65536];
	struct tx_img m;
	int fd;

	ck_assert_ptr_nonnull(path);

	vt_create("vhdx", path, "create=2M;block=1M");
	tx_img_open(&m, path);
	memcpy(cur, m.hdr, sizeof(cur));
	tx_pread(&m, oth, sizeof(oth), (uint64_t)(64 + 64 * !m.slot) * KIB);
	/* A bad checksum on the current header: the other one is used. */
	memcpy(h, cur, sizeof(h));
	h[200] ^= 1;
	tx_pwrite(&m, h, sizeof(h), (uint64_t)(64 + 64 * m.slot) * KIB);
	dc_close(h_openf(DC_OPEN_READ_ONLY, "vhdx:%s", path));
	dc_close(h_openf(0, "vhdx:%s", path)); /* no change made: no repair */
	/* Both bad. */
	memcpy(h, oth, sizeof(h));
	h[300] ^= 1;
	tx_pwrite(&m, h, sizeof(h), (uint64_t)(64 + 64 * !m.slot) * KIB);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "no valid VHDX header", "vhdx:%s", path);
	tx_pwrite(&m, oth, sizeof(oth), (uint64_t)(64 + 64 * !m.slot) * KIB);
	tx_pwrite(&m, cur, sizeof(cur), (uint64_t)(64 + 64 * m.slot) * KIB);
	dc_close(h_openf(DC_OPEN_READ_ONLY, "vhdx:%s", path));
	/* An unknown version, with a valid checksum. */
	memcpy(h, cur, sizeof(h));
	h[66] = 2;
	tx_put_hdr(&m, m.slot, h);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "version 2", "vhdx:%s", path);
	tx_pwrite(&m, cur, sizeof(cur), (uint64_t)(64 + 64 * m.slot) * KIB);
	/* Region tables: one bad copy is fine, two are not. */
	tx_pread(&m, rt, sizeof(rt), 192 * KIB);
	rt[1000] ^= 1;
	tx_pwrite(&m, rt, sizeof(rt), 192 * KIB);
	dc_close(h_openf(DC_OPEN_READ_ONLY, "vhdx:%s", path));
	tx_pwrite(&m, rt, sizeof(rt), 256 * KIB);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "no valid region table", "vhdx:%s", path);
	rt[1000] ^= 1;
	tx_pwrite(&m, rt, sizeof(rt), 256 * KIB);
	/* An unknown region marked required; then not required (kept, opens). */
	memcpy(rt + 16 + 64, rt + 16, 32);
	rt[16 + 64] ^= 0xff;
	tx_set64(rt + 16 + 64 + 16, m.size);
	tx_set32(rt + 16 + 64 + 24, MIB);
	tx_set32(rt + 8, 3);
	tx_set32(rt + 4, tx_crc(rt, sizeof(rt), 4));
	tx_pwrite(&m, rt, sizeof(rt), 192 * KIB);
	ck_assert_int_eq(ftruncate(m.fd, (off_t)(m.size + MIB)), 0);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "required", "vhdx:%s", path);
	tx_set32(rt + 16 + 64 + 28, 0);
	tx_set32(rt + 4, tx_crc(rt, sizeof(rt), 4));
	tx_pwrite(&m, rt, sizeof(rt), 192 * KIB);
	dc_close(h_openf(DC_OPEN_READ_ONLY, "vhdx:%s", path));
	/* A region that overlaps the BAT. */
	tx_set64(rt + 16 + 64 + 16, m.bat_off);
	tx_set32(rt + 4, tx_crc(rt, sizeof(rt), 4));
	tx_pwrite(&m, rt, sizeof(rt), 192 * KIB);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "overlaps", "vhdx:%s", path);
	tx_img_close(&m);

	/* Not a VHDX; a truncated one. */
	fd = open(path, O_WRONLY);
	ck_assert_int_eq(pwrite(fd, "vhdxfilf", 8, 0), 8);
	close(fd);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "not a VHDX", "vhdx:%s", path);
	vt_create("vhdx", path, "create=2M;block=1M;overwrite");
	ck_assert_int_eq(truncate(path, 2 * MIB + 4096), 0);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "inside the file", "vhdx:%s", path);
	free(path);
}
END_TEST

START_TEST(vhdx_bad_metadata)
{
	char *path = h_tmppath(".vhdx");
	uint8_t tbl[65536], save[65536], v[8];
	struct tx_img m;

	vt_create("vhdx", path, "create=2M;block=1M");
	tx_img_open(&m, path);
	tx_pread(&m, save, sizeof(save), m.meta_off);
	/* An unknown item marked required. */
	memcpy(tbl, save, sizeof(tbl));
	memcpy(tbl + 32 + 32 * 5, tbl + 32, 32);
	tbl[32 + 32 * 5] ^= 0xff;
	tx_set32(tbl + 32 + 32 * 5 + 16, 128 * KIB);
	tbl[10] = 6;
	tx_pwrite(&m, tbl, sizeof(tbl), m.meta_off);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "required", "vhdx:%s", path);
	/* Two items overlapping. */
	tx_set32(tbl + 32 + 32 * 5 + 24, 0);
	tx_set32(tbl + 32 + 32 * 5 + 16, m.item_off[1] + 4);
	tx_pwrite(&m, tbl, sizeof(tbl), m.meta_off);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "overlap", "vhdx:%s", path);
	/* A missing required item. */
	memcpy(tbl, save, sizeof(tbl));
	tbl[10] = 4;
	tx_pwrite(&m, tbl, sizeof(tbl), m.meta_off);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "missing", "vhdx:%s", path);
	tx_pwrite(&m, save, sizeof(save), m.meta_off);
	/* Values: block size, sector size, disk size. */
	tx_set32(v, 3 * MIB);
	tx_pwrite(&m, v, 4, m.meta_off + m.item_off[0]);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "block size", "vhdx:%s", path);
	tx_set32(v, MIB);
	tx_pwrite(&m, v, 4, m.meta_off + m.item_off[0]);
	tx_set32(v, 1024);
	tx_pwrite(&m, v, 4, m.meta_off + m.item_off[3]);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "512 or 4096", "vhdx:%s", path);
	tx_set32(v, 512);
	tx_pwrite(&m, v, 4, m.meta_off + m.item_off[3]);
	tx_set64(v, 1000);
	tx_pwrite(&m, v, 8, m.meta_off + m.item_off[1]);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "virtual disk size", "vhdx:%s", path);
	/* A disk larger than the BAT region holds. */
	tx_set64(v, UINT64_C(1) << 40);
	tx_pwrite(&m, v, 8, m.meta_off + m.item_off[1]);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "too small", "vhdx:%s", path);
	tx_set64(v, 2 * MIB);
	tx_pwrite(&m, v, 8, m.meta_off + m.item_off[1]);
	/* HasParent without a locator. */
	tx_set32(v, 2);
	tx_pwrite(&m, v, 4, m.meta_off + m.item_off[0] + 4);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "parent locator", "vhdx:%s", path);
	tx_set32(v, 0);
	tx_pwrite(&m, v, 4, m.meta_off + m.item_off[0] + 4);
	dc_close(h_openf(DC_OPEN_READ_ONLY, "vhdx:%s", path));
	tx_img_close(&m);
	free(path);
}
END_TEST

START_TEST(vhdx_bad_bat)
{
	char *path = h_tmppath(".vhdx");
	struct tx_img m;
	uint8_t buf[512];
	dc_disk *d;

	vt_create("vhdx", path, "create=3M;block=1M");
	d = h_openf(0, "vhdx:%s", path);
	vt_write(d, 0, 2048, 1);
	dc_close(d);
	tx_img_open(&m, path);
	/* Past the end of the file. */
	tx_set_bat(&m, 1, (m.size + 16 * MIB) | 6);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "past the end", "vhdx:%s", path);
	/* Over the metadata region, over another block, over the header. */
	tx_set_bat(&m, 1, m.meta_off | 6);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "overlaps", "vhdx:%s", path);
	tx_set_bat(&m, 1, tx_bat(&m, 0));
	h_open_fails(DC_OPEN_READ_ONLY, 0, "overlaps", "vhdx:%s", path);
	tx_set_bat(&m, 1, 6);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "overlaps", "vhdx:%s", path);
	/* Reserved states, named with their entry, whether read-only or not; and a
	 * differencing-only state. */
	tx_set_bat(&m, 1, 4);
	h_open_fails(DC_OPEN_READ_ONLY, -EINVAL,
		     "BAT entry 1 (payload block 1) has state 4", "vhdx:%s", path);
	tx_set_bat(&m, 1, 5);
	h_open_fails(DC_OPEN_READ_ONLY, -EINVAL, "has state 5, which [MS-VHDX] reserves",
		     "vhdx:%s", path);
	h_open_fails(0, -EINVAL, "BAT entry 1 (payload block 1) has state 5", "vhdx:%s",
		     path);
	tx_set_bat(&m, 1, tx_bat(&m, 0) + MIB + 1);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "state 7", "vhdx:%s", path);
	/* The defined zero states read as zeroes. */
	for (uint64_t st = 1; st <= 3; st++) {
		tx_set_bat(&m, 1, st);
		d = h_openf(DC_OPEN_READ_ONLY, "vhdx:%s", path);
		ck_assert_int_eq(dc_read(d, 2048, buf, 512), 0);
		ck_assert_int_lt(h_check_zero(buf, 512), 0);
		dc_close(d);
	}
	tx_img_close(&m);
	free(path);
}
END_TEST

TCase *vhdx_tc_bad_input(void)
{
	TCase *bad = tcase_create("vhdx-bad-input");

	tcase_add_test(bad, vhdx_bad_headers);
	tcase_add_test(bad, vhdx_bad_metadata);
	tcase_add_test(bad, vhdx_bad_bat);
	return bad;
}
