/* SPDX-License-Identifier: MIT */
/*
 * The request engine: request slots, dispatch to plugins, completion, child
 * requests and dc_submit(). The queues they run on are queue.c's (queue.h).
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
 */
#include "queue.h"

#include <stdlib.h>

#define CONSUMER_FLAGS (DC_IO_FUA | DC_IO_BLOCK_LEVEL_ONLY)
/* How many consumer callbacks may nest on one thread before further
 * completions go through the queue's hand-off list, which the outermost
 * frame drains (bounds the stack when a consumer resubmits from its callback
 * and completions are inline). */
#define DELIVER_DEPTH_MAX 4

static DC_TLS int deliver_depth;

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
				dc__queue_signal(q);
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
 * dc__queue_run(), or the consumer's next reap or wait). */
void dc__deliver(struct dc_ireq *r)
{
	if (deliver_depth >= DELIVER_DEPTH_MAX) {
		dc__queue_handoff(r->queue, r, HAND_FINISH);
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
	/* A forwarded request goes back as the node its parent addressed. */
	r->pub.node = r->home;
	r->pub.result = result;
	r->pub.detail = detail;
	if (r->queue != dc__cur_q)
		dc__queue_handoff(r->queue, r, HAND_FINISH);
	else if (r->kind == DC_IREQ_TOP)
		dc__deliver(r);
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
	if (result == 0)
		complete_known(ireq(req), 0, 0);
	else
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

/* Readdress r, in its own slot, to n's only child: what a level that forwards
 * an op unchanged costs is this and a guard, not a child request and a
 * completion. The slot fits: it has room for n's embedded child slot. */
static inline struct dc_node *forward(struct dc_ireq *r, struct dc_node *n)
{
	struct dc_node *c = n->children[0];

	r->pub.node = c;
	r->pub.inst = c->inst;
	r->pub.ctx = (char *)r + c->ctx_off;
	r->pub.qctx = r->queue->qctx[c->index];
	r->pub.marker = NULL;
	return c;
}

/* req_guard() for a request forwarded from n's parent: it passed there, and
 * n has the parent's sector size (node.c forwards only then) and accepts its
 * flags, so what is left is n's own live size and read-only state. */
static inline int fwd_guard(struct dc_node *n, const struct dc_req *r)
{
	if (r->op > DC_OP_UNMAP || r->op == DC_OP_FLUSH)
		return 1;
	if (r->sector + r->count > atomic_load_explicit(&n->live, memory_order_relaxed))
		return DC_E_ILLEGAL_BLOCK;
	if (r->op != DC_OP_READ && (n->info.flags & DC_INFO_READ_ONLY))
		return DC_E_READ_ONLY;
	return 1;
}

void dc__dispatch(struct dc_ireq *r)
{
	struct dc_node *n = r->pub.node;
	const struct dc_plugin *p;
	uint64_t bit = DC_OP_BIT(r->pub.op);
	int g = req_guard(n, &r->pub);

	if (g <= 0) {
		dc_complete(&r->pub, g);
		return;
	}
	while (n->fwd_ops & bit) {
		n = forward(r, n);
		g = fwd_guard(n, &r->pub);
		if (g <= 0) {
			dc_complete(&r->pub, g);
			return;
		}
	}
	p = n->plugin;
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
	if (c->queue != dc__cur_q)
		dc__queue_handoff(c->queue, c, HAND_DISPATCH);
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
			dc__queue_run(q, NULL); /* gives q up again */
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
