/* SPDX-License-Identifier: MIT */
/*
 * diskctl, internal interface: the helpers every subcommand shares (util.c)
 * and the subcommands' entry points. diskctl uses only the public consumer
 * API (diskcore.h); plugin.h is included where the descriptor layout is read
 * (`diskctl plugins`), never for core services.
 *
 * Exit status: 0 success, 1 an operation failed, 2 wrong usage.
 */
#ifndef DISKCTL_DISKCTL_H
#define DISKCTL_DISKCTL_H

#include <diskcore/diskcore.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define CTL_EXIT_FAIL 1
#define CTL_EXIT_USAGE 2
#define CTL_ALIGN 4096

/*
 * A subcommand's options, one row each: what getopt_long is given, what the
 * value is parsed into and what --help says about it all come from this
 * table (ctl_parse(), ctl_help()), so the usage text cannot drift from the
 * parsing. A value goes to the member at .off of the subcommand's argument
 * struct (the args ctl_parse() is given).
 */
enum ctl_opt_kind {
	CTL_OPT_TRUE,	 /* no argument: the bool becomes true */
	CTL_OPT_FALSE,	 /* no argument: the bool becomes false */
	CTL_OPT_UINT,	 /* uint64_t, an integer in min..max */
	CTL_OPT_SIZE,	 /* uint64_t, a SIZE in min..max (a power of two: pow2) */
	CTL_OPT_STRING,	 /* const char *, the argument itself (of at most max bytes) */
	CTL_OPT_ENUM,	 /* int, the index of the argument in names */
	CTL_OPT_SECONDS, /* double, a positive number up to max (or 0: zero) */
};

struct ctl_opt {
	const char *name; /* the long name, without "--" */
	char letter;	  /* the short option, or 0 */
	enum ctl_opt_kind kind;
	size_t off;		  /* of the value in the argument struct */
	const char *arg;	  /* the argument's name in the usage (not TRUE/FALSE) */
	const char *help;	  /* lines separated by '\n' */
	uint64_t min, max;	  /* UINT, SIZE; max for SECONDS, STRING (0: any) */
	const char *const *names; /* ENUM, ending with NULL */
	bool pow2;		  /* SIZE */
	bool zero;		  /* SECONDS: 0 too, for an option's "never" */
};

/* A row: option N_ (short L_, or 0) of kind K_ into member M_ of struct T_,
 * its argument named A_ (NULL for a flag); more members (.min = 1, ...) may
 * follow. */
#define CTL_OPT(n_, l_, k_, T_, m_, a_, h_, ...)                                     \
	{                                                                            \
		.name = (n_), .letter = (l_), .kind = (k_), .off = offsetof(T_, m_), \
		.arg = (a_), .help = (h_), __VA_ARGS__                               \
	}

/* The options several subcommands take, into members named json, quiet and
 * share of T. */
#define CTL_OPT_JSON(T, help) CTL_OPT("json", 0, CTL_OPT_TRUE, T, json, NULL, help)
#define CTL_OPT_QUIET(T, help) CTL_OPT("quiet", 'q', CTL_OPT_TRUE, T, quiet, NULL, help)
#define CTL_OPT_FORCE_SHARE(T)                                                \
	CTL_OPT("force-share", 'U', CTL_OPT_TRUE, T, share, NULL,             \
		"take no image locks, to look at an image a VMM holds open\n" \
		"(with a warning: it may be changing underneath)")

/* --bs and --qd as cp, convert, compare and commit read them, into the
 * uint64_t members chunk and qd of T; CTL_CHUNKS_DEFAULT initializes them. */
#define CTL_CHUNKS_DEFAULT .chunk = 256 << 10, .qd = 16
#define CTL_OPTS_CHUNKS(T, qd_help)                                           \
	CTL_OPT("bs", 0, CTL_OPT_SIZE, T, chunk, "SIZE",                      \
		"chunk size, a power of two (default 256K)", .min = 512,      \
		.max = 1u << 30, .pow2 = true),                               \
		CTL_OPT("qd", 0, CTL_OPT_UINT, T, qd, "N", qd_help, .min = 1, \
			.max = 1024)

/* A subcommand's entry point: argv[0] is its name. Returns the exit status. */
typedef int ctl_run_fn(int argc, char **argv);

struct ctl_cmd {
	const char *name;
	const char *summary;
	const char *operands;	    /* after the options in the usage line: "SRC DST" */
	int min, max;		    /* how many operands */
	const char *missing;	    /* "missing SRC and DST" names them so */
	const char *about;	    /* the --help text between usage and options */
	const struct ctl_opt *opts; /* ends with a row of zeroes */
	ctl_run_fn *run;
};

/* The subcommand running, for messages ("diskctl cp: ..."). */
extern const struct ctl_cmd *ctl_current;

/* The subcommands and their options, each in its own file. */
ctl_run_fn ctl_info, ctl_plugins, ctl_cp, ctl_read, ctl_write, ctl_create, ctl_convert,
	ctl_compare, ctl_check, ctl_map, ctl_resize, ctl_commit, ctl_bench;
extern const struct ctl_opt ctl_info_opts[], ctl_plugins_opts[], ctl_cp_opts[],
	ctl_read_opts[], ctl_write_opts[], ctl_create_opts[], ctl_convert_opts[],
	ctl_compare_opts[], ctl_check_opts[], ctl_map_opts[], ctl_resize_opts[],
	ctl_commit_opts[], ctl_bench_opts[];

/* --- messages (util.c) ----------------------------------------------------- */

void ctl_help(const struct ctl_cmd *c, FILE *f);
/* Wrong usage: print the message and a pointer to --help, exit 2. */
__attribute__((noreturn, format(printf, 1, 2))) void ctl_usage(const char *fmt, ...);
/* "diskctl CMD: " and the message on stderr. */
__attribute__((format(printf, 1, 2))) void ctl_err(const char *fmt, ...);
/* An I/O result with its errno detail, as in "I/O error: No space left on
 * device (ENOSPC)": the text ctl_err_io() ends with. */
const char *ctl_io_error(int result, int detail, char *buf, size_t len);
/* ctl_err() with ": " and ctl_io_error()'s text after the message. */
__attribute__((format(printf, 3, 4))) void ctl_err_io(int result, int detail,
						      const char *fmt, ...);
/* A control-path failure: the core's message, or strerror(-rc). */
const char *ctl_last_error(int rc);

/* --- memory and time (util.c) --------------------------------------------- */

/* Zeroed; exits on failure. */
__attribute__((returns_nonnull, malloc)) void *ctl_xalloc(size_t n);
/* CTL_ALIGN-aligned; exits on failure. */
__attribute__((returns_nonnull, malloc)) void *ctl_aligned(size_t n);
char *ctl_strdup(const char *s);
uint64_t ctl_clock_ns(clockid_t id);
uint64_t ctl_now_ns(void);

/* --- arguments (util.c) ---------------------------------------------------- */

/* Parse the running subcommand's options (ctl_current->opts; they may
 * follow operands) into args, and check its operand count: --help prints the
 * usage and exits 0, a wrong option or count exits 2. Returns the operands;
 * *n (may be NULL) gets how many. */
char **ctl_parse(int argc, char **argv, void *args, int *n);
/* A plain non-negative integer (decimal, or 0x hex); no sign, no junk. */
bool ctl_parse_u64(const char *s, uint64_t *out);
uint64_t ctl_arg_u64(const char *what, const char *s, uint64_t min, uint64_t max);
/* A SIZE as the spec grammar reads it (dc_parse_size). */
uint64_t ctl_arg_size(const char *what, const char *s);

/* --- output (util.c) ------------------------------------------------------- */

void ctl_human_bytes(uint64_t n, char *buf, size_t len);
/* s as a JSON string (null for NULL). */
void ctl_json_str(FILE *f, const char *s);
const char *ctl_bool(bool b);
/* names[v], or other when v has no name there (a plugin or core built
 * against a later ABI may carry values this diskctl does not know). */
const char *ctl_enum_name(const char *const *names, size_t n, uint32_t v,
			  const char *other);
#define CTL_ENUM_NAME(names, v, other) \
	ctl_enum_name(names, sizeof(names) / sizeof((names)[0]), v, other)

/* --- disks (util.c) -------------------------------------------------------- */

/* Open a spec, reporting the core's message on failure. */
dc_disk *ctl_open(const char *spec, uint32_t flags);
/* -U, --force-share: DC_OPEN_FORCE_SHARE when share, with a warning that a
 * writer may be changing SPEC, so RISK; 0 otherwise. */
uint32_t ctl_force_share(bool share, const char *spec, const char *risk);
/* One blocking request (buf NULL: a flush); *detail gets the completion's
 * errno detail (DC_E_IO). Returns 0 or the DC_E_* result. */
int ctl_io(dc_disk *d, uint32_t op, uint64_t sector, void *buf, size_t len,
	   uint32_t flags, int *detail);
/* Flush, treating a chain with nothing to flush as success. */
int ctl_flush(dc_disk *d, const char *spec);
/* Wait until one of n (at most 4) DC_QUEUE_POLL queues may have completions.
 * Only a wait: reap each queue dry (dc_queue_reap() returns 0) before it,
 * and reap after it, which clears the queues' eventfds. */
void ctl_queues_wait(dc_queue *const *qs, int n, int timeout_ms);

/* Catch SIGINT and SIGTERM: ctl_signal() then says which came (0: none), and
 * long operations stop cleanly. A second one ends the process at once. */
void ctl_catch_signals(void);
int ctl_signal(void);

/* The spec of each layer of a disk's outermost layered disk, top first, as
 * dc_describe() names them (the layers are its children); n is 0 for a
 * chain without layers. */
#define CTL_MAX_LAYERS 64
struct ctl_layers {
	char *spec[CTL_MAX_LAYERS];
	unsigned n;
	int depth; /* of the layered disk while collecting; -1 until seen */
};
void ctl_layers_get(dc_disk *d, struct ctl_layers *l);
void ctl_layers_free(struct ctl_layers *l);

/* --- copying (cp.c) -------------------------------------------------------- */

/* What an all-zero chunk of SRC becomes on DST. */
enum ctl_zeroes {
	CTL_ZEROES_WRITE, /* written like any other */
	CTL_ZEROES_UNMAP, /* unmapped where DST reads unmapped sectors as zero */
	CTL_ZEROES_SKIP,  /* nothing: DST is new, and reads zeroes already */
};

/* A run of bytes to copy. */
struct ctl_range {
	uint64_t off, len;
};

struct ctl_cp {
	/* the caller's */
	const char *src_spec, *dst_spec;
	dc_disk *src, *dst;
	uint64_t chunk, qd; /* chunk size, chunks in flight */
	enum ctl_zeroes zeroes;
	bool quiet;  /* no progress bar, no summary */
	bool sparse; /* --sparse, for the caller to turn into zeroes */
	/* What to copy, in order (to the same offsets of DST); NULL: all of SRC. */
	const struct ctl_range *ranges;
	size_t nranges;
	/* the engine's */
	dc_queue *sq, *dq;
	uint32_t sss, dss; /* sector sizes */
	uint64_t size;	   /* SRC's bytes */
	uint64_t total, done, unmapped, skipped;
	struct ctl_range whole; /* the range when ranges is NULL */
	size_t cur;		/* the next chunk starts pos bytes into ranges[cur] */
	uint64_t pos;
	/* After ctl_cp_run(): every byte of the ranges below it is on DST. */
	uint64_t low;
	uint64_t bad; /* the first byte of the lowest chunk that failed */
	/* SRC's allocation around the next chunk (dc_map): [map_off, map_end)
	 * reads as zeroes when map_zero; map_end 0 before the first query. */
	uint64_t map_off, map_end;
	bool map_zero;
	bool can_unmap, progress;
	int err;
	uint64_t start_ns, last_draw_ns;
	double secs;
};

/* Copy cp->ranges of SRC to DST with cp->qd chunks in flight on a polled
 * queue of each, until done, the first error or a signal; DST is not
 * flushed. 0, or the first error (reported). */
int ctl_cp_run(struct ctl_cp *cp);
/* Copy SRC to DST (a progress bar on a terminal) and flush DST, then say
 * so: "VERB N bytes ..." on stdout, or after SIGINT/SIGTERM how much of SRC
 * DST holds, and LEFT (what that leaves). Returns the exit status: 0, 1
 * failed (reported), 128 + the signal's number. */
int ctl_cp_run_report(struct ctl_cp *cp, const char *verb, const char *left);
/* cp's and convert's body: parse the options into cp and take SRC and DST,
 * open SRC read-only and DST with open_dst (which also sets cp->zeroes),
 * then ctl_cp_run_report(). */
int ctl_cp_main(int argc, char **argv, struct ctl_cp *cp,
		dc_disk *(*open_dst)(struct ctl_cp *cp), const char *verb,
		const char *left);

/* --- creating images (create.c) ------------------------------------------- */

/* A spec's top element, as far as creating its image goes. */
struct ctl_target {
	char kind[32];	  /* "file" for a bare path */
	char *path;	  /* the image file */
	size_t opt_at;	  /* where creating options go in the spec's text */
	bool has_inner;	  /* a layer with its inner spec written (sqldiff:P:S) */
	bool create_size; /* the plugin declares ;create=SIZE */
	bool create_flag; /* ;create (sized from the disk below) */
	bool parent_opt;  /* ;parent=PATH */
	bool sector_opt;  /* ;sector=N */
};

/* Parse SPEC's top element and look up what its plugin declares; 0, or -1
 * (reported when report says so): not KIND:PATH, or a kind that creates
 * nothing. */
int ctl_target_parse(const char *spec, struct ctl_target *t, bool report);
void ctl_target_free(struct ctl_target *t);
bool ctl_target_exists(const struct ctl_target *t);

struct ctl_create {
	const char *spec;     /* the image, without creating options */
	uint64_t size;	      /* bytes; 0 with a parent: the parent's */
	uint32_t sector_size; /* 0: the format's default (SPEC's ;sector= wins) */
	const char *parent;   /* a differencing image's parent, or NULL */
	bool overwrite;	      /* replace an existing file */
};

/* Make the image and open it read-write; NULL when refused (reported). An
 * existing file is refused unless c->overwrite. */
dc_disk *ctl_create_open(const struct ctl_create *c);

#endif
