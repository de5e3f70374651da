/* SPDX-License-Identifier: MIT */
/* Small helpers shared by the Check test programs: temporary files that clean up
 * after themselves, deterministic data patterns, opening specs, loading a plugin by
 * hand, byte-order helpers, skipping, and running a suite. Also: reading and
 * writing whole files, running tools, what describe() reports, and waiting for
 * completions with a deadline. Add here rather than in a test; rename nothing. */
#ifndef DISKCORE_TESTS_HARNESS_H
#define DISKCORE_TESTS_HARNESS_H

#include <check.h>
#include <diskcore/diskcore.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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
/* The mixing function behind h_fill (a bijection on 64-bit values), for tests
 * that want reproducible pseudo-random numbers or seeds of their own. */
uint64_t h_mix64(uint64_t x);

/* page-aligned, zeroed memory (free with free()); aborts on failure. */
void *h_alloc(size_t len);

/* A fresh file in h_tmpdir() holding the len bytes of data, with exactly `mode`
 * (umask does not apply). Returns a malloc'd path; aborts on failure, so it may
 * be called from main(). */
char *h_tmpfile_data(const void *data, size_t len, mode_t mode, const char *suffix);
/* Create or truncate path and write the len bytes of data, mode exactly `mode`;
 * aborts on failure. */
void h_write_file(const char *path, const void *data, size_t len, mode_t mode);
/* The whole file in h_alloc'd memory with one spare zero byte after it (so text
 * is a string); *len receives the size. Fails the test when it cannot. */
void *h_read_file(const char *path, size_t *len);
/* Exactly len bytes at off of an existing file; fails the test otherwise. */
void h_pread_file(const char *path, off_t off, void *buf, size_t len);
void h_pwrite_file(const char *path, off_t off, const void *buf, size_t len);

/* Is prog on $PATH? */
bool h_have_program(const char *prog);
/* Run the command built by printf with /bin/sh, its output kept quiet unless it
 * fails; then it goes to stderr with the command. Returns system()'s status. */
int h_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* printf into a malloc'd string; aborts on failure. */
char *h_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* dc_open(spec, flags), failing the test (with dc_last_error()) unless it opens. */
dc_disk *h_open(const char *spec, uint32_t flags);
/* The same, with the spec built by printf. */
dc_disk *h_openf(uint32_t flags, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The spec built by printf must fail to open, with exactly `rc` (or, when rc is 0,
 * any negative code), leaving the disk pointer NULL, and dc_last_error() must
 * contain `needle`. */
void h_open_fails(uint32_t flags, int rc, const char *needle, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Is NAME.so on $DISKCORE_PLUGIN_PATH (the plugin was built)? Nothing is
 * loaded, so main() may ask before the test cases fork. */
bool h_have_plugin(const char *name);

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

/* What dc_describe() reported for the nodes of one plugin: their key/value pairs
 * in order (a NULL value as ""), and whether the plugin is in the chain at all. */
#define H_DESC_MAX 48
struct h_desc {
	bool seen;
	int n;
	char keys[H_DESC_MAX][32];
	char values[H_DESC_MAX][512];
};
/* Fill *t from dc_describe(d) for `plugin` (NULL: every node); fails the test if
 * dc_describe fails or reports more pairs than fit. */
void h_describe(dc_disk *d, const char *plugin, struct h_desc *t);
/* The value of the first `key`, or NULL. */
const char *h_desc_get(const struct h_desc *t, const char *key);
/* The number `plugin`'s describe() reports under `key` (fails the test when
 * the key is missing). */
uint64_t h_desc_num(dc_disk *d, const char *plugin, const char *key);

/* --- Waiting for completions (deadlines, never sleeps) --------------------- */

/* Take up to max completions from a DC_QUEUE_POLL queue, waiting on
 * dc_queue_fd() until there is at least one; fails the test after timeout_ms. */
int h_reap(dc_queue *q, struct dc_completion *out, int max, int timeout_ms);

/* Counts completions delivered by callback: set dc_io.cb = h_count_cb and
 * dc_io.user_data = the counter. last_ns is h_now_ns() at the latest one. */
struct h_count {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned done, failed;
	int first_err; /* the first failed result */
	uint64_t last_ns;
};
#define H_COUNT_INIT                                                                \
	{                                                                           \
		.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER \
	}
void h_count_cb(const struct dc_completion *c);
/* Wait until n completions are counted; fails the test after timeout_ms. */
void h_count_wait(struct h_count *k, unsigned n, unsigned timeout_ms);
/* The wait behind it, for counters of one's own: with `lock` held, wait on
 * `cond` until *counter >= n; fails the test after timeout_ms. */
void h_cond_wait_count(pthread_mutex_t *lock, pthread_cond_t *cond,
		       const unsigned *counter, unsigned n, unsigned timeout_ms);

/* Big-endian fields, as in VHD footers and headers. */
uint32_t h_get_be32(const uint8_t *p);
uint64_t h_get_be64(const uint8_t *p);
void h_put_be32(uint8_t *p, uint32_t v);
void h_put_be64(uint8_t *p, uint64_t v);
/* VHD's checksum: the one's complement of the sum of the len bytes of b, leaving
 * out the 4-byte checksum field at offset `skip`. */
uint32_t h_vhd_checksum(const uint8_t *b, size_t len, size_t skip);
/* A fixed VHD's footer (type 2) for a disk of `size` bytes with unique id uid,
 * written from the VHD specification, independently of the plugins. Another
 * type gives the same footer with that type: one a fixed reader must refuse. */
void h_vhd_footer(uint8_t f[512], uint64_t size, uint32_t type, const uint8_t uid[16]);

/* Print "SKIP: reason" on stderr and exit 77 (only outside a Check test case). */
void h_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Run the suite (verbosity from $CK_VERBOSITY, default normal) and return the exit code
 * for main(): 0 when every case passed. */
int h_run(Suite *s);

/* Put $DISKCORE_BUILD_ROOT/SUBDIR (e.g. "tests/plugins/probe", where a test-only
 * plugin is built) in front of $DISKCORE_PLUGIN_PATH. Call from main(), before
 * the first dc_open(); exits 77 when not run through meson test. */
void h_plugin_path_add(const char *subdir);

/* Monotonic milliseconds, for deadlines in waits (never for sleeping). */
uint64_t h_now_ms(void);
/* Monotonic nanoseconds, for timing checks. */
uint64_t h_now_ns(void);

#endif
