/* SPDX-License-Identifier: MIT */
/* The LUKS1 and LUKS2 binary headers (the LUKS1 and LUKS2 on-disk format
 * specifications) as packed structs, fields big-endian on disk and in host
 * order once decoded, each with one decode/encode pair; and the magic and
 * version check both start with. What the fields mean is plugins/luks's. */
#ifndef DISKCORE_COMMON_LUKSFMT_H
#define DISKCORE_COMMON_LUKSFMT_H

#include "endian/byteorder.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LUKS_MAGIC_LEN 6
#define LUKS1_SLOTS 8
#define LUKS1_DIGEST_LEN 20
#define LUKS2_BIN_LEN 4096 /* the binary header's sector; the JSON area follows */
#define LUKS2_CSUM_LEN 64

struct luks1_keyslot {
	uint32_t active; /* 0x00ac71f3 active, 0x0000dead inactive */
	uint32_t iterations;
	uint8_t salt[32];
	uint32_t key_material_offset; /* 512-byte sectors */
	uint32_t stripes;
} __attribute__((packed));
_Static_assert(sizeof(struct luks1_keyslot) == 48, "a LUKS1 key slot is 48 bytes");

struct luks1_header {
	uint8_t magic[LUKS_MAGIC_LEN]; /* "LUKS\xba\xbe" */
	uint16_t version;
	char cipher_name[32];
	char cipher_mode[32];
	char hash_spec[32];
	uint32_t payload_offset; /* 512-byte sectors */
	uint32_t key_bytes;
	uint8_t mk_digest[LUKS1_DIGEST_LEN];
	uint8_t mk_digest_salt[32];
	uint32_t mk_digest_iter;
	char uuid[40];
	struct luks1_keyslot slot[LUKS1_SLOTS];
} __attribute__((packed));
_Static_assert(sizeof(struct luks1_header) == 592, "the LUKS1 header is 592 bytes");
ENDIAN_CODEC(luks1_header, ">6sH96s2I52sI40s8(2I32s2I)")

/* The first 512 bytes of a LUKS2 binary header; the rest of its 4 KiB is
 * padding (covered by the checksum). */
struct luks2_header {
	uint8_t magic[LUKS_MAGIC_LEN]; /* primary "LUKS\xba\xbe", secondary "SKUL\xba\xbe" */
	uint16_t version;
	uint64_t hdr_size; /* binary header and JSON area */
	uint64_t seqid;
	char label[48];
	char checksum_alg[32];
	uint8_t salt[64];
	char uuid[40];
	char subsystem[48];
	uint64_t hdr_offset; /* where this copy lies */
	uint8_t padding[184];
	uint8_t csum[LUKS2_CSUM_LEN];
} __attribute__((packed));
_Static_assert(sizeof(struct luks2_header) == 512,
	       "a LUKS2 header's fields are 512 bytes");
ENDIAN_CODEC(luks2_header, ">6sH2Q48s32s64s40s48sQ184s64s")
#define LUKS2_CSUM_OFF offsetof(struct luks2_header, csum)

/* The version of the header at raw when its magic is the primary one (or,
 * with secondary, a LUKS2 secondary header's); -1 when it is not. */
int luksfmt_version(const uint8_t raw[8], bool secondary);

#endif
