/* SPDX-License-Identifier: MIT */
/* The LUKS magic and version (see luksfmt.h). */
#include "luksfmt.h"

#include <string.h>

static const uint8_t luks_magic1[LUKS_MAGIC_LEN] = { 'L', 'U', 'K', 'S', 0xba, 0xbe };
static const uint8_t luks_magic2[LUKS_MAGIC_LEN] = { 'S', 'K', 'U', 'L', 0xba, 0xbe };

int luksfmt_version(const uint8_t raw[8], bool secondary)
{
	if (memcmp(raw, secondary ? luks_magic2 : luks_magic1, LUKS_MAGIC_LEN) != 0)
		return -1;
	return get_be16(raw + LUKS_MAGIC_LEN);
}
