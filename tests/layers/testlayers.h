/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the tests that use the test-only layer plugins (tlayer, tdisk):
 * putting them on the plugin path, their data pattern, opening specs, and
 * reading the counters they report through dc_describe().
 */
#ifndef DISKCORE_TESTS_TESTLAYERS_H
#define DISKCORE_TESTS_TESTLAYERS_H

#include "harness.h"

#include <check.h>
#include <diskcore/diskcore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Put DISKCORE_BUILD_ROOT/tests/layers first on the plugin path (call from
 * main, before anything opens a disk). */
static inline void tl_use_test_layers(void)
{
	const char *root = getenv("DISKCORE_BUILD_ROOT");
	const char *path = getenv("DISKCORE_PLUGIN_PATH");
	char buf[8192];

	if (!root)
		h_skip("DISKCORE_BUILD_ROOT is not set (run through meson test)");
	snprintf(buf, sizeof(buf), "%s/tests/layers%s%s", root, path ? ":" : "",
		 path ? path : "");
	setenv("DISKCORE_PLUGIN_PATH", buf, 1);
}

/* tlayer's and tdisk's counting pattern: the 32-bit word at byte offset o of
 * the disk is o/4 | seed << 24 (little-endian). */
static inline uint32_t tl_pat_word(uint64_t sector, unsigned w, uint32_t ss,
				   uint32_t seed)
{
	return (uint32_t)((sector * ss) / 4 + w) | (seed << 24);
}

static inline void tl_pat_fill(void *buf, uint64_t sector, uint64_t n, uint32_t ss,
			       uint32_t seed)
{
	uint32_t *w = buf;

	for (uint64_t i = 0; i < n * ss / 4; i++)
		w[i] = tl_pat_word(sector, (unsigned)i, ss, seed);
}

/* Index of the first word that differs from the pattern, or -1. */
static inline long tl_pat_check(const void *buf, uint64_t sector, uint64_t n, uint32_t ss,
				uint32_t seed)
{
	const uint32_t *w = buf;

	for (uint64_t i = 0; i < n * ss / 4; i++)
		if (w[i] != tl_pat_word(sector, (unsigned)i, ss, seed))
			return (long)i;
	return -1;
}

/* Write n sectors of the pattern at sector. */
static inline void tl_write_pattern(dc_disk *d, uint64_t sector, uint64_t n,
				    uint32_t seed)
{
	uint32_t ss = dc_sector_size(d);
	uint8_t *buf = h_alloc(n * ss);

	tl_pat_fill(buf, sector, n, ss, seed);
	ck_assert_int_eq(dc_write(d, sector, buf, n * ss, 0), 0);
	free(buf);
}

static inline dc_disk *tl_open_ok(const char *spec, uint32_t flags)
{
	dc_disk *d = NULL;
	int rc = dc_open(spec, flags, &d);

	ck_assert_msg(rc == 0, "open %s: %d %s", spec, rc, dc_last_error());
	return d;
}

/* Opening spec fails with err (unless 0) and a message containing needle. */
static inline void tl_open_fails(const char *spec, uint32_t flags, int err,
				 const char *needle)
{
	dc_disk *d = NULL;
	int rc = dc_open(spec, flags, &d);

	ck_assert_msg(rc < 0, "open %s succeeded, expected an error with '%s'", spec,
		      needle);
	if (err)
		ck_assert_msg(rc == err, "open %s: %d, expected %d (%s)", spec, rc, err,
			      dc_last_error());
	ck_assert_msg(strstr(dc_last_error(), needle), "open %s: message '%s' lacks '%s'",
		      spec, dc_last_error(), needle);
}

struct tl_kv_find {
	const char *form, *key;
	int nth; /* which node of that form, top first */
	int seen;
	char value[256];
	bool found;
};

static inline int tl_kv_visit(void *arg, int depth, const char *plugin, const char *form,
			      const struct dc_info *info, const char *key,
			      const char *value)
{
	struct tl_kv_find *f = arg;

	(void)depth;
	(void)plugin;
	(void)info;
	if (f->found || strcmp(form, f->form))
		return 0;
	if (!key) {
		f->seen++;
		return 0;
	}
	if (f->seen == f->nth + 1 && !strcmp(key, f->key)) {
		snprintf(f->value, sizeof(f->value), "%s", value);
		f->found = true;
	}
	return 0;
}

/* The value of key for the nth node (0: topmost) whose spec form is `form`
 * ("layered" for the core's layered disk). Valid until the next call. */
static inline const char *tl_describe_str(dc_disk *d, const char *form, int nth,
					  const char *key)
{
	static struct tl_kv_find f;

	memset(&f, 0, sizeof(f));
	f.form = form;
	f.key = key;
	f.nth = nth;
	dc_describe(d, tl_kv_visit, &f);
	ck_assert_msg(f.found, "no %s[%d]/%s in describe", form, nth, key);
	return f.value;
}

static inline unsigned long long tl_describe_num(dc_disk *d, const char *form, int nth,
						 const char *key)
{
	return strtoull(tl_describe_str(d, form, nth, key), NULL, 10);
}

#endif
