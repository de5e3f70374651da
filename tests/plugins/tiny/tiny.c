/* SPDX-License-Identifier: MIT */
/* Tiny plugins for the registry tests: a 1 MiB disk that reads zeroes and
 * drops writes. One source, built once per variant; TINY_<VARIANT> says what
 * is wrong with this copy:
 *   GOOD      nothing (plugin "good", form "good")
 *   NOENTRY   no entry symbol
 *   PRERELEASE the pre-release ABI's entry symbol, diskcore_plugin_init
 *   BADABI    ABI major one above the core's
 *   NEWMINOR  ABI minor one above the core's
 *   DUP_A/B   two plugins that both claim form "dup"
 *   OLD       an older, shorter descriptor that ends after `io`; the fields
 *             past it hold traps the core must never copy or call
 *   SMALL     struct_size too small to reach `open`
 *   NOIO      neither submit nor io
 *   BADOPS    flush both handled and passed through, with no child
 * Every variant creates the file $DC_TINY_LOADED names when it is loaded, so a
 * test can tell that a lookup never loaded it. */
#include <diskcore/plugin.h>

#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TINY_SECTORS 2048

#if defined(TINY_DUP_A)
#define TINY_NAME "dup-a"
#define TINY_FORM "dup"
#elif defined(TINY_DUP_B)
#define TINY_NAME "dup-b"
#define TINY_FORM "dup"
#elif defined(TINY_GOOD)
#define TINY_NAME "good"
#elif defined(TINY_OLD)
#define TINY_NAME "old"
#else
#define TINY_NAME "tiny"
#endif
#ifndef TINY_FORM
#define TINY_FORM TINY_NAME
#endif

__attribute__((constructor)) static void tiny_loaded(void)
{
	const char *mark = getenv("DC_TINY_LOADED");
	int fd = mark ? open(mark, O_WRONLY | O_CREAT | O_CLOEXEC, 0600) : -1;

	if (fd >= 0)
		close(fd);
}

static int tiny_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	(void)a;
	*inst = NULL;
	info->sector_count = TINY_SECTORS;
	info->sector_size = 512;
	info->physical_sector_size = 512;
	info->optimal_unmap_sectors = 1;
	info->unmap_behavior = DC_UNMAP_IGNORED;
	strcpy(info->disk_type, "tiny");
	return 0;
}

#ifndef TINY_NOIO
static int tiny_io(void *inst, struct dc_req *req)
{
	(void)inst;
	if (req->op == DC_OP_FLUSH)
		return 0;
	if (req->sector > TINY_SECTORS || req->count > TINY_SECTORS - req->sector)
		return DC_E_ILLEGAL_BLOCK;
	if (req->op == DC_OP_READ)
		dc_buf_zero(&req->buf, 0, req->buf.len);
	return 0;
}
#endif

#ifdef TINY_OLD
/* Past the old descriptor's end: a core that copied these would crash here. */
static uint64_t tiny_trap_count(void *inst)
{
	(void)inst;
	abort();
}

static void tiny_trap_describe(void *inst, dc_kv_fn kv, void *arg)
{
	(void)inst;
	(void)kv;
	(void)arg;
	abort();
}
#endif

static const struct dc_form tiny_forms[] = {
	{ .name = TINY_FORM, .syntax = TINY_FORM, .help = "a zero disk for tests" },
	{ 0 },
};

static const struct dc_plugin tiny_plugin = {
	.kind = DC_KIND_BACKEND,
	.name = TINY_NAME,
	.version = "1.0",
	.summary = "tiny test plugin",
	.forms = tiny_forms,
	.ops = DC_OP_BIT(DC_OP_READ) | DC_OP_BIT(DC_OP_WRITE) | DC_OP_BIT(DC_OP_FLUSH),
	.open = tiny_open,
#ifndef TINY_NOIO
	.io = tiny_io,
#endif
#ifdef TINY_BADOPS
	.passthrough_ops = DC_OP_BIT(DC_OP_FLUSH), /* also in ops, and no child */
#endif
#ifdef TINY_OLD
	.sector_count = tiny_trap_count,
	.describe = tiny_trap_describe,
#endif
};

/* Written out by hand, not with DC_PLUGIN(): the variants break its fields. */
#if defined(TINY_NOENTRY)
#define TINY_ENTRY tiny_init /* built, but exported under the wrong name */
#elif defined(TINY_PRERELEASE)
#define TINY_ENTRY diskcore_plugin_init /* the pre-release ABI's entry */
#else
#define TINY_ENTRY DC_PLUGIN_ENTRY
#endif
__attribute__((visibility("default"))) const struct dc_plugin *
TINY_ENTRY(struct dc_plugin_abi *abi);
const struct dc_plugin *TINY_ENTRY(struct dc_plugin_abi *abi)
{
#if defined(TINY_OLD)
	abi->struct_size = offsetof(struct dc_plugin, io) + sizeof(void *);
#elif defined(TINY_SMALL)
	abi->struct_size = offsetof(struct dc_plugin, open);
#else
	abi->struct_size = sizeof(struct dc_plugin);
#endif
#ifdef TINY_BADABI
	abi->abi_major = DC_ABI_MAJOR + 1;
#else
	abi->abi_major = DC_ABI_MAJOR;
#endif
#ifdef TINY_NEWMINOR
	abi->abi_minor = DC_ABI_MINOR + 1;
#else
	abi->abi_minor = DC_ABI_MINOR;
#endif
	return &tiny_plugin;
}
