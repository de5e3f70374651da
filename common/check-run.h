/* SPDX-License-Identifier: MIT */
/* The main() of every common/ unit test: one suite of the given tests (a
 * NULL-terminated list of START_TEST names), run as CK_VERBOSITY and
 * CK_RUN_CASE say; non-zero if anything failed. */
#ifndef DISKCORE_COMMON_CHECK_RUN_H
#define DISKCORE_COMMON_CHECK_RUN_H

#include <check.h>
#include <stdlib.h>

static inline int common_check_run(const char *name, const TTest *const *tests)
{
	Suite *s = suite_create(name);
	TCase *tc = tcase_create(name);
	SRunner *sr;
	int failed;

	for (; *tests; tests++)
		tcase_add_test(tc, *tests);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
