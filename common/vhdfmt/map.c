/* SPDX-License-Identifier: MIT */
/* What the extents() and check() callbacks of vhd and vhdx share: the walk
 * over fixed-size blocks that merges runs of the same flags, and the note on
 * a differencing image's parent. */
#include "vhdfmt.h"

#include <string.h>

int vhdfmt_extents(void *ctx, unsigned spb_shift, uint64_t sector, uint64_t count,
		   vhdfmt_block_run_fn fn, uint64_t *run)
{
	uint64_t spb = UINT64_C(1) << spb_shift, s = sector, end = sector + count;
	int want = -1;

	/* Blocks of the same state merge, so an empty image is one answer. */
	while (s < end) {
		uint64_t o = s & (spb - 1);
		uint32_t n = (uint32_t)(end - s < spb - o ? end - s : spb - o), len = n;
		int f = fn(ctx, s >> spb_shift, (uint32_t)o, n, &len);

		if (f < 0)
			return f;
		if (want >= 0 && f != want)
			break;
		want = f;
		s += len;
		if (len < n)
			break;
	}
	*run = s - sector;
	return want;
}

void vhdfmt_check_parent(dc_check_report_fn rep, void *arg, int ret, const char *parent,
			 bool any)
{
	if (ret < 0)
		dc_check_printf(
			rep, arg, DC_CHECK_NOTE,
			"no parent locator resolves to a matching parent under the "
			"%s rule (%s): the image opens only with its parent named "
			"(;parent=)",
			any ? "parents=any" : "parents=beneath", strerror(-ret));
	else
		dc_check_printf(rep, arg, DC_CHECK_NOTE, "parent: %s", parent);
}
