/* SPDX-License-Identifier: MIT */
/* Key slots: the passphrase or key file, key derivation (PBKDF2, Argon2i,
 * Argon2id), the slot's key material decrypted and its anti-forensic stripes
 * merged into a candidate volume key, which the header's PBKDF2 digest
 * confirms (the LUKS1 and LUKS2 on-disk format specifications). */
#include "luks.h"

#include <argon2.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const luks_kdf_names[] = { "", "pbkdf2", "argon2i", "argon2id" };

static EVP_MD *luks_md(const char *name)
{
	EVP_MD *md = EVP_MD_fetch(NULL, name, NULL);

	if (!md)
		dc_error("hash \"%s\" named in the header is not available in OpenSSL",
			 name);
	return md;
}

int luks_pbkdf2(const char *hash, const uint8_t *pass, size_t plen, const uint8_t *salt,
		size_t slen, uint32_t iter, uint8_t *out, size_t outlen)
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
	rc = luks_cipher_area(s->area_cipher, dkey, s->area_key_size, 0, plain, enc,
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

/* What one pass over the slots found. */
struct luks_tries {
	char tried[LUKS_SLOTS * 4]; /* "0, 3" */
	char skipped[240];	    /* the first slot not tried, and why */
	size_t used;
	struct luks_limits spent;
};

static void luks_skipped(struct luks_tries *t, unsigned i, const char *why)
{
	if (!t->skipped[0])
		snprintf(t->skipped, sizeof(t->skipped), "key slot %u: %s", i, why);
}

/* Try the slots of priority prio (or the one asked for) within the limits: 1
 * when one opened, 0 when none did, or -errno. */
static int luks_try_slots(struct luks_disk *d, const struct luks_hdr *h, int want,
			  int prio, const uint8_t *pass, size_t plen,
			  struct luks_tries *t)
{
	char why[sizeof(h->slot[0].skip)];
	int rc;

	for (unsigned i = 0; i < h->nslots; i++) {
		const struct luks_slot *s = &h->slot[i];
		bool asked = want >= 0 && (int)i == want && prio == 2;
		bool any = want < 0 && s->active && s->digest >= 0 && s->priority == prio;

		/* Priority 0 ("ignore") slots open only when asked for. */
		if (!asked && !any)
			continue;
		if (s->skip[0]) {
			luks_skipped(t, i, s->skip);
			continue;
		}
		if (!luks_slot_fits(&d->lim, &t->spent, h, s, why, sizeof(why))) {
			luks_skipped(t, i, why);
			continue;
		}
		luks_slot_spend(&t->spent, h, s);
		rc = luks_try_slot(d, h, i, pass, plen);
		if (rc < 0)
			return rc;
		if (rc == 1) {
			d->slot = (int)i;
			d->kdf = s->kdf.type;
			return 1;
		}
		t->used += (size_t)snprintf(t->tried + t->used,
					    sizeof(t->tried) - t->used, "%s%u",
					    t->used ? ", " : "", i);
	}
	return 0;
}

/* Whether slot want can be tried at all (dc_error() if not). */
static int luks_wanted(const struct luks_hdr *h, int want)
{
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
	return 0;
}

/* Try the slots the passphrase may open: the one asked for, or every active
 * slot bound to the segment, high priority first. */
int luks_unlock(struct luks_disk *d, const struct luks_hdr *h, int want,
		const uint8_t *pass, size_t plen)
{
	struct luks_tries t = { .used = 0 };
	unsigned ignored = 0;
	int rc = want >= 0 ? luks_wanted(h, want) : 0;

	if (rc)
		return rc;
	for (unsigned i = 0; i < h->nslots; i++)
		ignored += h->slot[i].active && h->slot[i].digest >= 0 &&
			   h->slot[i].priority == 0;
	for (int prio = 2; prio >= 1 && rc == 0; prio--)
		rc = luks_try_slots(d, h, want, prio, pass, plen, &t);
	if (rc)
		return rc < 0 ? rc : 0;
	if (!t.used && t.skipped[0]) {
		dc_error("no usable key slot (%s)", t.skipped);
		return -ENOTSUP;
	}
	if (!t.used && want < 0 && ignored) {
		dc_error("every key slot that unlocks the data segment has priority "
			 "\"ignore\": name one with slot=N");
		return -ENOENT;
	}
	if (!t.used) {
		dc_error("no active key slot unlocks the data segment");
		return -ENOENT;
	}
	dc_error("no key slot matches the %s (tried key slot%s %s%s%s)",
		 d->secret_is_keyfile ? "key file" : "passphrase",
		 strchr(t.tried, ',') ? "s" : "", t.tried,
		 t.skipped[0] ? "; skipped " : "", t.skipped);
	return -EACCES;
}

/* --- The passphrase or key file -------------------------------------------- */

/* The whole file (keyfile, as cryptsetup --key-file), or its first line without
 * the newline (passphrase-file), into locked memory. */
int luks_secret_load(struct luks_disk *d, uint8_t **out, size_t *len, size_t *cap)
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
