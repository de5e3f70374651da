/* SPDX-License-Identifier: MIT */
/* diskctl serve: logging, big-endian fields and whole-message socket I/O. */
#include "serve-int.h"

#include "endian/byteorder.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

bool serve_quiet;

void serve_log(const struct serve_conn *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (serve_quiet)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c)
		fprintf(stderr, "diskctl serve: connection %u: %s\n", c->id, msg);
	else
		fprintf(stderr, "diskctl serve: %s\n", msg);
}

/* The NBD wire is big-endian; these forward to common/endian. */
void serve_put16(uint8_t *p, uint16_t v)
{
	put_be16(p, v);
}

void serve_put32(uint8_t *p, uint32_t v)
{
	put_be32(p, v);
}

void serve_put64(uint8_t *p, uint64_t v)
{
	put_be64(p, v);
}

uint16_t serve_get16(const uint8_t *p)
{
	return get_be16(p);
}

uint32_t serve_get32(const uint8_t *p)
{
	return get_be32(p);
}

uint64_t serve_get64(const uint8_t *p)
{
	return get_be64(p);
}

/* 0 when all n bytes arrived; -1 on end of stream or error. */
int serve_recv(struct serve_conn *c, void *buf, size_t n)
{
	uint8_t *p = buf;

	/* MSG_WAITALL: a payload that a unix socket delivers in pieces comes
	 * back from one call, not one read() (and one return to user space)
	 * per piece (docs/performance.md, "NBD servers"). */
	while (n) {
		ssize_t r = recv(c->fd, p, n, MSG_WAITALL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Start reading n bytes if any have arrived, without sleeping for the first:
 * 1 when all n were read, 0 when none were waiting, -1 on end of stream or
 * error. */
int serve_recv_nowait(struct serve_conn *c, void *buf, size_t n)
{
	ssize_t r = recv(c->fd, buf, n, MSG_DONTWAIT);

	if (r < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
	if (r == 0 || ((size_t)r < n && serve_recv(c, (uint8_t *)buf + r, n - (size_t)r)))
		return -1;
	return 1;
}

/* Sleep until the socket has something to read: 0, or -1 when poll fails. */
int serve_wait_socket(struct serve_conn *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };

	while (poll(&p, 1, -1) < 0) {
		if (errno != EINTR) {
			serve_log(c, "poll: %s", strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* Read and drop n bytes (a payload we refuse). */
int serve_skip(struct serve_conn *c, uint64_t n)
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

/* Send the batched replies, ahead of anything sent after them. */
int serve_batch_flush(struct serve_conn *c)
{
	struct iovec iov = { .iov_base = c->batch, .iov_len = (size_t)c->nbatch * 16 };

	if (!c->nbatch)
		return 0;
	c->nbatch = 0; /* before the send, which would flush again */
	return serve_sendv(c, &iov, 1);
}

/* Send all of iov; a failure marks the connection broken (later sends are dropped). */
int serve_sendv(struct serve_conn *c, struct iovec *iov, int iovcnt)
{
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };

	if (c->nbatch && serve_batch_flush(c))
		return -1;
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

int serve_send(struct serve_conn *c, const void *buf, size_t n)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = n };

	return serve_sendv(c, &iov, 1);
}
