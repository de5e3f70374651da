/* SPDX-License-Identifier: MIT */
/* The emulated controller's DMA (IOVA == address, PRP lists walked as a
 * device would), which its admin commands (emu.c) use too, and its NVM
 * command set over its RAM namespace: READ, WRITE (MDTS enforced, so the
 * driver's splitting is checked), FLUSH, DSM deallocate, Write Zeroes, and
 * the reservation commands for one host. */
#include "emu.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

/* One stretch of a transfer between buf and host memory at addr. */
static void emu_dma_seg(uint8_t *b, uint64_t addr, size_t n, bool from_host)
{
	if (from_host)
		memcpy(b, (void *)(uintptr_t)addr, n);
	else
		memcpy((void *)(uintptr_t)addr, b, n);
}

int emu_dma(uint64_t prp1, uint64_t prp2, void *buf, size_t len, bool from_host)
{
	uint8_t *b = buf;
	size_t first = PAGE - (prp1 & (PAGE - 1));
	const uint64_t *list = NULL;

	if (!prp1)
		return -EFAULT;
	if (first > len)
		first = len;
	emu_dma_seg(b, prp1, first, from_host);
	len -= first;
	b += first;
	if (len > PAGE)
		list = (const uint64_t *)(uintptr_t)prp2;
	for (unsigned k = 0; len; k++) {
		uint64_t page = list ? list[k] : prp2;
		size_t n = len < PAGE ? len : PAGE;

		if (!page || (page & (PAGE - 1)))
			return -EFAULT;
		emu_dma_seg(b, page, n, from_host);
		len -= n;
		b += n;
	}
	return 0;
}

/* An I/O command's data: PRPs, or with PSDT 01b (when SGLs are advertised)
 * one SGL Data Block descriptor at least len bytes long. Returns a status. */
static uint16_t xfer(struct emu *e, const struct nvme_sqe *c, void *buf, size_t len,
		     bool from_host)
{
	uint8_t id = (uint8_t)(c->prp2 >> 56);

	if (NVME_PSDT(c->flags) == 0) {
		if (e->cfg.sglonly)
			return NVME_SC_INVALID_FIELD;
		return emu_dma(c->prp1, c->prp2, buf, len, from_host) ?
			       NVME_SC_DATA_TRANSFER :
			       0;
	}
	if (NVME_PSDT(c->flags) != 1 || !e->cfg.sgl)
		return NVME_SC_INVALID_FIELD;
	if (id != NVME_SGL_DATA_BLOCK || (c->prp2 & 0x00ffffff00000000ull))
		return NVME_SC_SGL_TYPE;
	if ((uint32_t)c->prp2 < len)
		return NVME_SC_SGL_LENGTH;
	if (!c->prp1)
		return NVME_SC_DATA_TRANSFER;
	if (from_host)
		memcpy(buf, (void *)(uintptr_t)c->prp1, len);
	else
		memcpy((void *)(uintptr_t)c->prp1, buf, len);
	return 0;
}

static uint16_t rw(struct emu *e, const struct nvme_sqe *c)
{
	uint64_t slba = c->cdw10 | (uint64_t)c->cdw11 << 32;
	uint64_t nlb = (c->cdw12 & 0xffff) + 1;
	size_t len = nlb << e->shift;
	uint8_t *at = e->data + (slba << e->shift);

	if (e->cfg.mdts && len > (size_t)4096 << e->cfg.mdts)
		return NVME_SC_INVALID_FIELD;
	if (slba >= e->nsze || nlb > e->nsze - slba)
		return NVME_SC_LBA_RANGE;
	if (e->cfg.rsvconflict)
		return NVME_SC_RSV_CONFLICT;
	if (e->cfg.err_status && e->cfg.err_lba >= slba && e->cfg.err_lba < slba + nlb)
		return e->cfg.err_status;
	return xfer(e, c, at, len, c->opc == NVME_CMD_WRITE);
}

static uint16_t dsm(struct emu *e, const struct nvme_sqe *c)
{
	uint32_t r[4 * 256];
	unsigned n = (c->cdw10 & 0xff) + 1;
	uint16_t st = xfer(e, c, r, n * 16, true);

	if (st)
		return st;
	for (unsigned i = 0; i < n; i++) {
		uint64_t nlb = le32toh(r[4 * i + 1]);
		uint64_t slba = le32toh(r[4 * i + 2]) | (uint64_t)le32toh(r[4 * i + 3])
								<< 32;

		if (slba >= e->nsze || nlb > e->nsze - slba)
			return NVME_SC_LBA_RANGE;
		if (c->cdw11 & NVME_DSM_AD)
			memset(e->data + (slba << e->shift), 0, nlb << e->shift);
	}
	return 0;
}

/* Write Zeroes: the Deallocate bit is refused unless DLFEAT offers it, so a
 * driver that sets it regardless fails the test. */
static uint16_t write_zeroes(struct emu *e, const struct nvme_sqe *c)
{
	uint64_t slba = c->cdw10 | (uint64_t)c->cdw11 << 32;
	uint64_t nlb = (c->cdw12 & 0xffff) + 1;

	if ((c->cdw12 & NVME_WZ_DEAC) && !NVME_DLFEAT_WZ_DEAC(e->cfg.dlfeat))
		return NVME_SC_INVALID_FIELD;
	if (slba >= e->nsze || nlb > e->nsze - slba)
		return NVME_SC_LBA_RANGE;
	memset(e->data + (slba << e->shift), 0, nlb << e->shift);
	return 0;
}

static uint16_t rsv_register(struct emu *e, const uint64_t *k, uint32_t cdw10)
{
	unsigned action = cdw10 & 7;
	bool iekey = cdw10 & (1u << 3);
	uint64_t cr = le64toh(k[0]), nr = le64toh(k[1]);

	if (action == 0) {
		if (e->registered && e->key != nr)
			return NVME_SC_RSV_CONFLICT;
		e->registered = true;
		e->key = nr;
	} else if (action == 1 || action == 2) {
		if (!e->registered || (!iekey && cr != e->key))
			return NVME_SC_RSV_CONFLICT;
		if (action == 1)
			e->registered = e->holder = false;
		else
			e->key = nr;
	} else {
		return NVME_SC_INVALID_FIELD;
	}
	if ((cdw10 >> 30) >= 2)
		e->ptpl = (cdw10 >> 30) == 3;
	e->gen++;
	return 0;
}

static uint16_t rsv_acquire(struct emu *e, const uint64_t *k, uint32_t cdw10)
{
	unsigned action = cdw10 & 7;
	uint8_t type = (uint8_t)(cdw10 >> 8);

	if (!e->registered || le64toh(k[0]) != e->key)
		return NVME_SC_RSV_CONFLICT;
	if (type < 1 || type > 6 || action > 2)
		return NVME_SC_INVALID_FIELD;
	if (action == 0 && e->holder && e->rtype != type)
		return NVME_SC_RSV_CONFLICT;
	/* One host: preempting is only of its own key. */
	if (action && le64toh(k[1]) != e->key)
		return NVME_SC_RSV_CONFLICT;
	e->holder = true;
	e->rtype = type;
	return 0;
}

static uint16_t rsv_release(struct emu *e, const uint64_t *k, uint32_t cdw10)
{
	if (!e->registered || le64toh(k[0]) != e->key)
		return NVME_SC_RSV_CONFLICT;
	if ((cdw10 & 7) == 1) {
		e->registered = e->holder = false;
		e->gen++;
		return 0;
	}
	if (e->holder && (uint8_t)(cdw10 >> 8) != e->rtype)
		return NVME_SC_INVALID_FIELD;
	e->holder = false;
	e->rtype = 0;
	return 0;
}

static uint16_t rsv_report(struct emu *e, const struct nvme_sqe *c)
{
	uint8_t b[NVME_RSV_HDR + NVME_RSV_ENTRY] = { 0 };
	size_t len = ((size_t)c->cdw10 + 1) * 4;
	uint32_t gen = htole32(e->gen);
	uint64_t key = htole64(e->key);

	if (!(c->cdw11 & 1))
		return NVME_SC_INVALID_FIELD; /* only the extended structure */
	memcpy(b, &gen, 4);
	b[4] = e->holder ? e->rtype : 0;
	b[5] = e->registered;
	b[9] = e->ptpl;
	b[NVME_RSV_HDR] = 1; /* controller ID 1 */
	b[NVME_RSV_HDR + 2] = e->holder;
	memcpy(b + NVME_RSV_HDR + 8, &key, 8);
	if (len > sizeof(b))
		len = sizeof(b);
	return xfer(e, c, b, len, false);
}

static uint16_t rsv(struct emu *e, const struct nvme_sqe *c)
{
	uint64_t k[2];
	uint16_t st;

	if (!e->cfg.rsv)
		return NVME_SC_INVALID_OPCODE;
	if (c->opc == NVME_CMD_RSV_REPORT)
		return rsv_report(e, c);
	st = xfer(e, c, k, c->opc == NVME_CMD_RSV_RELEASE ? 8 : 16, true);
	if (st)
		return st;
	if (c->opc == NVME_CMD_RSV_REGISTER)
		return rsv_register(e, k, c->cdw10);
	if (c->opc == NVME_CMD_RSV_ACQUIRE)
		return rsv_acquire(e, k, c->cdw10);
	return rsv_release(e, k, c->cdw10);
}

bool emu_io(struct emu *e, uint16_t sqid, const struct nvme_sqe *c, uint16_t *st)
{
	(void)sqid;
	if (c->nsid != 1) {
		*st = NVME_SC_INVALID_NS;
		return true;
	}
	switch (c->opc) {
	case NVME_CMD_READ:
	case NVME_CMD_WRITE:
		*st = rw(e, c);
		break;
	case NVME_CMD_FLUSH:
		*st = 0;
		break;
	case NVME_CMD_DSM:
		*st = e->cfg.dsm ? dsm(e, c) : NVME_SC_INVALID_OPCODE;
		break;
	case NVME_CMD_WRITE_ZEROES:
		*st = e->cfg.wz ? write_zeroes(e, c) : NVME_SC_INVALID_OPCODE;
		break;
	case NVME_CMD_RSV_REGISTER:
	case NVME_CMD_RSV_ACQUIRE:
	case NVME_CMD_RSV_RELEASE:
	case NVME_CMD_RSV_REPORT:
		*st = rsv(e, c);
		break;
	default:
		*st = NVME_SC_INVALID_OPCODE;
	}
	return true;
}
