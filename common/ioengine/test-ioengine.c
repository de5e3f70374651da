/* SPDX-License-Identifier: MIT */
/* ioengine on a real file, in both modes (io_uring and the forced worker
 * pool), completions reaped by the engine thread and by a driven poll:
 * scattered writes read back, short reads at the end of the file, more
 * requests than a ring holds, O_DIRECT with unaligned buffers, flush, punch,
 * and a watch on the engine thread. (The fallback when io_uring is refused is
 * tested end to end in tests/test-blockdev.c, file_without_io_uring.) */
#include "internal.h"

#include "check-run.h"

#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define FILE_SIZE (2u << 20)
#define NREQ 300 /* more than a ring's CQ holds */
#define BLK 4096

struct tio {
	struct ioe_req r;
	int res;
};

static atomic_int t_done;
static pthread_mutex_t t_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t t_cond = PTHREAD_COND_INITIALIZER;

static void t_done_fn(struct ioe_req *r, int res)
{
	((struct tio *)r)->res = res;
	pthread_mutex_lock(&t_lock);
	atomic_fetch_add(&t_done, 1);
	pthread_cond_broadcast(&t_cond);
	pthread_mutex_unlock(&t_lock);
}

/* Wait until n requests are done: by polling q (driven) or on the cond,
 * within 10 s. */
static void t_wait(struct ioe_queue *q, bool driven, int n)
{
	struct timespec end;

	clock_gettime(CLOCK_REALTIME, &end);
	end.tv_sec += 10;
	while (atomic_load(&t_done) < n) {
		if (driven) {
			ck_assert_int_ge(ioe_queue_poll(q, -1, 100), 0);
			continue;
		}
		pthread_mutex_lock(&t_lock);
		if (atomic_load(&t_done) < n)
			ck_assert_int_eq(pthread_cond_timedwait(&t_cond, &t_lock, &end),
					 0);
		pthread_mutex_unlock(&t_lock);
	}
}

static void t_req(struct tio *t, int op, uint64_t off, const struct iovec *iov,
		  int iovcnt, size_t len)
{
	memset(t, 0, sizeof(*t));
	t->r.op = (uint8_t)op;
	t->r.off = off;
	t->r.len = len;
	t->r.buf = (struct dc_buf){ .iov = iov, .iovcnt = iovcnt, .len = len };
	t->r.done = t_done_fn;
	atomic_store(&t_done, 0);
}

static void t_rw(struct ioe_queue *q, bool driven, struct tio *t, int op, uint64_t off,
		 const struct iovec *iov, int iovcnt, size_t len)
{
	t_req(t, op, off, iov, iovcnt, len);
	ioe_submit(q, &t->r);
	t_wait(q, driven, 1);
}

static char *t_tmpfile(void)
{
	char *path = strdup("/tmp/test-ioengine-XXXXXX");
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, FILE_SIZE), 0);
	close(fd);
	return path;
}

/* Many blocks in flight, each written through 32 small segments (beyond the
 * inline iovecs), then read back in one vector per block. */
static void t_many(struct ioe_queue *q, bool driven)
{
	static struct tio t[NREQ];
	static struct iovec iov[NREQ][32];
	char *data = malloc((size_t)NREQ * BLK), *back = calloc(NREQ, BLK);

	for (size_t i = 0; i < (size_t)NREQ * BLK; i++)
		data[i] = (char)(i * 7 + i / BLK);
	atomic_store(&t_done, 0);
	for (int i = 0; i < NREQ; i++) {
		for (int s = 0; s < 32; s++)
			iov[i][s] = (struct iovec){ data + i * BLK + s * 128, 128 };
		memset(&t[i], 0, sizeof(t[i]));
		t[i].r.op = IOE_WRITE;
		t[i].r.off = (uint64_t)i * BLK;
		t[i].r.buf = (struct dc_buf){ .iov = iov[i], .iovcnt = 32, .len = BLK };
		t[i].r.done = t_done_fn;
		ioe_submit(q, &t[i].r);
	}
	t_wait(q, driven, NREQ);
	atomic_store(&t_done, 0);
	for (int i = 0; i < NREQ; i++) {
		ck_assert_int_eq(t[i].res, 0);
		iov[i][0] = (struct iovec){ back + i * BLK, BLK };
		t[i].r.op = IOE_READ;
		t[i].r.buf = (struct dc_buf){ .iov = iov[i], .iovcnt = 1, .len = BLK };
		ioe_submit(q, &t[i].r);
	}
	t_wait(q, driven, NREQ);
	for (int i = 0; i < NREQ; i++)
		ck_assert_int_eq(t[i].res, 0);
	ck_assert(memcmp(data, back, (size_t)NREQ * BLK) == 0);
	free(data);
	free(back);
}

/* Close q, its engine and the temporary file at path (t_tmpfile). */
static void t_end(struct ioe_queue *q, struct ioe_file *f, int fd, char *path)
{
	ioe_queue_close(q);
	ioe_file_close(f);
	close(fd);
	unlink(path);
	free(path);
}

/* The engine on fd, in the mode asked for (pool: DISKCORE_IO_ENGINE=pool). */
static struct ioe_file *t_engine(int fd, bool pool, bool direct)
{
	struct ioe_file *f;

	ck_assert_int_ge(fd, 0);
	if (pool)
		setenv("DISKCORE_IO_ENGINE", "pool", 1);
	ck_assert_int_eq(ioe_file_open(fd, direct, 4096, IOE_AUTO, &f), 0);
	unsetenv("DISKCORE_IO_ENGINE");
	ck_assert_int_eq(ioe_file_uring(f), !pool);
	ck_assert_ptr_nonnull(strstr(ioe_file_describe(f), pool ? "pool" : "io_uring"));
	return f;
}

/* Queues opened by t_one_mode() are bound to their thread, as a core queue
 * opened with DC_QUEUE_THREAD | DC_QUEUE_POLL is (uring.c, rq_own). */
static bool t_bound;

static void t_one_mode(bool pool, bool driven, bool direct)
{
	char *path = t_tmpfile(), *buf;
	int fd = open(path, O_RDWR | (direct ? O_DIRECT : 0));
	struct ioe_file *f = t_engine(fd, pool, direct);
	struct ioe_queue *q;
	struct iovec iov;
	struct tio t;

	ck_assert_int_eq(ioe_queue_open(f, &q), 0);
	q->bound = t_bound;
	if (driven)
		ck_assert_int_ge(ioe_queue_poll(q, -1, 0), 0);
	/* Driven from the start: the ring became the thread's own (6.1+). */
	ck_assert_int_eq(q->single, t_bound && driven && !pool);
	t_many(q, driven);

	/* Unaligned for O_DIRECT: bounced. A read across the end is short. */
	buf = malloc(2 * BLK + 1);
	memset(buf, 0x5a, 2 * BLK + 1);
	iov = (struct iovec){ buf + 1, 2 * BLK };
	t_rw(q, driven, &t, IOE_WRITE, FILE_SIZE - 2 * BLK, &iov, 1, 2 * BLK);
	ck_assert_int_eq(t.res, 0);
	memset(buf, 0, 2 * BLK + 1);
	t_rw(q, driven, &t, IOE_READ, FILE_SIZE - BLK, &iov, 1, 2 * BLK);
	ck_assert_int_eq(t.res, IOE_EOF);
	t_rw(q, driven, &t, IOE_READ, FILE_SIZE - 2 * BLK, &iov, 1, 2 * BLK);
	ck_assert_int_eq(t.res, 0);
	ck_assert(buf[1] == 0x5a && buf[2 * BLK] == 0x5a);

	t_rw(q, driven, &t, IOE_FLUSH, 0, NULL, 0, 0);
	ck_assert_int_eq(t.res, 0);
	t_rw(q, driven, &t, IOE_PUNCH, FILE_SIZE - 2 * BLK, NULL, 0, 2 * BLK);
	ck_assert_int_eq(t.res, 0);
	t_rw(q, driven, &t, IOE_READ, FILE_SIZE - 2 * BLK, &iov, 1, 2 * BLK);
	ck_assert_int_eq(t.res, 0);
	ck_assert(buf[1] == 0 && buf[2 * BLK] == 0);

	t_end(q, f, fd, path);
	free(buf);
}

START_TEST(uring_thread)
{
	t_one_mode(false, false, false);
}
END_TEST

START_TEST(uring_driven)
{
	t_one_mode(false, true, false);
}
END_TEST

START_TEST(uring_direct)
{
	t_one_mode(false, false, true);
}
END_TEST

/* Driven and O_DIRECT: the driver hands refills to the kernel early. */
START_TEST(uring_driven_direct)
{
	t_one_mode(false, true, true);
}
END_TEST

/* A bound queue driven from the start, buffered and O_DIRECT. */
START_TEST(uring_single)
{
	t_bound = true;
	t_one_mode(false, true, false);
	t_one_mode(false, true, true);
	t_bound = false;
}
END_TEST

static void *t_submit_thread(void *arg)
{
	void **a = arg;

	ioe_submit(a[0], a[1]);
	return NULL;
}

/* A bound queue with a request in flight at its first drive keeps its
 * shared ring; on an owned ring, a request from another thread (a timer's)
 * waits for the owner, which submits it; DISKCORE_IO_ENGINE=uring-shared
 * keeps every ring shared. */
START_TEST(uring_single_edges)
{
	char *path = t_tmpfile(), buf[BLK];
	int fd = open(path, O_RDWR | O_CLOEXEC);
	struct ioe_file *f = t_engine(fd, false, false);
	struct iovec iov = { buf, BLK };
	struct ioe_queue *q;
	struct tio t;
	pthread_t th;
	void *a[2];

	ck_assert_int_eq(ioe_queue_open(f, &q), 0);
	q->bound = true;
	t_rw(q, true, &t, IOE_READ, 0, &iov, 1, BLK);
	ck_assert(!q->single);
	ioe_queue_close(q);

	ck_assert_int_eq(ioe_queue_open(f, &q), 0);
	q->bound = true;
	ck_assert_int_ge(ioe_queue_poll(q, -1, 0), 0);
	ck_assert(q->single);
	memset(buf, 0x33, BLK);
	t_req(&t, IOE_WRITE, 0, &iov, 1, BLK);
	a[0] = q;
	a[1] = &t.r;
	ck_assert_int_eq(pthread_create(&th, NULL, t_submit_thread, a), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	t_wait(q, true, 1);
	ck_assert_int_eq(t.res, 0);
	ck_assert(q->sqe_flags & IOSQE_FIXED_FILE);
	ioe_queue_close(q);
	ioe_file_close(f);
	ck_assert_int_eq(pread(fd, buf, BLK, 0), BLK);
	ck_assert(buf[0] == 0x33 && buf[BLK - 1] == 0x33);

	/* DISKCORE_IO_ENGINE=uring-shared: bound and driven, still shared. */
	setenv("DISKCORE_IO_ENGINE", "uring-shared", 1);
	f = t_engine(fd, false, false);
	unsetenv("DISKCORE_IO_ENGINE");
	ck_assert_ptr_nonnull(strstr(ioe_file_describe(f), "uring-shared"));
	ck_assert_int_eq(ioe_queue_open(f, &q), 0);
	q->bound = true;
	ck_assert_int_ge(ioe_queue_poll(q, -1, 0), 0);
	ck_assert(!q->single);
	t_rw(q, true, &t, IOE_READ, 0, &iov, 1, BLK);
	ck_assert_int_eq(t.res, 0);
	t_end(q, f, fd, path);
}
END_TEST

START_TEST(pool)
{
	t_one_mode(true, false, false);
}
END_TEST

START_TEST(pool_driven_direct)
{
	t_one_mode(true, true, true);
}
END_TEST

/* The copy mode (DISKCORE_IO_COPY=1): a buffered write is done before
 * ioe_submit() returns, on io_uring and on the pool; 6 MiB of them (past
 * the writeback kick) read back through the queue. An O_DIRECT file and
 * DISKCORE_IO_COPY=0 keep the asynchronous path. */
static void t_copy(bool pool, bool driven)
{
	char *path = t_tmpfile(), *data = malloc(BLK * 64), *back = malloc(BLK * 64);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	struct ioe_file *f;
	struct ioe_queue *q;
	struct iovec iov = { data, BLK * 64 };
	struct tio t;

	setenv("DISKCORE_IO_COPY", "1", 1);
	f = t_engine(fd, pool, false);
	unsetenv("DISKCORE_IO_COPY");
	ck_assert_ptr_nonnull(strstr(ioe_file_describe(f), "DISKCORE_IO_COPY"));
	ck_assert_int_eq(ioe_queue_open(f, &q), 0);
	if (driven)
		ck_assert_int_ge(ioe_queue_poll(q, -1, 0), 0);
	for (int i = 0; i < 24; i++) {
		memset(data, 'a' + i, BLK * 64);
		memset(&t, 0, sizeof(t));
		t.r.op = IOE_WRITE;
		t.r.off = (uint64_t)i * BLK * 64;
		t.r.buf = (struct dc_buf){ .iov = &iov, .iovcnt = 1, .len = BLK * 64 };
		t.r.done = t_done_fn;
		t.res = -EINPROGRESS;
		atomic_store(&t_done, 0);
		ioe_submit(q, &t.r);
		ck_assert_int_eq(atomic_load(&t_done), 1);
		ck_assert_int_eq(t.res, 0);
	}
	iov.iov_base = back;
	for (int i = 0; i < 24; i++) {
		t_rw(q, driven, &t, IOE_READ, (uint64_t)i * BLK * 64, &iov, 1, BLK * 64);
		ck_assert_int_eq(t.res, 0);
		ck_assert(back[0] == 'a' + i && back[BLK * 64 - 1] == 'a' + i);
	}
	t_rw(q, driven, &t, IOE_FLUSH, 0, NULL, 0, 0);
	ck_assert_int_eq(t.res, 0);
	t_end(q, f, fd, path);
	free(data);
	free(back);
}

START_TEST(copy_mode)
{
	struct ioe_file *f;
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	t_copy(false, false);
	t_copy(false, true);
	t_copy(true, false);
	/* Not asked for, or for an O_DIRECT file: no copy mode. */
	setenv("DISKCORE_IO_COPY", "0", 1);
	f = t_engine(fd, false, false);
	ck_assert_ptr_null(strstr(ioe_file_describe(f), "DISKCORE_IO_COPY"));
	ioe_file_close(f);
	setenv("DISKCORE_IO_COPY", "1", 1);
	f = t_engine(fd, false, true);
	unsetenv("DISKCORE_IO_COPY");
	ck_assert_ptr_null(strstr(ioe_file_describe(f), "DISKCORE_IO_COPY"));
	ioe_file_close(f);
	close(fd);
}
END_TEST

/* IOE_URING ignores the forced pool. */
START_TEST(uring_only)
{
	struct ioe_file *f;

	setenv("DISKCORE_IO_ENGINE", "pool", 1);
	ck_assert_int_eq(ioe_file_open(0, false, 0, IOE_URING, &f), 0);
	unsetenv("DISKCORE_IO_ENGINE");
	ck_assert(ioe_file_uring(f));
	ioe_file_close(f);
}
END_TEST

static void t_watch_fn(void *arg)
{
	eventfd_t v;

	eventfd_read(*(int *)arg, &v);
	t_done_fn(&(struct tio){ 0 }.r, 0);
}

START_TEST(watch)
{
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct ioe_watch *w = ioe_watch_add(efd, t_watch_fn, &efd);

	ck_assert_ptr_nonnull(w);
	atomic_store(&t_done, 0);
	eventfd_write(efd, 1);
	t_wait(NULL, false, 1);
	ioe_watch_del(w);
	close(efd);
}
END_TEST

/* ioe_file_extents(): holes and data of a sparse file, sectors that data
 * only partly fills count as data. */
START_TEST(extents)
{
	char *path = t_tmpfile();
	int fd = open(path, O_RDWR | O_CLOEXEC);
	uint64_t run;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, FILE_SIZE), 0);
	ck_assert_int_eq(pwrite(fd, "x", 1, 64 << 10), 1);
	ck_assert_int_eq(pwrite(fd, "y", 1, (1 << 20) + 100), 1);
	ck_assert_int_eq(ioe_file_extents(fd, false, 9, 0, 4096, &run),
			 DC_EXTENT_HOLE | DC_EXTENT_ZERO);
	ck_assert_uint_eq(run, 128);
	ck_assert_int_eq(ioe_file_extents(fd, false, 9, 128, 3968, &run), 0);
	ck_assert_uint_ge(run, 1);
	ck_assert_uint_le(run, 128); /* up to the filesystem's block */
	ck_assert_int_eq(ioe_file_extents(fd, false, 9, 128 + run, 3968 - run, &run),
			 DC_EXTENT_HOLE | DC_EXTENT_ZERO);
	/* 64 KiB sectors: the one holding byte 64K is data, the first a hole. */
	ck_assert_int_eq(ioe_file_extents(fd, false, 16, 0, 32, &run),
			 DC_EXTENT_HOLE | DC_EXTENT_ZERO);
	ck_assert_uint_eq(run, 1);
	ck_assert_int_eq(ioe_file_extents(fd, false, 16, 1, 31, &run), 0);
	ck_assert_uint_eq(run, 1);
	/* 1 MiB sectors: data part-way into each is data. */
	ck_assert_int_eq(ioe_file_extents(fd, false, 20, 0, 2, &run), 0);
	ck_assert_uint_eq(run, 1);
	ck_assert_int_eq(ioe_file_extents(fd, false, 20, 1, 1, &run), 0);
	ck_assert_uint_eq(run, 1);
	/* Past the last data: a hole to the end of the range. */
	ck_assert_int_eq(ioe_file_extents(fd, false, 9, 2056, 2040, &run),
			 DC_EXTENT_HOLE | DC_EXTENT_ZERO);
	ck_assert_uint_eq(run, 2040);
	ck_assert_int_eq(ioe_file_extents(fd, true, 9, 0, 4096, &run), 0);
	ck_assert_uint_eq(run, 4096);
	close(fd);
	unlink(path);
	free(path);
}
END_TEST

/* The plugin callbacks: a queue opened, driven and closed through them, in
 * both modes, carries a write and its read-back. */
static void t_callbacks(bool pool)
{
	char *path = t_tmpfile(), out[BLK], in[BLK] = { 0 };
	int fd = open(path, O_RDWR | O_CLOEXEC);
	struct ioe_file *f = t_engine(fd, pool, false);
	struct iovec iov[2] = { { out, BLK }, { in, BLK } };
	struct timespec end, now;
	struct tio t;
	void *qctx;

	ck_assert_int_eq(ioe_plugin_queue_open(f, &qctx), 0);
	/* Driven from the start, as the core drives a queue_poll() plugin. */
	ck_assert_int_ge(ioe_plugin_queue_poll(NULL, qctx, -1, 0), 0);
	memset(out, 0xc3, BLK);
	for (int i = 0; i < 2; i++) {
		memset(&t, 0, sizeof(t));
		t.r.op = i ? IOE_READ : IOE_WRITE;
		t.r.off = BLK;
		t.r.buf = (struct dc_buf){ .iov = &iov[i], .iovcnt = 1, .len = BLK };
		t.r.done = t_done_fn;
		t.res = -EINPROGRESS;
		atomic_store(&t_done, 0);
		ioe_submit(qctx, &t.r);
		clock_gettime(CLOCK_MONOTONIC, &end);
		end.tv_sec += 10;
		while (atomic_load(&t_done) < 1) {
			ck_assert_int_ge(ioe_plugin_queue_poll(NULL, qctx, -1, 100), 0);
			clock_gettime(CLOCK_MONOTONIC, &now);
			ck_assert_int_lt(now.tv_sec, end.tv_sec);
		}
		ck_assert_int_eq(t.res, 0);
	}
	ck_assert(memcmp(out, in, BLK) == 0);
	ioe_plugin_queue_close(NULL, qctx);
	ioe_file_close(f);
	close(fd);
	unlink(path);
	free(path);
}

START_TEST(callbacks)
{
	t_callbacks(false);
	t_callbacks(true);
}
END_TEST

/* The file probes: O_DIRECT geometry (512-byte sectors without direct; with
 * it, a power-of-two sector up to 64 KiB and a buffer alignment of at least
 * that), and hole punching (this filesystem punches; a read-only fd cannot). */
START_TEST(probe)
{
	char *path = t_tmpfile();
	int fd = open(path, O_RDWR | O_CLOEXEC), dfd = open(path, O_RDWR | O_DIRECT),
	    rfd = open(path, O_RDONLY | O_CLOEXEC);
	unsigned shift;
	size_t align;

	ck_assert(fd >= 0 && dfd >= 0 && rfd >= 0);
	ioe_file_dio_align(fd, false, &shift, &align);
	ck_assert_uint_eq(shift, 9);
	ck_assert_uint_eq(align, 512);
	ioe_file_dio_align(dfd, true, &shift, &align);
	ck_assert_uint_ge(shift, 9);
	ck_assert_uint_le(shift, 16);
	ck_assert_uint_ge(align, 1u << shift);
	ck_assert_uint_eq(align & (align - 1), 0);
	ck_assert_uint_eq(ioe_file_punch_granule(fd, FILE_SIZE, 4096, 9), 8);
	ck_assert_uint_eq(ioe_file_punch_granule(fd, FILE_SIZE, 256, 9), 1);
	ck_assert_uint_eq(ioe_file_punch_granule(rfd, FILE_SIZE, 4096, 9), 0);
	ck_assert_int_eq(lseek(fd, 0, SEEK_END), FILE_SIZE); /* the probe left it */
	close(fd);
	close(dfd);
	close(rfd);
	unlink(path);
	free(path);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = {
		uring_thread, uring_driven,	  uring_direct, uring_driven_direct,
		pool,	      pool_driven_direct, uring_only,	watch,
		extents,      callbacks,	  probe,	copy_mode,
		uring_single, uring_single_edges, NULL
	};

	return common_check_run("ioengine", tests);
}
