/* SPDX-License-Identifier: MIT */
/* passthru: a decorator that changes nothing, written to be copied as the
 * start of a real one (docs/plugin-guide.md, "A decorator, step by step").
 * Built out of tree against the installed headers:
 *
 *   cc -shared -fPIC -fvisibility=hidden $(pkg-config --cflags diskcore) \
 *      -o passthru.so passthru.c $(pkg-config --libs diskcore)
 *
 * Spec: passthru:SPEC. Reads, writes, flushes and unmaps go to SPEC as child
 * requests, counted per queue; eject and persistent reservations are passed
 * through by the core. `diskctl info` shows the counts of the queues closed
 * so far. */
#include <diskcore/plugin.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* What the counters count, as describe() names them. */
enum {
	PT_READS,
	PT_WRITES,
	PT_FLUSHES,
	PT_UNMAPS,
	PT_BYTES_READ,
	PT_BYTES_WRITTEN,
	PT_ERRORS,
	PT_NCOUNTERS
};
static const char *const pt_names[PT_NCOUNTERS] = {
	"reads", "writes", "flushes", "unmaps", "bytes_read", "bytes_written", "errors",
};

/* Per queue: only the queue's thread touches it (submit() and the child's
 * done callback both run there, plugin.h "Threads"), so plain counters. */
struct pt_queue {
	uint64_t n[PT_NCOUNTERS];
};

/* Per instance: shared by every queue, so atomic. Each queue adds its counts
 * when it closes; the I/O path never touches them. */
struct passthru {
	atomic_uint_fast64_t total[PT_NCOUNTERS];
	atomic_uint queues; /* open now */
};

static int pt_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct passthru *pt = calloc(1, sizeof(*pt));

	if (!pt)
		return dc_fail(-ENOMEM, "out of memory");
	/* info arrives as the child's metadata; after open() the core clears
	 * the flags of ops this plugin neither handles nor passes through
	 * (plugin.h, "Fail closed"). Nothing to change but the name. */
	(void)a;
	snprintf(info->disk_type, sizeof(info->disk_type), "passthru");
	*inst = pt;
	return 0;
}

static void pt_close(void *inst)
{
	free(inst);
}

static int pt_queue_open(void *inst, void **qctx)
{
	struct passthru *pt = inst;

	*qctx = calloc(1, sizeof(struct pt_queue));
	if (!*qctx)
		return dc_fail(-ENOMEM, "out of memory");
	atomic_fetch_add(&pt->queues, 1);
	return 0;
}

static void pt_queue_close(void *inst, void *qctx)
{
	struct passthru *pt = inst;
	struct pt_queue *q = qctx;

	for (int i = 0; i < PT_NCOUNTERS; i++)
		atomic_fetch_add_explicit(&pt->total[i], q->n[i], memory_order_relaxed);
	atomic_fetch_sub(&pt->queues, 1);
	free(q);
}

/* The child finished: on the queue's thread, like submit(). */
static void pt_done(struct dc_req *parent, struct dc_req *child)
{
	struct pt_queue *q = parent->qctx;

	if (child->result)
		q->n[PT_ERRORS]++;
	/* Parent takes the child's result and detail; the child is freed. */
	dc_child_done_complete(parent, child);
}

/* Only the ops in .ops get here, each checked by the core (range, length,
 * flags, read-only): nothing to validate. */
static void pt_submit(void *inst, struct dc_req *req)
{
	struct pt_queue *q = req->qctx;
	struct dc_req *child;

	(void)inst;
	switch (req->op) {
	case DC_OP_READ:
		q->n[PT_READS]++;
		q->n[PT_BYTES_READ] += req->buf.len;
		break;
	case DC_OP_WRITE:
		q->n[PT_WRITES]++;
		q->n[PT_BYTES_WRITTEN] += req->buf.len;
		break;
	case DC_OP_FLUSH:
		q->n[PT_FLUSHES]++;
		break;
	default:
		q->n[PT_UNMAPS]++;
		break;
	}
	/* The same op, flags, range and buffer, addressed to child 0. A real
	 * decorator changes what it needs here (a bounce buffer, a sector
	 * offset) or in pt_done(). */
	child = dc_child_req(req, 0);
	if (!child) {
		dc_complete_detail(req, DC_E_IO, ENOMEM);
		return;
	}
	dc_child_submit(req, child, pt_done);
}

static void pt_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct passthru *pt = inst;
	char buf[24];

	for (int i = 0; i < PT_NCOUNTERS; i++) {
		snprintf(buf, sizeof(buf), "%llu",
			 (unsigned long long)atomic_load_explicit(&pt->total[i],
								  memory_order_relaxed));
		kv(arg, pt_names[i], buf);
	}
	snprintf(buf, sizeof(buf), "%u", atomic_load(&pt->queues));
	kv(arg, "queues_open", buf);
}

DC_PLUGIN(passthru_plugin) = {
	DC_ABOUT(DC_KIND_DECORATOR, "passthru", "1.0",
		 "example out-of-tree decorator: forwards and counts requests"),
	.forms = DC_FORMS(DC_FORM("passthru", 0, DC_CHILD_ONE, "passthru:SPEC",
				  "passes every request to SPEC, counting them per queue",
				  NULL)),
	.ops = DC_OPS_RW,
	.passthrough_ops = DC_OP_BIT(DC_OP_EJECT) | DC_OPS_PR,
	DC_CALLBACKS(pt, open, close, queue_open, queue_close, submit, describe),
};
