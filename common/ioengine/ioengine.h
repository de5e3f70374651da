/* SPDX-License-Identifier: MIT */
/* ioengine: asynchronous I/O on one file descriptor for the file-backed
 * plugins (blockdev, file; the image formats), on io_uring with the worker
 * pool as the fallback (docs/performance.md, "The file engine").
 *
 * The mode is chosen when a file is opened: io_uring when a ring can be made
 * and knows the operations used (io_uring_queue_init fails under seccomp or
 * kernel.io_uring_disabled), else the worker pool running blocking calls.
 * DISKCORE_IO_ENGINE=pool forces the pool for files that accept it.
 * DISKCORE_IO_COPY=1 (set by diskctl cp, convert and commit; never for a VMM)
 * runs buffered writes on the submitting thread, their done callback inside
 * ioe_submit(), and starts writeback as they go (engine.c, ioe_copy_write):
 * the submitter blocks for the write.
 *
 * On io_uring each consumer queue gets a ring. ioe_submit() runs on the
 * queue's thread (the plugin's submit()), prepares an SQE and never enters
 * the kernel: one engine thread, shared by every file, flushes and reaps the
 * rings it is told about through their eventfds, so bursts go to the kernel in
 * one io_uring_enter. A queue the consumer drives (dc_queue_wait(), the
 * plugin's queue_poll()) is submitted and reaped on the consumer's thread
 * instead, and none of its completions crosses a thread. Requests never fail
 * for lack of ring space: they wait on the queue and go out as others finish.
 *
 * A request's done callback runs exactly once, on the queue's thread, the
 * engine thread or a pool worker: it may only do what is allowed off the
 * queue's thread (dc_complete(), dc_child_submit(), ioe_submit(); plugin.h,
 * "Threads"), and takes a lock for state it shares with other requests. */
#ifndef DISKCORE_COMMON_IOENGINE_H
#define DISKCORE_COMMON_IOENGINE_H

#include <diskcore/plugin.h>

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#define IOE_INLINE_IOV 16

/* A read or write that met the end of the file inside its range (the file
 * shrank, or is shorter than the caller thought): a done result. */
#define IOE_EOF 1

enum ioe_op {
	IOE_READ = 1,
	IOE_WRITE,
	IOE_FLUSH,   /* fdatasync */
	IOE_PUNCH,   /* fallocate(PUNCH_HOLE | KEEP_SIZE) of [off, off + len) */
	IOE_DISCARD, /* BLKDISCARD of [off, off + len), on the worker pool */
};

struct ioe_req;
/* res: 0, IOE_EOF, or -errno. */
typedef void (*ioe_done_fn)(struct ioe_req *r, int res);

/* A request: the caller's scratch (a plugin's ctx), valid until done runs. */
struct ioe_req {
	/* Set by the caller before ioe_submit(). */
	uint8_t op;	   /* enum ioe_op */
	bool fua;	   /* IOE_WRITE: RWF_DSYNC */
	uint64_t off;	   /* bytes */
	uint64_t len;	   /* IOE_PUNCH, IOE_DISCARD: bytes */
	struct dc_buf buf; /* IOE_READ, IOE_WRITE: the data, buf.len bytes */
	ioe_done_fn done;
	/* The engine's. */
	struct ioe_req *next;
	struct ioe_file *f;
	struct iovec *iov; /* where the transfer stands */
	int iovcnt;
	uint8_t uop; /* IORING_OP_* */
	uint8_t tries;
	int rwflags;
	void *bounce;
	struct iovec *heap;
	uint64_t pos, left;
	int res;
	struct iovec inl[IOE_INLINE_IOV];
};

struct ioe_file;
struct ioe_queue;

/* How ioe_file_open() may choose. */
enum ioe_mode {
	IOE_AUTO = 0, /* io_uring, else the pool (DISKCORE_IO_ENGINE may force it) */
	IOE_URING,    /* io_uring or fail (blockdev) */
};

/* Open the engine on fd (not taken: the caller closes it after
 * ioe_file_close()). direct: fd is O_DIRECT and buffers must be aligned to
 * align bytes (else they are bounced). Returns 0, or -errno after dc_error(). */
int ioe_file_open(int fd, bool direct, size_t align, enum ioe_mode mode,
		  struct ioe_file **out);
void ioe_file_close(struct ioe_file *f);
/* "io_uring, one ring per queue" or "worker pool (why)", for describe(). */
const char *ioe_file_describe(const struct ioe_file *f);
bool ioe_file_uring(const struct ioe_file *f);

/* A consumer queue's state: queue_open() and queue_close() (every request
 * finished). */
int ioe_queue_open(struct ioe_file *f, struct ioe_queue **out);
void ioe_queue_close(struct ioe_queue *q);
/* The plugin's queue_poll() (plugin.h): submit, wait, reap on this thread. */
int ioe_queue_poll(struct ioe_queue *q, int wake_fd, int timeout_ms);

/* A plugin whose queues are engine queues on its one file f: its
 * queue_open() is one line, ioe_plugin_queue_open(f, qctx); the other two
 * are these functions themselves (.queue_close = ioe_plugin_queue_close,
 * .queue_poll = ioe_plugin_queue_poll; inst is not used). */
int ioe_plugin_queue_open(struct ioe_file *f, void **qctx);
void ioe_plugin_queue_close(void *inst, void *qctx);
int ioe_plugin_queue_poll(void *inst, void *qctx, int wake_fd, int timeout_ms);
/* Those three in a descriptor, the first by DC_CALLBACKS' convention:
 * IOE_PLUGIN_QUEUES(vhd) sets .queue_open = vhd_queue_open and the other two. */
#define IOE_PLUGIN_QUEUES(prefix)                                                 \
	.queue_open = prefix##_queue_open, .queue_close = ioe_plugin_queue_close, \
	.queue_poll = ioe_plugin_queue_poll

/* Start r on q: from q's thread (the plugin's submit() or a child's done
 * callback), or from a done callback on any thread, to chain the next step
 * of a request (an allocating write's metadata after its data). */
void ioe_submit(struct ioe_queue *q, struct ioe_req *r);

/* Run r on the calling thread with blocking calls (as the pool does); returns
 * what done would get. For a plugin's io() callback. */
int ioe_execute(struct ioe_file *f, struct ioe_req *r);

/* Run fn(arg) on the engine thread whenever fd is readable, from now until
 * ioe_watch_del() returns (which may be called from fn itself); keeps the
 * thread running. NULL after dc_error() when it cannot. */
struct ioe_watch;
struct ioe_watch *ioe_watch_add(int fd, void (*fn)(void *arg), void *arg);
void ioe_watch_del(struct ioe_watch *w);

/* extents() (plugin.h, ABI 1.1) of a regular file fd with 1 << shift byte
 * sectors, from lseek(SEEK_DATA/SEEK_HOLE): the run of [sector, sector +
 * count) that starts at sector in *run, and DC_EXTENT_HOLE | DC_EXTENT_ZERO
 * for a hole or 0 for data. A sector that holds any data is data; a file
 * system that cannot tell says data. A block device (device) is all data:
 * what a discard leaves is the device's business. Reads only the layout. */
int ioe_file_extents(int fd, bool device, unsigned shift, uint64_t sector, uint64_t count,
		     uint64_t *run);

/* The O_DIRECT geometry of the regular file fd: *shift the log2 of its
 * sector (9, or the filesystem's O_DIRECT offset alignment up to 64 KiB) and
 * *align the buffer alignment (at least a sector). Without direct: 9 and 512. */
void ioe_file_dio_align(int fd, bool direct, unsigned *shift, size_t *align);

/* Whether holes can be punched in the regular file fd of size bytes: the
 * unmap granule in 1 << shift byte sectors (blksize, st_blksize, rounded
 * down, at least 1), or 0 when the filesystem cannot (or fd is read-only). */
uint32_t ioe_file_punch_granule(int fd, uint64_t size, uint64_t blksize, unsigned shift);

#endif
