/* SPDX-License-Identifier: MIT */
/* fault: parsing the rules field and deciding when a rule fires.
 *
 * The field is one ':'-separated spec field, so it cannot hold ':' (the next
 * field) or ';' (options); ',' '=' '@' '%' '/' '-' '+' are plain text there
 * (docs/spec-strings.md, "Grammar"). Hence delay=OP/MS rather than OP:MS, and
 * '+' as a second rule separator for a fault: inside a list member, where ','
 * separates the members. */
#include "fault.h"

#include <diskcore/plugin.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAULT_RATE_DECIMALS 7 /* 100.0000000% = FAULT_RATE_ONE */
#define FAULT_SYNTAX "OP=ERRNO@WHEN, hang=OP@WHEN or delay=OP/MS@WHEN"
#define FAULT_OPS_ALL                                                              \
	(DC_OP_BIT(DC_OP_READ) | DC_OP_BIT(DC_OP_WRITE) | DC_OP_BIT(DC_OP_FLUSH) | \
	 DC_OP_BIT(DC_OP_UNMAP))

static const struct {
	const char *name;
	int err;
} fault_errnos[] = {
	{ "EIO", EIO },
	{ "ENOSPC", ENOSPC },
	{ "EDQUOT", EDQUOT },
	{ "EFBIG", EFBIG },
	{ "EROFS", EROFS },
	{ "EILSEQ", EILSEQ },
	{ "ENOMEM", ENOMEM },
	{ "ETIMEDOUT", ETIMEDOUT },
	{ "ENXIO", ENXIO },
	{ "ENODEV", ENODEV },
	{ "ENOLINK", ENOLINK },
	{ "ESTALE", ESTALE },
	{ "ECONNRESET", ECONNRESET },
	{ "EPIPE", EPIPE },
	{ "EAGAIN", EAGAIN },
	{ "EBUSY", EBUSY },
	{ "EACCES", EACCES },
	{ "EPERM", EPERM },
	{ "EBADMSG", EBADMSG },
	{ "EOPNOTSUPP", EOPNOTSUPP },
};

static const struct {
	const char *name;
	uint64_t ops;
} fault_ops[] = {
	{ "read", DC_OP_BIT(DC_OP_READ) },
	{ "write", DC_OP_BIT(DC_OP_WRITE) },
	{ "flush", DC_OP_BIT(DC_OP_FLUSH) },
	{ "unmap", DC_OP_BIT(DC_OP_UNMAP) },
	{ "any", FAULT_OPS_ALL },
};

/* A splitmix64 step: a bijection with good avalanche, so consecutive counters
 * give unrelated values. */
static uint64_t fault_mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* The k-th value of rule idx's stream: counter based, so it needs no state
 * and several queues may draw at once (fault.c keeps k atomic). */
static uint64_t fault_draw(uint64_t seed, unsigned idx, uint64_t k)
{
	uint64_t stream = fault_mix(seed + UINT64_C(0x9e3779b97f4a7c15) * (idx + 1));

	return fault_mix(stream + UINT64_C(0x9e3779b97f4a7c15) * (k + 1));
}

bool fault_rule_fires(const struct fault_rule *r, uint64_t seed, unsigned idx, uint64_t k,
		      uint64_t sector, uint64_t count)
{
	switch (r->when) {
	case FAULT_RATE:
		/* A uniform value in [0, FAULT_RATE_ONE). */
		return (uint64_t)(((unsigned __int128)fault_draw(seed, idx, k) *
				   FAULT_RATE_ONE) >>
				  64) < r->rate;
	case FAULT_AFTER:
		return k >= r->after;
	case FAULT_SECTORS:
		return count && sector <= r->last && sector + (count - 1) >= r->first;
	}
	return false;
}

/* A decimal number, nothing else; false on overflow or junk. */
static bool fault_uint(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (!len)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned d = (unsigned char)s[i] - '0';

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* "N%" or "N.DDD%", 0 to 100, in parts per FAULT_RATE_ONE. */
static bool fault_rate(const char *s, size_t len, uint64_t *out)
{
	const char *dot = memchr(s, '.', len);
	size_t ilen = dot ? (size_t)(dot - s) : len - 1, flen = 0;
	uint64_t whole, frac = 0;

	if (len < 2 || s[len - 1] != '%' || !fault_uint(s, ilen, &whole) || whole > 100)
		return false;
	if (dot) {
		flen = len - 1 - ilen - 1;
		if (!flen || flen > FAULT_RATE_DECIMALS ||
		    !fault_uint(dot + 1, flen, &frac))
			return false;
	}
	for (size_t i = flen; i < FAULT_RATE_DECIMALS; i++)
		frac *= 10;
	*out = whole * (FAULT_RATE_ONE / 100) + frac;
	return *out <= FAULT_RATE_ONE;
}

static void fault_errno_list(char *buf, size_t size)
{
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(fault_errnos) / sizeof(fault_errnos[0]); i++)
		if (n < size)
			n += snprintf(buf + n, size - n, "%s%s", i ? ", " : "",
				      fault_errnos[i].name);
}

/* A parse error, naming the rule it is in. */
static int rule_fail(const struct fault_rule *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int rule_fail(const struct fault_rule *r, const char *fmt, ...)
{
	char msg[1024]; /* the longest message dc_fail() keeps */
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return dc_fail(-EINVAL, "rule \"%s\": %s", r->text, msg);
}

static int fault_op(const struct fault_rule *r, const char *s, size_t len, uint64_t *ops)
{
	for (size_t i = 0; i < sizeof(fault_ops) / sizeof(fault_ops[0]); i++)
		if (strlen(fault_ops[i].name) == len &&
		    !memcmp(fault_ops[i].name, s, len)) {
			*ops = fault_ops[i].ops;
			return 0;
		}
	return rule_fail(
		r,
		"unknown operation \"%.*s\": expected read, write, flush, unmap or any",
		(int)len, s);
}

static int fault_errno(const struct fault_rule *r, const char *s, size_t len, int *err)
{
	char list[256];

	for (size_t i = 0; i < sizeof(fault_errnos) / sizeof(fault_errnos[0]); i++)
		if (strlen(fault_errnos[i].name) == len &&
		    !memcmp(fault_errnos[i].name, s, len)) {
			*err = fault_errnos[i].err;
			return 0;
		}
	fault_errno_list(list, sizeof(list));
	return rule_fail(r, "unknown errno \"%.*s\": accepted: %s", (int)len, s, list);
}

/* What follows '=' in hang=OP and delay=OP/MS, or ERRNO after an op. */
static int fault_head(struct fault_rule *r, const char *head, size_t len)
{
	const char *eq = memchr(head, '=', len), *rhs, *slash;
	size_t llen, rlen;

	if (!eq)
		return rule_fail(r, "expected " FAULT_SYNTAX);
	llen = (size_t)(eq - head);
	rhs = eq + 1;
	rlen = len - llen - 1;
	if (llen == 4 && !memcmp(head, "hang", 4)) {
		r->action = FAULT_HANG;
		return fault_op(r, rhs, rlen, &r->ops);
	}
	if (llen == 5 && !memcmp(head, "delay", 5)) {
		r->action = FAULT_DELAY;
		slash = memchr(rhs, '/', rlen);
		if (!slash)
			return rule_fail(
				r,
				"expected delay=OP/MS@WHEN (MS in whole milliseconds)");
		if (!fault_uint(slash + 1, rlen - (size_t)(slash - rhs) - 1, &r->ms) ||
		    r->ms > FAULT_MAX_MS)
			return rule_fail(
				r,
				"delay \"%.*s\" is not whole milliseconds from 0 to %u",
				(int)(rlen - (size_t)(slash - rhs) - 1), slash + 1,
				FAULT_MAX_MS);
		return fault_op(r, rhs, (size_t)(slash - rhs), &r->ops);
	}
	r->action = FAULT_ERROR;
	if (fault_op(r, head, llen, &r->ops) < 0)
		return -EINVAL;
	return fault_errno(r, rhs, rlen, &r->err);
}

static int fault_when(struct fault_rule *r, const char *w, size_t len)
{
	const char *dash;

	if (len && w[len - 1] == '%') {
		r->when = FAULT_RATE;
		if (!fault_rate(w, len, &r->rate))
			return rule_fail(
				r,
				"rate \"%.*s\" is not a percentage from 0%% to 100%% "
				"(at most %d decimals)",
				(int)len, w, FAULT_RATE_DECIMALS);
		return 0;
	}
	if (len >= 6 && !memcmp(w, "after=", 6)) {
		r->when = FAULT_AFTER;
		if (!fault_uint(w + 6, len - 6, &r->after))
			return rule_fail(r, "after= needs a request count, not \"%.*s\"",
					 (int)(len - 6), w + 6);
		return 0;
	}
	if (len >= 8 && !memcmp(w, "sectors=", 8)) {
		r->when = FAULT_SECTORS;
		dash = memchr(w + 8, '-', len - 8);
		if (!dash || !fault_uint(w + 8, (size_t)(dash - w) - 8, &r->first) ||
		    !fault_uint(dash + 1, len - (size_t)(dash - w) - 1, &r->last) ||
		    r->first > r->last)
			return rule_fail(
				r,
				"sectors= needs FIRST-LAST sector numbers with FIRST <= "
				"LAST, not \"%.*s\"",
				(int)(len - 8), w + 8);
		if (r->ops == DC_OP_BIT(DC_OP_FLUSH))
			return rule_fail(
				r, "a flush has no sectors: sectors= applies to read, "
				   "write, unmap and any");
		return 0;
	}
	return rule_fail(r,
			 "unknown WHEN \"%.*s\": expected a rate such as 5%%, after=N "
			 "or sectors=A-B",
			 (int)len, w);
}

static int fault_rule(struct fault_rule *r, const char *s, size_t len)
{
	const char *at;

	r->text = strndup(s, len);
	if (!r->text)
		return dc_fail(-ENOMEM, "out of memory");
	atomic_init(&r->seen, 0);
	atomic_init(&r->injected, 0);
	at = memchr(s, '@', len);
	if (!at)
		return rule_fail(
			r, "missing @WHEN (a rate such as 5%%, after=N or sectors=A-B)");
	if (fault_head(r, s, (size_t)(at - s)) < 0)
		return -EINVAL;
	return fault_when(r, at + 1, len - (size_t)(at - s) - 1);
}

int fault_rules_parse(const char *field, struct fault_rule *rules, unsigned *n)
{
	const char *p = field;
	int rc = 0;

	*n = 0;
	if (!*field)
		return dc_fail(-EINVAL,
			       "no rules: expected fault:RULE[,RULE...][;seed=N]:SPEC "
			       "with RULE " FAULT_SYNTAX);
	for (;;) {
		size_t len = strcspn(p, ",+");

		if (!len) {
			rc = dc_fail(
				-EINVAL,
				"empty rule in \"%s\": rules are separated by one ',' "
				"or '+'",
				field);
			break;
		}
		if (*n == FAULT_MAX_RULES) {
			rc = dc_fail(-EINVAL, "more than %d rules", FAULT_MAX_RULES);
			break;
		}
		memset(&rules[*n], 0, sizeof(rules[*n]));
		rc = fault_rule(&rules[*n], p, len);
		(*n)++;
		if (rc < 0 || !p[len])
			break;
		p += len + 1;
	}
	if (rc < 0) {
		fault_rules_free(rules, *n);
		*n = 0;
	}
	return rc;
}

void fault_rules_free(struct fault_rule *rules, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		free(rules[i].text);
		rules[i].text = NULL;
	}
}
