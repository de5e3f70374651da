/* SPDX-License-Identifier: MIT */
/* diskctl bench: IOPS, throughput and latency percentiles, with QD requests
 * in flight on each of N threads (one queue each). */
#include "diskctl.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/futex.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Latency histogram: 8 linear sub-buckets per power of two of nanoseconds,
 * so a percentile is within 12.5% of the truth. */
#define CTL_HSUB 3
#define CTL_HBUCKETS (64 << CTL_HSUB)

static inline unsigned ctl_hist_index(uint64_t ns)
{
	unsigned msb;

	if (ns < (1u << CTL_HSUB))
		return (unsigned)ns;
	msb = 63 - (unsigned)__builtin_clzll(ns);
	return ((msb - CTL_HSUB + 1) << CTL_HSUB) |
	       (unsigned)((ns >> (msb - CTL_HSUB)) & ((1u << CTL_HSUB) - 1));
}

/* The midpoint of a bucket, in nanoseconds. */
static double ctl_hist_value(unsigned idx)
{
	unsigned e = idx >> CTL_HSUB, m = idx & ((1u << CTL_HSUB) - 1);
	double lo, width;

	if (e == 0)
		return idx;
	lo = ldexp((double)((1u << CTL_HSUB) | m), (int)e - 1);
	width = ldexp(1.0, (int)e - 1);
	return lo + width / 2;
}

enum ctl_rw { CTL_READ, CTL_WRITE, CTL_RANDREAD, CTL_RANDWRITE };

struct ctl_bench {
	const char *spec;
	dc_disk *disk;
	int rw; /* enum ctl_rw (an int: --rw is parsed into it) */
	uint64_t bs, qd, nthreads, count, nblocks;
	uint64_t spb; /* sectors per block */
	double seconds;
	bool poll_mode;
	bool wait_mode;		     /* queues are driven by dc_queue_wait() */
	uint64_t start_ns, deadline; /* deadline in ticks */
	uint64_t cpu_ns;	     /* CPU time of the whole process in the run */
	pthread_barrier_t barrier;
	atomic_bool stop;
};

struct ctl_bthread;

struct ctl_bslot {
	struct ctl_bthread *t;
	struct ctl_bslot *next;
	struct iovec iov;
	uint64_t sector;
	uint64_t start; /* ticks */
	uint64_t end;
	int result;
	int detail;
};

struct ctl_bthread {
	_Alignas(64) struct ctl_bench *b;
	pthread_t tid;
	unsigned idx;
	dc_queue *q;
	struct ctl_bslot *slots;
	struct ctl_bslot *ready;			 /* owner thread only */
	_Alignas(64) _Atomic(struct ctl_bslot *) remote; /* from other threads */
	atomic_int sleeping;
	atomic_int foreign; /* callbacks on other threads still using this */
	_Alignas(64) uint64_t rng;
	uint64_t seq_next, seq_lo, seq_hi; /* in blocks */
	uint64_t quota, issued, done;
	unsigned inflight;
	bool stop;
	bool now_valid; /* now: an inline completion's time, the next start */
	uint64_t now;
	struct dc_io io;
	uint64_t hist[CTL_HBUCKETS];
	uint64_t lat_sum, lat_max;
	uint64_t end_ns;
	int err, detail, open_err;
	uint64_t err_sector;
	char open_msg[256];
};

static __thread struct ctl_bthread *ctl_bself;

/* Bench timestamps are TSC ticks where the TSC is invariant (an rdtsc costs a
 * fraction of clock_gettime under kvm-clock), else nanoseconds. */
static bool ctl_use_tsc;
static double ctl_ticks_per_ns = 1.0;

static inline uint64_t ctl_ticks(void)
{
#if defined(__x86_64__) || defined(__i386__)
	if (ctl_use_tsc)
		return __builtin_ia32_rdtsc();
#endif
	return ctl_now_ns();
}

static void ctl_ticks_calibrate(void)
{
#if defined(__x86_64__) || defined(__i386__)
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[4096];
	bool constant = false, nonstop = false;
	uint64_t n0, t0, n1, t1;
	struct timespec ts = { 0, 20000000 };

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5))
			continue;
		constant = strstr(line, " constant_tsc") != NULL;
		nonstop = strstr(line, " nonstop_tsc") != NULL;
		break;
	}
	fclose(f);
	if (!constant || !nonstop || getenv("DISKCTL_NO_TSC"))
		return;
	n0 = ctl_now_ns();
	t0 = __builtin_ia32_rdtsc();
	nanosleep(&ts, NULL);
	n1 = ctl_now_ns();
	t1 = __builtin_ia32_rdtsc();
	if (t1 <= t0 || n1 <= n0)
		return;
	ctl_ticks_per_ns = (double)(t1 - t0) / (double)(n1 - n0);
	ctl_use_tsc = true;
#endif
}

static inline void ctl_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

static inline uint64_t ctl_xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

static inline uint64_t ctl_bench_block(struct ctl_bthread *t)
{
	const struct ctl_bench *b = t->b;
	uint64_t blk;

	if (b->rw == CTL_RANDREAD || b->rw == CTL_RANDWRITE)
		return (uint64_t)(((unsigned __int128)ctl_xorshift(&t->rng) *
				   b->nblocks) >>
				  64);
	blk = t->seq_next++;
	if (t->seq_next >= t->seq_hi)
		t->seq_next = t->seq_lo;
	return blk;
}

/* Account one finished request; the owner thread only. */
static inline void ctl_bench_account(struct ctl_bthread *t, struct ctl_bslot *s)
{
	uint64_t lat = s->end - s->start;

	t->inflight--;
	t->done++;
	t->hist[ctl_hist_index(lat)]++;
	t->lat_sum += lat;
	if (lat > t->lat_max)
		t->lat_max = lat;
	if (s->result < 0 && !t->err) {
		t->err = s->result;
		t->detail = s->detail;
		t->err_sector = s->sector;
	}
	if (s->result < 0 || s->end >= t->b->deadline)
		t->stop = true;
	s->next = t->ready;
	t->ready = s;
}

static void ctl_futex(atomic_int *addr, int op, int val, const struct timespec *ts)
{
	syscall(SYS_futex, addr, op | FUTEX_PRIVATE_FLAG, val, ts, NULL, 0);
}

static void ctl_bench_cb(const struct dc_completion *c)
{
	struct ctl_bslot *s = c->user_data;
	struct ctl_bthread *t = s->t;
	struct ctl_bslot *head;

	s->end = ctl_ticks();
	s->result = c->result;
	s->detail = c->detail;
	if (ctl_bself == t) {
		/* Inline in dc_submit(): the submit loop picks the slot up again,
		 * and this moment is when the next request starts. */
		t->now = s->end;
		t->now_valid = true;
		ctl_bench_account(t, s);
		return;
	}
	/* Another thread: hand the slot to the owner, which alone submits on q.
	 * The owner waits for `foreign` to drop before it lets t go. */
	atomic_fetch_add(&t->foreign, 1);
	head = atomic_load_explicit(&t->remote, memory_order_relaxed);
	do
		s->next = head;
	while (!atomic_compare_exchange_weak_explicit(
		&t->remote, &head, s, memory_order_release, memory_order_relaxed));
	if (atomic_load(&t->sleeping)) {
		atomic_store(&t->sleeping, 0);
		ctl_futex(&t->sleeping, FUTEX_WAKE, 1, NULL);
	}
	atomic_fetch_sub(&t->foreign, 1);
}

static inline bool ctl_bench_submit(struct ctl_bthread *t, struct ctl_bslot *s)
{
	int rc;

	if (t->stop || t->issued >= t->quota) {
		t->stop = true;
		return false;
	}
	s->sector = ctl_bench_block(t) * t->b->spb;
	/* t->io holds the fields that never change (op, iovcnt, cb). */
	t->io.sector = s->sector;
	t->io.iov = &s->iov;
	t->io.user_data = s;
	t->issued++;
	t->inflight++;
	s->start = t->now_valid ? t->now : ctl_ticks();
	t->now_valid = false;
	rc = dc_submit(t->q, &t->io);
	if (rc < 0) {
		t->inflight--;
		t->issued--;
		if (!t->err) {
			t->err = rc;
			t->err_sector = s->sector;
		}
		t->stop = true;
		return false;
	}
	return true;
}

/* Callback mode: completions inline in dc_submit() come back through t->ready,
 * completions on other threads through t->remote; only this thread submits. */
static void ctl_bench_loop_cb(struct ctl_bthread *t)
{
	ctl_bself = t;
	for (;;) {
		struct ctl_bslot *s, *l;

		while ((s = t->ready)) {
			t->ready = s->next;
			ctl_bench_submit(t, s);
		}
		if (!t->inflight)
			break;
		l = atomic_exchange_explicit(&t->remote, NULL, memory_order_acquire);
		if (!l) {
			for (int spin = 0; spin < 2000 && !l; spin++) {
				ctl_cpu_relax();
				l = atomic_exchange_explicit(&t->remote, NULL,
							     memory_order_acquire);
			}
		}
		if (!l) {
			struct timespec ts = { 0, 50000000 };

			atomic_store(&t->sleeping, 1);
			if (!atomic_load(&t->remote))
				ctl_futex(&t->sleeping, FUTEX_WAIT, 1, &ts);
			atomic_store(&t->sleeping, 0);
			if (ctl_ticks() >= t->b->deadline)
				t->stop = true;
			continue;
		}
		while (l) {
			s = l;
			l = l->next;
			ctl_bench_account(t, s);
		}
	}
	while (atomic_load(&t->foreign))
		ctl_cpu_relax();
	ctl_bself = NULL;
}

/* Callbacks on a queue driven by dc_queue_wait(): they run inside it, on
 * this thread, and resubmit from the ready list between calls. */
static void ctl_bench_loop_wait(struct ctl_bthread *t)
{
	ctl_bself = t;
	for (;;) {
		struct ctl_bslot *s, *l;
		int rc;

		while ((s = t->ready)) {
			t->ready = s->next;
			ctl_bench_submit(t, s);
		}
		if (!t->inflight)
			break;
		rc = dc_queue_wait(t->q, 50);
		if (rc < 0) {
			if (!t->err)
				t->err = rc;
			t->stop = true;
			break;
		}
		/* Callbacks that ran elsewhere (a worker pool in the chain). */
		l = atomic_exchange_explicit(&t->remote, NULL, memory_order_acquire);
		while ((s = l)) {
			l = l->next;
			ctl_bench_account(t, s);
		}
		if (rc == 0 && ctl_ticks() >= t->b->deadline)
			t->stop = true;
	}
	while (atomic_load(&t->foreign))
		ctl_cpu_relax();
	ctl_bself = NULL;
}

static void ctl_bench_loop_poll(struct ctl_bthread *t)
{
	struct dc_completion comps[64];

	while (t->ready) {
		struct ctl_bslot *s = t->ready;

		t->ready = s->next;
		ctl_bench_submit(t, s);
	}
	while (t->inflight) {
		int n = 0;
		uint64_t now;

		if (t->b->wait_mode)
			n = dc_queue_wait(t->q, 50);
		if (n >= 0)
			n = dc_queue_reap(t->q, comps, 64);
		if (n < 0) {
			if (!t->err)
				t->err = n;
			t->stop = true;
			break;
		}
		if (n == 0) {
			if (!t->b->wait_mode)
				ctl_queues_wait(&t->q, 1, 50);
			if (ctl_ticks() >= t->b->deadline)
				t->stop = true;
			continue;
		}
		now = ctl_ticks();
		for (int i = 0; i < n; i++) {
			struct ctl_bslot *s = comps[i].user_data;

			s->end = now;
			s->result = comps[i].result;
			s->detail = comps[i].detail;
			ctl_bench_account(t, s);
		}
		while (t->ready) {
			struct ctl_bslot *s = t->ready;

			t->ready = s->next;
			ctl_bench_submit(t, s);
		}
	}
}

static void *ctl_bench_thread(void *arg)
{
	struct ctl_bthread *t = arg;
	struct ctl_bench *b = t->b;
	/* Each queue lives and dies on its own thread. */
	int rc = dc_queue_open(b->disk,
			       DC_QUEUE_THREAD |
				       (b->poll_mode || b->wait_mode ? DC_QUEUE_POLL : 0),
			       &t->q);

	if (rc < 0) {
		t->open_err = rc;
		snprintf(t->open_msg, sizeof(t->open_msg), "%s", ctl_last_error(rc));
		atomic_store(&b->stop, true);
	}
	pthread_barrier_wait(&b->barrier);
	if (rc < 0)
		return NULL;
	t->io.op = b->rw == CTL_READ || b->rw == CTL_RANDREAD ? DC_OP_READ : DC_OP_WRITE;
	t->io.iovcnt = 1;
	t->io.cb = b->poll_mode ? NULL : ctl_bench_cb;
	if (b->wait_mode)
		dc_queue_wait(t->q, 0); /* drive the queue from the first request */
	/* Another thread's queue failed to open: run nothing, report that. */
	t->stop = atomic_load(&b->stop);
	if (b->poll_mode)
		ctl_bench_loop_poll(t);
	else if (b->wait_mode)
		ctl_bench_loop_wait(t);
	else
		ctl_bench_loop_cb(t);
	t->end_ns = ctl_now_ns();
	dc_queue_close(t->q);
	return NULL;
}

/* Write non-zero data over the whole disk, so that reads of a RAM disk or a
 * sparse file measure real data rather than a zero-fill shortcut. */
static int ctl_bench_prefill(struct ctl_bench *b)
{
	uint64_t ss = dc_sector_size(b->disk), total = dc_sector_count(b->disk) * ss;
	size_t chunk = 1 << 20;
	unsigned char *buf = ctl_aligned(chunk);
	uint64_t rng = 0x2545f4914f6cdd1dull;
	int rc = 0, detail;

	for (size_t k = 0; k < chunk; k += 8) {
		uint64_t v = ctl_xorshift(&rng);

		memcpy(buf + k, &v, 8);
	}
	for (uint64_t off = 0; off < total; off += chunk) {
		size_t n = total - off < chunk ? total - off : chunk;

		rc = ctl_io(b->disk, DC_OP_WRITE, off / ss, buf, n, 0, &detail);
		if (rc < 0) {
			ctl_err_io(rc, detail, "prefill '%s' at sector %" PRIu64, b->spec,
				   off / ss);
			break;
		}
	}
	free(buf);
	return rc;
}

static const char *const ctl_rw_names[] = { "read", "write", "randread", "randwrite",
					    NULL };

static const char *ctl_bench_mode(const struct ctl_bench *b)
{
	if (b->poll_mode)
		return b->wait_mode ? "poll+wait" : "poll";
	return b->wait_mode ? "callback+wait" : "callback";
}

static void ctl_bench_report(struct ctl_bench *b, struct ctl_bthread *ts, bool json)
{
	uint64_t hist[CTL_HBUCKETS] = { 0 }, done = 0, sum = 0, maxl = 0,
		 end = b->start_ns;
	double secs, iops, mbs, p50 = 0, p99 = 0, mean, cpu, per_cpu;
	uint64_t acc = 0;

	for (unsigned i = 0; i < b->nthreads; i++) {
		struct ctl_bthread *t = &ts[i];

		for (unsigned j = 0; j < CTL_HBUCKETS; j++)
			hist[j] += t->hist[j];
		done += t->done;
		sum += t->lat_sum;
		if (t->lat_max > maxl)
			maxl = t->lat_max;
		if (t->end_ns > end)
			end = t->end_ns;
	}
	for (unsigned j = 0; j < CTL_HBUCKETS && done; j++) {
		uint64_t before = acc;

		acc += hist[j];
		if (before < (done + 1) / 2 && acc >= (done + 1) / 2)
			p50 = ctl_hist_value(j);
		if (before < done - done / 100 && acc >= done - done / 100)
			p99 = ctl_hist_value(j);
	}
	secs = (end - b->start_ns) / 1e9;
	iops = secs > 0 ? done / secs : 0;
	/* Requests per CPU-second of the process (submitters, workers, timers):
	 * what one core sustains, whatever else the machine is running. */
	cpu = b->cpu_ns / 1e9;
	per_cpu = cpu > 0 ? done / cpu : 0;
	mbs = iops * b->bs / 1e6;
	/* A bucket's midpoint can lie above the largest value seen. */
	if (p50 > maxl)
		p50 = maxl;
	if (p99 > maxl)
		p99 = maxl;
	mean = done ? (double)sum / done / ctl_ticks_per_ns : 0;
	p50 /= ctl_ticks_per_ns;
	p99 /= ctl_ticks_per_ns;
	if (json) {
		printf("{\"spec\": ");
		ctl_json_str(stdout, b->spec);
		printf(", \"rw\": \"%s\", \"bs\": %" PRIu64 ", \"qd\": %" PRIu64
		       ", \"threads\": %" PRIu64
		       ", \"mode\": \"%s\", \"requests\": %" PRIu64
		       ", \"seconds\": %.6f, \"iops\": %.0f, \"mb_per_s\": %.1f"
		       ", \"cpu_seconds\": %.6f, \"iops_per_cpu_second\": %.0f"
		       ", \"latency_us\": {\"mean\": %.2f, \"p50\": %.2f, \"p99\": %.2f"
		       ", \"max\": %.2f}}\n",
		       ctl_rw_names[b->rw], b->bs, b->qd, b->nthreads, ctl_bench_mode(b),
		       done, secs, iops, mbs, cpu, per_cpu, mean / 1e3, p50 / 1e3,
		       p99 / 1e3, maxl / ctl_ticks_per_ns / 1e3);
		return;
	}
	printf("%s %s bs=%" PRIu64 " qd=%" PRIu64 " threads=%" PRIu64 " (%s)\n", b->spec,
	       ctl_rw_names[b->rw], b->bs, b->qd, b->nthreads, ctl_bench_mode(b));
	printf("requests: %" PRIu64 " in %.3f s\n", done, secs);
	printf("IOPS:     %.0f\n", iops);
	printf("MB/s:     %.1f\n", mbs);
	printf("CPU:      %.3f s (%.0f%% of one core), %.0f requests per CPU-second\n",
	       cpu, secs > 0 ? 100 * cpu / secs : 0.0, per_cpu);
	printf("latency:  mean %.2f us, p50 %.2f us, p99 %.2f us, max %.2f us\n",
	       mean / 1e3, p50 / 1e3, p99 / 1e3, maxl / ctl_ticks_per_ns / 1e3);
}

/* What the command line asks for beyond struct ctl_bench. */
struct ctl_bench_opts {
	bool json, timed, ro, prefill, no_wait;
};

struct ctl_bench_args {
	struct ctl_bench b;
	struct ctl_bench_opts o;
};

#define CTL_BENCH_AT(m) offsetof(struct ctl_bench_args, m)

const struct ctl_opt ctl_bench_opts[] = {
	CTL_OPT("rw", 0, CTL_OPT_ENUM, struct ctl_bench_args, b.rw, "MODE",
		"workload (default randread)", .names = ctl_rw_names),
	CTL_OPT("bs", 0, CTL_OPT_SIZE, struct ctl_bench_args, b.bs, "SIZE",
		"request size, a multiple of the sector size (default 4K)", .min = 1,
		.max = 1u << 30),
	CTL_OPT("qd", 0, CTL_OPT_UINT, struct ctl_bench_args, b.qd, "N",
		"requests in flight per thread (default 32)", .min = 1, .max = 65536),
	CTL_OPT("time", 0, CTL_OPT_SECONDS, struct ctl_bench_args, b.seconds, "SEC",
		"run this long (default 5)", .max = 1000000),
	CTL_OPT("count", 0, CTL_OPT_UINT, struct ctl_bench_args, b.count, "N",
		"run N requests in all instead", .min = 1, .max = UINT64_MAX),
	CTL_OPT("threads", 0, CTL_OPT_UINT, struct ctl_bench_args, b.nthreads, "N",
		"submitting threads (default 1)", .min = 1, .max = 1024),
	CTL_OPT("ro", 0, CTL_OPT_TRUE, struct ctl_bench_args, o.ro, NULL,
		"open read-only"),
	CTL_OPT("poll", 0, CTL_OPT_TRUE, struct ctl_bench_args, b.poll_mode, NULL,
		"reap completions with dc_queue_reap() instead of taking\n"
		"callbacks"),
	CTL_OPT("no-wait", 0, CTL_OPT_TRUE, struct ctl_bench_args, o.no_wait, NULL,
		"never drive the queues with dc_queue_wait(); by default a\n"
		"chain that can reap on the submitting thread (an io_uring\n"
		"backend: file, blockdev, the image formats, nbd, rbd, nvme)\n"
		"is driven by it, and the rest wait on the queue's eventfd"),
	CTL_OPT("prefill", 0, CTL_OPT_TRUE, struct ctl_bench_args, o.prefill, NULL,
		"first write data over the whole disk (not timed)"),
	CTL_OPT("json", 0, CTL_OPT_TRUE, struct ctl_bench_args, o.json, NULL,
		"print one JSON object"),
	{ 0 },
};

/* Parse the options into b and o, checking how they combine. */
static void ctl_bench_args(int argc, char **argv, struct ctl_bench_args *a)
{
	struct ctl_bench *b = &a->b;
	struct ctl_bench_opts *o = &a->o;

	b->spec = ctl_parse(argc, argv, a, NULL)[0];
	o->timed = b->seconds > 0;
	if (o->timed && b->count)
		ctl_usage("give --time or --count, not both");
	if (!o->timed && !b->count)
		b->seconds = 5;
	if (o->ro && (b->rw == CTL_WRITE || b->rw == CTL_RANDWRITE))
		ctl_usage("--ro with a write workload");
	if (o->ro && o->prefill)
		ctl_usage("--prefill writes the disk; it cannot go with --ro");
}

/* Open the disk and size the workload; 0, or -1 (reported, disk closed). */
static int ctl_bench_open(struct ctl_bench *b, const struct ctl_bench_opts *o)
{
	uint64_t ss;

	b->disk = ctl_open(b->spec, o->ro ? DC_OPEN_READ_ONLY : 0);
	if (!b->disk)
		return -1;
	ss = dc_sector_size(b->disk);
	if (b->bs % ss) {
		ctl_err("--bs %" PRIu64 " is not a multiple of the %" PRIu64
			"-byte sector size",
			b->bs, ss);
		goto fail;
	}
	b->spb = b->bs / ss;
	b->nblocks = dc_sector_count(b->disk) * ss / b->bs;
	if (b->nblocks < b->nthreads) {
		ctl_err("'%s' holds %" PRIu64 " blocks of %" PRIu64 " bytes; need at "
			"least one per thread",
			b->spec, b->nblocks, b->bs);
		goto fail;
	}
	if (o->prefill && ctl_bench_prefill(b) < 0)
		goto fail;
	/* Drive the queues with dc_queue_wait() where the chain reaps on the
	 * waiting thread (an io_uring backend): no completion crosses threads. */
	if (!o->no_wait) {
		dc_queue *probe;

		if (dc_queue_open(b->disk, DC_QUEUE_POLL, &probe) == 0) {
			b->wait_mode = dc_queue_pollers(probe) > 0;
			dc_queue_close(probe);
		}
	}
	return 0;
fail:
	dc_close(b->disk);
	return -1;
}

/* Thread i's share of the blocks and requests, and its QD buffers. */
static void ctl_bench_thread_init(struct ctl_bench *b, struct ctl_bthread *t, unsigned i)
{
	uint64_t per = b->nblocks / b->nthreads;

	t->b = b;
	t->idx = i;
	t->rng = 0x9e3779b97f4a7c15ull * (i + 1) ^ (uint64_t)getpid();
	if (!t->rng)
		t->rng = 1;
	t->seq_lo = t->seq_next = per * i;
	t->seq_hi = i + 1 == b->nthreads ? b->nblocks : per * (i + 1);
	t->quota = UINT64_MAX;
	if (b->count)
		t->quota = b->count / b->nthreads + (i < b->count % b->nthreads);
	t->slots = ctl_xalloc(b->qd * sizeof(*t->slots));
	for (uint64_t j = 0; j < b->qd; j++) {
		struct ctl_bslot *s = &t->slots[j];

		s->t = t;
		s->iov.iov_len = b->bs;
		s->iov.iov_base = ctl_aligned(b->bs);
		/* Writes carry non-zero data, so no layer can shortcut them. */
		for (uint64_t k = 0; k < b->bs; k += 8) {
			uint64_t v = ctl_xorshift(&t->rng);

			memcpy((char *)s->iov.iov_base + k, &v,
			       b->bs - k < 8 ? b->bs - k : 8);
		}
		s->next = t->ready;
		t->ready = s;
	}
	if (!t->quota)
		t->ready = NULL; /* more threads than requests */
}

/* Start the threads, open the gate when all are ready, wait for them. */
static void ctl_bench_go(struct ctl_bench *b, struct ctl_bthread *ts)
{
	pthread_barrier_init(&b->barrier, NULL, (unsigned)b->nthreads + 1);
	for (unsigned i = 0; i < b->nthreads; i++) {
		int rc = pthread_create(&ts[i].tid, NULL, ctl_bench_thread, &ts[i]);

		if (rc) {
			fprintf(stderr, "diskctl bench: cannot start a thread: %s\n",
				strerror(rc));
			exit(CTL_EXIT_FAIL);
		}
	}
	b->cpu_ns = ctl_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
	b->start_ns = ctl_now_ns();
	b->deadline =
		b->count ? UINT64_MAX :
			   ctl_ticks() + (uint64_t)(b->seconds * 1e9 * ctl_ticks_per_ns);
	/* The threads read start/deadline only after this barrier. */
	pthread_barrier_wait(&b->barrier);
	for (unsigned i = 0; i < b->nthreads; i++)
		pthread_join(ts[i].tid, NULL);
	b->cpu_ns = ctl_clock_ns(CLOCK_PROCESS_CPUTIME_ID) - b->cpu_ns;
	pthread_barrier_destroy(&b->barrier);
}

/* Report every thread's failure; the exit status. */
static int ctl_bench_errors(const struct ctl_bench *b, const struct ctl_bthread *ts)
{
	int rc = 0;

	for (unsigned i = 0; i < b->nthreads; i++) {
		const struct ctl_bthread *t = &ts[i];

		if (t->open_err) {
			ctl_err("queue on '%s': %s", b->spec, t->open_msg);
			rc = CTL_EXIT_FAIL;
		} else if (t->err) {
			ctl_err_io(t->err, t->detail, "%s '%s' at sector %" PRIu64,
				   ctl_rw_names[b->rw], b->spec, t->err_sector);
			rc = CTL_EXIT_FAIL;
		}
	}
	return rc;
}

int ctl_bench(int argc, char **argv)
{
	struct ctl_bench_args a = {
		.b = { .rw = CTL_RANDREAD, .bs = 4096, .qd = 32, .nthreads = 1 }
	};
	struct ctl_bench *b = &a.b;
	struct ctl_bthread *ts;
	int rc;

	ctl_bench_args(argc, argv, &a);
	if (ctl_bench_open(b, &a.o) < 0)
		return CTL_EXIT_FAIL;
	ctl_ticks_calibrate();
	ts = ctl_xalloc(b->nthreads * sizeof(*ts));
	for (unsigned i = 0; i < b->nthreads; i++)
		ctl_bench_thread_init(b, &ts[i], i);
	ctl_bench_go(b, ts);
	rc = ctl_bench_errors(b, ts);
	if (!rc)
		ctl_bench_report(b, ts, a.o.json);
	for (unsigned i = 0; i < b->nthreads; i++) {
		for (uint64_t j = 0; j < b->qd; j++)
			free(ts[i].slots[j].iov.iov_base);
		free(ts[i].slots);
	}
	free(ts);
	dc_close(b->disk);
	return rc;
}
