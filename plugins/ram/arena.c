/* SPDX-License-Identifier: MIT */
/* RAM disk arenas (arena.h).
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
 * does not count as slow. */
#include "arena.h"

#include <sys/mman.h>
#include <time.h>

#define RAM_HUGE_SLOW_NS 2000000 /* CPU to fault in a huge arena: too slow */
#define RAM_SMALL_RUN 64	 /* small-page arenas before huge is tried again */

void ram_arenas_init(struct ram_arenas *a)
{
	a->small_left = 0;
	atomic_init(&a->huge, 0);
	atomic_init(&a->small, 0);
}

void ram_arena_unmap(uint8_t *p)
{
	if (p)
		munmap(p, RAM_ARENA);
}

static uint8_t *ram_arena_map(bool huge)
{
	uint8_t *p = mmap(NULL, 2 * RAM_ARENA, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uintptr_t head;

	if (p == MAP_FAILED)
		return NULL;
	head = (RAM_ARENA - ((uintptr_t)p & (RAM_ARENA - 1))) & (RAM_ARENA - 1);
	if (head)
		munmap(p, head);
	munmap(p + head + RAM_ARENA, RAM_ARENA - head);
	p += head;
	/* Hints: fine if refused. */
	madvise(p, RAM_ARENA, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	if (madvise(p, RAM_ARENA, MADV_POPULATE_WRITE) < 0)
		for (size_t off = 0; off < RAM_ARENA; off += 4096) /* before 5.14 */
			p[off] = 0;
	return p;
}

static uint64_t ram_cpu_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static uint8_t *ram_arena_make(struct ram_arenas *a)
{
	uint64_t t0 = ram_cpu_ns();
	bool huge = a->small_left == 0;
	uint8_t *p = ram_arena_map(huge);

	if (!p)
		return NULL;
	if (!huge)
		a->small_left--;
	else if (ram_cpu_ns() - t0 > RAM_HUGE_SLOW_NS)
		a->small_left = RAM_SMALL_RUN;
	atomic_fetch_add_explicit(huge ? &a->huge : &a->small, 1, memory_order_relaxed);
	return p;
}

uint8_t *ram_arena_take(struct ram_arenas *a)
{
	return ram_arena_make(a);
}
