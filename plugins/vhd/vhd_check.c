/* SPDX-License-Identifier: MIT */
/* vhd_check: check(), behind dc_check() and `diskctl check`. Open already
 * refused what would make reads wrong (vhd_parse.c: BAT entries outside the
 * data area, overlapping each other or the metadata); what is left to say is
 * the state of the footers, space no BAT entry references, and the parent. */
#include "vhd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int vhd_cmp_off(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* A gap [from, to) wider than a block's alignment padding holds no block:
 * space the file keeps that nothing uses (a crash between allocation and
 * flush leaves it so, harmlessly). */
static void vhd_gap(struct vhd_img *v, uint64_t from, uint64_t to, dc_check_report_fn rep,
		    void *arg)
{
	if (to > from && to - from >= VHD_DATA_ALIGN + v->m.bitmap_bytes)
		dc_check_printf(
			rep, arg, DC_CHECK_LEAK,
			"%llu bytes at offset %llu are referenced by no BAT entry",
			(unsigned long long)(to - from), (unsigned long long)from);
}

static int vhd_check_leaks(struct vhd_img *v, dc_check_report_fn rep, void *arg)
{
	uint64_t tsize = v->m.bitmap_bytes + (uint64_t)v->m.block_size, prev, end;
	/* The BAT's room, not nblocks: resize() may grow that meanwhile. */
	uint64_t *off = malloc((v->m.bat_bytes / 4 + 1) * sizeof(*off));
	uint32_t n = 0;

	if (!off)
		return dc_fail(-ENOMEM, "%s: out of memory", v->img.path);
	pthread_mutex_lock(&v->lock);
	for (uint32_t i = 0; i < v->m.nblocks; i++)
		if (v->bat[i] != VHD_UNALLOC)
			off[n++] = vhd_block_off(v->bat[i]);
	end = v->footer_off;
	pthread_mutex_unlock(&v->lock);
	qsort(off, n, sizeof(*off), vhd_cmp_off);
	prev = vhd_meta_end(&v->m);
	for (uint32_t i = 0; i < n; i++) {
		vhd_gap(v, prev, off[i], rep, arg);
		prev = off[i] + tsize;
	}
	vhd_gap(v, vhdfmt_round_up(prev, VHD_SECTOR), end, rep, arg);
	dc_check_printf(rep, arg, DC_CHECK_NOTE,
			"%u of %u blocks allocated, each inside the file and apart from "
			"the others and the metadata",
			n, v->m.nblocks);
	free(off);
	return 0;
}

/* The parent, as the default rule (or ;parents=any) finds it. */
static void vhd_check_parent(struct vhd_img *v, dc_check_report_fn rep, void *arg)
{
	char *p = NULL;
	int ret;

	pthread_mutex_lock(&v->lock);
	if (v->parent_path)
		p = strdup(v->parent_path);
	pthread_mutex_unlock(&v->lock);
	ret = p ? 0 :
		  vhd_find_parent(v->img.fd, &v->m, v->img.path, v->dir,
				  v->img.parents_any, &p);
	vhdfmt_check_parent(rep, arg, ret, p, v->img.parents_any);
	free(p);
}

int vhd_check(void *inst, dc_check_report_fn rep, void *arg)
{
	struct vhd_img *v = inst;

	if (!v->m.end_ok)
		dc_check_printf(
			rep, arg, DC_CHECK_CORRUPT,
			"the footer at the end of the file is damaged; the copy at "
			"offset 0 stands in (a writable open puts it back)");
	if (v->fixed)
		return 0;
	if (!v->m.copy_ok)
		dc_check_printf(rep, arg, DC_CHECK_CORRUPT,
				"the footer copy at offset 0 is damaged or not a dynamic "
				"image's (a writable open puts it back)");
	if (v->diff)
		vhd_check_parent(v, rep, arg);
	return vhd_check_leaks(v, rep, arg);
}
