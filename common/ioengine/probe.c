/* SPDX-License-Identifier: MIT */
/* ioengine: what a regular file's filesystem allows, probed the same way for
 * the plugins that serve a raw file (file, blockdev): the O_DIRECT alignment
 * and hole punching. */
#include "ioengine/ioengine.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>

static bool ioe_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

void ioe_file_dio_align(int fd, bool direct, unsigned *shift, size_t *align)
{
	*shift = 9;
	*align = 512;
#ifdef STATX_DIOALIGN
	if (direct) {
		struct statx stx;

		/* Offsets (hence the sector) and buffers as the filesystem
		 * needs them for O_DIRECT. */
		if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
		    (stx.stx_mask & STATX_DIOALIGN)) {
			if (ioe_pow2(stx.stx_dio_offset_align) &&
			    stx.stx_dio_offset_align > 512 &&
			    stx.stx_dio_offset_align <= 65536)
				*shift =
					(unsigned)__builtin_ctz(stx.stx_dio_offset_align);
			if (ioe_pow2(stx.stx_dio_mem_align) &&
			    stx.stx_dio_mem_align > *align)
				*align = stx.stx_dio_mem_align;
		}
	}
#else
	(void)fd;
	(void)direct;
#endif
	if (*align < (1u << *shift))
		*align = 1u << *shift;
}

uint32_t ioe_file_punch_granule(int fd, uint64_t size, uint64_t blksize, unsigned shift)
{
	uint64_t gran = blksize >> shift;

	/* Punching a hole just past the end changes nothing, and tells whether
	 * the filesystem can (the probe OpenVMM's Linux blockdev path uses;
	 * docs/openvmm-compat.md §2.5). */
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)size, 1) !=
	    0)
		return 0;
	return gran ? (uint32_t)gran : 1;
}
