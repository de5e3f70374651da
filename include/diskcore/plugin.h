/* SPDX-License-Identifier: MIT */
/**
 * @file plugin.h
 * The plugin ABI of libdiskcore: what a backend, decorator or layer implements.
 *
 * A plugin is a shared object that exports one symbol, DC_PLUGIN_ENTRY, which
 * reports the size of `struct dc_plugin` and the ABI version the plugin was
 * built against, and returns its descriptor; DC_PLUGIN() defines both. The
 * core copies what the plugin's descriptor holds and zero-fills the rest, so fields are
 * only ever appended (docs/abi.md has the rules). A plugin links libdiskcore (pkg-config
 * diskcore), so it loads in a host that opened libdiskcore with RTLD_LOCAL.
 *
 * Kinds:
 *  - backend:   a leaf disk (file, blockdev, blob, nvme) or a disk over a list of
 *               disks (striped).
 *  - decorator: a disk over one inner disk (crypt, delay, prwrap).
 *  - layer:     one layer of the core's layered disk (ram, sqlite, vhd images).
 *               The core reads top to bottom; each layer marks the sectors it holds.
 *
 * I/O: the core hands each plugin a `struct dc_req` and the plugin finishes it
 * exactly once with dc_complete(), possibly inline in submit(). A plugin may
 * instead provide the blocking `io` callback; the core then runs it on its
 * worker pool (OpenVMM's unblock()).
 *
 * Validated before a plugin sees it: the core checks every request it hands a
 * plugin, top-level or child: op, flags (only those the op and kind allow),
 * buffer length (count sectors of the node's sector size), range (inside the
 * node's live size), and writes or unmaps to a read-only node. Zero-length
 * reads and writes, and unmaps of a node whose unmap behaviour is "ignored",
 * complete in the core. A plugin need not check these again.
 *
 * Fail closed: the core only gives a plugin the ops in its `ops` mask, and only
 * forwards to the child unchanged the ops in `passthrough_ops`. Every other op
 * completes with DC_E_UNSUPPORTED at that plugin; a new op added to the ABI can
 * never slip through an old decorator. The info flags that promise an op
 * (DC_INFO_PR, DC_INFO_EJECT, DC_INFO_FUA_RESPECTED, unmap) are cleared by the
 * core at a node that neither handles nor forwards it, and a node that cannot
 * write is read-only, so what the consumer sees is the AND of every level.
 *
 * Threads (docs/plugin-guide.md, "Threads"): every callback a plugin receives
 * for a queue -- submit(), the done callback of a child request, queue_poll()
 * -- runs on that queue's thread, one at a time, so state reached from qctx or
 * from a request needs no lock. A queue's thread is its consumer's: the
 * thread inside dc_submit(), dc_queue_reap() or dc_queue_wait() for a
 * DC_QUEUE_POLL queue; for a callback queue, the submitting thread or, while
 * it is not inside the library, the thread whose completion found the queue
 * idle (the core hands the queue over, so "one at a time" still holds).
 * A plugin may call dc_complete() and dc_child_submit() from any thread (a
 * worker, a timer, its own reaper): off the queue's thread the core queues the
 * call and the queue's thread runs it. io() is the exception: it runs on a
 * worker thread, concurrently with anything, and must not touch qctx.
 * open(), attach() and close() are never concurrent with anything on the same
 * instance. resize() is never concurrent with another resize(), but I/O of
 * other queues may be in flight (dc_resize() does not stop the disk): a plugin
 * that resizes keeps what readers hold valid (plugins/ram publishes a new
 * index and retires the old one). queue_open()/queue_close() run on the
 * thread that opens or closes a consumer queue.
 */
#ifndef DISKCORE_PLUGIN_H
#define DISKCORE_PLUGIN_H

#include <diskcore/diskcore.h>
#include <stdarg.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The plugin ABI version. Major: soname of libdiskcore (libdiskcore.so.1);
 * minor: the symbol-version node (DISKCORE_1.0, ...). See docs/abi.md. */
#define DC_ABI_MAJOR 1
#define DC_ABI_MINOR 3

/** The one symbol a plugin exports. Plugins of the pre-release ABI exported
 *  "diskcore_plugin_init"; the core names them and refuses them. */
#define DC_PLUGIN_ENTRY_NAME "diskcore_plugin_v1"
#define DC_PLUGIN_ENTRY diskcore_plugin_v1

/** What the entry reports about the headers the plugin was built with. */
struct dc_plugin_abi {
	uint32_t struct_size; /**< sizeof(struct dc_plugin) as built */
	uint16_t abi_major;   /**< DC_ABI_MAJOR: must match the core's */
	uint16_t abi_minor;   /**< DC_ABI_MINOR: may be older than the core's */
};

/**
 * Define a plugin: the entry symbol, which reports the ABI the plugin was
 * built against and returns the descriptor `var`, then the descriptor itself,
 * whose initialiser follows:
 *
 *     DC_PLUGIN(delay_plugin) = {
 *             .kind = DC_KIND_DECORATOR,
 *             .name = "delay",
 *             ...
 *     };
 */
#define DC_PLUGIN(var)                                                                  \
	static const struct dc_plugin var;                                              \
	__attribute__((visibility("default"))) const struct dc_plugin *DC_PLUGIN_ENTRY( \
		struct dc_plugin_abi *abi);                                             \
	const struct dc_plugin *DC_PLUGIN_ENTRY(struct dc_plugin_abi *abi)              \
	{                                                                               \
		abi->struct_size = sizeof(struct dc_plugin);                            \
		abi->abi_major = DC_ABI_MAJOR;                                          \
		abi->abi_minor = DC_ABI_MINOR;                                          \
		return &var;                                                            \
	}                                                                               \
	static const struct dc_plugin var

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

/** One ";option" a form accepts. Lists end with a zeroed entry ({0}). */
struct dc_option {
	const char *name;
	uint32_t type; /**< enum dc_opt_type */
	const char *help;
	const void *reserved[2]; /**< zero */
};

/** What follows a form's fields. */
enum dc_child {
	DC_CHILD_NONE = 0, /**< a leaf: the last field takes the rest verbatim */
	DC_CHILD_ONE = 1,  /**< one inner spec follows the fields */
	DC_CHILD_LIST = 2, /**< a bracketed list "[SPEC,SPEC,...]" follows */
};

/** Form flags. */
#define DC_FORM_READ_CACHE (1u << 0)	/**< layer: a read cache over its inner spec */
#define DC_FORM_WRITE_THROUGH (1u << 1) /**< layer: writes also go to the layer below */
/** leaf: the last field keeps its ';'s; the options are only the
 *  trailing ";NAME[=VALUE]" items whose NAME the form declares (a URL) */
#define DC_FORM_TAIL_OPTIONS (1u << 2)

/** One spec-string form a plugin claims: "memdiff:SPEC", "crypt:CIPHER:KEY:SPEC". */
struct dc_form {
	const char *name;   /**< [a-z0-9-]+, the KIND before the first ':' */
	uint32_t nfields;   /**< ':'-separated fields after the name */
	uint32_t child;	    /**< enum dc_child */
	uint32_t flags;	    /**< DC_FORM_* */
	const char *syntax; /**< e.g. "crypt:xts-aes-256:KEYFILE:SPEC" */
	const char *help;   /**< one line */
	const struct dc_option
		*options;	 /**< accepted ";opt"s, {0} terminated; may be NULL */
	const void *reserved[2]; /**< zero: room for fields a later minor adds */
};

/**
 * One-line table entries, so a plugin's option and form tables read as lists:
 *
 *     static const struct dc_option file_options[] = {
 *             DC_OPTION_FLAG("direct", "open with O_DIRECT"),
 *             DC_OPTION_SIZE("create", "create a missing file of SIZE bytes"),
 *             DC_OPTIONS_END,
 *     };
 *     static const struct dc_form file_forms[] = {
 *             DC_FORM("file", 1, DC_CHILD_NONE, "file:PATH[;direct]",
 *                     "a raw image file", file_options),
 *             DC_FORMS_END,
 *     };
 */
#define DC_OPTION(name_, type_, help_)                            \
	{                                                         \
		.name = (name_), .type = (type_), .help = (help_) \
	}
#define DC_OPTION_FLAG(name_, help_) DC_OPTION(name_, DC_OPT_FLAG, help_)
#define DC_OPTION_STRING(name_, help_) DC_OPTION(name_, DC_OPT_STRING, help_)
#define DC_OPTION_SIZE(name_, help_) DC_OPTION(name_, DC_OPT_SIZE, help_)
#define DC_OPTION_UINT(name_, help_) DC_OPTION(name_, DC_OPT_UINT, help_)
#define DC_OPTIONS_END \
	{              \
		0      \
	}
/** A form with DC_FORM_* flags; DC_FORM() is the same with none. */
#define DC_FORM_FLAGS(name_, nfields_, child_, flags_, syntax_, help_, options_) \
	{                                                                        \
		.name = (name_), .nfields = (nfields_), .child = (child_),       \
		.flags = (flags_), .syntax = (syntax_), .help = (help_),         \
		.options = (options_)                                            \
	}
#define DC_FORM(name_, nfields_, child_, syntax_, help_, options_) \
	DC_FORM_FLAGS(name_, nfields_, child_, 0, syntax_, help_, options_)
#define DC_FORMS_END \
	{            \
		0    \
	}
/**
 * The form list of a descriptor written in place, terminator included (a C
 * compound literal with static storage; C only, C++ keeps a named array):
 *
 *     .forms = DC_FORMS(DC_FORM("delay", 1, DC_CHILD_ONE, "delay:MS:SPEC",
 *                               "adds MS ms of latency", delay_options)),
 */
#define DC_FORMS(...) ((const struct dc_form[]){ __VA_ARGS__, DC_FORMS_END })

/** An option as given in the spec, validated against the form's declaration. */
struct dc_optval {
	const char *name;
	const char *value; /**< NULL for a flag */
	uint64_t num;	   /**< parsed value of a SIZE or UINT option */
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
	uint64_t *bits; /**< bit (bit0 + s - sector) stands for sector s */
	uint64_t bit0;
	uint64_t sector; /**< first sector of the view */
	uint64_t count;
};

/** Layer-only request flags (the core sets them; plain disks never see them). */
#define DC_IO_NO_OVERWRITE (1u << 16) /**< write: only sectors not yet present */
#define DC_IO_NEXT_IS_ZERO (1u << 17) /**< unmap: everything below reads as zero */

/** dc_plugin.layer_flags (ABI 1.2). DC_LAYER_FILLS_ZERO: a read without a
 *  marker (req->marker NULL) fills every sector, those the layer does not hold
 *  with zeroes. A disk of this one layer then hands it reads, writes and
 *  flushes as they come, without the layered disk's per-request work. */
#define DC_LAYER_FILLS_ZERO (1u << 0)

struct dc_req {
	uint32_t op;	/**< enum dc_op */
	uint32_t flags; /**< DC_IO_* */
	uint64_t sector;
	uint64_t count;		  /**< sectors; read/write: buf.len / sector size */
	struct dc_buf buf;	  /**< read/write data */
	struct dc_marker *marker; /**< layer reads: mark what the layer holds */
	struct dc_pr_args *pr;	  /**< DC_OP_PR_* */
	void *ctx;		  /**< ctx_size bytes of scratch, uninitialised */
	void *qctx;		  /**< this plugin's per-queue state, or NULL */
	struct dc_node *node;	  /**< the node this request is addressed to */
	int result;		  /**< child requests: the result, set before done() */
	int detail;		  /**< child requests: errno / medium detail */
	void *inst;		  /**< the instance of node's plugin (open()'s *inst) */
};

/** Descriptor-level callbacks use `void *inst`, the instance open() created. */
struct dc_open_args {
	uint32_t struct_size;
	struct dc_node *node; /**< this instance's node: children, resize notify */
	const char *form;     /**< the form name the spec used */
	const char *const *fields;
	uint32_t nfields;
	const struct dc_optval *opts;
	uint32_t nopts;
	bool read_only;
	uint32_t nchildren; /**< children, opened before this plugin */
	/** ABI 1.1: the consumer opened with DC_OPEN_FORCE_SHARE (read_only is
	 *  then true): take no lock that would keep a writer out. */
	bool force_share;
};

typedef void (*dc_kv_fn)(void *arg, const char *key, const char *value);
/** A check() finding: kind is a DC_CHECK_* (diskcore.h). */
typedef void (*dc_check_report_fn)(void *arg, uint32_t kind, const char *message);

static inline void dc_check_printf(dc_check_report_fn report, void *arg, uint32_t kind,
				   const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static inline void dc_check_printf(dc_check_report_fn report, void *arg, uint32_t kind,
				   const char *fmt, ...)
{
	char m[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	report(arg, kind, m);
}

/* Typed describe() helpers: one line per detail. A value longer than the
 * buffer is cut (describe() output is for people, not parsers of paths). */
static inline void dc_kv_printf(dc_kv_fn kv, void *arg, const char *key, const char *fmt,
				...) __attribute__((format(printf, 4, 5)));
static inline void dc_kv_printf(dc_kv_fn kv, void *arg, const char *key, const char *fmt,
				...)
{
	char v[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(v, sizeof(v), fmt, ap);
	va_end(ap);
	kv(arg, key, v);
}

static inline void dc_kv_u64(dc_kv_fn kv, void *arg, const char *key, uint64_t value)
{
	dc_kv_printf(kv, arg, key, "%llu", (unsigned long long)value);
}

/** "yes" or "no". */
static inline void dc_kv_bool(dc_kv_fn kv, void *arg, const char *key, bool value)
{
	kv(arg, key, value ? "yes" : "no");
}

struct dc_plugin {
	/* The core fills these in its copy from the entry's struct dc_plugin_abi;
	 * a plugin leaves them zero. */
	uint32_t struct_size;
	uint16_t abi_major;
	uint16_t abi_minor;
	uint32_t kind;	  /**< enum dc_kind */
	const char *name; /**< plugin name, [a-z0-9-]+ */
	const char *version;
	const char *summary;	     /**< one line */
	const char *usage;	     /**< longer help, may be NULL */
	const struct dc_form *forms; /**< {0} terminated, at most 64 */
	uint32_t ctx_size;	     /**< per-request scratch bytes */
	uint64_t ops;		     /**< DC_OP_BIT()s that submit()/io() handle */
	uint64_t passthrough_ops;    /**< DC_OP_BIT()s forwarded unchanged to child 0 */

	/** Create an instance. Fill info (decorators start from their child's).
	 *  Return 0, or -errno after dc_error(). */
	int (*open)(const struct dc_open_args *a, void **inst, struct dc_info *info);
	void (*close)(void *inst);
	/** Per-queue state; optional. queue_close() may finish requests the
	 *  plugin still holds for the queue (dc_complete): they complete on the
	 *  closing thread before it returns. Children close before parents. */
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

	/**
	 * Per-queue polling, optional: reap this queue's completions on the
	 * calling thread. The core calls it from dc_queue_wait(), on the
	 * queue's thread, and never from inside a completion it delivers.
	 *
	 * Finish with dc_complete() every request of this qctx that has
	 * finished (the core runs callbacks inline and counts them). When
	 * nothing has, start what submit() prepared since the last call, and
	 * if timeout_ms is not 0 sleep until one of them finishes, wake_fd
	 * becomes readable (wake_fd >= 0: the core's signal that a completion
	 * arrived elsewhere in the chain), or timeout_ms passes (-1: no
	 * limit). Spurious returns are allowed. Work handed to the queue from
	 * other threads (a timer, a worker) makes wake_fd readable; the core
	 * runs it once queue_poll() returns.
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

	/**
	 * ABI 1.1. Allocation, for dc_map(): describe the run of this node's
	 * sectors that starts at `sector` (count >= 1 sectors at most, inside
	 * the live size): set *run to its length (1..count) and return its
	 * flags: 0 for data, DC_EXTENT_ZERO (reads as zeroes), DC_EXTENT_HOLE
	 * (no storage behind it), and for a layer DC_EXTENT_ABSENT (the layer
	 * does not hold it; it reads from the layers below); or -errno after
	 * dc_error(). Runs on dc_map()'s thread, concurrently with I/O.
	 * NULL: everything is data held here -- also for a decorator, whose
	 * data may not be its child's (crypt); one that passes data through
	 * unchanged sets dc_extents_passthrough.
	 */
	int (*extents)(void *inst, struct dc_node *node, uint64_t sector, uint64_t count,
		       uint64_t *run);

	/**
	 * ABI 1.1. dc_check(): check this instance's metadata, calling report
	 * once per finding (DC_CHECK_*; dc_check_printf() formats one).
	 * Return 0 when the check ran, whatever it found, or -errno after
	 * dc_error() when it could not. Runs on dc_check()'s thread, alongside
	 * I/O; reads only. NULL: nothing to check.
	 */
	int (*check)(void *inst, dc_check_report_fn report, void *arg);

	/** ABI 1.2. DC_LAYER_* promises of a layer plugin; 0 for others. */
	uint32_t layer_flags;

	/* Appending a field: add it here, bump DC_ABI_MINOR, and make zero mean
	 * "not provided" (an older plugin's descriptor is zero-filled past its
	 * struct_size). docs/abi.md. */
};

/*
 * Descriptor one-liners. They expand to designated initialisers, so a
 * descriptor written with them has the same layout and ABI as one written
 * field by field, and the two styles mix:
 *
 *     DC_PLUGIN(delay_plugin) = {
 *             DC_ABOUT(DC_KIND_DECORATOR, "delay", "0.1.0", "adds latency"),
 *             .forms = DC_FORMS(DC_FORM(...)),
 *             .ops = DC_OP_BIT(DC_OP_READ) | DC_OP_BIT(DC_OP_WRITE),
 *             DC_CALLBACKS(delay, open, close, submit, describe),
 *             .extents = dc_extents_passthrough,
 *     };
 */

/** The four header fields: kind (enum dc_kind), name, version, summary. */
#define DC_ABOUT(kind_, name_, version_, summary_) \
	.kind = (kind_), .name = (name_), .version = (version_), .summary = (summary_)

/**
 * Callbacks named by convention: DC_CALLBACKS(delay, open, submit) is
 * `.open = delay_open, .submit = delay_submit`. One to 20 field names of
 * struct dc_plugin; a callback named otherwise is set as usual beside it.
 * The compiler checks each name: one that is not a field has "no member
 * named", a function of the wrong type is an incompatible pointer, and a
 * field also set elsewhere in the descriptor trips -Woverride-init (-Wextra).
 */
#define DC_CALLBACKS(prefix, ...)                                                     \
	DC__CB_GLUE(DC__CB, DC__CB_COUNT(__VA_ARGS__, 20, 19, 18, 17, 16, 15, 14, 13, \
					 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1))      \
	(prefix, __VA_ARGS__)
/* DC_CALLBACKS' machinery: count the names, then one step per name. */
#define DC__CB_COUNT(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, \
		     _16, _17, _18, _19, _20, n, ...)                                  \
	n
#define DC__CB_GLUE(a, b) DC__CB_GLUE2(a, b)
#define DC__CB_GLUE2(a, b) a##b
#define DC__CB(p, f) .f = p##_##f
#define DC__CB1(p, f) DC__CB(p, f)
#define DC__CB2(p, f, ...) DC__CB(p, f), DC__CB1(p, __VA_ARGS__)
#define DC__CB3(p, f, ...) DC__CB(p, f), DC__CB2(p, __VA_ARGS__)
#define DC__CB4(p, f, ...) DC__CB(p, f), DC__CB3(p, __VA_ARGS__)
#define DC__CB5(p, f, ...) DC__CB(p, f), DC__CB4(p, __VA_ARGS__)
#define DC__CB6(p, f, ...) DC__CB(p, f), DC__CB5(p, __VA_ARGS__)
#define DC__CB7(p, f, ...) DC__CB(p, f), DC__CB6(p, __VA_ARGS__)
#define DC__CB8(p, f, ...) DC__CB(p, f), DC__CB7(p, __VA_ARGS__)
#define DC__CB9(p, f, ...) DC__CB(p, f), DC__CB8(p, __VA_ARGS__)
#define DC__CB10(p, f, ...) DC__CB(p, f), DC__CB9(p, __VA_ARGS__)
#define DC__CB11(p, f, ...) DC__CB(p, f), DC__CB10(p, __VA_ARGS__)
#define DC__CB12(p, f, ...) DC__CB(p, f), DC__CB11(p, __VA_ARGS__)
#define DC__CB13(p, f, ...) DC__CB(p, f), DC__CB12(p, __VA_ARGS__)
#define DC__CB14(p, f, ...) DC__CB(p, f), DC__CB13(p, __VA_ARGS__)
#define DC__CB15(p, f, ...) DC__CB(p, f), DC__CB14(p, __VA_ARGS__)
#define DC__CB16(p, f, ...) DC__CB(p, f), DC__CB15(p, __VA_ARGS__)
#define DC__CB17(p, f, ...) DC__CB(p, f), DC__CB16(p, __VA_ARGS__)
#define DC__CB18(p, f, ...) DC__CB(p, f), DC__CB17(p, __VA_ARGS__)
#define DC__CB19(p, f, ...) DC__CB(p, f), DC__CB18(p, __VA_ARGS__)
#define DC__CB20(p, f, ...) DC__CB(p, f), DC__CB19(p, __VA_ARGS__)

/* --- Core services for plugins ------------------------------------------ */

/** Set the control-path error message (the core prefixes the spec element). */
void dc_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void dc_verror(const char *fmt, va_list ap);
/** The one way to fail a control-path call: set the message and return err
 *  (a negative errno), as in `return dc_fail(-EINVAL, "bad size %s", s);`. */
int dc_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** Debug output on stderr when DISKCORE_DEBUG is set. */
void dc_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** Options given in the spec. */
bool dc_opt_flag(const struct dc_open_args *a, const char *name);
const char *dc_opt_str(const struct dc_open_args *a, const char *name);
bool dc_opt_num(const struct dc_open_args *a, const char *name, uint64_t *out);

/**
 * Open the image file of a plugin whose options can create one, under the one
 * rule every such plugin follows (docs/spec-strings.md, "Creating images").
 * flags: open(2) flags; O_CREAT when this open's options ask for the image to
 * be made (create=, parent=, ...), O_DIRECT and O_NONBLOCK as wanted. The
 * access mode comes from a->read_only; O_CLOEXEC is added.
 *  - without O_CREAT: the file is opened as it is;
 *  - a read-only open never creates, truncates or writes: a missing file is
 *    -ENOENT, an existing one is opened unchanged;
 *  - writable, O_CREAT: a missing file is created empty with O_EXCL; one that
 *    exists (or appears meanwhile) is opened unchanged, and the plugin refuses
 *    it unless it is what the options describe (its size, its parent);
 *  - writable, O_CREAT and the spec's ";overwrite" flag (which the form must
 *    declare): the file is created or, if it is a regular file no one holds
 *    a flock on, locked (LOCK_EX, kept on the fd) and truncated to 0.
 * ";overwrite" without O_CREAT, or on a read-only open, is refused.
 * *created is true when the file is empty and the plugin writes the new image
 * into it; if that fails, the plugin unlinks path.
 * @return the fd, or -errno after dc_error().
 */
int dc_create_open(const struct dc_open_args *a, const char *path, int flags,
		   bool *created);

/** Children of a node (decorators: 1, striped: N), their metadata. */
unsigned dc_node_nchildren(struct dc_node *node);
struct dc_node *dc_node_child(struct dc_node *node, unsigned i);
void dc_node_info(struct dc_node *node, struct dc_info *info);
uint64_t dc_node_sector_count(struct dc_node *node);
/** Tell the core this node's size changed; waiters up the chain are woken. */
void dc_node_notify_resize(struct dc_node *node);
/** Blocking I/O on a child from a control path (open, flush in close). */
int dc_node_execute(struct dc_node *node, const struct dc_io *io);

/** extents() of a layer: the run is not in this layer (ABI 1.1). */
#define DC_EXTENT_ABSENT (1u << 8)
/** The allocation of a node's sectors, as its extents() would report it
 *  (recursing through its children): for a plugin that reports its child's
 *  allocation changed (crypt drops DC_EXTENT_ZERO). ABI 1.1. */
int dc_node_extents(struct dc_node *node, uint64_t sector, uint64_t count, uint64_t *run);
/** An extents() for decorators whose data is child 0's, sector for sector
 *  (delay, prwrap; not fault, whose reads must happen). ABI 1.1. */
int dc_extents_passthrough(void *inst, struct dc_node *node, uint64_t sector,
			   uint64_t count, uint64_t *run);

/** Finish a request. result is 0 or a DC_E_* / -errno value. Any thread: off
 *  the queue's thread the rest of the completion (the parent's done callback,
 *  the consumer's callback) runs on the queue's thread. */
void dc_complete(struct dc_req *req, int result);
void dc_complete_detail(struct dc_req *req, int result, int detail);

/** Child requests. dc_child_req() gives a request addressed to child i of
 *  parent's node, initialised from parent (op, flags, sector, count, buf, pr);
 *  NULL when out of memory. Submit it with a done callback, which runs once,
 *  on the queue's thread, with child->result set (parent->inst is the
 *  plugin's instance); release it there with dc_child_free(). The core checks
 *  the child request like any other before the child's plugin sees it. */
typedef void (*dc_child_done_fn)(struct dc_req *parent, struct dc_req *child);
struct dc_req *dc_child_req(struct dc_req *parent, unsigned child);
void dc_child_submit(struct dc_req *parent, struct dc_req *child, dc_child_done_fn done);
void dc_child_free(struct dc_req *parent, struct dc_req *child);
/** A done callback that finishes parent with child's result and detail (and
 *  frees child): for a plugin that has nothing to do after its child. */
void dc_child_done_complete(struct dc_req *parent, struct dc_req *child);

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

/** Run fn(arg) on the core's worker pool. fn runs off the queue's thread: it
 *  may finish requests (dc_complete) and submit children, but not touch qctx. */
int dc_pool_run(void (*fn)(void *arg), void *arg);
/** Run fn(arg) on the core's timer thread after delay_ns (never on the caller);
 *  the same rules as dc_pool_run(). */
int dc_timer_after(uint64_t delay_ns, void (*fn)(void *arg), void *arg);
/** ABI 1.3. The DC_QUEUE_* flags of the consumer queue this thread runs a
 *  callback for (queue_open(), submit(), queue_poll(), a child's done); 0
 *  outside one. A queue_open() that sees DC_QUEUE_THREAD may bind kernel
 *  state to the calling thread (diskcore.h). */
uint32_t dc_queue_flags(void);

#ifdef __cplusplus
}
#endif
#endif
