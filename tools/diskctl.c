/* SPDX-License-Identifier: MIT */
/*
 * diskctl: the command-line front end of diskcore, and its reference consumer.
 * It uses only the public consumer API (diskcore.h); plugin.h is included for the
 * descriptor layout that `diskctl plugins` prints, never for core services.
 *
 * Exit status: 0 success, 1 an operation failed, 2 wrong usage.
 */
#include <diskcore/diskcore.h>
#include <diskcore/plugin.h>

#include "serve.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CTL_EXIT_FAIL 1
#define CTL_EXIT_USAGE 2
#define CTL_ALIGN 4096

struct ctl_cmd {
	const char *name;
	const char *summary;
	const char *usage; /* full --help text after the "usage:" line */
	int (*run)(int argc, char **argv);
};

static const struct ctl_cmd *ctl_current;

/* --- small helpers -------------------------------------------------------- */

static void ctl_help(const struct ctl_cmd *c, FILE *f)
{
	fprintf(f, "usage: diskctl %s", c->usage);
}

__attribute__((noreturn, format(printf, 1, 2))) static void ctl_usage(const char *fmt,
								      ...)
{
	va_list ap;

	fprintf(stderr, "diskctl %s: ", ctl_current->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'diskctl %s --help'.\n", ctl_current->name);
	exit(CTL_EXIT_USAGE);
}

__attribute__((format(printf, 1, 2))) static void ctl_err(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "diskctl %s: ", ctl_current->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* An I/O result with its errno detail, e.g. "I/O error: No space left on device
 * (ENOSPC)": the name too, which scripts and bug reports can match. */
static const char *ctl_io_error(int result, int detail, char *buf, size_t len)
{
	const char *name = detail > 0 ? strerrorname_np(detail) : NULL;

	if (result == DC_E_IO && detail > 0)
		snprintf(buf, len, "%s: %s (%s)", dc_strerror(result), strerror(detail),
			 name ? name : "?");
	else
		snprintf(buf, len, "%s", dc_strerror(result));
	return buf;
}

/* One blocking request (buf NULL: a flush), keeping the completion's errno
 * detail: on failure msg holds ctl_io_error()'s text. */
static int ctl_io(dc_disk *d, uint32_t op, uint64_t sector, void *buf, size_t len,
		  uint32_t flags, char *msg, size_t msglen)
{
	struct iovec iov = { buf, len };
	struct dc_io io = { .op = op,
			    .flags = flags,
			    .sector = sector,
			    .iov = buf ? &iov : NULL,
			    .iovcnt = buf ? 1 : 0 };
	int detail = 0, rc = dc_execute(d, &io, &detail);

	if (rc < 0)
		ctl_io_error(rc, detail, msg, msglen);
	return rc;
}

/* A control-path failure: the core's message names the element at fault. */
static const char *ctl_last_error(int rc)
{
	const char *m = dc_last_error();

	if (m && *m)
		return m;
	return strerror(-rc);
}

static void *ctl_xalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);

	if (!p) {
		fprintf(stderr, "diskctl: out of memory\n");
		exit(CTL_EXIT_FAIL);
	}
	return p;
}

static void *ctl_aligned(size_t n)
{
	void *p = NULL;

	if (posix_memalign(&p, CTL_ALIGN, n ? n : CTL_ALIGN)) {
		fprintf(stderr, "diskctl: out of memory (%zu bytes)\n", n);
		exit(CTL_EXIT_FAIL);
	}
	return p;
}

static char *ctl_strdup(const char *s)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d) {
		fprintf(stderr, "diskctl: out of memory\n");
		exit(CTL_EXIT_FAIL);
	}
	return d;
}

static uint64_t ctl_clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t ctl_now_ns(void)
{
	return ctl_clock_ns(CLOCK_MONOTONIC);
}

/* A plain non-negative integer (decimal, or 0x hex); no sign, no junk. */
static bool ctl_parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return false;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static uint64_t ctl_arg_u64(const char *what, const char *s, uint64_t min, uint64_t max)
{
	uint64_t v;

	if (!ctl_parse_u64(s, &v))
		ctl_usage("%s: '%s' is not a non-negative integer", what, s);
	if (v < min || v > max)
		ctl_usage("%s: %s is out of range (%" PRIu64 "..%" PRIu64 ")", what, s,
			  min, max);
	return v;
}

/* A SIZE as the spec grammar reads it; the CLI also takes "4k" like qemu-img. */
static uint64_t ctl_arg_size(const char *what, const char *s)
{
	char buf[64];
	uint64_t v;
	size_t i;

	for (i = 0; s && s[i] && i + 1 < sizeof(buf); i++)
		buf[i] = (char)toupper((unsigned char)s[i]);
	buf[i] = '\0';
	if (!s || !*s || s[i] || *s == '-' || dc_parse_size(buf, &v) < 0)
		ctl_usage("%s: '%s' is not a size (e.g. 4096, 4K, 1M)", what, s ? s : "");
	return v;
}

static void ctl_human_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const units[] = {
		"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"
	};
	double v = (double)n;
	unsigned u = 0;

	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", n);
	else
		snprintf(buf, len, "%.2f %s", v, units[u]);
}

static void ctl_json_str(FILE *f, const char *s)
{
	if (!s) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}

static const char *ctl_bool(bool b)
{
	return b ? "true" : "false";
}

static const char *ctl_unmap_name(uint32_t b)
{
	switch (b) {
	case DC_UNMAP_UNSPECIFIED:
		return "unspecified";
	case DC_UNMAP_IGNORED:
		return "ignored";
	case DC_UNMAP_ZEROES:
		return "zeroes";
	}
	return "unknown";
}

/* Open a spec, reporting the core's message on failure. */
static dc_disk *ctl_open(const char *spec, uint32_t flags)
{
	dc_disk *d = NULL;
	int rc = dc_open(spec, flags, &d);

	if (rc < 0) {
		/* The core's message names the element at fault, with any URL
		 * credentials removed; the spec itself is not echoed. */
		ctl_err("cannot open: %s", ctl_last_error(rc));
		if (!(flags & DC_OPEN_READ_ONLY) &&
		    (rc == -EROFS || rc == -EACCES || rc == -EPERM))
			fprintf(stderr, "(open it read-only with --ro)\n");
		return NULL;
	}
	return d;
}

/* Flush, treating a chain with nothing to flush as success. */
static int ctl_flush(dc_disk *d, const char *spec)
{
	char msg[128];
	int rc = ctl_io(d, DC_OP_FLUSH, 0, NULL, 0, 0, msg, sizeof(msg));

	if (rc == DC_E_UNSUPPORTED)
		return 0;
	if (rc < 0)
		ctl_err("flush '%s': %s", spec, msg);
	return rc;
}

/* Parse a subcommand's options. getopt permutes, so options may follow operands.
 * Handles --help; returns the option character, or -1 at the end. */
static int ctl_getopt(int argc, char **argv, const char *shortopts,
		      const struct option *longopts)
{
	char opts[16];
	int c;

	/* A leading ':' makes getopt report a missing argument as ':'. */
	snprintf(opts, sizeof(opts), ":%s", shortopts);
	opterr = 0;
	c = getopt_long(argc, argv, opts, longopts, NULL);
	if (c == 'h') {
		ctl_help(ctl_current, stdout);
		exit(0);
	}
	if (c == '?') {
		if (optopt)
			ctl_usage("unknown option '-%c'", optopt);
		ctl_usage("unknown option '%s'", argv[optind - 1]);
	}
	if (c == ':')
		ctl_usage("option '%s' needs an argument", argv[optind - 1]);
	return c;
}

static void ctl_operands(int argc, char **argv, int min, int max, const char *what)
{
	int n = argc - optind;

	if (n < min)
		ctl_usage("missing %s", what);
	if (n > max)
		ctl_usage("unexpected argument '%s'", argv[optind + max]);
}

/* --- info ----------------------------------------------------------------- */

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
	       ctl_unmap_name(in->unmap_behavior), in->optimal_unmap_sectors,
	       ctl_bool(in->flags & DC_INFO_PR), ctl_bool(in->flags & DC_INFO_EJECT));
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
	       ctl_unmap_name(in->unmap_behavior), in->optimal_unmap_sectors);
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

static int ctl_info(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "ro", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool json = false;
	uint32_t flags = 0;
	struct ctl_chain ch = { 0 };
	struct dc_info in;
	const char *spec;
	dc_disk *d;
	int c, rc;

	while ((c = ctl_getopt(argc, argv, "h", lo)) != -1) {
		if (c == 'j')
			json = true;
		else if (c == 'r')
			flags |= DC_OPEN_READ_ONLY;
	}
	ctl_operands(argc, argv, 1, 1, "SPEC");
	spec = argv[optind];
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
	if (json)
		ctl_info_json(spec, &in, &ch);
	else
		ctl_info_human(spec, &in, &ch);
	ctl_chain_free(&ch);
	dc_close(d);
	return 0;
}

/* --- plugins -------------------------------------------------------------- */

struct ctl_plugins {
	bool json;
	unsigned n;
	unsigned refused;
};

static const char *ctl_kind_name(uint32_t k)
{
	switch (k) {
	case DC_KIND_BACKEND:
		return "backend";
	case DC_KIND_DECORATOR:
		return "decorator";
	case DC_KIND_LAYER:
		return "layer";
	}
	return "unknown";
}

static const char *ctl_opt_type(uint32_t t)
{
	switch (t) {
	case DC_OPT_FLAG:
		return "flag";
	case DC_OPT_STRING:
		return "string";
	case DC_OPT_SIZE:
		return "size";
	case DC_OPT_UINT:
		return "uint";
	}
	return "unknown";
}

static const char *ctl_opt_syntax(uint32_t t)
{
	switch (t) {
	case DC_OPT_FLAG:
		return "";
	case DC_OPT_STRING:
		return "=TEXT";
	case DC_OPT_SIZE:
		return "=SIZE";
	case DC_OPT_UINT:
		return "=N";
	}
	return "=?";
}

static const char *ctl_child_name(uint32_t c)
{
	switch (c) {
	case DC_CHILD_NONE:
		return "none";
	case DC_CHILD_ONE:
		return "one";
	case DC_CHILD_LIST:
		return "list";
	}
	return "unknown";
}

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
	printf(", \"kind\": \"%s\", \"version\": ", ctl_kind_name(p->kind));
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
		       f->nfields, ctl_child_name(f->child),
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
	       p->version ? p->version : "?", ctl_kind_name(p->kind),
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

static int ctl_plugins(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct ctl_plugins st = { 0 };
	const char *path;
	int c, rc;

	while ((c = ctl_getopt(argc, argv, "h", lo)) != -1)
		if (c == 'j')
			st.json = true;
	ctl_operands(argc, argv, 0, 0, "");
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

/* --- polled queues -------------------------------------------------------- */

/* Wait until one of the DC_QUEUE_POLL queues may have completions, or timeout.
 * The caller reaps each queue dry before waiting, so a wakeup is never lost:
 * a completion after the last reap has already signalled its eventfd. */
static void ctl_queues_wait(dc_queue *const *qs, int n, int timeout_ms)
{
	struct pollfd pfd[4];
	uint64_t v;

	for (int i = 0; i < n; i++) {
		pfd[i].fd = dc_queue_fd(qs[i]);
		pfd[i].events = POLLIN;
		pfd[i].revents = 0;
	}
	if (poll(pfd, n, timeout_ms) <= 0)
		return;
	for (int i = 0; i < n; i++)
		if (pfd[i].revents & POLLIN) {
			ssize_t r = read(pfd[i].fd, &v, sizeof(v));
			(void)r;
		}
}

/* --- cp ------------------------------------------------------------------- */

enum ctl_cp_state { CTL_CP_IDLE, CTL_CP_READ, CTL_CP_WRITE, CTL_CP_UNMAP };
static const char *const ctl_cp_names[] = { "idle", "read", "write", "unmap" };

struct ctl_cp_slot {
	enum ctl_cp_state state;
	uint64_t off; /* byte offset of the chunk */
	size_t len;
	unsigned char *buf;
	struct iovec iov;
};

struct ctl_cp {
	const char *src_spec, *dst_spec;
	dc_disk *src, *dst;
	dc_queue *sq, *dq;
	uint32_t sss, dss; /* sector sizes */
	uint64_t total, next, done, unmapped;
	bool sparse, can_unmap, quiet, progress;
	int err;
	uint64_t start_ns, last_draw_ns;
};

static bool ctl_is_zero(const unsigned char *buf, size_t len)
{
	const uint64_t *w = (const uint64_t *)buf;

	/* Chunks are 4 KiB-aligned and a multiple of 512 bytes. */
	for (size_t i = 0; i < len / 8; i += 8)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] |
		    w[i + 6] | w[i + 7])
			return false;
	return true;
}

static int ctl_cp_submit(struct ctl_cp *cp, struct ctl_cp_slot *s, enum ctl_cp_state st)
{
	struct dc_io io = { 0 };
	dc_queue *q = st == CTL_CP_READ ? cp->sq : cp->dq;
	int rc;

	s->state = st;
	s->iov.iov_base = s->buf;
	s->iov.iov_len = s->len;
	io.user_data = s;
	if (st == CTL_CP_READ) {
		io.op = DC_OP_READ;
		io.sector = s->off / cp->sss;
	} else {
		io.op = st == CTL_CP_WRITE ? DC_OP_WRITE : DC_OP_UNMAP;
		io.sector = s->off / cp->dss;
	}
	if (st == CTL_CP_UNMAP) {
		io.count = s->len / cp->dss;
	} else {
		io.iov = &s->iov;
		io.iovcnt = 1;
	}
	rc = dc_submit(q, &io);
	if (rc < 0) {
		s->state = CTL_CP_IDLE;
		ctl_err("submit to '%s': %s",
			st == CTL_CP_READ ? cp->src_spec : cp->dst_spec, dc_strerror(rc));
		if (!cp->err)
			cp->err = rc;
	}
	return rc;
}

/* Give an idle slot the next chunk, unless done or failed. */
static void ctl_cp_start(struct ctl_cp *cp, struct ctl_cp_slot *s, size_t chunk)
{
	if (cp->err || cp->next >= cp->total) {
		s->state = CTL_CP_IDLE;
		return;
	}
	s->off = cp->next;
	s->len = cp->total - cp->next < chunk ? cp->total - cp->next : chunk;
	cp->next += s->len;
	ctl_cp_submit(cp, s, CTL_CP_READ);
}

static void ctl_cp_complete(struct ctl_cp *cp, const struct dc_completion *c,
			    size_t chunk)
{
	struct ctl_cp_slot *s = c->user_data;
	enum ctl_cp_state st = s->state;

	s->state = CTL_CP_IDLE;
	if (st == CTL_CP_UNMAP && c->result == DC_E_UNSUPPORTED) {
		/* Unmap is a hint this chain does not take: write the zeroes. */
		cp->can_unmap = false;
		ctl_cp_submit(cp, s, CTL_CP_WRITE);
		return;
	}
	if (c->result < 0) {
		char msg[128];

		if (!cp->err)
			cp->err = c->result;
		ctl_err("%s '%s' at byte %" PRIu64 " (%zu bytes): %s", ctl_cp_names[st],
			st == CTL_CP_READ ? cp->src_spec : cp->dst_spec, s->off, s->len,
			ctl_io_error(c->result, c->detail, msg, sizeof(msg)));
		return;
	}
	if (st == CTL_CP_READ) {
		if (cp->sparse && cp->can_unmap && ctl_is_zero(s->buf, s->len))
			ctl_cp_submit(cp, s, CTL_CP_UNMAP);
		else
			ctl_cp_submit(cp, s, CTL_CP_WRITE);
		return;
	}
	cp->done += s->len;
	if (st == CTL_CP_UNMAP)
		cp->unmapped += s->len;
	ctl_cp_start(cp, s, chunk);
}

static void ctl_cp_draw(struct ctl_cp *cp, bool final)
{
	uint64_t now = ctl_now_ns();
	double secs, pct;
	char a[32], b[32];
	int fill;

	if (!cp->progress || (!final && now - cp->last_draw_ns < 100000000u))
		return;
	cp->last_draw_ns = now;
	secs = (now - cp->start_ns) / 1e9;
	pct = cp->total ? 100.0 * cp->done / cp->total : 100.0;
	fill = (int)(pct * 30 / 100);
	ctl_human_bytes(cp->done, a, sizeof(a));
	ctl_human_bytes(cp->total, b, sizeof(b));
	fprintf(stderr, "\r[%.*s%*s] %5.1f%% %s / %s %7.1f MB/s ", fill,
		"##############################", 30 - fill, "", pct, a, b,
		secs > 0 ? cp->done / secs / 1e6 : 0.0);
	if (final)
		fprintf(stderr, "\n");
}

static int ctl_cp_run(struct ctl_cp *cp, unsigned nslots, size_t chunk)
{
	struct ctl_cp_slot *slots = ctl_xalloc(nslots * sizeof(*slots));
	struct dc_completion comps[32];
	dc_queue *qs[2] = { cp->sq, cp->dq };
	unsigned busy;

	for (unsigned i = 0; i < nslots; i++)
		slots[i].buf = ctl_aligned(chunk);
	for (unsigned i = 0; i < nslots; i++)
		ctl_cp_start(cp, &slots[i], chunk);
	for (;;) {
		int got = 0;

		for (int qi = 0; qi < 2; qi++) {
			int n = dc_queue_reap(qs[qi], comps, 32);

			for (int i = 0; i < n; i++)
				ctl_cp_complete(cp, &comps[i], chunk);
			got += n > 0 ? n : 0;
		}
		ctl_cp_draw(cp, false);
		if (got)
			continue;
		busy = 0;
		for (unsigned i = 0; i < nslots; i++)
			busy += slots[i].state != CTL_CP_IDLE;
		if (!busy)
			break;
		ctl_queues_wait(qs, 2, 100);
	}
	for (unsigned i = 0; i < nslots; i++)
		free(slots[i].buf);
	free(slots);
	return cp->err;
}

static int ctl_cp(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "sparse", no_argument, NULL, 's' },
		{ "no-sparse", no_argument, NULL, 'S' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "bs", required_argument, NULL, 'b' },
		{ "qd", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct ctl_cp cp = { .sparse = true };
	struct dc_info si, di;
	uint64_t chunk = 1 << 20, qd = 16, dbytes;
	int c, rc = CTL_EXIT_FAIL;
	double secs;

	while ((c = ctl_getopt(argc, argv, "hq", lo)) != -1) {
		switch (c) {
		case 's':
			cp.sparse = true;
			break;
		case 'S':
			cp.sparse = false;
			break;
		case 'q':
			cp.quiet = true;
			break;
		case 'b':
			chunk = ctl_arg_size("--bs", optarg);
			if (chunk < 512 || chunk > (1u << 30) || (chunk & (chunk - 1)))
				ctl_usage("--bs must be a power of two from 512 to 1G");
			break;
		case 'd':
			qd = ctl_arg_u64("--qd", optarg, 1, 1024);
			break;
		}
	}
	ctl_operands(argc, argv, 2, 2, "SRC and DST");
	cp.src_spec = argv[optind];
	cp.dst_spec = argv[optind + 1];
	cp.src = ctl_open(cp.src_spec, DC_OPEN_READ_ONLY);
	if (!cp.src)
		return CTL_EXIT_FAIL;
	cp.dst = ctl_open(cp.dst_spec, 0);
	if (!cp.dst)
		goto out;
	dc_get_info(cp.src, &si);
	dc_get_info(cp.dst, &di);
	cp.sss = si.sector_size;
	cp.dss = di.sector_size;
	cp.total = dc_sector_count(cp.src) * cp.sss;
	dbytes = dc_sector_count(cp.dst) * cp.dss;
	if (dbytes < cp.total) {
		ctl_err("destination '%s' is %" PRIu64
			" bytes, smaller than the source '%s'"
			" (%" PRIu64 " bytes); make it at least as large",
			cp.dst_spec, dbytes, cp.src_spec, cp.total);
		goto out;
	}
	if (cp.total % cp.dss) {
		ctl_err("source size %" PRIu64 " is not a multiple of the destination's "
			"%" PRIu32 "-byte sectors",
			cp.total, cp.dss);
		goto out;
	}
	if (chunk < cp.sss)
		chunk = cp.sss;
	if (chunk < cp.dss)
		chunk = cp.dss;
	cp.can_unmap = di.unmap_behavior == DC_UNMAP_ZEROES;
	rc = dc_queue_open(cp.src, DC_QUEUE_POLL, &cp.sq);
	if (rc < 0) {
		ctl_err("queue on '%s': %s", cp.src_spec, ctl_last_error(rc));
		rc = CTL_EXIT_FAIL;
		goto out;
	}
	rc = dc_queue_open(cp.dst, DC_QUEUE_POLL, &cp.dq);
	if (rc < 0) {
		ctl_err("queue on '%s': %s", cp.dst_spec, ctl_last_error(rc));
		dc_queue_close(cp.sq);
		rc = CTL_EXIT_FAIL;
		goto out;
	}
	cp.progress = !cp.quiet && isatty(STDERR_FILENO);
	cp.start_ns = ctl_now_ns();
	rc = ctl_cp_run(&cp, (unsigned)qd, chunk);
	dc_queue_close(cp.sq);
	dc_queue_close(cp.dq);
	if (!rc)
		rc = ctl_flush(cp.dst, cp.dst_spec);
	secs = (ctl_now_ns() - cp.start_ns) / 1e9;
	if (cp.progress)
		ctl_cp_draw(&cp, true);
	if (rc < 0) {
		rc = CTL_EXIT_FAIL;
		goto out;
	}
	if (!cp.quiet) {
		char hb[32];

		ctl_human_bytes(cp.done, hb, sizeof(hb));
		printf("copied %" PRIu64 " bytes (%s) in %.3f s, %.1f MB/s; "
		       "%" PRIu64 " bytes unmapped\n",
		       cp.done, hb, secs, secs > 0 ? cp.done / secs / 1e6 : 0.0,
		       cp.unmapped);
	}
	rc = 0;
out:
	if (cp.dst)
		dc_close(cp.dst);
	dc_close(cp.src);
	return rc;
}

/* --- read / write --------------------------------------------------------- */

static void ctl_hexdump(const unsigned char *p, size_t len, uint64_t base)
{
	char line[128];

	for (size_t off = 0; off < len; off += 16) {
		size_t n = len - off < 16 ? len - off : 16;
		int k = snprintf(line, sizeof(line), "%08" PRIx64 ":", base + off);

		for (size_t i = 0; i < 16; i++) {
			if (i % 2 == 0)
				line[k++] = ' ';
			if (i < n)
				k += snprintf(line + k, sizeof(line) - k, "%02x",
					      p[off + i]);
			else
				k += snprintf(line + k, sizeof(line) - k, "  ");
		}
		line[k++] = ' ';
		line[k++] = ' ';
		for (size_t i = 0; i < n; i++) {
			unsigned char ch = p[off + i];

			line[k++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '.';
		}
		line[k++] = '\n';
		fwrite(line, 1, k, stdout);
	}
}

static int ctl_read(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "hex", no_argument, NULL, 'x' },
		{ "raw", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool raw = false;
	uint64_t sector, count, ss, done = 0;
	const char *spec;
	unsigned char *buf;
	dc_disk *d;
	int c, rc = 0;

	while ((c = ctl_getopt(argc, argv, "h", lo)) != -1)
		raw = c == 'r';
	ctl_operands(argc, argv, 3, 3, "SPEC SECTOR COUNT");
	spec = argv[optind];
	sector = ctl_arg_u64("SECTOR", argv[optind + 1], 0, UINT64_MAX);
	count = ctl_arg_u64("COUNT", argv[optind + 2], 0, UINT64_MAX);
	d = ctl_open(spec, DC_OPEN_READ_ONLY);
	if (!d)
		return CTL_EXIT_FAIL;
	ss = dc_sector_size(d);
	buf = ctl_aligned(1 << 20);
	while (done < count) {
		uint64_t n = count - done;
		char msg[128];

		if (n > (1 << 20) / ss)
			n = (1 << 20) / ss;
		rc = ctl_io(d, DC_OP_READ, sector + done, buf, n * ss, 0, msg,
			    sizeof(msg));
		if (rc < 0) {
			ctl_err("read '%s' sectors %" PRIu64 "+%" PRIu64
				" (disk has %" PRIu64 "): %s",
				spec, sector + done, n, dc_sector_count(d), msg);
			break;
		}
		if (raw)
			fwrite(buf, 1, n * ss, stdout);
		else
			ctl_hexdump(buf, n * ss, (sector + done) * ss);
		done += n;
	}
	free(buf);
	dc_close(d);
	if (fflush(stdout) == EOF && !rc) {
		ctl_err("writing output: %s", strerror(errno));
		rc = -EIO;
	}
	return rc < 0 ? CTL_EXIT_FAIL : 0;
}

/* Read a whole file (or stdin for "-") into an aligned buffer. */
static unsigned char *ctl_slurp(const char *path, size_t *len)
{
	int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
	size_t cap = 1 << 16, n = 0;
	unsigned char *buf;

	if (fd < 0) {
		ctl_err("%s: %s", path, strerror(errno));
		return NULL;
	}
	buf = ctl_aligned(cap);
	for (;;) {
		ssize_t r;

		if (n == cap) {
			unsigned char *nb = ctl_aligned(cap * 2);

			memcpy(nb, buf, n);
			free(buf);
			buf = nb;
			cap *= 2;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ctl_err("%s: %s", path, strerror(errno));
			free(buf);
			buf = NULL;
			break;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (fd != STDIN_FILENO)
		close(fd);
	*len = n;
	return buf;
}

static int ctl_write(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "pattern", required_argument, NULL, 'p' },
		{ "count", required_argument, NULL, 'c' },
		{ "file", required_argument, NULL, 'f' },
		{ "fua", no_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *pattern = NULL, *file = NULL, *count_s = NULL, *spec;
	uint64_t sector, ss, count = 0, byte = 0;
	uint32_t flags = 0;
	unsigned char *buf;
	char msg[128];
	size_t len;
	dc_disk *d;
	int c, rc;

	while ((c = ctl_getopt(argc, argv, "h", lo)) != -1) {
		switch (c) {
		case 'p':
			pattern = optarg;
			break;
		case 'c':
			count_s = optarg;
			break;
		case 'f':
			file = optarg;
			break;
		case 'F':
			flags |= DC_IO_FUA;
			break;
		}
	}
	ctl_operands(argc, argv, 2, 2, "SPEC SECTOR");
	spec = argv[optind];
	sector = ctl_arg_u64("SECTOR", argv[optind + 1], 0, UINT64_MAX);
	if (!!pattern == !!file)
		ctl_usage("give either --pattern BYTE --count N or --file F");
	if (pattern && !count_s)
		ctl_usage("--pattern needs --count N (sectors)");
	if (file && count_s)
		ctl_usage("--count goes with --pattern, not --file");
	if (count_s)
		count = ctl_arg_u64("--count", count_s, 1, UINT32_MAX);
	if (pattern)
		byte = ctl_arg_u64("--pattern", pattern, 0, 255);
	d = ctl_open(spec, 0);
	if (!d)
		return CTL_EXIT_FAIL;
	ss = dc_sector_size(d);
	if (pattern) {
		len = count * ss;
		buf = ctl_aligned(len);
		memset(buf, (int)byte, len);
	} else {
		buf = ctl_slurp(file, &len);
		if (!buf) {
			dc_close(d);
			return CTL_EXIT_FAIL;
		}
		if (len == 0 || len % ss) {
			ctl_err("%s is %zu bytes; expected a non-zero multiple of the "
				"%" PRIu64 "-byte sector size",
				file, len, ss);
			free(buf);
			dc_close(d);
			return CTL_EXIT_FAIL;
		}
	}
	rc = ctl_io(d, DC_OP_WRITE, sector, buf, len, flags, msg, sizeof(msg));
	if (rc < 0)
		ctl_err("write '%s' sectors %" PRIu64 "+%" PRIu64 " (disk has %" PRIu64
			"): %s",
			spec, sector, (uint64_t)len / ss, dc_sector_count(d), msg);
	else
		rc = ctl_flush(d, spec);
	if (rc == 0)
		printf("wrote %zu bytes at sector %" PRIu64 "\n", len, sector);
	free(buf);
	dc_close(d);
	return rc < 0 ? CTL_EXIT_FAIL : 0;
}

/* --- bench ---------------------------------------------------------------- */

/* Latency histogram: 8 linear sub-buckets per power of two of nanoseconds,
 * so a percentile is within 12.5% of the truth. */
#define CTL_HSUB 3
#define CTL_HBUCKETS (64 << CTL_HSUB)

static inline unsigned ctl_hist_index(uint64_t ns)
{
	unsigned msb;

	if (ns < (1u << CTL_HSUB))
		return (unsigned)ns;
	msb = 63 - (unsigned)__builtin_clzll(ns);
	return ((msb - CTL_HSUB + 1) << CTL_HSUB) |
	       (unsigned)((ns >> (msb - CTL_HSUB)) & ((1u << CTL_HSUB) - 1));
}

/* The midpoint of a bucket, in nanoseconds. */
static double ctl_hist_value(unsigned idx)
{
	unsigned e = idx >> CTL_HSUB, m = idx & ((1u << CTL_HSUB) - 1);
	double lo, width;

	if (e == 0)
		return idx;
	lo = ldexp((double)((1u << CTL_HSUB) | m), (int)e - 1);
	width = ldexp(1.0, (int)e - 1);
	return lo + width / 2;
}

enum ctl_rw { CTL_READ, CTL_WRITE, CTL_RANDREAD, CTL_RANDWRITE };

struct ctl_bench {
	const char *spec;
	dc_disk *disk;
	enum ctl_rw rw;
	uint64_t bs, qd, nthreads, count, nblocks;
	uint64_t spb; /* sectors per block */
	double seconds;
	bool poll_mode;
	bool wait_mode;		     /* queues are driven by dc_queue_wait() */
	uint64_t start_ns, deadline; /* deadline in ticks */
	uint64_t cpu_ns;	     /* CPU time of the whole process in the run */
	pthread_barrier_t barrier;
	atomic_bool stop;
};

struct ctl_bthread;

struct ctl_bslot {
	struct ctl_bthread *t;
	struct ctl_bslot *next;
	struct iovec iov;
	uint64_t sector;
	uint64_t start; /* ticks */
	uint64_t end;
	int result;
	int detail;
};

struct ctl_bthread {
	_Alignas(64) struct ctl_bench *b;
	pthread_t tid;
	unsigned idx;
	dc_queue *q;
	struct ctl_bslot *slots;
	struct ctl_bslot *ready;			 /* owner thread only */
	_Alignas(64) _Atomic(struct ctl_bslot *) remote; /* from other threads */
	atomic_int sleeping;
	atomic_int foreign; /* callbacks on other threads still using this */
	_Alignas(64) uint64_t rng;
	uint64_t seq_next, seq_lo, seq_hi; /* in blocks */
	uint64_t quota, issued, done;
	unsigned inflight;
	bool stop;
	bool now_valid; /* now: an inline completion's time, the next start */
	uint64_t now;
	struct dc_io io;
	uint64_t hist[CTL_HBUCKETS];
	uint64_t lat_sum, lat_max;
	uint64_t end_ns;
	int err, detail, open_err;
	uint64_t err_sector;
	char open_msg[256];
};

static __thread struct ctl_bthread *ctl_bself;

/* Bench timestamps are TSC ticks where the TSC is invariant (an rdtsc costs a
 * fraction of clock_gettime under kvm-clock), else nanoseconds. */
static bool ctl_use_tsc;
static double ctl_ticks_per_ns = 1.0;

static inline uint64_t ctl_ticks(void)
{
#if defined(__x86_64__) || defined(__i386__)
	if (ctl_use_tsc)
		return __builtin_ia32_rdtsc();
#endif
	return ctl_now_ns();
}

static void ctl_ticks_calibrate(void)
{
#if defined(__x86_64__) || defined(__i386__)
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[4096];
	bool constant = false, nonstop = false;
	uint64_t n0, t0, n1, t1;
	struct timespec ts = { 0, 20000000 };

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5))
			continue;
		constant = strstr(line, " constant_tsc") != NULL;
		nonstop = strstr(line, " nonstop_tsc") != NULL;
		break;
	}
	fclose(f);
	if (!constant || !nonstop || getenv("DISKCTL_NO_TSC"))
		return;
	n0 = ctl_now_ns();
	t0 = __builtin_ia32_rdtsc();
	nanosleep(&ts, NULL);
	n1 = ctl_now_ns();
	t1 = __builtin_ia32_rdtsc();
	if (t1 <= t0 || n1 <= n0)
		return;
	ctl_ticks_per_ns = (double)(t1 - t0) / (double)(n1 - n0);
	ctl_use_tsc = true;
#endif
}

static inline void ctl_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

static inline uint64_t ctl_xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

static inline uint64_t ctl_bench_block(struct ctl_bthread *t)
{
	const struct ctl_bench *b = t->b;
	uint64_t blk;

	if (b->rw == CTL_RANDREAD || b->rw == CTL_RANDWRITE)
		return (uint64_t)(((unsigned __int128)ctl_xorshift(&t->rng) *
				   b->nblocks) >>
				  64);
	blk = t->seq_next++;
	if (t->seq_next >= t->seq_hi)
		t->seq_next = t->seq_lo;
	return blk;
}

/* Account one finished request; the owner thread only. */
static inline void ctl_bench_account(struct ctl_bthread *t, struct ctl_bslot *s)
{
	uint64_t lat = s->end - s->start;

	t->inflight--;
	t->done++;
	t->hist[ctl_hist_index(lat)]++;
	t->lat_sum += lat;
	if (lat > t->lat_max)
		t->lat_max = lat;
	if (s->result < 0 && !t->err) {
		t->err = s->result;
		t->detail = s->detail;
		t->err_sector = s->sector;
	}
	if (s->result < 0 || s->end >= t->b->deadline)
		t->stop = true;
	s->next = t->ready;
	t->ready = s;
}

static void ctl_futex(atomic_int *addr, int op, int val, const struct timespec *ts)
{
	syscall(SYS_futex, addr, op | FUTEX_PRIVATE_FLAG, val, ts, NULL, 0);
}

static void ctl_bench_cb(const struct dc_completion *c)
{
	struct ctl_bslot *s = c->user_data;
	struct ctl_bthread *t = s->t;
	struct ctl_bslot *head;

	s->end = ctl_ticks();
	s->result = c->result;
	s->detail = c->detail;
	if (ctl_bself == t) {
		/* Inline in dc_submit(): the submit loop picks the slot up again,
		 * and this moment is when the next request starts. */
		t->now = s->end;
		t->now_valid = true;
		ctl_bench_account(t, s);
		return;
	}
	/* Another thread: hand the slot to the owner, which alone submits on q.
	 * The owner waits for `foreign` to drop before it lets t go. */
	atomic_fetch_add(&t->foreign, 1);
	head = atomic_load_explicit(&t->remote, memory_order_relaxed);
	do
		s->next = head;
	while (!atomic_compare_exchange_weak_explicit(
		&t->remote, &head, s, memory_order_release, memory_order_relaxed));
	if (atomic_load(&t->sleeping)) {
		atomic_store(&t->sleeping, 0);
		ctl_futex(&t->sleeping, FUTEX_WAKE, 1, NULL);
	}
	atomic_fetch_sub(&t->foreign, 1);
}

static inline bool ctl_bench_submit(struct ctl_bthread *t, struct ctl_bslot *s)
{
	int rc;

	if (t->stop || t->issued >= t->quota) {
		t->stop = true;
		return false;
	}
	s->sector = ctl_bench_block(t) * t->b->spb;
	/* t->io holds the fields that never change (op, iovcnt, cb). */
	t->io.sector = s->sector;
	t->io.iov = &s->iov;
	t->io.user_data = s;
	t->issued++;
	t->inflight++;
	s->start = t->now_valid ? t->now : ctl_ticks();
	t->now_valid = false;
	rc = dc_submit(t->q, &t->io);
	if (rc < 0) {
		t->inflight--;
		t->issued--;
		if (!t->err) {
			t->err = rc;
			t->err_sector = s->sector;
		}
		t->stop = true;
		return false;
	}
	return true;
}

/* Callback mode: completions inline in dc_submit() come back through t->ready,
 * completions on other threads through t->remote; only this thread submits. */
static void ctl_bench_loop_cb(struct ctl_bthread *t)
{
	ctl_bself = t;
	for (;;) {
		struct ctl_bslot *s, *l;

		while ((s = t->ready)) {
			t->ready = s->next;
			ctl_bench_submit(t, s);
		}
		if (!t->inflight)
			break;
		l = atomic_exchange_explicit(&t->remote, NULL, memory_order_acquire);
		if (!l) {
			for (int spin = 0; spin < 2000 && !l; spin++) {
				ctl_cpu_relax();
				l = atomic_exchange_explicit(&t->remote, NULL,
							     memory_order_acquire);
			}
		}
		if (!l) {
			struct timespec ts = { 0, 50000000 };

			atomic_store(&t->sleeping, 1);
			if (!atomic_load(&t->remote))
				ctl_futex(&t->sleeping, FUTEX_WAIT, 1, &ts);
			atomic_store(&t->sleeping, 0);
			if (ctl_ticks() >= t->b->deadline)
				t->stop = true;
			continue;
		}
		while (l) {
			s = l;
			l = l->next;
			ctl_bench_account(t, s);
		}
	}
	while (atomic_load(&t->foreign))
		ctl_cpu_relax();
	ctl_bself = NULL;
}

/* Callbacks on a queue driven by dc_queue_wait(): they run inside it, on
 * this thread, and resubmit from the ready list between calls. */
static void ctl_bench_loop_wait(struct ctl_bthread *t)
{
	ctl_bself = t;
	for (;;) {
		struct ctl_bslot *s, *l;
		int rc;

		while ((s = t->ready)) {
			t->ready = s->next;
			ctl_bench_submit(t, s);
		}
		if (!t->inflight)
			break;
		rc = dc_queue_wait(t->q, 50);
		if (rc < 0) {
			if (!t->err)
				t->err = rc;
			t->stop = true;
			break;
		}
		/* Callbacks that ran elsewhere (a worker pool in the chain). */
		l = atomic_exchange_explicit(&t->remote, NULL, memory_order_acquire);
		while ((s = l)) {
			l = l->next;
			ctl_bench_account(t, s);
		}
		if (rc == 0 && ctl_ticks() >= t->b->deadline)
			t->stop = true;
	}
	while (atomic_load(&t->foreign))
		ctl_cpu_relax();
	ctl_bself = NULL;
}

static void ctl_bench_loop_poll(struct ctl_bthread *t)
{
	struct dc_completion comps[64];

	while (t->ready) {
		struct ctl_bslot *s = t->ready;

		t->ready = s->next;
		ctl_bench_submit(t, s);
	}
	while (t->inflight) {
		int n = 0;
		uint64_t now;

		if (t->b->wait_mode)
			n = dc_queue_wait(t->q, 50);
		if (n >= 0)
			n = dc_queue_reap(t->q, comps, 64);
		if (n < 0) {
			if (!t->err)
				t->err = n;
			t->stop = true;
			break;
		}
		if (n == 0) {
			if (!t->b->wait_mode)
				ctl_queues_wait(&t->q, 1, 50);
			if (ctl_ticks() >= t->b->deadline)
				t->stop = true;
			continue;
		}
		now = ctl_ticks();
		for (int i = 0; i < n; i++) {
			struct ctl_bslot *s = comps[i].user_data;

			s->end = now;
			s->result = comps[i].result;
			s->detail = comps[i].detail;
			ctl_bench_account(t, s);
		}
		while (t->ready) {
			struct ctl_bslot *s = t->ready;

			t->ready = s->next;
			ctl_bench_submit(t, s);
		}
	}
}

static void *ctl_bench_thread(void *arg)
{
	struct ctl_bthread *t = arg;
	struct ctl_bench *b = t->b;
	int rc = dc_queue_open(b->disk, b->poll_mode || b->wait_mode ? DC_QUEUE_POLL : 0,
			       &t->q);

	if (rc < 0) {
		t->open_err = rc;
		snprintf(t->open_msg, sizeof(t->open_msg), "%s", ctl_last_error(rc));
		atomic_store(&b->stop, true);
	}
	pthread_barrier_wait(&b->barrier);
	if (rc < 0)
		return NULL;
	t->io.op = b->rw == CTL_READ || b->rw == CTL_RANDREAD ? DC_OP_READ : DC_OP_WRITE;
	t->io.iovcnt = 1;
	t->io.cb = b->poll_mode ? NULL : ctl_bench_cb;
	if (b->wait_mode)
		dc_queue_wait(t->q, 0); /* drive the queue from the first request */
	/* Another thread's queue failed to open: run nothing, report that. */
	t->stop = atomic_load(&b->stop);
	if (b->poll_mode)
		ctl_bench_loop_poll(t);
	else if (b->wait_mode)
		ctl_bench_loop_wait(t);
	else
		ctl_bench_loop_cb(t);
	t->end_ns = ctl_now_ns();
	dc_queue_close(t->q);
	return NULL;
}

/* Write non-zero data over the whole disk, so that reads of a RAM disk or a
 * sparse file measure real data rather than a zero-fill shortcut. */
static int ctl_bench_prefill(struct ctl_bench *b)
{
	uint64_t ss = dc_sector_size(b->disk), total = dc_sector_count(b->disk) * ss;
	size_t chunk = 1 << 20;
	unsigned char *buf = ctl_aligned(chunk);
	uint64_t rng = 0x2545f4914f6cdd1dull;
	char msg[128];
	int rc = 0;

	for (size_t k = 0; k < chunk; k += 8) {
		uint64_t v = ctl_xorshift(&rng);

		memcpy(buf + k, &v, 8);
	}
	for (uint64_t off = 0; off < total; off += chunk) {
		size_t n = total - off < chunk ? total - off : chunk;

		rc = ctl_io(b->disk, DC_OP_WRITE, off / ss, buf, n, 0, msg, sizeof(msg));
		if (rc < 0) {
			ctl_err("prefill '%s' at sector %" PRIu64 ": %s", b->spec,
				off / ss, msg);
			break;
		}
	}
	free(buf);
	return rc;
}

static const char *const ctl_rw_names[] = { "read", "write", "randread", "randwrite" };

static const char *ctl_bench_mode(const struct ctl_bench *b)
{
	if (b->poll_mode)
		return b->wait_mode ? "poll+wait" : "poll";
	return b->wait_mode ? "callback+wait" : "callback";
}

static void ctl_bench_report(struct ctl_bench *b, struct ctl_bthread *ts, bool json)
{
	uint64_t hist[CTL_HBUCKETS] = { 0 }, done = 0, sum = 0, maxl = 0,
		 end = b->start_ns;
	double secs, iops, mbs, p50 = 0, p99 = 0, mean, cpu, per_cpu;
	uint64_t acc = 0;

	for (unsigned i = 0; i < b->nthreads; i++) {
		struct ctl_bthread *t = &ts[i];

		for (unsigned j = 0; j < CTL_HBUCKETS; j++)
			hist[j] += t->hist[j];
		done += t->done;
		sum += t->lat_sum;
		if (t->lat_max > maxl)
			maxl = t->lat_max;
		if (t->end_ns > end)
			end = t->end_ns;
	}
	for (unsigned j = 0; j < CTL_HBUCKETS && done; j++) {
		uint64_t before = acc;

		acc += hist[j];
		if (before < (done + 1) / 2 && acc >= (done + 1) / 2)
			p50 = ctl_hist_value(j);
		if (before < done - done / 100 && acc >= done - done / 100)
			p99 = ctl_hist_value(j);
	}
	secs = (end - b->start_ns) / 1e9;
	iops = secs > 0 ? done / secs : 0;
	/* Requests per CPU-second of the process (submitters, workers, timers):
	 * what one core sustains, whatever else the machine is running. */
	cpu = b->cpu_ns / 1e9;
	per_cpu = cpu > 0 ? done / cpu : 0;
	mbs = iops * b->bs / 1e6;
	/* A bucket's midpoint can lie above the largest value seen. */
	if (p50 > maxl)
		p50 = maxl;
	if (p99 > maxl)
		p99 = maxl;
	mean = done ? (double)sum / done / ctl_ticks_per_ns : 0;
	p50 /= ctl_ticks_per_ns;
	p99 /= ctl_ticks_per_ns;
	if (json) {
		printf("{\"spec\": ");
		ctl_json_str(stdout, b->spec);
		printf(", \"rw\": \"%s\", \"bs\": %" PRIu64 ", \"qd\": %" PRIu64
		       ", \"threads\": %" PRIu64
		       ", \"mode\": \"%s\", \"requests\": %" PRIu64
		       ", \"seconds\": %.6f, \"iops\": %.0f, \"mb_per_s\": %.1f"
		       ", \"cpu_seconds\": %.6f, \"iops_per_cpu_second\": %.0f"
		       ", \"latency_us\": {\"mean\": %.2f, \"p50\": %.2f, \"p99\": %.2f"
		       ", \"max\": %.2f}}\n",
		       ctl_rw_names[b->rw], b->bs, b->qd, b->nthreads, ctl_bench_mode(b),
		       done, secs, iops, mbs, cpu, per_cpu, mean / 1e3, p50 / 1e3,
		       p99 / 1e3, maxl / ctl_ticks_per_ns / 1e3);
		return;
	}
	printf("%s %s bs=%" PRIu64 " qd=%" PRIu64 " threads=%" PRIu64 " (%s)\n", b->spec,
	       ctl_rw_names[b->rw], b->bs, b->qd, b->nthreads, ctl_bench_mode(b));
	printf("requests: %" PRIu64 " in %.3f s\n", done, secs);
	printf("IOPS:     %.0f\n", iops);
	printf("MB/s:     %.1f\n", mbs);
	printf("CPU:      %.3f s (%.0f%% of one core), %.0f requests per CPU-second\n",
	       cpu, secs > 0 ? 100 * cpu / secs : 0.0, per_cpu);
	printf("latency:  mean %.2f us, p50 %.2f us, p99 %.2f us, max %.2f us\n",
	       mean / 1e3, p50 / 1e3, p99 / 1e3, maxl / ctl_ticks_per_ns / 1e3);
}

static int ctl_bench(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "rw", required_argument, NULL, 'w' },
		{ "bs", required_argument, NULL, 'b' },
		{ "qd", required_argument, NULL, 'd' },
		{ "time", required_argument, NULL, 't' },
		{ "count", required_argument, NULL, 'c' },
		{ "threads", required_argument, NULL, 'T' },
		{ "ro", no_argument, NULL, 'r' },
		{ "poll", no_argument, NULL, 'p' },
		{ "no-wait", no_argument, NULL, 'W' },
		{ "prefill", no_argument, NULL, 'P' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct ctl_bench b = { .rw = CTL_RANDREAD, .bs = 4096, .qd = 32, .nthreads = 1 };
	struct ctl_bthread *ts;
	bool json = false, timed = false, ro = false, prefill = false, no_wait = false;
	uint64_t ss, blocks_per_thread;
	int c, rc = 0;
	char *end;

	while ((c = ctl_getopt(argc, argv, "h", lo)) != -1) {
		switch (c) {
		case 'w': {
			unsigned i;

			for (i = 0; i < 4; i++)
				if (!strcmp(optarg, ctl_rw_names[i]))
					break;
			if (i == 4)
				ctl_usage(
					"--rw: '%s' is not read, write, randread or randwrite",
					optarg);
			b.rw = (enum ctl_rw)i;
			break;
		}
		case 'b':
			b.bs = ctl_arg_size("--bs", optarg);
			if (b.bs == 0 || b.bs > (1u << 30))
				ctl_usage("--bs must be from 1 sector to 1G");
			break;
		case 'd':
			b.qd = ctl_arg_u64("--qd", optarg, 1, 65536);
			break;
		case 't':
			errno = 0;
			b.seconds = strtod(optarg, &end);
			if (errno || *end || !(b.seconds > 0) || b.seconds > 1e6)
				ctl_usage(
					"--time: '%s' is not a positive number of seconds",
					optarg);
			timed = true;
			break;
		case 'c':
			b.count = ctl_arg_u64("--count", optarg, 1, UINT64_MAX);
			break;
		case 'T':
			b.nthreads = ctl_arg_u64("--threads", optarg, 1, 1024);
			break;
		case 'r':
			ro = true;
			break;
		case 'p':
			b.poll_mode = true;
			break;
		case 'W':
			no_wait = true;
			break;
		case 'P':
			prefill = true;
			break;
		case 'j':
			json = true;
			break;
		}
	}
	ctl_operands(argc, argv, 1, 1, "SPEC");
	if (timed && b.count)
		ctl_usage("give --time or --count, not both");
	if (!timed && !b.count)
		b.seconds = 5;
	if (ro && (b.rw == CTL_WRITE || b.rw == CTL_RANDWRITE))
		ctl_usage("--ro with a write workload");
	if (ro && prefill)
		ctl_usage("--prefill writes the disk; it cannot go with --ro");
	b.spec = argv[optind];
	b.disk = ctl_open(b.spec, ro ? DC_OPEN_READ_ONLY : 0);
	if (!b.disk)
		return CTL_EXIT_FAIL;
	ss = dc_sector_size(b.disk);
	if (b.bs % ss) {
		ctl_err("--bs %" PRIu64 " is not a multiple of the %" PRIu64
			"-byte sector size",
			b.bs, ss);
		dc_close(b.disk);
		return CTL_EXIT_FAIL;
	}
	b.spb = b.bs / ss;
	b.nblocks = dc_sector_count(b.disk) * ss / b.bs;
	if (b.nblocks < b.nthreads) {
		ctl_err("'%s' holds %" PRIu64 " blocks of %" PRIu64 " bytes; need at "
			"least one per thread",
			b.spec, b.nblocks, b.bs);
		dc_close(b.disk);
		return CTL_EXIT_FAIL;
	}
	if (prefill && ctl_bench_prefill(&b) < 0) {
		dc_close(b.disk);
		return CTL_EXIT_FAIL;
	}
	/* Drive the queues with dc_queue_wait() where the chain reaps on the
	 * waiting thread (an io_uring backend): no completion crosses threads. */
	if (!no_wait) {
		dc_queue *probe;

		if (dc_queue_open(b.disk, DC_QUEUE_POLL, &probe) == 0) {
			b.wait_mode = dc_queue_pollers(probe) > 0;
			dc_queue_close(probe);
		}
	}
	ctl_ticks_calibrate();
	ts = ctl_xalloc(b.nthreads * sizeof(*ts));
	blocks_per_thread = b.nblocks / b.nthreads;
	pthread_barrier_init(&b.barrier, NULL, (unsigned)b.nthreads + 1);
	for (unsigned i = 0; i < b.nthreads; i++) {
		struct ctl_bthread *t = &ts[i];

		t->b = &b;
		t->idx = i;
		t->rng = 0x9e3779b97f4a7c15ull * (i + 1) ^ (uint64_t)getpid();
		if (!t->rng)
			t->rng = 1;
		t->seq_lo = t->seq_next = blocks_per_thread * i;
		t->seq_hi = i + 1 == b.nthreads ? b.nblocks : blocks_per_thread * (i + 1);
		t->quota = UINT64_MAX;
		if (b.count)
			t->quota = b.count / b.nthreads + (i < b.count % b.nthreads);
		t->slots = ctl_xalloc(b.qd * sizeof(*t->slots));
		for (uint64_t j = 0; j < b.qd; j++) {
			struct ctl_bslot *s = &t->slots[j];

			s->t = t;
			s->iov.iov_len = b.bs;
			s->iov.iov_base = ctl_aligned(b.bs);
			/* Writes carry non-zero data, so no layer can shortcut them. */
			for (uint64_t k = 0; k < b.bs; k += 8) {
				uint64_t v = ctl_xorshift(&t->rng);

				memcpy((char *)s->iov.iov_base + k, &v,
				       b.bs - k < 8 ? b.bs - k : 8);
			}
			s->next = t->ready;
			t->ready = s;
		}
		if (!t->quota)
			t->ready = NULL; /* more threads than requests */
	}
	for (unsigned i = 0; i < b.nthreads; i++) {
		rc = pthread_create(&ts[i].tid, NULL, ctl_bench_thread, &ts[i]);
		if (rc) {
			fprintf(stderr, "diskctl bench: cannot start a thread: %s\n",
				strerror(rc));
			exit(CTL_EXIT_FAIL);
		}
	}
	b.cpu_ns = ctl_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
	b.start_ns = ctl_now_ns();
	b.deadline = b.count ?
			     UINT64_MAX :
			     ctl_ticks() + (uint64_t)(b.seconds * 1e9 * ctl_ticks_per_ns);
	/* The threads read start/deadline only after this barrier. */
	pthread_barrier_wait(&b.barrier);
	rc = 0;
	for (unsigned i = 0; i < b.nthreads; i++)
		pthread_join(ts[i].tid, NULL);
	b.cpu_ns = ctl_clock_ns(CLOCK_PROCESS_CPUTIME_ID) - b.cpu_ns;
	for (unsigned i = 0; i < b.nthreads; i++) {
		struct ctl_bthread *t = &ts[i];

		if (t->open_err) {
			ctl_err("queue on '%s': %s", b.spec, t->open_msg);
			rc = CTL_EXIT_FAIL;
		} else if (t->err) {
			char msg[128];

			ctl_err("%s '%s' at sector %" PRIu64 ": %s", ctl_rw_names[b.rw],
				b.spec, t->err_sector,
				ctl_io_error(t->err, t->detail, msg, sizeof(msg)));
			rc = CTL_EXIT_FAIL;
		}
	}
	if (!rc)
		ctl_bench_report(&b, ts, json);
	for (unsigned i = 0; i < b.nthreads; i++) {
		for (uint64_t j = 0; j < b.qd; j++)
			free(ts[i].slots[j].iov.iov_base);
		free(ts[i].slots);
	}
	free(ts);
	pthread_barrier_destroy(&b.barrier);
	dc_close(b.disk);
	return rc;
}

/* --- main ----------------------------------------------------------------- */

static const struct ctl_cmd ctl_cmds[] = {
	{ "info", "show a disk's metadata and its chain",
	  "info [--json] [--ro] SPEC\n\n"
	  "Open SPEC and print its metadata (size, sector sizes, read-only, FUA,\n"
	  "unmap behaviour, disk id, type) and every element of the chain with the\n"
	  "details its plugin describes.\n\n"
	  "  --json   print one JSON object\n"
	  "  --ro     open read-only (needed for read-only files)\n",
	  ctl_info },
	{ "plugins", "list the plugins on the search path",
	  "plugins [--json]\n\n"
	  "Load every plugin file on the search path ($DISKCORE_PLUGIN_PATH, then the\n"
	  "built-in directory) and print its name, kind, version, summary, usage and\n"
	  "spec forms with their options; files that were refused say why.\n\n"
	  "  --json   print one JSON object\n",
	  ctl_plugins },
	{ "cp", "copy one disk to another",
	  "cp [--sparse|--no-sparse] [-q] [--bs SIZE] [--qd N] SRC DST\n\n"
	  "Copy every sector of SRC (opened read-only) to the start of DST, which\n"
	  "must be at least as large. DST is flushed at the end.\n\n"
	  "  --sparse      all-zero chunks are unmapped on DST when DST's unmapped\n"
	  "                sectors read as zero (the default)\n"
	  "  --no-sparse   write every chunk\n"
	  "  -q, --quiet   no progress bar, no summary\n"
	  "  --bs SIZE     chunk size, a power of two (default 1M)\n"
	  "  --qd N        chunks in flight (default 16)\n",
	  ctl_cp },
	{ "read", "dump sectors",
	  "read SPEC SECTOR COUNT [--hex|--raw]\n\n"
	  "Read COUNT sectors from SECTOR and print them as a hex dump (xxd style,\n"
	  "offsets in bytes from the start of the disk) or as raw bytes.\n",
	  ctl_read },
	{ "write", "write sectors",
	  "write SPEC SECTOR [--pattern BYTE --count N | --file F] [--fua]\n\n"
	  "Write N sectors filled with BYTE (0..255, or 0xNN), or the contents of\n"
	  "file F ('-' for stdin; a multiple of the sector size) at SECTOR, then flush.\n\n"
	  "  --fua   write with force unit access\n",
	  ctl_write },
	{ "bench", "measure IOPS, throughput and latency",
	  "bench [--rw read|write|randread|randwrite] [--bs SIZE] [--qd N]\n"
	  "             [--time SEC | --count N] [--threads N] [--ro] [--poll] [--no-wait]\n"
	  "             [--prefill] [--json] SPEC\n\n"
	  "Keep QD requests of BS bytes in flight on each of N threads (one queue each)\n"
	  "and print IOPS, MB/s (10^6 bytes) and latency percentiles. Random offsets\n"
	  "are aligned to BS. Write workloads overwrite the disk.\n\n"
	  "  --rw MODE     workload (default randread)\n"
	  "  --bs SIZE     request size, a multiple of the sector size (default 4K)\n"
	  "  --qd N        requests in flight per thread (default 32)\n"
	  "  --time SEC    run this long (default 5)\n"
	  "  --count N     run N requests in all instead\n"
	  "  --threads N   submitting threads (default 1)\n"
	  "  --ro          open read-only\n"
	  "  --poll        reap completions with dc_queue_reap() instead of taking\n"
	  "                callbacks\n"
	  "  --no-wait     never drive the queues with dc_queue_wait(); by default a\n"
	  "                chain that can reap on the submitting thread (blockdev)\n"
	  "                is driven by it, and the rest wait on the queue's eventfd\n"
	  "  --prefill     first write data over the whole disk (not timed)\n"
	  "  --json        print one JSON object\n",
	  ctl_bench },
	{ "serve", SERVE_SUMMARY, SERVE_USAGE, serve_main }, /* tools/serve/ */
};

#define CTL_NCMDS (sizeof(ctl_cmds) / sizeof(ctl_cmds[0]))

static void ctl_main_help(FILE *f)
{
	fprintf(f, "usage: diskctl COMMAND [OPTIONS] ...\n\n"
		   "diskcore disk tool. A SPEC is a disk spec string, e.g. mem:1G,\n"
		   "'file:/x.img;direct' or memdiff:file:/x.img.\n\ncommands:\n");
	for (size_t i = 0; i < CTL_NCMDS; i++)
		fprintf(f, "  %-8s  %s\n", ctl_cmds[i].name, ctl_cmds[i].summary);
	fprintf(f,
		"\n'diskctl COMMAND --help' describes a command. Exit status: 0 success,\n"
		"1 failure, 2 wrong usage.\n");
}

int main(int argc, char **argv)
{
	const char *name;

	if (argc < 2) {
		ctl_main_help(stderr);
		return CTL_EXIT_USAGE;
	}
	name = argv[1];
	if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
		ctl_main_help(stdout);
		return 0;
	}
	if (!strcmp(name, "--version")) {
		printf("diskctl (diskcore) %d.%d\n", DC_VERSION_MAJOR, DC_VERSION_MINOR);
		return 0;
	}
	if (!strcmp(name, "help")) {
		if (argc == 2) {
			ctl_main_help(stdout);
			return 0;
		}
		name = argv[2];
	}
	for (size_t i = 0; i < CTL_NCMDS; i++) {
		if (strcmp(name, ctl_cmds[i].name))
			continue;
		ctl_current = &ctl_cmds[i];
		if (!strcmp(argv[1], "help")) {
			ctl_help(ctl_current, stdout);
			return 0;
		}
		optind = 0;
		return ctl_current->run(argc - 1, argv + 1);
	}
	fprintf(stderr, "diskctl: unknown command '%s'\nTry 'diskctl --help'.\n", name);
	return CTL_EXIT_USAGE;
}
