/* SPDX-License-Identifier: MIT */
/* The VHDX format ([MS-VHDX]): its on-disk structures as packed structs (fields
 * little-endian on disk, host order in the struct), each with one decode/encode
 * pair, and the CRC-32C checksum that seals the headers, region tables and log
 * entries. Where a structure lives and what its fields mean is the plugin's
 * business (plugins/vhdx). */
#ifndef DISKCORE_COMMON_VHDX_FORMAT_H
#define DISKCORE_COMMON_VHDX_FORMAT_H

#include "endian/byteorder.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VHDX_LSEC 4096u		   /* log sector: the unit of every metadata update */
#define VHDX_RT_SIZE (64u * 1024u) /* a region table */
#define VHDX_META_TABLE 65536u	   /* the metadata table at the metadata region's start */
#define VHDX_MAX_TABLE_ENTRIES 2047 /* region and metadata tables alike */

/* The file type identifier at offset 0 (the rest of its 64 KiB is reserved). */
struct vhdx_file_id {
	char signature[8];    /* "vhdxfile" */
	uint8_t creator[512]; /* UTF-16LE, optional */
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_file_id) == 520, "the file identifier is 520 bytes");
ENDIAN_CODEC(vhdx_file_id, "<8s512s")

/* A header (2.2.2): two copies, at 64 and 128 KiB, each in a 4 KiB sector whose
 * rest is reserved (written as zeroes). */
struct vhdx_header {
	char signature[4]; /* "head" */
	uint32_t checksum; /* CRC-32C of the 4 KiB sector */
	uint64_t seq;
	uint8_t file_write[16];
	uint8_t data_write[16];
	uint8_t log_guid[16];
	uint16_t log_version;
	uint16_t version;
	uint32_t log_len;
	uint64_t log_off;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_header) == 80, "a VHDX header's fields are 80 bytes");
ENDIAN_CODEC(vhdx_header, "<4sIQ48s2HIQ")

/* A region table (2.2.3): this header, then count entries, in 64 KiB. */
struct vhdx_region_table {
	char signature[4]; /* "regi" */
	uint32_t checksum; /* CRC-32C of the 64 KiB */
	uint32_t count;
	uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_region_table) == 16,
	       "a region table header is 16 bytes");
ENDIAN_CODEC(vhdx_region_table, "<4s3I")

struct vhdx_region {
	uint8_t guid[16];
	uint64_t off;
	uint32_t len;
	uint32_t flags; /* bit 0: required */
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_region) == 32, "a region table entry is 32 bytes");
ENDIAN_CODEC(vhdx_region, "<16sQ2I")

/* A log entry (2.3.1): this header, descriptors, then data sectors; the
 * checksum covers the whole entry. */
struct vhdx_log_header {
	char signature[4]; /* "loge" */
	uint32_t checksum;
	uint32_t len; /* of the whole entry, a multiple of 4 KiB */
	uint32_t tail;
	uint64_t seq;
	uint32_t ndesc;
	uint32_t reserved;
	uint8_t log_guid[16];
	uint64_t flushed; /* FlushedFileOffset */
	uint64_t last;	  /* LastFileOffset */
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_log_header) == 64, "a log entry header is 64 bytes");
ENDIAN_CODEC(vhdx_log_header, "<4s3IQ2I16s2Q")

/* A zero descriptor: len bytes of zeroes at off. */
struct vhdx_log_zero {
	char signature[4]; /* "zero" */
	uint32_t reserved;
	uint64_t len;
	uint64_t off;
	uint64_t seq;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_log_zero) == 32, "a zero descriptor is 32 bytes");
ENDIAN_CODEC(vhdx_log_zero, "<4sI3Q")

/* A data descriptor: the 4 KiB sector at off, whose first 8 and last 4 bytes
 * are here and the rest in the entry's next data sector. */
struct vhdx_log_desc {
	char signature[4]; /* "desc" */
	uint8_t trailing[4];
	uint8_t leading[8];
	uint64_t off;
	uint64_t seq;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_log_desc) == 32, "a data descriptor is 32 bytes");
ENDIAN_CODEC(vhdx_log_desc, "<4s4s8s2Q")

/* A data sector of a log entry. */
struct vhdx_log_data {
	char signature[4]; /* "data" */
	uint32_t seq_high;
	uint8_t data[4084];
	uint32_t seq_low;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_log_data) == VHDX_LSEC, "a data sector is 4 KiB");
ENDIAN_CODEC(vhdx_log_data, "<4sI4084sI")

/* The metadata table (2.6.1): this header, then count entries, in 64 KiB. */
struct vhdx_meta_table {
	char signature[8]; /* "metadata" */
	uint16_t reserved;
	uint16_t count;
	uint8_t reserved2[20];
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_meta_table) == 32,
	       "a metadata table header is 32 bytes");
ENDIAN_CODEC(vhdx_meta_table, "<8s2H20s")

struct vhdx_meta_entry {
	uint8_t guid[16];
	uint32_t off; /* from the metadata region's start */
	uint32_t len;
	uint32_t flags; /* bit 0 IsUser, 1 IsVirtualDisk, 2 IsRequired */
	uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_meta_entry) == 32,
	       "a metadata table entry is 32 bytes");
ENDIAN_CODEC(vhdx_meta_entry, "<16s4I")

/* The file parameters metadata item. */
struct vhdx_file_params {
	uint32_t block_size;
	uint32_t flags; /* bit 0 LeaveBlockAllocated, 1 HasParent */
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_file_params) == 8, "the file parameters are 8 bytes");
ENDIAN_CODEC(vhdx_file_params, "<2I")

/* The virtual disk size item. */
struct vhdx_disk_size {
	uint64_t size;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_disk_size) == 8, "the virtual disk size is 8 bytes");
ENDIAN_CODEC(vhdx_disk_size, "<Q")

/* The logical and physical sector size items. */
struct vhdx_sector_size {
	uint32_t size;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_sector_size) == 4, "a sector size item is 4 bytes");
ENDIAN_CODEC(vhdx_sector_size, "<I")

/* The parent locator metadata item (2.6.2.6): this header, count entries, then
 * the UTF-16LE keys and values they point at. */
struct vhdx_locator {
	uint8_t type[16];
	uint16_t reserved;
	uint16_t count;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_locator) == 20, "a parent locator header is 20 bytes");
ENDIAN_CODEC(vhdx_locator, "<16s2H")

struct vhdx_locator_entry {
	uint32_t key_off; /* from the item's start */
	uint32_t value_off;
	uint16_t key_len; /* bytes */
	uint16_t value_len;
} __attribute__((packed));
_Static_assert(sizeof(struct vhdx_locator_entry) == 12, "a locator entry is 12 bytes");
ENDIAN_CODEC(vhdx_locator_entry, "<2I2H")

/* The CRC-32C of len bytes with the checksum field (bytes 4-7, in every
 * structure VHDX seals) read as zero. */
uint32_t vhdxfmt_checksum(const uint8_t *buf, size_t len);
/* Store that checksum into bytes 4-7; and whether they hold it. */
void vhdxfmt_seal(uint8_t *buf, size_t len);
bool vhdxfmt_sealed(const uint8_t *buf, size_t len);

/* A header from its 4 KiB sector, checked: false if the signature or checksum
 * is bad. */
bool vhdxfmt_header_decode(const uint8_t raw[VHDX_LSEC], struct vhdx_header *h);
/* Header h as a sealed 4 KiB sector (signature and checksum set, the rest zero). */
void vhdxfmt_header_encode(const struct vhdx_header *h, uint8_t out[VHDX_LSEC]);

#endif
