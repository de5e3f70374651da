/* SPDX-License-Identifier: MIT */
/* Cipher specs as the LUKS headers name them (dm-crypt's "cipher-mode-iv[:hash]")
 * onto the data path of common/xts, and the one-shot decryption of key slot
 * areas (which use the same kind of spec, with the key the passphrase gives).
 *
 *   aes-xts-plain64     AES-XTS, the tweak is the sector number (64 bits)
 *   aes-xts-plain       the same with the number mod 2^32 (dm-crypt's "plain":
 *                       identical below 2^32 sectors, wrapping above)
 *   aes-cbc-essiv:HASH  AES-CBC, the IV is the sector number encrypted with
 *                       AES-ECB under HASH(volume key) (cryptsetup's LUKS1
 *                       default for years, qemu's ivgen-alg=essiv)
 *   aes-cbc-plain64     AES-CBC, the IV is the sector number (and -plain)
 *
 * XTS takes 256- or 512-bit keys, CBC 128, 192 or 256; ESSIV a hash whose
 * digest is an AES key (sha256, the default everywhere). */
#include "luks.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#define LUKS_CIPHERS                                                                    \
	"aes-xts-plain64, aes-xts-plain, aes-cbc-essiv:sha256 (or another hash of 16, " \
	"24 or 32 bytes), aes-cbc-plain64 and aes-cbc-plain"
#define LUKS_ESSIV_MAX 32 /* bytes of the ESSIV key: the largest AES key */

struct luks_cipher_spec {
	enum xts_mode mode;
	bool iv32;
	char essiv_hash[LUKS_NAME_LEN]; /* "": no ESSIV */
	uint32_t essiv_len;
};

/* The ESSIV hash's digest size if OpenSSL has it and it is an AES key size. */
static uint32_t luks_essiv_len(const char *hash)
{
	EVP_MD *md = EVP_MD_fetch(NULL, hash, NULL);
	int n = md ? EVP_MD_get_size(md) : 0;

	EVP_MD_free(md);
	return n == 16 || n == 24 || n == 32 ? (uint32_t)n : 0;
}

/* spec into c; false if it is not one of LUKS_CIPHERS. */
static bool luks_cipher_parse(const char *spec, struct luks_cipher_spec *c)
{
	const char *iv;

	memset(c, 0, sizeof(*c));
	if (!strncmp(spec, "aes-xts-", 8)) {
		c->mode = XTS_MODE_XTS;
		iv = spec + 8;
	} else if (!strncmp(spec, "aes-cbc-", 8)) {
		c->mode = XTS_MODE_CBC;
		iv = spec + 8;
	} else {
		return false;
	}
	if (!strcmp(iv, "plain64"))
		return true;
	if (!strcmp(iv, "plain")) {
		c->iv32 = true;
		return true;
	}
	/* dm-crypt's ESSIV with XTS is not something LUKS tools make. */
	if (c->mode != XTS_MODE_CBC || strncmp(iv, "essiv:", 6) != 0 ||
	    strlen(iv + 6) >= sizeof(c->essiv_hash) || !iv[6])
		return false;
	strcpy(c->essiv_hash, iv + 6);
	c->essiv_len = luks_essiv_len(c->essiv_hash);
	return c->essiv_len != 0;
}

bool luks_cipher_known(const char *spec)
{
	struct luks_cipher_spec c;

	if (luks_cipher_parse(spec, &c))
		return true;
	dc_error("unsupported cipher \"%s\": only " LUKS_CIPHERS " are supported", spec);
	return false;
}

int luks_cipher(const char *spec, uint32_t key_len, const char *what)
{
	struct luks_cipher_spec c;
	bool xts;

	if (!luks_cipher_parse(spec, &c)) {
		dc_error("unsupported cipher \"%s\" for %s: only " LUKS_CIPHERS
			 " are supported",
			 spec, what);
		return -ENOTSUP;
	}
	xts = c.mode == XTS_MODE_XTS;
	if (xts ? key_len != 32 && key_len != 64 :
		  key_len != 16 && key_len != 24 && key_len != 32) {
		dc_error("unsupported key size for %s: %u bits, expected %s for %s", what,
			 key_len * 8,
			 xts ? "256 (AES-128) or 512 (AES-256)" : "128, 192 or 256",
			 spec);
		return -ENOTSUP;
	}
	return 0;
}

int luks_cipher_setup(struct xts_disk *x, const char *spec, const uint8_t *key,
		      uint32_t key_len, uint8_t **essiv)
{
	struct luks_cipher_spec c;
	EVP_MD *md;
	int ok;

	*essiv = NULL;
	if (!luks_cipher_parse(spec, &c))
		return -ENOTSUP; /* luks_cipher() said why */
	x->key = key;
	x->key_len = key_len;
	x->mode = c.mode;
	x->iv32 = c.iv32;
	x->essiv_len = 0;
	x->essiv_key = NULL;
	if (!c.essiv_len)
		return 0;
	*essiv = xts_secret_alloc(LUKS_ESSIV_MAX);
	md = EVP_MD_fetch(NULL, c.essiv_hash, NULL);
	ok = *essiv && md && EVP_Digest(key, key_len, *essiv, NULL, md, NULL);
	EVP_MD_free(md);
	if (!ok) {
		luks_cipher_free(*essiv);
		*essiv = NULL;
		dc_error("cannot compute the ESSIV key (%s) in OpenSSL", c.essiv_hash);
		return -EIO;
	}
	x->essiv_len = c.essiv_len;
	x->essiv_key = *essiv;
	return 0;
}

void luks_cipher_free(uint8_t *essiv)
{
	xts_secret_free(essiv, LUKS_ESSIV_MAX);
}

int luks_cipher_area(const char *spec, const uint8_t *key, uint32_t key_len, int enc,
		     uint8_t *out, const uint8_t *in, size_t len)
{
	struct xts_disk x = { 0 };
	uint8_t *essiv;
	int rc;

	rc = luks_cipher_setup(&x, spec, key, key_len, &essiv);
	if (!rc)
		rc = xts_crypt_units(&x, enc, 0, LUKS_AREA_SECTOR, out, in, len);
	luks_cipher_free(essiv);
	return rc;
}
