/* SPDX-License-Identifier: MIT */
/* vhdx: what the plugin's files share; the on-disk structures are
 * common/vhdfmt/vhdx_format.h. The files call each other one way only:
 *   vhdx.c         BAT check, allocation, I/O, open/close, the descriptor
 *     -> vhdx_create.c  new images, create= and parent=
 *     -> vhdx_meta.c    parsing up to the BAT, parents
 *          -> vhdx_log.c    headers, log replay, log writes
 *               -> vhdx_io.c     replayed reads, zeroing, the queue of
 *                                metadata sectors the log writes
 *     -> vhdx_aio.c     data I/O on the file engine, flush (-> vhdx_log.c)
 * Layouts and rules are from [MS-VHDX]; nothing here is exported (plugins.map). */
#ifndef DISKCORE_VHDX_H
#define DISKCORE_VHDX_H

#include "ioengine/ioengine.h"
#include "vhdfmt/open.h"
#include "vhdfmt/vhdfmt.h"
#include "vhdfmt/vhdx_format.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VHDX_KB 1024u
#define VHDX_MB (UINT64_C(1) << 20)
#define VHDX_HDR_OFF(slot) ((uint64_t)(64u + 64u * (slot)) * VHDX_KB)
#define VHDX_RT_OFF(copy) ((uint64_t)(192u + 64u * (copy)) * VHDX_KB)
#define VHDX_MAX_FILE (UINT64_C(1) << 47) /* 128 TiB: a 64 TiB disk and more */
#define VHDX_MAX_DISK (UINT64_C(64) << 40)
#define VHDX_CHUNK_SECTORS (UINT64_C(1) << 23) /* sectors one bitmap block covers */
#define VHDX_SB_SECS 256u		       /* 4 KiB sectors in a 1 MiB bitmap block */
#define VHDX_MAX_LOG (1u << 30)		       /* Hyper-V and qemu make 1 MiB logs */
#define VHDX_MAX_ENTRIES (UINT64_C(1) << 23)   /* BAT entries we agree to load */

/* BAT entry states ([MS-VHDX] 2.5.1.1 and 2.5.1.2): payload 0-3, 6 and 7;
 * 4 and 5 are reserved. Sector bitmap: 0 and 6. */
#define VHDX_PB_NOT_PRESENT 0u
#define VHDX_PB_UNDEFINED 1u
#define VHDX_PB_ZERO 2u
#define VHDX_PB_UNMAPPED 3u
#define VHDX_PB_FULL 6u
#define VHDX_PB_PARTIAL 7u
#define VHDX_SB_PRESENT 6u
#define VHDX_BAT_STATE(e) ((unsigned)((e)&7))
#define VHDX_BAT_OFF(e) ((e) & ~(VHDX_MB - 1))

static inline bool vhdx_guid_zero(const uint8_t g[16])
{
	for (int i = 0; i < 16; i++)
		if (g[i])
			return false;
	return true;
}

/* One update from a replayed log, kept in memory by a read-only open. */
struct vhdx_ovl {
	uint64_t off, len;
	uint8_t *data; /* len bytes, or NULL for zeroes */
};

/* The cached 4 KiB sectors of one chunk's sector bitmap block. */
struct vhdx_sbc {
	uint8_t *sec[VHDX_SB_SECS];
	uint64_t dirty[VHDX_SB_SECS / 64];
};

struct vhdx {
	struct vhdfmt_image img; /* first: the file, its engine (vhdx_aio.c), its opens */
	char *dir;		 /* the image's directory, absolute */
	bool ro;
	bool created;
	uint64_t file_size; /* as the (replayed) image sees it */
	uint64_t real_size; /* bytes in the file; reads past it are zeroes */

	struct vhdx_header hdr; /* the current header */
	int hdr_slot;		/* where it is: 0 at 64 KiB, 1 at 128 KiB */
	struct vhdx_ovl *ovl;	/* read-only replay: applied over every read */
	size_t novl;
	int log_state; /* enum vhdx_log_state, for describe */

	uint64_t bat_off, bat_len, meta_off, meta_len;
	uint64_t *xreg; /* other regions (offset, length pairs), kept as they are */
	uint32_t nxreg;
	uint32_t block_size, lss, pss;
	bool leave_alloc, diff;
	uint64_t disk_size;
	uint8_t page83[16];
	uint8_t linkage[16], linkage2[16];
	bool has_linkage2;
	char *loc_rel, *loc_abs, *loc_win32, *loc_vol; /* UTF-8, NULL if absent */

	uint32_t chunk_ratio;
	uint64_t nblocks;  /* payload blocks */
	uint64_t nchunks;  /* sector bitmap blocks */
	uint64_t nbat;	   /* BAT entries the disk needs */
	uint64_t nbat_mem; /* entries kept: nbat rounded up to whole 4 KiB sectors,
			    * or the BAT region's first MiB if more (room to grow) */
	uint64_t size_off; /* file offset of the virtual disk size item */
	uint32_t spb;	   /* sectors per block */
	unsigned spb_shift, ss_shift;
	uint64_t *bat; /* host order; entries change under lock, atomically */

	pthread_mutex_t lock; /* allocation, bitmaps, dirty lists, headers, log */
	bool session;	      /* FileWriteGuid renewed (first change this open) */
	bool data_changed;    /* DataWriteGuid renewed */
	bool log_live;	      /* the header carries this session's LogGuid */
	bool end_fixed;	      /* the file's end was trimmed to file_end */
	uint64_t file_end;    /* 1 MiB-aligned end of everything: new blocks go here */
	uint64_t log_head, log_seq;
	uint8_t *bat_dirty; /* bit per 4 KiB BAT sector queued for the log */
	uint64_t *keys;	    /* queued 4 KiB sectors, see vhdx_key_*() */
	size_t nkeys, keys_cap;
	struct vhdx_sbc **sbc; /* per chunk, NULL until used */
	uint8_t *meta_sec;     /* the VHDX_KEY_META sector queued, or NULL */

	char *parent_path;	   /* as resolved by lower_spec(), or named by parent= */
	uint8_t parent_page83[16]; /* the parent lower_spec() checked */
	bool parent_known;
};

enum vhdx_log_state {
	VHDX_LOG_CLEAN = 0,
	VHDX_LOG_REPLAYED,  /* replayed into the file at open */
	VHDX_LOG_IN_MEMORY, /* read-only: replayed over reads */
};

/* A queued metadata sector: a BAT sector, a sector of a bitmap block, or
 * (resize) the metadata region's sector at this file offset, from meta_sec. */
#define VHDX_KEY_SB (UINT64_C(1) << 63)
#define VHDX_KEY_META (UINT64_C(1) << 62)
static inline uint64_t vhdx_key_sb(uint64_t chunk, unsigned idx)
{
	return VHDX_KEY_SB | chunk << 8 | idx;
}

/* BAT index of payload block b, and of chunk c's sector bitmap block. */
static inline uint64_t vhdx_pidx(const struct vhdx *v, uint64_t b)
{
	return b + b / v->chunk_ratio;
}

static inline uint64_t vhdx_sbidx(const struct vhdx *v, uint64_t c)
{
	return c * (v->chunk_ratio + 1) + v->chunk_ratio;
}

static inline uint64_t vhdx_bat_get(const struct vhdx *v, uint64_t i)
{
	return __atomic_load_n(&v->bat[i], __ATOMIC_ACQUIRE);
}

/* Known GUIDs, as text (stored with the first three fields little-endian). */
#define VHDX_G_BAT "{2dc27766-f623-4200-9d64-115e9bfd4a08}"
#define VHDX_G_META "{8b7ca206-4790-4b9a-b8fe-575f050f886e}"
#define VHDX_G_LOC_TYPE "{b04aefb7-d19e-4a81-b789-25b8e9445913}"

/* Known metadata items, in the order of vhdx_items[]. */
enum {
	VHDX_MI_PARAMS,
	VHDX_MI_SIZE,
	VHDX_MI_PAGE83,
	VHDX_MI_LSS,
	VHDX_MI_PSS,
	VHDX_MI_LOC,
	VHDX_MI_COUNT
};

/* The parent locator key for a Linux path: the standard keys hold Windows
 * paths only. Readers ignore keys they do not know. */
#define VHDX_KEY_ABS "diskcore_absolute_path"
struct vhdx_item {
	uint32_t len;	/* exact length, 0: variable */
	uint32_t flags; /* as written: IsVirtualDisk (2), IsRequired (4) */
	const char *name;
	const char *guid;
};
extern const struct vhdx_item vhdx_items[VHDX_MI_COUNT];

/* What create=, parent= and friends ask for. */
struct vhdx_create {
	uint64_t size;
	uint32_t block, lss, pss;
	bool fixed, has_block;
	const char *parent;
};

/* vhdx_meta.c */
/* "{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}" */
void vhdx_guid_str(const uint8_t g[16], char out[39]);
/* A GUID constant (text as above) in its stored form. */
void vhdx_guid_bin(const char *s, uint8_t *out);
/* An instance for path (no file open yet), the rest of one once its path
 * is set, and the release of either (the fds and the engine closed). */
struct vhdx *vhdx_new(const char *path, bool ro);
void vhdx_init(void *inst, bool ro);
void vhdx_free(void *inst);
/* Everything up to the BAT: identifier, headers, log, regions, metadata. */
int vhdx_parse(struct vhdx *v);
/* Parse the image at path (or open as fd) up to its metadata (read-only,
 * unlocked; with quiet, without messages). */
int vhdx_peek(const char *path, bool quiet, struct vhdx **out);
int vhdx_peek_fd(int fd, const char *path, bool quiet, struct vhdx **out);
/* v's parent (with check: its DataWriteGuid matches the linkage) and its id,
 * under the rule of common/parentpath (v->img.parents_any). -EPERM when the rule
 * refused, naming the locator path. */
int vhdx_resolve_parent(const struct vhdx *v, bool check, char **out, uint8_t page83[16]);
/* vhdfmt_parent_fn for vhdfmt_check_chain(): the parent of the VHDX at path,
 * under the default rule, or with ;parents=any. */
char *vhdx_parent_of(int fd, const char *path, bool any);

/* vhdx_create.c */
/* The options (create=, parent=); the image they describe, written into the
 * empty file v->img.fd that dc_create_open() made; and the check of an existing
 * image that create= or parent= named (it must be what they describe). Steps
 * of vhdfmt/open.h: inst is a struct vhdx, opts its struct vhdx_create. */
int vhdx_open_opts(void *inst, const struct dc_open_args *a, void *opts,
		   struct vhdfmt_want *w);
int vhdx_create(void *inst, void *opts);
int vhdx_check_existing(void *inst, const void *opts);

/* vhdx_log.c */
/* Read both headers and pick the current one. */
int vhdx_read_headers(struct vhdx *v);
/* Write the header twice (both copies current), each with a new sequence number. */
int vhdx_update_headers(struct vhdx *v);
/* First change this open: new FileWriteGuid (and DataWriteGuid if data). */
int vhdx_session(struct vhdx *v, bool data);
/* Find and replay the log: into the file (writable), or in memory. */
int vhdx_log_open(struct vhdx *v);
/* Write the queued metadata sectors through the log (lock held). */
int vhdx_log_commit(struct vhdx *v);
/* Close: the log is empty again; clear LogGuid. */
int vhdx_log_close(struct vhdx *v);

/* vhdx_io.c */
/* Reads that see a read-only replay: flat buffers and request buffers. */
int vhdx_pread(struct vhdx *v, void *buf, size_t len, uint64_t off);
int vhdx_read_buf(struct vhdx *v, const struct dc_buf *b, uint64_t off);
/* Free the in-memory replay. */
void vhdx_ovl_free(struct vhdx *v);
/* Zero [off, off+len) of the file (holes where possible), extending it if needed. */
int vhdx_zero_file(int fd, uint64_t off, uint64_t len);
/* Trim or extend the file to file_end before its first change (lock held). */
int vhdx_fix_end(struct vhdx *v);
/* The rest, lock held. Room in the queue for one change's sectors. */
int vhdx_reserve(struct vhdx *v);
/* Set BAT entry i and queue its sector. */
void vhdx_bat_set(struct vhdx *v, uint64_t i, uint64_t e);
/* The 4 KiB content and file offset of a queued sector; and its dequeue. */
int vhdx_key_sector(struct vhdx *v, uint64_t key, uint8_t *out, uint64_t *off);
void vhdx_key_done(struct vhdx *v, uint64_t key);
/* Bits of sectors [s, s+n) into the bitmap out (bit k = sector s+k); n <= 32768. */
int vhdx_bits_get(struct vhdx *v, uint64_t s, uint32_t n, uint64_t *out);
/* Set (or clear) the bits of sectors [s, s+n) and queue their sectors. */
int vhdx_bits_put(struct vhdx *v, uint64_t s, uint32_t n, bool set);

/* vhdx_aio.c */
/* A request's scratch (ctx_size). */
struct vhdx_rq {
	struct ioe_req io; /* first: the engine's done callback finds r */
	struct dc_req *req;
	struct vhdx *v;
	/* The blocking path (vhdx.c's io()): what a read that met the end of
	 * the file does again; and what the pool job runs. */
	int (*retry_fn)(void *inst, struct dc_req *req);
	int (*pool_fn)(void *inst, struct dc_req *req);
};
/* The engine on a description of its own, and its release; describe()'s text. */
const char *vhdx_aio_describe(const struct vhdx *v);
/* Start r (r->req, r->v, r->retry_fn set) on the engine, or finish it inline;
 * false: the blocking path must take it. */
bool vhdx_aio_submit(struct vhdx *v, struct vhdx_rq *r);
/* Finish r->req on the worker pool with fn. */
void vhdx_aio_to_pool(struct vhdx_rq *r, int (*fn)(void *inst, struct dc_req *req));
/* Flush: queued metadata through the log, else fdatasync (takes the lock). */
int vhdx_flush(struct vhdx *v);
/* queue_open(); queue_close() and queue_poll() are the engine's
 * (ioe_plugin_queue_close/poll). */
int vhdx_queue_open(void *inst, void **qctx);

/* vhdx_map.c */
/* extents(): block states and bitmaps, as the reads see them. */
int vhdx_extents(void *inst, struct dc_node *node, uint64_t sector, uint64_t count,
		 uint64_t *run);
/* vhdx_resize.c */
/* resize(): grow a dynamic image within its BAT region; the live size. */
int vhdx_resize(void *inst, uint64_t new_sector_count);
uint64_t vhdx_sector_count(void *inst);

/* vhdx_check.c */
/* check(): header and region table copies, the log, unreferenced space, the
 * parent. */
int vhdx_check(void *inst, dc_check_report_fn report, void *arg);

#endif
