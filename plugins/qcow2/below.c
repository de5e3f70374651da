/* SPDX-License-Identifier: MIT */
/* The layer below a writable qcow2 image, read for copy-on-write: a partial
 * write to a cluster (or subcluster) this image does not hold needs the rest
 * of it from the backing file. The core's layered disk gives a layer no way
 * to read the layers under it, so the image opens its backing chain a second
 * time, read-only, on the first partial write: a qcow2 or raw backing file
 * natively (no worker-pool job is needed, so a write waiting for it cannot
 * starve the pool), any other format through dc_open() of the spec
 * lower_spec() names. */
#include "qcow2.h"

#include "vhdfmt/vhdfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define QCOW2_BELOW_CACHE (1u << 20)

struct qcow2_below {
	struct qcow2 *img; /* a qcow2 backing file */
	int fd;		   /* a raw one */
	uint64_t size;	   /* its bytes (raw, disk) */
	dc_disk *disk;	   /* any other format */
};

static int below_open_qcow2(struct qcow2 *q, struct qcow2_below *b)
{
	struct qcow2 *i = calloc(1, sizeof(*i));
	int ret;

	if (!i)
		return -ENOMEM;
	i->fd = -1;
	i->zc_off = UINT64_MAX;
	pthread_mutex_init(&i->lock, NULL);
	pthread_mutex_init(&i->below_lock, NULL);
	pthread_cond_init(&i->busy_cond, NULL);
	i->parents_any = q->parents_any;
	i->path = strdup(q->parent);
	ret = i->path ? qcow2_load(i, QCOW2_BELOW_CACHE) : -ENOMEM;
	if (ret) {
		qcow2_free(i);
		free(i);
		return ret;
	}
	b->img = i;
	return 0;
}

static int below_open(struct qcow2 *q, struct qcow2_below *b)
{
	char spec[4200];
	struct stat st;
	int ret;

	b->fd = -1;
	if (!q->parent) {
		ret = qcow2_resolve_backing(q);
		if (ret)
			return ret;
	}
	if (strcmp(q->parent_form, "qcow2") == 0)
		return below_open_qcow2(q, b);
	if (strcmp(q->parent_form, "file") == 0) {
		b->fd = open(q->parent, O_RDONLY | O_CLOEXEC);
		if (b->fd < 0 || fstat(b->fd, &st) < 0)
			return -errno;
		b->size = (uint64_t)st.st_size;
		return 0;
	}
	if (snprintf(spec, sizeof(spec), "%s:%s", q->parent_form, q->parent) >=
	    (int)sizeof(spec))
		return -ENAMETOOLONG;
	ret = dc_open(spec, DC_OPEN_READ_ONLY, &b->disk);
	if (ret < 0)
		return ret;
	b->size = dc_sector_count(b->disk) * dc_sector_size(b->disk);
	return 0;
}

static int below_get(struct qcow2 *q, struct qcow2_below **out)
{
	int ret = 0;

	pthread_mutex_lock(&q->below_lock);
	if (!q->below) {
		struct qcow2_below *b = calloc(1, sizeof(*b));

		ret = b ? below_open(q, b) : -ENOMEM;
		if (ret) {
			dc_debug("qcow2: %s: cannot open the backing file for "
				 "copy-on-write: %s",
				 q->path, strerror(-ret));
			if (b && b->fd >= 0)
				close(b->fd);
			free(b);
		} else {
			q->below = b;
		}
	}
	*out = q->below;
	pthread_mutex_unlock(&q->below_lock);
	return ret < 0 ? -EIO : 0;
}

int qcow2_below_read(struct qcow2 *q, uint64_t goff, uint8_t *buf, size_t len)
{
	struct qcow2_below *b;
	size_t n = len;
	ssize_t got;
	int ret;

	if (!q->backing) {
		memset(buf, 0, len);
		return 0;
	}
	ret = below_get(q, &b);
	if (ret)
		return ret;
	/* The one recursion between this plugin's files (docs/architecture.md):
	 * read.c reads the layer below here, and a qcow2 backing image is read
	 * through read.c again, one level down its chain per call. */
	if (b->img)
		return qcow2_read_buf(b->img, goff, buf, len);
	/* Past the end of a shorter backing file reads as zeroes. */
	if (goff >= b->size)
		n = 0;
	else if (len > b->size - goff)
		n = (size_t)(b->size - goff);
	memset(buf + n, 0, len - n);
	if (!n)
		return 0;
	if (b->disk)
		return dc_read(b->disk, goff / 512, buf, n) != 0 ? -EIO : 0;
	got = pread(b->fd, buf, n, (off_t)goff);
	if (got < 0)
		return -errno;
	if ((size_t)got < n)
		memset(buf + got, 0, n - (size_t)got);
	return 0;
}

void qcow2_below_close(struct qcow2 *q)
{
	struct qcow2_below *b = q->below;

	if (!b)
		return;
	if (b->img) {
		qcow2_below_close(b->img);
		qcow2_free(b->img);
		pthread_mutex_destroy(&b->img->lock);
		pthread_mutex_destroy(&b->img->below_lock);
		pthread_cond_destroy(&b->img->busy_cond);
		free(b->img);
	}
	if (b->fd >= 0)
		close(b->fd);
	if (b->disk)
		dc_close(b->disk);
	free(b);
	q->below = NULL;
}
