/* SPDX-License-Identifier: MIT */
/* Reaping rbd's completions from the image's event socket (an eventfd that
 * librbd writes when it queues a completion, rbd_set_image_notification).
 * A reaper thread reaps them, except while every open queue is driven by its
 * consumer (queue_poll, docs/architecture.md "Driven queues"): then each
 * request in flight belongs to a queue whose thread is waiting in
 * dc_queue_wait(), which reaps, so completions run on a consumer's thread
 * without a hand-off. Two reapers at once are fine: librbd's completion
 * queue gives each completion to one of them. */
#include "rbd.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define RBD_REAP_BATCH 32

struct rbd_q {
	bool driven;
};

static void rbd_wake(int fd)
{
	uint64_t one = 1;

	while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

int rbd_reap(struct rbd_inst *in)
{
	rbd_completion_t comps[RBD_REAP_BATCH];
	int total = 0, n;
	uint64_t v;

	/* Cleared first: a completion queued after the drain below writes the
	 * eventfd again, so none is left without a wake-up. */
	if (read(in->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		dc_debug("rbd: event socket: %s", strerror(errno));
	while ((n = rbd_poll_io_events(in->image, comps, RBD_REAP_BATCH)) > 0) {
		for (int i = 0; i < n; i++)
			rbd_io_done(comps[i]);
		total += n;
	}
	return total;
}

static bool rbd_reaper_paused(struct rbd_inst *in)
{
	bool paused;

	pthread_mutex_lock(&in->qlock);
	paused = in->nqueues > 0 && in->ndriven == in->nqueues;
	pthread_mutex_unlock(&in->qlock);
	return paused;
}

static void *rbd_reaper(void *arg)
{
	struct rbd_inst *in = arg;
	uint64_t v;

	for (;;) {
		struct pollfd p[2] = { { .fd = in->ctl_fd, .events = POLLIN },
				       { .fd = in->efd, .events = POLLIN } };

		if (rbd_reaper_paused(in))
			p[1].fd = -1;
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			dc_debug("rbd: reaper: poll: %s", strerror(errno));
			break;
		}
		if (p[0].revents & POLLIN) {
			if (read(in->ctl_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				break;
			if (__atomic_load_n(&in->stop, __ATOMIC_ACQUIRE))
				break;
		}
		if (p[1].revents & POLLIN)
			rbd_reap(in);
	}
	return NULL;
}

int rbd_reaper_start(struct rbd_inst *in)
{
	int r;

	in->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	in->ctl_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (in->efd < 0 || in->ctl_fd < 0)
		return dc_fail(-errno, "eventfd: %s", strerror(errno));
	r = rbd_set_image_notification(in->image, in->efd, EVENT_TYPE_EVENTFD);
	if (r < 0)
		return dc_fail(r, "%s: rbd_set_image_notification: %s", in->t.shown,
			       strerror(-r));
	r = -pthread_create(&in->reaper, NULL, rbd_reaper, in);
	if (r < 0)
		return dc_fail(r, "cannot start the reaper thread: %s", strerror(-r));
	in->reaper_started = true;
	return 0;
}

/* After the last request: the core closes queues, which have none in
 * flight, before it closes the instance. */
void rbd_reaper_stop(struct rbd_inst *in)
{
	if (in->reaper_started) {
		__atomic_store_n(&in->stop, true, __ATOMIC_RELEASE);
		rbd_wake(in->ctl_fd);
		pthread_join(in->reaper, NULL);
		in->reaper_started = false;
	}
	if (in->efd >= 0)
		close(in->efd);
	if (in->ctl_fd >= 0)
		close(in->ctl_fd);
	in->efd = in->ctl_fd = -1;
}

int rbd_queue_open(void *inst, void **qctx)
{
	struct rbd_inst *in = inst;
	struct rbd_q *q = calloc(1, sizeof(*q));

	if (!q)
		return dc_fail(-ENOMEM, "out of memory");
	pthread_mutex_lock(&in->qlock);
	in->nqueues++;
	pthread_mutex_unlock(&in->qlock);
	/* A queue that is not driven: the reaper runs again. */
	rbd_wake(in->ctl_fd);
	*qctx = q;
	return 0;
}

void rbd_queue_close(void *inst, void *qctx)
{
	struct rbd_inst *in = inst;
	struct rbd_q *q = qctx;

	pthread_mutex_lock(&in->qlock);
	in->nqueues--;
	if (q->driven)
		in->ndriven--;
	pthread_mutex_unlock(&in->qlock);
	rbd_wake(in->ctl_fd);
	free(q);
}

int rbd_queue_poll(void *inst, void *qctx, int wake_fd, int timeout_ms)
{
	struct rbd_inst *in = inst;
	struct rbd_q *q = qctx;
	struct pollfd p[2] = { { .fd = in->efd, .events = POLLIN },
			       { .fd = wake_fd, .events = POLLIN } };
	int n;

	if (!q->driven) {
		q->driven = true;
		pthread_mutex_lock(&in->qlock);
		in->ndriven++;
		pthread_mutex_unlock(&in->qlock);
		rbd_wake(in->ctl_fd);
	}
	n = rbd_reap(in);
	if (n || timeout_ms == 0)
		return n;
	if (poll(p, wake_fd >= 0 ? 2 : 1, timeout_ms) < 0 && errno != EINTR)
		return -errno;
	return rbd_reap(in);
}
