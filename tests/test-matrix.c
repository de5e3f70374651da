/* SPDX-License-Identifier: MIT */
/* The concurrency matrix (issue 11, item 7): every decorator and layer over
 * every other, alone, in ordered pairs and in a few triples, over bottoms that
 * complete on different threads: mem: (inline), file: (the core's worker
 * pool), blockdev: (an io_uring reaper, or the consumer inside
 * dc_queue_wait()). delay:0;p99=1 parks every 100th request on the core's
 * timer thread, so some completions come from there too.
 *
 * Each chain runs three rounds of MX_THREADS threads, each with its own queue
 * and its own slots of the disk, the three consumer modes mixed in every round
 * and rotated between rounds; each thread keeps up to 32 requests in flight,
 * writing and reading back sectors stamped with its id, the sector and a
 * generation (iodrive.h), plus flushes. Every byte read is checked, and the
 * whole disk once more at the end.
 *
 * CK_RUN_CASE=mem|file|blockdev runs the chains over one bottom. Iterations
 * scale with $DISKCORE_TEST_SCALE (iodrive.h). */
#include "harness.h"
#include "iodrive.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MX_DISK_MB 16
#define MX_THREADS 4
#define MX_ROUNDS 3
#define MX_SLOTS 64	  /* per thread: more than the deepest queue */
#define MX_SLOT_SECTORS 8 /* one request covers one slot */
#define MX_OPS 256	  /* per thread and round, before scaling */
#define MX_STALL_MS 60000 /* no completion for this long fails the run */
#define MX_FLUSH_EVERY 16 /* every 16th request is a flush */

enum mx_elem {
	MX_DELAY,
	MX_CRYPT,
	MX_PRWRAP,
	MX_STRIPED,
	MX_MEMDIFF,
	MX_SQLDIFF,
	MX_NELEM
};
static const char *const mx_elem_name[MX_NELEM] = { "delay",   "crypt",	  "prwrap",
						    "striped", "memdiff", "sqldiff" };
enum mx_bottom { MX_MEM, MX_FILE, MX_BLOCKDEV, MX_NBOTTOM };
static const char *const mx_bottom_name[MX_NBOTTOM] = { "mem", "file", "blockdev" };

/* Top to bottom: elem[0] is nearest the caller. */
struct mx_chain {
	uint8_t elem[3];
	uint8_t n;
	uint8_t bottom;
};

/* A few deeper chains: the delay-over-crypt corruption of issue 18 and its
 * mirror, with layers and fan-out between the two. */
static const uint8_t mx_triples[][3] = {
	{ MX_DELAY, MX_CRYPT, MX_MEMDIFF },   { MX_CRYPT, MX_DELAY, MX_MEMDIFF },
	{ MX_MEMDIFF, MX_CRYPT, MX_DELAY },   { MX_DELAY, MX_CRYPT, MX_STRIPED },
	{ MX_CRYPT, MX_STRIPED, MX_DELAY },   { MX_STRIPED, MX_CRYPT, MX_DELAY },
	{ MX_SQLDIFF, MX_CRYPT, MX_DELAY },   { MX_PRWRAP, MX_DELAY, MX_CRYPT },
	{ MX_DELAY, MX_SQLDIFF, MX_STRIPED },
};

static struct mx_chain mx_chains[MX_NBOTTOM * 64];
static int mx_nchains;
static int mx_first[MX_NBOTTOM + 1]; /* chains of bottom b: [first[b], first[b+1]) */
static bool mx_have[MX_NELEM];
static char *mx_key;

static void mx_name(const struct mx_chain *c, char *buf, size_t len)
{
	size_t o = 0;

	for (unsigned i = 0; i < c->n; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s/", mx_elem_name[c->elem[i]]);
	snprintf(buf + o, len - o, "%s", mx_bottom_name[c->bottom]);
}

static char *mx_bottom_spec(int b, uint64_t mb)
{
	char *path, *s;

	if (b == MX_MEM)
		return h_fmt("mem:%lluM", (unsigned long long)mb);
	path = h_tmpfile(mb << 20, ".img");
	s = h_fmt("%s:%s", b == MX_FILE ? "file" : "blockdev", path);
	free(path);
	return s;
}

/* The spec of c from element i down, for a disk of mb MiB. A sqldiff below
 * another layer is opened read-only, so its database is created beforehand. */
static char *mx_spec(const struct mx_chain *c, unsigned i, uint64_t mb, bool below_layer)
{
	char *rest, *s, *a, *path;

	/* (The second test bounds the recursion for the compiler.) */
	if (i == c->n || i >= sizeof(c->elem))
		return mx_bottom_spec(c->bottom, mb);
	switch (c->elem[i]) {
	case MX_STRIPED:
		/* A 2K chunk splits every 4K slot across both members. */
		a = mx_spec(c, i + 1, mb / 2, below_layer);
		rest = mx_spec(c, i + 1, mb / 2, below_layer);
		s = h_fmt("striped;chunk=2K:[%s,%s]", a, rest);
		free(a);
		break;
	case MX_SQLDIFF:
		path = h_tmppath(".dbhd");
		rest = mx_spec(c, i + 1, mb, true);
		if (below_layer) {
			dc_disk *d = h_openf(0, "sqldiff:%s;create:mem:%lluM", path,
					     (unsigned long long)mb);

			dc_close(d);
			s = h_fmt("sqldiff:%s:%s", path, rest);
		} else {
			s = h_fmt("sqldiff:%s;create:%s", path, rest);
		}
		free(path);
		break;
	default:
		rest = mx_spec(c, i + 1, mb, below_layer || c->elem[i] == MX_MEMDIFF);
		s = c->elem[i] == MX_DELAY ?
			    h_fmt("delay:0;p99=1:%s", rest) :
		    c->elem[i] == MX_CRYPT ?
			    h_fmt("crypt:xts-aes-256:%s:%s", mx_key, rest) :
		    c->elem[i] == MX_PRWRAP ? h_fmt("prwrap:%s", rest) :
					      h_fmt("memdiff:%s", rest);
	}
	free(rest);
	return s;
}

/* --- One thread's work --------------------------------------------------------- */

/* A thread's slots, kept across rounds: slot k is MX_SLOT_SECTORS sectors at
 * first + k * stride. */
struct mx_region {
	uint32_t tid;
	uint64_t first, stride;
	uint32_t gen[MX_SLOTS]; /* last generation written; 0: never */
};

struct mx_req {
	int slot; /* -1: a flush */
	uint32_t op, gen;
	struct iovec iov[3];
	uint8_t *buf;
};

struct mx_thread {
	struct mx_region *rg;
	dc_disk *disk;
	enum iod_mode mode;
	unsigned qd, budget, issued;
	uint32_t ss;
	uint64_t rng;
	bool busy[MX_SLOTS];
	struct mx_req req[IOD_QD_MAX];
	char err[768];
	pthread_t th;
};

static uint64_t mx_rand(struct mx_thread *t)
{
	return h_mix64(t->rng++);
}

static int mx_next(void *arg, unsigned i, struct dc_io *io)
{
	struct mx_thread *t = arg;
	struct mx_req *r = &t->req[i];
	size_t len = (size_t)MX_SLOT_SECTORS * t->ss;
	uint64_t x;
	unsigned k;

	if (t->issued == t->budget)
		return IOD_END;
	if (++t->issued % MX_FLUSH_EVERY == 0) {
		r->slot = -1;
		io->op = DC_OP_FLUSH;
		return IOD_SUBMIT;
	}
	x = mx_rand(t);
	for (k = x % MX_SLOTS; t->busy[k]; k = (k + 1) % MX_SLOTS)
		;
	t->busy[k] = true;
	r->slot = (int)k;
	io->sector = t->rg->first + k * t->rg->stride;
	if (t->rg->gen[k] == 0 || (x >> 32) % 2) {
		r->op = DC_OP_WRITE;
		r->gen = t->rg->gen[k] + 1;
		iod_stamp(r->buf, t->ss, io->sector, MX_SLOT_SECTORS, t->rg->tid, r->gen);
		io->flags = (x >> 40) % 8 == 0 ? DC_IO_FUA : 0;
	} else {
		r->op = DC_OP_READ;
		r->gen = t->rg->gen[k];
		memset(r->buf, 0xa5, len);
	}
	io->op = r->op;
	/* One to three segments, cut at sector boundaries. */
	io->iovcnt = 1 + (int)((x >> 48) % 3);
	size_t cut1 = t->ss * (1 + (x >> 52) % 3),
	       cut2 = cut1 + t->ss * (1 + (x >> 56) % 3);
	if (io->iovcnt == 1)
		cut1 = len;
	if (io->iovcnt < 3)
		cut2 = len;
	r->iov[0] = (struct iovec){ r->buf, cut1 };
	r->iov[1] = (struct iovec){ r->buf + cut1, cut2 - cut1 };
	r->iov[2] = (struct iovec){ r->buf + cut2, len - cut2 };
	io->iov = r->iov;
	return IOD_SUBMIT;
}

static int mx_done(void *arg, unsigned i, const struct dc_completion *c)
{
	struct mx_thread *t = arg;
	struct mx_req *r = &t->req[i];
	uint64_t sector;
	char why[160];

	if (c->result) {
		snprintf(t->err, sizeof(t->err),
			 "%s: %s of slot %d failed: %d (%s), detail %d",
			 iod_mode_name[t->mode],
			 r->slot < 0	     ? "flush" :
			 r->op == DC_OP_READ ? "read" :
					       "write",
			 r->slot, c->result, dc_strerror(c->result), c->detail);
		return -1;
	}
	if (r->slot < 0)
		return 0;
	t->busy[r->slot] = false;
	sector = t->rg->first + (uint64_t)r->slot * t->rg->stride;
	if (r->op == DC_OP_WRITE) {
		t->rg->gen[r->slot] = r->gen;
		return 0;
	}
	for (unsigned s = 0; s < MX_SLOT_SECTORS; s++) {
		if (iod_check(r->buf + (size_t)s * t->ss, t->ss, sector + s, t->rg->tid,
			      r->gen, why, sizeof(why)))
			continue;
		snprintf(t->err, sizeof(t->err),
			 "%s, qd %u: read of sector %llu (thread %u, generation %u) %s",
			 iod_mode_name[t->mode], t->qd, (unsigned long long)(sector + s),
			 t->rg->tid, r->gen, why);
		return -1;
	}
	return 0;
}

static const struct iod_ops mx_ops = { .next = mx_next, .done = mx_done };

static void *mx_thread_main(void *arg)
{
	struct mx_thread *t = arg;
	uint8_t *bufs = h_alloc((size_t)IOD_QD_MAX * MX_SLOT_SECTORS * t->ss);

	for (unsigned i = 0; i < IOD_QD_MAX; i++)
		t->req[i].buf = bufs + (size_t)i * MX_SLOT_SECTORS * t->ss;
	if (iod_run(t->disk, t->mode, t->qd, &mx_ops, t, MX_STALL_MS, t->err,
		    sizeof(t->err)) < 0 &&
	    !t->err[0])
		snprintf(t->err, sizeof(t->err), "%s: failed", iod_mode_name[t->mode]);
	free(bufs);
	return NULL;
}

/* Read every slot written back on the test's thread, after all queues closed. */
static void mx_check_all(dc_disk *d, const char *name, const struct mx_region *rg,
			 uint32_t ss)
{
	uint8_t *buf = h_alloc((size_t)MX_SLOT_SECTORS * ss);
	char why[160];

	for (int i = 0; i < MX_THREADS; i++) {
		for (unsigned k = 0; k < MX_SLOTS; k++) {
			uint64_t sector = rg[i].first + k * rg[i].stride;

			if (!rg[i].gen[k])
				continue;
			ck_assert_int_eq(dc_read(d, sector, buf, MX_SLOT_SECTORS * ss),
					 0);
			for (unsigned s = 0; s < MX_SLOT_SECTORS; s++)
				ck_assert_msg(iod_check(buf + s * ss, ss, sector + s,
							rg[i].tid, rg[i].gen[k], why,
							sizeof(why)),
					      "%s: at the end, sector %llu %s (expected "
					      "thread %u, generation %u)",
					      name, (unsigned long long)(sector + s), why,
					      rg[i].tid, rg[i].gen[k]);
		}
	}
	free(buf);
}

START_TEST(mx_chain)
{
	static const unsigned qd[MX_THREADS] = { 32, 16, 8, 32 };
	const struct mx_chain *c = &mx_chains[_i];
	struct mx_region rg[MX_THREADS];
	struct mx_thread th[MX_THREADS];
	char name[64], *spec;
	dc_disk *d;
	uint32_t ss;
	uint64_t per;

	mx_name(c, name, sizeof(name));
	spec = mx_spec(c, 0, MX_DISK_MB, false);
	d = h_open(spec, 0);
	ss = dc_sector_size(d);
	per = dc_sector_count(d) / MX_THREADS;
	for (int i = 0; i < MX_THREADS; i++) {
		rg[i] = (struct mx_region){ .tid = (uint32_t)i + 1, .first = i * per };
		rg[i].stride = per / MX_SLOTS / MX_SLOT_SECTORS * MX_SLOT_SECTORS;
		ck_assert_uint_ge(rg[i].stride, MX_SLOT_SECTORS);
	}
	for (int round = 0; round < MX_ROUNDS; round++) {
		for (int i = 0; i < MX_THREADS; i++) {
			th[i] = (struct mx_thread){
				.rg = &rg[i],
				.disk = d,
				.mode = (enum iod_mode)((i + round) % IOD__MODES),
				.qd = qd[i],
				.budget = iod_scaled(MX_OPS, 2 * MX_FLUSH_EVERY),
				.ss = ss,
				.rng = h_mix64((uint64_t)_i << 32 | (uint64_t)round << 8 |
					       (uint64_t)i),
			};
			ck_assert_int_eq(pthread_create(&th[i].th, NULL, mx_thread_main,
							&th[i]),
					 0);
		}
		for (int i = 0; i < MX_THREADS; i++)
			pthread_join(th[i].th, NULL);
		for (int i = 0; i < MX_THREADS; i++)
			ck_assert_msg(!th[i].err[0], "%s (%s): round %d, thread %u: %s",
				      name, spec, round, rg[i].tid, th[i].err);
	}
	mx_check_all(d, name, rg, ss);
	dc_close(d);
	free(spec);
}
END_TEST

static bool mx_usable(const uint8_t *elem, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (!mx_have[elem[i]])
			return false;
	return true;
}

static void mx_add(const uint8_t *elem, unsigned n, int b)
{
	struct mx_chain *c = &mx_chains[mx_nchains];

	if (!mx_usable(elem, n))
		return;
	*c = (struct mx_chain){ .n = (uint8_t)n, .bottom = (uint8_t)b };
	memcpy(c->elem, elem, n);
	mx_nchains++;
}

int main(void)
{
	static const char *const plugin_of[MX_NELEM] = { "delay",   "crypt", "prwrap",
							 "striped", "ram",   "sqlite" };
	Suite *s = suite_create("matrix");
	uint8_t key[64];

	for (int e = 0; e < MX_NELEM; e++) {
		mx_have[e] = h_have_plugin(plugin_of[e]);
		if (!mx_have[e])
			fprintf(stderr,
				"matrix: %s chains left out: %s.so was not built\n",
				mx_elem_name[e], plugin_of[e]);
	}
	for (int i = 0; i < 64; i++)
		key[i] = (uint8_t)(h_mix64((uint64_t)i) >> 8);
	mx_key = h_tmpfile_data(key, sizeof(key), 0600, ".key");
	for (int b = 0; b < MX_NBOTTOM; b++) {
		mx_first[b] = mx_nchains;
		if (b == MX_BLOCKDEV && !h_have_plugin("blockdev")) {
			fprintf(stderr, "matrix: blockdev chains left out: blockdev.so "
					"was not built\n");
			continue;
		}
		for (uint8_t x = 0; x < MX_NELEM; x++) {
			mx_add(&x, 1, b);
			for (uint8_t y = 0; y < MX_NELEM; y++)
				if (y != x)
					mx_add((const uint8_t[]){ x, y }, 2, b);
		}
		for (size_t t = 0; t < sizeof(mx_triples) / sizeof(mx_triples[0]); t++)
			mx_add(mx_triples[t], 3, b);
	}
	mx_first[MX_NBOTTOM] = mx_nchains;
	for (int b = 0; b < MX_NBOTTOM; b++) {
		TCase *tc;

		if (mx_first[b] == mx_first[b + 1])
			continue;
		tc = tcase_create(mx_bottom_name[b]);
		tcase_add_loop_test(tc, mx_chain, mx_first[b], mx_first[b + 1]);
		suite_add_tcase(s, tc);
	}
	return h_run(s);
}
