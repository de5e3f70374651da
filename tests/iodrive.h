/* SPDX-License-Identifier: MIT */
/* Shared by the concurrency tests (test-matrix.c, test-model.c): drive one
 * queue with up to IOD_QD_MAX requests in flight in each of the three ways a
 * consumer can take completions, and stamp sectors so that a misdirected,
 * stale or torn sector says what it holds instead. */
#ifndef DISKCORE_TESTS_IODRIVE_H
#define DISKCORE_TESTS_IODRIVE_H

#include <diskcore/diskcore.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The three consumer modes (diskcore.h, "Threads"), the last also on a
 * queue bound to its thread. */
enum iod_mode {
	IOD_CALLBACK = 0,    /* dc_io.cb; the callback submits the next request */
	IOD_POLL_FD = 1,     /* DC_QUEUE_POLL, poll() on dc_queue_fd(), dc_queue_reap() */
	IOD_WAIT = 2,	     /* DC_QUEUE_POLL, dc_queue_wait() and dc_queue_reap() */
	IOD_WAIT_THREAD = 3, /* IOD_WAIT on a DC_QUEUE_THREAD queue */
	IOD__MODES
};
extern const char *const iod_mode_name[IOD__MODES];

#define IOD_QD_MAX 32

/* What next() returns. */
enum { IOD_SUBMIT = 0, IOD_BLOCKED = 1, IOD_END = 2 };

/* The request source. Both callbacks of one run are called one at a time (in
 * callback mode from whichever thread delivers the completion), so their state
 * needs no lock: the core orders them (plugin.h, "Threads"). */
struct iod_ops {
	/* Fill *io (zeroed) with slot's next request; io->iov and the buffers
	 * must stay valid until done(slot). IOD_BLOCKED: nothing can go until a
	 * request in flight completes; IOD_END: nothing more to submit. */
	int (*next)(void *arg, unsigned slot, struct dc_io *io);
	/* slot's request finished; return -1 to stop submitting (the run then
	 * drains what is in flight and fails). */
	int (*done)(void *arg, unsigned slot, const struct dc_completion *c);
};

/* Open a queue on d for mode, keep up to qd requests from ops in flight until
 * next() returns IOD_END and all have completed, close it. Returns 0, or -1
 * with err set: done() failed, a call failed, or nothing completed for
 * stall_ms. After a stall the queue is left open (requests are still in
 * flight) and the caller must end the test. */
int iod_run(dc_disk *d, enum iod_mode mode, unsigned qd, const struct iod_ops *ops,
	    void *arg, int stall_ms, char *err, size_t errlen);

/* Stamp count sectors of ss bytes starting at sector: each holds tid, its own
 * sector number, gen and a pattern derived from the three. */
void iod_stamp(void *buf, uint32_t ss, uint64_t sector, uint64_t count, uint32_t tid,
	       uint32_t gen);
/* Does the ss-byte sector at p hold exactly that stamp? If not, why says what
 * it holds instead and false is returned. */
bool iod_check(const void *p, uint32_t ss, uint64_t sector, uint32_t tid, uint32_t gen,
	       char *why, size_t len);

/* The iteration scale: $DISKCORE_TEST_SCALE (a positive number, default 1),
 * divided by 4 under ThreadSanitizer ($DISKCORE_SANITIZED=thread) unless set. */
double iod_scale(void);
/* n * iod_scale(), at least min. */
unsigned iod_scaled(unsigned n, unsigned min);

#endif
