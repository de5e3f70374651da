/* SPDX-License-Identifier: MIT */
/* diskctl: what every subcommand shares: messages, option and size parsing,
 * memory, JSON strings, opening and flushing disks. */
#include "diskctl.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --- messages -------------------------------------------------------------- */

void ctl_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "diskctl %s: ", ctl_current->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'diskctl %s --help'.\n", ctl_current->name);
	exit(CTL_EXIT_USAGE);
}

static void ctl_verr(const char *tail, const char *fmt, va_list ap)
{
	fprintf(stderr, "diskctl %s: ", ctl_current->name);
	vfprintf(stderr, fmt, ap);
	if (tail)
		fprintf(stderr, ": %s", tail);
	fputc('\n', stderr);
}

void ctl_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ctl_verr(NULL, fmt, ap);
	va_end(ap);
}

/* The errno's name too, which scripts and bug reports can match. */
const char *ctl_io_error(int result, int detail, char *buf, size_t len)
{
	const char *name = detail > 0 ? strerrorname_np(detail) : NULL;

	if (result == DC_E_IO && detail > 0)
		snprintf(buf, len, "%s: %s (%s)", dc_strerror(result), strerror(detail),
			 name ? name : "?");
	else
		snprintf(buf, len, "%s", dc_strerror(result));
	return buf;
}

void ctl_err_io(int result, int detail, const char *fmt, ...)
{
	char msg[128];
	va_list ap;

	va_start(ap, fmt);
	ctl_verr(ctl_io_error(result, detail, msg, sizeof(msg)), fmt, ap);
	va_end(ap);
}

const char *ctl_last_error(int rc)
{
	const char *m = dc_last_error();

	if (m && *m)
		return m;
	return strerror(-rc);
}

/* --- memory and time ------------------------------------------------------- */

static void ctl_oom(size_t n)
{
	if (n)
		fprintf(stderr, "diskctl: out of memory (%zu bytes)\n", n);
	else
		fprintf(stderr, "diskctl: out of memory\n");
	exit(CTL_EXIT_FAIL);
}

void *ctl_xalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);

	if (!p)
		ctl_oom(0);
	return p;
}

void *ctl_aligned(size_t n)
{
	void *p = NULL;

	if (posix_memalign(&p, CTL_ALIGN, n ? n : CTL_ALIGN))
		ctl_oom(n);
	return p;
}

char *ctl_strdup(const char *s)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		ctl_oom(0);
	return d;
}

uint64_t ctl_clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t ctl_now_ns(void)
{
	return ctl_clock_ns(CLOCK_MONOTONIC);
}

/* --- arguments ------------------------------------------------------------- */

bool ctl_parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return false;
	errno = 0;
	/* Not base 0: a leading zero is no octal ("--port 010" is 10). */
	v = strtoull(s, &end, s[0] == '0' && (s[1] == 'x' || s[1] == 'X') ? 16 : 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

uint64_t ctl_arg_u64(const char *what, const char *s, uint64_t min, uint64_t max)
{
	uint64_t v;

	if (!ctl_parse_u64(s, &v))
		ctl_usage("%s: '%s' is not a non-negative integer", what, s);
	if (v < min || v > max)
		ctl_usage("%s: %s is out of range (%" PRIu64 "..%" PRIu64 ")", what, s,
			  min, max);
	return v;
}

/* One grammar for specs and the command line (docs/spec-strings.md, SIZE):
 * dc_parse_size() takes 4k, 1G and 1GiB alike. */
uint64_t ctl_arg_size(const char *what, const char *s)
{
	uint64_t v;

	if (!s || !*s || dc_parse_size(s, &v) < 0)
		ctl_usage("%s: '%s' is not a size (e.g. 4096, 4K, 1M)", what, s ? s : "");
	return v;
}

/* --- options: parsing and usage from one table ---------------------------- */

#define CTL_MAX_OPTS 24
#define CTL_OPT_VAL 256 /* getopt_long's value for row i: CTL_OPT_VAL + i */

static bool ctl_opt_has_arg(const struct ctl_opt *o)
{
	return o->kind != CTL_OPT_TRUE && o->kind != CTL_OPT_FALSE;
}

/* 1G, 4K or 512: a bound as a user would type it. */
static const char *ctl_size_text(uint64_t v, char *buf, size_t len)
{
	static const char *const units[] = { "", "K", "M", "G", "T", "P", "E" };
	unsigned u = 0;

	while (v && v % 1024 == 0 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, "%" PRIu64 "%s", v, units[u]);
	return buf;
}

static int ctl_arg_enum(const char *what, const char *s, const char *const *names)
{
	char list[256] = "";
	size_t n = 0, at = 0;

	for (; names[n]; n++)
		if (!strcmp(s, names[n]))
			return (int)n;
	for (size_t i = 0; i < n; i++)
		at += snprintf(list + at, at < sizeof(list) ? sizeof(list) - at : 0,
			       "%s%s",
			       i == 0	  ? "" :
			       i + 1 == n ? " or " :
					    ", ",
			       names[i]);
	ctl_usage("%s: '%s' is not %s", what, s, list);
}

/* Digits with an optional fraction (or exponent): no sign, no blank, no
 * "inf". Up to max; above 0, or with zero from 0. */
static double ctl_arg_seconds(const char *what, const char *s, uint64_t max, bool zero)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (((*s >= '0' && *s <= '9') || *s == '.') && end != s && !*end && !errno &&
	    v <= (double)max && (zero ? v >= 0 : v > 0))
		return v;
	if (zero)
		ctl_usage("%s: '%s' is not a number of seconds from 0 to %" PRIu64, what,
			  s, max);
	ctl_usage("%s: '%s' is not a positive number of seconds", what, s);
}

/* Store row o's value, parsed from arg, into args. */
static void ctl_opt_store(const struct ctl_opt *o, void *args, const char *arg)
{
	void *p = (char *)args + o->off;
	char what[48], lo[24], hi[24];
	uint64_t v;

	snprintf(what, sizeof(what), "--%s", o->name);
	switch (o->kind) {
	case CTL_OPT_TRUE:
	case CTL_OPT_FALSE:
		*(bool *)p = o->kind == CTL_OPT_TRUE;
		break;
	case CTL_OPT_UINT:
		*(uint64_t *)p = ctl_arg_u64(what, arg, o->min, o->max);
		break;
	case CTL_OPT_SIZE:
		v = ctl_arg_size(what, arg);
		if (v < o->min || v > o->max || (o->pow2 && (v & (v - 1))))
			ctl_usage("%s must be %sfrom %s to %s", what,
				  o->pow2 ? "a power of two " : "",
				  ctl_size_text(o->min, lo, sizeof(lo)),
				  ctl_size_text(o->max, hi, sizeof(hi)));
		*(uint64_t *)p = v;
		break;
	case CTL_OPT_STRING:
		if (o->max && strlen(arg) > o->max)
			ctl_usage("%s: %s is at most %" PRIu64 " bytes", what, o->arg,
				  o->max);
		*(const char **)p = arg;
		break;
	case CTL_OPT_ENUM:
		*(int *)p = ctl_arg_enum(what, arg, o->names);
		break;
	case CTL_OPT_SECONDS:
		*(double *)p = ctl_arg_seconds(what, arg, o->max, o->zero);
		break;
	}
}

/* getopt_long's tables for cmd's rows; the number of rows. */
static size_t ctl_opt_tables(const struct ctl_cmd *cmd, struct option *lo,
			     char *shortopts)
{
	const struct ctl_opt *o = cmd->opts;
	size_t n = 0, k = 0;

	/* ':' first: a missing argument is reported as ':'. */
	shortopts[k++] = ':';
	shortopts[k++] = 'h';
	for (; o && o[n].name && n < CTL_MAX_OPTS; n++) {
		lo[n] = (struct option){ o[n].name,
					 ctl_opt_has_arg(&o[n]) ? required_argument :
								  no_argument,
					 NULL, CTL_OPT_VAL + (int)n };
		if (o[n].letter) {
			shortopts[k++] = o[n].letter;
			if (ctl_opt_has_arg(&o[n]))
				shortopts[k++] = ':';
		}
	}
	lo[n] = (struct option){ "help", no_argument, NULL, 'h' };
	lo[n + 1] = (struct option){ 0 };
	shortopts[k] = '\0';
	return n;
}

char **ctl_parse(int argc, char **argv, void *args, int *nargs)
{
	const struct ctl_cmd *cmd = ctl_current;
	struct option lo[CTL_MAX_OPTS + 2];
	char shortopts[2 * CTL_MAX_OPTS + 3];
	size_t n = ctl_opt_tables(cmd, lo, shortopts);
	int c, left;

	opterr = 0;
	while ((c = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
		if (c == 'h') {
			ctl_help(cmd, stdout);
			exit(0);
		}
		if (c == '?') {
			if (optopt > 0 && optopt < CTL_OPT_VAL)
				ctl_usage("unknown option '-%c'", optopt);
			ctl_usage("unknown option '%s'", argv[optind - 1]);
		}
		if (c == ':')
			ctl_usage("option '%s' needs an argument", argv[optind - 1]);
		for (size_t i = 0; c < CTL_OPT_VAL && i < n; i++)
			if (cmd->opts[i].letter == c)
				c = CTL_OPT_VAL + (int)i;
		ctl_opt_store(&cmd->opts[c - CTL_OPT_VAL], args, optarg);
	}
	left = argc - optind;
	if (left < cmd->min)
		ctl_usage("missing %s", cmd->missing);
	if (left > cmd->max)
		ctl_usage("unexpected argument '%s'", argv[optind + cmd->max]);
	if (nargs)
		*nargs = left;
	return argv + optind;
}

/* The usage line: each option in brackets, then the operands, wrapped
 * under the command's name. */
static void ctl_help_synopsis(const struct ctl_cmd *c, FILE *f)
{
	int indent = fprintf(f, "usage: diskctl %s", c->name), col = indent;
	char item[160];

	for (const struct ctl_opt *o = c->opts; o && o->name; o++) {
		int k = snprintf(item, sizeof(item), " [");

		if (o->letter)
			k += snprintf(item + k, sizeof(item) - k, "-%c|", o->letter);
		k += snprintf(item + k, sizeof(item) - k, "--%s", o->name);
		for (const char *const *e = o->names; e && *e; e++)
			k += snprintf(item + k, sizeof(item) - k, "%c%s",
				      e == o->names ? ' ' : '|', *e);
		if (ctl_opt_has_arg(o) && !o->names)
			k += snprintf(item + k, sizeof(item) - k, " %s", o->arg);
		snprintf(item + k, sizeof(item) - k, "]");
		if (col + (int)strlen(item) > 79)
			col = fprintf(f, "\n%*s", indent, "") - 1;
		col += fprintf(f, "%s", item);
	}
	if (c->operands && col + 1 + (int)strlen(c->operands) > 79)
		fprintf(f, "\n%*s", indent, "");
	fprintf(f, "%s%s\n", c->operands ? " " : "", c->operands ? c->operands : "");
}

/* "-q, --quiet" or "--bs SIZE", as the option list shows it; its length. */
static int ctl_opt_label(const struct ctl_opt *o, char *buf, size_t len)
{
	int k = 0;

	if (o->letter)
		k = snprintf(buf, len, "-%c, ", o->letter);
	return k + snprintf(buf + k, len - k, "--%s%s%s", o->name,
			    ctl_opt_has_arg(o) ? " " : "",
			    ctl_opt_has_arg(o) ? o->arg : "");
}

/* "  -q, --quiet   help", the help's further lines under its first; a
 * label too long for the column has the help on the next line. */
static void ctl_help_options(const struct ctl_opt *opts, FILE *f)
{
	char label[64];
	int col = 0;

	for (const struct ctl_opt *o = opts; o->name; o++) {
		int k = ctl_opt_label(o, label, sizeof(label));

		if (k > col && k <= 18)
			col = k;
	}
	col += 4; /* two spaces before the label, two after */
	for (const struct ctl_opt *o = opts; o->name; o++) {
		int k = ctl_opt_label(o, label, sizeof(label)) + 2;

		fprintf(f, "  %s", label);
		if (k + 2 > col)
			fprintf(f, "\n%*s", col, "");
		else
			fprintf(f, "%*s", col - k, "");
		for (const char *h = o->help; *h; h++) {
			fputc(*h, f);
			if (*h == '\n')
				fprintf(f, "%*s", col, "");
		}
		fputc('\n', f);
	}
}

void ctl_help(const struct ctl_cmd *c, FILE *f)
{
	ctl_help_synopsis(c, f);
	fprintf(f, "\n%s", c->about);
	if (c->opts->name) {
		fputc('\n', f);
		ctl_help_options(c->opts, f);
	}
}

/* --- output ---------------------------------------------------------------- */

void ctl_human_bytes(uint64_t n, char *buf, size_t len)
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

/* The length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t ctl_utf8_len(const unsigned char *p)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4;
	else
		return 0;
	/* The second byte's range is narrower after E0, ED, F0 and F4. */
	if (p[0] == 0xe0)
		lo = 0xa0;
	else if (p[0] == 0xed)
		hi = 0x9f;
	else if (p[0] == 0xf0)
		lo = 0x90;
	else if (p[0] == 0xf4)
		hi = 0x8f;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/* JSON text must be Unicode: well-formed UTF-8 is copied, and a byte that is
 * not part of it (a path is any bytes) becomes \u00XX, the code point of its
 * value, so the output stays valid and the byte can still be read off. */
void ctl_json_str(FILE *f, const char *s)
{
	/* Escaped by a letter: quote, backslash, newline, tab, return. */
	static const char ctl_json_escapes[] = "\"\\\n\t\r";
	const char *esc;

	if (!s) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		size_t n = ctl_utf8_len(p);

		if (n == 0) {
			fprintf(f, "\\u%04x", *p);
			continue;
		}
		if (n > 1) {
			fwrite(p, 1, n, f);
			p += n - 1;
			continue;
		}
		esc = strchr(ctl_json_escapes, *p); /* *p is not the NUL */
		if (esc)
			fprintf(f, "\\%c", "\"\\ntr"[esc - ctl_json_escapes]);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

const char *ctl_enum_name(const char *const *names, size_t n, uint32_t v,
			  const char *other)
{
	return v < n && names[v] ? names[v] : other;
}

const char *ctl_bool(bool b)
{
	return b ? "true" : "false";
}

/* --- disks ----------------------------------------------------------------- */

dc_disk *ctl_open(const char *spec, uint32_t flags)
{
	dc_disk *d = NULL;
	int rc = dc_open(spec, flags, &d);

	if (rc < 0) {
		/* The core's message names the element at fault, with any URL
		 * credentials removed; the spec itself is not echoed. */
		ctl_err("cannot open: %s", ctl_last_error(rc));
		return NULL;
	}
	return d;
}

uint32_t ctl_force_share(bool share, const char *spec, const char *risk)
{
	if (!share)
		return 0;
	ctl_err("warning: --force-share: not locking '%s'; a writer may be changing it, "
		"so %s",
		spec, risk);
	return DC_OPEN_FORCE_SHARE;
}

int ctl_io(dc_disk *d, uint32_t op, uint64_t sector, void *buf, size_t len,
	   uint32_t flags, int *detail)
{
	struct iovec iov = { buf, len };
	struct dc_io io = { .op = op,
			    .flags = flags,
			    .sector = sector,
			    .iov = buf ? &iov : NULL,
			    .iovcnt = buf ? 1 : 0 };

	*detail = 0;
	return dc_execute(d, &io, detail);
}

int ctl_flush(dc_disk *d, const char *spec)
{
	int detail, rc = ctl_io(d, DC_OP_FLUSH, 0, NULL, 0, 0, &detail);

	if (rc == DC_E_UNSUPPORTED)
		return 0;
	if (rc < 0)
		ctl_err_io(rc, detail, "flush '%s'", spec);
	return rc;
}

/* Only polls: the caller's next dc_queue_reap() clears a queue's eventfd
 * (diskcore.h, dc_queue_fd), and it reaps each queue dry before waiting, so
 * a wakeup is never lost: a completion after the last reap has signalled
 * the eventfd again. */
void ctl_queues_wait(dc_queue *const *qs, int n, int timeout_ms)
{
	struct pollfd pfd[4];

	for (int i = 0; i < n; i++)
		pfd[i] = (struct pollfd){ .fd = dc_queue_fd(qs[i]), .events = POLLIN };
	poll(pfd, (nfds_t)n, timeout_ms);
}

/* --- signals --------------------------------------------------------------- */

static volatile sig_atomic_t ctl_sig;

static void ctl_on_signal(int sig)
{
	if (ctl_sig) {
		/* Asked twice: stop now, as without a handler. */
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	ctl_sig = sig;
}

void ctl_catch_signals(void)
{
	struct sigaction sa = { .sa_handler = ctl_on_signal };

	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: a wait in poll() returns at once. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

int ctl_signal(void)
{
	return ctl_sig;
}

static int ctl_layers_visit(void *arg, int depth, const char *plugin, const char *form,
			    const struct dc_info *info, const char *key,
			    const char *value)
{
	struct ctl_layers *l = arg;

	(void)form;
	(void)info;
	if (!key && l->depth < 0 && !strcmp(plugin, "layered"))
		l->depth = depth;
	else if (key && !strcmp(key, "spec") && l->depth >= 0 && depth == l->depth + 1 &&
		 l->n < CTL_MAX_LAYERS)
		l->spec[l->n++] = ctl_strdup(value);
	else if (!key && l->depth >= 0 && depth <= l->depth)
		l->depth = INT32_MAX; /* past it: stop collecting */
	return 0;
}

void ctl_layers_get(dc_disk *d, struct ctl_layers *l)
{
	memset(l, 0, sizeof(*l));
	l->depth = -1;
	dc_describe(d, ctl_layers_visit, l);
}

void ctl_layers_free(struct ctl_layers *l)
{
	for (unsigned i = 0; i < l->n; i++)
		free(l->spec[i]);
	l->n = 0;
}
