/* SPDX-License-Identifier: MIT */
/* The emulated controller's registers, rings and admin command set. */
#include "emu.h"

#include <diskcore/plugin.h>
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define E(d) ((struct emu *)(d))

void emu_post(struct emu *e, uint16_t sqid, uint16_t cid, uint16_t status, uint32_t dw0)
{
	struct emu_cq *q = &e->cq[e->sq[sqid].cqid];
	struct nvme_cqe *ring = (struct nvme_cqe *)(uintptr_t)q->base;
	struct nvme_cqe *c = &ring[q->tail];
	uint64_t one = 1;

	if ((uint16_t)((q->tail + 1) % q->size) == q->head)
		return; /* full: the driver never lets it be */
	c->dw0 = dw0;
	c->dw1 = 0;
	c->sqhd = e->sq[sqid].head;
	c->sqid = sqid;
	c->cid = cid;
	__atomic_store_n(&c->status, (uint16_t)(status << 1 | q->phase),
			 __ATOMIC_RELEASE);
	if (++q->tail == q->size) {
		q->tail = 0;
		q->phase ^= 1;
	}
	if (q->ien && write(e->irq[q->iv % e->cfg.nvec], &one, sizeof(one)) < 0)
		dc_debug("emu: eventfd: %s", strerror(errno));
}

static void aen_fire(struct emu *e)
{
	if (!e->aen_due || !e->naer)
		return;
	e->aen_due = false;
	emu_post(e, 0, e->aer_cid[--e->naer], 0,
		 NVME_AER_TYPE_NOTICE | (uint32_t)NVME_LOG_CHANGED_NS << 16);
}

void emu_resize(struct emu *e, uint64_t bytes)
{
	e->nsze = bytes >> e->shift;
	e->ns_changed = true;
	e->aen_due = true;
	aen_fire(e);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void identify(struct emu *e, const struct nvme_sqe *c, uint8_t *id, uint16_t *st)
{
	uint32_t cns = c->cdw10 & 0xff;

	memset(id, 0, PAGE);
	if (cns == 1) {
		memcpy(id + NVME_IDC_SN, "EMU0000000000001    ", 20);
		memcpy(id + NVME_IDC_MN, "diskcore emulated NVMe                  ", 40);
		memcpy(id + NVME_IDC_FR, "1.0     ", 8);
		id[NVME_IDC_MDTS] = (uint8_t)e->cfg.mdts;
		id[NVME_IDC_NN] = 1;
		put16(id + NVME_IDC_ONCS,
		      (uint16_t)((e->cfg.dsm ? NVME_ONCS_DSM : 0) |
				 (e->cfg.wz ? NVME_ONCS_WRITE_ZEROES : 0) |
				 (e->cfg.rsv ? NVME_ONCS_RESERVATIONS : 0)));
		id[NVME_IDC_VWC] = e->cfg.vwc;
		id[NVME_IDC_SGLS] = e->cfg.sgl;
	} else if (cns == 0 && c->nsid == 1) {
		uint64_t nsze = htole64(e->nsze);

		memcpy(id + NVME_IDN_NSZE, &nsze, 8);
		memcpy(id + 8, &nsze, 8);
		id[NVME_IDN_NSFEAT] = 1u << 4; /* NPDG is valid */
		put16(id + NVME_IDN_NPDG, 7);
		id[NVME_IDN_NLBAF] = 1;
		id[NVME_IDN_FLBAS] = e->shift == 9 ? 0 : 1;
		id[NVME_IDN_RESCAP] = e->cfg.rsv ? 0x7f : 0;
		id[NVME_IDN_DLFEAT] = e->cfg.dlfeat;
		/* Format 0: 512-byte blocks, format 1: 4 KiB; metadata on request. */
		put16(id + NVME_IDN_LBAF, e->cfg.metadata ? 8 : 0);
		id[NVME_IDN_LBAF + 2] = 9;
		put16(id + NVME_IDN_LBAF + 4, e->cfg.metadata ? 8 : 0);
		id[NVME_IDN_LBAF + 6] = 12;
	} else if (cns == 0) {
		*st = NVME_SC_INVALID_NS;
	} else {
		*st = NVME_SC_INVALID_FIELD;
	}
}

static uint16_t create_queue(struct emu *e, const struct nvme_sqe *c)
{
	unsigned qid = c->cdw10 & 0xffff, size = (c->cdw10 >> 16) + 1;

	if (qid == 0 || qid > e->cfg.grant || qid >= EMU_MAX_Q)
		return NVME_SC_INVALID_QID;
	if (size < 2 || size > e->cfg.mqes + 1)
		return NVME_SC_INVALID_QSIZE;
	if (c->opc == NVME_ADM_CREATE_CQ) {
		e->cq[qid] = (struct emu_cq){ .base = c->prp1,
					      .size = (uint16_t)size,
					      .iv = (uint16_t)(c->cdw11 >> 16),
					      .phase = 1,
					      .ien = c->cdw11 & 2,
					      .on = true };
		return 0;
	}
	if (!e->cq[c->cdw11 >> 16].on)
		return NVME_SC_INVALID_QID;
	e->sq[qid] = (struct emu_sq){ .base = c->prp1,
				      .size = (uint16_t)size,
				      .cqid = (uint16_t)(c->cdw11 >> 16),
				      .on = true };
	return 0;
}

/* Returns false for a command that completes later (an AER). */
static bool admin(struct emu *e, const struct nvme_sqe *c, uint16_t *st, uint32_t *dw0)
{
	static _Thread_local uint8_t buf[PAGE];
	uint32_t numd;

	switch (c->opc) {
	case NVME_ADM_IDENTIFY:
		identify(e, c, buf, st);
		if (!*st && emu_dma(c->prp1, c->prp2, buf, PAGE, false))
			*st = NVME_SC_DATA_TRANSFER;
		return true;
	case NVME_ADM_SET_FEATURES:
		if ((c->cdw10 & 0xff) == NVME_FEAT_NUM_QUEUES) {
			unsigned want = (c->cdw11 & 0xffff) + 1;
			unsigned g = want < e->cfg.grant ? want : e->cfg.grant;

			*dw0 = (g - 1) | (g - 1) << 16;
		} else if ((c->cdw10 & 0xff) != NVME_FEAT_ASYNC_EVENT) {
			*st = NVME_SC_INVALID_FIELD;
		}
		return true;
	case NVME_ADM_CREATE_CQ:
	case NVME_ADM_CREATE_SQ:
		*st = create_queue(e, c);
		return true;
	case NVME_ADM_GET_LOG:
		numd = (c->cdw10 >> 16) + 1;
		memset(buf, 0, PAGE);
		if ((c->cdw10 & 0xff) == NVME_LOG_CHANGED_NS && e->ns_changed)
			buf[0] = 1;
		e->ns_changed = false;
		if (emu_dma(c->prp1, c->prp2, buf, numd * 4 < PAGE ? numd * 4 : PAGE,
			    false))
			*st = NVME_SC_DATA_TRANSFER;
		return true;
	case NVME_ADM_AER:
		if (e->cfg.aerfail) {
			e->cfg.aerfail--;
			*st = NVME_SC_INTERNAL;
			return true;
		}
		if (e->naer == EMU_MAX_AER) {
			*st = NVME_SC_AER_LIMIT;
			return true;
		}
		e->aer_cid[e->naer++] = c->cid;
		aen_fire(e);
		return false;
	case NVME_ADM_DELETE_SQ:
	case NVME_ADM_DELETE_CQ:
		return true;
	default:
		*st = NVME_SC_INVALID_OPCODE;
		return true;
	}
}

/* I/O command faults by number; false when the command must not complete. */
static bool faults(struct emu *e, uint16_t sqid, const struct nvme_sqe *c)
{
	unsigned n = ++e->io_cmds;

	if (n == e->cfg.cfs_at) {
		e->fatal = true;
		e->csts |= NVME_CSTS_CFS;
		return false;
	}
	if (n == e->cfg.gone_at) {
		e->gone = true;
		return false;
	}
	if (n == e->cfg.resize_at)
		emu_resize(e, e->cfg.resize_to);
	if (n == e->cfg.badcid_at)
		emu_post(e, sqid, (uint16_t)(c->cid ^ 0x3ff), 0, 0);
	return n != e->cfg.drop_at;
}

static void run_sq(struct emu *e, uint16_t qid)
{
	struct emu_sq *q = &e->sq[qid];

	while (q->on && !e->fatal && !e->gone && q->head != q->tail) {
		struct nvme_sqe c = ((struct nvme_sqe *)(uintptr_t)q->base)[q->head];
		uint16_t st = 0;
		uint32_t dw0 = 0;
		bool post;

		if (++q->head == q->size)
			q->head = 0;
		if (qid == 0 && NVME_PSDT(c.flags)) {
			st = NVME_SC_INVALID_FIELD; /* PCIe admin commands: PRPs only */
			post = true;
		} else if (qid == 0) {
			post = admin(e, &c, &st, &dw0);
		} else {
			post = faults(e, qid, &c) && emu_io(e, qid, &c, &st);
		}
		if (post)
			emu_post(e, qid, c.cid, st, dw0);
	}
}

static void set_cc(struct emu *e, uint32_t v)
{
	bool was = e->cc & NVME_CC_EN;

	e->cc = v;
	if ((v & NVME_CC_EN) && !was) {
		e->sq[0] = (struct emu_sq){ .base = e->asq,
					    .size = (e->aqa & 0xfff) + 1,
					    .on = true };
		e->cq[0] = (struct emu_cq){ .base = e->acq,
					    .size = ((e->aqa >> 16) & 0xfff) + 1,
					    .phase = 1,
					    .ien = true,
					    .on = true };
		if (!e->cfg.noready)
			e->csts |= NVME_CSTS_RDY;
	} else if (!(v & NVME_CC_EN) && was) {
		memset(e->sq, 0, sizeof(e->sq));
		memset(e->cq, 0, sizeof(e->cq));
		e->naer = 0;
		e->csts &= ~(NVME_CSTS_RDY | NVME_CSTS_SHST_MASK);
	}
	if (v & NVME_CC_SHN_MASK)
		e->csts = (e->csts & ~NVME_CSTS_SHST_MASK) | NVME_CSTS_SHST_DONE;
}

static uint64_t cap(const struct emu *e)
{
	return (uint64_t)e->cfg.mqes | UINT64_C(1) << 16 /* CQR */ |
	       UINT64_C(1) << 24 /* TO: 500 ms */ | UINT64_C(1) << 37 /* NVM */;
}

static uint32_t e_read32(struct nvme_dev *d, uint32_t off)
{
	struct emu *e = E(d);
	uint32_t v = 0;

	pthread_mutex_lock(&e->lock);
	if (e->gone)
		v = UINT32_MAX;
	else if (off == NVME_REG_CAP || off == NVME_REG_CAP + 4)
		v = (uint32_t)(cap(e) >> (off == NVME_REG_CAP ? 0 : 32));
	else if (off == NVME_REG_VS)
		v = 0x10400;
	else if (off == NVME_REG_CC)
		v = e->cc;
	else if (off == NVME_REG_CSTS)
		v = e->csts;
	else if (off == NVME_REG_AQA)
		v = e->aqa;
	pthread_mutex_unlock(&e->lock);
	return v;
}

static void e_write32(struct nvme_dev *d, uint32_t off, uint32_t v)
{
	struct emu *e = E(d);

	pthread_mutex_lock(&e->lock);
	if (e->gone) {
		/* writes to a removed device go nowhere */
	} else if (off == NVME_REG_CC) {
		set_cc(e, v);
	} else if (off == NVME_REG_AQA) {
		e->aqa = v;
	} else if (off >= NVME_REG_DBS && (off - NVME_REG_DBS) / 8 < EMU_MAX_Q) {
		unsigned qid = (off - NVME_REG_DBS) / 8;

		if ((off - NVME_REG_DBS) % 8 == 0) {
			e->sq[qid].tail = (uint16_t)v;
			run_sq(e, (uint16_t)qid);
		} else {
			e->cq[qid].head = (uint16_t)v;
		}
	}
	pthread_mutex_unlock(&e->lock);
}

static uint64_t e_read64(struct nvme_dev *d, uint32_t off)
{
	uint64_t lo = e_read32(d, off);

	return lo | (uint64_t)e_read32(d, off + 4) << 32;
}

static void e_write64(struct nvme_dev *d, uint32_t off, uint64_t v)
{
	struct emu *e = E(d);

	pthread_mutex_lock(&e->lock);
	if (off == NVME_REG_ASQ)
		e->asq = v;
	else if (off == NVME_REG_ACQ)
		e->acq = v;
	pthread_mutex_unlock(&e->lock);
}

static int e_dma_alloc(struct nvme_dev *d, size_t len, void **va, uint64_t *iova)
{
	void *p = aligned_alloc(PAGE, len);

	(void)d;
	if (!p)
		return dc_fail(-ENOMEM, "emu: out of memory");
	memset(p, 0, len);
	*va = p;
	*iova = (uintptr_t)p;
	return 0;
}

static void e_dma_free(struct nvme_dev *d, void *va, size_t len, uint64_t iova)
{
	(void)d;
	(void)len;
	(void)iova;
	free(va);
}

static int e_irq_fd(struct nvme_dev *d, unsigned v)
{
	return E(d)->irq[v % E(d)->cfg.nvec];
}

static int e_bus_master(struct nvme_dev *d)
{
	(void)d;
	return 0;
}

static void e_close(struct nvme_dev *d)
{
	struct emu *e = E(d);

	for (unsigned i = 0; i < e->cfg.nvec; i++)
		close(e->irq[i]);
	free(e->data);
	pthread_mutex_destroy(&e->lock);
	free(e);
}

static const struct nvme_dev_ops emu_ops = {
	.read32 = e_read32,
	.write32 = e_write32,
	.read64 = e_read64,
	.write64 = e_write64,
	.dma_alloc = e_dma_alloc,
	.dma_free = e_dma_free,
	.irq_fd = e_irq_fd,
	.enable_bus_master = e_bus_master,
	.close = e_close,
};

int emu_create(const struct emu_cfg *cfg, struct nvme_dev **out)
{
	struct emu *e = calloc(1, sizeof(*e));
	uint64_t room = cfg->bytes > cfg->resize_to ? cfg->bytes : cfg->resize_to;

	if (!e || !(e->data = calloc(1, room ? room : 1))) {
		free(e);
		return dc_fail(-ENOMEM, "emu: cannot allocate %llu bytes",
			       (unsigned long long)room);
	}
	e->cfg = *cfg;
	e->d.ops = &emu_ops;
	e->d.nvec = cfg->nvec;
	snprintf(e->d.name, sizeof(e->d.name), "emulated");
	e->shift = cfg->sector == 4096 ? 12 : 9;
	e->nsze = cfg->bytes >> e->shift;
	pthread_mutex_init(&e->lock, NULL);
	for (unsigned i = 0; i < cfg->nvec; i++)
		e->irq[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	*out = &e->d;
	return 0;
}
