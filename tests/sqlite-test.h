/* SPDX-License-Identifier: MIT */
/* What the files of test-sqlite share: the sqlite3 shell as the oracle, disks
 * with patterned sectors, the test cases each file adds to the suite, and the
 * helper modes main() dispatches to (test-sqlite.c lists them). */
#ifndef DISKCORE_TESTS_SQLITE_TEST_H
#define DISKCORE_TESTS_SQLITE_TEST_H

#include "harness.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SS 512

/* --- The sqlite3 shell (test-sqlite.c) ---------------------------------------- */

/* Run `sqlite3 -batch path sql`; returns its exit status, output in out. */
int sqt_shell(const char *path, const char *sql, char *out, size_t outlen);
/* The shell's answer to a query, without the trailing newline (a static
 * buffer, valid until the next call); fails the test when the shell does. */
char *sqt_query(const char *path, const char *sql);
/* PRAGMA integrity_check must say ok. */
void sqt_integrity(const char *path);

/* --- Disks and databases (test-sqlite.c) -------------------------------------- */

/* A raw file of `size` bytes whose sector s holds h_fill(seed + s). */
char *sqt_base(uint64_t size, uint64_t seed);
/* Replace a file's contents with bytes no test writes, keeping its size. */
void sqt_garble(const char *path);
/* Write sectors [sector, sector+n) with h_fill(seed + s) each. */
void sqt_write(dc_disk *d, uint64_t sector, uint64_t n, uint64_t seed);
/* Sector s of [sector, sector+n) reads as h_fill(seed + s), or zero if seed is 0. */
void sqt_expect(dc_disk *d, uint64_t sector, uint64_t n, uint64_t seed);
/* The rows of the sectors table (that match `where` unless it is NULL). */
long sqt_rows(const char *db, const char *where);
/* A new, empty sqlite disk at `path`. */
void sqt_make_db(const char *path, uint64_t size);
/* The directory autocache: keeps its caches in for these tests. */
char *sqt_cache_root(void);

/* --- The test cases, one TCase per file ---------------------------------------- */

TCase *sqlite_tc_layered(void);	    /* sqlite-layered.c: sqldiff: and autocache: */
TCase *sqlite_tc_spec(void);	    /* sqlite-spec.c: spec strings */
TCase *sqlite_tc_concurrency(void); /* sqlite-concurrency.c: threads, resize */

/* --- Helper modes (not tests) ------------------------------------------------- */

/* sqlite-layered.c: one of layered_cache_race's processes (race-open). */
int sqt_racer(const char *spec, int go, int i);
/* sqlite-crash.c: tests/test-sqlite-crash.sh's three steps. */
int cr_init(const char *db);
int cr_writer(const char *db, const char *log, uint32_t iter);
int cr_verify(const char *db, const char *log, const char *statefile, uint32_t iter);
/* sqlite-bench.c: IOPS of one workload (bench-one), and the targets. */
double bench_run(const char *spec, uint32_t flags, bool write, uint64_t span, int qd,
		 double secs);
int bench_main(const char *dir, uint64_t mib);

#endif
