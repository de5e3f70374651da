/* SPDX-License-Identifier: MIT */
/*
 * diskctl resize: change a disk's size through dc_resize(). Shrinking drops
 * whatever lies past the new end, so it is refused without --shrink, as
 * qemu-img resize refuses it (docs/diskctl.md, "Resizing: resize").
 */
#include "diskctl.h"

#include <inttypes.h>
#include <stdlib.h>

/* Sum the data dc_map() finds past the new end (holes and zeroes lose nothing). */
static int ctl_resize_count_data(void *arg, const struct dc_extent *e)
{
	uint64_t *data = arg;

	if (!(e->flags & DC_EXTENT_ZERO))
		*data += e->length;
	return 0;
}

/* SIZE, +SIZE or -SIZE against the current size in bytes. */
static uint64_t ctl_resize_target(const char *s, uint64_t old)
{
	uint64_t v;

	if (s[0] != '+' && s[0] != '-')
		return ctl_arg_size("SIZE", s);
	v = ctl_arg_size("SIZE", s + 1);
	if (s[0] == '+') {
		if (v > UINT64_MAX - old)
			ctl_usage("SIZE: %" PRIu64 " + %" PRIu64 " bytes overflows", old,
				  v);
		return old + v;
	}
	if (v >= old)
		ctl_usage("SIZE: '%s' leaves nothing of %" PRIu64 " bytes", s, old);
	return old - v;
}

/* Is shrinking allowed, and what does it drop? 0 to go on, -1 refused. */
static int ctl_resize_shrink(dc_disk *d, const char *spec, uint64_t old, uint64_t size,
			     bool shrink)
{
	uint64_t data = 0;
	char hb[32];
	int rc;

	if (!shrink) {
		ctl_err("'%s' is %" PRIu64 " bytes: shrinking it to %" PRIu64
			" drops everything past that byte; pass --shrink to do it "
			"(as qemu-img resize --shrink), after shrinking what lives "
			"on the disk (partitions, file systems)",
			spec, old, size);
		return -1;
	}
	rc = dc_map(d, size, old - size, ctl_resize_count_data, &data);
	if (rc < 0)
		ctl_err("warning: cannot tell what lies past byte %" PRIu64 ": %s", size,
			ctl_last_error(rc));
	else if (data) {
		ctl_human_bytes(data, hb, sizeof(hb));
		ctl_err("warning: --shrink drops %" PRIu64 " bytes (%s) of data past "
			"byte %" PRIu64,
			data, hb, size);
	}
	return 0;
}

struct ctl_resize_args {
	bool shrink, quiet;
};

const struct ctl_opt ctl_resize_opts[] = {
	CTL_OPT("shrink", 0, CTL_OPT_TRUE, struct ctl_resize_args, shrink, NULL,
		"allow making the disk smaller (a warning says how much\n"
		"data is dropped)"),
	CTL_OPT_QUIET(struct ctl_resize_args, "print nothing on success"),
	{ 0 },
};

int ctl_resize(int argc, char **argv)
{
	struct ctl_resize_args a = { 0 };
	char **ops = ctl_parse(argc, argv, &a, NULL);
	const char *spec = ops[0];
	uint64_t old, size;
	uint32_t ss;
	dc_disk *d;
	char hb[32];
	int c, rc = CTL_EXIT_FAIL;

	d = ctl_open(spec, 0);
	if (!d)
		return CTL_EXIT_FAIL;
	ss = dc_sector_size(d);
	old = dc_sector_count(d) * ss;
	size = ctl_resize_target(ops[1], old);
	if (size == 0 || size % ss) {
		ctl_err("SIZE %" PRIu64 " is not a whole, non-zero number of the "
			"%" PRIu32 "-byte sectors of '%s' (%" PRIu64 " would be)",
			size, ss, spec, (size / ss + 1) * ss);
		goto out;
	}
	if (size == old) {
		if (!a.quiet)
			printf("'%s' is already %" PRIu64 " bytes\n", spec, size);
		rc = 0;
		goto out;
	}
	if (size < old && ctl_resize_shrink(d, spec, old, size, a.shrink) < 0)
		goto out;
	c = dc_resize(d, size / ss);
	if (c < 0) {
		ctl_err("cannot resize '%s': %s", spec, ctl_last_error(c));
		goto out;
	}
	rc = ctl_flush(d, spec) < 0 ? CTL_EXIT_FAIL : 0;
	size = dc_sector_count(d) * ss;
	if (!rc && !a.quiet) {
		ctl_human_bytes(size, hb, sizeof(hb));
		printf("resized '%s' from %" PRIu64 " to %" PRIu64 " bytes (%s)\n", spec,
		       old, size, hb);
	}
out:
	dc_close(d);
	return rc;
}
