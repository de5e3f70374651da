/* SPDX-License-Identifier: MIT */
/* Small helpers shared by the Check test programs: temporary files that clean up
 * after themselves, deterministic data patterns, opening specs, loading a plugin by
 * hand, byte-order helpers, skipping, and running a suite. */
#ifndef DISKCORE_TESTS_HARNESS_H
#define DISKCORE_TESTS_HARNESS_H

#include <check.h>
#include <diskcore/diskcore.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit status meson treats as "skipped". */
#define H_SKIP 77

/* A private directory for this process, removed with its contents at exit. */
const char *h_tmpdir(void);
/* A fresh file of `size` bytes (sparse, reads as zeroes) in h_tmpdir(). The name
 * ends with `suffix` (may be NULL, e.g. ".vhd"). Returns a malloc'd path. */
char *h_tmpfile(uint64_t size, const char *suffix);
/* A fresh path in h_tmpdir() that does not exist yet. Returns a malloc'd path. */
char *h_tmppath(const char *suffix);
/* A fresh empty directory in h_tmpdir(). Returns a malloc'd path. */
char *h_tmpsubdir(void);

/* Fill buf with a pattern that depends on `seed` and on each byte's position, so
 * that a block written at the wrong offset or with another seed is detected. */
void h_fill(void *buf, size_t len, uint64_t seed);
/* Returns the offset of the first byte that differs from h_fill(seed), or -1. */
long h_check(const void *buf, size_t len, uint64_t seed);
/* Returns the offset of the first non-zero byte, or -1. */
long h_check_zero(const void *buf, size_t len);

/* page-aligned, zeroed memory (free with free()); aborts on failure. */
void *h_alloc(size_t len);

/* printf into a malloc'd string; aborts on failure. */
char *h_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* dc_open(spec, flags), failing the test (with dc_last_error()) unless it opens. */
dc_disk *h_open(const char *spec, uint32_t flags);
/* The same, with the spec built by printf. */
dc_disk *h_openf(uint32_t flags, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The spec built by printf must fail to open, with exactly `rc` (or, when rc is 0,
 * any negative code), and dc_last_error() must contain `needle`. */
void h_open_fails(uint32_t flags, int rc, const char *needle, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Load NAME.so from the first directory on $DISKCORE_PLUGIN_PATH that has it and
 * return its descriptor, to call the plugin's callbacks below the core's checks.
 * *so receives the handle for dlclose(). Fails the test when it cannot. */
struct dc_plugin;
const struct dc_plugin *h_plugin_open(const char *name, void **so);

/* An instance of a plugin opened by hand (h_direct_open). */
struct h_direct {
	void *so;
	const struct dc_plugin *p;
	void *inst;
	struct dc_info info;
};
/* h_plugin_open(name), then open its form `name` with the one field `arg`; fails
 * the test unless open() returns 0. */
void h_direct_open(struct h_direct *t, const char *name, const char *arg, bool ro);
void h_direct_close(struct h_direct *t);

/* Big-endian fields, as in VHD footers and headers. */
uint32_t h_get_be32(const uint8_t *p);
uint64_t h_get_be64(const uint8_t *p);
void h_put_be32(uint8_t *p, uint32_t v);
void h_put_be64(uint8_t *p, uint64_t v);
/* VHD's checksum: the one's complement of the sum of the len bytes of b, leaving
 * out the 4-byte checksum field at offset `skip`. */
uint32_t h_vhd_checksum(const uint8_t *b, size_t len, size_t skip);

/* Print "SKIP: reason" on stderr and exit 77 (only outside a Check test case). */
void h_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Run the suite (verbosity from $CK_VERBOSITY, default normal) and return the exit code
 * for main(): 0 when every case passed. */
int h_run(Suite *s);

/* Put $DISKCORE_BUILD_ROOT/SUBDIR (e.g. "tests/plugins/probe", where a test-only
 * plugin is built) in front of $DISKCORE_PLUGIN_PATH. Call from main(), before
 * the first dc_open(); exits 77 when not run through meson test. */
void h_plugin_path_add(const char *subdir);

/* Wall-clock milliseconds, for deadlines in waits (never for sleeping). */
uint64_t h_now_ms(void);

#endif
