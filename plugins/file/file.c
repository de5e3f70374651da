/* SPDX-License-Identifier: MIT */
/* file: a raw image file or block device, its data I/O through the shared
 * file engine (common/ioengine: io_uring, one ring per queue, or blocking calls
 * on the worker pool where io_uring is unavailable; describe() says which).
 *
 * Differences from OpenVMM's FileDisk (docs/openvmm-compat.md §2.1): transfers go
 * straight into the request's buffers and loop until complete; a read that meets EOF
 * early (the file shrank) fails instead of returning zeroes; read-only is enforced here;
 * FUA uses RWF_DSYNC; unmap punches holes when the filesystem can. */
#include "ioengine/ioengine.h"

#include <diskcore/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#define FILE_PHYSICAL_SECTOR 4096

struct file_disk {
	int fd;
	char *path;
	uint64_t size;	/* bytes, at open */
	unsigned shift; /* log2 of the logical sector size */
	size_t align;	/* O_DIRECT buffer alignment (address and length) */
	uint32_t unmap; /* enum dc_unmap_behavior */
	bool direct;
	bool read_only;
	bool blockdev;
	bool created;
	struct ioe_file *io;
};

/* A request's scratch. */
struct file_rq {
	struct ioe_req io; /* first: the engine's done callback finds r */
	struct dc_req *req;
};

/* Fold an errno into a result. Errnos that share a value with a DC_E_* class
 * would be read as that class, so they become DC_E_IO with the errno as detail. */
static int file_errno(int err, int *detail)
{
	switch (err) {
	case EFAULT:
		return DC_E_MEMORY_ACCESS;
	case EROFS:
		return DC_E_READ_ONLY;
	case ERANGE:
	case EINVAL:
	case EIO:
	case EBADMSG:
	case EBADE:
	case ECANCELED:
	case ENOTTY:
	case EOPNOTSUPP:
		*detail = err;
		return DC_E_IO;
	default:
		*detail = err;
		return -err;
	}
}

/* What the engine's res means for a request of op. */
static int file_result(uint8_t op, int res, int *detail)
{
	*detail = 0;
	if (res == IOE_EOF) {
		/* EOF inside the disk: the file shrank under us. */
		*detail = op == IOE_WRITE ? ENOSPC : ENODATA;
		return DC_E_IO;
	}
	return res < 0 ? file_errno(-res, detail) : 0;
}

/* The engine finished r (any thread: only complete here). */
static void file_io_done(struct ioe_req *io, int res)
{
	struct file_rq *r = (struct file_rq *)io;
	int detail, result = file_result(io->op, res, &detail);

	dc_complete_detail(r->req, result, detail);
}

/* Byte range of [sector, sector + count) if it lies inside the disk. */
static bool file_range(const struct file_disk *f, uint64_t sector, uint64_t count,
		       uint64_t *off, uint64_t *len)
{
	/* The core keeps (sector + count) << shift <= INT64_MAX; check anyway so a
	 * shifted sector can never wrap to a small offset. */
	if (sector > (uint64_t)INT64_MAX >> f->shift ||
	    count > (uint64_t)INT64_MAX >> f->shift)
		return false;
	*off = sector << f->shift;
	*len = count << f->shift;
	return *off <= f->size && *len <= f->size - *off;
}

/* What preparing a request decided (else a result to complete with). */
enum { FILE_ENGINE = 1 };

static int file_rw(struct file_disk *f, struct file_rq *r)
{
	struct dc_req *req = r->req;
	bool write = req->op == DC_OP_WRITE;
	uint64_t off, len;

	if (write && f->read_only)
		return DC_E_READ_ONLY;
	if (req->buf.len & ((1u << f->shift) - 1))
		return DC_E_INVALID_INPUT;
	if (!file_range(f, req->sector, req->buf.len >> f->shift, &off, &len))
		return DC_E_ILLEGAL_BLOCK;
	if (len == 0)
		return 0;
	r->io.op = write ? IOE_WRITE : IOE_READ;
	r->io.fua = write && (req->flags & DC_IO_FUA);
	r->io.off = off;
	r->io.buf = req->buf;
	return FILE_ENGINE;
}

/* Unmap: a block device discards, a file has holes punched. */
static int file_unmap(struct file_disk *f, struct file_rq *r)
{
	struct dc_req *req = r->req;
	uint64_t off, len;

	if (f->read_only)
		return DC_E_READ_ONLY;
	if (!file_range(f, req->sector, req->count, &off, &len))
		return DC_E_ILLEGAL_BLOCK;
	if (len == 0 || f->unmap == DC_UNMAP_IGNORED)
		return 0;
	r->io.op = f->blockdev ? IOE_DISCARD : IOE_PUNCH;
	r->io.off = off;
	r->io.len = len;
	return FILE_ENGINE;
}

/* Check req and describe it to the engine: FILE_ENGINE, or a result. */
static int file_prepare(struct file_disk *f, struct file_rq *r, struct dc_req *req)
{
	r->req = req;
	r->io.done = file_io_done;
	switch (req->op) {
	case DC_OP_READ:
	case DC_OP_WRITE:
		return file_rw(f, r);
	case DC_OP_FLUSH:
		r->io.op = IOE_FLUSH;
		return FILE_ENGINE;
	case DC_OP_UNMAP:
		return file_unmap(f, r);
	default:
		return DC_E_UNSUPPORTED;
	}
}

static void file_submit(void *inst, struct dc_req *req)
{
	struct file_rq *r = req->ctx;
	int rc = file_prepare(inst, r, req);

	if (rc == FILE_ENGINE)
		ioe_submit(req->qctx, &r->io);
	else
		dc_complete(req, rc);
}

/* The same request, blocking on the calling thread. The core calls submit();
 * io() is the plugin's synchronous entry for a host that calls it directly. */
static int file_io(void *inst, struct dc_req *req)
{
	struct file_disk *f = inst;
	struct file_rq r = { 0 };
	int rc = file_prepare(f, &r, req);

	if (rc != FILE_ENGINE)
		return rc;
	return file_result(r.io.op, ioe_execute(f->io, &r.io), &req->detail);
}

static int file_queue_open(void *inst, void **qctx)
{
	return ioe_plugin_queue_open(((struct file_disk *)inst)->io, qctx);
}

/* Read a number from /sys/dev/block/MAJ:MIN/queue/NAME; 0 if unreadable. */
static uint64_t file_sysfs_queue(dev_t rdev, const char *name)
{
	char path[128];
	unsigned long long v = 0;
	FILE *fp;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/queue/%s", major(rdev),
		 minor(rdev), name);
	fp = fopen(path, "re");
	if (!fp)
		return 0;
	if (fscanf(fp, "%llu", &v) != 1)
		v = 0;
	fclose(fp);
	return v;
}

static int file_log2(uint64_t v)
{
	return v && !(v & (v - 1)) ? __builtin_ctzll(v) : -1;
}

/* Metadata of a block device: its own sizes, discard from sysfs (a probe would
 * have to discard something). */
static int file_probe_blockdev(struct file_disk *f, const struct stat *st,
			       struct dc_info *info)
{
	unsigned int pbsz = 0;
	int lbsz = 0, shift;
	uint64_t gran;

	if (ioctl(f->fd, BLKGETSIZE64, &f->size) < 0 ||
	    ioctl(f->fd, BLKSSZGET, &lbsz) < 0 || ioctl(f->fd, BLKPBSZGET, &pbsz) < 0) {
		int err = errno;

		dc_error("%s: block device size query failed: %s", f->path,
			 strerror(err));
		return -err;
	}
	shift = file_log2((uint64_t)lbsz);
	if (shift < 9) {
		dc_error("%s: logical block size %d is not a power of two >= 512",
			 f->path, lbsz);
		return -EINVAL;
	}
	f->shift = (unsigned)shift;
	f->align = (size_t)lbsz;
	info->physical_sector_size =
		pbsz > (unsigned)lbsz && file_log2(pbsz) > 0 ? pbsz : (uint32_t)lbsz;
	f->unmap = DC_UNMAP_IGNORED;
	if (!f->read_only && file_sysfs_queue(st->st_rdev, "discard_max_bytes")) {
		f->unmap = DC_UNMAP_UNSPECIFIED;
		gran = file_sysfs_queue(st->st_rdev, "discard_granularity") >> f->shift;
		info->optimal_unmap_sectors =
			gran && gran <= UINT32_MAX ? (uint32_t)gran : 1;
	}
	return 0;
}

static void file_probe_regular(struct file_disk *f, const struct stat *st,
			       struct dc_info *info)
{
	uint32_t gran = 0;

	f->size = (uint64_t)st->st_size;
	ioe_file_dio_align(f->fd, f->direct, &f->shift, &f->align);
	info->physical_sector_size = FILE_PHYSICAL_SECTOR > (1u << f->shift) ?
					     FILE_PHYSICAL_SECTOR :
					     1u << f->shift;
	f->unmap = DC_UNMAP_IGNORED;
	if (!f->read_only)
		gran = ioe_file_punch_granule(f->fd, f->size, (uint64_t)st->st_blksize,
					      f->shift);
	if (gran) {
		f->unmap = DC_UNMAP_ZEROES;
		info->optimal_unmap_sectors = gran;
	}
}

/* create=SIZE: SIZE bytes of zeroes in the empty file dc_create_open() made,
 * as OpenVMM's create_disk_type sizes it. */
static int file_create(struct file_disk *f, uint64_t size)
{
	if (ftruncate(f->fd, (off_t)size) < 0) {
		int err = errno;

		dc_error("%s: cannot set size to %llu bytes: %s", f->path,
			 (unsigned long long)size, strerror(err));
		return -err;
	}
	f->created = true;
	return 0;
}

static void file_close(void *inst)
{
	struct file_disk *f = inst;

	ioe_file_close(f->io);
	if (f->fd >= 0)
		close(f->fd);
	free(f->path);
	free(f);
}

static bool file_has_suffix(const char *path, const char *suffix)
{
	size_t a = strlen(path), b = strlen(suffix);

	return a >= b && strcasecmp(path + a - b, suffix) == 0;
}

/* The spec's path and options, before anything is opened. */
static int file_check_args(const struct dc_open_args *a, bool *want,
			   uint64_t *create_size)
{
	if (a->nfields < 1 || !a->fields[0][0])
		return dc_fail(-EINVAL, "missing path (expected file:PATH)");
	/* A CD/DVD image is read-only media (OpenVMM refuses it the same way;
	 * docs/spec-strings.md, "Format by extension"). */
	if (!a->read_only && file_has_suffix(a->fields[0], ".iso"))
		return dc_fail(-EROFS,
			       "%s: iso file cannot be opened as read/write: open it "
			       "read-only, or put a writable layer above it "
			       "(memdiff:%s)",
			       a->fields[0], a->fields[0]);
	*want = dc_opt_num(a, "create", create_size);
	if (*want && (*create_size == 0 || *create_size % 512 ||
		      *create_size > (uint64_t)INT64_MAX))
		return dc_fail(-EINVAL,
			       "%s: create=%llu: expected a size that is a non-zero "
			       "multiple of 512 bytes",
			       a->fields[0], (unsigned long long)*create_size);
	return 0;
}

/* What the file or device is: its size and sectors, unmap, and the engine
 * that will do its I/O (on this file's final alignment). */
static int file_probe(struct file_disk *f, struct dc_info *info)
{
	struct stat st;
	int ret;

	if (fstat(f->fd, &st) < 0)
		return dc_fail(-errno, "%s: stat failed: %s", f->path, strerror(errno));
	memset(info, 0, sizeof(*info));
	info->optimal_unmap_sectors = 1;
	if (S_ISBLK(st.st_mode)) {
		f->blockdev = true;
		ret = file_probe_blockdev(f, &st, info);
		if (ret)
			return ret;
	} else if (S_ISREG(st.st_mode)) {
		file_probe_regular(f, &st, info);
	} else {
		return dc_fail(-EINVAL, "%s: not a regular file or block device",
			       f->path);
	}
	return ioe_file_open(f->fd, f->direct, f->align, IOE_AUTO, &f->io);
}

static int file_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct file_disk *f;
	uint64_t create_size = 0;
	bool want, created;
	int ret;

	ret = file_check_args(a, &want, &create_size);
	if (ret)
		return ret;
	f = calloc(1, sizeof(*f));
	if (!f || !(f->path = strdup(a->fields[0]))) {
		free(f);
		dc_error("out of memory");
		return -ENOMEM;
	}
	f->direct = dc_opt_flag(a, "direct");
	f->read_only = a->read_only;
	f->fd = dc_create_open(
		a, f->path, (want ? O_CREAT : 0) | (f->direct ? O_DIRECT : 0), &created);
	if (f->fd < 0) {
		ret = f->fd;
		goto fail;
	}
	if (created) {
		ret = file_create(f, create_size);
		if (ret) {
			unlink(f->path);
			goto fail;
		}
	}
	ret = file_probe(f, info);
	if (ret)
		goto fail;
	if (want && !created && f->size != create_size) {
		dc_error("%s: exists with %llu bytes, not the %llu of create= (it was "
			 "opened, not replaced: add ;overwrite to replace it)",
			 f->path, (unsigned long long)f->size,
			 (unsigned long long)create_size);
		ret = -EEXIST;
		goto fail;
	}

	info->sector_count = f->size >> f->shift;
	info->sector_size = 1u << f->shift;
	info->unmap_behavior = f->unmap;
	info->flags = f->read_only ? DC_INFO_READ_ONLY : DC_INFO_FUA_RESPECTED;
	snprintf(info->disk_type, sizeof(info->disk_type), "file");
	*inst = f;
	return 0;
fail:
	file_close(f);
	return ret;
}

/* Allocation (ABI 1.1): a regular file's holes; a device is data. */
static int file_extents(void *inst, struct dc_node *node, uint64_t sector, uint64_t count,
			uint64_t *run)
{
	struct file_disk *f = inst;

	(void)node;
	return ioe_file_extents(f->fd, f->blockdev, f->shift, sector, count, run);
}

static void file_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct file_disk *f = inst;

	kv(arg, "path", f->path);
	dc_kv_bool(kv, arg, "direct", f->direct);
	kv(arg, "type", f->blockdev ? "block device" : "regular file");
	dc_kv_u64(kv, arg, "size", f->size);
	if (f->created)
		kv(arg, "created", "yes");
	kv(arg, "io", ioe_file_describe(f->io));
}

static const struct dc_option file_options[] = {
	DC_OPTION_FLAG("direct", "open with O_DIRECT (bypass the page cache)"),
	DC_OPTION_SIZE("create",
		       "create a missing file of SIZE bytes of zeroes (an existing one "
		       "opens unchanged)"),
	DC_OPTION_FLAG("overwrite", "with create=: replace an existing file"),
	DC_OPTIONS_END,
};

DC_PLUGIN(file_plugin) = {
	DC_ABOUT(DC_KIND_BACKEND, "file", "0.1.0",
		 "raw image file or block device (io_uring, else the worker pool)"),
	.usage = "file:PATH[;direct][;create=SIZE[;overwrite]]\n"
		 "  Sectors are 512 bytes (a block device's own logical size; with\n"
		 "  ;direct, at least the filesystem's O_DIRECT offset alignment).\n"
		 "  FUA writes use RWF_DSYNC; flush is fdatasync. Unmap punches holes\n"
		 "  (reads back zeroes) when the filesystem supports it, else it is\n"
		 "  ignored; on a block device it discards. create=SIZE makes a\n"
		 "  missing file; an existing one opens unchanged (;overwrite\n"
		 "  replaces it); a read-only open never creates one.\n"
		 "  I/O runs on io_uring (a ring per queue); where io_uring is\n"
		 "  unavailable, or DISKCORE_IO_ENGINE=pool, on the worker pool.",
	.forms = DC_FORMS(DC_FORM("file", 1, DC_CHILD_NONE,
				  "file:PATH[;direct][;create=SIZE[;overwrite]]",
				  "a raw image file or block device", file_options)),
	.ctx_size = sizeof(struct file_rq),
	.ops = DC_OPS_RW,
	DC_CALLBACKS(file, open, close, submit, io, describe, extents),
	IOE_PLUGIN_QUEUES(file),
};
