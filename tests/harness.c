/* SPDX-License-Identifier: MIT */
#include "harness.h"

#include <diskcore/plugin.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char harness_dir[256];
static pid_t harness_owner;
static unsigned harness_serial;

static int harness_rm_one(const char *path, const struct stat *st, int type,
			  struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	remove(path);
	return 0;
}

/* Only the process that made the directory removes it: Check forks a child per
 * test case, and the children's exit handlers must not delete the parent's files. */
static void harness_cleanup(void)
{
	if (harness_dir[0] && getpid() == harness_owner)
		nftw(harness_dir, harness_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *h_tmpdir(void)
{
	const char *base;

	if (harness_dir[0])
		return harness_dir;
	base = getenv("TMPDIR");
	if (!base || !*base)
		base = "/tmp";
	snprintf(harness_dir, sizeof(harness_dir), "%s/diskcore-test-XXXXXX", base);
	if (!mkdtemp(harness_dir)) {
		fprintf(stderr, "harness: mkdtemp in %s: %s\n", base, strerror(errno));
		abort();
	}
	harness_owner = getpid();
	atexit(harness_cleanup);
	return harness_dir;
}

char *h_tmppath(const char *suffix)
{
	char *path;

	/* The pid keeps names unique across forked test cases. */
	if (asprintf(&path, "%s/t%d-%u%s", h_tmpdir(), (int)getpid(), harness_serial++,
		     suffix ? suffix : "") < 0)
		abort();
	return path;
}

char *h_tmpfile(uint64_t size, const char *suffix)
{
	char *path = h_tmppath(suffix);
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
		fprintf(stderr, "harness: create %s: %s\n", path, strerror(errno));
		abort();
	}
	close(fd);
	return path;
}

char *h_tmpsubdir(void)
{
	char *path = h_tmppath(".d");

	if (mkdir(path, 0700) < 0) {
		fprintf(stderr, "harness: mkdir %s: %s\n", path, strerror(errno));
		abort();
	}
	return path;
}

static uint64_t harness_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint8_t harness_byte(uint64_t seed, size_t i)
{
	return (uint8_t)(harness_mix(seed * 0x100000001b3ull + i / 8) >> (8 * (i % 8)));
}

void h_fill(void *buf, size_t len, uint64_t seed)
{
	uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		p[i] = harness_byte(seed, i);
}

long h_check(const void *buf, size_t len, uint64_t seed)
{
	const uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i] != harness_byte(seed, i))
			return (long)i;
	return -1;
}

long h_check_zero(const void *buf, size_t len)
{
	const uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i])
			return (long)i;
	return -1;
}

void *h_alloc(size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, 4096, len ? len : 1))
		abort();
	memset(p, 0, len);
	return p;
}

void h_skip(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "SKIP: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(H_SKIP);
}

int h_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	/* Made here, before the forks, so the parent owns and removes it. */
	h_tmpdir();
	srunner_run_all(sr, CK_ENV); /* CK_VERBOSITY=verbose lists every case */
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

void h_plugin_path_add(const char *subdir)
{
	const char *root = getenv("DISKCORE_BUILD_ROOT");
	const char *old = getenv("DISKCORE_PLUGIN_PATH");
	char *path;

	if (!root)
		h_skip("DISKCORE_BUILD_ROOT is not set (run through meson test)");
	if (asprintf(&path, "%s/%s%s%s", root, subdir, old && *old ? ":" : "",
		     old ? old : "") < 0)
		abort();
	setenv("DISKCORE_PLUGIN_PATH", path, 1);
	free(path);
}

uint64_t h_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

char *h_fmt(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	return s;
}

dc_disk *h_open(const char *spec, uint32_t flags)
{
	dc_disk *d = NULL;
	int rc = dc_open(spec, flags, &d);

	ck_assert_msg(rc == 0, "dc_open(%s): %d %s", spec, rc, dc_last_error());
	return d;
}

dc_disk *h_openf(uint32_t flags, const char *fmt, ...)
{
	va_list ap;
	char *spec;
	dc_disk *d;

	va_start(ap, fmt);
	if (vasprintf(&spec, fmt, ap) < 0)
		abort();
	va_end(ap);
	d = h_open(spec, flags);
	free(spec);
	return d;
}

void h_open_fails(uint32_t flags, int rc, const char *needle, const char *fmt, ...)
{
	dc_disk *d = NULL;
	va_list ap;
	char *spec;
	int r;

	va_start(ap, fmt);
	if (vasprintf(&spec, fmt, ap) < 0)
		abort();
	va_end(ap);
	r = dc_open(spec, flags, &d);
	if (rc)
		ck_assert_msg(r == rc, "dc_open(%s) = %d (%s), expected %d", spec, r,
			      dc_last_error(), rc);
	else
		ck_assert_msg(r < 0,
			      "dc_open(%s) succeeded; expected a failure about '%s'",
			      spec, needle);
	ck_assert_msg(strstr(dc_last_error(), needle),
		      "dc_open(%s): message '%s' lacks '%s'", spec, dc_last_error(),
		      needle);
	free(spec);
}

const struct dc_plugin *h_plugin_open(const char *name, void **so)
{
	const char *env = getenv("DISKCORE_PLUGIN_PATH");
	char *dirs = strdup(env ? env : ""), *save = NULL;
	const struct dc_plugin *(*entry)(void);
	const struct dc_plugin *p;

	*so = NULL;
	for (char *dir = strtok_r(dirs, ":", &save); dir && !*so;
	     dir = strtok_r(NULL, ":", &save)) {
		char *file = h_fmt("%s/%s.so", dir, name);

		if (access(file, R_OK) == 0)
			*so = dlopen(file, RTLD_NOW | RTLD_LOCAL);
		free(file);
	}
	free(dirs);
	ck_assert_msg(*so, "%s.so not found on DISKCORE_PLUGIN_PATH", name);
	*(void **)&entry = dlsym(*so, DC_PLUGIN_ENTRY_NAME);
	ck_assert_ptr_nonnull(entry);
	p = entry();
	ck_assert_ptr_nonnull(p);
	return p;
}

void h_direct_open(struct h_direct *t, const char *name, const char *arg, bool ro)
{
	const char *fields[1] = { arg };
	struct dc_open_args a = {
		.struct_size = sizeof(a),
		.form = name,
		.fields = fields,
		.nfields = 1,
		.read_only = ro,
	};

	t->p = h_plugin_open(name, &t->so);
	ck_assert_int_eq(t->p->open(&a, &t->inst, &t->info), 0);
}

void h_direct_close(struct h_direct *t)
{
	t->p->close(t->inst);
	dlclose(t->so);
}

uint32_t h_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint64_t h_get_be64(const uint8_t *p)
{
	return (uint64_t)h_get_be32(p) << 32 | h_get_be32(p + 4);
}

void h_put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

void h_put_be64(uint8_t *p, uint64_t v)
{
	h_put_be32(p, (uint32_t)(v >> 32));
	h_put_be32(p + 4, (uint32_t)v);
}

uint32_t h_vhd_checksum(const uint8_t *b, size_t len, size_t skip)
{
	uint32_t s = 0;

	for (size_t i = 0; i < len; i++)
		if (i < skip || i >= skip + 4)
			s += b[i];
	return ~s;
}
