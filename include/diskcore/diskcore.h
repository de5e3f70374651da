/* SPDX-License-Identifier: MIT */
/**
 * @file diskcore.h
 * The consumer API of libdiskcore: open a disk from a spec string, submit I/O.
 *
 * Conventions (liburing style):
 *  - Every call that can fail returns 0 (or a non-negative value) on success and a
 *    negative errno on failure. Control-path failures (open, parse, queue setup) also
 *    leave a human message naming the spec element at fault in dc_last_error().
 *  - I/O results are negative errnos from a fixed set, one per disk error class
 *    (see DC_E_* below); any other errno a plugin reports is folded into DC_E_IO and
 *    kept as the completion's detail. dc_strerror() names them.
 *  - Sector numbers are 64-bit and come from the guest: any value is safe to pass.
 *
 * Threads: a dc_disk may be used from any number of threads at once. A dc_queue
 * is used by one thread at a time (one queue per vCPU or I/O thread): its
 * dc_submit(), dc_queue_reap() and dc_queue_wait() calls never overlap.
 * Completion callbacks run exactly once, possibly inline inside dc_submit().
 * On a DC_QUEUE_POLL queue every completion, and all the chain's work behind
 * it, runs inside the consumer's own calls on the queue (dc_queue_reap(),
 * dc_queue_wait(), dc_submit()). On a callback queue a completion that ends
 * on another thread runs there while the consumer is not inside a call on the
 * queue, and is handed to the consumer's call otherwise; callbacks of one
 * queue never run concurrently with each other.
 *
 * Growth: structs that cross the ABI end in reserved fields that must be zero
 * (dc_io) or are zero-filled by the core (dc_info, dc_completion); a later
 * minor version gives them meaning with zero as the old behaviour.
 */
#ifndef DISKCORE_DISKCORE_H
#define DISKCORE_DISKCORE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The ABI this header describes: major = soname (libdiskcore.so.1), minor =
 *  symbol-version node (DISKCORE_1.0). docs/abi.md. */
#define DC_VERSION_MAJOR 1
#define DC_VERSION_MINOR 3
#define DC_VERSION(major, minor) (((uint32_t)(major) << 16) | (uint32_t)(minor))

typedef struct dc_disk dc_disk;
typedef struct dc_queue dc_queue;

/** I/O result classes (negative errnos). They map 1:1 onto OpenVMM's DiskError. */
#define DC_E_ILLEGAL_BLOCK (-ERANGE) /**< sector range outside the disk */
#define DC_E_INVALID_INPUT (-EINVAL) /**< invalid request field */
#define DC_E_IO (-EIO)		     /**< unrecovered I/O error (detail: errno) */
#define DC_E_MEDIUM (-EBADMSG)	     /**< reportable medium error (detail: DC_MEDIUM_*) */
#define DC_E_MEMORY_ACCESS (-EFAULT) /**< buffer could not be accessed */
#define DC_E_READ_ONLY (-EROFS)	     /**< write to a read-only disk */
#define DC_E_RESERVATION_CONFLICT (-EBADE) /**< persistent-reservation conflict */
#define DC_E_ABORTED_PREEMPT (-ECANCELED)  /**< aborted by PREEMPT AND ABORT */
#define DC_E_UNSUPPORTED_EJECT (-ENOTTY)   /**< eject not supported */
#define DC_E_UNSUPPORTED (-EOPNOTSUPP)	   /**< operation not supported by this chain */

/** Medium error details (dc_completion.detail when result == DC_E_MEDIUM). */
enum dc_medium_error {
	DC_MEDIUM_UNRECOVERED_READ = 1,
	DC_MEDIUM_WRITE_FAULT = 2,
	DC_MEDIUM_GUARD_CHECK = 3,
	DC_MEDIUM_APP_TAG_CHECK = 4,
	DC_MEDIUM_REF_TAG_CHECK = 5,
};

/** Operations. Values are stable ABI; new ones are only appended. */
enum dc_op {
	DC_OP_READ = 0,
	DC_OP_WRITE = 1,
	DC_OP_FLUSH = 2,
	DC_OP_UNMAP = 3,
	DC_OP_EJECT = 4,
	DC_OP_PR_CAPS = 5,   /**< fill pr->caps */
	DC_OP_PR_REPORT = 6, /**< fill pr->report */
	DC_OP_PR_REGISTER = 7,
	DC_OP_PR_RESERVE = 8,
	DC_OP_PR_RELEASE = 9,
	DC_OP_PR_CLEAR = 10,
	DC_OP_PR_PREEMPT = 11,
	DC_OP__COUNT
};
#define DC_OP_BIT(op) (UINT64_C(1) << (op))
#define DC_OPS_PR                                                     \
	(DC_OP_BIT(DC_OP_PR_CAPS) | DC_OP_BIT(DC_OP_PR_REPORT) |      \
	 DC_OP_BIT(DC_OP_PR_REGISTER) | DC_OP_BIT(DC_OP_PR_RESERVE) | \
	 DC_OP_BIT(DC_OP_PR_RELEASE) | DC_OP_BIT(DC_OP_PR_CLEAR) |    \
	 DC_OP_BIT(DC_OP_PR_PREEMPT))
/** The data ops of a read-write disk. */
#define DC_OPS_RW                                                                  \
	(DC_OP_BIT(DC_OP_READ) | DC_OP_BIT(DC_OP_WRITE) | DC_OP_BIT(DC_OP_FLUSH) | \
	 DC_OP_BIT(DC_OP_UNMAP))

/** Request flags. */
#define DC_IO_FUA (1u << 0)		 /**< write: force unit access */
#define DC_IO_BLOCK_LEVEL_ONLY (1u << 1) /**< unmap: SCSI block-level-only hint */

/** How unmapped sectors read back. */
enum dc_unmap_behavior {
	DC_UNMAP_UNSPECIFIED = 0, /**< contents may change, not necessarily to zero */
	DC_UNMAP_IGNORED = 1,	  /**< unmap is a no-op ("not supported") */
	DC_UNMAP_ZEROES = 2,	  /**< unmapped sectors read as zero */
};

/** Persistent reservation types (Linux PR_* values). */
enum dc_pr_type {
	DC_PR_WRITE_EXCLUSIVE = 1,
	DC_PR_EXCLUSIVE_ACCESS = 2,
	DC_PR_WRITE_EXCLUSIVE_REG_ONLY = 3,
	DC_PR_EXCLUSIVE_ACCESS_REG_ONLY = 4,
	DC_PR_WRITE_EXCLUSIVE_ALL_REGS = 5,
	DC_PR_EXCLUSIVE_ACCESS_ALL_REGS = 6,
};

/** Reservation capabilities: bit (1 << type) per supported type, plus PTPL. */
struct dc_pr_caps {
	uint32_t types;
	bool persist_through_power_loss;
};

struct dc_pr_controller {
	uint64_t key;
	uint8_t host_id[16];
	uint32_t host_id_len;
	uint16_t controller_id;
	bool holds_reservation;
};

/** Reservation report. The caller provides `controllers` with room for
 *  `max_controllers`; `ncontrollers` is set to the real count, which may exceed it. */
struct dc_pr_report {
	uint32_t generation;
	uint32_t reservation_type; /**< 0 when nothing is reserved */
	bool persist_through_power_loss;
	uint32_t ncontrollers;
	uint32_t max_controllers;
	struct dc_pr_controller *controllers;
};

/** Arguments of the DC_OP_PR_* operations. */
struct dc_pr_args {
	uint64_t key;	  /**< current reservation key */
	uint64_t new_key; /**< register: new key (0 unregisters); preempt: key to preempt */
	uint32_t type;	  /**< enum dc_pr_type */
	bool ignore_key; /**< register: REGISTER AND IGNORE EXISTING KEY */
	int8_t ptpl;	 /**< register: -1 no change, 0 clear, 1 set */
	bool abort;	 /**< preempt: PREEMPT AND ABORT */
	struct dc_pr_caps *caps;
	struct dc_pr_report *report;
};

/** Disk metadata. Everything but sector_count is constant for the disk's life. */
struct dc_info {
	uint64_t sector_count;
	uint32_t sector_size;	       /**< logical, power of two >= 512 */
	uint32_t physical_sector_size; /**< power of two >= sector_size */
	uint32_t optimal_unmap_sectors;
	uint32_t unmap_behavior; /**< enum dc_unmap_behavior */
	uint32_t flags;		 /**< DC_INFO_* */
	uint8_t disk_id[16];	 /**< valid with DC_INFO_HAS_DISK_ID */
	char disk_type[24];	 /**< diagnostic name: "file", "layered", ... */
	uint32_t reserved[8];	 /**< zero */
};
#define DC_INFO_READ_ONLY (1u << 0)
#define DC_INFO_FUA_RESPECTED (1u << 1)
#define DC_INFO_HAS_DISK_ID (1u << 2)
#define DC_INFO_PR (1u << 3)		 /**< persistent reservations available */
#define DC_INFO_CAN_READ_CACHE (1u << 4) /**< layers: supports write-no-overwrite */
#define DC_INFO_EJECT (1u << 5)		 /**< eject is implemented */

/** One finished request, as dc_queue_reap() returns it. */
struct dc_completion {
	void *user_data;
	int result; /**< 0 or a DC_E_* value */
	int detail; /**< errno for DC_E_IO, enum dc_medium_error for DC_E_MEDIUM */
	uint32_t reserved[2]; /**< zero */
};

typedef void (*dc_complete_fn)(const struct dc_completion *c);

/** An I/O request as the consumer describes it. The core copies what it needs:
 *  the struct may be reused once dc_submit() returns; the iovec array and the
 *  buffers (and pr) must stay valid until completion. */
struct dc_io {
	uint32_t op;	 /**< enum dc_op */
	uint32_t flags;	 /**< DC_IO_* */
	uint64_t sector; /**< first sector */
	uint64_t count;	 /**< unmap: sector count; read/write: derived from the iovecs */
	const struct iovec *iov;
	int iovcnt;
	struct dc_pr_args *pr;
	dc_complete_fn cb; /**< may be NULL for a DC_QUEUE_POLL queue */
	void *user_data;
	uint64_t reserved[2]; /**< must be zero (-EINVAL otherwise) */
};

/** The version of the running library, DC_VERSION(major, minor): a consumer
 *  built against a newer minor checks it before using what that minor added. */
uint32_t dc_version(void);

/* --- Opening disks ------------------------------------------------------ */

#define DC_OPEN_READ_ONLY (1u << 0)
/** With DC_OPEN_READ_ONLY only (ABI 1.1): open images without the locks
 *  that keep out writers of other processes, to look at an image a VMM has
 *  open (`diskctl info -U`). What is read may be changing underneath. */
#define DC_OPEN_FORCE_SHARE (1u << 1)

/** Open the chain a spec string describes, e.g. "delay:1:memdiff:file:/x.img".
 *  Returns 0 and sets *out, or -errno with dc_last_error() set. */
int dc_open(const char *spec, uint32_t flags, dc_disk **out);
/** Close a disk. All queues must be closed and all I/O completed first. */
void dc_close(dc_disk *disk);

/** The message of the last failed control-path call on this thread. */
const char *dc_last_error(void);
/** A static description of a result code ("illegal block", ...). */
const char *dc_strerror(int result);

/** Metadata: a snapshot taken at open, with the live sector count. */
void dc_get_info(dc_disk *disk, struct dc_info *info);
uint64_t dc_sector_count(dc_disk *disk);
uint32_t dc_sector_size(dc_disk *disk);

/** Visit the chain top-down (depth first), for diagnostics: depth, the plugin
 *  name, the spec form that opened it, its metadata, and key/value details the
 *  plugin chose to describe (never secrets). Returns what visit returns, if not 0. */
typedef int (*dc_describe_fn)(void *arg, int depth, const char *plugin, const char *form,
			      const struct dc_info *info, const char *key,
			      const char *value);
int dc_describe(dc_disk *disk, dc_describe_fn visit, void *arg);

/* --- Queues and asynchronous I/O ---------------------------------------- */

/** Completions are collected and signalled through dc_queue_fd() instead of
 *  calling dc_io.cb; take them with dc_queue_reap(). */
#define DC_QUEUE_POLL (1u << 0)
/** ABI 1.3. The queue stays on the thread that opens it: every call on it,
 *  dc_queue_close() included, comes from that thread. Elements may then bind
 *  kernel state to the thread: with DC_QUEUE_POLL and dc_queue_wait() from the
 *  first request, a backend on io_uring reaps in a single-issuer ring that
 *  runs completions only when the thread waits (less kernel work per request;
 *  docs/performance.md, "O_DIRECT against fio"). Without the flag a queue may
 *  move between threads whose calls do not overlap. */
#define DC_QUEUE_THREAD (1u << 1)

int dc_queue_open(dc_disk *disk, uint32_t flags, dc_queue **out);
/** Close a queue; every request submitted on it must have completed, but for
 *  requests an element holds until its queue closes (fault:'s hang rules):
 *  those complete inside dc_queue_close() (a callback runs there; a
 *  DC_QUEUE_POLL queue's completion is discarded). */
void dc_queue_close(dc_queue *q);
/** An eventfd that becomes readable when a DC_QUEUE_POLL queue has completions;
 *  -EINVAL for a queue without DC_QUEUE_POLL, -EBUSY once dc_queue_wait() drives
 *  q (dc_queue_pollers() > 0): the two ways of waiting exclude each other. A
 *  completion that a reap took before its signal arrived leaves the fd readable
 *  once with nothing to reap; the next dc_queue_reap() clears it. */
int dc_queue_fd(dc_queue *q);
/** Take up to max completions; returns how many (0 when none). Never blocks. */
int dc_queue_reap(dc_queue *q, struct dc_completion *out, int max);
/** Submit one request. Returns 0 when it was accepted (its completion will be
 *  delivered exactly once) or -errno when it was not (no completion follows). */
int dc_submit(dc_queue *q, const struct dc_io *io);
/** Requests submitted on q and not yet delivered. */
unsigned dc_queue_inflight(dc_queue *q);

/**
 * Drive a DC_QUEUE_POLL queue from its own thread: reap completions here and,
 * when there are none yet, sleep until one arrives.
 *
 * Elements of the chain that can (a backend on io_uring: blockdev) then take
 * their completions on the calling thread, inside the system call that also
 * hands them the requests submitted since the last call, instead of on a
 * thread of their own; the rest of the chain delivers as usual and wakes the
 * call. Completions it delivers run their dc_io.cb here (a request submitted
 * with a callback) or wait for dc_queue_reap() (a request without one).
 *
 * Once dc_queue_wait() has been called on q, q is driven by it: requests
 * submitted on q may wait for the next dc_queue_wait() call to reach the
 * device, and their completions may only be found by one. Keep calling it
 * (timeout_ms 0 polls without sleeping) while q has requests in flight; a
 * consumer that waits on dc_queue_fd() instead must never call it. Requests
 * submitted before the first call may complete on another thread: call
 * dc_queue_wait(q, 0) once before the first dc_submit() to drive q from the
 * start.
 *
 * @param q           a queue opened with DC_QUEUE_POLL
 * @param timeout_ms  how long to sleep when nothing has completed: 0 never,
 *                    -1 until something does
 * @return the number of q's requests this call completed on the calling
 *         thread (their callbacks have run, or they wait in dc_queue_reap());
 *         0 when the timeout passed, or when it woke because completions
 *         arrived on another thread (see dc_queue_reap()); -EINVAL when q is
 *         not a DC_QUEUE_POLL queue or the call is made from inside a
 *         callback that dc_queue_wait() runs; -EBUSY when q has a poller and
 *         dc_queue_fd() was called on it; another -errno when an element
 *         failed to wait.
 *
 * Threads: only the thread that submits on q may call it; a callback it runs
 * may submit on q, but not close it. A callback that runs on another thread
 * wakes a sleeping call; one that ran before the call began does not, so a
 * consumer that mixes callbacks and reaping should look at its own state
 * between calls. Completions this call queues for dc_queue_reap() do not make
 * dc_queue_fd() readable: its return value says they are there.
 */
int dc_queue_wait(dc_queue *q, int timeout_ms);
/**
 * ABI 1.2. dc_queue_wait() that also returns when fd becomes readable, so one
 * thread can drive q and serve a socket (or any pollable fd) without a
 * timeout to look at it: it returns the number of q's requests it completed,
 * 0 when it woke for fd (or the timeout passed); fd -1: dc_queue_wait().
 * The fd stays registered with q until a later call names another; closing
 * it first is the caller's to avoid (pass -1 before closing it).
 */
int dc_queue_wait_fd(dc_queue *q, int fd, int timeout_ms);
/** How many elements of q's chain reap inside dc_queue_wait() on the calling
 *  thread: 1, or 0 when none can, or several could (one thread cannot sleep
 *  in several rings; their own threads reap). With 0, dc_queue_wait() sleeps
 *  on dc_queue_fd() and gains nothing over it. */
unsigned dc_queue_pollers(dc_queue *q);

/* --- Blocking convenience calls (an implicit queue per thread) ---------- */

int dc_read(dc_disk *disk, uint64_t sector, void *buf, size_t len);
int dc_write(dc_disk *disk, uint64_t sector, const void *buf, size_t len, uint32_t flags);
int dc_readv(dc_disk *disk, uint64_t sector, const struct iovec *iov, int iovcnt);
int dc_writev(dc_disk *disk, uint64_t sector, const struct iovec *iov, int iovcnt,
	      uint32_t flags);
int dc_flush(dc_disk *disk);
int dc_unmap(dc_disk *disk, uint64_t sector, uint64_t count, uint32_t flags);
int dc_eject(dc_disk *disk);
/** Any op, blocking; detail (may be NULL) receives the completion's detail. */
int dc_execute(dc_disk *disk, const struct dc_io *io, int *detail);

int dc_pr_caps(dc_disk *disk, struct dc_pr_caps *caps);
int dc_pr_report(dc_disk *disk, struct dc_pr_report *report);
int dc_pr_register(dc_disk *disk, const uint64_t *current_key, uint64_t new_key,
		   int ptpl);
int dc_pr_reserve(dc_disk *disk, uint64_t key, uint32_t type);
int dc_pr_release(dc_disk *disk, uint64_t key, uint32_t type);
int dc_pr_clear(dc_disk *disk, uint64_t key);
int dc_pr_preempt(dc_disk *disk, uint64_t key, uint64_t preempt_key, uint32_t type,
		  bool abort);

/* --- Resize ------------------------------------------------------------- */

/** Wait until the sector count differs from known_count or timeout_ms passes
 *  (-1: forever). Returns 0 with *count set, or -ETIMEDOUT. */
int dc_wait_resize(dc_disk *disk, uint64_t known_count, int timeout_ms, uint64_t *count);
/** An eventfd that becomes readable each time the disk's size changes (read it
 *  to rearm). Owned by the disk. */
int dc_resize_fd(dc_disk *disk);
/** Ask the disk to change size (layers that support it, e.g. mem:). */
int dc_resize(dc_disk *disk, uint64_t new_sector_count);

/* --- Allocation map (ABI 1.1) ------------------------------------------ */

/** Extent flags; the same bits as NBD's base:allocation context. */
#define DC_EXTENT_HOLE (1u << 0) /**< no storage is allocated behind it */
#define DC_EXTENT_ZERO (1u << 1) /**< it reads as zeroes */
/** dc_extent.layer when no layer of the chain holds the extent. */
#define DC_EXTENT_NO_LAYER UINT32_MAX

/** One run of bytes with the same allocation status and origin. */
struct dc_extent {
	uint64_t offset; /**< bytes from the start of the disk */
	uint64_t length; /**< bytes */
	uint32_t flags;	 /**< DC_EXTENT_*; 0: data */
	/** Which layer of the chain's layered disk holds it, 0 the top
	 *  (dc_describe() names them: "layer0", ...); DC_EXTENT_NO_LAYER when
	 *  no layer does (it reads as zero); 0 for a chain without layers. */
	uint32_t layer;
	uint64_t reserved; /**< zero */
};

typedef int (*dc_extent_fn)(void *arg, const struct dc_extent *e);
/**
 * Map the allocation of bytes [offset, offset + length) (clipped to the
 * disk's size): call fn for each extent in order, adjacent extents with the
 * same flags and layer merged; the first and last are clipped to the range.
 * A plugin that cannot tell reports data, so a copy that skips only holes
 * and zeroes is always safe (docs/abi.md, "Allocation map"). Runs on the
 * calling thread, alongside I/O on the disk's queues; it may block on
 * metadata reads. Returns 0, what fn returned if not 0, or -errno.
 */
int dc_map(dc_disk *disk, uint64_t offset, uint64_t length, dc_extent_fn fn, void *arg);

/* --- Consistency check (ABI 1.1) --------------------------------------- */

/** What a check found. */
enum dc_check_kind {
	DC_CHECK_CORRUPT = 1, /**< inconsistent metadata: data may be wrong or lost */
	DC_CHECK_LEAK = 2,    /**< space allocated that nothing uses: harmless */
	DC_CHECK_NOTE = 3,    /**< information (what was checked, a warning) */
};

struct dc_check_result {
	uint64_t corruptions; /**< DC_CHECK_CORRUPT reports */
	uint64_t leaks;	      /**< DC_CHECK_LEAK reports */
	uint32_t checked;     /**< elements of the chain that checked themselves */
	uint32_t reserved[3]; /**< zero */
};

/** One finding: the spec element it is about, its kind, and what it is. */
typedef void (*dc_check_fn)(void *arg, const char *element, uint32_t kind,
			    const char *message);
/**
 * Check the metadata of every element of the chain that can check itself
 * (image formats: their allocation tables, logs, refcounts, databases),
 * reporting each finding to fn (may be NULL) and the totals in *out. Reads
 * only; open the disk read-only to be sure nothing else writes meanwhile.
 * Returns 0 when every check ran (whatever it found; see *out), or -errno
 * when one could not run (the image could not be read).
 */
int dc_check(dc_disk *disk, dc_check_fn fn, void *arg, struct dc_check_result *out);

/* --- Plugins and specs -------------------------------------------------- */

/** Parse a SIZE ("1G", "512K", "1024", "4MB") as the spec grammar defines it. */
int dc_parse_size(const char *s, uint64_t *out);

struct dc_plugin;
/** Visit every plugin file on the search path, loading each. For a plugin that
 *  was refused, plugin is NULL and why says why. Returns what visit returns, if not 0. */
typedef int (*dc_plugin_visit_fn)(void *arg, const char *path,
				  const struct dc_plugin *plugin, const char *why);
int dc_plugins_foreach(dc_plugin_visit_fn visit, void *arg);
/** ABI 1.3. The plugin that serves spec form `form` ("qcow2", "memdiff"),
 *  found as dc_open() finds it: only that form's file is loaded. Returns 0
 *  with *out set; -ENOENT when no plugin on the path claims the form, or the
 *  refusal's -errno when its file was refused (dc_last_error() says which, and
 *  lists the kinds installed). */
int dc_plugin_lookup(const char *form, const struct dc_plugin **out);
/** The plugin directories searched, colon-separated (env first, then built-in). */
const char *dc_plugin_path(void);

#ifdef __cplusplus
}
#endif
#endif
