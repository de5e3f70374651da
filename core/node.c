/* SPDX-License-Identifier: MIT */
/*
 * Nodes: one per plugin instance of a chain, plus the core's layered disk. This
 * file builds them from a parsed spec (children first), validates and settles
 * their metadata, closes them, and holds the services a plugin calls on its
 * node. The one recursion in the core is here: opening a layer form calls
 * dc__layered_open() (layered.c), which opens each layer through
 * dc__node_create() and, for a plain disk at the bottom, dc__node_open().
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

static bool is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

/* docs/openvmm-compat.md §1.5: what every disk must report, checked where it is reported
 * so the message names the plugin at fault. */
static int node_validate(struct dc_node *n)
{
	struct dc_info *i = &n->info;

	if (!is_pow2(i->sector_size) || i->sector_size < 512)
		return dc_fail(-EINVAL,
			       "invalid sector size %u (must be a power of two >= 512)",
			       i->sector_size);
	if (!is_pow2(i->physical_sector_size) || i->physical_sector_size < i->sector_size)
		return dc_fail(
			-EINVAL,
			"invalid physical sector size %u (must be a power of two >= the sector size %u)",
			i->physical_sector_size, i->sector_size);
	if (i->unmap_behavior > DC_UNMAP_ZEROES)
		return dc_fail(-EINVAL, "invalid unmap behaviour %u", i->unmap_behavior);
	if (!i->disk_type[0])
		snprintf(i->disk_type, sizeof(i->disk_type), "%s", n->plugin->name);
	return 0;
}

/* disk->nodes changes under nodes_lock: a plugin's own thread may call
 * dc_node_notify_resize() while the chain is still opening or closing. */
static int node_add(struct dc_disk *disk, struct dc_node *n)
{
	struct dc_node **nodes;
	int rc = 0;

	pthread_mutex_lock(&disk->nodes_lock);
	nodes = realloc(disk->nodes, (disk->nnodes + 1) * sizeof(*nodes));
	if (nodes) {
		disk->nodes = nodes;
		n->index = disk->nnodes;
		nodes[disk->nnodes++] = n;
	} else {
		rc = -ENOMEM;
	}
	pthread_mutex_unlock(&disk->nodes_lock);
	return rc;
}

static void node_forget(struct dc_node *n)
{
	struct dc_disk *d = n->disk;

	pthread_mutex_lock(&d->nodes_lock);
	if (d->nnodes && d->nodes[d->nnodes - 1] == n)
		d->nnodes--;
	else if (d->nodes[n->index] == n)
		d->nodes[n->index] = NULL;
	pthread_mutex_unlock(&d->nodes_lock);
}

/* Fail closed (plugin.h): a flag that promises an op survives only where the
 * plugin handles the op, or forwards it to a child that keeps the promise; a
 * node that cannot write is read-only, one that cannot unmap ignores unmap.
 * Then the geometry the request guard checks against. Runs once the node's
 * metadata is final: after open(), for a layer after attach(). */
void dc__node_seal(struct dc_node *n)
{
	static const struct {
		uint64_t ops;
		uint32_t flag;
	} promises[] = {
		{ DC_OPS_PR, DC_INFO_PR },
		{ DC_OP_BIT(DC_OP_EJECT), DC_INFO_EJECT },
		{ DC_OP_BIT(DC_OP_WRITE), DC_INFO_FUA_RESPECTED },
	};
	const struct dc_plugin *p = n->plugin;
	struct dc_info *i = &n->info;
	uint64_t pass = n->nchildren ? p->passthrough_ops & ~p->ops : 0;
	uint32_t child_flags = n->nchildren ? n->children[0]->info.flags : 0;

	for (unsigned k = 0; k < DC_ARRAY_SIZE(promises); k++) {
		uint64_t ops = promises[k].ops;

		if ((ops & (p->ops | pass)) != ops ||
		    ((ops & pass) && !(child_flags & promises[k].flag)))
			i->flags &= ~promises[k].flag;
	}
	if (!((p->ops | pass) & DC_OP_BIT(DC_OP_WRITE)))
		i->flags |= DC_INFO_READ_ONLY;
	if (!((p->ops | pass) & DC_OP_BIT(DC_OP_UNMAP)))
		i->unmap_behavior = DC_UNMAP_IGNORED;
	/* Reserved for later minors: what a consumer reads there is zero. */
	memset(i->reserved, 0, sizeof(i->reserved));
	atomic_store(&n->live, dc__node_live_count(n));
	n->op_flags[DC_OP_WRITE] = DC_IO_FUA |
				   (p->kind == DC_KIND_LAYER ? DC_IO_NO_OVERWRITE : 0);
	n->op_flags[DC_OP_UNMAP] = DC_IO_BLOCK_LEVEL_ONLY |
				   (p->kind == DC_KIND_LAYER ? DC_IO_NEXT_IS_ZERO : 0);
	n->shift = i->sector_size ? (unsigned)__builtin_ctz(i->sector_size) : 9;
	n->max_sector = (uint64_t)INT64_MAX >> n->shift;
}

/* Slot layout: [core request][ctx][embedded child slot, single-child nodes]. */
static void node_layout(struct dc_node *n)
{
	n->ctx_off = DC_ALIGN_UP(sizeof(struct dc_ireq), 16);
	n->slot_size = n->ctx_off + DC_ALIGN_UP(n->plugin->ctx_size, 16);
	/* Room for the first child request, whichever child it goes to: a
	 * decorator's, or the one member a striped or layered request often
	 * touches, never takes a slot from the heap. */
	n->embed_size = 0;
	for (unsigned i = 0; i < n->nchildren; i++)
		if (n->children[i]->slot_size > n->embed_size)
			n->embed_size = n->children[i]->slot_size;
	n->slot_size += n->embed_size;
	/* A request forwarded unchanged needs no child request: it moves down
	 * in its own slot, which the embedded room makes big enough (req.c). */
	n->fwd_ops = n->embed_size && n->children[0]->shift == n->shift ?
			     n->plugin->passthrough_ops & ~n->plugin->ops :
			     0;
}

static struct dc_node *node_new(struct dc_disk *disk, const struct dc_plugin *p,
				const struct dc_form *form, const char *label,
				struct dc_node **children, unsigned nchildren)
{
	struct dc_node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->plugin = p;
	n->form = form;
	n->disk = disk;
	n->label = strdup(label ? label : p->name);
	if (n->label)
		dc__redact_urls(n->label);
	if (nchildren) {
		n->children = calloc(nchildren, sizeof(*children));
		if (!n->children) {
			free(n->label);
			free(n);
			return NULL;
		}
		memcpy(n->children, children, nchildren * sizeof(*children));
	}
	n->nchildren = nchildren;
	for (unsigned i = 0; i < nchildren; i++)
		children[i]->parent = n;
	if (!n->label || node_add(disk, n) < 0) {
		free(n->children);
		free(n->label);
		free(n);
		return NULL;
	}
	return n;
}

/* Forget a node that never opened: its children stay with the caller. */
static void node_discard(struct dc_node *n)
{
	node_forget(n);
	free(n->children);
	free(n->label);
	free(n);
}

int dc__node_create(struct dc_disk *disk, struct dc_spec *s, bool read_only,
		    struct dc_node **children, unsigned nchildren, struct dc_node **out)
{
	struct dc_open_args a = {
		.struct_size = sizeof(a),
		.form = s->written ? s->written : s->form->name,
		.fields = (const char *const *)s->fields,
		.nfields = s->nfields,
		.opts = s->opts,
		.nopts = s->nopts,
		.read_only = read_only,
		.nchildren = nchildren,
		.force_share = disk->open_flags & DC_OPEN_FORCE_SHARE,
	};
	struct dc_node *n =
		node_new(disk, s->plugin, s->form, s->text, children, nchildren);
	int rc;

	if (!n)
		return dc_fail(-ENOMEM, "%s: out of memory", s->form->name);
	a.node = n;
	/* A decorator starts from its child's metadata; the plugin adjusts it. */
	if (nchildren)
		n->info = children[0]->info;
	dc__error_clear();
	dc__error_push_prefix(s->form->name);
	rc = s->plugin->open(&a, &n->inst, &n->info);
	if (rc == 0 && s->plugin->kind != DC_KIND_LAYER)
		rc = node_validate(n);
	if (rc == 0)
		dc__node_seal(n);
	dc__error_pop_prefix();
	if (rc < 0) {
		if (n->inst && s->plugin->close)
			s->plugin->close(n->inst);
		node_discard(n);
		if (!dc__error_isset())
			dc__error_raw("%s: open failed: %s", s->form->name,
				      strerror(-rc));
		return rc;
	}
	node_layout(n);
	*out = n;
	return 0;
}

int dc__node_wrap(struct dc_disk *disk, const struct dc_plugin *p, void *inst,
		  const struct dc_info *info, const char *label,
		  struct dc_node **children, unsigned nchildren, struct dc_node **out)
{
	struct dc_node *n = node_new(disk, p, NULL, label, children, nchildren);
	int rc;

	if (!n)
		return dc_fail(-ENOMEM, "out of memory");
	n->inst = inst;
	n->info = *info;
	rc = node_validate(n);
	if (rc < 0) {
		node_discard(n);
		return rc;
	}
	dc__node_seal(n);
	node_layout(n);
	*out = n;
	return 0;
}

void dc__node_close(struct dc_node *n)
{
	if (!n)
		return;
	/* Out of the disk's list first: a resize notification from a child's
	 * thread must not ask this node's closed instance for its size. */
	node_forget(n);
	if (n->plugin->close)
		n->plugin->close(n->inst);
	for (unsigned i = 0; i < n->nchildren; i++)
		dc__node_close(n->children[i]);
	free(n->children);
	free(n->label);
	free(n);
}

int dc__node_open(struct dc_disk *disk, struct dc_spec *s, bool read_only,
		  struct dc_node **out)
{
	struct dc_node **children = NULL;
	unsigned i;
	int rc = 0;

	if (s->plugin->kind == DC_KIND_LAYER)
		return dc__layered_open(disk, s, read_only, out);
	if (s->nchildren) {
		children = calloc(s->nchildren, sizeof(*children));
		if (!children)
			return dc_fail(-ENOMEM, "out of memory");
	}
	for (i = 0; i < s->nchildren; i++) {
		rc = dc__node_open(disk, s->children[i], read_only, &children[i]);
		if (rc < 0)
			break;
	}
	if (rc == 0)
		rc = dc__node_create(disk, s, read_only, children, s->nchildren, out);
	if (rc < 0) {
		while (i-- > 0)
			dc__node_close(children[i]);
	}
	free(children);
	return rc;
}

uint64_t dc__node_live_count(struct dc_node *n)
{
	const struct dc_plugin *p = n->plugin;

	if (p->sector_count)
		return p->sector_count(n->inst);
	if (p->kind == DC_KIND_DECORATOR && n->nchildren)
		return dc__node_live_count(n->children[0]);
	return n->info.sector_count;
}

/* --- Plugin services ------------------------------------------------------------ */

DC_EXPORT unsigned dc_node_nchildren(struct dc_node *n)
{
	return n->nchildren;
}

DC_EXPORT struct dc_node *dc_node_child(struct dc_node *n, unsigned i)
{
	return i < n->nchildren ? n->children[i] : NULL;
}

DC_EXPORT void dc_node_info(struct dc_node *n, struct dc_info *info)
{
	*info = n->info;
	info->sector_count = dc__node_live_count(n);
}

DC_EXPORT uint64_t dc_node_sector_count(struct dc_node *n)
{
	return dc__node_live_count(n);
}

DC_EXPORT void dc_node_notify_resize(struct dc_node *n)
{
	struct dc_disk *d = n->disk;

	/* Every node belongs to one disk; the whole chain above sees the live count
	 * through its sector_count callbacks, so refreshing what the request
	 * guard reads and waking the disk's waiters is the forwarding. */
	pthread_mutex_lock(&d->nodes_lock);
	for (unsigned i = 0; i < d->nnodes; i++)
		if (d->nodes[i])
			atomic_store(&d->nodes[i]->live,
				     dc__node_live_count(d->nodes[i]));
	pthread_mutex_unlock(&d->nodes_lock);
	pthread_mutex_lock(&d->resize_lock);
	d->resize_epoch++;
	pthread_cond_broadcast(&d->resize_cond);
	pthread_mutex_unlock(&d->resize_lock);
	eventfd_write(d->resize_fd, 1);
}

DC_EXPORT bool dc_opt_flag(const struct dc_open_args *a, const char *name)
{
	for (uint32_t i = 0; i < a->nopts; i++)
		if (strcmp(a->opts[i].name, name) == 0)
			return true;
	return false;
}

DC_EXPORT const char *dc_opt_str(const struct dc_open_args *a, const char *name)
{
	for (uint32_t i = 0; i < a->nopts; i++)
		if (strcmp(a->opts[i].name, name) == 0)
			return a->opts[i].value ? a->opts[i].value : "";
	return NULL;
}

DC_EXPORT bool dc_opt_num(const struct dc_open_args *a, const char *name, uint64_t *out)
{
	for (uint32_t i = 0; i < a->nopts; i++) {
		if (strcmp(a->opts[i].name, name) == 0) {
			*out = a->opts[i].num;
			return true;
		}
	}
	return false;
}
