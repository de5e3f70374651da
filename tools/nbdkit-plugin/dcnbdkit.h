/* SPDX-License-Identifier: MIT */
/*
 * The nbdkit plugin `diskcore` (docs/serve.md, "nbdkit plugin"), internal
 * interface. plugin.c is nbdkit's side (parameters, the one shared disk,
 * capabilities); io.c turns nbdkit's synchronous calls into diskcore requests
 * on a queue per nbdkit thread.
 */
#ifndef DISKCORE_NBDKIT_H
#define DISKCORE_NBDKIT_H

#define NBDKIT_API_VERSION 2
#include <diskcore/diskcore.h>
#include <nbdkit-plugin.h>

#include <stdbool.h>
#include <stdint.h>

/* The disk every connection shares, opened once in .get_ready. */
extern dc_disk *dcn_disk;
extern struct dc_info dcn_info;

/* io.c */
int dcn_io_init(void);
void dcn_io_fini(void);
int dcn_pread(void *h, void *buf, uint32_t count, uint64_t offset, uint32_t flags);
int dcn_pwrite(void *h, const void *buf, uint32_t count, uint64_t offset, uint32_t flags);
int dcn_zero(void *h, uint32_t count, uint64_t offset, uint32_t flags);
int dcn_trim(void *h, uint32_t count, uint64_t offset, uint32_t flags);
int dcn_flush(void *h, uint32_t flags);
/* The errno nbdkit should send for a diskcore result. */
int dcn_errno(int result, int detail, bool write);

#endif
