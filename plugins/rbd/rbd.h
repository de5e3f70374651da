/* SPDX-License-Identifier: MIT */
/* The rbd plugin's instance, shared by rbd.c (descriptor, open, I/O) and
 * conn.c (the cluster connection and its error messages). */
#ifndef DISKCORE_PLUGIN_RBD_H
#define DISKCORE_PLUGIN_RBD_H

#include <diskcore/plugin.h>
#include <pthread.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <stdbool.h>
#include <stdint.h>

/* What the spec names, parsed from POOL[/NAMESPACE]/IMAGE[@SNAP] and the
 * options. Strings point into `buf` or the options. */
struct rbd_target {
	char *buf;
	const char *pool, *ns, *image, *snap;
	const char *conf, *id, *keyring, *mon;
	unsigned timeout_s;
	char shown[512]; /* "pool/[ns/]image[@snap]", for messages */
};

struct rbd_inst {
	struct rbd_target t;
	rados_t cluster;
	rados_ioctx_t io;
	rbd_image_t image;
	struct dc_node *node;
	bool read_only;
	bool watching;
	uint64_t watch_handle;
	uint64_t size; /* bytes, live: the update watch refreshes it (atomic) */
	uint64_t features;
	uint64_t obj_size;
	uint64_t resize_events; /* update notifications that changed the size */
	char mon_host[256];
	/* reap.c: librbd's event socket and the reaper thread */
	int efd, ctl_fd;
	pthread_t reaper;
	bool reaper_started, stop;
	pthread_mutex_t qlock;
	unsigned nqueues, ndriven; /* open queues, and those driven (queue_poll) */
};

#define RBD_SHIFT 9
/* Segments passed to rbd_aio_readv/writev from the request's scratch; a
 * buffer in more pieces goes through one bounce buffer. */
#define RBD_MAX_IOV 16

/* io.c: a request's scratch (ctx_size). */
struct rbd_rctx {
	struct dc_req *req;
	struct rbd_inst *in;
	void *bounce;
	size_t len;
	bool fua_flush; /* the write is done; the flush that makes it FUA runs */
	struct iovec iov[RBD_MAX_IOV];
};

/* Parse the spec's field and options into t; -errno after dc_error(). */
int rbd_target_parse(const struct dc_open_args *a, struct rbd_target *t);
void rbd_target_free(struct rbd_target *t);

/* Connect to the cluster and open the pool (in->cluster, in->io), with the
 * bounded timeouts; -errno after dc_error() with a message that says which of
 * monitor, key or pool is at fault. */
int rbd_connect(struct rbd_inst *in);
/* Open the image or snapshot (in->image); -errno after dc_error(). */
int rbd_open_image(struct rbd_inst *in);
/* Undo both; safe on a partly opened instance. */
void rbd_disconnect(struct rbd_inst *in);

/* io.c */
void rbd_submit(void *inst, struct dc_req *req);
/* Finish the request of a completion librbd queued (any thread). */
void rbd_io_done(rbd_completion_t c);

/* map.c: extents() */
int rbd_extents(void *inst, struct dc_node *node, uint64_t sector, uint64_t count,
		uint64_t *run);

/* reap.c */
int rbd_reaper_start(struct rbd_inst *in);
void rbd_reaper_stop(struct rbd_inst *in);
/* Finish every completion librbd has queued; returns how many. */
int rbd_reap(struct rbd_inst *in);
int rbd_queue_open(void *inst, void **qctx);
void rbd_queue_close(void *inst, void *qctx);
int rbd_queue_poll(void *inst, void *qctx, int wake_fd, int timeout_ms);

#endif
