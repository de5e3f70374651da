/* SPDX-License-Identifier: MIT */
/* VFIO set-up inside the nvme plugin: dev_vfio.c (the device) and
 * vfio_setup.c (the checks that need only sysfs and the group's node). */
#ifndef NVME_VFIO_H
#define NVME_VFIO_H

#include "dev.h"

/* Where set-up looks: "/sys" and "/dev" on a real system. A parameter and
 * not an environment variable or a global on purpose: nvme.so only ever
 * passes nvme_vfio_real_roots (nvme_vfio_open), so nothing a user of the
 * plugin can set moves where it looks. Only a program that compiles these
 * files itself (tests/test-nvme-vfio-setup.c) passes a fake tree. */
struct nvme_vfio_roots {
	const char *sys;
	const char *dev;
};

extern const struct nvme_vfio_roots nvme_vfio_real_roots;

/* nvme_vfio_open() under roots `r`. */
int nvme_vfio_open_at(const struct nvme_vfio_roots *r, const char *bdf, unsigned want_vec,
		      struct nvme_dev **out);

/* Everything sysfs can tell, in the order a user fixes it: `bdf` is a PCI
 * address, the function exists, it is in an IOMMU group (*group), it is
 * bound to vfio-pci, and no other member of its group is bound to a driver
 * that makes the group unusable. Returns 0, or -errno after dc_error(). */
int nvme_vfio_check(const struct nvme_vfio_roots *r, const char *bdf, int *group);

/* Open the group's node (DEV/vfio/GROUP): the fd, or -errno after
 * dc_error() saying what to do. */
int nvme_vfio_open_group(const struct nvme_vfio_roots *r, int group);

/* The not-viable failure, naming the other members and their drivers:
 * returns -EBUSY after dc_error(). */
int nvme_vfio_not_viable(const struct nvme_vfio_roots *r, const char *bdf, int group);

#endif
