/* SPDX-License-Identifier: MIT */
/* The sqlite layer: sql:, sqldiff:, autocache: (docs/openvmm-compat.md §4.7, §5.1-5.2,
 * §5.4).
 *
 * The sqlite3 command-line shell is the oracle for the file format: it writes
 * databases the way OpenVMM does, inspects what the plugin wrote, and runs
 * PRAGMA integrity_check on every database the tests leave behind (the last
 * test case checks all of them).
 *
 * Helper modes (not tests): `test-sqlite crash-init|crash-writer|crash-verify`
 * for tests/test-sqlite-crash.sh, and `test-sqlite bench DIR [MiB]` (the issue's
 * targets: sqldiff writes and cached reads against file:, in one run) and
 * `test-sqlite bench-one SPEC read|write QD SECONDS SPAN_MiB` to measure. */
#include "conformance.h"
#include "harness.h"

#include <diskcore/diskcore.h>
#include <diskcore/plugin.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SS 512

/* --- The sqlite3 shell ------------------------------------------------------- */

/* Run `sqlite3 -batch path sql`; returns its exit status, output in out. */
static int sqt_shell(const char *path, const char *sql, char *out, size_t outlen)
{
	int pfd[2], status = 0;
	size_t got = 0;
	pid_t pid;

	if (pipe(pfd) < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		close(pfd[0]);
		close(pfd[1]);
		execlp("sqlite3", "sqlite3", "-batch", path, sql, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	for (;;) {
		ssize_t n = read(pfd[0], out + got, outlen - 1 - got);

		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == outlen - 1)
			break;
	}
	out[got] = '\0';
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The shell's answer to a query, without the trailing newline. */
static char *sqt_query(const char *path, const char *sql)
{
	static char out[8192];
	size_t n;
	int rc = sqt_shell(path, sql, out, sizeof(out));

	ck_assert_msg(rc == 0, "sqlite3 %s '%s' exited %d: %s", path, sql, rc, out);
	n = strlen(out);
	if (n && out[n - 1] == '\n')
		out[n - 1] = '\0';
	return out;
}

static void sqt_integrity(const char *path)
{
	char *r = sqt_query(path, "PRAGMA integrity_check;");

	ck_assert_msg(strcmp(r, "ok") == 0, "%s: integrity_check: %s", path, r);
}

/* --- Helpers ----------------------------------------------------------------- */

/* A raw file of `size` bytes whose sector s holds h_fill(seed + s). */
static char *sqt_base(uint64_t size, uint64_t seed)
{
	uint8_t *buf = h_alloc(size);
	char *path;

	for (uint64_t s = 0; s < size / SS; s++)
		h_fill(buf + s * SS, SS, seed + s);
	path = h_tmpfile_data(buf, size, 0600, ".img");
	free(buf);
	return path;
}

/* Replace a file's contents with bytes no test writes, keeping its size. */
static void sqt_garble(const char *path)
{
	struct stat st;
	uint8_t *buf;

	ck_assert_int_eq(stat(path, &st), 0);
	buf = h_alloc((size_t)st.st_size);
	memset(buf, 0xe7, (size_t)st.st_size);
	h_pwrite_file(path, 0, buf, (size_t)st.st_size);
	free(buf);
}

static void sqt_write(dc_disk *d, uint64_t sector, uint64_t n, uint64_t seed)
{
	uint8_t *buf = h_alloc(n * SS);
	int r;

	for (uint64_t i = 0; i < n; i++)
		h_fill(buf + i * SS, SS, seed + sector + i);
	r = dc_write(d, sector, buf, n * SS, 0);
	ck_assert_msg(r == 0, "write(%llu, %llu) = %d (%s)", (unsigned long long)sector,
		      (unsigned long long)n, r, dc_strerror(r));
	free(buf);
}

/* Sector s of [sector, sector+n) reads as h_fill(seed + s), or zero if seed is 0. */
static void sqt_expect(dc_disk *d, uint64_t sector, uint64_t n, uint64_t seed)
{
	uint8_t *buf = h_alloc(n * SS);
	int r = dc_read(d, sector, buf, n * SS);

	ck_assert_msg(r == 0, "read(%llu, %llu) = %d (%s)", (unsigned long long)sector,
		      (unsigned long long)n, r, dc_strerror(r));
	for (uint64_t i = 0; i < n; i++) {
		long off = seed ? h_check(buf + i * SS, SS, seed + sector + i) :
				  h_check_zero(buf + i * SS, SS);

		ck_assert_msg(off < 0, "sector %llu: byte %ld is not %s",
			      (unsigned long long)(sector + i), off,
			      seed ? "the expected pattern" : "zero");
	}
	free(buf);
}

static long sqt_rows(const char *db, const char *where)
{
	char *q = h_fmt("SELECT count(*) FROM sectors%s%s;", where ? " WHERE " : "",
			where ? where : "");
	long n = strtol(sqt_query(db, q), NULL, 10);

	free(q);
	return n;
}

/* A new, empty sqlite disk at `path`. */
static void sqt_make_db(const char *path, uint64_t size)
{
	dc_close(h_openf(0, "sql:%s;create=%llu", path, (unsigned long long)size));
}

/* Conformance: a @TMP:SIZE.dbhd@ file becomes an empty sqlite disk of SIZE. */
static int sqt_prepare(const char *path, uint64_t size, void *arg)
{
	size_t n = strlen(path);
	dc_disk *d = NULL;
	char *spec;
	int r;

	(void)arg;
	if (n < 5 || strcmp(path + n - 5, ".dbhd"))
		return 0;
	if (unlink(path) < 0)
		return -errno;
	spec = h_fmt("sql:%s;create=%llu", path, (unsigned long long)size);
	r = dc_open(spec, 0, &d);
	if (r == 0)
		dc_close(d);
	else
		fprintf(stderr, "preparing %s: %s\n", spec, dc_last_error());
	free(spec);
	return r;
}

static char *sqt_cache_root(void)
{
	return getenv("DISKCORE_AUTO_CACHE_PATH");
}

/* --- File format -------------------------------------------------------------- */

START_TEST(format_like_openvmm)
{
	char *db = h_tmppath(".dbhd");
	char *wal = h_fmt("%s-wal", db);
	dc_disk *d = h_openf(0, "sql:%s;create=2M", db);
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, 4096);
	ck_assert_uint_eq(info.sector_size, 512);
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_ZEROES);
	ck_assert(!(info.flags & DC_INFO_READ_ONLY));
	dc_close(d);
	ck_assert_str_eq(sqt_query(db,
				   "SELECT sql FROM sqlite_master WHERE name='sectors';"),
			 "CREATE TABLE sectors (sector INTEGER NOT NULL, data BLOB, "
			 "PRIMARY KEY (sector))");
	ck_assert_str_eq(sqt_query(db,
				   "SELECT sql FROM sqlite_master WHERE name='meta';"),
			 "CREATE TABLE meta (metadata TEXT NOT NULL)");
	ck_assert_str_eq(sqt_query(db, "SELECT json_extract(metadata, '$') FROM meta;"),
			 "{\"logically_read_only\":false,\"sector_count\":4096,"
			 "\"sector_size\":512}");
	ck_assert_str_eq(sqt_query(db, "PRAGMA journal_mode;"), "wal");
	/* Closing checkpoints the WAL away. */
	ck_assert_int_ne(access(wal, F_OK), 0);
	sqt_integrity(db);
	free(wal);
	free(db);
}
END_TEST

/* A database written the way OpenVMM writes one opens here; what we write,
 * the shell reads back as OpenVMM expects it. */
START_TEST(format_openvmm_file)
{
	char *db = h_tmppath(".dbhd");
	uint8_t *buf = h_alloc(4 * SS);
	dc_disk *d;

	sqt_query(db, "PRAGMA journal_mode=WAL;"
		      "CREATE TABLE sectors (sector INTEGER NOT NULL, data BLOB, "
		      "PRIMARY KEY (sector));"
		      "CREATE TABLE meta (metadata TEXT NOT NULL);"
		      "INSERT INTO meta VALUES (json('{\"logically_read_only\": false, "
		      "\"sector_count\": 100, \"sector_size\": 512}'));"
		      "INSERT INTO sectors VALUES "
		      "(3, CAST(replace(hex(zeroblob(256)), '0', 'Z') AS BLOB));"
		      "INSERT INTO sectors VALUES (4, NULL);");
	d = h_openf(0, "sql:%s", db);
	ck_assert_uint_eq(dc_sector_count(d), 100);
	memset(buf, 0xcc, 4 * SS);
	ck_assert_int_eq(dc_read(d, 2, buf, 4 * SS), 0);
	ck_assert(h_check_zero(buf, SS) < 0);
	for (int i = 0; i < SS; i++)
		ck_assert_uint_eq(buf[SS + i], 'Z');
	ck_assert(h_check_zero(buf + 2 * SS, 2 * SS) < 0);
	/* Zero sectors are stored as NULL, others as 512-byte blobs. */
	memset(buf, 0, 2 * SS);
	buf[SS + 7] = 1;
	ck_assert_int_eq(dc_write(d, 10, buf, 2 * SS, 0), 0);
	ck_assert_int_eq(dc_flush(d), 0);
	ck_assert_str_eq(sqt_query(db, "SELECT sector, typeof(data), length(data) FROM "
				       "sectors WHERE sector >= 10 ORDER BY sector;"),
			 "10|null|\n11|blob|512");
	dc_close(d);
	ck_assert_str_eq(sqt_query(db, "SELECT hex(substr(data, 8, 1)) FROM sectors "
				       "WHERE sector = 11;"),
			 "01");
	sqt_integrity(db);
	free(buf);
	free(db);
}
END_TEST

/* A row of the wrong length is an I/O error, not a crash or a short read. */
START_TEST(format_bad_row)
{
	char *db = h_tmppath(".dbhd");
	uint8_t *buf = h_alloc(4 * SS);
	dc_disk *d;

	sqt_make_db(db, 64 * 1024);
	sqt_query(db, "INSERT INTO sectors VALUES (9, zeroblob(100));"
		      "INSERT INTO sectors VALUES (12, 42);");
	d = h_openf(0, "sql:%s", db);
	ck_assert_int_eq(dc_read(d, 8, buf, SS), 0);
	ck_assert_int_eq(dc_read(d, 8, buf, 2 * SS), DC_E_IO);
	ck_assert_int_eq(dc_read(d, 12, buf, SS), DC_E_IO);
	dc_close(d);
	sqt_integrity(db);
	free(buf);
	free(db);
}
END_TEST

START_TEST(format_bad_meta)
{
	char *db = h_tmppath(".dbhd");
	char *junk = h_tmpfile(8192, ".dbhd");

	sqt_make_db(db, 64 * 1024);
	sqt_query(db, "UPDATE meta SET metadata = json('{\"sector_count\": 128}');");
	h_open_fails(0, 0, "sector_size", "sql:%s", db);
	sqt_query(db, "UPDATE meta SET metadata = json('{\"logically_read_only\": false, "
		      "\"sector_count\": 128, \"sector_size\": 1000}');");
	h_open_fails(0, 0, "sector", "sql:%s", db);
	sqt_query(db, "UPDATE meta SET metadata = json('{\"logically_read_only\": false, "
		      "\"sector_count\": 0, \"sector_size\": 512}');");
	h_open_fails(0, 0, "sector", "sql:%s", db);
	sqt_query(db, "DELETE FROM meta;");
	h_open_fails(0, 0, "meta", "sql:%s", db);
	sqt_query(db, "DROP TABLE meta;");
	h_open_fails(0, 0, "meta", "sql:%s", db);
	sqt_integrity(db);
	/* Not a database at all. */
	h_pwrite_file(junk, 0, "not a database, just some text", 30);
	h_open_fails(0, 0, junk, "sql:%s", junk);
	free(junk);
	free(db);
}
END_TEST

/* A logically read-only database (a read cache) opened with sql: is read-only. */
START_TEST(format_logically_read_only)
{
	char *db = h_tmppath(".dbhd");
	uint8_t *buf = h_alloc(SS);
	struct dc_info info;
	dc_disk *d;

	sqt_make_db(db, 64 * 1024);
	sqt_query(db, "UPDATE meta SET metadata = json('{\"logically_read_only\": true, "
		      "\"sector_count\": 128, \"sector_size\": 512}');");
	h_open_fails(0, -EROFS, "read-only but writes reach it", "sql:%s", db);
	d = h_openf(DC_OPEN_READ_ONLY, "sql:%s", db);
	dc_get_info(d, &info);
	ck_assert(info.flags & DC_INFO_READ_ONLY);
	ck_assert_int_eq(dc_read(d, 0, buf, SS), 0);
	ck_assert_int_eq(dc_write(d, 0, buf, SS, 0), DC_E_READ_ONLY);
	dc_close(d);
	sqt_integrity(db);
	free(buf);
	free(db);
}
END_TEST

/* Data survives close and reopen; a read-only open sees it too. */
START_TEST(format_persists)
{
	char *db = h_tmppath(".dbhd");
	dc_disk *d;

	sqt_make_db(db, 1024 * 1024);
	d = h_openf(0, "sql:%s", db);
	sqt_write(d, 100, 24, 77);
	sqt_write(d, 2047, 1, 77);
	uint8_t *zero = h_alloc(SS);
	ck_assert_int_eq(dc_write(d, 0, zero, SS, DC_IO_FUA), 0);
	free(zero);
	dc_close(d);
	d = h_openf(DC_OPEN_READ_ONLY, "sql:%s", db);
	sqt_expect(d, 100, 24, 77);
	sqt_expect(d, 2047, 1, 77);
	sqt_expect(d, 124, 10, 0);
	dc_close(d);
	ck_assert_int_eq(sqt_rows(db, NULL), 26);
	sqt_integrity(db);
	free(db);
}
END_TEST

/* --- Layered cases ------------------------------------------------------------ */

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
static int sqt_racer(const char *spec, int go, int i)
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

/* --- Spec strings (docs/openvmm-compat.md §5.4) ------------------------------------- */

START_TEST(spec_sql)
{
	char *db = h_tmppath(".sqlite");
	char *create = h_fmt("sql:%s;create=2G", db);
	char *direct = h_fmt("sql:%s;direct", db), *ro;
	dc_disk *d;

	h_open_fails(0, 0, "direct", "%s", direct);
	h_open_fails(0, 0, "create", "sql:%s;create=", db);
	h_open_fails(0, 0, "512", "sql:%s;create=1000", db);
	h_open_fails(0, 0, "no such", "sql:%s.none", db);
	h_open_fails(0, 0, "sql: missing path", "sql:");
	h_open_fails(0, 0, "invalid disk kind 'sqlite'", "sqlite:");
	d = h_open(create, 0);
	ck_assert_uint_eq(dc_sector_count(d), UINT64_C(2) << 30 >> 9);
	dc_close(d);
	/* create= on an existing database opens it, at its own size only. */
	dc_close(h_open(create, 0));
	h_open_fails(0, -EEXIST, "exists with", "sql:%s;create=1M", db);
	d = h_openf(0, "sql:%s", db);
	ck_assert_uint_eq(dc_sector_count(d), UINT64_C(2) << 30 >> 9);
	dc_close(d);
	/* A read-only disk (under memdiff:, say) never creates one. */
	ro = h_fmt("%s.ro", db);
	h_open_fails(DC_OPEN_READ_ONLY, -ENOENT, "never creates", "sql:%s;create=1M", ro);
	ck_assert_int_ne(access(ro, F_OK), 0);
	free(ro);
	sqt_integrity(db);
	free(direct);
	free(create);
	free(db);
}
END_TEST

START_TEST(spec_sqldiff)
{
	char *base = sqt_base(64 * 1024, 1);
	char *db = h_tmppath(".sqlite");
	char *create = h_fmt("sqldiff:%s;create:file:%s", db, base);
	dc_disk *d;

	h_open_fails(0, 0, "no such", "sqldiff:%s:file:%s", db, base);
	h_open_fails(0, 0, "inner", "sqldiff:%s", db);
	h_open_fails(0, 0, "create", "sqldiff:%s;create=1M:file:%s", db, base);
	h_open_fails(0, 0, "direct", "sqldiff:%s;direct:file:%s", db, base);
	d = h_open(create, 0);
	ck_assert_uint_eq(dc_sector_count(d), 128);
	dc_close(d);
	d = h_openf(0, "sqldiff:%s:file:%s", db, base);
	ck_assert_uint_eq(dc_sector_count(d), 128);
	dc_close(d);
	sqt_integrity(db);
	free(create);
	free(db);
	free(base);
}
END_TEST

START_TEST(spec_autocache)
{
	char *base = sqt_base(64 * 1024, 1);
	char *key = h_fmt("autocache:mykey-%d:file:%s", (int)getpid(), base);
	char *db = h_fmt("%s/mykey-%d/cache.dbhd", sqt_cache_root(), (int)getpid());
	dc_disk *d;

	d = h_open(key, DC_OPEN_READ_ONLY);
	ck_assert_uint_eq(dc_sector_count(d), 128);
	dc_close(d);
	ck_assert_msg(access(db, F_OK) == 0, "no cache at %s", db);
	/* A file has no disk id, so an empty key cannot name its cache. */
	h_open_fails(DC_OPEN_READ_ONLY, 0, "disk id", "autocache::file:%s", base);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "inner", "%s", "autocache:k");
	unsetenv("DISKCORE_AUTO_CACHE_PATH");
	unsetenv("OPENVMM_AUTO_CACHE_PATH");
	h_open_fails(DC_OPEN_READ_ONLY, 0, "AUTO_CACHE_PATH", "%s", key);
	sqt_integrity(db);
	free(db);
	free(key);
	free(base);
}
END_TEST

/* --- Concurrency ----------------------------------------------------------------- */

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

/* --- Every database the tests left behind is intact ----------------------------- */

static int sqt_integrity_bad;

static int sqt_integrity_visit(const char *path, const struct stat *st, int type,
			       struct FTW *ftw)
{
	char magic[16] = { 0 }, out[4096];
	int fd;

	(void)ftw;
	if (type != FTW_F || st->st_size < 100)
		return 0;
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	if (read(fd, magic, 16) != 16 || memcmp(magic, "SQLite format 3", 16)) {
		close(fd);
		return 0;
	}
	close(fd);
	if (sqt_shell(path, "PRAGMA integrity_check;", out, sizeof(out)) != 0 ||
	    strcmp(out, "ok\n")) {
		fprintf(stderr, "%s: integrity_check: %s", path, out);
		sqt_integrity_bad++;
	}
	return 0;
}

START_TEST(all_databases_intact)
{
	ck_assert_int_eq(nftw(h_tmpdir(), sqt_integrity_visit, 16, FTW_PHYS), 0);
	ck_assert_msg(sqt_integrity_bad == 0, "%d databases fail integrity_check",
		      sqt_integrity_bad);
}
END_TEST

/* --- Crash test helpers (tests/test-sqlite-crash.sh) ------------------------------ */

#define CR_SECTORS 2048
#define CR_FLUSH_EVERY 32
#define CR_WINDOW (2 * CR_FLUSH_EVERY + 2)
#define CR_MAGIC 0x52435153u

struct cr_op {
	bool unmap;
	uint64_t sector, count;
};

struct cr_tag {
	uint32_t iter;
	uint64_t seq;
};

/* Operation `seq` (from 1) of iteration `iter`: a pure function of both. */
static struct cr_op cr_op(uint32_t iter, uint64_t seq)
{
	uint64_t r = h_mix64(((uint64_t)iter << 40) ^ seq);
	struct cr_op op;

	op.unmap = (r & 15) == 0;
	op.count = 1 + ((r >> 4) & 15);
	op.sector = (r >> 8) % (CR_SECTORS - op.count);
	return op;
}

static uint64_t cr_seed(uint32_t iter, uint64_t seq, uint64_t sector)
{
	return h_mix64(((uint64_t)iter << 48) ^ (seq << 16) ^ sector);
}

static void cr_fill(uint8_t *p, uint32_t iter, uint64_t seq, uint64_t sector)
{
	uint32_t magic = CR_MAGIC;

	memcpy(p, &magic, 4);
	memcpy(p + 4, &iter, 4);
	memcpy(p + 8, &seq, 8);
	memcpy(p + 16, &sector, 8);
	h_fill(p + 24, SS - 24, cr_seed(iter, seq, sector));
}

/* Which write a sector's content came from; false if it is no write's. */
static bool cr_decode(const uint8_t *p, uint64_t sector, struct cr_tag *t)
{
	uint32_t magic;
	uint64_t s;

	if (h_check_zero(p, SS) < 0) {
		t->iter = 0;
		t->seq = 0;
		return true;
	}
	memcpy(&magic, p, 4);
	memcpy(&t->iter, p + 4, 4);
	memcpy(&t->seq, p + 8, 8);
	memcpy(&s, p + 16, 8);
	return magic == CR_MAGIC && s == sector &&
	       h_check(p + 24, SS - 24, cr_seed(t->iter, t->seq, sector)) < 0;
}

static int cr_init(const char *db)
{
	char *spec = h_fmt("sql:%s;create=%d", db, CR_SECTORS * SS);
	dc_disk *d = NULL;
	if (!h_have_plugin("sqlite"))
		return H_SKIP;
	if (dc_open(spec, 0, &d) < 0) {
		fprintf(stderr, "crash-init: %s\n", dc_last_error());
		return 1;
	}
	dc_close(d);
	free(spec);
	return 0;
}

static void *cr_killer(void *arg)
{
	struct timespec ts;
	uint64_t ns;

	(void)arg;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ns = h_mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32)) % 150000000;
	ts.tv_sec = (time_t)(ns / 1000000000);
	ts.tv_nsec = (long)(ns % 1000000000);
	nanosleep(&ts, NULL);
	kill(getpid(), SIGKILL);
	return NULL;
}

/* Write, unmap and flush until killed; after each flush, log how far it got. */
static int cr_writer(const char *db, const char *log, uint32_t iter)
{
	char *spec = h_fmt("sql:%s", db);
	uint8_t *buf = h_alloc(16 * SS);
	pthread_t killer;
	dc_disk *d = NULL;
	int fd, r;

	fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0600);
	if (fd < 0 || dc_open(spec, 0, &d) < 0) {
		fprintf(stderr, "crash-writer: %s\n", dc_last_error());
		return 1;
	}
	/* Die by SIGKILL at a random moment 0..150 ms from now. */
	if (pthread_create(&killer, NULL, cr_killer, NULL) != 0)
		return 1;
	for (uint64_t seq = 1;; seq++) {
		struct cr_op op = cr_op(iter, seq);

		if (op.unmap) {
			r = dc_unmap(d, op.sector, op.count, 0);
		} else {
			for (uint64_t i = 0; i < op.count; i++)
				cr_fill(buf + i * SS, iter, seq, op.sector + i);
			r = dc_write(d, op.sector, buf, op.count * SS,
				     seq % 61 == 0 ? DC_IO_FUA : 0);
		}
		if (r == 0 && seq % CR_FLUSH_EVERY == 0)
			r = dc_flush(d);
		if (r < 0) {
			fprintf(stderr, "crash-writer: op %llu: %s\n",
				(unsigned long long)seq, dc_strerror(r));
			return 1;
		}
		if (seq % CR_FLUSH_EVERY == 0) {
			struct cr_tag t = { iter, seq };

			if (write(fd, &t, sizeof(t)) != sizeof(t))
				return 1;
		}
	}
}

static void cr_apply(struct cr_tag *state, uint32_t iter, uint64_t seq)
{
	struct cr_op op = cr_op(iter, seq);

	for (uint64_t i = 0; i < op.count; i++) {
		state[op.sector + i].iter = op.unmap ? 0 : iter;
		state[op.sector + i].seq = op.unmap ? 0 : seq;
	}
}

static uint64_t cr_diff(const struct cr_tag *a, const struct cr_tag *b, uint64_t *first)
{
	uint64_t n = 0;

	for (uint64_t s = 0; s < CR_SECTORS; s++) {
		if (a[s].iter != b[s].iter || a[s].seq != b[s].seq) {
			if (!n)
				*first = s;
			n++;
		}
	}
	return n;
}

/* The disk must equal the state after some prefix of the writer's operations
 * that includes everything up to its last logged flush. */
static int cr_verify(const char *db, const char *log, const char *statefile,
		     uint32_t iter)
{
	struct cr_tag *base = calloc(CR_SECTORS, sizeof(*base));
	struct cr_tag *got = calloc(CR_SECTORS, sizeof(*got));
	char *spec = h_fmt("sql:%s", db);
	uint8_t *buf = h_alloc(CR_SECTORS * SS);
	uint64_t flushed = 0, first = 0, ndiff;
	struct cr_tag t;
	dc_disk *d = NULL;
	int fd;

	fd = open(statefile, O_RDONLY);
	if (fd >= 0) {
		if (read(fd, base, CR_SECTORS * sizeof(*base)) !=
		    (ssize_t)(CR_SECTORS * sizeof(*base)))
			return fprintf(stderr, "crash-verify: short state file\n"), 1;
		close(fd);
	}
	fd = open(log, O_RDONLY);
	while (fd >= 0 && read(fd, &t, sizeof(t)) == sizeof(t))
		if (t.iter == iter)
			flushed = t.seq;
	if (fd >= 0)
		close(fd);

	if (dc_open(spec, DC_OPEN_READ_ONLY, &d) < 0)
		return fprintf(stderr, "crash-verify: %s\n", dc_last_error()), 1;
	if (dc_read(d, 0, buf, CR_SECTORS * SS) < 0)
		return fprintf(stderr, "crash-verify: read failed\n"), 1;
	dc_close(d);
	for (uint64_t s = 0; s < CR_SECTORS; s++)
		if (!cr_decode(buf + s * SS, s, &got[s]))
			return fprintf(stderr,
				       "crash-verify: sector %llu holds data no "
				       "write produced (torn or corrupt)\n",
				       (unsigned long long)s),
			       1;

	for (uint64_t seq = 1; seq <= flushed; seq++)
		cr_apply(base, iter, seq);
	ndiff = cr_diff(base, got, &first);
	for (uint64_t seq = flushed + 1; ndiff && seq <= flushed + CR_WINDOW; seq++) {
		uint64_t f;

		cr_apply(base, iter, seq);
		if (!cr_diff(base, got, &f))
			ndiff = 0;
	}
	if (ndiff) {
		fprintf(stderr,
			"crash-verify: iteration %u: the disk matches no state "
			"after the last flush (op %llu); %llu sectors differ, first %llu "
			"(holds iteration %u op %llu)\n",
			iter, (unsigned long long)flushed, (unsigned long long)ndiff,
			(unsigned long long)first, got[first].iter,
			(unsigned long long)got[first].seq);
		return 1;
	}
	fd = open(statefile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, got, CR_SECTORS * sizeof(*got)) !=
			      (ssize_t)(CR_SECTORS * sizeof(*got)))
		return fprintf(stderr, "crash-verify: cannot save state\n"), 1;
	close(fd);
	printf("iteration %u: %llu ops flushed before the kill; disk consistent\n", iter,
	       (unsigned long long)flushed);
	free(buf);
	free(spec);
	free(got);
	free(base);
	return 0;
}

/* --- Measuring (test-sqlite bench DIR [MiB]) --------------------------------------- */

static double bench_now(void)
{
	return (double)h_now_ns() / 1e9;
}

/* 4 KiB requests at random 4 KiB offsets below `span` sectors, `qd` in flight on
 * one queue, for `secs`; writes flush after every 256. Returns IOPS. */
static double bench_run(const char *spec, uint32_t flags, bool write, uint64_t span,
			int qd, double secs)
{
	dc_disk *d = NULL;
	dc_queue *q = NULL;
	uint8_t *bufs;
	struct iovec *iov;
	uint64_t rng = 12345, done = 0, since_flush = 0;
	int inflight = 0;
	double t0, t1;

	if (dc_open(spec, flags, &d) < 0 || dc_queue_open(d, DC_QUEUE_POLL, &q) < 0) {
		fprintf(stderr, "bench: %s: %s\n", spec, dc_last_error());
		exit(1);
	}
	bufs = h_alloc((size_t)qd * 4096);
	iov = calloc((size_t)qd, sizeof(*iov));
	for (int i = 0; i < qd; i++) {
		iov[i].iov_base = bufs + (size_t)i * 4096;
		iov[i].iov_len = 4096;
		h_fill(iov[i].iov_base, 4096, (uint64_t)i + 1);
	}
	t0 = bench_now();
	t1 = t0 + secs;
	for (;;) {
		struct dc_completion cq[64];
		int n;

		while (inflight < qd && (!write || since_flush < 256) &&
		       bench_now() < t1) {
			int slot = -1;

			/* Slot i is free when fewer than qd are in flight: use a ring. */
			slot = (int)((done + (uint64_t)inflight) % (uint64_t)qd);
			rng = h_mix64(rng);
			struct dc_io io = {
				.op = write ? DC_OP_WRITE : DC_OP_READ,
				.sector = (rng % (span / 8)) * 8,
				.iov = &iov[slot],
				.iovcnt = 1,
			};
			if (dc_submit(q, &io) < 0)
				exit(1);
			inflight++;
			since_flush++;
		}
		if (!inflight)
			break;
		n = dc_queue_reap(q, cq, 64);
		if (n == 0) {
			struct pollfd pfd = { .fd = dc_queue_fd(q), .events = POLLIN };

			poll(&pfd, 1, 1000);
			continue;
		}
		for (int i = 0; i < n; i++)
			if (cq[i].result)
				exit(1);
		inflight -= n;
		done += (uint64_t)n;
		if (write && since_flush >= 256 && !inflight) {
			if (dc_flush(d) < 0)
				exit(1);
			since_flush = 0;
		}
	}
	t1 = bench_now();
	dc_queue_close(q);
	dc_close(d);
	free(iov);
	free(bufs);
	return (double)done / (t1 - t0);
}

static int bench_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Each workload on file: and on the sqlite layer, back to back, REPS times;
 * prints every pair and the median ratio. */
#define BENCH_REPS 5

static int bench_main(const char *dir, uint64_t mib)
{
	char *base = h_fmt("%s/bench-base.img", dir);
	char *cachedir = h_fmt("%s/bench-cache", dir);
	char *file = h_fmt("file:%s", base);
	char *cache = h_fmt("autocache:bench:file:%s", base);
	uint64_t span = mib << 11;
	uint8_t *chunk = h_alloc(1 << 20);
	dc_disk *d = NULL;
	int fd;

	/* A base file with data in every sector, and a cache holding all of it. */
	fd = open(base, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	for (uint64_t i = 0; i < mib; i++) {
		h_fill(chunk, 1 << 20, i);
		if (write(fd, chunk, 1 << 20) != 1 << 20)
			return 1;
	}
	fsync(fd);
	close(fd);
	mkdir(cachedir, 0700);
	setenv("DISKCORE_AUTO_CACHE_PATH", cachedir, 1);
	if (dc_open(cache, DC_OPEN_READ_ONLY, &d) < 0)
		return fprintf(stderr, "bench: %s\n", dc_last_error()), 1;
	for (uint64_t i = 0; i < mib; i++)
		if (dc_read(d, i << 11, chunk, 1 << 20) < 0)
			return 1;
	dc_close(d);

	printf("4 KiB random I/O over %llu MiB, %d pairs of 3 s runs, file: first\n",
	       (unsigned long long)mib, BENCH_REPS);
	for (int w = 1; w >= 0; w--) {
		for (int qd = 1; qd <= 16; qd *= 16) {
			double ratio[BENCH_REPS];

			printf("%s qd %2d:",
			       w ? "randwrite, flush/256, sqldiff vs file" :
				   "randread of cached sectors, autocache vs file",
			       qd);
			for (int rep = 0; rep < BENCH_REPS; rep++) {
				char *db = h_fmt("%s/bench-w.dbhd", dir);
				char *diff = h_fmt("sqldiff:%s;create:file:%s", db, base);
				uint32_t fl = w ? 0 : DC_OPEN_READ_ONLY;
				double a = bench_run(file, fl, w, span, qd, 3);
				double b =
					bench_run(w ? diff : cache, fl, w, span, qd, 3);

				ratio[rep] = b / a;
				printf(" %.0f/%.0f", b, a);
				fflush(stdout);
				unlink(db);
				free(diff);
				free(db);
			}
			qsort(ratio, BENCH_REPS, sizeof(ratio[0]), bench_cmp);
			printf("  median ratio %.2f\n", ratio[BENCH_REPS / 2]);
		}
	}
	free(chunk);
	free(cache);
	free(file);
	free(cachedir);
	free(base);
	return 0;
}

/* --- Main ------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	struct conformance_opts db = { .prepare = sqt_prepare };
	struct conformance_opts db_ro = { .prepare = sqt_prepare,
					  .open_flags = DC_OPEN_READ_ONLY };
	struct conformance_opts ro = { .open_flags = DC_OPEN_READ_ONLY };
	char out[256];
	Suite *s;
	TCase *tc;

	if (argc == 3 && !strcmp(argv[1], "crash-init"))
		return cr_init(argv[2]);
	if (argc == 5 && !strcmp(argv[1], "crash-writer"))
		return cr_writer(argv[2], argv[3], (uint32_t)atoi(argv[4]));
	if (argc == 6 && !strcmp(argv[1], "crash-verify"))
		return cr_verify(argv[2], argv[3], argv[4], (uint32_t)atoi(argv[5]));
	if ((argc == 3 || argc == 4) && !strcmp(argv[1], "bench"))
		return bench_main(argv[2], argc == 4 ? strtoull(argv[3], NULL, 10) : 256);
	if (argc == 5 && !strcmp(argv[1], "race-open"))
		return sqt_racer(argv[2], atoi(argv[3]), atoi(argv[4]));
	if (argc == 7 && !strcmp(argv[1], "bench-one")) {
		bool w = !strcmp(argv[3], "write");
		double iops = bench_run(argv[2], w ? 0 : DC_OPEN_READ_ONLY, w,
					strtoull(argv[6], NULL, 10) << 11, atoi(argv[4]),
					atof(argv[5]));

		printf("%s %s qd %s: %.0f IOPS\n", argv[2], argv[3], argv[4], iops);
		return 0;
	}
	if (argc != 1) {
		fprintf(stderr,
			"usage: %s [crash-init DB | crash-writer DB LOG ITER | "
			"crash-verify DB LOG STATE ITER | race-open SPEC FD I |\n"
			"  bench DIR [MiB] |\n"
			"  bench-one SPEC read|write QD SECONDS SPAN_MiB]\n",
			argv[0]);
		return 2;
	}

	if (!h_have_plugin("sqlite"))
		h_skip("the sqlite plugin is not built "
		       "(meson -Dsqlite=enabled, libsqlite3-dev)");
	if (sqt_shell(":memory:", "SELECT 1;", out, sizeof(out)) != 0)
		h_skip("the sqlite3 shell is needed as the oracle "
		       "(apt-get install sqlite3)");
	/* Every autocache case shares one cache root inside the test directory. */
	char *root = h_fmt("%s/autocache", h_tmpdir());
	mkdir(root, 0700);
	setenv("DISKCORE_AUTO_CACHE_PATH", root, 1);
	unsetenv("OPENVMM_AUTO_CACHE_PATH");
	free(root);

	s = suite_create("sqlite");
	conformance_add(s, "sql", "sql:@NEW.dbhd@;create=1M");
	conformance_add_opts(s, "sql-ro", "sql:@TMP:1M.dbhd@", &db_ro);
	conformance_add(s, "sqldiff-file", "sqldiff:@NEW.dbhd@;create:file:@TMP@");
	conformance_add_opts(s, "sqldiff-existing-file",
			     "sqldiff:@TMP:1M.dbhd@:file:@TMP@", &db);
	/* A layer under memdiff: is read-only, so its database exists first. */
	conformance_add_opts(s, "memdiff-sqldiff-file",
			     "memdiff:sqldiff:@TMP:1M.dbhd@:file:@TMP@", &db);
	conformance_add_opts(s, "memdiff-sql", "memdiff:sql:@TMP:1M.dbhd@", &db);
	/* Caches are keyed per case; what lies below is always a fresh zero file. */
	conformance_add_opts(s, "autocache-ro", "autocache:conf-ro:file:@TMP@", &ro);
	conformance_add(s, "memdiff-autocache-file", "memdiff:autocache:conf:file:@TMP@");
	conformance_add(s, "sqldiff-mem-4k",
			"sqldiff:@NEW.dbhd@;create:mem:1M;sector=4096");

	tc = tcase_create("format");
	tcase_add_test(tc, format_like_openvmm);
	tcase_add_test(tc, format_openvmm_file);
	tcase_add_test(tc, format_bad_row);
	tcase_add_test(tc, format_bad_meta);
	tcase_add_test(tc, format_logically_read_only);
	tcase_add_test(tc, format_persists);
	suite_add_tcase(s, tc);

	tc = tcase_create("layered");
	tcase_add_test(tc, layered_diff_over_file);
	tcase_add_test(tc, layered_diff_sector_size);
	tcase_add_test(tc, layered_read_cache);
	tcase_add_test(tc, layered_cache_size_mismatch);
	tcase_add_test(tc, layered_cache_race);
	tcase_add_test(tc, layered_cache_disk_id_key);
	tcase_add_test(tc, layered_cache_env);
	tcase_add_test(tc, layered_cache_bad_key);
	suite_add_tcase(s, tc);

	tc = tcase_create("spec");
	tcase_add_test(tc, spec_sql);
	tcase_add_test(tc, spec_sqldiff);
	tcase_add_test(tc, spec_autocache);
	suite_add_tcase(s, tc);

	tc = tcase_create("concurrency");
	tcase_add_test(tc, concurrent_reads_see_whole_writes);
	tcase_add_test(tc, concurrent_writers_and_checkpoints);
	tcase_add_test(tc, resize_under_writes);
	tcase_add_test(tc, snapshot_released_when_idle);
	suite_add_tcase(s, tc);

	/* Last: the cases run in order, so this sees every database. */
	tc = tcase_create("integrity");
	tcase_add_test(tc, all_databases_intact);
	suite_add_tcase(s, tc);
	return h_run(s);
}
