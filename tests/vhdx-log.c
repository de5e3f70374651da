/* SPDX-License-Identifier: MIT */
/* The vhdx plugin's log: a log written here independently of the plugin is
 * replayed in memory (read-only) and into the file (writable), a truncated or
 * junk log is handled, and a writer that dies after a flush leaves a log that
 * replays. Part of test-vhdx. */
#include "harness.h"
#include "vhdtest.h"
#include "vhdx-cases.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Write the log entry `seq` at the start of the log: one data descriptor per
 * 4 KiB sector in secs/offs, and the header naming guid, independently of the
 * plugin. */
static void tx_log_entry(struct tx_img *m, const uint8_t guid[16], uint64_t seq,
			 unsigned n, uint8_t (*secs)[4096], const uint64_t *offs,
			 uint64_t flushed, uint64_t last)
{
	size_t len = (1 + n) * 4096;
	uint8_t *e = calloc(1, len);
	uint8_t h[4096];

	memcpy(e, "loge", 4);
	tx_set32(e + 8, (uint32_t)len);
	tx_set32(e + 12, 0);
	tx_set64(e + 16, seq);
	tx_set32(e + 24, n);
	memcpy(e + 32, guid, 16);
	tx_set64(e + 48, flushed);
	tx_set64(e + 56, last);
	for (unsigned i = 0; i < n; i++) {
		uint8_t *d = e + 64 + 32 * i, *s = e + 4096 * (1 + i);

		memcpy(d, "desc", 4);
		memcpy(d + 4, secs[i] + 4092, 4);
		memcpy(d + 8, secs[i], 8);
		tx_set64(d + 16, offs[i]);
		tx_set64(d + 24, seq);
		memcpy(s, "data", 4);
		tx_set32(s + 4, (uint32_t)(seq >> 32));
		memcpy(s + 8, secs[i] + 8, 4084);
		tx_set32(s + 4092, (uint32_t)seq);
	}
	tx_set32(e + 4, tx_crc(e, len, 4));
	tx_pwrite(m, e, len, m->log_off);
	free(e);
	/* The header names the log: the current one with the next sequence. */
	memcpy(h, m->hdr, sizeof(h));
	tx_set64(h + 8, m->seq + 1);
	memcpy(h + 48, guid, 16);
	tx_put_hdr(m, !m->slot, h);
}

/* An image with block 0 present (seed 1) and a crafted log that moves block 0
 * to ZERO and block 1 to fresh space past the old end holding seed 2. */
static uint64_t tx_dirty_image(const char *path, uint64_t *old_end)
{
	static const uint8_t guid[16] = { 1, 2,	 3,  4,	 5,  6,	 7, 8,
					  9, 10, 11, 12, 13, 14, 15 };
	uint8_t secs[1][4096], *blk = malloc(MIB);
	struct tx_img m;
	uint64_t off;
	dc_disk *d;

	vt_create("vhdx", path, "create=4M;block=1M;overwrite");
	d = h_openf(0, "vhdx:%s", path);
	vt_write(d, 0, 2048, 1);
	dc_close(d);
	tx_img_open(&m, path);
	*old_end = m.size;
	off = m.size; /* data first, as a writer would */
	h_fill(blk, MIB, 2);
	tx_pwrite(&m, blk, MIB, off);
	tx_pread(&m, secs[0], 4096, m.bat_off);
	tx_set64(secs[0], 2);
	tx_set64(secs[0] + 8, off | 6);
	tx_log_entry(&m, guid, 5, 1, secs, &m.bat_off, off + MIB, off + MIB);
	tx_img_close(&m);
	free(blk);
	return off;
}

START_TEST(vhdx_log_replay)
{
	char *path = h_tmppath(".vhdx");
	uint8_t *buf = malloc(2 * MIB);
	uint64_t old_end, off;
	struct tx_img m;
	dc_disk *d;
	char *desc;

	off = tx_dirty_image(path, &old_end);
	/* Read-only: replayed in memory, the file stays as it is. */
	d = h_openf(DC_OPEN_READ_ONLY, "vhdx:%s", path);
	ck_assert_int_eq(dc_read(d, 0, buf, 2 * MIB), 0);
	ck_assert_int_lt(h_check_zero(buf, MIB), 0);
	ck_assert_int_lt(h_check(buf + MIB, MIB, 2), 0);
	desc = vt_describe(d);
	vt_has(desc, "log=replayed in memory");
	free(desc);
	dc_close(d);
	tx_img_open(&m, path);
	ck_assert(!tx_guid_zero(m.hdr + 48));
	ck_assert_uint_eq(tx_bat(&m, 0) & 7, 6);
	tx_img_close(&m);
	/* Writable: replayed into the file, and the log is empty afterwards. */
	d = h_openf(0, "vhdx:%s", path);
	desc = vt_describe(d);
	vt_has(desc, "log=replayed at open");
	free(desc);
	ck_assert_int_eq(dc_read(d, 0, buf, 2 * MIB), 0);
	ck_assert_int_lt(h_check_zero(buf, MIB), 0);
	ck_assert_int_lt(h_check(buf + MIB, MIB, 2), 0);
	dc_close(d);
	tx_img_open(&m, path);
	ck_assert(tx_guid_zero(m.hdr + 48));
	ck_assert_uint_eq(tx_bat(&m, 0), 2);
	ck_assert_uint_eq(tx_bat(&m, 1), off | 6);
	tx_img_close(&m);

	/* A truncated file (shorter than the log says was flushed) is refused. */
	off = tx_dirty_image(path, &old_end);
	ck_assert_int_eq(truncate(path, (off_t)old_end), 0);
	h_open_fails(DC_OPEN_READ_ONLY, 0, "truncated", "vhdx:%s", path);

	/* A LogGuid with no valid entry: nothing was applied, nothing to replay. */
	off = tx_dirty_image(path, &old_end);
	tx_img_open(&m, path);
	{
		uint8_t junk[4096];

		memset(junk, 0x5a, sizeof(junk));
		tx_pwrite(&m, junk, sizeof(junk), m.log_off);
	}
	tx_img_close(&m);
	d = h_openf(DC_OPEN_READ_ONLY, "vhdx:%s", path);
	ck_assert_int_eq(dc_read(d, 0, buf, MIB), 0);
	ck_assert_int_lt(h_check(buf, MIB, 1), 0);
	dc_close(d);
	dc_close(h_openf(0, "vhdx:%s", path));
	tx_img_open(&m, path);
	ck_assert(tx_guid_zero(m.hdr + 48));
	tx_img_close(&m);
	free(buf);
	free(path);
}
END_TEST

/* A writer that dies after a flush: what was flushed is there, the log is
 * replayed, and what the plugin wrote to the log is valid. */
START_TEST(vhdx_crash_after_flush)
{
	char *path = h_tmppath(".vhdx");
	uint8_t *model = calloc(1, 8 * MIB);
	struct tx_img m;
	int status;
	pid_t pid;
	dc_disk *d;

	/* The child opens the first disk: the core's threads do not survive fork. */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dc_disk *w = NULL;
		uint8_t b[64 * 512];

		if (dc_open(h_fmt("vhdx:%s;create=8M;block=1M", path), 0, &w))
			_exit(2);
		for (uint64_t i = 0; i < 8; i++) {
			h_fill(b, sizeof(b), i + 1);
			if (dc_write(w, i * 2048 + i, b, sizeof(b), 0))
				_exit(3);
		}
		if (dc_flush(w))
			_exit(4);
		h_fill(b, sizeof(b), 100);
		dc_write(w, 10, b, sizeof(b), 0); /* not flushed: either content */
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	for (uint64_t i = 0; i < 8; i++)
		h_fill(model + (i * 2048 + i) * 512, 64 * 512, i + 1);
	tx_img_open(&m, path);
	ck_assert(!tx_guid_zero(m.hdr + 48)); /* the log is live */
	tx_img_close(&m);
	d = h_openf(DC_OPEN_READ_ONLY, "vhdx:%s", path);
	vt_check(d, model, 74, 16384 - 74);
	dc_close(d);
	d = h_openf(0, "vhdx:%s", path);
	vt_check(d, model, 74, 16384 - 74);
	dc_close(d);
	tx_img_open(&m, path);
	ck_assert(tx_guid_zero(m.hdr + 48));
	tx_img_close(&m);
	free(model);
	free(path);
}
END_TEST

void vhdx_add_log(TCase *tc)
{
	tcase_add_test(tc, vhdx_log_replay);
	tcase_add_test(tc, vhdx_crash_after_flush);
}
