/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the sqlite plugin on a .dbhd database whose tables the
 * input builds (through SQLite itself), opened with dc_open("sql:PATH").
 *
 * Input:
 *   byte 0      flags: bit 0 open read-only; bits 1-2 the schema (0 OpenVMM's,
 *               1 sectors without a primary key, so a sector may have several
 *               rows, 2 sector as TEXT and data as TEXT, 3 no sectors table);
 *               bit 3 rollback journal instead of WAL; bits 4-5 the meta
 *               table (0 a JSON object of the fields below, 1 text from the
 *               input, 2 both rows, 3 no meta table); bit 6 page size 512
 *               instead of 4096;
 *   byte 1      sector size: 512 << (byte % 8), or with bit 7 set the next
 *               two bytes as it is;
 *   4 bytes     sector count (a signed 32-bit number), then one byte
 *               logically_read_only;
 *   meta text   (meta modes 1 and 2) one length byte and that many bytes;
 *   then rows:  one byte sector (with bit 7 set: the next 8 bytes, a signed
 *               64-bit sector), one byte type (0 NULL data, 1 a blob of the
 *               sector size, 2 a blob of a length from the next byte times 16,
 *               3 text, 4 integer, 5 real), up to 256 rows.
 *
 * On OpenVMM's schema with a JSON meta row and a valid geometry the disk must
 * open, and every read must return what SQLite itself says the table holds (a
 * missing or NULL row reads as zeroes, a blob of the sector size as itself,
 * anything else makes the read fail); written sectors must read back, also
 * after the disk is closed and opened again. On every other database anything
 * but a crash, a hang or a sanitizer report is fine. */
#include "fuzz-env.h"

#include <sqlite3.h>

#define FUZZ_WINDOW 64 /* sectors read and checked from the start */
#define FUZZ_CHUNK 16  /* sectors per read */
#define FUZZ_MAX_ROWS 256
#define FUZZ_MAX_SS 65536

enum { FUZZ_ZERO, FUZZ_DATA, FUZZ_BAD };

struct fuzz_db {
	unsigned schema, meta;
	bool ro, wal, logical_ro;
	uint32_t ss;
	int64_t count;
	uint64_t check; /* sectors checked: min(count, FUZZ_WINDOW) */
	int want[FUZZ_WINDOW];
	uint8_t *data; /* FUZZ_WINDOW sectors: what FUZZ_DATA sectors hold */
};

static struct fuzz_db db;
static uint8_t fuzz_buf[FUZZ_CHUNK * FUZZ_MAX_SS];
static uint8_t fuzz_win[FUZZ_WINDOW * FUZZ_MAX_SS];

static void fuzz_pattern(uint8_t *p, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed * 37 + i * 11 + (i >> 8) + 3);
}

static void fuzz_exec(sqlite3 *h, const char *sql)
{
	/* A statement the input makes impossible just leaves the table as it is. */
	sqlite3_exec(h, sql, NULL, NULL, NULL);
}

static const char *const fuzz_schemas[] = {
	/* OpenVMM's (sqlite.c's sq_schema) */
	"CREATE TABLE sectors (sector INTEGER NOT NULL, data BLOB, PRIMARY KEY (sector));",
	"CREATE TABLE sectors (sector INTEGER NOT NULL, data BLOB);",
	"CREATE TABLE sectors (sector TEXT, data TEXT);",
	"",
};

/* Build fuzz.dbhd from the input; false if SQLite cannot even start. */
static bool fuzz_build(struct fuzz_in *in)
{
	uint8_t flags = (uint8_t)fuzz_take(in, 1), code = (uint8_t)fuzz_take(in, 1);
	static uint8_t blob[FUZZ_MAX_SS];
	sqlite3_stmt *st = NULL;
	char sql[160], json[160], text[256];
	unsigned text_len = 0;
	int ro_flag, rows = 0;
	sqlite3 *h;

	db.ro = flags & 1;
	db.schema = (flags >> 1) & 3;
	db.wal = !(flags & 8);
	db.meta = (flags >> 4) & 3;
	db.ss = code & 0x80 ? (uint32_t)fuzz_take(in, 2) : 512u << (code % 8);
	db.count = (int32_t)(uint32_t)fuzz_take(in, 4);
	ro_flag = (int)fuzz_take(in, 1);
	db.logical_ro = ro_flag & 1;
	if (db.meta == 1 || db.meta == 2) {
		text_len = (unsigned)fuzz_take(in, 1);
		for (unsigned i = 0; i < text_len; i++)
			text[i] = (char)fuzz_take(in, 1);
	}
	if (sqlite3_open_v2("fuzz.dbhd", &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
			    NULL) != SQLITE_OK) {
		sqlite3_close(h);
		return false;
	}
	fuzz_exec(h, flags & 0x40 ? "PRAGMA page_size=512" : "PRAGMA page_size=4096");
	fuzz_exec(h, db.wal ? "PRAGMA journal_mode=WAL" : "PRAGMA journal_mode=DELETE");
	fuzz_exec(h, "BEGIN");
	fuzz_exec(h, fuzz_schemas[db.schema]);
	if (db.meta != 3)
		fuzz_exec(h, "CREATE TABLE meta (metadata TEXT NOT NULL);");
	if (db.meta == 0 || db.meta == 2) {
		snprintf(json, sizeof(json),
			 "{\"logically_read_only\":%s,\"sector_count\":%lld,"
			 "\"sector_size\":%u}",
			 ro_flag & 1 ? "true" : "false", (long long)db.count, db.ss);
		snprintf(sql, sizeof(sql), "INSERT INTO meta VALUES ('%s')", json);
		fuzz_exec(h, sql);
	}
	if ((db.meta == 1 || db.meta == 2) &&
	    sqlite3_prepare_v2(h, "INSERT INTO meta VALUES (?1)", -1, &st, NULL) ==
		    SQLITE_OK) {
		sqlite3_bind_text(st, 1, text, (int)text_len, SQLITE_STATIC);
		sqlite3_step(st);
		sqlite3_finalize(st);
	}
	st = NULL;
	if (sqlite3_prepare_v2(h, "INSERT OR REPLACE INTO sectors VALUES (?1, ?2)", -1,
			       &st, NULL) == SQLITE_OK) {
		while (in->left && rows++ < FUZZ_MAX_ROWS) {
			uint8_t tag = (uint8_t)fuzz_take(in, 1);
			int64_t s = tag & 0x80 ? (int64_t)fuzz_take(in, 8) : tag;
			unsigned type = (unsigned)fuzz_take(in, 1) % 6;
			size_t len = db.ss <= FUZZ_MAX_SS ? db.ss : FUZZ_MAX_SS;

			sqlite3_bind_int64(st, 1, s);
			switch (type) {
			case 0:
				sqlite3_bind_null(st, 2);
				break;
			case 2:
				len = 16 * (size_t)fuzz_take(in, 1);
				/* fall through */
			case 1:
				fuzz_pattern(blob, len, (uint64_t)s + (uint64_t)rows);
				sqlite3_bind_blob(st, 2, blob, (int)len, SQLITE_STATIC);
				break;
			case 3:
				sqlite3_bind_text(st, 2, "sector", 6, SQLITE_STATIC);
				break;
			case 4:
				sqlite3_bind_int64(st, 2, s);
				break;
			default:
				sqlite3_bind_double(st, 2, 0.5);
				break;
			}
			sqlite3_step(st);
			sqlite3_reset(st);
		}
		sqlite3_finalize(st);
	}
	fuzz_exec(h, "COMMIT");
	sqlite3_close(h);
	return true;
}

/* Whether a valid disk: what the plugin must open. */
static bool fuzz_valid(void)
{
	return db.schema == 0 && db.meta == 0 && db.count > 0 && db.ss >= 512 &&
	       db.ss <= FUZZ_MAX_SS && !(db.ss & (db.ss - 1));
}

/* What SQLite itself says the first db.check sectors hold. */
static void fuzz_expect(void)
{
	sqlite3_stmt *st;
	sqlite3 *h;

	if (sqlite3_open_v2("fuzz.dbhd", &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(h, "SELECT data FROM sectors WHERE sector = ?1", -1, &st,
			       NULL) != SQLITE_OK)
		fuzz_die("cannot query the database the target made: %s",
			 sqlite3_errmsg(h));
	for (uint64_t s = 0; s < db.check; s++) {
		uint8_t *want = db.data + s * db.ss;

		memset(want, 0, db.ss);
		db.want[s] = FUZZ_ZERO;
		sqlite3_bind_int64(st, 1, (int64_t)s);
		if (sqlite3_step(st) == SQLITE_ROW) {
			int type = sqlite3_column_type(st, 0);

			if (type == SQLITE_BLOB &&
			    sqlite3_column_bytes(st, 0) == (int)db.ss) {
				memcpy(want, sqlite3_column_blob(st, 0), db.ss);
				db.want[s] = FUZZ_DATA;
			} else if (type != SQLITE_NULL) {
				db.want[s] = FUZZ_BAD;
			}
		}
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	sqlite3_close(h);
}

/* Read the first db.check sectors in chunks; on a valid disk, check them. */
static void fuzz_read_window(dc_disk *d, const char *when)
{
	for (uint64_t s = 0; s < db.check; s += FUZZ_CHUNK) {
		uint64_t n = db.check - s < FUZZ_CHUNK ? db.check - s : FUZZ_CHUNK;
		bool bad = false;
		int rc;

		memset(fuzz_buf, 0xee, n * db.ss);
		rc = dc_read(d, s, fuzz_buf, (size_t)n * db.ss);
		if (!fuzz_valid())
			continue;
		for (uint64_t i = 0; i < n; i++)
			bad = bad || db.want[s + i] == FUZZ_BAD;
		if (bad ? rc == 0 : rc != 0)
			fuzz_die("%s: read of %llu+%llu: %d, expected %s", when,
				 (unsigned long long)s, (unsigned long long)n, rc,
				 bad ? "a failure (a malformed row)" : "success");
		for (uint64_t i = 0; !bad && i < n; i++)
			if (memcmp(fuzz_buf + i * db.ss, db.data + (s + i) * db.ss,
				   db.ss))
				fuzz_die(
					"%s: sector %llu reads %02x %02x.., SQLite holds "
					"%02x %02x..",
					when, (unsigned long long)(s + i),
					fuzz_buf[i * db.ss], fuzz_buf[i * db.ss + 1],
					db.data[(s + i) * db.ss],
					db.data[(s + i) * db.ss + 1]);
	}
}

/* Write, unmap and flush inside the window; the model follows. */
static void fuzz_write(dc_disk *d)
{
	uint64_t at[3] = { 0, db.check / 2, db.check - 1 };

	for (int i = 0; i < 3; i++) {
		uint8_t *p = db.data + at[i] * db.ss;
		int rc;

		fuzz_pattern(p, db.ss, at[i] * 7 + 1);
		rc = dc_write(d, at[i], p, db.ss, i == 1 ? DC_IO_FUA : 0);
		if (rc == 0)
			db.want[at[i]] = FUZZ_DATA;
		else if (fuzz_valid())
			fuzz_die("write of sector %llu: %d", (unsigned long long)at[i],
				 rc);
	}
	if (db.check > 3 && dc_unmap(d, 1, 1, 0) == 0) {
		memset(db.data + db.ss, 0, db.ss);
		db.want[1] = FUZZ_ZERO;
	}
	if (dc_flush(d) != 0 && fuzz_valid())
		fuzz_die("flush failed");
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_enter_scratch("sqlite", argc, argv);
	db.data = fuzz_win;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct dc_info info;
	dc_disk *d = NULL;
	bool writable;
	int rc;

	fuzz_clear_scratch();
	if (size < 2 || !fuzz_build(&in))
		return 0;
	db.check = db.count <= 0	  ? 0 :
		   db.count < FUZZ_WINDOW ? (uint64_t)db.count :
					    FUZZ_WINDOW;
	if (db.ss < 512 || db.ss > FUZZ_MAX_SS)
		db.check = 0;
	if (fuzz_valid())
		fuzz_expect();
	rc = dc_open("sql:fuzz.dbhd", db.ro ? DC_OPEN_READ_ONLY : 0, &d);
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "dc_open(sql:fuzz.dbhd, ss %u, count %lld) = %d: %s\n",
			db.ss, (long long)db.count, rc, rc ? dc_last_error() : "ok");
	if (rc) {
		/* A logically read-only disk may refuse a writable open. */
		if (fuzz_valid() && (db.ro || !db.logical_ro))
			fuzz_die("a valid database (%lld sectors of %u bytes) does not "
				 "open: %d %s",
				 (long long)db.count, db.ss, rc, dc_last_error());
		return 0;
	}
	if (!fuzz_valid()) {
		/* The meta row may say something else than the input's fields. */
		db.ss = dc_sector_size(d);
		db.count = (int64_t)(dc_sector_count(d) & INT64_MAX);
		db.check = db.count < FUZZ_WINDOW ? (uint64_t)db.count : FUZZ_WINDOW;
		if (db.ss < 512 || db.ss > FUZZ_MAX_SS)
			db.check = 0;
	} else if (dc_sector_size(d) != db.ss ||
		   (int64_t)dc_sector_count(d) != db.count) {
		fuzz_die("the disk has %llu sectors of %u bytes, its meta says %lld of "
			 "%u",
			 (unsigned long long)dc_sector_count(d), dc_sector_size(d),
			 (long long)db.count, db.ss);
	}
	fuzz_read_window(d, "first open");
	dc_get_info(d, &info);
	writable = db.check && !(info.flags & DC_INFO_READ_ONLY);
	if (db.ro && writable)
		fuzz_die("opened read-only, the disk says it is writable");
	if (writable) {
		fuzz_write(d);
		fuzz_read_window(d, "after writing");
	}
	dc_close(d);
	if (writable && fuzz_valid()) {
		rc = dc_open("sql:fuzz.dbhd", DC_OPEN_READ_ONLY, &d);
		if (rc)
			fuzz_die("does not open again after writing: %d %s", rc,
				 dc_last_error());
		fuzz_read_window(d, "opened again");
		dc_close(d);
	}
	return 0;
}
