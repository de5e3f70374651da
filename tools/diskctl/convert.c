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

int ctl_convert(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "sparse", no_argument, NULL, 's' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "bs", required_argument, NULL, 'b' },
		{ "qd", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct ctl_cp cp = { .zeroes = CTL_ZEROES_WRITE, .chunk = 1 << 20, .qd = 16 };
	bool sparse = false, fresh;
	int c, rc = CTL_EXIT_FAIL;

	while ((c = ctl_getopt(argc, argv, "hq", lo)) != -1)
		if (c == 's')
			sparse = true;
		else
			ctl_cp_option(&cp, c);
	ctl_operands(argc, argv, 2, 2, "SRC and DST");
	cp.src_spec = argv[optind];
	cp.dst_spec = argv[optind + 1];
	ctl_catch_signals();
	cp.src = ctl_open(cp.src_spec, DC_OPEN_READ_ONLY);
	if (!cp.src)
		return CTL_EXIT_FAIL;
	cp.dst = ctl_convert_dst(cp.dst_spec, cp.src, &fresh);
	if (!cp.dst)
		goto out;
	/* A new image reads zeroes already: its zero chunks need no I/O. */
	if (sparse)
		cp.zeroes = fresh ? CTL_ZEROES_SKIP : CTL_ZEROES_UNMAP;
	rc = ctl_cp_run_report(&cp, "converted", "it is incomplete");
	if (rc == CTL_EXIT_FAIL)
		ctl_err("'%s' is incomplete", cp.dst_spec);
	dc_close(cp.dst);
out:
	dc_close(cp.src);
	return rc;
}
