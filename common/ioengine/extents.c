/* SPDX-License-Identifier: MIT */
/* ioengine: the allocation of a regular file's sectors from lseek(SEEK_DATA /
 * SEEK_HOLE), for the extents() callback (plugin.h, ABI 1.1) of the plugins
 * that serve a raw file (file, blockdev). */
#include "ioengine/ioengine.h"

#include <errno.h>
#include <unistd.h>

int ioe_file_extents(int fd, bool device, unsigned shift, uint64_t sector, uint64_t count,
		     uint64_t *run)
{
	uint64_t ss = UINT64_C(1) << shift, off = sector << shift,
		 end = off + (count << shift);
	off_t data, hole;

	*run = count;
	if (device)
		return 0;
	data = lseek(fd, (off_t)off, SEEK_DATA);
	if (data < 0)
		/* ENXIO: no data from off to the end of the file; anything else
		 * (a filesystem without SEEK_DATA): say data, never skip it. */
		return errno == ENXIO ? DC_EXTENT_HOLE | DC_EXTENT_ZERO : 0;
	if ((uint64_t)data >= off + ss) {
		/* A hole of whole sectors; a sector that data only partly
		 * fills is data. */
		if ((uint64_t)data < end)
			*run = ((uint64_t)data - off) >> shift;
		return DC_EXTENT_HOLE | DC_EXTENT_ZERO;
	}
	hole = lseek(fd, data, SEEK_HOLE);
	if (hole < 0 || (uint64_t)hole >= end)
		return 0;
	/* Data up to the sector the next hole starts in (rounded up). */
	*run = ((uint64_t)hole - off + ss - 1) >> shift;
	return 0;
}
