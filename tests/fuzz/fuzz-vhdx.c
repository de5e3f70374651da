/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the vhdx plugin's open path (headers, region table,
 * metadata, parent locator, BAT, log replay) and I/O on whatever opened. The
 * plugin is compiled in; core services come from libdiskcore.
 *
 * A VHDX file is megabytes of mostly zeroes, so the input is a sparse image:
 *   byte 0      mode: bit 0 read-only (the log is replayed in memory), bit 1
 *               recompute both headers' and region tables' CRC-32C after
 *               patching, bit 2 those of the log entries the headers' logs
 *               hold (so that mutations reach what lies behind them);
 *   bytes 1-2   file size in 64 KiB units (little-endian);
 *   then runs of: 2 bytes 4 KiB page number, 2 bytes length, that many bytes
 *   written at the page (the file grows to hold them).
 * tests/fuzz/run.sh turns images the plugin and qemu-img make into seeds. */
#include "../../plugins/vhdx/vhdx.c"
#include "../../plugins/vhdx/vhdx_meta.c"
#include "../../plugins/vhdx/vhdx_log.c"
#include "../../plugins/vhdx/vhdx_create.c"
#include "../../plugins/vhdx/vhdx_io.c"
#include "../../plugins/vhdx/vhdx_check.c"
#include "../../plugins/vhdx/vhdx_map.c"
#include "../../plugins/vhdx/vhdx_resize.c"
#include "../../plugins/vhdx/vhdx_aio.c"
#include "../../common/endian/layout.c"
#include "../../common/utf16/utf16.c"
#include "../../common/bitmap/bitmap.c"
#include "../../common/vhdfmt/vhdfmt.c"
#include "../../common/vhdfmt/share.c"
#include "../../common/vhdfmt/open.c"
#include "../../common/parentpath/parentpath.c"
#include "../../common/vhdfmt/vhd_format.c"
#include "../../common/crc32c/crc32c.c"
#include "../../common/vhdfmt/vhdx_format.c"
#include "../../common/vhdfmt/map.c"
#include "../../common/vhdfmt/aio.c"
#include "../../common/vhdfmt/aio_open.c"
#include "../../common/ioengine/callbacks.c"
#include "ioe-none.h"

#include <sys/mman.h>

#define FUZZ_MAX_FILE (256 * VHDX_MB)

static int fuzz_io(void *inst, uint32_t op, uint32_t flags, uint64_t sector, void *buf,
		   size_t len, uint32_t ss, uint64_t *bits)
{
	bool unmap = op == DC_OP_UNMAP;
	struct iovec iov = { buf, unmap ? 0 : len };
	struct dc_marker mk = { bits, 0, sector, len / ss };
	struct dc_req req = {
		.op = op,
		.flags = flags,
		.sector = sector,
		.count = len / ss,
		.buf = { .iov = &iov, .iovcnt = 1, .len = unmap ? 0 : len },
		.marker = bits ? &mk : NULL,
	};

	return vhdx_plugin.io(inst, &req);
}

/* Store a valid CRC-32C (at offset 4) into the len bytes at off: a header, a
 * region table or a log entry of at most 64 KiB. */
static void fuzz_fix_crc(int fd, uint64_t off, size_t len)
{
	static uint8_t buf[64 * 1024];

	if (pread(fd, buf, len, (off_t)off) != (ssize_t)len)
		return;
	vhdxfmt_seal(buf, len);
	if (pwrite(fd, buf, len, (off_t)off) != (ssize_t)len)
		return;
}

/* Store valid CRC-32Cs into the log entries (those that do not wrap) of the
 * log that the header at hdr_off names. */
static void fuzz_fix_log(int fd, uint64_t hdr_off)
{
	uint8_t h[VHDX_LSEC];
	uint64_t log_off, log_len;

	if (pread(fd, h, sizeof(h), (off_t)hdr_off) != (ssize_t)sizeof(h))
		return;
	log_len = get_le32(h + 68);
	log_off = get_le64(h + 72);
	if (log_len > 16 * VHDX_MB || log_off > FUZZ_MAX_FILE)
		return;
	for (uint64_t pos = 0; pos + VHDX_LSEC <= log_len; pos += VHDX_LSEC) {
		uint32_t len;

		if (pread(fd, h, sizeof(h), (off_t)(log_off + pos)) !=
			    (ssize_t)sizeof(h) ||
		    memcmp(h, "loge", 4) != 0)
			continue;
		len = get_le32(h + 8);
		if (len % VHDX_LSEC || len < VHDX_LSEC || len > log_len - pos ||
		    len > 64 * 1024)
			continue;
		fuzz_fix_crc(fd, log_off + pos, len);
	}
}

/* Write the sparse image of the input to fd; false if it cannot be. */
static bool fuzz_image(int fd, const uint8_t *data, size_t size)
{
	uint64_t file = (uint64_t)(data[1] | data[2] << 8) << 16;
	size_t i = 3;

	while (i + 4 <= size) {
		uint64_t off = (uint64_t)(data[i] | data[i + 1] << 8) * 4096;
		size_t n = (size_t)(data[i + 2] | data[i + 3] << 8);

		i += 4;
		if (n > size - i)
			n = size - i;
		if (pwrite(fd, data + i, n, (off_t)off) != (ssize_t)n)
			return false;
		i += n;
		if (off + n > file)
			file = off + n;
	}
	if (file > FUZZ_MAX_FILE || ftruncate(fd, (off_t)file) < 0)
		return false;
	for (int k = 0; k < 2; k++) {
		if (data[0] & 4)
			fuzz_fix_log(fd, VHDX_HDR_OFF(k));
		if (data[0] & 2) {
			fuzz_fix_crc(fd, VHDX_HDR_OFF(k), VHDX_LSEC);
			fuzz_fix_crc(fd, VHDX_RT_OFF(k), 64 * 1024);
		}
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[64 * 4096];
	static uint64_t bits[1];
	char path[64], lower[4096];
	const char *fields[1] = { path };
	struct dc_open_args a = {
		.struct_size = sizeof(a),
		.form = "vhdx",
		.fields = fields,
		.nfields = 1,
	};
	struct dc_info info;
	void *inst = NULL;
	int fd, rc;

	if (size < 3)
		return 0;
	a.read_only = data[0] & 1;
	fd = memfd_create("fuzz-vhdx", 0);
	if (fd < 0)
		return 0;
	if (!fuzz_image(fd, data, size)) {
		close(fd);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	rc = vhdx_plugin.open(&a, &inst, &info);
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "open(%s) = %d: %s\n", a.read_only ? "ro" : "rw", rc,
			rc ? dc_last_error() : "ok");
	if (rc == 0) {
		uint32_t ss = info.sector_size;
		uint64_t n = info.sector_count;

		vhdx_plugin.lower_spec(inst, lower, sizeof(lower));
		for (uint64_t s = 0; s < n && s < (UINT64_C(64) << 20) / ss;
		     s += VHDX_MB / ss / 2 + 7) {
			size_t len = (n - s < 64 ? n - s : 64) * ss;

			memset(bits, 0, sizeof(bits));
			fuzz_io(inst, DC_OP_READ, 0, s, buf, len, ss, bits);
			if (a.read_only)
				continue;
			if (s % 3 == 0)
				fuzz_io(inst, DC_OP_WRITE, s % 2 ? DC_IO_FUA : 0, s, buf,
					len, ss, NULL);
			else if (s % 3 == 1)
				fuzz_io(inst, DC_OP_UNMAP, 0, s, NULL, len, ss, NULL);
		}
		fuzz_io(inst, DC_OP_READ, 0, n, buf, ss, ss, bits);
		if (!a.read_only)
			fuzz_io(inst, DC_OP_FLUSH, 0, 0, NULL, 0, ss, NULL);
		vhdx_plugin.close(inst);
	}
	close(fd);
	return 0;
}
