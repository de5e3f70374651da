/* SPDX-License-Identifier: MIT */
/* diskctl convert: copy SRC into DST, making DST first (create.c) with SRC's
 * size and sector size when it does not exist; cp's engine does the copy. */
#include "diskctl.h"

#include <inttypes.h>
#include <stdlib.h>

/* Open DST for writing, making it when its file is missing; *fresh says
 * whether it was made (it then reads zeroes everywhere). */
static dc_disk *ctl_convert_dst(const char *spec, dc_disk *src, bool *fresh)
{
	struct ctl_create c = { .spec = spec };
	struct ctl_target t;
	bool missing;

	*fresh = false;
	/* A kind that makes no images (mem:, a decorator) is opened as it is. */
	if (ctl_target_parse(spec, &t, false) < 0)
		return ctl_open(spec, 0);
	missing = !ctl_target_exists(&t);
	ctl_target_free(&t);
	if (!missing)
		return ctl_open(spec, 0);
	c.size = dc_sector_count(src) * dc_sector_size(src);
	if (dc_sector_size(src) != 512)
		c.sector_size = dc_sector_size(src);
	*fresh = true;
	return ctl_create_open(&c);
}

const struct ctl_opt ctl_convert_opts[] = {
	CTL_OPT("sparse", 0, CTL_OPT_TRUE, struct ctl_cp, sparse, NULL,
		"an all-zero chunk is not written to a DST made here (it\n"
		"reads zeroes already, and a dynamic image stays small); on\n"
		"an existing DST it is unmapped where DST's unmapped\n"
		"sectors read as zero, else written"),
	CTL_OPT("quiet", 'q', CTL_OPT_TRUE, struct ctl_cp, quiet, NULL,
		"no progress bar, no summary"),
	CTL_OPTS_CHUNKS(struct ctl_cp, "chunks in flight (default 16)"),
	{ 0 },
};

int ctl_convert(int argc, char **argv)
{
	struct ctl_cp cp = { .zeroes = CTL_ZEROES_WRITE, .chunk = 1 << 20, .qd = 16 };
	char **ops = ctl_parse(argc, argv, &cp, NULL);
	bool fresh;
	int rc = CTL_EXIT_FAIL;

	cp.src_spec = ops[0];
	cp.dst_spec = ops[1];
	ctl_catch_signals();
	cp.src = ctl_open(cp.src_spec, DC_OPEN_READ_ONLY);
	if (!cp.src)
		return CTL_EXIT_FAIL;
	cp.dst = ctl_convert_dst(cp.dst_spec, cp.src, &fresh);
	if (!cp.dst)
		goto out;
	/* A new image reads zeroes already: its zero chunks need no I/O. */
	if (cp.sparse)
		cp.zeroes = fresh ? CTL_ZEROES_SKIP : CTL_ZEROES_UNMAP;
	rc = ctl_cp_run_report(&cp, "converted", "it is incomplete");
	if (rc == CTL_EXIT_FAIL)
		ctl_err("'%s' is incomplete", cp.dst_spec);
	dc_close(cp.dst);
out:
	dc_close(cp.src);
	return rc;
}
