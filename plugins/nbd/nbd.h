/* SPDX-License-Identifier: MIT */
/* The nbd plugin's connections: one libnbd handle and the reaper thread that
 * drives its socket (docs/spec-strings.md, "nbd"). */
#ifndef DC_NBD_H
#define DC_NBD_H

#include <libnbd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* A finished request waiting for the reaper to complete it once libnbd's lock
 * is released: dc_complete() may run the consumer's callback and its next
 * submit() inline, which would issue a command under that lock. */
struct nbd_done {
	struct nbd_done *next;
	void (*finish)(struct nbd_done *d);
};

struct nbd_conn {
	struct nbd_handle *h;
	struct nbd_done *done; /* a stack pushed by completion callbacks */
	int wake_fd;	       /* eventfd: a command is waiting to be sent, or stop */
	bool stop;	       /* under the eventfd's ordering: read after the wake */
	pthread_t reaper;
	bool reaper_started;
};

/* Connect to uri (shown as shown_uri in errors), negotiating within
 * timeout_s seconds, and start the reaper. Returns the connection or NULL
 * after dc_error(); *err gets -errno. */
struct nbd_conn *nbd_conn_open(const char *uri, const char *shown_uri, unsigned timeout_s,
			       int *err);
/* Stop the reaper, disconnect and free. The caller has no request in flight. */
void nbd_conn_close(struct nbd_conn *c);
/* After issuing a command from a thread other than the reaper: wake the reaper
 * if the command is still waiting for the socket to accept it. */
void nbd_conn_kick(struct nbd_conn *c);

/* queue_poll() for a connection one queue owns: the first call stops the
 * reaper; finishes deferred requests, else waits up to timeout_ms for the
 * socket or wake_fd. Returns the requests finished, or -errno. */
int nbd_conn_poll(struct nbd_conn *c, int wake_fd, int timeout_ms);
/* From a completion callback: have the reaper finish d after libnbd returns. */
void nbd_conn_defer(struct nbd_conn *c, struct nbd_done *d);

/* For a thread waiting for a reply once a queue drives the connection (its
 * reaper stopped): move the socket on for up to timeout_ms and return true;
 * false, doing nothing, while the reaper runs. */
bool nbd_conn_drive(struct nbd_conn *c, int timeout_ms);
/* The base:allocation status of the bytes at offset (len at most): 0 with
 * *flags (DC_EXTENT_*) and *run bytes, 1 when the server cannot tell (data),
 * or -errno after dc_error(). */
int nbd_map_query(struct nbd_conn *c, uint64_t offset, uint64_t len, uint32_t *flags,
		  uint64_t *run);

/* uri with the password of its user info replaced by "***", in buf. */
const char *nbd_redact_uri(const char *uri, char *buf, size_t len);

#endif
