/* SPDX-License-Identifier: MIT */
/* delay: adds latency to reads and writes without blocking a thread.
 *
 * A delayed request is parked on the core's timer service and submitted to the
 * child when its deadline passes, so any number of requests can wait at once.
 * With ;p99=MS every 100th read or write waits MS instead: deterministic, unlike
 * a random 1%, so tests and benchmarks see the same tail every run. Other ops
 * pass through untouched and undelayed. */
#include <diskcore/plugin.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DELAY_MAX_MS 3600000u /* one hour: anything longer is a typo */
#define DELAY_NS_PER_MS 1000000u

struct delay_disk {
	uint64_t delay_ms;
	uint64_t p99_ms;
	bool has_p99;
	atomic_uint_fast64_t nio; /* reads and writes seen, for the p99 cadence */
};

struct delay_ctx {
	struct dc_req *child;
};

static void delay_fire(void *arg)
{
	struct dc_req *req = arg;
	struct delay_ctx *c = req->ctx;

	dc_child_submit(req, c->child, dc_child_done_complete);
}

static void delay_submit(void *inst, struct dc_req *req)
{
	struct delay_disk *d = inst;
	struct delay_ctx *c = req->ctx;
	uint64_t ms = d->delay_ms;
	int ret;

	if (d->has_p99 && atomic_fetch_add(&d->nio, 1) % 100 == 99)
		ms = d->p99_ms;
	c->child = dc_child_req(req, 0);
	if (!c->child) {
		dc_complete(req, -ENOMEM);
		return;
	}
	if (ms == 0) {
		dc_child_submit(req, c->child, dc_child_done_complete);
		return;
	}
	ret = dc_timer_after(ms * DELAY_NS_PER_MS, delay_fire, req);
	if (ret) {
		dc_child_free(req, c->child);
		dc_complete(req, ret);
	}
}

/* A whole number of milliseconds, 0..DELAY_MAX_MS. */
static int delay_parse_ms(const char *what, const char *s, uint64_t *out)
{
	uint64_t v = 0;
	const char *p;

	if (s[0] == '-')
		return dc_fail(
			-EINVAL,
			"%s \"%s\" is negative: expected milliseconds from 0 to %u", what,
			s, DELAY_MAX_MS);
	for (p = s; *p; p++) {
		if (*p < '0' || *p > '9' || v > DELAY_MAX_MS)
			break;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (!s[0] || *p || v > DELAY_MAX_MS) {
		dc_error(
			"%s \"%s\" is not a delay: expected whole milliseconds from 0 to %u "
			"(delay:MS[;p99=MS]:SPEC)",
			what, s, DELAY_MAX_MS);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

static const struct dc_option delay_options[] = {
	DC_OPTION_UINT("p99", "every 100th read or write waits this many ms instead"),
	DC_OPTIONS_END,
};

static int delay_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct delay_disk *d;
	const char *p99;
	int ret;

	if (a->nfields < 1 || a->nchildren != 1)
		return dc_fail(-EINVAL, "expected delay:MS:SPEC");
	d = calloc(1, sizeof(*d));
	if (!d)
		return dc_fail(-ENOMEM, "out of memory");
	ret = delay_parse_ms("delay", a->fields[0], &d->delay_ms);
	p99 = dc_opt_str(a, "p99");
	if (!ret && p99) {
		ret = delay_parse_ms("p99", p99, &d->p99_ms);
		d->has_p99 = true;
	}
	if (ret) {
		free(d);
		return ret;
	}
	atomic_init(&d->nio, 0);
	dc_node_info(dc_node_child(a->node, 0), info);
	snprintf(info->disk_type, sizeof(info->disk_type), "delay");
	*inst = d;
	return 0;
}

static void delay_close(void *inst)
{
	free(inst);
}

static void delay_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct delay_disk *d = inst;

	dc_kv_u64(kv, arg, "delay_ms", d->delay_ms);
	if (d->has_p99) {
		dc_kv_u64(kv, arg, "p99_ms", d->p99_ms);
	}
}

DC_PLUGIN(delay_plugin) = {
	DC_ABOUT(DC_KIND_DECORATOR, "delay", "0.1.0",
		 "adds latency to reads and writes (non-blocking, timer based)"),
	.usage = "delay:MS[;p99=MS]:SPEC\n"
		 "  Every read and write waits MS milliseconds before it is passed to\n"
		 "  SPEC; with ;p99=MS, every 100th waits the p99 value instead. No\n"
		 "  thread sleeps: requests wait on the core's timer. Flush, unmap,\n"
		 "  eject and persistent-reservation commands pass through undelayed.",
	.forms = DC_FORMS(
		DC_FORM("delay", 1, DC_CHILD_ONE, "delay:MS[;p99=MS]:SPEC",
			"adds MS milliseconds of latency to every read and write",
			delay_options)),
	.ctx_size = sizeof(struct delay_ctx),
	.ops = DC_OP_BIT(DC_OP_READ) | DC_OP_BIT(DC_OP_WRITE),
	.passthrough_ops = DC_OP_BIT(DC_OP_FLUSH) | DC_OP_BIT(DC_OP_UNMAP) |
			   DC_OP_BIT(DC_OP_EJECT) | DC_OPS_PR,
	DC_CALLBACKS(delay, open, close, submit, describe),
	.extents = dc_extents_passthrough,
};
