/* SPDX-License-Identifier: MIT */
/* What a header may make an open spend (issue 19: a LUKS header is untrusted
 * input). A key slot's cost is its key derivation plus its digest's PBKDF2:
 *
 *   pbkdf-memory-max=SIZE    Argon2 memory of one key slot (default 1G)
 *   pbkdf-work-max=SIZE      Argon2 memory times passes, summed over the slots
 *                            one open tries (default 16G: four 1 GiB slots of
 *                            4 passes, cryptsetup's default)
 *   pbkdf-iterations-max=N   PBKDF2 iterations, key slots and digests summed
 *                            over the slots one open tries (default 32000000:
 *                            about half a minute on one slow core; cryptsetup's
 *                            2-second benchmark gives a few million)
 *
 * and Argon2 runs at most LUKS_ARGON2_CPUS_MAX threads. A slot over a limit is
 * not tried, and says why (the message names the option that raises it);
 * docs/spec-strings.md#luks documents them. */
#include "luks.h"

#include <errno.h>
#include <stdio.h>

#define LUKS_MEMORY_MAX_DEFAULT (1ull << 30)
#define LUKS_WORK_MAX_DEFAULT (16ull << 30)
#define LUKS_ITERATIONS_MAX_DEFAULT 32000000ull

int luks_limits_parse(const struct dc_open_args *a, struct luks_limits *lim)
{
	static const struct {
		const char *name;
		uint64_t min;
		const char *least;
	} opt[] = {
		{ "pbkdf-memory-max", 8 * 1024, "8K (Argon2's least)" },
		{ "pbkdf-work-max", 8 * 1024, "8K" },
		{ "pbkdf-iterations-max", 1, "1" },
	};
	uint64_t *field[] = { &lim->memory, &lim->work, &lim->iterations };

	lim->memory = LUKS_MEMORY_MAX_DEFAULT;
	lim->work = LUKS_WORK_MAX_DEFAULT;
	lim->iterations = LUKS_ITERATIONS_MAX_DEFAULT;
	for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++) {
		uint64_t v;

		if (!dc_opt_num(a, opt[i].name, &v))
			continue;
		if (v < opt[i].min) {
			dc_error("%s=%llu: expected at least %s", opt[i].name,
				 (unsigned long long)v, opt[i].least);
			return -EINVAL;
		}
		*field[i] = v;
	}
	return 0;
}

/* What trying slot s costs: its KDF and its digest's PBKDF2. */
static void luks_slot_cost(const struct luks_hdr *h, const struct luks_slot *s,
			   struct luks_limits *c)
{
	c->iterations = s->digest >= 0 ? h->digest[s->digest].iterations : 0;
	c->memory = 0;
	c->work = 0;
	if (s->kdf.type == LUKS_PBKDF2) {
		c->iterations += s->kdf.iterations;
		return;
	}
	c->memory = (uint64_t)s->kdf.memory * 1024;
	if (__builtin_mul_overflow(c->memory, (uint64_t)s->kdf.iterations, &c->work))
		c->work = UINT64_MAX;
}

/* ", N spent" when something was. */
static const char *luks_spent(char *buf, size_t len, uint64_t spent, uint64_t div)
{
	buf[0] = 0;
	if (spent)
		snprintf(buf, len, ", %llu spent on other slots",
			 (unsigned long long)(spent / div));
	return buf;
}

bool luks_slot_fits(const struct luks_limits *lim, const struct luks_limits *spent,
		    const struct luks_hdr *h, const struct luks_slot *s, char *why,
		    size_t len)
{
	const char *kdf = luks_kdf_names[s->kdf.type];
	struct luks_limits c;
	char sp[64];

	luks_slot_cost(h, s, &c);
	if (s->kdf.type != LUKS_PBKDF2 && s->kdf.cpus > LUKS_ARGON2_CPUS_MAX)
		snprintf(why, len, "%s wants %u threads; at most %u run here", kdf,
			 s->kdf.cpus, LUKS_ARGON2_CPUS_MAX);
	else if (c.memory > lim->memory)
		snprintf(why, len,
			 "%s wants %llu KiB of memory, over pbkdf-memory-max (%llu KiB): "
			 "raise it with ;pbkdf-memory-max=SIZE",
			 kdf, (unsigned long long)(c.memory >> 10),
			 (unsigned long long)(lim->memory >> 10));
	else if (c.work > lim->work - spent->work)
		snprintf(why, len,
			 "%s fills %llu KiB %u times, over pbkdf-work-max (%llu KiB in "
			 "all%s): raise it with ;pbkdf-work-max=SIZE",
			 kdf, (unsigned long long)(c.memory >> 10), s->kdf.iterations,
			 (unsigned long long)(lim->work >> 10),
			 luks_spent(sp, sizeof(sp), spent->work, 1024));
	else if (c.iterations > lim->iterations - spent->iterations)
		snprintf(why, len,
			 "%llu PBKDF2 iterations (key slot and digest), over "
			 "pbkdf-iterations-max (%llu in all%s): raise it with "
			 ";pbkdf-iterations-max=N",
			 (unsigned long long)c.iterations,
			 (unsigned long long)lim->iterations,
			 luks_spent(sp, sizeof(sp), spent->iterations, 1));
	else
		return true;
	return false;
}

void luks_slot_spend(struct luks_limits *spent, const struct luks_hdr *h,
		     const struct luks_slot *s)
{
	struct luks_limits c;

	luks_slot_cost(h, s, &c);
	spent->work += c.work;
	spent->iterations += c.iterations;
}

void luks_limits_apply(const struct luks_limits *lim, struct luks_hdr *h)
{
	const struct luks_limits none = { 0 };

	for (unsigned i = 0; i < h->nslots; i++) {
		struct luks_slot *s = &h->slot[i];

		if (s->active && !s->skip[0] && s->digest >= 0)
			luks_slot_fits(lim, &none, h, s, s->skip, sizeof(s->skip));
	}
}
