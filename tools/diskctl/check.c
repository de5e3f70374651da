/* SPDX-License-Identifier: MIT */
/*
 * diskctl check: the consistency of every image in a chain (dc_check), with
 * qemu-img check's exit status: 0 clean, 2 corruptions, 3 leaks only, 63 when
 * no element of the chain can check itself, 1 when a check could not run.
 */
#include "diskctl.h"

#include <inttypes.h>
#include <string.h>

#define CTL_CHECK_CORRUPT 2
#define CTL_CHECK_LEAKS 3
#define CTL_CHECK_UNSUPPORTED 63

struct ctl_check {
	bool json, quiet, share;
	size_t n;
};

static const char *const ctl_check_kinds[] = {
	[DC_CHECK_CORRUPT] = "corruption",
	[DC_CHECK_LEAK] = "leak",
	[DC_CHECK_NOTE] = "note",
};

static void ctl_check_found(void *arg, const char *element, uint32_t kind,
			    const char *message)
{
	struct ctl_check *c = arg;

	if (c->json) {
		printf("%s\n    {\"element\": ", c->n ? "," : "");
		ctl_json_str(stdout, element);
		printf(", \"kind\": \"%s\", \"message\": ",
		       CTL_ENUM_NAME(ctl_check_kinds, kind, "note"));
		ctl_json_str(stdout, message);
		printf("}");
	} else if (!c->quiet || kind != DC_CHECK_NOTE) {
		printf("%s: %s: %s\n", CTL_ENUM_NAME(ctl_check_kinds, kind, "note"),
		       element, message);
	}
	c->n++;
}

const struct ctl_opt ctl_check_opts[] = {
	CTL_OPT_JSON(struct ctl_check,
		     "one JSON object: findings, checked, corruptions, leaks"),
	CTL_OPT_QUIET(struct ctl_check, "print corruptions and leaks only"),
	CTL_OPT_FORCE_SHARE(struct ctl_check),
	{ 0 },
};

int ctl_check(int argc, char **argv)
{
	struct ctl_check c = { 0 };
	struct dc_check_result r;
	const char *spec = ctl_parse(argc, argv, &c, NULL)[0];
	dc_disk *d;
	int rc, status;

	d = ctl_open(spec, DC_OPEN_READ_ONLY | ctl_force_share(c.share, spec,
							       "findings may be false"));
	if (!d)
		return CTL_EXIT_FAIL;
	if (c.json)
		printf("{\"findings\": [");
	rc = dc_check(d, ctl_check_found, &c, &r);
	dc_close(d);
	if (rc < 0) {
		if (c.json)
			printf("%s]}\n", c.n ? "\n  " : "");
		ctl_err("%s: the check could not run: %s", spec, ctl_last_error(rc));
		return CTL_EXIT_FAIL;
	}
	status = r.corruptions ? CTL_CHECK_CORRUPT :
		 r.leaks       ? CTL_CHECK_LEAKS :
		 r.checked     ? 0 :
				 CTL_CHECK_UNSUPPORTED;
	if (c.json) {
		printf("%s], \"checked\": %" PRIu32 ", \"corruptions\": %" PRIu64
		       ", \"leaks\": %" PRIu64 "}\n",
		       c.n ? "\n  " : "", r.checked, r.corruptions, r.leaks);
	} else if (!c.quiet) {
		if (!r.checked)
			printf("no element of '%s' can check itself (raw data has no "
			       "metadata to check)\n",
			       spec);
		else if (!r.corruptions && !r.leaks)
			printf("no errors were found (%" PRIu32 " element%s checked)\n",
			       r.checked, r.checked == 1 ? "" : "s");
		else
			printf("%" PRIu64 " corruption%s, %" PRIu64 " leak%s\n",
			       r.corruptions, r.corruptions == 1 ? "" : "s", r.leaks,
			       r.leaks == 1 ? "" : "s");
	}
	return status;
}
