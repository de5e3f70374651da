/* SPDX-License-Identifier: MIT */
/* The VFIO set-up checks that need no VFIO container: sysfs (is the function
 * there, behind an IOMMU, bound to vfio-pci, in a usable group) and opening
 * the group's node. Each failure has its own message saying what to do
 * (docs/spec-strings.md, "nvme"). Every path is under the caller's roots, so
 * tests/test-nvme-vfio-setup.c runs these checks over fake trees. */
#include "vfio.h"

#include <diskcore/plugin.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const struct nvme_vfio_roots nvme_vfio_real_roots = { .sys = "/sys", .dev = "/dev" };

/* "DDDD:BB:DD.F": what sysfs names the function. */
static bool bdf_valid(const char *s)
{
	unsigned dom, bus, dev, fn;
	char end;

	return strlen(s) == 12 &&
	       sscanf(s, "%4x:%2x:%2x.%1x%c", &dom, &bus, &dev, &fn, &end) == 4 &&
	       dev < 32 && fn < 8;
}

/* A path from printf arguments (truncated at PATH_MAX, which no sysfs path
 * reaches). */
static void __attribute__((format(printf, 2, 3))) pathf(char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(path, PATH_MAX, fmt, ap);
	va_end(ap);
}

/* The last component of the target of symlink `path` into out; false (and
 * "") when it is no symlink. */
static bool link_base(char *out, size_t len, const char *path)
{
	char link[PATH_MAX];
	const char *base;
	size_t blen;
	ssize_t n;

	out[0] = 0;
	n = readlink(path, link, sizeof(link) - 1);
	if (n <= 0)
		return false;
	link[n] = 0;
	base = strrchr(link, '/') ? strrchr(link, '/') + 1 : link;
	blen = strnlen(base, len - 1);
	memcpy(out, base, blen);
	out[blen] = 0;
	return true;
}

/* Does SYS/kernel/iommu_groups list any group? Empty when no IOMMU is on. */
static bool iommu_enabled(const struct nvme_vfio_roots *r)
{
	char path[PATH_MAX];
	struct dirent *e;
	bool any = false;
	DIR *dir;

	pathf(path, "%s/kernel/iommu_groups", r->sys);
	dir = opendir(path);
	if (!dir)
		return false;
	while (!any && (e = readdir(dir)))
		any = e->d_name[0] != '.';
	closedir(dir);
	return any;
}

static int check_iommu(const struct nvme_vfio_roots *r, const char *bdf, int *group)
{
	char path[PATH_MAX], name[NAME_MAX + 1], *end;
	long g;

	pathf(path, "%s/bus/pci/devices/%s/iommu_group", r->sys, bdf);
	if (!link_base(name, sizeof(name), path)) {
		if (!iommu_enabled(r))
			return dc_fail(
				-ENODEV,
				"%s is in no IOMMU group: no IOMMU is enabled (boot "
				"with intel_iommu=on or amd_iommu=on; in a VM, give "
				"it an emulated IOMMU)",
				bdf);
		return dc_fail(-ENODEV,
			       "%s is in no IOMMU group, though an IOMMU is enabled: the "
			       "IOMMU does not cover this function, so VFIO cannot give "
			       "it to a process",
			       bdf);
	}
	g = strtol(name, &end, 10);
	if (end == name || *end || g < 0 || g > INT_MAX)
		return dc_fail(-ENODEV, "%s: IOMMU group '%s' is not a number", bdf,
			       name);
	*group = (int)g;
	return 0;
}

static int check_driver(const struct nvme_vfio_roots *r, const char *bdf)
{
	char path[PATH_MAX], drv[NAME_MAX + 1], unbind[PATH_MAX] = "";

	pathf(path, "%s/bus/pci/devices/%s/driver", r->sys, bdf);
	if (link_base(drv, sizeof(drv), path) && !strcmp(drv, "vfio-pci"))
		return 0;
	if (drv[0])
		pathf(unbind, "echo %s > %s/unbind; ", bdf, path);
	return dc_fail(-ENODEV,
		       "%s is bound to %s, not to vfio-pci; bind it with: modprobe "
		       "vfio-pci; echo vfio-pci > %s/bus/pci/devices/%s/driver_override; "
		       "%secho %s > %s/bus/pci/drivers_probe",
		       bdf, drv[0] ? drv : "no driver", r->sys, bdf, unbind, bdf, r->sys);
}

/* May member `name` of the group in `dir` have driver drv with
 * the group still usable through VFIO? No driver, vfio-pci and its variants,
 * the stubs and the PCIe port driver are fine, and older kernels let any
 * PCI-to-PCI bridge (class 0x0604) have a driver. Newer kernels decide by a
 * flag of the driver that sysfs does not show, so this errs on the side of
 * yes: VFIO_GROUP_GET_STATUS (dev_vfio.c) stays the judge. */
static bool leaves_group_viable(const char *drv, const char *dir, const char *name)
{
	static const char *const ok[] = { "pci-stub", "pci-pf-stub", "pcieport" };
	char path[PATH_MAX], cls[16] = "";
	int fd;

	if (!drv[0] || strstr(drv, "vfio"))
		return true;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (!strcmp(drv, ok[i]))
			return true;
	pathf(path, "%s/%s/class", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	if (read(fd, cls, sizeof(cls) - 1) < 0)
		cls[0] = 0;
	close(fd);
	return !strncmp(cls, "0x0604", 6);
}

/* The other members of the group, sorted, as "ADDR (DRIVER), ..." into out;
 * returns whether each of them leaves the group viable. */
static bool group_others(const struct nvme_vfio_roots *r, int group, const char *bdf,
			 char *out, size_t len)
{
	char dir[PATH_MAX];
	struct dirent **list;
	bool viable = true;
	size_t used = 0;
	int n;

	out[0] = 0;
	pathf(dir, "%s/kernel/iommu_groups/%d/devices", r->sys, group);
	n = scandir(dir, &list, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		const char *name = list[i]->d_name;
		char drv[NAME_MAX + 1], path[PATH_MAX];

		if (name[0] != '.' && strcmp(name, bdf)) {
			pathf(path, "%s/%s/driver", dir, name);
			link_base(drv, sizeof(drv), path);
			viable = leaves_group_viable(drv, dir, name) && viable;
			used += (size_t)snprintf(out + used, len - used, "%s%s (%s)",
						 used ? ", " : "", name,
						 drv[0] ? drv : "no driver");
			if (used >= len)
				used = len - 1;
		}
		free(list[i]);
	}
	if (n >= 0)
		free(list);
	return viable;
}

int nvme_vfio_not_viable(const struct nvme_vfio_roots *r, const char *bdf, int group)
{
	char others[1024];

	group_others(r, group, bdf, others, sizeof(others));
	return dc_fail(-EBUSY,
		       "IOMMU group %d of %s is not viable: every device in it must "
		       "be bound to vfio-pci or to no driver; the others are: %s",
		       group, bdf, others[0] ? others : "(none listed)");
}

int nvme_vfio_check(const struct nvme_vfio_roots *r, const char *bdf, int *group)
{
	char path[PATH_MAX], others[1024];
	int rc;

	if (!bdf_valid(bdf))
		return dc_fail(-EINVAL,
			       "'%s' is not a PCI address (DDDD:BB:DD.F, as in "
			       "0000:00:03.0)",
			       bdf);
	pathf(path, "%s/bus/pci/devices/%s", r->sys, bdf);
	if (access(path, F_OK) < 0)
		return dc_fail(-ENOENT, "no PCI device %s (%s is missing)", bdf, path);
	/* The IOMMU first: vfio-pci will not bind to a function without one. */
	rc = check_iommu(r, bdf, group);
	if (!rc)
		rc = check_driver(r, bdf);
	/* Before any node is opened, so that a user without access to
	 * DEV/vfio still learns what else has to change. */
	if (!rc && !group_others(r, *group, bdf, others, sizeof(others)))
		rc = nvme_vfio_not_viable(r, bdf, *group);
	return rc;
}

int nvme_vfio_open_group(const struct nvme_vfio_roots *r, int group)
{
	char path[PATH_MAX];
	int fd, err;

	pathf(path, "%s/vfio/%d", r->dev, group);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd >= 0)
		return fd;
	err = errno;
	return dc_fail(
		-err, "%s: %s%s", path, strerror(err),
		err == EACCES || err == EPERM ?
			": not permitted (run as root, or give this user the "
			"group's device node)" :
		err == EBUSY  ? ": the group is in use by another process" :
		err == ENOENT ? ": the group's device node is missing (in a container, "
				"pass it in with /dev/vfio/vfio)" :
				"");
}
