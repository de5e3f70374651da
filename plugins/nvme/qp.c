/* SPDX-License-Identifier: MIT */
/* Queue pairs: a submission and a completion ring in DMA memory, and one
 * command slot per SQ entry (less one: a full ring is never ambiguous), each
 * with its own bounce buffer and PRP list (none with SGLs). The CID is the
 * slot's index with a sequence number above it, so a completion whose CID
 * matches no command in flight (a stale or corrupt one) is counted and
 * dropped (reap.c), not trusted. */
#include "drv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t nvme_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t page_round(size_t n)
{
	return (n + NVME_PAGE - 1) & ~(size_t)(NVME_PAGE - 1);
}

static void slots_layout(struct nvme_qp *qp, uint32_t slot_bytes, size_t ring_bytes,
			 bool lists)
{
	for (unsigned i = 0; i < qp->nslots; i++) {
		struct nvme_slot *s = &qp->slots[i];
		size_t boff = ring_bytes + (size_t)i * slot_bytes;
		size_t loff = ring_bytes + (size_t)qp->nslots * slot_bytes +
			      (size_t)i * NVME_PAGE;

		s->index = (uint16_t)i;
		s->buf = qp->dma + boff;
		s->buf_iova = qp->dma_iova + boff;
		qp->freelist[i] = (uint16_t)(qp->nslots - 1 - i);
		if (!lists)
			continue;
		/* The list never changes: entry k is the buffer's page k + 1. */
		uint64_t *l = (uint64_t *)(qp->dma + loff);
		s->list_iova = qp->dma_iova + loff;
		for (uint32_t k = 0; k + 1 < slot_bytes / NVME_PAGE; k++)
			l[k] = s->buf_iova + (uint64_t)(k + 1) * NVME_PAGE;
	}
	qp->nfree = qp->nslots;
}

/* depth entries in both rings; the slots' buffers are c->max_xfer bytes on an
 * I/O queue, one page on the admin queue. */
int nvme_qp_init(struct nvme_ctrl *c, struct nvme_qp *qp, uint16_t qid, uint16_t depth,
		 unsigned vec)
{
	uint32_t slot_bytes = qid ? c->max_xfer : NVME_PAGE;
	size_t sq_bytes = page_round((size_t)depth * sizeof(struct nvme_sqe));
	size_t ring_bytes =
		sq_bytes + page_round((size_t)depth * sizeof(struct nvme_cqe));
	uint32_t stride = 4u << c->dstrd;
	/* PRP lists only where PRPs describe buffers past two pages. */
	bool lists = slot_bytes > 2 * NVME_PAGE && !(qid && c->use_sgl);
	int rc;

	memset(qp, 0, sizeof(*qp));
	qp->c = c;
	qp->qid = qid;
	qp->depth = depth;
	qp->phase = 1;
	qp->vec = vec;
	qp->nslots = depth - 1u;
	if (qp->nslots > NVME_CID_SLOT_MASK + 1u)
		qp->nslots = NVME_CID_SLOT_MASK + 1u;
	qp->sq_db = NVME_REG_DBS + 2u * qid * stride;
	qp->cq_db = qp->sq_db + stride;
	qp->irq_fd = c->dev->ops->irq_fd(c->dev, vec);
	qp->dma_len = ring_bytes + (size_t)qp->nslots * slot_bytes;
	if (lists)
		qp->dma_len += (size_t)qp->nslots * NVME_PAGE;
	qp->slots = calloc(qp->nslots, sizeof(*qp->slots));
	qp->freelist = calloc(qp->nslots, sizeof(*qp->freelist));
	if (!qp->slots || !qp->freelist) {
		rc = dc_fail(-ENOMEM, "out of memory for queue %u", qid);
		goto fail;
	}
	rc = c->dev->ops->dma_alloc(c->dev, qp->dma_len, (void **)&qp->dma,
				    &qp->dma_iova);
	if (rc < 0)
		goto fail;
	qp->sq = (struct nvme_sqe *)qp->dma;
	qp->cq = (struct nvme_cqe *)(qp->dma + sq_bytes);
	qp->sq_iova = qp->dma_iova;
	qp->cq_iova = qp->dma_iova + sq_bytes;
	slots_layout(qp, slot_bytes, ring_bytes, lists);
	pthread_mutex_init(&qp->lock, NULL);
	return 0;
fail:
	free(qp->slots);
	free(qp->freelist);
	qp->slots = NULL;
	qp->freelist = NULL;
	return rc;
}

void nvme_qp_destroy(struct nvme_qp *qp)
{
	if (!qp->slots)
		return;
	qp->c->dev->ops->dma_free(qp->c->dev, qp->dma, qp->dma_len, qp->dma_iova);
	free(qp->slots);
	free(qp->freelist);
	qp->slots = NULL;
	pthread_mutex_destroy(&qp->lock);
}

struct nvme_slot *nvme_slot_get(struct nvme_qp *qp)
{
	struct nvme_slot *s;

	if (!qp->nfree)
		return NULL;
	s = &qp->slots[qp->freelist[--qp->nfree]];
	s->busy = true;
	s->seq = (uint16_t)((s->seq + 1) & (0xffffu >> NVME_CID_SLOT_BITS));
	s->rc = NULL;
	s->cb = NULL;
	s->len = 0;
	s->deadline_ns = UINT64_MAX;
	return s;
}

void nvme_slot_put(struct nvme_qp *qp, struct nvme_slot *s)
{
	s->busy = false;
	qp->freelist[qp->nfree++] = s->index;
	if (s->rc) /* only requests count: the AER waits for ever */
		atomic_fetch_sub_explicit(&qp->c->busy, 1, memory_order_relaxed);
}

void nvme_qp_push(struct nvme_qp *qp, struct nvme_slot *s, struct nvme_sqe *sqe)
{
	sqe->cid = (uint16_t)(s->index | (s->seq << NVME_CID_SLOT_BITS));
	if (s->len && qp->qid && qp->c->use_sgl) {
		/* The bounce buffer is contiguous in IOVA: one Data Block
		 * descriptor, no list. Admin commands keep PRPs (PCIe). */
		sqe->flags |= NVME_PSDT_SGL;
		sqe->prp1 = s->buf_iova;
		sqe->prp2 = s->len | (uint64_t)NVME_SGL_DATA_BLOCK << 56;
	} else if (s->len) {
		sqe->prp1 = s->buf_iova;
		if (s->len > 2 * NVME_PAGE)
			sqe->prp2 = s->list_iova;
		else if (s->len > NVME_PAGE)
			sqe->prp2 = s->buf_iova + NVME_PAGE;
	}
	if (s->rc) {
		s->deadline_ns = nvme_now_ns() + qp->c->timeout_ns;
		atomic_fetch_add_explicit(&qp->c->busy, 1, memory_order_relaxed);
	}
	qp->sq[qp->sq_tail] = *sqe;
	if (++qp->sq_tail == qp->depth)
		qp->sq_tail = 0;
}

void nvme_qp_ring(struct nvme_qp *qp)
{
	if (qp->sq_tail == qp->sq_rung)
		return;
		/* The entries must be visible before the doorbell: x86 keeps stores
	 * in order (the compiler must too); elsewhere a full barrier. */
#if defined(__x86_64__) || defined(__i386__)
	__asm__ __volatile__("" ::: "memory");
#else
	__sync_synchronize();
#endif
	nvme_wr32(qp->c->dev, qp->sq_db, qp->sq_tail);
	qp->sq_rung = qp->sq_tail;
}

static void fail_rc(struct nvme_rctx *rc, int detail)
{
	rc->result = DC_E_IO;
	rc->detail = detail;
}

/* The controller is gone or wedged: nothing in flight will complete. */
void nvme_qp_fail_locked(struct nvme_qp *qp, int detail, struct nvme_rctx **done)
{
	struct nvme_rctx *p = qp->pend_head;

	qp->pend_head = qp->pend_tail = NULL;
	while (p) {
		struct nvme_rctx *next = p->next;

		fail_rc(p, detail);
		p->issued_all = true;
		if (!p->outstanding) {
			p->next = *done;
			*done = p;
		}
		p = next;
	}
	for (unsigned i = 0; i < qp->nslots; i++) {
		struct nvme_slot *s = &qp->slots[i];

		if (!s->busy)
			continue;
		if (s->rc) {
			fail_rc(s->rc, detail);
			if (--s->rc->outstanding == 0 && s->rc->issued_all) {
				s->rc->next = *done;
				*done = s->rc;
			}
		} else {
			s->cb(s, 0xffff, 0);
		}
		nvme_slot_put(qp, s);
	}
}

bool nvme_qp_polled(struct nvme_qp *qp)
{
	unsigned users = atomic_load(&qp->users);

	return users && atomic_load(&qp->pollers) == users;
}

bool nvme_qp_expired_locked(struct nvme_qp *qp, uint64_t now)
{
	for (unsigned i = 0; i < qp->nslots; i++)
		if (qp->slots[i].busy && qp->slots[i].deadline_ns < now)
			return true;
	return false;
}
