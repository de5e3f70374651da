/* SPDX-License-Identifier: MIT */
/*
 * diskctl serve: request buffers, submission to the disk and completions.
 *
 * Memory: a connection holds at most SERVE_CONN_BUF_BYTES of request buffers,
 * in flight and idle together. A request that needs more first evicts idle
 * buffers, then waits for its connection's earlier requests to complete (and
 * their replies to go out), so a client cannot grow the server beyond that by
 * pipelining large requests and not reading the replies.
 */
#include "serve-int.h"
#include "nbd-errno.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#define SERVE_BUF_STEP (1u << 20)

void serve_reply(struct serve_conn *c, uint64_t handle, uint32_t err, const void *data,
		 size_t len)
{
	uint8_t *h = c->batch + 16 * (size_t)c->nbatch;
	struct iovec iov[2] = {
		{ .iov_base = h, .iov_len = 16 },
		{ .iov_base = (void *)data, .iov_len = len },
	};

	serve_put32(h, NBD_SIMPLE_REPLY_MAGIC);
	serve_put32(h + 4, err);
	serve_put64(h + 8, handle);
	if (c->batching && (err || !len)) {
		if (++c->nbatch == SERVE_REAP)
			serve_batch_flush(c);
		return;
	}
	serve_sendv(c, iov, !err && len ? 2 : 1);
}

/* One structured reply chunk, the last of its reply: header, p, data. */
void serve_chunk(struct serve_conn *c, uint64_t handle, uint16_t type, const void *p,
		 size_t plen, const void *data, size_t len)
{
	uint8_t h[20];
	struct iovec iov[3] = {
		{ .iov_base = h, .iov_len = sizeof(h) },
		{ .iov_base = (void *)p, .iov_len = plen },
		{ .iov_base = (void *)data, .iov_len = len },
	};

	serve_put32(h, NBD_STRUCTURED_REPLY_MAGIC);
	serve_put16(h + 4, NBD_REPLY_FLAG_DONE);
	serve_put16(h + 6, type);
	serve_put64(h + 8, handle);
	serve_put32(h + 16, (uint32_t)(plen + len));
	serve_sendv(c, iov, 3);
}

/* A read's reply: once structured replies were negotiated, a read must not
 * get a simple reply, errors included. */
void serve_reply_read(struct serve_conn *c, uint64_t handle, uint32_t err, uint64_t off,
		      const void *data, size_t len)
{
	uint8_t p[8];

	if (!c->structured) {
		serve_reply(c, handle, err, data, len);
	} else if (err) {
		serve_put32(p, err);
		serve_put16(p + 4, 0); /* no message */
		serve_chunk(c, handle, NBD_REPLY_TYPE_ERROR, p, 6, NULL, 0);
	} else if (!len) {
		serve_chunk(c, handle, NBD_REPLY_TYPE_NONE, NULL, 0, NULL, 0);
	} else {
		serve_put64(p, off);
		serve_chunk(c, handle, NBD_REPLY_TYPE_OFFSET_DATA, p, 8, data, len);
	}
}

/* The wire's error values are Linux's errno values (the NBD protocol took
 * them from Linux), so the shared errno mapping is the wire value. */
_Static_assert(EPERM == NBD_EPERM && EIO == NBD_EIO && ENOMEM == NBD_ENOMEM &&
		       EINVAL == NBD_EINVAL && ENOSPC == NBD_ENOSPC,
	       "NBD error values are Linux errno values");

uint32_t serve_nbd_error(int result, int detail, uint16_t cmd)
{
	return (uint32_t)nbd_dc_errno(
		result, detail, cmd == NBD_CMD_WRITE || cmd == NBD_CMD_WRITE_ZEROES);
}

/* Powers of two up to a step, whole steps above: little waste, good reuse. */
static size_t serve_buf_round(size_t n)
{
	size_t cap = SERVE_MIN_BUF;

	if (n > SERVE_BUF_STEP)
		return (n + SERVE_BUF_STEP - 1) & ~(size_t)(SERVE_BUF_STEP - 1);
	while (cap < n)
		cap <<= 1;
	return cap;
}

static void serve_cache_drop(struct serve_conn *c, int i)
{
	free(c->cache[i]);
	c->buf_bytes -= c->cache_cap[i];
	c->cache_bytes -= c->cache_cap[i];
	c->ncache--;
	c->cache[i] = c->cache[c->ncache];
	c->cache_cap[i] = c->cache_cap[c->ncache];
}

/* Wait up to timeout_ms (-1: no limit) for completions of this connection and
 * handle them (reply, start a request's next step); a driven queue's wait also
 * ends when fd (-1: none) is readable. 0, or -1 when the wait failed. */
int serve_wait_fd(struct serve_conn *c, int fd, int timeout_ms)
{
	struct pollfd p = { .fd = c->qfd, .events = POLLIN };
	int rc;

	if (c->qfd < 0) {
		/* Driven: this call also hands the requests submitted since the
		 * last one to the backend. */
		rc = dc_queue_wait_fd(c->q, fd, timeout_ms);
		if (rc < 0 && rc != -EINTR) {
			serve_log(c, "wait: %s", strerror(-rc));
			return -1;
		}
	} else if (poll(&p, 1, timeout_ms) < 0 && errno != EINTR) {
		serve_log(c, "poll: %s", strerror(errno));
		return -1;
	}
	serve_reap(c);
	return 0;
}

int serve_wait(struct serve_conn *c, int timeout_ms)
{
	return serve_wait_fd(c, -1, timeout_ms);
}

/* A buffer of at least n bytes: the smallest idle one that fits, or a new one
 * within the connection's budget. */
static void *serve_buf_get(struct serve_conn *c, size_t n, size_t *cap)
{
	size_t need = serve_buf_round(n);
	void *p;

	for (;;) {
		int best = -1;

		/* Newest first among equals: the buffer last freed is the one
		 * most likely still in the CPU's cache. */
		for (int i = c->ncache - 1; i >= 0; i--)
			if (c->cache_cap[i] >= n &&
			    (best < 0 || c->cache_cap[i] < c->cache_cap[best]))
				best = i;
		if (best >= 0) {
			p = c->cache[best];
			*cap = c->cache_cap[best];
			c->cache_bytes -= *cap;
			c->ncache--;
			c->cache[best] = c->cache[c->ncache];
			c->cache_cap[best] = c->cache_cap[c->ncache];
			return p;
		}
		if (c->buf_bytes + need <= SERVE_CONN_BUF_BYTES || !c->inflight)
			break;
		if (c->ncache) {
			serve_cache_drop(c, 0);
			continue;
		}
		/* Over budget with everything in flight: let some complete. */
		if (serve_wait(c, -1))
			break;
	}
	while (c->ncache && c->buf_bytes + need > SERVE_CONN_BUF_BYTES)
		serve_cache_drop(c, 0);
	if (posix_memalign(&p, SERVE_ALIGN, need))
		return NULL;
	*cap = need;
	c->buf_bytes += need;
	return p;
}

static void serve_buf_put(struct serve_conn *c, void *p, size_t cap)
{
	if (!p)
		return;
	if (c->ncache == SERVE_CACHE || c->cache_bytes + cap > SERVE_CACHE_BYTES) {
		free(p);
		c->buf_bytes -= cap;
		return;
	}
	c->cache[c->ncache] = p;
	c->cache_cap[c->ncache++] = cap;
	c->cache_bytes += cap;
}

void serve_bufs_free(struct serve_conn *c)
{
	while (c->ncache)
		serve_cache_drop(c, c->ncache - 1);
}

struct serve_req *serve_req_new(struct serve_conn *c, const struct serve_req *hdr,
				size_t buflen)
{
	struct serve_req *r = malloc(sizeof(*r));

	if (!r)
		return NULL;
	*r = *hdr;
	r->buf = NULL;
	r->buflen = buflen;
	r->bufcap = 0;
	if (buflen && !(r->buf = serve_buf_get(c, buflen, &r->bufcap))) {
		free(r);
		return NULL;
	}
	c->inflight++;
	return r;
}

void serve_req_free(struct serve_conn *c, struct serve_req *r)
{
	c->inflight--;
	serve_buf_put(c, r->buf, r->bufcap);
	free(r);
}

/* Reply and forget the request. */
void serve_finish(struct serve_conn *c, struct serve_req *r, uint32_t err)
{
	if (r->cmd == NBD_CMD_READ)
		serve_reply_read(c, r->handle, err, r->off, (uint8_t *)r->buf + r->skip,
				 err ? 0 : r->len);
	else
		serve_reply(c, r->handle, err, NULL, 0);
	serve_req_free(c, r);
}

/* Submit r's next disk operation; its data (iovcnt 0: none) is r->iov. */
int serve_submit(struct serve_conn *c, struct serve_req *r, uint32_t op, uint32_t flags,
		 uint64_t sector, uint64_t count, int iovcnt)
{
	struct dc_io io = {
		.op = op,
		.flags = flags,
		.sector = sector,
		.count = count,
		.iov = iovcnt ? r->iov : NULL,
		.iovcnt = iovcnt,
		.user_data = r,
	};

	return dc_submit(c->q, &io);
}

/* Submit the next (up to SERVE_MAX_REQ) chunk of a write-zeroes done by writing. */
int serve_zero_next(struct serve_conn *c, struct serve_req *r)
{
	struct serve_srv *s = c->srv;
	uint64_t bytes = (r->zend - r->zcur) * s->ss;
	uint64_t sector = r->zcur;
	int n = 0;

	if (bytes > SERVE_MAX_REQ)
		bytes = SERVE_MAX_REQ;
	r->zcur += bytes / s->ss;
	while (bytes) {
		size_t k = bytes < SERVE_ZERO_CHUNK ? (size_t)bytes : SERVE_ZERO_CHUNK;

		r->iov[n].iov_base = s->zeroes;
		r->iov[n].iov_len = k;
		n++;
		bytes -= k;
	}
	return serve_submit(c, r, DC_OP_WRITE,
			    r->flags & NBD_CMD_FLAG_FUA ? DC_IO_FUA : 0, sector, 0, n);
}

/* A finished disk operation: chain the next step or reply. */
static void serve_complete(struct serve_conn *c, struct serve_req *r, int result,
			   int detail)
{
	int rc;

	if (r->cmd == NBD_CMD_TRIM && result == DC_E_UNSUPPORTED) {
		result = 0; /* trim is only a hint */
		r->then_flush = false;
	}
	if (r->zero_unmap && r->flags & NBD_CMD_FLAG_FAST_ZERO &&
	    (result == DC_E_UNSUPPORTED || result == DC_E_INVALID_INPUT)) {
		serve_finish(c, r, NBD_ENOTSUP); /* writing would not be fast */
		return;
	}
	if (r->zero_unmap &&
	    (result == DC_E_UNSUPPORTED || result == DC_E_INVALID_INPUT)) {
		/* The chain would not unmap after all: write the zeroes. */
		r->zero_unmap = false;
		r->then_flush = false;
		r->zcur = r->off / c->srv->ss;
		rc = serve_zero_next(c, r);
		goto submitted;
	}
	if (!result && r->zcur < r->zend) {
		rc = serve_zero_next(c, r);
		goto submitted;
	}
	if (!result && r->then_flush) {
		r->then_flush = false;
		rc = serve_submit(c, r, DC_OP_FLUSH, 0, 0, 0, 0);
		goto submitted;
	}
	serve_finish(c, r, serve_nbd_error(result, detail, r->cmd));
	return;
submitted:
	if (rc < 0)
		serve_finish(c, r, serve_nbd_error(rc, 0, r->cmd));
}

void serve_start(struct serve_conn *c, struct serve_req *r, int rc)
{
	if (rc < 0)
		serve_finish(c, r, serve_nbd_error(rc, 0, r->cmd));
}

void serve_reap(struct serve_conn *c)
{
	struct dc_completion done[SERVE_REAP];
	int n;

	c->batching = true;
	while ((n = dc_queue_reap(c->q, done, SERVE_REAP)) > 0)
		for (int i = 0; i < n; i++)
			serve_complete(c, done[i].user_data, done[i].result,
				       done[i].detail);
	c->batching = false;
	serve_batch_flush(c);
}

/* Wait until at most keep requests of this connection are left, sending replies. */
void serve_drain(struct serve_conn *c, unsigned keep)
{
	while (c->inflight > keep && !serve_wait(c, -1))
		;
}
