/* SPDX-License-Identifier: MIT */
/* diskctl convert: copy SRC into DST, making DST first (create.c) with SRC's
 * size and sector size when it does not exist; cp's engine does the copy. */
#include "diskctl.h"

#include <inttypes.h>
#include <stdlib.h>

/* Open DST for writing, making it when its file is missing; a DST made here
 * reads zeroes already, so with --sparse its zero chunks need no I/O. */
static dc_disk *ctl_convert_dst(struct ctl_cp *cp)
{
	struct ctl_create c = { .spec = cp->dst_spec };
	struct ctl_target t;
	bool missing;

	cp->zeroes = cp->sparse ? CTL_ZEROES_UNMAP : CTL_ZEROES_WRITE;
	/* A kind that makes no images (mem:, a decorator) is opened as it is. */
	if (ctl_target_parse(cp->dst_spec, &t, false) < 0)
		return ctl_open(cp->dst_spec, 0);
	missing = !ctl_target_exists(&t);
	ctl_target_free(&t);
	if (!missing)
		return ctl_open(cp->dst_spec, 0);
	c.size = dc_sector_count(cp->src) * dc_sector_size(cp->src);
	if (dc_sector_size(cp->src) != 512)
		c.sector_size = dc_sector_size(cp->src);
	if (cp->sparse)
		cp->zeroes = CTL_ZEROES_SKIP;
	return ctl_create_open(&c);
}

const struct ctl_opt ctl_convert_opts[] = {
	CTL_OPT("sparse", 0, CTL_OPT_TRUE, struct ctl_cp, sparse, NULL,
		"an all-zero chunk is not written to a DST made here (it\n"
		"reads zeroes already, and a dynamic image stays small); on\n"
		"an existing DST it is unmapped where DST's unmapped\n"
		"sectors read as zero, else written"),
	CTL_OPT_QUIET(struct ctl_cp, "no progress bar, no summary"),
	CTL_OPTS_CHUNKS(struct ctl_cp, "chunks in flight (default 16)"),
	{ 0 },
};

int ctl_convert(int argc, char **argv)
{
	struct ctl_cp cp = { CTL_CHUNKS_DEFAULT };
	int rc = ctl_cp_main(argc, argv, &cp, ctl_convert_dst, "converted",
			     "it is incomplete");

	if (rc == CTL_EXIT_FAIL && cp.dst)
		ctl_err("'%s' is incomplete", cp.dst_spec);
	return rc;
}
