/* SPDX-License-Identifier: MIT */
/*
 * diskctl serve: export a diskcore disk over the NBD protocol.
 *
 * Fixed newstyle handshake (EXPORT_NAME, INFO, GO, LIST, ABORT; everything else,
 * structured replies included, is answered "unsupported"), then simple replies.
 * The disk is opened once and shared by every connection, so a flush covers the
 * writes of all connections (hence CAN_MULTI_CONN). Each connection has its own
 * thread and DC_QUEUE_POLL queue: requests are read and submitted while earlier
 * ones are in flight, and replies go out in completion order, matched by handle.
 *
 * Alignment: the minimum block size advertised is the disk's sector size. Reads
 * that are not aligned are widened to whole sectors; unaligned writes are done
 * by read-modify-write after the connection's in-flight requests drained; trims
 * are shrunk to the whole sectors they cover.
 */
#include "serve.h"

#include <diskcore/diskcore.h>

#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* --- protocol constants (values from the NBD protocol document) ------------ */

#define NBD_MAGIC UINT64_C(0x4e42444d41474943)	  /* "NBDMAGIC" */
#define NBD_IHAVEOPT UINT64_C(0x49484156454f5054) /* "IHAVEOPT" */
#define NBD_OPT_REPLY_MAGIC UINT64_C(0x3e889045565a9)
#define NBD_REQUEST_MAGIC UINT32_C(0x25609513)
#define NBD_SIMPLE_REPLY_MAGIC UINT32_C(0x67446698)

/* handshake flags (server) and client flags */
#define NBD_FLAG_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_NO_ZEROES (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES (1u << 1)

/* transmission flags */
#define NBD_FLAG_HAS_FLAGS (1u << 0)
#define NBD_FLAG_READ_ONLY (1u << 1)
#define NBD_FLAG_SEND_FLUSH (1u << 2)
#define NBD_FLAG_SEND_FUA (1u << 3)
#define NBD_FLAG_SEND_TRIM (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_CAN_MULTI_CONN (1u << 8)

enum {
	NBD_OPT_EXPORT_NAME = 1,
	NBD_OPT_ABORT = 2,
	NBD_OPT_LIST = 3,
	NBD_OPT_INFO = 6,
	NBD_OPT_GO = 7,
};

#define NBD_REP_ACK UINT32_C(1)
#define NBD_REP_SERVER UINT32_C(2)
#define NBD_REP_INFO UINT32_C(3)
#define NBD_REP_ERR_UNSUP UINT32_C(0x80000001)
#define NBD_REP_ERR_INVALID UINT32_C(0x80000003)
#define NBD_REP_ERR_UNKNOWN UINT32_C(0x80000006)

enum {
	NBD_INFO_EXPORT = 0,
	NBD_INFO_NAME = 1,
	NBD_INFO_DESCRIPTION = 2,
	NBD_INFO_BLOCK_SIZE = 3,
};

enum {
	NBD_CMD_READ = 0,
	NBD_CMD_WRITE = 1,
	NBD_CMD_DISC = 2,
	NBD_CMD_FLUSH = 3,
	NBD_CMD_TRIM = 4,
	NBD_CMD_WRITE_ZEROES = 6,
};
#define NBD_CMD_FLAG_FUA (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE (1u << 1)

/* error values on the wire (fixed by the protocol, not the host's errno) */
#define NBD_EPERM 1
#define NBD_EIO 5
#define NBD_ENOMEM 12
#define NBD_EINVAL 22
#define NBD_ENOSPC 28

/* --- limits --------------------------------------------------------------- */

#define SERVE_MAX_REQ (32u << 20) /* largest read/write; advertised maximum */
#define SERVE_MAX_OPT 65536u	  /* largest option payload kept */
#define SERVE_MAX_OPTIONS 4096	  /* options per handshake */
#define SERVE_MAX_INFLIGHT 64	  /* requests per connection */
#define SERVE_MAX_INFLIGHT_BYTES (128u << 20)
#define SERVE_ZERO_CHUNK (1u << 20) /* one iovec of the shared zero buffer */
#define SERVE_ZERO_IOVS (SERVE_MAX_REQ / SERVE_ZERO_CHUNK)
#define SERVE_ALIGN 4096 /* buffers suit O_DIRECT backends */
#define SERVE_REAP 32
#define SERVE_CACHE 16 /* idle buffers kept per connection */
#define SERVE_CACHE_BYTES (64u << 20)
#define SERVE_MIN_BUF (64u << 10)

/* --- state ---------------------------------------------------------------- */

struct serve_srv {
	dc_disk *disk;
	struct dc_info info;
	uint64_t size; /* export size in bytes, fixed at open */
	uint32_t ss;   /* sector size */
	uint16_t tflags;
	bool ro;
	bool verbose;
	const char *export_name;
	char desc[64];
	void *zeroes; /* SERVE_ZERO_CHUNK bytes, never written */

	pthread_mutex_t lock; /* protects conns */
	struct serve_conn *conns;
	int done_fd; /* eventfd: a connection thread finished */
	unsigned next_id;
};

struct serve_conn {
	struct serve_srv *srv;
	struct serve_conn *next;
	pthread_t thread;
	bool finished; /* under srv->lock */
	unsigned id;
	int fd;
	dc_queue *q;
	int qfd;
	uint8_t *optbuf;
	bool no_zeroes;
	bool closing; /* read no more requests */
	bool broken;  /* the socket failed: replies are dropped */
	unsigned inflight;
	size_t inflight_bytes;
	/* Idle request buffers: reusing them avoids an mmap, page faults and an
	 * munmap (with its TLB shootdown) per large request. */
	void *cache[SERVE_CACHE];
	size_t cache_cap[SERVE_CACHE];
	int ncache;
	size_t cache_bytes;
};

/* One NBD request from the moment it was read until its reply. */
struct serve_req {
	uint64_t handle;
	uint64_t off;
	uint32_t len;
	uint16_t cmd;
	uint16_t flags;
	void *buf; /* sector-aligned bounce of [off - skip, ...) */
	size_t buflen;
	size_t bufcap;
	size_t skip;	     /* where the client's bytes start in buf */
	bool then_flush;     /* flush after the operation (FUA on trim/zero-by-unmap) */
	bool zero_unmap;     /* write-zeroes done by unmap; fall back to writing */
	uint64_t zcur, zend; /* write-zeroes by writing: next and end sector */
	struct iovec iov[SERVE_ZERO_IOVS + 1];
};

static void serve_log(struct serve_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void serve_log(struct serve_conn *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c)
		fprintf(stderr, "diskctl serve: connection %u: %s\n", c->id, msg);
	else
		fprintf(stderr, "diskctl serve: %s\n", msg);
}

/* --- wire helpers --------------------------------------------------------- */

static void serve_put16(uint8_t *p, uint16_t v)
{
	v = htobe16(v);
	memcpy(p, &v, 2);
}

static void serve_put32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

static void serve_put64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

static uint16_t serve_get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return be16toh(v);
}

static uint32_t serve_get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return be32toh(v);
}

static uint64_t serve_get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return be64toh(v);
}

/* 0 when all n bytes arrived; -1 on end of stream or error. */
static int serve_recv(struct serve_conn *c, void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n) {
		ssize_t r = read(c->fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Read and drop n bytes (a payload we refuse). */
static int serve_skip(struct serve_conn *c, uint64_t n)
{
	uint8_t sink[16384];

	while (n) {
		size_t k = n < sizeof(sink) ? (size_t)n : sizeof(sink);

		if (serve_recv(c, sink, k))
			return -1;
		n -= k;
	}
	return 0;
}

/* Send all of iov; a failure marks the connection broken (later sends are dropped). */
static int serve_sendv(struct serve_conn *c, struct iovec *iov, int iovcnt)
{
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };

	if (c->broken)
		return -1;
	while (m.msg_iovlen) {
		ssize_t r = sendmsg(c->fd, &m, MSG_NOSIGNAL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			if (c->srv->verbose)
				serve_log(c, "send: %s", strerror(errno));
			c->broken = true;
			c->closing = true;
			return -1;
		}
		while (m.msg_iovlen && (size_t)r >= m.msg_iov->iov_len) {
			r -= (ssize_t)m.msg_iov->iov_len;
			m.msg_iov++;
			m.msg_iovlen--;
		}
		if (m.msg_iovlen) {
			m.msg_iov->iov_base = (uint8_t *)m.msg_iov->iov_base + r;
			m.msg_iov->iov_len -= (size_t)r;
		}
	}
	return 0;
}

static int serve_send(struct serve_conn *c, const void *buf, size_t n)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = n };

	return serve_sendv(c, &iov, 1);
}

/* --- handshake ------------------------------------------------------------ */

static int serve_opt_reply(struct serve_conn *c, uint32_t opt, uint32_t type,
			   const void *data, uint32_t len)
{
	uint8_t h[20];
	struct iovec iov[2] = {
		{ .iov_base = h, .iov_len = sizeof(h) },
		{ .iov_base = (void *)data, .iov_len = len },
	};

	serve_put64(h, NBD_OPT_REPLY_MAGIC);
	serve_put32(h + 8, opt);
	serve_put32(h + 12, type);
	serve_put32(h + 16, len);
	return serve_sendv(c, iov, len ? 2 : 1);
}

static int serve_opt_error(struct serve_conn *c, uint32_t opt, uint32_t type,
			   const char *msg)
{
	if (c->srv->verbose)
		serve_log(c, "option %" PRIu32 ": %s", opt, msg);
	return serve_opt_reply(c, opt, type, msg, (uint32_t)strlen(msg));
}

/* The empty name is the default export; the configured name is accepted too. */
static bool serve_name_ok(const struct serve_srv *s, const uint8_t *name, uint32_t len)
{
	return !len ||
	       (len == strlen(s->export_name) && !memcmp(name, s->export_name, len));
}

static int serve_info_reply(struct serve_conn *c, uint32_t opt, uint16_t type,
			    const void *data, uint32_t len)
{
	uint8_t b[2 + 4096];

	if (len > sizeof(b) - 2)
		len = sizeof(b) - 2;
	serve_put16(b, type);
	memcpy(b + 2, data, len);
	return serve_opt_reply(c, opt, NBD_REP_INFO, b, len + 2);
}

/* NBD_OPT_INFO / NBD_OPT_GO. Returns 1 to enter transmission, 0 to go on, -1 to drop. */
static int serve_opt_info(struct serve_conn *c, uint32_t opt, const uint8_t *d,
			  uint32_t len)
{
	struct serve_srv *s = c->srv;
	uint32_t pref =
		s->info.physical_sector_size > 4096 ? s->info.physical_sector_size : 4096;
	bool want_name = false, want_desc = false;
	uint32_t namelen;
	uint16_t nreq;
	uint8_t b[14];

	if (len < 6 || (namelen = serve_get32(d)) > len - 6)
		return serve_opt_error(c, opt, NBD_REP_ERR_INVALID, "malformed request");
	nreq = serve_get16(d + 4 + namelen);
	if (len != 6 + namelen + 2u * nreq)
		return serve_opt_error(c, opt, NBD_REP_ERR_INVALID,
				       "request length does not match its info count");
	for (uint16_t i = 0; i < nreq; i++) {
		uint16_t t = serve_get16(d + 6 + namelen + 2u * i);

		want_name |= t == NBD_INFO_NAME;
		want_desc |= t == NBD_INFO_DESCRIPTION;
	}
	if (!serve_name_ok(s, d + 4, namelen)) {
		char msg[256];

		snprintf(msg, sizeof(msg), "no such export; this server exports '%s'",
			 s->export_name);
		return serve_opt_error(c, opt, NBD_REP_ERR_UNKNOWN, msg);
	}
	serve_put64(b, s->size);
	serve_put16(b + 8, s->tflags);
	if (serve_info_reply(c, opt, NBD_INFO_EXPORT, b, 10))
		return -1;
	/* Sent unasked too: clients that do not ask may ignore it (we cope). */
	serve_put32(b, s->ss);
	serve_put32(b + 4, pref);
	serve_put32(b + 8, SERVE_MAX_REQ);
	if (serve_info_reply(c, opt, NBD_INFO_BLOCK_SIZE, b, 12))
		return -1;
	if (want_name && serve_info_reply(c, opt, NBD_INFO_NAME, s->export_name,
					  (uint32_t)strlen(s->export_name)))
		return -1;
	if (want_desc && serve_info_reply(c, opt, NBD_INFO_DESCRIPTION, s->desc,
					  (uint32_t)strlen(s->desc)))
		return -1;
	if (serve_opt_reply(c, opt, NBD_REP_ACK, NULL, 0))
		return -1;
	return opt == NBD_OPT_GO;
}

/* Returns 0 to enter transmission, -1 to drop the connection. */
static int serve_handshake(struct serve_conn *c)
{
	struct serve_srv *s = c->srv;
	uint8_t b[18];
	uint32_t cflags;

	serve_put64(b, NBD_MAGIC);
	serve_put64(b + 8, NBD_IHAVEOPT);
	serve_put16(b + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	if (serve_send(c, b, 18) || serve_recv(c, b, 4))
		return -1;
	cflags = serve_get32(b);
	if (cflags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
		serve_log(c, "unknown client flags 0x%" PRIx32 ", dropped", cflags);
		return -1;
	}
	c->no_zeroes = cflags & NBD_FLAG_C_NO_ZEROES;

	for (int n = 0; n < SERVE_MAX_OPTIONS; n++) {
		uint32_t opt, len;
		uint8_t h[16];
		int rc = 0;

		if (serve_recv(c, h, 16))
			return -1;
		if (serve_get64(h) != NBD_IHAVEOPT) {
			serve_log(c, "bad option magic, dropped");
			return -1;
		}
		opt = serve_get32(h + 8);
		len = serve_get32(h + 12);
		if (len > SERVE_MAX_OPT) {
			if (opt == NBD_OPT_EXPORT_NAME || serve_skip(c, len))
				return -1;
			if (serve_opt_error(c, opt, NBD_REP_ERR_INVALID,
					    "option data too long"))
				return -1;
			continue;
		}
		if (serve_recv(c, c->optbuf, len))
			return -1;
		switch (opt) {
		case NBD_OPT_EXPORT_NAME: {
			uint8_t r[10 + 124] = { 0 };

			if (!serve_name_ok(s, c->optbuf, len)) {
				serve_log(c, "unknown export name requested, dropped");
				return -1;
			}
			serve_put64(r, s->size);
			serve_put16(r + 8, s->tflags);
			return serve_send(c, r, c->no_zeroes ? 10 : sizeof(r));
		}
		case NBD_OPT_ABORT:
			serve_opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
			return -1;
		case NBD_OPT_LIST: {
			uint32_t nl = (uint32_t)strlen(s->export_name);
			uint8_t r[4 + 4096];

			if (len) {
				rc = serve_opt_error(c, opt, NBD_REP_ERR_INVALID,
						     "LIST takes no data");
				break;
			}
			serve_put32(r, nl);
			memcpy(r + 4, s->export_name, nl);
			rc = serve_opt_reply(c, opt, NBD_REP_SERVER, r, 4 + nl);
			if (!rc)
				rc = serve_opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
			break;
		}
		case NBD_OPT_INFO:
		case NBD_OPT_GO:
			rc = serve_opt_info(c, opt, c->optbuf, len);
			if (rc == 1)
				return 0;
			break;
		default:
			/* STARTTLS, STRUCTURED_REPLY, meta contexts, ...: not offered. */
			rc = serve_opt_reply(c, opt, NBD_REP_ERR_UNSUP, NULL, 0);
			break;
		}
		if (rc < 0)
			return -1;
	}
	serve_log(c, "more than %d options, dropped", SERVE_MAX_OPTIONS);
	return -1;
}

/* --- transmission --------------------------------------------------------- */

static uint32_t serve_nbd_error(int result, int detail, uint16_t cmd)
{
	bool write = cmd == NBD_CMD_WRITE || cmd == NBD_CMD_WRITE_ZEROES;

	switch (result) {
	case 0:
		return 0;
	case DC_E_ILLEGAL_BLOCK:
		return write ? NBD_ENOSPC : NBD_EINVAL;
	case DC_E_INVALID_INPUT:
	case DC_E_UNSUPPORTED:
		return NBD_EINVAL;
	case DC_E_READ_ONLY:
		return NBD_EPERM;
	case -ENOMEM:
		return NBD_ENOMEM;
	case DC_E_IO:
		if (detail == ENOSPC || detail == EDQUOT || detail == EFBIG)
			return NBD_ENOSPC;
		return NBD_EIO;
	default:
		return NBD_EIO;
	}
}

static void serve_reply(struct serve_conn *c, uint64_t handle, uint32_t err,
			const void *data, size_t len)
{
	uint8_t h[16];
	struct iovec iov[2] = {
		{ .iov_base = h, .iov_len = sizeof(h) },
		{ .iov_base = (void *)data, .iov_len = len },
	};

	serve_put32(h, NBD_SIMPLE_REPLY_MAGIC);
	serve_put32(h + 4, err);
	serve_put64(h + 8, handle);
	serve_sendv(c, iov, !err && len ? 2 : 1);
}

/* A buffer of at least n bytes: the smallest idle one that fits, or a new one. */
static void *serve_buf_get(struct serve_conn *c, size_t n, size_t *cap)
{
	int best = -1;
	void *p;

	for (int i = 0; i < c->ncache; i++)
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
	*cap = SERVE_MIN_BUF;
	while (*cap < n)
		*cap <<= 1;
	return posix_memalign(&p, SERVE_ALIGN, *cap) ? NULL : p;
}

static void serve_buf_put(struct serve_conn *c, void *p, size_t cap)
{
	if (!p)
		return;
	if (c->ncache == SERVE_CACHE || c->cache_bytes + cap > SERVE_CACHE_BYTES) {
		free(p);
		return;
	}
	c->cache[c->ncache] = p;
	c->cache_cap[c->ncache++] = cap;
	c->cache_bytes += cap;
}

static struct serve_req *serve_req_new(struct serve_conn *c, const struct serve_req *hdr,
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
	c->inflight_bytes += buflen;
	return r;
}

static void serve_req_free(struct serve_conn *c, struct serve_req *r)
{
	c->inflight--;
	c->inflight_bytes -= r->buflen;
	serve_buf_put(c, r->buf, r->bufcap);
	free(r);
}

/* Reply and forget the request. */
static void serve_finish(struct serve_conn *c, struct serve_req *r, uint32_t err)
{
	bool data = r->cmd == NBD_CMD_READ && !err;

	serve_reply(c, r->handle, err, data ? (uint8_t *)r->buf + r->skip : NULL,
		    data ? r->len : 0);
	serve_req_free(c, r);
}

static int serve_submit(struct serve_conn *c, struct serve_req *r, uint32_t op,
			uint32_t flags, uint64_t sector, uint64_t count,
			const struct iovec *iov, int iovcnt)
{
	struct dc_io io = {
		.op = op,
		.flags = flags,
		.sector = sector,
		.count = count,
		.iov = iov,
		.iovcnt = iovcnt,
		.user_data = r,
	};

	return dc_submit(c->q, &io);
}

/* Submit the next (up to SERVE_MAX_REQ) chunk of a write-zeroes done by writing. */
static int serve_zero_next(struct serve_conn *c, struct serve_req *r)
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
			    r->flags & NBD_CMD_FLAG_FUA ? DC_IO_FUA : 0, sector, 0,
			    r->iov, n);
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
		rc = serve_submit(c, r, DC_OP_FLUSH, 0, 0, 0, NULL, 0);
		goto submitted;
	}
	serve_finish(c, r, serve_nbd_error(result, detail, r->cmd));
	return;
submitted:
	if (rc < 0)
		serve_finish(c, r, serve_nbd_error(rc, 0, r->cmd));
}

static void serve_start(struct serve_conn *c, struct serve_req *r, int rc)
{
	if (rc < 0)
		serve_finish(c, r, serve_nbd_error(rc, 0, r->cmd));
}

static void serve_reap(struct serve_conn *c)
{
	struct dc_completion done[SERVE_REAP];
	int n;

	while ((n = dc_queue_reap(c->q, done, SERVE_REAP)) > 0)
		for (int i = 0; i < n; i++)
			serve_complete(c, done[i].user_data, done[i].result,
				       done[i].detail);
}

/* Wait until at most keep requests of this connection are left, sending replies. */
static void serve_drain(struct serve_conn *c, unsigned keep)
{
	while (c->inflight > keep) {
		struct pollfd p = { .fd = c->qfd, .events = POLLIN };

		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			break; /* cannot happen with a valid fd; do not spin */
		serve_reap(c);
	}
}

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

	if (h->flags & ~NBD_CMD_FLAG_FUA || h->len > SERVE_MAX_REQ ||
	    !serve_in_range(s, h->off, h->len)) {
		serve_reply(c, h->handle, NBD_EINVAL, NULL, 0);
		return;
	}
	if (!h->len) {
		serve_reply(c, h->handle, 0, NULL, 0);
		return;
	}
	n = serve_widen(s, h, &skip);
	r = serve_req_new(c, h, n);
	if (!r) {
		serve_reply(c, h->handle, NBD_ENOMEM, NULL, 0);
		return;
	}
	r->skip = skip;
	r->iov[0] = (struct iovec){ .iov_base = r->buf, .iov_len = n };
	serve_start(c, r,
		    serve_submit(c, r, DC_OP_READ, 0, (h->off - skip) / s->ss, 0, r->iov,
				 1));
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

/* NBD_CMD_WRITE and NBD_CMD_WRITE_ZEROES. */
static void serve_cmd_write(struct serve_conn *c, const struct serve_req *h)
{
	struct serve_srv *s = c->srv;
	bool zero = h->cmd == NBD_CMD_WRITE_ZEROES;
	uint16_t allowed = NBD_CMD_FLAG_FUA | (zero ? NBD_CMD_FLAG_NO_HOLE : 0);
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
	if (err || !h->len) {
		if (serve_skip(c, payload)) {
			c->closing = true;
			return;
		}
		serve_reply(c, h->handle, err, NULL, 0);
		return;
	}

	if (zero && aligned) {
		r = serve_req_new(c, h, 0);
		if (!r) {
			serve_reply(c, h->handle, NBD_ENOMEM, NULL, 0);
			return;
		}
		r->zcur = h->off / s->ss;
		r->zend = r->zcur + h->len / s->ss;
		if (!(h->flags & NBD_CMD_FLAG_NO_HOLE) &&
		    s->info.unmap_behavior == DC_UNMAP_ZEROES) {
			/* Unmapped sectors read as zero: no data to move. */
			r->zero_unmap = true;
			r->then_flush = fua;
			r->zcur = r->zend;
			rc = serve_submit(c, r, DC_OP_UNMAP, 0, h->off / s->ss,
					  h->len / s->ss, NULL, 0);
		} else {
			rc = serve_zero_next(c, r);
		}
		serve_start(c, r, rc);
		return;
	}

	n = serve_widen(s, h, &skip);
	r = serve_req_new(c, h, n);
	if (!r) {
		if (serve_skip(c, payload))
			c->closing = true;
		else
			serve_reply(c, h->handle, NBD_ENOMEM, NULL, 0);
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
		    serve_submit(c, r, DC_OP_WRITE, fua, (h->off - skip) / s->ss, 0,
				 r->iov, 1));
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
	serve_start(c, r,
		    serve_submit(c, r, DC_OP_UNMAP, 0, first, end - first, NULL, 0));
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
	serve_start(c, r, serve_submit(c, r, DC_OP_FLUSH, 0, 0, 0, NULL, 0));
}

/* Read one request from the socket and start it. */
static void serve_request(struct serve_conn *c)
{
	struct serve_req h = { 0 };
	uint8_t b[28];

	if (serve_recv(c, b, sizeof(b))) {
		c->closing = true; /* client went away (maybe mid-header) */
		return;
	}
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
	default:
		if (c->srv->verbose)
			serve_log(c, "unknown command %u", h.cmd);
		serve_reply(c, h.handle, NBD_EINVAL, NULL, 0);
		break;
	}
}

static void serve_transmit(struct serve_conn *c)
{
	while (!c->closing || c->inflight) {
		struct pollfd p[2] = {
			{ .fd = c->qfd, .events = POLLIN },
			{ .fd = c->fd, .events = POLLIN },
		};
		bool more = !c->closing && c->inflight < SERVE_MAX_INFLIGHT &&
			    c->inflight_bytes < SERVE_MAX_INFLIGHT_BYTES;

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
		if (more && p[1].revents)
			serve_request(c);
	}
}

static void *serve_conn_main(void *arg)
{
	struct serve_conn *c = arg;
	struct serve_srv *s = c->srv;
	int rc;

	rc = dc_queue_open(s->disk, DC_QUEUE_POLL, &c->q);
	if (rc < 0) {
		serve_log(c, "queue: %s", dc_last_error());
	} else {
		c->qfd = dc_queue_fd(c->q);
		if (!serve_handshake(c)) {
			if (s->verbose)
				serve_log(c, "transmission");
			serve_transmit(c);
		}
		dc_queue_close(c->q);
	}
	while (c->ncache)
		free(c->cache[--c->ncache]);
	if (s->verbose)
		serve_log(c, "closed");
	pthread_mutex_lock(&s->lock);
	c->finished = true;
	pthread_mutex_unlock(&s->lock);
	eventfd_write(s->done_fd, 1);
	return NULL;
}

/* --- listening and the accept loop ---------------------------------------- */

/* Bind under a temporary name and rename once listening, so the path appears
 * only when connections are accepted. */
static int serve_listen_unix(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char tmp[sizeof(a.sun_path)];
	struct stat st;
	int fd;

	/* room for ".PID" and the NUL */
	if (strlen(path) > sizeof(a.sun_path) - 12) {
		serve_log(NULL, "socket path '%s' is too long (at most %zu bytes)", path,
			  sizeof(a.sun_path) - 12);
		return -1;
	}
	snprintf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid());
	if (!lstat(path, &st) && !S_ISSOCK(st.st_mode)) {
		serve_log(NULL, "'%s' exists and is not a socket", path);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		serve_log(NULL, "socket: %s", strerror(errno));
		return -1;
	}
	unlink(tmp);
	memcpy(a.sun_path, tmp, strlen(tmp) + 1);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 64)) {
		serve_log(NULL, "listen on '%s': %s", tmp, strerror(errno));
		unlink(tmp);
		close(fd);
		return -1;
	}
	if (rename(tmp, path)) {
		serve_log(NULL, "rename '%s' to '%s': %s", tmp, path, strerror(errno));
		unlink(tmp);
		close(fd);
		return -1;
	}
	serve_log(NULL, "listening on unix:%s", path);
	return fd;
}

static int serve_listen_tcp(const char *addr, const char *port)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	};
	struct addrinfo *res, *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[NI_MAXHOST], serv[NI_MAXSERV];
	int fd = -1, rc, one = 1, err = 0;

	rc = getaddrinfo(addr, port, &hints, &res);
	if (rc) {
		serve_log(NULL, "address '%s' port '%s': %s", addr, port,
			  gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (!bind(fd, ai->ai_addr, ai->ai_addrlen) && !listen(fd, 64))
			break;
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		serve_log(NULL, "listen on %s:%s: %s", addr, port, strerror(err));
		return -1;
	}
	if (!getsockname(fd, (struct sockaddr *)&ss, &sl) &&
	    !getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), serv,
			 sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV))
		serve_log(NULL, "listening on %s%s%s:%s", strchr(host, ':') ? "[" : "",
			  host, strchr(host, ':') ? "]" : "", serv);
	return fd;
}

/* Join connection threads that finished; returns how many are still running. */
static unsigned serve_reap_conns(struct serve_srv *s)
{
	struct serve_conn **pp, *c;
	unsigned live = 0;
	uint64_t v;

	eventfd_read(s->done_fd, &v);
	pthread_mutex_lock(&s->lock);
	for (pp = &s->conns; (c = *pp);) {
		if (!c->finished) {
			live++;
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		pthread_join(c->thread, NULL);
		close(c->fd);
		free(c->optbuf);
		free(c);
	}
	pthread_mutex_unlock(&s->lock);
	return live;
}

/* Returns true when a connection was taken. */
static bool serve_accept(struct serve_srv *s, int lfd)
{
	struct serve_conn *c;
	int fd, one = 1;

	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			serve_log(NULL, "accept: %s", strerror(errno));
		return false;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		   sizeof(one)); /* fails on unix: fine */
	c = calloc(1, sizeof(*c));
	if (c)
		c->optbuf = malloc(SERVE_MAX_OPT);
	if (!c || !c->optbuf) {
		serve_log(NULL, "out of memory for a connection");
		free(c);
		close(fd);
		return false;
	}
	c->srv = s;
	c->fd = fd;
	c->qfd = -1;
	pthread_mutex_lock(&s->lock);
	c->id = ++s->next_id;
	if (s->verbose)
		serve_log(c, "accepted");
	if (pthread_create(&c->thread, NULL, serve_conn_main, c)) {
		pthread_mutex_unlock(&s->lock);
		serve_log(c, "cannot start a thread");
		close(fd);
		free(c->optbuf);
		free(c);
		return false;
	}
	c->next = s->conns;
	s->conns = c;
	pthread_mutex_unlock(&s->lock);
	return true;
}

/* Accept until a signal (or, with once, until the first connection ended). */
static void serve_loop(struct serve_srv *s, int lfd, int sfd, bool once,
		       const char *unix_path)
{
	bool stopping = false;
	unsigned live = 0;

	for (;;) {
		struct pollfd p[3] = {
			{ .fd = sfd, .events = POLLIN },
			{ .fd = s->done_fd, .events = POLLIN },
			{ .fd = lfd, .events = POLLIN },
		};

		if (stopping && !live)
			break;
		if (poll(p, lfd >= 0 ? 3 : 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			serve_log(NULL, "poll: %s", strerror(errno));
			break;
		}
		if (p[0].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) > 0 && !stopping)
				serve_log(NULL, "signal %u: stopping", si.ssi_signo);
			stopping = true;
		}
		if (lfd >= 0 && p[2].revents && serve_accept(s, lfd) && once)
			stopping = true;
		if (stopping && lfd >= 0) {
			close(lfd);
			lfd = -1;
			if (unix_path)
				unlink(unix_path);
		}
		if (p[0].revents & POLLIN) {
			/* Wake every connection: reads end, in-flight I/O still completes. */
			pthread_mutex_lock(&s->lock);
			for (struct serve_conn *c = s->conns; c; c = c->next)
				if (!c->finished)
					shutdown(c->fd, SHUT_RDWR);
			pthread_mutex_unlock(&s->lock);
		}
		live = serve_reap_conns(s);
	}
	if (lfd >= 0) {
		close(lfd);
		if (unix_path)
			unlink(unix_path);
	}
}

/* --- command line --------------------------------------------------------- */

__attribute__((noreturn, format(printf, 1, 2))) static void serve_usage(const char *fmt,
									...)
{
	va_list ap;

	fprintf(stderr, "diskctl serve: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'diskctl serve --help'.\n");
	exit(2);
}

int serve_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "ro", no_argument, NULL, 'r' },
		{ "unix", required_argument, NULL, 'u' },
		{ "port", required_argument, NULL, 'p' },
		{ "bind", required_argument, NULL, 'b' },
		{ "export", required_argument, NULL, 'e' },
		{ "once", no_argument, NULL, 'o' },
		{ "verbose", no_argument, NULL, 'v' },
		{ 0 },
	};
	const char *unix_path = NULL, *port = NULL, *bind_addr = NULL;
	struct serve_srv s = { .export_name = "" };
	bool once = false;
	sigset_t sigs;
	int c, rc, lfd, sfd;
	char *end;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hv", lo, NULL)) != -1) {
		switch (c) {
		case 'h':
			printf("usage: diskctl %s", SERVE_USAGE);
			return 0;
		case 'r':
			s.ro = true;
			break;
		case 'u':
			unix_path = optarg;
			break;
		case 'p':
			errno = 0;
			if (strtoul(optarg, &end, 10) > 65535 || *end || !*optarg ||
			    errno)
				serve_usage("--port '%s': expected a number 0..65535",
					    optarg);
			port = optarg;
			break;
		case 'b':
			bind_addr = optarg;
			break;
		case 'e':
			if (strlen(optarg) > 4096)
				serve_usage("--export: a name is at most 4096 bytes");
			s.export_name = optarg;
			break;
		case 'o':
			once = true;
			break;
		case 'v':
			s.verbose = true;
			break;
		case ':':
			serve_usage("option '%s' needs an argument", argv[optind - 1]);
		default:
			if (optopt)
				serve_usage("unknown option '-%c'", optopt);
			serve_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (argc - optind < 1)
		serve_usage("missing SPEC");
	if (argc - optind > 1)
		serve_usage("unexpected argument '%s'", argv[optind + 1]);
	if (!unix_path == !port)
		serve_usage("give exactly one of --unix PATH and --port N");
	if (bind_addr && !port)
		serve_usage("--bind needs --port");

	/* Before any thread exists (the core's pool too), so they all inherit it. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	rc = dc_open(argv[optind], s.ro ? DC_OPEN_READ_ONLY : 0, &s.disk);
	if (rc < 0) {
		serve_log(NULL, "%s", *dc_last_error() ? dc_last_error() : strerror(-rc));
		return 1;
	}
	dc_get_info(s.disk, &s.info);
	s.ss = s.info.sector_size;
	s.size = s.info.sector_count * s.ss;
	s.ro |= !!(s.info.flags & DC_INFO_READ_ONLY);
	s.tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_CAN_MULTI_CONN;
	if (s.ro) {
		s.tflags |= NBD_FLAG_READ_ONLY;
	} else {
		s.tflags |= NBD_FLAG_SEND_WRITE_ZEROES;
		if (s.info.flags & DC_INFO_FUA_RESPECTED)
			s.tflags |= NBD_FLAG_SEND_FUA;
		if (s.info.unmap_behavior != DC_UNMAP_IGNORED)
			s.tflags |= NBD_FLAG_SEND_TRIM;
	}
	snprintf(s.desc, sizeof(s.desc), "diskcore %.24s disk", s.info.disk_type);
	pthread_mutex_init(&s.lock, NULL);
	s.done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (s.done_fd < 0 || sfd < 0 ||
	    posix_memalign(&s.zeroes, SERVE_ALIGN, SERVE_ZERO_CHUNK)) {
		serve_log(NULL, "setup: %s", strerror(errno));
		dc_close(s.disk);
		return 1;
	}
	memset(s.zeroes, 0, SERVE_ZERO_CHUNK);

	lfd = unix_path ? serve_listen_unix(unix_path) :
			  serve_listen_tcp(bind_addr ? bind_addr : "127.0.0.1", port);
	rc = 1;
	if (lfd >= 0) {
		serve_log(NULL, "export '%s': %" PRIu64 " bytes, %s%s", s.export_name,
			  s.size, s.desc, s.ro ? ", read-only" : "");
		serve_loop(&s, lfd, sfd, once, unix_path);
		rc = 0;
	}
	if (!s.ro && dc_flush(s.disk) < 0) {
		serve_log(NULL, "final flush failed");
		rc = 1;
	}
	dc_close(s.disk);
	close(sfd);
	close(s.done_fd);
	free(s.zeroes);
	pthread_mutex_destroy(&s.lock);
	return rc;
}
