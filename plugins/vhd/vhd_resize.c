/* SPDX-License-Identifier: MIT */
/* vhd_resize: resize() and sector_count(). A dynamic image grows in place
 * while its BAT has room: the BAT's sectors (written in full at creation,
 * unused entries 0xffffffff) bound the blocks; past them the BAT would have
 * to move over the first block, which this plugin refuses. Shrinking, fixed
 * and differencing images are refused (a child's size is its parent's). */
#include "vhd.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

uint64_t vhd_sector_count(void *inst)
{
	struct vhd_img *v = inst;

	return __atomic_load_n(&v->m.f.current_size, __ATOMIC_ACQUIRE) / VHD_SECTOR;
}

static int vhd_resize_check(struct vhd_img *v, uint64_t size, uint32_t nblocks)
{
	uint64_t cap = v->m.bat_bytes / 4;

	if (v->read_only)
		return dc_fail(-EROFS, "%s: open read-only", v->img.path);
	if (v->fixed || v->diff)
		return dc_fail(-EOPNOTSUPP,
			       "%s: only a dynamic VHD grows (a %s image does not: %s)",
			       v->img.path, v->fixed ? "fixed" : "differencing",
			       v->fixed ? "its data would have to move the footer" :
					  "its size is its parent's");
	if (size < v->m.f.current_size)
		return dc_fail(
			-EOPNOTSUPP,
			"%s: cannot shrink from %llu to %llu bytes (blocks would be "
			"lost); a VHD grows only",
			v->img.path, (unsigned long long)v->m.f.current_size,
			(unsigned long long)size);
	if (size > VHD_MAX_DYNAMIC)
		return dc_fail(-EINVAL,
			       "%s: %llu bytes: a dynamic VHD holds at most 2040 GiB",
			       v->img.path, (unsigned long long)size);
	if (nblocks > cap)
		return dc_fail(
			-ENOSPC,
			"%s: %llu bytes need %u blocks of %u bytes, but the BAT has "
			"room for %llu; it would have to move, which is not supported "
			"(convert to a new image instead)",
			v->img.path, (unsigned long long)size, nblocks, v->m.block_size,
			(unsigned long long)cap);
	for (uint64_t i = v->m.nblocks; i < nblocks; i++)
		if (v->bat[i] != VHD_UNALLOC)
			return dc_fail(
				-EINVAL,
				"%s: BAT entry %llu past the disk's end is in use; "
				"refusing to grow over it",
				v->img.path, (unsigned long long)i);
	return 0;
}

/* The new header (max_entries) and footers, in an order that leaves one valid
 * footer at every instant: the copy at 0 is invalidated first (the end one
 * then rules), the end footer replaced, then the copy written again. */
static int vhd_resize_write(struct vhd_img *v, struct vhd_footer *f, uint32_t nblocks)
{
	uint8_t buf[VHD_HEADER_SIZE > VHD_FOOTER_SIZE ? VHD_HEADER_SIZE : VHD_FOOTER_SIZE];
	int ret = 0;

	if (nblocks > v->m.dh.max_entries) {
		struct vhd_dyn_header h = v->m.dh;

		h.max_entries = nblocks;
		vhdfmt_dyn_encode(&h, buf);
		ret = vhdfmt_pwrite(v->img.fd, buf, VHD_HEADER_SIZE, v->m.header_off);
		if (ret == 0)
			v->m.dh.max_entries = v->m.max_entries = nblocks;
	}
	memset(buf, 0, VHD_FOOTER_SIZE);
	if (ret == 0)
		ret = vhdfmt_pwrite(v->img.fd, buf, VHD_FOOTER_SIZE, 0);
	if (ret == 0 && fdatasync(v->img.fd) < 0)
		ret = -errno;
	vhdfmt_footer_encode(f, buf);
	if (ret == 0)
		ret = vhdfmt_pwrite(v->img.fd, buf, VHD_FOOTER_SIZE, v->footer_off);
	if (ret == 0 && fdatasync(v->img.fd) < 0)
		ret = -errno;
	if (ret == 0)
		ret = vhdfmt_pwrite(v->img.fd, buf, VHD_FOOTER_SIZE, 0);
	if (ret == 0 && fdatasync(v->img.fd) < 0)
		ret = -errno;
	if (ret == 0)
		memcpy(v->m.footer_raw, buf, VHD_FOOTER_SIZE);
	return ret;
}

int vhd_resize(void *inst, uint64_t n)
{
	struct vhd_img *v = inst;
	uint64_t size = n * VHD_SECTOR;
	uint32_t nblocks;
	struct vhd_footer f;
	int ret;

	if (n == 0 || n > VHD_MAX_DYNAMIC / VHD_SECTOR)
		return dc_fail(-EINVAL, "%s: %llu sectors: a dynamic VHD holds 1 to %llu",
			       v->img.path, (unsigned long long)n,
			       (unsigned long long)(VHD_MAX_DYNAMIC / VHD_SECTOR));
	/* A fixed image has no blocks (vhd_resize_check() refuses it). */
	nblocks = v->fixed ? 0 :
			     (uint32_t)((size + v->m.block_size - 1) / v->m.block_size);
	pthread_mutex_lock(&v->lock);
	ret = vhd_resize_check(v, size, nblocks);
	if (ret == 0 && size != v->m.f.current_size) {
		f = v->m.f;
		f.current_size = size;
		f.geometry = vhdfmt_geometry(size);
		/* Readers that size a VHD by its geometry (Virtual PC, and qemu
		 * for creators other than Hyper-V's) would read a size CHS
		 * cannot express as smaller: say Hyper-V's creator, which
		 * means current_size, as new images here do. */
		if ((uint64_t)(f.geometry >> 16) * ((f.geometry >> 8) & 0xff) *
			    (f.geometry & 0xff) * VHD_SECTOR !=
		    size) {
			f.creator_app = VHD_CODE('w', 'i', 'n', ' ');
			f.creator_version = 0x000a0000;
			f.creator_os = VHD_CODE('W', 'i', '2', 'k');
		}
		ret = vhd_resize_write(v, &f, nblocks);
		if (ret < 0)
			dc_error("%s: cannot write the new size: %s", v->img.path,
				 strerror(-ret));
	}
	if (ret == 0 && size != v->m.f.current_size) {
		/* Blocks first: once the size shows, requests reach them. */
		__atomic_store_n(&v->m.nblocks, nblocks, __ATOMIC_RELEASE);
		v->m.f.geometry = f.geometry;
		v->m.f.creator_app = f.creator_app;
		v->m.f.creator_version = f.creator_version;
		v->m.f.creator_os = f.creator_os;
		v->m.f.checksum = f.checksum;
		__atomic_store_n(&v->m.f.current_size, size, __ATOMIC_RELEASE);
		v->img.info.sector_count = n;
	}
	pthread_mutex_unlock(&v->lock);
	return ret;
}
