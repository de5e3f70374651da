/* SPDX-License-Identifier: MIT */
/* rbd: against a real Ceph cluster (docs/spec-strings.md, "rbd"), which
 * tests/test-rbd.sh starts with tests/ceph-cluster.sh, once for the whole
 * program, and stops at exit: CEPH_CONF, RBD_POOL and RBD_KEYRING come from it.
 * The shared conformance suite over the image, a snapshot, memdiff: and crypt:
 * chains; data checked against `rbd import` / `rbd export`; a snapshot read-only;
 * `rbd resize` seen through open chains; the exclusive lock passed between two
 * writers; the errors for a missing pool, image, snapshot, key or monitor. */
#include "conformance.h"
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MIB (1024 * 1024)

static const char *tr_conf, *tr_pool;
static char *tr_key;	 /* a crypt: key file */
static char *tr_bad_key; /* a keyring whose client.admin key the cluster does not know */

/* The spec of image NAME ("img" or "img@snap") in the test pool. */
static char *tr_spec(const char *name)
{
	return h_fmt("rbd:%s/%s;conf=%s", tr_pool, name, tr_conf);
}

static void tr_rbd(const char *fmt, const char *arg, const char *arg2)
{
	char *args = h_fmt(fmt, arg, arg2);

	ck_assert_msg(h_sh("rbd -c '%s' %s", tr_conf, args) == 0, "rbd %s failed", args);
	free(args);
}

/* A fresh image of `size` bytes, for a test of its own. */
static void tr_create(const char *name, const char *size)
{
	char *img = h_fmt("%s/%s", tr_pool, name);

	tr_rbd("create --size %s %s", size, img);
	free(img);
}

/* Sectors from `sector` of d hold h_fill(seed) data. */
static void tr_expect(dc_disk *d, uint64_t sector, size_t len, uint64_t seed)
{
	uint8_t *got = h_alloc(len);

	ck_assert_int_eq(dc_read(d, sector, got, len), 0);
	ck_assert_msg(h_check(got, len, seed) == -1, "sector %llu: not the data written",
		      (unsigned long long)sector);
	free(got);
}

START_TEST(describe_reports)
{
	char *spec;
	struct h_desc t;
	dc_disk *d;
	uint8_t *buf = h_alloc(4096);

	tr_create("desc", "8M");
	spec = tr_spec("desc");
	d = h_open(spec, 0);
	h_fill(buf, 4096, 1);
	ck_assert_int_eq(dc_write(d, 0, buf, 4096, 0), 0);
	h_describe(d, "rbd", &t);
	ck_assert(t.seen);
	ck_assert_str_eq(h_desc_get(&t, "pool"), tr_pool);
	ck_assert_str_eq(h_desc_get(&t, "image"), "desc");
	ck_assert_ptr_nonnull(strstr(h_desc_get(&t, "snapshot"), "none"));
	ck_assert_str_eq(h_desc_get(&t, "size-bytes"), "8388608");
	ck_assert_str_eq(h_desc_get(&t, "object-size"), "4194304");
	ck_assert_ptr_nonnull(strstr(h_desc_get(&t, "features"), "exclusive-lock"));
	/* It wrote, so it holds the lock. */
	ck_assert_ptr_nonnull(
		strstr(h_desc_get(&t, "exclusive-lock"), "held by this client"));
	ck_assert_uint_eq(dc_sector_count(d), 8 * MIB / 512);
	dc_close(d);
	free(spec);
	free(buf);
}
END_TEST

/* What `rbd import` put there reads back; what diskcore writes, including
 * across an object boundary (4 MiB), is what `rbd export` gets. */
START_TEST(differential_import_export)
{
	size_t len = 8 * MIB;
	uint8_t *data = h_alloc(len), *got = h_alloc(len);
	char *src = h_tmpfile(0, ".img"), *out = h_tmppath(".img"), *spec;
	static const uint64_t at[][2] = {
		{ 0, 8 }, { 8184, 16 }, { 12345, 3 }, { 16376, 8 }
	};
	size_t n;
	dc_disk *d;

	h_fill(data, len, 7);
	h_write_file(src, data, len, 0600);
	tr_rbd("import %s %s/imp", src, tr_pool);
	spec = tr_spec("imp");
	d = h_open(spec, DC_OPEN_READ_ONLY);
	ck_assert_uint_eq(dc_sector_count(d), len / 512);
	ck_assert_int_eq(dc_read(d, 0, got, len), 0);
	ck_assert_msg(memcmp(got, data, len) == 0,
		      "rbd: reads differ from rbd import's data");
	dc_close(d);

	d = h_open(spec, 0);
	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		uint8_t *p = data + at[i][0] * 512;

		h_fill(p, at[i][1] * 512, 100 + i);
		ck_assert_int_eq(dc_write(d, at[i][0], p, at[i][1] * 512, 0), 0);
	}
	ck_assert_int_eq(dc_flush(d), 0);
	dc_close(d);
	tr_rbd("export %s/imp %s", tr_pool, out);
	free(got);
	got = h_read_file(out, &n);
	ck_assert_uint_eq(n, len);
	ck_assert_msg(memcmp(got, data, len) == 0,
		      "rbd export differs from what was written");
	free(data);
	free(got);
	free(src);
	free(out);
	free(spec);
}
END_TEST

/* A snapshot opens read-only, even when asked for writing, and holds the data
 * of when it was taken. */
START_TEST(snapshot_read_only)
{
	uint8_t *a = h_alloc(65536), *got = h_alloc(65536);
	char *head, *snap;
	struct dc_info info;
	struct h_desc t;
	dc_disk *d;

	tr_create("snapimg", "4M");
	head = tr_spec("snapimg");
	snap = tr_spec("snapimg@s1");
	d = h_open(head, 0);
	h_fill(a, 65536, 21);
	ck_assert_int_eq(dc_write(d, 0, a, 65536, 0), 0);
	dc_close(d);
	tr_rbd("snap create %s/snapimg@%s", tr_pool, "s1");
	d = h_open(head, 0);
	h_fill(got, 65536, 22);
	ck_assert_int_eq(dc_write(d, 0, got, 65536, 0), 0);
	dc_close(d);

	d = h_open(snap, 0);
	dc_get_info(d, &info);
	ck_assert(info.flags & DC_INFO_READ_ONLY);
	ck_assert_int_eq(dc_write(d, 0, got, 512, 0), DC_E_READ_ONLY);
	ck_assert_int_eq(dc_unmap(d, 0, 8, 0), DC_E_READ_ONLY);
	ck_assert_int_eq(dc_resize(d, 16384), -EROFS);
	tr_expect(d, 0, 65536, 21);
	h_describe(d, "rbd", &t);
	ck_assert_str_eq(h_desc_get(&t, "snapshot"), "s1");
	ck_assert_str_eq(h_desc_get(&t, "read-only"), "yes");
	dc_close(d);

	d = h_open(head, DC_OPEN_READ_ONLY);
	tr_expect(d, 0, 65536, 22);
	dc_close(d);
	free(a);
	free(got);
	free(head);
	free(snap);
}
END_TEST

/* `rbd resize` by another client reaches an open chain through librbd's header
 * watch: the size changes without a reopen, waited for with a deadline. (A
 * layer above, memdiff:, keeps the size it was attached with: a layered disk's
 * size is its top layer's.) */
static const char *const tr_resize_chains[] = { "", "crypt:xts-aes-256:%s:", "delay:0:" };

START_TEST(resize_seen_through_chain)
{
	char *name = h_fmt("rs%d", _i), *img = h_fmt("%s/%s", tr_pool, name);
	char *top = h_fmt(tr_resize_chains[_i], tr_key), *base = tr_spec(name);
	uint64_t count = 0;
	uint8_t *buf = h_alloc(512);
	dc_disk *d;

	tr_create(name, "4M");
	d = h_openf(0, "%s%s", top, base);
	ck_assert_uint_eq(dc_sector_count(d), 4 * MIB / 512);
	tr_rbd("resize --size 12M %s%s", img, "");
	ck_assert_msg(dc_wait_resize(d, 4 * MIB / 512, 20000, &count) == 0,
		      "%s%s: no resize seen within 20 s", top, base);
	ck_assert_uint_eq(count, 12 * MIB / 512);
	ck_assert_uint_eq(dc_sector_count(d), 12 * MIB / 512);
	/* The new end is addressable at once. */
	h_fill(buf, 512, 5);
	ck_assert_int_eq(dc_write(d, 12 * MIB / 512 - 1, buf, 512, 0), 0);
	tr_rbd("resize --allow-shrink --size 6M %s%s", img, "");
	ck_assert_msg(dc_wait_resize(d, 12 * MIB / 512, 20000, &count) == 0,
		      "%s%s: no shrink seen within 20 s", top, base);
	ck_assert_uint_eq(count, 6 * MIB / 512);
	ck_assert_int_eq(dc_read(d, 6 * MIB / 512, buf, 512), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_ge(h_desc_num(d, "rbd", "resize-events"), 2);
	dc_close(d);
	free(buf);
	free(name);
	free(img);
	free(top);
	free(base);
}
END_TEST

/* dc_resize() resizes the image itself. */
START_TEST(dc_resize_resizes_image)
{
	char *spec, *img = h_fmt("%s/grow", tr_pool);
	dc_disk *d;

	tr_create("grow", "4M");
	spec = tr_spec("grow");
	d = h_open(spec, 0);
	ck_assert_int_eq(dc_resize(d, 16 * MIB / 512), 0);
	ck_assert_uint_eq(dc_sector_count(d), 16 * MIB / 512);
	dc_close(d);
	ck_assert_int_eq(
		h_sh("rbd -c '%s' info %s | grep -q 'size 16 MiB'", tr_conf, img), 0);
	free(spec);
	free(img);
}
END_TEST

/* Two writers of one image take turns with the exclusive lock: each write
 * lands, and describe() says who holds it. */
START_TEST(exclusive_lock_two_writers)
{
	char *spec;
	uint8_t *a = h_alloc(4096), *b = h_alloc(4096);
	struct h_desc t1, t2;
	dc_disk *d1, *d2;

	tr_create("lock", "4M");
	spec = tr_spec("lock");
	d1 = h_open(spec, 0);
	d2 = h_open(spec, 0);
	h_fill(a, 4096, 31);
	h_fill(b, 4096, 32);
	ck_assert_int_eq(dc_write(d1, 0, a, 4096, 0), 0);
	ck_assert_int_eq(dc_write(d2, 8, b, 4096, 0), 0);
	h_describe(d2, "rbd", &t2);
	ck_assert_ptr_nonnull(strstr(h_desc_get(&t2, "exclusive-lock"), "held by this"));
	h_describe(d1, "rbd", &t1);
	ck_assert_ptr_nonnull(strstr(h_desc_get(&t1, "exclusive-lock"), "not held"));
	tr_expect(d1, 8, 4096, 32);
	tr_expect(d2, 0, 4096, 31);
	dc_close(d1);
	dc_close(d2);
	free(a);
	free(b);
	free(spec);
}
END_TEST

/* Submit n requests of one 4 KiB buffer each (bufs, sectors i * 8) on a
 * queue driven by dc_queue_wait(), and wait for all of them (20 s at most). */
static void tr_driven(dc_queue *q, uint32_t op, uint8_t *bufs, int n)
{
	struct iovec iov[64];
	int done = 0;
	uint64_t deadline = h_now_ms() + 20000;

	ck_assert_int_le(n, 64);
	for (int i = 0; i < n; i++) {
		struct dc_io io = {
			.op = op, .sector = (uint64_t)i * 8, .iov = &iov[i], .iovcnt = 1
		};

		iov[i].iov_base = bufs + (size_t)i * 4096;
		iov[i].iov_len = 4096;
		ck_assert_int_eq(dc_submit(q, &io), 0);
	}
	while (done < n) {
		struct dc_completion c[64];
		int k;

		ck_assert_msg(h_now_ms() < deadline, "%d of %d requests done after 20 s",
			      done, n);
		ck_assert_int_ge(dc_queue_wait(q, 100), 0);
		k = dc_queue_reap(q, c, 64);
		for (int i = 0; i < k; i++)
			ck_assert_int_eq(c[i].result, 0);
		done += k;
	}
}

/* A queue driven by dc_queue_wait() reaps rbd's completions on its own
 * thread (rbd is its one poller); a blocking call on another queue meanwhile
 * still completes (the plugin's reaper serves queues that are not driven). */
START_TEST(driven_queue)
{
	char *spec;
	uint8_t *bufs = h_alloc(32 * 4096), *got = h_alloc(4096);
	dc_queue *q;
	dc_disk *d;

	tr_create("driven", "4M");
	spec = tr_spec("driven");
	d = h_open(spec, 0);
	ck_assert_int_eq(dc_queue_open(d, DC_QUEUE_POLL, &q), 0);
	ck_assert_uint_eq(dc_queue_pollers(q), 1);
	ck_assert_int_ge(dc_queue_wait(q, 0), 0);
	for (int i = 0; i < 32; i++)
		h_fill(bufs + (size_t)i * 4096, 4096, 40 + (uint64_t)i);
	tr_driven(q, DC_OP_WRITE, bufs, 32);
	ck_assert_int_eq(dc_read(d, 8, got, 4096), 0);
	ck_assert_int_eq(h_check(got, 4096, 41), -1);
	memset(bufs, 0, 32 * 4096);
	tr_driven(q, DC_OP_READ, bufs, 32);
	for (int i = 0; i < 32; i++)
		ck_assert_int_eq(h_check(bufs + (size_t)i * 4096, 4096, 40 + (uint64_t)i),
				 -1);
	dc_queue_close(q);
	dc_close(d);
	free(bufs);
	free(got);
	free(spec);
}
END_TEST

/* dc_map() collects extents here. */
struct tr_map {
	int n;
	struct dc_extent e[8];
};

static int tr_map_cb(void *arg, const struct dc_extent *e)
{
	struct tr_map *m = arg;

	if (m->n == 8)
		return -E2BIG;
	m->e[m->n++] = *e;
	return 0;
}

/* The allocation map comes from librbd's object map: objects never written
 * are holes that read as zero, written ones data (whole 4 MiB objects). */
START_TEST(map_reports_holes)
{
	char *spec;
	uint8_t *buf = h_alloc(4096);
	struct tr_map m = { 0 };
	dc_disk *d;

	tr_create("map", "16M");
	spec = tr_spec("map");
	d = h_open(spec, 0);
	h_fill(buf, 4096, 9);
	ck_assert_int_eq(dc_write(d, 0, buf, 4096, 0), 0);
	ck_assert_int_eq(dc_write(d, 12 * MIB / 512 + 8, buf, 4096, 0), 0);
	ck_assert_int_eq(dc_map(d, 0, 16 * MIB, tr_map_cb, &m), 0);
	ck_assert_int_eq(m.n, 3);
	ck_assert_uint_eq(m.e[0].offset, 0);
	ck_assert_uint_eq(m.e[0].length, 4 * MIB);
	ck_assert_uint_eq(m.e[0].flags, 0);
	ck_assert_uint_eq(m.e[1].offset, 4 * MIB);
	ck_assert_uint_eq(m.e[1].length, 8 * MIB);
	ck_assert_uint_eq(m.e[1].flags, DC_EXTENT_HOLE | DC_EXTENT_ZERO);
	ck_assert_uint_eq(m.e[2].offset, 12 * MIB);
	ck_assert_uint_eq(m.e[2].length, 4 * MIB);
	ck_assert_uint_eq(m.e[2].flags, 0);
	dc_close(d);
	free(buf);
	free(spec);
}
END_TEST

START_TEST(errors_name_the_fault)
{
	uint64_t t0;

	h_open_fails(0, -ENOENT, "the pool 'nopool' does not exist",
		     "rbd:nopool/x;conf=%s", tr_conf);
	h_open_fails(0, -ENOENT, "the image 'nope' does not exist in the pool",
		     "rbd:%s/nope;conf=%s", tr_pool, tr_conf);
	h_open_fails(0, -ENOENT, "has no snapshot 'nosnap'", "rbd:%s/conf@nosnap;conf=%s",
		     tr_pool, tr_conf);
	h_open_fails(0, 0, "refused client.admin's key", "rbd:%s/conf;conf=%s;keyring=%s",
		     tr_pool, tr_conf, tr_bad_key);
	h_open_fails(0, -ENOENT, "no key for client.nobody",
		     "rbd:%s/conf;conf=%s;id=nobody", tr_pool, tr_conf);
	h_open_fails(0, -EINVAL, "expected POOL/IMAGE[@SNAP]", "rbd:conf;conf=%s",
		     tr_conf);
	h_open_fails(0, -ENOENT, "cannot read the Ceph configuration /nonexistent.conf",
		     "rbd:%s/conf;conf=/nonexistent.conf", tr_pool);
	/* No monitor on the port: the open fails after the timeout, not later. */
	t0 = h_now_ms();
	h_open_fails(0, -ETIMEDOUT, "no monitor answered within 1 s",
		     "rbd:%s/conf;mon=127.0.0.1:1;keyring=%s;timeout=1", tr_pool,
		     getenv("RBD_KEYRING"));
	ck_assert_uint_lt(h_now_ms() - t0, 5000);
	/* A monitor address that accepts connections and never answers (a
	 * socket nobody accepts on): the same bounded failure. */
	{
		struct sockaddr_in sa = { .sin_family = AF_INET,
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t len = sizeof(sa);
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		ck_assert_int_eq(listen(fd, 8), 0);
		ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
		t0 = h_now_ms();
		h_open_fails(0, -ETIMEDOUT, "no monitor answered within 1 s",
			     "rbd:%s/conf;mon=127.0.0.1:%u;keyring=%s;timeout=1", tr_pool,
			     ntohs(sa.sin_port), getenv("RBD_KEYRING"));
		ck_assert_uint_lt(h_now_ms() - t0, 5000);
		close(fd);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("rbd");
	TCase *tc = tcase_create("rbd");
	const struct conformance_opts ro = { .open_flags = DC_OPEN_READ_ONLY };
	uint8_t key[64];
	char *spec;

	tr_conf = getenv("CEPH_CONF");
	tr_pool = getenv("RBD_POOL");
	if (!tr_conf || !tr_pool || !getenv("RBD_KEYRING"))
		h_skip("run through tests/test-rbd.sh, which starts the Ceph cluster");
	if (!h_have_plugin("rbd"))
		h_skip("the rbd plugin is not built (librbd-dev missing)");
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(i * 7 + 1);
	tr_key = h_tmpfile_data(key, sizeof(key), 0600, ".key");
	tr_bad_key = h_tmppath(".keyring");
	if (h_sh("ceph-authtool --create-keyring %s --gen-key -n client.admin",
		 tr_bad_key) ||
	    h_sh("rbd -c '%s' create --size 8M %s/conf && rbd -c '%s' snap create %s/conf@base",
		 tr_conf, tr_pool, tr_conf, tr_pool)) {
		fprintf(stderr, "cannot prepare the test images\n");
		return 1;
	}

	spec = h_fmt("rbd:%s/conf;conf=%s", tr_pool, tr_conf);
	conformance_add(s, "rbd", spec);
	free(spec);
	spec = h_fmt("rbd:%s/conf@@base;conf=%s", tr_pool, tr_conf);
	conformance_add(s, "rbd-snapshot", spec);
	free(spec);
	spec = h_fmt("rbd:%s/conf;conf=%s", tr_pool, tr_conf);
	conformance_add_opts(s, "rbd-ro", spec, &ro);
	free(spec);
	spec = h_fmt("memdiff:rbd:%s/conf;conf=%s", tr_pool, tr_conf);
	conformance_add(s, "memdiff-rbd", spec);
	free(spec);
	spec = h_fmt("crypt:xts-aes-256:%s:rbd:%s/conf;conf=%s", tr_key, tr_pool,
		     tr_conf);
	conformance_add(s, "crypt-rbd", spec);
	free(spec);

	tcase_add_test(tc, describe_reports);
	tcase_add_test(tc, differential_import_export);
	tcase_add_test(tc, snapshot_read_only);
	tcase_add_loop_test(tc, resize_seen_through_chain, 0,
			    sizeof(tr_resize_chains) / sizeof(tr_resize_chains[0]));
	tcase_add_test(tc, dc_resize_resizes_image);
	tcase_add_test(tc, exclusive_lock_two_writers);
	tcase_add_test(tc, driven_queue);
	tcase_add_test(tc, map_reports_holes);
	tcase_add_test(tc, errors_name_the_fault);
	suite_add_tcase(s, tc);
	return h_run(s);
}
