/* SPDX-License-Identifier: MIT */
#include "iodrive.h"
#include "harness.h"

#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const iod_mode_name[IOD__MODES] = { "callback", "poll-fd", "wait",
						"wait-thread" };

struct iod_state;

/* dc_io.user_data of a request: which run, which slot. */
struct iod_tag {
	struct iod_state *s;
	unsigned slot;
};

struct iod_state {
	const struct iod_ops *ops;
	void *arg;
	dc_queue *q;
	enum iod_mode mode;
	unsigned qd;
	bool busy[IOD_QD_MAX];
	struct iod_tag tag[IOD_QD_MAX];
	unsigned inflight;
	bool ended, failed;
	char *err;
	size_t errlen;
	/* Callback mode: callbacks nest (a submit completes inline); the
	 * outermost one that leaves nothing in flight tells the consumer. */
	int depth;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool finished;
	atomic_uint progress;
};

static void iod_fail(struct iod_state *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void iod_fail(struct iod_state *s, const char *fmt, ...)
{
	va_list ap;

	if (!s->failed) {
		va_start(ap, fmt);
		vsnprintf(s->err, s->errlen, fmt, ap);
		va_end(ap);
	}
	s->failed = true;
}

static void iod_cb(const struct dc_completion *c);

/* Ask for the next request of slot i; on IOD_SUBMIT mark it in flight. */
static int iod_prepare(struct iod_state *s, unsigned i, struct dc_io *io)
{
	int r;

	memset(io, 0, sizeof(*io));
	r = s->ops->next(s->arg, i, io);
	if (r == IOD_END) {
		s->ended = true;
	} else if (r == IOD_BLOCKED) {
		if (!s->inflight)
			iod_fail(s,
				 "the request source is blocked with nothing in flight");
	} else {
		io->user_data = &s->tag[i];
		io->cb = s->mode == IOD_CALLBACK ? iod_cb : NULL;
		s->busy[i] = true;
		s->inflight++;
	}
	return r;
}

/* Submit into every free slot until the source blocks or ends. A callback
 * may run inline inside dc_submit() and fill slots itself. */
static void iod_fill(struct iod_state *s)
{
	for (unsigned i = 0; i < s->qd && !s->ended && !s->failed; i++) {
		struct dc_io io;
		int rc;

		if (s->busy[i])
			continue;
		if (iod_prepare(s, i, &io) != IOD_SUBMIT)
			break;
		rc = dc_submit(s->q, &io);
		if (rc < 0) {
			s->busy[i] = false;
			s->inflight--;
			iod_fail(s, "dc_submit(op %u, sector %llu) = %d (%s)", io.op,
				 (unsigned long long)io.sector, rc, dc_strerror(rc));
		}
	}
}

static void iod_complete(struct iod_state *s, unsigned slot,
			 const struct dc_completion *c)
{
	if (slot >= s->qd || !s->busy[slot]) {
		iod_fail(s, "a completion for slot %u, which has no request in flight",
			 slot);
		return;
	}
	s->busy[slot] = false;
	s->inflight--;
	if (!s->failed && s->ops->done(s->arg, slot, c) < 0)
		s->failed = true; /* done() wrote its own message */
}

static void iod_cb(const struct dc_completion *c)
{
	struct iod_tag *t = c->user_data;
	struct iod_state *s = t->s;

	s->depth++;
	iod_complete(s, t->slot, c);
	iod_fill(s);
	atomic_fetch_add(&s->progress, 1);
	if (--s->depth == 0 && s->inflight == 0) {
		/* s lives on the consumer's stack: not touched after this. */
		pthread_mutex_lock(&s->lock);
		s->finished = true;
		pthread_cond_signal(&s->cond);
		pthread_mutex_unlock(&s->lock);
	}
}

/* Callback mode. Callbacks may run on other threads as soon as the first
 * request is in, while this thread is outside the library: so every first
 * request is prepared before any is submitted, and this thread touches no
 * shared state until the last callback says it is finished. */
static int iod_run_callback(struct iod_state *s, int stall_ms)
{
	struct dc_io first[IOD_QD_MAX];
	unsigned n = 0, seen = 0;
	uint64_t last = h_now_ms();

	while (n < s->qd && !s->ended && !s->failed &&
	       iod_prepare(s, n, &first[n]) == IOD_SUBMIT)
		n++;
	if (s->failed)
		return -1;
	for (unsigned i = 0; i < n; i++) {
		int rc = dc_submit(s->q, &first[i]);

		if (rc < 0) {
			/* Callbacks may be running: leave s alone and end the test. */
			snprintf(s->err, s->errlen, "dc_submit(op %u) = %d (%s)",
				 first[i].op, rc, dc_strerror(rc));
			return -2;
		}
	}
	pthread_mutex_lock(&s->lock);
	while (n && !s->finished) {
		struct timespec ts;
		unsigned p = atomic_load(&s->progress);

		if (p != seen) {
			seen = p;
			last = h_now_ms();
		} else if (h_now_ms() - last > (uint64_t)stall_ms) {
			pthread_mutex_unlock(&s->lock);
			snprintf(s->err, s->errlen, "no completion in %d ms", stall_ms);
			return -2;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	}
	pthread_mutex_unlock(&s->lock);
	return s->failed ? -1 : 0;
}

static int iod_run_poll(struct iod_state *s, int stall_ms)
{
	struct dc_completion c[IOD_QD_MAX];
	uint64_t last = h_now_ms();
	bool wait = s->mode == IOD_WAIT || s->mode == IOD_WAIT_THREAD;
	int fd = -1, rc;

	if (wait) {
		/* Drive the queue from the start (diskcore.h, dc_queue_wait). */
		rc = dc_queue_wait(s->q, 0);
		if (rc < 0) {
			iod_fail(s, "dc_queue_wait(0) = %d", rc);
			return -1;
		}
	} else {
		fd = dc_queue_fd(s->q);
		if (fd < 0) {
			iod_fail(s, "dc_queue_fd = %d", fd);
			return -1;
		}
	}
	iod_fill(s);
	while (s->inflight) {
		int n = dc_queue_reap(s->q, c, IOD_QD_MAX);

		if (n < 0) {
			iod_fail(s, "dc_queue_reap = %d", n);
			return -2;
		}
		if (n == 0) {
			struct pollfd p = { .fd = fd, .events = POLLIN };

			if (h_now_ms() - last > (uint64_t)stall_ms) {
				iod_fail(s, "no completion in %d ms (%u in flight)",
					 stall_ms, s->inflight);
				return -2;
			}
			rc = wait ? dc_queue_wait(s->q, 100) : poll(&p, 1, 100);
			if (rc < 0) {
				iod_fail(s, "waiting for completions: %d", rc);
				return -2;
			}
			continue;
		}
		last = h_now_ms();
		for (int k = 0; k < n; k++) {
			struct iod_tag *t = c[k].user_data;

			if (!t || t->s != s) {
				iod_fail(s, "a completion with foreign user_data %p",
					 c[k].user_data);
				return -2;
			}
			iod_complete(s, t->slot, &c[k]);
		}
		iod_fill(s);
	}
	return s->failed ? -1 : 0;
}

int iod_run(dc_disk *d, enum iod_mode mode, unsigned qd, const struct iod_ops *ops,
	    void *arg, int stall_ms, char *err, size_t errlen)
{
	struct iod_state s = {
		.ops = ops,
		.arg = arg,
		.mode = mode,
		.qd = qd > IOD_QD_MAX ? IOD_QD_MAX : qd,
		.err = err,
		.errlen = errlen,
	};
	int rc;

	for (unsigned i = 0; i < IOD_QD_MAX; i++)
		s.tag[i] = (struct iod_tag){ &s, i };
	rc = dc_queue_open(d,
			   mode == IOD_CALLBACK	   ? 0 :
			   mode == IOD_WAIT_THREAD ? DC_QUEUE_POLL | DC_QUEUE_THREAD :
						     DC_QUEUE_POLL,
			   &s.q);
	if (rc < 0) {
		snprintf(err, errlen, "dc_queue_open = %d: %s", rc, dc_last_error());
		return -1;
	}
	pthread_mutex_init(&s.lock, NULL);
	pthread_cond_init(&s.cond, NULL);
	atomic_init(&s.progress, 0);
	rc = mode == IOD_CALLBACK ? iod_run_callback(&s, stall_ms) :
				    iod_run_poll(&s, stall_ms);
	if (rc == -2) {
		/* Requests are still in flight into s: it must outlive us. The
		 * caller fails the test, which ends the process. */
		fprintf(stderr, "iodrive: %s mode stalled: %s\n", iod_mode_name[mode],
			err);
		fflush(stderr);
		abort();
	}
	dc_queue_close(s.q);
	pthread_cond_destroy(&s.cond);
	pthread_mutex_destroy(&s.lock);
	return rc;
}

/* --- Stamps ------------------------------------------------------------------ */

#define IOD_MAGIC UINT64_C(0x444353544d503031) /* "DCSTMP01" */
#define IOD_HDR 24

static uint64_t iod_seed(uint64_t sector, uint32_t tid, uint32_t gen)
{
	return h_mix64(sector ^ ((uint64_t)tid << 48) ^ ((uint64_t)gen << 24));
}

void iod_stamp(void *buf, uint32_t ss, uint64_t sector, uint64_t count, uint32_t tid,
	       uint32_t gen)
{
	for (uint64_t i = 0; i < count; i++) {
		uint8_t *p = (uint8_t *)buf + i * ss;
		uint64_t magic = IOD_MAGIC, s = sector + i;

		memcpy(p, &magic, 8);
		memcpy(p + 8, &tid, 4);
		memcpy(p + 12, &gen, 4);
		memcpy(p + 16, &s, 8);
		h_fill(p + IOD_HDR, ss - IOD_HDR, iod_seed(s, tid, gen));
	}
}

bool iod_check(const void *p, uint32_t ss, uint64_t sector, uint32_t tid, uint32_t gen,
	       char *why, size_t len)
{
	const uint8_t *b = p;
	uint64_t magic, s;
	uint32_t t, g;
	long off;

	memcpy(&magic, b, 8);
	memcpy(&t, b + 8, 4);
	memcpy(&g, b + 12, 4);
	memcpy(&s, b + 16, 8);
	if (magic != IOD_MAGIC) {
		snprintf(why, len, "holds no stamp (%s)",
			 h_check_zero(b, ss) < 0 ? "all zeroes" : "other data");
		return false;
	}
	if (t != tid || g != gen || s != sector) {
		snprintf(why, len, "holds thread %u's generation %u of sector %llu (%s)",
			 t, g, (unsigned long long)s,
			 s != sector ? "misdirected" :
			 t != tid    ? "another thread's" :
			 g < gen     ? "stale" :
				       "from the future");
		return false;
	}
	off = h_check(b + IOD_HDR, ss - IOD_HDR, iod_seed(s, t, g));
	if (off >= 0) {
		snprintf(why, len, "has the right stamp but differs at byte %ld (torn)",
			 off + IOD_HDR);
		return false;
	}
	return true;
}

double iod_scale(void)
{
	const char *s = getenv("DISKCORE_TEST_SCALE");
	const char *san = getenv("DISKCORE_SANITIZED");
	double v;

	if (s && *s) {
		v = strtod(s, NULL);
		return v > 0 ? v : 1;
	}
	return san && strstr(san, "thread") ? 0.25 : 1;
}

unsigned iod_scaled(unsigned n, unsigned min)
{
	double v = n * iod_scale();

	return v < min ? min : (unsigned)v;
}
