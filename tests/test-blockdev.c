/* SPDX-License-Identifier: MIT */
/* The blockdev plugin (docs/openvmm-compat.md §2.5 and the disk_blockdevice cases of
 * §7.2): conformance on files and, as root, on a loop device; zero-copy and bounced I/O
 * with and without FUA; illegal LBAs; hole punching; PR and eject on a loop device;
 * online resize through a chain; many queues and deep queues; a clear error when io_uring
 * is unavailable. */
#include "conformance.h"
#include "harness.h"

#include <diskcore/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/loop.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#define KIB 1024
#define MIB (1024 * 1024)
#define PAGE 4096

/* The loop device the loop cases share ("" when there is none). The parent
 * keeps it open; it goes away with the last descriptor (autoclear). */
static char tb_loop[64];

/* A loop device over a fresh file of `size` bytes, detached automatically when
 * its last descriptor closes. Returns the open device fd (path in `path`), or
 * -errno with the reason in `why`. */
static int tb_loop_new(uint64_t size, char *path, size_t pathlen, char **backing,
		       char *why, size_t whylen)
{
	char *file = h_tmpfile(size, NULL);
	int ctl, bfd, fd = -1, err = 0;

	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	bfd = open(file, O_RDWR | O_CLOEXEC);
	if (ctl < 0 || bfd < 0) {
		err = errno;
		snprintf(why, whylen, "/dev/loop-control: %s", strerror(err));
		goto out;
	}
	/* Another process may take the free device first: try a few. */
	for (int tries = 0; tries < 20; tries++) {
		struct loop_config cfg = { .fd = (uint32_t)bfd };
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);

		if (n < 0) {
			err = errno;
			snprintf(why, whylen, "LOOP_CTL_GET_FREE: %s", strerror(err));
			break;
		}
		snprintf(path, pathlen, "/dev/loop%d", n);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			err = errno;
			snprintf(why, whylen, "%s: %s", path, strerror(err));
			break;
		}
		cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
		if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0) {
			err = 0;
			break;
		}
		err = errno;
		snprintf(why, whylen, "LOOP_CONFIGURE %s: %s", path, strerror(err));
		close(fd);
		fd = -1;
		if (err != EBUSY)
			break;
	}
out:
	if (ctl >= 0)
		close(ctl);
	if (bfd >= 0)
		close(bfd);
	if (fd < 0) {
		free(file);
		return -(err ? err : EIO);
	}
	if (backing)
		*backing = file;
	else
		free(file);
	return fd;
}

/* --- Files -------------------------------------------------------------------- */

START_TEST(file_metadata)
{
	char *path = h_tmpfile(MIB, NULL);
	char *spec = h_fmt("blockdev:%s", path);
	dc_disk *d = h_open(spec, 0);
	struct dc_info info;
	struct stat st;

	ck_assert_int_eq(stat(path, &st), 0);
	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, MIB / 512);
	ck_assert_uint_eq(info.sector_size, 512);
	ck_assert_uint_eq(info.physical_sector_size,
			  st.st_blksize > 512 ? (uint32_t)st.st_blksize : 512);
	ck_assert_str_eq(info.disk_type, "block_device");
	ck_assert(
		!(info.flags & (DC_INFO_FUA_RESPECTED | DC_INFO_PR | DC_INFO_READ_ONLY)));
	/* ext4, xfs, btrfs, tmpfs all punch holes. */
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_ZEROES);
	ck_assert_uint_eq(info.optimal_unmap_sectors, (uint32_t)st.st_blksize / 512);
	dc_close(d);
	free(spec);

	/* Read-only: no hole punching, no FUA, writes refused. */
	spec = h_fmt("blockdev:%s", path);
	d = h_open(spec, DC_OPEN_READ_ONLY);
	dc_get_info(d, &info);
	ck_assert(info.flags & DC_INFO_READ_ONLY);
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_IGNORED);
	dc_close(d);
	free(spec);
	free(path);
}
END_TEST

START_TEST(file_bad_inputs)
{
	char *odd = h_tmpfile(MIB + 100, NULL);

	/* docs/openvmm-compat.md §2.5: the size must be a whole number of sectors. */
	h_open_fails(0, -EINVAL, "not a multiple", "blockdev:%s", odd);
	h_open_fails(0, -ENOENT, "missing", "blockdev:%s/missing", h_tmpdir());
	h_open_fails(0, -EINVAL, "not a block device or regular file",
		     "blockdev:/dev/null");
	free(odd);
}
END_TEST

/* §7.2 test_async_disk_io[_fua]: four pages written from "guest pages" 3,2,1,0
 * and read back into 7,6,5,4. Then the same from a buffer at offset 512 and at
 * an odd offset (bounced when O_DIRECT cannot take it). */
static void tb_async_io(const char *spec, bool fua)
{
	dc_disk *d = h_open(spec, 0);
	char *mem = h_alloc(9 * PAGE), *chk = h_alloc(4 * PAGE);
	uint32_t flags = fua ? DC_IO_FUA : 0;
	struct iovec w[4], r[4];
	static const size_t offs[] = { 512, 100 };

	for (int i = 0; i < 4; i++) {
		w[i] = (struct iovec){ mem + (size_t)(3 - i) * PAGE, PAGE };
		r[i] = (struct iovec){ mem + (size_t)(7 - i) * PAGE, PAGE };
		h_fill(w[i].iov_base, PAGE, 40 + (uint64_t)i);
	}
	ck_assert_int_eq(dc_writev(d, 16, w, 4, flags), 0);
	if (!fua)
		ck_assert_int_eq(dc_flush(d), 0);
	ck_assert_int_eq(dc_readv(d, 16, r, 4), 0);
	for (int i = 0; i < 4; i++)
		ck_assert_msg(h_check(r[i].iov_base, PAGE, 40 + (uint64_t)i) < 0,
			      "%s: page %d differs", spec, i);

	for (size_t k = 0; k < 2; k++) {
		char *buf = mem + offs[k];

		h_fill(buf, 3 * PAGE, 50 + k);
		ck_assert_int_eq(dc_write(d, 64, buf, 3 * PAGE, flags), 0);
		if (!fua)
			ck_assert_int_eq(dc_flush(d), 0);
		memset(mem, 0, 9 * PAGE);
		ck_assert_int_eq(dc_read(d, 64, buf, 3 * PAGE), 0);
		ck_assert_msg(h_check(buf, 3 * PAGE, 50 + k) < 0,
			      "%s: unaligned (+%zu) round trip differs", spec, offs[k]);
		/* And through an aligned buffer: the bytes really are on disk. */
		ck_assert_int_eq(dc_read(d, 64, chk, 3 * PAGE), 0);
		ck_assert(h_check(chk, 3 * PAGE, 50 + k) < 0);
	}
	dc_close(d);
	free(mem);
	free(chk);
}

START_TEST(file_async_io)
{
	static const char *const opts[] = { "", ";direct" };
	char *path = h_tmpfile(MIB, NULL);

	for (int i = 0; i < 2; i++) {
		char *spec = h_fmt("blockdev:%s%s", path, opts[i]);

		tb_async_io(spec, false);
		tb_async_io(spec, true);
		free(spec);
	}
	free(path);
}
END_TEST

/* More segments than a request keeps inline (the iovec array goes on the
 * heap), and more than preadv takes (bounced), buffered and O_DIRECT. */
START_TEST(file_many_segments)
{
	static const int counts[] = { 17, 64, 1100 };
	static const char *const opts[] = { "", ";direct" };
	char *path = h_tmpfile(2 * MIB, NULL);
	char *mem = h_alloc(1100 * 512), *chk = h_alloc(1100 * 512);
	struct iovec *iov = calloc(1100, sizeof(*iov));

	ck_assert_ptr_nonnull(iov);
	for (int o = 0; o < 2; o++) {
		char *spec = h_fmt("blockdev:%s%s", path, opts[o]);
		dc_disk *d = h_open(spec, 0);

		for (int k = 0; k < 3; k++) {
			int n = counts[k];
			uint64_t seed = 300 + (uint64_t)(o * 10 + k);

			/* Segment i is sector i of the pattern, scattered in memory. */
			h_fill(chk, (size_t)n * 512, seed);
			for (int i = 0; i < n; i++) {
				iov[i].iov_base = mem + (size_t)((i * 7) % n) * 512;
				iov[i].iov_len = 512;
				memcpy(iov[i].iov_base, chk + (size_t)i * 512, 512);
			}
			ck_assert_int_eq(dc_writev(d, 100, iov, n, 0), 0);
			memset(mem, 0, (size_t)n * 512);
			ck_assert_int_eq(dc_readv(d, 100, iov, n), 0);
			for (int i = 0; i < n; i++)
				ck_assert_msg(!memcmp(iov[i].iov_base,
						      chk + (size_t)i * 512, 512),
					      "%s: %d segments: segment %d differs", spec,
					      n, i);
			/* Contiguously, the same bytes in order. */
			memset(mem, 0, (size_t)n * 512);
			ck_assert_int_eq(dc_read(d, 100, mem, (size_t)n * 512), 0);
			ck_assert(h_check(mem, (size_t)n * 512, seed) < 0);
		}
		dc_close(d);
		free(spec);
	}
	free(iov);
	free(mem);
	free(chk);
	free(path);
}
END_TEST

/* §7.2 test_illegal_lba on a disk of `end` sectors: past the end and across
 * it is refused, the last sector is not. */
static void tb_illegal_lba(dc_disk *d, uint64_t end, char *buf)
{
	ck_assert_int_eq(dc_write(d, (uint64_t)INT64_MAX / 512, buf, 512, 0),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_write(d, end, buf, 512, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_read(d, end - 1, buf, 1024), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_unmap(d, end - 8, 9, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_read(d, end - 1, buf, 512), 0);
}

/* §7.2 test_illegal_lba, and a file that shrank under us: the read past its
 * new end meets EOF, which is an illegal block, not zeroes. */
START_TEST(file_illegal_lba)
{
	char *path = h_tmpfile(64 * KIB, NULL);
	char *spec = h_fmt("blockdev:%s", path);
	dc_disk *d = h_open(spec, 0);
	char *buf = h_alloc(PAGE);

	tb_illegal_lba(d, 128, buf);
	ck_assert_int_eq(truncate(path, 32 * KIB), 0);
	ck_assert_int_eq(dc_read(d, 100, buf, 512), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_read(d, 62, buf, 4 * 512), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_read(d, 60, buf, 4 * 512), 0);
	/* A write would extend the file: refused against the size at open. */
	ck_assert_int_eq(dc_write(d, 128, buf, 512, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_read(d, 0, buf, 512), 0);
	dc_close(d);
	free(buf);
	free(spec);
	free(path);
}
END_TEST

/* §7.2 test_unmap_file_punch_hole. */
START_TEST(file_punch_hole)
{
	char *path = h_tmpfile(MIB, NULL);
	char *spec = h_fmt("blockdev:%s;direct", path);
	dc_disk *d = h_open(spec, 0);
	char *buf = h_alloc(8 * KIB);
	struct dc_info info;
	int fd;

	dc_get_info(d, &info);
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_ZEROES);
	memset(buf, 0xcd, 8 * KIB);
	ck_assert_int_eq(dc_write(d, 0, buf, 8 * KIB, 0), 0);
	ck_assert_int_eq(dc_flush(d), 0);
	ck_assert_int_eq(dc_unmap(d, 0, 8, 0), 0);
	memset(buf, 0x11, 8 * KIB);
	ck_assert_int_eq(dc_read(d, 0, buf, 8 * KIB), 0);
	ck_assert_msg(h_check_zero(buf, 4 * KIB) < 0, "unmapped sectors are not zero");
	for (int i = 4 * KIB; i < 8 * KIB; i++)
		ck_assert_msg((unsigned char)buf[i] == 0xcd, "byte %d lost", i);
	/* It really is a hole in the file. */
	fd = open(path, O_RDONLY);
	ck_assert(fd >= 0);
	ck_assert_int_eq(lseek(fd, 0, SEEK_HOLE), 0);
	close(fd);
	ck_assert_int_eq(dc_unmap(d, 2040, 8, 0), 0);
	ck_assert_int_eq(dc_unmap(d, 2048, 0, 0), 0);
	dc_close(d);
	free(buf);
	free(spec);
	free(path);
}
END_TEST

/* Files are not ejectable, and have no PR. */
START_TEST(file_eject_pr)
{
	char *path = h_tmpfile(MIB, NULL);
	char *spec = h_fmt("blockdev:%s", path);
	dc_disk *d = h_open(spec, 0);
	struct dc_pr_caps caps;

	ck_assert_int_eq(dc_eject(d), DC_E_UNSUPPORTED_EJECT);
	ck_assert_int_eq(dc_pr_caps(d, &caps), DC_E_UNSUPPORTED);
	dc_close(d);
	free(spec);
	free(path);
}
END_TEST

/* --- Many requests, many queues ------------------------------------------------ */

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

static void tb_threads(const char *spec, unsigned nthreads, unsigned nreq)
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
END_TEST

/* --- io_uring unavailable -------------------------------------------------------- */

/* Make io_uring_setup fail with EPERM in this process, as
 * kernel.io_uring_disabled=2 or a container's seccomp profile would. */
static int tb_deny_io_uring(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		return -errno;
	return 0;
}

START_TEST(no_io_uring)
{
	char *path = h_tmpfile(MIB, NULL);
	char *spec = h_fmt("blockdev:%s", path);
	int pipefd[2], status;
	char msg[512] = "";
	ssize_t n;
	pid_t pid;

	ck_assert_int_eq(pipe(pipefd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dc_disk *d = NULL;
		int rc = tb_deny_io_uring();

		if (rc == 0)
			rc = dc_open(spec, 0, &d);
		dprintf(pipefd[1], "%d %s", rc, rc ? dc_last_error() : "");
		_exit(0);
	}
	close(pipefd[1]);
	n = read(pipefd[0], msg, sizeof(msg) - 1);
	close(pipefd[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(n > 0);
	msg[n] = 0;
	ck_assert_msg(atoi(msg) == -EPERM, "dc_open without io_uring: %s", msg);
	ck_assert_msg(strstr(msg, "blockdev") && strstr(msg, "io_uring_queue_init") &&
			      strstr(msg, "is io_uring disabled?"),
		      "unclear message: %s", msg);
	free(spec);
	free(path);
}
END_TEST

/* The io value a file node describes, into arg (a 256-byte buffer). */
static int tb_io_visit(void *arg, int depth, const char *plugin, const char *form,
		       const struct dc_info *info, const char *key, const char *value)
{
	(void)depth;
	(void)form;
	(void)info;
	if (!strcmp(plugin, "file") && key && !strcmp(key, "io"))
		snprintf(arg, 256, "%s", value);
	return 0;
}

/* In a child without io_uring: file: opens on the worker pool, says so, and
 * moves data. Returns 0, or which step failed. */
static int tb_file_fallback(const char *spec)
{
	char io[256] = "", *buf = malloc(8192), *back = malloc(8192);
	dc_disk *d = NULL;
	int rc = tb_deny_io_uring();

	/* The refused io_uring decides here, not a forced pool (blockdev-pool). */
	unsetenv("DISKCORE_IO_ENGINE");
	if (rc || !buf || !back)
		return 10;
	if (dc_open(spec, 0, &d))
		return 11;
	dc_describe(d, tb_io_visit, io);
	if (strcmp(io, "worker pool (io_uring_queue_init: Operation not permitted)"))
		return 12;
	h_fill(buf, 8192, 5);
	if (dc_write(d, 8, buf, 8192, DC_IO_FUA) || dc_flush(d) ||
	    dc_read(d, 8, back, 8192) || memcmp(buf, back, 8192))
		return 13;
	dc_close(d);
	free(buf);
	free(back);
	return 0;
}

/* Where blockdev: refuses to open, file: falls back to the worker pool. */
START_TEST(file_without_io_uring)
{
	char *path = h_tmpfile(MIB, NULL);
	char *spec = h_fmt("file:%s", path);
	int status;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(tb_file_fallback(spec));
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "file: without io_uring: step %d failed", WEXITSTATUS(status));
	free(spec);
	free(path);
}
END_TEST

/* --- Loop devices (root) ------------------------------------------------------------ */

static char *tb_loop_spec(const char *opts)
{
	return h_fmt("blockdev:%s%s", tb_loop, opts);
}

START_TEST(loop_metadata)
{
	char *spec = tb_loop_spec("");
	dc_disk *d = h_open(spec, 0);
	struct dc_info info;
	char path[128];
	struct stat st;
	FILE *f;
	int fua = -1;

	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, MIB / 512);
	ck_assert_uint_eq(info.sector_size, 512);
	ck_assert_uint_ge(info.physical_sector_size, 512);
	ck_assert_str_eq(info.disk_type, "block_device");
	/* Discard punches holes in the backing file; sysfs gives the granularity. */
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_UNSPECIFIED);
	ck_assert_uint_ge(info.optimal_unmap_sectors, 1);
	ck_assert_int_eq(stat(tb_loop, &st), 0);
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/queue/fua", major(st.st_rdev),
		 minor(st.st_rdev));
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%d", &fua), 1);
	fclose(f);
	ck_assert_int_eq(!!(info.flags & DC_INFO_FUA_RESPECTED), !!fua);
	dc_close(d);
	free(spec);
}
END_TEST

START_TEST(loop_async_io)
{
	char *spec = tb_loop_spec("");
	char *dspec = tb_loop_spec(";direct");

	tb_async_io(spec, false);
	tb_async_io(spec, true);
	tb_async_io(dspec, false);
	tb_async_io(dspec, true);
	free(spec);
	free(dspec);
}
END_TEST

START_TEST(loop_illegal_lba)
{
	char *spec = tb_loop_spec(";direct");
	dc_disk *d = h_open(spec, 0);
	char *buf = h_alloc(PAGE);

	tb_illegal_lba(d, 2048, buf);
	dc_close(d);
	free(buf);
	free(spec);
}
END_TEST

/* BLKDISCARD on a loop device punches the backing file: it reads back zero. */
START_TEST(loop_unmap)
{
	char *spec = tb_loop_spec("");
	dc_disk *d = h_open(spec, 0);
	char *buf = h_alloc(8 * KIB);

	memset(buf, 0xcd, 8 * KIB);
	ck_assert_int_eq(dc_write(d, 100 * 8, buf, 8 * KIB, 0), 0);
	ck_assert_int_eq(dc_flush(d), 0);
	ck_assert_int_eq(dc_unmap(d, 100 * 8, 8, 0), 0);
	ck_assert_int_eq(dc_read(d, 100 * 8, buf, 8 * KIB), 0);
	ck_assert_msg(h_check_zero(buf, 4 * KIB) < 0, "discarded sectors are not zero");
	ck_assert((unsigned char)buf[4 * KIB] == 0xcd);
	ck_assert_int_eq(dc_unmap(d, 0, 0, 0), 0);
	dc_close(d);
	free(buf);
	free(spec);
}
END_TEST

/* Loop devices have no PR operations (EOPNOTSUPP): no PR capability, and every
 * PR call is unsupported. They cannot eject either. */
START_TEST(loop_pr_unsupported)
{
	char *spec = tb_loop_spec("");
	dc_disk *d = h_open(spec, 0);
	struct dc_pr_controller ctl[4];
	struct dc_pr_report rep = { .max_controllers = 4, .controllers = ctl };
	struct dc_pr_caps caps;
	struct dc_info info;
	uint64_t key = 1;
	char *buf = h_alloc(512);

	dc_get_info(d, &info);
	ck_assert(!(info.flags & DC_INFO_PR));
	ck_assert_int_eq(dc_pr_caps(d, &caps), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_report(d, &rep), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_register(d, NULL, 5, -1), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_register(d, &key, 5, 1), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_reserve(d, 5, DC_PR_WRITE_EXCLUSIVE), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_release(d, 5, DC_PR_WRITE_EXCLUSIVE), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_clear(d, 5), DC_E_UNSUPPORTED);
	ck_assert_int_eq(dc_pr_preempt(d, 5, 6, DC_PR_EXCLUSIVE_ACCESS, true),
			 DC_E_UNSUPPORTED);
	ck_assert(!(info.flags & DC_INFO_EJECT));
	ck_assert_int_eq(dc_eject(d), DC_E_UNSUPPORTED_EJECT);
	/* And the device still works. */
	ck_assert_int_eq(dc_read(d, 0, buf, 512), 0);
	dc_close(d);
	free(buf);
	free(spec);
}
END_TEST

START_TEST(loop_two_queues)
{
	char dev[64], why[160];
	int fd = tb_loop_new(4 * MIB, dev, sizeof(dev), NULL, why, sizeof(why));
	char *spec;

	ck_assert_msg(fd >= 0, "loop device: %s", why);
	spec = h_fmt("blockdev:%s;direct", dev);
	tb_threads(spec, 2, 200);
	free(spec);
	close(fd);
}
END_TEST

/* Online resize: grow the backing file, LOOP_SET_CAPACITY (losetup -c); the
 * kernel's change/RESIZE=1 uevent reaches every waiter up the chain. */
START_TEST(loop_resize_chain)
{
	char dev[64], why[160], *backing = NULL;
	int fd = tb_loop_new(MIB, dev, sizeof(dev), &backing, why, sizeof(why));
	char *spec, *buf = h_alloc(PAGE);
	uint64_t n = 0, t0;
	dc_disk *d;
	int rc;

	ck_assert_msg(fd >= 0, "loop device: %s", why);
	spec = h_fmt("delay:0:blockdev:%s", dev);
	d = h_open(spec, 0);
	ck_assert_uint_eq(dc_sector_count(d), 2048);
	ck_assert_int_eq(dc_read(d, 2048, buf, 512), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(truncate(backing, 3 * MIB), 0);
	t0 = h_now_ms();
	ck_assert_int_eq(ioctl(fd, LOOP_SET_CAPACITY, 0), 0);
	rc = dc_wait_resize(d, 2048, 1000, &n);
	ck_assert_msg(rc == 0, "no resize seen within 1 s: %d", rc);
	ck_assert_uint_eq(n, 3 * 2048);
	ck_assert_uint_le(h_now_ms() - t0, 1000);
	ck_assert_uint_eq(dc_sector_count(d), 3 * 2048);
	/* The new sectors are usable at once. */
	h_fill(buf, PAGE, 77);
	ck_assert_int_eq(dc_write(d, 3 * 2048 - 8, buf, PAGE, 0), 0);
	memset(buf, 0, PAGE);
	ck_assert_int_eq(dc_read(d, 3 * 2048 - 8, buf, PAGE), 0);
	ck_assert(h_check(buf, PAGE, 77) < 0);
	/* Shrink too. */
	ck_assert_int_eq(truncate(backing, MIB / 2), 0);
	ck_assert_int_eq(ioctl(fd, LOOP_SET_CAPACITY, 0), 0);
	ck_assert_int_eq(dc_wait_resize(d, 3 * 2048, 1000, &n), 0);
	ck_assert_uint_eq(n, 1024);
	ck_assert_int_eq(dc_read(d, 1024, buf, 512), DC_E_ILLEGAL_BLOCK);
	dc_close(d);
	close(fd);
	free(buf);
	free(spec);
	free(backing);
}
END_TEST

/* Can O_DIRECT be used in the temporary directory (not on every tmpfs)? */
static bool tb_direct_ok(void)
{
	char *path = h_tmpfile(4096, NULL);
	int fd = open(path, O_RDWR | O_DIRECT);

	free(path);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

int main(void)
{
	Suite *s = suite_create("blockdev");
	struct conformance_opts ro = { .open_flags = DC_OPEN_READ_ONLY };
	bool direct = tb_direct_ok();
	char why[160] = "not root";
	TCase *tc;
	int loopfd = -1;

	conformance_add(s, "blockdev-file", "blockdev:@TMP@");
	conformance_add_opts(s, "blockdev-file-ro", "blockdev:@TMP@", &ro);
	conformance_add(s, "delay-blockdev-file", "delay:0:blockdev:@TMP@");
	if (direct)
		conformance_add(s, "blockdev-file-direct", "blockdev:@TMP@;direct");

	tc = tcase_create("file");
	tcase_add_test(tc, file_metadata);
	tcase_add_test(tc, file_bad_inputs);
	if (direct) {
		tcase_add_test(tc, file_many_segments);
		tcase_add_test(tc, file_async_io);
		tcase_add_test(tc, file_punch_hole);
		tcase_add_test(tc, file_two_queues);
	} else {
		fprintf(stderr, "SKIP O_DIRECT cases: not supported in %s\n", h_tmpdir());
	}
	tcase_add_test(tc, file_illegal_lba);
	tcase_add_test(tc, file_eject_pr);
	tcase_add_test(tc, file_deep_queue);
	tcase_add_test(tc, file_queue_wait);
	tcase_add_test(tc, file_queue_wait_fd);
	tcase_add_test(tc, file_queue_wait_chain);
	tcase_add_test(tc, no_io_uring);
	tcase_add_test(tc, file_without_io_uring);
	suite_add_tcase(s, tc);

	if (geteuid() == 0)
		loopfd = tb_loop_new(MIB, tb_loop, sizeof(tb_loop), NULL, why,
				     sizeof(why));
	if (loopfd >= 0) {
		char *spec = tb_loop_spec("");
		char *dspec = tb_loop_spec(";direct");

		conformance_add(s, "blockdev-loop", spec);
		conformance_add(s, "blockdev-loop-direct", dspec);
		free(spec);
		free(dspec);
		tc = tcase_create("loop");
		tcase_add_test(tc, loop_metadata);
		tcase_add_test(tc, loop_async_io);
		tcase_add_test(tc, loop_illegal_lba);
		tcase_add_test(tc, loop_unmap);
		tcase_add_test(tc, loop_pr_unsupported);
		tcase_add_test(tc, loop_two_queues);
		tcase_add_test(tc, loop_resize_chain);
		suite_add_tcase(s, tc);
	} else {
		fprintf(stderr, "SKIP loop device cases: %s\n", why);
	}
	return h_run(s);
}
