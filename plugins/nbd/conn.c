/* SPDX-License-Identifier: MIT */
/* One NBD connection: a libnbd handle whose socket a reaper thread drives with
 * poll() and nbd_aio_notify_read/write. Completion callbacks run on the reaper,
 * which finishes requests with dc_complete(); the core hands them to the
 * queue's thread (include/diskcore/plugin.h, "Threads"). The handle has its own
 * lock, so any queue's thread may issue commands on it concurrently. */
#include "nbd.h"

#include <diskcore/plugin.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

const char *nbd_redact_uri(const char *uri, char *buf, size_t len)
{
	const char *auth = strstr(uri, "://");
	const char *at, *colon, *slash;

	snprintf(buf, len, "%s", uri);
	if (!auth)
		return buf;
	auth += 3;
	slash = auth + strcspn(auth, "/?#");
	at = memchr(auth, '@', (size_t)(slash - auth));
	colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
	if (colon)
		snprintf(buf, len, "%.*s:***%s", (int)(colon - uri), uri, at);
	return buf;
}

void nbd_conn_defer(struct nbd_conn *c, struct nbd_done *d)
{
	d->next = __atomic_load_n(&c->done, __ATOMIC_RELAXED);
	while (!__atomic_compare_exchange_n(&c->done, &d->next, d, true, __ATOMIC_RELEASE,
					    __ATOMIC_RELAXED))
		;
}

/* Finish what the callbacks deferred, outside libnbd's lock. */
static int conn_finish(struct nbd_conn *c)
{
	struct nbd_done *d = __atomic_exchange_n(&c->done, NULL, __ATOMIC_ACQUIRE);
	int n = 0;

	while (d) {
		struct nbd_done *next = d->next;

		d->finish(d);
		d = next;
		n++;
	}
	return n;
}

/* One round: wait up to timeout_ms for the socket in the direction libnbd
 * needs, or for other_fd, and move the state machine on. Returns poll()'s
 * result; *other tells whether other_fd became readable. */
static int conn_step(struct nbd_conn *c, int other_fd, int timeout_ms, bool *other)
{
	int fd = nbd_aio_get_fd(c->h);
	unsigned dir = nbd_aio_get_direction(c->h);
	bool live = fd >= 0 && !nbd_aio_is_dead(c->h) && !nbd_aio_is_closed(c->h);
	struct pollfd p[2] = { { .fd = other_fd, .events = POLLIN },
			       { .fd = live ? fd : -1 } };
	int rc;

	if (dir & LIBNBD_AIO_DIRECTION_READ)
		p[1].events |= POLLIN;
	if (dir & LIBNBD_AIO_DIRECTION_WRITE)
		p[1].events |= POLLOUT;
	rc = poll(p, 2, timeout_ms);
	*other = rc > 0 && (p[0].revents & POLLIN);
	/* A hang-up or error is reported to libnbd through the direction it
	 * waits for: the failing recv/send kills the handle, which fails every
	 * command in flight (ENOTCONN) without a reconnect. */
	if (rc > 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) &&
	    (dir & LIBNBD_AIO_DIRECTION_READ))
		nbd_aio_notify_read(c->h);
	else if (rc > 0 && (p[1].revents & (POLLOUT | POLLHUP | POLLERR)))
		nbd_aio_notify_write(c->h);
	return rc;
}

static void *conn_reap(void *arg)
{
	struct nbd_conn *c = arg;
	bool woken;
	uint64_t v;

	for (;;) {
		if (conn_step(c, c->wake_fd, -1, &woken) < 0 && errno != EINTR) {
			dc_debug("nbd: poll: %s", strerror(errno));
			break;
		}
		conn_finish(c);
		if (woken) {
			if (read(c->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				break;
			if (__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE))
				break;
		}
	}
	return NULL;
}

static void conn_stop_reaper(struct nbd_conn *c)
{
	uint64_t one = 1;

	if (!c->reaper_started)
		return;
	__atomic_store_n(&c->stop, true, __ATOMIC_RELEASE);
	while (write(c->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	pthread_join(c->reaper, NULL);
	c->reaper_started = false;
}

int nbd_conn_poll(struct nbd_conn *c, int wake_fd, int timeout_ms)
{
	bool woken;
	int n;

	/* From now on the queue's thread drives the socket (plugin.h,
	 * queue_poll): the reaper finishes its round and leaves. */
	conn_stop_reaper(c);
	n = conn_finish(c);
	if (n)
		return n;
	if (conn_step(c, wake_fd, timeout_ms, &woken) < 0 && errno != EINTR)
		return -errno;
	return conn_finish(c);
}

void nbd_conn_kick(struct nbd_conn *c)
{
	uint64_t one = 1;

	if (!c->reaper_started ||
	    (!(nbd_aio_get_direction(c->h) & LIBNBD_AIO_DIRECTION_WRITE) &&
	     !__atomic_load_n(&c->done, __ATOMIC_ACQUIRE)))
		return;
	if (write(c->wake_fd, &one, sizeof(one)) < 0)
		dc_debug("nbd: wake: %s", strerror(errno));
}

bool nbd_conn_drive(struct nbd_conn *c, int timeout_ms)
{
	bool woken;

	if (__atomic_load_n(&c->reaper_started, __ATOMIC_ACQUIRE))
		return false;
	conn_step(c, -1, timeout_ms, &woken);
	conn_finish(c);
	return true;
}

static int conn_errno(int fallback)
{
	int e = nbd_get_errno();

	return -(e > 0 ? e : fallback);
}

/* Connect and negotiate within timeout_s: a server that accepts
 * but never answers must fail the open, not hang it. 0 or -errno. */
static int conn_connect(struct nbd_handle *h, const char *uri, const char *shown_uri,
			unsigned timeout_s)
{
	struct timespec start, now;
	int left_ms, rc;

	clock_gettime(CLOCK_MONOTONIC, &start);
	if (nbd_aio_connect_uri(h, uri) < 0) {
		rc = conn_errno(ECONNREFUSED);
		return dc_fail(rc, "cannot connect to %s: %s", shown_uri,
			       nbd_get_error());
	}
	while (nbd_aio_is_connecting(h) == 1) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		left_ms = (int)timeout_s * 1000 -
			  (int)((now.tv_sec - start.tv_sec) * 1000 +
				(now.tv_nsec - start.tv_nsec) / 1000000);
		if (left_ms <= 0)
			return dc_fail(
				-ETIMEDOUT,
				"cannot connect to %s: no NBD handshake within %u s",
				shown_uri, timeout_s);
		if (nbd_poll(h, left_ms) < 0) {
			rc = conn_errno(ECONNREFUSED);
			return dc_fail(rc, "cannot connect to %s: %s", shown_uri,
				       nbd_get_error());
		}
	}
	if (nbd_aio_is_ready(h) != 1) {
		rc = conn_errno(ECONNREFUSED);
		return dc_fail(rc, "cannot connect to %s: %s", shown_uri,
			       nbd_get_error() ? nbd_get_error() :
						 "the handshake failed");
	}
	return 0;
}

struct nbd_conn *nbd_conn_open(const char *uri, const char *shown_uri, unsigned timeout_s,
			       int *err)
{
	struct nbd_conn *c = calloc(1, sizeof(*c));

	if (!c) {
		*err = dc_fail(-ENOMEM, "out of memory");
		return NULL;
	}
	c->wake_fd = -1;
	c->h = nbd_create();
	if (!c->h) {
		*err = dc_fail(conn_errno(ENOMEM), "%s: %s", shown_uri, nbd_get_error());
		goto fail;
	}
	nbd_set_handle_name(c->h, "diskcore-nbd");
	/* The URI is the operator's spec: its tls-psk-file= may name a file. */
	nbd_set_uri_allow_local_file(c->h, true);
	/* For dc_map(); a server without it still connects. */
	nbd_add_meta_context(c->h, LIBNBD_CONTEXT_BASE_ALLOCATION);
	*err = conn_connect(c->h, uri, shown_uri, timeout_s);
	if (*err)
		goto fail;
	c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->wake_fd < 0) {
		*err = dc_fail(-errno, "eventfd: %s", strerror(errno));
		goto fail;
	}
	*err = -pthread_create(&c->reaper, NULL, conn_reap, c);
	if (*err) {
		dc_error("cannot start the reaper thread: %s", strerror(-*err));
		goto fail;
	}
	c->reaper_started = true;
	return c;
fail:
	nbd_conn_close(c);
	return NULL;
}

void nbd_conn_close(struct nbd_conn *c)
{
	if (!c)
		return;
	conn_stop_reaper(c);
	/* NBD_CMD_DISC so the server ends cleanly; on a dead handle it fails at once. */
	if (c->h && !nbd_aio_is_dead(c->h) && !nbd_aio_is_closed(c->h) &&
	    nbd_aio_is_ready(c->h))
		nbd_shutdown(c->h, 0);
	if (c->h)
		nbd_close(c->h);
	if (c->wake_fd >= 0)
		close(c->wake_fd);
	free(c);
}
