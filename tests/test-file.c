/* SPDX-License-Identifier: MIT */
/* The file plugin (docs/openvmm-compat.md §2.1 and §7.2 disk_file, with the [NOTE]s
 * fixed) and the core's worker pool that runs it (across fork() in
 * test-pool-fork.c). */
#include "conformance.h"
#include "harness.h"

#include <diskcore/plugin.h>

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024 * 1024)

/* A file of `size` bytes whose 4 KiB block b holds h_fill(seed + b). */
static char *tf_patterned(uint64_t size, uint64_t seed)
{
	char *path = h_tmpfile(size, NULL);
	char *buf = malloc(4096);
	int fd = open(path, O_WRONLY);

	ck_assert(fd >= 0 && buf);
	for (uint64_t b = 0; b < size / 4096; b++) {
		h_fill(buf, 4096, seed + b);
		ck_assert_int_eq(pwrite(fd, buf, 4096, (off_t)(b * 4096)), 4096);
	}
	close(fd);
	free(buf);
	return path;
}

static void tf_pread(const char *path, void *buf, size_t len, off_t off)
{
	int fd = open(path, O_RDONLY);

	ck_assert(fd >= 0);
	ck_assert_int_eq(pread(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

static int tf_describe_visit(void *arg, int depth, const char *plugin, const char *form,
			     const struct dc_info *info, const char *key,
			     const char *value)
{
	char **out = arg;

	(void)depth;
	(void)form;
	(void)info;
	if (key && !strcmp(plugin, "file") && !strcmp(key, out[0]))
		out[1] = strdup(value);
	return 0;
}

/* The value `key` that the file node describes, or NULL (malloc'd). */
static char *tf_describe(dc_disk *d, const char *key)
{
	char *kv[2] = { (char *)key, NULL };

	dc_describe(d, tf_describe_visit, kv);
	return kv[1];
}

START_TEST(file_info)
{
	char *path = h_tmpfile(MIB + 100, NULL);
	dc_disk *d = h_openf(0, "file:%s", path);
	struct dc_info info;
	char *v;

	dc_get_info(d, &info);
	/* A partial last sector is not part of the disk. */
	ck_assert_uint_eq(info.sector_count, MIB / 512);
	ck_assert_uint_eq(info.sector_size, 512);
	ck_assert_uint_eq(info.physical_sector_size, 4096);
	ck_assert_str_eq(info.disk_type, "file");
	ck_assert(info.flags & DC_INFO_FUA_RESPECTED);
	ck_assert(!(info.flags & DC_INFO_READ_ONLY));
	v = tf_describe(d, "path");
	ck_assert_ptr_nonnull(v);
	ck_assert_str_eq(v, path);
	free(v);
	v = tf_describe(d, "direct");
	ck_assert_ptr_nonnull(v);
	ck_assert_str_eq(v, "no");
	free(v);
	dc_close(d);
	free(path);
}
END_TEST

START_TEST(file_conformance)
{
	char *path = h_tmpfile(MIB, NULL);
	char *spec = h_fmt("file:%s", path);
	dc_disk *d = h_open(spec, 0);

	conformance_check_representability(d, spec);
	conformance_check_sector_range(d, spec);
	dc_close(d);
	free(spec);
	free(path);
}
END_TEST

/* §7.2 sector_does_not_wrap_when_shifted: 1 << 55 shifted by 9 is 0 mod 2^64. */
START_TEST(file_sector_does_not_wrap)
{
	char *path = tf_patterned(MIB, 1);
	dc_disk *d = h_openf(0, "file:%s", path);
	char *buf = h_alloc(512), *sector0 = h_alloc(512);

	tf_pread(path, sector0, 512, 0);
	memset(buf, 0x5a, 512);
	ck_assert_int_eq(dc_read(d, UINT64_C(1) << 55, buf, 512), DC_E_ILLEGAL_BLOCK);
	ck_assert(memcmp(buf, sector0, 512) != 0);
	ck_assert_int_eq(h_check(sector0, 512, 1), -1);
	ck_assert_int_eq(dc_write(d, UINT64_C(1) << 55, buf, 512, 0), DC_E_ILLEGAL_BLOCK);
	tf_pread(path, buf, 512, 0);
	ck_assert_int_eq(h_check(buf, 512, 1), -1);
	dc_close(d);
	free(buf);
	free(sector0);
	free(path);
}
END_TEST

/* The plugin itself, below the core's guard: load file.so and call io() with
 * requests the core would never pass, to prove the plugin's own checks. */
static void tf_direct_open(struct h_direct *t, const char *path, bool read_only)
{
	h_direct_open(t, "file", path, read_only);
	ck_assert_ptr_nonnull(t->p->io);
}

static int tf_direct_io(struct h_direct *t, uint32_t op, uint64_t sector, void *buf,
			size_t len, uint64_t count)
{
	struct iovec iov = { buf, len };
	struct dc_req req = {
		.op = op,
		.sector = sector,
		.count = op == DC_OP_UNMAP ? count : len / 512,
		.buf = { .iov = &iov, .iovcnt = buf ? 1 : 0, .len = len },
	};

	return t->p->io(t->inst, &req);
}

START_TEST(file_plugin_range_check)
{
	char *path = tf_patterned(MIB, 7);
	char *buf = h_alloc(4096);
	struct h_direct t;

	tf_direct_open(&t, path, false);
	/* Sectors whose byte offset wraps, or is past the end, or straddles it. */
	memset(buf, 0x5a, 4096);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_READ, UINT64_C(1) << 55, buf, 512, 0),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_READ, UINT64_MAX, buf, 512, 0),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_READ, UINT64_C(1) << 54, buf, 512, 0),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_READ, 2048, buf, 512, 0),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_READ, 2047, buf, 1024, 0),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_WRITE, UINT64_C(1) << 55, buf, 512, 0),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_UNMAP, UINT64_C(1) << 55, NULL, 0, 1),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_UNMAP, 1, NULL, 0, UINT64_MAX),
			 DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_UNMAP, 2047, NULL, 0, 2),
			 DC_E_ILLEGAL_BLOCK);
	for (int i = 0; i < 4096; i++)
		ck_assert_int_eq((unsigned char)buf[i], 0x5a);
	/* The last sector is inside. */
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_READ, 2047, buf, 512, 0), 0);
	h_direct_close(&t);
	free(buf);
	free(path);
}
END_TEST

START_TEST(file_plugin_read_only)
{
	char *path = tf_patterned(64 * 1024, 3);
	char *buf = h_alloc(512);
	struct h_direct t;

	tf_direct_open(&t, path, true);
	ck_assert(t.info.flags & DC_INFO_READ_ONLY);
	ck_assert_uint_eq(t.info.unmap_behavior, DC_UNMAP_IGNORED);
	memset(buf, 0xee, 512);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_WRITE, 0, buf, 512, 0), DC_E_READ_ONLY);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_UNMAP, 0, NULL, 0, 8), DC_E_READ_ONLY);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_READ, 0, buf, 512, 0), 0);
	ck_assert_int_eq(h_check(buf, 512, 3), -1);
	ck_assert_int_eq(tf_direct_io(&t, DC_OP_EJECT, 0, NULL, 0, 0), DC_E_UNSUPPORTED);
	h_direct_close(&t);
	free(buf);
	free(path);
}
END_TEST

START_TEST(file_read_only)
{
	char *path = tf_patterned(64 * 1024, 3);
	dc_disk *d = h_openf(DC_OPEN_READ_ONLY, "file:%s", path);
	char *buf = h_alloc(4096);
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert(info.flags & DC_INFO_READ_ONLY);
	memset(buf, 0xee, 4096);
	ck_assert_int_eq(dc_write(d, 0, buf, 4096, 0), DC_E_READ_ONLY);
	ck_assert_int_eq(dc_write(d, 8, buf, 4096, DC_IO_FUA), DC_E_READ_ONLY);
	ck_assert_int_eq(dc_read(d, 0, buf, 4096), 0);
	ck_assert_int_eq(h_check(buf, 4096, 3), -1);
	tf_pread(path, buf, 4096, 4096);
	ck_assert_int_eq(h_check(buf, 4096, 4), -1);
	ck_assert_int_eq(dc_flush(d), 0);
	dc_close(d);
	free(buf);
	free(path);
}
END_TEST

/* Write through one iovec layout and read back through another; with more
 * segments than the plugin passes from the stack, the bounce path runs. */
static void tf_scatter_roundtrip(int nseg_write, int nseg_read)
{
	char *path = h_tmpfile(MIB, NULL);
	dc_disk *d = h_openf(0, "file:%s", path);
	size_t len = 8192;
	char *src = h_alloc(len), *dst = h_alloc(len), *check = h_alloc(len);
	struct iovec *wiov = calloc((size_t)nseg_write, sizeof(*wiov));
	struct iovec *riov = calloc((size_t)nseg_read, sizeof(*riov));
	size_t off;

	/* Uneven segments: the first nseg-1 are tiny, the last takes the rest. */
	h_fill(src, len, 11);
	for (int i = 0, o = 0; i < nseg_write; i++) {
		size_t n = i < nseg_write - 1 ? (size_t)(1 + i % 3) : len - (size_t)o;

		wiov[i] = (struct iovec){ src + o, n };
		o += (int)n;
	}
	off = 0;
	for (int i = 0; i < nseg_read; i++) {
		size_t n = i < nseg_read - 1 ? (size_t)(2 + i % 5) : len - off;

		riov[i] = (struct iovec){ dst + off, n };
		off += n;
	}
	ck_assert_int_eq(dc_writev(d, 16, wiov, nseg_write, 0), 0);
	tf_pread(path, check, len, 16 * 512);
	ck_assert_int_eq(h_check(check, len, 11), -1);
	ck_assert_int_eq(dc_readv(d, 16, riov, nseg_read), 0);
	ck_assert_int_eq(h_check(dst, len, 11), -1);
	dc_close(d);
	free(wiov);
	free(riov);
	free(src);
	free(dst);
	free(check);
	free(path);
}

START_TEST(file_scatter_few)
{
	tf_scatter_roundtrip(100, 200);
}
END_TEST

START_TEST(file_scatter_many)
{
	tf_scatter_roundtrip(3000, 1500);
}
END_TEST

/* RLIMIT_FSIZE makes pwritev stop short at the limit: the plugin must go on
 * (and then fail with EFBIG), never report a partial write as success. */
START_TEST(file_short_write_is_continued)
{
	char *path = h_tmpfile(MIB, NULL);
	dc_disk *d = h_openf(0, "file:%s", path);
	char *buf = h_alloc(8192), *check = h_alloc(8192);
	struct rlimit lim = { 4096 + 1024, RLIM_INFINITY };
	int detail = 0;
	struct iovec iov = { buf, 8192 };
	struct dc_io io = { .op = DC_OP_WRITE, .iov = &iov, .iovcnt = 1 };

	signal(SIGXFSZ, SIG_IGN);
	h_fill(buf, 8192, 21);
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
	ck_assert_int_eq(dc_execute(d, &io, &detail), DC_E_IO);
	lim.rlim_cur = RLIM_INFINITY;
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
	ck_assert_int_eq(detail, EFBIG);
	/* The kernel did write the first part: the write was short, not refused. */
	tf_pread(path, check, 8192, 0);
	ck_assert_int_eq(h_check(check, 4096 + 1024, 21), -1);
	ck_assert_int_eq(h_check_zero(check + 5120, 8192 - 5120), -1);
	dc_close(d);
	free(buf);
	free(check);
	free(path);
}
END_TEST

/* A read that meets EOF inside the disk (the file shrank) is an I/O error, not
 * a short buffer padded with stale or zero bytes. */
START_TEST(file_shrunk_read_fails)
{
	char *path = tf_patterned(MIB, 5);
	dc_disk *d = h_openf(0, "file:%s", path);
	char *buf = h_alloc(8192);

	ck_assert_int_eq(truncate(path, MIB / 2), 0);
	ck_assert_int_eq(dc_read(d, 0, buf, 4096), 0);
	ck_assert_int_eq(h_check(buf, 4096, 5), -1);
	/* Straddling the new end, and wholly past it. */
	ck_assert_int_eq(dc_read(d, 1024 - 8, buf, 8192), DC_E_IO);
	ck_assert_int_eq(dc_read(d, 1500, buf, 512), DC_E_IO);
	ck_assert_uint_eq(dc_sector_count(d), MIB / 512);
	dc_close(d);
	free(buf);
	free(path);
}
END_TEST

START_TEST(file_create)
{
	char *path = h_tmppath(".img");
	dc_disk *d = h_openf(0, "file:%s;create=2M", path);
	char *buf = h_alloc(4096);
	struct stat st;
	char *v;

	ck_assert_uint_eq(dc_sector_count(d), 2 * MIB / 512);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, 2 * MIB);
	v = tf_describe(d, "created");
	ck_assert_ptr_nonnull(v);
	free(v);
	h_fill(buf, 4096, 9);
	ck_assert_int_eq(dc_write(d, 100, buf, 4096, 0), 0);
	dc_close(d);

	/* create= names an existing image: opened unchanged at its size, refused at
	 * another (tests/test-create.c covers the rule). */
	h_open_fails(0, -EEXIST, "exists with 2097152 bytes", "file:%s;create=64K", path);
	d = h_openf(0, "file:%s;create=2M", path);
	ck_assert_int_eq(dc_read(d, 100, buf, 4096), 0);
	ck_assert_int_eq(h_check(buf, 4096, 9), -1);
	dc_close(d);
	/* ;overwrite replaces it: truncated, then sized, so all zeroes. */
	d = h_openf(0, "file:%s;create=64K;overwrite", path);
	ck_assert_uint_eq(dc_sector_count(d), 128);
	ck_assert_int_eq(dc_read(d, 100, buf, 4096), 0);
	ck_assert_int_eq(h_check_zero(buf, 4096), -1);
	dc_close(d);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, 64 * 1024);
	free(buf);
	free(path);
}
END_TEST

START_TEST(file_create_bad_size)
{
	char *path = h_tmppath(".img");

	h_open_fails(0, 0, "512", "file:%s;create=1000", path);
	ck_assert_int_ne(access(path, F_OK), 0);
	free(path);
}
END_TEST

START_TEST(file_relative_path)
{
	/* "memdiff:REL.img" and "sub/REL.img" open relative to the working
	 * directory, as in OpenVMM (docs/spec-strings.md). */
	char *dir = h_tmpsubdir(), *sub = h_fmt("%s/sub", dir), buf[512];
	char cwd[4096];
	dc_disk *d;

	ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
	ck_assert_int_eq(mkdir(sub, 0755), 0);
	ck_assert_int_eq(chdir(dir), 0);
	memset(buf, 0x5a, sizeof(buf));
	d = h_open("sub/rel.img;create=64K", 0);
	ck_assert_int_eq(dc_write(d, 3, buf, sizeof(buf), 0), 0);
	dc_close(d);
	ck_assert_int_eq(access("sub/rel.img", F_OK), 0);
	ck_assert_int_eq(chdir(sub), 0);
	d = h_open("memdiff:rel.img", 0);
	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(dc_read(d, 3, buf, sizeof(buf)), 0);
	ck_assert_int_eq((unsigned char)buf[511], 0x5a);
	dc_close(d);
	ck_assert_int_eq(chdir(cwd), 0);
	free(sub);
	free(dir);
}
END_TEST

START_TEST(file_iso_and_vmgs)
{
	/* .iso is read-only media; .vmgs is a fixed VHD (issue 14). */
	char *iso = h_tmpfile(MIB, ".iso"), *vmgs = h_tmppath(".vmgs"), *spec;
	unsigned char foot[512];
	struct stat st;
	dc_disk *d;
	int fd;

	h_open_fails(0, -EROFS, "iso file cannot be opened as read/write", "%s", iso);
	d = h_open(iso, DC_OPEN_READ_ONLY);
	ck_assert_uint_eq(dc_sector_count(d), MIB / 512);
	dc_close(d);
	spec = h_fmt("file:%s;create=VMGS_DEFAULT", vmgs);
	d = h_open(spec, 0);
	ck_assert_uint_eq(dc_sector_count(d), 4 * MIB / 512);
	dc_close(d);
	free(spec);
	ck_assert_int_eq(stat(vmgs, &st), 0);
	ck_assert_int_eq(st.st_size, 4 * MIB + 512);
	fd = open(vmgs, O_RDONLY);
	ck_assert_int_eq(pread(fd, foot, 512, st.st_size - 512), 512);
	close(fd);
	ck_assert_int_eq(memcmp(foot, "conectix", 8), 0);
	free(iso);
	free(vmgs);
}
END_TEST

START_TEST(file_open_errors)
{
	char *missing = h_tmppath(".img");
	char *dir = h_tmpsubdir();

	h_open_fails(0, -ENOENT, missing, "file:%s", missing);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "not a regular file", "file:%s", dir);
	free(dir);
	free(missing);
}
END_TEST

/* Is the file plugin's descriptor open with O_DIRECT? Looked up in /proc. */
static bool tf_fd_has_o_direct(const char *path)
{
	bool found = false, direct = false;
	char link[64], target[PATH_MAX], line[128];

	for (int fd = 3; fd < 1024 && !found; fd++) {
		ssize_t n;
		FILE *fp;

		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		n = readlink(link, target, sizeof(target) - 1);
		if (n < 0)
			continue;
		target[n] = '\0';
		if (strcmp(target, path))
			continue;
		snprintf(link, sizeof(link), "/proc/self/fdinfo/%d", fd);
		fp = fopen(link, "r");
		while (fp && fgets(line, sizeof(line), fp)) {
			unsigned long flags;

			if (sscanf(line, "flags: %lo", &flags) == 1) {
				found = true;
				direct = flags & O_DIRECT;
			}
		}
		if (fp)
			fclose(fp);
	}
	ck_assert_msg(found, "no descriptor open on %s", path);
	return direct;
}

START_TEST(file_direct)
{
	char *path = tf_patterned(MIB, 30);
	char *real = realpath(path, NULL);
	dc_disk *d = h_openf(0, "file:%s;direct", path);
	char *aligned = h_alloc(3 * 4096), *raw = h_alloc(3 * 4096 + 64);
	char *unaligned = raw + 3, *check = h_alloc(3 * 4096);
	struct iovec iov[3];
	char *v;

	ck_assert(tf_fd_has_o_direct(real));
	v = tf_describe(d, "direct");
	ck_assert_str_eq(v, "yes");
	free(v);

	/* Aligned: straight into the buffer. */
	ck_assert_int_eq(dc_read(d, 8, aligned, 3 * 4096), 0);
	for (int b = 0; b < 3; b++)
		ck_assert_int_eq(h_check(aligned + b * 4096, 4096, 31 + (uint64_t)b), -1);
	h_fill(aligned, 4096, 90);
	ck_assert_int_eq(dc_write(d, 0, aligned, 4096, 0), 0);

	/* Unaligned address: bounced. */
	ck_assert_int_eq(dc_read(d, 8, unaligned, 3 * 4096), 0);
	for (int b = 0; b < 3; b++)
		ck_assert_int_eq(h_check(unaligned + b * 4096, 4096, 31 + (uint64_t)b),
				 -1);
	h_fill(unaligned, 4096, 91);
	ck_assert_int_eq(dc_write(d, 16, unaligned, 4096, 0), 0);

	/* Aligned addresses, lengths not multiples of the alignment: bounced. */
	iov[0] = (struct iovec){ aligned, 100 };
	iov[1] = (struct iovec){ aligned + 4096, 4096 - 100 };
	iov[2] = (struct iovec){ aligned + 8192, 4096 };
	ck_assert_int_eq(dc_readv(d, 16, iov, 3), 0);
	h_fill(check, 4096, 91);
	ck_assert_int_eq(memcmp(aligned, check, 100), 0);
	ck_assert_int_eq(memcmp(aligned + 4096, check + 100, 4096 - 100), 0);

	tf_pread(path, check, 4096, 0);
	ck_assert_int_eq(h_check(check, 4096, 90), -1);
	tf_pread(path, check, 4096, 16 * 512);
	ck_assert_int_eq(h_check(check, 4096, 91), -1);
	dc_close(d);
	free(aligned);
	free(raw);
	free(check);
	free(real);
	free(path);
}
END_TEST

/* §7.2 test_unmap_file_punch_hole, through the file plugin. */
START_TEST(file_unmap_punches_holes)
{
	char *path = h_tmpfile(MIB, NULL);
	dc_disk *d = h_openf(0, "file:%s", path);
	char *buf = h_alloc(8192);
	struct dc_info info;
	struct stat before, after;

	dc_get_info(d, &info);
	if (info.unmap_behavior != DC_UNMAP_ZEROES) {
		fprintf(stderr, "note: %s cannot punch holes; unmap test not run\n",
			path);
		dc_close(d);
		return;
	}
	memset(buf, 0xcd, 8192);
	ck_assert_int_eq(dc_write(d, 0, buf, 8192, 0), 0);
	ck_assert_int_eq(dc_flush(d), 0);
	ck_assert_int_eq(stat(path, &before), 0);
	ck_assert_int_eq(dc_unmap(d, 0, 8, 0), 0);
	ck_assert_int_eq(stat(path, &after), 0);
	ck_assert_int_lt(after.st_blocks, before.st_blocks);
	ck_assert_int_eq(after.st_size, MIB);
	memset(buf, 0x11, 8192);
	ck_assert_int_eq(dc_read(d, 0, buf, 8192), 0);
	ck_assert_int_eq(h_check_zero(buf, 4096), -1);
	for (int i = 4096; i < 8192; i++)
		ck_assert_int_eq((unsigned char)buf[i], 0xcd);
	ck_assert_int_eq(dc_unmap(d, 2048, 1, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_unmap(d, 2040, 9, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_unmap(d, 100, 0, DC_IO_BLOCK_LEVEL_ONLY), 0);
	dc_close(d);
	free(buf);
	free(path);
}
END_TEST

START_TEST(file_fua_and_flush)
{
	char *path = h_tmpfile(MIB, NULL);
	dc_disk *d = h_openf(0, "file:%s", path);
	char *buf = h_alloc(4096), *check = h_alloc(4096);
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert(info.flags & DC_INFO_FUA_RESPECTED);
	h_fill(buf, 4096, 44);
	ck_assert_int_eq(dc_write(d, 24, buf, 4096, DC_IO_FUA), 0);
	tf_pread(path, check, 4096, 24 * 512);
	ck_assert_int_eq(h_check(check, 4096, 44), -1);
	ck_assert_int_eq(dc_flush(d), 0);
	ck_assert_int_eq(dc_eject(d), DC_E_UNSUPPORTED_EJECT);
	dc_close(d);
	free(buf);
	free(check);
	free(path);
}
END_TEST

/* QD32 random 4 KiB reads on one queue, every block checked: the pool keeps
 * many preads in flight and each completion carries its own data. */
enum { TF_QD = 32 };

struct tf_qd {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done, bad;
	int free_slots[TF_QD], nfree;
};

struct tf_slot {
	struct tf_qd *qd;
	int index;
	char *buf;
	struct iovec iov;
	uint64_t block;
};

static void tf_qd_cb(const struct dc_completion *c)
{
	struct tf_slot *s = c->user_data;
	struct tf_qd *qd = s->qd;

	pthread_mutex_lock(&qd->lock);
	if (c->result || h_check(s->buf, 4096, 50 + s->block) != -1)
		qd->bad++;
	qd->done++;
	qd->free_slots[qd->nfree++] = s->index;
	pthread_cond_signal(&qd->cond);
	pthread_mutex_unlock(&qd->lock);
}

START_TEST(file_qd32_random_reads)
{
	enum { BLOCKS = 1024, TOTAL = 4096 };
	char *path = tf_patterned((uint64_t)BLOCKS * 4096, 50);
	dc_disk *d = h_openf(0, "file:%s", path);
	struct tf_qd qd = { .lock = PTHREAD_MUTEX_INITIALIZER,
			    .cond = PTHREAD_COND_INITIALIZER };
	struct tf_slot slots[TF_QD];
	unsigned seed = 12345;
	int submitted = 0;
	dc_queue *q;

	for (int i = 0; i < TF_QD; i++) {
		slots[i] =
			(struct tf_slot){ .qd = &qd, .index = i, .buf = h_alloc(4096) };
		qd.free_slots[qd.nfree++] = i;
	}
	ck_assert_int_eq(dc_queue_open(d, 0, &q), 0);
	pthread_mutex_lock(&qd.lock);
	while (qd.done < TOTAL) {
		/* Keep every free slot busy until all reads are submitted. */
		while (submitted < TOTAL && qd.nfree > 0) {
			struct tf_slot *s = &slots[qd.free_slots[--qd.nfree]];
			struct dc_io io = { .op = DC_OP_READ,
					    .iovcnt = 1,
					    .cb = tf_qd_cb };

			s->block = (uint64_t)rand_r(&seed) % BLOCKS;
			memset(s->buf, 0, 4096);
			s->iov = (struct iovec){ s->buf, 4096 };
			io.iov = &s->iov;
			io.sector = s->block * 8;
			io.user_data = s;
			submitted++;
			pthread_mutex_unlock(&qd.lock);
			ck_assert_int_eq(dc_submit(q, &io), 0);
			pthread_mutex_lock(&qd.lock);
		}
		if (qd.done < TOTAL && (qd.nfree == 0 || submitted == TOTAL))
			pthread_cond_wait(&qd.cond, &qd.lock);
	}
	pthread_mutex_unlock(&qd.lock);
	ck_assert_int_eq(qd.bad, 0);
	dc_queue_close(q);
	for (int i = 0; i < TF_QD; i++)
		free(slots[i].buf);
	dc_close(d);
	free(path);
}
END_TEST

/* The loop device file_block_device attached, detached at exit too: a failed
 * assertion must not leave it behind. */
static char tf_loop[64];

static int tf_loop_detach(void)
{
	char *cmd;
	int r;

	if (!tf_loop[0])
		return 0;
	cmd = h_fmt("losetup -d %s", tf_loop);
	tf_loop[0] = '\0';
	r = system(cmd);
	free(cmd);
	return r;
}

static void tf_loop_atexit(void)
{
	tf_loop_detach();
}

/* Only the file plugin's directory on the path: a spec naming a block device
 * goes to blockdev when that is installed. */
static void tf_only_file_plugin(void)
{
	const char *env = getenv("DISKCORE_PLUGIN_PATH");
	char *dirs = strdup(env ? env : ""), *save = NULL;

	for (char *dir = strtok_r(dirs, ":", &save); dir;
	     dir = strtok_r(NULL, ":", &save)) {
		char *so = h_fmt("%s/file.so", dir);
		bool here = access(so, R_OK) == 0;

		free(so);
		if (here) {
			ck_assert_int_eq(setenv("DISKCORE_PLUGIN_PATH", dir, 1), 0);
			break;
		}
	}
	free(dirs);
}

/* A loop device through file: exercises the block-device path (root only). */
START_TEST(file_block_device)
{
	char *path = tf_patterned(2 * MIB, 60);
	char *cmd = h_fmt("losetup -f --show %s 2>/dev/null", path);
	char dev[64] = "", *spec, *buf = h_alloc(4096);
	FILE *fp = geteuid() == 0 ? popen(cmd, "r") : NULL;
	char *old_path = getenv("DISKCORE_PLUGIN_PATH");
	struct dc_info info;
	dc_disk *d;

	if (fp) {
		if (!fgets(dev, sizeof(dev), fp))
			dev[0] = '\0';
		pclose(fp);
	}
	dev[strcspn(dev, "\n")] = '\0';
	if (dev[0]) {
		snprintf(tf_loop, sizeof(tf_loop), "%s", dev);
		atexit(tf_loop_atexit);
	}
	if (!dev[0]) {
		fprintf(stderr, "note: no loop device (needs root and losetup); block "
				"device test not run\n");
		free(cmd);
		free(buf);
		free(path);
		return;
	}
	old_path = old_path ? strdup(old_path) : NULL;
	tf_only_file_plugin();
	spec = h_fmt("file:%s", dev);
	d = NULL;
	if (dc_open(spec, 0, &d) == 0) {
		char *v = tf_describe(d, "type");

		dc_get_info(d, &info);
		ck_assert_str_eq(v, "block device");
		free(v);
		ck_assert_uint_eq(info.sector_count, 2 * MIB / info.sector_size);
		ck_assert_int_eq(dc_read(d, 4096 / info.sector_size, buf, 4096), 0);
		ck_assert_int_eq(h_check(buf, 4096, 61), -1);
		ck_assert_int_eq(dc_read(d, info.sector_count, buf, info.sector_size),
				 DC_E_ILLEGAL_BLOCK);
		h_fill(buf, 4096, 77);
		ck_assert_int_eq(dc_write(d, 0, buf, 4096, DC_IO_FUA), 0);
		if (info.unmap_behavior != DC_UNMAP_IGNORED)
			ck_assert_int_eq(dc_unmap(d, 16, 16, 0), 0);
		ck_assert_int_eq(dc_flush(d), 0);
		dc_close(d);
	}
	if (old_path)
		setenv("DISKCORE_PLUGIN_PATH", old_path, 1);
	free(old_path);
	ck_assert_int_eq(tf_loop_detach(), 0);
	ck_assert_msg(d != NULL, "dc_open(%s): %s", spec, dc_last_error());
	tf_pread(path, buf, 4096, 0);
	ck_assert_int_eq(h_check(buf, 4096, 77), -1);
	free(cmd);
	free(spec);
	free(buf);
	free(path);
}
END_TEST

/* --- The worker pool ------------------------------------------------------ */

struct tf_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int running, max_running, done, order[256], norder;
	bool release;
	pthread_t caller;
	bool on_caller;
};

static struct tf_pool tp = { .lock = PTHREAD_MUTEX_INITIALIZER,
			     .cond = PTHREAD_COND_INITIALIZER };

/* Wait on tp.cond until pred holds, failing after 10 s (a deadline, not a sleep). */
#define TF_WAIT_UNTIL(pred)                                                         \
	do {                                                                        \
		struct timespec ts_;                                                \
		clock_gettime(CLOCK_REALTIME, &ts_);                                \
		ts_.tv_sec += 10;                                                   \
		while (!(pred))                                                     \
			ck_assert_int_ne(pthread_cond_timedwait(&tp.cond, &tp.lock, \
								&ts_),              \
					 ETIMEDOUT);                                \
	} while (0)

static void tf_job_block(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&tp.lock);
	if (pthread_equal(pthread_self(), tp.caller))
		tp.on_caller = true;
	tp.running++;
	if (tp.running > tp.max_running)
		tp.max_running = tp.running;
	pthread_cond_broadcast(&tp.cond);
	while (!tp.release)
		pthread_cond_wait(&tp.cond, &tp.lock);
	tp.running--;
	tp.done++;
	pthread_cond_broadcast(&tp.cond);
	pthread_mutex_unlock(&tp.lock);
}

static void tf_job_record(void *arg)
{
	pthread_mutex_lock(&tp.lock);
	tp.order[tp.norder++] = (int)(intptr_t)arg;
	tp.done++;
	pthread_cond_broadcast(&tp.cond);
	pthread_mutex_unlock(&tp.lock);
}

/* 32 jobs that each wait for all the others: only if the pool runs 32 at once
 * do they finish. */
START_TEST(pool_runs_jobs_concurrently)
{
	tp.caller = pthread_self();
	pthread_mutex_lock(&tp.lock);
	for (int i = 0; i < 32; i++)
		ck_assert_int_eq(dc_pool_run(tf_job_block, NULL), 0);
	TF_WAIT_UNTIL(tp.running == 32);
	tp.release = true;
	pthread_cond_broadcast(&tp.cond);
	TF_WAIT_UNTIL(tp.done == 32);
	ck_assert(!tp.on_caller);
	pthread_mutex_unlock(&tp.lock);
}
END_TEST

/* The pool reads DISKCORE_POOL_THREADS at its first submission; each Check case
 * runs in a fresh process, so a case can set its own. */
static bool tf_pool_fresh(void)
{
	const char *f = getenv("CK_FORK");

	if (f && !strcmp(f, "no")) {
		fprintf(stderr, "note: CK_FORK=no: pool cap tests not run\n");
		return false;
	}
	return true;
}

/* With a cap of 4, at most 4 jobs run at once, and all of them run. */
START_TEST(pool_cap)
{
	if (!tf_pool_fresh())
		return;
	setenv("DISKCORE_POOL_THREADS", "4", 1);
	pthread_mutex_lock(&tp.lock);
	for (int i = 0; i < 12; i++)
		ck_assert_int_eq(dc_pool_run(tf_job_block, NULL), 0);
	TF_WAIT_UNTIL(tp.running == 4);
	tp.release = true;
	pthread_cond_broadcast(&tp.cond);
	TF_WAIT_UNTIL(tp.done == 12);
	ck_assert_int_eq(tp.max_running, 4);
	pthread_mutex_unlock(&tp.lock);
	ck_assert_int_eq(dc_pool_run(NULL, NULL), -EINVAL);
}
END_TEST

/* With one thread busy, queued jobs wait, and then run in submission order. */
START_TEST(pool_fifo)
{
	if (!tf_pool_fresh())
		return;
	setenv("DISKCORE_POOL_THREADS", "1", 1);
	pthread_mutex_lock(&tp.lock);
	ck_assert_int_eq(dc_pool_run(tf_job_block, NULL), 0);
	TF_WAIT_UNTIL(tp.running == 1);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(dc_pool_run(tf_job_record, (void *)(intptr_t)i), 0);
	ck_assert_int_eq(tp.norder, 0);
	tp.release = true;
	pthread_cond_broadcast(&tp.cond);
	TF_WAIT_UNTIL(tp.done == 101);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(tp.order[i], i);
	pthread_mutex_unlock(&tp.lock);
}
END_TEST

static void *tf_thread_noop(void *arg)
{
	return arg;
}

static int tf_nthreads(void)
{
	char line[256];
	int n = -1;
	FILE *fp = fopen("/proc/self/status", "r");

	while (fp && fgets(line, sizeof(line), fp))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	if (fp)
		fclose(fp);
	return n;
}

/* Idle workers exit after a few seconds. Polled against a deadline: the exit is
 * on the pool's clock, so there is nothing to wait on but time. */
START_TEST(pool_idle_threads_exit)
{
	uint64_t deadline;
	pthread_t t;
	int base;

	/* The first pthread_create() of a process may also start a runtime thread
	 * that stays (ThreadSanitizer's background thread): start and join one
	 * first, so that it is in the base count. */
	ck_assert_int_eq(pthread_create(&t, NULL, tf_thread_noop, NULL), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	base = tf_nthreads();
	ck_assert_int_gt(base, 0);
	pthread_mutex_lock(&tp.lock);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(dc_pool_run(tf_job_block, NULL), 0);
	TF_WAIT_UNTIL(tp.running == 8);
	ck_assert_int_ge(tf_nthreads(), base + 8);
	tp.release = true;
	pthread_cond_broadcast(&tp.cond);
	TF_WAIT_UNTIL(tp.done == 8);
	pthread_mutex_unlock(&tp.lock);
	deadline = h_now_ms() + 15000;
	while (tf_nthreads() > base && h_now_ms() < deadline) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
	ck_assert_int_eq(tf_nthreads(), base);
	/* And the pool starts again afterwards. */
	pthread_mutex_lock(&tp.lock);
	ck_assert_int_eq(dc_pool_run(tf_job_record, (void *)7), 0);
	TF_WAIT_UNTIL(tp.norder == 1);
	ck_assert_int_eq(tp.order[0], 7);
	pthread_mutex_unlock(&tp.lock);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("file");
	TCase *tc = tcase_create("file");
	TCase *tp_case = tcase_create("pool");

	tcase_add_test(tc, file_info);
	tcase_add_test(tc, file_conformance);
	tcase_add_test(tc, file_sector_does_not_wrap);
	tcase_add_test(tc, file_plugin_range_check);
	tcase_add_test(tc, file_plugin_read_only);
	tcase_add_test(tc, file_read_only);
	tcase_add_test(tc, file_scatter_few);
	tcase_add_test(tc, file_scatter_many);
	tcase_add_test(tc, file_short_write_is_continued);
	tcase_add_test(tc, file_shrunk_read_fails);
	tcase_add_test(tc, file_create);
	tcase_add_test(tc, file_create_bad_size);
	tcase_add_test(tc, file_relative_path);
	tcase_add_test(tc, file_iso_and_vmgs);
	tcase_add_test(tc, file_open_errors);
	tcase_add_test(tc, file_direct);
	tcase_add_test(tc, file_unmap_punches_holes);
	tcase_add_test(tc, file_fua_and_flush);
	tcase_add_test(tc, file_qd32_random_reads);
	tcase_add_test(tc, file_block_device);
	suite_add_tcase(s, tc);
	tcase_add_test(tp_case, pool_runs_jobs_concurrently);
	tcase_add_test(tp_case, pool_cap);
	tcase_add_test(tp_case, pool_fifo);
	tcase_add_test(tp_case, pool_idle_threads_exit);
	suite_add_tcase(s, tp_case);
	return h_run(s);
}
