/* SPDX-License-Identifier: MIT */
/* Spec-string parser tests (docs/openvmm-compat.md §5.1 and §5.4). The parser is compiled
 * in here together with a stub registry whose descriptors declare the OpenVMM forms, so
 * the grammar is tested without loading any plugin. */
#include "../core/error.c"
#include "../core/spec.c"

#include "harness.h"

#include <check.h>
#include <unistd.h>

/* --- Stub registry ------------------------------------------------------ */

static const struct dc_option file_opts[] = {
	{ .name = "direct", .type = DC_OPT_FLAG, .help = "O_DIRECT" },
	{ .name = "create", .type = DC_OPT_SIZE, .help = "create with this size" },
	{ 0 },
};
static const struct dc_option sql_opts[] = {
	{ .name = "create", .type = DC_OPT_SIZE, .help = "create with this size" },
	{ 0 },
};
static const struct dc_option sqldiff_opts[] = {
	{ .name = "create", .type = DC_OPT_FLAG, .help = "create, sized from below" },
	{ 0 },
};
static const struct dc_option delay_opts[] = {
	{ .name = "p99", .type = DC_OPT_UINT, .help = "99th percentile latency" },
	{ 0 },
};
static const struct dc_option striped_opts[] = {
	{ .name = "chunk", .type = DC_OPT_SIZE, .help = "stripe unit" },
	{ .name = "sectors", .type = DC_OPT_UINT, .help = "logical sector count" },
	{ 0 },
};
static const struct dc_option zero_opts[] = {
	{ .name = "ro", .type = DC_OPT_FLAG, .help = "read-only" },
	{ .name = "label", .type = DC_OPT_STRING, .help = "a label" },
	{ 0 },
};

#define FORM(n, nf, ch, syn, o)                                                    \
	{                                                                          \
		.name = n, .nfields = nf, .child = ch, .syntax = syn, .options = o \
	}
static const struct dc_form file_forms[] = {
	FORM("file", 1, DC_CHILD_NONE, "file:PATH[;direct][;create=SIZE]", file_opts),
	{ 0 }
};
static const struct dc_form ram_forms[] = {
	FORM("mem", 1, DC_CHILD_NONE, "mem:SIZE", NULL),
	FORM("memdiff", 0, DC_CHILD_ONE, "memdiff:SPEC", NULL),
	{ 0 }
};
static const struct dc_form sqlite_forms[] = {
	FORM("sql", 1, DC_CHILD_NONE, "sql:PATH[;create=SIZE]", sql_opts),
	FORM("sqldiff", 1, DC_CHILD_ONE, "sqldiff:PATH[;create]:SPEC", sqldiff_opts),
	FORM("autocache", 1, DC_CHILD_ONE, "autocache:[KEY]:SPEC", NULL),
	{ 0 }
};
static const struct dc_form prwrap_forms[] = {
	FORM("prwrap", 0, DC_CHILD_ONE, "prwrap:SPEC", NULL), { 0 }
};
static const struct dc_form blob_forms[] = {
	FORM("blob", 2, DC_CHILD_NONE, "blob:flat|vhd1:URL", NULL), { 0 }
};
static const struct dc_form crypt_forms[] = {
	FORM("crypt", 2, DC_CHILD_ONE, "crypt:xts-aes-256:KEYFILE:SPEC", NULL), { 0 }
};
static const struct dc_form delay_forms[] = {
	FORM("delay", 1, DC_CHILD_ONE, "delay:MS[;p99=MS]:SPEC", delay_opts), { 0 }
};
static const struct dc_form striped_forms[] = {
	/* no syntax: the parser generates one */
	FORM("striped", 0, DC_CHILD_LIST, NULL, striped_opts),
	{ 0 }
};
static const struct dc_form vhd_forms[] = {
	FORM("vhd", 1, DC_CHILD_NONE, "vhd:PATH[;create=SIZE]", sql_opts), { 0 }
};
static const struct dc_form vhd1_forms[] = {
	FORM("vhd1", 1, DC_CHILD_NONE, "vhd1:PATH[;create=SIZE]", sql_opts), { 0 }
};
static const struct dc_form vhdx_forms[] = {
	FORM("vhdx", 1, DC_CHILD_NONE, "vhdx:PATH", NULL), { 0 }
};
static const struct dc_form zero_forms[] = {
	FORM("zero", 0, DC_CHILD_NONE, "zero[;ro][;label=TEXT]", zero_opts), { 0 }
};

#define PLUGIN(n, k, f)                                                        \
	{                                                                      \
		.struct_size = sizeof(struct dc_plugin), .name = n, .kind = k, \
		.forms = f                                                     \
	}
static const struct dc_plugin stub_plugins[] = {
	PLUGIN("file", DC_KIND_BACKEND, file_forms),
	PLUGIN("ram", DC_KIND_LAYER, ram_forms),
	PLUGIN("sqlite", DC_KIND_LAYER, sqlite_forms),
	PLUGIN("prwrap", DC_KIND_DECORATOR, prwrap_forms),
	PLUGIN("blob", DC_KIND_BACKEND, blob_forms),
	PLUGIN("crypt", DC_KIND_DECORATOR, crypt_forms),
	PLUGIN("delay", DC_KIND_DECORATOR, delay_forms),
	PLUGIN("striped", DC_KIND_BACKEND, striped_forms),
	PLUGIN("vhd", DC_KIND_LAYER, vhd_forms),
	PLUGIN("vhd1", DC_KIND_BACKEND, vhd1_forms),
	PLUGIN("vhdx", DC_KIND_LAYER, vhdx_forms),
	PLUGIN("zero", DC_KIND_BACKEND, zero_forms),
};

/* Forms the stub pretends are not installed (ENOENT) or refused (EPERM). */
static const char *stub_missing[4];
static const char *stub_refused;

const struct dc_form *dc__plugin_form(const struct dc_plugin *p, const char *name)
{
	const struct dc_form *f;

	for (f = p->forms; f->name; f++)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

int dc__registry_lookup(const char *name, const struct dc_plugin **plugin,
			const struct dc_form **form)
{
	char known[512] = "";
	size_t i, n = 0;
	const struct dc_form *f;

	for (i = 0; i < DC_ARRAY_SIZE(stub_missing); i++)
		if (stub_missing[i] && strcmp(stub_missing[i], name) == 0)
			goto unknown;
	if (stub_refused && strcmp(stub_refused, name) == 0) {
		dc__error_raw("plugin /p/%s.so: writable by group or others (mode 0666)",
			      name);
		return -EPERM;
	}
	for (i = 0; i < DC_ARRAY_SIZE(stub_plugins); i++) {
		if ((f = dc__plugin_form(&stub_plugins[i], name))) {
			*plugin = &stub_plugins[i];
			*form = f;
			return 0;
		}
	}
unknown:
	for (i = 0; i < DC_ARRAY_SIZE(stub_plugins); i++)
		for (f = stub_plugins[i].forms; f->name; f++)
			n += snprintf(known + n, sizeof(known) - n, "%s%s", n ? ", " : "",
				      f->name);
	dc__error_raw("invalid disk kind '%s'; known kinds: %s", name, known);
	return -ENOENT;
}

/* --- Helpers ------------------------------------------------------------ */

static struct dc_spec *parse_ok(const char *spec)
{
	struct dc_spec *s = NULL;
	int r = dc__spec_parse(spec, &s);

	ck_assert_msg(r == 0, "'%s' failed (%d): %s", spec, r, dc_last_error());
	ck_assert_ptr_nonnull(s);
	return s;
}

/* Parsing fails with err and a message containing want. */
static void parse_err(const char *spec, int err, const char *want)
{
	struct dc_spec *s = (struct dc_spec *)1;
	int r = dc__spec_parse(spec, &s);

	ck_assert_msg(r == err, "'%s': got %d, expected %d (%s)", spec, r, err,
		      r ? dc_last_error() : "parsed");
	ck_assert_ptr_null(s);
	ck_assert_msg(strstr(dc_last_error(), want), "'%s': message '%s' lacks '%s'",
		      spec, dc_last_error(), want);
}

static const struct dc_optval *opt(const struct dc_spec *s, const char *name)
{
	for (uint32_t i = 0; i < s->nopts; i++)
		if (strcmp(s->opts[i].name, name) == 0)
			return &s->opts[i];
	return NULL;
}

static void check_leaf(const struct dc_spec *s, const char *form, const char *field)
{
	ck_assert_str_eq(s->form->name, form);
	ck_assert_uint_eq(s->nfields, 1);
	ck_assert_str_eq(s->fields[0], field);
	ck_assert_uint_eq(s->nchildren, 0);
}

/* --- SIZE ---------------------------------------------------------------- */

START_TEST(test_size_units)
{
	static const struct {
		const char *s;
		uint64_t v;
	} ok[] = {
		{ "0", 0 },
		{ "1024", 1024 },
		{ "1024B", 1024 },
		{ "512K", 512 << 10 },
		{ "512KB", 512 << 10 },
		{ "4M", 4 << 20 },
		{ "4MB", 4 << 20 },
		{ "1G", UINT64_C(1) << 30 },
		{ "1GB", UINT64_C(1) << 30 },
		{ "2T", UINT64_C(2) << 40 },
		{ "007K", 7 << 10 },
		{ "VMGS_DEFAULT", 4 << 20 },
		{ "18446744073709551615", UINT64_MAX },
		{ "16777215T", UINT64_C(16777215) << 40 },
		/* What people type, as the CLI always accepted (issue 15). */
		{ "1k", 1 << 10 },
		{ "1g", UINT64_C(1) << 30 },
		{ "1mb", 1 << 20 },
		{ "1KiB", 1 << 10 },
		{ "64MiB", 64 << 20 },
		{ "1GiB", UINT64_C(1) << 30 },
		{ "2tib", UINT64_C(2) << 40 },
		{ "1024b", 1024 },
	};
	uint64_t v;

	for (size_t i = 0; i < DC_ARRAY_SIZE(ok); i++) {
		v = 1;
		ck_assert_msg(dc_parse_size(ok[i].s, &v) == 0, "%s", ok[i].s);
		ck_assert_msg(v == ok[i].v, "%s = %llu", ok[i].s, (unsigned long long)v);
	}
}
END_TEST

START_TEST(test_size_errors)
{
	/* No hex, no sign, no fractions, no spaces, no unit without a number. */
	static const char *const bad[] = { "",	    "B",   "K",	   "KB",	  "iB",
					   "KiB",   "1iB", "0x10", "1.5G",	  "-1",
					   "+1",    " 1",  "1 ",   "1BB",	  "1KK",
					   "1KiBB", "G1",  "1Ki",  "vmgs_default" };
	uint64_t v = 42;

	for (size_t i = 0; i < DC_ARRAY_SIZE(bad); i++) {
		ck_assert_msg(dc_parse_size(bad[i], &v) == -EINVAL, "'%s'", bad[i]);
		ck_assert(strstr(dc_last_error(), "invalid size"));
	}
	ck_assert_int_eq(dc_parse_size("18446744073709551616", &v), -ERANGE);
	ck_assert_int_eq(dc_parse_size("16777216T", &v), -ERANGE);
	ck_assert_int_eq(dc_parse_size("18014398509481984K", &v), -ERANGE);
	ck_assert(strstr(dc_last_error(), "64 bits"));
	ck_assert_int_eq(dc_parse_size(NULL, &v), -EINVAL);
	ck_assert_uint_eq(v, 42);
}
END_TEST

/* --- OpenVMM cli_args tests (docs/openvmm-compat.md §5.4) --------------------------- */

START_TEST(test_parse_file_opts)
{
	struct dc_spec *s;

	s = parse_ok("file:/img/disk.img;create=1G");
	check_leaf(s, "file", "/img/disk.img");
	ck_assert_uint_eq(s->nopts, 1);
	ck_assert_uint_eq(opt(s, "create")->num, UINT64_C(1) << 30);
	ck_assert_str_eq(opt(s, "create")->value, "1G");
	dc__spec_free(s);

	s = parse_ok("/img/disk.img;create=1G"); /* bare path with create */
	check_leaf(s, "file", "/img/disk.img");
	ck_assert_uint_eq(opt(s, "create")->num, UINT64_C(1) << 30);
	dc__spec_free(s);

	s = parse_ok("file:/dev/sdb;direct");
	check_leaf(s, "file", "/dev/sdb");
	ck_assert_uint_eq(s->nopts, 1);
	ck_assert_ptr_null(opt(s, "direct")->value);
	dc__spec_free(s);

	for (int order = 0; order < 2; order++) {
		s = parse_ok(order ? "file:/dev/sdb;create=1G;direct" :
				     "file:/dev/sdb;direct;create=1G");
		check_leaf(s, "file", "/dev/sdb");
		ck_assert_uint_eq(s->nopts, 2);
		ck_assert_ptr_nonnull(opt(s, "direct"));
		ck_assert_uint_eq(opt(s, "create")->num, UINT64_C(1) << 30);
		dc__spec_free(s);
	}

	s = parse_ok("file:/dev/sdb");
	check_leaf(s, "file", "/dev/sdb");
	ck_assert_uint_eq(s->nopts, 0);
	dc__spec_free(s);

	parse_err("file:/dev/sdb;bogus", -EINVAL,
		  "file:/dev/sdb;bogus: at 14: unknown option 'bogus' (accepted: "
		  "direct, create=SIZE); expected file:PATH[;direct][;create=SIZE]");
	parse_err("sql:/tmp/test.db;direct", -EINVAL,
		  "unknown option 'direct' (accepted: create=SIZE)");
}
END_TEST

START_TEST(test_parse_memory_disk)
{
	struct dc_spec *s = parse_ok("mem:1G");
	uint64_t v;

	check_leaf(s, "mem", "1G");
	ck_assert_str_eq(s->plugin->name, "ram");
	ck_assert_int_eq(dc_parse_size(s->fields[0], &v), 0);
	ck_assert_uint_eq(v, 1073741824);
	dc__spec_free(s);
}
END_TEST

START_TEST(test_parse_memory_diff_disk)
{
	struct dc_spec *s = parse_ok("memdiff:file:/img/base.img");

	ck_assert_str_eq(s->form->name, "memdiff");
	ck_assert_uint_eq(s->nfields, 0);
	ck_assert_uint_eq(s->nchildren, 1);
	check_leaf(s->children[0], "file", "/img/base.img");
	ck_assert_uint_eq(s->children[0]->pos, 8);
	ck_assert_str_eq(s->children[0]->text, "file:/img/base.img");
	ck_assert_str_eq(s->text, "memdiff:file:/img/base.img");
	dc__spec_free(s);

	s = parse_ok("memdiff:memdiff:mem:1G");
	ck_assert_str_eq(s->children[0]->form->name, "memdiff");
	check_leaf(s->children[0]->children[0], "mem", "1G");
	ck_assert_uint_eq(s->children[0]->children[0]->pos, 16);
	dc__spec_free(s);
}
END_TEST

START_TEST(test_parse_sqlite_disk)
{
	struct dc_spec *s = parse_ok("sql:db.sqlite;create=2G");

	check_leaf(s, "sql", "db.sqlite");
	ck_assert_uint_eq(opt(s, "create")->num, UINT64_C(2) << 30);
	dc__spec_free(s);

	s = parse_ok("sql:db.sqlite");
	check_leaf(s, "sql", "db.sqlite");
	ck_assert_uint_eq(s->nopts, 0);
	dc__spec_free(s);
}
END_TEST

START_TEST(test_parse_sqlite_diff_disk)
{
	struct dc_spec *s = parse_ok("sqldiff:diff.sqlite;create:file:base.img");

	ck_assert_str_eq(s->form->name, "sqldiff");
	ck_assert_uint_eq(s->nfields, 1);
	ck_assert_str_eq(s->fields[0], "diff.sqlite");
	ck_assert_uint_eq(s->nopts, 1);
	ck_assert_str_eq(s->opts[0].name, "create");
	ck_assert_ptr_null(s->opts[0].value);
	ck_assert_uint_eq(s->nchildren, 1);
	check_leaf(s->children[0], "file", "base.img");
	dc__spec_free(s);

	s = parse_ok("sqldiff:diff.sqlite:file:base.img");
	ck_assert_str_eq(s->fields[0], "diff.sqlite");
	ck_assert_uint_eq(s->nopts, 0);
	check_leaf(s->children[0], "file", "base.img");
	dc__spec_free(s);

	/* After ';' only the flag is accepted. */
	parse_err("sqldiff:diff.sqlite;create=1G:file:base.img", -EINVAL,
		  "option 'create' is a flag and takes no value");
	parse_err("sqldiff:diff.sqlite;direct:file:base.img", -EINVAL,
		  "unknown option 'direct' (accepted: create)");
}
END_TEST

START_TEST(test_parse_autocache_sqlite_disk)
{
	struct dc_spec *s = parse_ok("autocache::file:disk.img");

	ck_assert_str_eq(s->form->name, "autocache");
	ck_assert_uint_eq(s->nfields, 1);
	ck_assert_str_eq(s->fields[0], ""); /* empty key: the lower disk's id */
	check_leaf(s->children[0], "file", "disk.img");
	dc__spec_free(s);

	s = parse_ok("autocache:mykey:blob:flat:https://h.example/c/d.img?sv=1&sig=x");
	ck_assert_str_eq(s->fields[0], "mykey");
	ck_assert_str_eq(s->children[0]->form->name, "blob");
	ck_assert_uint_eq(s->children[0]->nfields, 2);
	ck_assert_str_eq(s->children[0]->fields[0], "flat");
	ck_assert_str_eq(s->children[0]->fields[1],
			 "https://h.example/c/d.img?sv=1&sig=x");
	dc__spec_free(s);

	parse_err("autocache:", -EINVAL, "autocache:: at 10: missing inner spec");
}
END_TEST

START_TEST(test_parse_disk_errors)
{
	parse_err("invalid:", -ENOENT,
		  "invalid:: at 0: invalid disk kind 'invalid'; known kinds: file, mem,");
	parse_err("memory:extra", -ENOENT, "invalid disk kind 'memory'");
	parse_err("sqlite:", -ENOENT, "invalid disk kind 'sqlite'");
}
END_TEST

START_TEST(test_parse_errors)
{
	struct dc_spec *s;

	/* The mem plugin rejects the size; the grammar accepts it. */
	s = parse_ok("mem:invalid");
	check_leaf(s, "mem", "invalid");
	dc__spec_free(s);

	parse_err("sqldiff:path", -EINVAL,
		  "sqldiff:path: at 8: missing inner spec; expected "
		  "sqldiff:PATH[;create]:SPEC");
	/* Bad blob kinds and ciphers are the plugins' to reject. */
	s = parse_ok("blob:invalid:url");
	ck_assert_str_eq(s->fields[0], "invalid");
	dc__spec_free(s);
	s = parse_ok("crypt:invalid:key.bin:mem:1G");
	ck_assert_str_eq(s->fields[0], "invalid");
	dc__spec_free(s);

	parse_err("crypt:xts-aes-256:key.bin", -EINVAL,
		  "crypt:xts-aes-256:key.bin: at 18: missing inner spec; expected "
		  "crypt:xts-aes-256:KEYFILE:SPEC");
	ck_assert_str_eq(dc_last_error(),
			 "crypt:xts-aes-256:key.bin: at 18: missing inner spec; "
			 "expected crypt:xts-aes-256:KEYFILE:SPEC");
	parse_err("invalid:path", -ENOENT, "invalid disk kind 'invalid'");
	parse_err("file:disk.vhd;create=", -EINVAL,
		  "file:disk.vhd;create=: at 21: option 'create': invalid size ''");
}
END_TEST

/* --- Grammar ------------------------------------------------------------- */

START_TEST(test_bare_paths)
{
	struct dc_spec *s = parse_ok("/tmp/a:b");

	check_leaf(s, "file", "/tmp/a:b");
	ck_assert_str_eq(s->text, "/tmp/a:b");
	dc__spec_free(s);

	s = parse_ok("/tmp/a:b:c;direct");
	check_leaf(s, "file", "/tmp/a:b:c");
	ck_assert_ptr_nonnull(opt(s, "direct"));
	dc__spec_free(s);

	s = parse_ok("memdiff:/img/x:y.img");
	check_leaf(s->children[0], "file", "/img/x:y.img");
	dc__spec_free(s);

	/* Leaves take the rest verbatim, ':' included. */
	s = parse_ok("file:/a:b");
	check_leaf(s, "file", "/a:b");
	dc__spec_free(s);

	parse_err("/x;bogus", -EINVAL, "/x;bogus: at 3: unknown option 'bogus'");
	parse_err("/x;", -EINVAL, "at 3: empty option name");
	/* Without ':' a path-like string is a path relative to the working
	 * directory, as in OpenVMM (issue 14); a bare word stays a kind. */
	s = parse_ok("disk.img");
	check_leaf(s, "file", "disk.img");
	dc__spec_free(s);
	s = parse_ok("memdiff:disks/base.img");
	check_leaf(s->children[0], "file", "disks/base.img");
	dc__spec_free(s);
	s = parse_ok("disks/base.img;create=1G");
	check_leaf(s, "file", "disks/base.img");
	ck_assert_uint_eq(s->nopts, 1);
	dc__spec_free(s);
	parse_err("disks/x:y.img", -ENOENT, "invalid disk kind");
	parse_err("foo", -ENOENT,
		  "known kinds: file, mem, memdiff, sql, sqldiff, "
		  "autocache, prwrap, blob, crypt, delay, striped, vhd, "
		  "vhd1, vhdx, zero; nor is there a file 'foo'");
}
END_TEST

/* A bare word is a file when a file of that name exists or options follow
 * (OpenVMM opens any string without ':' as a path); a kind of that name
 * wins, as the word is then not a path (docs/openvmm-compat.md §5.1). */
START_TEST(test_bare_word_file)
{
	char *dir = h_tmpsubdir(), *cwd = getcwd(NULL, 0);
	struct dc_spec *s;

	ck_assert_int_eq(chdir(dir), 0);
	h_write_file("plain", "x", 1, 0644);
	h_write_file("zero", "x", 1, 0644);
	s = parse_ok("plain");
	check_leaf(s, "file", "plain");
	dc__spec_free(s);
	s = parse_ok("memdiff:plain");
	check_leaf(s->children[0], "file", "plain");
	dc__spec_free(s);
	s = parse_ok("newdisk;create=1M");
	check_leaf(s, "file", "newdisk");
	ck_assert_uint_eq(opt(s, "create")->num, 1 << 20);
	dc__spec_free(s);
	s = parse_ok("zero");
	ck_assert_str_eq(s->form->name, "zero");
	dc__spec_free(s);
	parse_err("memdiff:missing", -ENOENT,
		  "invalid disk kind 'missing'; known kinds: file, ");
	ck_assert_int_eq(chdir(cwd), 0);
	free(cwd);
	free(dir);
}
END_TEST

START_TEST(test_delay)
{
	struct dc_spec *s = parse_ok("delay:5;p99=50:mem:1G");

	ck_assert_str_eq(s->form->name, "delay");
	ck_assert_str_eq(s->fields[0], "5");
	ck_assert_uint_eq(opt(s, "p99")->num, 50);
	check_leaf(s->children[0], "mem", "1G");
	ck_assert_uint_eq(s->children[0]->pos, 15);
	dc__spec_free(s);

	s = parse_ok("delay:1:memdiff:file:/x.img");
	ck_assert_str_eq(s->fields[0], "1");
	ck_assert_uint_eq(s->nopts, 0);
	check_leaf(s->children[0]->children[0], "file", "/x.img");
	dc__spec_free(s);

	/* Options may also follow the kind. */
	s = parse_ok("delay;p99=7:5:mem:1G");
	ck_assert_str_eq(s->fields[0], "5");
	ck_assert_uint_eq(opt(s, "p99")->num, 7);
	dc__spec_free(s);

	parse_err("delay:5", -EINVAL, "delay:5: at 6: missing inner spec");
	parse_err("delay:5;p99=1;p99=2:mem:1G", -EINVAL,
		  "at 14: option 'p99' given twice");
	parse_err("delay:5;p99=fast:mem:1G", -EINVAL,
		  "at 12: option 'p99': invalid number 'fast' (a decimal number)");
	parse_err("delay:5;p99=99999999999999999999:mem:1G", -EINVAL,
		  "option 'p99': too large");
	parse_err("delay:5;p99:mem:1G", -EINVAL,
		  "at 8: option 'p99' needs a value (p99=N)");
}
END_TEST

START_TEST(test_lists)
{
	struct dc_spec *s = parse_ok("striped;chunk=64K:[mem:1G,memdiff:mem:1G]");

	ck_assert_str_eq(s->form->name, "striped");
	ck_assert_uint_eq(opt(s, "chunk")->num, 64 << 10);
	ck_assert_uint_eq(s->nchildren, 2);
	check_leaf(s->children[0], "mem", "1G");
	ck_assert_uint_eq(s->children[0]->pos, 19);
	ck_assert_str_eq(s->children[1]->text, "memdiff:mem:1G");
	ck_assert_uint_eq(s->children[1]->pos, 26);
	dc__spec_free(s);

	/* Nested lists split only at depth 1. */
	s = parse_ok("striped:[striped:[mem:1M,mem:1M],delay:1:striped:[mem:1M,"
		     "mem:1M],/x:y]");
	ck_assert_uint_eq(s->nchildren, 3);
	ck_assert_uint_eq(s->children[0]->nchildren, 2);
	ck_assert_str_eq(s->children[0]->text, "striped:[mem:1M,mem:1M]");
	ck_assert_uint_eq(s->children[1]->children[0]->nchildren, 2);
	check_leaf(s->children[2], "file", "/x:y");
	dc__spec_free(s);

	s = parse_ok("striped;chunk=4K;sectors=4096:[mem:1M]");
	ck_assert_uint_eq(s->nchildren, 1);
	ck_assert_uint_eq(opt(s, "sectors")->num, 4096);
	dc__spec_free(s);

	parse_err("striped:[]", -EINVAL, "striped:[]: at 8: empty list");
	parse_err("striped:mem:1G", -EINVAL,
		  "at 8: missing '[' to open the list; expected striped:[SPEC,SPEC,...]");
	parse_err("striped:[mem:1G", -EINVAL, "at 15: missing ']' to close the list");
	parse_err("striped:[mem:1G,[mem:1G]", -EINVAL, "missing ']'");
	parse_err("striped:[mem:1G]x", -EINVAL, "at 16: unexpected text after ']'");
	parse_err("striped:[mem:1G,,mem:1G]", -EINVAL, "at 16: empty list member");
	parse_err("striped:[,mem:1G]", -EINVAL, "at 9: empty list member");
	parse_err("striped:[mem:1G,]", -EINVAL, "at 16: empty list member");
	parse_err("striped:", -EINVAL, "at 8: missing bracketed list");
	parse_err("striped", -EINVAL, "striped: at 7: missing ':' after the kind");
	/* An error inside a member names the member and its position. */
	parse_err("striped:[mem:1G,bogus:1]", -ENOENT,
		  "bogus:1: at 16: invalid disk kind 'bogus'");
	parse_err("striped;chunk=1x:[mem:1G]", -EINVAL,
		  "at 14: option 'chunk': invalid size '1x'");
}
END_TEST

START_TEST(test_option_errors)
{
	struct dc_spec *s;

	parse_err("file:/x;direct=1", -EINVAL,
		  "at 8: option 'direct' is a flag and takes no value (write ';direct')");
	parse_err("file:/x;create", -EINVAL,
		  "at 8: option 'create' needs a value (create=SIZE)");
	parse_err("file:/x;direct;direct", -EINVAL, "at 15: option 'direct' given twice");
	parse_err("file:/x;;direct", -EINVAL, "at 8: empty option name");
	parse_err("file:/x;=5", -EINVAL, "at 8: empty option name");
	parse_err("file:/x;create=1q", -EINVAL, "option 'create': invalid size '1q'");
	parse_err("mem:1G;direct", -EINVAL,
		  "at 7: unknown option 'direct' (mem takes no options)");
	/* Options on the kind are collected with those on fields. */
	s = parse_ok("file;direct:/x;create=1M");
	ck_assert_uint_eq(s->nopts, 2);
	ck_assert_str_eq(s->opts[0].name, "direct");
	ck_assert_uint_eq(opt(s, "create")->num, 1 << 20);
	dc__spec_free(s);
	parse_err("file;direct:/x;direct", -EINVAL, "option 'direct' given twice");

	/* STRING options, and forms without fields. */
	s = parse_ok("zero;ro;label=a b=c");
	ck_assert_str_eq(s->form->name, "zero");
	ck_assert_uint_eq(s->nfields, 0);
	ck_assert_str_eq(opt(s, "label")->value, "a b=c");
	dc__spec_free(s);
	s = parse_ok("zero;label=");
	ck_assert_str_eq(opt(s, "label")->value, "");
	dc__spec_free(s);
	s = parse_ok("zero:");
	ck_assert_uint_eq(s->nopts, 0);
	dc__spec_free(s);
	parse_err("zero;label", -EINVAL, "option 'label' needs a value (label=TEXT)");
	parse_err("zero:x", -EINVAL,
		  "zero:x: at 4: unexpected text after the kind; expected zero[;ro]");
}
END_TEST

START_TEST(test_structure_errors)
{
	parse_err("", -EINVAL, "empty spec; expected KIND:ARG or an absolute path");
	parse_err(":x", -EINVAL, ":x: at 0: missing disk kind");
	parse_err(";x:y", -EINVAL, "missing disk kind");
	parse_err("memdiff", -EINVAL, "memdiff: at 7: missing ':' after the kind");
	parse_err("memdiff:", -EINVAL, "memdiff:: at 8: missing inner spec");
	parse_err("blob:flat", -EINVAL, "blob:flat: at 5: missing field 2 of 2");
	parse_err("crypt:xts-aes-256", -EINVAL, "at 6: missing field 2 of 2");
	parse_err("Mem:1G", -ENOENT, "invalid disk kind 'Mem'");
	parse_err("../x:1", -ENOENT, "invalid disk kind '../x'");
	/* An error deep inside names the innermost element and its position. */
	parse_err("memdiff:crypt:xts-aes-256:key.bin", -EINVAL,
		  "crypt:xts-aes-256:key.bin: at 26: missing inner spec");
	parse_err("prwrap:memdiff:sqlite:x", -ENOENT,
		  "sqlite:x: at 15: invalid disk kind");
	ck_assert_int_eq(dc__spec_parse(NULL, &(struct dc_spec *){ 0 }), -EINVAL);
}
END_TEST

START_TEST(test_depth_limit)
{
	char spec[64 * 8 + 64] = "";
	struct dc_spec *s;

	for (int i = 0; i < SPEC_MAX_DEPTH; i++)
		strcat(spec, "memdiff:");
	strcat(spec, "mem:1G");
	s = parse_ok(spec);
	dc__spec_free(s);

	memmove(spec + 8, spec, strlen(spec) + 1);
	memcpy(spec, "memdiff:", 8);
	parse_err(spec, -ELOOP, "nested more than 64 deep");
}
END_TEST

START_TEST(test_extension_dispatch)
{
	struct dc_spec *s;

	s = parse_ok("file:/img/a.vhd");
	check_leaf(s, "vhd", "/img/a.vhd");
	dc__spec_free(s);
	s = parse_ok("/img/A.VHD;create=1M"); /* bare, any case */
	check_leaf(s, "vhd", "/img/A.VHD");
	ck_assert_uint_eq(opt(s, "create")->num, 1 << 20);
	dc__spec_free(s);
	s = parse_ok("memdiff:file:/img/b.vhdx");
	check_leaf(s->children[0], "vhdx", "/img/b.vhdx");
	dc__spec_free(s);
	s = parse_ok("file:/img/a.vhd.raw");
	check_leaf(s, "file", "/img/a.vhd.raw");
	dc__spec_free(s);
	/* The options are the dispatched form's. */
	parse_err("file:/img/a.vhd;direct", -EINVAL,
		  "unknown option 'direct' (accepted: create=SIZE); expected "
		  "vhd:PATH[;create=SIZE]");

	/* No vhd plugin: fixed VHDs still open through vhd1. */
	stub_missing[0] = "vhd";
	s = parse_ok("file:/img/a.vhd");
	check_leaf(s, "vhd1", "/img/a.vhd");
	ck_assert_str_eq(s->plugin->name, "vhd1");
	dc__spec_free(s);

	/* Neither: never fall back to raw. */
	stub_missing[1] = "vhd1";
	parse_err("file:/img/a.vhd", -ENOENT,
		  "file:/img/a.vhd: at 5: '.vhd' images need the vhd or vhd1 plugin "
		  "and none is installed (a VHD is never opened as a raw file: its "
		  "footer would show as data)");
	parse_err("/img/a.vhd", -ENOENT, "/img/a.vhd: at 0: '.vhd' images need");
	stub_missing[2] = "vhdx";
	parse_err("file:/img/b.vhdx", -ENOENT,
		  "'.vhdx' images need the vhdx plugin and none is installed (a VHDX is "
		  "never opened as a raw file: its headers would show as data)");
	ck_assert_ptr_null(strstr(dc_last_error(), "expected"));
	s = parse_ok("file:/img/c.img"); /* raw files are unaffected */
	check_leaf(s, "file", "/img/c.img");
	dc__spec_free(s);

	/* A refused vhd plugin is reported, not skipped for vhd1. */
	memset(stub_missing, 0, sizeof(stub_missing));
	stub_refused = "vhd";
	parse_err("file:/img/a.vhd", -EPERM,
		  "file:/img/a.vhd: at 5: plugin /p/vhd.so: writable by group or "
		  "others (mode 0666)");
	stub_refused = NULL;

	/* The file plugin missing: raw paths fail with the registry's message. */
	stub_missing[0] = "file";
	parse_err("/img/c.img", -ENOENT, "invalid disk kind 'file'");
	s = parse_ok("/img/a.vhd");
	check_leaf(s, "vhd", "/img/a.vhd");
	dc__spec_free(s);
	stub_missing[0] = NULL;
}
END_TEST

START_TEST(test_generated_syntax)
{
	/* Forms without a syntax string get one from their shape. */
	parse_err("striped:x", -EINVAL, "expected striped:[SPEC,SPEC,...]");
}
END_TEST

static Suite *spec_suite(void)
{
	Suite *s = suite_create("spec");
	TCase *tc = tcase_create("size");

	tcase_add_test(tc, test_size_units);
	tcase_add_test(tc, test_size_errors);
	suite_add_tcase(s, tc);

	tc = tcase_create("openvmm");
	tcase_add_test(tc, test_parse_file_opts);
	tcase_add_test(tc, test_parse_memory_disk);
	tcase_add_test(tc, test_parse_memory_diff_disk);
	tcase_add_test(tc, test_parse_sqlite_disk);
	tcase_add_test(tc, test_parse_sqlite_diff_disk);
	tcase_add_test(tc, test_parse_autocache_sqlite_disk);
	tcase_add_test(tc, test_parse_disk_errors);
	tcase_add_test(tc, test_parse_errors);
	suite_add_tcase(s, tc);

	tc = tcase_create("grammar");
	tcase_add_test(tc, test_bare_paths);
	tcase_add_test(tc, test_bare_word_file);
	tcase_add_test(tc, test_delay);
	tcase_add_test(tc, test_lists);
	tcase_add_test(tc, test_option_errors);
	tcase_add_test(tc, test_structure_errors);
	tcase_add_test(tc, test_depth_limit);
	tcase_add_test(tc, test_extension_dispatch);
	tcase_add_test(tc, test_generated_syntax);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(spec_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
