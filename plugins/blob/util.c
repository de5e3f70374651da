/* SPDX-License-Identifier: MIT */
/* blob: small helpers every other file of the plugin uses: status texts and
 * which failures are worth a retry, URLs taken apart, the backoff between
 * attempts, numbers in header values. The lowest file (blob.h lists the
 * files). */
#include "blob.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- Status, errors, URLs, backoff --------------------------------------------- */

const char *blob_status_text(long status)
{
	static const struct {
		long status;
		const char *text;
	} texts[] = {
		{ 200, "OK" },
		{ 206, "Partial Content" },
		{ 301, "Moved Permanently" },
		{ 302, "Found" },
		{ 303, "See Other" },
		{ 307, "Temporary Redirect" },
		{ 308, "Permanent Redirect" },
		{ 400, "Bad Request" },
		{ 401, "Unauthorized" },
		{ 403, "Forbidden" },
		{ 404, "Not Found" },
		{ 409, "Conflict" },
		{ 412, "Precondition Failed" },
		{ 416, "Range Not Satisfiable" },
		{ 429, "Too Many Requests" },
		{ 500, "Internal Server Error" },
		{ 502, "Bad Gateway" },
		{ 503, "Service Unavailable" },
		{ 504, "Gateway Timeout" },
	};

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		if (texts[i].status == status)
			return texts[i].text;
	return "unexpected status";
}

bool blob_status_retryable(long status)
{
	return status == 429 || status == 500 || status == 502 || status == 503 ||
	       status == 504;
}

bool blob_curl_retryable(CURLcode c)
{
	switch (c) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return true;
	default:
		return false;
	}
}

int blob_curl_errno(CURLcode c)
{
	switch (c) {
	case CURLE_OPERATION_TIMEDOUT:
		return ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
		return EHOSTUNREACH;
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
		return ECONNRESET;
	case CURLE_OUT_OF_MEMORY:
		return ENOMEM;
	default:
		return EIO;
	}
}

/* The URL with user info, query and fragment removed, for messages: a SAS
 * signature or a password must never reach a log. */
char *blob_display_url(const char *url)
{
	CURLU *u = curl_url();
	char *s = NULL, *out = NULL;

	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
		curl_url_set(u, CURLUPART_USER, NULL, 0);
		curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
		curl_url_set(u, CURLUPART_QUERY, NULL, 0);
		curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
		if (curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK)
			out = strdup(s);
		curl_free(s);
	}
	curl_url_cleanup(u);
	if (!out) {
		size_t n = strcspn(url, "?#");

		out = strndup(url, n);
	}
	return out;
}

/* scheme, host and path of a URL (malloc'd, free with curl_free). */
int blob_url_parts(const char *url, char **scheme, char **host, char **path, char **query)
{
	CURLU *u = curl_url();
	int ret = -EINVAL;

	*scheme = *host = *path = NULL;
	if (query)
		*query = NULL;
	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, host, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PATH, path, 0) == CURLUE_OK) {
		ret = 0;
		if (query && curl_url_get(u, CURLUPART_QUERY, query, 0) != CURLUE_OK)
			*query = NULL;
	}
	curl_url_cleanup(u);
	if (ret) {
		curl_free(*scheme);
		curl_free(*host);
		curl_free(*path);
		*scheme = *host = *path = NULL;
	}
	return ret;
}

void blob_set_last_error(struct blob_disk *b, const char *msg)
{
	pthread_mutex_lock(&b->msg_lock);
	snprintf(b->last_error, sizeof(b->last_error), "%s", msg);
	pthread_mutex_unlock(&b->msg_lock);
}

/* xorshift64*: jitter only, no need for anything stronger. */
static uint64_t blob_rand(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * UINT64_C(2685821657736338717);
}

/* Backoff before retry `attempt` (1-based): exponential, with jitter over its
 * upper half so that many clients do not retry in step. */
uint64_t blob_backoff_ms(uint64_t *rng, unsigned attempt)
{
	uint64_t d = BLOB_BACKOFF_MS;

	for (unsigned i = 1; i < attempt && d < BLOB_BACKOFF_MAX_MS; i++)
		d *= 2;
	if (d > BLOB_BACKOFF_MAX_MS)
		d = BLOB_BACKOFF_MAX_MS;
	return d / 2 + blob_rand(rng) % (d / 2 + 1);
}

bool blob_parse_u64(const char *s, const char *end, uint64_t *out)
{
	uint64_t v = 0;

	if (s == end)
		return false;
	for (; s < end; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return true;
}
