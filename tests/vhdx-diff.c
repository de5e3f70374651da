/* SPDX-License-Identifier: MIT */
/* The vhdx plugin's differencing chains (a child over its parent, chains of
 * three, relative and absolute parent locators, a broken link) and the layer
 * contract on the plugin directly. Part of test-vhdx. */
#include "harness.h"
#include "vhdtest.h"
#include "vhdx-cases.h"

#include <diskcore/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void tx_has_parent(const char *text, const char *path)
{
	char *needle = h_fmt("parent=%s", path);

	vt_has(text, needle);
	free(needle);
}

/* --- Differencing chains --------------------------------------------------------- */

/* The bit of virtual sector s in the sector bitmap block of its chunk. */
static bool tx_sb_bit(struct tx_img *m, uint64_t s)
{
	uint64_t c = s >> 23, e = tx_bat(m, c * (m->cr + 1) + m->cr),
		 k = s & ((1u << 23) - 1);
	uint8_t byte;

	ck_assert_uint_eq(e & 7, 6);
	tx_pread(m, &byte, 1, (e >> 20 << 20) + k / 8);
	return byte >> (k % 8) & 1;
}

START_TEST(vhdx_diff_basic)
{
	char *base = h_tmppath(".vhdx"), *child = h_tmppath(".vhdx");
	uint8_t *model = calloc(1, 4 * MIB), *orig = malloc(4 * MIB), id[16];
	struct dc_info info;
	struct tx_img m;
	dc_disk *d;
	char *desc;

	vt_create("vhdx", base, "create=4M;block=1M");
	d = h_openf(0, "vhdx:%s", base);
	vt_put(d, model, 0, 8192, 1);
	dc_get_info(d, &info);
	memcpy(id, info.disk_id, 16);
	dc_close(d);
	memcpy(orig, model, 4 * MIB);
	vt_create("vhdx", child, "parent=%s", base);
	d = h_openf(0, "vhdx:%s", child);
	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, 8192);
	ck_assert(!memcmp(info.disk_id, id, 16)); /* virtual-disk metadata inherited */
	vt_check(d, model, 0, 8192);
	vt_put(d, model, 10, 11, 2);	     /* part of block 0 */
	vt_put(d, model, 2 * 2048, 2048, 3); /* all of block 2 */
	vt_put(d, model, 3 * 2048 + 2047, 1, 4);
	vt_check(d, model, 0, 8192);
	desc = vt_describe(d);
	vt_has(desc, "format=differencing VHDX");
	tx_has_parent(desc, base);
	free(desc);
	dc_close(d);
	d = h_openf(DC_OPEN_READ_ONLY, "vhdx:%s", child);
	vt_check(d, model, 0, 8192);
	dc_close(d);

	/* The base is untouched. */
	d = h_openf(DC_OPEN_READ_ONLY, "vhdx:%s", base);
	vt_check(d, orig, 0, 8192);
	dc_close(d);

	/* On disk: block states, the sector bitmap (LSB first), HasParent. */
	tx_img_open(&m, child);
	ck_assert_uint_eq(m.flags, 2);
	ck_assert_uint_eq(tx_bat(&m, 0) & 7, 7);
	ck_assert_uint_eq(tx_bat(&m, 1) & 7, 0);
	ck_assert_uint_eq(tx_bat(&m, 2) & 7, 6);
	ck_assert_uint_eq(tx_bat(&m, 3) & 7, 7);
	for (uint64_t s = 0; s < 64; s++)
		ck_assert_msg(tx_sb_bit(&m, s) == (s >= 10 && s < 21), "bit %llu",
			      (unsigned long long)s);
	ck_assert(tx_sb_bit(&m, 3 * 2048 + 2047));
	ck_assert(!tx_sb_bit(&m, 3 * 2048 + 2046));
	ck_assert(m.item_off[5] != 0);
	tx_img_close(&m);
	free(orig);
	free(model);
	free(child);
	free(base);
}
END_TEST

/* base <- c1 <- c2, 4096-byte sectors; memdiff over the chain. */
START_TEST(vhdx_diff_chain)
{
	char *base = h_tmppath(".vhdx"), *c1 = h_tmppath(".vhdx"),
	     *c2 = h_tmppath(".vhdx");
	uint8_t *model = calloc(1, 8 * MIB);
	dc_disk *d;
	char *desc;

	vt_create("vhdx", base, "create=8M;block=1M;sector=4096");
	d = h_openf(0, "vhdx:%s", base);
	vt_put(d, model, 0, 2048, 1);
	dc_close(d);
	vt_create("vhdx", c1, "parent=%s;block=2M", base);
	d = h_openf(0, "vhdx:%s", c1);
	vt_put(d, model, 100, 300, 2);
	vt_put(d, model, 1000, 24, 3);
	dc_close(d);
	vt_create("vhdx", c2, "parent=%s", c1);
	d = h_openf(0, "vhdx:%s", c2);
	ck_assert_uint_eq(dc_sector_size(d), 4096);
	vt_put(d, model, 150, 10, 4);
	vt_put(d, model, 2040, 8, 5);
	vt_check(d, model, 0, 2048);
	desc = vt_describe(d);
	tx_has_parent(desc, c1);
	tx_has_parent(desc, base);
	free(desc);
	dc_close(d);
	d = h_openf(0, "memdiff:vhdx:%s", c2);
	vt_check(d, model, 0, 2048);
	vt_write(d, 0, 4, 9);
	dc_close(d);
	d = h_openf(DC_OPEN_READ_ONLY, "%s", c2);
	vt_check(d, model, 0, 2048);
	dc_close(d);
	free(model);
	free(c2);
	free(c1);
	free(base);
}
END_TEST

/* Replace `from` by `to` (same length, UTF-16LE) in the child's parent locator. */
static void tx_patch_locator(const char *path, const char *from, const char *to)
{
	struct tx_img m;
	uint8_t loc[4096], f16[1024], t16[1024];
	size_t n = strlen(from), hits = 0;

	ck_assert_uint_eq(n, strlen(to));
	for (size_t i = 0; i < n; i++) {
		f16[2 * i] = (uint8_t)from[i];
		t16[2 * i] = (uint8_t)to[i];
		f16[2 * i + 1] = t16[2 * i + 1] = 0;
	}
	tx_img_open(&m, path);
	tx_pread(&m, loc, sizeof(loc), m.meta_off + m.item_off[5]);
	for (size_t i = 0; i + 2 * n <= sizeof(loc); i++)
		if (!memcmp(loc + i, f16, 2 * n)) {
			memcpy(loc + i, t16, 2 * n);
			hits++;
		}
	ck_assert_uint_gt(hits, 0);
	tx_pwrite(&m, loc, sizeof(loc), m.meta_off + m.item_off[5]);
	tx_img_close(&m);
}

/* Fail unless text (ASCII) is in the child's parent locator. */
static void tx_locator_has(const char *path, const char *text)
{
	tx_patch_locator(path, text, text);
}

/* The relative locators alone find a moved chain: a parent beside its child
 * (".\base.vhdx") and one a directory up ("..\child.vhdx"). */
START_TEST(vhdx_diff_relative)
{
	char *dir = h_tmpsubdir(), *dir2 = h_tmpsubdir();
	char *sub = h_fmt("%s/sub", dir), *moved = h_fmt("%s/moved", dir2);
	char *base = h_fmt("%s/base.vhdx", dir), *child = h_fmt("%s/child.vhdx", dir);
	char *c2 = h_fmt("%s/c2.vhdx", sub), *p;
	uint8_t *model = calloc(1, 2 * MIB);
	dc_disk *d;
	char *desc;

	ck_assert_int_eq(mkdir(sub, 0700), 0);
	vt_create("vhdx", base, "create=2M;block=1M");
	d = h_openf(0, "vhdx:%s", base);
	vt_put(d, model, 0, 64, 1);
	dc_close(d);
	vt_create("vhdx", child, "parent=%s", base);
	tx_locator_has(child, ".\\base.vhdx");
	d = h_openf(0, "vhdx:%s", child);
	vt_put(d, model, 32, 64, 2);
	dc_close(d);
	vt_create("vhdx", c2, "parent=%s", child);
	tx_locator_has(c2, "..\\child.vhdx");
	/* Moving the directory breaks every absolute path. c2's relative path
	 * climbs out of its directory: followed only when the spec opts in. */
	ck_assert_int_eq(rename(dir, moved), 0);
	p = h_fmt("%s/sub/c2.vhdx", moved);
	h_open_fails(DC_OPEN_READ_ONLY, -EPERM, "locator ../child.vhdx leaves", "vhdx:%s",
		     p);
	d = h_openf(DC_OPEN_READ_ONLY, "vhdx:%s;parents=any", p);
	vt_check(d, model, 0, 4096);
	desc = vt_describe(d);
	free(p);
	p = h_fmt("%s/child.vhdx", moved);
	tx_has_parent(desc, p);
	free(p);
	p = h_fmt("%s/base.vhdx", moved);
	tx_has_parent(desc, p);
	free(p);
	free(desc);
	dc_close(d);
	free(model);
	free(c2);
	free(child);
	free(base);
	free(moved);
	free(sub);
	free(dir2);
	free(dir);
}
END_TEST

static void tx_guid_text(const uint8_t *g, char out[39])
{
	snprintf(out, 39,
		 "{%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x}",
		 g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11],
		 g[12], g[13], g[14], g[15]);
}

START_TEST(vhdx_diff_bad_parent)
{
	char *dir = h_tmpsubdir();
	char *base = h_fmt("%s/aa.vhdx", dir), *child = h_fmt("%s/bb.vhdx", dir);
	char *moved = h_fmt("%s/moved", dir), *mchild = h_fmt("%s/bb.vhdx", moved);
	char old[39], self[39];
	struct tx_img m;
	dc_disk *d;

	vt_create("vhdx", base, "create=2M;block=1M");
	vt_create("vhdx", child, "parent=%s", base);
	dc_close(h_openf(DC_OPEN_READ_ONLY, "vhdx:%s", child));
	/* Found through the absolute path when the relative one breaks, when
	 * the spec lets it leave the child's directory. */
	ck_assert_int_eq(mkdir(moved, 0700), 0);
	ck_assert_int_eq(rename(child, mchild), 0);
	h_open_fails(DC_OPEN_READ_ONLY, -EPERM, "leaves the image's directory", "vhdx:%s",
		     mchild);
	dc_close(h_openf(DC_OPEN_READ_ONLY, "vhdx:%s;parents=any", mchild));
	ck_assert_int_eq(rename(mchild, child), 0);
	/* Writing the parent changes its DataWriteGuid: the link breaks. */
	tx_img_open(&m, base);
	tx_guid_text(m.hdr + 32, old);
	tx_img_close(&m);
	d = h_openf(0, "vhdx:%s", base);
	vt_write(d, 0, 1, 1);
	dc_close(d);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "modified or replaced", "vhdx:%s", child);
	/* Put the old DataWriteGuid back (a header edit): it opens again. */
	tx_img_open(&m, base);
	{
		uint8_t h[4096];
		char now[39];

		memcpy(h, m.hdr, sizeof(h));
		tx_guid_text(h + 32, now);
		tx_img_close(&m);
		tx_patch_locator(child, old, now);
	}
	dc_close(h_openf(DC_OPEN_READ_ONLY, "vhdx:%s", child));
	/* A parent that is gone. */
	ck_assert_int_eq(rmdir(moved), 0);
	ck_assert_int_eq(rename(base, moved), 0);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "not found", "vhdx:%s", child);
	ck_assert_int_eq(rename(moved, base), 0);
	/* A child that is its own parent. */
	tx_img_open(&m, child);
	tx_guid_text(m.hdr + 32, self);
	tx_img_close(&m);
	tx_img_open(&m, base);
	tx_guid_text(m.hdr + 32, old);
	tx_img_close(&m);
	tx_patch_locator(child, "aa.vhdx", "bb.vhdx");
	tx_patch_locator(child, old, self);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "loops", "vhdx:%s", child);
	free(mchild);
	free(moved);
	free(child);
	free(base);
	free(dir);
}
END_TEST

/* --- The layer contract, on the plugin directly ----------------------------------- */

START_TEST(vhdx_layer_marks)
{
	char *base = h_tmppath(".vhdx"), *child = h_tmppath(".vhdx");
	static uint8_t buf[4096 * 512];
	uint64_t bits[4096 / 64];
	struct h_direct t;
	char lower[4096];

	vt_create("vhdx", base, "create=3M;block=1M");
	vt_create("vhdx", child, "parent=%s", base);
	vt_direct_open(&t, "vhdx", child, false);
	ck_assert_int_eq(t.p->lower_spec(t.inst, lower, sizeof(lower)), 1);
	ck_assert_msg(!strncmp(lower, "vhdx:/", 6), "%s", lower);
	ck_assert_msg(strstr(lower, base), "%s", lower);
	/* Nothing held yet. */
	memset(bits, 0, sizeof(bits));
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_READ, 0, 0, buf, 4096 * 512, bits), 0);
	ck_assert_uint_eq(vt_marked(bits, 0, 4096), 0);
	/* Five written sectors are the only ones held. */
	h_fill(buf, 5 * 512, 1);
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_WRITE, 0, 30, buf, 5 * 512, NULL), 0);
	memset(bits, 0, sizeof(bits));
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_READ, 0, 0, buf, 64 * 512, bits), 0);
	ck_assert_uint_eq(vt_marked(bits, 0, 64), 5);
	ck_assert_uint_eq(vt_marked(bits, 30, 35), 5);
	ck_assert_int_lt(h_check(buf + 30 * 512, 5 * 512, 1), 0);
	/* Unmap of a whole block: zero here, unless the parent reads zero. */
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_UNMAP, 0, 2048, NULL, 2048, NULL), 0);
	memset(bits, 0, sizeof(bits));
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_READ, 0, 2048, buf, 2048 * 512, bits), 0);
	ck_assert_uint_eq(vt_marked(bits, 0, 2048), 2048);
	ck_assert_int_lt(h_check_zero(buf, 2048 * 512), 0);
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_UNMAP, DC_IO_NEXT_IS_ZERO, 2048, NULL,
				      2048, NULL),
			 0);
	memset(bits, 0, sizeof(bits));
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_READ, 0, 2048, buf, 2048 * 512, bits), 0);
	ck_assert_uint_eq(vt_marked(bits, 0, 2048), 0);
	/* Part of an absent block: allocated as zeroes over the parent. */
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_UNMAP, 0, 4096 + 7, NULL, 9, NULL), 0);
	memset(bits, 0, sizeof(bits));
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_READ, 0, 4096, buf, 64 * 512, bits), 0);
	ck_assert_uint_eq(vt_marked(bits, 0, 64), 9);
	ck_assert_uint_eq(vt_marked(bits, 7, 16), 9);
	/* Range checks of the layer itself. */
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_READ, 0, 6144, buf, 512, bits),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_WRITE, 0, 6143, buf, 1024, NULL),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_WRITE, 0, UINT64_C(1) << 55, buf, 512,
				      NULL),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_UNMAP, 0, 6143, NULL, 2, NULL),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_WRITE, 0, 6143, buf, 512, NULL), 0);
	/* attach: the parent that lower_spec() checked, by its disk id. */
	{
		struct dc_info lower_info = { 0 }, out;

		lower_info.sector_size = 512;
		lower_info.sector_count = 6144;
		ck_assert_int_lt(t.p->attach(t.inst, NULL, &out), 0);
		ck_assert_int_lt(t.p->attach(t.inst, &lower_info, &out), 0);
		lower_info.flags = DC_INFO_HAS_DISK_ID;
		ck_assert_int_lt(t.p->attach(t.inst, &lower_info, &out), 0);
		memcpy(lower_info.disk_id, t.info.disk_id, 16);
		ck_assert_int_eq(t.p->attach(t.inst, &lower_info, &out), 0);
		lower_info.sector_size = 4096;
		ck_assert_int_lt(t.p->attach(t.inst, &lower_info, &out), 0);
	}
	h_direct_close(&t);

	/* A dynamic layer marks everything, holding data or not. */
	vt_direct_open(&t, "vhdx", base, true);
	ck_assert_int_eq(t.p->lower_spec(t.inst, lower, sizeof(lower)), 0);
	memset(bits, 0, sizeof(bits));
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_READ, 0, 0, buf, 4096 * 512, bits), 0);
	ck_assert_uint_eq(vt_marked(bits, 0, 4096), 4096);
	ck_assert_int_eq(vt_direct_io(&t, DC_OP_WRITE, 0, 0, buf, 512, NULL),
			 DC_E_READ_ONLY);
	h_direct_close(&t);
	free(child);
	free(base);
}
END_TEST

void vhdx_add_diff(TCase *tc)
{
	tcase_add_test(tc, vhdx_diff_basic);
	tcase_add_test(tc, vhdx_diff_chain);
	tcase_add_test(tc, vhdx_diff_relative);
	tcase_add_test(tc, vhdx_diff_bad_parent);
	tcase_add_test(tc, vhdx_layer_marks);
}
