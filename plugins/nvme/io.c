/* SPDX-License-Identifier: MIT */
/* diskcore requests as NVMe commands: READ/WRITE split at the largest
 * transfer (MDTS, capped by the slot's bounce buffer), FLUSH, DSM deallocate
 * or Write Zeroes for unmap, the reservation commands; and the completion
 * status mapped to DC_E_* (docs/spec-strings.md, "nvme"). */
#include "drv.h"

#include <endian.h>
#include <string.h>

int nvme_status_to_dc(uint16_t status, int *detail)
{
	*detail = 0;
	switch (status) {
	case NVME_SC_SUCCESS:
		return 0;
	case NVME_SC_RSV_CONFLICT:
		return DC_E_RESERVATION_CONFLICT;
	case NVME_SC_INVALID_FIELD:
		return DC_E_INVALID_INPUT;
	case NVME_SC_LBA_RANGE:
		return DC_E_ILLEGAL_BLOCK;
	case NVME_SC_PREEMPT_ABORT:
		return DC_E_ABORTED_PREEMPT;
	case NVME_SC_WRITE_FAULT:
		*detail = DC_MEDIUM_WRITE_FAULT;
		return DC_E_MEDIUM;
	case NVME_SC_UNRECOVERED_READ:
		*detail = DC_MEDIUM_UNRECOVERED_READ;
		return DC_E_MEDIUM;
	case NVME_SC_GUARD:
		*detail = DC_MEDIUM_GUARD_CHECK;
		return DC_E_MEDIUM;
	case NVME_SC_APP_TAG:
		*detail = DC_MEDIUM_APP_TAG_CHECK;
		return DC_E_MEDIUM;
	case NVME_SC_REF_TAG:
		*detail = DC_MEDIUM_REF_TAG_CHECK;
		return DC_E_MEDIUM;
	case 0xffff: /* the driver's own: the controller is gone */
		*detail = ENOTCONN;
		return DC_E_IO;
	default: /* data transfer, capacity exceeded, and the rest */
		*detail = EIO;
		return DC_E_IO;
	}
}

static void rw_cmd(struct nvme_ctrl *c, struct nvme_rctx *rc, struct nvme_slot *s,
		   struct nvme_sqe *e)
{
	struct dc_req *req = rc->req;
	uint64_t left = req->buf.len - rc->off;
	uint32_t len = left < c->max_xfer ? (uint32_t)left : c->max_xfer;
	uint64_t slba = req->sector + (rc->off >> c->shift);

	s->len = len;
	s->boff = rc->off;
	if (req->op == DC_OP_WRITE) {
		dc_buf_copy_from(&req->buf, rc->off, s->buf, len);
		e->opc = NVME_CMD_WRITE;
		if (req->flags & DC_IO_FUA)
			e->cdw12 = NVME_RW_FUA;
	} else {
		e->opc = NVME_CMD_READ;
	}
	e->cdw10 = (uint32_t)slba;
	e->cdw11 = (uint32_t)(slba >> 32);
	e->cdw12 |= (len >> c->shift) - 1;
	rc->off += len;
	rc->issued_all = rc->off == req->buf.len;
}

/* Write Zeroes: no data, at most 65536 blocks (NLB is 16 bits). */
static void wz_cmd(struct nvme_ctrl *c, struct nvme_rctx *rc, struct nvme_sqe *e)
{
	struct dc_req *req = rc->req;
	uint64_t left = req->count - rc->off;
	uint32_t n = left < 65536 ? (uint32_t)left : 65536;
	uint64_t slba = req->sector + rc->off;

	e->opc = NVME_CMD_WRITE_ZEROES;
	e->cdw10 = (uint32_t)slba;
	e->cdw11 = (uint32_t)(slba >> 32);
	e->cdw12 = (n - 1) | c->wz_flags;
	rc->off += n;
	rc->issued_all = rc->off == req->count;
}

static void unmap_cmd(struct nvme_ctrl *c, struct nvme_rctx *rc, struct nvme_slot *s,
		      struct nvme_sqe *e)
{
	struct dc_req *req = rc->req;
	uint64_t left = req->count - rc->off;
	uint32_t n = left < UINT32_MAX ? (uint32_t)left : UINT32_MAX;
	uint64_t slba = req->sector + rc->off;

	if (c->unmap_cmd == NVME_CMD_WRITE_ZEROES) {
		wz_cmd(c, rc, e);
		return;
	}
	uint32_t range[4] = { 0, htole32(n), htole32((uint32_t)slba),
			      htole32((uint32_t)(slba >> 32)) };

	memcpy(s->buf, range, sizeof(range));
	s->len = sizeof(range);
	e->opc = NVME_CMD_DSM;
	e->cdw10 = 0; /* one range */
	e->cdw11 = NVME_DSM_AD;
	rc->off += n;
	rc->issued_all = rc->off == req->count;
}

/* A reservation command whose data is one or two keys (len bytes). */
static void pr_keys(struct nvme_slot *s, struct nvme_sqe *e, uint8_t opc, uint32_t cdw10,
		    uint64_t a, uint64_t b, uint32_t len)
{
	uint64_t k[2] = { htole64(a), htole64(b) };

	e->opc = opc;
	e->cdw10 = cdw10;
	memcpy(s->buf, k, sizeof(k));
	s->len = len;
}

static void pr_cmd(struct nvme_rctx *rc, struct nvme_slot *s, struct nvme_sqe *e)
{
	const struct dc_pr_args *p = rc->req->pr;
	uint32_t rtype = p->type << 8;

	switch (rc->req->op) {
	case DC_OP_PR_REGISTER: {
		uint32_t action = p->new_key == 0	     ? 1 :
				  (p->ignore_key || !p->key) ? 0 :
							       2;
		uint32_t cptpl = p->ptpl < 0 ? 0 : p->ptpl ? 3 : 2;

		pr_keys(s, e, NVME_CMD_RSV_REGISTER,
			action | (p->ignore_key ? 1u << 3 : 0) | cptpl << 30, p->key,
			p->new_key, 16);
		break;
	}
	case DC_OP_PR_RESERVE:
	case DC_OP_PR_PREEMPT: {
		/* Acquire action: 0 acquire, 1 preempt, 2 preempt and abort. */
		bool preempt = rc->req->op == DC_OP_PR_PREEMPT;
		uint32_t racqa = preempt ? (p->abort ? 2u : 1u) : 0;

		pr_keys(s, e, NVME_CMD_RSV_ACQUIRE, rtype | racqa, p->key,
			preempt ? p->new_key : 0, 16);
		break;
	}
	case DC_OP_PR_RELEASE:
	case DC_OP_PR_CLEAR:
		/* Release action 1 clears (and carries no type). */
		pr_keys(s, e, NVME_CMD_RSV_RELEASE,
			rc->req->op == DC_OP_PR_CLEAR ? 1 : rtype, p->key, 0, 8);
		break;
	default: /* DC_OP_PR_REPORT: the extended data structure, one page */
		e->opc = NVME_CMD_RSV_REPORT;
		e->cdw10 = NVME_PAGE / 4 - 1;
		e->cdw11 = 1;
		memset(s->buf, 0, NVME_PAGE);
		s->len = NVME_PAGE;
		break;
	}
	rc->issued_all = true;
}

static bool issue_one(struct nvme_qp *qp, struct nvme_rctx *rc)
{
	struct nvme_ctrl *c = qp->c;
	struct nvme_slot *s = nvme_slot_get(qp);
	struct nvme_sqe e = { .nsid = c->nsid };

	if (!s)
		return false;
	s->rc = rc;
	switch (rc->req->op) {
	case DC_OP_READ:
	case DC_OP_WRITE:
		rw_cmd(c, rc, s, &e);
		break;
	case DC_OP_FLUSH:
		e.opc = NVME_CMD_FLUSH;
		rc->issued_all = true;
		break;
	case DC_OP_UNMAP:
		unmap_cmd(c, rc, s, &e);
		break;
	default:
		pr_cmd(rc, s, &e);
		break;
	}
	rc->outstanding++;
	nvme_qp_push(qp, s, &e);
	return true;
}

void nvme_io_issue_locked(struct nvme_qp *qp)
{
	while (qp->pend_head && qp->nfree) {
		struct nvme_rctx *rc = qp->pend_head;

		issue_one(qp, rc);
		if (rc->issued_all) {
			qp->pend_head = rc->next;
			if (!qp->pend_head)
				qp->pend_tail = NULL;
		}
	}
}

static void pr_report(struct dc_pr_report *r, const uint8_t *b)
{
	uint16_t regctl = (uint16_t)(b[5] | b[6] << 8);
	uint32_t fit = (NVME_PAGE - NVME_RSV_HDR) / NVME_RSV_ENTRY;

	r->generation = le32toh(*(const uint32_t *)b);
	r->reservation_type = b[4];
	r->persist_through_power_loss = b[9] & 1;
	r->ncontrollers = regctl;
	for (uint32_t i = 0; i < regctl && i < r->max_controllers && i < fit; i++) {
		const uint8_t *e = b + NVME_RSV_HDR + i * NVME_RSV_ENTRY;
		struct dc_pr_controller *pc = &r->controllers[i];

		memset(pc, 0, sizeof(*pc));
		pc->controller_id = (uint16_t)(e[0] | e[1] << 8);
		pc->holds_reservation = e[2] & 1;
		memcpy(&pc->key, e + 8, 8);
		pc->key = le64toh(pc->key);
		memcpy(pc->host_id, e + 16, 16);
		pc->host_id_len = 16;
	}
}

void nvme_io_chunk_done(struct nvme_qp *qp, struct nvme_slot *s, uint16_t status,
			struct nvme_rctx **done)
{
	struct nvme_rctx *rc = s->rc;
	struct dc_req *req = rc->req;

	if (status) {
		int detail;
		int r = nvme_status_to_dc(status, &detail);

		if (!rc->result) {
			rc->result = r;
			rc->detail = detail;
		}
	} else if (req->op == DC_OP_READ) {
		dc_buf_copy_to(&req->buf, s->boff, s->buf, s->len);
	} else if (req->op == DC_OP_PR_REPORT) {
		pr_report(req->pr->report, s->buf);
	}
	nvme_slot_put(qp, s);
	if (--rc->outstanding == 0 && rc->issued_all) {
		rc->next = *done;
		*done = rc;
	}
}

static int pr_caps(struct nvme_ctrl *c, struct dc_pr_caps *caps)
{
	/* RESCAP bit n (1..6) is reservation type n, the same numbering as
	 * enum dc_pr_type; bit 0 is persist through power loss. */
	caps->types = c->rescap & 0x7eu;
	caps->persist_through_power_loss = c->rescap & 1;
	return 0;
}

/* What completes without a command: -1 when one is needed. */
static int answer_now(struct nvme_ctrl *c, struct dc_req *req, int *detail)
{
	*detail = 0;
	if (atomic_load(&c->ns_gone)) {
		*detail = ENODEV;
		return DC_E_IO;
	}
	if ((req->op == DC_OP_FLUSH && !c->vwc) ||
	    (req->op == DC_OP_UNMAP && (req->count == 0 || !c->unmap_cmd)))
		return 0;
	if (req->op >= DC_OP_PR_CAPS && !c->rescap)
		return DC_E_UNSUPPORTED;
	if (req->op == DC_OP_PR_CAPS)
		return pr_caps(c, req->pr->caps);
	return -1;
}

void nvme_submit(void *inst, struct dc_req *req)
{
	struct nvme_ctrl *c = inst;
	struct nvme_q *q = req->qctx;
	struct nvme_qp *qp = q ? q->qp : c->io[0];
	struct nvme_rctx *rc = req->ctx;
	int detail, now = answer_now(c, req, &detail);

	if (now != -1) {
		dc_complete_detail(req, now, detail);
		return;
	}
	memset(rc, 0, sizeof(*rc));
	rc->req = req;
	pthread_mutex_lock(&qp->lock);
	if (atomic_load(&c->dead)) {
		pthread_mutex_unlock(&qp->lock);
		dc_complete_detail(req, DC_E_IO, atomic_load(&c->dead_detail));
		return;
	}
	if (!qp->pend_head)
		while (!rc->issued_all && issue_one(qp, rc))
			;
	if (!rc->issued_all) {
		if (qp->pend_tail)
			qp->pend_tail->next = rc;
		else
			qp->pend_head = rc;
		qp->pend_tail = rc;
	}
	nvme_qp_ring(qp);
	pthread_mutex_unlock(&qp->lock);
}
