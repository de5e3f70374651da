/* SPDX-License-Identifier: MIT */
/* The blob plugin (docs/openvmm-compat.md §2.4 and §7.2 disk_blob) against real servers
 * on 127.0.0.1, started here and stopped at exit:
 *  - nginx (an independent HTTP server) serving a flat image and a fixed VHD:
 *    the conformance suite, content, the VHD footer out of reach, memdiff on top,
 *    concurrent reads, a blob that changes after open;
 *  - tests/blob/badserver.py, a server that misbehaves on purpose: every bad
 *    answer must fail the read (never success with wrong data), 503 twice must be
 *    retried to success, a server that never answers must hit the timeout;
 *    redirects, a missing Content-Length, TLS verification and the https -> http
 *    downgrade.
 * Cases that need a tool the machine lacks (nginx, python3, openssl) are not
 * added; with neither server available the program exits 77.
 *
 * This file makes the images and holds the checks the cases share
 * (blob-test.h) and main(); the servers are started in blob-servers.c, the
 * nginx cases are in blob-nginx.c, the misbehaving server's (and Azure's page
 * lists) in blob-badserver.c. */
#include "blob-test.h"
#include "conformance.h"
#include "harness.h"

#include <diskcore/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *tb_root;
char *tb_flat;
char *tb_vhd;
uint8_t tb_uid[16];

/* --- Helpers ------------------------------------------------------------------ */

/* The blob plugin's describe() value for key ("" when absent); no value may
 * show the query. */
const char *tb_describe(dc_disk *d, const char *key)
{
	static struct h_desc t;
	const char *v;

	h_describe(d, "blob", &t);
	for (int i = 0; i < t.n; i++)
		/* "spec" is the core's echo of the spec as given, not the plugin's. */
		ck_assert_msg(!strcmp(t.keys[i], "spec") ||
				      !strstr(t.values[i], "SECRET"),
			      "describe %s shows the query: %s", t.keys[i], t.values[i]);
	v = h_desc_get(&t, key);
	return v ? v : "";
}

/* The plugin's last error message must contain want. */
void tb_expect_last_error(dc_disk *d, const char *want)
{
	const char *msg = tb_describe(d, "last_error");

	ck_assert_msg(strstr(msg, want), "last error '%s' lacks '%s'", msg, want);
}

/* Compare the disk's [sector, +len) with the file's bytes at file_off. */
void tb_expect_file(dc_disk *d, uint64_t sector, size_t len, const char *path,
		    off_t file_off)
{
	uint8_t *got = h_alloc(len), *want = h_alloc(len);
	int r;

	h_pread_file(path, file_off, want, len);
	r = dc_read(d, sector, got, len);
	ck_assert_msg(r == 0, "read(sector %llu, %zu bytes) = %d (%s): %s",
		      (unsigned long long)sector, len, r, dc_strerror(r),
		      tb_describe(d, "last_error"));
	if (memcmp(got, want, len)) {
		size_t i = 0;

		while (got[i] == want[i])
			i++;
		ck_abort_msg("read(sector %llu): byte %zu is %#x, the file has %#x",
			     (unsigned long long)sector, i, got[i], want[i]);
	}
	free(got);
	free(want);
}

/* The "N requests" figure of describe()'s stats. */
unsigned long long tb_requests(dc_disk *d)
{
	return strtoull(tb_describe(d, "stats"), NULL, 10);
}

char *tb_url(const char *name)
{
	return h_fmt("http://127.0.0.1:%d/%s", tb_nginx_port, name);
}

/* --- Setup -------------------------------------------------------------------- */

static void tb_make_images(void)
{
	uint8_t *buf = h_alloc(VHD_DATA + 512);
	uint8_t f[512], uid2[16];
	char *p;

	tb_root = h_tmpsubdir();
	chmod(h_tmpdir(), 0755);
	chmod(tb_root, 0755);
	tb_flat = h_fmt("%s/flat.img", tb_root);
	h_fill(buf, FLAT_SIZE, 1);
	h_write_file(tb_flat, buf, FLAT_SIZE, 0644);
	p = h_fmt("%s/tail.img", tb_root);
	h_write_file(p, buf, TAIL_SIZE, 0644);
	free(p);
	p = h_fmt("%s/semi;colon.img", tb_root);
	h_write_file(p, buf, FLAT_SIZE, 0644);
	free(p);

	for (int i = 0; i < 16; i++)
		tb_uid[i] = (uint8_t)(0xa0 + i * 7);
	h_fill(buf, VHD_DATA, 2);
	h_vhd_footer(buf + VHD_DATA, VHD_DATA, 2, tb_uid);
	tb_vhd = h_fmt("%s/disk.vhd", tb_root);
	h_write_file(tb_vhd, buf, VHD_DATA + 512, 0644);
	/* Broken ones. */
	memcpy(uid2, tb_uid, 16);
	h_vhd_footer(f, 64 * KIB, 2, uid2);
	f[70] ^= 1; /* the checksum no longer matches */
	memcpy(buf + 64 * KIB, f, 512);
	p = h_fmt("%s/badsum.vhd", tb_root);
	h_write_file(p, buf, 64 * KIB + 512, 0644);
	free(p);
	h_vhd_footer(f, 64 * KIB, 3, uid2);
	memcpy(buf + 64 * KIB, f, 512);
	p = h_fmt("%s/dynamic.vhd", tb_root);
	h_write_file(p, buf, 64 * KIB + 512, 0644);
	free(p);
	h_vhd_footer(f, 64 * KIB + 512, 2, uid2);
	memcpy(buf + 64 * KIB, f, 512);
	p = h_fmt("%s/toobig.vhd", tb_root);
	h_write_file(p, buf, 64 * KIB + 512, 0644);
	free(p);
	p = h_fmt("%s/tiny.vhd", tb_root);
	h_write_file(p, buf, 100, 0644);
	free(p);
	free(buf);
}

int main(void)
{
	Suite *s = suite_create("blob");
	const struct conformance_opts ro = { .open_flags = TB_RO };
	int nginx, bad;
	char *url;

	/* The servers are on 127.0.0.1: no proxy may stand in between. */
	unsetenv("http_proxy");
	unsetenv("https_proxy");
	unsetenv("HTTP_PROXY");
	unsetenv("HTTPS_PROXY");
	unsetenv("ALL_PROXY");
	unsetenv("all_proxy");
	unsetenv("DISKCORE_AZURE_KEY");
	if (!h_have_plugin("blob"))
		h_skip("the blob plugin is not built (libcurl missing?)");
	tb_owner = getpid();
	tb_make_images();
	atexit(tb_stop_servers);
	nginx = tb_start_nginx();
	bad = tb_start_badserver();
	if (nginx < 0 || bad < 0)
		return EXIT_FAILURE; /* installed but broken: not a skip */
	if (!nginx && !bad)
		h_skip("neither nginx nor python3 is available to serve blobs");
	if (nginx) {
		url = tb_url("flat.img");
		char *t = h_fmt("blob:flat:%s", url);
		conformance_add_opts(s, "blob-flat", t, &ro);
		free(t);
		t = h_fmt("blob:vhd1:http://127.0.0.1:%d/disk.vhd", tb_nginx_port);
		conformance_add_opts(s, "blob-vhd1", t, &ro);
		free(t);
		t = h_fmt("blob:flat:%s;readahead=64K;split=64K", url);
		conformance_add_opts(s, "blob-flat-readahead", t, &ro);
		free(t);
		t = h_fmt("blob:vhd1:http://127.0.0.1:%d/norange/disk.vhd",
			  tb_nginx_port);
		conformance_add_opts(s, "blob-vhd1-norange", t, &ro);
		free(t);
		t = h_fmt("memdiff:blob:flat:%s", url);
		conformance_add(s, "memdiff-blob", t);
		free(t);
		free(url);
		suite_add_tcase(s, blob_tc_nginx());
	} else {
		fprintf(stderr, "test-blob: no nginx: the nginx cases are not run\n");
	}
	if (bad) {
		suite_add_tcase(s, blob_tc_badserver());
	} else {
		fprintf(stderr, "test-blob: no python3: the misbehaving-server cases are "
				"not run\n");
	}
	return h_run(s);
}
