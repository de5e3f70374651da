/* SPDX-License-Identifier: MIT */
/* The vhd plugin: dynamic and differencing VHD read-write, fixed VHD through the
 * same plugin, parent chains as layers, and bad input. Image structures are read
 * and broken here by code independent of the plugin's. */
#include "conformance.h"
#include "harness.h"
#include "vhdtest.h"

#include <diskcore/plugin.h>

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KIB 1024
#define MIB (1024 * 1024)

/* --- Helpers ------------------------------------------------------------------ */

static void tv_model_write(uint8_t *model, uint64_t sector, uint64_t count, uint64_t seed)
{
	h_fill(model + sector * 512, (size_t)count * 512, seed);
}

/* An image's layout as read straight from the file. */
struct tv_img {
	int fd;
	uint64_t size;
	uint8_t foot[512], copy[512], hdr[1024];
	uint64_t hdr_off, bat_off;
	uint32_t entries, block;
};

static void tv_img_open(struct tv_img *m, const char *path)
{
	struct stat st;

	m->fd = open(path, O_RDWR);
	ck_assert(m->fd >= 0 && fstat(m->fd, &st) == 0);
	m->size = (uint64_t)st.st_size;
	ck_assert_int_eq(pread(m->fd, m->foot, 512, (off_t)m->size - 512), 512);
	ck_assert_int_eq(pread(m->fd, m->copy, 512, 0), 512);
	m->hdr_off = h_get_be64(m->foot + 16);
	ck_assert_int_eq(pread(m->fd, m->hdr, 1024, (off_t)m->hdr_off), 1024);
	m->bat_off = h_get_be64(m->hdr + 16);
	m->entries = h_get_be32(m->hdr + 28);
	m->block = h_get_be32(m->hdr + 32);
}

static uint32_t tv_bat(struct tv_img *m, uint32_t b)
{
	uint8_t e[4];

	ck_assert_int_eq(pread(m->fd, e, 4, (off_t)(m->bat_off + 4 * b)), 4);
	return h_get_be32(e);
}

static void tv_set_bat(struct tv_img *m, uint32_t b, uint32_t v)
{
	uint8_t e[4];

	h_put_be32(e, v);
	ck_assert_int_eq(pwrite(m->fd, e, 4, (off_t)(m->bat_off + 4 * b)), 4);
}

/* Rewrite the header with a new checksum after fields were changed. */
static void tv_put_hdr(struct tv_img *m)
{
	h_put_be32(m->hdr + 36, h_vhd_checksum(m->hdr, 1024, 36));
	ck_assert_int_eq(pwrite(m->fd, m->hdr, 1024, (off_t)m->hdr_off), 1024);
}

/* Rewrite both footers with a new checksum. */
static void tv_put_footers(struct tv_img *m, uint8_t *f)
{
	h_put_be32(f + 64, h_vhd_checksum(f, 512, 64));
	ck_assert_int_eq(pwrite(m->fd, f, 512, 0), 512);
	ck_assert_int_eq(pwrite(m->fd, f, 512, (off_t)m->size - 512), 512);
}

static void tv_img_close(struct tv_img *m)
{
	close(m->fd);
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

/* --- Bad input ------------------------------------------------------------------ */

/* A dynamic image with blocks 0 and 2 allocated (64 KiB blocks). */
static char *tv_bad_base(void)
{
	char *path = h_tmppath(".vhd");
	dc_disk *d = h_openf(0, "vhd:%s;create=1M;block=64K", path);

	vt_write(d, 0, 8, 1);
	vt_write(d, 256, 8, 2);
	dc_close(d);
	return path;
}

static void tv_expect_bad(const char *path, const char *needle)
{
	h_open_fails(DC_OPEN_READ_ONLY, 0, needle, "vhd:%s", path);
	h_open_fails(0, 0, needle, "vhd:%s", path);
}

/* A fresh tv_bad_base() opened for damage ... */
static char *tv_bad_begin(struct tv_img *m)
{
	char *p = tv_bad_base();

	tv_img_open(m, p);
	return p;
}

/* ... which makes the open fail with a message containing needle. */
static void tv_bad_end(struct tv_img *m, char *p, const char *needle)
{
	tv_img_close(m);
	tv_expect_bad(p, needle);
	free(p);
}

START_TEST(vhd_bad_headers)
{
	struct tv_img m;
	char *p;
	uint8_t f[512];

	p = tv_bad_begin(&m);
	m.hdr[100] ^= 1; /* checksum no longer matches */
	ck_assert_int_eq(pwrite(m.fd, m.hdr, 1024, (off_t)m.hdr_off), 1024);
	tv_bad_end(&m, p, "checksum");

	p = tv_bad_begin(&m);
	memcpy(m.hdr, "cxsparsE", 8);
	tv_put_hdr(&m);
	tv_bad_end(&m, p, "cxsparse");

	p = tv_bad_begin(&m);
	h_put_be32(m.hdr + 32, 3 * 512);
	tv_put_hdr(&m);
	tv_bad_end(&m, p, "block size");

	p = tv_bad_begin(&m);
	h_put_be32(m.hdr + 28, 3);
	tv_put_hdr(&m);
	tv_bad_end(&m, p, "needs");

	p = tv_bad_begin(&m);
	h_put_be64(m.hdr + 16, m.size + 4096);
	tv_put_hdr(&m);
	tv_bad_end(&m, p, "outside the image");

	p = tv_bad_begin(&m);
	h_put_be64(m.hdr + 16, 0); /* the BAT on the footer copy */
	tv_put_hdr(&m);
	tv_bad_end(&m, p, "outside the image");

	p = tv_bad_begin(&m);
	memcpy(f, m.foot, 512);
	h_put_be64(f + 16, m.size); /* header past the end */
	tv_put_footers(&m, f);
	tv_bad_end(&m, p, "outside the image");

	p = tv_bad_begin(&m);
	memcpy(f, m.foot, 512);
	h_put_be32(f + 60, 5);
	tv_put_footers(&m, f);
	tv_bad_end(&m, p, "disk type");

	p = tv_bad_begin(&m);
	memcpy(f, m.foot, 512);
	h_put_be64(f + 48, MIB - 100);
	tv_put_footers(&m, f);
	tv_bad_end(&m, p, "multiple of 512");

	/* Both footers broken. */
	p = tv_bad_begin(&m);
	memcpy(f, m.foot, 512);
	f[0] = 'C';
	ck_assert_int_eq(pwrite(m.fd, f, 512, 0), 512);
	ck_assert_int_eq(pwrite(m.fd, f, 512, (off_t)m.size - 512), 512);
	tv_bad_end(&m, p, "not a VHD");

	/* Valid footers that disagree. */
	p = tv_bad_begin(&m);
	memcpy(f, m.foot, 512);
	h_put_be64(f + 48, 2 * MIB);
	h_put_be32(f + 64, h_vhd_checksum(f, 512, 64));
	ck_assert_int_eq(pwrite(m.fd, f, 512, 0), 512);
	tv_bad_end(&m, p, "disagree");

	/* Too small to be anything. */
	p = h_tmpfile(100, ".vhd");
	tv_expect_bad(p, "too small");
	free(p);
}
END_TEST

START_TEST(vhd_bad_bat)
{
	struct tv_img m;
	char *p;

	p = tv_bad_begin(&m);
	tv_set_bat(&m, 5, (uint32_t)(m.size / 512)); /* past the end */
	tv_bad_end(&m, p, "outside the image");

	p = tv_bad_begin(&m);
	tv_set_bat(&m, 5, 1); /* on the dynamic header */
	tv_bad_end(&m, p, "dynamic header");

	p = tv_bad_begin(&m);
	tv_set_bat(&m, 5, (uint32_t)(m.bat_off / 512)); /* on the BAT */
	tv_bad_end(&m, p, "BAT");

	p = tv_bad_begin(&m);
	tv_set_bat(&m, 5, tv_bat(&m, 0) + 1); /* inside block 0 */
	tv_bad_end(&m, p, "overlap");

	p = tv_bad_begin(&m);
	tv_set_bat(&m, 5, 0xfffffffe);
	tv_bad_end(&m, p, "outside the image");

	/* Truncated inside the last block: footer gone, copy at 0 valid, the
	 * block now runs past the end. */
	p = tv_bad_base();
	{
		struct stat st;

		ck_assert_int_eq(stat(p, &st), 0);
		ck_assert_int_eq(truncate(p, st.st_size - 4096), 0);
	}
	tv_expect_bad(p, "outside the image");
	free(p);
}
END_TEST

/* A damaged end footer: the copy at offset 0 is used, and a writable open
 * puts the footer back; a damaged copy is put back too. */
START_TEST(vhd_footer_repair)
{
	char *p = tv_bad_base(), *spec = h_fmt("vhd:%s", p);
	struct tv_img m;
	uint8_t f[512], buf[4096];
	dc_disk *d;

	tv_img_open(&m, p);
	memcpy(f, m.foot, 512);
	f[0] ^= 0xff;
	ck_assert_int_eq(pwrite(m.fd, f, 512, (off_t)m.size - 512), 512);
	tv_img_close(&m);
	d = h_open(spec, DC_OPEN_READ_ONLY);
	ck_assert_int_eq(dc_read(d, 0, buf, sizeof(buf)), 0);
	ck_assert_int_lt(h_check(buf, sizeof(buf), 1), 0);
	dc_close(d);
	d = h_open(spec, 0);
	vt_write(d, 1000, 8, 3); /* allocates: the footer moves again */
	dc_close(d);
	tv_img_open(&m, p);
	ck_assert_int_eq(memcmp(m.foot, m.copy, 512), 0);
	ck_assert_int_eq(memcmp(m.foot, "conectix", 8), 0);
	/* Now the copy. */
	f[0] = 'X';
	ck_assert_int_eq(pwrite(m.fd, f, 512, 0), 512);
	tv_img_close(&m);
	dc_close(h_open(spec, 0));
	tv_img_open(&m, p);
	ck_assert_int_eq(memcmp(m.foot, m.copy, 512), 0);
	tv_img_close(&m);
	d = h_open(spec, 0);
	ck_assert_int_eq(dc_read(d, 1000, buf, sizeof(buf)), 0);
	ck_assert_int_lt(h_check(buf, sizeof(buf), 3), 0);
	dc_close(d);
	free(spec);
	free(p);
}
END_TEST

/* Differencing metadata: locators out of the file, too long, on the BAT. */
START_TEST(vhd_bad_locators)
{
	char *base = h_tmppath(".vhd");
	struct tv_img m;

	vt_create("vhd", base, "create=1M");
	for (int k = 0; k < 3; k++) {
		char *child = h_tmppath(".vhd");
		uint8_t *e;

		vt_create("vhd", child, "parent=%s", base);
		tv_img_open(&m, child);
		e = m.hdr + 576; /* locator 0 */
		ck_assert_uint_ne(h_get_be32(e), 0);
		if (k == 0)
			h_put_be64(e + 16, m.size);
		else if (k == 1)
			h_put_be32(e + 8, 1u << 30);
		else
			h_put_be64(e + 16, m.bat_off);
		tv_put_hdr(&m);
		tv_img_close(&m);
		tv_expect_bad(child, k == 0 ? "outside the image" :
				     k == 1 ? "bytes long" :
					      "overlaps the BAT");
		free(child);
	}
	free(base);
}
END_TEST

/* Random damage to the metadata never crashes the plugin and never makes it
 * write outside the image: opens fail cleanly or reads work. */
START_TEST(vhd_fuzz_metadata)
{
	char *good = tv_bad_base(), *p = h_tmppath(".vhd");
	uint64_t rng = 0x9e3779b97f4a7c15ull;
	struct stat st;
	uint8_t *img, *buf = h_alloc(64 * KIB);
	int fd;

	ck_assert_int_eq(stat(good, &st), 0);
	img = malloc((size_t)st.st_size);
	fd = open(good, O_RDONLY);
	ck_assert_int_eq(pread(fd, img, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	for (int iter = 0; iter < 150; iter++) {
		char *spec = h_fmt("vhd:%s", p);
		dc_disk *d = NULL;
		uint64_t nflips;

		fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
		ck_assert_int_eq(pwrite(fd, img, (size_t)st.st_size, 0), st.st_size);
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		nflips = 1 + (rng >> 60);
		for (uint64_t k = 0; k < nflips; k++) {
			uint64_t off;
			uint8_t v;

			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			/* Header, BAT and both footers; re-checksum half the time
			 * so that the deeper checks are reached. */
			off = (rng >> 33) % 3072;
			if (rng & 1)
				off = (uint64_t)st.st_size - 512 + (rng >> 40) % 512;
			v = (uint8_t)(rng >> 20);
			ck_assert_int_eq(pwrite(fd, &v, 1, (off_t)off), 1);
		}
		if (rng & 2) {
			uint8_t f[512], h[1024];

			ck_assert_int_eq(pread(fd, f, 512, st.st_size - 512), 512);
			h_put_be32(f + 64, h_vhd_checksum(f, 512, 64));
			ck_assert_int_eq(pwrite(fd, f, 512, st.st_size - 512), 512);
			ck_assert_int_eq(pread(fd, h, 1024, 512), 1024);
			h_put_be32(h + 36, h_vhd_checksum(h, 1024, 36));
			ck_assert_int_eq(pwrite(fd, h, 1024, 512), 1024);
		}
		close(fd);
		if (dc_open(spec, 0, &d) == 0) {
			uint64_t n = dc_sector_count(d);

			for (uint64_t s = 0; s < n && s < 4096; s += 128) {
				uint64_t c = n - s < 128 ? n - s : 128;

				dc_read(d, s, buf, c * 512);
				if (s % 1024 == 0)
					dc_write(d, s, buf, c * 512, 0);
			}
			dc_close(d);
			/* Whatever was allocated, the image still opens. */
			d = NULL;
			ck_assert_msg(
				dc_open(spec, DC_OPEN_READ_ONLY, &d) == 0,
				"iteration %d: an image that opened and was written "
				"no longer opens: %s",
				iter, dc_last_error());
			dc_close(d);
		}
		free(spec);
	}
	free(img);
	free(buf);
	free(p);
	free(good);
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
	TCase *bad = tcase_create("vhd-bad-input");
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
	tcase_add_test(tc, vhd_diff_basic);
	tcase_add_test(tc, vhd_diff_chain);
	tcase_add_test(tc, vhd_diff_locators);
	tcase_add_test(tc, vhd_diff_bad_parent);
	tcase_add_test(tc, vhd_diff_parent_untouched);
	tcase_add_test(tc, vhd_layer_marks);
	suite_add_tcase(s, tc);
	tcase_add_test(bad, vhd_bad_headers);
	tcase_add_test(bad, vhd_bad_bat);
	tcase_add_test(bad, vhd_footer_repair);
	tcase_add_test(bad, vhd_bad_locators);
	tcase_add_test(bad, vhd_fuzz_metadata);
	suite_add_tcase(s, bad);

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
