/* SPDX-License-Identifier: MIT */
/* Plugin discovery. A spec form F is served by F.so in the first
 * directory of the search path that holds one (a plugin's alias forms are
 * FORM.so symlinks): a lookup never loads a file that is not named after the
 * form, nor an F.so that an earlier directory shadows. Before dlopen the file, its directory
 * and every directory above must be owned by root or by us and writable by
 * nobody else; loaded plugins stay loaded for the life of the process. */
#include "internal.h"
#include "config.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
	e->err = dc__plugin_load(e->real, &e->desc, &e->why);
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
	f->path = dc__strfmt("%s/%s", dir, name);
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
		char *sib = dc__strfmt("%s/%s.so", dir, f->name);
		bool clash;

		if (!sib)
			return -ENOMEM;
		clash = realpath(sib, other) && strcmp(other, real) != 0;
		if (clash)
			*why = dc__strfmt(
				"two plugins in %s claim '%s': %s and %s; remove "
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
		f->why = dc__strfmt("plugin %s: %s", f->path, strerror(errno));
	} else if (!(f->real = strdup(real))) {
		return -ENOMEM;
	} else if (!dc__plugin_dir_trusted(f->path, dir, &f->why)) {
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
	f->why = dc__strfmt("plugin %s: not used: %s, earlier on the search path, has "
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

/* Drop from names (dir's .so files) each file that a FORM.so link beside it
 * points to: that is the plugin's own file (ram.so for mem.so and
 * memdiff.so), named after the plugin rather than a form it serves. */
static void reg_drop_link_targets(const char *dir, char **names, size_t *n)
{
	bool *target = calloc(*n ? *n : 1, sizeof(*target));
	char link[PATH_MAX];
	size_t i, j, k;

	if (!target)
		return; /* the list only names a few more */
	for (i = 0; i < *n; i++) {
		char *path = dc__strfmt("%s/%s", dir, names[i]);
		ssize_t len = path ? readlink(path, link, sizeof(link) - 1) : -1;

		free(path);
		if (len <= 0)
			continue;
		link[len] = '\0';
		for (j = 0; j < *n; j++)
			if (j != i && !strcmp(link, names[j]))
				target[j] = true;
	}
	for (i = k = 0; i < *n; i++) {
		if (target[i])
			free(names[i]);
		else
			names[k++] = names[i];
	}
	*n = k;
	free(target);
}

/* "invalid disk kind 'foo'; known kinds: a, b, c". The kinds are the FORM.so
 * names on the path, less the plugins' own files that links point to:
 * nothing is loaded to say so. */
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
		reg_drop_link_targets(dirs->v[i], names, &n);
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
	char *file = dc__strfmt("%s.so", name), real[PATH_MAX];
	size_t i;
	int r = 0;

	if (!file)
		return -ENOMEM;
	for (i = 0; i < dirs->n && r == 0; i++) {
		char *path = dc__strfmt("%s/%s", dirs->v[i], file);
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
	if (r == 0 && dc__plugin_name_ok(name))
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

DC_EXPORT int dc_plugin_lookup(const char *form, const struct dc_plugin **out)
{
	const struct dc_form *f;

	if (!form || !out)
		return dc_fail(-EINVAL, "dc_plugin_lookup: invalid arguments");
	return dc__registry_lookup(form, out, &f);
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
