/* SPDX-License-Identifier: MIT */
/* The worker pool that runs blocking plugin callbacks, and the timer service.
 *
 * Pool: a FIFO of jobs and a LIFO stack of idle workers. A job submitted while a
 * worker is idle is handed straight to that worker (one condvar signal, to that
 * worker only); otherwise it is queued and, below the cap, a new worker starts.
 * A worker drains the queue before going idle, so an idle worker implies an empty
 * queue and hand-off keeps FIFO order. The most recently idled worker is woken
 * first, so surplus workers stay cold and time out.
 *
 * Timers: one thread sleeps on a monotonic condvar until the earliest deadline of
 * a binary min-heap and runs due callbacks with the lock dropped.
 *
 * Both start on first use. Threads block every signal: they belong to the
 * library, not to the application's signal handling. */
#include "internal.h"

#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POOL_DEFAULT_THREADS 64
#define POOL_MAX_THREADS 1024
#define POOL_IDLE_NS (3 * 1000000000LL)

struct pool_job {
	void (*fn)(void *arg);
	void *arg;
	struct pool_job *next;
};

/* Worker records are never freed, only recycled, so a submitter may signal
 * one after dropping the lock: at worst a later thread gets a spurious wakeup. */
struct pool_worker {
	pthread_cond_t cond;
	struct pool_worker *next;     /* idle stack or free list */
	struct pool_worker *all_next; /* every record ever made */
	void (*fn)(void *arg);	      /* job handed over while idle */
	void *arg;
};

static struct {
	pthread_mutex_t lock;
	pthread_condattr_t condattr;
	bool ready;
	unsigned cap;
	unsigned nthreads;
	struct pool_job *head, *tail; /* FIFO of queued jobs */
	struct pool_job *free_jobs;
	struct pool_worker *idle;
	struct pool_worker *free_workers;
	struct pool_worker *all;
} pool = { .lock = PTHREAD_MUTEX_INITIALIZER };

struct pool_timer {
	uint64_t deadline;
	uint64_t seq; /* equal deadlines fire in submission order */
	void (*fn)(void *arg);
	void *arg;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool started;
	struct pool_timer *heap;
	size_t n, size;
	uint64_t seq;
} timers = { .lock = PTHREAD_MUTEX_INITIALIZER };

static uint64_t pool_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct timespec pool_abstime(uint64_t ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000u, .tv_nsec = ns % 1000000000u };

	return ts;
}

/* Start a detached thread with every signal blocked. */
static int pool_spawn(void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t t;
	int err;

	if (pthread_attr_init(&attr))
		return -ENOMEM;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&t, &attr, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return -err;
}

/* A forked child has none of the parent's threads: forget them. Queued jobs and
 * pending timers stay and run once the next submission starts fresh threads. */
static void pool_atfork_prepare(void)
{
	pthread_mutex_lock(&pool.lock);
	pthread_mutex_lock(&timers.lock);
}

static void pool_atfork_parent(void)
{
	pthread_mutex_unlock(&timers.lock);
	pthread_mutex_unlock(&pool.lock);
}

static void pool_atfork_child(void)
{
	struct pool_worker *w;

	pool.nthreads = 0;
	pool.idle = NULL;
	pool.free_workers = NULL;
	for (w = pool.all; w; w = w->all_next) {
		pthread_cond_init(&w->cond, &pool.condattr);
		w->next = pool.free_workers;
		pool.free_workers = w;
	}
	timers.started = false;
	pool_atfork_parent();
}

static void pool_register_atfork(void)
{
	pthread_atfork(pool_atfork_prepare, pool_atfork_parent, pool_atfork_child);
}

static pthread_once_t pool_atfork_once = PTHREAD_ONCE_INIT;

/* Called with pool.lock held. */
static void pool_init_locked(void)
{
	const char *env = getenv("DISKCORE_POOL_THREADS");
	unsigned long cap = POOL_DEFAULT_THREADS;

	if (env && *env) {
		char *end;
		unsigned long v = strtoul(env, &end, 10);

		if (*end == '\0' && v >= 1 && v <= POOL_MAX_THREADS)
			cap = v;
		else
			dc_debug(
				"pool: ignoring DISKCORE_POOL_THREADS=%s (expected 1..%d)",
				env, POOL_MAX_THREADS);
	}
	pool.cap = cap;
	pthread_condattr_init(&pool.condattr);
	pthread_condattr_setclock(&pool.condattr, CLOCK_MONOTONIC);
	pool.ready = true;
}

static void *pool_worker_main(void *self)
{
	struct pool_worker *w = self;
	void (*fn)(void *);
	void *arg;

	pthread_mutex_lock(&pool.lock);
	for (;;) {
		struct pool_job *j = pool.head;

		if (j) {
			pool.head = j->next;
			if (!pool.head)
				pool.tail = NULL;
			fn = j->fn;
			arg = j->arg;
			j->next = pool.free_jobs;
			pool.free_jobs = j;
		} else {
			struct timespec ts = pool_abstime(pool_now() + POOL_IDLE_NS);
			bool timed_out = false;

			w->fn = NULL;
			w->next = pool.idle;
			pool.idle = w;
			while (!w->fn && !timed_out)
				timed_out = pthread_cond_timedwait(&w->cond, &pool.lock,
								   &ts) == ETIMEDOUT;
			if (!w->fn) {
				/* Nobody picked us: leave the idle stack and exit. */
				struct pool_worker **pp = &pool.idle;

				while (*pp != w)
					pp = &(*pp)->next;
				*pp = w->next;
				break;
			}
			/* The submitter popped us off the idle stack. */
			fn = w->fn;
			arg = w->arg;
		}
		pthread_mutex_unlock(&pool.lock);
		fn(arg);
		pthread_mutex_lock(&pool.lock);
	}
	w->next = pool.free_workers;
	pool.free_workers = w;
	pool.nthreads--;
	pthread_mutex_unlock(&pool.lock);
	return NULL;
}

/* Start one more worker; called with pool.lock held. */
static int pool_add_worker(void)
{
	struct pool_worker *w = pool.free_workers;
	int err;

	if (w) {
		pool.free_workers = w->next;
	} else {
		w = calloc(1, sizeof(*w));
		if (!w)
			return -ENOMEM;
		pthread_cond_init(&w->cond, &pool.condattr);
		w->all_next = pool.all;
		pool.all = w;
	}
	err = pool_spawn(pool_worker_main, w);
	if (err) {
		w->next = pool.free_workers;
		pool.free_workers = w;
		return err;
	}
	pool.nthreads++;
	return 0;
}

int dc__pool_submit(void (*fn)(void *arg), void *arg)
{
	struct pool_worker *w;
	struct pool_job *j;
	int err = 0;

	if (!fn)
		return -EINVAL;
	pthread_once(&pool_atfork_once, pool_register_atfork);
	pthread_mutex_lock(&pool.lock);
	if (!pool.ready)
		pool_init_locked();
	w = pool.idle;
	if (w) {
		pool.idle = w->next;
		w->fn = fn;
		w->arg = arg;
		/* Signal unlocked, so the worker does not wake into a held mutex. */
		pthread_mutex_unlock(&pool.lock);
		pthread_cond_signal(&w->cond);
		return 0;
	}
	j = pool.free_jobs;
	if (j) {
		pool.free_jobs = j->next;
	} else {
		j = malloc(sizeof(*j));
		if (!j) {
			pthread_mutex_unlock(&pool.lock);
			return -ENOMEM;
		}
	}
	j->fn = fn;
	j->arg = arg;
	j->next = NULL;
	if (pool.tail)
		pool.tail->next = j;
	else
		pool.head = j;
	pool.tail = j;
	if (pool.nthreads < pool.cap) {
		err = pool_add_worker();
		if (err && pool.nthreads == 0) {
			/* No worker will ever run it: take the job back. */
			struct pool_job *prev = NULL, *it = pool.head;

			for (; it != j; it = it->next)
				prev = it;
			if (prev)
				prev->next = NULL;
			else
				pool.head = NULL;
			pool.tail = prev;
			j->next = pool.free_jobs;
			pool.free_jobs = j;
		} else {
			err = 0; /* a busy worker will get to it */
		}
	}
	pthread_mutex_unlock(&pool.lock);
	return err;
}

/* --- Timers --------------------------------------------------------------- */

static bool timer_before(const struct pool_timer *a, const struct pool_timer *b)
{
	return a->deadline < b->deadline ||
	       (a->deadline == b->deadline && a->seq < b->seq);
}

static void timer_sift_up(size_t i)
{
	struct pool_timer t = timers.heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (!timer_before(&t, &timers.heap[parent]))
			break;
		timers.heap[i] = timers.heap[parent];
		i = parent;
	}
	timers.heap[i] = t;
}

static void timer_pop(void)
{
	struct pool_timer t = timers.heap[--timers.n];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= timers.n)
			break;
		if (c + 1 < timers.n &&
		    timer_before(&timers.heap[c + 1], &timers.heap[c]))
			c++;
		if (!timer_before(&timers.heap[c], &t))
			break;
		timers.heap[i] = timers.heap[c];
		i = c;
	}
	if (timers.n)
		timers.heap[i] = t;
}

static void *timer_main(void *unused)
{
	struct pool_timer t;

	(void)unused;
	pthread_mutex_lock(&timers.lock);
	for (;;) {
		if (timers.n == 0) {
			pthread_cond_wait(&timers.cond, &timers.lock);
			continue;
		}
		if (timers.heap[0].deadline > pool_now()) {
			struct timespec ts = pool_abstime(timers.heap[0].deadline);

			pthread_cond_timedwait(&timers.cond, &timers.lock, &ts);
			continue;
		}
		t = timers.heap[0];
		timer_pop();
		pthread_mutex_unlock(&timers.lock);
		t.fn(t.arg);
		pthread_mutex_lock(&timers.lock);
	}
	return NULL;
}

int dc__timer_after(uint64_t delay_ns, void (*fn)(void *arg), void *arg)
{
	uint64_t now = pool_now();
	int err;

	if (!fn)
		return -EINVAL;
	pthread_once(&pool_atfork_once, pool_register_atfork);
	pthread_mutex_lock(&timers.lock);
	if (!timers.started) {
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&timers.cond, &ca);
		pthread_condattr_destroy(&ca);
		err = pool_spawn(timer_main, NULL);
		if (err) {
			pthread_cond_destroy(&timers.cond);
			pthread_mutex_unlock(&timers.lock);
			return err;
		}
		timers.started = true;
	}
	if (timers.n == timers.size) {
		size_t size = timers.size ? timers.size * 2 : 64;
		struct pool_timer *h = realloc(timers.heap, size * sizeof(*h));

		if (!h) {
			pthread_mutex_unlock(&timers.lock);
			return -ENOMEM;
		}
		timers.heap = h;
		timers.size = size;
	}
	/* Saturate: a deadline past the clock's range means "never". */
	timers.heap[timers.n] = (struct pool_timer){
		.deadline = delay_ns > UINT64_MAX - now ? UINT64_MAX : now + delay_ns,
		.seq = timers.seq++,
		.fn = fn,
		.arg = arg,
	};
	timer_sift_up(timers.n++);
	/* Only a new earliest deadline changes how long the thread must sleep. */
	if (timers.heap[0].seq == timers.seq - 1)
		pthread_cond_signal(&timers.cond);
	pthread_mutex_unlock(&timers.lock);
	return 0;
}

/* --- Plugin services ------------------------------------------------------ */

DC_EXPORT int dc_pool_run(void (*fn)(void *arg), void *arg)
{
	return dc__pool_submit(fn, arg);
}

DC_EXPORT int dc_timer_after(uint64_t delay_ns, void (*fn)(void *arg), void *arg)
{
	return dc__timer_after(delay_ns, fn, arg);
}
