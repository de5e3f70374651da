/* SPDX-License-Identifier: MIT */
/*
 * diskctl map: where a disk's bytes are (data, zeroes, holes) and which layer
 * of the chain holds them, from dc_map() (docs/abi.md, "Allocation map").
 * More than qemu-img map tells: the layer is named by its spec element.
 */
#include "diskctl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

struct ctl_map {
	bool json, share;
	uint64_t start, length;
	size_t count;
	struct ctl_layers layers; /* names the extents' layers */
};

static const char *ctl_map_kind(uint32_t flags)
{
	if (flags & DC_EXTENT_ZERO)
		return flags & DC_EXTENT_HOLE ? "hole" : "zero";
	return flags & DC_EXTENT_HOLE ? "unallocated" : "data";
}

static int ctl_map_print(void *arg, const struct dc_extent *e)
{
	struct ctl_map *m = arg;
	const char *layer = e->layer < m->layers.n ? m->layers.spec[e->layer] : NULL;

	if (m->json) {
		printf("%s\n  {\"start\": %" PRIu64 ", \"length\": %" PRIu64
		       ", \"data\": %s, \"zero\": %s, \"hole\": %s, \"layer\": ",
		       m->count ? "," : "", e->offset, e->length,
		       ctl_bool(!(e->flags & DC_EXTENT_ZERO)),
		       ctl_bool(e->flags & DC_EXTENT_ZERO),
		       ctl_bool(e->flags & DC_EXTENT_HOLE));
		if (e->layer == DC_EXTENT_NO_LAYER)
			printf("null, \"layer_spec\": null}");
		else {
			printf("%" PRIu32 ", \"layer_spec\": ", e->layer);
			ctl_json_str(stdout, layer);
			printf("}");
		}
	} else {
		printf("%-20" PRIu64 " %-20" PRIu64 " %-12s ", e->offset, e->length,
		       ctl_map_kind(e->flags));
		if (e->layer == DC_EXTENT_NO_LAYER)
			printf("-\n");
		else if (layer)
			printf("%" PRIu32 " %s\n", e->layer, layer);
		else
			printf("%" PRIu32 "\n", e->layer);
	}
	m->count++;
	return 0;
}

const struct ctl_opt ctl_map_opts[] = {
	CTL_OPT_JSON(struct ctl_map,
		     "one JSON array of {start, length, data, zero, hole,\n"
		     "layer, layer_spec}"),
	CTL_OPT("start", 0, CTL_OPT_SIZE, struct ctl_map, start, "OFFSET",
		"begin at this byte (default 0)", .min = 0, .max = UINT64_MAX),
	CTL_OPT("length", 0, CTL_OPT_SIZE, struct ctl_map, length, "LEN",
		"map this many bytes (default: to the end)", .min = 0, .max = UINT64_MAX),
	CTL_OPT_FORCE_SHARE(struct ctl_map),
	{ 0 },
};

int ctl_map(int argc, char **argv)
{
	struct ctl_map m = { .length = UINT64_MAX };
	const char *spec = ctl_parse(argc, argv, &m, NULL)[0];
	dc_disk *d;
	int rc;

	d = ctl_open(spec,
		     DC_OPEN_READ_ONLY | ctl_force_share(m.share, spec,
							 "the map may be out of date"));
	if (!d)
		return CTL_EXIT_FAIL;
	ctl_layers_get(d, &m.layers);
	if (m.json)
		printf("[");
	else
		printf("%-20s %-20s %-12s %s\n", "start", "length", "kind", "layer");
	rc = dc_map(d, m.start, m.length, ctl_map_print, &m);
	if (m.json)
		printf("%s]\n", m.count ? "\n" : "");
	if (rc < 0)
		ctl_err("%s: %s", spec, ctl_last_error(rc));
	ctl_layers_free(&m.layers);
	dc_close(d);
	return rc < 0 ? CTL_EXIT_FAIL : 0;
}
