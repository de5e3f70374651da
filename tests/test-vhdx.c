/* SPDX-License-Identifier: MIT */
/* The vhdx plugin: creation (dynamic, fixed, 512 and 4096-byte sectors),
 * allocation, differencing chains as layers, unmap to block states, the log
 * (replay in the file and in memory), and bad input. Image structures are read,
 * checked and broken here by code independent of the plugin's ([MS-VHDX]). */
#include "conformance.h"
#include "harness.h"
#include "vhdtest.h"

#include <diskcore/plugin.h>

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define KIB 1024
#define MIB (1024 * 1024)

/* --- Helpers ------------------------------------------------------------------ */

static uint64_t tx_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void tx_has_parent(const char *text, const char *path)
{
	char *needle = h_fmt("parent=%s", path);

	vt_has(text, needle);
	free(needle);
}

/* --- An independent reader of the on-disk structures --------------------------- */

/* Bitwise CRC-32C, unlike the plugin's table. */
static uint32_t tx_crc(const uint8_t *p, size_t n, size_t skip)
{
	uint32_t c = ~0u;

	for (size_t i = 0; i < n; i++) {
		c ^= i >= skip && i < skip + 4 ? 0 : p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
	}
	return ~c;
}

static uint32_t tx_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t tx_le64(const uint8_t *p)
{
	return tx_le32(p) | (uint64_t)tx_le32(p + 4) << 32;
}

static void tx_set32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void tx_set64(uint8_t *p, uint64_t v)
{
	tx_set32(p, (uint32_t)v);
	tx_set32(p + 4, (uint32_t)(v >> 32));
}

struct tx_img {
	int fd;
	uint64_t size;
	int slot; /* current header */
	uint8_t hdr[4096];
	uint64_t seq, log_off, log_len;
	uint64_t bat_off, bat_len, meta_off, meta_len;
	uint32_t block, lss, pss, flags, cr;
	uint64_t disk;
	uint8_t page83[16];
	uint32_t item_off[8]; /* metadata item offsets by tx_items[] index */
};

static const uint8_t tx_items[6][4] = {
	{ 0x37, 0x67, 0xa1, 0xca }, /* file parameters */
	{ 0x24, 0x42, 0xa5, 0x2f }, /* virtual disk size */
	{ 0xab, 0x12, 0xca, 0xbe }, /* page 83 */
	{ 0x1d, 0xbf, 0x41, 0x81 }, /* logical sector size */
	{ 0xc7, 0x48, 0xa3, 0xcd }, /* physical sector size */
	{ 0x2d, 0x5f, 0xd3, 0xa8 }, /* parent locator */
};

static void tx_pread(struct tx_img *m, void *buf, size_t len, uint64_t off)
{
	ck_assert_int_eq(pread(m->fd, buf, len, (off_t)off), (ssize_t)len);
}

static void tx_pwrite(struct tx_img *m, const void *buf, size_t len, uint64_t off)
{
	ck_assert_int_eq(pwrite(m->fd, buf, len, (off_t)off), (ssize_t)len);
}

static void tx_img_open(struct tx_img *m, const char *path)
{
	uint8_t h[2][4096], rt[65536], tbl[65536], item[16];
	bool ok[2];
	struct stat st;

	memset(m, 0, sizeof(*m));
	m->fd = open(path, O_RDWR);
	ck_assert(m->fd >= 0 && fstat(m->fd, &st) == 0);
	m->size = (uint64_t)st.st_size;
	for (int i = 0; i < 2; i++) {
		tx_pread(m, h[i], 4096, (uint64_t)(64 + 64 * i) * KIB);
		ok[i] = !memcmp(h[i], "head", 4) &&
			tx_le32(h[i] + 4) == tx_crc(h[i], 4096, 4);
	}
	ck_assert(ok[0] || ok[1]);
	m->slot = !ok[0] || (ok[1] && tx_le64(h[1] + 8) > tx_le64(h[0] + 8));
	memcpy(m->hdr, h[m->slot], 4096);
	m->seq = tx_le64(m->hdr + 8);
	m->log_len = tx_le32(m->hdr + 68);
	m->log_off = tx_le64(m->hdr + 72);
	tx_pread(m, rt, sizeof(rt), 192 * KIB);
	ck_assert(!memcmp(rt, "regi", 4) && tx_le32(rt + 4) == tx_crc(rt, sizeof(rt), 4));
	for (uint32_t i = 0; i < tx_le32(rt + 8); i++) {
		const uint8_t *e = rt + 16 + 32 * i;

		if (e[0] == 0x66 && e[1] == 0x77) {
			m->bat_off = tx_le64(e + 16);
			m->bat_len = tx_le32(e + 24);
		} else if (e[0] == 0x06 && e[1] == 0xa2) {
			m->meta_off = tx_le64(e + 16);
			m->meta_len = tx_le32(e + 24);
		}
	}
	ck_assert(m->bat_off && m->meta_off);
	tx_pread(m, tbl, sizeof(tbl), m->meta_off);
	ck_assert(!memcmp(tbl, "metadata", 8));
	for (uint32_t i = 0; i < (uint32_t)(tbl[10] | tbl[11] << 8); i++)
		for (int k = 0; k < 6; k++)
			if (!memcmp(tbl + 32 + 32 * i, tx_items[k], 4))
				m->item_off[k] = tx_le32(tbl + 32 + 32 * i + 16);
	tx_pread(m, item, 8, m->meta_off + m->item_off[0]);
	m->block = tx_le32(item);
	m->flags = tx_le32(item + 4);
	tx_pread(m, item, 8, m->meta_off + m->item_off[1]);
	m->disk = tx_le64(item);
	tx_pread(m, m->page83, 16, m->meta_off + m->item_off[2]);
	tx_pread(m, item, 4, m->meta_off + m->item_off[3]);
	m->lss = tx_le32(item);
	tx_pread(m, item, 4, m->meta_off + m->item_off[4]);
	m->pss = tx_le32(item);
	m->cr = (uint32_t)(((uint64_t)1 << 23) * m->lss / m->block);
}

static uint64_t tx_bat(struct tx_img *m, uint64_t i)
{
	uint8_t e[8];

	tx_pread(m, e, 8, m->bat_off + 8 * i);
	return tx_le64(e);
}

static void tx_set_bat(struct tx_img *m, uint64_t i, uint64_t v)
{
	uint8_t e[8];

	tx_set64(e, v);
	tx_pwrite(m, e, 8, m->bat_off + 8 * i);
}

static uint64_t tx_pidx(const struct tx_img *m, uint64_t b)
{
	return b + b / m->cr;
}

/* Rewrite header `slot` from buf with a fresh checksum. */
static void tx_put_hdr(struct tx_img *m, int slot, uint8_t *buf)
{
	tx_set32(buf + 4, tx_crc(buf, 4096, 4));
	tx_pwrite(m, buf, 4096, (uint64_t)(64 + 64 * slot) * KIB);
}

static bool tx_guid_zero(const uint8_t *g)
{
	for (int i = 0; i < 16; i++)
		if (g[i])
			return false;
	return true;
}

static void tx_img_close(struct tx_img *m)
{
	close(m->fd);
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

/* --- The log ------------------------------------------------------------------------- */

/* Write the log entry `seq` at the start of the log: one data descriptor per
 * 4 KiB sector in secs/offs, and the header naming guid, independently of the
 * plugin. */
static void tx_log_entry(struct tx_img *m, const uint8_t guid[16], uint64_t seq,
			 unsigned n, uint8_t (*secs)[4096], const uint64_t *offs,
			 uint64_t flushed, uint64_t last)
{
	size_t len = (1 + n) * 4096;
	uint8_t *e = calloc(1, len);
	uint8_t h[4096];

	memcpy(e, "loge", 4);
	tx_set32(e + 8, (uint32_t)len);
	tx_set32(e + 12, 0);
	tx_set64(e + 16, seq);
	tx_set32(e + 24, n);
	memcpy(e + 32, guid, 16);
	tx_set64(e + 48, flushed);
	tx_set64(e + 56, last);
	for (unsigned i = 0; i < n; i++) {
		uint8_t *d = e + 64 + 32 * i, *s = e + 4096 * (1 + i);

		memcpy(d, "desc", 4);
		memcpy(d + 4, secs[i] + 4092, 4);
		memcpy(d + 8, secs[i], 8);
		tx_set64(d + 16, offs[i]);
		tx_set64(d + 24, seq);
		memcpy(s, "data", 4);
		tx_set32(s + 4, (uint32_t)(seq >> 32));
		memcpy(s + 8, secs[i] + 8, 4084);
		tx_set32(s + 4092, (uint32_t)seq);
	}
	tx_set32(e + 4, tx_crc(e, len, 4));
	tx_pwrite(m, e, len, m->log_off);
	free(e);
	/* The header names the log: the current one with the next sequence. */
	memcpy(h, m->hdr, sizeof(h));
	tx_set64(h + 8, m->seq + 1);
	memcpy(h + 48, guid, 16);
	tx_put_hdr(m, !m->slot, h);
}

/* An image with block 0 present (seed 1) and a crafted log that moves block 0
 * to ZERO and block 1 to fresh space past the old end holding seed 2. */
static uint64_t tx_dirty_image(const char *path, uint64_t *old_end)
{
	static const uint8_t guid[16] = { 1, 2,	 3,  4,	 5,  6,	 7, 8,
					  9, 10, 11, 12, 13, 14, 15 };
	uint8_t secs[1][4096], *blk = malloc(MIB);
	struct tx_img m;
	uint64_t off;
	dc_disk *d;

	vt_create("vhdx", path, "create=4M;block=1M;overwrite");
	d = h_openf(0, "vhdx:%s", path);
	vt_write(d, 0, 2048, 1);
	dc_close(d);
	tx_img_open(&m, path);
	*old_end = m.size;
	off = m.size; /* data first, as a writer would */
	h_fill(blk, MIB, 2);
	tx_pwrite(&m, blk, MIB, off);
	tx_pread(&m, secs[0], 4096, m.bat_off);
	tx_set64(secs[0], 2);
	tx_set64(secs[0] + 8, off | 6);
	tx_log_entry(&m, guid, 5, 1, secs, &m.bat_off, off + MIB, off + MIB);
	tx_img_close(&m);
	free(blk);
	return off;
}

START_TEST(vhdx_log_replay)
{
	char *path = h_tmppath(".vhdx");
	uint8_t *buf = malloc(2 * MIB);
	uint64_t old_end, off;
	struct tx_img m;
	dc_disk *d;
	char *desc;

	off = tx_dirty_image(path, &old_end);
	/* Read-only: replayed in memory, the file stays as it is. */
	d = h_openf(DC_OPEN_READ_ONLY, "vhdx:%s", path);
	ck_assert_int_eq(dc_read(d, 0, buf, 2 * MIB), 0);
	ck_assert_int_lt(h_check_zero(buf, MIB), 0);
	ck_assert_int_lt(h_check(buf + MIB, MIB, 2), 0);
	desc = vt_describe(d);
	vt_has(desc, "log=replayed in memory");
	free(desc);
	dc_close(d);
	tx_img_open(&m, path);
	ck_assert(!tx_guid_zero(m.hdr + 48));
	ck_assert_uint_eq(tx_bat(&m, 0) & 7, 6);
	tx_img_close(&m);
	/* Writable: replayed into the file, and the log is empty afterwards. */
	d = h_openf(0, "vhdx:%s", path);
	desc = vt_describe(d);
	vt_has(desc, "log=replayed at open");
	free(desc);
	ck_assert_int_eq(dc_read(d, 0, buf, 2 * MIB), 0);
	ck_assert_int_lt(h_check_zero(buf, MIB), 0);
	ck_assert_int_lt(h_check(buf + MIB, MIB, 2), 0);
	dc_close(d);
	tx_img_open(&m, path);
	ck_assert(tx_guid_zero(m.hdr + 48));
	ck_assert_uint_eq(tx_bat(&m, 0), 2);
	ck_assert_uint_eq(tx_bat(&m, 1), off | 6);
	tx_img_close(&m);

	/* A truncated file (shorter than the log says was flushed) is refused. */
	off = tx_dirty_image(path, &old_end);
	ck_assert_int_eq(truncate(path, (off_t)old_end), 0);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "truncated", "vhdx:%s", path);

	/* A LogGuid with no valid entry: nothing was applied, nothing to replay. */
	off = tx_dirty_image(path, &old_end);
	tx_img_open(&m, path);
	{
		uint8_t junk[4096];

		memset(junk, 0x5a, sizeof(junk));
		tx_pwrite(&m, junk, sizeof(junk), m.log_off);
	}
	tx_img_close(&m);
	d = h_openf(DC_OPEN_READ_ONLY, "vhdx:%s", path);
	ck_assert_int_eq(dc_read(d, 0, buf, MIB), 0);
	ck_assert_int_lt(h_check(buf, MIB, 1), 0);
	dc_close(d);
	dc_close(h_openf(0, "vhdx:%s", path));
	tx_img_open(&m, path);
	ck_assert(tx_guid_zero(m.hdr + 48));
	tx_img_close(&m);
	free(buf);
	free(path);
}
END_TEST

/* A writer that dies after a flush: what was flushed is there, the log is
 * replayed, and what the plugin wrote to the log is valid. */
START_TEST(vhdx_crash_after_flush)
{
	char *path = h_tmppath(".vhdx");
	uint8_t *model = calloc(1, 8 * MIB);
	struct tx_img m;
	int status;
	pid_t pid;
	dc_disk *d;

	/* The child opens the first disk: the core's threads do not survive fork. */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dc_disk *w = NULL;
		uint8_t b[64 * 512];

		if (dc_open(h_fmt("vhdx:%s;create=8M;block=1M", path), 0, &w))
			_exit(2);
		for (uint64_t i = 0; i < 8; i++) {
			h_fill(b, sizeof(b), i + 1);
			if (dc_write(w, i * 2048 + i, b, sizeof(b), 0))
				_exit(3);
		}
		if (dc_flush(w))
			_exit(4);
		h_fill(b, sizeof(b), 100);
		dc_write(w, 10, b, sizeof(b), 0); /* not flushed: either content */
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	for (uint64_t i = 0; i < 8; i++)
		h_fill(model + (i * 2048 + i) * 512, 64 * 512, i + 1);
	tx_img_open(&m, path);
	ck_assert(!tx_guid_zero(m.hdr + 48)); /* the log is live */
	tx_img_close(&m);
	d = h_openf(DC_OPEN_READ_ONLY, "vhdx:%s", path);
	vt_check(d, model, 74, 16384 - 74);
	dc_close(d);
	d = h_openf(0, "vhdx:%s", path);
	vt_check(d, model, 74, 16384 - 74);
	dc_close(d);
	tx_img_open(&m, path);
	ck_assert(tx_guid_zero(m.hdr + 48));
	tx_img_close(&m);
	free(model);
	free(path);
}
END_TEST

/* --- Bad input ----------------------------------------------------------------------- */

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
	TCase *bad = tcase_create("vhdx-bad-input");
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
	tcase_add_test(tc, vhdx_diff_basic);
	tcase_add_test(tc, vhdx_diff_chain);
	tcase_add_test(tc, vhdx_diff_relative);
	tcase_add_test(tc, vhdx_diff_bad_parent);
	tcase_add_test(tc, vhdx_layer_marks);
	tcase_add_test(tc, vhdx_unmap);
	tcase_add_test(tc, vhdx_log_replay);
	tcase_add_test(tc, vhdx_crash_after_flush);
	suite_add_tcase(s, tc);
	tcase_add_test(bad, vhdx_bad_headers);
	tcase_add_test(bad, vhdx_bad_metadata);
	tcase_add_test(bad, vhdx_bad_bat);
	suite_add_tcase(s, bad);

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
