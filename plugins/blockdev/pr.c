/* SPDX-License-Identifier: MIT */
/* blockdev: persistent reservations through the kernel's PR ioctls, and
 * NVMe's Reservation Report through passthrough; run on the worker pool. */
#include "blockdev.h"

#include "endian/byteorder.h"

#include <errno.h>
#include <linux/nvme_ioctl.h>
#include <linux/pr.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

/* --- Persistent reservations ---------------------------------------------------- */

/* A PR ioctl's return: -1/errno, or a positive SCSI/NVMe/PR_STS status. */
static void bdev_pr_status(struct bdev_rq *r, int rc, int err)
{
	if (rc == 0)
		return;
	if (rc < 0) {
		if (err == EOPNOTSUPP || err == ENOTTY)
			r->result = DC_E_UNSUPPORTED;
		else
			bdev_rq_errno(r, err);
		return;
	}
	if (rc == BDEV_PR_CONFLICT_SAM || rc == BDEV_PR_CONFLICT_NVME) {
		r->result = DC_E_RESERVATION_CONFLICT;
	} else {
		r->result = DC_E_IO;
		r->detail = EIO;
	}
}

/* NVMe Reservation Report with the extended data structure (128-bit host ids),
 * retried with a bigger buffer while the registrants do not fit. */
static void bdev_nvme_report(struct bdev_rq *r, struct dc_pr_report *rep)
{
	uint32_t len = 4096;

	for (;;) {
		uint8_t *buf = aligned_alloc(4096, len);
		struct nvme_passthru_cmd c = {
			.opcode = 0x0e, /* Reservation Report */
			.nsid = r->b->nsid,
			.data_len = len,
			.cdw10 = len / 4 - 1,
			.cdw11 = 1, /* extended data structure */
		};
		uint32_t need, nreg, i;
		int rc;

		if (!buf) {
			bdev_rq_errno(r, ENOMEM);
			return;
		}
		memset(buf, 0, len);
		c.addr = (uintptr_t)buf;
		rc = ioctl(r->b->fd, NVME_IOCTL_IO_CMD, &c);
		if (rc) {
			bdev_pr_status(r, rc, errno);
			free(buf);
			return;
		}
		nreg = get_le16(buf + 5);
		need = 64 + nreg * 64;
		if (need > len && len < (1u << 20)) {
			len = (need + 4095) & ~4095u;
			free(buf);
			continue;
		}
		rep->generation = get_le32(buf);
		rep->reservation_type = buf[4];
		rep->persist_through_power_loss = buf[9] & 1;
		rep->ncontrollers = nreg;
		for (i = 0;
		     i < nreg && i < rep->max_controllers && 64 + (i + 1) * 64 <= len;
		     i++) {
			const uint8_t *e = buf + 64 + i * 64;
			struct dc_pr_controller *ctl = &rep->controllers[i];

			ctl->controller_id = get_le16(e);
			ctl->holds_reservation = e[2] & 1;
			ctl->key = get_le64(e + 8);
			memcpy(ctl->host_id, e + 16, 16);
			ctl->host_id_len = 16;
		}
		free(buf);
		return;
	}
}

void bdev_pool_pr(void *arg)
{
	struct bdev_rq *r = arg;
	struct dc_req *req = r->req;
	struct dc_pr_args *pr = req->pr;
	int fd = r->b->fd, rc = 0;

	switch (req->op) {
	case DC_OP_PR_CAPS:
		/* NVMe says what it supports; the SCSI PR model has them all. */
		pr->caps->types = r->b->nvme ? (uint32_t)(r->b->rescap & 0x7e) : 0x7e;
		pr->caps->persist_through_power_loss = r->b->nvme && (r->b->rescap & 1);
		break;
	case DC_OP_PR_REPORT:
		if (r->b->nvme)
			bdev_nvme_report(r, pr->report);
		else
			r->result = DC_E_UNSUPPORTED;
		break;
	case DC_OP_PR_REGISTER: {
		struct pr_registration reg = {
			.old_key = pr->ignore_key ? 0 : pr->key,
			.new_key = pr->new_key,
			.flags = pr->ignore_key ? PR_FL_IGNORE_KEY : 0,
		};

		/* The kernel API cannot change persist-through-power-loss. */
		if (pr->ptpl >= 0)
			dc_debug("blockdev: %s: ptpl=%d ignored", r->b->path, pr->ptpl);
		rc = ioctl(fd, IOC_PR_REGISTER, &reg);
		break;
	}
	case DC_OP_PR_RESERVE:
	case DC_OP_PR_RELEASE: {
		struct pr_reservation res = { .key = pr->key, .type = pr->type };

		rc = ioctl(fd,
			   req->op == DC_OP_PR_RESERVE ? IOC_PR_RESERVE : IOC_PR_RELEASE,
			   &res);
		break;
	}
	case DC_OP_PR_CLEAR: {
		struct pr_clear clr = { .key = pr->key };

		rc = ioctl(fd, IOC_PR_CLEAR, &clr);
		break;
	}
	case DC_OP_PR_PREEMPT: {
		struct pr_preempt pre = { .old_key = pr->key,
					  .new_key = pr->new_key,
					  .type = pr->type };

		rc = ioctl(fd, pr->abort ? IOC_PR_PREEMPT_ABORT : IOC_PR_PREEMPT, &pre);
		break;
	}
	}
	bdev_pr_status(r, rc, errno);
	bdev_rq_done(r);
}
