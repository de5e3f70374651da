/* SPDX-License-Identifier: MIT */
/* sqlite: open, attach, close, describe, and the plugin descriptor
 * (sqlite.h describes the design). */
#include "sqlite.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- Open, attach, close ------------------------------------------------------- */

static void sq_fill_info(const struct sq_layer *l, struct dc_info *info)
{
	memset(info, 0, sizeof(*info));
	info->sector_count = l->count;
	info->sector_size = l->ss ? l->ss : 512;
	info->physical_sector_size = info->sector_size;
	info->optimal_unmap_sectors = 1;
	info->unmap_behavior = DC_UNMAP_ZEROES;
	if (l->read_only || l->logical_ro)
		info->flags |= DC_INFO_READ_ONLY;
	if (!l->read_only)
		info->flags |= DC_INFO_FUA_RESPECTED | DC_INFO_CAN_READ_CACHE;
	snprintf(info->disk_type, sizeof(info->disk_type), "sqlite");
}

/* Give up the claim on the file dc_create_open() made; with remove, unlink it
 * too if the name still leads to it (the database was never formatted). */
static void sq_unclaim(struct sq_layer *l, bool remove)
{
	struct stat a, b;

	if (l->claim_fd < 0)
		return;
	if (remove && fstat(l->claim_fd, &a) == 0 && stat(l->path, &b) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		unlink(l->path);
	close(l->claim_fd);
	l->claim_fd = -1;
}

/* Format the database into the claimed file's place. */
static int sq_create_claimed(struct sq_layer *l, uint64_t count, uint32_t ss)
{
	int ret = sq_create(l->path, count, ss, false, true);

	if (ret < 0)
		return ret;
	sq_unclaim(l, false);
	l->created = true;
	return sq_open_db(l);
}

/* ;overwrite replaces the file, but a WAL with frames in it (left by a writer
 * that crashed, or a live one outside diskcore) would then be replayed into
 * the new database. */
static int sq_overwrite_ok(const char *path)
{
	char wal[PATH_MAX];
	struct stat st;

	snprintf(wal, sizeof(wal), "%s-wal", path);
	if (stat(wal, &st) != 0 || st.st_size == 0)
		return 0;
	dc_error("%s: cannot overwrite: the database is open, or was not closed "
		 "cleanly (%s holds commits; open it once without ;overwrite to "
		 "recover them)",
		 path, wal);
	return -EBUSY;
}

static void sq_close(void *inst)
{
	struct sq_layer *l = inst;
	struct sq_conn *c, *next;

	if (!l)
		return;
	/* The writer and checkpoint jobs may still be finishing their last step. */
	pthread_mutex_lock(&l->qlock);
	while (l->qactive || l->ckactive)
		pthread_cond_wait(&l->qidle, &l->qlock);
	pthread_mutex_unlock(&l->qlock);
	sq_handle_put(l->handle, true);
	/* Readers first: the writer's close, as the last, checkpoints the WAL. */
	for (c = l->all; c; c = next) {
		next = c->next_all;
		sq_conn_close(c);
	}
	sq_conn_close(l->ckpt);
	sq_conn_close(l->writer);
	sq_unclaim(l, true);
	if (l->lock_fd >= 0)
		close(l->lock_fd);
	pthread_mutex_destroy(&l->qlock);
	pthread_cond_destroy(&l->qidle);
	pthread_mutex_destroy(&l->rlock);
	free(l->path);
	free(l->key);
	free(l->cache_root);
	free(l);
}

static int sq_open_auto(struct sq_layer *l, const struct dc_open_args *a)
{
	const char *root = getenv("DISKCORE_AUTO_CACHE_PATH");

	if (!root || !*root)
		root = getenv("OPENVMM_AUTO_CACHE_PATH");
	if (!root || !*root) {
		dc_error("no cache directory: set DISKCORE_AUTO_CACHE_PATH (or "
			 "OPENVMM_AUTO_CACHE_PATH)");
		return -EINVAL;
	}
	/* The key names one directory under the cache root. */
	if (a->nfields > 0 && a->fields[0][0]) {
		const char *k = a->fields[0];

		if (strchr(k, '/') || k[0] == '.') {
			dc_error("key '%s': expected a name without '/' that does not "
				 "start with '.'",
				 k);
			return -EINVAL;
		}
		if (!(l->key = strdup(k)))
			return -ENOMEM;
	}
	if (!(l->cache_root = strdup(root)))
		return -ENOMEM;
	return 0;
}

/* A layer with its locks and its release-timer handle, or NULL. */
static struct sq_layer *sq_layer_new(void)
{
	struct sq_layer *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->claim_fd = -1;
	l->lock_fd = -1;
	l->handle = calloc(1, sizeof(*l->handle));
	if (!l->handle) {
		free(l);
		return NULL;
	}
	pthread_mutex_init(&l->handle->lock, NULL);
	l->handle->l = l;
	l->handle->refs = 1;
	pthread_mutex_init(&l->qlock, NULL);
	pthread_cond_init(&l->qidle, NULL);
	pthread_mutex_init(&l->rlock, NULL);
	return l;
}

static const struct dc_option sq_sql_options[] = {
	DC_OPTION_SIZE("create",
		       "create a missing database of SIZE bytes (an existing one opens "
		       "unchanged)"),
	DC_OPTION_FLAG("overwrite", "with create=: replace an existing database"),
	DC_OPTIONS_END,
};

static const struct dc_option sq_diff_options[] = {
	DC_OPTION_FLAG("create",
		       "create a missing database sized from the disk below (an existing "
		       "one opens unchanged)"),
	DC_OPTION_FLAG("overwrite", "with create: replace an existing database"),
	DC_OPTIONS_END,
};

/* sql:PATH and sqldiff:PATH: open the database, or claim the file for one
 * that is formatted now (sql:) or at attach (sqldiff:). */
static int sq_open_file(struct sq_layer *l, const struct dc_open_args *a)
{
	uint64_t create_len = 0;
	bool create, created;
	int fd, ret;

	if (a->nfields < 1 || !a->fields[0][0])
		return dc_fail(-EINVAL, "missing path (expected %s)",
			       l->form == SQ_SQL ? "sql:PATH[;create=SIZE]" :
						   "sqldiff:PATH[;create]:SPEC");
	if (!(l->path = strdup(a->fields[0])))
		return dc_fail(-ENOMEM, "out of memory");
	if (l->form == SQ_SQL)
		create = dc_opt_num(a, "create", &create_len);
	else
		create = dc_opt_flag(a, "create");
	if (create && l->form == SQ_SQL &&
	    (create_len == 0 || create_len % 512 || !sq_size_ok(create_len / 512, 512)))
		return dc_fail(-EINVAL,
			       "create=%llu: expected a non-zero multiple of 512 bytes",
			       (unsigned long long)create_len);
	if (create && !l->read_only && dc_opt_flag(a, "overwrite")) {
		ret = sq_overwrite_ok(l->path);
		if (ret < 0)
			return ret;
	}
	fd = dc_create_open(a, l->path, create ? O_CREAT : 0, &created);
	if (fd == -ENOENT && !create)
		dc_error("%s: no such database (add ;create%s to make one)", l->path,
			 l->form == SQ_SQL ? "=SIZE" : "");
	if (fd < 0)
		return fd;
	if (created) {
		l->claim_fd = fd;
		if (l->form == SQ_DIFF) {
			l->create = true; /* sized from the disk below, at attach */
			return 0;
		}
		return sq_create_claimed(l, create_len / 512, 512);
	}
	close(fd);
	l->fit_lower = create && l->form == SQ_DIFF;
	ret = sq_open_db(l);
	if (ret == 0 && create && l->form == SQ_SQL && l->count * l->ss != create_len) {
		dc_error("%s: exists with %llu bytes, not the %llu of create= (it was "
			 "opened, not replaced: add ;overwrite to replace it)",
			 l->path, (unsigned long long)(l->count * l->ss),
			 (unsigned long long)create_len);
		ret = -EEXIST;
	}
	return ret;
}

static int sq_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct sq_layer *l = sq_layer_new();
	int ret;

	if (!l)
		return dc_fail(-ENOMEM, "out of memory");
	l->read_only = a->read_only;
	l->form = !strcmp(a->form, "autocache") ? SQ_AUTO :
		  !strcmp(a->form, "sqldiff")	? SQ_DIFF :
						  SQ_SQL;
	if (l->form == SQ_AUTO) {
		ret = sq_open_auto(l, a);
		if (ret == -ENOMEM)
			dc_error("out of memory");
	} else {
		ret = sq_open_file(l, a);
	}
	if (ret < 0) {
		sq_close(l);
		return ret;
	}
	sq_fill_info(l, info);
	*inst = l;
	return 0;
}

static int sq_attach(void *inst, const struct dc_info *lower, struct dc_info *info)
{
	struct sq_layer *l = inst;
	int ret = 0;

	if (l->form == SQ_AUTO) {
		ret = sq_auto_attach(l, lower);
	} else if (l->create) {
		uint32_t ss = lower ? lower->sector_size : 512;
		uint64_t count = lower ? lower->sector_count : 0;

		if (!sq_size_ok(count, ss)) {
			dc_error("%s: cannot size a new diff layer from the disk below "
				 "(%llu sectors of %u bytes)",
				 l->path, (unsigned long long)count, ss);
			return -EINVAL;
		}
		ret = sq_create_claimed(l, count, ss);
		l->create = false;
	} else if (l->fit_lower && lower) {
		ret = sq_check_fit(l, lower, "exists with",
				   " (it was opened, not replaced: add ;overwrite to "
				   "replace it)",
				   -EEXIST);
	}
	if (ret < 0)
		return ret;
	sq_fill_info(l, info);
	return 0;
}

static void sq_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct sq_layer *l = inst;
	unsigned nreaders;

	if (l->path)
		kv(arg, "path", l->path);
	if (l->form == SQ_AUTO) {
		kv(arg, "cache_root", l->cache_root);
		kv(arg, "key", l->key ? l->key : "(disk id of the disk below)");
	}
	dc_kv_u64(kv, arg, "sector_count", l->count);
	dc_kv_u64(kv, arg, "sector_size", l->ss);
	dc_kv_bool(kv, arg, "logically_read_only", l->logical_ro);
	kv(arg, "journal", "wal");
	if (l->created)
		kv(arg, "created", "yes");
	pthread_mutex_lock(&l->rlock);
	nreaders = l->nreaders;
	pthread_mutex_unlock(&l->rlock);
	dc_kv_u64(kv, arg, "reader_connections", nreaders);
	kv(arg, "sqlite_version", sqlite3_libversion());
}

DC_PLUGIN(sq_plugin) = {
	DC_ABOUT(
		DC_KIND_LAYER, "sqlite", "0.1.0",
		"persistent sparse layer in a SQLite database (sql:, sqldiff:, autocache:)"),
	.layer_flags = DC_LAYER_FILLS_ZERO,
	.usage =
		"sql:PATH[;create=SIZE]       a disk of its own (512-byte sectors)\n"
		"sqldiff:PATH[;create]:SPEC   a diff layer over SPEC, sized from it\n"
		"autocache:[KEY]:SPEC         a read cache over SPEC in\n"
		"    $DISKCORE_AUTO_CACHE_PATH (or $OPENVMM_AUTO_CACHE_PATH)/KEY/cache.dbhd;\n"
		"    an empty KEY uses the disk id of SPEC as 32 hex digits.\n"
		"  The format is OpenVMM's: a row per sector (NULL = zeroes), JSON meta,\n"
		"  WAL journal. Without ;create the database must exist; with it, a\n"
		"  missing one is made and an existing one opens unchanged (;overwrite\n"
		"  replaces it); a read-only open never creates one. Flush and FUA\n"
		"  sync the WAL; unmap reads back zeroes.",
	.forms = DC_FORMS(
		DC_FORM("sql", 1, DC_CHILD_NONE, "sql:PATH[;create=SIZE[;overwrite]]",
			"a disk in a SQLite database (OpenVMM's .dbhd format)",
			sq_sql_options),
		DC_FORM("sqldiff", 1, DC_CHILD_ONE,
			"sqldiff:PATH[;create[;overwrite]]:SPEC",
			"a persistent diff layer in a SQLite database over SPEC",
			sq_diff_options),
		DC_FORM_FLAGS(
			"autocache", 1, DC_CHILD_ONE, DC_FORM_READ_CACHE,
			"autocache:[KEY]:SPEC",
			"a persistent read cache over SPEC in $DISKCORE_AUTO_CACHE_PATH/KEY",
			NULL)),
	.ctx_size = sizeof(struct sq_rctx),
	.ops = DC_OPS_RW,
	DC_CALLBACKS(sq, open, close, submit, sector_count, attach, describe, resize,
		     extents),
	.check = sq_check_db,
};
