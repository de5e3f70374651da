/* SPDX-License-Identifier: MIT */
/* The LUKS2 JSON area (the LUKS2 on-disk format specification): config,
 * keyslots, the one data segment and the digests that bind key slots to it,
 * read into struct luks_hdr. Every value is checked before it is used. */
#include "luks.h"

#include <errno.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	/* The stripes decide how much key material is read and merged. */
	if (bad)
		return luks_bad(w, -EINVAL,
				"corrupt LUKS2 header: keyslot %d has no valid \"%s\"%s",
				id, bad,
				strcmp(bad, "af") ? "" :
						    " (type luks1, a hash and 1 to "
						    "65536 stripes; cryptsetup writes "
						    "4000)");
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
				"corrupt LUKS2 header: keyslot %d has no valid kdf "
				"(pbkdf2: a hash, 1 to 2147483647 iterations; argon2: "
				"time 1 or more, memory 8 to 4194304 KiB, cpus 1 to "
				"16777215; and a salt)",
				id);
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

/* config: the JSON area's size as the binary header says, the key slot
 * area's size (*ks_size), and no mandatory requirement we lack. */
static int luks2_config(struct json_object *config, const struct luks_hdr *h,
			uint64_t *ks_size, struct luks_why *w)
{
	struct json_object *req, *mand;
	uint64_t json_size;

	if (!luks_ju64(config, "json_size", &json_size) ||
	    json_size != h->hdr_size - LUKS2_BIN_LEN)
		return luks_bad(
			w, -EINVAL,
			"corrupt LUKS2 header: config json_size does not match the "
			"header size %u",
			h->hdr_size);
	if (!luks_ju64(config, "keyslots_size", ks_size) || *ks_size > (1ull << 40))
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
	return 0;
}

/* Two header copies, then the key slots, then the data: writes to the payload
 * must never reach the metadata, and key material lies between the two. */
static int luks2_layout(const struct luks_hdr *h, uint64_t ks_size, struct luks_why *w)
{
	uint64_t meta = 2ull * h->hdr_size + ks_size;

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
	return 0;
}

/* The LUKS2 specification's maxima, before anything is looked at. */
static int luks2_counts(struct json_object *slots, struct json_object *digests,
			struct luks_why *w)
{
	int ns = json_object_object_length(slots);
	int nd = json_object_object_length(digests);

	if (ns > LUKS_SLOTS)
		return luks_bad(w, -EINVAL,
				"corrupt LUKS2 header: %d keyslots; LUKS2 allows at most "
				"%d",
				ns, LUKS_SLOTS);
	if (nd > LUKS_DIGESTS)
		return luks_bad(
			w, -EINVAL,
			"corrupt LUKS2 header: %d digests; LUKS2 allows at most %d", nd,
			LUKS_DIGESTS);
	return 0;
}

int luks2_json(struct json_object *root, struct luks_hdr *h, struct luks_why *w)
{
	struct json_object *slots = luks_jget(root, "keyslots", json_type_object);
	struct json_object *segs = luks_jget(root, "segments", json_type_object);
	struct json_object *digests = luks_jget(root, "digests", json_type_object);
	struct json_object *config = luks_jget(root, "config", json_type_object);
	uint64_t ks_size;
	int rc;

	if (!slots || !segs || !digests || !config)
		return luks_bad(w, -EINVAL,
				"corrupt LUKS2 header: the JSON area lacks keyslots, "
				"segments, digests or config");
	rc = luks2_counts(slots, digests, w);
	if (!rc)
		rc = luks2_config(config, h, &ks_size, w);
	if (!rc)
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
	rc = luks2_layout(h, ks_size, w);
	return rc ? rc : luks2_digests(digests, h, w);
}
