/* SPDX-License-Identifier: MIT */
/*
 * tdisk: a plain in-memory disk for the layered-disk tests (not installed),
 * so that a layer stack can sit on a full disk without the file plugin.
 *
 *   tdisk:SIZE[;sector=N][;seed=N][;zero][;ro][;id=N][;zeroes][;nofua]
 *
 * Content starts as tlayer's counting pattern (seed in the high byte of each
 * 32-bit word), or zeroes with ;zero. describe() reports reads, writes,
 * unmaps, flushes and last_flags (the request flags of the last write or
 * unmap, which must never carry layer-only flags).
 */
#include <diskcore/plugin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct td {
	uint8_t *data;
	uint64_t count;
	uint32_t ss;
	bool ro, zeroes;
	pthread_mutex_t lock;
	atomic_ulong reads, writes, unmaps, flushes;
	atomic_uint last_flags;
};

static const struct dc_option td_opts[] = {
	DC_OPTION_UINT("sector", "sector size"),
	DC_OPTION_UINT("seed", "pattern seed"),
	DC_OPTION_FLAG("zero", "start zero-filled"),
	DC_OPTION_FLAG("ro", "read-only"),
	DC_OPTION_UINT("id", "disk id: 16 bytes of this value"),
	DC_OPTION_FLAG("zeroes", "unmap zeroes (default: unspecified, no-op)"),
	DC_OPTION_FLAG("nofua", "FUA not respected"),
	DC_OPTIONS_END,
};

static void td_close(void *inst)
{
	struct td *t = inst;

	free(t->data);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static int td_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct td *t = calloc(1, sizeof(*t));
	uint64_t size, v, seed = 0;

	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	t->ss = dc_opt_num(a, "sector", &v) ? (uint32_t)v : 512;
	if (dc_opt_num(a, "seed", &v))
		seed = v;
	t->ro = dc_opt_flag(a, "ro") || a->read_only;
	t->zeroes = dc_opt_flag(a, "zeroes");
	if (dc_parse_size(a->fields[0], &size) < 0 || !size || size % t->ss) {
		dc_error("bad size '%s'", a->fields[0]);
		td_close(t);
		return -EINVAL;
	}
	t->count = size / t->ss;
	t->data = calloc(1, size);
	if (!t->data) {
		td_close(t);
		return -ENOMEM;
	}
	if (!dc_opt_flag(a, "zero"))
		for (uint64_t o = 0; o < size; o += 4) {
			uint32_t w = (uint32_t)(o / 4) | (uint32_t)(seed << 24);

			memcpy(t->data + o, &w, 4); /* tests run little-endian */
		}
	memset(info, 0, sizeof(*info));
	info->sector_count = t->count;
	info->sector_size = t->ss;
	info->physical_sector_size = t->ss;
	info->optimal_unmap_sectors = 1;
	info->unmap_behavior = t->zeroes ? DC_UNMAP_ZEROES : DC_UNMAP_UNSPECIFIED;
	info->flags = (t->ro ? DC_INFO_READ_ONLY : 0) |
		      (dc_opt_flag(a, "nofua") ? 0 : DC_INFO_FUA_RESPECTED);
	if (dc_opt_num(a, "id", &v)) {
		info->flags |= DC_INFO_HAS_DISK_ID;
		memset(info->disk_id, (int)v, sizeof(info->disk_id));
	}
	snprintf(info->disk_type, sizeof(info->disk_type), "tdisk");
	*inst = t;
	return 0;
}

static void td_submit(void *inst, struct dc_req *req)
{
	struct td *t = inst;
	uint64_t s = req->sector, n = req->count;
	size_t off = (size_t)s * t->ss, len = (size_t)n * t->ss;
	int rc = 0;

	if (req->op == DC_OP_FLUSH) {
		t->flushes++;
		dc_complete(req, 0);
		return;
	}
	if (n > t->count || s > t->count - n) {
		dc_complete(req, DC_E_ILLEGAL_BLOCK);
		return;
	}
	pthread_mutex_lock(&t->lock);
	switch (req->op) {
	case DC_OP_READ:
		t->reads++;
		dc_buf_copy_to(&req->buf, 0, t->data + off, len);
		break;
	case DC_OP_WRITE:
		t->last_flags = req->flags;
		if (t->ro) {
			rc = DC_E_READ_ONLY;
			break;
		}
		t->writes++;
		dc_buf_copy_from(&req->buf, 0, t->data + off, len);
		break;
	case DC_OP_UNMAP:
		t->last_flags = req->flags;
		t->unmaps++;
		if (t->zeroes)
			memset(t->data + off, 0, len);
		break;
	default:
		rc = DC_E_UNSUPPORTED;
	}
	pthread_mutex_unlock(&t->lock);
	dc_complete(req, rc);
}

static void td_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct td *t = inst;
	char v[32];

#define TD_KV(name, val)                                                   \
	do {                                                               \
		snprintf(v, sizeof(v), "%llu", (unsigned long long)(val)); \
		kv(arg, name, v);                                          \
	} while (0)
	TD_KV("reads", t->reads);
	TD_KV("writes", t->writes);
	TD_KV("unmaps", t->unmaps);
	TD_KV("flushes", t->flushes);
	TD_KV("last_flags", t->last_flags);
}

DC_PLUGIN(td_plugin) = {
	DC_ABOUT(DC_KIND_BACKEND, "tdisk", "0", "in-memory test disk (tests only)"),
	.forms = DC_FORMS(DC_FORM("tdisk", 1, DC_CHILD_NONE, "tdisk:SIZE", "test disk",
				  td_opts)),
	.ops = DC_OPS_RW,
	DC_CALLBACKS(td, open, close, submit, describe),
};
