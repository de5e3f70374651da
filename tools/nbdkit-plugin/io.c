/* SPDX-License-Identifier: MIT */
/*
 * The nbdkit plugin's data path. nbdkit (NBDKIT_THREAD_MODEL_PARALLEL) calls
 * pread/pwrite/... on its worker threads, each call synchronous. diskcore.h
 * lets a disk be used from any number of threads but a queue from one at a
 * time, so each nbdkit thread gets its own DC_QUEUE_POLL queue on first use
 * (thread-specific data, closed by the key's destructor when the thread ends)
 * and drives it with dc_queue_wait(): an io_uring backend then reaps on the
 * nbdkit thread itself, with no hand-off to another thread.
 *
 * Alignment: the advertised minimum block size is the disk's sector size, but
 * nbdkit does not enforce it, so a request is split into a partial head
 * sector, the whole sectors (done in place) and a partial tail sector. A
 * partial sector is read-modify-written under one lock, so two unaligned
 * writes into one sector are ordered; an aligned write racing with one is not
 * (clients that honour the minimum block size never do that).
 */
#include "dcnbdkit.h"
#include "../serve/nbd-errno.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define DCN_ZERO_CHUNK (1u << 20)
#define DCN_ZERO_IOVS 32 /* a write-zeroes writes at most 32 MiB per request */
#define DCN_ALIGN 4096

struct dcn_tq {
	dc_queue *q;
	uint64_t next_token; /* user_data of the next request */
	bool broken;	     /* a wait failed: requests may still be in flight */
	struct dcn_tq *prev, *next;
};

static pthread_key_t tq_key;
static pthread_mutex_t tq_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dcn_tq *tq_list; /* every open queue, for .cleanup */
static pthread_mutex_t rmw_lock = PTHREAD_MUTEX_INITIALIZER;
static void *zeroes; /* DCN_ZERO_CHUNK bytes, never written */

static void tq_unlink(struct dcn_tq *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		tq_list = t->next;
	if (t->next)
		t->next->prev = t->prev;
}

/* The key's destructor: the nbdkit thread ends (its connection closed). A
 * broken queue may have requests in flight and is left to .cleanup's leak. */
static void tq_destroy(void *p)
{
	struct dcn_tq *t = p;

	pthread_mutex_lock(&tq_lock);
	tq_unlink(t);
	if (!t->broken)
		dc_queue_close(t->q);
	pthread_mutex_unlock(&tq_lock);
	free(t);
}

int dcn_io_init(void)
{
	if (posix_memalign(&zeroes, DCN_ALIGN, DCN_ZERO_CHUNK))
		return -ENOMEM;
	memset(zeroes, 0, DCN_ZERO_CHUNK);
	return -pthread_key_create(&tq_key, tq_destroy);
}

/* After every connection ended: queues of threads that still exist. */
void dcn_io_fini(void)
{
	pthread_mutex_lock(&tq_lock);
	while (tq_list) {
		struct dcn_tq *t = tq_list;

		tq_unlink(t);
		if (!t->broken)
			dc_queue_close(t->q);
		free(t);
	}
	pthread_mutex_unlock(&tq_lock);
	pthread_key_delete(tq_key);
	free(zeroes);
	zeroes = NULL;
}

static struct dcn_tq *dcn_queue(void)
{
	struct dcn_tq *t = pthread_getspecific(tq_key);
	int rc;

	if (t && !t->broken)
		return t;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	rc = dc_queue_open(dcn_disk, DC_QUEUE_POLL, &t->q);
	if (rc < 0) {
		nbdkit_error("diskcore: queue: %s", dc_last_error());
		free(t);
		return NULL;
	}
	/* Driven from the first request on (diskcore.h, dc_queue_wait). */
	dc_queue_wait(t->q, 0);
	pthread_mutex_lock(&tq_lock);
	t->next = tq_list;
	if (tq_list)
		tq_list->prev = t;
	tq_list = t;
	pthread_mutex_unlock(&tq_lock);
	pthread_setspecific(tq_key, t);
	return t;
}

/* nbdkit turns ENOTSUP into NBD_ENOTSUP and EPERM into NBD_EPERM; everything
 * else is the mapping diskctl serve uses. */
int dcn_errno(int result, int detail, bool write)
{
	return result == DC_E_UNSUPPORTED ? EOPNOTSUPP :
					    nbd_dc_errno(result, detail, write);
}

/* One request, waited for on this thread's queue. Returns 0 or a DC_E_* result
 * with *detail set. */
static int dcn_exec(uint32_t op, uint32_t flags, uint64_t sector, uint64_t count,
		    const struct iovec *iov, int iovcnt, int *detail)
{
	struct dcn_tq *t = dcn_queue();
	uint64_t token;
	struct dc_io io;
	int rc;

	*detail = 0;
	if (!t)
		return -ENOMEM;
	token = ++t->next_token;
	io = (struct dc_io){ .op = op,
			     .flags = flags,
			     .sector = sector,
			     .count = count,
			     .iov = iov,
			     .iovcnt = iovcnt,
			     .user_data = (void *)(uintptr_t)token };
	rc = dc_submit(t->q, &io);
	if (rc < 0)
		return rc;
	for (;;) {
		struct dc_completion c;

		/* Only our one request is in flight on this queue. */
		if (dc_queue_reap(t->q, &c, 1) == 1 &&
		    (uintptr_t)c.user_data == (uintptr_t)token) {
			*detail = c.detail;
			return c.result;
		}
		rc = dc_queue_wait(t->q, -1);
		if (rc < 0) {
			/* Cannot wait any more: this queue is given up, the
			 * thread's next call opens another. */
			nbdkit_error("diskcore: waiting for a request: %s",
				     dc_strerror(rc));
			t->broken = true;
			return DC_E_IO;
		}
	}
}

/* Run one request and report a failure to nbdkit; returns 0 or -1. */
static int dcn_run(uint32_t op, uint32_t flags, uint64_t sector, uint64_t count,
		   const struct iovec *iov, int iovcnt)
{
	int detail, rc = dcn_exec(op, flags, sector, count, iov, iovcnt, &detail);

	if (!rc)
		return 0;
	nbdkit_set_error(dcn_errno(rc, detail, op != DC_OP_READ));
	if (rc == DC_E_IO && detail)
		nbdkit_error("diskcore: %s: %s", dc_strerror(rc), strerror(detail));
	else
		nbdkit_error("diskcore: %s", dc_strerror(rc));
	return -1;
}

static int dcn_rw(uint32_t op, uint32_t flags, uint64_t sector, void *buf, size_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };

	return dcn_run(op, flags, sector, 0, &iov, 1);
}

static uint32_t dcn_fua(uint32_t flags)
{
	return flags & NBDKIT_FLAG_FUA ? DC_IO_FUA : 0;
}

/* Bytes [off, off + len) inside one sector: read it into a bounce buffer, then
 * copy out (rbuf), or merge wbuf (zeroes when NULL) and write it back. */
static int dcn_partial(uint64_t off, uint32_t len, void *rbuf, const void *wbuf,
		       uint32_t flags)
{
	uint32_t ss = dcn_info.sector_size;
	uint64_t sector = off / ss;
	size_t in = (size_t)(off % ss);
	bool write = !rbuf;
	uint8_t *b;
	int rc;

	if (posix_memalign((void **)&b, DCN_ALIGN, ss)) {
		nbdkit_set_error(ENOMEM);
		return -1;
	}
	if (write)
		pthread_mutex_lock(&rmw_lock);
	rc = dcn_rw(DC_OP_READ, 0, sector, b, ss);
	if (!rc && !write)
		memcpy(rbuf, b + in, len);
	if (!rc && write) {
		if (wbuf)
			memcpy(b + in, wbuf, len);
		else
			memset(b + in, 0, len);
		rc = dcn_rw(DC_OP_WRITE, dcn_fua(flags), sector, b, ss);
	}
	if (write)
		pthread_mutex_unlock(&rmw_lock);
	free(b);
	return rc;
}

/* Whole sectors of zeroes, written from the shared zero buffer. */
static int dcn_write_zeroes(uint64_t sector, uint64_t count, uint32_t flags)
{
	uint32_t ss = dcn_info.sector_size;
	struct iovec iov[DCN_ZERO_IOVS];

	while (count) {
		uint64_t bytes = count * ss, left;
		int n = 0;

		if (bytes > (uint64_t)DCN_ZERO_IOVS * DCN_ZERO_CHUNK)
			bytes = (uint64_t)DCN_ZERO_IOVS * DCN_ZERO_CHUNK;
		for (left = bytes; left; n++) {
			size_t k = left < DCN_ZERO_CHUNK ? (size_t)left : DCN_ZERO_CHUNK;

			iov[n] = (struct iovec){ .iov_base = zeroes, .iov_len = k };
			left -= k;
		}
		if (dcn_run(DC_OP_WRITE, dcn_fua(flags), sector, 0, iov, n))
			return -1;
		sector += bytes / ss;
		count -= bytes / ss;
	}
	return 0;
}

/* Unmap that reads back as zero, when the client allows holes. Returns 0 when
 * done, 1 when the chain would not (write the zeroes instead), -1 on error. */
static int dcn_zero_by_unmap(uint64_t sector, uint64_t count, uint32_t flags)
{
	int detail, rc;

	if (!(flags & NBDKIT_FLAG_MAY_TRIM) || dcn_info.unmap_behavior != DC_UNMAP_ZEROES)
		return 1;
	rc = dcn_exec(DC_OP_UNMAP, 0, sector, count, NULL, 0, &detail);
	if (rc == DC_E_UNSUPPORTED || rc == DC_E_INVALID_INPUT)
		return 1;
	if (!rc && flags & NBDKIT_FLAG_FUA)
		return dcn_run(DC_OP_FLUSH, 0, 0, 0, NULL, 0);
	if (rc) {
		nbdkit_set_error(dcn_errno(rc, detail, true));
		nbdkit_error("diskcore: write zeroes: %s", dc_strerror(rc));
		return -1;
	}
	return 0;
}

/* The whole sectors in the middle of a request. kind: 'r', 'w' or 'z'. */
static int dcn_middle(int kind, uint8_t *buf, uint64_t sector, uint64_t count,
		      uint32_t flags)
{
	size_t len = (size_t)(count * dcn_info.sector_size);
	int rc;

	switch (kind) {
	case 'r':
		return dcn_rw(DC_OP_READ, 0, sector, buf, len);
	case 'w':
		return dcn_rw(DC_OP_WRITE, dcn_fua(flags), sector, buf, len);
	default:
		rc = dcn_zero_by_unmap(sector, count, flags);
		if (rc <= 0)
			return rc;
		if (flags & NBDKIT_FLAG_FAST_ZERO) {
			/* Writing is not faster than the client writing. */
			nbdkit_set_error(EOPNOTSUPP);
			return -1;
		}
		return dcn_write_zeroes(sector, count, flags);
	}
}

/* Split [offset, offset + count) into head, whole sectors and tail. */
static int dcn_span(int kind, uint8_t *buf, uint32_t count, uint64_t offset,
		    uint32_t flags)
{
	uint32_t ss = dcn_info.sector_size;
	uint32_t head = (uint32_t)(offset % ss), n, whole;

	if (head) {
		if (kind == 'z' && flags & NBDKIT_FLAG_FAST_ZERO) {
			nbdkit_set_error(EOPNOTSUPP);
			return -1;
		}
		n = ss - head < count ? ss - head : count;
		if (dcn_partial(offset, n, kind == 'r' ? buf : NULL,
				kind == 'w' ? buf : NULL, flags))
			return -1;
		offset += n;
		count -= n;
		if (buf)
			buf += n;
	}
	whole = count - count % ss;
	if (whole) {
		if (dcn_middle(kind, buf, offset / ss, whole / ss, flags))
			return -1;
		offset += whole;
		count -= whole;
		if (buf)
			buf += whole;
	}
	if (count) {
		if (kind == 'z' && flags & NBDKIT_FLAG_FAST_ZERO) {
			nbdkit_set_error(EOPNOTSUPP);
			return -1;
		}
		return dcn_partial(offset, count, kind == 'r' ? buf : NULL,
				   kind == 'w' ? buf : NULL, flags);
	}
	return 0;
}

int dcn_pread(void *h, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
	(void)h;
	(void)flags;
	return dcn_span('r', buf, count, offset, 0);
}

int dcn_pwrite(void *h, const void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
	(void)h;
	/* The const goes: 'w' only reads buf. */
	return dcn_span('w', (uint8_t *)(uintptr_t)buf, count, offset, flags);
}

int dcn_zero(void *h, uint32_t count, uint64_t offset, uint32_t flags)
{
	(void)h;
	return dcn_span('z', NULL, count, offset, flags);
}

/* Only the whole sectors inside the range (a trim may discard less); a chain
 * that does not unmap still succeeds: trim is a hint. */
int dcn_trim(void *h, uint32_t count, uint64_t offset, uint32_t flags)
{
	uint32_t ss = dcn_info.sector_size;
	uint64_t first = (offset + ss - 1) / ss, end = (offset + count) / ss;
	int detail, rc;

	(void)h;
	if (end <= first)
		return 0;
	rc = dcn_exec(DC_OP_UNMAP, 0, first, end - first, NULL, 0, &detail);
	if (rc == DC_E_UNSUPPORTED)
		return 0;
	if (rc) {
		nbdkit_set_error(dcn_errno(rc, detail, true));
		nbdkit_error("diskcore: trim: %s", dc_strerror(rc));
		return -1;
	}
	return flags & NBDKIT_FLAG_FUA ? dcn_flush(h, 0) : 0;
}

int dcn_flush(void *h, uint32_t flags)
{
	(void)h;
	(void)flags;
	return dcn_run(DC_OP_FLUSH, 0, 0, 0, NULL, 0);
}
