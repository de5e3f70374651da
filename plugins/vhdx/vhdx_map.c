/* SPDX-License-Identifier: MIT */
/* vhdx_map: extents(), the allocation map behind dc_map(), from the state of
 * each payload block's BAT entry and, for a partially present block of a
 * differencing image, its sector bitmap; as the reads in vhdx.c see them. */
#include "vhdx.h"

#include "bitmap/bitmap.h"

#include <errno.h>
#include <string.h>

/* The flags of a block whose state decides for all its sectors. */
static int vhdx_state_flags(const struct vhdx *v, uint64_t e)
{
	switch (VHDX_BAT_STATE(e)) {
	case VHDX_PB_FULL:
		return 0;
	case VHDX_PB_NOT_PRESENT:
		return v->diff ? DC_EXTENT_ABSENT : DC_EXTENT_HOLE | DC_EXTENT_ZERO;
	default: /* zero, unmapped, undefined: zeroes defined here */
		return DC_EXTENT_ZERO | (VHDX_BAT_OFF(e) ? 0 : DC_EXTENT_HOLE);
	}
}

/* The run at sector o of partially present block b, at most n sectors:
 * present sectors are data, the others the parent's. -EAGAIN: the block
 * changed state meanwhile (unmap). */
static int vhdx_partial_extent(struct vhdx *v, uint64_t b, uint32_t o, uint32_t n,
			       uint32_t *len)
{
	uint64_t s0 = (b << v->spb_shift) + o, bits[64];
	int set = -1, ret = 0;

	*len = 0;
	pthread_mutex_lock(&v->lock);
	while (*len < n && ret == 0) {
		uint32_t chunk = n - *len < 4096 ? n - *len : 4096, j;

		if (VHDX_BAT_STATE(v->bat[vhdx_pidx(v, b)]) != VHDX_PB_PARTIAL) {
			ret = -EAGAIN;
			break;
		}
		ret = vhdx_bits_get(v, s0 + *len, chunk, bits);
		if (ret < 0)
			break;
		if (set < 0)
			set = bitmap_test(bits, 0);
		j = (uint32_t)bitmap_find(bits, 0, chunk, !set);
		*len += j;
		if (j < chunk)
			break;
	}
	pthread_mutex_unlock(&v->lock);
	if (ret < 0)
		return ret;
	return set ? 0 : DC_EXTENT_ABSENT;
}

/* The run at sector o of block b, at most n sectors. */
static int vhdx_block_run(void *ctx, uint64_t b, uint32_t o, uint32_t n, uint32_t *len)
{
	struct vhdx *v = ctx;

	for (;;) {
		uint64_t e = vhdx_bat_get(v, vhdx_pidx(v, b));
		int f;

		if (VHDX_BAT_STATE(e) != VHDX_PB_PARTIAL)
			return vhdx_state_flags(v, e);
		f = vhdx_partial_extent(v, b, o, n, len);
		if (f == -EAGAIN)
			continue; /* unmapped meanwhile: read the entry again */
		if (f < 0)
			return dc_fail(
				f, "%s: cannot read the sector bitmap of block %llu: %s",
				v->img.path, (unsigned long long)b, strerror(-f));
		return f;
	}
}

int vhdx_extents(void *inst, struct dc_node *node, uint64_t sector, uint64_t count,
		 uint64_t *run)
{
	(void)node;
	return vhdfmt_extents(inst, ((struct vhdx *)inst)->spb_shift, sector, count,
			      vhdx_block_run, run);
}
