/* SPDX-License-Identifier: MIT */
/* parentpath: relative paths inside the directory open, every way out is
 * refused (absolute elsewhere, "..", symlinks out, magic links), absolute
 * paths inside count, and ;parents=any opens what it names. */
#include "parentpath/parentpath.h"

#include "check-run.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char pp_root[PATH_MAX], pp_dir[PATH_MAX + 8];

/* root/d (the image's directory) with d/p, d/sub/q, root/out, and links. */
static void pp_setup(void)
{
	char tmpl[] = "/tmp/parentpath-XXXXXX", path[PATH_MAX + 64];
	const char *files[] = { "d/p", "d/sub/q", "out" };

	ck_assert_ptr_nonnull(mkdtemp(tmpl));
	ck_assert_ptr_nonnull(realpath(tmpl, pp_root));
	snprintf(pp_dir, sizeof(pp_dir), "%s/d", pp_root);
	ck_assert_int_eq(mkdir(pp_dir, 0700), 0);
	snprintf(path, sizeof(path), "%s/sub", pp_dir);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	for (size_t i = 0; i < 3; i++) {
		int fd;

		snprintf(path, sizeof(path), "%s/%s", pp_root, files[i]);
		fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
		ck_assert_int_ge(fd, 0);
		close(fd);
	}
	snprintf(path, sizeof(path), "%s/in", pp_dir);
	ck_assert_int_eq(symlink("sub/q", path), 0);
	snprintf(path, sizeof(path), "%s/up", pp_dir);
	ck_assert_int_eq(symlink("../out", path), 0);
	snprintf(path, sizeof(path), "%s/abs", pp_dir);
	ck_assert_int_eq(symlink("/etc/passwd", path), 0);
}

/* ref opens (rule) and is the file want (relative to root), or fails with err. */
static void pp_expect(const char *ref, enum parentpath_rule rule, const char *want,
		      int err)
{
	int fd = parentpath_open(pp_dir, ref, rule);

	if (fd == -ENOSYS)
		return; /* no openat2 here: refused, which is what the rule asks */
	if (!want) {
		ck_assert_msg(fd == err, "%s: %d, expected %d", ref, fd, err);
		ck_assert(parentpath_refused(fd) || fd == -ENOENT);
		ck_assert_ptr_nonnull(parentpath_why(fd));
		return;
	}
	ck_assert_msg(fd >= 0, "%s: %d (%s)", ref, fd, parentpath_why(fd));
	{
		char *got = parentpath_fd_path(fd), expect[PATH_MAX + 64];

		snprintf(expect, sizeof(expect), "%s/%s", pp_root, want);
		ck_assert_str_eq(got, expect);
		free(got);
	}
	close(fd);
}

START_TEST(beneath)
{
	char abs_in[PATH_MAX + 16], abs_out[PATH_MAX + 16];

	pp_setup();
	snprintf(abs_in, sizeof(abs_in), "%s/sub/q", pp_dir);
	snprintf(abs_out, sizeof(abs_out), "%s/out", pp_root);
	pp_expect("p", PARENTPATH_BENEATH, "d/p", 0);
	pp_expect("./sub/q", PARENTPATH_BENEATH, "d/sub/q", 0);
	pp_expect("sub/../p", PARENTPATH_BENEATH, "d/p", 0);
	pp_expect("in", PARENTPATH_BENEATH, "d/sub/q", 0);
	pp_expect(abs_in, PARENTPATH_BENEATH, "d/sub/q", 0);
	pp_expect("../out", PARENTPATH_BENEATH, NULL, -EXDEV);
	pp_expect("sub/../../out", PARENTPATH_BENEATH, NULL, -EXDEV);
	pp_expect("up", PARENTPATH_BENEATH, NULL, -EXDEV);
	pp_expect("abs", PARENTPATH_BENEATH, NULL, -EXDEV);
	pp_expect("/etc/passwd", PARENTPATH_BENEATH, NULL, -EXDEV);
	pp_expect(abs_out, PARENTPATH_BENEATH, NULL, -EXDEV);
	pp_expect(pp_dir, PARENTPATH_BENEATH, NULL, -EXDEV);
	pp_expect("/proc/self/fd/0", PARENTPATH_BENEATH, NULL, -EXDEV);
	pp_expect("none", PARENTPATH_BENEATH, NULL, -ENOENT);
	pp_expect("", PARENTPATH_BENEATH, NULL, -ENOENT);
}
END_TEST

START_TEST(any)
{
	char abs_out[PATH_MAX + 16];

	pp_setup();
	snprintf(abs_out, sizeof(abs_out), "%s/out", pp_root);
	pp_expect("../out", PARENTPATH_ANY, "out", 0);
	pp_expect("up", PARENTPATH_ANY, "out", 0);
	pp_expect(abs_out, PARENTPATH_ANY, "out", 0);
	pp_expect("p", PARENTPATH_ANY, "d/p", 0);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = { beneath, any, NULL };

	return common_check_run("parentpath", tests);
}
