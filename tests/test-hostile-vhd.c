/* SPDX-License-Identifier: MIT */
/* Hostile VHD and VHDX images (issue 19; the rules are in docs/spec-strings.md,
 * "vhd", and their tests are named in docs/security.md): a child whose parent
 * locator points at /etc/passwd, at ../../x, at a symlink leaving its
 * directory; two images that name each other as parents; a BAT larger than
 * the file; and the shared lock a live chain keeps on its parent. Each must
 * fail with a clear message, never crash, never open the wrong file. Every
 * case runs for vhd (i = 0) and vhdx (i = 1). */
#include "harness.h"
#include "vhdtest.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1024u * 1024u)

static const char *const hv_form[2] = { "vhd", "vhdx" };

/* --- Rewriting parent locators -------------------------------------------------- */

/* s as UTF-16 (little- or big-endian) into out; returns the bytes. */
static size_t hv_utf16(const char *s, uint8_t *out, bool be)
{
	size_t n = strlen(s);

	for (size_t i = 0; i < n; i++) {
		out[2 * i + be] = (uint8_t)s[i];
		out[2 * i + !be] = 0;
	}
	return 2 * n;
}

/* A VHD child's W2ru locator says rel and its W2ku locator abs (NULL: the
 * entry is cleared), and its parent name the first of them; the header's
 * checksum is fixed up. */
static void hv_vhd_locators(const char *path, const char *rel, const char *abs)
{
	uint8_t foot[512], h[1024], data[1024];
	uint64_t hoff;

	h_pread_file(path, 0, foot, sizeof(foot));
	hoff = h_get_be64(foot + 16);
	h_pread_file(path, (off_t)hoff, h, sizeof(h));
	for (int i = 0; i < 8; i++) {
		uint8_t *l = h + 576 + 24 * i;
		uint32_t code = h_get_be32(l);
		const char *s = code == 0x57326b75 ? abs :
				code == 0x57327275 ? rel :
						     NULL;
		size_t n;

		if (code != 0x57326b75 && code != 0x57327275)
			continue;
		if (!s) {
			memset(l, 0, 24);
			continue;
		}
		n = hv_utf16(s, data, false);
		ck_assert_uint_le(n, h_get_be32(l + 4)); /* its space */
		h_put_be32(l + 8, (uint32_t)n);
		h_pwrite_file(path, (off_t)h_get_be64(l + 16), data, n);
	}
	memset(h + 64, 0, 512);
	hv_utf16(rel ? rel : abs, h + 64, true);
	h_put_be32(h + 36, h_vhd_checksum(h, sizeof(h), 36));
	h_pwrite_file(path, (off_t)hoff, h, sizeof(h));
}

/* The text of a GUID stored with its first three fields little-endian. */
static void hv_guid_text(const uint8_t *g, char out[39])
{
	snprintf(out, 39,
		 "{%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x}",
		 g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11],
		 g[12], g[13], g[14], g[15]);
}

static uint64_t hv_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int k = 7; k >= 0; k--)
		v = v << 8 | p[k];
	return v;
}

/* The DataWriteGuid (offset 32) of a VHDX's current header (the one with the
 * larger sequence number, offset 8), as text. */
static void hv_vhdx_data_write(const char *path, char out[39])
{
	uint8_t h[2][64];

	h_pread_file(path, 64 * 1024, h[0], 64);
	h_pread_file(path, 128 * 1024, h[1], 64);
	hv_guid_text(h[hv_le64(h[1] + 8) > hv_le64(h[0] + 8)] + 32, out);
}

/* A diskcore-made VHDX child's parent locator (metadata item 5, the last one,
 * in the metadata region at 2 MiB) replaced by one with parent_linkage
 * linkage (NULL: the one it has), relative_path rel and the absolute path abs
 * (NULL: left out). */
static void hv_vhdx_locator(const char *path, const char *linkage, const char *rel,
			    const char *abs)
{
	const uint64_t meta = 2 * MIB;
	uint8_t ent[32], old[4096], item[4096] = { 0 };
	const char *keys[3] = { "parent_linkage", "relative_path",
				"diskcore_absolute_path" };
	const char *vals[3] = { NULL, rel, abs };
	char link[39] = "";
	uint32_t off, len, pos, count = 0;

	h_pread_file(path, (off_t)(meta + 32 + 32 * 5), ent, sizeof(ent));
	off = (uint32_t)ent[16] | (uint32_t)ent[17] << 8 | (uint32_t)ent[18] << 16 |
	      (uint32_t)ent[19] << 24;
	len = (uint32_t)ent[20] | (uint32_t)ent[21] << 8;
	ck_assert_uint_le(len, sizeof(old));
	h_pread_file(path, (off_t)(meta + off), old, len);
	/* The first entry is parent_linkage: 38 UTF-16 characters. */
	{
		uint32_t vo = (uint32_t)old[24] | (uint32_t)old[25] << 8;

		for (int i = 0; i < 38; i++)
			link[i] = (char)old[vo + 2 * i];
		link[38] = '\0';
	}
	vals[0] = linkage ? linkage : link;
	memcpy(item, old, 16); /* the locator type GUID */
	pos = 20 + 12 * 3;
	for (int k = 0; k < 3; k++) {
		uint8_t *e = item + 20 + 12 * count;
		size_t kn, vn;

		if (!vals[k])
			continue;
		kn = hv_utf16(keys[k], item + pos, false);
		vn = hv_utf16(vals[k], item + pos + kn, false);
		e[0] = (uint8_t)pos;
		e[1] = (uint8_t)(pos >> 8);
		e[4] = (uint8_t)(pos + kn);
		e[5] = (uint8_t)((pos + kn) >> 8);
		e[8] = (uint8_t)kn;
		e[10] = (uint8_t)vn;
		e[11] = (uint8_t)(vn >> 8);
		pos += (uint32_t)(kn + vn);
		count++;
	}
	item[18] = (uint8_t)count;
	ent[20] = (uint8_t)pos;
	ent[21] = (uint8_t)(pos >> 8);
	h_pwrite_file(path, (off_t)(meta + off), item, pos);
	h_pwrite_file(path, (off_t)(meta + 32 + 32 * 5), ent, sizeof(ent));
}

/* The child's locators say rel and abs, whatever its format. */
static void hv_locators(int i, const char *child, const char *rel, const char *abs)
{
	if (i == 0)
		hv_vhd_locators(child, rel, abs);
	else
		hv_vhdx_locator(child, NULL, rel, abs);
}

/* A base image with data, and the path of one in dir. */
static char *hv_base(int i, const char *dir, const char *name)
{
	char *path = h_fmt("%s/%s.%s", dir, name, hv_form[i]);
	dc_disk *d;

	vt_create(hv_form[i], path, "%s", i ? "create=4M;block=1M" : "create=4M");
	d = h_openf(0, "%s:%s", hv_form[i], path);
	vt_write(d, 0, 8, 42);
	dc_close(d);
	return path;
}

/* The spec printf makes opens read-only and reads the base's data through
 * its parent. */
static void hv_reads_base(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void hv_reads_base(const char *fmt, ...)
{
	uint8_t buf[8 * 512];
	va_list ap;
	char *spec;
	dc_disk *d;

	va_start(ap, fmt);
	ck_assert_int_ge(vasprintf(&spec, fmt, ap), 0);
	va_end(ap);
	d = h_open(spec, DC_OPEN_READ_ONLY);
	ck_assert_int_eq(dc_read(d, 0, buf, sizeof(buf)), 0);
	ck_assert_int_lt(h_check(buf, sizeof(buf), 42), 0);
	dc_close(d);
	free(spec);
}

/* --- The cases -------------------------------------------------------------------- */

/* A locator that points at /etc/passwd is refused, naming it; with
 * ;parents=any it opens as the child's format, which /etc/passwd is not. */
START_TEST(hostile_passwd)
{
	const char *f = hv_form[_i];
	char *dir = h_tmpsubdir(), *base = hv_base(_i, dir, "base");
	char *child = h_fmt("%s/child.%s", dir, f);
	char *spec = h_fmt("%s:%s;parents=any", f, child);
	dc_disk *d = NULL;

	vt_create(f, child, "parent=%s", base);
	hv_locators(_i, child, "../../../../../../../../../../etc/passwd", "/etc/passwd");
	h_open_fails(DC_OPEN_READ_ONLY, -EPERM,
		     "locator ../../../../../../../../../../etc/passwd leaves the "
		     "image's directory",
		     "%s:%s", f, child);
	hv_locators(_i, child, NULL, "/etc/passwd");
	h_open_fails(DC_OPEN_READ_ONLY, -EPERM, "locator /etc/passwd leaves", "%s:%s", f,
		     child);
	h_open_fails(0, -EPERM, "only inside the child's directory", "%s:%s", f, child);
	/* Opted in: opened as a VHD or VHDX, which it is not; never as raw. */
	h_open_fails(DC_OPEN_READ_ONLY, 0, "passwd", "%s", spec);
	ck_assert_int_lt(dc_open(spec, DC_OPEN_READ_ONLY, &d), 0);
	ck_assert_ptr_null(d);
	ck_assert_msg(strstr(dc_last_error(), _i ? "not a valid VHDX" : "not a VHD") ||
			      strstr(dc_last_error(), "too small for a VHD"),
		      "%s", dc_last_error());
	/* Named explicitly, the real parent opens. */
	hv_reads_base("%s:%s;parent=%s", f, child, base);
	free(spec);
	free(child);
	free(base);
	free(dir);
}
END_TEST

/* A child in dir/a/b whose parent is dir/x: its locators (..\..\x, and the
 * absolute path) climb out of its directory. */
START_TEST(hostile_dotdot)
{
	const char *f = hv_form[_i];
	char *dir = h_tmpsubdir(), *x = hv_base(_i, dir, "x");
	char *a = h_fmt("%s/a", dir), *b = h_fmt("%s/a/b", dir);
	char *child = h_fmt("%s/child.%s", b, f), *rel = h_fmt("../../x.%s", f);

	ck_assert_int_eq(mkdir(a, 0700), 0);
	ck_assert_int_eq(mkdir(b, 0700), 0);
	/* Made with parent= (named, so followed), then opened by itself. */
	vt_create(f, child, "parent=%s", x);
	h_open_fails(DC_OPEN_READ_ONLY, -EPERM, rel, "%s:%s", f, child);
	h_open_fails(DC_OPEN_READ_ONLY, -EPERM, "leaves the image's directory", "%s:%s",
		     f, child);
	hv_reads_base("%s:%s;parents=any", f, child);
	hv_reads_base("%s:%s;parent=%s", f, child, x);
	free(rel);
	free(child);
	free(b);
	free(a);
	free(x);
	free(dir);
}
END_TEST

/* A symlink inside the child's directory that leads out of it. */
START_TEST(hostile_symlink)
{
	const char *f = hv_form[_i];
	char *dir = h_tmpsubdir(), *out = h_fmt("%s/out", dir),
	     *img = h_fmt("%s/img", dir);
	char *base, *child, *link, *name = h_fmt("link.%s", f), *target;

	ck_assert_int_eq(mkdir(out, 0700), 0);
	ck_assert_int_eq(mkdir(img, 0700), 0);
	base = hv_base(_i, out, "base");
	child = h_fmt("%s/child.%s", img, f);
	link = h_fmt("%s/%s", img, name);
	target = h_fmt("../out/base.%s", f);
	ck_assert_int_eq(symlink(target, link), 0);
	vt_create(f, child, "parent=%s", base);
	hv_locators(_i, child, name, link);
	h_open_fails(DC_OPEN_READ_ONLY, -EPERM, "locator link.", "%s:%s", f, child);
	hv_reads_base("%s:%s;parents=any", f, child);
	/* A symlink that stays inside is followed. */
	free(target);
	target = h_fmt("%s/base.%s", img, f);
	ck_assert_int_eq(unlink(link), 0);
	ck_assert_int_eq(rename(base, target), 0);
	free(target);
	target = h_fmt("base.%s", f);
	ck_assert_int_eq(symlink(target, link), 0);
	hv_reads_base("%s:%s", f, child);
	free(target);
	free(link);
	free(name);
	free(child);
	free(base);
	free(img);
	free(out);
	free(dir);
}
END_TEST

/* Two images that name each other as parents: a loop, refused. */
START_TEST(hostile_loop)
{
	const char *f = hv_form[_i];
	char *dir = h_tmpsubdir(), *base = hv_base(_i, dir, "base");
	char *a = h_fmt("%s/a.%s", dir, f), *b = h_fmt("%s/b.%s", dir, f);
	char *bname = h_fmt("b.%s", f), dw[39];

	vt_create(f, a, "parent=%s", base);
	vt_create(f, b, "parent=%s", a);
	if (_i == 0) {
		hv_vhd_locators(a, bname, b);
	} else {
		hv_vhdx_data_write(b, dw);
		hv_vhdx_locator(a, dw, bname, b);
	}
	h_open_fails(DC_OPEN_READ_ONLY, -ELOOP, "loops", "%s:%s", f, a);
	h_open_fails(DC_OPEN_READ_ONLY, -ELOOP, "loops", "%s:%s", f, b);
	h_open_fails(0, -ELOOP, "loops", "%s:%s;parents=any", f, a);
	free(bname);
	free(b);
	free(a);
	free(base);
	free(dir);
}
END_TEST

/* A BAT larger than the file: refused before anything is allocated for it. */
START_TEST(hostile_bat)
{
	const char *f = hv_form[_i];
	char *dir = h_tmpsubdir(), *path = hv_base(_i, dir, "big");

	if (_i == 0) {
		uint8_t h[1024];

		/* max_entries (dynamic header offset 28): 2^20 entries, a 4 MiB
		 * BAT in a file of a few KiB; then more than the format allows. */
		h_pread_file(path, 512, h, sizeof(h));
		h_put_be32(h + 28, 1u << 20);
		h_put_be32(h + 36, h_vhd_checksum(h, sizeof(h), 36));
		h_pwrite_file(path, 512, h, sizeof(h));
		h_open_fails(DC_OPEN_READ_ONLY, -EINVAL, "BAT at offset", "%s:%s", f,
			     path);
		h_open_fails(DC_OPEN_READ_ONLY, -EINVAL, "lies outside the image",
			     "%s:%s", f, path);
		h_put_be32(h + 28, 0xfffffff0u);
		h_put_be32(h + 36, h_vhd_checksum(h, sizeof(h), 36));
		h_pwrite_file(path, 512, h, sizeof(h));
		h_open_fails(DC_OPEN_READ_ONLY, -EINVAL, "at most 16777216", "%s:%s", f,
			     path);
	} else {
		/* The virtual disk size item (entry 1) says 1 TiB: 2^20 BAT
		 * entries of 1 MiB blocks, in a 1 MiB BAT region; then 64 TiB,
		 * more entries than are ever loaded. */
		uint8_t ent[32], size[8];
		uint32_t off;

		h_pread_file(path, 2 * MIB + 32 + 32, ent, sizeof(ent));
		off = (uint32_t)ent[16] | (uint32_t)ent[17] << 8 |
		      (uint32_t)ent[18] << 16;
		for (int k = 0; k < 8; k++)
			size[k] = (uint8_t)((UINT64_C(1) << 40) >> (8 * k));
		h_pwrite_file(path, (off_t)(2 * MIB + off), size, 8);
		h_open_fails(DC_OPEN_READ_ONLY, -EINVAL, "is too small for the", "%s:%s",
			     f, path);
		for (int k = 0; k < 8; k++)
			size[k] = (uint8_t)((UINT64_C(64) << 40) >> (8 * k));
		h_pwrite_file(path, (off_t)(2 * MIB + off), size, 8);
		h_open_fails(DC_OPEN_READ_ONLY, -EINVAL, "entries; at most", "%s:%s", f,
			     path);
	}
	free(path);
	free(dir);
}
END_TEST

/* CRC-32C (Castagnoli), bit by bit: VHDX headers are sealed with it. */
static uint32_t hv_crc32c(const uint8_t *p, size_t n)
{
	uint32_t c = ~0u;

	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = c >> 1 ^ (0x82f63b78u & -(c & 1u));
	}
	return ~c;
}

/* Sizes an image states for its metadata, over the limits, refused before
 * anything is read or allocated for them: a VHD parent locator of 1 MiB; a
 * VHDX metadata item of 2 MiB, and a VHDX log of 2 GiB. */
START_TEST(hostile_sizes)
{
	const char *f = hv_form[_i];
	char *dir = h_tmpsubdir(), *base = hv_base(_i, dir, "base");
	char *child = h_fmt("%s/child.%s", dir, f);

	vt_create(f, child, "parent=%s", base);
	if (_i == 0) {
		uint8_t h[1024];

		h_pread_file(child, 512, h, sizeof(h));
		h_put_be32(h + 576 + 8, 1u << 20); /* locator 0's length */
		h_put_be32(h + 36, h_vhd_checksum(h, sizeof(h), 36));
		h_pwrite_file(child, 512, h, sizeof(h));
		h_open_fails(DC_OPEN_READ_ONLY, -EINVAL,
			     "parent locator 0 is 1048576 bytes long; at most 65536",
			     "%s:%s", f, child);
	} else {
		uint8_t ent[32], h[4096];

		h_pread_file(child, 2 * MIB + 32 + 32 * 5, ent, sizeof(ent));
		ent[22] = 0x20; /* the locator item's length: 2 MiB */
		h_pwrite_file(child, 2 * MIB + 32 + 32 * 5, ent, sizeof(ent));
		h_open_fails(DC_OPEN_READ_ONLY, -EINVAL,
			     "lies outside the metadata region", "%s:%s", f, child);
		for (int slot = 0; slot < 2; slot++) {
			h_pread_file(base, (off_t)(64 + 64 * slot) * 1024, h, sizeof(h));
			h[68] = h[69] = h[70] = 0;
			h[71] = 0x80; /* log length 2 GiB */
			memset(h + 4, 0, 4);
			h_put_be32(h + 4, __builtin_bswap32(hv_crc32c(h, sizeof(h))));
			h_pwrite_file(base, (off_t)(64 + 64 * slot) * 1024, h, sizeof(h));
		}
		h_open_fails(DC_OPEN_READ_ONLY, -EINVAL,
			     "a log of 2147483648 bytes; at most 1073741824", "%s:%s", f,
			     base);
	}
	free(child);
	free(base);
	free(dir);
}
END_TEST

/* A live chain keeps its parent locked shared: another process cannot open it
 * writable, one that reads still can; in this process a writable open of the
 * parent is refused, and so is a chain over a parent open writable. A forced
 * share (diskctl info -U) reads even the writable child, taking no lock. */
START_TEST(hostile_parent_locked)
{
	const char *f = hv_form[_i], *root = getenv("DISKCORE_BUILD_ROOT");
	char *dir = h_tmpsubdir(), *base = hv_base(_i, dir, "base");
	char *child = h_fmt("%s/child.%s", dir, f), *out = h_fmt("%s/out", dir);
	dc_disk *c, *w;

	ck_assert_ptr_nonnull(root);
	vt_create(f, child, "parent=%s", base);
	c = h_openf(0, "%s:%s", f, child);
	vt_write(c, 100, 4, 7);
	ck_assert_int_eq(h_sh("! %s/tools/diskctl info --rw '%s:%s' >%s 2>&1 && grep -q "
			      "'in use' %s; rc=$?; cat %s; exit $rc",
			      root, f, base, out, out, out),
			 0);
	ck_assert_int_eq(h_sh("%s/tools/diskctl info '%s:%s' >/dev/null", root, f, base),
			 0);
	/* The writable child itself: only a read that takes no lock (-U). */
	ck_assert_int_ne(
		h_sh("%s/tools/diskctl info '%s:%s' >/dev/null 2>&1", root, f, child), 0);
	ck_assert_int_eq(h_sh("%s/tools/diskctl info -U '%s:%s' >/dev/null 2>&1", root, f,
			      child),
			 0);
	dc_close(h_openf(DC_OPEN_READ_ONLY | DC_OPEN_FORCE_SHARE, "%s:%s", f, child));
	h_open_fails(0, -EBUSY, "open read-only in this process", "%s:%s", f, base);
	dc_close(c);
	w = h_openf(0, "%s:%s", f, base);
	h_open_fails(DC_OPEN_READ_ONLY, -EBUSY, "open writable in this process", "%s:%s",
		     f, child);
	dc_close(w);
	hv_reads_base("%s:%s", f, child);
	unlink(out);
	free(out);
	free(child);
	free(base);
	free(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("hostile-vhd");
	TCase *tc = tcase_create("hostile");

	if (!h_have_plugin("vhd") || !h_have_plugin("vhdx"))
		h_skip("the vhd and vhdx plugins are not built");
	tcase_add_loop_test(tc, hostile_passwd, 0, 2);
	tcase_add_loop_test(tc, hostile_dotdot, 0, 2);
	tcase_add_loop_test(tc, hostile_symlink, 0, 2);
	tcase_add_loop_test(tc, hostile_loop, 0, 2);
	tcase_add_loop_test(tc, hostile_bat, 0, 2);
	tcase_add_loop_test(tc, hostile_sizes, 0, 2);
	tcase_add_loop_test(tc, hostile_parent_locked, 0, 2);
	suite_add_tcase(s, tc);
	return h_run(s);
}
