/* SPDX-License-Identifier: MIT */
/* rbd's allocation map (extents(), ABI 1.1): librbd's diff from the image's
 * creation (rbd_diff_iterate2 without a start snapshot) lists the objects
 * that exist, from the object map when the image has fast-diff. An object
 * that does not exist is a hole that reads as zeroes; one that exists is data,
 * whole (whole_object: a partly written object is reported as data, which a
 * sparse copy may always do). A clone's parent counts as data. */
#include "rbd.h"

#include <errno.h>
#include <string.h>

/* The first run of [start, end) in bytes: data from `start`, or a hole up
 * to the first data. */
struct rbd_run {
	uint64_t start, end;
	uint64_t data_end; /* data covers [start, data_end) when data_end > start */
	uint64_t first;	   /* start of the first data at or after start */
	bool found;
};

/* Stops librbd's walk (any negative return does) once the run is known. */
#define RBD_RUN_KNOWN (-EALREADY)

static int rbd_run_cb(uint64_t off, size_t len, int exists, void *arg)
{
	struct rbd_run *r = arg;
	uint64_t end = off + len;

	if (!exists || end <= r->start)
		return 0;
	if (off < r->start)
		off = r->start;
	if (!r->found) {
		r->found = true;
		r->first = off;
		if (off > r->start)
			return RBD_RUN_KNOWN; /* a hole up to off */
		r->data_end = end;
		return 0;
	}
	if (off > r->data_end)
		return RBD_RUN_KNOWN;
	if (end > r->data_end)
		r->data_end = end;
	return 0;
}

int rbd_extents(void *inst, struct dc_node *node, uint64_t sector, uint64_t count,
		uint64_t *run)
{
	struct rbd_inst *in = inst;
	struct rbd_run r = { .start = sector << RBD_SHIFT,
			     .end = (sector + count) << RBD_SHIFT };
	uint64_t n;
	int ret;

	(void)node;
	ret = rbd_diff_iterate2(in->image, NULL, r.start, r.end - r.start, 1, 1,
				rbd_run_cb, &r);
	if (ret < 0 && ret != RBD_RUN_KNOWN)
		return dc_fail(ret, "%s: rbd_diff_iterate2: %s", in->t.shown,
			       strerror(-ret));
	if (r.found && r.first == r.start) {
		n = (r.data_end < r.end ? r.data_end : r.end) - r.start;
		*run = (n + (1u << RBD_SHIFT) - 1) >> RBD_SHIFT;
		return 0;
	}
	/* A hole, to the first data or the end of the range; a partial sector
	 * at its end is left to the data run that follows. */
	n = (r.found ? r.first : r.end) - r.start;
	if (n < (1u << RBD_SHIFT)) {
		*run = 1;
		return 0; /* less than a sector of hole: call it data */
	}
	*run = n >> RBD_SHIFT;
	return DC_EXTENT_HOLE | DC_EXTENT_ZERO;
}
