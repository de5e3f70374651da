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
	suite_add_tcase(s, tc);
	return h_run(s);
}
