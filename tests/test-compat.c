/* SPDX-License-Identifier: MIT */
/* The OpenVMM drop-in table (docs/openvmm-compat.md): every row of its tables
 * is a row here, with the same id, spec and open mode (the doc_agrees case
 * reads the document and fails on any difference). Each row is fed to
 * dc_open() with the built plugins and must open with the chain, size,
 * sector sizes, flags and unmap behaviour given, or fail with the error
 * code and text given.
 *
 * Placeholders: $T is the directory the rows run in (their working directory,
 * where main() makes the files they name), $BLOB the base URL of
 * tests/blob/badserver.py serving fixed.vhd, $LOOP a loop device over a
 * 1 MiB file (root and losetup; the row is skipped, and says so, without). */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define KIB UINT64_C(1024)
#define MIB (KIB * KIB)
#define RO DC_INFO_READ_ONLY
#define FUA DC_INFO_FUA_RESPECTED
#define ID DC_INFO_HAS_DISK_ID
#define PR DC_INFO_PR
#define FLAGS_CHECKED (RO | FUA | ID | PR)
#define Z DC_UNMAP_ZEROES
#define UNSPEC DC_UNMAP_UNSPECIFIED
#define IGN DC_UNMAP_IGNORED

/* The sector the fixtures mark in raw.img: no row writes it, so a row can
 * tell that raw.img was opened, not replaced. */
#define RAW_MARK_SECTOR 7

struct row;
typedef void (*row_hook)(dc_disk *d, const struct row *r);

struct row {
	const char *id;
	const char *spec;
	const char *open; /* "rw" or "ro", maybe with the cache env (as in the doc) */
	int rc;		  /* 0: opens; else dc_open()'s result */
	const char *what; /* opens: the chain's plugins top-down; else text of the error */
	uint64_t bytes;
	uint32_t ss, pss;
	uint32_t flags; /* of FLAGS_CHECKED */
	int unmap;
	const char *needs; /* plugins, or "blob-server", "loop" */
	row_hook hook;	   /* more checks on the open disk */
};

static char *cx_dir;  /* $T */
static char *cx_blob; /* $BLOB, or NULL without python3 */
static char *cx_loop; /* $LOOP, or NULL */
static pid_t cx_owner;

/* --- Hooks ------------------------------------------------------------------- */

static void hook_fua_write(dc_disk *d, const struct row *r)
{
	uint8_t *b = h_alloc(512);

	(void)r;
	h_fill(b, 512, 1);
	ck_assert_int_eq(dc_write(d, 0, b, 512, DC_IO_FUA), 0);
	free(b);
}

/* OpenVMM's FileDisk does not check read-only on writes ([NOTE]); here the
 * core refuses them. */
static void hook_ro_write(dc_disk *d, const struct row *r)
{
	uint8_t *b = h_alloc(512);

	(void)r;
	ck_assert_int_eq(dc_write(d, 0, b, 512, 0), DC_E_READ_ONLY);
	free(b);
}

static void hook_direct(dc_disk *d, const struct row *r)
{
	struct h_desc t;

	(void)r;
	h_describe(d, "file", &t);
	ck_assert_str_eq(h_desc_get(&t, "direct"), "yes");
}

/* raw.img was opened as it was, not truncated and made again. */
static void hook_raw_kept(dc_disk *d, const struct row *r)
{
	uint8_t *b = h_alloc(512);

	(void)r;
	ck_assert_int_eq(dc_read(d, RAW_MARK_SECTOR, b, 512), 0);
	ck_assert_int_eq(h_check(b, 512, RAW_MARK_SECTOR), -1);
	free(b);
}

/* The file of a "file:NAME;create=..." row. */
static char *row_file(const struct row *r)
{
	const char *p = strchr(r->spec, ':') ? strchr(r->spec, ':') + 1 : r->spec;

	return strndup(p, strcspn(p, ";"));
}

static void hook_raw_created(dc_disk *d, const struct row *r)
{
	char *path = row_file(r);
	struct stat st;

	(void)d;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_size, r->bytes);
	free(path);
}

/* The file ends in a valid fixed-VHD footer of the disk's size. */
static void hook_fixed_footer(dc_disk *d, const struct row *r)
{
	char *path = row_file(r);
	uint8_t f[512];
	struct stat st;

	(void)d;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_size, r->bytes + 512);
	h_pread_file(path, (off_t)r->bytes, f, 512);
	ck_assert(memcmp(f, "conectix", 8) == 0);
	ck_assert_uint_eq(h_get_be32(f + 60), 2); /* fixed */
	ck_assert_uint_eq(h_get_be64(f + 48), r->bytes);
	ck_assert_uint_eq(h_get_be32(f + 64), h_vhd_checksum(f, 512, 64));
	free(path);
}

/* Resizes reach the consumer: OpenVMM's disk handle never completes
 * wait_resize, and its prwrap does not forward it ([NOTE]s). */
static void hook_resize(dc_disk *d, const struct row *r)
{
	uint64_t before = dc_sector_count(d), now = 0;

	(void)r;
	ck_assert_int_eq(dc_resize(d, before * 2), 0);
	ck_assert_int_eq(dc_wait_resize(d, before, 5000, &now), 0);
	ck_assert_uint_eq(now, before * 2);
}

/* OpenVMM opens an IDE disk's spec twice in one process; each memdiff: is
 * its own RAM layer, so a write through one open is not seen by the other. */
static void hook_two_opens(dc_disk *d, const struct row *r)
{
	uint8_t *b = h_alloc(512), *back = h_alloc(512);
	dc_disk *d2 = h_open(r->spec, 0);

	h_fill(b, 512, 77);
	ck_assert_int_eq(dc_write(d, 3, b, 512, 0), 0);
	ck_assert_int_eq(dc_read(d2, 3, back, 512), 0);
	ck_assert_int_eq(h_check_zero(back, 512), -1);
	ck_assert_int_eq(dc_read(d, 3, back, 512), 0);
	ck_assert(memcmp(b, back, 512) == 0);
	dc_close(d2);
	free(back);
	free(b);
}

/* The cache went where OpenVMM's variable says. */
static void hook_openvmm_cache(dc_disk *d, const struct row *r)
{
	(void)d;
	(void)r;
	ck_assert_int_eq(access("cache-openvmm/envkey/cache.dbhd", F_OK), 0);
}

/* OpenVMM's SQLite layer underflows on an unmap of 0 sectors at 0 ([NOTE]). */
static void hook_zero_unmap(dc_disk *d, const struct row *r)
{
	(void)r;
	ck_assert_int_eq(dc_unmap(d, 0, 0, 0), 0);
	ck_assert_int_eq(dc_unmap(d, 0, 1, 0), 0);
}

/* The blob's bytes are fixed.vhd's; a read at the end of a VHD blob fails
 * rather than return the footer. */
static void hook_blob_read(dc_disk *d, const struct row *r)
{
	uint64_t n = dc_sector_count(d);
	uint8_t *b = h_alloc(4096), *want = h_alloc(4096);

	(void)r;
	h_pread_file("fixed.vhd", 8 * 512, want, 4096);
	ck_assert_int_eq(dc_read(d, 8, b, 4096), 0);
	ck_assert(memcmp(b, want, 4096) == 0);
	free(want);
	ck_assert_int_eq(dc_read(d, n - 1, b, 512), 0);
	ck_assert_int_eq(dc_read(d, n, b, 512), DC_E_ILLEGAL_BLOCK);
	free(b);
}

static unsigned sysfs_uint(const char *dev, const char *what)
{
	struct stat st;
	char *path;
	unsigned v = 0;
	FILE *f;

	ck_assert_int_eq(stat(dev, &st), 0);
	path = h_fmt("/sys/dev/block/%u:%u/queue/%s", major(st.st_rdev),
		     minor(st.st_rdev), what);
	f = fopen(path, "r");
	ck_assert_msg(f, "%s: %s", path, strerror(errno));
	ck_assert_int_eq(fscanf(f, "%u", &v), 1);
	fclose(f);
	free(path);
	return v;
}

/* A block device: sizes and FUA from sysfs, as OpenVMM reads them. */
static void hook_loop(dc_disk *d, const struct row *r)
{
	struct dc_info info;

	(void)r;
	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_size, sysfs_uint(cx_loop, "logical_block_size"));
	ck_assert_uint_eq(info.physical_sector_size,
			  sysfs_uint(cx_loop, "physical_block_size"));
	ck_assert_int_eq(!!(info.flags & FUA), !!sysfs_uint(cx_loop, "fua"));
	ck_assert_uint_eq(info.unmap_behavior,
			  sysfs_uint(cx_loop, "discard_granularity") ? UNSPEC : IGN);
}

/* --- The table ------------------------------------------------------------------ */

#include "test-compat-rows.h"

#define NROWS (sizeof(rows) / sizeof(rows[0]))

/* --- Running a row ---------------------------------------------------------------- */

/* "$T/x" -> "<dir>/x", and so on; NULL when a placeholder has no value. */
static char *expand(const char *spec)
{
	static const char *const names[] = { "$T", "$BLOB", "$LOOP" };
	const char *values[] = { cx_dir, cx_blob, cx_loop };
	char *out = strdup(spec);

	ck_assert_ptr_nonnull(out);
	for (size_t i = 0; i < 3; i++) {
		char *at;

		while ((at = strstr(out, names[i]))) {
			char *n;

			if (!values[i]) {
				free(out);
				return NULL;
			}
			n = h_fmt("%.*s%s%s", (int)(at - out), out, values[i],
				  at + strlen(names[i]));
			free(out);
			out = n;
		}
	}
	return out;
}

struct chain {
	char s[256];
};

static int chain_visit(void *arg, int depth, const char *plugin, const char *form,
		       const struct dc_info *info, const char *key, const char *value)
{
	struct chain *c = arg;
	size_t n = strlen(c->s);

	(void)depth;
	(void)form;
	(void)info;
	(void)value;
	if (!key)
		snprintf(c->s + n, sizeof(c->s) - n, "%s%s", n ? " " : "", plugin);
	return 0;
}

/* Why the row cannot run here, or NULL. */
static const char *row_missing(const struct row *r)
{
	static char why[128];
	char *needs, *tok, *save = NULL;

	if (!r->needs)
		return NULL;
	needs = strdup(r->needs);
	ck_assert_ptr_nonnull(needs);
	why[0] = '\0';
	for (tok = strtok_r(needs, ",", &save); tok && !why[0];
	     tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, "blob-server") && !cx_blob)
			snprintf(why, sizeof(why), "python3 is not installed");
		else if (!strcmp(tok, "loop") && !cx_loop)
			snprintf(why, sizeof(why),
				 "no loop device (needs root and losetup)");
		else if (strcmp(tok, "blob-server") && strcmp(tok, "loop") &&
			 !h_have_plugin(tok))
			snprintf(why, sizeof(why), "the %s plugin was not built", tok);
	}
	free(needs);
	return why[0] ? why : NULL;
}

static void row_check_open(const struct row *r, const char *spec, dc_disk *d)
{
	struct dc_info info;
	struct chain c = { "" };

	dc_get_info(d, &info);
	ck_assert_int_eq(dc_describe(d, chain_visit, &c), 0);
	ck_assert_msg(!strcmp(c.s, r->what), "%s %s: chain '%s', expected '%s'", r->id,
		      spec, c.s, r->what);
	ck_assert_msg(
		info.sector_count * info.sector_size == r->bytes &&
			info.sector_size == r->ss && info.physical_sector_size == r->pss,
		"%s %s: %llu x %u bytes (physical %u), expected %llu bytes in %u "
		"(physical %u)",
		r->id, spec, (unsigned long long)info.sector_count, info.sector_size,
		info.physical_sector_size, (unsigned long long)r->bytes, r->ss, r->pss);
	if (r->hook != hook_loop)
		ck_assert_msg((info.flags & FLAGS_CHECKED) == r->flags &&
				      info.unmap_behavior == (uint32_t)r->unmap,
			      "%s %s: flags %#x unmap %u, expected flags %#x unmap %d",
			      r->id, spec, info.flags & FLAGS_CHECKED,
			      info.unmap_behavior, r->flags, r->unmap);
	if (r->hook)
		r->hook(d, r);
}

START_TEST(row)
{
	const struct row *r = &rows[_i];
	const char *why = row_missing(r);
	bool ro = !strncmp(r->open, "ro", 2);
	dc_disk *d = NULL;
	char *spec;
	int rc;

	if (why) {
		fprintf(stderr, "test-compat: row %s skipped: %s\n", r->id, why);
		return;
	}
	/* Each row runs in its own process: the environment is its own. */
	if (strstr(r->open, "cache env") || strstr(r->open, "OPENVMM_AUTO_CACHE_PATH")) {
		unsetenv("DISKCORE_AUTO_CACHE_PATH");
		unsetenv("OPENVMM_AUTO_CACHE_PATH");
	}
	if (strstr(r->open, "OPENVMM_AUTO_CACHE_PATH"))
		setenv("OPENVMM_AUTO_CACHE_PATH", "cache-openvmm", 1);
	spec = expand(r->spec);
	rc = dc_open(spec, ro ? DC_OPEN_READ_ONLY : 0, &d);
	if (r->rc == 0) {
		ck_assert_msg(rc == 0, "%s %s: %d %s", r->id, spec, rc, dc_last_error());
		row_check_open(r, spec, d);
		dc_close(d);
	} else {
		ck_assert_msg(rc == r->rc && !d, "%s %s: got %d (%s), expected %d", r->id,
			      spec, rc, rc ? dc_last_error() : "opened", r->rc);
		ck_assert_msg(strstr(dc_last_error(), r->what),
			      "%s %s: message '%s' lacks '%s'", r->id, spec,
			      dc_last_error(), r->what);
	}
	free(spec);
}
END_TEST

/* --- The document and the table agree ------------------------------------------- */

/* The i-th '|'-separated cell of a table line, trimmed (i from 1). */
static char *cell(const char *line, int i)
{
	const char *p = line, *end;

	for (int k = 0; k < i; k++) {
		p = strchr(p, '|');
		if (!p)
			return NULL;
		p++;
	}
	end = strchr(p, '|');
	if (!end)
		return NULL;
	while (*p == ' ')
		p++;
	while (end > p && end[-1] == ' ')
		end--;
	return strndup(p, (size_t)(end - p));
}

static bool is_row_id(const char *s)
{
	return s && strlen(s) == 3 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= '0' &&
	       s[1] <= '9' && s[2] >= '0' && s[2] <= '9';
}

/* Whether test program NAME has START_TEST(CASE): in tests/test-NAME.c or in
 * one of the tests/NAME-*.c files it is split into. */
static bool program_has_case(const char *src, const char *name, const char *tcase)
{
	char *pattern = h_fmt("%s/tests/%s-*.c", src, name);
	char *want = h_fmt("START_TEST(%s)", tcase);
	bool found = false;
	glob_t g = { 0 };

	if (glob(pattern, 0, NULL, &g) != 0)
		g.gl_pathc = 0;
	/* The split-off files, then the program's own file. */
	for (size_t i = 0; i <= g.gl_pathc && !found; i++) {
		char *path = i < g.gl_pathc ? strdup(g.gl_pathv[i]) :
					      h_fmt("%s/tests/test-%s.c", src, name);
		size_t len;
		char *text = h_read_file(path, &len);

		found = strstr(text, want) != NULL;
		free(text);
		free(path);
	}
	globfree(&g);
	free(pattern);
	free(want);
	return found;
}

/* Every test a row's Tests cell names exists: "NAME" a tests/test-NAME.c or
 * .sh, "NAME:CASE" a START_TEST(CASE) in test program NAME. */
static void check_tests_cell(const char *src, const char *id, const char *cell_text)
{
	char *list = strdup(cell_text), *tok, *save = NULL;

	ck_assert_ptr_nonnull(list);
	for (tok = strtok_r(list, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		char *colon = strchr(tok, ':'), *path;

		if (colon) {
			*colon = '\0';
			ck_assert_msg(program_has_case(src, tok, colon + 1),
				      "row %s: test program %s has no START_TEST(%s)", id,
				      tok, colon + 1);
			continue;
		}
		path = h_fmt("%s/tests/test-%s.c", src, tok);
		if (access(path, F_OK) != 0) {
			free(path);
			path = h_fmt("%s/tests/test-%s.sh", src, tok);
			ck_assert_msg(access(path, F_OK) == 0, "row %s: no test %s", id,
				      tok);
		}
		free(path);
	}
	free(list);
}

START_TEST(doc_agrees)
{
	const char *src = getenv("DISKCORE_SOURCE_ROOT");
	char *path, *text, *line, *save = NULL;
	bool *seen = calloc(NROWS, sizeof(*seen));
	size_t len, ndoc = 0;

	ck_assert_msg(src, "DISKCORE_SOURCE_ROOT is not set (run through meson test)");
	path = h_fmt("%s/docs/openvmm-compat.md", src);
	text = h_read_file(path, &len);
	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *id = line[0] == '|' ? cell(line, 1) : NULL;
		char *spec, *open, *tests, *want;
		size_t i;

		if (!is_row_id(id)) {
			free(id);
			continue;
		}
		spec = cell(line, 2);
		open = cell(line, 3);
		tests = cell(line, 6);
		ck_assert_msg(spec && open && tests, "row %s: not 6 cells", id);
		check_tests_cell(src, id, tests);
		ndoc++;
		for (i = 0; i < NROWS && strcmp(rows[i].id, id); i++)
			;
		ck_assert_msg(i < NROWS, "doc row %s is not in the test", id);
		ck_assert_msg(!seen[i], "doc row %s appears twice", id);
		seen[i] = true;
		want = rows[i].spec[0] ? h_fmt("`%s`", rows[i].spec) : strdup("(empty)");
		ck_assert_msg(!strcmp(spec, want), "row %s: the doc has %s, the test %s",
			      id, spec, want);
		ck_assert_msg(!strcmp(open, rows[i].open),
			      "row %s: the doc opens '%s', the test '%s'", id, open,
			      rows[i].open);
		free(want);
		free(spec);
		free(open);
		free(tests);
		free(id);
	}
	for (size_t i = 0; i < NROWS; i++)
		ck_assert_msg(seen[i], "test row %s is not in %s", rows[i].id, path);
	ck_assert_uint_eq(ndoc, NROWS);
	free(seen);
	free(text);
	free(path);
}
END_TEST

/* --- Fixtures ------------------------------------------------------------------------ */

static void fixed_vhd(const char *path, uint64_t size, bool pattern)
{
	uint8_t *b = h_alloc(size + 512), uid[16];

	if (pattern)
		h_fill(b, size, 0);
	for (int i = 0; i < 16; i++)
		uid[i] = (uint8_t)(0xc0 + i + path[0]);
	h_vhd_footer(b + size, size, 2, uid);
	h_write_file(path, b, size + 512, 0644);
	free(b);
}

static void sparse(const char *path, uint64_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
		perror(path);
		abort();
	}
	close(fd);
}

/* Images only diskcore makes here, made in a child so that no thread of the
 * core exists when Check forks the rows. */
static void fixtures_by_diskcore(void)
{
	static const char *const specs[] = {
		"vhd:dyn.vhd;create=1M",
		"vhdx:disk.vhdx;create=1M",
		"vhdx:d4k.vhdx;create=1M;sector=4096",
		"sql:db.dbhd;create=1M",
		"sqldiff:diff.dbhd;create:file:raw.img",
	};
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
			dc_disk *d = NULL;

			/* A plugin that was not built: its rows skip. */
			if (dc_open(specs[i], 0, &d) == 0)
				dc_close(d);
			else
				fprintf(stderr, "test-compat: %s: %s\n", specs[i],
					dc_last_error());
		}
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		abort();
}

static void loop_stop(void)
{
	if (getpid() == cx_owner && cx_loop)
		h_sh("losetup -d %s", cx_loop);
}

/* badserver.py serves fixed.vhd until our end of its stdin closes (when
 * this process exits, however it exits). It prints its port first. */
static void blob_server_start(void)
{
	const char *src = getenv("DISKCORE_SOURCE_ROOT");
	char *script, *argv[4], line[32] = "";
	posix_spawn_file_actions_t fa;
	int in[2], out[2], port = 0;
	size_t got = 0;
	pid_t pid;

	if (!src || !h_have_program("python3"))
		return;
	script = h_fmt("%s/tests/blob/badserver.py", src);
	argv[0] = "python3";
	argv[1] = script;
	argv[2] = "fixed.vhd";
	argv[3] = NULL;
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 ||
	    posix_spawn_file_actions_init(&fa) ||
	    posix_spawn_file_actions_adddup2(&fa, in[0], 0) ||
	    posix_spawn_file_actions_adddup2(&fa, out[1], 1) ||
	    posix_spawnp(&pid, "python3", &fa, NULL, argv, environ))
		abort();
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	while (got < sizeof(line) - 1 && !strchr(line, '\n')) {
		ssize_t n = read(out[0], line + got, sizeof(line) - 1 - got);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(out[0]);
	if (sscanf(line, "%d", &port) != 1) {
		fprintf(stderr, "test-compat: badserver.py did not start: '%s'\n", line);
		abort();
	}
	cx_blob = h_fmt("http://127.0.0.1:%d", port);
	free(script);
}

static void loop_start(void)
{
	char buf[64] = "";
	FILE *p;

	if (geteuid() != 0 || !h_have_program("losetup"))
		return;
	sparse("loop.img", MIB);
	p = popen("losetup -f --show loop.img 2>/dev/null", "r");
	if (p && fgets(buf, sizeof(buf), p) && buf[0] == '/') {
		buf[strcspn(buf, "\n")] = '\0';
		cx_loop = strdup(buf);
	}
	if (p)
		pclose(p);
}

static void fixtures(void)
{
	uint8_t key[64], *mark = h_alloc(512);
	char *cache;
	int fd;

	cx_dir = h_fmt("%s/compat", h_tmpdir());
	if (mkdir(cx_dir, 0755) < 0 || chdir(cx_dir) < 0 || mkdir("disks", 0755) < 0 ||
	    mkdir("cache", 0755) < 0 || mkdir("cache-openvmm", 0755) < 0)
		abort();
	sparse("raw.img", MIB);
	h_fill(mark, 512, RAW_MARK_SECTOR);
	fd = open("raw.img", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || pwrite(fd, mark, 512, RAW_MARK_SECTOR * 512) != 512)
		abort();
	close(fd);
	free(mark);
	sparse("disks/base.img", MIB);
	sparse("a:b.img", MIB);
	sparse("plain", MIB);
	sparse("cd.iso", MIB);
	sparse("s1.img", MIB);
	sparse("s2.img", MIB);
	sparse("bad.vmgs", 4 * MIB);
	fixed_vhd("fixed.vhd", MIB, true);
	fixed_vhd("FIXED.VHD", MIB, true);
	fixed_vhd("guest.vmgs", 4 * MIB, false);
	fixed_vhd("g1.vmgs", 4 * MIB, false);
	fixed_vhd("g2.vmgs", 4 * MIB, false);
	for (int i = 0; i < 64; i++)
		key[i] = (uint8_t)(i * 7 + 1);
	h_write_file("k64.bin", key, 64, 0600);
	h_write_file("k32.bin", key, 32, 0600);
	cache = h_fmt("%s/cache", cx_dir);
	setenv("DISKCORE_AUTO_CACHE_PATH", cache, 1);
	free(cache);
	fixtures_by_diskcore();
	blob_server_start();
	cx_owner = getpid();
	atexit(loop_stop);
	loop_start();
}

int main(void)
{
	Suite *s = suite_create("compat");
	TCase *tc = tcase_create("rows");

	if (!getenv("DISKCORE_SOURCE_ROOT") || !getenv("DISKCORE_PLUGIN_PATH"))
		h_skip("DISKCORE_SOURCE_ROOT or DISKCORE_PLUGIN_PATH is not set (run "
		       "through meson test)");
	fixtures();
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, doc_agrees);
	tcase_add_loop_test(tc, row, 0, (int)NROWS);
	suite_add_tcase(s, tc);
	return h_run(s);
}
