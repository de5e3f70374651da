/* SPDX-License-Identifier: MIT */
/* vhd: fixed, dynamic and differencing VHD images as a layer of the core's layered
 * disk (Microsoft "Virtual Hard Disk Image Format Specification"). What the
 * plugin's files share:
 *   vhd.c         open, close, attach, lower_spec, describe, the descriptor
 *   vhd_parse.c   footers, dynamic header, parent locator entries, the BAT
 *   vhd_parent.c  finding a differencing image's parent
 *   vhd_io.c      reads, writes, bitmaps, block allocation, flush, close trim
 *   vhd_aio.c     submit(): what changes no metadata on the file engine,
 *                 the rest of vhd_io.c on the worker pool
 *   vhd_create.c  what create= and parent= ask for, writing new images
 *
 * Layout of a dynamic or differencing image: a copy of the footer at offset 0, the
 * dynamic header, parent locators (differencing), the BAT (one big-endian sector
 * offset per block, 0xffffffff when unallocated), blocks (a sector bitmap padded
 * to 512 bytes, then the block's data), and the footer in the last 512 bytes.
 *
 * Reads: a fixed or plain dynamic image marks every sector (unallocated blocks read
 * as zero), so nothing below is consulted. A differencing image marks only the
 * sectors whose block is allocated and whose bitmap bit is set; the rest fall
 * through to the parent, which lower_spec() names so that the core opens it
 * read-only as the next layer. attach() checks the parent's unique id.
 *
 * Crash safety. Metadata that points at data is written only after that data
 * is durable, and the last 512 bytes of the file are a valid footer at every
 * instant:
 *   - Allocating block [B, B+T) (metadata lock held): if it reaches the footer,
 *     first write the footer further on (room for several blocks, so this is
 *     rare) and fdatasync; then write the block's bitmap and the request's data
 *     into [B, B+T) (the rest of the block is zero: fresh file space, or zeroed
 *     explicitly where something was before). The BAT entry changes in memory
 *     only, and its BAT sector is queued.
 *   - Setting bitmap bits of an allocated block (a differencing image, or a
 *     foreign image with partial bitmaps): after the data is written, in memory;
 *     the bitmap is queued.
 *   - Flush: fdatasync (all data and new blocks), write the queued bitmaps and
 *     BAT sectors, fdatasync. FUA writes run a flush before completing.
 *   - Close: flush, then move the footer back to the end of the last block
 *     (write it there, fdatasync, truncate after it).
 * A crash at any point leaves a valid image: new blocks not yet in the on-disk
 * BAT are unreferenced space (reused and zeroed by the next allocation), and
 * every write that was flushed is in the BAT and bitmaps. An unflushed write may
 * be lost (its sectors read as before), as on any disk with a write cache.
 *
 * Unmap is ignored (reported as such); blocks are never freed. Images are locked
 * with flock (exclusive when writable, shared when read-only). */
#ifndef DISKCORE_PLUGIN_VHD_H
#define DISKCORE_PLUGIN_VHD_H

#include "ioengine/ioengine.h"
#include "vhdfmt/open.h"
#include "vhdfmt/vhdfmt.h"
#include "vhdfmt/vhd_format.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define VHD_UNALLOC 0xffffffffu
#define VHD_LOC_MAX 65536u	   /* bytes of one parent locator's data */
#define VHD_MAX_ENTRIES (1u << 24) /* BAT entries we agree to load */
#define VHD_MIN_BLOCK 512u
#define VHD_MAX_BLOCK (256u << 20)
#define VHD_DEFAULT_BLOCK (2u << 20)
#define VHD_MAX_DYNAMIC (2040ull << 30) /* the specification's limit */
#define VHD_DATA_ALIGN 4096u		/* block data starts on this boundary */

/* What an image's footer and dynamic header say, checked against the file. */
struct vhd_meta {
	struct vhd_footer f;
	uint8_t footer_raw[VHD_FOOTER_SIZE];
	uint64_t file_size;
	uint64_t limit; /* everything lies below this: the end footer, or EOF */
	bool end_ok;	/* the last 512 bytes are a valid footer */
	bool copy_ok;	/* offset 0 holds a valid footer copy (dynamic) */
	uint64_t header_off;
	uint64_t bat_off;
	uint64_t bat_bytes; /* the BAT's sectors */
	uint32_t max_entries;
	uint32_t nblocks; /* blocks that cover the disk */
	uint32_t block_size;
	uint32_t spb; /* sectors per block */
	unsigned spb_shift;
	uint32_t bitmap_bytes;
	/* Dynamic and differencing: the parent's id and name, and the parent
	 * locators (code 0 for those never read). */
	struct vhd_dyn_header dh;
};

struct vhd_img {
	struct vhdfmt_image img; /* first: the file, its engine, its opens */
	char *dir;		 /* directory of the image, absolute */
	bool read_only;
	bool created;
	bool fixed, diff;
	struct vhd_meta m;
	char *parent_path; /* as resolved by lower_spec(), or named by parent= */

	pthread_mutex_t lock; /* BAT, bitmaps, queues, allocation, footer */
	uint32_t *bat;	      /* bat_bytes / 4 entries, host order, authoritative */
	uint8_t **bm;	      /* per block: NULL not loaded, vhd_bm_full, or bits */
	uint64_t *dirty_bits; /* blocks whose bitmap is queued */
	uint32_t *dirty;
	uint32_t ndirty, dirty_cap;
	uint64_t *bat_dirty; /* BAT sectors queued */
	uint32_t nbat_dirty;
	uint64_t data_end; /* end of the highest structure or block */
	uint64_t footer_off;
	uint64_t junk_end; /* below this, space outside blocks may hold old bytes */
};

/* A request's scratch. */
struct vhd_rq {
	struct ioe_req io; /* first: the engine's done callback finds r */
	struct dc_req *req;
	struct vhd_img *v;
	/* A request across blocks: its engine parts, how many are still in
	 * flight, the first error (atomic). */
	struct vhd_aio_io *parts;
	int pending, err;
};

/* One part of a request across blocks on the engine (vhd_aio.c). */
struct vhd_aio_io {
	struct ioe_req io; /* first: the engine's done callback finds it */
	struct vhd_rq *r;
};
#define VHD_AIO_PARTS 8 /* blocks a request may span and still take the engine */

/* A block whose every sector bit is set (no memory kept for it). */
extern uint8_t vhd_bm_full_marker;
#define VHD_BM_FULL (&vhd_bm_full_marker)

static inline uint64_t vhd_block_off(uint32_t e)
{
	return (uint64_t)e * VHD_SECTOR;
}

static inline uint32_t vhd_bat_get(struct vhd_img *v, uint32_t b)
{
	return __atomic_load_n(&v->bat[b], __ATOMIC_ACQUIRE);
}

/* What create= and parent= ask for. */
struct vhd_create {
	uint64_t size;
	uint32_t block;
	uint32_t type;
	const char *parent; /* differencing: the parent as given */
};

/* vhd_parse.c */
/* Footer(s) and, for dynamic and differencing images, the dynamic header and
 * parent locators; not the BAT. */
int vhd_parse(int fd, const char *path, struct vhd_meta *m);
/* Load the BAT and check every allocated block against the file, the metadata
 * and the other blocks. */
int vhd_load_bat(struct vhd_img *v);
/* The end of the header, the BAT and the parent locators' data. */
uint64_t vhd_meta_end(const struct vhd_meta *m);

/* vhd_parent.c */
/* The directory of an absolute path, malloc'd. */
char *vhd_dirname(const char *abs);
/* Resolve the parent of the differencing image (fd, m) whose directory is dir
 * (real) into a malloc'd real path: relative locators first, then absolute
 * ones, then the header's parent name, each opened under the rule of
 * common/parentpath (any: the spec's ;parents=any). A candidate whose unique
 * id matches wins; else the first one that opens (attach() then reports the
 * mismatch). -EPERM when the rule refused what would have been followed,
 * naming the locator and the rule; -ENOENT when nothing was found. */
int vhd_find_parent(int fd, const struct vhd_meta *m, const char *path, const char *dir,
		    bool any, char **out);
/* The unique id of the VHD open as fd (path for messages), if it is one. */
int vhd_peek_uid(int fd, const char *path, uint8_t uid[16]);
/* vhdfmt_parent_fn: the parent of the VHD at path (open as fd), under the
 * default rule, or with ;parents=any. */
char *vhd_parent_of(int fd, const char *path, bool any);

/* vhd_io.c */
int vhd_io(void *inst, struct dc_req *req);
/* Close: make queued metadata durable, move the footer back to the end. */
void vhd_trim(struct vhd_img *v);
/* extents(): the BAT, and a differencing image's bitmaps, under the I/O lock. */
int vhd_extents(void *inst, struct dc_node *node, uint64_t sector, uint64_t count,
		uint64_t *run);

/* vhd_aio.c: submit() and queue_open() (the other queue callbacks are
 * ioe_plugin_queue_*). */
void vhd_submit(void *inst, struct dc_req *req);
int vhd_queue_open(void *inst, void **qctx);

/* vhd_check.c: check(): footers, unreferenced space, the parent. */
int vhd_check(void *inst, dc_check_report_fn report, void *arg);

/* vhd_resize.c: grow a dynamic image within its BAT's room; the live size. */
int vhd_resize(void *inst, uint64_t new_sector_count);
uint64_t vhd_sector_count(void *inst);

/* vhd_create.c */
/* create= and parent= (vhdfmt/open.h's options(): inst a struct vhd_img, opts
 * its struct vhd_create). */
int vhd_open_opts(void *inst, const struct dc_open_args *a, void *opts,
		  struct vhdfmt_want *w);
/* Write the new image into the empty file dc_create_open() made (inst: a
 * struct vhd_img, opts: its struct vhd_create; vhdfmt/open.h). */
int vhd_create(void *inst, void *opts);
/* create= or parent= named an image that exists: it must be what they say. */
int vhd_check_existing(void *inst, const void *opts);

#endif
