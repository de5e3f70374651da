/* SPDX-License-Identifier: MIT */
/* Repairing an image QEMU left dirty with lazy refcounts (docs/spec-strings.md,
 * "qcow2"): such a writer updates refcounts lazily, so after a crash they can
 * be anything, including below the references (a cluster in use counted
 * free). A writable open rebuilds them from what references each cluster
 * (check.c's walk: header, active and snapshot L1/L2 tables, snapshot table),
 * as QEMU does on its own open:
 *  - the COPIED flags of the active L1 and L2 entries are set to what the
 *    counts say (refcount exactly 1), tables written where they changed;
 *  - a new refcount table and blocks covering the whole file are written past
 *    its end, synced, and only then named by the header; the old ones become
 *    free clusters.
 * A crash in between leaves the image dirty with the old structures named:
 * the next open repairs it again. */
#include "qcow2.h"

#include "endian/byteorder.h"
#include "vhdfmt/vhdfmt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Entry e with its COPIED flag as a refcount of use says: whether it changed. */
static bool rp_flag(uint64_t *e, uint32_t use)
{
	uint64_t want = use == 1 ? *e | QCOW2_COPIED : *e & ~QCOW2_COPIED;
	bool changed = want != *e;

	*e = want;
	return changed;
}

/* The entries of the L2 table in tab: whether any changed. */
static bool rp_l2(struct qcow2 *q, uint8_t *tab, const uint32_t *use, uint64_t n)
{
	bool changed = false;

	for (uint32_t j = 0; j < q->l2_entries; j++) {
		uint8_t *p = tab + ((size_t)j << q->entry_shift);
		uint64_t e = get_be64(p), host = e & QCOW2_OFFSET_MASK;

		if (e & QCOW2_L2_COMPRESSED) {
			if (!(e & QCOW2_COPIED))
				continue;
			e &= ~QCOW2_COPIED;
		} else if (!host || (host >> q->h.cluster_bits) >= n ||
			   !rp_flag(&e, use[host >> q->h.cluster_bits])) {
			continue;
		}
		put_be64(p, e);
		changed = true;
	}
	return changed;
}

/* The active tables' COPIED flags (check.c validated every offset). */
static int rp_copied(struct qcow2 *q, const uint32_t *use, uint64_t n)
{
	size_t bytes = (size_t)q->h.l1_size * 8;
	uint8_t *l1 = malloc(bytes + 1), *tab = malloc(q->cluster_size);
	bool l1_changed = false;
	int ret = l1 && tab ? vhdfmt_pread(q->fd, l1, bytes, q->h.l1_off) : -ENOMEM;

	for (uint32_t i = 0; ret == 0 && i < q->h.l1_size; i++) {
		uint64_t e = get_be64(l1 + 8 * (size_t)i), l2 = e & QCOW2_OFFSET_MASK;

		if (!l2 || (l2 >> q->h.cluster_bits) >= n)
			continue;
		if (rp_flag(&e, use[l2 >> q->h.cluster_bits])) {
			put_be64(l1 + 8 * (size_t)i, e);
			l1_changed = true;
		}
		ret = vhdfmt_pread(q->fd, tab, q->cluster_size, l2);
		if (ret == 0 && rp_l2(q, tab, use, n))
			ret = vhdfmt_pwrite(q->fd, tab, q->cluster_size, l2);
	}
	if (ret == 0 && l1_changed)
		ret = vhdfmt_pwrite(q->fd, l1, bytes, q->h.l1_off);
	if (ret == 0 && fdatasync(q->fd) < 0)
		ret = -errno;
	free(l1);
	free(tab);
	return ret;
}

/* New refcount structures for the first n clusters' counts in use, placed at
 * cluster n: the table (t clusters), then the blocks (b), which count
 * themselves and the table too. */
static int rp_rebuild(struct qcow2 *q, const uint32_t *use, uint64_t n)
{
	uint64_t cs = q->cluster_size, bits = 1u << q->h.refcount_order;
	uint64_t per = cs * 8 / bits, t = 1, b = 1,
		 max = bits == 64 ? UINT64_MAX : (1ull << bits) - 1;
	uint8_t *tab, *blk;
	int ret = 0;

	for (uint64_t i = 0; i < n; i++)
		if (use[i] > max)
			return -EOVERFLOW; /* more references than refcount_bits holds */
	for (;;) {
		uint64_t b2 = (n + t + b + per - 1) / per, t2 = (b2 * 8 + cs - 1) / cs;

		if (b2 == b && t2 == t)
			break;
		b = b2;
		t = t2;
	}
	if (t * cs > (64u << 20) || t > UINT32_MAX)
		return -EFBIG;
	tab = calloc(t, cs);
	blk = calloc(b, cs);
	if (!tab || !blk) {
		free(tab);
		free(blk);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < n + t + b; i++)
		qcow2_rc_entry_put(blk + i / per * cs, i % per, (unsigned)bits,
				   i < n ? use[i] : 1);
	for (uint64_t j = 0; j < b; j++)
		put_be64(tab + 8 * j, (n + t + j) * cs);
	ret = vhdfmt_pwrite(q->fd, tab, t * cs, n * cs);
	if (ret == 0)
		ret = vhdfmt_pwrite(q->fd, blk, b * cs, (n + t) * cs);
	free(tab);
	free(blk);
	if (ret == 0)
		ret = qcow2_rc_name_table(q, n * cs, t);
	if (ret == 0)
		q->file_size = (n + t + b) * cs;
	return ret;
}

int qcow2_repair(struct qcow2 *q)
{
	uint32_t *use;
	uint64_t n;
	int ret = qcow2_count_refs(q, q->file_size, &use, &n);

	if (ret == 0)
		ret = rp_copied(q, use, n);
	if (ret == 0)
		ret = rp_rebuild(q, use, n);
	if (ret == 0)
		dc_debug("qcow2: %s: refcounts rebuilt after an unclean close with "
			 "lazy refcounts (%llu clusters)",
			 q->path, (unsigned long long)n);
	free(use);
	return ret;
}
