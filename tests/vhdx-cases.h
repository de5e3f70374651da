/* SPDX-License-Identifier: MIT */
/* What the vhdx test program's files share: a reader of the on-disk structures
 * independent of the plugin's ([MS-VHDX]; vhdx-image.c), and the cases each
 * file adds to the suite of test-vhdx.c. */
#ifndef DISKCORE_TESTS_VHDX_CASES_H
#define DISKCORE_TESTS_VHDX_CASES_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KIB 1024
#define MIB (1024 * 1024)

/* An image's layout as read straight from the file. */
struct tx_img {
	int fd;
	uint64_t size;
	int slot; /* current header */
	uint8_t hdr[4096];
	uint64_t seq, log_off, log_len;
	uint64_t bat_off, bat_len, meta_off, meta_len;
	uint32_t block, lss, pss, flags, cr;
	uint64_t disk;
	uint8_t page83[16];
	uint32_t item_off[8]; /* metadata item offsets by tx_items[] index */
};

/* Bitwise CRC-32C of p[0, n), with the 4 bytes at skip read as zero. */
uint32_t tx_crc(const uint8_t *p, size_t n, size_t skip);
uint32_t tx_le32(const uint8_t *p);
uint64_t tx_le64(const uint8_t *p);
void tx_set32(uint8_t *p, uint32_t v);
void tx_set64(uint8_t *p, uint64_t v);

void tx_pread(struct tx_img *m, void *buf, size_t len, uint64_t off);
void tx_pwrite(struct tx_img *m, const void *buf, size_t len, uint64_t off);
/* Open path read-write and read its current header, regions and metadata. */
void tx_img_open(struct tx_img *m, const char *path);
void tx_img_close(struct tx_img *m);
/* BAT entry i, and a new value for it. */
uint64_t tx_bat(struct tx_img *m, uint64_t i);
void tx_set_bat(struct tx_img *m, uint64_t i, uint64_t v);
/* The BAT index of payload block b (sector bitmap entries interleaved). */
uint64_t tx_pidx(const struct tx_img *m, uint64_t b);
/* Rewrite header `slot` from buf with a fresh checksum. */
void tx_put_hdr(struct tx_img *m, int slot, uint8_t *buf);
bool tx_guid_zero(const uint8_t *g);

/* Differencing chains and the layer contract (vhdx-diff.c). */
void vhdx_add_diff(TCase *tc);
/* The log: replay in the file and in memory, a crashed writer (vhdx-log.c). */
void vhdx_add_log(TCase *tc);
/* Broken headers, region tables, metadata and BAT (vhdx-corrupt.c). */
TCase *vhdx_tc_bad_input(void);

#endif
