/* SPDX-License-Identifier: MIT */
/* rbd:POOL/IMAGE[@SNAP] -- a Ceph RBD image through librbd's asynchronous API
 * (docs/spec-strings.md, "rbd"): opening, size and resize, describe(), the
 * descriptor. The data path is io.c, the reaping of completions reap.c. */
#include "rbd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The spec's options, which conn.c reads. */
static const struct dc_option rbd_options[] = {
	DC_OPTION_STRING("conf",
			 "ceph.conf to read (default: $CEPH_CONF, /etc/ceph/ceph.conf)"),
	DC_OPTION_STRING("id", "client id, without 'client.' (default admin)"),
	DC_OPTION_STRING("keyring", "keyring file holding the client's key"),
	DC_OPTION_STRING("mon",
			 "monitor address(es), instead of or over the configuration's"),
	DC_OPTION_UINT("timeout",
		       "seconds to reach the monitors before the open fails (default 10)"),
	DC_OPTIONS_END,
};

static uint64_t rbd_sector_count(void *inst)
{
	struct rbd_inst *in = inst;

	return __atomic_load_n(&in->size, __ATOMIC_ACQUIRE) >> RBD_SHIFT;
}

/* On librbd's watch thread, when the image header changes (a resize by any
 * client, a snapshot, a lock change): the size is read again, and the chain
 * is told when it changed. */
static void rbd_header_changed(void *arg)
{
	struct rbd_inst *in = arg;
	uint64_t size;

	if (rbd_get_size(in->image, &size) < 0)
		return;
	if (__atomic_exchange_n(&in->size, size, __ATOMIC_ACQ_REL) == size)
		return;
	__atomic_add_fetch(&in->resize_events, 1, __ATOMIC_RELAXED);
	dc_node_notify_resize(in->node);
}

static int rbd_resize_image(void *inst, uint64_t sectors)
{
	struct rbd_inst *in = inst;
	uint64_t size = sectors << RBD_SHIFT;
	int r;

	r = rbd_resize(in->image, size);
	if (r < 0)
		return dc_fail(r, "%s: rbd_resize to %llu bytes: %s", in->t.shown,
			       (unsigned long long)size, strerror(-r));
	__atomic_store_n(&in->size, size, __ATOMIC_RELEASE);
	return 0;
}

static void rbd_close_inst(void *inst)
{
	struct rbd_inst *in = inst;

	/* Waits for a notification callback still running. */
	if (in->watching)
		rbd_update_unwatch(in->image, in->watch_handle);
	rbd_reaper_stop(in);
	rbd_disconnect(in);
	pthread_mutex_destroy(&in->qlock);
	rbd_target_free(&in->t);
	free(in);
}

static int rbd_probe(struct rbd_inst *in, struct dc_info *info)
{
	rbd_image_info_t st;
	int r;

	r = rbd_stat(in->image, &st, sizeof(st));
	if (r < 0)
		return dc_fail(r, "%s: rbd_stat: %s", in->t.shown, strerror(-r));
	if (rbd_get_features(in->image, &in->features) < 0)
		in->features = 0;
	in->size = st.size;
	in->obj_size = st.obj_size;
	memset(info, 0, sizeof(*info));
	info->sector_count = st.size >> RBD_SHIFT;
	info->sector_size = 1u << RBD_SHIFT;
	info->physical_sector_size = 1u << RBD_SHIFT;
	/* Partial discards inside an object are skipped by default
	 * (rbd_skip_partial_discard), so unmapped data is unspecified. */
	info->unmap_behavior = DC_UNMAP_UNSPECIFIED;
	info->flags = DC_INFO_FUA_RESPECTED;
	if (in->read_only)
		info->flags |= DC_INFO_READ_ONLY;
	snprintf(info->disk_type, sizeof(info->disk_type), "rbd");
	return 0;
}

static int rbd_open_inst(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct rbd_inst *in = calloc(1, sizeof(*in));
	int err;

	if (!in)
		return dc_fail(-ENOMEM, "out of memory");
	in->node = a->node;
	in->efd = in->ctl_fd = -1;
	pthread_mutex_init(&in->qlock, NULL);
	err = rbd_target_parse(a, &in->t);
	if (err)
		goto fail;
	in->read_only = a->read_only || in->t.snap;
	err = rbd_connect(in);
	if (!err)
		err = rbd_open_image(in);
	if (!err)
		err = rbd_probe(in, info);
	if (!err)
		err = rbd_reaper_start(in);
	if (err)
		goto fail;
	/* A snapshot never changes size; the image's header is watched. */
	if (!in->t.snap) {
		err = rbd_update_watch(in->image, &in->watch_handle, rbd_header_changed,
				       in);
		if (err < 0) {
			err = dc_fail(err, "%s: rbd_update_watch: %s", in->t.shown,
				      strerror(-err));
			goto fail;
		}
		in->watching = true;
	}
	*inst = in;
	return 0;
fail:
	rbd_close_inst(in);
	return err;
}

static const struct {
	uint64_t bit;
	const char *name;
} rbd_feature_names[] = {
	{ RBD_FEATURE_LAYERING, RBD_FEATURE_NAME_LAYERING },
	{ RBD_FEATURE_STRIPINGV2, RBD_FEATURE_NAME_STRIPINGV2 },
	{ RBD_FEATURE_EXCLUSIVE_LOCK, RBD_FEATURE_NAME_EXCLUSIVE_LOCK },
	{ RBD_FEATURE_OBJECT_MAP, RBD_FEATURE_NAME_OBJECT_MAP },
	{ RBD_FEATURE_FAST_DIFF, RBD_FEATURE_NAME_FAST_DIFF },
	{ RBD_FEATURE_DEEP_FLATTEN, RBD_FEATURE_NAME_DEEP_FLATTEN },
	{ RBD_FEATURE_JOURNALING, RBD_FEATURE_NAME_JOURNALING },
	{ RBD_FEATURE_DATA_POOL, RBD_FEATURE_NAME_DATA_POOL },
	{ RBD_FEATURE_OPERATIONS, RBD_FEATURE_NAME_OPERATIONS },
	{ RBD_FEATURE_MIGRATING, RBD_FEATURE_NAME_MIGRATING },
	{ RBD_FEATURE_NON_PRIMARY, RBD_FEATURE_NAME_NON_PRIMARY },
	{ RBD_FEATURE_DIRTY_CACHE, RBD_FEATURE_NAME_DIRTY_CACHE },
};

/* What the exclusive lock means for this open, as librbd runs it: a writer
 * takes it at its first write and hands it over when another client asks
 * (so two writers take turns); a read-only open never takes it. */
static void rbd_describe_lock(struct rbd_inst *in, dc_kv_fn kv, void *arg)
{
	int owner = 0;

	if (!(in->features & RBD_FEATURE_EXCLUSIVE_LOCK)) {
		kv(arg, "exclusive-lock", "off (writers are not serialised)");
		return;
	}
	if (in->read_only) {
		kv(arg, "exclusive-lock", "on; a read-only open never takes it");
		return;
	}
	if (rbd_is_exclusive_lock_owner(in->image, &owner) < 0)
		kv(arg, "exclusive-lock", "on; owner unknown");
	else if (owner)
		kv(arg, "exclusive-lock", "on; held by this client");
	else
		kv(arg, "exclusive-lock",
		   "on; not held (taken at the next write, released when another "
		   "client asks)");
}

static void rbd_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct rbd_inst *in = inst;
	char feat[256] = "";
	size_t n = 0;

	kv(arg, "pool", in->t.pool);
	if (in->t.ns)
		kv(arg, "namespace", in->t.ns);
	kv(arg, "image", in->t.image);
	kv(arg, "snapshot", in->t.snap ? in->t.snap : "(none: the image head)");
	kv(arg, "client", in->t.id ? in->t.id : "admin");
	kv(arg, "mon-host", in->mon_host);
	dc_kv_u64(kv, arg, "size-bytes", __atomic_load_n(&in->size, __ATOMIC_ACQUIRE));
	dc_kv_u64(kv, arg, "object-size", in->obj_size);
	for (size_t i = 0; i < sizeof(rbd_feature_names) / sizeof(rbd_feature_names[0]);
	     i++)
		if ((in->features & rbd_feature_names[i].bit) && n < sizeof(feat))
			n += (size_t)snprintf(feat + n, sizeof(feat) - n, "%s%s",
					      n ? "," : "", rbd_feature_names[i].name);
	kv(arg, "features", n ? feat : "(none)");
	rbd_describe_lock(in, kv, arg);
	dc_kv_bool(kv, arg, "read-only", in->read_only);
	dc_kv_bool(kv, arg, "resize-watch", in->watching);
	dc_kv_u64(kv, arg, "resize-events",
		  __atomic_load_n(&in->resize_events, __ATOMIC_RELAXED));
}

DC_PLUGIN(rbd_plugin) = {
	DC_ABOUT(DC_KIND_BACKEND, "rbd", "0.1.0",
		 "Ceph RBD image through librbd's asynchronous API"),
	.usage = "rbd:POOL[/NAMESPACE]/IMAGE[@SNAP][;conf=PATH][;id=USER][;keyring=PATH]"
		 "[;mon=ADDR][;timeout=N]\n"
		 "  A snapshot opens read-only. Resizes by any client are seen at once\n"
		 "  (the image header is watched). FUA is a write then a flush.",
	.forms = DC_FORMS(DC_FORM_FLAGS(
		"rbd", 1, DC_CHILD_NONE, DC_FORM_TAIL_OPTIONS,
		"rbd:POOL[/NAMESPACE]/IMAGE[@SNAP][;conf=PATH][;id=USER][;keyring=PATH]"
		"[;mon=ADDR][;timeout=N]",
		"a Ceph RBD image or snapshot (librbd)", rbd_options)),
	.ctx_size = sizeof(struct rbd_rctx),
	.ops = DC_OPS_RW,
	DC_CALLBACKS(rbd, queue_open, queue_close, submit, sector_count, describe,
		     queue_poll, extents),
	.open = rbd_open_inst,
	.close = rbd_close_inst,
	.resize = rbd_resize_image,
};
