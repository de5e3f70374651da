/* SPDX-License-Identifier: MIT */
/* The LUKS2 binary header (the LUKS2 on-disk format specification): two copies,
 * each a 4 KiB binary header and a JSON area covered by one checksum; the
 * valid copy with the higher sequence id wins, so a damaged primary falls back
 * to the secondary. */
#include "luks.h"

#include <errno.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

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
	/* The size decides the JSON area's allocation: only the sizes the
	 * specification allows, 16 KiB to 4 MiB in powers of two. */
	if (b.hdr_size < LUKS2_HDR_MIN || b.hdr_size > LUKS2_HDR_MAX ||
	    !luks_power_of_two(b.hdr_size))
		return luks_bad(w, -EINVAL,
				"corrupt LUKS2 header: the %s header's size %llu is not "
				"one the LUKS2 specification allows (16 KiB to 4 MiB, a "
				"power of two)",
				which, (unsigned long long)b.hdr_size);
	if (b.hdr_offset != off)
		return luks_bad(w, -EINVAL,
				"corrupt LUKS2 header: the %s header at %llu says it is "
				"at %llu",
				which, (unsigned long long)off,
				(unsigned long long)b.hdr_offset);
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
	if (h->hdr_size > luks_child_bytes(d) - off)
		return luks_bad(w, -EINVAL,
				"corrupt LUKS2 header: the %s header (%u bytes at %llu) "
				"ends beyond the inner disk (%llu bytes)",
				which, h->hdr_size, (unsigned long long)off,
				(unsigned long long)luks_child_bytes(d));
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
int luks2_parse(struct luks_disk *d, struct luks_hdr *h, struct luks_why *w)
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
