/* SPDX-License-Identifier: MIT */
/* pattern: an example diskcore plugin, built out of tree against the installed
 * headers only (see docs/plugin-guide.md):
 *
 *   cc -shared -fPIC -fvisibility=hidden $(pkg-config --cflags diskcore) \
 *      -o pattern.so pattern.c $(pkg-config --libs diskcore)
 *
 * Spec: pattern:SIZE[;seed=N]. A read-only disk whose sector s is filled with
 * the byte (s + seed) & 0xff. */
#include <diskcore/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pattern {
	uint64_t sectors;
	uint8_t seed;
};

static int pattern_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct pattern *p;
	uint64_t size, seed = 0;

	/* fields[0] is SIZE; the core already checked the option types. */
	if (dc_parse_size(a->fields[0], &size) < 0 || size == 0 || size % 512)
		return dc_fail(-EINVAL,
			       "size '%s': expected a non-zero multiple of 512 "
			       "such as 1M",
			       a->fields[0]);
	if (dc_opt_num(a, "seed", &seed) && seed > 255)
		return dc_fail(-EINVAL, "seed=%llu: expected 0 to 255",
			       (unsigned long long)seed);
	p = calloc(1, sizeof(*p));
	if (!p)
		return dc_fail(-ENOMEM, "out of memory");
	p->sectors = size / 512;
	p->seed = (uint8_t)seed;

	info->sector_count = p->sectors;
	info->sector_size = 512;
	info->physical_sector_size = 512;
	info->optimal_unmap_sectors = 1;
	info->unmap_behavior = DC_UNMAP_IGNORED;
	info->flags = DC_INFO_READ_ONLY;
	strcpy(info->disk_type, "pattern");
	*inst = p;
	return 0;
}

static void pattern_close(void *inst)
{
	free(inst);
}

/* Blocking I/O: the core runs this on its worker pool. It only gets the ops
 * in .ops, inside the disk and with a buffer of count sectors: the core
 * checked (plugin.h, "Validated before a plugin sees it"). */
static int pattern_io(void *inst, struct dc_req *req)
{
	struct pattern *p = inst;
	uint8_t sector[512];

	if (req->op == DC_OP_FLUSH)
		return 0;
	for (uint64_t i = 0; i < req->count; i++) {
		memset(sector, (uint8_t)(req->sector + i + p->seed), sizeof(sector));
		dc_buf_copy_to(&req->buf, i * 512, sector, sizeof(sector));
	}
	return 0;
}

static void pattern_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct pattern *p = inst;
	char seed[8];

	snprintf(seed, sizeof(seed), "%u", p->seed);
	kv(arg, "seed", seed);
}

static const struct dc_option pattern_options[] = {
	{ .name = "seed",
	  .type = DC_OPT_UINT,
	  .help = "added to the sector number (0-255, default 0)" },
	{ 0 },
};

static const struct dc_form pattern_forms[] = {
	{ .name = "pattern",
	  .nfields = 1,
	  .child = DC_CHILD_NONE,
	  .syntax = "pattern:SIZE[;seed=N]",
	  .help = "read-only disk; sector s holds the byte (s + seed) & 0xff",
	  .options = pattern_options },
	{ 0 },
};

DC_PLUGIN(pattern_plugin) = {
	.kind = DC_KIND_BACKEND,
	.name = "pattern",
	.version = "1.0",
	.summary = "example out-of-tree plugin: a read-only pattern disk",
	.forms = pattern_forms,
	/* No write: the core makes the disk read-only and refuses writes. */
	.ops = DC_OP_BIT(DC_OP_READ) | DC_OP_BIT(DC_OP_FLUSH),
	.open = pattern_open,
	.close = pattern_close,
	.io = pattern_io,
	.describe = pattern_describe,
};
