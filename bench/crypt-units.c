/* SPDX-License-Identifier: MIT */
/* The ways to run AES-256-XTS over a 64 KiB buffer of 512- or 4096-byte data
 * units, each with its own tweak (dm-crypt's plain64), measured in MB per
 * CPU-second of this thread on a buffer that stays in cache. Built and run by
 * bench/crypt-units.sh; see docs/performance.md.
 *
 *   gcrypt-per-unit   libgcrypt XTS: gcry_cipher_setiv + decrypt per unit,
 *                     one handle (what xts.c does without VAES)
 *   openssl-reinit    OpenSSL EVP: EVP_CipherInit_ex(ctx, NULL, NULL, NULL,
 *                     iv, -1) + EVP_CipherUpdate per unit on one context
 *   openssl-one-unit  OpenSSL EVP over the whole buffer as ONE unit (what
 *                     `openssl speed -evp aes-256-xts` measures)
 *   vaes-batched      vaes.c: every unit in one call, tweaks eight at a time
 *
 * Usage: crypt-units SECONDS */
#include "xts/vaes.h"

#include <gcrypt.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LEN (64 * 1024)

static uint8_t key[64], buf[LEN];

static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void iv_of(uint8_t iv[16], uint64_t n)
{
	memset(iv, 0, 16);
	for (int i = 0; i < 8; i++)
		iv[i] = (uint8_t)(n >> (8 * i));
}

static void run_gcrypt(gcry_cipher_hd_t h, uint32_t us)
{
	uint8_t iv[16];

	for (uint32_t off = 0; off < LEN; off += us) {
		iv_of(iv, off / us);
		gcry_cipher_setiv(h, iv, 16);
		gcry_cipher_decrypt(h, buf + off, us, NULL, 0);
	}
}

static void run_openssl(EVP_CIPHER_CTX *c, uint32_t us)
{
	uint8_t iv[16];
	int outl;

	for (uint32_t off = 0; off < LEN; off += us) {
		iv_of(iv, off / us);
		EVP_CipherInit_ex(c, NULL, NULL, NULL, iv, -1);
		EVP_CipherUpdate(c, buf + off, &outl, buf + off, (int)us);
	}
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 2;
	static const char *const names[] = { "gcrypt-per-unit", "openssl-reinit",
					     "openssl-one-unit", "vaes-batched" };
	static const uint32_t units[] = { 512, 4096 };
	struct xts_vaes_key vk;
	gcry_cipher_hd_t h;
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();

	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(i * 7 + 1);
	if (!gcry_check_version(GCRYPT_VERSION) ||
	    gcry_cipher_open(&h, GCRY_CIPHER_AES256, GCRY_CIPHER_MODE_XTS, 0) ||
	    gcry_cipher_setkey(h, key, 64) || !c ||
	    !EVP_CipherInit_ex(c, EVP_aes_256_xts(), NULL, key, key, 0))
		return 1;
	if (!xts_vaes_usable() || xts_vaes_setkey(&vk, key, 64))
		fprintf(stderr, "no VAES on this CPU: vaes-batched skipped\n");
	for (size_t u = 0; u < 2; u++) {
		for (int m = 0; m < 4; m++) {
			double t0 = cpu_now(), t;
			uint64_t n = 0;

			if ((m == 3 && !xts_vaes_usable()) || (m == 2 && u > 0))
				continue; /* no VAES; one 64 KiB unit is measured once */
			do {
				for (int k = 0; k < 16; k++, n++) {
					if (m == 0)
						run_gcrypt(h, units[u]);
					else if (m == 1)
						run_openssl(c, units[u]);
					else if (m == 2)
						run_openssl(c, LEN);
					else
						xts_vaes_units(&vk, 0, 0, false, units[u],
							       LEN / units[u], buf, buf);
				}
				t = cpu_now() - t0;
			} while (t < secs);
			printf("%u %s %.0f\n", m == 2 ? LEN : units[u], names[m],
			       (double)n * LEN / t / 1e6);
		}
	}
	EVP_CIPHER_CTX_free(c);
	gcry_cipher_close(h);
	return 0;
}
