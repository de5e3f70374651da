/* SPDX-License-Identifier: MIT */
/* ioengine: submission and reaping on a queue's ring. submit() prepares SQEs
 * under the queue's lock, which only the engine thread ever contends, and
 * never enters the kernel: once per burst it asks the engine thread, through
 * the ring's eventfd, to flush. That thread hands everything that accumulated
 * to the kernel in one io_uring_enter, so the device sees batches, and the
 * completion work io_uring runs in the submitter's context belongs to the
 * thread that reaps rather than to the consumer's. Completions already posted
 * when the consumer submits are reaped inline. A driven ring (queue_poll) is
 * flushed and reaped by the consumer's thread alone (uring.c). */
#include "internal.h"

#include <errno.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <sys/eventfd.h>

/* --- Lists ------------------------------------------------------------------ */

static void ioe_list_add(struct ioe_list *l, struct ioe_req *r)
{
	r->next = NULL;
	*l->tail = r;
	l->tail = &r->next;
}

static struct ioe_req *ioe_list_pop(struct ioe_list *l)
{
	struct ioe_req *r = l->head;

	if (r) {
		l->head = r->next;
		if (!l->head)
			l->tail = &l->head;
	}
	return r;
}

static void ioe_list_push_front(struct ioe_list *l, struct ioe_req *r)
{
	r->next = l->head;
	if (!l->head)
		l->tail = &r->next;
	l->head = r;
}

/* --- Rings ------------------------------------------------------------------ */

static void rq_prep(struct ioe_queue *q, struct io_uring_sqe *sqe, struct ioe_req *r)
{
	switch (r->uop) {
	case IORING_OP_READ:
		io_uring_prep_read(sqe, q->file, r->iov[0].iov_base,
				   (unsigned)r->iov[0].iov_len, r->pos);
		break;
	case IORING_OP_WRITE:
		io_uring_prep_write(sqe, q->file, r->iov[0].iov_base,
				    (unsigned)r->iov[0].iov_len, r->pos);
		sqe->rw_flags = r->rwflags;
		break;
	case IORING_OP_READV:
		io_uring_prep_readv(sqe, q->file, r->iov, (unsigned)r->iovcnt, r->pos);
		break;
	case IORING_OP_WRITEV:
		io_uring_prep_writev(sqe, q->file, r->iov, (unsigned)r->iovcnt, r->pos);
		sqe->rw_flags = r->rwflags;
		break;
	case IORING_OP_FSYNC:
		io_uring_prep_fsync(sqe, q->file, IORING_FSYNC_DATASYNC);
		break;
	case IORING_OP_FALLOCATE:
		io_uring_prep_fallocate(sqe, q->file,
					FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					(off_t)r->pos, (off_t)r->left);
		break;
	}
	sqe->flags |= q->sqe_flags;
	io_uring_sqe_set_data(sqe, r);
}

/* Ask the engine thread to retry a submission the kernel refused (out of
 * memory): nothing else would wake this ring. */
static void rq_want_retry(struct ioe_queue *q)
{
	if (q->on_retry || q->driven)
		return; /* a driven ring retries in its next poll */
	q->on_retry = true;
	ioe_thread_retry(q->f->t, q);
}

/* Hand the prepared SQEs to the kernel. Under q->lock. */
static void rq_flush(struct ioe_queue *q)
{
	while (q->unsubmitted) {
		int n = io_uring_submit(&q->ring);

		if (n > 0) {
			q->unsubmitted -= (unsigned)n < q->unsubmitted ? (unsigned)n :
									 q->unsubmitted;
			continue;
		}
		if (n == -EINTR)
			continue;
		rq_want_retry(q);
		break;
	}
}

/* Put a request on the ring if there is room. Under q->lock. */
static bool rq_push(struct ioe_queue *q, struct ioe_req *r)
{
	struct io_uring_sqe *sqe;

	if (q->inflight >= q->max_inflight)
		return false;
	sqe = io_uring_get_sqe(&q->ring);
	if (!sqe)
		return false; /* the SQ is full of unflushed entries */
	rq_prep(q, sqe, r);
	q->inflight++;
	q->unsubmitted++;
	return true;
}

/* Move parked requests onto the ring while there is room. Under q->lock. */
void ioe_ring_unpark(struct ioe_queue *q)
{
	while (q->parked.head && rq_push(q, q->parked.head))
		ioe_list_pop(&q->parked);
}

/* A CQE for r: true when r is finished (r->res says how), false when the
 * rest of it must go out again (short transfer, EAGAIN). */
static bool rq_result(struct ioe_req *r, int res)
{
	size_t n;

	if (res < 0) {
		if ((res == -EAGAIN || res == -EINTR) && ++r->tries < IOE_RETRIES)
			return false;
		r->res = res;
		return true;
	}
	if (r->uop == IORING_OP_FSYNC || r->uop == IORING_OP_FALLOCATE)
		return true;
	if (res == 0) {
		/* End of the file or device inside the range. */
		r->res = IOE_EOF;
		return true;
	}
	n = (size_t)res;
	if (n >= r->left)
		return true;
	r->pos += n;
	r->left -= n;
	while (n >= r->iov->iov_len) {
		n -= r->iov->iov_len;
		r->iov++;
		r->iovcnt--;
	}
	r->iov->iov_base = (char *)r->iov->iov_base + n;
	r->iov->iov_len -= n;
	return false;
}

/* Take every posted completion; resubmit partial transfers and parked
 * requests while there is room. Finished requests go on done. Under q->lock. */
void ioe_ring_reap(struct ioe_queue *q, struct ioe_list *done)
{
	struct io_uring_cqe *cqe;
	struct ioe_list again;
	struct ioe_req *r;
	unsigned head, n = 0;

	ioe_list_init(&again);
	io_uring_for_each_cqe(&q->ring, head, cqe)
	{
		r = io_uring_cqe_get_data(cqe);
		n++;
		if (r == IOE_WAKE_TAG(q) || r == IOE_POKE_TAG(q)) {
			/* A wake of a driven ring's poller; not a request
			 * (two CQEs are kept free for them). */
			if (r == IOE_WAKE_TAG(q)) {
				q->wake_armed = false;
			} else {
				eventfd_t v;

				q->poke_armed = false;
				eventfd_read(q->efd, &v);
			}
			q->inflight++; /* undoes its share of the -= n below */
			continue;
		}
		if (rq_result(r, cqe->res))
			ioe_list_add(done, r);
		else
			ioe_list_add(&again, r);
	}
	if (!n)
		return;
	io_uring_cq_advance(&q->ring, n);
	q->inflight -= n;
	while ((r = ioe_list_pop(&again))) {
		if (!rq_push(q, r))
			ioe_list_push_front(&q->parked, r);
	}
	ioe_ring_unpark(q);
}

/* Flush, and refill from the parked list what a full SQ held back. The
 * engine thread only. */
static void rq_flush_all(struct ioe_queue *q)
{
	for (;;) {
		if (q->unsubmitted) {
			rq_flush(q);
			if (q->unsubmitted)
				return; /* refused: retried later */
		}
		if (!q->parked.head)
			return;
		ioe_ring_unpark(q);
		if (!q->unsubmitted)
			return; /* no room: completions will make some */
	}
}

/* Ask the engine thread to flush q, unless it is about to anyway. Returns
 * true when the caller must write q->efd (after dropping q->lock). */
static bool rq_arm(struct ioe_queue *q)
{
	if (!q->unsubmitted || q->delivering || q->armed || q->driven)
		return false;
	q->armed = true;
	return true;
}

/* Submissions made while a ring's completions are being delivered (a callback
 * that resubmits) go to the kernel together when the delivery ends. The
 * delivering frame is found through a pthread key rather than __thread: the
 * sanitizers' leak checker trips over dynamic TLS in dlopen'ed modules. */
struct ioe_frame {
	struct ioe_queue *q;
	bool later; /* a submission on q was deferred to the end */
	struct ioe_frame *outer;
};

static pthread_key_t ioe_frame_key;
static pthread_once_t ioe_frame_once = PTHREAD_ONCE_INIT;

static void ioe_frame_init(void)
{
	if (pthread_key_create(&ioe_frame_key, NULL))
		abort();
}

/* Set up the key that finds the delivering frame; once per process. */
void ioe_frames_init(void)
{
	pthread_once(&ioe_frame_once, ioe_frame_init);
}

/* Finish a list; the queue may be gone once the last one is delivered. */
void ioe_ring_deliver(struct ioe_queue *q, struct ioe_list *done)
{
	struct ioe_frame f = { .q = q, .outer = pthread_getspecific(ioe_frame_key) };
	struct ioe_req *r = done->head;
	bool kick = false;

	pthread_setspecific(ioe_frame_key, &f);
	while (r) {
		struct ioe_req *next = r->next;

		ioe_finish(r, r->res);
		r = next;
	}
	pthread_setspecific(ioe_frame_key, f.outer);
	/* Set only by a deferred submission on q, which is still in flight:
	 * q cannot have been closed. */
	if (f.later) {
		pthread_mutex_lock(&q->lock);
		if (q->driven)
			; /* the consumer's next poll submits them */
		else if (ioe_thread_is_self(q->f->t))
			rq_flush_all(q);
		else
			kick = rq_arm(q);
		pthread_mutex_unlock(&q->lock);
		if (kick)
			eventfd_write(q->efd, 1);
	}
}

/* The engine thread: reap, refill and flush a ring, deliver what finished.
 * queue_close() waits for the thread's batch to end, so q may be touched after
 * the delivery. */
void ioe_ring_kick(struct ioe_queue *q)
{
	struct ioe_list done;

	ioe_list_init(&done);
	pthread_mutex_lock(&q->lock);
	q->armed = false;
	if (q->driven) {
		/* The consumer's thread reaps and submits now. */
		pthread_mutex_unlock(&q->lock);
		return;
	}
	ioe_ring_reap(q, &done);
	rq_flush_all(q);
	if (!done.head) {
		pthread_mutex_unlock(&q->lock);
		return;
	}
	q->delivering = true;
	pthread_mutex_unlock(&q->lock);
	ioe_ring_deliver(q, &done);
	pthread_mutex_lock(&q->lock);
	q->delivering = false;
	if (!q->driven)
		rq_flush_all(q);
	pthread_mutex_unlock(&q->lock);
}

/* O_DIRECT requests go to a device, which may complete a whole batch at once
 * and then sit idle until the next arrives. A thread that enters this ring
 * itself (its driver, or the engine thread in a delivery) hands each refill
 * to the kernel as it is made, as fio does, rather than in batches: a virtio
 * disk starts on each request as it arrives, and the requests a batch holds
 * back cost more device time than the system calls it saves
 * (docs/performance.md, "O_DIRECT against fio"). Buffered requests mostly
 * complete inside the submission: they keep one io_uring_enter per burst.
 * Under q->lock. */
static bool rq_early(struct ioe_queue *q)
{
	return q->f->direct && q->unsubmitted &&
	       (q->driven || ioe_thread_is_self(q->f->t));
}

/* Start a prepared request on the submitting thread's ring. The consumer
 * never enters the kernel: the SQE waits for the engine thread, which flushes
 * it with whatever else the consumer submits meanwhile (one eventfd write per
 * burst), or for the end of a delivery on this ring that is under way;
 * O_DIRECT refills may go out earlier (rq_early). */
void ioe_ring_start(struct ioe_queue *q, struct ioe_req *r)
{
	struct ioe_frame *f = pthread_getspecific(ioe_frame_key);
	bool nested = f && f->q == q, kick;
	struct ioe_list done;

	ioe_list_init(&done);
	r->tries = 0;
	r->res = 0;
	pthread_mutex_lock(&q->lock);
	if (q->driven && !pthread_equal(pthread_self(), q->driver)) {
		/* Another thread (a decorator's timer or worker) while the
		 * poller may be inside io_uring_enter: only the poller touches
		 * the SQ. Park the request and wake the poller through efd. */
		bool poke = !q->parked.head;

		ioe_list_add(&q->parked, r);
		pthread_mutex_unlock(&q->lock);
		if (poke)
			eventfd_write(q->efd, 1);
		return;
	}
	if (q->parked.head || !rq_push(q, r))
		ioe_list_add(&q->parked, r);
	if (!q->driven && io_uring_cq_ready(&q->ring))
		ioe_ring_reap(q, &done);
	if (rq_early(q))
		rq_flush(q);
	if (nested && q->unsubmitted)
		f->later = true;
	kick = !nested && rq_arm(q);
	pthread_mutex_unlock(&q->lock);
	if (kick)
		eventfd_write(q->efd, 1);
	if (done.head)
		ioe_ring_deliver(q, &done);
}
