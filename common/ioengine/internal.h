/* SPDX-License-Identifier: MIT */
/* ioengine internals: the engine thread, rings, the pool path. Calls between
 * the files run one way, down: engine.c (the API, the pool path) > uring.c
 * (rings made and closed, the driven poll) > ring.c (submission, reaping) >
 * thread.c (the engine thread, an epoll loop over sources) > req.c (a
 * request's buffers, its end). The thread calls back up through pointers the
 * rings set: struct ioe_src's ready, struct ioe_queue's destroy. */
#ifndef DISKCORE_COMMON_IOENGINE_INTERNAL_H
#define DISKCORE_COMMON_IOENGINE_INTERNAL_H

#include "ioengine.h"

#include <pthread.h>
#include <stdatomic.h>

#ifdef IOE_HAVE_URING
#include <liburing.h>
#endif

#define IOE_SQ_ENTRIES 128
#define IOE_CQ_ENTRIES 256
#define IOE_RETRIES 8
/* The copy mode starts writeback every IOE_KICK bytes written to a file. */
#define IOE_KICK (4u << 20)

/* What the engine thread's epoll finds: a ring, a watch, its control fd. */
struct ioe_src {
	void (*ready)(struct ioe_src *s);
};

/* The engine thread; one per process while any ring or watch needs it. */
struct ioe_thread {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	int epfd;
	int ctlfd; /* eventfd: wake the thread */
	struct ioe_src ctl;
	bool stop;
	bool detached;		 /* stopped from its own thread: frees itself */
	uint64_t gen;		 /* bumped between epoll batches */
	struct ioe_queue *dead;	 /* queues closed on the thread itself */
	struct ioe_queue *retry; /* queues whose ring refused a submission */
	struct ioe_watch *wdead; /* watches removed on the thread itself */
};

struct ioe_watch {
	struct ioe_src src;
	struct ioe_thread *t;
	int fd;
	void (*fn)(void *arg);
	void *arg;
	bool dead; /* removed during the current batch */
	struct ioe_watch *next;
};

struct ioe_file {
	int fd;
	bool direct;
	bool uring;
	bool fallback_ok;   /* a queue whose ring cannot be made uses the pool */
	bool can_fallocate; /* IORING_OP_FALLOCATE */
	size_t align;
	/* DISKCORE_IO_COPY (engine.c, ioe_copy_write): buffered writes run on
	 * the submitting thread and start the file's writeback as they go. */
	bool copy;
	bool shared; /* DISKCORE_IO_ENGINE=uring-shared: no single-issuer rings */
	_Atomic uint64_t unkicked; /* bytes written since writeback was started */
	struct ioe_thread *t;	   /* io_uring only */
	char mode[160];
};

struct ioe_list {
	struct ioe_req *head, **tail;
};

static inline void ioe_list_init(struct ioe_list *l)
{
	l->head = NULL;
	l->tail = &l->head;
}

struct ioe_queue {
	struct ioe_src src; /* first: the engine thread's epoll data */
	struct ioe_file *f;
	bool pool; /* this queue runs on the worker pool */
#ifdef IOE_HAVE_URING
	pthread_mutex_t lock;
	struct io_uring ring;
	unsigned inflight;    /* requests with an SQE, not yet reaped */
	unsigned unsubmitted; /* SQEs the kernel has not taken yet */
	unsigned max_inflight;
	int file; /* fixed-file index or fd */
	uint8_t sqe_flags;
	bool on_retry;
	bool delivering;  /* the engine thread is delivering this ring's completions */
	bool armed;	  /* the engine thread was asked to flush */
	bool driven;	  /* the consumer's thread polls (dc_queue_wait) */
	bool wake_armed;  /* a poll on the core's wake fd is in the ring */
	bool poke_armed;  /* a poll on efd is in the ring (driven rings) */
	bool bound;	  /* DC_QUEUE_THREAD | DC_QUEUE_POLL: on its opener's thread */
	bool single;	  /* the ring is its driver's alone (uring.c, rq_own) */
	pthread_t driver; /* the thread that polls a driven ring */
	int efd;	  /* eventfd: completions posted, or a flush wanted */
	struct ioe_list parked;
	struct ioe_queue *next; /* thread->dead or thread->retry */
	/* ioe_ring_destroy(), for the engine thread (below uring.c), which
	 * destroys a queue closed on it once its batch ends. */
	void (*destroy)(struct ioe_queue *q);
#endif
};

#ifdef IOE_HAVE_URING
/* The user data of the polls on the core's wake fd and on efd. */
#define IOE_WAKE_TAG(q) ((struct ioe_req *)&(q)->wake_armed)
#define IOE_POKE_TAG(q) ((struct ioe_req *)&(q)->poke_armed)
#endif

/* req.c */
void ioe_finish(struct ioe_req *r, int res);
int ioe_prepare_rw(struct ioe_req *r);

#ifdef IOE_HAVE_URING
/* thread.c */
struct ioe_thread *ioe_thread_get(void);
void ioe_thread_put(struct ioe_thread *t);
bool ioe_thread_is_self(const struct ioe_thread *t);
int ioe_thread_add(struct ioe_thread *t, int fd, struct ioe_src *s, uint32_t events);
/* Stop watching fd; returns once the thread holds no pointer from before, or
 * true at once when called on the thread (the caller defers the free). */
bool ioe_thread_del(struct ioe_thread *t, int fd);
void ioe_thread_retry(struct ioe_thread *t, struct ioe_queue *q);
void ioe_thread_bury(struct ioe_thread *t, struct ioe_queue *q);

/* ring.c */
void ioe_ring_start(struct ioe_queue *q, struct ioe_req *r);
void ioe_ring_reap(struct ioe_queue *q, struct ioe_list *done);
void ioe_ring_unpark(struct ioe_queue *q);
void ioe_ring_deliver(struct ioe_queue *q, struct ioe_list *done);
void ioe_ring_kick(struct ioe_queue *q);
void ioe_frames_init(void);

/* uring.c */
int ioe_ring_probe(bool *can_fallocate, char *why, size_t len);
int ioe_ring_queue_open(struct ioe_queue *q);
void ioe_ring_queue_close(struct ioe_queue *q);
void ioe_ring_destroy(struct ioe_queue *q);
int ioe_ring_poll(struct ioe_queue *q, int wake_fd, int timeout_ms);
#endif
#endif
