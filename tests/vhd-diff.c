/* SPDX-License-Identifier: MIT */
/* The vhd plugin's differencing images: a child over its parent at sector
 * granularity, chains, parent locators (relative, absolute, moved), a parent
 * that changed, and the layer contract below the core. Part of test-vhd. */
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

/* --- Differencing images ------------------------------------------------------- */

/* A base of 2 MiB with a pattern in every 4 KiB; returns its model. */
static uint8_t *tv_base(const char *path, const char *opts)
{
	uint8_t *model = calloc(1, 2 * MIB);
	dc_disk *d = h_openf(0, "vhd:%s;%s", path, opts);

	for (uint64_t s = 0; s < 4096; s += 8) {
		vt_put(d, model, s, 8, 1000 + s);
	}
	dc_close(d);
	return model;
}

/* The child reads the parent where it has nothing, its own sectors where it
 * wrote, at sector granularity; the parent is never written. */
START_TEST(vhd_diff_basic)
{
	char *base = h_tmppath(".vhd"), *child = h_tmppath(".vhd");
	uint8_t *model = tv_base(base, "create=2M;block=64K");
	uint8_t *orig = malloc(2 * MIB);
	struct tv_img m;
	dc_disk *d;
	char *desc;

	memcpy(orig, model, 2 * MIB);
	d = h_openf(0, "vhd:%s;parent=%s", child, base);
	ck_assert_uint_eq(dc_sector_count(d), 4096);
	vt_check(d, model, 0, 4096);
	/* Odd runs: inside a byte of the bitmap, across bytes, across blocks. */
	vt_put(d, model, 3, 3, 1);
	vt_put(d, model, 100, 101, 2);
	vt_put(d, model, 127, 2, 3);
	vt_put(d, model, 4095, 1, 4);
	vt_check(d, model, 0, 4096);
	desc = vt_describe(d);
	ck_assert_msg(strstr(desc, "format=differencing VHD"), "%s", desc);
	ck_assert_msg(strstr(desc, "format=dynamic VHD"), "%s", desc);
	ck_assert_msg(strstr(desc, "parent="), "%s", desc);
	free(desc);
	dc_close(d);

	/* The child's bitmap holds exactly the written sectors. */
	tv_img_open(&m, child);
	{
		uint8_t bm[512];
		uint32_t e = tv_bat(&m, 0);

		ck_assert_uint_ne(e, 0xffffffff);
		ck_assert_int_eq(pread(m.fd, bm, 512, (off_t)e * 512), 512);
		for (uint32_t s = 0; s < 128; s++) {
			bool set = bm[s / 8] & (0x80 >> (s % 8));
			bool want = (s >= 3 && s < 6) || (s >= 100 && s < 128);

			ck_assert_msg(set == want, "bit of sector %u is %d", s, set);
		}
		ck_assert_uint_eq(tv_bat(&m, 2), 0xffffffff);
	}
	tv_img_close(&m);

	d = h_openf(DC_OPEN_READ_ONLY, "vhd:%s", child);
	vt_check(d, model, 0, 4096);
	dc_close(d);
	d = h_openf(DC_OPEN_READ_ONLY, "vhd:%s", base);
	vt_check(d, orig, 0, 4096);
	dc_close(d);
	free(orig);
	free(model);
	free(base);
	free(child);
}
END_TEST

/* base (fixed) <- mid <- top: each level's writes show through. */
START_TEST(vhd_diff_chain)
{
	char *base = h_tmppath(".vhd"), *mid = h_tmppath(".vhd"),
	     *top = h_tmppath(".vhd");
	uint8_t *model = calloc(1, 2 * MIB);
	dc_disk *d;

	d = h_openf(0, "vhd1:%s;create=2M", base);
	vt_put(d, model, 0, 4096, 1);
	dc_close(d);
	vt_create("vhd", mid, "parent=%s", base);
	d = h_openf(0, "vhd:%s", mid);
	vt_put(d, model, 10, 20, 2);
	dc_close(d);
	vt_create("vhd", top, "parent=%s;block=4K", mid);
	d = h_openf(0, "vhd:%s", top);
	vt_check(d, model, 0, 4096);
	vt_put(d, model, 15, 3, 3);
	vt_put(d, model, 4000, 90, 4);
	vt_check(d, model, 0, 4096);
	dc_close(d);
	/* memdiff over the chain: writes stay in memory. */
	d = h_openf(0, "memdiff:vhd:%s", top);
	vt_check(d, model, 0, 4096);
	vt_write(d, 0, 4096, 5);
	dc_close(d);
	d = h_openf(DC_OPEN_READ_ONLY, "vhd:%s", top);
	vt_check(d, model, 0, 4096);
	dc_close(d);
	free(model);
	free(base);
	free(mid);
	free(top);
}
END_TEST

/* The relative locator finds a moved pair; the absolute one a moved child
 * when the spec allows it to leave the child's directory. */
START_TEST(vhd_diff_locators)
{
	char *dir = h_tmpsubdir(), *dir2 = h_tmpsubdir(), *moved;
	char *base = h_fmt("%s/sub/base.vhd", dir), *child = h_fmt("%s/child.vhd", dir);
	char *sub = h_fmt("%s/sub", dir);
	uint8_t *model;
	dc_disk *d;
	char *desc;

	ck_assert_int_eq(mkdir(sub, 0700), 0);
	model = tv_base(base, "create=2M");
	vt_create("vhd", child, "parent=%s/sub/../sub/base.vhd", dir);
	/* Relative: move the whole directory. */
	moved = h_fmt("%s/moved", dir2);
	ck_assert_int_eq(rename(dir, moved), 0);
	free(child);
	child = h_fmt("%s/child.vhd", moved);
	d = h_openf(DC_OPEN_READ_ONLY, "vhd:%s", child);
	vt_check(d, model, 0, 4096);
	desc = vt_describe(d);
	ck_assert_msg(strstr(desc, "/moved/sub/base.vhd"), "%s", desc);
	free(desc);
	dc_close(d);
	/* Absolute: move only the child away from its parent. */
	free(base);
	base = h_fmt("%s/sub/base.vhd", moved);
	free(child);
	child = h_fmt("%s/c2.vhd", dir2);
	vt_create("vhd", child, "parent=%s", base);
	{
		char *other = h_tmpsubdir(), *c3 = h_fmt("%s/c3.vhd", other);

		ck_assert_int_eq(rename(child, c3), 0);
		/* Its absolute locator leaves its directory: followed only when
		 * the spec opts in, or names the parent. */
		h_open_fails(DC_OPEN_READ_ONLY, -EPERM, "leaves the image's directory",
			     "vhd:%s", c3);
		d = h_openf(DC_OPEN_READ_ONLY, "vhd:%s;parents=any", c3);
		vt_check(d, model, 0, 4096);
		dc_close(d);
		d = h_openf(DC_OPEN_READ_ONLY, "vhd:%s;parent=%s", c3, base);
		vt_check(d, model, 0, 4096);
		dc_close(d);
		free(c3);
		free(other);
	}
	free(model);
	free(moved);
	free(sub);
	free(base);
	free(child);
	free(dir);
	free(dir2);
}
END_TEST

/* A parent replaced by another image, a missing parent, a chain that loops. */
START_TEST(vhd_diff_bad_parent)
{
	char *base = h_tmppath(".vhd"), *child = h_tmppath(".vhd"),
	     *c2 = h_tmppath(".vhd");
	char *spec = h_fmt("vhd:%s", child);

	vt_create("vhd", base, "create=1M");
	vt_create("vhd", child, "parent=%s", base);
	dc_close(h_open(spec, 0));
	/* Same name, new unique id. */
	vt_create("vhd", base, "create=1M;overwrite");
	h_open_fails(0, 0, "unique id", "%s", spec);
	/* Gone. */
	ck_assert_int_eq(unlink(base), 0);
	h_open_fails(0, 0, "parent image not found", "%s", spec);
	/* base <- child <- c2, then c2 takes base's place: child -> c2 -> child. */
	vt_create("vhd", base, "create=1M");
	vt_create("vhd", child, "parent=%s;overwrite", base);
	vt_create("vhd", c2, "parent=%s", child);
	ck_assert_int_eq(rename(c2, base), 0);
	h_open_fails(0, 0, "loops", "%s", spec);
	free(spec);
	/* Overwriting a file with a child whose own parent chain needs it is
	 * refused. */
	vt_create("vhd", base, "create=1M;overwrite");
	vt_create("vhd", child, "parent=%s;overwrite", base);
	vt_create("vhd", c2, "parent=%s", child);
	h_open_fails(0, 0, "depends on it", "vhd:%s;parent=%s;overwrite", child, c2);
	h_open_fails(0, 0, "depends on it", "vhd:%s;parent=%s;overwrite", base, base);
	h_open_fails(0, 0, "without create", "vhd:%s;parent=%s;create=1M", c2, base);
	free(base);
	free(child);
	free(c2);
}
END_TEST

/* A writable child over a read-only parent: the parent file's bytes never
 * change, even through flush and FUA. */
START_TEST(vhd_diff_parent_untouched)
{
	char *base = h_tmppath(".vhd"), *child = h_tmppath(".vhd");
	uint8_t *model = tv_base(base, "create=2M;block=512K");
	uint8_t *before = malloc(3 * MIB), *after = malloc(3 * MIB);
	char *spec = h_fmt("vhd:%s", child);
	struct stat st;
	dc_disk *d;
	int fd;

	fd = open(base, O_RDONLY);
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_int_le(st.st_size, 3 * MIB);
	ck_assert_int_eq(pread(fd, before, (size_t)st.st_size, 0), st.st_size);
	vt_create("vhd", child, "parent=%s", base);
	d = h_open(spec, 0);
	vt_write(d, 0, 4096, 9);
	ck_assert_int_eq(dc_flush(d), 0);
	ck_assert_int_eq(dc_write(d, 0, model, 4096, DC_IO_FUA), 0);
	dc_close(d);
	ck_assert_int_eq(pread(fd, after, (size_t)st.st_size, 0), st.st_size);
	ck_assert_int_eq(memcmp(before, after, (size_t)st.st_size), 0);
	close(fd);
	free(before);
	free(after);
	free(model);
	free(spec);
	free(base);
	free(child);
}
END_TEST

/* --- The layer contract, below the core ------------------------------------------ */

/* A differencing layer marks only the sectors it holds; a dynamic layer marks
 * everything; no-overwrite writes skip held sectors; ranges are checked. */
START_TEST(vhd_layer_marks)
{
	char *base = h_tmppath(".vhd"), *child = h_tmppath(".vhd");
	uint8_t buf[64 * 512], want[64 * 512];
	uint64_t bits[1];
	struct h_direct t;
	char lower[4096];

	vt_create("vhd", base, "create=1M");
	vt_create("vhd", child, "parent=%s;block=16K", base);
	vt_direct_open(&t, "vhd", child, false);
	ck_assert_int_eq(t.p->lower_spec(t.inst, lower, sizeof(lower)), 1);
	ck_assert_msg(!strncmp(lower, "vhd:/", 5), "%s", lower);
	h_fill(buf, 5 * 512, 1);
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_WRITE, 0, 30, buf, 5 * 512, NULL), 0);
	memset(bits, 0, sizeof(bits));
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_READ, 0, 0, buf, 64 * 512, bits), 0);
	for (unsigned i = 0; i < 64; i++)
		ck_assert_msg(vt_marked(bits, i, i + 1) == (i >= 30 && i < 35),
			      "sector %u", i);
	ck_assert_int_lt(h_check(buf + 30 * 512, 5 * 512, 1), 0);
	/* No-overwrite: only the sectors not held are written. */
	h_fill(want, sizeof(want), 2);
	memcpy(buf, want, sizeof(buf));
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_WRITE, DC_IO_NO_OVERWRITE, 28, buf,
				      10 * 512, NULL),
			 0);
	memset(bits, 0, sizeof(bits));
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_READ, 0, 0, buf, 64 * 512, bits), 0);
	for (unsigned i = 0; i < 64; i++)
		ck_assert_msg(vt_marked(bits, i, i + 1) == (i >= 28 && i < 38),
			      "sector %u", i);
	ck_assert_int_eq(memcmp(buf + 28 * 512, want, 2 * 512), 0);
	ck_assert_int_lt(h_check(buf + 30 * 512, 5 * 512, 1), 0);
	ck_assert_int_eq(memcmp(buf + 35 * 512, want + 7 * 512, 3 * 512), 0);
	/* No-overwrite into an unallocated block writes it all. */
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_WRITE, DC_IO_NO_OVERWRITE, 64, want,
				      4 * 512, NULL),
			 0);
	/* Range checks of the layer itself. */
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_READ, 0, 2048, buf, 512, bits),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_WRITE, 0, 2047, buf, 1024, NULL),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_WRITE, 0, UINT64_C(1) << 55, buf, 512,
				      NULL),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_WRITE, 0, UINT64_MAX, buf, 512, NULL),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_WRITE, 0, 2047, buf, 512, NULL), 0);
	{
		struct dc_req u = { .op = DC_OP_UNMAP, .sector = 2047, .count = 2 };

		ck_assert_int_eq(t.p->io(t.inst, &u), DC_E_ILLEGAL_BLOCK);
		u.count = 1;
		ck_assert_int_eq(t.p->io(t.inst, &u), 0);
	}
	/* attach: the parent's id is required. */
	{
		struct dc_info lower_info = { 0 }, out;

		lower_info.sector_size = 512;
		lower_info.sector_count = 2048;
		ck_assert_int_lt(t.p->attach(t.inst, NULL, &out), 0);
		ck_assert_int_lt(t.p->attach(t.inst, &lower_info, &out), 0);
		lower_info.flags = DC_INFO_HAS_DISK_ID;
		ck_assert_int_lt(t.p->attach(t.inst, &lower_info, &out), 0);
	}
	h_direct_close(&t);

	vt_direct_open(&t, "vhd", base, true);
	ck_assert_int_eq(t.p->lower_spec(t.inst, lower, sizeof(lower)), 0);
	memset(bits, 0, sizeof(bits));
	memset(buf, 0x77, sizeof(buf));
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_READ, 0, 0, buf, 64 * 512, bits), 0);
	ck_assert_uint_eq(bits[0], UINT64_MAX);
	ck_assert_int_lt(h_check_zero(buf, sizeof(buf)), 0);
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_WRITE, 0, 0, buf, 512, NULL),
			 DC_E_READ_ONLY);
	h_direct_close(&t);
	free(base);
	free(child);
}
END_TEST

void vhd_add_diff(TCase *tc)
{
	tcase_add_test(tc, vhd_diff_basic);
	tcase_add_test(tc, vhd_diff_chain);
	tcase_add_test(tc, vhd_diff_locators);
	tcase_add_test(tc, vhd_diff_bad_parent);
	tcase_add_test(tc, vhd_diff_parent_untouched);
	tcase_add_test(tc, vhd_layer_marks);
}
