/* SPDX-License-Identifier: MIT */
/*
 * The core's layered disk (docs/openvmm-compat.md §4): fall-through and zero fill, read
 * caches (OpenVMM's test_read_cache), write-through, unmap and next_is_zero,
 * flattening, lower_spec() chains, construction errors, merged metadata,
 * visible sector counts, completions on other threads, and a random
 * read/write/unmap fuzz against a flat model.
 *
 * The layers come from the test-only plugins in tests/layers: tlayer (forms
 * tlay, tcache, twt, tpatdiff, tpat, tbase, twt0, tchain; counters through
 * dc_describe) and tdisk (a plain disk).
 */
#include "conformance.h"
#include "harness.h"
#include "layers/testlayers.h"

#include <check.h>
#include <diskcore/diskcore.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --- helpers ------------------------------------------------------------ */

/* OpenVMM's test_read_cache pattern (tlayer ;mul). */
static void mul_fill(uint8_t *out, uint64_t sector)
{
	uint64_t acc = (sector + 1) * 3;

	for (unsigned b = 0; b < 512; b++) {
		acc *= 7;
		out[b] = (uint8_t)acc;
	}
}

/* Sector s of the disk holds pattern `seed`, or zeroes when seed < 0. */
static void expect_sector(dc_disk *d, uint64_t s, int seed, const uint8_t *got)
{
	uint32_t ss = dc_sector_size(d);
	const uint32_t *w = (const uint32_t *)got;

	/* One assertion per sector: Check records every assertion it passes. */
	for (unsigned i = 0; i < ss / 4; i++) {
		uint32_t want = seed < 0 ? 0 : tl_pat_word(s, i, ss, (uint32_t)seed);

		if (w[i] != want)
			ck_abort_msg("sector %llu word %u: %#x, expected %#x",
				     (unsigned long long)s, i, w[i], want);
	}
}

/* --- read path ------------------------------------------------------------ */

/* docs/openvmm-compat.md §7.2 disk_layered test_read_cache. */
static void read_cache_case(const char *spec, uint32_t flags)
{
	dc_disk *d = tl_open_ok(spec, flags);
	uint8_t *mem = h_alloc(0x10000), want[512];
	const uint64_t reads_before = tl_describe_num(d, "tpat", 0, "reads");

	for (int round = 0; round < 2; round++) {
		for (uint64_t i = 0; i <= 8; i += 2) {
			ck_assert_int_eq(dc_read(d, i, mem, 512), 0);
			mul_fill(want, i);
			ck_assert_msg(!memcmp(mem, want, 512), "%s: sector %llu", spec,
				      (unsigned long long)i);
		}
		/* The second round is served by the cache. */
		ck_assert_uint_eq(tl_describe_num(d, "tpat", 0, "reads"),
				  reads_before + 5);
	}
	ck_assert_uint_eq(tl_describe_num(d, "tcache", 0, "present"), 5);
	memset(mem, 0, 0x10000);
	ck_assert_int_eq(dc_read(d, 1, mem, 15 * 512), 0);
	ck_assert_uint_eq(tl_describe_num(d, "tcache", 0, "present"), 16);
	for (uint64_t i = 0; i < 15; i++) {
		mul_fill(want, i + 1);
		ck_assert_msg(!memcmp(mem + i * 512, want, 512), "%s: sector %llu", spec,
			      (unsigned long long)(i + 1));
	}
	free(mem);
	dc_close(d);
}

START_TEST(test_read_cache)
{
	read_cache_case("tcache:tpat:1M;mul", 0);
}
END_TEST

/* A logically read-only cache (like autocache) on a read-only disk, and under
 * a writable diff layer; and its population running on a worker thread. */
START_TEST(test_read_cache_read_only)
{
	read_cache_case("tcache;ro:tpat:1M;mul", DC_OPEN_READ_ONLY);
	read_cache_case("memdiff:tcache;ro:tpat:1M;mul", 0);
	read_cache_case("tcache;async:tpat:1M;mul;async", 0);
}
END_TEST

/* Data already in the caller's buffer stays; what lower layers supply comes
 * through the bounce buffer, including hits in a second cache. */
START_TEST(test_read_cache_bounce)
{
	dc_disk *d = tl_open_ok("tcache;unmapall:tcache:tpat:64K;seed=3", 0);
	uint8_t *buf = h_alloc(16 * 512);

	ck_assert_int_eq(dc_read(d, 0, buf, 16 * 512), 0);
	for (uint64_t s = 0; s < 16; s++)
		expect_sector(d, s, 3, buf + s * 512);
	ck_assert_uint_eq(tl_describe_num(d, "tcache", 0, "present"), 16);
	ck_assert_uint_eq(tl_describe_num(d, "tcache", 1, "present"), 16);
	/* Empty part of the upper cache and write into the gap: the upper
	 * cache then hits in several runs around misses that the lower cache
	 * serves, through the bounce buffer. */
	ck_assert_int_eq(dc_unmap(d, 0, 8, 0), 0);
	ck_assert_uint_eq(tl_describe_num(d, "tcache", 0, "present"), 8);
	tl_write_pattern(d, 5, 1, 9);
	memset(buf, 0, 16 * 512);
	ck_assert_int_eq(dc_read(d, 0, buf, 16 * 512), 0);
	for (uint64_t s = 0; s < 16; s++)
		expect_sector(d, s, s == 5 ? 9 : 3, buf + s * 512);
	ck_assert_uint_eq(tl_describe_num(d, "tpat", 0, "reads"), 1);
	ck_assert_uint_eq(tl_describe_num(d, "tcache", 0, "present"), 16);
	ck_assert_uint_eq(tl_describe_num(d, "tcache", 1, "nowrites"), 1);
	free(buf);
	dc_close(d);
}
END_TEST

/* A cache hit in the upper cache followed by misses, then a second cache. */
START_TEST(test_read_cache_two_levels)
{
	dc_disk *d = tl_open_ok("tcache;size=64K:tcache;size=32K:tpat:64K;seed=4",
				DC_OPEN_READ_ONLY);
	uint8_t *buf = h_alloc(128 * 512);

	ck_assert_int_eq(dc_read(d, 10, buf, 512), 0);
	expect_sector(d, 10, 4, buf);
	/* Sectors 64.. are past the lower cache's size: visible through it
	 * only as zeroes, and the top cache stores them as such. */
	ck_assert_int_eq(dc_read(d, 0, buf, 128 * 512), 0);
	for (uint64_t s = 0; s < 128; s++)
		expect_sector(d, s, s < 64 ? 4 : -1, buf + s * 512);
	ck_assert_uint_eq(tl_describe_num(d, "tcache", 0, "present"), 128);
	ck_assert_uint_eq(tl_describe_num(d, "tcache", 1, "present"), 64);
	free(buf);
	dc_close(d);
}
END_TEST

START_TEST(test_fall_through)
{
	/* Sector s: top if written, else s%2==0 -> seed 1, s%3==0 -> seed 2,
	 * s%5==0 -> seed 3, else zero. */
	dc_disk *d = tl_open_ok("memdiff:tpatdiff;every=2;seed=1:tpatdiff;every=3;seed=2:"
				"tpat:64K;every=5;seed=3",
				0);
	const uint64_t n = 128;
	uint8_t *buf = h_alloc(n * 512);

	tl_write_pattern(d, 7, 3, 9);
	memset(buf, 0xee, n * 512);
	ck_assert_int_eq(dc_read(d, 0, buf, n * 512), 0);
	for (uint64_t s = 0; s < n; s++) {
		int seed = s >= 7 && s < 10 ? 9 :
			   s % 2 == 0	    ? 1 :
			   s % 3 == 0	    ? 2 :
			   s % 5 == 0	    ? 3 :
					      -1;

		expect_sector(d, s, seed, buf + s * 512);
	}
	/* One read per run of unfilled sectors and layer: not per sector. */
	ck_assert_uint_eq(tl_describe_num(d, "tpatdiff", 0, "reads"), 2);
	free(buf);
	dc_close(d);
}
END_TEST

/* A plain disk at the bottom is full: nothing is zero-filled over it. */
START_TEST(test_disk_bottom)
{
	dc_disk *d = tl_open_ok("memdiff:tpatdiff;every=2;seed=1:tdisk:64K;seed=4", 0);
	struct dc_info info;
	uint8_t *buf = h_alloc(128 * 512);

	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, 128);
	ck_assert_int_eq(dc_read(d, 0, buf, 128 * 512), 0);
	for (uint64_t s = 0; s < 128; s++)
		expect_sector(d, s, s % 2 == 0 ? 1 : 4, buf + s * 512);
	ck_assert_uint_eq(tl_describe_num(d, "tdisk", 0, "reads"), 64);
	free(buf);
	dc_close(d);
}
END_TEST

START_TEST(test_zero_fill_and_vectors)
{
	dc_disk *d = tl_open_ok("tlay:tbase:64K", 0);
	uint8_t a[512 * 3], b[512 * 5];
	struct iovec iov[2] = { { a, sizeof(a) }, { b, sizeof(b) } };
	uint8_t *flat = h_alloc(8 * 512);

	tl_write_pattern(d, 2, 2, 6);
	memset(a, 0xee, sizeof(a));
	memset(b, 0xee, sizeof(b));
	ck_assert_int_eq(dc_readv(d, 0, iov, 2), 0);
	memcpy(flat, a, sizeof(a));
	memcpy(flat + sizeof(a), b, sizeof(b));
	for (uint64_t s = 0; s < 8; s++)
		expect_sector(d, s, s == 2 || s == 3 ? 6 : -1, flat + s * 512);
	/* A zero-length read succeeds anywhere the disk handle lets it through. */
	ck_assert_int_eq(dc_read(d, 0, NULL, 0), 0);
	free(flat);
	dc_close(d);
}
END_TEST

/* A read larger than the request's inline bitmap. */
START_TEST(test_large_read)
{
	dc_disk *d = tl_open_ok("memdiff:tpatdiff;every=3;seed=1:tpat:2M;seed=2", 0);
	const uint64_t n = 4096;
	uint8_t *buf = h_alloc(n * 512);

	tl_write_pattern(d, 1000, 1500, 7);
	ck_assert_int_eq(dc_read(d, 0, buf, n * 512), 0);
	for (uint64_t s = 0; s < n; s++)
		expect_sector(d, s,
			      s >= 1000 && s < 2500 ? 7 :
			      s % 3 == 0	    ? 1 :
						      2,
			      buf + s * 512);
	free(buf);
	dc_close(d);
}
END_TEST

/* Sectors past a layer's visible count (the minimum size of it and every
 * layer above) read as zero even if a lower layer has data there. */
START_TEST(test_visible_sector_count)
{
	dc_disk *d = tl_open_ok("tlay;size=32K:tlay;size=8K:tpat:32K;seed=2", 0);
	uint8_t *buf = h_alloc(64 * 512);

	ck_assert_uint_eq(dc_sector_count(d), 64);
	ck_assert_int_eq(dc_read(d, 0, buf, 64 * 512), 0);
	for (uint64_t s = 0; s < 64; s++)
		expect_sector(d, s, s < 16 ? 2 : -1, buf + s * 512);
	ck_assert_uint_eq(tl_describe_num(d, "tpat", 0, "reads"), 1);
	free(buf);
	dc_close(d);
}
END_TEST

/* --- write path ------------------------------------------------------------ */

START_TEST(test_write_through)
{
	dc_disk *d = tl_open_ok("twt:tdisk:64K;zero", 0);
	struct dc_info info;
	uint8_t buf[512];

	dc_get_info(d, &info);
	ck_assert(!(info.flags & DC_INFO_READ_ONLY));
	tl_write_pattern(d, 3, 1, 5);
	ck_assert_uint_eq(tl_describe_num(d, "twt", 0, "present"), 1);
	ck_assert_uint_eq(tl_describe_num(d, "tdisk", 0, "writes"), 1);
	ck_assert_int_eq(dc_write(d, 4, buf, 512, DC_IO_FUA), 0);
	/* The disk below sees FUA, never layer-only flags. */
	ck_assert_uint_eq(tl_describe_num(d, "tdisk", 0, "last_flags"), DC_IO_FUA);
	ck_assert_int_eq(dc_flush(d), 0);
	ck_assert_uint_eq(tl_describe_num(d, "twt", 0, "flushes"), 1);
	ck_assert_uint_eq(tl_describe_num(d, "tdisk", 0, "flushes"), 1);
	/* Out of range: exactly illegal block, from the top layer. */
	ck_assert_int_eq(dc_write(d, 128, buf, 512, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_uint_eq(tl_describe_num(d, "tdisk", 0, "writes"), 2);
	dc_close(d);
}
END_TEST

/* Writes and flushes stop at the first layer that is not write-through. */
START_TEST(test_write_stops)
{
	dc_disk *d = tl_open_ok("twt:tlay:tdisk:64K", 0);

	tl_write_pattern(d, 0, 4, 1);
	ck_assert_int_eq(dc_flush(d), 0);
	ck_assert_uint_eq(tl_describe_num(d, "twt", 0, "present"), 4);
	ck_assert_uint_eq(tl_describe_num(d, "tlay", 0, "present"), 4);
	ck_assert_uint_eq(tl_describe_num(d, "tlay", 0, "flushes"), 1);
	ck_assert_uint_eq(tl_describe_num(d, "tdisk", 0, "writes"), 0);
	ck_assert_uint_eq(tl_describe_num(d, "tdisk", 0, "flushes"), 0);
	dc_close(d);
}
END_TEST

START_TEST(test_read_only_disk)
{
	dc_disk *d = tl_open_ok("memdiff:tdisk:64K", DC_OPEN_READ_ONLY);
	struct dc_info info;
	uint8_t buf[512];

	dc_get_info(d, &info);
	ck_assert(info.flags & DC_INFO_READ_ONLY);
	ck_assert_int_eq(dc_write(d, 0, buf, 512, 0), DC_E_READ_ONLY);
	ck_assert_int_eq(dc_unmap(d, 0, 1, 0), DC_E_READ_ONLY);
	ck_assert_int_eq(dc_read(d, 0, buf, 512), 0);
	dc_close(d);
}
END_TEST

/* next_is_zero: the next layer is absent, or the start sector is past its
 * visible count. */
START_TEST(test_unmap_next_is_zero)
{
	dc_disk *d = tl_open_ok("tlay;size=32K:tlay;size=8K:tpat:32K", 0);

	ck_assert_int_eq(dc_unmap(d, 2, 4, 0), 0);
	ck_assert_str_eq(tl_describe_str(d, "tlay", 0, "last_unmap"), "2+4 nz=0");
	ck_assert_int_eq(dc_unmap(d, 20, 4, 0), 0);
	ck_assert_str_eq(tl_describe_str(d, "tlay", 0, "last_unmap"), "20+4 nz=1");
	ck_assert_int_eq(dc_unmap(d, 15, 4, 0), 0);
	ck_assert_str_eq(tl_describe_str(d, "tlay", 0, "last_unmap"), "15+4 nz=0");
	/* Not write-through: the layers below never see it. */
	ck_assert_uint_eq(tl_describe_num(d, "tlay", 1, "unmaps"), 0);
	ck_assert_int_eq(dc_unmap(d, 60, 5, 0), DC_E_ILLEGAL_BLOCK);
	dc_close(d);

	d = tl_open_ok("tbase:64K", 0);
	ck_assert_int_eq(dc_unmap(d, 2, 4, 0), 0);
	ck_assert_str_eq(tl_describe_str(d, "tbase", 0, "last_unmap"), "2+4 nz=1");
	dc_close(d);

	/* Through write-through layers, to a disk that never sees the flag. */
	d = tl_open_ok(
		"twt;unmap=zeroes;size=64K:twt;unmap=zeroes;size=16K:tdisk:64K;zeroes",
		0);
	ck_assert_int_eq(dc_unmap(d, 4, 4, DC_IO_BLOCK_LEVEL_ONLY), 0);
	ck_assert_str_eq(tl_describe_str(d, "twt", 0, "last_unmap"), "4+4 nz=0");
	ck_assert_str_eq(tl_describe_str(d, "twt", 1, "last_unmap"), "4+4 nz=0");
	ck_assert_uint_eq(tl_describe_num(d, "tdisk", 0, "unmaps"), 1);
	ck_assert_uint_eq(tl_describe_num(d, "tdisk", 0, "last_flags"),
			  DC_IO_BLOCK_LEVEL_ONLY);
	/* Past the next layer's visible count; that layer then range-checks. */
	ck_assert_int_eq(dc_unmap(d, 40, 4, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_str_eq(tl_describe_str(d, "twt", 0, "last_unmap"), "40+4 nz=1");
	ck_assert_uint_eq(tl_describe_num(d, "twt", 1, "unmaps"), 1);
	dc_close(d);
}
END_TEST

/* --- metadata ----------------------------------------------------------- */

static uint32_t unmap_of(const char *spec, uint32_t flags)
{
	dc_disk *d = tl_open_ok(spec, flags);
	struct dc_info info;

	dc_get_info(d, &info);
	dc_close(d);
	return info.unmap_behavior;
}

START_TEST(test_unmap_merge)
{
	ck_assert_uint_eq(unmap_of("mem:1M", 0), DC_UNMAP_UNSPECIFIED);
	/* Only the write path counts. */
	ck_assert_uint_eq(unmap_of("tlay;unmap=zeroes:tdisk:64K", 0), DC_UNMAP_ZEROES);
	ck_assert_uint_eq(unmap_of("tlay:tlay;unmap=ignored:tdisk:64K", 0),
			  DC_UNMAP_UNSPECIFIED);
	ck_assert_uint_eq(unmap_of("twt;unmap=zeroes:tdisk:64K;zeroes", 0),
			  DC_UNMAP_ZEROES);
	/* With write-through, anything short of zeroes everywhere is ignored. */
	ck_assert_uint_eq(unmap_of("twt:tdisk:64K;zeroes", 0), DC_UNMAP_IGNORED);
	ck_assert_uint_eq(unmap_of("twt;unmap=zeroes:tdisk:64K", 0), DC_UNMAP_IGNORED);
	ck_assert_uint_eq(unmap_of("tlay;unmap=ignored:tdisk:64K", 0), DC_UNMAP_IGNORED);
}
END_TEST

START_TEST(test_unmap_ignored)
{
	dc_disk *d = tl_open_ok("tlay;unmap=ignored:tbase:64K", 0);

	ck_assert_int_eq(dc_unmap(d, 0, 128, 0), 0);
	ck_assert_int_eq(dc_unmap(d, 100, 29, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_uint_eq(tl_describe_num(d, "tlay", 0, "unmaps"), 0);
	dc_close(d);
}
END_TEST

START_TEST(test_metadata_merge)
{
	dc_disk *d;
	struct dc_info info;

	/* FUA: AND over the write path; optimal unmap: max over it; physical
	 * sector size: the top layer's; disk id: first one top-down. */
	d = tl_open_ok(
		"twt;optunmap=8;phys=4096:tlay;nofua;optunmap=16:tdisk:64K;id=7;nofua",
		0);
	dc_get_info(d, &info);
	ck_assert(!(info.flags & DC_INFO_FUA_RESPECTED));
	ck_assert_uint_eq(info.optimal_unmap_sectors, 16);
	ck_assert_uint_eq(info.physical_sector_size, 4096);
	ck_assert_uint_eq(info.sector_size, 512);
	ck_assert(info.flags & DC_INFO_HAS_DISK_ID);
	ck_assert_uint_eq(info.disk_id[0], 7);
	ck_assert_str_eq(info.disk_type, "layered");
	dc_close(d);

	d = tl_open_ok("twt:tlay;id=3:tdisk:64K;id=7;nofua", 0);
	dc_get_info(d, &info);
	ck_assert(info.flags & DC_INFO_FUA_RESPECTED);
	ck_assert_uint_eq(info.disk_id[15], 3);
	dc_close(d);

	d = tl_open_ok("memdiff:tdisk:64K", 0);
	dc_get_info(d, &info);
	ck_assert(!(info.flags & DC_INFO_HAS_DISK_ID));
	ck_assert(!(info.flags & DC_INFO_READ_ONLY));
	dc_close(d);
}
END_TEST

/* --- construction ------------------------------------------------------- */

START_TEST(test_flatten)
{
	dc_disk *d = tl_open_ok("memdiff:memdiff:tdisk:64K", 0);

	ck_assert_uint_eq(tl_describe_num(d, "layered", 0, "layers"), 3);
	ck_assert_str_eq(tl_describe_str(d, "layered", 0, "layer0"),
			 "memdiff visible_sectors=128");
	ck_assert_str_eq(tl_describe_str(d, "layered", 0, "layer2"),
			 "tdisk (disk) visible_sectors=128");
	dc_close(d);
	d = tl_open_ok("twt:tcache:tpat:64K", DC_OPEN_READ_ONLY);
	ck_assert_uint_eq(tl_describe_num(d, "layered", 0, "layers"), 3);
	ck_assert_str_eq(tl_describe_str(d, "layered", 0, "layer0"),
			 "twt write-through visible_sectors=128");
	ck_assert_str_eq(tl_describe_str(d, "layered", 0, "layer1"),
			 "tcache read-cache visible_sectors=128");
	dc_close(d);
}
END_TEST

START_TEST(test_lower_spec_chain)
{
	dc_disk *d = tl_open_ok("tchain:3", 0);
	uint8_t buf[512];

	/* tchain:3 -> tchain:2 -> tchain:1 -> tchain:0 -> tpat:64K */
	ck_assert_uint_eq(tl_describe_num(d, "layered", 0, "layers"), 5);
	ck_assert_int_eq(dc_read(d, 9, buf, 512), 0);
	expect_sector(d, 9, 0, buf);
	dc_close(d);
	/* An image names its parent: at most 16 parents unless the host
	 * raises the limit (docs/security.md). */
	d = tl_open_ok("tchain:15", 0);
	ck_assert_uint_eq(tl_describe_num(d, "layered", 0, "layers"), 17);
	dc_close(d);
	tl_open_fails("tchain:16", 0, -ELOOP, "more than 16 parent images");
	tl_open_fails("tchain:100", 0, -ELOOP, "DISKCORE_MAX_PARENTS raises the limit");
	setenv("DISKCORE_MAX_PARENTS", "40", 1);
	d = tl_open_ok("tchain:39", 0);
	dc_close(d);
	tl_open_fails("tchain:40", 0, -ELOOP, "more than 40 parent images");
	setenv("DISKCORE_MAX_PARENTS", "63", 1);
	tl_open_fails("tchain:100", 0, -ELOOP, "more than 6");
	setenv("DISKCORE_MAX_PARENTS", "64", 1);
	tl_open_fails("tchain:1", 0, -EINVAL,
		      "DISKCORE_MAX_PARENTS=64: expected 1 to 63");
	unsetenv("DISKCORE_MAX_PARENTS");
}
END_TEST

START_TEST(test_construction_errors)
{
	tl_open_fails("tcache;nocache:tpat:64K", 0, -EINVAL,
		      "read caching was requested");
	tl_open_fails("memdiff:tcache;nocache:tpat:64K", 0, -EINVAL, "layer 1 (tcache)");
	/* A logically read-only layer in the write path of a writable disk. */
	tl_open_fails("tlay;ro:tpat:64K", 0, -EROFS, "layer 0 (tlay) is read-only");
	tl_open_fails("tcache;ro:tpat:64K", 0, -EROFS, "is read-only");
	tl_open_fails("twt:tdisk:64K;ro", 0, -EROFS, "layer 1 (tdisk) is read-only");
	/* Write-through below a layer that is not, or at the bottom. */
	tl_open_fails("memdiff:twt:tpat:64K", 0, -EINVAL, "write-through is useless");
	tl_open_fails("twt0:64K", 0, -EINVAL, "write-through on the bottom layer");
	tl_open_fails("twt:twt0:64K", 0, -EINVAL, "write-through on the bottom layer");
	/* Sector sizes: valid, and equal to the bottom layer's. */
	tl_open_fails("tlay;sector=1000;size=64000:tpat:64K", 0, -EINVAL,
		      "sector size 1000 is invalid");
	tl_open_fails("tlay;sector=4096:tpat:64K", 0, -EINVAL,
		      "sector size 4096 does not match the bottom layer's 512");
	tl_open_fails("tlay;sector=512:tpat:64K;sector=4096", 0, -EINVAL,
		      "sector size 512 does not match the bottom layer's 4096");
	tl_open_fails("memdiff:tlay;sector=4096:tdisk:64K", 0, -EINVAL,
		      "layer 1 (tlay): sector size 4096");
	/* An attach failure keeps the layer's own message. */
	tl_open_fails("tlay;size=1000:tpat:64K", 0, 0, "not a positive multiple");
	/* The same stacks are fine where the rules allow them. */
	dc_close(tl_open_ok("tlay;ro:tpat:64K", DC_OPEN_READ_ONLY));
	dc_close(tl_open_ok("twt:tdisk:64K", 0));
	dc_close(tl_open_ok("tlay;sector=4096:tpat:64K;sector=4096", 0));
}
END_TEST

START_TEST(test_resize_forwarding)
{
	dc_disk *d = tl_open_ok("memdiff:tdisk:64K", 0);

	ck_assert_int_eq(dc_resize(d, 64), 0);
	ck_assert_uint_eq(dc_sector_count(d), 64);
	dc_close(d);
	d = tl_open_ok("tlay:tdisk:64K", 0);
	ck_assert_int_eq(dc_resize(d, 64), -EOPNOTSUPP);
	ck_assert_msg(strstr(dc_last_error(), "cannot be resized"), "%s",
		      dc_last_error());
	ck_assert_uint_eq(dc_sector_count(d), 128);
	dc_close(d);
}
END_TEST

/* --- completions on other threads -------------------------------------- */

struct async_ctx {
	sem_t *sem;
	int result;
};

static void async_cb(const struct dc_completion *c)
{
	struct async_ctx *a = c->user_data;

	a->result = c->result;
	sem_post(a->sem);
}

/* Many reads in flight at once over layers that complete on the worker pool,
 * each with runs in several layers and a read cache to populate. */
START_TEST(test_async_layers)
{
	dc_disk *d = tl_open_ok("memdiff:tcache;async:tpatdiff;every=2;seed=1;async:"
				"tpat:1M;seed=2;async",
				0);
	enum { N = 64, LEN = 16 };
	struct async_ctx ctx[N];
	uint8_t *bufs = h_alloc((size_t)N * LEN * 512);
	struct iovec iov[N];
	dc_queue *q;
	sem_t sem;
	struct timespec ts;

	tl_write_pattern(d, 100, 50, 9);
	sem_init(&sem, 0, 0);
	ck_assert_int_eq(dc_queue_open(d, 0, &q), 0);
	for (int i = 0; i < N; i++) {
		struct dc_io io = { .op = DC_OP_READ,
				    .sector = (uint64_t)i * 7,
				    .iov = &iov[i],
				    .iovcnt = 1,
				    .cb = async_cb,
				    .user_data = &ctx[i] };

		ctx[i].sem = &sem;
		ctx[i].result = 1;
		iov[i] = (struct iovec){ bufs + (size_t)i * LEN * 512, LEN * 512 };
		ck_assert_int_eq(dc_submit(q, &io), 0);
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 60;
	for (int i = 0; i < N; i++)
		ck_assert_msg(sem_timedwait(&sem, &ts) == 0,
			      "only %d of %d reads completed", i, N);
	ck_assert_uint_eq(dc_queue_inflight(q), 0);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(ctx[i].result, 0);
		for (uint64_t k = 0; k < LEN; k++) {
			uint64_t s = (uint64_t)i * 7 + k;

			expect_sector(d, s,
				      s >= 100 && s < 150 ? 9 :
				      s % 2 == 0	  ? 1 :
							    2,
				      bufs + ((size_t)i * LEN + k) * 512);
		}
	}
	dc_queue_close(q);
	sem_destroy(&sem);
	free(bufs);
	dc_close(d);
}
END_TEST

/* --- fuzz against a flat model -------------------------------------------- */

static uint64_t fuzz_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* docs/openvmm-compat.md §7.2 fuzz_disk_layered: random (sector, count) over a 1 MiB
 * disk; in range is OK and matches the model, out of range is exactly illegal block. The
 * model: the top RAM layer over data `lower` (seed, or zero); an unmap that reaches the
 * zero point (or has zero below) clears. */
static void fuzz_case(const char *spec, int lower_seed, bool nothing_below)
{
	dc_disk *d = tl_open_ok(spec, 0);
	const uint64_t n = 2048;
	uint8_t *model = h_alloc(n * 512), *buf = h_alloc(80 * 512);
	uint64_t rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)strlen(spec), za = n;

	ck_assert_uint_eq(dc_sector_count(d), n);
	if (lower_seed >= 0)
		tl_pat_fill(model, 0, n, 512, (uint32_t)lower_seed);
	for (int iter = 0; iter < 3000; iter++) {
		uint64_t r = fuzz_rand(&rng), s, c, end;
		int op = (int)(r % 3), rc, want;

		switch ((r >> 8) % 8) {
		case 0:
			s = n - (r >> 16) % 8;
			break;
		case 1:
			s = UINT64_MAX - (r >> 16) % 4;
			break;
		case 2:
			s = ((uint64_t)INT64_MAX >> 9) - (r >> 16) % 4;
			break;
		default:
			s = (r >> 16) % n;
		}
		c = (r >> 40) % 80;
		end = s + c;
		want = (s > n || c > n - s) ? DC_E_ILLEGAL_BLOCK : 0;
		if (op == 0) {
			struct iovec iov[2] = { { buf, (c / 2) * 512 },
						{ buf + (c / 2) * 512,
						  (c - c / 2) * 512 } };

			memset(buf, 0xee, 80 * 512);
			rc = dc_readv(d, s, iov, 2);
			ck_assert_msg(rc == want, "%s: read %llu+%llu = %d, want %d",
				      spec, (unsigned long long)s, (unsigned long long)c,
				      rc, want);
			if (rc == 0 && c)
				ck_assert_msg(!memcmp(buf, model + s * 512, c * 512),
					      "%s: read %llu+%llu differs (iter %d)",
					      spec, (unsigned long long)s,
					      (unsigned long long)c, iter);
		} else if (op == 1) {
			tl_pat_fill(buf, s < n ? s : 0, c, 512, (uint32_t)(iter & 0x7f));
			rc = dc_write(d, s, buf, c * 512, 0);
			ck_assert_msg(rc == want, "%s: write %llu+%llu = %d, want %d",
				      spec, (unsigned long long)s, (unsigned long long)c,
				      rc, want);
			if (rc == 0)
				memcpy(model + s * 512, buf, c * 512);
		} else {
			rc = dc_unmap(d, s, c, 0);
			ck_assert_msg(rc == want, "%s: unmap %llu+%llu = %d, want %d",
				      spec, (unsigned long long)s, (unsigned long long)c,
				      rc, want);
			if (rc == 0 && (nothing_below || end >= za)) {
				memset(model + s * 512, 0, c * 512);
				if (!nothing_below && s < za)
					za = s;
			}
		}
	}
	/* And the whole disk at the end. */
	free(buf);
	buf = h_alloc(n * 512);
	ck_assert_int_eq(dc_read(d, 0, buf, n * 512), 0);
	ck_assert_msg(!memcmp(buf, model, n * 512), "%s: final contents differ", spec);
	free(buf);
	free(model);
	dc_close(d);
}

START_TEST(test_fuzz)
{
	fuzz_case("mem:1M", -1, true);
	fuzz_case("memdiff:tpat:1M;seed=5", 5, false);
	fuzz_case("memdiff:memdiff:tdisk:1M;seed=6", 6, false);
	fuzz_case("memdiff:tcache;async:tpatdiff;every=1;seed=8;async:tbase:1M", 8,
		  false);
}
END_TEST

/* --- main ---------------------------------------------------------------- */

int main(void)
{
	static const struct conformance_opts ro = { .open_flags = DC_OPEN_READ_ONLY };
	Suite *s = suite_create("layered");
	TCase *tc = tcase_create("read");

	tl_use_test_layers();
	tcase_add_test(tc, test_read_cache);
	tcase_add_test(tc, test_read_cache_read_only);
	tcase_add_test(tc, test_read_cache_bounce);
	tcase_add_test(tc, test_read_cache_two_levels);
	tcase_add_test(tc, test_fall_through);
	tcase_add_test(tc, test_disk_bottom);
	tcase_add_test(tc, test_zero_fill_and_vectors);
	tcase_add_test(tc, test_large_read);
	tcase_add_test(tc, test_visible_sector_count);
	suite_add_tcase(s, tc);

	tc = tcase_create("write");
	tcase_add_test(tc, test_write_through);
	tcase_add_test(tc, test_write_stops);
	tcase_add_test(tc, test_read_only_disk);
	tcase_add_test(tc, test_unmap_next_is_zero);
	tcase_add_test(tc, test_unmap_ignored);
	suite_add_tcase(s, tc);

	tc = tcase_create("construction");
	tcase_add_test(tc, test_unmap_merge);
	tcase_add_test(tc, test_metadata_merge);
	tcase_add_test(tc, test_flatten);
	tcase_add_test(tc, test_lower_spec_chain);
	tcase_add_test(tc, test_construction_errors);
	tcase_add_test(tc, test_resize_forwarding);
	suite_add_tcase(s, tc);

	tc = tcase_create("async");
	tcase_add_test(tc, test_async_layers);
	suite_add_tcase(s, tc);

	tc = tcase_create("fuzz");
	tcase_add_test(tc, test_fuzz);
	suite_add_tcase(s, tc);

	/* docs/openvmm-compat.md §7.2 layered_multi_sector_range_conformance and the read
	 * cache variant (the read cache is tlayer's: ram has no cache form). */
	conformance_add(s, "ram-over-ram", "memdiff:mem:1M");
	conformance_add(s, "cache-over-ram", "tcache:mem:1M");
	conformance_add(s, "cache-async-over-disk", "memdiff:tcache;async:tdisk:1M");
	conformance_add(s, "write-through", "twt;unmap=zeroes:tdisk:1M;zeroes");
	conformance_add_opts(s, "diff-ro", "memdiff:tpat:1M", &ro);
	return h_run(s);
}
