/* SPDX-License-Identifier: MIT */
/* test-blob against tests/blob/badserver.py, a server that misbehaves on
 * purpose: every bad answer must fail the read (never success with wrong data),
 * 503 twice must be retried to success, a server that never answers must hit
 * the timeout; redirects, a missing Content-Length, servers without ranges, a
 * ';' in the request target, Azure page lists, TLS verification and the
 * https -> http downgrade. */
#include "blob-test.h"
#include "harness.h"

#include <diskcore/plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct tb_bad_case {
	const char *mode;
	const char *message; /* what last_error must say */
};

static const struct tb_bad_case tb_bad_cases[] = {
	{ "short", "short body" },
	{ "long", "more than" },
	{ "badrange", "asked for" },
	{ "416", "HTTP 416" },
	{ "close", "partial" },
	/* A 200 is taken as the whole blob only when it is all of it. */
	{ "norange-short", "HTTP 200 with 1048064 bytes, but the blob is 1048576" },
};

/* §7.2 misbehaving_server_never_reports_success, one mode per loop index. */
START_TEST(misbehaving_server_never_reports_success)
{
	const struct tb_bad_case *bc = &tb_bad_cases[_i];
	char *where = h_fmt("http://127.0.0.1:%d/%s/x.img", tb_bad_port, bc->mode);
	dc_disk *d = h_openf(
		TB_RO, "blob:flat:http://127.0.0.1:%d/%s/x.img?sig=SECRET;retries=1",
		tb_bad_port, bc->mode);
	uint8_t *buf = h_alloc(8 * KIB);
	const char *msg;
	int r;

	r = dc_read(d, 8, buf, 8 * KIB);
	ck_assert_msg(r == DC_E_IO, "%s: read = %d (%s), expected an I/O error", bc->mode,
		      r, dc_strerror(r));
	msg = tb_describe(d, "last_error");
	ck_assert_msg(strstr(msg, bc->message), "%s: last error '%s' lacks '%s'",
		      bc->mode, msg, bc->message);
	ck_assert_msg(strstr(msg, where), "%s: last error '%s' does not name %s",
		      bc->mode, msg, where);
	/* A whole-disk read fails just the same. */
	free(buf);
	buf = h_alloc(FLAT_SIZE);
	ck_assert_int_eq(dc_read(d, 0, buf, FLAT_SIZE), DC_E_IO);
	dc_close(d);
	free(buf);
	free(where);
}
END_TEST

/* A read-ahead window that cannot be loaded fails the reads waiting for it. */
START_TEST(readahead_window_errors_fail_waiters)
{
	dc_disk *d = h_openf(
		TB_RO, "blob:flat:http://127.0.0.1:%d/416/x.img;readahead=64K;retries=0",
		tb_bad_port);
	uint8_t buf[4096];

	ck_assert_int_eq(dc_read(d, 0, buf, sizeof(buf)), DC_E_IO);
	ck_assert_int_eq(dc_read(d, 8, buf, sizeof(buf)), DC_E_IO);
	tb_expect_last_error(d, "HTTP 416");
	dc_close(d);
}
END_TEST

START_TEST(never_answers_times_out)
{
	dc_disk *d = h_openf(
		TB_RO, "blob:flat:http://127.0.0.1:%d/hang/x.img;timeout=300;retries=1",
		tb_bad_port);
	uint8_t buf[4096];
	uint64_t t0 = h_now_ms(), ms;
	int r;

	r = dc_read(d, 0, buf, sizeof(buf));
	ms = h_now_ms() - t0;
	ck_assert_int_eq(r, DC_E_IO);
	/* Two attempts of 300 ms and one backoff, with slack for a loaded machine. */
	ck_assert_msg(ms >= 550 && ms < 10000, "the read failed after %llu ms",
		      (unsigned long long)ms);
	ck_assert_msg(strstr(tb_describe(d, "last_error"), "imed out") ||
			      strstr(tb_describe(d, "last_error"), "Timeout"),
		      "last error: %s", tb_describe(d, "last_error"));
	dc_close(d);
}
END_TEST

START_TEST(unavailable_twice_then_succeeds)
{
	dc_disk *d = h_openf(TB_RO, "blob:flat:http://127.0.0.1:%d/flaky-%d/x.img",
			     tb_bad_port, (int)getpid());

	tb_expect_file(d, 8, 8 * KIB, tb_flat, 8 * 512);
	ck_assert_msg(strstr(tb_describe(d, "stats"), " 2 retries"), "stats: %s",
		      tb_describe(d, "stats"));
	dc_close(d);
	/* With one retry allowed, the second 503 is the answer. */
	d = h_openf(TB_RO, "blob:flat:http://127.0.0.1:%d/flaky-%d-b/x.img;retries=1",
		    tb_bad_port, (int)getpid());
	uint8_t buf[512];
	ck_assert_int_eq(dc_read(d, 0, buf, sizeof(buf)), DC_E_IO);
	tb_expect_last_error(d, "HTTP 503");
	dc_close(d);
}
END_TEST

START_TEST(redirects_are_followed_and_bounded)
{
	/* redirect-N redirects N + 1 times: 5 are allowed, 6 are too many. */
	char *final = h_fmt("http://127.0.0.1:%d/ok/x.img", tb_bad_port);
	dc_disk *d = h_openf(TB_RO, "blob:flat:http://127.0.0.1:%d/redirect-4/x.img",
			     tb_bad_port);

	/* The final URL serves the reads (redirect-N would answer 302 to a GET). */
	ck_assert_str_eq(tb_describe(d, "url"), final);
	tb_expect_file(d, 3, 4096, tb_flat, 3 * 512);
	dc_close(d);
	tb_open_fails("too many redirects",
		      "blob:flat:http://127.0.0.1:%d/redirect-5/x.img", tb_bad_port);
	free(final);
}
END_TEST

START_TEST(head_without_length_fails)
{
	tb_open_fails("Content-Length", "blob:flat:http://127.0.0.1:%d/nolength/x.img",
		      tb_bad_port);
}
END_TEST

START_TEST(tls_is_verified)
{
	char *ok = h_fmt("blob:flat:https://127.0.0.1:%d/ok/x.img;cafile=%s", tb_tls_port,
			 tb_cert);
	dc_disk *d = h_open(ok, TB_RO);

	tb_expect_file(d, 0, 64 * KIB, tb_flat, 0);
	dc_close(d);
	/* The self-signed certificate is not trusted without cafile=. */
	tb_open_fails("certificate", "blob:flat:https://127.0.0.1:%d/ok/x.img;retries=0",
		      tb_tls_port);
	tb_open_fails("downgrade",
		      "blob:flat:https://127.0.0.1:%d/tohttp/x.img;cafile=%s",
		      tb_tls_port, tb_cert);
	free(ok);
}
END_TEST

/* A server that ignores Range (200 and the whole blob; noaccept also says
 * Accept-Ranges: none): reads take their bytes out of the whole body, and the
 * first whole body is kept, so later reads make no request. */
START_TEST(server_without_ranges_is_read_whole)
{
	const char *mode = _i ? "noaccept" : "norange";
	dc_disk *d = h_openf(TB_RO, "blob:flat:http://127.0.0.1:%d/%s/x.img;split=64K",
			     tb_bad_port, mode);

	/* Accept-Ranges: none is known from HEAD; a 200 only once it comes. */
	ck_assert_str_eq(tb_describe(d, "ranges"),
			 _i ? "not supported by the server: reads take their bytes out "
			      "of the whole blob (1048576 bytes), not held yet" :
			      "");
	tb_expect_file(d, 8, 8 * KIB, tb_flat, 8 * 512);
	ck_assert_msg(strstr(tb_describe(d, "ranges"), "held in memory"),
		      "%s: ranges: %s", mode, tb_describe(d, "ranges"));
	tb_expect_file(d, 0, FLAT_SIZE, tb_flat, 0);
	tb_expect_file(d, FLAT_SIZE / 512 - 1, 512, tb_flat, FLAT_SIZE - 512);
	ck_assert_msg(tb_requests(d) == 1, "%s: stats: %s", mode,
		      tb_describe(d, "stats"));
	dc_close(d);
}
END_TEST

/* Over BLOB_WHOLE_MAX a server without ranges cannot be used: said at open when
 * HEAD tells (Accept-Ranges: none), else at the first read. */
START_TEST(no_ranges_over_limit_fails_clearly)
{
	uint8_t buf[4096];
	dc_disk *d;

	h_open_fails(TB_RO, -EOPNOTSUPP,
		     "does not support range requests (Accept-Ranges: none)",
		     "blob:flat:http://127.0.0.1:%d/bignoaccept/x.img", tb_bad_port);
	h_open_fails(TB_RO, -EOPNOTSUPP, "more than the 64 MiB that are read whole",
		     "blob:flat:http://127.0.0.1:%d/bignoaccept/x.img", tb_bad_port);
	d = h_openf(TB_RO, "blob:flat:http://127.0.0.1:%d/bignorange/x.img;retries=0",
		    tb_bad_port);
	ck_assert_int_eq(dc_read(d, 0, buf, sizeof(buf)), DC_E_IO);
	tb_expect_last_error(d,
			     "the server does not support range requests (it answered "
			     "200 with the whole blob), and the blob is 67109376 bytes: "
			     "more than the 64 MiB that are read whole");
	dc_close(d);
}
END_TEST

/* The badserver sees the raw request target: "pct" answers only when it holds
 * %3B and no ';', "semi" only when it holds a literal ';'. */
START_TEST(semicolon_reaches_the_server)
{
	char *url = h_fmt("http://127.0.0.1:%d/pct/a%%3Bb.img?x=1%%3B2&sig=SECRET",
			  tb_bad_port);
	dc_disk *d = h_openf(TB_RO, "blob:flat:%s;retries=0", url);

	tb_expect_file(d, 8, 4096, tb_flat, 8 * 512);
	dc_close(d);
	free(url);
#ifdef DC_FORM_TAIL_OPTIONS
	/* The core keeps a ';' in the URL unless blob options follow it. */
	url = h_fmt("http://127.0.0.1:%d/semi/a;b.img", tb_bad_port);
	d = h_openf(TB_RO, "blob:flat:%s?x=1;y=2&sig=SECRET;retries=0;split=64K", url);
	ck_assert_str_eq(tb_describe(d, "url"), url);
	ck_assert_str_eq(tb_describe(d, "policy"), "30000 ms, 0 retries, split 65536");
	tb_expect_file(d, 8, 4096, tb_flat, 8 * 512);
	dc_close(d);
	/* A mistyped option stays in the URL: the server's 400 says so. */
	tb_open_fails(
		"the URL contains a ';'",
		"blob:flat:http://127.0.0.1:%d/pct/a%%3Bb.img;retries=0;readahed=1M",
		tb_bad_port);
	free(url);
#else
	/* This core starts the options at the first ';': the text after a
	 * literal one is an option, and an unknown one fails naming it. */
	tb_open_fails("unknown option 'y'",
		      "blob:flat:http://127.0.0.1:%d/semi/a.img?x=1;y=2;retries=0",
		      tb_bad_port);
	tb_open_fails("unknown option 'b.img'",
		      "blob:flat:http://127.0.0.1:%d/semi/a;b.img", tb_bad_port);
#endif
}
END_TEST

/* Azure page lists, parsed as XML: two parts joined by a NextMarker that must
 * be escaped in the next request; only the listed pages are fetched, the rest
 * reads as zeroes. */
START_TEST(azure_page_list_is_parsed)
{
	dc_disk *d = h_openf(DC_OPEN_READ_ONLY,
			     "blob:flat:http://127.0.0.1:%d/pages/x.img;azure",
			     tb_bad_port);
	size_t flen;
	uint8_t *file = h_read_file(tb_flat, &flen), *buf = h_alloc(FLAT_SIZE);

	ck_assert_str_eq(tb_describe(d, "blob_type"), "PageBlob");
	ck_assert_str_eq(tb_describe(d, "page_ranges"), "2 (69632 bytes)");
	ck_assert_int_eq(dc_read(d, 0, buf, FLAT_SIZE), 0);
	ck_assert(memcmp(buf, file, 4096) == 0);
	ck_assert_int_eq(h_check_zero(buf + 4096, 128 * KIB - 4096), -1);
	ck_assert(memcmp(buf + 128 * KIB, file + 128 * KIB, 64 * KIB) == 0);
	ck_assert_int_eq(h_check_zero(buf + 192 * KIB, FLAT_SIZE - 192 * KIB), -1);
	ck_assert_msg(tb_requests(d) == 2, "stats: %s", tb_describe(d, "stats"));
	dc_close(d);
	free(buf);
	free(file);
}
END_TEST

START_TEST(azure_bad_page_lists_fail)
{
	static const char *const cases[][2] = {
		{ "pages-dtd", "has a DTD" },
		{ "pages-noend", "without a valid Start and End" },
		{ "pages-cut", "not well-formed XML" },
		{ "pages-other", "not a PageList" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		h_open_fails(DC_OPEN_READ_ONLY, -EPROTO, cases[i][1],
			     "blob:flat:http://127.0.0.1:%d/%s/x.img;azure", tb_bad_port,
			     cases[i][0]);
}
END_TEST

TCase *blob_tc_badserver(void)
{
	TCase *tb = tcase_create("badserver");

	tcase_add_loop_test(tb, misbehaving_server_never_reports_success, 0,
			    (int)(sizeof(tb_bad_cases) / sizeof(tb_bad_cases[0])));
	tcase_add_test(tb, never_answers_times_out);
	tcase_add_test(tb, readahead_window_errors_fail_waiters);
	tcase_add_test(tb, unavailable_twice_then_succeeds);
	tcase_add_test(tb, redirects_are_followed_and_bounded);
	tcase_add_test(tb, head_without_length_fails);
	tcase_add_loop_test(tb, server_without_ranges_is_read_whole, 0, 2);
	tcase_add_test(tb, no_ranges_over_limit_fails_clearly);
	tcase_add_test(tb, semicolon_reaches_the_server);
	tcase_add_test(tb, azure_page_list_is_parsed);
	tcase_add_test(tb, azure_bad_page_lists_fail);
	if (tb_cert)
		tcase_add_test(tb, tls_is_verified);
	else
		fprintf(stderr, "test-blob: no openssl: the TLS case is not run\n");
	return tb;
}
