/* SPDX-License-Identifier: MIT */
/* A RAM disk's chunk allocator: 64 KiB chunks carved out of 2 MiB arenas,
 * each arena faulted in whole when it is made, on huge pages while they are
 * cheap (arena.c says why), by the thread that needs it. */
#ifndef DISKCORE_RAM_ARENA_H
#define DISKCORE_RAM_ARENA_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define RAM_CHUNK_SHIFT 16
#define RAM_CHUNK (1u << RAM_CHUNK_SHIFT)
#define RAM_ARENA (UINT64_C(2) << 20)
#define RAM_LANES 8

struct ram_region;

/* An arena being carved. Each thread carves from a lane of its own (as far
 * as there are lanes), so that faulting in a new arena holds up no other
 * thread. Padded so that two lanes never share a cache line. */
struct ram_lane {
	pthread_mutex_t lock;
	uint8_t *cur;  /* NULL: none yet, or the last one could not be made */
	unsigned used; /* chunks carved from cur */
	char pad[128 - sizeof(pthread_mutex_t) - sizeof(uint8_t *) - sizeof(unsigned)];
};

struct ram_alloc {
	pthread_mutex_t lock; /* regions, carve, free */
	struct ram_region *regions;
	uint8_t *carve[2], *carve_end[2]; /* [huge]: the next arena to carve */
	void *free; /* chunks given back by a shrink, linked through their data */
	atomic_uint nfree;
	unsigned nlanes;
	size_t region;		 /* address space to reserve at a time */
	atomic_uint small_left;	 /* arenas still to make on small pages */
	atomic_uint huge, small; /* arenas made on each, for describe */
	struct ram_lane lanes[RAM_LANES];
};

void ram_alloc_init(struct ram_alloc *a);
/* Before any I/O: a disk of disk_bytes bytes. */
void ram_alloc_size(struct ram_alloc *a, uint64_t disk_bytes);
/* A chunk of RAM_CHUNK bytes, faulted in, or NULL. Thread-safe. */
uint8_t *ram_chunk_alloc(struct ram_alloc *a);
void ram_chunk_free(struct ram_alloc *a, uint8_t *p);
/* Unmaps all of the disk's memory. */
void ram_alloc_destroy(struct ram_alloc *a);

#endif
