/* SPDX-License-Identifier: MIT */
/*
 * diskctl serve, internal interface. The protocol half (wire.c, handshake.c,
 * reqs.c, transmit.c, conn.c) runs one NBD connection on a file descriptor and
 * knows nothing of listening sockets, threads or the command line, so a fuzz
 * target can drive it on a socketpair (tests/fuzz/fuzz-serve.c). listen.c and
 * main.c are the server around it.
 */
#ifndef DISKCTL_SERVE_INT_H
#define DISKCTL_SERVE_INT_H

#include <diskcore/diskcore.h>

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* --- protocol constants (values from the NBD protocol document) ------------ */

#define NBD_MAGIC UINT64_C(0x4e42444d41474943)	  /* "NBDMAGIC" */
#define NBD_IHAVEOPT UINT64_C(0x49484156454f5054) /* "IHAVEOPT" */
#define NBD_OPT_REPLY_MAGIC UINT64_C(0x3e889045565a9)
#define NBD_REQUEST_MAGIC UINT32_C(0x25609513)
#define NBD_SIMPLE_REPLY_MAGIC UINT32_C(0x67446698)
#define NBD_STRUCTURED_REPLY_MAGIC UINT32_C(0x668e33ef)

/* handshake flags (server) and client flags */
#define NBD_FLAG_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_NO_ZEROES (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES (1u << 1)

/* transmission flags */
#define NBD_FLAG_HAS_FLAGS (1u << 0)
#define NBD_FLAG_READ_ONLY (1u << 1)
#define NBD_FLAG_SEND_FLUSH (1u << 2)
#define NBD_FLAG_SEND_FUA (1u << 3)
#define NBD_FLAG_SEND_TRIM (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_CAN_MULTI_CONN (1u << 8)
#define NBD_FLAG_SEND_FAST_ZERO (1u << 11)

/* Options, info types and commands: runs of consecutive numbers, each run
 * starting at its value in the protocol. */
enum {
	NBD_OPT_EXPORT_NAME = 1,
	NBD_OPT_ABORT,
	NBD_OPT_LIST,
	NBD_OPT_INFO = 6,
	NBD_OPT_GO,
	NBD_OPT_STRUCTURED_REPLY,
	NBD_OPT_LIST_META_CONTEXT,
	NBD_OPT_SET_META_CONTEXT,
};

#define NBD_REP_ACK UINT32_C(1)
#define NBD_REP_SERVER UINT32_C(2)
#define NBD_REP_INFO UINT32_C(3)
#define NBD_REP_META_CONTEXT UINT32_C(4)
#define NBD_REP_ERR_UNSUP UINT32_C(0x80000001)
#define NBD_REP_ERR_INVALID UINT32_C(0x80000003)
#define NBD_REP_ERR_UNKNOWN UINT32_C(0x80000006)

enum { NBD_INFO_EXPORT, NBD_INFO_NAME, NBD_INFO_DESCRIPTION, NBD_INFO_BLOCK_SIZE };

enum {
	NBD_CMD_READ,
	NBD_CMD_WRITE,
	NBD_CMD_DISC,
	NBD_CMD_FLUSH,
	NBD_CMD_TRIM,
	NBD_CMD_WRITE_ZEROES = 6,
	NBD_CMD_BLOCK_STATUS,
};
#define NBD_CMD_FLAG_FUA (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE (1u << 1)
#define NBD_CMD_FLAG_REQ_ONE (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

/* structured replies */
#define NBD_REPLY_FLAG_DONE (1u << 0)
enum {
	NBD_REPLY_TYPE_NONE = 0,
	NBD_REPLY_TYPE_OFFSET_DATA = 1,
	NBD_REPLY_TYPE_BLOCK_STATUS = 5,
	NBD_REPLY_TYPE_ERROR = (1 << 15) + 1,
};
/* The one metadata context, base:allocation, and its id on the wire. */
#define SERVE_META_ALLOC "base:allocation"
#define SERVE_META_ALLOC_ID 1u
#define SERVE_MAX_EXTENTS 512 /* descriptors per block status reply */

/* error values on the wire (fixed by the protocol, not the host's errno) */
#define NBD_EPERM 1
#define NBD_EIO 5
#define NBD_ENOMEM 12
#define NBD_EINVAL 22
#define NBD_ENOSPC 28
#define NBD_ENOTSUP 95

/* --- limits --------------------------------------------------------------- */

#define SERVE_MAX_REQ (32u << 20) /* largest read/write; advertised maximum */
/* A refused write's payload up to this size is read and dropped to keep the
 * stream; a larger one ends the connection (the protocol allows a hard
 * disconnect for a payload that large). */
#define SERVE_MAX_SKIP (64u << 20)
#define SERVE_MAX_OPT 65536u   /* largest option payload kept */
#define SERVE_MAX_OPTIONS 4096 /* options per handshake */
#define SERVE_MAX_INFLIGHT 64  /* requests per connection */
/* Request buffers one connection may hold, in flight and idle together: the
 * per-connection memory bound. Must exceed the largest single buffer. */
#define SERVE_CONN_BUF_BYTES (96u << 20)
#define SERVE_ZERO_CHUNK (1u << 20) /* one iovec of the shared zero buffer */
#define SERVE_ZERO_IOVS (SERVE_MAX_REQ / SERVE_ZERO_CHUNK)
#define SERVE_ALIGN 4096 /* buffers suit O_DIRECT backends */
#define SERVE_REAP 32
#define SERVE_REQ_HDR 28 /* a request header's bytes */
/* A driven queue (transmit.c): requests read before the chain is given them. */
#define SERVE_BURST 8
/* Idle buffers kept per connection: as many as requests in flight, so a
 * client that keeps 64 requests busy (nbdcopy) reuses every buffer instead of
 * faulting fresh pages in for most of its reads. */
#define SERVE_CACHE SERVE_MAX_INFLIGHT
#define SERVE_CACHE_BYTES (32u << 20)
#define SERVE_MIN_BUF (64u << 10)
#define SERVE_SNDBUF (1 << 20) /* a unix socket's send buffer (conn.c) */

/* --- state ---------------------------------------------------------------- */

/* The export, shared by every connection; read-only once set up. */
struct serve_srv {
	dc_disk *disk;
	struct dc_info info;
	uint64_t size; /* export size in bytes, fixed at open */
	uint32_t ss;   /* sector size */
	uint16_t tflags;
	bool ro;
	bool verbose;
	const char *export_name;
	char desc[64];
	void *zeroes; /* SERVE_ZERO_CHUNK bytes, never written */

	pthread_mutex_t lock; /* the connection flags marked "lock" */
};

struct serve_conn {
	struct serve_srv *srv;
	unsigned id;
	int fd;
	dc_queue *q;
	int qfd;	 /* dc_queue_fd(), or -1 when q is driven by dc_queue_wait() */
	uint8_t *optbuf; /* during the handshake only */
	bool no_zeroes;
	bool structured; /* NBD_OPT_STRUCTURED_REPLY was acknowledged */
	bool meta_alloc; /* base:allocation was selected */
	bool closing;	 /* read no more requests */
	bool broken;	 /* the socket failed: replies are dropped */
	unsigned inflight;
	size_t buf_bytes; /* capacity of every buffer held, in flight or idle */
	/* Idle request buffers: reusing them avoids an mmap, page faults and an
	 * munmap (with its TLB shootdown) per large request. */
	void *cache[SERVE_CACHE];
	size_t cache_cap[SERVE_CACHE];
	int ncache;
	size_t cache_bytes;

	/* Simple replies without data held while serve_reap() runs, sent in one
	 * sendmsg(): one wake-up of the client for a batch of write replies. */
	bool batching;
	unsigned nbatch;
	uint8_t batch[SERVE_REAP * 16];

	bool transmitting; /* lock: the handshake is over */
	bool finished;	   /* lock: serve_conn_run() returned */

	/* main.c's bookkeeping */
	struct serve_conn *next;
	pthread_t thread;
	uint64_t deadline_ms; /* the handshake must be over by then */
	bool timed_out;
};

/* One NBD request from the moment it was read until its reply. */
struct serve_req {
	uint64_t handle;
	uint64_t off;
	uint32_t len;
	uint16_t cmd;
	uint16_t flags;
	void *buf; /* sector-aligned bounce of [off - skip, ...) */
	size_t buflen;
	size_t bufcap;
	size_t skip;	     /* where the client's bytes start in buf */
	bool then_flush;     /* flush after the operation (FUA on trim/zero-by-unmap) */
	bool zero_unmap;     /* write-zeroes done by unmap; fall back to writing */
	uint64_t zcur, zend; /* write-zeroes by writing: next and end sector */
	struct iovec iov[SERVE_ZERO_IOVS + 1];
};

/* wire.c */
extern bool serve_quiet; /* no log lines at all (the fuzz target) */
void serve_log(const struct serve_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void serve_put16(uint8_t *p, uint16_t v);
void serve_put32(uint8_t *p, uint32_t v);
void serve_put64(uint8_t *p, uint64_t v);
uint16_t serve_get16(const uint8_t *p);
uint32_t serve_get32(const uint8_t *p);
uint64_t serve_get64(const uint8_t *p);
int serve_recv(struct serve_conn *c, void *buf, size_t n);
int serve_recv_nowait(struct serve_conn *c, void *buf, size_t n);
int serve_wait_socket(struct serve_conn *c);
int serve_skip(struct serve_conn *c, uint64_t n);
int serve_sendv(struct serve_conn *c, struct iovec *iov, int iovcnt);
int serve_batch_flush(struct serve_conn *c);
int serve_send(struct serve_conn *c, const void *buf, size_t n);

/* handshake.c: 0 to enter transmission, -1 to drop the connection. */
int serve_handshake(struct serve_conn *c);

/* reqs.c: request buffers, submission and completion */
struct serve_req *serve_req_new(struct serve_conn *c, const struct serve_req *hdr,
				size_t buflen);
void serve_req_free(struct serve_conn *c, struct serve_req *r);
void serve_reply(struct serve_conn *c, uint64_t handle, uint32_t err, const void *data,
		 size_t len);
void serve_chunk(struct serve_conn *c, uint64_t handle, uint16_t type, const void *p,
		 size_t plen, const void *data, size_t len);
void serve_reply_read(struct serve_conn *c, uint64_t handle, uint32_t err, uint64_t off,
		      const void *data, size_t len);
void serve_finish(struct serve_conn *c, struct serve_req *r, uint32_t err);
uint32_t serve_nbd_error(int result, int detail, uint16_t cmd);
int serve_submit(struct serve_conn *c, struct serve_req *r, uint32_t op, uint32_t flags,
		 uint64_t sector, uint64_t count, int iovcnt);
int serve_zero_next(struct serve_conn *c, struct serve_req *r);
void serve_start(struct serve_conn *c, struct serve_req *r, int rc);
void serve_reap(struct serve_conn *c);
int serve_wait(struct serve_conn *c, int timeout_ms);
int serve_wait_fd(struct serve_conn *c, int fd, int timeout_ms);
void serve_drain(struct serve_conn *c, unsigned keep);
void serve_bufs_free(struct serve_conn *c);

/* transmit.c: serve requests until the client leaves or the socket fails. */
void serve_transmit(struct serve_conn *c);

/* conn.c */
int serve_srv_init(struct serve_srv *s, dc_disk *disk, bool ro, const char *export_name);
void serve_srv_fini(struct serve_srv *s);
/* Run one connection on c->fd (c->srv, c->id and c->fd set, the rest zero) to
 * its end; the caller closes the fd. */
void serve_conn_run(struct serve_conn *c);

/* listen.c: a listening socket, or -1 after logging why. */
struct serve_unix {
	const char *path;
	dev_t dev; /* the socket we bound, to remove only our own */
	ino_t ino;
};
int serve_listen_unix(struct serve_unix *u);
void serve_unlink_unix(const struct serve_unix *u);
/* Only a loopback address unless insecure (--insecure-listen). */
int serve_listen_tcp(const char *addr, const char *port, bool insecure);

#endif
