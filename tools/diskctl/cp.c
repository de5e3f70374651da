/* SPDX-License-Identifier: MIT */
/* diskctl cp, and the copy engine convert shares: one disk to another with
 * many chunks in flight, stopping cleanly on SIGINT or SIGTERM. */
#include "diskctl.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum ctl_cp_state { CTL_CP_IDLE, CTL_CP_READ, CTL_CP_WRITE, CTL_CP_UNMAP };
static const char *const ctl_cp_names[] = { "idle", "read", "write", "unmap" };

struct ctl_cp_slot {
	enum ctl_cp_state state;
	uint64_t off; /* byte offset of the chunk */
	size_t len;
	unsigned char *buf;
	struct iovec iov;
};

static bool ctl_is_zero(const unsigned char *buf, size_t len)
{
	const uint64_t *w = (const uint64_t *)buf;

	/* Chunks are 4 KiB-aligned and a multiple of 512 bytes. */
	for (size_t i = 0; i < len / 8; i += 8)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] |
		    w[i + 6] | w[i + 7])
			return false;
	return true;
}

static int ctl_cp_submit(struct ctl_cp *cp, struct ctl_cp_slot *s, enum ctl_cp_state st)
{
	struct dc_io io = { 0 };
	dc_queue *q = st == CTL_CP_READ ? cp->sq : cp->dq;
	int rc;

	s->state = st;
	s->iov.iov_base = s->buf;
	s->iov.iov_len = s->len;
	io.user_data = s;
	if (st == CTL_CP_READ) {
		io.op = DC_OP_READ;
		io.sector = s->off / cp->sss;
	} else {
		io.op = st == CTL_CP_WRITE ? DC_OP_WRITE : DC_OP_UNMAP;
		io.sector = s->off / cp->dss;
	}
	if (st == CTL_CP_UNMAP) {
		io.count = s->len / cp->dss;
	} else {
		io.iov = &s->iov;
		io.iovcnt = 1;
	}
	rc = dc_submit(q, &io);
	if (rc < 0) {
		s->state = CTL_CP_IDLE;
		if (s->off < cp->bad)
			cp->bad = s->off;
		ctl_err("submit to '%s': %s",
			st == CTL_CP_READ ? cp->src_spec : cp->dst_spec, dc_strerror(rc));
		if (!cp->err)
			cp->err = rc;
	}
	return rc;
}

static int ctl_cp_first_extent(void *arg, const struct dc_extent *e)
{
	struct ctl_cp *cp = arg;

	cp->map_off = e->offset;
	cp->map_end = e->offset + e->length;
	cp->map_zero = e->flags & DC_EXTENT_ZERO;
	return 1; /* one is enough */
}

/* SRC's extent at off, as dc_map() tells it: one query per extent, kept in
 * cp->map_*; false when SRC cannot say (the chunk is then read). */
static bool ctl_cp_extent(struct ctl_cp *cp, uint64_t off)
{
	if (off >= cp->map_off && off < cp->map_end)
		return true;
	cp->map_end = 0;
	return dc_map(cp->src, off, cp->size - off, ctl_cp_first_extent, cp) == 1 &&
	       off >= cp->map_off && off < cp->map_end;
}

/* The next chunk of the ranges into s; false when all are handed out. Where
 * zeroes need not be written, a chunk ends where SRC's extent does (on a
 * sector of DST), so that a zero run is skipped unread and data is never
 * read with zeroes around it. */
static bool ctl_cp_next(struct ctl_cp *cp, struct ctl_cp_slot *s, size_t chunk)
{
	const struct ctl_range *r;
	uint64_t end;

	if (cp->cur == cp->nranges)
		return false;
	r = &cp->ranges[cp->cur];
	s->off = r->off + cp->pos;
	s->len = r->len - cp->pos < chunk ? r->len - cp->pos : chunk;
	if (cp->zeroes != CTL_ZEROES_WRITE && ctl_cp_extent(cp, s->off)) {
		end = cp->map_end - (cp->map_end - r->off) % cp->dss;
		if (end > s->off && end < s->off + s->len)
			s->len = end - s->off;
	}
	cp->pos += s->len;
	if (cp->pos == r->len) {
		cp->cur++;
		cp->pos = 0;
	}
	return true;
}

/* Does SRC say the chunk in s reads as zeroes? Then it need not be read. */
static bool ctl_cp_known_zero(const struct ctl_cp *cp, const struct ctl_cp_slot *s)
{
	return cp->map_zero && s->off >= cp->map_off && s->off + s->len <= cp->map_end;
}

/* Give an idle slot the next chunk, unless done, failed or interrupted: so
 * after an interruption, once the chunks in flight finish, DST holds all of
 * the ranges before the next chunk. A chunk SRC says is zeroes is not read:
 * it is skipped, unmapped or written as zeroes as a read of zeroes would be. */
static void ctl_cp_start(struct ctl_cp *cp, struct ctl_cp_slot *s, size_t chunk)
{
	for (;;) {
		if (cp->err || ctl_signal() || !ctl_cp_next(cp, s, chunk)) {
			s->state = CTL_CP_IDLE;
			return;
		}
		if (cp->zeroes == CTL_ZEROES_WRITE || !ctl_cp_known_zero(cp, s))
			break;
		if (cp->zeroes != CTL_ZEROES_SKIP) {
			memset(s->buf, 0, s->len);
			ctl_cp_submit(cp, s, cp->can_unmap ? CTL_CP_UNMAP : CTL_CP_WRITE);
			return;
		}
		cp->skipped += s->len;
		cp->done += s->len;
	}
	ctl_cp_submit(cp, s, CTL_CP_READ);
}

static void ctl_cp_complete(struct ctl_cp *cp, const struct dc_completion *c,
			    size_t chunk)
{
	struct ctl_cp_slot *s = c->user_data;
	enum ctl_cp_state st = s->state;

	s->state = CTL_CP_IDLE;
	if (st == CTL_CP_UNMAP && c->result == DC_E_UNSUPPORTED) {
		/* Unmap is a hint this chain does not take: write the zeroes. */
		cp->can_unmap = false;
		ctl_cp_submit(cp, s, CTL_CP_WRITE);
		return;
	}
	if (c->result < 0) {
		if (!cp->err)
			cp->err = c->result;
		if (s->off < cp->bad)
			cp->bad = s->off;
		ctl_err_io(c->result, c->detail,
			   "%s '%s' at byte %" PRIu64 " (%zu bytes)", ctl_cp_names[st],
			   st == CTL_CP_READ ? cp->src_spec : cp->dst_spec, s->off,
			   s->len);
		return;
	}
	if (st == CTL_CP_READ) {
		bool zero = cp->zeroes != CTL_ZEROES_WRITE && ctl_is_zero(s->buf, s->len);

		if (zero && cp->zeroes == CTL_ZEROES_SKIP) {
			cp->skipped += s->len;
		} else {
			ctl_cp_submit(cp, s,
				      zero && cp->can_unmap ? CTL_CP_UNMAP :
							      CTL_CP_WRITE);
			return;
		}
	}
	cp->done += s->len;
	if (st == CTL_CP_UNMAP)
		cp->unmapped += s->len;
	ctl_cp_start(cp, s, chunk);
}

static void ctl_cp_draw(struct ctl_cp *cp, bool final)
{
	uint64_t now = ctl_now_ns();
	double secs, pct;
	char a[32], b[32];
	int fill;

	if (!cp->progress || (!final && now - cp->last_draw_ns < 100000000u))
		return;
	cp->last_draw_ns = now;
	secs = (now - cp->start_ns) / 1e9;
	pct = cp->total ? 100.0 * cp->done / cp->total : 100.0;
	fill = (int)(pct * 30 / 100);
	ctl_human_bytes(cp->done, a, sizeof(a));
	ctl_human_bytes(cp->total, b, sizeof(b));
	fprintf(stderr, "\r[%.*s%*s] %5.1f%% %s / %s %7.1f MB/s ", fill,
		"##############################", 30 - fill, "", pct, a, b,
		secs > 0 ? cp->done / secs / 1e6 : 0.0);
	if (final)
		fprintf(stderr, "\n");
}

/* Reap both queues; returns how many completions were handled. */
static int ctl_cp_reap(struct ctl_cp *cp, dc_queue *const *qs)
{
	struct dc_completion comps[32];
	int got = 0;

	for (int qi = 0; qi < 2; qi++) {
		int n = dc_queue_reap(qs[qi], comps, 32);

		for (int i = 0; i < n; i++)
			ctl_cp_complete(cp, &comps[i], cp->chunk);
		got += n > 0 ? n : 0;
	}
	return got;
}

/* A driven SRC queue's wait, which also ends when DST's fd (dfd) is readable;
 * it hands the reads submitted since the last call to SRC. */
static void ctl_cp_wait(struct ctl_cp *cp, int dfd, int timeout_ms)
{
	int rc = dc_queue_wait_fd(cp->sq, dfd, timeout_ms);

	if (rc < 0 && rc != -EINTR) {
		if (!cp->err) {
			ctl_err("waiting on '%s': %s", cp->src_spec, dc_strerror(rc));
			cp->err = rc;
		}
		/* It returned without sleeping; the chunks in flight still have
		 * to be waited for. */
		poll(NULL, 0, 10);
	}
}

/* Run the slots until none is busy. When an element of SRC's chain can reap
 * on this thread (a file on io_uring), SRC's queue is driven: its reads run
 * inside the wait's system call, none of their completions crosses a
 * thread, and DST's completions wake the same wait through DST's fd. With
 * the engine's copy mode (ctl_cp_main) DST's writes complete inside
 * dc_submit(), so a chunk is read and written without a thread hand-off. */
static void ctl_cp_loop(struct ctl_cp *cp, struct ctl_cp_slot *slots, unsigned nslots)
{
	dc_queue *qs[2] = { cp->sq, cp->dq };
	int dfd = dc_queue_fd(cp->dq);
	bool drive = dfd >= 0 && dc_queue_pollers(cp->sq) &&
		     dc_queue_wait(cp->sq, 0) >= 0;

	for (unsigned i = 0; i < nslots; i++)
		ctl_cp_start(cp, &slots[i], cp->chunk);
	for (;;) {
		int got = ctl_cp_reap(cp, qs);
		unsigned busy = 0;

		ctl_cp_draw(cp, false);
		for (unsigned i = 0; i < nslots && !got && !busy; i++)
			busy = slots[i].state != CTL_CP_IDLE;
		if (!got && !busy)
			break;
		if (drive)
			ctl_cp_wait(cp, dfd, got ? 0 : 100);
		else if (!got)
			ctl_queues_wait(qs, 2, 100);
	}
}

/* Sector sizes, sizes and the chunk (at least a sector of each disk). */
static void ctl_cp_geometry(struct ctl_cp *cp)
{
	struct dc_info di;

	dc_get_info(cp->dst, &di);
	cp->sss = dc_sector_size(cp->src);
	cp->dss = di.sector_size;
	cp->size = dc_sector_count(cp->src) * cp->sss;
	if (cp->chunk < cp->sss)
		cp->chunk = cp->sss;
	if (cp->chunk < cp->dss)
		cp->chunk = cp->dss;
	cp->can_unmap = di.unmap_behavior == DC_UNMAP_ZEROES;
}

int ctl_cp_run(struct ctl_cp *cp)
{
	unsigned nslots = (unsigned)cp->qd;
	struct ctl_cp_slot *slots;
	int rc;

	ctl_cp_geometry(cp);
	if (!cp->ranges) {
		cp->whole = (struct ctl_range){ 0, cp->size };
		cp->ranges = &cp->whole;
		cp->nranges = 1;
	}
	cp->total = 0;
	for (size_t i = 0; i < cp->nranges; i++)
		cp->total += cp->ranges[i].len;
	cp->cur = cp->pos = 0;
	cp->bad = UINT64_MAX;
	/* Both queues live and die on this thread. */
	rc = dc_queue_open(cp->src, DC_QUEUE_POLL | DC_QUEUE_THREAD, &cp->sq);
	if (rc < 0) {
		ctl_err("queue on '%s': %s", cp->src_spec, ctl_last_error(rc));
		return rc;
	}
	rc = dc_queue_open(cp->dst, DC_QUEUE_POLL | DC_QUEUE_THREAD, &cp->dq);
	if (rc < 0) {
		ctl_err("queue on '%s': %s", cp->dst_spec, ctl_last_error(rc));
		dc_queue_close(cp->sq);
		return rc;
	}
	slots = ctl_xalloc(nslots * sizeof(*slots));
	for (unsigned i = 0; i < nslots; i++)
		slots[i].buf = ctl_aligned(cp->chunk);
	ctl_cp_loop(cp, slots, nslots);
	for (unsigned i = 0; i < nslots; i++)
		free(slots[i].buf);
	free(slots);
	dc_queue_close(cp->sq);
	dc_queue_close(cp->dq);
	cp->low = cp->cur < cp->nranges ? cp->ranges[cp->cur].off + cp->pos : UINT64_MAX;
	if (cp->bad < cp->low)
		cp->low = cp->bad;
	return cp->err;
}

/* Check that DST can take all of SRC; 0, or -1 (reported). */
static int ctl_cp_check(struct ctl_cp *cp)
{
	uint64_t dbytes;

	ctl_cp_geometry(cp);
	dbytes = dc_sector_count(cp->dst) * cp->dss;
	if (dbytes < cp->size) {
		ctl_err("destination '%s' is %" PRIu64
			" bytes, smaller than the source '%s'"
			" (%" PRIu64 " bytes); make it at least as large",
			cp->dst_spec, dbytes, cp->src_spec, cp->size);
		return -1;
	}
	if (cp->size % cp->dss) {
		ctl_err("source size %" PRIu64 " is not a multiple of the destination's "
			"%" PRIu32 "-byte sectors",
			cp->size, cp->dss);
		return -1;
	}
	return 0;
}

/* 0 done, 1 interrupted by a signal (DST holds SRC's first cp->done bytes),
 * -1 failed (reported). */
static int ctl_cp_copy(struct ctl_cp *cp)
{
	int rc;

	if (ctl_cp_check(cp) < 0)
		return -1;
	cp->progress = !cp->quiet && isatty(STDERR_FILENO);
	cp->start_ns = ctl_now_ns();
	rc = ctl_cp_run(cp);
	/* Interrupted too: what was written is made durable. */
	if (!rc)
		rc = ctl_flush(cp->dst, cp->dst_spec);
	cp->secs = (ctl_now_ns() - cp->start_ns) / 1e9;
	if (cp->progress)
		ctl_cp_draw(cp, true);
	if (rc < 0)
		return -1;
	return cp->done < cp->total ? 1 : 0;
}

static void ctl_cp_interrupted(const struct ctl_cp *cp, const char *what)
{
	char a[32], b[32];

	ctl_human_bytes(cp->done, a, sizeof(a));
	ctl_human_bytes(cp->total, b, sizeof(b));
	ctl_err("interrupted: '%s' holds the first %" PRIu64 " of %" PRIu64
		" bytes (%s of %s, %.1f%%) of '%s'; %s",
		cp->dst_spec, cp->done, cp->total, a, b,
		cp->total ? 100.0 * cp->done / cp->total : 100.0, cp->src_spec, what);
}

static void ctl_cp_summary(const struct ctl_cp *cp, const char *verb)
{
	char hb[32];

	if (cp->quiet)
		return;
	ctl_human_bytes(cp->done, hb, sizeof(hb));
	printf("%s %" PRIu64 " bytes (%s) in %.3f s, %.1f MB/s; ", verb, cp->done, hb,
	       cp->secs, cp->secs > 0 ? cp->done / cp->secs / 1e6 : 0.0);
	if (cp->zeroes == CTL_ZEROES_SKIP)
		printf("%" PRIu64 " bytes of zeroes skipped\n", cp->skipped);
	else
		printf("%" PRIu64 " bytes unmapped\n", cp->unmapped);
}

int ctl_cp_run_report(struct ctl_cp *cp, const char *verb, const char *left)
{
	switch (ctl_cp_copy(cp)) {
	case 0:
		ctl_cp_summary(cp, verb);
		return 0;
	case 1:
		ctl_cp_interrupted(cp, left);
		return 128 + ctl_signal();
	}
	return CTL_EXIT_FAIL;
}

const struct ctl_opt ctl_cp_opts[] = {
	CTL_OPT("sparse", 0, CTL_OPT_TRUE, struct ctl_cp, sparse, NULL,
		"all-zero chunks are unmapped on DST when DST's unmapped\n"
		"sectors read as zero (the default)"),
	CTL_OPT("no-sparse", 0, CTL_OPT_FALSE, struct ctl_cp, sparse, NULL,
		"write every chunk"),
	CTL_OPT_QUIET(struct ctl_cp, "no progress bar, no summary"),
	CTL_OPTS_CHUNKS(struct ctl_cp, "chunks in flight (default 16)"),
	{ 0 },
};

int ctl_cp_main(int argc, char **argv, struct ctl_cp *cp,
		dc_disk *(*open_dst)(struct ctl_cp *cp), const char *verb,
		const char *left)
{
	char **ops = ctl_parse(argc, argv, cp, NULL);
	int rc = CTL_EXIT_FAIL;

	cp->src_spec = ops[0];
	cp->dst_spec = ops[1];
	ctl_catch_signals();
	/* The file engine's copy mode for the disks opened below (ioengine.h,
	 * DISKCORE_IO_COPY): buffered writes run in dc_submit() on this
	 * thread, which only this loop waits on, and start writeback as they
	 * go, so the flush at the end has little left to write. A caller's
	 * DISKCORE_IO_COPY=0 keeps the default. */
	setenv("DISKCORE_IO_COPY", "1", 0);
	cp->src = ctl_open(cp->src_spec, DC_OPEN_READ_ONLY);
	if (!cp->src)
		return CTL_EXIT_FAIL;
	cp->dst = open_dst(cp);
	if (cp->dst) {
		rc = ctl_cp_run_report(cp, verb, left);
		dc_close(cp->dst);
	}
	dc_close(cp->src);
	return rc;
}

static dc_disk *ctl_cp_dst(struct ctl_cp *cp)
{
	cp->zeroes = cp->sparse ? CTL_ZEROES_UNMAP : CTL_ZEROES_WRITE;
	return ctl_open(cp->dst_spec, 0);
}

int ctl_cp(int argc, char **argv)
{
	struct ctl_cp cp = { .sparse = true, CTL_CHUNKS_DEFAULT };

	return ctl_cp_main(argc, argv, &cp, ctl_cp_dst, "copied",
			   "the rest of it was not written");
}
