/* SPDX-License-Identifier: MIT */
/* Where io_uring is refused (kernel.io_uring_disabled=2, a container's
 * seccomp profile): blockdev: fails to open with a clear message, file: falls
 * back to the worker pool. Part of test-blockdev. */
#include "blockdev-cases.h"
#include "harness.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Make io_uring_setup fail with EPERM in this process, as
 * kernel.io_uring_disabled=2 or a container's seccomp profile would. */
static int tb_deny_io_uring(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		return -errno;
	return 0;
}

START_TEST(no_io_uring)
{
	char *path = h_tmpfile(MIB, NULL);
	char *spec = h_fmt("blockdev:%s", path);
	int pipefd[2], status;
	char msg[512] = "";
	ssize_t n;
	pid_t pid;

	ck_assert_int_eq(pipe(pipefd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dc_disk *d = NULL;
		int rc = tb_deny_io_uring();

		if (rc == 0)
			rc = dc_open(spec, 0, &d);
		dprintf(pipefd[1], "%d %s", rc, rc ? dc_last_error() : "");
		_exit(0);
	}
	close(pipefd[1]);
	n = read(pipefd[0], msg, sizeof(msg) - 1);
	close(pipefd[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(n > 0);
	msg[n] = 0;
	ck_assert_msg(atoi(msg) == -EPERM, "dc_open without io_uring: %s", msg);
	ck_assert_msg(strstr(msg, "blockdev") && strstr(msg, "io_uring_queue_init") &&
			      strstr(msg, "is io_uring disabled?"),
		      "unclear message: %s", msg);
	free(spec);
	free(path);
}
END_TEST

/* The io value a file node describes, into arg (a 256-byte buffer). */
static int tb_io_visit(void *arg, int depth, const char *plugin, const char *form,
		       const struct dc_info *info, const char *key, const char *value)
{
	(void)depth;
	(void)form;
	(void)info;
	if (!strcmp(plugin, "file") && key && !strcmp(key, "io"))
		snprintf(arg, 256, "%s", value);
	return 0;
}

/* In a child without io_uring: file: opens on the worker pool, says so, and
 * moves data. Returns 0, or which step failed. */
static int tb_file_fallback(const char *spec)
{
	char io[256] = "", *buf = malloc(8192), *back = malloc(8192);
	dc_disk *d = NULL;
	int rc = tb_deny_io_uring();

	/* The refused io_uring decides here, not a forced pool (blockdev-pool). */
	unsetenv("DISKCORE_IO_ENGINE");
	if (rc || !buf || !back)
		return 10;
	if (dc_open(spec, 0, &d))
		return 11;
	dc_describe(d, tb_io_visit, io);
	if (strcmp(io, "worker pool (io_uring_queue_init: Operation not permitted)"))
		return 12;
	h_fill(buf, 8192, 5);
	if (dc_write(d, 8, buf, 8192, DC_IO_FUA) || dc_flush(d) ||
	    dc_read(d, 8, back, 8192) || memcmp(buf, back, 8192))
		return 13;
	dc_close(d);
	free(buf);
	free(back);
	return 0;
}

/* Where blockdev: refuses to open, file: falls back to the worker pool. */
START_TEST(file_without_io_uring)
{
	char *path = h_tmpfile(MIB, NULL);
	char *spec = h_fmt("file:%s", path);
	int status;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(tb_file_fallback(spec));
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "file: without io_uring: step %d failed", WEXITSTATUS(status));
	free(spec);
	free(path);
}

void blockdev_add_no_io_uring(TCase *tc)
{
	tcase_add_test(tc, no_io_uring);
	tcase_add_test(tc, file_without_io_uring);
}
