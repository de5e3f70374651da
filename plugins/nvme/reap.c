/* SPDX-License-Identifier: MIT */
/* Reaping a completion queue: each completion is matched to its slot by CID
 * and handed to the I/O path (io.c) or to the admin command's callback; then
 * the requests waiting for slots are issued. Above both qp.c and io.c, so the
 * rings never call up into the I/O path. */
#include "drv.h"

static struct nvme_slot *slot_of(struct nvme_qp *qp, uint16_t cid)
{
	unsigned i = cid & NVME_CID_SLOT_MASK;
	struct nvme_slot *s;

	if (i >= qp->nslots)
		return NULL;
	s = &qp->slots[i];
	if (!s->busy || s->seq != cid >> NVME_CID_SLOT_BITS)
		return NULL;
	return s;
}

int nvme_qp_reap_locked(struct nvme_qp *qp, struct nvme_rctx **done)
{
	int n = 0;

	for (;;) {
		struct nvme_cqe *e = &qp->cq[qp->cq_head];
		uint16_t st = __atomic_load_n(&e->status, __ATOMIC_ACQUIRE);
		struct nvme_slot *s;

		if ((st & 1) != qp->phase)
			break;
		s = slot_of(qp, e->cid);
		if (++qp->cq_head == qp->depth) {
			qp->cq_head = 0;
			qp->phase ^= 1;
		}
		n++;
		if (!s) {
			atomic_fetch_add(&qp->c->bad_cids, 1);
			dc_debug(
				"nvme %s: queue %u: completion for unknown CID %#x dropped",
				qp->c->dev->name, qp->qid, e->cid);
			continue;
		}
		if (s->rc) {
			nvme_io_chunk_done(qp, s, NVME_STATUS(st), done);
		} else {
			s->cb(s, NVME_STATUS(st), e->dw0);
			nvme_slot_put(qp, s);
		}
	}
	if (n) {
		nvme_wr32(qp->c->dev, qp->cq_db, qp->cq_head);
		if (qp->pend_head)
			nvme_io_issue_locked(qp);
		nvme_qp_ring(qp);
	}
	return n;
}

void nvme_complete_list(struct nvme_rctx *done)
{
	while (done) {
		struct nvme_rctx *next = done->next;

		dc_complete_detail(done->req, done->result, done->detail);
		done = next;
	}
}

int nvme_qp_reap(struct nvme_qp *qp)
{
	struct nvme_rctx *done = NULL;
	int n = 0;

	pthread_mutex_lock(&qp->lock);
	nvme_qp_reap_locked(qp, &done);
	pthread_mutex_unlock(&qp->lock);
	for (struct nvme_rctx *r = done; r; r = r->next)
		n++;
	nvme_complete_list(done);
	return n;
}
