/* SPDX-License-Identifier: MIT */
/* luks: a LUKS1 or LUKS2 volume on the inner disk, read and written as dm-crypt
 * maps it after `cryptsetup open`: the payload starts at the header's payload
 * offset, is encrypted with aes-xts-plain64 in data units of the volume's sector
 * size (512 for LUKS1, the segment's sector_size for LUKS2), each tweaked with
 * its index from the start of the payload (iv_large_sectors for 4 KiB units).
 *
 * Opening follows the LUKS1 and LUKS2 on-disk format specifications: a key slot
 * is unlocked by deriving a key from the passphrase (PBKDF2, Argon2i or
 * Argon2id), decrypting the slot's anti-forensic stripes and merging them into a
 * candidate volume key, which the header's PBKDF2 digest confirms. LUKS2 headers
 * are checked against their checksum; a damaged primary falls back to the
 * secondary copy. The header is never written.
 *
 * The volume key lives in locked memory and is wiped at close; the passphrase is
 * wiped as soon as a slot opens. The data path is common/xts, shared with crypt. */
#include "endian/byteorder.h"
#include "luksfmt/luksfmt.h"
#include "xts/xts.h"

#include <argon2.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LUKS_CIPHER "aes-xts-plain64"
/* The same with dm-crypt's 32-bit "plain" IV (qemu's and old cryptsetup's
 * aes-xts-plain): identical below 2^32 sectors, wrapping above. */
#define LUKS_CIPHER_PLAIN "aes-xts-plain"
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

enum luks_kdf_type { LUKS_PBKDF2 = 1, LUKS_ARGON2I, LUKS_ARGON2ID };

static const char *const luks_kdf_names[] = { "", "pbkdf2", "argon2i", "argon2id" };

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
	char skip[96]; /* why this active slot cannot be tried */
	int priority;  /* LUKS2: 0 only when asked for, 1 normal, 2 first */
	int digest;    /* index in luks_hdr.digest, -1: not bound to the segment */
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

struct luks_disk {
	struct xts_disk x; /* first: the xts callbacks take the instance */
	struct dc_node *child;
	uint8_t *vkey; /* locked memory */
	uint32_t vkey_len;
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
};
_Static_assert(offsetof(struct luks_disk, x) == 0, "xts_disk comes first");

/* A reason kept aside while another header copy is tried. */
struct luks_why {
	char msg[320];
};

static int luks_bad(struct luks_why *w, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int luks_bad(struct luks_why *w, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(w->msg, sizeof(w->msg), fmt, ap);
	va_end(ap);
	return rc;
}

/* Names from the header end up in messages: printable ASCII only. */
static bool luks_printable(const char *s)
{
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e)
			return false;
	return true;
}

/* A string from the JSON area, fit for a message. */
static const char *luks_shown(const char *s)
{
	if (!s)
		return "(none)";
	return strlen(s) <= 48 && luks_printable(s) ? s : "(unprintable)";
}

/* A NUL-terminated printable string field of a binary header, or false. */
static bool luks_field(char *dst, const char *src, size_t len)
{
	if (!memchr(src, 0, len))
		return false;
	memcpy(dst, src, len);
	return luks_printable(dst);
}

static bool luks_power_of_two(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* --- Reading the inner disk ------------------------------------------------ */

static uint64_t luks_child_bytes(const struct luks_disk *d)
{
	uint64_t bytes;

	if (__builtin_mul_overflow(dc_node_sector_count(d->child), d->child_ss, &bytes))
		return INT64_MAX;
	return bytes;
}

/* len bytes at off, which need not be sector-aligned. */
static int luks_read(struct luks_disk *d, uint64_t off, void *buf, size_t len,
		     const char *what)
{
	uint32_t ss = d->child_ss;
	uint64_t size = luks_child_bytes(d), first, last;
	struct iovec iov;
	struct dc_io io = { .op = DC_OP_READ };
	uint8_t *b;
	void *p;
	int rc;

	if (off > size || len > size - off) {
		dc_error("corrupt header: %s (%zu bytes at offset %llu) lies beyond the "
			 "end of the inner disk (%llu bytes)",
			 what, len, (unsigned long long)off, (unsigned long long)size);
		return -EINVAL;
	}
	first = off / ss;
	last = (off + len + ss - 1) / ss;
	iov.iov_len = (last - first) * ss;
	if (posix_memalign(&p, 4096, iov.iov_len)) {
		dc_error("out of memory");
		return -ENOMEM;
	}
	b = p;
	iov.iov_base = b;
	io.sector = first;
	io.count = last - first;
	io.iov = &iov;
	io.iovcnt = 1;
	rc = dc_node_execute(d->child, &io);
	if (rc < 0)
		dc_error("cannot read %s from the inner disk: %s", what, dc_strerror(rc));
	else
		memcpy(buf, b + (off - first * ss), len);
	free(b);
	return rc < 0 ? rc : 0;
}

/* --- Hashes, KDFs, the anti-forensic merge ---------------------------------- */

static EVP_MD *luks_md(const char *name)
{
	EVP_MD *md = EVP_MD_fetch(NULL, name, NULL);

	if (!md)
		dc_error("hash \"%s\" named in the header is not available in OpenSSL",
			 name);
	return md;
}

static int luks_pbkdf2(const char *hash, const uint8_t *pass, size_t plen,
		       const uint8_t *salt, size_t slen, uint32_t iter, uint8_t *out,
		       size_t outlen)
{
	EVP_MD *md = luks_md(hash);
	int ok;

	if (!md)
		return -ENOTSUP;
	ok = PKCS5_PBKDF2_HMAC((const char *)pass, (int)plen, salt, (int)slen, (int)iter,
			       md, (int)outlen, out);
	EVP_MD_free(md);
	if (!ok) {
		dc_error("PBKDF2-%s failed in OpenSSL", hash);
		return -EIO;
	}
	return 0;
}

static int luks_kdf(const struct luks_kdf *k, const uint8_t *pass, size_t plen,
		    uint8_t *out, size_t outlen)
{
	int rc;

	if (k->type == LUKS_PBKDF2)
		return luks_pbkdf2(k->hash, pass, plen, k->salt, k->salt_len,
				   k->iterations, out, outlen);
	rc = argon2_hash(k->iterations, k->memory, k->cpus, pass, plen, k->salt,
			 k->salt_len, out, outlen, NULL, 0,
			 k->type == LUKS_ARGON2I ? Argon2_i : Argon2_id,
			 ARGON2_VERSION_13);
	if (rc != ARGON2_OK) {
		dc_error("%s (time %u, memory %u KiB, %u threads) failed: %s",
			 luks_kdf_names[k->type], k->iterations, k->memory, k->cpus,
			 argon2_error_message(rc));
		return rc == ARGON2_MEMORY_ALLOCATION_ERROR ? -ENOMEM : -EINVAL;
	}
	return 0;
}

/* Replace each hash-sized block of buf with H(block index, big-endian || block). */
static int luks_diffuse(const EVP_MD *md, EVP_MD_CTX *mc, uint8_t *buf, size_t len)
{
	size_t ds = (size_t)EVP_MD_get_size(md);
	uint8_t h[EVP_MAX_MD_SIZE];
	int rc = 0;

	for (uint32_t i = 0; (size_t)i * ds < len; i++) {
		size_t n = len - (size_t)i * ds < ds ? len - (size_t)i * ds : ds;
		uint8_t be[4];

		put_be32(be, i);
		if (!EVP_DigestInit_ex(mc, md, NULL) || !EVP_DigestUpdate(mc, be, 4) ||
		    !EVP_DigestUpdate(mc, buf + (size_t)i * ds, n) ||
		    !EVP_DigestFinal_ex(mc, h, NULL)) {
			rc = -EIO;
			break;
		}
		memcpy(buf + (size_t)i * ds, h, n);
	}
	OPENSSL_cleanse(h, sizeof(h));
	return rc;
}

/* Merge stripes blocks of key_size bytes into the key (the AF splitter undone). */
static int luks_af_merge(const char *hash, const uint8_t *src, uint32_t key_size,
			 uint32_t stripes, uint8_t *key)
{
	EVP_MD *md = luks_md(hash);
	EVP_MD_CTX *mc = EVP_MD_CTX_new();
	int rc = 0;

	if (!md || !mc) {
		rc = md ? -ENOMEM : -ENOTSUP;
		goto out;
	}
	memset(key, 0, key_size);
	for (uint32_t i = 0; i < stripes && !rc; i++) {
		for (uint32_t j = 0; j < key_size; j++)
			key[j] ^= src[(size_t)i * key_size + j];
		if (i + 1 < stripes)
			rc = luks_diffuse(md, mc, key, key_size);
	}
	if (rc)
		dc_error("anti-forensic merge with %s failed in OpenSSL", hash);
out:
	EVP_MD_CTX_free(mc);
	EVP_MD_free(md);
	return rc;
}

/* 0 if a "aes-xts-plain64" spec with a key of key_len bytes is what we run. */
static int luks_cipher(const char *spec, uint32_t key_len, const char *what)
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

/* --- LUKS1 ----------------------------------------------------------------- */

/* Key slot i of a LUKS1 header (its key material must end before the payload). */
static int luks1_slot(const struct luks1_header *b, struct luks_hdr *h, unsigned i,
		      struct luks_why *w)
{
	const struct luks1_keyslot *k = &b->slot[i];
	struct luks_slot *s = &h->slot[i];
	uint64_t len;

	if (k->active == LUKS1_SLOT_INACTIVE)
		return 0;
	if (k->active != LUKS1_SLOT_ACTIVE)
		return luks_bad(w, -EINVAL,
				"corrupt LUKS1 header: key slot %u has the invalid state "
				"0x%08x",
				i, k->active);
	s->active = true;
	s->priority = 1;
	s->digest = 0;
	s->kdf.type = LUKS_PBKDF2;
	memcpy(s->kdf.hash, h->digest[0].hash, LUKS_NAME_LEN);
	s->kdf.iterations = k->iterations;
	memcpy(s->kdf.salt, k->salt, sizeof(k->salt));
	s->kdf.salt_len = sizeof(k->salt);
	memcpy(s->af_hash, h->digest[0].hash, LUKS_NAME_LEN);
	s->stripes = k->stripes;
	s->key_size = s->area_key_size = b->key_bytes;
	memcpy(s->area_cipher, h->cipher, sizeof(h->cipher));
	len = (uint64_t)b->key_bytes * s->stripes;
	s->area_offset = (uint64_t)k->key_material_offset * 512;
	s->area_size = (len + 511) / 512 * 512;
	if (s->kdf.iterations == 0 || s->kdf.iterations > INT32_MAX || s->stripes == 0 ||
	    s->stripes > LUKS_STRIPES_MAX || k->key_material_offset == 0 ||
	    s->area_offset + s->area_size > h->offset)
		return luks_bad(w, -EINVAL,
				"corrupt LUKS1 header: key slot %u (iterations %u, "
				"stripes %u, key material at sector %u) does not fit "
				"before the payload at sector %u",
				i, s->kdf.iterations, s->stripes, k->key_material_offset,
				b->payload_offset);
	return 0;
}

static int luks1_parse(const uint8_t *raw, struct luks_hdr *h, struct luks_why *w)
{
	char name[LUKS_NAME_LEN], mode[LUKS_NAME_LEN];
	struct luks1_header b;
	int rc = 0;

	luks1_header_decode(&b, raw);
	h->version = 1;
	h->sector_size = 512;
	if (!luks_field(name, b.cipher_name, 32) ||
	    !luks_field(mode, b.cipher_mode, 32) ||
	    !luks_field(h->digest[0].hash, b.hash_spec, 32) ||
	    !luks_field(h->uuid, b.uuid, 40))
		return luks_bad(w, -EINVAL,
				"corrupt LUKS1 header: a text field is not terminated "
				"or not printable");
	snprintf(h->cipher, sizeof(h->cipher), "%s-%s", name, mode);
	if (b.key_bytes == 0 || b.key_bytes > LUKS_KEY_MAX)
		return luks_bad(w, -EINVAL, "corrupt LUKS1 header: key size %u bytes",
				b.key_bytes);
	if (b.payload_offset == 0)
		return luks_bad(w, -ENOTSUP,
				"payload offset 0: a detached LUKS1 header is not "
				"supported");
	if (b.mk_digest_iter == 0 || b.mk_digest_iter > INT32_MAX)
		return luks_bad(
			w, -EINVAL,
			"corrupt LUKS1 header: volume key digest has %u iterations",
			b.mk_digest_iter);
	h->offset = (uint64_t)b.payload_offset * 512;
	h->ndigests = 1;
	h->digest[0].iterations = b.mk_digest_iter;
	memcpy(h->digest[0].value, b.mk_digest, LUKS1_DIGEST_LEN);
	h->digest[0].len = LUKS1_DIGEST_LEN;
	memcpy(h->digest[0].salt, b.mk_digest_salt, sizeof(b.mk_digest_salt));
	h->digest[0].salt_len = sizeof(b.mk_digest_salt);
	h->nslots = LUKS1_SLOTS;
	for (unsigned i = 0; i < LUKS1_SLOTS && rc == 0; i++)
		rc = luks1_slot(&b, h, i, w);
	return rc;
}

/* --- LUKS2: JSON ----------------------------------------------------------- */

static struct json_object *luks_jget(struct json_object *o, const char *key,
				     enum json_type t)
{
	struct json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, t))
		return NULL;
	return v;
}

static const char *luks_jstr(struct json_object *o, const char *key)
{
	struct json_object *v = luks_jget(o, key, json_type_string);

	return v ? json_object_get_string(v) : NULL;
}

static bool luks_jint(struct json_object *o, const char *key, uint64_t min, uint64_t max,
		      uint64_t *out)
{
	struct json_object *v = luks_jget(o, key, json_type_int);
	int64_t n;

	if (!v)
		return false;
	n = json_object_get_int64(v);
	if (n < 0 || (uint64_t)n < min || (uint64_t)n > max)
		return false;
	*out = (uint64_t)n;
	return true;
}

/* LUKS2 writes 64-bit quantities as decimal strings. */
static bool luks_ju64(struct json_object *o, const char *key, uint64_t *out)
{
	const char *s = luks_jstr(o, key);
	uint64_t v = 0;

	if (!s || !*s || strlen(s) > 20)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || __builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
			return false;
	}
	*out = v;
	return true;
}

static bool luks_jname(struct json_object *o, const char *key, char *dst, size_t len)
{
	const char *s = luks_jstr(o, key);

	if (!s || strlen(s) >= len || !luks_printable(s))
		return false;
	strcpy(dst, s);
	return true;
}

static bool luks_b64(struct json_object *o, const char *key, uint8_t *dst, size_t max,
		     size_t *len)
{
	const char *s = luks_jstr(o, key);
	size_t n = s ? strlen(s) : 0, pad = 0;
	uint8_t tmp[(LUKS_SALT_MAX + 2) / 3 * 3 + 3];
	int got;

	if (!s || n == 0 || n % 4 || n / 4 * 3 > sizeof(tmp))
		return false;
	if (s[n - 1] == '=')
		pad = s[n - 2] == '=' ? 2 : 1;
	got = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)n);
	if (got < 0 || (size_t)got < pad || (size_t)got - pad > max)
		return false;
	*len = (size_t)got - pad;
	memcpy(dst, tmp, *len);
	return true;
}

/* A JSON object key that is a small decimal id. */
static int luks_jid(const char *key, int max)
{
	char *end;
	long v;

	if (!*key || key[0] < '0' || key[0] > '9' || (key[0] == '0' && key[1]))
		return -1;
	v = strtol(key, &end, 10);
	return *end || v < 0 || v >= max ? -1 : (int)v;
}

static bool luks_jlist_has(struct json_object *arr, const char *id)
{
	size_t n = arr ? json_object_array_length(arr) : 0;

	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(arr, i);

		if (json_object_is_type(e, json_type_string) &&
		    !strcmp(json_object_get_string(e), id))
			return true;
	}
	return false;
}

static int luks2_kdf(struct json_object *o, struct luks_kdf *k)
{
	const char *type = luks_jstr(o, "type");
	uint64_t v;

	if (!type)
		return -EINVAL;
	if (!strcmp(type, "pbkdf2")) {
		k->type = LUKS_PBKDF2;
		if (!luks_jname(o, "hash", k->hash, sizeof(k->hash)) ||
		    !luks_jint(o, "iterations", 1, INT32_MAX, &v))
			return -EINVAL;
		k->iterations = (uint32_t)v;
	} else if (!strcmp(type, "argon2i") || !strcmp(type, "argon2id")) {
		k->type = type[6] == 'i' && type[7] == 'd' ? LUKS_ARGON2ID : LUKS_ARGON2I;
		if (!luks_jint(o, "time", 1, UINT32_MAX, &v))
			return -EINVAL;
		k->iterations = (uint32_t)v;
		if (!luks_jint(o, "memory", 8, LUKS_ARGON2_MEM_MAX, &v))
			return -EINVAL;
		k->memory = (uint32_t)v;
		if (!luks_jint(o, "cpus", 1, 0xffffff, &v))
			return -EINVAL;
		k->cpus = (uint32_t)v;
	} else {
		return -ENOTSUP;
	}
	return luks_b64(o, "salt", k->salt, sizeof(k->salt), &k->salt_len) ? 0 : -EINVAL;
}

static int luks2_keyslot(struct json_object *o, int id, struct luks_slot *s,
			 struct luks_why *w)
{
	struct json_object *af = luks_jget(o, "af", json_type_object);
	struct json_object *area = luks_jget(o, "area", json_type_object);
	struct json_object *kdf = luks_jget(o, "kdf", json_type_object);
	const char *type = luks_jstr(o, "type"), *bad = NULL;
	uint64_t v = 1, ks, st;
	int rc;

	if (!type)
		return luks_bad(w, -EINVAL,
				"corrupt LUKS2 header: keyslot %d has no type", id);
	if (strcmp(type, "luks2") != 0)
		return 0; /* e.g. a re-encryption slot: holds no passphrase */
	if (json_object_object_get_ex(o, "priority", NULL) &&
	    !luks_jint(o, "priority", 0, 2, &v))
		bad = "priority";
	else if (!luks_jint(o, "key_size", 1, LUKS_KEY_MAX, &ks))
		bad = "key_size";
	else if (!af || !luks_jstr(af, "type") ||
		 strcmp(luks_jstr(af, "type"), "luks1") ||
		 !luks_jint(af, "stripes", 1, LUKS_STRIPES_MAX, &st) ||
		 !luks_jname(af, "hash", s->af_hash, sizeof(s->af_hash)))
		bad = "af";
	else if (!area || !luks_jstr(area, "type") ||
		 !luks_ju64(area, "offset", &s->area_offset) ||
		 !luks_ju64(area, "size", &s->area_size) ||
		 !luks_jname(area, "encryption", s->area_cipher, sizeof(s->area_cipher)))
		bad = "area";
	if (bad)
		return luks_bad(w, -EINVAL,
				"corrupt LUKS2 header: keyslot %d has no valid \"%s\"",
				id, bad);
	s->active = true;
	s->digest = -1;
	if (strcmp(luks_jstr(area, "type"), "raw") != 0) {
		snprintf(s->skip, sizeof(s->skip), "area type \"%s\" is not supported",
			 luks_shown(luks_jstr(area, "type")));
		return 0;
	}
	s->priority = (int)v;
	if (!luks_jint(area, "key_size", 1, LUKS_KEY_MAX, &v))
		return luks_bad(
			w, -EINVAL,
			"corrupt LUKS2 header: keyslot %d has no valid area key_size",
			id);
	s->area_key_size = (uint32_t)v;
	s->key_size = (uint32_t)ks;
	s->stripes = (uint32_t)st;
	if (ks * st > s->area_size || s->area_offset % LUKS_AREA_SECTOR ||
	    s->area_size > UINT32_MAX)
		return luks_bad(
			w, -EINVAL,
			"corrupt LUKS2 header: keyslot %d needs %llu bytes of key "
			"material but its area holds %llu at offset %llu",
			id, (unsigned long long)(ks * st),
			(unsigned long long)s->area_size,
			(unsigned long long)s->area_offset);
	rc = luks2_kdf(kdf, &s->kdf);
	if (rc == -ENOTSUP)
		snprintf(s->skip, sizeof(s->skip), "kdf \"%s\" is not supported",
			 luks_shown(luks_jstr(kdf, "type")));
	else if (rc)
		return luks_bad(w, rc,
				"corrupt LUKS2 header: keyslot %d has no valid kdf", id);
	return 0;
}

static int luks2_segment(struct json_object *segs, struct luks_hdr *h, struct luks_why *w)
{
	struct json_object *seg = luks_jget(segs, "0", json_type_object);
	const char *type, *size, *tweak;
	uint64_t ss;

	if (json_object_object_length(segs) == 1 && !seg)
		return luks_bad(w, -EINVAL,
				"corrupt LUKS2 header: no data segment \"0\"");
	if (json_object_object_length(segs) != 1 || !seg)
		return luks_bad(w, -ENOTSUP,
				"%d data segments (an interrupted re-encryption?): only "
				"one segment \"0\" is supported",
				json_object_object_length(segs));
	type = luks_jstr(seg, "type");
	if (!type || strcmp(type, "crypt") != 0)
		return luks_bad(w, -ENOTSUP, "data segment type \"%s\" is not supported",
				luks_shown(type));
	size = luks_jstr(seg, "size");
	tweak = luks_jstr(seg, "iv_tweak");
	if (!luks_ju64(seg, "offset", &h->offset) || !size ||
	    (strcmp(size, "dynamic") && !luks_ju64(seg, "size", &h->size)) ||
	    !luks_jname(seg, "encryption", h->cipher, sizeof(h->cipher)) ||
	    !luks_jint(seg, "sector_size", 512, 4096, &ss) || !luks_power_of_two(ss))
		return luks_bad(w, -EINVAL, "corrupt LUKS2 header: invalid data segment");
	if (tweak && strcmp(tweak, "0") != 0)
		return luks_bad(w, -ENOTSUP, "data segment iv_tweak %s is not supported",
				luks_shown(tweak));
	if (h->size % ss)
		return luks_bad(w, -EINVAL,
				"corrupt LUKS2 header: segment size %llu is not a "
				"multiple of its %llu-byte sectors",
				(unsigned long long)h->size, (unsigned long long)ss);
	h->sector_size = (uint32_t)ss;
	return 0;
}

static int luks2_digests(struct json_object *digests, struct luks_hdr *h,
			 struct luks_why *w)
{
	json_object_object_foreach(digests, key, val)
	{
		struct luks_digest *dg = &h->digest[h->ndigests];
		struct json_object *slots = luks_jget(val, "keyslots", json_type_array);
		struct json_object *segs = luks_jget(val, "segments", json_type_array);
		const char *type = luks_jstr(val, "type");
		uint64_t v;

		if (!type || !slots || !segs)
			return luks_bad(w, -EINVAL, "corrupt LUKS2 header: digest %s",
					luks_shown(key));
		if (strcmp(type, "pbkdf2") != 0 || !luks_jlist_has(segs, "0"))
			continue; /* cannot confirm a key for our segment */
		if (h->ndigests == LUKS_DIGESTS)
			return luks_bad(w, -ENOTSUP, "more than %d digests",
					LUKS_DIGESTS);
		if (!luks_jname(val, "hash", dg->hash, sizeof(dg->hash)) ||
		    !luks_jint(val, "iterations", 1, INT32_MAX, &v) ||
		    !luks_b64(val, "salt", dg->salt, sizeof(dg->salt), &dg->salt_len) ||
		    !luks_b64(val, "digest", dg->value, sizeof(dg->value), &dg->len))
			return luks_bad(w, -EINVAL, "corrupt LUKS2 header: digest %s",
					luks_shown(key));
		dg->iterations = (uint32_t)v;
		for (unsigned i = 0; i < LUKS_SLOTS; i++) {
			char id[12];

			snprintf(id, sizeof(id), "%u", i);
			if (h->slot[i].active && luks_jlist_has(slots, id))
				h->slot[i].digest = (int)h->ndigests;
		}
		h->ndigests++;
	}
	return 0;
}

static int luks2_json(struct json_object *root, struct luks_hdr *h, struct luks_why *w)
{
	struct json_object *slots = luks_jget(root, "keyslots", json_type_object);
	struct json_object *segs = luks_jget(root, "segments", json_type_object);
	struct json_object *digests = luks_jget(root, "digests", json_type_object);
	struct json_object *config = luks_jget(root, "config", json_type_object);
	struct json_object *req, *mand;
	uint64_t json_size, ks_size, meta;
	int rc;

	if (!slots || !segs || !digests || !config)
		return luks_bad(w, -EINVAL,
				"corrupt LUKS2 header: the JSON area lacks keyslots, "
				"segments, digests or config");
	if (!luks_ju64(config, "json_size", &json_size) ||
	    json_size != h->hdr_size - LUKS2_BIN_LEN)
		return luks_bad(
			w, -EINVAL,
			"corrupt LUKS2 header: config json_size does not match the "
			"header size %u",
			h->hdr_size);
	if (!luks_ju64(config, "keyslots_size", &ks_size) || ks_size > (1ull << 40))
		return luks_bad(w, -EINVAL,
				"corrupt LUKS2 header: invalid config keyslots_size");
	req = luks_jget(config, "requirements", json_type_object);
	mand = luks_jget(req, "mandatory", json_type_array);
	if (mand && json_object_array_length(mand) > 0) {
		struct json_object *e = json_object_array_get_idx(mand, 0);

		return luks_bad(w, -ENOTSUP,
				"the volume requires \"%s\", which is not supported",
				luks_shown(json_object_is_type(e, json_type_string) ?
						   json_object_get_string(e) :
						   NULL));
	}
	rc = luks2_segment(segs, h, w);
	if (rc)
		return rc;
	json_object_object_foreach(slots, key, val)
	{
		int id = luks_jid(key, LUKS_SLOTS);

		if (id < 0 || !json_object_is_type(val, json_type_object))
			return luks_bad(w, -EINVAL,
					"corrupt LUKS2 header: invalid keyslot \"%s\"",
					luks_shown(key));
		rc = luks2_keyslot(val, id, &h->slot[id], w);
		if (rc)
			return rc;
	}
	h->nslots = LUKS_SLOTS;
	/* Two header copies, then the key slots, then the data: writes to the
	 * payload must never reach the metadata. */
	meta = 2ull * h->hdr_size + ks_size;
	if (h->offset == 0)
		return luks_bad(w, -ENOTSUP,
				"data segment at offset 0: a detached LUKS2 header is "
				"not supported");
	if (h->offset < meta)
		return luks_bad(w, -EINVAL,
				"corrupt LUKS2 header: the data segment at %llu overlaps "
				"the headers and key slots (%llu bytes)",
				(unsigned long long)h->offset, (unsigned long long)meta);
	for (unsigned i = 0; i < LUKS_SLOTS; i++) {
		const struct luks_slot *s = &h->slot[i];

		if (s->active && !s->skip[0] &&
		    (s->area_offset < 2ull * h->hdr_size || s->area_size > meta ||
		     s->area_offset > meta - s->area_size))
			return luks_bad(
				w, -EINVAL,
				"corrupt LUKS2 header: keyslot %u's area (%llu bytes "
				"at %llu) lies outside the key slot area",
				i, (unsigned long long)s->area_size,
				(unsigned long long)s->area_offset);
	}
	return luks2_digests(digests, h, w);
}

/* --- LUKS2: binary header -------------------------------------------------- */

/* The binary header of the copy at off (bin), checked: magic, version, size,
 * offset and text fields; alg gets the checksum algorithm. */
static int luks2_binary(const uint8_t *bin, uint64_t off, const char *which,
			struct luks_hdr *h, char alg[LUKS_NAME_LEN], struct luks_why *w)
{
	struct luks2_header b;

	if (luksfmt_version(bin, off != 0) != 2)
		return luks_bad(w, -EINVAL, "no %s LUKS2 header at offset %llu", which,
				(unsigned long long)off);
	luks2_header_decode(&b, bin);
	memset(h, 0, sizeof(*h));
	h->version = 2;
	h->seqid = b.seqid;
	if (b.hdr_size < LUKS2_HDR_MIN || b.hdr_size > LUKS2_HDR_MAX ||
	    !luks_power_of_two(b.hdr_size) || b.hdr_offset != off)
		return luks_bad(
			w, -EINVAL,
			"corrupt LUKS2 header: %s header size %llu or offset %llu", which,
			(unsigned long long)b.hdr_size, (unsigned long long)b.hdr_offset);
	h->hdr_size = (uint32_t)b.hdr_size;
	if (!luks_field(alg, b.checksum_alg, 32) || !luks_field(h->uuid, b.uuid, 40))
		return luks_bad(w, -EINVAL,
				"corrupt LUKS2 header: a text field of the %s header is "
				"not terminated",
				which);
	return 0;
}

/* The checksum covers the whole header (buf, hdr_size bytes) with its own
 * field zeroed (which this does). */
static int luks2_checksum(uint8_t *buf, const struct luks_hdr *h, const char *alg,
			  const char *which, uint64_t off, struct luks_why *w)
{
	uint8_t csum[LUKS2_CSUM_LEN], md_out[EVP_MAX_MD_SIZE];
	EVP_MD *md = NULL;
	unsigned md_len;
	int rc = 0;

	memcpy(csum, buf + LUKS2_CSUM_OFF, sizeof(csum));
	memset(buf + LUKS2_CSUM_OFF, 0, LUKS2_CSUM_LEN);
	md = EVP_MD_fetch(NULL, alg, NULL);
	if (!md || EVP_MD_get_size(md) > LUKS2_CSUM_LEN)
		rc = luks_bad(w, -ENOTSUP,
			      "header checksum algorithm \"%s\" is not supported", alg);
	else if (!EVP_Digest(buf, h->hdr_size, md_out, &md_len, md, NULL))
		rc = luks_bad(w, -EIO, "OpenSSL failed to compute %s", alg);
	else if (memcmp(md_out, csum, md_len) != 0)
		rc = luks_bad(w, -EINVAL,
			      "LUKS2 header checksum mismatch (%s) in the %s header at "
			      "offset %llu: the header is corrupt",
			      alg, which, (unsigned long long)off);
	EVP_MD_free(md);
	return rc;
}

/* The JSON area after the binary header in buf (room for a NUL after it). */
static int luks2_json_area(uint8_t *buf, struct luks_hdr *h, const char *which,
			   struct luks_why *w)
{
	struct json_tokener *tok = json_tokener_new_ex(16);
	struct json_object *root = NULL;
	size_t jlen, end;
	int rc;

	if (!tok)
		return luks_bad(w, -ENOMEM, "out of memory");
	buf[h->hdr_size] = 0;
	jlen = strnlen((char *)buf + LUKS2_BIN_LEN, h->hdr_size - LUKS2_BIN_LEN);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT |
					    JSON_TOKENER_ALLOW_TRAILING_CHARS |
					    JSON_TOKENER_VALIDATE_UTF8);
	root = json_tokener_parse_ex(tok, (char *)buf + LUKS2_BIN_LEN, (int)jlen);
	end = json_tokener_get_parse_end(tok);
	while (root && end < jlen && strchr(" \t\r\n", buf[LUKS2_BIN_LEN + end]))
		end++;
	if (!root || !json_object_is_type(root, json_type_object) || end != jlen)
		rc = luks_bad(w, -EINVAL,
			      "corrupt LUKS2 header: the %s JSON area is not a JSON "
			      "object (%s)",
			      which,
			      json_tokener_error_desc(json_tokener_get_error(tok)));
	else
		rc = luks2_json(root, h, w);
	json_object_put(root);
	json_tokener_free(tok);
	return rc;
}

/* One copy of the header at off (0: primary). -EINVAL: damaged, try the other. */
static int luks2_load(struct luks_disk *d, uint64_t off, struct luks_hdr *h,
		      struct luks_why *w)
{
	const char *which = off ? "secondary" : "primary";
	uint8_t bin[LUKS2_BIN_LEN], *buf;
	char alg[LUKS_NAME_LEN];
	int rc;

	rc = luks_read(d, off, bin, sizeof(bin), "the LUKS2 header");
	if (rc)
		return luks_bad(w, rc, "cannot read the %s LUKS2 header", which);
	rc = luks2_binary(bin, off, which, h, alg, w);
	if (rc)
		return rc;
	buf = malloc(h->hdr_size + 1);
	if (!buf)
		return luks_bad(w, -ENOMEM, "out of memory");
	memcpy(buf, bin, sizeof(bin));
	rc = luks_read(d, off + LUKS2_BIN_LEN, buf + LUKS2_BIN_LEN,
		       h->hdr_size - LUKS2_BIN_LEN, "the LUKS2 JSON area");
	if (rc)
		luks_bad(w, rc, "cannot read the %s LUKS2 JSON area", which);
	if (rc == 0)
		rc = luks2_checksum(buf, h, alg, which, off, w);
	if (rc == 0)
		rc = luks2_json_area(buf, h, which, w);
	free(buf);
	return rc;
}

/* Both copies; the valid one with the higher sequence id wins. */
static int luks2_parse(struct luks_disk *d, struct luks_hdr *h, struct luks_why *w)
{
	struct luks_hdr *other = calloc(1, sizeof(*other));
	struct luks_why w2;
	uint64_t hint;
	int rc, rc2 = -EINVAL;

	if (!other)
		return luks_bad(w, -ENOMEM, "out of memory");
	rc = luks2_load(d, 0, h, w);
	if (rc == -ENOTSUP || rc == -ENOMEM)
		goto out;
	/* The secondary sits right after the primary: at the primary's size if
	 * that is readable, else at any size the format allows. */
	hint = h->hdr_size;
	if (hint)
		rc2 = luks2_load(d, hint, other, &w2);
	for (uint64_t off = LUKS2_HDR_MIN; rc2 == -EINVAL && off <= LUKS2_HDR_MAX;
	     off <<= 1)
		if (off != hint)
			rc2 = luks2_load(d, off, other, &w2);
	if (rc2 == 0 && (rc || other->seqid > h->seqid)) {
		dc_debug("luks: using the secondary LUKS2 header (%s)",
			 rc ? w->msg : "newer");
		memcpy(h, other, sizeof(*h));
		rc = 0;
	} else if (rc && rc2 == -ENOTSUP) {
		memcpy(w, &w2, sizeof(w2));
		rc = rc2;
	}
out:
	free(other);
	return rc;
}

/* --- Key slots ------------------------------------------------------------- */

/* 1: the slot opened and d->vkey holds the volume key; 0: wrong passphrase. */
static int luks_try_slot(struct luks_disk *d, const struct luks_hdr *h, unsigned i,
			 const uint8_t *pass, size_t plen)
{
	const struct luks_slot *s = &h->slot[i];
	const struct luks_digest *dg = &h->digest[s->digest];
	size_t mat_len = (size_t)s->key_size * s->stripes;
	size_t area_len =
		(mat_len + LUKS_AREA_SECTOR - 1) / LUKS_AREA_SECTOR * LUKS_AREA_SECTOR;
	uint8_t *dkey = NULL, *plain = NULL, *cand = NULL, *enc = NULL, check[64];
	char what[32];
	int rc;

	snprintf(what, sizeof(what), "key slot %u", i);
	rc = luks_cipher(s->area_cipher, s->area_key_size, what);
	if (rc)
		return rc;
	dkey = xts_secret_alloc(s->area_key_size);
	plain = xts_secret_alloc(area_len);
	cand = xts_secret_alloc(s->key_size);
	enc = malloc(area_len);
	rc = -ENOMEM;
	if (!dkey || !plain || !cand || !enc) {
		dc_error("out of memory");
		goto out;
	}
	rc = luks_read(d, s->area_offset, enc, area_len, what);
	if (rc)
		goto out;
	rc = luks_kdf(&s->kdf, pass, plen, dkey, s->area_key_size);
	if (rc)
		goto out;
	rc = xts_crypt_buf(s->area_key_size, dkey, 0, 0, LUKS_AREA_SECTOR, plain, enc,
			   area_len);
	if (rc) {
		dc_error("decrypting %s failed", what);
		goto out;
	}
	rc = luks_af_merge(s->af_hash, plain, s->key_size, s->stripes, cand);
	if (rc)
		goto out;
	rc = luks_pbkdf2(dg->hash, cand, s->key_size, dg->salt, dg->salt_len,
			 dg->iterations, check, dg->len);
	if (rc)
		goto out;
	if (xts_secret_equal(check, dg->value, dg->len)) {
		d->vkey = cand;
		d->vkey_len = s->key_size;
		cand = NULL;
		rc = 1;
	}
out:
	OPENSSL_cleanse(check, sizeof(check));
	xts_secret_free(cand, s->key_size);
	xts_secret_free(plain, area_len);
	xts_secret_free(dkey, s->area_key_size);
	free(enc);
	return rc;
}

/* Try the slots the passphrase may open: the one asked for, or every active
 * slot bound to the segment, high priority first. */
static int luks_unlock(struct luks_disk *d, const struct luks_hdr *h, int want,
		       const uint8_t *pass, size_t plen)
{
	char tried[LUKS_SLOTS * 4] = "", skipped[160] = "";
	unsigned ignored = 0;
	size_t used = 0;
	int rc;

	if (want >= 0) {
		if ((unsigned)want >= h->nslots || !h->slot[want].active) {
			dc_error("key slot %d is not in use (LUKS%d has %u slots)", want,
				 h->version, h->nslots);
			return -ENOENT;
		}
		if (h->slot[want].digest < 0) {
			dc_error("key slot %d does not unlock the data segment", want);
			return -ENOENT;
		}
		if (h->slot[want].skip[0]) {
			dc_error("key slot %d: %s", want, h->slot[want].skip);
			return -ENOTSUP;
		}
	}
	for (unsigned i = 0; i < h->nslots; i++)
		ignored += h->slot[i].active && h->slot[i].digest >= 0 &&
			   h->slot[i].priority == 0;
	for (int prio = 2; prio >= 1; prio--) {
		for (unsigned i = 0; i < h->nslots; i++) {
			const struct luks_slot *s = &h->slot[i];
			bool asked = want >= 0 && (int)i == want && prio == 2;
			bool any = want < 0 && s->active && s->digest >= 0 &&
				   s->priority == prio;

			/* Priority 0 ("ignore") slots open only when asked for. */
			if (!asked && !any)
				continue;
			if (s->skip[0]) {
				if (!skipped[0])
					snprintf(skipped, sizeof(skipped),
						 "key slot %u: %s", i, s->skip);
				continue;
			}
			rc = luks_try_slot(d, h, i, pass, plen);
			if (rc < 0)
				return rc;
			if (rc == 1) {
				d->slot = (int)i;
				d->kdf = s->kdf.type;
				return 0;
			}
			used += (size_t)snprintf(tried + used, sizeof(tried) - used,
						 "%s%u", used ? ", " : "", i);
		}
	}
	if (!used && skipped[0]) {
		dc_error("no usable key slot (%s)", skipped);
		return -ENOTSUP;
	}
	if (!used && want < 0 && ignored) {
		dc_error("every key slot that unlocks the data segment has priority "
			 "\"ignore\": name one with slot=N");
		return -ENOENT;
	}
	if (!used) {
		dc_error("no active key slot unlocks the data segment");
		return -ENOENT;
	}
	dc_error("no key slot matches the %s (tried key slot%s %s%s%s)",
		 d->secret_is_keyfile ? "key file" : "passphrase",
		 strchr(tried, ',') ? "s" : "", tried, skipped[0] ? "; skipped " : "",
		 skipped);
	return -EACCES;
}

/* --- The passphrase or key file -------------------------------------------- */

/* The whole file (keyfile, as cryptsetup --key-file), or its first line without
 * the newline (passphrase-file), into locked memory. */
static int luks_secret_load(struct luks_disk *d, uint8_t **out, size_t *len, size_t *cap)
{
	static atomic_bool warned;
	const char *path = d->secret_path;
	const char *kind = d->secret_is_keyfile ? "key file" : "passphrase file";
	struct stat st;
	size_t got = 0;
	uint8_t *p;
	int fd, rc = 0;

	fd = xts_secret_open(kind, path, &st);
	if (fd < 0)
		return fd;
	if (st.st_size > LUKS_SECRET_MAX) {
		dc_error("%s %s: %lld bytes; expected at most %u", kind, path,
			 (long long)st.st_size, LUKS_SECRET_MAX);
		close(fd);
		return -EINVAL;
	}
	if ((st.st_mode & (S_IRGRP | S_IROTH)) && !atomic_exchange(&warned, true))
		fprintf(stderr,
			"diskcore: luks: warning: %s %s is readable by group or others "
			"(mode %03o); chmod 600 it\n",
			kind, path, (unsigned)(st.st_mode & 0777));
	*cap = (size_t)st.st_size + 1;
	p = xts_secret_alloc(*cap);
	if (!p) {
		dc_error("out of memory");
		close(fd);
		return -ENOMEM;
	}
	/* One byte more than fstat said, to notice a file that grew. */
	while (got < *cap) {
		ssize_t r = read(fd, p + got, *cap - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r < 0 ? -errno : 0;
			break;
		}
		got += (size_t)r;
	}
	close(fd);
	if (rc == 0 && got == *cap)
		rc = -EAGAIN;
	if (rc < 0) {
		dc_error("%s %s: %s", kind, path,
			 rc == -EAGAIN ? "changed while being read" : strerror(-rc));
		xts_secret_free(p, *cap);
		return rc;
	}
	if (!d->secret_is_keyfile) {
		uint8_t *nl = memchr(p, '\n', got);

		if (nl)
			got = (size_t)(nl - p);
	} else if (got == 0) {
		dc_error("key file %s is empty", path);
		xts_secret_free(p, *cap);
		return -EINVAL;
	}
	*out = p;
	*len = got;
	return 0;
}

/* --- I/O ------------------------------------------------------------------- */

static uint64_t luks_sector_count(void *inst)
{
	struct luks_disk *d = inst;
	uint64_t bytes = luks_child_bytes(d);

	if (bytes <= d->offset)
		return 0;
	bytes -= d->offset;
	if (d->size && d->size < bytes)
		bytes = d->size;
	return bytes / d->x.sector_size;
}

static void luks_submit(void *inst, struct dc_req *req)
{
	struct luks_disk *d = inst;
	uint64_t n = luks_sector_count(d);
	struct dc_req *child;

	if (req->sector > n || req->count > n - req->sector) {
		dc_complete(req, DC_E_ILLEGAL_BLOCK);
		return;
	}
	if (req->op != DC_OP_UNMAP) {
		xts_submit(&d->x, req);
		return;
	}
	if (req->count == 0) {
		dc_complete(req, 0);
		return;
	}
	child = dc_child_req(req, 0);
	if (!child) {
		dc_complete_detail(req, DC_E_IO, ENOMEM);
		return;
	}
	child->sector = (req->sector << d->x.child_shift) + d->x.child_offset;
	child->count = req->count << d->x.child_shift;
	dc_child_submit(req, child, dc_child_done_complete);
}

static int luks_resize(void *inst, uint64_t new_sector_count)
{
	(void)inst;
	(void)new_sector_count;
	dc_error("cannot resize a LUKS volume: resize the inner disk; the payload "
		 "follows it");
	return -ENOTSUP;
}

/* --- Open and close -------------------------------------------------------- */

static void luks_close(void *inst)
{
	struct luks_disk *d = inst;

	if (!d)
		return;
	xts_secret_free(d->vkey, d->vkey_len);
	free(d->secret_path);
	free(d);
}

/* The LUKS UUID as the disk id. */
static void luks_disk_id(const char *uuid, struct dc_info *info)
{
	uint8_t id[16];
	unsigned n = 0;

	for (const char *p = uuid; *p && n < 32; p++) {
		int v = *p >= '0' && *p <= '9' ? *p - '0' :
			*p >= 'a' && *p <= 'f' ? *p - 'a' + 10 :
			*p >= 'A' && *p <= 'F' ? *p - 'A' + 10 :
						 -1;

		if (*p == '-')
			continue;
		if (v < 0)
			return;
		if (n % 2 == 0)
			id[n / 2] = (uint8_t)(v << 4);
		else
			id[n / 2] |= (uint8_t)v;
		n++;
	}
	if (n != 32)
		return;
	memcpy(info->disk_id, id, sizeof(id));
	info->flags |= DC_INFO_HAS_DISK_ID;
}

/* Header, cipher and geometry checks that need no passphrase. */
static int luks_check(struct luks_disk *d, const struct luks_hdr *h)
{
	uint64_t bytes = luks_child_bytes(d);

	if (strcmp(h->cipher, LUKS_CIPHER) != 0 &&
	    strcmp(h->cipher, LUKS_CIPHER_PLAIN) != 0) {
		dc_error("unsupported cipher \"%s\": only " LUKS_CIPHER
			 " and " LUKS_CIPHER_PLAIN " are supported",
			 h->cipher);
		return -ENOTSUP;
	}
	if (h->offset % d->child_ss) {
		dc_error("payload offset %llu is not a multiple of the inner disk's "
			 "%u-byte sectors",
			 (unsigned long long)h->offset, d->child_ss);
		return -ENOTSUP;
	}
	if (bytes < h->offset) {
		dc_error(
			"the inner disk (%llu bytes) ends before the payload offset %llu",
			(unsigned long long)bytes, (unsigned long long)h->offset);
		return -EINVAL;
	}
	if (h->size && bytes - h->offset < h->size) {
		dc_error("the inner disk (%llu bytes) ends before the end of the "
			 "%llu-byte payload at offset %llu",
			 (unsigned long long)bytes, (unsigned long long)h->size,
			 (unsigned long long)h->offset);
		return -EINVAL;
	}
	return 0;
}

static int luks_header(struct luks_disk *d, struct luks_hdr *h)
{
	uint8_t b[sizeof(struct luks1_header)];
	struct luks_why w = { "" };
	int version;
	int rc;

	rc = luks_read(d, 0, b, sizeof(b), "the LUKS header");
	if (rc)
		return rc;
	version = luksfmt_version(b, false);
	if (version < 0) {
		dc_error(
			"not a LUKS volume: no LUKS magic at offset 0 of the inner disk");
		return -EINVAL;
	}
	if (version == 1)
		rc = luks1_parse(b, h, &w);
	else if (version == 2)
		rc = luks2_parse(d, h, &w);
	else
		rc = luks_bad(&w, -ENOTSUP, "LUKS version %d is not supported (1 or 2)",
			      version);
	if (rc)
		dc_error("%s", w.msg);
	return rc;
}

static int luks_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	const char *keyfile = dc_opt_str(a, "keyfile");
	const char *passfile = dc_opt_str(a, "passphrase-file");
	struct luks_hdr *h = NULL;
	uint8_t *pass = NULL;
	size_t plen = 0, pcap = 0;
	struct luks_disk *d;
	uint64_t v;
	int want = -1, rc;

	if (a->nfields != 0 || a->nchildren != 1) {
		dc_error(
			"expected luks;keyfile=PATH:SPEC or luks;passphrase-file=PATH:SPEC");
		return -EINVAL;
	}
	if (!keyfile == !passfile || (keyfile && !*keyfile) || (passfile && !*passfile)) {
		dc_error("give exactly one of keyfile=PATH or passphrase-file=PATH");
		return -EINVAL;
	}
	if (dc_opt_num(a, "slot", &v)) {
		if (v >= LUKS_SLOTS) {
			dc_error("slot=%llu: expected 0 to %d", (unsigned long long)v,
				 LUKS_SLOTS - 1);
			return -EINVAL;
		}
		want = (int)v;
	}
	d = calloc(1, sizeof(*d));
	if (!d || !(d->secret_path = strdup(keyfile ? keyfile : passfile))) {
		free(d);
		dc_error("out of memory");
		return -ENOMEM;
	}
	*inst = d;
	d->secret_is_keyfile = keyfile != NULL;
	d->slot = -1;
	d->child = dc_node_child(a->node, 0);
	d->child_ss = info->sector_size;
	h = calloc(1, sizeof(*h));
	if (!h) {
		dc_error("out of memory");
		return -ENOMEM;
	}
	rc = luks_header(d, h);
	if (!rc)
		rc = luks_check(d, h);
	if (!rc)
		rc = luks_secret_load(d, &pass, &plen, &pcap);
	if (!rc)
		rc = luks_unlock(d, h, want, pass, plen);
	xts_secret_free(pass, pcap);
	if (rc)
		goto out;
	rc = luks_cipher(h->cipher, d->vkey_len, "the data segment");
	if (rc)
		goto out;
	d->x.iv32 = strcmp(h->cipher, LUKS_CIPHER_PLAIN) == 0;
	d->version = h->version;
	d->luks_ss = h->sector_size;
	d->offset = h->offset;
	d->size = h->size;
	memcpy(d->cipher_name, h->cipher, sizeof(d->cipher_name));
	memcpy(d->uuid, h->uuid, sizeof(d->uuid));

	/* A disk sector is the larger of an encryption unit and a child sector. */
	d->x.key_len = d->vkey_len;
	d->x.key = d->vkey;
	d->x.sector_size = d->luks_ss > d->child_ss ? d->luks_ss : d->child_ss;
	d->x.unit_shift = (uint32_t)__builtin_ctz(d->x.sector_size / d->luks_ss);
	d->x.child_shift = (uint32_t)__builtin_ctz(d->x.sector_size / d->child_ss);
	d->x.child_offset = d->offset / d->child_ss;
	xts_defaults(&d->x);

	info->sector_size = d->x.sector_size;
	if (info->physical_sector_size < info->sector_size)
		info->physical_sector_size = info->sector_size;
	info->sector_count = luks_sector_count(d);
	if (!info->sector_count) {
		dc_error(
			"the inner disk (%llu bytes) ends before the LUKS payload, which "
			"starts at byte %llu",
			(unsigned long long)luks_child_bytes(d),
			(unsigned long long)d->offset);
		rc = -EINVAL;
		goto out;
	}
	info->optimal_unmap_sectors >>= d->x.child_shift;
	if (!info->optimal_unmap_sectors)
		info->optimal_unmap_sectors = 1;
	/* Inner zeroes decrypt to noise; an ignored unmap stays ignored. */
	if (info->unmap_behavior != DC_UNMAP_IGNORED)
		info->unmap_behavior = DC_UNMAP_UNSPECIFIED;
	info->flags &= ~(DC_INFO_EJECT | DC_INFO_CAN_READ_CACHE | DC_INFO_HAS_DISK_ID);
	luks_disk_id(d->uuid, info);
	snprintf(info->disk_type, sizeof(info->disk_type), "luks%d", d->version);
out:
	free(h);
	return rc;
}

static void luks_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct luks_disk *d = inst;
	char buf[32];

	kv(arg, "version", d->version == 1 ? "LUKS1" : "LUKS2");
	kv(arg, "uuid", d->uuid);
	kv(arg, "cipher", d->cipher_name);
	snprintf(buf, sizeof(buf), "%u", d->vkey_len * 8);
	kv(arg, "key_bits", buf);
	snprintf(buf, sizeof(buf), "%u", d->luks_ss);
	kv(arg, "sector_size", buf);
	snprintf(buf, sizeof(buf), "%d", d->slot);
	kv(arg, "key_slot", buf);
	kv(arg, "kdf", luks_kdf_names[d->kdf]);
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)d->offset);
	kv(arg, "payload_offset", buf);
	kv(arg, d->secret_is_keyfile ? "key_file" : "passphrase_file", d->secret_path);
}

static const struct dc_option luks_options[] = {
	{ .name = "keyfile",
	  .type = DC_OPT_STRING,
	  .help = "file whose whole content is the passphrase (cryptsetup --key-file)" },
	{ .name = "passphrase-file",
	  .type = DC_OPT_STRING,
	  .help = "file whose first line (without the newline) is the passphrase" },
	{ .name = "slot",
	  .type = DC_OPT_UINT,
	  .help = "try only this key slot (default: every active slot)" },
	{ 0 },
};

static const struct dc_form luks_forms[] = {
	{ .name = "luks",
	  .nfields = 0,
	  .child = DC_CHILD_ONE,
	  .flags = 0,
	  .syntax = "luks;keyfile=PATH|passphrase-file=PATH[;slot=N]:SPEC",
	  .help = "a LUKS1 or LUKS2 volume (aes-xts-plain64) on SPEC",
	  .options = luks_options },
	{ 0 },
};

DC_PLUGIN(luks_plugin) = {
	.kind = DC_KIND_DECORATOR,
	.name = "luks",
	.version = "0.1.0",
	.summary = "LUKS1 and LUKS2 volumes (aes-xts-plain64), as cryptsetup opens them",
	.usage =
		"luks;keyfile=PATH:SPEC  or  luks;passphrase-file=PATH:SPEC\n"
		"  Opens the LUKS1 or LUKS2 header at the start of SPEC and reads and\n"
		"  writes the payload behind it, as dm-crypt does after cryptsetup open.\n"
		"  keyfile=PATH: the whole file is the passphrase (cryptsetup --key-file);\n"
		"  passphrase-file=PATH: its first line is. slot=N tries only that key\n"
		"  slot. Key slots: PBKDF2, Argon2i, Argon2id. Data: aes-xts-plain64 (or\n"
		"  aes-xts-plain, the 32-bit IV) with\n"
		"  256- or 512-bit keys, 512- to 4096-byte sectors. The disk's sector is\n"
		"  the larger of the LUKS sector and SPEC's; its size is SPEC's minus the\n"
		"  payload offset. The header is never written. Flush, unmap and\n"
		"  persistent reservations pass through; eject does not.",
	.forms = luks_forms,
	.ctx_size = sizeof(struct xts_ctx),
	.ops = DC_OP_BIT(DC_OP_READ) | DC_OP_BIT(DC_OP_WRITE) | DC_OP_BIT(DC_OP_UNMAP),
	.passthrough_ops = DC_OP_BIT(DC_OP_FLUSH) | DC_OPS_PR,
	.open = luks_open,
	.close = luks_close,
	.queue_open = xts_queue_open,
	.queue_close = xts_queue_close,
	.submit = luks_submit,
	.sector_count = luks_sector_count,
	.describe = luks_describe,
	.resize = luks_resize,
};
