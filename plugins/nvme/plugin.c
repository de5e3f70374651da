/* SPDX-License-Identifier: MIT */
/* The plugin callbacks over a controller, whatever device it sits on: open
 * (options, bring-up, the disk's info), queues (one queue pair per diskcore
 * queue while they last, then shared), polling, describe() and close. */
#include "drv.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NVME_DEFAULT_DEPTH 64
#define NVME_DEFAULT_TIMEOUT_MS 30000

const struct dc_option nvme_common_options[] = {
	NVME_OPTIONS_COMMON,
	DC_OPTIONS_END,
};

static int options(const struct dc_open_args *a, struct nvme_ctrl *c)
{
	uint64_t v;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	c->nsid = 1;
	if (dc_opt_num(a, "nsid", &v)) {
		if (v == 0 || v >= UINT32_MAX)
			return dc_fail(-EINVAL, "nsid=%llu: 1 to 4294967294",
				       (unsigned long long)v);
		c->nsid = (uint32_t)v;
	}
	c->nrequested = cpus < 1 ? 1 : cpus > 8 ? 8 : (unsigned)cpus;
	if (dc_opt_num(a, "queues", &v)) {
		if (v == 0 || v > NVME_MAX_QUEUES)
			return dc_fail(-EINVAL, "queues=%llu: 1 to %u",
				       (unsigned long long)v, NVME_MAX_QUEUES);
		c->nrequested = (unsigned)v;
	}
	c->depth = NVME_DEFAULT_DEPTH;
	if (dc_opt_num(a, "depth", &v)) {
		if (v < 2 || v > 1024)
			return dc_fail(-EINVAL, "depth=%llu: 2 to 1024",
				       (unsigned long long)v);
		c->depth = (unsigned)v;
	}
	v = NVME_DEFAULT_TIMEOUT_MS;
	if (dc_opt_num(a, "timeout", &v) && (v == 0 || v > 3600000))
		return dc_fail(-EINVAL, "timeout=%llu: 1 to 3600000 ms",
			       (unsigned long long)v);
	c->timeout_ns = v * 1000000u;
	return 0;
}

int nvme_drv_open(const struct dc_open_args *a, struct nvme_dev *dev, void **inst,
		  struct dc_info *info)
{
	struct nvme_ctrl *c = calloc(1, sizeof(*c));
	int rc;

	if (!c) {
		dev->ops->close(dev);
		return dc_fail(-ENOMEM, "out of memory");
	}
	c->dev = dev;
	c->kick_fd = -1;
	pthread_cond_init(&c->admin_cv, NULL);
	c->node = a->node;
	c->read_only = a->read_only;
	rc = options(a, c);
	if (!rc)
		rc = nvme_ctrl_start(c);
	if (rc) {
		nvme_ctrl_stop(c);
		dev->ops->close(dev);
		free(c);
		return rc;
	}
	info->sector_count = atomic_load(&c->nsze);
	info->sector_size = 1u << c->shift;
	/* As OpenVMM's NvmeDisk: 4 KiB unless the blocks are larger. */
	info->physical_sector_size = info->sector_size > 4096 ? info->sector_size : 4096;
	info->optimal_unmap_sectors = c->npdg;
	info->unmap_behavior = c->unmap_cmd == NVME_CMD_DSM ? DC_UNMAP_UNSPECIFIED :
			       c->unmap_cmd		    ? DC_UNMAP_ZEROES :
							      DC_UNMAP_IGNORED;
	info->flags = DC_INFO_FUA_RESPECTED | (c->rescap ? DC_INFO_PR : 0) |
		      (a->read_only ? DC_INFO_READ_ONLY : 0);
	snprintf(info->disk_type, sizeof(info->disk_type), "nvme");
	*inst = c;
	return 0;
}

void nvme_close(void *inst)
{
	struct nvme_ctrl *c = inst;
	struct nvme_dev *dev = c->dev;

	nvme_ctrl_stop(c);
	dev->ops->close(dev);
	free(c);
}

int nvme_queue_open(void *inst, void **qctx)
{
	struct nvme_ctrl *c = inst;
	struct nvme_q *q = calloc(1, sizeof(*q));
	unsigned best = 0;

	if (!q)
		return -ENOMEM;
	/* The least used queue pair: its own while there are enough. */
	for (unsigned i = 1; i < c->nio; i++)
		if (atomic_load(&c->io[i]->users) < atomic_load(&c->io[best]->users))
			best = i;
	q->qp = c->io[best];
	atomic_fetch_add(&q->qp->users, 1);
	*qctx = q;
	return 0;
}

void nvme_queue_close(void *inst, void *qctx)
{
	struct nvme_q *q = qctx;

	(void)inst;
	if (q->polling)
		atomic_fetch_sub(&q->qp->pollers, 1);
	atomic_fetch_sub(&q->qp->users, 1);
	free(q);
}

uint64_t nvme_sector_count(void *inst)
{
	struct nvme_ctrl *c = inst;

	return atomic_load(&c->nsze);
}

/* Reap, and before sleeping drain the interrupt's eventfd and look again, so
 * a completion that raced the drain is not slept through. */
int nvme_queue_poll(void *inst, void *qctx, int wake_fd, int timeout_ms)
{
	struct nvme_q *q = qctx;
	struct pollfd p[2] = { { .fd = q->qp->irq_fd, .events = POLLIN },
			       { .fd = wake_fd, .events = POLLIN } };
	uint64_t v;
	int n;

	(void)inst;
	if (!q->polling) {
		q->polling = true;
		atomic_fetch_add(&q->qp->pollers, 1);
	}
	n = nvme_qp_reap(q->qp);
	if (n || timeout_ms == 0)
		return n;
	if (p[0].fd >= 0 && read(p[0].fd, &v, sizeof(v)) > 0) {
		atomic_fetch_add_explicit(&q->qp->c->irqs, 1, memory_order_relaxed);
		n = nvme_qp_reap(q->qp);
		if (n)
			return n;
	}
	/* Without an interrupt the ring is looked at every millisecond. */
	if (p[0].fd < 0 && (timeout_ms < 0 || timeout_ms > 1))
		timeout_ms = 1;
	if (poll(p, 2, timeout_ms) < 0 && errno != EINTR)
		return -errno;
	return nvme_qp_reap(q->qp);
}

void nvme_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct nvme_ctrl *c = inst;
	unsigned fmt = c->flbas & 0xf;

	kv(arg, "device", c->dev->name);
	kv(arg, "model", c->model);
	kv(arg, "serial", c->serial);
	kv(arg, "firmware", c->firmware);
	dc_kv_printf(kv, arg, "nvme-version", "%u.%u.%u", c->vs >> 16,
		     (c->vs >> 8) & 0xff, c->vs & 0xff);
	dc_kv_u64(kv, arg, "nsid", c->nsid);
	dc_kv_u64(kv, arg, "sectors", atomic_load(&c->nsze));
	dc_kv_u64(kv, arg, "bytes", atomic_load(&c->nsze) << c->shift);
	dc_kv_printf(kv, arg, "lba-format", "%u of %u: %u-byte blocks, no metadata", fmt,
		     c->nlbaf + 1u, 1u << c->shift);
	dc_kv_printf(kv, arg, "queues", "%u granted of %u asked", c->nio, c->nrequested);
	dc_kv_u64(kv, arg, "queue-depth", c->depth);
	dc_kv_u64(kv, arg, "interrupt-vectors", c->dev->nvec);
	dc_kv_printf(kv, arg, "mdts", "%u (%u KiB per command)", c->mdts,
		     c->max_xfer / 1024);
	dc_kv_bool(kv, arg, "volatile-write-cache", c->vwc);
	dc_kv_printf(kv, arg, "data-pointers", "%s (SGLS %#x)",
		     c->use_sgl ? "sgl" : "prp", c->sgls);
	dc_kv_printf(kv, arg, "oncs", "%#x%s%s%s", c->oncs,
		     (c->oncs & NVME_ONCS_DSM) ? " dsm" : "",
		     (c->oncs & NVME_ONCS_WRITE_ZEROES) ? " write-zeroes" : "",
		     (c->oncs & NVME_ONCS_RESERVATIONS) ? " reservations" : "");
	kv(arg, "unmap",
	   c->unmap_cmd == NVME_CMD_DSM ? "dsm deallocate" :
	   !c->unmap_cmd		? "no" :
	   c->wz_flags			? "write zeroes, deallocating" :
					  "write zeroes");
	if (c->rescap)
		dc_kv_printf(kv, arg, "reservations", "rescap %#x", c->rescap);
	else
		kv(arg, "reservations", "no");
	dc_kv_u64(kv, arg, "command-timeout-ms", c->timeout_ns / 1000000);
	dc_kv_u64(kv, arg, "resizes", atomic_load(&c->resizes));
	dc_kv_u64(kv, arg, "dropped-completions", atomic_load(&c->bad_cids));
	dc_kv_u64(kv, arg, "interrupts", atomic_load(&c->irqs));
	kv(arg, "state",
	   atomic_load(&c->dead)    ? "failed" :
	   atomic_load(&c->ns_gone) ? "namespace removed" :
				      "ok");
}
