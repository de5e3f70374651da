/* SPDX-License-Identifier: MIT */
/* sqlite: resize() (dc_resize()): the meta row's sector_count changes in one
 * durable transaction on the writer connection, which a shrink also uses to
 * drop the rows at or past the new end. The writer queue is held while it
 * runs, so no batch shares the connection. */
#include "sqlite.h"

#include <errno.h>

/* Take the writer connection: wait for the writer job to finish, and keep
 * new write-type requests queued until sq_writer_release(). */
static void sq_writer_hold(struct sq_layer *l)
{
	pthread_mutex_lock(&l->qlock);
	while (l->qactive)
		pthread_cond_wait(&l->qidle, &l->qlock);
	l->qactive = true;
	pthread_mutex_unlock(&l->qlock);
}

/* Give it back, starting a writer job for what queued meanwhile. */
static void sq_writer_release(struct sq_layer *l)
{
	bool start;

	pthread_mutex_lock(&l->qlock);
	start = l->qhead != NULL;
	if (!start) {
		l->qactive = false;
		pthread_cond_broadcast(&l->qidle);
	}
	pthread_mutex_unlock(&l->qlock);
	if (start && dc_pool_run(sq_writer_job, l) < 0)
		sq_writer_job(l);
}

/* The SQL of a resize to n sectors, in one synced transaction. */
static int sq_resize_sql(struct sq_layer *l, uint64_t n)
{
	struct sq_conn *w = l->writer;
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sq_step(w, SQ_SYNC_FULL);
	if (rc == SQLITE_OK)
		rc = sq_step(w, SQ_BEGIN);
	if (rc == SQLITE_OK && n < l->count) {
		st = w->st[SQ_DELETE];
		sqlite3_bind_int64(st, 1, (sqlite3_int64)n);
		sqlite3_bind_int64(st, 2, INT64_MAX);
		rc = sq_step(w, SQ_DELETE);
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(w->db,
					"UPDATE meta SET metadata = "
					"json_set(metadata, '$.sector_count', ?1)",
					-1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, (sqlite3_int64)n);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(w->db);
		sqlite3_finalize(st);
	}
	if (rc == SQLITE_OK)
		rc = sq_step(w, SQ_COMMIT);
	if (rc != SQLITE_OK) {
		dc_error("%s: cannot resize to %llu sectors: %s", l->path,
			 (unsigned long long)n, sqlite3_errmsg(w->db));
		if (!sqlite3_get_autocommit(w->db))
			sq_step(w, SQ_ROLLBACK);
	}
	sq_step(w, SQ_SYNC_NORMAL);
	return rc == SQLITE_OK ? 0 : -EIO;
}

int sq_resize(void *inst, uint64_t n)
{
	struct sq_layer *l = inst;
	int ret;

	if (!l->writer)
		return dc_fail(-EROFS, "%s: opened read-only", l->path);
	if (l->logical_ro)
		return dc_fail(-EROFS,
			       "%s: a read cache has the size of the disk below it",
			       l->path);
	if (!sq_size_ok(n, l->ss))
		return dc_fail(-EINVAL,
			       "%s: %llu sectors of %u bytes is not a valid size",
			       l->path, (unsigned long long)n, l->ss);
	sq_writer_hold(l);
	ret = sq_resize_sql(l, n);
	if (ret == 0) {
		l->count = n;
		l->dirty = false;
		atomic_fetch_add(&l->gen, 1);
	}
	sq_writer_release(l);
	return ret;
}

uint64_t sq_sector_count(void *inst)
{
	struct sq_layer *l = inst;

	return l->count;
}
