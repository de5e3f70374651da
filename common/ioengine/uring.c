/* SPDX-License-Identifier: MIT */
/* ioengine: making rings (the probe at open, one ring per queue), closing
 * them, and the driven poll (dc_queue_wait) that takes the engine thread out
 * of a queue's loop: the consumer's thread submits and waits in one
 * io_uring_enter and delivers completions itself, so none crosses a thread.
 * Submissions from other threads (a decorator's timer) are parked and poke
 * the poller through efd, which it polls in the ring. */
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* liburing maps and unmaps a ring with raw system calls that ThreadSanitizer
 * does not see; a new ring mapped where a closed one was would look like a
 * race with the thread that last used the old one. Ordering ring set-up and
 * tear-down through one lock tells it what the kernel already guarantees. */
static pthread_mutex_t ioe_ring_lock = PTHREAD_MUTEX_INITIALIZER;

static void ioe_ring_exit(struct io_uring *ring)
{
	pthread_mutex_lock(&ioe_ring_lock);
	io_uring_queue_exit(ring);
	pthread_mutex_unlock(&ioe_ring_lock);
}

/* One ring, made under ioe_ring_lock. */
static int ioe_ring_make(struct io_uring *ring, unsigned entries, unsigned cq,
			 unsigned flags)
{
	struct io_uring_params p = { .cq_entries = cq, .flags = flags };
	int rc;

	pthread_mutex_lock(&ioe_ring_lock);
	rc = io_uring_queue_init_params(entries, ring, &p);
	pthread_mutex_unlock(&ioe_ring_lock);
	return rc;
}

/* Every ring asks for COOP_TASKRUN (5.19): the completion work io_uring
 * queues for the submitting thread waits for that thread's next entry into
 * the kernel (its wait for completions, mostly) instead of interrupting it
 * where it runs, as fio's rings do. SUBMIT_ALL is 5.18. An older kernel
 * refuses either with EINVAL: try without. */
static int ioe_ring_init(struct io_uring *ring, unsigned entries, unsigned cq)
{
	static const unsigned drop[] = { 0, IORING_SETUP_COOP_TASKRUN,
					 IORING_SETUP_SUBMIT_ALL };
	unsigned flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP |
			 IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
	int rc = -EINVAL;

	for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]) && rc == -EINVAL; i++) {
		flags &= ~drop[i];
		rc = ioe_ring_make(ring, entries, cq, flags);
	}
	if (rc < 0)
		dc_error("io_uring_queue_init: %s (is io_uring disabled? see "
			 "/proc/sys/kernel/io_uring_disabled)",
			 strerror(-rc));
	return rc;
}

/* io_uring must exist and know the opcodes we use; FALLOCATE is optional.
 * On failure, why says what failed (for describe()) and dc_error() too. */
int ioe_ring_probe(bool *can_fallocate, char *why, size_t len)
{
	static const uint8_t need[] = { IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_READ,
					IORING_OP_WRITE, IORING_OP_FSYNC };
	struct io_uring_probe *p;
	struct io_uring ring;
	int rc = ioe_ring_init(&ring, 4, 8);

	if (rc < 0) {
		snprintf(why, len, "io_uring_queue_init: %s", strerror(-rc));
		return rc;
	}
	p = io_uring_get_probe_ring(&ring);
	ioe_ring_exit(&ring);
	if (!p) {
		snprintf(why, len, "io_uring cannot probe its operations");
		return dc_fail(
			-ENOSYS,
			"io_uring: cannot probe the supported operations (kernel too "
			"old? 5.6 or later is needed)");
	}
	for (size_t i = 0; i < sizeof(need); i++) {
		if (!io_uring_opcode_supported(p, need[i])) {
			io_uring_free_probe(p);
			snprintf(why, len, "io_uring lacks operation %u", need[i]);
			return dc_fail(
				-ENOSYS,
				"io_uring: operation %u not supported (kernel too old? "
				"5.6 or later is needed)",
				need[i]);
		}
	}
	*can_fallocate = io_uring_opcode_supported(p, IORING_OP_FALLOCATE);
	io_uring_free_probe(p);
	return 0;
}

void ioe_ring_destroy(struct ioe_queue *q)
{
	/* The kernel tears a ring down asynchronously, and a registered file
	 * lives until it has: unregistering first (it waits) means the image
	 * is no longer held -- its space freed, its locks released -- once
	 * the disk is closed, not some time after the process exits. */
	if (q->sqe_flags & IOSQE_FIXED_FILE)
		io_uring_unregister_files(&q->ring);
	ioe_ring_exit(&q->ring);
	if (q->efd >= 0)
		close(q->efd);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

/* A registered file saves a file table lookup per request; without one the
 * ring takes the fd. */
static void ioe_ring_register_file(struct ioe_queue *q)
{
	bool fixed = io_uring_register_files(&q->ring, &q->f->fd, 1) == 0;

	q->file = fixed ? 0 : q->f->fd;
	q->sqe_flags = fixed ? IOSQE_FIXED_FILE : 0;
}

static void ioe_ring_ready(struct ioe_src *s)
{
	ioe_ring_kick((struct ioe_queue *)s);
}

/* The ring of a new queue (q->f set): made, watched by the engine thread. */
int ioe_ring_queue_open(struct ioe_queue *q)
{
	struct ioe_file *f = q->f;
	int rc;

	ioe_frames_init(); /* before any ring starts or delivers a request */
	rc = ioe_ring_init(&q->ring, IOE_SQ_ENTRIES, IOE_CQ_ENTRIES);
	if (rc < 0)
		return rc;
	q->efd = -1;
	q->bound = (dc_queue_flags() & (DC_QUEUE_THREAD | DC_QUEUE_POLL)) ==
		   (DC_QUEUE_THREAD | DC_QUEUE_POLL);
	q->src.ready = ioe_ring_ready;
	q->destroy = ioe_ring_destroy;
	/* Two CQEs stay free for the polls that wake a driven ring. */
	q->max_inflight = q->ring.cq.ring_entries - 2;
	ioe_list_init(&q->parked);
	pthread_mutex_init(&q->lock, NULL);
	ioe_ring_register_file(q);
	/* One eventfd both for the kernel (a CQE was posted) and for submitters
	 * (please flush); edge-triggered, so it is never read. */
	q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	rc = q->efd < 0 ? -errno : io_uring_register_eventfd(&q->ring, q->efd);
	if (rc == 0)
		rc = ioe_thread_add(f->t, q->efd, &q->src, EPOLLIN | EPOLLET);
	if (rc < 0) {
		dc_error("cannot set up completion notification for the ring: %s",
			 strerror(-rc));
		ioe_ring_destroy(q);
		return rc;
	}
	return 0;
}

/* Every request has completed. The engine thread may still hold q from its
 * last epoll batch: wait for that batch to end before freeing. */
void ioe_ring_queue_close(struct ioe_queue *q)
{
	/* Only the owner of a single-issuer ring may unregister its file, and
	 * the engine thread may be the one that frees q. */
	if (q->single && (q->sqe_flags & IOSQE_FIXED_FILE)) {
		io_uring_unregister_files(&q->ring);
		q->sqe_flags = 0;
	}
	if (ioe_thread_del(q->f->t, q->efd))
		ioe_thread_bury(q->f->t, q);
	else
		ioe_ring_destroy(q);
}

/* Wake a driven ring's poller when fd becomes readable. */
static bool rq_arm_poll(struct ioe_queue *q, int fd, struct ioe_req *tag)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);

	if (!sqe)
		return false; /* a full SQ: its completions will wake it */
	io_uring_prep_poll_add(sqe, fd, POLLIN);
	io_uring_sqe_set_data(sqe, tag);
	return true;
}

/* Submit what was prepared and wait in the same io_uring_enter, then reap.
 * Under q->lock, which it drops while it waits. */
static int rq_wait(struct ioe_queue *q, int wake_fd, int timeout_ms,
		   struct ioe_list *done)
{
	struct __kernel_timespec ts = {
		.tv_sec = timeout_ms / 1000,
		.tv_nsec = (long long)(timeout_ms % 1000) * 1000000,
	};
	struct io_uring_cqe *cqe;
	int rc;

	if (wake_fd >= 0 && !q->wake_armed)
		q->wake_armed = rq_arm_poll(q, wake_fd, IOE_WAKE_TAG(q));
	if (!q->poke_armed)
		q->poke_armed = rq_arm_poll(q, q->efd, IOE_POKE_TAG(q));
	pthread_mutex_unlock(&q->lock);
	rc = io_uring_submit_and_wait_timeout(&q->ring, &cqe, 1,
					      timeout_ms < 0 ? NULL : &ts, NULL);
	pthread_mutex_lock(&q->lock);
	q->unsubmitted = io_uring_sq_ready(&q->ring);
	if (rc == -ETIME || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY)
		rc = 0; /* timed out; or refused for now: retried next call */
	ioe_ring_reap(q, done);
	ioe_ring_unpark(q);
	return rc < 0 ? rc : 0;
}

/* The first drive of a bound queue, with nothing in flight yet (diskcore.h:
 * dc_queue_wait(q, 0) before the first request): the ring is replaced by one
 * that only this thread enters, and whose completions run when it waits
 * (SINGLE_ISSUER and DEFER_TASKRUN, Linux 6.1) rather than as task work at
 * every return to user space. Its efd is not registered: a driven ring polls
 * it. A kernel that refuses keeps the ring there is. Under q->lock. */
static void rq_own(struct ioe_queue *q)
{
	struct io_uring ring, old;
	int rc;

	if (!q->bound || q->f->shared || q->inflight || q->unsubmitted || q->parked.head)
		return;
	rc = ioe_ring_make(&ring, IOE_SQ_ENTRIES, IOE_CQ_ENTRIES,
			   IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP |
				   IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
				   IORING_SETUP_DEFER_TASKRUN |
				   IORING_SETUP_TASKRUN_FLAG);
	if (rc < 0) {
		dc_debug("ioengine: keeping a shared ring: %s", strerror(-rc));
		return;
	}
	old = q->ring;
	q->ring = ring;
	if (q->sqe_flags & IOSQE_FIXED_FILE)
		io_uring_unregister_files(&old);
	ioe_ring_register_file(q);
	ioe_ring_exit(&old);
	q->max_inflight = q->ring.cq.ring_entries - 2;
	q->single = true;
}

/* A single-issuer ring posts completions only when its owner enters the
 * kernel for them; the kernel flags the ring when some wait. */
static void rq_get_events(struct ioe_queue *q)
{
	if (q->single && (IO_URING_READ_ONCE(*q->ring.sq.kflags) & IORING_SQ_TASKRUN))
		io_uring_get_events(&q->ring);
}

/* dc_queue_wait() on the consumer's thread: the ring becomes driven (the
 * engine thread is no longer told about its completions). A wake from the
 * core (wake_fd) arrives as a poll completion in the ring. */
int ioe_ring_poll(struct ioe_queue *q, int wake_fd, int timeout_ms)
{
	struct ioe_list done;
	int n = 0, rc = 0;

	ioe_list_init(&done);
	pthread_mutex_lock(&q->lock);
	if (!q->driven) {
		q->driven = true;
		/* Only the polling thread touches a driven ring's queues; the
		 * engine thread still takes q->lock in ioe_ring_kick and leaves. */
		io_uring_cq_eventfd_toggle(&q->ring, false);
		rq_own(q);
	}
	q->driver = pthread_self();
	rq_get_events(q);
	ioe_ring_reap(q, &done);
	ioe_ring_unpark(q);
	if (!done.head && timeout_ms != 0) {
		rc = rq_wait(q, wake_fd, timeout_ms, &done);
	} else if (!done.head && q->unsubmitted) {
		/* (With completions in hand, new requests wait for the next
		 * call, which submits them in the io_uring_enter it waits in.) */
		rc = io_uring_submit(&q->ring);
		q->unsubmitted = io_uring_sq_ready(&q->ring);
		if (rc > 0 || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY)
			rc = 0;
	}
	pthread_mutex_unlock(&q->lock);
	for (struct ioe_req *r = done.head; r; r = r->next)
		n++;
	if (done.head)
		ioe_ring_deliver(q, &done);
	return rc < 0 ? rc : n;
}
