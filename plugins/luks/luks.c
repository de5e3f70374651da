/* SPDX-License-Identifier: MIT */
/* luks: a LUKS1 or LUKS2 volume on the inner disk, read and written as dm-crypt
 * maps it after `cryptsetup open`: the payload starts at the header's payload
 * offset, is encrypted (aes-xts-plain64, aes-cbc-essiv:sha256 and the others
 * luks_cipher.c lists) in data units of the volume's sector size (512 for
 * LUKS1, the segment's sector_size for LUKS2), each tweaked with its index from
 * the start of the payload (iv_large_sectors for 4 KiB units).
 *
 * Opening follows the LUKS1 and LUKS2 on-disk format specifications: a key slot
 * is unlocked by deriving a key from the passphrase (PBKDF2, Argon2i or
 * Argon2id), decrypting the slot's anti-forensic stripes and merging them into a
 * candidate volume key, which the header's PBKDF2 digest confirms. LUKS2 headers
 * are checked against their checksum; a damaged primary falls back to the
 * secondary copy. The header is never written.
 *
 * The volume key lives in locked memory and is wiped at close; the passphrase is
 * wiped as soon as a slot opens. The data path is common/xts, shared with crypt.
 *
 * The header is untrusted input: sizes, counts and offsets are checked before
 * they are used, and what key derivation may cost is bounded (luks_limits.c,
 * docs/spec-strings.md#luks).
 *
 * This file is the plugin: the spec, open and close, I/O. The headers are
 * luks1.c, luks2.c and luks2_json.c; key slots luks_keyslot.c; ciphers
 * luks_cipher.c; the shared helpers and reads of the inner disk luks_util.c
 * (luks.h says what each offers). */
#include "luks.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(offsetof(struct luks_disk, x) == 0, "xts_disk comes first");

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

/* Allocation is the inner disk's behind the header (the payload starts
 * child_offset inner sectors in), one of our sectors to 1 << child_shift of
 * its; inner zeroes decrypt to noise, so nothing here reads as zero, and a
 * sector whose inner sectors differ is data. */
static int luks_extents(void *inst, struct dc_node *node, uint64_t sector, uint64_t count,
			uint64_t *run)
{
	struct luks_disk *d = inst;
	unsigned shift = d->x.child_shift;
	uint64_t crun;
	int rc = dc_node_extents(dc_node_child(node, 0),
				 (sector << shift) + d->x.child_offset, count << shift,
				 &crun);

	if (rc < 0)
		return rc;
	if (crun >> shift == 0) {
		*run = 1;
		return 0;
	}
	*run = crun >> shift;
	return rc & ~(int)DC_EXTENT_ZERO;
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
	luks_cipher_free(d->essiv_key);
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

	if (!luks_cipher_known(h->cipher))
		return -ENOTSUP;
	/* Key material is read whole: it must lie inside the inner disk. */
	for (unsigned i = 0; i < h->nslots; i++) {
		const struct luks_slot *s = &h->slot[i];

		if (s->active && !s->skip[0] &&
		    (s->area_offset > bytes || s->area_size > bytes - s->area_offset)) {
			dc_error("corrupt LUKS header: key slot %u's key material (%llu "
				 "bytes at %llu) lies beyond the end of the inner disk "
				 "(%llu bytes)",
				 i, (unsigned long long)s->area_size,
				 (unsigned long long)s->area_offset,
				 (unsigned long long)bytes);
			return -EINVAL;
		}
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

static const struct dc_option luks_options[] = {
	DC_OPTION_STRING(
		"keyfile",
		"file whose whole content is the passphrase (cryptsetup --key-file)"),
	DC_OPTION_STRING("passphrase-file",
			 "file whose first line (without the newline) is the passphrase"),
	DC_OPTION_UINT("slot", "try only this key slot (default: every active slot)"),
	DC_OPTION_SIZE("pbkdf-memory-max",
		       "most Argon2 memory a key slot may ask for (default 1G)"),
	DC_OPTION_SIZE("pbkdf-work-max", "most Argon2 memory times passes an open "
					 "spends, over the slots it tries (default 16G)"),
	DC_OPTION_UINT("pbkdf-iterations-max",
		       "most PBKDF2 iterations an open spends, over the slots it tries "
		       "(default 32000000)"),
	DC_OPTIONS_END,
};

/* The spec's options into a new instance (*inst, freed by luks_close). */
static int luks_args(const struct dc_open_args *a, struct luks_disk **out, int *want)
{
	const char *keyfile = dc_opt_str(a, "keyfile");
	const char *passfile = dc_opt_str(a, "passphrase-file");
	struct luks_disk *d;
	uint64_t v;

	if (a->nfields != 0 || a->nchildren != 1) {
		dc_error(
			"expected luks;keyfile=PATH:SPEC or luks;passphrase-file=PATH:SPEC");
		return -EINVAL;
	}
	if (!keyfile == !passfile || (keyfile && !*keyfile) || (passfile && !*passfile)) {
		dc_error("give exactly one of keyfile=PATH or passphrase-file=PATH");
		return -EINVAL;
	}
	*want = -1;
	if (dc_opt_num(a, "slot", &v)) {
		if (v >= LUKS_SLOTS) {
			dc_error("slot=%llu: expected 0 to %d", (unsigned long long)v,
				 LUKS_SLOTS - 1);
			return -EINVAL;
		}
		*want = (int)v;
	}
	d = calloc(1, sizeof(*d));
	if (!d || !(d->secret_path = strdup(keyfile ? keyfile : passfile))) {
		free(d);
		dc_error("out of memory");
		return -ENOMEM;
	}
	d->secret_is_keyfile = keyfile != NULL;
	d->slot = -1;
	*out = d;
	return luks_limits_parse(a, &d->lim);
}

/* The header, then the passphrase, then the key slot it opens. */
static int luks_unlock_volume(struct luks_disk *d, struct luks_hdr *h, int want)
{
	uint8_t *pass = NULL;
	size_t plen = 0, pcap = 0;
	int rc;

	rc = luks_header(d, h);
	if (!rc)
		rc = luks_check(d, h);
	if (!rc) {
		luks_limits_apply(&d->lim, h);
		rc = luks_secret_load(d, &pass, &plen, &pcap);
	}
	if (!rc)
		rc = luks_unlock(d, h, want, pass, plen);
	xts_secret_free(pass, pcap);
	if (!rc)
		rc = luks_cipher(h->cipher, d->vkey_len, "the data segment");
	return rc;
}

/* The data path and the disk's geometry, from the unlocked header. */
static int luks_geometry(struct luks_disk *d, const struct luks_hdr *h,
			 struct dc_info *info)
{
	int rc;

	d->version = h->version;
	d->luks_ss = h->sector_size;
	d->offset = h->offset;
	d->size = h->size;
	memcpy(d->cipher_name, h->cipher, sizeof(d->cipher_name));
	memcpy(d->uuid, h->uuid, sizeof(d->uuid));

	/* A disk sector is the larger of an encryption unit and a child sector. */
	rc = luks_cipher_setup(&d->x, h->cipher, d->vkey, d->vkey_len, &d->essiv_key);
	if (rc)
		return rc;
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
		return -EINVAL;
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
	return 0;
}

static int luks_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct luks_disk *d;
	struct luks_hdr *h;
	int want, rc;

	d = NULL;
	rc = luks_args(a, &d, &want);
	*inst = d;
	if (rc)
		return rc;
	d->child = dc_node_child(a->node, 0);
	d->child_ss = info->sector_size;
	h = calloc(1, sizeof(*h));
	if (!h) {
		dc_error("out of memory");
		return -ENOMEM;
	}
	rc = luks_unlock_volume(d, h, want);
	if (!rc)
		rc = luks_geometry(d, h, info);
	free(h);
	return rc;
}

static void luks_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct luks_disk *d = inst;

	kv(arg, "version", d->version == 1 ? "LUKS1" : "LUKS2");
	kv(arg, "uuid", d->uuid);
	kv(arg, "cipher", d->cipher_name);
	dc_kv_u64(kv, arg, "key_bits", d->vkey_len * 8);
	dc_kv_u64(kv, arg, "sector_size", d->luks_ss);
	dc_kv_printf(kv, arg, "key_slot", "%d", d->slot);
	kv(arg, "kdf", luks_kdf_names[d->kdf]);
	dc_kv_u64(kv, arg, "payload_offset", d->offset);
	kv(arg, d->secret_is_keyfile ? "key_file" : "passphrase_file", d->secret_path);
}

DC_PLUGIN(luks_plugin) = {
	XTS_PLUGIN_FIELDS,
	DC_ABOUT(DC_KIND_DECORATOR, "luks", "0.1.0",
		 "LUKS1 and LUKS2 volumes (AES-XTS, AES-CBC-ESSIV), as cryptsetup opens "
		 "them"),
	.usage =
		"luks;keyfile=PATH:SPEC  or  luks;passphrase-file=PATH:SPEC\n"
		"  Opens the LUKS1 or LUKS2 header at the start of SPEC and reads and\n"
		"  writes the payload behind it, as dm-crypt does after cryptsetup open.\n"
		"  keyfile=PATH: the whole file is the passphrase (cryptsetup --key-file);\n"
		"  passphrase-file=PATH: its first line is. slot=N tries only that key\n"
		"  slot. Key slots: PBKDF2, Argon2i, Argon2id. Data: aes-xts-plain64 or\n"
		"  aes-xts-plain (256- or 512-bit keys), aes-cbc-essiv:sha256,\n"
		"  aes-cbc-plain64 or aes-cbc-plain (128- to 256-bit keys); 512- to\n"
		"  4096-byte sectors. The disk's sector is\n"
		"  the larger of the LUKS sector and SPEC's; its size is SPEC's minus the\n"
		"  payload offset. The header is never written. Flush, unmap and\n"
		"  persistent reservations pass through; eject does not.\n"
		"  The header is untrusted: pbkdf-memory-max=SIZE (default 1G),\n"
		"  pbkdf-work-max=SIZE (Argon2 memory x passes, 16G) and\n"
		"  pbkdf-iterations-max=N (PBKDF2, 32000000) bound what opening may\n"
		"  spend on key derivation; a key slot over them is not tried.",
	.forms = DC_FORMS(DC_FORM(
		"luks", 0, DC_CHILD_ONE,
		"luks;keyfile=PATH|passphrase-file=PATH[;slot=N][;pbkdf-memory-max=SIZE]"
		"[;pbkdf-work-max=SIZE][;pbkdf-iterations-max=N]:SPEC",
		"a LUKS1 or LUKS2 volume (AES-XTS or AES-CBC) on SPEC", luks_options)),
	.ops = DC_OP_BIT(DC_OP_READ) | DC_OP_BIT(DC_OP_WRITE) | DC_OP_BIT(DC_OP_UNMAP),
	.passthrough_ops = DC_OP_BIT(DC_OP_FLUSH) | DC_OPS_PR,
	DC_CALLBACKS(luks, open, close, submit, sector_count, describe, resize, extents),
};
