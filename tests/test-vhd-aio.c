/* SPDX-License-Identifier: MIT */
/* vhd: on the file engine (plugins/vhd/vhd_aio.c). Reads of present sectors
 * and writes whose bitmap bits are set go to the engine from the queue's
 * thread, through a map read without the lock, while allocations and bitmap
 * updates run on the worker pool; these tests make the two meet.
 *
 *  - A writer allocates every block of an image whose free space holds junk
 *    (blocks a crash left out of the BAT), then overwrites what it wrote and
 *    fills a second slot of each block, while two readers on queues of their own read
 *    everywhere (4 KiB, and every 4th read across three blocks): each sector must read as
 *    before the write (zeroes, or the parent's stamp) or as a write made it, never junk
 *    or a stale sector. On a dynamic image and on a differencing child of a stamped
 *    parent (partial bitmaps). Then everything again after a reopen.
 *  - A write on the engine into a block allocated since the last flush,
 *    then a flush and a crash (the process exits without closing): both
 *    writes survive.
 *  - describe() says which engine vhd: and vhd1: use.
 * The same tests run with DISKCORE_IO_ENGINE=pool (vhd-aio-pool). */
#include "harness.h"
#include "iodrive.h"
#include "vhdtest.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define VR_SIZE (16u << 20) /* VR_OPTS */
#define VR_BLOCK 65536u	    /* VR_OPTS */
#define VR_SPB (VR_BLOCK / 512)
#define VR_NBLOCKS (VR_SIZE / VR_BLOCK)
#define VR_SLOT 8		       /* sectors a write moves, and most reads */
#define VR_LONG (2 * VR_SPB + VR_SLOT) /* every 4th read: across 3 blocks */
#define VR_LONG_BLOCKS 3
#define VR_WRITER_TID 1	  /* the stamp of the writer's data */
#define VR_PARENT_TID 99  /* the stamp the parent holds everywhere */
#define VR_JUNK_TID 77	  /* what the crashed open left in the free space */
#define VR_STALL_MS 60000 /* no completion for this long fails the run */

/* Block b's two slots (sector offsets inside the block). */
static uint64_t vr_slot(uint32_t b, int which)
{
	uint32_t o = (b * 5u) % (VR_SPB / VR_SLOT) * VR_SLOT;

	return (uint64_t)b * VR_SPB + (which ? (o + VR_SPB / 2) % VR_SPB : o);
}

/* A sector reads as before any write, or as one of the writer's writes. */
static bool vr_sector_ok(const uint8_t *p, uint64_t sector, bool diff, char *why,
			 size_t len)
{
	if (diff ? iod_check(p, 512, sector, VR_PARENT_TID, 1, why, len) :
		   h_check_zero(p, 512) < 0)
		return true;
	for (uint32_t gen = 1; gen <= 2; gen++)
		if (iod_check(p, 512, sector, VR_WRITER_TID, gen, why, len))
			return true;
	return false;
}

/* Per slot: odd while a write of it is in flight, bumped at its submission
 * and completion. A read that overlapped a write of its slot may hold a mix
 * of both (the page cache copies without the writer's lock): its sectors of
 * that slot are not checked. */
static unsigned vr_seq[VR_NBLOCKS][2];

/* Which slot of its block sector lies in (0, 1), or -1 for none. */
static int vr_which(uint64_t sector)
{
	uint32_t b = (uint32_t)(sector / VR_SPB);

	for (int which = 0; which < 2; which++)
		if (sector - vr_slot(b, which) < VR_SLOT)
			return which;
	return -1;
}

struct vr_req {
	struct iovec iov;
	uint8_t *buf;
	uint64_t sector;
	uint32_t count;
	/* A read: vr_seq of the slots of the blocks it covers when it was
	 * submitted. */
	unsigned seen[VR_LONG_BLOCKS][2];
};

/* Whether sector of r's read may be torn: its slot was written meanwhile. */
static bool vr_torn(const struct vr_req *r, uint64_t sector)
{
	uint32_t b = (uint32_t)(sector / VR_SPB), i = b - (uint32_t)(r->sector / VR_SPB);
	int which = vr_which(sector);
	unsigned seen;

	if (which < 0)
		return false;
	seen = r->seen[i][which];
	return (seen & 1) || __atomic_load_n(&vr_seq[b][which], __ATOMIC_SEQ_CST) != seen;
}

struct vr_thread {
	dc_disk *disk;
	bool diff, writer;
	enum iod_mode mode;
	unsigned issued, reads, inflight;
	uint64_t rng;
	int *writing; /* the writer's requests not yet finished (atomic) */
	struct vr_req req[IOD_QD_MAX];
	char err[512];
	pthread_t th;
};

/* The writer: each block's first slot (an allocation), then in a second pass
 * the first slot again (an engine write) and the second one (a bitmap update
 * of a differencing image, an engine write of a dynamic one). */
static int vr_next_write(struct vr_thread *t, struct vr_req *r, struct dc_io *io)
{
	unsigned n = t->issued;
	int which = n >= VR_NBLOCKS && (n & 1);
	uint32_t gen = n >= VR_NBLOCKS && !which ? 2 : 1;

	if (n >= 3 * VR_NBLOCKS)
		return IOD_END;
	/* The second pass overwrites the first: not while any of it is in
	 * flight. */
	if (n == VR_NBLOCKS && t->inflight)
		return IOD_BLOCKED;
	t->issued++;
	t->inflight++;
	r->sector = vr_slot(n < VR_NBLOCKS ? n : (n - VR_NBLOCKS) / 2, which);
	r->count = VR_SLOT;
	__atomic_add_fetch(&vr_seq[r->sector / VR_SPB][which], 1, __ATOMIC_SEQ_CST);
	iod_stamp(r->buf, 512, r->sector, VR_SLOT, VR_WRITER_TID, gen);
	io->op = DC_OP_WRITE;
	return IOD_SUBMIT;
}

static int vr_next(void *arg, unsigned i, struct dc_io *io)
{
	struct vr_thread *t = arg;
	struct vr_req *r = &t->req[i];

	if (t->writer) {
		int rc = vr_next_write(t, r, io);

		if (rc == IOD_END)
			__atomic_store_n(t->writing, 0, __ATOMIC_RELEASE);
		if (rc != IOD_SUBMIT)
			return rc;
	} else {
		if (!__atomic_load_n(t->writing, __ATOMIC_ACQUIRE) && t->reads > 64)
			return IOD_END;
		r->count = t->reads++ % 4 == 3 ? VR_LONG : VR_SLOT;
		r->sector = h_mix64(t->rng++) %
			    ((VR_SIZE / 512 - r->count) / VR_SLOT + 1) * VR_SLOT;
		for (uint32_t i = 0; i < VR_LONG_BLOCKS; i++)
			for (int w = 0; w < 2; w++)
				r->seen[i][w] =
					r->sector / VR_SPB + i < VR_NBLOCKS ?
						__atomic_load_n(
							&vr_seq[r->sector / VR_SPB + i][w],
							__ATOMIC_SEQ_CST) :
						0;
		memset(r->buf, 0xa5, (size_t)r->count * 512);
		io->op = DC_OP_READ;
	}
	io->sector = r->sector;
	r->iov = (struct iovec){ r->buf, (size_t)r->count * 512 };
	io->iov = &r->iov;
	io->iovcnt = 1;
	return IOD_SUBMIT;
}

static int vr_done(void *arg, unsigned i, const struct dc_completion *c)
{
	struct vr_thread *t = arg;
	struct vr_req *r = &t->req[i];
	char why[160];

	if (t->writer) {
		t->inflight--;
		__atomic_add_fetch(&vr_seq[r->sector / VR_SPB][vr_which(r->sector)], 1,
				   __ATOMIC_SEQ_CST);
	}
	if (c->result) {
		snprintf(t->err, sizeof(t->err), "%s: %s of sector %llu failed: %s",
			 iod_mode_name[t->mode], t->writer ? "write" : "read",
			 (unsigned long long)r->sector, dc_strerror(c->result));
		return -1;
	}
	for (unsigned s = 0; !t->writer && s < r->count; s++)
		if (!vr_torn(r, r->sector + s) &&
		    !vr_sector_ok(r->buf + s * 512, r->sector + s, t->diff, why,
				  sizeof(why))) {
			snprintf(t->err, sizeof(t->err), "%s: read of sector %llu: %s",
				 iod_mode_name[t->mode],
				 (unsigned long long)(r->sector + s), why);
			return -1;
		}
	return 0;
}

static const struct iod_ops vr_ops = { .next = vr_next, .done = vr_done };

static void *vr_main(void *arg)
{
	struct vr_thread *t = arg;
	uint8_t *bufs = h_alloc((size_t)IOD_QD_MAX * VR_LONG * 512);

	for (unsigned i = 0; i < IOD_QD_MAX; i++)
		t->req[i].buf = bufs + (size_t)i * VR_LONG * 512;
	if (iod_run(t->disk, t->mode, IOD_QD_MAX, &vr_ops, t, VR_STALL_MS, t->err,
		    sizeof(t->err)) < 0 &&
	    !t->err[0])
		snprintf(t->err, sizeof(t->err), "%s: failed", iod_mode_name[t->mode]);
	if (t->writer)
		__atomic_store_n(t->writing, 0, __ATOMIC_RELEASE);
	free(bufs);
	return NULL;
}

/* What a fresh open reads after the race: the slots as last written, every
 * other sector as before (no junk came back). */
static void vr_check_all(const char *spec, bool diff)
{
	dc_disk *d = h_open(spec, DC_OPEN_READ_ONLY);
	uint8_t *buf = h_alloc(VR_BLOCK);
	char why[160];

	for (uint32_t b = 0; b < VR_NBLOCKS; b++) {
		ck_assert_int_eq(dc_read(d, (uint64_t)b * VR_SPB, buf, VR_BLOCK), 0);
		for (uint32_t s = 0; s < VR_SPB; s++) {
			uint64_t sector = (uint64_t)b * VR_SPB + s;
			const uint8_t *p = buf + (size_t)s * 512;
			bool ok;

			if (sector - vr_slot(b, 0) < VR_SLOT)
				ok = iod_check(p, 512, sector, VR_WRITER_TID, 2, why,
					       sizeof(why));
			else if (sector - vr_slot(b, 1) < VR_SLOT)
				ok = iod_check(p, 512, sector, VR_WRITER_TID, 1, why,
					       sizeof(why));
			else if (diff)
				ok = iod_check(p, 512, sector, VR_PARENT_TID, 1, why,
					       sizeof(why));
			else if (!(ok = h_check_zero(p, 512) < 0))
				snprintf(why, sizeof(why), "not zero");
			ck_assert_msg(ok, "%s: sector %llu after reopen: %s", spec,
				      (unsigned long long)sector, why);
		}
	}
	free(buf);
	dc_close(d);
}

/* An image a child process makes (fork: see vr_fork): path, over base (a
 * differencing child) when base is set. */
struct vr_setup {
	const char *path, *base;
	const char *opts; /* create= options of the image, or of base */
};

/* Open setup's image writable, making it (and base, stamped with
 * VR_PARENT_TID when fill) first. */
static dc_disk *vr_make(const struct vr_setup *su, bool fill)
{
	uint8_t *buf = fill ? malloc(VR_SIZE) : NULL;
	dc_disk *d = NULL;
	char spec[4096];
	int rc;

	if (su->base) {
		snprintf(spec, sizeof(spec), "vhd:%s;%s", su->base, su->opts);
		if (dc_open(spec, 0, &d) || (fill && !buf))
			return NULL;
		if (fill)
			iod_stamp(buf, 512, 0, VR_SIZE / 512, VR_PARENT_TID, 1);
		rc = fill ? dc_write(d, 0, buf, VR_SIZE, 0) : 0;
		dc_close(d);
		d = NULL;
		if (rc)
			return NULL;
		snprintf(spec, sizeof(spec), "vhd:%s;parent=%s", su->path, su->base);
	} else {
		snprintf(spec, sizeof(spec), "vhd:%s;%s", su->path, su->opts);
	}
	free(buf);
	return dc_open(spec, 0, &d) ? NULL : d;
}

/* In a child process: make the image, fill the whole disk with junk stamps,
 * allocating every block, and exit without a flush: the BAT on disk never
 * names them, so the next open finds their space free but not empty. */
static int vr_junk_child(const struct vr_setup *su)
{
	uint8_t *buf = malloc(VR_BLOCK * 4);
	dc_disk *w = vr_make(su, true);

	if (!buf || !w)
		return 2;
	for (uint64_t s = 0; s < VR_SIZE / 512; s += VR_SPB * 4) {
		iod_stamp(buf, 512, s, VR_SPB * 4, VR_JUNK_TID, 1);
		if (dc_write(w, s, buf, VR_BLOCK * 4, 0))
			return 3;
	}
	return 0;
}

/* Run fn(su) in a child process. The core's threads do not survive fork
 * (nor does ThreadSanitizer let them): the test process has opened nothing
 * yet when it forks. */
static void vr_fork(int (*fn)(const struct vr_setup *su), const struct vr_setup *su)
{
	int status;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(fn(su));
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "%s: the child failed (status %d)", su->path, status);
}

static void vr_race(const struct vr_setup *su)
{
	char *spec = h_fmt("vhd:%s", su->path);
	bool diff = su->base != NULL;
	struct vr_thread th[3];
	int writing = 1;
	struct stat st;
	dc_disk *d;

	memset(vr_seq, 0, sizeof(vr_seq));
	vr_fork(vr_junk_child, su);
	ck_assert_int_eq(stat(su->path, &st), 0);
	ck_assert_uint_ge((uint64_t)st.st_size, VR_SIZE);
	d = h_open(spec, 0);
	for (unsigned i = 0; i < 3; i++) {
		th[i] = (struct vr_thread){
			.disk = d,
			.diff = diff,
			.writer = i == 0,
			.mode = (enum iod_mode)(i % IOD__MODES),
			.rng = h_mix64(i | (uint64_t)diff << 8),
			.writing = &writing,
		};
		ck_assert_int_eq(pthread_create(&th[i].th, NULL, vr_main, &th[i]), 0);
	}
	for (unsigned i = 0; i < 3; i++)
		pthread_join(th[i].th, NULL);
	for (unsigned i = 0; i < 3; i++)
		ck_assert_msg(!th[i].err[0], "thread %u: %s", i, th[i].err);
	ck_assert_int_eq(dc_flush(d), 0);
	dc_close(d);
	vr_check_all(spec, diff);
	free(spec);
}

#define VR_OPTS "create=16M;block=64K"

START_TEST(vhd_aio_dynamic)
{
	char *path = h_tmppath(".vhd");
	struct vr_setup su = { .path = path, .opts = VR_OPTS };

	vr_race(&su);
	free(path);
}
END_TEST

START_TEST(vhd_aio_differencing)
{
	char *base = h_tmppath(".vhd"), *child = h_tmppath(".vhd");
	struct vr_setup su = { .path = child, .base = base, .opts = VR_OPTS };

	vr_race(&su);
	free(child);
	free(base);
}
END_TEST

/* In a child process: make the image, allocate a block, write inside it
 * again (the engine's write: its bits are set), flush, exit without
 * closing. */
static int vr_flush_child(const struct vr_setup *su)
{
	uint8_t a[16 * 512], b[8 * 512];
	dc_disk *w = vr_make(su, false);

	h_fill(a, sizeof(a), 1);
	h_fill(b, sizeof(b), 2);
	if (!w)
		return 2;
	if (dc_write(w, 2048, a, sizeof(a), 0) ||
	    dc_write(w, 2048 + 4, b, sizeof(b), 0) || dc_flush(w))
		return 3;
	return 0;
}

START_TEST(vhd_aio_flush_after_allocation)
{
	char *dyn = h_tmppath(".vhd"), *base = h_tmppath(".vhd");
	char *child = h_tmppath(".vhd"), *spec;
	const struct vr_setup su[2] = {
		{ .path = dyn, .opts = "create=8M" },
		{ .path = child, .base = base, .opts = "create=8M" },
	};
	uint8_t want[16 * 512], got[16 * 512];
	dc_disk *d;

	/* Both children first: nothing opens here before the last fork. */
	for (int i = 0; i < 2; i++)
		vr_fork(vr_flush_child, &su[i]);
	h_fill(want, sizeof(want), 1);
	h_fill(want + 4 * 512, 8 * 512, 2);
	for (int i = 0; i < 2; i++) {
		spec = h_fmt("vhd:%s", su[i].path);
		d = h_open(spec, DC_OPEN_READ_ONLY);
		ck_assert_int_eq(dc_read(d, 2048, got, sizeof(got)), 0);
		ck_assert_msg(memcmp(got, want, sizeof(got)) == 0,
			      "%s: a flushed write is lost after the crash", spec);
		dc_close(d);
		free(spec);
	}
	free(child);
	free(base);
	free(dyn);
}
END_TEST

/* describe()'s io of spec's plugin, as DISKCORE_IO_ENGINE asks. */
static void vr_io_is(const char *spec, const char *plugin)
{
	const char *env = getenv("DISKCORE_IO_ENGINE");
	dc_disk *d = h_open(spec, 0);
	struct h_desc t;
	const char *io;

	h_describe(d, plugin, &t);
	io = h_desc_get(&t, "io");
	ck_assert_msg(io != NULL, "%s: describe() has no io", spec);
	if (env && !strcmp(env, "pool"))
		ck_assert_str_eq(io, "worker pool (DISKCORE_IO_ENGINE=pool)");
	else
		ck_assert_msg(!strcmp(io, "io_uring, one ring per queue") ||
				      !strncmp(io, "worker pool (", 13),
			      "%s: io: %s", spec, io);
	dc_close(d);
}

START_TEST(vhd_aio_describe)
{
	char *dyn = h_tmppath(".vhd"), *fixed = h_tmppath(".vhd");
	char *s;

	vt_create("vhd", dyn, "create=8M");
	vt_create("vhd1", fixed, "create=8M");
	vr_io_is(s = h_fmt("vhd:%s", dyn), "vhd");
	free(s);
	vr_io_is(s = h_fmt("vhd:%s", fixed), "vhd");
	free(s);
	vr_io_is(s = h_fmt("vhd1:%s", fixed), "vhd1");
	free(s);
	free(fixed);
	free(dyn);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("vhd-aio");
	TCase *tc = tcase_create("vhd-aio");

	if (!h_have_plugin("vhd") || !h_have_plugin("vhd1")) {
		fprintf(stderr, "SKIP: vhd.so or vhd1.so was not built\n");
		return 77;
	}
	tcase_add_test(tc, vhd_aio_dynamic);
	tcase_add_test(tc, vhd_aio_differencing);
	tcase_add_test(tc, vhd_aio_flush_after_allocation);
	tcase_add_test(tc, vhd_aio_describe);
	suite_add_tcase(s, tc);
	return h_run(s);
}
