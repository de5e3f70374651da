/* SPDX-License-Identifier: MIT */
/* dc_map(): the allocation map through layers and decorators (ABI 1.1). */
#include "harness.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAXE 32

struct emap {
	struct dc_extent e[MAXE];
	int n;
};

static int collect(void *arg, const struct dc_extent *e)
{
	struct emap *m = arg;

	ck_assert_int_lt(m->n, MAXE);
	m->e[m->n++] = *e;
	return 0;
}

static void map(dc_disk *d, uint64_t off, uint64_t len, struct emap *m)
{
	memset(m, 0, sizeof(*m));
	ck_assert_msg(dc_map(d, off, len, collect, m) == 0, "dc_map: %s",
		      dc_last_error());
}

static void expect(const struct emap *m, int i, uint64_t off, uint64_t len,
		   uint32_t flags, uint32_t layer)
{
	ck_assert_int_lt(i, m->n);
	ck_assert_msg(
		m->e[i].offset == off && m->e[i].length == len &&
			m->e[i].flags == flags && m->e[i].layer == layer,
		"extent %d: %llu+%llu flags %u layer %u, expected %llu+%llu flags %u "
		"layer %u",
		i, (unsigned long long)m->e[i].offset, (unsigned long long)m->e[i].length,
		m->e[i].flags, m->e[i].layer, (unsigned long long)off,
		(unsigned long long)len, flags, layer);
}

static void put(dc_disk *d, uint64_t off, size_t len, uint8_t v)
{
	uint8_t *b = h_alloc(len);

	memset(b, v, len);
	ck_assert_int_eq(dc_write(d, off / 512, b, len, 0), 0);
	free(b);
}

#define HZ (DC_EXTENT_HOLE | DC_EXTENT_ZERO)

START_TEST(test_mem)
{
	dc_disk *d = h_open("mem:1M", 0);
	struct emap m;

	map(d, 0, 1 << 20, &m);
	ck_assert_int_eq(m.n, 1);
	expect(&m, 0, 0, 1 << 20, HZ, DC_EXTENT_NO_LAYER);

	put(d, 4096, 8192, 1);
	put(d, 512 * 1024, 512, 2);
	map(d, 0, 1 << 20, &m);
	ck_assert_int_eq(m.n, 5);
	expect(&m, 0, 0, 4096, HZ, DC_EXTENT_NO_LAYER);
	expect(&m, 1, 4096, 8192, 0, 0);
	expect(&m, 2, 12288, 512 * 1024 - 12288, HZ, DC_EXTENT_NO_LAYER);
	expect(&m, 3, 512 * 1024, 512, 0, 0);
	expect(&m, 4, 512 * 1024 + 512, (1 << 20) - 512 * 1024 - 512, HZ,
	       DC_EXTENT_NO_LAYER);

	/* Clipped to the range asked for, and to the disk. */
	map(d, 5000, 4000, &m);
	ck_assert_int_eq(m.n, 1);
	expect(&m, 0, 5000, 4000, 0, 0);
	map(d, (1 << 20) - 100, 1 << 20, &m);
	ck_assert_int_eq(m.n, 1);
	expect(&m, 0, (1 << 20) - 100, 100, HZ, DC_EXTENT_NO_LAYER);
	map(d, 1 << 20, 512, &m);
	ck_assert_int_eq(m.n, 0);
	dc_close(d);
}
END_TEST

/* A large sparse disk maps without walking every chunk. */
START_TEST(test_mem_sparse_large)
{
	dc_disk *d = h_open("mem:1T", 0);
	struct emap m;

	put(d, UINT64_C(600) << 30, 4096, 3);
	map(d, 0, UINT64_C(1) << 40, &m);
	ck_assert_int_eq(m.n, 3);
	expect(&m, 1, UINT64_C(600) << 30, 4096, 0, 0);
	dc_close(d);
}
END_TEST

/* Which layer holds each extent, through a decorator that passes data on. */
START_TEST(test_layers)
{
	char *base = h_tmppath(".db");
	dc_disk *d;
	struct emap m;

	if (!h_have_plugin("sqlite"))
		h_skip("the sqlite plugin was not built");
	/* Data in the bottom layer, then a layer above it written over part. */
	d = h_openf(0, "sql:%s;create=1M", base);
	put(d, 0, 16384, 1);
	dc_close(d);
	d = h_openf(0, "delay:0:memdiff:sql:%s", base);
	put(d, 4096, 4096, 2); /* memdiff: layer 0 */
	map(d, 0, 1 << 20, &m);
	expect(&m, 0, 0, 4096, 0, 1);
	expect(&m, 1, 4096, 4096, 0, 0);
	/* The rest of the sql layer's data; past it, sqlite either says the
	 * layer lacks the sectors (no layer holds them) or, if it cannot tell,
	 * that it holds data. */
	ck_assert_uint_eq(m.e[2].offset, 8192);
	ck_assert_uint_ge(m.e[2].length, 8192);
	ck_assert_uint_eq(m.e[2].flags, 0);
	ck_assert_uint_eq(m.e[2].layer, 1);
	dc_close(d);
	free(base);
}
END_TEST

/* crypt: zeroes below decrypt to noise, so nothing reads as zero. */
START_TEST(test_crypt_not_zero)
{
	uint8_t k[64];
	char *key;
	dc_disk *d;
	struct emap m;

	h_fill(k, sizeof(k), 7);
	key = h_tmpfile_data(k, sizeof(k), 0600, ".key");

	if (!h_have_plugin("crypt"))
		h_skip("the crypt plugin was not built");
	d = h_openf(0, "crypt:xts-aes-256:%s:mem:1M", key);
	map(d, 0, 1 << 20, &m);
	ck_assert_int_eq(m.n, 1);
	expect(&m, 0, 0, 1 << 20, DC_EXTENT_HOLE, DC_EXTENT_NO_LAYER);
	dc_close(d);
	free(key);
}
END_TEST

/* A backend with no extents() reports data: a copy that skips holes skips
 * nothing it should not. */
START_TEST(test_unknown_is_data)
{
	char *path = h_tmpfile(1 << 20, ".img");
	dc_disk *d = h_openf(0, "memdiff:file:%s", path);
	struct emap m;

	put(d, 8192, 512, 4);
	map(d, 0, 1 << 20, &m);
	/* The file: plugin may tell holes itself; either way the memdiff
	 * sectors are layer 0 and the rest is the file's (layer 1). */
	expect(&m, 0, 0, 8192, m.e[0].flags, 1);
	expect(&m, 1, 8192, 512, 0, 0);
	ck_assert_uint_eq(m.e[m.n - 1].offset + m.e[m.n - 1].length, 1 << 20);
	ck_assert_uint_eq(m.e[m.n - 1].layer, 1);
	dc_close(d);
	free(path);
}
END_TEST

static int stop_at_second(void *arg, const struct dc_extent *e)
{
	int *n = arg;

	(void)e;
	return ++*n == 2 ? 42 : 0;
}

START_TEST(test_callback_stops)
{
	dc_disk *d = h_open("mem:1M", 0);
	int n = 0;

	put(d, 4096, 512, 1);
	ck_assert_int_eq(dc_map(d, 0, 1 << 20, stop_at_second, &n), 42);
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(dc_map(d, 0, 1 << 20, NULL, NULL), -EINVAL);
	dc_close(d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("map");
	TCase *tc = tcase_create("map");

	tcase_add_test(tc, test_mem);
	tcase_add_test(tc, test_mem_sparse_large);
	tcase_add_test(tc, test_layers);
	tcase_add_test(tc, test_crypt_not_zero);
	tcase_add_test(tc, test_unknown_is_data);
	tcase_add_test(tc, test_callback_stops);
	suite_add_tcase(s, tc);
	return h_run(s);
}
