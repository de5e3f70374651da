/* SPDX-License-Identifier: MIT */
/* test-sqlite: the layers. sqldiff: over a file and over a RAM disk, and
 * autocache: (docs/openvmm-compat.md §5.1-5.2): what a read cache holds, whose it
 * is, where it lives, and concurrent creators of one cache. */
#include "harness.h"
#include "sqlite-test.h"

#include <diskcore/diskcore.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* sqldiff over a file: reads fall through, writes stay in the diff, the base is
 * never written, and the diff persists. */
START_TEST(layered_diff_over_file)
{
	char *base = sqt_base(256 * 1024, 1000);
	char *db = h_tmppath(".dbhd");
	char *create = h_fmt("sqldiff:%s;create:file:%s", db, base);
	struct dc_info info;
	dc_disk *d;

	d = h_open(create, 0);
	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, 512);
	ck_assert(!(info.flags & DC_INFO_READ_ONLY));
	sqt_expect(d, 0, 16, 1000);
	sqt_write(d, 10, 4, 2000);
	sqt_expect(d, 8, 2, 1000);
	sqt_expect(d, 10, 4, 2000);
	sqt_expect(d, 14, 2, 1000);
	/* Unmap over data below stores explicit zero sectors. */
	ck_assert_int_eq(dc_unmap(d, 100, 3, 0), 0);
	sqt_expect(d, 99, 1, 1000);
	sqt_expect(d, 100, 3, 0);
	sqt_expect(d, 103, 1, 1000);
	ck_assert_int_eq(dc_flush(d), 0);
	dc_close(d);
	ck_assert_int_eq(sqt_rows(db, "data IS NULL"), 3);
	ck_assert_int_eq(sqt_rows(db, "data IS NOT NULL"), 4);

	d = h_openf(DC_OPEN_READ_ONLY, "file:%s", base);
	sqt_expect(d, 0, 512, 1000);
	dc_close(d);

	d = h_openf(0, "sqldiff:%s:file:%s", db, base);
	sqt_expect(d, 10, 4, 2000);
	sqt_expect(d, 100, 3, 0);
	sqt_expect(d, 200, 8, 1000);
	dc_close(d);
	/* ;create on an existing diff opens it unchanged. */
	d = h_open(create, 0);
	sqt_expect(d, 10, 4, 2000);
	dc_close(d);
	sqt_integrity(db);
	free(create);
	free(db);
	free(base);
}
END_TEST

/* sqldiff over a RAM disk of 4 KiB sectors takes its sector size from below. */
START_TEST(layered_diff_sector_size)
{
	char *db = h_tmppath(".dbhd");
	dc_disk *d = h_openf(0, "sqldiff:%s;create:mem:1M;sector=4096", db);
	uint8_t *buf = h_alloc(8192);

	ck_assert_uint_eq(dc_sector_size(d), 4096);
	ck_assert_uint_eq(dc_sector_count(d), 256);
	h_fill(buf, 8192, 9);
	ck_assert_int_eq(dc_write(d, 254, buf, 8192, 0), 0);
	memset(buf, 0, 8192);
	ck_assert_int_eq(dc_read(d, 254, buf, 8192), 0);
	ck_assert(h_check(buf, 8192, 9) < 0);
	dc_close(d);
	ck_assert_str_eq(sqt_query(db, "SELECT json_extract(metadata, '$.sector_size') "
				       "FROM meta;"),
			 "4096");
	ck_assert_str_eq(sqt_query(db, "SELECT DISTINCT length(data) FROM sectors;"),
			 "4096");
	sqt_integrity(db);
	free(buf);
	free(db);
}
END_TEST

/* autocache over a file: reads populate the cache; a second open serves them
 * from the cache even when the file below has changed to garbage, and still
 * reads uncached sectors from below. */
START_TEST(layered_read_cache)
{
	char *base = sqt_base(512 * 1024, 3000);
	char *spec = h_fmt("autocache:rc-%d:file:%s", (int)getpid(), base);
	char *db = h_fmt("%s/rc-%d/cache.dbhd", sqt_cache_root(), (int)getpid());
	struct dc_info info;
	dc_disk *d;

	d = h_open(spec, DC_OPEN_READ_ONLY);
	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, 1024);
	ck_assert(info.flags & DC_INFO_READ_ONLY);
	sqt_expect(d, 0, 64, 3000);
	sqt_expect(d, 500, 3, 3000);
	/* Sectors 0,2,4,6,8 of a second range, then the range whole. */
	for (int s = 600; s <= 608; s += 2)
		sqt_expect(d, (uint64_t)s, 1, 3000);
	sqt_expect(d, 600, 16, 3000);
	dc_close(d);
	ck_assert_int_eq(sqt_rows(db, NULL), 64 + 3 + 16);
	ck_assert_str_eq(sqt_query(db, "SELECT json_extract(metadata, '$') FROM meta;"),
			 "{\"logically_read_only\":true,\"sector_count\":1024,"
			 "\"sector_size\":512}");

	sqt_garble(base);
	d = h_open(spec, DC_OPEN_READ_ONLY);
	sqt_expect(d, 0, 64, 3000);
	sqt_expect(d, 500, 3, 3000);
	sqt_expect(d, 600, 16, 3000);
	/* Uncached: what is below now. */
	uint8_t *buf = h_alloc(SS);
	ck_assert_int_eq(dc_read(d, 700, buf, SS), 0);
	ck_assert_uint_eq(buf[0], 0xe7);
	ck_assert_uint_eq(buf[SS - 1], 0xe7);
	dc_close(d);
	free(buf);

	/* A writable disk needs a layer above the read-only cache. */
	h_open_fails(0, -EROFS, "read-only but writes reach it", "%s", spec);
	d = h_openf(0, "memdiff:%s", spec);
	sqt_write(d, 0, 1, 4000);
	sqt_expect(d, 0, 1, 4000);
	sqt_expect(d, 1, 63, 3000);
	dc_close(d);
	sqt_integrity(db);
	free(db);
	free(spec);
	free(base);
}
END_TEST

/* A cache for a disk of another size is refused with a message. */
START_TEST(layered_cache_size_mismatch)
{
	char *small = sqt_base(64 * 1024, 1);
	char *big = sqt_base(128 * 1024, 1);

	dc_close(h_openf(DC_OPEN_READ_ONLY, "autocache:mm-%d:file:%s", (int)getpid(),
			 small));
	h_open_fails(DC_OPEN_READ_ONLY, 0, "belongs to another disk",
		     "autocache:mm-%d:file:%s", (int)getpid(), big);
	dc_close(h_openf(DC_OPEN_READ_ONLY, "autocache:mm-%d:file:%s", (int)getpid(),
			 small));
	free(big);
	free(small);
}
END_TEST

/* Concurrent creators of one cache all succeed and share one database. */
#define SQT_RACERS 6

/* A racer (test-sqlite race-open SPEC FD I): waits until FD reads EOF, then
 * opens the cache and checks 64 sectors from I * 64 (base pattern 5000). */
int sqt_racer(const char *spec, int go, int i)
{
	uint8_t *buf = h_alloc(64 * SS);
	dc_disk *d = NULL;
	char c;

	if (read(go, &c, 1) < 0)
		return 3;
	if (dc_open(spec, DC_OPEN_READ_ONLY, &d) < 0) {
		fprintf(stderr, "racer %d: %s\n", i, dc_last_error());
		return 1;
	}
	if (dc_read(d, (uint64_t)i * 64, buf, 64 * SS) < 0)
		return 2;
	for (int s = 0; s < 64; s++)
		if (h_check(buf + s * SS, SS, 5000 + (uint64_t)i * 64 + s) >= 0)
			return 2;
	dc_close(d);
	free(buf);
	return 0;
}

/* dir holds the cache database (and its -wal, -shm) and nothing else. */
static void sqt_only_cache_in(const char *dir)
{
	DIR *dh = opendir(dir);
	struct dirent *e;

	ck_assert_msg(dh, "%s: %s", dir, strerror(errno));
	while ((e = readdir(dh)))
		ck_assert_msg(!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
				      !strncmp(e->d_name, "cache.dbhd", 10),
			      "%s holds more than the cache: %s", dir, e->d_name);
	closedir(dh);
}

START_TEST(layered_cache_race)
{
	char *base = sqt_base(256 * 1024, 5000);
	char *key = h_fmt("race-%d", (int)getpid());
	char *spec = h_fmt("autocache:%s:file:%s", key, base);
	char *dir = h_fmt("%s/%s", sqt_cache_root(), key);
	char *db = h_fmt("%s/cache.dbhd", dir);
	pid_t pids[SQT_RACERS];
	int go[2];

	ck_assert_int_eq(pipe(go), 0);
	for (int i = 0; i < SQT_RACERS; i++) {
		char fd[16], idx[16];

		snprintf(fd, sizeof(fd), "%d", go[0]);
		snprintf(idx, sizeof(idx), "%d", i);
		/* Each racer is a process of its own, as concurrent VMs would be. */
		pids[i] = fork();
		ck_assert_int_ge(pids[i], 0);
		if (pids[i] == 0) {
			close(go[1]);
			execl("/proc/self/exe", "test-sqlite", "race-open", spec, fd, idx,
			      (char *)NULL);
			_exit(127);
		}
	}
	close(go[0]);
	close(go[1]);
	for (int i = 0; i < SQT_RACERS; i++) {
		int st;

		ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "racer %d failed (status %#x)", i, st);
	}
	/* One database with every racer's sectors, which a new opener reads from
	 * it (the base below is garbage by then); no temporary leftovers. */
	ck_assert_int_eq(sqt_rows(db, NULL), SQT_RACERS * 64);
	sqt_garble(base);
	dc_disk *d = h_open(spec, DC_OPEN_READ_ONLY);
	sqt_expect(d, 0, SQT_RACERS * 64, 5000);
	dc_close(d);
	sqt_only_cache_in(dir);
	sqt_integrity(db);
	free(db);
	free(dir);
	free(spec);
	free(key);
	free(base);
}
END_TEST

/* An empty key names the cache by the disk id of the disk below. */
START_TEST(layered_cache_disk_id_key)
{
	static const uint8_t uid[16] = { 0x5a, 1, 2,  3,  4,  5,  6,  7,
					 8,    9, 10, 11, 12, 13, 14, 15 };
	uint8_t *img = h_alloc(1024 * 1024 + 512);
	char hex[33], *vhd, *db;
	struct dc_info info;
	dc_disk *d;

	/* A fixed VHD: 1 MiB of zeroes and a footer with a unique id. */
	h_vhd_footer(img + 1024 * 1024, 1024 * 1024, 2, uid);
	vhd = h_tmpfile_data(img, 1024 * 1024 + 512, 0600, ".vhd");
	d = h_openf(DC_OPEN_READ_ONLY, "vhd1:%s", vhd);
	dc_get_info(d, &info);
	dc_close(d);
	ck_assert(info.flags & DC_INFO_HAS_DISK_ID);
	ck_assert(memcmp(info.disk_id, uid, 16) == 0);
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", info.disk_id[i]);
	d = h_openf(DC_OPEN_READ_ONLY, "autocache::vhd1:%s", vhd);
	sqt_expect(d, 0, 8, 0);
	dc_close(d);
	db = h_fmt("%s/%s/cache.dbhd", sqt_cache_root(), hex);
	ck_assert_msg(access(db, F_OK) == 0, "no cache at %s", db);
	ck_assert_int_eq(sqt_rows(db, NULL), 8);
	sqt_integrity(db);
	/* A disk without an id needs a key. */
	h_open_fails(DC_OPEN_READ_ONLY, 0, "key", "autocache::mem:1M");
	free(db);
	free(vhd);
	free(img);
}
END_TEST

/* OPENVMM_AUTO_CACHE_PATH works when DISKCORE_AUTO_CACHE_PATH is unset; with
 * neither, autocache is an error that names the variable. */
START_TEST(layered_cache_env)
{
	char *base = sqt_base(64 * 1024, 1);
	char *root = h_tmpsubdir();
	char *db = h_fmt("%s/env/cache.dbhd", root);

	unsetenv("DISKCORE_AUTO_CACHE_PATH");
	unsetenv("OPENVMM_AUTO_CACHE_PATH");
	h_open_fails(DC_OPEN_READ_ONLY, 0, "DISKCORE_AUTO_CACHE_PATH",
		     "autocache:env:file:%s", base);
	setenv("OPENVMM_AUTO_CACHE_PATH", root, 1);
	dc_close(h_openf(DC_OPEN_READ_ONLY, "autocache:env:file:%s", base));
	ck_assert_msg(access(db, F_OK) == 0, "no cache at %s", db);
	sqt_integrity(db);
	free(db);
	free(root);
	free(base);
}
END_TEST

START_TEST(layered_cache_bad_key)
{
	char *base = sqt_base(64 * 1024, 1);
	char *b = h_fmt("autocache:..:file:%s", base);

	h_open_fails(DC_OPEN_READ_ONLY, 0, "key", "autocache:a/b:file:%s", base);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "key", "%s", b);
	free(b);
	free(base);
}
END_TEST

TCase *sqlite_tc_layered(void)
{
	TCase *tc = tcase_create("layered");

	tcase_add_test(tc, layered_diff_over_file);
	tcase_add_test(tc, layered_diff_sector_size);
	tcase_add_test(tc, layered_read_cache);
	tcase_add_test(tc, layered_cache_size_mismatch);
	tcase_add_test(tc, layered_cache_race);
	tcase_add_test(tc, layered_cache_disk_id_key);
	tcase_add_test(tc, layered_cache_env);
	tcase_add_test(tc, layered_cache_bad_key);
	return tc;
}
