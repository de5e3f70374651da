/* SPDX-License-Identifier: MIT */
/* vhdx: on the file engine (plugins/vhdx/vhdx_aio.c). Reads and writes of
 * present sectors go to the engine from the queue's thread while allocating
 * writes, bitmap updates, unmaps and log flushes of the same blocks run on the
 * worker pool; these tests make the two meet.
 *
 *  - Four threads, each with its own queue (the three consumer modes mixed),
 *    own interleaved 4 KiB slots: every 1 MiB block holds slots of all four,
 *    so one thread's reads and overwrites of a present block go to the engine
 *    while another allocates it or sets its bitmap bits. Writes (some FUA),
 *    reads, partial unmaps and flushes; every read is checked against what
 *    the slot must hold (iodrive.h stamps), and all again after a reopen.
 *    On a dynamic image and on a differencing child of a stamped parent.
 *  - A FUA write that goes to the engine after another write allocated its
 *    block: the allocation must reach the log before the FUA completes
 *    (checked after a crash: the process exits without closing).
 *  - describe() says which engine the image uses.
 * The same tests run with DISKCORE_IO_ENGINE=pool (vhdx-aio-pool). */
#include "harness.h"
#include "iodrive.h"
#include "vhdtest.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define VA_THREADS 4
#define VA_SLOTS 64	     /* per thread */
#define VA_SLOT_SECTORS 8    /* 4 KiB */
#define VA_STRIDE 256	     /* sectors between a thread's slots: 8 per 1 MiB block */
#define VA_OPS 400	     /* per thread and round, before scaling */
#define VA_ROUNDS 3	     /* the disk is reopened between rounds */
#define VA_STALL_MS 60000    /* no completion for this long fails the run */
#define VA_ZEROED UINT32_MAX /* a slot's generation after an unmap */
#define VA_PARENT_TID 99     /* the stamp the parent holds everywhere */

/* A slot's place: thread tid's slot k. */
static uint64_t va_sector(unsigned tid, unsigned k)
{
	return (uint64_t)k * VA_STRIDE + (uint64_t)tid * VA_SLOT_SECTORS;
}

struct va_req {
	int slot; /* -1: a flush */
	uint32_t op, gen;
	struct iovec iov;
	uint8_t *buf;
};

struct va_thread {
	dc_disk *disk;
	bool diff; /* never-written slots hold the parent's stamp, else zeroes */
	unsigned tid;
	enum iod_mode mode;
	unsigned budget, issued;
	uint64_t rng;
	uint32_t *gen; /* per slot: last generation written; 0 never; VA_ZEROED */
	bool busy[VA_SLOTS];
	struct va_req req[IOD_QD_MAX];
	char err[512];
	pthread_t th;
};

/* Does the slot at sector hold what generation gen says? */
static bool va_slot_ok(const uint8_t *buf, uint64_t sector, unsigned tid, uint32_t gen,
		       bool diff, char *why, size_t len)
{
	for (unsigned s = 0; s < VA_SLOT_SECTORS; s++) {
		const uint8_t *p = buf + (size_t)s * 512;

		if (gen == VA_ZEROED || (gen == 0 && !diff)) {
			if (h_check_zero(p, 512) >= 0) {
				snprintf(why, len, "sector %llu is not zero",
					 (unsigned long long)(sector + s));
				return false;
			}
		} else if (!iod_check(p, 512, sector + s, gen ? tid : VA_PARENT_TID,
				      gen ? gen : 1, why, len)) {
			return false;
		}
	}
	return true;
}

static int va_next(void *arg, unsigned i, struct dc_io *io)
{
	struct va_thread *t = arg;
	struct va_req *r = &t->req[i];
	uint64_t x = h_mix64(t->rng++);
	unsigned k;

	if (t->issued == t->budget)
		return IOD_END;
	if (++t->issued % 16 == 0) {
		r->slot = -1;
		io->op = DC_OP_FLUSH;
		return IOD_SUBMIT;
	}
	for (k = x % VA_SLOTS; t->busy[k]; k = (k + 1) % VA_SLOTS)
		;
	t->busy[k] = true;
	r->slot = (int)k;
	io->sector = va_sector(t->tid, k);
	switch ((x >> 32) % 8) {
	case 0: /* unmap: zeroes in place (the block is never whole) */
		r->op = DC_OP_UNMAP;
		r->gen = VA_ZEROED;
		io->count = VA_SLOT_SECTORS;
		io->op = r->op;
		return IOD_SUBMIT;
	case 1:
	case 2:
	case 3:
		r->op = DC_OP_WRITE;
		r->gen = t->gen[k] == VA_ZEROED ? 1 : t->gen[k] + 1;
		iod_stamp(r->buf, 512, io->sector, VA_SLOT_SECTORS, t->tid, r->gen);
		io->flags = (x >> 40) % 4 == 0 ? DC_IO_FUA : 0;
		break;
	default:
		r->op = DC_OP_READ;
		r->gen = t->gen[k];
		memset(r->buf, 0xa5, VA_SLOT_SECTORS * 512);
	}
	io->op = r->op;
	r->iov = (struct iovec){ r->buf, VA_SLOT_SECTORS * 512 };
	io->iov = &r->iov;
	io->iovcnt = 1;
	return IOD_SUBMIT;
}

static int va_done(void *arg, unsigned i, const struct dc_completion *c)
{
	struct va_thread *t = arg;
	struct va_req *r = &t->req[i];
	char why[160];

	if (c->result) {
		snprintf(t->err, sizeof(t->err), "%s: op %u of slot %d failed: %s",
			 iod_mode_name[t->mode], r->slot < 0 ? DC_OP_FLUSH : r->op,
			 r->slot, dc_strerror(c->result));
		return -1;
	}
	if (r->slot < 0)
		return 0;
	t->busy[r->slot] = false;
	if (r->op != DC_OP_READ) {
		t->gen[r->slot] = r->gen;
		return 0;
	}
	if (va_slot_ok(r->buf, va_sector(t->tid, (unsigned)r->slot), t->tid, r->gen,
		       t->diff, why, sizeof(why)))
		return 0;
	snprintf(t->err, sizeof(t->err), "%s: read of slot %d (generation %u): %s",
		 iod_mode_name[t->mode], r->slot, r->gen, why);
	return -1;
}

static const struct iod_ops va_ops = { .next = va_next, .done = va_done };

static void *va_main(void *arg)
{
	struct va_thread *t = arg;
	uint8_t *bufs = h_alloc((size_t)IOD_QD_MAX * VA_SLOT_SECTORS * 512);

	for (unsigned i = 0; i < IOD_QD_MAX; i++)
		t->req[i].buf = bufs + (size_t)i * VA_SLOT_SECTORS * 512;
	if (iod_run(t->disk, t->mode, 32, &va_ops, t, VA_STALL_MS, t->err,
		    sizeof(t->err)) < 0 &&
	    !t->err[0])
		snprintf(t->err, sizeof(t->err), "%s: failed", iod_mode_name[t->mode]);
	free(bufs);
	return NULL;
}

/* Every slot of every thread, read back on the test's thread. */
static void va_check_all(dc_disk *d, uint32_t gen[VA_THREADS][VA_SLOTS], bool diff)
{
	uint8_t *buf = h_alloc(VA_SLOT_SECTORS * 512);
	char why[160];

	for (unsigned t = 0; t < VA_THREADS; t++)
		for (unsigned k = 0; k < VA_SLOTS; k++) {
			ck_assert_int_eq(dc_read(d, va_sector(t, k), buf,
						 VA_SLOT_SECTORS * 512),
					 0);
			ck_assert_msg(va_slot_ok(buf, va_sector(t, k), t, gen[t][k], diff,
						 why, sizeof(why)),
				      "thread %u, slot %u (generation %u): %s", t, k,
				      gen[t][k], why);
		}
	free(buf);
}

/* The rounds on spec; diff: spec is a child of a stamped parent. */
static void va_run(const char *spec, const char *path, bool diff)
{
	static uint32_t gen[VA_THREADS][VA_SLOTS];
	struct va_thread th[VA_THREADS];

	memset(gen, 0, sizeof(gen));
	for (int round = 0; round < VA_ROUNDS; round++) {
		dc_disk *d = h_open(spec, 0);

		for (unsigned i = 0; i < VA_THREADS; i++) {
			th[i] = (struct va_thread){
				.disk = d,
				.diff = diff,
				.tid = i,
				.mode = (enum iod_mode)((i + (unsigned)round) %
							IOD__MODES),
				.budget = iod_scaled(VA_OPS, 64),
				.rng = h_mix64((uint64_t)round << 8 | i |
					       (uint64_t)diff << 16),
				.gen = gen[i],
			};
			ck_assert_int_eq(pthread_create(&th[i].th, NULL, va_main, &th[i]),
					 0);
		}
		for (unsigned i = 0; i < VA_THREADS; i++)
			pthread_join(th[i].th, NULL);
		for (unsigned i = 0; i < VA_THREADS; i++)
			ck_assert_msg(!th[i].err[0], "round %d, thread %u: %s", round, i,
				      th[i].err);
		va_check_all(d, gen, diff);
		dc_close(d);
	}
	/* qemu-img opens no differencing VHDX (Operation not supported). */
	if (!diff)
		ck_assert_int_eq(h_sh("qemu-img check -q -f vhdx '%s'", path), 0);
}

START_TEST(vhdx_aio_dynamic)
{
	char *path = h_tmppath(".vhdx"), *spec = h_fmt("vhdx:%s", path);

	vt_create("vhdx", path, "create=16M;block=1M");
	va_run(spec, path, false);
	free(spec);
	free(path);
}
END_TEST

START_TEST(vhdx_aio_differencing)
{
	char *base = h_tmppath(".vhdx"), *child = h_tmppath(".vhdx");
	char *spec = h_fmt("vhdx:%s", child);
	size_t len = 16 << 20;
	uint8_t *buf = h_alloc(len);
	dc_disk *d;

	vt_create("vhdx", base, "create=16M;block=1M");
	d = h_openf(0, "vhdx:%s", base);
	iod_stamp(buf, 512, 0, len / 512, VA_PARENT_TID, 1);
	ck_assert_int_eq(dc_write(d, 0, buf, len, 0), 0);
	dc_close(d);
	free(buf);
	vt_create("vhdx", child, "parent=%s", base);
	va_run(spec, child, true);
	free(spec);
	free(child);
	free(base);
}
END_TEST

/* In a child process: make the image (spec, over base when it is set), allocate
 * a block with a plain write, then a FUA write inside it (an engine write),
 * then exit without a flush or close. */
static int va_fua_child(const char *spec, const char *base)
{
	uint8_t a[16 * 512], b[8 * 512];
	dc_disk *w = NULL;
	char *s;

	h_fill(a, sizeof(a), 1);
	h_fill(b, sizeof(b), 2);
	if (base) {
		s = h_fmt("vhdx:%s;create=8M;block=1M", base);
		if (dc_open(s, 0, &w))
			return 1;
		dc_close(w);
		free(s);
	}
	s = base ? h_fmt("%s;parent=%s", spec, base) :
		   h_fmt("%s;create=8M;block=1M", spec);
	if (dc_open(s, 0, &w))
		return 2;
	/* The first write of an open renews DataWriteGuid (the pool path). */
	if (dc_write(w, 4096, a, sizeof(a), 0) || dc_flush(w))
		return 3;
	if (dc_write(w, 2048, a, sizeof(a), 0) ||
	    dc_write(w, 2048 + 8, b, sizeof(b), DC_IO_FUA))
		return 4;
	return 0;
}

/* The FUA write's block reaches the log, on a dynamic image (fully present
 * block) and a differencing one (partially present, its bits in memory). */
START_TEST(vhdx_aio_fua_after_allocation)
{
	char *path[2] = { h_tmppath(".vhdx"), h_tmppath(".vhdx") };
	char *base = h_tmppath(".vhdx"), *spec[2];
	uint8_t want[16 * 512], got[16 * 512];
	int status;
	pid_t pid;
	dc_disk *d;

	/* The core's threads do not survive fork: both children run before this
	 * process opens anything. */
	for (int i = 0; i < 2; i++) {
		spec[i] = h_fmt("vhdx:%s", path[i]);
		pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0)
			_exit(va_fua_child(spec[i], i ? base : NULL));
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert_int_eq(WEXITSTATUS(status), 0);
	}
	h_fill(want, sizeof(want), 1);
	h_fill(want + 8 * 512, 8 * 512, 2);
	for (int i = 0; i < 2; i++) {
		d = h_open(spec[i], DC_OPEN_READ_ONLY);
		ck_assert_int_eq(dc_read(d, 2048, got, sizeof(got)), 0);
		ck_assert_msg(memcmp(got, want, sizeof(got)) == 0,
			      "%s: the FUA write is lost after the crash", spec[i]);
		dc_close(d);
		free(spec[i]);
		free(path[i]);
	}
	free(base);
}
END_TEST

START_TEST(vhdx_aio_describe)
{
	char *path = h_tmppath(".vhdx");
	const char *env = getenv("DISKCORE_IO_ENGINE");
	struct h_desc t;
	const char *io;
	dc_disk *d;

	vt_create("vhdx", path, "create=8M;block=1M");
	d = h_openf(0, "vhdx:%s", path);
	h_describe(d, "vhdx", &t);
	io = h_desc_get(&t, "io");
	ck_assert_ptr_nonnull(io);
	if (env && !strcmp(env, "pool"))
		ck_assert_str_eq(io, "worker pool (DISKCORE_IO_ENGINE=pool)");
	else
		ck_assert_msg(!strcmp(io, "io_uring, one ring per queue") ||
				      !strncmp(io, "worker pool (", 13),
			      "io: %s", io);
	dc_close(d);
	free(path);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("vhdx-aio");
	TCase *tc = tcase_create("vhdx-aio");

	if (!h_have_plugin("vhdx")) {
		fprintf(stderr, "SKIP: vhdx.so was not built\n");
		return 77;
	}
	tcase_add_test(tc, vhdx_aio_dynamic);
	tcase_add_test(tc, vhdx_aio_differencing);
	tcase_add_test(tc, vhdx_aio_fua_after_allocation);
	tcase_add_test(tc, vhdx_aio_describe);
	suite_add_tcase(s, tc);
	return h_run(s);
}
