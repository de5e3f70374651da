/* SPDX-License-Identifier: MIT */
/* vhd1: a fixed VHD (raw data followed by a 512-byte footer), as OpenVMM's
 * Vhd1Disk (docs/openvmm-compat.md §2.2): the same validation order, the
 * disk id is the footer's unique id, and the footer lies past the disk's last
 * sector, so no request can read or overwrite it. Reads, writes and flushes go
 * to the file engine (common/ioengine: io_uring, one ring per queue, or
 * blocking calls on the worker pool where io_uring is unavailable; describe()
 * says which).
 *
 * Differences from OpenVMM, on purpose: short transfers are retried; writes to a
 * read-only open fail with "read only"; FUA writes use RWF_DSYNC, so FUA is
 * reported as respected; the image is locked (flock) as vhd: locks it; create=
 * never replaces an existing file (dc_create_open()). Unmap is a no-op
 * ("ignored"), as upstream. */
#include "ioengine/ioengine.h"
#include "vhdfmt/aio.h"
#include "vhdfmt/open.h"
#include "vhdfmt/vhd_format.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct vhd1_disk {
	struct vhdfmt_image img; /* first: the file, its engine, its opens (open.h) */
	uint64_t size;		 /* disk bytes: the footer's current size */
	uint8_t uid[16];
	bool read_only;
	bool created;
};

/* A request's scratch. */
struct vhd1_rq {
	struct ioe_req io; /* first: the engine's done callback finds r */
	struct dc_req *req;
};

/* Byte range of [sector, sector + count) when it lies inside the disk. */
static bool vhd1_range(const struct vhd1_disk *v, uint64_t sector, uint64_t count,
		       uint64_t *off, uint64_t *len)
{
	if (sector > (uint64_t)INT64_MAX >> 9 || count > (uint64_t)INT64_MAX >> 9)
		return false;
	*off = sector << 9;
	*len = count << 9;
	return *off <= v->size && *len <= v->size - *off;
}

/* What preparing a request decided (else a result to complete with). */
enum { VHD1_ENGINE = 1 };

/* Check req and describe it to the engine in io: VHD1_ENGINE, or a result.
 * The range check keeps the footer out of reach. */
static int vhd1_prepare(struct vhd1_disk *v, struct dc_req *req, struct ioe_req *io)
{
	bool write = req->op == DC_OP_WRITE;
	uint64_t off, len;

	switch (req->op) {
	case DC_OP_READ:
	case DC_OP_WRITE:
		if (write && v->read_only)
			return DC_E_READ_ONLY;
		if (req->buf.len % VHD_SECTOR)
			return DC_E_INVALID_INPUT;
		if (!vhd1_range(v, req->sector, req->buf.len / VHD_SECTOR, &off, &len))
			return DC_E_ILLEGAL_BLOCK;
		if (len == 0)
			return 0;
		io->op = write ? IOE_WRITE : IOE_READ;
		io->fua = write && (req->flags & DC_IO_FUA);
		io->off = off;
		io->buf = req->buf;
		return VHD1_ENGINE;
	case DC_OP_FLUSH:
		if (v->read_only)
			return 0;
		io->op = IOE_FLUSH;
		return VHD1_ENGINE;
	case DC_OP_UNMAP:
		if (v->read_only)
			return DC_E_READ_ONLY;
		if (!vhd1_range(v, req->sector, req->count, &off, &len))
			return DC_E_ILLEGAL_BLOCK;
		return 0;
	default:
		return DC_E_UNSUPPORTED;
	}
}

/* The engine finished r (any thread: only complete here). */
static void vhd1_io_done(struct ioe_req *io, int res)
{
	struct vhd1_rq *r = (struct vhd1_rq *)io;

	vhdfmt_complete(r->req, vhdfmt_engine_errno(res, io->op == IOE_WRITE));
}

static void vhd1_submit(void *inst, struct dc_req *req)
{
	struct vhd1_rq *r = req->ctx;
	int rc;

	r->req = req;
	r->io.done = vhd1_io_done;
	rc = vhd1_prepare(inst, req, &r->io);
	if (rc == VHD1_ENGINE)
		ioe_submit(req->qctx, &r->io);
	else
		dc_complete(req, rc);
}

/* The same request, blocking on the calling thread: for a host that calls
 * io() directly (the core calls submit()). */
static int vhd1_io(void *inst, struct dc_req *req)
{
	struct vhd1_disk *v = inst;
	struct ioe_req io = { 0 };
	int rc = vhd1_prepare(v, req, &io);

	if (rc != VHD1_ENGINE)
		return rc;
	if (io.op == IOE_FLUSH)
		return vhdfmt_result(req, fdatasync(v->img.fd) < 0 ? -errno : 0);
	return vhdfmt_result(req,
			     vhdfmt_xfer(v->img.fd, &io.buf, io.off, io.op == IOE_WRITE,
					 io.fua ? RWF_DSYNC : 0));
}

static int vhd1_queue_open(void *inst, void **qctx)
{
	return ioe_plugin_queue_open(((struct vhd1_disk *)inst)->img.ioe, qctx);
}

/* create=SIZE: SIZE bytes of zeroes with a new fixed footer appended (OpenVMM's
 * create_disk_type + make_fixed), into the empty file dc_create_open() made. */
static int vhd1_create(void *inst, void *opts)
{
	uint64_t size = *(const uint64_t *)opts;
	struct vhd1_disk *v = inst;
	int ret = vhdfmt_write_fixed(v->img.fd, size);

	if (ret < 0) {
		dc_error("%s: cannot write a %llu-byte fixed VHD: %s", v->img.path,
			 (unsigned long long)size, strerror(-ret));
		return ret;
	}
	v->created = true;
	return 0;
}

/* The checks of OpenVMM's open_fixed, in its order. */
static int vhd1_validate(struct vhd1_disk *v, uint64_t file_len)
{
	uint8_t buf[VHD_FOOTER_SIZE];
	struct vhd_footer f;
	int ret;

	if (file_len < VHD_FOOTER_SIZE || file_len % VHD_SECTOR) {
		dc_error("%s: invalid file size %llu: a fixed VHD is a multiple of 512 "
			 "bytes and at least its 512-byte footer",
			 v->img.path, (unsigned long long)file_len);
		return -EINVAL;
	}
	ret = vhdfmt_pread(v->img.fd, buf, sizeof(buf), file_len - VHD_FOOTER_SIZE);
	if (ret < 0) {
		dc_error("%s: cannot read the footer: %s", v->img.path, strerror(-ret));
		return ret;
	}
	switch (vhdfmt_footer_decode(buf, &f)) {
	case VHDFMT_OK:
		break;
	case VHDFMT_BAD_COOKIE:
		dc_error("%s: invalid footer cookie: the last 512 bytes do not start "
			 "with \"conectix\" (not a fixed VHD)",
			 v->img.path);
		return -EINVAL;
	case VHDFMT_BAD_CHECKSUM:
		dc_error("%s: invalid footer checksum 0x%08x, expected 0x%08x",
			 v->img.path, f.checksum,
			 vhdfmt_checksum(buf, sizeof(buf), VHD_FOOTER_CHECKSUM_OFF));
		return -EINVAL;
	case VHDFMT_BAD_VERSION:
		dc_error("%s: unsupported file format version 0x%08x, expected "
			 "0x00010000",
			 v->img.path, f.version);
		return -EINVAL;
	}
	if (f.disk_type != VHD_TYPE_FIXED) {
		dc_error(
			"%s: not a fixed VHD (disk type %u%s); vhd1 opens fixed VHDs only, "
			"use vhd:PATH for dynamic and differencing ones",
			v->img.path, f.disk_type,
			f.disk_type == VHD_TYPE_DYNAMIC ? ", dynamic" :
			f.disk_type == VHD_TYPE_DIFF	? ", differencing" :
							  "");
		return -EINVAL;
	}
	if (f.current_size > file_len - VHD_FOOTER_SIZE || f.current_size % VHD_SECTOR) {
		dc_error(
			"%s: invalid disk size %llu: expected a multiple of 512 of at most "
			"%llu (the file without its footer)",
			v->img.path, (unsigned long long)f.current_size,
			(unsigned long long)(file_len - VHD_FOOTER_SIZE));
		return -EINVAL;
	}
	v->size = f.current_size;
	memcpy(v->uid, f.unique_id, sizeof(v->uid));
	return 0;
}

static void vhd1_free(void *inst)
{
	struct vhd1_disk *v = inst;

	vhdfmt_engine_close(&v->img.aio_fd, &v->img.ioe);
	if (v->img.fd >= 0)
		close(v->img.fd);
	free(v->img.path);
	free(v);
}

/* The last close of an image this process has open closes it. */
static void vhd1_close(void *inst)
{
	vhdfmt_share_close_inst(inst, vhd1_free);
}

static void vhd1_fill_info(void *inst, struct dc_info *info)
{
	struct vhd1_disk *v = inst;

	memset(info, 0, sizeof(*info));
	info->sector_count = v->size / VHD_SECTOR;
	info->sector_size = VHD_SECTOR;
	info->physical_sector_size = VHD_SECTOR;
	info->optimal_unmap_sectors = 1;
	info->unmap_behavior = DC_UNMAP_IGNORED;
	info->flags = DC_INFO_HAS_DISK_ID |
		      (v->read_only ? DC_INFO_READ_ONLY : DC_INFO_FUA_RESPECTED);
	memcpy(info->disk_id, v->uid, sizeof(info->disk_id));
	snprintf(info->disk_type, sizeof(info->disk_type), "vhd1");
	v->img.info = *info;
}

static const struct dc_option vhd1_options[] = {
	DC_OPTION_SIZE("create", "create a missing file as a fixed VHD of SIZE bytes of "
				 "zeroes (an existing one opens unchanged)"),
	DC_OPTION_FLAG("overwrite", "with create=: replace an existing file"),
	DC_OPTIONS_END,
};

/* create=SIZE, if given: a non-zero multiple of 512. */
static int vhd1_create_opt(const struct dc_open_args *a, uint64_t *size, bool *want)
{
	*want = dc_opt_num(a, "create", size);
	if (*want && (*size == 0 || *size % VHD_SECTOR ||
		      *size > (uint64_t)INT64_MAX - VHD_SECTOR)) {
		dc_error("%s: create=%llu: expected a size that is a non-zero multiple "
			 "of 512 bytes",
			 a->fields[0], (unsigned long long)*size);
		return -EINVAL;
	}
	return 0;
}

static void vhd1_init(void *inst, bool read_only)
{
	((struct vhd1_disk *)inst)->read_only = read_only;
}

/* create= (opts: its size). No parent: vhdfmt_open() guards nothing. */
static int vhd1_open_opts(void *inst, const struct dc_open_args *a, void *opts,
			  struct vhdfmt_want *w)
{
	(void)inst;
	*(uint64_t *)opts = 0;
	return vhd1_create_opt(a, opts, &w->create);
}

static int vhd1_check_existing(void *inst, const void *opts)
{
	struct vhd1_disk *v = inst;

	return vhdfmt_check_existing(v->img.path, *(const uint64_t *)opts, v->size, NULL,
				     NULL);
}

static int vhd1_load(void *inst, const void *opts, bool created)
{
	struct vhd1_disk *v = inst;
	struct stat st;

	(void)opts;
	(void)created;
	if (fstat(v->img.fd, &st) < 0) {
		int err = errno;

		dc_error("%s: stat failed: %s", v->img.path, strerror(err));
		return -err;
	}
	if (!S_ISREG(st.st_mode)) {
		dc_error("%s: not a regular file", v->img.path);
		return -EINVAL;
	}
	return vhd1_validate(v, (uint64_t)st.st_size);
}

/* open(): the steps of common/vhdfmt/open.h, with vhd:'s lock: a fixed VHD opens
 * through vhd1: or vhd:, and two writers must exclude each other whichever
 * plugin each uses; an image this plugin has open already is that instance. */
VHDFMT_OPEN(vhd1, struct vhd1_disk, uint64_t, .parent_of = NULL);

static void vhd1_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct vhd1_disk *v = inst;
	char id[37];

	kv(arg, "path", v->img.path);
	kv(arg, "format", "fixed VHD");
	dc_kv_u64(kv, arg, "virtual size", v->size);
	vhdfmt_uid_str(v->uid, id);
	kv(arg, "unique id", id);
	if (v->created)
		dc_kv_bool(kv, arg, "created", true);
	kv(arg, "io", ioe_file_describe(v->img.ioe));
}

/* check(): the footer read again from the file's end, as open checked it. */
static int vhd1_check(void *inst, dc_check_report_fn rep, void *arg)
{
	struct vhd1_disk *v = inst;
	uint8_t buf[VHD_FOOTER_SIZE];
	struct vhd_footer f;
	struct stat st;
	uint64_t len;
	int ret;

	if (fstat(v->img.fd, &st) < 0)
		return dc_fail(-errno, "%s: %s", v->img.path, strerror(errno));
	len = (uint64_t)st.st_size;
	if (len < VHD_FOOTER_SIZE + v->size) {
		dc_check_printf(rep, arg, DC_CHECK_CORRUPT,
				"the file (%llu bytes) is shorter than the disk and its "
				"footer",
				(unsigned long long)len);
		return 0;
	}
	ret = vhdfmt_pread(v->img.fd, buf, sizeof(buf), len - VHD_FOOTER_SIZE);
	if (ret < 0)
		return dc_fail(ret, "%s: cannot read the footer: %s", v->img.path,
			       strerror(-ret));
	if (vhdfmt_footer_decode(buf, &f) != VHDFMT_OK || f.disk_type != VHD_TYPE_FIXED ||
	    f.current_size != v->size)
		dc_check_printf(
			rep, arg, DC_CHECK_CORRUPT,
			"the last 512 bytes are no longer a valid fixed VHD footer "
			"for a disk of %llu bytes",
			(unsigned long long)v->size);
	else if (len - VHD_FOOTER_SIZE > v->size)
		dc_check_printf(rep, arg, DC_CHECK_NOTE,
				"%llu bytes between the disk's end and the footer are "
				"unused",
				(unsigned long long)(len - VHD_FOOTER_SIZE - v->size));
	return 0;
}

DC_PLUGIN(vhd1_plugin) = {
	DC_ABOUT(DC_KIND_BACKEND, "vhd1", "0.1.0",
		 "fixed VHD image (OpenVMM's Vhd1Disk)"),
	.usage = "vhd1:PATH[;create=SIZE[;overwrite]]\n"
		 "  A fixed VHD: the footer is checked (cookie, checksum, version,\n"
		 "  type fixed, size) and is never readable or writable through the\n"
		 "  disk. The disk id is the footer's unique id. create=SIZE makes a\n"
		 "  missing file SIZE bytes of zeroes and a footer with a random unique\n"
		 "  id; an existing one opens unchanged (;overwrite replaces it).\n"
		 "  The image is locked (flock) while open, as vhd: locks it.\n"
		 "  Sectors are 512 bytes; unmap is ignored; FUA uses RWF_DSYNC.\n"
		 "  I/O runs on io_uring (a ring per queue); where io_uring is\n"
		 "  unavailable, or DISKCORE_IO_ENGINE=pool, on the worker pool.",
	.forms = DC_FORMS(DC_FORM("vhd1", 1, DC_CHILD_NONE,
				  "vhd1:PATH[;create=SIZE[;overwrite]]",
				  "a fixed VHD (raw data and a 512-byte footer)",
				  vhd1_options)),
	.ctx_size = sizeof(struct vhd1_rq),
	.ops = DC_OPS_RW,
	DC_CALLBACKS(vhd1, open, close, submit, io, describe, check),
	IOE_PLUGIN_QUEUES(vhd1),
};
