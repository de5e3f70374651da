/* SPDX-License-Identifier: MIT */
/* fault: the rules of one fault: element, parsed from its rules field
 * (docs/spec-strings.md, "fault"), and the decision whether a rule fires. */
#ifndef DISKCORE_PLUGIN_FAULT_H
#define DISKCORE_PLUGIN_FAULT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define FAULT_MAX_RULES 12	   /* three describe() keys each stay readable */
#define FAULT_MAX_MS 3600000u	   /* one hour: anything longer is a typo */
#define FAULT_RATE_ONE 1000000000u /* rates are kept in parts per 10^9 */

enum fault_action {
	FAULT_ERROR = 1, /* OP=ERRNO@WHEN: complete with -ERRNO */
	FAULT_HANG = 2,	 /* hang=OP@WHEN: hold the request */
	FAULT_DELAY = 3, /* delay=OP/MS@WHEN: forward, complete MS later */
};

enum fault_when {
	FAULT_RATE = 1,	   /* N%: a seeded draw per request */
	FAULT_AFTER = 2,   /* after=N: every request of the op past the first N */
	FAULT_SECTORS = 3, /* sectors=A-B: requests that touch A..B */
};

struct fault_rule {
	char *text;   /* as written, for describe() */
	uint64_t ops; /* DC_OP_BIT()s the rule looks at */
	uint8_t action;
	uint8_t when;
	int err;		       /* FAULT_ERROR: a positive errno */
	uint64_t ms;		       /* FAULT_DELAY */
	uint64_t rate;		       /* FAULT_RATE: parts per FAULT_RATE_ONE */
	uint64_t after;		       /* FAULT_AFTER */
	uint64_t first;		       /* FAULT_SECTORS, inclusive */
	uint64_t last;		       /* FAULT_SECTORS, inclusive */
	atomic_uint_fast64_t seen;     /* requests of its ops; the next index */
	atomic_uint_fast64_t injected; /* faults it caused */
};

/* Parse the rules field into rules[0..*n); on error set dc_error() and
 * return -EINVAL (rules already parsed are freed). */
int fault_rules_parse(const char *field, struct fault_rule *rules, unsigned *n);
void fault_rules_free(struct fault_rule *rules, unsigned n);

/* Does rule number `idx` fire for its k-th request (0-based), which covers
 * count sectors from sector? Pure: the same seed gives the same answer. */
bool fault_rule_fires(const struct fault_rule *r, uint64_t seed, unsigned idx, uint64_t k,
		      uint64_t sector, uint64_t count);

#endif
