/* SPDX-License-Identifier: MIT */
/* probe: a configurable backend for disk-handle tests. Every metadata value the
 * core validates can be set from the spec, including invalid ones, so tests can
 * check that the core refuses them:
 *
 *   probe;ss=4096;count=256;ro;fua;id;unmap=zeroes
 *
 * Data lives in memory (up to 64 MiB; larger disks read zeroes and drop
 * writes). I/O uses the blocking io callback, so it runs on the worker pool. */
#include <diskcore/plugin.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PROBE_MAX_MEM (UINT64_C(64) << 20)

struct probe {
	uint64_t count;
	uint32_t ss;
	bool read_only;
	uint32_t unmap;
	uint8_t *mem;	 /* NULL: reads zero, writes are dropped */
	uint64_t medium; /* a read of this sector is a medium error (0: none) */
	pthread_mutex_t lock;
};

static bool probe_u32(const struct dc_open_args *a, const char *name, uint32_t *out)
{
	uint64_t v;

	if (!dc_opt_num(a, name, &v))
		return true;
	if (v > UINT32_MAX) {
		dc_error("%s=%llu does not fit in 32 bits", name, (unsigned long long)v);
		return false;
	}
	*out = (uint32_t)v;
	return true;
}

static int probe_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	const char *fail = dc_opt_str(a, "fail");
	const char *unmap = dc_opt_str(a, "unmap");
	uint32_t ss = 512, pss = 0;
	uint64_t count = 2048;
	struct probe *p;

	if (fail && strcmp(fail, "open") == 0) {
		dc_error("failing open as asked (fail=open)");
		return -EIO;
	}
	if (fail) {
		dc_error("fail=%s: expected fail=open", fail);
		return -EINVAL;
	}
	if (!probe_u32(a, "ss", &ss) || !probe_u32(a, "pss", &pss))
		return -EINVAL;
	dc_opt_num(a, "count", &count);

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->count = count;
	p->ss = ss;
	dc_opt_num(a, "medium", &p->medium);
	p->read_only = a->read_only || dc_opt_flag(a, "ro");
	p->unmap = DC_UNMAP_IGNORED;
	if (unmap && strcmp(unmap, "zeroes") == 0) {
		p->unmap = DC_UNMAP_ZEROES;
	} else if (unmap && strcmp(unmap, "unspecified") == 0) {
		p->unmap = DC_UNMAP_UNSPECIFIED;
	} else if (unmap && strcmp(unmap, "ignored") != 0) {
		dc_error("unmap=%s: expected zeroes, ignored or unspecified", unmap);
		free(p);
		return -EINVAL;
	}
	if (ss && count && count <= PROBE_MAX_MEM / ss) {
		p->mem = calloc(count, ss);
		if (!p->mem) {
			free(p);
			return -ENOMEM;
		}
	}
	pthread_mutex_init(&p->lock, NULL);

	info->sector_count = count;
	info->sector_size = ss;
	info->physical_sector_size = pss ? pss : ss;
	info->optimal_unmap_sectors = 1;
	info->unmap_behavior = p->unmap;
	info->flags = 0;
	if (p->read_only)
		info->flags |= DC_INFO_READ_ONLY;
	if (dc_opt_flag(a, "fua"))
		info->flags |= DC_INFO_FUA_RESPECTED;
	if (dc_opt_flag(a, "id")) {
		for (unsigned i = 0; i < sizeof(info->disk_id); i++)
			info->disk_id[i] = (uint8_t)i;
		info->flags |= DC_INFO_HAS_DISK_ID;
	}
	strcpy(info->disk_type, "probe");
	*inst = p;
	return 0;
}

static void probe_close(void *inst)
{
	struct probe *p = inst;

	pthread_mutex_destroy(&p->lock);
	free(p->mem);
	free(p);
}

static int probe_io(void *inst, struct dc_req *req)
{
	struct probe *p = inst;
	size_t off, len;

	if (req->op == DC_OP_FLUSH)
		return 0;
	if (req->sector > p->count || req->count > p->count - req->sector)
		return DC_E_ILLEGAL_BLOCK;
	off = req->sector * p->ss;
	len = req->count * p->ss;
	switch (req->op) {
	case DC_OP_READ:
		/* The detail travels in req->detail, as a blocking plugin's does. */
		if (p->medium && req->sector <= p->medium &&
		    p->medium < req->sector + req->count) {
			req->detail = DC_MEDIUM_UNRECOVERED_READ;
			return DC_E_MEDIUM;
		}
		if (!p->mem) {
			dc_buf_zero(&req->buf, 0, req->buf.len);
			return 0;
		}
		pthread_mutex_lock(&p->lock);
		dc_buf_copy_to(&req->buf, 0, p->mem + off, len);
		pthread_mutex_unlock(&p->lock);
		return 0;
	case DC_OP_WRITE:
		if (p->read_only)
			return DC_E_READ_ONLY;
		if (p->mem) {
			pthread_mutex_lock(&p->lock);
			dc_buf_copy_from(&req->buf, 0, p->mem + off, len);
			pthread_mutex_unlock(&p->lock);
		}
		return 0;
	case DC_OP_UNMAP:
		if (p->read_only)
			return DC_E_READ_ONLY;
		if (p->mem && p->unmap == DC_UNMAP_ZEROES) {
			pthread_mutex_lock(&p->lock);
			memset(p->mem + off, 0, len);
			pthread_mutex_unlock(&p->lock);
		}
		return 0;
	default:
		return DC_E_UNSUPPORTED;
	}
}

static void probe_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct probe *p = inst;

	kv(arg, "storage", p->mem ? "memory" : "none (reads zero, drops writes)");
}

static const struct dc_option probe_options[] = {
	{ .name = "ss",
	  .type = DC_OPT_UINT,
	  .help = "logical sector size in bytes (default 512)" },
	{ .name = "pss",
	  .type = DC_OPT_UINT,
	  .help = "physical sector size in bytes (default: ss)" },
	{ .name = "count", .type = DC_OPT_UINT, .help = "sector count (default 2048)" },
	{ .name = "medium",
	  .type = DC_OPT_UINT,
	  .help = "reads of this sector fail as an unrecovered read" },
	{ .name = "ro",
	  .type = DC_OPT_FLAG,
	  .help = "report read-only and refuse writes" },
	{ .name = "fua", .type = DC_OPT_FLAG, .help = "report FUA as respected" },
	{ .name = "id",
	  .type = DC_OPT_FLAG,
	  .help = "report the disk id 00 01 02 ... 0f" },
	{ .name = "unmap",
	  .type = DC_OPT_STRING,
	  .help = "zeroes, ignored (default) or unspecified" },
	{ .name = "fail", .type = DC_OPT_STRING, .help = "fail=open makes open fail" },
	{ 0 },
};

static const struct dc_form probe_forms[] = {
	{ .name = "probe",
	  .nfields = 0,
	  .child = DC_CHILD_NONE,
	  .syntax = "probe[;ss=N][;pss=N][;count=N][;ro][;fua][;id][;unmap=MODE]"
		    "[;fail=open]",
	  .help = "configurable in-memory test disk",
	  .options = probe_options },
	{ 0 },
};

DC_PLUGIN(probe_plugin) = {
	.kind = DC_KIND_BACKEND,
	.name = "probe",
	.version = "1.0",
	.summary = "configurable in-memory disk for tests",
	.usage = "Every option sets one piece of metadata; invalid values are "
		 "passed to the core unchanged so that its checks can be tested.",
	.forms = probe_forms,
	.ops = DC_OP_BIT(DC_OP_READ) | DC_OP_BIT(DC_OP_WRITE) | DC_OP_BIT(DC_OP_FLUSH) |
	       DC_OP_BIT(DC_OP_UNMAP),
	.open = probe_open,
	.close = probe_close,
	.io = probe_io,
	.describe = probe_describe,
};
