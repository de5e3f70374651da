/* SPDX-License-Identifier: MIT */
/* The LUKS1 header (the LUKS1 on-disk format specification): one binary
 * header, eight key slots, PBKDF2 everywhere, the cipher named by its name and
 * mode fields. */
#include "luks.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

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

int luks1_parse(const uint8_t *raw, struct luks_hdr *h, struct luks_why *w)
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
