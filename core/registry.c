/* SPDX-License-Identifier: MIT */
/* Plugin discovery and trust. A spec form F is served by F.so in the first
 * directory of the search path that holds one (a plugin's alias forms are
 * FORM.so symlinks): a lookup never loads a file that is not named after the
 * form, nor an F.so that an earlier directory shadows. Before dlopen the file, its directory
 * and every directory above must be owned by root or by us and writable by
 * nobody else; loaded plugins stay loaded for the life of the process. */
#include "internal.h"
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bounds on descriptor lists, so an unterminated array is refused, not walked. */
#define REG_MAX_FORMS 64
#define REG_MAX_OPTIONS 64
#define REG_MAX_NAME 63

/* One plugin file, keyed by its real path, loaded or refused. */
struct reg_entry {
	char *real;
	char *why; /* NULL when loaded */
	int err;
	struct dc_plugin desc; /* the core's copy, zero-filled past struct_size */
	struct reg_entry *next;
};

struct reg_dirs {
	char **v;
	size_t n;
};

/* A plugin file found on the path. */
struct reg_found {
	char *path;
	char *real;
	const struct reg_entry *entry; /* NULL: refused before loading */
	char *why;		       /* that refusal */
	int err;
};

struct reg_list {
	struct reg_found *v;
	size_t n;
	size_t cap;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct reg_entry *reg_cache;
/* Every string dc_plugin_path() returned; kept so the pointers stay valid. */
struct reg_pathstr {
	char *s;
	struct reg_pathstr *next;
};
static struct reg_pathstr *reg_paths;

static const char *reg_path_locked(void);

/* Plugin and form names: [a-z0-9-]+; option names may also hold '_'. */
static bool reg_word_ok(const char *s, bool underscore)
{
	size_t n = 0;

	if (!s)
		return false;
	for (; s[n]; n++)
		if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') ||
		      s[n] == '-' || (underscore && s[n] == '_')))
			return false;
	return n > 0 && n <= REG_MAX_NAME;
}

static bool reg_name_ok(const char *s)
{
	return reg_word_ok(s, false);
}

static char *__attribute__((format(printf, 1, 2))) reg_fmt(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

static void reg_dirs_free(struct reg_dirs *d)
{
	size_t i;

	for (i = 0; i < d->n; i++)
		free(d->v[i]);
	free(d->v);
	d->v = NULL;
	d->n = 0;
}

static int reg_dirs_add(struct reg_dirs *d, const char *dir, size_t len)
{
	char **v;

	/* Only absolute directories: never the current directory by accident. */
	if (!len || dir[0] != '/')
		return 0;
	/* "/a/b/" and "/a/b" name the same directory. */
	while (len > 1 && dir[len - 1] == '/')
		len--;
	/* A directory listed twice is searched once, at its first place. */
	for (size_t i = 0; i < d->n; i++)
		if (strlen(d->v[i]) == len && strncmp(d->v[i], dir, len) == 0)
			return 0;
	v = realloc(d->v, (d->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	d->v = v;
	d->v[d->n] = strndup(dir, len);
	if (!d->v[d->n])
		return -ENOMEM;
	d->n++;
	return 0;
}

/* The search path (docs/plugin-guide.md, "Install it where the core looks"):
 * unset or empty $DISKCORE_PLUGIN_PATH means the built-in directory alone; set,
 * its directories replace it, and an empty element ("/a:", ":/a", "/a::/b")
 * stands for the built-in directory at that place, as in MANPATH. A build
 * tree's tests then load the build's plugins only, whatever is installed. */
static int reg_dirs_get(struct reg_dirs *d)
{
	/* Not in a setuid or setgid host: its caller must not pick its code. */
	const char *env = secure_getenv("DISKCORE_PLUGIN_PATH");
	int r = 0;

	d->v = NULL;
	d->n = 0;
	if (!env || !*env)
		env = ""; /* one empty element: the built-in directory */
	for (;;) {
		size_t len = strcspn(env, ":");

		r = len ? reg_dirs_add(d, env, len) :
			  reg_dirs_add(d, DC_PLUGINDIR, strlen(DC_PLUGINDIR));
		if (r < 0 || !env[len])
			break;
		env += len + 1;
	}
	if (r < 0)
		reg_dirs_free(d);
	return r;
}

/* Owned by root or by us, and writable by nobody else. `what` names the
 * object when it is not the plugin file itself ("directory /d is "). */
static bool reg_check_owner(const char *plugin, const char *what, const struct stat *st,
			    char **why)
{
	if (st->st_uid != 0 && st->st_uid != geteuid())
		*why = reg_fmt("plugin %s: %sowned by uid %u, expected root or uid %u",
			       plugin, what, (unsigned)st->st_uid, (unsigned)geteuid());
	else if (st->st_mode & (S_IWGRP | S_IWOTH))
		*why = reg_fmt("plugin %s: %swritable by group or others (mode %04o)",
			       plugin, what, (unsigned)(st->st_mode & 07777));
	else
		return true;
	return false;
}

/* The directory of a plugin and every directory above it, checked like the
 * plugin itself: whoever can rename an ancestor can swap the plugin. A sticky
 * directory (/tmp) may be writable by all: others cannot rename our entries. */
static bool reg_check_dir(const char *plugin, const char *dir, char **why)
{
	char what[PATH_MAX + 32], path[PATH_MAX];
	struct stat st;
	size_t len = strlen(dir);

	if (len >= sizeof(path)) {
		*why = reg_fmt("plugin %s: directory name too long", plugin);
		return false;
	}
	memcpy(path, dir, len + 1);
	for (;;) {
		if (stat(path, &st) < 0) {
			*why = reg_fmt("plugin %s: cannot stat directory %s: %s", plugin,
				       path, strerror(errno));
			return false;
		}
		snprintf(what, sizeof(what), "directory %s is ", path);
		if (!(st.st_mode & S_ISVTX) && !reg_check_owner(plugin, what, &st, why))
			return false;
		if ((st.st_mode & S_ISVTX) && st.st_uid != 0 && st.st_uid != geteuid() &&
		    !reg_check_owner(plugin, what, &st, why))
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

static const char *const reg_op_names[DC_OP__COUNT] = {
	"read",	     "write",	    "flush",	  "unmap",	"eject",    "pr-caps",
	"pr-report", "pr-register", "pr-reserve", "pr-release", "pr-clear", "pr-preempt",
};

/* The masks must agree with the callbacks (plugin.h, "Fail closed"). */
static char *reg_validate_ops(const char *path, const struct dc_plugin *p)
{
	const uint64_t known = DC_OP_BIT(DC_OP__COUNT) - 1;
	uint64_t both = p->ops & p->passthrough_ops;
	bool children = false;

	for (const struct dc_form *f = p->forms; f->name; f++)
		children = children || f->child != DC_CHILD_NONE;
	if ((p->ops | p->passthrough_ops) & ~known)
		return reg_fmt("plugin %s: ops name op bit %d, which this core does "
			       "not know",
			       path,
			       __builtin_ctzll((p->ops | p->passthrough_ops) & ~known));
	if (both)
		return reg_fmt("plugin %s: op '%s' is both handled and passed through",
			       path, reg_op_names[__builtin_ctzll(both)]);
	if (p->ops && !p->submit && !p->io)
		return reg_fmt("plugin %s: handles op '%s' but has neither a submit "
			       "nor an io callback",
			       path, reg_op_names[__builtin_ctzll(p->ops)]);
	if (!p->ops && (p->submit || p->io))
		return reg_fmt("plugin %s: has a submit or io callback but handles "
			       "no op (ops is 0)",
			       path);
	if (p->passthrough_ops && !children)
		return reg_fmt("plugin %s: passes op '%s' through but no form of it "
			       "has a child",
			       path, reg_op_names[__builtin_ctzll(p->passthrough_ops)]);
	if ((p->ops & DC_OPS_PR) && (p->ops & DC_OPS_PR) != DC_OPS_PR)
		return reg_fmt("plugin %s: handles some persistent-reservation ops "
			       "but not '%s'",
			       path, reg_op_names[__builtin_ctzll(~p->ops & DC_OPS_PR)]);
	if (p->queue_poll && !p->submit)
		return reg_fmt("plugin %s: has queue_poll but no submit callback", path);
	if (!p->queue_open != !p->queue_close)
		return reg_fmt("plugin %s: queue_open and queue_close come in pairs",
			       path);
	if (p->kind == DC_KIND_LAYER && !(p->ops & DC_OP_BIT(DC_OP_READ)))
		return reg_fmt("plugin %s: a layer must handle 'read'", path);
	return NULL;
}

/* Check the descriptor the core copied; returns a refusal or NULL. */
static char *reg_validate(const char *path, const struct dc_plugin *p)
{
	const struct dc_form *f;
	const struct dc_option *o;
	unsigned i, j;

	if (!reg_name_ok(p->name))
		return reg_fmt("plugin %s: invalid plugin name '%s' (expected "
			       "[a-z0-9-]+)",
			       path, p->name ? p->name : "(null)");
	if (p->kind < DC_KIND_BACKEND || p->kind > DC_KIND_LAYER)
		return reg_fmt("plugin %s: invalid kind %u", path, p->kind);
	if (!p->forms || !p->forms[0].name)
		return reg_fmt("plugin %s: claims no spec forms", path);
	for (i = 0, f = p->forms; f->name; i++, f++) {
		if (i == REG_MAX_FORMS)
			return reg_fmt("plugin %s: more than %d forms (is the list "
				       "NULL-terminated?)",
				       path, REG_MAX_FORMS);
		if (!reg_name_ok(f->name))
			return reg_fmt("plugin %s: form %u: invalid name '%s' "
				       "(expected [a-z0-9-]+)",
				       path, i + 1, f->name);
		if (f->child > DC_CHILD_LIST)
			return reg_fmt("plugin %s: form '%s': invalid child value %u",
				       path, f->name, f->child);
		if (f->flags &
		    ~(DC_FORM_READ_CACHE | DC_FORM_WRITE_THROUGH | DC_FORM_TAIL_OPTIONS))
			return reg_fmt("plugin %s: form '%s': unknown flags %#x", path,
				       f->name, f->flags);
		if ((f->flags & DC_FORM_TAIL_OPTIONS) && f->child != DC_CHILD_NONE)
			return reg_fmt("plugin %s: form '%s': tail options need a leaf "
				       "form",
				       path, f->name);
		if (f->reserved[0] || f->reserved[1])
			return reg_fmt("plugin %s: form '%s': reserved fields are not "
				       "zero",
				       path, f->name);
		for (j = 0, o = f->options; o && o->name; j++, o++) {
			if (j == REG_MAX_OPTIONS)
				return reg_fmt("plugin %s: form '%s': more than %d "
					       "options",
					       path, f->name, REG_MAX_OPTIONS);
			if (!reg_word_ok(o->name, true))
				return reg_fmt("plugin %s: form '%s': invalid option "
					       "name '%s'",
					       path, f->name, o->name);
			if (o->type < DC_OPT_FLAG || o->type > DC_OPT_UINT)
				return reg_fmt("plugin %s: form '%s': option '%s' has "
					       "invalid type %u",
					       path, f->name, o->name, o->type);
			if (o->reserved[0] || o->reserved[1])
				return reg_fmt("plugin %s: form '%s': option '%s': "
					       "reserved fields are not zero",
					       path, f->name, o->name);
		}
	}
	if (!p->open)
		return reg_fmt("plugin %s: no open callback", path);
	if (!p->submit && !p->io)
		return reg_fmt("plugin %s: neither a submit nor an io callback", path);
	return reg_validate_ops(path, p);
}

/* Trust checks, dlopen, entry call, validation. Sets e->why and e->err on
 * refusal. A library once opened is never closed: its code may have run. */
static void reg_open(struct reg_entry *e)
{
	const struct dc_plugin *(*entry)(struct dc_plugin_abi *);
	struct dc_plugin_abi abi = { 0 };
	const struct dc_plugin *d;
	const size_t min_size = offsetof(struct dc_plugin, open) + sizeof(void *);
	struct stat st;
	char *dir;
	bool ok;
	void *h;

	e->err = -EPERM;
	if (stat(e->real, &st) < 0) {
		e->err = -errno;
		e->why = reg_fmt("plugin %s: %s", e->real, strerror(errno));
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		e->why = reg_fmt("plugin %s: not a regular file", e->real);
		return;
	}
	if (!reg_check_owner(e->real, "", &st, &e->why))
		return;
	dir = strdup(e->real);
	if (!dir) {
		e->err = -ENOMEM;
		return;
	}
	*strrchr(dir, '/') = '\0';
	ok = reg_check_dir(e->real, dir[0] ? dir : "/", &e->why);
	free(dir);
	if (!ok)
		return;

	e->err = -ENOEXEC;
	h = dlopen(e->real, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		e->why = reg_fmt("plugin %s: cannot load: %s", e->real, dlerror());
		return;
	}
	entry = (const struct dc_plugin *(*)(struct dc_plugin_abi *))dlsym(
		h, DC_PLUGIN_ENTRY_NAME);
	if (!entry && dlsym(h, "diskcore_plugin_init")) {
		/* Its forms table and thread rules differ: loading it would be
		 * undefined behaviour, not compatibility (docs/abi.md). */
		e->why = reg_fmt("plugin %s: built against the pre-release plugin ABI "
				 "(diskcore 0.x); rebuild it against diskcore %d.%d",
				 e->real, DC_ABI_MAJOR, DC_ABI_MINOR);
		return;
	}
	if (!entry) {
		e->why = reg_fmt("plugin %s: no entry symbol " DC_PLUGIN_ENTRY_NAME,
				 e->real);
		return;
	}
	d = entry(&abi);
	if (!d) {
		e->why = reg_fmt("plugin %s: " DC_PLUGIN_ENTRY_NAME
				 " returned no descriptor",
				 e->real);
		return;
	}
	if (abi.abi_major != DC_ABI_MAJOR) {
		e->why = reg_fmt("plugin %s: built for ABI %u.x, this core speaks %u.x",
				 e->real, abi.abi_major, DC_ABI_MAJOR);
		return;
	}
	if (abi.abi_minor > DC_ABI_MINOR) {
		e->why = reg_fmt("plugin %s: built for ABI %u.%u, newer than this "
				 "core's %u.%u",
				 e->real, abi.abi_major, abi.abi_minor, DC_ABI_MAJOR,
				 DC_ABI_MINOR);
		return;
	}
	if (abi.struct_size < min_size) {
		e->why = reg_fmt("plugin %s: malformed descriptor (struct_size %u, "
				 "at least %zu expected)",
				 e->real, abi.struct_size, min_size);
		return;
	}
	/* An older plugin's descriptor is shorter: the rest stays zero. */
	memcpy(&e->desc, d,
	       abi.struct_size < sizeof(e->desc) ? abi.struct_size : sizeof(e->desc));
	e->desc.struct_size = abi.struct_size;
	e->desc.abi_major = abi.abi_major;
	e->desc.abi_minor = abi.abi_minor;
	if ((e->why = reg_validate(e->real, &e->desc)))
		return;
	e->err = 0;
	dc_debug("loaded plugin %s (%s %s)", e->real, e->desc.name,
		 e->desc.version ? e->desc.version : "");
}

/* The cached entry for a real path, loading it on first use. Lock held. */
static struct reg_entry *reg_load(const char *real)
{
	struct reg_entry *e;

	for (e = reg_cache; e; e = e->next)
		if (strcmp(e->real, real) == 0)
			return e;
	e = calloc(1, sizeof(*e));
	if (!e || !(e->real = strdup(real))) {
		free(e);
		return NULL;
	}
	reg_open(e);
	if (e->err && !e->why) {
		free(e->real);
		free(e);
		return NULL; /* out of memory: do not cache */
	}
	if (e->err)
		dc_debug("%s", e->why);
	e->next = reg_cache;
	reg_cache = e;
	return e;
}

static void reg_list_free(struct reg_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++) {
		free(l->v[i].path);
		free(l->v[i].real);
		free(l->v[i].why);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* A new item for dir/name at the end of l, or NULL when out of memory. */
static struct reg_found *reg_list_add(struct reg_list *l, const char *dir,
				      const char *name)
{
	struct reg_found *f;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		void *v = realloc(l->v, cap * sizeof(*l->v));

		if (!v)
			return NULL;
		l->v = v;
		l->cap = cap;
	}
	f = &l->v[l->n];
	memset(f, 0, sizeof(*f));
	f->path = reg_fmt("%s/%s", dir, name);
	if (!f->path)
		return NULL;
	l->n++;
	return f;
}

/* Within one directory each form has one plugin: every form of p whose
 * FORM.so is in dir must be p's own file (real). Two files of a directory that
 * claim a form are an installation error, whichever one a lookup opened. */
static int reg_check_siblings(const char *dir, const char *path, const char *real,
			      const struct dc_plugin *p, char **why)
{
	char other[PATH_MAX];

	for (const struct dc_form *f = p->forms; f->name; f++) {
		char *sib = reg_fmt("%s/%s.so", dir, f->name);
		bool clash;

		if (!sib)
			return -ENOMEM;
		clash = realpath(sib, other) && strcmp(other, real) != 0;
		if (clash)
			*why = reg_fmt("two plugins in %s claim '%s': %s and %s; remove "
				       "one of them",
				       dir, f->name, sib, path);
		free(sib);
		if (clash)
			return *why ? -EEXIST : -ENOMEM;
	}
	return 0;
}

/* Check and load dir/name; append the outcome to l. The search directory is
 * checked too: the directory a name lives in decides what the name means,
 * even when it is a symlink to elsewhere. */
static int reg_find(struct reg_list *l, const char *dir, const char *name)
{
	struct reg_found *f = reg_list_add(l, dir, name);
	char real[PATH_MAX];

	if (!f)
		return -ENOMEM;
	if (!realpath(f->path, real)) {
		f->err = -errno;
		f->why = reg_fmt("plugin %s: %s", f->path, strerror(errno));
	} else if (!(f->real = strdup(real))) {
		return -ENOMEM;
	} else if (!reg_check_dir(f->path, dir, &f->why)) {
		f->err = -EPERM;
	} else if (!(f->entry = reg_load(real))) {
		return -ENOMEM;
	} else if (!f->entry->err) {
		f->err = reg_check_siblings(dir, f->path, real, &f->entry->desc, &f->why);
		if (f->err == -ENOMEM)
			return -ENOMEM;
	}
	if (f->err && !f->why)
		return -ENOMEM;
	return 0;
}

/* Files shadowed by an earlier directory's file of the same name, each
 * warned about once per process. */
static struct reg_pathstr *reg_warned;

/* The first directory on the path wins: warn on stderr (a lookup succeeds,
 * so dc_last_error() is not the place), naming both files. Lock held. */
static void reg_warn_shadowed(const char *name, const char *used, const char *ignored)
{
	struct reg_pathstr *w;

	for (w = reg_warned; w; w = w->next)
		if (strcmp(w->s, ignored) == 0)
			return;
	w = calloc(1, sizeof(*w));
	if (w && (w->s = strdup(ignored))) {
		w->next = reg_warned;
		reg_warned = w;
	} else {
		free(w);
	}
	fprintf(stderr,
		"diskcore: warning: two plugins claim '%s': %s and %s; using %s, "
		"the first on the plugin search path\n",
		name, used, ignored, used);
}

static int reg_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool reg_is_so(const char *name)
{
	size_t n = strlen(name);

	return name[0] != '.' && n > 3 && strcmp(name + n - 3, ".so") == 0;
}

/* The *.so names in dir, sorted. */
static int reg_listdir(const char *dir, char ***out, size_t *count)
{
	DIR *dp = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;
	int r = 0;

	*out = NULL;
	*count = 0;
	if (!dp)
		return 0;
	while (r == 0 && (de = readdir(dp))) {
		if (!reg_is_so(de->d_name))
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			void *v = realloc(names, ncap * sizeof(*names));

			if (!v) {
				r = -ENOMEM;
				break;
			}
			names = v;
			cap = ncap;
		}
		if (!(names[n] = strdup(de->d_name)))
			r = -ENOMEM;
		else
			n++;
	}
	closedir(dp);
	if (n)
		qsort(names, n, sizeof(*names), reg_cmp);
	*out = names;
	*count = n;
	return r;
}

/* dir/name, where an earlier directory holds a file of that name: the same
 * file (a symlink) is the same plugin; another file is never loaded, and is
 * listed as not used, with a warning. */
static int reg_find_again(struct reg_list *l, const struct reg_found *first,
			  const char *dir, const char *name)
{
	const char *used = first->path, *used_real = first->real;
	char real[PATH_MAX], *kind;
	struct reg_found *f;
	struct stat st;

	f = reg_list_add(l, dir, name); /* may move first */
	if (!f)
		return -ENOMEM;
	if (realpath(f->path, real) && used_real && strcmp(real, used_real) == 0) {
		l->n--;
		free(f->path);
		return reg_find(l, dir, name);
	}
	/* A shadowed FORM.so link is an alias of a shadowed plugin, which is
	 * listed under its own name: once is enough. */
	if (lstat(f->path, &st) == 0 && S_ISLNK(st.st_mode)) {
		l->n--;
		free(f->path);
		return 0;
	}
	f->err = -EEXIST;
	f->why = reg_fmt("plugin %s: not used: %s, earlier on the search path, has "
			 "its name",
			 f->path, used);
	kind = strndup(name, strlen(name) - 3);
	if (!f->why || !kind) {
		free(kind);
		return -ENOMEM;
	}
	reg_warn_shadowed(kind, used, f->path);
	free(kind);
	return 0;
}

/* The item of l for a file called name, or NULL. */
static const struct reg_found *reg_named(const struct reg_list *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(strrchr(l->v[i].path, '/') + 1, name) == 0)
			return &l->v[i];
	return NULL;
}

/* Every *.so of every search directory, sorted within a directory. */
static int reg_scan(const struct reg_dirs *dirs, struct reg_list *l)
{
	const struct reg_found *first;
	size_t i, j, n;
	char **names;
	int r = 0;

	for (i = 0; i < dirs->n && r == 0; i++) {
		r = reg_listdir(dirs->v[i], &names, &n);
		for (j = 0; j < n; j++) {
			if (r == 0 && (first = reg_named(l, names[j])))
				r = reg_find_again(l, first, dirs->v[i], names[j]);
			else if (r == 0)
				r = reg_find(l, dirs->v[i], names[j]);
			free(names[j]);
		}
		free(names);
	}
	return r;
}

static bool reg_claims(const struct reg_entry *e, const char *form)
{
	return e && !e->err && dc__plugin_form(&e->desc, form);
}

/* "invalid disk kind 'foo'; known kinds: a, b, c". The kinds are the FORM.so
 * names on the path: nothing is loaded to say so. */
static int reg_unknown(const char *name, const struct reg_dirs *dirs)
{
	char **kinds = NULL, **names;
	size_t nk = 0, n, i, j, len = 0;
	char *msg = NULL;
	FILE *m = open_memstream(&msg, &len);
	int r = -ENOMEM;

	if (!m)
		return r;
	for (i = 0; i < dirs->n; i++) {
		if (reg_listdir(dirs->v[i], &names, &n) < 0)
			goto out;
		for (j = 0; j < n; j++) {
			char **k = realloc(kinds, (nk + 1) * sizeof(*kinds));

			if (!k) {
				for (; j < n; j++)
					free(names[j]);
				free(names);
				goto out;
			}
			kinds = k;
			names[j][strlen(names[j]) - 3] = '\0';
			kinds[nk++] = names[j];
		}
		free(names);
	}
	if (nk)
		qsort(kinds, nk, sizeof(*kinds), reg_cmp);
	fprintf(m, "invalid disk kind '%s'; ", name);
	if (!nk)
		fprintf(m, "no plugins found (searched %s)", reg_path_locked());
	else
		fputs("known kinds: ", m);
	for (i = 0; i < nk; i++)
		if (!i || strcmp(kinds[i], kinds[i - 1]) != 0)
			fprintf(m, "%s%s", i ? ", " : "", kinds[i]);
	if (fflush(m) == 0) {
		dc__error_raw("%s", msg);
		r = -ENOENT;
	}
out:
	fclose(m);
	free(msg);
	for (i = 0; i < nk; i++)
		free(kinds[i]);
	free(kinds);
	return r;
}

/* Look for name.so in each directory: the first that holds one decides, and
 * a different file of that name further on is only warned about, never
 * loaded. Returns 1 with *out set when found and claiming the form, 0 when
 * there is none (or it does not claim it). */
static int reg_lookup_direct(const struct reg_dirs *dirs, const char *name,
			     const struct reg_entry **out)
{
	struct reg_list l = { 0 };
	char *file = reg_fmt("%s.so", name), real[PATH_MAX];
	size_t i;
	int r = 0;

	if (!file)
		return -ENOMEM;
	for (i = 0; i < dirs->n && r == 0; i++) {
		char *path = reg_fmt("%s/%s", dirs->v[i], file);
		struct stat st;

		if (!path)
			r = -ENOMEM;
		else if (stat(path, &st) != 0)
			; /* not here */
		else if (!l.n)
			r = reg_find(&l, dirs->v[i], file);
		else if (!realpath(path, real) || !l.v[0].real ||
			 strcmp(real, l.v[0].real))
			reg_warn_shadowed(name, l.v[0].path, path);
		free(path);
	}
	if (r == 0 && l.n) {
		const struct reg_found *f = &l.v[0];

		if (f->why) {
			dc__error_raw("%s", f->why);
			r = f->err;
		} else if (f->entry->why) {
			dc__error_raw("%s", f->entry->why);
			r = f->entry->err;
		} else if (reg_claims(f->entry, name)) {
			*out = f->entry;
			r = 1;
		}
	}
	reg_list_free(&l);
	free(file);
	return r;
}

int dc__registry_lookup(const char *name, const struct dc_plugin **plugin,
			const struct dc_form **form)
{
	const struct reg_entry *found = NULL;
	struct reg_dirs dirs;
	int r;

	pthread_mutex_lock(&reg_lock);
	r = reg_dirs_get(&dirs);
	/* Only a well-formed name may become a file name. */
	if (r == 0 && reg_name_ok(name))
		r = reg_lookup_direct(&dirs, name, &found);
	if (r == 0)
		r = reg_unknown(name ? name : "", &dirs);
	if (r > 0) {
		*plugin = &found->desc;
		*form = dc__plugin_form(&found->desc, name);
		r = 0;
	}
	reg_dirs_free(&dirs);
	pthread_mutex_unlock(&reg_lock);
	if (r == -ENOMEM)
		dc__error_raw("out of memory looking up plugin '%s'", name);
	return r;
}

const struct dc_form *dc__plugin_form(const struct dc_plugin *p, const char *name)
{
	const struct dc_form *f;

	if (!p || !p->forms || !name)
		return NULL;
	for (f = p->forms; f->name; f++)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

/* Is item i a symlink to a plugin file that the list also holds? */
static bool reg_is_alias(const struct reg_list *l, size_t i)
{
	struct stat st;

	if (lstat(l->v[i].path, &st) < 0 || !S_ISLNK(st.st_mode))
		return false;
	for (size_t j = 0; j < l->n; j++)
		if (j != i && l->v[j].entry == l->v[i].entry &&
		    lstat(l->v[j].path, &st) == 0 && !S_ISLNK(st.st_mode))
			return true;
	return false;
}

DC_EXPORT int dc_plugins_foreach(dc_plugin_visit_fn visit, void *arg)
{
	struct reg_dirs dirs;
	struct reg_list l = { 0 };
	size_t i;
	int r;

	pthread_mutex_lock(&reg_lock);
	r = reg_dirs_get(&dirs);
	if (r == 0)
		r = reg_scan(&dirs, &l);
	reg_dirs_free(&dirs);
	pthread_mutex_unlock(&reg_lock);
	if (r < 0) {
		reg_list_free(&l);
		dc__error_raw("out of memory listing plugins");
		return r;
	}
	/* Unlocked: the visitor may open disks. Entries are never freed. */
	for (i = 0; i < l.n && r == 0; i++) {
		const struct reg_entry *e = l.v[i].entry;

		/* FORM.so -> NAME.so links are lookup shortcuts: list the plugin once. */
		if (e && reg_is_alias(&l, i))
			continue;
		r = visit(arg, l.v[i].path, e && !e->err && !l.v[i].err ? &e->desc : NULL,
			  l.v[i].why ? l.v[i].why :
			  e	     ? e->why :
				       NULL);
	}
	reg_list_free(&l);
	return r;
}

/* The search path as a string that stays valid for the process. Lock held. */
static const char *reg_path_locked(void)
{
	struct reg_dirs dirs;
	struct reg_pathstr *p;
	char *s = NULL;
	size_t len = 0, i;
	FILE *m;

	if (reg_dirs_get(&dirs) < 0)
		return DC_PLUGINDIR;
	m = open_memstream(&s, &len);
	for (i = 0; m && i < dirs.n; i++)
		fprintf(m, "%s%s", i ? ":" : "", dirs.v[i]);
	if (m)
		fclose(m);
	reg_dirs_free(&dirs);
	for (p = reg_paths; p && s; p = p->next)
		if (strcmp(p->s, s) == 0)
			break;
	if (!p && s && (p = calloc(1, sizeof(*p)))) {
		p->s = s;
		s = NULL;
		p->next = reg_paths;
		reg_paths = p;
	}
	free(s);
	return p ? p->s : DC_PLUGINDIR;
}

DC_EXPORT const char *dc_plugin_path(void)
{
	const char *s;

	pthread_mutex_lock(&reg_lock);
	s = reg_path_locked();
	pthread_mutex_unlock(&reg_lock);
	return s;
}
