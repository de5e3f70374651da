/* SPDX-License-Identifier: MIT */
/* blockdev: opening a block device or file (probing sizes, discard, FUA and
 * persistent reservations; checking io_uring) and the plugin descriptor.
 * blockdev.h describes the design. */
#include "blockdev.h"

#include "endian/byteorder.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/nvme_ioctl.h>
#include <linux/pr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* --- Opening ---------------------------------------------------------------------- */

/* A number from /sys/dev/block/MAJ:MIN/NAME, or from the whole disk's
 * directory for a partition. */
static bool bdev_sysfs(const struct bdev *b, const char *name, uint64_t *out)
{
	static const char *const fmt[] = { "/sys/dev/block/%u:%u/%s",
					   "/sys/dev/block/%u:%u/../%s" };
	unsigned long long v;

	for (size_t i = 0; i < 2; i++) {
		char path[160];
		FILE *f;
		int ok;

		snprintf(path, sizeof(path), fmt[i], major(b->rdev), minor(b->rdev),
			 name);
		f = fopen(path, "re");
		if (!f)
			continue;
		ok = fscanf(f, "%llu", &v) == 1;
		fclose(f);
		if (ok) {
			*out = v;
			return true;
		}
	}
	return false;
}

static bool bdev_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static int bdev_nvme_identify(int fd, uint32_t nsid, uint32_t cns, void *buf)
{
	struct nvme_admin_cmd c = {
		.opcode = 0x06, /* Identify */
		.nsid = nsid,
		.addr = (uintptr_t)buf,
		.data_len = 4096,
		.cdw10 = cns,
	};

	return ioctl(fd, NVME_IOCTL_ADMIN_CMD, &c);
}

/* Which PR passthrough the device takes. NVMe namespaces say so in Identify
 * (reservations in ONCS, types in RESCAP); other devices are asked with a
 * register of key 0 to key 0, which changes nothing where it is understood
 * and fails with EOPNOTSUPP where the driver has no PR operations (loop). */
static void bdev_probe_pr(struct bdev *b)
{
	char path[96];
	uint64_t nsid;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/dm", major(b->rdev),
		 minor(b->rdev));
	if (access(path, F_OK) == 0)
		return; /* device-mapper: whatever is below decides, not us */
	if (bdev_sysfs(b, "nsid", &nsid)) {
		uint8_t *buf = aligned_alloc(4096, 4096);

		b->nvme = true;
		b->nsid = (uint32_t)nsid;
		if (!buf)
			return;
		if (bdev_nvme_identify(b->fd, b->nsid, 0, buf) == 0) {
			b->rescap = buf[153];
			if (bdev_nvme_identify(b->fd, 0, 1, buf) == 0 &&
			    (get_le16(buf + 520) & (1u << 5)))
				b->pr = b->rescap != 0;
		}
		free(buf);
	} else if (!b->read_only) {
		struct pr_registration reg = { 0 };
		int rc = ioctl(b->fd, IOC_PR_REGISTER, &reg);

		b->pr = rc == 0 || rc == BDEV_PR_CONFLICT_SAM;
		if (rc < 0)
			dc_debug("blockdev: %s: no PR passthrough (%s)", b->path,
				 strerror(errno));
	}
}

static int bdev_probe_blk(struct bdev *b, const struct stat *st, struct dc_info *info)
{
	uint64_t lbs = 0, pbs = 0, gran = 0, max = 0, fua = 0, removable = 0, bytes;
	int ilbs = 0;
	unsigned ipbs = 0;

	b->blk = true;
	b->rdev = st->st_rdev;
	if (!bdev_sysfs(b, "queue/logical_block_size", &lbs) &&
	    ioctl(b->fd, BLKSSZGET, &ilbs) == 0)
		lbs = (uint64_t)ilbs;
	if (!bdev_sysfs(b, "queue/physical_block_size", &pbs) &&
	    ioctl(b->fd, BLKPBSZGET, &ipbs) == 0)
		pbs = ipbs;
	if (ioctl(b->fd, BLKGETSIZE64, &bytes) < 0) {
		int err = errno;

		dc_error("%s: BLKGETSIZE64: %s", b->path, strerror(err));
		return -err;
	}
	if (bdev_sysfs(b, "queue/discard_max_bytes", &max) && max)
		bdev_sysfs(b, "queue/discard_granularity", &gran);
	bdev_sysfs(b, "queue/fua", &fua);
	if (lbs < 512 || lbs > (1u << 16) || !bdev_pow2(lbs))
		return dc_fail(-EINVAL,
			       "%s: logical block size %llu is not a power of two >= 512",
			       b->path, (unsigned long long)lbs);
	if (pbs && !bdev_pow2(pbs))
		return dc_fail(-EINVAL,
			       "%s: physical block size %llu is not a power of two",
			       b->path, (unsigned long long)pbs);
	if (bytes % lbs || gran % lbs)
		return dc_fail(
			-EINVAL,
			"%s: size %llu or discard granularity %llu is not a multiple of "
			"the %llu-byte logical block",
			b->path, (unsigned long long)bytes, (unsigned long long)gran,
			(unsigned long long)lbs);
	b->shift = (unsigned)__builtin_ctzll(lbs);
	b->align = (size_t)lbs;
	atomic_store(&b->sectors, bytes >> b->shift);
	b->gran = (uint32_t)((gran >> b->shift) < UINT32_MAX ? gran >> b->shift :
							       UINT32_MAX);
	info->physical_sector_size = (uint32_t)(pbs > lbs ? pbs : lbs);
	info->unmap_behavior = b->gran ? DC_UNMAP_UNSPECIFIED : DC_UNMAP_IGNORED;
	if (fua)
		info->flags |= DC_INFO_FUA_RESPECTED;
	bdev_probe_pr(b);
	if (b->pr)
		info->flags |= DC_INFO_PR;
	if (bdev_sysfs(b, "removable", &removable) && removable)
		info->flags |= DC_INFO_EJECT;
	return 0;
}

static int bdev_probe_file(struct bdev *b, const struct stat *st, struct dc_info *info)
{
	uint64_t bytes = (uint64_t)st->st_size;

	ioe_file_dio_align(b->fd, b->direct, &b->shift, &b->align);
	if (bytes & ((1u << b->shift) - 1))
		return dc_fail(-EINVAL,
			       "%s: size %llu is not a multiple of the %u-byte sector",
			       b->path, (unsigned long long)bytes, 1u << b->shift);
	atomic_store(&b->sectors, bytes >> b->shift);
	info->physical_sector_size = bdev_pow2((uint64_t)st->st_blksize) &&
						     (uint32_t)st->st_blksize >
							     (1u << b->shift) ?
					     (uint32_t)st->st_blksize :
					     1u << b->shift;
	if (!b->read_only)
		b->gran = ioe_file_punch_granule(b->fd, bytes, (uint64_t)st->st_blksize,
						 b->shift);
	info->unmap_behavior = b->gran ? DC_UNMAP_ZEROES : DC_UNMAP_IGNORED;
	return 0;
}

static void bdev_close(void *inst)
{
	struct bdev *b = inst;

	bdev_unwatch(b);
	ioe_file_close(b->io);
	if (b->fd >= 0)
		close(b->fd);
	free(b->path);
	free(b);
}

static const struct dc_option bdev_options[] = {
	DC_OPTION_FLAG("direct", "open with O_DIRECT (bypass the page cache)"),
	DC_OPTIONS_END,
};

static int bdev_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct bdev *b;
	struct stat st;
	int rc;

	if (a->nfields < 1 || !a->fields[0][0])
		return dc_fail(-EINVAL, "missing path (expected blockdev:PATH)");
	b = calloc(1, sizeof(*b));
	if (!b || !(b->path = strdup(a->fields[0]))) {
		free(b);
		return dc_fail(-ENOMEM, "out of memory");
	}
	b->node = a->node;
	b->direct = dc_opt_flag(a, "direct");
	b->read_only = a->read_only;
	b->fd = open(b->path, (b->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC |
				      (b->direct ? O_DIRECT : 0));
	if (b->fd < 0) {
		rc = -errno;
		if (errno == EINVAL && b->direct)
			dc_error("%s: the filesystem does not support O_DIRECT (;direct)",
				 b->path);
		else
			dc_error("%s: cannot open %s: %s", b->path,
				 b->read_only ? "read-only" : "read-write",
				 strerror(errno));
		goto fail;
	}
	if (fstat(b->fd, &st) < 0) {
		rc = -errno;
		dc_error("%s: stat failed: %s", b->path, strerror(errno));
		goto fail;
	}
	if (!S_ISBLK(st.st_mode) && !S_ISREG(st.st_mode)) {
		dc_error("%s: not a block device or regular file", b->path);
		rc = -EINVAL;
		goto fail;
	}
	memset(info, 0, sizeof(*info));
	rc = S_ISBLK(st.st_mode) ? bdev_probe_blk(b, &st, info) :
				   bdev_probe_file(b, &st, info);
	if (rc < 0)
		goto fail;
	/* io_uring or nothing: blockdev does not fall back to the pool. */
	rc = ioe_file_open(b->fd, b->direct, b->align, IOE_URING, &b->io);
	if (rc < 0)
		goto fail;
	if (b->blk)
		bdev_watch(b);
	info->sector_count = atomic_load(&b->sectors);
	info->sector_size = 1u << b->shift;
	info->optimal_unmap_sectors = b->gran ? b->gran : 1;
	if (b->read_only)
		info->flags |= DC_INFO_READ_ONLY;
	snprintf(info->disk_type, sizeof(info->disk_type), "block_device");
	*inst = b;
	return 0;
fail:
	bdev_close(b);
	return rc;
}

/* Allocation (ABI 1.1): a regular file's holes; a device is data. */
static int bdev_extents(void *inst, struct dc_node *node, uint64_t sector, uint64_t count,
			uint64_t *run)
{
	struct bdev *b = inst;

	(void)node;
	return ioe_file_extents(b->fd, b->blk, b->shift, sector, count, run);
}

static void bdev_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct bdev *b = inst;

	kv(arg, "path", b->path);
	kv(arg, "type", b->blk ? "block device" : "regular file");
	dc_kv_bool(kv, arg, "direct", b->direct);
	if (b->blk) {
		dc_kv_printf(kv, arg, "device", "%u:%u", major(b->rdev), minor(b->rdev));
		kv(arg, "resize", b->watched ? "kernel uevents" : "not watched");
		kv(arg, "pr",
		   !b->pr  ? "no" :
		   b->nvme ? "nvme passthrough" :
			     "passthrough");
	}
	kv(arg, "io", ioe_file_describe(b->io));
}

DC_PLUGIN(bdev_plugin) = {
	DC_ABOUT(DC_KIND_BACKEND, "blockdev", "0.1.0",
		 "Linux block device or file through io_uring (resize, unmap, PR)"),
	.usage = "blockdev:PATH[;direct]\n"
		 "  Devices: sector sizes, FUA and discard granularity from sysfs; the\n"
		 "  size follows online resizes (kernel uevents); unmap discards\n"
		 "  (contents unspecified); persistent reservations pass through where\n"
		 "  the driver has them (NVMe, SCSI). Files: 512-byte sectors (with\n"
		 "  ;direct, the filesystem's O_DIRECT alignment), fixed size, unmap\n"
		 "  punches holes (reads back zeroes) when the filesystem can.\n"
		 "  One io_uring per queue; FUA writes use RWF_DSYNC; flush is fdatasync.\n"
		 "  Needs io_uring (Linux 5.6+, kernel.io_uring_disabled=0).",
	.forms = DC_FORMS(DC_FORM("blockdev", 1, DC_CHILD_NONE, "blockdev:PATH[;direct]",
				  "a Linux block device or regular file through io_uring",
				  bdev_options)),
	.ctx_size = sizeof(struct bdev_rq),
	.ops = DC_OPS_RW | DC_OP_BIT(DC_OP_EJECT) | DC_OPS_PR,
	DC_CALLBACKS(bdev, open, close, submit, sector_count, describe, extents),
	IOE_PLUGIN_QUEUES(bdev),
};
