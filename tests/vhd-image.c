/* SPDX-License-Identifier: MIT */
/* A reader of VHD structures for the vhd tests, independent of the plugin's:
 * the footer, its copy, the dynamic header and the BAT, read and rewritten
 * straight in the file. */
#include "vhd-cases.h"

#include "harness.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

void tv_img_open(struct tv_img *m, const char *path)
{
	struct stat st;

	m->fd = open(path, O_RDWR);
	ck_assert(m->fd >= 0 && fstat(m->fd, &st) == 0);
	m->size = (uint64_t)st.st_size;
	ck_assert_int_eq(pread(m->fd, m->foot, 512, (off_t)m->size - 512), 512);
	ck_assert_int_eq(pread(m->fd, m->copy, 512, 0), 512);
	m->hdr_off = h_get_be64(m->foot + 16);
	ck_assert_int_eq(pread(m->fd, m->hdr, 1024, (off_t)m->hdr_off), 1024);
	m->bat_off = h_get_be64(m->hdr + 16);
	m->entries = h_get_be32(m->hdr + 28);
	m->block = h_get_be32(m->hdr + 32);
}

uint32_t tv_bat(struct tv_img *m, uint32_t b)
{
	uint8_t e[4];

	ck_assert_int_eq(pread(m->fd, e, 4, (off_t)(m->bat_off + 4 * b)), 4);
	return h_get_be32(e);
}

void tv_set_bat(struct tv_img *m, uint32_t b, uint32_t v)
{
	uint8_t e[4];

	h_put_be32(e, v);
	ck_assert_int_eq(pwrite(m->fd, e, 4, (off_t)(m->bat_off + 4 * b)), 4);
}

/* Rewrite the header with a new checksum after fields were changed. */
void tv_put_hdr(struct tv_img *m)
{
	h_put_be32(m->hdr + 36, h_vhd_checksum(m->hdr, 1024, 36));
	ck_assert_int_eq(pwrite(m->fd, m->hdr, 1024, (off_t)m->hdr_off), 1024);
}

/* Rewrite both footers with a new checksum. */
void tv_put_footers(struct tv_img *m, uint8_t *f)
{
	h_put_be32(f + 64, h_vhd_checksum(f, 512, 64));
	ck_assert_int_eq(pwrite(m->fd, f, 512, 0), 512);
	ck_assert_int_eq(pwrite(m->fd, f, 512, (off_t)m->size - 512), 512);
}

void tv_img_close(struct tv_img *m)
{
	close(m->fd);
}
