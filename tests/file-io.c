/* SPDX-License-Identifier: MIT */
/* test-file: I/O paths beyond plain reads and writes. O_DIRECT with aligned
 * and bounced buffers, unmap as hole punching, FUA and flush, 32 reads in
 * flight on one queue, and a loop device through file: (root only). */
#include "file-test.h"
#include "harness.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

	h_pread_file(path, 0, check, 4096);
	ck_assert_int_eq(h_check(check, 4096, 90), -1);
	h_pread_file(path, 16 * 512, check, 4096);
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
	h_pread_file(path, 24 * 512, check, 4096);
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
	h_pread_file(path, 0, buf, 4096);
	ck_assert_int_eq(h_check(buf, 4096, 77), -1);
	free(cmd);
	free(spec);
	free(buf);
	free(path);
}
END_TEST

void file_add_io_cases(TCase *tc)
{
	tcase_add_test(tc, file_direct);
	tcase_add_test(tc, file_unmap_punches_holes);
	tcase_add_test(tc, file_fua_and_flush);
	tcase_add_test(tc, file_qd32_random_reads);
	tcase_add_test(tc, file_block_device);
}
