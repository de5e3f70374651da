/* SPDX-License-Identifier: MIT */
/* The VHD format (Microsoft "Virtual Hard Disk Image Format Specification"): the
 * 512-byte footer and the dynamic header as packed structs, each with one
 * decode/encode pair (fields big-endian on disk, host order in the struct), the
 * one's-complement checksum, CHS geometry and the fixed image OpenVMM makes. */
#ifndef DISKCORE_COMMON_VHD_FORMAT_H
#define DISKCORE_COMMON_VHD_FORMAT_H

#include "endian/byteorder.h"
#include "vhdfmt/vhdfmt.h"

#define VHD_SECTOR 512u
#define VHD_FOOTER_SIZE 512u
#define VHD_HEADER_SIZE 1024u
#define VHD_VERSION 0x00010000u
#define VHD_TYPE_FIXED 2u
#define VHD_TYPE_DYNAMIC 3u
#define VHD_TYPE_DIFF 4u
#define VHD_NLOC 8 /* parent locator entries in the dynamic header */
/* Seconds from the Unix epoch to the VHD epoch (2000-01-01 00:00:00 UTC). */
#define VHD_EPOCH 946684800u

/* Four characters as the big-endian number the format stores them as. */
#define VHD_CODE(a, b, c, d) ((uint32_t)(a) << 24 | (b) << 16 | (c) << 8 | (d))
/* Parent locator platform codes. */
#define VHD_W2KU VHD_CODE('W', '2', 'k', 'u') /* absolute path, UTF-16LE */
#define VHD_W2RU VHD_CODE('W', '2', 'r', 'u') /* relative path, UTF-16LE */
#define VHD_WI2K VHD_CODE('W', 'i', '2', 'k') /* absolute path, ANSI */
#define VHD_WI2R VHD_CODE('W', 'i', '2', 'r') /* relative path, ANSI */
#define VHD_MACX VHD_CODE('M', 'a', 'c', 'X') /* file:// URL, UTF-8 */

struct vhd_footer {
	char cookie[8]; /* "conectix" */
	uint32_t features;
	uint32_t version;
	uint64_t data_offset; /* the dynamic header; UINT64_MAX for a fixed disk */
	uint32_t timestamp;   /* seconds since VHD_EPOCH */
	uint32_t creator_app;
	uint32_t creator_version;
	uint32_t creator_os;
	uint64_t original_size;
	uint64_t current_size;
	uint32_t geometry; /* cylinders << 16 | heads << 8 | sectors per track */
	uint32_t disk_type;
	uint32_t checksum;
	uint8_t unique_id[16];
	uint8_t saved_state;
	uint8_t reserved[427];
} __attribute__((packed));
_Static_assert(sizeof(struct vhd_footer) == VHD_FOOTER_SIZE,
	       "the VHD footer is 512 bytes");
ENDIAN_CODEC(vhd_footer, ">8s2IQ4I2Q3I16sB427s")
#define VHD_FOOTER_CHECKSUM_OFF offsetof(struct vhd_footer, checksum)

struct vhd_parent_locator {
	uint32_t code;	/* VHD_W2KU, ...; anything else is not read */
	uint32_t space; /* room for the data: bytes (Hyper-V) or sectors (Virtual PC) */
	uint32_t len;	/* bytes of data */
	uint32_t reserved;
	uint64_t offset; /* of the data in the file */
} __attribute__((packed));
_Static_assert(sizeof(struct vhd_parent_locator) == 24, "a parent locator is 24 bytes");

struct vhd_dyn_header {
	char cookie[8];	       /* "cxsparse" */
	uint64_t data_offset;  /* unused: UINT64_MAX */
	uint64_t table_offset; /* the BAT */
	uint32_t version;
	uint32_t max_entries; /* BAT entries */
	uint32_t block_size;
	uint32_t checksum;
	uint8_t parent_uid[16];
	uint32_t parent_timestamp;
	uint32_t reserved1;
	uint8_t parent_name[512]; /* UTF-16BE */
	struct vhd_parent_locator loc[VHD_NLOC];
	uint8_t reserved2[256];
} __attribute__((packed));
_Static_assert(sizeof(struct vhd_dyn_header) == VHD_HEADER_SIZE,
	       "the dynamic header is 1024 bytes");
ENDIAN_CODEC(vhd_dyn_header, ">8s2Q4I16s2I512s8(4IQ)256s")
#define VHD_HEADER_CHECKSUM_OFF offsetof(struct vhd_dyn_header, checksum)

/* Why a footer or dynamic header did not decode, in the order the checks run. */
enum vhdfmt_status {
	VHDFMT_OK = 0,
	VHDFMT_BAD_COOKIE,
	VHDFMT_BAD_CHECKSUM,
	VHDFMT_BAD_VERSION,
};

/* One's complement of the byte sum of buf, skipping the 4 checksum bytes. */
uint32_t vhdfmt_checksum(const uint8_t *buf, size_t len, size_t csum_off);

/* Decode and check a footer: cookie, then checksum, then version (OpenVMM's
 * order, docs/openvmm-compat.md §2.2). The fields are filled even when the
 * status is not OK. */
enum vhdfmt_status vhdfmt_footer_decode(const uint8_t buf[VHD_FOOTER_SIZE],
					struct vhd_footer *f);
/* Encode f with the cookie and a fresh checksum (both also stored into f). */
void vhdfmt_footer_encode(struct vhd_footer *f, uint8_t buf[VHD_FOOTER_SIZE]);
/* The same pair for the dynamic header (cookie "cxsparse"). */
enum vhdfmt_status vhdfmt_dyn_decode(const uint8_t buf[VHD_HEADER_SIZE],
				     struct vhd_dyn_header *h);
void vhdfmt_dyn_encode(struct vhd_dyn_header *h, uint8_t buf[VHD_HEADER_SIZE]);

/* The footer of a new fixed disk of `size` bytes with the given unique id,
 * as Hyper-V writes it (CHS geometry, creator "win ", a timestamp), so qemu
 * and Windows size it from current_size. */
void vhdfmt_footer_fixed(struct vhd_footer *f, uint64_t size, const uint8_t uid[16]);
/* Make the (empty) file fd a fixed VHD of size bytes: zeroes, then a
 * vhdfmt_footer_fixed() footer with a random unique id; fsync. -errno. */
int vhdfmt_write_fixed(int fd, uint64_t size);
/* CHS geometry of a disk of `size` bytes, as the specification computes it. */
uint32_t vhdfmt_geometry(uint64_t size);

#endif
