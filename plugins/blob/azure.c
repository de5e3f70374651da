/* SPDX-License-Identifier: MIT */
/* blob: Azure Blob storage. Whether a URL is Azure and its account, SAS or
 * Shared Key auth (the key from a file or the environment, each request
 * signed), and the page range list of a page blob (blob.h lists the files). */
#include "blob.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifdef BLOB_HAVE_CRYPTO
#include <openssl/evp.h>
#include <openssl/hmac.h>
#endif

/* --- Detection and credentials ------------------------------------------------- */

/* Azure: the account from the host (ACCOUNT.blob.core.windows.net) or, for the
 * emulator's path style (http://127.0.0.1:10000/ACCOUNT/container/blob), from
 * the first path segment. */
void blob_detect_azure(struct blob_disk *b, bool flag)
{
	static const char suffix[] = ".blob.core.windows.net";
	char *scheme, *host, *path;
	size_t hl;

	if (blob_url_parts(b->url, &scheme, &host, &path, NULL))
		return;
	hl = strlen(host);
	if (hl > sizeof(suffix) - 1 &&
	    !strcasecmp(host + hl - (sizeof(suffix) - 1), suffix)) {
		b->azure = true;
		snprintf(b->account, sizeof(b->account), "%.*s",
			 (int)(hl - (sizeof(suffix) - 1)), host);
	} else {
		const char *seg = path[0] == '/' ? path + 1 : path;
		size_t sl = strcspn(seg, "/");
		bool local = !strcmp(host, "127.0.0.1") || !strcmp(host, "localhost") ||
			     !strcmp(host, "[::1]");

		if ((flag ||
		     (local && sl == 16 && !strncmp(seg, "devstoreaccount1", 16))) &&
		    sl && sl < sizeof(b->account)) {
			b->azure = true;
			snprintf(b->account, sizeof(b->account), "%.*s", (int)sl, seg);
		} else if (flag) {
			b->azure = true;
			/* A custom domain: the account must come with the key. */
			snprintf(b->account, sizeof(b->account), "%.*s",
				 (int)strcspn(host, "."), host);
		}
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(path);
}

static bool blob_has_sas(const char *url)
{
	const char *q = strchr(url, '?');

	for (const char *p = q; p && *p; p = strchr(p + 1, '&'))
		if (!strncmp(p + 1, "sig=", 4))
			return true;
	return false;
}

/* "ACCOUNT:BASE64KEY" or "BASE64KEY" from the environment or a key file. */
static int blob_load_key(struct blob_disk *b, const char *text, const char *from,
			 bool from_env)
{
#ifdef BLOB_HAVE_CRYPTO
	const char *colon = strchr(text, ':'), *k = colon ? colon + 1 : text;
	size_t kl = strcspn(k, "\r\n \t");
	unsigned char tmp[sizeof(b->sk) + 3];
	int n, pad = 0;

	if (colon) {
		size_t al = (size_t)(colon - text);

		if (from_env &&
		    (al != strlen(b->account) || strncmp(text, b->account, al))) {
			dc_debug(
				"blob: %s names account \"%.*s\", the URL \"%s\": not used",
				from, (int)al, text, b->account);
			return 1;
		}
		if (al == 0 || al >= sizeof(b->account)) {
			dc_error("%s: expected ACCOUNT:BASE64KEY or BASE64KEY", from);
			return -EINVAL;
		}
		snprintf(b->account, sizeof(b->account), "%.*s", (int)al, text);
	}
	if (kl == 0 || kl % 4 || kl / 4 * 3 > sizeof(tmp)) {
		dc_error("%s: the key is not base64 of at most %zu bytes", from,
			 sizeof(b->sk));
		return -EINVAL;
	}
	n = EVP_DecodeBlock(tmp, (const unsigned char *)k, (int)kl);
	if (n < 0) {
		dc_error("%s: the key is not valid base64", from);
		return -EINVAL;
	}
	pad = (k[kl - 1] == '=') + (k[kl - 2] == '=');
	b->sklen = n - pad;
	memcpy(b->sk, tmp, (size_t)b->sklen);
	b->auth = BLOB_AUTH_SHAREDKEY;
	return 0;
#else
	(void)b;
	(void)text;
	(void)from_env;
	dc_error("%s: Shared Key auth needs OpenSSL, and this blob plugin was built "
		 "without it; use a SAS URL",
		 from);
	return -EOPNOTSUPP;
#endif
}

static int blob_read_keyfile(struct blob_disk *b, const char *path)
{
	char buf[512], from[300];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret;

	snprintf(from, sizeof(from), "sharedkey file %s", path);
	if (fd < 0) {
		ret = -errno;
		dc_error("%s: %s", from, strerror(errno));
		return ret;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	ret = n < 0 ? -errno : 0;
	close(fd);
	if (n < 0) {
		dc_error("%s: %s", from, strerror(-ret));
		return ret;
	}
	buf[n] = '\0';
	ret = blob_load_key(b, buf, from, false);
	explicit_bzero(buf, sizeof(buf));
	return ret;
}

int blob_auth_setup(struct blob_disk *b, const struct dc_open_args *a)
{
	const char *kf = dc_opt_str(a, "sharedkey"), *env;
	bool sas = blob_has_sas(b->url);

	if (sas)
		b->auth = BLOB_AUTH_SAS;
	if (kf) {
		if (sas) {
			dc_error("give either a SAS URL or sharedkey=, not both");
			return -EINVAL;
		}
		if (!b->azure) {
			dc_error("sharedkey= is for Azure Blob storage; add ;azure for a "
				 "host that is not *.blob.core.windows.net");
			return -EINVAL;
		}
		return blob_read_keyfile(b, kf);
	}
	env = getenv("DISKCORE_AZURE_KEY");
	if (!sas && b->azure && env && *env) {
		int ret = blob_load_key(b, env, "$DISKCORE_AZURE_KEY", true);

		return ret > 0 ? 0 : ret;
	}
	return 0;
}

/* --- Shared Key signatures ------------------------------------------------------ */

#ifdef BLOB_HAVE_CRYPTO
static int blob_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode [s, s+n) into a new string. */
static char *blob_pct_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		int hi, lo;

		if (s[i] == '%' && i + 2 < n && (hi = blob_hexval(s[i + 1])) >= 0 &&
		    (lo = blob_hexval(s[i + 2])) >= 0) {
			*o++ = (char)(hi << 4 | lo);
			i += 2;
		} else {
			*o++ = s[i];
		}
	}
	*o = '\0';
	return out;
}

struct blob_qparam {
	char *name, *value;
};

static int blob_qparam_cmp(const void *a, const void *b)
{
	const struct blob_qparam *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : strcmp(x->value, y->value);
}

/* Append to a growing string; false when out of memory. */
struct blob_str {
	char *p;
	size_t len, cap;
	bool oom;
};

static void blob_str_add(struct blob_str *s, const char *t, size_t n)
{
	if (s->oom)
		return;
	if (s->len + n + 1 > s->cap) {
		size_t cap = (s->len + n + 1) * 2;
		char *p = realloc(s->p, cap);

		if (!p) {
			s->oom = true;
			return;
		}
		s->p = p;
		s->cap = cap;
	}
	memcpy(s->p + s->len, t, n);
	s->len += n;
	s->p[s->len] = '\0';
}

static void blob_str_adds(struct blob_str *s, const char *t)
{
	blob_str_add(s, t, strlen(t));
}

/* The canonicalized resource of the Shared Key scheme: "/ACCOUNT/PATH", then
 * each query parameter as "\nname:value", names lowercased and sorted, values
 * of a repeated name joined with ','. */
static int blob_canon_resource(const struct blob_disk *b, const char *url,
			       struct blob_str *s)
{
	char *scheme, *host, *path, *query;
	struct blob_qparam *qp = NULL;
	size_t nq = 0;
	int ret;

	ret = blob_url_parts(url, &scheme, &host, &path, &query);
	if (ret)
		return ret;
	blob_str_adds(s, "/");
	blob_str_adds(s, b->account);
	blob_str_adds(s, path);
	for (const char *p = query; p && *p;) {
		size_t n = strcspn(p, "&");
		const char *eq = memchr(p, '=', n);
		size_t kn = eq ? (size_t)(eq - p) : n;
		struct blob_qparam *t;

		if (n) {
			t = realloc(qp, (nq + 1) * sizeof(*qp));
			if (!t) {
				ret = -ENOMEM;
				break;
			}
			qp = t;
			qp[nq].name = blob_pct_decode(p, kn);
			qp[nq].value = eq ? blob_pct_decode(eq + 1, n - kn - 1) :
					    strdup("");
			nq++;
			if (!qp[nq - 1].name || !qp[nq - 1].value) {
				ret = -ENOMEM;
				break;
			}
			for (char *c = qp[nq - 1].name; *c; c++)
				if (*c >= 'A' && *c <= 'Z')
					*c = (char)(*c - 'A' + 'a');
		}
		p += n;
		if (*p == '&')
			p++;
	}
	if (!ret) {
		if (nq)
			qsort(qp, nq, sizeof(*qp), blob_qparam_cmp);
		for (size_t i = 0; i < nq; i++) {
			if (i && !strcmp(qp[i].name, qp[i - 1].name)) {
				blob_str_adds(s, ",");
			} else {
				blob_str_adds(s, "\n");
				blob_str_adds(s, qp[i].name);
				blob_str_adds(s, ":");
			}
			blob_str_adds(s, qp[i].value);
		}
	}
	for (size_t i = 0; i < nq; i++) {
		free(qp[i].name);
		free(qp[i].value);
	}
	free(qp);
	curl_free(scheme);
	curl_free(host);
	curl_free(path);
	curl_free(query);
	return ret ? ret : s->oom ? -ENOMEM : 0;
}

/* "Authorization: SharedKey ACCOUNT:SIGNATURE" for a request without a body. */
int blob_sharedkey_header(const struct blob_disk *b, const char *verb, const char *url,
			  const char *range, const char *if_match, const char *date,
			  char *out, size_t outlen)
{
	struct blob_str s = { 0 };
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char sig[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
	int ret;

	/* VERB, Content-Encoding, -Language, -Length, -MD5, -Type, Date,
	 * If-Modified-Since, If-Match, If-None-Match, If-Unmodified-Since, Range. */
	blob_str_adds(&s, verb);
	blob_str_adds(&s, "\n\n\n\n\n\n\n\n");
	blob_str_adds(&s, if_match ? if_match : "");
	blob_str_adds(&s, "\n\n\n");
	blob_str_adds(&s, range ? range : "");
	blob_str_adds(&s, "\nx-ms-date:");
	blob_str_adds(&s, date);
	blob_str_adds(&s, "\nx-ms-version:" BLOB_AZURE_VERSION "\n");
	ret = blob_canon_resource(b, url, &s);
	if (!ret && !HMAC(EVP_sha256(), b->sk, b->sklen, (unsigned char *)s.p, s.len, mac,
			  &maclen))
		ret = -EIO;
	free(s.p);
	if (ret)
		return ret;
	EVP_EncodeBlock((unsigned char *)sig, mac, (int)maclen);
	if ((size_t)snprintf(out, outlen, "Authorization: SharedKey %s:%s", b->account,
			     sig) >= outlen)
		return -ENAMETOOLONG;
	return 0;
}
#else
int blob_sharedkey_header(const struct blob_disk *b, const char *verb, const char *url,
			  const char *range, const char *if_match, const char *date,
			  char *out, size_t outlen)
{
	(void)b, (void)verb, (void)url, (void)range, (void)if_match, (void)date;
	(void)out, (void)outlen;
	return -EOPNOTSUPP; /* blob_load_key() refused the key already */
}
#endif

/* --- Page range lists ----------------------------------------------------------- */

static const char *blob_xml_elem(const char **pos, const char *limit, const char *tag,
				 size_t *len)
{
	char open[40], close[40];
	const char *s, *e;

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	s = strstr(*pos, open);
	if (!s || (limit && s >= limit))
		return NULL;
	s += strlen(open);
	e = strstr(s, close);
	if (!e || (limit && e > limit))
		return NULL;
	*len = (size_t)(e - s);
	*pos = e + strlen(close);
	return s;
}

static int blob_range_cmp(const void *a, const void *b)
{
	const struct blob_range *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* Parse one page of a Get Page Ranges answer; returns the NextMarker (malloc'd)
 * or NULL in *marker. */
static int blob_parse_pagelist(struct blob_disk *b, const char *xml, char **marker)
{
	const char *pos = xml, *v;
	size_t n;

	*marker = NULL;
	if (!strstr(xml, "<PageList")) {
		dc_error("GET %s?comp=pagelist: the answer is not a PageList",
			 b->display);
		return -EPROTO;
	}
	for (;;) {
		const char *r = strstr(pos, "<PageRange>"), *rend, *p;
		uint64_t s, e;
		size_t sn, en;
		const char *sv, *ev;

		if (!r)
			break;
		rend = strstr(r, "</PageRange>");
		if (!rend)
			goto bad;
		p = r;
		sv = blob_xml_elem(&p, rend, "Start", &sn);
		p = r;
		ev = blob_xml_elem(&p, rend, "End", &en);
		if (!sv || !ev || !blob_parse_u64(sv, sv + sn, &s) ||
		    !blob_parse_u64(ev, ev + en, &e) || e < s || e == UINT64_MAX)
			goto bad;
		if (s < b->blob_size) {
			struct blob_range *t;

			if (e >= b->blob_size)
				e = b->blob_size - 1;
			t = realloc(b->pages, (b->npages + 1) * sizeof(*b->pages));
			if (!t)
				return -ENOMEM;
			b->pages = t;
			b->pages[b->npages].start = s;
			b->pages[b->npages].end = e + 1;
			b->npages++;
		}
		pos = rend + strlen("</PageRange>");
	}
	pos = xml;
	v = blob_xml_elem(&pos, NULL, "NextMarker", &n);
	if (v && n) {
		*marker = strndup(v, n);
		if (!*marker)
			return -ENOMEM;
	}
	return 0;
bad:
	dc_error("GET %s?comp=pagelist: a PageRange without a valid Start and End",
		 b->display);
	return -EPROTO;
}

/* Get Page Ranges (all pages of the list), sorted and merged. */
int blob_pagelist(struct blob_disk *b, CURL *e, char *errbuf)
{
	struct blob_membuf m = { .max = BLOB_PAGELIST_MAX };
	char *marker = NULL, *url = NULL;
	struct blob_resp r;
	int ret = 0;

	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, blob_mem_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &m);
	curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	do {
		char *esc = marker ? curl_easy_escape(e, marker, 0) : NULL;
		int n;

		free(url);
		n = asprintf(&url, "%s%scomp=pagelist%s%s", b->url,
			     strchr(b->url, '?') ? "&" : "?", esc ? "&marker=" : "",
			     esc ? esc : "");
		curl_free(esc);
		free(marker);
		marker = NULL;
		if (n < 0) {
			url = NULL;
			ret = -ENOMEM;
			break;
		}
		curl_easy_setopt(e, CURLOPT_URL, url);
		ret = blob_ctl_perform(b, e, "GET", url, 0, 0, &r, errbuf,
				       blob_mem_rewind, &m);
		if (ret)
			break;
		if (m.too_big) {
			dc_error(
				"GET %s?comp=pagelist: the page list is larger than %u MiB",
				b->display, BLOB_PAGELIST_MAX >> 20);
			ret = -EFBIG;
			break;
		}
		if (r.status != 200) {
			blob_status_error("GET", b->display, &r,
					  "200 OK for the page range list");
			ret = r.status == 403 ? -EACCES : -EIO;
			break;
		}
		ret = blob_parse_pagelist(b, m.p ? m.p : "", &marker);
	} while (!ret && marker);
	free(marker);
	free(url);
	free(m.p);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, NULL);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
	if (ret)
		return ret;
	/* Sort and merge touching ranges. */
	if (b->npages) {
		size_t j = 0;

		qsort(b->pages, b->npages, sizeof(*b->pages), blob_range_cmp);
		for (size_t i = 1; i < b->npages; i++) {
			if (b->pages[i].start <= b->pages[j].end) {
				if (b->pages[i].end > b->pages[j].end)
					b->pages[j].end = b->pages[i].end;
			} else {
				b->pages[++j] = b->pages[i];
			}
		}
		b->npages = j + 1;
	}
	b->page_blob = true;
	return 0;
}
