/* SPDX-License-Identifier: MIT */
/* The NVMe driver's state: the controller, its queue pairs and their command
 * slots. Shared by ctrl.c (bring-up, admin commands, events), qp.c (rings),
 * io.c (diskcore requests as NVMe commands) and plugin.c (the callbacks). */
#ifndef NVME_DRV_H
#define NVME_DRV_H

#include "dev.h"
#include "hw.h"

#include <diskcore/plugin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define NVME_PAGE 4096u
#define NVME_SLOT_BYTES (128u * 1024) /* bounce buffer of one command */
#define NVME_ADMIN_DEPTH 32u
#define NVME_MAX_QUEUES 64u
#define NVME_CID_SLOT_BITS 10 /* CID = slot | sequence << 10 */
#define NVME_CID_SLOT_MASK ((1u << NVME_CID_SLOT_BITS) - 1)

struct nvme_ctrl;
struct nvme_slot;

/* A command that is not a diskcore request's (admin, AER): cb runs under the
 * queue pair's lock while the slot (and its buffer) is still held. */
typedef void (*nvme_slot_cb)(struct nvme_slot *s, uint16_t status, uint32_t dw0);

/* One diskcore request on its way through the queue pair: the ctx scratch. */
struct nvme_rctx {
	struct dc_req *req;
	struct nvme_rctx *next; /* on the pending or finished list */
	uint64_t off;		/* bytes (sectors for unmap) issued so far */
	uint32_t outstanding;	/* commands in flight */
	bool issued_all;
	int result;
	int detail;
};

struct nvme_slot {
	bool busy;
	uint16_t seq;
	uint16_t index;
	uint32_t len;  /* data bytes of this command */
	uint64_t boff; /* offset of the data in the request's buffer */
	uint64_t deadline_ns;
	struct nvme_rctx *rc; /* a request's command, or NULL */
	nvme_slot_cb cb;
	void *arg;
	uint8_t *buf; /* NVME_SLOT_BYTES of DMA memory */
	uint64_t buf_iova;
	uint64_t list_iova; /* a PRP list covering buf past its first page */
};

struct nvme_qp {
	pthread_mutex_t lock;
	struct nvme_ctrl *c;
	uint16_t qid;
	uint16_t depth; /* SQ and CQ entries */
	uint16_t sq_tail, cq_head, sq_rung;
	uint8_t phase;
	struct nvme_sqe *sq;
	struct nvme_cqe *cq;
	uint64_t sq_iova, cq_iova;
	uint32_t sq_db, cq_db;
	unsigned vec;
	int irq_fd;
	unsigned nslots, nfree;
	struct nvme_slot *slots;
	uint16_t *freelist;
	uint8_t *dma; /* bounce buffers, then PRP lists, one of each per slot */
	uint64_t dma_iova;
	size_t dma_len;
	struct nvme_rctx *pend_head, *pend_tail;
	atomic_uint users;   /* diskcore queues on it */
	atomic_uint pollers; /* those driven by dc_queue_wait() (queue_poll) */
};

/* A diskcore queue's state: the queue pair it uses. */
struct nvme_q {
	struct nvme_qp *qp;
	bool polling; /* queue_poll() was called: its thread reaps */
};

struct nvme_ctrl {
	struct nvme_dev *dev;
	struct dc_node *node;
	uint64_t cap;
	uint32_t dstrd;
	uint64_t timeout_ns; /* per command */
	uint64_t ready_ns;   /* CAP.TO */
	uint32_t nsid;
	/* Identify Controller. */
	char model[41], serial[21], firmware[9];
	uint32_t vs;
	uint8_t mdts;
	uint16_t oncs;
	uint8_t vwc;
	uint32_t nn;
	uint32_t sgls;
	bool use_sgl; /* I/O data pointers are SGL descriptors, not PRPs */
	/* Identify Namespace. */
	_Atomic uint64_t nsze;
	uint32_t shift; /* log2 of the sector size */
	uint8_t flbas, nlbaf, nsfeat, rescap, dlfeat;
	uint8_t unmap_cmd; /* NVME_CMD_DSM, NVME_CMD_WRITE_ZEROES or 0: none */
	uint32_t wz_flags; /* NVME_WZ_DEAC when deallocating reads zeroes */
	uint16_t npdg;
	uint32_t max_xfer; /* bytes per READ/WRITE */
	/* Queues. */
	struct nvme_qp admin;
	struct nvme_qp *io[NVME_MAX_QUEUES];
	unsigned nio, nrequested, depth;
	atomic_uint next_q;
	/* State. */
	atomic_bool dead;
	atomic_int dead_detail;
	atomic_bool ns_gone;
	atomic_uint busy;     /* commands in flight, all queues */
	atomic_uint bad_cids; /* completions that matched no command */
	atomic_uint irqs;     /* interrupts seen (eventfd reads) */
	atomic_uint resizes;
	/* Events and the reaper thread. */
	pthread_cond_t admin_cv;
	pthread_t reaper;
	bool reaper_started;
	atomic_bool stopping;
	int kick_fd;
	atomic_bool aen_pending;
	uint16_t aen_status;
	uint32_t aen_dw0;
	unsigned aen_failures;
	bool read_only;
};

/* qp.c */
int nvme_qp_init(struct nvme_ctrl *c, struct nvme_qp *qp, uint16_t qid, uint16_t depth,
		 unsigned vec);
void nvme_qp_destroy(struct nvme_qp *qp);
struct nvme_slot *nvme_slot_get(struct nvme_qp *qp);
void nvme_slot_put(struct nvme_qp *qp, struct nvme_slot *s);
/* Fill the SQE's CID and PRPs for s (len bytes of its buffer), queue it. */
void nvme_qp_push(struct nvme_qp *qp, struct nvme_slot *s, struct nvme_sqe *sqe);
void nvme_qp_ring(struct nvme_qp *qp);
/* Fail every command and pending request; locked. */
void nvme_qp_fail_locked(struct nvme_qp *qp, int detail, struct nvme_rctx **done);
bool nvme_qp_expired_locked(struct nvme_qp *qp, uint64_t now);
/* Every queue on qp reaps on its own thread: the reaper leaves it alone. */
bool nvme_qp_polled(struct nvme_qp *qp);
uint64_t nvme_now_ns(void);

/* reap.c */
/* Take the finished commands; requests that finished go on *done. Locked. */
int nvme_qp_reap_locked(struct nvme_qp *qp, struct nvme_rctx **done);
/* Reap and complete outside the lock; returns requests completed. */
int nvme_qp_reap(struct nvme_qp *qp);
void nvme_complete_list(struct nvme_rctx *done);

/* io.c */
void nvme_io_issue_locked(struct nvme_qp *qp);
void nvme_io_chunk_done(struct nvme_qp *qp, struct nvme_slot *s, uint16_t status,
			struct nvme_rctx **done);
int nvme_status_to_dc(uint16_t status, int *detail);
void nvme_submit(void *inst, struct dc_req *req);

/* ctrl.c */
int nvme_ctrl_start(struct nvme_ctrl *c);
void nvme_ctrl_stop(struct nvme_ctrl *c);
/* A synchronous admin command; data (len <= NVME_SLOT_BYTES) goes out from
 * `in` and comes back into `out` (either may be NULL). */
int nvme_admin(struct nvme_ctrl *c, struct nvme_sqe *sqe, const void *in, void *out,
	       uint32_t len, uint32_t *dw0);
int nvme_identify_ns(struct nvme_ctrl *c, uint64_t *nsze, uint8_t *id);
void nvme_ctrl_fail(struct nvme_ctrl *c, int detail);

/* plugin.c: open over a device (the VFIO or the emulated one). */
int nvme_drv_open(const struct dc_open_args *a, struct nvme_dev *dev, void **inst,
		  struct dc_info *info);
extern const struct dc_option nvme_common_options[];
#define NVME_OPTIONS_COMMON                                                            \
	DC_OPTION_UINT("nsid", "namespace ID (default 1)"),                            \
		DC_OPTION_UINT("queues", "I/O queue pairs to ask for (default: CPUs, " \
					 "at most 8)"),                                \
		DC_OPTION_UINT("depth", "entries per I/O queue (default 64, at most "  \
					"CAP.MQES+1)"),                                \
		DC_OPTION_UINT("timeout", "milliseconds before a command fails the "   \
					  "controller (default 30000)")
/* The descriptor of nvme.so and of the test plugin nvme-emu.so: one driver,
 * so all but the name, summary, forms and opener is the same. */
#define NVME_DC_PLUGIN(var, name_, summary_, forms_, open_)                              \
	DC_PLUGIN(var) = {                                                               \
		DC_ABOUT(DC_KIND_BACKEND, name_, "1.0", summary_),                       \
		.forms = forms_,                                                         \
		.ops = DC_OPS_RW | DC_OPS_PR,                                            \
		.ctx_size = sizeof(struct nvme_rctx),                                    \
		.open = open_,                                                           \
		DC_CALLBACKS(nvme, close, queue_open, queue_close, submit, sector_count, \
			     describe, queue_poll),                                      \
	}
void nvme_close(void *inst);
int nvme_queue_open(void *inst, void **qctx);
void nvme_queue_close(void *inst, void *qctx);
uint64_t nvme_sector_count(void *inst);
void nvme_describe(void *inst, dc_kv_fn kv, void *arg);
int nvme_queue_poll(void *inst, void *qctx, int wake_fd, int timeout_ms);

#endif
