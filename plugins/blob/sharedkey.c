/* SPDX-License-Identifier: MIT */
/* blob: Azure's Shared Key scheme: the Authorization header that signs one
 * request (HMAC-SHA256 of the canonicalized request under the account key,
 * which azure.c loads). Below http.c, which adds it to the headers it builds
 * (blob.h lists the files). */
#include "blob.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef BLOB_HAVE_CRYPTO
#include <openssl/evp.h>
#include <openssl/hmac.h>
#endif

/* --- Shared Key signatures ------------------------------------------------------ */

#ifdef BLOB_HAVE_CRYPTO
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

static void blob_qparams_free(struct blob_qparam *qp, size_t nq)
{
	for (size_t i = 0; i < nq; i++) {
		curl_free(qp[i].name);
		curl_free(qp[i].value);
	}
	free(qp);
}

/* Percent-decode [s, s+n) with libcurl (free with curl_free); NULL when out of
 * memory. curl_easy_unescape() reads a length of 0 as "up to the NUL". */
static char *blob_unescape(const char *s, size_t n)
{
	return curl_easy_unescape(NULL, n ? s : "", (int)n, NULL);
}

/* The parameters of a query string, percent-decoded, names
 * lowercased, sorted by name then value. */
static int blob_qparams(const char *query, struct blob_qparam **out, size_t *nout)
{
	struct blob_qparam *qp = NULL;
	size_t nq = 0;

	for (const char *p = query; p && *p; p += *p == '&') {
		size_t n = strcspn(p, "&");
		const char *eq = memchr(p, '=', n);
		size_t kn = eq ? (size_t)(eq - p) : n;
		struct blob_qparam *t;

		if (n) {
			t = realloc(qp, (nq + 1) * sizeof(*qp));
			if (!t)
				goto oom;
			qp = t;
			qp[nq].name = blob_unescape(p, kn);
			qp[nq].value =
				blob_unescape(eq ? eq + 1 : p, eq ? n - kn - 1 : 0);
			nq++;
			if (!qp[nq - 1].name || !qp[nq - 1].value)
				goto oom;
			for (char *c = qp[nq - 1].name; *c; c++)
				if (*c >= 'A' && *c <= 'Z')
					*c = (char)(*c - 'A' + 'a');
		}
		p += n;
	}
	if (nq)
		qsort(qp, nq, sizeof(*qp), blob_qparam_cmp);
	*out = qp;
	*nout = nq;
	return 0;
oom:
	blob_qparams_free(qp, nq);
	return -ENOMEM;
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
	ret = blob_qparams(query, &qp, &nq);
	for (size_t i = 0; !ret && i < nq; i++) {
		if (i && !strcmp(qp[i].name, qp[i - 1].name)) {
			blob_str_adds(s, ",");
		} else {
			blob_str_adds(s, "\n");
			blob_str_adds(s, qp[i].name);
			blob_str_adds(s, ":");
		}
		blob_str_adds(s, qp[i].value);
	}
	blob_qparams_free(qp, nq);
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
