/* SPDX-License-Identifier: MIT */
/* Many threads on one disk: each with its own queue and several requests in
 * flight, writing thread-tagged patterns to its own range and verifying them;
 * and the blocking calls from several threads at once. */
#include "conformance.h"
#include "harness.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CC_THREADS 4
#define CC_DEPTH 8
#define CC_ROUNDS 64
#define CC_SECTORS 8 /* per request */

static const char *const cc_specs[] = {
	"mem:4M",
	"file:@TMP:4M@",
	"memdiff:file:@TMP:4M@",
	"delay:0:memdiff:file:@TMP:4M@",
};
#define CC_NSPECS ((int)(sizeof(cc_specs) / sizeof(cc_specs[0])))

struct cc_thread {
	dc_disk *disk;
	int id;
	uint32_t ss;
	uint64_t first, nsectors; /* this thread's range */
	char err[256];
	pthread_t t;
};

static uint64_t cc_seed(int id, int round, uint64_t sector)
{
	return ((uint64_t)id << 56) ^ ((uint64_t)round << 40) ^ sector;
}

/* Submit CC_DEPTH requests, then reap them all through the eventfd. */
static int cc_batch(struct cc_thread *t, dc_queue *q, uint32_t op, uint64_t *sectors,
		    uint8_t *bufs, size_t len)
{
	struct iovec iov[CC_DEPTH];
	int seen[CC_DEPTH] = { 0 }, done = 0;

	for (int i = 0; i < CC_DEPTH; i++) {
		iov[i] = (struct iovec){ bufs + i * len, len };
		struct dc_io io = {
			.op = op,
			.flags = (op == DC_OP_WRITE && i == 0) ? DC_IO_FUA : 0,
			.sector = sectors[i],
			.iov = &iov[i],
			.iovcnt = 1,
			.user_data = &seen[i],
		};
		int r = dc_submit(q, &io);

		if (r < 0) {
			snprintf(t->err, sizeof(t->err), "dc_submit = %d", r);
			return -1;
		}
	}
	while (done < CC_DEPTH) {
		struct dc_completion c[CC_DEPTH];
		struct pollfd p = { .fd = dc_queue_fd(q), .events = POLLIN };
		int n = dc_queue_reap(q, c, CC_DEPTH);

		if (n == 0) {
			if (poll(&p, 1, 30000) != 1) {
				snprintf(t->err, sizeof(t->err),
					 "no completion in 30 s (%d of %d)", done,
					 CC_DEPTH);
				return -1;
			}
			continue;
		}
		for (int k = 0; k < n; k++) {
			int idx = (int)((int *)c[k].user_data - seen);

			if (idx < 0 || idx >= CC_DEPTH || seen[idx]++ || c[k].result) {
				snprintf(t->err, sizeof(t->err),
					 "bad completion: idx %d result %d (%s)", idx,
					 c[k].result, dc_strerror(c[k].result));
				return -1;
			}
		}
		done += n;
	}
	return 0;
}

static void *cc_async_thread(void *arg)
{
	struct cc_thread *t = arg;
	size_t len = (size_t)CC_SECTORS * t->ss;
	uint8_t *bufs = h_alloc(CC_DEPTH * len);
	uint64_t sectors[CC_DEPTH];
	uint64_t slots = t->nsectors / CC_SECTORS;
	dc_queue *q;

	if (dc_queue_open(t->disk, DC_QUEUE_POLL, &q) < 0) {
		snprintf(t->err, sizeof(t->err), "dc_queue_open: %s", dc_last_error());
		free(bufs);
		return NULL;
	}
	for (int round = 0; round < CC_ROUNDS && !t->err[0]; round++) {
		/* Distinct slots within the range, moving each round. */
		for (int i = 0; i < CC_DEPTH; i++) {
			uint64_t slot =
				((uint64_t)round * 5 + (uint64_t)i * (slots / CC_DEPTH)) %
				slots;

			sectors[i] = t->first + slot * CC_SECTORS;
			h_fill(bufs + i * len, len, cc_seed(t->id, round, sectors[i]));
		}
		if (cc_batch(t, q, DC_OP_WRITE, sectors, bufs, len) < 0)
			break;
		memset(bufs, 0, CC_DEPTH * len);
		if (cc_batch(t, q, DC_OP_READ, sectors, bufs, len) < 0)
			break;
		for (int i = 0; i < CC_DEPTH; i++) {
			long off = h_check(bufs + i * len, len,
					   cc_seed(t->id, round, sectors[i]));

			if (off >= 0) {
				snprintf(t->err, sizeof(t->err),
					 "round %d: sector %llu differs at byte %ld",
					 round, (unsigned long long)sectors[i], off);
				break;
			}
		}
	}
	dc_queue_close(q);
	free(bufs);
	return NULL;
}

/* Each thread's last write to each slot, for the final check. */
static void cc_expected(const struct cc_thread *t, uint64_t slot, uint64_t *seed,
			bool *written)
{
	uint64_t slots = t->nsectors / CC_SECTORS;

	*written = false;
	for (int round = CC_ROUNDS - 1; round >= 0 && !*written; round--) {
		for (int i = 0; i < CC_DEPTH; i++) {
			uint64_t s =
				((uint64_t)round * 5 + (uint64_t)i * (slots / CC_DEPTH)) %
				slots;

			if (s == slot) {
				*seed = cc_seed(t->id, round,
						t->first + slot * CC_SECTORS);
				*written = true;
			}
		}
	}
}

static void cc_run(const char *spec, void *(*fn)(void *), bool check_after)
{
	dc_disk *d = conformance_open(spec, NULL);
	struct cc_thread th[CC_THREADS];
	uint32_t ss = dc_sector_size(d);
	uint64_t per = dc_sector_count(d) / CC_THREADS;

	per -= per % CC_SECTORS;
	for (int i = 0; i < CC_THREADS; i++) {
		th[i] = (struct cc_thread){ .disk = d,
					    .id = i + 1,
					    .ss = ss,
					    .first = (uint64_t)i * per,
					    .nsectors = per };
		ck_assert_int_eq(pthread_create(&th[i].t, NULL, fn, &th[i]), 0);
	}
	for (int i = 0; i < CC_THREADS; i++)
		pthread_join(th[i].t, NULL);
	for (int i = 0; i < CC_THREADS; i++)
		ck_assert_msg(!th[i].err[0], "%s: thread %d: %s", spec, i + 1, th[i].err);
	if (check_after) {
		/* Nothing a thread wrote landed in another's range. */
		size_t len = (size_t)CC_SECTORS * ss;
		uint8_t *buf = h_alloc(len);

		for (int i = 0; i < CC_THREADS; i++) {
			for (uint64_t slot = 0; slot < per / CC_SECTORS; slot++) {
				uint64_t seed;
				bool written;

				cc_expected(&th[i], slot, &seed, &written);
				if (!written)
					continue;
				ck_assert_int_eq(dc_read(d,
							 th[i].first + slot * CC_SECTORS,
							 buf, len),
						 0);
				ck_assert_msg(h_check(buf, len, seed) < 0,
					      "%s: thread %d slot %llu overwritten", spec,
					      i + 1, (unsigned long long)slot);
			}
		}
		free(buf);
	}
	dc_close(d);
}

START_TEST(cc_async)
{
	cc_run(cc_specs[_i], cc_async_thread, true);
}
END_TEST

/* The blocking calls (implicit per-thread queues) from several threads. */
static void *cc_blocking_thread(void *arg)
{
	struct cc_thread *t = arg;
	size_t len = (size_t)CC_SECTORS * t->ss;
	uint8_t *buf = h_alloc(len);
	uint64_t slots = t->nsectors / CC_SECTORS;

	for (int round = 0; round < CC_ROUNDS * 4 && !t->err[0]; round++) {
		uint64_t sector = t->first + ((uint64_t)round * 7 % slots) * CC_SECTORS;
		uint64_t seed = cc_seed(t->id, round, sector);
		int r;

		h_fill(buf, len, seed);
		r = dc_write(t->disk, sector, buf, len, round % 3 ? 0 : DC_IO_FUA);
		if (r == 0) {
			memset(buf, 0, len);
			r = dc_read(t->disk, sector, buf, len);
		}
		if (r == 0 && round % 8 == 0)
			r = dc_flush(t->disk);
		if (r) {
			snprintf(t->err, sizeof(t->err), "round %d: %d (%s)", round, r,
				 dc_strerror(r));
			break;
		}
		long off = h_check(buf, len, seed);
		if (off >= 0)
			snprintf(t->err, sizeof(t->err), "round %d: sector %llu byte %ld",
				 round, (unsigned long long)sector, off);
		/* Metadata calls race with I/O harmlessly. */
		if (dc_sector_count(t->disk) == 0)
			snprintf(t->err, sizeof(t->err), "sector count 0");
	}
	free(buf);
	return NULL;
}

START_TEST(cc_blocking)
{
	cc_run(cc_specs[_i], cc_blocking_thread, false);
}
END_TEST

/* Queues opened and closed on some threads while others do I/O. */
static void *cc_churn_thread(void *arg)
{
	struct cc_thread *t = arg;
	uint8_t *buf = h_alloc(t->ss);

	for (int i = 0; i < 200 && !t->err[0]; i++) {
		dc_queue *q;
		int r = dc_queue_open(t->disk, i % 2 ? DC_QUEUE_POLL : 0, &q);

		if (r < 0) {
			snprintf(t->err, sizeof(t->err), "dc_queue_open = %d", r);
			break;
		}
		dc_queue_close(q);
		r = dc_read(t->disk, t->first, buf, t->ss);
		if (r)
			snprintf(t->err, sizeof(t->err), "read = %d", r);
	}
	free(buf);
	return NULL;
}

START_TEST(cc_queue_churn)
{
	cc_run(cc_specs[_i], cc_churn_thread, false);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("concurrency");
	TCase *tc = tcase_create("concurrency");

	tcase_add_loop_test(tc, cc_async, 0, CC_NSPECS);
	tcase_add_loop_test(tc, cc_blocking, 0, CC_NSPECS);
	tcase_add_loop_test(tc, cc_queue_churn, 0, CC_NSPECS);
	suite_add_tcase(s, tc);
	return h_run(s);
}
