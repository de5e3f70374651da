/* SPDX-License-Identifier: MIT */
/* The crypt decorator: the IEEE 1619 known answer through the plugin, the
 * on-disk layout (same ciphertext however a request is split or scattered),
 * the caller's buffer left alone, key-file refusals, metadata and forwarding,
 * concurrency across queues and completion threads, and the conformance suite. */
#include "conformance.h"
#include "harness.h"

#include <diskcore/plugin.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KIB 1024
#define MIB (1024 * 1024)

/* IEEE Std 1619-2007, XTS-AES-256 key of vectors 10-14: digits of e, then of pi. */
static const uint8_t tc_kat_key[64] = {
	0x27, 0x18, 0x28, 0x18, 0x28, 0x45, 0x90, 0x45, 0x23, 0x53, 0x60, 0x28, 0x74,
	0x71, 0x35, 0x26, 0x62, 0x49, 0x77, 0x57, 0x24, 0x70, 0x93, 0x69, 0x99, 0x59,
	0x57, 0x49, 0x66, 0x96, 0x76, 0x27, 0x31, 0x41, 0x59, 0x26, 0x53, 0x58, 0x97,
	0x93, 0x23, 0x84, 0x62, 0x64, 0x33, 0x83, 0x27, 0x95, 0x02, 0x88, 0x41, 0x97,
	0x16, 0x93, 0x99, 0x37, 0x51, 0x05, 0x82, 0x09, 0x74, 0x94, 0x45, 0x92,
};
/* Plaintext 00..1f under tweak 0. */
static const uint8_t tc_kat_ct[32] = {
	0x3a, 0x06, 0x0a, 0x8c, 0xad, 0x11, 0x5a, 0x6f, 0x44, 0x57, 0x2e,
	0x37, 0x59, 0xe4, 0x3c, 0x8f, 0xca, 0xd8, 0xbf, 0xcb, 0x23, 0x3f,
	0xf6, 0xad, 0x71, 0xb7, 0xc1, 0xe7, 0xca, 0x65, 0x15, 0x08,
};

static char *tc_key;  /* the KAT key, mode 0600 */
static char *tc_key2; /* [0; 32] + [1; 32], as OpenVMM's test_basic_read_write */
static char *tc_key3; /* [0xab; 32] + [0xcd; 32], as OpenVMM's conformance run */

/* --- Known answer ---------------------------------------------------------- */

START_TEST(kat_through_plugin)
{
	char *path = h_tmpfile(MIB, NULL);
	uint8_t pt[512] = { 0 }, raw[1024], back[1024];
	dc_disk *d;

	for (int i = 0; i < 32; i++)
		pt[i] = (uint8_t)i;
	d = h_openf(0, "crypt:xts-aes-256:%s:file:%s", tc_key, path);
	ck_assert_int_eq(dc_sector_size(d), 512);
	ck_assert_int_eq(dc_write(d, 0, pt, sizeof(pt), 0), 0);
	ck_assert_int_eq(dc_write(d, 1, pt, sizeof(pt), 0), 0);
	ck_assert_int_eq(dc_flush(d), 0);
	dc_close(d);

	h_pread_file(path, 0, raw, sizeof(raw));
	/* XTS blocks do not depend on later blocks of the data unit, so the
	 * first 32 bytes of a 512-byte unit are the 32-byte vector's. */
	ck_assert_msg(memcmp(raw, tc_kat_ct, 32) == 0,
		      "sector 0 is not the IEEE 1619 vector");
	/* Tweak 1 (sector 1) must give another ciphertext. */
	ck_assert(memcmp(raw + 512, tc_kat_ct, 32) != 0);
	ck_assert(memcmp(raw + 512, raw, 512) != 0);

	d = h_openf(0, "crypt:xts-aes-256:%s:file:%s", tc_key, path);
	ck_assert_int_eq(dc_read(d, 0, back, sizeof(back)), 0);
	ck_assert(memcmp(back, pt, 512) == 0);
	ck_assert(memcmp(back + 512, pt, 512) == 0);
	dc_close(d);
	free(path);
}
END_TEST

/* Ciphertext written by hand (the KAT) decrypts through the plugin. */
START_TEST(kat_decrypt)
{
	char *path = h_tmpfile(MIB, NULL);
	uint8_t pt[512] = { 0 }, raw[512], back[512];
	dc_disk *d;

	for (int i = 0; i < 32; i++)
		pt[i] = (uint8_t)i;
	/* Encrypt once through the plugin to get the whole sector, then put it
	 * at sector 0 of a fresh file with the vector's first 32 bytes. */
	d = h_openf(0, "crypt:xts-aes-256:%s:file:%s", tc_key, path);
	ck_assert_int_eq(dc_write(d, 0, pt, sizeof(pt), 0), 0);
	dc_close(d);
	h_pread_file(path, 0, raw, sizeof(raw));
	free(path);
	path = h_tmpfile(MIB, NULL);
	memcpy(raw, tc_kat_ct, 32);
	h_pwrite_file(path, 0, raw, sizeof(raw));
	d = h_openf(0, "crypt:xts-aes-256:%s:file:%s", tc_key, path);
	ck_assert_int_eq(dc_read(d, 0, back, sizeof(back)), 0);
	ck_assert(memcmp(back, pt, 32) == 0);
	dc_close(d);
	free(path);
}
END_TEST

/* --- Data path ------------------------------------------------------------- */

/* Write len bytes of seed at sector and read them back. */
static void tc_round_trip(dc_disk *d, uint64_t sector, size_t len, uint64_t seed)
{
	uint8_t *buf = h_alloc(len), *back = h_alloc(len);

	h_fill(buf, len, seed);
	ck_assert_int_eq(dc_write(d, sector, buf, len, 0), 0);
	ck_assert_int_eq(dc_read(d, sector, back, len), 0);
	ck_assert(memcmp(buf, back, len) == 0);
	free(buf);
	free(back);
}

/* OpenVMM's test_basic_read_write: 64 KiB written at sector 10 reads back. */
START_TEST(basic_read_write)
{
	dc_disk *d = h_openf(0, "crypt:xts-aes-256:%s:mem:1M", tc_key2);

	tc_round_trip(d, 10, 64 * KIB, 10);
	dc_close(d);
}
END_TEST

/* The caller's buffer is never modified by a write, whatever its shape. */
START_TEST(write_keeps_buffer)
{
	dc_disk *d =
		h_openf(0, "crypt;threads=4;split=64K:xts-aes-256:%s:mem:4M", tc_key);
	size_t len = 1 * MIB;
	uint8_t *buf = h_alloc(len);
	struct iovec iov[3];

	h_fill(buf, len, 3);
	ck_assert_int_eq(dc_write(d, 0, buf, 4 * KIB, 0), 0);
	ck_assert_int_eq(h_check(buf, len, 3), -1);
	ck_assert_int_eq(dc_write(d, 8, buf, len, 0), 0); /* split across threads */
	ck_assert_int_eq(h_check(buf, len, 3), -1);
	iov[0] = (struct iovec){ buf, 100 };
	iov[1] = (struct iovec){ buf + 100, 1000 };
	iov[2] = (struct iovec){ buf + 1100, 2 * KIB - 1100 };
	ck_assert_int_eq(dc_writev(d, 3000, iov, 3, 0), 0);
	ck_assert_int_eq(h_check(buf, len, 3), -1);
	dc_close(d);
	free(buf);
}
END_TEST

/* Write `len` bytes of seed through spec's crypt at `sector`, return the raw file. */
static uint8_t *tc_cipher_image(const char *crypt_prefix, uint64_t sector, size_t len,
				const struct iovec *shape, int nshape)
{
	char *path = h_tmpfile(4 * MIB, NULL);
	uint8_t *buf = h_alloc(len), *img = malloc(4 * MIB);
	struct iovec iov[16];
	dc_disk *d;

	ck_assert(img && nshape <= 16);
	h_fill(buf, len, 77);
	d = h_openf(0, "%s:xts-aes-256:%s:file:%s", crypt_prefix, tc_key, path);
	if (shape) {
		for (int i = 0; i < nshape; i++)
			iov[i] = (struct iovec){ buf + (size_t)shape[i].iov_base,
						 shape[i].iov_len };
		ck_assert_int_eq(dc_writev(d, sector, iov, nshape, 0), 0);
	} else {
		ck_assert_int_eq(dc_write(d, sector, buf, len, 0), 0);
	}
	dc_close(d);
	h_pread_file(path, 0, img, 4 * MIB);
	free(buf);
	free(path);
	return img;
}

/* Splitting across threads and scattering across iovecs change nothing on disk. */
START_TEST(layout_independent_of_shape)
{
	size_t len = 1 * MIB + 3 * 512;
	/* offset (as a pointer) and length of each segment */
	const struct iovec shape[] = {
		{ (void *)0, 100 },
		{ (void *)100, 412 },
		{ (void *)512, 1 },
		{ (void *)513, 4095 },
		{ (void *)4608, 7 },
		{ (void *)4615, 65536 },
		{ (void *)70151, len - 70151 },
	};
	uint8_t *a = tc_cipher_image("crypt;threads=1", 5, len, NULL, 0);
	uint8_t *b = tc_cipher_image("crypt;threads=4;split=64K", 5, len, NULL, 0);
	uint8_t *c = tc_cipher_image("crypt;threads=1", 5, len, shape, 7);
	uint8_t *e = tc_cipher_image("crypt;threads=3;split=64K", 5, len, shape, 7);

	ck_assert(memcmp(a, b, 4 * MIB) == 0);
	ck_assert(memcmp(a, c, 4 * MIB) == 0);
	ck_assert(memcmp(a, e, 4 * MIB) == 0);
	ck_assert_int_eq(h_check_zero(a, 5 * 512), -1);
	ck_assert_int_ne(h_check_zero(a + 5 * 512, 512), -1);
	free(a);
	free(b);
	free(c);
	free(e);
}
END_TEST

/* Reads decrypt in place, in scattered and split buffers too. */
START_TEST(read_shapes)
{
	dc_disk *d =
		h_openf(0, "crypt;threads=4;split=64K:xts-aes-256:%s:mem:4M", tc_key);
	size_t len = 2 * MIB;
	uint8_t *buf = h_alloc(len), *back = h_alloc(len);
	struct iovec iov[4];

	h_fill(buf, len, 9);
	ck_assert_int_eq(dc_write(d, 1, buf, len, 0), 0);
	ck_assert_int_eq(dc_read(d, 1, back, len), 0);
	ck_assert_int_eq(h_check(back, len, 9), -1);
	memset(back, 0, len);
	iov[0] = (struct iovec){ back, 300 };
	iov[1] = (struct iovec){ back + 300, 1 };
	iov[2] = (struct iovec){ back + 301, 200 * KIB };
	iov[3] = (struct iovec){ back + 301 + 200 * KIB, len - 301 - 200 * KIB };
	ck_assert_int_eq(dc_readv(d, 1, iov, 4), 0);
	ck_assert_int_eq(h_check(back, len, 9), -1);
	dc_close(d);
	free(buf);
	free(back);
}
END_TEST

START_TEST(sector_4k)
{
	dc_disk *d = h_openf(0, "crypt:xts-aes-256:%s:mem:1M;sector=4096", tc_key);
	uint8_t buf[4096];
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_size, 4096);
	ck_assert_uint_eq(info.sector_count, 256);
	tc_round_trip(d, 7, 64 * KIB, 4);
	ck_assert_int_eq(dc_read(d, 256, buf, 4096), DC_E_ILLEGAL_BLOCK);
	dc_close(d);
}
END_TEST

/* Two keys give different ciphertext; the wrong key reads noise. */
START_TEST(wrong_key_reads_noise)
{
	char *path = h_tmpfile(MIB, NULL);
	uint8_t *buf = h_alloc(8 * KIB), *back = h_alloc(8 * KIB);
	dc_disk *d;

	h_fill(buf, 8 * KIB, 5);
	d = h_openf(0, "crypt:xts-aes-256:%s:file:%s", tc_key, path);
	ck_assert_int_eq(dc_write(d, 0, buf, 8 * KIB, 0), 0);
	dc_close(d);
	d = h_openf(0, "crypt:xts-aes-256:%s:file:%s", tc_key2, path);
	ck_assert_int_eq(dc_read(d, 0, back, 8 * KIB), 0);
	ck_assert(memcmp(buf, back, 8 * KIB) != 0);
	dc_close(d);
	free(buf);
	free(back);
	free(path);
}
END_TEST

/* The inner disk's errors come back unchanged, and the queue keeps working. */
START_TEST(inner_errors)
{
	char *path = h_tmpfile(MIB, NULL);
	uint8_t *buf = h_alloc(256 * KIB);
	dc_disk *d = h_openf(0, "crypt;threads=2;split=64K:xts-aes-256:%s:file:%s",
			     tc_key, path);
	struct dc_io io = { .op = DC_OP_READ, .sector = 0, .iovcnt = 1 };
	struct iovec iov = { buf, 256 * KIB };
	int detail = 0;

	h_fill(buf, 256 * KIB, 6);
	ck_assert_int_eq(dc_write(d, 0, buf, 256 * KIB, 0), 0);
	ck_assert_int_eq(truncate(path, 128 * KIB), 0);
	io.iov = &iov;
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(dc_execute(d, &io, &detail), DC_E_IO);
	ck_assert_int_eq(dc_read(d, 0, buf, 128 * KIB), 0);
	ck_assert_int_eq(h_check(buf, 128 * KIB, 6), -1);
	dc_close(d);

	ck_assert_int_eq(truncate(path, MIB), 0);
	d = h_openf(DC_OPEN_READ_ONLY, "crypt:xts-aes-256:%s:file:%s", tc_key, path);
	ck_assert_int_eq(dc_write(d, 0, buf, 4096, 0), DC_E_READ_ONLY);
	ck_assert_int_eq(dc_read(d, 0, buf, 128 * KIB), 0);
	ck_assert_int_eq(h_check(buf, 128 * KIB, 6), -1);
	dc_close(d);
	free(buf);
	free(path);
}
END_TEST

/* --- Metadata and forwarding ----------------------------------------------- */

START_TEST(describe_never_shows_key)
{
	dc_disk *d = h_openf(0, "crypt:xts-aes-256:%s:mem:1M", tc_key);
	struct h_desc t;
	char hex[129];

	for (int i = 0; i < 64; i++)
		snprintf(hex + 2 * i, 3, "%02x", tc_kat_key[i]);
	h_describe(d, "crypt", &t);
	ck_assert(t.seen);
	ck_assert_pstr_eq(h_desc_get(&t, "cipher"), "xts-aes-256");
	ck_assert_pstr_eq(h_desc_get(&t, "key_file"), tc_key);
	for (int i = 0; i < t.n; i++) {
		/* Neither raw bytes nor hex of either half, in any value. */
		ck_assert(!memmem(t.values[i], strlen(t.values[i]), tc_kat_key, 8));
		ck_assert(!strstr(t.values[i], "2718281828"));
		ck_assert(!strstr(t.values[i], "3141592653"));
		ck_assert(!strcasestr(t.values[i], hex + 16));
	}
	dc_close(d);
}
END_TEST

START_TEST(metadata)
{
	dc_disk *d = h_openf(0, "crypt:xts-aes-256:%s:mem:1M", tc_key);
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_count, 2048);
	ck_assert_uint_eq(info.sector_size, 512);
	ck_assert_str_eq(info.disk_type, "crypt");
	/* Inner zeroes decrypt to noise. */
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_UNSPECIFIED);
	ck_assert(!(info.flags & DC_INFO_EJECT));
	ck_assert(!(info.flags & DC_INFO_PR));
	dc_close(d);
}
END_TEST

START_TEST(eject_not_forwarded)
{
	dc_disk *d = h_openf(0, "crypt:xts-aes-256:%s:mem:1M", tc_key);

	ck_assert_int_eq(dc_eject(d), DC_E_UNSUPPORTED_EJECT);
	dc_close(d);
}
END_TEST

START_TEST(pr_and_unmap_forwarded)
{
	dc_disk *d = h_openf(0, "crypt:xts-aes-256:%s:prwrap:mem:1M", tc_key);
	struct dc_pr_caps caps = { 0 };
	struct dc_pr_report rep = { 0 };
	struct dc_info info;

	dc_get_info(d, &info);
	ck_assert(info.flags & DC_INFO_PR);
	ck_assert_int_eq(dc_pr_caps(d, &caps), 0);
	ck_assert(caps.types & (1u << DC_PR_WRITE_EXCLUSIVE));
	ck_assert_int_eq(dc_pr_register(d, NULL, 0x1234, -1), 0);
	ck_assert_int_eq(dc_pr_report(d, &rep), 0);
	ck_assert_uint_eq(rep.generation, 1);
	ck_assert_int_eq(dc_unmap(d, 0, 8, 0), 0);
	ck_assert_int_eq(dc_unmap(d, 2048, 1, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_flush(d), 0);
	dc_close(d);

	d = h_openf(0, "crypt:xts-aes-256:%s:mem:1M", tc_key);
	ck_assert_int_eq(dc_pr_caps(d, &caps), DC_E_UNSUPPORTED);
	dc_close(d);
}
END_TEST

/* Resize goes to the inner disk; crypt's size follows it live. */
START_TEST(resize_forwarded)
{
	dc_disk *d = h_openf(0, "crypt:xts-aes-256:%s:mem:1M", tc_key);
	uint64_t count = 0;
	uint8_t buf[512];

	ck_assert_int_eq(dc_resize(d, 1024), 0);
	ck_assert_int_eq(dc_wait_resize(d, 2048, 5000, &count), 0);
	ck_assert_uint_eq(count, 1024);
	tc_round_trip(d, 1000, 24 * 512, 11);
	ck_assert_int_eq(dc_read(d, 1024, buf, sizeof(buf)), DC_E_ILLEGAL_BLOCK);
	dc_close(d);
}
END_TEST

/* --- Key files ------------------------------------------------------------- */

START_TEST(bad_key_files)
{
	static const struct {
		size_t len;
		const char *needle;
	} sizes[] = {
		{ 32, "32 bytes, expected exactly 64" },
		{ 65, "65 bytes, expected exactly 64" },
		{ 128, "128 bytes, expected exactly 64" },
		{ 0, "0 bytes, expected exactly 64" },
	};
	uint8_t key[128];
	char *p;

	for (int i = 0; i < 128; i++)
		key[i] = (uint8_t)(i * 37 + 11);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		p = h_tmpfile_data(key, sizes[i].len, 0600, ".key");
		h_open_fails(0, 0, sizes[i].needle, "crypt:xts-aes-256:%s:mem:1M", p);
		free(p);
	}
	memcpy(key + 32, key, 32);
	p = h_tmpfile_data(key, 64, 0600, ".key");
	h_open_fails(0, 0, "halves are equal", "crypt:xts-aes-256:%s:mem:1M", p);
	free(p);
	p = h_tmppath(".missing");
	h_open_fails(0, 0, "No such file", "crypt:xts-aes-256:%s:mem:1M", p);
	free(p);
	p = h_tmpsubdir();
	h_open_fails(0, 0, "not a regular file", "crypt:xts-aes-256:%s:mem:1M", p);
	free(p);
}
END_TEST

/* A key file that is not a regular file is refused before anything is read:
 * a FIFO with no writer would block the open, or the read, for ever (the alarm
 * turns that hang into a failure); a device would feed endless bytes. */
START_TEST(key_file_not_regular)
{
	char *fifo = h_tmppath(".fifo");

	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	alarm(20);
	h_open_fails(0, -EINVAL, "not a regular file (a FIFO)",
		     "crypt:xts-aes-256:%s:mem:1M", fifo);
	h_open_fails(0, -EINVAL, "not a regular file (a character device)",
		     "crypt:xts-aes-256:/dev/zero:mem:1M");
	alarm(0);
	free(fifo);
}
END_TEST

START_TEST(bad_specs)
{
	h_open_fails(0, 0, "unsupported cipher", "crypt:aes-xts-plain64:%s:mem:1M",
		     tc_key);
	h_open_fails(0, 0, "unsupported cipher", "crypt:XTS-AES-256:%s:mem:1M", tc_key);
	h_open_fails(0, 0, "missing", "crypt:xts-aes-256:%s", tc_key);
	h_open_fails(0, 0, "threads", "crypt;threads=0:xts-aes-256:%s:mem:1M", tc_key);
	h_open_fails(0, 0, "threads", "crypt;threads=99:xts-aes-256:%s:mem:1M", tc_key);
	h_open_fails(0, 0, "split", "crypt;split=4K:xts-aes-256:%s:mem:1M", tc_key);
	/* The inner disk's own error comes through. */
	h_open_fails(0, 0, "mem", "crypt:xts-aes-256:%s:mem:banana", tc_key);
}
END_TEST

START_TEST(key_file_mode_warning)
{
	char *loose = h_tmpfile_data(tc_kat_key, 64, 0644, ".key");
	char *log = h_tmppath(".log");
	int fd = open(log, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int saved = dup(2);
	char text[4096] = { 0 };
	dc_disk *d;

	ck_assert(fd >= 0 && saved >= 0);
	fflush(stderr);
	dup2(fd, 2);
	d = h_openf(0, "crypt:xts-aes-256:%s:mem:1M", loose);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	ck_assert_int_ge(pread(fd, text, sizeof(text) - 1, 0), 0);
	close(fd);
	ck_assert_msg(strstr(text, "readable by group or others") && strstr(text, loose),
		      "no warning for a 0644 key file; stderr was: %s", text);
	dc_close(d);
	free(loose);
	free(log);
}
END_TEST

/* --- Concurrency ----------------------------------------------------------- */

struct tc_worker {
	dc_disk *disk;
	unsigned id;
	int failures;
};

struct tc_slot {
	uint8_t *buf;
	struct iovec iov;
	bool busy;
};

/* Each thread owns a queue and a region; it keeps 8 requests in flight,
 * alternating writes and read-backs of its own blocks. */
static void *tc_worker_run(void *arg)
{
	struct tc_worker *w = arg;
	const size_t blk = 16 * KIB;
	const unsigned depth = 8, rounds = 40;
	uint64_t base = (uint64_t)w->id * 1024; /* 512 KiB per thread */
	struct tc_slot slot[8];
	struct dc_completion comp[8];
	dc_queue *q;

	if (dc_queue_open(w->disk, DC_QUEUE_POLL, &q) < 0) {
		w->failures++;
		return NULL;
	}
	for (unsigned i = 0; i < depth; i++)
		slot[i].buf = h_alloc(blk);
	for (unsigned r = 0; r < rounds; r++) {
		unsigned inflight = 0;
		bool rd = r % 2;

		for (unsigned i = 0; i < depth; i++) {
			uint64_t seed = w->id * 1000 + (r / 2) * 10 + i;
			struct dc_io io = {
				.op = rd ? DC_OP_READ : DC_OP_WRITE,
				.sector = base + i * (blk / 512),
				.iov = &slot[i].iov,
				.iovcnt = 1,
				.user_data = &slot[i],
			};

			if (rd)
				memset(slot[i].buf, 0, blk);
			else
				h_fill(slot[i].buf, blk, seed);
			slot[i].iov = (struct iovec){ slot[i].buf, blk };
			if (dc_submit(q, &io) < 0)
				w->failures++;
			else
				inflight++;
		}
		while (inflight) {
			int n = h_reap(q, comp, 8, 30000);

			for (int k = 0; k < n; k++)
				if (comp[k].result)
					w->failures++;
			inflight -= (unsigned)n;
		}
		if (rd)
			for (unsigned i = 0; i < depth; i++)
				if (h_check(slot[i].buf, blk,
					    w->id * 1000 + (r / 2) * 10 + i) != -1)
					w->failures++;
	}
	dc_queue_close(q);
	for (unsigned i = 0; i < depth; i++)
		free(slot[i].buf);
	return NULL;
}

static void tc_threads(const char *inner)
{
	dc_disk *d = h_openf(0, "crypt:xts-aes-256:%s:%s", tc_key, inner);
	struct tc_worker w[4];
	pthread_t t[4];

	for (unsigned i = 0; i < 4; i++) {
		w[i] = (struct tc_worker){ .disk = d, .id = i };
		ck_assert_int_eq(pthread_create(&t[i], NULL, tc_worker_run, &w[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ck_assert_msg(w[i].failures == 0, "thread %u: %d failures", i,
			      w[i].failures);
	}
	dc_close(d);
}

START_TEST(threads_inline_completions)
{
	tc_threads("mem:4M");
}
END_TEST

/* file: completes on the worker pool, so units come back from other threads. */
START_TEST(threads_pool_completions)
{
	char *path = h_tmpfile(4 * MIB, NULL);

	tc_threads(path);
	free(path);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("crypt");
	TCase *tc = tcase_create("crypt");
	uint8_t key2[64];
	char *t;

	/* The plugin is built only with libgcrypt (meson option crypt). */
	if (!h_have_plugin("crypt"))
		h_skip("the crypt plugin was not built (no libgcrypt?)");
	tc_key = h_tmpfile_data(tc_kat_key, sizeof(tc_kat_key), 0600, ".key");
	memset(key2, 0, 32);
	memset(key2 + 32, 1, 32);
	tc_key2 = h_tmpfile_data(key2, sizeof(key2), 0600, ".key");
	memset(key2, 0xab, 32);
	memset(key2 + 32, 0xcd, 32);
	tc_key3 = h_tmpfile_data(key2, sizeof(key2), 0600, ".key");

	tcase_add_test(tc, kat_through_plugin);
	tcase_add_test(tc, kat_decrypt);
	tcase_add_test(tc, basic_read_write);
	tcase_add_test(tc, write_keeps_buffer);
	tcase_add_test(tc, layout_independent_of_shape);
	tcase_add_test(tc, read_shapes);
	tcase_add_test(tc, sector_4k);
	tcase_add_test(tc, wrong_key_reads_noise);
	tcase_add_test(tc, inner_errors);
	tcase_add_test(tc, describe_never_shows_key);
	tcase_add_test(tc, metadata);
	tcase_add_test(tc, eject_not_forwarded);
	tcase_add_test(tc, pr_and_unmap_forwarded);
	tcase_add_test(tc, resize_forwarded);
	tcase_add_test(tc, bad_key_files);
	tcase_add_test(tc, key_file_not_regular);
	tcase_add_test(tc, bad_specs);
	tcase_add_test(tc, key_file_mode_warning);
	tcase_add_test(tc, threads_inline_completions);
	tcase_add_test(tc, threads_pool_completions);
	suite_add_tcase(s, tc);

	/* OpenVMM's disk_crypt conformance: key halves 0xab / 0xcd over 1 MiB. */
	conformance_add(s, "crypt-mem",
			(t = h_fmt("crypt:xts-aes-256:%s:mem:1M", tc_key3)));
	free(t);
	conformance_add(s, "crypt-file",
			(t = h_fmt("crypt:xts-aes-256:%s:file:@TMP@", tc_key)));
	free(t);
	conformance_add(s, "crypt-mem-4k",
			(t = h_fmt("crypt:xts-aes-256:%s:mem:1M;sector=4096", tc_key)));
	free(t);
	conformance_add(
		s, "crypt-split-memdiff-file",
		(t = h_fmt(
			 "crypt;threads=2;split=64K:xts-aes-256:%s:memdiff:file:@TMP:4M@",
			 tc_key)));
	free(t);
	return h_run(s);
}
