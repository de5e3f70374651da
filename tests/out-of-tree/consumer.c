/* SPDX-License-Identifier: MIT */
/* A tiny diskcore consumer, built out of tree: opens
 * "PREFIXpattern:1M;seed=SEED" and checks what it reads.
 * Usage: consumer SEED [PREFIX], e.g. consumer 7 passthru:memdiff:
 *  - with PREFIX passthru:..., first reads through a queue of its own and
 *    checks the decorator's counters (tests/out-of-tree/passthru.c);
 *  - reads the last sectors, and past the end (DC_E_ILLEGAL_BLOCK);
 *  - writes: DC_E_READ_ONLY on a read-only disk, else written and read back. */
#include <diskcore/diskcore.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NREADS 8

static unsigned seed;

static int fail(const char *what, int rc)
{
	fprintf(stderr, "consumer: %s: %d (%s) %s\n", what, rc, dc_strerror(rc),
		dc_last_error());
	return 1;
}

/* Does buf hold sectors first.. of the pattern? Returns the bad byte or -1. */
static long pattern_check(const unsigned char *buf, size_t len, uint64_t first)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] != (unsigned char)(first + i / 512 + seed))
			return (long)i;
	return -1;
}

struct counters {
	long reads, bytes_read, errors, queues_open;
};

static int visit(void *arg, int depth, const char *plugin, const char *form,
		 const struct dc_info *info, const char *key, const char *value)
{
	struct counters *c = arg;

	(void)depth, (void)form, (void)info;
	if (!key || strcmp(plugin, "passthru") != 0)
		return 0;
	if (strcmp(key, "reads") == 0)
		c->reads = atol(value);
	else if (strcmp(key, "bytes_read") == 0)
		c->bytes_read = atol(value);
	else if (strcmp(key, "errors") == 0)
		c->errors = atol(value);
	else if (strcmp(key, "queues_open") == 0)
		c->queues_open = atol(value);
	return 0;
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* NREADS one-sector reads and one past the end on a polled queue. The core
 * refuses the last before passthru sees it, so passthru counts NREADS reads
 * and no error once the queue is closed. */
static int passthru_counters(dc_disk *d)
{
	static unsigned char bufs[NREADS + 1][512];
	struct iovec iov[NREADS + 1];
	struct dc_completion c[NREADS + 1];
	struct counters n = { -1, -1, -1, -1 };
	long deadline = now_ms() + 10000;
	dc_queue *q;
	int rc, got = 0;

	rc = dc_queue_open(d, DC_QUEUE_POLL, &q);
	if (rc < 0)
		return fail("dc_queue_open", rc);
	dc_queue_wait(q, 0); /* driven from here on (diskcore.h) */
	for (int i = 0; i <= NREADS; i++) {
		struct dc_io io = {
			.op = DC_OP_READ,
			.sector = i < NREADS ? (uint64_t)i * 3 : 2048,
			.iov = &iov[i],
			.iovcnt = 1,
			.user_data = (void *)(uintptr_t)i,
		};

		iov[i] = (struct iovec){ bufs[i], sizeof(bufs[i]) };
		rc = dc_submit(q, &io);
		if (rc < 0)
			return fail("dc_submit", rc);
	}
	while (got <= NREADS && now_ms() < deadline) {
		rc = dc_queue_wait(q, 100);
		if (rc < 0)
			return fail("dc_queue_wait", rc);
		rc = dc_queue_reap(q, c + got, NREADS + 1 - got);
		if (rc < 0)
			return fail("dc_queue_reap", rc);
		got += rc;
	}
	if (got <= NREADS)
		return fail("completions missing after 10 s", got);
	for (int i = 0; i <= NREADS; i++) {
		int k = (int)(uintptr_t)c[i].user_data;
		int want = k < NREADS ? 0 : DC_E_ILLEGAL_BLOCK;

		if (c[i].result != want)
			return fail("queued read result", c[i].result);
		if (k < NREADS && pattern_check(bufs[k], 512, (uint64_t)k * 3) >= 0)
			return fail("wrong data through the queue", k);
	}
	dc_queue_close(q);
	rc = dc_describe(d, visit, &n);
	if (rc < 0)
		return fail("dc_describe", rc);
	if (n.reads != NREADS || n.bytes_read != NREADS * 512 || n.errors != 0 ||
	    n.queues_open != 0) {
		fprintf(stderr,
			"consumer: passthru counted reads=%ld bytes_read=%ld errors=%ld "
			"queues_open=%ld, expected %d, %d, 0, 0\n",
			n.reads, n.bytes_read, n.errors, n.queues_open, NREADS,
			NREADS * 512);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *prefix = argc > 2 ? argv[2] : "";
	unsigned char buf[4 * 512];
	struct dc_info info;
	char spec[128];
	dc_disk *d;
	int rc;

	seed = argc > 1 ? (unsigned)atoi(argv[1]) : 0;
	snprintf(spec, sizeof(spec), "%spattern:1M;seed=%u", prefix, seed);
	rc = dc_open(spec, 0, &d);
	if (rc < 0)
		return fail("dc_open", rc);
	if (dc_sector_count(d) != 2048 || dc_sector_size(d) != 512)
		return fail("unexpected geometry", 0);
	if (strncmp(prefix, "passthru:", 9) == 0 && passthru_counters(d))
		return 1;
	/* Four sectors ending at the last one. */
	rc = dc_read(d, 2044, buf, sizeof(buf));
	if (rc < 0)
		return fail("dc_read", rc);
	if (pattern_check(buf, sizeof(buf), 2044) >= 0)
		return fail("wrong data", (int)pattern_check(buf, sizeof(buf), 2044));
	rc = dc_read(d, 2045, buf, sizeof(buf));
	if (rc != DC_E_ILLEGAL_BLOCK)
		return fail("read past the end", rc);
	dc_get_info(d, &info);
	memset(buf, 0xa5, 512);
	rc = dc_write(d, 5, buf, 512, 0);
	if (info.flags & DC_INFO_READ_ONLY) {
		if (rc != DC_E_READ_ONLY)
			return fail("write to a read-only disk", rc);
	} else {
		if (rc < 0)
			return fail("dc_write", rc);
		/* Sectors 4..7: the pattern, the write, the pattern twice. */
		rc = dc_read(d, 4, buf, sizeof(buf));
		if (rc < 0)
			return fail("dc_read after the write", rc);
		for (size_t i = 512; i < 1024; i++)
			if (buf[i] != 0xa5)
				return fail("the write did not read back", (int)i);
		if (pattern_check(buf, 512, 4) >= 0 ||
		    pattern_check(buf + 1024, 1024, 6) >= 0)
			return fail("a write changed its neighbours", 0);
	}
	dc_close(d);
	printf("ok\n");
	return 0;
}
