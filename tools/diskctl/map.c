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
	bool json;
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

int ctl_map(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "start", required_argument, NULL, 's' },
		{ "length", required_argument, NULL, 'l' },
		{ "force-share", no_argument, NULL, 'U' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct ctl_map m = { 0 };
	uint64_t start = 0, length = UINT64_MAX;
	uint32_t flags = DC_OPEN_READ_ONLY;
	dc_disk *d;
	int c, rc;

	while ((c = ctl_getopt(argc, argv, "U", opts)) != -1) {
		switch (c) {
		case 'U':
			flags |= DC_OPEN_FORCE_SHARE;
			break;
		case 'j':
			m.json = true;
			break;
		case 's':
			start = ctl_arg_size("--start", optarg);
			break;
		case 'l':
			length = ctl_arg_size("--length", optarg);
			break;
		}
	}
	ctl_operands(argc, argv, 1, 1, "SPEC");
	if (flags & DC_OPEN_FORCE_SHARE)
		ctl_err("warning: --force-share: not locking '%s'; a writer may be "
			"changing it, so the map may be out of date",
			argv[optind]);
	d = ctl_open(argv[optind], flags);
	if (!d)
		return CTL_EXIT_FAIL;
	ctl_layers_get(d, &m.layers);
	if (m.json)
		printf("[");
	else
		printf("%-20s %-20s %-12s %s\n", "start", "length", "kind", "layer");
	rc = dc_map(d, start, length, ctl_map_print, &m);
	if (m.json)
		printf("%s]\n", m.count ? "\n" : "");
	if (rc < 0)
		ctl_err("%s: %s", argv[optind], ctl_last_error(rc));
	ctl_layers_free(&m.layers);
	dc_close(d);
	return rc < 0 ? CTL_EXIT_FAIL : 0;
}
