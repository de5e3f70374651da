/* SPDX-License-Identifier: MIT */
/* Error paths: every decorator and layer over fault: (issue 18, item 4).
 *
 * For each chain, fault: fails the reads and writes that touch sectors 64-127
 * of the consumer's disk with ENOSPC. Three threads at once, each on its own
 * queue (callbacks, eventfd + dc_queue_reap, dc_queue_wait), write their own
 * region and read the faulty one: every request must complete exactly once,
 * the faulted ones with DC_E_IO and detail ENOSPC, the others with their data.
 * Then the disk must go on working: writes above the fault land (layers) or
 * fail the same way (decorators), and a failed read must not leave anything
 * behind that a later read returns. Last, hang= through the chain: with
 * hang-ms the request fails with ETIMEDOUT once; without, closing its queue
 * completes it with ECANCELED once. Every wait has a deadline; leaks are the
 * ASan run's to find.
 *
 * vhd: and vhdx: are not here: they open image files, not inner specs, so no
 * fault: can sit below them. */
#include "harness.h"

#include <diskcore/plugin.h>

#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KIB 1024
#define MIB (1024 * 1024)
#define TE_BAD_FIRST 64 /* inside striped's first chunk: member 0 sees 64-127 */
#define TE_BAD_LAST 127
#define TE_IO 4096 /* every request: 8 sectors */
#define TE_THREADS 3
#define TE_WRITES 8
#define TE_SLOTS 32
#define TE_DEADLINE_MS 20000

enum te_chain_id {
	TE_FAULT,
	TE_DELAY,
	TE_CRYPT,
	TE_DELAY_CRYPT,
	TE_LUKS,
	TE_PRWRAP,
	TE_STRIPED,
	TE_MEMDIFF,
	TE_SQLDIFF,
	TE_AUTOCACHE,
};

static const struct te_chain {
	enum te_chain_id id;
	const char *name;
	const char *plugin; /* besides fault, ram and the chain's own */
	bool layer;	    /* writes stay above fault: */
} te_chains[] = {
	{ TE_FAULT, "fault", NULL, false },
	{ TE_DELAY, "delay", "delay", false },
	{ TE_CRYPT, "crypt", "crypt", false },
	{ TE_DELAY_CRYPT, "delay-crypt", "crypt", false },
	{ TE_LUKS, "luks", "luks", false },
	{ TE_PRWRAP, "prwrap", "prwrap", false },
	{ TE_STRIPED, "striped", "striped", false },
	{ TE_MEMDIFF, "memdiff", NULL, true },
	{ TE_SQLDIFF, "sqldiff", "sqldiff", true },
	{ TE_AUTOCACHE, "autocache", "autocache", true },
};
#define TE_NCHAINS (sizeof(te_chains) / sizeof(te_chains[0]))

static char *te_key;	    /* crypt: 64 bytes */
static char *te_luks_pass;  /* luks: the key file */
static char *te_luks_image; /* luks: a template volume, 1 MiB header + 4 MiB */

/* Where the consumer's sector 0 is in fault:'s sectors. */
static uint64_t te_offset(const struct te_chain *c)
{
	return c->id == TE_LUKS ? MIB / 512 : 0; /* te_luks_format()'s payload */
}

/* A fresh disk of chain c over "fault:FIELD" (rules and options). */
static char *te_spec(const struct te_chain *c, const char *field)
{
	char *path = NULL, *spec = NULL;

	switch (c->id) {
	case TE_FAULT:
		return h_fmt("fault:%s:mem:4M", field);
	case TE_DELAY:
		return h_fmt("delay:1:fault:%s:mem:4M", field);
	case TE_CRYPT:
		return h_fmt("crypt:xts-aes-256:%s:fault:%s:mem:4M", te_key, field);
	case TE_DELAY_CRYPT:
		return h_fmt("delay:0;p99=2:crypt:xts-aes-256:%s:fault:%s:mem:4M", te_key,
			     field);
	case TE_LUKS:
		path = h_tmppath(".img");
		ck_assert_int_eq(h_sh("cp %s %s", te_luks_image, path), 0);
		spec = h_fmt("luks;keyfile=%s:fault:%s:file:%s", te_luks_pass, field,
			     path);
		break;
	case TE_PRWRAP:
		return h_fmt("prwrap:fault:%s:mem:4M", field);
	case TE_STRIPED:
		return h_fmt("striped:[fault:%s:mem:2M,mem:2M]", field);
	case TE_MEMDIFF:
		return h_fmt("memdiff:fault:%s:mem:4M", field);
	case TE_SQLDIFF:
		path = h_tmppath(".dbhd");
		spec = h_fmt("sqldiff:%s;create:fault:%s:mem:4M", path, field);
		break;
	case TE_AUTOCACHE:
		return h_fmt("memdiff:autocache:errpath-%d:fault:%s:mem:4M",
			     (int)getpid(), field);
	}
	free(path);
	return spec;
}

/* The fault: field: each rule of `what` ("read=ENOSPC", ...) on the
 * consumer's sectors TE_BAD_*, joined with '+' (the field may sit in a
 * striped list), then opts. */
static char *te_rules(const struct te_chain *c, const char *const *what, size_t n,
		      const char *opts)
{
	uint64_t off = te_offset(c);
	char *field = h_fmt("%s", ""), *next;

	for (size_t i = 0; i < n; i++) {
		next = h_fmt("%s%s%s@sectors=%llu-%llu", field, i ? "+" : "", what[i],
			     (unsigned long long)(off + TE_BAD_FIRST),
			     (unsigned long long)(off + TE_BAD_LAST));
		free(field);
		field = next;
	}
	next = h_fmt("%s%s", field, opts);
	free(field);
	return next;
}

/* --- One queue, one thread ------------------------------------------------- */

enum te_mode { TE_CALLBACK, TE_POLL, TE_WAIT };
static const char *const te_modes[] = { "callback", "eventfd", "dc_queue_wait" };

struct te_worker;

struct te_slot {
	struct te_worker *w;
	struct iovec iov;
	uint32_t op;
	uint64_t sector;
	bool bad;      /* touches the faulty sectors */
	uint64_t seed; /* writes and their read-back: h_fill(seed) */
	unsigned calls;
	int result, detail;
};

struct te_worker {
	dc_disk *d;
	enum te_mode mode;
	unsigned idx;
	dc_queue *q;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned done, faults;
	char *bufs;
	struct te_slot slots[TE_SLOTS];
	char err[512];
};

static void __attribute__((format(printf, 2, 3)))
te_fail(struct te_worker *w, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (w->err[0])
		return;
	n = snprintf(w->err, sizeof(w->err), "%s queue: ", te_modes[w->mode]);
	va_start(ap, fmt);
	vsnprintf(w->err + n, sizeof(w->err) - n, fmt, ap);
	va_end(ap);
}

static void te_record(struct te_slot *s, int result, int detail)
{
	struct te_worker *w = s->w;

	pthread_mutex_lock(&w->lock);
	s->calls++;
	s->result = result;
	s->detail = detail;
	w->done++;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static void te_cb(const struct dc_completion *c)
{
	te_record(c->user_data, c->result, c->detail);
}

static void te_reap(struct te_worker *w)
{
	struct dc_completion comps[TE_SLOTS];
	int n = dc_queue_reap(w->q, comps, TE_SLOTS);

	for (int i = 0; i < n; i++)
		te_record(comps[i].user_data, comps[i].result, comps[i].detail);
}

static unsigned te_done(struct te_worker *w)
{
	unsigned n;

	pthread_mutex_lock(&w->lock);
	n = w->done;
	pthread_mutex_unlock(&w->lock);
	return n;
}

/* Wait until `want` completions have been recorded, in w's mode. */
static bool te_wait(struct te_worker *w, unsigned want)
{
	uint64_t deadline = h_now_ms() + TE_DEADLINE_MS;

	while (te_done(w) < want) {
		uint64_t now = h_now_ms();
		int left = now < deadline ? (int)(deadline - now) : 0;

		if (!left) {
			te_fail(w, "%u of %u completions within %d ms", te_done(w), want,
				TE_DEADLINE_MS);
			return false;
		}
		if (w->mode == TE_CALLBACK) {
			struct timespec ts;

			pthread_mutex_lock(&w->lock);
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			if (w->done < want)
				pthread_cond_timedwait(&w->cond, &w->lock, &ts);
			pthread_mutex_unlock(&w->lock);
		} else if (w->mode == TE_POLL) {
			struct pollfd pfd = { .fd = dc_queue_fd(w->q), .events = POLLIN };

			te_reap(w);
			if (te_done(w) < want)
				poll(&pfd, 1, left);
		} else {
			int rc = dc_queue_wait(w->q, left);

			if (rc < 0) {
				te_fail(w, "dc_queue_wait: %d", rc);
				return false;
			}
			te_reap(w);
		}
	}
	return true;
}

static void te_submit(struct te_worker *w, unsigned i, uint32_t op, uint64_t sector,
		      bool bad, uint64_t seed)
{
	struct te_slot *s = &w->slots[i];
	struct dc_io io = { .op = op,
			    .sector = sector,
			    .iov = &s->iov,
			    .iovcnt = 1,
			    .cb = w->mode == TE_CALLBACK ? te_cb : NULL,
			    .user_data = s };
	int rc;

	*s = (struct te_slot){
		.w = w, .op = op, .sector = sector, .bad = bad, .seed = seed
	};
	s->iov = (struct iovec){ w->bufs + (size_t)i * TE_IO, TE_IO };
	if (op == DC_OP_WRITE)
		h_fill(s->iov.iov_base, TE_IO, seed);
	else
		memset(s->iov.iov_base, 0xa5, TE_IO);
	rc = dc_submit(w->q, &io);
	if (rc < 0) {
		te_fail(w, "dc_submit(op %u, sector %llu) = %d", op,
			(unsigned long long)sector, rc);
		te_record(s, rc, 0); /* counted, so the wait still ends */
	}
}

/* Slots [from, to) each completed once, as expected. */
static void te_check(struct te_worker *w, unsigned from, unsigned to)
{
	for (unsigned i = from; i < to; i++) {
		struct te_slot *s = &w->slots[i];
		long at;

		if (s->calls != 1) {
			te_fail(w, "op %u at sector %llu completed %u times", s->op,
				(unsigned long long)s->sector, s->calls);
			return;
		}
		if (s->bad) {
			if (s->result != DC_E_IO || s->detail != ENOSPC)
				te_fail(w,
					"op %u at sector %llu: result %d detail %d, expected "
					"DC_E_IO (%d) detail ENOSPC (%d)",
					s->op, (unsigned long long)s->sector, s->result,
					s->detail, DC_E_IO, ENOSPC);
			w->faults++;
			continue;
		}
		if (s->result != 0)
			te_fail(w, "op %u at sector %llu failed: %d detail %d", s->op,
				(unsigned long long)s->sector, s->result, s->detail);
		else if (s->op == DC_OP_READ && s->seed &&
			 (at = h_check(s->iov.iov_base, TE_IO, s->seed)) >= 0)
			te_fail(w, "read at sector %llu differs at byte %ld",
				(unsigned long long)s->sector, at);
	}
}

/* The thread's own region: TE_WRITES writes of TE_IO bytes. */
static uint64_t te_region(const struct te_worker *w)
{
	return 1024 + (uint64_t)w->idx * 256;
}

static void *te_worker_run(void *arg)
{
	struct te_worker *w = arg;
	uint64_t base = te_region(w);
	unsigned n = 0;

	if (dc_queue_open(w->d, w->mode == TE_CALLBACK ? 0 : DC_QUEUE_POLL, &w->q) < 0) {
		te_fail(w, "dc_queue_open: %s", dc_last_error());
		return NULL;
	}
	if (w->mode == TE_WAIT)
		dc_queue_wait(w->q, 0); /* drive it from the first request */
	/* Writes of its region, interleaved with reads of the faulty sectors. */
	for (unsigned j = 0; j < TE_WRITES; j++) {
		te_submit(w, n++, DC_OP_WRITE, base + j * 8, false,
			  (uint64_t)w->idx << 8 | (j + 1));
		te_submit(w, n++, DC_OP_READ, TE_BAD_FIRST + j * 8, true, 0);
	}
	if (te_wait(w, n))
		te_check(w, 0, n);
	/* After the faults: the data comes back, untouched regions read. */
	for (unsigned j = 0; j < TE_WRITES; j++)
		te_submit(w, n++, DC_OP_READ, base + j * 8, false,
			  (uint64_t)w->idx << 8 | (j + 1));
	te_submit(w, n++, DC_OP_READ, 4096 + w->idx * 64, false, 0);
	te_submit(w, n++, DC_OP_READ, TE_BAD_LAST - 7, true, 0);
	if (te_wait(w, n))
		te_check(w, 2 * TE_WRITES, n);
	if (!w->err[0] && dc_queue_inflight(w->q))
		te_fail(w, "%u requests still in flight", dc_queue_inflight(w->q));
	dc_queue_close(w->q);
	/* Nothing completes after its queue is gone (a second completion). */
	for (unsigned i = 0; i < n && !w->err[0]; i++)
		if (w->slots[i].calls != 1)
			te_fail(w, "slot %u completed %u times", i, w->slots[i].calls);
	return NULL;
}

/* --- The cases ------------------------------------------------------------- */

/* One blocking request; returns the result, *detail the detail. */
static int te_exec(dc_disk *d, uint32_t op, uint64_t sector, void *buf, int *detail)
{
	struct iovec iov = { buf, TE_IO };
	struct dc_io io = { .op = op, .sector = sector, .iov = &iov, .iovcnt = 1 };

	if (op == DC_OP_FLUSH) {
		io.iov = NULL;
		io.iovcnt = 0;
	}
	*detail = -1;
	return dc_execute(d, &io, detail);
}

START_TEST(errpath_faults)
{
	static const char *const what[] = { "read=ENOSPC", "write=ENOSPC" };
	const struct te_chain *c = &te_chains[_i];
	struct te_worker w[TE_THREADS];
	pthread_t tid[TE_THREADS];
	unsigned faults = 0;
	char *buf = h_alloc(TE_IO), *buf2 = h_alloc(TE_IO);
	char *rules = te_rules(c, what, 2, ";seed=1"), *spec = te_spec(c, rules);
	dc_disk *d = h_open(spec, 0);
	int detail;

	for (unsigned i = 0; i < TE_THREADS; i++) {
		w[i] = (struct te_worker){ .d = d, .mode = i, .idx = i };
		pthread_mutex_init(&w[i].lock, NULL);
		pthread_cond_init(&w[i].cond, NULL);
		w[i].bufs = h_alloc((size_t)TE_SLOTS * TE_IO);
		ck_assert_int_eq(pthread_create(&tid[i], NULL, te_worker_run, &w[i]), 0);
	}
	for (unsigned i = 0; i < TE_THREADS; i++) {
		pthread_join(tid[i], NULL);
		ck_assert_msg(!w[i].err[0], "%s: %s", spec, w[i].err);
		faults += w[i].faults;
		free(w[i].bufs);
	}
	ck_assert_uint_eq(faults, TE_THREADS * (TE_WRITES + 1));
	/* Every fault the consumer saw was injected once: no retries below it. */
	ck_assert_uint_eq(h_desc_num(d, "fault", "rule0_injected"), faults);

	/* The disk goes on working. A write over the faulty sectors fails the
	 * same way where writes reach fault:, and lands where a layer takes it. */
	h_fill(buf, TE_IO, 99);
	if (c->layer) {
		ck_assert_int_eq(te_exec(d, DC_OP_WRITE, TE_BAD_FIRST, buf, &detail), 0);
		ck_assert_int_eq(te_exec(d, DC_OP_READ, TE_BAD_FIRST, buf2, &detail), 0);
		ck_assert_int_eq(h_check(buf2, TE_IO, 99), -1);
		ck_assert_uint_eq(h_desc_num(d, "fault", "rule1_seen"), 0);
	} else {
		ck_assert_int_eq(te_exec(d, DC_OP_WRITE, TE_BAD_FIRST, buf, &detail),
				 DC_E_IO);
		ck_assert_int_eq(detail, ENOSPC);
		ck_assert_uint_eq(h_desc_num(d, "fault", "rule1_injected"), 1);
	}
	/* A failed read left nothing behind: the sectors next to it still fail. */
	ck_assert_int_eq(te_exec(d, DC_OP_READ, TE_BAD_FIRST + 8, buf2, &detail),
			 DC_E_IO);
	ck_assert_int_eq(detail, ENOSPC);
	h_fill(buf, TE_IO, 98);
	ck_assert_int_eq(te_exec(d, DC_OP_WRITE, TE_BAD_LAST + 1, buf, &detail), 0);
	ck_assert_int_eq(te_exec(d, DC_OP_READ, TE_BAD_LAST + 1, buf2, &detail), 0);
	ck_assert_int_eq(h_check(buf2, TE_IO, 98), -1);
	ck_assert_int_eq(te_exec(d, DC_OP_FLUSH, 0, NULL, &detail), 0);
	/* What the threads wrote is still there. */
	for (unsigned i = 0; i < TE_THREADS; i++)
		for (unsigned j = 0; j < TE_WRITES; j++) {
			ck_assert_int_eq(
				dc_read(d, te_region(&w[i]) + j * 8, buf2, TE_IO), 0);
			ck_assert_int_eq(h_check(buf2, TE_IO, (uint64_t)i << 8 | (j + 1)),
					 -1);
		}
	dc_close(d);
	free(spec);
	free(rules);
	free(buf);
	free(buf2);
}
END_TEST

/* Wait until fault: holds `n` requests; fails the test after the deadline. */
static void te_wait_held(dc_disk *d, uint64_t n)
{
	uint64_t deadline = h_now_ms() + TE_DEADLINE_MS;
	struct timespec ms = { 0, 1000000 };

	while (h_desc_num(d, "fault", "held") != n) {
		ck_assert_msg(h_now_ms() < deadline,
			      "fault: holds %llu requests, not %llu",
			      (unsigned long long)h_desc_num(d, "fault", "held"),
			      (unsigned long long)n);
		nanosleep(&ms, NULL); /* polling a counter no event signals */
	}
}

/* hang= below the chain: the held request completes exactly once, with
 * ETIMEDOUT after hang-ms or with ECANCELED when its queue closes, while a
 * request beside it completes normally. */
static void te_hang(const struct te_chain *c, const char *opts, int want_detail)
{
	static const char *const what[] = { "hang=read" };
	struct te_worker w = { .mode = TE_CALLBACK };
	char *buf = h_alloc(2 * TE_IO);
	char *rules = te_rules(c, what, 1, opts), *spec = te_spec(c, rules);

	w.d = h_open(spec, 0);
	w.bufs = buf;
	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	ck_assert_int_eq(dc_queue_open(w.d, 0, &w.q), 0);
	te_submit(&w, 0, DC_OP_READ, TE_BAD_FIRST, true, 0);
	te_submit(&w, 1, DC_OP_READ, 2048, false, 0);
	if (want_detail == ETIMEDOUT) {
		ck_assert_msg(te_wait(&w, 2), "%s: %s", spec, w.err);
	} else {
		pthread_mutex_lock(&w.lock);
		h_cond_wait_count(&w.lock, &w.cond, &w.slots[1].calls, 1, TE_DEADLINE_MS);
		pthread_mutex_unlock(&w.lock);
		/* A layer may still be looking in its own sectors first. */
		te_wait_held(w.d, 1);
		ck_assert_uint_eq(w.slots[0].calls, 0);
		ck_assert_uint_eq(dc_queue_inflight(w.q), 1);
	}
	dc_queue_close(w.q);
	ck_assert_uint_eq(w.slots[0].calls, 1);
	ck_assert_uint_eq(w.slots[1].calls, 1);
	ck_assert_int_eq(w.slots[0].result, DC_E_IO);
	ck_assert_int_eq(w.slots[0].detail, want_detail);
	ck_assert_int_eq(w.slots[1].result, 0);
	ck_assert_uint_eq(h_desc_num(w.d, "fault", "held"), 0);
	dc_close(w.d);
	free(spec);
	free(rules);
	free(buf);
}

START_TEST(errpath_hang_ms)
{
	te_hang(&te_chains[_i], ";hang-ms=20", ETIMEDOUT);
}
END_TEST

START_TEST(errpath_hang_close)
{
	te_hang(&te_chains[_i], "", ECANCELED);
}
END_TEST

/* A LUKS2 volume of 1 MiB header and 4 MiB payload, or NULL. */
static char *te_luks_format(void)
{
	char *path = h_tmpfile(5 * MIB, ".img");

	if (h_sh("cryptsetup luksFormat -q --batch-mode --type luks2 --sector-size 512 "
		 "--pbkdf pbkdf2 --pbkdf-force-iterations 1000 --luks2-metadata-size 16k "
		 "--luks2-keyslots-size 512k --key-file %s %s",
		 te_luks_pass, path) != 0) {
		free(path);
		return NULL;
	}
	return path;
}

int main(void)
{
	Suite *s = suite_create("errpath");
	uint8_t key[64];
	char *cache;

	if (!h_have_plugin("fault"))
		h_skip("fault.so was not built");
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(i * 7 + 1);
	te_key = h_tmpfile_data(key, sizeof(key), 0600, ".key");
	te_luks_pass = h_tmpfile_data("errpath", 7, 0600, ".key");
	cache = h_tmpsubdir();
	setenv("DISKCORE_AUTO_CACHE_PATH", cache, 1);
	free(cache);
	for (size_t i = 0; i < TE_NCHAINS; i++) {
		const struct te_chain *c = &te_chains[i];
		TCase *tc;

		if (c->plugin && !h_have_plugin(c->plugin)) {
			fprintf(stderr,
				"note: %s: the %s plugin was not built; not run\n",
				c->name, c->plugin);
			continue;
		}
		if (c->id == TE_LUKS) {
			if (!h_have_program("cryptsetup")) {
				fprintf(stderr,
					"note: luks: cryptsetup is not installed; "
					"not run\n");
				continue;
			}
			te_luks_image = te_luks_format();
			if (!te_luks_image) {
				fprintf(stderr,
					"note: luks: cryptsetup luksFormat failed on "
					"a plain file; not run\n");
				continue;
			}
		}
		tc = tcase_create(c->name);
		tcase_add_loop_test(tc, errpath_faults, (int)i, (int)i + 1);
		tcase_add_loop_test(tc, errpath_hang_ms, (int)i, (int)i + 1);
		tcase_add_loop_test(tc, errpath_hang_close, (int)i, (int)i + 1);
		suite_add_tcase(s, tc);
	}
	return h_run(s);
}
