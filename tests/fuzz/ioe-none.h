/* SPDX-License-Identifier: MIT */
/* For a fuzz target that compiles a plugin in and calls its io() only, never
 * submit(): the file engine's entry points as stubs, so that neither the
 * engine nor liburing is built into the target. ioe_file_open() succeeds with
 * no file; queues cannot open. Include once, after the plugin's sources
 * (and common/ioengine/callbacks.c, which calls these). */
#ifndef DISKCORE_FUZZ_IOE_NONE_H
#define DISKCORE_FUZZ_IOE_NONE_H

#include "ioengine/ioengine.h"

#include <errno.h>

int ioe_file_open(int fd, bool direct, size_t align, enum ioe_mode mode,
		  struct ioe_file **out)
{
	(void)fd, (void)direct, (void)align, (void)mode;
	*out = NULL;
	return 0;
}

void ioe_file_close(struct ioe_file *f)
{
	(void)f;
}

const char *ioe_file_describe(const struct ioe_file *f)
{
	(void)f;
	return "none (fuzz target)";
}

int ioe_queue_open(struct ioe_file *f, struct ioe_queue **out)
{
	(void)f, (void)out;
	return -ENOSYS;
}

void ioe_queue_close(struct ioe_queue *q)
{
	(void)q;
}

int ioe_queue_poll(struct ioe_queue *q, int wake_fd, int timeout_ms)
{
	(void)q, (void)wake_fd, (void)timeout_ms;
	return -ENOSYS;
}

void ioe_submit(struct ioe_queue *q, struct ioe_req *r)
{
	(void)q, (void)r;
}

#endif
