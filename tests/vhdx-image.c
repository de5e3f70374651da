/* SPDX-License-Identifier: MIT */
/* A reader of VHDX structures for the vhdx tests, written from [MS-VHDX]
 * independently of the plugin's, so that a shared misreading cannot hide. */
#include "vhdx-cases.h"

#include <check.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bitwise CRC-32C, unlike the plugin's table. */
uint32_t tx_crc(const uint8_t *p, size_t n, size_t skip)
{
	uint32_t c = ~0u;

	for (size_t i = 0; i < n; i++) {
		c ^= i >= skip && i < skip + 4 ? 0 : p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
	}
	return ~c;
}

uint32_t tx_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

uint64_t tx_le64(const uint8_t *p)
{
	return tx_le32(p) | (uint64_t)tx_le32(p + 4) << 32;
}

void tx_set32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void tx_set64(uint8_t *p, uint64_t v)
{
	tx_set32(p, (uint32_t)v);
	tx_set32(p + 4, (uint32_t)(v >> 32));
}

static const uint8_t tx_items[6][4] = {
	{ 0x37, 0x67, 0xa1, 0xca }, /* file parameters */
	{ 0x24, 0x42, 0xa5, 0x2f }, /* virtual disk size */
	{ 0xab, 0x12, 0xca, 0xbe }, /* page 83 */
	{ 0x1d, 0xbf, 0x41, 0x81 }, /* logical sector size */
	{ 0xc7, 0x48, 0xa3, 0xcd }, /* physical sector size */
	{ 0x2d, 0x5f, 0xd3, 0xa8 }, /* parent locator */
};

void tx_pread(struct tx_img *m, void *buf, size_t len, uint64_t off)
{
	ck_assert_int_eq(pread(m->fd, buf, len, (off_t)off), (ssize_t)len);
}

void tx_pwrite(struct tx_img *m, const void *buf, size_t len, uint64_t off)
{
	ck_assert_int_eq(pwrite(m->fd, buf, len, (off_t)off), (ssize_t)len);
}

void tx_img_open(struct tx_img *m, const char *path)
{
	uint8_t h[2][4096], rt[65536], tbl[65536], item[16];
	bool ok[2];
	struct stat st;

	memset(m, 0, sizeof(*m));
	m->fd = open(path, O_RDWR);
	ck_assert(m->fd >= 0 && fstat(m->fd, &st) == 0);
	m->size = (uint64_t)st.st_size;
	for (int i = 0; i < 2; i++) {
		tx_pread(m, h[i], 4096, (uint64_t)(64 + 64 * i) * KIB);
		ok[i] = !memcmp(h[i], "head", 4) &&
			tx_le32(h[i] + 4) == tx_crc(h[i], 4096, 4);
	}
	ck_assert(ok[0] || ok[1]);
	m->slot = !ok[0] || (ok[1] && tx_le64(h[1] + 8) > tx_le64(h[0] + 8));
	memcpy(m->hdr, h[m->slot], 4096);
	m->seq = tx_le64(m->hdr + 8);
	m->log_len = tx_le32(m->hdr + 68);
	m->log_off = tx_le64(m->hdr + 72);
	tx_pread(m, rt, sizeof(rt), 192 * KIB);
	ck_assert(!memcmp(rt, "regi", 4) && tx_le32(rt + 4) == tx_crc(rt, sizeof(rt), 4));
	for (uint32_t i = 0; i < tx_le32(rt + 8); i++) {
		const uint8_t *e = rt + 16 + 32 * i;

		if (e[0] == 0x66 && e[1] == 0x77) {
			m->bat_off = tx_le64(e + 16);
			m->bat_len = tx_le32(e + 24);
		} else if (e[0] == 0x06 && e[1] == 0xa2) {
			m->meta_off = tx_le64(e + 16);
			m->meta_len = tx_le32(e + 24);
		}
	}
	ck_assert(m->bat_off && m->meta_off);
	tx_pread(m, tbl, sizeof(tbl), m->meta_off);
	ck_assert(!memcmp(tbl, "metadata", 8));
	for (uint32_t i = 0; i < (uint32_t)(tbl[10] | tbl[11] << 8); i++)
		for (int k = 0; k < 6; k++)
			if (!memcmp(tbl + 32 + 32 * i, tx_items[k], 4))
				m->item_off[k] = tx_le32(tbl + 32 + 32 * i + 16);
	tx_pread(m, item, 8, m->meta_off + m->item_off[0]);
	m->block = tx_le32(item);
	m->flags = tx_le32(item + 4);
	tx_pread(m, item, 8, m->meta_off + m->item_off[1]);
	m->disk = tx_le64(item);
	tx_pread(m, m->page83, 16, m->meta_off + m->item_off[2]);
	tx_pread(m, item, 4, m->meta_off + m->item_off[3]);
	m->lss = tx_le32(item);
	tx_pread(m, item, 4, m->meta_off + m->item_off[4]);
	m->pss = tx_le32(item);
	m->cr = (uint32_t)(((uint64_t)1 << 23) * m->lss / m->block);
}

uint64_t tx_bat(struct tx_img *m, uint64_t i)
{
	uint8_t e[8];

	tx_pread(m, e, 8, m->bat_off + 8 * i);
	return tx_le64(e);
}

void tx_set_bat(struct tx_img *m, uint64_t i, uint64_t v)
{
	uint8_t e[8];

	tx_set64(e, v);
	tx_pwrite(m, e, 8, m->bat_off + 8 * i);
}

uint64_t tx_pidx(const struct tx_img *m, uint64_t b)
{
	return b + b / m->cr;
}

/* Rewrite header `slot` from buf with a fresh checksum. */
void tx_put_hdr(struct tx_img *m, int slot, uint8_t *buf)
{
	tx_set32(buf + 4, tx_crc(buf, 4096, 4));
	tx_pwrite(m, buf, 4096, (uint64_t)(64 + 64 * slot) * KIB);
}

bool tx_guid_zero(const uint8_t *g)
{
	for (int i = 0; i < 16; i++)
		if (g[i])
			return false;
	return true;
}

void tx_img_close(struct tx_img *m)
{
	close(m->fd);
}
