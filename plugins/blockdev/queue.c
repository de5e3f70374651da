/* SPDX-License-Identifier: MIT */
/* blockdev: ring set-up, a consumer queue's ring, and the driven poll
 * (dc_queue_wait) that takes the plugin thread out of the loop. */
#include "blockdev.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* liburing maps and unmaps a ring with raw system calls that ThreadSanitizer
 * does not see; a new ring mapped where a closed one was would look like a
 * race with the thread that last used the old one. Ordering ring set-up and
 * tear-down through one lock tells it what the kernel already guarantees. */
static pthread_mutex_t bdev_ring_lock = PTHREAD_MUTEX_INITIALIZER;

void bdev_ring_exit(struct io_uring *ring)
{
	pthread_mutex_lock(&bdev_ring_lock);
	io_uring_queue_exit(ring);
	pthread_mutex_unlock(&bdev_ring_lock);
}

void bq_destroy(struct bq *q)
{
	bdev_ring_exit(&q->ring);
	if (q->efd >= 0)
		close(q->efd);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

/* --- Queues ------------------------------------------------------------------ */

int bdev_ring_init(struct io_uring *ring, unsigned entries, unsigned cq)
{
	struct io_uring_params p = {
		.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP |
			 IORING_SETUP_SUBMIT_ALL,
		.cq_entries = cq,
	};
	int rc;

	pthread_mutex_lock(&bdev_ring_lock);
	rc = io_uring_queue_init_params(entries, ring, &p);
	if (rc == -EINVAL) {
		/* SUBMIT_ALL is 5.18+. */
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
		p.cq_entries = cq;
		rc = io_uring_queue_init_params(entries, ring, &p);
	}
	pthread_mutex_unlock(&bdev_ring_lock);
	if (rc < 0)
		dc_error("io_uring_queue_init: %s (is io_uring disabled? see "
			 "/proc/sys/kernel/io_uring_disabled)",
			 strerror(-rc));
	return rc;
}

int bdev_queue_open(void *inst, void **qctx)
{
	struct bdev *b = inst;
	struct bq *q = calloc(1, sizeof(*q));
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
	int rc;

	if (!q)
		return dc_fail(-ENOMEM, "out of memory");
	rc = bdev_ring_init(&q->ring, BDEV_SQ_ENTRIES, BDEV_CQ_ENTRIES);
	if (rc < 0) {
		free(q);
		return rc;
	}
	q->b = b;
	q->efd = -1;
	/* Two CQEs stay free for the polls that wake a driven ring. */
	q->max_inflight = q->ring.cq.ring_entries - 2;
	bdev_list_init(&q->parked);
	pthread_mutex_init(&q->lock, NULL);
	/* A registered file saves a file table lookup per request. */
	if (io_uring_register_files(&q->ring, &b->fd, 1) == 0) {
		q->file = 0;
		q->sqe_flags = IOSQE_FIXED_FILE;
	} else {
		q->file = b->fd;
	}
	/* One eventfd both for the kernel (a CQE was posted) and for submitters
	 * (please flush); edge-triggered, so it is never read. */
	ev.data.ptr = q;
	q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	rc = q->efd < 0 ? -errno : io_uring_register_eventfd(&q->ring, q->efd);
	if (rc == 0 && epoll_ctl(b->loop->epfd, EPOLL_CTL_ADD, q->efd, &ev) < 0)
		rc = -errno;
	if (rc < 0) {
		dc_error("cannot set up completion notification for the ring: %s",
			 strerror(-rc));
		bq_destroy(q);
		return rc;
	}
	*qctx = q;
	return 0;
}

/* Wake a driven ring's poller when fd becomes readable. */
static bool bq_arm_poll(struct bq *q, int fd, struct bdev_rq *tag)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);

	if (!sqe)
		return false; /* a full SQ: its completions will wake it */
	io_uring_prep_poll_add(sqe, fd, POLLIN);
	io_uring_sqe_set_data(sqe, tag);
	return true;
}

/* dc_queue_wait() on the consumer's thread: the ring becomes driven (the
 * plugin thread is no longer told about its completions). Submit what was
 * prepared and wait in the same io_uring_enter; reap; deliver here. A wake
 * from the core (wake_fd) arrives as a poll completion in the ring. */
int bdev_queue_poll(void *inst, void *qctx, int wake_fd, int timeout_ms)
{
	struct bq *q = qctx;
	struct bdev_list done;
	int n = 0, rc = 0;

	(void)inst;
	bdev_list_init(&done);
	pthread_mutex_lock(&q->lock);
	if (!q->driven) {
		q->driven = true;
		/* Only the polling thread touches a driven ring's queues; the
		 * plugin thread still takes q->lock in bq_kick and leaves. */
		io_uring_cq_eventfd_toggle(&q->ring, false);
	}
	q->driver = pthread_self();
	bq_reap(q, &done);
	bq_unpark(q);
	if (!done.head && timeout_ms != 0) {
		struct __kernel_timespec ts = {
			.tv_sec = timeout_ms / 1000,
			.tv_nsec = (long long)(timeout_ms % 1000) * 1000000,
		};
		struct io_uring_cqe *cqe;

		if (wake_fd >= 0 && !q->wake_armed)
			q->wake_armed = bq_arm_poll(q, wake_fd, BQ_WAKE_TAG(q));
		if (!q->poke_armed)
			q->poke_armed = bq_arm_poll(q, q->efd, BQ_POKE_TAG(q));
		pthread_mutex_unlock(&q->lock);
		rc = io_uring_submit_and_wait_timeout(&q->ring, &cqe, 1,
						      timeout_ms < 0 ? NULL : &ts, NULL);
		pthread_mutex_lock(&q->lock);
		q->unsubmitted = io_uring_sq_ready(&q->ring);
		if (rc == -ETIME || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY)
			rc = 0; /* timed out; or refused for now: retried next call */
		bq_reap(q, &done);
		bq_unpark(q);
	} else if (!done.head && q->unsubmitted) {
		/* (With completions in hand, new requests wait for the next
		 * call, which submits them in the io_uring_enter it waits in.) */
		rc = io_uring_submit(&q->ring);
		q->unsubmitted = io_uring_sq_ready(&q->ring);
		if (rc > 0 || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY)
			rc = 0;
	}
	pthread_mutex_unlock(&q->lock);
	for (struct bdev_rq *r = done.head; r; r = r->next)
		n++;
	if (done.head)
		bq_deliver(q, &done);
	return rc < 0 ? rc : n;
}

/* Every request has completed. The plugin thread may still hold q from its
 * last epoll batch: wait for that batch to end before freeing. */
void bdev_queue_close(void *inst, void *qctx)
{
	struct bdev *b = inst;
	struct bdev_loop *L = b->loop;
	struct bq *q = qctx;
	uint64_t gen;

	pthread_mutex_lock(&L->lock);
	epoll_ctl(L->epfd, EPOLL_CTL_DEL, q->efd, NULL);
	if (pthread_equal(pthread_self(), L->thread)) {
		q->next = L->dead;
		L->dead = q;
		pthread_mutex_unlock(&L->lock);
		return;
	}
	gen = L->gen;
	eventfd_write(L->ctlfd, 1);
	while (L->gen == gen)
		pthread_cond_wait(&L->cond, &L->lock);
	pthread_mutex_unlock(&L->lock);
	bq_destroy(q);
}
