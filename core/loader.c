/* SPDX-License-Identifier: MIT */
/* Loading one plugin file: the trust checks on it and on every directory
 * above it, dlopen, the entry call, the ABI version and the descriptor's
 * validation. registry.c decides which file serves a form and caches what
 * this returns. */
#include "internal.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bounds on descriptor lists, so an unterminated array is refused, not walked. */
#define PLUGIN_MAX_FORMS 64
#define PLUGIN_MAX_OPTIONS 64
#define PLUGIN_MAX_NAME 63

/* Plugin and form names: [a-z0-9-]+; option names may also hold '_'. */
static bool plugin_word_ok(const char *s, bool underscore)
{
	size_t n = 0;

	if (!s)
		return false;
	for (; s[n]; n++)
		if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') ||
		      s[n] == '-' || (underscore && s[n] == '_')))
			return false;
	return n > 0 && n <= PLUGIN_MAX_NAME;
}

bool dc__plugin_name_ok(const char *s)
{
	return plugin_word_ok(s, false);
}

char *dc__strfmt(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

/* Owned by root or by us, and writable by nobody else. `what` names the
 * object when it is not the plugin file itself ("directory /d is "). */
static bool plugin_owner_ok(const char *plugin, const char *what, const struct stat *st,
			    char **why)
{
	if (st->st_uid != 0 && st->st_uid != geteuid())
		*why = dc__strfmt("plugin %s: %sowned by uid %u, expected root or uid %u",
				  plugin, what, (unsigned)st->st_uid,
				  (unsigned)geteuid());
	else if (st->st_mode & (S_IWGRP | S_IWOTH))
		*why = dc__strfmt("plugin %s: %swritable by group or others (mode %04o)",
				  plugin, what, (unsigned)(st->st_mode & 07777));
	else
		return true;
	return false;
}

/* The directory of a plugin and every directory above it, checked like the
 * plugin itself: whoever can rename an ancestor can swap the plugin. A sticky
 * directory (/tmp) may be writable by all: others cannot rename our entries. */
bool dc__plugin_dir_trusted(const char *plugin, const char *dir, char **why)
{
	char what[PATH_MAX + 32], path[PATH_MAX];
	struct stat st;
	size_t len = strlen(dir);

	if (len >= sizeof(path)) {
		*why = dc__strfmt("plugin %s: directory name too long", plugin);
		return false;
	}
	memcpy(path, dir, len + 1);
	for (;;) {
		if (stat(path, &st) < 0) {
			*why = dc__strfmt("plugin %s: cannot stat directory %s: %s",
					  plugin, path, strerror(errno));
			return false;
		}
		snprintf(what, sizeof(what), "directory %s is ", path);
		if (!(st.st_mode & S_ISVTX) && !plugin_owner_ok(plugin, what, &st, why))
			return false;
		if ((st.st_mode & S_ISVTX) && st.st_uid != 0 && st.st_uid != geteuid() &&
		    !plugin_owner_ok(plugin, what, &st, why))
			return false;
		if (len <= 1)
			return true;
		/* Up one level: strip the last component. */
		while (len > 1 && path[len - 1] != '/')
			len--;
		while (len > 1 && path[len - 1] == '/')
			len--;
		path[len] = '\0';
	}
}

static const char *const plugin_op_names[DC_OP__COUNT] = {
	"read",	     "write",	    "flush",	  "unmap",	"eject",    "pr-caps",
	"pr-report", "pr-register", "pr-reserve", "pr-release", "pr-clear", "pr-preempt",
};

/* The masks must agree with the callbacks (plugin.h, "Fail closed"). */
static char *plugin_validate_ops(const char *path, const struct dc_plugin *p)
{
	const uint64_t known = DC_OP_BIT(DC_OP__COUNT) - 1;
	uint64_t both = p->ops & p->passthrough_ops;
	bool children = false;

	for (const struct dc_form *f = p->forms; f->name; f++)
		children = children || f->child != DC_CHILD_NONE;
	if ((p->ops | p->passthrough_ops) & ~known)
		return dc__strfmt(
			"plugin %s: ops name op bit %d, which this core does "
			"not know",
			path, __builtin_ctzll((p->ops | p->passthrough_ops) & ~known));
	if (both)
		return dc__strfmt("plugin %s: op '%s' is both handled and passed through",
				  path, plugin_op_names[__builtin_ctzll(both)]);
	if (p->ops && !p->submit && !p->io)
		return dc__strfmt("plugin %s: handles op '%s' but has neither a submit "
				  "nor an io callback",
				  path, plugin_op_names[__builtin_ctzll(p->ops)]);
	if (!p->ops && (p->submit || p->io))
		return dc__strfmt("plugin %s: has a submit or io callback but handles "
				  "no op (ops is 0)",
				  path);
	if (p->passthrough_ops && !children)
		return dc__strfmt("plugin %s: passes op '%s' through but no form of it "
				  "has a child",
				  path,
				  plugin_op_names[__builtin_ctzll(p->passthrough_ops)]);
	if ((p->ops & DC_OPS_PR) && (p->ops & DC_OPS_PR) != DC_OPS_PR)
		return dc__strfmt("plugin %s: handles some persistent-reservation ops "
				  "but not '%s'",
				  path,
				  plugin_op_names[__builtin_ctzll(~p->ops & DC_OPS_PR)]);
	if (p->queue_poll && !p->submit)
		return dc__strfmt("plugin %s: has queue_poll but no submit callback",
				  path);
	if (!p->queue_open != !p->queue_close)
		return dc__strfmt("plugin %s: queue_open and queue_close come in pairs",
				  path);
	if (p->kind == DC_KIND_LAYER && !(p->ops & DC_OP_BIT(DC_OP_READ)))
		return dc__strfmt("plugin %s: a layer must handle 'read'", path);
	return NULL;
}

/* Check the descriptor the core copied; returns a refusal or NULL. */
static char *plugin_validate(const char *path, const struct dc_plugin *p)
{
	const struct dc_form *f;
	const struct dc_option *o;
	unsigned i, j;

	if (!dc__plugin_name_ok(p->name))
		return dc__strfmt("plugin %s: invalid plugin name '%s' (expected "
				  "[a-z0-9-]+)",
				  path, p->name ? p->name : "(null)");
	if (p->kind < DC_KIND_BACKEND || p->kind > DC_KIND_LAYER)
		return dc__strfmt("plugin %s: invalid kind %u", path, p->kind);
	if (!p->forms || !p->forms[0].name)
		return dc__strfmt("plugin %s: claims no spec forms", path);
	for (i = 0, f = p->forms; f->name; i++, f++) {
		if (i == PLUGIN_MAX_FORMS)
			return dc__strfmt("plugin %s: more than %d forms (is the list "
					  "NULL-terminated?)",
					  path, PLUGIN_MAX_FORMS);
		if (!dc__plugin_name_ok(f->name))
			return dc__strfmt("plugin %s: form %u: invalid name '%s' "
					  "(expected [a-z0-9-]+)",
					  path, i + 1, f->name);
		if (f->child > DC_CHILD_LIST)
			return dc__strfmt("plugin %s: form '%s': invalid child value %u",
					  path, f->name, f->child);
		if (f->flags &
		    ~(DC_FORM_READ_CACHE | DC_FORM_WRITE_THROUGH | DC_FORM_TAIL_OPTIONS))
			return dc__strfmt("plugin %s: form '%s': unknown flags %#x", path,
					  f->name, f->flags);
		if ((f->flags & DC_FORM_TAIL_OPTIONS) && f->child != DC_CHILD_NONE)
			return dc__strfmt(
				"plugin %s: form '%s': tail options need a leaf "
				"form",
				path, f->name);
		if (f->reserved[0] || f->reserved[1])
			return dc__strfmt("plugin %s: form '%s': reserved fields are not "
					  "zero",
					  path, f->name);
		for (j = 0, o = f->options; o && o->name; j++, o++) {
			if (j == PLUGIN_MAX_OPTIONS)
				return dc__strfmt("plugin %s: form '%s': more than %d "
						  "options",
						  path, f->name, PLUGIN_MAX_OPTIONS);
			if (!plugin_word_ok(o->name, true))
				return dc__strfmt("plugin %s: form '%s': invalid option "
						  "name '%s'",
						  path, f->name, o->name);
			if (o->type < DC_OPT_FLAG || o->type > DC_OPT_UINT)
				return dc__strfmt("plugin %s: form '%s': option '%s' has "
						  "invalid type %u",
						  path, f->name, o->name, o->type);
			if (o->reserved[0] || o->reserved[1])
				return dc__strfmt("plugin %s: form '%s': option '%s': "
						  "reserved fields are not zero",
						  path, f->name, o->name);
		}
	}
	if (!p->open)
		return dc__strfmt("plugin %s: no open callback", path);
	if (!p->submit && !p->io)
		return dc__strfmt("plugin %s: neither a submit nor an io callback", path);
	return plugin_validate_ops(path, p);
}

/* The trust checks on the plugin file at real: a regular file, owned as
 * plugin_owner_ok() wants, in a trusted directory. */
static int plugin_file_trusted(const char *real, char **why)
{
	struct stat st;
	char *dir;
	bool ok;

	if (stat(real, &st) < 0) {
		int err = errno;

		*why = dc__strfmt("plugin %s: %s", real, strerror(err));
		return -err;
	}
	if (!S_ISREG(st.st_mode)) {
		*why = dc__strfmt("plugin %s: not a regular file", real);
		return -EPERM;
	}
	if (!plugin_owner_ok(real, "", &st, why))
		return -EPERM;
	dir = strdup(real);
	if (!dir)
		return -ENOMEM;
	*strrchr(dir, '/') = '\0';
	ok = dc__plugin_dir_trusted(real, dir[0] ? dir : "/", why);
	free(dir);
	return ok ? 0 : -EPERM;
}

typedef const struct dc_plugin *(*plugin_entry_fn)(struct dc_plugin_abi *);

/* dlopen the plugin file at real and find its entry point. */
static int plugin_entry(const char *real, plugin_entry_fn *entry, char **why)
{
	void *h = dlopen(real, RTLD_NOW | RTLD_LOCAL);

	if (!h) {
		*why = dc__strfmt("plugin %s: cannot load: %s", real, dlerror());
		return -ENOEXEC;
	}
	*entry = (plugin_entry_fn)dlsym(h, DC_PLUGIN_ENTRY_NAME);
	if (!*entry && dlsym(h, "diskcore_plugin_init")) {
		/* Its forms table and thread rules differ: loading it would be
		 * undefined behaviour, not compatibility (docs/abi.md). */
		*why = dc__strfmt("plugin %s: built against the pre-release plugin ABI "
				  "(diskcore 0.x); rebuild it against diskcore %d.%d",
				  real, DC_ABI_MAJOR, DC_ABI_MINOR);
		return -ENOEXEC;
	}
	if (!*entry) {
		*why = dc__strfmt("plugin %s: no entry symbol " DC_PLUGIN_ENTRY_NAME,
				  real);
		return -ENOEXEC;
	}
	return 0;
}

/* What the entry call returned: a descriptor, for an ABI this core speaks, at
 * least as long as its fields up to open. */
static int plugin_abi_ok(const char *real, const struct dc_plugin *d,
			 const struct dc_plugin_abi *abi, char **why)
{
	const size_t min_size = offsetof(struct dc_plugin, open) + sizeof(void *);

	if (!d)
		*why = dc__strfmt("plugin %s: " DC_PLUGIN_ENTRY_NAME
				  " returned no descriptor",
				  real);
	else if (abi->abi_major != DC_ABI_MAJOR)
		*why = dc__strfmt("plugin %s: built for ABI %u.x, this core speaks %u.x",
				  real, abi->abi_major, DC_ABI_MAJOR);
	else if (abi->abi_minor > DC_ABI_MINOR)
		*why = dc__strfmt("plugin %s: built for ABI %u.%u, newer than this "
				  "core's %u.%u",
				  real, abi->abi_major, abi->abi_minor, DC_ABI_MAJOR,
				  DC_ABI_MINOR);
	else if (abi->struct_size < min_size)
		*why = dc__strfmt("plugin %s: malformed descriptor (struct_size %u, "
				  "at least %zu expected)",
				  real, abi->struct_size, min_size);
	else
		return 0;
	return -ENOEXEC;
}

/* Trust checks, dlopen, entry call and validation of the plugin file at real
 * (a resolved path), into desc: the core's copy of its descriptor. Returns 0,
 * or -errno with the refusal in *why (left NULL only when out of memory). A
 * library once opened is never closed: its code may have run. */
int dc__plugin_load(const char *real, struct dc_plugin *desc, char **why)
{
	struct dc_plugin_abi abi = { 0 };
	const struct dc_plugin *d;
	plugin_entry_fn entry = NULL;
	int rc = plugin_file_trusted(real, why);

	if (rc == 0)
		rc = plugin_entry(real, &entry, why);
	if (rc < 0)
		return rc;
	d = entry(&abi);
	rc = plugin_abi_ok(real, d, &abi, why);
	if (rc < 0)
		return rc;
	/* An older plugin's descriptor is shorter: the rest stays zero. */
	memset(desc, 0, sizeof(*desc));
	memcpy(desc, d,
	       abi.struct_size < sizeof(*desc) ? abi.struct_size : sizeof(*desc));
	desc->struct_size = abi.struct_size;
	desc->abi_major = abi.abi_major;
	desc->abi_minor = abi.abi_minor;
	if ((*why = plugin_validate(real, desc)))
		return -ENOEXEC;
	dc_debug("loaded plugin %s (%s %s)", real, desc->name,
		 desc->version ? desc->version : "");
	return 0;
}
