/* SPDX-License-Identifier: MIT */
/* blockdev: a Linux block device or a regular file through io_uring
 * (docs/openvmm-compat.md §2.5).
 *
 * Each consumer queue gets its own ring. submit() prepares SQEs under the
 * queue's lock, which only the plugin thread ever contends, and never enters
 * the kernel: once per burst it asks the plugin thread, through the ring's
 * eventfd, to flush. That thread hands everything that accumulated to the
 * kernel in one io_uring_enter, so the device sees batches (one plug, one
 * notification), and the completion work io_uring runs in the submitter's
 * context, and its io-wq workers, belong to the thread that reaps rather than
 * to the consumer's threads.
 *
 * One plugin thread serves every instance: it sleeps in epoll on the rings'
 * eventfds (registered with io_uring, so a posted CQE wakes it) and on a
 * libudev monitor of kernel uevents, which says when a device was resized.
 * Completions already posted when the consumer submits are reaped inline.
 * Requests never fail for lack of ring space: beyond the rings' size they wait
 * on the queue's parked list and go out from the completion path.
 *
 * A consumer that drives its queue with dc_queue_wait() takes the plugin
 * thread out of the loop (queue_poll): the ring becomes "driven", its eventfd
 * stops signalling, and the consumer's thread submits and waits in one
 * io_uring_enter and delivers completions itself, so none crosses a thread.
 * Submissions from other threads (a decorator's timer) are parked and poke
 * the poller through efd, which it polls in the ring. */
#include "endian/byteorder.h"

#include <diskcore/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <libudev.h>
#include <liburing.h>
#include <limits.h>
#include <linux/cdrom.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/nvme_ioctl.h>
#include <linux/pr.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#define BDEV_SQ_ENTRIES 128
#define BDEV_CQ_ENTRIES 256
#define BDEV_INLINE_IOV 16
#define BDEV_RETRIES 8
#define BDEV_PR_CONFLICT_SAM 0x18  /* SAM status / PR_STS_RESERVATION_CONFLICT */
#define BDEV_PR_CONFLICT_NVME 0x83 /* NVMe generic status: reservation conflict */

/* The plugin thread and what it watches; one per process while any instance
 * is open. */
struct bdev_loop {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	int epfd;
	int ctlfd; /* eventfd: wake the thread */
	struct udev *udev;
	struct udev_monitor *mon;
	bool mon_tried;
	bool stop;
	bool detached;	   /* stopped from its own thread: frees itself */
	uint64_t gen;	   /* bumped between epoll batches */
	struct bdev *devs; /* block devices watched for resize */
	struct bq *dead;   /* queues closed on the thread itself */
	struct bq *retry;  /* queues whose ring refused a submission */
};

struct bdev {
	int fd;
	char *path;
	struct dc_node *node;
	struct bdev_loop *loop;
	struct bdev *next; /* loop->devs */
	dev_t rdev;
	bool blk, direct, read_only, nvme, pr, watched;
	unsigned shift;
	size_t align;		  /* O_DIRECT: address and length alignment */
	_Atomic uint64_t sectors; /* live for devices, fixed for files */
	uint32_t gran;		  /* discard granularity in sectors, 0: none */
	uint32_t nsid;
	uint8_t rescap;
};

/* A request's scratch. */
struct bdev_rq {
	struct bdev_rq *next;
	struct dc_req *req;
	struct bdev *b;
	struct iovec *iov; /* where the transfer stands */
	int iovcnt;
	uint8_t op; /* IORING_OP_* */
	uint8_t tries;
	int rwflags;
	void *bounce;
	struct iovec *heap;
	uint64_t off, left;
	int result, detail;
	struct iovec inl[BDEV_INLINE_IOV];
};

/* What preparing a request decided (else a result to complete with). */
enum { BDEV_TO_RING = 0, BDEV_DONE = 1, BDEV_HANDED_OFF = 2 };

struct bdev_list {
	struct bdev_rq *head, **tail;
};

/* A consumer queue's ring. */
struct bq {
	pthread_mutex_t lock;
	struct io_uring ring;
	struct bdev *b;
	unsigned inflight;    /* requests with an SQE, not yet reaped */
	unsigned unsubmitted; /* SQEs the kernel has not taken yet */
	unsigned max_inflight;
	int file; /* fixed-file index or fd */
	uint8_t sqe_flags;
	bool on_retry;
	bool delivering;  /* the plugin thread is delivering this ring's completions */
	bool armed;	  /* the plugin thread was asked to flush */
	bool driven;	  /* the consumer's thread polls (dc_queue_wait) */
	bool wake_armed;  /* a poll on the core's wake fd is in the ring */
	bool poke_armed;  /* a poll on efd is in the ring (driven rings) */
	pthread_t driver; /* the thread that polls a driven ring */
	int efd;	  /* eventfd: completions posted, or a flush wanted */
	struct bdev_list parked;
	struct bq *next; /* loop->dead or loop->retry */
};

static pthread_mutex_t bdev_life = PTHREAD_MUTEX_INITIALIZER;
static struct bdev_loop *bdev_cur; /* under bdev_life */
static unsigned bdev_refs;	   /* under bdev_life */
static char bdev_tag_ctl, bdev_tag_udev;

/* --- Lists ------------------------------------------------------------------ */

static void bdev_list_init(struct bdev_list *l)
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
static void bdev_rq_errno(struct bdev_rq *r, int err)
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
static void bdev_rq_done(struct bdev_rq *r)
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
static void bq_unpark(struct bq *q)
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

/* The user data of the polls on the core's wake fd and on efd. */
#define BQ_WAKE_TAG(q) ((struct bdev_rq *)&(q)->wake_armed)
#define BQ_POKE_TAG(q) ((struct bdev_rq *)&(q)->poke_armed)

/* Take every posted completion; resubmit partial transfers and parked
 * requests while there is room. Finished requests go on done. Under q->lock. */
static void bq_reap(struct bq *q, struct bdev_list *done)
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

static void bq_deliver(struct bq *q, struct bdev_list *done)
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
static void bq_kick(struct bq *q)
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
static void bq_start(struct bq *q, struct bdev_rq *r)
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

/* --- The plugin thread -------------------------------------------------------- */

static void bdev_resized(struct bdev *b)
{
	uint64_t bytes, sectors;

	if (ioctl(b->fd, BLKGETSIZE64, &bytes) < 0)
		return;
	sectors = bytes >> b->shift;
	if (atomic_exchange(&b->sectors, sectors) != sectors) {
		dc_debug("blockdev: %s resized to %llu sectors", b->path,
			 (unsigned long long)sectors);
		dc_node_notify_resize(b->node);
	}
}

static bool bdev_prop_true(struct udev_device *d, const char *key)
{
	const char *v = udev_device_get_property_value(d, key);

	return v && (!strcmp(v, "1") || !strcmp(v, "true"));
}

/* Kernel uevents: "change" with RESIZE=1 for a device we hold, or RESCAN. */
static void bdev_uevents(struct bdev_loop *L)
{
	struct udev_device *d;

	for (;;) {
		const char *action;
		bool all;
		dev_t devnum;

		d = udev_monitor_receive_device(L->mon);
		if (!d) {
			/* Events were dropped: any of ours may have been one. */
			if (errno != ENOBUFS)
				break;
			all = true;
			devnum = 0;
		} else {
			action = udev_device_get_action(d);
			all = bdev_prop_true(d, "RESCAN");
			devnum = udev_device_get_devnum(d);
			if (!all && !(action && !strcmp(action, "change") &&
				      bdev_prop_true(d, "RESIZE"))) {
				udev_device_unref(d);
				continue;
			}
			udev_device_unref(d);
		}
		pthread_mutex_lock(&L->lock);
		for (struct bdev *b = L->devs; b; b = b->next) {
			if (all || b->rdev == devnum)
				bdev_resized(b);
		}
		pthread_mutex_unlock(&L->lock);
	}
}

/* liburing maps and unmaps a ring with raw system calls that ThreadSanitizer
 * does not see; a new ring mapped where a closed one was would look like a
 * race with the thread that last used the old one. Ordering ring set-up and
 * tear-down through one lock tells it what the kernel already guarantees. */
static pthread_mutex_t bdev_ring_lock = PTHREAD_MUTEX_INITIALIZER;

static void bdev_ring_exit(struct io_uring *ring)
{
	pthread_mutex_lock(&bdev_ring_lock);
	io_uring_queue_exit(ring);
	pthread_mutex_unlock(&bdev_ring_lock);
}

static void bq_destroy(struct bq *q)
{
	bdev_ring_exit(&q->ring);
	if (q->efd >= 0)
		close(q->efd);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

static void bdev_loop_free(struct bdev_loop *L);

static void *bdev_thread(void *arg)
{
	struct bdev_loop *L = arg;
	struct epoll_event ev[64];

	for (;;) {
		struct bq *dead, *retry, *q;
		bool stop;
		int n;

		pthread_mutex_lock(&L->lock);
		retry = L->retry;
		L->retry = NULL;
		pthread_mutex_unlock(&L->lock);
		while ((q = retry)) {
			retry = q->next;
			pthread_mutex_lock(&q->lock);
			q->on_retry = false;
			pthread_mutex_unlock(&q->lock);
			bq_kick(q);
		}
		/* Between batches: no ring from an earlier epoll_wait or retry
		 * list is held any more (queue_close() waits for this). */
		pthread_mutex_lock(&L->lock);
		L->gen++;
		pthread_cond_broadcast(&L->cond);
		dead = L->dead;
		L->dead = NULL;
		stop = L->stop;
		/* A refused submission is retried after a millisecond. */
		n = L->retry ? 1 : -1;
		pthread_mutex_unlock(&L->lock);
		while ((q = dead)) {
			dead = q->next;
			bq_destroy(q);
		}
		if (stop)
			break;
		n = epoll_wait(L->epfd, ev, 64, n);
		for (int i = 0; i < n; i++) {
			void *p = ev[i].data.ptr;

			if (p == &bdev_tag_ctl) {
				eventfd_t v;

				eventfd_read(L->ctlfd, &v);
			} else if (p == &bdev_tag_udev) {
				bdev_uevents(L);
			} else {
				bq_kick(p);
			}
		}
	}
	if (L->detached)
		bdev_loop_free(L);
	return NULL;
}

static void bdev_loop_free(struct bdev_loop *L)
{
	if (L->mon)
		udev_monitor_unref(L->mon);
	if (L->udev)
		udev_unref(L->udev);
	if (L->epfd >= 0)
		close(L->epfd);
	if (L->ctlfd >= 0)
		close(L->ctlfd);
	pthread_cond_destroy(&L->cond);
	pthread_mutex_destroy(&L->lock);
	free(L);
}

/* The running plugin thread, started by the first instance. */
static struct bdev_loop *bdev_loop_get(void)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &bdev_tag_ctl };
	struct bdev_loop *L;
	sigset_t all, old;
	int rc;

	pthread_once(&bdev_frame_once, bdev_frame_init);
	pthread_mutex_lock(&bdev_life);
	if (bdev_cur) {
		bdev_refs++;
		L = bdev_cur;
		pthread_mutex_unlock(&bdev_life);
		return L;
	}
	L = calloc(1, sizeof(*L));
	if (!L) {
		pthread_mutex_unlock(&bdev_life);
		dc_error("out of memory");
		return NULL;
	}
	pthread_mutex_init(&L->lock, NULL);
	pthread_cond_init(&L->cond, NULL);
	L->epfd = epoll_create1(EPOLL_CLOEXEC);
	L->ctlfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (L->epfd < 0 || L->ctlfd < 0 ||
	    epoll_ctl(L->epfd, EPOLL_CTL_ADD, L->ctlfd, &ev) < 0) {
		dc_error("cannot set up the completion thread: %s", strerror(errno));
		goto fail;
	}
	/* The thread takes no signals: they belong to the application. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&L->thread, NULL, bdev_thread, L);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		dc_error("cannot start the completion thread: %s", strerror(rc));
		goto fail;
	}
	bdev_cur = L;
	bdev_refs = 1;
	pthread_mutex_unlock(&bdev_life);
	return L;
fail:
	bdev_loop_free(L);
	pthread_mutex_unlock(&bdev_life);
	return NULL;
}

static void bdev_loop_put(struct bdev_loop *L)
{
	bool self;

	pthread_mutex_lock(&bdev_life);
	if (--bdev_refs) {
		pthread_mutex_unlock(&bdev_life);
		return;
	}
	bdev_cur = NULL;
	pthread_mutex_unlock(&bdev_life);
	pthread_mutex_lock(&L->lock);
	L->stop = true;
	pthread_mutex_unlock(&L->lock);
	eventfd_write(L->ctlfd, 1);
	self = pthread_equal(pthread_self(), L->thread);
	if (self) {
		/* The last disk was closed from a completion callback on the
		 * thread itself: it frees the loop when it leaves. */
		L->detached = true;
		pthread_detach(L->thread);
		return;
	}
	pthread_join(L->thread, NULL);
	bdev_loop_free(L);
}

/* Watch a block device for resize uevents. The monitor is made on first use;
 * without one (no netlink), the size simply never changes. */
static void bdev_watch(struct bdev *b)
{
	struct bdev_loop *L = b->loop;

	pthread_mutex_lock(&L->lock);
	if (!L->mon_tried) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &bdev_tag_udev };

		L->mon_tried = true;
		L->udev = udev_new();
		if (L->udev)
			L->mon = udev_monitor_new_from_netlink(L->udev, "kernel");
		if (L->mon)
			udev_monitor_set_receive_buffer_size(L->mon, 1 << 20);
		if (!L->mon ||
		    udev_monitor_filter_add_match_subsystem_devtype(L->mon, "block",
								    NULL) < 0 ||
		    udev_monitor_enable_receiving(L->mon) < 0 ||
		    epoll_ctl(L->epfd, EPOLL_CTL_ADD, udev_monitor_get_fd(L->mon), &ev) <
			    0) {
			dc_debug("blockdev: no uevent monitor, resizes go unnoticed");
			if (L->mon)
				udev_monitor_unref(L->mon);
			L->mon = NULL;
		}
	}
	if (L->mon) {
		b->next = L->devs;
		L->devs = b;
		b->watched = true;
	}
	pthread_mutex_unlock(&L->lock);
}

static void bdev_unwatch(struct bdev *b)
{
	struct bdev_loop *L = b->loop;

	if (!b->watched)
		return;
	pthread_mutex_lock(&L->lock);
	for (struct bdev **pp = &L->devs; *pp; pp = &(*pp)->next) {
		if (*pp == b) {
			*pp = b->next;
			break;
		}
	}
	pthread_mutex_unlock(&L->lock);
}

/* --- Queues ------------------------------------------------------------------ */

static int bdev_ring_init(struct io_uring *ring, unsigned entries, unsigned cq)
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

static int bdev_queue_open(void *inst, void **qctx)
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
static int bdev_queue_poll(void *inst, void *qctx, int wake_fd, int timeout_ms)
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
static void bdev_queue_close(void *inst, void *qctx)
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

/* --- Requests ------------------------------------------------------------------ */

static uint64_t bdev_sector_count(void *inst)
{
	struct bdev *b = inst;

	return atomic_load_explicit(&b->sectors, memory_order_relaxed);
}

static bool bdev_in_range(struct bdev *b, uint64_t sector, uint64_t count)
{
	uint64_t n = atomic_load_explicit(&b->sectors, memory_order_relaxed);

	return sector <= n && count <= n - sector;
}

/* Hand a request to the worker pool (blocking ioctls). */
static int bdev_to_pool(struct bdev_rq *r, void (*fn)(void *))
{
	return dc_pool_run(fn, r) < 0 ? -ENOMEM : BDEV_HANDED_OFF;
}

/* Reads and writes: straight into the request's buffers, bounced through an
 * aligned copy when O_DIRECT cannot take them. Returns BDEV_TO_RING,
 * BDEV_DONE or a result. */
static int bdev_rw(struct bdev *b, struct bdev_rq *r)
{
	struct dc_req *req = r->req;
	bool write = req->op == DC_OP_WRITE;
	size_t len = req->buf.len;
	int cnt = -E2BIG;

	if (write && b->read_only)
		return DC_E_READ_ONLY;
	if (len & ((1u << b->shift) - 1))
		return DC_E_INVALID_INPUT;
	if (!bdev_in_range(b, req->sector, len >> b->shift))
		return DC_E_ILLEGAL_BLOCK;
	if (len == 0)
		return BDEV_DONE;
	r->off = req->sector << b->shift;
	r->left = len;
	r->rwflags = write && (req->flags & DC_IO_FUA) ? RWF_DSYNC : 0;
	if (!b->direct || dc_buf_aligned(&req->buf, b->align)) {
		cnt = dc_buf_iov(&req->buf, r->inl, BDEV_INLINE_IOV);
		r->iov = r->inl;
		if (cnt == -E2BIG && req->buf.iovcnt <= IOV_MAX) {
			r->heap = malloc(sizeof(*r->heap) * (size_t)req->buf.iovcnt);
			if (!r->heap)
				return -ENOMEM;
			cnt = dc_buf_iov(&req->buf, r->heap, req->buf.iovcnt);
			r->iov = r->heap;
		}
	}
	if (cnt < 0) {
		/* Unaligned for O_DIRECT, or more segments than preadv takes. */
		if (posix_memalign(&r->bounce, b->align > 4096 ? b->align : 4096, len))
			return -ENOMEM;
		if (write)
			dc_buf_copy_from(&req->buf, 0, r->bounce, len);
		r->inl[0].iov_base = r->bounce;
		r->inl[0].iov_len = len;
		r->iov = r->inl;
		cnt = 1;
	}
	r->iovcnt = cnt;
	if (cnt == 1 && r->iov[0].iov_len <= UINT_MAX)
		r->op = write ? IORING_OP_WRITE : IORING_OP_READ;
	else
		r->op = write ? IORING_OP_WRITEV : IORING_OP_READV;
	return BDEV_TO_RING;
}

static void bdev_pool_discard(void *arg)
{
	struct bdev_rq *r = arg;
	uint64_t range[2] = { r->off, r->left };

	if (ioctl(r->b->fd, BLKDISCARD, range) < 0) {
		/* A device that cannot discard has nothing to forget. */
		if (errno != ENOTTY && errno != EOPNOTSUPP && errno != ENOSYS)
			bdev_rq_errno(r, errno);
	}
	bdev_rq_done(r);
}

/* Unmap: files punch holes through the ring, devices discard on the pool.
 * Returns BDEV_TO_RING, BDEV_DONE, BDEV_HANDED_OFF or a result. */
static int bdev_unmap(struct bdev *b, struct bdev_rq *r)
{
	struct dc_req *req = r->req;

	if (b->read_only)
		return DC_E_READ_ONLY;
	/* Needed: a hole punched past the end of a file succeeds. */
	if (!bdev_in_range(b, req->sector, req->count))
		return DC_E_ILLEGAL_BLOCK;
	if (req->count == 0 || b->gran == 0)
		return BDEV_DONE;
	r->off = req->sector << b->shift;
	r->left = req->count << b->shift;
	if (b->blk)
		return bdev_to_pool(r, bdev_pool_discard);
	r->op = IORING_OP_FALLOCATE;
	return BDEV_TO_RING;
}

static void bdev_pool_eject(void *arg)
{
	struct bdev_rq *r = arg;
	int fd = r->b->fd;

	if (ioctl(fd, CDROM_LOCKDOOR, 0) < 0 || ioctl(fd, CDROMEJECT, 0) < 0) {
		int err = errno;

		if (err == ENOTTY || err == EINVAL || err == ENOSYS || err == EOPNOTSUPP)
			r->result = DC_E_UNSUPPORTED_EJECT;
		else
			bdev_rq_errno(r, err);
	}
	bdev_rq_done(r);
}

/* --- Persistent reservations ---------------------------------------------------- */

/* A PR ioctl's return: -1/errno, or a positive SCSI/NVMe/PR_STS status. */
static void bdev_pr_status(struct bdev_rq *r, int rc, int err)
{
	if (rc == 0)
		return;
	if (rc < 0) {
		if (err == EOPNOTSUPP || err == ENOTTY)
			r->result = DC_E_UNSUPPORTED;
		else
			bdev_rq_errno(r, err);
		return;
	}
	if (rc == BDEV_PR_CONFLICT_SAM || rc == BDEV_PR_CONFLICT_NVME) {
		r->result = DC_E_RESERVATION_CONFLICT;
	} else {
		r->result = DC_E_IO;
		r->detail = EIO;
	}
}

/* NVMe Reservation Report with the extended data structure (128-bit host ids),
 * retried with a bigger buffer while the registrants do not fit. */
static void bdev_nvme_report(struct bdev_rq *r, struct dc_pr_report *rep)
{
	uint32_t len = 4096;

	for (;;) {
		uint8_t *buf = aligned_alloc(4096, len);
		struct nvme_passthru_cmd c = {
			.opcode = 0x0e, /* Reservation Report */
			.nsid = r->b->nsid,
			.data_len = len,
			.cdw10 = len / 4 - 1,
			.cdw11 = 1, /* extended data structure */
		};
		uint32_t need, nreg, i;
		int rc;

		if (!buf) {
			bdev_rq_errno(r, ENOMEM);
			return;
		}
		memset(buf, 0, len);
		c.addr = (uintptr_t)buf;
		rc = ioctl(r->b->fd, NVME_IOCTL_IO_CMD, &c);
		if (rc) {
			bdev_pr_status(r, rc, errno);
			free(buf);
			return;
		}
		nreg = get_le16(buf + 5);
		need = 64 + nreg * 64;
		if (need > len && len < (1u << 20)) {
			len = (need + 4095) & ~4095u;
			free(buf);
			continue;
		}
		rep->generation = get_le32(buf);
		rep->reservation_type = buf[4];
		rep->persist_through_power_loss = buf[9] & 1;
		rep->ncontrollers = nreg;
		for (i = 0;
		     i < nreg && i < rep->max_controllers && 64 + (i + 1) * 64 <= len;
		     i++) {
			const uint8_t *e = buf + 64 + i * 64;
			struct dc_pr_controller *ctl = &rep->controllers[i];

			ctl->controller_id = get_le16(e);
			ctl->holds_reservation = e[2] & 1;
			ctl->key = get_le64(e + 8);
			memcpy(ctl->host_id, e + 16, 16);
			ctl->host_id_len = 16;
		}
		free(buf);
		return;
	}
}

static void bdev_pool_pr(void *arg)
{
	struct bdev_rq *r = arg;
	struct dc_req *req = r->req;
	struct dc_pr_args *pr = req->pr;
	int fd = r->b->fd, rc = 0;

	switch (req->op) {
	case DC_OP_PR_CAPS:
		/* NVMe says what it supports; the SCSI PR model has them all. */
		pr->caps->types = r->b->nvme ? (uint32_t)(r->b->rescap & 0x7e) : 0x7e;
		pr->caps->persist_through_power_loss = r->b->nvme && (r->b->rescap & 1);
		break;
	case DC_OP_PR_REPORT:
		if (r->b->nvme)
			bdev_nvme_report(r, pr->report);
		else
			r->result = DC_E_UNSUPPORTED;
		break;
	case DC_OP_PR_REGISTER: {
		struct pr_registration reg = {
			.old_key = pr->ignore_key ? 0 : pr->key,
			.new_key = pr->new_key,
			.flags = pr->ignore_key ? PR_FL_IGNORE_KEY : 0,
		};

		/* The kernel API cannot change persist-through-power-loss. */
		if (pr->ptpl >= 0)
			dc_debug("blockdev: %s: ptpl=%d ignored", r->b->path, pr->ptpl);
		rc = ioctl(fd, IOC_PR_REGISTER, &reg);
		break;
	}
	case DC_OP_PR_RESERVE:
	case DC_OP_PR_RELEASE: {
		struct pr_reservation res = { .key = pr->key, .type = pr->type };

		rc = ioctl(fd,
			   req->op == DC_OP_PR_RESERVE ? IOC_PR_RESERVE : IOC_PR_RELEASE,
			   &res);
		break;
	}
	case DC_OP_PR_CLEAR: {
		struct pr_clear clr = { .key = pr->key };

		rc = ioctl(fd, IOC_PR_CLEAR, &clr);
		break;
	}
	case DC_OP_PR_PREEMPT: {
		struct pr_preempt pre = { .old_key = pr->key,
					  .new_key = pr->new_key,
					  .type = pr->type };

		rc = ioctl(fd, pr->abort ? IOC_PR_PREEMPT_ABORT : IOC_PR_PREEMPT, &pre);
		break;
	}
	}
	bdev_pr_status(r, rc, errno);
	bdev_rq_done(r);
}

static void bdev_submit(void *inst, struct dc_req *req)
{
	struct bdev *b = inst;
	struct bdev_rq *r = req->ctx;
	int rc = BDEV_TO_RING;

	r->req = req;
	r->b = b;
	r->bounce = NULL;
	r->heap = NULL;
	r->tries = 0;
	r->result = 0;
	r->detail = 0;
	switch (req->op) {
	case DC_OP_READ:
	case DC_OP_WRITE:
		rc = bdev_rw(b, r);
		break;
	case DC_OP_FLUSH:
		r->op = IORING_OP_FSYNC;
		break;
	case DC_OP_UNMAP:
		rc = bdev_unmap(b, r);
		break;
	case DC_OP_EJECT:
		rc = b->blk ? bdev_to_pool(r, bdev_pool_eject) : DC_E_UNSUPPORTED_EJECT;
		break;
	default:
		rc = b->pr && req->pr ? bdev_to_pool(r, bdev_pool_pr) : DC_E_UNSUPPORTED;
		break;
	}
	if (rc == BDEV_TO_RING) {
		bq_start(req->qctx, r);
	} else if (rc != BDEV_HANDED_OFF) {
		if (rc == -ENOMEM) {
			r->result = DC_E_IO;
			r->detail = ENOMEM;
		} else if (rc < 0) {
			r->result = rc;
		}
		bdev_rq_done(r);
	}
}

/* --- Opening ---------------------------------------------------------------------- */

/* A number from /sys/dev/block/MAJ:MIN/NAME, or from the whole disk's
 * directory for a partition. */
static bool bdev_sysfs(const struct bdev *b, const char *name, uint64_t *out)
{
	static const char *const fmt[] = { "/sys/dev/block/%u:%u/%s",
					   "/sys/dev/block/%u:%u/../%s" };
	unsigned long long v;

	for (size_t i = 0; i < 2; i++) {
		char path[160];
		FILE *f;
		int ok;

		snprintf(path, sizeof(path), fmt[i], major(b->rdev), minor(b->rdev),
			 name);
		f = fopen(path, "re");
		if (!f)
			continue;
		ok = fscanf(f, "%llu", &v) == 1;
		fclose(f);
		if (ok) {
			*out = v;
			return true;
		}
	}
	return false;
}

static bool bdev_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static int bdev_nvme_identify(int fd, uint32_t nsid, uint32_t cns, void *buf)
{
	struct nvme_admin_cmd c = {
		.opcode = 0x06, /* Identify */
		.nsid = nsid,
		.addr = (uintptr_t)buf,
		.data_len = 4096,
		.cdw10 = cns,
	};

	return ioctl(fd, NVME_IOCTL_ADMIN_CMD, &c);
}

/* Which PR passthrough the device takes. NVMe namespaces say so in Identify
 * (reservations in ONCS, types in RESCAP); other devices are asked with a
 * register of key 0 to key 0, which changes nothing where it is understood
 * and fails with EOPNOTSUPP where the driver has no PR operations (loop). */
static void bdev_probe_pr(struct bdev *b)
{
	char path[96];
	uint64_t nsid;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/dm", major(b->rdev),
		 minor(b->rdev));
	if (access(path, F_OK) == 0)
		return; /* device-mapper: whatever is below decides, not us */
	if (bdev_sysfs(b, "nsid", &nsid)) {
		uint8_t *buf = aligned_alloc(4096, 4096);

		b->nvme = true;
		b->nsid = (uint32_t)nsid;
		if (!buf)
			return;
		if (bdev_nvme_identify(b->fd, b->nsid, 0, buf) == 0) {
			b->rescap = buf[153];
			if (bdev_nvme_identify(b->fd, 0, 1, buf) == 0 &&
			    (get_le16(buf + 520) & (1u << 5)))
				b->pr = b->rescap != 0;
		}
		free(buf);
	} else if (!b->read_only) {
		struct pr_registration reg = { 0 };
		int rc = ioctl(b->fd, IOC_PR_REGISTER, &reg);

		b->pr = rc == 0 || rc == BDEV_PR_CONFLICT_SAM;
		if (rc < 0)
			dc_debug("blockdev: %s: no PR passthrough (%s)", b->path,
				 strerror(errno));
	}
}

static int bdev_probe_blk(struct bdev *b, const struct stat *st, struct dc_info *info)
{
	uint64_t lbs = 0, pbs = 0, gran = 0, max = 0, fua = 0, removable = 0, bytes;
	int ilbs = 0;
	unsigned ipbs = 0;

	b->blk = true;
	b->rdev = st->st_rdev;
	if (!bdev_sysfs(b, "queue/logical_block_size", &lbs) &&
	    ioctl(b->fd, BLKSSZGET, &ilbs) == 0)
		lbs = (uint64_t)ilbs;
	if (!bdev_sysfs(b, "queue/physical_block_size", &pbs) &&
	    ioctl(b->fd, BLKPBSZGET, &ipbs) == 0)
		pbs = ipbs;
	if (ioctl(b->fd, BLKGETSIZE64, &bytes) < 0) {
		int err = errno;

		dc_error("%s: BLKGETSIZE64: %s", b->path, strerror(err));
		return -err;
	}
	if (bdev_sysfs(b, "queue/discard_max_bytes", &max) && max)
		bdev_sysfs(b, "queue/discard_granularity", &gran);
	bdev_sysfs(b, "queue/fua", &fua);
	if (lbs < 512 || lbs > (1u << 16) || !bdev_pow2(lbs))
		return dc_fail(-EINVAL,
			       "%s: logical block size %llu is not a power of two >= 512",
			       b->path, (unsigned long long)lbs);
	if (pbs && !bdev_pow2(pbs))
		return dc_fail(-EINVAL,
			       "%s: physical block size %llu is not a power of two",
			       b->path, (unsigned long long)pbs);
	if (bytes % lbs || gran % lbs)
		return dc_fail(
			-EINVAL,
			"%s: size %llu or discard granularity %llu is not a multiple of "
			"the %llu-byte logical block",
			b->path, (unsigned long long)bytes, (unsigned long long)gran,
			(unsigned long long)lbs);
	b->shift = (unsigned)__builtin_ctzll(lbs);
	b->align = (size_t)lbs;
	atomic_store(&b->sectors, bytes >> b->shift);
	b->gran = (uint32_t)((gran >> b->shift) < UINT32_MAX ? gran >> b->shift :
							       UINT32_MAX);
	info->physical_sector_size = (uint32_t)(pbs > lbs ? pbs : lbs);
	info->unmap_behavior = b->gran ? DC_UNMAP_UNSPECIFIED : DC_UNMAP_IGNORED;
	if (fua)
		info->flags |= DC_INFO_FUA_RESPECTED;
	bdev_probe_pr(b);
	if (b->pr)
		info->flags |= DC_INFO_PR;
	if (bdev_sysfs(b, "removable", &removable) && removable)
		info->flags |= DC_INFO_EJECT;
	return 0;
}

static int bdev_probe_file(struct bdev *b, const struct stat *st, bool can_fallocate,
			   struct dc_info *info)
{
	uint64_t bytes = (uint64_t)st->st_size;

	b->shift = 9;
	b->align = 512;
	if (b->direct) {
		struct statx stx;

		/* O_DIRECT offsets (hence sectors) and buffers as the
		 * filesystem needs them. */
		if (statx(b->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
		    (stx.stx_mask & STATX_DIOALIGN)) {
			if (bdev_pow2(stx.stx_dio_offset_align) &&
			    stx.stx_dio_offset_align > 512 &&
			    stx.stx_dio_offset_align <= 65536)
				b->shift =
					(unsigned)__builtin_ctz(stx.stx_dio_offset_align);
			if (bdev_pow2(stx.stx_dio_mem_align) &&
			    stx.stx_dio_mem_align > b->align)
				b->align = stx.stx_dio_mem_align;
		}
		if (b->align < (1u << b->shift))
			b->align = 1u << b->shift;
	}
	if (bytes & ((1u << b->shift) - 1))
		return dc_fail(-EINVAL,
			       "%s: size %llu is not a multiple of the %u-byte sector",
			       b->path, (unsigned long long)bytes, 1u << b->shift);
	atomic_store(&b->sectors, bytes >> b->shift);
	info->physical_sector_size = bdev_pow2((uint64_t)st->st_blksize) &&
						     (uint32_t)st->st_blksize >
							     (1u << b->shift) ?
					     (uint32_t)st->st_blksize :
					     1u << b->shift;
	/* Punching a hole at the end changes nothing and tells whether the
	 * filesystem can (docs/openvmm-compat.md §2.5). */
	info->unmap_behavior = DC_UNMAP_IGNORED;
	if (!b->read_only && can_fallocate &&
	    fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)bytes,
		      1) == 0) {
		uint64_t gran = (uint64_t)st->st_blksize >> b->shift;

		b->gran = gran ? (uint32_t)gran : 1;
		info->unmap_behavior = DC_UNMAP_ZEROES;
	}
	return 0;
}

/* io_uring must exist and know the opcodes we use; FALLOCATE is optional. */
static int bdev_probe_uring(bool *can_fallocate)
{
	static const uint8_t need[] = { IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_READ,
					IORING_OP_WRITE, IORING_OP_FSYNC };
	struct io_uring_probe *p;
	struct io_uring ring;
	int rc = bdev_ring_init(&ring, 4, 8);

	if (rc < 0)
		return rc;
	p = io_uring_get_probe_ring(&ring);
	bdev_ring_exit(&ring);
	if (!p)
		return dc_fail(
			-ENOSYS,
			"io_uring: cannot probe the supported operations (kernel too "
			"old? 5.6 or later is needed)");
	for (size_t i = 0; i < sizeof(need); i++) {
		if (!io_uring_opcode_supported(p, need[i])) {
			io_uring_free_probe(p);
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

static void bdev_close(void *inst)
{
	struct bdev *b = inst;

	bdev_unwatch(b);
	if (b->loop)
		bdev_loop_put(b->loop);
	if (b->fd >= 0)
		close(b->fd);
	free(b->path);
	free(b);
}

static int bdev_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	bool can_fallocate = false;
	struct bdev *b;
	struct stat st;
	int rc;

	if (a->nfields < 1 || !a->fields[0][0])
		return dc_fail(-EINVAL, "missing path (expected blockdev:PATH)");
	b = calloc(1, sizeof(*b));
	if (!b || !(b->path = strdup(a->fields[0]))) {
		free(b);
		return dc_fail(-ENOMEM, "out of memory");
	}
	b->node = a->node;
	b->direct = dc_opt_flag(a, "direct");
	b->read_only = a->read_only;
	b->fd = open(b->path, (b->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC |
				      (b->direct ? O_DIRECT : 0));
	if (b->fd < 0) {
		rc = -errno;
		if (errno == EINVAL && b->direct)
			dc_error("%s: the filesystem does not support O_DIRECT (;direct)",
				 b->path);
		else
			dc_error("%s: cannot open %s: %s", b->path,
				 b->read_only ? "read-only" : "read-write",
				 strerror(errno));
		goto fail;
	}
	if (fstat(b->fd, &st) < 0) {
		rc = -errno;
		dc_error("%s: stat failed: %s", b->path, strerror(errno));
		goto fail;
	}
	if (!S_ISBLK(st.st_mode) && !S_ISREG(st.st_mode)) {
		dc_error("%s: not a block device or regular file", b->path);
		rc = -EINVAL;
		goto fail;
	}
	rc = bdev_probe_uring(&can_fallocate);
	if (rc < 0)
		goto fail;
	memset(info, 0, sizeof(*info));
	rc = S_ISBLK(st.st_mode) ? bdev_probe_blk(b, &st, info) :
				   bdev_probe_file(b, &st, can_fallocate, info);
	if (rc < 0)
		goto fail;
	b->loop = bdev_loop_get();
	if (!b->loop) {
		rc = -ENOMEM;
		goto fail;
	}
	if (b->blk)
		bdev_watch(b);
	info->sector_count = atomic_load(&b->sectors);
	info->sector_size = 1u << b->shift;
	info->optimal_unmap_sectors = b->gran ? b->gran : 1;
	if (b->read_only)
		info->flags |= DC_INFO_READ_ONLY;
	snprintf(info->disk_type, sizeof(info->disk_type), "block_device");
	*inst = b;
	return 0;
fail:
	bdev_close(b);
	return rc;
}

static void bdev_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct bdev *b = inst;
	char v[64];

	kv(arg, "path", b->path);
	kv(arg, "type", b->blk ? "block device" : "regular file");
	kv(arg, "direct", b->direct ? "yes" : "no");
	if (b->blk) {
		snprintf(v, sizeof(v), "%u:%u", major(b->rdev), minor(b->rdev));
		kv(arg, "device", v);
		kv(arg, "resize", b->watched ? "kernel uevents" : "not watched");
		kv(arg, "pr",
		   !b->pr  ? "no" :
		   b->nvme ? "nvme passthrough" :
			     "passthrough");
	}
	kv(arg, "io", "io_uring, one ring per queue");
}

static const struct dc_option bdev_options[] = {
	{ .name = "direct",
	  .type = DC_OPT_FLAG,
	  .help = "open with O_DIRECT (bypass the page cache)" },
	{ 0 },
};

static const struct dc_form bdev_forms[] = {
	{ .name = "blockdev",
	  .nfields = 1,
	  .child = DC_CHILD_NONE,
	  .flags = 0,
	  .syntax = "blockdev:PATH[;direct]",
	  .help = "a Linux block device or regular file through io_uring",
	  .options = bdev_options },
	{ 0 },
};

DC_PLUGIN(bdev_plugin) = {
	.kind = DC_KIND_BACKEND,
	.name = "blockdev",
	.version = "0.1.0",
	.summary = "Linux block device or file through io_uring (resize, unmap, PR)",
	.usage = "blockdev:PATH[;direct]\n"
		 "  Devices: sector sizes, FUA and discard granularity from sysfs; the\n"
		 "  size follows online resizes (kernel uevents); unmap discards\n"
		 "  (contents unspecified); persistent reservations pass through where\n"
		 "  the driver has them (NVMe, SCSI). Files: 512-byte sectors (with\n"
		 "  ;direct, the filesystem's O_DIRECT alignment), fixed size, unmap\n"
		 "  punches holes (reads back zeroes) when the filesystem can.\n"
		 "  One io_uring per queue; FUA writes use RWF_DSYNC; flush is fdatasync.\n"
		 "  Needs io_uring (Linux 5.6+, kernel.io_uring_disabled=0).",
	.forms = bdev_forms,
	.ctx_size = sizeof(struct bdev_rq),
	.ops = DC_OP_BIT(DC_OP_READ) | DC_OP_BIT(DC_OP_WRITE) | DC_OP_BIT(DC_OP_FLUSH) |
	       DC_OP_BIT(DC_OP_UNMAP) | DC_OP_BIT(DC_OP_EJECT) | DC_OPS_PR,
	.open = bdev_open,
	.close = bdev_close,
	.queue_open = bdev_queue_open,
	.queue_close = bdev_queue_close,
	.queue_poll = bdev_queue_poll,
	.submit = bdev_submit,
	.sector_count = bdev_sector_count,
	.describe = bdev_describe,
};
