/* SPDX-License-Identifier: MIT */
/* The XTS data path of the crypt and luks plugins (see xts.h). */
#include "xts.h"

#include "endian/byteorder.h"
#include "vaes.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define XTS_STAGE_ALIGN 4096
/* Pause loops a writer waits for its other pieces before sleeping (~0.1 ms). */
#define XTS_SPIN 20000

/* A keyed cipher: XTS on VAES where the CPU has it (vaes.h), else libgcrypt. */
struct xts_cipher {
	gcry_cipher_hd_t h;
	gcry_cipher_hd_t essiv;	 /* ESSIV's AES-ECB, or NULL */
	struct xts_vaes_key *vk; /* instead of h, or NULL */
};

/* One keyed cipher, with what a request needs beside it. */
struct xts_unit {
	struct xts_unit *next;	   /* free list */
	struct xts_unit *all_next; /* every unit of the pool, for queue_close */
	struct xts_cipher c;
	uint8_t *bounce; /* a data unit that straddles iovec segments */
	uint8_t *stage;	 /* write units: the ciphertext going down */
	size_t stage_cap;
	struct iovec iov;
};

struct xts_pool {
	struct xts_unit *local;		   /* the submitting thread's */
	_Atomic(struct xts_unit *) remote; /* given back by completing threads */
	struct xts_unit *all;
};

void xts_defaults(struct xts_disk *d)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	d->threads = ncpu < 1		   ? 1 :
		     ncpu > XTS_MAX_PIECES ? XTS_MAX_PIECES :
					     (unsigned)ncpu;
	d->split = XTS_SPLIT_DEFAULT;
	d->generic = getenv("DISKCORE_XTS_GENERIC") != NULL;
}

/* --- Cipher units ---------------------------------------------------------- */

static pthread_once_t xts_gcry_once = PTHREAD_ONCE_INIT;
static bool xts_gcry_ok, xts_vaes_ok;

/* libgcrypt wants its version checked once before first use; that also sets
 * it up. A library must not finish the application's initialisation, so this
 * is all we do. */
static void xts_gcry_init(void)
{
	xts_gcry_ok = gcry_check_version(GCRYPT_VERSION) != NULL;
	xts_vaes_ok = xts_vaes_usable();
}

/* The AES variant for a key of len bytes (XTS keys are two AES keys), or 0. */
static int xts_algo(int gmode, uint32_t len)
{
	if (gmode == GCRY_CIPHER_MODE_XTS)
		return len == 32 ? GCRY_CIPHER_AES128 :
		       len == 64 ? GCRY_CIPHER_AES256 :
				   0;
	return len == 16 ? GCRY_CIPHER_AES128 :
	       len == 24 ? GCRY_CIPHER_AES192 :
	       len == 32 ? GCRY_CIPHER_AES256 :
			   0;
}

/* A handle for AES in libgcrypt's mode gmode (XTS, CBC, or ECB for ESSIV) with
 * key_len bytes of key, or NULL (and why in dc_error). */
static gcry_cipher_hd_t xts_handle(int gmode, uint32_t key_len, const uint8_t *key)
{
	const char *name = gmode == GCRY_CIPHER_MODE_XTS ? "XTS" :
			   gmode == GCRY_CIPHER_MODE_CBC ? "CBC" :
							   "ESSIV";
	int algo = xts_algo(gmode, key_len);
	gcry_cipher_hd_t h;
	gcry_error_t e;

	pthread_once(&xts_gcry_once, xts_gcry_init);
	if (!xts_gcry_ok) {
		dc_error("libgcrypt is older than the %s this was built with",
			 GCRYPT_VERSION);
		return NULL;
	}
	if (!algo) {
		dc_error("%s key of %u bytes: expected %s", name, key_len,
			 gmode == GCRY_CIPHER_MODE_XTS ? "32 or 64" : "16, 24 or 32");
		return NULL;
	}
	e = gcry_cipher_open(&h, algo, gmode, 0);
	if (e) {
		dc_error("libgcrypt: AES-%s: %s", name, gcry_strerror(e));
		return NULL;
	}
	e = gcry_cipher_setkey(h, key, key_len);
	if (e) {
		gcry_cipher_close(h);
		dc_error("libgcrypt refused the %s key: %s", name, gcry_strerror(e));
		return NULL;
	}
	return h;
}

static void xts_cipher_close(struct xts_cipher *c)
{
	gcry_cipher_close(c->h); /* libgcrypt wipes the key schedule */
	gcry_cipher_close(c->essiv);
	if (c->vk)
		xts_vaes_wipe(c->vk);
	free(c->vk);
	*c = (struct xts_cipher){ 0 };
}

/* d's data cipher and, with ESSIV, its IV cipher: 0 or -EIO (after dc_error). */
static int xts_cipher_open(const struct xts_disk *d, struct xts_cipher *c)
{
	*c = (struct xts_cipher){ 0 };
	pthread_once(&xts_gcry_once, xts_gcry_init);
	if (d->mode == XTS_MODE_XTS && !d->essiv_len && !d->generic && xts_vaes_ok &&
	    (d->key_len == 32 || d->key_len == 64)) {
		void *p;

		/* Cache-line aligned: the schedules are read every round. */
		if (posix_memalign(&p, 64, sizeof(*c->vk)) == 0)
			c->vk = p;
		if (!c->vk) {
			dc_error("out of memory for a key schedule");
			return -EIO;
		}
		xts_vaes_setkey(c->vk, d->key, d->key_len);
		return 0;
	}
	c->h = xts_handle(d->mode == XTS_MODE_CBC ? GCRY_CIPHER_MODE_CBC :
						    GCRY_CIPHER_MODE_XTS,
			  d->key_len, d->key);
	if (!c->h)
		return -EIO;
	if (!d->essiv_len)
		return 0;
	c->essiv = xts_handle(GCRY_CIPHER_MODE_ECB, d->essiv_len, d->essiv_key);
	if (c->essiv)
		return 0;
	xts_cipher_close(c);
	return -EIO;
}

static void xts_unit_free(struct xts_unit *u)
{
	xts_cipher_close(&u->c);
	free(u->bounce);
	free(u->stage);
	free(u);
}

static struct xts_unit *xts_unit_new(const struct xts_disk *d, struct xts_pool *pool)
{
	struct xts_unit *u = calloc(1, sizeof(*u));

	if (!u || !(u->bounce = malloc(d->sector_size >> d->unit_shift))) {
		free(u);
		dc_error("out of memory for a cipher unit");
		return NULL;
	}
	if (xts_cipher_open(d, &u->c) < 0) {
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

/* --- Data units ------------------------------------------------------------ */

/* One data unit. The IV (XTS: the tweak) is the unit number, little-endian,
 * or with ESSIV that block encrypted with the ESSIV key. */
static int xts_one(gcry_cipher_hd_t h, gcry_cipher_hd_t essiv, int enc, uint64_t unit,
		   uint8_t *out, const uint8_t *in, size_t len)
{
	uint8_t iv[16] = { 0 };
	gcry_error_t e = 0;

	put_le64(iv, unit);
	if (out == in) /* libgcrypt's way of saying "in place" */
		in = NULL;
	if (essiv)
		e = gcry_cipher_encrypt(essiv, iv, sizeof(iv), NULL, 0);
	if (!e)
		e = gcry_cipher_setiv(h, iv, sizeof(iv));
	if (!e)
		e = enc ? gcry_cipher_encrypt(h, out, len, in, in ? len : 0) :
			  gcry_cipher_decrypt(h, out, len, in, in ? len : 0);
	return e ? -EIO : 0;
}

/* n consecutive units from in to out (which may be in), the first numbered
 * unit0. */
static int xts_units(const struct xts_disk *d, const struct xts_cipher *c, int enc,
		     uint64_t unit0, uint32_t us, uint64_t n, uint8_t *out,
		     const uint8_t *in)
{
	if (c->vk) {
		xts_vaes_units(c->vk, enc, unit0, d->iv32, us, n, out, in);
		return 0;
	}
	for (uint64_t k = 0; k < n; k++) {
		uint64_t unit = unit0 + k;
		int rc = xts_one(c->h, c->essiv, enc, d->iv32 ? unit & UINT32_MAX : unit,
				 out + k * us, in + k * us, us);

		if (rc)
			return rc;
	}
	return 0;
}

int xts_crypt_units(const struct xts_disk *d, int enc, uint64_t first_unit,
		    uint32_t unit_size, uint8_t *out, const uint8_t *in, size_t len)
{
	struct xts_cipher c;
	int rc;

	if (!unit_size || len % unit_size || unit_size % 16)
		return -EIO;
	if (xts_cipher_open(d, &c) < 0)
		return -EIO;
	rc = xts_units(d, &c, enc, first_unit, unit_size, len / unit_size, out, in);
	xts_cipher_close(&c);
	return rc;
}

int xts_crypt_buf(uint32_t key_len, const uint8_t *key, int enc, uint64_t first_unit,
		  uint32_t unit_size, uint8_t *out, const uint8_t *in, size_t len)
{
	const struct xts_disk d = { .key_len = key_len, .key = key };

	return xts_crypt_units(&d, enc, first_unit, unit_size, out, in, len);
}

/* Sectors [first, first + n) of req: a read (no stage) is decrypted in the
 * caller's buffers, a write is encrypted from them into stage (at the same offset). */
static int xts_run(const struct xts_disk *d, struct xts_unit *u, struct dc_req *req,
		   uint64_t first, uint64_t n, uint8_t *stage)
{
	uint32_t ss = d->sector_size, us = ss >> d->unit_shift;
	struct dc_buf b = dc_buf_sub(&req->buf, first * ss, n * ss);
	const struct iovec *iov = b.iov;
	uint64_t unit0 = (req->sector + first) << d->unit_shift;
	uint64_t units = n << d->unit_shift;
	int left = b.iovcnt, enc = stage != NULL;
	size_t off = b.skip;

	if (stage)
		stage += first * ss;
	for (uint64_t k = 0; k < units;) {
		uint8_t *p;
		uint64_t m;
		int rc;

		while (left > 0 && off >= iov->iov_len) {
			off -= iov->iov_len;
			iov++;
			left--;
		}
		if (left == 0)
			return -EIO;
		p = (uint8_t *)iov->iov_base + off;
		m = (iov->iov_len - off) / us;
		if (m > units - k)
			m = units - k;
		if (m) {
			/* The units that lie whole in this segment, in one go. */
			rc = xts_units(d, &u->c, enc, unit0 + k, us, m,
				       stage ? stage + k * us : p, p);
		} else {
			/* A unit spans segments: work on a copy. */
			m = 1;
			dc_buf_copy_from(&b, k * us, u->bounce, us);
			rc = xts_units(d, &u->c, enc, unit0 + k, us, 1,
				       stage ? stage + k * us : u->bounce, u->bounce);
			if (!rc && !stage)
				dc_buf_copy_to(&b, k * us, u->bounce, us);
		}
		if (rc)
			return rc;
		off += m * us;
		k += m;
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
	struct xts_pool *pool = req->qctx;
	struct xts_ctx *c = req->ctx;
	bool write = req->op == DC_OP_WRITE;
	struct xts_unit *u;
	struct dc_req *child;

	if (!pool) {
		dc_complete_detail(req, DC_E_IO, EINVAL);
		return;
	}
	c->d = d;
	c->pool = pool;
	c->npieces = xts_npieces(d, req);
	c->per_piece = req->count / c->npieces;
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

/* A queue (its qctx is its pool) starts with one keyed unit: a queue that
 * keeps one request in flight never allocates or expands a key after this.
 * The cipher handle serves both directions; a unit's stage grows on its first
 * write. */
void xts_plugin_submit(void *inst, struct dc_req *req)
{
	xts_submit(inst, req);
}

int xts_queue_open(void *inst, void **qctx)
{
	const struct xts_disk *d = inst;
	struct xts_pool *pool = calloc(1, sizeof(*pool));

	if (!pool) {
		dc_error("out of memory");
		return -ENOMEM;
	}
	atomic_init(&pool->remote, NULL);
	pool->local = xts_unit_new(d, pool);
	if (!pool->local) {
		xts_queue_close(inst, pool); /* xts_unit_new said why */
		return -ENOMEM;
	}
	*qctx = pool;
	return 0;
}

void xts_queue_close(void *inst, void *qctx)
{
	struct xts_pool *pool = qctx;
	struct xts_unit *u, *next;

	(void)inst;
	if (!pool)
		return;
	for (u = pool->all; u; u = next) {
		next = u->all_next;
		xts_unit_free(u);
	}
	free(pool);
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

bool xts_secret_equal(const void *a, const void *b, size_t len)
{
	const volatile uint8_t *x = a, *y = b;
	uint8_t diff = 0;

	for (size_t i = 0; i < len; i++)
		diff |= x[i] ^ y[i];
	return diff == 0;
}

void xts_secret_free(void *p, size_t len)
{
	size_t span = xts_secret_span(len);

	if (!p)
		return;
	explicit_bzero(p, span);
	munlock(p, span);
	munmap(p, span);
}

static const char *xts_file_type(mode_t m)
{
	return S_ISFIFO(m) ? "a FIFO" :
	       S_ISCHR(m)  ? "a character device" :
	       S_ISBLK(m)  ? "a block device" :
	       S_ISDIR(m)  ? "a directory" :
	       S_ISSOCK(m) ? "a socket" :
			     "not a regular file";
}

int xts_secret_open(const char *what, const char *path, struct stat *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK), err;

	if (fd < 0) {
		err = errno;
		dc_error("%s %s: %s", what, path, strerror(err));
		return -err;
	}
	if (fstat(fd, st) < 0) {
		err = errno;
		close(fd);
		dc_error("%s %s: %s", what, path, strerror(err));
		return -err;
	}
	if (!S_ISREG(st->st_mode)) {
		close(fd);
		dc_error("%s %s: not a regular file (%s); expected a regular file", what,
			 path, xts_file_type(st->st_mode));
		return -EINVAL;
	}
	return fd;
}
