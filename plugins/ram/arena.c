/* SPDX-License-Identifier: MIT */
/* RAM disk arenas and chunks (arena.h).
 *
 * An arena is faulted in whole when it is made: one call instead of a fault
 * per page. Huge pages while they are cheap: random reads then miss the TLB
 * less (1.25x the 4 KiB reads per CPU-second over 1 GiB), and where the host
 * backs the memory a huge arena faults in within ~0.3 ms of CPU, a small-page
 * one in ~1.4 ms. In a VM whose host reclaims the guest's free memory, a fresh
 * huge page is memory the host must fault in again: ~16 ms an arena
 * (docs/performance.md). After a huge arena that cost more CPU than a small
 * one would, the next RAM_SMALL_RUN take small pages, then a huge one is tried
 * again. The thread's CPU time is measured: a thread descheduled meanwhile
 * does not count as slow.
 *
 * Faulting in is most of a first write's cost, so it must not be serialised:
 * with one arena carved by every thread, all writers waited while one faulted
 * in the next (docs/performance.md, "mem: first writes in parallel"). Each
 * thread carves from its own lane, so they fault in side by side. A lane
 * holds up to one arena not yet carved: on a disk of RAM_LANE_DISK or more,
 * at most RAM_LANES arenas (16 MiB) beyond what was written; smaller disks
 * have one lane. */
#include "arena.h"

#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#define RAM_HUGE_SLOW_NS 2000000 /* CPU to fault in a huge arena: too slow */
#define RAM_SMALL_RUN 64	 /* small-page arenas before huge is tried again */
#define RAM_LANE_DISK (UINT64_C(64) << 20)
/* Address space reserved at a time, arenas carved from it: one mmap for 32
 * arenas, not an mmap, two munmaps and an madvise each, all of which wait for
 * every other thread's fault-in to finish (they take mmap_lock to write). A
 * smaller disk reserves its size (where overcommit is strict, address space
 * counts as memory). */
#define RAM_REGION (UINT64_C(64) << 20)

struct ram_region {
	struct ram_region *next;
	uint8_t *base;
	size_t size;
};

/* 1 + this thread's lane number; 0 until it first allocates. */
static _Thread_local unsigned ram_thread_lane;
static atomic_uint ram_lane_next;

void ram_alloc_init(struct ram_alloc *a)
{
	pthread_mutex_init(&a->lock, NULL);
	a->regions = NULL;
	a->carve[0] = a->carve[1] = a->carve_end[0] = a->carve_end[1] = NULL;
	a->free = NULL;
	atomic_init(&a->nfree, 0);
	a->nlanes = 1;
	a->region = RAM_ARENA;
	atomic_init(&a->small_left, 0);
	atomic_init(&a->huge, 0);
	atomic_init(&a->small, 0);
	for (unsigned i = 0; i < RAM_LANES; i++) {
		pthread_mutex_init(&a->lanes[i].lock, NULL);
		a->lanes[i].cur = NULL;
		a->lanes[i].used = 0;
	}
}

void ram_alloc_size(struct ram_alloc *a, uint64_t disk_bytes)
{
	a->nlanes = disk_bytes >= RAM_LANE_DISK ? RAM_LANES : 1;
	a->region = disk_bytes >= RAM_REGION ?
			    RAM_REGION :
			    (disk_bytes + RAM_ARENA - 1) & ~(RAM_ARENA - 1);
}

/* A region of size bytes, RAM_ARENA-aligned, nothing faulted in. */
static uint8_t *ram_region_map(size_t size, bool huge)
{
	uint8_t *p = mmap(NULL, size + RAM_ARENA, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uintptr_t head;

	if (p == MAP_FAILED)
		return NULL;
	head = (RAM_ARENA - ((uintptr_t)p & (RAM_ARENA - 1))) & (RAM_ARENA - 1);
	if (head)
		munmap(p, head);
	munmap(p + head + size, RAM_ARENA - head);
	p += head;
	/* A hint: fine if refused. */
	madvise(p, size, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	return p;
}

/* The next arena of the region on huge (or small) pages, not faulted in. */
static uint8_t *ram_arena_carve(struct ram_alloc *a, bool huge)
{
	uint8_t *p = NULL;

	pthread_mutex_lock(&a->lock);
	if (a->carve[huge] == a->carve_end[huge]) {
		struct ram_region *g = malloc(sizeof(*g));

		if (g && (g->base = ram_region_map(a->region, huge))) {
			g->size = a->region;
			g->next = a->regions;
			a->regions = g;
			a->carve[huge] = g->base;
			a->carve_end[huge] = g->base + g->size;
		} else {
			free(g);
		}
	}
	if (a->carve[huge] != a->carve_end[huge]) {
		p = a->carve[huge];
		a->carve[huge] += RAM_ARENA;
	}
	pthread_mutex_unlock(&a->lock);
	return p;
}

static void ram_arena_fault(uint8_t *p)
{
	if (madvise(p, RAM_ARENA, MADV_POPULATE_WRITE) < 0)
		for (size_t off = 0; off < RAM_ARENA; off += 4096) /* before 5.14 */
			p[off] = 0;
}

static uint64_t ram_cpu_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* A new arena, faulted in; NULL: none. */
static uint8_t *ram_arena_make(struct ram_alloc *a)
{
	unsigned left = atomic_load_explicit(&a->small_left, memory_order_relaxed);
	uint64_t t0;
	uint8_t *p;
	bool huge;

	/* Lanes make arenas concurrently: take one of the small run, if any. */
	while (left && !atomic_compare_exchange_weak_explicit(
			       &a->small_left, &left, left - 1, memory_order_relaxed,
			       memory_order_relaxed))
		;
	huge = left == 0;
	if (!(p = ram_arena_carve(a, huge)))
		return NULL;
	t0 = ram_cpu_ns();
	ram_arena_fault(p);
	if (huge && ram_cpu_ns() - t0 > RAM_HUGE_SLOW_NS)
		atomic_store_explicit(&a->small_left, RAM_SMALL_RUN,
				      memory_order_relaxed);
	atomic_fetch_add_explicit(huge ? &a->huge : &a->small, 1, memory_order_relaxed);
	return p;
}

static struct ram_lane *ram_lane(struct ram_alloc *a)
{
	if (a->nlanes == 1)
		return &a->lanes[0];
	if (!ram_thread_lane)
		ram_thread_lane = 1 + atomic_fetch_add_explicit(&ram_lane_next, 1,
								memory_order_relaxed) %
					      RAM_LANES;
	return &a->lanes[(ram_thread_lane - 1) % a->nlanes];
}

uint8_t *ram_chunk_alloc(struct ram_alloc *a)
{
	struct ram_lane *l;
	uint8_t *p = NULL;

	if (atomic_load_explicit(&a->nfree, memory_order_relaxed)) {
		pthread_mutex_lock(&a->lock);
		if ((p = a->free)) {
			a->free = *(void **)p;
			atomic_fetch_sub_explicit(&a->nfree, 1, memory_order_relaxed);
		}
		pthread_mutex_unlock(&a->lock);
		if (p)
			return p;
	}
	l = ram_lane(a);
	pthread_mutex_lock(&l->lock);
	if (!l->cur || l->used == RAM_ARENA / RAM_CHUNK) {
		l->cur = ram_arena_make(a);
		l->used = 0;
	}
	if (l->cur)
		p = l->cur + (size_t)l->used++ * RAM_CHUNK;
	pthread_mutex_unlock(&l->lock);
	return p;
}

void ram_chunk_free(struct ram_alloc *a, uint8_t *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&a->lock);
	*(void **)p = a->free;
	a->free = p;
	atomic_fetch_add_explicit(&a->nfree, 1, memory_order_relaxed);
	pthread_mutex_unlock(&a->lock);
}

void ram_alloc_destroy(struct ram_alloc *a)
{
	while (a->regions) {
		struct ram_region *g = a->regions;

		a->regions = g->next;
		munmap(g->base, g->size);
		free(g);
	}
	pthread_mutex_destroy(&a->lock);
	for (unsigned i = 0; i < RAM_LANES; i++)
		pthread_mutex_destroy(&a->lanes[i].lock);
}
