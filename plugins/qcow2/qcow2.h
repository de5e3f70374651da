/* SPDX-License-Identifier: MIT */
/* qcow2: QEMU copy-on-write images, version 2 and 3, read-only, as a layer of
 * the core's layered disk (docs/spec-strings.md, "qcow2"). What the files of
 * this plugin share: the decoded header, the L2 cache and the entry points of
 * each file. The files call one way, top to bottom (docs/architecture.md):
 * qcow2.c (the plugin glue); aio.c; resize.c, write.c; read.c with below.c
 * (a qcow2 backing image is read through image.c and read.c again: the one
 * recursion); backing.c, image.c, repair.c, check.c; l2.c, meta.c,
 * refcount.c, infl.c; create.c, header.c, compress.c. */
#ifndef DISKCORE_PLUGIN_QCOW2_H
#define DISKCORE_PLUGIN_QCOW2_H

#include <diskcore/plugin.h>

#include "ioengine/ioengine.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
/* The largest L1 table read (QEMU's limit too): 32 MiB of entries. */
#define QCOW2_MAX_L1_BYTES (32u << 20)
#define QCOW2_MAX_BACKING_NAME 1023
#define QCOW2_MAX_SNAPSHOTS 65536

/* Incompatible feature bits. */
#define QCOW2_INCOMPAT_DIRTY (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2 (1ull << 4)
#define QCOW2_INCOMPAT_KNOWN                                                        \
	(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_DATA_FILE | \
	 QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_EXTL2)

enum qcow2_ctype { QCOW2_ZLIB = 0, QCOW2_ZSTD = 1 };

/* Table entry bits. */
#define QCOW2_OFFSET_MASK 0x00fffffffffffe00ull /* bits 9-55 */
#define QCOW2_L2_COMPRESSED (1ull << 62)
#define QCOW2_L2_ZERO 1ull	  /* standard cluster, v3 */
#define QCOW2_COPIED (1ull << 63) /* L1/L2: the cluster's refcount is exactly 1 */
#define QCOW2_COMPAT_LAZY_REFCOUNTS 1ull
/* Header field offsets the write path updates in place. */
#define QCOW2_HDR_RCT_OFF 48	  /* refcount_table_offset, then _clusters */
#define QCOW2_HDR_INCOMPAT_OFF 72 /* incompat, compat, autoclear */

/* What one guest cluster (or subcluster) maps to. */
enum qcow2_kind {
	QCOW2_UNALLOC,	  /* falls through to the layer below */
	QCOW2_ZERO,	  /* reads as zeroes, held by this layer */
	QCOW2_DATA,	  /* at host offset off */
	QCOW2_COMPRESSED, /* a compressed cluster at off, clen bytes */
};

struct qcow2_map {
	enum qcow2_kind kind;
	uint64_t off;  /* DATA: host offset of the guest offset asked for */
	uint64_t clen; /* COMPRESSED: bytes of compressed data */
	uint64_t len;  /* guest bytes from the asked offset with this mapping */
};

/* The header as on disk (big-endian there, host order once decoded by
 * header.c); a version 2 header stops at incompat, which then reads as
 * version 3's defaults. */
struct qcow2_hdr {
	uint32_t magic;
	uint32_t version;
	uint64_t backing_off;
	uint32_t backing_len;
	uint32_t cluster_bits;
	uint64_t size;
	uint32_t crypt_method;
	uint32_t l1_size;
	uint64_t l1_off;
	uint64_t refcount_off;
	uint32_t refcount_clusters;
	uint32_t nb_snapshots;
	uint64_t snapshots_off;
	/* version 3 */
	uint64_t incompat;
	uint64_t compat;
	uint64_t autoclear;
	uint32_t refcount_order;
	uint32_t header_len;
	uint8_t compression; /* when header_len > 104 */
	uint8_t pad[7];
} __attribute__((packed));
_Static_assert(sizeof(struct qcow2_hdr) == 112, "the v3 header is 112 bytes");

struct qcow2_l2slot {
	uint64_t l2_off; /* 0: empty */
	uint64_t used;	 /* LRU clock */
	bool dirty;	 /* changed in memory, written at the next flush */
};

/* A cluster run whose refcount drops once the L2 change that stopped
 * referencing it is on disk (write.c flushes, then frees). */
struct qcow2_free {
	uint64_t off;
	uint64_t n;
};

struct qcow2_below;

/* Guest clusters [c0, c1) an in-place data write is writing (aio.c): a
 * writer that moves, frees or rewrites one of them waits for it first. */
struct qcow2_infl {
	uint64_t c0, c1;
	const void *owner;
};

struct qcow2_snap {
	char *name;
	char *id;
	uint64_t l1_off;
	uint32_t l1_size;
	uint64_t size; /* the disk size when taken (v3 extra data), else 0 */
};

struct qcow2 {
	char *path;
	char *dir; /* the real directory of the image */
	int fd;
	uint64_t file_size;
	struct qcow2_hdr h;
	uint32_t cluster_size;
	uint32_t l2_entries;  /* entries per L2 table */
	uint32_t entry_shift; /* log2 of an L2 entry's bytes: 3, or 4 (extended) */
	bool extl2;
	uint32_t sc_size; /* subcluster bytes (extended L2), else cluster_size */
	uint64_t *l1;
	char *backing;	   /* backing_file as stored, or NULL */
	char *backing_fmt; /* the backing format extension, or NULL */
	char *parent;	   /* the resolved real path of the backing file */
	const char *parent_form;
	bool parents_any;
	struct qcow2_snap *snaps;
	uint32_t nsnap;
	uint64_t snaps_len;   /* bytes of the snapshot table */
	const char *snapshot; /* the snapshot opened (read-only), or NULL */
	struct dc_node *node;
	bool writable;
	bool created;	  /* this open made the image */
	bool force_share; /* DC_OPEN_FORCE_SHARE: read-only, no lock taken */

	/* The L2 cache: nslots tables, looked up by offset under lock. */
	pthread_mutex_t lock;
	uint32_t nslots;
	uint64_t clock;
	struct qcow2_l2slot *slots;
	uint8_t *l2buf; /* nslots * cluster_size */
	uint64_t l2_cache_bytes;
	/* The last compressed cluster inflated (read.c), under lock: a reader
	 * going through one in small requests inflates it once. */
	uint64_t zc_off; /* its host offset; UINT64_MAX: none */
	uint8_t *zc_buf; /* cluster_size bytes */

	/* Writing (refcount.c, write.c), all under lock. */
	pthread_cond_t busy_cond;
	uint64_t *busy; /* guest clusters being allocated: others wait */
	uint32_t nbusy, busy_cap;
	bool l1_dirty;
	bool need_sync;	       /* data or refcounts written since the last flush */
	uint32_t rc_bits;      /* 1 << refcount_order */
	uint64_t rc_per_block; /* refcounts in one refcount block */
	uint64_t rct_cap;      /* entries the refcount table holds */
	uint64_t *rct;	       /* the refcount table, host order */
	uint8_t **rcb;	       /* loaded refcount blocks, by table index */
	uint8_t *rcd;	       /* 1: rcb[i] changed since written */
	uint64_t *rc_dirty;    /* the changed blocks' indexes */
	uint32_t nrc_dirty, rc_dirty_cap;
	uint64_t free_hint; /* no free cluster below this index */
	struct qcow2_free *frees;
	uint32_t nfrees, frees_cap;

	/* In-place data writes in flight (aio.c): added under lock and
	 * infl_lock, removed under infl_lock alone (a completion never waits
	 * for lock, which a flush holds across fdatasync); infl_waiters: pool
	 * writers waiting for some to finish, who need a broadcast. */
	pthread_mutex_t infl_lock;
	struct qcow2_infl *infl;
	uint32_t ninfl, infl_cap, infl_waiters;
	bool data_dirty; /* atomic: in-place data written since the last flush */

	struct ioe_file *ioe; /* data I/O (aio.c), on aio_fd */
	int aio_fd;

	/* The layer below, read for copy-on-write (below.c). */
	pthread_mutex_t below_lock;
	struct qcow2_below *below;
};

/* header.c: read, decode and check the header, its extensions and the
 * snapshot table; fills q->h, the geometry, backing names and snapshots. */
int qcow2_read_header(struct qcow2 *q);
/* Decode and check the header and its extensions from raw, the first len
 * bytes of the file (up to one cluster), against q->file_size: what
 * qcow2_read_header() does before the snapshot table; the fuzz target's entry. */
int qcow2_parse_header(struct qcow2 *q, const uint8_t *raw, size_t len);

/* header.c: a v3 header as on disk (112 bytes). */
void qcow2_encode_hdr(uint8_t *raw, const struct qcow2_hdr *h);

/* create.c: write a new image into the empty file fd, as the options of a
 * (create=SIZE, cluster=SIZE, parent=PATH) ask; -errno after a message. */
int qcow2_create(const struct dc_open_args *a, const char *path, int fd);
/* An existing image opened with create= or parent=: is it what they
 * describe (docs/spec-strings.md, Creating images)? 0, or -EEXIST. */
int qcow2_check_existing(const struct dc_open_args *a, struct qcow2 *q);

/* l2.c: the L1 table and the L2 cache. */
int qcow2_l1_load(struct qcow2 *q);
int qcow2_l2_cache_init(struct qcow2 *q, uint64_t bytes);
/* The cached L2 table at l2_off, read on a miss (a dirty victim is flushed
 * first); under lock. */
int qcow2_l2_get(struct qcow2 *q, uint64_t l2_off, uint8_t **tab, uint32_t *slot);
/* The cached L2 table at l2_off without reading: -ENOENT on a miss. */
int qcow2_l2_peek(struct qcow2 *q, uint64_t l2_off, uint8_t **tab, uint32_t *slot);
/* A new, zeroed, dirty L2 table at l2_off in the cache; under lock. */
int qcow2_l2_new(struct qcow2 *q, uint64_t l2_off, uint8_t **tab, uint32_t *slot);
/* Map guest byte offset goff (inside the disk): fills *m. -errno on a read
 * error or a corrupt entry (after a debug message). */
int qcow2_map(struct qcow2 *q, uint64_t goff, struct qcow2_map *m);
/* qcow2_map() that does not wait for the image lock: -EAGAIN when it is
 * taken (a pool writer, a flush syncing). */
int qcow2_map_nowait(struct qcow2 *q, uint64_t goff, struct qcow2_map *m);
/* Decode one L2 entry (and its bitmap, extended L2) for guest offset goff. */
int qcow2_decode_l2(const struct qcow2 *q, uint64_t entry, uint64_t bitmap, uint64_t goff,
		    struct qcow2_map *m);

/* compress.c: inflate a compressed cluster into dst (cluster_size bytes). */
int qcow2_decompress(enum qcow2_ctype type, const uint8_t *src, size_t slen, uint8_t *dst,
		     size_t dlen);

/* read.c: the blocking read of a request. */
int qcow2_read(struct qcow2 *q, struct dc_req *req);
/* Grow a data mapping m of n bytes at goff over the mappings that continue
 * it in the file, up to max bytes (nowait: through qcow2_map_nowait()). */
uint64_t qcow2_extend_data(struct qcow2 *q, const struct qcow2_map *m, uint64_t goff,
			   uint64_t n, uint64_t max, bool nowait);
/* Guest bytes [goff, goff+len) into buf as this image and its backing chain
 * hold them (zeroes past the disk's end): the copy-on-write source. */
int qcow2_read_buf(struct qcow2 *q, uint64_t goff, uint8_t *buf, size_t len);
/* len bytes at guest offset goff as mapping m gives them (unallocated: from
 * the layer below). */
int qcow2_read_map(struct qcow2 *q, const struct qcow2_map *m, uint64_t goff,
		   uint8_t *buf, size_t len);

/* refcount.c: refcounts, kept on disk as they change (under lock). */
int qcow2_rc_load(struct qcow2 *q);
void qcow2_rc_free(struct qcow2 *q);
int qcow2_rc_get(struct qcow2 *q, uint64_t ci, uint64_t *val);
/* Entry i of refcount block b, entries of bits bits; and setting it. */
uint64_t qcow2_rc_entry(const uint8_t *b, uint64_t i, unsigned bits);
void qcow2_rc_entry_put(uint8_t *b, uint64_t i, unsigned bits, uint64_t v);
/* Add delta to the refcount of the clusters [ci, ci+n), in memory. */
int qcow2_rc_add(struct qcow2 *q, uint64_t ci, uint64_t n, int delta);
/* Write the refcount blocks changed in memory. */
int qcow2_rc_write(struct qcow2 *q);
/* Name the refcount table of clusters clusters at off (written) in the
 * header: synced before and after. */
int qcow2_rc_name_table(struct qcow2 *q, uint64_t off, uint64_t clusters);
/* n free clusters in a row, refcount 1, the file grown over them: *off. */
int qcow2_alloc(struct qcow2 *q, uint64_t n, uint64_t *off);

/* write.c: writes and unmaps. */
int qcow2_write(struct qcow2 *q, struct dc_req *req);
int qcow2_unmap(struct qcow2 *q, struct dc_req *req);
/* Whether unmapped sectors read as zero (version 3, or nothing below). */
bool qcow2_unmap_zeroes(const struct qcow2 *q);
/* Whether a write of [in, in+len) of a cluster whose L2 entry is e (bitmap
 * bm) can go straight to the cluster it names: data, refcount 1 (COPIED), not
 * compressed, not zero, its subclusters allocated. */
bool qcow2_in_place(const struct qcow2 *q, uint64_t e, uint64_t bm, uint64_t in,
		    uint64_t len);
/* Whether guest cluster ci is being allocated (a writer holds it). */
bool qcow2_busy(const struct qcow2 *q, uint64_t ci);

/* below.c: the layer below for copy-on-write, opened on first use. */
int qcow2_below_read(struct qcow2 *q, uint64_t goff, uint8_t *buf, size_t len);
void qcow2_below_close(struct qcow2 *q);

/* resize.c: dc_resize() (grow only), the live size, dc_map()'s extents. */
int qcow2_resize(void *inst, uint64_t new_sector_count);
uint64_t qcow2_sector_count(void *inst);
int qcow2_extents(void *inst, struct dc_node *node, uint64_t sector, uint64_t count,
		  uint64_t *run);

/* image.c: load an image (header, L1, L2 cache) from q->path, in two steps
 * or at once; free what it holds (not q itself, its locks or the layer
 * below). The header step writes nothing; a writable table load marks the
 * image in use. */
int qcow2_load_header(struct qcow2 *q);
int qcow2_load_tables(struct qcow2 *q, uint64_t cache);
int qcow2_load(struct qcow2 *q, uint64_t cache);
void qcow2_free(struct qcow2 *q);

/* meta.c: the metadata changed in memory to disk (qcow2_flush_locked():
 * under lock); the header's dirty bit. */
int qcow2_flush(struct qcow2 *q);
int qcow2_flush_locked(struct qcow2 *q);
int qcow2_set_dirty(struct qcow2 *q, bool dirty);

/* backing.c: resolve the backing file into q->parent and q->parent_form. */
int qcow2_resolve_backing(struct qcow2 *q);
/* parent_of for vhdfmt's chain check: the backing file of the qcow2 image at
 * path open as fd, as a malloc'd real path; NULL when none. Any backing file,
 * wherever it is (any is not asked): the check only looks for loops. */
char *qcow2_parent_of(int fd, const char *path, bool any);

/* check.c: dc_check()'s walk of the metadata on disk (ABI 1.1). */
int qcow2_check(void *inst, dc_check_report_fn report, void *arg);
/* check.c: what each of the *nclust clusters of the first fsize bytes of the
 * file is referenced by (header, L1 and L2 tables of the active image and of
 * the snapshots, snapshot table; not the refcount structures), in *use
 * (malloc'd). -EUCLEAN when a table is misplaced. */
int qcow2_count_refs(struct qcow2 *q, uint64_t fsize, uint32_t **use, uint64_t *nclust);

/* repair.c: rebuild the refcounts (and COPIED flags) of an image left dirty
 * with lazy refcounts, before a writable open loads them. */
int qcow2_repair(struct qcow2 *q);

/* aio.c: submit() and its queues; reads of data clusters and in-place
 * writes through the file engine, the rest through io() on the worker pool. */
struct qcow2_rq {
	struct ioe_req io; /* first: the done callback finds the request */
	struct dc_req *req;
	struct qcow2 *q;
};
int qcow2_aio_open(struct qcow2 *q);
void qcow2_aio_close(struct qcow2 *q);
const char *qcow2_aio_describe(const struct qcow2 *q);
void qcow2_submit(void *inst, struct dc_req *req);
int qcow2_queue_open(void *inst, void **qctx);
/* One request, blocking (the plugin's io()). */
int qcow2_io(void *inst, struct dc_req *req);

/* infl.c: room for element n of the array *arr of *cap elements (doubled). */
int qcow2_room(void **arr, uint32_t *cap, uint32_t n, size_t elem);
/* In-place writes in flight: register guest clusters [c0, c1) for owner
 * (under lock); drop owner's once its data is written (not under lock); wait
 * until none covers ci (under lock). */
int qcow2_infl_add(struct qcow2 *q, uint64_t c0, uint64_t c1, const void *owner);
void qcow2_infl_del(struct qcow2 *q, const void *owner);
void qcow2_infl_wait(struct qcow2 *q, uint64_t ci);
bool qcow2_infl_has(struct qcow2 *q, uint64_t ci);

#endif
