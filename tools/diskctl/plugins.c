/* SPDX-License-Identifier: MIT */
/* diskctl plugins: every plugin file on the search path, with its forms and
 * options as its descriptor declares them (plugin.h's layout). */
#include "diskctl.h"

#include <diskcore/plugin.h>

#include <inttypes.h>
#include <string.h>

struct ctl_plugins {
	bool json;
	unsigned n;
	unsigned refused;
};

static const char *const ctl_kind_names[] = {
	[DC_KIND_BACKEND] = "backend",
	[DC_KIND_DECORATOR] = "decorator",
	[DC_KIND_LAYER] = "layer",
};

/* An option type's name and the syntax of its value in a form's usage. */
static const struct {
	const char *name, *syntax;
} ctl_opt_types[] = {
	[DC_OPT_FLAG] = { "flag", "" },
	[DC_OPT_STRING] = { "string", "=TEXT" },
	[DC_OPT_SIZE] = { "size", "=SIZE" },
	[DC_OPT_UINT] = { "uint", "=N" },
};

static bool ctl_opt_known(uint32_t t)
{
	return t < sizeof(ctl_opt_types) / sizeof(ctl_opt_types[0]) &&
	       ctl_opt_types[t].name;
}

static const char *ctl_opt_type(uint32_t t)
{
	return ctl_opt_known(t) ? ctl_opt_types[t].name : "unknown";
}

static const char *ctl_opt_syntax(uint32_t t)
{
	return ctl_opt_known(t) ? ctl_opt_types[t].syntax : "=?";
}

static const char *const ctl_child_names[] = {
	[DC_CHILD_NONE] = "none",
	[DC_CHILD_ONE] = "one",
	[DC_CHILD_LIST] = "list",
};

/* Print multi-line text with each line indented. */
static void ctl_indented(const char *text, int ind)
{
	const char *p = text;

	while (*p) {
		const char *nl = strchr(p, '\n');
		int len = nl ? (int)(nl - p) : (int)strlen(p);

		printf("%*s%.*s\n", ind, "", len, p);
		p += len;
		if (*p == '\n')
			p++;
	}
}

static void ctl_plugin_json(const char *path, const struct dc_plugin *p)
{
	printf("  {\"path\": ");
	ctl_json_str(stdout, path);
	printf(", \"name\": ");
	ctl_json_str(stdout, p->name);
	printf(", \"kind\": \"%s\", \"version\": ",
	       CTL_ENUM_NAME(ctl_kind_names, p->kind, "unknown"));
	ctl_json_str(stdout, p->version);
	printf(", \"abi\": \"%u.%u\", \"summary\": ", p->abi_major, p->abi_minor);
	ctl_json_str(stdout, p->summary);
	printf(", \"usage\": ");
	ctl_json_str(stdout, p->usage);
	printf(", \"blocking\": %s, \"forms\": [", ctl_bool(!p->submit && p->io));
	for (const struct dc_form *f = p->forms; f && f->name; f++) {
		printf("%s\n    {\"name\": ", f == p->forms ? "" : ",");
		ctl_json_str(stdout, f->name);
		printf(", \"syntax\": ");
		ctl_json_str(stdout, f->syntax);
		printf(", \"help\": ");
		ctl_json_str(stdout, f->help);
		printf(", \"fields\": %" PRIu32 ", \"child\": \"%s\", \"read_cache\": %s"
		       ", \"write_through\": %s, \"options\": [",
		       f->nfields, CTL_ENUM_NAME(ctl_child_names, f->child, "unknown"),
		       ctl_bool(f->flags & DC_FORM_READ_CACHE),
		       ctl_bool(f->flags & DC_FORM_WRITE_THROUGH));
		for (const struct dc_option *o = f->options; o && o->name; o++) {
			printf("%s{\"name\": ", o == f->options ? "" : ", ");
			ctl_json_str(stdout, o->name);
			printf(", \"type\": \"%s\", \"help\": ", ctl_opt_type(o->type));
			ctl_json_str(stdout, o->help);
			printf("}");
		}
		printf("]}");
	}
	printf("]}");
}

static void ctl_plugin_human(const char *path, const struct dc_plugin *p)
{
	printf("%s %s (%s%s)\n", p->name ? p->name : "(unnamed)",
	       p->version ? p->version : "?",
	       CTL_ENUM_NAME(ctl_kind_names, p->kind, "unknown"),
	       !p->submit && p->io ? ", blocking" : "");
	printf("  file:    %s\n", path);
	if (p->summary)
		printf("  summary: %s\n", p->summary);
	for (const struct dc_form *f = p->forms; f && f->name; f++) {
		printf("  %s\n", f->syntax ? f->syntax : f->name);
		if (f->help)
			printf("      %s\n", f->help);
		for (const struct dc_option *o = f->options; o && o->name; o++) {
			char syn[96];

			snprintf(syn, sizeof(syn), ";%s%s", o->name,
				 ctl_opt_syntax(o->type));
			printf("      %-20s %s (%s)\n", syn, o->help ? o->help : "",
			       ctl_opt_type(o->type));
		}
	}
	if (p->usage && *p->usage) {
		printf("  usage:\n");
		ctl_indented(p->usage, 4);
	}
	printf("\n");
}

static int ctl_plugins_cb(void *arg, const char *path, const struct dc_plugin *p,
			  const char *why)
{
	struct ctl_plugins *st = arg;

	if (st->json) {
		printf("%s\n", st->n ? "," : "");
		if (p) {
			ctl_plugin_json(path, p);
		} else {
			printf("  {\"path\": ");
			ctl_json_str(stdout, path);
			printf(", \"refused\": ");
			ctl_json_str(stdout, why ? why : "refused");
			printf("}");
		}
	} else if (p) {
		ctl_plugin_human(path, p);
	} else {
		printf("refused: %s\n  why: %s\n\n", path,
		       why ? why : "(no reason given)");
	}
	st->n++;
	if (!p)
		st->refused++;
	return 0;
}

const struct ctl_opt ctl_plugins_opts[] = {
	CTL_OPT_JSON(struct ctl_plugins, "print one JSON object"),
	{ 0 },
};

int ctl_plugins(int argc, char **argv)
{
	struct ctl_plugins st = { 0 };
	const char *path;
	int rc;

	ctl_parse(argc, argv, &st, NULL);
	path = dc_plugin_path();
	if (st.json) {
		printf("{\"search_path\": ");
		ctl_json_str(stdout, path ? path : "");
		printf(", \"plugins\": [");
	} else {
		printf("plugin search path: %s\n\n", path ? path : "");
	}
	rc = dc_plugins_foreach(ctl_plugins_cb, &st);
	if (st.json)
		printf("\n]}\n");
	else if (!st.n)
		printf("no plugins found\n");
	fflush(stdout);
	if (rc < 0) {
		ctl_err("listing plugins: %s", ctl_last_error(rc));
		return CTL_EXIT_FAIL;
	}
	return 0;
}
