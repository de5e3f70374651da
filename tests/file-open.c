/* SPDX-License-Identifier: MIT */
/* test-file: opening and creating. create= and ;overwrite, a size that is not
 * whole sectors, paths relative to the working directory, .iso and .vmgs, and
 * what cannot be opened. */
#include "file-test.h"
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

START_TEST(file_create)
{
	char *path = h_tmppath(".img");
	dc_disk *d = h_openf(0, "file:%s;create=2M", path);
	char *buf = h_alloc(4096);
	struct stat st;
	char *v;

	ck_assert_uint_eq(dc_sector_count(d), 2 * MIB / 512);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, 2 * MIB);
	v = tf_describe(d, "created");
	ck_assert_ptr_nonnull(v);
	free(v);
	h_fill(buf, 4096, 9);
	ck_assert_int_eq(dc_write(d, 100, buf, 4096, 0), 0);
	dc_close(d);

	/* create= names an existing image: opened unchanged at its size, refused at
	 * another (tests/test-create.c covers the rule). */
	h_open_fails(0, -EEXIST, "exists with 2097152 bytes", "file:%s;create=64K", path);
	d = h_openf(0, "file:%s;create=2M", path);
	ck_assert_int_eq(dc_read(d, 100, buf, 4096), 0);
	ck_assert_int_eq(h_check(buf, 4096, 9), -1);
	dc_close(d);
	/* ;overwrite replaces it: truncated, then sized, so all zeroes. */
	d = h_openf(0, "file:%s;create=64K;overwrite", path);
	ck_assert_uint_eq(dc_sector_count(d), 128);
	ck_assert_int_eq(dc_read(d, 100, buf, 4096), 0);
	ck_assert_int_eq(h_check_zero(buf, 4096), -1);
	dc_close(d);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, 64 * 1024);
	free(buf);
	free(path);
}
END_TEST

START_TEST(file_create_bad_size)
{
	char *path = h_tmppath(".img");

	h_open_fails(0, 0, "512", "file:%s;create=1000", path);
	ck_assert_int_ne(access(path, F_OK), 0);
	free(path);
}
END_TEST

START_TEST(file_relative_path)
{
	/* "memdiff:REL.img" and "sub/REL.img" open relative to the working
	 * directory, as in OpenVMM (docs/spec-strings.md). */
	char *dir = h_tmpsubdir(), *sub = h_fmt("%s/sub", dir), buf[512];
	char cwd[4096];
	dc_disk *d;

	ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
	ck_assert_int_eq(mkdir(sub, 0755), 0);
	ck_assert_int_eq(chdir(dir), 0);
	memset(buf, 0x5a, sizeof(buf));
	d = h_open("sub/rel.img;create=64K", 0);
	ck_assert_int_eq(dc_write(d, 3, buf, sizeof(buf), 0), 0);
	dc_close(d);
	ck_assert_int_eq(access("sub/rel.img", F_OK), 0);
	ck_assert_int_eq(chdir(sub), 0);
	d = h_open("memdiff:rel.img", 0);
	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(dc_read(d, 3, buf, sizeof(buf)), 0);
	ck_assert_int_eq((unsigned char)buf[511], 0x5a);
	dc_close(d);
	ck_assert_int_eq(chdir(cwd), 0);
	free(sub);
	free(dir);
}
END_TEST

START_TEST(file_iso_and_vmgs)
{
	/* .iso is read-only media; .vmgs is a fixed VHD (issue 14). */
	char *iso = h_tmpfile(MIB, ".iso"), *vmgs = h_tmppath(".vmgs"), *spec;
	unsigned char foot[512];
	struct stat st;
	dc_disk *d;
	int fd;

	h_open_fails(0, -EROFS, "iso file cannot be opened as read/write", "%s", iso);
	d = h_open(iso, DC_OPEN_READ_ONLY);
	ck_assert_uint_eq(dc_sector_count(d), MIB / 512);
	dc_close(d);
	spec = h_fmt("file:%s;create=VMGS_DEFAULT", vmgs);
	d = h_open(spec, 0);
	ck_assert_uint_eq(dc_sector_count(d), 4 * MIB / 512);
	dc_close(d);
	free(spec);
	ck_assert_int_eq(stat(vmgs, &st), 0);
	ck_assert_int_eq(st.st_size, 4 * MIB + 512);
	fd = open(vmgs, O_RDONLY);
	ck_assert_int_eq(pread(fd, foot, 512, st.st_size - 512), 512);
	close(fd);
	ck_assert_int_eq(memcmp(foot, "conectix", 8), 0);
	free(iso);
	free(vmgs);
}
END_TEST

START_TEST(file_open_errors)
{
	char *missing = h_tmppath(".img");
	char *dir = h_tmpsubdir();

	h_open_fails(0, -ENOENT, missing, "file:%s", missing);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "not a regular file", "file:%s", dir);
	free(dir);
	free(missing);
}
END_TEST

void file_add_open_cases(TCase *tc)
{
	tcase_add_test(tc, file_create);
	tcase_add_test(tc, file_create_bad_size);
	tcase_add_test(tc, file_relative_path);
	tcase_add_test(tc, file_iso_and_vmgs);
	tcase_add_test(tc, file_open_errors);
}
