/* SPDX-License-Identifier: MIT */
/* blob: read-ahead. A few windows of `readahead` bytes, aligned to their size,
 * each filled by one ranged GET when reads run sequentially; reads inside a
 * window are served from it, or wait for it while it loads (blob.h lists the
 * files). */
#include "blob.h"

#include <stdlib.h>
#include <string.h>

/* Copy a waiting or hitting request's bytes out of a ready window. */
static void blob_ra_copy(const struct blob_ra_win *w, struct dc_req *req)
{
	uint64_t off = req->sector * BLOB_SECTOR;

	dc_buf_copy_to(&req->buf, 0, w->data + (off - w->off), req->buf.len);
}

/* A window load finished (I/O thread): serve or fail its waiters. */
static void blob_ra_loaded(struct blob_disk *b, struct blob_xfer *x, int result)
{
	struct blob_ra_win *w =
		(struct blob_ra_win *)((char *)x - offsetof(struct blob_ra_win, x));
	struct blob_rctx *list, *next;

	pthread_mutex_lock(&b->ra_lock);
	list = w->waiters;
	w->waiters = NULL;
	w->state = result ? BLOB_RA_EMPTY : BLOB_RA_READY;
	if (result) {
		atomic_fetch_add(&b->nerr, 1);
	} else {
		atomic_fetch_add(&b->nbytes, x->len);
		for (struct blob_rctx *rc = list; rc; rc = rc->ra_next)
			blob_ra_copy(w, rc->req);
	}
	pthread_mutex_unlock(&b->ra_lock);
	for (struct blob_rctx *rc = list; rc; rc = next) {
		next = rc->ra_next;
		dc_complete_detail(rc->req, result ? DC_E_IO : 0, result ? -result : 0);
	}
}

static struct blob_ra_win *blob_ra_find(struct blob_disk *b, uint64_t woff)
{
	for (unsigned i = 0; i < BLOB_RA_WINDOWS; i++)
		if (b->win[i].state != BLOB_RA_EMPTY && b->win[i].off == woff)
			return &b->win[i];
	return NULL;
}

/* Start loading the window at woff into the least recently used idle slot;
 * NULL when every slot is busy loading. Called with ra_lock held; the caller
 * enqueues *load after unlocking. */
static struct blob_ra_win *blob_ra_start(struct blob_disk *b, uint64_t woff,
					 struct blob_xfer **load)
{
	struct blob_ra_win *w = NULL;

	for (unsigned i = 0; i < BLOB_RA_WINDOWS; i++) {
		struct blob_ra_win *c = &b->win[i];

		if (c->state != BLOB_RA_LOADING && (!w || c->used < w->used))
			w = c;
	}
	if (!w)
		return NULL;
	if (!w->data && !(w->data = malloc(b->ra)))
		return NULL;
	w->state = BLOB_RA_LOADING;
	w->off = woff;
	w->len = b->disk_size - woff < b->ra ? b->disk_size - woff : b->ra;
	w->used = ++b->ra_clock;
	w->waiters = NULL;
	w->iov.iov_base = w->data;
	w->iov.iov_len = (size_t)w->len;
	memset(&w->x, 0, sizeof(w->x));
	w->x.b = b;
	w->x.loaded = blob_ra_loaded;
	w->x.off = woff;
	w->x.len = w->len;
	w->x.buf.iov = &w->iov;
	w->x.buf.iovcnt = 1;
	w->x.buf.len = (size_t)w->len;
	*load = &w->x;
	return w;
}

/* Serve a small read from the read-ahead windows, or start windows when reads
 * run sequentially. Returns false to leave the read to the normal path. */
bool blob_ra_read(struct blob_disk *b, struct dc_req *req, uint64_t off, uint64_t len)
{
	struct blob_rctx *rc = req->ctx;
	uint64_t woff = off / b->ra * b->ra, nwoff = woff + b->ra;
	struct blob_xfer *loads[2] = { 0 };
	struct blob_ra_win *w;
	bool seq, hit = false, taken = false;

	if (off + len > nwoff)
		return false; /* straddles two windows: one normal request */
	pthread_mutex_lock(&b->ra_lock);
	seq = off == b->ra_next;
	b->ra_next = off + len;
	w = blob_ra_find(b, woff);
	if (!w && seq)
		w = blob_ra_start(b, woff, &loads[0]);
	if (w) {
		w->used = ++b->ra_clock;
		if (w->state == BLOB_RA_READY) {
			blob_ra_copy(w, req);
			hit = true;
		} else {
			rc->req = req;
			rc->ra_next = w->waiters;
			w->waiters = rc;
		}
		taken = true;
		/* Keep one window ahead of a sequential reader. */
		if (seq && nwoff < b->disk_size && !blob_ra_find(b, nwoff))
			blob_ra_start(b, nwoff, &loads[1]);
	}
	pthread_mutex_unlock(&b->ra_lock);
	for (int i = 0; i < 2; i++)
		if (loads[i]) {
			loads[i]->next = NULL;
			blob_enqueue(b, loads[i], &loads[i]->next);
		}
	if (hit) {
		atomic_fetch_add(&b->nra_hits, 1);
		dc_complete(req, 0);
	}
	return taken;
}

void blob_ra_free(struct blob_disk *b)
{
	for (unsigned i = 0; i < BLOB_RA_WINDOWS; i++)
		free(b->win[i].data);
}
