/* SPDX-License-Identifier: MIT */
/* The disk handle (docs/openvmm-compat.md §1.4-1.5): metadata validation at open, the
 * representability guard, zero-length requests, the ignored-unmap shortcut,
 * read-only disks, resize notification, and failing closed on unknown ops. */
#include "conformance.h"
#include "harness.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static dc_disk *disk_open_ok(const char *spec, uint32_t flags)
{
	struct conformance_opts o = { .open_flags = flags };

	return conformance_open(spec, &o);
}

/* dc_open must fail with -EINVAL and a message containing `needle`. */
static void disk_open_fails(const char *spec, const char *needle)
{
	dc_disk *d = (dc_disk *)0x1;
	int r = dc_open(spec, 0, &d);

	ck_assert_msg(r < 0, "dc_open(%s) succeeded, expected a failure about '%s'", spec,
		      needle);
	ck_assert_msg(d == NULL, "dc_open(%s) failed but left *out set", spec);
	ck_assert_msg(strstr(dc_last_error(), needle),
		      "dc_open(%s): message '%s' does not mention '%s'", spec,
		      dc_last_error(), needle);
}

/* --- Metadata validation (probe plugin) ----------------------------------- */

/* The probe test plugin reports whatever metadata its options say; the core
 * must validate it at open. */
START_TEST(disk_validates_metadata)
{
	dc_disk *d;
	struct dc_info info;

	disk_open_fails("probe;ss=1000", "sector size");
	disk_open_fails("probe;ss=256", "sector size");
	disk_open_fails("probe;ss=0", "sector size");
	disk_open_fails("probe;ss=4096;pss=512", "physical sector size");
	disk_open_fails("probe;ss=512;pss=3000", "physical sector size");
	/* The message names the element at fault. */
	disk_open_fails("delay:0:probe;ss=1000", "probe");

	d = disk_open_ok("probe;ss=4096;pss=8192;count=100", 0);
	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_size, 4096);
	ck_assert_uint_eq(info.physical_sector_size, 8192);
	ck_assert_uint_eq(info.sector_count, 100);
	ck_assert_uint_eq(dc_sector_size(d), 4096);
	ck_assert(!(info.flags &
		    (DC_INFO_READ_ONLY | DC_INFO_FUA_RESPECTED | DC_INFO_HAS_DISK_ID)));
	dc_close(d);

	d = disk_open_ok("probe;ro;fua;id", 0);
	dc_get_info(d, &info);
	ck_assert(info.flags & DC_INFO_READ_ONLY);
	ck_assert(info.flags & DC_INFO_FUA_RESPECTED);
	ck_assert(info.flags & DC_INFO_HAS_DISK_ID);
	dc_close(d);
}
END_TEST

/* The guard stops unrepresentable requests before the plugin, even when the
 * plugin claims a disk larger than any byte offset (it could not check). */
START_TEST(disk_representability_guard)
{
	char spec[96];
	dc_disk *d;
	uint8_t buf[1024] = { 0 };
	uint64_t max = (uint64_t)INT64_MAX >> 9;

	snprintf(spec, sizeof(spec), "probe;count=%llu", (unsigned long long)UINT64_MAX);
	d = disk_open_ok(spec, 0);
	conformance_check_representability(d, spec);
	/* Exactly at the limit is representable and reaches the plugin. */
	ck_assert_int_eq(dc_read(d, max - 1, buf, 512), 0);
	ck_assert_int_eq(dc_read(d, max - 2, buf, 1024), 0);
	ck_assert_int_eq(dc_read(d, max, buf, 512), DC_E_ILLEGAL_BLOCK);
	dc_close(d);

	d = disk_open_ok("probe;ss=4096;count=1000", 0);
	conformance_check_representability(d, "probe;ss=4096");
	conformance_check_sector_range(d, "probe;ss=4096");
	dc_close(d);
}
END_TEST

/* --- The ignored-unmap shortcut -------------------------------------------- */

START_TEST(disk_ignored_unmap_shortcut)
{
	/* The probe refuses unmap on a read-only disk with DC_E_READ_ONLY, so a
	 * success in range shows the core answered without calling it. */
	dc_disk *d = disk_open_ok("probe;ro;unmap=ignored;count=100", 0);
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_IGNORED);
	ck_assert_int_eq(dc_unmap(d, 0, 100, 0), 0);
	ck_assert_int_eq(dc_unmap(d, 99, 1, 0), 0);
	ck_assert_int_eq(dc_unmap(d, 100, 0, 0), 0);
	ck_assert_int_eq(dc_unmap(d, 100, 1, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_unmap(d, 50, 51, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_unmap(d, UINT64_MAX, 1, 0), DC_E_ILLEGAL_BLOCK);
	dc_close(d);

	/* Not ignored: the request reaches the plugin. */
	d = disk_open_ok("probe;unmap=zeroes;count=100", 0);
	dc_get_info(d, &info);
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_ZEROES);
	ck_assert_int_eq(dc_unmap(d, 0, 100, 0), 0);
	ck_assert_int_eq(dc_unmap(d, 100, 1, 0), DC_E_ILLEGAL_BLOCK);
	dc_close(d);
}
END_TEST

/* --- Zero-length requests --------------------------------------------------- */

static const char *const zl_specs[] = { "mem:1M", "file:@TMP@", "delay:0:mem:1M",
					"memdiff:file:@TMP@" };

START_TEST(disk_zero_length)
{
	dc_disk *d = disk_open_ok(zl_specs[_i], 0);
	uint64_t n = dc_sector_count(d);
	uint8_t buf[512];

	ck_assert_int_eq(dc_read(d, 0, buf, 0), 0);
	ck_assert_int_eq(dc_write(d, 0, buf, 0, 0), 0);
	ck_assert_int_eq(dc_write(d, 0, buf, 0, DC_IO_FUA), 0);
	ck_assert_int_eq(dc_readv(d, 5, NULL, 0), 0);
	ck_assert_int_eq(dc_unmap(d, 0, 0, 0), 0);
	ck_assert_int_eq(dc_read(d, n - 1, buf, 0), 0);
	ck_assert_int_eq(dc_read(d, UINT64_MAX, buf, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_write(d, UINT64_MAX, buf, 0, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_unmap(d, UINT64_MAX, 0, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_read(d, n + 1, buf, 0), DC_E_ILLEGAL_BLOCK);
	dc_close(d);
}
END_TEST

/* --- Read-only disks -------------------------------------------------------- */

static const char *const ro_specs[] = { "mem:1M", "file:@TMP@", "delay:0:mem:1M",
					"memdiff:file:@TMP@", "probe;ro" };

START_TEST(disk_read_only)
{
	/* Opened read-only, or (probe;ro) read-only by nature. */
	dc_disk *d = disk_open_ok(ro_specs[_i], _i == 4 ? 0 : DC_OPEN_READ_ONLY);
	struct dc_info info;
	uint8_t *buf = h_alloc(4096);
	struct iovec iov[2] = { { buf, 512 }, { buf + 512, 1024 } };

	dc_get_info(d, &info);
	ck_assert(info.flags & DC_INFO_READ_ONLY);
	ck_assert_int_eq(dc_read(d, 0, buf, 4096), 0);
	h_fill(buf, 4096, 7);
	ck_assert_int_eq(dc_write(d, 0, buf, 4096, 0), DC_E_READ_ONLY);
	ck_assert_int_eq(dc_write(d, 1, buf, 512, DC_IO_FUA), DC_E_READ_ONLY);
	ck_assert_int_eq(dc_writev(d, 2, iov, 2, 0), DC_E_READ_ONLY);
	/* Out of range but representable: either answer is right; not a crash. */
	int r = dc_write(d, dc_sector_count(d), buf, 512, 0);
	ck_assert_msg(r == DC_E_READ_ONLY || r == DC_E_ILLEGAL_BLOCK, "= %d", r);
	ck_assert_int_eq(dc_write(d, UINT64_MAX, buf, 512, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_resize(d, 16), -EROFS);
	memset(buf, 0, 4096);
	ck_assert_int_eq(dc_read(d, 0, buf, 4096), 0);
	ck_assert_int_lt(h_check_zero(buf, 4096), 0);
	dc_close(d);
	free(buf);
}
END_TEST

/* The file under a read-only disk is never written. */
START_TEST(disk_read_only_file_untouched)
{
	char *path = h_tmpfile(64 * 1024, NULL), spec[512];
	uint8_t *buf = h_alloc(4096), *got = h_alloc(4096);
	int fd = open(path, O_RDWR);
	dc_disk *d;

	h_fill(buf, 4096, 99);
	ck_assert_int_eq(pwrite(fd, buf, 4096, 0), 4096);
	snprintf(spec, sizeof(spec), "file:%s", path);
	d = disk_open_ok(spec, DC_OPEN_READ_ONLY);
	h_fill(got, 4096, 5);
	ck_assert_int_eq(dc_write(d, 0, got, 4096, 0), DC_E_READ_ONLY);
	ck_assert_int_eq(dc_read(d, 0, got, 4096), 0);
	ck_assert_int_lt(h_check(got, 4096, 99), 0);
	dc_close(d);
	ck_assert_int_eq(pread(fd, got, 4096, 0), 4096);
	ck_assert_int_lt(h_check(got, 4096, 99), 0);
	close(fd);
	free(path);
	free(got);
	free(buf);
}
END_TEST

/* --- Resize ------------------------------------------------------------------ */

struct disk_waiter {
	dc_disk *d;
	uint64_t known, got;
	int rc;
};

static void *disk_wait_thread(void *arg)
{
	struct disk_waiter *w = arg;

	w->rc = dc_wait_resize(w->d, w->known, -1, &w->got);
	return NULL;
}

static bool disk_fd_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1;
}

static void disk_drain_fd(int fd)
{
	uint64_t v;

	while (read(fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
		;
}

/* dc_resize on the chain, observed at the top: count, eventfd, waiters. */
static void disk_check_resize(const char *spec)
{
	dc_disk *d = disk_open_ok(spec, 0);
	uint64_t n = dc_sector_count(d), got = 0;
	int fd = dc_resize_fd(d);
	struct disk_waiter w = { .d = d, .known = n };
	pthread_t t;
	uint8_t *buf = h_alloc(512);

	ck_assert_int_ge(fd, 0);
	ck_assert_msg(!disk_fd_readable(fd), "%s: resize fd readable before a resize",
		      spec);
	/* Nothing changed: a bounded wait times out. */
	ck_assert_int_eq(dc_wait_resize(d, n, 10, &got), -ETIMEDOUT);
	/* A blocked waiter is woken by the resize. */
	ck_assert_int_eq(pthread_create(&t, NULL, disk_wait_thread, &w), 0);
	h_fill(buf, 512, 3);
	ck_assert_int_eq(dc_write(d, n / 2 - 1, buf, 512, 0), 0);
	int r = dc_resize(d, n / 2);
	ck_assert_msg(r == 0, "%s: dc_resize = %d: %s", spec, r, dc_last_error());
	pthread_join(t, NULL);
	ck_assert_int_eq(w.rc, 0);
	ck_assert_uint_eq(w.got, n / 2);
	ck_assert_uint_eq(dc_sector_count(d), n / 2);
	struct dc_info info;
	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, n / 2);
	ck_assert_msg(disk_fd_readable(fd), "%s: resize fd not readable after resize",
		      spec);
	disk_drain_fd(fd);
	ck_assert(!disk_fd_readable(fd));
	/* The old count is stale: wait returns at once. */
	ck_assert_int_eq(dc_wait_resize(d, n, 0, &got), 0);
	ck_assert_uint_eq(got, n / 2);
	/* The new end is enforced; data below it survives. */
	ck_assert_int_eq(dc_read(d, n / 2, buf, 512), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_write(d, n / 2, buf, 512, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_unmap(d, n / 2 - 1, 2, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_read(d, n / 2 - 1, buf, 512), 0);
	ck_assert_int_lt(h_check(buf, 512, 3), 0);
	/* Grow back: the count follows and the fd fires again. */
	ck_assert_int_eq(dc_resize(d, n), 0);
	ck_assert_uint_eq(dc_sector_count(d), n);
	ck_assert(disk_fd_readable(fd));
	ck_assert_int_eq(dc_read(d, n - 1, buf, 512), 0);
	ck_assert_int_eq(dc_resize(d, 0), -EINVAL);
	ck_assert_uint_eq(dc_sector_count(d), n);
	free(buf);
	dc_close(d);
}

START_TEST(disk_blocking_plugin_detail)
{
	/* A blocking plugin's io() leaves the detail in req->detail; the core
	 * must read it after io() returns (this once read it before). */
	dc_disk *d = disk_open_ok("probe;medium=9", 0);
	char buf[4096];
	struct iovec iov = { buf, sizeof(buf) };
	struct dc_io io = { .op = DC_OP_READ, .sector = 8, .iov = &iov, .iovcnt = 1 };
	int detail = -1;

	ck_assert_int_eq(dc_execute(d, &io, &detail), DC_E_MEDIUM);
	ck_assert_int_eq(detail, DC_MEDIUM_UNRECOVERED_READ);
	io.sector = 16;
	ck_assert_int_eq(dc_execute(d, &io, &detail), 0);
	dc_close(d);
}
END_TEST

START_TEST(disk_resize_mem)
{
	disk_check_resize("mem:1M");
}
END_TEST

START_TEST(disk_resize_through_delay)
{
	disk_check_resize("delay:0:mem:1M");
}
END_TEST

START_TEST(disk_resize_unsupported)
{
	dc_disk *d = disk_open_ok("file:@TMP@", 0);
	uint64_t n = dc_sector_count(d);

	ck_assert_int_eq(dc_resize(d, n / 2), -EOPNOTSUPP);
	ck_assert(dc_last_error()[0]);
	ck_assert_uint_eq(dc_sector_count(d), n);
	dc_close(d);
}
END_TEST

/* --- Fail closed --------------------------------------------------------------- */

static const char *const closed_specs[] = { "mem:1M", "delay:0:mem:1M",
					    "delay:0:memdiff:file:@TMP@", "file:@TMP@" };

START_TEST(disk_fail_closed)
{
	dc_disk *d = disk_open_ok(closed_specs[_i], 0);
	struct dc_info info;
	struct dc_pr_caps caps;
	struct dc_pr_controller ctl[4];
	struct dc_pr_report rep = { .max_controllers = 4, .controllers = ctl };
	uint64_t key = 1;

	dc_get_info(d, &info);
	ck_assert(!(info.flags & DC_INFO_PR));
	ck_assert(!(info.flags & DC_INFO_EJECT));
	ck_assert_int_eq(dc_pr_caps(d, &caps), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_report(d, &rep), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_register(d, NULL, 5, -1), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_register(d, &key, 5, 1), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_reserve(d, 5, DC_PR_WRITE_EXCLUSIVE), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_release(d, 5, DC_PR_WRITE_EXCLUSIVE), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_clear(d, 5), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_preempt(d, 5, 6, DC_PR_EXCLUSIVE_ACCESS, true),
			 DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_eject(d), DC_E_UNSUPPORTED_EJECT);
	/* Still a working disk. */
	uint8_t buf[512];
	ck_assert_int_eq(dc_read(d, 0, buf, sizeof(buf)), 0);
	dc_close(d);
}
END_TEST

/* PR reaches prwrap through decorators that forward it, and stops (fails
 * closed) at elements that do not: the layered disk and striped. Whatever the
 * chain answers, info's DC_INFO_PR agrees with it. */
static const struct {
	const char *spec;
	bool pr;
} pr_chains[] = {
	{ "prwrap:mem:1M", true },
	{ "delay:0:prwrap:mem:1M", true },
	{ "prwrap:delay:0:mem:1M", true },
	{ "memdiff:prwrap:mem:1M", false },
	{ "striped:[prwrap:mem:1M,prwrap:mem:1M]", false },
	{ "delay:0:memdiff:prwrap:file:@TMP@", false },
};

START_TEST(disk_fail_closed_pr)
{
	dc_disk *d = disk_open_ok(pr_chains[_i].spec, 0);
	const char *spec = pr_chains[_i].spec;
	struct dc_info info;
	struct dc_pr_caps caps;
	int r;

	dc_get_info(d, &info);
	ck_assert_msg(!!(info.flags & DC_INFO_PR) == pr_chains[_i].pr,
		      "%s: DC_INFO_PR is %s", spec,
		      info.flags & DC_INFO_PR ? "set" : "clear");
	r = dc_pr_register(d, NULL, 0x1234, -1);
	if (pr_chains[_i].pr) {
		ck_assert_msg(r == 0, "%s: register = %d (%s)", spec, r, dc_strerror(r));
		ck_assert_int_eq(dc_pr_caps(d, &caps), 0);
		ck_assert_int_eq(dc_pr_reserve(d, 0x1234, DC_PR_WRITE_EXCLUSIVE), 0);
		ck_assert_int_eq(dc_pr_release(d, 0x1234, DC_PR_WRITE_EXCLUSIVE), 0);
	} else {
		ck_assert_msg(r == DC_E_UNSUPPORTED,
			      "%s: register = %d (%s), expected "
			      "unsupported",
			      spec, r, dc_strerror(r));
		ck_assert_int_eq(dc_pr_caps(d, &caps), DC_E_UNSUPPORTED);
		ck_assert_int_eq(dc_pr_clear(d, 0x1234), DC_E_UNSUPPORTED);
	}
	ck_assert_int_eq(dc_eject(d), DC_E_UNSUPPORTED_EJECT);
	dc_close(d);
}
END_TEST

/* --- Control path --------------------------------------------------------------- */

START_TEST(disk_open_errors)
{
	dc_disk *d = (dc_disk *)0x1;

	ck_assert_int_eq(dc_open(NULL, 0, &d), -EINVAL);
	ck_assert_int_eq(dc_open("mem:1M", 0x100, &d), -EINVAL);
	disk_open_fails("nosuchkind:x", "nosuchkind");
	disk_open_fails("mem:lots", "lots");
	disk_open_fails("", "");
	disk_open_fails("delay:0:nosuchkind:x", "nosuchkind");
	disk_open_fails("file:/nonexistent/diskcore/x.img",
			"/nonexistent/diskcore/x.img");
	/* A failed open does not disturb a later one. */
	d = disk_open_ok("mem:64K", 0);
	ck_assert_uint_eq(dc_sector_count(d), 128);
	dc_close(d);
}
END_TEST

START_TEST(disk_strerror)
{
	static const int codes[] = {
		0,
		DC_E_ILLEGAL_BLOCK,
		DC_E_INVALID_INPUT,
		DC_E_IO,
		DC_E_MEDIUM,
		DC_E_MEMORY_ACCESS,
		DC_E_READ_ONLY,
		DC_E_RESERVATION_CONFLICT,
		DC_E_ABORTED_PREEMPT,
		DC_E_UNSUPPORTED_EJECT,
		DC_E_UNSUPPORTED,
	};
	const size_t n = sizeof(codes) / sizeof(codes[0]);

	for (size_t i = 0; i < n; i++) {
		const char *a = dc_strerror(codes[i]);

		ck_assert_msg(a && a[0], "dc_strerror(%d) is empty", codes[i]);
		for (size_t j = 0; j < i; j++)
			ck_assert_msg(strcmp(a, dc_strerror(codes[j])) != 0,
				      "dc_strerror(%d) == dc_strerror(%d) = '%s'",
				      codes[i], codes[j], a);
	}
	ck_assert_ptr_nonnull(dc_strerror(-12345));
	ck_assert_ptr_nonnull(dc_strerror(42));
}
END_TEST

struct disk_visit {
	int calls;
	int max_depth;
	bool first_is_top;
	char plugins[8][24];
	int nplugins;
	int stop_after;
};

static int disk_visit_fn(void *arg, int depth, const char *plugin, const char *form,
			 const struct dc_info *info, const char *key, const char *value)
{
	struct disk_visit *v = arg;

	(void)form;
	(void)value;
	ck_assert_ptr_nonnull(plugin);
	ck_assert_ptr_nonnull(info);
	if (v->calls++ == 0)
		v->first_is_top = depth == 0;
	if (depth > v->max_depth)
		v->max_depth = depth;
	if (!key && v->nplugins < 8)
		snprintf(v->plugins[v->nplugins++], 24, "%s", plugin);
	if (v->stop_after && v->calls >= v->stop_after)
		return 42;
	return 0;
}

START_TEST(disk_describe)
{
	dc_disk *d = disk_open_ok("delay:0:memdiff:file:@TMP@", 0);
	struct disk_visit v = { 0 };
	bool saw_delay = false, saw_ram = false, saw_file = false;

	ck_assert_int_eq(dc_describe(d, disk_visit_fn, &v), 0);
	ck_assert(v.first_is_top);
	ck_assert_int_ge(v.max_depth, 2);
	for (int i = 0; i < v.nplugins; i++) {
		saw_delay |= !strcmp(v.plugins[i], "delay");
		saw_ram |= !strcmp(v.plugins[i], "ram");
		saw_file |= !strcmp(v.plugins[i], "file");
	}
	ck_assert_msg(saw_delay && saw_ram && saw_file, "describe missed a plugin");
	ck_assert_str_eq(v.plugins[0], "delay");
	/* A visitor's non-zero return stops the walk and is returned. */
	memset(&v, 0, sizeof(v));
	v.stop_after = 2;
	ck_assert_int_eq(dc_describe(d, disk_visit_fn, &v), 42);
	ck_assert_int_eq(v.calls, 2);
	dc_close(d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("disk");
	TCase *tc = tcase_create("disk");
	TCase *probe = tcase_create("probe");

	/* The probe test plugin is built in its own directory. */
	h_plugin_path_add("tests/plugins/probe");

	tcase_add_test(probe, disk_validates_metadata);
	tcase_add_test(probe, disk_representability_guard);
	tcase_add_test(probe, disk_ignored_unmap_shortcut);
	tcase_add_test(probe, disk_blocking_plugin_detail);
	tcase_add_loop_test(tc, disk_zero_length, 0,
			    (int)(sizeof(zl_specs) / sizeof(zl_specs[0])));
	tcase_add_loop_test(tc, disk_read_only, 0,
			    (int)(sizeof(ro_specs) / sizeof(ro_specs[0])));
	tcase_add_test(tc, disk_read_only_file_untouched);
	tcase_add_test(tc, disk_resize_mem);
	tcase_add_test(tc, disk_resize_through_delay);
	tcase_add_test(tc, disk_resize_unsupported);
	tcase_add_loop_test(tc, disk_fail_closed, 0,
			    (int)(sizeof(closed_specs) / sizeof(closed_specs[0])));
	tcase_add_loop_test(tc, disk_fail_closed_pr, 0,
			    (int)(sizeof(pr_chains) / sizeof(pr_chains[0])));
	tcase_add_test(tc, disk_open_errors);
	tcase_add_test(tc, disk_strerror);
	tcase_add_test(tc, disk_describe);
	suite_add_tcase(s, probe);
	suite_add_tcase(s, tc);
	return h_run(s);
}
