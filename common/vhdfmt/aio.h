/* SPDX-License-Identifier: MIT */
/* vhdfmt aio: what an image plugin needs to put its data I/O on the file
 * engine (common/ioengine): a file description of the engine's own, and the
 * engine's results as request results. */
#ifndef DISKCORE_COMMON_VHDFMT_AIO_H
#define DISKCORE_COMMON_VHDFMT_AIO_H

#include <diskcore/plugin.h>

#include <stdbool.h>

/* A new open file description of the file open as fd (path for messages),
 * read-only or read-write. The engine gets one of its own: an io_uring ring
 * may hold its files briefly after the process exits, and the image's flock
 * (on fd's description) must not outlive the process with it. Returns the
 * new fd (close-on-exec), or -errno after a message. */
int vhdfmt_reopen(int fd, const char *path, bool read_only);

/* The file engine (IOE_AUTO) on a new description (vhdfmt_reopen) of the
 * image open as fd: *aio_fd and *ioe, both closed by vhdfmt_engine_close()
 * (and set to -1 and NULL on failure). Returns 0, or -errno after a
 * message. In aio_open.c: a user links common/ioengine. */
struct ioe_file;
int vhdfmt_engine_open(int fd, const char *path, bool read_only, int *aio_fd,
		       struct ioe_file **ioe);
void vhdfmt_engine_close(int *aio_fd, struct ioe_file **ioe);

/* An engine result (0, IOE_EOF or -errno) as a -errno: the file ending inside
 * the range is -ENODATA for a read, -ENOSPC for a write (vhdfmt_xfer()). */
int vhdfmt_engine_errno(int res, bool write);

/* Complete req with vhdfmt_result(req, neg_errno), keeping the errno as the
 * detail of an I/O error. */
void vhdfmt_complete(struct dc_req *req, int neg_errno);

#endif
