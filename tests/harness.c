/* SPDX-License-Identifier: MIT */
#include "harness.h"

#include <diskcore/plugin.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
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

uint64_t h_mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint8_t harness_byte(uint64_t seed, size_t i)
{
	return (uint8_t)(h_mix64(seed * 0x100000001b3ull + i / 8) >> (8 * (i % 8)));
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

void h_write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || write(fd, data, len) != (ssize_t)len || fchmod(fd, mode) < 0 ||
	    close(fd) < 0) {
		fprintf(stderr, "harness: write %s: %s\n", path, strerror(errno));
		abort();
	}
}

char *h_tmpfile_data(const void *data, size_t len, mode_t mode, const char *suffix)
{
	char *path = h_tmppath(suffix);

	h_write_file(path, data, len, mode);
	return path;
}

void *h_read_file(const char *path, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	void *buf;

	ck_assert_msg(fd >= 0 && fstat(fd, &st) == 0, "open %s: %s", path,
		      strerror(errno));
	buf = h_alloc((size_t)st.st_size + 1);
	ck_assert_msg(read(fd, buf, (size_t)st.st_size) == st.st_size, "read %s", path);
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

void h_pread_file(const char *path, off_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
	ck_assert_msg(pread(fd, buf, len, off) == (ssize_t)len, "pread %s: %zu at %lld",
		      path, len, (long long)off);
	close(fd);
}

void h_pwrite_file(const char *path, off_t off, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
	ck_assert_msg(pwrite(fd, buf, len, off) == (ssize_t)len, "pwrite %s: %zu at %lld",
		      path, len, (long long)off);
	close(fd);
}

bool h_have_program(const char *prog)
{
	char *cmd = h_fmt("command -v '%s' >/dev/null 2>&1", prog);
	int rc = system(cmd);

	free(cmd);
	return rc == 0;
}

int h_sh(const char *fmt, ...)
{
	char *cmd, *full, *log = h_tmppath(".log");
	va_list ap;
	int rc;

	va_start(ap, fmt);
	if (vasprintf(&cmd, fmt, ap) < 0)
		abort();
	va_end(ap);
	full = h_fmt("(%s) >%s 2>&1", cmd, log);
	rc = system(full);
	if (rc != 0) {
		char *show = h_fmt("cat %s >&2", log);

		fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
		if (system(show) != 0)
			fprintf(stderr, "(no output)\n");
		free(show);
	}
	unlink(log);
	free(log);
	free(full);
	free(cmd);
	return rc;
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

uint64_t h_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

uint64_t h_now_ms(void)
{
	return h_now_ns() / 1000000;
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
	ck_assert_msg(!d, "dc_open(%s) = %d but set the disk", spec, r);
	ck_assert_msg(strstr(dc_last_error(), needle),
		      "dc_open(%s): message '%s' lacks '%s'", spec, dc_last_error(),
		      needle);
	free(spec);
}

/* NAME.so in the first directory on $DISKCORE_PLUGIN_PATH that has it
 * (malloc'd), or NULL. */
static char *harness_plugin_file(const char *name)
{
	const char *env = getenv("DISKCORE_PLUGIN_PATH");
	char *dirs = strdup(env ? env : ""), *save = NULL, *found = NULL;

	for (char *dir = strtok_r(dirs, ":", &save); dir && !found;
	     dir = strtok_r(NULL, ":", &save)) {
		char *file = h_fmt("%s/%s.so", dir, name);

		if (access(file, R_OK) == 0)
			found = file;
		else
			free(file);
	}
	free(dirs);
	return found;
}

bool h_have_plugin(const char *name)
{
	char *file = harness_plugin_file(name);

	free(file);
	return file != NULL;
}

const struct dc_plugin *h_plugin_open(const char *name, void **so)
{
	char *file = harness_plugin_file(name);
	const struct dc_plugin *(*entry)(struct dc_plugin_abi *);
	struct dc_plugin_abi abi;
	const struct dc_plugin *p;

	*so = file ? dlopen(file, RTLD_NOW | RTLD_LOCAL) : NULL;
	free(file);
	ck_assert_msg(*so, "%s.so not found on DISKCORE_PLUGIN_PATH", name);
	*(void **)&entry = dlsym(*so, DC_PLUGIN_ENTRY_NAME);
	ck_assert_ptr_nonnull(entry);
	p = entry(&abi);
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

struct harness_desc_ctx {
	struct h_desc *t;
	const char *plugin;
	bool overflow;
};

static int harness_desc_visit(void *arg, int depth, const char *plugin, const char *form,
			      const struct dc_info *info, const char *key,
			      const char *value)
{
	struct harness_desc_ctx *c = arg;
	struct h_desc *t = c->t;

	(void)depth;
	(void)form;
	(void)info;
	if (c->plugin && (!plugin || strcmp(plugin, c->plugin)))
		return 0;
	t->seen = true;
	if (!key)
		return 0;
	if (t->n == H_DESC_MAX) {
		c->overflow = true;
		return 0;
	}
	snprintf(t->keys[t->n], sizeof(t->keys[0]), "%s", key);
	snprintf(t->values[t->n], sizeof(t->values[0]), "%s", value ? value : "");
	t->n++;
	return 0;
}

void h_describe(dc_disk *d, const char *plugin, struct h_desc *t)
{
	struct harness_desc_ctx c = { .t = t, .plugin = plugin };

	memset(t, 0, sizeof(*t));
	ck_assert_int_eq(dc_describe(d, harness_desc_visit, &c), 0);
	ck_assert_msg(!c.overflow, "describe reports more than %d pairs for %s",
		      H_DESC_MAX, plugin ? plugin : "the chain");
}

const char *h_desc_get(const struct h_desc *t, const char *key)
{
	for (int i = 0; i < t->n; i++)
		if (!strcmp(t->keys[i], key))
			return t->values[i];
	return NULL;
}

uint64_t h_desc_num(dc_disk *d, const char *plugin, const char *key)
{
	struct h_desc t;
	const char *v;

	h_describe(d, plugin, &t);
	v = h_desc_get(&t, key);
	ck_assert_msg(v, "describe() of %s has no '%s'", plugin, key);
	return strtoull(v, NULL, 10);
}

int h_reap(dc_queue *q, struct dc_completion *out, int max, int timeout_ms)
{
	uint64_t deadline = h_now_ms() + (uint64_t)timeout_ms;
	int n;

	/* dc_queue_reap() clears the eventfd before it looks, so a completion
	 * posted after an empty reap leaves the fd readable. */
	while ((n = dc_queue_reap(q, out, max)) == 0) {
		struct pollfd pfd = { .fd = dc_queue_fd(q), .events = POLLIN };
		uint64_t now = h_now_ms();

		ck_assert_msg(now < deadline, "no completion within %d ms (%u in flight)",
			      timeout_ms, dc_queue_inflight(q));
		ck_assert_int_ge(poll(&pfd, 1, (int)(deadline - now)), 0);
	}
	ck_assert_int_gt(n, 0);
	return n;
}

void h_cond_wait_count(pthread_mutex_t *lock, pthread_cond_t *cond,
		       const unsigned *counter, unsigned n, unsigned timeout_ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	while (*counter < n)
		ck_assert_msg(pthread_cond_timedwait(cond, lock, &ts) != ETIMEDOUT,
			      "%u of %u events within %u ms", *counter, n, timeout_ms);
}

void h_count_cb(const struct dc_completion *c)
{
	struct h_count *k = c->user_data;
	uint64_t now = h_now_ns();

	pthread_mutex_lock(&k->lock);
	if (c->result && !k->failed++)
		k->first_err = c->result;
	if (now > k->last_ns)
		k->last_ns = now;
	k->done++;
	pthread_cond_broadcast(&k->cond);
	pthread_mutex_unlock(&k->lock);
}

void h_count_wait(struct h_count *k, unsigned n, unsigned timeout_ms)
{
	pthread_mutex_lock(&k->lock);
	h_cond_wait_count(&k->lock, &k->cond, &k->done, n, timeout_ms);
	pthread_mutex_unlock(&k->lock);
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

void h_vhd_footer(uint8_t f[512], uint64_t size, uint32_t type, const uint8_t uid[16])
{
	memset(f, 0, 512);
	memcpy(f, "conectix", 8);
	h_put_be32(f + 8, 2);		/* features: reserved bit set */
	h_put_be32(f + 12, 0x00010000); /* format version 1.0 */
	h_put_be64(f + 16, UINT64_MAX); /* data offset: none for a fixed disk */
	h_put_be64(f + 40, size);	/* original size */
	h_put_be64(f + 48, size);	/* current size */
	h_put_be32(f + 60, type);
	memcpy(f + 68, uid, 16);
	h_put_be32(f + 64, h_vhd_checksum(f, 512, 64));
}
