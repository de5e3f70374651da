/* SPDX-License-Identifier: MIT */
/* VHD footer and dynamic header codecs, checksum, geometry, fixed images (see
 * vhd_format.h). */
#include "vhd_format.h"

#include "endian/byteorder.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* What the two checksummed structures differ in. */
struct vhd_struct {
	const char *cookie;
	size_t size, csum_off, version_off;
};

static const struct vhd_struct vhd_footer_fmt = {
	.cookie = "conectix",
	.size = sizeof(struct vhd_footer),
	.csum_off = VHD_FOOTER_CHECKSUM_OFF,
	.version_off = offsetof(struct vhd_footer, version),
};
static const struct vhd_struct vhd_dyn_fmt = {
	.cookie = "cxsparse",
	.size = sizeof(struct vhd_dyn_header),
	.csum_off = VHD_HEADER_CHECKSUM_OFF,
	.version_off = offsetof(struct vhd_dyn_header, version),
};

uint32_t vhdfmt_checksum(const uint8_t *buf, size_t len, size_t csum_off)
{
	uint32_t sum = 0;

	for (size_t i = 0; i < len; i++)
		if (i < csum_off || i >= csum_off + 4)
			sum += buf[i];
	return ~sum;
}

/* The checks of an encoded structure: cookie, then checksum, then version. */
static enum vhdfmt_status vhd_struct_check(const struct vhd_struct *t, const uint8_t *buf)
{
	if (memcmp(buf, t->cookie, 8) != 0)
		return VHDFMT_BAD_COOKIE;
	if (get_be32(buf + t->csum_off) != vhdfmt_checksum(buf, t->size, t->csum_off))
		return VHDFMT_BAD_CHECKSUM;
	if (get_be32(buf + t->version_off) != VHD_VERSION)
		return VHDFMT_BAD_VERSION;
	return VHDFMT_OK;
}

/* Set the cookie and the checksum of the encoded structure buf, and in s, the
 * structure it was encoded from (same layout, host order). */
static void vhd_seal(const struct vhd_struct *t, uint8_t *buf, void *s)
{
	uint32_t csum;

	memcpy(buf, t->cookie, 8);
	csum = vhdfmt_checksum(buf, t->size, t->csum_off);
	put_be32(buf + t->csum_off, csum);
	memcpy(s, t->cookie, 8);
	memcpy((uint8_t *)s + t->csum_off, &csum, sizeof(csum));
}

enum vhdfmt_status vhdfmt_footer_decode(const uint8_t buf[VHD_FOOTER_SIZE],
					struct vhd_footer *f)
{
	vhd_footer_decode(f, buf);
	return vhd_struct_check(&vhd_footer_fmt, buf);
}

enum vhdfmt_status vhdfmt_dyn_decode(const uint8_t buf[VHD_HEADER_SIZE],
				     struct vhd_dyn_header *h)
{
	vhd_dyn_header_decode(h, buf);
	return vhd_struct_check(&vhd_dyn_fmt, buf);
}

void vhdfmt_footer_encode(struct vhd_footer *f, uint8_t buf[VHD_FOOTER_SIZE])
{
	vhd_footer_encode(buf, f);
	vhd_seal(&vhd_footer_fmt, buf, f);
}

void vhdfmt_dyn_encode(struct vhd_dyn_header *h, uint8_t buf[VHD_HEADER_SIZE])
{
	vhd_dyn_header_encode(buf, h);
	vhd_seal(&vhd_dyn_fmt, buf, h);
}

void vhdfmt_footer_fixed(struct vhd_footer *f, uint64_t size, const uint8_t uid[16])
{
	memset(f, 0, sizeof(*f));
	f->features = 2;
	f->version = VHD_VERSION;
	f->data_offset = UINT64_MAX;
	f->timestamp = (uint32_t)(time(NULL) - (time_t)VHD_EPOCH);
	/* As Hyper-V writes it, not OpenVMM's zero geometry and creator: qemu
	 * sizes a VHD from its CHS geometry unless the creator is one it knows
	 * to mean current_size, and read ours as 0 bytes (issue 14). */
	f->creator_app = VHD_CODE('w', 'i', 'n', ' ');
	f->creator_version = 0x000a0000;
	f->creator_os = VHD_CODE('W', 'i', '2', 'k');
	f->original_size = size;
	f->current_size = size;
	f->geometry = vhdfmt_geometry(size);
	f->disk_type = VHD_TYPE_FIXED;
	memcpy(f->unique_id, uid, 16);
}

int vhdfmt_write_fixed(int fd, uint64_t size)
{
	uint8_t buf[VHD_FOOTER_SIZE], uid[16];
	struct vhd_footer f;
	int ret = vhdfmt_new_uid(uid);

	if (ret < 0)
		return ret;
	vhdfmt_footer_fixed(&f, size, uid);
	vhdfmt_footer_encode(&f, buf);
	if (ftruncate(fd, (off_t)size) < 0)
		return -errno;
	ret = vhdfmt_pwrite(fd, buf, sizeof(buf), size);
	if (ret == 0 && fsync(fd) < 0)
		ret = -errno;
	return ret;
}

uint32_t vhdfmt_geometry(uint64_t size)
{
	uint64_t total = size / VHD_SECTOR, cth;
	uint32_t spt, heads;

	if (total > 65535ull * 16 * 255)
		total = 65535ull * 16 * 255;
	if (total >= 65535ull * 16 * 63) {
		spt = 255;
		heads = 16;
		cth = total / spt;
	} else {
		spt = 17;
		cth = total / spt;
		heads = (uint32_t)((cth + 1023) / 1024);
		if (heads < 4)
			heads = 4;
		if (cth >= heads * 1024ull || heads > 16) {
			spt = 31;
			heads = 16;
			cth = total / spt;
		}
		if (cth >= heads * 1024ull) {
			spt = 63;
			heads = 16;
			cth = total / spt;
		}
	}
	return (uint32_t)(cth / heads) << 16 | heads << 8 | spt;
}
