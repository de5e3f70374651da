/* SPDX-License-Identifier: MIT */
/* The XTS data path of the crypt and luks plugins: a static library each of
 * them links (a copy in each .so; nothing here is exported).
 *
 * A disk is split into data units of 2^-unit_shift of its sector; each unit is
 * tweaked with its index (counted from the first data sector) as a 16-byte
 * little-endian value, which is dm-crypt's plain64 IV (iv_large_sectors when a
 * unit is larger than 512 bytes). The child is addressed in its own sectors:
 * child sector = (sector << child_shift) + child_offset.
 *
 * Writes encrypt into a staging buffer and send one write down; the caller's
 * buffer is never touched. Reads land in the caller's buffers and are decrypted
 * there in place. Each queue keeps a pool of cipher units (a cipher handle keyed
 * once, a staging buffer that only grows): the hot path does not allocate.
 * Large requests are split across the core's worker pool.
 *
 * XTS runs on vaes.c where the CPU has VAES and VPCLMULQDQ: all the units of
 * an iovec segment in one call, their tweaks encrypted eight at a time. Else
 * it is libgcrypt's AES-XTS, one call per unit (a tweak costs it a serial AES
 * and its call overhead: a fifth of the time at 512-byte units). OpenSSL 3.0
 * (Debian 12) spends about 900 instructions re-initialising an EVP context
 * for each unit's tweak. Figures: docs/performance.md. The ciphertext is the
 * same; the tests check it against OpenSSL (python3-cryptography) and
 * cryptsetup.
 *
 * The same path runs AES-CBC (luks: cryptsetup's LUKS1 default for years,
 * aes-cbc-essiv:sha256, and aes-cbc-plain64): each data unit is one CBC chain
 * whose IV is the unit index as above, or with ESSIV that index encrypted by
 * AES-ECB under essiv_key (the hash of the volume key), as dm-crypt does. */
#ifndef DISKCORE_COMMON_XTS_H
#define DISKCORE_COMMON_XTS_H

#include <diskcore/plugin.h>

#include <gcrypt.h>
#include <stdatomic.h>
#include <sys/stat.h>

#define XTS_MAX_PIECES 8
/* Splitting a request across threads pays only when each piece outweighs a
 * pool hand-off. Measured on 2 vCPUs with 512-byte sectors: 256 KiB reads
 * lose a third when split, 1 MiB reads gain a fifth, 4 MiB reads three
 * quarters; writes break even at 1 MiB. */
#define XTS_SPLIT_DEFAULT (1024 * 1024)
#define XTS_PIECE_MIN (64 * 1024)

enum xts_mode {
	XTS_MODE_XTS = 0, /* AES-XTS */
	XTS_MODE_CBC,	  /* AES-CBC, one chain per data unit */
};

struct xts_disk {
	uint32_t key_len;	  /* XTS 32: AES-128, 64: AES-256; CBC 16, 24 or 32 */
	const uint8_t *key;	  /* the owner's locked copy, valid until close */
	uint32_t sector_size;	  /* this disk's */
	uint32_t unit_shift;	  /* sector_size >> unit_shift = one data unit */
	uint32_t child_shift;	  /* sector_size >> child_shift = a child sector */
	uint64_t child_offset;	  /* child sectors before the first data sector */
	unsigned threads;	  /* most pieces one request is split into */
	uint64_t split;		  /* requests of at least this many bytes may be split */
	bool iv32;		  /* "plain" IV: the tweak is the unit index mod 2^32
				* (cryptsetup's aes-xts-plain), not plain64 */
	enum xts_mode mode;	  /* zero: XTS */
	uint32_t essiv_len;	  /* ESSIV: 16, 24 or 32 bytes of essiv_key; 0: none */
	const uint8_t *essiv_key; /* the owner's locked copy, valid until close */
	bool generic;		  /* libgcrypt even where vaes.c could run; set by
				   * xts_defaults() when DISKCORE_XTS_GENERIC is
				   * in the environment (benchmarks, tests) */
};

struct xts_unit;
struct xts_pool;

struct xts_piece {
	struct dc_req *req;
	unsigned idx;
};

/* Per-request scratch: a plugin's ctx_size is at least sizeof(struct xts_ctx). */
struct xts_ctx {
	const struct xts_disk *d;
	struct xts_pool *pool;
	unsigned npieces;
	uint64_t per_piece;  /* sectors in each piece but the last */
	atomic_uint pending; /* pieces not finished yet */
	atomic_int failed;
	atomic_int wdone; /* write: every piece finished (futex word) */
	struct xts_unit *unit[XTS_MAX_PIECES];
	struct xts_piece piece[XTS_MAX_PIECES];
};

/* Threads: the CPU count capped at XTS_MAX_PIECES; split: XTS_SPLIT_DEFAULT;
 * generic: DISKCORE_XTS_GENERIC set. */
void xts_defaults(struct xts_disk *d);

/* The queue_open and queue_close callbacks of a plugin whose instance starts
 * with its struct xts_disk (crypt, luks): per-queue cipher units.
 * xts_queue_open() calls dc_error() when it fails. */
int xts_queue_open(void *inst, void **qctx);
void xts_queue_close(void *inst, void *qctx);

/* A read or a write (req->ctx is a struct xts_ctx, req->qctx the queue's). The
 * caller has range-checked it. */
void xts_submit(const struct xts_disk *d, struct dc_req *req);
/* The submit callback of such a plugin that only reads and writes through XTS. */
void xts_plugin_submit(void *inst, struct dc_req *req);

/* The fields of such a plugin's struct dc_plugin that the XTS path sets: a
 * decorator with a struct xts_ctx per request and a pool per queue. */
#define XTS_PLUGIN_FIELDS                                                 \
	.ctx_size = sizeof(struct xts_ctx), .queue_open = xts_queue_open, \
	.queue_close = xts_queue_close

/* One-shot: en- or decrypt len bytes of consecutive units of unit_size bytes,
 * the first tweaked with first_unit, with a key of key_len (32 or 64) bytes.
 * Returns 0 or -EIO. */
int xts_crypt_buf(uint32_t key_len, const uint8_t *key, int enc, uint64_t first_unit,
		  uint32_t unit_size, uint8_t *out, const uint8_t *in, size_t len);
/* The same with d's cipher, key, IV and ESSIV (its geometry is not used). */
int xts_crypt_units(const struct xts_disk *d, int enc, uint64_t first_unit,
		    uint32_t unit_size, uint8_t *out, const uint8_t *in, size_t len);

/* Memory for secrets: page-granular, locked (best effort), kept out of core
 * dumps, zeroed. xts_secret_free() wipes it first. NULL when out of memory. */
void *xts_secret_alloc(size_t len);
void xts_secret_free(void *p, size_t len);

/* Open a key or passphrase file to read it: `what` names it in messages ("key
 * file"). The open never blocks and nothing is read unless it is a regular file
 * (fstat into *st): a FIFO would hang the open or the read, a device feed
 * endless bytes. Symbolic links are followed (secret stores link their files).
 * Returns the fd, or -errno after dc_error(). */
int xts_secret_open(const char *what, const char *path, struct stat *st);

/* Compares in time that depends on len only. */
bool xts_secret_equal(const void *a, const void *b, size_t len);

#endif
