/* SPDX-License-Identifier: MIT */
/* sqlite: the read path (reader connections on the worker pool), the
 * checks every request passes, and submit(). */
#include "sqlite.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* --- I/O ----------------------------------------------------------------------- */

static bool sq_range_ok(const struct sq_layer *l, uint64_t sector, uint64_t count)
{
	return sector <= l->count && count <= l->count - sector;
}

/* A reader keeps its read transaction across requests while the writer has
 * committed nothing since it began: the snapshot is still the newest, and each
 * read saves the locking (and file size check) of starting a transaction. A
 * read submitted after a write completed always sees it: the writer counts the
 * commit before completing the write. */
static void sq_reader_begin(struct sq_layer *l, struct sq_conn *c)
{
	uint64_t gen = atomic_load(&l->gen), now = sq_now_ns();

	if (c->in_txn && c->txn_gen == gen && now - c->txn_time < SQ_SNAPSHOT_NS)
		return;
	sq_reader_end(c);
	if (sq_step(c, SQ_BEGIN_READ) == SQLITE_OK) {
		c->in_txn = true;
		c->txn_gen = gen;
		c->txn_time = now;
	}
}

static int sq_read(struct sq_layer *l, struct dc_req *req)
{
	uint64_t n = req->buf.len / l->ss, next = req->sector, run = req->sector;
	struct dc_buf rest = req->buf;
	struct sq_conn *c;
	sqlite3_stmt *st;
	int rc, ret = 0;

	if (req->buf.len % l->ss)
		return DC_E_INVALID_INPUT;
	if (!sq_range_ok(l, req->sector, n))
		return DC_E_ILLEGAL_BLOCK;
	if (n == 0)
		return 0;
	c = sq_reader_get(l);
	if (!c)
		return DC_E_IO;
	sq_reader_begin(l, c);
	st = c->st[SQ_READ];
	sqlite3_bind_int64(st, 1, (sqlite3_int64)req->sector);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)(req->sector + n));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t s = (uint64_t)sqlite3_column_int64(st, 0);
		int type = sqlite3_column_type(st, 1);

		if (s < next || s >= req->sector + n) {
			ret = DC_E_IO;
			break;
		}
		/* Rows come in order: close the marked run at a gap. */
		if (s != next) {
			if (req->marker && next > run)
				dc_marker_set(req->marker, run, next - run);
			else if (!req->marker)
				dc_buf_zero(&rest, 0, (s - next) * l->ss);
			run = s;
			sq_buf_advance(&rest, (s - next) * l->ss);
		}
		if (type == SQLITE_NULL) {
			dc_buf_zero(&rest, 0, l->ss);
		} else if (type == SQLITE_BLOB &&
			   sqlite3_column_bytes(st, 1) == (int)l->ss) {
			dc_buf_copy_to(&rest, 0, sqlite3_column_blob(st, 1), l->ss);
		} else {
			dc_debug("sqlite: %s: sector %llu holds %d bytes, expected %u",
				 l->path, (unsigned long long)s,
				 sqlite3_column_bytes(st, 1), l->ss);
			ret = DC_E_IO;
			break;
		}
		next = s + 1;
		if (next < req->sector + n)
			sq_buf_advance(&rest, l->ss);
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		ret = sq_io_error(l, c->db, rc);
	sqlite3_reset(st);
	if (ret)
		sq_reader_end(c);
	sq_reader_put(l, c);
	if (ret == 0) {
		if (req->marker && next > run)
			dc_marker_set(req->marker, run, next - run);
		else if (!req->marker && next < req->sector + n)
			dc_buf_zero(&rest, 0, (req->sector + n - next) * l->ss);
	}
	return ret;
}

/* Allocation (ABI 1.1): rows are what the layer holds, data or, for a NULL
 * row, zeroes; sectors without a row are ABSENT (they read from below; the
 * core makes them a hole at the bottom). On a reader, beside the I/O. */
int sq_extents(void *inst, struct dc_node *node, uint64_t sector, uint64_t count,
	       uint64_t *run)
{
	struct sq_layer *l = inst;
	uint64_t next = sector;
	struct sq_conn *c;
	sqlite3_stmt *st;
	int rc, zero = -1, ret;

	(void)node;
	c = sq_reader_get(l);
	if (!c)
		return dc_fail(-EIO, "%s: no reader connection", l->path);
	sq_reader_begin(l, c);
	st = c->st[SQ_MAP];
	sqlite3_bind_int64(st, 1, (sqlite3_int64)sector);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)(sector + count));
	/* Rows come in order: the run ends at the first gap or change. */
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t s = (uint64_t)sqlite3_column_int64(st, 0);
		int z = sqlite3_column_int(st, 1);

		if (s != next || (zero >= 0 && z != zero))
			break;
		zero = z;
		next = s + 1;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		ret = dc_fail(-EIO, "%s: %s", l->path, sqlite3_errmsg(c->db));
	} else if (zero < 0) {
		/* No row at sector: absent up to the next row, if any. */
		*run = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) - sector :
					  count;
		ret = DC_EXTENT_ABSENT;
	} else {
		*run = next - sector;
		ret = zero ? DC_EXTENT_ZERO : 0;
	}
	sqlite3_reset(st);
	if (ret < 0)
		sq_reader_end(c);
	sq_reader_put(l, c);
	return ret;
}

static void sq_read_job(void *arg)
{
	struct dc_req *req = arg;
	struct sq_rctx *rc = req->ctx;

	/* The last thing the job does: the disk may be closed after it. */
	dc_complete(req, sq_read(rc->l, req));
}

/* Refuse what needs no SQL; returns 1 for a request the writer must run. */
static int sq_check(struct sq_layer *l, struct dc_req *req)
{
	uint64_t n = req->count;

	switch (req->op) {
	case DC_OP_WRITE:
		if (req->buf.len % l->ss)
			return DC_E_INVALID_INPUT;
		n = req->buf.len / l->ss;
		if (!sq_range_ok(l, req->sector, n))
			return DC_E_ILLEGAL_BLOCK;
		/* A read cache is read-only except for population. */
		if (!l->writer || (l->logical_ro && !(req->flags & DC_IO_NO_OVERWRITE)))
			return DC_E_READ_ONLY;
		return n ? 1 : 0;
	case DC_OP_UNMAP:
		if (!sq_range_ok(l, req->sector, n))
			return DC_E_ILLEGAL_BLOCK;
		if (!l->writer || l->logical_ro)
			return DC_E_READ_ONLY;
		/* An empty range never reaches SQL (OpenVMM's count == 0 underflow). */
		return n ? 1 : 0;
	case DC_OP_FLUSH:
		return l->writer ? 1 : 0;
	default:
		return DC_E_UNSUPPORTED;
	}
}

void sq_submit(void *inst, struct dc_req *req)
{
	struct sq_layer *l = inst;
	struct sq_rctx *rc = req->ctx;
	bool start;
	int r;

	rc->l = l;
	rc->next = NULL;
	if (req->op == DC_OP_READ) {
		if (dc_pool_run(sq_read_job, req) < 0)
			dc_complete_detail(req, DC_E_IO, ENOMEM);
		return;
	}
	r = sq_check(l, req);
	if (r <= 0) {
		dc_complete(req, r);
		return;
	}
	pthread_mutex_lock(&l->qlock);
	if (l->qhead)
		((struct sq_rctx *)l->qtail->ctx)->next = req;
	else
		l->qhead = req;
	l->qtail = req;
	start = !l->qactive;
	l->qactive = true;
	pthread_mutex_unlock(&l->qlock);
	if (start && dc_pool_run(sq_writer_job, l) < 0) {
		/* No worker: run the queue here rather than strand it. */
		sq_writer_job(l);
	}
}
