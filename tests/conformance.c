/* SPDX-License-Identifier: MIT */
/* The shared conformance suite; see conformance.h. Every case opens its own disk
 * from the template, so cases do not depend on each other's writes. */
#include "conformance.h"
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct conf_entry {
	char *name;
	char *tmpl;
	struct conformance_opts opts;
};

static struct conf_entry *conf_entries;
static int conf_nentries;

/* --- Template expansion ---------------------------------------------------- */

struct conf_str {
	char *p;
	size_t len, cap;
};

static void conf_str_add(struct conf_str *s, const char *text, size_t n)
{
	if (s->len + n + 1 > s->cap) {
		s->cap = (s->len + n + 1) * 2;
		s->p = realloc(s->p, s->cap);
		if (!s->p)
			abort();
	}
	memcpy(s->p + s->len, text, n);
	s->len += n;
	s->p[s->len] = '\0';
}

/* "TMP", "TMP:4M", "TMP:1M.vhd", "NEW", "NEW.vhd", "DIR": returns a new path. */
static char *conf_placeholder(const char *ph, size_t n,
			      const struct conformance_opts *opts)
{
	char word[128], *dot, *colon;
	uint64_t size = 1024 * 1024;
	char *path;

	if (n >= sizeof(word))
		return NULL;
	memcpy(word, ph, n);
	word[n] = '\0';
	colon = strchr(word, ':');
	dot = strchr(colon ? colon : word, '.');
	if (dot)
		*dot++ = '\0';
	if (colon)
		*colon++ = '\0';
	if (!strcmp(word, "TMP")) {
		if (colon && dc_parse_size(colon, &size) < 0)
			return NULL;
		path = h_tmpfile(size, NULL);
		if (dot) {
			char *named;

			if (asprintf(&named, "%s.%s", path, dot) < 0 ||
			    rename(path, named) < 0)
				abort();
			free(path);
			path = named;
		}
		if (opts && opts->prepare) {
			int r = opts->prepare(path, size, opts->arg);

			if (r < 0) {
				fprintf(stderr, "conformance: preparing %s: %s\n", path,
					strerror(-r));
				free(path);
				return NULL;
			}
		}
		return path;
	}
	if (colon)
		return NULL;
	if (!strcmp(word, "NEW")) {
		char suffix[80];

		snprintf(suffix, sizeof(suffix), "%s%s", dot ? "." : "", dot ? dot : "");
		return h_tmppath(suffix);
	}
	if (!strcmp(word, "DIR") && !dot)
		return h_tmpsubdir();
	return NULL;
}

char *conformance_expand(const char *tmpl, const struct conformance_opts *opts)
{
	struct conf_str out = { 0 };
	const char *p = tmpl;

	conf_str_add(&out, "", 0);
	while (*p) {
		const char *at = strchr(p, '@'), *end;
		char *path;

		if (!at) {
			conf_str_add(&out, p, strlen(p));
			break;
		}
		conf_str_add(&out, p, (size_t)(at - p));
		end = strchr(at + 1, '@');
		if (!end)
			goto bad;
		if (end == at + 1) {
			conf_str_add(&out, "@", 1);
		} else {
			path = conf_placeholder(at + 1, (size_t)(end - at - 1), opts);
			if (!path)
				goto bad;
			conf_str_add(&out, path, strlen(path));
			free(path);
		}
		p = end + 1;
	}
	return out.p;
bad:
	fprintf(stderr,
		"conformance: bad placeholder in template '%s' (expected "
		"@TMP@, @TMP:SIZE[.EXT]@, @NEW[.EXT]@, @DIR@ or @@)\n",
		tmpl);
	free(out.p);
	return NULL;
}

dc_disk *conformance_open(const char *tmpl, const struct conformance_opts *opts)
{
	char *spec = conformance_expand(tmpl, opts);
	dc_disk *disk = NULL;
	int r;

	ck_assert_msg(spec, "template '%s' does not expand", tmpl);
	r = dc_open(spec, opts ? opts->open_flags : 0, &disk);
	ck_assert_msg(r == 0 && disk, "dc_open(%s) = %d (%s): %s", spec, r,
		      dc_strerror(r), dc_last_error());
	free(spec);
	return disk;
}

/* --- Helpers --------------------------------------------------------------- */

/* A disk under test and what the cases need to know about it. */
struct conf_disk {
	dc_disk *disk;
	struct dc_info info;
	const char *what; /* the template, for messages */
	uint32_t ss;
	unsigned shift;
	uint64_t count;
	uint64_t max_sector;
	bool ro;
};

static void conf_describe(struct conf_disk *c, dc_disk *disk, const char *what)
{
	memset(c, 0, sizeof(*c));
	c->disk = disk;
	c->what = what;
	dc_get_info(disk, &c->info);
	c->ss = c->info.sector_size;
	ck_assert_msg(c->ss >= 512 && (c->ss & (c->ss - 1)) == 0,
		      "%s: sector size %u is not a power of two >= 512", what, c->ss);
	c->shift = (unsigned)__builtin_ctz(c->ss);
	c->count = c->info.sector_count;
	c->max_sector = (uint64_t)INT64_MAX >> c->shift;
	c->ro = c->info.flags & DC_INFO_READ_ONLY;
}

static struct conf_entry *conf_entry(int i)
{
	ck_assert_int_lt(i, conf_nentries);
	return &conf_entries[i];
}

static void conf_open_entry(struct conf_disk *c, int i)
{
	struct conf_entry *e = conf_entry(i);

	conf_describe(c, conformance_open(e->tmpl, &e->opts), e->tmpl);
}

static void conf_close(struct conf_disk *c)
{
	dc_close(c->disk);
	c->disk = NULL;
}

static const char *conf_opname(int op)
{
	switch (op) {
	case DC_OP_READ:
		return "read";
	case DC_OP_WRITE:
		return "write";
	case DC_OP_UNMAP:
		return "unmap";
	}
	return "?";
}

/* One blocking request of `count` sectors; buf must hold count sectors for
 * read/write. */
static int conf_io(struct conf_disk *c, int op, uint64_t sector, uint64_t count,
		   void *buf, uint32_t flags)
{
	size_t len = (size_t)count * c->ss;

	switch (op) {
	case DC_OP_READ:
		return dc_read(c->disk, sector, buf, len);
	case DC_OP_WRITE:
		return dc_write(c->disk, sector, buf, len, flags);
	case DC_OP_UNMAP:
		return dc_unmap(c->disk, sector, count, flags);
	}
	return -EINVAL;
}

/* Fail the case unless r is 0; the message names the disk and the request. */
static void __attribute__((format(printf, 3, 4)))
conf_ok(const struct conf_disk *c, int r, const char *fmt, ...)
{
	char req[160];
	va_list ap;

	if (r == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(req, sizeof(req), fmt, ap);
	va_end(ap);
	ck_abort_msg("%s: %s = %d (%s), expected success", c->what, req, r,
		     dc_strerror(r));
}

static void conf_expect(struct conf_disk *c, int op, uint64_t sector, uint64_t count,
			void *buf, int expect)
{
	int r = conf_io(c, op, sector, count, buf, 0);

	ck_assert_msg(r == expect,
		      "%s: %s(sector %llu, count %llu) = %d (%s), expected %d (%s)",
		      c->what, conf_opname(op), (unsigned long long)sector,
		      (unsigned long long)count, r, dc_strerror(r), expect,
		      dc_strerror(expect));
}

static void conf_read_ok(struct conf_disk *c, uint64_t sector, void *buf, size_t len)
{
	conf_ok(c, dc_read(c->disk, sector, buf, len), "read(sector %llu, %zu bytes)",
		(unsigned long long)sector, len);
}

static void conf_write_ok(struct conf_disk *c, uint64_t sector, const void *buf,
			  size_t len, uint32_t flags)
{
	conf_ok(c, dc_write(c->disk, sector, buf, len, flags),
		"write(sector %llu, %zu bytes, flags %#x)", (unsigned long long)sector,
		len, flags);
}

static void conf_expect_pattern(struct conf_disk *c, const void *buf, size_t len,
				uint64_t seed, const char *where)
{
	long off = h_check(buf, len, seed);

	ck_assert_msg(off < 0, "%s: %s: data differs at byte %ld of %zu", c->what, where,
		      off, len);
}

/* Data seeds: distinct per case and per location. */
static uint64_t conf_seed(unsigned tag, uint64_t sector)
{
	return ((uint64_t)tag << 48) ^ sector;
}

/* Sectors per data block for the round-trip cases: 8, fewer on tiny disks. */
static uint64_t conf_block(const struct conf_disk *c)
{
	uint64_t n = c->count / 4;

	if (n > 8)
		n = 8;
	return n ? n : 1;
}

/* --- docs/openvmm-compat.md §7.1 ---------------------------------------------------- */

struct conf_range {
	uint64_t sector, count;
};

/* Read, write (skipped on read-only disks) and unmap (never skipped) of each
 * range must fail with exactly DC_E_ILLEGAL_BLOCK. */
static void conf_expect_illegal(struct conf_disk *c, const struct conf_range *r, size_t n)
{
	static const int ops[] = { DC_OP_READ, DC_OP_WRITE, DC_OP_UNMAP };
	uint8_t *buf = h_alloc(2 * c->ss);

	for (size_t i = 0; i < n; i++) {
		for (size_t o = 0; o < sizeof(ops) / sizeof(ops[0]); o++) {
			if (ops[o] == DC_OP_WRITE && c->ro)
				continue;
			conf_expect(c, ops[o], r[i].sector, r[i].count, buf,
				    DC_E_ILLEGAL_BLOCK);
		}
	}
	free(buf);
}

void conformance_check_representability(dc_disk *disk, const char *what)
{
	struct conf_disk c;

	conf_describe(&c, disk, what);
	const struct conf_range cases[] = {
		{ UINT64_MAX, 1 },
		{ UINT64_MAX - 1, 2 },
		{ c.max_sector, 1 },
		{ c.max_sector - 1, 2 },
		{ UINT64_C(1) << (64 - c.shift), 1 },
	};
	conf_expect_illegal(&c, cases, sizeof(cases) / sizeof(cases[0]));
}

void conformance_check_sector_range(dc_disk *disk, const char *what)
{
	struct conf_disk c;
	uint8_t *buf;

	conf_describe(&c, disk, what);
	ck_assert_msg(c.count >= 2,
		      "%s: the range suite needs >= 2 sectors, disk has %llu", what,
		      (unsigned long long)c.count);
	const struct conf_range cases[] = {
		{ c.count, 1 },
		{ c.count - 1, 2 },
		{ c.max_sector - 1, 1 },
	};
	conf_expect_illegal(&c, cases, sizeof(cases) / sizeof(cases[0]));
	/* Sanity: the last sector reads, and so does nothing at sector 0. */
	buf = h_alloc(c.ss);
	conf_expect(&c, DC_OP_READ, c.count - 1, 1, buf, 0);
	conf_expect(&c, DC_OP_READ, 0, 0, buf, 0);
	free(buf);
}

START_TEST(conf_representability)
{
	struct conf_disk c;

	conf_open_entry(&c, _i);
	conformance_check_representability(c.disk, c.what);
	conf_close(&c);
}
END_TEST

START_TEST(conf_sector_range)
{
	struct conf_disk c;

	conf_open_entry(&c, _i);
	conformance_check_sector_range(c.disk, c.what);
	conf_close(&c);
}
END_TEST

/* A sector number that wraps to byte 0 when shifted must not read sector 0. */
START_TEST(conf_no_wrap)
{
	struct conf_disk c;
	uint8_t *buf;

	conf_open_entry(&c, _i);
	buf = h_alloc(c.ss);
	if (!c.ro) {
		h_fill(buf, c.ss, conf_seed(1, 0));
		conf_write_ok(&c, 0, buf, c.ss, 0);
	} else {
		conf_read_ok(&c, 0, buf, c.ss);
	}
	uint8_t *got = h_alloc(c.ss);
	memcpy(got, buf, c.ss);
	conf_expect(&c, DC_OP_READ, UINT64_C(1) << (64 - c.shift), 1, got,
		    DC_E_ILLEGAL_BLOCK);
	if (h_check_zero(buf, c.ss) >= 0) {
		/* The buffer may be left as it was or changed, but a failed read
		 * must not have fetched sector 0 into it from a wrapped offset
		 * (undetectable when sector 0 is all zero, so only then). */
		memset(got, 0, c.ss);
		conf_expect(&c, DC_OP_READ, UINT64_C(1) << (64 - c.shift), 1, got,
			    DC_E_ILLEGAL_BLOCK);
		ck_assert_msg(memcmp(got, buf, c.ss) != 0,
			      "%s: a failed read at sector 2^%u returned sector 0's data",
			      c.what, 64 - c.shift);
	}
	free(got);
	free(buf);
	conf_close(&c);
}
END_TEST

/* --- What every storage user expects --------------------------------------- */

START_TEST(conf_metadata)
{
	struct conf_disk c;
	struct conf_entry *e = conf_entry(_i);

	conf_open_entry(&c, _i);
	ck_assert_msg(c.info.physical_sector_size >= c.ss &&
			      (c.info.physical_sector_size &
			       (c.info.physical_sector_size - 1)) == 0,
		      "%s: physical sector size %u is not a power of two >= %u", c.what,
		      c.info.physical_sector_size, c.ss);
	ck_assert_msg(c.count > 0, "%s: zero sectors", c.what);
	ck_assert_msg(c.count <= c.max_sector, "%s: %llu sectors cannot be addressed",
		      c.what, (unsigned long long)c.count);
	ck_assert_uint_eq(dc_sector_count(c.disk), c.count);
	ck_assert_uint_eq(dc_sector_size(c.disk), c.ss);
	ck_assert_msg(c.info.unmap_behavior == DC_UNMAP_UNSPECIFIED ||
			      c.info.unmap_behavior == DC_UNMAP_IGNORED ||
			      c.info.unmap_behavior == DC_UNMAP_ZEROES,
		      "%s: unmap behaviour %u is not one of the three", c.what,
		      c.info.unmap_behavior);
	ck_assert_msg(memchr(c.info.disk_type, '\0', sizeof(c.info.disk_type)) &&
			      c.info.disk_type[0],
		      "%s: disk_type is empty or not terminated", c.what);
	if (e->opts.open_flags & DC_OPEN_READ_ONLY)
		ck_assert_msg(c.ro, "%s: opened read-only but info says writable",
			      c.what);
	/* Constant metadata stays constant. */
	struct dc_info again;
	dc_get_info(c.disk, &again);
	ck_assert_uint_eq(again.sector_size, c.info.sector_size);
	ck_assert_uint_eq(again.physical_sector_size, c.info.physical_sector_size);
	ck_assert_uint_eq(again.flags, c.info.flags);
	ck_assert_uint_eq(again.unmap_behavior, c.info.unmap_behavior);
	ck_assert_int_eq(memcmp(again.disk_id, c.info.disk_id, 16), 0);
	conf_close(&c);
}
END_TEST

/* Write blocks at the start, middle and end; they read back, and the sectors
 * next to them are untouched. */
START_TEST(conf_round_trip)
{
	struct conf_disk c;
	uint64_t n, where[3];
	uint8_t *buf, *before, *after;

	conf_open_entry(&c, _i);
	if (c.ro) {
		buf = h_alloc(c.ss);
		conf_expect(&c, DC_OP_WRITE, 0, 1, buf, DC_E_READ_ONLY);
		free(buf);
		conf_close(&c);
		return;
	}
	n = conf_block(&c);
	ck_assert_msg(c.count >= 3 * n + 2, "%s: disk too small (%llu sectors)", c.what,
		      (unsigned long long)c.count);
	where[0] = 0;
	where[1] = c.count / 2 - n / 2;
	where[2] = c.count - n;
	buf = h_alloc(n * c.ss);
	before = h_alloc(c.ss);
	after = h_alloc(c.ss);
	/* Neighbours: after the start block and before the end block. */
	conf_read_ok(&c, where[0] + n, after, c.ss);
	conf_read_ok(&c, where[2] - 1, before, c.ss);
	for (int k = 0; k < 3; k++) {
		h_fill(buf, n * c.ss, conf_seed(2, where[k]));
		conf_write_ok(&c, where[k], buf, n * c.ss, 0);
	}
	for (int k = 0; k < 3; k++) {
		char where_s[64];

		memset(buf, 0xee, n * c.ss);
		conf_read_ok(&c, where[k], buf, n * c.ss);
		snprintf(where_s, sizeof(where_s), "block at sector %llu",
			 (unsigned long long)where[k]);
		conf_expect_pattern(&c, buf, n * c.ss, conf_seed(2, where[k]), where_s);
	}
	/* One sector at a time inside a block: offsets are per sector. */
	for (uint64_t s = 0; s < n; s++) {
		uint8_t *whole = h_alloc(n * c.ss);

		h_fill(whole, n * c.ss, conf_seed(2, where[1]));
		conf_read_ok(&c, where[1] + s, buf, c.ss);
		ck_assert_msg(memcmp(buf, whole + s * c.ss, c.ss) == 0,
			      "%s: sector %llu read alone differs from the block read",
			      c.what, (unsigned long long)(where[1] + s));
		free(whole);
	}
	uint8_t *now = h_alloc(c.ss);
	conf_read_ok(&c, where[0] + n, now, c.ss);
	ck_assert_msg(memcmp(now, after, c.ss) == 0,
		      "%s: writing sectors [0,%llu) changed sector %llu", c.what,
		      (unsigned long long)n, (unsigned long long)n);
	conf_read_ok(&c, where[2] - 1, now, c.ss);
	ck_assert_msg(memcmp(now, before, c.ss) == 0,
		      "%s: writing the last %llu sectors changed the one before", c.what,
		      (unsigned long long)n);
	/* Overwrite part of a block; the rest keeps its data. */
	h_fill(buf, c.ss, conf_seed(3, where[1] + 1));
	conf_write_ok(&c, where[1] + 1, buf, c.ss, 0);
	uint8_t *whole = h_alloc(n * c.ss);
	conf_read_ok(&c, where[1], whole, n * c.ss);
	conf_expect_pattern(&c, whole + c.ss, c.ss, conf_seed(3, where[1] + 1),
			    "overwritten sector");
	h_fill(buf, n * c.ss, conf_seed(2, where[1]));
	ck_assert_msg(memcmp(whole, buf, c.ss) == 0,
		      "%s: overwrite changed the sector before it", c.what);
	if (n > 2) {
		size_t rest = (n - 2) * c.ss;

		ck_assert_msg(memcmp(whole + 2 * c.ss, buf + 2 * c.ss, rest) == 0,
			      "%s: overwrite changed the sectors after it", c.what);
	}
	free(whole);
	free(now);
	free(before);
	free(after);
	free(buf);
	conf_close(&c);
}
END_TEST

/* A transfer of many pages in one request (up to 1 MiB). */
START_TEST(conf_large)
{
	struct conf_disk c;
	uint64_t n;
	size_t len;
	uint8_t *buf;

	conf_open_entry(&c, _i);
	n = c.count - 1;
	if (n * c.ss > 1024 * 1024)
		n = 1024 * 1024 / c.ss;
	len = (size_t)n * c.ss;
	buf = h_alloc(len);
	if (!c.ro) {
		h_fill(buf, len, conf_seed(4, 1));
		conf_write_ok(&c, 1, buf, len, 0);
		memset(buf, 0, len);
	}
	conf_read_ok(&c, 1, buf, len);
	if (!c.ro)
		conf_expect_pattern(&c, buf, len, conf_seed(4, 1), "large transfer");
	free(buf);
	conf_close(&c);
}
END_TEST

/* Scatter-gather with segments that are, and are not, sector multiples; each
 * segment is its own allocation. */
START_TEST(conf_vectored)
{
	struct conf_disk c;
	struct iovec iov[3];
	uint8_t *flat;
	size_t len;
	uint64_t sector;

	conf_open_entry(&c, _i);
	if (c.count < 16) {
		conf_close(&c);
		return;
	}
	len = 8 * (size_t)c.ss;
	sector = c.count / 3;
	const size_t splits[2][3] = {
		{ c.ss, 2 * (size_t)c.ss, 5 * (size_t)c.ss }, /* 512/1024/2560 */
		{ 100, 1000, len - 1100 },
	};
	flat = h_alloc(len);
	for (int s = 0; s < 2; s++) {
		uint64_t seed = conf_seed(5, sector) + (uint64_t)s;
		size_t off;

		for (int i = 0; i < 3; i++) {
			iov[i].iov_len = splits[s][i];
			iov[i].iov_base = h_alloc(splits[s][i]);
		}
		if (!c.ro) {
			h_fill(flat, len, seed);
			off = 0;
			for (int i = 0; i < 3; off += iov[i].iov_len, i++)
				memcpy(iov[i].iov_base, flat + off, iov[i].iov_len);
			conf_ok(&c, dc_writev(c.disk, sector, iov, 3, 0),
				"writev(split %d)", s);
			memset(flat, 0, len);
			conf_read_ok(&c, sector, flat, len);
			conf_expect_pattern(&c, flat, len, seed,
					    "vectored write, flat read");
			h_fill(flat, len, seed + 100);
			conf_write_ok(&c, sector, flat, len, 0);
		} else {
			conf_read_ok(&c, sector, flat, len);
		}
		for (int i = 0; i < 3; i++)
			memset(iov[i].iov_base, 0xa5, iov[i].iov_len);
		conf_ok(&c, dc_readv(c.disk, sector, iov, 3), "readv(split %d)", s);
		off = 0;
		for (int i = 0; i < 3; off += iov[i].iov_len, i++) {
			bool same = !memcmp(iov[i].iov_base, flat + off, iov[i].iov_len);

			ck_assert_msg(same, "%s: readv split %d: segment %d differs",
				      c.what, s, i);
			free(iov[i].iov_base);
		}
	}
	free(flat);
	conf_close(&c);
}
END_TEST

/* Buffers that start one byte into a page. */
START_TEST(conf_unaligned)
{
	struct conf_disk c;
	uint8_t *wmem, *rmem, *w, *r;
	size_t len;
	uint64_t sector;

	conf_open_entry(&c, _i);
	len = (size_t)conf_block(&c) * c.ss;
	sector = c.count / 4;
	wmem = h_alloc(len + 4096);
	rmem = h_alloc(len + 4096);
	w = wmem + 1;
	r = rmem + 1;
	if (!c.ro) {
		h_fill(w, len, conf_seed(6, sector));
		conf_write_ok(&c, sector, w, len, 0);
		conf_read_ok(&c, sector, r, len);
		conf_expect_pattern(&c, r, len, conf_seed(6, sector),
				    "unaligned buffers");
	} else {
		uint8_t *aligned = h_alloc(len);

		conf_read_ok(&c, sector, aligned, len);
		conf_read_ok(&c, sector, r, len);
		ck_assert_msg(memcmp(aligned, r, len) == 0,
			      "%s: unaligned read differs from aligned read", c.what);
		free(aligned);
	}
	free(rmem);
	free(wmem);
	conf_close(&c);
}
END_TEST

START_TEST(conf_flush)
{
	struct conf_disk c;
	int r;

	conf_open_entry(&c, _i);
	r = dc_flush(c.disk);
	/* A read-only disk may refuse a flush as a write-type request. */
	ck_assert_msg(r == 0 || (c.ro && r == DC_E_READ_ONLY), "%s: flush = %d (%s)",
		      c.what, r, dc_strerror(r));
	if (!c.ro) {
		uint8_t *buf = h_alloc(c.ss);

		h_fill(buf, c.ss, conf_seed(7, 3));
		conf_write_ok(&c, 3, buf, c.ss, 0);
		conf_ok(&c, dc_flush(c.disk), "flush after a write");
		memset(buf, 0, c.ss);
		conf_read_ok(&c, 3, buf, c.ss);
		conf_expect_pattern(&c, buf, c.ss, conf_seed(7, 3), "after flush");
		free(buf);
	}
	conf_close(&c);
}
END_TEST

START_TEST(conf_fua)
{
	struct conf_disk c;
	uint8_t *buf;
	size_t len;

	conf_open_entry(&c, _i);
	len = (size_t)conf_block(&c) * c.ss;
	buf = h_alloc(len);
	if (c.ro) {
		conf_expect(&c, DC_OP_WRITE, 0, 1, buf, DC_E_READ_ONLY);
	} else {
		h_fill(buf, len, conf_seed(8, 5));
		conf_write_ok(&c, 5, buf, len, DC_IO_FUA);
		memset(buf, 0, len);
		conf_read_ok(&c, 5, buf, len);
		conf_expect_pattern(&c, buf, len, conf_seed(8, 5), "FUA write");
	}
	free(buf);
	conf_close(&c);
}
END_TEST

/* Unmap in range succeeds; what it does to data follows unmap_behavior; the
 * sectors around it never change. */
START_TEST(conf_unmap)
{
	struct conf_disk c;
	uint64_t s0, n, u0, un;
	uint8_t *buf, *got;
	size_t len;

	conf_open_entry(&c, _i);
	if (c.ro) {
		conf_close(&c);
		return;
	}
	conf_ok(&c, dc_unmap(c.disk, 0, 0, 0), "unmap(0, 0)");
	n = conf_block(&c) * 2;
	if (n > c.count)
		n = c.count;
	s0 = c.count - n > 16 ? 16 : 0;
	len = (size_t)n * c.ss;
	buf = h_alloc(len);
	got = h_alloc(len);
	h_fill(buf, len, conf_seed(9, s0));
	conf_write_ok(&c, s0, buf, len, 0);
	/* The middle half of the block. */
	u0 = s0 + n / 4;
	un = n / 2 ? n / 2 : 1;
	conf_ok(&c, dc_unmap(c.disk, u0, un, 0), "unmap(%llu, %llu)",
		(unsigned long long)u0, (unsigned long long)un);
	conf_ok(&c, dc_unmap(c.disk, u0, un, DC_IO_BLOCK_LEVEL_ONLY),
		"unmap(%llu, %llu, block-level-only)", (unsigned long long)u0,
		(unsigned long long)un);
	conf_read_ok(&c, s0, got, len);
	size_t a = (size_t)(u0 - s0) * c.ss, b = a + (size_t)un * c.ss;
	ck_assert_msg(memcmp(got, buf, a) == 0, "%s: unmap changed sectors before it",
		      c.what);
	ck_assert_msg(memcmp(got + b, buf + b, len - b) == 0,
		      "%s: unmap changed sectors after it", c.what);
	if (c.info.unmap_behavior == DC_UNMAP_ZEROES) {
		long off = h_check_zero(got + a, b - a);

		ck_assert_msg(
			off < 0,
			"%s: unmap behaviour is 'zeroes' but unmapped byte %ld is not 0",
			c.what, off);
	} else if (c.info.unmap_behavior == DC_UNMAP_IGNORED) {
		ck_assert_msg(memcmp(got + a, buf + a, b - a) == 0,
			      "%s: unmap behaviour is 'ignored' but unmap changed data",
			      c.what);
	}
	/* The whole disk at once. */
	conf_ok(&c, dc_unmap(c.disk, 0, c.count, 0), "unmap of the whole disk");
	if (c.info.unmap_behavior == DC_UNMAP_ZEROES) {
		conf_read_ok(&c, s0, got, len);
		ck_assert_msg(h_check_zero(got, len) < 0,
			      "%s: whole-disk unmap did not zero", c.what);
	}
	free(got);
	free(buf);
	conf_close(&c);
}
END_TEST

/* The caller's buffer is input only (a transforming layer must stage). */
START_TEST(conf_write_buffer_kept)
{
	struct conf_disk c;
	uint8_t *buf, *copy;
	size_t len;
	struct iovec iov[2];

	conf_open_entry(&c, _i);
	if (c.ro) {
		conf_close(&c);
		return;
	}
	len = (size_t)conf_block(&c) * c.ss;
	buf = h_alloc(len);
	copy = h_alloc(len);
	h_fill(buf, len, conf_seed(10, 2));
	memcpy(copy, buf, len);
	conf_write_ok(&c, 2, buf, len, 0);
	ck_assert_msg(memcmp(buf, copy, len) == 0,
		      "%s: write modified the caller's buffer", c.what);
	conf_write_ok(&c, 2, buf, len, DC_IO_FUA);
	ck_assert_msg(memcmp(buf, copy, len) == 0,
		      "%s: FUA write modified the caller's buffer", c.what);
	iov[0].iov_base = buf;
	iov[0].iov_len = c.ss;
	iov[1].iov_base = buf + c.ss;
	iov[1].iov_len = len - c.ss;
	if (len > c.ss) {
		conf_ok(&c, dc_writev(c.disk, 2, iov, 2, 0), "writev");
		ck_assert_msg(memcmp(buf, copy, len) == 0,
			      "%s: writev modified the caller's buffer", c.what);
	}
	free(copy);
	free(buf);
	conf_close(&c);
}
END_TEST

/* A request that runs past the end fails as a whole and writes nothing. */
START_TEST(conf_straddle_end)
{
	struct conf_disk c;
	uint8_t *buf, *last;
	uint64_t end;

	conf_open_entry(&c, _i);
	end = c.count;
	buf = h_alloc(4 * (size_t)c.ss);
	last = h_alloc(c.ss);
	if (!c.ro) {
		h_fill(last, c.ss, conf_seed(11, end - 1));
		conf_write_ok(&c, end - 1, last, c.ss, 0);
		h_fill(buf, 4 * (size_t)c.ss, conf_seed(12, end - 1));
		conf_expect(&c, DC_OP_WRITE, end - 1, 2, buf, DC_E_ILLEGAL_BLOCK);
		conf_expect(&c, DC_OP_WRITE, end - 1, 4, buf, DC_E_ILLEGAL_BLOCK);
		int r = dc_write(c.disk, end - 1, buf, 2 * (size_t)c.ss, DC_IO_FUA);

		ck_assert_msg(r == DC_E_ILLEGAL_BLOCK,
			      "%s: FUA write across the end = %d, expected illegal block",
			      c.what, r);
		conf_expect(&c, DC_OP_UNMAP, end - 1, 2, buf, DC_E_ILLEGAL_BLOCK);
	} else {
		conf_read_ok(&c, end - 1, last, c.ss);
	}
	conf_expect(&c, DC_OP_READ, end - 1, 2, buf, DC_E_ILLEGAL_BLOCK);
	memset(buf, 0, c.ss);
	conf_read_ok(&c, end - 1, buf, c.ss);
	ck_assert_msg(memcmp(buf, last, c.ss) == 0,
		      "%s: a failed request across the end changed the last sector",
		      c.what);
	ck_assert_uint_eq(dc_sector_count(c.disk), end);
	free(last);
	free(buf);
	conf_close(&c);
}
END_TEST

/* Many requests in flight on one queue, reaped through the eventfd. */
#define CONF_QD 32

START_TEST(conf_queue_depth)
{
	struct conf_disk c;
	dc_queue *q;
	uint8_t *bufs;
	int seen[CONF_QD];
	uint64_t base;
	int r;

	conf_open_entry(&c, _i);
	if (c.count < 2 * CONF_QD) {
		conf_close(&c);
		return;
	}
	r = dc_queue_open(c.disk, DC_QUEUE_POLL, &q);
	ck_assert_msg(r == 0, "%s: dc_queue_open = %d: %s", c.what, r, dc_last_error());
	bufs = h_alloc(CONF_QD * (size_t)c.ss);
	base = c.count - 2 * CONF_QD;
	for (int pass = c.ro ? 1 : 0; pass < 2; pass++) {
		int op = pass == 0 ? DC_OP_WRITE : DC_OP_READ;
		struct iovec iov[CONF_QD];
		int done = 0;

		memset(seen, 0, sizeof(seen));
		for (int i = 0; i < CONF_QD; i++) {
			uint8_t *b = bufs + (size_t)i * c.ss;
			/* Every other sector, so neighbours must stay apart. */
			uint64_t sector = base + 2 * (uint64_t)i;

			if (op == DC_OP_WRITE)
				h_fill(b, c.ss, conf_seed(13, sector));
			else
				memset(b, 0, c.ss);
			iov[i].iov_base = b;
			iov[i].iov_len = c.ss;
			struct dc_io io = {
				.op = (uint32_t)op,
				.sector = sector,
				.iov = &iov[i],
				.iovcnt = 1,
				.user_data = &seen[i],
			};
			r = dc_submit(q, &io);
			ck_assert_msg(r == 0, "%s: dc_submit #%d = %d", c.what, i, r);
		}
		while (done < CONF_QD) {
			struct dc_completion cq[8];
			struct pollfd pfd = { .fd = dc_queue_fd(q), .events = POLLIN };
			int n = dc_queue_reap(q, cq, 8);

			if (n == 0) {
				r = poll(&pfd, 1, 30000);
				ck_assert_msg(r == 1,
					      "%s: no completion within 30 s "
					      "(%d of %d done)",
					      c.what, done, CONF_QD);
				continue;
			}
			for (int k = 0; k < n; k++) {
				int idx = (int)((int *)cq[k].user_data - seen);

				ck_assert_msg(idx >= 0 && idx < CONF_QD,
					      "%s: completion with foreign user_data",
					      c.what);
				ck_assert_msg(cq[k].result == 0, "%s: %s #%d = %d (%s)",
					      c.what, conf_opname(op), idx, cq[k].result,
					      dc_strerror(cq[k].result));
				seen[idx]++;
			}
			done += n;
		}
		for (int i = 0; i < CONF_QD; i++)
			ck_assert_msg(seen[i] == 1, "%s: request %d completed %d times",
				      c.what, i, seen[i]);
		ck_assert_uint_eq(dc_queue_inflight(q), 0);
		if (op == DC_OP_READ && !c.ro)
			for (int i = 0; i < CONF_QD; i++)
				conf_expect_pattern(&c, bufs + (size_t)i * c.ss, c.ss,
						    conf_seed(13, base + 2 * (uint64_t)i),
						    "queued read");
	}
	dc_queue_close(q);
	free(bufs);
	conf_close(&c);
}
END_TEST

/* --- Registration ---------------------------------------------------------- */

void conformance_add_opts(Suite *s, const char *name, const char *tmpl,
			  const struct conformance_opts *opts)
{
	struct conf_entry *e;
	TCase *tc;
	int i;

	conf_entries = realloc(conf_entries,
			       sizeof(*conf_entries) * (size_t)(conf_nentries + 1));
	if (!conf_entries)
		abort();
	i = conf_nentries++;
	e = &conf_entries[i];
	e->name = strdup(name);
	e->tmpl = strdup(tmpl);
	if (opts)
		e->opts = *opts;
	else
		memset(&e->opts, 0, sizeof(e->opts));

	tc = tcase_create(e->name);
	tcase_add_loop_test(tc, conf_metadata, i, i + 1);
	tcase_add_loop_test(tc, conf_representability, i, i + 1);
	tcase_add_loop_test(tc, conf_sector_range, i, i + 1);
	tcase_add_loop_test(tc, conf_no_wrap, i, i + 1);
	tcase_add_loop_test(tc, conf_round_trip, i, i + 1);
	tcase_add_loop_test(tc, conf_large, i, i + 1);
	tcase_add_loop_test(tc, conf_vectored, i, i + 1);
	tcase_add_loop_test(tc, conf_unaligned, i, i + 1);
	tcase_add_loop_test(tc, conf_flush, i, i + 1);
	tcase_add_loop_test(tc, conf_fua, i, i + 1);
	tcase_add_loop_test(tc, conf_unmap, i, i + 1);
	tcase_add_loop_test(tc, conf_write_buffer_kept, i, i + 1);
	tcase_add_loop_test(tc, conf_straddle_end, i, i + 1);
	tcase_add_loop_test(tc, conf_queue_depth, i, i + 1);
	suite_add_tcase(s, tc);
}

void conformance_add(Suite *s, const char *name, const char *tmpl)
{
	conformance_add_opts(s, name, tmpl, NULL);
}
