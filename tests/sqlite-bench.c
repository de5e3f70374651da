/* SPDX-License-Identifier: MIT */
/* test-sqlite's measuring modes: `bench DIR [MiB]` runs each workload on file:
 * and on the sqlite layer back to back (the targets), `bench-one` one
 * workload on one spec. */
#include "harness.h"
#include "sqlite-test.h"

#include <diskcore/diskcore.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static double bench_now(void)
{
	return (double)h_now_ns() / 1e9;
}

/* 4 KiB requests at random 4 KiB offsets below `span` sectors, `qd` in flight on
 * one queue, for `secs`; writes flush after every 256. Returns IOPS. */
double bench_run(const char *spec, uint32_t flags, bool write, uint64_t span, int qd,
		 double secs)
{
	dc_disk *d = NULL;
	dc_queue *q = NULL;
	uint8_t *bufs;
	struct iovec *iov;
	uint64_t rng = 12345, done = 0, since_flush = 0;
	int inflight = 0;
	double t0, t1;

	if (dc_open(spec, flags, &d) < 0 || dc_queue_open(d, DC_QUEUE_POLL, &q) < 0) {
		fprintf(stderr, "bench: %s: %s\n", spec, dc_last_error());
		exit(1);
	}
	bufs = h_alloc((size_t)qd * 4096);
	iov = calloc((size_t)qd, sizeof(*iov));
	for (int i = 0; i < qd; i++) {
		iov[i].iov_base = bufs + (size_t)i * 4096;
		iov[i].iov_len = 4096;
		h_fill(iov[i].iov_base, 4096, (uint64_t)i + 1);
	}
	t0 = bench_now();
	t1 = t0 + secs;
	for (;;) {
		struct dc_completion cq[64];
		int n;

		while (inflight < qd && (!write || since_flush < 256) &&
		       bench_now() < t1) {
			int slot = -1;

			/* Slot i is free when fewer than qd are in flight: use a ring. */
			slot = (int)((done + (uint64_t)inflight) % (uint64_t)qd);
			rng = h_mix64(rng);
			struct dc_io io = {
				.op = write ? DC_OP_WRITE : DC_OP_READ,
				.sector = (rng % (span / 8)) * 8,
				.iov = &iov[slot],
				.iovcnt = 1,
			};
			if (dc_submit(q, &io) < 0)
				exit(1);
			inflight++;
			since_flush++;
		}
		if (!inflight)
			break;
		n = dc_queue_reap(q, cq, 64);
		if (n == 0) {
			struct pollfd pfd = { .fd = dc_queue_fd(q), .events = POLLIN };

			poll(&pfd, 1, 1000);
			continue;
		}
		for (int i = 0; i < n; i++)
			if (cq[i].result)
				exit(1);
		inflight -= n;
		done += (uint64_t)n;
		if (write && since_flush >= 256 && !inflight) {
			if (dc_flush(d) < 0)
				exit(1);
			since_flush = 0;
		}
	}
	t1 = bench_now();
	dc_queue_close(q);
	dc_close(d);
	free(iov);
	free(bufs);
	return (double)done / (t1 - t0);
}

static int bench_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Each workload on file: and on the sqlite layer, back to back, REPS times;
 * prints every pair and the median ratio. */
#define BENCH_REPS 5

int bench_main(const char *dir, uint64_t mib)
{
	char *base = h_fmt("%s/bench-base.img", dir);
	char *cachedir = h_fmt("%s/bench-cache", dir);
	char *file = h_fmt("file:%s", base);
	char *cache = h_fmt("autocache:bench:file:%s", base);
	uint64_t span = mib << 11;
	uint8_t *chunk = h_alloc(1 << 20);
	dc_disk *d = NULL;
	int fd;

	/* A base file with data in every sector, and a cache holding all of it. */
	fd = open(base, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	for (uint64_t i = 0; i < mib; i++) {
		h_fill(chunk, 1 << 20, i);
		if (write(fd, chunk, 1 << 20) != 1 << 20)
			return 1;
	}
	fsync(fd);
	close(fd);
	mkdir(cachedir, 0700);
	setenv("DISKCORE_AUTO_CACHE_PATH", cachedir, 1);
	if (dc_open(cache, DC_OPEN_READ_ONLY, &d) < 0)
		return fprintf(stderr, "bench: %s\n", dc_last_error()), 1;
	for (uint64_t i = 0; i < mib; i++)
		if (dc_read(d, i << 11, chunk, 1 << 20) < 0)
			return 1;
	dc_close(d);

	printf("4 KiB random I/O over %llu MiB, %d pairs of 3 s runs, file: first\n",
	       (unsigned long long)mib, BENCH_REPS);
	for (int w = 1; w >= 0; w--) {
		for (int qd = 1; qd <= 16; qd *= 16) {
			double ratio[BENCH_REPS];

			printf("%s qd %2d:",
			       w ? "randwrite, flush/256, sqldiff vs file" :
				   "randread of cached sectors, autocache vs file",
			       qd);
			for (int rep = 0; rep < BENCH_REPS; rep++) {
				char *db = h_fmt("%s/bench-w.dbhd", dir);
				char *diff = h_fmt("sqldiff:%s;create:file:%s", db, base);
				uint32_t fl = w ? 0 : DC_OPEN_READ_ONLY;
				double a = bench_run(file, fl, w, span, qd, 3);
				double b =
					bench_run(w ? diff : cache, fl, w, span, qd, 3);

				ratio[rep] = b / a;
				printf(" %.0f/%.0f", b, a);
				fflush(stdout);
				unlink(db);
				free(diff);
				free(db);
			}
			qsort(ratio, BENCH_REPS, sizeof(ratio[0]), bench_cmp);
			printf("  median ratio %.2f\n", ratio[BENCH_REPS / 2]);
		}
	}
	free(chunk);
	free(cache);
	free(file);
	free(cachedir);
	free(base);
	return 0;
}
