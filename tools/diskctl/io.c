/* SPDX-License-Identifier: MIT */
/* diskctl read and write: dump sectors, write a pattern or a file's bytes. */
#include "diskctl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void ctl_hexdump(const unsigned char *p, size_t len, uint64_t base)
{
	char line[128];

	for (size_t off = 0; off < len; off += 16) {
		size_t n = len - off < 16 ? len - off : 16;
		int k = snprintf(line, sizeof(line), "%08" PRIx64 ":", base + off);

		for (size_t i = 0; i < 16; i++) {
			if (i % 2 == 0)
				line[k++] = ' ';
			if (i < n)
				k += snprintf(line + k, sizeof(line) - k, "%02x",
					      p[off + i]);
			else
				k += snprintf(line + k, sizeof(line) - k, "  ");
		}
		line[k++] = ' ';
		line[k++] = ' ';
		for (size_t i = 0; i < n; i++) {
			unsigned char ch = p[off + i];

			line[k++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '.';
		}
		line[k++] = '\n';
		fwrite(line, 1, k, stdout);
	}
}

/* read's and write's options and their SPEC and SECTOR. */
struct ctl_io_args {
	bool raw, fua;
	const char *pattern, *count, *file;
	const char *spec;
	uint64_t sector;
};

/* Parse the options and SPEC SECTOR; the operands. */
static char **ctl_io_args(int argc, char **argv, struct ctl_io_args *a)
{
	char **ops = ctl_parse(argc, argv, a, NULL);

	a->spec = ops[0];
	a->sector = ctl_arg_u64("SECTOR", ops[1], 0, UINT64_MAX);
	return ops;
}

const struct ctl_opt ctl_read_opts[] = {
	CTL_OPT("hex", 0, CTL_OPT_FALSE, struct ctl_io_args, raw, NULL,
		"a hex dump (the default)"),
	CTL_OPT("raw", 0, CTL_OPT_TRUE, struct ctl_io_args, raw, NULL,
		"the bytes themselves"),
	{ 0 },
};

const struct ctl_opt ctl_write_opts[] = {
	CTL_OPT("pattern", 0, CTL_OPT_STRING, struct ctl_io_args, pattern, "BYTE",
		"fill the sectors with BYTE (0..255, or 0xNN)"),
	CTL_OPT("count", 0, CTL_OPT_STRING, struct ctl_io_args, count, "N",
		"write N sectors of --pattern"),
	CTL_OPT("file", 0, CTL_OPT_STRING, struct ctl_io_args, file, "F",
		"write F's bytes ('-': stdin)"),
	CTL_OPT("fua", 0, CTL_OPT_TRUE, struct ctl_io_args, fua, NULL,
		"write with force unit access"),
	{ 0 },
};

int ctl_read(int argc, char **argv)
{
	struct ctl_io_args a = { 0 };
	uint64_t count =
		ctl_arg_u64("COUNT", ctl_io_args(argc, argv, &a)[2], 0, UINT64_MAX);
	const char *spec = a.spec;
	uint64_t sector = a.sector, ss, done = 0;
	unsigned char *buf;
	dc_disk *d;
	int rc = 0;

	d = ctl_open(spec, DC_OPEN_READ_ONLY);
	if (!d)
		return CTL_EXIT_FAIL;
	ss = dc_sector_size(d);
	buf = ctl_aligned(1 << 20);
	while (done < count) {
		uint64_t n = count - done;
		int detail;

		if (n > (1 << 20) / ss)
			n = (1 << 20) / ss;
		rc = ctl_io(d, DC_OP_READ, sector + done, buf, n * ss, 0, &detail);
		if (rc < 0) {
			ctl_err_io(rc, detail,
				   "read '%s' sectors %" PRIu64 "+%" PRIu64
				   " (disk has %" PRIu64 ")",
				   spec, sector + done, n, dc_sector_count(d));
			break;
		}
		if (a.raw)
			fwrite(buf, 1, n * ss, stdout);
		else
			ctl_hexdump(buf, n * ss, (sector + done) * ss);
		done += n;
	}
	free(buf);
	dc_close(d);
	if (fflush(stdout) == EOF && !rc) {
		ctl_err("writing output: %s", strerror(errno));
		rc = -EIO;
	}
	return rc < 0 ? CTL_EXIT_FAIL : 0;
}

/* Read a whole file (or stdin for "-") into an aligned buffer. */
static unsigned char *ctl_slurp(const char *path, size_t *len)
{
	int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
	size_t cap = 1 << 16, n = 0;
	unsigned char *buf;

	if (fd < 0) {
		ctl_err("%s: %s", path, strerror(errno));
		return NULL;
	}
	buf = ctl_aligned(cap);
	for (;;) {
		ssize_t r;

		if (n == cap) {
			unsigned char *nb = ctl_aligned(cap * 2);

			memcpy(nb, buf, n);
			free(buf);
			buf = nb;
			cap *= 2;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ctl_err("%s: %s", path, strerror(errno));
			free(buf);
			buf = NULL;
			break;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (fd != STDIN_FILENO)
		close(fd);
	*len = n;
	return buf;
}

static unsigned char *ctl_write_pattern(uint64_t byte, size_t len)
{
	unsigned char *buf = ctl_aligned(len);

	memset(buf, (int)byte, len);
	return buf;
}

/* The file's bytes, a whole number of sectors; NULL when not (reported). */
static unsigned char *ctl_write_file(const char *file, uint64_t ss, size_t *len)
{
	unsigned char *buf = ctl_slurp(file, len);

	if (buf && (*len == 0 || *len % ss)) {
		ctl_err("%s is %zu bytes; expected a non-zero multiple of the "
			"%" PRIu64 "-byte sector size",
			file, *len, ss);
		free(buf);
		buf = NULL;
	}
	return buf;
}

int ctl_write(int argc, char **argv)
{
	struct ctl_io_args a = { 0 };
	const char *spec, *pattern = NULL, *file = NULL;
	uint64_t sector, ss, count = 0, byte = 0;
	unsigned char *buf;
	size_t len;
	dc_disk *d;
	int rc, detail;

	ctl_io_args(argc, argv, &a);
	spec = a.spec;
	sector = a.sector;
	pattern = a.pattern;
	file = a.file;
	if (!!pattern == !!file)
		ctl_usage("give either --pattern BYTE --count N or --file F");
	if (pattern && !a.count)
		ctl_usage("--pattern needs --count N (sectors)");
	if (file && a.count)
		ctl_usage("--count goes with --pattern, not --file");
	if (a.count)
		count = ctl_arg_u64("--count", a.count, 1, UINT32_MAX);
	if (pattern)
		byte = ctl_arg_u64("--pattern", pattern, 0, 255);
	d = ctl_open(spec, 0);
	if (!d)
		return CTL_EXIT_FAIL;
	ss = dc_sector_size(d);
	len = count * ss;
	buf = file ? ctl_write_file(file, ss, &len) : ctl_write_pattern(byte, len);
	if (!buf) {
		dc_close(d);
		return CTL_EXIT_FAIL;
	}
	rc = ctl_io(d, DC_OP_WRITE, sector, buf, len, a.fua ? DC_IO_FUA : 0, &detail);
	if (rc < 0)
		ctl_err_io(rc, detail,
			   "write '%s' sectors %" PRIu64 "+%" PRIu64 " (disk has %" PRIu64
			   ")",
			   spec, sector, (uint64_t)len / ss, dc_sector_count(d));
	else
		rc = ctl_flush(d, spec);
	if (rc == 0)
		printf("wrote %zu bytes at sector %" PRIu64 "\n", len, sector);
	free(buf);
	dc_close(d);
	return rc < 0 ? CTL_EXIT_FAIL : 0;
}
