/* SPDX-License-Identifier: MIT */
/* The shared conformance suite: what every disk, whatever plugin or chain it is,
 * must do (docs/openvmm-compat.md §7.1, plus what a storage user expects).
 *
 *	Suite *s = suite_create("conformance");
 *	conformance_add(s, "file", "file:@TMP@");
 *	conformance_add(s, "memdiff-file", "memdiff:file:@TMP:4M@");
 *	return h_run(s);
 *
 * Spec templates are expanded afresh for every test case (each case opens its own
 * disk):
 *	@TMP@		a new 1 MiB file of zeroes
 *	@TMP:SIZE@	a new file of SIZE bytes (K/M/G suffixes), e.g. @TMP:64K@
 *	@TMP:SIZE.EXT@	the same, with a file name ending in .EXT, e.g. @TMP:1M.vhd@
 *	@NEW@, @NEW.EXT@	a path that does not exist yet (for create=)
 *	@DIR@		a new empty directory
 *	@@		a literal '@'
 * Every placeholder gets its own file, so "[file:@TMP@,file:@TMP@]" names two.
 */
#ifndef DISKCORE_TESTS_CONFORMANCE_H
#define DISKCORE_TESTS_CONFORMANCE_H

#include <check.h>
#include <diskcore/diskcore.h>

struct conformance_opts {
	/* dc_open() flags, e.g. DC_OPEN_READ_ONLY. */
	uint32_t open_flags;
	/* Called for each @TMP@ file after it is created, e.g. to turn it into an
	 * image with qemu-img; returns 0 or -errno. May be NULL. */
	int (*prepare)(const char *path, uint64_t size, void *arg);
	void *arg;
};

/* Add one test case per conformance check for the disk `spec_template` opens.
 * `name` labels the tcases ("NAME"), so CK_RUN_CASE=NAME runs one disk. */
void conformance_add(Suite *s, const char *name, const char *spec_template);
void conformance_add_opts(Suite *s, const char *name, const char *spec_template,
			  const struct conformance_opts *opts);

/* Expand a template as above; returns a malloc'd spec, or NULL with a message on
 * stderr for a malformed template. prepare may be NULL. */
char *conformance_expand(const char *spec_template, const struct conformance_opts *opts);

/* Open the disk a template describes, failing the current test case with
 * dc_last_error() if it does not open. */
dc_disk *conformance_open(const char *spec_template, const struct conformance_opts *opts);

/* The two reference suites on an open disk (usable from any test case). */
void conformance_check_representability(dc_disk *disk, const char *what);
void conformance_check_sector_range(dc_disk *disk, const char *what);

#endif
