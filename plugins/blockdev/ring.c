/* SPDX-License-Identifier: MIT */
/* blockdev: submission and reaping on a queue's ring (blockdev.h says how
 * the rings, the plugin thread and the consumer's thread share the work). */
#include "blockdev.h"

#include <errno.h>
#include <limits.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <sys/eventfd.h>

/* --- Lists ------------------------------------------------------------------ */

void bdev_list_init(struct bdev_list *l)
{
	l->head = NULL;
	l->tail = &l->head;
}

static void bdev_list_add(struct bdev_list *l, struct bdev_rq *r)
{
	r->next = NULL;
	*l->tail = r;
	l->tail = &r->next;
}

static struct bdev_rq *bdev_list_pop(struct bdev_list *l)
{
	struct bdev_rq *r = l->head;

	if (r) {
		l->head = r->next;
		if (!l->head)
			l->tail = &l->head;
	}
	return r;
}

static void bdev_list_push_front(struct bdev_list *l, struct bdev_rq *r)
{
	r->next = l->head;
	if (!l->head)
		l->tail = &r->next;
	l->head = r;
}

/* --- Results ---------------------------------------------------------------- */

/* An errno from the kernel as a result (docs/openvmm-compat.md §2.5): block devices
 * enforce their bounds with ENOSPC and report PR conflicts as EBADE. Errnos that share a
 * value with a result class become DC_E_IO with the errno as detail. */
void bdev_rq_errno(struct bdev_rq *r, int err)
{
	bool blk = r->b->blk;

	r->detail = err;
	switch (err) {
	case ENOSPC:
		r->result = blk ? DC_E_ILLEGAL_BLOCK : DC_E_IO;
		break;
	case EBADE:
		r->result = blk ? DC_E_RESERVATION_CONFLICT : DC_E_IO;
		break;
	case EFAULT:
		r->result = DC_E_MEMORY_ACCESS;
		break;
	case EROFS:
		r->result = DC_E_READ_ONLY;
		break;
	case ENODATA: /* BLK_STS_MEDIUM */
		r->result = blk ? DC_E_MEDIUM : DC_E_IO;
		if (blk)
			r->detail = r->op == IORING_OP_READV || r->op == IORING_OP_READ ?
					    DC_MEDIUM_UNRECOVERED_READ :
					    DC_MEDIUM_WRITE_FAULT;
		break;
	default:
		r->result = DC_E_IO;
		break;
	}
}

/* Finish a request that is off the ring: copy a bounced read out, free what
 * the request allocated, complete. */
void bdev_rq_done(struct bdev_rq *r)
{
	struct dc_req *req = r->req;

	if (r->bounce) {
		if (r->result == 0 && req->op == DC_OP_READ)
			dc_buf_copy_to(&req->buf, 0, r->bounce, req->buf.len);
		free(r->bounce);
	}
	free(r->heap);
	dc_complete_detail(req, r->result, r->detail);
}

/* Complete a list; the queue may be gone once the last one is delivered. */
static void bdev_deliver(struct bdev_list *l)
{
	struct bdev_rq *r = l->head;

	while (r) {
		struct bdev_rq *next = r->next;

		bdev_rq_done(r);
		r = next;
	}
}

/* --- Rings ------------------------------------------------------------------ */

static void bq_prep(struct bq *q, struct io_uring_sqe *sqe, struct bdev_rq *r)
{
	switch (r->op) {
	case IORING_OP_READ:
		io_uring_prep_read(sqe, q->file, r->iov[0].iov_base,
				   (unsigned)r->iov[0].iov_len, r->off);
		break;
	case IORING_OP_WRITE:
		io_uring_prep_write(sqe, q->file, r->iov[0].iov_base,
				    (unsigned)r->iov[0].iov_len, r->off);
		sqe->rw_flags = r->rwflags;
		break;
	case IORING_OP_READV:
		io_uring_prep_readv(sqe, q->file, r->iov, (unsigned)r->iovcnt, r->off);
		break;
	case IORING_OP_WRITEV:
		io_uring_prep_writev(sqe, q->file, r->iov, (unsigned)r->iovcnt, r->off);
		sqe->rw_flags = r->rwflags;
		break;
	case IORING_OP_FSYNC:
		io_uring_prep_fsync(sqe, q->file, IORING_FSYNC_DATASYNC);
		break;
	case IORING_OP_FALLOCATE:
		io_uring_prep_fallocate(sqe, q->file,
					FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					(off_t)r->off, (off_t)r->left);
		break;
	}
	sqe->flags |= q->sqe_flags;
	io_uring_sqe_set_data(sqe, r);
}

/* Is this the plugin thread? */
static bool bdev_on_thread(struct bq *q)
{
	return pthread_equal(pthread_self(), q->b->loop->thread);
}

/* Ask the plugin thread to retry a submission the kernel refused (out of
 * memory): nothing else would wake this ring. */
static void bq_want_retry(struct bq *q)
{
	struct bdev_loop *L = q->b->loop;

	if (q->on_retry || q->driven)
		return; /* a driven ring retries in its next poll */
	q->on_retry = true;
	pthread_mutex_lock(&L->lock);
	q->next = L->retry;
	L->retry = q;
	pthread_mutex_unlock(&L->lock);
	/* The plugin thread looks at its list before it sleeps again. */
	if (!bdev_on_thread(q))
		eventfd_write(L->ctlfd, 1);
}

/* Hand the prepared SQEs to the kernel. Under q->lock. */
static void bq_flush(struct bq *q)
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
		bq_want_retry(q);
		break;
	}
}

/* Put a request on the ring if there is room. Under q->lock. */
static bool bq_push(struct bq *q, struct bdev_rq *r)
{
	struct io_uring_sqe *sqe;

	if (q->inflight >= q->max_inflight)
		return false;
	sqe = io_uring_get_sqe(&q->ring);
	if (!sqe)
		return false; /* the SQ is full of unflushed entries */
	bq_prep(q, sqe, r);
	q->inflight++;
	q->unsubmitted++;
	return true;
}

/* Move parked requests onto the ring while there is room. Under q->lock. */
void bq_unpark(struct bq *q)
{
	while (q->parked.head && bq_push(q, q->parked.head))
		bdev_list_pop(&q->parked);
}

/* A CQE for r: true when r is finished, false when the rest of it must go out
 * again (short transfer, EAGAIN). */
static bool bq_result(struct bdev_rq *r, int res)
{
	size_t n;

	if (res < 0) {
		if ((res == -EAGAIN || res == -EINTR) && ++r->tries < BDEV_RETRIES)
			return false;
		bdev_rq_errno(r, -res);
		return true;
	}
	if (r->op == IORING_OP_FSYNC || r->op == IORING_OP_FALLOCATE)
		return true;
	if (res == 0) {
		/* End of file or device inside the range: it shrank, or a file
		 * is shorter than the request (docs/openvmm-compat.md §2.5). */
		r->result = DC_E_ILLEGAL_BLOCK;
		return true;
	}
	n = (size_t)res;
	if (n >= r->left)
		return true;
	r->off += n;
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
void bq_reap(struct bq *q, struct bdev_list *done)
{
	struct io_uring_cqe *cqe;
	struct bdev_list again;
	struct bdev_rq *r;
	unsigned head, n = 0;

	bdev_list_init(&again);
	io_uring_for_each_cqe(&q->ring, head, cqe)
	{
		r = io_uring_cqe_get_data(cqe);
		n++;
		if (r == BQ_WAKE_TAG(q) || r == BQ_POKE_TAG(q)) {
			/* A wake of a driven ring's poller; not a request
			 * (two CQEs are kept free for them). */
			if (r == BQ_WAKE_TAG(q)) {
				q->wake_armed = false;
			} else {
				eventfd_t v;

				q->poke_armed = false;
				eventfd_read(q->efd, &v);
			}
			q->inflight++; /* undoes its share of the -= n below */
			continue;
		}
		if (bq_result(r, cqe->res))
			bdev_list_add(done, r);
		else
			bdev_list_add(&again, r);
	}
	if (!n)
		return;
	io_uring_cq_advance(&q->ring, n);
	q->inflight -= n;
	while ((r = bdev_list_pop(&again))) {
		if (!bq_push(q, r))
			bdev_list_push_front(&q->parked, r);
	}
	bq_unpark(q);
}

/* Flush, and refill from the parked list what a full SQ held back. The
 * plugin thread only. */
static void bq_flush_all(struct bq *q)
{
	for (;;) {
		if (q->unsubmitted) {
			bq_flush(q);
			if (q->unsubmitted)
				return; /* refused: retried later */
		}
		if (!q->parked.head)
			return;
		bq_unpark(q);
		if (!q->unsubmitted)
			return; /* no room: completions will make some */
	}
}

/* Ask the plugin thread to flush q, unless it is about to anyway. Returns
 * true when the caller must write q->efd (after dropping q->lock). */
static bool bq_arm(struct bq *q)
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
struct bdev_frame {
	struct bq *q;
	bool later; /* a submission on q was deferred to the end */
	struct bdev_frame *outer;
};

static pthread_key_t bdev_frame_key;
static pthread_once_t bdev_frame_once = PTHREAD_ONCE_INIT;

static void bdev_frame_init(void)
{
	if (pthread_key_create(&bdev_frame_key, NULL))
		abort();
}

/* Set up the key that finds the delivering frame; once per process. */
void bdev_frames_init(void)
{
	pthread_once(&bdev_frame_once, bdev_frame_init);
}

void bq_deliver(struct bq *q, struct bdev_list *done)
{
	struct bdev_frame f = { .q = q, .outer = pthread_getspecific(bdev_frame_key) };
	bool kick = false;

	pthread_setspecific(bdev_frame_key, &f);
	bdev_deliver(done);
	pthread_setspecific(bdev_frame_key, f.outer);
	/* Set only by a deferred submission on q, which is still in flight:
	 * q cannot have been closed. */
	if (f.later) {
		pthread_mutex_lock(&q->lock);
		if (q->driven)
			; /* the consumer's next poll submits them */
		else if (bdev_on_thread(q))
			bq_flush_all(q);
		else
			kick = bq_arm(q);
		pthread_mutex_unlock(&q->lock);
		if (kick)
			eventfd_write(q->efd, 1);
	}
}

/* The plugin thread: reap, refill and flush a ring, deliver what finished.
 * queue_close() waits for the thread's batch to end, so q may be touched after
 * the delivery. */
void bq_kick(struct bq *q)
{
	struct bdev_list done;

	bdev_list_init(&done);
	pthread_mutex_lock(&q->lock);
	q->armed = false;
	if (q->driven) {
		/* The consumer's thread reaps and submits now. */
		pthread_mutex_unlock(&q->lock);
		return;
	}
	bq_reap(q, &done);
	bq_flush_all(q);
	if (!done.head) {
		pthread_mutex_unlock(&q->lock);
		return;
	}
	q->delivering = true;
	pthread_mutex_unlock(&q->lock);
	bq_deliver(q, &done);
	pthread_mutex_lock(&q->lock);
	q->delivering = false;
	if (!q->driven)
		bq_flush_all(q);
	pthread_mutex_unlock(&q->lock);
}

/* Start a prepared request on the submitting thread's ring. The consumer
 * never enters the kernel: the SQE waits for the plugin thread, which flushes
 * it with whatever else the consumer submits meanwhile (one eventfd write per
 * burst), or for the end of a delivery on this ring that is under way. */
void bq_start(struct bq *q, struct bdev_rq *r)
{
	struct bdev_frame *f = pthread_getspecific(bdev_frame_key);
	bool nested = f && f->q == q, kick;
	struct bdev_list done;

	bdev_list_init(&done);
	pthread_mutex_lock(&q->lock);
	if (q->driven && !pthread_equal(pthread_self(), q->driver)) {
		/* Another thread (a decorator's timer or worker) while the
		 * poller may be inside io_uring_enter: only the poller touches
		 * the SQ. Park the request and wake the poller through efd. */
		bool poke = !q->parked.head;

		bdev_list_add(&q->parked, r);
		pthread_mutex_unlock(&q->lock);
		if (poke)
			eventfd_write(q->efd, 1);
		return;
	}
	if (q->parked.head || !bq_push(q, r))
		bdev_list_add(&q->parked, r);
	if (!q->driven && io_uring_cq_ready(&q->ring))
		bq_reap(q, &done);
	if (nested && q->unsubmitted)
		f->later = true;
	kick = !nested && bq_arm(q);
	pthread_mutex_unlock(&q->lock);
	if (kick)
		eventfd_write(q->efd, 1);
	if (done.head)
		bq_deliver(q, &done);
}
