/* SPDX-License-Identifier: MIT */
/* What the files of test-file share: patterned files, the file node's
 * describe() values, and the test cases each file adds to the suite. */
#ifndef DISKCORE_TESTS_FILE_TEST_H
#define DISKCORE_TESTS_FILE_TEST_H

#include "harness.h"

#include <stdint.h>

#define MIB (1024 * 1024)

/* A file of `size` bytes whose 4 KiB block b holds h_fill(seed + b). */
char *tf_patterned(uint64_t size, uint64_t seed);
/* The value `key` that the file node describes, or NULL (malloc'd). */
char *tf_describe(dc_disk *d, const char *key);

/* The "file" TCase's cases, added in this order after test-file.c's own. */
void file_add_open_cases(TCase *tc); /* file-open.c: create=, paths, .iso, .vmgs */
void file_add_io_cases(TCase *tc);   /* file-io.c: direct, unmap, FUA, QD32, loop */
/* file-worker-pool.c: the core's worker pool (dc_pool_run). */
TCase *file_tc_pool(void);

#endif
