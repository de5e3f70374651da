/* SPDX-License-Identifier: MIT */
/* blob: Azure Blob storage. Whether a URL is Azure and its account, SAS or
 * Shared Key auth (the key from a file or the environment, each request
 * signed), and the page range list of a page blob (blob.h lists the files). */
#include "blob.h"

#include <errno.h>
#include <expat.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifdef BLOB_HAVE_CRYPTO
#include <openssl/evp.h>
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

/* --- Page range lists ----------------------------------------------------------- */

/* The parse of one Get Page Ranges answer:
 *	<PageList><PageRange><Start>0</Start><End>511</End></PageRange>...
 *	<ClearRange>...</ClearRange><NextMarker>...</NextMarker></PageList>
 * Ranges are appended to b->pages as they end; anything else is skipped. */
enum blob_pl_text { BLOB_PL_NONE, BLOB_PL_START, BLOB_PL_END, BLOB_PL_MARKER };

struct blob_pl {
	struct blob_disk *b;
	XML_Parser xp;
	unsigned depth;
	bool in_range, has_start, has_end;
	enum blob_pl_text text; /* the element whose text is being collected */
	char num[24];		/* Start or End, digits only */
	size_t numlen;
	bool numlong; /* more text than any number has: invalid */
	uint64_t start, end;
	char *marker;
	size_t markerlen, cap;
	int err; /* -EPROTO or -ENOMEM, after dc_error() */
};

#define BLOB_MARKER_MAX 4096u /* an opaque continuation token */

static void blob_pl_fail(struct blob_pl *pl, int err, const char *what)
{
	if (!pl->err)
		pl->err = dc_fail(err, "GET %s?comp=pagelist: %s", pl->b->display, what);
	XML_StopParser(pl->xp, XML_FALSE);
}

/* Take in one <PageRange>, cut to the blob's size. */
static void blob_pl_range(struct blob_pl *pl)
{
	struct blob_disk *b = pl->b;
	uint64_t s = pl->start, e = pl->end;

	if (!pl->has_start || !pl->has_end || e < s || e == UINT64_MAX) {
		blob_pl_fail(pl, -EPROTO, "a PageRange without a valid Start and End");
		return;
	}
	if (s >= b->blob_size)
		return;
	if (e >= b->blob_size)
		e = b->blob_size - 1;
	if (b->npages == pl->cap) {
		size_t cap = pl->cap ? pl->cap * 2 : 64;
		struct blob_range *t = realloc(b->pages, cap * sizeof(*t));

		if (!t) {
			blob_pl_fail(pl, -ENOMEM, "out of memory for the page ranges");
			return;
		}
		b->pages = t;
		pl->cap = cap;
	}
	b->pages[b->npages++] = (struct blob_range){ s, e + 1 };
}

static void XMLCALL blob_pl_open(void *arg, const XML_Char *name, const XML_Char **attr)
{
	struct blob_pl *pl = arg;
	unsigned d = ++pl->depth;

	(void)attr;
	pl->text = BLOB_PL_NONE;
	pl->numlen = 0;
	pl->numlong = false;
	if (d == 1 && strcmp(name, "PageList")) {
		blob_pl_fail(pl, -EPROTO, "the answer is not a PageList");
	} else if (d == 2 && !strcmp(name, "PageRange")) {
		pl->in_range = true;
		pl->has_start = pl->has_end = false;
	} else if (d == 2 && !strcmp(name, "NextMarker")) {
		pl->text = BLOB_PL_MARKER;
		pl->markerlen = 0;
	} else if (d == 3 && pl->in_range && !strcmp(name, "Start")) {
		pl->text = BLOB_PL_START;
	} else if (d == 3 && pl->in_range && !strcmp(name, "End")) {
		pl->text = BLOB_PL_END;
	}
}

static void XMLCALL blob_pl_close(void *arg, const XML_Char *name)
{
	struct blob_pl *pl = arg;
	uint64_t v = 0;
	bool ok = !pl->numlong && blob_parse_u64(pl->num, pl->num + pl->numlen, &v);

	(void)name;
	if (pl->text == BLOB_PL_START) {
		pl->start = v;
		pl->has_start = ok;
	} else if (pl->text == BLOB_PL_END) {
		pl->end = v;
		pl->has_end = ok;
	} else if (pl->depth == 2 && pl->in_range) {
		blob_pl_range(pl);
		pl->in_range = false;
	}
	pl->text = BLOB_PL_NONE;
	pl->depth--;
}

static void XMLCALL blob_pl_chars(void *arg, const XML_Char *s, int len)
{
	struct blob_pl *pl = arg;
	size_t n = (size_t)len;

	if (pl->text == BLOB_PL_START || pl->text == BLOB_PL_END) {
		if (n > sizeof(pl->num) - pl->numlen) {
			pl->numlong = true;
			return;
		}
		memcpy(pl->num + pl->numlen, s, n);
		pl->numlen += n;
	} else if (pl->text == BLOB_PL_MARKER) {
		if (n > BLOB_MARKER_MAX - pl->markerlen) {
			blob_pl_fail(pl, -EPROTO, "a NextMarker longer than 4 KiB");
			return;
		}
		if (!pl->marker && !(pl->marker = malloc(BLOB_MARKER_MAX + 1))) {
			blob_pl_fail(pl, -ENOMEM, "out of memory");
			return;
		}
		memcpy(pl->marker + pl->markerlen, s, n);
		pl->markerlen += n;
		pl->marker[pl->markerlen] = '\0';
	}
}

/* Azure never sends a DTD; refusing one keeps entity expansion out. */
static void XMLCALL blob_pl_doctype(void *arg, const XML_Char *name,
				    const XML_Char *sysid, const XML_Char *pubid,
				    int internal)
{
	(void)name;
	(void)sysid;
	(void)pubid;
	(void)internal;
	blob_pl_fail(arg, -EPROTO, "the answer has a DTD");
}

/* Parse one page of a Get Page Ranges answer with expat; returns the
 * NextMarker (malloc'd) or NULL in *marker. */
static int blob_parse_pagelist(struct blob_disk *b, const char *xml, size_t len,
			       size_t *cap, char **marker)
{
	struct blob_pl pl = { .b = b, .cap = *cap };
	int ret;

	*marker = NULL;
	pl.xp = XML_ParserCreate(NULL);
	if (!pl.xp)
		return dc_fail(-ENOMEM, "cannot create an XML parser");
	XML_SetUserData(pl.xp, &pl);
	XML_SetElementHandler(pl.xp, blob_pl_open, blob_pl_close);
	XML_SetCharacterDataHandler(pl.xp, blob_pl_chars);
	XML_SetStartDoctypeDeclHandler(pl.xp, blob_pl_doctype);
	if (XML_Parse(pl.xp, xml, (int)len, XML_TRUE) != XML_STATUS_OK && !pl.err) {
		if (!len || XML_GetErrorCode(pl.xp) == XML_ERROR_NO_ELEMENTS)
			blob_pl_fail(&pl, -EPROTO, "the answer is not a PageList");
		else
			pl.err = dc_fail(-EPROTO,
					 "GET %s?comp=pagelist: the answer is not "
					 "well-formed XML (line %lu: %s)",
					 b->display,
					 (unsigned long)XML_GetCurrentLineNumber(pl.xp),
					 XML_ErrorString(XML_GetErrorCode(pl.xp)));
	}
	XML_ParserFree(pl.xp);
	*cap = pl.cap;
	ret = pl.err;
	if (!ret && pl.markerlen)
		*marker = pl.marker;
	else
		free(pl.marker);
	return ret;
}

static int blob_range_cmp(const void *a, const void *b)
{
	const struct blob_range *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* Get Page Ranges (all pages of the list), sorted and merged. */
int blob_pagelist(struct blob_disk *b, CURL *e, char *errbuf)
{
	struct blob_membuf m = { .max = BLOB_PAGELIST_MAX };
	char *marker = NULL, *url = NULL;
	struct blob_resp r;
	size_t cap = 0;
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
					  "200 OK for the page range list", "");
			ret = r.status == 403 ? -EACCES : -EIO;
			break;
		}
		ret = blob_parse_pagelist(b, m.p ? m.p : "", m.len, &cap, &marker);
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
