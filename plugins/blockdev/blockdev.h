/* SPDX-License-Identifier: MIT */
/* blockdev: a Linux block device or a regular file through io_uring
 * (docs/openvmm-compat.md §2.5).
 *
 * Reads, writes, flushes and hole punches go through the shared file engine
 * (common/ioengine: one ring per consumer queue, flushed and reaped by the
 * engine thread, or by the consumer's thread when it drives the queue with
 * dc_queue_wait()). blockdev insists on io_uring: it fails to open without
 * it, where file: falls back to the worker pool. Discards, ejects and
 * persistent reservations are blocking ioctls on the worker pool. A libudev
 * monitor of kernel uevents, watched on the engine thread, says when a device
 * was resized. */
#ifndef DISKCORE_PLUGIN_BLOCKDEV_H
#define DISKCORE_PLUGIN_BLOCKDEV_H

#include <diskcore/plugin.h>

#include "ioengine/ioengine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define BDEV_PR_CONFLICT_SAM 0x18  /* SAM status / PR_STS_RESERVATION_CONFLICT */
#define BDEV_PR_CONFLICT_NVME 0x83 /* NVMe generic status: reservation conflict */

struct bdev {
	int fd;
	char *path;
	struct dc_node *node;
	struct ioe_file *io;
	struct bdev *next; /* the devices watched for resize (uevent.c) */
	dev_t rdev;
	bool blk, direct, read_only, nvme, pr, watched;
	unsigned shift;
	size_t align;		  /* O_DIRECT: address and length alignment */
	_Atomic uint64_t sectors; /* live for devices, fixed for files */
	uint32_t gran;		  /* discard granularity in sectors, 0: none */
	uint32_t nsid;
	uint8_t rescap;
};

/* A request's scratch. */
struct bdev_rq {
	struct ioe_req io; /* first: the engine's done callback finds r */
	struct dc_req *req;
	struct bdev *b;
	int result, detail;
};

/* rq.c: a request's result and completion */
void bdev_rq_errno(struct bdev_rq *r, int err);
void bdev_rq_done(struct bdev_rq *r);

/* io.c: requests */
uint64_t bdev_sector_count(void *inst);
void bdev_submit(void *inst, struct dc_req *req);
int bdev_queue_open(void *inst, void **qctx);

/* uevent.c: the resize watcher */
void bdev_watch(struct bdev *b);
void bdev_unwatch(struct bdev *b);

/* pr.c: persistent reservations (a worker pool job) */
void bdev_pool_pr(void *arg);

#endif
