/* SPDX-License-Identifier: MIT */
/*
 * Queues and the queue's thread: opening and closing a queue with its plugins'
 * per-queue state, the hand-off list, the eventfd of a polled queue, and
 * dc_queue_reap()/dc_queue_wait().
 *
 * Threads (plugin.h): plugin callbacks of a queue run on the queue's thread, one
 * at a time. A completion or child submission made elsewhere is pushed onto the
 * queue's hand-off list; the queue's thread runs it. A DC_QUEUE_POLL queue's
 * thread is its consumer, woken through the eventfd. A callback queue has no
 * thread to wake, so it is handed over: whoever finds it idle (the `busy` flag)
 * becomes its thread until the hand-off list is empty.
 */
#include "queue.h"

#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

DC_TLS struct dc_queue *dc__cur_q;
/* The queue whose elements' queue_open() this thread runs (dc_queue_flags). */
static DC_TLS struct dc_queue *dc__opening_q;

/* --- Queues ----------------------------------------------------------------- */

static void queue_close_qctx(struct dc_queue *q)
{
	for (unsigned i = 0; i < q->disk->nnodes; i++) {
		struct dc_node *n = q->disk->nodes[i];

		if (q->qctx_open[i] && n->plugin->queue_close)
			n->plugin->queue_close(n->inst, q->qctx[i]);
		q->qctx_open[i] = false;
	}
}

/* Open per-queue plugin state for node and its subtree. */
int dc__queue_open_subtree(struct dc_queue *q, struct dc_node *n)
{
	int rc;

	for (unsigned i = 0; i < n->nchildren; i++) {
		rc = dc__queue_open_subtree(q, n->children[i]);
		if (rc < 0)
			return rc;
	}
	if (n->plugin->queue_open && !q->qctx_open[n->index]) {
		struct dc_queue *saved = dc__opening_q;

		dc__error_push_prefix(n->plugin->name);
		dc__opening_q = q;
		rc = n->plugin->queue_open(n->inst, &q->qctx[n->index]);
		dc__opening_q = saved;
		dc__error_pop_prefix();
		if (rc < 0)
			return rc;
		q->qctx_open[n->index] = true;
	}
	return 0;
}

struct dc_queue *dc__queue_new(struct dc_disk *disk, uint32_t flags)
{
	struct dc_queue *q = calloc(1, sizeof(*q));

	if (!q)
		return NULL;
	q->disk = disk;
	q->flags = flags;
	q->efd = -1;
	q->ep = -1;
	q->ep_fd = -1;
	q->qctx = calloc(disk->nnodes, sizeof(*q->qctx));
	q->qctx_open = calloc(disk->nnodes, sizeof(*q->qctx_open));
	if (!q->qctx || !q->qctx_open) {
		free(q->qctx);
		free(q->qctx_open);
		free(q);
		return NULL;
	}
	return q;
}

static void queue_drain(struct dc_queue *q);

void dc__queue_free(struct dc_queue *q)
{
	struct dc_ireq *r, *next;

	/* A thread that handed q its last completion may still be on its way
	 * out of q (releasing it, waking efd). */
	struct dc_queue *saved = dc__cur_q;

	while (atomic_load(&q->users))
		sched_yield();
	/* A plugin may give up requests it holds when its queue closes (fault:'s
	 * hangs): they complete here, on q's thread, children's plugins first
	 * (node index order puts children before parents). */
	dc__cur_q = q;
	q->in_call = true;
	queue_close_qctx(q);
	queue_drain(q);
	q->in_call = false;
	dc__cur_q = saved;
	for (r = q->done_head; r; r = next) {
		next = r->next;
		free(r);
	}
	r = atomic_exchange(&q->free_remote, NULL);
	for (; r; r = next) {
		next = r->next;
		free(r);
	}
	for (r = q->free_local; r; r = next) {
		next = r->next;
		free(r);
	}
	if (q->efd >= 0)
		close(q->efd);
	if (q->ep >= 0)
		close(q->ep);
	free(q->qctx);
	free(q->qctx_open);
	free(q);
}

DC_EXPORT uint32_t dc_queue_flags(void)
{
	const struct dc_queue *q = dc__opening_q ? dc__opening_q : dc__cur_q;

	return q ? q->flags : 0;
}

DC_EXPORT int dc_queue_open(dc_disk *disk, uint32_t flags, dc_queue **out)
{
	struct dc_queue *q;
	int rc;

	if (!disk || !out || (flags & ~(DC_QUEUE_POLL | DC_QUEUE_THREAD)))
		return dc_fail(-EINVAL, "dc_queue_open: invalid arguments");
	q = dc__queue_new(disk, flags);
	if (!q)
		return dc_fail(-ENOMEM, "dc_queue_open: out of memory");
	if (flags & DC_QUEUE_POLL) {
		q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (q->efd < 0) {
			rc = -errno;
			dc__queue_free(q);
			return dc_fail(rc, "dc_queue_open: eventfd: %s", strerror(-rc));
		}
	}
	rc = dc__queue_open_subtree(q, disk->top);
	if (rc < 0) {
		dc__queue_free(q);
		return rc;
	}
	if (flags & DC_QUEUE_POLL) {
		unsigned n = 0;

		for (unsigned i = 0; i < disk->nnodes; i++)
			if (disk->nodes[i]->plugin->queue_poll && n++ == 0)
				q->poller = disk->nodes[i];
		if (n > 1)
			q->poller = NULL;
	}
	*out = q;
	return 0;
}

DC_EXPORT void dc_queue_close(dc_queue *q)
{
	if (q)
		dc__queue_free(q);
}

DC_EXPORT int dc_queue_fd(dc_queue *q)
{
	if (q->efd < 0)
		return -EINVAL;
	/* A driven ring does not signal efd: a consumer sleeping on it would
	 * never wake. The two ways of waiting exclude each other. */
	if (q->poller && q->driven)
		return -EBUSY;
	q->fd_given = true;
	return q->efd;
}

DC_EXPORT unsigned dc_queue_inflight(dc_queue *q)
{
	return atomic_load(&q->inflight);
}

/* Make efd readable. The flag is set after the write; see queue_unsignal(). */
void dc__queue_signal(struct dc_queue *q)
{
	eventfd_write(q->efd, 1);
	atomic_store(&q->signaled, true);
}

/* Clear efd unless nothing was written since the last clear (no system call
 * then). A hand-off between its write and its flag (users > 0) may already
 * have made efd readable: read then too. Skipping that read left efd readable
 * with the flag clear until the other thread ran again, and a consumer that
 * polls efd spun through empty reaps meanwhile (seen under load). Now each
 * write costs at most one wakeup with nothing to reap. */
static int queue_unsignal(struct dc_queue *q)
{
	uint64_t v;

	if ((atomic_exchange(&q->signaled, false) || atomic_load(&q->users)) &&
	    read(q->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return -errno;
	return 0;
}

DC_EXPORT unsigned dc_queue_pollers(dc_queue *q)
{
	return q->poller != NULL;
}

/* --- The queue's thread --------------------------------------------------- */

/* Run one item on q's thread: finish a completion, or dispatch a request. */
static void run_item(struct dc_ireq *r)
{
	if (r->hand == HAND_DISPATCH)
		dc__dispatch(r);
	else if (r->kind == DC_IREQ_TOP)
		dc__deliver(r);
	else
		r->done(&r->parent->pub, &r->pub);
}

/* Run everything handed to q, oldest first, until nothing is left. */
static void queue_drain(struct dc_queue *q)
{
	struct dc_ireq *r, *fifo, *next;

	while (atomic_load_explicit(&q->handoff, memory_order_relaxed)) {
		r = atomic_exchange_explicit(&q->handoff, NULL, memory_order_acquire);
		for (fifo = NULL; r; r = next) {
			next = r->next;
			r->next = fifo;
			fifo = r;
		}
		for (; fifo; fifo = next) {
			next = fifo->next; /* run_item may recycle fifo */
			run_item(fifo);
		}
	}
}

/* Callback queues: run first (may be NULL) and whatever is handed over
 * meanwhile as q's thread, then give q up. The caller set busy. A hand-off
 * that raced with the release finds busy clear and takes q itself, or is
 * seen by the look after it (both sides are sequentially consistent). */
void dc__queue_run(struct dc_queue *q, struct dc_ireq *first)
{
	struct dc_queue *saved = dc__cur_q;

	dc__cur_q = q;
	if (first)
		dc__dispatch(first);
	do {
		queue_drain(q);
		atomic_store(&q->busy, false);
	} while (atomic_load(&q->handoff) && !atomic_exchange(&q->busy, true));
	dc__cur_q = saved;
}

/* Off q's thread: give r to it (to finish or to dispatch). */
void dc__queue_handoff(struct dc_queue *q, struct dc_ireq *r, uint8_t hand)
{
	struct dc_ireq *head;

	r->hand = hand;
	atomic_fetch_add(&q->users, 1);
	head = atomic_load_explicit(&q->handoff, memory_order_relaxed);
	do {
		r->next = head;
	} while (!atomic_compare_exchange_weak(&q->handoff, &head, r));
	if (q->flags & DC_QUEUE_POLL) {
		/* The first item wakes the consumer; it takes the whole list. */
		if (!head)
			dc__queue_signal(q);
	} else if (!atomic_exchange(&q->busy, true)) {
		dc__queue_run(q, NULL);
	}
	atomic_fetch_sub_explicit(&q->users, 1, memory_order_release);
}

/* dc_queue_wait_fd(): the consumer's fd (or none, -1) joins efd in an epoll
 * set, which from then on is what every wait sleeps on. */
static int queue_ep_set(dc_queue *q, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN };

	if (q->ep < 0) {
		int ep = epoll_create1(EPOLL_CLOEXEC);

		if (ep < 0)
			return -errno;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, q->efd, &ev) < 0) {
			int err = -errno;

			close(ep);
			return err;
		}
		q->ep = ep;
		/* A poller that armed a wait on efd between calls (a ring)
		 * sees it fire once and arms the next on ep. */
		if (q->driven)
			dc__queue_signal(q);
	}
	if (fd == q->ep_fd)
		return 0;
	if (q->ep_fd >= 0)
		epoll_ctl(q->ep, EPOLL_CTL_DEL, q->ep_fd, NULL);
	q->ep_fd = -1;
	if (fd >= 0) {
		if (epoll_ctl(q->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
			return -errno;
		q->ep_fd = fd;
	}
	return 0;
}

static int queue_wait(dc_queue *q, int fd, int timeout_ms);

DC_EXPORT int dc_queue_wait(dc_queue *q, int timeout_ms)
{
	return queue_wait(q, -1, timeout_ms);
}

DC_EXPORT int dc_queue_wait_fd(dc_queue *q, int fd, int timeout_ms)
{
	return queue_wait(q, fd, timeout_ms);
}

static int queue_wait(dc_queue *q, int fd, int timeout_ms)
{
	struct dc_queue *saved = dc__cur_q;
	int rc = 0, n, wake;

	if (!(q->flags & DC_QUEUE_POLL) || q->in_call || dc__cur_q == q)
		return -EINVAL;
	if (q->poller && q->fd_given)
		return -EBUSY; /* see dc_queue_fd() */
	if (fd >= 0 || q->ep >= 0) {
		rc = queue_ep_set(q, fd);
		if (rc < 0)
			return rc;
	}
	wake = q->ep >= 0 ? q->ep : q->efd;
	q->driven = true;
	dc__cur_q = q;
	q->in_call = true;
	q->delivered = 0;
	queue_drain(q);
	{
		/* Sleep only with nothing to report: nothing delivered by
		 * this call or waiting to be reaped, nothing handed over since
		 * the drain (efd is cleared first, so a later hand-off wakes
		 * the sleep). */
		bool sleep = timeout_ms != 0 && !q->delivered && !q->done_head;

		if (sleep) {
			queue_unsignal(q);
			sleep = !atomic_load(&q->handoff);
		}
		if (q->poller) {
			/* One call: the element reaps, and sleeps only if it
			 * found nothing; the rest of the chain wakes it
			 * through efd. */
			struct dc_node *p = q->poller;

			rc = p->plugin->queue_poll(p->inst, q->qctx[p->index], wake,
						   sleep ? timeout_ms : 0);
		} else if (sleep) {
			struct pollfd pfd = { .fd = wake, .events = POLLIN };

			if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR)
				rc = -errno;
		}
	}
	queue_drain(q);
	n = (int)q->delivered;
	q->in_call = false;
	dc__cur_q = saved;
	return rc < 0 && !n ? rc : n;
}

DC_EXPORT int dc_queue_reap(dc_queue *q, struct dc_completion *out, int max)
{
	struct dc_queue *saved = dc__cur_q;
	struct dc_ireq *r;
	int n = 0, rc;

	if (!(q->flags & DC_QUEUE_POLL) || max < 0)
		return -EINVAL;
	/* Clear the eventfd first: a hand-off after this re-arms it. */
	rc = queue_unsignal(q);
	if (rc < 0)
		return rc;
	if (!q->in_call) {
		dc__cur_q = q;
		q->in_call = true;
		queue_drain(q);
		q->in_call = false;
		dc__cur_q = saved;
	}
	while (n < max && (r = q->done_head)) {
		q->done_head = r->next;
		out[n] = (struct dc_completion){
			.user_data = r->user_data,
			.result = r->pub.result,
			.detail = r->pub.detail,
		};
		n++;
		slot_push_remote(q, r);
	}
	/* Reaped is delivered: inflight == 0 means the queue may be closed. */
	if (atomic_fetch_sub_explicit(&q->inflight, n, memory_order_release) ==
		    (unsigned)n &&
	    n) {
		/* The last one: a thread that handed it over may still be
		 * between its eventfd write and its flag (queue_signal); let
		 * it finish, then clear, so an idle queue's fd is not left
		 * readable. */
		while (atomic_load(&q->users))
			sched_yield();
		queue_unsignal(q);
	}
	if (!q->done_head)
		q->done_tail = NULL;
	else
		dc__queue_signal(q); /* more left: stay readable */
	return n;
}
