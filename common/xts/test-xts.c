/* SPDX-License-Identifier: MIT */
/* xts.h outside a disk: xts_crypt_buf() against OpenSSL's AES-XTS (the unit
 * number as a 16-byte little-endian tweak, dm-crypt's plain64) for both key
 * sizes and several unit sizes, the round trip in place; xts_crypt_units() in
 * CBC mode against OpenSSL's AES-CBC with dm-crypt's plain64, plain and
 * essiv:sha256 IVs; and the secret helpers (zeroed memory, comparison, key
 * files that are not regular files). */
#include "xts/vaes.h"
#include "xts/xts.h"

#include "check-run.h"

#include <check.h>
#include <diskcore/diskcore.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void fill(uint8_t *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)rand_r(&seed);
}

/* OpenSSL, one unit at a time. */
static void openssl_xts(uint32_t key_len, const uint8_t *key, uint64_t first,
			uint32_t unit, uint8_t *out, const uint8_t *in, size_t len)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	const EVP_CIPHER *cipher = key_len == 32 ? EVP_aes_128_xts() : EVP_aes_256_xts();

	ck_assert_ptr_nonnull(c);
	for (size_t off = 0; off < len; off += unit) {
		uint8_t iv[16] = { 0 };
		uint64_t n = first + off / unit;
		int outl;

		for (int i = 0; i < 8; i++)
			iv[i] = (uint8_t)(n >> (8 * i));
		ck_assert_int_eq(EVP_EncryptInit_ex(c, cipher, NULL, key, iv), 1);
		ck_assert_int_eq(
			EVP_EncryptUpdate(c, out + off, &outl, in + off, (int)unit), 1);
		ck_assert_int_eq(outl, (int)unit);
	}
	EVP_CIPHER_CTX_free(c);
}

START_TEST(matches_openssl)
{
	static const uint32_t units[] = { 512, 4096 };
	static const uint32_t keys[] = { 32, 64 };
	size_t len = 3 * 4096;
	uint8_t key[64], *in = malloc(len), *ours = malloc(len), *ref = malloc(len);

	ck_assert(in && ours && ref);
	fill(key, sizeof(key), 1);
	fill(in, len, 2);
	for (size_t k = 0; k < 2; k++) {
		for (size_t u = 0; u < 2; u++) {
			uint64_t first =
				(UINT64_C(1) << 40) + 7; /* high tweak bytes too */

			ck_assert_int_eq(xts_crypt_buf(keys[k], key, 1, first, units[u],
						       ours, in, len),
					 0);
			openssl_xts(keys[k], key, first, units[u], ref, in, len);
			ck_assert_mem_eq(ours, ref, len);
			/* Decrypt in place. */
			ck_assert_int_eq(xts_crypt_buf(keys[k], key, 0, first, units[u],
						       ours, ours, len),
					 0);
			ck_assert_mem_eq(ours, in, len);
		}
	}
	free(in);
	free(ours);
	free(ref);
}
END_TEST

/* vaes.c against OpenSSL: unit sizes that leave blocks after the wide loop,
 * unit counts across the tweak batches, in place and not, the 32-bit IV
 * wrapping; then the same disk through libgcrypt (d.generic). */
START_TEST(vaes_matches_openssl)
{
	static const uint32_t units[] = { 16, 48, 272, 512, 4096 };
	static const size_t counts[] = { 1, 7, 16, 17, 35 };
	size_t len = 35 * 4096;
	uint8_t key[64], *in = malloc(len), *ours = malloc(len), *ref = malloc(len);
	uint64_t first = UINT32_MAX - 20; /* plain (iv32) wraps inside a run */
	struct xts_vaes_key k;

	ck_assert(in && ours && ref);
	fill(key, sizeof(key), 5);
	fill(in, len, 6);
	if (!xts_vaes_usable())
		return; /* the generic path is checked by the other tests */
	for (uint32_t kl = 32; kl <= 64; kl += 32) {
		ck_assert_int_eq(xts_vaes_setkey(&k, key, kl), 0);
		for (size_t u = 0; u < 5; u++) {
			for (size_t c = 0; c < 5; c++) {
				size_t n = counts[c] * units[u];

				xts_vaes_units(&k, 1, first, false, units[u], counts[c],
					       ours, in);
				openssl_xts(kl, key, first, units[u], ref, in, n);
				ck_assert_mem_eq(ours, ref, n);
				xts_vaes_units(&k, 0, first, false, units[u], counts[c],
					       ours, ours);
				ck_assert_mem_eq(ours, in, n);
			}
		}
	}
	/* iv32: unit 2^32 + i is tweaked as i. */
	xts_vaes_units(&k, 1, first, true, 512, 35, ours, in);
	openssl_xts(64, key, first, 512, ref, in, 20 * 512);
	ck_assert_mem_eq(ours, ref, 20 * 512);
	openssl_xts(64, key, 0, 512, ref, in + 21 * 512, 14 * 512);
	ck_assert_mem_eq(ours + 21 * 512, ref, 14 * 512);
	ck_assert_int_eq(xts_vaes_setkey(&k, key, 48), -EINVAL);
	xts_vaes_wipe(&k);
	free(in);
	free(ours);
	free(ref);
}
END_TEST

START_TEST(generic_matches_vaes)
{
	size_t len = 19 * 512;
	uint8_t key[64], *in = malloc(len), *a = malloc(len), *b = malloc(len);
	struct xts_disk d = { .key_len = 64, .key = key };

	ck_assert(in && a && b);
	fill(key, sizeof(key), 7);
	fill(in, len, 8);
	ck_assert_int_eq(xts_crypt_units(&d, 1, 99, 512, a, in, len), 0);
	d.generic = true;
	ck_assert_int_eq(xts_crypt_units(&d, 1, 99, 512, b, in, len), 0);
	ck_assert_mem_eq(a, b, len);
	d.iv32 = true;
	ck_assert_int_eq(xts_crypt_units(&d, 1, UINT32_MAX - 3, 512, b, in, len), 0);
	d.generic = false;
	ck_assert_int_eq(xts_crypt_units(&d, 1, UINT32_MAX - 3, 512, a, in, len), 0);
	ck_assert_mem_eq(a, b, len);
	free(in);
	free(a);
	free(b);
}
END_TEST

/* OpenSSL's AES-CBC, one unit at a time; with essiv (a 32-byte key) the IV
 * is the unit number encrypted by AES-256-ECB under it. */
static void openssl_cbc(uint32_t key_len, const uint8_t *key, const uint8_t *essiv,
			uint64_t first, uint32_t unit, uint8_t *out, const uint8_t *in,
			size_t len)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	const EVP_CIPHER *cipher = key_len == 16 ? EVP_aes_128_cbc() :
				   key_len == 24 ? EVP_aes_192_cbc() :
						   EVP_aes_256_cbc();
	int outl;

	ck_assert_ptr_nonnull(c);
	for (size_t off = 0; off < len; off += unit) {
		uint8_t iv[16] = { 0 }, eiv[16];
		uint64_t n = first + off / unit;

		for (int i = 0; i < 8; i++)
			iv[i] = (uint8_t)(n >> (8 * i));
		if (essiv) {
			ck_assert_int_eq(EVP_EncryptInit_ex(c, EVP_aes_256_ecb(), NULL,
							    essiv, NULL),
					 1);
			EVP_CIPHER_CTX_set_padding(c, 0);
			ck_assert_int_eq(EVP_EncryptUpdate(c, eiv, &outl, iv, 16), 1);
			memcpy(iv, eiv, 16);
		}
		ck_assert_int_eq(EVP_EncryptInit_ex(c, cipher, NULL, key, iv), 1);
		EVP_CIPHER_CTX_set_padding(c, 0);
		ck_assert_int_eq(
			EVP_EncryptUpdate(c, out + off, &outl, in + off, (int)unit), 1);
		ck_assert_int_eq(outl, (int)unit);
	}
	EVP_CIPHER_CTX_free(c);
}

START_TEST(cbc_matches_openssl)
{
	static const uint32_t keys[] = { 16, 24, 32 };
	size_t len = 3 * 4096;
	uint8_t key[32], essiv[32], *in = malloc(len), *ours = malloc(len),
				    *ref = malloc(len);
	uint64_t first = (UINT64_C(1) << 32) + 5; /* plain: the IV wraps */

	ck_assert(in && ours && ref);
	fill(key, sizeof(key), 3);
	fill(in, len, 4);
	ck_assert_int_eq(EVP_Digest(key, 32, essiv, NULL, EVP_sha256(), NULL), 1);
	for (size_t k = 0; k < 3; k++) {
		for (int iv = 0; iv < 3; iv++) { /* plain64, plain, essiv */
			struct xts_disk d = { .key_len = keys[k],
					      .key = key,
					      .mode = XTS_MODE_CBC,
					      .iv32 = iv == 1,
					      .essiv_len = iv == 2 ? 32 : 0,
					      .essiv_key = iv == 2 ? essiv : NULL };
			uint32_t unit = k == 1 ? 4096 : 512;

			ck_assert_int_eq(
				xts_crypt_units(&d, 1, first, unit, ours, in, len), 0);
			openssl_cbc(keys[k], key, iv == 2 ? essiv : NULL,
				    iv == 1 ? first & UINT32_MAX : first, unit, ref, in,
				    len);
			ck_assert_mem_eq(ours, ref, len);
			ck_assert_int_eq(
				xts_crypt_units(&d, 0, first, unit, ours, ours, len), 0);
			ck_assert_mem_eq(ours, in, len);
		}
	}
	free(in);
	free(ours);
	free(ref);
}
END_TEST

START_TEST(bad_arguments)
{
	uint8_t key[64] = { 1 }, buf[512] = { 0 };

	ck_assert_int_eq(xts_crypt_buf(48, key, 1, 0, 512, buf, buf, sizeof(buf)), -EIO);
	ck_assert_int_eq(xts_crypt_buf(64, key, 1, 0, 512, buf, buf, 100), -EIO);
	ck_assert_int_eq(xts_crypt_buf(64, key, 1, 0, 0, buf, buf, 0), -EIO);
	/* CBC keys are one AES key; an ESSIV key too. */
	struct xts_disk d = { .key_len = 64, .key = key, .mode = XTS_MODE_CBC };
	ck_assert_int_eq(xts_crypt_units(&d, 1, 0, 512, buf, buf, sizeof(buf)), -EIO);
	d.key_len = 32;
	d.essiv_len = 20;
	d.essiv_key = key;
	ck_assert_int_eq(xts_crypt_units(&d, 1, 0, 512, buf, buf, sizeof(buf)), -EIO);
	d.essiv_len = 32;
	ck_assert_int_eq(xts_crypt_units(&d, 1, 0, 512, buf, buf, sizeof(buf)), 0);
}
END_TEST

START_TEST(secrets)
{
	uint8_t *p = xts_secret_alloc(100);
	struct stat st;

	ck_assert_ptr_nonnull(p);
	for (int i = 0; i < 100; i++)
		ck_assert_uint_eq(p[i], 0);
	memcpy(p, "secret", 6);
	ck_assert(xts_secret_equal(p, "secret", 6));
	ck_assert(!xts_secret_equal(p, "secreT", 6));
	ck_assert(xts_secret_equal(p, "x", 0));
	xts_secret_free(p, 100);
	xts_secret_free(NULL, 100);

	ck_assert_int_eq(xts_secret_open("key file", "/dev/null", &st), -EINVAL);
	ck_assert_str_eq(dc_last_error(), "key file /dev/null: not a regular file (a "
					  "character device); expected a regular file");
	ck_assert_int_eq(xts_secret_open("key file", "/nonexistent/k", &st), -ENOENT);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = { matches_openssl,
				       vaes_matches_openssl,
				       generic_matches_vaes,
				       cbc_matches_openssl,
				       bad_arguments,
				       secrets,
				       NULL };

	return common_check_run("xts", tests);
}
