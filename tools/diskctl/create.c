/* SPDX-License-Identifier: MIT */
/*
 * diskctl create, and the create path convert shares: make the image a spec's
 * top element names through the options its plugin declares (create=SIZE,
 * parent=PATH, sqldiff's ;create), so every format a plugin can make is made
 * by the plugin itself, under the core's one create rule
 * (docs/spec-strings.md, Creating images). diskctl only adds the options to
 * the spec and refuses an existing file unless --overwrite.
 */
#include "diskctl.h"

#include <diskcore/plugin.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* What the plugins declare for one kind (a form name). */
struct ctl_form_caps {
	const char *kind;
	bool found;
	uint32_t child;	  /* enum dc_child */
	bool create_size; /* ;create=SIZE */
	bool create_flag; /* ;create (sizes itself from the disk below) */
	bool parent;	  /* ;parent=PATH */
	bool sector;	  /* ;sector=N */
	char makers[256]; /* the kinds that create images, for messages */
};

static void ctl_caps_option(struct ctl_form_caps *c, const struct dc_option *o)
{
	if (!strcmp(o->name, "create") && o->type == DC_OPT_SIZE)
		c->create_size = true;
	else if (!strcmp(o->name, "create") && o->type == DC_OPT_FLAG)
		c->create_flag = true;
	else if (!strcmp(o->name, "parent") && o->type == DC_OPT_STRING)
		c->parent = true;
	else if (!strcmp(o->name, "sector") && o->type == DC_OPT_UINT)
		c->sector = true;
}

static int ctl_caps_visit(void *arg, const char *path, const struct dc_plugin *p,
			  const char *why)
{
	struct ctl_form_caps *c = arg;

	(void)path;
	(void)why;
	for (const struct dc_form *f = p ? p->forms : NULL; f && f->name; f++) {
		bool maker = false;

		for (const struct dc_option *o = f->options; o && o->name; o++)
			maker |= !strcmp(o->name, "create") || !strcmp(o->name, "parent");
		if (maker) {
			size_t n = strlen(c->makers);

			snprintf(c->makers + n, sizeof(c->makers) - n,
				 "%s%s:", n ? ", " : "", f->name);
		}
		if (c->found || strcmp(f->name, c->kind))
			continue;
		c->found = true;
		c->child = f->child;
		for (const struct dc_option *o = f->options; o && o->name; o++)
			ctl_caps_option(c, o);
	}
	return 0;
}

/* The path's format, as the core picks it for file: and bare paths
 * (docs/spec-strings.md, Format by extension). */
static const char *ctl_kind_by_extension(const char *path, size_t len)
{
	if (len >= 4 && !strncasecmp(path + len - 4, ".vhd", 4))
		return "vhd";
	if (len >= 5 && !strncasecmp(path + len - 5, ".vhdx", 5))
		return "vhdx";
	if (len >= 5 && !strncasecmp(path + len - 5, ".vmgs", 5))
		return "vhd1"; /* a VM guest state file is a fixed VHD */
	if (len >= 6 && !strncasecmp(path + len - 6, ".qcow2", 6))
		return "qcow2";
	return "file";
}

int ctl_target_parse(const char *spec, struct ctl_target *t, bool report)
{
	struct ctl_form_caps caps = { 0 };
	const struct dc_plugin *plugin;
	const char *p = spec, *path;
	size_t klen, plen;
	bool bare;

	memset(t, 0, sizeof(*t));
	klen = strcspn(p, ":;");
	/* A path as the core reads one: absolute, or without ':' but with a
	 * '/' or '.' (docs/spec-strings.md, Bare paths). */
	bare = *p == '/' ||
	       (!strchr(p, ':') && (memchr(p, '/', klen) || memchr(p, '.', klen)));
	if (bare) {
		strcpy(t->kind, "file");
	} else if (!klen || p[klen] != ':' || klen >= sizeof(t->kind)) {
		if (report)
			ctl_err("'%s': expected KIND:PATH, or a path with a '/' or a "
				"'.' (file:%s for this one)",
				spec, spec);
		return -1;
	} else {
		memcpy(t->kind, p, klen);
		p += klen + 1;
	}
	path = p;
	plen = strcspn(path, ";");
	caps.kind = t->kind;
	if (!strcmp(t->kind, "file"))
		caps.kind = ctl_kind_by_extension(path, plen);
	/* Only the kind's plugin is loaded (rbd's would pull in Ceph); every
	 * plugin only to name the makers in an error. */
	if (dc_plugin_lookup(caps.kind, &plugin) == 0)
		ctl_caps_visit(&caps, NULL, plugin, NULL);
	if (!caps.found || !(caps.create_size || caps.create_flag || caps.parent)) {
		caps.makers[0] = '\0';
		if (report) {
			dc_plugins_foreach(ctl_caps_visit, &caps);
			ctl_err("'%s': %s: images cannot be created (kinds that create: %s)",
				spec, caps.kind,
				caps.makers[0] ? caps.makers : "none installed");
		}
		return -1;
	}
	if (caps.child != DC_CHILD_NONE)
		plen = strcspn(path,
			       ";:"); /* a field ends at ':' before the inner spec */
	t->path = ctl_strdup(path);
	t->path[plen] = '\0';
	/* A leaf's options run to the end; a layer's end where its inner spec
	 * begins. */
	t->opt_at = strlen(spec);
	if (caps.child != DC_CHILD_NONE) {
		const char *colon = strchr(path + plen, ':');

		if (colon) {
			t->opt_at = (size_t)(colon - spec);
			t->has_inner = true;
		}
	}
	t->create_size = caps.create_size;
	t->create_flag = caps.create_flag;
	t->parent_opt = caps.parent;
	t->sector_opt = caps.sector;
	return 0;
}

void ctl_target_free(struct ctl_target *t)
{
	free(t->path);
	t->path = NULL;
}

/* Whether the target's file exists (a dangling link counts: the core never
 * creates through one). */
bool ctl_target_exists(const struct ctl_target *t)
{
	struct stat st;

	return lstat(t->path, &st) == 0;
}

/* --parent as a path for parent=: "vhd:X", "vhdx:X", "qcow2:X", "file:X" or
 * a path. */
static const char *ctl_parent_path(const char *parent)
{
	static const char *const kinds[] = { "file:", "vhd:", "vhd1:", "vhdx:", "qcow2:" };

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (!strncmp(parent, kinds[i], strlen(kinds[i])))
			return parent + strlen(kinds[i]);
	return parent;
}

/* Why the creating option cannot be put in as c asks, or NULL when it can. */
static const char *ctl_create_refusal(const struct ctl_create *c,
				      const struct ctl_target *t)
{
	if (c->parent && !t->parent_opt && !t->create_flag)
		return "makes no differencing image (vhd:, vhdx:, qcow2: and sqldiff: do)";
	if (c->parent && t->has_inner)
		return "the spec names the disk below already: leave out --parent";
	if (!c->parent && t->create_flag && !t->has_inner)
		return "is sized from the disk below it: give --parent SPEC";
	if (!c->parent && t->create_flag && c->size)
		return "is sized from the disk below it: leave out SIZE";
	if (!c->parent && !t->create_flag && !c->size)
		return "needs a SIZE";
	return NULL;
}

/* The spec with the creating options in: SPEC's text with ";create=SIZE",
 * ";parent=PATH" or ";create" (and ";sector=N", ";overwrite") at opt_at,
 * and for sqldiff the parent as the inner spec. */
static char *ctl_create_spec(const struct ctl_create *c, const struct ctl_target *t)
{
	size_t cap = strlen(c->spec) + (c->parent ? strlen(c->parent) : 0) + 128;
	char *out = ctl_xalloc(cap);
	int n = snprintf(out, cap, "%.*s", (int)t->opt_at, c->spec);

	if (c->parent && t->parent_opt)
		n += snprintf(out + n, cap - n, ";parent=%s", ctl_parent_path(c->parent));
	else if (t->create_flag)
		n += snprintf(out + n, cap - n, ";create");
	else
		n += snprintf(out + n, cap - n, ";create=%" PRIu64, c->size);
	if (c->sector_size && t->sector_opt && !strstr(c->spec, ";sector="))
		n += snprintf(out + n, cap - n, ";sector=%" PRIu32, c->sector_size);
	if (c->overwrite)
		n += snprintf(out + n, cap - n, ";overwrite");
	if (c->parent && t->create_flag)
		snprintf(out + n, cap - n, ":%s", c->parent);
	else
		snprintf(out + n, cap - n, "%s", c->spec + t->opt_at);
	return out;
}

/* The parent's size in bytes, read-only; 0 when it does not open (reported). */
static uint64_t ctl_parent_size(const char *parent, const struct ctl_target *t)
{
	const char *path = t->parent_opt ? ctl_parent_path(parent) : NULL;
	char *spec = NULL;
	uint64_t size = 0;
	dc_disk *d;

	if (path && path == parent && *path != '/') {
		/* A relative path is a spec only with file: in front. */
		size_t n = strlen(path) + 6;

		spec = ctl_xalloc(n);
		snprintf(spec, n, "file:%s", path);
	}
	d = ctl_open(spec ? spec : parent, DC_OPEN_READ_ONLY);
	if (d) {
		size = dc_sector_count(d) * dc_sector_size(d);
		dc_close(d);
	}
	free(spec);
	return size;
}

dc_disk *ctl_create_open(const struct ctl_create *c)
{
	struct ctl_target t;
	dc_disk *d = NULL;
	char *spec;

	const char *why;

	if (ctl_target_parse(c->spec, &t, true) < 0)
		return NULL;
	why = ctl_create_refusal(c, &t);
	if (why) {
		ctl_err("'%s': %s: %s", c->spec, t.kind, why);
		goto out;
	}
	/* The core opens an existing image of the same size unchanged; create
	 * says so instead. (A file made between this look and the open is
	 * opened, never replaced: the core's rule.) */
	if (!c->overwrite && ctl_target_exists(&t)) {
		ctl_err("%s: exists (add --overwrite to replace it)", t.path);
		goto out;
	}
	if (c->parent) {
		uint64_t psize = ctl_parent_size(c->parent, &t);

		if (!psize)
			goto out;
		if (c->size && c->size != psize) {
			ctl_err("SIZE %" PRIu64 " differs from the parent's %" PRIu64
				" bytes (a differencing image takes its parent's size)",
				c->size, psize);
			goto out;
		}
	}
	spec = ctl_create_spec(c, &t);
	d = ctl_open(spec, 0);
	free(spec);
out:
	ctl_target_free(&t);
	return d;
}

struct ctl_create_args {
	struct ctl_create c;
	bool quiet;
};

const struct ctl_opt ctl_create_opts[] = {
	CTL_OPT("parent", 0, CTL_OPT_STRING, struct ctl_create_args, c.parent, "PARENT",
		"make a differencing image over PARENT"),
	CTL_OPT("overwrite", 0, CTL_OPT_TRUE, struct ctl_create_args, c.overwrite, NULL,
		"replace an existing file (not one another open holds)"),
	CTL_OPT_QUIET(struct ctl_create_args, "print nothing on success"),
	{ 0 },
};

int ctl_create(int argc, char **argv)
{
	struct ctl_create_args a = { 0 };
	struct ctl_create *c = &a.c;
	int n;
	char **ops = ctl_parse(argc, argv, &a, &n);
	char hb[32];
	dc_disk *d;
	int rc;

	c->spec = ops[0];
	if (n == 2) {
		c->size = ctl_arg_size("SIZE", ops[1]);
		if (!c->size)
			ctl_usage("SIZE must not be 0");
	}
	d = ctl_create_open(c);
	if (!d)
		return CTL_EXIT_FAIL;
	rc = ctl_flush(d, c->spec);
	if (!rc && !a.quiet) {
		uint64_t bytes = dc_sector_count(d) * dc_sector_size(d);

		ctl_human_bytes(bytes, hb, sizeof(hb));
		printf("created %s: %" PRIu64 " bytes (%s)\n", c->spec, bytes, hb);
	}
	dc_close(d);
	return rc < 0 ? CTL_EXIT_FAIL : 0;
}
