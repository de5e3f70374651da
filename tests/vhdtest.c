/* SPDX-License-Identifier: MIT */
/* Helpers shared by the vhd and vhdx tests (see vhdtest.h). */
#include "vhdtest.h"

#include <diskcore/plugin.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void vt_create(const char *form, const char *path, const char *fmt, ...)
{
	va_list ap;
	char *opts;

	va_start(ap, fmt);
	if (vasprintf(&opts, fmt, ap) < 0)
		abort();
	va_end(ap);
	dc_close(h_openf(0, "%s:%s;%s", form, path, opts));
	free(opts);
}

void vt_write(dc_disk *d, uint64_t sector, uint64_t count, uint64_t seed)
{
	size_t len = (size_t)count * dc_sector_size(d);
	void *buf = h_alloc(len);

	h_fill(buf, len, seed);
	ck_assert_int_eq(dc_write(d, sector, buf, len, 0), 0);
	free(buf);
}

void vt_check(dc_disk *d, const uint8_t *model, uint64_t sector, uint64_t count)
{
	uint32_t ss = dc_sector_size(d);
	size_t len = (size_t)count * ss;
	uint8_t *buf = h_alloc(len);

	ck_assert_int_eq(dc_read(d, sector, buf, len), 0);
	/* Sector by sector only to say which one differs. */
	if (memcmp(buf, model + sector * ss, len) != 0)
		for (size_t i = 0; i < len; i += ss)
			ck_assert_msg(memcmp(buf + i, model + sector * ss + i, ss) == 0,
				      "sector %llu differs from the model",
				      (unsigned long long)(sector + i / ss));
	free(buf);
}

void vt_put(dc_disk *d, uint8_t *model, uint64_t sector, uint64_t count, uint64_t seed)
{
	vt_write(d, sector, count, seed);
	h_fill(model + sector * dc_sector_size(d), (size_t)count * dc_sector_size(d),
	       seed);
}

struct vt_writer {
	dc_disk *d;
	uint64_t stride, count;
	bool flush;
	int id;
};

static void *vt_writer(void *arg)
{
	struct vt_writer *t = arg;
	size_t len = (size_t)t->count * 512;
	uint8_t *buf = h_alloc(len);
	void *ret = NULL;

	for (int i = 0; i < 64 && !ret; i++) {
		uint64_t sector = (uint64_t)i * t->stride + (uint64_t)t->id * t->count;

		h_fill(buf, len, sector);
		if (dc_write(t->d, sector, buf, len, 0) != 0)
			ret = (void *)1;
		else if (t->flush && i % 16 == 15 && dc_flush(t->d) != 0)
			ret = (void *)1;
	}
	free(buf);
	return ret;
}

/* A new image at a temporary path (*path), made by form's plugin with opts:
 * its spec "FORM:PATH". */
static char *vt_new(const char *form, const char *opts, char **path)
{
	*path = h_tmppath(strcmp(form, "vhdx") ? ".vhd" : ".vhdx");
	vt_create(form, *path, "%s", opts);
	return h_fmt("%s:%s", form, *path);
}

/* Start n writers (threads th, state t): writer id on d[id % nd], flushing
 * when bit id of flush is set. */
static void vt_start_writers(struct vt_writer *t, pthread_t *th, int n, dc_disk **d,
			     int nd, uint64_t stride, uint64_t count, unsigned flush)
{
	for (int i = 0; i < n; i++) {
		t[i] = (struct vt_writer){ d[i % nd], stride, count, flush >> i & 1, i };
		ck_assert_int_eq(pthread_create(&th[i], NULL, vt_writer, &t[i]), 0);
	}
}

/* Wait for n writers; each must have succeeded. done (if not NULL) counts
 * them as they finish. */
static void vt_join_writers(pthread_t *th, int n, int *done)
{
	for (int i = 0; i < n; i++) {
		void *r;

		pthread_join(th[i], &r);
		ck_assert_ptr_null(r);
		if (done)
			__atomic_add_fetch(done, 1, __ATOMIC_RELEASE);
	}
}

/* The writes of eight writers read back, writer id's through d[(id + 1) % nd]
 * (with two handles: each reads what the other wrote). */
static void vt_check_writers(dc_disk **d, int nd, uint64_t stride, uint64_t count)
{
	size_t len = (size_t)count * 512;
	uint8_t *buf = h_alloc(len);

	for (int i = 0; i < 64; i++)
		for (int id = 0; id < 8; id++) {
			uint64_t sector = (uint64_t)i * stride + (uint64_t)id * count;

			ck_assert_int_eq(dc_read(d[(id + 1) % nd], sector, buf, len), 0);
			ck_assert_int_lt(h_check(buf, len, sector), 0);
		}
	free(buf);
}

void vt_concurrent_writes(const char *form, const char *opts, uint64_t stride,
			  uint64_t count, bool flush, uint32_t open_flags)
{
	char *path, *spec = vt_new(form, opts, &path);
	dc_disk *d = h_open(spec, 0);
	struct vt_writer t[8];
	pthread_t th[8];

	vt_start_writers(t, th, 8, &d, 1, stride, count, flush ? 0xff : 0);
	vt_join_writers(th, 8, NULL);
	dc_close(d);
	d = h_open(spec, open_flags);
	vt_check_writers(&d, 1, stride, count);
	dc_close(d);
	free(spec);
	free(path);
}

struct vt_map_walk {
	uint64_t next;	/* where the next extent must start */
	uint64_t start; /* checked range: data in layer 0 */
	uint64_t len;
	bool covered;
};

static int vt_map_fn(void *arg, const struct dc_extent *e)
{
	struct vt_map_walk *w = arg;

	ck_assert_uint_eq(e->offset, w->next);
	ck_assert_uint_gt(e->length, 0);
	w->next += e->length;
	if (e->offset <= w->start && w->start + w->len <= e->offset + e->length)
		w->covered = e->flags == 0 && e->layer == 0;
	return 0;
}

struct vt_mapper {
	dc_disk *d;
	int *done; /* writers finished */
	unsigned maps;
};

/* Map the whole disk, again and again, until the writers are done. */
static void *vt_mapper(void *arg)
{
	struct vt_mapper *m = arg;
	uint64_t size = dc_sector_count(m->d) * 512;

	while (__atomic_load_n(m->done, __ATOMIC_ACQUIRE) < 4 || m->maps == 0) {
		struct vt_map_walk w = { 0 };

		if (dc_map(m->d, 0, size, vt_map_fn, &w) != 0 || w.next != size)
			return (void *)1;
		m->maps++;
	}
	return NULL;
}

void vt_map_during_writes(const char *form, const char *base_opts, uint64_t stride,
			  uint64_t count)
{
	char *base, *child, *spec = vt_new(form, base_opts, &base);
	struct vt_writer t[4];
	struct vt_mapper m;
	pthread_t th[4], mt;
	dc_disk *d;
	int done = 0;
	void *r;

	free(spec);
	spec = h_fmt("parent=%s", base);
	free(vt_new(form, spec, &child));
	free(spec);
	spec = h_fmt("%s:%s", form, child);
	d = h_open(spec, 0);
	m = (struct vt_mapper){ d, &done, 0 };
	ck_assert_int_eq(pthread_create(&mt, NULL, vt_mapper, &m), 0);
	vt_start_writers(t, th, 4, &d, 1, stride, count, 1);
	vt_join_writers(th, 4, &done);
	pthread_join(mt, &r);
	ck_assert_ptr_null(r);
	ck_assert_uint_gt(m.maps, 0);
	for (int i = 0; i < 64; i++)
		for (int id = 0; id < 4; id++) {
			struct vt_map_walk w = { .start = (i * stride + id * count) * 512,
						 .len = count * 512 };

			ck_assert_int_eq(
				dc_map(d, 0, dc_sector_count(d) * 512, vt_map_fn, &w), 0);
			ck_assert_msg(w.covered,
				      "write at sector %llu is not data of layer 0",
				      (unsigned long long)(w.start / 512));
		}
	dc_close(d);
	free(spec);
	free(child);
	free(base);
}

/* Another process opening spec writable is refused by the image's flock. */
static void vt_other_process_refused(const char *spec)
{
	const char *root = getenv("DISKCORE_BUILD_ROOT");
	char *out = h_tmppath(".out");

	ck_assert_ptr_nonnull(root);
	ck_assert_int_eq(h_sh("! %s/tools/diskctl info --rw '%s' >%s 2>&1 && "
			      "grep -q 'in use' %s; rc=$?; cat %s; exit $rc",
			      root, spec, out, out, out),
			 0);
	unlink(out);
	free(out);
}

/* qemu-img reads the image as a fresh open of spec does, byte for byte. */
static void vt_qemu_same(const char *spec, const char *path, const char *qemu_fmt)
{
	char *raw = h_tmppath(".raw");
	dc_disk *d = h_open(spec, DC_OPEN_READ_ONLY);
	uint64_t len = dc_sector_count(d) * 512;
	uint8_t *buf = h_alloc(len), *q;
	size_t qlen;

	if (!strcmp(qemu_fmt, "vhdx"))
		ck_assert_int_eq(h_sh("qemu-img check -q -f vhdx '%s'", path), 0);
	ck_assert_int_eq(
		h_sh("qemu-img convert -f %s -O raw '%s' '%s'", qemu_fmt, path, raw), 0);
	ck_assert_int_eq(dc_read(d, 0, buf, len), 0);
	q = h_read_file(raw, &qlen);
	ck_assert_uint_eq(qlen, len);
	ck_assert_msg(memcmp(q, buf, len) == 0, "qemu-img reads other bytes");
	dc_close(d);
	unlink(raw);
	free(q);
	free(buf);
	free(raw);
}

void vt_two_opens(const char *form, const char *opts, const char *qemu_fmt,
		  uint64_t stride, uint64_t count)
{
	char *path, *spec = vt_new(form, opts, &path);
	size_t len = (size_t)count * 512;
	uint8_t *buf = h_alloc(len);
	dc_disk *d[2] = { h_open(spec, 0), h_open(spec, 0) }, *r;
	struct vt_writer t[8];
	pthread_t th[8];

	vt_start_writers(t, th, 8, d, 2, stride, count, 0x88);
	h_open_fails(DC_OPEN_READ_ONLY, -EBUSY, "open writable in this process", "%s",
		     spec);
	vt_other_process_refused(spec);
	vt_join_writers(th, 8, NULL);
	vt_check_writers(d, 2, stride, count);
	/* The first close leaves the second handle working. */
	dc_close(d[0]);
	vt_write(d[1], 64 * stride, count, 64 * stride);
	dc_close(d[1]);
	vt_qemu_same(spec, path, qemu_fmt);
	r = h_open(spec, DC_OPEN_READ_ONLY);
	ck_assert_int_eq(dc_read(r, 64 * stride, buf, len), 0);
	ck_assert_int_lt(h_check(buf, len, 64 * stride), 0);
	h_open_fails(0, -EBUSY, "open read-only in this process", "%s", spec);
	dc_close(h_open(spec, DC_OPEN_READ_ONLY));
	dc_close(r);
	free(buf);
	free(spec);
	free(path);
}

static int vt_describe_visit(void *arg, int depth, const char *plugin, const char *form,
			     const struct dc_info *info, const char *key,
			     const char *value)
{
	char **out = arg, *n;

	(void)depth;
	(void)form;
	(void)info;
	n = key ? h_fmt("%s%s=%s\n", *out ? *out : "", key, value) :
		  h_fmt("%splugin=%s\n", *out ? *out : "", plugin);
	free(*out);
	*out = n;
	return 0;
}

char *vt_describe(dc_disk *d)
{
	char *out = NULL;

	dc_describe(d, vt_describe_visit, &out);
	return out ? out : strdup("");
}

void vt_has(const char *text, const char *needle)
{
	ck_assert_msg(strstr(text, needle), "'%s' not in:\n%s", needle, text);
}

void vt_direct_open(struct h_direct *t, const char *form, const char *path, bool ro)
{
	h_direct_open(t, form, path, ro);
	ck_assert_int_eq(t->p->kind, DC_KIND_LAYER);
}

int vt_direct_io(struct h_direct *t, uint32_t op, uint32_t flags, uint64_t sector,
		 void *buf, size_t len, uint64_t *bits)
{
	bool unmap = op == DC_OP_UNMAP;
	struct iovec iov = { buf, unmap ? 0 : len };
	struct dc_marker mk = { bits, 0, sector, len / 512 };
	struct dc_req req = {
		.op = op,
		.flags = flags,
		.sector = sector,
		.count = unmap ? len : len / 512,
		.buf = { .iov = &iov, .iovcnt = 1, .len = unmap ? 0 : len },
		.marker = bits ? &mk : NULL,
	};

	return t->p->io(t->inst, &req);
}

unsigned vt_marked(const uint64_t *bits, unsigned from, unsigned to)
{
	unsigned n = 0;

	for (unsigned i = from; i < to; i++)
		n += bits[i / 64] >> (i % 64) & 1;
	return n;
}

/* The seeds of vt_qemu_grown() in d. */
static void vt_grown_reads(dc_disk *d, uint64_t at, uint64_t s1, uint64_t s2)
{
	uint8_t buf[4096];

	ck_assert_int_eq(dc_read(d, 100, buf, sizeof(buf)), 0);
	ck_assert_int_lt(h_check(buf, sizeof(buf), s1), 0);
	ck_assert_int_eq(dc_read(d, at, buf, sizeof(buf)), 0);
	ck_assert_int_lt(h_check(buf, sizeof(buf), s2), 0);
}

void vt_qemu_grown(const char *form, const char *path, const char *qemu_fmt,
		   const char *qsize, uint64_t sectors, uint64_t at, uint64_t s1,
		   uint64_t s2)
{
	dc_disk *d;

	ck_assert_int_eq(h_sh("qemu-img info -f %s '%s' | grep -q '^virtual size: %s'",
			      qemu_fmt, path, qsize),
			 0);
	ck_assert_int_eq(h_sh("qemu-img convert -f %s -O raw '%s' '%s.raw'", qemu_fmt,
			      path, path),
			 0);
	d = h_openf(DC_OPEN_READ_ONLY, "file:%s.raw", path);
	vt_grown_reads(d, at, s1, s2);
	dc_close(d);
	d = h_openf(DC_OPEN_READ_ONLY, "%s:%s", form, path);
	ck_assert_uint_eq(dc_sector_count(d), sectors);
	vt_grown_reads(d, at, s1, s2);
	dc_close(d);
}
