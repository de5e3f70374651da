/* SPDX-License-Identifier: MIT */
/* Core-internal interfaces between the files of libdiskcore. Nothing here is ABI. */
#ifndef DISKCORE_INTERNAL_H
#define DISKCORE_INTERNAL_H

#include <diskcore/plugin.h>
#include <pthread.h>
#include <stdatomic.h>

#define DC_EXPORT __attribute__((visibility("default")))
/* Thread-locals on the request path: a direct offset instead of a call to
 * __tls_get_addr (the few bytes come from glibc's static TLS surplus, which
 * also serves a libdiskcore loaded with dlopen). */
#define DC_TLS __thread __attribute__((tls_model("initial-exec")))
#define DC_ALIGN_UP(x, a) (((x) + (a)-1) & ~((size_t)(a)-1))
#define DC_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* --- error.c: thread-local control-path messages ------------------------ */

/* Messages are prefixed with the spec element at fault: the core pushes the
 * element ("crypt") around each plugin call, and dc_error() prepends it. */
void dc__error_push_prefix(const char *prefix);
void dc__error_pop_prefix(void);
void dc__error_clear(void);
/* Replace URL query strings (credentials) in s with "...", in place. */
void dc__redact_urls(char *s);
bool dc__error_isset(void);
/* Set the message with no prefix. */
void dc__error_raw(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* dc_fail() (plugin.h) is the core's way too: `return dc_fail(-EINVAL, ...)`. */

/* --- registry.c: plugin discovery and trust ----------------------------- */

/* Find (loading on demand) the plugin that claims spec form `name`.
 * Returns 0, -ENOENT ("unknown disk kind"), or the refusal's -errno; the message
 * says which files were refused and why. */
int dc__registry_lookup(const char *name, const struct dc_plugin **plugin,
			const struct dc_form **form);
/* Find a form in a plugin's descriptor. */
const struct dc_form *dc__plugin_form(const struct dc_plugin *p, const char *name);

/* --- loader.c: loading one plugin file ---------------------------------- */

/* Check, dlopen and validate the plugin file at real (a resolved path) into
 * desc. Returns 0, or -errno with the refusal in *why (NULL: out of memory). */
int dc__plugin_load(const char *real, struct dc_plugin *desc, char **why);
/* Whether dir and every directory above it may hold plugin's file: owned by
 * root or by us and writable by nobody else (sticky directories allowed);
 * else the reason in *why. */
bool dc__plugin_dir_trusted(const char *plugin, const char *dir, char **why);
/* Plugin and form names: [a-z0-9-]+, at most 63 bytes. */
bool dc__plugin_name_ok(const char *s);
/* A formatted, malloc'd string (NULL when out of memory). */
char *dc__strfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --- spec.c: spec-string parsing ---------------------------------------- */

struct dc_spec {
	const struct dc_plugin *plugin;
	const struct dc_form *form;
	const char *written; /* the kind as written when it differs from form->name:
				"file" for a path dispatched by extension */
	char *text;	     /* this element's whole spec text, from its kind on */
	size_t pos;	     /* byte offset of this element in the full spec */
	char **fields;
	uint32_t nfields;
	struct dc_optval *opts;
	uint32_t nopts;
	struct dc_spec **children;
	uint32_t nchildren;
};

/* Parse a spec, resolving each kind through the registry and validating options
 * against the plugin's declared options. Returns 0 or -errno with a message that
 * names the element, its position and what was expected. */
int dc__spec_parse(const char *spec, struct dc_spec **out);
void dc__spec_free(struct dc_spec *s);

/* --- node.c / req.c / exec.c: nodes, requests ---------------------------- */

struct dc_layered;

struct dc_node {
	const struct dc_plugin *plugin;
	const struct dc_form *form; /* NULL for core nodes */
	char *label;		    /* spec element text, for messages and describe */
	void *inst;
	struct dc_info info; /* snapshot after open/attach */
	struct dc_node **children;
	unsigned nchildren;
	struct dc_node *parent;
	struct dc_disk *disk;
	unsigned index;	       /* position in disk->nodes: qctx slot */
	size_t slot_size;      /* bytes of a request addressed to this node */
	size_t ctx_off;	       /* offset of ctx within the slot */
	size_t embed_size;     /* child slot embedded at the end (0: none) */
	uint64_t fwd_ops;      /* DC_OP_BIT()s forwarded in place to children[0] */
	unsigned shift;	       /* log2 of info.sector_size */
	_Atomic uint64_t live; /* live sector count, refreshed on resize */
	uint32_t op_flags[DC_OP_UNMAP + 1]; /* request flags each op may carry */
	uint64_t max_sector; /* INT64_MAX >> shift: the representable limit */
};

/* A request as the core keeps it; `pub` is what plugins see. */
struct dc_ireq {
	struct dc_req pub;
	struct dc_ireq *parent;
	struct dc_node *home; /* the node the request was addressed to */
	dc_child_done_fn done;
	struct dc_queue *queue;
	struct dc_ireq *next;	   /* free lists, completion lists */
	uint8_t kind;		   /* DC_IREQ_* */
	uint8_t hand;		   /* queued for the queue's thread: HAND_* */
	atomic_bool embedded_busy; /* the embedded child slot is taken */
	/* Top-level requests only. */
	dc_complete_fn cb;
	void *user_data;
};
enum { DC_IREQ_TOP = 0, DC_IREQ_EMBEDDED = 1, DC_IREQ_HEAP = 2 };

struct dc_disk {
	struct dc_node *top;
	uint32_t open_flags; /* DC_OPEN_* */
	struct dc_info info; /* snapshot at open */
	unsigned sector_shift;
	uint64_t max_sector;	/* INT64_MAX >> sector_shift */
	struct dc_node **nodes; /* every node, top first; changes under nodes_lock */
	pthread_mutex_t nodes_lock;
	unsigned nnodes;
	uint64_t serial;
	/* dc_resize() calls one at a time (plugin.h: resize() never overlaps). */
	pthread_mutex_t resizing;
	/* Resize notification. */
	pthread_mutex_t resize_lock;
	pthread_cond_t resize_cond;
	uint64_t resize_epoch;
	int resize_fd;
	/* Implicit per-thread queues of the blocking calls. */
	pthread_mutex_t implicit_lock;
	struct dc_implicit *implicit;
};

/* Open the node tree a parsed spec describes (disk.c): a layer form becomes a
 * layered disk (dc__layered_open); anything else opens its children, then itself. */
int dc__node_open(struct dc_disk *disk, struct dc_spec *s, bool read_only,
		  struct dc_node **out);
/* Open one plugin node over already-open children (no recursion): calls the
 * plugin's open() with the element's fields and options. Layers are created
 * with no children; the layered disk attaches them afterwards. */
int dc__node_create(struct dc_disk *disk, struct dc_spec *s, bool read_only,
		    struct dc_node **children, unsigned nchildren, struct dc_node **out);
/* Make a node for an instance the core created itself (the layered disk). */
int dc__node_wrap(struct dc_disk *disk, const struct dc_plugin *p, void *inst,
		  const struct dc_info *info, const char *label,
		  struct dc_node **children, unsigned nchildren, struct dc_node **out);
/* Settle a node's metadata once it is final: fail-closed info flags, request
 * guard geometry (disk.c). */
void dc__node_seal(struct dc_node *n);
/* Close a node and its children (calls the plugin's close). */
void dc__node_close(struct dc_node *n);
/* Close the implicit per-thread queues of the blocking calls (exec.c). */
void dc__implicit_free(struct dc_disk *d);
/* Dispatch a request to the plugin of its node, honouring ops/passthrough. */
void dc__dispatch(struct dc_ireq *r);
uint64_t dc__node_live_count(struct dc_node *n);

/* --- layered.c: the layered disk ---------------------------------------- */

/* Open the layered disk whose top layer is spec `s` (a DC_KIND_LAYER form): collect and
 * flatten the layers (inner specs, lower_spec() parents), open them with the resolver's
 * read-only rules, attach bottom-up and validate (docs/openvmm-compat.md §4.2). Returns
 * the layered node. */
int dc__layered_open(struct dc_disk *disk, struct dc_spec *s, bool read_only,
		     struct dc_node **out);
/* The core's layered-disk plugin descriptor (kind backend, children = layers). */
extern const struct dc_plugin dc__layered_plugin;

/* --- map.c: the allocation map ------------------------------------------ */

/* The layered disk reports which of its layers answered the current query. */
void dc__map_set_layer(uint32_t layer);

/* --- pool.c: worker pool and timers ------------------------------------- */

int dc__pool_submit(void (*fn)(void *arg), void *arg);
int dc__timer_after(uint64_t delay_ns, void (*fn)(void *arg), void *arg);

/* --- size.c --------------------------------------------------------------- */
/* dc_parse_size() is public; see diskcore.h. */

#endif
