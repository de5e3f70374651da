/* SPDX-License-Identifier: MIT */
/* blob: a read-only disk over HTTP(S) or Azure Blob storage, with libcurl
 * (docs/openvmm-compat.md, made stricter and faster).
 *
 *	blob:flat:URL[;opt...]	the blob is the disk (a partial last sector is dropped)
 *	blob:vhd1:URL[;opt...]	the blob is a fixed VHD; its footer is checked and hidden
 *
 * Open: read-only only (a writable open fails, as OpenVMM's resolver does). HEAD
 * the URL (Content-Length required; at most 5 redirects, never from
 * https to http; the final URL serves the reads). Azure (";azure", a host under
 * .blob.core.windows.net, or the emulator's path style): x-ms-version on every
 * request, the blob type from x-ms-blob-type, and for a page blob the page range
 * list, so reads of ranges that hold no pages are zeroes without a request. A SAS
 * token rides in the URL as it is; without one, Shared Key auth signs each request
 * with a key from ";sharedkey=FILE" or $DISKCORE_AZURE_KEY ("ACCOUNT:BASE64KEY").
 *
 * I/O: one curl multi handle, driven through its socket interface by an epoll
 * loop on a thread of the instance, with a pool of reused connections. Each
 * read becomes one or more Range GETs (a large read is split into parallel
 * ranges); concurrent reads run as concurrent requests, at most `connections`
 * at a time. A 206 must name exactly the bytes asked for in its Content-Range
 * and carry exactly that many; a 416, a short or long body, a dropped
 * connection are errors naming the status and the URL without its query
 * (which may hold a SAS signature). A 200 is a server without range support:
 * its body must be the whole blob, and up to BLOB_WHOLE_MAX the read takes its
 * bytes out of it; the instance then stops splitting reads and keeps the first
 * whole body in memory for every later read. 5xx answers, 429 and connection failures are
 * retried with exponential backoff and jitter, a bounded number of times; every request
 * has a timeout. When the server gave a strong ETag, reads carry If-Match, so a blob
 * that changed after open fails reads instead of mixing two versions (page
 * ranges are listed once, at open: the blob is expected not to change).
 * With ";readahead=SIZE", sequential small reads are served from a few windows
 * of SIZE bytes fetched ahead. */
#include "blob.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static pthread_once_t blob_curl_once = PTHREAD_ONCE_INIT;
static CURLcode blob_curl_init_rc;

static void blob_curl_init(void)
{
	blob_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* --- Reads -------------------------------------------------------------------- */

/* Index of the first page range that ends after off. */
static size_t blob_page_find(const struct blob_disk *b, uint64_t off)
{
	size_t lo = 0, hi = b->npages;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (b->pages[mid].end <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Emit the pieces of [off, off+len): split at `split` bytes. */
static size_t blob_plan_seg(uint64_t split, uint64_t off, uint64_t len,
			    struct blob_xfer *out, size_t n, size_t cap, uint64_t base)
{
	while (len) {
		uint64_t l = len < split ? len : split;

		if (out && n < cap) {
			out[n].off = off;
			out[n].len = l;
			out[n].buf.skip = (size_t)(off - base); /* patched by caller */
		}
		n++;
		off += l;
		len -= l;
	}
	return n;
}

/* The Range GETs a read of [off, off+len) needs, at most `split` bytes each;
 * fills out[0..cap) and, for a page blob when zero is set, zeroes the parts of
 * buf that no page covers. Returns how many pieces there are. */
static size_t blob_plan(const struct blob_disk *b, uint64_t off, uint64_t len,
			uint64_t split, struct blob_xfer *out, size_t cap,
			const struct dc_buf *zero)
{
	uint64_t end = off + len, pos = off;
	size_t n = 0;

	if (!b->page_blob)
		return blob_plan_seg(split, off, len, out, 0, cap, off);
	for (size_t i = blob_page_find(b, off);
	     i < b->npages && b->pages[i].start < end;) {
		uint64_t s = b->pages[i].start > off ? b->pages[i].start : off;
		uint64_t e = b->pages[i].end;

		/* Take in the ranges that follow closely. */
		while (++i < b->npages && b->pages[i].start < end &&
		       b->pages[i].start - e < BLOB_MERGE_GAP)
			e = b->pages[i].end;
		if (e > end)
			e = end;
		if (zero && s > pos)
			dc_buf_zero(zero, (size_t)(pos - off), (size_t)(s - pos));
		n = blob_plan_seg(split, s, e - s, out, n, cap, off);
		pos = e;
	}
	if (zero && pos < end)
		dc_buf_zero(zero, (size_t)(pos - off), (size_t)(end - pos));
	return n;
}

static void blob_read(struct blob_disk *b, struct dc_req *req)
{
	struct blob_rctx *rc = req->ctx;
	uint64_t off = req->sector * BLOB_SECTOR, len = req->buf.len;
	uint8_t *whole = atomic_load_explicit(&b->whole, memory_order_acquire);
	/* Read once: both plans below must agree. Without range support every
	 * piece fetches the whole blob, so a read is one piece. */
	bool no_ranges = atomic_load(&b->no_ranges);
	uint64_t split = no_ranges ? len : b->split;
	struct blob_xfer *xs;
	size_t n;

	if (req->buf.len % BLOB_SECTOR) {
		dc_complete(req, DC_E_INVALID_INPUT);
		return;
	}
	if (req->sector > b->disk_size / BLOB_SECTOR ||
	    len > b->disk_size - req->sector * BLOB_SECTOR) {
		dc_complete(req, DC_E_ILLEGAL_BLOCK);
		return;
	}
	if (!len) {
		dc_complete(req, 0);
		return;
	}
	if (whole) {
		dc_buf_copy_to(&req->buf, 0, whole + off, len);
		dc_complete(req, 0);
		return;
	}
	n = blob_plan(b, off, len, split, NULL, 0, NULL);
	if (n == 0) {
		dc_buf_zero(&req->buf, 0, req->buf.len);
		dc_complete(req, 0);
		return;
	}
	if (b->ra && !no_ranges && len < b->ra && blob_ra_read(b, req, off, len))
		return;
	rc->req = req;
	rc->extra = NULL;
	rc->detail = 0;
	atomic_init(&rc->result, 0);
	atomic_init(&rc->pending, (unsigned)n);
	xs = &rc->x0;
	if (n > 1) {
		rc->extra = calloc(n, sizeof(*rc->extra));
		if (!rc->extra) {
			dc_complete(req, -ENOMEM);
			return;
		}
		xs = rc->extra;
	} else {
		memset(xs, 0, sizeof(*xs));
	}
	blob_plan(b, off, len, split, xs, n, &req->buf);
	for (size_t i = 0; i < n; i++) {
		struct blob_xfer *x = &xs[i];

		x->buf = dc_buf_sub(&req->buf, x->buf.skip, (size_t)x->len);
		x->b = b;
		x->rc = rc;
		x->next = i + 1 < n ? &xs[i + 1] : NULL;
	}
	blob_enqueue(b, xs, &xs[n - 1].next);
}

static void blob_submit(void *inst, struct dc_req *req)
{
	struct blob_disk *b = inst;

	switch (req->op) {
	case DC_OP_READ:
		blob_read(b, req);
		return;
	case DC_OP_FLUSH:
		dc_complete(req, 0); /* nothing is ever written */
		return;
	case DC_OP_WRITE:
	case DC_OP_UNMAP:
		/* The core refuses these on a read-only disk; fail closed anyway. */
		if (req->sector > b->disk_size / BLOB_SECTOR ||
		    req->count > b->disk_size / BLOB_SECTOR - req->sector)
			dc_complete(req, DC_E_ILLEGAL_BLOCK);
		else
			dc_complete(req, DC_E_READ_ONLY);
		return;
	default:
		dc_complete(req, DC_E_UNSUPPORTED);
	}
}

/* --- The VHD footer ------------------------------------------------------------ */

static uint32_t blob_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t blob_be64(const uint8_t *p)
{
	return (uint64_t)blob_be32(p) << 32 | blob_be32(p + 4);
}

/* The fixed-VHD footer checks of §2.4, in OpenVMM's order. */
static int blob_vhd1_footer(struct blob_disk *b, CURL *e, char *errbuf)
{
	uint8_t f[BLOB_FOOTER];
	uint32_t sum = 0, stored, version, type;
	uint64_t size;
	int ret;

	if (b->blob_size < BLOB_FOOTER) {
		dc_error("%s: the blob is %llu bytes, too small for a VHD footer (512)",
			 b->display, (unsigned long long)b->blob_size);
		return -EINVAL;
	}
	ret = blob_ctl_read(b, e, errbuf, f, b->blob_size - BLOB_FOOTER, BLOB_FOOTER);
	if (ret)
		return ret;
	if (memcmp(f, "conectix", 8)) {
		dc_error("%s: invalid VHD footer cookie: the last 512 bytes do not start "
			 "with \"conectix\" (not a fixed VHD; use blob:flat: for a raw "
			 "image)",
			 b->display);
		return -EINVAL;
	}
	for (unsigned i = 0; i < BLOB_FOOTER; i++)
		if (i < 64 || i >= 68)
			sum += f[i];
	stored = blob_be32(f + 64);
	if (stored != ~sum) {
		dc_error("%s: invalid VHD footer checksum 0x%08x, expected 0x%08x",
			 b->display, stored, ~sum);
		return -EINVAL;
	}
	version = blob_be32(f + 12);
	if (version != 0x00010000u) {
		dc_error("%s: unsupported VHD format version 0x%08x, expected 0x00010000",
			 b->display, version);
		return -EINVAL;
	}
	type = blob_be32(f + 60);
	if (type != 2) {
		dc_error("%s: not a fixed VHD (disk type %u); blob:vhd1 reads fixed VHDs "
			 "only",
			 b->display, type);
		return -EINVAL;
	}
	size = blob_be64(f + 48);
	if (size > b->blob_size - BLOB_FOOTER || size % BLOB_SECTOR) {
		dc_error("%s: invalid VHD disk size %llu: expected a multiple of 512 of "
			 "at most %llu (the blob without its footer)",
			 b->display, (unsigned long long)size,
			 (unsigned long long)(b->blob_size - BLOB_FOOTER));
		return -EINVAL;
	}
	b->disk_size = size;
	memcpy(b->disk_id, f + 68, sizeof(b->disk_id));
	return 0;
}

/* --- Options ------------------------------------------------------------------ */

static int blob_opt_uint(const struct dc_open_args *a, const char *name, uint64_t def,
			 uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v;

	if (!dc_opt_num(a, name, &v)) {
		*out = def;
		return 0;
	}
	if (v < min || v > max) {
		dc_error("%s=%llu is out of range: expected %llu to %llu", name,
			 (unsigned long long)v, (unsigned long long)min,
			 (unsigned long long)max);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

static int blob_options(struct blob_disk *b, const struct dc_open_args *a)
{
	static const char *const paths[] = { "cafile", "cert", "key" };
	char **dst[] = { &b->cafile, &b->cert, &b->key };
	uint64_t v;
	int ret;

	if ((ret = blob_opt_uint(a, "timeout", BLOB_DEF_TIMEOUT_MS, 1,
				 BLOB_MAX_TIMEOUT_MS, &v)))
		return ret;
	b->timeout_ms = (long)v;
	if ((ret = blob_opt_uint(a, "retries", BLOB_DEF_RETRIES, 0, BLOB_MAX_RETRIES,
				 &v)))
		return ret;
	b->retries = (unsigned)v;
	if ((ret = blob_opt_uint(a, "connections", BLOB_DEF_CONNECTIONS, 1,
				 BLOB_MAX_CONNECTIONS, &v)))
		return ret;
	b->connections = (unsigned)v;
	if ((ret = blob_opt_uint(a, "split", BLOB_DEF_SPLIT, BLOB_MIN_SPLIT,
				 BLOB_MAX_SPLIT, &v)))
		return ret;
	if (v % BLOB_SECTOR) {
		dc_error("split=%llu: expected a multiple of 512", (unsigned long long)v);
		return -EINVAL;
	}
	b->split = v;
	if ((ret = blob_opt_uint(a, "readahead", 0, 0, BLOB_RA_MAX, &v)))
		return ret;
	if (v && (v < BLOB_MIN_SPLIT || v % BLOB_SECTOR)) {
		dc_error(
			"readahead=%llu: expected 0 (off) or a multiple of 512 from %u to %u",
			(unsigned long long)v, BLOB_MIN_SPLIT, BLOB_RA_MAX);
		return -EINVAL;
	}
	b->ra = v;
	for (unsigned i = 0; i < 3; i++) {
		const char *p = dc_opt_str(a, paths[i]);

		if (!p)
			continue;
		if (!*p || access(p, R_OK) < 0) {
			dc_error("%s=%s: %s", paths[i], p,
				 *p ? strerror(errno) : "empty path");
			return -EINVAL;
		}
		*dst[i] = strdup(p);
		if (!*dst[i])
			return -ENOMEM;
	}
	if (!!b->cert != !!b->key && b->key) {
		dc_error("key= needs cert= (the client certificate)");
		return -EINVAL;
	}
	return 0;
}

/* --- Instance ----------------------------------------------------------------- */

static void blob_close(void *inst)
{
	struct blob_disk *b = inst;

	blob_stop_io(b);
	pthread_mutex_destroy(&b->lock);
	pthread_mutex_destroy(&b->msg_lock);
	pthread_mutex_destroy(&b->ra_lock);
	blob_ra_free(b);
	free(atomic_load(&b->whole));
	explicit_bzero(b->sk, sizeof(b->sk));
	free(b->pages);
	free(b->url);
	free(b->display);
	free(b->cafile);
	free(b->cert);
	free(b->key);
	free(b);
}

/* The fields: "flat" or "vhd1", and an http(s) URL with a host. */
static int blob_check_fields(const struct dc_open_args *a)
{
	char *scheme = NULL, *host = NULL, *path = NULL, *disp;
	int ret = 0;

	if (a->nfields < 2 ||
	    (strcmp(a->fields[0], "flat") && strcmp(a->fields[0], "vhd1")))
		return dc_fail(-EINVAL,
			       "expected blob:flat:URL or blob:vhd1:URL, got kind \"%s\"",
			       a->nfields ? a->fields[0] : "");
	if (!a->fields[1][0])
		return dc_fail(-EINVAL,
			       "missing URL (expected blob:%s:http[s]://HOST/PATH)",
			       a->fields[0]);
	disp = blob_display_url(a->fields[1]);
	if (!disp)
		return dc_fail(-ENOMEM, "out of memory");
	if (blob_url_parts(a->fields[1], &scheme, &host, &path, NULL)) {
		CURLU *u = curl_url();
		CURLUcode uc = u ? curl_url_set(u, CURLUPART_URL, a->fields[1], 0) :
				   CURLUE_OUT_OF_MEMORY;

		curl_url_cleanup(u);
		ret = dc_fail(
			-EINVAL,
			"\"%s\" is not a valid URL (%s); expected http[s]://HOST/PATH "
			"with unsafe characters percent-encoded",
			disp, curl_url_strerror(uc));
	} else if ((strcasecmp(scheme, "http") && strcasecmp(scheme, "https")) ||
		   !host[0]) {
		ret = dc_fail(-EINVAL,
			      "\"%s\" is not an http:// or https:// URL with a host",
			      disp);
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(path);
	free(disp);
	return ret;
}

/* A new instance for the fields (checked), with nothing opened yet. */
static struct blob_disk *blob_new(const struct dc_open_args *a)
{
	struct blob_disk *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	pthread_mutex_init(&b->lock, NULL);
	pthread_mutex_init(&b->msg_lock, NULL);
	pthread_mutex_init(&b->ra_lock, NULL);
	b->epfd = b->evfd = -1;
	b->kind = strcmp(a->fields[0], "flat") ? BLOB_VHD1 : BLOB_FLAT;
	b->rng = (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)b << 16) ^
		 0x9e3779b97f4a7c15u;
	b->url = strdup(a->fields[1]);
	b->display = b->url ? blob_display_url(b->url) : NULL;
	if (!b->url || !b->display) {
		blob_close(b);
		return NULL;
	}
	return b;
}

/* The requests of the open path, on one handle: HEAD, the page list of a page
 * blob, the VHD footer. */
static int blob_probe(struct blob_disk *b)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	CURL *e = curl_easy_init();
	int ret;

	if (!e || blob_easy_common(b, e, errbuf) != CURLE_OK) {
		if (e)
			curl_easy_cleanup(e);
		return dc_fail(-ENOMEM, "cannot set up a curl handle");
	}
	ret = blob_head(b, e, errbuf);
	if (!ret && b->azure && !strcmp(b->blob_type, "PageBlob"))
		ret = blob_pagelist(b, e, errbuf);
	if (!ret && b->kind == BLOB_VHD1)
		ret = blob_vhd1_footer(b, e, errbuf);
	else if (!ret)
		b->disk_size = b->blob_size / BLOB_SECTOR * BLOB_SECTOR;
	curl_easy_cleanup(e);
	return ret;
}

static void blob_fill_info(const struct blob_disk *b, struct dc_info *info)
{
	memset(info, 0, sizeof(*info));
	info->sector_count = b->disk_size / BLOB_SECTOR;
	info->sector_size = BLOB_SECTOR;
	info->physical_sector_size = BLOB_PHYS_SECTOR;
	info->unmap_behavior = DC_UNMAP_IGNORED;
	info->flags = DC_INFO_READ_ONLY;
	if (b->kind == BLOB_VHD1) {
		info->flags |= DC_INFO_HAS_DISK_ID;
		memcpy(info->disk_id, b->disk_id, sizeof(info->disk_id));
	}
	snprintf(info->disk_type, sizeof(info->disk_type), "blob");
}

static int blob_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct blob_disk *b;
	int ret;

	/* OpenVMM's resolver refuses these with this message (reference §2.4);
	 * falling back to read-only would hide the caller's mistake. */
	if (!a->read_only)
		return dc_fail(-EROFS,
			       "writable blob disks not supported: open it read-only, "
			       "or put a writable layer above it (memdiff:blob:...)");
	pthread_once(&blob_curl_once, blob_curl_init);
	if (blob_curl_init_rc != CURLE_OK)
		return dc_fail(-EIO, "cannot initialise libcurl: %s",
			       curl_easy_strerror(blob_curl_init_rc));
	if ((ret = blob_check_fields(a)))
		return ret;
	b = blob_new(a);
	if (!b)
		return dc_fail(-ENOMEM, "out of memory");
	if (!(ret = blob_options(b, a))) {
		blob_detect_azure(b, dc_opt_flag(a, "azure"));
		ret = blob_auth_setup(b, a);
	}
	if (!ret)
		ret = blob_probe(b);
	if (!ret)
		ret = blob_start_io(b);
	if (ret) {
		blob_close(b);
		return ret;
	}
	blob_fill_info(b, info);
	dc_debug("blob: %s: %llu bytes, %s%s%s, %u connections", b->display,
		 (unsigned long long)b->blob_size, b->kind == BLOB_VHD1 ? "vhd1" : "flat",
		 b->blob_type[0] ? ", " : "", b->blob_type, b->connections);
	*inst = b;
	return 0;
}

static void blob_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct blob_disk *b = inst;
	char v[BLOB_MSG];

	kv(arg, "url", b->display);
	kv(arg, "kind", b->kind == BLOB_VHD1 ? "vhd1" : "flat");
	dc_kv_u64(kv, arg, "blob_size", b->blob_size);
	dc_kv_u64(kv, arg, "disk_size", b->disk_size);
	kv(arg, "blob_type",
	   b->blob_type[0] ? b->blob_type :
	   b->azure	   ? "unknown" :
			     "http");
	kv(arg, "auth",
	   b->auth == BLOB_AUTH_SAS	  ? "sas" :
	   b->auth == BLOB_AUTH_SHAREDKEY ? "shared-key" :
					    "none");
	if (b->page_blob) {
		uint64_t bytes = 0;

		for (size_t i = 0; i < b->npages; i++)
			bytes += b->pages[i].end - b->pages[i].start;
		dc_kv_printf(kv, arg, "page_ranges", "%zu (%llu bytes)", b->npages,
			     (unsigned long long)bytes);
	}
	dc_kv_printf(kv, arg, "connections", "%u", b->connections);
	dc_kv_printf(kv, arg, "policy", "%ld ms, %u retries, split %llu", b->timeout_ms,
		     b->retries, (unsigned long long)b->split);
	kv(arg, "if_match", b->etag[0] ? "yes" : "no (no strong ETag)");
	if (atomic_load(&b->no_ranges)) {
		dc_kv_printf(kv, arg, "ranges",
			     "not supported by the server: reads take their bytes out of "
			     "the whole blob (%llu bytes), %s",
			     (unsigned long long)b->blob_size,
			     atomic_load(&b->whole) ? "held in memory" : "not held yet");
	}
	if (b->ra) {
		dc_kv_printf(kv, arg, "readahead", "%llu bytes x %u windows, %llu hits",
			     (unsigned long long)b->ra, BLOB_RA_WINDOWS,
			     (unsigned long long)atomic_load(&b->nra_hits));
	}
	dc_kv_printf(kv, arg, "stats",
		     "%llu requests, %llu retries, %llu errors, %llu bytes",
		     (unsigned long long)atomic_load(&b->nreq),
		     (unsigned long long)atomic_load(&b->nretry),
		     (unsigned long long)atomic_load(&b->nerr),
		     (unsigned long long)atomic_load(&b->nbytes));
	pthread_mutex_lock(&b->msg_lock);
	snprintf(v, sizeof(v), "%s", b->last_error);
	pthread_mutex_unlock(&b->msg_lock);
	if (v[0])
		kv(arg, "last_error", v);
}

static const struct dc_option blob_options_decl[] = {
	DC_OPTION_FLAG(
		"azure",
		"Azure Blob storage: send x-ms-version, read the blob type, skip page-blob "
		"ranges that hold no pages (automatic for *.blob.core.windows.net and the "
		"emulator's /devstoreaccount1/ paths)"),
	DC_OPTION_STRING(
		"sharedkey",
		"file holding ACCOUNT:BASE64KEY (or BASE64KEY) for Azure Shared Key auth; "
		"without it $DISKCORE_AZURE_KEY is used when the URL has no SAS"),
	DC_OPTION_STRING("cafile",
			 "PEM file of CA certificates to verify the server with"),
	DC_OPTION_STRING("cert", "PEM client certificate for TLS client authentication"),
	DC_OPTION_STRING("key", "PEM private key of the client certificate"),
	DC_OPTION_UINT(
		"timeout",
		"milliseconds one request may take before it fails or is retried (default "
		"30000)"),
	DC_OPTION_UINT(
		"retries",
		"retries after a 5xx, 429 or connection failure, with exponential backoff and "
		"jitter (default 4, at most 20)"),
	DC_OPTION_UINT(
		"connections",
		"requests in flight at once over reused connections (default 8, at most 64)"),
	DC_OPTION_SIZE(
		"readahead",
		"when reads run sequentially, fetch windows of this size ahead and serve "
		"smaller reads from them (default 0: off; 64K to 16M)"),
	DC_OPTION_SIZE(
		"split",
		"a larger read is fetched as parallel ranges of this size (default 1M)"),
	DC_OPTIONS_END,
};

/* A URL may carry ';' (OpenVMM takes the URL verbatim): with a core that
 * offers it, only trailing ";NAME[=VALUE]" items naming blob options are
 * options (docs/spec-strings.md, blob). Without it the first ';' starts them,
 * and %3B is how a URL carries one. */
#ifdef DC_FORM_TAIL_OPTIONS
#define BLOB_FORM_FLAGS DC_FORM_TAIL_OPTIONS
#else
#define BLOB_FORM_FLAGS 0u
#endif

DC_PLUGIN(blob_plugin) = {
	DC_ABOUT(DC_KIND_BACKEND, "blob", "0.1.0",
		 "read-only disk over HTTP(S) and Azure Blob storage (libcurl)"),
	.usage = "blob:flat:URL serves the blob as a raw disk; blob:vhd1:URL serves a "
		 "fixed VHD, hiding its footer and taking the disk id from it.\n"
		 "Reads are Range GETs: a 206 must carry exactly the bytes asked for; "
		 "a server without range support (200 and the whole blob) works for "
		 "blobs up to 64 MiB, held in memory. 5xx and connection failures are "
		 "retried. The disk must be opened "
		 "read-only (a writable open fails, as in OpenVMM); put a layer on top "
		 "to write (memdiff:blob:flat:URL).\n"
		 "Azure: SAS URLs work as they are; Shared Key auth with ;sharedkey=FILE "
		 "or DISKCORE_AZURE_KEY=ACCOUNT:BASE64KEY. TLS peers are always verified.",
	.forms = DC_FORMS(DC_FORM_FLAGS(
		"blob", 2, DC_CHILD_NONE, BLOB_FORM_FLAGS, "blob:flat|vhd1:URL",
		"read-only disk over HTTP(S) or Azure Blob storage", blob_options_decl)),
	.ctx_size = sizeof(struct blob_rctx),
	.ops = DC_OPS_RW,
	DC_CALLBACKS(blob, open, close, submit, describe),
};
