/* SPDX-License-Identifier: MIT */
/* vhdfmt aio: the file engine on a description of its own (aio.h). Apart
 * from aio.c so that what links only those helpers needs no engine. */
#include "aio.h"
#include "open.h"

#include "ioengine/ioengine.h"

#include <unistd.h>

int vhdfmt_engine_open(int fd, const char *path, bool read_only, int *aio_fd,
		       struct ioe_file **ioe)
{
	int ret;

	*ioe = NULL;
	*aio_fd = vhdfmt_reopen(fd, path, read_only);
	if (*aio_fd < 0)
		return *aio_fd;
	ret = ioe_file_open(*aio_fd, false, 0, IOE_AUTO, ioe);
	if (ret)
		vhdfmt_engine_close(aio_fd, ioe);
	return ret;
}

int vhdfmt_open_engine(struct vhdfmt_image *img, bool read_only)
{
	return vhdfmt_engine_open(img->fd, img->path, read_only, &img->aio_fd, &img->ioe);
}

void vhdfmt_engine_close(int *aio_fd, struct ioe_file **ioe)
{
	ioe_file_close(*ioe);
	*ioe = NULL;
	if (*aio_fd >= 0)
		close(*aio_fd);
	*aio_fd = -1;
}
