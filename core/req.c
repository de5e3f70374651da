/* SPDX-License-Identifier: MIT */
/*
 * The request engine: queues, request slots, dispatch to plugins, completion.
 *
 * A request slot for node N holds the core's request, N's scratch (ctx_size) and,
 * when N has exactly one child, an embedded slot for that child, recursively. So a
 * decorator chain gets every level's request from one allocation that the queue
 * recycles: the hot path does not allocate. Fan-out (striped, layered over several
 * layers, a decorator splitting a request) takes extra child slots from the heap.
 *
 * Slots go back to their queue through a lock-free list that completing threads
 * push to and the submitting thread drains wholesale, so completion on a worker or
 * timer thread needs no lock.
 *
 * Threads (plugin.h): plugin callbacks of a queue run on the queue's thread, one
 * at a time. A completion or child submission made elsewhere is pushed onto the
 * queue's hand-off list; the queue's thread runs it. A DC_QUEUE_POLL queue's
 * thread is its consumer, woken through the eventfd. A callback queue has no
 * thread to wake, so it is handed over: whoever finds it idle (the `busy` flag)
 * becomes its thread until the hand-off list is empty.
 */
#include "internal.h"

#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

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
	bool in_call;	    /* inside dc_queue_reap()/dc_queue_wait() */
	unsigned delivered; /* deliveries since the current call began */
};

#define CONSUMER_FLAGS (DC_IO_FUA | DC_IO_BLOCK_LEVEL_ONLY)
/* How many consumer callbacks may nest on one thread before further
 * completions go through the queue's hand-off list, which the outermost
 * frame drains (bounds the stack when a consumer resubmits from its callback
 * and completions are inline). */
#define DELIVER_DEPTH_MAX 4

static DC_TLS int deliver_depth;
/* The queue whose callbacks this thread runs now (innermost). */
static DC_TLS struct dc_queue *cur_q;

/* What a hand-off item asks of the queue's thread. */
enum { HAND_FINISH = 0, HAND_DISPATCH = 1 };

/* --- Slots ------------------------------------------------------------------ */

/*
 * Heap slots (fan-out children, top-level slots) are recycled through a small
 * per-thread cache by power-of-two size class. Children are allocated and freed
 * on whichever thread drives the parent, so a per-queue list would need a lock;
 * the thread cache needs none, and a slot freed on a worker is reused there.
 */
#define SLOT_CLASS_MIN 8  /* 256 bytes */
#define SLOT_CLASS_MAX 16 /* 64 KiB; larger slots go straight to malloc */
#define SLOT_CACHE_DEPTH 32

struct slot_cache {
	void *slots[SLOT_CLASS_MAX - SLOT_CLASS_MIN + 1][SLOT_CACHE_DEPTH];
	uint8_t count[SLOT_CLASS_MAX - SLOT_CLASS_MIN + 1];
	struct slot_cache *prev, *next;
};

static DC_TLS struct slot_cache *slot_cache;
static pthread_key_t slot_cache_key;
static pthread_once_t slot_cache_once = PTHREAD_ONCE_INIT;
/* Every live cache is also on this list, so memory the caches hold stays
 * reachable from a global: leak checkers need not scan thread-local storage. */
static struct slot_cache *slot_caches;
static pthread_mutex_t slot_caches_lock = PTHREAD_MUTEX_INITIALIZER;

static void slot_cache_destroy(void *arg)
{
	struct slot_cache *c = arg;

	pthread_mutex_lock(&slot_caches_lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		slot_caches = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&slot_caches_lock);
	for (unsigned k = 0; k < DC_ARRAY_SIZE(c->count); k++)
		for (unsigned i = 0; i < c->count[k]; i++)
			free(c->slots[k][i]);
	free(c);
}

static void slot_cache_init(void)
{
	pthread_key_create(&slot_cache_key, slot_cache_destroy);
}

static int slot_class(size_t size)
{
	int k = SLOT_CLASS_MIN;

	while (((size_t)1 << k) < size)
		k++;
	return k;
}

static struct slot_cache *slot_cache_get(void)
{
	if (!slot_cache) {
		pthread_once(&slot_cache_once, slot_cache_init);
		slot_cache = calloc(1, sizeof(*slot_cache));
		if (slot_cache) {
			pthread_setspecific(slot_cache_key, slot_cache);
			pthread_mutex_lock(&slot_caches_lock);
			slot_cache->next = slot_caches;
			if (slot_caches)
				slot_caches->prev = slot_cache;
			slot_caches = slot_cache;
			pthread_mutex_unlock(&slot_caches_lock);
		}
	}
	return slot_cache;
}

static void *slot_alloc(size_t size)
{
	int k = slot_class(size);
	struct slot_cache *c;

	if (k > SLOT_CLASS_MAX)
		return malloc(size);
	c = slot_cache_get();
	if (c && c->count[k - SLOT_CLASS_MIN])
		return c->slots[k - SLOT_CLASS_MIN][--c->count[k - SLOT_CLASS_MIN]];
	return malloc((size_t)1 << k);
}

static void slot_release(void *p, size_t size)
{
	int k = slot_class(size);
	struct slot_cache *c;

	if (k <= SLOT_CLASS_MAX && (c = slot_cache_get()) &&
	    c->count[k - SLOT_CLASS_MIN] < SLOT_CACHE_DEPTH) {
		c->slots[k - SLOT_CLASS_MIN][c->count[k - SLOT_CLASS_MIN]++] = p;
		return;
	}
	free(p);
}

static inline struct dc_ireq *ireq(struct dc_req *r)
{
	return (struct dc_ireq *)r;
}

static void slot_init(struct dc_ireq *r, struct dc_node *node, struct dc_queue *q)
{
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

static void slot_push_remote(struct dc_queue *q, struct dc_ireq *r)
{
	struct dc_ireq *head =
		atomic_load_explicit(&q->free_remote, memory_order_relaxed);

	do {
		r->next = head;
	} while (!atomic_compare_exchange_weak_explicit(
		&q->free_remote, &head, r, memory_order_release, memory_order_relaxed));
}

static struct dc_ireq *slot_get(struct dc_queue *q)
{
	struct dc_ireq *r = q->free_local;

	if (!r) {
		/* Only this thread pops, and it takes the whole list: no ABA. */
		r = atomic_exchange_explicit(&q->free_remote, NULL, memory_order_acquire);
		if (!r) {
			r = malloc(q->disk->top->slot_size);
			if (!r)
				return NULL;
			r->kind = DC_IREQ_TOP;
			return r;
		}
	}
	q->free_local = r->next;
	return r;
}

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
static int queue_open_subtree(struct dc_queue *q, struct dc_node *n)
{
	int rc;

	for (unsigned i = 0; i < n->nchildren; i++) {
		rc = queue_open_subtree(q, n->children[i]);
		if (rc < 0)
			return rc;
	}
	if (n->plugin->queue_open && !q->qctx_open[n->index]) {
		dc__error_push_prefix(n->plugin->name);
		rc = n->plugin->queue_open(n->inst, &q->qctx[n->index]);
		dc__error_pop_prefix();
		if (rc < 0)
			return rc;
		q->qctx_open[n->index] = true;
	}
	return 0;
}

static struct dc_queue *queue_new(struct dc_disk *disk, uint32_t flags)
{
	struct dc_queue *q = calloc(1, sizeof(*q));

	if (!q)
		return NULL;
	q->disk = disk;
	q->flags = flags;
	q->efd = -1;
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

static void queue_free(struct dc_queue *q)
{
	struct dc_ireq *r, *next;

	/* A thread that handed q its last completion may still be on its way
	 * out of q (releasing it, waking efd). */
	struct dc_queue *saved = cur_q;

	while (atomic_load(&q->users))
		sched_yield();
	/* A plugin may give up requests it holds when its queue closes (fault:'s
	 * hangs): they complete here, on q's thread, children's plugins first
	 * (node index order puts children before parents). */
	cur_q = q;
	q->in_call = true;
	queue_close_qctx(q);
	queue_drain(q);
	q->in_call = false;
	cur_q = saved;
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
	free(q->qctx);
	free(q->qctx_open);
	free(q);
}

DC_EXPORT int dc_queue_open(dc_disk *disk, uint32_t flags, dc_queue **out)
{
	struct dc_queue *q;
	int rc;

	if (!disk || !out || (flags & ~DC_QUEUE_POLL))
		return dc_fail(-EINVAL, "dc_queue_open: invalid arguments");
	q = queue_new(disk, flags);
	if (!q)
		return dc_fail(-ENOMEM, "dc_queue_open: out of memory");
	if (flags & DC_QUEUE_POLL) {
		q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (q->efd < 0) {
			rc = -errno;
			queue_free(q);
			return dc_fail(rc, "dc_queue_open: eventfd: %s", strerror(-rc));
		}
	}
	rc = queue_open_subtree(q, disk->top);
	if (rc < 0) {
		queue_free(q);
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
		queue_free(q);
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

/* Make efd readable. The flag is set after the write, so a reader that misses
 * it leaves at most one spurious wakeup, which its next look clears. */
static void queue_signal(struct dc_queue *q)
{
	eventfd_write(q->efd, 1);
	atomic_store(&q->signaled, true);
}

/* Clear efd unless nothing was written since the last clear (no system call
 * then). */
static int queue_unsignal(struct dc_queue *q)
{
	uint64_t v;

	if (atomic_exchange(&q->signaled, false) && read(q->efd, &v, sizeof(v)) < 0 &&
	    errno != EAGAIN)
		return -errno;
	return 0;
}

DC_EXPORT unsigned dc_queue_pollers(dc_queue *q)
{
	return q->poller != NULL;
}

/* --- The queue's thread --------------------------------------------------- */

static void deliver(struct dc_ireq *r);

/* Run one item on q's thread: finish a completion, or dispatch a request. */
static void run_item(struct dc_ireq *r)
{
	if (r->hand == HAND_DISPATCH)
		dc__dispatch(r);
	else if (r->kind == DC_IREQ_TOP)
		deliver(r);
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
static void queue_run(struct dc_queue *q, struct dc_ireq *first)
{
	struct dc_queue *saved = cur_q;

	cur_q = q;
	if (first)
		dc__dispatch(first);
	do {
		queue_drain(q);
		atomic_store(&q->busy, false);
	} while (atomic_load(&q->handoff) && !atomic_exchange(&q->busy, true));
	cur_q = saved;
}

/* Off q's thread: give r to it (to finish or to dispatch). */
static void queue_handoff(struct dc_queue *q, struct dc_ireq *r, uint8_t hand)
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
			queue_signal(q);
	} else if (!atomic_exchange(&q->busy, true)) {
		queue_run(q, NULL);
	}
	atomic_fetch_sub_explicit(&q->users, 1, memory_order_release);
}

/* How a submission reaches q. INSIDE: this thread is q's thread (a polled
 * queue's consumer, or a callback resubmitting); TOOK: it took an idle
 * callback queue; ELSEWHERE: another thread runs q's callbacks, and a
 * callback of q may be submitting there at the same time, so only q's thread
 * may touch q's local slot list. */
enum { CLAIM_INSIDE, CLAIM_TOOK, CLAIM_ELSEWHERE };

static int queue_claim(struct dc_queue *q)
{
	if (q->flags & DC_QUEUE_POLL || cur_q == q)
		return CLAIM_INSIDE;
	return atomic_exchange(&q->busy, true) ? CLAIM_ELSEWHERE : CLAIM_TOOK;
}

/* Dispatch a top-level request of q as its claim allows. */
static void queue_submit(struct dc_queue *q, struct dc_ireq *r, int claim)
{
	struct dc_queue *saved = cur_q;

	r->hand = HAND_DISPATCH;
	if (claim == CLAIM_INSIDE) {
		cur_q = q;
		dc__dispatch(r);
		cur_q = saved;
	} else if (claim == CLAIM_TOOK) {
		queue_run(q, r);
	} else {
		/* Another thread runs q's callbacks: it dispatches r too. */
		queue_handoff(q, r, HAND_DISPATCH);
	}
}

DC_EXPORT int dc_queue_wait(dc_queue *q, int timeout_ms)
{
	struct dc_queue *saved = cur_q;
	int rc = 0, n;

	if (!(q->flags & DC_QUEUE_POLL) || q->in_call || cur_q == q)
		return -EINVAL;
	if (q->poller && q->fd_given)
		return -EBUSY; /* see dc_queue_fd() */
	q->driven = true;
	cur_q = q;
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

			rc = p->plugin->queue_poll(p->inst, q->qctx[p->index], q->efd,
						   sleep ? timeout_ms : 0);
		} else if (sleep) {
			struct pollfd pfd = { .fd = q->efd, .events = POLLIN };

			if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR)
				rc = -errno;
		}
	}
	queue_drain(q);
	n = (int)q->delivered;
	q->in_call = false;
	cur_q = saved;
	return rc < 0 && !n ? rc : n;
}

DC_EXPORT int dc_queue_reap(dc_queue *q, struct dc_completion *out, int max)
{
	struct dc_queue *saved = cur_q;
	struct dc_ireq *r;
	int n = 0, rc;

	if (!(q->flags & DC_QUEUE_POLL) || max < 0)
		return -EINVAL;
	/* Clear the eventfd first: a hand-off after this re-arms it. */
	rc = queue_unsignal(q);
	if (rc < 0)
		return rc;
	if (!q->in_call) {
		cur_q = q;
		q->in_call = true;
		queue_drain(q);
		q->in_call = false;
		cur_q = saved;
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
		queue_signal(q); /* more left: stay readable */
	return n;
}

/* --- Completion ------------------------------------------------------------- */

/* On q's thread. */
static void deliver_one(struct dc_ireq *r)
{
	struct dc_queue *q = r->queue;
	struct dc_completion c = {
		.user_data = r->user_data,
		.result = r->pub.result,
		.detail = r->pub.detail,
	};
	dc_complete_fn cb = r->cb;

	if (q->flags & DC_QUEUE_POLL) {
		q->delivered++;
		if (!cb) {
			r->next = NULL;
			/* Outside reap and wait (an inline completion in
			 * dc_submit) the consumer learns of it through efd. */
			if (!q->done_head && !q->in_call)
				queue_signal(q);
			if (q->done_tail)
				q->done_tail->next = r;
			else
				q->done_head = r;
			q->done_tail = r;
			return;
		}
	}
	/* Recycle the slot before the callback so a resubmission can reuse it. */
	slot_push_remote(q, r);
	atomic_fetch_sub_explicit(&q->inflight, 1, memory_order_release);
	cb(&c);
}

/* On q's thread. Too deep: the queue's own drain delivers it later, from a
 * frame that is not inside a callback (the drain of a callback queue's
 * queue_run(), or the consumer's next reap or wait). */
static void deliver(struct dc_ireq *r)
{
	if (deliver_depth >= DELIVER_DEPTH_MAX) {
		queue_handoff(r->queue, r, HAND_FINISH);
		return;
	}
	deliver_depth++;
	deliver_one(r);
	deliver_depth--;
}

static bool result_known(int result)
{
	switch (result) {
	case 0:
	case DC_E_ILLEGAL_BLOCK:
	case DC_E_INVALID_INPUT:
	case DC_E_IO:
	case DC_E_MEDIUM:
	case DC_E_MEMORY_ACCESS:
	case DC_E_READ_ONLY:
	case DC_E_RESERVATION_CONFLICT:
	case DC_E_ABORTED_PREEMPT:
	case DC_E_UNSUPPORTED_EJECT:
	case DC_E_UNSUPPORTED:
		return true;
	default:
		return false;
	}
}

/* Finish r with a result already in the DC_E_* set. */
static void complete_known(struct dc_ireq *r, int result, int detail)
{
	r->pub.result = result;
	r->pub.detail = detail;
	if (r->queue != cur_q)
		queue_handoff(r->queue, r, HAND_FINISH);
	else if (r->kind == DC_IREQ_TOP)
		deliver(r);
	else
		r->done(&r->parent->pub, &r->pub);
}

DC_EXPORT void dc_complete_detail(struct dc_req *req, int result, int detail)
{
	if (!result_known(result)) {
		/* Any other errno is an I/O error; keep the errno as its detail. */
		detail = result < 0 ? -result : EIO;
		result = DC_E_IO;
	}
	complete_known(ireq(req), result, detail);
}

DC_EXPORT void dc_complete(struct dc_req *req, int result)
{
	dc_complete_detail(req, result, 0);
}

/* --- Dispatch --------------------------------------------------------------- */

static void dispatch_pool_run(void *arg)
{
	struct dc_req *req = arg;
	struct dc_node *n = req->node;
	/* io() may leave an errno detail in req->detail (zeroed at dispatch):
	 * read it after the call (argument evaluation order is unspecified). */
	int rc = n->plugin->io(n->inst, req);

	dc_complete_detail(req, rc, req->detail);
}

DC_EXPORT void dc_child_done_complete(struct dc_req *parent, struct dc_req *child)
{
	int result = child->result, detail = child->detail;

	dc_child_free(parent, child);
	/* The child's completion already folded its result into the set. */
	complete_known(ireq(parent), result, detail);
}

/* The checks every request passes before a plugin sees it (plugin.h,
 * "Validated before a plugin sees it"): returns the result to complete r with,
 * or 1 to hand it to the plugin. docs/openvmm-compat.md §1.4-1.5 for the top level. Reads
 * and writes come first: they are nearly every request. */
static inline int req_guard(struct dc_node *n, const struct dc_req *r)
{
	uint32_t op = r->op;

	if (op > DC_OP_UNMAP || op == DC_OP_FLUSH)
		return op < DC_OP__COUNT && !r->flags ? 1 : DC_E_INVALID_INPUT;
	if (r->flags & ~n->op_flags[op])
		return DC_E_INVALID_INPUT;
	/* Representable: (sector + count) << shift fits in INT64_MAX. */
	if (r->sector > n->max_sector || r->count > n->max_sector - r->sector)
		return DC_E_ILLEGAL_BLOCK;
	if (op != DC_OP_UNMAP && r->buf.len != r->count << n->shift)
		return DC_E_INVALID_INPUT;
	if (r->sector + r->count > atomic_load_explicit(&n->live, memory_order_relaxed))
		return DC_E_ILLEGAL_BLOCK;
	if (op == DC_OP_READ)
		return r->count ? 1 : 0;
	if (op == DC_OP_WRITE) {
		if (!r->count)
			return 0;
		/* A read cache fills its layer even when the disk above is read-only
		 * (docs/openvmm-compat.md §4): that write is the layer's business. */
		if ((n->info.flags & DC_INFO_READ_ONLY) &&
		    !(r->flags & DC_IO_NO_OVERWRITE))
			return DC_E_READ_ONLY;
		return 1;
	}
	/* Unmap is a no-op: only the range check is left (docs/openvmm-compat.md
	 * §1.5). */
	if (n->info.unmap_behavior == DC_UNMAP_IGNORED)
		return 0;
	return n->info.flags & DC_INFO_READ_ONLY ? DC_E_READ_ONLY : 1;
}

void dc__dispatch(struct dc_ireq *r)
{
	struct dc_node *n = r->pub.node;
	const struct dc_plugin *p = n->plugin;
	uint64_t bit = DC_OP_BIT(r->pub.op);
	int g = req_guard(n, &r->pub);

	if (g <= 0) {
		dc_complete(&r->pub, g);
		return;
	}
	if (p->ops & bit) {
		if (p->submit) {
			p->submit(n->inst, &r->pub);
		} else if (dc__pool_submit(dispatch_pool_run, &r->pub) < 0) {
			dc_complete_detail(&r->pub, DC_E_IO, ENOMEM);
		}
		return;
	}
	if ((p->passthrough_ops & bit) && n->nchildren > 0) {
		struct dc_req *c = dc_child_req(&r->pub, 0);

		if (!c)
			dc_complete_detail(&r->pub, DC_E_IO, ENOMEM);
		else
			dc_child_submit(&r->pub, c, dc_child_done_complete);
		return;
	}
	/* Fail closed: an op this plugin neither handles nor forwards stops here. */
	dc_complete(&r->pub,
		    r->pub.op == DC_OP_EJECT ? DC_E_UNSUPPORTED_EJECT : DC_E_UNSUPPORTED);
}

/* --- Child requests --------------------------------------------------------- */

DC_EXPORT struct dc_req *dc_child_req(struct dc_req *parent, unsigned i)
{
	struct dc_ireq *p = ireq(parent);
	struct dc_node *n = parent->node;
	struct dc_node *child;
	struct dc_ireq *c;

	if (i >= n->nchildren)
		return NULL;
	child = n->children[i];
	if (n->embed_size &&
	    !atomic_exchange_explicit(&p->embedded_busy, true, memory_order_acquire)) {
		c = (struct dc_ireq *)((char *)p + n->slot_size - n->embed_size);
		c->kind = DC_IREQ_EMBEDDED;
	} else {
		c = slot_alloc(child->slot_size);
		if (!c)
			return NULL;
		c->kind = DC_IREQ_HEAP;
	}
	slot_init(c, child, p->queue);
	c->pub.op = parent->op;
	c->pub.flags = parent->flags;
	c->pub.sector = parent->sector;
	c->pub.count = parent->count;
	c->pub.buf = parent->buf;
	c->pub.pr = parent->pr;
	c->parent = p;
	return &c->pub;
}

DC_EXPORT void dc_child_submit(struct dc_req *parent, struct dc_req *child,
			       dc_child_done_fn done)
{
	struct dc_ireq *c = ireq(child);

	(void)parent;
	c->done = done;
	if (c->queue != cur_q)
		queue_handoff(c->queue, c, HAND_DISPATCH);
	else
		dc__dispatch(c);
}

DC_EXPORT void dc_child_free(struct dc_req *parent, struct dc_req *child)
{
	struct dc_ireq *c = ireq(child);

	if (c->kind == DC_IREQ_EMBEDDED)
		atomic_store_explicit(&ireq(parent)->embedded_busy, false,
				      memory_order_release);
	else
		slot_release(c, child->node->slot_size);
}

/* --- Submission ------------------------------------------------------------- */

DC_EXPORT int dc_submit(dc_queue *q, const struct dc_io *io)
{
	struct dc_disk *d = q->disk;
	struct dc_ireq *r;
	size_t len = 0;
	int claim;

	if (!io || io->op >= DC_OP__COUNT || (io->flags & ~CONSUMER_FLAGS) ||
	    io->reserved[0] || io->reserved[1])
		return -EINVAL;
	if (!io->cb && !(q->flags & DC_QUEUE_POLL))
		return -EINVAL;
	if (io->op == DC_OP_READ || io->op == DC_OP_WRITE) {
		if (io->iovcnt < 0 || (io->iovcnt > 0 && !io->iov))
			return -EINVAL;
		for (int i = 0; i < io->iovcnt; i++) {
			if (io->iov[i].iov_len && !io->iov[i].iov_base)
				return -EINVAL;
			len += io->iov[i].iov_len;
		}
		if (len & (d->info.sector_size - 1))
			return -EINVAL;
	} else if (io->op >= DC_OP_PR_CAPS && !io->pr) {
		return -EINVAL;
	}

	claim = queue_claim(q);
	if (claim == CLAIM_ELSEWHERE) {
		/* Not q's thread: a fresh slot; it joins q's list when it ends. */
		r = malloc(d->top->slot_size);
	} else {
		r = slot_get(q);
	}
	if (!r) {
		if (claim == CLAIM_TOOK)
			queue_run(q, NULL); /* gives q up again */
		return -ENOMEM;
	}
	slot_init(r, d->top, q);
	r->kind = DC_IREQ_TOP;
	r->pub.op = io->op;
	r->pub.flags = io->flags;
	r->pub.sector = io->sector;
	r->pub.count = io->op == DC_OP_UNMAP ? io->count : len >> d->sector_shift;
	r->pub.buf = (struct dc_buf){ .iov = io->iov, .iovcnt = io->iovcnt, .len = len };
	r->pub.pr = io->pr;
	r->cb = io->cb;
	r->user_data = io->user_data;
	r->parent = NULL;
	atomic_fetch_add_explicit(&q->inflight, 1, memory_order_relaxed);
	queue_submit(q, r, claim);
	return 0;
}

/* --- Blocking calls ----------------------------------------------------------- */

/* state: 0 pending, 1 done, 2 the waiter sleeps (only then is a wake needed,
 * so an inline completion costs no system call). */
struct sync_wait {
	atomic_int state;
	int result;
	int detail;
};

static void sync_done(const struct dc_completion *c)
{
	struct sync_wait *w = c->user_data;

	w->result = c->result;
	w->detail = c->detail;
	if (atomic_exchange_explicit(&w->state, 1, memory_order_acq_rel) == 2)
		syscall(SYS_futex, &w->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static int sync_wait(struct sync_wait *w, int *detail)
{
	int expect = 0;

	if (atomic_compare_exchange_strong(&w->state, &expect, 2) || expect == 2) {
		while (atomic_load_explicit(&w->state, memory_order_acquire) == 2)
			syscall(SYS_futex, &w->state, FUTEX_WAIT_PRIVATE, 2, NULL, NULL,
				0);
	}
	if (detail)
		*detail = w->detail;
	return w->result;
}

struct dc_implicit {
	pthread_t thread;
	struct dc_queue *q;
	struct dc_implicit *next;
};

static __thread struct {
	uint64_t serial;
	struct dc_queue *q;
} implicit_cache;

static struct dc_queue *implicit_queue(struct dc_disk *d)
{
	pthread_t self = pthread_self();
	struct dc_implicit *im;
	struct dc_queue *q = NULL;

	if (implicit_cache.serial == d->serial)
		return implicit_cache.q;
	pthread_mutex_lock(&d->implicit_lock);
	for (im = d->implicit; im; im = im->next) {
		if (pthread_equal(im->thread, self)) {
			q = im->q;
			break;
		}
	}
	if (!q) {
		im = calloc(1, sizeof(*im));
		if (im && dc_queue_open(d, 0, &q) == 0) {
			im->thread = self;
			im->q = q;
			im->next = d->implicit;
			d->implicit = im;
		} else {
			free(im);
			q = NULL;
		}
	}
	pthread_mutex_unlock(&d->implicit_lock);
	if (q) {
		implicit_cache.serial = d->serial;
		implicit_cache.q = q;
	}
	return q;
}

void dc__implicit_free(struct dc_disk *d)
{
	struct dc_implicit *im, *next;

	for (im = d->implicit; im; im = next) {
		next = im->next;
		dc_queue_close(im->q);
		free(im);
	}
	d->implicit = NULL;
	if (implicit_cache.serial == d->serial)
		implicit_cache.serial = 0;
}

DC_EXPORT int dc_execute(dc_disk *disk, const struct dc_io *io, int *detail)
{
	struct dc_queue *q = implicit_queue(disk);
	struct sync_wait w = { 0 };
	struct dc_io copy = *io;
	int rc;

	if (!q)
		return -ENOMEM;
	copy.cb = sync_done;
	copy.user_data = &w;
	rc = dc_submit(q, &copy);
	if (rc < 0)
		return rc;
	return sync_wait(&w, detail);
}

/* Blocking I/O straight to a node, for plugins on their control path (reading a
 * header at open). A private queue covers the node's subtree. */
DC_EXPORT int dc_node_execute(struct dc_node *node, const struct dc_io *io)
{
	struct dc_disk *d = node->disk;
	struct dc_queue *q;
	struct dc_ireq *r;
	struct sync_wait w = { 0 };
	size_t len = 0;
	int rc;

	if (!io || io->op >= DC_OP__COUNT)
		return -EINVAL;
	for (int i = 0; i < io->iovcnt; i++)
		len += io->iov[i].iov_len;
	if (len & (node->info.sector_size - 1))
		return -EINVAL;
	/* Nodes may still be opening: size the qctx table for every node so far. */
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->disk = d;
	q->efd = -1;
	q->qctx = calloc(d->nnodes, sizeof(*q->qctx));
	q->qctx_open = calloc(d->nnodes, sizeof(*q->qctx_open));
	r = malloc(node->slot_size);
	rc = -ENOMEM;
	if (!q->qctx || !q->qctx_open || !r)
		goto out;
	rc = queue_open_subtree(q, node);
	if (rc < 0)
		goto out;
	slot_init(r, node, q);
	r->kind = DC_IREQ_TOP;
	r->pub.op = io->op;
	r->pub.flags = io->flags;
	r->pub.sector = io->sector;
	r->pub.count = io->op == DC_OP_UNMAP ? io->count : len / node->info.sector_size;
	r->pub.buf = (struct dc_buf){ .iov = io->iov, .iovcnt = io->iovcnt, .len = len };
	r->pub.pr = io->pr;
	r->cb = sync_done;
	r->user_data = &w;
	r->parent = NULL;
	atomic_fetch_add(&q->inflight, 1);
	queue_submit(q, r, queue_claim(q)); /* a private queue: always taken */
	rc = sync_wait(&w, NULL);
	r = NULL; /* delivered: the slot is on q's free list */
out:
	free(r);
	queue_free(q);
	return rc;
}

static int exec_rw(dc_disk *d, uint32_t op, uint64_t sector, const struct iovec *iov,
		   int iovcnt, uint32_t flags)
{
	struct dc_io io = {
		.op = op,
		.flags = flags,
		.sector = sector,
		.iov = iov,
		.iovcnt = iovcnt,
	};

	return dc_execute(d, &io, NULL);
}

DC_EXPORT int dc_read(dc_disk *d, uint64_t sector, void *buf, size_t len)
{
	struct iovec iov = { buf, len };

	return exec_rw(d, DC_OP_READ, sector, &iov, 1, 0);
}

DC_EXPORT int dc_write(dc_disk *d, uint64_t sector, const void *buf, size_t len,
		       uint32_t flags)
{
	struct iovec iov = { (void *)buf, len };

	return exec_rw(d, DC_OP_WRITE, sector, &iov, 1, flags);
}

DC_EXPORT int dc_readv(dc_disk *d, uint64_t sector, const struct iovec *iov, int iovcnt)
{
	return exec_rw(d, DC_OP_READ, sector, iov, iovcnt, 0);
}

DC_EXPORT int dc_writev(dc_disk *d, uint64_t sector, const struct iovec *iov, int iovcnt,
			uint32_t flags)
{
	return exec_rw(d, DC_OP_WRITE, sector, iov, iovcnt, flags);
}

DC_EXPORT int dc_flush(dc_disk *d)
{
	struct dc_io io = { .op = DC_OP_FLUSH };

	return dc_execute(d, &io, NULL);
}

DC_EXPORT int dc_unmap(dc_disk *d, uint64_t sector, uint64_t count, uint32_t flags)
{
	struct dc_io io = {
		.op = DC_OP_UNMAP, .sector = sector, .count = count, .flags = flags
	};

	return dc_execute(d, &io, NULL);
}

DC_EXPORT int dc_eject(dc_disk *d)
{
	struct dc_io io = { .op = DC_OP_EJECT };

	return dc_execute(d, &io, NULL);
}

static int exec_pr(dc_disk *d, uint32_t op, struct dc_pr_args *pr)
{
	struct dc_io io = { .op = op, .pr = pr };

	return dc_execute(d, &io, NULL);
}

DC_EXPORT int dc_pr_caps(dc_disk *d, struct dc_pr_caps *caps)
{
	struct dc_pr_args pr = { .caps = caps };

	return exec_pr(d, DC_OP_PR_CAPS, &pr);
}

DC_EXPORT int dc_pr_report(dc_disk *d, struct dc_pr_report *report)
{
	struct dc_pr_args pr = { .report = report };

	return exec_pr(d, DC_OP_PR_REPORT, &pr);
}

DC_EXPORT int dc_pr_register(dc_disk *d, const uint64_t *current_key, uint64_t new_key,
			     int ptpl)
{
	struct dc_pr_args pr = {
		.key = current_key ? *current_key : 0,
		.ignore_key = !current_key,
		.new_key = new_key,
		.ptpl = (int8_t)ptpl,
	};

	return exec_pr(d, DC_OP_PR_REGISTER, &pr);
}

DC_EXPORT int dc_pr_reserve(dc_disk *d, uint64_t key, uint32_t type)
{
	struct dc_pr_args pr = { .key = key, .type = type };

	return exec_pr(d, DC_OP_PR_RESERVE, &pr);
}

DC_EXPORT int dc_pr_release(dc_disk *d, uint64_t key, uint32_t type)
{
	struct dc_pr_args pr = { .key = key, .type = type };

	return exec_pr(d, DC_OP_PR_RELEASE, &pr);
}

DC_EXPORT int dc_pr_clear(dc_disk *d, uint64_t key)
{
	struct dc_pr_args pr = { .key = key };

	return exec_pr(d, DC_OP_PR_CLEAR, &pr);
}

DC_EXPORT int dc_pr_preempt(dc_disk *d, uint64_t key, uint64_t preempt_key, uint32_t type,
			    bool abort)
{
	struct dc_pr_args pr = {
		.key = key, .new_key = preempt_key, .type = type, .abort = abort
	};

	return exec_pr(d, DC_OP_PR_PREEMPT, &pr);
}
