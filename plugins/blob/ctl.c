/* SPDX-License-Identifier: MIT */
/* blob: blocking requests made while opening, on the opener's thread: HEAD
 * with redirects, a GET into memory, a checked ranged read; each with the same
 * retry policy as the I/O thread (blob.h lists the files). */
#include "blob.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Wait out the backoff before retry `attempt` (1-based) of a failed request;
 * the open path may block. */
static void blob_ctl_backoff(struct blob_disk *b, unsigned attempt, const char *why)
{
	uint64_t ms = blob_backoff_ms(&b->rng, attempt);
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

	dc_debug("blob: %s; retry %u of %u in %llu ms", why, attempt, b->retries,
		 (unsigned long long)ms);
	nanosleep(&ts, NULL);
}

/* One blocking request on the control path, with the retry policy. The caller
 * has set the method, URL and body handling on e; headers are rebuilt for each
 * attempt (a Shared Key signature carries the time). Returns 0 with *resp filled
 * (any status), or -errno after dc_error(). */
int blob_ctl_perform(struct blob_disk *b, CURL *e, const char *verb, const char *url,
		     uint64_t off, uint64_t len, struct blob_resp *resp, char *errbuf,
		     void (*rewind)(void *arg), void *arg)
{
	char *disp = blob_display_url(url), why[BLOB_MSG];
	int ret = 0;

	for (unsigned attempt = 0;; attempt++) {
		struct blob_hdrs h;
		CURLcode c;

		blob_resp_reset(resp);
		errbuf[0] = '\0';
		if (rewind)
			rewind(arg);
		ret = blob_headers(b, verb, url, off, len, false, &h);
		if (ret) {
			dc_error("%s %s: cannot build the request headers: %s", verb,
				 disp ? disp : "?", strerror(-ret));
			break;
		}
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, h.node);
		curl_easy_setopt(e, CURLOPT_HEADERDATA, resp);
		c = curl_easy_perform(e);
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
		if (c == CURLE_OK && !blob_status_retryable(resp->status))
			break;
		if (c != CURLE_OK && c != CURLE_WRITE_ERROR && !blob_curl_retryable(c)) {
			dc_error("%s %s: %s%s%s%s", verb, disp ? disp : "?",
				 curl_easy_strerror(c), errbuf[0] ? " (" : "", errbuf,
				 errbuf[0] ? ")" : "");
			ret = -blob_curl_errno(c);
			break;
		}
		if (c == CURLE_WRITE_ERROR)
			break; /* the body handler refused: the caller says why */
		if (attempt >= b->retries) {
			if (c == CURLE_OK)
				break; /* a 5xx: the caller reports the status */
			dc_error("%s %s: %s%s%s%s (after %u attempt%s)", verb,
				 disp ? disp : "?", curl_easy_strerror(c),
				 errbuf[0] ? " (" : "", errbuf, errbuf[0] ? ")" : "",
				 attempt + 1, attempt ? "s" : "");
			ret = -blob_curl_errno(c);
			break;
		}
		snprintf(why, sizeof(why), "%s %s: %s, HTTP %ld", verb, disp ? disp : "?",
			 curl_easy_strerror(c), resp->status);
		blob_ctl_backoff(b, attempt + 1, why);
	}
	free(disp);
	return ret;
}

/* A clear message for a control-path status that is not the one expected;
 * more is appended. */
void blob_status_error(const char *verb, const char *disp, const struct blob_resp *r,
		       const char *expected, const char *more)
{
	const char *hint = "";

	if (r->status == 403 || r->status == 401)
		hint = ": access denied; check the SAS token (expiry, permissions, "
		       "signature) or the shared key";
	else if (r->status == 404)
		hint = ": no such blob";
	dc_error("%s %s: HTTP %ld (%s%s%s), expected %s%s%s", verb, disp, r->status,
		 blob_status_text(r->status), r->error_code[0] ? ", " : "", r->error_code,
		 expected, hint, more);
}

static bool blob_scheme_is(const char *url, const char *scheme)
{
	size_t n = strlen(scheme);

	return !strncasecmp(url, scheme, n) && url[n] == ':';
}

static bool blob_is_redirect(long status)
{
	return status == 301 || status == 302 || status == 303 || status == 307 ||
	       status == 308;
}

/* Follow a redirect of the HEAD at *url (hop number hops): the next URL
 * replaces *url. At most BLOB_MAX_REDIRECTS, never from https to http. */
static int blob_head_redirect(CURL *e, char **url, const char *disp, long status,
			      int hops)
{
	char *loc = NULL, *next;

	curl_easy_getinfo(e, CURLINFO_REDIRECT_URL, &loc);
	if (!loc)
		return dc_fail(-EPROTO, "HEAD %s: HTTP %ld without a Location", disp,
			       status);
	if (hops >= BLOB_MAX_REDIRECTS)
		return dc_fail(-ELOOP, "HEAD %s: too many redirects (more than %d)", disp,
			       BLOB_MAX_REDIRECTS);
	if (blob_scheme_is(*url, "https") && !blob_scheme_is(loc, "https")) {
		char *to = blob_display_url(loc);

		dc_error("HEAD %s: refusing the redirect from https to %s (a downgrade)",
			 disp, to ? to : "a non-https URL");
		free(to);
		return -EPERM;
	}
	next = strdup(loc);
	if (!next)
		return -ENOMEM;
	dc_debug("blob: HEAD %s: %ld, redirected", disp, status);
	free(*url);
	*url = next;
	return 0;
}

/* The final answer to HEAD must be a 200 that gives the size. */
static int blob_head_check(const struct blob_resp *r, const char *url, const char *disp)
{
	/* A ';' stays in the URL unless blob options follow it
	 * (docs/spec-strings.md, blob): a mistyped option lands here. */
	bool semi = strchr(url, ';') && r->status >= 400 && r->status < 500;

	if (r->status != 200) {
		blob_status_error("HEAD", disp, r, "200 OK",
				  semi ? " (the URL contains a ';': text after it that "
					 "is not blob options is part of the URL)" :
					 "");
		return r->status == 404			    ? -ENOENT :
		       r->status == 403 || r->status == 401 ? -EACCES :
							      -EIO;
	}
	if (r->content_length < 0)
		return dc_fail(-EPROTO,
			       "HEAD %s: the response has %s Content-Length; the blob's "
			       "size must be known",
			       disp, r->content_length == -1 ? "no" : "an invalid");
	/* Without ranges a blob is read whole, which is bounded. */
	if (r->no_ranges && (uint64_t)r->content_length > BLOB_WHOLE_MAX)
		return dc_fail(-EOPNOTSUPP,
			       "HEAD %s: the server does not support range requests "
			       "(Accept-Ranges: none), and the blob is %lld bytes: more "
			       "than the %u MiB that are read whole",
			       disp, (long long)r->content_length, BLOB_WHOLE_MAX >> 20);
	return 0;
}

/* HEAD the URL, following redirects: size, blob type, ETag, final URL. */
int blob_head(struct blob_disk *b, CURL *e, char *errbuf)
{
	struct blob_resp r;
	char *url = strdup(b->url), *disp = NULL;
	int ret = url ? 0 : -ENOMEM;

	curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	for (int hops = 0; !ret; hops++) {
		free(disp);
		disp = blob_display_url(url);
		if (!disp) {
			ret = -ENOMEM;
			break;
		}
		curl_easy_setopt(e, CURLOPT_URL, url);
		ret = blob_ctl_perform(b, e, "HEAD", url, 0, 0, &r, errbuf, NULL, NULL);
		if (ret || !blob_is_redirect(r.status))
			break;
		ret = blob_head_redirect(e, &url, disp, r.status, hops);
	}
	if (!ret)
		ret = blob_head_check(&r, url, disp);
	if (!ret) {
		b->blob_size = (uint64_t)r.content_length;
		atomic_store(&b->no_ranges, r.no_ranges);
		memcpy(b->blob_type, r.blob_type, sizeof(b->blob_type));
		/* Only a strong ETag may be used with If-Match. */
		if (r.etag[0] == '"')
			memcpy(b->etag, r.etag, sizeof(b->etag));
		free(b->url);
		b->url = url;
		url = NULL;
		free(b->display);
		b->display = disp;
		disp = NULL;
	}
	free(disp);
	free(url);
	curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
	return ret;
}

/* --- Bodies in memory ---------------------------------------------------------- */

/* The body of a control-path GET, in memory, up to m->max bytes. */
size_t blob_mem_write(char *data, size_t size, size_t n, void *arg)
{
	struct blob_membuf *m = arg;
	size_t len = size * n;

	if (len > m->max - m->len) {
		m->too_big = true;
		return 0;
	}
	if (m->len + len + 1 > m->cap) {
		size_t cap = (m->len + len + 1) * 2;
		char *p;

		if (cap > m->max + 1)
			cap = m->max + 1;
		p = realloc(m->p, cap);
		if (!p)
			return 0;
		m->p = p;
		m->cap = cap;
	}
	memcpy(m->p + m->len, data, len);
	m->len += len;
	m->p[m->len] = '\0';
	return len;
}

void blob_mem_rewind(void *arg)
{
	struct blob_membuf *m = arg;

	m->len = 0;
	m->too_big = false;
	if (m->p)
		m->p[0] = '\0';
}

/* --- Ranged reads -------------------------------------------------------------- */

/* Read [off, off+len) of the blob into dst on the control path, with the same
 * strict checks as data-path reads. */
int blob_ctl_read(struct blob_disk *b, CURL *e, char *errbuf, void *dst, uint64_t off,
		  uint64_t len)
{
	struct iovec iov = { dst, (size_t)len };
	struct blob_hdrs hdrs;
	struct blob_conn conn = { .easy = e, .hdrs = &hdrs };
	struct blob_xfer x = {
		.b = b,
		.buf = { .iov = &iov, .iovcnt = 1, .len = (size_t)len },
		.off = off,
		.len = len,
		.conn = &conn,
	};
	char msg[BLOB_MSG];
	bool retry;
	int ret;

	curl_easy_setopt(e, CURLOPT_URL, b->url);
	curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, blob_xfer_write);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, conn.errbuf);
	for (;;) {
		ret = blob_xfer_prepare(b, &x);
		if (ret) {
			dc_error("GET %s: cannot build the request: %s", b->display,
				 strerror(-ret));
			break;
		}
		x.code = curl_easy_perform(e);
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
		ret = blob_xfer_classify(b, &x, &retry, msg, sizeof(msg));
		if (!ret)
			break;
		if (!retry || x.attempt >= b->retries) {
			dc_error("%s", msg);
			break;
		}
		blob_ctl_backoff(b, ++x.attempt, msg);
	}
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, NULL);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
	return ret;
}
