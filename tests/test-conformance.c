/* SPDX-License-Identifier: MIT */
/* The conformance suite over the core plugins and the chains made of them. */
#include "conformance.h"
#include "harness.h"

#include <diskcore/plugin.h>
#include <stdio.h>
#include <string.h>

/* Does the plugin claiming `form` accept an option called `option`? Looked up
 * in its descriptor, so the 4 KiB case runs exactly when ram declares it. */
struct tc_optq {
	const char *form;
	const char *option;
	bool found;
};

static int tc_visit(void *arg, const char *path, const struct dc_plugin *p,
		    const char *why)
{
	struct tc_optq *q = arg;

	(void)path;
	(void)why;
	if (!p || !p->forms)
		return 0;
	for (const struct dc_form *f = p->forms; f->name; f++) {
		if (strcmp(f->name, q->form) || !f->options)
			continue;
		for (const struct dc_option *o = f->options; o->name; o++)
			if (!strcmp(o->name, q->option))
				q->found = true;
	}
	return 0;
}

static bool tc_form_has_option(const char *form, const char *option)
{
	struct tc_optq q = { form, option, false };

	dc_plugins_foreach(tc_visit, &q);
	return q.found;
}

int main(void)
{
	Suite *s = suite_create("conformance");
	struct conformance_opts ro = { .open_flags = DC_OPEN_READ_ONLY };

	/* The probe test plugin reports unmap behaviour "zeroes" on request. */
	h_plugin_path_add("tests/plugins/probe");

	conformance_add(s, "file", "file:@TMP@");
	conformance_add(s, "bare-path", "@TMP@");
	conformance_add_opts(s, "file-ro", "file:@TMP@", &ro);
	conformance_add(s, "mem", "mem:1M");
	conformance_add_opts(s, "mem-ro", "mem:1M", &ro);
	conformance_add(s, "memdiff-file", "memdiff:file:@TMP@");
	conformance_add(s, "memdiff-bare-path", "memdiff:@TMP@");
	conformance_add(s, "delay-mem", "delay:0:mem:1M");
	conformance_add(s, "delay-file", "delay:0:file:@TMP@");
	conformance_add(s, "memdiff-memdiff-file", "memdiff:memdiff:file:@TMP@");
	conformance_add(s, "delay-memdiff-file", "delay:0:memdiff:file:@TMP@");
	if (tc_form_has_option("mem", "sector")) {
		conformance_add(s, "mem-4k", "mem:1M;sector=4096");
		conformance_add(s, "memdiff-mem-4k", "memdiff:mem:1M;sector=4096");
	} else {
		fprintf(stderr, "note: mem: declares no 'sector' option; 4 KiB case "
				"not run\n");
	}
	conformance_add(s, "probe-zeroes", "probe;unmap=zeroes;count=2048");
	conformance_add(s, "probe-4k", "probe;ss=4096;pss=4096;count=256;unmap=zeroes");
	conformance_add(s, "delay-probe-ro", "delay:0:probe;ro;unmap=unspecified");
	/* fault: with rules that never fire is a plain pass-through ("@@" is '@'). */
	conformance_add(s, "fault-mem", "fault:read=EIO@@0%:mem:1M");
	conformance_add(s, "fault-memdiff-file", "fault:any=EIO@@0%:memdiff:file:@TMP@");
	return h_run(s);
}
