/* SPDX-License-Identifier: MIT */
/* The fault: decorator: its rule grammar and messages, each kind of WHEN,
 * determinism with a seed, the counters describe() reports, hang= and delay=.
 * What the other decorators and layers do with the faults it injects is
 * tests/test-errpath.c. */
#include "harness.h"

#include <diskcore/plugin.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MS 1000000ull

/* One blocking request of op over len bytes of buf at sector (unmap: len / 512
 * sectors); returns the result and sets *detail. */
static int tf_exec(dc_disk *d, uint32_t op, uint64_t sector, void *buf, size_t len,
		   int *detail)
{
	struct iovec iov = { buf, len };
	struct dc_io io = { .op = op, .sector = sector };

	if (op == DC_OP_UNMAP) {
		io.count = len / 512;
	} else if (op == DC_OP_READ || op == DC_OP_WRITE) {
		io.iov = &iov;
		io.iovcnt = 1;
	}
	*detail = -1;
	return dc_execute(d, &io, detail);
}

/* A counter of the fault element's describe(), as a number. */
/* Which of n one-sector reads fail, as 0/1 in out[]; returns how many did. */
static unsigned tf_pattern(const char *spec, unsigned n, unsigned char *out)
{
	dc_disk *d = h_open(spec, 0);
	char buf[512];
	unsigned bad = 0;
	int detail;

	for (unsigned i = 0; i < n; i++) {
		int rc = tf_exec(d, DC_OP_READ, i % 2048, buf, sizeof(buf), &detail);

		ck_assert(rc == 0 || (rc == DC_E_IO && detail == EIO));
		out[i] = rc != 0;
		bad += out[i];
	}
	dc_close(d);
	return bad;
}

/* --- Grammar --------------------------------------------------------------- */

START_TEST(fault_parse_good)
{
	static const char *const good[] = {
		"fault:read=EIO@5%:mem:1M",
		"fault:read=EIO@0.25%,write=ENOSPC@after=10;seed=1:mem:1M",
		"fault:any=EILSEQ@100%+flush=ETIMEDOUT@0%:mem:1M",
		"fault:unmap=EROFS@sectors=0-9,write=ENOMEM@sectors=7-7:mem:1M",
		"fault:hang=write@after=3;hang-ms=10:mem:1M",
		"fault:delay=read/0@100%,delay=any/3600000@0.0000001%:mem:1M",
		"striped:[fault:read=EIO@1%+write=EIO@1%:mem:1M,mem:1M]",
	};
	struct h_desc t;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		dc_close(h_open(good[i], 0));
	dc_close(h_open("fault:read=EIO@100%:mem:1M", DC_OPEN_READ_ONLY));
	/* describe() gives each rule as written, with its counters. */
	dc_disk *d =
		h_open("fault:read=EIO@0.25%,write=ENOSPC@after=10;seed=42:mem:1M", 0);
	h_describe(d, "fault", &t);
	ck_assert_str_eq(h_desc_get(&t, "seed"), "42");
	ck_assert_str_eq(h_desc_get(&t, "rule0"), "read=EIO@0.25%");
	ck_assert_str_eq(h_desc_get(&t, "rule1"), "write=ENOSPC@after=10");
	ck_assert_str_eq(h_desc_get(&t, "rule1_seen"), "0");
	ck_assert_str_eq(h_desc_get(&t, "rule1_injected"), "0");
	ck_assert_str_eq(h_desc_get(&t, "held"), "0");
	ck_assert_ptr_null(h_desc_get(&t, "rule2"));
	dc_close(d);
}
END_TEST

START_TEST(fault_parse_bad)
{
	static const struct {
		const char *rules;
		const char *msg;
	} bad[] = {
		{ "reed=EIO@5%",
		  "fault: rule \"reed=EIO@5%\": unknown operation \"reed\": "
		  "expected read, write, flush, unmap or any" },
		{ "read=EFOO@5%",
		  "fault: rule \"read=EFOO@5%\": unknown errno \"EFOO\": accepted: EIO, "
		  "ENOSPC, EDQUOT, EFBIG, EROFS, EILSEQ, ENOMEM, ETIMEDOUT, ENXIO, ENODEV, "
		  "ENOLINK, ESTALE, ECONNRESET, EPIPE, EAGAIN, EBUSY, EACCES, EPERM, "
		  "EBADMSG, EOPNOTSUPP" },
		{ "read=eio@5%", "unknown errno \"eio\"" },
		{ "read=EIO",
		  "fault: rule \"read=EIO\": missing @WHEN (a rate such as 5%, "
		  "after=N or sectors=A-B)" },
		{ "read@5%",
		  "fault: rule \"read@5%\": expected OP=ERRNO@WHEN, hang=OP@WHEN "
		  "or delay=OP/MS@WHEN" },
		{ "read=EIO@150%",
		  "fault: rule \"read=EIO@150%\": rate \"150%\" is not a "
		  "percentage from 0% to 100% (at most 7 decimals)" },
		{ "read=EIO@100.5%", "rate \"100.5%\" is not a percentage" },
		{ "read=EIO@0.00000001%", "rate \"0.00000001%\" is not a percentage" },
		{ "read=EIO@-1%", "rate \"-1%\" is not a percentage" },
		{ "read=EIO@.5%", "rate \".5%\" is not a percentage" },
		{ "read=EIO@%", "rate \"%\" is not a percentage" },
		{ "read=EIO@after=x", "fault: rule \"read=EIO@after=x\": after= needs a "
				      "request count, not \"x\"" },
		{ "read=EIO@after=", "after= needs a request count, not \"\"" },
		{ "read=EIO@sectors=9-2",
		  "fault: rule \"read=EIO@sectors=9-2\": sectors= needs FIRST-LAST sector "
		  "numbers with FIRST <= LAST, not \"9-2\"" },
		{ "read=EIO@sectors=9", "not \"9\"" },
		{ "read=EIO@sectors=1-", "not \"1-\"" },
		{ "flush=EIO@sectors=1-2",
		  "fault: rule \"flush=EIO@sectors=1-2\": a flush has no sectors: sectors= "
		  "applies to read, write, unmap and any" },
		{ "read=EIO@soon",
		  "fault: rule \"read=EIO@soon\": unknown WHEN \"soon\": "
		  "expected a rate such as 5%, after=N or sectors=A-B" },
		{ "", "fault: no rules: expected fault:RULE[,RULE...][;seed=N]:SPEC with "
		      "RULE OP=ERRNO@WHEN, hang=OP@WHEN or delay=OP/MS@WHEN" },
		{ "read=EIO@5%,", "fault: empty rule in \"read=EIO@5%,\": rules are "
				  "separated by one ',' or '+'" },
		{ "read=EIO@5%,,write=EIO@5%", "empty rule in" },
		{ "delay=read@5%",
		  "fault: rule \"delay=read@5%\": expected delay=OP/MS@WHEN "
		  "(MS in whole milliseconds)" },
		{ "delay=read/x@5%",
		  "fault: rule \"delay=read/x@5%\": delay \"x\" is not "
		  "whole milliseconds from 0 to 3600000" },
		{ "delay=read/3600001@5%",
		  "delay \"3600001\" is not whole milliseconds" },
		{ "delay=reed/5@5%", "unknown operation \"reed\"" },
		{ "hang=reed@5%",
		  "fault: rule \"hang=reed@5%\": unknown operation \"reed\"" },
		{ "hang=read@5%;hang-ms=0", "fault: hang-ms=0: expected 1 to 3600000 "
					    "milliseconds" },
		{ "read=EIO@1%,read=EIO@1%,read=EIO@1%,read=EIO@1%,read=EIO@1%,"
		  "read=EIO@1%,read=EIO@1%,read=EIO@1%,read=EIO@1%,read=EIO@1%,"
		  "read=EIO@1%,read=EIO@1%,read=EIO@1%",
		  "fault: more than 12 rules" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		h_open_fails(0, -EINVAL, bad[i].msg, "fault:%s:mem:1M", bad[i].rules);
	/* The grammar's own errors: ':' ends the field, ';' starts options. */
	h_open_fails(0, -EINVAL, "unknown option 'bogus'",
		     "fault:read=EIO@5%%;bogus:mem:1M");
	h_open_fails(0, -EINVAL, "option 'seed': invalid number 'x'",
		     "fault:read=EIO@5%%;seed=x:mem:1M");
	h_open_fails(0, -EINVAL, "missing inner spec", "fault:read=EIO@5%%");
	/* ',' inside a list member splits the member, hence '+'. */
	h_open_fails(0, 0, "missing inner spec",
		     "striped:[fault:read=EIO@1%%,write=EIO@1%%:mem:1M,mem:1M]");
}
END_TEST

/* --- WHEN ------------------------------------------------------------------ */

START_TEST(fault_rate_edges)
{
	unsigned char out[400];

	ck_assert_uint_eq(tf_pattern("fault:read=EIO@0%:mem:1M", 400, out), 0);
	ck_assert_uint_eq(tf_pattern("fault:read=EIO@100%:mem:1M", 400, out), 400);
	/* 25% of 400: a binomial with sd 8.7; +-50 is over 5 sd. */
	unsigned n = tf_pattern("fault:read=EIO@25%;seed=3:mem:1M", 400, out);
	ck_assert_uint_ge(n, 50);
	ck_assert_uint_le(n, 150);
}
END_TEST

START_TEST(fault_after)
{
	dc_disk *d = h_open("fault:read=EIO@after=5:mem:1M", 0);
	char *buf = h_alloc(4096);
	int detail;

	h_fill(buf, 4096, 9);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(tf_exec(d, DC_OP_READ, 0, buf, 512, &detail), 0);
	/* Writes are not reads: they neither count nor fail. */
	ck_assert_int_eq(tf_exec(d, DC_OP_WRITE, 8, buf, 4096, &detail), 0);
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(tf_exec(d, DC_OP_READ, i, buf, 512, &detail), DC_E_IO);
		ck_assert_int_eq(detail, EIO);
	}
	ck_assert_int_eq(tf_exec(d, DC_OP_FLUSH, 0, NULL, 0, &detail), 0);
	ck_assert_uint_eq(h_desc_num(d, "fault", "rule0_seen"), 25);
	ck_assert_uint_eq(h_desc_num(d, "fault", "rule0_injected"), 20);
	dc_close(d);
	free(buf);
}
END_TEST

START_TEST(fault_sectors)
{
	dc_disk *d = h_open("fault:any=ENOSPC@sectors=100-199:mem:1M", 0);
	char *buf = h_alloc(8192);
	int detail;

	h_fill(buf, 8192, 4);
	ck_assert_int_eq(tf_exec(d, DC_OP_WRITE, 84, buf, 8192, &detail), 0); /* 84..99 */
	ck_assert_int_eq(tf_exec(d, DC_OP_WRITE, 85, buf, 8192, &detail), DC_E_IO);
	ck_assert_int_eq(detail, ENOSPC);
	ck_assert_int_eq(tf_exec(d, DC_OP_READ, 199, buf, 512, &detail), DC_E_IO);
	ck_assert_int_eq(detail, ENOSPC);
	ck_assert_int_eq(tf_exec(d, DC_OP_READ, 200, buf, 8192, &detail), 0);
	ck_assert_int_eq(tf_exec(d, DC_OP_UNMAP, 150, NULL, 512, &detail), DC_E_IO);
	ck_assert_int_eq(tf_exec(d, DC_OP_UNMAP, 300, NULL, 512, &detail), 0);
	/* A flush touches no sector. */
	ck_assert_int_eq(tf_exec(d, DC_OP_FLUSH, 0, NULL, 0, &detail), 0);
	/* The write before the range went through. */
	ck_assert_int_eq(tf_exec(d, DC_OP_READ, 84, buf, 8192, &detail), 0);
	ck_assert_int_eq(h_check(buf, 8192, 4), -1);
	ck_assert_uint_eq(h_desc_num(d, "fault", "rule0_seen"), 8);
	ck_assert_uint_eq(h_desc_num(d, "fault", "rule0_injected"), 3);
	dc_close(d);
	free(buf);
}
END_TEST

/* --- Results --------------------------------------------------------------- */

/* Each errno reaches the consumer as its class, with the errno as detail. */
START_TEST(fault_errno_classes)
{
	static const struct {
		const char *err;
		int result, detail;
	} want[] = {
		{ "EIO", DC_E_IO, EIO },
		{ "ENOSPC", DC_E_IO, ENOSPC },
		{ "EILSEQ", DC_E_IO, EILSEQ },
		{ "ETIMEDOUT", DC_E_IO, ETIMEDOUT },
		{ "ENOMEM", DC_E_IO, ENOMEM },
		{ "EROFS", DC_E_READ_ONLY, EROFS },
		{ "EOPNOTSUPP", DC_E_UNSUPPORTED, EOPNOTSUPP },
		{ "EBADMSG", DC_E_MEDIUM, DC_MEDIUM_UNRECOVERED_READ },
	};
	char buf[512];
	int detail;

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		dc_disk *d = h_openf(0, "fault:read=%s@100%%:mem:1M", want[i].err);

		ck_assert_int_eq(tf_exec(d, DC_OP_READ, 0, buf, 512, &detail),
				 want[i].result);
		ck_assert_int_eq(detail, want[i].detail);
		dc_close(d);
	}
	dc_disk *d = h_open("fault:write=EBADMSG@100%,flush=EIO@100%:mem:1M", 0);
	ck_assert_int_eq(tf_exec(d, DC_OP_WRITE, 0, buf, 512, &detail), DC_E_MEDIUM);
	ck_assert_int_eq(detail, DC_MEDIUM_WRITE_FAULT);
	ck_assert_int_eq(tf_exec(d, DC_OP_FLUSH, 0, NULL, 0, &detail), DC_E_IO);
	ck_assert_int_eq(detail, EIO);
	dc_close(d);
}
END_TEST

/* The first rule that fires decides; every rule counts every request of its op. */
START_TEST(fault_first_rule_wins)
{
	dc_disk *d = h_open("fault:read=EIO@after=2,any=ENOSPC@100%:mem:1M", 0);
	char buf[512];
	int detail;

	for (int i = 0; i < 10; i++) {
		ck_assert_int_eq(tf_exec(d, DC_OP_READ, 0, buf, 512, &detail), DC_E_IO);
		ck_assert_int_eq(detail, i < 2 ? ENOSPC : EIO);
	}
	ck_assert_int_eq(tf_exec(d, DC_OP_WRITE, 0, buf, 512, &detail), DC_E_IO);
	ck_assert_int_eq(detail, ENOSPC);
	ck_assert_uint_eq(h_desc_num(d, "fault", "rule0_seen"), 10);
	ck_assert_uint_eq(h_desc_num(d, "fault", "rule0_injected"), 8);
	ck_assert_uint_eq(h_desc_num(d, "fault", "rule1_seen"), 11);
	ck_assert_uint_eq(h_desc_num(d, "fault", "rule1_injected"), 3);
	dc_close(d);
}
END_TEST

/* Eject and persistent reservations pass through whatever the rules say. */
START_TEST(fault_passthrough)
{
	dc_disk *d = h_open("fault:any=EIO@100%:prwrap:mem:1M", 0);
	struct dc_pr_caps caps = { 0 };
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert_str_eq(info.disk_type, "fault");
	ck_assert(info.flags & DC_INFO_PR);
	ck_assert_int_eq(dc_pr_caps(d, &caps), 0);
	ck_assert_uint_ne(caps.types, 0);
	ck_assert_int_eq(dc_pr_register(d, NULL, 0x1234, -1), 0);
	ck_assert_int_eq(dc_flush(d), DC_E_IO);
	dc_close(d);
}
END_TEST

/* --- Determinism ----------------------------------------------------------- */

START_TEST(fault_seed_determinism)
{
	enum { N = 600 };
	unsigned char a[N], b[N], c[N];
	unsigned na, nb, nc;

	na = tf_pattern("fault:read=EIO@10%;seed=12345:mem:1M", N, a);
	nb = tf_pattern("fault:read=EIO@10%;seed=12345:mem:1M", N, b);
	nc = tf_pattern("fault:read=EIO@10%;seed=54321:mem:1M", N, c);
	ck_assert_uint_eq(na, nb);
	ck_assert(memcmp(a, b, N) == 0);
	ck_assert_uint_gt(na, 0);
	ck_assert(memcmp(a, c, N) != 0 || na != nc);
	/* Each rule position draws its own sequence, whatever the rules before
	 * it look at. */
	nb = tf_pattern("fault:write=EIO@50%,read=EIO@10%;seed=12345:mem:1M", N, b);
	nc = tf_pattern("fault:read=EIO@0%,read=EIO@10%;seed=12345:mem:1M", N, c);
	ck_assert_uint_eq(nb, nc);
	ck_assert(memcmp(b, c, N) == 0);
	ck_assert(memcmp(a, b, N) != 0);
}
END_TEST

struct tf_thread {
	dc_disk *d;
	unsigned n, failed;
};

static void *tf_reader(void *arg)
{
	struct tf_thread *t = arg;
	char buf[512];
	int detail;

	for (unsigned i = 0; i < t->n; i++)
		t->failed += tf_exec(t->d, DC_OP_READ, i, buf, sizeof(buf), &detail) != 0;
	return NULL;
}

/* Several threads (each its own implicit queue) share one sequence: the
 * counters add up and the number of faults is the single-queue number. */
START_TEST(fault_counters_many_queues)
{
	enum { T = 4, N = 250 };
	const char *spec = "fault:read=EIO@10%;seed=7:mem:1M";
	unsigned char one[T * N];
	struct tf_thread t[T];
	pthread_t tid[T];
	unsigned want = tf_pattern(spec, T * N, one), got = 0;
	dc_disk *d = h_open(spec, 0);

	for (int i = 0; i < T; i++) {
		t[i] = (struct tf_thread){ .d = d, .n = N };
		ck_assert_int_eq(pthread_create(&tid[i], NULL, tf_reader, &t[i]), 0);
	}
	for (int i = 0; i < T; i++) {
		pthread_join(tid[i], NULL);
		got += t[i].failed;
	}
	ck_assert_uint_eq(got, want);
	ck_assert_uint_eq(h_desc_num(d, "fault", "rule0_seen"), T * N);
	ck_assert_uint_eq(h_desc_num(d, "fault", "rule0_injected"), want);
	dc_close(d);
}
END_TEST

/* --- hang= and delay= ------------------------------------------------------ */

struct tf_done {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned calls;
	int result, detail;
};

static void tf_done_cb(const struct dc_completion *c)
{
	struct tf_done *t = c->user_data;

	pthread_mutex_lock(&t->lock);
	t->calls++;
	t->result = c->result;
	t->detail = c->detail;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

static void tf_submit(dc_queue *q, uint32_t op, uint64_t sector, struct iovec *iov,
		      struct tf_done *t)
{
	struct dc_io io = { .op = op,
			    .sector = sector,
			    .iov = iov,
			    .iovcnt = 1,
			    .cb = tf_done_cb,
			    .user_data = t };

	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	t->calls = 0;
	ck_assert_int_eq(dc_submit(q, &io), 0);
}

static unsigned tf_calls(struct tf_done *t)
{
	unsigned n;

	pthread_mutex_lock(&t->lock);
	n = t->calls;
	pthread_mutex_unlock(&t->lock);
	return n;
}

/* A hung request stays in flight while others complete, and completes once,
 * with ECANCELED, when its queue closes; nothing leaks (the ASan run). */
START_TEST(fault_hang_until_queue_close)
{
	dc_disk *d = h_open("fault:hang=read@sectors=8-8:mem:1M", 0);
	char *buf = h_alloc(3 * 4096);
	struct iovec iov[3] = { { buf, 4096 },
				{ buf + 4096, 4096 },
				{ buf + 8192, 512 } };
	struct tf_done hung, other, w;
	dc_queue *q;

	ck_assert_int_eq(dc_queue_open(d, 0, &q), 0);
	tf_submit(q, DC_OP_READ, 8, &iov[2], &hung);
	tf_submit(q, DC_OP_READ, 0, &iov[0], &other);
	h_fill(buf + 4096, 4096, 5);
	tf_submit(q, DC_OP_WRITE, 16, &iov[1], &w);
	pthread_mutex_lock(&other.lock);
	h_cond_wait_count(&other.lock, &other.cond, &other.calls, 1, 10000);
	pthread_mutex_unlock(&other.lock);
	pthread_mutex_lock(&w.lock);
	h_cond_wait_count(&w.lock, &w.cond, &w.calls, 1, 10000);
	pthread_mutex_unlock(&w.lock);
	ck_assert_int_eq(other.result, 0);
	ck_assert_int_eq(w.result, 0);
	ck_assert_uint_eq(tf_calls(&hung), 0);
	ck_assert_uint_eq(dc_queue_inflight(q), 1);
	ck_assert_uint_eq(h_desc_num(d, "fault", "held"), 1);
	dc_queue_close(q);
	ck_assert_uint_eq(tf_calls(&hung), 1);
	ck_assert_int_eq(hung.result, DC_E_IO);
	ck_assert_int_eq(hung.detail, ECANCELED);
	ck_assert_uint_eq(h_desc_num(d, "fault", "held"), 0);
	ck_assert_uint_eq(h_desc_num(d, "fault", "rule0_injected"), 1);
	/* The disk still works, and kept the write. */
	ck_assert_int_eq(dc_read(d, 16, buf, 4096), 0);
	ck_assert_int_eq(h_check(buf, 4096, 5), -1);
	dc_close(d);
	free(buf);
}
END_TEST

/* With hang-ms a hung request fails with ETIMEDOUT on its own, on a polled
 * queue too, and no sooner than hang-ms. */
START_TEST(fault_hang_ms_polled)
{
	dc_disk *d = h_open("fault:hang=read@after=1;hang-ms=40:mem:1M", 0);
	char *buf = h_alloc(4096);
	struct iovec iov = { buf, 4096 };
	struct dc_io io = { .op = DC_OP_READ, .iov = &iov, .iovcnt = 1 };
	struct dc_completion c;
	dc_queue *q;
	uint64_t t0;

	ck_assert_int_eq(dc_queue_open(d, DC_QUEUE_POLL, &q), 0);
	ck_assert_int_eq(dc_submit(q, &io), 0);
	ck_assert_int_eq(h_reap(q, &c, 1, 10000), 1);
	ck_assert_int_eq(c.result, 0);
	t0 = h_now_ns();
	ck_assert_int_eq(dc_submit(q, &io), 0);
	ck_assert_int_eq(h_reap(q, &c, 1, 10000), 1);
	ck_assert_uint_ge(h_now_ns() - t0, 40 * MS);
	ck_assert_int_eq(c.result, DC_E_IO);
	ck_assert_int_eq(c.detail, ETIMEDOUT);
	ck_assert_uint_eq(dc_queue_inflight(q), 0);
	ck_assert_uint_eq(h_desc_num(d, "fault", "held"), 0);
	dc_queue_close(q);
	dc_close(d);
	free(buf);
}
END_TEST

/* delay= holds the child's result, data or error, for MS on the core timer. */
START_TEST(fault_delay)
{
	dc_disk *d = h_open("fault:delay=read/30@sectors=0-7:mem:1M", 0);
	dc_disk *e = h_open("fault:delay=any/30@100%:fault:write=ENOSPC@100%:mem:1M", 0);
	char *buf = h_alloc(4096);
	uint64_t t0;
	int detail;

	h_fill(buf, 4096, 6);
	ck_assert_int_eq(dc_write(d, 0, buf, 4096, 0), 0);
	memset(buf, 0, 4096);
	t0 = h_now_ns();
	ck_assert_int_eq(dc_read(d, 0, buf, 4096), 0);
	ck_assert_uint_ge(h_now_ns() - t0, 30 * MS);
	ck_assert_int_eq(h_check(buf, 4096, 6), -1);
	ck_assert_uint_eq(h_desc_num(d, "fault", "rule0_injected"), 1);
	t0 = h_now_ns();
	ck_assert_int_eq(tf_exec(e, DC_OP_WRITE, 0, buf, 4096, &detail), DC_E_IO);
	ck_assert_uint_ge(h_now_ns() - t0, 30 * MS);
	ck_assert_int_eq(detail, ENOSPC);
	dc_close(e);
	dc_close(d);
	free(buf);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fault");
	TCase *tc;

	if (!h_have_plugin("fault"))
		h_skip("fault.so was not built");
	tc = tcase_create("grammar");
	tcase_add_test(tc, fault_parse_good);
	tcase_add_test(tc, fault_parse_bad);
	suite_add_tcase(s, tc);
	tc = tcase_create("when");
	tcase_add_test(tc, fault_rate_edges);
	tcase_add_test(tc, fault_after);
	tcase_add_test(tc, fault_sectors);
	suite_add_tcase(s, tc);
	tc = tcase_create("results");
	tcase_add_test(tc, fault_errno_classes);
	tcase_add_test(tc, fault_first_rule_wins);
	tcase_add_test(tc, fault_passthrough);
	suite_add_tcase(s, tc);
	tc = tcase_create("determinism");
	tcase_add_test(tc, fault_seed_determinism);
	tcase_add_test(tc, fault_counters_many_queues);
	suite_add_tcase(s, tc);
	tc = tcase_create("hang-delay");
	tcase_add_test(tc, fault_hang_until_queue_close);
	tcase_add_test(tc, fault_hang_ms_polled);
	tcase_add_test(tc, fault_delay);
	suite_add_tcase(s, tc);
	return h_run(s);
}
