/* SPDX-License-Identifier: MIT */
/* The asynchronous API: queues, callbacks, DC_QUEUE_POLL and the eventfd,
 * argument checking in dc_submit(), bounded inline recursion, inflight counts. */
#include "conformance.h"
#include "harness.h"

#include <diskcore/plugin.h>

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Disks that complete inline (mem:), through a decorator, and on other threads. */
static const char *const queue_specs[] = {
	"mem:1M",
	"delay:0:mem:1M",
	"file:@TMP@",
	"memdiff:file:@TMP@",
};
#define QUEUE_NSPECS ((int)(sizeof(queue_specs) / sizeof(queue_specs[0])))

/* Counts callbacks per request and wakes the test when all have run. */
struct queue_count {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int total;
	atomic_int per_req[256];
	int results[256];
};

static void queue_count_init(struct queue_count *c)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
}

struct queue_tag {
	struct queue_count *count;
	int idx;
};

static void queue_count_cb(const struct dc_completion *comp)
{
	struct queue_tag *t = comp->user_data;
	struct queue_count *c = t->count;

	atomic_fetch_add(&c->per_req[t->idx], 1);
	c->results[t->idx] = comp->result;
	pthread_mutex_lock(&c->lock);
	c->total++;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

/* Waits (bounded by Check's timeout) until n callbacks have run. */
static void queue_count_wait(struct queue_count *c, int n)
{
	pthread_mutex_lock(&c->lock);
	while (c->total < n)
		pthread_cond_wait(&c->cond, &c->lock);
	pthread_mutex_unlock(&c->lock);
}

static dc_queue *queue_open_ok(dc_disk *d, uint32_t flags)
{
	dc_queue *q = NULL;
	int r = dc_queue_open(d, flags, &q);

	ck_assert_msg(r == 0 && q, "dc_queue_open = %d: %s", r, dc_last_error());
	return q;
}

/* --- Callbacks run exactly once -------------------------------------------- */

#define QUEUE_N 64

START_TEST(queue_callbacks_once)
{
	dc_disk *d = conformance_open(queue_specs[_i], NULL);
	dc_queue *q = queue_open_ok(d, 0);
	struct queue_count *c = malloc(sizeof(*c));
	struct queue_tag tags[QUEUE_N];
	struct iovec iov[QUEUE_N];
	uint8_t *bufs = h_alloc(QUEUE_N * 512);

	queue_count_init(c);
	for (int i = 0; i < QUEUE_N; i++) {
		/* A mix of ops, including ones that fail: each still completes once. */
		static const uint32_t ops[] = { DC_OP_WRITE, DC_OP_READ, DC_OP_FLUSH,
						DC_OP_UNMAP, DC_OP_READ };
		struct dc_io io = {
			.op = ops[i % 5],
			.sector = (uint64_t)i,
			.count = 1,
			.cb = queue_count_cb,
			.user_data = &tags[i],
		};

		if (i % 7 == 6 && io.op != DC_OP_FLUSH)
			io.sector = UINT64_MAX - 1; /* illegal block */
		tags[i] = (struct queue_tag){ c, i };
		iov[i] = (struct iovec){ bufs + i * 512, 512 };
		if (io.op == DC_OP_READ || io.op == DC_OP_WRITE) {
			io.iov = &iov[i];
			io.iovcnt = 1;
		}
		ck_assert_int_eq(dc_submit(q, &io), 0);
	}
	queue_count_wait(c, QUEUE_N);
	for (int i = 0; i < QUEUE_N; i++) {
		ck_assert_msg(atomic_load(&c->per_req[i]) == 1,
			      "%s: request %d: %d callbacks", queue_specs[_i], i,
			      atomic_load(&c->per_req[i]));
		if (i % 7 == 6 && i % 5 != 2)
			ck_assert_int_eq(c->results[i], DC_E_ILLEGAL_BLOCK);
		else
			ck_assert_msg(c->results[i] == 0, "%s: request %d = %d (%s)",
				      queue_specs[_i], i, c->results[i],
				      dc_strerror(c->results[i]));
	}
	ck_assert_uint_eq(dc_queue_inflight(q), 0);
	dc_queue_close(q);
	/* Nothing arrives after the queue is closed. */
	ck_assert_int_eq(c->total, QUEUE_N);
	dc_close(d);
	free(bufs);
	free(c);
}
END_TEST

/* --- DC_QUEUE_POLL ----------------------------------------------------------- */

static int queue_wait_readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, timeout_ms);
}

START_TEST(queue_poll_eventfd)
{
	dc_disk *d = conformance_open(queue_specs[_i], NULL);
	dc_queue *q = queue_open_ok(d, DC_QUEUE_POLL);
	int fd = dc_queue_fd(q);
	struct dc_completion comp[8];
	int seen[QUEUE_N] = { 0 };
	struct iovec iov[QUEUE_N];
	uint8_t *bufs = h_alloc(QUEUE_N * 512);
	int done = 0, empty = 0;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(dc_queue_reap(q, comp, 8), 0);
	ck_assert_int_eq(queue_wait_readable(fd, 0), 0);
	for (int i = 0; i < QUEUE_N; i++) {
		h_fill(bufs + i * 512, 512, (uint64_t)i);
		iov[i] = (struct iovec){ bufs + i * 512, 512 };
		struct dc_io io = {
			.op = DC_OP_WRITE,
			.sector = (uint64_t)i * 3,
			.iov = &iov[i],
			.iovcnt = 1,
			.user_data = &seen[i], /* no callback: reaped */
		};
		ck_assert_int_eq(dc_submit(q, &io), 0);
	}
	while (done < QUEUE_N) {
		int n;

		ck_assert_msg(queue_wait_readable(fd, 30000) == 1,
			      "%s: eventfd not readable with %d of %d completions "
			      "outstanding",
			      queue_specs[_i], QUEUE_N - done, QUEUE_N);
		/* Reap a few at a time: the fd must stay readable while any are left.
		 * A completion drained before its signal lands leaves one wakeup
		 * with nothing to reap (diskcore.h, dc_queue_fd): at most one per
		 * completion. */
		n = dc_queue_reap(q, comp, 3);
		empty += n == 0;
		ck_assert_msg(empty <= QUEUE_N,
			      "%s: eventfd readable %d times with nothing to reap",
			      queue_specs[_i], empty);
		for (int k = 0; k < n; k++) {
			int idx = (int)((int *)comp[k].user_data - seen);

			ck_assert(idx >= 0 && idx < QUEUE_N);
			ck_assert_int_eq(comp[k].result, 0);
			seen[idx]++;
		}
		done += n;
	}
	for (int i = 0; i < QUEUE_N; i++)
		ck_assert_int_eq(seen[i], 1);
	ck_assert_int_eq(dc_queue_reap(q, comp, 8), 0);
	ck_assert_int_eq(queue_wait_readable(fd, 0), 0);
	ck_assert_uint_eq(dc_queue_inflight(q), 0);
	for (int i = 0; i < QUEUE_N; i++) {
		uint8_t got[512];

		ck_assert_int_eq(dc_read(d, (uint64_t)i * 3, got, 512), 0);
		ck_assert_int_lt(h_check(got, 512, (uint64_t)i), 0);
	}
	dc_queue_close(q);
	dc_close(d);
	free(bufs);
}
END_TEST

/* Unreaped completions of a poll queue are still the consumer's to take: they
 * count as in flight until reaped (so "inflight == 0" means safe to close). */
START_TEST(queue_inflight)
{
	dc_disk *d = conformance_open("mem:1M", NULL);
	dc_queue *q = queue_open_ok(d, DC_QUEUE_POLL);
	struct dc_completion comp[16];
	int got = 0;

	ck_assert_uint_eq(dc_queue_inflight(q), 0);
	for (int i = 0; i < 10; i++) {
		struct dc_io io = { .op = DC_OP_FLUSH };

		ck_assert_int_eq(dc_submit(q, &io), 0);
	}
	ck_assert_uint_eq(dc_queue_inflight(q), 10);
	while (got < 10) {
		ck_assert_int_eq(queue_wait_readable(dc_queue_fd(q), 30000), 1);
		got += dc_queue_reap(q, comp, 4);
		ck_assert_uint_eq(dc_queue_inflight(q), (unsigned)(10 - got));
	}
	dc_queue_close(q);
	dc_close(d);
}
END_TEST

/* --- dc_submit refuses garbage ---------------------------------------------- */

START_TEST(queue_refuses_garbage)
{
	dc_disk *d = conformance_open("mem:1M", NULL);
	dc_queue *q = queue_open_ok(d, 0);
	dc_queue *pq = queue_open_ok(d, DC_QUEUE_POLL);
	struct queue_count *c = malloc(sizeof(*c));
	struct queue_tag tag;
	uint8_t *buf = h_alloc(4096);
	struct iovec good = { buf, 512 }, odd = { buf, 100 }, odd2 = { buf, 513 };
	struct iovec nullbase = { NULL, 512 };
	struct dc_completion comp[4];
	const struct {
		struct dc_io io;
		const char *why;
	} bad[] = {
		{ { .op = DC_OP__COUNT, .iov = &good, .iovcnt = 1 }, "op past the end" },
		{ { .op = 0xffffffffu, .iov = &good, .iovcnt = 1 }, "op 0xffffffff" },
		{ { .op = DC_OP_READ, .iov = NULL, .iovcnt = 1 }, "NULL iov, iovcnt 1" },
		{ { .op = DC_OP_WRITE, .iov = NULL, .iovcnt = 3 }, "write NULL iov" },
		{ { .op = DC_OP_READ, .iov = &good, .iovcnt = -1 }, "iovcnt -1" },
		{ { .op = DC_OP_READ, .iov = &odd, .iovcnt = 1 }, "100-byte read" },
		{ { .op = DC_OP_WRITE, .iov = &odd2, .iovcnt = 1 }, "513-byte write" },
		{ { .op = DC_OP_READ, .iov = &nullbase, .iovcnt = 1 }, "NULL iov_base" },
		{ { .op = DC_OP_WRITE,
		    .flags = DC_IO_NO_OVERWRITE,
		    .iov = &good,
		    .iovcnt = 1 },
		  "layer-only flag" },
		{ { .op = DC_OP_UNMAP, .flags = DC_IO_NEXT_IS_ZERO, .count = 1 },
		  "layer-only unmap flag" },
		{ { .op = DC_OP_READ, .flags = 1u << 30, .iov = &good, .iovcnt = 1 },
		  "unknown flag" },
		{ { .op = DC_OP_PR_REGISTER, .pr = NULL }, "PR op without arguments" },
		{ { .op = DC_OP_PR_REPORT, .pr = NULL }, "PR report without arguments" },
	};

	queue_count_init(c);
	tag = (struct queue_tag){ c, 0 };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct dc_io io = bad[i].io;
		int r;

		io.cb = queue_count_cb;
		io.user_data = &tag;
		r = dc_submit(q, &io);
		ck_assert_msg(r == -EINVAL, "%s: dc_submit = %d, expected -EINVAL",
			      bad[i].why, r);
		io.cb = NULL;
		r = dc_submit(pq, &io);
		ck_assert_msg(r == -EINVAL,
			      "%s (poll queue): dc_submit = %d, expected "
			      "-EINVAL",
			      bad[i].why, r);
		r = dc_execute(d, &bad[i].io, NULL);
		ck_assert_msg(r == -EINVAL, "%s: dc_execute = %d, expected -EINVAL",
			      bad[i].why, r);
	}
	/* A callback queue needs a callback. */
	struct dc_io nocb = { .op = DC_OP_FLUSH };
	ck_assert_int_eq(dc_submit(q, &nocb), -EINVAL);
	/* Refused means no completion and nothing in flight. */
	ck_assert_int_eq(c->total, 0);
	ck_assert_uint_eq(dc_queue_inflight(q), 0);
	ck_assert_uint_eq(dc_queue_inflight(pq), 0);
	ck_assert_int_eq(dc_queue_reap(pq, comp, 4), 0);
	ck_assert_int_eq(queue_wait_readable(dc_queue_fd(pq), 0), 0);
	/* The queues still work afterwards. */
	struct dc_io ok = { .op = DC_OP_READ,
			    .iov = &good,
			    .iovcnt = 1,
			    .cb = queue_count_cb,
			    .user_data = &tag };
	ck_assert_int_eq(dc_submit(q, &ok), 0);
	queue_count_wait(c, 1);
	ck_assert_int_eq(c->results[0], 0);
	dc_queue_close(pq);
	dc_queue_close(q);
	dc_close(d);
	free(buf);
	free(c);
}
END_TEST

START_TEST(queue_zero_iov)
{
	dc_disk *d = conformance_open("mem:1M", NULL);

	/* No buffers at all is a zero-length transfer, not garbage. */
	ck_assert_int_eq(dc_readv(d, 0, NULL, 0), 0);
	ck_assert_int_eq(dc_writev(d, 0, NULL, 0, 0), 0);
	dc_close(d);
}
END_TEST

/* --- Resubmitting from the callback ---------------------------------------- */

#define QUEUE_RESUBMITS 200000

struct queue_chain {
	dc_queue *q;
	struct dc_io io;
	struct iovec iov;
	long remaining;
	long completions;
	int failures;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool finished;
};

static void queue_chain_cb(const struct dc_completion *comp)
{
	struct queue_chain *ch = comp->user_data;

	ch->completions++;
	if (comp->result)
		ch->failures++;
	if (--ch->remaining > 0) {
		ch->io.sector = (uint64_t)(ch->remaining % 2048);
		if (dc_submit(ch->q, &ch->io) == 0)
			return;
		ch->failures++;
	}
	pthread_mutex_lock(&ch->lock);
	ch->finished = true;
	pthread_cond_broadcast(&ch->cond);
	pthread_mutex_unlock(&ch->lock);
}

static void *queue_chain_thread(void *arg)
{
	struct queue_chain *ch = arg;

	if (dc_submit(ch->q, &ch->io) < 0)
		ch->failures++;
	return NULL;
}

static const char *const chain_specs[] = { "mem:1M", "delay:0:mem:1M", "memdiff:mem:1M" };

START_TEST(queue_resubmit_from_callback)
{
	dc_disk *d = conformance_open(chain_specs[_i], NULL);
	struct queue_chain *ch = calloc(1, sizeof(*ch));
	uint8_t buf[512] = { 0 };
	pthread_attr_t attr;
	pthread_t t;

	ch->q = queue_open_ok(d, 0);
	ch->iov = (struct iovec){ buf, sizeof(buf) };
	ch->io = (struct dc_io){ .op = DC_OP_READ,
				 .iov = &ch->iov,
				 .iovcnt = 1,
				 .cb = queue_chain_cb,
				 .user_data = ch };
	ch->remaining = QUEUE_RESUBMITS;
	pthread_mutex_init(&ch->lock, NULL);
	pthread_cond_init(&ch->cond, NULL);
	/* A small stack: 200000 nested completions would need far more. */
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 1024 * 1024);
	ck_assert_int_eq(pthread_create(&t, &attr, queue_chain_thread, ch), 0);
	pthread_join(t, NULL);
	pthread_mutex_lock(&ch->lock);
	while (!ch->finished)
		pthread_cond_wait(&ch->cond, &ch->lock);
	pthread_mutex_unlock(&ch->lock);
	ck_assert_int_eq(ch->completions, QUEUE_RESUBMITS);
	ck_assert_int_eq(ch->failures, 0);
	ck_assert_uint_eq(dc_queue_inflight(ch->q), 0);
	dc_queue_close(ch->q);
	dc_close(d);
	pthread_attr_destroy(&attr);
	free(ch);
}
END_TEST

/* --- Queue life cycle ------------------------------------------------------- */

START_TEST(queue_many_queues)
{
	dc_disk *d = conformance_open("memdiff:file:@TMP@", NULL);
	dc_queue *qs[64];
	uint8_t buf[512];

	/* Opening and closing many queues, interleaved with I/O, is cheap and
	 * leaves the disk usable. */
	for (int i = 0; i < 64; i++)
		qs[i] = queue_open_ok(d, i % 2 ? DC_QUEUE_POLL : 0);
	for (int i = 0; i < 64; i += 2)
		dc_queue_close(qs[i]);
	ck_assert_int_eq(dc_read(d, 0, buf, sizeof(buf)), 0);
	for (int i = 1; i < 64; i += 2)
		dc_queue_close(qs[i]);
	ck_assert_int_eq(dc_queue_open(d, 0x80, &qs[0]), -EINVAL);
	dc_close(d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("queue");
	TCase *tc = tcase_create("queue");

	tcase_add_loop_test(tc, queue_callbacks_once, 0, QUEUE_NSPECS);
	tcase_add_loop_test(tc, queue_poll_eventfd, 0, QUEUE_NSPECS);
	tcase_add_test(tc, queue_inflight);
	tcase_add_test(tc, queue_refuses_garbage);
	tcase_add_test(tc, queue_zero_iov);
	tcase_add_loop_test(tc, queue_resubmit_from_callback, 0,
			    (int)(sizeof(chain_specs) / sizeof(chain_specs[0])));
	tcase_add_test(tc, queue_many_queues);
	suite_add_tcase(s, tc);
	return h_run(s);
}
