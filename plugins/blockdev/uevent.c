/* SPDX-License-Identifier: MIT */
/* blockdev: the resize watcher. One libudev monitor of kernel uevents for
 * every open block device, read on the file engine's thread (ioe_watch); it
 * exists while a device is watched. Without one (no netlink), the size simply
 * never changes. */
#include "blockdev.h"

#include <errno.h>
#include <libudev.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>

static struct {
	pthread_mutex_t lock;
	struct udev *udev;
	struct udev_monitor *mon;
	struct ioe_watch *watch;
	struct bdev *devs; /* block devices watched for resize */
} bdev_uev = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void bdev_resized(struct bdev *b)
{
	uint64_t bytes, sectors;

	if (ioctl(b->fd, BLKGETSIZE64, &bytes) < 0)
		return;
	sectors = bytes >> b->shift;
	if (atomic_exchange(&b->sectors, sectors) != sectors) {
		dc_debug("blockdev: %s resized to %llu sectors", b->path,
			 (unsigned long long)sectors);
		dc_node_notify_resize(b->node);
	}
}

static bool bdev_prop_true(struct udev_device *d, const char *key)
{
	const char *v = udev_device_get_property_value(d, key);

	return v && (!strcmp(v, "1") || !strcmp(v, "true"));
}

/* Kernel uevents: "change" with RESIZE=1 for a device we hold, or RESCAN. */
static void bdev_uevents(void *arg)
{
	struct udev_monitor *mon = arg;
	struct udev_device *d;

	for (;;) {
		const char *action;
		bool all;
		dev_t devnum;

		d = udev_monitor_receive_device(mon);
		if (!d) {
			/* Events were dropped: any of ours may have been one. */
			if (errno != ENOBUFS)
				break;
			all = true;
			devnum = 0;
		} else {
			action = udev_device_get_action(d);
			all = bdev_prop_true(d, "RESCAN");
			devnum = udev_device_get_devnum(d);
			if (!all && !(action && !strcmp(action, "change") &&
				      bdev_prop_true(d, "RESIZE"))) {
				udev_device_unref(d);
				continue;
			}
			udev_device_unref(d);
		}
		pthread_mutex_lock(&bdev_uev.lock);
		for (struct bdev *b = bdev_uev.devs; b; b = b->next) {
			if (all || b->rdev == devnum)
				bdev_resized(b);
		}
		pthread_mutex_unlock(&bdev_uev.lock);
	}
}

/* The monitor, made when the first device is watched. Under the lock. */
static bool bdev_monitor(void)
{
	struct udev_monitor *mon = NULL;
	struct udev *udev;

	if (bdev_uev.watch)
		return true;
	udev = udev_new();
	if (udev)
		mon = udev_monitor_new_from_netlink(udev, "kernel");
	if (mon)
		udev_monitor_set_receive_buffer_size(mon, 1 << 20);
	if (!mon ||
	    udev_monitor_filter_add_match_subsystem_devtype(mon, "block", NULL) < 0 ||
	    udev_monitor_enable_receiving(mon) < 0 ||
	    !(bdev_uev.watch =
		      ioe_watch_add(udev_monitor_get_fd(mon), bdev_uevents, mon))) {
		dc_debug("blockdev: no uevent monitor, resizes go unnoticed");
		if (mon)
			udev_monitor_unref(mon);
		if (udev)
			udev_unref(udev);
		return false;
	}
	bdev_uev.udev = udev;
	bdev_uev.mon = mon;
	return true;
}

void bdev_watch(struct bdev *b)
{
	pthread_mutex_lock(&bdev_uev.lock);
	if (bdev_monitor()) {
		b->next = bdev_uev.devs;
		bdev_uev.devs = b;
		b->watched = true;
	}
	pthread_mutex_unlock(&bdev_uev.lock);
}

void bdev_unwatch(struct bdev *b)
{
	struct ioe_watch *w = NULL;
	struct udev_monitor *mon = NULL;
	struct udev *udev = NULL;

	if (!b->watched)
		return;
	pthread_mutex_lock(&bdev_uev.lock);
	for (struct bdev **pp = &bdev_uev.devs; *pp; pp = &(*pp)->next) {
		if (*pp == b) {
			*pp = b->next;
			break;
		}
	}
	if (!bdev_uev.devs) {
		w = bdev_uev.watch;
		mon = bdev_uev.mon;
		udev = bdev_uev.udev;
		bdev_uev.watch = NULL;
		bdev_uev.mon = NULL;
		bdev_uev.udev = NULL;
	}
	pthread_mutex_unlock(&bdev_uev.lock);
	/* Outside the lock, which the watch's callback takes. */
	if (w) {
		ioe_watch_del(w);
		udev_monitor_unref(mon);
		udev_unref(udev);
	}
}
