/* SPDX-License-Identifier: MIT */
/* The nvme plugin's VFIO set-up refusals (plugins/nvme/vfio_setup.c,
 * dev_vfio.c), each with its exact message and -errno, over fake sysfs and
 * /dev trees built in a temporary directory: this program compiles the two
 * files itself and passes its trees as the roots (plugins/nvme/vfio.h says
 * why nvme.so cannot be redirected). The trees have sysfs's shape: functions
 * under devices/, bus/pci/devices/ADDR, driver and iommu_group links, and
 * kernel/iommu_groups/N/devices/ADDR, all relative symlinks.
 *
 * Faking ends at the first ioctl: a regular file for /dev/vfio/N opens, and
 * VFIO_GROUP_GET_STATUS fails on it (the not_a_group case). The kernel's
 * viability flag, /dev/vfio/vfio, the container and device ioctls need a real
 * VFIO group: tests/test-nvme-vm.sh runs them in a VM. */
#include "harness.h"

#include "vfio.h"

#include <diskcore/plugin.h>
#include <errno.h>
#include <stdarg.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define ADDR "0000:00:03.0"

struct tree {
	char sys[PATH_MAX], dev[PATH_MAX];
	struct nvme_vfio_roots r;
};

/* printf into the next of a ring of buffers: valid for 15 more calls, and
 * nothing to free (the ASan run checks for leaks). */
static const char *__attribute__((format(printf, 1, 2))) P(const char *fmt, ...)
{
	static char ring[16][PATH_MAX];
	static unsigned next;
	char *buf = ring[next++ % 16];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, PATH_MAX, fmt, ap);
	va_end(ap);
	return buf;
}

/* mkdir -p, each directory 0755 whatever the umask (the unprivileged case
 * walks the tree as another user). */
static void mkdirs(const char *path)
{
	char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s", path);
	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s)
			continue;
		char c = *s;

		*s = 0;
		if (mkdir(p, 0755) == 0)
			ck_assert_int_eq(chmod(p, 0755), 0);
		else if (errno != EEXIST)
			ck_abort_msg("mkdir %s: %s", p, strerror(errno));
		*s = c;
		if (!c)
			break;
	}
}

static void link_at(const char *target, const char *path)
{
	if (symlink(target, path) < 0)
		ck_abort_msg("symlink %s: %s", path, strerror(errno));
}

/* An empty system: no functions, no IOMMU groups, an empty /dev/vfio. */
static void tree_init(struct tree *t)
{
	char *root = h_tmpsubdir();

	ck_assert_int_eq(chmod(h_tmpdir(), 0755), 0);
	ck_assert_int_eq(chmod(root, 0755), 0);
	snprintf(t->sys, sizeof(t->sys), "%s/sys", root);
	snprintf(t->dev, sizeof(t->dev), "%s/dev", root);
	free(root);
	t->r.sys = t->sys;
	t->r.dev = t->dev;
	mkdirs(P("%s/bus/pci/devices", t->sys));
	mkdirs(P("%s/devices/pci0000:00", t->sys));
	mkdirs(P("%s/kernel/iommu_groups", t->sys));
	mkdirs(P("%s/vfio", t->dev));
}

/* Function `addr` of PCI class `cls`, in IOMMU group `group` (-1: none),
 * bound to `driver` (NULL: none). */
static void add_fn(struct tree *t, const char *addr, const char *cls, int group,
		   const char *driver)
{
	char dir[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s", P("%s/devices/pci0000:00/%s", t->sys, addr));

	mkdirs(dir);
	h_write_file(P("%s/class", dir), cls, strlen(cls), 0644);
	link_at(P("../../../devices/pci0000:00/%s", addr),
		P("%s/bus/pci/devices/%s", t->sys, addr));
	if (driver) {
		mkdirs(P("%s/bus/pci/drivers/%s", t->sys, driver));
		link_at(P("../../../bus/pci/drivers/%s", driver), P("%s/driver", dir));
	}
	if (group >= 0) {
		mkdirs(P("%s/kernel/iommu_groups/%d/devices", t->sys, group));
		link_at(P("../../../kernel/iommu_groups/%d", group),
			P("%s/iommu_group", dir));
		link_at(P("../../../../devices/pci0000:00/%s", addr),
			P("%s/kernel/iommu_groups/%d/devices/%s", t->sys, group, addr));
	}
}

/* nvme_vfio_open_at() must fail with exactly rc and message `want`. */
static void expect(const struct tree *t, const char *addr, int rc, const char *want)
{
	struct nvme_dev *d = NULL;

	ck_assert_int_eq(nvme_vfio_open_at(&t->r, addr, 1, &d), rc);
	ck_assert_ptr_null(d);
	ck_assert_str_eq(dc_last_error(), want);
}

static const char *bind_hint(const struct tree *t, const char *driver)
{
	return P(ADDR " is bound to %s, not to vfio-pci; bind it with: modprobe "
		      "vfio-pci; echo vfio-pci > %s/bus/pci/devices/" ADDR
		      "/driver_override; %secho " ADDR " > %s/bus/pci/drivers_probe",
		 driver ? driver : "no driver", t->sys,
		 driver ? P("echo " ADDR " > %s/bus/pci/devices/" ADDR "/driver/unbind; ",
			    t->sys) :
			  "",
		 t->sys);
}

START_TEST(bad_address)
{
	struct tree t;

	tree_init(&t);
	expect(&t, "0000:00:03", -EINVAL,
	       "'0000:00:03' is not a PCI address (DDDD:BB:DD.F, as in 0000:00:03.0)");
	expect(&t, "0000:00:20.0", -EINVAL,
	       "'0000:00:20.0' is not a PCI address (DDDD:BB:DD.F, as in "
	       "0000:00:03.0)");
	expect(&t, "00:03.0", -EINVAL,
	       "'00:03.0' is not a PCI address (DDDD:BB:DD.F, as in 0000:00:03.0)");
}
END_TEST

START_TEST(no_device)
{
	struct tree t;

	tree_init(&t);
	expect(&t, ADDR, -ENOENT,
	       P("no PCI device " ADDR " (%s/bus/pci/devices/" ADDR " is missing)",
		 t.sys));
	/* nvme.so's own roots are the real ones. */
	ck_assert_str_eq(nvme_vfio_real_roots.sys, "/sys");
	ck_assert_str_eq(nvme_vfio_real_roots.dev, "/dev");
	struct nvme_dev *d = NULL;
	ck_assert_int_eq(nvme_vfio_open("fffe:fe:1f.7", 1, &d), -ENOENT);
	ck_assert_str_eq(dc_last_error(), "no PCI device fffe:fe:1f.7 "
					  "(/sys/bus/pci/devices/fffe:fe:1f.7 is "
					  "missing)");
}
END_TEST

/* No IOMMU: no group at all. Said before the driver, which vfio-pci could
 * not replace anyway (it does not bind to a function outside any group). */
START_TEST(no_iommu)
{
	const char *want = ADDR " is in no IOMMU group: no IOMMU is enabled (boot "
				"with intel_iommu=on or amd_iommu=on; in a VM, give it "
				"an emulated IOMMU)";
	struct tree t;

	tree_init(&t);
	add_fn(&t, ADDR, "0x010802\n", -1, "nvme");
	expect(&t, ADDR, -ENODEV, want);
	/* Without kernel/iommu_groups at all, as on a kernel built without it. */
	ck_assert_int_eq(rmdir(P("%s/kernel/iommu_groups", t.sys)), 0);
	expect(&t, ADDR, -ENODEV, want);
}
END_TEST

/* An IOMMU is on (another function has a group) but this one has none. */
START_TEST(iommu_not_covering)
{
	struct tree t;

	tree_init(&t);
	add_fn(&t, "0000:00:02.0", "0x030000\n", 0, "i915");
	add_fn(&t, ADDR, "0x010802\n", -1, "vfio-pci");
	expect(&t, ADDR, -ENODEV,
	       ADDR " is in no IOMMU group, though an IOMMU is enabled: the IOMMU "
		    "does not cover this function, so VFIO cannot give it to a "
		    "process");
}
END_TEST

START_TEST(bound_elsewhere)
{
	struct tree t;

	tree_init(&t);
	add_fn(&t, ADDR, "0x010802\n", 7, "nvme");
	expect(&t, ADDR, -ENODEV, bind_hint(&t, "nvme"));

	tree_init(&t);
	add_fn(&t, ADDR, "0x010802\n", 7, NULL);
	expect(&t, ADDR, -ENODEV, bind_hint(&t, NULL));
}
END_TEST

/* Another member of the group is bound to a driver that keeps it from VFIO:
 * refused from sysfs, before /dev/vfio/7 (absent here) is opened. */
START_TEST(group_not_viable)
{
	struct tree t;

	tree_init(&t);
	add_fn(&t, ADDR, "0x010802\n", 7, "vfio-pci");
	add_fn(&t, "0000:00:03.1", "0x040300\n", 7, "snd_hda_intel");
	expect(&t, ADDR, -EBUSY,
	       "IOMMU group 7 of " ADDR " is not viable: every device in it must be "
	       "bound to vfio-pci or to no driver; the others are: 0000:00:03.1 "
	       "(snd_hda_intel)");

	/* Every other member is listed, sorted, harmless ones included. */
	tree_init(&t);
	add_fn(&t, "0000:00:1c.0", "0x060400\n", 7, "pcieport");
	add_fn(&t, ADDR, "0x010802\n", 7, "vfio-pci");
	add_fn(&t, "0000:00:03.2", "0x0c0330\n", 7, NULL);
	add_fn(&t, "0000:00:03.1", "0x0c0330\n", 7, "xhci_hcd");
	expect(&t, ADDR, -EBUSY,
	       "IOMMU group 7 of " ADDR " is not viable: every device in it must be "
	       "bound to vfio-pci or to no driver; the others are: 0000:00:03.1 "
	       "(xhci_hcd), 0000:00:03.2 (no driver), 0000:00:1c.0 (pcieport)");
}
END_TEST

/* Members the kernel lets stay (no driver, vfio-pci and variants, the
 * stubs, the port driver, a bridge's driver): set-up goes on to the group's
 * node, which is missing. */
START_TEST(group_node_missing)
{
	struct tree t;

	tree_init(&t);
	add_fn(&t, ADDR, "0x010802\n", 7, "vfio-pci");
	add_fn(&t, "0000:00:03.1", "0x010802\n", 7, "vfio-pci");
	add_fn(&t, "0000:00:03.2", "0x010802\n", 7, "mlx5_vfio_pci");
	add_fn(&t, "0000:00:03.3", "0x020000\n", 7, "pci-stub");
	add_fn(&t, "0000:00:03.4", "0x020000\n", 7, "pci-pf-stub");
	add_fn(&t, "0000:00:03.5", "0x020000\n", 7, NULL);
	add_fn(&t, "0000:00:1c.0", "0x060400\n", 7, "pcieport");
	add_fn(&t, "0000:00:1c.1", "0x060400\n", 7, "shpchp");
	expect(&t, ADDR, -ENOENT,
	       P("%s/vfio/7: No such file or directory: the group's device node "
		 "is missing (in a container, pass it in with /dev/vfio/vfio)",
		 t.dev));
}
END_TEST

/* The node is root's alone: opened as another user (root drops to nobody in
 * a child; anyone else gets a mode 0 node). */
START_TEST(group_node_not_permitted)
{
	struct tree t;
	char msg[1024] = "";
	int rc = 0, fds[2], status;
	pid_t pid;

	tree_init(&t);
	add_fn(&t, ADDR, "0x010802\n", 7, "vfio-pci");
	h_write_file(P("%s/vfio/7", t.dev), "", 0, geteuid() ? 0 : 0600);
	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct nvme_dev *d = NULL;

		if (geteuid() == 0 &&
		    (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
		     setresuid(65534, 65534, 65534) < 0))
			_exit(2);
		rc = nvme_vfio_open_at(&t.r, ADDR, 1, &d);
		snprintf(msg, sizeof(msg), "%s", dc_last_error());
		if (write(fds[1], &rc, sizeof(rc)) != sizeof(rc) ||
		    write(fds[1], msg, strlen(msg)) < 0)
			_exit(3);
		_exit(d ? 4 : 0);
	}
	close(fds[1]);
	ck_assert_int_eq(read(fds[0], &rc, sizeof(rc)), sizeof(rc));
	ck_assert_int_ge(read(fds[0], msg, sizeof(msg) - 1), 0);
	close(fds[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "child status %#x (2: could not become nobody)", status);
	ck_assert_int_eq(rc, -EACCES);
	ck_assert_str_eq(msg, P("%s/vfio/7: Permission denied: not permitted (run "
				"as root, or give this user the group's device "
				"node)",
				t.dev));
}
END_TEST

/* Where faking ends: a regular file opens as the group's node, and the first
 * ioctl on it (VFIO_GROUP_GET_STATUS) fails. Every later step needs a real
 * VFIO group and container. */
START_TEST(not_a_group)
{
	struct tree t;

	tree_init(&t);
	add_fn(&t, ADDR, "0x010802\n", 7, "vfio-pci");
	h_write_file(P("%s/vfio/7", t.dev), "", 0, 0600);
	expect(&t, ADDR, -ENOTTY,
	       P("%s/vfio/7: not a VFIO group: Inappropriate ioctl for device", t.dev));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("nvme-vfio-setup");
	TCase *tc = tcase_create("setup");

	tcase_add_test(tc, bad_address);
	tcase_add_test(tc, no_device);
	tcase_add_test(tc, no_iommu);
	tcase_add_test(tc, iommu_not_covering);
	tcase_add_test(tc, bound_elsewhere);
	tcase_add_test(tc, group_not_viable);
	tcase_add_test(tc, group_node_missing);
	tcase_add_test(tc, group_node_not_permitted);
	tcase_add_test(tc, not_a_group);
	suite_add_tcase(s, tc);
	return h_run(s);
}
