/* SPDX-License-Identifier: MIT */
/* sqlite: a persistent, sparse disk layer in a SQLite database (docs/openvmm-compat.md
 * §4.7).
 *
 * Forms: sql:PATH[;create=SIZE] (a disk of its own), sqldiff:PATH[;create]:SPEC
 * (a diff layer over SPEC) and autocache:[KEY]:SPEC (a read cache over SPEC, kept
 * in $DISKCORE_AUTO_CACHE_PATH/KEY/cache.dbhd).
 *
 * The file format is OpenVMM's, so databases move both ways: one row per sector
 * in `sectors` (NULL data = a zero sector), one JSON row in `meta`, WAL mode.
 *
 * Concurrency: SQLite admits one writer at a time, so one writer connection is
 * driven by one pool job at a time that drains a queue of write-type requests,
 * committing whatever has queued up in one transaction (group commit). Reads run
 * as pool jobs on a pool of read-only connections, one per concurrent reader,
 * and never wait for the writer; a reader keeps its snapshot between reads until
 * the writer commits (or for at most SQ_SNAPSHOT_NS). Checkpoints run as pool
 * jobs beside the writer, on a connection of their own.
 *
 * Durability: a completed write is committed to the WAL (safe from a process
 * crash); flush and FUA commit with synchronous=FULL, which fsyncs the WAL and
 * with it every earlier commit (safe from power loss).
 */
#ifndef DISKCORE_PLUGIN_SQLITE_H
#define DISKCORE_PLUGIN_SQLITE_H

#include <diskcore/plugin.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define SQ_BUSY_MS 10000
/* Page caches. A reader's cache is dropped whenever the database changes, so it
 * helps read-mostly disks; the OS page cache does the rest. (mmap measured
 * slower than pread here: page faults are dear in a paravirtualised guest.) */
#define SQ_WRITER_CACHE_KIB 32768
#define SQ_READER_CACHE_KIB 2048
#define SQ_MAX_SECTOR_SIZE 65536
#define SQ_CACHE_FILE "cache.dbhd"
/* Most requests one transaction carries. */
#define SQ_BATCH_MAX 64
/* WAL frames that start a background checkpoint, and that make the writer
 * checkpoint itself because the background ones fall behind. */
#define SQ_CKPT_FRAMES 1000
#define SQ_CKPT_FORCE (4 * SQ_CKPT_FRAMES)
/* How long a reader may keep a snapshot. */
#define SQ_SNAPSHOT_NS (100 * 1000000ull)

enum sq_form { SQ_SQL, SQ_DIFF, SQ_AUTO };

/* Prepared statements. Reader connections prepare the first SQ_NREADER. */
enum {
	SQ_READ,
	SQ_MAP,
	SQ_BEGIN_READ,
	SQ_COMMIT,
	SQ_NREADER,
	SQ_BEGIN = SQ_NREADER,
	SQ_ROLLBACK,
	SQ_PUT,
	SQ_PUT_NEW,
	SQ_DELETE,
	SQ_ZERO,
	SQ_SYNC_FULL,
	SQ_SYNC_NORMAL,
	SQ_TOUCH,
	SQ_NSTMT
};
/* What the snapshot release timer holds on to: the layer, until it closes. */
struct sq_handle {
	pthread_mutex_t lock;
	struct sq_layer *l; /* NULL once closed */
	int refs;
};

/* Per-request scratch. */
struct sq_rctx {
	struct sq_layer *l;
	struct dc_req *next; /* writer queue */
};

struct sq_conn {
	sqlite3 *db;
	sqlite3_stmt *st[SQ_NSTMT];
	bool in_txn;	   /* reader: holds a read transaction (a snapshot) */
	uint64_t txn_gen;  /* reader: the writer's generation when it began */
	uint64_t txn_time; /* reader: when it began (ns) */
	struct sq_conn *next_idle;
	struct sq_conn *next_all;
};

struct sq_layer {
	enum sq_form form;
	char *path;	  /* the database (autocache: known after attach) */
	char *key;	  /* autocache: the key given, or NULL for the disk id */
	char *cache_root; /* autocache: the cache directory from the environment */
	bool read_only;	  /* opened read-only */
	bool logical_ro;  /* meta: read-only to normal writes (read caches) */
	bool create;	  /* sqldiff;create: format at attach */
	bool created;
	bool fit_lower; /* sqldiff;create found it: it must fit the disk below */
	int claim_fd;	/* the empty file dc_create_open() made, until formatted */
	int lock_fd;	/* holds a shared flock: ;overwrite waits for no one */
	uint32_t ss;
	_Atomic uint64_t count; /* resize() changes it */

	struct sq_conn *writer;	  /* NULL when read-only; used by the writer job only */
	atomic_uint_fast64_t gen; /* commits by the writer */
	bool dirty;		  /* committed since the last sync (writer job) */

	/* Write-type requests wait here for the writer job. */
	pthread_mutex_t qlock;
	pthread_cond_t qidle;
	struct dc_req *qhead, *qtail;
	bool qactive; /* a writer job is queued or running */

	/* Checkpoints run beside the writer, on a connection of their own. */
	struct sq_conn *ckpt; /* checkpoint job only */
	bool ckactive;	      /* a checkpoint job is queued or running (qlock) */

	pthread_mutex_t rlock;
	struct sq_conn *idle; /* reader connections not in use */
	struct sq_conn *all;  /* every reader connection */
	unsigned nreaders;
	bool timer_pending; /* a release timer is armed (rlock) */
	struct sq_handle *handle;
};

/* conn.c: connections, the reader pool, and helpers of both I/O paths */
void sq_conn_close(struct sq_conn *c);
int sq_exec(sqlite3 *db, const char *sql);
int sq_conn_open(const char *path, bool writer, struct sq_conn **out);
int sq_step(struct sq_conn *c, int idx);
void sq_reader_end(struct sq_conn *c);
struct sq_conn *sq_reader_get(struct sq_layer *l);
uint64_t sq_now_ns(void);
void sq_handle_put(struct sq_handle *h, bool closing);
void sq_reader_put(struct sq_layer *l, struct sq_conn *c);
int sq_io_error(struct sq_layer *l, sqlite3 *db, int rc);
bool sq_is_zero(const uint8_t *p, size_t n);
void sq_buf_advance(struct dc_buf *b, size_t len);
const uint8_t *sq_buf_sector(const struct dc_buf *b, size_t ss, uint8_t *tmp);
void sq_readers_release(struct sq_layer *l);

/* db.c: the schema, opening and creating database files */
bool sq_exists(const char *path);
bool sq_size_ok(uint64_t count, uint32_t ss);
int sq_open_db(struct sq_layer *l);
int sq_create(const char *path, uint64_t count, uint32_t ss, bool logical_ro,
	      bool claimed);

/* auto.c: autocache (a read cache kept under a key) */
int sq_check_fit(const struct sq_layer *l, const struct dc_info *lower, const char *what,
		 const char *why, int err);
int sq_auto_attach(struct sq_layer *l, const struct dc_info *lower);

/* read.c: the read path, request checks, submit() */
void sq_submit(void *inst, struct dc_req *req);
int sq_extents(void *inst, struct dc_node *node, uint64_t sector, uint64_t count,
	       uint64_t *run);

/* resize.c: resize() and the live size */
int sq_resize(void *inst, uint64_t n);
uint64_t sq_sector_count(void *inst);

/* check.c: check() (integrity, schema, meta, sector rows) */
int sq_check_db(void *inst, dc_check_report_fn report, void *arg);

/* write.c: the writer job (group commit) and checkpoints */
int sq_wal_hook(void *arg, sqlite3 *db, const char *name, int frames);
void sq_writer_job(void *arg);

#endif
