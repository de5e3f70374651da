/* SPDX-License-Identifier: MIT */
/* AES-XTS written for VAES/VPCLMULQDQ (256-bit AES rounds, two blocks per
 * instruction), for many data units per call: the tweaks of eight units are
 * encrypted together, so a unit's tweak costs a few cycles instead of a
 * serial 14-round AES (docs/performance.md, "crypt at 512-byte sectors").
 * Units are whole AES blocks (no ciphertext stealing); unit i is tweaked with
 * first_unit + i as a 16-byte little-endian value (dm-crypt's plain64), or
 * that mod 2^32 with iv32 (plain). Used by xts.c when the CPU has the
 * instructions; libgcrypt runs everything else. */
#ifndef DISKCORE_COMMON_XTS_VAES_H
#define DISKCORE_COMMON_XTS_VAES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct xts_vaes_key {
	_Alignas(16) uint8_t enc[15][16];   /* data key, encryption rounds */
	_Alignas(16) uint8_t dec[15][16];   /* data key, equivalent inverse cipher */
	_Alignas(16) uint8_t tweak[15][16]; /* tweak key, encryption rounds */
	unsigned rounds;		    /* 10: AES-128, 14: AES-256 */
};

/* The CPU (and the kernel, for the YMM state) runs AES-NI, AVX2, VAES and
 * VPCLMULQDQ. */
bool xts_vaes_usable(void);

/* Two AES keys, data key first: key_len 32 (AES-128) or 64 (AES-256).
 * 0 or -EINVAL. Only when xts_vaes_usable(). */
int xts_vaes_setkey(struct xts_vaes_key *k, const uint8_t *key, uint32_t key_len);

/* Wipe a key schedule. */
void xts_vaes_wipe(struct xts_vaes_key *k);

/* En- (enc != 0) or decrypt n units of unit_size bytes (a non-zero multiple
 * of 16) from in to out; out may equal in, but not overlap it otherwise. */
void xts_vaes_units(const struct xts_vaes_key *k, int enc, uint64_t first_unit, bool iv32,
		    uint32_t unit_size, size_t n, uint8_t *out, const uint8_t *in);

#endif
