/* SPDX-License-Identifier: MIT */
/* sqlite: check() (ABI 1.1), on a read-only connection of its own: SQLite's
 * integrity check, then what diskcore relies on (db.c): the two tables with
 * OpenVMM's columns, one meta row with a valid size, and sector rows inside
 * the disk that are NULL or one sector long. */
#include "sqlite.h"

#include <errno.h>
#include <string.h>

/* Findings of one kind listed one by one up to this many, then counted. */
#define SQ_CHECK_LIST 10

struct sq_chk {
	struct sq_layer *l;
	sqlite3 *db;
	dc_check_report_fn report;
	void *arg;
};

/* Prepare sql; a failure is a corruption (the schema is not ours). */
static sqlite3_stmt *sq_chk_prepare(struct sq_chk *k, const char *sql)
{
	sqlite3_stmt *st = NULL;

	if (sqlite3_prepare_v2(k->db, sql, -1, &st, NULL) != SQLITE_OK) {
		dc_check_printf(k->report, k->arg, DC_CHECK_CORRUPT, "%s: %s", sql,
				sqlite3_errmsg(k->db));
		return NULL;
	}
	return st;
}

/* PRAGMA integrity_check: every row but "ok" is a corruption. */
static void sq_chk_integrity(struct sq_chk *k)
{
	sqlite3_stmt *st = sq_chk_prepare(k, "PRAGMA integrity_check");

	if (!st)
		return;
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *m = (const char *)sqlite3_column_text(st, 0);

		if (m && strcmp(m, "ok"))
			dc_check_printf(k->report, k->arg, DC_CHECK_CORRUPT,
					"integrity_check: %s", m);
	}
	sqlite3_finalize(st);
}

/* One column a table must have: name, declared type, NOT NULL, primary key. */
struct sq_col {
	const char *table, *name, *type;
	int notnull, pk;
};

static const struct sq_col sq_cols[] = {
	{ "sectors", "sector", "INTEGER", 1, 1 },
	{ "sectors", "data", "BLOB", 0, 0 },
	{ "meta", "metadata", "TEXT", 1, 0 },
};

/* The tables and columns of the schema (db.c). Returns false if a table the
 * rest of the check reads is unusable. */
static bool sq_chk_schema(struct sq_chk *k)
{
	sqlite3_stmt *st = sq_chk_prepare(
		k,
		"SELECT type, \"notnull\", pk FROM pragma_table_info(?1) WHERE name = ?2");
	bool ok = true;

	if (!st)
		return false;
	for (size_t i = 0; i < sizeof(sq_cols) / sizeof(sq_cols[0]); i++) {
		const struct sq_col *c = &sq_cols[i];
		const char *type;

		sqlite3_bind_text(st, 1, c->table, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, c->name, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_ROW) {
			dc_check_printf(k->report, k->arg, DC_CHECK_CORRUPT,
					"table %s has no column %s", c->table, c->name);
			ok = false;
		} else if (!(type = (const char *)sqlite3_column_text(st, 0)) ||
			   sqlite3_stricmp(type, c->type) ||
			   sqlite3_column_int(st, 1) != c->notnull ||
			   sqlite3_column_int(st, 2) != c->pk) {
			dc_check_printf(k->report, k->arg, DC_CHECK_CORRUPT,
					"column %s.%s is not %s%s%s", c->table, c->name,
					c->type, c->notnull ? " NOT NULL" : "",
					c->pk ? " PRIMARY KEY" : "");
			ok = false;
		}
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	return ok;
}

/* The meta table: one row, the JSON db.c reads, the size the layer has. */
static void sq_chk_meta(struct sq_chk *k)
{
	sqlite3_stmt *st = sq_chk_prepare(
		k, "SELECT json_valid(metadata), json_type(metadata, '$.sector_count'), "
		   "json_extract(metadata, '$.sector_count'), "
		   "json_type(metadata, '$.sector_size'), "
		   "json_extract(metadata, '$.sector_size'), "
		   "json_type(metadata, '$.logically_read_only') FROM meta");
	int rows = 0;

	if (!st)
		return;
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *ct = (const char *)sqlite3_column_text(st, 1);
		const char *st2 = (const char *)sqlite3_column_text(st, 3);
		const char *rt = (const char *)sqlite3_column_text(st, 5);
		sqlite3_int64 count = sqlite3_column_int64(st, 2);
		sqlite3_int64 ss = sqlite3_column_int64(st, 4);

		if (++rows > 1)
			continue;
		if (!sqlite3_column_int(st, 0))
			dc_check_printf(k->report, k->arg, DC_CHECK_CORRUPT,
					"the meta row is not JSON");
		else if (!ct || strcmp(ct, "integer") || !st2 || strcmp(st2, "integer") ||
			 !rt || (strcmp(rt, "true") && strcmp(rt, "false")))
			dc_check_printf(
				k->report, k->arg, DC_CHECK_CORRUPT,
				"the meta row lacks an integer sector_count "
				"and sector_size, or a boolean logically_read_only");
		else if (count <= 0 || ss <= 0 || ss > UINT32_MAX ||
			 !sq_size_ok((uint64_t)count, (uint32_t)ss))
			dc_check_printf(k->report, k->arg, DC_CHECK_CORRUPT,
					"the meta row says %lld sectors of %lld bytes",
					(long long)count, (long long)ss);
	}
	sqlite3_finalize(st);
	if (rows != 1)
		dc_check_printf(k->report, k->arg, DC_CHECK_CORRUPT,
				"the meta table has %d rows, not 1", rows);
}

/* Rows that select (sector, what is wrong with it) are corruptions: the
 * first few named, then how many there are. */
static void sq_chk_rows(struct sq_chk *k, const char *sql, const char *what)
{
	sqlite3_stmt *st = sq_chk_prepare(k, sql);
	uint64_t n = 0;

	if (!st)
		return;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)k->l->count);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)k->l->ss);
	while (sqlite3_step(st) == SQLITE_ROW)
		if (++n <= SQ_CHECK_LIST)
			dc_check_printf(k->report, k->arg, DC_CHECK_CORRUPT,
					"sector %lld %s",
					(long long)sqlite3_column_int64(st, 0),
					(const char *)sqlite3_column_text(st, 1));
	sqlite3_finalize(st);
	if (n > SQ_CHECK_LIST)
		dc_check_printf(k->report, k->arg, DC_CHECK_CORRUPT,
				"%llu sector rows %s in all", (unsigned long long)n,
				what);
}

int sq_check_db(void *inst, dc_check_report_fn report, void *arg)
{
	struct sq_layer *l = inst;
	struct sq_chk k = { .l = l, .report = report, .arg = arg };
	int rc;

	rc = sqlite3_open_v2(l->path, &k.db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		rc = dc_fail(-EIO, "%s: cannot open read-only: %s", l->path,
			     k.db ? sqlite3_errmsg(k.db) : sqlite3_errstr(rc));
		sqlite3_close(k.db);
		return rc;
	}
	sqlite3_busy_timeout(k.db, SQ_BUSY_MS);
	/* One snapshot for every query below. */
	sq_exec(k.db, "BEGIN");
	sq_chk_integrity(&k);
	if (sq_chk_schema(&k)) {
		sq_chk_meta(&k);
		sq_chk_rows(
			&k,
			"SELECT sector, 'is past the end of the ' || ?1 || "
			"'-sector disk' FROM sectors WHERE sector < 0 OR sector >= ?1",
			"past the end");
		sq_chk_rows(
			&k,
			"SELECT sector, 'holds a ' || typeof(data) || ' of ' || "
			"length(data) || ' bytes, not ' || ?2 FROM sectors WHERE data "
			"IS NOT NULL AND (typeof(data) != 'blob' OR length(data) != ?2)",
			"of the wrong length");
	}
	dc_check_printf(report, arg, DC_CHECK_NOTE,
			"SQLite integrity, schema, meta and sector rows of %s checked",
			l->path);
	sq_exec(k.db, "COMMIT");
	sqlite3_close(k.db);
	return 0;
}
