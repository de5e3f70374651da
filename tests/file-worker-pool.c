/* SPDX-License-Identifier: MIT */
/* test-file: the core's worker pool (dc_pool_run), which runs the file
 * plugin's requests: jobs run at once up to the cap, queued ones in order, and
 * idle workers exit. */
#include "file-test.h"
#include "harness.h"

#include <diskcore/plugin.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct tf_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int running, max_running, done, order[256], norder;
	bool release;
	pthread_t caller;
	bool on_caller;
};

static struct tf_pool tp = { .lock = PTHREAD_MUTEX_INITIALIZER,
			     .cond = PTHREAD_COND_INITIALIZER };

/* Wait on tp.cond until pred holds, failing after 10 s (a deadline, not a sleep). */
#define TF_WAIT_UNTIL(pred)                                                         \
	do {                                                                        \
		struct timespec ts_;                                                \
		clock_gettime(CLOCK_REALTIME, &ts_);                                \
		ts_.tv_sec += 10;                                                   \
		while (!(pred))                                                     \
			ck_assert_int_ne(pthread_cond_timedwait(&tp.cond, &tp.lock, \
								&ts_),              \
					 ETIMEDOUT);                                \
	} while (0)

static void tf_job_block(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&tp.lock);
	if (pthread_equal(pthread_self(), tp.caller))
		tp.on_caller = true;
	tp.running++;
	if (tp.running > tp.max_running)
		tp.max_running = tp.running;
	pthread_cond_broadcast(&tp.cond);
	while (!tp.release)
		pthread_cond_wait(&tp.cond, &tp.lock);
	tp.running--;
	tp.done++;
	pthread_cond_broadcast(&tp.cond);
	pthread_mutex_unlock(&tp.lock);
}

static void tf_job_record(void *arg)
{
	pthread_mutex_lock(&tp.lock);
	tp.order[tp.norder++] = (int)(intptr_t)arg;
	tp.done++;
	pthread_cond_broadcast(&tp.cond);
	pthread_mutex_unlock(&tp.lock);
}

/* 32 jobs that each wait for all the others: only if the pool runs 32 at once
 * do they finish. */
START_TEST(pool_runs_jobs_concurrently)
{
	tp.caller = pthread_self();
	pthread_mutex_lock(&tp.lock);
	for (int i = 0; i < 32; i++)
		ck_assert_int_eq(dc_pool_run(tf_job_block, NULL), 0);
	TF_WAIT_UNTIL(tp.running == 32);
	tp.release = true;
	pthread_cond_broadcast(&tp.cond);
	TF_WAIT_UNTIL(tp.done == 32);
	ck_assert(!tp.on_caller);
	pthread_mutex_unlock(&tp.lock);
}
END_TEST

/* The pool reads DISKCORE_POOL_THREADS at its first submission; each Check case
 * runs in a fresh process, so a case can set its own. */
static bool tf_pool_fresh(void)
{
	const char *f = getenv("CK_FORK");

	if (f && !strcmp(f, "no")) {
		fprintf(stderr, "note: CK_FORK=no: pool cap tests not run\n");
		return false;
	}
	return true;
}

/* With a cap of 4, at most 4 jobs run at once, and all of them run. */
START_TEST(pool_cap)
{
	if (!tf_pool_fresh())
		return;
	setenv("DISKCORE_POOL_THREADS", "4", 1);
	pthread_mutex_lock(&tp.lock);
	for (int i = 0; i < 12; i++)
		ck_assert_int_eq(dc_pool_run(tf_job_block, NULL), 0);
	TF_WAIT_UNTIL(tp.running == 4);
	tp.release = true;
	pthread_cond_broadcast(&tp.cond);
	TF_WAIT_UNTIL(tp.done == 12);
	ck_assert_int_eq(tp.max_running, 4);
	pthread_mutex_unlock(&tp.lock);
	ck_assert_int_eq(dc_pool_run(NULL, NULL), -EINVAL);
}
END_TEST

/* With one thread busy, queued jobs wait, and then run in submission order. */
START_TEST(pool_fifo)
{
	if (!tf_pool_fresh())
		return;
	setenv("DISKCORE_POOL_THREADS", "1", 1);
	pthread_mutex_lock(&tp.lock);
	ck_assert_int_eq(dc_pool_run(tf_job_block, NULL), 0);
	TF_WAIT_UNTIL(tp.running == 1);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(dc_pool_run(tf_job_record, (void *)(intptr_t)i), 0);
	ck_assert_int_eq(tp.norder, 0);
	tp.release = true;
	pthread_cond_broadcast(&tp.cond);
	TF_WAIT_UNTIL(tp.done == 101);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(tp.order[i], i);
	pthread_mutex_unlock(&tp.lock);
}
END_TEST

static void *tf_thread_noop(void *arg)
{
	return arg;
}

static int tf_nthreads(void)
{
	char line[256];
	int n = -1;
	FILE *fp = fopen("/proc/self/status", "r");

	while (fp && fgets(line, sizeof(line), fp))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	if (fp)
		fclose(fp);
	return n;
}

/* Idle workers exit after a few seconds. Polled against a deadline: the exit is
 * on the pool's clock, so there is nothing to wait on but time. */
START_TEST(pool_idle_threads_exit)
{
	uint64_t deadline;
	pthread_t t;
	int base;

	/* The first pthread_create() of a process may also start a runtime thread
	 * that stays (ThreadSanitizer's background thread): start and join one
	 * first, so that it is in the base count. */
	ck_assert_int_eq(pthread_create(&t, NULL, tf_thread_noop, NULL), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	base = tf_nthreads();
	ck_assert_int_gt(base, 0);
	pthread_mutex_lock(&tp.lock);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(dc_pool_run(tf_job_block, NULL), 0);
	TF_WAIT_UNTIL(tp.running == 8);
	ck_assert_int_ge(tf_nthreads(), base + 8);
	tp.release = true;
	pthread_cond_broadcast(&tp.cond);
	TF_WAIT_UNTIL(tp.done == 8);
	pthread_mutex_unlock(&tp.lock);
	deadline = h_now_ms() + 15000;
	while (tf_nthreads() > base && h_now_ms() < deadline) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
	ck_assert_int_eq(tf_nthreads(), base);
	/* And the pool starts again afterwards. */
	pthread_mutex_lock(&tp.lock);
	ck_assert_int_eq(dc_pool_run(tf_job_record, (void *)7), 0);
	TF_WAIT_UNTIL(tp.norder == 1);
	ck_assert_int_eq(tp.order[0], 7);
	pthread_mutex_unlock(&tp.lock);
}
END_TEST

TCase *file_tc_pool(void)
{
	TCase *tp_case = tcase_create("pool");

	tcase_add_test(tp_case, pool_runs_jobs_concurrently);
	tcase_add_test(tp_case, pool_cap);
	tcase_add_test(tp_case, pool_fifo);
	tcase_add_test(tp_case, pool_idle_threads_exit);
	return tp_case;
}
