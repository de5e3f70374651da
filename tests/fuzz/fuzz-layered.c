/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the layered disk (core/layered.c) over RAM and SQLite
 * layers, driven by a sequence of reads, writes, flushes and unmaps decoded
 * from the input and checked against a model: a plain array of the disk's
 * bytes. Every read must return what the model holds; a read or write that
 * reaches past the end must fail as DC_E_ILLEGAL_BLOCK and change nothing.
 * After an unmap the sectors may read as anything the disk's unmap behaviour
 * allows (zeroes, unchanged, or unspecified); an unspecified sector must then
 * read the same each time until it is written. A chain whose top layer is a
 * sqldiff: database is closed and opened again at the end, and must still hold
 * everything written.
 *
 * Input:
 *   byte 0   the chain (fuzz_chains below; "base" is a sql: disk that the
 *            target fills with a pattern first);
 *   byte 1   the disk size: 8 + byte % 120 sectors;
 *   then ops, one byte each (low 3 bits: 0-1 read, 2-3 write, 4 flush,
 *   5 unmap, 6 writev, 7 readv; bit 4: FUA on writes) followed, for all but
 *   flush, by a 2-byte first sector (modulo size + 4, so some ranges reach
 *   past the end) and a 1-byte count (1 + byte % 16).
 * The databases live in a private scratch directory, emptied before each
 * input. */
#include "fuzz-env.h"

#include <sys/uio.h>

#define FUZZ_MAX_SECTORS 128
#define FUZZ_MAX_SS 4096
#define FUZZ_MAX_OPS 512
#define FUZZ_MAX_RUN 16

struct fuzz_chain {
	const char *fmt; /* %llu: the size in bytes, where it has one */
	uint32_t ss;
	bool base;	    /* fill base.dbhd first */
	const char *reopen; /* the chain without ;create, to check persistence */
};

static const struct fuzz_chain fuzz_chains[] = {
	{ "memdiff:mem:%llu", 512, false, NULL },
	{ "memdiff:memdiff:mem:%llu", 512, false, NULL },
	{ "memdiff:mem:%llu;sector=4096", 4096, false, NULL },
	{ "sqldiff:diff.dbhd;create:mem:%llu", 512, false, "sqldiff:diff.dbhd:mem:%llu" },
	{ "memdiff:sql:base.dbhd", 512, true, NULL },
	{ "sqldiff:diff.dbhd;create:sql:base.dbhd", 512, true,
	  "sqldiff:diff.dbhd:sql:base.dbhd" },
	{ "sqldiff:diff.dbhd;create:memdiff:sql:base.dbhd", 512, true,
	  "sqldiff:diff.dbhd:memdiff:sql:base.dbhd" },
	{ "mem:%llu", 512, false, NULL },
};
#define FUZZ_NCHAINS (sizeof(fuzz_chains) / sizeof(fuzz_chains[0]))

struct fuzz_model {
	const char *spec;
	uint64_t count;
	uint32_t ss;
	uint32_t unmap;
	uint8_t data[FUZZ_MAX_SECTORS * FUZZ_MAX_SS];
	bool known[FUZZ_MAX_SECTORS];
};

static struct fuzz_model fm;
static uint8_t fuzz_buf[FUZZ_MAX_RUN * FUZZ_MAX_SS];

static void fuzz_fill(uint8_t *buf, uint64_t sector, uint64_t n, uint32_t ss,
		      unsigned seed)
{
	for (uint64_t s = 0; s < n; s++)
		for (uint32_t j = 0; j < ss; j++)
			buf[s * ss + j] = (uint8_t)(seed * 29 + (sector + s) * 13 +
						    j * 7 + (j >> 8) + 1);
}

/* Check what a read returned against the model, sector by sector. */
static void fuzz_check_read(uint64_t sector, uint64_t n, const uint8_t *got, int op)
{
	for (uint64_t s = 0; s < n; s++) {
		uint8_t *want = fm.data + (sector + s) * fm.ss;

		if (!fm.known[sector + s]) {
			memcpy(want, got + s * fm.ss, fm.ss);
			fm.known[sector + s] = true;
			continue;
		}
		if (memcmp(want, got + s * fm.ss, fm.ss))
			fuzz_die("%s, op %d: sector %llu reads %02x %02x.., the model "
				 "holds %02x %02x..",
				 fm.spec, op, (unsigned long long)(sector + s),
				 got[s * fm.ss], got[s * fm.ss + 1], want[0], want[1]);
	}
}

static bool fuzz_in_range(uint64_t sector, uint64_t n)
{
	return sector < fm.count && n <= fm.count - sector;
}

static void fuzz_expect(int rc, uint64_t sector, uint64_t n, const char *what, int op)
{
	int want = fuzz_in_range(sector, n) ? 0 : DC_E_ILLEGAL_BLOCK;

	if (rc != want)
		fuzz_die("%s, op %d: %s of %llu+%llu (of %llu): %d, expected %d", fm.spec,
			 op, what, (unsigned long long)sector, (unsigned long long)n,
			 (unsigned long long)fm.count, rc, want);
}

static void fuzz_op(dc_disk *d, struct fuzz_in *in, int op)
{
	unsigned code = (unsigned)fuzz_take(in, 1);
	uint64_t sector, n;
	size_t len, half;
	struct iovec iov[2];
	int rc;

	if ((code & 7) == 4) {
		rc = dc_flush(d);
		if (rc)
			fuzz_die("%s, op %d: flush: %d", fm.spec, op, rc);
		return;
	}
	sector = fuzz_take(in, 2) % (fm.count + 4);
	n = 1 + fuzz_take(in, 1) % FUZZ_MAX_RUN;
	len = (size_t)n * fm.ss;
	half = (size_t)(n / 2) * fm.ss;
	iov[0] = (struct iovec){ fuzz_buf, half };
	iov[1] = (struct iovec){ fuzz_buf + half, len - half };
	switch (code & 7) {
	case 0:
	case 1:
	case 7:
		memset(fuzz_buf, 0xee, len);
		rc = (code & 7) == 7 ?
			     dc_readv(d, sector, iov + (half ? 0 : 1), half ? 2 : 1) :
			     dc_read(d, sector, fuzz_buf, len);
		fuzz_expect(rc, sector, n, "read", op);
		if (rc == 0)
			fuzz_check_read(sector, n, fuzz_buf, op);
		break;
	case 2:
	case 3:
	case 6:
		fuzz_fill(fuzz_buf, sector, n, fm.ss, (unsigned)op);
		rc = (code & 7) == 6 ?
			     dc_writev(d, sector, iov + (half ? 0 : 1), half ? 2 : 1,
				       code & 0x10 ? DC_IO_FUA : 0) :
			     dc_write(d, sector, fuzz_buf, len,
				      code & 0x10 ? DC_IO_FUA : 0);
		fuzz_expect(rc, sector, n, "write", op);
		if (rc == 0) {
			memcpy(fm.data + sector * fm.ss, fuzz_buf, len);
			for (uint64_t s = 0; s < n; s++)
				fm.known[sector + s] = true;
		}
		break;
	case 5:
		rc = dc_unmap(d, sector, n, 0);
		fuzz_expect(rc, sector, n, "unmap", op);
		if (rc || fm.unmap == DC_UNMAP_IGNORED)
			break;
		for (uint64_t s = 0; s < n; s++) {
			memset(fm.data + (sector + s) * fm.ss, 0, fm.ss);
			fm.known[sector + s] = fm.unmap == DC_UNMAP_ZEROES;
		}
		break;
	}
}

/* base.dbhd: a sql: disk of count sectors with every third sector written. */
static void fuzz_make_base(uint64_t count, unsigned seed)
{
	char spec[64];
	dc_disk *d;
	int rc;

	snprintf(spec, sizeof(spec), "sql:base.dbhd;create=%llu",
		 (unsigned long long)count * 512);
	rc = dc_open(spec, 0, &d);
	if (rc)
		fuzz_die("%s: %d %s", spec, rc, dc_last_error());
	for (uint64_t s = seed % 3; s < count; s += 3) {
		fuzz_fill(fm.data + s * 512, s, 1, 512, seed + 1000);
		rc = dc_write(d, s, fm.data + s * 512, 512, 0);
		if (rc)
			fuzz_die("%s: write of sector %llu: %d", spec,
				 (unsigned long long)s, rc);
	}
	rc = dc_flush(d);
	if (rc)
		fuzz_die("%s: flush: %d", spec, rc);
	dc_close(d);
}

static dc_disk *fuzz_open(const char *fmt, char *spec, size_t len)
{
	struct dc_info info;
	dc_disk *d;
	int rc;

	snprintf(spec, len, fmt, (unsigned long long)fm.count * fm.ss);
	fm.spec = spec;
	rc = dc_open(spec, 0, &d);
	if (rc)
		fuzz_die("%s: %d %s", spec, rc, dc_last_error());
	dc_get_info(d, &info);
	if (info.sector_size != fm.ss || info.sector_count != fm.count)
		fuzz_die("%s: %llu sectors of %u bytes, expected %llu of %u", spec,
			 (unsigned long long)info.sector_count, info.sector_size,
			 (unsigned long long)fm.count, fm.ss);
	fm.unmap = info.unmap_behavior;
	return d;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_enter_scratch("layered", argc, argv);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	const struct fuzz_chain *c;
	char spec[128];
	dc_disk *d;
	int op = 0;

	if (size < 2)
		return 0;
	c = &fuzz_chains[fuzz_take(&in, 1) % FUZZ_NCHAINS];
	fuzz_clear_scratch();
	memset(&fm, 0, sizeof(fm));
	fm.ss = c->ss;
	fm.count = 8 + fuzz_take(&in, 1) % (FUZZ_MAX_SECTORS - 8);
	for (uint64_t s = 0; s < fm.count; s++)
		fm.known[s] = true;
	if (c->base)
		fuzz_make_base(fm.count, (unsigned)size);
	d = fuzz_open(c->fmt, spec, sizeof(spec));
	while (in.left && op < FUZZ_MAX_OPS)
		fuzz_op(d, &in, op++);
	dc_close(d);
	if (c->reopen) {
		/* What was written is in diff.dbhd: the same chain opened again
		 * reads it all back. */
		d = fuzz_open(c->reopen, spec, sizeof(spec));
		for (uint64_t s = 0; s < fm.count; s += FUZZ_MAX_RUN) {
			uint64_t n = fm.count - s < FUZZ_MAX_RUN ? fm.count - s :
								   FUZZ_MAX_RUN;
			int rc = dc_read(d, s, fuzz_buf, (size_t)n * fm.ss);

			if (rc)
				fuzz_die("%s: read of %llu+%llu after reopening: %d",
					 spec, (unsigned long long)s,
					 (unsigned long long)n, rc);
			fuzz_check_read(s, n, fuzz_buf, op);
		}
		dc_close(d);
	}
	return 0;
}
