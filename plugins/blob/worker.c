/* SPDX-License-Identifier: MIT */
/* blob: the I/O thread. One curl multi handle, driven through its socket
 * interface by an epoll loop, starts the pieces submitters hand it while
 * connection slots are free, and retries a failed piece after a backoff on the
 * core's timer (blob.h lists the files). */
#include "blob.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static void blob_wake(struct blob_disk *b)
{
	uint64_t one = 1;

	while (write(b->evfd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

/* Hand pieces to the I/O thread. One wakeup per batch: the thread clears
 * `woken` when it takes the list, and from the thread itself (a completion
 * callback that submits again) no wakeup is needed at all, since it looks at
 * the list again before it polls. */
void blob_enqueue(struct blob_disk *b, struct blob_xfer *head, struct blob_xfer **tail)
{
	bool wake;

	pthread_mutex_lock(&b->lock);
	*b->pend_tail = head;
	b->pend_tail = tail;
	wake = !b->woken;
	b->woken = true;
	pthread_mutex_unlock(&b->lock);
	if (wake && !pthread_equal(pthread_self(), b->thread))
		blob_wake(b);
}

static void blob_piece_done(struct blob_disk *b, struct blob_xfer *x, int result)
{
	struct blob_rctx *rc = x->rc;
	int expected = 0;

	if (!rc) {
		x->loaded(b, x, result);
		return;
	}
	if (result) {
		atomic_fetch_add(&b->nerr, 1);
		if (atomic_compare_exchange_strong(&rc->result, &expected, DC_E_IO))
			rc->detail = -result;
	} else {
		atomic_fetch_add(&b->nbytes, x->len);
	}
	if (atomic_fetch_sub(&rc->pending, 1) == 1) {
		struct dc_req *req = rc->req;
		int res = atomic_load(&rc->result);

		free(rc->extra);
		dc_complete_detail(req, res, res ? rc->detail : 0);
	}
}

static void blob_retry_fire(void *arg)
{
	struct blob_xfer *x = arg;

	x->next = NULL;
	blob_enqueue(x->b, x, &x->next);
}

/* The I/O thread: start pending pieces while there are free connection slots. */
static void blob_start(struct blob_disk *b, struct blob_xfer *x)
{
	int ret;

	x->conn = b->idle;
	if (x->conn)
		b->idle = x->conn->next;
	else
		x->conn = blob_conn_new(b);
	if (!x->conn) {
		blob_piece_done(b, x, -ENOMEM);
		return;
	}
	ret = blob_xfer_prepare(b, x);
	if (!ret && curl_multi_add_handle(b->multi, x->conn->easy) != CURLM_OK)
		ret = -ENOMEM;
	if (ret) {
		x->conn->next = b->idle;
		b->idle = x->conn;
		blob_piece_done(b, x, ret);
		return;
	}
	atomic_fetch_add(&b->nreq, 1);
	b->active++;
}

static void blob_finish(struct blob_disk *b, CURL *easy, CURLcode code)
{
	struct blob_xfer *x = NULL;
	char msg[BLOB_MSG];
	bool retry;
	int ret;

	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
	curl_multi_remove_handle(b->multi, easy);
	b->active--;
	x->code = code;
	ret = blob_xfer_classify(b, x, &retry, msg, sizeof(msg));
	x->conn->next = b->idle;
	b->idle = x->conn;
	x->conn = NULL;
	if (!ret) {
		blob_piece_done(b, x, 0);
		return;
	}
	if (retry && x->attempt < b->retries) {
		uint64_t ms = blob_backoff_ms(&b->rng, ++x->attempt);

		dc_debug("blob: %s; retry %u of %u in %llu ms", msg, x->attempt,
			 b->retries, (unsigned long long)ms);
		atomic_fetch_add(&b->nretry, 1);
		if (dc_timer_after(ms * 1000000u, blob_retry_fire, x) == 0)
			return;
	}
	dc_debug("blob: %s", msg);
	blob_set_last_error(b, msg);
	blob_piece_done(b, x, ret);
}

static int64_t blob_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* curl: watch (or stop watching) a socket. */
static int blob_socket_cb(CURL *e, curl_socket_t s, int what, void *arg, void *sockp)
{
	struct blob_disk *b = arg;
	struct epoll_event ev = { .data.fd = s };

	(void)e;
	(void)sockp;
	if (what == CURL_POLL_REMOVE) {
		epoll_ctl(b->epfd, EPOLL_CTL_DEL, s, NULL);
		return 0;
	}
	ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) |
		    (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
	if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, s, &ev) < 0 &&
	    epoll_ctl(b->epfd, EPOLL_CTL_ADD, s, &ev) < 0)
		return -1;
	return 0;
}

/* curl: call back with CURL_SOCKET_TIMEOUT in timeout_ms (-1: never). */
static int blob_timer_cb(CURLM *m, long timeout_ms, void *arg)
{
	struct blob_disk *b = arg;

	(void)m;
	b->deadline_ms = timeout_ms < 0 ? -1 : blob_now_ms() + timeout_ms;
	return 0;
}

/* Move what submitters handed over to the end of the held list; true when
 * the instance is closing. */
static bool blob_take_pending(struct blob_disk *b, struct blob_xfer ***held_tail)
{
	struct blob_xfer *list;
	bool stop;

	pthread_mutex_lock(&b->lock);
	list = b->pend_head;
	b->pend_head = NULL;
	b->pend_tail = &b->pend_head;
	b->woken = false;
	stop = b->stop;
	pthread_mutex_unlock(&b->lock);
	if (list) {
		**held_tail = list;
		while (**held_tail)
			*held_tail = &(**held_tail)->next;
	}
	return stop;
}

/* How long epoll_wait may sleep: until curl's timer, at most a second, not at
 * all when there is work that can start now. */
static int blob_wait_ms(struct blob_disk *b, bool startable)
{
	int64_t now = blob_now_ms();
	bool more;

	pthread_mutex_lock(&b->lock);
	more = b->pend_head != NULL;
	pthread_mutex_unlock(&b->lock);
	if (more || startable || (b->deadline_ms >= 0 && b->deadline_ms <= now))
		return 0;
	if (b->deadline_ms < 0 || b->deadline_ms - now > 1000)
		return 1000;
	return (int)(b->deadline_ms - now);
}

/* Hand ready sockets, then an expired timer, to curl; finish what completed. */
static void blob_dispatch(struct blob_disk *b, const struct epoll_event *evs, int n)
{
	struct CURLMsg *m;
	int running, left;

	for (int i = 0; i < n; i++) {
		int fd = evs[i].data.fd, mask = 0;
		uint64_t v;

		if (fd == b->evfd) {
			while (read(b->evfd, &v, sizeof(v)) < 0 && errno == EINTR)
				;
			continue;
		}
		if (evs[i].events & EPOLLIN)
			mask |= CURL_CSELECT_IN;
		if (evs[i].events & EPOLLOUT)
			mask |= CURL_CSELECT_OUT;
		if (evs[i].events & (EPOLLERR | EPOLLHUP))
			mask |= CURL_CSELECT_ERR;
		curl_multi_socket_action(b->multi, fd, mask, &running);
	}
	if (b->deadline_ms >= 0 && b->deadline_ms <= blob_now_ms())
		curl_multi_socket_action(b->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	while ((m = curl_multi_info_read(b->multi, &left)))
		if (m->msg == CURLMSG_DONE)
			blob_finish(b, m->easy_handle, m->data.result);
}

static void *blob_thread(void *arg)
{
	struct blob_disk *b = arg;
	struct blob_xfer *held = NULL, **held_tail = &held;
	struct epoll_event evs[64];

	for (;;) {
		bool stop = blob_take_pending(b, &held_tail);
		int n;

		if (stop && !b->active && !held)
			break;
		/* Only `connections` requests at a time: the rest wait here, so
		 * their timeouts do not run while they queue. */
		while (held && b->active < b->connections) {
			struct blob_xfer *x = held;

			held = x->next;
			if (!held)
				held_tail = &held;
			x->next = NULL;
			blob_start(b, x);
		}
		n = epoll_wait(b->epfd, evs, 64,
			       blob_wait_ms(b, held && b->active < b->connections));
		blob_dispatch(b, evs, n);
	}
	return NULL;
}

/* --- Start and stop ------------------------------------------------------------ */

int blob_start_io(struct blob_disk *b)
{
	b->multi = curl_multi_init();
	if (!b->multi) {
		dc_error("cannot create a curl multi handle");
		return -ENOMEM;
	}
	curl_multi_setopt(b->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)b->connections);
	curl_multi_setopt(b->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)b->connections);
	curl_multi_setopt(b->multi, CURLMOPT_MAXCONNECTS, (long)b->connections);
	curl_multi_setopt(b->multi, CURLMOPT_SOCKETFUNCTION, blob_socket_cb);
	curl_multi_setopt(b->multi, CURLMOPT_SOCKETDATA, b);
	curl_multi_setopt(b->multi, CURLMOPT_TIMERFUNCTION, blob_timer_cb);
	curl_multi_setopt(b->multi, CURLMOPT_TIMERDATA, b);
	b->deadline_ms = -1;
	b->epfd = epoll_create1(EPOLL_CLOEXEC);
	b->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (b->epfd < 0 || b->evfd < 0 ||
	    epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->evfd,
		      &(struct epoll_event){ .events = EPOLLIN, .data.fd = b->evfd }) <
		    0) {
		dc_error("cannot set up the I/O thread's epoll: %s", strerror(errno));
		return -errno;
	}
	b->pend_tail = &b->pend_head;
	if (pthread_create(&b->thread, NULL, blob_thread, b)) {
		dc_error("cannot start the I/O thread");
		return -EAGAIN;
	}
	b->thread_started = true;
	return 0;
}

/* Stop the thread once every piece it holds has finished, and release what
 * blob_start_io() made. */
void blob_stop_io(struct blob_disk *b)
{
	if (b->thread_started) {
		pthread_mutex_lock(&b->lock);
		b->stop = true;
		pthread_mutex_unlock(&b->lock);
		blob_wake(b);
		pthread_join(b->thread, NULL);
		b->thread_started = false;
	}
	while (b->idle) {
		struct blob_conn *c = b->idle;

		b->idle = c->next;
		blob_conn_free(c);
	}
	if (b->multi)
		curl_multi_cleanup(b->multi);
	b->multi = NULL;
	if (b->epfd >= 0)
		close(b->epfd);
	if (b->evfd >= 0)
		close(b->evfd);
	b->epfd = b->evfd = -1;
}
