/* SPDX-License-Identifier: MIT */
/* The vhd plugin on bad input: broken footers and headers, BAT entries out of
 * place, a footer copy repaired, bad parent locators, and random metadata.
 * Part of test-vhd. */
#include "harness.h"
#include "vhd-cases.h"
#include "vhdtest.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- Bad input ------------------------------------------------------------------ */

/* A dynamic image with blocks 0 and 2 allocated (64 KiB blocks). */
static char *tv_bad_base(void)
{
	char *path = h_tmppath(".vhd");
	dc_disk *d = h_openf(0, "vhd:%s;create=1M;block=64K", path);

	vt_write(d, 0, 8, 1);
	vt_write(d, 256, 8, 2);
	dc_close(d);
	return path;
}

static void tv_expect_bad(const char *path, const char *needle)
{
	h_open_fails(DC_OPEN_READ_ONLY, 0, needle, "vhd:%s", path);
	h_open_fails(0, 0, needle, "vhd:%s", path);
}

/* A fresh tv_bad_base() opened for damage ... */
static char *tv_bad_begin(struct tv_img *m)
{
	char *p = tv_bad_base();

	tv_img_open(m, p);
	return p;
}

/* ... which makes the open fail with a message containing needle. */
static void tv_bad_end(struct tv_img *m, char *p, const char *needle)
{
	tv_img_close(m);
	tv_expect_bad(p, needle);
	free(p);
}

START_TEST(vhd_bad_headers)
{
	struct tv_img m;
	char *p;
	uint8_t f[512];

	p = tv_bad_begin(&m);
	m.hdr[100] ^= 1; /* checksum no longer matches */
	ck_assert_int_eq(pwrite(m.fd, m.hdr, 1024, (off_t)m.hdr_off), 1024);
	tv_bad_end(&m, p, "checksum");

	p = tv_bad_begin(&m);
	memcpy(m.hdr, "cxsparsE", 8);
	tv_put_hdr(&m);
	tv_bad_end(&m, p, "cxsparse");

	p = tv_bad_begin(&m);
	h_put_be32(m.hdr + 32, 3 * 512);
	tv_put_hdr(&m);
	tv_bad_end(&m, p, "block size");

	p = tv_bad_begin(&m);
	h_put_be32(m.hdr + 28, 3);
	tv_put_hdr(&m);
	tv_bad_end(&m, p, "needs");

	p = tv_bad_begin(&m);
	h_put_be64(m.hdr + 16, m.size + 4096);
	tv_put_hdr(&m);
	tv_bad_end(&m, p, "outside the image");

	p = tv_bad_begin(&m);
	h_put_be64(m.hdr + 16, 0); /* the BAT on the footer copy */
	tv_put_hdr(&m);
	tv_bad_end(&m, p, "outside the image");

	p = tv_bad_begin(&m);
	memcpy(f, m.foot, 512);
	h_put_be64(f + 16, m.size); /* header past the end */
	tv_put_footers(&m, f);
	tv_bad_end(&m, p, "outside the image");

	p = tv_bad_begin(&m);
	memcpy(f, m.foot, 512);
	h_put_be32(f + 60, 5);
	tv_put_footers(&m, f);
	tv_bad_end(&m, p, "disk type");

	p = tv_bad_begin(&m);
	memcpy(f, m.foot, 512);
	h_put_be64(f + 48, MIB - 100);
	tv_put_footers(&m, f);
	tv_bad_end(&m, p, "multiple of 512");

	/* Both footers broken. */
	p = tv_bad_begin(&m);
	memcpy(f, m.foot, 512);
	f[0] = 'C';
	ck_assert_int_eq(pwrite(m.fd, f, 512, 0), 512);
	ck_assert_int_eq(pwrite(m.fd, f, 512, (off_t)m.size - 512), 512);
	tv_bad_end(&m, p, "not a VHD");

	/* Valid footers that disagree. */
	p = tv_bad_begin(&m);
	memcpy(f, m.foot, 512);
	h_put_be64(f + 48, 2 * MIB);
	h_put_be32(f + 64, h_vhd_checksum(f, 512, 64));
	ck_assert_int_eq(pwrite(m.fd, f, 512, 0), 512);
	tv_bad_end(&m, p, "disagree");

	/* Too small to be anything. */
	p = h_tmpfile(100, ".vhd");
	tv_expect_bad(p, "too small");
	free(p);
}
END_TEST

START_TEST(vhd_bad_bat)
{
	struct tv_img m;
	char *p;

	p = tv_bad_begin(&m);
	tv_set_bat(&m, 5, (uint32_t)(m.size / 512)); /* past the end */
	tv_bad_end(&m, p, "outside the image");

	p = tv_bad_begin(&m);
	tv_set_bat(&m, 5, 1); /* on the dynamic header */
	tv_bad_end(&m, p, "dynamic header");

	p = tv_bad_begin(&m);
	tv_set_bat(&m, 5, (uint32_t)(m.bat_off / 512)); /* on the BAT */
	tv_bad_end(&m, p, "BAT");

	p = tv_bad_begin(&m);
	tv_set_bat(&m, 5, tv_bat(&m, 0) + 1); /* inside block 0 */
	tv_bad_end(&m, p, "overlap");

	p = tv_bad_begin(&m);
	tv_set_bat(&m, 5, 0xfffffffe);
	tv_bad_end(&m, p, "outside the image");

	/* Truncated inside the last block: footer gone, copy at 0 valid, the
	 * block now runs past the end. */
	p = tv_bad_base();
	{
		struct stat st;

		ck_assert_int_eq(stat(p, &st), 0);
		ck_assert_int_eq(truncate(p, st.st_size - 4096), 0);
	}
	tv_expect_bad(p, "outside the image");
	free(p);
}
END_TEST

/* A damaged end footer: the copy at offset 0 is used, and a writable open
 * puts the footer back; a damaged copy is put back too. */
START_TEST(vhd_footer_repair)
{
	char *p = tv_bad_base(), *spec = h_fmt("vhd:%s", p);
	struct tv_img m;
	uint8_t f[512], buf[4096];
	dc_disk *d;

	tv_img_open(&m, p);
	memcpy(f, m.foot, 512);
	f[0] ^= 0xff;
	ck_assert_int_eq(pwrite(m.fd, f, 512, (off_t)m.size - 512), 512);
	tv_img_close(&m);
	d = h_open(spec, DC_OPEN_READ_ONLY);
	ck_assert_int_eq(dc_read(d, 0, buf, sizeof(buf)), 0);
	ck_assert_int_lt(h_check(buf, sizeof(buf), 1), 0);
	dc_close(d);
	d = h_open(spec, 0);
	vt_write(d, 1000, 8, 3); /* allocates: the footer moves again */
	dc_close(d);
	tv_img_open(&m, p);
	ck_assert_int_eq(memcmp(m.foot, m.copy, 512), 0);
	ck_assert_int_eq(memcmp(m.foot, "conectix", 8), 0);
	/* Now the copy. */
	f[0] = 'X';
	ck_assert_int_eq(pwrite(m.fd, f, 512, 0), 512);
	tv_img_close(&m);
	dc_close(h_open(spec, 0));
	tv_img_open(&m, p);
	ck_assert_int_eq(memcmp(m.foot, m.copy, 512), 0);
	tv_img_close(&m);
	d = h_open(spec, 0);
	ck_assert_int_eq(dc_read(d, 1000, buf, sizeof(buf)), 0);
	ck_assert_int_lt(h_check(buf, sizeof(buf), 3), 0);
	dc_close(d);
	free(spec);
	free(p);
}
END_TEST

/* Differencing metadata: locators out of the file, too long, on the BAT. */
START_TEST(vhd_bad_locators)
{
	char *base = h_tmppath(".vhd");
	struct tv_img m;

	vt_create("vhd", base, "create=1M");
	for (int k = 0; k < 3; k++) {
		char *child = h_tmppath(".vhd");
		uint8_t *e;

		vt_create("vhd", child, "parent=%s", base);
		tv_img_open(&m, child);
		e = m.hdr + 576; /* locator 0 */
		ck_assert_uint_ne(h_get_be32(e), 0);
		if (k == 0)
			h_put_be64(e + 16, m.size);
		else if (k == 1)
			h_put_be32(e + 8, 1u << 30);
		else
			h_put_be64(e + 16, m.bat_off);
		tv_put_hdr(&m);
		tv_img_close(&m);
		tv_expect_bad(child, k == 0 ? "outside the image" :
				     k == 1 ? "bytes long" :
					      "overlaps the BAT");
		free(child);
	}
	free(base);
}
END_TEST

/* Random damage to the metadata never crashes the plugin and never makes it
 * write outside the image: opens fail cleanly or reads work. */
START_TEST(vhd_fuzz_metadata)
{
	char *good = tv_bad_base(), *p = h_tmppath(".vhd");
	uint64_t rng = 0x9e3779b97f4a7c15ull;
	struct stat st;
	uint8_t *img, *buf = h_alloc(64 * KIB);
	int fd;

	ck_assert_int_eq(stat(good, &st), 0);
	img = malloc((size_t)st.st_size);
	fd = open(good, O_RDONLY);
	ck_assert_int_eq(pread(fd, img, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	for (int iter = 0; iter < 150; iter++) {
		char *spec = h_fmt("vhd:%s", p);
		dc_disk *d = NULL;
		uint64_t nflips;

		fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
		ck_assert_int_eq(pwrite(fd, img, (size_t)st.st_size, 0), st.st_size);
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		nflips = 1 + (rng >> 60);
		for (uint64_t k = 0; k < nflips; k++) {
			uint64_t off;
			uint8_t v;

			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			/* Header, BAT and both footers; re-checksum half the time
			 * so that the deeper checks are reached. */
			off = (rng >> 33) % 3072;
			if (rng & 1)
				off = (uint64_t)st.st_size - 512 + (rng >> 40) % 512;
			v = (uint8_t)(rng >> 20);
			ck_assert_int_eq(pwrite(fd, &v, 1, (off_t)off), 1);
		}
		if (rng & 2) {
			uint8_t f[512], h[1024];

			ck_assert_int_eq(pread(fd, f, 512, st.st_size - 512), 512);
			h_put_be32(f + 64, h_vhd_checksum(f, 512, 64));
			ck_assert_int_eq(pwrite(fd, f, 512, st.st_size - 512), 512);
			ck_assert_int_eq(pread(fd, h, 1024, 512), 1024);
			h_put_be32(h + 36, h_vhd_checksum(h, 1024, 36));
			ck_assert_int_eq(pwrite(fd, h, 1024, 512), 1024);
		}
		close(fd);
		if (dc_open(spec, 0, &d) == 0) {
			uint64_t n = dc_sector_count(d);

			for (uint64_t s = 0; s < n && s < 4096; s += 128) {
				uint64_t c = n - s < 128 ? n - s : 128;

				dc_read(d, s, buf, c * 512);
				if (s % 1024 == 0)
					dc_write(d, s, buf, c * 512, 0);
			}
			dc_close(d);
			/* Whatever was allocated, the image still opens. */
			d = NULL;
			ck_assert_msg(
				dc_open(spec, DC_OPEN_READ_ONLY, &d) == 0,
				"iteration %d: an image that opened and was written "
				"no longer opens: %s",
				iter, dc_last_error());
			dc_close(d);
		}
		free(spec);
	}
	free(img);
	free(buf);
	free(p);
	free(good);
}
END_TEST

TCase *vhd_tc_bad_input(void)
{
	TCase *bad = tcase_create("vhd-bad-input");

	tcase_add_test(bad, vhd_bad_headers);
	tcase_add_test(bad, vhd_bad_bat);
	tcase_add_test(bad, vhd_footer_repair);
	tcase_add_test(bad, vhd_bad_locators);
	tcase_add_test(bad, vhd_fuzz_metadata);
	return bad;
}
