/* SPDX-License-Identifier: MIT */
/* The XTS data path of the crypt and luks plugins (see xts.h). */
#include "xts.h"

#include <endian.h>
#include <linux/futex.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define XTS_STAGE_ALIGN 4096
/* Pause loops a writer waits for its other pieces before sleeping (~0.1 ms). */
#define XTS_SPIN 20000

/* One EVP context keyed for one direction, with what a request needs beside it. */
struct xts_unit {
	struct xts_unit *next;	   /* free list */
	struct xts_unit *all_next; /* every unit of the pool, for queue_close */
	EVP_CIPHER_CTX *ctx;
	uint8_t *bounce; /* a data unit that straddles iovec segments */
	uint8_t *stage;	 /* write units: the ciphertext going down */
	size_t stage_cap;
	struct iovec iov;
};

struct xts_pool {
	struct xts_unit *local;		   /* the submitting thread's */
	_Atomic(struct xts_unit *) remote; /* given back by completing threads */
	struct xts_unit *all;
	int enc;
};

struct xts_queue {
	struct xts_pool rd, wr;
};

void xts_defaults(struct xts_disk *d)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	d->threads = ncpu < 1		   ? 1 :
		     ncpu > XTS_MAX_PIECES ? XTS_MAX_PIECES :
					     (unsigned)ncpu;
	d->split = XTS_SPLIT_DEFAULT;
}

/* --- Cipher units ---------------------------------------------------------- */

static void xts_unit_free(struct xts_unit *u)
{
	EVP_CIPHER_CTX_free(u->ctx); /* OpenSSL wipes the key schedule */
	free(u->bounce);
	free(u->stage);
	free(u);
}

static struct xts_unit *xts_unit_new(const struct xts_disk *d, struct xts_pool *pool)
{
	struct xts_unit *u = calloc(1, sizeof(*u));

	if (!u)
		return NULL;
	u->ctx = EVP_CIPHER_CTX_new();
	u->bounce = malloc(d->sector_size >> d->unit_shift);
	if (!u->ctx || !u->bounce ||
	    !EVP_CipherInit_ex2(u->ctx, d->cipher, d->key, NULL, pool->enc, NULL)) {
		xts_unit_free(u);
		return NULL;
	}
	u->all_next = pool->all;
	pool->all = u;
	return u;
}

/* Submitting thread only: n units, the first with a stage of stage_len bytes. */
static int xts_take(const struct xts_disk *d, struct xts_pool *pool,
		    struct xts_unit **out, unsigned n, size_t stage_len)
{
	struct xts_unit *u;
	unsigned i;
	void *p;

	for (i = 0; i < n; i++) {
		/* Only this thread pops and it takes the whole list: no ABA. */
		if (!pool->local)
			pool->local = atomic_exchange_explicit(&pool->remote, NULL,
							       memory_order_acquire);
		u = pool->local;
		if (u)
			pool->local = u->next;
		else
			u = xts_unit_new(d, pool);
		if (!u)
			goto fail;
		out[i] = u;
	}
	u = out[0];
	if (stage_len > u->stage_cap) {
		size_t cap = (stage_len + XTS_STAGE_ALIGN - 1) &
			     ~(size_t)(XTS_STAGE_ALIGN - 1);

		if (posix_memalign(&p, XTS_STAGE_ALIGN, cap))
			goto fail;
		free(u->stage);
		u->stage = p;
		u->stage_cap = cap;
	}
	return 0;
fail:
	while (i-- > 0) {
		out[i]->next = pool->local;
		pool->local = out[i];
	}
	return -ENOMEM;
}

/* Any thread: give a request's units back to its queue's pool. */
static void xts_give(struct xts_ctx *c)
{
	struct xts_pool *pool = c->pool;
	struct xts_unit *first = c->unit[0], *last = first, *head;

	for (unsigned i = 1; i < c->npieces; i++) {
		last->next = c->unit[i];
		last = c->unit[i];
	}
	head = atomic_load_explicit(&pool->remote, memory_order_relaxed);
	do {
		last->next = head;
	} while (!atomic_compare_exchange_weak_explicit(
		&pool->remote, &head, first, memory_order_release, memory_order_relaxed));
}

static void xts_pool_free(struct xts_pool *pool)
{
	struct xts_unit *u, *next;

	for (u = pool->all; u; u = next) {
		next = u->all_next;
		xts_unit_free(u);
	}
	pool->all = pool->local = NULL;
	atomic_store(&pool->remote, NULL);
}

/* --- Data units ------------------------------------------------------------ */

static int xts_one(EVP_CIPHER_CTX *ctx, uint64_t unit, uint8_t *out, const uint8_t *in,
		   int len)
{
	uint64_t iv[2] = { htole64(unit), 0 }; /* 16 bytes, little-endian */
	int outl;

	if (!EVP_CipherInit_ex2(ctx, NULL, NULL, (const uint8_t *)iv, -1, NULL) ||
	    !EVP_CipherUpdate(ctx, out, &outl, in, len) || outl != len)
		return -EIO;
	return 0;
}

int xts_crypt_buf(const EVP_CIPHER *cipher, const uint8_t *key, int enc,
		  uint64_t first_unit, uint32_t unit_size, uint8_t *out,
		  const uint8_t *in, size_t len)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int rc = 0;

	if (!ctx || len % unit_size ||
	    !EVP_CipherInit_ex2(ctx, cipher, key, NULL, enc, NULL))
		rc = -EIO;
	for (size_t off = 0; !rc && off < len; off += unit_size)
		rc = xts_one(ctx, first_unit + off / unit_size, out + off, in + off,
			     (int)unit_size);
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}

/* Sectors [first, first + n) of req: a read is decrypted in the caller's
 * buffers, a write is encrypted from them into stage (at the same offset). */
static int xts_run(const struct xts_disk *d, struct xts_unit *u, struct dc_req *req,
		   uint64_t first, uint64_t n, uint8_t *stage)
{
	uint32_t ss = d->sector_size, us = ss >> d->unit_shift;
	struct dc_buf b = dc_buf_sub(&req->buf, first * ss, n * ss);
	const struct iovec *iov = b.iov;
	uint64_t unit0 = (req->sector + first) << d->unit_shift;
	uint64_t units = n << d->unit_shift;
	int left = b.iovcnt;
	size_t off = b.skip;

	if (stage)
		stage += first * ss;
	for (uint64_t k = 0; k < units; k++) {
		uint8_t *out = stage ? stage + k * us : NULL;
		uint8_t *p;
		int rc;

		while (left > 0 && off >= iov->iov_len) {
			off -= iov->iov_len;
			iov++;
			left--;
		}
		if (left == 0)
			return -EIO;
		p = (uint8_t *)iov->iov_base + off;
		if (iov->iov_len - off >= us) {
			rc = xts_one(u->ctx, unit0 + k, out ? out : p, p, (int)us);
		} else {
			/* The unit spans segments: work on a copy. */
			dc_buf_copy_from(&b, k * us, u->bounce, us);
			rc = xts_one(u->ctx, unit0 + k, out ? out : u->bounce, u->bounce,
				     (int)us);
			if (!rc && !out)
				dc_buf_copy_to(&b, k * us, u->bounce, us);
		}
		if (rc)
			return rc;
		off += us;
	}
	return 0;
}

/* --- Pieces ---------------------------------------------------------------- */

static void xts_finish_read(struct dc_req *req)
{
	struct xts_ctx *c = req->ctx;
	bool failed = atomic_load_explicit(&c->failed, memory_order_relaxed);

	xts_give(c);
	if (failed)
		dc_complete_detail(req, DC_E_IO, EIO);
	else
		dc_complete(req, 0);
}

static void xts_piece_run(struct xts_piece *pc)
{
	struct dc_req *req = pc->req;
	struct xts_ctx *c = req->ctx;
	uint64_t first = pc->idx * c->per_piece;
	uint64_t n = pc->idx + 1 == c->npieces ? req->count - first : c->per_piece;
	uint8_t *stage = req->op == DC_OP_WRITE ? c->unit[0]->stage : NULL;

	if (xts_run(c->d, c->unit[pc->idx], req, first, n, stage))
		atomic_store_explicit(&c->failed, 1, memory_order_relaxed);
	if (atomic_fetch_sub_explicit(&c->pending, 1, memory_order_acq_rel) != 1)
		return;
	if (req->op == DC_OP_READ) {
		xts_finish_read(req);
	} else {
		atomic_store_explicit(&c->wdone, 1, memory_order_release);
		syscall(SYS_futex, &c->wdone, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	}
}

static void xts_piece_job(void *arg)
{
	xts_piece_run(arg);
}

/* Run every piece: 1..n-1 on the pool, 0 here. A read finishes in whichever
 * piece ends last; a write returns once all have ended. */
static void xts_pieces(struct dc_req *req)
{
	struct xts_ctx *c = req->ctx;
	bool write = req->op == DC_OP_WRITE;
	uint8_t *stage = write ? c->unit[0]->stage : NULL;

	if (c->npieces == 1) {
		atomic_store_explicit(&c->failed,
				      xts_run(c->d, c->unit[0], req, 0, req->count,
					      stage) < 0,
				      memory_order_relaxed);
		if (!write)
			xts_finish_read(req);
		return;
	}
	atomic_store_explicit(&c->failed, 0, memory_order_relaxed);
	atomic_store_explicit(&c->wdone, 0, memory_order_relaxed);
	atomic_store_explicit(&c->pending, c->npieces, memory_order_relaxed);
	for (unsigned i = 0; i < c->npieces; i++) {
		c->piece[i].req = req;
		c->piece[i].idx = i;
	}
	for (unsigned i = 1; i < c->npieces; i++)
		if (dc_pool_run(xts_piece_job, &c->piece[i]) < 0)
			xts_piece_run(&c->piece[i]);
	xts_piece_run(&c->piece[0]);
	if (!write)
		return; /* req may be complete already: touch nothing */
	/* The other pieces started together with ours and end about when it
	 * does: spin a while before paying for a sleep and a wake-up. */
	for (unsigned spin = 0; spin < XTS_SPIN; spin++) {
		if (atomic_load_explicit(&c->wdone, memory_order_acquire))
			return;
		__builtin_ia32_pause();
	}
	while (!atomic_load_explicit(&c->wdone, memory_order_acquire))
		syscall(SYS_futex, &c->wdone, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}

/* --- I/O ------------------------------------------------------------------- */

static void xts_read_done(struct dc_req *req, struct dc_req *child)
{
	struct xts_ctx *c = req->ctx;
	int result = child->result, detail = child->detail;

	dc_child_free(req, child);
	if (result) {
		xts_give(c);
		dc_complete_detail(req, result, detail);
		return;
	}
	xts_pieces(req);
}

static void xts_write_done(struct dc_req *req, struct dc_req *child)
{
	int result = child->result, detail = child->detail;

	dc_child_free(req, child);
	xts_give(req->ctx);
	dc_complete_detail(req, result, detail);
}

static unsigned xts_npieces(const struct xts_disk *d, const struct dc_req *req)
{
	uint64_t n;

	if (d->threads < 2 || req->buf.len < d->split || req->count < 2)
		return 1;
	n = req->buf.len / XTS_PIECE_MIN;
	if (n > d->threads)
		n = d->threads;
	if (n > req->count)
		n = req->count;
	return n < 1 ? 1 : (unsigned)n;
}

void xts_submit(const struct xts_disk *d, struct dc_req *req)
{
	struct xts_queue *q = req->qctx;
	struct xts_ctx *c = req->ctx;
	bool write = req->op == DC_OP_WRITE;
	struct xts_unit *u;
	struct dc_req *child;

	if (!q) {
		dc_complete_detail(req, DC_E_IO, EINVAL);
		return;
	}
	c->d = d;
	c->pool = write ? &q->wr : &q->rd;
	c->npieces = xts_npieces(d, req);
	c->per_piece = req->count / c->npieces;
	memset(c->unit, 0, sizeof(c->unit));
	if (xts_take(d, c->pool, c->unit, c->npieces, write ? req->buf.len : 0) < 0) {
		dc_complete_detail(req, DC_E_IO, ENOMEM);
		return;
	}
	child = dc_child_req(req, 0);
	if (!child) {
		xts_give(c);
		dc_complete_detail(req, DC_E_IO, ENOMEM);
		return;
	}
	child->sector = (req->sector << d->child_shift) + d->child_offset;
	child->count = req->count << d->child_shift;
	if (!write) {
		dc_child_submit(req, child, xts_read_done);
		return;
	}
	xts_pieces(req);
	if (atomic_load_explicit(&c->failed, memory_order_relaxed)) {
		dc_child_free(req, child);
		xts_give(c);
		dc_complete_detail(req, DC_E_IO, EIO);
		return;
	}
	u = c->unit[0];
	u->iov.iov_base = u->stage;
	u->iov.iov_len = req->buf.len;
	child->buf = (struct dc_buf){ .iov = &u->iov, .iovcnt = 1, .len = req->buf.len };
	dc_child_submit(req, child, xts_write_done);
}

/* --- Queues ---------------------------------------------------------------- */

/* A queue starts with one keyed unit per direction, so a queue that keeps one
 * request in flight never allocates or expands a key after this. */
int xts_queue_open(const struct xts_disk *d, void **qctx)
{
	struct xts_queue *q = calloc(1, sizeof(*q));

	if (!q) {
		dc_error("out of memory");
		return -ENOMEM;
	}
	q->rd.enc = 0;
	q->wr.enc = 1;
	atomic_init(&q->rd.remote, NULL);
	atomic_init(&q->wr.remote, NULL);
	q->rd.local = xts_unit_new(d, &q->rd);
	q->wr.local = xts_unit_new(d, &q->wr);
	if (!q->rd.local || !q->wr.local) {
		xts_queue_close(q);
		dc_error("cannot set up an %s context (out of memory or OpenSSL "
			 "refused the key)",
			 EVP_CIPHER_get0_name(d->cipher));
		return -ENOMEM;
	}
	*qctx = q;
	return 0;
}

void xts_queue_close(void *qctx)
{
	struct xts_queue *q = qctx;

	if (!q)
		return;
	xts_pool_free(&q->rd);
	xts_pool_free(&q->wr);
	free(q);
}

/* --- Secrets --------------------------------------------------------------- */

static size_t xts_secret_span(size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return len ? (len + page - 1) & ~(page - 1) : page;
}

void *xts_secret_alloc(size_t len)
{
	size_t span = xts_secret_span(len);
	void *p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	if (mlock(p, span) < 0)
		dc_debug("mlock of %zu bytes of key memory failed: %s", span,
			 strerror(errno));
	madvise(p, span, MADV_DONTDUMP);
	return p;
}

void xts_secret_free(void *p, size_t len)
{
	size_t span = xts_secret_span(len);

	if (!p)
		return;
	OPENSSL_cleanse(p, span);
	munlock(p, span);
	munmap(p, span);
}
