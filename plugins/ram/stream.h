/* SPDX-License-Identifier: MIT */
/* Copying a large write into a RAM disk around the cache (docs/performance.md). */
#ifndef DISKCORE_RAM_STREAM_H
#define DISKCORE_RAM_STREAM_H

#include <diskcore/plugin.h>

#include <stdint.h>

/* Runs of at least RAM_STREAM_MIN bytes into a disk of at least
 * RAM_STREAM_DISK bytes are streamed: such a disk is larger than the cache
 * (32 MiB of L3 on the project's VM), so a run written there is rarely in it.
 * A small disk stays cached, where plain stores are faster (about 30 against
 * 19 GB/s per CPU-second into mem:8M, docs/performance.md). */
#define RAM_STREAM_MIN (32 * 1024)
#define RAM_STREAM_DISK (UINT64_C(64) << 20)

/* dc_buf_copy_from(b, off, dst, len), with non-temporal stores when stream is
 * set, len is at least RAM_STREAM_MIN and the CPU has them; fenced, so that a
 * release store after it publishes the data. */
void ram_copy_from(const struct dc_buf *b, size_t off, uint8_t *dst, size_t len,
		   bool stream);

#endif
