/* SPDX-License-Identifier: MIT */
/* vhd: the plugin's descriptor and the life of an instance: open, attach,
 * lower_spec, describe, close (the format and its order of writes: vhd.h). */
#include "vhd.h"

#include "vhdfmt/aio.h"
#include "vhdfmt/open.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- Open, attach, close ---------------------------------------------------------- */

static void vhd_free(void *inst)
{
	struct vhd_img *v = inst;

	vhdfmt_engine_close(&v->img.aio_fd, &v->img.ioe);
	if (v->img.fd >= 0) {
		if (!v->read_only && !v->fixed)
			vhd_trim(v);
		close(v->img.fd);
	}
	if (v->bm) {
		for (uint32_t i = 0; i < v->m.nblocks; i++)
			if (v->bm[i] != VHD_BM_FULL)
				free(v->bm[i]);
		free(v->bm);
	}
	pthread_mutex_destroy(&v->lock);
	free(v->dirty);
	free(v->dirty_bits);
	free(v->bat_dirty);
	free(v->bat);
	free(v->parent_path);
	free(v->dir);
	free(v->img.path);
	free(v);
}

/* The last close of an image this process has open (share.h) closes it. */
static void vhd_close(void *inst)
{
	vhdfmt_share_close_inst(inst, vhd_free);
}

/* A writable open puts back a damaged footer or footer copy. */
static int vhd_repair(struct vhd_img *v)
{
	int ret = 0;

	if (!v->m.end_ok) {
		v->footer_off = vhdfmt_round_up(v->m.file_size, VHD_SECTOR);
		ret = vhdfmt_pwrite(v->img.fd, v->m.footer_raw, VHD_FOOTER_SIZE,
				    v->footer_off);
		v->junk_end = v->footer_off + VHD_FOOTER_SIZE;
	}
	if (ret == 0 && !v->m.copy_ok)
		ret = vhdfmt_pwrite(v->img.fd, v->m.footer_raw, VHD_FOOTER_SIZE, 0);
	if (ret == 0 && fdatasync(v->img.fd) < 0)
		ret = -errno;
	if (ret < 0)
		vhdfmt_err("%s: cannot repair the footer: %s", v->img.path,
			   strerror(-ret));
	else
		dc_debug("%s: footer repaired", v->img.path);
	return ret;
}

/* Relative parent locators start in the image's directory. A path that does
 * not resolve (an fd of a deleted file) still has the directory it names. */
static int vhd_set_dir(struct vhd_img *v)
{
	char *real = realpath(v->img.path, NULL);

	if (!real && v->img.path[0] != '/') {
		char cwd[PATH_MAX];

		if (getcwd(cwd, sizeof(cwd)) &&
		    asprintf(&real, "%s/%s", cwd, v->img.path) < 0)
			real = NULL;
	}
	v->dir = vhd_dirname(real ? real : v->img.path);
	free(real);
	if (!v->dir) {
		vhdfmt_err("out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* Parse the image and load its BAT; a writable open repairs the footers. */
static int vhd_load(void *inst, const void *opts, bool created)
{
	const struct vhd_create *c = opts;
	struct vhd_img *v = inst;
	int ret;

	/* The parent parent= named, not what the new locators say. */
	if (created && c->parent && !(v->parent_path = realpath(c->parent, NULL))) {
		ret = -errno;
		vhdfmt_err("%s: parent %s: %s", v->img.path, c->parent, strerror(-ret));
		return ret;
	}
	ret = vhd_set_dir(v);
	if (ret == 0)
		ret = vhd_parse(v->img.fd, v->img.path, &v->m);
	if (ret)
		return ret;
	v->fixed = v->m.f.disk_type == VHD_TYPE_FIXED;
	v->diff = v->m.f.disk_type == VHD_TYPE_DIFF;
	v->junk_end = v->m.file_size;
	v->footer_off = v->m.end_ok ? v->m.file_size - VHD_FOOTER_SIZE : v->m.file_size;
	if (v->fixed)
		return 0;
	ret = vhd_load_bat(v);
	if (ret == 0 && !v->read_only && (!v->m.end_ok || !v->m.copy_ok))
		ret = vhd_repair(v);
	return ret;
}

static void vhd_fill_info(void *inst, struct dc_info *info)
{
	struct vhd_img *v = inst;

	memset(info, 0, sizeof(*info));
	info->sector_count = v->m.f.current_size / VHD_SECTOR;
	info->sector_size = VHD_SECTOR;
	info->physical_sector_size = VHD_SECTOR;
	info->optimal_unmap_sectors = 1;
	info->unmap_behavior = DC_UNMAP_IGNORED;
	info->flags = DC_INFO_HAS_DISK_ID | DC_INFO_FUA_RESPECTED |
		      (v->read_only ? DC_INFO_READ_ONLY : 0);
	memcpy(info->disk_id, v->m.f.unique_id, sizeof(info->disk_id));
	snprintf(info->disk_type, sizeof(info->disk_type), "vhd");
	v->img.info = *info;
}

static void vhd_init(void *inst, bool read_only)
{
	struct vhd_img *v = inst;

	pthread_mutex_init(&v->lock, NULL);
	v->read_only = read_only;
}

static const struct dc_option vhd_options[] = {
	DC_OPTION_SIZE("create", "create a missing file as a dynamic VHD of SIZE bytes "
				 "(file:X.vhd: a fixed one); an existing one opens "
				 "unchanged"),
	DC_OPTION_SIZE("block", "block size of a new image (default 2M)"),
	DC_OPTION_STRING("parent",
			 "create a missing file as a differencing VHD over the parent "
			 "image PATH; an existing child opens over PATH (checked by "
			 "unique id)"),
	DC_OPTION_STRING("parents", "'beneath' (default): a parent locator is followed "
				    "only inside the child's directory; 'any': "
				    "anywhere"),
	DC_OPTION_FLAG("overwrite", "with create= or parent=: replace an existing file"),
	DC_OPTIONS_END,
};

/* open(): the steps of common/vhdfmt/open.h. */
VHDFMT_OPEN_DIFF(vhd, struct vhd_img, struct vhd_create);

/* Every open of a shared instance asks; the parent is resolved once (or was
 * named by parent=). The parent opens as what the child declares, a VHD. */
static int vhd_lower_spec(void *inst, char *buf, size_t len)
{
	struct vhd_img *v = inst;
	int ret = 0;

	if (!v->diff)
		return 0;
	pthread_mutex_lock(&v->lock);
	if (!v->parent_path)
		ret = vhd_find_parent(v->img.fd, &v->m, v->img.path, v->dir,
				      v->img.parents_any, &v->parent_path);
	pthread_mutex_unlock(&v->lock);
	if (ret == 0)
		ret = vhdfmt_lower_spec_any("vhd", v->img.path, v->img.fd, v->parent_path,
					    vhd_parent_of, v->img.parents_any, buf, len);
	return ret;
}

static int vhd_attach(void *inst, const struct dc_info *lower, struct dc_info *info)
{
	struct vhd_img *v = inst;
	int ret = vhdfmt_attach(&v->img.info, v->diff, lower, v->img.path, "VHD", info);
	char want[37], got[37];

	if (ret <= 0)
		return ret;
	vhdfmt_uid_str(v->m.dh.parent_uid, want);
	if (!(lower->flags & DC_INFO_HAS_DISK_ID)) {
		vhdfmt_err("%s: the layer below has no unique id; expected the parent %s",
			   v->img.path, want);
		return -EINVAL;
	}
	if (memcmp(lower->disk_id, v->m.dh.parent_uid, 16) != 0) {
		vhdfmt_uid_str(lower->disk_id, got);
		vhdfmt_err("%s: parent %s has unique id %s, but this image expects %s "
			   "(the parent was replaced or modified)",
			   v->img.path, v->parent_path ? v->parent_path : "below", got,
			   want);
		return -EINVAL;
	}
	if (lower->sector_size != VHD_SECTOR) {
		vhdfmt_err(
			"%s: the parent has %u-byte sectors; VHD sectors are 512 bytes",
			v->img.path, lower->sector_size);
		return -EINVAL;
	}
	return 0;
}

static void vhd_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct vhd_img *v = inst;
	char id[37];
	uint64_t n = 0;

	kv(arg, "path", v->img.path);
	kv(arg, "format",
	   v->fixed ? "fixed VHD" :
	   v->diff  ? "differencing VHD" :
		      "dynamic VHD");
	dc_kv_u64(kv, arg, "virtual size", v->m.f.current_size);
	vhdfmt_uid_str(v->m.f.unique_id, id);
	kv(arg, "unique id", id);
	if (!v->fixed) {
		dc_kv_u64(kv, arg, "block size", v->m.block_size);
		for (uint32_t i = 0; i < v->m.nblocks; i++)
			n += vhd_bat_get(v, i) != VHD_UNALLOC;
		dc_kv_printf(kv, arg, "allocated blocks", "%llu of %u",
			     (unsigned long long)n, v->m.nblocks);
	}
	if (v->diff) {
		vhdfmt_uid_str(v->m.dh.parent_uid, id);
		kv(arg, "parent unique id", id);
		if (v->parent_path)
			kv(arg, "parent", v->parent_path);
		kv(arg, "parent locators",
		   v->img.parents_any ? "followed anywhere (;parents=any)" :
					"followed inside the image's directory");
	}
	if (v->created)
		dc_kv_bool(kv, arg, "created", true);
	kv(arg, "io", ioe_file_describe(v->img.ioe));
}

DC_PLUGIN(vhd_plugin) = {
	DC_ABOUT(DC_KIND_LAYER, "vhd", "0.1.0",
		 "fixed, dynamic and differencing VHD images (read-write)"),
	.usage = "vhd:PATH[;create=SIZE[;block=SIZE]]  vhd:PATH;parent=BASE.vhd\n"
		 "  A VHD image of any type. A differencing image opens its parent\n"
		 "  (found through its W2ru/W2ku locators, relative first, inside the\n"
		 "  child's directory unless ;parents=any; or named by ;parent=PATH)\n"
		 "  read-only as a VHD layer below, after checking its unique id.\n"
		 "  Writes allocate blocks in a crash-safe order; flush makes them\n"
		 "  durable. create=SIZE makes a dynamic image (file:X.vhd;create=SIZE\n"
		 "  a fixed one, as OpenVMM); parent=BASE makes a differencing child.\n"
		 "  Both make a missing file only; an existing one opens unchanged\n"
		 "  (;overwrite replaces it), and a read-only open never creates.\n"
		 "  Sectors are 512 bytes; unmap is ignored; the image is locked\n"
		 "  (flock) while open. Data I/O that changes no metadata runs on\n"
		 "  io_uring (a ring per queue; the worker pool where io_uring is\n"
		 "  unavailable, or DISKCORE_IO_ENGINE=pool); allocation and flush\n"
		 "  on the worker pool.",
	.forms = DC_FORMS(
		DC_FORM("vhd", 1, DC_CHILD_NONE,
			"vhd:PATH[;create=SIZE[;block=SIZE]|;parent=PATH][;overwrite]",
			"a fixed, dynamic or differencing VHD (a chain opens as layers)",
			vhd_options)),
	.ctx_size = sizeof(struct vhd_rq),
	.ops = DC_OPS_RW,
	DC_CALLBACKS(vhd, open, close, submit, io, sector_count, attach, lower_spec,
		     describe, resize, extents, check),
	IOE_PLUGIN_QUEUES(vhd),
};
