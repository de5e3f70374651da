/* SPDX-License-Identifier: MIT */
/* The vhd1 plugin: fixed VHD as OpenVMM's Vhd1Disk (docs/openvmm-compat.md §2.2 and §7.2
 * disk_vhd1): footer validation and its order, the disk id, the footer out of
 * reach of I/O, create=, the lock it shares with vhd:, plus the shared
 * conformance suite. Footers are built here independently of the plugin's code. */
#include "conformance.h"
#include "harness.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1024 * 1024)

/* What a footer should hold; the test breaks fields on purpose. */
struct tv_footer {
	const char *cookie;
	uint32_t version;
	uint32_t type;
	uint64_t size;
	int checksum_delta;
	uint8_t uid[16];
};

static void tv_footer(uint8_t f[512], const struct tv_footer *t)
{
	memset(f, 0, 512);
	memcpy(f, t->cookie, 8);
	h_put_be32(f + 8, 2);
	h_put_be32(f + 12, t->version);
	h_put_be64(f + 16, UINT64_MAX);
	h_put_be32(f + 32, 0x000a0000);
	h_put_be64(f + 40, t->size);
	h_put_be64(f + 48, t->size);
	h_put_be32(f + 60, t->type);
	memcpy(f + 68, t->uid, 16);
	h_put_be32(f + 64, h_vhd_checksum(f, 512, 64) + (uint32_t)t->checksum_delta);
}

static const struct tv_footer tv_good = {
	"conectix", 0x00010000, 2,
	0,	    0,		{ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 },
};

/* Append a footer for the whole file (OpenVMM's make_fixed). */
static int tv_make_fixed_footer(const char *path, const struct tv_footer *t)
{
	struct tv_footer f = *t;
	uint8_t buf[512];
	struct stat st;
	int fd = open(path, O_WRONLY);

	if (fd < 0 || fstat(fd, &st) < 0)
		return -1;
	if (!f.size)
		f.size = (uint64_t)st.st_size;
	tv_footer(buf, &f);
	if (pwrite(fd, buf, 512, st.st_size) != 512) {
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static int tv_prepare_fixed(const char *path, uint64_t size, void *arg)
{
	(void)size;
	(void)arg;
	return tv_make_fixed_footer(path, &tv_good) ? -EIO : 0;
}

/* A file of data_len bytes of a u32 counting pattern, then footer t. */
static char *tv_image(uint64_t data_len, const struct tv_footer *t)
{
	char *path = h_tmpfile(0, ".vhd");
	uint32_t *buf = malloc(MIB);
	int fd = open(path, O_WRONLY);

	ck_assert(buf && fd >= 0);
	for (uint64_t off = 0; off < data_len; off += MIB) {
		size_t n = data_len - off < MIB ? (size_t)(data_len - off) : MIB;

		for (size_t i = 0; i < n / 4; i++)
			buf[i] = (uint32_t)(off / 4 + i);
		ck_assert_int_eq(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
	}
	close(fd);
	free(buf);
	if (t)
		ck_assert_int_eq(tv_make_fixed_footer(path, t), 0);
	return path;
}

/* §7.2 open_fixed: a 4 MiB u32 counting pattern; sector 1000 holds words
 * 128000..128127. */
START_TEST(vhd1_open_fixed)
{
	char *path = tv_image(4 * MIB, &tv_good);
	dc_disk *d = h_openf(0, "vhd1:%s", path);
	uint32_t words[128];
	struct dc_info info;

	ck_assert_int_eq(dc_read(d, 1000, words, sizeof(words)), 0);
	for (int i = 0; i < 128; i++)
		ck_assert_uint_eq(words[i], 128000 + i);
	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, 4 * MIB / 512);
	ck_assert_uint_eq(info.sector_size, 512);
	ck_assert_uint_eq(info.physical_sector_size, 512);
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_IGNORED);
	ck_assert(info.flags & DC_INFO_HAS_DISK_ID);
	ck_assert_int_eq(memcmp(info.disk_id, tv_good.uid, 16), 0);
	ck_assert_str_eq(info.disk_type, "vhd1");
	dc_close(d);
	free(path);
}
END_TEST

/* The footer is past the last sector: a read there is an illegal block and
 * never returns footer bytes; writing the last sector keeps the footer. */
START_TEST(vhd1_footer_out_of_reach)
{
	char *path = tv_image(MIB, &tv_good);
	char *spec = h_fmt("vhd1:%s", path);
	dc_disk *d = h_open(spec, 0);
	uint8_t buf[1024], foot[512], after[512];
	uint64_t n = dc_sector_count(d);
	int fd = open(path, O_RDONLY);

	ck_assert_uint_eq(n, MIB / 512);
	ck_assert_int_eq(pread(fd, foot, 512, MIB), 512);
	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(dc_read(d, n, buf, 512), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_ne(memcmp(buf, "conectix", 8), 0);
	ck_assert_int_eq(dc_read(d, n - 1, buf, 1024), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_write(d, n, buf, 512, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_unmap(d, n, 1, 0), DC_E_ILLEGAL_BLOCK);
	memset(buf, 0x5a, sizeof(buf));
	ck_assert_int_eq(dc_write(d, n - 1, buf, 512, 0), 0);
	ck_assert_int_eq(dc_flush(d), 0);
	ck_assert_int_eq(pread(fd, after, 512, MIB), 512);
	ck_assert_int_eq(memcmp(foot, after, 512), 0);
	ck_assert_int_eq(pread(fd, after, 512, MIB - 512), 512);
	ck_assert_int_eq(memcmp(after, buf, 512), 0);
	close(fd);
	dc_close(d);
	/* Still a valid fixed VHD. */
	d = h_open(spec, 0);
	dc_close(d);
	free(spec);
	free(path);
}
END_TEST

/* A disk smaller than the file (current size < file - footer) exposes only
 * current size. */
START_TEST(vhd1_smaller_disk)
{
	struct tv_footer t = tv_good;
	char *path;
	dc_disk *d;
	uint8_t buf[512];

	t.size = MIB - 4096;
	path = tv_image(MIB, &t);
	d = h_openf(0, "vhd1:%s", path);
	ck_assert_uint_eq(dc_sector_count(d), (MIB - 4096) / 512);
	ck_assert_int_eq(dc_read(d, (MIB - 4096) / 512, buf, 512), DC_E_ILLEGAL_BLOCK);
	dc_close(d);
	free(path);
}
END_TEST

/* An image of 1 MiB of data and footer t fails to open with a message containing
 * needle. */
static void tv_footer_fails(const struct tv_footer *t, const char *needle)
{
	char *path = tv_image(MIB, t);

	h_open_fails(0, -EINVAL, needle, "vhd1:%s", path);
	free(path);
}

/* Each check of §2.2, and that they run in order: an image that breaks checks
 * k and k+1 fails with check k's complaint. */
START_TEST(vhd1_validation_order)
{
	struct tv_footer t;
	char *path;

	/* 1: length not a multiple of 512 (and no footer at all). */
	path = h_tmpfile(MIB + 100, ".vhd");
	h_open_fails(0, -EINVAL, "invalid file size", "vhd1:%s", path);
	free(path);
	/* 1: shorter than a footer. */
	path = h_tmpfile(0, ".vhd");
	h_open_fails(0, -EINVAL, "invalid file size", "vhd1:%s", path);
	free(path);
	/* 3 before 4: bad cookie and bad checksum. */
	t = tv_good;
	t.cookie = "conectiX";
	t.checksum_delta = 1;
	tv_footer_fails(&t, "cookie");
	/* 4 before 5: bad checksum and bad version. */
	t = tv_good;
	t.checksum_delta = 1;
	t.version = 0x00020000;
	tv_footer_fails(&t, "checksum");
	/* 5 before 6: bad version and dynamic. */
	t = tv_good;
	t.version = 0x00020000;
	t.type = 3;
	tv_footer_fails(&t, "version");
	/* 6 before 7: dynamic, and a size the file cannot hold. */
	t = tv_good;
	t.type = 3;
	t.size = 8 * MIB;
	tv_footer_fails(&t, "not a fixed VHD");
	/* 7: current size larger than the data. */
	t = tv_good;
	t.size = MIB + 512;
	tv_footer_fails(&t, "invalid disk size");
	/* 7: current size not a multiple of 512. */
	t = tv_good;
	t.size = MIB - 100;
	tv_footer_fails(&t, "invalid disk size");
	/* Not validated (as upstream): features, data offset, geometry. */
	path = tv_image(MIB, &tv_good);
	{
		int fd = open(path, O_RDWR);
		uint8_t f[512];

		ck_assert_int_eq(pread(fd, f, 512, MIB), 512);
		h_put_be32(f + 8, 0);
		h_put_be64(f + 16, 1234);
		h_put_be32(f + 56, 0xdeadbeef);
		h_put_be32(f + 64, h_vhd_checksum(f, 512, 64));
		ck_assert_int_eq(pwrite(fd, f, 512, MIB), 512);
		close(fd);
	}
	dc_close(h_openf(0, "vhd1:%s", path));
	free(path);
	/* Missing file. */
	path = h_tmppath(".vhd");
	h_open_fails(0, -ENOENT, path, "vhd1:%s", path);
	free(path);
}
END_TEST

/* create=SIZE: SIZE bytes of zeroes and the footer of new_fixed(), with a
 * random unique id (a version-4 GUID). */
START_TEST(vhd1_create)
{
	char *path = h_tmppath(".vhd");
	char *spec = h_fmt("vhd1:%s;create=3M", path);
	uint8_t f[512], f2[512], buf[4096];
	struct dc_info info;
	struct stat st;
	dc_disk *d = h_open(spec, 0);
	int fd;

	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, 3 * MIB / 512);
	ck_assert_int_eq(dc_read(d, 0, buf, sizeof(buf)), 0);
	ck_assert_int_lt(h_check_zero(buf, sizeof(buf)), 0);
	dc_close(d);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, 3 * MIB + 512);
	fd = open(path, O_RDONLY);
	ck_assert_int_eq(pread(fd, f, 512, 3 * MIB), 512);
	close(fd);
	ck_assert_int_eq(memcmp(f, "conectix", 8), 0);
	ck_assert_uint_eq(h_get_be32(f + 8), 2);
	ck_assert_uint_eq(h_get_be32(f + 12), 0x00010000);
	ck_assert_uint_eq(h_get_be64(f + 16), UINT64_MAX);
	/* Written as Hyper-V does (a timestamp, creator "win " on "Wi2k", CHS
	 * geometry), so qemu sizes it from current_size (issue 14). */
	ck_assert_uint_ne(h_get_be32(f + 24), 0);
	ck_assert_int_eq(memcmp(f + 28, "win ", 4), 0);
	ck_assert_uint_eq(h_get_be32(f + 32), 0x000a0000);
	ck_assert_int_eq(memcmp(f + 36, "Wi2k", 4), 0);
	ck_assert_uint_eq(h_get_be64(f + 40), 3 * MIB);
	ck_assert_uint_eq(h_get_be64(f + 48), 3 * MIB);
	ck_assert_uint_eq(h_get_be32(f + 56), 90u << 16 | 4 << 8 | 17);
	ck_assert_uint_eq(h_get_be32(f + 60), 2);
	ck_assert_uint_eq(h_get_be32(f + 64), h_vhd_checksum(f, 512, 64));
	ck_assert_int_eq(memcmp(f + 68, info.disk_id, 16), 0);
	ck_assert_uint_eq(f[75] >> 4, 4);
	ck_assert_uint_eq(f[76] >> 6, 2);
	ck_assert_int_lt(h_check_zero(f + 84, 428), 0);
	/* A second create opens the image unchanged; ;overwrite replaces it with a
	 * new id. */
	dc_close(h_open(spec, 0));
	fd = open(path, O_RDONLY);
	ck_assert_int_eq(pread(fd, f2, 512, 3 * MIB), 512);
	close(fd);
	ck_assert_int_eq(memcmp(f, f2, 512), 0);
	dc_close(h_openf(0, "%s;overwrite", spec));
	fd = open(path, O_RDONLY);
	ck_assert_int_eq(pread(fd, f2, 512, 3 * MIB), 512);
	close(fd);
	ck_assert_int_ne(memcmp(f + 68, f2 + 68, 16), 0);
	free(spec);
	/* Sizes create= refuses. */
	h_open_fails(0, -EINVAL, "multiple of 512", "vhd1:%s;create=1000", path);
	h_open_fails(0, -EINVAL, "multiple of 512", "vhd1:%s;create=0", path);
	free(path);
}
END_TEST

START_TEST(vhd1_read_only)
{
	char *path = tv_image(MIB, &tv_good);
	char *spec = h_fmt("vhd1:%s", path);
	dc_disk *d = h_open(spec, DC_OPEN_READ_ONLY);
	uint8_t buf[512] = { 0 };
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert(info.flags & DC_INFO_READ_ONLY);
	ck_assert_int_eq(dc_write(d, 0, buf, 512, 0), DC_E_READ_ONLY);
	ck_assert_int_eq(dc_read(d, 1, buf, 512), 0);
	ck_assert_uint_eq(((uint32_t *)buf)[0], 128);
	dc_close(d);
	/* A read-only file opens read-only. */
	ck_assert_int_eq(chmod(path, 0444), 0);
	if (geteuid() != 0) {
		d = h_open(spec, DC_OPEN_READ_ONLY);
		dc_close(d);
	}
	free(spec);
	free(path);
}
END_TEST

/* Writes land at the right offset of the file, FUA and flush succeed. */
START_TEST(vhd1_write_through_file)
{
	char *path = tv_image(MIB, &tv_good);
	dc_disk *d = h_openf(0, "vhd1:%s", path);
	uint8_t buf[8192], got[8192];
	int fd = open(path, O_RDONLY);

	h_fill(buf, sizeof(buf), 77);
	ck_assert_int_eq(dc_write(d, 33, buf, sizeof(buf), DC_IO_FUA), 0);
	ck_assert_int_eq(dc_flush(d), 0);
	ck_assert_int_eq(pread(fd, got, sizeof(got), 33 * 512), (ssize_t)sizeof(got));
	ck_assert_int_eq(memcmp(buf, got, sizeof(buf)), 0);
	close(fd);
	dc_close(d);
	free(path);
}
END_TEST

/* One image, two opens (docs/spec-strings.md, "One image, two opens"): in one
 * process a second vhd1: open of an image in the same mode is the same
 * instance, and one in the other mode is refused. Another process, and vhd:
 * (another plugin, another instance), meet the flock: one writer excludes
 * every other open, readers share. */
START_TEST(vhd1_lock)
{
	char *path = tv_image(MIB, &tv_good), *out = h_tmppath(".out");
	const char *root = getenv("DISKCORE_BUILD_ROOT");
	bool vhd = h_have_plugin("vhd");
	dc_disk *w = h_openf(0, "vhd1:%s", path), *w2, *r1, *r2;
	uint8_t buf[512];

	w2 = h_openf(0, "vhd1:%s", path);
	h_open_fails(DC_OPEN_READ_ONLY, -EBUSY, "open writable in this process",
		     "vhd1:%s", path);
	h_fill(buf, sizeof(buf), 7);
	ck_assert_int_eq(dc_write(w2, 3, buf, sizeof(buf), 0), 0);
	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(dc_read(w, 3, buf, sizeof(buf)), 0);
	ck_assert_int_lt(h_check(buf, sizeof(buf), 7), 0);
	if (vhd)
		h_open_fails(DC_OPEN_READ_ONLY, -EAGAIN, "in use", "vhd:%s", path);
	ck_assert_ptr_nonnull(root);
	ck_assert_int_eq(h_sh("! %s/tools/diskctl info 'vhd1:%s' >%s 2>&1 && grep -q "
			      "'locked for writing' %s; rc=$?; cat %s; exit $rc",
			      root, path, out, out, out),
			 0);
	dc_close(w);
	ck_assert_int_eq(dc_write(w2, 4, buf, sizeof(buf), 0), 0);
	dc_close(w2);
	r1 = h_openf(DC_OPEN_READ_ONLY, "vhd1:%s", path);
	r2 = vhd ? h_openf(DC_OPEN_READ_ONLY, "vhd:%s", path) :
		   h_openf(DC_OPEN_READ_ONLY, "vhd1:%s", path);
	h_open_fails(0, -EBUSY, "open read-only in this process", "vhd1:%s", path);
	if (vhd)
		h_open_fails(0, -EBUSY, "open read-only in this process", "vhd:%s", path);
	dc_close(r1);
	dc_close(r2);
	dc_close(h_openf(0, "vhd1:%s", path));
	unlink(out);
	free(out);
	free(path);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("vhd1");
	TCase *tc = tcase_create("vhd1");
	static const struct conformance_opts fixed = { .prepare = tv_prepare_fixed };
	static const struct conformance_opts fixed_ro = { .open_flags = DC_OPEN_READ_ONLY,
							  .prepare = tv_prepare_fixed };

	tcase_add_test(tc, vhd1_open_fixed);
	tcase_add_test(tc, vhd1_footer_out_of_reach);
	tcase_add_test(tc, vhd1_smaller_disk);
	tcase_add_test(tc, vhd1_validation_order);
	tcase_add_test(tc, vhd1_create);
	tcase_add_test(tc, vhd1_read_only);
	tcase_add_test(tc, vhd1_write_through_file);
	tcase_add_test(tc, vhd1_lock);
	suite_add_tcase(s, tc);
	/* §7.2 sector_range_conformance: 1 MiB + make_fixed. */
	conformance_add_opts(s, "vhd1", "vhd1:@TMP:1M.vhd@", &fixed);
	conformance_add_opts(s, "vhd1-ro", "vhd1:@TMP:1M.vhd@", &fixed_ro);
	conformance_add(s, "vhd1-create", "vhd1:@NEW.vhd@;create=1M");
	conformance_add_opts(s, "memdiff-vhd1", "memdiff:vhd1:@TMP:1M.vhd@", &fixed);
	return h_run(s);
}
