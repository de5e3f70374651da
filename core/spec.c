/* SPDX-License-Identifier: MIT */
/* Spec strings: "delay:5;p99=50:memdiff:file:/x.img" becomes a tree of elements,
 * each resolved to the plugin form that claims its kind. The form says how many
 * ':'-separated fields follow the kind and what comes after them (nothing, one
 * inner spec, or a bracketed list), so the grammar grows with the plugins. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* Guards the recursion against hostile input ("memdiff:" x 100000). */
#define SPEC_MAX_DEPTH 64
/* Longest element text quoted in a message. */
#define SPEC_QUOTE_MAX 160

#define SPEC_VMGS_DEFAULT (UINT64_C(4) << 20)

static int spec_size_bad(const char *s)
{
	dc__error_raw("invalid size '%s': expected a decimal number with an optional "
		      "K, M, G or T suffix (powers of 1024) and an optional B",
		      s);
	return -EINVAL;
}

DC_EXPORT int dc_parse_size(const char *s, uint64_t *out)
{
	uint64_t n = 0, mult = 1;
	size_t len, i;

	if (!s)
		return spec_size_bad("");
	if (strcmp(s, "VMGS_DEFAULT") == 0) {
		*out = SPEC_VMGS_DEFAULT;
		return 0;
	}
	len = strlen(s);
	/* OpenVMM's forms (64K, 1G, 4MB) plus what people type: lower case
	 * suffixes (1g, 512k) and the binary unit names (1GiB, 64KiB). Every
	 * suffix is a power of 1024, as in OpenVMM. */
	bool binary = false;

	if (len >= 3 && (s[len - 1] == 'B' || s[len - 1] == 'b') &&
	    (s[len - 2] == 'i' || s[len - 2] == 'I')) {
		len -= 2;
		binary = true;
	} else if (len >= 2 && (s[len - 1] == 'B' || s[len - 1] == 'b')) {
		len--;
	}
	if (len) {
		/* k, m, g, t: 1024 to the power of 1 to 4. */
		static const char units[] = "kmgt";
		const char *unit = strchr(units, s[len - 1] | 0x20);

		if (unit && *unit)
			mult = UINT64_C(1) << (10 * (unit - units + 1));
		if (mult != 1)
			len--;
		else if (binary)
			return spec_size_bad(s); /* "12iB": a unit without a scale */
	}
	if (!len)
		return spec_size_bad(s);
	for (i = 0; i < len; i++) {
		unsigned d = (unsigned char)s[i] - '0';

		if (d > 9)
			return spec_size_bad(s);
		if (n > (UINT64_MAX - d) / 10)
			goto overflow;
		n = n * 10 + d;
	}
	if (n > UINT64_MAX / mult)
		goto overflow;
	*out = n * mult;
	return 0;
overflow:
	dc__error_raw("invalid size '%s': does not fit in 64 bits", s);
	return -ERANGE;
}

static int spec_parse_uint(const char *s, uint64_t *out)
{
	uint64_t n = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		unsigned d = (unsigned char)*s - '0';

		if (d > 9)
			return -EINVAL;
		if (n > (UINT64_MAX - d) / 10)
			return -ERANGE;
		n = n * 10 + d;
	}
	*out = n;
	return 0;
}

/* An option as written, before the form is known. */
struct spec_rawopt {
	size_t pos; /* absolute offset of its name */
	char *name;
	char *value; /* NULL: no '=' */
};

/* The element being parsed: the slice [start, start + len) of the full spec. */
struct spec_ctx {
	const char *full;
	size_t start;
	size_t len;
	const struct dc_form *form;
	const char *hint; /* expected syntax before the form is known */
	struct spec_rawopt *raw;
	uint32_t nraw;
	uint32_t rawcap;
};

static void spec_syntax(const struct dc_form *f, char *buf, size_t size)
{
	size_t n;
	uint32_t i;

	if (f->syntax) {
		snprintf(buf, size, "%s", f->syntax);
		return;
	}
	n = snprintf(buf, size, "%s", f->name);
	for (i = 0; i < f->nfields && n < size; i++)
		n += snprintf(buf + n, size - n, ":FIELD");
	if (n >= size)
		return;
	if (f->child == DC_CHILD_ONE)
		snprintf(buf + n, size - n, ":SPEC");
	else if (f->child == DC_CHILD_LIST)
		snprintf(buf + n, size - n, ":[SPEC,SPEC,...]");
}

/* "ELEMENT: at POS: WHAT[; expected SYNTAX]" */
static int __attribute__((format(printf, 4, 5)))
spec_fail(const struct spec_ctx *c, size_t at, int err, const char *fmt, ...)
{
	char what[640], syntax[160] = "";
	int qlen = c->len > SPEC_QUOTE_MAX ? SPEC_QUOTE_MAX : (int)c->len;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (c->form)
		spec_syntax(c->form, syntax, sizeof(syntax));
	else if (c->hint)
		snprintf(syntax, sizeof(syntax), "%s", c->hint);
	dc__error_raw("%.*s%s: at %zu: %s%s%s", qlen, c->full + c->start,
		      qlen < (int)c->len ? "..." : "", at, what,
		      syntax[0] ? "; expected " : "", syntax);
	return err;
}

/* Re-report a registry message (it is in dc_last_error()) for this element. */
static int spec_fail_registry(const struct spec_ctx *c, size_t at, int err)
{
	char *msg = strdup(dc_last_error());

	if (!msg)
		return -ENOMEM;
	spec_fail(c, at, err, "%s", msg);
	free(msg);
	return err;
}

/* A bare word that is neither a kind nor a file: the registry's message (in
 * dc_last_error()) says so for the kind; add that no such file exists. */
static int spec_fail_nofile(const char *word)
{
	char *msg = strdup(dc_last_error());

	if (!msg)
		return -ENOMEM;
	dc__error_raw("%s; nor is there a file '%s'", msg, word);
	free(msg);
	return -ENOENT;
}

/* Collect the ';'-separated options in [from, to) of the full spec. */
static int spec_collect_opts(struct spec_ctx *c, size_t from, size_t to)
{
	while (from <= to) {
		const char *p = c->full + from;
		const char *end = memchr(p, ';', to - from);
		size_t len = end ? (size_t)(end - p) : to - from;
		const char *eq = memchr(p, '=', len);
		struct spec_rawopt *o;

		if (!len || eq == p)
			return spec_fail(c, from, -EINVAL, "empty option name");
		if (c->nraw == c->rawcap) {
			uint32_t cap = c->rawcap ? c->rawcap * 2 : 4;
			void *n = realloc(c->raw, cap * sizeof(*c->raw));

			if (!n)
				return -ENOMEM;
			c->raw = n;
			c->rawcap = cap;
		}
		o = &c->raw[c->nraw];
		o->pos = from;
		o->name = strndup(p, eq ? (size_t)(eq - p) : len);
		o->value = eq ? strndup(eq + 1, len - (eq - p) - 1) : NULL;
		c->nraw++;
		if (!o->name || (eq && !o->value))
			return -ENOMEM;
		from += len + 1;
	}
	return 0;
}

static const char *spec_opt_type_hint(uint32_t type)
{
	switch (type) {
	case DC_OPT_SIZE:
		return "=SIZE";
	case DC_OPT_UINT:
		return "=N";
	case DC_OPT_STRING:
		return "=TEXT";
	default:
		return "";
	}
}

static int spec_unknown_opt(const struct spec_ctx *c, const struct spec_rawopt *o)
{
	const struct dc_option *d = c->form->options;
	char list[384] = "";
	size_t n = 0;

	for (; d && d->name && n < sizeof(list); d++)
		n += snprintf(list + n, sizeof(list) - n, "%s%s%s", n ? ", " : "",
			      d->name, spec_opt_type_hint(d->type));
	if (!n)
		return spec_fail(c, o->pos, -EINVAL,
				 "unknown option '%s' (%s takes no options)", o->name,
				 c->form->name);
	return spec_fail(c, o->pos, -EINVAL, "unknown option '%s' (accepted: %s)",
			 o->name, list);
}

/* Check the collected options against the form's declarations. */
static int spec_check_opts(struct spec_ctx *c, struct dc_spec *s)
{
	uint32_t i, j;

	if (!c->nraw)
		return 0;
	s->opts = calloc(c->nraw, sizeof(*s->opts));
	if (!s->opts)
		return -ENOMEM;
	for (i = 0; i < c->nraw; i++) {
		struct spec_rawopt *o = &c->raw[i];
		struct dc_optval *v = &s->opts[i];
		const struct dc_option *d = c->form->options;
		size_t vpos = o->pos + strlen(o->name) + 1;
		int r;

		while (d && d->name && strcmp(d->name, o->name) != 0)
			d++;
		if (!d || !d->name)
			return spec_unknown_opt(c, o);
		for (j = 0; j < i; j++)
			if (strcmp(s->opts[j].name, o->name) == 0)
				return spec_fail(c, o->pos, -EINVAL,
						 "option '%s' given twice", o->name);
		if (d->type == DC_OPT_FLAG && o->value)
			return spec_fail(c, o->pos, -EINVAL,
					 "option '%s' is a flag and takes no value "
					 "(write ';%s')",
					 o->name, o->name);
		if (d->type != DC_OPT_FLAG && !o->value)
			return spec_fail(c, o->pos, -EINVAL,
					 "option '%s' needs a value (%s%s)", o->name,
					 o->name, spec_opt_type_hint(d->type));
		if (d->type == DC_OPT_SIZE && dc_parse_size(o->value, &v->num) < 0)
			return spec_fail(c, vpos, -EINVAL,
					 "option '%s': invalid size '%s' (decimal with "
					 "optional K/M/G/T, B or iB, e.g. 64K, 1G, 1GiB)",
					 o->name, o->value);
		if (d->type == DC_OPT_UINT &&
		    (r = spec_parse_uint(o->value, &v->num)) < 0)
			return spec_fail(c, vpos, -EINVAL,
					 "option '%s': %s '%s' (a decimal number)",
					 o->name,
					 r == -ERANGE ? "too large" : "invalid number",
					 o->value);
		/* Ownership moves to the spec. */
		v->name = o->name;
		v->value = o->value;
		o->name = o->value = NULL;
		s->nopts++;
	}
	return 0;
}

static bool spec_ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && strcasecmp(s + a - b, suffix) == 0;
}

static int spec_lookup(struct spec_ctx *c, struct dc_spec *s, const char *kind, size_t at)
{
	int r = dc__registry_lookup(kind, &s->plugin, &s->form);

	if (r < 0)
		return spec_fail_registry(c, at, r);
	c->form = s->form;
	return 0;
}

/* A file path picks its format by extension, as OpenVMM does (.vhd, .vmgs,
 * .vhdx, and .qcow2; .iso stays raw and read-only, which the file plugin
 * enforces): a VHD opened as
 * raw would expose its footer as data, so there is no fallback to raw. A block
 * device is what OpenVMM opens through its io_uring block device backend on
 * Linux: blockdev, or file when blockdev is not installed. */
static int spec_file_form(struct spec_ctx *c, struct dc_spec *s, size_t at)
{
	const char *path = s->fields[0];
	const char *const *try;
	static const char *const vhd[] = { "vhd", "vhd1", NULL };
	static const char *const vhdx[] = { "vhdx", NULL };
	static const char *const vhd1[] = { "vhd1", NULL };
	static const char *const qcow2[] = { "qcow2", NULL };
	static const char *const bdev[] = { "blockdev", "file", NULL };
	static const char *const raw[] = { "file", NULL };
	const char *what = NULL, *why = NULL;
	struct stat st;
	int r;

	if (spec_ends_with(path, ".vhd")) {
		try = vhd;
		what = "'.vhd' images need the vhd or vhd1 plugin";
		why = "a VHD is never opened as a raw file: its footer would show as data";
	} else if (spec_ends_with(path, ".vmgs")) {
		/* A VM guest state file is a fixed VHD (OpenVMM opens it as one). */
		try = vhd1;
		what = "'.vmgs' files need the vhd1 plugin";
		why = "a VMGS file is a fixed VHD, never opened as a raw file";
	} else if (spec_ends_with(path, ".qcow2")) {
		try = qcow2;
		what = "'.qcow2' images need the qcow2 plugin";
		why = "a qcow2 image is never opened as a raw file: its tables would "
		      "show as data";
	} else if (spec_ends_with(path, ".vhdx")) {
		try = vhdx;
		what = "'.vhdx' images need the vhdx plugin";
		why = "a VHDX is never opened as a raw file: its headers would show as "
		      "data";
	} else if (stat(path, &st) == 0 && S_ISBLK(st.st_mode)) {
		try = bdev;
		what = "block devices need the blockdev or file plugin";
		why = "a block device is opened as a raw disk";
	} else {
		try = raw;
	}
	for (; *try; try++) {
		r = dc__registry_lookup(*try, &s->plugin, &s->form);
		if (r == 0)
			break;
		if (r != -ENOENT || !what)
			return spec_fail_registry(c, at, r);
	}
	if (!*try) {
		c->hint = NULL;
		return spec_fail(c, at, -ENOENT, "%s and none is installed (%s)", what,
				 why);
	}
	c->form = s->form;
	/* The plugin learns the file was named as a path ("file:x.vhd;create=" makes
	 * a fixed VHD, as OpenVMM does). */
	if (strcmp(s->form->name, "file") != 0)
		s->written = "file";
	if (s->form->nfields != 1 || s->form->child != DC_CHILD_NONE)
		return spec_fail(c, at, -EINVAL,
				 "plugin %s claims '%s' but not as a one-field leaf",
				 s->plugin->name, s->form->name);
	return 0;
}

static int spec_elem(const char *full, size_t start, size_t len, unsigned depth,
		     struct dc_spec **out);

/* Parse "[SPEC,SPEC,...]" at `at` up to the element's end. */
static int spec_list(struct spec_ctx *c, struct dc_spec *s, size_t at, unsigned depth)
{
	const char *e = c->full;
	size_t end = c->start + c->len, i, member;
	unsigned level = 1;
	uint32_t cap = 0;
	int r;

	if (at >= end || e[at] != '[')
		return spec_fail(c, at, -EINVAL, "missing '[' to open the list");
	member = at + 1;
	for (i = at + 1; i < end && level; i++) {
		if (e[i] == '[') {
			level++;
			continue;
		}
		if (e[i] == ']' && --level)
			continue;
		if (e[i] != ',' && e[i] != ']')
			continue;
		if (e[i] == ',' && level != 1)
			continue;
		if (i == member) {
			if (e[i] == ']' && !s->nchildren)
				return spec_fail(c, at, -EINVAL, "empty list");
			return spec_fail(c, i, -EINVAL, "empty list member");
		}
		if (s->nchildren == cap) {
			uint32_t ncap = cap ? cap * 2 : 4;
			void *n = realloc(s->children, ncap * sizeof(*s->children));

			if (!n)
				return -ENOMEM;
			s->children = n;
			cap = ncap;
		}
		s->children[s->nchildren++] = NULL;
		r = spec_elem(e, member, i - member, depth + 1,
			      &s->children[s->nchildren - 1]);
		if (r < 0)
			return r;
		member = i + 1;
	}
	if (level)
		return spec_fail(c, end, -EINVAL, "missing ']' to close the list");
	if (i != end)
		return spec_fail(c, i, -EINVAL, "unexpected text after ']'");
	return 0;
}

/* Does the option item [p, p + len) ("NAME" or "NAME=VALUE") name an option
 * the form declares? */
static bool spec_declared(const struct dc_form *f, const char *p, size_t len)
{
	const char *eq = memchr(p, '=', len);
	size_t n = eq ? (size_t)(eq - p) : len;

	for (const struct dc_option *o = f->options; o && o->name; o++)
		if (strlen(o->name) == n && memcmp(o->name, p, n) == 0)
			return true;
	return false;
}

/* DC_FORM_TAIL_OPTIONS: the ';' in [from, to) after which every ';'-separated
 * item is a declared option, the leftmost such; NULL when the field does not
 * end in options. Every other ';' belongs to the field. */
static const char *spec_tail_opts(const struct spec_ctx *c, size_t from, size_t to)
{
	const char *start = NULL;
	size_t end = to;

	for (size_t i = to; i-- > from;) {
		if (c->full[i] != ';')
			continue;
		if (!spec_declared(c->form, c->full + i + 1, end - i - 1))
			break;
		start = c->full + i;
		end = i;
	}
	return start;
}

/* Fields and children of the element, from `p`, the first field (just after
 * the ':' that follows the kind and its options). */
static int spec_body(struct spec_ctx *c, struct dc_spec *s, size_t p, unsigned depth,
		     bool file_leaf)
{
	const char *e = c->full;
	size_t end = c->start + c->len;
	uint32_t nfields = file_leaf ? 1 : c->form->nfields;
	uint32_t child = file_leaf ? DC_CHILD_NONE : c->form->child;
	size_t fpos = p;
	uint32_t i;
	int r;

	if (nfields) {
		s->fields = calloc(nfields, sizeof(*s->fields));
		if (!s->fields)
			return -ENOMEM;
	}
	for (i = 0; i < nfields; i++) {
		const char *colon = memchr(e + p, ':', end - p);
		size_t fend = colon ? (size_t)(colon - e) : end;
		const char *semi;

		fpos = p;
		if (i + 1 == nfields && child == DC_CHILD_NONE)
			fend = end; /* a leaf's last field takes the rest */
		else if (!colon && i + 1 < nfields)
			return spec_fail(c, p, -EINVAL, "missing field %u of %u", i + 2,
					 nfields);
		else if (!colon)
			return spec_fail(c, p, -EINVAL, "missing %s",
					 child == DC_CHILD_ONE ? "inner spec" :
								 "bracketed list");
		if (i + 1 == nfields && child == DC_CHILD_NONE && !file_leaf &&
		    (c->form->flags & DC_FORM_TAIL_OPTIONS))
			semi = spec_tail_opts(c, p, fend);
		else
			semi = memchr(e + p, ';', fend - p);
		s->fields[i] = strndup(e + p, (semi ? (size_t)(semi - e) : fend) - p);
		if (!s->fields[i])
			return -ENOMEM;
		s->nfields++;
		if (semi && (r = spec_collect_opts(c, semi - e + 1, fend)) < 0)
			return r;
		p = fend + 1;
	}
	if (file_leaf && (r = spec_file_form(c, s, fpos)) < 0)
		return r;
	if (child == DC_CHILD_ONE) {
		if (p >= end)
			return spec_fail(c, fpos, -EINVAL, "missing inner spec");
		s->children = calloc(1, sizeof(*s->children));
		if (!s->children)
			return -ENOMEM;
		s->nchildren = 1;
		return spec_elem(e, p, end - p, depth + 1, &s->children[0]);
	}
	if (child == DC_CHILD_LIST) {
		if (p >= end)
			return spec_fail(c, fpos, -EINVAL, "missing bracketed list");
		return spec_list(c, s, p, depth);
	}
	return 0;
}

/* The kind, its options and the ':' before the fields; returns the position
 * of the first field, or end + 1 for a form that takes nothing. */
static int spec_kind(struct spec_ctx *c, struct dc_spec *s, bool *file_leaf,
		     size_t *first)
{
	const char *e = c->full + c->start;
	size_t len = c->len, end = c->start + c->len, kend, p;
	bool pathlike;
	char *kind;
	int r;

	for (kend = 0; kend < len && e[kend] != ':' && e[kend] != ';'; kend++)
		;
	if (!kend)
		return spec_fail(c, c->start, -EINVAL,
				 "missing disk kind; expected KIND:ARG");
	kind = strndup(e, kend);
	if (!kind)
		return -ENOMEM;
	/* "file" resolves after the path is known (extension dispatch). */
	*file_leaf = strcmp(kind, "file") == 0;
	r = *file_leaf ? 0 : spec_lookup(c, s, kind, c->start);
	/* OpenVMM reads a string without ':' as a path relative to the working
	 * directory ("memdiff:disks/base.img", "disk;create=1G", "disk"), and
	 * so does diskcore when no kind has that name: if it looks like a path
	 * ('/' or '.'), carries options, or names a file that exists
	 * (docs/openvmm-compat.md §5.1). A bare word naming nothing stays an
	 * unknown kind, so a mistyped kind is reported as one. */
	if (r == -ENOENT && !memchr(e, ':', len)) {
		struct stat st;

		pathlike = strpbrk(kind, "/.") || kend < len || stat(kind, &st) == 0;
		if (!pathlike)
			r = spec_fail_nofile(kind);
	} else {
		pathlike = false;
	}
	free(kind);
	if (pathlike) {
		dc__error_clear();
		*file_leaf = true;
		c->hint = "PATH[;OPTION...]";
		*first = c->start;
		return 0;
	}
	if (r < 0)
		return r;
	if (*file_leaf)
		c->hint = "file:PATH[;OPTION...]";
	p = c->start + kend;
	if (p < end && c->full[p] == ';') {
		const char *colon = memchr(c->full + p, ':', end - p);
		size_t oend = colon ? (size_t)(colon - c->full) : end;

		if ((r = spec_collect_opts(c, p + 1, oend)) < 0)
			return r;
		p = oend;
	}
	if (!*file_leaf && !c->form->nfields && c->form->child == DC_CHILD_NONE) {
		/* "probe", "probe;ro" or "probe:" */
		if (p == end || (c->full[p] == ':' && p + 1 == end)) {
			*first = end + 1;
			return 0;
		}
		return spec_fail(c, p, -EINVAL, "unexpected text after the kind");
	}
	if (p == end || c->full[p] != ':')
		return spec_fail(c, p, -EINVAL, "missing ':' after the kind");
	*first = p + 1;
	return 0;
}

static int spec_elem(const char *full, size_t start, size_t len, unsigned depth,
		     struct dc_spec **out)
{
	struct spec_ctx c = { .full = full, .start = start, .len = len };
	struct dc_spec *s;
	bool file_leaf = true;
	size_t first = start;
	uint32_t i;
	int r = 0;

	*out = s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->pos = start;
	s->text = strndup(full + start, len);
	if (!s->text)
		return -ENOMEM;
	if (depth > SPEC_MAX_DEPTH)
		return spec_fail(&c, start, -ELOOP, "nested more than %d deep",
				 SPEC_MAX_DEPTH);
	if (!len)
		return spec_fail(&c, start, -EINVAL,
				 "empty spec; expected KIND:ARG or an absolute path");
	/* A bare absolute path is "file:" with the whole string. */
	if (full[start] == '/')
		c.hint = "/PATH[;OPTION...]";
	else
		r = spec_kind(&c, s, &file_leaf, &first);
	if (r == 0 && first <= start + len)
		r = spec_body(&c, s, first, depth, file_leaf);
	if (r == 0)
		r = spec_check_opts(&c, s);
	for (i = 0; i < c.nraw; i++) {
		free(c.raw[i].name);
		free(c.raw[i].value);
	}
	free(c.raw);
	return r;
}

void dc__spec_free(struct dc_spec *s)
{
	uint32_t i;

	if (!s)
		return;
	for (i = 0; i < s->nchildren; i++)
		dc__spec_free(s->children[i]);
	free(s->children);
	for (i = 0; i < s->nfields; i++)
		free(s->fields[i]);
	free(s->fields);
	for (i = 0; i < s->nopts; i++) {
		free((char *)s->opts[i].name);
		free((char *)s->opts[i].value);
	}
	free(s->opts);
	free(s->text);
	free(s);
}

int dc__spec_parse(const char *spec, struct dc_spec **out)
{
	struct dc_spec *s = NULL;
	int r;

	*out = NULL;
	if (!spec) {
		dc__error_raw("no spec given");
		return -EINVAL;
	}
	r = spec_elem(spec, 0, strlen(spec), 0, &s);
	if (r < 0) {
		if (r == -ENOMEM)
			dc__error_raw("out of memory parsing the spec");
		dc__spec_free(s);
		return r;
	}
	*out = s;
	return 0;
}
