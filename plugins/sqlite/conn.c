/* SPDX-License-Identifier: MIT */
/* sqlite: connections, their prepared statements, and the pool of
 * read-only connections with the timer that ends idle snapshots; below both
 * I/O paths, so the helpers they share (errors, buffer views) live here too. */
#include "sqlite.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const sq_stmt_sql[SQ_NSTMT] = {
	[SQ_READ] = "SELECT sector, data FROM sectors WHERE sector >= ?1 AND sector < ?2 "
		    "ORDER BY sector",
	/* Which rows hold sectors, and which of them are zero (NULL). */
	[SQ_MAP] = "SELECT sector, data IS NULL FROM sectors WHERE sector >= ?1 AND "
		   "sector < ?2 ORDER BY sector",
	[SQ_BEGIN_READ] = "BEGIN",
	[SQ_COMMIT] = "COMMIT",
	[SQ_BEGIN] = "BEGIN IMMEDIATE",
	[SQ_ROLLBACK] = "ROLLBACK",
	[SQ_PUT] = "INSERT OR REPLACE INTO sectors (sector, data) VALUES (?1, ?2)",
	[SQ_PUT_NEW] = "INSERT OR IGNORE INTO sectors (sector, data) VALUES (?1, ?2)",
	[SQ_DELETE] = "DELETE FROM sectors WHERE sector >= ?1 AND sector < ?2",
	/* Explicit zero rows for [?1, ?2), generated inside SQLite. */
	[SQ_ZERO] = "WITH RECURSIVE r(s) AS (SELECT ?1 UNION ALL SELECT s + 1 FROM r "
		    "WHERE s + 1 < ?2) "
		    "INSERT OR REPLACE INTO sectors (sector, data) SELECT s, NULL FROM r",
	[SQ_SYNC_FULL] = "PRAGMA synchronous=FULL",
	[SQ_SYNC_NORMAL] = "PRAGMA synchronous=NORMAL",
	/* Dirties the header page so a commit has something to sync (as OpenVMM). */
	[SQ_TOUCH] = "PRAGMA user_version=0",
};

/* --- Connections ------------------------------------------------------------- */

void sq_conn_close(struct sq_conn *c)
{
	if (!c)
		return;
	for (int i = 0; i < SQ_NSTMT; i++)
		sqlite3_finalize(c->st[i]);
	sqlite3_close(c->db);
	free(c);
}

int sq_exec(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* Open a connection to `path`: the writer (read-write, WAL, all statements) or a
 * reader (read-only, SELECT only). Control path: reports with dc_error(). */
int sq_conn_open(const char *path, bool writer, struct sq_conn **out)
{
	int flags = (writer ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY) |
		    SQLITE_OPEN_NOMUTEX;
	struct sq_conn *c = calloc(1, sizeof(*c));
	sqlite3_stmt *st = NULL;
	char pragma[64];
	int rc;

	if (!c) {
		dc_error("%s: out of memory", path);
		return -ENOMEM;
	}
#ifdef SQLITE_OPEN_EXRESCODE
	flags |= SQLITE_OPEN_EXRESCODE;
#endif
	rc = sqlite3_open_v2(path, &c->db, flags, NULL);
	if (rc != SQLITE_OK) {
		dc_error("%s: cannot open %s: %s", path,
			 writer ? "read-write" : "read-only",
			 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_busy_timeout(c->db, SQ_BUSY_MS);
	snprintf(pragma, sizeof(pragma), "PRAGMA cache_size=-%d",
		 writer ? SQ_WRITER_CACHE_KIB : SQ_READER_CACHE_KIB);
	if (sq_exec(c->db, pragma) != SQLITE_OK) {
		dc_error("%s: %s", path, sqlite3_errmsg(c->db));
		goto fail;
	}
	if (writer) {
		/* journal_mode returns the mode in force, which must be WAL. */
		rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
		if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
		    !sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal"))
			rc = SQLITE_OK;
		else
			rc = rc == SQLITE_OK ? SQLITE_ERROR : rc;
		sqlite3_finalize(st);
		if (rc != SQLITE_OK) {
			dc_error("%s: cannot switch to WAL journal mode: %s", path,
				 sqlite3_errmsg(c->db));
			goto fail;
		}
		if (sq_exec(c->db, "PRAGMA synchronous=NORMAL") != SQLITE_OK) {
			dc_error("%s: %s", path, sqlite3_errmsg(c->db));
			goto fail;
		}
	}
	for (int i = 0; i < (writer ? SQ_NSTMT : SQ_NREADER); i++) {
		rc = sqlite3_prepare_v3(c->db, sq_stmt_sql[i], -1,
					SQLITE_PREPARE_PERSISTENT, &c->st[i], NULL);
		if (rc != SQLITE_OK) {
			dc_error(
				"%s: not a sqlite disk layer (expected OpenVMM's schema with "
				"a 'sectors' table): %s",
				path, sqlite3_errmsg(c->db));
			goto fail;
		}
	}
	*out = c;
	return 0;
fail:
	sq_conn_close(c);
	return -EIO;
}

/* Run one statement to completion. */
int sq_step(struct sq_conn *c, int idx)
{
	int rc = sqlite3_step(c->st[idx]);

	sqlite3_reset(c->st[idx]);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* End a reader's read transaction, releasing its snapshot. */
void sq_reader_end(struct sq_conn *c)
{
	if (c->in_txn)
		sq_step(c, SQ_COMMIT);
	c->in_txn = false;
}

/* An idle reader connection, or a new one. I/O path: no dc_error(). */
struct sq_conn *sq_reader_get(struct sq_layer *l)
{
	struct sq_conn *c;

	pthread_mutex_lock(&l->rlock);
	c = l->idle;
	if (c)
		l->idle = c->next_idle;
	pthread_mutex_unlock(&l->rlock);
	if (c)
		return c;
	if (sq_conn_open(l->path, false, &c) < 0) {
		dc_debug("sqlite: %s: reader connection failed", l->path);
		return NULL;
	}
	pthread_mutex_lock(&l->rlock);
	c->next_all = l->all;
	l->all = c;
	l->nreaders++;
	pthread_mutex_unlock(&l->rlock);
	return c;
}

uint64_t sq_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Drop a reference to the handle (the layer's, at close). */
void sq_handle_put(struct sq_handle *h, bool closing)
{
	bool last;

	pthread_mutex_lock(&h->lock);
	if (closing)
		h->l = NULL;
	last = --h->refs == 0;
	pthread_mutex_unlock(&h->lock);
	if (last) {
		pthread_mutex_destroy(&h->lock);
		free(h);
	}
}

/* Release the snapshots of idle readers that are out of date, so they do not
 * hold back checkpoints. */
void sq_readers_release(struct sq_layer *l)
{
	uint64_t gen = atomic_load(&l->gen);

	pthread_mutex_lock(&l->rlock);
	for (struct sq_conn *c = l->idle; c; c = c->next_idle)
		if (c->in_txn && c->txn_gen != gen)
			sq_reader_end(c);
	pthread_mutex_unlock(&l->rlock);
}

/* End the snapshots of all idle readers; no release timer is armed after. */
static void sq_readers_end_idle(struct sq_layer *l)
{
	pthread_mutex_lock(&l->rlock);
	l->timer_pending = false;
	for (struct sq_conn *c = l->idle; c; c = c->next_idle)
		sq_reader_end(c);
	pthread_mutex_unlock(&l->rlock);
}

/* The release timer: ends the snapshots of idle readers. It holds a reference
 * to the handle, not to the layer, so closing never waits for it. */
static void sq_release_timer(void *arg)
{
	struct sq_handle *h = arg;

	pthread_mutex_lock(&h->lock);
	if (h->l)
		sq_readers_end_idle(h->l);
	pthread_mutex_unlock(&h->lock);
	sq_handle_put(h, false);
}

/* An idle reader keeps its snapshot for the next read, but not for long: a
 * timer releases idle snapshots SQ_SNAPSHOT_NS after one is kept, so a quiet
 * disk holds back no checkpoint, ours or another process's. */
void sq_reader_put(struct sq_layer *l, struct sq_conn *c)
{
	bool arm;

	pthread_mutex_lock(&l->rlock);
	c->next_idle = l->idle;
	l->idle = c;
	arm = c->in_txn && !l->timer_pending;
	if (arm)
		l->timer_pending = true;
	pthread_mutex_unlock(&l->rlock);
	if (!arm)
		return;
	pthread_mutex_lock(&l->handle->lock);
	l->handle->refs++;
	pthread_mutex_unlock(&l->handle->lock);
	if (dc_timer_after(SQ_SNAPSHOT_NS, sq_release_timer, l->handle) < 0) {
		/* No timer: keep no snapshots. */
		sq_readers_end_idle(l);
		sq_handle_put(l->handle, false);
	}
}

/* --- Helpers of both I/O paths ------------------------------------------------- */

/* A SQLite failure on the I/O path, as a result. */
int sq_io_error(struct sq_layer *l, sqlite3 *db, int rc)
{
	dc_debug("sqlite: %s: %s", l->path, sqlite3_errmsg(db));
	switch (rc & 0xff) {
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_READONLY:
		return DC_E_READ_ONLY;
	default:
		return DC_E_IO;
	}
}

bool sq_is_zero(const uint8_t *p, size_t n)
{
	/* Sectors are 8-byte multiples; most data fails on the first word. */
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v;

		memcpy(&v, p + i, 8);
		if (v)
			return false;
	}
	return true;
}

/* Advance a buffer view by `len` bytes. */
void sq_buf_advance(struct dc_buf *b, size_t len)
{
	*b = dc_buf_sub(b, len, b->len - len);
}

/* The next sector of a view: in place when contiguous, else copied to tmp. */
const uint8_t *sq_buf_sector(const struct dc_buf *b, size_t ss, uint8_t *tmp)
{
	if (b->iovcnt > 0 && b->iov[0].iov_len - b->skip >= ss)
		return (const uint8_t *)b->iov[0].iov_base + b->skip;
	dc_buf_copy_from(b, 0, tmp, ss);
	return tmp;
}
