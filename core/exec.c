/* SPDX-License-Identifier: MIT */
/*
 * Blocking calls: dc_execute() and the dc_read()/dc_write()/dc_pr_*() family on
 * an implicit queue per thread and disk, and dc_node_execute() for plugins'
 * control paths. Each submits one request and sleeps on a futex until it ends.
 */
#include "queue.h"

#include <linux/futex.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

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
	/* Nodes may still be opening: the qctx table covers every node so far. */
	q = dc__queue_new(node->disk, 0);
	if (!q)
		return -ENOMEM;
	r = malloc(node->slot_size);
	rc = r ? dc__queue_open_subtree(q, node) : -ENOMEM;
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
	dc__queue_free(q);
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
