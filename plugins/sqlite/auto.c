/* SPDX-License-Identifier: MIT */
/* sqlite: autocache:, a read cache in $DISKCORE_AUTO_CACHE_PATH/KEY,
 * found and checked when it attaches over the disk below. */
#include "sqlite.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- Autocache ----------------------------------------------------------------- */

static int sq_mkdir(const char *dir)
{
	if (mkdir(dir, 0777) == 0 || errno == EEXIST)
		return 0;
	return -errno;
}

/* mkdir -p of every component of `dir`. */
static int sq_mkdirs(const char *dir)
{
	char *p = strdup(dir);
	int ret = 0;

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; *s && ret == 0; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		ret = sq_mkdir(p);
		*s = '/';
	}
	if (ret == 0)
		ret = sq_mkdir(p);
	free(p);
	return ret;
}

/* A database over a disk must hold as many sectors, of the same size. */
int sq_check_fit(const struct sq_layer *l, const struct dc_info *lower, const char *what,
		 const char *why, int err)
{
	if (l->count == lower->sector_count && l->ss == lower->sector_size)
		return 0;
	dc_error("%s: %s %llu sectors of %u bytes, but the disk below has %llu of "
		 "%u%s",
		 l->path, what, (unsigned long long)l->count, l->ss,
		 (unsigned long long)lower->sector_count, lower->sector_size, why);
	return err;
}

/* Find or create the cache for the disk below (docs/openvmm-compat.md §4.7
 * auto-cache). */
int sq_auto_attach(struct sq_layer *l, const struct dc_info *lower)
{
	char key[33], *dir = NULL;
	const char *k = l->key;
	int ret;

	if (!lower) {
		dc_error("autocache needs a disk below it (autocache:[KEY]:SPEC)");
		return -EINVAL;
	}
	if (!k) {
		if (!(lower->flags & DC_INFO_HAS_DISK_ID)) {
			dc_error(
				"the disk below has no disk id to name the cache by; give a "
				"key (autocache:KEY:SPEC)");
			return -EINVAL;
		}
		for (int i = 0; i < 16; i++)
			snprintf(key + 2 * i, 3, "%02x", lower->disk_id[i]);
		k = key;
	}
	if (asprintf(&dir, "%s/%s", l->cache_root, k) < 0 ||
	    asprintf(&l->path, "%s/" SQ_CACHE_FILE, dir) < 0) {
		free(dir);
		dc_error("out of memory");
		return -ENOMEM;
	}
	if (!sq_exists(l->path)) {
		if (l->read_only) {
			dc_error(
				"%s: no cache yet, and a read-only disk cannot create one",
				l->path);
			free(dir);
			return -ENOENT;
		}
		ret = sq_mkdirs(dir);
		if (ret < 0) {
			dc_error("%s: cannot create the cache directory: %s", dir,
				 strerror(-ret));
			free(dir);
			return ret;
		}
		ret = sq_create(l->path, lower->sector_count, lower->sector_size, true,
				false);
		if (ret < 0) {
			free(dir);
			return ret;
		}
		l->created = ret == 0;
	}
	free(dir);
	ret = sq_open_db(l);
	if (ret < 0)
		return ret;
	return sq_check_fit(l, lower, "the cache holds",
			    "; it belongs to another disk (remove it, or give another "
			    "key)",
			    -EINVAL);
}
