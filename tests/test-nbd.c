/* SPDX-License-Identifier: MIT */
/* The shared conformance suite through nbd: (docs/spec-strings.md, "nbd"): each
 * case gets a fresh image file served by its own nbdkit on a unix socket beside
 * it, so no case sees another's data. tests/test-nbd-servers.sh covers the servers and
 * failures the suite does not (qemu-nbd, diskctl serve, a killed server). */
#include "conformance.h"
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* nbdkit's extra option (before the plugin) and plugin parameter (after it). */
struct serve_args {
	const char *opt, *param;
};

/* Serve path with nbdkit's file plugin on path.s (the spec names it), in the
 * foreground of a child that ends with the test process (--exit-with-parent).
 * Waits for the pidfile, which nbdkit writes once it listens. */
static int serve_file(const char *path, uint64_t size, void *arg)
{
	const struct serve_args *a = arg;
	char *sock = h_fmt("%s.s", path), *pidf = h_fmt("%s.pid", path);
	struct timespec step = { 0, 10 * 1000 * 1000 };
	struct stat st;
	pid_t pid;
	int i;

	(void)size;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		const char *argv[12] = { "nbdkit", "-f", "--exit-with-parent", "-U", sock,
					 "-P",	   pidf };
		int n = 7;

		if (a->opt)
			argv[n++] = a->opt;
		argv[n++] = "file";
		argv[n++] = path;
		if (a->param)
			argv[n++] = a->param;
		execvp("nbdkit", (char *const *)argv);
		_exit(127);
	}
	/* Until it listens or exits (a bad argument), at most 10 s. */
	for (i = 0; i < 1000 && stat(pidf, &st) < 0; i++) {
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			i = 1000;
			break;
		}
		nanosleep(&step, NULL);
	}
	free(sock);
	free(pidf);
	return i < 1000 ? 0 : -ETIMEDOUT;
}

int main(void)
{
	Suite *s = suite_create("nbd");
	static const struct serve_args none = { 0 }, readonly = { "--readonly", NULL };
	const struct conformance_opts plain = { .prepare = serve_file,
						.arg = (void *)&none };
	const struct conformance_opts ro = { .open_flags = DC_OPEN_READ_ONLY,
					     .prepare = serve_file,
					     .arg = (void *)&readonly };

	if (!h_have_plugin("nbd"))
		h_skip("the nbd plugin is not built (libnbd-dev missing)");
	if (!h_have_program("nbdkit"))
		h_skip("nbdkit is missing (apt-get install nbdkit)");
	conformance_add_opts(s, "nbd-nbdkit-file", "nbd:nbd+unix:///?socket=@TMP:4M@.s",
			     &plain);
	conformance_add_opts(s, "nbd-one-connection",
			     "nbd:nbd+unix:///?socket=@TMP:4M@.s;connections=1", &plain);
	conformance_add_opts(s, "nbd-readonly-export", "nbd:nbd+unix:///?socket=@TMP@.s",
			     &ro);
	conformance_add_opts(s, "memdiff-nbd", "memdiff:nbd:nbd+unix:///?socket=@TMP@.s",
			     &plain);
	return h_run(s);
}
