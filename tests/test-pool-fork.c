/* SPDX-License-Identifier: MIT */
/* The core's worker pool and timer thread across fork() without exec. A program
 * of its own: ThreadSanitizer cannot follow a child that starts threads after a
 * multi-threaded fork, and test-file, where the other pool cases live, runs
 * under it (docs/reliability.md, "ThreadSanitizer"). */
#include "harness.h"

#include <diskcore/plugin.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static unsigned ran;

static void job_count(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lock);
	ran++;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
}

/* In the child: a pool job and a timer both run within 10 s. Exit codes, not
 * assertions: the child is not the process Check waits for. SIGALRM ends a
 * child that deadlocks on a lock a parent's thread held at the fork. */
static void pool_fork_child(void)
{
	struct timespec ts;
	int rc = 0;

	alarm(20);
	pthread_mutex_lock(&lock);
	ran = 0;
	if (dc_pool_run(job_count, NULL) || dc_timer_after(1000 * 1000, job_count, NULL))
		_exit(2);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	while (ran < 2 && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&cond, &lock, &ts);
	_exit(ran == 2 ? 0 : 1);
}

/* A forked child has none of the parent's pool or timer threads; the pool must
 * notice and start fresh ones rather than hand work to threads that are gone. */
START_TEST(pool_after_fork)
{
	int status;
	pid_t pid;

	pthread_mutex_lock(&lock);
	ck_assert_int_eq(dc_pool_run(job_count, NULL), 0);
	ck_assert_int_eq(dc_timer_after(0, job_count, NULL), 0);
	h_cond_wait_count(&lock, &cond, &ran, 2, 10000);
	pthread_mutex_unlock(&lock);
	/* The parent's workers are idle now, parked on their condvars. */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		pool_fork_child();
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status),
		      "the child died of signal %d (SIGALRM: a deadlock)",
		      WTERMSIG(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

int main(void)
{
	const char *san = getenv("DISKCORE_SANITIZED");
	Suite *s;
	TCase *tc;

	if (san && strstr(san, "thread"))
		h_skip("ThreadSanitizer stops a child that starts threads after a "
		       "multi-threaded fork: this test runs in the other builds");
	s = suite_create("pool-fork");
	tc = tcase_create("pool-fork");
	tcase_add_test(tc, pool_after_fork);
	suite_add_tcase(s, tc);
	return h_run(s);
}
