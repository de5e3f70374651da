/* SPDX-License-Identifier: MIT */
/* vhd_parent: the parent of a differencing VHD, from its parent locators and
 * parent name. */
#include "vhd.h"

#include "utf16/utf16.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- Parent locators ------------------------------------------------------------ */

char *vhd_dirname(const char *abs)
{
	const char *slash = strrchr(abs, '/');

	if (!slash || slash == abs)
		return strdup("/");
	return strndup(abs, (size_t)(slash - abs));
}

/* Join a locator's path with the image's directory unless it is absolute. */
static char *vhd_join(const char *dir, const char *p)
{
	char *out;

	if (p[0] == '/')
		return strdup(p);
	if (asprintf(&out, "%s/%s", dir, p) < 0)
		return NULL;
	return out;
}

/* The path a locator names, as a path on this system, or NULL. */
static char *vhd_loc_path(int fd, const struct vhd_parent_locator *l, const char *dir)
{
	uint8_t *raw = malloc(l->len + 1);
	char *s = NULL, *p, *out = NULL;

	if (!raw || vhdfmt_pread(fd, raw, l->len, l->offset) < 0)
		goto out;
	raw[l->len] = 0;
	if (l->code == VHD_W2KU || l->code == VHD_W2RU)
		s = utf16_to_utf8(raw, l->len, false);
	else
		s = strndup((char *)raw, l->len);
	if (!s || !s[0])
		goto out;
	p = s;
	if (l->code == VHD_MACX) {
		/* file://host/path */
		if (strncmp(p, "file://", 7) != 0)
			goto out;
		p = strchr(p + 7, '/');
		if (!p)
			goto out;
	} else {
		/* Windows paths: a drive letter cannot be found here. */
		if (((p[0] | 0x20) >= 'a' && (p[0] | 0x20) <= 'z') && p[1] == ':')
			goto out;
		if (p[0] == '\\' && p[1] == '\\')
			goto out;
		for (char *c = p; *c; c++)
			if (*c == '\\')
				*c = '/';
		if ((l->code == VHD_W2KU || l->code == VHD_WI2K) && p[0] != '/')
			goto out;
	}
	out = vhd_join(dir, p);
out:
	free(s);
	free(raw);
	return out;
}

/* Read just enough of the file at path to learn its unique id (O_NONBLOCK: a
 * locator may name a FIFO). */
static int vhd_peek_uid(const char *path, uint8_t uid[16])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	struct vhd_meta *m;
	int ret;

	if (fd < 0)
		return -errno;
	m = malloc(sizeof(*m));
	if (!m) {
		close(fd);
		return -ENOMEM;
	}
	vhdfmt_quiet(1);
	ret = vhd_parse(fd, path, m);
	vhdfmt_quiet(-1);
	if (ret == 0)
		memcpy(uid, m->f.unique_id, 16);
	free(m);
	close(fd);
	return ret;
}

/* Resolve the parent of the differencing image (fd, m) in directory dir:
 * relative locators first, then absolute ones, then the header's parent name.
 * A candidate whose unique id matches wins; else the first one that exists (the
 * id check then reports the mismatch). Returns a malloc'd real path. */
int vhd_find_parent(int fd, const struct vhd_meta *m, const char *path, const char *dir,
		    char **out)
{
	static const uint32_t order[] = { VHD_W2RU, VHD_WI2R, VHD_W2KU, VHD_WI2K,
					  VHD_MACX };
	char *cands[VHD_NLOC + 1], *first = NULL, tried[512] = "";
	unsigned n = 0;
	int ret = -ENOENT;

	for (unsigned k = 0; k < sizeof(order) / sizeof(order[0]); k++)
		for (int i = 0; i < VHD_NLOC; i++)
			if (m->dh.loc[i].code == order[k] &&
			    (cands[n] = vhd_loc_path(fd, &m->dh.loc[i], dir)))
				n++;
	{
		char *name =
			utf16_to_utf8(m->dh.parent_name, sizeof(m->dh.parent_name), true);

		if (name && name[0] && (cands[n] = vhd_join(dir, name)))
			n++;
		free(name);
	}
	*out = NULL;
	for (unsigned i = 0; i < n && !*out; i++) {
		char *real = realpath(cands[i], NULL);
		uint8_t uid[16];
		size_t tl = strlen(tried);

		if (tl < sizeof(tried) - 8)
			snprintf(tried + tl, sizeof(tried) - tl, "%s%s", tl ? ", " : "",
				 cands[i]);
		if (!real)
			continue;
		if (vhd_peek_uid(real, uid) == 0 &&
		    memcmp(uid, m->dh.parent_uid, 16) == 0) {
			*out = real;
		} else if (!first) {
			first = real;
		} else {
			free(real);
		}
	}
	for (unsigned i = 0; i < n; i++)
		free(cands[i]);
	if (!*out)
		*out = first;
	else
		free(first);
	if (*out)
		return 0;
	if (!n)
		vhdfmt_err(
			"%s: differencing VHD without a usable parent locator or parent "
			"name",
			path);
	else
		vhdfmt_err("%s: parent image not found (tried %s)", path, tried);
	return ret;
}

/* vhdfmt_parent_fn: the parent of the VHD at path (open as fd), if it is a
 * differencing image whose parent can be found. */
char *vhd_parent_of(int fd, const char *path)
{
	struct vhd_meta *m = malloc(sizeof(*m));
	char *next = NULL, *dir = NULL;

	if (m && vhd_parse(fd, path, m) == 0 && m->f.disk_type == VHD_TYPE_DIFF &&
	    (dir = vhd_dirname(path)) != NULL &&
	    vhd_find_parent(fd, m, path, dir, &next) < 0)
		next = NULL;
	free(dir);
	free(m);
	return next;
}
