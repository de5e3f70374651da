/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the qcow2 plugin's header, extension, snapshot, L1 and L2
 * parsing and its reads (plain, zero, compressed and subcluster mappings) on
 * an image made of the input, opened read-only; lower_spec() resolves the
 * backing file an input names; check() walks its L1/L2 and refcount tables.
 * Then the same image opened writable: writes, an unmap and a flush reach
 * allocation and the refcount code. The plugin and the common/ code it links
 * are compiled in; core services come from libdiskcore. Seeds:
 * tests/fuzz/corpus/qcow2 (small images qemu-img made; the two ending in
 * -bomb name a compressed cluster that inflates past its cluster). */
#include "../../plugins/qcow2/aio.c"
#include "../../plugins/qcow2/backing.c"
#include "../../plugins/qcow2/below.c"
#include "../../plugins/qcow2/check.c"
#include "../../plugins/qcow2/compress.c"
#include "../../plugins/qcow2/create.c"
#include "../../plugins/qcow2/header.c"
#include "../../plugins/qcow2/image.c"
#include "../../plugins/qcow2/infl.c"
#include "../../plugins/qcow2/l2.c"
#include "../../plugins/qcow2/meta.c"
#include "../../plugins/qcow2/qcow2.c"
#include "../../plugins/qcow2/read.c"
#include "../../plugins/qcow2/refcount.c"
#include "../../plugins/qcow2/repair.c"
#include "../../plugins/qcow2/resize.c"
#include "../../plugins/qcow2/write.c"
#include "../../common/endian/layout.c"
#include "../../common/parentpath/parentpath.c"
#include "../../common/vhdfmt/share.c"
#include "../../common/vhdfmt/vhdfmt.c"
#include "../../common/ioengine/callbacks.c"
#include "ioe-none.h"

#include <sys/mman.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The same image opened writable: partial and whole-cluster writes at the
 * start, middle and end (allocation, refcounts, copy-on-write), an unmap and
 * a flush, over whatever tables the input holds. */
static void fuzz_write(struct dc_open_args *a)
{
	static uint8_t buf[8 * 512];
	struct iovec iov = { buf, sizeof(buf) };
	struct dc_req req = { .buf = { .iov = &iov, .iovcnt = 1 } };
	struct dc_info info;
	void *inst = NULL;
	uint64_t at[4];

	a->read_only = false;
	if (qcow2_plugin.open(a, &inst, &info) != 0)
		return;
	at[0] = 0;
	at[1] = 3;
	at[2] = info.sector_count / 2;
	at[3] = info.sector_count > 8 ? info.sector_count - 8 : 0;
	memset(buf, 0x5a, sizeof(buf));
	for (unsigned i = 0; i < 4 && info.sector_count >= 8; i++) {
		req.op = DC_OP_WRITE;
		req.sector = at[i];
		req.count = i == 1 ? 1 : 8;
		req.buf.len = req.count * 512;
		qcow2_plugin.io(inst, &req);
	}
	req.op = DC_OP_UNMAP;
	req.sector = 0;
	req.count = info.sector_count;
	qcow2_plugin.io(inst, &req);
	req.op = DC_OP_FLUSH;
	qcow2_plugin.io(inst, &req);
	qcow2_plugin.close(inst);
}
static void fuzz_report(void *arg, uint32_t kind, const char *message)
{
	(void)arg;
	(void)kind;
	(void)message;
}

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
		qcow2_plugin.check(inst, fuzz_report, NULL);
		for (uint64_t s = 0; s + 8 <= info.sector_count && s < (step << 9);
		     s += step) {
			bits[0] = 0;
			req.sector = m.sector = s;
			qcow2_plugin.io(inst, &req);
		}
		qcow2_plugin.close(inst);
		fuzz_write(&a);
	}
	close(fd);
	return 0;
}
