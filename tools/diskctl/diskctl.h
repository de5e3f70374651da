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

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define CTL_EXIT_FAIL 1
#define CTL_EXIT_USAGE 2
#define CTL_ALIGN 4096

struct ctl_cmd {
	const char *name;
	const char *summary;
	const char *usage; /* full --help text after the "usage:" line */
	int (*run)(int argc, char **argv);
};

/* The subcommand running, for messages ("diskctl cp: ..."). */
extern const struct ctl_cmd *ctl_current;

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

/* Parse a subcommand's options (getopt_long; options may follow operands).
 * Handles --help and errors; returns the option character, or -1 at the end. */
int ctl_getopt(int argc, char **argv, const char *shortopts,
	       const struct option *longopts);
/* Exit with a usage error unless min..max operands follow the options. */
void ctl_operands(int argc, char **argv, int min, int max, const char *what);
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

/* --- disks (util.c) -------------------------------------------------------- */

/* Open a spec, reporting the core's message on failure. */
dc_disk *ctl_open(const char *spec, uint32_t flags);
/* One blocking request (buf NULL: a flush); *detail gets the completion's
 * errno detail (DC_E_IO). Returns 0 or the DC_E_* result. */
int ctl_io(dc_disk *d, uint32_t op, uint64_t sector, void *buf, size_t len,
	   uint32_t flags, int *detail);
/* Flush, treating a chain with nothing to flush as success. */
int ctl_flush(dc_disk *d, const char *spec);
/* Wait until one of n (at most 4) DC_QUEUE_POLL queues may have completions. */
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

struct ctl_cp {
	/* the caller's */
	const char *src_spec, *dst_spec;
	dc_disk *src, *dst;
	uint64_t chunk, qd; /* chunk size, chunks in flight */
	enum ctl_zeroes zeroes;
	bool quiet; /* no progress bar, no summary */
	/* the engine's */
	dc_queue *sq, *dq;
	uint32_t sss, dss; /* sector sizes */
	uint64_t total, next, done, unmapped, skipped;
	/* SRC's allocation around cp->next (dc_map): [map_off, map_end) reads
	 * as zeroes when map_zero; map_end 0 before the first query. */
	uint64_t map_off, map_end;
	bool map_zero;
	bool can_unmap, progress;
	int err;
	uint64_t start_ns, last_draw_ns;
	double secs;
};

/* --bs, --qd and -q, the options cp and convert share; false for others. */
bool ctl_cp_option(struct ctl_cp *cp, int c);
/* Copy SRC to DST (a progress bar on a terminal) and flush DST, then say
 * so: "VERB N bytes ..." on stdout, or after SIGINT/SIGTERM how much of SRC
 * DST holds, and LEFT (what that leaves). Returns the exit status: 0, 1
 * failed (reported), 128 + the signal's number. */
int ctl_cp_run_report(struct ctl_cp *cp, const char *verb, const char *left);

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

/* --- subcommands ----------------------------------------------------------- */

int ctl_info(int argc, char **argv);
int ctl_plugins(int argc, char **argv);
int ctl_cp(int argc, char **argv);
int ctl_read(int argc, char **argv);
int ctl_write(int argc, char **argv);
int ctl_bench(int argc, char **argv);
int ctl_create(int argc, char **argv);
int ctl_convert(int argc, char **argv);
int ctl_compare(int argc, char **argv);
int ctl_map(int argc, char **argv);
int ctl_check(int argc, char **argv);
int ctl_resize(int argc, char **argv);
int ctl_commit(int argc, char **argv);

#endif
