/* SPDX-License-Identifier: MIT */
/*
 * nvme: a user-mode NVMe driver over VFIO, `nvme:PCI_ADDRESS[;nsid=N]...`
 * (docs/spec-strings.md, "nvme"; docs/openvmm-compat.md §2.6). The driver
 * (enable.c, ctrl.c, qp.c, io.c, plugin.c) reaches the function only through
 * dev.h; this file gives it the VFIO device.
 */
#include "drv.h"

static int nvme_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct nvme_dev *dev;
	uint64_t queues = 8;
	int rc;

	dc_opt_num(a, "queues", &queues);
	if (queues > NVME_MAX_QUEUES)
		queues = NVME_MAX_QUEUES;
	/* Vector 0 for the admin queue, one per I/O queue pair. */
	rc = nvme_vfio_open(a->fields[0], (unsigned)queues + 1, &dev);
	if (rc)
		return rc;
	return nvme_drv_open(a, dev, inst, info);
}

NVME_DC_PLUGIN(nvme_plugin, "nvme", "user-mode NVMe driver over VFIO",
	       DC_FORMS(DC_FORM(
		       "nvme", 1, DC_CHILD_NONE,
		       "nvme:PCI_ADDRESS[;nsid=N][;queues=N][;depth=N][;timeout=MS]",
		       "an NVMe namespace through VFIO (the function bound to vfio-pci)",
		       nvme_common_options)),
	       nvme_open);
