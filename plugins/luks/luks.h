/* SPDX-License-Identifier: MIT */
/* luks's internal interface: what its files share. luks.c is the plugin (spec,
 * open, I/O); luks1.c and luks2.c/luks2_json.c read the two header versions
 * into one struct luks_hdr; luks_keyslot.c turns a passphrase into the volume
 * key; luks_cipher.c maps a cipher spec onto the data path (common/xts);
 * luks_util.c holds the helpers below them all (messages, reads of the inner
 * disk). */
#ifndef DISKCORE_PLUGINS_LUKS_H
#define DISKCORE_PLUGINS_LUKS_H

#include "luksfmt/luksfmt.h"
#include "xts/xts.h"

#include <diskcore/plugin.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LUKS_AREA_SECTOR 512 /* key material is always in 512-byte units */

#define LUKS1_SLOT_ACTIVE 0x00ac71f3u
#define LUKS1_SLOT_INACTIVE 0x0000deadu

#define LUKS2_HDR_MIN 0x4000
#define LUKS2_HDR_MAX 0x400000

#define LUKS_SLOTS 32 /* LUKS2's most; LUKS1 uses 8 */
#define LUKS_DIGESTS 8
#define LUKS_NAME_LEN 32
#define LUKS_SALT_MAX 128
#define LUKS_KEY_MAX 128
#define LUKS_STRIPES_MAX 65536
#define LUKS_ARGON2_MEM_MAX (4u * 1024 * 1024) /* KiB, cryptsetup's limit */
#define LUKS_SECRET_MAX (8u * 1024 * 1024)     /* cryptsetup's key file limit */
#define LUKS_ARGON2_CPUS_MAX 64u	       /* threads one Argon2 slot may ask */

enum luks_kdf_type { LUKS_PBKDF2 = 1, LUKS_ARGON2I, LUKS_ARGON2ID };

extern const char *const luks_kdf_names[];

struct luks_kdf {
	int type;
	char hash[LUKS_NAME_LEN]; /* pbkdf2 */
	uint32_t iterations;	  /* pbkdf2 iterations, argon2 time cost */
	uint32_t memory;	  /* argon2, KiB */
	uint32_t cpus;		  /* argon2 */
	uint8_t salt[LUKS_SALT_MAX];
	size_t salt_len;
};

struct luks_slot {
	bool active;
	char skip[200]; /* why this active slot cannot be tried */
	int priority;	/* LUKS2: 0 only when asked for, 1 normal, 2 first */
	int digest;	/* index in luks_hdr.digest, -1: not bound to the segment */
	struct luks_kdf kdf;
	char af_hash[LUKS_NAME_LEN];
	uint32_t stripes;
	uint32_t key_size; /* volume key bytes */
	char area_cipher[64];
	uint32_t area_key_size;
	uint64_t area_offset, area_size;
};

struct luks_digest {
	char hash[LUKS_NAME_LEN];
	uint32_t iterations;
	uint8_t salt[LUKS_SALT_MAX];
	size_t salt_len;
	uint8_t value[64];
	size_t len;
};

/* What both versions boil down to. */
struct luks_hdr {
	int version;
	char cipher[64];
	uint32_t sector_size;
	uint64_t offset; /* payload, bytes */
	uint64_t size;	 /* payload bytes, 0: to the end of the disk */
	uint64_t seqid;
	uint32_t hdr_size; /* LUKS2: binary header + JSON area */
	char uuid[40];
	struct luks_slot slot[LUKS_SLOTS];
	unsigned nslots;
	struct luks_digest digest[LUKS_DIGESTS];
	unsigned ndigests;
};

/* What an open may spend on key derivation (luks_limits.c); as a cost, what
 * one slot takes. */
struct luks_limits {
	uint64_t memory;     /* Argon2 bytes of one slot */
	uint64_t work;	     /* Argon2 bytes times passes, summed */
	uint64_t iterations; /* PBKDF2 iterations, summed */
};

struct luks_disk {
	struct xts_disk x; /* first: the xts callbacks take the instance */
	struct dc_node *child;
	uint8_t *vkey; /* locked memory */
	uint32_t vkey_len;
	uint8_t *essiv_key; /* locked memory; NULL unless the cipher uses ESSIV */
	uint32_t child_ss;
	uint32_t luks_ss;
	uint64_t offset; /* payload, bytes */
	uint64_t size;	 /* payload bytes, 0: to the end of the inner disk */
	int version;
	int slot;
	int kdf;
	char cipher_name[64];
	char uuid[40];
	char *secret_path;
	bool secret_is_keyfile;
	struct luks_limits lim;
};

/* A reason kept aside while another header copy is tried. */
struct luks_why {
	char msg[320];
};

/* Sets w's message; returns rc. */
int luks_bad(struct luks_why *w, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Names from the header end up in messages: printable ASCII only. */
bool luks_printable(const char *s);
/* A string from the JSON area, fit for a message. */
const char *luks_shown(const char *s);
/* A NUL-terminated printable string field of a binary header, or false. */
bool luks_field(char *dst, const char *src, size_t len);

static inline bool luks_power_of_two(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* luks_util.c: the inner disk's size, and len bytes at off of it (any alignment;
 * dc_error() when it fails, naming `what`). */
uint64_t luks_child_bytes(const struct luks_disk *d);
int luks_read(struct luks_disk *d, uint64_t off, void *buf, size_t len, const char *what);

/* luks1.c: the LUKS1 header in raw (sizeof(struct luks1_header) bytes). */
int luks1_parse(const uint8_t *raw, struct luks_hdr *h, struct luks_why *w);

/* luks2.c: both LUKS2 header copies; the valid one with the higher sequence id. */
int luks2_parse(struct luks_disk *d, struct luks_hdr *h, struct luks_why *w);
/* luks2_json.c: the JSON area's root object into h (h->hdr_size is set). */
struct json_object;
int luks2_json(struct json_object *root, struct luks_hdr *h, struct luks_why *w);

/* luks_keyslot.c: the passphrase (or key file) into locked memory; then the
 * slot it opens (want: only that one, -1: any) puts the volume key in d. */
int luks_secret_load(struct luks_disk *d, uint8_t **out, size_t *len, size_t *cap);
int luks_unlock(struct luks_disk *d, const struct luks_hdr *h, int want,
		const uint8_t *pass, size_t plen);
/* PBKDF2 with an OpenSSL hash name (dc_error() when it fails). */
int luks_pbkdf2(const char *hash, const uint8_t *pass, size_t plen, const uint8_t *salt,
		size_t slen, uint32_t iter, uint8_t *out, size_t outlen);

/* luks_limits.c: the spec's pbkdf-*-max options (or the defaults) into lim;
 * whether slot s fits in what lim leaves after spent (if not, why says why);
 * what trying s adds to spent; and every slot over the limits on its own
 * marked as skipped, before any work. */
int luks_limits_parse(const struct dc_open_args *a, struct luks_limits *lim);
bool luks_slot_fits(const struct luks_limits *lim, const struct luks_limits *spent,
		    const struct luks_hdr *h, const struct luks_slot *s, char *why,
		    size_t len);
void luks_slot_spend(struct luks_limits *spent, const struct luks_hdr *h,
		     const struct luks_slot *s);
void luks_limits_apply(const struct luks_limits *lim, struct luks_hdr *h);

/* luks_cipher.c: 0 if a cipher spec with a key of key_len bytes is one the data
 * path runs (dc_error() naming `what` if not). */
int luks_cipher(const char *spec, uint32_t key_len, const char *what);
/* Whether spec is supported at all, before a key size is known. */
bool luks_cipher_known(const char *spec);
/* Sets up x for spec with the key (kept by the caller); *essiv gets the
 * ESSIV key x points to (NULL when the spec has none), freed with
 * luks_cipher_free(). luks_cipher() accepted spec and key_len. */
int luks_cipher_setup(struct xts_disk *x, const char *spec, const uint8_t *key,
		      uint32_t key_len, uint8_t **essiv);
void luks_cipher_free(uint8_t *essiv);
/* En- or decrypt a key slot's area (units of LUKS_AREA_SECTOR from 0). */
int luks_cipher_area(const char *spec, const uint8_t *key, uint32_t key_len, int enc,
		     uint8_t *out, const uint8_t *in, size_t len);

#endif
