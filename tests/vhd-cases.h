/* SPDX-License-Identifier: MIT */
/* What the vhd test program's files share: a reader of an image's layout
 * straight from the file, independent of the plugin's (vhd-image.c), and the
 * cases each file adds to the suite of test-vhd.c. */
#ifndef DISKCORE_TESTS_VHD_CASES_H
#define DISKCORE_TESTS_VHD_CASES_H

#include <check.h>
#include <stdint.h>

#define KIB 1024
#define MIB (1024 * 1024)

/* An image's layout as read straight from the file. */
struct tv_img {
	int fd;
	uint64_t size;
	uint8_t foot[512], copy[512], hdr[1024];
	uint64_t hdr_off, bat_off;
	uint32_t entries, block;
};

/* Open path read-write and read both footers, the header and the BAT's place. */
void tv_img_open(struct tv_img *m, const char *path);
void tv_img_close(struct tv_img *m);
/* BAT entry b, and a new value for it. */
uint32_t tv_bat(struct tv_img *m, uint32_t b);
void tv_set_bat(struct tv_img *m, uint32_t b, uint32_t v);
/* Rewrite the header with a new checksum after fields were changed. */
void tv_put_hdr(struct tv_img *m);
/* Rewrite both footers from f with a new checksum. */
void tv_put_footers(struct tv_img *m, uint8_t *f);

/* Differencing chains and the layer contract (vhd-diff.c). */
void vhd_add_diff(TCase *tc);
/* Broken footers, headers, BAT and locators, and fuzzed metadata
 * (vhd-corrupt.c). */
TCase *vhd_tc_bad_input(void);

#endif
