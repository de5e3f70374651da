/* SPDX-License-Identifier: MIT */
/* vhdx_resize: resize() and sector_count(). A dynamic image grows in place
 * while its BAT region has room for the new entries (new images here and
 * qemu-img's have 1 MiB: 131072 entries); the new virtual disk size item
 * goes through the log like any metadata ([MS-VHDX] 2.3), so a crash leaves
 * the old size or the new one. Shrinking, fixed and differencing images are
 * refused (a child's size is its parent's). */
#include "vhdx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint64_t vhdx_sector_count(void *inst)
{
	struct vhdx *v = inst;

	return __atomic_load_n(&v->disk_size, __ATOMIC_ACQUIRE) >> v->ss_shift;
}

/* Can the image grow to size, needing nbat entries (lock held)? */
static int vhdx_resize_check(struct vhdx *v, uint64_t size, uint64_t nbat)
{
	uint64_t last = v->nblocks - 1, e = v->bat[vhdx_pidx(v, last)];

	if (v->ro)
		return dc_fail(-EROFS, "%s: open read-only", v->img.path);
	if (v->diff || v->leave_alloc)
		return dc_fail(-EOPNOTSUPP,
			       "%s: only a dynamic VHDX grows (a %s image does not: %s)",
			       v->img.path, v->diff ? "differencing" : "fixed",
			       v->diff ? "its size is its parent's" :
					 "its new blocks would have to be allocated");
	if (size < v->disk_size)
		return dc_fail(
			-EOPNOTSUPP,
			"%s: cannot shrink from %llu to %llu bytes; a VHDX grows only",
			v->img.path, (unsigned long long)v->disk_size,
			(unsigned long long)size);
	if (nbat > v->nbat_mem)
		return dc_fail(
			-ENOSPC,
			"%s: %llu bytes need %llu BAT entries, but the BAT region has "
			"room for %llu here; it would have to move, which is not "
			"supported (convert to a new image instead)",
			v->img.path, (unsigned long long)size, (unsigned long long)nbat,
			(unsigned long long)v->nbat_mem);
	for (uint64_t i = v->nbat; i < nbat; i++)
		if (v->bat[i])
			return dc_fail(
				-EINVAL,
				"%s: BAT entry %llu past the disk's end is in use; "
				"refusing to grow over it",
				v->img.path, (unsigned long long)i);
	/* The old last block may be short in the file (vhdx.c accepts that):
	 * growing would expose space that may belong to something else. */
	if (v->disk_size % v->block_size &&
	    (VHDX_BAT_STATE(e) == VHDX_PB_FULL || VHDX_BAT_STATE(e) == VHDX_PB_PARTIAL))
		return dc_fail(
			-EOPNOTSUPP,
			"%s: the last block is partly outside the disk and allocated; "
			"growing would expose what follows it in the file",
			v->img.path);
	if (v->size_off / VHDX_LSEC != (v->size_off + 7) / VHDX_LSEC)
		return dc_fail(-EOPNOTSUPP,
			       "%s: the virtual disk size item straddles a 4 KiB sector",
			       v->img.path);
	return 0;
}

/* Log the sector holding the new size item (lock held). */
static int vhdx_resize_log(struct vhdx *v, uint64_t size)
{
	uint64_t sec = v->size_off & ~(uint64_t)(VHDX_LSEC - 1);
	int ret;

	v->meta_sec = malloc(VHDX_LSEC);
	if (!v->meta_sec)
		return -ENOMEM;
	ret = vhdx_pread(v, v->meta_sec, VHDX_LSEC, sec);
	if (ret == 0)
		ret = vhdx_session(v, true);
	if (ret == 0)
		ret = vhdx_reserve(v);
	if (ret < 0) {
		free(v->meta_sec);
		v->meta_sec = NULL;
		return ret;
	}
	put_le64(v->meta_sec + (v->size_off - sec), size);
	v->keys[v->nkeys] = VHDX_KEY_META | sec;
	__atomic_store_n(&v->nkeys, v->nkeys + 1, __ATOMIC_RELAXED);
	ret = vhdx_log_commit(v);
	/* Not committed: take the sector back, so that no later flush writes
	 * a size this open does not use (as after a failed flush, what reached
	 * the log may still apply at the next open). */
	for (size_t i = 0; v->meta_sec && i < v->nkeys; i++) {
		if (v->keys[i] != (VHDX_KEY_META | sec))
			continue;
		memmove(v->keys + i, v->keys + i + 1,
			(v->nkeys - i - 1) * sizeof(*v->keys));
		__atomic_store_n(&v->nkeys, v->nkeys - 1, __ATOMIC_RELAXED);
		vhdx_key_done(v, VHDX_KEY_META | sec);
	}
	return ret;
}

int vhdx_resize(void *inst, uint64_t n)
{
	struct vhdx *v = inst;
	uint64_t size, nblocks, nchunks, nbat;
	int ret;

	if (n == 0 || n > VHDX_MAX_DISK >> v->ss_shift)
		return dc_fail(-EINVAL, "%s: %llu sectors: a VHDX holds 1 to %llu",
			       v->img.path, (unsigned long long)n,
			       (unsigned long long)(VHDX_MAX_DISK >> v->ss_shift));
	size = n << v->ss_shift;
	nblocks = (size + v->block_size - 1) / v->block_size;
	nchunks = (nblocks + v->chunk_ratio - 1) / v->chunk_ratio;
	nbat = nblocks + (nblocks - 1) / v->chunk_ratio;
	pthread_mutex_lock(&v->lock);
	ret = vhdx_resize_check(v, size, nbat);
	if (ret == 0 && size != v->disk_size) {
		ret = vhdx_resize_log(v, size);
		if (ret < 0)
			dc_error("%s: cannot write the new size: %s", v->img.path,
				 strerror(-ret));
	}
	if (ret == 0 && size != v->disk_size) {
		/* Blocks first: once the size shows, requests reach them. */
		v->nblocks = nblocks;
		v->nchunks = nchunks;
		v->nbat = nbat;
		__atomic_store_n(&v->disk_size, size, __ATOMIC_RELEASE);
		v->img.info.sector_count = n;
	}
	pthread_mutex_unlock(&v->lock);
	return ret;
}
