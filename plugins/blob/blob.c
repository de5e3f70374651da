/* SPDX-License-Identifier: MIT */
/* blob: a read-only disk over HTTP(S) or Azure Blob storage, with libcurl
 * (reference openvmm-storage.md §2.4, made stricter and faster).
 *
 *	blob:flat:URL[;opt...]	the blob is the disk (a partial last sector is dropped)
 *	blob:vhd1:URL[;opt...]	the blob is a fixed VHD; its footer is checked and hidden
 *
 * Open: HEAD the URL (Content-Length required; at most 5 redirects, never from
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
 * at a time. Only a 206 whose Content-Range names exactly the
 * bytes asked for, with exactly that many bytes of body, is success: a 200 (the
 * whole blob), a 416, a short or long body, a dropped connection are all errors
 * naming the status and the URL without its query (which may hold a SAS
 * signature). 5xx answers, 429 and connection failures are retried with
 * exponential backoff and jitter, a bounded number of times; every request has a
 * timeout. When the server gave a strong ETag, reads carry If-Match, so a blob
 * that changed after open fails reads instead of mixing two versions (page
 * ranges are listed once, at open: the blob is expected not to change).
 * With ";readahead=SIZE", sequential small reads are served from a few windows
 * of SIZE bytes fetched ahead. */
#include <diskcore/plugin.h>

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#ifdef BLOB_HAVE_CRYPTO
#include <openssl/evp.h>
#include <openssl/hmac.h>
#endif

#define BLOB_SECTOR 512u
#define BLOB_PHYS_SECTOR 4096u
#define BLOB_FOOTER 512u
#define BLOB_MAX_REDIRECTS 5
#define BLOB_DEF_TIMEOUT_MS 30000u
#define BLOB_MAX_TIMEOUT_MS 3600000u
#define BLOB_CONNECT_TIMEOUT_MS 10000u
#define BLOB_DEF_RETRIES 4u
#define BLOB_MAX_RETRIES 20u
#define BLOB_DEF_CONNECTIONS 8u
#define BLOB_MAX_CONNECTIONS 64u
#define BLOB_DEF_SPLIT (1u << 20)
#define BLOB_MIN_SPLIT (64u << 10)
#define BLOB_MAX_SPLIT (256u << 20)
#define BLOB_BACKOFF_MS 50u
#define BLOB_BACKOFF_MAX_MS 5000u
/* Page ranges closer than this are fetched as one request: the gap reads as
 * zeroes from the service too, and one request costs more than 64 KiB. */
#define BLOB_MERGE_GAP (64u << 10)
#define BLOB_PAGELIST_MAX (64u << 20)
#define BLOB_AZURE_VERSION "2021-12-02"
#define BLOB_USER_AGENT "diskcore-blob/0.1"
#define BLOB_MSG 320

enum blob_kind { BLOB_FLAT, BLOB_VHD1 };
enum blob_auth { BLOB_AUTH_NONE, BLOB_AUTH_SAS, BLOB_AUTH_SHAREDKEY };

/* What a response said, from its header lines. */
struct blob_resp {
	long status;
	int64_t content_length; /* -1: none */
	bool has_range;
	uint64_t range_start, range_end, range_total;
	bool range_bad; /* a Content-Range that did not parse */
	bool no_ranges; /* Accept-Ranges: none */
	char blob_type[16];
	char etag[96];
	char error_code[48]; /* x-ms-error-code */
};

/* Why a read attempt failed, beyond libcurl's own code. */
enum blob_fail {
	BLOB_OK = 0,
	BLOB_F_STATUS, /* not 206 */
	BLOB_F_RANGE,  /* 206 without the Content-Range asked for */
	BLOB_F_LONG,   /* more body than asked for */
	BLOB_F_SHORT,  /* less body than asked for */
	BLOB_F_CURL,   /* transport: see code */
};

struct blob_disk;
struct blob_rctx;

/* A reusable connection slot: one easy handle and its error buffer. */
struct blob_hdrs;
struct blob_conn {
	CURL *easy;
	struct blob_conn *next;
	struct blob_hdrs *hdrs;
	char errbuf[CURL_ERROR_SIZE];
};

/* One Range GET: a piece of a read request. */
struct blob_xfer {
	struct blob_xfer *next; /* pending list */
	struct blob_disk *b;
	struct blob_rctx *rc; /* NULL: a control-path read */
	struct dc_buf buf;    /* where the body goes */
	uint64_t off, len, got;
	unsigned attempt;
	enum blob_fail fail;
	CURLcode code;
	bool checked; /* status and Content-Range looked at */
	struct blob_conn *conn;
	struct blob_resp resp;
};

/* Per-request scratch: the first piece lives here, more are allocated. */
struct blob_rctx {
	struct dc_req *req;
	struct blob_rctx *ra_next; /* waiting for the same read-ahead window */
	atomic_uint pending;
	atomic_int result;
	int detail;
	struct blob_xfer *extra;
	struct blob_xfer x0;
};

struct blob_range {
	uint64_t start, end; /* [start, end) */
};

/* Read-ahead: a few windows of `readahead` bytes, aligned to their size, filled
 * by one Range GET each when reads run sequentially. */
#define BLOB_RA_WINDOWS 4
#define BLOB_RA_MAX (16u << 20)

enum blob_ra_state { BLOB_RA_EMPTY, BLOB_RA_LOADING, BLOB_RA_READY };

struct blob_ra_win {
	enum blob_ra_state state;
	uint64_t off, len;
	uint64_t used; /* LRU stamp */
	uint8_t *data;
	struct iovec iov;
	struct blob_rctx *waiters;
	struct blob_xfer x;
};

struct blob_disk {
	enum blob_kind kind;
	char *url;     /* the final URL, after redirects: reads go here */
	char *display; /* url without user info, query or fragment */
	uint64_t blob_size, disk_size;
	uint8_t disk_id[16];
	char blob_type[16];
	char etag[96]; /* strong ETag for If-Match, or "" */

	/* Options. */
	char *cafile, *cert, *key;
	long timeout_ms;
	unsigned retries, connections;
	uint64_t split;

	/* Azure. */
	bool azure;
	enum blob_auth auth;
	char account[64];
	unsigned char sk[128];
	int sklen;
	struct blob_range *pages; /* page blobs: ranges that hold data, sorted */
	size_t npages;
	bool page_blob;

	/* The I/O thread and what it shares with submitters. The thread drives
	 * curl's socket interface from an epoll set, so each round costs one
	 * epoll_wait and curl only touches the sockets that are ready. */
	CURLM *multi;
	int epfd, evfd;
	int64_t deadline_ms; /* curl's timer, CLOCK_MONOTONIC ms; -1: none */
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	struct blob_xfer *pend_head, **pend_tail;
	bool stop;
	bool woken; /* a wakeup is on its way, or the thread will look anyway */
	/* Owned by the I/O thread. */
	struct blob_conn *idle;
	unsigned active;
	uint64_t rng;

	/* Read-ahead (readahead=SIZE; 0: off), under ra_lock. */
	uint64_t ra;
	pthread_mutex_t ra_lock;
	struct blob_ra_win win[BLOB_RA_WINDOWS];
	uint64_t ra_next, ra_clock;

	/* Statistics for describe(). */
	atomic_uint_fast64_t nreq, nretry, nerr, nbytes, nra_hits;
	pthread_mutex_t msg_lock;
	char last_error[BLOB_MSG];
};

static pthread_once_t blob_curl_once = PTHREAD_ONCE_INIT;
static CURLcode blob_curl_init_rc;

static void blob_curl_init(void)
{
	blob_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* --- Small helpers ------------------------------------------------------------- */

static const char *blob_status_text(long status)
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

static bool blob_status_retryable(long status)
{
	return status == 429 || status == 500 || status == 502 || status == 503 ||
	       status == 504;
}

static bool blob_curl_retryable(CURLcode c)
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

static int blob_curl_errno(CURLcode c)
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
static char *blob_display_url(const char *url)
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
static int blob_url_parts(const char *url, char **scheme, char **host, char **path,
			  char **query)
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

static void blob_set_last_error(struct blob_disk *b, const char *msg)
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
static uint64_t blob_backoff_ms(uint64_t *rng, unsigned attempt)
{
	uint64_t d = BLOB_BACKOFF_MS;

	for (unsigned i = 1; i < attempt && d < BLOB_BACKOFF_MAX_MS; i++)
		d *= 2;
	if (d > BLOB_BACKOFF_MAX_MS)
		d = BLOB_BACKOFF_MAX_MS;
	return d / 2 + blob_rand(rng) % (d / 2 + 1);
}

/* --- Response headers ---------------------------------------------------------- */

static void blob_resp_reset(struct blob_resp *r)
{
	memset(r, 0, sizeof(*r));
	r->content_length = -1;
}

static bool blob_parse_u64(const char *s, const char *end, uint64_t *out)
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

/* --- Azure Shared Key ---------------------------------------------------------- */

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
static int blob_sharedkey_header(const struct blob_disk *b, const char *verb,
				 const char *url, const char *range, const char *if_match,
				 const char *date, char *out, size_t outlen)
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
#endif

/* The headers of one request, in storage the caller owns: curl only reads the
 * list, so no allocation per request. */
struct blob_hdrs {
	struct curl_slist node[6];
	char range[64]; /* "Range: bytes=A-B" */
	char ifmatch[112];
	char date[56];
	char auth[192];
};

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
static int blob_headers(const struct blob_disk *b, const char *verb, const char *url,
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
#ifdef BLOB_HAVE_CRYPTO
			ret = blob_sharedkey_header(
				b, verb, url, len ? h->range + strlen("Range: ") : NULL,
				im, date, h->auth, sizeof(h->auth));
#else
			(void)verb;
			(void)url;
			ret = -EOPNOTSUPP;
#endif
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
static CURLcode blob_easy_common(const struct blob_disk *b, CURL *e, char *errbuf)
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

static size_t blob_xfer_write(char *data, size_t size, size_t n, void *arg);

static struct blob_conn *blob_conn_new(const struct blob_disk *b)
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

static void blob_conn_free(struct blob_conn *c)
{
	curl_easy_cleanup(c->easy);
	free(c);
}

/* --- Range GETs --------------------------------------------------------------- */

/* Status and Content-Range, once the headers are in. */
static enum blob_fail blob_xfer_check_head(const struct blob_xfer *x)
{
	const struct blob_resp *r = &x->resp;

	if (r->status != 206)
		return BLOB_F_STATUS;
	if (!r->has_range || r->range_bad || r->range_start != x->off ||
	    r->range_end != x->off + x->len - 1)
		return BLOB_F_RANGE;
	return BLOB_OK;
}

static size_t blob_xfer_write(char *data, size_t size, size_t n, void *arg)
{
	struct blob_xfer *x = arg;
	size_t len = size * n;

	if (!x->checked) {
		x->checked = true;
		x->fail = blob_xfer_check_head(x);
	}
	if (x->fail)
		return 0; /* stop reading a body we will not use */
	if (len > x->len - x->got) {
		x->fail = BLOB_F_LONG;
		return 0;
	}
	dc_buf_copy_to(&x->buf, x->got, data, len);
	x->got += len;
	return len;
}

/* Per-attempt setup of a connection slot for x. */
static int blob_xfer_prepare(struct blob_disk *b, struct blob_xfer *x)
{
	CURL *e = x->conn->easy;
	int ret;

	x->got = 0;
	x->fail = BLOB_OK;
	x->code = CURLE_OK;
	x->checked = false;
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

/* How an attempt ended: 0, or -errno; *retry when another attempt may help.
 * Fills msg for a failure. */
static int blob_xfer_classify(struct blob_disk *b, struct blob_xfer *x, bool *retry,
			      char *msg, size_t msglen)
{
	const struct blob_resp *r = &x->resp;

	*retry = false;
	if (x->code == CURLE_OK || (x->code == CURLE_WRITE_ERROR && x->fail)) {
		if (!x->fail && !x->checked)
			x->fail = blob_xfer_check_head(x); /* no body at all */
		if (!x->fail && x->got != x->len)
			x->fail = BLOB_F_SHORT;
		if (!x->fail)
			return 0;
	} else {
		x->fail = BLOB_F_CURL;
	}
	switch (x->fail) {
	case BLOB_F_STATUS:
		*retry = blob_status_retryable(r->status);
		snprintf(
			msg, msglen,
			"GET %s bytes=%llu-%llu: HTTP %ld (%s%s%s), expected 206 Partial "
			"Content%s",
			b->display, (unsigned long long)x->off,
			(unsigned long long)(x->off + x->len - 1), r->status,
			blob_status_text(r->status), r->error_code[0] ? ", " : "",
			r->error_code,
			r->status == 200 ? ": the server ignored the Range header" :
			r->status == 412 ? ": the blob changed since it was opened" :
					   "");
		return r->status == 412 ? -ESTALE : -EIO;
	case BLOB_F_RANGE:
		if (r->has_range && !r->range_bad)
			snprintf(msg, msglen,
				 "GET %s: 206 for bytes %llu-%llu, asked for %llu-%llu",
				 b->display, (unsigned long long)r->range_start,
				 (unsigned long long)r->range_end,
				 (unsigned long long)x->off,
				 (unsigned long long)(x->off + x->len - 1));
		else
			snprintf(msg, msglen,
				 "GET %s bytes=%llu-%llu: 206 with %s Content-Range",
				 b->display, (unsigned long long)x->off,
				 (unsigned long long)(x->off + x->len - 1),
				 r->has_range ? "an invalid" : "no");
		return -EPROTO;
	case BLOB_F_LONG:
		snprintf(
			msg, msglen,
			"GET %s bytes=%llu-%llu: the server sent more than the %llu bytes "
			"asked for",
			b->display, (unsigned long long)x->off,
			(unsigned long long)(x->off + x->len - 1),
			(unsigned long long)x->len);
		return -EPROTO;
	case BLOB_F_SHORT:
		snprintf(msg, msglen,
			 "GET %s bytes=%llu-%llu: short body, %llu of %llu bytes",
			 b->display, (unsigned long long)x->off,
			 (unsigned long long)(x->off + x->len - 1),
			 (unsigned long long)x->got, (unsigned long long)x->len);
		return -EPROTO;
	default:
		*retry = blob_curl_retryable(x->code);
		snprintf(msg, msglen, "GET %s bytes=%llu-%llu: %s%s%s%s", b->display,
			 (unsigned long long)x->off,
			 (unsigned long long)(x->off + x->len - 1),
			 curl_easy_strerror(x->code), x->conn->errbuf[0] ? " (" : "",
			 x->conn->errbuf, x->conn->errbuf[0] ? ")" : "");
		return -blob_curl_errno(x->code);
	}
}

/* --- The I/O thread ------------------------------------------------------------ */

static void blob_wake(struct blob_disk *b)
{
	uint64_t one = 1;

	while (write(b->evfd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

/* Hand pieces to the I/O thread. One wakeup per batch: the thread clears
 * `woken` when it takes the list, and from the thread itself (a completion
 * callback that submits again) no wakeup is needed at all, since it looks at
 * the list again before it polls. */
static void blob_enqueue(struct blob_disk *b, struct blob_xfer *head,
			 struct blob_xfer **tail)
{
	bool wake;

	pthread_mutex_lock(&b->lock);
	*b->pend_tail = head;
	b->pend_tail = tail;
	wake = !b->woken;
	b->woken = true;
	pthread_mutex_unlock(&b->lock);
	if (wake && !pthread_equal(pthread_self(), b->thread))
		blob_wake(b);
}

static void blob_ra_loaded(struct blob_disk *b, struct blob_xfer *x, int result);

static void blob_piece_done(struct blob_disk *b, struct blob_xfer *x, int result)
{
	struct blob_rctx *rc = x->rc;
	int expected = 0;

	if (!rc) {
		blob_ra_loaded(b, x, result);
		return;
	}
	if (result) {
		atomic_fetch_add(&b->nerr, 1);
		if (atomic_compare_exchange_strong(&rc->result, &expected, DC_E_IO))
			rc->detail = -result;
	} else {
		atomic_fetch_add(&b->nbytes, x->len);
	}
	if (atomic_fetch_sub(&rc->pending, 1) == 1) {
		struct dc_req *req = rc->req;
		int res = atomic_load(&rc->result);

		free(rc->extra);
		dc_complete_detail(req, res, res ? rc->detail : 0);
	}
}

static void blob_retry_fire(void *arg)
{
	struct blob_xfer *x = arg;

	x->next = NULL;
	blob_enqueue(x->b, x, &x->next);
}

/* The I/O thread: start pending pieces while there are free connection slots. */
static void blob_start(struct blob_disk *b, struct blob_xfer *x)
{
	int ret;

	x->conn = b->idle;
	if (x->conn)
		b->idle = x->conn->next;
	else
		x->conn = blob_conn_new(b);
	if (!x->conn) {
		blob_piece_done(b, x, -ENOMEM);
		return;
	}
	ret = blob_xfer_prepare(b, x);
	if (!ret && curl_multi_add_handle(b->multi, x->conn->easy) != CURLM_OK)
		ret = -ENOMEM;
	if (ret) {
		x->conn->next = b->idle;
		b->idle = x->conn;
		blob_piece_done(b, x, ret);
		return;
	}
	atomic_fetch_add(&b->nreq, 1);
	b->active++;
}

static void blob_finish(struct blob_disk *b, CURL *easy, CURLcode code)
{
	struct blob_xfer *x = NULL;
	char msg[BLOB_MSG];
	bool retry;
	int ret;

	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
	curl_multi_remove_handle(b->multi, easy);
	b->active--;
	x->code = code;
	ret = blob_xfer_classify(b, x, &retry, msg, sizeof(msg));
	x->conn->next = b->idle;
	b->idle = x->conn;
	x->conn = NULL;
	if (!ret) {
		blob_piece_done(b, x, 0);
		return;
	}
	if (retry && x->attempt < b->retries) {
		uint64_t ms = blob_backoff_ms(&b->rng, ++x->attempt);

		dc_debug("blob: %s; retry %u of %u in %llu ms", msg, x->attempt,
			 b->retries, (unsigned long long)ms);
		atomic_fetch_add(&b->nretry, 1);
		if (dc_timer_after(ms * 1000000u, blob_retry_fire, x) == 0)
			return;
	}
	dc_debug("blob: %s", msg);
	blob_set_last_error(b, msg);
	blob_piece_done(b, x, ret);
}

static int64_t blob_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* curl: watch (or stop watching) a socket. */
static int blob_socket_cb(CURL *e, curl_socket_t s, int what, void *arg, void *sockp)
{
	struct blob_disk *b = arg;
	struct epoll_event ev = { .data.fd = s };

	(void)e;
	(void)sockp;
	if (what == CURL_POLL_REMOVE) {
		epoll_ctl(b->epfd, EPOLL_CTL_DEL, s, NULL);
		return 0;
	}
	ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) |
		    (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
	if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, s, &ev) < 0 &&
	    epoll_ctl(b->epfd, EPOLL_CTL_ADD, s, &ev) < 0)
		return -1;
	return 0;
}

/* curl: call back with CURL_SOCKET_TIMEOUT in timeout_ms (-1: never). */
static int blob_timer_cb(CURLM *m, long timeout_ms, void *arg)
{
	struct blob_disk *b = arg;

	(void)m;
	b->deadline_ms = timeout_ms < 0 ? -1 : blob_now_ms() + timeout_ms;
	return 0;
}

static void *blob_thread(void *arg)
{
	struct blob_disk *b = arg;
	struct blob_xfer *held = NULL, **held_tail = &held;
	struct epoll_event evs[64];

	for (;;) {
		struct blob_xfer *list;
		struct CURLMsg *m;
		int running, left, n, wait;
		bool stop, more;
		int64_t now;

		pthread_mutex_lock(&b->lock);
		list = b->pend_head;
		b->pend_head = NULL;
		b->pend_tail = &b->pend_head;
		b->woken = false;
		stop = b->stop;
		pthread_mutex_unlock(&b->lock);
		if (list) {
			*held_tail = list;
			while (*held_tail)
				held_tail = &(*held_tail)->next;
		}
		if (stop && !b->active && !held)
			break;
		/* Only `connections` requests at a time: the rest wait here, so
		 * their timeouts do not run while they queue. */
		while (held && b->active < b->connections) {
			struct blob_xfer *x = held;

			held = x->next;
			if (!held)
				held_tail = &held;
			x->next = NULL;
			blob_start(b, x);
		}
		now = blob_now_ms();
		wait = b->deadline_ms < 0	   ? 1000 :
		       b->deadline_ms <= now	   ? 0 :
		       b->deadline_ms - now > 1000 ? 1000 :
						     (int)(b->deadline_ms - now);
		pthread_mutex_lock(&b->lock);
		more = b->pend_head != NULL;
		pthread_mutex_unlock(&b->lock);
		if (more || (held && b->active < b->connections))
			wait = 0;
		n = epoll_wait(b->epfd, evs, 64, wait);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd, mask = 0;
			uint64_t v;

			if (fd == b->evfd) {
				while (read(b->evfd, &v, sizeof(v)) < 0 && errno == EINTR)
					;
				continue;
			}
			if (evs[i].events & EPOLLIN)
				mask |= CURL_CSELECT_IN;
			if (evs[i].events & EPOLLOUT)
				mask |= CURL_CSELECT_OUT;
			if (evs[i].events & (EPOLLERR | EPOLLHUP))
				mask |= CURL_CSELECT_ERR;
			curl_multi_socket_action(b->multi, fd, mask, &running);
		}
		if (b->deadline_ms >= 0 && b->deadline_ms <= blob_now_ms())
			curl_multi_socket_action(b->multi, CURL_SOCKET_TIMEOUT, 0,
						 &running);
		while ((m = curl_multi_info_read(b->multi, &left)))
			if (m->msg == CURLMSG_DONE)
				blob_finish(b, m->easy_handle, m->data.result);
	}
	return NULL;
}

/* --- Read-ahead ---------------------------------------------------------------- */

/* Copy a waiting or hitting request's bytes out of a ready window. */
static void blob_ra_copy(const struct blob_ra_win *w, struct dc_req *req)
{
	uint64_t off = req->sector * BLOB_SECTOR;

	dc_buf_copy_to(&req->buf, 0, w->data + (off - w->off), req->buf.len);
}

/* A window load finished (I/O thread): serve or fail its waiters. */
static void blob_ra_loaded(struct blob_disk *b, struct blob_xfer *x, int result)
{
	struct blob_ra_win *w =
		(struct blob_ra_win *)((char *)x - offsetof(struct blob_ra_win, x));
	struct blob_rctx *list, *next;

	pthread_mutex_lock(&b->ra_lock);
	list = w->waiters;
	w->waiters = NULL;
	w->state = result ? BLOB_RA_EMPTY : BLOB_RA_READY;
	if (result) {
		atomic_fetch_add(&b->nerr, 1);
	} else {
		atomic_fetch_add(&b->nbytes, x->len);
		for (struct blob_rctx *rc = list; rc; rc = rc->ra_next)
			blob_ra_copy(w, rc->req);
	}
	pthread_mutex_unlock(&b->ra_lock);
	for (struct blob_rctx *rc = list; rc; rc = next) {
		next = rc->ra_next;
		dc_complete_detail(rc->req, result ? DC_E_IO : 0, result ? -result : 0);
	}
}

static struct blob_ra_win *blob_ra_find(struct blob_disk *b, uint64_t woff)
{
	for (unsigned i = 0; i < BLOB_RA_WINDOWS; i++)
		if (b->win[i].state != BLOB_RA_EMPTY && b->win[i].off == woff)
			return &b->win[i];
	return NULL;
}

/* Start loading the window at woff into the least recently used idle slot;
 * NULL when every slot is busy loading. Called with ra_lock held; the caller
 * enqueues *load after unlocking. */
static struct blob_ra_win *blob_ra_start(struct blob_disk *b, uint64_t woff,
					 struct blob_xfer **load)
{
	struct blob_ra_win *w = NULL;

	for (unsigned i = 0; i < BLOB_RA_WINDOWS; i++) {
		struct blob_ra_win *c = &b->win[i];

		if (c->state != BLOB_RA_LOADING && (!w || c->used < w->used))
			w = c;
	}
	if (!w)
		return NULL;
	if (!w->data && !(w->data = malloc(b->ra)))
		return NULL;
	w->state = BLOB_RA_LOADING;
	w->off = woff;
	w->len = b->disk_size - woff < b->ra ? b->disk_size - woff : b->ra;
	w->used = ++b->ra_clock;
	w->waiters = NULL;
	w->iov.iov_base = w->data;
	w->iov.iov_len = (size_t)w->len;
	memset(&w->x, 0, sizeof(w->x));
	w->x.b = b;
	w->x.off = woff;
	w->x.len = w->len;
	w->x.buf.iov = &w->iov;
	w->x.buf.iovcnt = 1;
	w->x.buf.len = (size_t)w->len;
	*load = &w->x;
	return w;
}

/* Serve a small read from the read-ahead windows, or start windows when reads
 * run sequentially. Returns false to leave the read to the normal path. */
static bool blob_ra_read(struct blob_disk *b, struct dc_req *req, uint64_t off,
			 uint64_t len)
{
	struct blob_rctx *rc = req->ctx;
	uint64_t woff = off / b->ra * b->ra, nwoff = woff + b->ra;
	struct blob_xfer *loads[2] = { 0 };
	struct blob_ra_win *w;
	bool seq, hit = false, taken = false;

	if (off + len > nwoff)
		return false; /* straddles two windows: one normal request */
	pthread_mutex_lock(&b->ra_lock);
	seq = off == b->ra_next;
	b->ra_next = off + len;
	w = blob_ra_find(b, woff);
	if (!w && seq)
		w = blob_ra_start(b, woff, &loads[0]);
	if (w) {
		w->used = ++b->ra_clock;
		if (w->state == BLOB_RA_READY) {
			blob_ra_copy(w, req);
			hit = true;
		} else {
			rc->req = req;
			rc->ra_next = w->waiters;
			w->waiters = rc;
		}
		taken = true;
		/* Keep one window ahead of a sequential reader. */
		if (seq && nwoff < b->disk_size && !blob_ra_find(b, nwoff))
			blob_ra_start(b, nwoff, &loads[1]);
	}
	pthread_mutex_unlock(&b->ra_lock);
	for (int i = 0; i < 2; i++)
		if (loads[i]) {
			loads[i]->next = NULL;
			blob_enqueue(b, loads[i], &loads[i]->next);
		}
	if (hit) {
		atomic_fetch_add(&b->nra_hits, 1);
		dc_complete(req, 0);
	}
	return taken;
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

/* Emit the pieces of [off, off+len): split at b->split. */
static size_t blob_plan_seg(const struct blob_disk *b, uint64_t off, uint64_t len,
			    struct blob_xfer *out, size_t n, size_t cap, uint64_t base)
{
	while (len) {
		uint64_t l = len < b->split ? len : b->split;

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

/* The Range GETs a read of [off, off+len) needs; fills out[0..cap) and, for a
 * page blob when zero is set, zeroes the parts of buf that no page covers.
 * Returns how many pieces there are. */
static size_t blob_plan(const struct blob_disk *b, uint64_t off, uint64_t len,
			struct blob_xfer *out, size_t cap, const struct dc_buf *zero)
{
	uint64_t end = off + len, pos = off;
	size_t n = 0;

	if (!b->page_blob)
		return blob_plan_seg(b, off, len, out, 0, cap, off);
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
		n = blob_plan_seg(b, s, e - s, out, n, cap, off);
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
	n = blob_plan(b, off, len, NULL, 0, NULL);
	if (n == 0) {
		dc_buf_zero(&req->buf, 0, req->buf.len);
		dc_complete(req, 0);
		return;
	}
	if (b->ra && len < b->ra && blob_ra_read(b, req, off, len))
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
	blob_plan(b, off, len, xs, n, &req->buf);
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

/* --- Open: HEAD, page list, footer --------------------------------------------- */

/* Control path only: wait out a retry's backoff. */
static void blob_sleep_ms(uint64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* One blocking request on the control path, with the retry policy. The caller
 * has set the method, URL and body handling on e; headers are rebuilt for each
 * attempt (a Shared Key signature carries the time). Returns 0 with *resp filled
 * (any status), or -errno after dc_error(). */
static int blob_ctl_perform(struct blob_disk *b, CURL *e, const char *verb,
			    const char *url, uint64_t off, uint64_t len,
			    struct blob_resp *resp, char *errbuf,
			    void (*rewind)(void *arg), void *arg)
{
	char *disp = blob_display_url(url);
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
		{
			uint64_t ms = blob_backoff_ms(&b->rng, attempt + 1);

			dc_debug(
				"blob: %s %s: attempt %u failed (%s, HTTP %ld); retry in "
				"%llu ms",
				verb, disp ? disp : "?", attempt + 1,
				curl_easy_strerror(c), resp->status,
				(unsigned long long)ms);
			blob_sleep_ms(ms);
		}
	}
	free(disp);
	return ret;
}

/* A clear message for a control-path status that is not the one expected. */
static void blob_status_error(const char *verb, const char *disp,
			      const struct blob_resp *r, const char *expected)
{
	const char *hint = "";

	if (r->status == 403 || r->status == 401)
		hint = ": access denied; check the SAS token (expiry, permissions, "
		       "signature) or the shared key";
	else if (r->status == 404)
		hint = ": no such blob";
	dc_error("%s %s: HTTP %ld (%s%s%s), expected %s%s", verb, disp, r->status,
		 blob_status_text(r->status), r->error_code[0] ? ", " : "", r->error_code,
		 expected, hint);
}

static bool blob_scheme_is(const char *url, const char *scheme)
{
	size_t n = strlen(scheme);

	return !strncasecmp(url, scheme, n) && url[n] == ':';
}

/* HEAD the URL, following redirects: size, blob type, ETag, final URL. */
static int blob_head(struct blob_disk *b, CURL *e, char *errbuf)
{
	struct blob_resp r;
	char *url = strdup(b->url);
	int ret = -ENOMEM;

	if (!url)
		goto out;
	curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	for (int hops = 0;; hops++) {
		char *disp = blob_display_url(url), *loc = NULL;

		curl_easy_setopt(e, CURLOPT_URL, url);
		ret = blob_ctl_perform(b, e, "HEAD", url, 0, 0, &r, errbuf, NULL, NULL);
		if (ret) {
			free(disp);
			goto out;
		}
		if (r.status == 301 || r.status == 302 || r.status == 303 ||
		    r.status == 307 || r.status == 308) {
			curl_easy_getinfo(e, CURLINFO_REDIRECT_URL, &loc);
			if (!loc) {
				dc_error("HEAD %s: HTTP %ld without a Location", disp,
					 r.status);
				ret = -EPROTO;
			} else if (hops >= BLOB_MAX_REDIRECTS) {
				dc_error("HEAD %s: too many redirects (more than %d)",
					 disp, BLOB_MAX_REDIRECTS);
				ret = -ELOOP;
			} else if (blob_scheme_is(url, "https") &&
				   !blob_scheme_is(loc, "https")) {
				char *to = blob_display_url(loc);

				dc_error(
					"HEAD %s: refusing the redirect from https to %s "
					"(a downgrade)",
					disp, to ? to : "a non-https URL");
				free(to);
				ret = -EPERM;
			} else {
				char *next = strdup(loc);

				dc_debug("blob: HEAD %s: %ld, redirected", disp,
					 r.status);
				free(disp);
				free(url);
				url = next;
				if (!url) {
					ret = -ENOMEM;
					goto out;
				}
				continue;
			}
			free(disp);
			goto out;
		}
		if (r.status != 200) {
			blob_status_error("HEAD", disp, &r, "200 OK");
			free(disp);
			ret = r.status == 404			 ? -ENOENT :
			      r.status == 403 || r.status == 401 ? -EACCES :
								   -EIO;
			goto out;
		}
		if (r.content_length < 0) {
			dc_error(
				"HEAD %s: the response has %s Content-Length; the blob's "
				"size must be known",
				disp, r.content_length == -1 ? "no" : "an invalid");
			free(disp);
			ret = -EPROTO;
			goto out;
		}
		if (r.no_ranges) {
			dc_error(
				"HEAD %s: the server says Accept-Ranges: none; reads need "
				"Range requests",
				disp);
			free(disp);
			ret = -EPROTO;
			goto out;
		}
		free(disp);
		break;
	}
	b->blob_size = (uint64_t)r.content_length;
	memcpy(b->blob_type, r.blob_type, sizeof(b->blob_type));
	/* Only a strong ETag may be used with If-Match. */
	if (r.etag[0] == '"')
		memcpy(b->etag, r.etag, sizeof(b->etag));
	free(b->url);
	b->url = url;
	url = NULL;
	free(b->display);
	b->display = blob_display_url(b->url);
	ret = b->display ? 0 : -ENOMEM;
out:
	free(url);
	curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
	return ret;
}

/* The body of a control-path GET, in memory, up to a limit. */
struct blob_membuf {
	char *p;
	size_t len, cap, max;
	bool too_big;
};

static size_t blob_mem_write(char *data, size_t size, size_t n, void *arg)
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

static void blob_mem_rewind(void *arg)
{
	struct blob_membuf *m = arg;

	m->len = 0;
	m->too_big = false;
	if (m->p)
		m->p[0] = '\0';
}

/* The text between <tag> and </tag> after *pos, or NULL; advances *pos. */
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
static int blob_pagelist(struct blob_disk *b, CURL *e, char *errbuf)
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

/* Read [off, off+len) of the blob into dst on the control path, with the same
 * strict checks as data-path reads. */
static int blob_ctl_read(struct blob_disk *b, CURL *e, char *errbuf, void *dst,
			 uint64_t off, uint64_t len)
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
		{
			uint64_t ms = blob_backoff_ms(&b->rng, ++x.attempt);

			dc_debug("blob: %s; retry in %llu ms", msg,
				 (unsigned long long)ms);
			blob_sleep_ms(ms);
		}
	}
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, NULL);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
	return ret;
}

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

/* --- Options and Azure detection ----------------------------------------------- */

/* Azure: the account from the host (ACCOUNT.blob.core.windows.net) or, for the
 * emulator's path style (http://127.0.0.1:10000/ACCOUNT/container/blob), from
 * the first path segment. */
static void blob_detect_azure(struct blob_disk *b, bool flag)
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

static int blob_auth_setup(struct blob_disk *b, const struct dc_open_args *a)
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

	if (b->thread_started) {
		pthread_mutex_lock(&b->lock);
		b->stop = true;
		pthread_mutex_unlock(&b->lock);
		blob_wake(b);
		pthread_join(b->thread, NULL);
	}
	while (b->idle) {
		struct blob_conn *c = b->idle;

		b->idle = c->next;
		blob_conn_free(c);
	}
	if (b->multi)
		curl_multi_cleanup(b->multi);
	if (b->epfd >= 0)
		close(b->epfd);
	if (b->evfd >= 0)
		close(b->evfd);
	pthread_mutex_destroy(&b->lock);
	pthread_mutex_destroy(&b->msg_lock);
	pthread_mutex_destroy(&b->ra_lock);
	for (unsigned i = 0; i < BLOB_RA_WINDOWS; i++)
		free(b->win[i].data);
	explicit_bzero(b->sk, sizeof(b->sk));
	free(b->pages);
	free(b->url);
	free(b->display);
	free(b->cafile);
	free(b->cert);
	free(b->key);
	free(b);
}

static int blob_start_io(struct blob_disk *b)
{
	b->multi = curl_multi_init();
	if (!b->multi) {
		dc_error("cannot create a curl multi handle");
		return -ENOMEM;
	}
	curl_multi_setopt(b->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)b->connections);
	curl_multi_setopt(b->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)b->connections);
	curl_multi_setopt(b->multi, CURLMOPT_MAXCONNECTS, (long)b->connections);
	curl_multi_setopt(b->multi, CURLMOPT_SOCKETFUNCTION, blob_socket_cb);
	curl_multi_setopt(b->multi, CURLMOPT_SOCKETDATA, b);
	curl_multi_setopt(b->multi, CURLMOPT_TIMERFUNCTION, blob_timer_cb);
	curl_multi_setopt(b->multi, CURLMOPT_TIMERDATA, b);
	b->deadline_ms = -1;
	b->epfd = epoll_create1(EPOLL_CLOEXEC);
	b->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (b->epfd < 0 || b->evfd < 0 ||
	    epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->evfd,
		      &(struct epoll_event){ .events = EPOLLIN, .data.fd = b->evfd }) <
		    0) {
		dc_error("cannot set up the I/O thread's epoll: %s", strerror(errno));
		return -errno;
	}
	b->pend_tail = &b->pend_head;
	if (pthread_create(&b->thread, NULL, blob_thread, b)) {
		dc_error("cannot start the I/O thread");
		return -EAGAIN;
	}
	b->thread_started = true;
	return 0;
}

static int blob_open(const struct dc_open_args *a, void **inst, struct dc_info *info)
{
	struct blob_disk *b;
	char errbuf[CURL_ERROR_SIZE] = "";
	char *scheme = NULL, *host = NULL, *path = NULL;
	CURL *e = NULL;
	int ret;

	if (a->nfields < 2 ||
	    (strcmp(a->fields[0], "flat") && strcmp(a->fields[0], "vhd1"))) {
		dc_error("expected blob:flat:URL or blob:vhd1:URL, got kind \"%s\"",
			 a->nfields ? a->fields[0] : "");
		return -EINVAL;
	}
	if (!a->fields[1][0]) {
		dc_error("missing URL (expected blob:%s:http[s]://HOST/PATH)",
			 a->fields[0]);
		return -EINVAL;
	}
	pthread_once(&blob_curl_once, blob_curl_init);
	if (blob_curl_init_rc != CURLE_OK) {
		dc_error("cannot initialise libcurl: %s",
			 curl_easy_strerror(blob_curl_init_rc));
		return -EIO;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		dc_error("out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&b->lock, NULL);
	pthread_mutex_init(&b->msg_lock, NULL);
	pthread_mutex_init(&b->ra_lock, NULL);
	b->epfd = b->evfd = -1;
	b->kind = strcmp(a->fields[0], "flat") ? BLOB_VHD1 : BLOB_FLAT;
	b->rng = (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)b << 16) ^
		 0x9e3779b97f4a7c15u;
	b->url = strdup(a->fields[1]);
	b->display = b->url ? blob_display_url(b->url) : NULL;
	ret = -ENOMEM;
	if (!b->url || !b->display) {
		dc_error("out of memory");
		goto fail;
	}
	if (blob_url_parts(b->url, &scheme, &host, &path, NULL)) {
		CURLU *u = curl_url();
		CURLUcode uc = u ? curl_url_set(u, CURLUPART_URL, b->url, 0) :
				   CURLUE_OUT_OF_MEMORY;

		curl_url_cleanup(u);
		dc_error(
			"\"%s\" is not a valid URL (%s); expected http[s]://HOST/PATH with "
			"unsafe characters percent-encoded",
			b->display, curl_url_strerror(uc));
		ret = -EINVAL;
		goto fail;
	}
	if ((strcasecmp(scheme, "http") && strcasecmp(scheme, "https")) || !host[0]) {
		dc_error("\"%s\" is not an http:// or https:// URL with a host",
			 b->display);
		ret = -EINVAL;
		goto fail;
	}
	if ((ret = blob_options(b, a)))
		goto fail;
	blob_detect_azure(b, dc_opt_flag(a, "azure"));
	if ((ret = blob_auth_setup(b, a)))
		goto fail;
	e = curl_easy_init();
	if (!e || blob_easy_common(b, e, errbuf) != CURLE_OK) {
		dc_error("cannot set up a curl handle");
		ret = -ENOMEM;
		goto fail;
	}
	if ((ret = blob_head(b, e, errbuf)))
		goto fail;
	if (b->azure && !strcmp(b->blob_type, "PageBlob") &&
	    (ret = blob_pagelist(b, e, errbuf)))
		goto fail;
	if (b->kind == BLOB_VHD1) {
		if ((ret = blob_vhd1_footer(b, e, errbuf)))
			goto fail;
	} else {
		b->disk_size = b->blob_size / BLOB_SECTOR * BLOB_SECTOR;
	}
	curl_easy_cleanup(e);
	e = NULL;
	if ((ret = blob_start_io(b)))
		goto fail;
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
	dc_debug("blob: %s: %llu bytes, %s%s%s, %u connections", b->display,
		 (unsigned long long)b->blob_size, b->kind == BLOB_VHD1 ? "vhd1" : "flat",
		 b->blob_type[0] ? ", " : "", b->blob_type, b->connections);
	curl_free(scheme);
	curl_free(host);
	curl_free(path);
	*inst = b;
	return 0;
fail:
	if (e)
		curl_easy_cleanup(e);
	curl_free(scheme);
	curl_free(host);
	curl_free(path);
	blob_close(b);
	return ret;
}

static void blob_describe(void *inst, dc_kv_fn kv, void *arg)
{
	struct blob_disk *b = inst;
	char v[BLOB_MSG];

	kv(arg, "url", b->display);
	kv(arg, "kind", b->kind == BLOB_VHD1 ? "vhd1" : "flat");
	snprintf(v, sizeof(v), "%llu", (unsigned long long)b->blob_size);
	kv(arg, "blob_size", v);
	snprintf(v, sizeof(v), "%llu", (unsigned long long)b->disk_size);
	kv(arg, "disk_size", v);
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
		snprintf(v, sizeof(v), "%zu (%llu bytes)", b->npages,
			 (unsigned long long)bytes);
		kv(arg, "page_ranges", v);
	}
	snprintf(v, sizeof(v), "%u", b->connections);
	kv(arg, "connections", v);
	snprintf(v, sizeof(v), "%ld ms, %u retries, split %llu", b->timeout_ms,
		 b->retries, (unsigned long long)b->split);
	kv(arg, "policy", v);
	kv(arg, "if_match", b->etag[0] ? "yes" : "no (no strong ETag)");
	if (b->ra) {
		snprintf(v, sizeof(v), "%llu bytes x %u windows, %llu hits",
			 (unsigned long long)b->ra, BLOB_RA_WINDOWS,
			 (unsigned long long)atomic_load(&b->nra_hits));
		kv(arg, "readahead", v);
	}
	snprintf(v, sizeof(v), "%llu requests, %llu retries, %llu errors, %llu bytes",
		 (unsigned long long)atomic_load(&b->nreq),
		 (unsigned long long)atomic_load(&b->nretry),
		 (unsigned long long)atomic_load(&b->nerr),
		 (unsigned long long)atomic_load(&b->nbytes));
	kv(arg, "stats", v);
	pthread_mutex_lock(&b->msg_lock);
	snprintf(v, sizeof(v), "%s", b->last_error);
	pthread_mutex_unlock(&b->msg_lock);
	if (v[0])
		kv(arg, "last_error", v);
}

static const struct dc_option blob_options_decl[] = {
	{ .name = "azure",
	  .type = DC_OPT_FLAG,
	  .help = "Azure Blob storage: send x-ms-version, read the blob type, skip page-blob "
		  "ranges that hold no pages (automatic for *.blob.core.windows.net and the "
		  "emulator's /devstoreaccount1/ paths)" },
	{ .name = "sharedkey",
	  .type = DC_OPT_STRING,
	  .help = "file holding ACCOUNT:BASE64KEY (or BASE64KEY) for Azure Shared Key auth; "
		  "without it $DISKCORE_AZURE_KEY is used when the URL has no SAS" },
	{ .name = "cafile",
	  .type = DC_OPT_STRING,
	  .help = "PEM file of CA certificates to verify the server with" },
	{ .name = "cert",
	  .type = DC_OPT_STRING,
	  .help = "PEM client certificate for TLS client authentication" },
	{ .name = "key",
	  .type = DC_OPT_STRING,
	  .help = "PEM private key of the client certificate" },
	{ .name = "timeout",
	  .type = DC_OPT_UINT,
	  .help = "milliseconds one request may take before it fails or is retried (default "
		  "30000)" },
	{ .name = "retries",
	  .type = DC_OPT_UINT,
	  .help = "retries after a 5xx, 429 or connection failure, with exponential backoff and "
		  "jitter (default 4, at most 20)" },
	{ .name = "connections",
	  .type = DC_OPT_UINT,
	  .help = "requests in flight at once over reused connections (default 8, at most 64)" },
	{ .name = "readahead",
	  .type = DC_OPT_SIZE,
	  .help = "when reads run sequentially, fetch windows of this size ahead and serve "
		  "smaller reads from them (default 0: off; 64K to 16M)" },
	{ .name = "split",
	  .type = DC_OPT_SIZE,
	  .help = "a larger read is fetched as parallel ranges of this size (default 1M)" },
	{ 0 },
};

static const struct dc_form blob_forms[] = {
	{ .name = "blob",
	  .nfields = 2,
	  .child = DC_CHILD_NONE,
	  .flags = 0,
	  .syntax = "blob:flat|vhd1:URL",
	  .help = "read-only disk over HTTP(S) or Azure Blob storage",
	  .options = blob_options_decl },
	{ 0 },
};

DC_PLUGIN(blob_plugin) = {
	.kind = DC_KIND_BACKEND,
	.name = "blob",
	.version = "0.1.0",
	.summary = "read-only disk over HTTP(S) and Azure Blob storage (libcurl)",
	.usage = "blob:flat:URL serves the blob as a raw disk; blob:vhd1:URL serves a "
		 "fixed VHD, hiding its footer and taking the disk id from it.\n"
		 "Reads are Range GETs: only a 206 with the exact Content-Range counts; "
		 "5xx and connection failures are retried. The disk is read-only: put a "
		 "layer on top to write (memdiff:blob:flat:URL).\n"
		 "Azure: SAS URLs work as they are; Shared Key auth with ;sharedkey=FILE "
		 "or DISKCORE_AZURE_KEY=ACCOUNT:BASE64KEY. TLS peers are always verified.",
	.forms = blob_forms,
	.ctx_size = sizeof(struct blob_rctx),
	.ops = DC_OP_BIT(DC_OP_READ) | DC_OP_BIT(DC_OP_WRITE) | DC_OP_BIT(DC_OP_FLUSH) |
	       DC_OP_BIT(DC_OP_UNMAP),
	.open = blob_open,
	.close = blob_close,
	.submit = blob_submit,
	.describe = blob_describe,
};
