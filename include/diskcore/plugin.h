/* SPDX-License-Identifier: MIT */
/**
 * @file plugin.h
 * The plugin ABI of libdiskcore: what a backend, decorator or layer implements.
 *
 * A plugin is a shared object that exports one symbol, DC_PLUGIN_ENTRY, which
 * returns a `struct dc_plugin` descriptor. The descriptor begins with its own size
 * and the ABI version it was built against; the core copies what the plugin
 * declared and zero-fills the rest, so fields are only ever appended.
 *
 * Kinds:
 *  - backend:   a leaf disk (file, blockdev, blob, nvme) or a disk over a list of
 *               disks (striped).
 *  - decorator: a disk over one inner disk (crypt, delay, prwrap).
 *  - layer:     one layer of the core's layered disk (ram, sqlite, vhd images).
 *               The core reads top to bottom; each layer marks the sectors it holds.
 *
 * I/O: the core hands each plugin a `struct dc_req` and the plugin finishes it
 * exactly once with dc_complete(), from any thread, possibly inline in submit().
 * A plugin may instead provide the blocking `io` callback; the core then runs it on
 * its worker pool (OpenVMM's unblock()).
 *
 * Fail closed: the core only gives a plugin the ops in its `ops` mask, and only
 * forwards to the child unchanged the ops in `passthrough_ops`. Every other op
 * completes with DC_E_UNSUPPORTED at that plugin; a new op added to the ABI can
 * never slip through an old decorator.
 *
 * Concurrency: submit(), io() and sector_count() may be called concurrently from
 * many threads. queue_open()/queue_close() are called by the thread that opens or
 * closes a consumer queue; submit() is called with the qctx of the submitting
 * queue, and a queue is used by one submitting thread at a time, so per-queue state
 * needs no lock (its completions may still arrive on other threads). open(),
 * attach(), close() and resize() are never concurrent with anything on the same
 * instance.
 */
#ifndef DISKCORE_PLUGIN_H
#define DISKCORE_PLUGIN_H

#include <diskcore/diskcore.h>
#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1.1 added struct dc_plugin.queue_poll, dc_buf_pread() and dc_buf_pwrite(). */
#define DC_ABI_MAJOR 1
#define DC_ABI_MINOR 1

/** The one symbol a plugin exports. */
#define DC_PLUGIN_ENTRY_NAME "diskcore_plugin_init"
#define DC_PLUGIN_ENTRY diskcore_plugin_init
/** Define the entry symbol of a plugin whose descriptor is `desc`. */
#define DC_PLUGIN_REGISTER(desc)                                                   \
	__attribute__((visibility("default"))) const struct dc_plugin *            \
	DC_PLUGIN_ENTRY(void);                                                     \
	const struct dc_plugin *DC_PLUGIN_ENTRY(void) { return &(desc); }

enum dc_kind {
	DC_KIND_BACKEND = 1,
	DC_KIND_DECORATOR = 2,
	DC_KIND_LAYER = 3,
};

/* --- Spec forms and options --------------------------------------------- */

enum dc_opt_type {
	DC_OPT_FLAG = 1,   /**< ";name" */
	DC_OPT_STRING = 2, /**< ";name=text" */
	DC_OPT_SIZE = 3,   /**< ";name=SIZE" (K/M/G/T suffixes) */
	DC_OPT_UINT = 4,   /**< ";name=N" (decimal) */
};

struct dc_option {
	const char *name;
	uint32_t type; /**< enum dc_opt_type */
	const char *help;
};

/** What follows a form's fields. */
enum dc_child {
	DC_CHILD_NONE = 0, /**< a leaf: the last field takes the rest verbatim */
	DC_CHILD_ONE = 1,  /**< one inner spec follows the fields */
	DC_CHILD_LIST = 2, /**< a bracketed list "[SPEC,SPEC,...]" follows */
};

/** Form flags. */
#define DC_FORM_READ_CACHE (1u << 0)    /**< layer: a read cache over its inner spec */
#define DC_FORM_WRITE_THROUGH (1u << 1) /**< layer: writes also go to the layer below */

/** One spec-string form a plugin claims: "memdiff:SPEC", "crypt:CIPHER:KEY:SPEC". */
struct dc_form {
	const char *name;    /**< [a-z0-9-]+, the KIND before the first ':' */
	uint32_t nfields;    /**< ':'-separated fields after the name */
	uint32_t child;      /**< enum dc_child */
	uint32_t flags;      /**< DC_FORM_* */
	const char *syntax;  /**< e.g. "crypt:xts-aes-256:KEYFILE:SPEC" */
	const char *help;    /**< one line */
	const struct dc_option *options; /**< accepted ";opt"s, {NULL} terminated; may be NULL */
};

/** An option as given in the spec, validated against the form's declaration. */
struct dc_optval {
	const char *name;
	const char *value; /**< NULL for a flag */
	uint64_t num;      /**< parsed value of a SIZE or UINT option */
};

/* --- Nodes, requests, buffers ------------------------------------------- */

/** An opened element of a chain, owned by the core. */
struct dc_node;

/** A byte range over an iovec list: the core's zero-copy view of a buffer. */
struct dc_buf {
	const struct iovec *iov;
	int iovcnt;
	size_t skip; /**< bytes of iov to skip before the view starts */
	size_t len;  /**< bytes in the view */
};

/** Which sectors of a layer read the layer holds. Set bits for every sector the
 *  layer filled; the rest fall through to the layer below. */
struct dc_marker {
	uint64_t *bits;  /**< bit (bit0 + s - sector) stands for sector s */
	uint64_t bit0;
	uint64_t sector; /**< first sector of the view */
	uint64_t count;
};

/** Layer-only request flags (the core sets them; plain disks never see them). */
#define DC_IO_NO_OVERWRITE (1u << 16) /**< write: only sectors not yet present */
#define DC_IO_NEXT_IS_ZERO (1u << 17) /**< unmap: everything below reads as zero */

struct dc_req {
	uint32_t op;     /**< enum dc_op */
	uint32_t flags;  /**< DC_IO_* */
	uint64_t sector;
	uint64_t count;  /**< sectors; read/write: buf.len / sector size */
	struct dc_buf buf;         /**< read/write data */
	struct dc_marker *marker;  /**< layer reads: mark what the layer holds */
	struct dc_pr_args *pr;     /**< DC_OP_PR_* */
	void *ctx;                 /**< ctx_size bytes of scratch, uninitialised */
	void *qctx;                /**< this plugin's per-queue state, or NULL */
	struct dc_node *node;      /**< the node this request is addressed to */
	int result;                /**< child requests: the result, set before done() */
	int detail;                /**< child requests: errno / medium detail */
};

/** Descriptor-level callbacks use `void *inst`, the instance open() created. */
struct dc_open_args {
	uint32_t struct_size;
	struct dc_node *node;    /**< this instance's node: children, resize notify */
	const char *form;        /**< the form name the spec used */
	const char *const *fields;
	uint32_t nfields;
	const struct dc_optval *opts;
	uint32_t nopts;
	bool read_only;
	uint32_t nchildren;      /**< children, opened before this plugin */
};

typedef void (*dc_kv_fn)(void *arg, const char *key, const char *value);

struct dc_plugin {
	uint32_t struct_size;    /**< sizeof(struct dc_plugin) as built */
	uint16_t abi_major;      /**< DC_ABI_MAJOR: must match */
	uint16_t abi_minor;      /**< DC_ABI_MINOR: may be older than the core's */
	uint32_t kind;           /**< enum dc_kind */
	const char *name;        /**< plugin name, [a-z0-9-]+ */
	const char *version;
	const char *summary;     /**< one line */
	const char *usage;       /**< longer help, may be NULL */
	const struct dc_form *forms; /**< {NULL} terminated */
	uint32_t ctx_size;       /**< per-request scratch bytes */
	uint64_t ops;            /**< DC_OP_BIT()s that submit()/io() handle */
	uint64_t passthrough_ops; /**< DC_OP_BIT()s forwarded unchanged to child 0 */

	/** Create an instance. Fill info (decorators start from their child's).
	 *  Return 0, or -errno after dc_error(). */
	int (*open)(const struct dc_open_args *a, void **inst, struct dc_info *info);
	void (*close)(void *inst);
	/** Per-queue state; optional. */
	int (*queue_open)(void *inst, void **qctx);
	void (*queue_close)(void *inst, void *qctx);
	/** Asynchronous I/O: finish req with dc_complete(). */
	void (*submit)(void *inst, struct dc_req *req);
	/** Blocking I/O, run on the core's worker pool; returns the result. Used when
	 *  submit is NULL. */
	int (*io)(void *inst, struct dc_req *req);
	/** Live sector count. NULL: child 0's for decorators, else info's. */
	uint64_t (*sector_count)(void *inst);
	/** Layers: size yourself from the layer below (NULL at the bottom). */
	int (*attach)(void *inst, const struct dc_info *lower, struct dc_info *info);
	/** Layers: the spec of the layer below this one (a differencing image's
	 *  parent), written to buf; return 1 if there is one, 0 if not, -errno. */
	int (*lower_spec)(void *inst, char *buf, size_t len);
	/** Diagnostics for `diskctl info`: call kv for each detail (never secrets). */
	void (*describe)(void *inst, dc_kv_fn kv, void *arg);
	/** dc_resize(): change size. NULL: forwarded to child 0 for decorators. */
	int (*resize)(void *inst, uint64_t new_sector_count);

	/* --- Appended in ABI 1.1: zero in an older plugin's descriptor (the
	 * core copies struct_size bytes and zero-fills the rest), and an older
	 * core never reads them. --- */

	/**
	 * Per-queue polling, optional: reap this queue's completions on the
	 * calling thread. The core calls it from dc_queue_wait(), only on the
	 * queue's submitting thread, and never from inside a completion it
	 * delivers.
	 *
	 * Finish with dc_complete() every request of this qctx that has
	 * finished (the core runs callbacks inline and counts them). When
	 * nothing has, start what submit() prepared since the last call, and
	 * if timeout_ms is not 0 sleep until one of them finishes, wake_fd
	 * becomes readable (wake_fd >= 0: the core's signal that a completion
	 * arrived elsewhere in the chain), or timeout_ms passes (-1: no
	 * limit). Spurious returns are allowed. submit() may still be called
	 * on other threads meanwhile (a decorator forwarding from a timer or
	 * worker): such a request must end a sleeping call, or reach the
	 * device without one.
	 *
	 * After the first call the queue is driven by its thread (see
	 * dc_queue_wait() in diskcore.h): the plugin may leave requests that
	 * submit() prepares until the next call, and need not reap on any
	 * other thread, except for requests it finishes off the queue (a
	 * worker pool), which it completes as usual.
	 *
	 * @return how many requests it completed, or -errno (the core returns
	 *         it from dc_queue_wait()).
	 */
	int (*queue_poll)(void *inst, void *qctx, int wake_fd, int timeout_ms);
};

/* --- Core services for plugins ------------------------------------------ */

/** Set the control-path error message (the core prefixes the spec element). */
void dc_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dc_verror(const char *fmt, va_list ap);
/** Debug output on stderr when DISKCORE_DEBUG is set. */
void dc_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** Options given in the spec. */
bool dc_opt_flag(const struct dc_open_args *a, const char *name);
const char *dc_opt_str(const struct dc_open_args *a, const char *name);
bool dc_opt_num(const struct dc_open_args *a, const char *name, uint64_t *out);

/** Children of a node (decorators: 1, striped: N), their metadata. */
unsigned dc_node_nchildren(struct dc_node *node);
struct dc_node *dc_node_child(struct dc_node *node, unsigned i);
void dc_node_info(struct dc_node *node, struct dc_info *info);
uint64_t dc_node_sector_count(struct dc_node *node);
/** Tell the core this node's size changed; waiters up the chain are woken. */
void dc_node_notify_resize(struct dc_node *node);
/** Blocking I/O on a child from a control path (open, flush in close). */
int dc_node_execute(struct dc_node *node, const struct dc_io *io);

/** Finish a request (any thread). result is 0 or a DC_E_* / -errno value. */
void dc_complete(struct dc_req *req, int result);
void dc_complete_detail(struct dc_req *req, int result, int detail);

/** Child requests. dc_child_req() gives a request addressed to child i of
 *  parent's node, initialised from parent (op, flags, sector, count, buf, pr);
 *  NULL when out of memory. Submit it with a done callback, which runs once with
 *  child->result set; release it there with dc_child_free(). */
typedef void (*dc_child_done_fn)(struct dc_req *parent, struct dc_req *child);
struct dc_req *dc_child_req(struct dc_req *parent, unsigned child);
void dc_child_submit(struct dc_req *parent, struct dc_req *child,
		     dc_child_done_fn done);
void dc_child_free(struct dc_req *parent, struct dc_req *child);

/** Buffer views. */
struct dc_buf dc_buf_sub(const struct dc_buf *b, size_t off, size_t len);
void dc_buf_copy_to(const struct dc_buf *b, size_t off, const void *src, size_t len);
void dc_buf_copy_from(const struct dc_buf *b, size_t off, void *dst, size_t len);
void dc_buf_zero(const struct dc_buf *b, size_t off, size_t len);
bool dc_buf_is_zero(const struct dc_buf *b, size_t off, size_t len);
/** Materialise the view as an iovec array; returns the count, or -E2BIG. */
int dc_buf_iov(const struct dc_buf *b, struct iovec *out, int max);
/** True if every segment's address and length are multiples of align. */
bool dc_buf_aligned(const struct dc_buf *b, size_t align);
/** Blocking positional I/O between file descriptor fd at byte off and the view:
 *  preadv()/pwritev2() straight into its segments, repeated over short transfers
 *  and EINTR. The view goes through one bounce buffer (aligned to align, at least
 *  4096) when it has too many segments, or when align > 1 and a segment's
 *  address or length is not a multiple of it (O_DIRECT). rwflags go to
 *  pwritev2() (e.g. RWF_DSYNC). Returns the bytes moved: b->len, or fewer when
 *  the file ended first (a zero-length transfer); -errno on error. */
ssize_t dc_buf_pread(int fd, const struct dc_buf *b, uint64_t off, size_t align);
ssize_t dc_buf_pwrite(int fd, const struct dc_buf *b, uint64_t off, size_t align,
		      int rwflags);

/** Layer read markers. */
void dc_marker_set(struct dc_marker *m, uint64_t sector, uint64_t count);
bool dc_marker_test(const struct dc_marker *m, uint64_t sector);

/** Run fn(arg) on the core's worker pool. */
int dc_pool_run(void (*fn)(void *arg), void *arg);
/** Run fn(arg) on the core's timer thread after delay_ns (never on the caller). */
int dc_timer_after(uint64_t delay_ns, void (*fn)(void *arg), void *arg);

#ifdef __cplusplus
}
#endif
#endif
