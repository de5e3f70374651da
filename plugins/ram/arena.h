/* SPDX-License-Identifier: MIT */
/* The 2 MiB arenas a RAM disk carves its chunks from: each faulted in whole
 * when it is made, on huge pages while they are cheap (arena.c says why). */
#ifndef DISKCORE_RAM_ARENA_H
#define DISKCORE_RAM_ARENA_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define RAM_ARENA (UINT64_C(2) << 20)

/* Where a disk's arenas come from; its callers serialise (alloc_lock). */
struct ram_arenas {
	unsigned small_left;	 /* arenas still to take on small pages */
	atomic_uint huge, small; /* arenas made on each, for describe */
};

void ram_arenas_init(struct ram_arenas *a);
/* A fresh 2 MiB-aligned arena of RAM_ARENA bytes, faulted in, or NULL. */
uint8_t *ram_arena_take(struct ram_arenas *a);
void ram_arena_unmap(uint8_t *p);

#endif
