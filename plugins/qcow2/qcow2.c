/* SPDX-License-Identifier: MIT */
/* qcow2: QEMU copy-on-write images (version 2 and 3) as a layer of the core's
 * layered disk. A backing file becomes the layer below, as a differencing
 * VHD's parent does; sectors this image does not hold fall through to it.
 * This file: options, open, close, describe and the descriptor (image.c
 * loads an image; header.c, l2.c, read.c, compress.c, backing.c read;
 * write.c, refcount.c, meta.c and below.c write; create.c makes new
 * images). */
#include "qcow2.h"

#include "vhdfmt/vhdfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void qcow2_close(void *inst)
{
	struct qcow2 *q = inst;

	/* A clean close: everything on disk, then the dirty bit cleared. */
	if (q->writable && qcow2_flush(q) == 0)
		qcow2_set_dirty(q, false);
	qcow2_below_close(q);
	qcow2_aio_close(q);
	qcow2_free(q);
	pthread_mutex_destroy(&q->lock);
	pthread_mutex_destroy(&q->below_lock);
	pthread_mutex_destroy(&q->infl_lock);
	pthread_cond_destroy(&q->busy_cond);
	free(q);
}

static const struct dc_option qcow2_options_decl[] = {
	DC_OPTION_SIZE("l2-cache", "bytes of L2 tables kept in memory (default: the "
				   "whole disk's, up to 4M; at least one table)"),
	DC_OPTION_STRING("parents", "'beneath' (default): a backing file must lie inside "
				    "the image's directory; 'any': follow it anywhere"),
	DC_OPTION_SIZE("create", "make a new image of this virtual size when PATH does "
				 "not exist"),
	DC_OPTION_SIZE("cluster", "cluster size of a new image, 512 to 2M (default 64K)"),
	DC_OPTION_STRING("parent", "make a new image over this backing file (qcow2, raw, "
				   "vhd, vhdx), sized as it"),
	DC_OPTION_FLAG("overwrite", "with create= or parent=: replace an existing file"),
	DC_OPTION_STRING("snapshot",
			 "open this internal snapshot (name or id), read-only"),
	DC_OPTIONS_END,
};

static int qcow2_options(const struct dc_open_args *a, struct qcow2 *q, uint64_t *cache)
{
	const char *p = dc_opt_str(a, "parents");

	if (p && strcmp(p, "any") != 0 && strcmp(p, "beneath") != 0)
		return dc_fail(-EINVAL, "parents=%s: expected 'any' or 'beneath'", p);
	q->parents_any = p && strcmp(p, "any") == 0;
	q->snapshot = dc_opt_str(a, "snapshot");
	if (q->snapshot && !a->read_only)
		return dc_fail(-EROFS, "snapshot=%s: a snapshot opens read-only",
			       q->snapshot);
	if (!dc_opt_num(a, "l2-cache", cache))
		*cache = 0;
	return 0;
}

/* The image file, opened (and made, when make: a's create= or parent=) by
 * the core's rule for creating plugins (plugin.h, dc_create_open()). */
static int qcow2_open_file(const struct dc_open_args *a, struct qcow2 *q, bool make,
			   bool *created)
{
	struct stat st;
	int ret;

	*created = false;
	q->fd = dc_create_open(a, q->path, O_NONBLOCK | (make ? O_CREAT : 0), created);
	if (q->fd < 0) {
		ret = q->fd;
		q->fd = -1;
		return ret;
	}
	if (*created) {
		ret = qcow2_create(a, q->path, q->fd);
		if (ret) {
			unlink(q->path);
			return ret;
		}
	}
	if (fstat(q->fd, &st) < 0)
		return dc_fail(-errno, "%s: %s", q->path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return dc_fail(-EINVAL, "%s: not a regular file", q->path);
	q->file_size = (uint64_t)st.st_size;
	return 0;
}

static struct qcow2 *qcow2_new(void)
{
	struct qcow2 *q = calloc(1, sizeof(*q));

	if (!q)
		return NULL;
	q->fd = -1;
	q->aio_fd = -1;
	q->zc_off = UINT64_MAX;
	pthread_mutex_init(&q->lock, NULL);
	pthread_mutex_init(&q->below_lock, NULL);
	pthread_mutex_init(&q->infl_lock, NULL);
	pthread_cond_init(&q->busy_cond, NULL);
	return q;
}

static int qcow2_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	bool created, make = dc_opt_str(a, "create") || dc_opt_str(a, "parent");
	struct qcow2 *q;
	uint64_t cache;
	int ret;

	if (a->nfields < 1 || !a->fields[0][0])
		return dc_fail(-EINVAL, "missing path (expected qcow2:PATH)");
	q = qcow2_new();
	if (!q)
		return dc_fail(-ENOMEM, "out of memory");
	q->writable = !a->read_only;
	q->force_share = a->read_only && a->force_share;
	q->node = a->node;
	q->path = strdup(a->fields[0]);
	ret = q->path ? qcow2_options(a, q, &cache) : dc_fail(-ENOMEM, "out of memory");
	if (ret == 0)
		ret = qcow2_open_file(a, q, make, &created);
	if (ret == 0)
		ret = qcow2_load_header(q);
	/* Before the tables load: a writable load marks the image in use. */
	if (ret == 0 && make && !created)
		ret = qcow2_check_existing(a, q);
	if (ret == 0)
		ret = qcow2_load_tables(q, cache);
	q->created = ret == 0 && created;
	if (ret == 0)
		ret = qcow2_aio_open(q);
	if (ret) {
		q->writable = false; /* nothing to flush or mark clean */
		qcow2_close(q);
		return ret;
	}
	memset(info, 0, sizeof(*info));
	info->sector_count = q->h.size / 512;
	info->sector_size = 512;
	info->physical_sector_size = 512;
	info->optimal_unmap_sectors = q->cluster_size / 512;
	info->unmap_behavior = qcow2_unmap_zeroes(q) ? DC_UNMAP_ZEROES :
						       DC_UNMAP_UNSPECIFIED;
	info->flags = q->writable ? DC_INFO_FUA_RESPECTED : DC_INFO_READ_ONLY;
	snprintf(info->disk_type, sizeof(info->disk_type), "qcow2");
	*inst = q;
	return 0;
}

static int qcow2_lower_spec(void *inst, char *buf, size_t len)
{
	struct qcow2 *q = inst;
	int ret;

	if (!q->backing)
		return 0;
	free(q->parent);
	q->parent = NULL;
	ret = qcow2_resolve_backing(q);
	if (ret)
		return ret;
	/* The permission to leave the directory goes down the chain with it,
	 * to a qcow2 backing file (other formats have no such option). */
	return vhdfmt_lower_spec_any(
		q->parent_form, q->path, q->fd, q->parent, qcow2_parent_of,
		q->parents_any && strcmp(q->parent_form, "qcow2") == 0, buf, len);
}

static int qcow2_attach(void *inst, const struct dc_info *lower, struct dc_info *info)
{
	struct qcow2 *q = inst;

	(void)info;
	if (q->backing && !lower)
		return dc_fail(-EINVAL,
			       "%s: the image needs its backing file %s below it",
			       q->path, q->backing);
	if (lower && lower->sector_size != 512)
		return dc_fail(-EINVAL,
			       "%s: the backing layer has %u-byte sectors; qcow2 has 512",
			       q->path, lower->sector_size);
	return 0;
}

static void qcow2_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct qcow2 *q = inst;
	char buf[1024];
	size_t n = 0;

	kv(arg, "path", q->path);
	kv(arg, "format", q->h.version == 2 ? "qcow2 v2 (compat=0.10)" : "qcow2 v3");
	dc_kv_u64(kv, arg, "virtual size", q->h.size);
	dc_kv_u64(kv, arg, "cluster size", q->cluster_size);
	if (q->extl2)
		dc_kv_u64(kv, arg, "subcluster size (extended L2)", q->sc_size);
	dc_kv_u64(kv, arg, "L2 cache bytes", q->l2_cache_bytes);
	kv(arg, "io", q->ioe ? qcow2_aio_describe(q) : "worker pool");
	kv(arg, "compression type", q->h.compression == QCOW2_ZSTD ? "zstd" : "zlib");
	if (q->backing) {
		kv(arg, "backing file", q->backing);
		kv(arg, "backing format",
		   q->backing_fmt ? q->backing_fmt : "(not named)");
		if (q->parent)
			kv(arg, "backing layer", q->parent);
	}
	if (q->h.incompat & QCOW2_INCOMPAT_DIRTY)
		kv(arg, "dirty",
		   "yes (refcounts may be stale; data reads are unaffected)");
	if (q->h.incompat & QCOW2_INCOMPAT_CORRUPT)
		kv(arg, "corrupt", "yes (marked by QEMU)");
	if (q->created)
		dc_kv_bool(kv, arg, "created", true);
	dc_kv_u64(kv, arg, "internal snapshots", q->nsnap);
	buf[0] = '\0';
	for (uint32_t i = 0; i < q->nsnap && n < sizeof(buf); i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? ", " : "",
				      q->snaps[i].name);
	if (q->nsnap)
		kv(arg, "snapshot names", buf);
	for (uint32_t i = 0; i < q->nsnap; i++) {
		char key[32];

		snprintf(key, sizeof(key), "snapshot %u", i + 1);
		dc_kv_printf(kv, arg, key, "id %s, name %s, disk size %llu",
			     q->snaps[i].id, q->snaps[i].name,
			     (unsigned long long)q->snaps[i].size);
	}
	if (q->snapshot)
		kv(arg, "snapshot opened", q->snapshot);
	kv(arg, "writes",
	   q->writable ? "yes (refcounts kept, dirty bit set while open)" :
			 "no (opened read-only)");
}

DC_PLUGIN(qcow2_plugin) = {
	DC_ABOUT(DC_KIND_LAYER, "qcow2", "0.2.0",
		 "QEMU qcow2 images, version 2 and 3, read-write"),
	.usage = "qcow2:PATH[;create=SIZE][;cluster=SIZE][;parent=PATH][;snapshot=NAME]\n"
		 "  A qcow2 image: any cluster size from 512 B to 2 MiB, extended L2\n"
		 "  entries (subclusters), zero clusters, zlib or zstd compressed\n"
		 "  clusters, any refcount width. A backing file opens read-only as\n"
		 "  the layer below, in the format the image names (qcow2, raw, vpc,\n"
		 "  vhdx); it must lie inside the image's directory unless\n"
		 "  ;parents=any. Writes allocate clusters with refcounts kept\n"
		 "  on disk, copy partial clusters from the backing file, and rewrite\n"
		 "  compressed clusters; unmap makes zero clusters. Clusters internal\n"
		 "  snapshots share are copied on write. create= makes a new v3\n"
		 "  image, parent= one over a backing file; snapshot= opens an\n"
		 "  internal snapshot read-only. Encrypted images and external data\n"
		 "  files are refused.",
	.forms = DC_FORMS(DC_FORM(
		"qcow2", 1, DC_CHILD_NONE,
		"qcow2:PATH[;create=SIZE][;cluster=SIZE][;parent=PATH][;overwrite]"
		"[;snapshot=NAME][;l2-cache=SIZE][;parents=any]",
		"a qcow2 image, v2 or v3, read-write (a backing chain opens as layers)",
		qcow2_options_decl)),
	.ctx_size = sizeof(struct qcow2_rq),
	.ops = DC_OPS_RW,
	DC_CALLBACKS(qcow2, open, close, submit, io, sector_count, attach, lower_spec,
		     describe, resize, extents, check),
	IOE_PLUGIN_QUEUES(qcow2),
};
