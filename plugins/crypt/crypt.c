/* SPDX-License-Identifier: MIT */
/* crypt: XTS-AES-256 over an inner disk (docs/openvmm-compat.md §3.1), the same on disk
 * as dm-crypt's aes-xts-plain64: one data unit per inner sector, tweaked with the sector
 * number as a 16-byte little-endian value (with 4 KiB sectors that is dm-crypt's
 * iv_large_sectors convention).
 *
 * Writes encrypt into a staging buffer and send one write down; the caller's
 * buffer is never touched. Reads land in the caller's buffers and are decrypted
 * there in place. The key is read once into locked memory and wiped at close.
 *
 * The data path (per-queue cipher units, staging buffers, splitting large
 * requests across the worker pool) is common/xts, shared with the luks plugin. */
#include "xts/xts.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CRYPT_CIPHER "xts-aes-256"
#define CRYPT_KEY_LEN 64

struct crypt_disk {
	struct xts_disk x; /* first: the xts callbacks take the instance */
	char *key_path;
	uint8_t *key; /* CRYPT_KEY_LEN bytes of locked memory */
};
_Static_assert(offsetof(struct crypt_disk, x) == 0, "xts_disk comes first");

/* --- Open and close -------------------------------------------------------- */

static void crypt_key_wipe(struct crypt_disk *d)
{
	xts_secret_free(d->key, CRYPT_KEY_LEN + 1);
	d->key = NULL;
}

/* Read the key file into a locked page; refuse anything but 64 bytes made of
 * two different 32-byte halves. */
static int crypt_key_load(struct crypt_disk *d, const char *path)
{
	static atomic_bool warned;
	struct stat st;
	ssize_t got = 0;
	int fd, rc = 0;

	fd = xts_secret_open("key file", path, &st);
	if (fd < 0)
		return fd;
	if (st.st_mode & (S_IRGRP | S_IROTH)) {
		dc_debug("crypt: key file %s is readable by group or others (mode %03o)",
			 path, (unsigned)(st.st_mode & 0777));
		if (!atomic_exchange(&warned, true))
			fprintf(stderr,
				"diskcore: crypt: warning: key file %s is readable by "
				"group or others (mode %03o); chmod 600 it\n",
				path, (unsigned)(st.st_mode & 0777));
	}
	d->key = xts_secret_alloc(CRYPT_KEY_LEN + 1);
	if (!d->key) {
		rc = -ENOMEM;
		dc_error("out of memory for the key");
		goto out;
	}
	/* One byte more than a key, to tell "too long" from "exact". */
	while (got <= CRYPT_KEY_LEN) {
		ssize_t r = read(fd, d->key + got, CRYPT_KEY_LEN + 1 - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			dc_error("key file %s: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		got += r;
	}
	if (got != CRYPT_KEY_LEN) {
		rc = -EINVAL;
		if (got > CRYPT_KEY_LEN)
			dc_error("key file %s: %lld bytes, expected exactly %d (two "
				 "256-bit AES keys)",
				 path, (long long)st.st_size, CRYPT_KEY_LEN);
		else
			dc_error("key file %s: %zd bytes, expected exactly %d (two "
				 "256-bit AES keys)",
				 path, got, CRYPT_KEY_LEN);
		goto out;
	}
	if (xts_secret_equal(d->key, d->key + CRYPT_KEY_LEN / 2, CRYPT_KEY_LEN / 2)) {
		rc = -EINVAL;
		dc_error("key file %s: the two 32-byte halves are equal; XTS needs two "
			 "different keys",
			 path);
		goto out;
	}
out:
	close(fd);
	return rc;
}

static void crypt_close(void *inst)
{
	struct crypt_disk *d = inst;

	if (!d)
		return;
	crypt_key_wipe(d);
	free(d->key_path);
	free(d);
}

static const struct dc_option crypt_options[] = {
	DC_OPTION_UINT(
		"threads",
		"most threads one large request is split across (default: CPUs, up to 8)"),
	DC_OPTION_SIZE("split",
		       "requests of at least this size may be split (default 1M)"),
	DC_OPTIONS_END,
};

static int crypt_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct crypt_disk *d;
	uint64_t v;
	int rc;

	if (a->nfields != 2 || a->nchildren != 1) {
		dc_error("expected crypt:" CRYPT_CIPHER ":KEYFILE:SPEC");
		return -EINVAL;
	}
	if (strcmp(a->fields[0], CRYPT_CIPHER) != 0) {
		dc_error("unsupported cipher \"%s\": expected " CRYPT_CIPHER,
			 a->fields[0]);
		return -EINVAL;
	}
	if (!a->fields[1][0]) {
		dc_error("missing key file: expected crypt:" CRYPT_CIPHER
			 ":KEYFILE:SPEC");
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d || !(d->key_path = strdup(a->fields[1]))) {
		free(d);
		dc_error("out of memory");
		return -ENOMEM;
	}
	*inst = d;
	xts_defaults(&d->x);
	if (dc_opt_num(a, "threads", &v)) {
		if (v < 1 || v > XTS_MAX_PIECES) {
			dc_error("threads=%llu: expected 1 to %d", (unsigned long long)v,
				 XTS_MAX_PIECES);
			return -EINVAL;
		}
		d->x.threads = (unsigned)v;
	}
	if (dc_opt_num(a, "split", &v)) {
		if (v < XTS_PIECE_MIN) {
			dc_error("split=%llu: expected at least %d bytes",
				 (unsigned long long)v, XTS_PIECE_MIN);
			return -EINVAL;
		}
		d->x.split = v;
	}
	d->x.sector_size = info->sector_size;
	rc = crypt_key_load(d, d->key_path);
	if (rc < 0)
		return rc;
	d->x.key_len = CRYPT_KEY_LEN;
	d->x.key = d->key;
	/* Inner zeroes decrypt to noise; an ignored unmap stays ignored. */
	if (info->unmap_behavior != DC_UNMAP_IGNORED)
		info->unmap_behavior = DC_UNMAP_UNSPECIFIED;
	info->flags &= ~(DC_INFO_EJECT | DC_INFO_CAN_READ_CACHE);
	snprintf(info->disk_type, sizeof(info->disk_type), "crypt");
	return 0;
}

/* Allocation is the child's, except that sectors of zeroes below decrypt to
 * noise: nothing here reads as zero. */
static int crypt_extents(void *inst, struct dc_node *node, uint64_t sector,
			 uint64_t count, uint64_t *run)
{
	int rc = dc_extents_passthrough(inst, node, sector, count, run);

	return rc < 0 ? rc : (int)(rc & ~(int)DC_EXTENT_ZERO);
}

static void crypt_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct crypt_disk *d = inst;

	kv(arg, "cipher", CRYPT_CIPHER);
	kv(arg, "key_file", d->key_path);
	dc_kv_printf(kv, arg, "data_unit", "%u", d->x.sector_size);
	dc_kv_printf(kv, arg, "threads", "%u", d->x.threads);
}

DC_PLUGIN(crypt_plugin) = {
	XTS_PLUGIN_FIELDS,
	DC_ABOUT(DC_KIND_DECORATOR, "crypt", "0.1.0",
		 "XTS-AES-256 disk encryption (VAES, else libgcrypt), compatible with "
		 "aes-xts-plain64"),
	.usage =
		"crypt:xts-aes-256:KEYFILE:SPEC\n"
		"  Encrypts SPEC with AES-256 in XTS mode. KEYFILE holds exactly 64 raw\n"
		"  bytes (two different 256-bit keys) and should be readable by its\n"
		"  owner only. Each sector of SPEC is one data unit, tweaked with its\n"
		"  sector number (little-endian), as dm-crypt's aes-xts-plain64 (with\n"
		"  4 KiB sectors: iv_large_sectors). Flush, unmap and persistent\n"
		"  reservations pass through; eject does not. Unmapped sectors read as\n"
		"  unspecified data. Options: ;threads=N caps how many threads one large\n"
		"  request is split across, ;split=SIZE is the smallest request split.",
	.forms = DC_FORMS(DC_FORM(
		"crypt", 2, DC_CHILD_ONE,
		"crypt[;threads=N][;split=SIZE]:xts-aes-256:KEYFILE:SPEC",
		"XTS-AES-256 encryption (dm-crypt aes-xts-plain64), 64-byte key file",
		crypt_options)),
	.ops = DC_OP_BIT(DC_OP_READ) | DC_OP_BIT(DC_OP_WRITE),
	.passthrough_ops = DC_OP_BIT(DC_OP_FLUSH) | DC_OP_BIT(DC_OP_UNMAP) | DC_OPS_PR,
	DC_CALLBACKS(crypt, open, close, describe, extents),
	.submit = xts_plugin_submit,
};
