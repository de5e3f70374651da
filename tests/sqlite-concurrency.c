/* SPDX-License-Identifier: MIT */
/* test-sqlite: sql: under threads. Readers beside a writer, writers beside
 * checkpoints, resize() beside writers and dc_map(), and the read snapshot an
 * idle disk lets go. */
#include "harness.h"
#include "sqlite-test.h"

#include <diskcore/diskcore.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Readers never see part of a multi-sector write: a request is one transaction
 * and a read of a range is one query. Sector i of generation g holds g in its
 * first 8 bytes and h_fill(g * 64 + i) after that. */
#define SQT_BLOCK 8
#define SQT_GENS 600

struct sqt_conc {
	dc_disk *disk;
	atomic_int done;
	atomic_long reads;
	atomic_int bad;
};

static void sqt_gen_fill(uint8_t *buf, uint64_t g)
{
	for (int i = 0; i < SQT_BLOCK; i++) {
		memcpy(buf + i * SS, &g, 8);
		h_fill(buf + i * SS + 8, SS - 8, g * 64 + (uint64_t)i);
	}
}

static void *sqt_conc_reader(void *arg)
{
	struct sqt_conc *c = arg;
	uint8_t *buf = h_alloc(SQT_BLOCK * SS);

	while (!atomic_load(&c->done) || atomic_load(&c->reads) < 50) {
		uint64_t g;

		if (dc_read(c->disk, 16, buf, SQT_BLOCK * SS) < 0) {
			atomic_fetch_add(&c->bad, 1);
			break;
		}
		atomic_fetch_add(&c->reads, 1);
		memcpy(&g, buf, 8);
		for (int i = 0; i < SQT_BLOCK; i++) {
			uint64_t gi;

			memcpy(&gi, buf + i * SS, 8);
			if (gi != g || (g && h_check(buf + i * SS + 8, SS - 8,
						     g * 64 + (uint64_t)i) >= 0))
				atomic_fetch_add(&c->bad, 1);
		}
	}
	free(buf);
	return NULL;
}

START_TEST(concurrent_reads_see_whole_writes)
{
	char *db = h_tmppath(".dbhd");
	struct sqt_conc c = { 0 };
	pthread_t th[3];
	uint8_t *buf = h_alloc(SQT_BLOCK * SS);

	sqt_make_db(db, 64 * 1024);
	c.disk = h_openf(0, "sql:%s", db);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, sqt_conc_reader, &c), 0);
	for (uint64_t g = 1; g <= SQT_GENS; g++) {
		sqt_gen_fill(buf, g);
		ck_assert_int_eq(dc_write(c.disk, 16, buf, SQT_BLOCK * SS, 0), 0);
	}
	atomic_store(&c.done, 1);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	ck_assert_msg(atomic_load(&c.bad) == 0, "%d torn or failed reads of %ld",
		      atomic_load(&c.bad), atomic_load(&c.reads));
	memset(buf, 0, SQT_BLOCK * SS);
	ck_assert_int_eq(dc_read(c.disk, 16, buf, SQT_BLOCK * SS), 0);
	uint8_t *want = h_alloc(SQT_BLOCK * SS);
	sqt_gen_fill(want, SQT_GENS);
	ck_assert(memcmp(buf, want, SQT_BLOCK * SS) == 0);
	dc_close(c.disk);
	sqt_integrity(db);
	free(want);
	free(buf);
	free(db);
}
END_TEST

/* Writers on several threads (their requests share commits) with flushes, and
 * enough data that checkpoints run beside them; everything reads back after a
 * reopen. Thread t owns blocks t, t + SQT_WRITERS, ... and writes each block
 * with the seed of its pass. */
#define SQT_WRITERS 4
#define SQT_BLOCKS 256 /* of 8 sectors: 1 MiB */
#define SQT_PASSES 3

struct sqt_writer {
	dc_disk *disk;
	int t;
	int failed;
};

static void *sqt_writer_thread(void *arg)
{
	struct sqt_writer *w = arg;
	uint8_t *buf = h_alloc(8 * SS);

	for (int pass = 1; pass <= SQT_PASSES; pass++) {
		for (int b = w->t; b < SQT_BLOCKS; b += SQT_WRITERS) {
			uint64_t sector = (uint64_t)b * 8;

			for (int i = 0; i < 8; i++)
				h_fill(buf + i * SS, SS,
				       (uint64_t)pass * 100000 + sector + i);
			if (dc_write(w->disk, sector, buf, 8 * SS, 0) < 0)
				w->failed++;
			if (b % 16 == w->t && dc_flush(w->disk) < 0)
				w->failed++;
		}
	}
	free(buf);
	return NULL;
}

static void sqt_writers_start(dc_disk *d, struct sqt_writer *w, pthread_t *th)
{
	for (int t = 0; t < SQT_WRITERS; t++) {
		w[t] = (struct sqt_writer){ .disk = d, .t = t };
		ck_assert_int_eq(pthread_create(&th[t], NULL, sqt_writer_thread, &w[t]),
				 0);
	}
}

static void sqt_writers_join(struct sqt_writer *w, pthread_t *th)
{
	for (int t = 0; t < SQT_WRITERS; t++) {
		pthread_join(th[t], NULL);
		ck_assert_msg(w[t].failed == 0, "writer %d: %d requests failed", t,
			      w[t].failed);
	}
}

START_TEST(concurrent_writers_and_checkpoints)
{
	char *db = h_tmppath(".dbhd");
	char *wal = h_fmt("%s-wal", db);
	struct sqt_writer w[SQT_WRITERS];
	pthread_t th[SQT_WRITERS];
	dc_disk *d;

	sqt_make_db(db, SQT_BLOCKS * 8 * SS);
	d = h_openf(0, "sql:%s", db);
	sqt_writers_start(d, w, th);
	sqt_writers_join(w, th);
	sqt_expect(d, 0, SQT_BLOCKS * 8, (uint64_t)SQT_PASSES * 100000);
	dc_close(d);
	ck_assert_msg(access(wal, F_OK) != 0, "%s remains after close", wal);
	d = h_openf(DC_OPEN_READ_ONLY, "sql:%s", db);
	sqt_expect(d, 0, SQT_BLOCKS * 8, (uint64_t)SQT_PASSES * 100000);
	dc_close(d);
	ck_assert_int_eq(sqt_rows(db, NULL), SQT_BLOCKS * 8);
	sqt_integrity(db);
	free(wal);
	free(db);
}
END_TEST

static int sqt_count_extent(void *arg, const struct dc_extent *e)
{
	(void)e;
	(*(int *)arg)++;
	return 0;
}

/* resize() while writers run below the smallest size and dc_map() runs
 * beside them: every write lands, the meta row follows each resize, a shrink
 * drops the rows past the end, and the database checks clean. */
START_TEST(resize_under_writes)
{
	static const uint64_t sizes[] = { 8192, 3072, 6144, 2560, 4096 };
	char *db = h_tmppath(".dbhd");
	struct sqt_writer w[SQT_WRITERS];
	pthread_t th[SQT_WRITERS];
	struct dc_check_result cr;
	uint8_t buf[SS] = { 1 };
	dc_disk *d;

	sqt_make_db(db, SQT_BLOCKS * 8 * SS);
	d = h_openf(0, "sql:%s", db);
	sqt_writers_start(d, w, th);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		int n = 0;

		ck_assert_int_eq(dc_resize(d, sizes[i]), 0);
		ck_assert_uint_eq(dc_sector_count(d), sizes[i]);
		ck_assert_int_eq(dc_write(d, sizes[i] - 1, buf, SS, 0), 0);
		ck_assert_int_eq(dc_map(d, 0, UINT64_MAX, sqt_count_extent, &n), 0);
		ck_assert_int_ge(n, 1);
	}
	sqt_writers_join(w, th);
	ck_assert_int_ne(dc_write(d, 4096, buf, SS, 0), 0);
	sqt_expect(d, 0, SQT_BLOCKS * 8, (uint64_t)SQT_PASSES * 100000);
	dc_close(d);
	ck_assert_str_eq(sqt_query(db, "SELECT json_extract(metadata, "
				       "'$.sector_count') FROM meta;"),
			 "4096");
	/* The threads' 2048, and the last sector of each size that no later
	 * shrink dropped: 2559 and 4095. */
	ck_assert_str_eq(sqt_query(db, "SELECT count(*), max(sector) FROM sectors;"),
			 "2050|4095");
	d = h_openf(DC_OPEN_READ_ONLY, "sql:%s", db);
	ck_assert_uint_eq(dc_sector_count(d), 4096);
	ck_assert_int_eq(dc_check(d, NULL, NULL, &cr), 0);
	ck_assert_uint_eq(cr.corruptions, 0);
	ck_assert_uint_eq(cr.checked, 1);
	dc_close(d);
	sqt_integrity(db);
	free(db);
}
END_TEST

/* Readers keep a snapshot between reads, but an idle disk lets it go, so
 * another process can checkpoint and truncate the WAL. */
START_TEST(snapshot_released_when_idle)
{
	char *db = h_tmppath(".dbhd");
	uint64_t deadline;
	const char *last;
	dc_disk *d;

	sqt_make_db(db, 64 * 1024);
	d = h_openf(0, "sql:%s", db);
	sqt_write(d, 0, 16, 5);
	sqt_expect(d, 0, 16, 5);
	sqt_expect(d, 8, 8, 5);
	deadline = h_now_ms() + 10000;
	for (;;) {
		char *r = sqt_query(
			db, "PRAGMA busy_timeout=0; PRAGMA wal_checkpoint(TRUNCATE);");

		last = strrchr(r, '\n');
		last = last ? last + 1 : r;
		if (!strncmp(last, "0|", 2))
			break;
		ck_assert_msg(h_now_ms() < deadline,
			      "the WAL stays pinned while the disk is idle: %s", last);
	}
	/* The disk goes on working, and sees its data. */
	sqt_expect(d, 0, 16, 5);
	sqt_write(d, 100, 1, 6);
	sqt_expect(d, 100, 1, 6);
	dc_close(d);
	sqt_integrity(db);
	free(db);
}
END_TEST

TCase *sqlite_tc_concurrency(void)
{
	TCase *tc = tcase_create("concurrency");

	tcase_add_test(tc, concurrent_reads_see_whole_writes);
	tcase_add_test(tc, concurrent_writers_and_checkpoints);
	tcase_add_test(tc, resize_under_writes);
	tcase_add_test(tc, snapshot_released_when_idle);
	return tc;
}
