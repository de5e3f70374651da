/* SPDX-License-Identifier: MIT */
/* AES-XTS on VAES (see vaes.h). Written from the AES (FIPS 197) and XTS
 * (IEEE 1619) definitions: the key schedule with AESKEYGENASSIST, decryption
 * as the equivalent inverse cipher (AESIMC'd round keys), tweaks multiplied
 * by x in GF(2^128) modulo x^128 + x^7 + x^2 + x + 1, little-endian. */
#include "vaes.h"

#include <cpuid.h>
#include <errno.h>
#include <immintrin.h>
#include <string.h>

#define VAES_TARGET __attribute__((target("aes,pclmul,avx2,vaes,vpclmulqdq")))
#define VAES_INLINE VAES_TARGET static inline __attribute__((always_inline))
/* -O2 leaves loops of a constant count rolled; these must unroll for the
 * AES rounds of independent blocks to overlap. */
#define VAES_UNROLL _Pragma("GCC unroll 16")

/* Blocks in flight per loop: eight 256-bit registers of two blocks each (a
 * VAES round has a latency of about four cycles and two issue per cycle). */
#define VAES_NY 8
#define VAES_WIDE (2 * VAES_NY) /* 16: vaes_mulxb() steps tweaks by 2 bytes */
/* Units whose tweaks are encrypted together, two per register. */
#define VAES_BATCH (2 * VAES_NY)

bool xts_vaes_usable(void)
{
	unsigned a, b, c, d;

	/* VAES and VPCLMULQDQ from CPUID leaf 7 (ECX bits 9 and 10): clang 14
	 * has no __builtin_cpu_supports() names for them. */
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(c & (1u << 9)) ||
	    !(c & (1u << 10)))
		return false;
	__builtin_cpu_init();
	return __builtin_cpu_supports("aes") && __builtin_cpu_supports("avx2");
}

/* --- Key schedule ---------------------------------------------------------- */

/* x ^ x<<32 ^ x<<64 ^ x<<96: the running XOR of a round key's words. */
VAES_INLINE __m128i vaes_prefix(__m128i x)
{
	x = _mm_xor_si128(x, _mm_slli_si128(x, 4));
	return _mm_xor_si128(x, _mm_slli_si128(x, 8));
}

/* The next round key from prev (the key words it continues) and last (the
 * one just made): FIPS 197's SubWord(RotWord(w)) ^ Rcon, or with rot == 0
 * SubWord(w) alone (AES-256's odd round keys), w the last word of last.
 * AESKEYGENASSIST takes Rcon as an immediate; it is XORed in here instead, so
 * the schedule can be a loop. */
VAES_INLINE __m128i vaes_next(__m128i prev, __m128i last, unsigned rcon, int rot)
{
	__m128i w = _mm_aeskeygenassist_si128(last, 0);

	w = rot ? _mm_shuffle_epi32(w, 0xff) : _mm_shuffle_epi32(w, 0xaa);
	return _mm_xor_si128(_mm_xor_si128(vaes_prefix(prev), w),
			     _mm_set1_epi32((int)rcon));
}

/* xtime: Rcon doubles in GF(2^8). */
static unsigned vaes_rcon_next(unsigned rcon)
{
	return ((rcon << 1) ^ (rcon & 0x80 ? 0x1b : 0)) & 0xff;
}

VAES_TARGET static void vaes_expand(__m128i *rk, const uint8_t *key, unsigned rounds)
{
	unsigned rcon = 1;

	rk[0] = _mm_loadu_si128((const __m128i *)key);
	if (rounds == 10) {
		for (unsigned i = 1; i <= 10; i++, rcon = vaes_rcon_next(rcon))
			rk[i] = vaes_next(rk[i - 1], rk[i - 1], rcon, 1);
		return;
	}
	rk[1] = _mm_loadu_si128((const __m128i *)(key + 16));
	for (unsigned i = 2; i <= 14; i++) {
		rk[i] = vaes_next(rk[i - 2], rk[i - 1], i % 2 ? 0 : rcon, i % 2 == 0);
		if (i % 2 == 0)
			rcon = vaes_rcon_next(rcon);
	}
}

VAES_TARGET int xts_vaes_setkey(struct xts_vaes_key *k, const uint8_t *key,
				uint32_t key_len)
{
	unsigned rounds = key_len == 32 ? 10 : key_len == 64 ? 14 : 0;
	__m128i rk[15];

	if (!rounds)
		return -EINVAL;
	k->rounds = rounds;
	vaes_expand(rk, key + key_len / 2, rounds);
	for (unsigned r = 0; r <= rounds; r++)
		_mm_store_si128((__m128i *)k->tweak[r], rk[r]);
	vaes_expand(rk, key, rounds);
	for (unsigned r = 0; r <= rounds; r++)
		_mm_store_si128((__m128i *)k->enc[r], rk[r]);
	_mm_store_si128((__m128i *)k->dec[0], rk[rounds]);
	for (unsigned r = 1; r < rounds; r++)
		_mm_store_si128((__m128i *)k->dec[r], _mm_aesimc_si128(rk[rounds - r]));
	_mm_store_si128((__m128i *)k->dec[rounds], rk[0]);
	explicit_bzero(rk, sizeof(rk));
	return 0;
}

void xts_vaes_wipe(struct xts_vaes_key *k)
{
	explicit_bzero(k, sizeof(*k));
}

/* --- Tweaks ---------------------------------------------------------------- */

/* t * x: shift the 128-bit value left by one; the bit shifted out of the
 * top comes back as 0x87, the carries between 32-bit words as 1. */
VAES_INLINE __m128i vaes_mulx(__m128i t)
{
	__m128i carry = _mm_shuffle_epi32(_mm_srai_epi32(t, 31), 0x93);

	carry = _mm_and_si128(carry, _mm_set_epi32(1, 1, 1, 0x87));
	return _mm_xor_si128(_mm_slli_epi32(t, 1), carry);
}

/* Each 128-bit lane times x^k (0 < k < 64, a constant): the two 64-bit
 * halves shifted left by k, the bits out of the low half carried into the high
 * one, those out of the high half reduced by a carry-less multiply with 0x87
 * (k + 7 bits: nothing to fold again). */
VAES_INLINE __m256i vaes_mulxk(__m256i t, int k, __m256i poly)
{
	__m256i out = _mm256_srli_epi64(t, 64 - k);

	return _mm256_xor_si256(
		_mm256_xor_si256(_mm256_slli_epi64(t, k), _mm256_bslli_epi128(out, 8)),
		_mm256_clmulepi64_epi128(_mm256_bsrli_epi128(out, 8), poly, 0x00));
}

/* Each lane times x^(8 * n) for n = 1 or 2, cheaper than vaes_mulxk(): a
 * shift by n bytes, the bytes shifted out reduced by one carry-less multiply
 * (8n + 7 bits: nothing to fold again). A macro: the byte shifts take
 * immediates, which an inline function's parameter is not at -O0. */
#define vaes_mulxb(t, n, poly)                                                        \
	_mm256_xor_si256(_mm256_bslli_epi128((t), (n)),                               \
			 _mm256_clmulepi64_epi128(_mm256_bsrli_epi128((t), 16 - (n)), \
						  (poly), 0x00))

/* The tweaks of the next VAES_WIDE blocks from those of the last. */
VAES_INLINE void vaes_step(__m256i *y, __m256i poly)
{
	VAES_UNROLL
	for (int i = 0; i < VAES_NY; i++)
		y[i] = vaes_mulxb(y[i], VAES_WIDE / 8, poly);
}

/* --- Data ------------------------------------------------------------------ */

/* The AES rounds of VAES_NY registers at once (data or tweaks): independent
 * blocks in flight hide each round's latency. */
VAES_INLINE void vaes_rounds(__m256i *x, const __m256i *rk, unsigned rounds, int enc)
{
	VAES_UNROLL
	for (int i = 0; i < VAES_NY; i++)
		x[i] = _mm256_xor_si256(x[i], rk[0]);
	VAES_UNROLL
	for (unsigned r = 1; r < rounds; r++) {
		VAES_UNROLL
		for (int i = 0; i < VAES_NY; i++)
			x[i] = enc ? _mm256_aesenc_epi128(x[i], rk[r]) :
				     _mm256_aesdec_epi128(x[i], rk[r]);
	}
	VAES_UNROLL
	for (int i = 0; i < VAES_NY; i++)
		x[i] = enc ? _mm256_aesenclast_epi128(x[i], rk[rounds]) :
			     _mm256_aesdeclast_epi128(x[i], rk[rounds]);
}

VAES_INLINE __m128i vaes_rounds1(__m128i x, const __m256i *rk, unsigned rounds, int enc)
{
	x = _mm_xor_si128(x, _mm256_castsi256_si128(rk[0]));
	if (enc) {
		VAES_UNROLL
		for (unsigned r = 1; r < rounds; r++)
			x = _mm_aesenc_si128(x, _mm256_castsi256_si128(rk[r]));
		return _mm_aesenclast_si128(x, _mm256_castsi256_si128(rk[rounds]));
	}
	VAES_UNROLL
	for (unsigned r = 1; r < rounds; r++)
		x = _mm_aesdec_si128(x, _mm256_castsi256_si128(rk[r]));
	return _mm_aesdeclast_si128(x, _mm256_castsi256_si128(rk[rounds]));
}

/* VAES_WIDE blocks from in to out, tweaked with y[] two by two. */
VAES_INLINE void vaes_wide(const __m256i *rk, unsigned rounds, int enc, const __m256i *y,
			   uint8_t *out, const uint8_t *in)
{
	__m256i x[VAES_NY];

	VAES_UNROLL
	for (int i = 0; i < VAES_NY; i++)
		x[i] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)in + i),
					y[i]);
	vaes_rounds(x, rk, rounds, enc);
	VAES_UNROLL
	for (int i = 0; i < VAES_NY; i++)
		_mm256_storeu_si256((__m256i *)out + i, _mm256_xor_si256(x[i], y[i]));
}

/* One unit of nblk blocks whose first tweak (already encrypted) is t:
 * VAES_WIDE blocks at a time, their tweaks in y[] two by two, stepped by
 * x^VAES_WIDE only before a loop that uses them (a 512-byte unit runs two:
 * a step after the last would cost 8%); what is left (units that are not a
 * multiple of VAES_WIDE blocks) one block at a time. */
VAES_INLINE void vaes_unit(const __m256i *rk, unsigned rounds, int enc, __m128i t,
			   uint8_t *out, const uint8_t *in, size_t nblk)
{
	const __m256i poly = _mm256_set1_epi64x(0x87);
	__m256i y[VAES_NY];
	__m128i rest[VAES_WIDE];
	size_t b = 0;

	y[0] = _mm256_set_m128i(vaes_mulx(t), t);
	/* y[i] = y[0] * x^(2i): the first four bit-shifted, the rest from them
	 * by a byte (x^8). */
	VAES_UNROLL
	for (int i = 1; i < 4; i++)
		y[i] = vaes_mulxk(y[0], 2 * i, poly);
	VAES_UNROLL
	for (int i = 4; i < VAES_NY; i++)
		y[i] = vaes_mulxb(y[i - 4], 1, poly);
	if (nblk >= VAES_WIDE) {
		vaes_wide(rk, rounds, enc, y, out, in);
		for (b = VAES_WIDE; b + VAES_WIDE <= nblk; b += VAES_WIDE) {
			vaes_step(y, poly);
			vaes_wide(rk, rounds, enc, y, out + b * 16, in + b * 16);
		}
		if (b == nblk)
			return;
		vaes_step(y, poly);
	}
	memcpy(rest, y, sizeof(rest));
	for (size_t i = 0; b < nblk; b++, i++) {
		__m128i v = _mm_loadu_si128((const __m128i *)(in + b * 16));

		v = vaes_rounds1(_mm_xor_si128(v, rest[i]), rk, rounds, enc);
		_mm_storeu_si128((__m128i *)(out + b * 16), _mm_xor_si128(v, rest[i]));
	}
}

/* xts_vaes_units() for one key size (rounds a constant, so that the round
 * loops unroll). */
VAES_INLINE void vaes_units(const struct xts_vaes_key *k, unsigned rounds, int enc,
			    uint64_t first, bool iv32, uint32_t unit_size, size_t n,
			    uint8_t *out, const uint8_t *in)
{
	__m256i rk[15], tk[15];

	VAES_UNROLL
	for (unsigned r = 0; r <= rounds; r++) {
		__m128i key =
			_mm_load_si128((const __m128i *)(enc ? k->enc[r] : k->dec[r]));

		rk[r] = _mm256_broadcastsi128_si256(key);
		tk[r] = _mm256_broadcastsi128_si256(
			_mm_load_si128((const __m128i *)k->tweak[r]));
	}
	for (size_t u = 0; u < n; u += VAES_BATCH) {
		__m256i t[VAES_NY];
		__m128i tw[VAES_BATCH];
		size_t m = n - u < VAES_BATCH ? n - u : VAES_BATCH;
		uint64_t mask = iv32 ? UINT32_MAX : UINT64_MAX;

		/* The tweaks of the next VAES_BATCH units, two per register. */
		VAES_UNROLL
		for (int i = 0; i < VAES_NY; i++) {
			uint64_t unit = first + u + 2 * (uint64_t)i;

			t[i] = _mm256_set_epi64x(0, (long long)((unit + 1) & mask), 0,
						 (long long)(unit & mask));
		}
		vaes_rounds(t, tk, rounds, 1);
		VAES_UNROLL
		for (int i = 0; i < VAES_NY; i++) {
			tw[2 * i] = _mm256_castsi256_si128(t[i]);
			tw[2 * i + 1] = _mm256_extracti128_si256(t[i], 1);
		}
		for (size_t i = 0; i < m; i++) {
			size_t off = (u + i) * unit_size;

			vaes_unit(rk, rounds, enc, tw[i], out + off, in + off,
				  unit_size / 16);
		}
	}
	explicit_bzero(rk, sizeof(rk));
	explicit_bzero(tk, sizeof(tk));
}

VAES_TARGET void xts_vaes_units(const struct xts_vaes_key *k, int enc,
				uint64_t first_unit, bool iv32, uint32_t unit_size,
				size_t n, uint8_t *out, const uint8_t *in)
{
	/* Four copies: the direction and the key size are constants inside. */
	if (k->rounds == 14) {
		if (enc)
			vaes_units(k, 14, 1, first_unit, iv32, unit_size, n, out, in);
		else
			vaes_units(k, 14, 0, first_unit, iv32, unit_size, n, out, in);
	} else {
		if (enc)
			vaes_units(k, 10, 1, first_unit, iv32, unit_size, n, out, in);
		else
			vaes_units(k, 10, 0, first_unit, iv32, unit_size, n, out, in);
	}
}
