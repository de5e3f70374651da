/* SPDX-License-Identifier: MIT */
/* The blockdev plugin (docs/openvmm-compat.md §2.5 and the disk_blockdevice cases of
 * §7.2) on files: conformance; metadata; zero-copy and bounced I/O with and
 * without FUA; illegal LBAs; hole punching; no PR or eject. Many queues and
 * deep queues are in blockdev-queues.c, a missing io_uring in blockdev-uring.c,
 * the loop device cases (root) in blockdev-loop.c. */
#include "blockdev-cases.h"
#include "conformance.h"
#include "harness.h"

#include <diskcore/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- Files -------------------------------------------------------------------- */

START_TEST(file_metadata)
{
	char *path = h_tmpfile(MIB, NULL);
	char *spec = h_fmt("blockdev:%s", path);
	dc_disk *d = h_open(spec, 0);
	struct dc_info info;
	struct stat st;

	ck_assert_int_eq(stat(path, &st), 0);
	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, MIB / 512);
	ck_assert_uint_eq(info.sector_size, 512);
	ck_assert_uint_eq(info.physical_sector_size,
			  st.st_blksize > 512 ? (uint32_t)st.st_blksize : 512);
	ck_assert_str_eq(info.disk_type, "block_device");
	ck_assert(
		!(info.flags & (DC_INFO_FUA_RESPECTED | DC_INFO_PR | DC_INFO_READ_ONLY)));
	/* ext4, xfs, btrfs, tmpfs all punch holes. */
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_ZEROES);
	ck_assert_uint_eq(info.optimal_unmap_sectors, (uint32_t)st.st_blksize / 512);
	dc_close(d);
	free(spec);

	/* Read-only: no hole punching, no FUA, writes refused. */
	spec = h_fmt("blockdev:%s", path);
	d = h_open(spec, DC_OPEN_READ_ONLY);
	dc_get_info(d, &info);
	ck_assert(info.flags & DC_INFO_READ_ONLY);
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_IGNORED);
	dc_close(d);
	free(spec);
	free(path);
}
END_TEST

START_TEST(file_bad_inputs)
{
	char *odd = h_tmpfile(MIB + 100, NULL);

	/* docs/openvmm-compat.md §2.5: the size must be a whole number of sectors. */
	h_open_fails(0, -EINVAL, "not a multiple", "blockdev:%s", odd);
	h_open_fails(0, -ENOENT, "missing", "blockdev:%s/missing", h_tmpdir());
	h_open_fails(0, -EINVAL, "not a block device or regular file",
		     "blockdev:/dev/null");
	free(odd);
}
END_TEST

/* §7.2 test_async_disk_io[_fua]: four pages written from "guest pages" 3,2,1,0
 * and read back into 7,6,5,4. Then the same from a buffer at offset 512 and at
 * an odd offset (bounced when O_DIRECT cannot take it). */
void tb_async_io(const char *spec, bool fua)
{
	dc_disk *d = h_open(spec, 0);
	char *mem = h_alloc(9 * PAGE), *chk = h_alloc(4 * PAGE);
	uint32_t flags = fua ? DC_IO_FUA : 0;
	struct iovec w[4], r[4];
	static const size_t offs[] = { 512, 100 };

	for (int i = 0; i < 4; i++) {
		w[i] = (struct iovec){ mem + (size_t)(3 - i) * PAGE, PAGE };
		r[i] = (struct iovec){ mem + (size_t)(7 - i) * PAGE, PAGE };
		h_fill(w[i].iov_base, PAGE, 40 + (uint64_t)i);
	}
	ck_assert_int_eq(dc_writev(d, 16, w, 4, flags), 0);
	if (!fua)
		ck_assert_int_eq(dc_flush(d), 0);
	ck_assert_int_eq(dc_readv(d, 16, r, 4), 0);
	for (int i = 0; i < 4; i++)
		ck_assert_msg(h_check(r[i].iov_base, PAGE, 40 + (uint64_t)i) < 0,
			      "%s: page %d differs", spec, i);

	for (size_t k = 0; k < 2; k++) {
		char *buf = mem + offs[k];

		h_fill(buf, 3 * PAGE, 50 + k);
		ck_assert_int_eq(dc_write(d, 64, buf, 3 * PAGE, flags), 0);
		if (!fua)
			ck_assert_int_eq(dc_flush(d), 0);
		memset(mem, 0, 9 * PAGE);
		ck_assert_int_eq(dc_read(d, 64, buf, 3 * PAGE), 0);
		ck_assert_msg(h_check(buf, 3 * PAGE, 50 + k) < 0,
			      "%s: unaligned (+%zu) round trip differs", spec, offs[k]);
		/* And through an aligned buffer: the bytes really are on disk. */
		ck_assert_int_eq(dc_read(d, 64, chk, 3 * PAGE), 0);
		ck_assert(h_check(chk, 3 * PAGE, 50 + k) < 0);
	}
	dc_close(d);
	free(mem);
	free(chk);
}

START_TEST(file_async_io)
{
	static const char *const opts[] = { "", ";direct" };
	char *path = h_tmpfile(MIB, NULL);

	for (int i = 0; i < 2; i++) {
		char *spec = h_fmt("blockdev:%s%s", path, opts[i]);

		tb_async_io(spec, false);
		tb_async_io(spec, true);
		free(spec);
	}
	free(path);
}
END_TEST

/* More segments than a request keeps inline (the iovec array goes on the
 * heap), and more than preadv takes (bounced), buffered and O_DIRECT. */
START_TEST(file_many_segments)
{
	static const int counts[] = { 17, 64, 1100 };
	static const char *const opts[] = { "", ";direct" };
	char *path = h_tmpfile(2 * MIB, NULL);
	char *mem = h_alloc(1100 * 512), *chk = h_alloc(1100 * 512);
	struct iovec *iov = calloc(1100, sizeof(*iov));

	ck_assert_ptr_nonnull(iov);
	for (int o = 0; o < 2; o++) {
		char *spec = h_fmt("blockdev:%s%s", path, opts[o]);
		dc_disk *d = h_open(spec, 0);

		for (int k = 0; k < 3; k++) {
			int n = counts[k];
			uint64_t seed = 300 + (uint64_t)(o * 10 + k);

			/* Segment i is sector i of the pattern, scattered in memory. */
			h_fill(chk, (size_t)n * 512, seed);
			for (int i = 0; i < n; i++) {
				iov[i].iov_base = mem + (size_t)((i * 7) % n) * 512;
				iov[i].iov_len = 512;
				memcpy(iov[i].iov_base, chk + (size_t)i * 512, 512);
			}
			ck_assert_int_eq(dc_writev(d, 100, iov, n, 0), 0);
			memset(mem, 0, (size_t)n * 512);
			ck_assert_int_eq(dc_readv(d, 100, iov, n), 0);
			for (int i = 0; i < n; i++)
				ck_assert_msg(!memcmp(iov[i].iov_base,
						      chk + (size_t)i * 512, 512),
					      "%s: %d segments: segment %d differs", spec,
					      n, i);
			/* Contiguously, the same bytes in order. */
			memset(mem, 0, (size_t)n * 512);
			ck_assert_int_eq(dc_read(d, 100, mem, (size_t)n * 512), 0);
			ck_assert(h_check(mem, (size_t)n * 512, seed) < 0);
		}
		dc_close(d);
		free(spec);
	}
	free(iov);
	free(mem);
	free(chk);
	free(path);
}
END_TEST

/* §7.2 test_illegal_lba on a disk of `end` sectors: past the end and across
 * it is refused, the last sector is not. */
void tb_illegal_lba(dc_disk *d, uint64_t end, char *buf)
{
	ck_assert_int_eq(dc_write(d, (uint64_t)INT64_MAX / 512, buf, 512, 0),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_write(d, end, buf, 512, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_read(d, end - 1, buf, 1024), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_unmap(d, end - 8, 9, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_read(d, end - 1, buf, 512), 0);
}

/* §7.2 test_illegal_lba, and a file that shrank under us: the read past its
 * new end meets EOF, which is an illegal block, not zeroes. */
START_TEST(file_illegal_lba)
{
	char *path = h_tmpfile(64 * KIB, NULL);
	char *spec = h_fmt("blockdev:%s", path);
	dc_disk *d = h_open(spec, 0);
	char *buf = h_alloc(PAGE);

	tb_illegal_lba(d, 128, buf);
	ck_assert_int_eq(truncate(path, 32 * KIB), 0);
	ck_assert_int_eq(dc_read(d, 100, buf, 512), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_read(d, 62, buf, 4 * 512), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_read(d, 60, buf, 4 * 512), 0);
	/* A write would extend the file: refused against the size at open. */
	ck_assert_int_eq(dc_write(d, 128, buf, 512, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_read(d, 0, buf, 512), 0);
	dc_close(d);
	free(buf);
	free(spec);
	free(path);
}
END_TEST

/* §7.2 test_unmap_file_punch_hole. */
START_TEST(file_punch_hole)
{
	char *path = h_tmpfile(MIB, NULL);
	char *spec = h_fmt("blockdev:%s;direct", path);
	dc_disk *d = h_open(spec, 0);
	char *buf = h_alloc(8 * KIB);
	struct dc_info info;
	int fd;

	dc_get_info(d, &info);
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_ZEROES);
	memset(buf, 0xcd, 8 * KIB);
	ck_assert_int_eq(dc_write(d, 0, buf, 8 * KIB, 0), 0);
	ck_assert_int_eq(dc_flush(d), 0);
	ck_assert_int_eq(dc_unmap(d, 0, 8, 0), 0);
	memset(buf, 0x11, 8 * KIB);
	ck_assert_int_eq(dc_read(d, 0, buf, 8 * KIB), 0);
	ck_assert_msg(h_check_zero(buf, 4 * KIB) < 0, "unmapped sectors are not zero");
	for (int i = 4 * KIB; i < 8 * KIB; i++)
		ck_assert_msg((unsigned char)buf[i] == 0xcd, "byte %d lost", i);
	/* It really is a hole in the file. */
	fd = open(path, O_RDONLY);
	ck_assert(fd >= 0);
	ck_assert_int_eq(lseek(fd, 0, SEEK_HOLE), 0);
	close(fd);
	ck_assert_int_eq(dc_unmap(d, 2040, 8, 0), 0);
	ck_assert_int_eq(dc_unmap(d, 2048, 0, 0), 0);
	dc_close(d);
	free(buf);
	free(spec);
	free(path);
}
END_TEST

/* Files are not ejectable, and have no PR. */
START_TEST(file_eject_pr)
{
	char *path = h_tmpfile(MIB, NULL);
	char *spec = h_fmt("blockdev:%s", path);
	dc_disk *d = h_open(spec, 0);
	struct dc_pr_caps caps;

	ck_assert_int_eq(dc_eject(d), DC_E_UNSUPPORTED_EJECT);
	ck_assert_int_eq(dc_pr_caps(d, &caps), DC_E_UNSUPPORTED);
	dc_close(d);
	free(spec);
	free(path);
}
END_TEST

/* Can O_DIRECT be used in the temporary directory (not on every tmpfs)? */
static bool tb_direct_ok(void)
{
	char *path = h_tmpfile(4096, NULL);
	int fd = open(path, O_RDWR | O_DIRECT);

	free(path);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

int main(void)
{
	Suite *s = suite_create("blockdev");
	struct conformance_opts ro = { .open_flags = DC_OPEN_READ_ONLY };
	bool direct = tb_direct_ok();
	TCase *tc;

	conformance_add(s, "blockdev-file", "blockdev:@TMP@");
	conformance_add_opts(s, "blockdev-file-ro", "blockdev:@TMP@", &ro);
	conformance_add(s, "delay-blockdev-file", "delay:0:blockdev:@TMP@");
	if (direct)
		conformance_add(s, "blockdev-file-direct", "blockdev:@TMP@;direct");

	tc = tcase_create("file");
	tcase_add_test(tc, file_metadata);
	tcase_add_test(tc, file_bad_inputs);
	if (direct) {
		tcase_add_test(tc, file_many_segments);
		tcase_add_test(tc, file_async_io);
		tcase_add_test(tc, file_punch_hole);
	} else {
		fprintf(stderr, "SKIP O_DIRECT cases: not supported in %s\n", h_tmpdir());
	}
	tcase_add_test(tc, file_illegal_lba);
	tcase_add_test(tc, file_eject_pr);
	blockdev_add_queues(tc, direct);
	blockdev_add_no_io_uring(tc);
	suite_add_tcase(s, tc);

	blockdev_add_loop(s);
	return h_run(s);
}
