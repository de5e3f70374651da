/* SPDX-License-Identifier: MIT */
/* The shared conformance suite through nbd: -> nbdkit's diskcore plugin -> a
 * chain (docs/serve.md, "nbdkit plugin"): each case gets a fresh image file and
 * its own nbdkit serving a chain over it on a unix socket beside it. The
 * other checks (nbdcopy, qemu-img, TLS, socket activation) are in
 * tests/test-nbdkit-plugin-tools.sh. */
#include "conformance.h"
#include "harness.h"

#include <errno.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char *plugin_so;

/* The chain nbdkit serves ("%s" is the image), nbdkit's options before the
 * plugin and the plugin's parameters after the chain. */
struct chain_args {
	const char *chain, *opt, *param;
};

/* A 64-byte XTS key beside the image. */
static char *write_key(const char *path)
{
	char *key = h_fmt("%s.key", path);
	uint8_t k[64];

	for (int i = 0; i < 64; i++)
		k[i] = (uint8_t)(i * 7 + 1);
	h_write_file(key, k, sizeof(k), 0600);
	return key;
}

/* Serve path through nbdkit's diskcore plugin on path.s (the spec names it),
 * in the foreground of a child that ends with the test (--exit-with-parent).
 * Waits for the pidfile, which nbdkit writes once it listens. */
static int serve_chain(const char *path, uint64_t size, void *arg)
{
	const struct chain_args *a = arg;
	char *sock = h_fmt("%s.s", path), *pidf = h_fmt("%s.pid", path);
	char *key = write_key(path), *chain;
	struct timespec step = { 0, 10 * 1000 * 1000 };
	struct stat st;
	pid_t pid;
	int i;

	(void)size;
	chain = strstr(a->chain, "%k") ?
			h_fmt("crypt:xts-aes-256:%s:file:%s", key, path) :
			h_fmt(a->chain, path);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		const char *argv[12] = { "nbdkit", "-f", "--exit-with-parent", "-U", sock,
					 "-P",	   pidf };
		int n = 7;

		if (a->opt)
			argv[n++] = a->opt;
		argv[n++] = plugin_so;
		argv[n++] = chain;
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
	free(key);
	free(chain);
	return i < 1000 ? 0 : -ETIMEDOUT;
}

/* dl_iterate_phdr(): the sanitizer runtimes this (instrumented) test loaded. */
static int find_runtime(struct dl_phdr_info *info, size_t size, void *arg)
{
	char *pre = arg;

	(void)size;
	if ((strstr(info->dlpi_name, "/libasan.so") ||
	     strstr(info->dlpi_name, "/libubsan.so")) &&
	    strlen(pre) + strlen(info->dlpi_name) + 2 < 4096) {
		if (*pre)
			strcat(pre, " ");
		strcat(pre, info->dlpi_name);
	}
	return 0;
}

/* Under a sanitizer build nbdkit, which is not instrumented, loads the
 * instrumented plugin: the runtimes must come first, so they are preloaded
 * into the nbdkit children (tests/oracle-lib.sh says why), with leak
 * detection off there only (nbdkit's own blocks are not ours). */
static void sanitizer_env(void)
{
	static char pre[4096], opts[4096];
	const char *was = getenv("ASAN_OPTIONS");

	if (!getenv("DISKCORE_SANITIZED"))
		return;
	dl_iterate_phdr(find_runtime, pre);
	if (*pre)
		setenv("LD_PRELOAD", pre, 1);
	snprintf(opts, sizeof(opts), "%s%sdetect_leaks=0", was ? was : "",
		 was && *was ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
}

int main(void)
{
	Suite *s = suite_create("nbdkit-plugin");
	const char *root = getenv("DISKCORE_BUILD_ROOT");
	static const struct chain_args file = { "file:%s", NULL, NULL },
				       crypt = { "%k", NULL, NULL },
				       memdiff = { "memdiff:file:%s", NULL, NULL },
				       ro = { "file:%s", "-r", "readonly=true" };
	const struct conformance_opts o_file = { .prepare = serve_chain,
						 .arg = (void *)&file };
	const struct conformance_opts o_crypt = { .prepare = serve_chain,
						  .arg = (void *)&crypt };
	const struct conformance_opts o_memdiff = { .prepare = serve_chain,
						    .arg = (void *)&memdiff };
	const struct conformance_opts o_ro = { .open_flags = DC_OPEN_READ_ONLY,
					       .prepare = serve_chain,
					       .arg = (void *)&ro };

	if (!root)
		h_skip("DISKCORE_BUILD_ROOT is not set");
	plugin_so = h_fmt("%s/tools/nbdkit-plugin/nbdkit-diskcore-plugin.so", root);
	if (access(plugin_so, R_OK))
		h_skip("the nbdkit plugin was not built (nbdkit-plugin-dev missing)");
	if (!h_have_plugin("nbd"))
		h_skip("the nbd plugin is not built (libnbd-dev missing)");
	if (!h_have_program("nbdkit"))
		h_skip("nbdkit is missing (apt-get install nbdkit)");
	sanitizer_env();
	conformance_add_opts(s, "nbdkit-diskcore-file",
			     "nbd:nbd+unix:///?socket=@TMP:4M@.s", &o_file);
	if (h_have_plugin("crypt"))
		conformance_add_opts(s, "nbdkit-diskcore-crypt",
				     "nbd:nbd+unix:///?socket=@TMP:4M@.s", &o_crypt);
	conformance_add_opts(s, "nbdkit-diskcore-memdiff",
			     "nbd:nbd+unix:///?socket=@TMP@.s", &o_memdiff);
	conformance_add_opts(s, "nbdkit-diskcore-readonly",
			     "nbd:nbd+unix:///?socket=@TMP@.s", &o_ro);
	return h_run(s);
}
