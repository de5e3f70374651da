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
#ifndef DISKCORE_PLUGIN_BLOCKDEV_H
#define DISKCORE_PLUGIN_BLOCKDEV_H

#include <diskcore/plugin.h>

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

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

/* The user data of the polls on the core's wake fd and on efd. */
#define BQ_WAKE_TAG(q) ((struct bdev_rq *)&(q)->wake_armed)
#define BQ_POKE_TAG(q) ((struct bdev_rq *)&(q)->poke_armed)

/* ring.c: lists, results, submission and reaping on a ring */
void bdev_frames_init(void);
void bdev_list_init(struct bdev_list *l);
void bdev_rq_done(struct bdev_rq *r);
void bdev_rq_errno(struct bdev_rq *r, int err);
void bq_deliver(struct bq *q, struct bdev_list *done);
void bq_kick(struct bq *q);
void bq_reap(struct bq *q, struct bdev_list *done);
void bq_start(struct bq *q, struct bdev_rq *r);
void bq_unpark(struct bq *q);

/* loop.c: the plugin thread and the uevent resize watcher */
struct bdev_loop *bdev_loop_get(void);
void bdev_loop_put(struct bdev_loop *L);
void bdev_unwatch(struct bdev *b);
void bdev_watch(struct bdev *b);

/* queue.c: ring set-up, per-queue rings, driven polling */
void bdev_queue_close(void *inst, void *qctx);
int bdev_queue_open(void *inst, void **qctx);
int bdev_queue_poll(void *inst, void *qctx, int wake_fd, int timeout_ms);
void bdev_ring_exit(struct io_uring *ring);
int bdev_ring_init(struct io_uring *ring, unsigned entries, unsigned cq);
void bq_destroy(struct bq *q);

/* io.c: reads, writes, unmap, eject; submit() */
uint64_t bdev_sector_count(void *inst);
void bdev_submit(void *inst, struct dc_req *req);

/* pr.c: persistent reservations */
void bdev_pool_pr(void *arg);

#endif
