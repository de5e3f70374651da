/* SPDX-License-Identifier: MIT */
/* crypt: XTS-AES-256 over an inner disk (reference §3.1), the same on disk as
 * dm-crypt's aes-xts-plain64: one data unit per inner sector, tweaked with the
 * sector number as a 16-byte little-endian value (with 4 KiB sectors that is
 * dm-crypt's iv_large_sectors convention).
 *
 * Writes encrypt into a staging buffer and send one write down; the caller's
 * buffer is never touched. Reads land in the caller's buffers and are decrypted
 * there in place. The key is read once into locked memory and wiped at close.
 *
 * The hot path does not allocate: each queue keeps a pool of cipher units (an
 * EVP context keyed once, a staging buffer that only grows), taken by the
 * submitting thread and given back by whichever thread completes. Large
 * requests are split across the core's worker pool; the pieces of a write all
 * finish before the write goes down, so the child is only ever submitted from
 * the queue's own thread. */
#include <diskcore/plugin.h>

#include <endian.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CRYPT_CIPHER "xts-aes-256"
#define CRYPT_KEY_LEN 64
#define CRYPT_MAX_PIECES 8
/* Splitting a request across threads pays only when each piece outweighs a
 * pool hand-off. Measured on 2 vCPUs with 512-byte sectors: 256 KiB reads
 * lose a third when split, 1 MiB reads gain a fifth, 4 MiB reads three
 * quarters; writes break even at 1 MiB. */
#define CRYPT_SPLIT_DEFAULT (1024 * 1024)
#define CRYPT_PIECE_MIN (64 * 1024)
#define CRYPT_STAGE_ALIGN 4096
/* Pause loops a writer waits for its other pieces before sleeping (~0.1 ms). */
#define CRYPT_SPIN 20000

struct crypt_disk {
	char *key_path;
	uint8_t *key; /* CRYPT_KEY_LEN bytes at the start of a private page */
	size_t key_map;
	EVP_CIPHER *cipher;
	uint32_t sector_size;
	unsigned threads; /* most pieces one request is split into */
	uint64_t split;	  /* requests of at least this many bytes may be split */
};

/* One EVP context keyed for one direction, with what a request needs beside it. */
struct crypt_unit {
	struct crypt_unit *next;     /* free list */
	struct crypt_unit *all_next; /* every unit of the pool, for queue_close */
	EVP_CIPHER_CTX *ctx;
	uint8_t *bounce; /* a sector that straddles iovec segments */
	uint8_t *stage;	 /* write units: the ciphertext going down */
	size_t stage_cap;
	struct iovec iov;
};

struct crypt_pool {
	struct crypt_unit *local;	     /* the submitting thread's */
	_Atomic(struct crypt_unit *) remote; /* given back by completing threads */
	struct crypt_unit *all;
	int enc;
};

struct crypt_queue {
	struct crypt_pool rd, wr;
};

struct crypt_piece {
	struct dc_req *req;
	unsigned idx;
};

struct crypt_ctx {
	struct crypt_disk *d;
	struct crypt_pool *pool;
	unsigned npieces;
	uint64_t per_piece;  /* sectors in each piece but the last */
	atomic_uint pending; /* pieces not finished yet */
	atomic_int failed;
	atomic_int wdone; /* write: every piece finished (futex word) */
	struct crypt_unit *unit[CRYPT_MAX_PIECES];
	struct crypt_piece piece[CRYPT_MAX_PIECES];
};

/* --- Cipher units ---------------------------------------------------------- */

static void crypt_unit_free(struct crypt_unit *u)
{
	EVP_CIPHER_CTX_free(u->ctx); /* OpenSSL wipes the key schedule */
	free(u->bounce);
	free(u->stage);
	free(u);
}

static struct crypt_unit *crypt_unit_new(struct crypt_disk *d, struct crypt_pool *pool)
{
	struct crypt_unit *u = calloc(1, sizeof(*u));

	if (!u)
		return NULL;
	u->ctx = EVP_CIPHER_CTX_new();
	u->bounce = malloc(d->sector_size);
	if (!u->ctx || !u->bounce ||
	    !EVP_CipherInit_ex2(u->ctx, d->cipher, d->key, NULL, pool->enc, NULL)) {
		crypt_unit_free(u);
		return NULL;
	}
	u->all_next = pool->all;
	pool->all = u;
	return u;
}

/* Submitting thread only: n units, the first with a stage of stage_len bytes. */
static int crypt_take(struct crypt_disk *d, struct crypt_pool *pool,
		      struct crypt_unit **out, unsigned n, size_t stage_len)
{
	struct crypt_unit *u;
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
			u = crypt_unit_new(d, pool);
		if (!u)
			goto fail;
		out[i] = u;
	}
	u = out[0];
	if (stage_len > u->stage_cap) {
		size_t cap = (stage_len + CRYPT_STAGE_ALIGN - 1) &
			     ~(size_t)(CRYPT_STAGE_ALIGN - 1);

		if (posix_memalign(&p, CRYPT_STAGE_ALIGN, cap))
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
static void crypt_give(struct crypt_ctx *c)
{
	struct crypt_pool *pool = c->pool;
	struct crypt_unit *first = c->unit[0], *last = first, *head;

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

static void crypt_pool_free(struct crypt_pool *pool)
{
	struct crypt_unit *u, *next;

	for (u = pool->all; u; u = next) {
		next = u->all_next;
		crypt_unit_free(u);
	}
	pool->all = pool->local = NULL;
	atomic_store(&pool->remote, NULL);
}

/* --- Sectors --------------------------------------------------------------- */

static int crypt_sector(EVP_CIPHER_CTX *ctx, uint64_t sector, uint8_t *out,
			const uint8_t *in, int len)
{
	uint64_t iv[2] = { htole64(sector), 0 }; /* 16 bytes, little-endian */
	int outl;

	if (!EVP_CipherInit_ex2(ctx, NULL, NULL, (const uint8_t *)iv, -1, NULL) ||
	    !EVP_CipherUpdate(ctx, out, &outl, in, len) || outl != len)
		return -EIO;
	return 0;
}

/* Sectors [first, first + n) of req: a read is decrypted in the caller's
 * buffers, a write is encrypted from them into stage (at the same offset). */
static int crypt_run(struct crypt_disk *d, struct crypt_unit *u, struct dc_req *req,
		     uint64_t first, uint64_t n, uint8_t *stage)
{
	uint32_t ss = d->sector_size;
	struct dc_buf b = dc_buf_sub(&req->buf, first * ss, n * ss);
	const struct iovec *iov = b.iov;
	int left = b.iovcnt;
	size_t off = b.skip;

	if (stage)
		stage += first * ss;
	for (uint64_t s = 0; s < n; s++) {
		uint64_t sector = req->sector + first + s;
		uint8_t *out = stage ? stage + s * ss : NULL;
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
		if (iov->iov_len - off >= ss) {
			rc = crypt_sector(u->ctx, sector, out ? out : p, p, (int)ss);
		} else {
			/* The sector spans segments: work on a copy. */
			dc_buf_copy_from(&b, s * ss, u->bounce, ss);
			rc = crypt_sector(u->ctx, sector, out ? out : u->bounce,
					  u->bounce, (int)ss);
			if (!rc && !out)
				dc_buf_copy_to(&b, s * ss, u->bounce, ss);
		}
		if (rc)
			return rc;
		off += ss;
	}
	return 0;
}

/* --- Pieces ---------------------------------------------------------------- */

static void crypt_finish_read(struct dc_req *req)
{
	struct crypt_ctx *c = req->ctx;
	bool failed = atomic_load_explicit(&c->failed, memory_order_relaxed);

	crypt_give(c);
	if (failed)
		dc_complete_detail(req, DC_E_IO, EIO);
	else
		dc_complete(req, 0);
}

static void crypt_piece_run(struct crypt_piece *pc)
{
	struct dc_req *req = pc->req;
	struct crypt_ctx *c = req->ctx;
	uint64_t first = pc->idx * c->per_piece;
	uint64_t n = pc->idx + 1 == c->npieces ? req->count - first : c->per_piece;
	uint8_t *stage = req->op == DC_OP_WRITE ? c->unit[0]->stage : NULL;

	if (crypt_run(c->d, c->unit[pc->idx], req, first, n, stage))
		atomic_store_explicit(&c->failed, 1, memory_order_relaxed);
	if (atomic_fetch_sub_explicit(&c->pending, 1, memory_order_acq_rel) != 1)
		return;
	if (req->op == DC_OP_READ) {
		crypt_finish_read(req);
	} else {
		atomic_store_explicit(&c->wdone, 1, memory_order_release);
		syscall(SYS_futex, &c->wdone, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	}
}

static void crypt_piece_job(void *arg)
{
	crypt_piece_run(arg);
}

/* Run every piece: 1..n-1 on the pool, 0 here. A read finishes in whichever
 * piece ends last; a write returns once all have ended. */
static void crypt_pieces(struct dc_req *req)
{
	struct crypt_ctx *c = req->ctx;
	bool write = req->op == DC_OP_WRITE;
	uint8_t *stage = write ? c->unit[0]->stage : NULL;

	if (c->npieces == 1) {
		atomic_store_explicit(&c->failed,
				      crypt_run(c->d, c->unit[0], req, 0, req->count,
						stage) < 0,
				      memory_order_relaxed);
		if (!write)
			crypt_finish_read(req);
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
		if (dc_pool_run(crypt_piece_job, &c->piece[i]) < 0)
			crypt_piece_run(&c->piece[i]);
	crypt_piece_run(&c->piece[0]);
	if (!write)
		return; /* req may be complete already: touch nothing */
	/* The other pieces started together with ours and end about when it
	 * does: spin a while before paying for a sleep and a wake-up. */
	for (unsigned spin = 0; spin < CRYPT_SPIN; spin++) {
		if (atomic_load_explicit(&c->wdone, memory_order_acquire))
			return;
		__builtin_ia32_pause();
	}
	while (!atomic_load_explicit(&c->wdone, memory_order_acquire))
		syscall(SYS_futex, &c->wdone, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}

/* --- I/O ------------------------------------------------------------------- */

static void crypt_read_done(struct dc_req *req, struct dc_req *child)
{
	struct crypt_ctx *c = req->ctx;
	int result = child->result, detail = child->detail;

	dc_child_free(req, child);
	if (result) {
		crypt_give(c);
		dc_complete_detail(req, result, detail);
		return;
	}
	crypt_pieces(req);
}

static void crypt_write_done(struct dc_req *req, struct dc_req *child)
{
	int result = child->result, detail = child->detail;

	dc_child_free(req, child);
	crypt_give(req->ctx);
	dc_complete_detail(req, result, detail);
}

static unsigned crypt_npieces(const struct crypt_disk *d, const struct dc_req *req)
{
	uint64_t n;

	if (d->threads < 2 || req->buf.len < d->split || req->count < 2)
		return 1;
	n = req->buf.len / CRYPT_PIECE_MIN;
	if (n > d->threads)
		n = d->threads;
	if (n > req->count)
		n = req->count;
	return n < 1 ? 1 : (unsigned)n;
}

static void crypt_submit(void *inst, struct dc_req *req)
{
	struct crypt_disk *d = inst;
	struct crypt_queue *q = req->qctx;
	struct crypt_ctx *c = req->ctx;
	bool write = req->op == DC_OP_WRITE;
	struct crypt_unit *u;
	struct dc_req *child;

	if (!q) {
		dc_complete_detail(req, DC_E_IO, EINVAL);
		return;
	}
	c->d = d;
	c->pool = write ? &q->wr : &q->rd;
	c->npieces = crypt_npieces(d, req);
	c->per_piece = req->count / c->npieces;
	memset(c->unit, 0, sizeof(c->unit));
	if (crypt_take(d, c->pool, c->unit, c->npieces, write ? req->buf.len : 0) < 0) {
		dc_complete_detail(req, DC_E_IO, ENOMEM);
		return;
	}
	child = dc_child_req(req, 0);
	if (!child) {
		crypt_give(c);
		dc_complete_detail(req, DC_E_IO, ENOMEM);
		return;
	}
	if (!write) {
		dc_child_submit(req, child, crypt_read_done);
		return;
	}
	crypt_pieces(req);
	if (atomic_load_explicit(&c->failed, memory_order_relaxed)) {
		dc_child_free(req, child);
		crypt_give(c);
		dc_complete_detail(req, DC_E_IO, EIO);
		return;
	}
	u = c->unit[0];
	u->iov.iov_base = u->stage;
	u->iov.iov_len = req->buf.len;
	child->buf = (struct dc_buf){ .iov = &u->iov, .iovcnt = 1, .len = req->buf.len };
	dc_child_submit(req, child, crypt_write_done);
}

/* --- Queues ---------------------------------------------------------------- */

static void crypt_queue_close(void *inst, void *qctx);

/* A queue starts with one keyed unit per direction, so a queue that keeps one
 * request in flight never allocates or expands a key after this. */
static int crypt_queue_open(void *inst, void **qctx)
{
	struct crypt_disk *d = inst;
	struct crypt_queue *q = calloc(1, sizeof(*q));

	if (!q) {
		dc_error("out of memory");
		return -ENOMEM;
	}
	q->rd.enc = 0;
	q->wr.enc = 1;
	atomic_init(&q->rd.remote, NULL);
	atomic_init(&q->wr.remote, NULL);
	q->rd.local = crypt_unit_new(d, &q->rd);
	q->wr.local = crypt_unit_new(d, &q->wr);
	if (!q->rd.local || !q->wr.local) {
		crypt_queue_close(d, q);
		dc_error("cannot set up an AES-256-XTS context (out of memory or "
			 "OpenSSL refused the key)");
		return -ENOMEM;
	}
	*qctx = q;
	return 0;
}

static void crypt_queue_close(void *inst, void *qctx)
{
	struct crypt_queue *q = qctx;

	(void)inst;
	if (!q)
		return;
	crypt_pool_free(&q->rd);
	crypt_pool_free(&q->wr);
	free(q);
}

/* --- Open and close -------------------------------------------------------- */

static void crypt_key_wipe(struct crypt_disk *d)
{
	if (!d->key)
		return;
	OPENSSL_cleanse(d->key, d->key_map);
	munlock(d->key, d->key_map);
	munmap(d->key, d->key_map);
	d->key = NULL;
}

/* Read the key file into a locked page; refuse anything but 64 bytes made of
 * two different 32-byte halves. */
static int crypt_key_load(struct crypt_disk *d, const char *path)
{
	static atomic_bool warned;
	struct stat st;
	ssize_t got = 0;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		rc = -errno;
		dc_error("key file %s: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		dc_error("key file %s: not a regular file (expected %d raw key bytes)",
			 path, CRYPT_KEY_LEN);
		goto out;
	}
	if (st.st_mode & (S_IRGRP | S_IROTH)) {
		dc_debug("crypt: key file %s is readable by group or others (mode %03o)",
			 path, (unsigned)(st.st_mode & 0777));
		if (!atomic_exchange(&warned, true))
			fprintf(stderr,
				"diskcore: crypt: warning: key file %s is readable by "
				"group or others (mode %03o); chmod 600 it\n",
				path, (unsigned)(st.st_mode & 0777));
	}
	d->key_map = (size_t)sysconf(_SC_PAGESIZE);
	d->key = mmap(NULL, d->key_map, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (d->key == MAP_FAILED) {
		d->key = NULL;
		rc = -ENOMEM;
		dc_error("out of memory for the key");
		goto out;
	}
	if (mlock(d->key, d->key_map) < 0)
		dc_debug("crypt: mlock of the key failed: %s", strerror(errno));
	madvise(d->key, d->key_map, MADV_DONTDUMP);
	/* One byte more than a key, to tell "too long" from "exact". */
	while (got <= CRYPT_KEY_LEN) {
		ssize_t r = read(fd, d->key + got, CRYPT_KEY_LEN + 1 - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			dc_error("key file %s: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		got += r;
	}
	if (got != CRYPT_KEY_LEN) {
		rc = -EINVAL;
		if (got > CRYPT_KEY_LEN)
			dc_error("key file %s: %lld bytes, expected exactly %d (two "
				 "256-bit AES keys)",
				 path, (long long)st.st_size, CRYPT_KEY_LEN);
		else
			dc_error("key file %s: %zd bytes, expected exactly %d (two "
				 "256-bit AES keys)",
				 path, got, CRYPT_KEY_LEN);
		goto out;
	}
	if (CRYPTO_memcmp(d->key, d->key + CRYPT_KEY_LEN / 2, CRYPT_KEY_LEN / 2) == 0) {
		rc = -EINVAL;
		dc_error("key file %s: the two 32-byte halves are equal; XTS needs two "
			 "different keys",
			 path);
		goto out;
	}
out:
	close(fd);
	return rc;
}

static void crypt_close(void *inst)
{
	struct crypt_disk *d = inst;

	if (!d)
		return;
	crypt_key_wipe(d);
	EVP_CIPHER_free(d->cipher);
	free(d->key_path);
	free(d);
}

static int crypt_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct crypt_disk *d;
	uint64_t v;
	long ncpu;
	int rc;

	if (a->nfields != 2 || a->nchildren != 1) {
		dc_error("expected crypt:" CRYPT_CIPHER ":KEYFILE:SPEC");
		return -EINVAL;
	}
	if (strcmp(a->fields[0], CRYPT_CIPHER) != 0) {
		dc_error("unsupported cipher \"%s\": expected " CRYPT_CIPHER,
			 a->fields[0]);
		return -EINVAL;
	}
	if (!a->fields[1][0]) {
		dc_error("missing key file: expected crypt:" CRYPT_CIPHER
			 ":KEYFILE:SPEC");
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d || !(d->key_path = strdup(a->fields[1]))) {
		free(d);
		dc_error("out of memory");
		return -ENOMEM;
	}
	*inst = d;
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	d->threads = ncpu < 1		     ? 1 :
		     ncpu > CRYPT_MAX_PIECES ? CRYPT_MAX_PIECES :
					       (unsigned)ncpu;
	d->split = CRYPT_SPLIT_DEFAULT;
	if (dc_opt_num(a, "threads", &v)) {
		if (v < 1 || v > CRYPT_MAX_PIECES) {
			dc_error("threads=%llu: expected 1 to %d", (unsigned long long)v,
				 CRYPT_MAX_PIECES);
			return -EINVAL;
		}
		d->threads = (unsigned)v;
	}
	if (dc_opt_num(a, "split", &v)) {
		if (v < CRYPT_PIECE_MIN) {
			dc_error("split=%llu: expected at least %d bytes",
				 (unsigned long long)v, CRYPT_PIECE_MIN);
			return -EINVAL;
		}
		d->split = v;
	}
	d->sector_size = info->sector_size;
	rc = crypt_key_load(d, d->key_path);
	if (rc < 0)
		return rc;
	d->cipher = EVP_CIPHER_fetch(NULL, "AES-256-XTS", NULL);
	if (!d->cipher) {
		dc_error("OpenSSL has no AES-256-XTS");
		return -ENOTSUP;
	}
	/* Inner zeroes decrypt to noise; an ignored unmap stays ignored. */
	if (info->unmap_behavior != DC_UNMAP_IGNORED)
		info->unmap_behavior = DC_UNMAP_UNSPECIFIED;
	info->flags &= ~(DC_INFO_EJECT | DC_INFO_CAN_READ_CACHE);
	snprintf(info->disk_type, sizeof(info->disk_type), "crypt");
	return 0;
}

static void crypt_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct crypt_disk *d = inst;
	char buf[32];

	kv(arg, "cipher", CRYPT_CIPHER);
	kv(arg, "key_file", d->key_path);
	snprintf(buf, sizeof(buf), "%u", d->sector_size);
	kv(arg, "data_unit", buf);
	snprintf(buf, sizeof(buf), "%u", d->threads);
	kv(arg, "threads", buf);
}

static const struct dc_option crypt_options[] = {
	{ "threads", DC_OPT_UINT,
	  "most threads one large request is split across (default: CPUs, up to 8)" },
	{ "split", DC_OPT_SIZE,
	  "requests of at least this size may be split (default 1M)" },
	{ NULL, 0, NULL },
};

static const struct dc_form crypt_forms[] = {
	{ "crypt", 2, DC_CHILD_ONE, 0,
	  "crypt[;threads=N][;split=SIZE]:xts-aes-256:KEYFILE:SPEC",
	  "XTS-AES-256 encryption (dm-crypt aes-xts-plain64), 64-byte key file",
	  crypt_options },
	{ NULL, 0, 0, 0, NULL, NULL, NULL },
};

static const struct dc_plugin crypt_plugin = {
	.struct_size = sizeof(struct dc_plugin),
	.abi_major = DC_ABI_MAJOR,
	.abi_minor = DC_ABI_MINOR,
	.kind = DC_KIND_DECORATOR,
	.name = "crypt",
	.version = "0.1.0",
	.summary =
		"XTS-AES-256 disk encryption (OpenSSL), compatible with aes-xts-plain64",
	.usage =
		"crypt:xts-aes-256:KEYFILE:SPEC\n"
		"  Encrypts SPEC with AES-256 in XTS mode. KEYFILE holds exactly 64 raw\n"
		"  bytes (two different 256-bit keys) and should be readable by its\n"
		"  owner only. Each sector of SPEC is one data unit, tweaked with its\n"
		"  sector number (little-endian), as dm-crypt's aes-xts-plain64 (with\n"
		"  4 KiB sectors: iv_large_sectors). Flush, unmap and persistent\n"
		"  reservations pass through; eject does not. Unmapped sectors read as\n"
		"  unspecified data. Options: ;threads=N caps how many threads one large\n"
		"  request is split across, ;split=SIZE is the smallest request split.",
	.forms = crypt_forms,
	.ctx_size = sizeof(struct crypt_ctx),
	.ops = DC_OP_BIT(DC_OP_READ) | DC_OP_BIT(DC_OP_WRITE),
	.passthrough_ops = DC_OP_BIT(DC_OP_FLUSH) | DC_OP_BIT(DC_OP_UNMAP) | DC_OPS_PR,
	.open = crypt_open,
	.close = crypt_close,
	.queue_open = crypt_queue_open,
	.queue_close = crypt_queue_close,
	.submit = crypt_submit,
	.describe = crypt_describe,
};

DC_PLUGIN_REGISTER(crypt_plugin)
