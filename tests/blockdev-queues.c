/* SPDX-License-Identifier: MIT */
/* The blockdev plugin with many requests at once: two queues on two threads,
 * one queue deeper than a ring, and dc_queue_wait()/dc_queue_wait_fd() reaping
 * on the submitting thread, through chains too. Part of test-blockdev. */
#include "blockdev-cases.h"
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct tb_job {
	dc_disk *disk;
	uint64_t first; /* first sector of this job's region */
	unsigned nreq;	/* 4 KiB requests, all in flight at once */
	uint64_t seed;
	int rc;
	char msg[200];
};

/* Write nreq blocks with every request in flight at once (more than a ring
 * holds, so some wait on the parked list), then read them all back the same
 * way. Runs on its own queue. */
static void *tb_job_run(void *arg)
{
	struct tb_job *j = arg;
	struct h_count k = H_COUNT_INIT;
	struct iovec *iov = malloc(sizeof(*iov) * j->nreq);
	char *bufs = h_alloc((size_t)j->nreq * PAGE);
	dc_queue *q;

	j->rc = dc_queue_open(j->disk, 0, &q);
	if (j->rc) {
		snprintf(j->msg, sizeof(j->msg), "dc_queue_open: %s", dc_last_error());
		return NULL;
	}
	for (int pass = 0; pass < 2 && !j->rc; pass++) {
		k.done = 0;
		for (unsigned i = 0; i < j->nreq; i++) {
			struct dc_io io = {
				.op = pass ? DC_OP_READ : DC_OP_WRITE,
				.sector = j->first + (uint64_t)i * 8,
				.iov = &iov[i],
				.iovcnt = 1,
				.cb = h_count_cb,
				.user_data = &k,
			};

			iov[i] = (struct iovec){ bufs + (size_t)i * PAGE, PAGE };
			if (pass)
				memset(iov[i].iov_base, 0, PAGE);
			else
				h_fill(iov[i].iov_base, PAGE, j->seed + i);
			j->rc = dc_submit(q, &io);
			if (j->rc) {
				snprintf(j->msg, sizeof(j->msg), "dc_submit %u: %d", i,
					 j->rc);
				break;
			}
		}
		pthread_mutex_lock(&k.lock);
		while (!j->rc && k.done < j->nreq)
			pthread_cond_wait(&k.cond, &k.lock);
		pthread_mutex_unlock(&k.lock);
		if (!j->rc && k.failed) {
			j->rc = k.first_err;
			snprintf(j->msg, sizeof(j->msg), "%u requests failed, first: %s",
				 k.failed, dc_strerror(k.first_err));
		}
	}
	for (unsigned i = 0; i < j->nreq && !j->rc; i++) {
		if (h_check(bufs + (size_t)i * PAGE, PAGE, j->seed + i) >= 0) {
			j->rc = -EIO;
			snprintf(j->msg, sizeof(j->msg), "block %u read back wrong", i);
		}
	}
	if (dc_queue_inflight(q) != 0 && !j->rc) {
		j->rc = -EBUSY;
		snprintf(j->msg, sizeof(j->msg), "%u still in flight",
			 dc_queue_inflight(q));
	}
	dc_queue_close(q);
	free(iov);
	free(bufs);
	return NULL;
}

void tb_threads(const char *spec, unsigned nthreads, unsigned nreq)
{
	dc_disk *d = h_open(spec, 0);
	struct tb_job *jobs = calloc(nthreads, sizeof(*jobs));
	pthread_t *tids = calloc(nthreads, sizeof(*tids));

	ck_assert(jobs && tids);
	ck_assert_uint_ge(dc_sector_count(d), (uint64_t)nthreads * nreq * 8);
	for (unsigned t = 0; t < nthreads; t++) {
		jobs[t] = (struct tb_job){ .disk = d,
					   .first = (uint64_t)t * nreq * 8,
					   .nreq = nreq,
					   .seed = 1000 * (t + 1) };
		ck_assert_int_eq(pthread_create(&tids[t], NULL, tb_job_run, &jobs[t]), 0);
	}
	for (unsigned t = 0; t < nthreads; t++) {
		pthread_join(tids[t], NULL);
		ck_assert_msg(jobs[t].rc == 0, "%s thread %u: %s", spec, t, jobs[t].msg);
	}
	dc_close(d);
	free(jobs);
	free(tids);
}

START_TEST(file_two_queues)
{
	char *path = h_tmpfile(8 * MIB, NULL);
	char *spec = h_fmt("blockdev:%s;direct", path);

	tb_threads(spec, 2, 200);
	free(spec);
	free(path);
}
END_TEST

/* 600 requests in flight on one queue: more than a ring's completion queue,
 * so requests park and go out from the completion path. */
START_TEST(file_deep_queue)
{
	char *path = h_tmpfile(8 * MIB, NULL);
	char *spec = h_fmt("blockdev:%s", path);

	tb_threads(spec, 1, 600);
	free(spec);
	free(path);
}
END_TEST

/* --- dc_queue_wait(): reaping on the submitting thread ------------------------- */

#define TW_BLOCKS 256 /* 4 KiB blocks of the test file, each h_fill(block) */

struct tw_req {
	struct tw_state *st;
	unsigned id;
	unsigned block;
	uint32_t op;
	struct iovec iov;
};

struct tw_state {
	dc_queue *q;
	pthread_t owner;
	unsigned *hits; /* completions seen per request id */
	unsigned ncb, nreaped, foreign_cb, bad;
	int nested_rc;
	char msg[200];
};

/* Counted last, with release: a callback on a reaper thread must be done
 * with the buffer before the owner sees the hit and reuses it. */
static void tw_finish(struct tw_state *st, struct tw_req *r, int result)
{
	if (result != 0 && !st->bad++)
		snprintf(st->msg, sizeof(st->msg), "request %u: %s", r->id,
			 dc_strerror(result));
	if (result == 0 && r->op == DC_OP_READ &&
	    h_check(r->iov.iov_base, PAGE, r->block) >= 0 && !st->bad++)
		snprintf(st->msg, sizeof(st->msg), "block %u read back wrong", r->block);
	__atomic_fetch_add(&st->hits[r->id], 1, __ATOMIC_RELEASE);
}

static void tw_cb(const struct dc_completion *c)
{
	struct tw_req *r = c->user_data;
	struct tw_state *st = r->st;

	__atomic_fetch_add(&st->ncb, 1, __ATOMIC_RELAXED); /* reapers race */
	if (!pthread_equal(pthread_self(), st->owner))
		__atomic_fetch_add(&st->foreign_cb, 1, __ATOMIC_RELAXED);
	/* Not allowed from inside the call that delivers this. */
	if (st->nested_rc == 1)
		st->nested_rc = dc_queue_wait(st->q, 0);
	tw_finish(st, r, c->result);
}

/* Push `total` requests through a DC_QUEUE_POLL queue driven by
 * dc_queue_wait(), at most qd at a time: reads of known data, a flush now
 * and then, every third with a callback and the rest reaped. Every request
 * must complete exactly once, callbacks on this thread. */
static void tw_run(const char *spec, unsigned total, unsigned qd, unsigned pollers)
{
	dc_disk *d = h_open(spec, 0);
	struct tw_state st = { .owner = pthread_self(), .nested_rc = 1 };
	struct tw_req *reqs = calloc(total, sizeof(*reqs));
	char *bufs = h_alloc((size_t)qd * PAGE);
	struct dc_completion comp[16];
	unsigned next = 0, done = 0, inflight = 0, *free_slots;
	uint64_t progress_ns = h_now_ns();
	unsigned nfree = qd, ncb_expect = 0;
	int rc;

	st.hits = calloc(total, sizeof(*st.hits));
	free_slots = calloc(qd, sizeof(*free_slots));
	ck_assert(reqs && st.hits && free_slots);
	for (unsigned b = 0; b < TW_BLOCKS; b++) {
		h_fill(bufs, PAGE, b);
		ck_assert_int_eq(dc_write(d, (uint64_t)b * 8, bufs, PAGE, 0), 0);
	}
	for (unsigned i = 0; i < qd; i++)
		free_slots[i] = i;
	ck_assert_int_eq(dc_queue_open(d, DC_QUEUE_POLL, &st.q), 0);
	ck_assert_uint_eq(dc_queue_pollers(st.q), pollers);
	/* Driven from the first request on: nothing completes elsewhere. */
	ck_assert_int_eq(dc_queue_wait(st.q, 0), 0);
	while (done < total) {
		while (next < total && nfree) {
			struct tw_req *r = &reqs[next];
			unsigned slot = free_slots[--nfree];
			struct dc_io io = { .iovcnt = 1, .user_data = r };

			r->st = &st;
			r->id = next;
			r->block = (next * 37) % TW_BLOCKS;
			r->op = next % 50 == 7 ? DC_OP_FLUSH : DC_OP_READ;
			r->iov = (struct iovec){ bufs + (size_t)slot * PAGE, PAGE };
			memset(r->iov.iov_base, 0xa5, PAGE);
			io.op = r->op;
			io.sector = (uint64_t)r->block * 8;
			io.iov = &r->iov;
			io.iovcnt = r->op == DC_OP_READ;
			if (next % 3 == 0) {
				io.cb = tw_cb;
				ncb_expect++;
			}
			ck_assert_int_eq(dc_submit(st.q, &io), 0);
			next++;
			inflight++;
		}
		rc = dc_queue_wait(st.q, 2000);
		ck_assert_msg(rc >= 0, "%s: dc_queue_wait: %d", spec, rc);
		/* Requests with callbacks are done once their callback ran. */
		while ((rc = dc_queue_reap(st.q, comp, 16)) > 0) {
			for (int i = 0; i < rc; i++) {
				struct tw_req *r = comp[i].user_data;

				st.nreaped++;
				tw_finish(&st, r, comp[i].result);
			}
		}
		ck_assert_int_eq(rc, 0);
		/* Count what finished (hits) and recycle its buffer slot. */
		{
			unsigned now = 0;

			for (unsigned i = 0; i < next; i++)
				now += __atomic_load_n(&st.hits[i], __ATOMIC_ACQUIRE) > 0;
			ck_assert_msg(now - done <= inflight,
				      "%s: more completions than "
				      "requests",
				      spec);
			/* By the clock: a wait may end early, when a callback
			 * elsewhere has begun but not yet counted its hit. */
			if (now != done)
				progress_ns = h_now_ns();
			ck_assert_msg(h_now_ns() - progress_ns < 20000000000ull,
				      "%s: no progress in 20 s (%u of %u done)", spec,
				      done, total);
			for (unsigned i = 0; i < next && now > done; i++) {
				if (st.hits[i] == 1 && reqs[i].st) {
					free_slots[nfree++] =
						(unsigned)(((char *)reqs[i].iov.iov_base -
							    bufs) /
							   PAGE);
					reqs[i].st = NULL; /* slot given back */
					inflight--;
					done++;
				}
			}
		}
	}
	ck_assert_msg(!st.bad, "%s: %s", spec, st.msg);
	for (unsigned i = 0; i < total; i++)
		ck_assert_msg(st.hits[i] == 1, "%s: request %u completed %u times", spec,
			      i, st.hits[i]);
	ck_assert_uint_eq(st.ncb, ncb_expect);
	ck_assert_uint_eq(st.nreaped, total - ncb_expect);
	/* Without a poller, blockdev's own reaper threads run the callbacks. */
	if (pollers || !strstr(spec, "blockdev"))
		ck_assert_uint_eq(st.foreign_cb, 0);
	/* The first callback ran inside dc_queue_wait() where there is a poller
	 * (elsewhere, inline in dc_submit(), where waiting is allowed). */
	if (pollers)
		ck_assert_int_eq(st.nested_rc, -EINVAL);
	ck_assert_uint_eq(dc_queue_inflight(st.q), 0);
	/* Nothing is delivered twice later. */
	ck_assert_int_eq(dc_queue_wait(st.q, 0), 0);
	ck_assert_int_eq(dc_queue_wait(st.q, 10), 0);
	ck_assert_int_eq(dc_queue_reap(st.q, comp, 16), 0);
	dc_queue_close(st.q);
	dc_close(d);
	free(free_slots);
	free(st.hits);
	free(bufs);
	free(reqs);
}

START_TEST(file_queue_wait)
{
	char *path = h_tmpfile(TW_BLOCKS * PAGE, NULL);
	char *spec = h_fmt("blockdev:%s", path);

	/* Deeper than a ring: requests park and go out from the poll. */
	tw_run(spec, 3000, 300, 1);
	tw_run(spec, 200, 1, 1);
	free(spec);
	free(path);
}
END_TEST

/* dc_queue_wait_fd(): one wait for the ring and another fd. A readable fd
 * ends the wait with no completion; a completion ends it with the fd quiet;
 * a queue already driven on its eventfd (the ring armed on it) wakes for the
 * fd too. Each wait is bounded: a missed wake fails by the clock, not a hang. */
static int wf_wait(dc_queue *q, int fd, uint64_t *ms)
{
	uint64_t t0 = h_now_ns();
	int rc = dc_queue_wait_fd(q, fd, 10000);

	*ms = (h_now_ns() - t0) / 1000000;
	return rc;
}

START_TEST(file_queue_wait_fd)
{
	char *path = h_tmpfile(TW_BLOCKS * PAGE, NULL);
	char *spec = h_fmt("blockdev:%s", path);
	dc_disk *d = h_open(spec, 0);
	char *buf = h_alloc(PAGE), byte = 'x';
	struct iovec iov = { buf, PAGE };
	struct dc_io io = { .op = DC_OP_READ, .iov = &iov, .iovcnt = 1 };
	struct dc_completion c;
	uint64_t ms;
	dc_queue *q;
	int p[2];

	ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
	ck_assert_int_eq(dc_queue_open(d, DC_QUEUE_POLL, &q), 0);
	ck_assert_uint_eq(dc_queue_pollers(q), 1);
	/* Driven first: the ring keeps a wait armed on the queue's eventfd. */
	ck_assert_int_eq(dc_queue_wait(q, 0), 0);
	ck_assert_int_eq(write(p[1], &byte, 1), 1);
	ck_assert_int_eq(wf_wait(q, p[0], &ms), 0);
	ck_assert_msg(ms < 5000, "a readable fd took %llu ms to end the wait",
		      (unsigned long long)ms);
	ck_assert_int_eq(read(p[0], &byte, 1), 1);
	/* The fd is quiet: a read ends the wait by completing. */
	ck_assert_int_eq(dc_submit(q, &io), 0);
	while (dc_queue_reap(q, &c, 1) == 0) {
		ck_assert_int_ge(wf_wait(q, p[0], &ms), 0);
		ck_assert_msg(ms < 5000, "a completion took %llu ms to end the wait",
			      (unsigned long long)ms);
	}
	ck_assert_int_eq(c.result, 0);
	/* The fd again, now that it is registered; then plain waits ignore it. */
	ck_assert_int_eq(write(p[1], &byte, 1), 1);
	ck_assert_int_eq(wf_wait(q, p[0], &ms), 0);
	ck_assert_uint_lt(ms, 5000);
	ck_assert_int_eq(dc_queue_wait(q, 0), 0);
	ck_assert_int_eq(dc_queue_wait_fd(q, -1, 0), 0);
	dc_queue_close(q);
	dc_close(d);
	close(p[0]);
	close(p[1]);
	free(buf);
	free(spec);
	free(path);
}
END_TEST

/* A decorator that submits to blockdev from its timer thread while the
 * consumer's thread sleeps in the ring; and a chain with no poller. */
START_TEST(file_queue_wait_chain)
{
	char *path = h_tmpfile(TW_BLOCKS * PAGE, NULL);
	char *spec = h_fmt("delay:1:blockdev:%s", path);
	char *mem = h_fmt("mem:%u", TW_BLOCKS * PAGE);
	char *path2 = h_tmpfile(TW_BLOCKS * PAGE, NULL);
	char *stripe = h_fmt("striped:[blockdev:%s,blockdev:%s]", path, path2);
	dc_disk *d = h_open(mem, 0);
	dc_queue *q;

	tw_run(spec, 400, 16, 1);
	tw_run(mem, 400, 16, 0);
	/* Two rings cannot both be waited in by one thread: no poller, and
	 * their reapers must still deliver (they once went silent). */
	tw_run(stripe, 400, 16, 0);
	/* dc_queue_fd() and a driven queue exclude each other, either way round:
	 * a driven ring never signals the eventfd. */
	{
		dc_disk *b = h_open(spec, 0);
		dc_queue *q1, *q2;

		ck_assert_int_eq(dc_queue_open(b, DC_QUEUE_POLL, &q1), 0);
		ck_assert_int_ge(dc_queue_fd(q1), 0);
		ck_assert_int_eq(dc_queue_wait(q1, 0), -EBUSY);
		ck_assert_int_eq(dc_queue_open(b, DC_QUEUE_POLL, &q2), 0);
		ck_assert_int_eq(dc_queue_wait(q2, 0), 0);
		ck_assert_int_eq(dc_queue_fd(q2), -EBUSY);
		dc_queue_close(q2);
		dc_queue_close(q1);
		dc_close(b);
	}
	/* Only DC_QUEUE_POLL queues are driven this way. */
	ck_assert_int_eq(dc_queue_open(d, 0, &q), 0);
	ck_assert_int_eq(dc_queue_wait(q, 0), -EINVAL);
	dc_queue_close(q);
	dc_close(d);
	free(stripe);
	free(path2);
	free(mem);
	free(spec);
	free(path);
}

void blockdev_add_queues(TCase *tc, bool direct)
{
	if (direct)
		tcase_add_test(tc, file_two_queues);
	tcase_add_test(tc, file_deep_queue);
	tcase_add_test(tc, file_queue_wait);
	tcase_add_test(tc, file_queue_wait_fd);
	tcase_add_test(tc, file_queue_wait_chain);
}
