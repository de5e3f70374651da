/* SPDX-License-Identifier: MIT */
/* What the blockdev test program's files share: the I/O checks that run on
 * files and loop devices alike, and the cases each file adds to the suite of
 * test-blockdev.c. */
#ifndef DISKCORE_TESTS_BLOCKDEV_CASES_H
#define DISKCORE_TESTS_BLOCKDEV_CASES_H

#include <diskcore/diskcore.h>

#include <check.h>
#include <stdbool.h>
#include <stdint.h>

#define KIB 1024
#define MIB (1024 * 1024)
#define PAGE 4096

/* §7.2 test_async_disk_io[_fua] on spec (test-blockdev.c). */
void tb_async_io(const char *spec, bool fua);
/* §7.2 test_illegal_lba on a disk of `end` sectors (test-blockdev.c). */
void tb_illegal_lba(dc_disk *d, uint64_t end, char *buf);
/* nthreads threads, each on its own queue, write and read back nreq 4 KiB
 * blocks with all in flight at once (blockdev-queues.c). */
void tb_threads(const char *spec, unsigned nthreads, unsigned nreq);

/* Many queues, deep queues and dc_queue_wait[_fd]() on files; the O_DIRECT
 * one only when direct (blockdev-queues.c). */
void blockdev_add_queues(TCase *tc, bool direct);
/* Where io_uring is refused (blockdev-uring.c). */
void blockdev_add_no_io_uring(TCase *tc);
/* As root, on a loop device: conformance, I/O, discard, PR, eject and online
 * resize; skipped with the reason otherwise (blockdev-loop.c). */
void blockdev_add_loop(Suite *s);

#endif
