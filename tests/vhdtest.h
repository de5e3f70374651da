/* SPDX-License-Identifier: MIT */
/* Helpers that test-vhd.c and test-vhdx.c share: images made through the
 * plugin, writes checked against an in-memory model of the whole disk, the
 * chain's describe() text, and a layer opened by hand below the core. */
#ifndef DISKCORE_TESTS_VHDTEST_H
#define DISKCORE_TESTS_VHDTEST_H

#include "harness.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Create an image with the plugin: open and close "FORM:PATH;OPTS". */
void vt_create(const char *form, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Write count sectors of h_fill(seed) at sector. */
void vt_write(dc_disk *d, uint64_t sector, uint64_t count, uint64_t seed);
/* Check [sector, sector + count) against model, the whole disk's bytes. */
void vt_check(dc_disk *d, const uint8_t *model, uint64_t sector, uint64_t count);
/* The same write to the disk and to its model. */
void vt_put(dc_disk *d, uint8_t *model, uint64_t sector, uint64_t count, uint64_t seed);

/* Eight threads write at once through one open of a new image (form's
 * plugin, created with opts at a temporary path): 64 writes each of count
 * 512-byte sectors, write i of thread id at sector i * stride + id * count,
 * with a flush after every 16th when asked. Then a fresh open (open_flags)
 * must read every write back. */
void vt_concurrent_writes(const char *form, const char *opts, uint64_t stride,
			  uint64_t count, bool flush, uint32_t open_flags);

/* While four threads write as vt_concurrent_writes() lays them out (one
 * flushing) into a new differencing child (form's plugin) of a new base
 * (created with base_opts), another maps the whole disk over and over
 * (dc_map: extents() beside the I/O path); then every write is data of
 * layer 0. */
void vt_map_during_writes(const char *form, const char *base_opts, uint64_t stride,
			  uint64_t count);

/* One image, two opens in this process (docs/spec-strings.md, "One image, two
 * opens"): a new image (form's plugin, created with opts; qemu-img reads it as
 * qemu_fmt) opened writable twice, eight threads writing through both handles at once
 * as vt_concurrent_writes() lays them out; meanwhile a read-only open here
 * and another process are refused. After both close, qemu-img (check for
 * vhdx, convert for both) reads the same bytes as a fresh open; then two
 * read-only opens share, and a writable one beside them is refused. */
void vt_two_opens(const char *form, const char *opts, const char *qemu_fmt,
		  uint64_t stride, uint64_t count);

/* After a resize to `sectors`: qemu-img info (qemu_fmt) says `qsize` (as it
 * prints it, "64 MiB"), and qemu-img's raw conversion and a fresh read-only
 * open of FORM:path hold 4 KiB of h_fill(s1) at sector 100 and of s2 at at. */
void vt_qemu_grown(const char *form, const char *path, const char *qemu_fmt,
		   const char *qsize, uint64_t sectors, uint64_t at, uint64_t s1,
		   uint64_t s2);

/* The describe() output of a disk's chain: "plugin=NAME\n" for each element,
 * then its "key=value\n" lines. Free with free(). */
char *vt_describe(dc_disk *d);
/* Fail unless text contains needle. */
void vt_has(const char *text, const char *needle);

/* h_direct_open() of form's plugin, which must be a layer. */
void vt_direct_open(struct h_direct *t, const char *form, const char *path, bool ro);
/* One request on a layer opened by hand, in 512-byte sectors: len is bytes for
 * reads and writes and a sector count for unmap. With bits, a read marks the
 * sectors the layer holds (bit i for sector + i). */
int vt_direct_io(struct h_direct *t, uint32_t op, uint32_t flags, uint64_t sector,
		 void *buf, size_t len, uint64_t *bits);
/* How many of bits [from, to) are set. */
unsigned vt_marked(const uint64_t *bits, unsigned from, unsigned to);

#endif
