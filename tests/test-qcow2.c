/* SPDX-License-Identifier: MIT */
/* The shared conformance suite (tests/conformance.h) over writable qcow2
 * images: new ones diskcore makes (create=, with 64 KiB and 512-byte
 * clusters), and ones qemu-img makes (read-only, version 2, extended L2,
 * 1-bit refcounts, over a raw backing file of random data, preallocated,
 * with an internal snapshot sharing every cluster), plus memdiff: over qcow2. test-qcow2-write.sh checks the images diskcore writes
 * with qemu-img; this checks the disk's behaviour. */
#include "conformance.h"
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* prepare: replace the @TMP@ file with a qcow2 image qemu-img makes with the
 * options in arg; "backing" first writes a raw backing file of random data
 * next to it. */
static int tq_prepare(const char *path, uint64_t size, void *arg)
{
	const char *opts = arg;

	if (!strcmp(opts, "backing"))
		return h_sh("head -c %llu /dev/urandom >'%s.base' && qemu-img create -q -f "
			    "qcow2 -o cluster_size=4k -b \"$(basename '%s.base')\" -F raw "
			    "'%s' %llu",
			    (unsigned long long)size, path, path, path,
			    (unsigned long long)size) == 0 ?
			       0 :
			       -EIO;
	/* "snap:OPTS": an image of OPTS filled by qemu-io, then snapshotted,
	 * so every cluster the suite writes is shared (copy on write). */
	if (!strncmp(opts, "snap:", 5))
		return h_sh("qemu-img create -q -f qcow2 -o '%s' '%s' %llu && qemu-io -f "
			    "qcow2 -c 'write -P 0x5a 0 %llu' '%s' >/dev/null && "
			    "qemu-img snapshot -c s1 '%s'",
			    opts + 5, path, (unsigned long long)size,
			    (unsigned long long)size, path, path) == 0 ?
			       0 :
			       -EIO;
	return h_sh("qemu-img create -q -f qcow2 -o '%s' '%s' %llu", opts, path,
		    (unsigned long long)size) == 0 ?
		       0 :
		       -EIO;
}

/* Growing: 512-byte clusters, so the L1 table outgrows its cluster and moves;
 * data written before and after survives, and qemu-img agrees. */
START_TEST(qcow2_grow)
{
	char *path = h_tmppath(".qcow2");
	dc_disk *d = h_openf(0, "qcow2:%s;create=1M;cluster=512", path);
	uint8_t buf[4096], got[4096];

	h_fill(buf, sizeof(buf), 1);
	ck_assert_int_eq(dc_write(d, 2040, buf, sizeof(buf), 0), 0);
	ck_assert_int_eq(dc_resize(d, 9 * 2048), 0);
	ck_assert_uint_eq(dc_sector_count(d), 9 * 2048);
	ck_assert_int_eq(dc_write(d, 9 * 2048 - 8, buf, sizeof(buf), 0), 0);
	ck_assert_int_ne(dc_resize(d, 2048), 0); /* shrinking is refused */
	ck_assert_int_eq(dc_read(d, 2040, got, sizeof(got)), 0);
	ck_assert_mem_eq(buf, got, sizeof(buf));
	ck_assert_int_eq(dc_flush(d), 0);
	dc_close(d);
	if (h_have_program("qemu-img")) {
		ck_assert_int_eq(h_sh("qemu-img check -q '%s'", path), 0);
		ck_assert_int_eq(
			h_sh("qemu-img info '%s' | grep -q 'virtual size: 9 MiB'", path),
			0);
		ck_assert_int_eq(
			h_sh("qemu-io -f qcow2 -c 'read -P 0 1044480 4096' '%s' | "
			     "grep -q 'Pattern verification failed'",
			     path),
			0);
	}
	d = h_openf(DC_OPEN_READ_ONLY, "qcow2:%s", path);
	ck_assert_int_eq(dc_read(d, 9 * 2048 - 8, got, sizeof(got)), 0);
	ck_assert_mem_eq(buf, got, sizeof(buf));
	dc_close(d);
	free(path);
}
END_TEST

/* In-place writes (the file engine, from the queue's thread) racing
 * allocating ones into the same extended-L2 clusters, on one queue: 64 KiB
 * clusters of 2 KiB subclusters, the even ones allocated; each 4 KiB is
 * written as [0,1K) (in place), [1K,3K) (allocating: it copies the rest of
 * both subclusters, [0,1K) among them, so it must wait for that in-place
 * write) and [3K,4K), all at once in a shuffled order. Every byte must be the
 * last written, and qemu-img check clean. */
#define TQ_CLUSTERS 16
#define TQ_PIECES (TQ_CLUSTERS * 16 * 3)

static void tq_race_submit(dc_queue *q, uint8_t *data, int *order, int *done)
{
	static const uint32_t at[3] = { 0, 1024, 3072 }, len[3] = { 1024, 2048, 1024 };
	struct iovec iov[TQ_PIECES];
	int sent = 0, finished = 0;

	while (finished < TQ_PIECES) {
		struct dc_completion cq[16];
		struct pollfd pfd = { .fd = dc_queue_fd(q), .events = POLLIN };
		int n;

		for (; sent < TQ_PIECES && sent - finished < 64; sent++) {
			int p = order[sent];
			uint64_t off = (uint64_t)p / 3 * 4096 + at[p % 3];

			iov[p] = (struct iovec){ data + off, len[p % 3] };
			struct dc_io io = { .op = DC_OP_WRITE,
					    .sector = off / 512,
					    .iov = &iov[p],
					    .iovcnt = 1,
					    .user_data = &done[p] };
			ck_assert_int_eq(dc_submit(q, &io), 0);
		}
		n = dc_queue_reap(q, cq, 16);
		if (n == 0) {
			ck_assert_int_eq(poll(&pfd, 1, 30000), 1);
			continue;
		}
		for (int k = 0; k < n; k++) {
			ck_assert_int_eq(cq[k].result, 0);
			(*(int *)cq[k].user_data)++;
		}
		finished += n;
	}
}

START_TEST(qcow2_inplace_race)
{
	char *path = h_tmppath(".qcow2");
	size_t size = TQ_CLUSTERS * 65536;
	uint8_t *data = h_alloc(size), *got = h_alloc(size);
	int order[TQ_PIECES], done[TQ_PIECES] = { 0 };
	dc_queue *q;
	dc_disk *d;

	if (!h_have_program("qemu-io"))
		return;
	ck_assert_int_eq(
		h_sh("qemu-img create -q -f qcow2 -o cluster_size=64k,extended_l2=on "
		     "'%s' %zu && for o in $(seq 0 4096 %zu); do echo \"write -P 7 $o "
		     "2k\"; done | qemu-io -f qcow2 '%s' >/dev/null",
		     path, size, size - 1, path),
		0);
	h_fill(data, size, 42);
	srand(7);
	for (int i = 0; i < TQ_PIECES; i++)
		order[i] = i;
	for (int i = TQ_PIECES - 1; i > 0; i--) {
		int j = rand() % (i + 1), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	d = h_openf(0, "qcow2:%s", path);
	ck_assert_int_eq(dc_queue_open(d, DC_QUEUE_POLL, &q), 0);
	tq_race_submit(q, data, order, done);
	dc_queue_close(q);
	for (int i = 0; i < TQ_PIECES; i++)
		ck_assert_int_eq(done[i], 1);
	ck_assert_int_eq(dc_read(d, 0, got, size), 0);
	ck_assert_int_eq(memcmp(data, got, size), 0);
	dc_close(d);
	ck_assert_int_eq(h_sh("qemu-img check -q '%s'", path), 0);
	free(data);
	free(got);
	free(path);
}
END_TEST

static void tq_add(Suite *s, const char *name, const char *tmpl, const char *opts,
		   uint32_t flags)
{
	/* Kept for the suite's life (each case reads them when it runs). */
	static struct conformance_opts o[12];
	static unsigned n;

	if (n >= 12)
		abort();
	o[n] = (struct conformance_opts){ .open_flags = flags,
					  .prepare = tq_prepare,
					  .arg = (void *)opts };
	conformance_add_opts(s, name, tmpl, &o[n++]);
}

int main(void)
{
	Suite *s = suite_create("qcow2");
	if (!h_have_plugin("qcow2")) {
		fprintf(stderr, "skip: the qcow2 plugin was not built (it needs zlib)\n");
		return 77;
	}
	conformance_add(s, "qcow2-new", "qcow2:@NEW.qcow2@;create=1M");
	conformance_add(s, "qcow2-new-512", "qcow2:@NEW.qcow2@;create=1M;cluster=512");
	if (h_have_program("qemu-img")) {
		const char *img = "qcow2:@TMP:2M.qcow2@";

		tq_add(s, "qcow2-ro", img, "cluster_size=64k", DC_OPEN_READ_ONLY);
		tq_add(s, "qcow2-v2", img, "compat=0.10,cluster_size=4k", 0);
		tq_add(s, "qcow2-extl2", img, "extended_l2=on,cluster_size=16k", 0);
		tq_add(s, "qcow2-refcount1", img, "refcount_bits=1,cluster_size=512", 0);
		tq_add(s, "qcow2-backing", img, "backing", 0);
		/* Every cluster allocated: writes go in place (the file engine). */
		tq_add(s, "qcow2-prealloc", img, "preallocation=metadata,cluster_size=4k",
		       0);
		tq_add(s, "qcow2-snapshot", img, "snap:cluster_size=4k", 0);
		tq_add(s, "qcow2-snapshot-extl2", img,
		       "snap:extended_l2=on,cluster_size=64k", 0);
		tq_add(s, "memdiff-qcow2", "memdiff:qcow2:@TMP:2M.qcow2@", "backing", 0);
	} else {
		fprintf(stderr, "note: no qemu-img: the cases over its images not run\n");
	}
	TCase *tc = tcase_create("qcow2-grow");

	tcase_add_test(tc, qcow2_grow);
	tcase_add_test(tc, qcow2_inplace_race);
	suite_add_tcase(s, tc);
	return h_run(s);
}
