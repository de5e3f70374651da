/* SPDX-License-Identifier: MIT */
/* Runs inside the VM of tests/test-nvme-vm.sh, over a real (QEMU-emulated)
 * NVMe function bound to vfio-pci: the conformance suite over `nvme:ADDR`
 * and a write / read-back / flush check that also reopens the controller
 * (a shutdown and a fresh bring-up between writing and reading).
 * Usage: test-nvme-vm-guest SPEC */
#include "conformance.h"
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *spec;
static char spec4q[256];

static int print_kv(void *arg, int depth, const char *plugin, const char *form,
		    const struct dc_info *info, const char *key, const char *value)
{
	(void)arg;
	(void)depth;
	(void)form;
	(void)info;
	if (key)
		printf("describe %s: %s = %s\n", plugin, key, value ? value : "");
	return 0;
}

START_TEST(write_readback_flush)
{
	dc_disk *d = h_open(spec, 0);
	uint64_t n = dc_sector_count(d), ss = dc_sector_size(d);
	const uint64_t at[] = { 0, n / 2 - 3, n - 256 };
	const size_t len = 256 * 4096; /* split into several commands */
	uint8_t *w = h_alloc(len), *r = h_alloc(len);

	ck_assert_uint_ge(n * ss, 4 * len);
	for (int i = 0; i < 3; i++) {
		size_t l = at[i] + len / ss > n ? (n - at[i]) * ss : len;

		h_fill(w, l, 100 + i);
		ck_assert_int_eq(dc_write(d, at[i], w, l, i == 1 ? DC_IO_FUA : 0), 0);
	}
	ck_assert_int_eq(dc_flush(d), 0);
	dc_close(d);
	d = h_open(spec, 0);
	for (int i = 0; i < 3; i++) {
		size_t l = at[i] + len / ss > n ? (n - at[i]) * ss : len;

		ck_assert_int_eq(dc_read(d, at[i], r, l), 0);
		ck_assert_int_eq(h_check(r, l, 100 + i), -1);
	}
	free(w);
	free(r);
	dc_close(d);
}
END_TEST

/* Many reads in flight through real MSI-X: on a queue driven by
 * dc_queue_wait() (the driver reaps on this thread) and on a callback queue
 * (its reaper thread does), two queue pairs. */
#define NREQ 64

static void reads_in_flight(uint32_t qflags)
{
	char *s2 = h_fmt("%s;queues=2;depth=16", spec);
	dc_disk *d = h_open(s2, 0);
	uint8_t *w = h_alloc(NREQ * 4096), *r = h_alloc(NREQ * 4096);
	struct iovec iov[NREQ];
	struct dc_completion c[NREQ];
	struct h_count k = H_COUNT_INIT;
	uint64_t deadline = h_now_ms() + 60000;
	int got = 0;
	dc_queue *q;

	h_fill(w, NREQ * 4096, qflags + 7);
	ck_assert_int_eq(dc_write(d, 0, w, NREQ * 4096, 0), 0);
	ck_assert_int_eq(dc_queue_open(d, qflags, &q), 0);
	if (qflags)
		ck_assert_int_ge(dc_queue_wait(q, 0), 0);
	for (int i = 0; i < NREQ; i++) {
		struct dc_io io = { .op = DC_OP_READ,
				    .sector = 8u * i,
				    .iov = &iov[i],
				    .iovcnt = 1,
				    .cb = qflags ? NULL : h_count_cb,
				    .user_data = &k };

		iov[i] = (struct iovec){ r + 4096u * i, 4096 };
		ck_assert_int_eq(dc_submit(q, &io), 0);
	}
	if (qflags) {
		while (got < NREQ && h_now_ms() < deadline) {
			ck_assert_int_ge(dc_queue_wait(q, 1000), 0);
			got += dc_queue_reap(q, c + got, NREQ - got);
		}
		ck_assert_int_eq(got, NREQ);
		for (int i = 0; i < NREQ; i++)
			ck_assert_int_eq(c[i].result, 0);
	} else {
		h_count_wait(&k, NREQ, 60000);
		ck_assert_uint_eq(k.failed, 0);
		/* MSI-X through the IOMMU's interrupt remapping woke the reaper
		 * (its periodic tick alone would also finish them, slowly). */
		ck_assert_uint_gt(h_desc_num(d, "nvme", "interrupts"), 0);
	}
	ck_assert_int_eq(memcmp(r, w, NREQ * 4096), 0);
	dc_queue_close(q);
	dc_close(d);
	free(w);
	free(r);
	free(s2);
}

START_TEST(reads_queue_wait)
{
	reads_in_flight(DC_QUEUE_POLL);
}
END_TEST

START_TEST(reads_callback)
{
	reads_in_flight(0);
}
END_TEST

int main(int argc, char **argv)
{
	Suite *s;
	TCase *tc;
	dc_disk *d;

	if (argc != 2) {
		fprintf(stderr, "usage: %s SPEC\n", argv[0]);
		return 2;
	}
	spec = argv[1];
	/* Bring-up once outside the suite, so a set-up failure is one clear
	 * line (on stderr: a sanitizer's exit would lose buffered stdout). */
	if (dc_open(spec, DC_OPEN_READ_ONLY, &d) < 0) {
		fprintf(stderr, "open %s: %s\n", spec, dc_last_error());
		return 1;
	}
	dc_describe(d, print_kv, NULL);
	dc_close(d);
	fflush(stdout); /* not again from every forked test */
	s = suite_create("nvme-vm");
	tc = tcase_create("nvme-vfio-rw");
	tcase_add_test(tc, write_readback_flush);
	tcase_add_test(tc, reads_queue_wait);
	tcase_add_test(tc, reads_callback);
	suite_add_tcase(s, tc);
	conformance_add(s, "nvme-vfio", spec);
	snprintf(spec4q, sizeof(spec4q), "%s;queues=4;depth=8", spec);
	conformance_add(s, "nvme-vfio-4q", spec4q);
	return h_run(s);
}
