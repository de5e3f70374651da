/* SPDX-License-Identifier: MIT */
/* The vhd plugin: dynamic VHD creation and read-write, concurrent writers,
 * resize, fixed VHD through the same plugin, and the conformance suite over
 * its images. Differencing images and the layer contract are in vhd-diff.c,
 * bad input in vhd-corrupt.c; image structures are read and broken by code
 * independent of the plugin's (vhd-image.c). */
#include "conformance.h"
#include "harness.h"
#include "vhd-cases.h"
#include "vhdtest.h"

#include <diskcore/plugin.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- Helpers ------------------------------------------------------------------ */

static void tv_model_write(uint8_t *model, uint64_t sector, uint64_t count, uint64_t seed)
{
	h_fill(model + sector * 512, (size_t)count * 512, seed);
}

/* --- Dynamic images ----------------------------------------------------------- */

/* A new dynamic image: both footers, the header, an empty BAT; small file. */
START_TEST(vhd_create_dynamic)
{
	char *path = h_tmppath(".vhd");
	struct tv_img m;
	struct dc_info info;
	dc_disk *d;

	d = h_openf(0, "vhd:%s;create=5M;block=1M", path);
	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, 5 * MIB / 512);
	ck_assert_uint_eq(info.sector_size, 512);
	ck_assert_uint_eq(info.physical_sector_size, 512);
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_IGNORED);
	ck_assert(info.flags & DC_INFO_HAS_DISK_ID);
	dc_close(d);
	tv_img_open(&m, path);
	ck_assert_uint_lt(m.size, 64 * KIB);
	ck_assert_int_eq(memcmp(m.foot, m.copy, 512), 0);
	ck_assert_int_eq(memcmp(m.foot, "conectix", 8), 0);
	ck_assert_uint_eq(h_get_be32(m.foot + 60), 3);
	ck_assert_uint_eq(h_get_be64(m.foot + 48), 5 * MIB);
	ck_assert_uint_eq(h_get_be32(m.foot + 64), h_vhd_checksum(m.foot, 512, 64));
	ck_assert_int_eq(memcmp(m.foot + 68, info.disk_id, 16), 0);
	ck_assert_int_eq(memcmp(m.hdr, "cxsparse", 8), 0);
	ck_assert_uint_eq(h_get_be32(m.hdr + 36), h_vhd_checksum(m.hdr, 1024, 36));
	ck_assert_uint_eq(m.entries, 5);
	ck_assert_uint_eq(m.block, MIB);
	for (uint32_t b = 0; b < 5; b++)
		ck_assert_uint_eq(tv_bat(&m, b), 0xffffffff);
	tv_img_close(&m);
	/* Bad creation options. */
	h_open_fails(0, 0, "power of two", "vhd:%s;create=1M;block=3000", path);
	h_open_fails(0, 0, "multiple of 512", "vhd:%s;create=1000", path);
	h_open_fails(0, 0, "only when creating", "vhd:%s;block=1M", path);
	h_open_fails(0, 0, "2040 GiB", "vhd:%s;create=3T", path);
	free(path);
}
END_TEST

/* Writes allocate blocks (and only as many as touched); data reads back across
 * block boundaries, unwritten space reads as zero, and everything persists. */
START_TEST(vhd_dynamic_read_write)
{
	char *path = h_tmppath(".vhd");
	char *spec = h_fmt("vhd:%s", path);
	uint64_t n = 6 * MIB / 512 + 3, spb = 64 * KIB / 512;
	uint8_t *model = calloc(1, n * 512);
	struct tv_img m;
	dc_disk *d;

	vt_create("vhd", path, "create=6292992;block=64K");
	d = h_open(spec, 0);
	ck_assert_uint_eq(dc_sector_count(d), n);
	vt_check(d, model, 0, n);
	vt_put(d, model, 0, 1, 1);
	vt_write(d, spb - 3, 10, 2); /* straddles blocks 0 and 1 */
	tv_model_write(model, spb - 3, 10, 2);
	vt_write(d, 40 * spb + 5, 3 * spb, 3); /* four blocks */
	tv_model_write(model, 40 * spb + 5, 3 * spb, 3);
	vt_write(d, n - 1, 1, 4); /* the partial last block */
	tv_model_write(model, n - 1, 1, 4);
	vt_check(d, model, 0, n);
	vt_write(d, spb - 1, 2, 5); /* overwrite inside allocated blocks */
	tv_model_write(model, spb - 1, 2, 5);
	vt_check(d, model, 0, n);
	ck_assert_int_eq(dc_flush(d), 0);
	dc_close(d);

	tv_img_open(&m, path);
	{
		uint32_t alloc = 0;

		for (uint32_t b = 0; b < m.entries; b++)
			alloc += tv_bat(&m, b) != 0xffffffff;
		ck_assert_uint_eq(alloc, 2 + 4 + 1);
		/* The footer followed the blocks and still matches its copy. */
		ck_assert_int_eq(memcmp(m.foot, m.copy, 512), 0);
		ck_assert_uint_ge(m.size, m.bat_off + 7 * (64 * KIB + 512));
		/* A dynamic image's bitmaps are all ones. */
		uint8_t bm[512];

		ck_assert_int_eq(pread(m.fd, bm, 512, (off_t)tv_bat(&m, 0) * 512), 512);
		for (int i = 0; i < 16; i++)
			ck_assert_uint_eq(bm[i], 0xff);
	}
	tv_img_close(&m);
	d = h_open(spec, DC_OPEN_READ_ONLY);
	vt_check(d, model, 0, n);
	ck_assert_int_eq(dc_read(d, n, model, 512), DC_E_ILLEGAL_BLOCK);
	dc_close(d);
	free(model);
	free(spec);
	free(path);
}
END_TEST

/* Many threads allocating in the same blocks at once. */
START_TEST(vhd_concurrent_allocation)
{
	vt_concurrent_writes("vhd", "create=1M;block=4K", 16, 2, false, 0);
}
END_TEST

/* One dynamic VHD opened twice in this process (OpenVMM's IDE disk): both
 * handles write at once, and qemu-img reads the result (vt_two_opens()). */
START_TEST(vhd_two_opens)
{
	vt_two_opens("vhd", "create=4M;block=16K", "vpc", 40, 5);
}
END_TEST

/* extents() beside writes that allocate blocks and set bitmap bits of a
 * differencing child (4 KiB writes, 1 MiB apart) and flush. */
START_TEST(vhd_map_during_writes)
{
	vt_map_during_writes("vhd", "create=128M;block=1M", 2048, 8);
}
END_TEST

/* dc_resize() grows a dynamic VHD within its BAT's room (8M with 2M blocks:
 * one 512-byte BAT sector, 128 blocks, 256M); qemu-img reads the new size and
 * the data on both sides of the old end. Growing past the room, shrinking,
 * and fixed images are refused, the image unchanged. */
START_TEST(vhd_resize_grow)
{
	char *path = h_tmppath(".vhd"), *fixed = h_tmppath(".vhd");
	uint64_t at = (60 << 20) / 512;
	uint8_t buf[512];
	dc_disk *d;

	vt_create("vhd", path, "create=8M");
	d = h_openf(0, "vhd:%s", path);
	vt_write(d, 100, 8, 51);
	ck_assert_int_eq(dc_read(d, at, buf, 512), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_resize(d, (64 << 20) / 512), 0);
	ck_assert_uint_eq(dc_sector_count(d), (64 << 20) / 512);
	vt_write(d, at, 8, 52);
	ck_assert_int_eq(dc_resize(d, (256 << 20) / 512 + 1), -ENOSPC);
	ck_assert_int_eq(dc_resize(d, (32 << 20) / 512), -EOPNOTSUPP);
	ck_assert_uint_eq(dc_sector_count(d), (64 << 20) / 512);
	dc_close(d);

	vt_qemu_grown("vhd", path, "vpc", "64 MiB", (64 << 20) / 512, at, 51, 52);

	d = h_openf(0, "vhd1:%s;create=1M", fixed);
	dc_close(d);
	d = h_openf(0, "vhd:%s", fixed);
	ck_assert_int_eq(dc_resize(d, 4096), -EOPNOTSUPP);
	dc_close(d);
	free(fixed);
	free(path);
}
END_TEST

/* A fixed VHD opens through the vhd plugin too, and file:X.vhd picks the vhd
 * plugin for every type. */
START_TEST(vhd_fixed_and_file_dispatch)
{
	char *fixed = h_tmppath(".vhd"), *dyn = h_tmppath(".vhd");
	struct dc_info info, info2;
	uint8_t buf[4096];
	dc_disk *d;

	d = h_openf(0, "vhd1:%s;create=1M", fixed);
	dc_get_info(d, &info);
	vt_write(d, 8, 8, 42);
	dc_close(d);
	d = h_openf(0, "vhd:%s", fixed);
	dc_get_info(d, &info2);
	ck_assert_uint_eq(info2.sector_count, 2048);
	ck_assert_int_eq(memcmp(info.disk_id, info2.disk_id, 16), 0);
	ck_assert_int_eq(dc_read(d, 8, buf, sizeof(buf)), 0);
	ck_assert_int_lt(h_check(buf, sizeof(buf), 42), 0);
	ck_assert_int_eq(dc_read(d, 2048, buf, 512), DC_E_ILLEGAL_BLOCK);
	vt_write(d, 2047, 1, 43);
	dc_close(d);
	dc_close(h_openf(0, "vhd1:%s", fixed)); /* the footer is intact */

	vt_create("vhd", dyn, "create=2M");
	d = h_openf(0, "file:%s", dyn);
	vt_write(d, 100, 8, 44);
	dc_close(d);
	d = h_open(dyn, 0); /* a bare absolute path is file: */
	ck_assert_int_eq(dc_read(d, 100, buf, sizeof(buf)), 0);
	ck_assert_int_lt(h_check(buf, sizeof(buf), 44), 0);
	dc_close(d);
	free(fixed);
	free(dyn);
}
END_TEST

/* file:X.vhd;create=SIZE makes a fixed VHD, as OpenVMM does. */
START_TEST(vhd_file_create_is_fixed)
{
	char *path = h_tmppath(".vhd");
	struct stat st;
	uint8_t f[512];
	int fd;

	dc_close(h_openf(0, "file:%s;create=1M", path));
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, MIB + 512);
	fd = open(path, O_RDONLY);
	ck_assert_int_eq(pread(fd, f, 512, MIB), 512);
	close(fd);
	ck_assert_int_eq(memcmp(f, "conectix", 8), 0);
	ck_assert_uint_eq(h_get_be32(f + 60), 2);
	free(path);
}
END_TEST

/* --- Conformance --------------------------------------------------------------- */

static int tv_prepare(const char *path, uint64_t size, void *arg)
{
	const char *how = arg;
	char *spec;
	dc_disk *d = NULL;
	int r;

	if (!strcmp(how, "fixed")) {
		/* Append a fixed footer to the zero-filled file. */
		static const uint8_t uid[16] = { 0x42 };
		uint8_t f[512];
		int fd = open(path, O_WRONLY);

		h_vhd_footer(f, size, 2, uid);
		r = fd >= 0 && pwrite(fd, f, 512, (off_t)size) == 512 ? 0 : -EIO;
		if (fd >= 0)
			close(fd);
		return r;
	}
	if (!strcmp(how, "child")) {
		/* A child of a new base beside it: "vhd:PATH" opens both. */
		char *base = h_fmt("%s.base.vhd", path);

		r = tv_prepare(base, size, "2M");
		spec = h_fmt("vhd:%s;parent=%s;overwrite", path, base);
		free(base);
		if (r < 0)
			return r;
	} else {
		/* The zero-filled file is replaced by the image. */
		spec = h_fmt("vhd:%s;create=%llu;block=%s;overwrite", path,
			     (unsigned long long)size, how);
	}
	r = dc_open(spec, 0, &d);
	if (r == 0)
		dc_close(d);
	free(spec);
	return r;
}

int main(void)
{
	Suite *s = suite_create("vhd");
	TCase *tc = tcase_create("vhd");
	static const struct conformance_opts dyn = { .prepare = tv_prepare, .arg = "2M" };
	static const struct conformance_opts dyn_small = { .prepare = tv_prepare,
							   .arg = "4K" };
	static const struct conformance_opts dyn_ro = { .open_flags = DC_OPEN_READ_ONLY,
							.prepare = tv_prepare,
							.arg = "2M" };
	static const struct conformance_opts fixed = { .prepare = tv_prepare,
						       .arg = "fixed" };
	static const struct conformance_opts child = { .prepare = tv_prepare,
						       .arg = "child" };

	tcase_add_test(tc, vhd_create_dynamic);
	tcase_add_test(tc, vhd_dynamic_read_write);
	tcase_add_test(tc, vhd_concurrent_allocation);
	tcase_add_test(tc, vhd_two_opens);
	tcase_add_test(tc, vhd_fixed_and_file_dispatch);
	tcase_add_test(tc, vhd_resize_grow);
	tcase_add_test(tc, vhd_map_during_writes);
	tcase_add_test(tc, vhd_file_create_is_fixed);
	vhd_add_diff(tc);
	suite_add_tcase(s, tc);
	suite_add_tcase(s, vhd_tc_bad_input());

	conformance_add(s, "vhd-dynamic", "vhd:@NEW.vhd@;create=1M");
	conformance_add(s, "vhd-dynamic-4k", "vhd:@NEW.vhd@;create=1M;block=4K");
	conformance_add_opts(s, "vhd-dynamic-ro", "vhd:@TMP:1M.vhd@", &dyn_ro);
	conformance_add_opts(s, "vhd-fixed", "vhd:@TMP:1M.vhd@", &fixed);
	conformance_add_opts(s, "vhd-file", "file:@TMP:1M.vhd@", &dyn);
	conformance_add_opts(s, "vhd-diff", "vhd:@NEW.vhd@;parent=@TMP:1M.vhd@", &dyn);
	conformance_add_opts(s, "vhd-diff-4k", "vhd:@NEW.vhd@;parent=@TMP:1M.vhd@",
			     &dyn_small);
	conformance_add_opts(s, "memdiff-vhd", "memdiff:vhd:@TMP:1M.vhd@", &dyn);
	/* A layer under memdiff: is read-only, so the child exists first. */
	conformance_add_opts(s, "memdiff-vhd-diff", "memdiff:vhd:@TMP:1M.vhd@", &child);
	return h_run(s);
}
