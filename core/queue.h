/* SPDX-License-Identifier: MIT */
/*
 * The queue as the request engine's files share it: req.c (slots, dispatch,
 * completion), queue.c (the queue's thread: hand-off, drain, the dc_queue_*
 * API) and exec.c (blocking calls). What runs on every request is inline here,
 * so the split costs the hot path no calls. Nothing here is ABI.
 */
#ifndef DISKCORE_QUEUE_H
#define DISKCORE_QUEUE_H

#include "internal.h"

struct dc_queue {
	struct dc_disk *disk;
	uint32_t flags;
	void **qctx;			       /* per node index */
	bool *qctx_open;		       /* which qctx slots were opened */
	struct dc_ireq *free_local;	       /* q's thread's alone (queue_claim) */
	_Atomic(struct dc_ireq *) free_remote; /* pushed by completing threads */
	atomic_uint inflight;
	/* Work that reached q off its thread: any thread pushes, q's thread
	 * takes the whole list. */
	_Atomic(struct dc_ireq *) handoff;
	atomic_bool busy;  /* callback queues: some thread is q's thread now */
	atomic_uint users; /* threads inside a hand-off: close waits for them */
	/* DC_QUEUE_POLL: every field below is q's thread's alone, but efd and
	 * signaled, which other threads raise. */
	int efd;
	atomic_bool signaled;		       /* efd may be readable */
	struct dc_ireq *done_head, *done_tail; /* delivered, not yet reaped */
	/* dc_queue_wait(): the one node that reaps on the waiting thread (NULL
	 * when none does, or several: a thread cannot sleep in several rings,
	 * so their own reapers stay in charge). */
	struct dc_node *poller;
	bool driven;	    /* dc_queue_wait() has been called */
	bool fd_given;	    /* dc_queue_fd() has been called */
	int ep;		    /* dc_queue_wait_fd(): epoll of efd and ep_fd, or -1 */
	int ep_fd;	    /* the consumer's fd in ep, or -1 */
	bool in_call;	    /* inside dc_queue_reap()/dc_queue_wait() */
	unsigned delivered; /* deliveries since the current call began */
};

/* The queue whose callbacks this thread runs now (innermost). */
extern DC_TLS struct dc_queue *dc__cur_q;

/* What a hand-off item asks of the queue's thread. */
enum { HAND_FINISH = 0, HAND_DISPATCH = 1 };

/* --- queue.c ------------------------------------------------------------ */

/* A queue with no plugin state opened yet (dc_queue_open(), dc_node_execute()). */
struct dc_queue *dc__queue_new(struct dc_disk *disk, uint32_t flags);
/* Open per-queue plugin state for node and its subtree. */
int dc__queue_open_subtree(struct dc_queue *q, struct dc_node *n);
/* Close the plugins' queue state, run what they give up, free q and its slots. */
void dc__queue_free(struct dc_queue *q);
/* Make a polled queue's efd readable. */
void dc__queue_signal(struct dc_queue *q);
/* Callback queues, once the caller set busy: be q's thread until nothing is
 * left, dispatching first (may be NULL) first. */
void dc__queue_run(struct dc_queue *q, struct dc_ireq *first);
/* Off q's thread: give r to it (to finish or to dispatch). */
void dc__queue_handoff(struct dc_queue *q, struct dc_ireq *r, uint8_t hand);

/* --- req.c ----------------------------------------------------------------- */

/* On q's thread: give a finished top-level request to its consumer. */
void dc__deliver(struct dc_ireq *r);

/* --- Inline: the request path ------------------------------------------------ */

static inline void slot_init(struct dc_ireq *r, struct dc_node *node, struct dc_queue *q)
{
	r->home = node;
	r->pub.node = node;
	r->pub.inst = node->inst;
	r->pub.ctx = (char *)r + node->ctx_off;
	r->pub.qctx = q->qctx[node->index];
	r->pub.marker = NULL;
	r->pub.result = 0;
	r->pub.detail = 0;
	r->queue = q;
	atomic_store_explicit(&r->embedded_busy, false, memory_order_relaxed);
}

static inline void slot_push_remote(struct dc_queue *q, struct dc_ireq *r)
{
	struct dc_ireq *head =
		atomic_load_explicit(&q->free_remote, memory_order_relaxed);

	do {
		r->next = head;
	} while (!atomic_compare_exchange_weak_explicit(
		&q->free_remote, &head, r, memory_order_release, memory_order_relaxed));
}

/* How a submission reaches q. INSIDE: this thread is q's thread (a polled
 * queue's consumer, or a callback resubmitting); TOOK: it took an idle
 * callback queue; ELSEWHERE: another thread runs q's callbacks, and a
 * callback of q may be submitting there at the same time, so only q's thread
 * may touch q's local slot list. */
enum { CLAIM_INSIDE, CLAIM_TOOK, CLAIM_ELSEWHERE };

static inline int queue_claim(struct dc_queue *q)
{
	if (q->flags & DC_QUEUE_POLL || dc__cur_q == q)
		return CLAIM_INSIDE;
	return atomic_exchange(&q->busy, true) ? CLAIM_ELSEWHERE : CLAIM_TOOK;
}

/* Dispatch a top-level request of q as its claim allows. */
static inline void queue_submit(struct dc_queue *q, struct dc_ireq *r, int claim)
{
	struct dc_queue *saved = dc__cur_q;

	r->hand = HAND_DISPATCH;
	if (claim == CLAIM_INSIDE) {
		dc__cur_q = q;
		dc__dispatch(r);
		dc__cur_q = saved;
	} else if (claim == CLAIM_TOOK) {
		dc__queue_run(q, r);
	} else {
		/* Another thread runs q's callbacks: it dispatches r too. */
		dc__queue_handoff(q, r, HAND_DISPATCH);
	}
}

#endif
