/* SPDX-License-Identifier: MIT */
/* An image's lifetime below the plugin glue: load (lock, header, snapshot
 * picked, a writable open's checks and repair, L1, L2 cache, refcounts, the
 * dirty bit) and free. qcow2.c opens the images the core asks for with it;
 * below.c the qcow2 backing image it reads for copy-on-write (the backing
 * chain's recursion, docs/architecture.md). */
#include "qcow2.h"

#include "vhdfmt/vhdfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define QCOW2_DEFAULT_L2_CACHE (4ull << 20)

void qcow2_free(struct qcow2 *q)
{
	if (q->fd >= 0)
		close(q->fd);
	for (uint32_t i = 0; i < q->nsnap; i++) {
		free(q->snaps[i].name);
		free(q->snaps[i].id);
	}
	free(q->snaps);
	free(q->path);
	free(q->dir);
	free(q->l1);
	free(q->backing);
	free(q->backing_fmt);
	free(q->parent);
	free(q->slots);
	free(q->l2buf);
	free(q->zc_buf);
	free(q->busy);
	qcow2_rc_free(q);
}

/* Use snapshot q->snapshot (a name, else an id) instead of the active L1. */
static int qcow2_pick_snapshot(struct qcow2 *q)
{
	const struct qcow2_snap *sn = NULL;

	for (uint32_t i = 0; i < q->nsnap && !sn; i++)
		if (strcmp(q->snaps[i].name, q->snapshot) == 0)
			sn = &q->snaps[i];
	for (uint32_t i = 0; i < q->nsnap && !sn; i++)
		if (strcmp(q->snaps[i].id, q->snapshot) == 0)
			sn = &q->snaps[i];
	if (!sn)
		return dc_fail(-ENOENT,
			       "%s: no internal snapshot named '%s' (diskctl info "
			       "lists them)",
			       q->path, q->snapshot);
	if ((uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES ||
	    (sn->l1_off & (q->cluster_size - 1)) || sn->l1_off > q->file_size ||
	    (uint64_t)sn->l1_size * 8 > q->file_size - sn->l1_off)
		return dc_fail(-EINVAL,
			       "%s: corrupt snapshot '%s': its L1 table is not "
			       "inside the file",
			       q->path, q->snapshot);
	q->h.l1_off = sn->l1_off;
	q->h.l1_size = sn->l1_size;
	if (sn->size)
		q->h.size = sn->size;
	/* Its L1 table must still cover its disk. */
	if ((uint64_t)q->h.l1_size * q->l2_entries * q->cluster_size < q->h.size)
		q->h.size = (uint64_t)q->h.l1_size * q->l2_entries * q->cluster_size;
	return 0;
}

/* What a writable open needs of the image (docs/spec-strings.md, "qcow2"). */
static int qcow2_check_writable(struct qcow2 *q)
{
	if (q->h.incompat & QCOW2_INCOMPAT_CORRUPT)
		return dc_fail(-EROFS,
			       "%s: QEMU marked the image corrupt; repair it with "
			       "`qemu-img check -r all` first",
			       q->path);
	if ((q->h.incompat & QCOW2_INCOMPAT_DIRTY) &&
	    (q->h.compat & QCOW2_COMPAT_LAZY_REFCOUNTS)) {
		/* Its refcounts may be anything: rebuilt, as QEMU does. */
		int ret = qcow2_repair(q);

		if (ret)
			return dc_fail(
				-EROFS,
				"%s: the image was not closed cleanly and uses "
				"lazy refcounts, and rebuilding its refcounts "
				"failed (%s): run `qemu-img check -r all %s` first",
				q->path, strerror(-ret), q->path);
	}
	return 0;
}

int qcow2_load_header(struct qcow2 *q)
{
	int ret = 0;

	q->dir = vhdfmt_dirname(q->path);
	if (!q->dir)
		return dc_fail(-ENOMEM, "%s: cannot resolve the image's directory",
			       q->path);
	if (q->fd < 0) {
		struct stat st;

		q->fd = open(q->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		if (q->fd < 0 || fstat(q->fd, &st) < 0)
			return dc_fail(-errno, "%s: %s", q->path, strerror(errno));
		q->file_size = (uint64_t)st.st_size;
	}
	/* A force-share open looks at an image a writer may hold: no lock. */
	ret = q->force_share ? 0 : vhdfmt_lock(q->fd, q->path, !q->writable);
	if (ret == 0)
		ret = qcow2_read_header(q);
#ifndef QCOW2_HAVE_ZSTD
	if (ret == 0 && q->h.compression == QCOW2_ZSTD)
		ret = dc_fail(-ENOTSUP,
			      "%s: the image's clusters are compressed with zstd, and "
			      "this build of the qcow2 plugin has no zstd",
			      q->path);
#endif
	if (ret == 0 && q->snapshot)
		ret = qcow2_pick_snapshot(q);
	return ret;
}

int qcow2_load_tables(struct qcow2 *q, uint64_t cache)
{
	int ret = 0;

	if (q->writable)
		ret = qcow2_check_writable(q);
	if (ret == 0 && !cache) {
		/* Enough for the whole disk, up to the default. */
		uint64_t all = (uint64_t)q->h.l1_size * q->cluster_size;

		cache = all < QCOW2_DEFAULT_L2_CACHE ? all : QCOW2_DEFAULT_L2_CACHE;
	}
	if (ret == 0)
		ret = qcow2_l1_load(q);
	if (ret == 0)
		ret = qcow2_l2_cache_init(q, cache);
	if (ret == 0 && q->writable)
		ret = qcow2_rc_load(q);
	if (ret == 0 && q->writable) {
		ret = qcow2_set_dirty(q, true);
		if (ret)
			dc_error("%s: cannot mark the image in use: %s", q->path,
				 strerror(-ret));
	}
	return ret;
}

int qcow2_load(struct qcow2 *q, uint64_t cache)
{
	int ret = qcow2_load_header(q);

	return ret ? ret : qcow2_load_tables(q, cache);
}
