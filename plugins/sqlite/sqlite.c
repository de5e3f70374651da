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
#include <diskcore/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

static const char *const sq_stmt_sql[SQ_NSTMT] = {
	[SQ_READ] = "SELECT sector, data FROM sectors WHERE sector >= ?1 AND sector < ?2 "
		    "ORDER BY sector",
	[SQ_BEGIN_READ] = "BEGIN",
	[SQ_COMMIT] = "COMMIT",
	[SQ_BEGIN] = "BEGIN IMMEDIATE",
	[SQ_ROLLBACK] = "ROLLBACK",
	[SQ_PUT] = "INSERT OR REPLACE INTO sectors (sector, data) VALUES (?1, ?2)",
	[SQ_PUT_NEW] = "INSERT OR IGNORE INTO sectors (sector, data) VALUES (?1, ?2)",
	[SQ_DELETE] = "DELETE FROM sectors WHERE sector >= ?1 AND sector < ?2",
	/* Explicit zero rows for [?1, ?2), generated inside SQLite. */
	[SQ_ZERO] = "WITH RECURSIVE r(s) AS (SELECT ?1 UNION ALL SELECT s + 1 FROM r "
		    "WHERE s + 1 < ?2) "
		    "INSERT OR REPLACE INTO sectors (sector, data) SELECT s, NULL FROM r",
	[SQ_SYNC_FULL] = "PRAGMA synchronous=FULL",
	[SQ_SYNC_NORMAL] = "PRAGMA synchronous=NORMAL",
	/* Dirties the header page so a commit has something to sync (as OpenVMM). */
	[SQ_TOUCH] = "PRAGMA user_version=0",
};

/* The schema, verbatim as OpenVMM creates it. */
static const char sq_schema[] =
	"CREATE TABLE sectors (sector INTEGER NOT NULL, data BLOB, PRIMARY KEY (sector));"
	"CREATE TABLE meta (metadata TEXT NOT NULL);";

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
	uint64_t count;

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

static int sq_wal_hook(void *arg, sqlite3 *db, const char *name, int frames);

/* --- Connections ------------------------------------------------------------- */

static void sq_conn_close(struct sq_conn *c)
{
	if (!c)
		return;
	for (int i = 0; i < SQ_NSTMT; i++)
		sqlite3_finalize(c->st[i]);
	sqlite3_close(c->db);
	free(c);
}

static int sq_exec(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* Open a connection to `path`: the writer (read-write, WAL, all statements) or a
 * reader (read-only, SELECT only). Control path: reports with dc_error(). */
static int sq_conn_open(const char *path, bool writer, struct sq_conn **out)
{
	int flags = (writer ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY) |
		    SQLITE_OPEN_NOMUTEX;
	struct sq_conn *c = calloc(1, sizeof(*c));
	sqlite3_stmt *st = NULL;
	char pragma[64];
	int rc;

	if (!c) {
		dc_error("%s: out of memory", path);
		return -ENOMEM;
	}
#ifdef SQLITE_OPEN_EXRESCODE
	flags |= SQLITE_OPEN_EXRESCODE;
#endif
	rc = sqlite3_open_v2(path, &c->db, flags, NULL);
	if (rc != SQLITE_OK) {
		dc_error("%s: cannot open %s: %s", path,
			 writer ? "read-write" : "read-only",
			 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_busy_timeout(c->db, SQ_BUSY_MS);
	snprintf(pragma, sizeof(pragma), "PRAGMA cache_size=-%d",
		 writer ? SQ_WRITER_CACHE_KIB : SQ_READER_CACHE_KIB);
	if (sq_exec(c->db, pragma) != SQLITE_OK) {
		dc_error("%s: %s", path, sqlite3_errmsg(c->db));
		goto fail;
	}
	if (writer) {
		/* journal_mode returns the mode in force, which must be WAL. */
		rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
		if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
		    !sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal"))
			rc = SQLITE_OK;
		else
			rc = rc == SQLITE_OK ? SQLITE_ERROR : rc;
		sqlite3_finalize(st);
		if (rc != SQLITE_OK) {
			dc_error("%s: cannot switch to WAL journal mode: %s", path,
				 sqlite3_errmsg(c->db));
			goto fail;
		}
		if (sq_exec(c->db, "PRAGMA synchronous=NORMAL") != SQLITE_OK) {
			dc_error("%s: %s", path, sqlite3_errmsg(c->db));
			goto fail;
		}
	}
	for (int i = 0; i < (writer ? SQ_NSTMT : SQ_NREADER); i++) {
		rc = sqlite3_prepare_v3(c->db, sq_stmt_sql[i], -1,
					SQLITE_PREPARE_PERSISTENT, &c->st[i], NULL);
		if (rc != SQLITE_OK) {
			dc_error(
				"%s: not a sqlite disk layer (expected OpenVMM's schema with "
				"a 'sectors' table): %s",
				path, sqlite3_errmsg(c->db));
			goto fail;
		}
	}
	*out = c;
	return 0;
fail:
	sq_conn_close(c);
	return -EIO;
}

/* Run one statement to completion. */
static int sq_step(struct sq_conn *c, int idx)
{
	int rc = sqlite3_step(c->st[idx]);

	sqlite3_reset(c->st[idx]);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* End a reader's read transaction, releasing its snapshot. */
static void sq_reader_end(struct sq_conn *c)
{
	if (c->in_txn)
		sq_step(c, SQ_COMMIT);
	c->in_txn = false;
}

/* An idle reader connection, or a new one. I/O path: no dc_error(). */
static struct sq_conn *sq_reader_get(struct sq_layer *l)
{
	struct sq_conn *c;

	pthread_mutex_lock(&l->rlock);
	c = l->idle;
	if (c)
		l->idle = c->next_idle;
	pthread_mutex_unlock(&l->rlock);
	if (c)
		return c;
	if (sq_conn_open(l->path, false, &c) < 0) {
		dc_debug("sqlite: %s: reader connection failed", l->path);
		return NULL;
	}
	pthread_mutex_lock(&l->rlock);
	c->next_all = l->all;
	l->all = c;
	l->nreaders++;
	pthread_mutex_unlock(&l->rlock);
	return c;
}

static uint64_t sq_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Drop a reference to the handle (the layer's, at close). */
static void sq_handle_put(struct sq_handle *h, bool closing)
{
	bool last;

	pthread_mutex_lock(&h->lock);
	if (closing)
		h->l = NULL;
	last = --h->refs == 0;
	pthread_mutex_unlock(&h->lock);
	if (last) {
		pthread_mutex_destroy(&h->lock);
		free(h);
	}
}

/* End the snapshots of all idle readers; no release timer is armed after. */
static void sq_readers_end_idle(struct sq_layer *l)
{
	pthread_mutex_lock(&l->rlock);
	l->timer_pending = false;
	for (struct sq_conn *c = l->idle; c; c = c->next_idle)
		sq_reader_end(c);
	pthread_mutex_unlock(&l->rlock);
}

/* The release timer: ends the snapshots of idle readers. It holds a reference
 * to the handle, not to the layer, so closing never waits for it. */
static void sq_release_timer(void *arg)
{
	struct sq_handle *h = arg;

	pthread_mutex_lock(&h->lock);
	if (h->l)
		sq_readers_end_idle(h->l);
	pthread_mutex_unlock(&h->lock);
	sq_handle_put(h, false);
}

/* An idle reader keeps its snapshot for the next read, but not for long: a
 * timer releases idle snapshots SQ_SNAPSHOT_NS after one is kept, so a quiet
 * disk holds back no checkpoint, ours or another process's. */
static void sq_reader_put(struct sq_layer *l, struct sq_conn *c)
{
	bool arm;

	pthread_mutex_lock(&l->rlock);
	c->next_idle = l->idle;
	l->idle = c;
	arm = c->in_txn && !l->timer_pending;
	if (arm)
		l->timer_pending = true;
	pthread_mutex_unlock(&l->rlock);
	if (!arm)
		return;
	pthread_mutex_lock(&l->handle->lock);
	l->handle->refs++;
	pthread_mutex_unlock(&l->handle->lock);
	if (dc_timer_after(SQ_SNAPSHOT_NS, sq_release_timer, l->handle) < 0) {
		/* No timer: keep no snapshots. */
		sq_readers_end_idle(l);
		sq_handle_put(l->handle, false);
	}
}

/* --- Database files ---------------------------------------------------------- */

static bool sq_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static bool sq_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* Sizes a layer can have: sectors of 512..64K bytes, addressable in bytes. */
static bool sq_size_ok(uint64_t count, uint32_t ss)
{
	return count && sq_pow2(ss) && ss >= 512 && ss <= SQ_MAX_SECTOR_SIZE &&
	       count <= (uint64_t)INT64_MAX / ss;
}

/* Read and check the meta row. */
static int sq_read_meta(struct sq_layer *l, struct sq_conn *c)
{
	sqlite3_stmt *st = NULL;
	sqlite3_int64 count, ss;
	int rc;

	rc = sqlite3_prepare_v2(
		c->db,
		"SELECT json_extract(metadata, '$.sector_count'), "
		"json_extract(metadata, '$.sector_size'), "
		"json_extract(metadata, '$.logically_read_only') FROM meta",
		-1, &st, NULL);
	if (rc != SQLITE_OK) {
		dc_error("%s: missing `meta` table (not a sqlite disk layer): %s",
			 l->path, sqlite3_errmsg(c->db));
		return -EINVAL;
	}
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		dc_error("%s: %s", l->path,
			 rc == SQLITE_DONE ? "the `meta` table is empty" :
					     sqlite3_errmsg(c->db));
		sqlite3_finalize(st);
		return -EINVAL;
	}
	if (sqlite3_column_type(st, 0) != SQLITE_INTEGER ||
	    sqlite3_column_type(st, 1) != SQLITE_INTEGER ||
	    sqlite3_column_type(st, 2) != SQLITE_INTEGER) {
		dc_error("%s: meta JSON lacks sector_count, sector_size or "
			 "logically_read_only",
			 l->path);
		sqlite3_finalize(st);
		return -EINVAL;
	}
	count = sqlite3_column_int64(st, 0);
	ss = sqlite3_column_int64(st, 1);
	l->logical_ro = sqlite3_column_int64(st, 2) != 0;
	sqlite3_finalize(st);
	if (count <= 0 || ss <= 0 || ss > UINT32_MAX ||
	    !sq_size_ok((uint64_t)count, (uint32_t)ss)) {
		dc_error(
			"%s: meta says %lld sectors of %lld bytes (expected a power-of-two "
			"sector size of 512..%d bytes and a non-zero, addressable count)",
			l->path, (long long)count, (long long)ss, SQ_MAX_SECTOR_SIZE);
		return -EINVAL;
	}
	l->count = (uint64_t)count;
	l->ss = (uint32_t)ss;
	return 0;
}

/* Open the existing database at l->path: the writer unless read-only, the meta.
 * Every open holds a shared flock on the file, which SQLite's own locks leave
 * alone, so that ;overwrite (dc_create_open() takes LOCK_EX) is refused while
 * the database is open anywhere through diskcore. */
static int sq_open_db(struct sq_layer *l)
{
	struct sq_conn *c;
	int ret;

	l->lock_fd = open(l->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (l->lock_fd < 0 || flock(l->lock_fd, LOCK_SH | LOCK_NB) < 0) {
		ret = -errno;
		dc_error("%s: cannot %s: %s", l->path,
			 l->lock_fd < 0 ? "open" : "lock (it is being overwritten)",
			 strerror(errno));
		return ret;
	}
	ret = sq_conn_open(l->path, !l->read_only, &c);
	if (ret < 0)
		return ret;
	if (l->read_only) {
		c->next_all = l->all;
		l->all = c;
		l->idle = c;
		l->nreaders++;
	} else {
		l->writer = c;
		l->dirty = true; /* a crashed predecessor's commits may be unsynced */
		sqlite3_wal_hook(c->db, sq_wal_hook, l);
	}
	return sq_read_meta(l, c);
}

static int sq_fsync_path(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);
	int ret = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* Write a fresh database into `file`. */
static int sq_format_file(const char *file, uint64_t count, uint32_t ss, bool logical_ro)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	char pragma[64], json[128];
	int rc;

	rc = sqlite3_open_v2(
		file, &db,
		SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	/* A sector must fit in a B-tree leaf, so big sectors get big pages. */
	snprintf(pragma, sizeof(pragma), "PRAGMA page_size=%u",
		 ss <= 4096 ? 16384u : 65536u);
	snprintf(json, sizeof(json),
		 "{\"logically_read_only\":%s,\"sector_count\":%llu,\"sector_size\":%u}",
		 logical_ro ? "true" : "false", (unsigned long long)count, ss);
	/* No syncs while formatting: the finished file is synced once, below. */
	if ((rc = sq_exec(db, pragma)) != SQLITE_OK ||
	    (rc = sq_exec(db, "PRAGMA synchronous=OFF")) != SQLITE_OK ||
	    (rc = sq_exec(db, "PRAGMA journal_mode=WAL")) != SQLITE_OK ||
	    (rc = sq_exec(db, "BEGIN")) != SQLITE_OK ||
	    (rc = sq_exec(db, sq_schema)) != SQLITE_OK ||
	    (rc = sqlite3_prepare_v2(db, "INSERT INTO meta VALUES (json(?))", -1, &st,
				     NULL)) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(st, 1, json, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_step(st)) != SQLITE_DONE ||
	    (rc = sq_exec(db, "COMMIT")) != SQLITE_OK)
		goto fail;
	sqlite3_finalize(st);
	/* The last connection's close checkpoints and removes the WAL. */
	rc = sqlite3_close(db);
	if (rc != SQLITE_OK) {
		dc_error("%s: close after formatting: %s", file, sqlite3_errstr(rc));
		return -EIO;
	}
	rc = sq_fsync_path(file, O_RDONLY);
	if (rc < 0)
		dc_error("%s: cannot sync the new database: %s", file, strerror(-rc));
	return rc;
fail:
	dc_error("%s: cannot create the database: %s", file,
		 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return -EIO;
}

/* Create a new database at `path` atomically: format it in a private directory
 * next to it, then hard-link it into place, or with `claimed` rename it over
 * the empty file dc_create_open() made there for us. Returns 0 when ours is in
 * place, 1 when `path` already existed (another creator won the race), or
 * -errno. */
static int sq_create(const char *path, uint64_t count, uint32_t ss, bool logical_ro,
		     bool claimed)
{
	const char *slash = strrchr(path, '/');
	char *dir, *tmpdir = NULL, *file = NULL;
	int ret = -ENOMEM;

	if (!slash)
		dir = strdup(".");
	else
		dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
	if (!dir || asprintf(&tmpdir, "%s/.sqlite-new-XXXXXX", dir) < 0) {
		tmpdir = NULL;
		goto oom;
	}
	if (!mkdtemp(tmpdir)) {
		ret = -errno;
		dc_error("%s: cannot make a temporary directory in %s: %s", path, dir,
			 strerror(errno));
		free(tmpdir);
		free(dir);
		return ret;
	}
	if (asprintf(&file, "%s/disk.dbhd", tmpdir) < 0) {
		file = NULL;
		goto oom;
	}
	ret = sq_format_file(file, count, ss, logical_ro);
	if (ret < 0)
		goto out;
	if ((claimed ? rename(file, path) : link(file, path)) == 0) {
		/* Make the new name durable too. */
		sq_fsync_path(dir, O_RDONLY | O_DIRECTORY);
		ret = 0;
	} else if (errno == EEXIST) {
		ret = 1;
	} else {
		ret = -errno;
		dc_error("%s: cannot link the new database into place: %s", path,
			 strerror(errno));
	}
	goto out;
oom:
	dc_error("out of memory");
out:
	if (file) {
		char side[PATH_MAX];

		unlink(file);
		/* Sidecars remain only if close could not checkpoint. */
		snprintf(side, sizeof(side), "%s-wal", file);
		unlink(side);
		snprintf(side, sizeof(side), "%s-shm", file);
		unlink(side);
	}
	if (tmpdir)
		rmdir(tmpdir);
	free(file);
	free(tmpdir);
	free(dir);
	return ret;
}

/* --- Autocache ----------------------------------------------------------------- */

static int sq_mkdir(const char *dir)
{
	if (mkdir(dir, 0777) == 0 || errno == EEXIST)
		return 0;
	return -errno;
}

/* mkdir -p of every component of `dir`. */
static int sq_mkdirs(const char *dir)
{
	char *p = strdup(dir);
	int ret = 0;

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; *s && ret == 0; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		ret = sq_mkdir(p);
		*s = '/';
	}
	if (ret == 0)
		ret = sq_mkdir(p);
	free(p);
	return ret;
}

/* A database over a disk must hold as many sectors, of the same size. */
static int sq_check_fit(const struct sq_layer *l, const struct dc_info *lower,
			const char *what, const char *why, int err)
{
	if (l->count == lower->sector_count && l->ss == lower->sector_size)
		return 0;
	dc_error("%s: %s %llu sectors of %u bytes, but the disk below has %llu of "
		 "%u%s",
		 l->path, what, (unsigned long long)l->count, l->ss,
		 (unsigned long long)lower->sector_count, lower->sector_size, why);
	return err;
}

/* Find or create the cache for the disk below (docs/openvmm-compat.md §4.7
 * auto-cache). */
static int sq_auto_attach(struct sq_layer *l, const struct dc_info *lower)
{
	char key[33], *dir = NULL;
	const char *k = l->key;
	int ret;

	if (!lower) {
		dc_error("autocache needs a disk below it (autocache:[KEY]:SPEC)");
		return -EINVAL;
	}
	if (!k) {
		if (!(lower->flags & DC_INFO_HAS_DISK_ID)) {
			dc_error(
				"the disk below has no disk id to name the cache by; give a "
				"key (autocache:KEY:SPEC)");
			return -EINVAL;
		}
		for (int i = 0; i < 16; i++)
			snprintf(key + 2 * i, 3, "%02x", lower->disk_id[i]);
		k = key;
	}
	if (asprintf(&dir, "%s/%s", l->cache_root, k) < 0 ||
	    asprintf(&l->path, "%s/" SQ_CACHE_FILE, dir) < 0) {
		free(dir);
		dc_error("out of memory");
		return -ENOMEM;
	}
	if (!sq_exists(l->path)) {
		if (l->read_only) {
			dc_error(
				"%s: no cache yet, and a read-only disk cannot create one",
				l->path);
			free(dir);
			return -ENOENT;
		}
		ret = sq_mkdirs(dir);
		if (ret < 0) {
			dc_error("%s: cannot create the cache directory: %s", dir,
				 strerror(-ret));
			free(dir);
			return ret;
		}
		ret = sq_create(l->path, lower->sector_count, lower->sector_size, true,
				false);
		if (ret < 0) {
			free(dir);
			return ret;
		}
		l->created = ret == 0;
	}
	free(dir);
	ret = sq_open_db(l);
	if (ret < 0)
		return ret;
	return sq_check_fit(l, lower, "the cache holds",
			    "; it belongs to another disk (remove it, or give another "
			    "key)",
			    -EINVAL);
}

/* --- I/O ----------------------------------------------------------------------- */

/* A SQLite failure on the I/O path, as a result. */
static int sq_io_error(struct sq_layer *l, sqlite3 *db, int rc)
{
	dc_debug("sqlite: %s: %s", l->path, sqlite3_errmsg(db));
	switch (rc & 0xff) {
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_READONLY:
		return DC_E_READ_ONLY;
	default:
		return DC_E_IO;
	}
}

static bool sq_range_ok(const struct sq_layer *l, uint64_t sector, uint64_t count)
{
	return sector <= l->count && count <= l->count - sector;
}

static bool sq_is_zero(const uint8_t *p, size_t n)
{
	/* Sectors are 8-byte multiples; most data fails on the first word. */
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v;

		memcpy(&v, p + i, 8);
		if (v)
			return false;
	}
	return true;
}

/* Advance a buffer view by `len` bytes. */
static void sq_buf_advance(struct dc_buf *b, size_t len)
{
	*b = dc_buf_sub(b, len, b->len - len);
}

/* The next sector of a view: in place when contiguous, else copied to tmp. */
static const uint8_t *sq_buf_sector(const struct dc_buf *b, size_t ss, uint8_t *tmp)
{
	if (b->iovcnt > 0 && b->iov[0].iov_len - b->skip >= ss)
		return (const uint8_t *)b->iov[0].iov_base + b->skip;
	dc_buf_copy_from(b, 0, tmp, ss);
	return tmp;
}

/* A reader keeps its read transaction across requests while the writer has
 * committed nothing since it began: the snapshot is still the newest, and each
 * read saves the locking (and file size check) of starting a transaction. A
 * read submitted after a write completed always sees it: the writer counts the
 * commit before completing the write. */
static void sq_reader_begin(struct sq_layer *l, struct sq_conn *c)
{
	uint64_t gen = atomic_load(&l->gen), now = sq_now_ns();

	if (c->in_txn && c->txn_gen == gen && now - c->txn_time < SQ_SNAPSHOT_NS)
		return;
	sq_reader_end(c);
	if (sq_step(c, SQ_BEGIN_READ) == SQLITE_OK) {
		c->in_txn = true;
		c->txn_gen = gen;
		c->txn_time = now;
	}
}

/* Release the snapshots of idle readers that are out of date, so they do not
 * hold back checkpoints. */
static void sq_readers_release(struct sq_layer *l)
{
	uint64_t gen = atomic_load(&l->gen);

	pthread_mutex_lock(&l->rlock);
	for (struct sq_conn *c = l->idle; c; c = c->next_idle)
		if (c->in_txn && c->txn_gen != gen)
			sq_reader_end(c);
	pthread_mutex_unlock(&l->rlock);
}

static int sq_read(struct sq_layer *l, struct dc_req *req)
{
	uint64_t n = req->buf.len / l->ss, next = req->sector, run = req->sector;
	struct dc_buf rest = req->buf;
	struct sq_conn *c;
	sqlite3_stmt *st;
	int rc, ret = 0;

	if (req->buf.len % l->ss)
		return DC_E_INVALID_INPUT;
	if (!sq_range_ok(l, req->sector, n))
		return DC_E_ILLEGAL_BLOCK;
	if (n == 0)
		return 0;
	c = sq_reader_get(l);
	if (!c)
		return DC_E_IO;
	sq_reader_begin(l, c);
	st = c->st[SQ_READ];
	sqlite3_bind_int64(st, 1, (sqlite3_int64)req->sector);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)(req->sector + n));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t s = (uint64_t)sqlite3_column_int64(st, 0);
		int type = sqlite3_column_type(st, 1);

		if (s < next || s >= req->sector + n) {
			ret = DC_E_IO;
			break;
		}
		/* Rows come in order: close the marked run at a gap. */
		if (s != next) {
			if (req->marker && next > run)
				dc_marker_set(req->marker, run, next - run);
			else if (!req->marker)
				dc_buf_zero(&rest, 0, (s - next) * l->ss);
			run = s;
			sq_buf_advance(&rest, (s - next) * l->ss);
		}
		if (type == SQLITE_NULL) {
			dc_buf_zero(&rest, 0, l->ss);
		} else if (type == SQLITE_BLOB &&
			   sqlite3_column_bytes(st, 1) == (int)l->ss) {
			dc_buf_copy_to(&rest, 0, sqlite3_column_blob(st, 1), l->ss);
		} else {
			dc_debug("sqlite: %s: sector %llu holds %d bytes, expected %u",
				 l->path, (unsigned long long)s,
				 sqlite3_column_bytes(st, 1), l->ss);
			ret = DC_E_IO;
			break;
		}
		next = s + 1;
		if (next < req->sector + n)
			sq_buf_advance(&rest, l->ss);
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		ret = sq_io_error(l, c->db, rc);
	sqlite3_reset(st);
	if (ret)
		sq_reader_end(c);
	sq_reader_put(l, c);
	if (ret == 0) {
		if (req->marker && next > run)
			dc_marker_set(req->marker, run, next - run);
		else if (!req->marker && next < req->sector + n)
			dc_buf_zero(&rest, 0, (req->sector + n - next) * l->ss);
	}
	return ret;
}

static int sq_put_sectors(struct sq_layer *l, struct dc_req *req, sqlite3_stmt *st)
{
	uint64_t n = req->buf.len / l->ss;
	struct dc_buf rest = req->buf;
	uint8_t small[4096], *tmp = small;
	int rc = SQLITE_OK;

	if (l->ss > sizeof(small) && !(tmp = malloc(l->ss)))
		return SQLITE_NOMEM;
	for (uint64_t i = 0; i < n; i++) {
		const uint8_t *p = sq_buf_sector(&rest, l->ss, tmp);

		sqlite3_bind_int64(st, 1, (sqlite3_int64)(req->sector + i));
		if (sq_is_zero(p, l->ss))
			sqlite3_bind_null(st, 2);
		else
			sqlite3_bind_blob(st, 2, p, (int)l->ss, SQLITE_STATIC);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			break;
		rc = SQLITE_OK;
		if (i + 1 < n)
			sq_buf_advance(&rest, l->ss);
	}
	sqlite3_clear_bindings(st);
	if (tmp != small)
		free(tmp);
	return rc;
}

/* The SQL of one write-type request, inside the writer's open transaction. */
static int sq_apply(struct sq_layer *l, struct sq_conn *w, struct dc_req *req)
{
	sqlite3_stmt *st;
	int rc;

	switch (req->op) {
	case DC_OP_WRITE:
		st = w->st[req->flags & DC_IO_NO_OVERWRITE ? SQ_PUT_NEW : SQ_PUT];
		return sq_put_sectors(l, req, st);
	case DC_OP_UNMAP:
		/* Below reads as zero: forget the sectors; else store zero sectors. */
		st = w->st[req->flags & DC_IO_NEXT_IS_ZERO ? SQ_DELETE : SQ_ZERO];
		sqlite3_bind_int64(st, 1, (sqlite3_int64)req->sector);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)(req->sector + req->count));
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		return rc == SQLITE_DONE ? SQLITE_OK : rc;
	default:
		return SQLITE_OK; /* flush: the commit does the work */
	}
}

/* Requests that must be durable when they complete. */
static bool sq_needs_sync(const struct dc_req *req)
{
	return req->op == DC_OP_FLUSH ||
	       (req->op == DC_OP_WRITE && (req->flags & DC_IO_FUA));
}

/* Run reqs[0..n) in one transaction and complete them. Anything synced commits
 * with synchronous=FULL, which fsyncs the WAL and so every earlier commit. If
 * a request fails, the batch is rolled back and each runs on its own, so one
 * request's error never becomes another's. */
static void sq_commit_batch(struct sq_layer *l, struct dc_req **reqs, unsigned n)
{
	struct sq_conn *w = l->writer;
	bool sync = false, changes = false;
	int rc, result;

	for (unsigned i = 0; i < n; i++) {
		sync |= sq_needs_sync(reqs[i]);
		changes |= reqs[i]->op != DC_OP_FLUSH;
	}
	if (!changes && !l->dirty) {
		/* Only flushes, and nothing committed since the last sync. */
		for (unsigned i = 0; i < n; i++)
			dc_complete(reqs[i], 0);
		return;
	}
	rc = sync ? sq_step(w, SQ_SYNC_FULL) : SQLITE_OK;
	if (rc == SQLITE_OK)
		rc = sq_step(w, SQ_BEGIN);
	for (unsigned i = 0; rc == SQLITE_OK && i < n; i++)
		rc = sq_apply(l, w, reqs[i]);
	/* A commit that changes nothing syncs nothing: dirty the header page. */
	if (rc == SQLITE_OK && !changes)
		rc = sq_step(w, SQ_TOUCH);
	if (rc == SQLITE_OK)
		rc = sq_step(w, SQ_COMMIT);
	if (rc != SQLITE_OK && !sqlite3_get_autocommit(w->db))
		sq_step(w, SQ_ROLLBACK);
	result = rc == SQLITE_OK ? 0 : sq_io_error(l, w->db, rc);
	if (sync && sq_step(w, SQ_SYNC_NORMAL) != SQLITE_OK && result == 0)
		result = sq_io_error(l, w->db, SQLITE_ERROR);
	if (result == 0) {
		l->dirty = !sync;
		atomic_fetch_add(&l->gen, 1);
	}
	if (result != 0 && n > 1) {
		for (unsigned i = 0; i < n; i++)
			sq_commit_batch(l, &reqs[i], 1);
		return;
	}
	for (unsigned i = 0; i < n; i++)
		dc_complete(reqs[i], result);
}

/* Copy the WAL back into the database while the writer goes on writing
 * (a passive checkpoint blocks neither writers nor readers). */
static void sq_ckpt_job(void *arg)
{
	struct sq_layer *l = arg;

	sq_readers_release(l);
	if (!l->ckpt && sq_conn_open(l->path, true, &l->ckpt) < 0)
		dc_debug("sqlite: %s: checkpoint connection failed", l->path);
	if (l->ckpt) {
		sqlite3_wal_autocheckpoint(l->ckpt->db, 0);
		if (sqlite3_wal_checkpoint_v2(l->ckpt->db, NULL,
					      SQLITE_CHECKPOINT_PASSIVE, NULL,
					      NULL) != SQLITE_OK)
			dc_debug("sqlite: %s: checkpoint: %s", l->path,
				 sqlite3_errmsg(l->ckpt->db));
	}
	pthread_mutex_lock(&l->qlock);
	l->ckactive = false;
	pthread_cond_broadcast(&l->qidle);
	pthread_mutex_unlock(&l->qlock);
}

/* After each commit of the writer (replaces SQLite's auto-checkpoint). */
static int sq_wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
	struct sq_layer *l = arg;
	bool start;

	if (frames < SQ_CKPT_FRAMES)
		return SQLITE_OK;
	if (frames >= SQ_CKPT_FORCE) {
		sq_readers_release(l);
		sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL,
					  NULL);
		return SQLITE_OK;
	}
	pthread_mutex_lock(&l->qlock);
	start = !l->ckactive;
	l->ckactive = true;
	pthread_mutex_unlock(&l->qlock);
	if (start)
		dc_debug("sqlite: %s: checkpointing %d WAL frames", l->path, frames);
	if (start && dc_pool_run(sq_ckpt_job, l) < 0) {
		pthread_mutex_lock(&l->qlock);
		l->ckactive = false;
		pthread_cond_broadcast(&l->qidle);
		pthread_mutex_unlock(&l->qlock);
	}
	return SQLITE_OK;
}

/* The writer: one pool job at a time drains the queue, a batch per
 * transaction, so concurrent writes share commits. */
static void sq_writer_job(void *arg)
{
	struct sq_layer *l = arg;
	struct dc_req *batch[SQ_BATCH_MAX];

	pthread_mutex_lock(&l->qlock);
	while (l->qhead) {
		unsigned n = 0;

		while (l->qhead && n < SQ_BATCH_MAX) {
			struct sq_rctx *rc = l->qhead->ctx;

			batch[n++] = l->qhead;
			l->qhead = rc->next;
		}
		pthread_mutex_unlock(&l->qlock);
		sq_commit_batch(l, batch, n);
		pthread_mutex_lock(&l->qlock);
	}
	l->qactive = false;
	pthread_cond_broadcast(&l->qidle);
	pthread_mutex_unlock(&l->qlock);
}

static void sq_read_job(void *arg)
{
	struct dc_req *req = arg;
	struct sq_rctx *rc = req->ctx;

	/* The last thing the job does: the disk may be closed after it. */
	dc_complete(req, sq_read(rc->l, req));
}

/* Refuse what needs no SQL; returns 1 for a request the writer must run. */
static int sq_check(struct sq_layer *l, struct dc_req *req)
{
	uint64_t n = req->count;

	switch (req->op) {
	case DC_OP_WRITE:
		if (req->buf.len % l->ss)
			return DC_E_INVALID_INPUT;
		n = req->buf.len / l->ss;
		if (!sq_range_ok(l, req->sector, n))
			return DC_E_ILLEGAL_BLOCK;
		/* A read cache is read-only except for population. */
		if (!l->writer || (l->logical_ro && !(req->flags & DC_IO_NO_OVERWRITE)))
			return DC_E_READ_ONLY;
		return n ? 1 : 0;
	case DC_OP_UNMAP:
		if (!sq_range_ok(l, req->sector, n))
			return DC_E_ILLEGAL_BLOCK;
		if (!l->writer || l->logical_ro)
			return DC_E_READ_ONLY;
		/* An empty range never reaches SQL (OpenVMM's count == 0 underflow). */
		return n ? 1 : 0;
	case DC_OP_FLUSH:
		return l->writer ? 1 : 0;
	default:
		return DC_E_UNSUPPORTED;
	}
}

static void sq_submit(void *inst, struct dc_req *req)
{
	struct sq_layer *l = inst;
	struct sq_rctx *rc = req->ctx;
	bool start;
	int r;

	rc->l = l;
	rc->next = NULL;
	if (req->op == DC_OP_READ) {
		if (dc_pool_run(sq_read_job, req) < 0)
			dc_complete_detail(req, DC_E_IO, ENOMEM);
		return;
	}
	r = sq_check(l, req);
	if (r <= 0) {
		dc_complete(req, r);
		return;
	}
	pthread_mutex_lock(&l->qlock);
	if (l->qhead)
		((struct sq_rctx *)l->qtail->ctx)->next = req;
	else
		l->qhead = req;
	l->qtail = req;
	start = !l->qactive;
	l->qactive = true;
	pthread_mutex_unlock(&l->qlock);
	if (start && dc_pool_run(sq_writer_job, l) < 0) {
		/* No worker: run the queue here rather than strand it. */
		sq_writer_job(l);
	}
}

/* --- Open, attach, close ------------------------------------------------------- */

static void sq_fill_info(const struct sq_layer *l, struct dc_info *info)
{
	memset(info, 0, sizeof(*info));
	info->sector_count = l->count;
	info->sector_size = l->ss ? l->ss : 512;
	info->physical_sector_size = info->sector_size;
	info->optimal_unmap_sectors = 1;
	info->unmap_behavior = DC_UNMAP_ZEROES;
	if (l->read_only || l->logical_ro)
		info->flags |= DC_INFO_READ_ONLY;
	if (!l->read_only)
		info->flags |= DC_INFO_FUA_RESPECTED | DC_INFO_CAN_READ_CACHE;
	snprintf(info->disk_type, sizeof(info->disk_type), "sqlite");
}

/* Give up the claim on the file dc_create_open() made; with remove, unlink it
 * too if the name still leads to it (the database was never formatted). */
static void sq_unclaim(struct sq_layer *l, bool remove)
{
	struct stat a, b;

	if (l->claim_fd < 0)
		return;
	if (remove && fstat(l->claim_fd, &a) == 0 && stat(l->path, &b) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		unlink(l->path);
	close(l->claim_fd);
	l->claim_fd = -1;
}

/* Format the database into the claimed file's place. */
static int sq_create_claimed(struct sq_layer *l, uint64_t count, uint32_t ss)
{
	int ret = sq_create(l->path, count, ss, false, true);

	if (ret < 0)
		return ret;
	sq_unclaim(l, false);
	l->created = true;
	return sq_open_db(l);
}

/* ;overwrite replaces the file, but a WAL with frames in it (left by a writer
 * that crashed, or a live one outside diskcore) would then be replayed into
 * the new database. */
static int sq_overwrite_ok(const char *path)
{
	char wal[PATH_MAX];
	struct stat st;

	snprintf(wal, sizeof(wal), "%s-wal", path);
	if (stat(wal, &st) != 0 || st.st_size == 0)
		return 0;
	dc_error("%s: cannot overwrite: the database is open, or was not closed "
		 "cleanly (%s holds commits; open it once without ;overwrite to "
		 "recover them)",
		 path, wal);
	return -EBUSY;
}

static void sq_close(void *inst)
{
	struct sq_layer *l = inst;
	struct sq_conn *c, *next;

	if (!l)
		return;
	/* The writer and checkpoint jobs may still be finishing their last step. */
	pthread_mutex_lock(&l->qlock);
	while (l->qactive || l->ckactive)
		pthread_cond_wait(&l->qidle, &l->qlock);
	pthread_mutex_unlock(&l->qlock);
	sq_handle_put(l->handle, true);
	/* Readers first: the writer's close, as the last, checkpoints the WAL. */
	for (c = l->all; c; c = next) {
		next = c->next_all;
		sq_conn_close(c);
	}
	sq_conn_close(l->ckpt);
	sq_conn_close(l->writer);
	sq_unclaim(l, true);
	if (l->lock_fd >= 0)
		close(l->lock_fd);
	pthread_mutex_destroy(&l->qlock);
	pthread_cond_destroy(&l->qidle);
	pthread_mutex_destroy(&l->rlock);
	free(l->path);
	free(l->key);
	free(l->cache_root);
	free(l);
}

static int sq_open_auto(struct sq_layer *l, const struct dc_open_args *a)
{
	const char *root = getenv("DISKCORE_AUTO_CACHE_PATH");

	if (!root || !*root)
		root = getenv("OPENVMM_AUTO_CACHE_PATH");
	if (!root || !*root) {
		dc_error("no cache directory: set DISKCORE_AUTO_CACHE_PATH (or "
			 "OPENVMM_AUTO_CACHE_PATH)");
		return -EINVAL;
	}
	/* The key names one directory under the cache root. */
	if (a->nfields > 0 && a->fields[0][0]) {
		const char *k = a->fields[0];

		if (strchr(k, '/') || k[0] == '.') {
			dc_error("key '%s': expected a name without '/' that does not "
				 "start with '.'",
				 k);
			return -EINVAL;
		}
		if (!(l->key = strdup(k)))
			return -ENOMEM;
	}
	if (!(l->cache_root = strdup(root)))
		return -ENOMEM;
	return 0;
}

static int sq_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct sq_layer *l;
	uint64_t create_len = 0;
	bool create, created;
	int fd, ret;

	l = calloc(1, sizeof(*l));
	if (!l) {
		dc_error("out of memory");
		return -ENOMEM;
	}
	l->claim_fd = -1;
	l->lock_fd = -1;
	l->handle = calloc(1, sizeof(*l->handle));
	if (!l->handle) {
		free(l);
		dc_error("out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&l->handle->lock, NULL);
	l->handle->l = l;
	l->handle->refs = 1;
	pthread_mutex_init(&l->qlock, NULL);
	pthread_cond_init(&l->qidle, NULL);
	pthread_mutex_init(&l->rlock, NULL);
	l->read_only = a->read_only;
	l->form = !strcmp(a->form, "autocache") ? SQ_AUTO :
		  !strcmp(a->form, "sqldiff")	? SQ_DIFF :
						  SQ_SQL;
	if (l->form == SQ_AUTO) {
		ret = sq_open_auto(l, a);
		if (ret == -ENOMEM)
			dc_error("out of memory");
		if (ret < 0)
			goto fail;
		goto done;
	}

	if (a->nfields < 1 || !a->fields[0][0]) {
		dc_error("missing path (expected %s)",
			 l->form == SQ_SQL ? "sql:PATH[;create=SIZE]" :
					     "sqldiff:PATH[;create]:SPEC");
		ret = -EINVAL;
		goto fail;
	}
	if (!(l->path = strdup(a->fields[0]))) {
		dc_error("out of memory");
		ret = -ENOMEM;
		goto fail;
	}
	if (l->form == SQ_SQL)
		create = dc_opt_num(a, "create", &create_len);
	else
		create = dc_opt_flag(a, "create");
	if (create && l->form == SQ_SQL &&
	    (create_len == 0 || create_len % 512 || !sq_size_ok(create_len / 512, 512))) {
		dc_error("create=%llu: expected a non-zero multiple of 512 bytes",
			 (unsigned long long)create_len);
		ret = -EINVAL;
		goto fail;
	}
	if (create && !l->read_only && dc_opt_flag(a, "overwrite")) {
		ret = sq_overwrite_ok(l->path);
		if (ret < 0)
			goto fail;
	}
	fd = dc_create_open(a, l->path, create ? O_CREAT : 0, &created);
	if (fd == -ENOENT && !create)
		dc_error("%s: no such database (add ;create%s to make one)", l->path,
			 l->form == SQ_SQL ? "=SIZE" : "");
	if (fd < 0) {
		ret = fd;
		goto fail;
	}
	if (created) {
		l->claim_fd = fd;
		if (l->form == SQ_DIFF) {
			l->create = true; /* sized from the disk below, at attach */
			goto done;
		}
		ret = sq_create_claimed(l, create_len / 512, 512);
		if (ret < 0)
			goto fail;
		goto done;
	}
	close(fd);
	l->fit_lower = create && l->form == SQ_DIFF;
	ret = sq_open_db(l);
	if (ret == 0 && create && l->form == SQ_SQL && l->count * l->ss != create_len) {
		dc_error("%s: exists with %llu bytes, not the %llu of create= (it was "
			 "opened, not replaced: add ;overwrite to replace it)",
			 l->path, (unsigned long long)(l->count * l->ss),
			 (unsigned long long)create_len);
		ret = -EEXIST;
	}
	if (ret < 0)
		goto fail;
done:
	sq_fill_info(l, info);
	*inst = l;
	return 0;
fail:
	sq_close(l);
	return ret;
}

static int sq_attach(void *inst, const struct dc_info *lower, struct dc_info *info)
{
	struct sq_layer *l = inst;
	int ret = 0;

	if (l->form == SQ_AUTO) {
		ret = sq_auto_attach(l, lower);
	} else if (l->create) {
		uint32_t ss = lower ? lower->sector_size : 512;
		uint64_t count = lower ? lower->sector_count : 0;

		if (!sq_size_ok(count, ss)) {
			dc_error("%s: cannot size a new diff layer from the disk below "
				 "(%llu sectors of %u bytes)",
				 l->path, (unsigned long long)count, ss);
			return -EINVAL;
		}
		ret = sq_create_claimed(l, count, ss);
		l->create = false;
	} else if (l->fit_lower && lower) {
		ret = sq_check_fit(l, lower, "exists with",
				   " (it was opened, not replaced: add ;overwrite to "
				   "replace it)",
				   -EEXIST);
	}
	if (ret < 0)
		return ret;
	sq_fill_info(l, info);
	return 0;
}

static void sq_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct sq_layer *l = inst;
	char num[32];

	if (l->path)
		kv(arg, "path", l->path);
	if (l->form == SQ_AUTO) {
		kv(arg, "cache_root", l->cache_root);
		kv(arg, "key", l->key ? l->key : "(disk id of the disk below)");
	}
	snprintf(num, sizeof(num), "%llu", (unsigned long long)l->count);
	kv(arg, "sector_count", num);
	snprintf(num, sizeof(num), "%u", l->ss);
	kv(arg, "sector_size", num);
	kv(arg, "logically_read_only", l->logical_ro ? "yes" : "no");
	kv(arg, "journal", "wal");
	if (l->created)
		kv(arg, "created", "yes");
	pthread_mutex_lock(&l->rlock);
	snprintf(num, sizeof(num), "%u", l->nreaders);
	pthread_mutex_unlock(&l->rlock);
	kv(arg, "reader_connections", num);
	kv(arg, "sqlite_version", sqlite3_libversion());
}

static const struct dc_option sq_sql_options[] = {
	{ .name = "create",
	  .type = DC_OPT_SIZE,
	  .help = "create a missing database of SIZE bytes (an existing one opens "
		  "unchanged)" },
	{ .name = "overwrite",
	  .type = DC_OPT_FLAG,
	  .help = "with create=: replace an existing database" },
	{ 0 },
};

static const struct dc_option sq_diff_options[] = {
	{ .name = "create",
	  .type = DC_OPT_FLAG,
	  .help = "create a missing database sized from the disk below (an existing "
		  "one opens unchanged)" },
	{ .name = "overwrite",
	  .type = DC_OPT_FLAG,
	  .help = "with create: replace an existing database" },
	{ 0 },
};

static const struct dc_form sq_forms[] = {
	{ .name = "sql",
	  .nfields = 1,
	  .child = DC_CHILD_NONE,
	  .flags = 0,
	  .syntax = "sql:PATH[;create=SIZE[;overwrite]]",
	  .help = "a disk in a SQLite database (OpenVMM's .dbhd format)",
	  .options = sq_sql_options },
	{ .name = "sqldiff",
	  .nfields = 1,
	  .child = DC_CHILD_ONE,
	  .flags = 0,
	  .syntax = "sqldiff:PATH[;create[;overwrite]]:SPEC",
	  .help = "a persistent diff layer in a SQLite database over SPEC",
	  .options = sq_diff_options },
	{ .name = "autocache",
	  .nfields = 1,
	  .child = DC_CHILD_ONE,
	  .flags = DC_FORM_READ_CACHE,
	  .syntax = "autocache:[KEY]:SPEC",
	  .help = "a persistent read cache over SPEC in $DISKCORE_AUTO_CACHE_PATH/KEY",
	  .options = NULL },
	{ 0 },
};

DC_PLUGIN(sq_plugin) = {
	.kind = DC_KIND_LAYER,
	.name = "sqlite",
	.version = "0.1.0",
	.summary =
		"persistent sparse layer in a SQLite database (sql:, sqldiff:, autocache:)",
	.usage =
		"sql:PATH[;create=SIZE]       a disk of its own (512-byte sectors)\n"
		"sqldiff:PATH[;create]:SPEC   a diff layer over SPEC, sized from it\n"
		"autocache:[KEY]:SPEC         a read cache over SPEC in\n"
		"    $DISKCORE_AUTO_CACHE_PATH (or $OPENVMM_AUTO_CACHE_PATH)/KEY/cache.dbhd;\n"
		"    an empty KEY uses the disk id of SPEC as 32 hex digits.\n"
		"  The format is OpenVMM's: a row per sector (NULL = zeroes), JSON meta,\n"
		"  WAL journal. Without ;create the database must exist; with it, a\n"
		"  missing one is made and an existing one opens unchanged (;overwrite\n"
		"  replaces it); a read-only open never creates one. Flush and FUA\n"
		"  sync the WAL; unmap reads back zeroes.",
	.forms = sq_forms,
	.ctx_size = sizeof(struct sq_rctx),
	.ops = DC_OP_BIT(DC_OP_READ) | DC_OP_BIT(DC_OP_WRITE) | DC_OP_BIT(DC_OP_FLUSH) |
	       DC_OP_BIT(DC_OP_UNMAP),
	.open = sq_open,
	.close = sq_close,
	.submit = sq_submit,
	.attach = sq_attach,
	.describe = sq_describe,
};
