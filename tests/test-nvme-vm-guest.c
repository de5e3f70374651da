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

int main(int argc, char **argv)
{
	Suite *s = suite_create("nvme-vm");
	TCase *tc = tcase_create("nvme-vfio-rw");
	dc_disk *d;

	if (argc != 2) {
		fprintf(stderr, "usage: %s SPEC\n", argv[0]);
		return 2;
	}
	spec = argv[1];
	/* Bring-up once outside the suite, so a set-up failure is one clear line. */
	if (dc_open(spec, DC_OPEN_READ_ONLY, &d) < 0) {
		printf("open %s: %s\n", spec, dc_last_error());
		return 1;
	}
	dc_describe(d, print_kv, NULL);
	dc_close(d);
	tcase_add_test(tc, write_readback_flush);
	suite_add_tcase(s, tc);
	conformance_add(s, "nvme-vfio", spec);
	return h_run(s);
}
