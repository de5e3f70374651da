/* SPDX-License-Identifier: MIT */
/*
 * The allocation map (ABI 1.1, docs/abi.md "Allocation map"): dc_map() asks
 * the top node for one run at a time; each node answers from its plugin's
 * extents() callback, a decorator by asking its child (dc_node_extents), the
 * layered disk by walking its layers top-down. What a plugin cannot tell is
 * data, so a consumer that skips holes and zeroes never skips data.
 */
#include "internal.h"

#include <errno.h>

#define DC_EXTENT_FLAGS (DC_EXTENT_HOLE | DC_EXTENT_ZERO)

/* The layer the current query's run came from: set by the layered disk after
 * its layers answered, so the outermost layered disk of the chain has the
 * last word. One query runs on one thread, start to end. */
static DC_TLS uint32_t map_layer;

void dc__map_set_layer(uint32_t layer)
{
	map_layer = layer;
}

DC_EXPORT int dc_node_extents(struct dc_node *n, uint64_t sector, uint64_t count,
			      uint64_t *run)
{
	uint64_t live = atomic_load_explicit(&n->live, memory_order_acquire);
	uint32_t allowed = DC_EXTENT_FLAGS;
	int rc;

	if (count == 0 || sector >= live)
		return dc_fail(-EINVAL,
			       "allocation query of sectors %llu+%llu outside %llu",
			       (unsigned long long)sector, (unsigned long long)count,
			       (unsigned long long)live);
	if (count > live - sector)
		count = live - sector;
	if (!n->plugin->extents) {
		*run = count;
		return 0;
	}
	*run = 0;
	dc__error_push_prefix(n->plugin->name);
	rc = n->plugin->extents(n->inst, n, sector, count, run);
	dc__error_pop_prefix();
	if (rc < 0)
		return rc;
	if (n->plugin->kind == DC_KIND_LAYER)
		allowed |= DC_EXTENT_ABSENT;
	if (*run == 0 || *run > count || (rc & ~allowed))
		return dc_fail(
			-EIO,
			"plugin '%s' answered an allocation query with a run of %llu "
			"sectors (asked for at most %llu) and flags 0x%x",
			n->plugin->name, (unsigned long long)*run,
			(unsigned long long)count, (unsigned)rc);
	return rc;
}

DC_EXPORT int dc_extents_passthrough(void *inst, struct dc_node *node, uint64_t sector,
				     uint64_t count, uint64_t *run)
{
	struct dc_node *child = node->nchildren ? node->children[0] : NULL;
	unsigned shift = node->shift, cshift;
	uint64_t csector, ccount, crun;
	int rc;

	(void)inst;
	if (!child || child->shift > shift) {
		/* Nothing to ask, or child sectors larger than ours: say data. */
		*run = count;
		return 0;
	}
	cshift = shift - child->shift;
	csector = sector << cshift;
	ccount = count << cshift;
	rc = dc_node_extents(child, csector, ccount, &crun);
	if (rc < 0)
		return rc;
	if (crun >> cshift == 0) {
		/* A run shorter than one of our sectors: mixed, so data. */
		*run = 1;
		return 0;
	}
	*run = crun >> cshift;
	return rc;
}

struct map_walk {
	dc_extent_fn fn;
	void *arg;
	struct dc_extent pending;
	bool have;
};

/* Merge e into the pending extent, or hand the pending one to fn. */
static int map_emit(struct map_walk *w, const struct dc_extent *e)
{
	int rc;

	if (w->have && w->pending.flags == e->flags && w->pending.layer == e->layer &&
	    w->pending.offset + w->pending.length == e->offset) {
		w->pending.length += e->length;
		return 0;
	}
	if (w->have) {
		rc = w->fn(w->arg, &w->pending);
		if (rc)
			return rc;
	}
	w->pending = *e;
	w->have = true;
	return 0;
}

DC_EXPORT int dc_map(dc_disk *d, uint64_t offset, uint64_t length, dc_extent_fn fn,
		     void *arg)
{
	struct dc_node *top = d->top;
	unsigned shift = top->shift;
	uint64_t size = atomic_load_explicit(&top->live, memory_order_acquire) << shift;
	uint64_t end, sector, last;
	struct map_walk w = { .fn = fn, .arg = arg };
	int rc = 0;

	dc__error_clear();
	if (!fn)
		return dc_fail(-EINVAL, "dc_map: no callback");
	if (offset >= size || length == 0)
		return 0;
	end = length > size - offset ? size : offset + length;
	sector = offset >> shift;
	last = (end + (1ull << shift) - 1) >> shift;
	while (sector < last) {
		uint64_t run = 0;
		struct dc_extent e = { 0 };

		map_layer = 0;
		rc = dc_node_extents(top, sector, last - sector, &run);
		if (rc < 0)
			return rc;
		e.offset = sector << shift;
		e.length = run << shift;
		if (e.offset < offset) {
			e.length -= offset - e.offset;
			e.offset = offset;
		}
		if (e.offset + e.length > end)
			e.length = end - e.offset;
		e.flags = (uint32_t)rc & DC_EXTENT_FLAGS;
		e.layer = map_layer;
		rc = map_emit(&w, &e);
		if (rc)
			return rc;
		sector += run;
	}
	return w.have ? fn(arg, &w.pending) : 0;
}
