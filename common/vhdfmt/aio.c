/* SPDX-License-Identifier: MIT */
/* vhdfmt aio: the engine's file description and results (aio.h). */
#include "aio.h"

#include "ioengine/ioengine.h"
#include "vhdfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

int vhdfmt_reopen(int fd, const char *path, bool read_only)
{
	char self[64];
	int nfd;

	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	nfd = open(self, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (nfd < 0) {
		int err = errno;

		vhdfmt_err("%s: cannot reopen for the file engine: %s", path,
			   strerror(err));
		return -err;
	}
	return nfd;
}

int vhdfmt_engine_errno(int res, bool write)
{
	if (res == IOE_EOF)
		return write ? -ENOSPC : -ENODATA;
	return res;
}

void vhdfmt_complete(struct dc_req *req, int neg_errno)
{
	int rc;

	req->detail = 0;
	rc = vhdfmt_result(req, neg_errno);
	dc_complete_detail(req, rc, rc == DC_E_IO ? req->detail : 0);
}
