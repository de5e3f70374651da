/* SPDX-License-Identifier: MIT */
/* striped: RAID 0 over member disks of equal geometry (docs/openvmm-compat.md §2.7).
 *
 * Global chunk i lives on member i % n at member chunk i / n. A read or write
 * becomes one child request per chunk piece, all issued at once; the request
 * completes when every piece has, never earlier, with the first failing piece
 * (in disk order) reported as an I/O error. A request within one chunk (most
 * small I/O) skips the fan-out bookkeeping: its one piece finishes it. Flush
 * and eject go to every member; unmap sends each member one range, since the
 * chunks a request covers on one member are consecutive there. */
#include <diskcore/plugin.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STRIPED_CHUNK_DEFAULT (128 * 1024)
#define STRIPED_SYNTAX "striped[;chunk=SIZE][;sectors=N]:[SPEC,SPEC,...]"

struct striped_disk {
	unsigned n; /* members */
	struct dc_node **members;
	bool *unmap_ignored; /* per member: unmap is a no-op there */
	uint32_t sector_size;
	uint64_t chunk_bytes;
	uint64_t per_chunk; /* sectors per chunk */
	uint64_t member_sectors;
	uint64_t sector_count; /* the logical size */
};

struct striped_ctx {
	struct striped_disk *d;
	atomic_uint pending; /* pieces in flight, plus one while issuing */
	atomic_flag elock;   /* guards the error below (errors are rare) */
	bool failed;
	uint64_t order; /* position of the reported error */
	int result, detail;
};

/* --- Completion ------------------------------------------------------------ */

static void striped_begin(struct striped_disk *d, struct dc_req *req)
{
	struct striped_ctx *c = req->ctx;

	c->d = d;
	atomic_init(&c->pending, 1);
	atomic_flag_clear(&c->elock);
	c->failed = false;
}

/* Drop one reference; the last one finishes the request. */
static void striped_put(struct dc_req *req)
{
	struct striped_ctx *c = req->ctx;

	if (atomic_fetch_sub_explicit(&c->pending, 1, memory_order_acq_rel) != 1)
		return;
	if (c->failed)
		dc_complete_detail(req, c->result, c->detail);
	else
		dc_complete(req, 0);
}

/* Record a failure at `order` (disk order for reads and writes, the member index
 * otherwise); the smallest order is the one reported. */
static void striped_fail(struct dc_req *req, uint64_t order, int result, int detail)
{
	struct striped_ctx *c = req->ctx;

	while (atomic_flag_test_and_set_explicit(&c->elock, memory_order_acquire))
		;
	if (!c->failed || order < c->order) {
		c->failed = true;
		c->order = order;
		c->result = result;
		c->detail = detail;
	}
	atomic_flag_clear_explicit(&c->elock, memory_order_release);
}

static unsigned striped_member_of(const struct striped_disk *d, const struct dc_node *n)
{
	for (unsigned i = 0; i < d->n; i++)
		if (d->members[i] == n)
			return i;
	return 0;
}

/* The error of a read or write piece: every lower error is an I/O error here
 * (docs/openvmm-compat.md §2.7); the lower errno, or its class, stays as the detail.
 * Returns the piece's global chunk, its position in disk order. */
static uint64_t striped_piece_error(struct striped_disk *d, struct dc_req *req,
				    struct dc_req *child, int *detail)
{
	unsigned m = striped_member_of(d, child->node);

	*detail = child->result == DC_E_IO && child->detail ? child->detail :
							      -child->result;
	dc_debug("striped: error in member %u (%s at member sector %llu): %s, detail %d",
		 m, req->op == DC_OP_READ ? "read" : "write",
		 (unsigned long long)child->sector, dc_strerror(child->result),
		 child->detail);
	return child->sector / d->per_chunk * d->n + m;
}

static void striped_rw_done(struct dc_req *req, struct dc_req *child)
{
	struct striped_ctx *c = req->ctx;

	if (child->result) {
		int detail;
		uint64_t chunk = striped_piece_error(c->d, req, child, &detail);

		striped_fail(req, chunk, DC_E_IO, detail);
	}
	dc_child_free(req, child);
	striped_put(req);
}

/* A request within one chunk has one piece: it completes with that piece. */
static void striped_one_done(struct dc_req *req, struct dc_req *child)
{
	struct striped_ctx *c = req->ctx;
	int result = child->result, detail = 0;

	if (result) {
		striped_piece_error(c->d, req, child, &detail);
		result = DC_E_IO;
	}
	dc_child_free(req, child);
	dc_complete_detail(req, result, detail);
}

static void striped_fan_done(struct dc_req *req, struct dc_req *child)
{
	struct striped_ctx *c = req->ctx;

	if (child->result) {
		unsigned m = striped_member_of(c->d, child->node);

		dc_debug("striped: error in member %u (op %u): %s, detail %d", m, req->op,
			 dc_strerror(child->result), child->detail);
		striped_fail(req, m, child->result, child->detail);
	}
	dc_child_free(req, child);
	striped_put(req);
}

/* --- I/O ------------------------------------------------------------------- */

static bool striped_in_range(const struct striped_disk *d, const struct dc_req *req)
{
	return req->sector <= d->sector_count &&
	       req->count <= d->sector_count - req->sector;
}

static void striped_issue(struct dc_req *req, unsigned m, uint64_t sector, uint64_t count,
			  const struct dc_buf *buf, dc_child_done_fn done, uint64_t order)
{
	struct striped_ctx *c = req->ctx;
	struct dc_req *child = dc_child_req(req, m);

	if (!child) {
		striped_fail(req, order, DC_E_IO, ENOMEM);
		return;
	}
	child->sector = sector;
	child->count = count;
	if (buf)
		child->buf = *buf;
	atomic_fetch_add_explicit(&c->pending, 1, memory_order_relaxed);
	dc_child_submit(req, child, done);
}

static void striped_rw(struct striped_disk *d, struct dc_req *req)
{
	uint64_t sector = req->sector, end = req->sector + req->count;
	size_t ss = d->sector_size;
	uint64_t first = sector / d->per_chunk, in = sector % d->per_chunk;
	struct dc_buf rest;

	if (in + req->count <= d->per_chunk) {
		/* The common small request: no fan-out to count, no buffer to
		 * split (the child starts as a copy of req). */
		struct striped_ctx *c = req->ctx;
		struct dc_req *child = dc_child_req(req, first % d->n);

		if (!child) {
			dc_complete_detail(req, DC_E_IO, ENOMEM);
			return;
		}
		c->d = d;
		child->sector = first / d->n * d->per_chunk + in;
		dc_child_submit(req, child, striped_one_done);
		return;
	}
	striped_begin(d, req);
	rest = req->buf;
	while (sector < end) {
		uint64_t chunk = sector / d->per_chunk, off = sector % d->per_chunk;
		uint64_t n = d->per_chunk - off;
		struct dc_buf piece;

		if (n > end - sector)
			n = end - sector;
		piece = dc_buf_sub(&rest, 0, n * ss);
		rest = dc_buf_sub(&rest, n * ss, rest.len - n * ss);
		striped_issue(req, chunk % d->n, chunk / d->n * d->per_chunk + off, n,
			      &piece, striped_rw_done, chunk);
		sector += n;
	}
	striped_put(req);
}

static void striped_unmap(struct striped_disk *d, struct dc_req *req)
{
	uint64_t pc = d->per_chunk, n = d->n;
	uint64_t last = req->sector + req->count - 1;
	uint64_t c0 = req->sector / pc, c1 = last / pc;

	striped_begin(d, req);
	for (unsigned m = 0; m < d->n; m++) {
		/* The first and last chunk of member m within [c0, c1]. */
		uint64_t f = c0 + (m + n - c0 % n) % n;
		uint64_t l, start, stop;

		if (f > c1 || d->unmap_ignored[m])
			continue;
		l = c1 - (c1 % n + n - m) % n;
		start = f / n * pc + (f == c0 ? req->sector % pc : 0);
		stop = l / n * pc + (l == c1 ? last % pc + 1 : pc);
		striped_issue(req, m, start, stop - start, NULL, striped_fan_done, m);
	}
	striped_put(req);
}

static void striped_all(struct striped_disk *d, struct dc_req *req)
{
	striped_begin(d, req);
	for (unsigned m = 0; m < d->n; m++)
		striped_issue(req, m, req->sector, req->count, NULL, striped_fan_done, m);
	striped_put(req);
}

static void striped_submit(void *inst, struct dc_req *req)
{
	struct striped_disk *d = inst;

	switch (req->op) {
	case DC_OP_READ:
	case DC_OP_WRITE:
	case DC_OP_UNMAP:
		if (!striped_in_range(d, req)) {
			dc_complete(req, DC_E_ILLEGAL_BLOCK);
			return;
		}
		if (req->count == 0) {
			dc_complete(req, 0);
			return;
		}
		if (req->op == DC_OP_UNMAP)
			striped_unmap(d, req);
		else
			striped_rw(d, req);
		return;
	case DC_OP_FLUSH:
	case DC_OP_EJECT:
		striped_all(d, req);
		return;
	default:
		dc_complete(req, DC_E_UNSUPPORTED);
	}
}

/* The allocation of a run: the member's, within the chunk the run starts in
 * (the next chunk is on another member). */
static int striped_extents(void *inst, struct dc_node *node, uint64_t sector,
			   uint64_t count, uint64_t *run)
{
	struct striped_disk *d = inst;
	uint64_t chunk = sector / d->per_chunk, off = sector % d->per_chunk;
	uint64_t n = d->per_chunk - off;

	(void)node;
	return dc_node_extents(d->members[chunk % d->n],
			       chunk / d->n * d->per_chunk + off, n < count ? n : count,
			       run);
}

/* --- Open ------------------------------------------------------------------ */

static void striped_close(void *inst)
{
	struct striped_disk *d = inst;

	if (!d)
		return;
	free(d->members);
	free(d->unmap_ignored);
	free(d);
}

/* Check the members against member 0 and merge their metadata (docs/openvmm-compat.md
 * §2.7). */
static int striped_members(struct striped_disk *d, struct dc_node *node,
			   struct dc_info *info)
{
	struct dc_info m0, mi;
	bool all_zeroes = true, all_ignored = true, all_fua = true, all_eject = true;
	uint32_t phys = 0, unmap_opt = 0;

	dc_node_info(d->members[0], &m0);
	for (unsigned i = 0; i < d->n; i++) {
		d->members[i] = dc_node_child(node, i);
		dc_node_info(d->members[i], &mi);
		if (mi.sector_size != m0.sector_size)
			return dc_fail(
				-EINVAL,
				"member %u is not compatible with member 0: sector size %u, "
				"member 0 has %u",
				i, mi.sector_size, m0.sector_size);
		if (mi.sector_count != m0.sector_count)
			return dc_fail(
				-EINVAL,
				"member %u is not compatible with member 0: %llu sectors, "
				"member 0 has %llu",
				i, (unsigned long long)mi.sector_count,
				(unsigned long long)m0.sector_count);
		if ((mi.flags ^ m0.flags) & DC_INFO_READ_ONLY)
			return dc_fail(
				-EINVAL,
				"member %u is not compatible with member 0: it is %s, "
				"member 0 is %s",
				i,
				mi.flags & DC_INFO_READ_ONLY ? "read-only" : "writable",
				m0.flags & DC_INFO_READ_ONLY ? "read-only" : "writable");
		if (mi.physical_sector_size > phys)
			phys = mi.physical_sector_size;
		if (mi.optimal_unmap_sectors > unmap_opt)
			unmap_opt = mi.optimal_unmap_sectors;
		all_zeroes &= mi.unmap_behavior == DC_UNMAP_ZEROES;
		all_ignored &= mi.unmap_behavior == DC_UNMAP_IGNORED;
		all_fua &= !!(mi.flags & DC_INFO_FUA_RESPECTED);
		all_eject &= !!(mi.flags & DC_INFO_EJECT);
		d->unmap_ignored[i] = mi.unmap_behavior == DC_UNMAP_IGNORED;
	}
	memset(info, 0, sizeof(*info));
	info->sector_size = m0.sector_size;
	info->physical_sector_size = phys;
	info->optimal_unmap_sectors = unmap_opt;
	info->unmap_behavior = all_zeroes  ? DC_UNMAP_ZEROES :
			       all_ignored ? DC_UNMAP_IGNORED :
					     DC_UNMAP_UNSPECIFIED;
	info->flags = (m0.flags & DC_INFO_READ_ONLY) |
		      (all_fua ? DC_INFO_FUA_RESPECTED : 0) |
		      (all_eject ? DC_INFO_EJECT : 0);
	snprintf(info->disk_type, sizeof(info->disk_type), "striped");
	d->sector_size = m0.sector_size;
	d->member_sectors = m0.sector_count;
	return 0;
}

static const struct dc_option striped_options[] = {
	DC_OPTION_SIZE("chunk",
		       "stripe unit (default 128K; a multiple of the sector size)"),
	DC_OPTION_UINT(
		"sectors",
		"logical sector count (default: all; a multiple of members x chunk)"),
	DC_OPTIONS_END,
};

static int striped_geometry(struct striped_disk *d, const struct dc_open_args *a)
{
	uint64_t stripe, total, logic;

	d->chunk_bytes = STRIPED_CHUNK_DEFAULT;
	dc_opt_num(a, "chunk", &d->chunk_bytes);
	if (!d->chunk_bytes || d->chunk_bytes % d->sector_size ||
	    d->chunk_bytes > UINT32_MAX)
		return dc_fail(
			-EINVAL,
			"invalid chunk size %llu: expected a non-zero multiple of the "
			"member sector size %u, below 4G",
			(unsigned long long)d->chunk_bytes, d->sector_size);
	d->per_chunk = d->chunk_bytes / d->sector_size;
	/* Each member counts in whole chunks. */
	total = d->member_sectors / d->per_chunk * d->per_chunk * d->n;
	stripe = d->per_chunk * d->n;
	if (total % stripe)
		return dc_fail(
			-EINVAL,
			"invalid striped size: %llu sectors is not a multiple of the "
			"stripe (%u members x %llu sectors)",
			(unsigned long long)total, d->n,
			(unsigned long long)d->per_chunk);
	if (!total)
		return dc_fail(
			-EINVAL,
			"members of %llu sectors hold no whole chunk of %llu sectors",
			(unsigned long long)d->member_sectors,
			(unsigned long long)d->per_chunk);
	logic = total;
	if (dc_opt_num(a, "sectors", &logic)) {
		if (logic > total)
			return dc_fail(
				-EINVAL,
				"invalid sectors=%llu: the members hold %llu sectors",
				(unsigned long long)logic, (unsigned long long)total);
		if (!logic || logic % stripe)
			return dc_fail(
				-EINVAL,
				"invalid sectors=%llu: expected a non-zero multiple of the "
				"stripe (%u members x %llu sectors = %llu)",
				(unsigned long long)logic, d->n,
				(unsigned long long)d->per_chunk,
				(unsigned long long)stripe);
	}
	d->sector_count = logic;
	return 0;
}

static int striped_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct striped_disk *d;
	int rc;

	if (a->nchildren < 1)
		return dc_fail(-EINVAL, "no member disks: expected " STRIPED_SYNTAX);
	d = calloc(1, sizeof(*d));
	if (!d)
		return dc_fail(-ENOMEM, "out of memory");
	*inst = d;
	d->n = a->nchildren;
	d->members = calloc(d->n, sizeof(*d->members));
	d->unmap_ignored = calloc(d->n, sizeof(*d->unmap_ignored));
	if (!d->members || !d->unmap_ignored)
		return dc_fail(-ENOMEM, "out of memory");
	d->members[0] = dc_node_child(a->node, 0);
	rc = striped_members(d, a->node, info);
	if (rc == 0)
		rc = striped_geometry(d, a);
	if (rc < 0)
		return rc;
	info->sector_count = d->sector_count;
	return 0;
}

static void striped_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct striped_disk *d = inst;

	dc_kv_u64(kv, arg, "chunk", d->chunk_bytes);
	dc_kv_u64(kv, arg, "members", d->n);
	dc_kv_u64(kv, arg, "member_sectors", d->member_sectors);
}

DC_PLUGIN(striped_plugin) = {
	DC_ABOUT(DC_KIND_BACKEND, "striped", "0.1.0",
		 "stripes (RAID 0) across member disks"),
	.usage = STRIPED_SYNTAX
	"\n"
	"  Chunk i of the disk is on member i mod N. Members must have the same\n"
	"  sector size, sector count and read-only state; each counts in whole\n"
	"  chunks. I/O to the members is issued concurrently and always awaited\n"
	"  in full; a member's error fails the request as an I/O error (the\n"
	"  member's index is in the DISKCORE_DEBUG output). Flush, unmap and\n"
	"  eject go to every member. No persistent reservations.",
	.forms = DC_FORMS(DC_FORM("striped", 0, DC_CHILD_LIST, STRIPED_SYNTAX,
				  "RAID 0 across member disks of equal size",
				  striped_options)),
	.ctx_size = sizeof(struct striped_ctx),
	.ops = DC_OPS_RW | DC_OP_BIT(DC_OP_EJECT),
	DC_CALLBACKS(striped, open, close, submit, describe, extents),
};
