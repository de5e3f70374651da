/* SPDX-License-Identifier: MIT */
/* New qcow2 images (create=SIZE, parent=PATH, cluster=SIZE): version 3,
 * 16-bit refcounts, laid out as QEMU lays a new image out: the header
 * cluster (the backing format extension and the backing file name in it),
 * the refcount table, the refcount blocks counting every metadata cluster,
 * then an empty L1 table. Written whole, then synced, before the open that
 * made the file goes on to read it. */
#include "qcow2.h"

#include "endian/byteorder.h"
#include "vhdfmt/vhdfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QCOW2_DEFAULT_CLUSTER (64u << 10)
#define QCOW2_NEW_HDR_LEN 112u
#define QCOW2_EXT_BACKING_FMT 0xe2792acau

struct qcow2_new {
	uint64_t size;
	uint32_t cbits;
	const char *fmt; /* the backing file's format name, or NULL */
	char *backing;	 /* its name as stored: relative to the image, or absolute */
};

/* The backing file's format (by its magic) and size, through the layer
 * diskcore would open it as. */
static int qcow2_probe_parent(const char *real, struct qcow2_new *n)
{
	static const char *const qemu_name[][2] = { { "qcow2", "qcow2" },
						    { "file", "raw" },
						    { "vhd", "vpc" },
						    { "vhdx", "vhdx" } };
	const char *form = "file";
	uint8_t head[8] = { 0 };
	char spec[PATH_MAX + 32];
	dc_disk *d;
	int fd = open(real, O_RDONLY | O_CLOEXEC), ret;

	if (fd < 0)
		return dc_fail(-errno, "parent %s: %s", real, strerror(errno));
	ret = pread(fd, head, sizeof(head), 0) < 0 ? -errno : 0;
	close(fd);
	if (ret)
		return dc_fail(ret, "parent %s: %s", real, strerror(-ret));
	if (get_be32(head) == QCOW2_MAGIC)
		form = "qcow2";
	else if (!memcmp(head, "vhdxfile", 8))
		form = "vhdx";
	else if (!memcmp(head, "conectix", 8))
		form = "vhd";
	for (size_t i = 0; i < sizeof(qemu_name) / sizeof(qemu_name[0]); i++)
		if (!strcmp(form, qemu_name[i][0]))
			n->fmt = qemu_name[i][1];
	snprintf(spec, sizeof(spec), "%s:%s%s", form, real,
		 strcmp(form, "qcow2") ? "" : ";parents=any");
	ret = dc_open(spec, DC_OPEN_READ_ONLY, &d);
	if (ret < 0)
		return dc_fail(-EINVAL, "parent %s does not open as %s: %s", real, form,
			       dc_last_error());
	n->size = dc_sector_count(d) * dc_sector_size(d);
	dc_close(d);
	return 0;
}

/* The backing file as the image will name it: relative when it lies in the
 * image's directory (so the pair can move together), else absolute. */
static int qcow2_new_parent(const char *path, const char *parent, struct qcow2_new *n)
{
	char *real = realpath(parent, NULL), *dir = vhdfmt_dirname(path);
	size_t dl = dir ? strlen(dir) : 0;
	int ret;

	if (!real || !dir) {
		ret = dc_fail(-ENOENT, "parent %s: %s", parent,
			      real ? "out of memory" : strerror(errno));
		goto out;
	}
	ret = qcow2_probe_parent(real, n);
	if (ret)
		goto out;
	n->backing =
		strdup(!strncmp(real, dir, dl) && real[dl] == '/' ? real + dl + 1 : real);
	if (!n->backing)
		ret = dc_fail(-ENOMEM, "out of memory");
	else if (strlen(n->backing) > QCOW2_MAX_BACKING_NAME)
		ret = dc_fail(-ENAMETOOLONG, "parent %s: the name is too long", real);
out:
	free(real);
	free(dir);
	return ret;
}

/* The header cluster: header, extensions, backing file name. */
static size_t qcow2_new_header(uint8_t *c, const struct qcow2_new *n, uint64_t rct_off,
			       uint32_t rct_n, uint64_t l1_off, uint32_t l1_n)
{
	struct qcow2_hdr h = {
		.magic = QCOW2_MAGIC,
		.version = 3,
		.cluster_bits = n->cbits,
		.size = n->size,
		.l1_size = l1_n,
		.l1_off = l1_off,
		.refcount_off = rct_off,
		.refcount_clusters = rct_n,
		.refcount_order = 4,
		.header_len = QCOW2_NEW_HDR_LEN,
	};
	size_t at = QCOW2_NEW_HDR_LEN;

	if (n->backing) {
		size_t fl = strlen(n->fmt);

		put_be32(c + at, QCOW2_EXT_BACKING_FMT);
		put_be32(c + at + 4, (uint32_t)fl);
		memcpy(c + at + 8, n->fmt, fl);
		at += 8 + ((fl + 7) & ~(size_t)7);
	}
	at += 8; /* the end extension: type 0, length 0 */
	if (n->backing) {
		h.backing_off = at;
		h.backing_len = (uint32_t)strlen(n->backing);
		memcpy(c + at, n->backing, h.backing_len);
		at += h.backing_len;
	}
	qcow2_encode_hdr(c, &h);
	return at;
}

static int qcow2_write_new(const char *path, int fd, const struct qcow2_new *n)
{
	uint64_t cs = 1ull << n->cbits, per_l1 = (cs / 8) * cs;
	uint64_t l1_n = (n->size + per_l1 - 1) / per_l1, l = (l1_n * 8 + cs - 1) / cs;
	uint64_t t = 1, b = 1, m;
	uint8_t *img;
	int ret;

	if (!l)
		l = 1;
	/* Enough refcount blocks for every metadata cluster, enough table for
	 * the blocks. */
	for (;;) {
		uint64_t nb, nt;

		m = 1 + t + b + l;
		nb = (m + cs / 2 - 1) / (cs / 2);
		nt = (nb * 8 + cs - 1) / cs;
		if (nb == b && nt == t)
			break;
		b = nb;
		t = nt;
	}
	if (l1_n * 8 > QCOW2_MAX_L1_BYTES)
		return dc_fail(-EFBIG,
			       "%s: %llu bytes is too large for %llu-byte clusters", path,
			       (unsigned long long)n->size, (unsigned long long)cs);
	img = calloc(m, cs);
	if (!img)
		return dc_fail(-ENOMEM, "out of memory");
	qcow2_new_header(img, n, cs, (uint32_t)t, (1 + t + b) * cs, (uint32_t)l1_n);
	for (uint64_t i = 0; i < b; i++)
		put_be64(img + cs + 8 * i, (1 + t + i) * cs);
	for (uint64_t i = 0; i < m; i++)
		put_be16(img + (1 + t) * cs + 2 * i, 1);
	ret = vhdfmt_pwrite(fd, img, m * cs, 0);
	if (ret == 0 && fdatasync(fd) < 0)
		ret = -errno;
	free(img);
	return ret ? dc_fail(ret, "%s: cannot write the new image: %s", path,
			     strerror(-ret)) :
		     0;
}

int qcow2_create(const struct dc_open_args *a, const char *path, int fd)
{
	const char *parent = dc_opt_str(a, "parent");
	struct qcow2_new n = { .cbits = 16 };
	uint64_t cs = QCOW2_DEFAULT_CLUSTER, size = 0;
	bool sized = dc_opt_num(a, "create", &size);
	int ret = 0;

	if (dc_opt_num(a, "cluster", &cs) &&
	    (cs < 512 || cs > (2u << 20) || (cs & (cs - 1))))
		return dc_fail(-EINVAL, "cluster=%llu: a power of two from 512 to 2M",
			       (unsigned long long)cs);
	n.cbits = (uint32_t)__builtin_ctzll(cs);
	if (parent)
		ret = qcow2_new_parent(path, parent, &n);
	if (ret == 0 && sized) {
		if (parent && size != n.size)
			ret = dc_fail(-EINVAL,
				      "create=%llu differs from the parent's %llu "
				      "bytes",
				      (unsigned long long)size,
				      (unsigned long long)n.size);
		n.size = size;
	}
	if (ret == 0 && (n.size % 512 || !n.size))
		ret = dc_fail(-EINVAL, "%s: the size must be a non-zero multiple of 512",
			      path);
	if (ret == 0)
		ret = qcow2_write_new(path, fd, &n);
	free(n.backing);
	return ret;
}
