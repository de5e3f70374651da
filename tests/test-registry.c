/* SPDX-License-Identifier: MIT */
/* Registry tests with real tiny plugins (tests/plugins/tiny): each case copies
 * the plugins it needs into a fresh private directory, sets its permissions,
 * points DISKCORE_PLUGIN_PATH there and checks what the core loads or refuses
 * and why. The registry caches per process, so every case runs in its own
 * forked process (CK_FORK must stay on). */
#include <diskcore/diskcore.h>
#include <diskcore/plugin.h>

#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *tiny_dir;
static char *tmp_dirs[4];
static int ntmp_dirs;

/* Runs at exit of each test process, failed or not. */
static void rm_tmp_dirs(void)
{
	char cmd[PATH_MAX + 16];

	for (int i = 0; i < ntmp_dirs; i++) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_dirs[i]);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmp_dirs[i]);
	}
}

/* A fresh directory, 0755, removed when the test process exits. */
static char *tmp_dir(void)
{
	char *d = strdup("/tmp/dc-registry-XXXXXX");

	ck_assert_ptr_nonnull(d);
	ck_assert_ptr_nonnull(mkdtemp(d));
	ck_assert_int_eq(chmod(d, 0755), 0);
	ck_assert_int_lt(ntmp_dirs, (int)(sizeof(tmp_dirs) / sizeof(tmp_dirs[0])));
	if (!ntmp_dirs)
		atexit(rm_tmp_dirs);
	tmp_dirs[ntmp_dirs++] = d;
	return d;
}

/* Strings a test keeps until its process exits. */
static char *kept[64];
static int nkept;

static void free_kept(void)
{
	while (nkept)
		free(kept[--nkept]);
}

static char *keep(char *s)
{
	if (!s || nkept == 64)
		abort();
	if (!nkept)
		atexit(free_kept);
	return kept[nkept++] = s;
}

static char *path_of(const char *dir, const char *name)
{
	char *p = keep(malloc(PATH_MAX));

	snprintf(p, PATH_MAX, "%s/%s.so", dir, name);
	return p;
}

/* Copy src to dir/<as>.so with mode 0755; returns the new path. */
static char *install_from(const char *src, const char *dir, const char *as)
{
	char *dst = path_of(dir, as);
	char buf[65536];
	ssize_t n;
	int in, out;

	in = open(src, O_RDONLY);
	ck_assert_msg(in >= 0, "%s: %m (were the test plugins built?)", src);
	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0755);
	ck_assert_int_ge(out, 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		ck_assert_int_eq(write(out, buf, n), n);
	ck_assert_int_eq(n, 0);
	close(in);
	close(out);
	ck_assert_int_eq(chmod(dst, 0755), 0);
	return dst;
}

/* Copy tiny/<name>.so to dir/<as>.so with mode 0755; returns the new path. */
static char *install(const char *dir, const char *name, const char *as)
{
	return install_from(path_of(tiny_dir, name), dir, as ? as : name);
}

/* A message to expect. */
static char *__attribute__((format(printf, 1, 2))) fmt(const char *f, ...)
{
	char *s;
	va_list ap;

	va_start(ap, f);
	if (vasprintf(&s, f, ap) < 0)
		s = NULL;
	va_end(ap);
	return keep(s);
}

static void use_path(const char *path)
{
	ck_assert_int_eq(setenv("DISKCORE_PLUGIN_PATH", path, 1), 0);
}

static void open_fails(const char *spec, int err, const char *want)
{
	dc_disk *d = NULL;
	int r = dc_open(spec, 0, &d);

	ck_assert_msg(r == err, "dc_open(%s) = %d, expected %d: %s", spec, r, err,
		      dc_last_error());
	ck_assert_ptr_null(d);
	ck_assert_msg(strstr(dc_last_error(), want), "message '%s' lacks '%s'",
		      dc_last_error(), want);
}

static void open_reads_zero(const char *spec)
{
	unsigned char buf[4096];
	dc_disk *d = NULL;
	int r = dc_open(spec, 0, &d);

	ck_assert_msg(r == 0, "dc_open(%s): %s", spec, dc_last_error());
	ck_assert_uint_eq(dc_sector_count(d), 2048);
	memset(buf, 0xa5, sizeof(buf));
	ck_assert_int_eq(dc_read(d, 8, buf, sizeof(buf)), 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		ck_assert_uint_eq(buf[i], 0);
	dc_close(d);
}

START_TEST(test_good_loads)
{
	char *d = tmp_dir();

	install(d, "good", NULL);
	use_path(d);
	open_reads_zero("good");
	/* The search path starts with the environment's directories. */
	ck_assert_int_eq(strncmp(dc_plugin_path(), d, strlen(d)), 0);
}
END_TEST

START_TEST(test_never_scanned)
{
	/* No good.so: the file that claims "good" under another name is never
	 * loaded (its constructor would create the mark), only named. */
	char *d = tmp_dir(), *mark = fmt("%s/loaded", d);

	install(d, "good", "zz-other-name");
	use_path(d);
	ck_assert_int_eq(setenv("DC_TINY_LOADED", mark, 1), 0);
	open_fails("good", -ENOENT,
		   "invalid disk kind 'good'; known kinds: zz-other-name");
	ck_assert_int_ne(access(mark, F_OK), 0);
	unsetenv("DC_TINY_LOADED");
}
END_TEST

START_TEST(test_no_entry_symbol)
{
	char *d = tmp_dir(), *p = install(d, "noentry", NULL);
	char *want;

	use_path(d);
	want = fmt("plugin %s: no entry symbol diskcore_plugin_v1", p);
	open_fails("noentry", -ENOEXEC, want);
}
END_TEST

START_TEST(test_prerelease_refused)
{
	char *d = tmp_dir(), *p = install(d, "prerelease", NULL);

	use_path(d);
	open_fails("prerelease", -ENOEXEC,
		   fmt("plugin %s: built against the pre-release plugin ABI (diskcore "
		       "0.x); rebuild it against diskcore %d.%d",
		       p, DC_ABI_MAJOR, DC_ABI_MINOR));
}
END_TEST

START_TEST(test_wrong_abi)
{
	char *d = tmp_dir();

	install(d, "badabi", NULL);
	install(d, "newminor", NULL);
	use_path(d);
	open_fails("badabi", -ENOEXEC, "built for ABI 2.x, this core speaks 1.x");
	open_fails("newminor", -ENOEXEC,
		   fmt("built for ABI %d.%d, newer than this core's %d.%d", DC_ABI_MAJOR,
		       DC_ABI_MINOR + 1, DC_ABI_MAJOR, DC_ABI_MINOR));
}
END_TEST

START_TEST(test_malformed)
{
	char *d = tmp_dir();

	install(d, "small", NULL);
	install(d, "noio", NULL);
	install(d, "badops", NULL);
	use_path(d);
	open_fails("small", -ENOEXEC, "malformed descriptor (struct_size");
	open_fails("noio", -ENOEXEC, "neither a submit nor an io callback");
	open_fails("badops", -ENOEXEC, "op 'flush' is both handled and passed through");
}
END_TEST

static int describe_visit(void *arg, int depth, const char *plugin, const char *form,
			  const struct dc_info *info, const char *key, const char *value)
{
	(void)arg;
	(void)depth;
	(void)form;
	(void)info;
	(void)key;
	(void)value;
	ck_assert_str_eq(plugin, "old");
	return 0;
}

START_TEST(test_old_descriptor_loads)
{
	/* The fields past its struct_size must read as zero (they hold traps). */
	char *d = tmp_dir();
	struct dc_info info;
	dc_disk *disk;

	install(d, "old", NULL);
	use_path(d);
	open_reads_zero("old");
	ck_assert_int_eq(dc_open("old", 0, &disk), 0);
	dc_get_info(disk, &info);
	ck_assert_uint_eq(info.sector_count, 2048);
	ck_assert_uint_eq(dc_sector_count(disk), 2048);
	ck_assert_int_eq(dc_describe(disk, describe_visit, NULL), 0);
	dc_close(disk);
}
END_TEST

struct seen {
	int n;
	char name[8][64];
	bool loaded[8];
	char why[8][256];
};

static int visit(void *arg, const char *path, const struct dc_plugin *p, const char *why)
{
	struct seen *s = arg;
	const char *base = strrchr(path, '/');

	if (s->n == 8)
		return 0; /* the built-in directory may hold more */
	snprintf(s->name[s->n], sizeof(s->name[0]), "%s", base ? base + 1 : path);
	s->loaded[s->n] = p != NULL;
	snprintf(s->why[s->n], sizeof(s->why[0]), "%s", why ? why : "");
	ck_assert(p ? why == NULL : why != NULL);
	if (p)
		ck_assert_uint_eq(p->abi_major, DC_ABI_MAJOR);
	s->n++;
	return 0;
}

/* Send this process's stderr to a fresh file; returns its path. */
static char *stderr_to_file(void)
{
	char *p = fmt("%s/stderr", tmp_dir());
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(dup2(fd, 2), 2);
	close(fd);
	return p;
}

/* The file's text (up to 64 KiB). */
static char *slurp(const char *path)
{
	char *buf = keep(calloc(1, 65536));
	int fd = open(path, O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_ge(read(fd, buf, 65535), 0);
	close(fd);
	return buf;
}

static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

/* The name of the plugin that serves spec (from dc_describe). */
static int name_visit(void *arg, int depth, const char *plugin, const char *form,
		      const struct dc_info *info, const char *key, const char *value)
{
	(void)depth;
	(void)form;
	(void)info;
	(void)key;
	(void)value;
	snprintf(arg, 64, "%s", plugin);
	return 0;
}

static void served_by(const char *spec, const char *want)
{
	char name[64] = "";
	dc_disk *d = NULL;

	ck_assert_msg(dc_open(spec, 0, &d) == 0, "dc_open(%s): %s", spec,
		      dc_last_error());
	ck_assert_int_eq(dc_describe(d, name_visit, name), 0);
	ck_assert_str_eq(name, want);
	dc_close(d);
}

/* Is a file with this path mapped into the process (was it dlopen'ed)? */
static bool mapped(const char *path)
{
	char line[PATH_MAX + 128];
	FILE *f = fopen("/proc/self/maps", "r");
	bool found = false;

	ck_assert_ptr_nonnull(f);
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, path) != NULL;
	fclose(f);
	return found;
}

/* dc_plugin_lookup() loads the form's file and nothing else, and says what
 * is installed when nothing claims a form. */
START_TEST(test_lookup_loads_one)
{
	char *d = tmp_dir(), *good, *other;
	const struct dc_plugin *p = NULL;

	good = install(d, "good", NULL);
	other = install(d, "old", NULL);
	use_path(d);
	ck_assert_int_eq(dc_plugin_lookup("good", &p), 0);
	ck_assert_ptr_nonnull(p);
	ck_assert(mapped(good));
	ck_assert(!mapped(other));
	p = NULL;
	ck_assert_int_eq(dc_plugin_lookup("nosuch", &p), -ENOENT);
	ck_assert_ptr_null(p);
	ck_assert(strstr(dc_last_error(), "invalid disk kind 'nosuch'; known kinds: "));
	ck_assert(strstr(dc_last_error(), "good"));
	ck_assert_int_eq(dc_plugin_lookup("../good", &p), -ENOENT);
	ck_assert_int_eq(dc_plugin_lookup(NULL, &p), -EINVAL);
	ck_assert_int_eq(dc_plugin_lookup("good", NULL), -EINVAL);
}
END_TEST

START_TEST(test_duplicate_first_wins)
{
	/* dup.so in two directories, different files: the first on the path
	 * serves 'dup', the other is named in one warning and never loaded. */
	char *a = tmp_dir(), *b = tmp_dir(), *pa, *pb, path[2 * PATH_MAX];
	char *err = stderr_to_file(), *text;

	pa = install(a, "dup-a", "dup");
	pb = install(b, "dup-b", "dup");
	snprintf(path, sizeof(path), "%s:%s", a, b);
	use_path(path);
	served_by("dup", "dup-a");
	served_by("dup", "dup-a");
	text = slurp(err);
	ck_assert_msg(count(text, fmt("diskcore: warning: two plugins claim 'dup': %s "
				      "and %s; using %s, the first on the plugin "
				      "search path\n",
				      pa, pb, pa)) == 1,
		      "stderr: '%s'", text);
	ck_assert(mapped(pa));
	ck_assert(!mapped(pb));

	/* The other order, the other plugin. */
	snprintf(path, sizeof(path), "%s:%s", b, a);
	use_path(path);
	served_by("dup", "dup-b");
	text = slurp(err);
	ck_assert_msg(strstr(text, fmt("two plugins claim 'dup': %s and %s; using %s", pb,
				       pa, pb)),
		      "stderr: '%s'", text);
}
END_TEST

START_TEST(test_duplicate_refused_first_decides)
{
	/* The first file decides even when it is refused: a broken plugin of
	 * the developer's is an error, not a silent fall-back to another. */
	char *a = tmp_dir(), *b = tmp_dir(), *pa, path[2 * PATH_MAX];

	stderr_to_file();
	pa = install(a, "noentry", "good");
	install(b, "good", NULL);
	snprintf(path, sizeof(path), "%s:%s", a, b);
	use_path(path);
	open_fails("good", -ENOEXEC, fmt("plugin %s: no entry symbol", pa));
}
END_TEST

START_TEST(test_duplicate_foreach)
{
	/* The listing shows the shadowed file as not used, without loading it. */
	char *a = tmp_dir(), *b = tmp_dir(), *pa, *pb, path[2 * PATH_MAX];
	char *err = stderr_to_file();
	struct seen s = { 0 };

	pa = install(a, "good", NULL);
	pb = install(b, "good", NULL);
	/* An alias link in each: the shadowed one is not listed again. */
	ck_assert_int_eq(symlink("good.so", path_of(a, "alias")), 0);
	ck_assert_int_eq(symlink("good.so", path_of(b, "alias")), 0);
	snprintf(path, sizeof(path), "%s:%s", a, b);
	use_path(path);
	ck_assert_int_eq(dc_plugins_foreach(visit, &s), 0);
	ck_assert_int_eq(s.n, 2);
	ck_assert(s.loaded[0]);
	ck_assert(!s.loaded[1]);
	ck_assert_str_eq(s.why[1], fmt("plugin %s: not used: %s, earlier on the search "
				       "path, has its name",
				       pb, pa));
	ck_assert(!mapped(pb));
	ck_assert(strstr(slurp(err), fmt("two plugins claim 'good': %s and %s", pa, pb)));
}
END_TEST

START_TEST(test_duplicate_same_dir)
{
	/* Within one directory a form has one plugin. dup-b.so claims 'dup',
	 * which dup.so (dup-a) serves: the listing refuses dup-b. */
	char *d = tmp_dir(), *dup, *other;
	struct seen s = { 0 };

	dup = install(d, "dup-a", "dup");
	other = install(d, "dup-b", NULL);
	use_path(d);
	ck_assert_int_eq(dc_plugins_foreach(visit, &s), 0);
	ck_assert_int_eq(s.n, 2);
	ck_assert_str_eq(s.name[0], "dup-b.so");
	ck_assert(!s.loaded[0]);
	ck_assert_str_eq(
		s.why[0],
		fmt("two plugins in %s claim 'dup': %s and %s; remove one of them", d,
		    dup, other));
	ck_assert(s.loaded[1]);
}
END_TEST

START_TEST(test_duplicate_same_dir_alias)
{
	/* ram.so claims mem and memdiff; memdiff.so beside it is another plugin:
	 * opening mem: (through the mem.so alias) is refused, naming both. */
	const char *root = getenv("DISKCORE_BUILD_ROOT");
	char *ram = fmt("%s/plugins/ram/ram.so", root), *d = tmp_dir(), *link;
	char *want;

	if (access(ram, R_OK) != 0)
		return; /* the ram plugin is always built; nothing to check without */
	install_from(ram, d, "ram");
	link = path_of(d, "mem");
	ck_assert_int_eq(symlink("ram.so", link), 0);
	install(d, "good", "memdiff");
	use_path(d);
	want = fmt("two plugins in %s claim 'memdiff': %s and %s; remove one of them", d,
		   path_of(d, "memdiff"), link);
	open_fails("mem:1M", -EEXIST, want);
}
END_TEST

START_TEST(test_path_replaces_default)
{
	/* Set, the variable replaces the built-in directory; an empty element
	 * puts it back at that place (docs/plugin-guide.md). */
	char *d = tmp_dir(), *builtin;

	unsetenv("DISKCORE_PLUGIN_PATH");
	builtin = keep(strdup(dc_plugin_path()));
	ck_assert_msg(builtin[0] == '/' && !strchr(builtin, ':'), "'%s'", builtin);
	use_path("");
	ck_assert_str_eq(dc_plugin_path(), builtin);
	use_path(d);
	ck_assert_str_eq(dc_plugin_path(), d);
	use_path(fmt("%s:", d));
	ck_assert_str_eq(dc_plugin_path(), fmt("%s:%s", d, builtin));
	use_path(fmt(":%s/", d));
	ck_assert_str_eq(dc_plugin_path(), fmt("%s:%s", builtin, d));
	/* Each directory once, at its first place. */
	use_path(fmt("%s::%s:%s", d, d, builtin));
	ck_assert_str_eq(dc_plugin_path(), fmt("%s:%s", d, builtin));
	use_path(":");
	ck_assert_str_eq(dc_plugin_path(), builtin);
}
END_TEST

START_TEST(test_claim_needs_file)
{
	/* Two plugins claim "dup" but neither is dup.so: a kind is a file name. */
	char *d = tmp_dir();

	install(d, "dup-a", NULL);
	install(d, "dup-b", NULL);
	use_path(d);
	open_fails("dup", -ENOENT, "invalid disk kind 'dup'; known kinds: dup-a, dup-b");
}
END_TEST

START_TEST(test_symlink_same_plugin)
{
	/* Two names for one real file are one plugin, not a duplicate. */
	char *a = tmp_dir(), *b = tmp_dir(), *p, link[PATH_MAX], path[2 * PATH_MAX];

	p = install(a, "good", NULL);
	snprintf(link, sizeof(link), "%s/good.so", b);
	ck_assert_int_eq(symlink(p, link), 0);
	snprintf(path, sizeof(path), "%s:%s", a, b);
	use_path(path);
	open_reads_zero("good");
}
END_TEST

START_TEST(test_file_writable)
{
	char *d = tmp_dir(), *p = install(d, "good", NULL);
	char *want = fmt("plugin %s: writable by group or others (mode 0666)", p);

	ck_assert_int_eq(chmod(p, 0666), 0);
	use_path(d);
	open_fails("good", -EPERM, want);
}
END_TEST

START_TEST(test_dir_writable)
{
	char *d = tmp_dir();
	char *want = fmt("directory %s is writable by group or others (mode 0777)", d);

	install(d, "good", NULL);
	ck_assert_int_eq(chmod(d, 0777), 0);
	use_path(d);
	open_fails("good", -EPERM, want);
}
END_TEST

START_TEST(test_ancestor_writable)
{
	/* Whoever can rename d can swap d/sub: d is checked too. */
	char *d = tmp_dir(), *sub = fmt("%s/sub", d);
	char *want = fmt("directory %s is writable by group or others (mode 0777)", d);

	ck_assert_int_eq(mkdir(sub, 0755), 0);
	install(sub, "good", NULL);
	use_path(sub);
	open_reads_zero("good");
	ck_assert_int_eq(chmod(d, 0777), 0);
	install(sub, "old", NULL);
	open_fails("old", -EPERM, want);
}
END_TEST

static uid_t nobody(void)
{
	struct passwd *pw = getpwnam("nobody");

	return pw ? pw->pw_uid : 65534;
}

START_TEST(test_file_other_owner)
{
	char *d = tmp_dir(), *p = install(d, "good", NULL);
	char *want =
		fmt("plugin %s: owned by uid %u, expected root", p, (unsigned)nobody());

	ck_assert_int_eq(chown(p, nobody(), (gid_t)-1), 0);
	use_path(d);
	open_fails("good", -EPERM, want);
}
END_TEST

START_TEST(test_dir_other_owner)
{
	char *d = tmp_dir();
	char *want = fmt("directory %s is owned by uid %u", d, (unsigned)nobody());

	install(d, "good", NULL);
	ck_assert_int_eq(chown(d, nobody(), (gid_t)-1), 0);
	use_path(d);
	open_fails("good", -EPERM, want);
}
END_TEST

START_TEST(test_relative_entries_ignored)
{
	/* "." and "rel" hold good.so, but relative entries are never searched. */
	char *d = tmp_dir(), sub[PATH_MAX + 8];

	install(d, "good", NULL);
	snprintf(sub, sizeof(sub), "%s/rel", d);
	ck_assert_int_eq(mkdir(sub, 0755), 0);
	install(sub, "good", NULL);
	ck_assert_int_eq(chdir(d), 0);
	use_path(".:rel::");
	open_fails("good", -ENOENT, "invalid disk kind 'good'");
	ck_assert_ptr_null(strstr(dc_plugin_path(), "rel"));
	ck_assert_msg(dc_plugin_path()[0] == '/', "path '%s'", dc_plugin_path());
	ck_assert_int_eq(chdir("/"), 0);
}
END_TEST

START_TEST(test_unknown_kind_lists_known)
{
	char *d = tmp_dir();

	install(d, "good", NULL);
	install(d, "old", NULL);
	install(d, "noentry", NULL);
	use_path(d);
	open_fails("foo:bar", -ENOENT,
		   "foo:bar: at 0: invalid disk kind 'foo'; known kinds: ");
	ck_assert(strstr(dc_last_error(), "good"));
	ck_assert(strstr(dc_last_error(), "old"));
	/* Named from the file names: nothing was loaded to say so. */
	ck_assert(strstr(dc_last_error(), "noentry"));
}
END_TEST

START_TEST(test_unknown_kind_lists_aliases)
{
	/* ram.so serves mem and memdiff through links: the list names those,
	 * not the plugin's own file. */
	const char *root = getenv("DISKCORE_BUILD_ROOT");
	char *ram = fmt("%s/plugins/ram/ram.so", root), *d = tmp_dir();

	if (access(ram, R_OK) != 0)
		return; /* the ram plugin is always built; nothing to check without */
	install_from(ram, d, "ram");
	ck_assert_int_eq(symlink("ram.so", path_of(d, "mem")), 0);
	ck_assert_int_eq(symlink("ram.so", path_of(d, "memdiff")), 0);
	install(d, "good", NULL);
	use_path(d);
	open_fails("ram:1M", -ENOENT,
		   "invalid disk kind 'ram'; known kinds: good, mem, memdiff");
}
END_TEST

static int visit_stop(void *arg, const char *path, const struct dc_plugin *p,
		      const char *why)
{
	(void)path;
	(void)p;
	(void)why;
	++*(int *)arg;
	return 42;
}

START_TEST(test_foreach)
{
	char *a = tmp_dir(), *b = tmp_dir(), path[2 * PATH_MAX];
	struct seen s = { 0 };
	int calls = 0;

	install(a, "old", NULL);
	install(a, "good", NULL);
	install(a, "badabi", NULL);
	install(b, "noentry", NULL);
	snprintf(path, sizeof(path), "%s:%s", a, b);
	use_path(path);
	ck_assert_int_eq(dc_plugins_foreach(visit, &s), 0);
	ck_assert_int_ge(s.n, 4);
	/* Directory order first, then sorted names within a directory. */
	ck_assert_str_eq(s.name[0], "badabi.so");
	ck_assert(!s.loaded[0]);
	ck_assert(strstr(s.why[0], "built for ABI 2.x"));
	ck_assert_str_eq(s.name[1], "good.so");
	ck_assert(s.loaded[1]);
	ck_assert_str_eq(s.name[2], "old.so");
	ck_assert(s.loaded[2]);
	ck_assert_str_eq(s.name[3], "noentry.so");
	ck_assert(!s.loaded[3]);
	ck_assert(strstr(s.why[3], "no entry symbol diskcore_plugin_v1"));

	ck_assert_int_eq(dc_plugins_foreach(visit_stop, &calls), 42);
	ck_assert_int_eq(calls, 1);
}
END_TEST

static void *lookup_thread(void *arg)
{
	/* Two plugins found by name, and an unknown kind. */
	const char *specs[] = { "good", "old", "good", "nope:x" };
	long fails = 0;

	(void)arg;
	for (int i = 0; i < 40; i++) {
		const char *spec = specs[i % 4];
		dc_disk *d = NULL;
		int r = dc_open(spec, 0, &d);

		if (i % 4 == 3) {
			fails += r != -ENOENT || !strstr(dc_last_error(), "'nope'");
		} else {
			fails += r != 0 || dc_sector_count(d) != 2048;
			if (r == 0)
				dc_close(d);
		}
	}
	return (void *)fails;
}

START_TEST(test_concurrent_lookups)
{
	/* First loads race with each other and with cached lookups. */
	char *d = tmp_dir();
	pthread_t t[8];
	void *fails;

	install(d, "good", NULL);
	install(d, "old", NULL);
	use_path(d);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, lookup_thread, NULL), 0);
	for (int i = 0; i < 8; i++) {
		ck_assert_int_eq(pthread_join(t[i], &fails), 0);
		ck_assert_int_eq((long)fails, 0);
	}
}
END_TEST

static Suite *registry_suite(void)
{
	Suite *s = suite_create("registry");
	TCase *tc = tcase_create("load");

	tcase_add_test(tc, test_good_loads);
	tcase_add_test(tc, test_lookup_loads_one);
	tcase_add_test(tc, test_never_scanned);
	tcase_add_test(tc, test_old_descriptor_loads);
	tcase_add_test(tc, test_symlink_same_plugin);
	tcase_add_test(tc, test_foreach);
	tcase_add_test(tc, test_unknown_kind_lists_known);
	tcase_add_test(tc, test_unknown_kind_lists_aliases);
	tcase_add_test(tc, test_relative_entries_ignored);
	tcase_add_test(tc, test_path_replaces_default);
	tcase_add_test(tc, test_concurrent_lookups);
	suite_add_tcase(s, tc);

	tc = tcase_create("refuse");
	tcase_add_test(tc, test_no_entry_symbol);
	tcase_add_test(tc, test_wrong_abi);
	tcase_add_test(tc, test_malformed);
	tcase_add_test(tc, test_duplicate_first_wins);
	tcase_add_test(tc, test_duplicate_refused_first_decides);
	tcase_add_test(tc, test_duplicate_foreach);
	tcase_add_test(tc, test_duplicate_same_dir);
	tcase_add_test(tc, test_duplicate_same_dir_alias);
	tcase_add_test(tc, test_claim_needs_file);
	tcase_add_test(tc, test_prerelease_refused);
	tcase_add_test(tc, test_ancestor_writable);
	tcase_add_test(tc, test_file_writable);
	tcase_add_test(tc, test_dir_writable);
	suite_add_tcase(s, tc);

	if (geteuid() == 0) {
		tc = tcase_create("owner");
		tcase_add_test(tc, test_file_other_owner);
		tcase_add_test(tc, test_dir_other_owner);
		suite_add_tcase(s, tc);
	} else {
		fprintf(stderr, "skipping the owner tests: chown to another user "
				"needs root\n");
	}
	return s;
}

int main(void)
{
	const char *root = getenv("DISKCORE_BUILD_ROOT");
	SRunner *sr;
	int failed;

	if (!root) {
		fprintf(stderr,
			"DISKCORE_BUILD_ROOT is not set (run through meson test)\n");
		return 77;
	}
	if (asprintf(&tiny_dir, "%s/tests/plugins/tiny", root) < 0)
		return 99;
	if (access(tiny_dir, R_OK) != 0) {
		fprintf(stderr, "%s missing: the test plugins were not built\n",
			tiny_dir);
		return 77;
	}
	/* Nothing from the build's plugin directories may leak into a case. */
	unsetenv("DISKCORE_PLUGIN_PATH");
	sr = srunner_create(registry_suite());
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
