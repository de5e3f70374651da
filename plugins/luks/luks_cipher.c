/* SPDX-License-Identifier: MIT */
/* Cipher specs ("aes-xts-plain64", as the LUKS headers name them) onto the data
 * path of common/xts: which ones run, with which keys, and the one-shot
 * decryption of key slot areas. */
#include "luks.h"

#include <errno.h>
#include <string.h>

#define LUKS_CIPHER "aes-xts-plain64"
/* The same with dm-crypt's 32-bit "plain" IV (qemu's and old cryptsetup's
 * aes-xts-plain): identical below 2^32 sectors, wrapping above. */
#define LUKS_CIPHER_PLAIN "aes-xts-plain"

bool luks_cipher_known(const char *spec)
{
	if (strcmp(spec, LUKS_CIPHER) != 0 && strcmp(spec, LUKS_CIPHER_PLAIN) != 0) {
		dc_error("unsupported cipher \"%s\": only " LUKS_CIPHER
			 " and " LUKS_CIPHER_PLAIN " are supported",
			 spec);
		return false;
	}
	return true;
}

int luks_cipher(const char *spec, uint32_t key_len, const char *what)
{
	if (strcmp(spec, LUKS_CIPHER) != 0 && strcmp(spec, LUKS_CIPHER_PLAIN) != 0) {
		dc_error("unsupported cipher \"%s\" for %s: only " LUKS_CIPHER
			 " and " LUKS_CIPHER_PLAIN " are supported",
			 spec, what);
		return -ENOTSUP;
	}
	if (key_len != 32 && key_len != 64) {
		dc_error(
			"unsupported key size for %s: %u bits, expected 256 (AES-128) or "
			"512 (AES-256) for " LUKS_CIPHER,
			what, key_len * 8);
		return -ENOTSUP;
	}
	return 0;
}

void luks_cipher_setup(struct xts_disk *x, const char *spec, const uint8_t *key,
		       uint32_t key_len)
{
	x->key = key;
	x->key_len = key_len;
	x->iv32 = strcmp(spec, LUKS_CIPHER_PLAIN) == 0;
}

int luks_cipher_area(const char *spec, const uint8_t *key, uint32_t key_len, int enc,
		     uint8_t *out, const uint8_t *in, size_t len)
{
	(void)spec;
	return xts_crypt_buf(key_len, key, enc, 0, LUKS_AREA_SECTOR, out, in, len);
}
