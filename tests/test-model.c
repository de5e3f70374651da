/* SPDX-License-Identifier: MIT */
/* Model-based random test (issue 18, item 5): random reads, writes, flushes,
 * unmaps and resizes from MD_THREADS threads through chains of every plugin,
 * checked against an in-memory model of what each sector must hold.
 *
 * Each thread owns a region of the disk (thread 0 also the tail, where it
 * resizes the disk while the others do I/O), so the model is exact whatever
 * the interleaving: a sector is zero, a stamped generation of its thread
 * (iodrive.h), "unknown" (crypt over zeroes, after an unmap the disk calls
 * unspecified, after a failed write), or past the end. Requests in flight on
 * a queue never overlap. The three consumer modes are mixed.
 *
 * On a mismatch the test prints the seed, then replays the operations that
 * ran on one thread (a fresh disk each time), cuts the list to the failing
 * prefix and delta-debugs it to a short sequence that still fails.
 *
 *	DISKCORE_MODEL_OPS=N	operations per chain (default 12000, 96000 for
 *				the delay/crypt pairs, scaled by
 *				$DISKCORE_TEST_SCALE; see iodrive.h)
 *	DISKCORE_MODEL_SEED=S	the seed (default: from the clock, printed)
 *	CK_RUN_CASE=NAME	one chain, e.g. delay-crypt-mem
 *
 * e.g. DISKCORE_MODEL_OPS=1000000 DISKCORE_MODEL_SEED=42 CK_RUN_CASE=delay-crypt-mem
 * meson test -C build model (docs/reliability.md, "Model test"). */
#include "conformance.h"
#include "harness.h"
#include "iodrive.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MD_THREADS 4
#define MD_REGION 2048	   /* sectors each thread owns */
#define MD_TAIL 4096	   /* thread 0's tail: the last sectors, resized */
#define MD_MAX_COUNT 128   /* sectors per request at most */
#define MD_STALL_MS 60000  /* no completion for this long fails */
#define MD_SHRINK_MS 30000 /* time for delta debugging */

/* Model states besides a generation (1 .. MD_GONE - 1). */
#define MD_ZERO 0u
#define MD_UNKNOWN UINT32_MAX
#define MD_GONE (UINT32_MAX - 1) /* past the end of the disk */

/* Chain flags. */
#define MD_RESIZE (1u << 0)	    /* thread 0 resizes the disk */
#define MD_INIT_UNKNOWN (1u << 1)   /* fresh sectors are not zero (crypt) */
#define MD_REGROW_UNKNOWN (1u << 2) /* sectors a resize adds are not zero */
#define MD_FAULTS (1u << 3)	    /* reads and writes may fail with EIO */
#define MD_LONG (1u << 4)	    /* 8x the default operations (see md_chains) */

struct md_chain {
	const char *name;
	const char *tmpl; /* conformance.h template; @KEY@ is the key file */
	unsigned flags;
	unsigned grow;	   /* MD_RESIZE: sectors past the initial end it may reach */
	const char *needs; /* a plugin that may not be built, or NULL */
};

/* Resizable chains are 62M, so growing to 66M crosses ram's 64M index block.
 * The delay/crypt pairs run longer: before the ABI 1.0 fix (5f8f923) their
 * race corrupted data about once in 10^5 to 10^6 operations
 * (docs/reliability.md, "Model-based test"). */
static const struct md_chain md_chains[] = {
	{ "mem", "mem:62M", MD_RESIZE, 8192, NULL },
	{ "memdiff-mem", "memdiff:mem:62M", MD_RESIZE, 8192, NULL },
	{ "crypt-mem", "crypt:xts-aes-256:@KEY@:mem:62M",
	  MD_RESIZE | MD_INIT_UNKNOWN | MD_REGROW_UNKNOWN, 8192, "crypt" },
	{ "delay-crypt-mem", "delay:0;p99=1:crypt:xts-aes-256:@KEY@:mem:62M",
	  MD_RESIZE | MD_INIT_UNKNOWN | MD_REGROW_UNKNOWN | MD_LONG, 8192, "crypt" },
	{ "crypt-delay-mem", "crypt:xts-aes-256:@KEY@:delay:0;p99=1:mem:62M",
	  MD_RESIZE | MD_INIT_UNKNOWN | MD_REGROW_UNKNOWN | MD_LONG, 8192, "crypt" },
	/* 99% of the requests reach crypt through the timer thread's hand-off,
	 * 1% straight from the queue's thread. */
	{ "delay1-crypt-mem", "delay:1;p99=0:crypt:xts-aes-256:@KEY@:mem:62M",
	  MD_RESIZE | MD_INIT_UNKNOWN | MD_REGROW_UNKNOWN, 8192, "crypt" },
	{ "delay1-memdiff-file", "delay:1:memdiff:file:@TMP:16M@", MD_RESIZE, 4096,
	  NULL },
	{ "sqldiff-mem", "sqldiff:@NEW.dbhd@;create:mem:16M", 0, 0, "sqlite" },
	{ "delay-sqldiff-file", "delay:0;p99=1:sqldiff:@NEW.dbhd@;create:file:@TMP:16M@",
	  0, 0, "sqlite" },
	{ "striped", "striped;chunk=4K:[mem:8M,delay:0;p99=1:mem:8M]", 0, 0, NULL },
	{ "vhdx", "vhdx:@NEW.vhdx@;create=16M;block=1M", 0, 0, "vhdx" },
	{ "vhd", "vhd:@NEW.vhd@;create=16M;block=512K", 0, 0, "vhd" },
	{ "crypt-delay-vhdx",
	  "crypt:xts-aes-256:@KEY@:delay:0;p99=1:vhdx:@NEW.vhdx@;create=16M;block=1M",
	  MD_INIT_UNKNOWN, 0, "crypt" },
	{ "delay-striped-crypt",
	  "delay:0;p99=1:striped;chunk=2K:[crypt:xts-aes-256:@KEY@:mem:8M,"
	  "crypt:xts-aes-256:@KEY@:file:@TMP:8M@]",
	  MD_INIT_UNKNOWN, 0, "crypt" },
	{ "fault-delay-memdiff",
	  "fault:read=EIO@@2%,write=EIO@@2%,delay=read/1@@2%;seed=7:delay:0;p99=1:"
	  "memdiff:mem:16M",
	  MD_FAULTS, 0, "fault" },
	{ "crypt-fault-mem",
	  "crypt:xts-aes-256:@KEY@:fault:read=EIO@@2%,write=EIO@@2%:mem:16M",
	  MD_FAULTS | MD_INIT_UNKNOWN, 0, "fault" },
};
#define MD_NCHAINS ((int)(sizeof(md_chains) / sizeof(md_chains[0])))

static char *md_key;
static uint64_t md_seed;
static unsigned md_nops;
static bool md_nops_given; /* $DISKCORE_MODEL_OPS: every chain runs that many */

enum md_type { MD_READ, MD_WRITE, MD_FLUSH, MD_UNMAP, MD_RESIZE_OP };
static const char *const md_type_name[] = { "read", "write", "flush", "unmap", "resize" };

struct md_op {
	uint8_t type, tid, iovcnt, fua;
	uint32_t count;	 /* sectors */
	uint32_t gen;	 /* write: the generation it stamps */
	uint64_t sector; /* resize: the new sector count */
};

/* One open disk and the model of what it holds. */
struct md_disk {
	const struct md_chain *c;
	dc_disk *d;
	uint32_t ss, unmap;
	uint64_t first[MD_THREADS]; /* region of each thread */
	uint64_t tail0, tail_end;   /* thread 0's tail */
	uint64_t cur_size;	    /* touched by thread 0's runner only */
	uint32_t *st[MD_THREADS];   /* MD_REGION states per thread */
	uint32_t *tail;		    /* tail_end - tail0 states */
};

static uint32_t *md_state(struct md_disk *m, unsigned tid, uint64_t s)
{
	if (s >= m->first[tid] && s < m->first[tid] + MD_REGION)
		return &m->st[tid][s - m->first[tid]];
	return &m->tail[s - m->tail0]; /* md_gen() only gives thread 0 the tail */
}

static char *md_spec(const struct md_chain *c)
{
	const char *k = strstr(c->tmpl, "@KEY@");
	char *t, *spec;

	/* At most two keys per template: expand them, then the rest. */
	t = k ? h_fmt("%.*s%s%s", (int)(k - c->tmpl), c->tmpl, md_key, k + 5) :
		h_fmt("%s", c->tmpl);
	while ((k = strstr(t, "@KEY@"))) {
		char *u = h_fmt("%.*s%s%s", (int)(k - t), t, md_key, k + 5);

		free(t);
		t = u;
	}
	spec = conformance_expand(t, NULL);
	ck_assert_msg(spec, "bad template %s", t);
	free(t);
	return spec;
}

static void md_open(struct md_disk *m, const struct md_chain *c)
{
	struct dc_info info;
	char *spec = md_spec(c);
	uint64_t n, per;
	uint32_t init;

	memset(m, 0, sizeof(*m));
	m->c = c;
	m->d = h_open(spec, 0);
	free(spec);
	dc_get_info(m->d, &info);
	m->ss = info.sector_size;
	m->unmap = info.unmap_behavior;
	n = m->cur_size = info.sector_count;
	ck_assert_uint_ge(n, MD_TAIL + MD_THREADS * MD_REGION);
	m->tail0 = c->flags & MD_RESIZE ? n - MD_TAIL : n;
	m->tail_end = n + (c->flags & MD_RESIZE ? c->grow : 0);
	per = m->tail0 / MD_THREADS;
	init = c->flags & MD_INIT_UNKNOWN ? MD_UNKNOWN : MD_ZERO;
	for (unsigned t = 0; t < MD_THREADS; t++) {
		m->first[t] = t * per + (per - MD_REGION) / 2;
		m->st[t] = malloc(MD_REGION * sizeof(uint32_t));
		for (unsigned i = 0; i < MD_REGION; i++)
			m->st[t][i] = init;
	}
	m->tail = malloc((m->tail_end - m->tail0 + 1) * sizeof(uint32_t));
	for (uint64_t s = m->tail0; s < m->tail_end; s++)
		m->tail[s - m->tail0] = s < n ? init : MD_GONE;
}

static void md_close(struct md_disk *m)
{
	dc_close(m->d);
	for (unsigned t = 0; t < MD_THREADS; t++)
		free(m->st[t]);
	free(m->tail);
}

/* Thread tid's operations, from the seed alone. */
static void md_gen(const struct md_disk *m, struct md_op *ops, size_t n, unsigned tid)
{
	uint64_t rng = h_mix64(md_seed ^ ((uint64_t)tid << 56)), gen = 0;
	bool resize = (m->c->flags & MD_RESIZE) && tid == 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t x = h_mix64(rng++), y = h_mix64(rng++), p = x % 100;
		uint64_t lo = m->first[tid], len = MD_REGION;
		struct md_op *o = &ops[i];

		*o = (struct md_op){ .tid = (uint8_t)tid, .iovcnt = 1 };
		if (resize && (y >> 40) % 4 == 0) {
			lo = m->tail0;
			len = m->tail_end - m->tail0;
		}
		o->count = (uint32_t)(p % 4 ? 1 + (y >> 8) % 16 :
					      1 + (y >> 8) % MD_MAX_COUNT);
		o->sector = lo + (y >> 20) % (len - o->count + 1);
		if (resize && p < 4) {
			o->type = MD_RESIZE_OP;
			o->sector =
				m->tail0 + (y % ((m->tail_end - m->tail0) / 8 + 1)) * 8;
		} else if (p < 8) {
			o->type = MD_FLUSH;
		} else if (p < 18) {
			o->type = MD_UNMAP;
		} else if (p < 58) {
			o->type = MD_WRITE;
			o->gen = (uint32_t)++gen;
			o->fua = (x >> 32) % 8 == 0;
			o->iovcnt = (uint8_t)(1 + (x >> 40) % 3);
		} else {
			o->type = MD_READ;
			o->iovcnt = (uint8_t)(1 + (x >> 40) % 3);
		}
	}
}

static void md_op_str(const struct md_op *o, char *buf, size_t len)
{
	if (o->type == MD_FLUSH)
		snprintf(buf, len, "t%u flush", o->tid);
	else if (o->type == MD_RESIZE_OP)
		snprintf(buf, len, "t%u resize to %llu sectors", o->tid,
			 (unsigned long long)o->sector);
	else
		snprintf(buf, len, "t%u %s %llu+%u%s%s", o->tid, md_type_name[o->type],
			 (unsigned long long)o->sector, o->count,
			 o->type == MD_WRITE ? " gen " : "", o->fua ? " fua" : "");
	if (o->type == MD_WRITE)
		snprintf(buf + strlen(buf), len - strlen(buf), "%s%u", o->fua ? " " : "",
			 o->gen);
}

/* --- Running a list of operations on one queue ------------------------------ */

struct md_slot {
	size_t op;
	int expect;
	uint8_t *buf;
	struct iovec iov[3];
};

struct md_run {
	struct md_disk *m;
	const struct md_op *ops;
	size_t nops, pos;
	bool busy[IOD_QD_MAX];
	struct md_slot slot[IOD_QD_MAX];
	unsigned inflight;
	atomic_bool *stop; /* another thread failed */
	bool failed;
	size_t fail_op;
	char err[1024];
	unsigned long count[5], faults;
};

static bool md_overlaps(const struct md_run *r, const struct md_op *o)
{
	for (unsigned i = 0; i < IOD_QD_MAX; i++) {
		const struct md_op *b = &r->ops[r->slot[i].op];

		if (r->busy[i] && b->type != MD_FLUSH &&
		    o->sector < b->sector + b->count && b->sector < o->sector + o->count)
			return true;
	}
	return false;
}

static int md_mismatch(struct md_run *r, size_t op, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int md_mismatch(struct md_run *r, size_t op, const char *fmt, ...)
{
	char what[80];
	va_list ap;
	int n;

	if (op == SIZE_MAX) {
		n = snprintf(r->err, sizeof(r->err), "the final read-back: ");
		op = r->nops ? r->nops - 1 : 0;
	} else {
		md_op_str(&r->ops[op], what, sizeof(what));
		n = snprintf(r->err, sizeof(r->err), "op #%zu (%s): ", op, what);
	}
	va_start(ap, fmt);
	vsnprintf(r->err + n, sizeof(r->err) - (size_t)n, fmt, ap);
	va_end(ap);
	r->failed = true;
	r->fail_op = op;
	if (r->stop)
		atomic_store(r->stop, true);
	return -1;
}

/* A resize, on the runner's own thread with nothing of its in flight. */
static int md_resize(struct md_run *r, size_t i)
{
	struct md_disk *m = r->m;
	uint64_t n = r->ops[i].sector, old = m->cur_size;
	int rc = dc_resize(m->d, n);

	if (rc)
		return md_mismatch(r, i, "dc_resize = %d: %s", rc, dc_last_error());
	if (dc_sector_count(m->d) != n)
		return md_mismatch(r, i, "the disk has %llu sectors after it",
				   (unsigned long long)dc_sector_count(m->d));
	for (uint64_t s = m->tail0; s < m->tail_end; s++) {
		uint32_t *st = &m->tail[s - m->tail0];

		if (s >= n)
			*st = MD_GONE;
		else if (s >= old)
			*st = m->c->flags & MD_REGROW_UNKNOWN ? MD_UNKNOWN : MD_ZERO;
	}
	m->cur_size = n;
	r->count[MD_RESIZE_OP]++;
	return 0;
}

static int md_next(void *arg, unsigned i, struct dc_io *io)
{
	struct md_run *r = arg;
	struct md_slot *sl = &r->slot[i];
	const struct md_op *o;
	size_t len, cut1, cut2;

	for (;;) {
		if (r->pos == r->nops || (r->stop && atomic_load(r->stop)))
			return IOD_END;
		o = &r->ops[r->pos];
		if (o->type != MD_RESIZE_OP)
			break;
		if (r->inflight)
			return IOD_BLOCKED;
		if (md_resize(r, r->pos++) < 0)
			return IOD_END;
	}
	if (o->type != MD_FLUSH && md_overlaps(r, o))
		return IOD_BLOCKED;
	sl->op = r->pos++;
	r->busy[i] = true;
	r->inflight++;
	io->op = o->type == MD_READ  ? DC_OP_READ :
		 o->type == MD_WRITE ? DC_OP_WRITE :
		 o->type == MD_FLUSH ? DC_OP_FLUSH :
				       DC_OP_UNMAP;
	io->sector = o->sector;
	sl->expect = o->tid == 0 && o->type != MD_FLUSH &&
				     o->sector + o->count > r->m->cur_size ?
			     DC_E_ILLEGAL_BLOCK :
			     0;
	if (o->type == MD_UNMAP)
		io->count = o->count;
	if (o->type != MD_READ && o->type != MD_WRITE)
		return IOD_SUBMIT;
	len = (size_t)o->count * r->m->ss;
	if (o->type == MD_WRITE)
		iod_stamp(sl->buf, r->m->ss, o->sector, o->count, o->tid, o->gen);
	else
		memset(sl->buf, 0xa5, len);
	io->flags = o->fua ? DC_IO_FUA : 0;
	/* Cut into segments at sector boundaries (as far as count allows). */
	cut1 = o->iovcnt > 1 ? (size_t)(1 + o->count / 3) * r->m->ss : len;
	cut2 = o->iovcnt > 2 ? cut1 + (size_t)(1 + o->count / 4) * r->m->ss : len;
	cut1 = cut1 > len ? len : cut1;
	cut2 = cut2 > len ? len : cut2;
	sl->iov[0] = (struct iovec){ sl->buf, cut1 };
	sl->iov[1] = (struct iovec){ sl->buf + cut1, cut2 - cut1 };
	sl->iov[2] = (struct iovec){ sl->buf + cut2, len - cut2 };
	io->iov = sl->iov;
	io->iovcnt = 3;
	return IOD_SUBMIT;
}

static int md_verify(struct md_run *r, size_t op, const uint8_t *buf, unsigned tid,
		     uint64_t sector, uint64_t count)
{
	struct md_disk *m = r->m;
	char why[160];

	for (uint64_t k = 0; k < count; k++) {
		uint32_t st = *md_state(m, tid, sector + k);
		const uint8_t *p = buf + k * m->ss;

		if (st == MD_UNKNOWN)
			continue;
		if (st == MD_ZERO ?
			    h_check_zero(p, m->ss) < 0 :
			    iod_check(p, m->ss, sector + k, tid, st, why, sizeof(why)))
			continue;
		if (st == MD_ZERO)
			iod_check(p, m->ss, sector + k, tid, 0, why, sizeof(why));
		if (st == MD_ZERO)
			return md_mismatch(r, op, "sector %llu %s; the model says zeroes",
					   (unsigned long long)(sector + k), why);
		return md_mismatch(r, op, "sector %llu %s; the model says generation %u",
				   (unsigned long long)(sector + k), why, st);
	}
	return 0;
}

static int md_done(void *arg, unsigned i, const struct dc_completion *c)
{
	struct md_run *r = arg;
	struct md_slot *sl = &r->slot[i];
	const struct md_op *o = &r->ops[sl->op];
	uint32_t set = 0;

	r->busy[i] = false;
	r->inflight--;
	r->count[o->type]++;
	if (c->result != sl->expect) {
		/* A fault: injected the fault: chains may fail reads and writes. */
		if ((r->m->c->flags & MD_FAULTS) && c->result == DC_E_IO && !sl->expect &&
		    (o->type == MD_READ || o->type == MD_WRITE)) {
			r->faults++;
			for (uint64_t k = 0; o->type == MD_WRITE && k < o->count; k++)
				*md_state(r->m, o->tid, o->sector + k) = MD_UNKNOWN;
			return 0;
		}
		return md_mismatch(r, sl->op,
				   "result %d (%s, detail %d), expected %d (%s)",
				   c->result, dc_strerror(c->result), c->detail,
				   sl->expect, dc_strerror(sl->expect));
	}
	if (sl->expect || o->type == MD_FLUSH)
		return 0;
	if (o->type == MD_READ)
		return md_verify(r, sl->op, sl->buf, o->tid, o->sector, o->count);
	if (o->type == MD_UNMAP) {
		if (r->m->unmap == DC_UNMAP_IGNORED)
			return 0;
		set = r->m->unmap == DC_UNMAP_ZEROES ? MD_ZERO : MD_UNKNOWN;
	} else {
		set = o->gen;
	}
	for (uint64_t k = 0; k < o->count; k++)
		*md_state(r->m, o->tid, o->sector + k) = set;
	return 0;
}

static const struct iod_ops md_ops = { .next = md_next, .done = md_done };

static void md_run_init(struct md_run *r, struct md_disk *m, const struct md_op *ops,
			size_t n, uint8_t *bufs)
{
	memset(r, 0, sizeof(*r));
	r->m = m;
	r->ops = ops;
	r->nops = n;
	for (unsigned i = 0; i < IOD_QD_MAX; i++)
		r->slot[i].buf = bufs + (size_t)i * MD_MAX_COUNT * m->ss;
}

/* Run r on a queue in mode; a failure of the run itself lands in r->err. */
static void md_run(struct md_run *r, enum iod_mode mode, unsigned qd)
{
	char err[256] = "";

	if (iod_run(r->m->d, mode, qd, &md_ops, r, MD_STALL_MS, err, sizeof(err)) < 0 &&
	    !r->failed) {
		r->failed = true;
		r->fail_op = r->pos ? r->pos - 1 : 0;
		snprintf(r->err, sizeof(r->err), "%s mode: %s", iod_mode_name[mode], err);
	}
}

/* Read back every region (and the live tail) on this thread. */
static void md_final_check(struct md_run *r)
{
	struct md_disk *m = r->m;
	uint8_t *buf = r->slot[0].buf;

	if (r->failed)
		return;
	for (unsigned t = 0; t < MD_THREADS && !r->failed; t++) {
		uint64_t lo = m->first[t], hi = lo + MD_REGION;

		for (int pass = 0; pass < 2 && !r->failed; pass++) {
			for (uint64_t s = lo; s < hi && !r->failed; s += MD_MAX_COUNT) {
				uint64_t n = hi - s < MD_MAX_COUNT ? hi - s :
								     MD_MAX_COUNT;
				int rc = dc_read(m->d, s, buf, n * m->ss);

				if (rc && !(m->c->flags & MD_FAULTS))
					md_mismatch(r, SIZE_MAX, "read of %llu+%llu = %d",
						    (unsigned long long)s,
						    (unsigned long long)n, rc);
				else if (!rc)
					md_verify(r, r->nops ? r->nops - 1 : 0, buf, t, s,
						  n);
			}
			if (t != 0 || m->tail0 == m->tail_end)
				break;
			lo = m->tail0;
			hi = m->cur_size;
		}
	}
}

/* --- Replaying on one thread, delta debugging --------------------------------- */

/* Replay ops on one queue of a fresh disk; the index of the op that failed
 * (err says how), or -1. */
static long md_replay(const struct md_chain *c, const struct md_op *ops, size_t n,
		      char *err, size_t len)
{
	struct md_disk m;
	struct md_run *r = malloc(sizeof(*r));
	uint8_t *bufs;
	long at = -1;

	md_open(&m, c);
	bufs = h_alloc((size_t)IOD_QD_MAX * MD_MAX_COUNT * m.ss);
	md_run_init(r, &m, ops, n, bufs);
	md_run(r, IOD_POLL_FD, IOD_QD_MAX);
	md_final_check(r);
	if (r->failed) {
		at = (long)r->fail_op;
		snprintf(err, len, "%s", r->err);
	}
	md_close(&m);
	free(bufs);
	free(r);
	return at;
}

/* Races fail some replays only: a candidate fails if any of tries does
 * (as many as fit before deadline, at least one). */
static long md_fails(const struct md_chain *c, const struct md_op *ops, size_t n,
		     int tries, uint64_t deadline, char *err, size_t len,
		     unsigned *replays)
{
	long at = -1;

	for (int k = 0; k < tries && at < 0 && (k == 0 || h_now_ms() < deadline);
	     k++, (*replays)++)
		at = md_replay(c, ops, n, err, len);
	return at;
}

/* ddmin over ops[0..n) (Zeller): drop chunks while the rest still fails,
 * cutting after the op that failed each time. Returns the new length. */
static size_t md_shrink(const struct md_chain *c, struct md_op *ops, size_t n,
			uint64_t deadline, char *err, size_t len, unsigned *replays)
{
	struct md_op *cand = malloc(n * sizeof(*cand));
	size_t parts = 2;

	while (n >= 2 && h_now_ms() < deadline) {
		size_t chunk = (n + parts - 1) / parts;
		bool cut = false;

		for (size_t lo = 0; lo < n && !cut && h_now_ms() < deadline;
		     lo += chunk) {
			size_t hi = lo + chunk < n ? lo + chunk : n, m = 0;
			long at;

			for (size_t i = 0; i < n; i++)
				if (i < lo || i >= hi)
					cand[m++] = ops[i];
			at = m ? md_fails(c, cand, m, 2, deadline, err, len, replays) :
				 -1;
			if (at >= 0) {
				n = (size_t)at + 1 < m ? (size_t)at + 1 : m;
				memcpy(ops, cand, n * sizeof(*ops));
				parts = parts > 2 ? parts - 1 : 2;
				cut = true;
			}
		}
		if (!cut) {
			if (parts >= n)
				break;
			parts = parts * 2 < n ? parts * 2 : n;
		}
	}
	free(cand);
	return n;
}

/* The threads' operations that ran, interleaved, replayed and shortened. */
static void md_report(const struct md_chain *c, struct md_run *const runs[MD_THREADS])
{
	size_t total = 0, n = 0;
	struct md_op *ops;
	char err[1024], line[96];
	unsigned replays = 0;
	long at;

	for (unsigned t = 0; t < MD_THREADS; t++)
		total += runs[t]->pos;
	ops = malloc((total + 1) * sizeof(*ops));
	for (size_t k = 0; n < total; k++)
		for (unsigned t = 0; t < MD_THREADS; t++)
			if (k < runs[t]->pos)
				ops[n++] = runs[t]->ops[k];
	fprintf(stderr,
		"model: %s: replaying the %zu operations that ran, on one thread\n",
		c->name, n);
	/* A race may need many tries: a third of the time goes to finding one. */
	at = md_fails(c, ops, n, INT32_MAX, h_now_ms() + MD_SHRINK_MS / 3, err,
		      sizeof(err), &replays);
	if (at < 0) {
		fprintf(stderr,
			"model: %s: none of %u replays on one thread fails: the "
			"mismatch needs several queues at once, or a rarer timing; "
			"rerun with the seed\n",
			c->name, replays);
		free(ops);
		return;
	}
	fprintf(stderr, "model: %s: a replay fails at op #%ld: %s\n", c->name, at, err);
	n = md_shrink(c, ops, (size_t)at + 1, h_now_ms() + MD_SHRINK_MS, err, sizeof(err),
		      &replays);
	fprintf(stderr,
		"model: %s: shortened to %zu operations (%u replays); on one queue, "
		"in order, up to 32 in flight, each waiting for the ones it overlaps, "
		"it fails with: %s\n",
		c->name, n, replays, err);
	for (size_t i = 0; i < n && i < 200; i++) {
		md_op_str(&ops[i], line, sizeof(line));
		fprintf(stderr, "  #%zu %s\n", i, line);
	}
	if (n > 200)
		fprintf(stderr, "  ... %zu more\n", n - 200);
	free(ops);
}

/* --- The test ---------------------------------------------------------------- */

struct md_thread {
	struct md_run r;
	enum iod_mode mode;
	unsigned qd;
	pthread_t th;
};

static void *md_thread_main(void *arg)
{
	struct md_thread *t = arg;

	md_run(&t->r, t->mode, t->qd);
	return NULL;
}

START_TEST(md_chain)
{
	/* Thread 0 resizes, so it never takes completions by callback. */
	static const enum iod_mode mode[MD_THREADS] = { IOD_WAIT, IOD_CALLBACK,
							IOD_POLL_FD, IOD_CALLBACK };
	static const unsigned qd[MD_THREADS] = { 16, 32, 32, 8 };
	const struct md_chain *c = &md_chains[_i];
	struct md_thread *th = calloc(MD_THREADS, sizeof(*th));
	struct md_run *runs[MD_THREADS], *bad = NULL;
	size_t per =
		md_nops / MD_THREADS * ((c->flags & MD_LONG) && !md_nops_given ? 8 : 1);
	struct md_op *ops[MD_THREADS];
	uint8_t *bufs[MD_THREADS];
	atomic_bool stop = false;
	uint64_t t0 = h_now_ms();
	unsigned long sum[5] = { 0 }, faults = 0;
	struct md_disk m;

	md_open(&m, c);
	for (unsigned t = 0; t < MD_THREADS; t++) {
		ops[t] = malloc(per * sizeof(*ops[t]));
		bufs[t] = h_alloc((size_t)IOD_QD_MAX * MD_MAX_COUNT * m.ss);
		md_gen(&m, ops[t], per, t);
		md_run_init(&th[t].r, &m, ops[t], per, bufs[t]);
		th[t].r.stop = &stop;
		th[t].mode = mode[t];
		th[t].qd = qd[t];
		runs[t] = &th[t].r;
		ck_assert_int_eq(pthread_create(&th[t].th, NULL, md_thread_main, &th[t]),
				 0);
	}
	for (unsigned t = 0; t < MD_THREADS; t++)
		pthread_join(th[t].th, NULL);
	for (unsigned t = 0; t < MD_THREADS; t++) {
		if (!bad && th[t].r.failed)
			bad = &th[t].r;
		for (int k = 0; k < 5; k++)
			sum[k] += th[t].r.count[k];
		faults += th[t].r.faults;
	}
	if (!bad) {
		md_final_check(&th[0].r);
		bad = th[0].r.failed ? &th[0].r : NULL;
	}
	md_close(&m);
	if (bad) {
		fprintf(stderr,
			"model: %s: MISMATCH, seed %llu (DISKCORE_MODEL_SEED=%llu "
			"DISKCORE_MODEL_OPS=%zu CK_RUN_CASE=%s): %s\n",
			c->name, (unsigned long long)md_seed, (unsigned long long)md_seed,
			per * MD_THREADS, c->name, bad->err);
		md_report(c, runs);
		ck_abort_msg("%s: seed %llu: %s", c->name, (unsigned long long)md_seed,
			     bad->err);
	}
	fprintf(stderr,
		"model: %s: seed %llu: %lu ops (%lu reads, %lu writes, %lu flushes, %lu "
		"unmaps, %lu resizes; %lu faults injected) in %.1f s, 0 mismatches\n",
		c->name, (unsigned long long)md_seed,
		sum[0] + sum[1] + sum[2] + sum[3] + sum[4], sum[MD_READ], sum[MD_WRITE],
		sum[MD_FLUSH], sum[MD_UNMAP], sum[MD_RESIZE_OP], faults,
		(double)(h_now_ms() - t0) / 1000);
	for (unsigned t = 0; t < MD_THREADS; t++) {
		free(ops[t]);
		free(bufs[t]);
	}
	free(th);
}
END_TEST

int main(void)
{
	const char *seed = getenv("DISKCORE_MODEL_SEED");
	const char *nops = getenv("DISKCORE_MODEL_OPS");
	Suite *s = suite_create("model");
	uint8_t key[64];

	md_seed = seed && *seed ? strtoull(seed, NULL, 0) :
				  h_mix64(h_now_ns() ^ (uint64_t)getpid());
	md_nops_given = nops && *nops;
	md_nops = md_nops_given ? (unsigned)strtoul(nops, NULL, 0) :
				  iod_scaled(12000, 400);
	if (md_nops < MD_THREADS)
		md_nops = MD_THREADS;
	fprintf(stderr, "model: seed %llu, %u operations per chain\n",
		(unsigned long long)md_seed, md_nops);
	for (int i = 0; i < 64; i++)
		key[i] = (uint8_t)(h_mix64((uint64_t)i + 64) >> 16);
	md_key = h_tmpfile_data(key, sizeof(key), 0600, ".key");
	for (int i = 0; i < MD_NCHAINS; i++) {
		const struct md_chain *c = &md_chains[i];
		TCase *tc;

		if (c->needs && !h_have_plugin(c->needs)) {
			fprintf(stderr, "model: %s left out: %s.so was not built\n",
				c->name, c->needs);
			continue;
		}
		tc = tcase_create(c->name);
		/* Long runs on demand: about 100 operations a second at worst. */
		if (md_nops > 10000)
			tcase_set_timeout(tc, md_nops / 100.0);
		tcase_add_loop_test(tc, md_chain, i, i + 1);
		suite_add_tcase(s, tc);
	}
	return h_run(s);
}
