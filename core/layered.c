/* SPDX-License-Identifier: MIT */
/*
 * The layered disk (docs/openvmm-compat.md §4): a stack of layers, top first.
 * Reads go top to bottom; each layer fills and marks the sectors it holds, the
 * rest fall through, and what no layer holds reads as zero. Writes, flushes and unmaps go
 * to the top layer and on through write-through layers. Read-cache layers are
 * filled from a private bounce buffer with write-no-overwrite.
 *
 * A request is a small state machine in its ctx: each step issues one child
 * request; a child that completes inline lets the submitting loop go on, one
 * that completes later resumes the machine on the completing thread. So the
 * stack depth does not grow with the number of runs or layers.
 */
#include "internal.h"

#include "bitmap/bitmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LAYERED_MAX_LAYERS 64
#define LAYERED_DEFAULT_PARENTS 16
#define LAYERED_INLINE_WORDS 16 /* bitmap kept in the request: 1024 sectors */
#define LAYERED_SPEC_MAX 4096
#define LAYERED_LAYER_FLAGS (DC_IO_NO_OVERWRITE | DC_IO_NEXT_IS_ZERO)

struct layered_layer {
	struct dc_node *node;
	uint64_t visible; /* min sector count of this layer and all above it */
	bool read_cache;
	bool write_through;
	bool is_layer; /* false: a plain disk at the bottom (always full) */
};

struct layered {
	struct layered_layer *layers;
	unsigned nlayers;
	unsigned shift;
	bool read_only;
	uint32_t unmap_behavior;
};

/* A read-cache layer to populate, and which sectors. */
struct layered_cache {
	unsigned layer;
	uint64_t *mask;
};

/* Read state that only a read-cache miss needs. */
struct layered_slow {
	uint8_t *bounce;
	struct iovec iov;
	uint64_t *guest; /* sectors already in the caller's buffer when bouncing began */
	unsigned ncache;
	unsigned pop;	  /* cache entry being populated */
	uint64_t pop_pos; /* next sector of its mask */
	struct layered_cache cache[];
};

enum { LAYERED_READ, LAYERED_POPULATE, LAYERED_WALK };

struct layered_rctx {
	struct layered *ld;
	uint64_t *bits; /* sectors filled so far */
	uint64_t n;	/* sectors in the read */
	uint64_t pos;	/* scan position within the current layer */
	uint64_t run_a, run_b;
	unsigned layer;
	uint8_t phase;
	bool run_plain; /* the read in flight went to a plain disk */
	int err;
	int detail;
	atomic_int sync;
	struct dc_marker mk;
	struct layered_slow *slow;
	uint64_t inline_bits[LAYERED_INLINE_WORDS];
};

/* --- I/O ------------------------------------------------------------------ */

static const char *layered_name(const struct dc_node *n)
{
	return n->form ? n->form->name : n->plugin->name;
}

static bool layered_past_end(struct layered *ld, const struct dc_req *req)
{
	uint64_t sc = dc_node_sector_count(ld->layers[0].node);

	return req->count > sc || req->sector > sc - req->count;
}

static void layered_free_read(struct layered_rctx *c)
{
	struct layered_slow *s = c->slow;

	if (s) {
		for (unsigned i = 0; i < s->ncache; i++)
			free(s->cache[i].mask);
		free(s->guest);
		free(s->bounce);
		free(s);
		c->slow = NULL;
	}
	if (c->bits != c->inline_bits)
		free(c->bits);
	c->bits = NULL;
}

/* Layer c->layer has seen all its runs: if it is a read cache that missed,
 * remember what to populate, and read everything from now on into a bounce
 * buffer so that the data written to the cache is stable. */
static int layered_layer_done(struct dc_req *req)
{
	struct layered_rctx *c = req->ctx;
	struct layered *ld = c->ld;
	struct layered_layer *L = &ld->layers[c->layer];
	size_t words = bitmap_words(c->n);
	struct layered_slow *s;
	uint64_t lim = c->n, *mask;

	if (!L->read_cache)
		return 0;
	/* Only the sectors the layer was asked for (its visible part). */
	if (c->layer > 0 && L->visible <= req->sector)
		lim = 0;
	else if (c->layer > 0 && L->visible - req->sector < c->n)
		lim = L->visible - req->sector;
	if (bitmap_find(c->bits, 0, lim, false) == lim)
		return 0;
	if (!c->slow) {
		s = calloc(1, sizeof(*s) + ld->nlayers * sizeof(s->cache[0]));
		if (!s)
			return -ENOMEM;
		c->slow = s;
		s->bounce = calloc(c->n, (size_t)1 << ld->shift);
		s->guest = malloc(words * sizeof(uint64_t));
		if (!s->bounce || !s->guest)
			return -ENOMEM;
		memcpy(s->guest, c->bits, words * sizeof(uint64_t));
		s->iov.iov_base = s->bounce;
		s->iov.iov_len = (size_t)c->n << ld->shift;
	}
	s = c->slow;
	mask = calloc(words, sizeof(uint64_t));
	if (!mask)
		return -ENOMEM;
	for (size_t k = 0; k < words; k++)
		mask[k] = ~c->bits[k];
	/* Clear the bits at and past lim. */
	for (uint64_t p = lim; p < (uint64_t)words * 64;) {
		unsigned bit = p & 63;

		mask[p >> 6] &= bit ? ~(~UINT64_C(0) << bit) : 0;
		p = (p & ~UINT64_C(63)) + 64;
	}
	s->cache[s->ncache].layer = c->layer;
	s->cache[s->ncache].mask = mask;
	s->ncache++;
	return 0;
}

static struct dc_buf layered_target(struct dc_req *req)
{
	struct layered_rctx *c = req->ctx;

	if (c->slow && c->slow->bounce) {
		struct dc_buf b = { &c->slow->iov, 1, 0, c->slow->iov.iov_len };

		return b;
	}
	return req->buf;
}

static struct dc_req *layered_read_next(struct dc_req *req)
{
	struct layered_rctx *c = req->ctx;
	struct layered *ld = c->ld;
	unsigned shift = ld->shift;

	while (!c->err && c->layer < ld->nlayers) {
		struct layered_layer *L = &ld->layers[c->layer];
		uint64_t a = bitmap_find(c->bits, c->pos, c->n, false), b;
		struct dc_req *child;
		struct dc_buf target;
		int rc;

		if (a == c->n) {
			rc = layered_layer_done(req);
			if (rc < 0) {
				c->err = rc;
				break;
			}
			c->layer++;
			c->pos = 0;
			if (bitmap_find(c->bits, 0, c->n, false) == c->n)
				break;
			continue;
		}
		b = bitmap_find(c->bits, a, c->n, true);
		if (c->layer > 0) {
			/* Past a layer's visible count everything is logically
			 * zero, here and below (visible counts only shrink).
			 * Unlike OpenVMM's `break 'done`, earlier runs still go
			 * on to the layers below. */
			if (req->sector + a >= L->visible) {
				c->pos = c->n;
				continue;
			}
			if (req->sector + b > L->visible)
				b = L->visible - req->sector;
		}
		child = dc_child_req(req, c->layer);
		if (!child) {
			c->err = -ENOMEM;
			break;
		}
		target = layered_target(req);
		child->op = DC_OP_READ;
		child->flags = 0;
		child->sector = req->sector + a;
		child->count = b - a;
		child->buf =
			dc_buf_sub(&target, (size_t)a << shift, (size_t)(b - a) << shift);
		child->pr = NULL;
		if (L->is_layer) {
			c->mk.bits = c->bits;
			c->mk.bit0 = a;
			c->mk.sector = req->sector + a;
			c->mk.count = b - a;
			child->marker = &c->mk;
		} else {
			child->marker = NULL;
		}
		c->run_a = a;
		c->run_b = b;
		c->run_plain = !L->is_layer;
		c->pos = b;
		return child;
	}
	c->phase = LAYERED_POPULATE;
	return NULL;
}

static struct dc_req *layered_populate_next(struct dc_req *req)
{
	struct layered_rctx *c = req->ctx;
	struct layered_slow *s = c->slow;
	unsigned shift = c->ld->shift;

	while (!c->err && s && s->pop < s->ncache) {
		struct layered_cache *e = &s->cache[s->pop];
		uint64_t a = bitmap_find(e->mask, s->pop_pos, c->n, true), b;
		struct dc_buf bb = { &s->iov, 1, 0, s->iov.iov_len };
		struct dc_req *child;

		if (a == c->n) {
			s->pop++;
			s->pop_pos = 0;
			continue;
		}
		b = bitmap_find(e->mask, a, c->n, false);
		child = dc_child_req(req, e->layer);
		if (!child)
			break; /* population is best effort */
		child->op = DC_OP_WRITE;
		child->flags = DC_IO_NO_OVERWRITE;
		child->sector = req->sector + a;
		child->count = b - a;
		child->buf =
			dc_buf_sub(&bb, (size_t)a << shift, (size_t)(b - a) << shift);
		child->marker = NULL;
		child->pr = NULL;
		s->pop_pos = b;
		return child;
	}
	return NULL;
}

static void layered_read_finish(struct dc_req *req)
{
	struct layered_rctx *c = req->ctx;
	struct layered_slow *s = c->slow;
	unsigned shift = c->ld->shift;
	uint64_t a, b;

	if (!c->err && s && s->bounce) {
		/* Everything not in the caller's buffer yet is in the bounce
		 * buffer, which holds zeroes where no layer had data. */
		for (a = 0; (a = bitmap_find(s->guest, a, c->n, false)) < c->n; a = b) {
			b = bitmap_find(s->guest, a, c->n, true);
			dc_buf_copy_to(&req->buf, (size_t)a << shift,
				       s->bounce + ((size_t)a << shift),
				       (size_t)(b - a) << shift);
		}
	} else if (!c->err) {
		for (a = 0; (a = bitmap_find(c->bits, a, c->n, false)) < c->n; a = b) {
			b = bitmap_find(c->bits, a, c->n, true);
			dc_buf_zero(&req->buf, (size_t)a << shift,
				    (size_t)(b - a) << shift);
		}
	}
	layered_free_read(c);
	dc_complete_detail(req, c->err, c->detail);
}

static struct dc_req *layered_walk_next(struct dc_req *req)
{
	struct layered_rctx *c = req->ctx;
	struct layered *ld = c->ld;
	unsigned i = c->layer;
	struct layered_layer *L;
	struct dc_req *child;

	if (c->err || i >= ld->nlayers || (i > 0 && !ld->layers[i - 1].write_through)) {
		dc_complete_detail(req, c->err, c->detail);
		return NULL;
	}
	L = &ld->layers[i];
	child = dc_child_req(req, i);
	if (!child) {
		dc_complete(req, -ENOMEM);
		return NULL;
	}
	child->op = req->op;
	child->flags = req->flags & ~LAYERED_LAYER_FLAGS;
	child->sector = req->sector;
	child->count = req->count;
	child->buf = req->buf;
	child->marker = NULL;
	child->pr = NULL;
	/* Only the start sector decides, as in OpenVMM. */
	if (req->op == DC_OP_UNMAP && L->is_layer &&
	    (i + 1 >= ld->nlayers || req->sector >= ld->layers[i + 1].visible))
		child->flags |= DC_IO_NEXT_IS_ZERO;
	c->layer++;
	return child;
}

/* The next child to submit, or NULL once the request has been completed. */
static struct dc_req *layered_next(struct dc_req *req)
{
	struct layered_rctx *c = req->ctx;
	struct dc_req *child;

	switch (c->phase) {
	case LAYERED_READ:
		child = layered_read_next(req);
		if (child)
			return child;
		/* fall through */
	case LAYERED_POPULATE:
		child = layered_populate_next(req);
		if (child)
			return child;
		layered_read_finish(req);
		return NULL;
	default:
		return layered_walk_next(req);
	}
}

static void layered_drive(struct dc_req *req);

static void layered_child_done(struct dc_req *req, struct dc_req *child)
{
	struct layered_rctx *c = req->ctx;
	int rc = child->result, detail = child->detail;

	dc_child_free(req, child);
	if (c->phase == LAYERED_POPULATE) {
		if (rc)
			dc_debug("layered: populating read cache layer failed (%d), "
				 "ignored",
				 rc);
	} else if (rc) {
		c->err = rc;
		c->detail = detail;
	} else if (c->phase == LAYERED_READ && c->run_plain) {
		/* A plain disk holds every sector. */
		bitmap_set(c->bits, c->run_a, c->run_b);
	}
	/* Whoever gets here second (submitter or completer) goes on. */
	if (atomic_exchange_explicit(&c->sync, 1, memory_order_acq_rel) == 0)
		return;
	layered_drive(req);
}

static void layered_drive(struct dc_req *req)
{
	struct layered_rctx *c = req->ctx;
	struct dc_req *child;

	while ((child = layered_next(req)) != NULL) {
		atomic_store_explicit(&c->sync, 0, memory_order_relaxed);
		dc_child_submit(req, child, layered_child_done);
		if (atomic_exchange_explicit(&c->sync, 1, memory_order_acq_rel) == 0)
			return; /* still in flight: its completion resumes us */
	}
}

static void layered_submit(void *inst, struct dc_req *req)
{
	struct layered *ld = inst;
	struct layered_rctx *c = req->ctx;

	c->ld = ld;
	c->bits = NULL;
	c->slow = NULL;
	c->err = 0;
	c->detail = 0;
	c->layer = 0;
	c->pos = 0;
	c->run_plain = false;
	switch (req->op) {
	case DC_OP_READ: {
		size_t words;

		if (req->count == 0) {
			dc_complete(req, 0);
			return;
		}
		c->n = req->count;
		words = bitmap_words(c->n);
		c->bits = words <= LAYERED_INLINE_WORDS ?
				  c->inline_bits :
				  malloc(words * sizeof(uint64_t));
		if (!c->bits) {
			dc_complete(req, -ENOMEM);
			return;
		}
		memset(c->bits, 0, words * sizeof(uint64_t));
		c->phase = LAYERED_READ;
		break;
	}
	case DC_OP_WRITE:
	case DC_OP_UNMAP:
		if (ld->read_only) {
			dc_complete(req, layered_past_end(ld, req) ? DC_E_ILLEGAL_BLOCK :
								     DC_E_READ_ONLY);
			return;
		}
		if (req->op == DC_OP_UNMAP && ld->unmap_behavior == DC_UNMAP_IGNORED) {
			dc_complete(req,
				    layered_past_end(ld, req) ? DC_E_ILLEGAL_BLOCK : 0);
			return;
		}
		c->phase = LAYERED_WALK;
		break;
	case DC_OP_FLUSH:
		c->phase = LAYERED_WALK;
		break;
	default:
		dc_complete(req, DC_E_UNSUPPORTED);
		return;
	}
	layered_drive(req);
}

/* --- descriptor ----------------------------------------------------------- */

static uint64_t layered_sector_count(void *inst)
{
	struct layered *ld = inst;

	return dc_node_sector_count(ld->layers[0].node);
}

static int layered_resize(void *inst, uint64_t new_sector_count)
{
	struct layered *ld = inst;
	struct dc_node *top = ld->layers[0].node;
	int rc;

	if (!top->plugin->resize)
		return dc_fail(-EOPNOTSUPP, "the top layer (%s) cannot be resized",
			       layered_name(top));
	dc__error_push_prefix(layered_name(top));
	rc = top->plugin->resize(top->inst, new_sector_count);
	dc__error_pop_prefix();
	return rc;
}

/* Walk the layers top-down as a read does: the first layer that holds the
 * start of the run answers, each layer above it bounding the run to what
 * it lacks; what no layer holds reads as zero. */
static int layered_extents(void *inst, struct dc_node *node, uint64_t sector,
			   uint64_t count, uint64_t *run)
{
	struct layered *ld = inst;
	uint64_t n = count, r;

	(void)node;
	for (unsigned i = 0; i < ld->nlayers; i++) {
		struct layered_layer *L = &ld->layers[i];
		int rc;

		if (i > 0) {
			if (sector >= L->visible)
				break;
			if (n > L->visible - sector)
				n = L->visible - sector;
		}
		rc = dc_node_extents(L->node, sector, n, &r);
		if (rc < 0)
			return rc;
		if (!(rc & DC_EXTENT_ABSENT)) {
			*run = r;
			dc__map_set_layer(i);
			return rc;
		}
		n = r;
	}
	*run = n;
	dc__map_set_layer(DC_EXTENT_NO_LAYER);
	return DC_EXTENT_HOLE | DC_EXTENT_ZERO;
}

static void layered_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct layered *ld = inst;
	char key[32], val[128];

	snprintf(val, sizeof(val), "%u", ld->nlayers);
	kv(arg, "layers", val);
	for (unsigned i = 0; i < ld->nlayers; i++) {
		struct layered_layer *L = &ld->layers[i];

		snprintf(key, sizeof(key), "layer%u", i);
		snprintf(val, sizeof(val), "%s%s%s%s visible_sectors=%llu",
			 layered_name(L->node), L->is_layer ? "" : " (disk)",
			 L->read_cache ? " read-cache" : "",
			 L->write_through ? " write-through" : "",
			 (unsigned long long)L->visible);
		kv(arg, key, val);
	}
}

static void layered_close(void *inst)
{
	struct layered *ld = inst;

	free(ld->layers);
	free(ld);
}

static const struct dc_form layered_forms[] = {
	{ 0 },
};

const struct dc_plugin dc__layered_plugin = {
	.struct_size = sizeof(struct dc_plugin),
	.abi_major = DC_ABI_MAJOR,
	.abi_minor = DC_ABI_MINOR,
	DC_ABOUT(DC_KIND_BACKEND, "layered", "0.1.0",
		 "layers read top to bottom; writes to the top layer"),
	.forms = layered_forms,
	.ctx_size = sizeof(struct layered_rctx),
	.ops = DC_OP_BIT(DC_OP_READ) | DC_OP_BIT(DC_OP_WRITE) | DC_OP_BIT(DC_OP_FLUSH) |
	       DC_OP_BIT(DC_OP_UNMAP),
	DC_CALLBACKS(layered, close, submit, sector_count, describe, resize, extents),
};

/* --- construction --------------------------------------------------------- */

static uint32_t layered_merge_unmap(uint32_t acc, uint32_t layer, bool must_zero)
{
	if (acc == DC_UNMAP_ZEROES && layer == DC_UNMAP_ZEROES)
		return DC_UNMAP_ZEROES;
	if (must_zero)
		return DC_UNMAP_IGNORED;
	if (acc == DC_UNMAP_IGNORED || layer == DC_UNMAP_IGNORED)
		return DC_UNMAP_IGNORED;
	return DC_UNMAP_UNSPECIFIED;
}

/* How many parents an image chain may name (an untrusted image picks them,
 * docs/security.md): 16, or DISKCORE_MAX_PARENTS up to the layer limit. */
static int layered_max_parents(unsigned *out)
{
	const char *v = secure_getenv("DISKCORE_MAX_PARENTS");
	char *end;
	unsigned long n;

	*out = LAYERED_DEFAULT_PARENTS;
	if (!v || !*v)
		return 0;
	n = strtoul(v, &end, 10);
	if (*end || n == 0 || n >= LAYERED_MAX_LAYERS)
		return dc_fail(-EINVAL, "DISKCORE_MAX_PARENTS=%s: expected 1 to %d", v,
			       LAYERED_MAX_LAYERS - 1);
	*out = (unsigned)n;
	return 0;
}

/* Open the layer `cur` into *L: read-only if ro, unless it is a read cache. */
static int layered_open_layer(struct dc_disk *disk, struct dc_spec *cur, bool ro,
			      struct layered_layer *L)
{
	uint32_t flags = cur->form->flags;
	struct dc_node *node;
	int rc = dc__node_create(disk, cur, ro && !(flags & DC_FORM_READ_CACHE), NULL, 0,
				 &node);

	if (rc < 0)
		return rc;
	*L = (struct layered_layer){
		.node = node,
		.read_cache = flags & DC_FORM_READ_CACHE,
		.write_through = flags & DC_FORM_WRITE_THROUGH,
		.is_layer = true,
	};
	return 0;
}

/* The parent image the opened layer `node` names (its lower_spec), parsed into
 * *next and kept in owned[] until the open ends; *next is NULL when it names
 * none. *parents counts them along the chain below `top`. */
static int layered_parent_spec(const struct dc_spec *top, struct dc_node *node,
			       unsigned *parents, unsigned max_parents,
			       struct dc_spec **owned, unsigned *nowned,
			       struct dc_spec **next)
{
	char buf[LAYERED_SPEC_MAX];
	struct dc_spec *ps;
	int rc;

	*next = NULL;
	if (!node->plugin->lower_spec)
		return 0;
	dc__error_push_prefix(layered_name(node));
	rc = node->plugin->lower_spec(node->inst, buf, sizeof(buf));
	dc__error_pop_prefix();
	if (rc < 0)
		return rc;
	if (rc == 1 && ++*parents > max_parents)
		return dc_fail(-ELOOP,
			       "'%s' names more than %u parent images in a "
			       "chain (is an image its own ancestor?); "
			       "DISKCORE_MAX_PARENTS raises the limit, up to %d "
			       "(docs/security.md)",
			       top->text, max_parents, LAYERED_MAX_LAYERS - 1);
	if (rc != 1)
		return 0;
	buf[sizeof(buf) - 1] = '\0';
	rc = dc__spec_parse(buf, &ps);
	if (rc < 0)
		return rc;
	owned[(*nowned)++] = ps;
	*next = ps;
	return 0;
}

/* Collect the layers top to bottom, opening each with the resolver's
 * read-only rule (§4.2): a layer is read-only iff the disk is and it is not a
 * read cache; below any layer that is not write-through, everything is. */
static int layered_collect(struct dc_disk *disk, struct dc_spec *s, bool read_only,
			   struct layered_layer *cfg, unsigned *ncfg,
			   struct dc_spec **owned, unsigned *nowned)
{
	struct dc_spec *cur = s;
	bool ro = read_only;
	unsigned parents = 0, max_parents;
	int rc = layered_max_parents(&max_parents);

	if (rc < 0)
		return rc;
	while (cur) {
		struct dc_node *node;
		unsigned i = *ncfg;

		if (i == LAYERED_MAX_LAYERS)
			return dc_fail(-ELOOP,
				       "more than %d layers below '%s': is a "
				       "differencing image its own ancestor?",
				       LAYERED_MAX_LAYERS, s->text);
		if (cur->plugin->kind != DC_KIND_LAYER) {
			/* A plain disk (maybe a chain of its own) is the full
			 * bottom layer. */
			rc = dc__node_open(disk, cur, ro, &node);
			if (rc < 0)
				return rc;
			cfg[i] = (struct layered_layer){ .node = node };
			(*ncfg)++;
			return 0;
		}
		rc = layered_open_layer(disk, cur, ro, &cfg[i]);
		if (rc < 0)
			return rc;
		(*ncfg)++;
		if (!cfg[i].write_through)
			ro = true;
		if (cur->form->child == DC_CHILD_ONE) {
			if (cur->nchildren != 1 || !cur->children[0])
				return dc_fail(-EINVAL,
					       "layer '%s' needs one inner spec after "
					       "its fields",
					       cur->form->name);
			cur = cur->children[0];
			continue;
		}
		if (cur->form->child != DC_CHILD_NONE)
			return dc_fail(-EINVAL,
				       "layer form '%s' takes a list; a layer sits "
				       "over one inner spec",
				       cur->form->name);
		rc = layered_parent_spec(s, cfg[i].node, &parents, max_parents, owned,
					 nowned, &cur);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Attach bottom-up and check each layer against the one below (§4.2 step 2). */
static int layered_attach(struct layered_layer *cfg, unsigned n)
{
	uint32_t bottom_ss = 0;

	for (unsigned i = n; i-- > 0;) {
		struct dc_node *nd = cfg[i].node;
		const struct dc_info *info = &nd->info;
		const char *name = layered_name(nd);
		uint32_t ss;
		int rc;

		if (cfg[i].is_layer && nd->plugin->attach) {
			struct dc_info lower;

			if (i + 1 < n) {
				lower = cfg[i + 1].node->info;
				lower.sector_count =
					dc_node_sector_count(cfg[i + 1].node);
			}
			dc__error_push_prefix(name);
			rc = nd->plugin->attach(nd->inst, i + 1 < n ? &lower : NULL,
						&nd->info);
			dc__error_pop_prefix();
			if (rc < 0)
				return rc;
			dc__node_seal(nd);
		}
		if (cfg[i].read_cache &&
		    !(cfg[i].is_layer && (info->flags & DC_INFO_CAN_READ_CACHE)))
			return dc_fail(-EINVAL,
				       "layer %u (%s): read caching was requested, but "
				       "the layer cannot write without overwriting "
				       "(no write-no-overwrite support)",
				       i, name);
		ss = info->sector_size;
		if (ss < 512 || (ss & (ss - 1)))
			return dc_fail(-EINVAL,
				       "layer %u (%s): sector size %u is invalid: "
				       "expected a power of two >= 512",
				       i, name, ss);
		if (i == n - 1)
			bottom_ss = ss;
		else if (ss != bottom_ss)
			return dc_fail(-EINVAL,
				       "layer %u (%s): sector size %u does not match the "
				       "bottom layer's %u; all layers must use one "
				       "sector size",
				       i, name, ss, bottom_ss);
	}
	return 0;
}

/* Top-down pass over the write path; fills the merged metadata (§4.2 3-5). */
static int layered_merge(struct layered_layer *cfg, unsigned n, bool read_only,
			 struct dc_info *out)
{
	bool last_wt = true, fua = true, must_zero = false, has_id = false;
	uint32_t unmap = DC_UNMAP_ZEROES, opt = 1;
	uint64_t visible = UINT64_MAX;

	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < n; i++) {
		const struct dc_info *info = &cfg[i].node->info;
		const char *name = layered_name(cfg[i].node);
		uint64_t count;

		if (last_wt) {
			if ((info->flags & DC_INFO_READ_ONLY) && !read_only)
				return dc_fail(-EROFS,
					       "layer %u (%s) is read-only but writes "
					       "reach it; open the disk read-only, or "
					       "put a writable layer such as memdiff: "
					       "above it",
					       i, name);
			fua = fua && (info->flags & DC_INFO_FUA_RESPECTED);
			must_zero = must_zero || cfg[i].write_through;
			unmap = layered_merge_unmap(unmap, info->unmap_behavior,
						    must_zero);
			if (info->optimal_unmap_sectors > opt)
				opt = info->optimal_unmap_sectors;
		} else if (cfg[i].write_through) {
			return dc_fail(-EINVAL,
				       "layer %u (%s): write-through is useless here: "
				       "the layer above it is not write-through, so "
				       "no writes reach it",
				       i, name);
		}
		last_wt = cfg[i].write_through;
		if (!has_id && (info->flags & DC_INFO_HAS_DISK_ID)) {
			memcpy(out->disk_id, info->disk_id, sizeof(out->disk_id));
			has_id = true;
		}
		count = dc_node_sector_count(cfg[i].node);
		if (count < visible)
			visible = count;
		cfg[i].visible = visible;
	}
	if (last_wt)
		return dc_fail(-EINVAL,
			       "layer %u (%s): write-through on the bottom layer: "
			       "there is nothing below to write through to",
			       n - 1, layered_name(cfg[n - 1].node));
	out->sector_count = dc_node_sector_count(cfg[0].node);
	out->sector_size = cfg[n - 1].node->info.sector_size;
	out->physical_sector_size = cfg[0].node->info.physical_sector_size;
	if (out->physical_sector_size < out->sector_size)
		out->physical_sector_size = out->sector_size;
	out->optimal_unmap_sectors = opt;
	out->unmap_behavior = unmap;
	out->flags = (read_only ? DC_INFO_READ_ONLY : 0) |
		     (fua ? DC_INFO_FUA_RESPECTED : 0) |
		     (has_id ? DC_INFO_HAS_DISK_ID : 0);
	snprintf(out->disk_type, sizeof(out->disk_type), "layered");
	return 0;
}

int dc__layered_open(struct dc_disk *disk, struct dc_spec *s, bool read_only,
		     struct dc_node **out)
{
	struct layered_layer cfg[LAYERED_MAX_LAYERS];
	struct dc_node *nodes[LAYERED_MAX_LAYERS];
	struct dc_spec *owned[LAYERED_MAX_LAYERS];
	unsigned n = 0, nowned = 0;
	struct layered *ld = NULL;
	struct dc_info info;
	int rc;

	if (!s || !s->plugin || s->plugin->kind != DC_KIND_LAYER)
		return dc_fail(-EINVAL, "no layers: a layered disk needs a layer spec");
	rc = layered_collect(disk, s, read_only, cfg, &n, owned, &nowned);
	if (rc == 0 && n == 0)
		rc = dc_fail(-EINVAL, "no layers were configured");
	if (rc == 0)
		rc = layered_attach(cfg, n);
	if (rc == 0)
		rc = layered_merge(cfg, n, read_only, &info);
	if (rc == 0) {
		ld = calloc(1, sizeof(*ld));
		if (ld)
			ld->layers = malloc(n * sizeof(*ld->layers));
		if (!ld || !ld->layers)
			rc = dc_fail(-ENOMEM, "out of memory");
	}
	if (rc == 0) {
		memcpy(ld->layers, cfg, n * sizeof(*cfg));
		ld->nlayers = n;
		ld->shift = (unsigned)__builtin_ctz(info.sector_size);
		ld->read_only = read_only;
		ld->unmap_behavior = info.unmap_behavior;
		for (unsigned i = 0; i < n; i++)
			nodes[i] = cfg[i].node;
		rc = dc__node_wrap(disk, &dc__layered_plugin, ld, &info, s->text, nodes,
				   n, out);
	}
	/* One layer, nothing below: what it lacks reads as zero, which such a
	 * layer fills itself; the layered disk then only forwards. Unmap still
	 * walks (it tells the layer that nothing lies below). */
	if (rc == 0 && n == 1 && cfg[0].is_layer && !cfg[0].read_cache &&
	    (cfg[0].node->plugin->layer_flags & DC_LAYER_FILLS_ZERO))
		(*out)->fwd_ops = DC_OP_BIT(DC_OP_READ) | DC_OP_BIT(DC_OP_WRITE) |
				  DC_OP_BIT(DC_OP_FLUSH);
	for (unsigned i = 0; i < nowned; i++)
		dc__spec_free(owned[i]);
	if (rc < 0) {
		if (ld) {
			free(ld->layers);
			free(ld);
		}
		while (n-- > 0)
			dc__node_close(cfg[n].node);
	}
	return rc;
}
