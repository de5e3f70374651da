/* SPDX-License-Identifier: MIT */
/*
 * ram: RAM disk layers, `mem:SIZE` and `memdiff:SPEC` (docs/openvmm-compat.md §4.6).
 *
 * Storage is a two-level table of 64 KiB chunks, allocated on first write, each
 * with a presence bitmap. Chunks are carved out of 2 MiB arenas, each faulted
 * in whole when it is made (arena.c says on which pages and why).
 *
 * A first write into a chunk costs the kernel's zeroing of fresh pages, most
 * of its time (docs/performance.md). ;prealloc pays that at open instead: a
 * chunk behind every slot, faulted in, none of it present until written.
 * Large writes into a large disk bypass the cache (stream.h).
 *
 * Readers take no lock: a writer copies the data in first and then publishes
 * the presence bits with release ordering. Writers to one chunk serialise on a
 * striped mutex, so that write-no-overwrite can test and fill as one step.
 *
 * Sectors at or past zero_after that are not present read as zero and are
 * marked, so that after a shrink, or an unmap that reaches the end, the layer
 * hides whatever lies below instead of exposing stale data.
 */
#include "arena.h"
#include "bitmap/bitmap.h"
#include "stream.h"

#include <diskcore/plugin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define RAM_PWORDS (RAM_CHUNK / 512 / 64) /* presence words per chunk */
#define RAM_L2_SHIFT 10
#define RAM_L2N (1u << RAM_L2_SHIFT) /* chunk slots per second-level block */
#define RAM_NLOCKS 64

struct ram_slot {
	_Atomic(uint8_t *) data;
	_Atomic uint64_t present[RAM_PWORDS];
	uint64_t pad;
};

/* The first-level index, published whole so a reader sees a size with the
 * array it belongs to. dc_resize() may run while I/O is in flight: a grown
 * index replaces the old one, which stays (on `retired`) until close because
 * a reader may still hold it. */
struct ram_index {
	struct ram_index *retired;
	uint64_t n;
	_Atomic(struct ram_slot *) slot[];
};

struct ram {
	struct dc_node *node;
	bool lazy; /* memdiff: size taken from the layer below at attach */
	bool read_only;
	bool prealloc;	     /* ;prealloc: every chunk made and faulted in at open */
	uint32_t opt_sector; /* ;sector=N, 0 when not given */
	uint32_t sector_size;
	unsigned shift;	    /* log2(sector_size) */
	unsigned spc_shift; /* log2(sectors per chunk) */
	_Atomic uint64_t sector_count;
	_Atomic uint64_t zero_after;
	_Atomic uint64_t committed; /* present sectors */
	_Atomic(struct ram_index *) idx;
	pthread_mutex_t index_lock; /* new second-level blocks, a grown index */
	/* One past the highest l1 slot ever filled: what close must walk. The
	 * index is sized by the disk, so a huge sparse disk (mem:1E) would
	 * otherwise cost a walk of its whole index. */
	atomic_uint_fast64_t l1_hi;
	pthread_mutex_t locks[RAM_NLOCKS];
	struct ram_alloc alloc;
};

static const struct dc_option ram_options[] = {
	DC_OPTION_UINT(
		"sector",
		"logical sector size in bytes, a power of two from 512 (default: 512, or "
		"for memdiff the size of the layer below)"),
	DC_OPTION_FLAG("prealloc",
		       "allocate and fault in all of the disk's memory at open, so that "
		       "first writes cost what overwrites do"),
	DC_OPTIONS_END,
};

/* Exactly the bits [from, to) of a chunk's presence words. */
static void ram_mask(uint64_t *m, unsigned from, unsigned to)
{
	memset(m, 0, RAM_PWORDS * sizeof(*m));
	bitmap_set(m, from, to);
}

/* First position in [pos, end) of a chunk whose bit equals want, or end. */
static unsigned ram_find(const uint64_t *w, unsigned pos, unsigned end, bool want)
{
	return (unsigned)bitmap_find(w, pos, end, want);
}

static inline struct ram_index *ram_idx(struct ram *r)
{
	return atomic_load_explicit(&r->idx, memory_order_acquire);
}

/* The second-level block of chunk ci, or NULL when none was ever made. */
static inline struct ram_slot *ram_l2(struct ram *r, uint64_t ci)
{
	struct ram_index *idx = ram_idx(r);
	uint64_t i1 = ci >> RAM_L2_SHIFT;

	return i1 < idx->n ? atomic_load_explicit(&idx->slot[i1], memory_order_acquire) :
			     NULL;
}

static inline struct ram_slot *ram_slot(struct ram *r, uint64_t ci)
{
	struct ram_slot *l2 = ram_l2(r, ci);

	return l2 ? &l2[ci & (RAM_L2N - 1)] : NULL;
}

static struct ram_slot *ram_slot_get(struct ram *r, uint64_t ci)
{
	uint64_t i1 = ci >> RAM_L2_SHIFT;
	struct ram_slot *l2 = ram_l2(r, ci);

	if (!l2) {
		/* Under the lock, in the index that is current now: a block put
		 * into an index that a resize is replacing would be lost. */
		struct ram_index *idx;

		pthread_mutex_lock(&r->index_lock);
		idx = ram_idx(r);
		l2 = i1 < idx->n ? atomic_load(&idx->slot[i1]) : NULL;
		if (!l2 && i1 < idx->n && (l2 = calloc(RAM_L2N, sizeof(*l2)))) {
			atomic_store_explicit(&idx->slot[i1], l2, memory_order_release);
			if (atomic_load(&r->l1_hi) < i1 + 1)
				atomic_store(&r->l1_hi, i1 + 1);
		}
		pthread_mutex_unlock(&r->index_lock);
		if (!l2)
			return NULL;
	}
	return &l2[ci & (RAM_L2N - 1)];
}

/* ;prealloc: a chunk behind every slot, its memory faulted in; they stay
 * not present (reading zeroes) until written. Refused past the machine's
 * memory rather than left to the OOM killer. */
static int ram_prealloc(struct ram *r)
{
	uint64_t count = atomic_load(&r->sector_count);
	uint64_t n = (count + (UINT64_C(1) << r->spc_shift) - 1) >> r->spc_shift;
	uint64_t phys =
		(uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);

	if (n > phys / RAM_CHUNK)
		return dc_fail(-ENOMEM,
			       "prealloc: %llu bytes is more than the machine's memory "
			       "(%llu bytes)",
			       (unsigned long long)(count << r->shift),
			       (unsigned long long)phys);
	for (uint64_t ci = 0; ci < n; ci++) {
		struct ram_slot *sl = ram_slot_get(r, ci);
		uint8_t *p = sl ? ram_chunk_alloc(&r->alloc) : NULL;

		if (!p)
			return dc_fail(-ENOMEM,
				       "prealloc: out of memory after %llu bytes",
				       (unsigned long long)ci * RAM_CHUNK);
		atomic_store_explicit(&sl->data, p, memory_order_release);
	}
	return 0;
}

static uint64_t ram_nl1(const struct ram *r, uint64_t sectors)
{
	uint64_t chunks = (sectors >> r->spc_shift) +
			  ((sectors & ((UINT64_C(1) << r->spc_shift) - 1)) != 0);

	return (chunks >> RAM_L2_SHIFT) + ((chunks & (RAM_L2N - 1)) != 0);
}

/* An index of n entries holding old's (NULL: none), with old retired. */
static struct ram_index *ram_index_new(uint64_t n, struct ram_index *old)
{
	struct ram_index *idx;

	if (n > (SIZE_MAX - sizeof(*idx)) / sizeof(idx->slot[0]))
		return NULL;
	idx = calloc(1, sizeof(*idx) + n * sizeof(idx->slot[0]));
	if (!idx)
		return NULL;
	idx->n = n;
	idx->retired = old;
	for (uint64_t i = 0; old && i < old->n; i++)
		atomic_init(&idx->slot[i], atomic_load(&old->slot[i]));
	return idx;
}

/* Validate geometry and allocate the index (OpenVMM's new_with_sector_size). */
static int ram_setup(struct ram *r, uint64_t size, uint32_t ss)
{
	struct ram_index *idx;
	uint64_t count;

	if (ss < 512 || ss > RAM_CHUNK || (ss & (ss - 1)))
		return dc_fail(
			-EINVAL,
			"sector size %u is invalid: expected a power of two from 512 "
			"to %u",
			ss, RAM_CHUNK);
	if (size == 0)
		return dc_fail(
			-EINVAL,
			"disk has no sectors: the size must be at least one sector");
	if (size % ss)
		return dc_fail(-EINVAL,
			       "disk size %llu is not a multiple of the sector size %u",
			       (unsigned long long)size, ss);
	r->sector_size = ss;
	r->shift = (unsigned)__builtin_ctz(ss);
	r->spc_shift = RAM_CHUNK_SHIFT - r->shift;
	count = size >> r->shift;
	idx = ram_index_new(ram_nl1(r, count), NULL);
	atomic_store(&r->idx, idx);
	if (!idx)
		return dc_fail(-ENOMEM,
			       "cannot allocate the chunk index of a %llu-byte disk",
			       (unsigned long long)size);
	atomic_store(&r->sector_count, count);
	atomic_store(&r->zero_after, count);
	ram_alloc_size(&r->alloc, size);
	return 0;
}

static void ram_fill_info(const struct ram *r, struct dc_info *info)
{
	memset(info, 0, sizeof(*info));
	info->sector_count = atomic_load(&r->sector_count);
	info->sector_size = r->sector_size ? r->sector_size : 512;
	info->physical_sector_size = info->sector_size;
	info->optimal_unmap_sectors = 1;
	info->unmap_behavior = DC_UNMAP_UNSPECIFIED;
	/* RAM commits at once, and is never logically read-only (as OpenVMM). */
	info->flags = DC_INFO_FUA_RESPECTED | DC_INFO_CAN_READ_CACHE;
	snprintf(info->disk_type, sizeof(info->disk_type), "ram");
}

static void ram_close(void *inst)
{
	struct ram *r = inst;

	struct ram_index *idx = atomic_load(&r->idx), *next;

	for (uint64_t i = 0; idx && i < idx->n && i < atomic_load(&r->l1_hi); i++)
		free(atomic_load(&idx->slot[i]));
	for (; idx; idx = next) {
		next = idx->retired;
		free(idx);
	}
	ram_alloc_destroy(&r->alloc);
	pthread_mutex_destroy(&r->index_lock);
	for (unsigned i = 0; i < RAM_NLOCKS; i++)
		pthread_mutex_destroy(&r->locks[i]);
	free(r);
}

/* mem:'s size field, in bytes. */
static int ram_parse_size(const struct dc_open_args *a, uint64_t *size)
{
	const char *m, *why;
	char text[256];

	if (a->nfields >= 1 && dc_parse_size(a->fields[0], size) == 0)
		return 0;
	/* dc_parse_size() says what is wrong and what it accepts, after
	 * "invalid size 'X': ". */
	m = a->nfields ? dc_last_error() : NULL;
	why = m && strstr(m, "': ") ? strstr(m, "': ") + 3 : "";
	snprintf(text, sizeof(text), "size '%s' is invalid: %s",
		 a->nfields ? a->fields[0] : "", why);
	return dc_fail(-EINVAL, "%s", text);
}

/* Size the disk (mem: at open, memdiff: at attach), make its memory if
 * ;prealloc asks, and describe it. */
static int ram_size(struct ram *r, uint64_t size, uint32_t ss, struct dc_info *info)
{
	int rc = ram_setup(r, size, ss);

	if (rc == 0 && r->prealloc)
		rc = ram_prealloc(r);
	if (rc == 0)
		ram_fill_info(r, info);
	return rc;
}

static int ram_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct ram *r = calloc(1, sizeof(*r));
	uint64_t v, size;
	int rc = 0;

	if (!r)
		return dc_fail(-ENOMEM, "out of memory");
	for (unsigned i = 0; i < RAM_NLOCKS; i++)
		pthread_mutex_init(&r->locks[i], NULL);
	ram_alloc_init(&r->alloc);
	pthread_mutex_init(&r->index_lock, NULL);
	r->node = a->node;
	r->read_only = a->read_only;
	r->lazy = strcmp(a->form, "memdiff") == 0;
	r->prealloc = dc_opt_flag(a, "prealloc");
	if (dc_opt_num(a, "sector", &v)) {
		if (v < 512 || v > RAM_CHUNK || (v & (v - 1)))
			rc = dc_fail(-EINVAL,
				     "sector size %llu is invalid: expected a power of "
				     "two from 512 to %u",
				     (unsigned long long)v, RAM_CHUNK);
		r->opt_sector = (uint32_t)v;
	}
	if (rc == 0 && r->lazy)
		ram_fill_info(r, info); /* sized at attach */
	else if (rc == 0 && (rc = ram_parse_size(a, &size)) == 0)
		rc = ram_size(r, size, r->opt_sector ? r->opt_sector : 512, info);
	if (rc < 0) {
		ram_close(r);
		return rc;
	}
	*inst = r;
	return 0;
}

static int ram_attach(void *inst, const struct dc_info *lower, struct dc_info *info)
{
	struct ram *r = inst;
	uint64_t len;

	if (!r->lazy)
		return 0;
	if (atomic_load(&r->idx)) /* attached already */
		return 0;
	if (!lower)
		return dc_fail(
			-EINVAL,
			"disk has no sectors: memdiff takes its size from the layer "
			"below, and there is none");
	if (__builtin_mul_overflow(lower->sector_count, (uint64_t)lower->sector_size,
				   &len))
		return dc_fail(-EINVAL,
			       "the layer below is too large (%llu sectors of %u bytes)",
			       (unsigned long long)lower->sector_count,
			       lower->sector_size);
	return ram_size(r, len, r->opt_sector ? r->opt_sector : lower->sector_size, info);
}

static bool ram_out_of_range(struct ram *r, uint64_t sector, uint64_t count)
{
	uint64_t sc = atomic_load_explicit(&r->sector_count, memory_order_relaxed);

	return count > sc || sector > sc - count;
}

/* Not-present sectors [s, e): those at or past zero_after read as zero. */
static void ram_gap(struct ram *r, struct dc_req *req, uint64_t s, uint64_t e,
		    uint64_t za)
{
	if (!req->marker) {
		/* Used as a plain disk: nothing below, all of it is zero. */
		dc_buf_zero(&req->buf, (s - req->sector) << r->shift,
			    (e - s) << r->shift);
		return;
	}
	if (s < za)
		s = za;
	if (s >= e)
		return;
	dc_buf_zero(&req->buf, (s - req->sector) << r->shift, (e - s) << r->shift);
	dc_marker_set(req->marker, s, e - s);
}

/* Whether [first, last) lies in one word of w and all its bits are set. */
static inline bool ram_word_full(const uint64_t *w, unsigned first, unsigned last)
{
	unsigned n = last - first;

	return first >> 6 == (last - 1) >> 6 &&
	       ((w[first >> 6] >> (first & 63)) | ~(~UINT64_C(0) >> (64 - n))) ==
		       ~UINT64_C(0);
}

/* Sectors [from, to) of the chunk at sector base are present in data: into
 * the request's buffer, marked as this layer's. */
static inline void ram_copy_out(struct ram *r, struct dc_req *req, const uint8_t *data,
				uint64_t base, unsigned from, unsigned to)
{
	dc_buf_copy_to(&req->buf, (base + from - req->sector) << r->shift,
		       data + ((size_t)from << r->shift),
		       (size_t)(to - from) << r->shift);
	if (req->marker)
		dc_marker_set(req->marker, base + from, to - from);
}

static int ram_read(struct ram *r, struct dc_req *req)
{
	uint64_t spc = UINT64_C(1) << r->spc_shift;
	uint64_t s = req->sector, end = req->sector + req->count, za;

	if (ram_out_of_range(r, req->sector, req->count))
		return DC_E_ILLEGAL_BLOCK;
	za = atomic_load_explicit(&r->zero_after, memory_order_relaxed);
	while (s < end) {
		uint64_t ci = s >> r->spc_shift, base = ci << r->spc_shift;
		unsigned first = (unsigned)(s - base);
		unsigned last = end - base < spc ? (unsigned)(end - base) : (unsigned)spc;
		struct ram_slot *sl = ram_slot(r, ci);
		uint8_t *data = NULL;
		uint64_t w[RAM_PWORDS] = { 0 };
		unsigned pos = first;

		if (sl)
			data = atomic_load_explicit(&sl->data, memory_order_acquire);
		if (data)
			for (unsigned k = 0; k < RAM_PWORDS; k++)
				w[k] = atomic_load_explicit(&sl->present[k],
							    memory_order_acquire);
		/* Most reads: every sector present, within one word of bits. */
		if (data && ram_word_full(w, first, last)) {
			ram_copy_out(r, req, data, base, first, last);
			s = base + last;
			continue;
		}
		while (pos < last) {
			unsigned q = ram_find(w, pos, last, false);

			if (q > pos) {
				ram_copy_out(r, req, data, base, pos, q);
				pos = q;
				continue;
			}
			q = ram_find(w, pos, last, true);
			ram_gap(r, req, base + pos, base + q, za);
			pos = q;
		}
		s = base + last;
	}
	return 0;
}

/* The chunk behind sl, made if there is none, with lock held on return
 * (NULL and not held: out of memory). A new chunk is made before the lock is
 * taken: making it may fault in an arena (~1 ms), which must not hold up the
 * writers of the other chunks under that lock. A writer that lost the race
 * to fill sl gives its chunk back. */
static uint8_t *ram_chunk_lock(struct ram *r, struct ram_slot *sl, pthread_mutex_t *lock)
{
	uint8_t *data = atomic_load_explicit(&sl->data, memory_order_relaxed);
	uint8_t *made = data ? NULL : ram_chunk_alloc(&r->alloc);

	pthread_mutex_lock(lock);
	data = atomic_load_explicit(&sl->data, memory_order_relaxed);
	if (!data && made) {
		atomic_store_explicit(&sl->data, made, memory_order_release);
		return made;
	}
	ram_chunk_free(&r->alloc, made);
	if (!data)
		pthread_mutex_unlock(lock);
	return data;
}

static int ram_write(struct ram *r, struct dc_req *req, bool overwrite)
{
	uint64_t spc = UINT64_C(1) << r->spc_shift;
	uint64_t s = req->sector, end = req->sector + req->count, added = 0;
	bool stream = (atomic_load_explicit(&r->sector_count, memory_order_relaxed)
		       << r->shift) >= RAM_STREAM_DISK;
	int rc = 0;

	if (ram_out_of_range(r, req->sector, req->count))
		return DC_E_ILLEGAL_BLOCK;
	/* Read caches are populated without overwrite even when read-only. */
	if (r->read_only && overwrite)
		return DC_E_READ_ONLY;
	while (s < end) {
		uint64_t ci = s >> r->spc_shift, base = ci << r->spc_shift;
		unsigned first = (unsigned)(s - base);
		unsigned last = end - base < spc ? (unsigned)(end - base) : (unsigned)spc;
		size_t off = (s - req->sector) << r->shift;
		struct ram_slot *sl = ram_slot_get(r, ci);
		pthread_mutex_t *lock = &r->locks[ci % RAM_NLOCKS];
		uint64_t m[RAM_PWORDS];
		uint8_t *data;

		if (!sl) {
			rc = -ENOMEM;
			break;
		}
		if (!(data = ram_chunk_lock(r, sl, lock))) {
			rc = -ENOMEM;
			break;
		}
		ram_mask(m, first, last);
		if (overwrite) {
			ram_copy_from(&req->buf, off, data + ((size_t)first << r->shift),
				      (size_t)(last - first) << r->shift, stream);
		} else {
			uint64_t w[RAM_PWORDS];
			unsigned pos = first;

			for (unsigned k = 0; k < RAM_PWORDS; k++) {
				w[k] = atomic_load_explicit(&sl->present[k],
							    memory_order_relaxed);
				m[k] &= ~w[k];
			}
			while ((pos = ram_find(w, pos, last, false)) < last) {
				unsigned q = ram_find(w, pos, last, true);

				ram_copy_from(&req->buf,
					      off + ((size_t)(pos - first) << r->shift),
					      data + ((size_t)pos << r->shift),
					      (size_t)(q - pos) << r->shift, stream);
				pos = q;
			}
		}
		for (unsigned k = 0; k < RAM_PWORDS; k++) {
			uint64_t old;

			if (!m[k])
				continue;
			old = atomic_fetch_or_explicit(&sl->present[k], m[k],
						       memory_order_release);
			added += (uint64_t)__builtin_popcountll(m[k] & ~old);
		}
		pthread_mutex_unlock(lock);
		s = base + last;
	}
	if (added)
		atomic_fetch_add_explicit(&r->committed, added, memory_order_relaxed);
	return rc;
}

/* Drop the presence bits m of a slot; give the memory back when it empties. */
static void ram_drop(struct ram *r, struct ram_slot *sl, const uint64_t *m)
{
	uint64_t removed = 0, left = 0;
	uint8_t *data = atomic_load_explicit(&sl->data, memory_order_relaxed);

	for (unsigned k = 0; k < RAM_PWORDS; k++) {
		uint64_t old = atomic_fetch_and_explicit(&sl->present[k], ~m[k],
							 memory_order_acq_rel);

		removed += (uint64_t)__builtin_popcountll(old & m[k]);
		left |= old & ~m[k];
	}
	if (removed)
		atomic_fetch_sub_explicit(&r->committed, removed, memory_order_relaxed);
	/* Give the memory back; readers racing with this unmap may see
	 * zeroes, which is a valid result for them. */
	if (removed && !left && data && !r->prealloc)
		madvise(data, RAM_CHUNK, MADV_DONTNEED);
}

static int ram_unmap(struct ram *r, struct dc_req *req)
{
	uint64_t spc = UINT64_C(1) << r->spc_shift;
	uint64_t s = req->sector, end = req->sector + req->count;

	if (ram_out_of_range(r, req->sector, req->count))
		return DC_E_ILLEGAL_BLOCK;
	if (!(req->flags & DC_IO_NEXT_IS_ZERO)) {
		uint64_t za = atomic_load(&r->zero_after);

		/* A hole of zeroes in the middle cannot be represented. */
		if (end < za)
			return 0;
		/* The unmap reaches the not-present-reads-zero tail: extend it. */
		while (req->sector < za &&
		       !atomic_compare_exchange_weak(&r->zero_after, &za, req->sector))
			;
	}
	while (s < end) {
		uint64_t ci = s >> r->spc_shift, base = ci << r->spc_shift;
		unsigned first = (unsigned)(s - base);
		unsigned last = end - base < spc ? (unsigned)(end - base) : (unsigned)spc;
		struct ram_slot *l2 = NULL;
		pthread_mutex_t *lock;
		uint64_t m[RAM_PWORDS];

		l2 = ram_l2(r, ci);
		if (!l2) {
			/* Skip the whole unallocated second-level block. */
			s = ((ci >> RAM_L2_SHIFT) + 1) << (RAM_L2_SHIFT + r->spc_shift);
			continue;
		}
		if (atomic_load_explicit(&l2[ci & (RAM_L2N - 1)].data,
					 memory_order_relaxed)) {
			lock = &r->locks[ci % RAM_NLOCKS];
			ram_mask(m, first, last);
			pthread_mutex_lock(lock);
			ram_drop(r, &l2[ci & (RAM_L2N - 1)], m);
			pthread_mutex_unlock(lock);
		}
		s = base + last;
	}
	return 0;
}

static void ram_submit(void *inst, struct dc_req *req)
{
	struct ram *r = inst;
	int rc;

	switch (req->op) {
	case DC_OP_READ:
		rc = ram_read(r, req);
		break;
	case DC_OP_WRITE:
		rc = ram_write(r, req, !(req->flags & DC_IO_NO_OVERWRITE));
		break;
	case DC_OP_FLUSH:
		rc = 0;
		break;
	case DC_OP_UNMAP:
		rc = ram_unmap(r, req);
		break;
	default:
		rc = DC_E_UNSUPPORTED;
		break;
	}
	dc_complete(req, rc);
}

static uint64_t ram_sector_count(void *inst)
{
	struct ram *r = inst;

	return atomic_load_explicit(&r->sector_count, memory_order_relaxed);
}

/* Called with no I/O in flight (plugin.h), so the index may be reshaped. */
static int ram_resize(void *inst, uint64_t n)
{
	struct ram *r = inst;
	uint64_t old, za, nl1, spc;
	struct ram_index *idx = atomic_load(&r->idx);

	if (!idx)
		return dc_fail(-EINVAL, "cannot resize a layer that is not attached yet");
	if (n == 0)
		return dc_fail(-EINVAL,
			       "sector count 0 is invalid: a RAM disk needs at least one "
			       "sector");
	if (n > (UINT64_MAX >> r->shift))
		return dc_fail(-EINVAL,
			       "sector count %llu is too large for %u-byte sectors",
			       (unsigned long long)n, r->sector_size);
	spc = UINT64_C(1) << r->spc_shift;
	nl1 = ram_nl1(r, n);
	pthread_mutex_lock(&r->index_lock);
	idx = atomic_load(&r->idx);
	if (nl1 > idx->n) {
		struct ram_index *grown = ram_index_new(nl1, idx);

		if (!grown) {
			pthread_mutex_unlock(&r->index_lock);
			return dc_fail(-ENOMEM,
				       "cannot grow the chunk index to %llu sectors",
				       (unsigned long long)n);
		}
		atomic_store_explicit(&r->idx, grown, memory_order_release);
		idx = grown;
	}
	old = atomic_load(&r->sector_count);
	za = atomic_load(&r->zero_after);
	if (n < za)
		atomic_store(&r->zero_after, n);
	if (n < old) {
		/* Drop everything at or past the new end. */
		uint64_t hi = atomic_load(&r->l1_hi);

		for (uint64_t i1 = (n >> r->spc_shift) >> RAM_L2_SHIFT;
		     i1 < idx->n && i1 < hi; i1++) {
			struct ram_slot *l2 = atomic_load(&idx->slot[i1]);

			if (!l2)
				continue;
			for (unsigned j = 0; j < RAM_L2N; j++) {
				uint64_t start = ((i1 << RAM_L2_SHIFT) + j)
						 << r->spc_shift;
				uint64_t m[RAM_PWORDS];

				if (start + spc <= n)
					continue;
				ram_mask(m, start >= n ? 0 : (unsigned)(n - start),
					 (unsigned)spc);
				ram_drop(r, &l2[j], m);
				if (start < n)
					continue;
				ram_chunk_free(&r->alloc, atomic_load(&l2[j].data));
				atomic_store(&l2[j].data, NULL);
			}
			/* The emptied block stays (freed at close): a request in
			 * flight may still be looking at it. */
		}
	}
	pthread_mutex_unlock(&r->index_lock);
	atomic_store(&r->sector_count, n);
	dc_node_notify_resize(r->node);
	return 0;
}

/* Present sectors are data; the rest is absent (read from below), except at
 * or past zero_after, where the layer holds zeroes. Chunks under an index
 * block never made are skipped a block at a time. */
static int ram_extents(void *inst, struct dc_node *node, uint64_t sector, uint64_t count,
		       uint64_t *run)
{
	struct ram *r = inst;
	uint64_t spc = UINT64_C(1) << r->spc_shift, s = sector, end = sector + count;
	uint64_t za = atomic_load_explicit(&r->zero_after, memory_order_relaxed);
	int present = -1;

	(void)node;
	while (s < end) {
		uint64_t ci = s >> r->spc_shift, base = ci << r->spc_shift;
		unsigned first = (unsigned)(s - base);
		unsigned last = end - base < spc ? (unsigned)(end - base) : (unsigned)spc;
		struct ram_slot *sl = ram_slot(r, ci);
		uint64_t w[RAM_PWORDS] = { 0 };
		unsigned q;

		if (!sl && present != 1) {
			uint64_t next = ((ci >> RAM_L2_SHIFT) + 1)
					<< RAM_L2_SHIFT << r->spc_shift;

			present = 0;
			s = next < end ? next : end;
			continue;
		}
		if (sl && atomic_load_explicit(&sl->data, memory_order_acquire))
			for (unsigned k = 0; k < RAM_PWORDS; k++)
				w[k] = atomic_load_explicit(&sl->present[k],
							    memory_order_acquire);
		if (present < 0)
			present = bitmap_test(w, first);
		q = ram_find(w, first, last, !present);
		s = base + q;
		if (q < last)
			break;
	}
	if (present) {
		*run = s - sector;
		return 0;
	}
	if (sector >= za) {
		*run = s - sector;
		return DC_EXTENT_HOLE | DC_EXTENT_ZERO;
	}
	*run = (s < za ? s : za) - sector;
	return DC_EXTENT_ABSENT;
}

static void ram_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct ram *r = inst;

	dc_kv_u64(kv, arg, "committed_size", atomic_load(&r->committed) * r->sector_size);
	dc_kv_u64(kv, arg, "zero_after", atomic_load(&r->zero_after));
	dc_kv_printf(kv, arg, "arenas", "%u on huge pages, %u on small pages",
		     atomic_load(&r->alloc.huge), atomic_load(&r->alloc.small));
}

DC_PLUGIN(ram_plugin) = {
	DC_ABOUT(DC_KIND_LAYER, "ram", "0.1.0",
		 "RAM disk and RAM diff layers (mem:, memdiff:)"),
	.layer_flags = DC_LAYER_FILLS_ZERO,
	.usage = "mem:SIZE is a zero-filled RAM disk of SIZE bytes. memdiff:SPEC keeps\n"
		 "writes in RAM over SPEC, which is opened read-only; it takes its size\n"
		 "and sector size from SPEC. Unmap drops sectors only where the layer\n"
		 "below is known to be zero or the range reaches the end of the disk.\n"
		 "dc_resize() changes the size of the top RAM layer. ;prealloc faults\n"
		 "all of the memory in at open (refused past the machine's memory), so\n"
		 "that first writes cost what overwrites do; unmap then keeps it.",
	.forms = DC_FORMS(
		DC_FORM("mem", 1, DC_CHILD_NONE, "mem:SIZE[;sector=N]",
			"RAM disk of SIZE bytes, zero-filled, lost on close",
			ram_options),
		DC_FORM("memdiff", 0, DC_CHILD_ONE, "memdiff[;sector=N]:SPEC",
			"RAM diff layer over SPEC: writes stay in memory, SPEC is opened read-only",
			ram_options)),
	.ops = DC_OPS_RW,
	DC_CALLBACKS(ram, open, close, submit, sector_count, attach, describe, resize,
		     extents),
};
