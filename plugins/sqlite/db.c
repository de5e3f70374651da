/* SPDX-License-Identifier: MIT */
/* sqlite: database files: the schema and meta row, opening one, and
 * formatting a new one. */
#include "sqlite.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* The schema, verbatim as OpenVMM creates it. */
static const char sq_schema[] =
	"CREATE TABLE sectors (sector INTEGER NOT NULL, data BLOB, PRIMARY KEY (sector));"
	"CREATE TABLE meta (metadata TEXT NOT NULL);";

/* --- Database files ---------------------------------------------------------- */

bool sq_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static bool sq_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* Sizes a layer can have: sectors of 512..64K bytes, addressable in bytes. */
bool sq_size_ok(uint64_t count, uint32_t ss)
{
	return count && sq_pow2(ss) && ss >= 512 && ss <= SQ_MAX_SECTOR_SIZE &&
	       count <= (uint64_t)INT64_MAX / ss;
}

/* Read and check the meta row. */
static int sq_read_meta(struct sq_layer *l, struct sq_conn *c)
{
	sqlite3_stmt *st = NULL;
	sqlite3_int64 count, ss;
	int rc;

	rc = sqlite3_prepare_v2(
		c->db,
		"SELECT json_extract(metadata, '$.sector_count'), "
		"json_extract(metadata, '$.sector_size'), "
		"json_extract(metadata, '$.logically_read_only') FROM meta",
		-1, &st, NULL);
	if (rc != SQLITE_OK) {
		dc_error("%s: missing `meta` table (not a sqlite disk layer): %s",
			 l->path, sqlite3_errmsg(c->db));
		return -EINVAL;
	}
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		dc_error("%s: %s", l->path,
			 rc == SQLITE_DONE ? "the `meta` table is empty" :
					     sqlite3_errmsg(c->db));
		sqlite3_finalize(st);
		return -EINVAL;
	}
	if (sqlite3_column_type(st, 0) != SQLITE_INTEGER ||
	    sqlite3_column_type(st, 1) != SQLITE_INTEGER ||
	    sqlite3_column_type(st, 2) != SQLITE_INTEGER) {
		dc_error("%s: meta JSON lacks sector_count, sector_size or "
			 "logically_read_only",
			 l->path);
		sqlite3_finalize(st);
		return -EINVAL;
	}
	count = sqlite3_column_int64(st, 0);
	ss = sqlite3_column_int64(st, 1);
	l->logical_ro = sqlite3_column_int64(st, 2) != 0;
	sqlite3_finalize(st);
	if (count <= 0 || ss <= 0 || ss > UINT32_MAX ||
	    !sq_size_ok((uint64_t)count, (uint32_t)ss)) {
		dc_error(
			"%s: meta says %lld sectors of %lld bytes (expected a power-of-two "
			"sector size of 512..%d bytes and a non-zero, addressable count)",
			l->path, (long long)count, (long long)ss, SQ_MAX_SECTOR_SIZE);
		return -EINVAL;
	}
	l->count = (uint64_t)count;
	l->ss = (uint32_t)ss;
	return 0;
}

/* Open the existing database at l->path: the writer unless read-only, the meta.
 * Every open holds a shared flock on the file, which SQLite's own locks leave
 * alone, so that ;overwrite (dc_create_open() takes LOCK_EX) is refused while
 * the database is open anywhere through diskcore. */
int sq_open_db(struct sq_layer *l)
{
	struct sq_conn *c;
	int ret;

	l->lock_fd = open(l->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (l->lock_fd < 0 || flock(l->lock_fd, LOCK_SH | LOCK_NB) < 0) {
		ret = -errno;
		dc_error("%s: cannot %s: %s", l->path,
			 l->lock_fd < 0 ? "open" : "lock (it is being overwritten)",
			 strerror(errno));
		return ret;
	}
	ret = sq_conn_open(l->path, !l->read_only, &c);
	if (ret < 0)
		return ret;
	if (l->read_only) {
		c->next_all = l->all;
		l->all = c;
		l->idle = c;
		l->nreaders++;
	} else {
		l->writer = c;
		l->dirty = true; /* a crashed predecessor's commits may be unsynced */
		sqlite3_wal_hook(c->db, sq_wal_hook, l);
	}
	return sq_read_meta(l, c);
}

static int sq_fsync_path(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);
	int ret = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* Write a fresh database into `file`. */
static int sq_format_file(const char *file, uint64_t count, uint32_t ss, bool logical_ro)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	char pragma[64], json[128];
	int rc;

	rc = sqlite3_open_v2(
		file, &db,
		SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	/* A sector must fit in a B-tree leaf, so big sectors get big pages. */
	snprintf(pragma, sizeof(pragma), "PRAGMA page_size=%u",
		 ss <= 4096 ? 16384u : 65536u);
	snprintf(json, sizeof(json),
		 "{\"logically_read_only\":%s,\"sector_count\":%llu,\"sector_size\":%u}",
		 logical_ro ? "true" : "false", (unsigned long long)count, ss);
	/* No syncs while formatting: the finished file is synced once, below. */
	if ((rc = sq_exec(db, pragma)) != SQLITE_OK ||
	    (rc = sq_exec(db, "PRAGMA synchronous=OFF")) != SQLITE_OK ||
	    (rc = sq_exec(db, "PRAGMA journal_mode=WAL")) != SQLITE_OK ||
	    (rc = sq_exec(db, "BEGIN")) != SQLITE_OK ||
	    (rc = sq_exec(db, sq_schema)) != SQLITE_OK ||
	    (rc = sqlite3_prepare_v2(db, "INSERT INTO meta VALUES (json(?))", -1, &st,
				     NULL)) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(st, 1, json, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_step(st)) != SQLITE_DONE ||
	    (rc = sq_exec(db, "COMMIT")) != SQLITE_OK)
		goto fail;
	sqlite3_finalize(st);
	/* The last connection's close checkpoints and removes the WAL. */
	rc = sqlite3_close(db);
	if (rc != SQLITE_OK) {
		dc_error("%s: close after formatting: %s", file, sqlite3_errstr(rc));
		return -EIO;
	}
	rc = sq_fsync_path(file, O_RDONLY);
	if (rc < 0)
		dc_error("%s: cannot sync the new database: %s", file, strerror(-rc));
	return rc;
fail:
	dc_error("%s: cannot create the database: %s", file,
		 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return -EIO;
}

/* Create a new database at `path` atomically: format it in a private directory
 * next to it, then hard-link it into place, or with `claimed` rename it over
 * the empty file dc_create_open() made there for us. Returns 0 when ours is in
 * place, 1 when `path` already existed (another creator won the race), or
 * -errno. */
int sq_create(const char *path, uint64_t count, uint32_t ss, bool logical_ro,
	      bool claimed)
{
	const char *slash = strrchr(path, '/');
	char *dir, *tmpdir = NULL, *file = NULL;
	int ret = -ENOMEM;

	if (!slash)
		dir = strdup(".");
	else
		dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
	if (!dir || asprintf(&tmpdir, "%s/.sqlite-new-XXXXXX", dir) < 0) {
		tmpdir = NULL;
		goto oom;
	}
	if (!mkdtemp(tmpdir)) {
		ret = -errno;
		dc_error("%s: cannot make a temporary directory in %s: %s", path, dir,
			 strerror(errno));
		free(tmpdir);
		free(dir);
		return ret;
	}
	if (asprintf(&file, "%s/disk.dbhd", tmpdir) < 0) {
		file = NULL;
		goto oom;
	}
	ret = sq_format_file(file, count, ss, logical_ro);
	if (ret < 0)
		goto out;
	if ((claimed ? rename(file, path) : link(file, path)) == 0) {
		/* Make the new name durable too. */
		sq_fsync_path(dir, O_RDONLY | O_DIRECTORY);
		ret = 0;
	} else if (errno == EEXIST) {
		ret = 1;
	} else {
		ret = -errno;
		dc_error("%s: cannot link the new database into place: %s", path,
			 strerror(errno));
	}
	goto out;
oom:
	dc_error("out of memory");
out:
	if (file) {
		char side[PATH_MAX];

		unlink(file);
		/* Sidecars remain only if close could not checkpoint. */
		snprintf(side, sizeof(side), "%s-wal", file);
		unlink(side);
		snprintf(side, sizeof(side), "%s-shm", file);
		unlink(side);
	}
	if (tmpdir)
		rmdir(tmpdir);
	free(file);
	free(tmpdir);
	free(dir);
	return ret;
}
