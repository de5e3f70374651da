/* SPDX-License-Identifier: MIT */
/*
 * nbdkit diskcore SPEC: any diskcore chain behind nbdkit (TLS, socket
 * activation, filters, ...). docs/serve.md, "nbdkit plugin".
 *
 * One disk for the whole server: the chain is opened once, in .get_ready, and
 * every connection shares it. Opening it per connection would give each
 * connection its own RAM layer (memdiff:) and its own metadata of a dynamic
 * image (two writers of one VHD's block table corrupt it), and each open
 * would pay the chain's set-up (LUKS key derivation) again. Sharing also
 * makes multi-conn true: a flush on any connection is a flush of the one disk.
 * The open is in .after_fork. Read-only is then per connection: the handle keeps nbdkit's
 * readonly flag (-r, or a filter) and .can_write answers for that connection; the chain
 * itself is opened writable unless readonly=true, or unless it cannot be
 * (then read-only, logged).
 */
#include "dcnbdkit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

dc_disk *dcn_disk;
struct dc_info dcn_info;

static char *spec;
static bool want_ro;
static char description[64];

struct dcn_handle {
	bool readonly;
};

static int dcn_config(const char *key, const char *value)
{
	int b;

	if (!strcmp(key, "spec")) {
		if (spec) {
			nbdkit_error("diskcore: spec given twice");
			return -1;
		}
		spec = strdup(value);
		return spec ? 0 : -1;
	}
	if (!strcmp(key, "readonly")) {
		b = nbdkit_parse_bool(value);
		if (b < 0)
			return -1;
		want_ro = b;
		return 0;
	}
	nbdkit_error(
		"diskcore: unknown parameter '%s' (expected spec=SPEC or readonly=BOOL)",
		key);
	return -1;
}

static int dcn_config_complete(void)
{
	if (!spec) {
		nbdkit_error("diskcore: no chain given: nbdkit diskcore 'SPEC' (e.g. "
			     "memdiff:file:/x.img)");
		return -1;
	}
	return 0;
}

/* After nbdkit forked into the background (or not, with -f) and before the
 * first connection: elements start threads at open (nbd:'s reaper, blob:'s
 * worker), which a fork would lose. A chain that does not open makes nbdkit
 * exit 1 with the chain's message (in its log when it runs as a daemon). */
static int dcn_after_fork(void)
{
	int rc = dc_open(spec, want_ro ? DC_OPEN_READ_ONLY : 0, &dcn_disk);

	if (rc == -EROFS || rc == -EACCES || rc == -EPERM) {
		nbdkit_debug("diskcore: '%s' cannot be opened for writing (%s): "
			     "serving it read-only",
			     spec, dc_last_error());
		rc = dc_open(spec, DC_OPEN_READ_ONLY, &dcn_disk);
	}
	if (rc < 0) {
		nbdkit_error("diskcore: %s",
			     *dc_last_error() ? dc_last_error() : strerror(-rc));
		return -1;
	}
	dc_get_info(dcn_disk, &dcn_info);
	snprintf(description, sizeof(description), "diskcore %.24s disk",
		 dcn_info.disk_type);
	rc = dcn_io_init();
	if (rc < 0) {
		nbdkit_error("diskcore: %s", strerror(-rc));
		dc_close(dcn_disk);
		dcn_disk = NULL;
		return -1;
	}
	return 0;
}

/* Every connection has ended. No flush of our own: clients flush what they
 * need kept, and one here would open a queue, which for nbd: means a new
 * connection to a server that may be stopping too (and never answer). */
static void dcn_cleanup(void)
{
	if (!dcn_disk)
		return;
	dcn_io_fini();
	dc_close(dcn_disk);
	dcn_disk = NULL;
}

static void dcn_unload(void)
{
	free(spec);
	spec = NULL;
}

static void *dcn_open(int readonly)
{
	struct dcn_handle *h = malloc(sizeof(*h));

	if (!h) {
		nbdkit_error("diskcore: out of memory");
		return NULL;
	}
	h->readonly = readonly;
	return h;
}

static void dcn_close(void *handle)
{
	free(handle);
}

static int64_t dcn_get_size(void *h)
{
	(void)h;
	/* Live: a connection made after a resize sees the new size. */
	return (int64_t)(dc_sector_count(dcn_disk) * dcn_info.sector_size);
}

static int dcn_block_size(void *h, uint32_t *minimum, uint32_t *preferred,
			  uint32_t *maximum)
{
	(void)h;
	*minimum = dcn_info.sector_size;
	*preferred = dcn_info.physical_sector_size > 4096 ?
			     dcn_info.physical_sector_size :
			     4096;
	*maximum = 0xffffffff; /* any length: io.c splits nothing it cannot do */
	return 0;
}

static const char *dcn_export_description(void *h)
{
	(void)h;
	return description;
}

/* can_write and can_zero: this connection may write. */
static int dcn_writable(void *handle)
{
	const struct dcn_handle *h = handle;

	return !h->readonly && !(dcn_info.flags & DC_INFO_READ_ONLY);
}

/* can_flush; can_fast_zero (a fast zero is one done by unmap, io.c; otherwise
 * ENOTSUP at once); can_multi_conn (one shared disk: see the comment at the
 * top); can_extents (base:allocation from the chain's allocation map, dc_map:
 * layers, dynamic formats, holes in files; DC_EXTENT_HOLE and _ZERO are NBD's
 * bits). */
static int dcn_yes(void *h)
{
	(void)h;
	return 1;
}

static int dcn_can_fua(void *h)
{
	(void)h;
	/* Where the chain does not honour FUA, nbdkit flushes after the write. */
	return dcn_info.flags & DC_INFO_FUA_RESPECTED ? NBDKIT_FUA_NATIVE :
							NBDKIT_FUA_EMULATE;
}

static int dcn_can_trim(void *h)
{
	return dcn_writable(h) && dcn_info.unmap_behavior != DC_UNMAP_IGNORED;
}

struct dcn_map {
	struct nbdkit_extents *out;
	bool one;
};

static int dcn_extent(void *arg, const struct dc_extent *e)
{
	struct dcn_map *m = arg;

	if (nbdkit_add_extent(m->out, e->offset, e->length,
			      e->flags & (DC_EXTENT_HOLE | DC_EXTENT_ZERO)))
		return 2; /* nbdkit set the error */
	return m->one;	  /* 1 stops: with REQ_ONE the first extent is enough */
}

static int dcn_extents(void *h, uint32_t count, uint64_t offset, uint32_t flags,
		       struct nbdkit_extents *extents)
{
	struct dcn_map m = { extents, flags & NBDKIT_FLAG_REQ_ONE };
	int rc;

	(void)h;
	rc = dc_map(dcn_disk, offset, count, dcn_extent, &m);
	if (rc == 2)
		return -1;
	if (rc < 0) {
		nbdkit_set_error(rc == -ENOMEM ? ENOMEM : EIO);
		nbdkit_error("diskcore: map: %s", dc_last_error());
		return -1;
	}
	return 0;
}

static void dcn_dump_plugin(void)
{
	uint32_t v = dc_version();

	printf("diskcore_abi=%u.%u\n", v >> 16, v & 0xffff);
	printf("diskcore_plugin_path=%s\n", dc_plugin_path());
}

static struct nbdkit_plugin plugin = {
	.name = "diskcore",
	.longname = "diskcore chains (crypt:, memdiff:, qcow2:, vhd:, ...)",
	.version = "1.0",
	.description = "Serve any diskcore spec string over NBD.",
	.config = dcn_config,
	.config_complete = dcn_config_complete,
	.config_help = "[spec=]SPEC       the diskcore chain, e.g. memdiff:file:/x.img\n"
		       "readonly=BOOL     open the chain read-only (default false)",
	.magic_config_key = "spec",
	.after_fork = dcn_after_fork,
	.cleanup = dcn_cleanup,
	.unload = dcn_unload,
	.dump_plugin = dcn_dump_plugin,
	.open = dcn_open,
	.close = dcn_close,
	.get_size = dcn_get_size,
	.block_size = dcn_block_size,
	.export_description = dcn_export_description,
	.can_write = dcn_writable,
	.can_flush = dcn_yes,
	.can_fua = dcn_can_fua,
	.can_trim = dcn_can_trim,
	.can_zero = dcn_writable,
	.can_fast_zero = dcn_yes,
	.can_multi_conn = dcn_yes,
	.can_extents = dcn_yes,
	.extents = dcn_extents,
	.pread = dcn_pread,
	.pwrite = dcn_pwrite,
	.flush = dcn_flush,
	.trim = dcn_trim,
	.zero = dcn_zero,
};

NBDKIT_REGISTER_PLUGIN(plugin)
