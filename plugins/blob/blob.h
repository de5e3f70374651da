/* SPDX-License-Identifier: MIT */
/* blob: what the files of the blob plugin share. Nothing here is exported
 * (plugins.map): the plugin's one symbol is its entry.
 *
 *	blob.c		options, open, the read path (planning pieces), describe,
 *			the descriptor
 *	http.c		one request's transport: response headers, request headers,
 *			curl handles, the strict checks of a ranged GET
 *	worker.c	the I/O thread: a curl multi handle driven from epoll,
 *			connection slots, retries on the core's timer
 *	ctl.c		blocking requests made while opening: HEAD and redirects,
 *			a GET into memory, a checked ranged read
 *	azure.c		Azure Blob storage: detection, SAS, the Shared Key, page
 *			lists
 *	sharedkey.c	the Shared Key signature of one request (http.c adds it)
 *	readahead.c	read-ahead windows for sequential small reads
 *	util.c		helpers below all the others: status texts, retryable
 *			failures, URLs, backoff, numbers
 *
 * Calls run one way: blob.c on top; azure.c above ctl.c, readahead.c above
 * worker.c; ctl.c and worker.c above http.c, which is above sharedkey.c;
 * util.c below all. The worker hands a finished read-ahead load back through
 * blob_xfer.loaded.
 */
#ifndef DISKCORE_BLOB_H
#define DISKCORE_BLOB_H

#include <diskcore/plugin.h>

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

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
/* A server without range support answers a ranged GET with 200 and the whole
 * blob: up to this size the wanted bytes are taken out of it, and the first
 * whole body read in full is kept to serve every later read. */
#define BLOB_WHOLE_MAX (64u << 20)
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
	BLOB_F_STATUS,	/* not 206 */
	BLOB_F_RANGE,	/* 206 without the Content-Range asked for */
	BLOB_F_LONG,	/* more body than asked for */
	BLOB_F_SHORT,	/* less body than asked for */
	BLOB_F_CURL,	/* transport: see code */
	BLOB_F_WHOLE,	/* 200 whose Content-Length is not the blob's size */
	BLOB_F_NORANGE, /* 200, and the blob is over BLOB_WHOLE_MAX */
};

struct blob_disk;
struct blob_rctx;

/* The headers of one request, in storage the caller owns: curl only reads the
 * list, so no allocation per request. */
struct blob_hdrs {
	struct curl_slist node[6];
	char range[64]; /* "Range: bytes=A-B" */
	char ifmatch[112];
	char date[56];
	char auth[192];
};

/* A reusable connection slot: one easy handle and its error buffer. */
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
	struct blob_rctx *rc; /* NULL: a read-ahead window */
	/* rc NULL: the window's completion, set by readahead.c. Read-ahead sits
	 * above the worker (it enqueues loads), so the worker calls it back
	 * through this pointer rather than by name. */
	void (*loaded)(struct blob_disk *b, struct blob_xfer *x, int result);
	struct dc_buf buf; /* where the body goes */
	uint64_t off, len, got;
	unsigned attempt;
	enum blob_fail fail;
	CURLcode code;
	bool checked;  /* status and Content-Range looked at */
	bool whole;    /* the body is the whole blob (a 200) */
	uint64_t pos;  /* whole: body bytes seen */
	uint8_t *keep; /* whole: where the body is kept for b->whole, or NULL */
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

	/* A server that ignores ranges (BLOB_WHOLE_MAX): known from Accept-Ranges:
	 * none or a 200 answer; then the blob in memory, once a whole body was
	 * read. `filling` (one body at a time is kept) belongs to the thread that
	 * runs transfers: the opener, then the I/O thread. */
	atomic_bool no_ranges;
	_Atomic(uint8_t *) whole;
	bool filling;

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

/* util.c */
const char *blob_status_text(long status);
bool blob_status_retryable(long status);
bool blob_curl_retryable(CURLcode c);
int blob_curl_errno(CURLcode c);
char *blob_display_url(const char *url);
int blob_url_parts(const char *url, char **scheme, char **host, char **path,
		   char **query);
void blob_set_last_error(struct blob_disk *b, const char *msg);
uint64_t blob_backoff_ms(uint64_t *rng, unsigned attempt);
bool blob_parse_u64(const char *s, const char *end, uint64_t *out);

/* http.c */
void blob_resp_reset(struct blob_resp *r);
int blob_headers(const struct blob_disk *b, const char *verb, const char *url,
		 uint64_t off, uint64_t len, bool if_match, struct blob_hdrs *h);
CURLcode blob_easy_common(const struct blob_disk *b, CURL *e, char *errbuf);
struct blob_conn *blob_conn_new(const struct blob_disk *b);
void blob_conn_free(struct blob_conn *c);
size_t blob_xfer_write(char *data, size_t size, size_t n, void *arg);
int blob_xfer_prepare(struct blob_disk *b, struct blob_xfer *x);
int blob_xfer_classify(struct blob_disk *b, struct blob_xfer *x, bool *retry, char *msg,
		       size_t msglen);

/* worker.c */
int blob_start_io(struct blob_disk *b);
void blob_stop_io(struct blob_disk *b);
void blob_enqueue(struct blob_disk *b, struct blob_xfer *head, struct blob_xfer **tail);

/* ctl.c: blocking requests on the open path; each returns 0 or -errno after
 * dc_error(). */
struct blob_membuf {
	char *p;
	size_t len, cap, max;
	bool too_big;
};
size_t blob_mem_write(char *data, size_t size, size_t n, void *arg);
void blob_mem_rewind(void *arg);
int blob_ctl_perform(struct blob_disk *b, CURL *e, const char *verb, const char *url,
		     uint64_t off, uint64_t len, struct blob_resp *resp, char *errbuf,
		     void (*rewind)(void *arg), void *arg);
void blob_status_error(const char *verb, const char *disp, const struct blob_resp *r,
		       const char *expected, const char *more);
int blob_head(struct blob_disk *b, CURL *e, char *errbuf);
int blob_ctl_read(struct blob_disk *b, CURL *e, char *errbuf, void *dst, uint64_t off,
		  uint64_t len);

/* sharedkey.c: "Authorization: SharedKey ACCOUNT:SIGNATURE" for a request
 * without a body. */
int blob_sharedkey_header(const struct blob_disk *b, const char *verb, const char *url,
			  const char *range, const char *if_match, const char *date,
			  char *out, size_t outlen);

/* azure.c */
void blob_detect_azure(struct blob_disk *b, bool flag);
int blob_auth_setup(struct blob_disk *b, const struct dc_open_args *a);
int blob_pagelist(struct blob_disk *b, CURL *e, char *errbuf);

/* readahead.c */
bool blob_ra_read(struct blob_disk *b, struct dc_req *req, uint64_t off, uint64_t len);
void blob_ra_free(struct blob_disk *b);

#endif
