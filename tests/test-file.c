/* SPDX-License-Identifier: MIT */
/* The file plugin (docs/openvmm-compat.md §2.1 and §7.2 disk_file, with the [NOTE]s
 * fixed) and the core's worker pool that runs it (across fork() in
 * test-pool-fork.c).
 *
 * This file: the disk's info, ranges checked by the core and by the plugin
 * itself, read-only opens, scatter/gather, short writes and a shrunk file, and
 * main(). Opening and creating are in file-open.c, direct I/O, unmap, FUA,
 * queue depth and block devices in file-io.c, the worker pool in
 * file-worker-pool.c. */
#include "conformance.h"
#include "file-test.h"
#include "harness.h"

#include <diskcore/plugin.h>

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* A file of `size` bytes whose 4 KiB block b holds h_fill(seed + b). */
char *tf_patterned(uint64_t size, uint64_t seed)
{
	char *path = h_tmpfile(size, NULL);
	char *buf = malloc(4096);
	int fd = open(path, O_WRONLY);

	ck_assert(fd >= 0 && buf);
	for (uint64_t b = 0; b < size / 4096; b++) {
		h_fill(buf, 4096, seed + b);
		ck_assert_int_eq(pwrite(fd, buf, 4096, (off_t)(b * 4096)), 4096);
	}
	close(fd);
	free(buf);
	return path;
}

/* The value `key` that the file node describes, or NULL (malloc'd). */
char *tf_describe(dc_disk *d, const char *key)
{
	struct h_desc t;
	const char *v;

	h_describe(d, "file", &t);
	v = h_desc_get(&t, key);
	return v ? strdup(v) : NULL;
}

START_TEST(file_info)
{
	char *path = h_tmpfile(MIB + 100, NULL);
	dc_disk *d = h_openf(0, "file:%s", path);
	struct dc_info info;
	char *v;

	dc_get_info(d, &info);
	/* A partial last sector is not part of the disk. */
	ck_assert_uint_eq(info.sector_count, MIB / 512);
	ck_assert_uint_eq(info.sector_size, 512);
	ck_assert_uint_eq(info.physical_sector_size, 4096);
	ck_assert_str_eq(info.disk_type, "file");
	ck_assert(info.flags & DC_INFO_FUA_RESPECTED);
	ck_assert(!(info.flags & DC_INFO_READ_ONLY));
	v = tf_describe(d, "path");
	ck_assert_ptr_nonnull(v);
	ck_assert_str_eq(v, path);
	free(v);
	v = tf_describe(d, "direct");
	ck_assert_ptr_nonnull(v);
	ck_assert_str_eq(v, "no");
	free(v);
	dc_close(d);
	free(path);
}
END_TEST

START_TEST(file_conformance)
{
	char *path = h_tmpfile(MIB, NULL);
	char *spec = h_fmt("file:%s", path);
	dc_disk *d = h_open(spec, 0);

	conformance_check_representability(d, spec);
	conformance_check_sector_range(d, spec);
	dc_close(d);
	free(spec);
	free(path);
}
END_TEST

/* §7.2 sector_does_not_wrap_when_shifted: 1 << 55 shifted by 9 is 0 mod 2^64. */
START_TEST(file_sector_does_not_wrap)
{
	char *path = tf_patterned(MIB, 1);
	dc_disk *d = h_openf(0, "file:%s", path);
	char *buf = h_alloc(512), *sector0 = h_alloc(512);

	h_pread_file(path, 0, sector0, 512);
	memset(buf, 0x5a, 512);
	ck_assert_int_eq(dc_read(d, UINT64_C(1) << 55, buf, 512), DC_E_ILLEGAL_BLOCK);
	ck_assert(memcmp(buf, sector0, 512) != 0);
	ck_assert_int_eq(h_check(sector0, 512, 1), -1);
	ck_assert_int_eq(dc_write(d, UINT64_C(1) << 55, buf, 512, 0), DC_E_ILLEGAL_BLOCK);
	h_pread_file(path, 0, buf, 512);
	ck_assert_int_eq(h_check(buf, 512, 1), -1);
	dc_close(d);
	free(buf);
	free(sector0);
	free(path);
}
END_TEST

/* The plugin itself, below the core's guard: load file.so and call io() with
 * requests the core would never pass, to prove the plugin's own checks. */
static void tf_direct_open(struct h_direct *t, const char *path, bool read_only)
{
	h_direct_open(t, "file", path, read_only);
	ck_assert_ptr_nonnull(t->p->io);
}

static int tf_direct_io(struct h_direct *t, uint32_t op, uint64_t sector, void *buf,
			size_t len, uint64_t count)
{
	struct iovec iov = { buf, len };
	struct dc_req req = {
		.op = op,
		.sector = sector,
		.count = op == DC_OP_UNMAP ? count : len / 512,
		.buf = { .iov = &iov, .iovcnt = buf ? 1 : 0, .len = len },
	};

	return t->p->io(t->inst, &req);
}

START_TEST(file_plugin_range_check)
{
	char *path = tf_patterned(MIB, 7);
	char *buf = h_alloc(4096);
	struct h_direct t;

	tf_direct_open(&t, path, false);
	/* Sectors whose byte offset wraps, or is past the end, or straddles it. */
	memset(buf, 0x5a, 4096);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_READ, UINT64_C(1) << 55, buf, 512, 0),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_READ, UINT64_MAX, buf, 512, 0),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_READ, UINT64_C(1) << 54, buf, 512, 0),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_READ, 2048, buf, 512, 0),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_READ, 2047, buf, 1024, 0),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_WRITE, UINT64_C(1) << 55, buf, 512, 0),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_UNMAP, UINT64_C(1) << 55, NULL, 0, 1),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_UNMAP, 1, NULL, 0, UINT64_MAX),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_UNMAP, 2047, NULL, 0, 2),
			 DC_E_ILLEGAL_BLOCK);
	for (int i = 0; i < 4096; i++)
		ck_assert_int_eq((unsigned char)buf[i], 0x5a);
	/* The last sector is inside. */
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_READ, 2047, buf, 512, 0), 0);
	h_direct_close(&t);
	free(buf);
	free(path);
}
END_TEST

START_TEST(file_plugin_read_only)
{
	char *path = tf_patterned(64 * 1024, 3);
	char *buf = h_alloc(512);
	struct h_direct t;

	tf_direct_open(&t, path, true);
	ck_assert(t.info.flags & DC_INFO_READ_ONLY);
	ck_assert_uint_eq(t.info.unmap_behavior, DC_UNMAP_IGNORED);
	memset(buf, 0xee, 512);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_WRITE, 0, buf, 512, 0), DC_E_READ_ONLY);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_UNMAP, 0, NULL, 0, 8), DC_E_READ_ONLY);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_READ, 0, buf, 512, 0), 0);
	ck_assert_int_eq(h_check(buf, 512, 3), -1);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_EJECT, 0, NULL, 0, 0), DC_E_UNSUPPORTED);
	h_direct_close(&t);
	free(buf);
	free(path);
}
END_TEST

START_TEST(file_read_only)
{
	char *path = tf_patterned(64 * 1024, 3);
	dc_disk *d = h_openf(DC_OPEN_READ_ONLY, "file:%s", path);
	char *buf = h_alloc(4096);
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert(info.flags & DC_INFO_READ_ONLY);
	memset(buf, 0xee, 4096);
	ck_assert_int_eq(dc_write(d, 0, buf, 4096, 0), DC_E_READ_ONLY);
	ck_assert_int_eq(dc_write(d, 8, buf, 4096, DC_IO_FUA), DC_E_READ_ONLY);
	ck_assert_int_eq(dc_read(d, 0, buf, 4096), 0);
	ck_assert_int_eq(h_check(buf, 4096, 3), -1);
	h_pread_file(path, 4096, buf, 4096);
	ck_assert_int_eq(h_check(buf, 4096, 4), -1);
	ck_assert_int_eq(dc_flush(d), 0);
	dc_close(d);
	free(buf);
	free(path);
}
END_TEST

/* Write through one iovec layout and read back through another; with more
 * segments than the plugin passes from the stack, the bounce path runs. */
static void tf_scatter_roundtrip(int nseg_write, int nseg_read)
{
	char *path = h_tmpfile(MIB, NULL);
	dc_disk *d = h_openf(0, "file:%s", path);
	size_t len = 8192;
	char *src = h_alloc(len), *dst = h_alloc(len), *check = h_alloc(len);
	struct iovec *wiov = calloc((size_t)nseg_write, sizeof(*wiov));
	struct iovec *riov = calloc((size_t)nseg_read, sizeof(*riov));
	size_t off;

	/* Uneven segments: the first nseg-1 are tiny, the last takes the rest. */
	h_fill(src, len, 11);
	for (int i = 0, o = 0; i < nseg_write; i++) {
		size_t n = i < nseg_write - 1 ? (size_t)(1 + i % 3) : len - (size_t)o;

		wiov[i] = (struct iovec){ src + o, n };
		o += (int)n;
	}
	off = 0;
	for (int i = 0; i < nseg_read; i++) {
		size_t n = i < nseg_read - 1 ? (size_t)(2 + i % 5) : len - off;

		riov[i] = (struct iovec){ dst + off, n };
		off += n;
	}
	ck_assert_int_eq(dc_writev(d, 16, wiov, nseg_write, 0), 0);
	h_pread_file(path, 16 * 512, check, len);
	ck_assert_int_eq(h_check(check, len, 11), -1);
	ck_assert_int_eq(dc_readv(d, 16, riov, nseg_read), 0);
	ck_assert_int_eq(h_check(dst, len, 11), -1);
	dc_close(d);
	free(wiov);
	free(riov);
	free(src);
	free(dst);
	free(check);
	free(path);
}

START_TEST(file_scatter_few)
{
	tf_scatter_roundtrip(100, 200);
}
END_TEST

START_TEST(file_scatter_many)
{
	tf_scatter_roundtrip(3000, 1500);
}
END_TEST

/* RLIMIT_FSIZE makes pwritev stop short at the limit: the plugin must go on
 * (and then fail with EFBIG), never report a partial write as success. */
START_TEST(file_short_write_is_continued)
{
	char *path = h_tmpfile(MIB, NULL);
	dc_disk *d = h_openf(0, "file:%s", path);
	char *buf = h_alloc(8192), *check = h_alloc(8192);
	struct rlimit lim = { 4096 + 1024, RLIM_INFINITY };
	int detail = 0;
	struct iovec iov = { buf, 8192 };
	struct dc_io io = { .op = DC_OP_WRITE, .iov = &iov, .iovcnt = 1 };

	signal(SIGXFSZ, SIG_IGN);
	h_fill(buf, 8192, 21);
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
	ck_assert_int_eq(dc_execute(d, &io, &detail), DC_E_IO);
	lim.rlim_cur = RLIM_INFINITY;
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
	ck_assert_int_eq(detail, EFBIG);
	/* The kernel did write the first part: the write was short, not refused. */
	h_pread_file(path, 0, check, 8192);
	ck_assert_int_eq(h_check(check, 4096 + 1024, 21), -1);
	ck_assert_int_eq(h_check_zero(check + 5120, 8192 - 5120), -1);
	dc_close(d);
	free(buf);
	free(check);
	free(path);
}
END_TEST

/* A read that meets EOF inside the disk (the file shrank) is an I/O error, not
 * a short buffer padded with stale or zero bytes. */
START_TEST(file_shrunk_read_fails)
{
	char *path = tf_patterned(MIB, 5);
	dc_disk *d = h_openf(0, "file:%s", path);
	char *buf = h_alloc(8192);

	ck_assert_int_eq(truncate(path, MIB / 2), 0);
	ck_assert_int_eq(dc_read(d, 0, buf, 4096), 0);
	ck_assert_int_eq(h_check(buf, 4096, 5), -1);
	/* Straddling the new end, and wholly past it. */
	ck_assert_int_eq(dc_read(d, 1024 - 8, buf, 8192), DC_E_IO);
	ck_assert_int_eq(dc_read(d, 1500, buf, 512), DC_E_IO);
	ck_assert_uint_eq(dc_sector_count(d), MIB / 512);
	dc_close(d);
	free(buf);
	free(path);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("file");
	TCase *tc = tcase_create("file");

	tcase_add_test(tc, file_info);
	tcase_add_test(tc, file_conformance);
	tcase_add_test(tc, file_sector_does_not_wrap);
	tcase_add_test(tc, file_plugin_range_check);
	tcase_add_test(tc, file_plugin_read_only);
	tcase_add_test(tc, file_read_only);
	tcase_add_test(tc, file_scatter_few);
	tcase_add_test(tc, file_scatter_many);
	tcase_add_test(tc, file_short_write_is_continued);
	tcase_add_test(tc, file_shrunk_read_fails);
	file_add_open_cases(tc);
	file_add_io_cases(tc);
	suite_add_tcase(s, tc);
	suite_add_tcase(s, file_tc_pool());
	return h_run(s);
}
