/* SPDX-License-Identifier: MIT */
/* vhdx_check: check(), behind dc_check() and `diskctl check`. Open already
 * refused what would make reads wrong (vhdx.c: BAT entries outside the file,
 * off 1 MiB, overlapping each other or a region; reserved states); what is
 * left to say is the state of both copies of the header and region table,
 * the log, space no BAT entry references, and the parent. */
#include "vhdx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Both headers and both region tables: one damaged copy leaves the image
 * readable from the other, but nothing left to fall back on. */
static int vhdx_check_copies(struct vhdx *v, dc_check_report_fn rep, void *arg)
{
	uint8_t *buf = malloc(VHDX_RT_SIZE);
	struct vhdx_header h;
	int ret = 0;

	if (!buf)
		return dc_fail(-ENOMEM, "%s: out of memory", v->img.path);
	for (int i = 0; i < 2 && ret == 0; i++) {
		ret = vhdx_pread(v, buf, VHDX_LSEC, VHDX_HDR_OFF(i));
		if (ret == 0 && !vhdxfmt_header_decode(buf, &h))
			dc_check_printf(rep, arg, DC_CHECK_CORRUPT,
					"header %d (at %u KiB) has a bad signature or "
					"CRC-32C; the other one is current",
					i + 1, 64 + 64 * i);
	}
	for (int i = 0; i < 2 && ret == 0; i++) {
		ret = vhdx_pread(v, buf, VHDX_RT_SIZE, VHDX_RT_OFF(i));
		if (ret == 0 &&
		    (memcmp(buf, "regi", 4) || !vhdxfmt_sealed(buf, VHDX_RT_SIZE)))
			dc_check_printf(
				rep, arg, DC_CHECK_CORRUPT,
				"region table %d (at %u KiB) has a bad signature or "
				"CRC-32C; the other copy is used",
				i + 1, 192 + 64 * i);
	}
	free(buf);
	if (ret < 0)
		return dc_fail(ret, "%s: cannot read the headers: %s", v->img.path,
			       strerror(-ret));
	return 0;
}

struct vhdx_cspan {
	uint64_t off, len;
	bool block;
};

static int vhdx_cmp_span(const void *a, const void *b)
{
	const struct vhdx_cspan *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* New blocks go at the end of the file, so space a crash cut off before its
 * BAT entry was logged lies after a block: a gap of 1 MiB or more there (or
 * after the last structure) is space nothing uses, harmless. Gaps before the
 * first block are how the image was laid out (qemu-img leaves 4 MiB). */
static int vhdx_check_leaks(struct vhdx *v, dc_check_report_fn rep, void *arg)
{
	uint64_t cr1 = (uint64_t)v->chunk_ratio + 1, n = 0, prev = 0, blocks = 0;
	struct vhdx_cspan *sp = malloc((v->nbat + 4 + v->nxreg) * sizeof(*sp));
	bool after_block = false;

	if (!sp)
		return dc_fail(-ENOMEM, "%s: out of memory", v->img.path);
	sp[n++] = (struct vhdx_cspan){ 0, VHDX_MB, false };
	sp[n++] = (struct vhdx_cspan){ v->hdr.log_off, v->hdr.log_len, false };
	sp[n++] = (struct vhdx_cspan){ v->bat_off, v->bat_len, false };
	sp[n++] = (struct vhdx_cspan){ v->meta_off, v->meta_len, false };
	for (uint32_t i = 0; i < v->nxreg; i++)
		sp[n++] =
			(struct vhdx_cspan){ v->xreg[2 * i], v->xreg[2 * i + 1], false };
	pthread_mutex_lock(&v->lock);
	for (uint64_t i = 0; i < v->nbat; i++) {
		uint64_t e = v->bat[i];
		unsigned st = VHDX_BAT_STATE(e);
		bool sb = i % cr1 == v->chunk_ratio;

		if (sb ? v->diff && st == VHDX_SB_PRESENT :
			 st == VHDX_PB_FULL || st == VHDX_PB_PARTIAL) {
			sp[n++] = (struct vhdx_cspan){ VHDX_BAT_OFF(e),
						       sb ? VHDX_MB : v->block_size,
						       true };
			blocks += !sb;
		}
	}
	pthread_mutex_unlock(&v->lock);
	qsort(sp, n, sizeof(*sp), vhdx_cmp_span);
	for (uint64_t i = 0; i < n; i++) {
		if (after_block && sp[i].off >= prev + VHDX_MB)
			dc_check_printf(rep, arg, DC_CHECK_LEAK,
					"%llu bytes at offset %llu are referenced by no "
					"BAT entry or region",
					(unsigned long long)(sp[i].off - prev),
					(unsigned long long)prev);
		if (sp[i].off + sp[i].len > prev) {
			prev = sp[i].off + sp[i].len;
			after_block = sp[i].block;
		}
	}
	prev = vhdfmt_round_up(prev, VHDX_MB);
	if (v->real_size >= prev + VHDX_MB)
		dc_check_printf(
			rep, arg, DC_CHECK_LEAK,
			"%llu bytes at the end of the file (from offset %llu) are "
			"referenced by no BAT entry",
			(unsigned long long)(v->real_size - prev),
			(unsigned long long)prev);
	dc_check_printf(rep, arg, DC_CHECK_NOTE,
			"%llu of %llu payload blocks allocated, each inside the file and "
			"apart from the others and the regions",
			(unsigned long long)blocks, (unsigned long long)v->nblocks);
	free(sp);
	return 0;
}

static void vhdx_check_parent(struct vhdx *v, dc_check_report_fn rep, void *arg)
{
	uint8_t page83[16];
	char *p = NULL;
	int ret = vhdx_resolve_parent(v, true, &p, page83);

	vhdfmt_check_parent(rep, arg, ret, p, v->img.parents_any);
	free(p);
}

int vhdx_check(void *inst, dc_check_report_fn rep, void *arg)
{
	struct vhdx *v = inst;
	int ret = vhdx_check_copies(v, rep, arg);

	if (ret < 0)
		return ret;
	/* A log to replay is how VHDX survives a crash, not damage: the
	 * updates in it are complete and checksummed. */
	if (v->log_state == VHDX_LOG_IN_MEMORY)
		dc_check_printf(rep, arg, DC_CHECK_NOTE,
				"the log holds updates not yet written in place (a crash "
				"during a flush): reads apply them, a writable open "
				"replays them into the file");
	else if (v->log_state == VHDX_LOG_REPLAYED)
		dc_check_printf(rep, arg, DC_CHECK_NOTE,
				"the log was replayed into the file at open");
	if (v->diff)
		vhdx_check_parent(v, rep, arg);
	return vhdx_check_leaks(v, rep, arg);
}
