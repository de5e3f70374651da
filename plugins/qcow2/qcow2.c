/* SPDX-License-Identifier: MIT */
/* qcow2: QEMU copy-on-write images (version 2 and 3) as a read-only layer of
 * the core's layered disk. A backing file becomes the layer below, as a
 * differencing VHD's parent does; sectors this image does not hold fall
 * through to it. Writing is not supported yet: a writable open is refused,
 * and `memdiff:qcow2:PATH` puts a writable layer above. This file: options,
 * open, describe and the descriptor (header.c, l2.c, read.c, compress.c and
 * backing.c do the rest). */
#include "qcow2.h"

#include "vhdfmt/vhdfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define QCOW2_DEFAULT_L2_CACHE (4ull << 20)

void qcow2_free(struct qcow2 *q)
{
	if (q->fd >= 0)
		close(q->fd);
	for (uint32_t i = 0; i < q->nsnap; i++)
		free(q->snap_names[i]);
	free(q->snap_names);
	free(q->path);
	free(q->dir);
	free(q->l1);
	free(q->backing);
	free(q->backing_fmt);
	free(q->parent);
	free(q->slots);
	free(q->l2buf);
	free(q->zc_buf);
}

static void qcow2_close(void *inst)
{
	struct qcow2 *q = inst;

	qcow2_free(q);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

static int qcow2_options(const struct dc_open_args *a, struct qcow2 *q, uint64_t *cache)
{
	const char *p = dc_opt_str(a, "parents");

	if (p && strcmp(p, "any") != 0 && strcmp(p, "beneath") != 0)
		return dc_fail(-EINVAL, "parents=%s: expected 'any' or 'beneath'", p);
	q->parents_any = p && strcmp(p, "any") == 0;
	if (!dc_opt_num(a, "l2-cache", cache)) {
		/* Enough for the whole disk, up to the default. */
		uint64_t all = (uint64_t)q->h.l1_size * q->cluster_size;

		*cache = all < QCOW2_DEFAULT_L2_CACHE ? all : QCOW2_DEFAULT_L2_CACHE;
	}
	return 0;
}

static int qcow2_open_file(struct qcow2 *q)
{
	struct stat st;

	q->fd = open(q->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (q->fd < 0) {
		int err = errno;

		q->fd = -1;
		return dc_fail(-err, "%s: %s", q->path, strerror(err));
	}
	if (fstat(q->fd, &st) < 0)
		return dc_fail(-errno, "%s: %s", q->path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return dc_fail(-EINVAL, "%s: not a regular file", q->path);
	q->file_size = (uint64_t)st.st_size;
	q->dir = vhdfmt_dirname(q->path);
	if (!q->dir)
		return dc_fail(-ENOMEM, "%s: cannot resolve the image's directory",
			       q->path);
	return vhdfmt_lock(q->fd, q->path, true);
}

static int qcow2_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct qcow2 *q;
	uint64_t cache;
	int ret;

	if (a->nfields < 1 || !a->fields[0][0])
		return dc_fail(-EINVAL, "missing path (expected qcow2:PATH)");
	if (!a->read_only)
		return dc_fail(
			-EROFS,
			"qcow2 writing is not supported yet: put memdiff: above it "
			"(memdiff:qcow2:%s) or open the disk read-only",
			a->fields[0]);
	q = calloc(1, sizeof(*q));
	if (!q)
		return dc_fail(-ENOMEM, "out of memory");
	q->fd = -1;
	q->zc_off = UINT64_MAX;
	pthread_mutex_init(&q->lock, NULL);
	q->path = strdup(a->fields[0]);
	ret = q->path ? qcow2_open_file(q) : dc_fail(-ENOMEM, "out of memory");
	if (ret == 0)
		ret = qcow2_read_header(q);
#ifndef QCOW2_HAVE_ZSTD
	if (ret == 0 && q->h.compression == QCOW2_ZSTD)
		ret = dc_fail(-ENOTSUP,
			      "%s: the image's clusters are compressed with zstd, and "
			      "this build of the qcow2 plugin has no zstd",
			      q->path);
#endif
	if (ret == 0)
		ret = qcow2_options(a, q, &cache);
	if (ret == 0)
		ret = qcow2_l1_load(q);
	if (ret == 0)
		ret = qcow2_l2_cache_init(q, cache);
	if (ret) {
		qcow2_close(q);
		return ret;
	}
	memset(info, 0, sizeof(*info));
	info->sector_count = q->h.size / 512;
	info->sector_size = 512;
	info->physical_sector_size = 512;
	info->optimal_unmap_sectors = 1;
	info->unmap_behavior = DC_UNMAP_UNSPECIFIED;
	info->flags = DC_INFO_READ_ONLY;
	snprintf(info->disk_type, sizeof(info->disk_type), "qcow2");
	*inst = q;
	return 0;
}

static int qcow2_lower_spec(void *inst, char *buf, size_t len)
{
	struct qcow2 *q = inst;
	size_t n;
	int ret;

	if (!q->backing)
		return 0;
	free(q->parent);
	q->parent = NULL;
	ret = qcow2_resolve_backing(q);
	if (ret)
		return ret;
	ret = vhdfmt_lower_spec(q->parent_form, q->path, q->fd, q->parent,
				qcow2_parent_of, buf, len);
	/* The permission to leave the directory goes down the chain with it. */
	if (ret == 1 && q->parents_any && strcmp(q->parent_form, "qcow2") == 0) {
		n = strlen(buf);
		if (snprintf(buf + n, len - n, ";parents=any") >= (int)(len - n))
			return dc_fail(
				-ENAMETOOLONG,
				"%s: the backing file's path is too long for a spec",
				q->path);
	}
	return ret;
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

static int qcow2_io(void *inst, struct dc_req *req)
{
	return req->op == DC_OP_READ ? qcow2_read(inst, req) : DC_E_UNSUPPORTED;
}

static void qcow2_kv_num(dc_kv_fn kv, void *arg, const char *key, uint64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
	kv(arg, key, buf);
}

static void qcow2_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct qcow2 *q = inst;
	char buf[1024];
	size_t n = 0;

	kv(arg, "path", q->path);
	kv(arg, "format", q->h.version == 2 ? "qcow2 v2 (compat=0.10)" : "qcow2 v3");
	qcow2_kv_num(kv, arg, "virtual size", q->h.size);
	qcow2_kv_num(kv, arg, "cluster size", q->cluster_size);
	if (q->extl2)
		qcow2_kv_num(kv, arg, "subcluster size (extended L2)", q->sc_size);
	qcow2_kv_num(kv, arg, "L2 cache bytes", q->l2_cache_bytes);
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
	qcow2_kv_num(kv, arg, "internal snapshots", q->nsnap);
	buf[0] = '\0';
	for (uint32_t i = 0; i < q->nsnap && n < sizeof(buf); i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? ", " : "",
				      q->snap_names[i]);
	if (q->nsnap)
		kv(arg, "snapshot names", buf);
	kv(arg, "writes", "not supported yet (read-only layer)");
}

static const struct dc_option qcow2_options_decl[] = {
	{ .name = "l2-cache",
	  .type = DC_OPT_SIZE,
	  .help = "bytes of L2 tables kept in memory (default: the whole disk's, up to "
		  "4M; at least one table)" },
	{ .name = "parents",
	  .type = DC_OPT_STRING,
	  .help = "'beneath' (default): a backing file must lie inside the image's "
		  "directory; 'any': follow it anywhere" },
	{ 0 },
};

static const struct dc_form qcow2_forms[] = {
	{ .name = "qcow2",
	  .nfields = 1,
	  .child = DC_CHILD_NONE,
	  .flags = 0,
	  .syntax = "qcow2:PATH[;l2-cache=SIZE][;parents=any]",
	  .help = "a qcow2 image, v2 or v3, read-only (a backing chain opens as layers)",
	  .options = qcow2_options_decl },
	{ 0 },
};

DC_PLUGIN(qcow2_plugin) = {
	.kind = DC_KIND_LAYER,
	.name = "qcow2",
	.version = "0.1.0",
	.summary = "QEMU qcow2 images, version 2 and 3 (read-only)",
	.usage = "qcow2:PATH[;l2-cache=SIZE][;parents=any]\n"
		 "  A qcow2 image: any cluster size from 512 B to 2 MiB, extended L2\n"
		 "  entries (subclusters), zero clusters, zlib or zstd compressed\n"
		 "  clusters. A backing file opens read-only as the layer below, in\n"
		 "  the format the image names (qcow2, raw, vpc, vhdx); it must lie\n"
		 "  inside the image's directory unless ;parents=any. Encrypted images\n"
		 "  and external data files are refused. Writing is not supported\n"
		 "  yet: open read-only, or put memdiff: above it.",
	.forms = qcow2_forms,
	.ctx_size = 0,
	.ops = DC_OP_BIT(DC_OP_READ),
	.open = qcow2_open,
	.close = qcow2_close,
	.io = qcow2_io,
	.attach = qcow2_attach,
	.lower_spec = qcow2_lower_spec,
	.describe = qcow2_describe,
};
