/* SPDX-License-Identifier: MIT */
/* The delay decorator and the core's timer service it waits on. Timing checks
 * assert lower bounds (a request cannot finish before its delay) and generous
 * upper bounds that only a serialising or sleeping implementation could miss. */
#include "conformance.h"
#include "harness.h"

#include <diskcore/plugin.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1024 * 1024)
#define MS 1000000ull
#define TD_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Open "PREFIX:file:TMPFILE" over a fresh 1 MiB file whose bytes are h_fill(seed
 * 1); *pathp gets the file. */
static dc_disk *td_open(const char *prefix, char **pathp)
{
	char *buf = h_alloc(MIB);
	char *path;
	dc_disk *d;

	h_fill(buf, MIB, 1);
	path = h_tmpfile_data(buf, MIB, 0600, ".img");
	free(buf);
	d = h_openf(0, "%s:file:%s", prefix, path);
	if (pathp)
		*pathp = path;
	else
		free(path);
	return d;
}

/* --- Tests ----------------------------------------------------------------- */

START_TEST(delay_metadata)
{
	char *path;
	dc_disk *d = td_open("delay:0", &path);
	dc_disk *f = h_openf(0, "file:%s", path);
	struct dc_info di, fi;

	dc_get_info(d, &di);
	dc_get_info(f, &fi);
	ck_assert_str_eq(di.disk_type, "delay");
	ck_assert_uint_eq(di.sector_count, fi.sector_count);
	ck_assert_uint_eq(di.sector_size, fi.sector_size);
	ck_assert_uint_eq(di.physical_sector_size, fi.physical_sector_size);
	ck_assert_uint_eq(di.optimal_unmap_sectors, fi.optimal_unmap_sectors);
	ck_assert_uint_eq(di.unmap_behavior, fi.unmap_behavior);
	ck_assert_uint_eq(di.flags, fi.flags);
	dc_close(f);
	dc_close(d);
	free(path);
}
END_TEST

START_TEST(delay_zero_forwards)
{
	dc_disk *d = td_open("delay:0", NULL);
	char *buf = h_alloc(8192);

	ck_assert_int_eq(dc_read(d, 0, buf, 8192), 0);
	ck_assert_int_eq(h_check(buf, 8192, 1), -1);
	h_fill(buf, 4096, 2);
	ck_assert_int_eq(dc_write(d, 100, buf, 4096, DC_IO_FUA), 0);
	memset(buf, 0, 4096);
	ck_assert_int_eq(dc_read(d, 100, buf, 4096), 0);
	ck_assert_int_eq(h_check(buf, 4096, 2), -1);
	ck_assert_int_eq(dc_read(d, 2048, buf, 512), DC_E_ILLEGAL_BLOCK);
	conformance_check_sector_range(d, "delay:0:file");
	dc_close(d);
	free(buf);
}
END_TEST

START_TEST(delay_waits_at_least_ms)
{
	dc_disk *d = td_open("delay:20", NULL);
	char *buf = h_alloc(4096);
	uint64_t t0;

	t0 = h_now_ns();
	ck_assert_int_eq(dc_read(d, 0, buf, 4096), 0);
	ck_assert_uint_ge(h_now_ns() - t0, 20 * MS);
	ck_assert_int_eq(h_check(buf, 4096, 1), -1);
	h_fill(buf, 4096, 3);
	t0 = h_now_ns();
	ck_assert_int_eq(dc_write(d, 8, buf, 4096, 0), 0);
	ck_assert_uint_ge(h_now_ns() - t0, 20 * MS);
	/* Errors come back through the delay too. */
	ck_assert_int_eq(dc_read(d, 4096, buf, 512), DC_E_ILLEGAL_BLOCK);
	dc_close(d);
	free(buf);
}
END_TEST

/* 32 reads submitted together on one queue wait concurrently: together they
 * take about one delay, where one thread sleeping for each in turn would take
 * 32. The delay is long enough that thread start-up under a sanitizer is noise. */
START_TEST(delay_concurrent_requests_overlap)
{
	enum { N = 32 };
	dc_disk *d = td_open("delay:100", NULL);
	struct h_count w = H_COUNT_INIT;
	struct iovec iov[N];
	char *bufs = h_alloc(N * 4096);
	dc_queue *q;
	uint64_t t0;

	ck_assert_int_eq(dc_queue_open(d, 0, &q), 0);
	t0 = h_now_ns();
	for (int i = 0; i < N; i++) {
		struct dc_io io = { .op = DC_OP_READ,
				    .sector = (uint64_t)i * 8,
				    .iovcnt = 1,
				    .cb = h_count_cb,
				    .user_data = &w };

		iov[i] = (struct iovec){ bufs + i * 4096, 4096 };
		io.iov = &iov[i];
		ck_assert_int_eq(dc_submit(q, &io), 0);
	}
	h_count_wait(&w, N, 30000);
	ck_assert_uint_eq(w.failed, 0);
	ck_assert_uint_ge(w.last_ns - t0, 100 * MS);
	ck_assert_msg(w.last_ns - t0 < N * 100 * MS / 2,
		      "32 x 100 ms delays took %llu ms: they did not overlap",
		      (unsigned long long)((w.last_ns - t0) / MS));
	ck_assert_int_eq(h_check(bufs, N * 4096, 1), -1);
	dc_queue_close(q);
	dc_close(d);
	free(bufs);
}
END_TEST

/* delay:0;p99=100: I/Os 100, 200, ... wait 100 ms; the rest do not wait. */
START_TEST(delay_p99_every_100th)
{
	dc_disk *d = td_open("delay:0;p99=100", NULL);
	char *buf = h_alloc(512);
	uint64_t t0, fast = 0;

	for (int i = 1; i <= 200; i++) {
		uint64_t dt;

		t0 = h_now_ns();
		ck_assert_int_eq(dc_read(d, (uint64_t)i, buf, 512), 0);
		dt = h_now_ns() - t0;
		if (i % 100 == 0)
			ck_assert_msg(dt >= 100 * MS,
				      "I/O %d took %llu us, expected >= 100 ms", i,
				      (unsigned long long)(dt / 1000));
		else
			fast += dt;
	}
	/* 198 undelayed reads; had each waited 100 ms this would be 19.8 s. */
	ck_assert_msg(fast < 2000 * MS, "198 undelayed reads took %llu ms",
		      (unsigned long long)(fast / MS));
	dc_close(d);
	free(buf);
}
END_TEST

static void td_expect_rejected(const char *prefix, const char *needle)
{
	char *path = h_tmpfile(MIB, NULL);

	h_open_fails(0, 0, needle, "%s:file:%s", prefix, path);
	free(path);
}

START_TEST(delay_bad_ms_rejected)
{
	td_expect_rejected("delay:abc", "abc");
	td_expect_rejected("delay:-5", "negative");
	td_expect_rejected("delay:5x", "5x");
	td_expect_rejected("delay:1.5", "1.5");
	td_expect_rejected("delay:99999999999999999999999", "milliseconds");
	td_expect_rejected("delay:3600001", "3600001");
}
END_TEST

START_TEST(delay_flush_unmap_pass_through)
{
	dc_disk *d = td_open("delay:30", NULL);
	char *buf = h_alloc(4096);

	ck_assert_int_eq(dc_flush(d), 0);
	ck_assert_int_eq(dc_unmap(d, 0, 8, 0), 0);
	ck_assert_int_eq(dc_read(d, 0, buf, 4096), 0);
	ck_assert_int_eq(h_check_zero(buf, 4096), -1);
	/* The child's range check, through the pass-through. */
	ck_assert_int_eq(dc_unmap(d, 2047, 2, 0), DC_E_ILLEGAL_BLOCK);
	dc_close(d);
	free(buf);
}
END_TEST

/* eject and PR commands pass through: the result is the child's (file: has
 * neither), not something the decorator made up. */
START_TEST(delay_eject_pr_are_the_childs)
{
	char *path;
	dc_disk *d = td_open("delay:1", &path);
	dc_disk *f = h_openf(0, "file:%s", path);
	struct dc_pr_caps dcaps = { 0 }, fcaps = { 0 };

	ck_assert_int_eq(dc_eject(d), dc_eject(f));
	ck_assert_int_eq(dc_eject(d), DC_E_UNSUPPORTED_EJECT);
	ck_assert_int_eq(dc_pr_caps(d, &dcaps), dc_pr_caps(f, &fcaps));
	ck_assert_int_eq(dc_pr_caps(d, &dcaps), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_reserve(d, 1, DC_PR_WRITE_EXCLUSIVE), DC_E_UNSUPPORTED);
	dc_close(f);
	dc_close(d);
	free(path);
}
END_TEST

START_TEST(delay_describe)
{
	dc_disk *d = td_open("delay:5;p99=50", NULL);
	struct h_desc t;

	h_describe(d, "delay", &t);
	ck_assert_pstr_eq(h_desc_get(&t, "delay_ms"), "5");
	ck_assert_pstr_eq(h_desc_get(&t, "p99_ms"), "50");
	dc_close(d);
}
END_TEST

/* --- The timer service ------------------------------------------------------ */

struct td_timer {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int fired[16];
	unsigned nfired;
	uint64_t at[16];
	pthread_t thread[16];
};

static struct td_timer tt = { .lock = PTHREAD_MUTEX_INITIALIZER,
			      .cond = PTHREAD_COND_INITIALIZER };

static void td_timer_cb(void *arg)
{
	pthread_mutex_lock(&tt.lock);
	tt.at[tt.nfired] = h_now_ns();
	tt.thread[tt.nfired] = pthread_self();
	tt.fired[tt.nfired++] = (int)(intptr_t)arg;
	pthread_cond_broadcast(&tt.cond);
	pthread_mutex_unlock(&tt.lock);
}

static void td_timer_wait(unsigned n)
{
	pthread_mutex_lock(&tt.lock);
	h_cond_wait_count(&tt.lock, &tt.cond, &tt.nfired, n, 30000);
	pthread_mutex_unlock(&tt.lock);
}

static void td_timer_reset(void)
{
	pthread_mutex_lock(&tt.lock);
	tt.nfired = 0;
	pthread_mutex_unlock(&tt.lock);
}

/* Deadlines fire in order, never early, all on one thread that is not the
 * caller's; 0 still defers. Each deadline is only known to lie between the
 * clock readings around its dc_timer_after() call, so order is checked only
 * between timers whose deadline brackets do not overlap. */
START_TEST(timer_order_and_thread)
{
	static const int ms[] = { 40, 10, 30, 0, 20, 30, 25, 5 };
	enum { N = TD_ARRAY_LEN(ms) };
	uint64_t lo[N], hi[N];
	int pos[N];

	td_timer_reset();
	pthread_mutex_lock(&tt.lock);
	for (int i = 0; i < N; i++) {
		lo[i] = h_now_ns() + (uint64_t)ms[i] * MS;
		ck_assert_int_eq(dc_timer_after((uint64_t)ms[i] * MS, td_timer_cb,
						(void *)(intptr_t)i),
				 0);
		hi[i] = h_now_ns() + (uint64_t)ms[i] * MS;
	}
	/* Holding tt.lock: a callback run inline would have deadlocked here. */
	ck_assert_uint_eq(tt.nfired, 0);
	pthread_mutex_unlock(&tt.lock);
	td_timer_wait(N);
	for (int i = 0; i < N; i++) {
		int t = tt.fired[i];

		pos[t] = i;
		ck_assert_uint_ge(tt.at[i], lo[t]);
		ck_assert(!pthread_equal(tt.thread[i], pthread_self()));
		ck_assert(pthread_equal(tt.thread[i], tt.thread[0]));
	}
	for (int a = 0; a < N; a++)
		for (int b = 0; b < N; b++)
			if (hi[a] < lo[b])
				ck_assert_msg(pos[a] < pos[b],
					      "timer %d (%d ms) fired after "
					      "timer %d (%d ms)",
					      a, ms[a], b, ms[b]);
	ck_assert_int_eq(dc_timer_after(0, NULL, NULL), -EINVAL);
}
END_TEST

/* A later, earlier deadline wakes the sleeping timer thread early. */
START_TEST(timer_earlier_deadline_preempts)
{
	uint64_t t0 = h_now_ns();

	td_timer_reset();
	ck_assert_int_eq(dc_timer_after(10000 * MS, td_timer_cb, (void *)1), 0);
	ck_assert_int_eq(dc_timer_after(5 * MS, td_timer_cb, (void *)2), 0);
	td_timer_wait(1);
	ck_assert_int_eq(tt.fired[0], 2);
	ck_assert_uint_lt(h_now_ns() - t0, 5000 * MS);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("delay");
	TCase *tc = tcase_create("delay");
	TCase *tt_case = tcase_create("timer");

	tcase_add_test(tc, delay_metadata);
	tcase_add_test(tc, delay_zero_forwards);
	tcase_add_test(tc, delay_waits_at_least_ms);
	tcase_add_test(tc, delay_concurrent_requests_overlap);
	tcase_add_test(tc, delay_p99_every_100th);
	tcase_add_test(tc, delay_bad_ms_rejected);
	tcase_add_test(tc, delay_flush_unmap_pass_through);
	tcase_add_test(tc, delay_eject_pr_are_the_childs);
	tcase_add_test(tc, delay_describe);
	suite_add_tcase(s, tc);
	tcase_add_test(tt_case, timer_order_and_thread);
	tcase_add_test(tt_case, timer_earlier_deadline_preempts);
	suite_add_tcase(s, tt_case);
	return h_run(s);
}
