/* SPDX-License-Identifier: MIT */
/* striped: OpenVMM's disk_striped cases (docs/openvmm-compat.md §7.2) — round trips at
 * the start, middle and end with aligned and unaligned buffers for 2-32 members and
 * 4K-128K chunks, the unmap patterns, the negative cases — plus the chunk mapping as seen
 * in the member files, the per-member unmap ranges against a model, merged metadata,
 * member errors, and "every member I/O is awaited". */
#include "conformance.h"
#include "harness.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KIB 1024
#define MIB (1024 * 1024)

static bool ts_have_probe;

/* "striped[OPTS]:[M,M,...]" with n copies of member. */
static char *ts_spec(const char *opts, unsigned n, const char *member)
{
	size_t len = strlen(opts) + 16 + n * (strlen(member) + 1);
	char *s = malloc(len);

	ck_assert_ptr_nonnull(s);
	snprintf(s, len, "striped%s:[", opts);
	for (unsigned i = 0; i < n; i++) {
		strcat(s, member);
		strcat(s, i + 1 < n ? "," : "]");
	}
	return s;
}

static dc_disk *ts_open(const char *spec)
{
	dc_disk *d = NULL;
	int rc = dc_open(spec, 0, &d);

	ck_assert_msg(rc == 0, "dc_open(%s): %d %s", spec, rc, dc_last_error());
	return d;
}

static void ts_open_fails(const char *spec, const char *needle)
{
	dc_disk *d = NULL;
	int rc = dc_open(spec, 0, &d);

	ck_assert_msg(rc < 0, "dc_open(%s) succeeded", spec);
	ck_assert_ptr_null(d);
	ck_assert_msg(strstr(dc_last_error(), needle), "dc_open(%s): '%s' lacks '%s'",
		      spec, dc_last_error(), needle);
}

static uint64_t ts_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* --- OpenVMM's I/O cases --------------------------------------------------- */

/* Write, flush and read back `len` bytes at `sector`, from a page-aligned
 * buffer and from one at offset 512 (unaligned guest buffers). */
static void ts_round_trip(dc_disk *d, uint64_t sector, size_t len, uint64_t seed)
{
	uint8_t *mem = h_alloc(len + 4096), *back = h_alloc(len + 4096);

	for (int unaligned = 0; unaligned < 2; unaligned++) {
		uint8_t *buf = mem + (unaligned ? 512 : 0);
		uint8_t *rb = back + (unaligned ? 512 : 0);

		h_fill(buf, len, seed + (uint64_t)unaligned);
		ck_assert_int_eq(dc_write(d, sector, buf, len, 0), 0);
		ck_assert_int_eq(dc_flush(d), 0);
		memset(rb, 0, len);
		ck_assert_int_eq(dc_read(d, sector, rb, len), 0);
		ck_assert_msg(h_check(rb, len, seed + (uint64_t)unaligned) == -1,
			      "sector %llu len %zu unaligned %d: data differs",
			      (unsigned long long)sector, len, unaligned);
	}
	free(mem);
	free(back);
}

static void ts_io_case(unsigned n, const char *member, const char *chunk,
		       uint64_t expect_sectors, size_t len)
{
	char *opts = h_fmt(";chunk=%s", chunk);
	char *spec = ts_spec(opts, n, member);
	dc_disk *d = ts_open(spec);
	uint64_t count = dc_sector_count(d), nsec = len / 512;

	ck_assert_uint_eq(count, expect_sectors);
	ts_round_trip(d, 0, len, 1);
	ts_round_trip(d, count / 2 - nsec / 2, len, 2);
	ts_round_trip(d, count - nsec, len, 3);
	/* Then unmap what was written. */
	ck_assert_int_eq(dc_unmap(d, 0, nsec, 0), 0);
	ck_assert_int_eq(dc_unmap(d, count / 2 - nsec / 2, nsec, 0), 0);
	ck_assert_int_eq(dc_unmap(d, count - nsec, nsec, 0), 0);
	dc_close(d);
	free(spec);
	free(opts);
}

/* run_async_striping_disk_io: 2 x 128 KiB, 4 KiB chunk, 512 sectors. */
START_TEST(io_2x128k_chunk4k)
{
	ts_io_case(2, "mem:128K", "4K", 512, 16 * KIB);
}
END_TEST

/* run_async_128k_striping_disk_io: 4 x 1 MiB, 128 KiB chunk. */
START_TEST(io_4x1m_chunk128k)
{
	ts_io_case(4, "mem:1M", "128K", 8192, 512 * KIB);
}
END_TEST

/* run_async_64k_striping_disk_io: 32 x 1 MiB, 64 KiB chunk. */
START_TEST(io_32x1m_chunk64k)
{
	ts_io_case(32, "mem:1M", "64K", 65536, 3 * MIB);
}
END_TEST

/* Default chunk (128K) over files, requests not aligned to chunks. */
START_TEST(io_3_files_default_chunk)
{
	char *a = h_tmpfile(MIB, NULL), *b = h_tmpfile(MIB, NULL),
	     *c = h_tmpfile(MIB, NULL);
	char *spec = h_fmt("striped:[file:%s,file:%s,file:%s]", a, b, c);
	dc_disk *d = ts_open(spec);

	ck_assert_uint_eq(dc_sector_count(d), 3 * 2048);
	ts_round_trip(d, 1, 300 * KIB, 4);
	ts_round_trip(d, 255, 2 * 512, 5); /* across a chunk edge */
	ts_round_trip(d, 6144 - 700, 700 * 512, 6);
	dc_close(d);
	free(spec);
	free(a);
	free(b);
	free(c);
}
END_TEST

/* end_sector_does_not_wrap */
START_TEST(end_sector_does_not_wrap)
{
	dc_disk *d = ts_open("striped:[mem:1M,mem:1M]");
	uint8_t buf[1024];

	ck_assert_int_eq(dc_read(d, UINT64_MAX - 1, buf, sizeof(buf)),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_write(d, UINT64_MAX - 1, buf, sizeof(buf), 0),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_unmap(d, UINT64_MAX - 1, 2, 0), DC_E_ILLEGAL_BLOCK);
	dc_close(d);
}
END_TEST

/* run_async_striping_disk_negative */
START_TEST(negative)
{
	uint8_t buf[1024] = { 0 };
	dc_disk *d;
	uint64_t count;

	ts_open_fails("striped;chunk=4K:[mem:1M,mem:1088K]",
		      "member 1 is not compatible");
	ts_open_fails("striped;chunk=4097:[mem:1M,mem:1M]", "invalid chunk size 4097");
	ts_open_fails("striped;chunk=0:[mem:1M,mem:1M]", "invalid chunk size 0");
	ts_open_fails("striped;chunk=4K;sectors=4097:[mem:1M,mem:1M]", "sectors=4097");
	ts_open_fails("striped;chunk=4K;sectors=6000:[mem:1M,mem:1M]", "sectors=6000");
	ts_open_fails("striped;chunk=4K;sectors=4095:[mem:1M,mem:1M]",
		      "multiple of the stripe");
	ts_open_fails("striped;chunk=4K;sectors=0:[mem:1M,mem:1M]", "sectors=0");
	ts_open_fails("striped:[mem:1M,mem:1M;sector=4096]", "sector size");
	ts_open_fails("striped;chunk=6K:[mem:1M;sector=4096,mem:1M;sector=4096]",
		      "invalid chunk size");
	ts_open_fails("striped;chunk=8G:[mem:1M,mem:1M]", "invalid chunk size");
	ts_open_fails("striped:[mem:64K,mem:64K]", "no whole chunk");
	ts_open_fails("striped:[mem:1M,mem:banana]", "banana");

	d = ts_open("striped;chunk=8K:[mem:1M,mem:1M]");
	count = dc_sector_count(d);
	ck_assert_uint_eq(count, 4096);
	ck_assert_int_eq(dc_read(d, count, buf, 512), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_write(d, count, buf, 512, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_read(d, count - 1, buf, 1024), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_unmap(d, count - 2, 3, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_read(d, count - 1, buf, 512), 0);
	dc_close(d);

	/* A logical count below the total is honoured. */
	d = ts_open("striped;chunk=4K;sectors=2048:[mem:1M,mem:1M]");
	ck_assert_uint_eq(dc_sector_count(d), 2048);
	ck_assert_int_eq(dc_read(d, 2048, buf, 512), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_read(d, 2047, buf, 512), 0);
	dc_close(d);
}
END_TEST

/* run_async_striping_disk_unmap: 2 x 128 MiB, 4 KiB chunk. */
START_TEST(unmap_patterns)
{
	dc_disk *d = ts_open("striped;chunk=4K:[mem:128M,mem:128M]");
	uint64_t all = dc_sector_count(d), half = all / 2;

	ck_assert_uint_eq(all, 2 * 128 * 2048);
	ck_assert_int_eq(dc_unmap(d, 0, 1, 0), 0);
	ck_assert_int_eq(dc_unmap(d, 0, all, 0), 0);
	ck_assert_int_eq(dc_unmap(d, 8, all - 8, 0), 0);
	ck_assert_int_eq(dc_unmap(d, half - 100, 200, 0), 0);
	ck_assert_int_eq(dc_unmap(d, all - 100, 100, 0), 0);
	ck_assert_int_eq(dc_unmap(d, 0, half, 0), 0);
	ck_assert_int_eq(dc_unmap(d, half, half, 0), 0);
	ck_assert_int_eq(dc_unmap(d, half - 500, 1000, 0), 0);
	ck_assert_int_eq(dc_unmap(d, all, 100, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_unmap(d, 1000, 0, 0), 0);
	ck_assert_int_eq(dc_unmap(d, all, 0, 0), 0);
	ck_assert_int_eq(dc_unmap(d, all + 1, 0, 0), DC_E_ILLEGAL_BLOCK);
	dc_close(d);
}
END_TEST

/* --- Mapping --------------------------------------------------------------- */

/* Chunk i of the disk is chunk i / n of member i % n, byte for byte. */
START_TEST(layout_in_member_files)
{
	enum { N = 3, MEMBER = 64 * KIB, CHUNK = 4 * KIB };
	char *f[N];
	char *spec;
	uint8_t *img = h_alloc(N * MEMBER), *raw = h_alloc(MEMBER);
	dc_disk *d;

	for (int i = 0; i < N; i++)
		f[i] = h_tmpfile(MEMBER, NULL);
	spec = h_fmt("striped;chunk=4K:[file:%s,file:%s,file:%s]", f[0], f[1], f[2]);
	d = ts_open(spec);
	h_fill(img, N * MEMBER, 42);
	/* Written in odd pieces so that requests start and end mid-chunk. */
	for (size_t off = 0; off < N * MEMBER;) {
		size_t len = 512 * (1 + (off / 512) % 19);

		if (len > N * MEMBER - off)
			len = N * MEMBER - off;
		ck_assert_int_eq(dc_write(d, off / 512, img + off, len, 0), 0);
		off += len;
	}
	dc_close(d);
	for (int m = 0; m < N; m++) {
		int fd = open(f[m], O_RDONLY | O_CLOEXEC);

		ck_assert_int_eq(pread(fd, raw, MEMBER, 0), MEMBER);
		close(fd);
		for (size_t mc = 0; mc < MEMBER / CHUNK; mc++) {
			size_t global = mc * N + (size_t)m;

			ck_assert_msg(memcmp(raw + mc * CHUNK, img + global * CHUNK,
					     CHUNK) == 0,
				      "member %d chunk %zu is not disk chunk %zu", m, mc,
				      global);
		}
		free(f[m]);
	}
	free(spec);
	free(img);
	free(raw);
}
END_TEST

static uint64_t ts_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Random unmaps over members that zero what they unmap, against a model:
 * exactly the unmapped sectors read zero, everything else keeps its data. */
START_TEST(unmap_ranges_model)
{
	enum { SECTORS = 3 * 512 };
	uint8_t *want, *got;
	struct dc_info info;
	uint64_t rng = 12345;
	dc_disk *d;

	if (!ts_have_probe)
		return;
	d = ts_open("striped;chunk=4K:[probe;count=512;unmap=zeroes,"
		    "probe;count=512;unmap=zeroes,probe;count=512;unmap=zeroes]");
	want = h_alloc(SECTORS * 512);
	got = h_alloc(SECTORS * 512);
	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, SECTORS);
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_ZEROES);
	for (int round = 0; round < 60; round++) {
		uint64_t s, n;

		if (round % 10 == 0) {
			h_fill(want, SECTORS * 512, (uint64_t)round);
			ck_assert_int_eq(dc_write(d, 0, want, SECTORS * 512, 0), 0);
		}
		s = ts_rand(&rng) % SECTORS;
		n = ts_rand(&rng) % (SECTORS - s + 1);
		if (round % 7 == 0)
			n = n % 9; /* small, inside one chunk or across one edge */
		ck_assert_int_eq(dc_unmap(d, s, n, 0), 0);
		memset(want + s * 512, 0, n * 512);
		ck_assert_int_eq(dc_read(d, 0, got, SECTORS * 512), 0);
		for (uint64_t i = 0; i < SECTORS; i++)
			ck_assert_msg(memcmp(want + i * 512, got + i * 512, 512) == 0,
				      "round %d unmap(%llu, %llu): sector %llu differs",
				      round, (unsigned long long)s, (unsigned long long)n,
				      (unsigned long long)i);
	}
	dc_close(d);
	free(want);
	free(got);
}
END_TEST

/* --- Metadata -------------------------------------------------------------- */

START_TEST(metadata_mem)
{
	dc_disk *d = ts_open("striped;chunk=64K:[mem:1M,mem:1M,mem:1M]");
	struct dc_info info, m;
	dc_disk *one = ts_open("mem:1M");

	dc_get_info(one, &m);
	dc_get_info(d, &info);
	ck_assert_str_eq(info.disk_type, "striped");
	ck_assert_uint_eq(info.sector_count, 3 * 2048);
	ck_assert_uint_eq(info.sector_size, 512);
	ck_assert_uint_eq(info.physical_sector_size, m.physical_sector_size);
	ck_assert_uint_eq(info.unmap_behavior, m.unmap_behavior);
	ck_assert_uint_eq(info.optimal_unmap_sectors, m.optimal_unmap_sectors);
	ck_assert(!(info.flags & DC_INFO_HAS_DISK_ID));
	ck_assert(!(info.flags & DC_INFO_PR));
	ck_assert_int_eq(!!(info.flags & DC_INFO_FUA_RESPECTED),
			 !!(m.flags & DC_INFO_FUA_RESPECTED));
	dc_close(one);
	dc_close(d);
}
END_TEST

START_TEST(metadata_merge)
{
	struct dc_info info;
	dc_disk *d;

	if (!ts_have_probe)
		return;
	d = ts_open(
		"striped:[probe;pss=4096;unmap=zeroes;fua;id,probe;unmap=zeroes;fua]");
	dc_get_info(d, &info);
	ck_assert_uint_eq(info.physical_sector_size, 4096); /* the largest */
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_ZEROES);
	ck_assert(info.flags & DC_INFO_FUA_RESPECTED);
	ck_assert(!(info.flags & DC_INFO_HAS_DISK_ID));
	ck_assert(!(info.flags & DC_INFO_READ_ONLY));
	dc_close(d);

	d = ts_open("striped:[probe;unmap=zeroes;fua,probe;unmap=ignored]");
	dc_get_info(d, &info);
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_UNSPECIFIED);
	ck_assert(!(info.flags & DC_INFO_FUA_RESPECTED));
	dc_close(d);

	d = ts_open("striped:[probe,probe;unmap=ignored]");
	dc_get_info(d, &info);
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_IGNORED);
	dc_close(d);

	d = ts_open("striped:[probe;ro,probe;ro]");
	dc_get_info(d, &info);
	ck_assert(info.flags & DC_INFO_READ_ONLY);
	dc_close(d);

	ts_open_fails("striped:[probe,probe;ro]", "read-only");
	ts_open_fails("striped:[probe;ro,probe]", "writable");
	ts_open_fails("striped:[probe,probe;count=4096]", "sectors");
}
END_TEST

/* The unmap behaviour of every pair of members: zeroes when all zero, ignored
 * when all ignore (docs/openvmm-compat.md §2.7 row R05: the reference's rule,
 * where OpenVMM's code folds from "zeroes" and so reports "unspecified"),
 * unspecified otherwise. An unmap of an all-ignoring disk is range-checked
 * and completes in the core. */
START_TEST(unmap_behavior_fold)
{
	static const char *const mode[] = { "zeroes", "unspecified", "ignored" };
	static const unsigned val[] = { DC_UNMAP_ZEROES, DC_UNMAP_UNSPECIFIED,
					DC_UNMAP_IGNORED };
	struct dc_info info;
	dc_disk *d;

	if (!ts_have_probe)
		return;
	for (int a = 0; a < 3; a++) {
		for (int b = 0; b < 3; b++) {
			char *spec = h_fmt("striped:[probe;unmap=%s,probe;unmap=%s]",
					   mode[a], mode[b]);

			d = ts_open(spec);
			dc_get_info(d, &info);
			ck_assert_msg(info.unmap_behavior ==
					      (a == b ? val[a] : DC_UNMAP_UNSPECIFIED),
				      "%s: unmap behaviour %u", spec,
				      info.unmap_behavior);
			dc_close(d);
			free(spec);
		}
	}
	d = ts_open("striped:[probe;unmap=ignored,probe;unmap=ignored,"
		    "probe;unmap=ignored]");
	dc_get_info(d, &info);
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_IGNORED);
	ck_assert_int_eq(dc_unmap(d, 0, info.sector_count, 0), 0);
	ck_assert_int_eq(dc_unmap(d, info.sector_count - 1, 2, 0), DC_E_ILLEGAL_BLOCK);
	dc_close(d);
}
END_TEST

struct ts_map {
	int n;
	struct dc_extent e[8];
};

static int ts_map_add(void *arg, const struct dc_extent *e)
{
	struct ts_map *m = arg;

	ck_assert_int_lt(m->n, 8);
	m->e[m->n++] = *e;
	return 0;
}

/* dc_map() through striped: each run is the member's allocation where the
 * chunk lies (written chunks are data, the rest holes reading as zero). */
START_TEST(extents_follow_members)
{
	dc_disk *d = ts_open("striped;chunk=4K:[mem:1M,mem:1M]");
	uint8_t *buf = h_alloc(8 * KIB);
	struct ts_map m = { 0 };

	h_fill(buf, 8 * KIB, 5);
	/* Chunk 1 (member 1) and the first half of chunk 2 (member 0). */
	ck_assert_int_eq(dc_write(d, 8, buf, 6 * KIB, 0), 0);
	ck_assert_int_eq(dc_map(d, 0, 2 * MIB, ts_map_add, &m), 0);
	ck_assert_int_eq(m.n, 3);
	ck_assert_uint_eq(m.e[0].offset, 0);
	ck_assert_uint_eq(m.e[0].length, 4 * KIB);
	ck_assert_uint_eq(m.e[0].flags, DC_EXTENT_HOLE | DC_EXTENT_ZERO);
	ck_assert_uint_eq(m.e[1].offset, 4 * KIB);
	ck_assert_uint_eq(m.e[1].length, 6 * KIB);
	ck_assert_uint_eq(m.e[1].flags, 0);
	ck_assert_uint_eq(m.e[2].offset, 10 * KIB);
	ck_assert_uint_eq(m.e[2].length, 2 * MIB - 10 * KIB);
	ck_assert_uint_eq(m.e[2].flags, DC_EXTENT_HOLE | DC_EXTENT_ZERO);
	dc_close(d);
	free(buf);
}
END_TEST

/* A member whose unmap is ignored is not asked; the others still are. */
START_TEST(unmap_skips_ignoring_member)
{
	dc_disk *d;
	uint8_t *buf = h_alloc(64 * KIB), *back = h_alloc(64 * KIB);

	if (!ts_have_probe) {
		free(buf);
		free(back);
		return;
	}
	d = ts_open("striped;chunk=4K:[probe;unmap=zeroes,probe;unmap=ignored]");
	h_fill(buf, 64 * KIB, 8);
	ck_assert_int_eq(dc_write(d, 0, buf, 64 * KIB, 0), 0);
	ck_assert_int_eq(dc_unmap(d, 0, 128, 0), 0);
	ck_assert_int_eq(dc_read(d, 0, back, 64 * KIB), 0);
	for (int c = 0; c < 16; c++) {
		if (c % 2 == 0)
			ck_assert_int_eq(h_check_zero(back + c * 4096, 4096), -1);
		else
			ck_assert(memcmp(back + c * 4096, buf + c * 4096, 4096) == 0);
	}
	dc_close(d);
	free(buf);
	free(back);
}
END_TEST

START_TEST(ops_forwarding)
{
	dc_disk *d = ts_open("striped:[mem:1M,mem:1M]");
	dc_disk *m = ts_open("mem:1M");
	struct dc_pr_caps caps;

	ck_assert_int_eq(dc_flush(d), 0);
	ck_assert_int_eq(dc_pr_caps(d, &caps), DC_E_UNSUPPORTED);
	/* Eject goes to every member; they answer as they would alone. */
	ck_assert_int_eq(dc_eject(d), dc_eject(m));
	dc_close(m);
	dc_close(d);

	/* prwrap over striped gets PR, striped over prwrap does not. */
	d = ts_open("prwrap:striped:[mem:1M,mem:1M]");
	ck_assert_int_eq(dc_pr_caps(d, &caps), 0);
	dc_close(d);
	d = ts_open("striped:[prwrap:mem:1M,prwrap:mem:1M]");
	ck_assert_int_eq(dc_pr_caps(d, &caps), DC_E_UNSUPPORTED);
	dc_close(d);
}
END_TEST

struct ts_kv {
	const char *key;
	char value[64];
};

static int ts_visit(void *arg, int depth, const char *plugin, const char *form,
		    const struct dc_info *info, const char *key, const char *value)
{
	struct ts_kv *kv = arg;

	(void)depth;
	(void)form;
	(void)info;
	for (; kv->key; kv++)
		if (!strcmp(plugin, "striped") && key && !strcmp(key, kv->key))
			snprintf(kv->value, sizeof(kv->value), "%s", value);
	return 0;
}

START_TEST(describe_layout)
{
	dc_disk *d = ts_open("striped;chunk=64K:[mem:1M,mem:1M,mem:1M]");
	struct ts_kv kv[] = { { "chunk", "" }, { "members", "" }, { NULL, "" } };

	ck_assert_int_eq(dc_describe(d, ts_visit, kv), 0);
	ck_assert_str_eq(kv[0].value, "65536");
	ck_assert_str_eq(kv[1].value, "3");
	dc_close(d);
}
END_TEST

/* --- Errors and completion ------------------------------------------------- */

/* A member failing (its file shrank) fails the request as an I/O error. */
START_TEST(member_error_is_io)
{
	char *a = h_tmpfile(MIB, NULL), *b = h_tmpfile(MIB, NULL);
	char *spec = h_fmt("striped;chunk=4K:[file:%s,file:%s]", a, b);
	dc_disk *d = ts_open(spec);
	uint8_t *buf = h_alloc(64 * KIB);
	struct dc_io io = { .op = DC_OP_READ, .sector = 0 };
	struct iovec iov = { buf, 64 * KIB };
	int detail = 0;

	ck_assert_int_eq(truncate(b, 0), 0);
	io.iov = &iov;
	io.iovcnt = 1;
	ck_assert_int_eq(dc_execute(d, &io, &detail), DC_E_IO);
	ck_assert_int_ne(detail, 0);
	/* Reads that touch only member 0 still work. */
	ck_assert_int_eq(dc_read(d, 0, buf, 4096), 0);
	ck_assert_int_eq(dc_read(d, 16, buf, 4096), 0);
	ck_assert_int_eq(dc_read(d, 8, buf, 4096), DC_E_IO);
	/* A request within one chunk keeps the member's errno as its detail too. */
	iov.iov_len = 4096;
	io.sector = 8;
	detail = 0;
	ck_assert_int_eq(dc_execute(d, &io, &detail), DC_E_IO);
	ck_assert_int_ne(detail, 0);
	dc_close(d);
	free(buf);
	free(spec);
	free(a);
	free(b);
}
END_TEST

/* The request completes only when the slowest member has: never early, even
 * when another member fails at once. */
START_TEST(all_members_awaited)
{
	char *b = h_tmpfile(MIB, NULL);
	char *spec = h_fmt("striped;chunk=4K:[delay:150:mem:1M,file:%s]", b);
	dc_disk *d = ts_open(spec);
	uint8_t *buf = h_alloc(16 * KIB);
	uint64_t t0;

	t0 = ts_now_ms();
	ck_assert_int_eq(dc_read(d, 0, buf, 16 * KIB), 0);
	ck_assert_uint_ge(ts_now_ms() - t0, 150);
	ck_assert_int_eq(truncate(b, 0), 0);
	t0 = ts_now_ms();
	ck_assert_int_eq(dc_read(d, 0, buf, 16 * KIB), DC_E_IO);
	ck_assert_uint_ge(ts_now_ms() - t0, 150);
	dc_close(d);
	free(buf);
	free(spec);
	free(b);
}
END_TEST

/* Member I/O is issued at once: four chunks on four members that each take
 * 250 ms finish together, well before the 1000 ms one after another would
 * take. The bound sits halfway, leaving a loaded (sanitized) machine 500 ms of
 * scheduling delay before it could be mistaken for serial I/O. */
START_TEST(members_concurrent)
{
	dc_disk *d = ts_open("striped;chunk=4K:[delay:250:mem:1M,delay:250:mem:1M,"
			     "delay:250:mem:1M,delay:250:mem:1M]");
	uint8_t *buf = h_alloc(16 * KIB);
	uint64_t t0 = ts_now_ms(), ms;

	ck_assert_int_eq(dc_read(d, 0, buf, 16 * KIB), 0);
	ms = ts_now_ms() - t0;
	ck_assert_uint_ge(ms, 250);
	ck_assert_msg(ms < 750, "4 concurrent 250 ms member reads took %llu ms",
		      (unsigned long long)ms);
	dc_close(d);
	free(buf);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("striped");
	TCase *tc = tcase_create("striped");
	const char *root = getenv("DISKCORE_BUILD_ROOT");
	const char *path = getenv("DISKCORE_PLUGIN_PATH");
	char *probe = NULL;

	/* The test-only probe plugin gives members with chosen metadata. */
	if (root && asprintf(&probe, "%s/tests/plugins/probe", root) > 0 &&
	    access(probe, F_OK) == 0) {
		char *p = h_fmt("%s%s%s", path ? path : "", path ? ":" : "", probe);

		setenv("DISKCORE_PLUGIN_PATH", p, 1);
		free(p);
		ts_have_probe = true;
	} else {
		fprintf(stderr,
			"note: no probe test plugin; metadata-merge cases do nothing\n");
	}
	free(probe);

	tcase_add_test(tc, io_2x128k_chunk4k);
	tcase_add_test(tc, io_4x1m_chunk128k);
	tcase_add_test(tc, io_32x1m_chunk64k);
	tcase_add_test(tc, io_3_files_default_chunk);
	tcase_add_test(tc, end_sector_does_not_wrap);
	tcase_add_test(tc, negative);
	tcase_add_test(tc, unmap_patterns);
	tcase_add_test(tc, layout_in_member_files);
	tcase_add_test(tc, unmap_ranges_model);
	tcase_add_test(tc, metadata_mem);
	tcase_add_test(tc, metadata_merge);
	tcase_add_test(tc, unmap_skips_ignoring_member);
	tcase_add_test(tc, unmap_behavior_fold);
	tcase_add_test(tc, extents_follow_members);
	tcase_add_test(tc, ops_forwarding);
	tcase_add_test(tc, describe_layout);
	tcase_add_test(tc, member_error_is_io);
	tcase_add_test(tc, all_members_awaited);
	tcase_add_test(tc, members_concurrent);
	suite_add_tcase(s, tc);

	/* OpenVMM: 2 x 1 MiB RAM disks. */
	conformance_add(s, "striped-mem", "striped:[mem:1M,mem:1M]");
	conformance_add(s, "striped-4k-chunks-3-files",
			"striped;chunk=4K:[file:@TMP@,file:@TMP@,file:@TMP@]");
	conformance_add(s, "striped-1-member", "striped;chunk=4K:[mem:1M]");
	conformance_add(s, "striped-sectors",
			"striped;chunk=8K;sectors=1024:[mem:1M,mem:1M]");
	conformance_add(s, "striped-4k-sectors",
			"striped;chunk=16K:[mem:1M;sector=4096,mem:1M;sector=4096]");
	return h_run(s);
}
