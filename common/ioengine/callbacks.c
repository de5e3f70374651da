/* SPDX-License-Identifier: MIT */
/* ioengine: the queue callbacks (plugin.h: queue_open, queue_close,
 * queue_poll) of a plugin whose queues are engine queues on one file, so that
 * blockdev, file and the image formats do not each write the same glue. */
#include "ioengine.h"

int ioe_plugin_queue_open(struct ioe_file *f, void **qctx)
{
	return ioe_queue_open(f, (struct ioe_queue **)qctx);
}

void ioe_plugin_queue_close(void *inst, void *qctx)
{
	(void)inst;
	ioe_queue_close(qctx);
}

int ioe_plugin_queue_poll(void *inst, void *qctx, int wake_fd, int timeout_ms)
{
	(void)inst;
	return ioe_queue_poll(qctx, wake_fd, timeout_ms);
}
