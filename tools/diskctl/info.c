/* SPDX-License-Identifier: MIT */
/* diskctl info: a disk's metadata and every element of its chain. */
#include "diskctl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char *const ctl_unmap_names[] = {
	[DC_UNMAP_UNSPECIFIED] = "unspecified",
	[DC_UNMAP_IGNORED] = "ignored",
	[DC_UNMAP_ZEROES] = "zeroes",
};

struct ctl_elem {
	int depth;
	char *plugin;
	char *form;
	struct dc_info info;
	bool has_info;
	size_t nkv;
	char **keys;
	char **vals;
};

struct ctl_chain {
	struct ctl_elem *e;
	size_t n;
};

static bool ctl_streq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

/* dc_describe may visit an element once without a key and then once per detail;
 * a call with a key for an element not seen yet starts that element too. */
static int ctl_describe_cb(void *arg, int depth, const char *plugin, const char *form,
			   const struct dc_info *info, const char *key, const char *value)
{
	struct ctl_chain *ch = arg;
	struct ctl_elem *e = ch->n ? &ch->e[ch->n - 1] : NULL;

	if (!key || !e || e->depth != depth || !ctl_streq(e->plugin, plugin) ||
	    !ctl_streq(e->form, form)) {
		ch->e = realloc(ch->e, (ch->n + 1) * sizeof(*ch->e));
		if (!ch->e)
			return -ENOMEM;
		e = &ch->e[ch->n++];
		memset(e, 0, sizeof(*e));
		e->depth = depth;
		e->plugin = ctl_strdup(plugin);
		e->form = ctl_strdup(form);
		if (info) {
			e->info = *info;
			e->has_info = true;
		}
	}
	if (key) {
		char **k = realloc(e->keys, (e->nkv + 1) * sizeof(char *));
		char **v = realloc(e->vals, (e->nkv + 1) * sizeof(char *));

		if (k)
			e->keys = k;
		if (v)
			e->vals = v;
		if (!k || !v)
			return -ENOMEM;
		e->keys[e->nkv] = ctl_strdup(key);
		e->vals[e->nkv] = ctl_strdup(value ? value : "");
		e->nkv++;
	}
	return 0;
}

static void ctl_chain_free(struct ctl_chain *ch)
{
	for (size_t i = 0; i < ch->n; i++) {
		struct ctl_elem *e = &ch->e[i];

		for (size_t j = 0; j < e->nkv; j++) {
			free(e->keys[j]);
			free(e->vals[j]);
		}
		free(e->keys);
		free(e->vals);
		free(e->plugin);
		free(e->form);
	}
	free(ch->e);
}

static void ctl_disk_id_hex(const struct dc_info *in, char out[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", in->disk_id[i]);
}

/* disk_type is a fixed array that a plugin may fill completely. */
static void ctl_disk_type(const struct dc_info *in, char out[sizeof(in->disk_type) + 1])
{
	memcpy(out, in->disk_type, sizeof(in->disk_type));
	out[sizeof(in->disk_type)] = '\0';
}

static void ctl_info_json_info(const struct dc_info *in, uint64_t sectors)
{
	char id[33], type[sizeof(in->disk_type) + 1];

	ctl_disk_type(in, type);
	printf("\"type\": ");
	ctl_json_str(stdout, type);
	printf(", \"sector_count\": %" PRIu64 ", \"sector_size\": %" PRIu32
	       ", \"bytes\": %" PRIu64 ", \"physical_sector_size\": %" PRIu32
	       ", \"read_only\": %s, \"fua_respected\": %s, \"unmap_behavior\": \"%s\""
	       ", \"optimal_unmap_sectors\": %" PRIu32
	       ", \"persistent_reservations\": %s, \"eject\": %s, \"disk_id\": ",
	       sectors, in->sector_size, sectors * in->sector_size,
	       in->physical_sector_size, ctl_bool(in->flags & DC_INFO_READ_ONLY),
	       ctl_bool(in->flags & DC_INFO_FUA_RESPECTED),
	       CTL_ENUM_NAME(ctl_unmap_names, in->unmap_behavior, "unknown"),
	       in->optimal_unmap_sectors, ctl_bool(in->flags & DC_INFO_PR),
	       ctl_bool(in->flags & DC_INFO_EJECT));
	if (in->flags & DC_INFO_HAS_DISK_ID) {
		ctl_disk_id_hex(in, id);
		printf("\"%s\"", id);
	} else {
		printf("null");
	}
}

static void ctl_info_json(const char *spec, const struct dc_info *in,
			  const struct ctl_chain *ch)
{
	printf("{\"spec\": ");
	ctl_json_str(stdout, spec);
	printf(", ");
	ctl_info_json_info(in, in->sector_count);
	printf(",\n \"chain\": [");
	for (size_t i = 0; i < ch->n; i++) {
		const struct ctl_elem *e = &ch->e[i];

		printf("%s\n  {\"depth\": %d, \"plugin\": ", i ? "," : "", e->depth);
		ctl_json_str(stdout, e->plugin);
		printf(", \"form\": ");
		ctl_json_str(stdout, e->form);
		if (e->has_info) {
			printf(", ");
			ctl_info_json_info(&e->info, e->info.sector_count);
		}
		printf(", \"details\": {");
		for (size_t j = 0; j < e->nkv; j++) {
			printf("%s", j ? ", " : "");
			ctl_json_str(stdout, e->keys[j]);
			printf(": ");
			ctl_json_str(stdout, e->vals[j]);
		}
		printf("}}");
	}
	printf("\n ]}\n");
}

static void ctl_info_human(const char *spec, const struct dc_info *in,
			   const struct ctl_chain *ch)
{
	uint64_t bytes = in->sector_count * in->sector_size;
	char hb[32], id[33], type[sizeof(in->disk_type) + 1];

	ctl_human_bytes(bytes, hb, sizeof(hb));
	ctl_disk_type(in, type);
	printf("spec:                  %s\n", spec);
	printf("type:                  %s\n", type);
	printf("size:                  %" PRIu64 " bytes (%s)\n", bytes, hb);
	printf("sectors:               %" PRIu64 " x %" PRIu32 " bytes\n",
	       in->sector_count, in->sector_size);
	printf("physical sector size:  %" PRIu32 " bytes\n", in->physical_sector_size);
	printf("read-only:             %s\n",
	       in->flags & DC_INFO_READ_ONLY ? "yes" : "no");
	printf("FUA respected:         %s\n",
	       in->flags & DC_INFO_FUA_RESPECTED ? "yes" : "no");
	printf("unmap:                 %s (optimal %" PRIu32 " sectors)\n",
	       CTL_ENUM_NAME(ctl_unmap_names, in->unmap_behavior, "unknown"),
	       in->optimal_unmap_sectors);
	printf("persistent reserv.:    %s\n", in->flags & DC_INFO_PR ? "yes" : "no");
	printf("eject:                 %s\n", in->flags & DC_INFO_EJECT ? "yes" : "no");
	if (in->flags & DC_INFO_HAS_DISK_ID) {
		ctl_disk_id_hex(in, id);
		printf("disk id:               %s\n", id);
	} else {
		printf("disk id:               (none)\n");
	}
	printf("chain:\n");
	for (size_t i = 0; i < ch->n; i++) {
		const struct ctl_elem *e = &ch->e[i];
		int ind = 2 + 2 * e->depth;

		printf("%*s%s", ind, "", e->plugin ? e->plugin : "(core)");
		if (e->form)
			printf(" [%s]", e->form);
		if (e->has_info) {
			ctl_disk_type(&e->info, type);
			printf(": %s, %" PRIu64 " x %" PRIu32 " bytes, %s", type,
			       e->info.sector_count, e->info.sector_size,
			       e->info.flags & DC_INFO_READ_ONLY ? "read-only" :
								   "read-write");
		}
		printf("\n");
		for (size_t j = 0; j < e->nkv; j++)
			printf("%*s%s: %s\n", ind + 4, "", e->keys[j], e->vals[j]);
	}
}

struct ctl_info_args {
	bool json, rw, share;
};

const struct ctl_opt ctl_info_opts[] = {
	CTL_OPT_JSON(struct ctl_info_args,
		     "print one JSON object; strings are valid UTF-8 (a\n"
		     "byte that is not part of valid UTF-8 is written as\n"
		     "\\u00XX, XX its value)"),
	CTL_OPT("rw", 0, CTL_OPT_TRUE, struct ctl_info_args, rw, NULL,
		"open read-write, so that create= or ;overwrite in SPEC may\n"
		"make or replace an image ('diskctl create' says it plainer)"),
	CTL_OPT("ro", 0, CTL_OPT_FALSE, struct ctl_info_args, rw, NULL,
		"open read-only (the default; the last of --ro and\n"
		"--rw counts)"),
	CTL_OPT_FORCE_SHARE(struct ctl_info_args),
	{ 0 },
};

int ctl_info(int argc, char **argv)
{
	struct ctl_info_args a = { 0 };
	struct ctl_chain ch = { 0 };
	struct dc_info in;
	const char *spec = ctl_parse(argc, argv, &a, NULL)[0];
	/* Looking never writes: read-only unless asked (an image another
	 * process holds open read-only can be looked at too). */
	uint32_t flags = a.rw ? 0 : DC_OPEN_READ_ONLY;
	dc_disk *d;
	int rc;

	if (a.share && a.rw)
		ctl_usage(
			"--force-share reads without locks: it cannot be used with --rw");
	flags |= ctl_force_share(a.share, spec, "what is shown may be inconsistent");
	d = ctl_open(spec, flags);
	if (!d)
		return CTL_EXIT_FAIL;
	dc_get_info(d, &in);
	in.sector_count = dc_sector_count(d);
	rc = dc_describe(d, ctl_describe_cb, &ch);
	if (rc < 0) {
		ctl_err("describe '%s': %s", spec, ctl_last_error(rc));
		ctl_chain_free(&ch);
		dc_close(d);
		return CTL_EXIT_FAIL;
	}
	if (a.json)
		ctl_info_json(spec, &in, &ch);
	else
		ctl_info_human(spec, &in, &ch);
	ctl_chain_free(&ch);
	dc_close(d);
	return 0;
}
