/* SPDX-License-Identifier: MIT */
/* VHDX checksums and the header codec (see vhdx_format.h). */
#include "vhdx_format.h"

#include "crc32c/crc32c.h"

#include <string.h>

uint32_t vhdxfmt_checksum(const uint8_t *buf, size_t len)
{
	static const uint8_t zero[4];
	uint32_t c = crc32c(0, buf, 4);

	c = crc32c(c, zero, sizeof(zero));
	return crc32c(c, buf + 8, len - 8);
}

void vhdxfmt_seal(uint8_t *buf, size_t len)
{
	put_le32(buf + 4, vhdxfmt_checksum(buf, len));
}

bool vhdxfmt_sealed(const uint8_t *buf, size_t len)
{
	return get_le32(buf + 4) == vhdxfmt_checksum(buf, len);
}

bool vhdxfmt_header_decode(const uint8_t raw[VHDX_LSEC], struct vhdx_header *h)
{
	if (memcmp(raw, "head", 4) != 0 || !vhdxfmt_sealed(raw, VHDX_LSEC))
		return false;
	vhdx_header_decode(h, raw);
	return true;
}

void vhdxfmt_header_encode(const struct vhdx_header *h, uint8_t out[VHDX_LSEC])
{
	memset(out, 0, VHDX_LSEC);
	vhdx_header_encode(out, h);
	memcpy(out, "head", 4);
	vhdxfmt_seal(out, VHDX_LSEC);
}
