/* SPDX-License-Identifier: MIT */
/*
 * The ram layer plugin (mem:, memdiff:): OpenVMM's disklayer_ram tests
 * (docs/openvmm-compat.md §7.2) through dc_open/dc_resize, the layer contract checked on
 * the plugin directly (write-no-overwrite, markers, zero_after), the
 * conformance suite, and concurrent readers against writers.
 *
 * Patterned lower layers come from the test-only tlayer/tdisk plugins in
 * tests/layers (tpat:SIZE holds tlayer's counting pattern everywhere).
 */
#include "../core/internal.h"
#include "conformance.h"
#include "harness.h"
#include "layers/testlayers.h"

#include <check.h>
#include <diskcore/diskcore.h>
#include <diskcore/plugin.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1024 * 1024)

/* --- helpers ------------------------------------------------------------ */

static void expect_pattern(dc_disk *d, uint64_t sector, uint64_t n, uint32_t seed)
{
	uint32_t ss = dc_sector_size(d);
	uint8_t *buf = h_alloc(n * ss);
	long bad;

	memset(buf, 0xee, n * ss);
	ck_assert_int_eq(dc_read(d, sector, buf, n * ss), 0);
	bad = tl_pat_check(buf, sector, n, ss, seed);
	ck_assert_msg(bad < 0, "sector %llu: word %ld is %#x, expected seed %u",
		      (unsigned long long)(sector + (uint64_t)bad * 4 / ss), bad,
		      ((uint32_t *)buf)[bad], seed);
	free(buf);
}

static void expect_zero(dc_disk *d, uint64_t sector, uint64_t n)
{
	uint32_t ss = dc_sector_size(d);
	uint8_t *buf = h_alloc(n * ss);
	long bad;

	memset(buf, 0xee, n * ss);
	ck_assert_int_eq(dc_read(d, sector, buf, n * ss), 0);
	bad = h_check_zero(buf, n * ss);
	ck_assert_msg(bad < 0, "sector %llu is not zero",
		      (unsigned long long)(sector + (uint64_t)bad / ss));
	free(buf);
}

/* --- OpenVMM disklayer_ram tests ---------------------------------------- */

START_TEST(test_diff)
{
	dc_disk *d = tl_open_ok("memdiff:tpat:1M", 0);

	expect_pattern(d, 10, 2, 0);
	tl_write_pattern(d, 10, 2, 1);
	tl_write_pattern(d, 11, 1, 2);
	expect_pattern(d, 9, 1, 0);
	expect_pattern(d, 10, 1, 1);
	expect_pattern(d, 11, 1, 2);
	expect_pattern(d, 12, 1, 0);
	dc_close(d);
}
END_TEST

START_TEST(test_resize)
{
	const uint64_t n = MIB / 512;
	dc_disk *d = tl_open_ok("memdiff:tpat:1M", 0);
	uint8_t buf[512];
	uint64_t count = 0;

	expect_pattern(d, 0, n, 0);
	ck_assert_int_eq(dc_resize(d, n / 2), 0);
	ck_assert_uint_eq(dc_sector_count(d), n / 2);
	ck_assert_int_eq(dc_wait_resize(d, n, 0, &count), 0);
	ck_assert_uint_eq(count, n / 2);
	ck_assert_int_eq(dc_read(d, n / 2, buf, sizeof(buf)), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_resize(d, n), 0);
	ck_assert_uint_eq(dc_sector_count(d), n);
	/* The first half keeps the lower data; the regrown half reads zero. */
	expect_pattern(d, 0, n / 2, 0);
	expect_zero(d, n / 2, n / 2);
	dc_close(d);
}
END_TEST

START_TEST(test_resize_errors)
{
	dc_disk *d = tl_open_ok("mem:1M", 0);

	ck_assert_int_eq(dc_resize(d, 0), -EINVAL);
	ck_assert_msg(strstr(dc_last_error(), "sector count 0"), "%s", dc_last_error());
	ck_assert_uint_eq(dc_sector_count(d), MIB / 512);
	dc_close(d);
	d = tl_open_ok("mem:1M", DC_OPEN_READ_ONLY);
	ck_assert_int_lt(dc_resize(d, 10), 0);
	dc_close(d);
}
END_TEST

/* A shrink drops the stored data; growing again exposes zeroes. */
START_TEST(test_resize_mem)
{
	const uint64_t n = MIB / 512;
	dc_disk *d = tl_open_ok("mem:1M", 0);

	tl_write_pattern(d, 0, n, 5);
	ck_assert_uint_eq(tl_describe_num(d, "mem", 0, "committed_size"), MIB);
	ck_assert_int_eq(dc_resize(d, 100), 0);
	ck_assert_uint_eq(tl_describe_num(d, "mem", 0, "committed_size"), 100 * 512);
	ck_assert_int_eq(dc_resize(d, 4 * n), 0);
	ck_assert_uint_eq(dc_sector_count(d), 4 * n);
	expect_pattern(d, 0, 100, 5);
	expect_zero(d, 100, 4 * n - 100);
	tl_write_pattern(d, 4 * n - 8, 8, 6);
	expect_pattern(d, 4 * n - 8, 8, 6);
	dc_close(d);
}
END_TEST

START_TEST(test_unmap)
{
	const uint64_t n = MIB / 512;
	dc_disk *d = tl_open_ok("memdiff:tpat:1M", 0);

	/* Unmapping all but the last sector with data below does nothing: a
	 * hole of zeroes cannot be represented. */
	ck_assert_int_eq(dc_unmap(d, 0, n - 1, 0), 0);
	expect_pattern(d, 0, n, 0);
	/* Unmapping to the end makes that part read zero. */
	ck_assert_int_eq(dc_unmap(d, n / 2, n / 2, 0), 0);
	expect_pattern(d, 0, n / 2, 0);
	expect_zero(d, n / 2, n / 2);
	/* Written data past the zero point reads back. */
	tl_write_pattern(d, n - 4, 2, 3);
	expect_pattern(d, n - 4, 2, 3);
	expect_zero(d, n - 2, 2);
	dc_close(d);
}
END_TEST

/* With nothing below, unmap drops the data at once. */
START_TEST(test_unmap_mem)
{
	dc_disk *d = tl_open_ok("mem:1M", 0);
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_UNSPECIFIED);
	tl_write_pattern(d, 0, 256, 4);
	ck_assert_int_eq(dc_unmap(d, 10, 20, 0), 0);
	expect_pattern(d, 0, 10, 4);
	expect_zero(d, 10, 20);
	expect_pattern(d, 30, 226, 4);
	ck_assert_uint_eq(tl_describe_num(d, "mem", 0, "committed_size"),
			  (256 - 20) * 512);
	ck_assert_int_eq(dc_unmap(d, 0, 0, 0), 0);
	ck_assert_int_eq(dc_unmap(d, 0, 256, 0), 0);
	ck_assert_uint_eq(tl_describe_num(d, "mem", 0, "committed_size"), 0);
	expect_zero(d, 0, 256);
	dc_close(d);
}
END_TEST

/* dc_map() callback: the one extent expected. */
static int prealloc_extent(void *arg, const struct dc_extent *e)
{
	struct dc_extent *one = arg;

	ck_assert_uint_eq(one->length, 0);
	*one = *e;
	return 0;
}

/* ;prealloc makes the memory at open but nothing present: zeroes read back,
 * nothing is committed or mapped as data until written; unmap still drops;
 * a memdiff over a pattern still shows the pattern; a disk larger than the
 * machine is refused. */
START_TEST(test_prealloc)
{
	dc_disk *d = tl_open_ok("mem:1M;prealloc", 0);
	struct dc_extent e = { 0 };

	expect_zero(d, 0, 2048);
	ck_assert_uint_eq(tl_describe_num(d, "mem", 0, "committed_size"), 0);
	ck_assert_int_eq(dc_map(d, 0, MIB, prealloc_extent, &e), 0);
	ck_assert_uint_eq(e.length, MIB);
	ck_assert_uint_eq(e.flags, DC_EXTENT_HOLE | DC_EXTENT_ZERO);
	tl_write_pattern(d, 100, 300, 5);
	expect_pattern(d, 100, 300, 5);
	expect_zero(d, 0, 100);
	expect_zero(d, 400, 1648);
	ck_assert_uint_eq(tl_describe_num(d, "mem", 0, "committed_size"), 300 * 512);
	ck_assert_int_eq(dc_unmap(d, 100, 300, 0), 0);
	expect_zero(d, 0, 2048);
	dc_close(d);

	d = tl_open_ok("memdiff;prealloc:tpat:1M", 0);
	expect_pattern(d, 0, 2048, 0);
	tl_write_pattern(d, 8, 8, 6);
	expect_pattern(d, 8, 8, 6);
	expect_pattern(d, 16, 2032, 0);
	dc_close(d);
	tl_open_fails("mem:1024T;prealloc", 0, 0, "more than the machine's memory");

	/* 5 MiB of chunks in 2 MiB arenas: three, on whichever pages were cheap
	 * (plugins/ram/arena.c). */
	d = tl_open_ok("mem:5M;prealloc", 0);
	{
		struct h_desc t;
		unsigned huge = 99, small = 99;

		h_describe(d, "ram", &t);
		ck_assert_ptr_nonnull(h_desc_get(&t, "arenas"));
		ck_assert_int_eq(sscanf(h_desc_get(&t, "arenas"),
					"%u on huge pages, %u on small pages", &huge,
					&small),
				 2);
		ck_assert_uint_eq(huge + small, 3);
	}
	dc_close(d);
}
END_TEST

START_TEST(test_4096_sector_write_read)
{
	dc_disk *d = tl_open_ok("mem:1M;sector=4096", 0);

	ck_assert_uint_eq(dc_sector_size(d), 4096);
	tl_write_pattern(d, 3, 5, 7);
	expect_pattern(d, 3, 5, 7);
	expect_zero(d, 0, 3);
	expect_zero(d, 8, 248);
	/* Across a 64 KiB chunk boundary (16 sectors of 4 KiB). */
	tl_write_pattern(d, 14, 6, 8);
	expect_pattern(d, 14, 6, 8);
	dc_close(d);
}
END_TEST

START_TEST(test_sector_count_4096)
{
	dc_disk *d = tl_open_ok("mem:1M;sector=4096", 0);
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, 256);
	ck_assert_uint_eq(info.sector_size, 4096);
	ck_assert_uint_eq(info.physical_sector_size, 4096);
	dc_close(d);
}
END_TEST

START_TEST(test_invalid_sector_size)
{
	tl_open_fails("mem:1M;sector=1000", 0, 0, "sector size 1000");
	tl_open_fails("mem:1M;sector=256", 0, 0, "sector size 256");
	tl_open_fails("memdiff;sector=1000:mem:1M", 0, 0, "sector size 1000");
}
END_TEST

START_TEST(test_size_errors)
{
	tl_open_fails("mem:5000;sector=4096", 0, 0, "not a multiple of the sector size");
	tl_open_fails("mem:1000", 0, 0, "not a multiple of the sector size");
	tl_open_fails("mem:0", 0, 0, "no sectors");
	tl_open_fails("mem:invalid", 0, 0, "invalid");
}
END_TEST

START_TEST(test_lazy_inherits_sector_size)
{
	dc_disk *d = tl_open_ok("memdiff:mem:1M;sector=4096", 0);

	ck_assert_uint_eq(dc_sector_size(d), 4096);
	ck_assert_uint_eq(dc_sector_count(d), 256);
	dc_close(d);
	d = tl_open_ok("memdiff:tdisk:64K;sector=4096", 0);
	ck_assert_uint_eq(dc_sector_size(d), 4096);
	ck_assert_uint_eq(dc_sector_count(d), 16);
	dc_close(d);
}
END_TEST

START_TEST(test_mismatched_sector_sizes_rejected)
{
	tl_open_fails("memdiff;sector=4096:mem:1M", 0, 0, "does not match");
	tl_open_fails("memdiff;sector=512:mem:1M;sector=4096", 0, 0, "does not match");
	tl_open_fails("memdiff;sector=4096:tdisk:1M", 0, 0, "does not match");
}
END_TEST

START_TEST(test_info)
{
	dc_disk *d = tl_open_ok("mem:1M", 0);
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert_str_eq(info.disk_type, "layered");
	ck_assert_uint_eq(info.sector_count, MIB / 512);
	ck_assert_uint_eq(info.sector_size, 512);
	ck_assert_uint_eq(info.physical_sector_size, 512);
	ck_assert_uint_eq(info.optimal_unmap_sectors, 1);
	ck_assert(info.flags & DC_INFO_FUA_RESPECTED);
	ck_assert(!(info.flags & DC_INFO_HAS_DISK_ID));
	ck_assert(!(info.flags & DC_INFO_READ_ONLY));
	expect_zero(d, 0, MIB / 512);
	dc_close(d);
}
END_TEST

START_TEST(test_read_only)
{
	dc_disk *d = tl_open_ok("mem:1M", DC_OPEN_READ_ONLY);
	uint8_t buf[512] = { 1 };

	ck_assert_int_eq(dc_write(d, 0, buf, sizeof(buf), 0), DC_E_READ_ONLY);
	ck_assert_int_eq(dc_unmap(d, 0, 1, 0), DC_E_READ_ONLY);
	ck_assert_int_eq(dc_read(d, 0, buf, sizeof(buf)), 0);
	ck_assert_int_eq(dc_flush(d), 0);
	dc_close(d);
}
END_TEST

/* A large disk only allocates what is written. */
START_TEST(test_sparse_large)
{
	dc_disk *d = tl_open_ok("mem:1T", 0);
	uint64_t last = dc_sector_count(d) - 1;

	ck_assert_uint_eq(dc_sector_count(d), (UINT64_C(1) << 40) / 512);
	tl_write_pattern(d, last, 1, 9);
	tl_write_pattern(d, last / 2, 1, 9);
	expect_pattern(d, last, 1, 9);
	expect_zero(d, last - 7, 7);
	ck_assert_uint_eq(tl_describe_num(d, "mem", 0, "committed_size"), 1024);
	ck_assert_int_eq(dc_unmap(d, 0, last + 1, 0), 0);
	ck_assert_uint_eq(tl_describe_num(d, "mem", 0, "committed_size"), 0);
	dc_close(d);
}
END_TEST

/* --- the layer contract on the plugin itself ----------------------------- */

struct direct {
	void *dl;
	const struct dc_plugin *p;
	void *inst;
	struct dc_info info;
	struct dc_ireq parent;
	int result;
};

static void direct_done(struct dc_req *parent, struct dc_req *child)
{
	struct direct *x =
		(struct direct *)((char *)parent - offsetof(struct direct, parent));

	x->result = child->result;
}

static void *direct_find(void)
{
	const char *path = getenv("DISKCORE_PLUGIN_PATH");
	char *copy, *save = NULL, *dir;
	void *dl = NULL;

	ck_assert_ptr_nonnull(path);
	copy = strdup(path);
	for (dir = strtok_r(copy, ":", &save); dir && !dl;
	     dir = strtok_r(NULL, ":", &save)) {
		char file[4096];

		snprintf(file, sizeof(file), "%s/ram.so", dir);
		dl = dlopen(file, RTLD_NOW | RTLD_LOCAL);
	}
	free(copy);
	ck_assert_msg(dl, "ram.so not found on %s", path);
	return dl;
}

/* Open mem:SIZE straight from the descriptor, with no layered disk on top. */
static void direct_open(struct direct *x, const char *size, bool ro)
{
	const struct dc_plugin *(*entry)(struct dc_plugin_abi *);
	struct dc_plugin_abi abi;
	const char *fields[] = { size };
	struct dc_open_args a = {
		.struct_size = sizeof(a),
		.form = "mem",
		.fields = fields,
		.nfields = 1,
		.read_only = ro,
	};

	memset(x, 0, sizeof(*x));
	x->dl = direct_find();
	*(void **)&entry = dlsym(x->dl, DC_PLUGIN_ENTRY_NAME);
	ck_assert_ptr_nonnull(entry);
	x->p = entry(&abi);
	ck_assert_int_eq(x->p->kind, DC_KIND_LAYER);
	ck_assert_int_eq(x->p->open(&a, &x->inst, &x->info), 0);
	ck_assert_int_eq(x->p->attach(x->inst, NULL, &x->info), 0);
	ck_assert(x->info.flags & DC_INFO_CAN_READ_CACHE);
	ck_assert(!(x->info.flags & DC_INFO_READ_ONLY));
}

static void direct_close(struct direct *x)
{
	x->p->close(x->inst);
	dlclose(x->dl);
}

/* One request, as the layered disk would send it. */
static int direct_io(struct direct *x, uint32_t op, uint32_t flags, uint64_t sector,
		     uint64_t count, void *buf, struct dc_marker *m)
{
	struct iovec iov = { buf, buf ? count * 512 : 0 };
	struct dc_ireq r;

	memset(&r, 0, sizeof(r));
	r.kind = DC_IREQ_HEAP;
	r.parent = &x->parent;
	r.done = direct_done;
	r.pub.op = op;
	r.pub.flags = flags;
	r.pub.sector = sector;
	r.pub.count = count;
	r.pub.buf = (struct dc_buf){ .iov = &iov, .iovcnt = 1, .len = iov.iov_len };
	r.pub.marker = m;
	x->result = 1;
	x->p->submit(x->inst, &r.pub);
	ck_assert_msg(x->result != 1, "ram did not complete inline");
	return x->result;
}

/* Reads sectors [s, s+n) with a marker; returns the marked bits. */
static uint64_t direct_read(struct direct *x, uint64_t s, uint64_t n, void *buf)
{
	uint64_t bits = 0;
	struct dc_marker m = { &bits, 0, s, n };

	ck_assert_int_le(n, 64);
	ck_assert_int_eq(direct_io(x, DC_OP_READ, 0, s, n, buf, &m), 0);
	return bits;
}

START_TEST(test_layer_write_no_overwrite)
{
	struct direct x;
	uint8_t a[8 * 512], b[8 * 512], got[8 * 512];

	direct_open(&x, "64K", false);
	tl_pat_fill(a, 0, 8, 512, 1);
	tl_pat_fill(b, 0, 8, 512, 2);
	ck_assert_int_eq(direct_io(&x, DC_OP_WRITE, 0, 0, 4, a, NULL), 0);
	/* Nothing written yet in 4..7: unmarked, and the buffer left alone. */
	memset(got, 0xee, sizeof(got));
	ck_assert_uint_eq(direct_read(&x, 0, 8, got), 0x0f);
	ck_assert_int_eq(tl_pat_check(got, 0, 4, 512, 1), -1);
	ck_assert_uint_eq(got[4 * 512], 0xee);
	ck_assert_int_eq(direct_io(&x, DC_OP_WRITE, DC_IO_NO_OVERWRITE, 0, 8, b, NULL),
			 0);
	ck_assert_uint_eq(direct_read(&x, 0, 8, got), 0xff);
	ck_assert_int_eq(tl_pat_check(got, 0, 4, 512, 1), -1);
	ck_assert_int_eq(tl_pat_check(got + 4 * 512, 4, 4, 512, 2), -1);
	/* A plain write overwrites. */
	ck_assert_int_eq(direct_io(&x, DC_OP_WRITE, DC_IO_FUA, 0, 8, b, NULL), 0);
	ck_assert_uint_eq(direct_read(&x, 0, 8, got), 0xff);
	ck_assert_int_eq(tl_pat_check(got, 0, 8, 512, 2), -1);
	direct_close(&x);
}
END_TEST

START_TEST(test_layer_read_only)
{
	struct direct x;
	uint8_t a[512];

	direct_open(&x, "64K", true);
	tl_pat_fill(a, 0, 1, 512, 1);
	ck_assert_int_eq(direct_io(&x, DC_OP_WRITE, 0, 0, 1, a, NULL), DC_E_READ_ONLY);
	/* A read cache opened read-only is still populated. */
	ck_assert_int_eq(direct_io(&x, DC_OP_WRITE, DC_IO_NO_OVERWRITE, 0, 1, a, NULL),
			 0);
	ck_assert_uint_eq(direct_read(&x, 0, 1, a), 1);
	direct_close(&x);
}
END_TEST

START_TEST(test_layer_unmap_zero_after)
{
	struct direct x;
	uint8_t a[8 * 512], got[8 * 512], *big;
	const uint64_t n = 128; /* 64K */

	direct_open(&x, "64K", false);
	tl_pat_fill(a, 0, 8, 512, 1);
	ck_assert_int_eq(direct_io(&x, DC_OP_WRITE, 0, 0, 8, a, NULL), 0);
	/* Not reaching the end, with data below: ignored. */
	ck_assert_int_eq(direct_io(&x, DC_OP_UNMAP, 0, 2, 2, NULL, NULL), 0);
	ck_assert_uint_eq(direct_read(&x, 0, 8, got), 0xff);
	/* With zeroes below: dropped, and the sectors fall through. */
	ck_assert_int_eq(direct_io(&x, DC_OP_UNMAP, DC_IO_NEXT_IS_ZERO, 2, 2, NULL, NULL),
			 0);
	ck_assert_uint_eq(direct_read(&x, 0, 8, got), 0xf3);
	/* Reaching the end: from sector 6 on, absent sectors read as present
	 * zeroes, hiding the layer below. */
	ck_assert_int_eq(direct_io(&x, DC_OP_UNMAP, 0, 6, n - 6, NULL, NULL), 0);
	memset(got, 0xee, sizeof(got));
	ck_assert_uint_eq(direct_read(&x, 0, 8, got), 0xf3);
	ck_assert_int_eq(h_check_zero(got + 6 * 512, 2 * 512), -1);
	ck_assert_int_eq(tl_pat_check(got, 0, 2, 512, 1), -1);
	big = h_alloc(64 * 512);
	ck_assert_uint_eq(direct_read(&x, n - 64, 64, big), ~UINT64_C(0));
	ck_assert_int_eq(h_check_zero(big, 64 * 512), -1);
	free(big);
	direct_close(&x);
}
END_TEST

/* docs/openvmm-compat.md §7.1 test_layer_sector_range, on the layer itself. */
START_TEST(test_layer_sector_range)
{
	struct direct x;
	uint8_t *buf = h_alloc(2 * 512);
	const uint64_t n = 128, max_sector = (uint64_t)INT64_MAX >> 9;
	const uint64_t cases[][2] = { { n, 1 }, { n - 1, 2 }, { max_sector - 1, 1 } };

	direct_open(&x, "64K", false);
	for (size_t i = 0; i < 3; i++) {
		uint64_t s = cases[i][0], c = cases[i][1];

		ck_assert_int_eq(direct_io(&x, DC_OP_WRITE, 0, s, c, buf, NULL),
				 DC_E_ILLEGAL_BLOCK);
		ck_assert_int_eq(direct_io(&x, DC_OP_WRITE, DC_IO_NO_OVERWRITE, s, c, buf,
					   NULL),
				 DC_E_ILLEGAL_BLOCK);
		ck_assert_int_eq(direct_io(&x, DC_OP_UNMAP, 0, s, c, NULL, NULL),
				 DC_E_ILLEGAL_BLOCK);
		ck_assert_int_eq(direct_io(&x, DC_OP_UNMAP, DC_IO_NEXT_IS_ZERO, s, c,
					   NULL, NULL),
				 DC_E_ILLEGAL_BLOCK);
		ck_assert_int_eq(direct_io(&x, DC_OP_READ, 0, s, c, buf, NULL),
				 DC_E_ILLEGAL_BLOCK);
	}
	ck_assert_int_eq(direct_io(&x, DC_OP_WRITE, 0, n - 1, 1, buf, NULL), 0);
	/* Wrapping sums must not pass the check. */
	ck_assert_int_eq(direct_io(&x, DC_OP_UNMAP, 0, UINT64_MAX, 2, NULL, NULL),
			 DC_E_ILLEGAL_BLOCK);
	free(buf);
	direct_close(&x);
}
END_TEST

/* --- concurrency --------------------------------------------------------- */

#define CONC_THREADS 3
#define CONC_SLOTS (CONC_THREADS + 1)
#define CONC_OPS 4000
#define CONC_SEED 0x55

struct conc {
	dc_disk *d;
	unsigned id;
	uint64_t sectors;
	int failures;
};

/* 4 KiB block b belongs to writer b % CONC_SLOTS; the last slot's blocks are
 * static: written (first half of the disk) or not (second half) before the
 * threads start. Every 64 KiB chunk mixes all slots, so the reader's lock-free
 * lookups of static blocks race with writers allocating, filling, publishing
 * and unmapping the neighbouring sectors of the same chunks, while no two
 * threads touch the same bytes (so the test also runs clean under TSan). */
static void *conc_writer(void *arg)
{
	struct conc *c = arg;
	uint8_t buf[4096], got[4096];
	uint64_t blocks = c->sectors / 8, seed = c->id * 7919 + 1;

	for (unsigned i = 0; i < CONC_OPS; i++) {
		uint64_t b;

		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		b = (seed >> 20) % (blocks / CONC_SLOTS) * CONC_SLOTS + c->id;
		tl_pat_fill(buf, b * 8, 8, 512, (uint32_t)(i & 0x7f));
		if (dc_write(c->d, b * 8, buf, sizeof(buf), 0) ||
		    dc_read(c->d, b * 8, got, sizeof(got)) || memcmp(buf, got, 4096))
			c->failures++;
		if (i % 16 == 0 && (dc_unmap(c->d, b * 8, 8, 0) ||
				    dc_read(c->d, b * 8, got, sizeof(got)) ||
				    h_check_zero(got, sizeof(got)) >= 0))
			c->failures++;
	}
	return NULL;
}

static void *conc_reader(void *arg)
{
	struct conc *c = arg;
	uint64_t blocks = c->sectors / 8, seed = 12345;
	uint8_t got[4096], want[4096];

	for (unsigned i = 0; i < 4 * CONC_OPS; i++) {
		uint64_t b;

		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		b = (seed >> 20) % (blocks / CONC_SLOTS) * CONC_SLOTS + CONC_THREADS;
		if (b < blocks / 2)
			tl_pat_fill(want, b * 8, 8, 512, CONC_SEED);
		else
			memset(want, 0, sizeof(want));
		if (dc_read(c->d, b * 8, got, sizeof(got)) || memcmp(got, want, 4096))
			c->failures++;
	}
	return NULL;
}

START_TEST(test_concurrent)
{
	dc_disk *d = tl_open_ok("mem:8M", 0);
	pthread_t th[CONC_SLOTS];
	struct conc c[CONC_SLOTS];
	uint64_t blocks = dc_sector_count(d) / 8;

	for (uint64_t b = CONC_THREADS; b < blocks / 2; b += CONC_SLOTS)
		tl_write_pattern(d, b * 8, 8, CONC_SEED);
	for (unsigned i = 0; i < CONC_SLOTS; i++) {
		c[i] = (struct conc){ .d = d, .id = i, .sectors = dc_sector_count(d) };
		ck_assert_int_eq(pthread_create(&th[i], NULL,
						i < CONC_THREADS ? conc_writer :
								   conc_reader,
						&c[i]),
				 0);
	}
	for (unsigned i = 0; i < CONC_SLOTS; i++) {
		pthread_join(th[i], NULL);
		ck_assert_msg(c[i].failures == 0, "thread %u: %d failures", i,
			      c[i].failures);
	}
	dc_close(d);
}
END_TEST

/* A disk of 64 MiB or more carves chunks in lanes, one per thread
 * (plugins/ram/arena.h): writers faulting in arenas side by side get chunks
 * that are theirs alone, whatever arena they come from; what was never
 * written reads as zero; each lane holds at most one arena not yet used up. */
#define LANE_THREADS 4
#define LANE_CHUNKS 768 /* of 64 KiB: the first 48 MiB of mem:64M */

struct lane_arg {
	dc_disk *d;
	unsigned id;
	int failures;
};

static void *lane_writer(void *arg)
{
	struct lane_arg *a = arg;
	uint8_t *buf = h_alloc(64 * 1024);

	for (uint64_t ci = a->id; ci < LANE_CHUNKS; ci += LANE_THREADS) {
		tl_pat_fill(buf, ci * 128, 128, 512, a->id + 1);
		if (dc_write(a->d, ci * 128, buf, 64 * 1024, 0))
			a->failures++;
	}
	free(buf);
	return NULL;
}

START_TEST(test_lanes)
{
	dc_disk *d = tl_open_ok("mem:64M", 0);
	pthread_t th[LANE_THREADS];
	struct lane_arg a[LANE_THREADS];
	unsigned huge = 0, small = 0;
	struct h_desc t;

	for (unsigned i = 0; i < LANE_THREADS; i++) {
		a[i] = (struct lane_arg){ .d = d, .id = i };
		ck_assert_int_eq(pthread_create(&th[i], NULL, lane_writer, &a[i]), 0);
	}
	for (unsigned i = 0; i < LANE_THREADS; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(a[i].failures, 0);
	}
	for (uint64_t ci = 0; ci < LANE_CHUNKS; ci++)
		expect_pattern(d, ci * 128, 128, (uint32_t)(ci % LANE_THREADS) + 1);
	for (uint64_t ci = LANE_CHUNKS; ci < 1024; ci += 32)
		expect_zero(d, ci * 128, 32 * 128);
	ck_assert_uint_eq(tl_describe_num(d, "mem", 0, "committed_size"),
			  (uint64_t)LANE_CHUNKS * 64 * 1024);
	h_describe(d, "ram", &t);
	ck_assert_int_eq(sscanf(h_desc_get(&t, "arenas"),
				"%u on huge pages, %u on small pages", &huge, &small),
			 2);
	/* 48 MiB in 2 MiB arenas, plus at most one partly carved per lane. */
	ck_assert_uint_ge(huge + small, 24);
	ck_assert_uint_le(huge + small, 24 + 8);
	dc_close(d);
}
END_TEST

/* A disk of 64 MiB or more streams runs of 32 KiB or more into its memory
 * (plugins/ram/stream.h): gathered from segments of odd lengths, so the
 * copy starts unaligned and crosses segments mid-vector; one run covers a
 * whole chunk, one starts mid-chunk, one leaves a chunk's neighbours alone. */
START_TEST(test_stream_writes)
{
	static const size_t seg[] = { 7, 33000, 1, 24000, 8528, 64 * 1024 };
	dc_disk *d = tl_open_ok("mem:96M", 0);
	size_t total = 0, off = 0;
	struct iovec iov[6];
	uint8_t *src, *got;

	for (unsigned i = 0; i < 6; i++)
		total += seg[i];
	ck_assert_uint_eq(total % 512, 0);
	src = h_alloc(total);
	got = h_alloc(total + 1024);
	h_fill(src, total, 99);
	for (unsigned i = 0; i < 6; i++) {
		iov[i] = (struct iovec){ .iov_base = src + off, .iov_len = seg[i] };
		off += seg[i];
	}
	for (uint64_t at = 0; at < 3; at++) {
		/* sector 0 (a whole chunk), 129 (mid-chunk), 100000 (deep) */
		uint64_t s = at == 0 ? 0 : at == 1 ? 129 : 100000;

		ck_assert_int_eq(dc_writev(d, s, iov, 6, 0), 0);
		ck_assert_int_eq(dc_read(d, s, got, total), 0);
		ck_assert_msg(h_check(got, total, 99) < 0, "run at %llu",
			      (unsigned long long)s);
	}
	/* The sectors around the deep run were never written. */
	ck_assert_int_eq(dc_read(d, 100000 - 1, got, 512), 0);
	ck_assert_int_lt(h_check_zero(got, 512), 0);
	ck_assert_int_eq(dc_read(d, 100000 + total / 512, got, 512), 0);
	ck_assert_int_lt(h_check_zero(got, 512), 0);
	free(src);
	free(got);
	dc_close(d);
}
END_TEST

/* --- main ---------------------------------------------------------------- */

int main(void)
{
	static const struct conformance_opts ro = { .open_flags = DC_OPEN_READ_ONLY };
	Suite *s = suite_create("ram");
	TCase *tc = tcase_create("ram");

	tl_use_test_layers();
	tcase_add_test(tc, test_diff);
	tcase_add_test(tc, test_resize);
	tcase_add_test(tc, test_resize_errors);
	tcase_add_test(tc, test_resize_mem);
	tcase_add_test(tc, test_unmap);
	tcase_add_test(tc, test_unmap_mem);
	tcase_add_test(tc, test_prealloc);
	tcase_add_test(tc, test_4096_sector_write_read);
	tcase_add_test(tc, test_sector_count_4096);
	tcase_add_test(tc, test_invalid_sector_size);
	tcase_add_test(tc, test_size_errors);
	tcase_add_test(tc, test_lazy_inherits_sector_size);
	tcase_add_test(tc, test_mismatched_sector_sizes_rejected);
	tcase_add_test(tc, test_info);
	tcase_add_test(tc, test_read_only);
	tcase_add_test(tc, test_sparse_large);
	tcase_add_test(tc, test_stream_writes);
	suite_add_tcase(s, tc);

	tc = tcase_create("layer");
	tcase_add_test(tc, test_layer_write_no_overwrite);
	tcase_add_test(tc, test_layer_read_only);
	tcase_add_test(tc, test_layer_unmap_zero_after);
	tcase_add_test(tc, test_layer_sector_range);
	suite_add_tcase(s, tc);

	tc = tcase_create("concurrent");
	tcase_add_test(tc, test_concurrent);
	tcase_add_test(tc, test_lanes);
	suite_add_tcase(s, tc);

	conformance_add(s, "mem", "mem:1M");
	conformance_add(s, "mem-4k", "mem:1M;sector=4096");
	conformance_add_opts(s, "mem-ro", "mem:1M", &ro);
	conformance_add(s, "memdiff-mem", "memdiff:mem:1M");
	conformance_add(s, "memdiff-memdiff-mem-4k",
			"memdiff:memdiff:mem:1M;sector=4096");
	return h_run(s);
}
