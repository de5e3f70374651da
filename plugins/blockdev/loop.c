/* SPDX-License-Identifier: MIT */
/* blockdev: the plugin thread, which flushes and reaps rings that are not
 * driven, and watches kernel uevents for resized block devices. */
#include "blockdev.h"

#include <errno.h>
#include <libudev.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* --- The plugin thread -------------------------------------------------------- */

static pthread_mutex_t bdev_life = PTHREAD_MUTEX_INITIALIZER;
static struct bdev_loop *bdev_cur; /* under bdev_life */
static unsigned bdev_refs;	   /* under bdev_life */
static char bdev_tag_ctl, bdev_tag_udev;

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
static void bdev_uevents(struct bdev_loop *L)
{
	struct udev_device *d;

	for (;;) {
		const char *action;
		bool all;
		dev_t devnum;

		d = udev_monitor_receive_device(L->mon);
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
		pthread_mutex_lock(&L->lock);
		for (struct bdev *b = L->devs; b; b = b->next) {
			if (all || b->rdev == devnum)
				bdev_resized(b);
		}
		pthread_mutex_unlock(&L->lock);
	}
}

static void bdev_loop_free(struct bdev_loop *L);

static void *bdev_thread(void *arg)
{
	struct bdev_loop *L = arg;
	struct epoll_event ev[64];

	for (;;) {
		struct bq *dead, *retry, *q;
		bool stop;
		int n;

		pthread_mutex_lock(&L->lock);
		retry = L->retry;
		L->retry = NULL;
		pthread_mutex_unlock(&L->lock);
		while ((q = retry)) {
			retry = q->next;
			pthread_mutex_lock(&q->lock);
			q->on_retry = false;
			pthread_mutex_unlock(&q->lock);
			bq_kick(q);
		}
		/* Between batches: no ring from an earlier epoll_wait or retry
		 * list is held any more (queue_close() waits for this). */
		pthread_mutex_lock(&L->lock);
		L->gen++;
		pthread_cond_broadcast(&L->cond);
		dead = L->dead;
		L->dead = NULL;
		stop = L->stop;
		/* A refused submission is retried after a millisecond. */
		n = L->retry ? 1 : -1;
		pthread_mutex_unlock(&L->lock);
		while ((q = dead)) {
			dead = q->next;
			bq_destroy(q);
		}
		if (stop)
			break;
		n = epoll_wait(L->epfd, ev, 64, n);
		for (int i = 0; i < n; i++) {
			void *p = ev[i].data.ptr;

			if (p == &bdev_tag_ctl) {
				eventfd_t v;

				eventfd_read(L->ctlfd, &v);
			} else if (p == &bdev_tag_udev) {
				bdev_uevents(L);
			} else {
				bq_kick(p);
			}
		}
	}
	if (L->detached)
		bdev_loop_free(L);
	return NULL;
}

static void bdev_loop_free(struct bdev_loop *L)
{
	if (L->mon)
		udev_monitor_unref(L->mon);
	if (L->udev)
		udev_unref(L->udev);
	if (L->epfd >= 0)
		close(L->epfd);
	if (L->ctlfd >= 0)
		close(L->ctlfd);
	pthread_cond_destroy(&L->cond);
	pthread_mutex_destroy(&L->lock);
	free(L);
}

/* The running plugin thread, started by the first instance. */
struct bdev_loop *bdev_loop_get(void)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &bdev_tag_ctl };
	struct bdev_loop *L;
	sigset_t all, old;
	int rc;

	bdev_frames_init();
	pthread_mutex_lock(&bdev_life);
	if (bdev_cur) {
		bdev_refs++;
		L = bdev_cur;
		pthread_mutex_unlock(&bdev_life);
		return L;
	}
	L = calloc(1, sizeof(*L));
	if (!L) {
		pthread_mutex_unlock(&bdev_life);
		dc_error("out of memory");
		return NULL;
	}
	pthread_mutex_init(&L->lock, NULL);
	pthread_cond_init(&L->cond, NULL);
	L->epfd = epoll_create1(EPOLL_CLOEXEC);
	L->ctlfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (L->epfd < 0 || L->ctlfd < 0 ||
	    epoll_ctl(L->epfd, EPOLL_CTL_ADD, L->ctlfd, &ev) < 0) {
		dc_error("cannot set up the completion thread: %s", strerror(errno));
		goto fail;
	}
	/* The thread takes no signals: they belong to the application. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&L->thread, NULL, bdev_thread, L);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		dc_error("cannot start the completion thread: %s", strerror(rc));
		goto fail;
	}
	bdev_cur = L;
	bdev_refs = 1;
	pthread_mutex_unlock(&bdev_life);
	return L;
fail:
	bdev_loop_free(L);
	pthread_mutex_unlock(&bdev_life);
	return NULL;
}

void bdev_loop_put(struct bdev_loop *L)
{
	bool self;

	pthread_mutex_lock(&bdev_life);
	if (--bdev_refs) {
		pthread_mutex_unlock(&bdev_life);
		return;
	}
	bdev_cur = NULL;
	pthread_mutex_unlock(&bdev_life);
	pthread_mutex_lock(&L->lock);
	L->stop = true;
	pthread_mutex_unlock(&L->lock);
	eventfd_write(L->ctlfd, 1);
	self = pthread_equal(pthread_self(), L->thread);
	if (self) {
		/* The last disk was closed from a completion callback on the
		 * thread itself: it frees the loop when it leaves. */
		L->detached = true;
		pthread_detach(L->thread);
		return;
	}
	pthread_join(L->thread, NULL);
	bdev_loop_free(L);
}

/* Watch a block device for resize uevents. The monitor is made on first use;
 * without one (no netlink), the size simply never changes. */
void bdev_watch(struct bdev *b)
{
	struct bdev_loop *L = b->loop;

	pthread_mutex_lock(&L->lock);
	if (!L->mon_tried) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &bdev_tag_udev };

		L->mon_tried = true;
		L->udev = udev_new();
		if (L->udev)
			L->mon = udev_monitor_new_from_netlink(L->udev, "kernel");
		if (L->mon)
			udev_monitor_set_receive_buffer_size(L->mon, 1 << 20);
		if (!L->mon ||
		    udev_monitor_filter_add_match_subsystem_devtype(L->mon, "block",
								    NULL) < 0 ||
		    udev_monitor_enable_receiving(L->mon) < 0 ||
		    epoll_ctl(L->epfd, EPOLL_CTL_ADD, udev_monitor_get_fd(L->mon), &ev) <
			    0) {
			dc_debug("blockdev: no uevent monitor, resizes go unnoticed");
			if (L->mon)
				udev_monitor_unref(L->mon);
			L->mon = NULL;
		}
	}
	if (L->mon) {
		b->next = L->devs;
		L->devs = b;
		b->watched = true;
	}
	pthread_mutex_unlock(&L->lock);
}

void bdev_unwatch(struct bdev *b)
{
	struct bdev_loop *L = b->loop;

	if (!b->watched)
		return;
	pthread_mutex_lock(&L->lock);
	for (struct bdev **pp = &L->devs; *pp; pp = &(*pp)->next) {
		if (*pp == b) {
			*pp = b->next;
			break;
		}
	}
	pthread_mutex_unlock(&L->lock);
}
