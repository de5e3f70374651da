/* SPDX-License-Identifier: MIT */
/* fault: injects errors, hangs and delays into the requests that pass through
 * it, as rules say (docs/spec-strings.md, "fault"), for testing what sits
 * above a disk that fails.
 *
 * Each request of a rule's operations takes the next index of that rule's
 * atomic counter; whether the rule fires is a pure function of the seed, the
 * rule and that index (rules.c), so the same seed faults the same request
 * indices every run and several queues share one sequence without a lock.
 * The first rule that fires decides; a request no rule fires for is forwarded
 * to the child unchanged. Held (hung) requests are kept per queue, on the
 * queue's thread, so that list needs no lock either. */
#include "fault.h"

#include <diskcore/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FAULT_NS_PER_MS 1000000u

struct fault_disk {
	uint64_t seed;
	uint64_t hang_ms; /* 0: hung requests wait for their queue to close */
	unsigned nrules;
	struct fault_rule rules[FAULT_MAX_RULES];
	atomic_uint_fast64_t held; /* hung requests not yet completed */
};

/* Per queue: the requests hang= holds, linked through their ctx. */
struct fault_queue {
	struct dc_req *held;
};

struct fault_ctx {
	struct dc_req *next; /* in fault_queue.held */
	int result, detail;  /* delay=: the child's, completed later */
	uint64_t ms;
};

/* The first rule that fires for req, or NULL. Every rule of req's op counts
 * it, so a rule's indices do not depend on what the rules before it did. */
static struct fault_rule *fault_pick(struct fault_disk *d, struct dc_req *req)
{
	struct fault_rule *hit = NULL;

	for (unsigned i = 0; i < d->nrules; i++) {
		struct fault_rule *r = &d->rules[i];
		uint64_t k;

		if (!(r->ops & DC_OP_BIT(req->op)))
			continue;
		k = atomic_fetch_add_explicit(&r->seen, 1, memory_order_relaxed);
		if (!hit && fault_rule_fires(r, d->seed, i, k, req->sector, req->count))
			hit = r;
	}
	if (hit)
		atomic_fetch_add_explicit(&hit->injected, 1, memory_order_relaxed);
	return hit;
}

/* -ERRNO with a detail the consumer can print: the errno itself, but for a
 * medium error, whose detail says which kind. */
static void fault_fail(struct dc_req *req, int err)
{
	int detail = err;

	if (err == EBADMSG)
		detail = req->op == DC_OP_READ ? DC_MEDIUM_UNRECOVERED_READ :
						 DC_MEDIUM_WRITE_FAULT;
	dc_complete_detail(req, -err, detail);
}

static void fault_release(struct fault_disk *d, struct dc_req *req, int detail)
{
	atomic_fetch_sub_explicit(&d->held, 1, memory_order_relaxed);
	dc_complete_detail(req, DC_E_IO, detail);
}

static void fault_hang_expired(void *arg)
{
	struct dc_req *req = arg;

	fault_release(req->inst, req, ETIMEDOUT);
}

static void fault_hang(struct fault_disk *d, struct dc_req *req)
{
	struct fault_queue *fq = req->qctx;
	struct fault_ctx *c = req->ctx;
	int rc;

	atomic_fetch_add_explicit(&d->held, 1, memory_order_relaxed);
	if (d->hang_ms) {
		rc = dc_timer_after(d->hang_ms * FAULT_NS_PER_MS, fault_hang_expired,
				    req);
		if (rc < 0)
			fault_release(d, req, -rc);
		return;
	}
	c->next = fq->held;
	fq->held = req;
}

static void fault_delay_fire(void *arg)
{
	struct dc_req *req = arg;
	struct fault_ctx *c = req->ctx;

	dc_complete_detail(req, c->result, c->detail);
}

/* delay=: the child has finished; its result reaches the parent c->ms later. */
static void fault_delay_done(struct dc_req *parent, struct dc_req *child)
{
	struct fault_ctx *c = parent->ctx;

	c->result = child->result;
	c->detail = child->detail;
	dc_child_free(parent, child);
	if (!c->ms || dc_timer_after(c->ms * FAULT_NS_PER_MS, fault_delay_fire, parent))
		fault_delay_fire(parent);
}

static void fault_submit(void *inst, struct dc_req *req)
{
	struct fault_disk *d = inst;
	struct fault_rule *r = fault_pick(d, req);
	struct fault_ctx *c = req->ctx;
	struct dc_req *child;

	if (r && r->action == FAULT_ERROR) {
		fault_fail(req, r->err);
		return;
	}
	if (r && r->action == FAULT_HANG) {
		fault_hang(d, req);
		return;
	}
	child = dc_child_req(req, 0);
	if (!child) {
		dc_complete_detail(req, DC_E_IO, ENOMEM);
		return;
	}
	if (r) {
		c->ms = r->ms;
		dc_child_submit(req, child, fault_delay_done);
		return;
	}
	dc_child_submit(req, child, dc_child_done_complete);
}

static int fault_queue_open(void *inst, void **qctx)
{
	(void)inst;
	*qctx = calloc(1, sizeof(struct fault_queue));
	return *qctx ? 0 : dc_fail(-ENOMEM, "out of memory");
}

/* The queue closes: what hang= still holds completes now, with ECANCELED
 * (docs/spec-strings.md, "fault", on what the consumer sees). */
static void fault_queue_close(void *inst, void *qctx)
{
	struct fault_queue *fq = qctx;

	while (fq->held) {
		struct dc_req *req = fq->held;

		fq->held = ((struct fault_ctx *)req->ctx)->next;
		fault_release(inst, req, ECANCELED);
	}
	free(fq);
}

/* No seed given: one from the clock, shown by describe() so a run can be
 * repeated with ;seed=. */
static uint64_t fault_clock_seed(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static const struct dc_option fault_options[] = {
	DC_OPTION_UINT(
		"seed",
		"seed of the rate rules' draws (default: from the clock, see info)"),
	DC_OPTION_UINT("hang-ms",
		       "a hung request fails with ETIMEDOUT after this many ms "
		       "(default: when its queue closes)"),
	DC_OPTIONS_END,
};

static int fault_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct fault_disk *d;
	int rc;

	if (a->nfields != 1 || a->nchildren != 1)
		return dc_fail(-EINVAL, "expected fault:RULE[,RULE...][;seed=N]:SPEC");
	d = calloc(1, sizeof(*d));
	if (!d)
		return dc_fail(-ENOMEM, "out of memory");
	atomic_init(&d->held, 0);
	if (!dc_opt_num(a, "seed", &d->seed))
		d->seed = fault_clock_seed();
	if (dc_opt_num(a, "hang-ms", &d->hang_ms) &&
	    (d->hang_ms < 1 || d->hang_ms > FAULT_MAX_MS)) {
		rc = dc_fail(-EINVAL, "hang-ms=%llu: expected 1 to %u milliseconds",
			     (unsigned long long)d->hang_ms, FAULT_MAX_MS);
		free(d);
		return rc;
	}
	rc = fault_rules_parse(a->fields[0], d->rules, &d->nrules);
	if (rc < 0) {
		free(d);
		return rc;
	}
	dc_node_info(dc_node_child(a->node, 0), info);
	snprintf(info->disk_type, sizeof(info->disk_type), "fault");
	*inst = d;
	return 0;
}

static void fault_close(void *inst)
{
	struct fault_disk *d = inst;

	fault_rules_free(d->rules, d->nrules);
	free(d);
}

static void fault_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct fault_disk *d = inst;
	char key[32], val[32];

	dc_kv_u64(kv, arg, "seed", d->seed);
	if (d->hang_ms) {
		dc_kv_u64(kv, arg, "hang_ms", d->hang_ms);
	}
	dc_kv_u64(kv, arg, "held", atomic_load(&d->held));
	for (unsigned i = 0; i < d->nrules; i++) {
		struct fault_rule *r = &d->rules[i];

		snprintf(key, sizeof(key), "rule%u", i);
		kv(arg, key, r->text);
		snprintf(key, sizeof(key), "rule%u_seen", i);
		snprintf(val, sizeof(val), "%llu",
			 (unsigned long long)atomic_load(&r->seen));
		kv(arg, key, val);
		snprintf(key, sizeof(key), "rule%u_injected", i);
		snprintf(val, sizeof(val), "%llu",
			 (unsigned long long)atomic_load(&r->injected));
		kv(arg, key, val);
	}
}

DC_PLUGIN(fault_plugin) = {
	DC_ABOUT(DC_KIND_DECORATOR, "fault", "0.1.0",
		 "fault injection: errors, hangs and delays by rule (tests)"),
	.usage = "fault:RULE[,RULE...][;seed=N][;hang-ms=N]:SPEC\n"
		 "  RULE is OP=ERRNO@WHEN (complete with -ERRNO), hang=OP@WHEN (hold\n"
		 "  the request) or delay=OP/MS@WHEN (complete MS ms late). OP: read,\n"
		 "  write, flush, unmap or any. WHEN: a rate (5%, 0.1%), after=N\n"
		 "  (every request of OP past the first N) or sectors=A-B (requests\n"
		 "  touching sectors A..B). Rules are separated by ',' or '+' (use\n"
		 "  '+' inside a striped list). The first rule that fires decides;\n"
		 "  other requests pass to SPEC unchanged. A hung request fails with\n"
		 "  ETIMEDOUT after hang-ms, or with ECANCELED when its queue closes.",
	.forms = DC_FORMS(
		DC_FORM("fault", 1, DC_CHILD_ONE,
			"fault:RULE[,RULE...][;seed=N][;hang-ms=N]:SPEC",
			"injects errors, hangs and delays into requests, as rules say",
			fault_options)),
	.ctx_size = sizeof(struct fault_ctx),
	.ops = DC_OPS_RW,
	.passthrough_ops = DC_OP_BIT(DC_OP_EJECT) | DC_OPS_PR,
	DC_CALLBACKS(fault, open, close, queue_open, queue_close, submit, describe),
};
