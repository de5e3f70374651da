/* SPDX-License-Identifier: MIT */
/* Device access through VFIO type1: the group, container and device file
 * descriptors, BAR0 mapped (or read and written through the device fd when
 * the region cannot be mapped), config space for Bus Master, DMA memory
 * mapped into the IOMMU at IOVAs handed out upwards, and MSI-X vectors as
 * eventfds. Each set-up failure says what to do about it; the checks that
 * need no container are vfio_setup.c's. */
#include "vfio.h"

#include <diskcore/plugin.h>
#include <errno.h>
#include <limits.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <fcntl.h>

#define VFIO_IOVA_BASE (UINT64_C(1) << 32)
#define VFIO_MAX_VEC 65

struct vfio_dev {
	struct nvme_dev d;
	int container, group, device;
	volatile uint8_t *bar; /* NULL: go through the device fd */
	size_t bar_size;
	uint64_t bar_off, cfg_off;
	pthread_mutex_t iova_lock;
	uint64_t next_iova;
	int irq[VFIO_MAX_VEC];
};

#define V(d) ((struct vfio_dev *)(d))

static uint32_t v_read32(struct nvme_dev *d, uint32_t off)
{
	uint32_t v = UINT32_MAX;

	if (V(d)->bar)
		return *(volatile uint32_t *)(V(d)->bar + off);
	if (pread(V(d)->device, &v, 4, (off_t)(V(d)->bar_off + off)) != 4)
		return UINT32_MAX;
	return v;
}

static void v_write32(struct nvme_dev *d, uint32_t off, uint32_t v)
{
	if (V(d)->bar)
		*(volatile uint32_t *)(V(d)->bar + off) = v;
	else if (pwrite(V(d)->device, &v, 4, (off_t)(V(d)->bar_off + off)) != 4)
		dc_debug("nvme %s: BAR0 write at %#x failed", d->name, off);
}

/* Two 32-bit accesses, low half first: the registers allow it and not every
 * path (the fd fallback, some hosts) does 64-bit MMIO. */
static uint64_t v_read64(struct nvme_dev *d, uint32_t off)
{
	uint64_t lo = v_read32(d, off);

	return lo | (uint64_t)v_read32(d, off + 4) << 32;
}

static void v_write64(struct nvme_dev *d, uint32_t off, uint64_t v)
{
	v_write32(d, off, (uint32_t)v);
	v_write32(d, off + 4, (uint32_t)(v >> 32));
}

static int v_dma_alloc(struct nvme_dev *d, size_t len, void **va, uint64_t *iova)
{
	struct vfio_dev *v = V(d);
	struct vfio_iommu_type1_dma_map m = { .argsz = sizeof(m) };
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	if (p == MAP_FAILED)
		return dc_fail(-errno, "%s: cannot allocate %zu bytes of DMA memory: %s",
			       d->name, len, strerror(errno));
	pthread_mutex_lock(&v->iova_lock);
	m.iova = v->next_iova;
	v->next_iova += len;
	pthread_mutex_unlock(&v->iova_lock);
	m.vaddr = (uintptr_t)p;
	m.size = len;
	m.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
	if (ioctl(v->container, VFIO_IOMMU_MAP_DMA, &m) < 0) {
		int err = errno;

		munmap(p, len);
		return dc_fail(
			-err, "%s: cannot map %zu bytes for DMA in the IOMMU: %s%s",
			d->name, len, strerror(err),
			err == ENOMEM ? " (RLIMIT_MEMLOCK too low for pinning?)" : "");
	}
	*va = p;
	*iova = m.iova;
	return 0;
}

static void v_dma_free(struct nvme_dev *d, void *va, size_t len, uint64_t iova)
{
	struct vfio_iommu_type1_dma_unmap u = { .argsz = sizeof(u),
						.iova = iova,
						.size = len };

	if (ioctl(V(d)->container, VFIO_IOMMU_UNMAP_DMA, &u) < 0)
		dc_debug("nvme %s: DMA unmap: %s", d->name, strerror(errno));
	munmap(va, len);
}

static int v_irq_fd(struct nvme_dev *d, unsigned vec)
{
	return vec < d->nvec ? V(d)->irq[vec] : -1;
}

static int v_bus_master(struct nvme_dev *d)
{
	struct vfio_dev *v = V(d);
	uint16_t cmd;
	off_t at = (off_t)(v->cfg_off + PCI_COMMAND);

	if (pread(v->device, &cmd, 2, at) != 2)
		return dc_fail(-EIO, "%s: cannot read PCI config space", d->name);
	cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	if (pwrite(v->device, &cmd, 2, at) != 2)
		return dc_fail(-EIO, "%s: cannot set Bus Master in PCI config space",
			       d->name);
	return 0;
}

static void v_close(struct nvme_dev *d)
{
	struct vfio_dev *v = V(d);

	for (unsigned i = 0; i < VFIO_MAX_VEC; i++)
		if (v->irq[i] >= 0)
			close(v->irq[i]);
	if (v->bar)
		munmap((void *)v->bar, v->bar_size);
	if (v->device >= 0)
		close(v->device);
	if (v->group >= 0)
		close(v->group);
	if (v->container >= 0)
		close(v->container);
	pthread_mutex_destroy(&v->iova_lock);
	free(v);
}

static const struct nvme_dev_ops vfio_ops = {
	.read32 = v_read32,
	.write32 = v_write32,
	.read64 = v_read64,
	.write64 = v_write64,
	.dma_alloc = v_dma_alloc,
	.dma_free = v_dma_free,
	.irq_fd = v_irq_fd,
	.enable_bus_master = v_bus_master,
	.close = v_close,
};

/* The group (its node opened first, as QEMU does, so that a missing or
 * forbidden node is reported before the container), then the container. */
static int open_group(struct vfio_dev *v, const struct nvme_vfio_roots *r,
		      const char *bdf, int group)
{
	struct vfio_group_status st = { .argsz = sizeof(st) };
	char path[PATH_MAX];
	int fd = nvme_vfio_open_group(r, group);

	if (fd < 0)
		return fd;
	v->group = fd;
	if (ioctl(v->group, VFIO_GROUP_GET_STATUS, &st) < 0)
		return dc_fail(-errno, "%s/vfio/%d: not a VFIO group: %s", r->dev, group,
			       strerror(errno));
	if (!(st.flags & VFIO_GROUP_FLAGS_VIABLE))
		return nvme_vfio_not_viable(r, bdf, group);
	snprintf(path, sizeof(path), "%s/vfio/vfio", r->dev);
	v->container = open(path, O_RDWR | O_CLOEXEC);
	if (v->container < 0)
		return dc_fail(-errno, "%s: %s%s", path, strerror(errno),
			       errno == ENOENT ? " (modprobe vfio-pci)" :
			       errno == EACCES ? ": not permitted (run as root)" :
						 "");
	if (ioctl(v->container, VFIO_GET_API_VERSION) != VFIO_API_VERSION ||
	    ioctl(v->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) <= 0)
		return dc_fail(-ENODEV, "%s: VFIO has no type1 IOMMU here", bdf);
	if (ioctl(v->group, VFIO_GROUP_SET_CONTAINER, &v->container) < 0)
		return dc_fail(-errno, "%s: cannot attach group %d to a container: %s",
			       bdf, group, strerror(errno));
	if (ioctl(v->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0 &&
	    ioctl(v->container, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU) < 0)
		return dc_fail(-errno, "%s: cannot set the type1 IOMMU: %s", bdf,
			       strerror(errno));
	return 0;
}

static int map_bar(struct vfio_dev *v, const char *bdf)
{
	struct vfio_region_info r = { .argsz = sizeof(r),
				      .index = VFIO_PCI_BAR0_REGION_INDEX };
	struct vfio_region_info cfg = { .argsz = sizeof(cfg),
					.index = VFIO_PCI_CONFIG_REGION_INDEX };
	void *p;

	if (ioctl(v->device, VFIO_DEVICE_GET_REGION_INFO, &r) < 0 ||
	    ioctl(v->device, VFIO_DEVICE_GET_REGION_INFO, &cfg) < 0)
		return dc_fail(-errno, "%s: cannot read the device's regions: %s", bdf,
			       strerror(errno));
	if (r.size < 0x2000)
		return dc_fail(-ENODEV, "%s: BAR0 is %llu bytes: not an NVMe controller",
			       bdf, (unsigned long long)r.size);
	v->bar_off = r.offset;
	v->cfg_off = cfg.offset;
	if (!(r.flags & VFIO_REGION_INFO_FLAG_MMAP))
		return 0;
	p = mmap(NULL, r.size, PROT_READ | PROT_WRITE, MAP_SHARED, v->device,
		 (off_t)r.offset);
	if (p != MAP_FAILED) {
		v->bar = p;
		v->bar_size = r.size;
	}
	return 0;
}

/* MSI-X vectors as eventfds; none (polling only) when the function has none. */
static int setup_irqs(struct vfio_dev *v, unsigned want)
{
	struct vfio_irq_info ii = { .argsz = sizeof(ii),
				    .index = VFIO_PCI_MSIX_IRQ_INDEX };
	char buf[sizeof(struct vfio_irq_set) + VFIO_MAX_VEC * sizeof(int)];
	struct vfio_irq_set *set = (struct vfio_irq_set *)buf;
	unsigned n;

	v->d.nvec = 1;
	if (ioctl(v->device, VFIO_DEVICE_GET_IRQ_INFO, &ii) < 0 || ii.count == 0)
		return 0;
	n = ii.count < want ? ii.count : want;
	if (n > VFIO_MAX_VEC)
		n = VFIO_MAX_VEC;
	for (unsigned i = 0; i < n; i++) {
		v->irq[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (v->irq[i] < 0)
			return dc_fail(-errno, "eventfd: %s", strerror(errno));
	}
	set->argsz = (uint32_t)(sizeof(*set) + n * sizeof(int));
	set->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
	set->index = VFIO_PCI_MSIX_IRQ_INDEX;
	set->start = 0;
	set->count = n;
	memcpy(set->data, v->irq, n * sizeof(int));
	if (ioctl(v->device, VFIO_DEVICE_SET_IRQS, set) < 0) {
		dc_debug("nvme %s: MSI-X not enabled (%s): polling", v->d.name,
			 strerror(errno));
		for (unsigned i = 0; i < n; i++) {
			close(v->irq[i]);
			v->irq[i] = -1;
		}
		return 0;
	}
	v->d.nvec = n;
	return 0;
}

int nvme_vfio_open_at(const struct nvme_vfio_roots *r, const char *bdf, unsigned want_vec,
		      struct nvme_dev **out)
{
	struct vfio_dev *v = calloc(1, sizeof(*v));
	int rc, group = -1;

	if (!v)
		return dc_fail(-ENOMEM, "out of memory");
	v->d.ops = &vfio_ops;
	snprintf(v->d.name, sizeof(v->d.name), "%s", bdf);
	v->container = v->group = v->device = -1;
	for (unsigned i = 0; i < VFIO_MAX_VEC; i++)
		v->irq[i] = -1;
	v->next_iova = VFIO_IOVA_BASE;
	pthread_mutex_init(&v->iova_lock, NULL);
	rc = nvme_vfio_check(r, bdf, &group);
	if (!rc)
		rc = open_group(v, r, bdf, group);
	if (!rc) {
		v->device = ioctl(v->group, VFIO_GROUP_GET_DEVICE_FD, bdf);
		if (v->device < 0)
			rc = dc_fail(-errno, "%s: cannot get the VFIO device: %s", bdf,
				     strerror(errno));
	}
	if (!rc)
		rc = map_bar(v, bdf);
	if (!rc)
		rc = setup_irqs(v, want_vec ? want_vec : 1);
	if (rc) {
		v_close(&v->d);
		return rc;
	}
	*out = &v->d;
	return 0;
}

int nvme_vfio_open(const char *bdf, unsigned want_vec, struct nvme_dev **out)
{
	return nvme_vfio_open_at(&nvme_vfio_real_roots, bdf, want_vec, out);
}
