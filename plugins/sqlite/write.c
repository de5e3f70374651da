/* SPDX-License-Identifier: MIT */
/* sqlite: the write path: one writer job drains the queue of
 * write-type requests in group commits; checkpoints run beside it. */
#include "sqlite.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int sq_put_sectors(struct sq_layer *l, struct dc_req *req, sqlite3_stmt *st)
{
	uint64_t n = req->buf.len / l->ss;
	struct dc_buf rest = req->buf;
	uint8_t small[4096], *tmp = small;
	int rc = SQLITE_OK;

	if (l->ss > sizeof(small) && !(tmp = malloc(l->ss)))
		return SQLITE_NOMEM;
	for (uint64_t i = 0; i < n; i++) {
		const uint8_t *p = sq_buf_sector(&rest, l->ss, tmp);

		sqlite3_bind_int64(st, 1, (sqlite3_int64)(req->sector + i));
		if (sq_is_zero(p, l->ss))
			sqlite3_bind_null(st, 2);
		else
			sqlite3_bind_blob(st, 2, p, (int)l->ss, SQLITE_STATIC);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			break;
		rc = SQLITE_OK;
		if (i + 1 < n)
			sq_buf_advance(&rest, l->ss);
	}
	sqlite3_clear_bindings(st);
	if (tmp != small)
		free(tmp);
	return rc;
}

/* The SQL of one write-type request, inside the writer's open transaction. */
static int sq_apply(struct sq_layer *l, struct sq_conn *w, struct dc_req *req)
{
	uint64_t n = req->op == DC_OP_WRITE ? req->buf.len / l->ss : req->count;
	uint64_t count = l->count;
	sqlite3_stmt *st;
	int rc;

	/* A shrink (resize.c) may have come between submit()'s checks and now. */
	if (req->op != DC_OP_FLUSH && (req->sector > count || n > count - req->sector))
		return SQLITE_RANGE;
	switch (req->op) {
	case DC_OP_WRITE:
		st = w->st[req->flags & DC_IO_NO_OVERWRITE ? SQ_PUT_NEW : SQ_PUT];
		return sq_put_sectors(l, req, st);
	case DC_OP_UNMAP:
		/* Below reads as zero: forget the sectors; else store zero sectors. */
		st = w->st[req->flags & DC_IO_NEXT_IS_ZERO ? SQ_DELETE : SQ_ZERO];
		sqlite3_bind_int64(st, 1, (sqlite3_int64)req->sector);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)(req->sector + req->count));
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		return rc == SQLITE_DONE ? SQLITE_OK : rc;
	default:
		return SQLITE_OK; /* flush: the commit does the work */
	}
}

/* Requests that must be durable when they complete. */
static bool sq_needs_sync(const struct dc_req *req)
{
	return req->op == DC_OP_FLUSH ||
	       (req->op == DC_OP_WRITE && (req->flags & DC_IO_FUA));
}

/* Run reqs[0..n) in one transaction and complete them. Anything synced commits
 * with synchronous=FULL, which fsyncs the WAL and so every earlier commit. If
 * a request fails, the batch is rolled back and each runs on its own, so one
 * request's error never becomes another's. */
static void sq_commit_batch(struct sq_layer *l, struct dc_req **reqs, unsigned n)
{
	struct sq_conn *w = l->writer;
	bool sync = false, changes = false;
	int rc, result;

	for (unsigned i = 0; i < n; i++) {
		sync |= sq_needs_sync(reqs[i]);
		changes |= reqs[i]->op != DC_OP_FLUSH;
	}
	if (!changes && !l->dirty) {
		/* Only flushes, and nothing committed since the last sync. */
		for (unsigned i = 0; i < n; i++)
			dc_complete(reqs[i], 0);
		return;
	}
	rc = sync ? sq_step(w, SQ_SYNC_FULL) : SQLITE_OK;
	if (rc == SQLITE_OK)
		rc = sq_step(w, SQ_BEGIN);
	for (unsigned i = 0; rc == SQLITE_OK && i < n; i++)
		rc = sq_apply(l, w, reqs[i]);
	/* A commit that changes nothing syncs nothing: dirty the header page. */
	if (rc == SQLITE_OK && !changes)
		rc = sq_step(w, SQ_TOUCH);
	if (rc == SQLITE_OK)
		rc = sq_step(w, SQ_COMMIT);
	if (rc != SQLITE_OK && !sqlite3_get_autocommit(w->db))
		sq_step(w, SQ_ROLLBACK);
	result = rc == SQLITE_OK ? 0 : sq_io_error(l, w->db, rc);
	if (sync && sq_step(w, SQ_SYNC_NORMAL) != SQLITE_OK && result == 0)
		result = sq_io_error(l, w->db, SQLITE_ERROR);
	if (result == 0) {
		l->dirty = !sync;
		atomic_fetch_add(&l->gen, 1);
	}
	if (result != 0 && n > 1) {
		for (unsigned i = 0; i < n; i++)
			sq_commit_batch(l, &reqs[i], 1);
		return;
	}
	for (unsigned i = 0; i < n; i++)
		dc_complete(reqs[i], result);
}

/* Copy the WAL back into the database while the writer goes on writing
 * (a passive checkpoint blocks neither writers nor readers). */
static void sq_ckpt_job(void *arg)
{
	struct sq_layer *l = arg;

	sq_readers_release(l);
	if (!l->ckpt && sq_conn_open(l->path, true, &l->ckpt) < 0)
		dc_debug("sqlite: %s: checkpoint connection failed", l->path);
	if (l->ckpt) {
		sqlite3_wal_autocheckpoint(l->ckpt->db, 0);
		if (sqlite3_wal_checkpoint_v2(l->ckpt->db, NULL,
					      SQLITE_CHECKPOINT_PASSIVE, NULL,
					      NULL) != SQLITE_OK)
			dc_debug("sqlite: %s: checkpoint: %s", l->path,
				 sqlite3_errmsg(l->ckpt->db));
	}
	pthread_mutex_lock(&l->qlock);
	l->ckactive = false;
	pthread_cond_broadcast(&l->qidle);
	pthread_mutex_unlock(&l->qlock);
}

/* After each commit of the writer (replaces SQLite's auto-checkpoint). */
int sq_wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
	struct sq_layer *l = arg;
	bool start;

	if (frames < SQ_CKPT_FRAMES)
		return SQLITE_OK;
	if (frames >= SQ_CKPT_FORCE) {
		sq_readers_release(l);
		sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL,
					  NULL);
		return SQLITE_OK;
	}
	pthread_mutex_lock(&l->qlock);
	start = !l->ckactive;
	l->ckactive = true;
	pthread_mutex_unlock(&l->qlock);
	if (start)
		dc_debug("sqlite: %s: checkpointing %d WAL frames", l->path, frames);
	if (start && dc_pool_run(sq_ckpt_job, l) < 0) {
		pthread_mutex_lock(&l->qlock);
		l->ckactive = false;
		pthread_cond_broadcast(&l->qidle);
		pthread_mutex_unlock(&l->qlock);
	}
	return SQLITE_OK;
}

/* The writer: one pool job at a time drains the queue, a batch per
 * transaction, so concurrent writes share commits. */
void sq_writer_job(void *arg)
{
	struct sq_layer *l = arg;
	struct dc_req *batch[SQ_BATCH_MAX];

	pthread_mutex_lock(&l->qlock);
	while (l->qhead) {
		unsigned n = 0;

		while (l->qhead && n < SQ_BATCH_MAX) {
			struct sq_rctx *rc = l->qhead->ctx;

			batch[n++] = l->qhead;
			l->qhead = rc->next;
		}
		pthread_mutex_unlock(&l->qlock);
		sq_commit_batch(l, batch, n);
		pthread_mutex_lock(&l->qlock);
	}
	l->qactive = false;
	pthread_cond_broadcast(&l->qidle);
	pthread_mutex_unlock(&l->qlock);
}
