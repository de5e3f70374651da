/* SPDX-License-Identifier: MIT */
/* The nbd plugin's allocation map (docs/abi.md, "Allocation map"): NBD_CMD_
 * BLOCK_STATUS in the base:allocation context, whose flags are diskcore's
 * (hole 1, zero 2). A server without the context reports data. */
#include "nbd.h"

#include <diskcore/plugin.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Block status lengths are 32-bit on the wire. */
#define NBD_MAP_MAX (1u << 30)
#define NBD_MAP_TIMEOUT_S 30

struct nbd_bs {
	int refs; /* the waiter's and libnbd's: a timed-out reply may still come */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done, got;
	int err;
	uint64_t len;
	uint32_t flags;
};

static int bs_extent(void *user_data, const char *metacontext, uint64_t offset,
		     uint32_t *entries, size_t n, int *error)
{
	struct nbd_bs *b = user_data;

	(void)offset;
	(void)error;
	if (strcmp(metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) || n < 2 || b->got)
		return 0;
	b->len = entries[0];
	b->flags = entries[1] & (DC_EXTENT_HOLE | DC_EXTENT_ZERO);
	b->got = true;
	return 0;
}

static void bs_put(void *user_data)
{
	struct nbd_bs *b = user_data;

	if (__atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL))
		return;
	pthread_cond_destroy(&b->cond);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

static int bs_done(void *user_data, int *error)
{
	struct nbd_bs *b = user_data;

	pthread_mutex_lock(&b->lock);
	b->err = *error;
	b->done = true;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
	return 1;
}

int nbd_map_query(struct nbd_conn *c, uint64_t offset, uint64_t len, uint32_t *flags,
		  uint64_t *run)
{
	struct nbd_bs *b;
	pthread_condattr_t ca;
	struct timespec deadline, now;
	bool drove, timed_out = false;
	int64_t cookie;
	int rc = 0;

	if (nbd_can_meta_context(c->h, LIBNBD_CONTEXT_BASE_ALLOCATION) != 1)
		return 1; /* the server cannot tell: data */
	b = calloc(1, sizeof(*b));
	if (!b)
		return dc_fail(-ENOMEM, "out of memory");
	b->refs = 2;
	pthread_mutex_init(&b->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (len > NBD_MAP_MAX)
		len = NBD_MAP_MAX;
	/* libnbd drops its reference through .free, also when the call fails. */
	cookie = nbd_aio_block_status(
		c->h, len, offset,
		(nbd_extent_callback){ .callback = bs_extent, .user_data = b },
		(nbd_completion_callback){
			.callback = bs_done, .user_data = b, .free = bs_put },
		0);
	if (cookie < 0) {
		rc = dc_fail(-EIO, "block status: %s", nbd_get_error());
		bs_put(b);
		return rc;
	}
	nbd_conn_kick(c);
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += NBD_MAP_TIMEOUT_S;
	/* The reaper drives the socket, or, once a queue drives it, this
	 * thread does until the reply is in. */
	pthread_mutex_lock(&b->lock);
	while (!b->done && !timed_out) {
		pthread_mutex_unlock(&b->lock);
		drove = nbd_conn_drive(c, 100);
		pthread_mutex_lock(&b->lock);
		if (!drove && !b->done)
			pthread_cond_timedwait(&b->cond, &b->lock, &deadline);
		clock_gettime(CLOCK_MONOTONIC, &now);
		timed_out = !b->done && now.tv_sec >= deadline.tv_sec;
	}
	pthread_mutex_unlock(&b->lock);
	if (timed_out)
		rc = dc_fail(-ETIMEDOUT, "block status: no reply in %d s",
			     NBD_MAP_TIMEOUT_S);
	else if (b->err)
		rc = dc_fail(-b->err, "block status: %s", strerror(b->err));
	else if (!b->got || b->len == 0)
		rc = 1;
	else {
		*flags = b->flags;
		*run = b->len < len ? b->len : len;
	}
	bs_put(b);
	return rc;
}
