/* SPDX-License-Identifier: MIT */
/* ioengine: choosing the mode at open, queues, requests, and the worker-pool
 * path (blocking calls on the core's pool) used when io_uring is unavailable
 * or DISKCORE_IO_ENGINE=pool asks for it; and the copy mode a copy tool asks
 * for (DISKCORE_IO_COPY, ioe_copy_write). */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#ifndef IOE_HAVE_URING
/* Built without liburing: every file takes the pool. */
static int ioe_ring_probe(bool *can_fallocate, char *why, size_t len)
{
	(void)can_fallocate;
	snprintf(why, len, "built without liburing");
	return dc_fail(-ENOSYS, "built without liburing");
}
#define ioe_thread_get() NULL
#define ioe_thread_put(t) ((void)(t))
#define ioe_ring_queue_open(q) (-ENOSYS)
#define ioe_ring_queue_close(q) ((void)(q))
#define ioe_ring_poll(q, w, t) (-ENOSYS)
#define ioe_ring_start(q, r) ((void)(q), (void)(r))
#endif

int ioe_file_open(int fd, bool direct, size_t align, enum ioe_mode mode,
		  struct ioe_file **out)
{
	struct ioe_file *f = calloc(1, sizeof(*f));
	const char *env = getenv("DISKCORE_IO_ENGINE"),
		   *copy = getenv("DISKCORE_IO_COPY");
	char why[128];
	int rc = 0;

	if (!f)
		return dc_fail(-ENOMEM, "out of memory");
	f->fd = fd;
	f->direct = direct;
	f->align = direct ? align : 0;
	f->fallback_ok = mode == IOE_AUTO;
	/* O_DIRECT writes are asynchronous on io_uring: they keep the ring. */
	f->copy = !direct && copy && *copy && strcmp(copy, "0") != 0;
	if (f->fallback_ok && env && !strcmp(env, "pool")) {
		snprintf(f->mode, sizeof(f->mode),
			 "worker pool (DISKCORE_IO_ENGINE=pool)");
	} else if ((rc = ioe_ring_probe(&f->can_fallocate, why, sizeof(why))) < 0) {
		if (!f->fallback_ok) {
			free(f);
			return rc;
		}
		snprintf(f->mode, sizeof(f->mode), "worker pool (%s)", why);
	} else if (!(f->t = ioe_thread_get())) {
		free(f);
		return -ENOMEM;
	} else {
		f->uring = true;
		/* uring-shared: no queue gets a ring of its thread's own (the
		 * A/B in docs/performance.md, and a way out should a kernel's
		 * DEFER_TASKRUN misbehave). */
		f->shared = env && !strcmp(env, "uring-shared");
		snprintf(f->mode, sizeof(f->mode), "io_uring, one ring per queue%s",
			 f->shared ? " (DISKCORE_IO_ENGINE=uring-shared)" : "");
	}
	if (f->copy)
		strncat(f->mode,
			"; buffered writes on the caller's thread (DISKCORE_IO_COPY)",
			sizeof(f->mode) - strlen(f->mode) - 1);
	*out = f;
	return 0;
}

void ioe_file_close(struct ioe_file *f)
{
	if (!f)
		return;
	if (f->t)
		ioe_thread_put(f->t);
	free(f);
}

const char *ioe_file_describe(const struct ioe_file *f)
{
	return f->mode;
}

bool ioe_file_uring(const struct ioe_file *f)
{
	return f->uring;
}

int ioe_queue_open(struct ioe_file *f, struct ioe_queue **out)
{
	struct ioe_queue *q = calloc(1, sizeof(*q));
	int rc;

	if (!q)
		return dc_fail(-ENOMEM, "out of memory");
	q->f = f;
	q->pool = !f->uring;
	if (f->uring) {
		rc = ioe_ring_queue_open(q);
		if (rc < 0 && !f->fallback_ok) {
			free(q);
			return rc;
		}
		/* Out of rings (memory, a limit): this queue blocks on the pool. */
		q->pool = rc < 0;
		if (q->pool)
			dc_debug("ioengine: a queue on the worker pool: %s",
				 dc_last_error());
	}
	*out = q;
	return 0;
}

void ioe_queue_close(struct ioe_queue *q)
{
	if (!q)
		return;
	if (q->pool)
		free(q);
	else
		ioe_ring_queue_close(q);
}

int ioe_queue_poll(struct ioe_queue *q, int wake_fd, int timeout_ms)
{
	struct pollfd p = { .fd = wake_fd, .events = POLLIN };

	if (!q->pool)
		return ioe_ring_poll(q, wake_fd, timeout_ms);
	/* Pool completions reach the queue through the core, which makes
	 * wake_fd readable: sleep on it. */
	if (timeout_ms != 0 && wake_fd >= 0 && poll(&p, 1, timeout_ms) < 0 &&
	    errno != EINTR)
		return -errno;
	return 0;
}

/* --- The worker pool ----------------------------------------------------------- */

static int ioe_blocking(struct ioe_req *r)
{
	struct ioe_file *f = r->f;
	ssize_t n;

	switch (r->op) {
	case IOE_READ:
	case IOE_WRITE:
		n = r->op == IOE_READ ? dc_buf_pread(f->fd, &r->buf, r->off, f->align) :
					dc_buf_pwrite(f->fd, &r->buf, r->off, f->align,
						      r->fua ? RWF_DSYNC : 0);
		if (n < 0)
			return (int)n;
		return (size_t)n < r->buf.len ? IOE_EOF : 0;
	case IOE_FLUSH:
		return fdatasync(f->fd) < 0 ? -errno : 0;
	case IOE_PUNCH:
		return fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				 (off_t)r->off, (off_t)r->len) < 0 ?
			       -errno :
			       0;
	case IOE_DISCARD: {
		uint64_t range[2] = { r->off, r->len };

		return ioctl(f->fd, BLKDISCARD, range) < 0 ? -errno : 0;
	}
	}
	return -EINVAL;
}

int ioe_execute(struct ioe_file *f, struct ioe_req *r)
{
	r->f = f;
	return ioe_blocking(r);
}

static void ioe_pool_job(void *arg)
{
	struct ioe_req *r = arg;

	r->done(r, ioe_blocking(r));
}

static void ioe_to_pool(struct ioe_req *r)
{
	if (dc_pool_run(ioe_pool_job, r) < 0)
		r->done(r, -ENOMEM);
}

/* --- The copy mode ------------------------------------------------------------ */

/* A buffered write of the copy mode, on the submitting thread. Neither ext4
 * nor tmpfs takes RWF_NOWAIT buffered writes, so io_uring would hand every
 * one to a worker thread of its own: a wake-up and a thread switch a write
 * (docs/performance.md, "convert against qemu-img"). A copy tool whose loop
 * submits (diskctl cp, convert, commit) can afford to block there; a VMM's
 * queue thread cannot, so this is only ever asked for by the process
 * (DISKCORE_IO_COPY=1 when a file is opened), never by default.
 *
 * Every IOE_KICK bytes it also starts writeback of the file's dirty pages
 * (sync_file_range without waiting), so the device writes while the copy
 * goes on and the flush at the end waits for the last few MiB only, not for
 * the whole image. */
static int ioe_copy_write(struct ioe_file *f, struct ioe_req *r)
{
	uint64_t n;
	int res = ioe_blocking(r);

	n = atomic_fetch_add_explicit(&f->unkicked, r->buf.len, memory_order_relaxed) +
	    r->buf.len;
	if (n >= IOE_KICK &&
	    atomic_compare_exchange_strong_explicit(
		    &f->unkicked, &n, 0, memory_order_relaxed, memory_order_relaxed))
		/* A hint: what fails here fails again, and is reported, at the
		 * flush. */
		(void)sync_file_range(f->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	return res;
}

void ioe_submit(struct ioe_queue *q, struct ioe_req *r)
{
	struct ioe_file *f = q->f;
	int rc;

	r->f = f;
	r->bounce = NULL;
	r->heap = NULL;
	if (f->copy && r->op == IOE_WRITE) {
		r->done(r, ioe_copy_write(f, r));
		return;
	}
	if (q->pool || r->op == IOE_DISCARD ||
	    (r->op == IOE_PUNCH && !f->can_fallocate)) {
		ioe_to_pool(r);
		return;
	}
	switch (r->op) {
	case IOE_READ:
	case IOE_WRITE:
		if (r->buf.len == 0) {
			r->done(r, 0);
			return;
		}
		rc = ioe_prepare_rw(r);
		if (rc < 0) {
			ioe_finish(r, rc);
			return;
		}
		break;
#ifdef IOE_HAVE_URING
	case IOE_FLUSH:
		r->uop = IORING_OP_FSYNC;
		break;
	case IOE_PUNCH:
		r->uop = IORING_OP_FALLOCATE;
		r->pos = r->off;
		r->left = r->len;
		break;
#endif
	default:
		r->done(r, -EINVAL);
		return;
	}
	ioe_ring_start(q, r);
}
