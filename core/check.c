/* SPDX-License-Identifier: MIT */
/* dc_check(): every element of the chain that can check its metadata does,
 * top first; the core counts the findings and names the element of each. */
#include "internal.h"

#include <errno.h>
#include <string.h>

struct check_walk {
	dc_check_fn fn;
	void *arg;
	struct dc_node *node;
	struct dc_check_result *out;
};

static void check_report(void *arg, uint32_t kind, const char *message)
{
	struct check_walk *w = arg;

	if (kind == DC_CHECK_CORRUPT)
		w->out->corruptions++;
	else if (kind == DC_CHECK_LEAK)
		w->out->leaks++;
	else if (kind != DC_CHECK_NOTE) {
		/* An unknown kind is treated as the worst. */
		w->out->corruptions++;
		kind = DC_CHECK_CORRUPT;
	}
	if (w->fn)
		w->fn(w->arg, w->node->label, kind, message ? message : "");
}

DC_EXPORT int dc_check(dc_disk *d, dc_check_fn fn, void *arg, struct dc_check_result *out)
{
	struct dc_check_result local;
	struct check_walk w = { .fn = fn, .arg = arg, .out = out ? out : &local };
	int rc = 0;

	dc__error_clear();
	memset(w.out, 0, sizeof(*w.out));
	pthread_mutex_lock(&d->nodes_lock);
	for (unsigned i = 0; i < d->nnodes && rc == 0; i++) {
		struct dc_node *n = d->nodes[i];

		if (!n || !n->plugin->check)
			continue;
		w.node = n;
		dc__error_push_prefix(n->plugin->name);
		rc = n->plugin->check(n->inst, check_report, &w);
		dc__error_pop_prefix();
		if (rc > 0)
			rc = dc_fail(-EIO, "plugin '%s': check() returned %d",
				     n->plugin->name, rc);
		w.out->checked++;
	}
	pthread_mutex_unlock(&d->nodes_lock);
	return rc;
}
