/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the qcow2 plugin's header, extension, snapshot, L1 and L2
 * parsing and its reads (plain, zero, compressed and subcluster mappings) on
 * an image made of the input, opened read-only; lower_spec() resolves the
 * backing file an input names. The plugin and the common/ code it links are
 * compiled in; core services come from libdiskcore. Seeds: tests/fuzz/corpus/
 * qcow2 (small images qemu-img made). */
#include "../../plugins/qcow2/backing.c"
#include "../../plugins/qcow2/below.c"
#include "../../plugins/qcow2/compress.c"
#include "../../plugins/qcow2/create.c"
#include "../../plugins/qcow2/header.c"
#include "../../plugins/qcow2/l2.c"
#include "../../plugins/qcow2/qcow2.c"
#include "../../plugins/qcow2/read.c"
#include "../../plugins/qcow2/refcount.c"
#include "../../plugins/qcow2/resize.c"
#include "../../plugins/qcow2/write.c"
#include "../../common/endian/layout.c"
#include "../../common/vhdfmt/vhdfmt.c"

#include <sys/mman.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[8 * 512];
	char path[64], spec[4096];
	const char *fields[1] = { path };
	struct dc_open_args a = {
		.struct_size = sizeof(a),
		.form = "qcow2",
		.fields = fields,
		.nfields = 1,
		.read_only = true,
	};
	struct dc_info info;
	void *inst = NULL;
	int fd = memfd_create("fuzz-qcow2", 0);

	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (qcow2_plugin.open(&a, &inst, &info) == 0) {
		uint64_t bits[1], step = info.sector_count / 512 + 1;
		struct iovec iov = { buf, sizeof(buf) };
		struct dc_marker m = { .bits = bits, .count = 8 };
		struct dc_req req = {
			.op = DC_OP_READ,
			.count = 8,
			.buf = { .iov = &iov, .iovcnt = 1, .len = sizeof(buf) },
			.marker = &m,
		};

		qcow2_plugin.lower_spec(inst, spec, sizeof(spec));
		for (uint64_t s = 0; s + 8 <= info.sector_count && s < (step << 9);
		     s += step) {
			bits[0] = 0;
			req.sector = m.sector = s;
			qcow2_plugin.io(inst, &req);
		}
		qcow2_plugin.close(inst);
	}
	close(fd);
	return 0;
}
