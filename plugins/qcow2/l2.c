/* SPDX-License-Identifier: MIT */
/* qcow2 address translation: the L1 table (read whole at open), an LRU cache
 * of L2 tables whose size the l2-cache= option sets, and the decoding of one
 * L2 entry, standard or extended (32 subclusters per cluster). */
#include "qcow2.h"

#include "endian/byteorder.h"
#include "vhdfmt/vhdfmt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int qcow2_l1_load(struct qcow2 *q)
{
	size_t n = q->h.l1_size;
	uint8_t *raw;
	int ret;

	/* qcow2_parse_header() bounded l1_size by the file and by 32 MiB. */
	q->l1 = calloc(n ? n : 1, sizeof(*q->l1));
	raw = malloc(n * 8 + 1);
	if (!q->l1 || !raw) {
		free(raw);
		vhdfmt_err("out of memory for an L1 table of %zu entries", n);
		return -ENOMEM;
	}
	ret = vhdfmt_pread(q->fd, raw, n * 8, q->h.l1_off);
	if (ret) {
		vhdfmt_err("%s: cannot read the L1 table: %s", q->path, strerror(-ret));
		free(raw);
		return ret;
	}
	for (size_t i = 0; i < n; i++)
		q->l1[i] = get_be64(raw + 8 * i);
	free(raw);
	return 0;
}

int qcow2_l2_cache_init(struct qcow2 *q, uint64_t bytes)
{
	uint64_t n = bytes / q->cluster_size;

	if (n < 1)
		n = 1;
	if (n > q->h.l1_size && q->h.l1_size)
		n = q->h.l1_size; /* never more tables than the image has */
	if (n * q->cluster_size > (1ull << 30)) {
		vhdfmt_err("l2-cache=%llu is above the 1 GiB limit",
			   (unsigned long long)bytes);
		return -EINVAL;
	}
	q->nslots = (uint32_t)n;
	q->l2_cache_bytes = n * q->cluster_size;
	q->slots = calloc(n, sizeof(*q->slots));
	q->l2buf = malloc(n * q->cluster_size);
	if (!q->slots || !q->l2buf) {
		vhdfmt_err("out of memory for an L2 cache of %llu bytes",
			   (unsigned long long)q->l2_cache_bytes);
		return -ENOMEM;
	}
	return 0;
}

/* Whether subcluster sc of an extended entry is allocated (1), zero (2) or
 * neither (0). */
static unsigned qcow2_sc_state(uint64_t bitmap, unsigned sc)
{
	if (bitmap >> sc & 1)
		return 1;
	return (bitmap >> (32 + sc) & 1) ? 2 : 0;
}

int qcow2_decode_l2(const struct qcow2 *q, uint64_t entry, uint64_t bitmap, uint64_t goff,
		    struct qcow2_map *m)
{
	uint64_t cmask = q->cluster_size - 1, in = goff & cmask, host;
	unsigned sc, end, st;

	*m = (struct qcow2_map){ .kind = QCOW2_UNALLOC, .len = q->cluster_size - in };
	if (entry & QCOW2_L2_COMPRESSED) {
		unsigned shift = 62 - (q->h.cluster_bits - 8);
		uint64_t nsec =
			((entry >> shift) & ((1ull << (q->h.cluster_bits - 8)) - 1)) + 1;

		m->kind = QCOW2_COMPRESSED;
		m->off = entry & ((1ull << shift) - 1);
		uint64_t fsize = __atomic_load_n(&q->file_size, __ATOMIC_RELAXED);

		m->clen = nsec * 512 - (m->off & 511);
		/* The last compressed cluster may end with the file. */
		if (m->off >= fsize)
			return -EIO;
		if (m->clen > fsize - m->off)
			m->clen = fsize - m->off;
		return 0;
	}
	host = entry & QCOW2_OFFSET_MASK;
	if (host & cmask)
		return -EIO; /* a data cluster must be cluster aligned */
	if (!q->extl2) {
		if (q->h.version >= 3 && (entry & QCOW2_L2_ZERO))
			m->kind = QCOW2_ZERO;
		else if (host)
			m->kind = QCOW2_DATA;
		m->off = host + in;
		return 0;
	}
	if ((bitmap & 0xffffffffu) & (bitmap >> 32))
		return -EIO; /* a subcluster both allocated and zero */
	if ((bitmap & 0xffffffffu) && !host)
		return -EIO; /* allocated subclusters in an unallocated cluster */
	sc = (unsigned)(in / q->sc_size);
	st = qcow2_sc_state(bitmap, sc);
	for (end = sc + 1; end < 32 && qcow2_sc_state(bitmap, end) == st; end++)
		;
	m->kind = st == 1 ? QCOW2_DATA : st == 2 ? QCOW2_ZERO : QCOW2_UNALLOC;
	m->off = host + in;
	m->len = (uint64_t)end * q->sc_size - in;
	return 0;
}

/* The slot to hold a table not in the cache: the least recently used, its
 * table written first if dirty (a flush: write.c's ordering rules). */
static int qcow2_l2_victim(struct qcow2 *q, uint32_t *victim)
{
	int ret;

	*victim = 0;
	for (uint32_t i = 1; i < q->nslots; i++)
		if (q->slots[i].used < q->slots[*victim].used)
			*victim = i;
	if (q->slots[*victim].dirty) {
		ret = qcow2_flush_locked(q);
		if (ret)
			return ret;
	}
	q->slots[*victim].l2_off = 0;
	return 0;
}

int qcow2_l2_peek(struct qcow2 *q, uint64_t l2_off, uint8_t **tab, uint32_t *slot)
{
	for (uint32_t i = 0; i < q->nslots; i++) {
		if (q->slots[i].l2_off == l2_off) {
			q->slots[i].used = ++q->clock;
			*tab = q->l2buf + (size_t)i * q->cluster_size;
			*slot = i;
			return 0;
		}
	}
	return -ENOENT;
}

int qcow2_l2_get(struct qcow2 *q, uint64_t l2_off, uint8_t **tab, uint32_t *slot)
{
	uint32_t victim;
	int ret;

	if (qcow2_l2_peek(q, l2_off, tab, slot) == 0)
		return 0;
	ret = qcow2_l2_victim(q, &victim);
	if (ret)
		return ret;
	ret = vhdfmt_pread(q->fd, q->l2buf + (size_t)victim * q->cluster_size,
			   q->cluster_size, l2_off);
	if (ret)
		return ret == -ENODATA ? -EIO : ret;
	q->slots[victim] = (struct qcow2_l2slot){ .l2_off = l2_off, .used = ++q->clock };
	*tab = q->l2buf + (size_t)victim * q->cluster_size;
	*slot = victim;
	return 0;
}

int qcow2_l2_new(struct qcow2 *q, uint64_t l2_off, uint8_t **tab, uint32_t *slot)
{
	uint32_t victim;
	int ret = qcow2_l2_victim(q, &victim);

	if (ret)
		return ret;
	q->slots[victim] = (struct qcow2_l2slot){ .l2_off = l2_off,
						  .used = ++q->clock,
						  .dirty = true };
	*tab = q->l2buf + (size_t)victim * q->cluster_size;
	memset(*tab, 0, q->cluster_size);
	*slot = victim;
	return 0;
}

/* nowait: for the queue's thread, which must not sleep behind a pool writer
 * or a flush holding the lock across fdatasync: -EAGAIN when it is taken. A
 * miss in the L2 cache still reads the table (docs/spec-strings.md, qcow2). */
static int qcow2_map_at(struct qcow2 *q, uint64_t goff, struct qcow2_map *m, bool nowait)
{
	unsigned l2_bits = q->h.cluster_bits - q->entry_shift;
	uint64_t l1i = goff >> (q->h.cluster_bits + l2_bits);
	uint64_t l2i = (goff >> q->h.cluster_bits) & (q->l2_entries - 1);
	uint64_t span = 1ull << (q->h.cluster_bits + l2_bits), l2_off, entry, bitmap = 0;
	uint8_t *tab;
	uint32_t slot;
	int ret;

	*m = (struct qcow2_map){ .kind = QCOW2_UNALLOC,
				 .len = span - (goff & (span - 1)) };
	if (l1i >= q->h.l1_size)
		return 0;
	if (!nowait)
		pthread_mutex_lock(&q->lock);
	else if (pthread_mutex_trylock(&q->lock))
		return -EAGAIN;
	l2_off = q->l1[l1i] & QCOW2_OFFSET_MASK;
	if (!l2_off) {
		pthread_mutex_unlock(&q->lock);
		return 0;
	}
	if ((l2_off & (q->cluster_size - 1)) || l2_off > q->file_size ||
	    q->file_size - l2_off < q->cluster_size) {
		pthread_mutex_unlock(&q->lock);
		dc_debug("qcow2: %s: L1 entry %llu names an L2 table at %llu, outside "
			 "the file",
			 q->path, (unsigned long long)l1i, (unsigned long long)l2_off);
		return -EIO;
	}
	ret = qcow2_l2_get(q, l2_off, &tab, &slot);
	if (ret == 0) {
		entry = get_be64(tab + (l2i << q->entry_shift));
		if (q->extl2)
			bitmap = get_be64(tab + (l2i << q->entry_shift) + 8);
	}
	pthread_mutex_unlock(&q->lock);
	if (ret)
		return ret;
	ret = qcow2_decode_l2(q, entry, bitmap, goff, m);
	if (ret)
		dc_debug("qcow2: %s: corrupt L2 entry 0x%016llx for guest offset %llu",
			 q->path, (unsigned long long)entry, (unsigned long long)goff);
	return ret;
}

int qcow2_map(struct qcow2 *q, uint64_t goff, struct qcow2_map *m)
{
	return qcow2_map_at(q, goff, m, false);
}

int qcow2_map_nowait(struct qcow2 *q, uint64_t goff, struct qcow2_map *m)
{
	return qcow2_map_at(q, goff, m, true);
}
