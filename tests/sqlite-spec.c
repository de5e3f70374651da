/* SPDX-License-Identifier: MIT */
/* test-sqlite: the spec strings of sql:, sqldiff: and autocache:
 * (docs/openvmm-compat.md §5.4): their options, what they refuse, and with what
 * message. */
#include "harness.h"
#include "sqlite-test.h"

#include <diskcore/diskcore.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

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

TCase *sqlite_tc_spec(void)
{
	TCase *tc = tcase_create("spec");

	tcase_add_test(tc, spec_sql);
	tcase_add_test(tc, spec_sqldiff);
	tcase_add_test(tc, spec_autocache);
	return tc;
}
