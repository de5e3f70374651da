/* SPDX-License-Identifier: MIT */
/* Small helpers shared by the Check test programs: temporary files that clean up
 * after themselves, deterministic data patterns, skipping, and running a suite. */
#ifndef DISKCORE_TESTS_HARNESS_H
#define DISKCORE_TESTS_HARNESS_H

#include <check.h>
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
