/* SPDX-License-Identifier: MIT */
/* vhdfmt: every on-disk layout against its struct, the VHD footer and dynamic
 * header and the VHDX header at their specified byte offsets, checksums and
 * the checks in their order, CHS geometry, and the file helpers (full-length
 * I/O, zeroing, GUIDs, the lock, the table of shared opens, the file
 * engine's own description and results), and the plugins' open() steps. */
#include "vhdfmt/aio.h"
#include "vhdfmt/open.h"
#include "vhdfmt/share.h"
#include "vhdfmt/vhd_format.h"
#include "vhdfmt/vhdx_format.h"

#include "check-run.h"
#include "crc32c/crc32c.h"
#include "ioengine/ioengine.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

START_TEST(layouts)
{
	const struct {
		const char *layout;
		size_t size;
	} l[] = {
		{ vhd_footer_layout(), sizeof(struct vhd_footer) },
		{ vhd_dyn_header_layout(), sizeof(struct vhd_dyn_header) },
		{ vhdx_file_id_layout(), sizeof(struct vhdx_file_id) },
		{ vhdx_header_layout(), sizeof(struct vhdx_header) },
		{ vhdx_region_table_layout(), sizeof(struct vhdx_region_table) },
		{ vhdx_region_layout(), sizeof(struct vhdx_region) },
		{ vhdx_log_header_layout(), sizeof(struct vhdx_log_header) },
		{ vhdx_log_zero_layout(), sizeof(struct vhdx_log_zero) },
		{ vhdx_log_desc_layout(), sizeof(struct vhdx_log_desc) },
		{ vhdx_log_data_layout(), sizeof(struct vhdx_log_data) },
		{ vhdx_meta_table_layout(), sizeof(struct vhdx_meta_table) },
		{ vhdx_meta_entry_layout(), sizeof(struct vhdx_meta_entry) },
		{ vhdx_file_params_layout(), sizeof(struct vhdx_file_params) },
		{ vhdx_disk_size_layout(), sizeof(struct vhdx_disk_size) },
		{ vhdx_sector_size_layout(), sizeof(struct vhdx_sector_size) },
		{ vhdx_locator_layout(), sizeof(struct vhdx_locator) },
		{ vhdx_locator_entry_layout(), sizeof(struct vhdx_locator_entry) },
	};

	for (size_t i = 0; i < sizeof(l) / sizeof(l[0]); i++)
		ck_assert_msg(endian_layout_size(l[i].layout) == l[i].size,
			      "layout %s: %zu bytes, struct %zu", l[i].layout,
			      endian_layout_size(l[i].layout), l[i].size);
}
END_TEST

START_TEST(vhd_footer)
{
	uint8_t raw[VHD_FOOTER_SIZE], uid[16];
	struct vhd_footer f, g;

	for (int i = 0; i < 16; i++)
		uid[i] = (uint8_t)(i + 1);
	vhdfmt_footer_fixed(&f, 0x123456000ull, uid);
	f.timestamp = 0x01020304;
	vhdfmt_footer_encode(&f, raw);
	ck_assert_mem_eq(raw, "conectix", 8);
	ck_assert_uint_eq(get_be32(raw + 8), 2);
	ck_assert_uint_eq(get_be32(raw + 12), VHD_VERSION);
	ck_assert_uint_eq(get_be64(raw + 16), UINT64_MAX);
	ck_assert_uint_eq(get_be32(raw + 24), 0x01020304);
	ck_assert_uint_eq(get_be64(raw + 40), 0x123456000ull);
	ck_assert_uint_eq(get_be64(raw + 48), 0x123456000ull);
	ck_assert_uint_eq(get_be32(raw + 60), VHD_TYPE_FIXED);
	ck_assert_uint_eq(get_be32(raw + 64), f.checksum);
	ck_assert_uint_eq(f.checksum, vhdfmt_checksum(raw, sizeof(raw), 64));
	ck_assert_mem_eq(raw + 68, uid, 16);
	ck_assert_int_eq(vhdfmt_footer_decode(raw, &g), VHDFMT_OK);
	ck_assert_mem_eq(&g, &f, sizeof(f));

	/* The checks run in order: cookie, checksum, version. */
	raw[12] ^= 1;
	ck_assert_int_eq(vhdfmt_footer_decode(raw, &g), VHDFMT_BAD_CHECKSUM);
	put_be32(raw + 64, vhdfmt_checksum(raw, sizeof(raw), 64));
	ck_assert_int_eq(vhdfmt_footer_decode(raw, &g), VHDFMT_BAD_VERSION);
	raw[0] = 'C';
	ck_assert_int_eq(vhdfmt_footer_decode(raw, &g), VHDFMT_BAD_COOKIE);
	ck_assert_uint_eq(g.version, VHD_VERSION ^ (1u << 24)); /* filled anyway */
}
END_TEST

START_TEST(vhd_dyn_header)
{
	uint8_t raw[VHD_HEADER_SIZE];
	struct vhd_dyn_header h, g;

	memset(&h, 0, sizeof(h));
	h.data_offset = UINT64_MAX;
	h.table_offset = 0x600;
	h.version = VHD_VERSION;
	h.max_entries = 5;
	h.block_size = 2u << 20;
	h.parent_uid[0] = 0xaa;
	h.parent_timestamp = 77;
	h.parent_name[1] = 'p';
	h.loc[7].code = VHD_W2RU;
	h.loc[7].space = 512;
	h.loc[7].len = 10;
	h.loc[7].offset = 0x1234;
	vhdfmt_dyn_encode(&h, raw);
	ck_assert_mem_eq(raw, "cxsparse", 8);
	ck_assert_uint_eq(get_be64(raw + 16), 0x600);
	ck_assert_uint_eq(get_be32(raw + 24), VHD_VERSION);
	ck_assert_uint_eq(get_be32(raw + 28), 5);
	ck_assert_uint_eq(get_be32(raw + 32), 2u << 20);
	ck_assert_uint_eq(get_be32(raw + 36), vhdfmt_checksum(raw, sizeof(raw), 36));
	ck_assert_uint_eq(raw[40], 0xaa);
	ck_assert_uint_eq(get_be32(raw + 56), 77);
	ck_assert_uint_eq(raw[65], 'p');
	ck_assert_mem_eq(raw + 576 + 7 * 24, "W2ru", 4);
	ck_assert_uint_eq(get_be32(raw + 576 + 7 * 24 + 4), 512);
	ck_assert_uint_eq(get_be32(raw + 576 + 7 * 24 + 8), 10);
	ck_assert_uint_eq(get_be64(raw + 576 + 7 * 24 + 16), 0x1234);
	ck_assert_int_eq(vhdfmt_dyn_decode(raw, &g), VHDFMT_OK);
	ck_assert_mem_eq(&g, &h, sizeof(h));
	raw[1000] = 1;
	ck_assert_int_eq(vhdfmt_dyn_decode(raw, &g), VHDFMT_BAD_CHECKSUM);
}
END_TEST

START_TEST(vhd_geometry)
{
	/* 2 GiB: the 4161/16/63 every VHD tool writes. */
	ck_assert_uint_eq(vhdfmt_geometry(2ull << 30), 4161u << 16 | 16 << 8 | 63);
	/* Small disks keep 17 sectors per track and at least 4 heads. */
	ck_assert_uint_eq(vhdfmt_geometry(1 << 20), 30u << 16 | 4 << 8 | 17);
	/* The largest CHS geometry caps anything bigger. */
	ck_assert_uint_eq(vhdfmt_geometry(1ull << 40), 65535u << 16 | 16 << 8 | 255);
}
END_TEST

START_TEST(vhdx_header)
{
	uint8_t raw[VHDX_LSEC], copy[VHDX_LSEC];
	struct vhdx_header h = { .seq = 9,
				 .log_version = 0,
				 .version = 1,
				 .log_len = 1 << 20,
				 .log_off = 1 << 20 },
			   g;

	memset(h.log_guid, 0x33, 16);
	vhdxfmt_header_encode(&h, raw);
	ck_assert_mem_eq(raw, "head", 4);
	ck_assert_uint_eq(get_le64(raw + 8), 9);
	ck_assert_uint_eq(raw[48], 0x33);
	ck_assert_uint_eq(get_le16(raw + 66), 1);
	ck_assert_uint_eq(get_le32(raw + 68), 1 << 20);
	ck_assert_uint_eq(get_le64(raw + 72), 1 << 20);
	/* The checksum is CRC-32C of the sector with its own field zero. */
	memcpy(copy, raw, sizeof(raw));
	memset(copy + 4, 0, 4);
	ck_assert_uint_eq(get_le32(raw + 4), crc32c(0, copy, sizeof(copy)));
	ck_assert(vhdxfmt_header_decode(raw, &g));
	ck_assert_uint_eq(g.seq, 9);
	ck_assert_uint_eq(g.log_len, 1 << 20);
	ck_assert_mem_eq(g.log_guid, h.log_guid, 16);
	raw[4000] = 1; /* reserved, but checksummed */
	ck_assert(!vhdxfmt_header_decode(raw, &g));
	vhdxfmt_seal(raw, sizeof(raw));
	ck_assert(vhdxfmt_header_decode(raw, &g));
	memcpy(raw, "HEAD", 4);
	vhdxfmt_seal(raw, sizeof(raw));
	ck_assert(!vhdxfmt_header_decode(raw, &g));
}
END_TEST

START_TEST(vhdx_records)
{
	static const uint8_t r[32] = { [16] = 0, 0, 0x30, 0, 0, 0, 0, 0, /* off */
				       0,	 0, 0x10, 0,		 /* len */
				       1,	 0, 0,	  0 };		 /* flags */
	struct vhdx_region e;
	struct vhdx_log_desc d = { .off = 0x5000, .seq = 0x100000002ull };
	uint8_t raw[32];

	vhdx_region_decode(&e, r);
	ck_assert_uint_eq(e.off, 3u << 20);
	ck_assert_uint_eq(e.len, 1u << 20);
	ck_assert_uint_eq(e.flags, 1);
	memcpy(d.signature, "desc", 4);
	memcpy(d.leading, "12345678", 8);
	vhdx_log_desc_encode(raw, &d);
	ck_assert_mem_eq(raw, "desc", 4);
	ck_assert_mem_eq(raw + 8, "12345678", 8);
	ck_assert_uint_eq(get_le64(raw + 16), 0x5000);
	ck_assert_uint_eq(get_le64(raw + 24), 0x100000002ull);
}
END_TEST

static int tmpfile_fd(char *path)
{
	const char *dir = getenv("TMPDIR");
	int fd;

	snprintf(path, 256, "%s/test-vhdfmt-XXXXXX", dir ? dir : "/tmp");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	return fd;
}

START_TEST(file_helpers)
{
	char path[256], buf[8];
	int fd = tmpfile_fd(path), fd2;

	ck_assert_int_eq(vhdfmt_pwrite(fd, "abcdefgh", 8, 4096), 0);
	ck_assert_int_eq(vhdfmt_pread(fd, buf, 8, 4096), 0);
	ck_assert_mem_eq(buf, "abcdefgh", 8);
	ck_assert_int_eq(vhdfmt_pread(fd, buf, 8, 4100), -ENODATA);
	ck_assert_int_eq(vhdfmt_zero(fd, 4098, 4), 0);
	ck_assert_int_eq(vhdfmt_pread(fd, buf, 8, 4096), 0);
	ck_assert_mem_eq(buf, "ab\0\0\0\0gh", 8);

	/* Exclusive for a writer: a second open is refused, even to read. */
	fd2 = open(path, O_RDONLY);
	ck_assert_int_ge(fd2, 0);
	ck_assert_int_eq(vhdfmt_lock(fd, path, false), 0);
	ck_assert_int_eq(vhdfmt_lock(fd2, path, true), -EWOULDBLOCK);
	close(fd2);
	close(fd);
	unlink(path);
}
END_TEST

/* The engine's description is another one: the image's lock does not cover
 * it, writes through it reach the file, and a read-only one cannot write. */
START_TEST(engine_reopen)
{
	char path[256], buf[4];
	int fd = tmpfile_fd(path), rw, ro;

	ck_assert_int_eq(vhdfmt_lock(fd, path, false), 0);
	rw = vhdfmt_reopen(fd, path, false);
	ro = vhdfmt_reopen(fd, path, true);
	ck_assert_int_ge(rw, 0);
	ck_assert_int_ge(ro, 0);
	ck_assert_int_ne(rw, fd);
	ck_assert_int_eq(vhdfmt_lock(rw, path, true), -EWOULDBLOCK);
	ck_assert_int_eq(vhdfmt_pwrite(rw, "wxyz", 4, 512), 0);
	ck_assert_int_eq(vhdfmt_pread(fd, buf, 4, 512), 0);
	ck_assert_mem_eq(buf, "wxyz", 4);
	ck_assert_int_eq(vhdfmt_pwrite(ro, "abcd", 4, 0), -EBADF);
	ck_assert_int_eq(vhdfmt_reopen(-1, path, true), -ENOENT);
	close(ro);
	close(rw);
	close(fd);
	unlink(path);

	ck_assert_int_eq(vhdfmt_engine_errno(0, false), 0);
	ck_assert_int_eq(vhdfmt_engine_errno(IOE_EOF, false), -ENODATA);
	ck_assert_int_eq(vhdfmt_engine_errno(IOE_EOF, true), -ENOSPC);
	ck_assert_int_eq(vhdfmt_engine_errno(-EIO, true), -EIO);
}
END_TEST

START_TEST(guids)
{
	static const uint8_t g[16] = { 0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66,
				       0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff };
	uint8_t u[16];
	char s[37];

	vhdfmt_uid_str(g, s);
	ck_assert_str_eq(s, "00112233-4455-6677-8899-aabbccddeeff");
	ck_assert_int_eq(vhdfmt_new_uid(u), 0);
	ck_assert_uint_eq(u[7] >> 4, 4);      /* version 4 */
	ck_assert_uint_eq(u[8] & 0xc0, 0x80); /* RFC 4122 variant */
}
END_TEST

/* Relative parent paths as Windows writes them: inside, beside, above, and
 * names that share a prefix without sharing a directory. */
START_TEST(relpaths)
{
	static const char *const c[][3] = {
		{ "/a/b", "/a/b/p.vhd", ".\\p.vhd" },
		{ "/a/b", "/a/c/p.vhd", "..\\c\\p.vhd" },
		{ "/a/b/c", "/a/p.vhd", "..\\..\\p.vhd" },
		{ "/", "/a/p.vhd", ".\\a\\p.vhd" },
		{ "/a", "/p.vhd", "..\\p.vhd" },
		{ "/a/bc", "/a/b/p", "..\\b\\p" },
		{ "/ab", "/a/p", "..\\a\\p" },
		{ "/x/y/z", "/q/r/p", "..\\..\\..\\q\\r\\p" },
		{ "/a/b", "/a/b/c/d/p", ".\\c\\d\\p" },
	};

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		char *r = vhdfmt_relpath(c[i][0], c[i][1]);

		ck_assert_str_eq(r, c[i][2]);
		free(r);
	}
}
END_TEST

/* The share table: a second open of one file finds the first (and takes a
 * reference), one of the other mode is refused, the last close
 * says so, and a file not in the table is locked against other opens. */
static unsigned share_fins;

static void share_fin(struct vhdfmt_share *e)
{
	ck_assert_uint_eq(e->refs, 0);
	share_fins++;
}

START_TEST(share_table)
{
	char path[] = "/tmp/vhdfmt-share-XXXXXX";
	int fd = mkstemp(path), fd2 = open(path, O_RDWR), fd3 = open(path, O_RDWR);
	struct vhdfmt_share a = { 0 }, ro = { 0 }, *found;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_ge(fd2, 0);
	ck_assert_int_ge(fd3, 0);
	vhdfmt_share_lock();
	ck_assert_int_eq(vhdfmt_share_claim(fd, path, false, &found), 0);
	ck_assert_ptr_null(found);
	ck_assert_int_eq(vhdfmt_share_add(&a, fd, false), 0);
	ck_assert_int_eq(vhdfmt_share_claim(fd2, path, false, &found), 0);
	ck_assert_ptr_eq(found, &a);
	ck_assert_int_eq(vhdfmt_share_claim(fd2, path, true, &found), -EBUSY);
	ck_assert_uint_eq(a.refs, 2);
	vhdfmt_share_unlock();
	vhdfmt_share_close(&a, share_fin);
	ck_assert_uint_eq(share_fins, 0);
	vhdfmt_share_close(&a, share_fin);
	ck_assert_uint_eq(share_fins, 1);
	/* Out of the table: the flock of fd (still open) refuses fd2. */
	vhdfmt_share_lock();
	ck_assert_int_eq(vhdfmt_share_claim(fd2, path, true, &found), -EWOULDBLOCK);
	vhdfmt_share_unlock();
	close(fd);
	vhdfmt_share_lock();
	ck_assert_int_eq(vhdfmt_share_claim(fd2, path, true, &found), 0);
	ck_assert_ptr_null(found);
	ck_assert_int_eq(vhdfmt_share_add(&ro, fd2, true), 0);
	ck_assert_int_eq(vhdfmt_share_claim(fd3, path, false, &found), -EBUSY);
	vhdfmt_share_unlock();
	vhdfmt_share_close(&ro, share_fin);
	ck_assert_uint_eq(share_fins, 2);
	/* Never added: the close is the last. */
	vhdfmt_share_close(&(struct vhdfmt_share){ 0 }, share_fin);
	ck_assert_uint_eq(share_fins, 3);
	close(fd2);
	close(fd3);
	unlink(path);
}
END_TEST

/* vhdfmt_image_open() with a toy format: the image is a file holding "toy";
 * opts is whether the open may create it, and create fails when told to. */
struct toy {
	struct vhdfmt_image img;
	bool read_only;
};
VHDFMT_IMAGE_FIRST(struct toy);

struct toy_opts {
	bool create, fail_create;
};
static unsigned toy_checks;

static void toy_init(void *inst, bool read_only)
{
	((struct toy *)inst)->read_only = read_only;
}

static void toy_free(void *inst)
{
	struct toy *t = inst;

	if (t->img.fd >= 0)
		close(t->img.fd);
	free(t->img.path);
	free(t);
}

static int toy_open_opts(void *inst, const struct dc_open_args *a, void *opts,
			 struct vhdfmt_want *w)
{
	(void)inst;
	(void)a;
	w->create = ((struct toy_opts *)opts)->create;
	return 0;
}

static int toy_check_existing(void *inst, const void *opts)
{
	(void)inst;
	(void)opts;
	toy_checks++;
	return 0;
}

static int toy_create(void *inst, void *opts)
{
	if (((struct toy_opts *)opts)->fail_create)
		return -EIO;
	return vhdfmt_pwrite(((struct toy *)inst)->img.fd, "toy", 3, 0);
}

static int toy_load(void *inst, const void *opts, bool created)
{
	char buf[3];

	(void)opts;
	(void)created;
	if (vhdfmt_pread(((struct toy *)inst)->img.fd, buf, 3, 0) ||
	    memcmp(buf, "toy", 3))
		return -EINVAL;
	return 0;
}

static void toy_fill_info(void *inst, struct dc_info *info)
{
	struct toy *t = inst;

	memset(info, 0, sizeof(*info));
	info->sector_count = 1;
	info->flags = t->read_only ? DC_INFO_READ_ONLY : 0;
	t->img.info = *info;
}

/* No engine: this test does not link common/ioengine; the plugins' tests
 * cover vhdfmt_open_engine(). */
static int toy_engine(struct vhdfmt_image *img, bool read_only)
{
	(void)img;
	(void)read_only;
	return 0;
}

static const struct vhdfmt_open_ops toy_open_ops = {
	.form = "toy",
	.size = sizeof(struct toy),
	.init = toy_init,
	.free = toy_free,
	.options = toy_open_opts,
	.check = toy_check_existing,
	.create = toy_create,
	.load = toy_load,
	.info = toy_fill_info,
	.engine = toy_engine,
};

START_TEST(image_open)
{
	char path[] = "/tmp/vhdfmt-open-XXXXXX";
	const char *fields[] = { path };
	struct dc_open_args a = { .struct_size = sizeof(a),
				  .fields = fields,
				  .nfields = 1 };
	struct toy_opts o = { .create = true, .fail_create = true };
	struct dc_info info;
	void *t1, *t2;
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	close(fd);
	unlink(path);
	/* A failed create leaves no file behind. */
	ck_assert_int_eq(vhdfmt_image_open(&toy_open_ops, &o, &a, &t1, &info), -EIO);
	ck_assert_int_ne(access(path, F_OK), 0);
	o.fail_create = false;
	ck_assert_int_eq(vhdfmt_image_open(&toy_open_ops, &o, &a, &t1, &info), 0);
	ck_assert_uint_eq(info.sector_count, 1);
	ck_assert_uint_eq(toy_checks, 0);
	/* The second open of one image is the first instance, checked against
	 * its create=, and read-only when it asks to be. */
	a.read_only = true;
	ck_assert_int_eq(vhdfmt_image_open(&toy_open_ops, &o, &a, &t2, &info), -EBUSY);
	a.read_only = false;
	ck_assert_int_eq(vhdfmt_image_open(&toy_open_ops, &o, &a, &t2, &info), 0);
	ck_assert_ptr_eq(t1, t2);
	ck_assert_uint_eq(toy_checks, 1);
	ck_assert_uint_eq(((struct toy *)t1)->img.share.refs, 2);
	vhdfmt_share_close_inst(t2, toy_free);
	vhdfmt_share_close_inst(t1, toy_free);
	/* Not the format, and no path. */
	ck_assert_int_eq(truncate(path, 0), 0);
	o.create = false;
	ck_assert_int_eq(vhdfmt_image_open(&toy_open_ops, &o, &a, &t1, &info), -EINVAL);
	a.nfields = 0;
	ck_assert_int_eq(vhdfmt_image_open(&toy_open_ops, &o, &a, &t1, &info), -EINVAL);
	unlink(path);
}
END_TEST

/* attach(): the instance's info with this open's read-only flag; a
 * differencing image needs a parent below. */
START_TEST(attach_start)
{
	struct dc_info base = { .sector_count = 8, .flags = DC_INFO_HAS_DISK_ID }, info;

	info.flags = DC_INFO_READ_ONLY;
	ck_assert_int_eq(vhdfmt_attach(&base, false, false, "x", "VHD", &info), 0);
	ck_assert_uint_eq(info.sector_count, 8);
	ck_assert_uint_eq(info.flags, DC_INFO_HAS_DISK_ID | DC_INFO_READ_ONLY);
	info.flags = 0;
	ck_assert_int_eq(vhdfmt_attach(&base, true, true, "x", "VHD", &info), 1);
	ck_assert_uint_eq(info.flags, DC_INFO_HAS_DISK_ID);
	ck_assert_int_eq(vhdfmt_attach(&base, true, false, "x", "VHD", &info), -EINVAL);
	ck_assert_ptr_nonnull(strstr(dc_last_error(), "needs its parent below"));
}
END_TEST

/* Blocks of 8 sectors: 0 and 1 holes, 2 data, 3 split at sector 5 (data then
 * absent), 4 absent, 5 an error. */
static int fake_run(void *ctx, uint64_t b, uint32_t o, uint32_t n, uint32_t *len)
{
	(void)ctx;
	switch (b) {
	case 0:
	case 1:
		return DC_EXTENT_HOLE | DC_EXTENT_ZERO;
	case 2:
		return 0;
	case 3:
		if (o < 5) {
			*len = 5 - o < n ? 5 - o : n;
			return 0;
		}
		return DC_EXTENT_ABSENT;
	case 4:
		return DC_EXTENT_ABSENT;
	default:
		return -EIO;
	}
}

START_TEST(extents_walk)
{
	uint64_t run = 0;

	/* Merged across blocks 0 and 1, from the middle of block 0. */
	ck_assert_int_eq(vhdfmt_extents(NULL, 3, 3, 40, fake_run, &run),
			 DC_EXTENT_HOLE | DC_EXTENT_ZERO);
	ck_assert_uint_eq(run, 13);
	/* Block 2 and the first 5 sectors of block 3. */
	ck_assert_int_eq(vhdfmt_extents(NULL, 3, 16, 40, fake_run, &run), 0);
	ck_assert_uint_eq(run, 13);
	/* The rest of block 3 and block 4; the error of block 5 is not reached. */
	ck_assert_int_eq(vhdfmt_extents(NULL, 3, 29, 11, fake_run, &run),
			 (int)DC_EXTENT_ABSENT);
	ck_assert_uint_eq(run, 11);
	/* Cut at count, inside a block. */
	ck_assert_int_eq(vhdfmt_extents(NULL, 3, 17, 2, fake_run, &run), 0);
	ck_assert_uint_eq(run, 2);
	ck_assert_int_eq(vhdfmt_extents(NULL, 3, 40, 8, fake_run, &run), -EIO);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = {
		layouts,      vhd_footer,    vhd_dyn_header, vhd_geometry, vhdx_header,
		vhdx_records, file_helpers,  guids,	     relpaths,	   share_table,
		extents_walk, engine_reopen, image_open,     attach_start, NULL,
	};

	return common_check_run("vhdfmt", tests);
}
