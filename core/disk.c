/* SPDX-License-Identifier: MIT */
/*
 * The disk handle, the public face of a chain: dc_open() parses the spec and
 * has node.c build the tree, then metadata, resize and describe for the
 * consumer.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static atomic_uint_fast64_t disk_serial;

/* --- Public disk API ---------------------------------------------------------- */

static void disk_free(struct dc_disk *d)
{
	if (d->resize_fd >= 0)
		close(d->resize_fd);
	pthread_mutex_destroy(&d->resize_lock);
	pthread_mutex_destroy(&d->resizing);
	pthread_cond_destroy(&d->resize_cond);
	pthread_mutex_destroy(&d->implicit_lock);
	pthread_mutex_destroy(&d->nodes_lock);
	free(d->nodes);
	free(d);
}

DC_EXPORT int dc_open(const char *spec, uint32_t flags, dc_disk **out)
{
	struct dc_spec *s = NULL;
	struct dc_disk *d;
	pthread_condattr_t ca;
	int rc;

	if (!spec || !out || (flags & ~(DC_OPEN_READ_ONLY | DC_OPEN_FORCE_SHARE)))
		return dc_fail(-EINVAL, "dc_open: invalid arguments");
	if ((flags & DC_OPEN_FORCE_SHARE) && !(flags & DC_OPEN_READ_ONLY))
		return dc_fail(-EINVAL,
			       "dc_open: DC_OPEN_FORCE_SHARE needs DC_OPEN_READ_ONLY "
			       "(a writer must hold its locks)");
	*out = NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return dc_fail(-ENOMEM, "dc_open: out of memory");
	pthread_mutex_init(&d->resize_lock, NULL);
	pthread_mutex_init(&d->resizing, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->resize_cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&d->implicit_lock, NULL);
	pthread_mutex_init(&d->nodes_lock, NULL);
	d->serial = atomic_fetch_add(&disk_serial, 1) + 1;
	d->open_flags = flags;
	d->resize_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->resize_fd < 0) {
		rc = dc_fail(-errno, "dc_open: eventfd: %s", strerror(errno));
		goto fail;
	}

	rc = dc__spec_parse(spec, &s);
	if (rc < 0)
		goto fail;
	rc = dc__node_open(d, s, flags & DC_OPEN_READ_ONLY, &d->top);
	dc__spec_free(s);
	if (rc < 0)
		goto fail;

	d->info = d->top->info;
	if (flags & DC_OPEN_READ_ONLY)
		d->info.flags |= DC_INFO_READ_ONLY;
	d->sector_shift = __builtin_ctz(d->info.sector_size);
	d->max_sector = (uint64_t)INT64_MAX >> d->sector_shift;
	*out = d;
	return 0;
fail:
	disk_free(d);
	return rc;
}

DC_EXPORT void dc_close(dc_disk *d)
{
	if (!d)
		return;
	dc__implicit_free(d);
	dc__node_close(d->top);
	disk_free(d);
}

DC_EXPORT void dc_get_info(dc_disk *d, struct dc_info *info)
{
	*info = d->info;
	info->sector_count = dc__node_live_count(d->top);
}

DC_EXPORT uint64_t dc_sector_count(dc_disk *d)
{
	return dc__node_live_count(d->top);
}

DC_EXPORT uint32_t dc_sector_size(dc_disk *d)
{
	return d->info.sector_size;
}

/* --- Resize ----------------------------------------------------------------------- */

DC_EXPORT int dc_resize_fd(dc_disk *d)
{
	return d->resize_fd;
}

DC_EXPORT int dc_wait_resize(dc_disk *d, uint64_t known, int timeout_ms, uint64_t *count)
{
	struct timespec deadline;
	uint64_t epoch, now;
	int rc = 0;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	if (timeout_ms >= 0) {
		deadline.tv_sec += timeout_ms / 1000;
		deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (deadline.tv_nsec >= 1000000000) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000;
		}
	}
	for (;;) {
		pthread_mutex_lock(&d->resize_lock);
		epoch = d->resize_epoch;
		pthread_mutex_unlock(&d->resize_lock);
		/* Read the live count after taking the epoch: a change in between
		 * bumps the epoch, so the wait below cannot miss it. */
		now = dc__node_live_count(d->top);
		if (now != known) {
			if (count)
				*count = now;
			return 0;
		}
		pthread_mutex_lock(&d->resize_lock);
		while (d->resize_epoch == epoch && rc == 0) {
			if (timeout_ms < 0)
				rc = pthread_cond_wait(&d->resize_cond, &d->resize_lock);
			else
				rc = pthread_cond_timedwait(&d->resize_cond,
							    &d->resize_lock, &deadline);
		}
		pthread_mutex_unlock(&d->resize_lock);
		if (rc == ETIMEDOUT)
			return -ETIMEDOUT;
	}
}

DC_EXPORT int dc_resize(dc_disk *d, uint64_t new_count)
{
	struct dc_node *n = d->top;
	int rc;

	if (d->info.flags & DC_INFO_READ_ONLY)
		return dc_fail(-EROFS, "resize: the disk is read-only");
	while (!n->plugin->resize && n->plugin->kind == DC_KIND_DECORATOR && n->nchildren)
		n = n->children[0];
	if (!n->plugin->resize)
		return dc_fail(-EOPNOTSUPP, "%s: resize is not supported",
			       n->plugin->name);
	pthread_mutex_lock(&d->resizing);
	dc__error_push_prefix(n->plugin->name);
	rc = n->plugin->resize(n->inst, new_count);
	dc__error_pop_prefix();
	pthread_mutex_unlock(&d->resizing);
	if (rc == 0)
		dc_node_notify_resize(n);
	return rc;
}

/* --- Describe ----------------------------------------------------------------------- */

struct describe_ctx {
	dc_describe_fn visit;
	void *arg;
	int depth;
	struct dc_node *node;
	struct dc_info info;
	int rc;
};

static void describe_kv(void *arg, const char *key, const char *value)
{
	struct describe_ctx *c = arg;
	struct dc_node *n = c->node;

	if (c->rc == 0)
		c->rc = c->visit(c->arg, c->depth, n->plugin->name,
				 n->form ? n->form->name : n->plugin->name, &c->info, key,
				 value);
}

static int describe_node(struct describe_ctx *c, struct dc_node *n, int depth)
{
	c->node = n;
	c->depth = depth;
	dc_node_info(n, &c->info);
	describe_kv(c, NULL, NULL);
	if (c->rc == 0)
		describe_kv(c, "spec", n->label);
	if (c->rc == 0 && n->plugin->describe)
		n->plugin->describe(n->inst, describe_kv, c);
	for (unsigned i = 0; c->rc == 0 && i < n->nchildren; i++)
		describe_node(c, n->children[i], depth + 1);
	return c->rc;
}

DC_EXPORT int dc_describe(dc_disk *d, dc_describe_fn visit, void *arg)
{
	struct describe_ctx c = { .visit = visit, .arg = arg };

	return describe_node(&c, d->top, 0);
}
