/* SPDX-License-Identifier: MIT */
/* Controller bring-up (reset, admin queue, enable, Identify, I/O queue pairs)
 * and the clean shutdown (CC.SHN) on close. Every wait on the controller is
 * bounded by CAP.TO or the command timeout. */
#include "drv.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int nvme_reaper_start(struct nvme_ctrl *c);
void nvme_reaper_stop(struct nvme_ctrl *c);

static int wait_csts(struct nvme_ctrl *c, uint32_t mask, uint32_t want, const char *what)
{
	uint64_t deadline = nvme_now_ns() + c->ready_ns;
	useconds_t pause = 10;

	for (;;) {
		uint32_t csts = nvme_rd32(c->dev, NVME_REG_CSTS);

		if (csts == UINT32_MAX)
			return dc_fail(-ENODEV,
				       "%s: the device is gone (CSTS reads all ones)",
				       c->dev->name);
		if (csts & NVME_CSTS_CFS)
			return dc_fail(-EIO,
				       "%s: controller fatal status (CSTS.CFS) while %s",
				       c->dev->name, what);
		if ((csts & mask) == want)
			return 0;
		if (nvme_now_ns() > deadline)
			return dc_fail(-ETIMEDOUT,
				       "%s: timed out after %llu ms (CAP.TO) %s",
				       c->dev->name,
				       (unsigned long long)(c->ready_ns / 1000000), what);
		/* A register poll with backoff, bounded by the deadline. */
		usleep(pause);
		if (pause < 1000)
			pause *= 2;
	}
}

static int admin_ok(struct nvme_ctrl *c, int rc, const char *what)
{
	if (rc < 0)
		return dc_fail(rc, "%s: %s: %s", c->dev->name, what, strerror(-rc));
	if (rc > 0)
		return dc_fail(-EIO, "%s: %s failed with NVMe status %#x", c->dev->name,
			       what, rc);
	return 0;
}

static void idstr(char *dst, const uint8_t *src, size_t n)
{
	memcpy(dst, src, n);
	dst[n] = 0;
	while (n && (dst[n - 1] == ' ' || dst[n - 1] == 0))
		dst[--n] = 0;
}

static int reset_and_enable(struct nvme_ctrl *c)
{
	struct nvme_dev *d = c->dev;
	uint32_t aqa = (NVME_ADMIN_DEPTH - 1) << 16 | (NVME_ADMIN_DEPTH - 1);
	int rc;

	if ((nvme_rd32(d, NVME_REG_CC) & NVME_CC_EN) ||
	    (nvme_rd32(d, NVME_REG_CSTS) & NVME_CSTS_RDY)) {
		nvme_wr32(d, NVME_REG_CC, nvme_rd32(d, NVME_REG_CC) & ~NVME_CC_EN);
		rc = wait_csts(c, NVME_CSTS_RDY, 0, "resetting the controller");
		if (rc)
			return rc;
	}
	rc = nvme_qp_init(c, &c->admin, 0, NVME_ADMIN_DEPTH, 0);
	if (rc)
		return rc;
	nvme_wr32(d, NVME_REG_AQA, aqa);
	nvme_wr64(d, NVME_REG_ASQ, c->admin.sq_iova);
	nvme_wr64(d, NVME_REG_ACQ, c->admin.cq_iova);
	nvme_wr32(d, NVME_REG_CC, NVME_CC_EN | NVME_CC_IOSQES(6) | NVME_CC_IOCQES(4));
	return wait_csts(c, NVME_CSTS_RDY, NVME_CSTS_RDY, "enabling the controller");
}

static int identify_ctrl(struct nvme_ctrl *c)
{
	uint8_t id[NVME_PAGE];
	struct nvme_sqe e = { .opc = NVME_ADM_IDENTIFY, .cdw10 = 1 };
	int rc = admin_ok(c, nvme_admin(c, &e, NULL, id, NVME_PAGE, NULL),
			  "Identify Controller");

	if (rc)
		return rc;
	idstr(c->serial, id + NVME_IDC_SN, 20);
	idstr(c->model, id + NVME_IDC_MN, 40);
	idstr(c->firmware, id + NVME_IDC_FR, 8);
	c->mdts = id[NVME_IDC_MDTS];
	c->nn = le32toh(*(uint32_t *)(id + NVME_IDC_NN));
	c->oncs = (uint16_t)(id[NVME_IDC_ONCS] | id[NVME_IDC_ONCS + 1] << 8);
	c->vwc = id[NVME_IDC_VWC] & 1;
	c->sgls = le32toh(*(uint32_t *)(id + NVME_IDC_SGLS));
	c->use_sgl = NVME_SGLS_SUPPORTED(c->sgls);
	return 0;
}

/* Unmap is DSM deallocate when the controller has it (advisory: contents
 * unspecified); otherwise Write Zeroes, which always reads back zeroes, with
 * the Deallocate bit only when deallocated blocks read as zeroes. */
static void choose_unmap(struct nvme_ctrl *c)
{
	c->wz_flags = 0;
	if (c->oncs & NVME_ONCS_DSM) {
		c->unmap_cmd = NVME_CMD_DSM;
	} else if (c->oncs & NVME_ONCS_WRITE_ZEROES) {
		c->unmap_cmd = NVME_CMD_WRITE_ZEROES;
		if (NVME_DLFEAT_READ_ZERO(c->dlfeat) && NVME_DLFEAT_WZ_DEAC(c->dlfeat))
			c->wz_flags = NVME_WZ_DEAC;
	} else {
		c->unmap_cmd = 0;
	}
}

static int identify_ns(struct nvme_ctrl *c)
{
	uint8_t id[NVME_PAGE];
	uint64_t nsze;
	uint32_t lbaf, ms, lbads;
	unsigned fmt;
	int rc;

	if (c->nsid == 0 || c->nsid > c->nn)
		return dc_fail(-ENOENT, "%s: no namespace %u (the controller has %u)",
			       c->dev->name, c->nsid, c->nn);
	rc = admin_ok(c, nvme_identify_ns(c, &nsze, id), "Identify Namespace");
	if (rc)
		return rc;
	if (nsze == 0)
		return dc_fail(-ENOENT, "%s: namespace %u is not active", c->dev->name,
			       c->nsid);
	c->nsfeat = id[NVME_IDN_NSFEAT];
	c->nlbaf = id[NVME_IDN_NLBAF];
	c->flbas = id[NVME_IDN_FLBAS];
	fmt = c->flbas & 0xf;
	if (fmt > c->nlbaf)
		return dc_fail(-EINVAL,
			       "%s: namespace %u: LBA format %u is past NLBAF %u",
			       c->dev->name, c->nsid, fmt, c->nlbaf);
	lbaf = le32toh(*(uint32_t *)(id + NVME_IDN_LBAF + 4 * fmt));
	ms = lbaf & 0xffff;
	lbads = (lbaf >> 16) & 0xff;
	if (ms)
		return dc_fail(-EOPNOTSUPP,
			       "%s: namespace %u is formatted with %u bytes of metadata "
			       "per block (LBA format %u): metadata is not supported; "
			       "format it with an LBA format without metadata",
			       c->dev->name, c->nsid, ms, fmt);
	if (lbads < 9 || lbads > 16)
		return dc_fail(-EOPNOTSUPP,
			       "%s: namespace %u: %u-byte blocks (2^%u) are "
			       "not supported (512 B to 64 KiB)",
			       c->dev->name, c->nsid, 1u << (lbads & 31), lbads);
	c->shift = lbads;
	c->rescap = (c->oncs & NVME_ONCS_RESERVATIONS) ? id[NVME_IDN_RESCAP] : 0;
	c->dlfeat = id[NVME_IDN_DLFEAT];
	choose_unmap(c);
	if (c->nsfeat & (1u << 4))
		c->npdg = (uint16_t)(id[NVME_IDN_NPDG] | id[NVME_IDN_NPDG + 1] << 8) + 1;
	atomic_store(&c->nsze, nsze);
	return 0;
}

/* The largest READ/WRITE: MDTS (in minimum pages, 4 KiB) capped by the
 * slot's bounce buffer, in whole blocks. */
static int size_transfers(struct nvme_ctrl *c)
{
	uint64_t max = NVME_SLOT_BYTES;

	if (c->mdts && c->mdts < 20 && ((uint64_t)NVME_PAGE << c->mdts) < max)
		max = (uint64_t)NVME_PAGE << c->mdts;
	max &= ~((UINT64_C(1) << c->shift) - 1);
	if (!max)
		return dc_fail(
			-EOPNOTSUPP,
			"%s: MDTS %u allows less than one %u-byte block per command",
			c->dev->name, c->mdts, 1u << c->shift);
	c->max_xfer = (uint32_t)max;
	return 0;
}

static int create_io_queue(struct nvme_ctrl *c, unsigned qid)
{
	struct nvme_qp *qp = calloc(1, sizeof(*qp));
	unsigned vec = qid % c->dev->nvec;
	struct nvme_sqe cq = { .opc = NVME_ADM_CREATE_CQ };
	struct nvme_sqe sq = { .opc = NVME_ADM_CREATE_SQ };
	int rc;

	if (!qp)
		return dc_fail(-ENOMEM, "out of memory");
	rc = nvme_qp_init(c, qp, (uint16_t)qid, (uint16_t)c->depth, vec);
	if (rc) {
		free(qp);
		return rc;
	}
	cq.prp1 = qp->cq_iova;
	cq.cdw10 = (c->depth - 1) << 16 | qid;
	cq.cdw11 = vec << 16 | 3; /* interrupts enabled, physically contiguous */
	sq.prp1 = qp->sq_iova;
	sq.cdw10 = cq.cdw10;
	sq.cdw11 = qid << 16 | 1;
	rc = admin_ok(c, nvme_admin(c, &cq, NULL, NULL, 0, NULL), "Create I/O CQ");
	if (!rc)
		rc = admin_ok(c, nvme_admin(c, &sq, NULL, NULL, 0, NULL),
			      "Create I/O SQ");
	if (rc) {
		nvme_qp_destroy(qp);
		free(qp);
		return rc;
	}
	c->io[c->nio++] = qp;
	return 0;
}

static int create_io_queues(struct nvme_ctrl *c)
{
	unsigned want = c->nrequested, granted;
	uint32_t dw0 = 0;
	struct nvme_sqe e = { .opc = NVME_ADM_SET_FEATURES,
			      .cdw10 = NVME_FEAT_NUM_QUEUES,
			      .cdw11 = (want - 1) | (want - 1) << 16 };
	int rc = admin_ok(c, nvme_admin(c, &e, NULL, NULL, 0, &dw0),
			  "Set Features (Number of Queues)");

	if (rc)
		return rc;
	granted = (dw0 & 0xffff) < (dw0 >> 16) ? (dw0 & 0xffff) : (dw0 >> 16);
	granted++;
	if (granted > want)
		granted = want;
	c->depth = c->depth < NVME_CAP_MQES(c->cap) + 1u ? c->depth :
							   NVME_CAP_MQES(c->cap) + 1u;
	for (unsigned q = 1; q <= granted; q++) {
		rc = create_io_queue(c, q);
		/* Past the first, a queue that cannot be made is shared. */
		if (rc && q == 1)
			return rc;
		if (rc)
			break;
	}
	return 0;
}

int nvme_ctrl_start(struct nvme_ctrl *c)
{
	struct nvme_dev *d = c->dev;
	int rc;

	rc = d->ops->enable_bus_master(d);
	if (rc)
		return rc;
	c->cap = nvme_rd64(d, NVME_REG_CAP);
	if (c->cap == UINT64_MAX)
		return dc_fail(-ENODEV, "%s: the device is gone (CAP reads all ones)",
			       d->name);
	if (NVME_CAP_MQES(c->cap) == 0)
		return dc_fail(-EINVAL,
			       "%s: CAP.MQES is 0 (queues of one entry): not a "
			       "usable controller",
			       d->name);
	if (NVME_CAP_MPSMIN(c->cap) != 0)
		return dc_fail(-EOPNOTSUPP, "%s: CAP.MPSMIN %u: 4 KiB pages are needed",
			       d->name, NVME_CAP_MPSMIN(c->cap));
	if (!NVME_CAP_CSS_NVM(c->cap))
		return dc_fail(-EOPNOTSUPP, "%s: the NVM command set is not supported",
			       d->name);
	c->dstrd = NVME_CAP_DSTRD(c->cap);
	c->ready_ns =
		(uint64_t)(NVME_CAP_TO(c->cap) ? NVME_CAP_TO(c->cap) : 1) * 500000000u;
	c->vs = nvme_rd32(d, NVME_REG_VS);
	rc = reset_and_enable(c);
	if (!rc)
		rc = identify_ctrl(c);
	if (!rc)
		rc = identify_ns(c);
	if (!rc)
		rc = size_transfers(c);
	if (!rc)
		rc = create_io_queues(c);
	if (!rc)
		rc = nvme_reaper_start(c);
	return rc;
}

/* After a failed start too: everything made so far goes. */
void nvme_ctrl_stop(struct nvme_ctrl *c)
{
	nvme_reaper_stop(c);
	if (c->admin.slots && !atomic_load(&c->dead)) {
		uint32_t cc = nvme_rd32(c->dev, NVME_REG_CC);

		nvme_wr32(c->dev, NVME_REG_CC,
			  (cc & ~NVME_CC_SHN_MASK) | NVME_CC_SHN_NORMAL);
		if (wait_csts(c, NVME_CSTS_SHST_MASK, NVME_CSTS_SHST_DONE,
			      "shutting down (CC.SHN)"))
			dc_debug("nvme %s: %s", c->dev->name, dc_last_error());
	} else if (c->admin.slots) {
		/* Failed: disable it, so it stops reaching the memory freed below. */
		nvme_wr32(c->dev, NVME_REG_CC,
			  nvme_rd32(c->dev, NVME_REG_CC) & ~NVME_CC_EN);
	}
	for (unsigned i = 0; i < c->nio; i++) {
		nvme_qp_destroy(c->io[i]);
		free(c->io[i]);
	}
	c->nio = 0;
	nvme_qp_destroy(&c->admin);
	pthread_cond_destroy(&c->admin_cv);
}
