/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the vhd1 plugin's footer validation and I/O on an image made
 * of the input. The plugin is compiled in; core services come from libdiskcore. */
#include "../../plugins/vhd1/vhd1.c"
#include "../../common/endian/layout.c"
#include "../../common/vhdfmt/vhdfmt.c"
#include "../../common/vhdfmt/share.c"
#include "../../common/vhdfmt/open.c"
#include "../../common/vhdfmt/vhd_format.c"
#include "../../common/vhdfmt/aio.c"
#include "../../common/vhdfmt/aio_open.c"
#include "../../common/ioengine/callbacks.c"
#include "ioe-none.h"

#include <sys/mman.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[8 * 512];
	char path[64];
	const char *fields[1] = { path };
	struct dc_open_args a = {
		.struct_size = sizeof(a),
		.form = "vhd1",
		.fields = fields,
		.nfields = 1,
		.read_only = true,
	};
	struct dc_info info;
	void *inst = NULL;
	int fd = memfd_create("fuzz-vhd1", 0);

	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (vhd1_plugin.open(&a, &inst, &info) == 0) {
		struct iovec iov = { buf, sizeof(buf) };
		struct dc_req req = {
			.op = DC_OP_READ,
			.count = 8,
			.buf = { .iov = &iov, .iovcnt = 1, .len = sizeof(buf) },
		};

		for (uint64_t s = 0; s <= info.sector_count && s < 4096; s += 7) {
			req.sector = s;
			vhd1_plugin.io(inst, &req);
		}
		vhd1_plugin.close(inst);
	}
	close(fd);
	return 0;
}
