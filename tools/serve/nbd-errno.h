/* SPDX-License-Identifier: MIT */
/*
 * The errno an NBD server reports for a failed diskcore request, shared by
 * `diskctl serve` and the nbdkit plugin (docs/serve.md, "Errors").
 */
#ifndef DISKCORE_NBD_ERRNO_H
#define DISKCORE_NBD_ERRNO_H

#include <diskcore/diskcore.h>

#include <errno.h>
#include <stdbool.h>

/* result is 0 or a DC_E_* value (or -ENOMEM), detail the completion's detail;
 * write: the request was a write or write-zeroes, where a sector past the end
 * is "no space" rather than "invalid". */
static inline int nbd_dc_errno(int result, int detail, bool write)
{
	switch (result) {
	case 0:
		return 0;
	case DC_E_ILLEGAL_BLOCK:
		return write ? ENOSPC : EINVAL;
	case DC_E_INVALID_INPUT:
	case DC_E_UNSUPPORTED:
		return EINVAL;
	case DC_E_READ_ONLY:
		return EPERM;
	case -ENOMEM:
		return ENOMEM;
	case DC_E_IO:
		if (detail == ENOSPC || detail == EDQUOT || detail == EFBIG)
			return ENOSPC;
		return EIO;
	default:
		return EIO;
	}
}

#endif
