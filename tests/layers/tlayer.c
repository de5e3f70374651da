/* SPDX-License-Identifier: MIT */
/*
 * tlayer: a configurable sparse layer for the layered-disk tests (not
 * installed). One sector per allocation under one mutex: simple, not fast.
 *
 * Forms:
 *   tlay:SPEC      plain layer over SPEC, sized from it
 *   tcache:SPEC    read-cache layer over SPEC (DC_FORM_READ_CACHE)
 *   twt:SPEC       write-through layer over SPEC (DC_FORM_WRITE_THROUGH)
 *   tpatdiff:SPEC  layer over SPEC that holds a pattern (see every=, seed=)
 *   tpat:SIZE      bottom layer that holds a pattern
 *   tbase:SIZE     bottom layer that holds nothing
 *   twt0:SIZE      write-through bottom layer (always invalid)
 *   tchain:N       bottom layer whose lower_spec() is tchain:N-1, then tpat:64K
 *
 * Pattern: 32-bit little-endian words, word at byte offset o = o/4 | seed<<24;
 * with ;mul, byte b of sector i is the low byte of (i+1)*3*7^(b+1).
 *
 * describe() reports counters the tests check: present, reads, writes,
 * nowrites (write-no-overwrite), unmaps, flushes, last_unmap.
 */
#include <diskcore/plugin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tl {
	struct dc_node *node;
	bool leaf, pattern, mul, cache_ok, ro, async, unmapall, chain, checkfail;
	uint64_t corrupt, leaks;
	uint64_t every, seed, size, chain_n;
	uint32_t ss, phys, unmap, opt_unmap, fua, has_id;
	uint64_t count;
	uint8_t **sec;
	bool *dropped; /* pattern sectors unmapped (read as not present) */
	uint8_t *scratch;
	pthread_mutex_t lock;
	atomic_ulong reads, writes, nowrites, unmaps, flushes;
	char last_unmap[64];
};

static const struct dc_option tl_opts[] = {
	DC_OPTION_UINT("sector", "sector size"),
	DC_OPTION_UINT("phys", "physical sector size"),
	DC_OPTION_SIZE("size", "size instead of the lower layer's"),
	DC_OPTION_FLAG("ro", "logically read-only"),
	DC_OPTION_FLAG("nocache", "no write-no-overwrite support"),
	DC_OPTION_FLAG("nofua", "FUA not respected"),
	DC_OPTION_UINT("id", "disk id: 16 bytes of this value"),
	DC_OPTION_STRING("unmap", "zeroes, ignored or unspecified"),
	DC_OPTION_UINT("optunmap", "optimal unmap sectors"),
	DC_OPTION_UINT("every", "pattern: only sectors that are multiples of N"),
	DC_OPTION_UINT("seed", "pattern seed (high byte of each word)"),
	DC_OPTION_FLAG("mul", "the multiplicative pattern of OpenVMM's cache test"),
	DC_OPTION_FLAG("async", "complete on the worker pool"),
	DC_OPTION_FLAG("unmapall", "drop unmapped sectors even if next is not zero"),
	DC_OPTION_UINT("corrupt", "check(): report N corruptions"),
	DC_OPTION_UINT("leaks", "check(): report N leaks"),
	DC_OPTION_FLAG("checkfail", "check(): fail as if the image could not be read"),
	DC_OPTIONS_END,
};

static void tl_fill_pattern(const struct tl *t, uint64_t s, uint8_t *out)
{
	if (t->mul) {
		uint64_t acc = (s + 1) * 3;

		for (uint32_t b = 0; b < t->ss; b++) {
			acc *= 7;
			out[b] = (uint8_t)acc;
		}
		return;
	}
	for (uint32_t w = 0; w < t->ss / 4; w++) {
		uint32_t v = (uint32_t)((s * t->ss + w * 4) / 4) |
			     (uint32_t)(t->seed << 24);

		out[w * 4] = (uint8_t)v;
		out[w * 4 + 1] = (uint8_t)(v >> 8);
		out[w * 4 + 2] = (uint8_t)(v >> 16);
		out[w * 4 + 3] = (uint8_t)(v >> 24);
	}
}

static bool tl_has_pattern(const struct tl *t, uint64_t s)
{
	return t->pattern && !t->dropped[s] && (t->every <= 1 || s % t->every == 0);
}

static void tl_info(struct tl *t, struct dc_info *info)
{
	memset(info, 0, sizeof(*info));
	info->sector_count = t->count;
	info->sector_size = t->ss;
	info->physical_sector_size = t->phys ? t->phys : t->ss;
	info->optimal_unmap_sectors = t->opt_unmap ? t->opt_unmap : 1;
	info->unmap_behavior = t->unmap;
	info->flags = (t->fua ? DC_INFO_FUA_RESPECTED : 0) |
		      (t->cache_ok ? DC_INFO_CAN_READ_CACHE : 0) |
		      (t->ro ? DC_INFO_READ_ONLY : 0) |
		      (t->has_id ? DC_INFO_HAS_DISK_ID : 0);
	if (t->has_id)
		memset(info->disk_id, (int)t->has_id, sizeof(info->disk_id));
	snprintf(info->disk_type, sizeof(info->disk_type), "tlayer");
}

static int tl_alloc(struct tl *t, uint64_t size)
{
	if (!t->ss || size % t->ss || size / t->ss == 0) {
		dc_error("size %llu is not a positive multiple of %u",
			 (unsigned long long)size, t->ss);
		return -EINVAL;
	}
	t->count = size / t->ss;
	t->sec = calloc(t->count, sizeof(*t->sec));
	t->dropped = calloc(t->count, sizeof(*t->dropped));
	t->scratch = malloc(t->ss);
	if (!t->sec || !t->dropped || !t->scratch)
		return -ENOMEM;
	return 0;
}

static void tl_close(void *inst)
{
	struct tl *t = inst;

	for (uint64_t i = 0; t->sec && i < t->count; i++)
		free(t->sec[i]);
	free(t->sec);
	free(t->dropped);
	free(t->scratch);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static int tl_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct tl *t = calloc(1, sizeof(*t));
	const char *um;
	uint64_t v;
	int rc = 0;

	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	t->node = a->node;
	t->leaf = a->nfields == 1;
	t->pattern = !strcmp(a->form, "tpat") || !strcmp(a->form, "tpatdiff");
	t->chain = !strcmp(a->form, "tchain");
	t->mul = dc_opt_flag(a, "mul");
	t->cache_ok = !dc_opt_flag(a, "nocache");
	t->ro = dc_opt_flag(a, "ro");
	t->async = dc_opt_flag(a, "async");
	t->unmapall = dc_opt_flag(a, "unmapall");
	t->checkfail = dc_opt_flag(a, "checkfail");
	dc_opt_num(a, "corrupt", &t->corrupt);
	dc_opt_num(a, "leaks", &t->leaks);
	t->fua = !dc_opt_flag(a, "nofua");
	t->ss = dc_opt_num(a, "sector", &v) ? (uint32_t)v : 0;
	t->phys = dc_opt_num(a, "phys", &v) ? (uint32_t)v : 0;
	t->opt_unmap = dc_opt_num(a, "optunmap", &v) ? (uint32_t)v : 1;
	t->has_id = dc_opt_num(a, "id", &v) ? (uint32_t)v : 0;
	t->every = dc_opt_num(a, "every", &v) ? v : 1;
	t->seed = dc_opt_num(a, "seed", &v) ? v : 0;
	t->size = dc_opt_num(a, "size", &v) ? v : 0;
	t->unmap = DC_UNMAP_UNSPECIFIED;
	um = dc_opt_str(a, "unmap");
	if (um && !strcmp(um, "zeroes"))
		t->unmap = DC_UNMAP_ZEROES;
	else if (um && !strcmp(um, "ignored"))
		t->unmap = DC_UNMAP_IGNORED;
	if (t->leaf) {
		if (!t->ss)
			t->ss = 512;
		if (t->chain) {
			t->chain_n = strtoull(a->fields[0], NULL, 10);
			rc = tl_alloc(t, 64 * 1024);
		} else if (dc_parse_size(a->fields[0], &v) < 0) {
			dc_error("bad size '%s'", a->fields[0]);
			rc = -EINVAL;
		} else {
			rc = tl_alloc(t, v);
		}
	}
	if (rc < 0) {
		tl_close(t);
		return rc;
	}
	tl_info(t, info);
	*inst = t;
	return 0;
}

static int tl_attach(void *inst, const struct dc_info *lower, struct dc_info *info)
{
	struct tl *t = inst;
	uint64_t size = t->size;
	int rc;

	if (t->leaf)
		return 0;
	if (!t->ss)
		t->ss = lower ? lower->sector_size : 512;
	if (!size && lower)
		size = lower->sector_count * lower->sector_size;
	rc = tl_alloc(t, size);
	if (rc < 0)
		return rc;
	tl_info(t, info);
	return 0;
}

static int tl_lower_spec(void *inst, char *buf, size_t len)
{
	struct tl *t = inst;

	if (!t->chain)
		return 0;
	if (t->chain_n)
		snprintf(buf, len, "tchain:%llu", (unsigned long long)t->chain_n - 1);
	else
		snprintf(buf, len, "tpat:64K");
	return 1;
}

static int tl_io(struct tl *t, struct dc_req *req)
{
	uint64_t s = req->sector, n = req->count;
	int rc = 0;

	if (req->op == DC_OP_FLUSH) {
		t->flushes++;
		return 0;
	}
	if (n > t->count || s > t->count - n)
		return DC_E_ILLEGAL_BLOCK;
	pthread_mutex_lock(&t->lock);
	switch (req->op) {
	case DC_OP_READ:
		t->reads++;
		for (uint64_t i = 0; i < n; i++) {
			size_t off = (size_t)i * t->ss;

			if (t->sec[s + i]) {
				dc_buf_copy_to(&req->buf, off, t->sec[s + i], t->ss);
			} else if (tl_has_pattern(t, s + i)) {
				tl_fill_pattern(t, s + i, t->scratch);
				dc_buf_copy_to(&req->buf, off, t->scratch, t->ss);
			} else {
				continue;
			}
			if (req->marker)
				dc_marker_set(req->marker, s + i, 1);
		}
		break;
	case DC_OP_WRITE: {
		bool no_ow = req->flags & DC_IO_NO_OVERWRITE;

		if (no_ow) {
			t->nowrites++;
		} else if (t->ro) {
			rc = DC_E_READ_ONLY;
			break;
		} else {
			t->writes++;
		}
		for (uint64_t i = 0; i < n; i++) {
			if (no_ow && (t->sec[s + i] || tl_has_pattern(t, s + i)))
				continue;
			if (!t->sec[s + i] && !(t->sec[s + i] = malloc(t->ss))) {
				rc = -ENOMEM;
				break;
			}
			dc_buf_copy_from(&req->buf, (size_t)i * t->ss, t->sec[s + i],
					 t->ss);
		}
		break;
	}
	case DC_OP_UNMAP: {
		bool nz = req->flags & DC_IO_NEXT_IS_ZERO;

		t->unmaps++;
		snprintf(t->last_unmap, sizeof(t->last_unmap), "%llu+%llu nz=%d",
			 (unsigned long long)s, (unsigned long long)n, nz);
		if (!nz && t->unmap == DC_UNMAP_ZEROES) {
			/* Zeroes promised, and data below: store explicit zeroes. */
			for (uint64_t i = 0; i < n && rc == 0; i++) {
				if (!t->sec[s + i] && !(t->sec[s + i] = malloc(t->ss)))
					rc = -ENOMEM;
				else
					memset(t->sec[s + i], 0, t->ss);
			}
			break;
		}
		if (!nz && !t->unmapall)
			break;
		for (uint64_t i = 0; i < n; i++) {
			free(t->sec[s + i]);
			t->sec[s + i] = NULL;
			if (t->pattern)
				t->dropped[s + i] = true;
		}
		break;
	}
	default:
		rc = DC_E_UNSUPPORTED;
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

static void tl_async(void *arg)
{
	struct dc_req *req = arg;

	dc_complete(req, tl_io(*(struct tl **)req->ctx, req));
}

static void tl_submit(void *inst, struct dc_req *req)
{
	struct tl *t = inst;

	if (t->async) {
		/* The request keeps its instance in ctx for the worker. */
		*(struct tl **)req->ctx = t;
		if (dc_pool_run(tl_async, req) == 0)
			return;
	}
	dc_complete(req, tl_io(t, req));
}

static uint64_t tl_sector_count(void *inst)
{
	return ((struct tl *)inst)->count;
}

static int tl_check(void *inst, dc_check_report_fn report, void *arg)
{
	struct tl *t = inst;

	if (t->checkfail)
		return dc_fail(-EIO, "cannot read the metadata (checkfail)");
	dc_check_printf(report, arg, DC_CHECK_NOTE, "%llu sectors",
			(unsigned long long)t->count);
	for (uint64_t i = 0; i < t->corrupt; i++)
		dc_check_printf(report, arg, DC_CHECK_CORRUPT, "corruption %llu",
				(unsigned long long)i);
	for (uint64_t i = 0; i < t->leaks; i++)
		dc_check_printf(report, arg, DC_CHECK_LEAK, "leak %llu",
				(unsigned long long)i);
	return 0;
}

static void tl_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct tl *t = inst;
	uint64_t present = 0;
	char v[64];

	pthread_mutex_lock(&t->lock);
	for (uint64_t i = 0; i < t->count; i++)
		present += t->sec[i] != NULL;
	pthread_mutex_unlock(&t->lock);
#define TL_KV(name, val)                                                   \
	do {                                                               \
		snprintf(v, sizeof(v), "%llu", (unsigned long long)(val)); \
		kv(arg, name, v);                                          \
	} while (0)
	TL_KV("present", present);
	TL_KV("reads", t->reads);
	TL_KV("writes", t->writes);
	TL_KV("nowrites", t->nowrites);
	TL_KV("unmaps", t->unmaps);
	TL_KV("flushes", t->flushes);
	kv(arg, "last_unmap", t->last_unmap);
}

DC_PLUGIN(tl_plugin) = {
	DC_ABOUT(DC_KIND_LAYER, "tlayer", "0", "configurable test layers (tests only)"),
	.forms = DC_FORMS(
		DC_FORM("tlay", 0, DC_CHILD_ONE, "tlay:SPEC", "test layer", tl_opts),
		DC_FORM_FLAGS("tcache", 0, DC_CHILD_ONE, DC_FORM_READ_CACHE,
			      "tcache:SPEC", "test read cache", tl_opts),
		DC_FORM_FLAGS("twt", 0, DC_CHILD_ONE, DC_FORM_WRITE_THROUGH, "twt:SPEC",
			      "test write-through layer", tl_opts),
		DC_FORM("tpatdiff", 0, DC_CHILD_ONE, "tpatdiff:SPEC",
			"test pattern layer", tl_opts),
		DC_FORM("tpat", 1, DC_CHILD_NONE, "tpat:SIZE",
			"test pattern bottom layer", tl_opts),
		DC_FORM("tbase", 1, DC_CHILD_NONE, "tbase:SIZE",
			"test empty bottom layer", tl_opts),
		DC_FORM_FLAGS("twt0", 1, DC_CHILD_NONE, DC_FORM_WRITE_THROUGH,
			      "twt0:SIZE", "write-through bottom layer", tl_opts),
		DC_FORM("tchain", 1, DC_CHILD_NONE, "tchain:N",
			"layer with a lower_spec chain", tl_opts)),
	.ctx_size = sizeof(void *),
	.ops = DC_OPS_RW,
	DC_CALLBACKS(tl, open, close, submit, sector_count, attach, lower_spec, describe,
		     check),
};
