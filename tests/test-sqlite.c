/* SPDX-License-Identifier: MIT */
/* The sqlite layer: sql:, sqldiff:, autocache: (docs/openvmm-compat.md §4.7, §5.1-5.2,
 * §5.4).
 *
 * The sqlite3 command-line shell is the oracle for the file format: it writes
 * databases the way OpenVMM does, inspects what the plugin wrote, and runs
 * PRAGMA integrity_check on every database the tests leave behind (the last
 * test case checks all of them). This file holds the oracle, the helpers the
 * other files share (sqlite-test.h), the file format's cases and main(); the
 * layered cases are in sqlite-layered.c, the spec strings in sqlite-spec.c,
 * threads and resize in sqlite-concurrency.c.
 *
 * Helper modes (not tests): `test-sqlite crash-init|crash-writer|crash-verify`
 * for tests/test-sqlite-crash.sh (sqlite-crash.c), and `test-sqlite bench DIR
 * [MiB]` (the issue's targets: sqldiff writes and cached reads against file:,
 * in one run) and `test-sqlite bench-one SPEC read|write QD SECONDS SPAN_MiB`
 * to measure (sqlite-bench.c). */
#include "conformance.h"
#include "harness.h"
#include "sqlite-test.h"

#include <diskcore/diskcore.h>
#include <diskcore/plugin.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* --- The sqlite3 shell ------------------------------------------------------- */

/* Run `sqlite3 -batch path sql`; returns its exit status, output in out. */
int sqt_shell(const char *path, const char *sql, char *out, size_t outlen)
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
char *sqt_query(const char *path, const char *sql)
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

void sqt_integrity(const char *path)
{
	char *r = sqt_query(path, "PRAGMA integrity_check;");

	ck_assert_msg(strcmp(r, "ok") == 0, "%s: integrity_check: %s", path, r);
}

/* --- Helpers ----------------------------------------------------------------- */

/* A raw file of `size` bytes whose sector s holds h_fill(seed + s). */
char *sqt_base(uint64_t size, uint64_t seed)
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
void sqt_garble(const char *path)
{
	struct stat st;
	uint8_t *buf;

	ck_assert_int_eq(stat(path, &st), 0);
	buf = h_alloc((size_t)st.st_size);
	memset(buf, 0xe7, (size_t)st.st_size);
	h_pwrite_file(path, 0, buf, (size_t)st.st_size);
	free(buf);
}

void sqt_write(dc_disk *d, uint64_t sector, uint64_t n, uint64_t seed)
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
void sqt_expect(dc_disk *d, uint64_t sector, uint64_t n, uint64_t seed)
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

long sqt_rows(const char *db, const char *where)
{
	char *q = h_fmt("SELECT count(*) FROM sectors%s%s;", where ? " WHERE " : "",
			where ? where : "");
	long n = strtol(sqt_query(db, q), NULL, 10);

	free(q);
	return n;
}

/* A new, empty sqlite disk at `path`. */
void sqt_make_db(const char *path, uint64_t size)
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

char *sqt_cache_root(void)
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

	suite_add_tcase(s, sqlite_tc_layered());
	suite_add_tcase(s, sqlite_tc_spec());
	suite_add_tcase(s, sqlite_tc_concurrency());

	/* Last: the cases run in order, so this sees every database. */
	tc = tcase_create("integrity");
	tcase_add_test(tc, all_databases_intact);
	suite_add_tcase(s, tc);
	return h_run(s);
}
