/* SPDX-License-Identifier: MIT */
/* ioengine: the engine thread. One per process while a ring or a watch needs
 * it: it sleeps in epoll on the rings' eventfds (registered with io_uring, so a
 * posted CQE wakes it, and written by submitters that want a flush) and on the
 * fds of watches (blockdev's uevent monitor), and retries submissions the
 * kernel refused. */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

static pthread_mutex_t ioe_life = PTHREAD_MUTEX_INITIALIZER;
static struct ioe_thread *ioe_cur; /* under ioe_life */
static unsigned ioe_refs;	   /* under ioe_life */

bool ioe_thread_is_self(const struct ioe_thread *t)
{
	return pthread_equal(pthread_self(), t->thread);
}

static void ioe_ctl_ready(struct ioe_src *s)
{
	struct ioe_thread *t =
		(struct ioe_thread *)((char *)s - offsetof(struct ioe_thread, ctl));
	eventfd_t v;

	eventfd_read(t->ctlfd, &v);
}

/* Between batches: run the retries, free what was closed on the thread.
 * Returns the epoll timeout, or -2 when the thread must stop. */
static int ioe_thread_between(struct ioe_thread *t)
{
	struct ioe_queue *dead, *retry, *q;
	struct ioe_watch *wdead;
	bool stop;
	int timeout;

	pthread_mutex_lock(&t->lock);
	retry = t->retry;
	t->retry = NULL;
	pthread_mutex_unlock(&t->lock);
	while ((q = retry)) {
		retry = q->next;
		pthread_mutex_lock(&q->lock);
		q->on_retry = false;
		pthread_mutex_unlock(&q->lock);
		/* The ring's ready is ioe_ring_kick() (set by uring.c): the
		 * rings sit above this thread (internal.h). */
		q->src.ready(&q->src);
	}
	/* No ring or watch from an earlier epoll_wait or retry list is held
	 * any more (queue close and ioe_watch_del() wait for this). */
	pthread_mutex_lock(&t->lock);
	t->gen++;
	pthread_cond_broadcast(&t->cond);
	dead = t->dead;
	t->dead = NULL;
	wdead = t->wdead;
	t->wdead = NULL;
	stop = t->stop;
	/* A refused submission is retried after a millisecond. */
	timeout = t->retry ? 1 : -1;
	pthread_mutex_unlock(&t->lock);
	while ((q = dead)) {
		dead = q->next;
		q->destroy(q);
	}
	while (wdead) {
		struct ioe_watch *w = wdead;

		wdead = w->next;
		free(w);
	}
	return stop ? -2 : timeout;
}

static void ioe_thread_free(struct ioe_thread *t)
{
	if (t->epfd >= 0)
		close(t->epfd);
	if (t->ctlfd >= 0)
		close(t->ctlfd);
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static void *ioe_thread_main(void *arg)
{
	struct ioe_thread *t = arg;
	struct epoll_event ev[64];
	int n;

	while ((n = ioe_thread_between(t)) != -2) {
		n = epoll_wait(t->epfd, ev, 64, n);
		for (int i = 0; i < n; i++) {
			struct ioe_src *s = ev[i].data.ptr;

			s->ready(s);
		}
	}
	if (t->detached)
		ioe_thread_free(t);
	return NULL;
}

static struct ioe_thread *ioe_thread_start(void)
{
	struct ioe_thread *t = calloc(1, sizeof(*t));
	struct epoll_event ev = { .events = EPOLLIN };
	sigset_t all, old;
	int rc;

	if (!t) {
		dc_error("out of memory");
		return NULL;
	}
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	t->ctl.ready = ioe_ctl_ready;
	ev.data.ptr = &t->ctl;
	t->epfd = epoll_create1(EPOLL_CLOEXEC);
	t->ctlfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->epfd < 0 || t->ctlfd < 0 ||
	    epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->ctlfd, &ev) < 0) {
		dc_error("cannot set up the completion thread: %s", strerror(errno));
		ioe_thread_free(t);
		return NULL;
	}
	/* The thread takes no signals: they belong to the application. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&t->thread, NULL, ioe_thread_main, t);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		dc_error("cannot start the completion thread: %s", strerror(rc));
		ioe_thread_free(t);
		return NULL;
	}
	return t;
}

/* The running engine thread, started by the first user. */
struct ioe_thread *ioe_thread_get(void)
{
	struct ioe_thread *t;

	pthread_mutex_lock(&ioe_life);
	if (!ioe_cur) {
		ioe_cur = ioe_thread_start();
		ioe_refs = 0;
	}
	t = ioe_cur;
	if (t)
		ioe_refs++;
	pthread_mutex_unlock(&ioe_life);
	return t;
}

void ioe_thread_put(struct ioe_thread *t)
{
	pthread_mutex_lock(&ioe_life);
	if (--ioe_refs) {
		pthread_mutex_unlock(&ioe_life);
		return;
	}
	ioe_cur = NULL;
	pthread_mutex_unlock(&ioe_life);
	pthread_mutex_lock(&t->lock);
	t->stop = true;
	pthread_mutex_unlock(&t->lock);
	eventfd_write(t->ctlfd, 1);
	if (ioe_thread_is_self(t)) {
		/* The last user went away from a completion callback on the
		 * thread itself: it frees itself when it leaves. */
		t->detached = true;
		pthread_detach(t->thread);
		return;
	}
	pthread_join(t->thread, NULL);
	ioe_thread_free(t);
}

int ioe_thread_add(struct ioe_thread *t, int fd, struct ioe_src *s, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = s };

	return epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

bool ioe_thread_del(struct ioe_thread *t, int fd)
{
	uint64_t gen;

	pthread_mutex_lock(&t->lock);
	epoll_ctl(t->epfd, EPOLL_CTL_DEL, fd, NULL);
	if (ioe_thread_is_self(t)) {
		pthread_mutex_unlock(&t->lock);
		return true;
	}
	gen = t->gen;
	eventfd_write(t->ctlfd, 1);
	while (t->gen == gen)
		pthread_cond_wait(&t->cond, &t->lock);
	pthread_mutex_unlock(&t->lock);
	return false;
}

/* A queue closed on the thread: destroyed once the batch ends. */
void ioe_thread_bury(struct ioe_thread *t, struct ioe_queue *q)
{
	pthread_mutex_lock(&t->lock);
	q->next = t->dead;
	t->dead = q;
	pthread_mutex_unlock(&t->lock);
}

void ioe_thread_retry(struct ioe_thread *t, struct ioe_queue *q)
{
	pthread_mutex_lock(&t->lock);
	q->next = t->retry;
	t->retry = q;
	pthread_mutex_unlock(&t->lock);
	/* The thread looks at its list before it sleeps again. */
	if (!ioe_thread_is_self(t))
		eventfd_write(t->ctlfd, 1);
}

/* --- Watches ----------------------------------------------------------------- */

static void ioe_watch_ready(struct ioe_src *s)
{
	struct ioe_watch *w = (struct ioe_watch *)s;

	if (!w->dead)
		w->fn(w->arg);
}

struct ioe_watch *ioe_watch_add(int fd, void (*fn)(void *arg), void *arg)
{
	struct ioe_watch *w = calloc(1, sizeof(*w));
	int rc;

	if (!w) {
		dc_error("out of memory");
		return NULL;
	}
	w->src.ready = ioe_watch_ready;
	w->fd = fd;
	w->fn = fn;
	w->arg = arg;
	w->t = ioe_thread_get();
	if (!w->t) {
		free(w);
		return NULL;
	}
	rc = ioe_thread_add(w->t, fd, &w->src, EPOLLIN);
	if (rc < 0) {
		dc_error("cannot watch fd %d: %s", fd, strerror(-rc));
		ioe_thread_put(w->t);
		free(w);
		return NULL;
	}
	return w;
}

void ioe_watch_del(struct ioe_watch *w)
{
	struct ioe_thread *t = w->t;

	if (ioe_thread_del(t, w->fd)) {
		/* On the thread, maybe inside this very batch: later events
		 * for w in it are skipped, and w is freed when it ends. */
		w->dead = true;
		pthread_mutex_lock(&t->lock);
		w->next = t->wdead;
		t->wdead = w;
		pthread_mutex_unlock(&t->lock);
	} else {
		free(w);
	}
	ioe_thread_put(t);
}
