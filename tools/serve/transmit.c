/* SPDX-License-Identifier: MIT */
/*
 * diskctl serve: the transmission phase. Requests are read and submitted while
 * earlier ones are in flight; replies go out in completion order, matched by
 * handle.
 *
 * Alignment: the minimum block size advertised is the disk's sector size. Reads
 * that are not aligned are widened to whole sectors; unaligned writes are done
 * by read-modify-write after the connection's in-flight requests drained; trims
 * are shrunk to the whole sectors they cover.
 */
#include "serve-int.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

static bool serve_in_range(const struct serve_srv *s, uint64_t off, uint64_t len)
{
	return off <= s->size && len <= s->size - off;
}

/* Sector-align [off, off + len) into r: buffer and skip. */
static size_t serve_widen(const struct serve_srv *s, const struct serve_req *h,
			  size_t *skip)
{
	uint64_t a0 = h->off & ~(uint64_t)(s->ss - 1);
	uint64_t a1 = (h->off + h->len + s->ss - 1) & ~(uint64_t)(s->ss - 1);

	*skip = (size_t)(h->off - a0);
	return (size_t)(a1 - a0);
}

static void serve_cmd_read(struct serve_conn *c, const struct serve_req *h)
{
	struct serve_srv *s = c->srv;
	struct serve_req *r;
	size_t skip, n;

	/* Over the maximum payload: EINVAL (EOVERFLOW is only for requests
	 * without a payload, and for reads with structured replies). */
	if (h->flags & ~NBD_CMD_FLAG_FUA || h->len > SERVE_MAX_REQ ||
	    !serve_in_range(s, h->off, h->len)) {
		serve_reply_read(c, h->handle, NBD_EINVAL, h->off, NULL, 0);
		return;
	}
	if (!h->len) {
		serve_reply_read(c, h->handle, 0, h->off, NULL, 0);
		return;
	}
	n = serve_widen(s, h, &skip);
	r = serve_req_new(c, h, n);
	if (!r) {
		serve_reply_read(c, h->handle, NBD_ENOMEM, h->off, NULL, 0);
		return;
	}
	r->skip = skip;
	r->iov[0] = (struct iovec){ .iov_base = r->buf, .iov_len = n };
	serve_start(c, r,
		    serve_submit(c, r, DC_OP_READ, 0, (h->off - skip) / s->ss, 0, 1));
}

/* Fill the bytes of r->buf around the client's data from the disk (RMW). */
static int serve_fill_edges(struct serve_conn *c, struct serve_req *r)
{
	struct serve_srv *s = c->srv;
	uint64_t first = (r->off - r->skip) / s->ss;
	uint64_t last = first + r->buflen / s->ss - 1;
	size_t end = r->skip + r->len;
	uint8_t *buf = r->buf, *tmp;
	int rc = 0;

	if (posix_memalign((void **)&tmp, SERVE_ALIGN, s->ss))
		return -ENOMEM;
	if (r->skip) {
		rc = dc_read(s->disk, first, tmp, s->ss);
		if (!rc)
			memcpy(buf, tmp, r->skip);
	}
	if (!rc && end < r->buflen) {
		if (last != first || !r->skip)
			rc = dc_read(s->disk, last, tmp, s->ss);
		if (!rc)
			memcpy(buf + end, tmp + (end - (r->buflen - s->ss)),
			       r->buflen - end);
	}
	free(tmp);
	return rc;
}

/* A write refused before its payload was read: drop the payload (or the
 * connection, when the payload is too large to be worth reading), reply. */
static void serve_refuse_write(struct serve_conn *c, const struct serve_req *h,
			       uint32_t payload, uint32_t err)
{
	if (payload > SERVE_MAX_SKIP) {
		serve_log(c, "write of %" PRIu32 " bytes refused, connection closed",
			  payload);
		serve_reply(c, h->handle, err, NULL, 0);
		c->closing = true;
		return;
	}
	if (serve_skip(c, payload)) {
		c->closing = true;
		return;
	}
	serve_reply(c, h->handle, err, NULL, 0);
}

/* Would write-zeroes be done by unmap (fast), not by writing? */
static bool serve_zero_fast(const struct serve_srv *s, const struct serve_req *h,
			    bool aligned)
{
	return aligned && !(h->flags & NBD_CMD_FLAG_NO_HOLE) &&
	       s->info.unmap_behavior == DC_UNMAP_ZEROES;
}

/* Write-zeroes of whole sectors: by unmap when that reads back zero, else by
 * writing the shared zero buffer. */
static void serve_zero_aligned(struct serve_conn *c, const struct serve_req *h)
{
	struct serve_srv *s = c->srv;
	struct serve_req *r = serve_req_new(c, h, 0);
	int rc;

	if (!r) {
		serve_reply(c, h->handle, NBD_ENOMEM, NULL, 0);
		return;
	}
	r->zcur = h->off / s->ss;
	r->zend = r->zcur + h->len / s->ss;
	if (serve_zero_fast(s, h, true)) {
		/* Unmapped sectors read as zero: no data to move. */
		r->zero_unmap = true;
		r->then_flush = h->flags & NBD_CMD_FLAG_FUA;
		r->zcur = r->zend;
		rc = serve_submit(c, r, DC_OP_UNMAP, 0, h->off / s->ss, h->len / s->ss,
				  0);
	} else {
		rc = serve_zero_next(c, r);
	}
	serve_start(c, r, rc);
}

/* NBD_CMD_WRITE and NBD_CMD_WRITE_ZEROES. */
static void serve_cmd_write(struct serve_conn *c, const struct serve_req *h)
{
	struct serve_srv *s = c->srv;
	bool zero = h->cmd == NBD_CMD_WRITE_ZEROES;
	uint16_t allowed = NBD_CMD_FLAG_FUA |
			   (zero ? NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO : 0);
	uint32_t fua = h->flags & NBD_CMD_FLAG_FUA ? DC_IO_FUA : 0;
	bool aligned = !((h->off | h->len) & (s->ss - 1));
	uint32_t payload = zero ? 0 : h->len;
	uint32_t err = 0;
	struct serve_req *r;
	size_t skip, n;
	int rc;

	if (h->flags & ~allowed)
		err = NBD_EINVAL;
	else if (s->ro)
		err = NBD_EPERM;
	else if (h->len > SERVE_MAX_REQ && !(zero && aligned))
		err = NBD_EINVAL;
	else if (!serve_in_range(s, h->off, h->len))
		err = NBD_ENOSPC;
	else if (h->flags & NBD_CMD_FLAG_FAST_ZERO && !serve_zero_fast(s, h, aligned))
		err = NBD_ENOTSUP; /* the client writes the zeroes itself */
	if (err || !h->len) {
		serve_refuse_write(c, h, payload, err);
		return;
	}
	if (zero && aligned) {
		serve_zero_aligned(c, h);
		return;
	}

	n = serve_widen(s, h, &skip);
	r = serve_req_new(c, h, n);
	if (!r) {
		serve_refuse_write(c, h, payload, NBD_ENOMEM);
		return;
	}
	r->skip = skip;
	if (zero) {
		memset((uint8_t *)r->buf + skip, 0, h->len);
	} else if (serve_recv(c, (uint8_t *)r->buf + skip, h->len)) {
		/* Disconnected mid-request: nothing to reply to. */
		c->closing = true;
		serve_req_free(c, r);
		return;
	}
	if (!aligned) {
		/* Nothing else of ours may be in flight while the edges are read. */
		serve_drain(c, 1);
		rc = serve_fill_edges(c, r);
		if (rc) {
			serve_finish(c, r, serve_nbd_error(rc, 0, r->cmd));
			return;
		}
	}
	r->iov[0] = (struct iovec){ .iov_base = r->buf, .iov_len = n };
	serve_start(c, r,
		    serve_submit(c, r, DC_OP_WRITE, fua, (h->off - skip) / s->ss, 0, 1));
}

static void serve_cmd_trim(struct serve_conn *c, const struct serve_req *h)
{
	struct serve_srv *s = c->srv;
	uint64_t first, end;
	struct serve_req *r;

	if (h->flags & ~NBD_CMD_FLAG_FUA || !serve_in_range(s, h->off, h->len)) {
		serve_reply(c, h->handle, NBD_EINVAL, NULL, 0);
		return;
	}
	if (s->ro) {
		serve_reply(c, h->handle, NBD_EPERM, NULL, 0);
		return;
	}
	/* Only whole sectors inside the range are discarded (the protocol allows it). */
	first = (h->off + s->ss - 1) / s->ss;
	end = (h->off + h->len) / s->ss;
	if (end <= first || s->info.unmap_behavior == DC_UNMAP_IGNORED) {
		serve_reply(c, h->handle, 0, NULL, 0);
		return;
	}
	r = serve_req_new(c, h, 0);
	if (!r) {
		serve_reply(c, h->handle, NBD_ENOMEM, NULL, 0);
		return;
	}
	r->then_flush = h->flags & NBD_CMD_FLAG_FUA;
	serve_start(c, r, serve_submit(c, r, DC_OP_UNMAP, 0, first, end - first, 0));
}

static void serve_cmd_flush(struct serve_conn *c, const struct serve_req *h)
{
	struct serve_req *r;

	if (h->flags & ~NBD_CMD_FLAG_FUA) {
		serve_reply(c, h->handle, NBD_EINVAL, NULL, 0);
		return;
	}
	r = serve_req_new(c, h, 0);
	if (!r) {
		serve_reply(c, h->handle, NBD_ENOMEM, NULL, 0);
		return;
	}
	serve_start(c, r, serve_submit(c, r, DC_OP_FLUSH, 0, 0, 0, 0));
}

/* Block status descriptors being collected from dc_map(). */
struct serve_extents {
	uint8_t *p; /* context id, then (length, flags) pairs */
	unsigned n, max;
};

static int serve_extent(void *arg, const struct dc_extent *e)
{
	struct serve_extents *x = arg;

	/* Within one request, so a length fits in 32 bits; the flags are
	 * NBD_STATE_HOLE and NBD_STATE_ZERO. */
	serve_put32(x->p + 4 + 8 * x->n, (uint32_t)e->length);
	serve_put32(x->p + 8 + 8 * x->n, e->flags & (DC_EXTENT_HOLE | DC_EXTENT_ZERO));
	return ++x->n == x->max; /* 1 stops: the reply may cover less */
}

/* NBD_CMD_BLOCK_STATUS for base:allocation, from the chain's allocation map
 * (synchronously: dc_map() runs on the calling thread). */
static void serve_cmd_block_status(struct serve_conn *c, const struct serve_req *h)
{
	uint8_t p[4 + 8 * SERVE_MAX_EXTENTS];
	struct serve_extents x = { p, 0, SERVE_MAX_EXTENTS };
	int rc;

	if (!c->meta_alloc || h->flags & ~(NBD_CMD_FLAG_REQ_ONE | NBD_CMD_FLAG_FUA) ||
	    !h->len || !serve_in_range(c->srv, h->off, h->len)) {
		serve_reply(c, h->handle, NBD_EINVAL, NULL, 0);
		return;
	}
	if (h->flags & NBD_CMD_FLAG_REQ_ONE)
		x.max = 1;
	serve_put32(p, SERVE_META_ALLOC_ID);
	rc = dc_map(c->srv->disk, h->off, h->len, serve_extent, &x);
	if (rc < 0 || !x.n) {
		if (c->srv->verbose)
			serve_log(c, "block status: %s",
				  rc < 0 ? dc_last_error() : "empty");
		serve_reply(c, h->handle, NBD_EIO, NULL, 0);
		return;
	}
	serve_chunk(c, h->handle, NBD_REPLY_TYPE_BLOCK_STATUS, p, 4 + 8 * (size_t)x.n,
		    NULL, 0);
}

/* Start the request whose 28-byte header is b. */
static void serve_request(struct serve_conn *c, const uint8_t *b)
{
	struct serve_req h = { 0 };

	if (serve_get32(b) != NBD_REQUEST_MAGIC) {
		serve_log(c, "bad request magic 0x%08" PRIx32 ", dropped",
			  serve_get32(b));
		c->closing = true;
		return;
	}
	h.flags = serve_get16(b + 4);
	h.cmd = serve_get16(b + 6);
	h.handle = serve_get64(b + 8);
	h.off = serve_get64(b + 16);
	h.len = serve_get32(b + 24);
	switch (h.cmd) {
	case NBD_CMD_READ:
		serve_cmd_read(c, &h);
		break;
	case NBD_CMD_WRITE:
	case NBD_CMD_WRITE_ZEROES:
		serve_cmd_write(c, &h);
		break;
	case NBD_CMD_DISC:
		c->closing = true;
		break;
	case NBD_CMD_FLUSH:
		serve_cmd_flush(c, &h);
		break;
	case NBD_CMD_TRIM:
		serve_cmd_trim(c, &h);
		break;
	case NBD_CMD_BLOCK_STATUS:
		serve_cmd_block_status(c, &h);
		break;
	default:
		if (c->srv->verbose)
			serve_log(c, "unknown command %u", h.cmd);
		serve_reply(c, h.handle, NBD_EINVAL, NULL, 0);
		break;
	}
}

/* The chain's completions arrive through dc_queue_fd(): sleep on it and the
 * socket together. */
static void serve_transmit_fd(struct serve_conn *c)
{
	uint8_t b[SERVE_REQ_HDR];

	while (!c->closing || c->inflight) {
		struct pollfd p[2] = {
			{ .fd = c->qfd, .events = POLLIN },
			{ .fd = c->fd, .events = POLLIN },
		};
		bool more = !c->closing && c->inflight < SERVE_MAX_INFLIGHT;

		if (poll(p, more ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			serve_log(c, "poll: %s", strerror(errno));
			c->closing = true;
			serve_drain(c, 0);
			break;
		}
		if (p[0].revents)
			serve_reap(c);
		if (!more || !p[1].revents)
			continue;
		if (serve_recv(c, b, sizeof(b)))
			c->closing = true; /* client went away (maybe mid-header) */
		else
			serve_request(c, b);
	}
}

/* A queue driven by dc_queue_wait_fd() (docs/serve.md, "How it works"): the
 * chain's backend reaps on this thread, so a completion crosses no thread,
 * and the same wait ends when the socket brings requests while there is room
 * for more. Requests waiting on the socket are read first, a burst at a
 * time. */
static void serve_transmit_driven(struct serve_conn *c)
{
	uint8_t b[SERVE_REQ_HDR];

	while (!c->closing || c->inflight) {
		bool more = !c->closing && c->inflight < SERVE_MAX_INFLIGHT;
		int got = 0, rc = 0;

		while (more && got < SERVE_BURST &&
		       (rc = serve_recv_nowait(c, b, sizeof(b))) > 0) {
			serve_request(c, b);
			got++;
			more = !c->closing && c->inflight < SERVE_MAX_INFLIGHT;
		}
		if (rc < 0)
			c->closing = true; /* client went away (maybe mid-header) */
		if (!c->inflight) {
			/* Nothing in flight: only the socket can bring work. */
			if (more && !got && serve_wait_socket(c))
				c->closing = true;
			continue;
		}
		if (serve_wait_fd(c, more ? c->fd : -1, got ? 0 : -1)) {
			c->closing = true;
			serve_drain(c, 0);
			break;
		}
	}
}

void serve_transmit(struct serve_conn *c)
{
	if (c->qfd >= 0)
		serve_transmit_fd(c);
	else
		serve_transmit_driven(c);
}
