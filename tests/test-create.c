/* SPDX-License-Identifier: MIT */
/* The create rule (docs/spec-strings.md, "Creating images") for every plugin that
 * makes images: create=SIZE (parent=, sqldiff's ;create) makes a missing image
 * and opens an existing one unchanged, refusing one of another size; only
 * ;overwrite replaces one; and a read-only open -- --ro, or any layer under
 * another -- never creates, truncates or writes. Files that must not change are
 * hashed before and after. */
#include "harness.h"

#include <diskcore/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB (1024 * 1024)

/* A kind of image and the specs that make it. In a template, @P@ is the image,
 * @B1@ and @B2@ two parent images (1 MiB and 2 MiB), @O@ where ";overwrite"
 * goes. `same` describes a 1 MiB image, `other` a 2 MiB one, `plain` names the
 * image without creating it. */
struct ck_kind {
	const char *name, *plugin, *ext;
	const char *same, *other, *plain;
	const char *parent; /* form of the parents, or NULL when there are none */
};

static const struct ck_kind ck_all[] = {
	{ "file", "file", ".img", "file:@P@;create=1M@O@", "file:@P@;create=2M@O@",
	  "file:@P@@O@", NULL },
	{ "vhd1", "vhd1", ".vhd", "vhd1:@P@;create=1M@O@", "vhd1:@P@;create=2M@O@",
	  "vhd1:@P@@O@", NULL },
	{ "vhd", "vhd", ".vhd", "vhd:@P@;create=1M@O@", "vhd:@P@;create=2M@O@",
	  "vhd:@P@@O@", NULL },
	/* file:X.vhd;create= makes a fixed VHD through vhd. */
	{ "file-vhd", "vhd", ".vhd", "file:@P@;create=1M@O@", "file:@P@;create=2M@O@",
	  "file:@P@@O@", NULL },
	{ "vhd-child", "vhd", ".vhd", "vhd:@P@;parent=@B1@@O@", "vhd:@P@;parent=@B2@@O@",
	  "vhd:@P@@O@", "vhd" },
	{ "vhdx", "vhdx", ".vhdx", "vhdx:@P@;create=1M@O@", "vhdx:@P@;create=2M@O@",
	  "vhdx:@P@@O@", NULL },
	{ "vhdx-child", "vhdx", ".vhdx", "vhdx:@P@;parent=@B1@@O@",
	  "vhdx:@P@;parent=@B2@@O@", "vhdx:@P@@O@", "vhdx" },
	{ "qcow2", "qcow2", ".qcow2", "qcow2:@P@;create=1M@O@", "qcow2:@P@;create=2M@O@",
	  "qcow2:@P@@O@", NULL },
	{ "qcow2-child", "qcow2", ".qcow2", "qcow2:@P@;parent=@B1@@O@",
	  "qcow2:@P@;parent=@B2@@O@", "qcow2:@P@@O@", "qcow2" },
	{ "sql", "sqlite", ".dbhd", "sql:@P@;create=1M@O@", "sql:@P@;create=2M@O@",
	  "sql:@P@@O@", NULL },
	{ "sqldiff", "sqlite", ".dbhd", "sqldiff:@P@;create@O@:mem:1M",
	  "sqldiff:@P@;create@O@:mem:2M", "sqldiff:@P@@O@:mem:1M", NULL },
};

/* The kinds whose plugin is built, chosen in main() before the cases fork. */
static const struct ck_kind *ck_kinds[sizeof(ck_all) / sizeof(ck_all[0])];
static int ck_nkinds;

/* One case's files. */
struct ck {
	const struct ck_kind *k;
	char *img, *b1, *b2;
};

static char *ck_replace(char *s, const char *token, const char *with)
{
	char *at;

	while ((at = strstr(s, token)) != NULL) {
		char *t = h_fmt("%.*s%s%s", (int)(at - s), s, with, at + strlen(token));

		free(s);
		s = t;
	}
	return s;
}

/* The spec of template tmpl, with ";overwrite" or not, and `prefix` before it. */
static char *ck_spec(const struct ck *c, const char *prefix, const char *tmpl,
		     bool overwrite)
{
	char *s = h_fmt("%s%s", prefix, tmpl);

	s = ck_replace(s, "@P@", c->img);
	s = ck_replace(s, "@B1@", c->b1 ? c->b1 : "");
	s = ck_replace(s, "@B2@", c->b2 ? c->b2 : "");
	return ck_replace(s, "@O@", overwrite ? ";overwrite" : "");
}

static void ck_setup(struct ck *c, int i)
{
	c->k = ck_kinds[i];
	c->img = h_tmppath(c->k->ext);
	c->b1 = c->b2 = NULL;
	if (c->k->parent) {
		c->b1 = h_tmppath(c->k->ext);
		c->b2 = h_tmppath(c->k->ext);
		dc_close(h_openf(0, "%s:%s;create=1M", c->k->parent, c->b1));
		dc_close(h_openf(0, "%s:%s;create=2M", c->k->parent, c->b2));
	}
}

static void ck_teardown(struct ck *c)
{
	free(c->img);
	free(c->b1);
	free(c->b2);
}

static bool ck_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* FNV-1a over the whole file: the file is byte-identical or it is not. */
static uint64_t ck_hash(const char *path)
{
	size_t len;
	uint8_t *p = h_read_file(path, &len);
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	free(p);
	return h ^ len;
}

/* The image and its parents, hashed. */
struct ck_sum {
	uint64_t img, b1, b2;
};

static struct ck_sum ck_sums(const struct ck *c)
{
	struct ck_sum s = { ck_hash(c->img), 0, 0 };

	if (c->b1) {
		s.b1 = ck_hash(c->b1);
		s.b2 = ck_hash(c->b2);
	}
	return s;
}

static void ck_unchanged(const struct ck *c, struct ck_sum before, const char *what)
{
	struct ck_sum now = ck_sums(c);

	ck_assert_msg(now.img == before.img, "%s: %s changed the image", c->k->name,
		      what);
	ck_assert_msg(now.b1 == before.b1 && now.b2 == before.b2,
		      "%s: %s changed a parent", c->k->name, what);
}

static dc_disk *ck_open(const struct ck *c, uint32_t flags, const char *prefix,
			const char *tmpl, bool overwrite)
{
	char *spec = ck_spec(c, prefix, tmpl, overwrite);
	dc_disk *d = h_open(spec, flags);

	free(spec);
	return d;
}

static void ck_fails(const struct ck *c, uint32_t flags, int rc, const char *needle,
		     const char *prefix, const char *tmpl, bool overwrite)
{
	char *spec = ck_spec(c, prefix, tmpl, overwrite);

	h_open_fails(flags, rc, needle, "%s", spec);
	free(spec);
}

static bool ck_created(dc_disk *d, const struct ck *c)
{
	struct h_desc t;
	const char *v;

	h_describe(d, c->k->plugin, &t);
	v = h_desc_get(&t, "created");
	return v && !strcmp(v, "yes");
}

static void ck_write(dc_disk *d, uint64_t seed)
{
	uint8_t buf[4096];

	h_fill(buf, sizeof(buf), seed);
	ck_assert_int_eq(dc_write(d, 8, buf, sizeof(buf), 0), 0);
	ck_assert_int_eq(dc_flush(d), 0);
}

/* Sectors 8.. hold the data written with seed (0: zeroes). */
static void ck_expect(dc_disk *d, uint64_t seed)
{
	uint8_t buf[4096];

	ck_assert_int_eq(dc_read(d, 8, buf, sizeof(buf)), 0);
	if (seed)
		ck_assert_int_eq(h_check(buf, sizeof(buf), seed), -1);
	else
		ck_assert_int_eq(h_check_zero(buf, sizeof(buf)), -1);
}

static uint64_t ck_bytes(dc_disk *d)
{
	return dc_sector_count(d) * dc_sector_size(d);
}

/* The image made by `same`, with data at sector 8. */
static struct ck_sum ck_make(struct ck *c)
{
	dc_disk *d = ck_open(c, 0, "", c->k->same, false);

	ck_write(d, 7);
	dc_close(d);
	return ck_sums(c);
}

/* --- The cases, one kind at a time --------------------------------------------- */

/* Missing: created, at the size asked, and said so. */
START_TEST(create_missing)
{
	struct ck c;
	dc_disk *d;

	ck_setup(&c, _i);
	d = ck_open(&c, 0, "", c.k->same, false);
	ck_assert(ck_created(d, &c));
	ck_assert_uint_eq(ck_bytes(d), MIB);
	ck_expect(d, 0);
	dc_close(d);
	ck_assert(ck_exists(c.img));
	ck_teardown(&c);
}
END_TEST

/* Existing, the same size: opened unchanged, data kept, not "created". */
START_TEST(create_existing_same)
{
	struct ck c;
	struct ck_sum s;
	dc_disk *d;

	ck_setup(&c, _i);
	s = ck_make(&c);
	d = ck_open(&c, 0, "", c.k->same, false);
	ck_assert(!ck_created(d, &c));
	ck_assert_uint_eq(ck_bytes(d), MIB);
	ck_expect(d, 7);
	dc_close(d);
	ck_unchanged(&c, s, "a writable create= of an existing image");
	ck_teardown(&c);
}
END_TEST

/* Existing, another size (another parent): refused, naming the path; nothing
 * written. */
START_TEST(create_existing_other)
{
	struct ck c;
	struct ck_sum s;

	ck_setup(&c, _i);
	s = ck_make(&c);
	ck_fails(&c, 0, -EEXIST, c.img, "", c.k->other, false);
	ck_fails(&c, 0, -EEXIST, "add ;overwrite", "", c.k->other, false);
	ck_fails(&c, DC_OPEN_READ_ONLY, -EEXIST, c.img, "", c.k->other, false);
	ck_unchanged(&c, s, "a refused create=");
	ck_teardown(&c);
}
END_TEST

/* ;overwrite replaces the image; it needs a creating option and a writable
 * open, and is refused otherwise without touching anything. */
START_TEST(create_overwrite)
{
	struct ck c;
	struct ck_sum s;
	dc_disk *d;

	ck_setup(&c, _i);
	s = ck_make(&c);
	ck_fails(&c, 0, -EINVAL, "applies only with", "", c.k->plain, true);
	ck_fails(&c, DC_OPEN_READ_ONLY, -EROFS, "never replaces", "", c.k->other, true);
	ck_fails(&c, 0, -EROFS, "never replaces", "memdiff:", c.k->other, true);
	ck_unchanged(&c, s, "a refused ;overwrite");
	d = ck_open(&c, 0, "", c.k->other, true);
	ck_assert(ck_created(d, &c));
	ck_assert_uint_eq(ck_bytes(d), 2 * MIB);
	ck_expect(d, 0);
	dc_close(d);
	ck_teardown(&c);
}
END_TEST

/* Read-only (--ro): an existing image opens and is not written, whatever I/O
 * is tried; a missing one is not created. */
START_TEST(create_read_only)
{
	struct ck c;
	struct ck_sum s;
	uint8_t buf[512] = { 1 };
	dc_disk *d;

	ck_setup(&c, _i);
	ck_fails(&c, DC_OPEN_READ_ONLY, -ENOENT, "never creates", "", c.k->same, false);
	ck_assert(!ck_exists(c.img));
	s = ck_make(&c);
	d = ck_open(&c, DC_OPEN_READ_ONLY, "", c.k->same, false);
	ck_assert(!ck_created(d, &c));
	ck_expect(d, 7);
	ck_assert_int_eq(dc_write(d, 0, buf, sizeof(buf), 0), DC_E_READ_ONLY);
	dc_close(d);
	ck_unchanged(&c, s, "a read-only open");
	ck_teardown(&c);
}
END_TEST

/* Under memdiff: the image is a lower layer, so read-only: a missing one is
 * not created; an existing one is read, never written, while writes land in
 * RAM. */
START_TEST(create_lower_layer)
{
	struct ck c;
	struct ck_sum s;
	dc_disk *d;

	ck_setup(&c, _i);
	ck_fails(&c, 0, -ENOENT, "never creates", "memdiff:", c.k->same, false);
	ck_assert(!ck_exists(c.img));
	s = ck_make(&c);
	d = ck_open(&c, 0, "memdiff:", c.k->same, false);
	ck_expect(d, 7);
	ck_write(d, 9);
	ck_expect(d, 9);
	dc_close(d);
	ck_unchanged(&c, s, "a lower layer");
	ck_teardown(&c);
}
END_TEST

/* --- Races and odd paths (file) ------------------------------------------------ */

/* Openers racing to create one image never truncate each other: every write
 * made through any opener that got in survives. An opener that finds the file
 * while its creator is still sizing it is refused cleanly ("exists with 0
 * bytes"), never handed a half-made image and never clobbering it. */
START_TEST(create_race_keeps_writes)
{
	enum { N = 6 };
	char *path = h_tmppath(".img");
	pid_t pids[N];
	uint8_t buf[512];
	dc_disk *d;
	int created = 0, opened = 0, status, code[N];

	/* Children, so that no thread of this process's core is forked. */
	for (int i = 0; i < N; i++) {
		pids[i] = fork();
		ck_assert_int_ge(pids[i], 0);
		if (pids[i] == 0) {
			dc_disk *w = NULL;
			char *spec = h_fmt("file:%s;create=1M", path);
			struct h_desc t;
			const char *v;
			int rc = dc_open(spec, 0, &w);

			/* Only the clean refusal of a file still being sized. */
			if (rc == -EEXIST && strstr(dc_last_error(), "exists with"))
				_exit(2);
			if (rc < 0)
				_exit(4);
			h_fill(buf, sizeof(buf), (uint64_t)i + 1);
			if (dc_write(w, (uint64_t)i, buf, sizeof(buf), 0) < 0 ||
			    dc_flush(w) < 0)
				_exit(3);
			h_describe(w, "file", &t);
			v = h_desc_get(&t, "created");
			dc_close(w);
			_exit(v && !strcmp(v, "yes") ? 10 : 0);
		}
	}
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
		ck_assert(WIFEXITED(status));
		code[i] = WEXITSTATUS(status);
		ck_assert_msg(code[i] == 0 || code[i] == 10 || code[i] == 2,
			      "opener %d exited with %d", i, code[i]);
		created += code[i] == 10;
		opened += code[i] != 2;
	}
	ck_assert_int_eq(created, 1);
	ck_assert_int_ge(opened, 1);
	d = h_openf(DC_OPEN_READ_ONLY, "file:%s", path);
	ck_assert_uint_eq(dc_sector_count(d), 2048);
	for (int i = 0; i < N; i++) {
		if (code[i] == 2)
			continue;
		ck_assert_int_eq(dc_read(d, (uint64_t)i, buf, sizeof(buf)), 0);
		ck_assert_msg(h_check(buf, sizeof(buf), (uint64_t)i + 1) == -1,
			      "the write of opener %d was lost", i);
	}
	dc_close(d);
	free(path);
}
END_TEST

/* A dangling symbolic link is not followed to create its target; an image that
 * cannot be finished is not left behind. */
START_TEST(create_odd_paths)
{
	char *link = h_tmppath(".img"), *target = h_tmppath(".img");
	char *child = h_tmppath(".vhd");

	ck_assert_int_eq(symlink(target, link), 0);
	h_open_fails(0, -ENOENT, "symbolic link", "file:%s;create=1M", link);
	ck_assert(!ck_exists(target));
	if (h_have_plugin("vhd")) {
		h_open_fails(0, 0, "No such file", "vhd:%s;parent=%s.none", child,
			     target);
		ck_assert(!ck_exists(child));
	}
	free(link);
	free(target);
	free(child);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("create");
	TCase *tc = tcase_create("rule");
	TCase *odd = tcase_create("odd");

	for (size_t i = 0; i < sizeof(ck_all) / sizeof(ck_all[0]); i++) {
		if (h_have_plugin(ck_all[i].plugin))
			ck_kinds[ck_nkinds++] = &ck_all[i];
		else
			fprintf(stderr, "create: %s: the %s plugin is not built\n",
				ck_all[i].name, ck_all[i].plugin);
	}
	tcase_add_loop_test(tc, create_missing, 0, ck_nkinds);
	tcase_add_loop_test(tc, create_existing_same, 0, ck_nkinds);
	tcase_add_loop_test(tc, create_existing_other, 0, ck_nkinds);
	tcase_add_loop_test(tc, create_overwrite, 0, ck_nkinds);
	tcase_add_loop_test(tc, create_read_only, 0, ck_nkinds);
	tcase_add_loop_test(tc, create_lower_layer, 0, ck_nkinds);
	suite_add_tcase(s, tc);
	tcase_add_test(odd, create_race_keeps_writes);
	tcase_add_test(odd, create_odd_paths);
	suite_add_tcase(s, odd);
	return h_run(s);
}
