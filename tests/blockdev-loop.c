/* SPDX-License-Identifier: MIT */
/* The blockdev plugin on loop devices (root): metadata from sysfs, zero-copy
 * and bounced I/O, illegal LBAs, discard, no PR and no eject, two queues, and
 * online resize reaching every waiter up a chain (the kernel's change/RESIZE=1
 * uevent). Part of test-blockdev. */
#include "blockdev-cases.h"
#include "conformance.h"
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* The loop device the loop cases share ("" when there is none). The parent
 * keeps it open; it goes away with the last descriptor (autoclear). */
static char tb_loop[64];

/* A loop device over a fresh file of `size` bytes, detached automatically when
 * its last descriptor closes. Returns the open device fd (path in `path`), or
 * -errno with the reason in `why`. */
static int tb_loop_new(uint64_t size, char *path, size_t pathlen, char **backing,
		       char *why, size_t whylen)
{
	char *file = h_tmpfile(size, NULL);
	int ctl, bfd, fd = -1, err = 0;

	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	bfd = open(file, O_RDWR | O_CLOEXEC);
	if (ctl < 0 || bfd < 0) {
		err = errno;
		snprintf(why, whylen, "/dev/loop-control: %s", strerror(err));
		goto out;
	}
	/* Another process may take the free device first: try a few. */
	for (int tries = 0; tries < 20; tries++) {
		struct loop_config cfg = { .fd = (uint32_t)bfd };
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);

		if (n < 0) {
			err = errno;
			snprintf(why, whylen, "LOOP_CTL_GET_FREE: %s", strerror(err));
			break;
		}
		snprintf(path, pathlen, "/dev/loop%d", n);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			err = errno;
			snprintf(why, whylen, "%s: %s", path, strerror(err));
			break;
		}
		cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
		if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0) {
			err = 0;
			break;
		}
		err = errno;
		snprintf(why, whylen, "LOOP_CONFIGURE %s: %s", path, strerror(err));
		close(fd);
		fd = -1;
		if (err != EBUSY)
			break;
	}
out:
	if (ctl >= 0)
		close(ctl);
	if (bfd >= 0)
		close(bfd);
	if (fd < 0) {
		free(file);
		return -(err ? err : EIO);
	}
	if (backing)
		*backing = file;
	else
		free(file);
	return fd;
}

static char *tb_loop_spec(const char *opts)
{
	return h_fmt("blockdev:%s%s", tb_loop, opts);
}

START_TEST(loop_metadata)
{
	char *spec = tb_loop_spec("");
	dc_disk *d = h_open(spec, 0);
	struct dc_info info;
	char path[128];
	struct stat st;
	FILE *f;
	int fua = -1;

	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, MIB / 512);
	ck_assert_uint_eq(info.sector_size, 512);
	ck_assert_uint_ge(info.physical_sector_size, 512);
	ck_assert_str_eq(info.disk_type, "block_device");
	/* Discard punches holes in the backing file; sysfs gives the granularity. */
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_UNSPECIFIED);
	ck_assert_uint_ge(info.optimal_unmap_sectors, 1);
	ck_assert_int_eq(stat(tb_loop, &st), 0);
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/queue/fua", major(st.st_rdev),
		 minor(st.st_rdev));
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%d", &fua), 1);
	fclose(f);
	ck_assert_int_eq(!!(info.flags & DC_INFO_FUA_RESPECTED), !!fua);
	dc_close(d);
	free(spec);
}
END_TEST

START_TEST(loop_async_io)
{
	char *spec = tb_loop_spec("");
	char *dspec = tb_loop_spec(";direct");

	tb_async_io(spec, false);
	tb_async_io(spec, true);
	tb_async_io(dspec, false);
	tb_async_io(dspec, true);
	free(spec);
	free(dspec);
}
END_TEST

START_TEST(loop_illegal_lba)
{
	char *spec = tb_loop_spec(";direct");
	dc_disk *d = h_open(spec, 0);
	char *buf = h_alloc(PAGE);

	tb_illegal_lba(d, 2048, buf);
	dc_close(d);
	free(buf);
	free(spec);
}
END_TEST

/* BLKDISCARD on a loop device punches the backing file: it reads back zero. */
START_TEST(loop_unmap)
{
	char *spec = tb_loop_spec("");
	dc_disk *d = h_open(spec, 0);
	char *buf = h_alloc(8 * KIB);

	memset(buf, 0xcd, 8 * KIB);
	ck_assert_int_eq(dc_write(d, 100 * 8, buf, 8 * KIB, 0), 0);
	ck_assert_int_eq(dc_flush(d), 0);
	ck_assert_int_eq(dc_unmap(d, 100 * 8, 8, 0), 0);
	ck_assert_int_eq(dc_read(d, 100 * 8, buf, 8 * KIB), 0);
	ck_assert_msg(h_check_zero(buf, 4 * KIB) < 0, "discarded sectors are not zero");
	ck_assert((unsigned char)buf[4 * KIB] == 0xcd);
	ck_assert_int_eq(dc_unmap(d, 0, 0, 0), 0);
	dc_close(d);
	free(buf);
	free(spec);
}
END_TEST

/* Loop devices have no PR operations (EOPNOTSUPP): no PR capability, and every
 * PR call is unsupported. They cannot eject either. */
START_TEST(loop_pr_unsupported)
{
	char *spec = tb_loop_spec("");
	dc_disk *d = h_open(spec, 0);
	struct dc_pr_controller ctl[4];
	struct dc_pr_report rep = { .max_controllers = 4, .controllers = ctl };
	struct dc_pr_caps caps;
	struct dc_info info;
	uint64_t key = 1;
	char *buf = h_alloc(512);

	dc_get_info(d, &info);
	ck_assert(!(info.flags & DC_INFO_PR));
	ck_assert_int_eq(dc_pr_caps(d, &caps), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_report(d, &rep), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_register(d, NULL, 5, -1), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_register(d, &key, 5, 1), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_reserve(d, 5, DC_PR_WRITE_EXCLUSIVE), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_release(d, 5, DC_PR_WRITE_EXCLUSIVE), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_clear(d, 5), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_preempt(d, 5, 6, DC_PR_EXCLUSIVE_ACCESS, true),
			 DC_E_UNSUPPORTED);
	ck_assert(!(info.flags & DC_INFO_EJECT));
	ck_assert_int_eq(dc_eject(d), DC_E_UNSUPPORTED_EJECT);
	/* And the device still works. */
	ck_assert_int_eq(dc_read(d, 0, buf, 512), 0);
	dc_close(d);
	free(buf);
	free(spec);
}
END_TEST

START_TEST(loop_two_queues)
{
	char dev[64], why[160];
	int fd = tb_loop_new(4 * MIB, dev, sizeof(dev), NULL, why, sizeof(why));
	char *spec;

	ck_assert_msg(fd >= 0, "loop device: %s", why);
	spec = h_fmt("blockdev:%s;direct", dev);
	tb_threads(spec, 2, 200);
	free(spec);
	close(fd);
}
END_TEST

/* Online resize: grow the backing file, LOOP_SET_CAPACITY (losetup -c); the
 * kernel's change/RESIZE=1 uevent reaches every waiter up the chain. */
START_TEST(loop_resize_chain)
{
	char dev[64], why[160], *backing = NULL;
	int fd = tb_loop_new(MIB, dev, sizeof(dev), &backing, why, sizeof(why));
	char *spec, *buf = h_alloc(PAGE);
	uint64_t n = 0, t0;
	dc_disk *d;
	int rc;

	ck_assert_msg(fd >= 0, "loop device: %s", why);
	spec = h_fmt("delay:0:blockdev:%s", dev);
	d = h_open(spec, 0);
	ck_assert_uint_eq(dc_sector_count(d), 2048);
	ck_assert_int_eq(dc_read(d, 2048, buf, 512), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(truncate(backing, 3 * MIB), 0);
	t0 = h_now_ms();
	ck_assert_int_eq(ioctl(fd, LOOP_SET_CAPACITY, 0), 0);
	rc = dc_wait_resize(d, 2048, 1000, &n);
	ck_assert_msg(rc == 0, "no resize seen within 1 s: %d", rc);
	ck_assert_uint_eq(n, 3 * 2048);
	ck_assert_uint_le(h_now_ms() - t0, 1000);
	ck_assert_uint_eq(dc_sector_count(d), 3 * 2048);
	/* The new sectors are usable at once. */
	h_fill(buf, PAGE, 77);
	ck_assert_int_eq(dc_write(d, 3 * 2048 - 8, buf, PAGE, 0), 0);
	memset(buf, 0, PAGE);
	ck_assert_int_eq(dc_read(d, 3 * 2048 - 8, buf, PAGE), 0);
	ck_assert(h_check(buf, PAGE, 77) < 0);
	/* Shrink too. */
	ck_assert_int_eq(truncate(backing, MIB / 2), 0);
	ck_assert_int_eq(ioctl(fd, LOOP_SET_CAPACITY, 0), 0);
	ck_assert_int_eq(dc_wait_resize(d, 3 * 2048, 1000, &n), 0);
	ck_assert_uint_eq(n, 1024);
	ck_assert_int_eq(dc_read(d, 1024, buf, 512), DC_E_ILLEGAL_BLOCK);
	dc_close(d);
	close(fd);
	free(buf);
	free(spec);
	free(backing);
}
END_TEST
void blockdev_add_loop(Suite *s)
{
	char why[160] = "not root";
	TCase *tc;
	int loopfd = -1;

	/* loopfd stays open for the whole run: the device goes with it. */
	if (geteuid() == 0)
		loopfd = tb_loop_new(MIB, tb_loop, sizeof(tb_loop), NULL, why,
				     sizeof(why));
	if (loopfd >= 0) {
		char *spec = tb_loop_spec("");
		char *dspec = tb_loop_spec(";direct");

		conformance_add(s, "blockdev-loop", spec);
		conformance_add(s, "blockdev-loop-direct", dspec);
		free(spec);
		free(dspec);
		tc = tcase_create("loop");
		tcase_add_test(tc, loop_metadata);
		tcase_add_test(tc, loop_async_io);
		tcase_add_test(tc, loop_illegal_lba);
		tcase_add_test(tc, loop_unmap);
		tcase_add_test(tc, loop_pr_unsupported);
		tcase_add_test(tc, loop_two_queues);
		tcase_add_test(tc, loop_resize_chain);
		suite_add_tcase(s, tc);
	} else {
		fprintf(stderr, "SKIP loop device cases: %s\n", why);
	}
}
