/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the vhd plugin's open path (footers, dynamic header, parent
 * locators, BAT) and I/O on whatever opened, on an image made of the input.
 * The plugin is compiled in; core services come from libdiskcore. The first
 * input byte picks read-only or read-write; the rest is the image file. */
#include "../../plugins/vhd/vhd.c"
#include "../../plugins/vhd/vhd_parse.c"
#include "../../plugins/vhd/vhd_parent.c"
#include "../../plugins/vhd/vhd_io.c"
#include "../../plugins/vhd/vhd_create.c"
#include "../../plugins/vhd/vhd_check.c"
#include "../../plugins/vhd/vhd_resize.c"
#include "../../plugins/vhd/vhd_aio.c"
#include "../../common/endian/layout.c"
#include "../../common/utf16/utf16.c"
#include "../../common/bitmap/bitmap.c"
#include "../../common/vhdfmt/vhdfmt.c"
#include "../../common/vhdfmt/share.c"
#include "../../common/vhdfmt/open.c"
#include "../../common/parentpath/parentpath.c"
#include "../../common/vhdfmt/vhd_format.c"
#include "../../common/vhdfmt/map.c"
#include "../../common/vhdfmt/aio.c"
#include "../../common/vhdfmt/aio_open.c"
#include "../../common/ioengine/callbacks.c"
#include "ioe-none.h"

#include <sys/mman.h>

static int fuzz_io(void *inst, uint32_t op, uint32_t flags, uint64_t sector, void *buf,
		   size_t len, uint64_t *bits)
{
	struct iovec iov = { buf, len };
	struct dc_marker mk = { bits, 0, sector, len / 512 };
	struct dc_req req = {
		.op = op,
		.flags = flags,
		.sector = sector,
		.count = len / 512,
		.buf = { .iov = &iov, .iovcnt = 1, .len = len },
		.marker = bits ? &mk : NULL,
	};

	return vhd_plugin.io(inst, &req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[64 * 512];
	uint64_t bits[1], n;
	char path[64], lower[4096];
	const char *fields[1] = { path };
	struct dc_open_args a = {
		.struct_size = sizeof(a),
		.form = "vhd",
		.fields = fields,
		.nfields = 1,
	};
	struct dc_info info;
	void *inst = NULL;
	int fd;

	if (size < 1)
		return 0;
	a.read_only = data[0] & 1;
	fd = memfd_create("fuzz-vhd", 0);
	if (fd < 0)
		return 0;
	if (write(fd, data + 1, size - 1) != (ssize_t)(size - 1)) {
		close(fd);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int rc = vhd_plugin.open(&a, &inst, &info);

	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "open(%s) = %d: %s\n", a.read_only ? "ro" : "rw", rc,
			rc ? dc_last_error() : "ok");
	if (rc == 0) {
		vhd_plugin.lower_spec(inst, lower, sizeof(lower));
		n = info.sector_count;
		for (uint64_t s = 0; s < n && s < 8192; s += 61) {
			size_t len = (n - s < 64 ? n - s : 64) * 512;

			bits[0] = 0;
			fuzz_io(inst, DC_OP_READ, 0, s, buf, len, bits);
			if (!a.read_only && s % 7 == 0)
				fuzz_io(inst, DC_OP_WRITE, s % 2 ? DC_IO_FUA : 0, s, buf,
					len, NULL);
		}
		fuzz_io(inst, DC_OP_READ, 0, n, buf, 512, bits);
		vhd_plugin.close(inst);
	}
	close(fd);
	return 0;
}
