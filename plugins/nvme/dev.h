/* SPDX-License-Identifier: MIT */
/* Device access for the NVMe driver: what the command logic may do to a PCI
 * function. Two implementations: VFIO type1 (dev_vfio.c) and, in the test
 * plugin only, an in-process emulated controller (emu/). The driver never
 * calls VFIO itself. */
#ifndef NVME_DEV_H
#define NVME_DEV_H

#include <stddef.h>
#include <stdint.h>

struct nvme_dev;

struct nvme_dev_ops {
	/* BAR0 registers. */
	uint32_t (*read32)(struct nvme_dev *d, uint32_t off);
	void (*write32)(struct nvme_dev *d, uint32_t off, uint32_t v);
	uint64_t (*read64)(struct nvme_dev *d, uint32_t off);
	void (*write64)(struct nvme_dev *d, uint32_t off, uint64_t v);
	/* Zeroed memory the device can reach at *iova; len is a multiple of
	 * 4096 and the memory is 4096-aligned. Returns 0 or -errno after
	 * dc_error(). */
	int (*dma_alloc)(struct nvme_dev *d, size_t len, void **va, uint64_t *iova);
	void (*dma_free)(struct nvme_dev *d, void *va, size_t len, uint64_t iova);
	/* Interrupt vectors: an eventfd that becomes readable when vector v
	 * fires (0 <= v < nvec). Returns the fd, or -errno. */
	int (*irq_fd)(struct nvme_dev *d, unsigned v);
	/* Set Bus Master (and memory space) in config space: without it the
	 * controller cannot reach its queues (CSTS.CFS). */
	int (*enable_bus_master)(struct nvme_dev *d);
	void (*close)(struct nvme_dev *d);
};

struct nvme_dev {
	const struct nvme_dev_ops *ops;
	unsigned nvec; /* interrupt vectors available, >= 1 */
	char name[64]; /* for messages: the PCI address */
};

static inline uint32_t nvme_rd32(struct nvme_dev *d, uint32_t off)
{
	return d->ops->read32(d, off);
}

static inline void nvme_wr32(struct nvme_dev *d, uint32_t off, uint32_t v)
{
	d->ops->write32(d, off, v);
}

static inline uint64_t nvme_rd64(struct nvme_dev *d, uint32_t off)
{
	return d->ops->read64(d, off);
}

static inline void nvme_wr64(struct nvme_dev *d, uint32_t off, uint64_t v)
{
	d->ops->write64(d, off, v);
}

/* VFIO type1: open the function at PCI address `bdf` (DDDD:BB:DD.F) with up
 * to `want_vec` MSI-X vectors. Returns 0 or -errno after dc_error(). */
int nvme_vfio_open(const char *bdf, unsigned want_vec, struct nvme_dev **out);

#endif
