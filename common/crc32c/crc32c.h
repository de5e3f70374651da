/* SPDX-License-Identifier: MIT */
/* CRC-32C (Castagnoli, reflected polynomial 0x82f63b78), the checksum of VHDX
 * headers, region tables and log entries. Uses the SSE4.2 crc32 instruction
 * where the CPU has it (20 to 30 times the table's speed on 4 KiB; see
 * crc32c.c), else a byte table. */
#ifndef DISKCORE_COMMON_CRC32C_H
#define DISKCORE_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The CRC of len bytes at buf, continuing from crc (0 to start): the CRC of a
 * then b is crc32c(crc32c(0, a, alen), b, blen). */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);
/* The same with the byte table whatever the CPU (the tests compare the two). */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);

#endif
