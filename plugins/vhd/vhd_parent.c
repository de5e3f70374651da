/* SPDX-License-Identifier: MIT */
/* vhd_parent: the parent of a differencing VHD, from its parent locators and
 * parent name, followed under the rule of common/parentpath: inside the
 * child's directory unless the spec says ;parents=any (docs/spec-strings.md,
 * "vhd"). */
#include "vhd.h"

#include "parentpath/parentpath.h"
#include "utf16/utf16.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *vhd_dirname(const char *abs)
{
	const char *slash = strrchr(abs, '/');

	if (!slash || slash == abs)
		return strdup("/");
	return strndup(abs, (size_t)(slash - abs));
}

/* A Windows path with '/' separators, or NULL for one that cannot name a file
 * here (a drive letter, a UNC path); absolute: it must start with '/'. */
static char *vhd_unix_path(char *p, bool absolute)
{
	if (((p[0] | 0x20) >= 'a' && (p[0] | 0x20) <= 'z') && p[1] == ':')
		return NULL;
	if (p[0] == '\\' && p[1] == '\\')
		return NULL;
	for (char *c = p; *c; c++)
		if (*c == '\\')
			*c = '/';
	if (absolute && p[0] != '/')
		return NULL;
	return strdup(p);
}

/* The path a locator stores, as this system spells it (relative to the
 * child's directory unless absolute), or NULL. */
static char *vhd_loc_path(int fd, const struct vhd_parent_locator *l)
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
		if (strncmp(p, "file://", 7) == 0 && (p = strchr(p + 7, '/')) != NULL)
			out = strdup(p);
	} else {
		out = vhd_unix_path(p, l->code == VHD_W2KU || l->code == VHD_WI2K);
	}
out:
	free(s);
	free(raw);
	return out;
}

/* The candidates for the parent, in order: relative locators, absolute ones,
 * the header's parent name. Returns how many (each malloc'd). */
static unsigned vhd_candidates(int fd, const struct vhd_meta *m, char *cands[])
{
	static const uint32_t order[] = { VHD_W2RU, VHD_WI2R, VHD_W2KU, VHD_WI2K,
					  VHD_MACX };
	unsigned n = 0;
	char *name;

	for (unsigned k = 0; k < sizeof(order) / sizeof(order[0]); k++)
		for (int i = 0; i < VHD_NLOC; i++)
			if (m->dh.loc[i].code == order[k] &&
			    (cands[n] = vhd_loc_path(fd, &m->dh.loc[i])))
				n++;
	name = utf16_to_utf8(m->dh.parent_name, sizeof(m->dh.parent_name), true);
	if (name && name[0])
		cands[n++] = name;
	else
		free(name);
	return n;
}

int vhd_peek_uid(int fd, const char *path, uint8_t uid[16])
{
	struct vhd_meta *m = malloc(sizeof(*m));
	int ret;

	if (!m)
		return -ENOMEM;
	vhdfmt_quiet(1);
	ret = vhd_parse(fd, path, m);
	vhdfmt_quiet(-1);
	if (ret == 0)
		memcpy(uid, m->f.unique_id, 16);
	free(m);
	return ret;
}

/* What the search found: a candidate whose unique id matches, else the first
 * one that opened (attach then reports the mismatch), and the first one the
 * rule refused. */
struct vhd_search {
	char *match, *first;
	const char *refused; /* a candidate (not owned) */
	int refused_err;
	char tried[512];
};

/* Try candidate cand: open it under the rule, and compare its unique id. */
static void vhd_try(struct vhd_search *s, const char *cand, const char *dir,
		    const uint8_t want[16], enum parentpath_rule rule)
{
	int pfd = parentpath_open(dir, cand, rule);
	size_t tl = strlen(s->tried);
	uint8_t uid[16];
	char *real;

	if (tl < sizeof(s->tried) - 8)
		snprintf(s->tried + tl, sizeof(s->tried) - tl, "%s%s", tl ? ", " : "",
			 cand);
	if (pfd < 0) {
		if (parentpath_refused(pfd) && !s->refused) {
			s->refused = cand;
			s->refused_err = pfd;
		}
		return;
	}
	real = parentpath_fd_path(pfd);
	if (real && vhd_peek_uid(pfd, real, uid) == 0 && memcmp(uid, want, 16) == 0)
		s->match = real;
	else if (real && !s->first)
		s->first = real;
	else
		free(real);
	close(pfd);
}

int vhd_find_parent(int fd, const struct vhd_meta *m, const char *path, const char *dir,
		    bool any, char **out)
{
	struct vhd_search s = { 0 };
	char *cands[VHD_NLOC + 1];
	unsigned n = vhd_candidates(fd, m, cands);
	int ret = 0;

	for (unsigned i = 0; i < n && !s.match; i++)
		vhd_try(&s, cands[i], dir, m->dh.parent_uid,
			any ? PARENTPATH_ANY : PARENTPATH_BENEATH);
	*out = s.match ? s.match : s.first;
	if (s.match)
		free(s.first);
	if (*out)
		goto done;
	ret = -ENOENT;
	if (s.refused) {
		vhdfmt_err("%s: the parent locator %s %s; a parent is followed only "
			   "inside the child's directory %s unless the spec says "
			   ";parents=any or names it with ;parent=PATH",
			   path, s.refused, parentpath_why(s.refused_err), dir);
		ret = -EPERM;
	} else if (!n) {
		vhdfmt_err("%s: differencing VHD without a usable parent locator or "
			   "parent name",
			   path);
	} else {
		vhdfmt_err("%s: parent image not found (tried %s)", path, s.tried);
	}
done:
	for (unsigned i = 0; i < n; i++)
		free(cands[i]);
	return ret;
}

/* The parent of the VHD at path (open as fd), if it is a differencing image
 * whose parent can be found under the rule (any). */
char *vhd_parent_of(int fd, const char *path, bool any)
{
	struct vhd_meta *m = malloc(sizeof(*m));
	char *next = NULL, *dir = NULL;

	if (m && vhd_parse(fd, path, m) == 0 && m->f.disk_type == VHD_TYPE_DIFF &&
	    (dir = vhd_dirname(path)) != NULL &&
	    vhd_find_parent(fd, m, path, dir, any, &next) < 0)
		next = NULL;
	free(dir);
	free(m);
	return next;
}
