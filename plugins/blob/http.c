/* SPDX-License-Identifier: MIT */
/* blob: one request's transport. What a response's header lines say, the
 * header lines a request carries, the options of a curl handle, and the strict
 * checks of a ranged GET (blob.h lists the files). */
#include "blob.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* --- Response headers ---------------------------------------------------------- */

void blob_resp_reset(struct blob_resp *r)
{
	memset(r, 0, sizeof(*r));
	r->content_length = -1;
}

/* "bytes START-END/TOTAL" (TOTAL may be "*"). */
static void blob_parse_content_range(struct blob_resp *r, const char *v, size_t n)
{
	const char *end = v + n, *dash, *slash;

	r->has_range = true;
	r->range_bad = true;
	if (n < 6 || strncasecmp(v, "bytes ", 6))
		return;
	v += 6;
	dash = memchr(v, '-', (size_t)(end - v));
	slash = dash ? memchr(dash, '/', (size_t)(end - dash)) : NULL;
	if (!dash || !slash || !blob_parse_u64(v, dash, &r->range_start) ||
	    !blob_parse_u64(dash + 1, slash, &r->range_end))
		return;
	if (end - slash == 2 && slash[1] == '*')
		r->range_total = UINT64_MAX;
	else if (!blob_parse_u64(slash + 1, end, &r->range_total))
		return;
	r->range_bad = r->range_end < r->range_start;
}

static void blob_copy_value(char *dst, size_t cap, const char *v, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

static size_t blob_header_cb(char *line, size_t size, size_t n, void *arg)
{
	struct blob_resp *r = arg;
	size_t len = size * n, nlen;
	const char *colon, *v, *end = line + len;

	if (len > 5 && !strncmp(line, "HTTP/", 5)) {
		/* A new response (after a 1xx or a redirect): start over. */
		const char *sp = memchr(line, ' ', len);
		uint64_t st = 0;

		blob_resp_reset(r);
		if (sp && end - sp >= 4 && blob_parse_u64(sp + 1, sp + 4, &st))
			r->status = (long)st;
		return len;
	}
	colon = memchr(line, ':', len);
	if (!colon)
		return len;
	nlen = (size_t)(colon - line);
	v = colon + 1;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
#define BLOB_IS(name) (nlen == sizeof(name) - 1 && !strncasecmp(line, name, nlen))
	if (BLOB_IS("content-length")) {
		uint64_t cl;

		r->content_length =
			blob_parse_u64(v, end, &cl) && cl <= INT64_MAX ? (int64_t)cl : -2;
	} else if (BLOB_IS("content-range")) {
		blob_parse_content_range(r, v, (size_t)(end - v));
	} else if (BLOB_IS("accept-ranges")) {
		r->no_ranges = end - v == 4 && !strncasecmp(v, "none", 4);
	} else if (BLOB_IS("etag")) {
		blob_copy_value(r->etag, sizeof(r->etag), v, (size_t)(end - v));
	} else if (BLOB_IS("x-ms-blob-type")) {
		blob_copy_value(r->blob_type, sizeof(r->blob_type), v, (size_t)(end - v));
	} else if (BLOB_IS("x-ms-error-code")) {
		blob_copy_value(r->error_code, sizeof(r->error_code), v,
				(size_t)(end - v));
	}
#undef BLOB_IS
	return len;
}

/* --- Request headers ----------------------------------------------------------- */

/* The RFC 1123 date of x-ms-date, in English whatever the locale. */
static void blob_http_date(char *out, size_t n)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(out, n, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
		 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour,
		 tm.tm_min, tm.tm_sec);
}

static void blob_hdr_add(struct blob_hdrs *h, unsigned *n, char *line)
{
	h->node[*n].data = line;
	h->node[*n].next = NULL;
	if (*n)
		h->node[*n - 1].next = &h->node[*n];
	(*n)++;
}

/* Headers every request carries: Range, If-Match, x-ms-*, auth. Returns the
 * list head in h->node[0]. */
int blob_headers(const struct blob_disk *b, const char *verb, const char *url,
		 uint64_t off, uint64_t len, bool if_match, struct blob_hdrs *h)
{
	static char version[] = "x-ms-version: " BLOB_AZURE_VERSION;
	static char accept[] = "Accept:"; /* no "Accept: * / *" noise */
	const char *im = if_match && b->etag[0] ? b->etag : NULL;
	unsigned n = 0;

	if (len) {
		snprintf(h->range, sizeof(h->range), "Range: bytes=%llu-%llu",
			 (unsigned long long)off, (unsigned long long)(off + len - 1));
		blob_hdr_add(h, &n, h->range);
	}
	if (im) {
		snprintf(h->ifmatch, sizeof(h->ifmatch), "If-Match: %s", im);
		blob_hdr_add(h, &n, h->ifmatch);
	}
	if (b->azure) {
		blob_hdr_add(h, &n, version);
		if (b->auth == BLOB_AUTH_SHAREDKEY) {
			char date[40];
			int ret;

			blob_http_date(date, sizeof(date));
			snprintf(h->date, sizeof(h->date), "x-ms-date: %s", date);
			blob_hdr_add(h, &n, h->date);
			ret = blob_sharedkey_header(
				b, verb, url, len ? h->range + strlen("Range: ") : NULL,
				im, date, h->auth, sizeof(h->auth));
			if (ret)
				return ret;
			blob_hdr_add(h, &n, h->auth);
		}
	}
	blob_hdr_add(h, &n, accept);
	return 0;
}

/* --- Easy handles ------------------------------------------------------------- */

/* Options every request of this instance shares. */
CURLcode blob_easy_common(const struct blob_disk *b, CURL *e, char *errbuf)
{
	CURLcode c = CURLE_OK;

#define BLOB_SET(opt, val)                                 \
	do {                                               \
		if (c == CURLE_OK)                         \
			c = curl_easy_setopt(e, opt, val); \
	} while (0)
	BLOB_SET(CURLOPT_NOSIGNAL, 1L);
	BLOB_SET(CURLOPT_ERRORBUFFER, errbuf);
	BLOB_SET(CURLOPT_PROTOCOLS_STR, "http,https");
	BLOB_SET(CURLOPT_FOLLOWLOCATION, 0L);
	BLOB_SET(CURLOPT_TIMEOUT_MS, b->timeout_ms);
	BLOB_SET(CURLOPT_CONNECTTIMEOUT_MS, b->timeout_ms < BLOB_CONNECT_TIMEOUT_MS ?
						    b->timeout_ms :
						    (long)BLOB_CONNECT_TIMEOUT_MS);
	BLOB_SET(CURLOPT_USERAGENT, BLOB_USER_AGENT);
	BLOB_SET(CURLOPT_TCP_KEEPALIVE, 1L);
	BLOB_SET(CURLOPT_TCP_NODELAY, 1L);
	BLOB_SET(CURLOPT_BUFFERSIZE, 512L * 1024);
	BLOB_SET(CURLOPT_SSL_VERIFYPEER, 1L);
	BLOB_SET(CURLOPT_SSL_VERIFYHOST, 2L);
	BLOB_SET(CURLOPT_HEADERFUNCTION, blob_header_cb);
	if (b->cafile)
		BLOB_SET(CURLOPT_CAINFO, b->cafile);
	if (b->cert)
		BLOB_SET(CURLOPT_SSLCERT, b->cert);
	if (b->key)
		BLOB_SET(CURLOPT_SSLKEY, b->key);
#undef BLOB_SET
	return c;
}

struct blob_conn *blob_conn_new(const struct blob_disk *b)
{
	struct blob_conn *c = calloc(1, sizeof(*c) + sizeof(struct blob_hdrs));

	if (!c)
		return NULL;
	c->hdrs = (struct blob_hdrs *)(c + 1);
	c->easy = curl_easy_init();
	if (!c->easy || blob_easy_common(b, c->easy, c->errbuf) != CURLE_OK ||
	    curl_easy_setopt(c->easy, CURLOPT_URL, b->url) != CURLE_OK ||
	    curl_easy_setopt(c->easy, CURLOPT_HTTPGET, 1L) != CURLE_OK ||
	    curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, blob_xfer_write) !=
		    CURLE_OK) {
		if (c->easy)
			curl_easy_cleanup(c->easy);
		free(c);
		return NULL;
	}
	return c;
}

void blob_conn_free(struct blob_conn *c)
{
	curl_easy_cleanup(c->easy);
	free(c);
}

/* --- Range GETs --------------------------------------------------------------- */

/* Status and Content-Range, once the headers are in. A 200 is the whole
 * blob, taken when the blob is small enough (BLOB_WHOLE_MAX). */
static enum blob_fail blob_xfer_check_head(struct blob_xfer *x)
{
	const struct blob_resp *r = &x->resp;
	const struct blob_disk *b = x->b;

	if (r->status == 200) {
		if (r->content_length >= 0 && (uint64_t)r->content_length != b->blob_size)
			return BLOB_F_WHOLE;
		if (b->blob_size > BLOB_WHOLE_MAX)
			return BLOB_F_NORANGE;
		x->whole = true;
		return BLOB_OK;
	}
	if (r->status != 206)
		return BLOB_F_STATUS;
	if (!r->has_range || r->range_bad || r->range_start != x->off ||
	    r->range_end != x->off + x->len - 1)
		return BLOB_F_RANGE;
	return BLOB_OK;
}

/* A whole body's first bytes: keep it all for b->whole unless the blob is in
 * memory already or another body is being kept. */
static void blob_whole_begin(struct blob_xfer *x)
{
	struct blob_disk *b = x->b;

	if (!b->blob_size || b->filling || atomic_load(&b->whole))
		return;
	x->keep = malloc(b->blob_size);
	b->filling = x->keep != NULL;
}

/* Part of a whole body: copy what falls in [off, off + len), keep it all. */
static size_t blob_whole_write(struct blob_xfer *x, const char *data, size_t len)
{
	uint64_t pos = x->pos, end = x->off + x->len, a, z;

	if (len > x->b->blob_size - pos) {
		x->fail = BLOB_F_LONG;
		return 0;
	}
	if (x->keep)
		memcpy(x->keep + pos, data, len);
	a = pos > x->off ? pos : x->off;
	z = pos + len < end ? pos + len : end;
	if (a < z) {
		dc_buf_copy_to(&x->buf, (size_t)(a - x->off), data + (a - pos),
			       (size_t)(z - a));
		x->got += z - a;
	}
	x->pos += len;
	return len;
}

size_t blob_xfer_write(char *data, size_t size, size_t n, void *arg)
{
	struct blob_xfer *x = arg;
	size_t len = size * n;

	if (!x->checked) {
		x->checked = true;
		x->fail = blob_xfer_check_head(x);
		if (!x->fail && x->whole)
			blob_whole_begin(x);
	}
	if (x->fail)
		return 0; /* stop reading a body we will not use */
	if (x->whole)
		return blob_whole_write(x, data, len);
	if (len > x->len - x->got) {
		x->fail = BLOB_F_LONG;
		return 0;
	}
	dc_buf_copy_to(&x->buf, x->got, data, len);
	x->got += len;
	return len;
}

/* What an attempt that read a whole body teaches the instance: the server
 * ignores ranges, and (if it was kept and complete) here is the blob. */
static void blob_whole_settle(struct blob_disk *b, struct blob_xfer *x, bool ok)
{
	if (x->keep) {
		if (ok)
			atomic_store_explicit(&b->whole, x->keep, memory_order_release);
		else
			free(x->keep);
		x->keep = NULL;
		b->filling = false;
	}
	if (ok && x->whole && !atomic_exchange(&b->no_ranges, true))
		dc_debug("blob: %s: the server answers ranged GETs with the whole blob "
			 "(%llu bytes); it is read whole and kept in memory",
			 b->display, (unsigned long long)b->blob_size);
}

/* Per-attempt setup of a connection slot for x. */
int blob_xfer_prepare(struct blob_disk *b, struct blob_xfer *x)
{
	CURL *e = x->conn->easy;
	int ret;

	x->got = x->pos = 0;
	x->fail = BLOB_OK;
	x->code = CURLE_OK;
	x->checked = x->whole = false;
	x->conn->errbuf[0] = '\0';
	blob_resp_reset(&x->resp);
	ret = blob_headers(b, "GET", b->url, x->off, x->len, true, x->conn->hdrs);
	if (ret)
		return ret;
	if (curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->conn->hdrs->node) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_WRITEDATA, x) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_HEADERDATA, &x->resp) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_PRIVATE, x) != CURLE_OK)
		return -ENOMEM;
	return 0;
}

/* The message and -errno for a failed attempt; *retry when another attempt
 * may help. */
static int blob_xfer_explain(const struct blob_disk *b, const struct blob_xfer *x,
			     bool *retry, char *msg, size_t msglen)
{
	const struct blob_resp *r = &x->resp;
	unsigned long long a = x->off, z = x->off + x->len - 1;

	switch (x->fail) {
	case BLOB_F_STATUS:
		*retry = blob_status_retryable(r->status);
		snprintf(
			msg, msglen,
			"GET %s bytes=%llu-%llu: HTTP %ld (%s%s%s), expected 206 Partial "
			"Content%s",
			b->display, a, z, r->status, blob_status_text(r->status),
			r->error_code[0] ? ", " : "", r->error_code,
			r->status == 412 ? ": the blob changed since it was opened" : "");
		return r->status == 412 ? -ESTALE : -EIO;
	case BLOB_F_WHOLE:
		snprintf(msg, msglen,
			 "GET %s bytes=%llu-%llu: HTTP 200 with %lld bytes, but the blob "
			 "is %llu bytes (the server ignored the Range header)",
			 b->display, a, z, (long long)r->content_length,
			 (unsigned long long)b->blob_size);
		return -EPROTO;
	case BLOB_F_NORANGE:
		snprintf(
			msg, msglen,
			"GET %s bytes=%llu-%llu: the server does not support range "
			"requests (it answered 200 with the whole blob), and the blob is "
			"%llu bytes: more than the %u MiB that are read whole",
			b->display, a, z, (unsigned long long)b->blob_size,
			BLOB_WHOLE_MAX >> 20);
		return -EOPNOTSUPP;
	case BLOB_F_RANGE:
		if (r->has_range && !r->range_bad)
			snprintf(msg, msglen,
				 "GET %s: 206 for bytes %llu-%llu, asked for %llu-%llu",
				 b->display, (unsigned long long)r->range_start,
				 (unsigned long long)r->range_end, a, z);
		else
			snprintf(msg, msglen,
				 "GET %s bytes=%llu-%llu: 206 with %s Content-Range",
				 b->display, a, z, r->has_range ? "an invalid" : "no");
		return -EPROTO;
	case BLOB_F_LONG:
		snprintf(msg, msglen,
			 "GET %s bytes=%llu-%llu: the server sent more than the %llu "
			 "bytes %s",
			 b->display, a, z,
			 (unsigned long long)(x->whole ? b->blob_size : x->len),
			 x->whole ? "of the whole blob (HTTP 200)" : "asked for");
		return -EPROTO;
	case BLOB_F_SHORT:
		snprintf(msg, msglen,
			 "GET %s bytes=%llu-%llu: short body, %llu of %llu bytes%s",
			 b->display, a, z,
			 (unsigned long long)(x->whole ? x->pos : x->got),
			 (unsigned long long)(x->whole ? b->blob_size : x->len),
			 x->whole ? " of the whole blob (HTTP 200)" : "");
		return -EPROTO;
	default:
		*retry = blob_curl_retryable(x->code);
		snprintf(msg, msglen, "GET %s bytes=%llu-%llu: %s%s%s%s", b->display, a,
			 z, curl_easy_strerror(x->code), x->conn->errbuf[0] ? " (" : "",
			 x->conn->errbuf, x->conn->errbuf[0] ? ")" : "");
		return -blob_curl_errno(x->code);
	}
}

/* How an attempt ended: 0, or -errno; *retry when another attempt may help.
 * Fills msg for a failure. Call once per attempt: a whole body is settled. */
int blob_xfer_classify(struct blob_disk *b, struct blob_xfer *x, bool *retry, char *msg,
		       size_t msglen)
{
	*retry = false;
	if (x->code == CURLE_OK || (x->code == CURLE_WRITE_ERROR && x->fail)) {
		if (!x->fail && !x->checked)
			x->fail = blob_xfer_check_head(x); /* no body at all */
		if (!x->fail && (x->whole ? x->pos != b->blob_size : x->got != x->len))
			x->fail = BLOB_F_SHORT;
	} else {
		x->fail = BLOB_F_CURL;
	}
	blob_whole_settle(b, x, !x->fail);
	return x->fail ? blob_xfer_explain(b, x, retry, msg, msglen) : 0;
}
