/* SPDX-License-Identifier: MIT */
/* The vhdx plugin: creation (dynamic, fixed, 512 and 4096-byte sectors),
 * allocation, resize, unmap to block states, and the conformance suite over
 * its images. Differencing chains are in vhdx-diff.c, the log in vhdx-log.c,
 * bad input in vhdx-corrupt.c; image structures are read, checked and broken
 * there and here by code independent of the plugin's (vhdx-image.c). */
#include "conformance.h"
#include "harness.h"
#include "vhdtest.h"
#include "vhdx-cases.h"

#include <diskcore/plugin.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- Helpers ------------------------------------------------------------------ */

static uint64_t tx_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* --- Creation ------------------------------------------------------------------- */

START_TEST(vhdx_crc32c_vector)
{
	/* The well-known check value of CRC-32C validates this file's reader. */
	ck_assert_uint_eq(tx_crc((const uint8_t *)"123456789", 9, 100), 0xe3069283u);
}
END_TEST

START_TEST(vhdx_create_layout)
{
	char *path = h_tmppath(".vhdx");
	uint8_t other[4096], ident[16];
	struct tx_img m;
	struct dc_info info;
	dc_disk *d;
	char *desc;

	vt_create("vhdx", path, "create=3M;block=1M");
	tx_img_open(&m, path);
	tx_pread(&m, ident, 16, 0);
	ck_assert(!memcmp(ident, "vhdxfile", 8));
	ck_assert(ident[8] == 'd' && ident[9] == 0); /* "diskcore" in UTF-16 */
	tx_pread(&m, other, sizeof(other), (uint64_t)(64 + 64 * !m.slot) * KIB);
	ck_assert(!memcmp(other, "head", 4) &&
		  tx_le32(other + 4) == tx_crc(other, 4096, 4));
	ck_assert_uint_eq(tx_le64(other + 8) + 1, m.seq);
	ck_assert_uint_eq(m.hdr[66] | m.hdr[67] << 8, 1); /* version */
	ck_assert(tx_guid_zero(m.hdr + 48));		  /* no log to replay */
	ck_assert_uint_eq(m.log_len, MIB);
	ck_assert_uint_eq(m.log_off % MIB, 0);
	ck_assert_uint_eq(m.block, MIB);
	ck_assert_uint_eq(m.flags, 0);
	ck_assert_uint_eq(m.disk, 3 * MIB);
	ck_assert_uint_eq(m.lss, 512);
	ck_assert_uint_eq(m.pss, 4096);
	for (uint64_t i = 0; i < 3; i++)
		ck_assert_uint_eq(tx_bat(&m, i), 0);
	ck_assert_uint_le(m.size, 8 * MIB);
	tx_img_close(&m);

	d = h_openf(0, "vhdx:%s", path);
	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_size, 512);
	ck_assert_uint_eq(info.physical_sector_size, 4096);
	ck_assert_uint_eq(info.sector_count, 3 * MIB / 512);
	ck_assert(info.flags & DC_INFO_HAS_DISK_ID);
	ck_assert(!memcmp(info.disk_id, m.page83, 16));
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_ZEROES);
	desc = vt_describe(d);
	vt_has(desc, "format=dynamic VHDX");
	vt_has(desc, "block size=1048576");
	vt_has(desc, "log=clean");
	free(desc);
	dc_close(d);

	/* 4096-byte sectors, over the first image. */
	vt_create("vhdx", path, "create=4M;sector=4096;overwrite");
	d = h_openf(0, "vhdx:%s", path);
	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_size, 4096);
	ck_assert_uint_eq(info.sector_count, 1024);
	dc_close(d);
	tx_img_open(&m, path);
	ck_assert_uint_eq(m.lss, 4096);
	ck_assert_uint_eq(m.block, 32 * MIB);
	tx_img_close(&m);
	free(path);
}
END_TEST

/* Random writes over many blocks, read back before and after reopening. */
static void tx_read_write(uint32_t ss)
{
	char *path = h_tmppath(".vhdx");
	uint64_t size = 9 * MIB + 7 * 4096, nsec = size / ss, seed = 88172645463325252ull;
	uint8_t *model = calloc(1, size);
	struct tx_img m;
	dc_disk *d;
	char *opts =
		h_fmt("create=%llu;block=1M;sector=%u", (unsigned long long)size, ss);

	vt_create("vhdx", path, "%s", opts);
	d = h_openf(0, "vhdx:%s", path);
	ck_assert_uint_eq(dc_sector_count(d), nsec);
	for (int i = 0; i < 60; i++) {
		uint64_t n = 1 + tx_rand(&seed) % (3 * MIB / ss);
		uint64_t s = tx_rand(&seed) % nsec;

		if (s + n > nsec)
			n = nsec - s;
		vt_put(d, model, s, n, (uint64_t)i + 1);
		if (i % 10 == 9)
			ck_assert_int_eq(dc_flush(d), 0);
	}
	vt_put(d, model, nsec - 1, 1, 999);
	vt_check(d, model, 0, nsec);
	dc_close(d);
	d = h_openf(DC_OPEN_READ_ONLY, "vhdx:%s", path);
	vt_check(d, model, 0, nsec);
	dc_close(d);
	/* Every block that holds data is present, 1 MiB-aligned, in the file. */
	tx_img_open(&m, path);
	ck_assert(tx_guid_zero(m.hdr + 48));
	for (uint64_t b = 0; b < (size + MIB - 1) / MIB; b++) {
		uint64_t e = tx_bat(&m, tx_pidx(&m, b)), end = (b + 1) * MIB;
		bool data = false;

		for (uint64_t o = b * MIB; o < end && o < size && !data; o++)
			data = model[o] != 0;
		if (data) {
			ck_assert_uint_eq(e & 7, 6);
			ck_assert_uint_ge(e >> 20 << 20, 3 * MIB);
			ck_assert_uint_le((e >> 20 << 20) + MIB, m.size);
		}
	}
	tx_img_close(&m);
	free(opts);
	free(model);
	free(path);
}

START_TEST(vhdx_read_write_512)
{
	tx_read_write(512);
}
END_TEST

START_TEST(vhdx_read_write_4096)
{
	tx_read_write(4096);
}
END_TEST

/* extents() beside writes that allocate blocks and set bitmap bits of a
 * differencing child (4 KiB writes, 1 MiB apart) and flush. */
START_TEST(vhdx_map_during_writes)
{
	vt_map_during_writes("vhdx", "create=128M;block=1M", 2048, 8);
}
END_TEST

/* dc_resize() grows a dynamic VHDX within its BAT region (1 MiB here: room
 * for far more than 1G of 32M blocks); the size item goes through the log.
 * qemu-img check is clean, info reads the new size, convert the data on both
 * sides of the old end. Shrinking and fixed images are refused. */
START_TEST(vhdx_resize_grow)
{
	char *path = h_tmppath(".vhdx"), *fixed = h_tmppath(".vhdx");
	uint64_t at = (900 << 20) / 512;
	dc_disk *d;

	vt_create("vhdx", path, "create=64M");
	d = h_openf(0, "vhdx:%s", path);
	vt_write(d, 100, 8, 61);
	ck_assert_int_eq(dc_resize(d, (1024 << 20) / 512), 0);
	ck_assert_uint_eq(dc_sector_count(d), (1024 << 20) / 512);
	vt_write(d, at, 8, 62);
	ck_assert_int_eq(dc_resize(d, (32 << 20) / 512), -EOPNOTSUPP);
	ck_assert_uint_eq(dc_sector_count(d), (1024 << 20) / 512);
	dc_close(d);

	ck_assert_int_eq(h_sh("qemu-img check -q -f vhdx '%s'", path), 0);
	vt_qemu_grown("vhdx", path, "vhdx", "1 GiB", (1024 << 20) / 512, at, 61, 62);

	vt_create("vhdx", fixed, "create=4M;fixed");
	d = h_openf(0, "vhdx:%s", fixed);
	ck_assert_int_eq(dc_resize(d, 16384), -EOPNOTSUPP);
	dc_close(d);
	free(fixed);
	free(path);
}
END_TEST

/* One dynamic VHDX opened twice in this process (OpenVMM's IDE disk): both
 * handles write at once, and qemu-img checks and reads the result. */
START_TEST(vhdx_two_opens)
{
	vt_two_opens("vhdx", "create=16M;block=1M", "vhdx", 200, 25);
}
END_TEST

/* Eight threads allocate the same blocks at once. */
START_TEST(vhdx_concurrent_allocation)
{
	vt_concurrent_writes("vhdx", "create=128M;block=1M", 4096, 4, true,
			     DC_OPEN_READ_ONLY);
}
END_TEST

/* Fixed: every block present in order, unmap ignored. */
START_TEST(vhdx_fixed)
{
	char *path = h_tmppath(".vhdx");
	uint8_t *model = calloc(1, 3 * MIB);
	struct dc_info info;
	struct tx_img m;
	dc_disk *d;
	char *desc;

	vt_create("vhdx", path, "create=3M;block=1M;fixed");
	tx_img_open(&m, path);
	ck_assert_uint_eq(m.flags, 1); /* LeaveBlockAllocated */
	for (uint64_t b = 0; b < 3; b++) {
		uint64_t e = tx_bat(&m, b);

		ck_assert_uint_eq(e & 7, 6);
		ck_assert_uint_eq(e >> 20 << 20, tx_bat(&m, 0) - 6 + b * MIB);
	}
	ck_assert_uint_eq(m.size, (tx_bat(&m, 2) >> 20 << 20) + MIB);
	tx_img_close(&m);
	d = h_openf(0, "vhdx:%s", path);
	dc_get_info(d, &info);
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_IGNORED);
	desc = vt_describe(d);
	vt_has(desc, "format=fixed VHDX");
	free(desc);
	vt_put(d, model, 100, 3000, 5);
	ck_assert_int_eq(dc_unmap(d, 0, 6144, 0), 0);
	vt_check(d, model, 0, 6144);
	dc_close(d);
	tx_img_open(&m, path);
	ck_assert_uint_eq(m.size, (tx_bat(&m, 2) >> 20 << 20) + MIB);
	tx_img_close(&m);
	free(model);
	free(path);
}
END_TEST

/* file:X.vhdx and a bare path pick the vhdx plugin; create= makes a dynamic image. */
START_TEST(vhdx_file_dispatch)
{
	char *path = h_tmppath(".vhdx");
	struct tx_img m;
	dc_disk *d;
	char *desc;

	dc_close(h_openf(0, "file:%s;create=2M", path));
	tx_img_open(&m, path);
	ck_assert_uint_eq(m.disk, 2 * MIB);
	ck_assert_uint_eq(m.flags, 0);
	tx_img_close(&m);
	d = h_openf(0, "%s", path);
	desc = vt_describe(d);
	vt_has(desc, "plugin=vhdx");
	free(desc);
	dc_close(d);
	h_open_fails(0, 0, "vhdx", "file:%s;direct", path);
	free(path);
}
END_TEST

START_TEST(vhdx_create_errors)
{
	char *path = h_tmppath(".vhdx"), *base = h_tmppath(".vhdx");

	h_open_fails(0, 0, "block=", "vhdx:%s;create=4M;block=3M", path);
	h_open_fails(0, 0, "sector=", "vhdx:%s;create=4M;sector=1024", path);
	h_open_fails(0, 0, "create=", "vhdx:%s;create=1000", path);
	h_open_fails(0, 0, "only when creating", "vhdx:%s;fixed", path);
	/* A read-only open (as under memdiff:) never creates; a writable one does,
	 * and then the read-only one opens it. */
	h_open_fails(DC_OPEN_READ_ONLY, -ENOENT, "never creates", "vhdx:%s;create=4M",
		     path);
	ck_assert_int_ne(access(path, F_OK), 0);
	vt_create("vhdx", path, "create=4M");
	dc_close(h_openf(DC_OPEN_READ_ONLY, "vhdx:%s;create=4M", path));
	vt_create("vhdx", base, "create=4M");
	h_open_fails(0, 0, "parent=", "vhdx:%s;parent=%s;create=4M", path, base);
	/* A child that cannot be made leaves no file behind. */
	free(path);
	path = h_tmppath(".vhdx");
	h_open_fails(0, 0, "No such file", "vhdx:%s;parent=%s.none", path, base);
	ck_assert_int_ne(access(path, F_OK), 0);
	/* Never truncate the parent itself; without ;overwrite it is opened and
	 * found not to be a child of itself. */
	h_open_fails(0, 0, "depends on it", "vhdx:%s;parent=%s;overwrite", base, base);
	h_open_fails(0, -EEXIST, "not a differencing image", "vhdx:%s;parent=%s", base,
		     base);
	dc_close(h_openf(DC_OPEN_READ_ONLY, "vhdx:%s", base));
	free(base);
	free(path);
}
END_TEST

/* --- Unmap ------------------------------------------------------------------------- */

START_TEST(vhdx_unmap)
{
	char *path = h_tmppath(".vhdx"), *base = h_tmppath(".vhdx"), *child;
	uint8_t *model = calloc(1, 4 * MIB);
	struct tx_img m;
	struct stat st1, st2;
	dc_disk *d;

	vt_create("vhdx", path, "create=4M;block=1M");
	d = h_openf(0, "vhdx:%s", path);
	vt_put(d, model, 0, 8192, 1);
	ck_assert_int_eq(dc_flush(d), 0);
	ck_assert_int_eq(stat(path, &st1), 0);
	ck_assert_int_eq(dc_unmap(d, 2048, 2048, 0), 0); /* all of block 1 */
	memset(model + MIB, 0, MIB);
	ck_assert_int_eq(dc_unmap(d, 4096 + 100, 50, 0), 0); /* part of block 2 */
	memset(model + (4096 + 100) * 512, 0, 50 * 512);
	vt_check(d, model, 0, 8192);
	dc_close(d);
	ck_assert_int_eq(stat(path, &st2), 0);
	ck_assert_int_lt(st2.st_blocks, st1.st_blocks); /* space given back */
	tx_img_open(&m, path);
	ck_assert_uint_eq(tx_bat(&m, 1), 2); /* PAYLOAD_BLOCK_ZERO, offset 0 */
	ck_assert_uint_eq(tx_bat(&m, 2) & 7, 6);
	tx_img_close(&m);
	d = h_openf(DC_OPEN_READ_ONLY, "vhdx:%s", path);
	vt_check(d, model, 0, 8192);
	dc_close(d);
	/* Writing a ZERO block allocates it again. */
	d = h_openf(0, "vhdx:%s", path);
	vt_put(d, model, 2048 + 5, 1, 7);
	vt_check(d, model, 0, 8192);
	dc_close(d);

	/* Differencing: unmapped sectors read zero, not the parent's data. */
	memset(model, 0, 4 * MIB);
	vt_create("vhdx", base, "create=4M;block=1M");
	d = h_openf(0, "vhdx:%s", base);
	vt_put(d, model, 0, 8192, 3);
	dc_close(d);
	child = h_tmppath(".vhdx");
	vt_create("vhdx", child, "parent=%s", base);
	d = h_openf(0, "vhdx:%s", child);
	ck_assert_int_eq(dc_unmap(d, 0, 2048, 0), 0);
	memset(model, 0, MIB);
	ck_assert_int_eq(dc_unmap(d, 2048 + 10, 20, 0), 0);
	memset(model + (2048 + 10) * 512, 0, 20 * 512);
	vt_check(d, model, 0, 8192);
	dc_close(d);
	tx_img_open(&m, child);
	ck_assert_uint_eq(tx_bat(&m, 0), 2);
	ck_assert_uint_eq(tx_bat(&m, 1) & 7, 7);
	tx_img_close(&m);
	d = h_openf(DC_OPEN_READ_ONLY, "vhdx:%s", child);
	vt_check(d, model, 0, 8192);
	dc_close(d);
	free(child);
	free(base);
	free(model);
	free(path);
}
END_TEST

/* --- Conformance -------------------------------------------------------------------- */

/* Turn a @TMP@ file into an image of its size: "dyn", "dyn4k" or "fixed". */
static int tx_prepare(const char *path, uint64_t size, void *arg)
{
	const char *how = arg;
	char *spec;
	dc_disk *d = NULL;
	int r;

	unlink(path);
	if (!strcmp(how, "child4k")) {
		/* A child of a new base beside it: "vhdx:PATH" opens both. */
		char *base = h_fmt("%s.base.vhdx", path);

		r = tx_prepare(base, size, "dyn4k");
		spec = h_fmt("vhdx:%s;parent=%s", path, base);
		free(base);
		if (r < 0)
			return r;
	} else {
		spec = h_fmt("vhdx:%s;create=%llu;block=1M%s", path,
			     (unsigned long long)size,
			     !strcmp(how, "fixed") ? ";fixed" :
			     !strcmp(how, "dyn4k") ? ";sector=4096" :
						     "");
	}
	r = dc_open(spec, 0, &d);
	free(spec);
	if (r == 0)
		dc_close(d);
	return r;
}

int main(void)
{
	Suite *s = suite_create("vhdx");
	TCase *tc = tcase_create("vhdx");
	static const struct conformance_opts dyn = { .prepare = tx_prepare,
						     .arg = "dyn" };
	static const struct conformance_opts dyn4k = { .prepare = tx_prepare,
						       .arg = "dyn4k" };
	static const struct conformance_opts dyn_ro = { .open_flags = DC_OPEN_READ_ONLY,
							.prepare = tx_prepare,
							.arg = "dyn" };
	static const struct conformance_opts fixed = { .prepare = tx_prepare,
						       .arg = "fixed" };
	static const struct conformance_opts child4k = { .prepare = tx_prepare,
							 .arg = "child4k" };

	tcase_add_test(tc, vhdx_crc32c_vector);
	tcase_add_test(tc, vhdx_create_layout);
	tcase_add_test(tc, vhdx_read_write_512);
	tcase_add_test(tc, vhdx_read_write_4096);
	tcase_add_test(tc, vhdx_concurrent_allocation);
	tcase_add_test(tc, vhdx_two_opens);
	tcase_add_test(tc, vhdx_resize_grow);
	tcase_add_test(tc, vhdx_map_during_writes);
	tcase_add_test(tc, vhdx_fixed);
	tcase_add_test(tc, vhdx_file_dispatch);
	tcase_add_test(tc, vhdx_create_errors);
	vhdx_add_diff(tc);
	tcase_add_test(tc, vhdx_unmap);
	vhdx_add_log(tc);
	suite_add_tcase(s, tc);
	suite_add_tcase(s, vhdx_tc_bad_input());

	conformance_add(s, "vhdx-dynamic", "vhdx:@NEW.vhdx@;create=1M;block=1M");
	conformance_add(s, "vhdx-dynamic-4k", "vhdx:@NEW.vhdx@;create=1M;sector=4096");
	conformance_add(s, "vhdx-fixed", "vhdx:@NEW.vhdx@;create=1M;fixed");
	conformance_add_opts(s, "vhdx-dynamic-ro", "vhdx:@TMP:1M.vhdx@", &dyn_ro);
	conformance_add_opts(s, "vhdx-file", "file:@TMP:1M.vhdx@", &dyn);
	conformance_add_opts(s, "vhdx-fixed-file", "@TMP:1M.vhdx@", &fixed);
	conformance_add_opts(s, "vhdx-diff", "vhdx:@NEW.vhdx@;parent=@TMP:1M.vhdx@",
			     &dyn);
	conformance_add_opts(s, "vhdx-diff-4k", "vhdx:@NEW.vhdx@;parent=@TMP:1M.vhdx@",
			     &dyn4k);
	conformance_add_opts(s, "memdiff-vhdx", "memdiff:vhdx:@TMP:1M.vhdx@", &dyn);
	/* A layer under memdiff: is read-only, so the child exists first. */
	conformance_add_opts(s, "memdiff-vhdx-diff", "memdiff:vhdx:@TMP:1M.vhdx@",
			     &child4k);
	return h_run(s);
}
