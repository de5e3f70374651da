/* SPDX-License-Identifier: MIT */
/* vhdfmt share: the per-plugin table of open images (see share.h). */
#include "share.h"

#include "vhdfmt.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

static pthread_mutex_t vhdfmt_share_mu = PTHREAD_MUTEX_INITIALIZER;
static struct vhdfmt_share *vhdfmt_share_list;

void vhdfmt_share_lock(void)
{
	pthread_mutex_lock(&vhdfmt_share_mu);
}

void vhdfmt_share_unlock(void)
{
	pthread_mutex_unlock(&vhdfmt_share_mu);
}

static struct vhdfmt_share *vhdfmt_share_find(const struct stat *st)
{
	for (struct vhdfmt_share *e = vhdfmt_share_list; e; e = e->next)
		if (e->dev == st->st_dev && e->ino == st->st_ino)
			return e;
	return NULL;
}

int vhdfmt_share_claim(int fd, const char *path, bool read_only,
		       struct vhdfmt_share **found)
{
	struct vhdfmt_share *e;
	struct stat st;
	int err;

	*found = NULL;
	if (fstat(fd, &st) < 0) {
		err = errno;
		vhdfmt_err("%s: stat failed: %s", path, strerror(err));
		return -err;
	}
	e = vhdfmt_share_find(&st);
	if (!e)
		return vhdfmt_lock(fd, path, read_only);
	/* Modes must match, as flock's would: a writable open beside a read-only
	 * one would change a parent underneath a live chain, or an image under
	 * a reader that expects it not to change. */
	if (e->read_only && !read_only) {
		vhdfmt_err("%s: the image is open read-only in this process (a read-only "
			   "open, or a lower layer of a chain), so it cannot also be "
			   "opened writable; close the read-only open first",
			   path);
		return -EBUSY;
	}
	if (!e->read_only && read_only) {
		vhdfmt_err("%s: the image is open writable in this process, so it cannot "
			   "also be opened read-only (as a lower layer of a chain, it "
			   "would change underneath it); open it writable, or close the "
			   "writable open first",
			   path);
		return -EBUSY;
	}
	e->refs++;
	*found = e;
	return 0;
}

int vhdfmt_share_add(struct vhdfmt_share *e, int fd, bool read_only)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	e->dev = st.st_dev;
	e->ino = st.st_ino;
	e->read_only = read_only;
	e->refs = 1;
	e->next = vhdfmt_share_list;
	vhdfmt_share_list = e;
	return 0;
}

int vhdfmt_share_open(int (*fn)(const struct dc_open_args *a, void **inst,
				struct dc_info *info),
		      const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	int ret;

	vhdfmt_share_lock();
	ret = fn(a, inst, info);
	vhdfmt_share_unlock();
	return ret;
}

int vhdfmt_share_join(struct vhdfmt_share *e, int err, const struct dc_info *base,
		      bool read_only, struct dc_info *info)
{
	if (err) {
		e->refs--; /* never the last: the first open holds one */
		return err;
	}
	*info = *base;
	if (read_only)
		info->flags |= DC_INFO_READ_ONLY;
	return 0;
}

/* Drop a reference; true for the last one, which returns with the table
 * held: the caller runs its fin, then unlocks. */
static bool vhdfmt_share_drop(struct vhdfmt_share *e)
{
	vhdfmt_share_lock();
	if (e->refs > 1) {
		e->refs--;
		vhdfmt_share_unlock();
		return false;
	}
	for (struct vhdfmt_share **p = &vhdfmt_share_list; e->refs && *p;
	     p = &(*p)->next) {
		if (*p == e) {
			*p = e->next;
			break;
		}
	}
	e->refs = 0;
	return true;
}

/* fin runs under the table, until the fd and its flock are gone: an open of
 * the image on another thread meanwhile waits for it, instead of meeting the
 * flock of an instance it can no longer find. */
void vhdfmt_share_close(struct vhdfmt_share *e, void (*fin)(struct vhdfmt_share *e))
{
	if (vhdfmt_share_drop(e)) {
		fin(e);
		vhdfmt_share_unlock();
	}
}

void vhdfmt_share_close_inst(void *inst, void (*fin)(void *inst))
{
	if (vhdfmt_share_drop(inst)) {
		fin(inst);
		vhdfmt_share_unlock();
	}
}
