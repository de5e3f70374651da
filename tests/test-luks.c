/* SPDX-License-Identifier: MIT */
/* The luks decorator over volumes that `cryptsetup luksFormat` made (LUKS1 and
 * LUKS2; PBKDF2, Argon2i and Argon2id key slots; 512- and 4096-byte sectors;
 * 256- and 512-bit keys): metadata and describe, data landing in the payload and
 * never in the header, passphrase and key-file forms, key slot choice, the
 * refusals (wrong passphrase, corrupt header, LUKS2 checksum mismatch with the
 * secondary header as a fallback, unsupported cipher, bad specs), forwarding,
 * and the conformance suite. tests/test-luks-oracle.sh checks the ciphertext
 * against python3-cryptography and qemu. */
#include "conformance.h"
#include "harness.h"

#include <diskcore/plugin.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KIB 1024
#define MIB (1024 * 1024)

/* Cheap KDF costs, so that every conformance case can open its disk quickly. */
#define TL_PBKDF2 "--pbkdf pbkdf2 --pbkdf-force-iterations 1000"
#define TL_ARGON2ID                                              \
	"--pbkdf argon2id --pbkdf-memory 64 --pbkdf-parallel 1 " \
	"--pbkdf-force-iterations 4"
#define TL_ARGON2I                                              \
	"--pbkdf argon2i --pbkdf-memory 64 --pbkdf-parallel 1 " \
	"--pbkdf-force-iterations 4"
#define TL_SMALL2 "--luks2-metadata-size 16k --luks2-keyslots-size 512k"

struct tl_image {
	const char *name;
	uint64_t size;
	const char *args;
	int version;
	uint32_t sector; /* the LUKS sector */
	uint64_t offset; /* payload, bytes */
	int key_bytes;
	const char *kdf;
	const char *cipher; /* NULL: aes-xts-plain64 */
	char *path;	    /* the template, made in main() */
};

static struct tl_image tl_images[] = {
	{ "luks1", 3 * MIB, "--type luks1 --hash sha256 " TL_PBKDF2, 1, 512, 2 * MIB, 64,
	  "pbkdf2", NULL, NULL },
	{ "luks2-argon2id-4k", 2 * MIB,
	  "--type luks2 --sector-size 4096 " TL_ARGON2ID " " TL_SMALL2, 2, 4096, MIB, 64,
	  "argon2id", NULL, NULL },
	{ "luks2-pbkdf2", 2 * MIB,
	  "--type luks2 --sector-size 512 " TL_PBKDF2 " " TL_SMALL2, 2, 512, MIB, 64,
	  "pbkdf2", NULL, NULL },
	{ "luks2-argon2i-aes128", 2 * MIB,
	  "--type luks2 --key-size 256 --sector-size 4096 " TL_ARGON2I " " TL_SMALL2, 2,
	  4096, MIB, 32, "argon2i", NULL, NULL },
	/* cryptsetup's LUKS1 default for years (issue 14), and with LUKS2. */
	{ "luks1-cbc-essiv", 3 * MIB,
	  "--type luks1 --cipher aes-cbc-essiv:sha256 --key-size 256 --hash sha256 " TL_PBKDF2,
	  1, 512, 2 * MIB, 32, "pbkdf2", "aes-cbc-essiv:sha256", NULL },
	{ "luks2-cbc-essiv-4k", 2 * MIB,
	  "--type luks2 --cipher aes-cbc-essiv:sha256 --key-size 256 --sector-size 4096 " TL_PBKDF2
	  " " TL_SMALL2,
	  2, 4096, MIB, 32, "pbkdf2", "aes-cbc-essiv:sha256", NULL },
	{ "luks1-cbc-plain64", 3 * MIB,
	  "--type luks1 --cipher aes-cbc-plain64 --key-size 256 --hash sha256 " TL_PBKDF2,
	  1, 512, 2 * MIB, 32, "pbkdf2", "aes-cbc-plain64", NULL },
};
#define TL_LUKS1 (&tl_images[0])
#define TL_LUKS2_4K (&tl_images[1])
#define TL_LUKS2 (&tl_images[2])
#define TL_NIMAGES (sizeof(tl_images) / sizeof(tl_images[0]))

static char *tl_pass;	  /* passphrase-file: "correct horse\nsecond line\n" */
static char *tl_pass_raw; /* "correct horse", for cryptsetup --key-file */
static char *tl_wrong;	  /* passphrase-file: "wrong horse\n" */
static char *tl_keyfile;  /* 100 binary bytes with a newline inside; slot 1 of TL_LUKS2 */
static char *tl_vk;	  /* the volume key (64 bytes; the first 32 for AES-128) */
static uint8_t tl_vk_bytes[64];

/* A LUKS image made by cryptsetup with the test volume key and passphrase. */
static char *tl_format(uint64_t size, const char *args, int key_bytes)
{
	char *path = h_tmpfile(size, ".img");
	char *vk = key_bytes == 64 ? tl_vk :
				     h_tmpfile_data(tl_vk_bytes, 32, 0600, ".key");
	int rc;

	rc = h_sh("cryptsetup luksFormat -q --batch-mode --key-file %s "
		  "--volume-key-file %s %s %s",
		  tl_pass_raw, vk, args, path);
	if (vk != tl_vk)
		free(vk);
	if (rc != 0) {
		free(path);
		return NULL;
	}
	return path;
}

static void tl_copy(const char *from, const char *to)
{
	ck_assert_int_eq(h_sh("cp %s %s", from, to), 0);
}

/* A private copy of a template. */
static char *tl_clone(const struct tl_image *im)
{
	char *path = h_tmppath(".img");

	tl_copy(im->path, path);
	return path;
}

static int tl_prepare(const char *path, uint64_t size, void *arg)
{
	const struct tl_image *im = arg;

	if (size != im->size)
		return -EINVAL;
	return h_sh("cp %s %s", im->path, path) == 0 ? 0 : -EIO;
}

/* Flip the low bit of the byte at off. */
static void tl_flip(const char *path, off_t off)
{
	uint8_t c;

	h_pread_file(path, off, &c, 1);
	c ^= 0x01;
	h_pwrite_file(path, off, &c, 1);
}

/* --- describe ------------------------------------------------------------- */

/* The spec of a volume opened with the test passphrase. */
#define TL_SPEC "luks;passphrase-file=%s:file:%s"

static dc_disk *tl_open(const char *path)
{
	return h_openf(0, TL_SPEC, tl_pass, path);
}

/* Opening path with the test passphrase fails with a message containing want. */
static void tl_refused(const char *want, const char *path)
{
	h_open_fails(0, 0, want, TL_SPEC, tl_pass, path);
}

/* --- Opening every kind of image ------------------------------------------ */

START_TEST(open_every_image)
{
	const struct tl_image *im = &tl_images[_i];
	dc_disk *d = tl_open(im->path);
	struct h_desc t;
	struct dc_info info;
	char hex[129], buf[64];

	dc_get_info(d, &info);
	ck_assert_uint_eq(info.sector_size, im->sector);
	ck_assert_uint_eq(info.sector_count, (im->size - im->offset) / im->sector);
	ck_assert_str_eq(info.disk_type, im->version == 1 ? "luks1" : "luks2");
	ck_assert_uint_eq(info.unmap_behavior, DC_UNMAP_UNSPECIFIED);
	ck_assert(info.flags & DC_INFO_HAS_DISK_ID);
	ck_assert(!(info.flags & DC_INFO_EJECT));
	ck_assert_uint_ge(info.physical_sector_size, info.sector_size);

	h_describe(d, "luks", &t);
	ck_assert(t.seen);
	ck_assert_pstr_eq(h_desc_get(&t, "version"),
			  im->version == 1 ? "LUKS1" : "LUKS2");
	ck_assert_pstr_eq(h_desc_get(&t, "cipher"),
			  im->cipher ? im->cipher : "aes-xts-plain64");
	ck_assert_pstr_eq(h_desc_get(&t, "key_slot"), "0");
	ck_assert_pstr_eq(h_desc_get(&t, "kdf"), im->kdf);
	snprintf(buf, sizeof(buf), "%d", im->key_bytes * 8);
	ck_assert_pstr_eq(h_desc_get(&t, "key_bits"), buf);
	snprintf(buf, sizeof(buf), "%u", im->sector);
	ck_assert_pstr_eq(h_desc_get(&t, "sector_size"), buf);
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)im->offset);
	ck_assert_pstr_eq(h_desc_get(&t, "payload_offset"), buf);
	ck_assert_pstr_eq(h_desc_get(&t, "passphrase_file"), tl_pass);
	/* The volume key never shows, raw or in hex, nor does the passphrase. */
	for (int i = 0; i < 64; i++)
		snprintf(hex + 2 * i, 3, "%02x", tl_vk_bytes[i]);
	for (int i = 0; i < t.n; i++) {
		ck_assert(!memmem(t.values[i], strlen(t.values[i]), tl_vk_bytes, 6));
		for (int k = 0; k + 12 <= 128; k += 12) {
			char piece[13];

			memcpy(piece, hex + k, 12);
			piece[12] = 0;
			ck_assert_msg(!strcasestr(t.values[i], piece),
				      "describe %s shows the volume key", t.keys[i]);
		}
		ck_assert(!strstr(t.values[i], "correct horse"));
	}
	dc_close(d);
}
END_TEST

/* Written data lands in the payload, encrypted, and never in the header. */
START_TEST(data_in_payload_only)
{
	const struct tl_image *im = &tl_images[_i];
	char *path = tl_clone(im);
	size_t hdr_len = im->offset, len = 64 * KIB;
	uint8_t *hdr = h_alloc(hdr_len), *hdr2 = h_alloc(hdr_len);
	uint8_t *buf = h_alloc(len), *got = h_alloc(len), *raw = h_alloc(len);
	uint64_t n, last;
	dc_disk *d;

	h_pread_file(path, 0, hdr, hdr_len);
	d = tl_open(path);
	n = dc_sector_count(d);
	last = n - len / im->sector;
	h_fill(buf, len, 1);
	ck_assert_int_eq(dc_write(d, 0, buf, len, 0), 0);
	h_fill(buf, len, 2);
	ck_assert_int_eq(dc_write(d, last, buf, len, DC_IO_FUA), 0);
	ck_assert_int_eq(dc_flush(d), 0);
	ck_assert_int_eq(dc_read(d, 0, got, len), 0);
	ck_assert_int_eq(h_check(got, len, 1), -1);
	ck_assert_int_eq(dc_read(d, last, got, len), 0);
	ck_assert_int_eq(h_check(got, len, 2), -1);
	ck_assert_int_eq(dc_read(d, n, got, im->sector), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_write(d, n - 1, buf, 2 * im->sector, 0), DC_E_ILLEGAL_BLOCK);
	ck_assert_int_eq(dc_unmap(d, n, 1, 0), DC_E_ILLEGAL_BLOCK);
	dc_close(d);

	/* The header is as cryptsetup left it; the payload holds ciphertext. */
	h_pread_file(path, 0, hdr2, hdr_len);
	ck_assert(memcmp(hdr, hdr2, hdr_len) == 0);
	h_pread_file(path, (off_t)im->offset, raw, len);
	h_fill(buf, len, 1);
	ck_assert(memcmp(raw, buf, len) != 0);
	ck_assert_int_ne(h_check_zero(raw, len), -1);
	h_pread_file(path, (off_t)(im->offset + last * im->sector), raw, len);
	h_fill(buf, len, 2);
	ck_assert(memcmp(raw, buf, len) != 0);

	/* Reopened (key derived again), the data is there. */
	d = tl_open(path);
	ck_assert_int_eq(dc_read(d, last, got, len), 0);
	ck_assert_int_eq(h_check(got, len, 2), -1);
	dc_close(d);
	free(hdr);
	free(hdr2);
	free(buf);
	free(got);
	free(raw);
	free(path);
}
END_TEST

/* --- Allocation map ------------------------------------------------------- */

struct tl_map {
	struct dc_extent e[4];
	int n;
};

static int tl_collect(void *arg, const struct dc_extent *e)
{
	struct tl_map *m = arg;

	ck_assert_int_lt(m->n, 4);
	m->e[m->n++] = *e;
	return 0;
}

static void tl_expect(const struct tl_map *m, int i, uint64_t off, uint64_t len,
		      uint32_t flags)
{
	ck_assert_int_lt(i, m->n);
	ck_assert_msg(
		m->e[i].offset == off && m->e[i].length == len && m->e[i].flags == flags,
		"extent %d: %llu+%llu flags %u, expected %llu+%llu flags %u", i,
		(unsigned long long)m->e[i].offset, (unsigned long long)m->e[i].length,
		m->e[i].flags, (unsigned long long)off, (unsigned long long)len, flags);
}

/* A fresh volume over a sparse qcow2 image (file: reports no holes) maps as
 * one hole past the header, not as zeroes (zeroes below are noise above);
 * a written range is data, at the payload's offset in the image. With
 * 4096-byte LUKS sectors a sector is eight of qcow2's. */
START_TEST(map_holes_and_data)
{
	const struct tl_image *im = _i ? TL_LUKS2_4K : TL_LUKS2;
	char *raw = tl_format(8 * MIB, im->args, im->key_bytes),
	     *qcow = h_tmppath(".qcow2");
	uint64_t size = 8 * MIB - im->offset;
	uint8_t *buf = h_alloc(64 * KIB);
	struct tl_map m = { 0 };
	dc_disk *d;

	ck_assert_ptr_nonnull(raw);
	ck_assert_int_eq(h_sh("qemu-img convert -O qcow2 %s %s", raw, qcow), 0);
	d = h_openf(0, "luks;passphrase-file=%s:qcow2:%s", tl_pass, qcow);
	ck_assert_uint_eq(dc_sector_count(d) * im->sector, size);
	ck_assert_int_eq(dc_map(d, 0, size, tl_collect, &m), 0);
	ck_assert_int_eq(m.n, 1);
	tl_expect(&m, 0, 0, size, DC_EXTENT_HOLE);

	h_fill(buf, 64 * KIB, 3);
	ck_assert_int_eq(dc_write(d, MIB / im->sector, buf, 64 * KIB, 0), 0);
	m.n = 0;
	ck_assert_int_eq(dc_map(d, 0, size, tl_collect, &m), 0);
	ck_assert_int_eq(m.n, 3);
	tl_expect(&m, 0, 0, MIB, DC_EXTENT_HOLE);
	tl_expect(&m, 1, MIB, 64 * KIB, 0);
	tl_expect(&m, 2, MIB + 64 * KIB, size - MIB - 64 * KIB, DC_EXTENT_HOLE);
	dc_close(d);
	free(buf);
	free(qcow);
	free(raw);
}
END_TEST

/* Each data unit is tweaked with its own index: equal plaintext in two units
 * gives different ciphertext, and moving ciphertext moves garbage. */
START_TEST(units_tweaked_by_index)
{
	const struct tl_image *im = &tl_images[_i];
	char *path = tl_clone(im);
	uint32_t ss = im->sector;
	uint8_t *buf = h_alloc(2 * ss), *raw = h_alloc(2 * ss), *got = h_alloc(ss);
	dc_disk *d = tl_open(path);

	memset(buf, 0x5a, 2 * ss);
	ck_assert_int_eq(dc_write(d, 4, buf, 2 * ss, 0), 0);
	dc_close(d);
	h_pread_file(path, (off_t)(im->offset + 4 * ss), raw, 2 * ss);
	ck_assert(memcmp(raw, raw + ss, ss) != 0);
	/* Sector 5's ciphertext copied to sector 7 does not decrypt to 0x5a. */
	h_pwrite_file(path, (off_t)(im->offset + 7 * ss), raw + ss, ss);
	d = tl_open(path);
	ck_assert_int_eq(dc_read(d, 7, got, ss), 0);
	ck_assert(memcmp(got, buf, ss) != 0);
	ck_assert_int_eq(dc_read(d, 5, got, ss), 0);
	ck_assert(memcmp(got, buf, ss) == 0);
	dc_close(d);
	free(buf);
	free(raw);
	free(got);
	free(path);
}
END_TEST

/* --- Passphrases, key files and key slots --------------------------------- */

START_TEST(wrong_passphrase)
{
	h_open_fails(0, 0, "no key slot matches the passphrase", TL_SPEC, tl_wrong,
		     TL_LUKS1->path);
	h_open_fails(0, 0, "no key slot matches the passphrase", TL_SPEC, tl_wrong,
		     TL_LUKS2_4K->path);
	/* As a key file the whole content counts, newline included. */
	h_open_fails(0, 0, "no key slot matches the key file", "luks;keyfile=%s:file:%s",
		     tl_pass, TL_LUKS2->path);
}
END_TEST

START_TEST(keyfile_and_slots)
{
	struct h_desc t;
	dc_disk *d;

	/* The raw passphrase as a key file opens slot 0. */
	d = h_openf(0, "luks;keyfile=%s:file:%s", tl_pass_raw, TL_LUKS2->path);
	h_describe(d, "luks", &t);
	ck_assert_pstr_eq(h_desc_get(&t, "key_slot"), "0");
	ck_assert_pstr_eq(h_desc_get(&t, "key_file"), tl_pass_raw);
	dc_close(d);
	/* The binary key file opens slot 1 (added with luksAddKey). */
	d = h_openf(0, "luks;keyfile=%s:file:%s", tl_keyfile, TL_LUKS2->path);
	h_describe(d, "luks", &t);
	ck_assert_pstr_eq(h_desc_get(&t, "key_slot"), "1");
	dc_close(d);
	d = h_openf(0, "luks;keyfile=%s;slot=1:file:%s", tl_keyfile, TL_LUKS2->path);
	dc_close(d);
	h_open_fails(0, 0, "no key slot matches the key file (tried key slot 0)",
		     "luks;keyfile=%s;slot=0:file:%s", tl_keyfile, TL_LUKS2->path);
	h_open_fails(0, 0, "no key slot matches the passphrase (tried key slots 0, 1)",
		     TL_SPEC, tl_wrong, TL_LUKS2->path);
	h_open_fails(0, 0, "key slot 5 is not in use", "luks;keyfile=%s;slot=5:file:%s",
		     tl_keyfile, TL_LUKS2->path);
	h_open_fails(0, 0, "key slot 9 is not in use", "luks;keyfile=%s;slot=9:file:%s",
		     tl_keyfile, TL_LUKS1->path);
}
END_TEST

/* Key and passphrase files that are not regular files are refused before
 * anything is read: a FIFO with no writer would block for ever (the alarm turns
 * that hang into a failure); a device would feed endless bytes. */
START_TEST(secret_file_not_regular)
{
	const char *img = TL_LUKS1->path;
	char *fifo = h_tmppath(".fifo");

	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	alarm(20);
	h_open_fails(0, -EINVAL, "key file", "luks;keyfile=%s:file:%s", fifo, img);
	h_open_fails(0, -EINVAL, "not a regular file (a FIFO)", "luks;keyfile=%s:file:%s",
		     fifo, img);
	h_open_fails(0, -EINVAL, "not a regular file (a FIFO)",
		     "luks;passphrase-file=%s:file:%s", fifo, img);
	h_open_fails(0, -EINVAL, "not a regular file (a character device)",
		     "luks;keyfile=/dev/zero:file:%s", img);
	alarm(0);
	free(fifo);
}
END_TEST

START_TEST(bad_specs)
{
	const char *img = TL_LUKS1->path;

	h_open_fails(0, 0, "exactly one of keyfile=PATH or passphrase-file=PATH",
		     "luks:file:%s", img);
	h_open_fails(0, 0, "exactly one of", "luks;keyfile=%s;passphrase-file=%s:file:%s",
		     tl_pass, tl_pass, img);
	h_open_fails(0, 0, "exactly one of", "luks;keyfile=:file:%s", img);
	h_open_fails(0, 0, "slot=32: expected 0 to 31", "luks;keyfile=%s;slot=32:file:%s",
		     tl_pass, img);
	h_open_fails(0, 0, "passphrase file /nonexistent/pw: No such file",
		     "luks;passphrase-file=/nonexistent/pw:file:%s", img);
	h_open_fails(0, 0, "expected a regular file", "luks;keyfile=%s:file:%s",
		     h_tmpdir(), img);
	h_open_fails(0, 0, "unknown option", "luks;key=%s:file:%s", tl_pass, img);
}
END_TEST

/* --- Damaged and unsupported headers -------------------------------------- */

START_TEST(not_luks)
{
	char *path = h_tmpfile(4 * MIB, ".img");

	tl_refused("not a LUKS volume", path);
	/* Cut short before the payload. */
	free(path);
	path = tl_clone(TL_LUKS1);
	ck_assert_int_eq(truncate(path, MIB), 0);
	tl_refused(
		"the inner disk (1048576 bytes) ends before the payload offset 2097152",
		path);
	/* Too small to hold even a header. */
	free(path);
	path = h_tmpfile(512, ".img");
	tl_refused("beyond the end of the inner disk", path);
	free(path);
}
END_TEST

START_TEST(corrupt_luks1)
{
	char *path = tl_clone(TL_LUKS1);
	uint8_t b[4];

	/* Key slot 0's state word (offset 208) is neither enabled nor disabled. */
	memcpy(b, "\x12\x34\x56\x78", 4);
	h_pwrite_file(path, 208, b, 4);
	tl_refused("corrupt LUKS1 header: key slot 0 has the invalid state 0x12345678",
		   path);
	/* Key material beyond the payload start. */
	tl_copy(TL_LUKS1->path, path);
	memcpy(b, "\x00\x00\x10\x00", 4); /* sector 4096 */
	h_pwrite_file(path, 208 + 40, b, 4);
	tl_refused("does not fit before the payload", path);
	/* Damaged key material: the digest rejects what it merges to. */
	tl_copy(TL_LUKS1->path, path);
	h_pwrite_file(path, 8 * 512 + 1000, "garbage", 7);
	tl_refused("no key slot matches the passphrase", path);
	/* Unknown version. */
	tl_copy(TL_LUKS1->path, path);
	h_pwrite_file(path, 6, "\x00\x07", 2);
	tl_refused("LUKS version 7 is not supported", path);
	free(path);
}
END_TEST

START_TEST(luks2_checksum)
{
	char *path = tl_clone(TL_LUKS2_4K);
	struct h_desc t;
	dc_disk *d;

	/* A flipped byte in the primary's JSON area: the secondary copy opens. */
	tl_flip(path, 4096 + 20);
	d = tl_open(path);
	h_describe(d, "luks", &t);
	ck_assert_pstr_eq(h_desc_get(&t, "version"), "LUKS2");
	dc_close(d);
	/* A primary that claims the wrong size: the secondary is still found. */
	tl_copy(TL_LUKS2_4K->path, path);
	h_pwrite_file(path, 8, "\0\0\0\0\0\0\x80\0", 8);
	dc_close(tl_open(path));
	tl_copy(TL_LUKS2_4K->path, path);
	tl_flip(path, 4096 + 20);
	/* The same in the secondary (at 16 KiB) too: refused. */
	tl_flip(path, 16 * KIB + 4096 + 20);
	tl_refused("LUKS2 header checksum mismatch (sha256) in the primary header", path);
	/* The label of the binary header is covered too. */
	tl_copy(TL_LUKS2_4K->path, path);
	h_pwrite_file(path, 24, "x", 1);
	h_pwrite_file(path, 16 * KIB + 24, "x", 1);
	tl_refused("checksum mismatch", path);
	/* A damaged primary magic is not a LUKS volume at all. */
	tl_copy(TL_LUKS2_4K->path, path);
	h_pwrite_file(path, 0, "XXXX", 4);
	tl_refused("not a LUKS volume", path);
	free(path);
}
END_TEST

/* Replace every `from` in the JSON area of both LUKS2 header copies (16 KiB
 * each) with `to`, and give each copy a correct SHA-256 checksum again (with
 * coreutils' sha256sum, an implementation other than the plugin's). */
static void tl_luks2_edit(const char *path, const char *from, const char *to)
{
	enum { HDR = 16 * KIB, BIN = 4096, CSUM = 448 };
	char *tmp = h_tmppath(".hdr"), *sum = h_tmppath(".sum");

	for (off_t at = 0; at <= HDR; at += HDR) {
		char *hdr = calloc(1, HDR + 1), *json = calloc(1, 2 * HDR), *p, *q, *hex;
		size_t len;

		ck_assert(hdr && json);
		h_pread_file(path, at, hdr, HDR);
		q = json;
		for (p = hdr + BIN; *p;) {
			if (!strncmp(p, from, strlen(from))) {
				q = stpcpy(q, to);
				p += strlen(from);
			} else {
				*q++ = *p++;
			}
		}
		ck_assert_uint_lt(strlen(json), HDR - BIN);
		memset(hdr + BIN, 0, HDR - BIN);
		memcpy(hdr + BIN, json, strlen(json));
		memset(hdr + CSUM, 0, 64);
		h_pwrite_file(path, at, hdr, HDR); /* keeps the file's size */
		h_write_file(tmp, hdr, HDR, 0600);
		ck_assert_int_eq(h_sh("sha256sum %s | cut -c1-64 >%s", tmp, sum), 0);
		hex = h_read_file(sum, &len);
		ck_assert_uint_ge(len, 64);
		for (int i = 0; i < 32; i++) {
			unsigned v;

			ck_assert_int_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
			hdr[CSUM + i] = (char)v;
		}
		h_pwrite_file(path, at + CSUM, hdr + CSUM, 32);
		free(hex);
		free(hdr);
		free(json);
	}
	unlink(tmp);
	unlink(sum);
	free(tmp);
	free(sum);
}

/* Headers whose checksums are right but whose JSON is wrong or unsupported. */
START_TEST(luks2_bad_json)
{
	static const struct {
		const char *from, *to, *want;
	} cases[] = {
		{ "\"segments\"", "\"segmentz\"",
		  "lacks keyslots, segments, digests or config" },
		{ "\"config\":{", "\"config\":", "is not a JSON object" },
		{ "aes-xts-plain64", "aes-xts-plain65",
		  "unsupported cipher \"aes-xts-plain65\"" },
		{ "\"iv_tweak\":\"0\"", "\"iv_tweak\":\"8\"",
		  "iv_tweak 8 is not supported" },
		{ "\"json_size\":\"12288\"", "\"json_size\":\"12289\"",
		  "json_size does not match" },
		{ "\"stripes\":4000", "\"stripes\":400000",
		  "keyslot 0 has no valid \"af\"" },
		{ "\"sector_size\":512", "\"sector_size\":768", "invalid data segment" },
		{ "\"kdf\":{\"type\":\"pbkdf2\"", "\"kdf\":{\"type\":\"scrypt\"",
		  "no usable key slot (key slot 0: kdf \"scrypt\" is not supported)" },
		{ "\"config\":{",
		  "\"config\":{\"requirements\":{\"mandatory\":[\"online-reencrypt\"]},",
		  "requires \"online-reencrypt\"" },
		{ "\"offset\":\"1048576\"", "\"offset\":\"0\"",
		  "a detached LUKS2 header is not supported" },
		{ "\"offset\":\"1048576\"", "\"offset\":\"65536\"",
		  "overlaps the headers and key slots" },
		{ "\"offset\":\"32768\"", "\"offset\":\"4096\"",
		  "keyslot 0's area (258048 bytes at 4096) lies outside" },
	};
	char *path = tl_clone(TL_LUKS2);
	dc_disk *d;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tl_copy(TL_LUKS2->path, path);
		tl_luks2_edit(path, cases[i].from, cases[i].to);
		tl_refused(cases[i].want, path);
	}
	/* A fixed-size segment: the disk is that size, not the file's rest. */
	tl_copy(TL_LUKS2->path, path);
	tl_luks2_edit(path, "\"size\":\"dynamic\"", "\"size\":\"524288\"");
	d = tl_open(path);
	ck_assert_uint_eq(dc_sector_count(d), 1024);
	dc_close(d);
	/* A fixed size beyond the end of the file. */
	tl_copy(TL_LUKS2->path, path);
	tl_luks2_edit(path, "\"size\":\"dynamic\"", "\"size\":\"1049088\"");
	tl_refused("ends before the end of the 1049088-byte payload", path);
	/* Priority "ignore": such slots open only when named. */
	tl_copy(TL_LUKS2->path, path);
	tl_luks2_edit(path, "\"type\":\"luks2\",", "\"type\":\"luks2\",\"priority\":0,");
	tl_refused("priority \"ignore\": name one with slot=N", path);
	d = h_openf(0, "luks;keyfile=%s;slot=1:file:%s", tl_keyfile, path);
	dc_close(d);
	/* A slot bound to no digest of the segment is never tried. */
	tl_copy(TL_LUKS2->path, path);
	tl_luks2_edit(path, "\"keyslots\":[\"0\",\"1\"]", "\"keyslots\":[\"1\"]");
	h_open_fails(0, 0, "key slot 0 does not unlock the data segment",
		     "luks;passphrase-file=%s;slot=0:file:%s", tl_pass, path);
	tl_refused("no key slot matches the passphrase (tried key slot 1)", path);
	/* An edit that changes nothing opens: the checksums are computed right. */
	tl_copy(TL_LUKS2->path, path);
	tl_luks2_edit(path, "\"keyslots\"", "\"keyslots\"");
	dc_close(tl_open(path));
	free(path);
}
END_TEST

START_TEST(unsupported_cipher)
{
	/* cryptsetup formats twofish only where the kernel has it (through
	 * device-mapper for the key slots): name it in the header instead. */
	static const char
		*const
			bad[] = {
				"twofish-xts-plain64",
				"aes-cbc-essiv:sha1", /* a 20-byte ESSIV key is no AES key */
				"aes-cbc-essiv:nohash",
				"aes-xts-essiv:sha256",
				"aes-cbc-benbi",
			};
	char *path = tl_clone(TL_LUKS2);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *want = h_fmt("unsupported cipher \"%s\": only aes-xts-plain64, "
				   "aes-xts-plain, aes-cbc-essiv:sha256",
				   bad[i]);

		tl_copy(TL_LUKS2->path, path);
		tl_luks2_edit(path, "aes-xts-plain64", bad[i]);
		tl_refused(want, path);
		free(want);
	}
	free(path);
}
END_TEST

/* --- Untrusted headers: limits checked before any work (issue 19) ---------- */

/* A hostile header is refused at once: no key derivation runs. */
#define TL_FAST_MS 2000

/* Opening path with the test passphrase and the options opts (";..." or "")
 * fails quickly with a message containing want. */
static void tl_refused_fast(const char *want, const char *opts, const char *path)
{
	uint64_t t0 = h_now_ms();

	h_open_fails(0, 0, want, "luks;passphrase-file=%s%s:file:%s", tl_pass, opts,
		     path);
	ck_assert_msg(h_now_ms() - t0 < TL_FAST_MS, "refusing %s took %llu ms", want,
		      (unsigned long long)(h_now_ms() - t0));
}

START_TEST(limit_argon2_memory)
{
	char *path = tl_clone(TL_LUKS2_4K);
	dc_disk *d;

	/* 4 GiB of Argon2 memory: over the 1 GiB default. */
	tl_luks2_edit(path, "\"memory\":64", "\"memory\":4194304");
	tl_refused_fast("no usable key slot (key slot 0: argon2id wants 4194304 KiB of "
			"memory, over pbkdf-memory-max (1048576 KiB): raise it with "
			";pbkdf-memory-max=SIZE)",
			"", path);
	tl_refused_fast("over pbkdf-memory-max (2097152 KiB)", ";pbkdf-memory-max=2G",
			path);
	h_open_fails(0, 0, "key slot 0: argon2id wants 4194304 KiB",
		     "luks;passphrase-file=%s;slot=0:file:%s", tl_pass, path);
	/* The option sets the limit both ways. */
	tl_refused_fast("argon2id wants 64 KiB of memory, over pbkdf-memory-max (32 KiB)",
			";pbkdf-memory-max=32K", TL_LUKS2_4K->path);
	d = h_openf(0, "luks;passphrase-file=%s;pbkdf-memory-max=64K:file:%s", tl_pass,
		    TL_LUKS2_4K->path);
	dc_close(d);
	h_open_fails(0, 0, "pbkdf-memory-max=4096: expected at least 8K",
		     "luks;passphrase-file=%s;pbkdf-memory-max=4096:file:%s", tl_pass,
		     TL_LUKS2_4K->path);
	free(path);
}
END_TEST

START_TEST(limit_argon2_work)
{
	char *path = tl_clone(TL_LUKS2_4K);
	dc_disk *d;

	/* 64 KiB four times is 256 KiB of work. */
	tl_refused_fast("argon2id fills 64 KiB 4 times, over pbkdf-work-max (128 KiB in "
			"all): raise it with ;pbkdf-work-max=SIZE",
			";pbkdf-work-max=128K", TL_LUKS2_4K->path);
	d = h_openf(0, "luks;passphrase-file=%s;pbkdf-work-max=256K:file:%s", tl_pass,
		    TL_LUKS2_4K->path);
	dc_close(d);
	/* Four billion passes; a thousand threads. */
	tl_luks2_edit(path, "\"time\":4", "\"time\":4000000000");
	tl_refused_fast("argon2id fills 64 KiB 4000000000 times, over pbkdf-work-max "
			"(16777216 KiB in all)",
			"", path);
	tl_copy(TL_LUKS2_4K->path, path);
	tl_luks2_edit(path, "\"cpus\":1", "\"cpus\":1000");
	tl_refused_fast("argon2id wants 1000 threads; at most 64 run here", "", path);
	free(path);
}
END_TEST

START_TEST(limit_pbkdf2_iterations)
{
	char *path = tl_clone(TL_LUKS2);
	uint8_t be[4] = { 0x7f, 0xff, 0xff, 0xff };
	dc_disk *d;

	/* Both key slots of TL_LUKS2 at 2^31 - 1 iterations (digest: 1000). */
	tl_luks2_edit(
		path,
		"\"kdf\":{\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":1000",
		"\"kdf\":{\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":2147483647");
	tl_refused_fast(
		"no usable key slot (key slot 0: 2147484647 PBKDF2 iterations (key "
		"slot and digest), over pbkdf-iterations-max (32000000 in all): "
		"raise it with ;pbkdf-iterations-max=N)",
		"", path);
	/* LUKS1: a key slot's count, then the digest's. */
	tl_copy(TL_LUKS1->path, path);
	h_pwrite_file(path, 208 + 4, be, 4);
	tl_refused_fast("key slot 0: 2147484647 PBKDF2 iterations", "", path);
	tl_copy(TL_LUKS1->path, path);
	h_pwrite_file(path, 164, be, 4);
	tl_refused_fast("key slot 0: 2147484647 PBKDF2 iterations", "", path);
	/* Summed over the slots tried: slot 0 (2000) leaves too little for 1. */
	h_open_fails(0, 0,
		     "no key slot matches the key file (tried key slot 0; skipped key "
		     "slot 1: 2000 PBKDF2 iterations (key slot and digest), over "
		     "pbkdf-iterations-max (3000 in all, 2000 spent on other slots)",
		     "luks;keyfile=%s;pbkdf-iterations-max=3000:file:%s", tl_keyfile,
		     TL_LUKS2->path);
	d = h_openf(0, "luks;keyfile=%s;pbkdf-iterations-max=4000:file:%s", tl_keyfile,
		    TL_LUKS2->path);
	dc_close(d);
	d = h_openf(0, "luks;keyfile=%s;slot=1;pbkdf-iterations-max=2000:file:%s",
		    tl_keyfile, TL_LUKS2->path);
	dc_close(d);
	free(path);
}
END_TEST

/* Big-endian 64-bit v at off in path. */
static void tl_put_be64(const char *path, off_t off, uint64_t v)
{
	uint8_t b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (56 - 8 * i));
	h_pwrite_file(path, off, b, 8);
}

START_TEST(limit_luks2_header_size)
{
	char *path = tl_clone(TL_LUKS2);

	/* 8 MiB is no size LUKS2 allows (both copies say so). */
	tl_put_be64(path, 8, 8 * MIB);
	tl_put_be64(path, 16 * KIB + 8, 8 * MIB);
	tl_refused_fast("corrupt LUKS2 header: the primary header's size 8388608 is not "
			"one the LUKS2 specification allows (16 KiB to 4 MiB, a power "
			"of two)",
			"", path);
	/* 4 MiB is, but not in a 2 MiB file. */
	tl_put_be64(path, 8, 4 * MIB);
	tl_put_be64(path, 16 * KIB + 8, 4 * MIB);
	tl_refused_fast("the primary header (4194304 bytes at 0) ends beyond the inner "
			"disk (2097152 bytes)",
			"", path);
	free(path);
}
END_TEST

START_TEST(limit_keyslot_area)
{
	char *path = tl_clone(TL_LUKS2);
	uint8_t be[4];

	/* LUKS2: a key slot area (and the data) past the end of the file. */
	tl_luks2_edit(path, "\"keyslots_size\":\"524288\"",
		      "\"keyslots_size\":\"16777216\"");
	tl_luks2_edit(path, "\"offset\":\"1048576\"", "\"offset\":\"33554432\"");
	tl_luks2_edit(path, "\"offset\":\"32768\"", "\"offset\":\"8388608\"");
	tl_refused_fast("corrupt LUKS header: key slot 0's key material (258048 bytes at "
			"8388608) lies beyond the end of the inner disk (2097152 bytes)",
			"", path);
	/* LUKS1: the same (payload at 512 MiB, key material at 256 MiB). */
	tl_copy(TL_LUKS1->path, path);
	memcpy(be, "\x00\x10\x00\x00", 4);
	h_pwrite_file(path, 104, be, 4);
	memcpy(be, "\x00\x08\x00\x00", 4);
	h_pwrite_file(path, 208 + 40, be, 4);
	tl_refused_fast("key slot 0's key material (256000 bytes at 268435456) lies "
			"beyond the end of the inner disk (3145728 bytes)",
			"", path);
	free(path);
}
END_TEST

START_TEST(limit_luks2_counts)
{
	char *path = tl_clone(TL_LUKS2);

	tl_luks2_edit(path, "\"digests\":{",
		      "\"digests\":{\"8\":{},\"9\":{},\"10\":{},\"11\":{},\"12\":{},"
		      "\"13\":{},\"14\":{},\"15\":{},");
	tl_refused_fast("corrupt LUKS2 header: 9 digests; LUKS2 allows at most 8", "",
			path);
	/* 33 keyslots (TL_LUKS2 has two): more than LUKS2's 32. */
	tl_copy(TL_LUKS2->path, path);
	{
		char more[31 * 12 + 16] = "\"keyslots\":{", *p = more + strlen(more);

		for (int i = 2; i <= 32; i++)
			p += sprintf(p, "\"%d\":{},", i);
		tl_luks2_edit(path, "\"keyslots\":{", more);
	}
	tl_refused_fast("corrupt LUKS2 header: 33 keyslots; LUKS2 allows at most 32", "",
			path);
	/* A second data segment. */
	tl_copy(TL_LUKS2->path, path);
	tl_luks2_edit(path, "\"segments\":{", "\"segments\":{\"1\":{},");
	tl_refused_fast("2 data segments (an interrupted re-encryption?): only one "
			"segment \"0\" is supported",
			"", path);
	free(path);
}
END_TEST

/* --- Forwarding ------------------------------------------------------------ */

START_TEST(ops_forwarded)
{
	char *path = tl_clone(TL_LUKS1);
	dc_disk *d = h_openf(0, "luks;passphrase-file=%s:prwrap:file:%s", tl_pass, path);
	struct dc_pr_caps caps = { 0 };
	struct dc_info info;
	uint8_t *hdr = h_alloc(TL_LUKS1->offset), *hdr2 = h_alloc(TL_LUKS1->offset);
	uint8_t *buf = h_alloc(64 * KIB), *raw = h_alloc(64 * KIB);

	dc_get_info(d, &info);
	ck_assert(info.flags & DC_INFO_PR);
	ck_assert_int_eq(dc_pr_caps(d, &caps), 0);
	ck_assert(caps.types & (1u << DC_PR_WRITE_EXCLUSIVE));
	ck_assert_int_eq(dc_pr_register(d, NULL, 0x77, -1), 0);
	ck_assert_int_eq(dc_eject(d), DC_E_UNSUPPORTED_EJECT);
	ck_assert_int_eq(dc_flush(d), 0);
	ck_assert_int_eq(dc_resize(d, 10), -ENOTSUP);
	ck_assert_msg(strstr(dc_last_error(), "resize the inner disk"), "resize: %s",
		      dc_last_error());

	/* Unmap reaches the payload at its offset, not the header. */
	h_pread_file(path, 0, hdr, TL_LUKS1->offset);
	memset(buf, 0xee, 64 * KIB);
	ck_assert_int_eq(dc_write(d, 0, buf, 64 * KIB, 0), 0);
	ck_assert_int_eq(dc_unmap(d, 0, 128, 0), 0);
	ck_assert_int_eq(dc_unmap(d, 0, 0, 0), 0);
	dc_close(d);
	h_pread_file(path, 0, hdr2, TL_LUKS1->offset);
	ck_assert(memcmp(hdr, hdr2, TL_LUKS1->offset) == 0);
	/* The file under prwrap punches holes: the payload's first 64 KiB are
	 * zero again (if the file system supports it). */
	d = h_openf(0, "file:%s", path);
	dc_get_info(d, &info);
	dc_close(d);
	h_pread_file(path, (off_t)TL_LUKS1->offset, raw, 64 * KIB);
	if (info.unmap_behavior == DC_UNMAP_ZEROES)
		ck_assert_int_eq(h_check_zero(raw, 64 * KIB), -1);
	else
		fprintf(stderr,
			"note: %s does not punch holes; unmapped data not checked\n",
			h_tmpdir());
	free(hdr);
	free(hdr2);
	free(buf);
	free(raw);
	free(path);
}
END_TEST

START_TEST(read_only)
{
	dc_disk *d = h_openf(DC_OPEN_READ_ONLY, TL_SPEC, tl_pass, TL_LUKS1->path);
	uint8_t buf[512] = { 0 };

	ck_assert_int_eq(dc_read(d, 0, buf, sizeof(buf)), 0);
	ck_assert_int_eq(dc_write(d, 0, buf, sizeof(buf), 0), DC_E_READ_ONLY);
	dc_close(d);
}
END_TEST

int main(void)
{
	static const char pass[] = "correct horse\nsecond line\n";
	Suite *s = suite_create("luks");
	TCase *tc = tcase_create("luks");
	uint8_t key[100];
	int fd;

	if (!h_have_plugin("luks"))
		h_skip("the luks plugin was not built "
		       "(no libcrypto, libgcrypt, libargon2 or json-c?)");
	if (!h_have_program("cryptsetup"))
		h_skip("cryptsetup is not installed (Debian: cryptsetup-bin)");
	fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, tl_vk_bytes, sizeof(tl_vk_bytes)) != 64)
		abort();
	close(fd);
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(i * 37 + 11);
	key[50] = '\n';
	tl_pass = h_tmpfile_data(pass, strlen(pass), 0600, ".key");
	tl_pass_raw = h_tmpfile_data("correct horse", 13, 0600, ".key");
	tl_wrong = h_tmpfile_data("wrong horse\n", 12, 0600, ".key");
	tl_keyfile = h_tmpfile_data(key, sizeof(key), 0600, ".key");
	tl_vk = h_tmpfile_data(tl_vk_bytes, sizeof(tl_vk_bytes), 0600, ".key");
	for (size_t i = 0; i < TL_NIMAGES; i++) {
		tl_images[i].path = tl_format(tl_images[i].size, tl_images[i].args,
					      tl_images[i].key_bytes);
		if (!tl_images[i].path)
			h_skip("cryptsetup luksFormat %s failed on a plain file",
			       tl_images[i].args);
	}
	if (h_sh("cryptsetup luksAddKey -q --batch-mode --key-file %s " TL_PBKDF2
		 " %s %s",
		 tl_pass_raw, TL_LUKS2->path, tl_keyfile) != 0)
		h_skip("cryptsetup luksAddKey failed on a plain file");

	tcase_add_loop_test(tc, open_every_image, 0, TL_NIMAGES);
	tcase_add_loop_test(tc, data_in_payload_only, 0, TL_NIMAGES);
	tcase_add_loop_test(tc, units_tweaked_by_index, 0, TL_NIMAGES);
	tcase_add_test(tc, wrong_passphrase);
	tcase_add_test(tc, keyfile_and_slots);
	tcase_add_test(tc, bad_specs);
	tcase_add_test(tc, secret_file_not_regular);
	tcase_add_test(tc, not_luks);
	tcase_add_test(tc, corrupt_luks1);
	tcase_add_test(tc, luks2_checksum);
	tcase_add_test(tc, luks2_bad_json);
	tcase_add_test(tc, unsupported_cipher);
	tcase_add_test(tc, limit_argon2_memory);
	tcase_add_test(tc, limit_argon2_work);
	tcase_add_test(tc, limit_pbkdf2_iterations);
	tcase_add_test(tc, limit_luks2_header_size);
	tcase_add_test(tc, limit_keyslot_area);
	tcase_add_test(tc, limit_luks2_counts);
	tcase_add_test(tc, ops_forwarded);
	tcase_add_test(tc, read_only);
	if (h_have_program("qemu-img"))
		tcase_add_loop_test(tc, map_holes_and_data, 0, 2);
	suite_add_tcase(s, tc);

	for (size_t i = 0; i < TL_NIMAGES; i++) {
		struct conformance_opts opts = { .prepare = tl_prepare,
						 .arg = &tl_images[i] };
		char *name = h_fmt("luks-%s", tl_images[i].name);
		char *t = h_fmt("luks;passphrase-file=%s:file:@TMP:%lluK@", tl_pass,
				(unsigned long long)(tl_images[i].size / KIB));

		conformance_add_opts(s, name, t, &opts);
		free(t);
		free(name);
	}
	return h_run(s);
}
