/* SPDX-License-Identifier: MIT */
/* test-sqlite's crash modes for tests/test-sqlite-crash.sh: a writer killed at
 * a random moment, and a check that the database it left holds the state
 * after some prefix of its operations, everything up to its last flush. */
#include "harness.h"
#include "sqlite-test.h"

#include <diskcore/diskcore.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CR_SECTORS 2048
#define CR_FLUSH_EVERY 32
#define CR_WINDOW (2 * CR_FLUSH_EVERY + 2)
#define CR_MAGIC 0x52435153u

struct cr_op {
	bool unmap;
	uint64_t sector, count;
};

struct cr_tag {
	uint32_t iter;
	uint64_t seq;
};

/* Operation `seq` (from 1) of iteration `iter`: a pure function of both. */
static struct cr_op cr_op(uint32_t iter, uint64_t seq)
{
	uint64_t r = h_mix64(((uint64_t)iter << 40) ^ seq);
	struct cr_op op;

	op.unmap = (r & 15) == 0;
	op.count = 1 + ((r >> 4) & 15);
	op.sector = (r >> 8) % (CR_SECTORS - op.count);
	return op;
}

static uint64_t cr_seed(uint32_t iter, uint64_t seq, uint64_t sector)
{
	return h_mix64(((uint64_t)iter << 48) ^ (seq << 16) ^ sector);
}

static void cr_fill(uint8_t *p, uint32_t iter, uint64_t seq, uint64_t sector)
{
	uint32_t magic = CR_MAGIC;

	memcpy(p, &magic, 4);
	memcpy(p + 4, &iter, 4);
	memcpy(p + 8, &seq, 8);
	memcpy(p + 16, &sector, 8);
	h_fill(p + 24, SS - 24, cr_seed(iter, seq, sector));
}

/* Which write a sector's content came from; false if it is no write's. */
static bool cr_decode(const uint8_t *p, uint64_t sector, struct cr_tag *t)
{
	uint32_t magic;
	uint64_t s;

	if (h_check_zero(p, SS) < 0) {
		t->iter = 0;
		t->seq = 0;
		return true;
	}
	memcpy(&magic, p, 4);
	memcpy(&t->iter, p + 4, 4);
	memcpy(&t->seq, p + 8, 8);
	memcpy(&s, p + 16, 8);
	return magic == CR_MAGIC && s == sector &&
	       h_check(p + 24, SS - 24, cr_seed(t->iter, t->seq, sector)) < 0;
}

int cr_init(const char *db)
{
	char *spec = h_fmt("sql:%s;create=%d", db, CR_SECTORS * SS);
	dc_disk *d = NULL;
	if (!h_have_plugin("sqlite"))
		return H_SKIP;
	if (dc_open(spec, 0, &d) < 0) {
		fprintf(stderr, "crash-init: %s\n", dc_last_error());
		return 1;
	}
	dc_close(d);
	free(spec);
	return 0;
}

static void *cr_killer(void *arg)
{
	struct timespec ts;
	uint64_t ns;

	(void)arg;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ns = h_mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32)) % 150000000;
	ts.tv_sec = (time_t)(ns / 1000000000);
	ts.tv_nsec = (long)(ns % 1000000000);
	nanosleep(&ts, NULL);
	kill(getpid(), SIGKILL);
	return NULL;
}

/* Write, unmap and flush until killed; after each flush, log how far it got. */
int cr_writer(const char *db, const char *log, uint32_t iter)
{
	char *spec = h_fmt("sql:%s", db);
	uint8_t *buf = h_alloc(16 * SS);
	pthread_t killer;
	dc_disk *d = NULL;
	int fd, r;

	fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0600);
	if (fd < 0 || dc_open(spec, 0, &d) < 0) {
		fprintf(stderr, "crash-writer: %s\n", dc_last_error());
		return 1;
	}
	/* Die by SIGKILL at a random moment 0..150 ms from now. */
	if (pthread_create(&killer, NULL, cr_killer, NULL) != 0)
		return 1;
	for (uint64_t seq = 1;; seq++) {
		struct cr_op op = cr_op(iter, seq);

		if (op.unmap) {
			r = dc_unmap(d, op.sector, op.count, 0);
		} else {
			for (uint64_t i = 0; i < op.count; i++)
				cr_fill(buf + i * SS, iter, seq, op.sector + i);
			r = dc_write(d, op.sector, buf, op.count * SS,
				     seq % 61 == 0 ? DC_IO_FUA : 0);
		}
		if (r == 0 && seq % CR_FLUSH_EVERY == 0)
			r = dc_flush(d);
		if (r < 0) {
			fprintf(stderr, "crash-writer: op %llu: %s\n",
				(unsigned long long)seq, dc_strerror(r));
			return 1;
		}
		if (seq % CR_FLUSH_EVERY == 0) {
			struct cr_tag t = { iter, seq };

			if (write(fd, &t, sizeof(t)) != sizeof(t))
				return 1;
		}
	}
}

static void cr_apply(struct cr_tag *state, uint32_t iter, uint64_t seq)
{
	struct cr_op op = cr_op(iter, seq);

	for (uint64_t i = 0; i < op.count; i++) {
		state[op.sector + i].iter = op.unmap ? 0 : iter;
		state[op.sector + i].seq = op.unmap ? 0 : seq;
	}
}

static uint64_t cr_diff(const struct cr_tag *a, const struct cr_tag *b, uint64_t *first)
{
	uint64_t n = 0;

	for (uint64_t s = 0; s < CR_SECTORS; s++) {
		if (a[s].iter != b[s].iter || a[s].seq != b[s].seq) {
			if (!n)
				*first = s;
			n++;
		}
	}
	return n;
}

/* The disk must equal the state after some prefix of the writer's operations
 * that includes everything up to its last logged flush. */
int cr_verify(const char *db, const char *log, const char *statefile, uint32_t iter)
{
	struct cr_tag *base = calloc(CR_SECTORS, sizeof(*base));
	struct cr_tag *got = calloc(CR_SECTORS, sizeof(*got));
	char *spec = h_fmt("sql:%s", db);
	uint8_t *buf = h_alloc(CR_SECTORS * SS);
	uint64_t flushed = 0, first = 0, ndiff;
	struct cr_tag t;
	dc_disk *d = NULL;
	int fd;

	fd = open(statefile, O_RDONLY);
	if (fd >= 0) {
		if (read(fd, base, CR_SECTORS * sizeof(*base)) !=
		    (ssize_t)(CR_SECTORS * sizeof(*base)))
			return fprintf(stderr, "crash-verify: short state file\n"), 1;
		close(fd);
	}
	fd = open(log, O_RDONLY);
	while (fd >= 0 && read(fd, &t, sizeof(t)) == sizeof(t))
		if (t.iter == iter)
			flushed = t.seq;
	if (fd >= 0)
		close(fd);

	if (dc_open(spec, DC_OPEN_READ_ONLY, &d) < 0)
		return fprintf(stderr, "crash-verify: %s\n", dc_last_error()), 1;
	if (dc_read(d, 0, buf, CR_SECTORS * SS) < 0)
		return fprintf(stderr, "crash-verify: read failed\n"), 1;
	dc_close(d);
	for (uint64_t s = 0; s < CR_SECTORS; s++)
		if (!cr_decode(buf + s * SS, s, &got[s]))
			return fprintf(stderr,
				       "crash-verify: sector %llu holds data no "
				       "write produced (torn or corrupt)\n",
				       (unsigned long long)s),
			       1;

	for (uint64_t seq = 1; seq <= flushed; seq++)
		cr_apply(base, iter, seq);
	ndiff = cr_diff(base, got, &first);
	for (uint64_t seq = flushed + 1; ndiff && seq <= flushed + CR_WINDOW; seq++) {
		uint64_t f;

		cr_apply(base, iter, seq);
		if (!cr_diff(base, got, &f))
			ndiff = 0;
	}
	if (ndiff) {
		fprintf(stderr,
			"crash-verify: iteration %u: the disk matches no state "
			"after the last flush (op %llu); %llu sectors differ, first %llu "
			"(holds iteration %u op %llu)\n",
			iter, (unsigned long long)flushed, (unsigned long long)ndiff,
			(unsigned long long)first, got[first].iter,
			(unsigned long long)got[first].seq);
		return 1;
	}
	fd = open(statefile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, got, CR_SECTORS * sizeof(*got)) !=
			      (ssize_t)(CR_SECTORS * sizeof(*got)))
		return fprintf(stderr, "crash-verify: cannot save state\n"), 1;
	close(fd);
	printf("iteration %u: %llu ops flushed before the kill; disk consistent\n", iter,
	       (unsigned long long)flushed);
	free(buf);
	free(spec);
	free(got);
	free(base);
	return 0;
}
