/* SPDX-License-Identifier: MIT */
/* vhdx_meta: parsing a VHDX image up to its BAT (identifier, headers and log via
 * vhdx_log.c, region table, metadata items, parent locator) and finding parents
 * ([MS-VHDX] 2.2.3, 2.6); vhdx_create.c makes new images. */
#include "vhdx.h"

#include "parentpath/parentpath.h"
#include "vhdfmt/aio.h"
#include "utf16/utf16.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const struct vhdx_item vhdx_items[VHDX_MI_COUNT] = {
	{ 8, 4, "file parameters", "{caa16737-fa36-4d43-b3b6-33f0aa44e76b}" },
	{ 8, 6, "virtual disk size", "{2fa54224-cd1b-4876-b211-5dbed83bf4b8}" },
	{ 16, 6, "virtual disk id (page 83)", "{beca12ab-b2e6-4523-93ef-c309e000c746}" },
	{ 4, 6, "logical sector size", "{8141bf1d-a96f-4709-ba47-f233a8faab5f}" },
	{ 4, 6, "physical sector size", "{cda348c7-445d-4471-9cc9-e9885251c556}" },
	{ 0, 4, "parent locator", "{a8d35f2d-b30b-454d-abf7-d3d84834ab0c}" },
};

/* "{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}" */
void vhdx_guid_str(const uint8_t g[16], char out[39])
{
	out[0] = '{';
	vhdfmt_uid_str(g, out + 1);
	out[37] = '}';
	out[38] = '\0';
}

static bool vhdx_guid_parse(const char *s, uint8_t g[16])
{
	/* Text position of each stored byte. */
	static const uint8_t at[16] = { 7,  5,	3,  1,	12, 10, 17, 15,
					20, 22, 25, 27, 29, 31, 33, 35 };

	if (strlen(s) != 38 || s[0] != '{' || s[37] != '}' || s[9] != '-' ||
	    s[14] != '-' || s[19] != '-' || s[24] != '-')
		return false;
	for (int i = 0; i < 16; i++) {
		char hex[3] = { s[at[i]], s[at[i] + 1], 0 };

		if (!isxdigit((unsigned char)hex[0]) || !isxdigit((unsigned char)hex[1]))
			return false;
		g[i] = (uint8_t)strtoul(hex, NULL, 16);
	}
	return true;
}

void vhdx_guid_bin(const char *s, uint8_t *out)
{
	bool ok = vhdx_guid_parse(s, out);

	(void)ok; /* constants of this file */
}

/* UTF-16LE (no NUL inside) to a malloc'd UTF-8 string; NULL if malformed. */
static char *vhdx_from16(const uint8_t *b, size_t bytes)
{
	if (bytes % 2)
		return NULL;
	for (size_t i = 0; i < bytes; i += 2)
		if (get_le16(b + i) == 0)
			return NULL;
	return utf16_to_utf8(b, bytes, false);
}

/* --- Region table and metadata ------------------------------------------------- */

static int vhdx_check_region(struct vhdx *v, const char *what, uint64_t off, uint64_t len)
{
	if (off % VHDX_MB || len % VHDX_MB || off < VHDX_MB || !len ||
	    off > v->file_size || len > v->file_size - off) {
		vhdfmt_err(
			"%s: %s (%llu bytes at offset %llu) is not a 1 MiB-aligned range "
			"inside the file of %llu bytes",
			v->img.path, what, (unsigned long long)len,
			(unsigned long long)off, (unsigned long long)v->file_size);
		return -EINVAL;
	}
	if (v->hdr.log_len && vhdfmt_overlap(off, len, v->hdr.log_off, v->hdr.log_len)) {
		vhdfmt_err("%s: %s at offset %llu overlaps the log", v->img.path, what,
			   (unsigned long long)off);
		return -EINVAL;
	}
	return 0;
}

/* Entry i of the region table rt: the BAT, the metadata, or another region
 * (kept as it is unless marked required). */
static int vhdx_region_entry(struct vhdx *v, const uint8_t *rt, uint32_t i)
{
	const uint8_t *ents = rt + sizeof(struct vhdx_region_table);
	struct vhdx_region e;
	char gs[39];

	vhdx_region_decode(&e, ents + sizeof(e) * i);
	vhdx_guid_str(e.guid, gs);
	for (uint32_t k = 0; k < i; k++) {
		if (!memcmp(ents + sizeof(e) * k, e.guid, 16)) {
			vhdfmt_err("%s: region %s is listed twice", v->img.path, gs);
			return -EINVAL;
		}
	}
	if (!strcmp(gs, VHDX_G_BAT)) {
		v->bat_off = e.off;
		v->bat_len = e.len;
	} else if (!strcmp(gs, VHDX_G_META)) {
		v->meta_off = e.off;
		v->meta_len = e.len;
	} else if (e.flags & 1) {
		vhdfmt_err("%s: unknown region %s is marked required; refusing to open "
			   "an image this implementation cannot understand",
			   v->img.path, gs);
		return -EINVAL;
	} else {
		uint64_t *x = realloc(v->xreg, (v->nxreg + 1) * 2 * sizeof(*x));

		if (!x)
			return -ENOMEM;
		v->xreg = x;
		x[2 * v->nxreg] = e.off;
		x[2 * v->nxreg++ + 1] = e.len;
	}
	return vhdx_check_region(v, gs, e.off, e.len);
}

/* The BAT and metadata regions are present, and no two regions overlap. */
static int vhdx_regions_disjoint(struct vhdx *v)
{
	if (!v->bat_len || !v->meta_len) {
		vhdfmt_err("%s: the region table lacks the %s region", v->img.path,
			   v->bat_len ? "metadata" : "BAT");
		return -EINVAL;
	}
	if (vhdfmt_overlap(v->bat_off, v->bat_len, v->meta_off, v->meta_len)) {
		vhdfmt_err("%s: the BAT and metadata regions overlap", v->img.path);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < v->nxreg; i++) {
		uint64_t o = v->xreg[2 * i], l = v->xreg[2 * i + 1];

		if (vhdfmt_overlap(o, l, v->bat_off, v->bat_len) ||
		    vhdfmt_overlap(o, l, v->meta_off, v->meta_len)) {
			vhdfmt_err(
				"%s: a region at offset %llu overlaps the BAT or metadata",
				v->img.path, (unsigned long long)o);
			return -EINVAL;
		}
	}
	return 0;
}

static int vhdx_parse_regions(struct vhdx *v)
{
	uint8_t *rt = malloc(VHDX_RT_SIZE);
	uint32_t n = 0;
	int copy, ret = -EINVAL;

	if (!rt) {
		vhdfmt_err("out of memory");
		return -ENOMEM;
	}
	for (copy = 0; copy < 2; copy++) {
		struct vhdx_region_table t;

		if (vhdx_pread(v, rt, VHDX_RT_SIZE, VHDX_RT_OFF(copy)) == 0 &&
		    !memcmp(rt, "regi", 4) && vhdxfmt_sealed(rt, VHDX_RT_SIZE)) {
			vhdx_region_table_decode(&t, rt);
			n = t.count;
			if (n <= VHDX_MAX_TABLE_ENTRIES)
				break;
		}
		dc_debug("%s: region table %d is damaged", v->img.path, copy + 1);
	}
	if (copy == 2) {
		vhdfmt_err("%s: no valid region table: both copies (at 192 and 256 KiB) "
			   "have a bad signature, checksum or entry count",
			   v->img.path);
		goto out;
	}
	ret = 0;
	for (uint32_t i = 0; i < n && ret == 0; i++)
		ret = vhdx_region_entry(v, rt, i);
	if (ret == 0)
		ret = vhdx_regions_disjoint(v);
out:
	free(rt);
	return ret;
}

/* One key/value of the parent locator. */
static int vhdx_loc_pair(struct vhdx *v, const char *key, char *val)
{
	char **slot = NULL;

	if (!strcmp(key, "parent_linkage") || !strcmp(key, "parent_linkage2")) {
		bool two = key[14] == '2';

		if (!vhdx_guid_parse(val, two ? v->linkage2 : v->linkage)) {
			vhdfmt_err("%s: parent locator: %s '%s' is not a GUID",
				   v->img.path, key, val);
			free(val);
			return -EINVAL;
		}
		v->has_linkage2 |= two;
		free(val);
		return 0;
	}
	if (!strcmp(key, "relative_path"))
		slot = &v->loc_rel;
	else if (!strcmp(key, VHDX_KEY_ABS))
		slot = &v->loc_abs;
	else if (!strcmp(key, "absolute_win32_path"))
		slot = &v->loc_win32;
	else if (!strcmp(key, "volume_path"))
		slot = &v->loc_vol;
	if (slot) {
		free(*slot);
		*slot = val;
	} else {
		free(val);
	}
	return 0;
}

/* Entry i of the parent locator item p. */
static struct vhdx_locator_entry vhdx_loc_entry(const uint8_t *p, uint32_t i)
{
	struct vhdx_locator_entry e;

	vhdx_locator_entry_decode(&e, p + sizeof(struct vhdx_locator) + sizeof(e) * i);
	return e;
}

/* Key i (of a locator of len bytes) as UTF-8 in *key, its value in *val. */
static int vhdx_loc_strings(struct vhdx *v, const uint8_t *p, uint32_t len, uint32_t i,
			    char **key, char **val)
{
	struct vhdx_locator_entry e = vhdx_loc_entry(p, i);

	*key = *val = NULL;
	if (!e.key_off || !e.value_off || !e.key_len || !e.value_len || e.key_off > len ||
	    e.key_len > len - e.key_off || e.value_off > len ||
	    e.value_len > len - e.value_off) {
		vhdfmt_err("%s: parent locator entry %u lies outside the item",
			   v->img.path, i);
		return -EINVAL;
	}
	*key = vhdx_from16(p + e.key_off, e.key_len);
	*val = vhdx_from16(p + e.value_off, e.value_len);
	if (!*key || !*val) {
		vhdfmt_err("%s: parent locator entry %u is not valid UTF-16", v->img.path,
			   i);
		goto fail;
	}
	for (uint32_t k = 0; k < i; k++) {
		struct vhdx_locator_entry o = vhdx_loc_entry(p, k);

		if (o.key_len == e.key_len &&
		    !memcmp(p + o.key_off, p + e.key_off, e.key_len)) {
			vhdfmt_err("%s: parent locator key '%s' appears twice",
				   v->img.path, *key);
			goto fail;
		}
	}
	return 0;
fail:
	free(*key);
	free(*val);
	*key = *val = NULL;
	return -EINVAL;
}

static int vhdx_parse_locator(struct vhdx *v, const uint8_t *p, uint32_t len)
{
	struct vhdx_locator h = { 0 };
	bool linkage = false;
	char gs[39];

	if (len >= sizeof(h)) {
		vhdx_locator_decode(&h, p);
		vhdx_guid_str(h.type, gs);
	}
	if (len < sizeof(h) || strcmp(gs, VHDX_G_LOC_TYPE) != 0) {
		vhdfmt_err(
			"%s: the parent locator is not of the VHDX type " VHDX_G_LOC_TYPE,
			v->img.path);
		return -EINVAL;
	}
	if (sizeof(h) + sizeof(struct vhdx_locator_entry) * (uint64_t)h.count > len) {
		vhdfmt_err("%s: the parent locator's %u entries do not fit its %u bytes",
			   v->img.path, h.count, len);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < h.count; i++) {
		char *key, *val;
		int ret = vhdx_loc_strings(v, p, len, i, &key, &val);

		if (ret)
			return ret;
		linkage |= !strcmp(key, "parent_linkage");
		ret = vhdx_loc_pair(v, key, val);
		free(key);
		if (ret)
			return ret;
	}
	if (!linkage) {
		vhdfmt_err("%s: the parent locator has no parent_linkage", v->img.path);
		return -EINVAL;
	}
	return 0;
}

/* The known items' values, checked. */
static int vhdx_meta_values(struct vhdx *v, uint8_t *const val[VHDX_MI_COUNT],
			    const uint32_t *len)
{
	struct vhdx_file_params fp;
	struct vhdx_sector_size ls, ps;
	struct vhdx_disk_size ds;
	uint32_t bs, flags;

	vhdx_file_params_decode(&fp, val[VHDX_MI_PARAMS]);
	vhdx_sector_size_decode(&ls, val[VHDX_MI_LSS]);
	vhdx_sector_size_decode(&ps, val[VHDX_MI_PSS]);
	vhdx_disk_size_decode(&ds, val[VHDX_MI_SIZE]);
	bs = fp.block_size;
	flags = fp.flags;

	if (bs < VHDX_MB || bs > 256 * VHDX_MB || (bs & (bs - 1))) {
		vhdfmt_err("%s: block size %u: expected a power of two from 1 MiB to "
			   "256 MiB",
			   v->img.path, bs);
		return -EINVAL;
	}
	v->block_size = bs;
	v->leave_alloc = flags & 1;
	v->diff = flags & 2;
	v->lss = ls.size;
	v->pss = ps.size;
	if ((v->lss != 512 && v->lss != 4096) || (v->pss != 512 && v->pss != 4096)) {
		vhdfmt_err(
			"%s: sector sizes %u (logical) and %u (physical): each must be "
			"512 or 4096",
			v->img.path, v->lss, v->pss);
		return -EINVAL;
	}
	v->disk_size = ds.size;
	if (!v->disk_size || v->disk_size % v->lss || v->disk_size > VHDX_MAX_DISK) {
		vhdfmt_err("%s: virtual disk size %llu: expected a non-zero multiple of "
			   "the %u-byte sector of at most 64 TiB",
			   v->img.path, (unsigned long long)v->disk_size, v->lss);
		return -EINVAL;
	}
	memcpy(v->page83, val[VHDX_MI_PAGE83], 16);
	if (!v->diff)
		return 0;
	if (!val[VHDX_MI_LOC]) {
		vhdfmt_err(
			"%s: a differencing image (HasParent) without a parent locator",
			v->img.path);
		return -EINVAL;
	}
	return vhdx_parse_locator(v, val[VHDX_MI_LOC], len[VHDX_MI_LOC]);
}

/* Entry i of the metadata table tbl. */
static struct vhdx_meta_entry vhdx_meta_at(const uint8_t *tbl, uint32_t i)
{
	struct vhdx_meta_entry e;

	vhdx_meta_entry_decode(&e, tbl + sizeof(struct vhdx_meta_table) + sizeof(e) * i);
	return e;
}

/* Entry i checked against the region and the entries before it; *known is
 * its index in vhdx_items[], or -1 for an item this plugin does not read. */
static int vhdx_meta_check(struct vhdx *v, const uint8_t *tbl, uint32_t i, int *known)
{
	struct vhdx_meta_entry e = vhdx_meta_at(tbl, i);
	char gs[39];

	*known = -1;
	vhdx_guid_str(e.guid, gs);
	if (e.len == 0 ? e.off != 0 :
			 e.off < VHDX_META_TABLE || e.len > VHDX_MB ||
				 e.off > v->meta_len || e.len > v->meta_len - e.off) {
		vhdfmt_err("%s: metadata item %s (%u bytes at %u) lies outside the "
			   "metadata region",
			   v->img.path, gs, e.len, e.off);
		return -EINVAL;
	}
	for (uint32_t k = 0; k < i; k++) {
		struct vhdx_meta_entry o = vhdx_meta_at(tbl, k);

		if (e.len && o.len && vhdfmt_overlap(e.off, e.len, o.off, o.len)) {
			vhdfmt_err("%s: metadata items %u and %u overlap", v->img.path, k,
				   i);
			return -EINVAL;
		}
	}
	for (int k = 0; !(e.flags & 1) && k < VHDX_MI_COUNT; k++)
		if (!strcmp(gs, vhdx_items[k].guid))
			*known = k;
	if (*known < 0 && (e.flags & 4)) {
		vhdfmt_err("%s: unknown metadata item %s is marked required; refusing to "
			   "open an image this implementation cannot understand",
			   v->img.path, gs);
		return -EINVAL;
	}
	return 0;
}

static int vhdx_parse_metadata(struct vhdx *v)
{
	uint8_t *tbl = malloc(VHDX_META_TABLE), *val[VHDX_MI_COUNT] = { 0 };
	uint32_t len[VHDX_MI_COUNT] = { 0 };
	struct vhdx_meta_table t;
	int ret = -EINVAL;

	if (!tbl || vhdx_pread(v, tbl, VHDX_META_TABLE, v->meta_off) < 0) {
		vhdfmt_err("%s: cannot read the metadata table", v->img.path);
		ret = tbl ? -EIO : -ENOMEM;
		goto out;
	}
	vhdx_meta_table_decode(&t, tbl);
	if (memcmp(t.signature, "metadata", 8) != 0 || t.count > VHDX_MAX_TABLE_ENTRIES) {
		vhdfmt_err("%s: the metadata region has no valid table (signature or %u "
			   "entries)",
			   v->img.path, t.count);
		goto out;
	}
	for (uint32_t i = 0; i < t.count; i++) {
		struct vhdx_meta_entry e = vhdx_meta_at(tbl, i);
		uint32_t off = e.off, l = e.len;
		int known;

		if (vhdx_meta_check(v, tbl, i, &known))
			goto out;
		if (known < 0)
			continue;
		if (val[known]) {
			vhdfmt_err("%s: metadata item '%s' appears twice", v->img.path,
				   vhdx_items[known].name);
			goto out;
		}
		if (vhdx_items[known].len ? l != vhdx_items[known].len : l < 20) {
			vhdfmt_err("%s: metadata item '%s' is %u bytes long; expected %u",
				   v->img.path, vhdx_items[known].name, l,
				   vhdx_items[known].len ? vhdx_items[known].len : 20);
			goto out;
		}
		val[known] = malloc(l);
		len[known] = l;
		if (!val[known]) {
			ret = -ENOMEM;
			goto out;
		}
		if (known == VHDX_MI_SIZE)
			v->size_off = v->meta_off + off;
		ret = vhdx_pread(v, val[known], l, v->meta_off + off);
		if (ret < 0) {
			vhdfmt_err("%s: cannot read metadata item '%s': %s", v->img.path,
				   vhdx_items[known].name, strerror(-ret));
			goto out;
		}
		ret = -EINVAL;
	}
	for (int k = 0; k < VHDX_MI_LOC; k++) {
		if (!val[k]) {
			vhdfmt_err("%s: required metadata item '%s' is missing",
				   v->img.path, vhdx_items[k].name);
			goto out;
		}
	}
	ret = vhdx_meta_values(v, val, len);
out:
	for (int k = 0; k < VHDX_MI_COUNT; k++)
		free(val[k]);
	free(tbl);
	return ret;
}

/* Everything up to the BAT: identifier, headers, log, regions, metadata. */
int vhdx_parse(struct vhdx *v)
{
	uint8_t sig[8];
	struct stat st;
	int ret;

	if (fstat(v->img.fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		vhdfmt_err("%s: not a regular file", v->img.path);
		return -EINVAL;
	}
	v->real_size = v->file_size = (uint64_t)st.st_size;
	if (v->file_size < VHDX_MB || vhdfmt_pread(v->img.fd, sig, 8, 0) < 0 ||
	    memcmp(sig, "vhdxfile", 8) != 0) {
		vhdfmt_err("%s: not a VHDX image (no \"vhdxfile\" identifier, or shorter "
			   "than its 1 MiB header section)",
			   v->img.path);
		return -EINVAL;
	}
	ret = vhdx_read_headers(v);
	if (ret == 0)
		ret = vhdx_log_open(v);
	if (ret)
		return ret;
	if (!v->novl && fstat(v->img.fd, &st) == 0)
		v->real_size = v->file_size = (uint64_t)st.st_size;
	ret = vhdx_parse_regions(v);
	if (ret == 0)
		ret = vhdx_parse_metadata(v);
	if (ret)
		return ret;
	v->ss_shift = (unsigned)__builtin_ctz(v->lss);
	v->spb = v->block_size >> v->ss_shift;
	v->spb_shift = (unsigned)__builtin_ctz(v->spb);
	v->chunk_ratio = (uint32_t)((VHDX_CHUNK_SECTORS << v->ss_shift) / v->block_size);
	v->nblocks = (v->disk_size + v->block_size - 1) / v->block_size;
	v->nchunks = (v->nblocks + v->chunk_ratio - 1) / v->chunk_ratio;
	v->nbat = v->diff ? v->nchunks * (v->chunk_ratio + 1) :
			    v->nblocks + (v->nblocks - 1) / v->chunk_ratio;
	if (v->nbat > VHDX_MAX_ENTRIES) {
		vhdfmt_err("%s: the BAT has %llu entries; at most %llu are supported (a "
			   "larger block size needs fewer)",
			   v->img.path, (unsigned long long)v->nbat,
			   (unsigned long long)VHDX_MAX_ENTRIES);
		return -EINVAL;
	}
	if (v->bat_len < v->nbat * 8) {
		vhdfmt_err("%s: the BAT region (%llu bytes) is too small for the %llu "
			   "entries a disk of %llu bytes needs",
			   v->img.path, (unsigned long long)v->bat_len,
			   (unsigned long long)v->nbat, (unsigned long long)v->disk_size);
		return -EINVAL;
	}
	v->nbat_mem = vhdfmt_round_up(v->nbat, VHDX_LSEC / 8);
	/* Room for resize() to grow into, within a bounded read at open. */
	if (v->nbat_mem < VHDX_MB / 8 && v->bat_len / 8 > v->nbat_mem)
		v->nbat_mem = (v->bat_len < VHDX_MB ? v->bat_len : VHDX_MB) / VHDX_LSEC *
			      (VHDX_LSEC / 8);
	return 0;
}

/* --- Instances, peeking at other images ------------------------------------------- */

void vhdx_free(void *inst)
{
	struct vhdx *v = inst;

	vhdfmt_engine_close(&v->img.aio_fd, &v->img.ioe);
	if (v->img.fd >= 0)
		close(v->img.fd);
	if (v->sbc) {
		for (uint64_t c = 0; c < v->nchunks; c++) {
			for (unsigned i = 0; v->sbc[c] && i < VHDX_SB_SECS; i++)
				free(v->sbc[c]->sec[i]);
			free(v->sbc[c]);
		}
		free(v->sbc);
	}
	free(v->meta_sec);
	vhdx_ovl_free(v);
	pthread_mutex_destroy(&v->lock);
	free(v->bat);
	free(v->bat_dirty);
	free(v->keys);
	free(v->xreg);
	free(v->loc_rel);
	free(v->loc_abs);
	free(v->loc_win32);
	free(v->loc_vol);
	free(v->parent_path);
	free(v->dir);
	free(v->img.path);
	free(v);
}

void vhdx_init(void *inst, bool ro)
{
	struct vhdx *v = inst;

	v->ro = ro;
	pthread_mutex_init(&v->lock, NULL);
}

struct vhdx *vhdx_new(const char *path, bool ro)
{
	struct vhdx *v = calloc(1, sizeof(*v));

	if (!v)
		return NULL;
	v->img.fd = -1;
	v->img.aio_fd = -1;
	vhdx_init(v, ro);
	v->img.path = strdup(path);
	if (!v->img.path) {
		vhdx_free(v);
		return NULL;
	}
	return v;
}

int vhdx_peek_fd(int fd, const char *path, bool quiet, struct vhdx **out)
{
	struct vhdx *v = vhdx_new(path, true);
	int ret;

	if (!v) {
		vhdfmt_err("out of memory");
		return -ENOMEM;
	}
	vhdfmt_quiet(quiet);
	v->img.fd = fd;
	v->dir = vhdfmt_dirname(path);
	if (!v->dir) {
		ret = -errno;
		vhdfmt_err("%s: %s", path, strerror(errno));
	} else {
		ret = vhdx_parse(v);
	}
	vhdfmt_quiet(-(int)quiet);
	v->img.fd = -1;
	if (ret)
		vhdx_free(v);
	else
		*out = v;
	return ret;
}

int vhdx_peek(const char *path, bool quiet, struct vhdx **out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* may be a FIFO */
	int ret;

	if (fd < 0) {
		ret = -errno;
		if (!quiet)
			vhdfmt_err("%s: %s", path, strerror(errno));
		return ret;
	}
	ret = vhdx_peek_fd(fd, path, quiet, out);
	close(fd);
	return ret;
}

/* --- Parent chains ------------------------------------------------------------------ */

/* A locator path with '/' separators, or NULL if it cannot name a file here
 * (relative_path must be relative, the absolute key absolute). */
static char *vhdx_here(const char *val, bool relative)
{
	char *p = strdup(val);

	if (!p)
		return NULL;
	for (char *c = p; *c; c++)
		if (*c == '\\')
			*c = '/';
	if ((p[0] == '/') != !relative) {
		free(p);
		return NULL;
	}
	return p;
}

/* What the search for a parent found (see vhdx_resolve_parent()). */
struct vhdx_search {
	char *bad; /* a parent whose DataWriteGuid does not match */
	uint8_t bad_dw[16];
	const char *refused; /* a locator path the rule refused */
	int refused_err;
	char tried[1024];
};

/* Candidate cand: opened under the rule and parsed. 1 when it is the parent
 * (its real path and page 83 id out), 0 when not, -errno when out of memory. */
static int vhdx_try(const struct vhdx *v, struct vhdx_search *s, const char *cand,
		    bool check, char **out, uint8_t page83[16])
{
	int fd = parentpath_open(
		v->dir, cand, v->img.parents_any ? PARENTPATH_ANY : PARENTPATH_BENEATH);
	size_t tl = strlen(s->tried);
	struct vhdx *p = NULL;
	char *real;
	int ret = 0;

	snprintf(s->tried + tl, sizeof(s->tried) - tl, "%s%s", tl ? ", " : "", cand);
	if (fd < 0) {
		if (parentpath_refused(fd) && !s->refused) {
			s->refused = cand;
			s->refused_err = fd;
		}
		return 0;
	}
	real = parentpath_fd_path(fd);
	if (!real || vhdx_peek_fd(fd, real, true, &p) < 0) {
		free(real);
		close(fd);
		return 0;
	}
	close(fd);
	if (!check || !memcmp(p->hdr.data_write, v->linkage, 16) ||
	    (v->has_linkage2 && !memcmp(p->hdr.data_write, v->linkage2, 16))) {
		memcpy(page83, p->page83, 16);
		*out = real;
		ret = 1;
	} else if (!s->bad) {
		s->bad = real;
		memcpy(s->bad_dw, p->hdr.data_write, 16);
	} else {
		free(real);
	}
	vhdx_free(p);
	return ret;
}

/* Why no parent was found, as a message; the error. */
static int vhdx_not_found(const struct vhdx *v, const struct vhdx_search *s)
{
	char want[39], got[39];

	if (s->bad) {
		vhdx_guid_str(v->linkage, want);
		vhdx_guid_str(s->bad_dw, got);
		vhdfmt_err("%s: parent %s has DataWriteGuid %s, but this image's "
			   "parent_linkage is %s (the parent was modified or replaced)",
			   v->img.path, s->bad, got, want);
		return -EINVAL;
	}
	if (s->refused) {
		vhdfmt_err("%s: the parent locator %s %s; a parent is followed only "
			   "inside the child's directory %s unless the spec says "
			   ";parents=any or names it with ;parent=PATH",
			   v->img.path, s->refused, parentpath_why(s->refused_err),
			   v->dir);
		return -EPERM;
	}
	if (!s->tried[0])
		vhdfmt_err(
			"%s: the parent locator has no path usable here (relative_path "
			"or " VHDX_KEY_ABS "; volume_path/absolute_win32_path: %s)",
			v->img.path,
			v->loc_win32 ? v->loc_win32 :
			v->loc_vol   ? v->loc_vol :
				       "none");
	else
		vhdfmt_err("%s: parent image not found or not a valid VHDX (tried %s)",
			   v->img.path, s->tried);
	return -ENOENT;
}

/* Find v's parent: relative_path, then the absolute path this plugin stores
 * (volume_path and absolute_win32_path name Windows volumes), each opened
 * under the rule of common/parentpath (inside v's directory unless
 * ;parents=any). With check, the parent's DataWriteGuid must match
 * parent_linkage or parent_linkage2. */
int vhdx_resolve_parent(const struct vhdx *v, bool check, char **out, uint8_t page83[16])
{
	const char *vals[2] = { v->loc_rel, v->loc_abs };
	char *cands[2] = { NULL, NULL };
	struct vhdx_search s = { .tried = "" };
	int ret = 0;

	*out = NULL;
	for (int i = 0; i < 2 && ret == 0; i++) {
		cands[i] = vals[i] ? vhdx_here(vals[i], i == 0) : NULL;
		if (cands[i])
			ret = vhdx_try(v, &s, cands[i], check, out, page83);
	}
	if (ret == 0)
		ret = vhdx_not_found(v, &s);
	else if (ret == 1)
		ret = 0;
	free(s.bad);
	free(cands[0]);
	free(cands[1]);
	return ret;
}

/* The parent of the VHDX at path, under the default rule or any. */
char *vhdx_parent_of(int fd, const char *path, bool any)
{
	struct vhdx *p = NULL;
	char *next = NULL;
	uint8_t id[16];

	if (vhdx_peek_fd(fd, path, true, &p) == 0) {
		p->img.parents_any = any;
		if (p->diff && vhdx_resolve_parent(p, false, &next, id) < 0)
			next = NULL;
		vhdx_free(p);
	}
	return next;
}
