/* SPDX-License-Identifier: MIT */
/* test-blob against nginx (an independent HTTP server) serving a flat image and
 * a fixed VHD: content, the VHD footer out of reach, memdiff on top, concurrent
 * reads, the query never shown, a blob that changes after open, a server
 * without ranges, read-ahead (docs/openvmm-compat.md §2.4, §7.2 disk_blob). */
#include "blob-test.h"
#include "harness.h"

#include <diskcore/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

START_TEST(blob_flat_content)
{
	char *url = tb_url("flat.img");
	dc_disk *d = h_openf(TB_RO, "blob:flat:%s;split=64K", url);
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, FLAT_SIZE / 512);
	ck_assert_uint_eq(info.sector_size, 512);
	ck_assert_uint_eq(info.physical_sector_size, 4096);
	ck_assert(info.flags & DC_INFO_READ_ONLY);
	ck_assert(!(info.flags & DC_INFO_HAS_DISK_ID));
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_IGNORED);
	/* The whole disk in one read: 16 ranges of 64 KiB in parallel. */
	tb_expect_file(d, 0, FLAT_SIZE, tb_flat, 0);
	tb_expect_file(d, 1, 512, tb_flat, 512);
	tb_expect_file(d, 7, 3 * 512 + 64 * KIB, tb_flat, 7 * 512);
	tb_expect_file(d, FLAT_SIZE / 512 - 1, 512, tb_flat, FLAT_SIZE - 512);
	ck_assert_str_eq(tb_describe(d, "url"), url);
	ck_assert_str_eq(tb_describe(d, "kind"), "flat");
	ck_assert_str_eq(tb_describe(d, "if_match"), "yes");
	dc_close(d);
	free(url);
}
END_TEST

/* A partial last sector is not part of the disk (§2.4). */
START_TEST(blob_flat_partial_tail)
{
	dc_disk *d =
		h_openf(TB_RO, "blob:flat:http://127.0.0.1:%d/tail.img", tb_nginx_port);
	uint8_t buf[1024];

	ck_assert_uint_eq(dc_sector_count(d), TAIL_SIZE / 512);
	ck_assert_int_eq(dc_read(d, TAIL_SIZE / 512 - 1, buf, 512), 0);
	ck_assert_int_eq(dc_read(d, TAIL_SIZE / 512 - 1, buf, 1024), DC_E_ILLEGAL_BLOCK);
	dc_close(d);
}
END_TEST

START_TEST(blob_vhd1_content_and_id)
{
	dc_disk *d =
		h_openf(TB_RO, "blob:vhd1:http://127.0.0.1:%d/disk.vhd", tb_nginx_port);
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, VHD_DATA / 512);
	ck_assert(info.flags & DC_INFO_HAS_DISK_ID);
	ck_assert(memcmp(info.disk_id, tb_uid, 16) == 0);
	tb_expect_file(d, 0, VHD_DATA, tb_vhd, 0);
	tb_expect_file(d, 100, 4096, tb_vhd, 100 * 512);
	ck_assert_str_eq(tb_describe(d, "kind"), "vhd1");
	dc_close(d);
}
END_TEST

/* OpenVMM's read_past_end_does_not_return_footer: the range check is against
 * the disk, not the blob, which is 512 bytes longer. */
START_TEST(read_past_end_does_not_return_footer)
{
	dc_disk *d =
		h_openf(TB_RO, "blob:vhd1:http://127.0.0.1:%d/disk.vhd", tb_nginx_port);
	uint64_t n = dc_sector_count(d);
	uint8_t *buf = h_alloc(1024);

	ck_assert_int_eq(dc_read(d, n, buf, 512), DC_E_ILLEGAL_BLOCK);
	ck_assert(memcmp(buf, "conectix", 8) != 0);
	ck_assert_int_eq(dc_read(d, n - 1, buf, 1024), DC_E_ILLEGAL_BLOCK);
	ck_assert(memcmp(buf + 512, "conectix", 8) != 0);
	ck_assert_int_eq(dc_read(d, n - 1, buf, 512), 0);
	ck_assert(memcmp(buf, "conectix", 8) != 0);
	free(buf);
	dc_close(d);
}
END_TEST

START_TEST(blob_vhd1_bad_footers)
{
	static const char *const cases[][2] = {
		{ "flat.img", "cookie" }, /* a raw image is not a VHD */
		{ "badsum.vhd", "checksum" },  { "dynamic.vhd", "not a fixed VHD" },
		{ "toobig.vhd", "disk size" }, { "tiny.vhd", "too small" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tb_open_fails(cases[i][1], "blob:vhd1:http://127.0.0.1:%d/%s",
			      tb_nginx_port, cases[i][0]);
	}
}
END_TEST

/* The vhd1 file plugin and blob:vhd1 agree on the same image. */
START_TEST(blob_vhd1_matches_file_plugin)
{
	dc_disk *b = h_openf(TB_RO, "blob:vhd1:http://127.0.0.1:%d/disk.vhd",
			     tb_nginx_port),
		*f = h_openf(DC_OPEN_READ_ONLY, "vhd1:%s", tb_vhd);
	struct dc_info bi, fi;
	uint8_t *x = h_alloc(64 * KIB), *y = h_alloc(64 * KIB);

	dc_get_info(b, &bi);
	dc_get_info(f, &fi);
	ck_assert_uint_eq(bi.sector_count, fi.sector_count);
	ck_assert(memcmp(bi.disk_id, fi.disk_id, 16) == 0);
	for (uint64_t s = 0; s < bi.sector_count; s += 128) {
		ck_assert_int_eq(dc_read(b, s, x, 64 * KIB), 0);
		ck_assert_int_eq(dc_read(f, s, y, 64 * KIB), 0);
		ck_assert(memcmp(x, y, 64 * KIB) == 0);
	}
	free(x);
	free(y);
	dc_close(b);
	dc_close(f);
}
END_TEST

/* Writes go to the RAM layer; the blob (and the file behind it) never change. */
START_TEST(blob_memdiff_writable)
{
	char *spec =
		h_fmt("memdiff:blob:flat:http://127.0.0.1:%d/flat.img", tb_nginx_port);
	char *bspec = spec + strlen("memdiff:");
	dc_disk *d = h_open(spec, 0), *b;
	uint8_t *w = h_alloc(4096), *r = h_alloc(4096);
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert(!(info.flags & DC_INFO_READ_ONLY));
	h_fill(w, 4096, 77);
	ck_assert_int_eq(dc_write(d, 16, w, 4096, 0), 0);
	ck_assert_int_eq(dc_read(d, 16, r, 4096), 0);
	ck_assert(memcmp(w, r, 4096) == 0);
	tb_expect_file(d, 0, 8192, tb_flat, 0);
	b = h_open(bspec, TB_RO);
	ck_assert_int_eq(dc_write(b, 16, w, 4096, 0), DC_E_READ_ONLY);
	tb_expect_file(b, 16, 4096, tb_flat, 16 * 512);
	dc_close(b);
	dc_close(d);
	free(w);
	free(r);
	free(spec);
}
END_TEST

/* A writable open fails, as OpenVMM's resolver does (§2.4), saying what to do;
 * layers and decorators above a blob pass the same rule down. */
START_TEST(blob_writable_open_fails)
{
	static const char *const specs[] = { "blob:flat:%s", "delay:0:blob:flat:%s",
					     "striped:[blob:flat:%s]" };
	char *url = tb_url("flat.img");

	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		char *spec = h_fmt(specs[i], url);

		h_open_fails(0, -EROFS, "writable blob disks not supported", "%s", spec);
		h_open_fails(0, -EROFS, "open it read-only", "%s", spec);
		dc_close(h_open(spec, TB_RO));
		free(spec);
	}
	free(url);
}
END_TEST

/* 256 random 4 KiB reads kept 32 deep on one queue: concurrent requests, each
 * with the right data. */
enum { TB_QD = 32, TB_TOTAL = 256, TB_BS = 4096 };

static void tb_submit_slot(dc_queue *q, struct iovec *iov, uint64_t *where, unsigned slot,
			   unsigned *seed)
{
	struct dc_io io = { .op = DC_OP_READ,
			    .iov = &iov[slot],
			    .iovcnt = 1,
			    .user_data = (void *)(uintptr_t)slot };

	where[slot] = (rand_r(seed) % (FLAT_SIZE / TB_BS)) * (TB_BS / 512);
	io.sector = where[slot];
	ck_assert_int_eq(dc_submit(q, &io), 0);
}

START_TEST(blob_queue_depth_32)
{
	dc_disk *d = h_openf(TB_RO,
			     "blob:flat:http://127.0.0.1:%d/flat.img;connections=8",
			     tb_nginx_port);
	size_t flen;
	uint8_t *file = h_read_file(tb_flat, &flen);
	uint8_t *bufs = h_alloc((size_t)TB_QD * TB_BS);
	struct iovec iov[TB_QD];
	uint64_t where[TB_QD];
	struct dc_completion c[TB_QD];
	unsigned submitted = 0, done = 0, seed = 12345;
	dc_queue *q;

	ck_assert_int_eq(dc_queue_open(d, DC_QUEUE_POLL, &q), 0);
	for (unsigned i = 0; i < TB_QD; i++) {
		iov[i].iov_base = bufs + (size_t)i * TB_BS;
		iov[i].iov_len = TB_BS;
		tb_submit_slot(q, iov, where, i, &seed);
		submitted++;
	}
	while (done < TB_TOTAL) {
		int n = h_reap(q, c, TB_QD, 30000);

		for (int i = 0; i < n; i++) {
			unsigned slot = (unsigned)(uintptr_t)c[i].user_data;

			ck_assert_msg(c[i].result == 0, "read at sector %llu: %d",
				      (unsigned long long)where[slot], c[i].result);
			ck_assert(memcmp(iov[slot].iov_base, file + where[slot] * 512,
					 TB_BS) == 0);
			done++;
			if (submitted < TB_TOTAL) {
				tb_submit_slot(q, iov, where, slot, &seed);
				submitted++;
			}
		}
	}
	ck_assert_msg(strstr(tb_describe(d, "stats"), "256 requests"), "stats: %s",
		      tb_describe(d, "stats"));
	dc_queue_close(q);
	dc_close(d);
	free(bufs);
	free(file);
}
END_TEST

/* The query (a SAS signature, say) never shows in describe() or messages. */
START_TEST(blob_query_is_never_shown)
{
	char *url = tb_url("flat.img");
	dc_disk *d = h_openf(TB_RO,
			     "blob:flat:http://127.0.0.1:%d/flat.img?sv=1&sig=SECRET",
			     tb_nginx_port);

	ck_assert_str_eq(tb_describe(d, "url"), url);
	ck_assert_str_eq(tb_describe(d, "auth"), "sas");
	tb_expect_file(d, 0, 4096, tb_flat, 0);
	dc_close(d);
	tb_open_fails("404", "blob:flat:http://127.0.0.1:%d/nothere.img?sig=SECRET",
		      tb_nginx_port);
	tb_open_fails("/nothere.img",
		      "blob:flat:http://127.0.0.1:%d/nothere.img?sig=SECRET",
		      tb_nginx_port);
	free(url);
}
END_TEST

/* A blob replaced after open: reads fail (If-Match) instead of mixing versions. */
START_TEST(blob_changed_after_open_fails)
{
	char *path = h_fmt("%s/changing.img", tb_root);
	uint8_t *buf = h_alloc(64 * KIB);
	struct timespec times[2] = { { 0, UTIME_OMIT }, { 1000000000, 0 } };
	dc_disk *d;
	int r;

	h_fill(buf, 64 * KIB, 5);
	h_write_file(path, buf, 64 * KIB, 0644);
	d = h_openf(TB_RO, "blob:flat:http://127.0.0.1:%d/changing.img;retries=0",
		    tb_nginx_port);
	ck_assert_int_eq(dc_read(d, 0, buf, 4096), 0);
	h_fill(buf, 64 * KIB, 6);
	h_write_file(path, buf, 64 * KIB, 0644);
	/* A different modification time gives nginx's ETag a different value. */
	ck_assert_int_eq(utimensat(AT_FDCWD, path, times, 0), 0);
	r = dc_read(d, 0, buf, 4096);
	ck_assert_int_eq(r, DC_E_IO);
	tb_expect_last_error(d, "412");
	dc_close(d);
	unlink(path);
	free(buf);
	free(path);
}
END_TEST

/* nginx with max_ranges 0 answers every ranged GET with 200 and the whole
 * file. A flat blob is kept from its first read; a VHD from the footer read at
 * open, so its reads make no request at all. */
START_TEST(nginx_without_ranges)
{
	dc_disk *d = h_openf(TB_RO,
			     "blob:flat:http://127.0.0.1:%d/norange/flat.img;split=64K;"
			     "readahead=64K",
			     tb_nginx_port);

	tb_expect_file(d, 3, 4096, tb_flat, 3 * 512);
	tb_expect_file(d, 0, FLAT_SIZE, tb_flat, 0);
	ck_assert_msg(tb_requests(d) == 1, "stats: %s", tb_describe(d, "stats"));
	ck_assert_msg(strstr(tb_describe(d, "ranges"), "held in memory"), "ranges: %s",
		      tb_describe(d, "ranges"));
	dc_close(d);
	d = h_openf(TB_RO, "blob:vhd1:http://127.0.0.1:%d/norange/disk.vhd",
		    tb_nginx_port);
	ck_assert_msg(strstr(tb_describe(d, "ranges"), "held in memory"), "ranges: %s",
		      tb_describe(d, "ranges"));
	tb_expect_file(d, 0, VHD_DATA, tb_vhd, 0);
	ck_assert_msg(tb_requests(d) == 0, "stats: %s", tb_describe(d, "stats"));
	dc_close(d);
}
END_TEST

/* A ';' in a URL (docs/spec-strings.md, blob). Percent-encoded, %3B reaches
 * the server as written, in the path and in the query, with options after
 * it; nginx decodes it to the file "semi;colon.img". */
START_TEST(semicolon_in_url)
{
	char *want = h_fmt("http://127.0.0.1:%d/semi%%3Bcolon.img", tb_nginx_port);
	dc_disk *d = h_openf(TB_RO, "blob:flat:%s?a=1%%3Bb;retries=0;split=64K", want);

	ck_assert_str_eq(tb_describe(d, "url"), want);
	ck_assert_str_eq(tb_describe(d, "policy"), "30000 ms, 0 retries, split 65536");
	tb_expect_file(d, 0, 128 * KIB, tb_flat, 0);
	dc_close(d);
	free(want);
}
END_TEST

START_TEST(blob_bad_specs)
{
	tb_open_fails("expected blob:flat:URL", "blob:raw:http://127.0.0.1:1/x.img");
	tb_open_fails("missing URL", "blob:flat:");
	tb_open_fails("not an http", "blob:flat:ftp://127.0.0.1/x.img");
	tb_open_fails("not a valid URL", "blob:flat:/x.img");
	tb_open_fails("percent-encoded", "blob:flat:http://127.0.0.1:1/a b.img");
	tb_open_fails("connections=0", "blob:flat:http://127.0.0.1:1/x;connections=0");
	tb_open_fails("retries=99", "blob:flat:http://127.0.0.1:1/x;retries=99");
	tb_open_fails("split", "blob:flat:http://127.0.0.1:1/x;split=1000");
	tb_open_fails("cafile=/nonexistent/ca.pem",
		      "blob:flat:http://127.0.0.1:1/x;cafile=/nonexistent/ca.pem");
	tb_open_fails("sharedkey= is for Azure",
		      "blob:flat:http://127.0.0.1:1/x;sharedkey=/nonexistent");
	tb_open_fails("/nonexistent",
		      "blob:flat:http://127.0.0.1:1/x;azure;sharedkey=/nonexistent");
	/* Nothing listens on port 1: a clear connection error, no retry wait. */
	tb_open_fails("connect", "blob:flat:http://127.0.0.1:1/x.img;retries=0");
}
END_TEST

/* Sequential 4 KiB reads are served from read-ahead windows: few requests, the
 * right data, and the windows stop at the disk's end (never the VHD footer). */
START_TEST(blob_readahead_sequential)
{
	dc_disk *d = h_openf(TB_RO,
			     "blob:vhd1:http://127.0.0.1:%d/disk.vhd;readahead=64K",
			     tb_nginx_port);
	size_t flen;
	uint8_t *file = h_read_file(tb_vhd, &flen), *buf = h_alloc(4096);

	for (uint64_t s = 0; s < VHD_DATA / 512; s += 8) {
		ck_assert_int_eq(dc_read(d, s, buf, 4096), 0);
		ck_assert_msg(memcmp(buf, file + s * 512, 4096) == 0,
			      "sector %llu differs", (unsigned long long)s);
	}
	/* 256 reads, 16 windows of 64 KiB. */
	ck_assert_msg(tb_requests(d) <= 17, "stats: %s", tb_describe(d, "stats"));
	ck_assert_msg(strstr(tb_describe(d, "readahead"), "65536 bytes"), "readahead: %s",
		      tb_describe(d, "readahead"));
	ck_assert_int_eq(dc_read(d, VHD_DATA / 512, buf, 512), DC_E_ILLEGAL_BLOCK);
	free(buf);
	free(file);
	dc_close(d);
}
END_TEST

/* Random reads do not start windows: one request each. */
START_TEST(blob_readahead_random_reads_direct)
{
	dc_disk *d = h_openf(TB_RO,
			     "blob:flat:http://127.0.0.1:%d/flat.img;readahead=64K",
			     tb_nginx_port);
	unsigned seed = 7;

	for (int i = 0; i < 20; i++) {
		uint64_t s = 8 + (rand_r(&seed) % (FLAT_SIZE / 4096 - 2)) * 8;

		tb_expect_file(d, s, 4096, tb_flat, (off_t)(s * 512));
	}
	ck_assert_msg(tb_requests(d) == 20, "stats: %s", tb_describe(d, "stats"));
	dc_close(d);
}
END_TEST

/* Sequential reads 16 deep: waiters on a loading window get their own bytes. */
START_TEST(blob_readahead_queue)
{
	dc_disk *d = h_openf(TB_RO,
			     "blob:flat:http://127.0.0.1:%d/flat.img;readahead=128K",
			     tb_nginx_port);
	size_t flen;
	uint8_t *file = h_read_file(tb_flat, &flen);
	uint8_t *buf = h_alloc(FLAT_SIZE);
	struct dc_completion c[16];
	unsigned done = 0, next = 0, total = FLAT_SIZE / 4096;
	struct iovec *iov = calloc(total, sizeof(*iov));
	dc_queue *q;

	ck_assert_int_eq(dc_queue_open(d, DC_QUEUE_POLL, &q), 0);
	while (done < total) {
		while (next < total && dc_queue_inflight(q) < 16) {
			struct dc_io io = { .op = DC_OP_READ,
					    .sector = next * 8ull,
					    .iov = &iov[next],
					    .iovcnt = 1 };

			iov[next].iov_base = buf + (size_t)next * 4096;
			iov[next].iov_len = 4096;
			ck_assert_int_eq(dc_submit(q, &io), 0);
			next++;
		}
		int n = h_reap(q, c, 16, 30000);

		for (int i = 0; i < n; i++)
			ck_assert_int_eq(c[i].result, 0);
		done += (unsigned)n;
	}
	ck_assert(memcmp(buf, file, FLAT_SIZE) == 0);
	ck_assert_msg(tb_requests(d) <= 10, "stats: %s", tb_describe(d, "stats"));
	dc_queue_close(q);
	dc_close(d);
	free(iov);
	free(buf);
	free(file);
}
END_TEST

TCase *blob_tc_nginx(void)
{
	TCase *tn = tcase_create("nginx");

	tcase_add_test(tn, blob_flat_content);
	tcase_add_test(tn, blob_flat_partial_tail);
	tcase_add_test(tn, blob_vhd1_content_and_id);
	tcase_add_test(tn, read_past_end_does_not_return_footer);
	tcase_add_test(tn, blob_vhd1_bad_footers);
	tcase_add_test(tn, blob_vhd1_matches_file_plugin);
	tcase_add_test(tn, blob_memdiff_writable);
	tcase_add_test(tn, blob_writable_open_fails);
	tcase_add_test(tn, blob_queue_depth_32);
	tcase_add_test(tn, blob_query_is_never_shown);
	tcase_add_test(tn, blob_changed_after_open_fails);
	tcase_add_test(tn, blob_bad_specs);
	tcase_add_test(tn, nginx_without_ranges);
	tcase_add_test(tn, semicolon_in_url);
	tcase_add_test(tn, blob_readahead_sequential);
	tcase_add_test(tn, blob_readahead_random_reads_direct);
	tcase_add_test(tn, blob_readahead_queue);
	return tn;
}
